/*
 * store_index.c - a tally_store's key index: a hash trie in the shared
 * file, append-only and lock-free, whole after any process dies at any
 * instant.
 *
 * HOW IT WORKS
 *
 * A key's 64-bit hash (hash.h, keyed by the file's secret) is its path.
 * The top root_bits bits (12 in the stores the library creates) pick a
 * slot of the root table; each next 4 bits pick one of the 16 slots of a
 * node one level down: levels 1 .. last_level = (64 - root_bits) / 4. A
 * slot holds 0, an entry (the key, where its path ends) or a node (the
 * path goes on). Inserting a key whose slot holds another key's entry
 * expands that slot: a new node takes the other entry at the place its
 * own hash picks, and replaces it in the slot. Keys whose hashes are
 * equal in all 64 bits meet below the last level in collision nodes,
 * searched linearly: slots 0..14 hold entries, filled in order, and slot
 * 15 links the next collision node.
 *
 * Nothing is ever moved, freed or rehashed: an expansion puts the same
 * entry (its offset) one level deeper. So there is no resize for a dead
 * process to leave half done.
 *
 * INVARIANTS
 *
 *   1. A slot only goes forward: 0 -> entry (publish), entry -> node
 *      (expand); a node stays. Each step is one CAS.
 *   2. A published entry stays on its key's path: an expansion stores it
 *      in the new node at the slot its hash picks before the node
 *      replaces it.
 *   3. So along a key's path every slot above its entry holds a node,
 *      and the first slot that is not a node is where the key is (0 or
 *      another key's entry: the key is absent). Inserting K is a CAS
 *      from 0 on exactly that slot, so two processes inserting K at once
 *      end with one entry: the loser's CAS fails, it reads the slot again
 *      and finds K (its own entry is abandoned: leaked, never linked).
 *   4. A collision node's slot i+1 is filled only after slot i (an
 *      inserter moves on only past a filled slot), so a lookup may stop
 *      at the first empty one.
 *   5. An entry's key_len and key bytes are written before it is
 *      published and never after.
 *
 * ORDERING
 *
 * Publishing an entry or a node is a release CAS of its slot, after the
 * entry's key (or the node's one filled slot) was written; every reader
 * loads slots with acquire, so it sees the whole entry or node behind a
 * slot value it read. Nothing else in the index needs ordering.
 *
 * WHAT A CRASH LEAVES (each step of an insert)
 *
 *   - after allocating the entry or a node, before its CAS: an allocated
 *     chunk nothing links (leaked space); the key is absent.
 *   - after the publishing CAS, before counting the key in header.keys:
 *     the key is present and whole; tally_store_size() is low by one
 *     (tally_store_check says so; not corruption).
 *   - after an expansion's CAS: a node holding the old entry; the key
 *     being inserted is absent and the next insert of it goes on below.
 *
 * READERS
 *
 * A lookup reads at most one slot per level plus the collision chain:
 * wait-free, no writes. A walk (foreach, drain, check) reads every slot
 * once; see tally__store_walk for what it visits under concurrent
 * inserts. Walks verify that each entry lies on its own hash's path, and
 * bound the number of nodes and entries they visit by the file's size, so
 * that a damaged or hostile file ends a walk with TALLY_ECORRUPT, never
 * with a loop, a crash or a key visited twice.
 *
 * PROGRESS
 *
 * Lookup: wait-free. Insert: lock-free (a CAS fails only because another
 * insert or expansion succeeded on that slot; each slot can change at
 * most twice).
 */
#include "store.h"

#include <errno.h>
#include <string.h>

#include "testhook.h"

#if defined(TALLY_TEST_HOOKS)
/* Relaxed: set by a test between operations; forked children inherit. */
static _Atomic(uint64_t) hash_mask = ~(uint64_t)0;

void tally__store_hash_mask(uint64_t mask)
{
    tally_atomic_store(&hash_mask, mask, relaxed);
}
#endif

uint64_t tally__store_hash(const struct tally_store *s, const void *key,
                           size_t len)
{
    uint64_t h = tally__hash(&s->seed, key, len);
#if defined(TALLY_TEST_HOOKS)
    h &= tally_atomic_load(&hash_mask, relaxed);
#endif
    return h;
}

typedef _Atomic(uint64_t) slot_t;

struct tally__store_entry *tally__store_entry_at(struct tally_store *s,
                                                 uint64_t off)
{
    if (off % TALLY__STORE_GRANULE != 0 || off < s->data_start)
        return NULL;
    struct tally__store_entry *e =
        tally__store_at(s, off, TALLY__STORE_ENTRY_HEAD);
    if (e == NULL || e->key_len > TALLY_KEY_MAX)
        return NULL;
    if (tally__store_at(s, off + TALLY__STORE_ENTRY_HEAD, e->key_len) == NULL)
        return NULL;
    return e;
}

/* The node at a slot value v (odd), or NULL. */
static slot_t *node_at(struct tally_store *s, uint64_t v)
{
    uint64_t off = v - TALLY__SLOT_NODE;
    if (off % TALLY__STORE_GRANULE != 0 || off < s->data_start)
        return NULL;
    return tally__store_at(s, off, TALLY__STORE_NODE_SIZE);
}

static slot_t *root_slots(struct tally_store *s)
{
    /* Inside [0, data_start), which open checked is mapped. */
    return (slot_t *)(void *)(s->base + s->root_off);
}

/* How far right the bits that pick a slot at level lies: the root at
 * level 0, nodes at 1..last_level. */
static unsigned level_shift(const struct tally_store *s, unsigned level)
{
    return 64 - s->root_bits - TALLY__STORE_NODE_BITS * level;
}

static unsigned slot_index(const struct tally_store *s, uint64_t h,
                           unsigned level)
{
    return (unsigned)(h >> level_shift(s, level)) &
           (TALLY__STORE_NODE_SLOTS - 1);
}

static int same_key(const struct tally__store_entry *e, const void *key,
                    size_t len)
{
    return tally__store_key_eq(e, key, len);
}

/* Allocates and fills an entry for key; not yet linked. */
static int new_entry(struct tally_store *s, const void *key, size_t len,
                     uint64_t *out)
{
    uint64_t size = (TALLY__STORE_ENTRY_HEAD + len + TALLY__STORE_GRANULE - 1)
                    & ~(uint64_t)(TALLY__STORE_GRANULE - 1);
    uint64_t off, chunk;
    int r = tally__store_alloc(s, size, TALLY__STORE_GRANULE, &off, &chunk);
    if (r != 0)
        return r;
    TALLY_CRASH_POINT("insert.after_alloc");
    struct tally__store_entry *e = (void *)(s->base + off);
    tally_atomic_store(&e->count, 0, relaxed);
    tally_atomic_store(&e->stripe, 0, relaxed);
    tally_atomic_store(&e->drained, 0, relaxed);
    tally_atomic_store(&e->contention, 0, relaxed);
    e->key_len = (uint32_t)len;
    if (len > 0)
        memcpy(e->key, key, len);
    TALLY_CRASH_POINT("insert.after_fill");
    *out = off;
    return 0;
}

/* Allocates an empty node; not yet linked. */
static int new_node(struct tally_store *s, uint64_t *out)
{
    uint64_t off, chunk;
    int r = tally__store_alloc(s, TALLY__STORE_NODE_SIZE,
                               TALLY__STORE_GRANULE, &off, &chunk);
    if (r != 0)
        return r;
    slot_t *n = (slot_t *)(void *)(s->base + off);
    for (unsigned i = 0; i < TALLY__STORE_NODE_SLOTS; i++)
        tally_atomic_store(&n[i], 0, relaxed);
    *out = off;
    return 0;
}

/* The entry just won its slot. */
static struct tally__store_entry *published(struct tally_store *s,
                                            uint64_t off)
{
    TALLY_CRASH_POINT("insert.after_publish");
    tally_atomic_fetch_add(&tally__store_hdr(s)->keys, 1, relaxed);
    TALLY_CRASH_POINT("insert.after_count");
    return (struct tally__store_entry *)(void *)(s->base + off);
}

/* An insert in progress: what it has allocated and not linked yet. */
struct pending {
    uint64_t entry; /* our entry, filled, or 0 */
    uint64_t spare; /* an all-zero node we own, or 0 */
};

/* Tries to put a 0 slot's place to use for key: CAS 0 -> our entry.
 * Returns 1 when ours was published, 0 when the CAS lost (*v has the
 * winner's value), or a negative error. */
static int try_publish(struct tally_store *s, slot_t *slot, uint64_t *v,
                       const void *key, size_t len, struct pending *p)
{
    if (p->entry == 0) {
        int r = new_entry(s, key, len, &p->entry);
        if (r != 0)
            return r;
    }
    /* Release: publishes the entry's key and zeroed counts (new_entry)
     * to every reader that acquire-loads this slot. Acquire on failure:
     * *v is then another inserter's entry or node, which we read. */
    return tally_atomic_cas(slot, v, p->entry, release, acquire) ? 1 : 0;
}

/* Replaces entry e (value *v at slot, at level) by a node holding it.
 * Returns 1 (the slot now holds a node: *v), 0 (the CAS lost: *v has the
 * new value), or a negative error. */
static int expand(struct tally_store *s, slot_t *slot, uint64_t *v,
                  struct tally__store_entry *e, unsigned level,
                  struct pending *p)
{
    if (p->spare == 0) {
        int r = new_node(s, &p->spare);
        if (r != 0)
            return r;
    }
    slot_t *n = (slot_t *)(void *)(s->base + p->spare);
    unsigned i = 0; /* a collision node fills from slot 0 */
    if (level < s->last_level)
        i = slot_index(s, tally__store_hash(s, e->key, e->key_len),
                       level + 1);
    /* Relaxed: the node is ours alone until the CAS below publishes it. */
    tally_atomic_store(&n[i], *v, relaxed);
    TALLY_CRASH_POINT("expand.after_fill");
    uint64_t node = p->spare + TALLY__SLOT_NODE;
    /* Release: publishes the node's filled slot; pairs with the acquire
     * loads of slots. Acquire on failure: we go on from the new value. */
    if (tally_atomic_cas(slot, v, node, release, acquire)) {
        TALLY_CRASH_POINT("expand.after_publish");
        p->spare = 0;
        *v = node;
        return 1;
    }
    tally_atomic_store(&n[i], 0, relaxed); /* still ours: keep it clean */
    return 0;
}

/* The collision chain that starts at node value v. */
static int find_collision(struct tally_store *s, uint64_t v, const void *key,
                          size_t len, int create, struct pending *p,
                          struct tally__store_entry **out)
{
    uint64_t steps = 0;
    for (;;) {
        slot_t *n = node_at(s, v);
        uint64_t limit = tally_atomic_load(&s->mapped, relaxed) /
                         TALLY__STORE_NODE_SIZE;
        if (n == NULL || ++steps > limit)
            return TALLY_ECORRUPT;
        for (unsigned i = 0; i < TALLY__STORE_NODE_SLOTS - 1; i++) {
            /* Acquire: pairs with the release CAS that published it. */
            uint64_t w = tally_atomic_load(&n[i], acquire);
            for (;;) {
                if (w == 0) {
                    if (!create)
                        return -ENOENT;
                    int r = try_publish(s, &n[i], &w, key, len, p);
                    if (r < 0)
                        return r;
                    if (r == 1) {
                        *out = published(s, p->entry);
                        return 0;
                    }
                    continue;
                }
                if (w & TALLY__SLOT_NODE)
                    return TALLY_ECORRUPT;
                struct tally__store_entry *e = tally__store_entry_at(s, w);
                if (e == NULL)
                    return TALLY_ECORRUPT;
                if (same_key(e, key, len)) {
                    *out = e;
                    return 0;
                }
                break;
            }
        }
        slot_t *link = &n[TALLY__STORE_NODE_SLOTS - 1];
        uint64_t w = tally_atomic_load(link, acquire); /* as above */
        if (w == 0) {
            if (!create)
                return -ENOENT;
            if (p->spare == 0) {
                int r = new_node(s, &p->spare);
                if (r != 0)
                    return r;
            }
            /* Release: publishes the new node's zeroed slots. */
            if (tally_atomic_cas(link, &w, p->spare + TALLY__SLOT_NODE,
                                 release, acquire)) {
                w = p->spare + TALLY__SLOT_NODE;
                p->spare = 0;
            }
        }
        if (!(w & TALLY__SLOT_NODE))
            return TALLY_ECORRUPT;
        v = w;
    }
}

int tally__store_find(struct tally_store *s, const void *key, size_t len,
                      int create, struct tally__store_entry **out)
{
    uint64_t h = tally__store_hash(s, key, len);
    struct pending p = {0, 0};
    unsigned level = 0;
    slot_t *slot = &root_slots(s)[h >> level_shift(s, 0)];
    for (;;) {
        /* Acquire: pairs with the release CAS that published the entry
         * or node this slot holds (try_publish, expand). */
        uint64_t v = tally_atomic_load(slot, acquire);
        for (;;) {
            if (v == 0) {
                if (!create)
                    return -ENOENT;
                int r = try_publish(s, slot, &v, key, len, &p);
                if (r < 0)
                    return r;
                if (r == 1) {
                    *out = published(s, p.entry);
                    return 0;
                }
                continue;
            }
            if (v & TALLY__SLOT_NODE)
                break;
            struct tally__store_entry *e = tally__store_entry_at(s, v);
            if (e == NULL)
                return TALLY_ECORRUPT;
            if (same_key(e, key, len)) {
                *out = e; /* p.entry, if any, lost a race: leaked */
                return 0;
            }
            if (!create)
                return -ENOENT;
            int r = expand(s, slot, &v, e, level, &p);
            if (r < 0)
                return r;
        }
        level++;
        if (level > s->last_level)
            return find_collision(s, v, key, len, create, &p, out);
        slot_t *n = node_at(s, v);
        if (n == NULL)
            return TALLY_ECORRUPT;
        slot = &n[slot_index(s, h, level)];
    }
}

/* ------------------------------------------------------------------ */
/* Walks                                                               */
/* ------------------------------------------------------------------ */

struct frame {
    slot_t *slots;
    unsigned n;      /* slots in this table */
    unsigned next;   /* the next slot to read */
    unsigned level;  /* 0 root, 1..last_level trie, last_level+1 chain */
    uint64_t prefix; /* the hash bits that led here */
};

/* Levels 0 .. last_level + 1, last_level <= 15. */
#define WALK_DEPTH 18

/* Whether entry e may sit where the walk found it: its hash agrees with
 * the bits of the path (all 64 in a collision node). */
static int on_path(struct tally_store *s, struct tally__store_entry *e,
                   unsigned level, uint64_t prefix)
{
    uint64_t h = tally__store_hash(s, e->key, e->key_len);
    if (level > s->last_level)
        return h == prefix;
    unsigned shift = level_shift(s, level);
    return (h >> shift) == (prefix >> shift);
}

/* Whether a walk may visit one more thing of the given size: not more of
 * them than the file could hold. */
static int within(struct tally_store *s, uint64_t count, uint64_t size)
{
    return count <= tally_atomic_load(&s->mapped, relaxed) / size;
}

/* How many slots ahead of the walk their entries and nodes are
 * prefetched. Slot order is hash order and entries lie in the file in
 * insertion order, so without this each entry is a cache miss the walk
 * waits for in full (two thirds of a million-key foreach). Two stages:
 * WALK_AHEAD slots ahead, what a slot points to (an entry's head, or a
 * node's slots); half as far, for a slot that points to a node (whose
 * slots the first stage fetched a few steps before), what that node's
 * slots point to. In a big store the root's and the upper nodes' slots
 * each lead to a node of about one entry per slot, so the second stage
 * is what starts those entries' misses before the walk reaches them. */
#define WALK_AHEAD 8

/* Starts loading what slot value v points to, if it is mapped. */
static inline void prefetch_target(struct tally_store *s, uint64_t v)
{
    uint64_t off = v & ~(uint64_t)TALLY__SLOT_NODE;
    if (off == 0 ||
        off > tally_atomic_load(&s->mapped, relaxed) - TALLY__STORE_NODE_SIZE)
        return;
    __builtin_prefetch(s->base + off);
    /* A node's slots span TALLY__STORE_NODE_SIZE bytes: all its lines. */
    if (v & TALLY__SLOT_NODE)
        for (unsigned b = 64; b < TALLY__STORE_NODE_SIZE; b += 64)
            __builtin_prefetch(s->base + off + b);
}

/* The two stages for the walk at slot i of f. Hints only: the walk reads
 * every slot again (acquire) and checks what it finds; a prefetch never
 * faults; the loads here are relaxed and of mapped memory only. */
static inline void walk_prefetch(struct tally_store *s,
                                 const struct frame *f, unsigned i)
{
    if (i + WALK_AHEAD < f->n)
        prefetch_target(s, tally_atomic_load(&f->slots[i + WALK_AHEAD],
                                             relaxed));
    if (i + WALK_AHEAD / 2 >= f->n)
        return;
    uint64_t v = tally_atomic_load(&f->slots[i + WALK_AHEAD / 2], relaxed);
    if (!(v & TALLY__SLOT_NODE))
        return;
    uint64_t off = v - TALLY__SLOT_NODE;
    if (off > tally_atomic_load(&s->mapped, relaxed) - TALLY__STORE_NODE_SIZE)
        return;
    slot_t *n = (slot_t *)(void *)(s->base + off);
    for (unsigned k = 0; k < TALLY__STORE_NODE_SLOTS; k++)
        prefetch_target(s, tally_atomic_load(&n[k], relaxed));
}

/*
 * Visits every entry reachable from the root, reading each slot once.
 *
 * Under concurrent inserts: every key published before the walk began is
 * visited exactly once; a key published during it at most once. Why: a
 * key lives in the subtree of one root slot, and below that in the
 * subtree of one slot per level; the walk reads each slot once, and an
 * expansion only moves the key one level deeper under the same slot,
 * into a node that already holds it when the slot starts pointing to it.
 * So if the walk reads the slot before the expansion it sees the entry,
 * and if after, it descends into the node and finds the entry there; it
 * never reads that slot again. (The prefetches read slots ahead too, but
 * only as hints: nothing the walk visits is decided by those reads.)
 */
int tally__store_walk(struct tally_store *s, tally__store_walk_fn visit,
                      void *ctx)
{
    struct frame st[WALK_DEPTH];
    int top = 0;
    uint64_t nodes = 0, entries = 0;
    st[0] = (struct frame){root_slots(s), 1u << s->root_bits, 0, 0, 0};
    while (top >= 0) {
        struct frame *f = &st[top];
        if (f->next == f->n) {
            top--;
            continue;
        }
        unsigned i = f->next++;
        if (i == 0) {
            /* A new table: its first slots' targets (the second stage
             * begins at slot WALK_AHEAD / 2). */
            for (unsigned a = 0; a < WALK_AHEAD && a < f->n; a++)
                prefetch_target(s, tally_atomic_load(&f->slots[a], relaxed));
        }
        walk_prefetch(s, f, i);
        /* Acquire: pairs with the release CAS that published it. */
        uint64_t v = tally_atomic_load(&f->slots[i], acquire);
        if (v == 0)
            continue;
        int chain = f->level > s->last_level;
        uint64_t prefix = f->prefix;
        if (!chain)
            prefix |= (uint64_t)i << level_shift(s, f->level);
        if (v & TALLY__SLOT_NODE) {
            if (chain && i != TALLY__STORE_NODE_SLOTS - 1)
                return TALLY_ECORRUPT; /* only slot 15 links */
            slot_t *n = node_at(s, v);
            if (n == NULL || !within(s, ++nodes, TALLY__STORE_NODE_SIZE))
                return TALLY_ECORRUPT;
            struct frame next = {n, TALLY__STORE_NODE_SLOTS, 0,
                                 f->level + 1, prefix};
            if (chain) {
                next.level = f->level;
                *f = next; /* the chain goes on: same depth */
            } else {
                if (top + 1 >= WALK_DEPTH)
                    return TALLY_ECORRUPT;
                st[++top] = next;
            }
            continue;
        }
        if (chain && i == TALLY__STORE_NODE_SLOTS - 1)
            return TALLY_ECORRUPT; /* slot 15 holds only a link */
        struct tally__store_entry *e = tally__store_entry_at(s, v);
        if (e == NULL || !within(s, ++entries, TALLY__STORE_ENTRY_HEAD) ||
            !on_path(s, e, f->level, prefix))
            return TALLY_ECORRUPT;
        int r = visit(s, e, ctx);
        if (r != 0)
            return r;
    }
    return 0;
}
