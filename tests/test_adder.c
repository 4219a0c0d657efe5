/*
 * test_adder.c - unit tests of every tally_adder call, exact values.
 *
 *   1. Bad input: new(NULL) is -EINVAL; free(NULL) is a no-op.
 *   2. add / inc / sum, negative deltas, two's-complement wrap.
 *   3. drain: returns the value, resets to 0; drain twice; sum after.
 *   4. 5000 adders at once in one thread, each with its own value; then
 *      freed and created again: ids are reused, values start at 0.
 *   5. Adders freed and created again while other threads that added to
 *      them are still alive (their cells are registered): the new adders
 *      start at 0 and count only their own adds, before and after those
 *      threads exit (exit folds their cells).
 *   6. Threads that exit after adding: the value is kept (folded), drain
 *      takes it, and an adder created on the freed id starts at 0.
 *   7. Out of memory: new fails with -ENOMEM and changes nothing; a
 *      thread whose first add cannot allocate its cells still counts.
 */
#include "tally.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "alloc.h"
#include "check.h"

/* ------------------------------------------------------------------ */
/* 1. Bad input, new and free                                          */
/* ------------------------------------------------------------------ */

static void test_new_free(void)
{
    tally_adder *a = (tally_adder *)&a; /* any non-NULL garbage */
    tally_adder *b = NULL;

    CHECK_EQ(tally_adder_new(NULL), -EINVAL);
    tally_adder_free(NULL);

    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK(a != NULL);
    CHECK_EQ(tally_adder_sum(a), 0);
    CHECK_EQ(tally_adder_new(&b), 0);
    CHECK(b != NULL);
    CHECK(a != b);
    CHECK_EQ(tally_adder_sum(b), 0);
    tally_adder_free(a);
    tally_adder_free(b);

    /* An adder that was never added to frees fine, and so does one freed
     * right after a drain. */
    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK_EQ(tally_adder_drain(a), 0);
    tally_adder_free(a);
}

/* ------------------------------------------------------------------ */
/* 2. add, inc, sum, wrap                                              */
/* ------------------------------------------------------------------ */

static void test_add_inc_sum(void)
{
    tally_adder *a;

    CHECK_EQ(tally_adder_new(&a), 0);
    tally_adder_add(a, 5);
    CHECK_EQ(tally_adder_sum(a), 5);
    tally_adder_add(a, -12);
    CHECK_EQ(tally_adder_sum(a), -7);
    tally_adder_add(a, 0);
    CHECK_EQ(tally_adder_sum(a), -7);
    tally_adder_inc(a);
    tally_adder_inc(a);
    CHECK_EQ(tally_adder_sum(a), -5);
    /* sum is a read: it changes nothing. */
    CHECK_EQ(tally_adder_sum(a), -5);
    for (int i = 0; i < 1000; i++)
        tally_adder_inc(a);
    CHECK_EQ(tally_adder_sum(a), 995);
    tally_adder_add(a, -995);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_free(a);
}

static void test_wrap(void)
{
    tally_adder *a;

    CHECK_EQ(tally_adder_new(&a), 0);
    tally_adder_add(a, INT64_MAX);
    CHECK_EQ(tally_adder_sum(a), INT64_MAX);
    tally_adder_add(a, 1);
    CHECK_EQ(tally_adder_sum(a), INT64_MIN);
    tally_adder_inc(a);
    CHECK_EQ(tally_adder_sum(a), INT64_MIN + 1);
    tally_adder_add(a, -2);
    CHECK_EQ(tally_adder_sum(a), INT64_MAX);
    /* INT64_MIN + INT64_MIN wraps to 0. */
    tally_adder_add(a, 1);
    tally_adder_add(a, INT64_MIN);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_add(a, INT64_MIN);
    CHECK_EQ(tally_adder_sum(a), INT64_MIN);
    /* A wrapped value drains like any other. */
    CHECK_EQ(tally_adder_drain(a), INT64_MIN);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_free(a);
}

/* ------------------------------------------------------------------ */
/* 3. drain                                                            */
/* ------------------------------------------------------------------ */

static void test_drain(void)
{
    tally_adder *a;

    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK_EQ(tally_adder_drain(a), 0);
    tally_adder_add(a, 40);
    tally_adder_inc(a);
    tally_adder_inc(a);
    CHECK_EQ(tally_adder_drain(a), 42);
    CHECK_EQ(tally_adder_sum(a), 0);
    CHECK_EQ(tally_adder_drain(a), 0); /* drain twice: nothing new */
    CHECK_EQ(tally_adder_sum(a), 0);

    /* Adds after a drain are counted from 0. */
    tally_adder_add(a, -3);
    CHECK_EQ(tally_adder_sum(a), -3);
    CHECK_EQ(tally_adder_drain(a), -3);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_add(a, 7);
    CHECK_EQ(tally_adder_sum(a), 7);
    tally_adder_add(a, 1);
    CHECK_EQ(tally_adder_drain(a), 8);
    CHECK_EQ(tally_adder_drain(a), 0);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_free(a);
}

/* ------------------------------------------------------------------ */
/* 4. Many adders at once; ids reused                                  */
/* ------------------------------------------------------------------ */

enum { MANY = 5000 };

static int64_t many_value(int i, int round)
{
    return (int64_t)i * 7919 - 100000 + round;
}

static void test_many_adders(void)
{
    tally_adder **a = calloc(MANY, sizeof *a);
    CHECK(a != NULL);

    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < MANY; i++) {
            CHECK_EQ(tally_adder_new(&a[i]), 0);
            /* New adders start at 0, even on an id a freed adder (with a
             * non-zero value) used in the previous round. */
            CHECK_EQ(tally_adder_sum(a[i]), 0);
        }
        for (int i = 0; i < MANY; i++) {
            tally_adder_add(a[i], many_value(i, round));
            if (i % 3 == 0)
                tally_adder_inc(a[i]);
        }
        for (int i = 0; i < MANY; i++)
            CHECK_EQ(tally_adder_sum(a[i]),
                     many_value(i, round) + (i % 3 == 0));
        /* Drain every other one: the others keep their values. */
        for (int i = 0; i < MANY; i += 2)
            CHECK_EQ(tally_adder_drain(a[i]),
                     many_value(i, round) + (i % 3 == 0));
        for (int i = 0; i < MANY; i++)
            CHECK_EQ(tally_adder_sum(a[i]),
                     i % 2 ? many_value(i, round) + (i % 3 == 0) : 0);
        /* Free in an order unlike creation, so reused ids get shuffled. */
        for (int i = 0; i < MANY; i += 2)
            tally_adder_free(a[i]);
        for (int i = 1; i < MANY; i += 2)
            tally_adder_free(a[i]);
    }
    free(a);
}

/* ------------------------------------------------------------------ */
/* 5. Free and create again while adding threads are alive             */
/* ------------------------------------------------------------------ */

enum { LIVE_THREADS = 3, LIVE_ADDERS = 40 };

struct live_ctx {
    pthread_barrier_t go;       /* main and workers, at each phase */
    tally_adder *a[LIVE_ADDERS]; /* written by main between barriers */
};

struct live_arg {
    struct live_ctx *ctx;
    int t;
};

static int64_t live_delta(int t, int i, int phase)
{
    return (int64_t)(t + 1) * 1000 + i * 10 + phase;
}

/*
 * Phase p: each worker adds live_delta(t, i, p) to every adder i, then
 * waits; main checks, frees the adders and creates new ones (on the same
 * ids: the free stack is last-in first-out), then releases the next phase.
 */
static void *live_worker(void *p)
{
    struct live_arg *arg = p;
    struct live_ctx *ctx = arg->ctx;

    for (int phase = 0; phase < 3; phase++) {
        pthread_barrier_wait(&ctx->go); /* main has made the adders */
        for (int i = 0; i < LIVE_ADDERS; i++)
            tally_adder_add(ctx->a[i], live_delta(arg->t, i, phase));
        pthread_barrier_wait(&ctx->go); /* done adding */
    }
    return NULL;
}

static int64_t live_total(int i, int phase)
{
    int64_t v = 0;
    for (int t = 0; t < LIVE_THREADS; t++)
        v += live_delta(t, i, phase);
    return v;
}

static void test_reuse_with_live_threads(void)
{
    struct live_ctx ctx;
    struct live_arg args[LIVE_THREADS];
    pthread_t tid[LIVE_THREADS];

    CHECK_EQ(pthread_barrier_init(&ctx.go, NULL, LIVE_THREADS + 1), 0);
    for (int t = 0; t < LIVE_THREADS; t++) {
        args[t].ctx = &ctx;
        args[t].t = t;
        CHECK_EQ(pthread_create(&tid[t], NULL, live_worker, &args[t]), 0);
    }
    for (int phase = 0; phase < 3; phase++) {
        for (int i = 0; i < LIVE_ADDERS; i++) {
            CHECK_EQ(tally_adder_new(&ctx.a[i]), 0);
            CHECK_EQ(tally_adder_sum(ctx.a[i]), 0);
        }
        pthread_barrier_wait(&ctx.go);
        pthread_barrier_wait(&ctx.go);
        for (int i = 0; i < LIVE_ADDERS; i++)
            CHECK_EQ(tally_adder_sum(ctx.a[i]), live_total(i, phase));
        if (phase < 2) {
            /* Main adds too on half of them, then frees all: the
             * workers' cells for these ids are live and non-zero. */
            for (int i = 0; i < LIVE_ADDERS; i += 2)
                tally_adder_add(ctx.a[i], -1);
            for (int i = LIVE_ADDERS - 1; i >= 0; i--)
                tally_adder_free(ctx.a[i]);
        }
    }
    for (int t = 0; t < LIVE_THREADS; t++)
        CHECK_EQ(pthread_join(tid[t], NULL), 0);
    /* The workers exited: their cells were folded, nothing more. */
    for (int i = 0; i < LIVE_ADDERS; i++) {
        CHECK_EQ(tally_adder_sum(ctx.a[i]), live_total(i, 2));
        if (i % 2)
            CHECK_EQ(tally_adder_drain(ctx.a[i]), live_total(i, 2));
        tally_adder_free(ctx.a[i]);
    }
    /* And adders on those ids, now free, start at 0. */
    for (int i = 0; i < LIVE_ADDERS; i++) {
        CHECK_EQ(tally_adder_new(&ctx.a[i]), 0);
        CHECK_EQ(tally_adder_sum(ctx.a[i]), 0);
    }
    for (int i = 0; i < LIVE_ADDERS; i++)
        tally_adder_free(ctx.a[i]);
    pthread_barrier_destroy(&ctx.go);
}

/* ------------------------------------------------------------------ */
/* 6. Exited threads' adds are kept                                    */
/* ------------------------------------------------------------------ */

struct exit_arg {
    tally_adder *a, *b;
    int64_t delta;
};

static void *add_and_exit(void *p)
{
    struct exit_arg *arg = p;
    tally_adder_add(arg->a, arg->delta);
    tally_adder_inc(arg->b);
    return NULL;
}

static void test_exited_threads(void)
{
    tally_adder *a, *b;
    struct exit_arg args[4];
    static const int64_t deltas[4] = {INT64_MAX, 1, -5, 5};

    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK_EQ(tally_adder_new(&b), 0);
    for (int i = 0; i < 4; i++)
        args[i] = (struct exit_arg){a, b, deltas[i]};
    /* INT64_MAX + 1 - 5 + 5 wraps across folded cells too. */
    check_threads_run(4, add_and_exit, args, sizeof args[0]);
    CHECK_EQ(tally_adder_sum(a), INT64_MIN);
    CHECK_EQ(tally_adder_sum(b), 4);
    tally_adder_add(a, -1); /* main's cell plus the folded amount */
    CHECK_EQ(tally_adder_sum(a), INT64_MAX);
    CHECK_EQ(tally_adder_drain(b), 4);
    CHECK_EQ(tally_adder_sum(b), 0);
    check_threads_run(4, add_and_exit, args, sizeof args[0]);
    CHECK_EQ(tally_adder_sum(b), 4);
    /* INT64_MAX + (INT64_MAX + 1 - 5 + 5) == INT64_MAX + INT64_MIN */
    CHECK_EQ(tally_adder_sum(a), -1);
    CHECK_EQ(tally_adder_drain(a), -1);
    CHECK_EQ(tally_adder_drain(a), 0);
    tally_adder_free(a);
    tally_adder_free(b);

    /* The ids of a and b held folded amounts: new adders start at 0. */
    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK_EQ(tally_adder_new(&b), 0);
    CHECK_EQ(tally_adder_sum(a), 0);
    CHECK_EQ(tally_adder_sum(b), 0);
    tally_adder_free(b);
    tally_adder_free(a);
}

/* ------------------------------------------------------------------ */
/* 7. Out of memory                                                    */
/* ------------------------------------------------------------------ */

static void *add_seven(void *p)
{
    tally_adder_add(p, 7);
    tally_adder_inc(p);
    return NULL;
}

static void test_out_of_memory(void)
{
    tally_adder *a = (tally_adder *)&a, *keep = a;

    /* Each allocation new makes fails in turn: -ENOMEM, *out untouched. */
    for (int64_t n = 0; n < 8; n++) {
        tally__alloc_fail_after(n);
        int err = tally_adder_new(&a);
        tally__alloc_fail_after(-1);
        if (err == 0) {
            CHECK_EQ(tally_adder_sum(a), 0);
            tally_adder_free(a);
            a = keep;
            continue;
        }
        CHECK_EQ(err, -ENOMEM);
        CHECK(a == keep);
    }

    /* Fresh threads whose first add cannot get a thread record (main runs
     * this before any other thread used tally, so there is none to reuse)
     * fall back to the shared total: still counted. */
    CHECK_EQ(tally_adder_new(&a), 0);
    tally_adder_add(a, 100);
    tally__alloc_fail_after(0);
    check_threads_run(3, add_seven, a, 0);
    tally__alloc_fail_after(-1);
    CHECK_EQ(tally_adder_sum(a), 124);
    CHECK_EQ(tally_adder_drain(a), 124);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_free(a);
}

/*
 * A thread's cell blocks are detached when it exits and attached again by
 * the next owner of its record, possibly for other ids. Thread A adds i+1
 * to adder i for 5000 adders (5 blocks); thread B, which reuses A's record,
 * adds to the last adder only (its block goes back in at another index);
 * thread C adds to every adder again. Every value must stay exact.
 */
enum { BLOCK_ADDERS = 5000 };
static tally_adder *block_adders[BLOCK_ADDERS];

static void *add_all_indexed(void *arg)
{
    (void)arg;
    for (int i = 0; i < BLOCK_ADDERS; i++)
        tally_adder_add(block_adders[i], i + 1);
    return NULL;
}

static void *add_last(void *arg)
{
    (void)arg;
    tally_adder_add(block_adders[BLOCK_ADDERS - 1], 1000000);
    return NULL;
}

static void test_blocks_move_between_owners(void)
{
    for (int i = 0; i < BLOCK_ADDERS; i++)
        CHECK_EQ(tally_adder_new(&block_adders[i]), 0);
    check_threads_run(1, add_all_indexed, NULL, 0);
    check_threads_run(1, add_last, NULL, 0);
    for (int i = 0; i < BLOCK_ADDERS - 1; i++)
        CHECK_EQ(tally_adder_sum(block_adders[i]), i + 1);
    CHECK_EQ(tally_adder_sum(block_adders[BLOCK_ADDERS - 1]),
             BLOCK_ADDERS + 1000000);
    check_threads_run(1, add_all_indexed, NULL, 0);
    for (int i = 0; i < BLOCK_ADDERS - 1; i++)
        CHECK_EQ(tally_adder_sum(block_adders[i]), 2 * (i + 1));
    CHECK_EQ(tally_adder_sum(block_adders[BLOCK_ADDERS - 1]),
             2 * BLOCK_ADDERS + 1000000);
    for (int i = 0; i < BLOCK_ADDERS; i++)
        tally_adder_free(block_adders[i]);
}

int main(void)
{
    /* First, while no thread has a record to reuse: the threads of the
     * out-of-memory test must really find no memory for one. */
    test_out_of_memory();
    test_new_free();
    test_add_inc_sum();
    test_wrap();
    test_drain();
    test_many_adders();
    test_reuse_with_live_threads();
    test_exited_threads();
    test_blocks_move_between_owners();
    return 0;
}
