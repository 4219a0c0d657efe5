/*
 * map.h - tally_map's layout, shared by map.c (the calls) and
 * map_table.c (the writer side: inserts, resizes, deferred settling).
 * map.c's opening comment explains the design; this file holds the
 * structures and the small inline pieces both files use.
 */
#ifndef TALLY_MAP_H
#define TALLY_MAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "atomic.h"
#include "cells.h"
#include "hash.h"
#include "tally.h"

#define SHARD_BITS 6
#define NSHARDS (1u << SHARD_BITS)
/* Keys of up to SLOT_KEY bytes live in the slot itself. */
#define SLOT_KEY 16
/* No key sits more than MAX_DISP slots past its home (the probe cap). */
#define MAX_DISP 128u
/* Sharing: a cold key that SWITCHES_HOT adds found last added to by
 * another thread becomes HOT (the contention record in meta, below), as
 * long as the map has fewer hot keys than HOT_KEYS_MIN + keys /
 * HOT_KEYS_SHARE, which bounds the per-thread memory of keys that many
 * threads touch rarely (map.c). */
#define SWITCHES_HOT 16u
#define HOT_KEYS_MIN 4096u
#define HOT_KEYS_SHARE 64u

/*
 * A slot's meta word (written under the shard lock, except the contention
 * bits, which adders update with a CAS that fails if anything else
 * changed):
 *
 *   bits 0-1   state: EMPTY, LIVE, TOMB (removed, its late adds not yet
 *              settled; not reusable), DEAD (settled; reusable; probes go
 *              on past it, as past a TOMB)
 *   bit  2     HOT: the key also has per-thread cells, id in bits 32-63
 *   bits 3-7   the key's length, 0..SLOT_KEY; LEN_LONG for longer keys
 *   bits 8-31  24 bits of the key's hash (the tag)
 *   bits 32-63 HOT: the counter id of the key's cells; otherwise the
 *              contention record: bits 32-47 the tag of the thread that
 *              added last (tally__thread.tag), bits 48-63 how many adds
 *              found another thread's tag there (a heuristic: updated by a
 *              single CAS that may fail, never under the lock)
 */
#define M_EMPTY 0u
#define M_LIVE 1u
#define M_TOMB 2u
#define M_DEAD 3u
#define M_STATE 3ull
#define M_HOT 4ull
#define M_LEN_SHIFT 3
#define LEN_LONG 31u
#define M_TAG_SHIFT 8
/* The bits a lookup compares: state, length, tag. */
#define M_MATCH 0xfffffffbull

static inline unsigned meta_state(uint64_t meta)
{
    return (unsigned)(meta & M_STATE);
}

static inline uint32_t meta_id(uint64_t meta)
{
    return (uint32_t)(meta >> 32);
}

static inline uint64_t meta_want(uint64_t h, size_t len)
{
    uint64_t lc = len <= SLOT_KEY ? (uint64_t)len : LEN_LONG;
    return M_LIVE | lc << M_LEN_SHIFT |
           ((h >> 32) & 0xffffffull) << M_TAG_SHIFT;
}

/* A key longer than SLOT_KEY bytes: on the heap, immutable, owned by the
 * key's LIVE slot in the current table (older tables' slots share the
 * pointer) or by the TOMB record of its remove. */
struct longkey {
    uint32_t len;
    unsigned char bytes[];
};

struct slot {
    _Atomic(uint64_t) meta;
    /* The key's count, or all of it but the cells of a HOT key. Changed
     * only by atomic RMWs: adds, and the exchanges of remove, drain and
     * settling. */
    _Atomic(int64_t) count;
    /* Written before the release store of meta that makes the slot LIVE,
     * and never while any reader may still see that LIVE meta. */
    union {
        unsigned char bytes[SLOT_KEY];
        struct longkey *lk;
    } key;
};
_Static_assert(sizeof(struct slot) == 32, "two slots per cache line");

struct table {
    uint32_t size;  /* slots; immutable */
    uint32_t cap;   /* no key is more than cap slots past its home;
                       immutable (MAX_DISP, more only for pathological
                       keys whose full hashes collide) */
    uint64_t salt;  /* mixes the hash into a home slot; immutable */
    /* The table this one replaced, while its counts still live there
     * (until the shard settles it); then NULL. Written under the lock. */
    _Atomic(struct table *) older;
    size_t used;    /* slots not EMPTY; under the lock */
    char pad_[TALLY_CACHE_LINE - 32];
    struct slot slot[];
};
_Static_assert(offsetof(struct table, slot) == TALLY_CACHE_LINE,
               "slots start on a cache line");

/* Work a shard has deferred until a grace period has passed. */
enum pend_kind {
    PEND_TOMB,   /* tb->slot[idx] was removed: settle its late adds */
    PEND_RESIZE, /* tb was replaced: move its counts to the current table */
    PEND_FREE,   /* tb is unreachable: free it */
};

struct pend {
    uint64_t cookie; /* tally__rcu_done(cookie): the work may be done */
    struct table *tb;
    uint32_t idx;
    uint32_t kind;
};

struct shard {
    _Alignas(TALLY_CACHE_LINE) pthread_mutex_t lock;
    _Atomic(struct table *) table; /* current; NULL before the first key */
    /* Odd while the shard moves counts between tables (a rebuild, or the
     * settling of a replaced table): a sequence count; readers who sum a
     * key over the tables retry when it moved under them. Written under
     * the lock. */
    _Atomic(uint32_t) settle_seq;
    uint32_t seq_depth;            /* nesting of settle sections; lock */
    _Atomic(size_t) live;          /* LIVE keys; written under the lock */
    /* Deferred work, oldest first (cookies ascend); under the lock. */
    struct pend *pend;
    size_t npend, pend_cap;
    uint32_t poll_skip; /* settles to let pass before polling again after
                           a poll that could not complete */
    struct tally_handle *handles;  /* this shard's handles; under the lock */
    /* Released handles whose removed key's id could not be settled for
     * lack of memory (linked by next); retried by settling. Under the
     * lock. */
    struct tally_handle *orphans;
};
_Static_assert(sizeof(struct shard) % TALLY_CACHE_LINE == 0,
               "shards must not share cache lines");

struct tally_map {
    struct shard shard[NSHARDS];
    /* Bumped (release) by every remove and every resize, before the
     * cookie of what they unlinked: a thread's remembered slot is valid
     * while the generation it saw is current (map.c). */
    _Alignas(TALLY_CACHE_LINE) _Atomic(uint64_t) gen;
    uint64_t serial;         /* unique per map in the process; never 0 */
    _Atomic(size_t) hot_keys; /* keys with cells (HOT); changed under a
                                 shard lock, read relaxed as a bound */
    struct tally__seed seed; /* the hash secret; immutable */
    struct tally_map *reg_next, *reg_prev; /* the fork registry; under
                                              maps_lock */
};

struct tally_handle {
    /* First, where tally.h's inline add reads it: head.id is the key's
     * cell id (the key is HOT while a handle exists), immutable; head.dead
     * is set (relaxed, once, under the shard lock) by the remove of the
     * key. */
    struct tally__handle_head head;
    tally_map *map;
    struct shard *shard;                 /* immutable */
    struct tally_handle *next, **pprev;  /* on shard->handles; under the
                                            shard lock */
    uint64_t hash;                       /* of the key; immutable */
    uint32_t len;
    unsigned char key[];                 /* a copy of the key */
};

static inline struct shard *shard_of(tally_map *m, uint64_t h)
{
    return &m->shard[h >> (64 - SHARD_BITS)];
}

/* The slot where a key with hash h starts its probe in tb. The salt
 * enters before the multiply, so that keys whose homes collide in one
 * table are spread again by a rebuild with another salt. */
static inline uint32_t home_of(const struct table *tb, uint64_t h)
{
    uint64_t x = (h ^ tb->salt) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(((x >> 32) * (uint64_t)tb->size) >> 32);
}

/* Whether the len (<= SLOT_KEY) bytes at a and b are equal: two
 * (possibly overlapping) word compares for 4..16 bytes, no call. */
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

/* Whether LIVE slot s (whose meta matched len and tag) holds key. */
static inline bool slot_has_key(const struct slot *s, const void *key,
                                size_t len)
{
    if (len <= SLOT_KEY)
        return short_key_equal(s->key.bytes, key, len);
    const struct longkey *lk = s->key.lk;
    return lk->len == len && memcmp(lk->bytes, key, len) == 0;
}

#if defined(__GNUC__)
#define TALLY_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define TALLY_ALWAYS_INLINE inline
#endif

/* The slot of key in tb, with its meta in *meta, or NULL. For readers in
 * a read-side section and for the lock holder. */
static TALLY_ALWAYS_INLINE struct slot *probe(const struct table *tb,
                                              uint64_t h, const void *key,
                                              size_t len, uint64_t *meta_out)
{
    const uint64_t want = meta_want(h, len);
    const uint32_t size = tb->size, cap = tb->cap;
    uint32_t i = home_of(tb, h);
    for (uint32_t n = 0; n <= cap; n++) {
        const struct slot *s = &tb->slot[i];
        /* Acquire pairs with the release store that made the slot LIVE
         * (map_table.c): its key is visible. */
        uint64_t meta = tally_atomic_load(
            (_Atomic(uint64_t) *)&s->meta, acquire);
        if ((meta & M_MATCH) == want && slot_has_key(s, key, len)) {
            *meta_out = meta;
            return (struct slot *)s;
        }
        if (meta_state(meta) == M_EMPTY)
            return NULL;
        if (++i == size)
            i = 0;
    }
    return NULL;
}

/* The slot of the same key in an older table, found by hash and, for a
 * long key, by its longkey pointer (which older tables share), so that the
 * key's bytes are never read through a table that is being retired. */
static inline struct slot *probe_older(const struct table *tb, uint64_t h,
                                       const struct slot *cur, size_t len)
{
    uint64_t want = meta_want(h, len);
    uint32_t i = home_of(tb, h);
    for (uint32_t n = 0; n <= tb->cap; n++) {
        const struct slot *s = &tb->slot[i];
        /* Acquire: as in probe(). */
        uint64_t meta = tally_atomic_load(
            (_Atomic(uint64_t) *)&s->meta, acquire);
        if (meta_state(meta) == M_EMPTY)
            return NULL;
        if ((meta & M_MATCH) == want &&
            (len <= SLOT_KEY
                 ? short_key_equal(s->key.bytes, cur->key.bytes, len)
                 : s->key.lk == cur->key.lk))
            return (struct slot *)s;
        if (++i == tb->size)
            i = 0;
    }
    return NULL;
}

/* The key's bytes and length, for a LIVE or TOMB slot. */
static inline const unsigned char *slot_key(const struct slot *s,
                                            uint64_t meta, size_t *len)
{
    unsigned lc = (unsigned)(meta >> M_LEN_SHIFT) & 31u;
    if (lc <= SLOT_KEY) {
        *len = lc;
        return s->key.bytes;
    }
    *len = s->key.lk->len;
    return s->key.lk->bytes;
}

/* ---- map_table.c: the writer side, shard lock held ----------------- */

/* Finds key in the current table or creates it with count initial;
 * returns its slot (in the current table) or NULL with *err (-ENOMEM).
 * Settles deferred work that is ready. */
struct slot *tally__map_find_or_insert(tally_map *m, struct shard *sh,
                                       uint64_t h, const void *key,
                                       size_t len, int64_t initial,
                                       int *err);
/* Adds amount to key's current life, creating it if absent: the way late
 * adds reach a key's next life. 0 or -ENOMEM (nothing changed). */
int tally__map_deposit(tally_map *m, struct shard *sh, uint64_t h,
                       const void *key, size_t len, int64_t amount);
/* Makes room for one more deferred record. 0 or -ENOMEM. */
int tally__map_pend_reserve(struct shard *sh);
/* Appends a record (room reserved). */
void tally__map_pend_push(struct shard *sh, struct pend p);
/* Does the deferred work whose grace period is over, oldest first. When
 * the oldest record's grace period is not known to be over, polls for it
 * (a membarrier) if poll is set or it is worth it: many records wait, or a
 * replaced table (memory) does; after a poll that could not complete, the
 * next few settles do not poll again. Returns 0, or -ENOMEM when some
 * work had to stay. */
int tally__map_settle(tally_map *m, struct shard *sh, bool poll);
/* Frees a table (however big). */
void tally__map_table_free(struct table *tb);
/* Frees a shard's tables, keys and deferred work (tally_map_free). */
void tally__map_shard_destroy(struct shard *sh);
/* Whether a handle of sh other than except holds cell id. */
bool tally__map_id_has_handle(struct shard *sh, uint32_t id,
                              const struct tally_handle *except);
/* Whether sh has a deferred record that still owns cell id. */
bool tally__map_id_pending(struct shard *sh, uint32_t id);
/* Moves what a removed key's id holds to the key's next life and gives
 * the id back, once neither its TOMB nor any handle holds it; hd (already
 * unlinked) is freed, or parked on sh->orphans when memory is short.
 * Shard lock held. */
void tally__map_settle_id(tally_map *m, struct shard *sh,
                          struct tally_handle *hd);
/* Gives a key its per-thread cells (makes it HOT). For the lock holder;
 * blocking id allocation unless try. 0, -ENOMEM or -EBUSY. */
int tally__map_promote_locked(tally_map *m, struct slot *s, bool try);

#endif /* TALLY_MAP_H */
