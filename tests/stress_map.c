/*
 * stress_map.c - tally_map under concurrency; every check is an exact,
 * closed-form total.
 *
 *   1. The accounting rule, per key: the sum of all successful adds (by
 *      key and by handle) equals the values returned by remove, plus the
 *      drained amounts, plus the value left. Over 64 hot keys run, at
 *      once: threads adding by key, a thread adding through handles that
 *      it takes and releases over and over (for keys that get removed
 *      under it), a remover, a drainer, a foreach reader (values of an
 *      only-incremented map are never negative), and waves of short-lived
 *      threads that add once and exit. Each thread keeps its own per-key
 *      sums; they are added up after the joins.
 *  1b. Removes racing threads that add to one key in a tight loop (the
 *      path that reuses the thread's last entry): exact accounting.
 *   2. The article's program: 1000 threads each tally_map_inc(m,
 *      "somekey") once; always exactly 1000, repeated.
 *   3. Insert-heavy: threads create distinct keys at once; the size is the
 *      total and every value is 1.
 *
 * TALLY_STRESS_SEED picks the random streams (printed at start, so a
 * failing run can be repeated); TALLY_STRESS_SCALE multiplies the sizes.
 * At scale 1 the program runs well under 10 s on 2 cores under TSan.
 */
#include "tally.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifdef TALLY_TSAN
/* 1000 thread starts cost about 1 s under TSan on 2 cores. */
enum {
    OPS = 30000,
    WAVES = 30,
    HOT_OPS = 200000,
    SEED_REPEATS = 3,
    INSERT_KEYS = 5000
};
#else
enum {
    OPS = 300000,
    WAVES = 100,
    HOT_OPS = 2000000,
    SEED_REPEATS = 10,
    INSERT_KEYS = 40000
};
#endif

enum {
    KEYS = 64,
    ADDERS = 2,
    WAVE_THREADS = 8,
    SEED_THREADS = 1000,
    MIN_TAKES = 20
};

static unsigned g_scale;
static uint64_t g_seed;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

static uint64_t rng_seed(uint64_t stream)
{
    uint64_t s = g_seed ^ (stream * UINT64_C(0x9e3779b97f4a7c15));
    return s != 0 ? s : 1;
}

/* ------------------------------------------------------------------ */
/* 1. The accounting rule                                              */
/* ------------------------------------------------------------------ */

static void key_name(char buf[8], unsigned k)
{
    snprintf(buf, 8, "hot%02u", k);
}

/* The index of a key seen by a visitor; fails on a key never added. */
static unsigned key_index(const void *key, size_t len)
{
    char buf[8];
    unsigned k;

    CHECK_EQ(len, 5);
    memcpy(buf, key, len);
    buf[len] = '\0';
    CHECK_EQ(sscanf(buf, "hot%2u", &k), 1);
    CHECK_LT(k, KEYS);
    return k;
}

struct acct {
    tally_map *m;
    atomic_bool stop;          /* set once every adding thread is done */
    atomic_uint removed_some;  /* removes that returned a non-zero value */
    atomic_uint drained_some;  /* drains that took something */
    int64_t bound;             /* far above any value this test makes */
};

/* Per-thread sums, mod 2^64; read by main after the joins. */
struct acct_arg {
    struct acct *ctx;
    uint64_t stream;
    uint64_t sum[KEYS];
    uint64_t ops; /* removes, drains, visits: for the progress checks */
};

/* An adding thread does its share of the work and then goes on adding
 * until the remover and the drainer have each taken a non-zero amount
 * MIN_TAKES times, so that on every run removes and drains certainly race
 * adds (the extra adds are counted like the others). The counters order
 * nothing. */
static bool takers_done(struct acct *ctx)
{
    return atomic_load_explicit(&ctx->removed_some, memory_order_relaxed) >=
               MIN_TAKES &&
           atomic_load_explicit(&ctx->drained_some, memory_order_relaxed) >=
               MIN_TAKES;
}

static void *adder_by_key(void *p)
{
    struct acct_arg *a = p;
    uint64_t s = rng_seed(a->stream), ops = (uint64_t)OPS * g_scale;
    char key[8];

    for (uint64_t i = 0; i < ops || !takers_done(a->ctx); i++) {
        uint64_t r = rng_next(&s);
        unsigned k = (unsigned)(r % KEYS);
        int64_t delta = (int64_t)(1 + (r >> 32) % 5);
        key_name(key, k);
        /* One add in 16 starts a burst of 70..133 adds to its key: one
         * thread adding to a key many times in a row makes it hot
         * (per-thread cells), so keys keep turning hot (each life of a
         * key starts cold) while removes, drains and handles race. */
        unsigned burst = (r >> 44) % 16 == 0 ? 70 + (unsigned)((r >> 48) % 64)
                                             : 1;
        for (unsigned b = 0; b < burst; b++) {
            if ((r >> 40) & 1) {
                CHECK_EQ(tally_map_add(a->ctx->m, key, delta), 0);
            } else {
                CHECK_EQ(tally_map_add_n(a->ctx->m, key, 5, delta), 0);
            }
            a->sum[k] += (uint64_t)delta;
        }
    }
    return NULL;
}

/* Takes a handle, adds through it 1..64 times, releases it; again. Many
 * of these handles see their key removed while they are held. */
static void *adder_by_handle(void *p)
{
    struct acct_arg *a = p;
    uint64_t s = rng_seed(a->stream), ops = (uint64_t)OPS * g_scale;
    char key[8];
    uint64_t i = 0;

    while (i < ops || !takers_done(a->ctx)) {
        uint64_t r = rng_next(&s);
        unsigned k = (unsigned)(r % KEYS);
        unsigned n = 1 + (unsigned)((r >> 20) % 64);
        tally_handle *h;
        key_name(key, k);
        CHECK_EQ(tally_map_handle(a->ctx->m, key, &h), 0);
        for (unsigned j = 0; j < n; j++, i++) {
            int64_t delta = (int64_t)(1 + (j + (r >> 40)) % 3);
            if (j % 2)
                tally_handle_add(h, delta);
            else {
                tally_handle_inc(h);
                delta = 1;
            }
            a->sum[k] += (uint64_t)delta;
        }
        tally_handle_release(h);
    }
    return NULL;
}

static void *remover(void *p)
{
    struct acct_arg *a = p;
    uint64_t s = rng_seed(a->stream);
    char key[8];

    while (!atomic_load_explicit(&a->ctx->stop, memory_order_relaxed)) {
        unsigned k = (unsigned)(rng_next(&s) % KEYS);
        int64_t v = -1;
        key_name(key, k);
        int rc = tally_map_remove(a->ctx->m, key, &v);
        if (rc == -ENOENT) {
            CHECK_EQ(v, -1);
            continue;
        }
        CHECK_EQ(rc, 0);
        CHECK_GE(v, 0); /* every add is positive */
        CHECK_LE(v, a->ctx->bound);
        a->sum[k] += (uint64_t)v;
        a->ops++;
        if (v != 0)
            atomic_fetch_add_explicit(&a->ctx->removed_some, 1,
                                      memory_order_relaxed);
    }
    return NULL;
}

static int drain_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct acct_arg *a = p;
    unsigned k = key_index(key, len);

    CHECK_GT(value, 0); /* drain skips zero; nothing is ever negative */
    CHECK_LE(value, a->ctx->bound);
    a->sum[k] += (uint64_t)value;
    return 0;
}

static void *drainer(void *p)
{
    struct acct_arg *a = p;

    while (!atomic_load_explicit(&a->ctx->stop, memory_order_relaxed)) {
        uint64_t before = 0, after = 0;
        for (unsigned k = 0; k < KEYS; k++)
            before += a->sum[k];
        CHECK_EQ(tally_map_drain(a->ctx->m, drain_fn, a), 0);
        for (unsigned k = 0; k < KEYS; k++)
            after += a->sum[k];
        a->ops++;
        if (after != before)
            atomic_fetch_add_explicit(&a->ctx->drained_some, 1,
                                      memory_order_relaxed);
    }
    return NULL;
}

static int read_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct acct_arg *a = p;

    (void)key_index(key, len);
    CHECK_GE(value, 0);
    CHECK_LE(value, a->ctx->bound);
    a->ops++;
    return 0;
}

static void *reader(void *p)
{
    struct acct_arg *a = p;
    char key[8];
    uint64_t s = rng_seed(a->stream);

    while (!atomic_load_explicit(&a->ctx->stop, memory_order_relaxed)) {
        CHECK_EQ(tally_map_foreach(a->ctx->m, read_fn, a), 0);
        CHECK_LE(tally_map_size(a->ctx->m), KEYS);
        /* Point reads too: present or not, never negative. */
        int64_t v = -1;
        key_name(key, (unsigned)(rng_next(&s) % KEYS));
        int rc = tally_map_get(a->ctx->m, key, &v);
        CHECK(rc == 0 || rc == -ENOENT);
        CHECK(rc == 0 ? v >= 0 : v == -1);
    }
    return NULL;
}

/* A short-lived thread: one add (by key or through a fresh handle), then
 * exit, which folds its cells. */
struct once_arg {
    tally_map *m;
    unsigned k;
    int64_t delta;
    bool by_handle;
};

static void *add_once(void *p)
{
    struct once_arg *o = p;
    char key[8];

    key_name(key, o->k);
    if (o->by_handle) {
        tally_handle *h;
        CHECK_EQ(tally_map_handle(o->m, key, &h), 0);
        tally_handle_add(h, o->delta);
        tally_handle_release(h);
    } else {
        CHECK_EQ(tally_map_add(o->m, key, o->delta), 0);
    }
    return NULL;
}

static void *spawner(void *p)
{
    struct acct_arg *a = p;
    uint64_t s = rng_seed(a->stream);
    unsigned waves = WAVES * g_scale;
    struct once_arg args[WAVE_THREADS];

    for (unsigned w = 0; w < waves || !takers_done(a->ctx); w++) {
        for (unsigned t = 0; t < WAVE_THREADS; t++) {
            uint64_t r = rng_next(&s);
            args[t] = (struct once_arg){a->ctx->m, (unsigned)(r % KEYS),
                                        (int64_t)(1 + (r >> 32) % 9),
                                        (r >> 48) & 1};
        }
        check_threads_run(WAVE_THREADS, add_once, args, sizeof args[0]);
        for (unsigned t = 0; t < WAVE_THREADS; t++)
            a->sum[args[t].k] += (uint64_t)args[t].delta;
    }
    return NULL;
}

static int left_fn(void *p, const void *key, size_t len, int64_t value)
{
    uint64_t *left = p;
    unsigned k = key_index(key, len);

    CHECK_EQ(left[KEYS + k], 0); /* quiescent: each key once */
    left[KEYS + k] = 1;
    left[k] += (uint64_t)value;
    return 0;
}

static void test_accounting(void)
{
    enum {
        PRODUCERS = ADDERS + 2, /* by key, by handle, spawner */
        TAKERS = 3              /* remover, drainer, reader */
    };
    static struct acct_arg prod[PRODUCERS], take[TAKERS];
    struct acct ctx;
    pthread_t ptid[PRODUCERS], ttid[TAKERS];
    void *(*const pfn[PRODUCERS])(void *) = {adder_by_key, adder_by_key,
                                             adder_by_handle, spawner};
    void *(*const tfn[TAKERS])(void *) = {remover, drainer, reader};
    uint64_t left[2 * KEYS] = {0};

    CHECK_EQ(tally_map_new(&ctx.m), 0);
    atomic_init(&ctx.stop, false);
    atomic_init(&ctx.removed_some, 0);
    atomic_init(&ctx.drained_some, 0);
    ctx.bound = INT64_C(1) << 48;

    for (int i = 0; i < TAKERS; i++) {
        memset(&take[i], 0, sizeof take[i]);
        take[i].ctx = &ctx;
        take[i].stream = 100 + (uint64_t)i;
        CHECK_EQ(pthread_create(&ttid[i], NULL, tfn[i], &take[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        memset(&prod[i], 0, sizeof prod[i]);
        prod[i].ctx = &ctx;
        prod[i].stream = 1 + (uint64_t)i;
        CHECK_EQ(pthread_create(&ptid[i], NULL, pfn[i], &prod[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        CHECK_EQ(pthread_join(ptid[i], NULL), 0);
    atomic_store_explicit(&ctx.stop, true, memory_order_relaxed);
    for (int i = 0; i < TAKERS; i++)
        CHECK_EQ(pthread_join(ttid[i], NULL), 0);

    CHECK_GT(atomic_load(&ctx.removed_some), 0);
    CHECK_GT(atomic_load(&ctx.drained_some), 0);
    /* Late adds (raced with a remove) reach the key's next life once the
     * map settles them: sync does it now. */
    CHECK_EQ(tally_map_sync(ctx.m), 0);
    CHECK_EQ(tally_map_foreach(ctx.m, left_fn, left), 0);
    size_t present = 0;
    for (unsigned k = 0; k < KEYS; k++)
        present += left[KEYS + k];
    CHECK_EQ(tally_map_size(ctx.m), present);

    for (unsigned k = 0; k < KEYS; k++) {
        uint64_t added = 0, removed = take[0].sum[k], drained = take[1].sum[k];
        for (int i = 0; i < PRODUCERS; i++)
            added += prod[i].sum[k];
        if (added != removed + drained + left[k]) {
            fprintf(stderr,
                    "key hot%02u (seed %llu): added %llu != removed %llu + "
                    "drained %llu + left %llu\n",
                    k, (unsigned long long)g_seed, (unsigned long long)added,
                    (unsigned long long)removed, (unsigned long long)drained,
                    (unsigned long long)left[k]);
            CHECK_EQ(added, removed + drained + left[k]);
        }
    }
    tally_map_free(ctx.m);
}

/* ------------------------------------------------------------------ */
/* 1b. Removes racing threads that hammer one key                      */
/* ------------------------------------------------------------------ */

/*
 * The pattern of a hot counter: threads add to one key in a tight loop
 * (the path where a thread reuses the entry it found last time) while
 * another thread removes that key over and over. Every add must land in
 * a removed value or in the value left; an add through a stale entry
 * would be lost (and read freed memory: ASan reports it).
 */
enum { HOT_ADDERS = 2 };

struct hot_ctx {
    tally_map *m;
    atomic_bool stop;
    atomic_uint removes; /* removes that returned a non-zero value */
};

struct hot_arg {
    struct hot_ctx *ctx;
    int t;
    uint64_t sum; /* adders: added; remover: removed */
};

static void *hot_adder(void *p)
{
    struct hot_arg *a = p;
    uint64_t ops = (uint64_t)HOT_OPS * g_scale;

    /* Goes on past its share until the remover has taken MIN_TAKES
     * non-zero values, so that removes certainly race these adds. */
    for (uint64_t i = 0;
         i < ops || atomic_load_explicit(&a->ctx->removes,
                                         memory_order_relaxed) < MIN_TAKES;
         i++) {
        int64_t delta = 1 + (int64_t)((i + (uint64_t)a->t) % 3);
        CHECK_EQ(tally_map_add(a->ctx->m, "hot", delta), 0);
        a->sum += (uint64_t)delta;
    }
    return NULL;
}

static void *hot_remover(void *p)
{
    struct hot_arg *a = p;

    while (!atomic_load_explicit(&a->ctx->stop, memory_order_relaxed)) {
        int64_t v = -1;
        int rc = tally_map_remove(a->ctx->m, "hot", &v);
        if (rc == -ENOENT)
            continue;
        CHECK_EQ(rc, 0);
        CHECK_GE(v, 0);
        a->sum += (uint64_t)v;
        if (v != 0)
            atomic_fetch_add_explicit(&a->ctx->removes, 1,
                                      memory_order_relaxed);
    }
    return NULL;
}

static void test_remove_hot_key(void)
{
    struct hot_ctx ctx;
    struct hot_arg adders[HOT_ADDERS], rem = {&ctx, 0, 0};
    pthread_t tid;
    uint64_t added = 0;
    int64_t left = 0;

    CHECK_EQ(tally_map_new(&ctx.m), 0);
    atomic_init(&ctx.stop, false);
    atomic_init(&ctx.removes, 0);
    CHECK_EQ(pthread_create(&tid, NULL, hot_remover, &rem), 0);
    for (int t = 0; t < HOT_ADDERS; t++)
        adders[t] = (struct hot_arg){&ctx, t, 0};
    check_threads_run(HOT_ADDERS, hot_adder, adders, sizeof adders[0]);
    atomic_store_explicit(&ctx.stop, true, memory_order_relaxed);
    CHECK_EQ(pthread_join(tid, NULL), 0);
    for (int t = 0; t < HOT_ADDERS; t++)
        added += adders[t].sum;
    CHECK_EQ(tally_map_sync(ctx.m), 0); /* late adds to the next life */
    int rc = tally_map_get(ctx.m, "hot", &left);
    CHECK(rc == 0 || rc == -ENOENT);
    if (added != rem.sum + (uint64_t)left)
        fprintf(stderr, "hot key: added %llu != removed %llu + left %lld\n",
                (unsigned long long)added, (unsigned long long)rem.sum,
                (long long)left);
    CHECK_EQ(added, rem.sum + (uint64_t)left);
    tally_map_free(ctx.m);
}

/* ------------------------------------------------------------------ */
/* 2. The article's program                                            */
/* ------------------------------------------------------------------ */

static void *inc_somekey(void *p)
{
    CHECK_EQ(tally_map_inc(p, "somekey"), 0);
    return NULL;
}

static void test_seed_pattern(void)
{
    unsigned repeats = SEED_REPEATS * g_scale;
    tally_map *kept;
    int64_t v;

    /* Even repeats: a new map each time. Odd repeats: one map kept, the
     * key removed after each run (so each run creates it again). */
    CHECK_EQ(tally_map_new(&kept), 0);
    for (unsigned r = 0; r < repeats; r++) {
        if (r % 2 == 0) {
            tally_map *m;
            CHECK_EQ(tally_map_new(&m), 0);
            check_threads_run(SEED_THREADS, inc_somekey, m, 0);
            CHECK_EQ(tally_map_value(m, "somekey"), SEED_THREADS);
            CHECK_EQ(tally_map_size(m), 1);
            tally_map_free(m);
        } else {
            check_threads_run(SEED_THREADS, inc_somekey, kept, 0);
            CHECK_EQ(tally_map_size(kept), 1);
            CHECK_EQ(tally_map_remove(kept, "somekey", &v), 0);
            CHECK_EQ(v, SEED_THREADS);
        }
    }
    tally_map_free(kept);
}

/* ------------------------------------------------------------------ */
/* 3. Insert-heavy                                                     */
/* ------------------------------------------------------------------ */

enum { INSERTERS = 4 };

struct insert_arg {
    tally_map *m;
    unsigned t, n;
};

static void *inserter(void *p)
{
    struct insert_arg *a = p;
    char key[32];

    /* Interleave by index so all threads grow the same shards at once. */
    for (unsigned i = 0; i < a->n; i++) {
        snprintf(key, sizeof key, "ins-%u-%u", i, a->t);
        CHECK_EQ(tally_map_inc(a->m, key), 0);
    }
    return NULL;
}

struct insert_seen {
    unsigned char *seen;
    unsigned n;
    size_t visits;
};

static int insert_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct insert_seen *s = p;
    char buf[32];
    unsigned i, t;

    CHECK_LT(len, sizeof buf);
    memcpy(buf, key, len);
    buf[len] = '\0';
    CHECK_EQ(sscanf(buf, "ins-%u-%u", &i, &t), 2);
    CHECK_LT(i, s->n);
    CHECK_LT(t, INSERTERS);
    CHECK_EQ(s->seen[t * s->n + i], 0);
    s->seen[t * s->n + i] = 1;
    s->visits++;
    CHECK_EQ(value, 1);
    return 0;
}

static void test_insert_heavy(void)
{
    struct insert_arg args[INSERTERS];
    struct insert_seen s;
    unsigned n = INSERT_KEYS * g_scale;
    tally_map *m;
    char key[32];

    CHECK_EQ(tally_map_new(&m), 0);
    for (unsigned t = 0; t < INSERTERS; t++)
        args[t] = (struct insert_arg){m, t, n};
    check_threads_run(INSERTERS, inserter, args, sizeof args[0]);
    CHECK_EQ(tally_map_size(m), (size_t)INSERTERS * n);

    s.n = n;
    s.visits = 0;
    s.seen = calloc((size_t)INSERTERS * n, 1);
    CHECK(s.seen != NULL);
    CHECK_EQ(tally_map_foreach(m, insert_fn, &s), 0);
    CHECK_EQ(s.visits, (size_t)INSERTERS * n);
    free(s.seen);
    for (unsigned t = 0; t < INSERTERS; t++) {
        for (unsigned i = 0; i < n; i++) {
            int64_t v = 0;
            snprintf(key, sizeof key, "ins-%u-%u", i, t);
            CHECK_EQ(tally_map_get(m, key, &v), 0);
            CHECK_EQ(v, 1);
        }
    }
    tally_map_free(m);
}

int main(void)
{
    const char *seed = getenv("TALLY_STRESS_SEED");

    g_scale = check_scale();
    g_seed = seed != NULL && *seed != '\0' ? strtoull(seed, NULL, 0)
                                           : UINT64_C(20240601);
    printf("stress_map: TALLY_STRESS_SEED=%llu scale %u\n",
           (unsigned long long)g_seed, g_scale);
    fflush(stdout);
    test_accounting();
    test_remove_hot_key();
    test_seed_pattern();
    test_insert_heavy();
    return 0;
}
