/*
 * stress_counter.c - tally_counter under concurrency; every check is an
 * exact, closed-form total.
 *
 *   1. T threads add varied deltas (some near INT64_MAX, so the total wraps
 *      many times); the final value is the closed-form sum mod 2^64.
 *   2. T threads inc; every value inc returns is distinct, so together
 *      they are exactly 1..T*N (the single modification order).
 *   3. Adders race drainers doing swap(c, 0): drained + left == added.
 *   4. Threads add through a load + cas loop: no update is lost.
 *   5. The article's program: 1000 threads each inc once, repeated;
 *      always exactly 1000.
 *
 * Sizes keep the whole program well under 10 s on 2 cores under TSan;
 * TALLY_STRESS_SCALE multiplies them.
 */
#include "tally.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"

#ifdef TALLY_TSAN
/* TSan makes each thread start cost about 1 ms: 1000 threads take 1 s. */
enum { OPS = 50000, SEED_REPEATS = 2 };
#else
enum { OPS = 200000, SEED_REPEATS = 20 };
#endif
enum { THREADS = 4, SEED_THREADS = 1000 };

static uint64_t g_ops; /* per thread, OPS * check_scale() */

/* ------------------------------------------------------------------ */
/* 1. Varied deltas, wrapping total                                    */
/* ------------------------------------------------------------------ */

struct add_arg {
    tally_counter *c;
    uint64_t base; /* thread t adds base + (i % 17) at step i */
};

static void *add_varied(void *p)
{
    struct add_arg *a = p;
    uint64_t i;

    for (i = 0; i < g_ops; i++)
        tally_counter_add(a->c, (int64_t)(a->base + i % 17));
    return NULL;
}

/* sum of base + (i % 17) for i in [0, n), mod 2^64 */
static uint64_t varied_total(uint64_t base, uint64_t n)
{
    uint64_t full = n / 17, rest = n % 17;

    return base * n + full * (16 * 17 / 2) + rest * (rest - 1) / 2;
}

static void test_varied_deltas(void)
{
    /* Large, odd and negative bases: the sum wraps past INT64_MAX often. */
    static const uint64_t bases[THREADS] = {
        (uint64_t)-8, 1, UINT64_C(0x7fffffffffff0001),
        UINT64_C(0x8000000000000003)};
    tally_counter c = TALLY_COUNTER_INIT(0);
    struct add_arg args[THREADS];
    uint64_t expect = 0;
    int t;

    for (t = 0; t < THREADS; t++) {
        args[t].c = &c;
        args[t].base = bases[t];
        expect += varied_total(bases[t], g_ops);
    }
    check_threads_run(THREADS, add_varied, args, sizeof args[0]);
    CHECK_EQ((uint64_t)tally_counter_load(&c), expect);
}

/* ------------------------------------------------------------------ */
/* 2. inc returns each value of 1..T*N exactly once                    */
/* ------------------------------------------------------------------ */

struct inc_arg {
    tally_counter *c;
    atomic_uchar *seen; /* seen[v - 1] counts returns of v */
    uint64_t total;
};

static void *inc_unique(void *p)
{
    struct inc_arg *a = p;
    int64_t prev = 0, v;
    uint64_t i;

    for (i = 0; i < g_ops; i++) {
        v = tally_counter_inc(a->c);
        /* Each thread sees its own incs in order. */
        CHECK_GT(v, prev);
        CHECK_LE(v, a->total);
        atomic_fetch_add_explicit(&a->seen[v - 1], 1, memory_order_relaxed);
        prev = v;
    }
    return NULL;
}

static void test_inc_unique(void)
{
    tally_counter c = TALLY_COUNTER_INIT(0);
    struct inc_arg arg;
    uint64_t i;

    arg.c = &c;
    arg.total = THREADS * g_ops;
    arg.seen = calloc(arg.total, sizeof arg.seen[0]);
    CHECK(arg.seen != NULL);
    check_threads_run(THREADS, inc_unique, &arg, 0);
    CHECK_EQ(tally_counter_load(&c), arg.total);
    for (i = 0; i < arg.total; i++) {
        if (atomic_load_explicit(&arg.seen[i], memory_order_relaxed) != 1) {
            fprintf(stderr, "value %llu returned %u times\n",
                    (unsigned long long)i + 1,
                    (unsigned)atomic_load(&arg.seen[i]));
            CHECK_EQ(atomic_load(&arg.seen[i]), 1);
        }
    }
    free(arg.seen);
}

/* ------------------------------------------------------------------ */
/* 3. swap(c, 0) drainers                                              */
/* ------------------------------------------------------------------ */

struct drain_ctx {
    tally_counter c;
    atomic_bool stop;       /* set once the adders are done */
    atomic_uint took;       /* swaps that returned non-zero */
};

struct drain_arg {
    struct drain_ctx *ctx;
    int64_t delta;   /* adders: add delta, g_ops times; drainers: 0 */
    uint64_t got;    /* drainers: sum of all swaps, mod 2^64 */
};

/*
 * Halfway through, each adder waits until some drainer has taken a
 * non-zero amount, so that swaps certainly race adds on every run. The
 * flags order nothing: drained amounts travel through the counter itself,
 * and the main thread reads them after pthread_join.
 */
static void *drain_worker(void *p)
{
    struct drain_arg *a = p;
    struct drain_ctx *ctx = a->ctx;
    uint64_t i;

    if (a->delta != 0) {
        for (i = 0; i < g_ops; i++) {
            if (i == g_ops / 2)
                while (atomic_load_explicit(&ctx->took,
                                            memory_order_relaxed) == 0)
                    ;
            tally_counter_add(&ctx->c, a->delta);
        }
        return NULL;
    }
    while (!atomic_load_explicit(&ctx->stop, memory_order_relaxed)) {
        int64_t v = tally_counter_swap(&ctx->c, 0);
        a->got += (uint64_t)v;
        if (v != 0)
            atomic_fetch_add_explicit(&ctx->took, 1, memory_order_relaxed);
    }
    return NULL;
}

static void test_swap_drain(void)
{
    enum { ADDERS = 2, DRAINERS = 2 };
    static const int64_t deltas[ADDERS] = {3, -1000000007};
    struct drain_ctx ctx;
    struct drain_arg adders[ADDERS], drainers[DRAINERS];
    pthread_t tid[DRAINERS];
    uint64_t added = 0, drained = 0;
    int i;

    atomic_init(&ctx.c.value, 0);
    atomic_init(&ctx.stop, false);
    atomic_init(&ctx.took, 0);
    for (i = 0; i < ADDERS; i++) {
        adders[i] = (struct drain_arg){&ctx, deltas[i], 0};
        added += (uint64_t)deltas[i] * g_ops;
    }
    for (i = 0; i < DRAINERS; i++) {
        drainers[i] = (struct drain_arg){&ctx, 0, 0};
        CHECK_EQ(pthread_create(&tid[i], NULL, drain_worker, &drainers[i]), 0);
    }
    check_threads_run(ADDERS, drain_worker, adders, sizeof adders[0]);
    atomic_store_explicit(&ctx.stop, true, memory_order_relaxed);
    for (i = 0; i < DRAINERS; i++) {
        CHECK_EQ(pthread_join(tid[i], NULL), 0);
        drained += drainers[i].got;
    }
    CHECK_GT(atomic_load(&ctx.took), 0);
    CHECK_EQ(drained + (uint64_t)tally_counter_load(&ctx.c), added);
}

/* ------------------------------------------------------------------ */
/* 4. cas loops                                                        */
/* ------------------------------------------------------------------ */

static void *cas_adder(void *p)
{
    struct add_arg *a = p;
    uint64_t i;

    for (i = 0; i < g_ops; i++) {
        int64_t old = tally_counter_load(a->c);
        int64_t delta = (int64_t)(a->base + i % 17);
        while (!tally_counter_cas(a->c, old,
                                  (int64_t)((uint64_t)old + (uint64_t)delta)))
            old = tally_counter_load(a->c);
    }
    return NULL;
}

static void test_cas_loops(void)
{
    tally_counter c = TALLY_COUNTER_INIT(0);
    struct add_arg args[THREADS];
    uint64_t expect = 0;
    int t;

    for (t = 0; t < THREADS; t++) {
        args[t].c = &c;
        args[t].base = (uint64_t)t * UINT64_C(0x9e3779b97f4a7c15);
        expect += varied_total(args[t].base, g_ops);
    }
    check_threads_run(THREADS, cas_adder, args, sizeof args[0]);
    CHECK_EQ((uint64_t)tally_counter_load(&c), expect);
}

/* ------------------------------------------------------------------ */
/* 5. The article's program                                            */
/* ------------------------------------------------------------------ */

static void *inc_once(void *p)
{
    tally_counter_inc(p);
    return NULL;
}

static void test_seed_pattern(void)
{
    unsigned r, repeats = SEED_REPEATS * check_scale();

    for (r = 0; r < repeats; r++) {
        tally_counter c = TALLY_COUNTER_INIT(0);
        check_threads_run(SEED_THREADS, inc_once, &c, 0);
        CHECK_EQ(tally_counter_load(&c), SEED_THREADS);
    }
}

int main(void)
{
    g_ops = (uint64_t)OPS * check_scale();
    test_varied_deltas();
    test_inc_unique();
    test_swap_drain();
    test_cas_loops();
    test_seed_pattern();
    return 0;
}
