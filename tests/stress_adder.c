/*
 * stress_adder.c - tally_adder under concurrency; every check is an exact,
 * closed-form total.
 *
 *   1. T threads add varied deltas (one of them near INT64_MAX, so the
 *      total wraps); the sum is exact while the threads are alive (their
 *      cells) and again after they exit (their cells folded).
 *   2. Adders race drainers: the drains plus the value left equal all adds.
 *   3. The article's program: 1000 threads each add once and exit; always
 *      exactly 1000, repeated.
 *   4. Waves of short-lived threads add to three adders and exit while
 *      readers call tally_adder_sum without pause: for an adder that is
 *      only incremented a sum never goes backwards and never exceeds the
 *      total (a read that missed an exit fold, or saw one twice, would).
 *   5. Memory stays bounded: rounds of threads that use adders and exit
 *      reuse the records and cell blocks of the threads before them.
 *
 * Sizes keep the whole program well under 10 s on 2 cores under TSan;
 * TALLY_STRESS_SCALE multiplies them.
 */
#include "tally.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "check.h"

#if defined(__SANITIZE_ADDRESS__) || defined(TALLY_TSAN)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#ifdef TALLY_TSAN
/* 1000 thread starts cost about 1 s under TSan on 2 cores. */
enum { OPS = 200000, SEED_REPEATS = 4, WAVES = 40, MEM_ROUNDS = 20 };
#else
enum { OPS = 1000000, SEED_REPEATS = 10, WAVES = 40, MEM_ROUNDS = 20 };
#endif
enum { THREADS = 4, SEED_THREADS = 1000 };

static uint64_t g_ops; /* per thread, OPS * check_scale() */

/* ------------------------------------------------------------------ */
/* 1. Varied deltas, wrapping total, before and after exit folds       */
/* ------------------------------------------------------------------ */

static int64_t varied_delta(int t, uint64_t i)
{
    /* Thread t adds (t+1) * k for k in -6..6, and thread 3 also a large
     * base, so the total wraps past INT64_MAX many times. */
    int64_t k = (int64_t)(i % 13) - 6;
    uint64_t base = t == 3 ? UINT64_C(0x7fffffffffff0001) : 0;
    return (int64_t)(base + (uint64_t)((t + 1) * k));
}

struct varied_arg {
    tally_adder *a;
    pthread_barrier_t *done;
    int t;
};

static void *add_varied(void *p)
{
    struct varied_arg *arg = p;

    for (uint64_t i = 0; i < g_ops; i++)
        tally_adder_add(arg->a, varied_delta(arg->t, i));
    pthread_barrier_wait(arg->done); /* main reads the live cells */
    pthread_barrier_wait(arg->done); /* then we exit and fold */
    return NULL;
}

static void test_varied_deltas(void)
{
    tally_adder *a;
    pthread_barrier_t done;
    pthread_t tid[THREADS];
    struct varied_arg args[THREADS];
    uint64_t expect = 0;

    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK_EQ(pthread_barrier_init(&done, NULL, THREADS + 1), 0);
    for (int t = 0; t < THREADS; t++) {
        args[t] = (struct varied_arg){a, &done, t};
        CHECK_EQ(pthread_create(&tid[t], NULL, add_varied, &args[t]), 0);
        for (uint64_t i = 0; i < g_ops; i++)
            expect += (uint64_t)varied_delta(t, i);
    }
    pthread_barrier_wait(&done);
    CHECK_EQ((uint64_t)tally_adder_sum(a), expect);
    pthread_barrier_wait(&done);
    for (int t = 0; t < THREADS; t++)
        CHECK_EQ(pthread_join(tid[t], NULL), 0);
    CHECK_EQ((uint64_t)tally_adder_sum(a), expect);
    CHECK_EQ((uint64_t)tally_adder_drain(a), expect);
    CHECK_EQ(tally_adder_sum(a), 0);
    pthread_barrier_destroy(&done);
    tally_adder_free(a);
}

/* ------------------------------------------------------------------ */
/* 2. Drainers racing adders                                           */
/* ------------------------------------------------------------------ */

struct drain_ctx {
    tally_adder *a;
    atomic_bool stop;  /* set once the adders are done */
    atomic_uint took;  /* drains that returned non-zero */
};

struct drain_arg {
    struct drain_ctx *ctx;
    int64_t delta; /* adders: add delta + i % 5, g_ops times; drainers: 0 */
    uint64_t got;  /* drainers: sum of all drains, mod 2^64 */
};

/*
 * Halfway through, each adder waits until some drainer has taken a
 * non-zero amount, so drains certainly race adds on every run. The flags
 * order nothing: drained amounts travel through the adder, and the main
 * thread reads them after pthread_join.
 */
static void *drain_worker(void *p)
{
    struct drain_arg *arg = p;
    struct drain_ctx *ctx = arg->ctx;

    if (arg->delta != 0) {
        for (uint64_t i = 0; i < g_ops; i++) {
            if (i == g_ops / 2)
                while (atomic_load_explicit(&ctx->took,
                                            memory_order_relaxed) == 0)
                    ;
            tally_adder_add(ctx->a, arg->delta + (int64_t)(i % 5));
        }
        return NULL;
    }
    while (!atomic_load_explicit(&ctx->stop, memory_order_relaxed)) {
        int64_t v = tally_adder_drain(ctx->a);
        arg->got += (uint64_t)v;
        if (v != 0)
            atomic_fetch_add_explicit(&ctx->took, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_drain_races_adds(void)
{
    enum { ADDERS = 2, DRAINERS = 2 };
    static const int64_t deltas[ADDERS] = {3, -1000000007};
    struct drain_ctx ctx;
    struct drain_arg adders[ADDERS], drainers[DRAINERS];
    pthread_t tid[DRAINERS];
    uint64_t added = 0, drained = 0;

    CHECK_EQ(tally_adder_new(&ctx.a), 0);
    atomic_init(&ctx.stop, false);
    atomic_init(&ctx.took, 0);
    for (int i = 0; i < ADDERS; i++) {
        adders[i] = (struct drain_arg){&ctx, deltas[i], 0};
        for (uint64_t k = 0; k < g_ops; k++)
            added += (uint64_t)(deltas[i] + (int64_t)(k % 5));
    }
    for (int i = 0; i < DRAINERS; i++) {
        drainers[i] = (struct drain_arg){&ctx, 0, 0};
        CHECK_EQ(pthread_create(&tid[i], NULL, drain_worker, &drainers[i]),
                 0);
    }
    check_threads_run(ADDERS, drain_worker, adders, sizeof adders[0]);
    atomic_store_explicit(&ctx.stop, true, memory_order_relaxed);
    for (int i = 0; i < DRAINERS; i++) {
        CHECK_EQ(pthread_join(tid[i], NULL), 0);
        drained += drainers[i].got;
    }
    CHECK_GT(atomic_load(&ctx.took), 0);
    CHECK_EQ(drained + (uint64_t)tally_adder_sum(ctx.a), added);
    /* One last drain takes exactly what was left. */
    uint64_t left = (uint64_t)tally_adder_sum(ctx.a);
    CHECK_EQ((uint64_t)tally_adder_drain(ctx.a), left);
    CHECK_EQ(tally_adder_sum(ctx.a), 0);
    tally_adder_free(ctx.a);
}

/* ------------------------------------------------------------------ */
/* 3. The article's program                                            */
/* ------------------------------------------------------------------ */

static void *inc_once(void *p)
{
    tally_adder_inc(p);
    return NULL;
}

static void test_seed_pattern(void)
{
    unsigned repeats = SEED_REPEATS * check_scale();
    tally_adder *kept;

    /* Even repeats: a new adder (created on the id the last one freed).
     * Odd repeats: one adder kept across repeats and drained each time. */
    CHECK_EQ(tally_adder_new(&kept), 0);
    for (unsigned r = 0; r < repeats; r++) {
        if (r % 2 == 0) {
            tally_adder *a;
            CHECK_EQ(tally_adder_new(&a), 0);
            check_threads_run(SEED_THREADS, inc_once, a, 0);
            CHECK_EQ(tally_adder_sum(a), SEED_THREADS);
            tally_adder_free(a);
        } else {
            check_threads_run(SEED_THREADS, inc_once, kept, 0);
            CHECK_EQ(tally_adder_sum(kept), SEED_THREADS);
            CHECK_EQ(tally_adder_drain(kept), SEED_THREADS);
            CHECK_EQ(tally_adder_sum(kept), 0);
        }
    }
    tally_adder_free(kept);
}

/* ------------------------------------------------------------------ */
/* 4. Sums stay monotonic while threads exit                           */
/* ------------------------------------------------------------------ */

enum { WAVE_THREADS = 8, WAVE_INCS = 300 };

struct mono_ctx {
    tally_adder *up;    /* only incremented by 1 */
    tally_adder *up2;   /* only added 2 */
    tally_adder *down;  /* only added -1 */
    int64_t total;      /* final value of up: all incs of all waves */
    atomic_bool stop;
    atomic_ulong reads; /* completed read rounds, to pace the waves */
};

static void *wave_thread(void *p)
{
    struct mono_ctx *ctx = p;

    for (int i = 0; i < WAVE_INCS; i++) {
        tally_adder_inc(ctx->up);
        tally_adder_add(ctx->up2, 2);
        tally_adder_add(ctx->down, -1);
    }
    return NULL; /* exit: the three cells are folded */
}

static void *mono_reader(void *p)
{
    struct mono_ctx *ctx = p;
    int64_t up = 0, up2 = 0, down = 0;

    while (!atomic_load_explicit(&ctx->stop, memory_order_relaxed)) {
        int64_t u = tally_adder_sum(ctx->up);
        int64_t u2 = tally_adder_sum(ctx->up2);
        int64_t d = tally_adder_sum(ctx->down);
        CHECK_GE(u, up);
        CHECK_LE(u, ctx->total);
        CHECK_GE(u2, up2);
        CHECK_LE(u2, 2 * ctx->total);
        CHECK_LE(d, down);
        CHECK_GE(d, -ctx->total);
        up = u;
        up2 = u2;
        down = d;
        atomic_fetch_add_explicit(&ctx->reads, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_monotonic_sums(void)
{
    enum { READERS = 2 };
    unsigned waves = WAVES * check_scale();
    struct mono_ctx ctx;
    pthread_t readers[READERS];

    CHECK_EQ(tally_adder_new(&ctx.up), 0);
    CHECK_EQ(tally_adder_new(&ctx.up2), 0);
    CHECK_EQ(tally_adder_new(&ctx.down), 0);
    ctx.total = (int64_t)waves * WAVE_THREADS * WAVE_INCS;
    atomic_init(&ctx.stop, false);
    atomic_init(&ctx.reads, 0);
    for (int i = 0; i < READERS; i++)
        CHECK_EQ(pthread_create(&readers[i], NULL, mono_reader, &ctx), 0);
    for (unsigned w = 0; w < waves; w++) {
        unsigned long r0 =
            atomic_load_explicit(&ctx.reads, memory_order_relaxed);
        check_threads_run(WAVE_THREADS, wave_thread, &ctx, 0);
        /* Let the readers run between waves too (progress, not timing:
         * nothing is published through this). */
        while (atomic_load_explicit(&ctx.reads, memory_order_relaxed) <
               r0 + 2)
            ;
        int64_t done = (int64_t)(w + 1) * WAVE_THREADS * WAVE_INCS;
        CHECK_EQ(tally_adder_sum(ctx.up), done);
        CHECK_EQ(tally_adder_sum(ctx.up2), 2 * done);
        CHECK_EQ(tally_adder_sum(ctx.down), -done);
    }
    atomic_store_explicit(&ctx.stop, true, memory_order_relaxed);
    for (int i = 0; i < READERS; i++)
        CHECK_EQ(pthread_join(readers[i], NULL), 0);
    CHECK_EQ(tally_adder_sum(ctx.up), ctx.total);
    CHECK_EQ(tally_adder_sum(ctx.up2), 2 * ctx.total);
    CHECK_EQ(tally_adder_sum(ctx.down), -ctx.total);
    tally_adder_free(ctx.up);
    tally_adder_free(ctx.up2);
    tally_adder_free(ctx.down);
}

/* ------------------------------------------------------------------ */
/* 5. Memory stays bounded across thread generations                   */
/* ------------------------------------------------------------------ */

enum { MEM_THREADS = 50, MEM_ADDERS = 8 };

static tally_adder *g_mem[MEM_ADDERS];

static void *mem_thread(void *p)
{
    (void)p;
    for (int i = 0; i < MEM_ADDERS; i++)
        tally_adder_add(g_mem[i], i + 1);
    return NULL;
}

/* Resident set size in bytes, from /proc/self/statm; 0 if unreadable. */
static uint64_t rss_bytes(void)
{
    unsigned long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (uint64_t)resident * 4096u : 0;
}

/*
 * Thread records and cell blocks are never freed: a thread that exits
 * leaves its record (cells folded and zeroed) to the next thread. So after
 * the first round, later rounds of the same number of threads allocate
 * nothing at all in tally; we allow a little slack (under one allocation
 * per 2 threads over all later rounds), far below the >= 2 per thread a
 * leak of records or blocks would make. RSS is checked too, with a wide
 * margin, outside sanitizer builds (their allocators keep freed memory).
 */
static void test_memory_bounded(void)
{
    unsigned rounds = MEM_ROUNDS * check_scale();
    uint64_t allocs_after_warmup = 0, rss_after_warmup = 0;

    for (int i = 0; i < MEM_ADDERS; i++)
        CHECK_EQ(tally_adder_new(&g_mem[i]), 0);
    for (unsigned r = 0; r < rounds; r++) {
        if (r == 2) {
            allocs_after_warmup = tally__alloc_count();
            rss_after_warmup = rss_bytes();
        }
        check_threads_run(MEM_THREADS, mem_thread, NULL, 0);
        for (int i = 0; i < MEM_ADDERS; i++)
            CHECK_EQ(tally_adder_sum(g_mem[i]),
                     (int64_t)(r + 1) * MEM_THREADS * (i + 1));
    }
    uint64_t allocs = tally__alloc_count() - allocs_after_warmup;
    CHECK_LT(allocs, (uint64_t)(rounds - 2) * MEM_THREADS / 2);
    if (!SANITIZED && rss_after_warmup != 0) {
        uint64_t rss = rss_bytes();
        /* A leaked record costs at least a few pages (its header, its
         * touched directory page, an 8 KiB cell block): 50 threads * 18
         * rounds of them would pass this bound. */
        CHECK_LT(rss, rss_after_warmup + (UINT64_C(8) << 20));
    }
    for (int i = 0; i < MEM_ADDERS; i++)
        tally_adder_free(g_mem[i]);
}

int main(void)
{
    g_ops = (uint64_t)OPS * check_scale();
    test_varied_deltas();
    test_drain_races_adds();
    test_seed_pattern();
    test_monotonic_sums();
    test_memory_bounded();
    return 0;
}
