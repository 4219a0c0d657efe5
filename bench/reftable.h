/*
 * reftable.h - the minimal string-keyed tables the benchmarks use as
 * references (impl_refs.c) and as the nginx-style name -> slot table of
 * the store benchmark (store_bench.c).
 *
 * HOW IT WORKS
 *
 * One open-addressing table, linear probing, a power-of-two number of
 * slots, grown (rehashed) to keep the load at most 1/2. The hash is
 * tally's own (src/hash.h, tally__hash) under a fixed secret, so that a
 * reference differs from tally_map only in structure, not in hashing.
 * Two slot layouts, both 32 bytes (two slots per cache line):
 *
 *   struct ref_slot    the full hash, a pointer to the table's own copy
 *                      of the key, the key's length, and the count. A hit
 *                      loads the slot, then the key bytes (two lines).
 *   struct ref_islot   keys of up to 16 bytes stored in the slot itself
 *                      (longer ones by pointer, as above), the length, the
 *                      hash's top 32 bits, and the count. A hit loads one
 *                      line.
 *
 * Inserts are single-threaded (the benchmarks preload their keys before
 * the timed threads start; pthread_create orders the inserts before the
 * threads' reads). While threads run, the slots' keys never change, so
 * lookups read them with plain loads; only the counts are atomics, and
 * the callers choose how they add to them.
 *
 * Not a general-purpose table: no remove, no concurrent insert, and an
 * insert that cannot allocate fails (returns NULL) without changing the
 * table.
 */
#ifndef TALLY_BENCH_REFTABLE_H
#define TALLY_BENCH_REFTABLE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h" /* src/: tally__hash, the map's own key hash */

/* The references' fixed secret (any odd-looking words do). */
static const struct tally__seed ref_seed = {{
    UINT64_C(0x243f6a8885a308d3), UINT64_C(0x13198a2e03707344),
    UINT64_C(0xa4093822299f31d0), UINT64_C(0x082efa98ec4e6c89),
}};

static inline uint64_t ref_hash(const void *key, size_t len)
{
    return tally__hash(&ref_seed, key, len);
}

/* ---- pointer slots ------------------------------------------------------ */

struct ref_slot {
    uint64_t hash;
    const unsigned char *key; /* the table's copy; NULL: empty slot */
    uint64_t len;
    _Atomic(int64_t) count;
};
_Static_assert(sizeof(struct ref_slot) == 32, "two slots per cache line");

struct ref_table {
    struct ref_slot *slot;
    size_t mask; /* slots - 1 */
    size_t n;    /* keys */
};

static inline struct ref_slot *ref_slots_alloc(size_t nslots)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, nslots * sizeof(struct ref_slot)) != 0)
        return NULL;
    memset(p, 0, nslots * sizeof(struct ref_slot));
    return p;
}

static inline int ref_table_init(struct ref_table *t)
{
    t->mask = 15;
    t->n = 0;
    t->slot = ref_slots_alloc(t->mask + 1);
    return t->slot != NULL ? 0 : -1;
}

static inline struct ref_slot *ref_table_find(const struct ref_table *t,
                                              const void *key, size_t len)
{
    const uint64_t h = ref_hash(key, len);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        struct ref_slot *s = &t->slot[i];
        if (s->key == NULL)
            return NULL;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

/* Places a slot's contents into an empty slot of slot[] (no key check). */
static inline void ref_place(struct ref_slot *slot, size_t mask,
                             const struct ref_slot *from)
{
    size_t i = from->hash & mask;
    while (slot[i].key != NULL)
        i = (i + 1) & mask;
    slot[i].hash = from->hash;
    slot[i].key = from->key;
    slot[i].len = from->len;
    atomic_init(&slot[i].count,
                atomic_load_explicit(&from->count, memory_order_relaxed));
}

/* The key's slot, inserting it (count 0) if absent; NULL without memory. */
static inline struct ref_slot *ref_table_insert(struct ref_table *t,
                                                const void *key, size_t len)
{
    struct ref_slot *s = ref_table_find(t, key, len);
    if (s != NULL)
        return s;
    if (2 * (t->n + 1) > t->mask + 1) {
        size_t mask = 2 * (t->mask + 1) - 1;
        struct ref_slot *slot = ref_slots_alloc(mask + 1);
        if (slot == NULL)
            return NULL;
        for (size_t i = 0; i <= t->mask; i++)
            if (t->slot[i].key != NULL)
                ref_place(slot, mask, &t->slot[i]);
        free(t->slot);
        t->slot = slot;
        t->mask = mask;
    }
    unsigned char *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, key, len);
    struct ref_slot fresh = {ref_hash(key, len), copy, len, 0};
    ref_place(t->slot, t->mask, &fresh);
    t->n++;
    return ref_table_find(t, key, len);
}

/* A copy of t's slots sharing t's key bytes (read-only): one thread's
 * private table. Free with ref_table_free_clone. 0 or -1. */
static inline int ref_table_clone(const struct ref_table *t,
                                  struct ref_table *out)
{
    out->mask = t->mask;
    out->n = t->n;
    out->slot = ref_slots_alloc(t->mask + 1);
    if (out->slot == NULL)
        return -1;
    for (size_t i = 0; i <= t->mask; i++) {
        out->slot[i].hash = t->slot[i].hash;
        out->slot[i].key = t->slot[i].key;
        out->slot[i].len = t->slot[i].len;
        atomic_init(&out->slot[i].count, 0);
    }
    return 0;
}

static inline void ref_table_free_clone(struct ref_table *t)
{
    free(t->slot);
    t->slot = NULL;
}

static inline void ref_table_free(struct ref_table *t)
{
    if (t->slot == NULL)
        return;
    for (size_t i = 0; i <= t->mask; i++)
        free((void *)t->slot[i].key);
    free(t->slot);
    t->slot = NULL;
}

/* ---- inline-key slots --------------------------------------------------- */

#define REF_INLINE_MAX 16

struct ref_islot {
    union {
        unsigned char b[REF_INLINE_MAX]; /* len <= 16: the key, 0-padded */
        const unsigned char *p;          /* len > 16: the table's copy */
    } key;
    uint32_t len1;   /* the key's length + 1; 0: empty slot */
    uint32_t hash32; /* the hash's top 32 bits */
    _Atomic(int64_t) count;
};
_Static_assert(sizeof(struct ref_islot) == 32, "two slots per cache line");

struct ref_itable {
    struct ref_islot *slot;
    size_t mask;
    size_t n;
};

static inline struct ref_islot *ref_islots_alloc(size_t nslots)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, nslots * sizeof(struct ref_islot)) != 0)
        return NULL;
    memset(p, 0, nslots * sizeof(struct ref_islot));
    return p;
}

static inline int ref_itable_init(struct ref_itable *t)
{
    t->mask = 15;
    t->n = 0;
    t->slot = ref_islots_alloc(t->mask + 1);
    return t->slot != NULL ? 0 : -1;
}

static inline const unsigned char *ref_islot_key(const struct ref_islot *s)
{
    return s->len1 - 1 <= REF_INLINE_MAX ? s->key.b : s->key.p;
}

static inline struct ref_islot *ref_itable_find(const struct ref_itable *t,
                                                const void *key, size_t len)
{
    const uint64_t h = ref_hash(key, len);
    const uint32_t h32 = (uint32_t)(h >> 32), len1 = (uint32_t)len + 1;
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        struct ref_islot *s = &t->slot[i];
        if (s->len1 == 0)
            return NULL;
        if (s->hash32 == h32 && s->len1 == len1 &&
            memcmp(ref_islot_key(s), key, len) == 0)
            return s;
    }
}

/* Moves a slot into an empty slot of slot[]; the slot's hash is needed
 * again (only 32 bits are kept), so it is recomputed from the key. */
static inline void ref_iplace(struct ref_islot *slot, size_t mask,
                              const struct ref_islot *from)
{
    size_t i = ref_hash(ref_islot_key(from), from->len1 - 1) & mask;
    while (slot[i].len1 != 0)
        i = (i + 1) & mask;
    memcpy(&slot[i].key, &from->key, sizeof(from->key));
    slot[i].len1 = from->len1;
    slot[i].hash32 = from->hash32;
    atomic_init(&slot[i].count,
                atomic_load_explicit(&from->count, memory_order_relaxed));
}

static inline struct ref_islot *ref_itable_insert(struct ref_itable *t,
                                                  const void *key, size_t len)
{
    struct ref_islot *s = ref_itable_find(t, key, len);
    if (s != NULL)
        return s;
    if (len >= UINT32_MAX)
        return NULL;
    if (2 * (t->n + 1) > t->mask + 1) {
        size_t mask = 2 * (t->mask + 1) - 1;
        struct ref_islot *slot = ref_islots_alloc(mask + 1);
        if (slot == NULL)
            return NULL;
        for (size_t i = 0; i <= t->mask; i++)
            if (t->slot[i].len1 != 0)
                ref_iplace(slot, mask, &t->slot[i]);
        free(t->slot);
        t->slot = slot;
        t->mask = mask;
    }
    struct ref_islot fresh;
    memset(&fresh, 0, sizeof(fresh));
    if (len <= REF_INLINE_MAX) {
        memcpy(fresh.key.b, key, len);
    } else {
        unsigned char *copy = malloc(len);
        if (copy == NULL)
            return NULL;
        memcpy(copy, key, len);
        fresh.key.p = copy;
    }
    fresh.len1 = (uint32_t)len + 1;
    fresh.hash32 = (uint32_t)(ref_hash(key, len) >> 32);
    ref_iplace(t->slot, t->mask, &fresh);
    t->n++;
    return ref_itable_find(t, key, len);
}

static inline void ref_itable_free(struct ref_itable *t)
{
    if (t->slot == NULL)
        return;
    for (size_t i = 0; i <= t->mask; i++)
        if (t->slot[i].len1 - 1 > REF_INLINE_MAX && t->slot[i].len1 != 0)
            free((void *)t->slot[i].key.p);
    free(t->slot);
    t->slot = NULL;
}

#endif /* TALLY_BENCH_REFTABLE_H */
