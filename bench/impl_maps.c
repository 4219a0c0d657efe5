/*
 * impl_maps.c - the keyed-counter implementations in C:
 *
 *   tally_map         by name: every op passes the key bytes
 *                     (tally_map_inc for hot, tally_map_add_n otherwise;
 *                     gets with tally_map_get_n; iterate with
 *                     tally_map_foreach)
 *   tally_map_handle  handles resolved for every key before timing, then
 *                     tally_handle_inc; mixed's gets go by name
 *   seed_mutex_map    tools/seedmap.c, the article's design: one
 *                     pthread mutex around a hash map (no iteration API,
 *                     so no iterate workload)
 *
 * Every op's return value is checked (a failure is counted and fails the
 * run); gets are summed into a sink so that they stay real work.
 */
#include <errno.h>
#include <stdlib.h>

#include "bench.h"
#include "seedmap.h"
#include "tally.h"

/* Where gets' values go; never read. */
static _Atomic(int64_t) bench_sink;

static void sink(int64_t v)
{
    atomic_fetch_add_explicit(&bench_sink, v, memory_order_relaxed);
}

/* ---- tally_map -------------------------------------------------------- */

struct tm_state {
    tally_map *m;
    tally_handle **handles; /* tally_map_handle only */
    size_t nhandles;
};

static int tm_setup(struct bench_run *run)
{
    struct tm_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    int rc = tally_map_new(&s->m);
    if (rc != 0) {
        free(s);
        return rc;
    }
    run->state = s;
    return 0;
}

static int tm_add(struct bench_run *run, const struct bench_key *key,
                  int64_t delta)
{
    struct tm_state *s = run->state;
    return tally_map_add_n(s->m, key->s, key->len, delta);
}

static void tm_work(struct bench_thread *th)
{
    tally_map *m = ((struct tm_state *)th->run->state)->m;
    uint64_t fails = 0;
    int64_t got = 0;
    BENCH_PICK_SETUP(th);

    switch (th->run->cfg->workload) {
    case W_HOT: {
        const char *key = th->run->hot_key;
        BENCH_LOOP(th, (void)0, fails += tally_map_inc(m, key) != 0);
        break;
    }
    case W_UNIFORM:
    case W_ITERATE:
        BENCH_LOOP(th, BENCH_PICK_UNIFORM,
                   fails += tally_map_add_n(m, k->s, k->len, 1) != 0);
        break;
    case W_ZIPF:
        BENCH_LOOP(th, BENCH_PICK_ZIPF,
                   fails += tally_map_add_n(m, k->s, k->len, 1) != 0);
        break;
    case W_MIXED:
        BENCH_LOOP(th, BENCH_PICK_MIXED, {
            if (is_get) {
                int64_t v = 0;
                fails += tally_map_get_n(m, k->s, k->len, &v) != 0;
                got += v;
            } else {
                fails += tally_map_add_n(m, k->s, k->len, 1) != 0;
            }
        });
        break;
    case W_INSERT: {
        char *buf = th->keybuf;
        uint64_t seq = 0;
        BENCH_LOOP(th,
                   size_t len = bench_insert_key(buf, th->index, seq++),
                   fails += tally_map_add_n(m, buf, len, 1) != 0);
        break;
    }
    default:
        break;
    }
    th->failures = fails;
    sink(got);
}

static int visit_sum(void *ctx, const void *key, size_t len, int64_t value)
{
    (void)key;
    (void)len;
    *(int64_t *)ctx += value;
    return 0;
}

static int64_t tm_iterate(struct bench_run *run)
{
    int64_t sum = 0;
    tally_map_foreach(((struct tm_state *)run->state)->m, visit_sum, &sum);
    return sum;
}

static int64_t tm_value(struct bench_run *run, const struct bench_key *key,
                        int *present)
{
    int64_t v = 0;
    int rc = tally_map_get_n(((struct tm_state *)run->state)->m, key->s,
                             key->len, &v);
    *present = rc == 0;
    return rc == 0 ? v : 0;
}

static uint64_t tm_size(struct bench_run *run)
{
    return tally_map_size(((struct tm_state *)run->state)->m);
}

static void tm_teardown(struct bench_run *run)
{
    struct tm_state *s = run->state;
    for (size_t i = 0; i < s->nhandles; i++)
        tally_handle_release(s->handles[i]);
    free(s->handles);
    tally_map_free(s->m);
    free(s);
    run->state = NULL;
}

const struct bench_impl bench_tally_map = {
    .name = "tally_map",
    .workloads = W_ALL_MAP,
    .setup = tm_setup,
    .add = tm_add,
    .work = tm_work,
    .iterate = tm_iterate,
    .value = tm_value,
    .size = tm_size,
    .teardown = tm_teardown,
};

/* ---- tally_map_handle ------------------------------------------------- */

static int th_prepare(struct bench_run *run)
{
    struct tm_state *s = run->state;
    size_t n = run->cfg->workload == W_HOT ? 1 : run->cfg->nkeys;
    s->handles = calloc(n, sizeof(*s->handles));
    if (s->handles == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = run->cfg->workload == W_HOT
                     ? tally_map_handle(s->m, run->hot_key, &s->handles[i])
                     : tally_map_handle_n(s->m, run->keys[i].s,
                                          run->keys[i].len, &s->handles[i]);
        if (rc != 0)
            return rc;
        s->nhandles = i + 1;
    }
    return 0;
}

static void th_work(struct bench_thread *th)
{
    const struct tm_state *s = th->run->state;
    tally_map *m = s->m;
    tally_handle *const *h = s->handles;
    uint64_t fails = 0;
    int64_t got = 0;
    BENCH_PICK_SETUP(th);

    switch (th->run->cfg->workload) {
    case W_HOT: {
        tally_handle *h0 = h[0];
        BENCH_LOOP(th, (void)0, tally_handle_inc(h0));
        break;
    }
    case W_UNIFORM:
        BENCH_LOOP(th, BENCH_PICK_UNIFORM, tally_handle_inc(h[idx]));
        break;
    case W_ZIPF:
        BENCH_LOOP(th, BENCH_PICK_ZIPF, tally_handle_inc(h[idx]));
        break;
    case W_MIXED:
        BENCH_LOOP(th, BENCH_PICK_MIXED, {
            if (is_get) {
                int64_t v = 0;
                fails += tally_map_get_n(m, k->s, k->len, &v) != 0;
                got += v;
            } else {
                tally_handle_inc(h[idx]);
            }
        });
        break;
    default:
        break;
    }
    th->failures = fails;
    sink(got);
}

const struct bench_impl bench_tally_map_handle = {
    .name = "tally_map_handle",
    .workloads = WBIT(W_HOT) | WBIT(W_UNIFORM) | WBIT(W_ZIPF) |
                 WBIT(W_MIXED),
    .setup = tm_setup,
    .add = tm_add,
    .prepare = th_prepare,
    .work = th_work,
    .value = tm_value,
    .size = tm_size,
    .teardown = tm_teardown,
};

/* ---- seed_mutex_map --------------------------------------------------- */

static int sm_setup(struct bench_run *run)
{
    seedmap *m;
    int rc = seedmap_new(&m);
    if (rc == 0)
        run->state = m;
    return rc;
}

static int sm_add(struct bench_run *run, const struct bench_key *key,
                  int64_t delta)
{
    return seedmap_add_n(run->state, key->s, key->len, delta);
}

static void sm_work(struct bench_thread *th)
{
    seedmap *m = th->run->state;
    uint64_t fails = 0;
    int64_t got = 0;
    BENCH_PICK_SETUP(th);

    switch (th->run->cfg->workload) {
    case W_HOT: {
        const char *key = th->run->hot_key;
        BENCH_LOOP(th, (void)0, fails += seedmap_inc(m, key) != 0);
        break;
    }
    case W_UNIFORM:
        BENCH_LOOP(th, BENCH_PICK_UNIFORM,
                   fails += seedmap_add_n(m, k->s, k->len, 1) != 0);
        break;
    case W_ZIPF:
        BENCH_LOOP(th, BENCH_PICK_ZIPF,
                   fails += seedmap_add_n(m, k->s, k->len, 1) != 0);
        break;
    case W_MIXED:
        BENCH_LOOP(th, BENCH_PICK_MIXED, {
            if (is_get)
                got += seedmap_value_n(m, k->s, k->len);
            else
                fails += seedmap_add_n(m, k->s, k->len, 1) != 0;
        });
        break;
    case W_INSERT: {
        char *buf = th->keybuf;
        uint64_t seq = 0;
        BENCH_LOOP(th,
                   size_t len = bench_insert_key(buf, th->index, seq++),
                   fails += seedmap_add_n(m, buf, len, 1) != 0);
        break;
    }
    default:
        break;
    }
    th->failures = fails;
    sink(got);
}

static int64_t sm_value(struct bench_run *run, const struct bench_key *key,
                        int *present)
{
    /* seedmap cannot tell an absent key from a 0: "unknown" */
    *present = -1;
    return seedmap_value_n(run->state, key->s, key->len);
}

static uint64_t sm_size(struct bench_run *run)
{
    return seedmap_size(run->state);
}

static void sm_teardown(struct bench_run *run)
{
    seedmap_free(run->state);
    run->state = NULL;
}

const struct bench_impl bench_seed_mutex_map = {
    .name = "seed_mutex_map",
    .workloads = W_ALL_MAP & ~WBIT(W_ITERATE),
    .setup = sm_setup,
    .add = sm_add,
    .work = sm_work,
    .value = sm_value,
    .size = sm_size,
    .teardown = sm_teardown,
};
