/*
 * map.c - tally_map: the article's SafeCounter, concurrent and scalable.
 *
 * HOW IT WORKS
 *
 * A map is 64 shards, picked by the top bits of the key's hash. A shard
 * holds an open-addressing table (linear probing, power-of-two size) of
 * slots. A slot is 0 (empty), TOMB (a removed key; probing goes on past
 * it) or a pointer to an entry with 16 bits of the hash packed into its
 * unused top bits, so a probe rarely touches an entry whose key differs.
 * An entry holds the key's bytes and the key's counter id: the key's count
 * lives in per-thread cells exactly like a tally_adder's (cells.h), so adds
 * to one hot key from many threads write no shared cache line.
 *
 * Invariants (who writes what):
 *   - shard->lock is held by every writer of a shard: insert, remove,
 *     resize, handle creation. Adds to existing keys, gets, foreach and
 *     drain never take it.
 *   - A slot goes 0 -> entry (insert), entry -> TOMB (remove), TOMB ->
 *     entry (insert reusing it), all under the lock. A live entry never
 *     moves within a table: only a resize moves it, into a new table.
 *   - A table is never changed after a resize replaced it; the old one is
 *     kept on shard->retired until a grace period has passed.
 *   - shard->handles lists the live handles of the shard's keys; linked at
 *     creation, unlinked at release, walked by remove (which marks the
 *     removed entry's handles dead), all under the lock.
 *   - An entry's id, len and key bytes are immutable while it is reachable.
 *     Its refs count the table's link (1 while in a table) plus handles;
 *     DEAD is set once, under the lock, when it is unlinked.
 *   - The table has at least one empty slot (load, tombstones included,
 *     is at most 3/4), so a probe always ends.
 *
 * What a reader can see: a reader (a lookup inside a read-side section,
 * cells.h) loads the shard's table and probes it. It may find an entry
 * that is being removed, or miss one being inserted; it never sees freed
 * memory, because entries and tables are freed only after a grace period
 * that began after they were unlinked.
 *
 * Ordering:
 *   - Inserting publishes a fully built entry with a release store of its
 *     slot; readers load slots with acquire. A resize publishes the filled
 *     new table with a release store of shard->table; readers load it with
 *     acquire.
 *   - Unlinking a slot is a relaxed store: it publishes nothing, and the
 *     grace period that follows supplies the fence that orders it before
 *     the remover's reads of the cells (cells.c, tally__rcu_synchronize).
 *
 * Remove: unlink under the lock, wait a grace period (every add that found
 * the entry has then finished), then take the key's final value from its
 * cells and give the id back. If handles still point at the entry, the id
 * stays with it: the value read is subtracted, and what handle adds leave
 * there afterwards reaches the key's next life when the last handle goes.
 *
 * Drain and remove both "read the value, then take it out" under
 * m->drain_lock, so no amount is counted by both.
 *
 * Progress: add to an existing key, get and handle add are lock-free (and
 * wait-free but for a thread's first touch of a cell block); insert takes
 * the shard lock; remove takes the shard lock and waits for a grace period;
 * handle creation and release take the shard lock.
 *
 * LIMITATIONS
 *
 *   - foreach and drain run inside one read-side section, so a remove on
 *     another thread waits until they finish, and their callback must not
 *     remove keys (-EDEADLK).
 *   - A key removed and created again while a foreach runs may be visited
 *     in both lives (two separate counts, each counted once).
 *   - Every remove waits for its own grace period (a membarrier() call and
 *     a scan of the thread records: about 3-4 us on the 2-core machine,
 *     tests/churn_map). A thread preempted inside a read-side section (an
 *     add by key) holds grace periods up until it runs again, so with more
 *     busy threads than cores a remove can take milliseconds. Adds never
 *     wait for removes.
 */
#include "tally.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "cells.h"
#include "hash.h"

#define SHARD_BITS 6
#define NSHARDS (1u << SHARD_BITS)
#define MIN_SLOTS 16u

#define SLOT_EMPTY ((uintptr_t)0)
#define SLOT_TOMB ((uintptr_t)1)
#define SLOT_PTR_MASK (((uintptr_t)1 << 48) - 1)
#define ENTRY_DEAD 0x80000000u

struct entry {
    uint32_t id;                 /* counter id, immutable */
    uint32_t len;                /* key length, immutable */
    _Atomic(uint32_t) refs;      /* table link + handles, | ENTRY_DEAD */
    unsigned char key[];         /* len bytes */
};

struct table {
    size_t mask;                 /* slots - 1 */
    size_t used;                 /* live + tombstones; under the lock */
    struct table *retired_next;  /* link on shard->retired */
    _Atomic(uintptr_t) slot[];
};

struct shard {
    _Alignas(TALLY_CACHE_LINE) pthread_mutex_t lock;
    _Atomic(struct table *) table; /* NULL until the first insert */
    _Atomic(size_t) live;          /* written under the lock */
    struct table *retired;         /* under the lock */
    struct tally_handle *handles;  /* this shard's live handles; under the
                                      lock */
};

struct tally_map {
    struct shard shard[NSHARDS];
    /* Bumped by every remove before it unlinks: a thread's remembered
     * last entry is valid while the generation it saw is current. */
    _Alignas(TALLY_CACHE_LINE) _Atomic(uint64_t) gen;
    uint64_t serial; /* unique per map for the process's life; never 0 */
    struct tally__seed seed; /* the hash secret; immutable */
    pthread_mutex_t drain_lock; /* serialises drains and removes' reads */
};

static _Atomic(uint64_t) map_serials;

struct tally_handle {
    /* First, where tally.h's inline add reads it. head.id = entry->id,
     * immutable while the handle pins entry; copied so that an add needs
     * no load through entry. head.dead: 0, set to 1 (relaxed, once) by the
     * remove of entry's key, under the shard's lock. Kept in the handle
     * rather than read from the entry so that an add loads nothing outside
     * the handle's line but its cell. */
    struct tally__handle_head head;
    tally_map *map;
    struct entry *entry;
    struct shard *shard;                 /* entry's shard: immutable */
    struct tally_handle *next, **pprev;  /* on shard->handles; under the
                                            shard's lock */
};

_Static_assert(sizeof(struct shard) % TALLY_CACHE_LINE == 0,
               "shards must not share cache lines");
_Static_assert(sizeof(struct entry) == 12, "entry header is 12 bytes");
_Static_assert(offsetof(struct tally_handle, head) == 0, "tally.h layout");

/* ---- slots ---------------------------------------------------------- */

static inline uintptr_t slot_tag(uint64_t h)
{
    return (uintptr_t)((h >> 32) & 0xffff) << 48;
}

static inline struct entry *slot_entry(uintptr_t s)
{
    return (struct entry *)(s & SLOT_PTR_MASK);
}

static inline struct shard *shard_of(tally_map *m, uint64_t h)
{
    return &m->shard[h >> (64 - SHARD_BITS)];
}

/* Key comparison without a call for the short keys counters use: two
 * (possibly overlapping) word compares cover 4..16 bytes. */
#define SHORT_KEY 16

/* Whether the len (<= SHORT_KEY) bytes at a and b are equal. */
static inline bool short_key_equal(const unsigned char *a,
                                   const unsigned char *b, size_t len)
{
    if (len >= 8)
        return tally__read64(a) == tally__read64(b) &&
               tally__read64(a + len - 8) == tally__read64(b + len - 8);
    if (len >= 4)
        return tally__read32(a) == tally__read32(b) &&
               tally__read32(a + len - 4) == tally__read32(b + len - 4);
    /* 0..3 bytes: indices 0, len / 2 and len - 1 cover them all. */
    return len == 0 || (a[0] == b[0] && a[len / 2] == b[len / 2] &&
                        a[len - 1] == b[len - 1]);
}

static inline bool entry_is(const struct entry *e, const void *key,
                            size_t len)
{
    if (e->len != len)
        return false;
    if (len <= SHORT_KEY)
        return short_key_equal(e->key, key, len);
    return memcmp(e->key, key, len) == 0;
}

/* Probes tb for key; returns the slot index (and the entry it held when
 * probed, in *found) or -1. Safe for readers in a read-side section and
 * for the lock holder. */
static inline ptrdiff_t probe(const struct table *tb, uint64_t h,
                              const void *key, size_t len,
                              struct entry **found)
{
    uintptr_t tag = slot_tag(h);
    for (size_t i = (size_t)h & tb->mask;; i = (i + 1) & tb->mask) {
        /* Acquire pairs with the release store that published the entry
         * (insert_locked): its key bytes and id are visible. */
        uintptr_t s = tally_atomic_load(
            (_Atomic(uintptr_t) *)&tb->slot[i], acquire);
        if (s == SLOT_EMPTY)
            return -1;
        if (s != SLOT_TOMB && (s & ~SLOT_PTR_MASK) == tag &&
            entry_is(slot_entry(s), key, len)) {
            *found = slot_entry(s);
            return (ptrdiff_t)i;
        }
    }
}

static inline struct entry *lookup(struct shard *sh, uint64_t h,
                                   const void *key, size_t len)
{
    /* Acquire pairs with the release publication of a table (first
     * insert or resize): its slots are visible. */
    struct table *tb = tally_atomic_load(&sh->table, acquire);
    struct entry *e = NULL;
    if (tb != NULL)
        (void)probe(tb, h, key, len, &e);
    return e;
}

/* ---- validation ----------------------------------------------------- */

static inline int check_key(const tally_map *m, const void *key, size_t len)
{
    if (m == NULL || key == NULL)
        return -EINVAL;
    if (len > TALLY_KEY_MAX)
        return -ENAMETOOLONG;
    return 0;
}

/* ---- writers (shard lock held) -------------------------------------- */

static struct table *table_new(size_t slots)
{
    struct table *tb =
        tally__calloc(1, sizeof(*tb) + slots * sizeof(tb->slot[0]));
    if (tb != NULL)
        tb->mask = slots - 1;
    return tb;
}

/* Places e in tb (which has room and does not hold e's key). Under the
 * lock, or on a table no reader can see yet. */
static void table_place(struct table *tb, struct entry *e, uint64_t h)
{
    size_t i = (size_t)h & tb->mask;
    for (;; i = (i + 1) & tb->mask) {
        uintptr_t s = tally_atomic_load(&tb->slot[i], relaxed);
        if (s == SLOT_EMPTY || s == SLOT_TOMB) {
            if (s == SLOT_EMPTY)
                tb->used++;
            /* Release: publishes the entry's fields to readers (pairs
             * with the acquire load in probe). */
            tally_atomic_store(&tb->slot[i], (uintptr_t)e | slot_tag(h),
                               release);
            return;
        }
    }
}

/* Makes room for one more key: a new table when the load, tombstones
 * included, would pass 3/4. 0 or -ENOMEM (nothing changed). */
static int reserve_locked(tally_map *m, struct shard *sh)
{
    struct table *old = tally_atomic_load(&sh->table, relaxed);
    size_t live = tally_atomic_load(&sh->live, relaxed);
    if (old != NULL && (old->used + 1) * 4 <= (old->mask + 1) * 3)
        return 0;
    size_t slots = MIN_SLOTS;
    while (slots < 2 * (live + 1))
        slots *= 2;
    struct table *tb = table_new(slots);
    if (tb == NULL)
        return -ENOMEM;
    if (old != NULL) {
        for (size_t i = 0; i <= old->mask; i++) {
            uintptr_t s = tally_atomic_load(&old->slot[i], relaxed);
            if (s == SLOT_EMPTY || s == SLOT_TOMB)
                continue;
            struct entry *e = slot_entry(s);
            table_place(tb, e, tally__hash(&m->seed, e->key, e->len));
        }
        /* Readers may still probe old: it stays until a grace period. */
        old->retired_next = sh->retired;
        sh->retired = old;
    }
    /* Release: publishes the filled table (pairs with lookup's acquire). */
    tally_atomic_store(&sh->table, tb, release);
    return 0;
}

/* Finds key or creates it at 0; returns the entry or NULL with *err set.
 * Lock held. */
static struct entry *find_or_create_locked(tally_map *m, struct shard *sh,
                                           uint64_t h,
                                           const void *key, size_t len,
                                           int *err)
{
    struct entry *e = lookup(sh, h, key, len);
    if (e != NULL)
        return e;
    e = tally__malloc(sizeof(*e) + len);
    if (e == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    if ((*err = tally__id_alloc(&e->id)) != 0) {
        tally__free(e);
        return NULL;
    }
    if ((*err = reserve_locked(m, sh)) != 0) {
        (void)tally__id_release(e->id);
        tally__free(e);
        return NULL;
    }
    e->len = (uint32_t)len;
    tally_atomic_store(&e->refs, 1, relaxed);
    if (len > 0)
        memcpy(e->key, key, len);
    table_place(tally_atomic_load(&sh->table, relaxed), e, h);
    tally_atomic_store(&sh->live, tally_atomic_load(&sh->live, relaxed) + 1,
                       relaxed);
    return e;
}

static void free_tables(struct table *tb)
{
    while (tb != NULL) {
        struct table *next = tb->retired_next;
        tally__free(tb);
        tb = next;
    }
}

/* Frees the tables a resize replaced, once no reader can be in them.
 * Called without locks after an insert that resized. From inside a
 * read-side section (an insert from a visit callback) it cannot wait, and
 * leaves them for the next remove or resize. */
static void reclaim_tables(struct shard *sh)
{
    if (tally__rcu_inside())
        return;
    pthread_mutex_lock(&sh->lock);
    struct table *retired = sh->retired;
    sh->retired = NULL;
    pthread_mutex_unlock(&sh->lock);
    if (retired != NULL && tally__rcu_synchronize() == 0)
        free_tables(retired);
}

/* Releases sh's lock, then frees the tables that a resize made under it
 * replaced (the end of every locked section that may insert). */
static void unlock_and_reclaim(struct shard *sh)
{
    bool resized = sh->retired != NULL;
    pthread_mutex_unlock(&sh->lock);
    if (resized)
        reclaim_tables(sh);
}

/* ---- new / free ----------------------------------------------------- */

int tally_map_new(tally_map **out)
{
    if (out == NULL)
        return -EINVAL;
    tally_map *m = tally__aligned_alloc(TALLY_CACHE_LINE, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&m->shard[i].lock, NULL);
    pthread_mutex_init(&m->drain_lock, NULL);
    m->serial = tally_atomic_fetch_add(&map_serials, 1, relaxed) + 1;
    tally__seed_init(&m->seed);
    *out = m;
    return 0;
}

void tally_map_free(tally_map *m)
{
    if (m == NULL)
        return;
    for (unsigned i = 0; i < NSHARDS; i++) {
        struct shard *sh = &m->shard[i];
        struct table *tb = tally_atomic_load(&sh->table, relaxed);
        if (tb != NULL) {
            for (size_t j = 0; j <= tb->mask; j++) {
                uintptr_t s = tally_atomic_load(&tb->slot[j], relaxed);
                if (s == SLOT_EMPTY || s == SLOT_TOMB)
                    continue;
                struct entry *e = slot_entry(s);
                (void)tally__id_release(e->id);
                tally__free(e);
            }
            tally__free(tb);
        }
        free_tables(sh->retired);
        pthread_mutex_destroy(&sh->lock);
    }
    pthread_mutex_destroy(&m->drain_lock);
    tally__free(m);
}

/* ---- add ------------------------------------------------------------ */

/* The slow half of an add: the key was absent (or this thread has no
 * record), so take the shard lock, find or create, and add. */
static int add_locked(tally_map *m, uint64_t h, const void *key, size_t len,
                      int64_t delta)
{
    struct shard *sh = shard_of(m, h);
    int err = 0;
    pthread_mutex_lock(&sh->lock);
    struct entry *e = find_or_create_locked(m, sh, h, key, len, &err);
    /* Under the lock the entry cannot be unlinked, so no read-side
     * section is needed: a remover unlinks after we unlock, and its
     * grace period and ids_lock order our add before its final read. */
    if (e != NULL)
        tally__id_add(e->id, delta);
    unlock_and_reclaim(sh);
    return err;
}

/* Rejects bad input for the _n calls; kept out of line so that the
 * fast paths stay small. */
static __attribute__((noinline, cold)) int bad_key(const tally_map *m,
                                                   const void *key,
                                                   size_t len)
{
    return check_key(m, key, len);
}

static __attribute__((noinline)) int add_slow(tally_map *m, uint64_t h,
                                              const void *key, size_t len,
                                              int64_t delta)
{
    return add_locked(m, h, key, len, delta);
}

/*
 * The fast path. Each thread remembers the last entry it added to (in its
 * record, with the map's serial and remove generation at the time), so a
 * thread that counts one key over and over skips hashing and probing: it
 * still compares the key it is given with the remembered one.
 *
 * Why a remembered entry cannot have been freed. A remove unlinks the
 * entry, then bumps the generation (release), then waits a grace period,
 * then frees. We load the generation (acquire) inside the read-side
 * section, before the lookup:
 *   - if we see the bumped generation, we also see the unlink, so the
 *     lookup cannot find the entry and we never remember it under the new
 *     generation;
 *   - if we remembered it under an older generation, the bump makes it
 *     stale: a later add uses it only if its load still returns the old
 *     generation, which means its section began before the grace period's
 *     fence (which orders the bump), so the remove waits for that add
 *     before freeing, and the add lands in the removed value.
 * (Bumping before the unlink would be wrong: a thread could read the new
 * generation, still find the entry, and remember it past the free; the
 * stress test test_remove_hot_key caught exactly that.)
 */
/* Everything tally_map_add_n's hit path leaves: a long key, a cell block
 * not attached yet, a different key (hash and probe, then remember what
 * was found), an absent key (create it under its shard's lock), bad
 * input. Out of line so that the hit path needs no stack frame. */
static __attribute__((noinline)) int add_miss(tally_map *m, const void *key,
                                              size_t len, int64_t delta)
{
    if (tally_unlikely(m == NULL || key == NULL || len > TALLY_KEY_MAX))
        return bad_key(m, key, len);
    struct tally__thread *t = tally__self;
    uint64_t h;
    if (tally_likely(t != NULL)) {
        bool outer = tally__rcu_enter(t);
        /* Acquire pairs with the release bump in remove: see above. */
        uint64_t gen = tally_atomic_load(&m->gen, acquire);
        struct entry *e = t->last_entry;
        /* The hit path compared short keys already; a short key that
         * matched (its block was not attached) is found again below. */
        if (len > SHORT_KEY && t->last_map == m->serial &&
            t->last_gen == gen && entry_is(e, key, len)) {
            tally__id_add_t(t, e->id, delta);
            tally__rcu_exit(t, outer);
            return 0;
        }
        h = tally__hash(&m->seed, key, len);
        e = lookup(shard_of(m, h), h, key, len);
        if (tally_likely(e != NULL)) {
            tally__id_add_t(t, e->id, delta);
            t->last_map = m->serial;
            t->last_gen = gen;
            t->last_entry = e;
            tally__rcu_exit(t, outer);
            return 0;
        }
        tally__rcu_exit(t, outer);
    } else {
        h = tally__hash(&m->seed, key, len);
    }
    return add_slow(m, h, key, len, delta);
}

int tally_map_add_n(tally_map *m, const void *key, size_t len, int64_t delta)
{
    /* The hit path: the key is the remembered one, short, and its cell
     * block is attached. No call but the tail call to add_miss, so no
     * stack frame. m and key are checked here; len needs no check: it must
     * equal a remembered entry's length, at most SHORT_KEY. */
    struct tally__thread *t = tally__self;
    if (tally_likely(t != NULL && m != NULL && key != NULL &&
                     len <= SHORT_KEY)) {
        bool outer = tally__rcu_enter(t);
        /* Acquire pairs with the release bump in remove: see above. */
        uint64_t gen = tally_atomic_load(&m->gen, acquire);
        struct entry *e = t->last_entry;
        if (tally_likely(t->last_map == m->serial && t->last_gen == gen &&
                         e->len == len && short_key_equal(e->key, key, len))) {
            tally__cell *c = tally__cell_of(t, e->id);
            if (tally_likely(c != NULL)) {
                tally__cell_add(c, delta);
                tally__rcu_exit(t, outer);
                return 0;
            }
        }
        tally__rcu_exit(t, outer);
    }
    return add_miss(m, key, len, delta);
}

int tally_map_add(tally_map *m, const char *key, int64_t delta)
{
    if (key == NULL)
        return -EINVAL;
    return tally_map_add_n(m, key, strlen(key), delta);
}

int tally_map_inc(tally_map *m, const char *key)
{
    return tally_map_add(m, key, 1);
}

/* ---- get ------------------------------------------------------------ */

int tally_map_get_n(tally_map *m, const void *key, size_t len, int64_t *value)
{
    int err = check_key(m, key, len);
    if (err != 0)
        return err;
    if (value == NULL)
        return -EINVAL;
    uint64_t h = tally__hash(&m->seed, key, len);
    struct shard *sh = shard_of(m, h);
    struct tally__thread *t = tally__thread_get();
    struct entry *e;
    if (tally_likely(t != NULL)) {
        bool outer = tally__rcu_enter(t);
        e = lookup(sh, h, key, len);
        if (e != NULL)
            *value = tally__id_read(e->id);
        tally__rcu_exit(t, outer);
    } else {
        pthread_mutex_lock(&sh->lock);
        e = lookup(sh, h, key, len);
        if (e != NULL)
            *value = tally__id_read(e->id);
        pthread_mutex_unlock(&sh->lock);
    }
    return e != NULL ? 0 : -ENOENT;
}

int tally_map_get(tally_map *m, const char *key, int64_t *value)
{
    if (key == NULL)
        return -EINVAL;
    return tally_map_get_n(m, key, strlen(key), value);
}

int64_t tally_map_value(tally_map *m, const char *key)
{
    int64_t v = 0;
    return tally_map_get(m, key, &v) == 0 ? v : 0;
}

size_t tally_map_size(tally_map *m)
{
    if (m == NULL)
        return 0;
    size_t n = 0;
    for (unsigned i = 0; i < NSHARDS; i++)
        n += tally_atomic_load(&m->shard[i].live, relaxed);
    return n;
}

/* ---- remove --------------------------------------------------------- */

/* Called by whoever drops the last reference to an unlinked entry: no
 * handle and no reader can reach it any more. What handle adds left in it
 * after its remove goes to the key's next life: added to the key if it
 * exists again, else the entry itself is linked back in as that next life
 * (which needs no allocation, so the amount cannot be lost). */
static void entry_finish(tally_map *m, struct entry *e)
{
    int64_t left = tally__id_read(e->id);
    if (left == 0) {
        (void)tally__id_release(e->id);
        tally__free(e);
        return;
    }
    uint64_t h = tally__hash(&m->seed, e->key, e->len);
    struct shard *sh = shard_of(m, h);
    pthread_mutex_lock(&sh->lock);
    struct entry *now = lookup(sh, h, e->key, e->len);
    if (now != NULL) {
        tally__id_add(now->id, left);
        pthread_mutex_unlock(&sh->lock);
        (void)tally__id_release(e->id);
        tally__free(e);
        return;
    }
    /* The shard has a table (e was in it) with at least a quarter of its
     * slots empty; if growing it fails for lack of memory, one more entry
     * still leaves an empty slot, so probes still end. */
    (void)reserve_locked(m, sh);
    tally_atomic_store(&e->refs, 1, relaxed);
    table_place(tally_atomic_load(&sh->table, relaxed), e, h);
    tally_atomic_store(&sh->live, tally_atomic_load(&sh->live, relaxed) + 1,
                       relaxed);
    pthread_mutex_unlock(&sh->lock);
}

int tally_map_remove_n(tally_map *m, const void *key, size_t len,
                       int64_t *last_value)
{
    int err = check_key(m, key, len);
    if (err != 0)
        return err;
    if (tally__rcu_inside())
        return -EDEADLK;
    uint64_t h = tally__hash(&m->seed, key, len);
    struct shard *sh = shard_of(m, h);

    pthread_mutex_lock(&sh->lock);
    struct table *tb = tally_atomic_load(&sh->table, relaxed);
    struct entry *e = NULL;
    ptrdiff_t i = tb != NULL ? probe(tb, h, key, len, &e) : -1;
    if (i < 0) {
        pthread_mutex_unlock(&sh->lock);
        return -ENOENT;
    }
    /* Relaxed: the grace period below orders the unlink (cells.h). */
    tally_atomic_store(&tb->slot[i], SLOT_TOMB, relaxed);
    /* Invalidates threads' remembered entries (see tally_map_add_n).
     * After the unlink, and release: a thread whose acquire load sees the
     * new generation also sees the tombstone, so it cannot find the entry
     * and remember it under the new generation. */
    tally_atomic_fetch_add(&m->gen, 1, release);
    tally_atomic_store(&sh->live, tally_atomic_load(&sh->live, relaxed) - 1,
                       relaxed);
    tally_atomic_fetch_or(&e->refs, ENTRY_DEAD, relaxed);
    /* Steer the entry's handles to the key's next life. Relaxed, as the
     * DEAD bit: see handle_add. O(handles in this shard). */
    for (struct tally_handle *hd = sh->handles; hd != NULL; hd = hd->next)
        if (hd->entry == e)
            tally_atomic_store(&hd->head.dead, 1, relaxed);
    struct table *retired = sh->retired;
    sh->retired = NULL;
    pthread_mutex_unlock(&sh->lock);

    /* Every add that found e has finished after this; so has every reader
     * of the retired tables. */
    (void)tally__rcu_synchronize();
    free_tables(retired);

    pthread_mutex_lock(&m->drain_lock);
    int64_t v;
    /* Handles are made under the shard lock from the table, so once e is
     * unlinked its count of handles can only fall. Acquire pairs with the
     * acq_rel decrement in tally_handle_release: a released handle's adds
     * happen before the final read below. */
    if ((tally_atomic_load(&e->refs, acquire) & ~ENTRY_DEAD) == 1) {
        v = tally__id_release(e->id);
        tally__free(e);
        pthread_mutex_unlock(&m->drain_lock);
    } else {
        /* Handles remain and may still add: take the value out and leave
         * later adds for the key's next life. */
        v = tally__id_read(e->id);
        tally__id_sub(e->id, v);
        pthread_mutex_unlock(&m->drain_lock);
        /* Acq_rel: our reads of e happen before a releaser's finish, and
         * the releasers' adds before ours. */
        uint32_t old = tally_atomic_fetch_sub(&e->refs, 1, acq_rel);
        if ((old & ~ENTRY_DEAD) == 1)
            entry_finish(m, e);
    }
    if (last_value != NULL)
        *last_value = v;
    return 0;
}

int tally_map_remove(tally_map *m, const char *key, int64_t *last_value)
{
    if (key == NULL)
        return -EINVAL;
    return tally_map_remove_n(m, key, strlen(key), last_value);
}

/* ---- foreach / drain ------------------------------------------------ */

static int visit(tally_map *m, tally_visit_fn fn, void *ctx, bool drain)
{
    if (m == NULL || fn == NULL)
        return -EINVAL;
    if (drain && tally__rcu_inside())
        return -EDEADLK; /* a drain inside a visit callback */
    struct tally__thread *t = tally__thread_get();
    if (t == NULL)
        return -ENOMEM;
    if (drain)
        pthread_mutex_lock(&m->drain_lock);
    int rc = 0;
    bool outer = tally__rcu_enter(t);
    for (unsigned s = 0; s < NSHARDS && rc == 0; s++) {
        /* Acquire: see lookup(). */
        struct table *tb = tally_atomic_load(&m->shard[s].table, acquire);
        if (tb == NULL)
            continue;
        for (size_t i = 0; i <= tb->mask && rc == 0; i++) {
            /* Acquire: see probe(). */
            uintptr_t sl = tally_atomic_load(&tb->slot[i], acquire);
            if (sl == SLOT_EMPTY || sl == SLOT_TOMB)
                continue;
            struct entry *e = slot_entry(sl);
            int64_t v = tally__id_read(e->id);
            if (drain) {
                if (v == 0)
                    continue;
                tally__id_sub(e->id, v);
            }
            rc = fn(ctx, e->key, e->len, v);
        }
    }
    tally__rcu_exit(t, outer);
    if (drain)
        pthread_mutex_unlock(&m->drain_lock);
    return rc;
}

int tally_map_foreach(tally_map *m, tally_visit_fn fn, void *ctx)
{
    return visit(m, fn, ctx, false);
}

int tally_map_drain(tally_map *m, tally_visit_fn fn, void *ctx)
{
    return visit(m, fn, ctx, true);
}

/* ---- handles -------------------------------------------------------- */

int tally_map_handle_n(tally_map *m, const void *key, size_t len,
                       tally_handle **out)
{
    int err = check_key(m, key, len);
    if (err != 0)
        return err;
    if (out == NULL)
        return -EINVAL;
    tally_handle *hd = tally__malloc(sizeof(*hd));
    if (hd == NULL)
        return -ENOMEM;
    uint64_t h = tally__hash(&m->seed, key, len);
    struct shard *sh = shard_of(m, h);
    pthread_mutex_lock(&sh->lock);
    struct entry *e = find_or_create_locked(m, sh, h, key, len, &err);
    if (e != NULL) {
        tally_atomic_fetch_add(&e->refs, 1, relaxed);
        hd->map = m;
        hd->entry = e;
        hd->shard = sh;
        hd->head.id = e->id;
        /* Relaxed: the handle is not shared yet; whoever gets it from the
         * caller gets it through the caller's own synchronisation. */
        tally_atomic_store(&hd->head.dead, 0, relaxed);
        /* Linked under the lock that remove holds when it marks handles,
         * so a remove either finds this handle or ran before e existed. */
        hd->next = sh->handles;
        hd->pprev = &sh->handles;
        if (sh->handles != NULL)
            sh->handles->pprev = &hd->next;
        sh->handles = hd;
    }
    unlock_and_reclaim(sh);
    if (e == NULL) {
        tally__free(hd);
        return err;
    }
    *out = hd;
    return 0;
}

int tally_map_handle(tally_map *m, const char *key, tally_handle **out)
{
    if (key == NULL)
        return -EINVAL;
    return tally_map_handle_n(m, key, strlen(key), out);
}

/* A handle add whose key was removed: the add goes to the key's next
 * life by name. Out of line, so the fast path needs no stack frame. */
static __attribute__((noinline, cold)) void handle_add_dead(tally_handle *h,
                                                            int64_t delta)
{
    struct entry *e = h->entry;
    uint64_t hh = tally__hash(&h->map->seed, e->key, e->len);
    if (add_locked(h->map, hh, e->key, e->len, delta) != 0)
        tally__id_add(h->head.id, delta); /* kept for entry_finish */
}

static inline void handle_add(tally_handle *h, int64_t delta)
{
    /* Relaxed: dead only steers the add to the key's next life; an add
     * that misses a fresh mark still lands in the entry and reaches the
     * next life through entry_finish. */
    if (tally_likely(!tally_atomic_load(&h->head.dead, relaxed)))
        tally__id_add(h->head.id, delta);
    else
        handle_add_dead(h, delta);
}

void tally_handle_add(tally_handle *h, int64_t delta)
{
    handle_add(h, delta);
}

void tally_handle_inc(tally_handle *h)
{
    handle_add(h, 1);
}

/* What tally.h's inline add calls when the thread has no cell yet or the
 * key was removed. */
void tally__handle_add_slow(tally_handle *h, int64_t delta)
{
    handle_add(h, delta);
}

void tally_handle_release(tally_handle *h)
{
    if (h == NULL)
        return;
    struct entry *e = h->entry;
    struct shard *sh = h->shard;
    pthread_mutex_lock(&sh->lock);
    *h->pprev = h->next;
    if (h->next != NULL)
        h->next->pprev = h->pprev;
    pthread_mutex_unlock(&sh->lock);
    /* Acq_rel: this handle's adds happen before whoever finishes e. */
    uint32_t old = tally_atomic_fetch_sub(&e->refs, 1, acq_rel);
    if (old == (ENTRY_DEAD | 1))
        entry_finish(h->map, e);
    tally__free(h);
}
