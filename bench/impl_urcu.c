/*
 * impl_urcu.c - urcu_lfht: liburcu's lock-free resizable hash table
 * (cds_lfht) with one counter per key, added to with uatomic_add (a
 * locked add). The flavour is urcu-memb: readers need no quiescent-state
 * announcements (unlike urcu-qsbr) and pay no fence per read-side lock,
 * thanks to the membarrier system call; each thread registers once.
 *
 * The read-side lock is called through liburcu's shared library (no
 * _LGPL_SOURCE), as a program with any licence would; that costs two
 * function calls per op.
 *
 * Built only when pkg-config finds liburcu-cds and liburcu-memb
 * (bench/CMakeLists.txt); otherwise impl_urcu_stub.c reports it skipped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>
#include <urcu/uatomic.h>

#include "bench.h"

struct un_node {
    struct cds_lfht_node node;
    long count; /* uatomic_add / uatomic_read only */
    size_t len;
    char key[];
};
/* teardown threads its free list through count's storage */
_Static_assert(sizeof(long) >= sizeof(void *), "a long holds a pointer");

/* A 64-bit string hash of our own: 8 bytes at a time, each word mixed in
 * with a multiply, then a final avalanche. */
static unsigned long un_hash(const char *p, size_t len)
{
    uint64_t h = UINT64_C(0x243F6A8885A308D3) ^ (len * UINT64_C(0x9E3779B97F4A7C15));
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * UINT64_C(0xBF58476D1CE4E5B9);
        h ^= h >> 31;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * UINT64_C(0x94D049BB133111EB);
    h ^= h >> 29;
    h *= UINT64_C(0xBF58476D1CE4E5B9);
    h ^= h >> 32;
    return (unsigned long)h;
}

static int un_match(struct cds_lfht_node *node, const void *key)
{
    const struct un_node *n = caa_container_of(node, struct un_node, node);
    const struct bench_key *k = key;
    return n->len == k->len && memcmp(n->key, k->s, k->len) == 0;
}

/* Buckets for the workload's final key count (a power of two). */
static unsigned long un_buckets(const struct bench_run *run)
{
    unsigned long want = 1024;
    if (run->cfg->workload != W_INSERT)
        while (want < run->cfg->nkeys)
            want <<= 1;
    return want;
}

/* The table starts at its final size for the workloads with a known key
 * count, as a user who knows it would create it: growing a cds_lfht from
 * 1024 buckets to 2^20 while one thread preloads takes tens of seconds
 * here (the resize runs in call_rcu's worker, in steps, while the chains
 * grow long), which only delays the untimed preload. insert starts small
 * and grows: growth is what it measures. */
static int un_setup(struct bench_run *run)
{
    struct cds_lfht *ht = cds_lfht_new_flavor(
        un_buckets(run), 1, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
        &urcu_memb_flavor, NULL);
    if (ht == NULL)
        return -ENOMEM;
    run->state = ht;
    return 0;
}

/* Adds delta to the key: lookup under the read lock; on a miss, a new
 * node (already holding delta) goes in with add_unique, and if another
 * thread's node won the race ours was never visible and is freed. */
static inline int un_add_key(struct cds_lfht *ht, const struct bench_key *k,
                             int64_t delta)
{
    unsigned long h = un_hash(k->s, k->len);
    struct cds_lfht_iter iter;

    urcu_memb_read_lock();
    cds_lfht_lookup(ht, h, un_match, k, &iter);
    struct cds_lfht_node *found = cds_lfht_iter_get_node(&iter);
    if (found != NULL) {
        uatomic_add(&caa_container_of(found, struct un_node, node)->count,
                    (long)delta);
        urcu_memb_read_unlock();
        return 0;
    }
    urcu_memb_read_unlock();

    struct un_node *n = malloc(sizeof(*n) + k->len + 1);
    if (n == NULL)
        return -ENOMEM;
    cds_lfht_node_init(&n->node);
    n->count = (long)delta;
    n->len = k->len;
    memcpy(n->key, k->s, k->len);
    n->key[k->len] = '\0';

    urcu_memb_read_lock();
    found = cds_lfht_add_unique(ht, h, un_match, k, &n->node);
    if (found != &n->node)
        uatomic_add(&caa_container_of(found, struct un_node, node)->count,
                    (long)delta);
    urcu_memb_read_unlock();
    if (found != &n->node)
        free(n);
    return 0;
}

static int un_add(struct bench_run *run, const struct bench_key *key,
                  int64_t delta)
{
    return un_add_key(run->state, key, delta);
}

static int64_t un_get(struct cds_lfht *ht, const struct bench_key *k,
                      int *present)
{
    struct cds_lfht_iter iter;
    int64_t v = 0;
    urcu_memb_read_lock();
    cds_lfht_lookup(ht, un_hash(k->s, k->len), un_match, k, &iter);
    struct cds_lfht_node *found = cds_lfht_iter_get_node(&iter);
    if (found != NULL)
        v = uatomic_read(&caa_container_of(found, struct un_node, node)->count);
    urcu_memb_read_unlock();
    *present = found != NULL;
    return v;
}

static void un_work(struct bench_thread *th)
{
    struct cds_lfht *ht = th->run->state;
    uint64_t fails = 0;
    int64_t got = 0;
    BENCH_PICK_SETUP(th);

    switch (th->run->cfg->workload) {
    case W_HOT: {
        const struct bench_key hot = {th->run->hot_key, th->run->hot_len};
        BENCH_LOOP(th, (void)0, fails += un_add_key(ht, &hot, 1) != 0);
        break;
    }
    case W_UNIFORM:
    case W_ITERATE:
        BENCH_LOOP(th, BENCH_PICK_UNIFORM,
                   fails += un_add_key(ht, k, 1) != 0);
        break;
    case W_ZIPF:
        BENCH_LOOP(th, BENCH_PICK_ZIPF, fails += un_add_key(ht, k, 1) != 0);
        break;
    case W_MIXED:
        BENCH_LOOP(th, BENCH_PICK_MIXED, {
            if (is_get) {
                int present;
                got += un_get(ht, k, &present);
            } else {
                fails += un_add_key(ht, k, 1) != 0;
            }
        });
        break;
    case W_INSERT: {
        char *buf = th->keybuf;
        uint64_t seq = 0;
        struct bench_key nk;
        nk.s = buf;
        BENCH_LOOP(th, nk.len = bench_insert_key(buf, th->index, seq++),
                   fails += un_add_key(ht, &nk, 1) != 0);
        break;
    }
    default:
        break;
    }
    th->failures = fails;
    static _Atomic(int64_t) sink;
    atomic_fetch_add_explicit(&sink, got, memory_order_relaxed);
}

static int64_t un_iterate(struct bench_run *run)
{
    struct cds_lfht *ht = run->state;
    struct cds_lfht_iter iter;
    struct un_node *n;
    int64_t sum = 0;
    urcu_memb_read_lock();
    cds_lfht_for_each_entry(ht, &iter, n, node)
        sum += uatomic_read(&n->count);
    urcu_memb_read_unlock();
    return sum;
}

static int64_t un_value(struct bench_run *run, const struct bench_key *key,
                        int *present)
{
    return un_get(run->state, key, present);
}

static uint64_t un_size(struct bench_run *run)
{
    long before, after;
    unsigned long count;
    urcu_memb_read_lock();
    cds_lfht_count_nodes(run->state, &before, &count, &after);
    urcu_memb_read_unlock();
    return count;
}

static void un_thread_enter(struct bench_run *run)
{
    (void)run;
    urcu_memb_register_thread();
}

static void un_thread_exit(struct bench_run *run)
{
    (void)run;
    urcu_memb_unregister_thread();
}

static void un_teardown(struct bench_run *run)
{
    /* Every other thread has been joined: unlink all nodes, wait a grace
     * period for form's sake, free them, then the table. */
    struct cds_lfht *ht = run->state;
    struct cds_lfht_iter iter;
    struct un_node *n, *list = NULL;
    urcu_memb_read_lock();
    cds_lfht_for_each_entry(ht, &iter, n, node) {
        if (cds_lfht_del(ht, &n->node) == 0) {
            /* reuse count's storage as the free list link */
            memcpy(&n->count, &list, sizeof(list));
            list = n;
        }
    }
    urcu_memb_read_unlock();
    urcu_memb_synchronize_rcu();
    while (list != NULL) {
        struct un_node *next;
        memcpy(&next, &list->count, sizeof(next));
        free(list);
        list = next;
    }
    cds_lfht_destroy(ht, NULL);
    run->state = NULL;
}

const struct bench_impl bench_urcu_lfht = {
    .name = "urcu_lfht",
    .workloads = W_ALL_MAP,
    .setup = un_setup,
    .add = un_add,
    .thread_enter = un_thread_enter,
    .thread_exit = un_thread_exit,
    .work = un_work,
    .iterate = un_iterate,
    .value = un_value,
    .size = un_size,
    .teardown = un_teardown,
};
