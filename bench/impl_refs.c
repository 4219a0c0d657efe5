/*
 * impl_refs.c - reference tables for the keyed workloads with preloaded
 * keys (hot, uniform1k, zipf1m, mixed): the simplest hash tables that
 * could count by name, so that tally_map's by-name cost can be read
 * against what the structure alone costs. They are references, never
 * peers: none of them can insert a key while others count, remove one,
 * or give a thread-count-independent exact read while adds run.
 *
 *   ref_plain_table   one thread's table (reftable.h, pointer slots),
 *                     the count next to the key pointer, added with a
 *                     plain load and store. With T threads each thread
 *                     has its own private copy (the single-threaded speed
 *                     limit, T times); reads sum the copies.
 *   ref_xadd_table    the same table shared by all threads; the count is
 *                     added with one relaxed atomic fetch_add.
 *   ref_inline_table  the xadd table with keys of up to 16 bytes stored in
 *                     the slot itself (no load through a key pointer).
 *
 * All three hash with tally's own hash (src/hash.h) under a fixed secret.
 * The keys are preloaded before timing and never change while threads
 * run, so the timed loops need no synchronisation beyond the count.
 * mixed's gets read a count with a relaxed load (for ref_plain_table,
 * the thread's own copy's).
 */
#include <errno.h>
#include <stdlib.h>

#include "bench.h"
#include "reftable.h"

static _Atomic(int64_t) ref_sink;

static void sink(int64_t v)
{
    atomic_fetch_add_explicit(&ref_sink, v, memory_order_relaxed);
}

/* Only the thread that owns the copy writes the count: a relaxed load
 * and store is the plain add (no locked instruction), while keeping each
 * add a real memory access the compiler may not merge across the loop,
 * and keeping the final read after the join race-free. */
static inline void plain_inc(_Atomic(int64_t) *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static inline void xadd_inc(_Atomic(int64_t) *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static inline int64_t count_of(_Atomic(int64_t) *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- pointer-slot tables: ref_plain_table and ref_xadd_table ----------- */

struct rt_state {
    struct ref_table master; /* the preloaded keys; xadd counts here */
    struct ref_table *copy;  /* plain: one per thread, made by prepare */
    unsigned ncopies;
};

static int rt_setup(struct bench_run *run)
{
    struct rt_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    if (ref_table_init(&s->master) != 0) {
        free(s);
        return -ENOMEM;
    }
    run->state = s;
    return 0;
}

static int rt_add(struct bench_run *run, const struct bench_key *key,
                  int64_t delta)
{
    struct rt_state *s = run->state;
    struct ref_slot *slot = ref_table_insert(&s->master, key->s, key->len);
    if (slot == NULL)
        return -ENOMEM;
    atomic_fetch_add_explicit(&slot->count, delta, memory_order_relaxed);
    return 0;
}

static int plain_prepare(struct bench_run *run)
{
    struct rt_state *s = run->state;
    s->copy = calloc(run->cfg->threads, sizeof(*s->copy));
    if (s->copy == NULL)
        return -ENOMEM;
    for (; s->ncopies < run->cfg->threads; s->ncopies++)
        if (ref_table_clone(&s->master, &s->copy[s->ncopies]) != 0)
            return -ENOMEM;
    return 0;
}

/* One timed loop per (table, add) pair: INC is plain_inc or xadd_inc. */
#define RT_WORK(th, t, INC)                                              \
    do {                                                                 \
        uint64_t fails = 0;                                              \
        int64_t got = 0;                                                 \
        BENCH_PICK_SETUP(th);                                            \
        switch ((th)->run->cfg->workload) {                              \
        case W_HOT: {                                                    \
            const char *hk = (th)->run->hot_key;                         \
            const size_t hl = (th)->run->hot_len;                        \
            BENCH_LOOP(th, (void)0, {                                    \
                struct ref_slot *s_ = ref_table_find(t, hk, hl);         \
                if (s_ != NULL) INC(&s_->count); else fails++;           \
            });                                                          \
            break;                                                       \
        }                                                                \
        case W_UNIFORM:                                                  \
            BENCH_LOOP(th, BENCH_PICK_UNIFORM, {                         \
                struct ref_slot *s_ = ref_table_find(t, k->s, k->len);   \
                if (s_ != NULL) INC(&s_->count); else fails++;           \
            });                                                          \
            break;                                                       \
        case W_ZIPF:                                                     \
            BENCH_LOOP(th, BENCH_PICK_ZIPF, {                            \
                struct ref_slot *s_ = ref_table_find(t, k->s, k->len);   \
                if (s_ != NULL) INC(&s_->count); else fails++;           \
            });                                                          \
            break;                                                       \
        case W_MIXED:                                                    \
            BENCH_LOOP(th, BENCH_PICK_MIXED, {                           \
                struct ref_slot *s_ = ref_table_find(t, k->s, k->len);   \
                if (s_ == NULL) fails++;                                 \
                else if (is_get) got += count_of(&s_->count);            \
                else INC(&s_->count);                                    \
            });                                                          \
            break;                                                       \
        default:                                                         \
            break;                                                       \
        }                                                                \
        (th)->failures = fails;                                          \
        sink(got);                                                       \
    } while (0)

static void plain_work(struct bench_thread *th)
{
    struct rt_state *s = th->run->state;
    const struct ref_table *t = &s->copy[th->index];
    RT_WORK(th, t, plain_inc);
}

static void xadd_work(struct bench_thread *th)
{
    struct rt_state *s = th->run->state;
    const struct ref_table *t = &s->master;
    RT_WORK(th, t, xadd_inc);
}

static int64_t rt_value(struct bench_run *run, const struct bench_key *key,
                        int *present)
{
    struct rt_state *s = run->state;
    struct ref_slot *slot = ref_table_find(&s->master, key->s, key->len);
    *present = slot != NULL;
    if (slot == NULL)
        return 0;
    int64_t v = count_of(&slot->count);
    for (unsigned i = 0; i < s->ncopies; i++) {
        struct ref_slot *c = ref_table_find(&s->copy[i], key->s, key->len);
        if (c == NULL) {
            *present = 0; /* a copy lost a key: fails the check */
            return 0;
        }
        v += count_of(&c->count);
    }
    return v;
}

static uint64_t rt_size(struct bench_run *run)
{
    return ((struct rt_state *)run->state)->master.n;
}

static void rt_teardown(struct bench_run *run)
{
    struct rt_state *s = run->state;
    for (unsigned i = 0; i < s->ncopies; i++)
        ref_table_free_clone(&s->copy[i]);
    free(s->copy);
    ref_table_free(&s->master);
    free(s);
    run->state = NULL;
}

#define REF_WORKLOADS                                                    \
    (WBIT(W_HOT) | WBIT(W_UNIFORM) | WBIT(W_ZIPF) | WBIT(W_MIXED))

const struct bench_impl bench_ref_plain_table = {
    .name = "ref_plain_table",
    .workloads = REF_WORKLOADS,
    .setup = rt_setup,
    .add = rt_add,
    .prepare = plain_prepare,
    .work = plain_work,
    .value = rt_value,
    .size = rt_size,
    .teardown = rt_teardown,
};

const struct bench_impl bench_ref_xadd_table = {
    .name = "ref_xadd_table",
    .workloads = REF_WORKLOADS,
    .setup = rt_setup,
    .add = rt_add,
    .work = xadd_work,
    .value = rt_value,
    .size = rt_size,
    .teardown = rt_teardown,
};

/* ---- ref_inline_table ---------------------------------------------------- */

static int it_setup(struct bench_run *run)
{
    struct ref_itable *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    if (ref_itable_init(t) != 0) {
        free(t);
        return -ENOMEM;
    }
    run->state = t;
    return 0;
}

static int it_add(struct bench_run *run, const struct bench_key *key,
                  int64_t delta)
{
    struct ref_islot *s = ref_itable_insert(run->state, key->s, key->len);
    if (s == NULL)
        return -ENOMEM;
    atomic_fetch_add_explicit(&s->count, delta, memory_order_relaxed);
    return 0;
}

static void it_work(struct bench_thread *th)
{
    const struct ref_itable *t = th->run->state;
    uint64_t fails = 0;
    int64_t got = 0;
    BENCH_PICK_SETUP(th);
    switch (th->run->cfg->workload) {
    case W_HOT: {
        const char *hk = th->run->hot_key;
        const size_t hl = th->run->hot_len;
        BENCH_LOOP(th, (void)0, {
            struct ref_islot *s = ref_itable_find(t, hk, hl);
            if (s != NULL) xadd_inc(&s->count); else fails++;
        });
        break;
    }
    case W_UNIFORM:
        BENCH_LOOP(th, BENCH_PICK_UNIFORM, {
            struct ref_islot *s = ref_itable_find(t, k->s, k->len);
            if (s != NULL) xadd_inc(&s->count); else fails++;
        });
        break;
    case W_ZIPF:
        BENCH_LOOP(th, BENCH_PICK_ZIPF, {
            struct ref_islot *s = ref_itable_find(t, k->s, k->len);
            if (s != NULL) xadd_inc(&s->count); else fails++;
        });
        break;
    case W_MIXED:
        BENCH_LOOP(th, BENCH_PICK_MIXED, {
            struct ref_islot *s = ref_itable_find(t, k->s, k->len);
            if (s == NULL) fails++;
            else if (is_get) got += count_of(&s->count);
            else xadd_inc(&s->count);
        });
        break;
    default:
        break;
    }
    th->failures = fails;
    sink(got);
}

static int64_t it_value(struct bench_run *run, const struct bench_key *key,
                        int *present)
{
    struct ref_islot *s = ref_itable_find(run->state, key->s, key->len);
    *present = s != NULL;
    return s != NULL ? count_of(&s->count) : 0;
}

static uint64_t it_size(struct bench_run *run)
{
    return ((struct ref_itable *)run->state)->n;
}

static void it_teardown(struct bench_run *run)
{
    ref_itable_free(run->state);
    free(run->state);
    run->state = NULL;
}

const struct bench_impl bench_ref_inline_table = {
    .name = "ref_inline_table",
    .workloads = REF_WORKLOADS,
    .setup = it_setup,
    .add = it_add,
    .work = it_work,
    .value = it_value,
    .size = it_size,
    .teardown = it_teardown,
};
