/*
 * map.c - tally_map: the article's SafeCounter, concurrent and scalable.
 *
 * HOW IT WORKS
 *
 * A map is 64 shards, picked by the top bits of the key's hash (hash.h:
 * keyed by a secret per map). A shard holds an open-addressing table
 * (linear probing) of 32-byte slots, two per cache line. A slot holds the
 * key itself when it has at most 16 bytes (a pointer to a heap copy
 * otherwise), the key's count, and a meta word with its state, length and
 * 24 bits of its hash (map.h). So adding to a cold key by name is: hash,
 * one probe that usually touches one cache line, compare, and one atomic
 * add on that same line. No entry, no per-thread cell, no lock.
 *
 * Hot keys. A key that threads share (16 of its adds found the tag of
 * another thread as the key's last adder: the cache line moved between
 * cores each time) or that one thread adds to many times in a row becomes
 * HOT: it gets a counter id, and from then on each thread adds to its own
 * per-thread cell for that id (cells.h), as a tally_adder does: a plain
 * load and store, no shared cache line. Its value is then the slot's count
 * plus the sum of its cells. Only hot keys cost per-thread memory, and a
 * map turns at most 4096 + keys/64 keys hot, so a map of many keys that
 * many threads touch now and then costs slots, not threads x keys cells.
 * Handles make their key HOT (beyond the cap).
 *
 * Each thread remembers the last key it added to (its slot, with the map's
 * serial number and generation): adding to the same key again compares
 * the key with the remembered slot's and skips hashing and probing.
 *
 * Invariants (who writes what):
 *   - shard->lock is held by every writer of a shard's structure: insert,
 *     remove, rebuild, promotion to HOT, handles, settling. Adds to
 *     existing keys, gets, foreach and cold drains never take it (a drain
 *     takes it briefly per HOT key).
 *   - A slot goes EMPTY -> LIVE (insert), LIVE -> TOMB (remove), TOMB ->
 *     DEAD (settled, a grace period later), DEAD -> LIVE (insert reusing
 *     it), all under the lock; adders change only the contention bits of
 *     a LIVE cold slot's meta (CAS). A LIVE key never moves within a
 *     table: a rebuild copies it into a new table.
 *   - A slot's count changes only by atomic RMWs: adds (fetch_add), and the
 *     exchanges of remove, drain, rebuild and settling. So every amount is in exactly one place at any time.
 *   - A rebuild moves each LIVE key and its count (an exchange) into the
 *     new table under the shard's settle sequence, then publishes it.
 *     Adders that loaded the old table before may still add to it: the
 *     new table's older field links the old one until the shard has
 *     moved those late counts into the current table (a grace period
 *     later, under the settle sequence again). A key's value is therefore
 *         count in the current table
 *       + counts in the tables still on its older chain
 *       + the sum of its cells, when HOT.
 *   - No key sits more than the table's cap (128) slots past its home: a
 *     probe ends at an EMPTY slot or after cap + 1 slots (map_table.c).
 *
 * What a reader can see: a reader (a lookup inside a read-side section,
 * cells.h) loads the shard's table and probes it. It may find a key that
 * is being removed, or miss one being inserted; it never sees freed
 * memory or a reused slot, because tables, long keys and TOMB slots are
 * freed or reused only after a grace period that began after they were
 * unlinked. Reads that sum a key over several tables (get, foreach) retry
 * when the shard's settle sequence moved during the read, so a settle
 * moving a count from an old table to the current one is never counted
 * twice or not at all.
 *
 * Ordering:
 *   - Inserting publishes the slot's key and count with a release store
 *     of meta; readers load meta with acquire. A rebuild publishes the
 *     filled table with a release store of shard->table; readers load it
 *     with acquire.
 *   - Remove and rebuild bump the map's generation (release RMW) after
 *     they unlink and before they take the cookie of their grace period:
 *     see "the remembered slot" below.
 *   - Counts and cells are relaxed: they publish nothing (tally.h: a
 *     counter orders no other memory).
 *
 * Remove: under the lock, exchange the key's counts (current table and
 * older chain) with 0, and take a HOT key's cell sum out of its id (read,
 * then subtract it from the id's shared word, as a drain does): that is
 * the value returned. The slot becomes TOMB and a deferred record is
 * pushed with a fresh grace-period cookie. Adds that found the key before
 * the remove may still land in the TOMB slot (or the id's cells); once the
 * grace period has passed, settling moves what they left to the key's
 * next life (creating the key again if it is absent) and the slot becomes
 * DEAD. A remove never waits for a grace period: removes share them, and a
 * preempted adder only delays when late adds reach the next life and when
 * memory is freed.
 *
 * Drain exchanges counts with 0 (no lock), and takes a HOT key's cell sum
 * under the shard lock, so that remove, drain and settling never count an
 * amount twice: every add is counted exactly once by a remove, a drain, a
 * settle into the next life, or the value left.
 *
 * Progress: add to an existing key, get, foreach and handle adds are
 * lock-free (wait-free but for a thread's first touch of a cell block and
 * the retry of a read that raced with a settle); creating a key takes the
 * shard lock; remove takes the shard lock and never waits for readers;
 * drain takes the shard lock per HOT key; tally_map_sync waits for a
 * grace period.
 *
 * Fork: pthread_atfork handlers take every map's shard locks (through a
 * registry of maps) before a fork and re-create them in the child; cells.c
 * forgets the parent's other threads in the child.
 *
 * LIMITATIONS
 *
 *   - Late adds (those that raced with a remove) reach the key's next
 *     life only once a grace period has passed and the shard settles: at
 *     the shard's next insert, remove or handle call, the next foreach or
 *     drain, or tally_map_sync. Until then get, foreach and drain do not
 *     see them.
 *   - A key removed and created again while a foreach runs may be visited
 *     in both lives (two separate counts, each counted once).
 *   - Handle creation and release take the shard lock, and remove walks
 *     the shard's handles: O(handles in the shard).
 */
#include "map.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"

_Static_assert(offsetof(struct tally_handle, head) == 0, "tally.h layout");


/* One thread adding to the same cold key this many times in a row makes
 * it HOT. */
#define STREAK_HOT 64u

static _Atomic(uint64_t) map_serials;

/* ---- the registry of maps, for fork ---------------------------------- */

static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static tally_map *maps; /* under maps_lock */
static pthread_once_t maps_once = PTHREAD_ONCE_INIT;

/* Lock order: maps_lock, then shard locks (one map after another), then
 * cells.c's gp_lock and ids_lock (whose handlers run after these). */
static void maps_prepare(void)
{
    pthread_mutex_lock(&maps_lock);
    for (tally_map *m = maps; m != NULL; m = m->reg_next)
        for (unsigned i = 0; i < NSHARDS; i++)
            pthread_mutex_lock(&m->shard[i].lock);
}

static void maps_parent(void)
{
    for (tally_map *m = maps; m != NULL; m = m->reg_next)
        for (unsigned i = NSHARDS; i-- > 0;)
            pthread_mutex_unlock(&m->shard[i].lock);
    pthread_mutex_unlock(&maps_lock);
}

static void maps_child(void)
{
    for (tally_map *m = maps; m != NULL; m = m->reg_next)
        for (unsigned i = 0; i < NSHARDS; i++)
            pthread_mutex_init(&m->shard[i].lock, NULL);
    pthread_mutex_init(&maps_lock, NULL);
}

static void maps_init(void)
{
    tally__cells_init(); /* its handlers first: see cells.c */
    (void)pthread_atfork(maps_prepare, maps_parent, maps_child);
}

/* ---- validation ------------------------------------------------------ */

static inline int check_key(const tally_map *m, const void *key, size_t len)
{
    if (m == NULL || key == NULL)
        return -EINVAL;
    if (len > TALLY_KEY_MAX)
        return -ENAMETOOLONG;
    return 0;
}

/* Rejects bad input for the _n calls; out of line so that the fast paths
 * stay small. */
static __attribute__((noinline, cold)) int bad_key(const tally_map *m,
                                                   const void *key,
                                                   size_t len)
{
    return check_key(m, key, len);
}

/* ---- new / free ------------------------------------------------------ */

int tally_map_new(tally_map **out)
{
    if (out == NULL)
        return -EINVAL;
    pthread_once(&maps_once, maps_init);
    tally_map *m = tally__aligned_alloc(TALLY_CACHE_LINE, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&m->shard[i].lock, NULL);
    m->serial = tally_atomic_fetch_add(&map_serials, 1, relaxed) + 1;
    tally__seed_init(&m->seed);
    pthread_mutex_lock(&maps_lock);
    m->reg_next = maps;
    if (maps != NULL)
        maps->reg_prev = m;
    maps = m;
    pthread_mutex_unlock(&maps_lock);
    *out = m;
    return 0;
}

void tally_map_free(tally_map *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&maps_lock);
    if (m->reg_prev != NULL)
        m->reg_prev->reg_next = m->reg_next;
    else
        maps = m->reg_next;
    if (m->reg_next != NULL)
        m->reg_next->reg_prev = m->reg_prev;
    pthread_mutex_unlock(&maps_lock);
    for (unsigned i = 0; i < NSHARDS; i++) {
        tally__map_shard_destroy(&m->shard[i]);
        pthread_mutex_destroy(&m->shard[i].lock);
    }
    tally__free(m);
}

/* ---- add ------------------------------------------------------------- */

/* Makes the key in slot s HOT if s is still in the current table, unless
 * that would wait for a lock: an add must not block. */
static __attribute__((noinline)) void try_promote(tally_map *m, uint64_t h,
                                                  struct slot *s)
{
    struct shard *sh = shard_of(m, h);
    if (pthread_mutex_trylock(&sh->lock) != 0)
        return;
    struct table *tb = tally_atomic_load(&sh->table, relaxed);
    uintptr_t p = (uintptr_t)s, lo = tb != NULL ? (uintptr_t)tb->slot : 0;
    if (tb != NULL && p >= lo &&
        p < lo + (uintptr_t)tb->size * sizeof(struct slot))
        (void)tally__map_promote_locked(m, s, true);
    pthread_mutex_unlock(&sh->lock);
}

/* A cold add by a thread other than the key's last adder (the owner tag
 * in the contention record, map.h): count the switch; SWITCHES_HOT of them
 * make the key hot, while the map has fewer than its cap of hot keys. */
static __attribute__((noinline)) void owner_switch(tally_map *m, uint64_t h,
                                                   struct slot *s,
                                                   uint32_t tag)
{
    uint64_t meta = tally_atomic_load(&s->meta, relaxed);
    if (meta_state(meta) != M_LIVE || (meta & M_HOT))
        return;
    uint32_t switches = (uint32_t)(meta >> 48);
    bool promote = switches + 1 >= SWITCHES_HOT;
    uint64_t rec = (uint64_t)(promote ? 0 : switches + 1) << 16 | tag;
    /* One try: the record is a heuristic, and the CAS fails (changing
     * nothing) if a writer changed the slot meanwhile. */
    (void)tally_atomic_cas(&s->meta, &meta,
                           (meta & 0xffffffffull) | rec << 32, relaxed,
                           relaxed);
    if (promote && tally_atomic_load(&m->hot_keys, relaxed) <
                       HOT_KEYS_MIN + tally_map_size(m) / HOT_KEYS_SHARE)
        try_promote(m, h, s);
}

/* The slow half of an add: the key was absent, or this thread has no
 * record (out of memory). Under the lock the slot cannot be removed, so
 * no read-side section is needed. */
static __attribute__((noinline)) int add_locked(tally_map *m,
                                                struct shard *sh, uint64_t h,
                                                const void *key, size_t len,
                                                int64_t delta)
{
    int err = 0;
    pthread_mutex_lock(&sh->lock);
    struct slot *s = tally__map_find_or_insert(m, sh, h, key, len, delta,
                                               &err);
    pthread_mutex_unlock(&sh->lock);
    return s != NULL ? 0 : err;
}

/*
 * The remembered slot. Each thread remembers the slot of the last key it
 * added to, with the map's serial number and generation at the time. Why
 * a remembered slot cannot have been freed or reused when the generation
 * still matches: remove and rebuild unlink, then bump the generation
 * (release), then take their grace-period cookie. We load the generation
 * (acquire) inside a read-side section, before using the slot:
 *   - if we see the bumped generation we also see the unlink, so a lookup
 *     cannot find the slot and remember it under the new generation;
 *   - if our load still returns the old generation, our section's number
 *     was read before the cookie's RMW (else the cookie's release would
 *     make the bump visible to us), so the grace period waits for us, and
 *     our add lands in the slot before it is settled.
 */

/* Bad input, or a thread with no record (out of memory). */
static __attribute__((noinline, cold)) int add_cold_path(tally_map *m,
                                                         const void *key,
                                                         size_t len,
                                                         int64_t delta)
{
    if (m == NULL || key == NULL || len > TALLY_KEY_MAX)
        return bad_key(m, key, len);
    if (tally__thread_get() != NULL) /* a first use: registered now */
        return tally_map_add_n(m, key, len, delta);
    uint64_t h = tally__hash(&m->seed, key, len);
    return add_locked(m, shard_of(m, h), h, key, len, delta);
}

/*
 * The rarer ends of an add, each out of line and reached by a tail call,
 * so that tally_map_add_n makes no call that returns to it and keeps its
 * state in scratch registers (no stack frame). Each finishes the add and
 * then leaves the read-side section the add opened.
 */

/* A HOT key whose cell block this thread has not attached yet. */
static __attribute__((noinline)) int hot_add_slow(struct tally__thread *t,
                                                  bool outer, uint32_t id,
                                                  int64_t delta)
{
    tally__id_add_slow(id, delta); /* inside the section: the id is held */
    tally__rcu_exit(t, outer);
    return 0;
}

/* A cold add by another thread than the key's last adder. */
static __attribute__((noinline)) int switch_exit(struct tally__thread *t,
                                                 bool outer, tally_map *m,
                                                 uint64_t h, struct slot *s)
{
    owner_switch(m, h, s, t->tag);
    tally__rcu_exit(t, outer);
    return 0;
}

/* A cold key this thread has added to STREAK_HOT times in a row. */
static __attribute__((noinline)) int streak_exit(struct tally__thread *t,
                                                 bool outer, tally_map *m,
                                                 uint64_t h, struct slot *s)
{
    t->streak = 0;
    try_promote(m, h, s);
    tally__rcu_exit(t, outer);
    return 0;
}

/* add_in_section's flags. */
#define ADD_OUTER 1u    /* the add opened the outermost section */
#define ADD_MEMO_HIT 2u /* the key is the thread's remembered one */

/* Everything the hot-key path below leaves, inside the section the add
 * opened: the remembered key when it is cold (the streak) or its cell
 * block is not attached, or a lookup by hash and probe. */
static __attribute__((noinline)) int add_in_section(struct tally__thread *t,
                                                    unsigned flags,
                                                    tally_map *m,
                                                    const void *key,
                                                    size_t len, int64_t delta)
{
    bool outer = (flags & ADD_OUTER) != 0;
    struct slot *s;
    uint64_t meta, h;
    bool streak = false;
    if (flags & ADD_MEMO_HIT) {
        s = t->last_entry;
        /* Relaxed: as in tally_map_add_n. */
        meta = tally_atomic_load(&s->meta, relaxed);
        h = t->last_hash;
        streak = ++t->streak >= STREAK_HOT;
    } else {
        /* Acquire: see "the remembered slot". */
        uint64_t gen = tally_atomic_load(&m->gen, acquire);
        h = tally__hash(&m->seed, key, len);
        struct shard *sh = shard_of(m, h);
        /* Acquire pairs with the release publication of a table. */
        struct table *tb = tally_atomic_load(&sh->table, acquire);
        s = tb != NULL ? probe(tb, h, key, len, &meta) : NULL;
        if (tally_unlikely(s == NULL)) {
            tally__rcu_exit(t, outer);
            return add_locked(m, sh, h, key, len, delta);
        }
        if (len <= SLOT_KEY) {
            t->last_map = m->serial;
            t->last_gen = gen;
            t->last_entry = s;
            t->last_hash = h;
            t->streak = 0;
        }
    }
    if (meta & M_HOT) {
        tally__cell *c = tally__cell_of(t, meta_id(meta));
        if (tally_unlikely(c == NULL))
            return hot_add_slow(t, outer, meta_id(meta), delta);
        tally__cell_add(c, delta);
    } else {
        /* One fetch_add. Relaxed: a count publishes nothing; the RMW loses
         * no add. Another thread than the last adder means the line moves
         * between cores: counted towards making the key hot. */
        tally_atomic_fetch_add(&s->count, delta, relaxed);
        if (tally_unlikely((uint16_t)(meta >> 32) != t->tag))
            return switch_exit(t, outer, m, h, s);
        if (tally_unlikely(streak))
            return streak_exit(t, outer, m, h, s);
    }
    tally__rcu_exit(t, outer);
    return 0;
}

int tally_map_add_n(tally_map *m, const void *key, size_t len, int64_t delta)
{
    struct tally__thread *t = tally__self;
    if (tally_unlikely(t == NULL || m == NULL || key == NULL ||
                       len > TALLY_KEY_MAX))
        return add_cold_path(m, key, len, delta);
    unsigned flags = tally__rcu_enter(t) ? ADD_OUTER : 0;
    /* The hot-key path, kept small enough to need no stack frame (the
     * rest is a tail call): the thread's remembered key, when it is hot
     * and its cell block attached. No hashing, no probe, no shared
     * write. */
    if (len <= SLOT_KEY) {
        /* Acquire: see "the remembered slot". */
        uint64_t gen = tally_atomic_load(&m->gen, acquire);
        struct slot *s = t->last_entry;
        if (t->last_map == m->serial && t->last_gen == gen) {
            /* Relaxed: the slot's key and state were published to this
             * thread when it remembered the slot, and the generation
             * says they have not changed; only the HOT bit and id may
             * have been set since, and either meta adds correctly. */
            uint64_t meta = tally_atomic_load(&s->meta, relaxed);
            if (((meta >> M_LEN_SHIFT) & 31u) == len &&
                short_key_equal(s->key.bytes, key, len)) {
                if (meta & M_HOT) {
                    tally__cell *c = tally__cell_of(t, meta_id(meta));
                    if (tally_likely(c != NULL)) {
                        tally__cell_add(c, delta);
                        tally__rcu_exit(t, flags & ADD_OUTER);
                        return 0;
                    }
                }
                flags |= ADD_MEMO_HIT;
            }
        }
    }
    return add_in_section(t, flags, m, key, len, delta);
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

/* ---- reads ----------------------------------------------------------- */

/* The value of key (hash h) in sh, summed over the current table, the
 * older chain and its cells; -ENOENT when absent. Inside a read-side
 * section or under the shard lock. Retries when a settle moved counts
 * between tables under it. */
static int read_key(struct shard *sh, uint64_t h, const void *key,
                    size_t len, int64_t *out)
{
    for (unsigned spins = 0;; spins++) {
        /* Acquire pairs with the release store that ends a settle: if we
         * see its end we see all its moves. */
        uint32_t q = tally_atomic_load(&sh->settle_seq, acquire);
        if (q & 1) {
            if (spins > 64)
                sched_yield();
            tally_cpu_relax();
            continue;
        }
        /* Acquire: pairs with the release publication of a table. */
        struct table *tb = tally_atomic_load(&sh->table, acquire);
        uint64_t meta;
        struct slot *s = tb != NULL ? probe(tb, h, key, len, &meta) : NULL;
        if (s == NULL)
            return -ENOENT;
        uint64_t v = (uint64_t)tally_atomic_load(&s->count, relaxed);
        /* Acquire pairs with the release stores of older (rebuild, and the
         * unlink in a settle). */
        for (struct table *o = tally_atomic_load(&tb->older, acquire);
             o != NULL; o = tally_atomic_load(&o->older, acquire)) {
            struct slot *os = probe_older(o, h, s, len);
            if (os != NULL)
                v += (uint64_t)tally_atomic_load(&os->count, relaxed);
        }
        if (meta & M_HOT)
            v += (uint64_t)tally__id_read(meta_id(meta));
        /* Acquire fence: if a load above saw a value a settle wrote, the
         * settle's opening increment is visible below (pairs with the
         * release fence in map_table.c's settle_resize). */
        tally_atomic_fence(acquire);
        if (tally_atomic_load(&sh->settle_seq, relaxed) == q) {
            *out = (int64_t)v;
            return 0;
        }
    }
}

/* Whether slot s of tb, seen by a visit with meta, is still where probe()
 * would find its key: tb is the shard's current table, has no older one
 * (and so never will: older is set only before a table is published),
 * and s still holds that meta (the same live key). */
static bool slot_current(struct shard *sh, const struct table *tb,
                         struct slot *s, uint64_t meta)
{
    /* Acquire loads: table pairs with the release publication of a table;
     * older with its release stores (rebuild, and the unlink in a settle);
     * meta with the release store that made the slot LIVE, as in probe(). */
    return tally_atomic_load(&sh->table, acquire) == tb &&
           tally_atomic_load(&tb->older, acquire) == NULL &&
           tally_atomic_load(&s->meta, acquire) == meta;
}

/* read_key for a visit that already holds the key's slot s in tb, seen
 * with meta: 0 and *out as read_key would give, without hashing or
 * probing, when tb is the shard's only table (current, nothing older) and
 * s still has that meta; 1 when that does not hold (the caller probes).
 * With slot_current true from before the count load to after it, no add
 * of the key went anywhere but s and its cells. */
static int read_slot(struct shard *sh, const struct table *tb,
                     struct slot *s, uint64_t meta, int64_t *out)
{
    /* Acquire: as in read_key. */
    uint32_t q = tally_atomic_load(&sh->settle_seq, acquire);
    if ((q & 1) || !slot_current(sh, tb, s, meta))
        return 1;
    uint64_t v = (uint64_t)tally_atomic_load(&s->count, relaxed);
    if (meta & M_HOT)
        v += (uint64_t)tally__id_read(meta_id(meta));
    /* Acquire fence: as in read_key; and a rebuild that published a new
     * table after the count load is seen here. */
    tally_atomic_fence(acquire);
    if (tally_atomic_load(&sh->table, relaxed) != tb ||
        tally_atomic_load(&sh->settle_seq, relaxed) != q)
        return 1;
    *out = (int64_t)v;
    return 0;
}

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
    if (tally_likely(t != NULL)) {
        bool outer = tally__rcu_enter(t);
        err = read_key(sh, h, key, len, value);
        tally__rcu_exit(t, outer);
    } else {
        pthread_mutex_lock(&sh->lock);
        err = read_key(sh, h, key, len, value);
        pthread_mutex_unlock(&sh->lock);
    }
    return err;
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

/* ---- remove ---------------------------------------------------------- */

int tally_map_remove_n(tally_map *m, const void *key, size_t len,
                       int64_t *last_value)
{
    int err = check_key(m, key, len);
    if (err != 0)
        return err;
    uint64_t h = tally__hash(&m->seed, key, len);
    struct shard *sh = shard_of(m, h);

    pthread_mutex_lock(&sh->lock);
    (void)tally__map_settle(m, sh, false);
    struct table *tb = tally_atomic_load(&sh->table, relaxed);
    uint64_t meta;
    struct slot *s = tb != NULL ? probe(tb, h, key, len, &meta) : NULL;
    if (s == NULL) {
        pthread_mutex_unlock(&sh->lock);
        return -ENOENT;
    }
    /* Room for the deferred record, before anything changes. */
    if (tally__map_pend_reserve(sh) != 0) {
        pthread_mutex_unlock(&sh->lock);
        return -ENOMEM;
    }
    /* The value: every amount in the key's slots, taken atomically with
     * respect to adds and drains, plus a HOT key's cells. */
    uint64_t v = (uint64_t)tally_atomic_exchange(&s->count, 0, relaxed);
    for (struct table *o = tally_atomic_load(&tb->older, relaxed); o != NULL;
         o = tally_atomic_load(&o->older, relaxed)) {
        struct slot *os = probe_older(o, h, s, len);
        if (os != NULL)
            v += (uint64_t)tally_atomic_exchange(&os->count, 0, relaxed);
    }
    if (meta & M_HOT) {
        uint32_t id = meta_id(meta);
        tally_atomic_fetch_sub(&m->hot_keys, 1, relaxed);
        /* Drains of this key take the lock too, so nothing else takes
         * this amount out of the id between the read and the subtraction;
         * cell adds after the read stay in the id (late adds). */
        int64_t hv = tally__id_read(id);
        tally__id_sub(id, hv);
        v += (uint64_t)hv;
        /* Steer the key's handles to its next life. Relaxed: the mark only
         * steers; an add that misses it lands in the id, which the handle
         * keeps until its release settles it. */
        for (struct tally_handle *hd = sh->handles; hd != NULL;
             hd = hd->next)
            if (hd->head.id == id)
                tally_atomic_store(&hd->head.dead, 1, relaxed);
    }
    /* Relaxed: the cookie's acq_rel RMW below orders it before every
     * reader the grace period does not wait for. */
    tally_atomic_store(&s->meta, (meta & ~M_STATE) | M_TOMB, relaxed);
    tally_atomic_store(&sh->live, tally_atomic_load(&sh->live, relaxed) - 1,
                       relaxed);
    /* Release: see "the remembered slot" (after the unlink, before the
     * cookie). */
    tally_atomic_fetch_add(&m->gen, 1, release);
    tally__map_pend_push(sh, (struct pend){.cookie = tally__rcu_cookie(),
                                           .tb = tb,
                                           .idx = (uint32_t)(s - tb->slot),
                                           .kind = PEND_TOMB});
    pthread_mutex_unlock(&sh->lock);
    if (last_value != NULL)
        *last_value = (int64_t)v;
    return 0;
}

int tally_map_remove(tally_map *m, const char *key, int64_t *last_value)
{
    if (key == NULL)
        return -EINVAL;
    return tally_map_remove_n(m, key, strlen(key), last_value);
}

/* ---- sync ------------------------------------------------------------ */

int tally_map_sync(tally_map *m)
{
    if (m == NULL)
        return -EINVAL;
    if (tally__rcu_inside())
        return -EDEADLK;
    /* Settling pushes records of its own (a settled rebuild's table is
     * freed a grace period later; a late add that re-creates a key may
     * rebuild), so go round until nothing is left: a few rounds. */
    for (unsigned round = 0; round < 8; round++) {
        uint64_t newest = 0;
        bool any = false;
        for (unsigned i = 0; i < NSHARDS; i++) {
            struct shard *sh = &m->shard[i];
            pthread_mutex_lock(&sh->lock);
            if (sh->npend != 0) {
                any = true;
                if (sh->pend[sh->npend - 1].cookie > newest)
                    newest = sh->pend[sh->npend - 1].cookie;
            }
            if (sh->orphans != NULL)
                any = true;
            pthread_mutex_unlock(&sh->lock);
        }
        if (!any)
            return 0;
        int err = tally__rcu_wait(newest);
        if (err != 0)
            return err;
        for (unsigned i = 0; i < NSHARDS; i++) {
            struct shard *sh = &m->shard[i];
            pthread_mutex_lock(&sh->lock);
            int e = tally__map_settle(m, sh, false);
            pthread_mutex_unlock(&sh->lock);
            if (e != 0)
                err = e;
        }
        if (err != 0)
            return err;
    }
    return 0;
}

/* ---- foreach / drain ------------------------------------------------- */

/* A key's adds since the last drain, taken out: its counts exchanged with
 * 0 in the current table and on the older chain (no lock: every amount
 * goes to exactly one exchange), and a HOT key's cell sum taken out under
 * the shard lock (as remove does). 0 when the key is gone. Inside a
 * read-side section. */
static int64_t drain_found(struct shard *sh, struct table *tb,
                           struct slot *s, uint64_t meta, uint64_t h,
                           size_t len);

static int64_t drain_key(struct shard *sh, uint64_t h,
                         const unsigned char *key, size_t len)
{
    /* Acquire: pairs with the release publication of a table. */
    struct table *tb = tally_atomic_load(&sh->table, acquire);
    uint64_t meta;
    struct slot *s = tb != NULL ? probe(tb, h, key, len, &meta) : NULL;
    if (s == NULL)
        return 0; /* removed meanwhile: the remove took its value */
    return drain_found(sh, tb, s, meta, h, len);
}

/* drain_key once the key's slot s in the current table tb is known (h is
 * used only for tables older than tb). */
static int64_t drain_found(struct shard *sh, struct table *tb,
                           struct slot *s, uint64_t meta, uint64_t h,
                           size_t len)
{
    uint64_t v = (uint64_t)tally_atomic_exchange(&s->count, 0, relaxed);
    /* Acquire: as in read_key. */
    for (struct table *o = tally_atomic_load(&tb->older, acquire); o != NULL;
         o = tally_atomic_load(&o->older, acquire)) {
        struct slot *os = probe_older(o, h, s, len);
        if (os != NULL)
            v += (uint64_t)tally_atomic_exchange(&os->count, 0, relaxed);
    }
    if (meta & M_HOT) {
        pthread_mutex_lock(&sh->lock);
        /* Still the same live key (a remove under the lock would have
         * made it TOMB and taken the cells' amount itself). */
        meta = tally_atomic_load(&s->meta, relaxed);
        if (meta_state(meta) == M_LIVE && (meta & M_HOT)) {
            uint32_t id = meta_id(meta);
            int64_t hv = tally__id_read(id);
            tally__id_sub(id, hv);
            v += (uint64_t)hv;
        }
        pthread_mutex_unlock(&sh->lock);
    }
    return (int64_t)v;
}

/* How far ahead of the visit a long key's bytes are prefetched, in slots:
 * a long key lives in its own allocation, and slot order is hash order,
 * so without this every long key is a cache miss that the visit waits
 * for in full (92% of a million-key foreach). 16 slots keep several
 * misses in flight at once. */
#define VISIT_AHEAD 16

/* Starts loading the bytes of slot j's key if it is long. The same
 * protocol as the visit itself: the key is read only after an acquire
 * load of meta saw LIVE. A prefetch never faults, so a key freed since
 * (by a remove whose grace period this section does not hold back yet)
 * costs nothing. */
static inline void visit_prefetch(const struct table *tb, uint32_t j)
{
    if (j >= tb->size)
        return;
    const struct slot *s = &tb->slot[j];
    uint64_t meta = tally_atomic_load(&s->meta, acquire);
    if (meta_state(meta) == M_LIVE &&
        ((unsigned)(meta >> M_LEN_SHIFT) & 31u) > SLOT_KEY)
        __builtin_prefetch(s->key.lk);
}

static int visit(tally_map *m, tally_visit_fn fn, void *ctx, bool drain)
{
    if (m == NULL || fn == NULL)
        return -EINVAL;
    struct tally__thread *t = tally__thread_get();
    if (t == NULL)
        return -ENOMEM;
    int rc = 0;
    bool polled = false;
    for (unsigned i = 0; i < NSHARDS && rc == 0; i++) {
        struct shard *sh = &m->shard[i];
        /* Settle what is ready first, so that late adds whose grace period
         * is over are counted; one poll (a membarrier) per call. */
        pthread_mutex_lock(&sh->lock);
        if (sh->npend != 0 && !polled) {
            polled = true;
            (void)tally__map_settle(m, sh, true);
        } else {
            (void)tally__map_settle(m, sh, false);
        }
        pthread_mutex_unlock(&sh->lock);

        /* One section per shard: a long visit delays reclamation, not
         * writers. */
        bool outer = tally__rcu_enter(t);
        /* Acquire: pairs with the release publication of a table. */
        struct table *tb = tally_atomic_load(&sh->table, acquire);
        for (uint32_t j = 0; tb != NULL && j < VISIT_AHEAD; j++)
            visit_prefetch(tb, j);
        for (uint32_t j = 0; tb != NULL && j < tb->size && rc == 0; j++) {
            struct slot *s = &tb->slot[j];
            visit_prefetch(tb, j + VISIT_AHEAD);
            /* Acquire: as in probe(). */
            uint64_t meta = tally_atomic_load(&s->meta, acquire);
            if (meta_state(meta) != M_LIVE)
                continue;
            size_t len;
            const unsigned char *key = slot_key(s, meta, &len);
            int64_t v;
            if (drain) {
                /* s is the key's slot while slot_current holds: what
                 * drain_key's probe would find. */
                if (slot_current(sh, tb, s, meta))
                    v = drain_found(sh, tb, s, meta, 0, len);
                else
                    v = drain_key(sh, tally__hash(&m->seed, key, len), key,
                                  len);
                if (v == 0)
                    continue;
            } else if (read_slot(sh, tb, s, meta, &v) != 0 &&
                       read_key(sh, tally__hash(&m->seed, key, len), key, len,
                                &v) != 0) {
                continue; /* removed since we saw it */
            }
            rc = fn(ctx, key, len, v);
        }
        tally__rcu_exit(t, outer);
    }
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

/* ---- handles --------------------------------------------------------- */

int tally_map_handle_n(tally_map *m, const void *key, size_t len,
                       tally_handle **out)
{
    int err = check_key(m, key, len);
    if (err != 0)
        return err;
    if (out == NULL)
        return -EINVAL;
    tally_handle *hd = tally__malloc(sizeof(*hd) + len);
    if (hd == NULL)
        return -ENOMEM;
    /* The id first, so that a failure changes nothing. */
    uint32_t spare;
    if ((err = tally__id_alloc(&spare)) != 0) {
        tally__free(hd);
        return err;
    }
    uint64_t h = tally__hash(&m->seed, key, len);
    struct shard *sh = shard_of(m, h);
    pthread_mutex_lock(&sh->lock);
    struct slot *s = tally__map_find_or_insert(m, sh, h, key, len, 0, &err);
    if (s != NULL) {
        uint64_t meta = tally_atomic_load(&s->meta, relaxed);
        if (!(meta & M_HOT)) {
            /* Only adders' contention updates race with us. Relaxed: as in
             * tally__map_promote_locked. */
            while (!tally_atomic_cas(&s->meta, &meta,
                                     (meta & 0xffffffffull) | M_HOT |
                                         (uint64_t)spare << 32,
                                     relaxed, relaxed))
                ;
            tally_atomic_fetch_add(&m->hot_keys, 1, relaxed);
            meta = tally_atomic_load(&s->meta, relaxed);
            spare = UINT32_MAX;
        }
        hd->map = m;
        hd->shard = sh;
        hd->head.id = meta_id(meta);
        /* Relaxed: the handle is not shared yet; whoever gets it from the
         * caller gets it through the caller's own synchronisation. */
        tally_atomic_store(&hd->head.dead, 0, relaxed);
        hd->hash = h;
        hd->len = (uint32_t)len;
        if (len > 0)
            memcpy(hd->key, key, len);
        /* Linked under the lock that remove holds when it marks handles,
         * so a remove either finds this handle or ran before the key
         * existed. */
        hd->next = sh->handles;
        hd->pprev = &sh->handles;
        if (sh->handles != NULL)
            sh->handles->pprev = &hd->next;
        sh->handles = hd;
    }
    pthread_mutex_unlock(&sh->lock);
    if (spare != UINT32_MAX)
        (void)tally__id_release(spare);
    if (s == NULL) {
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
 * life by name. If that cannot create the key (no memory), the amount
 * stays in the handle's id, which its last release settles. */
static __attribute__((noinline, cold)) void handle_add_dead(tally_handle *h,
                                                            int64_t delta)
{
    if (tally_map_add_n(h->map, h->key, h->len, delta) != 0)
        tally__id_add(h->head.id, delta);
}

static inline void handle_add(tally_handle *h, int64_t delta)
{
    /* Relaxed: dead only steers the add to the key's next life; an add
     * that misses a fresh mark lands in the id, which reaches the next
     * life when the id is settled. */
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
    struct shard *sh = h->shard;
    pthread_mutex_lock(&sh->lock);
    *h->pprev = h->next;
    if (h->next != NULL)
        h->next->pprev = h->pprev;
    /* Relaxed: set under this lock. */
    if (tally_atomic_load(&h->head.dead, relaxed) &&
        !tally__map_id_has_handle(sh, h->head.id, NULL) &&
        !tally__map_id_pending(sh, h->head.id))
        /* The key is gone, its TOMB settled, and this was the last handle
         * holding its id: the id's late adds go to the next life. */
        tally__map_settle_id(h->map, sh, h);
    else
        tally__free(h);
    pthread_mutex_unlock(&sh->lock);
}
