/*
 * map_table.c - tally_map's writer side: creating keys, growing and
 * rebuilding tables, and the work a shard defers until a grace period has
 * passed ("settling"). Everything here runs under the shard's lock; map.c
 * explains the design, the readers and the ordering.
 *
 * HOW A TABLE CHANGES
 *
 *   - Insert: a key goes into the first EMPTY or DEAD slot of its probe,
 *     at most cap slots past its home. Its count, key and (for a long key)
 *     longkey are written first; then a release store of meta makes it
 *     LIVE (pairs with the acquire load in probe()).
 *   - Rebuild: when an insert would fill more than 3/4 of the slots (DEAD
 *     and TOMB ones included), or find no free slot within cap, the shard
 *     gets a new table sized for 5/3 of its live keys (so it also shrinks
 *     after churn), with a fresh salt. LIVE keys move with their counts
 *     (exchanged, under the shard's settle sequence), and the new table
 *     is published with a release store; its older field points
 *     at the old one. A key that cannot be placed within cap (a cluster:
 *     bad luck, or keys crafted against a known secret) makes the rebuild
 *     try another salt, then a bigger size; the cap is given up only for
 *     keys whose full 64-bit hashes collide, which needs the secret.
 *   - Deferred work (struct pend, oldest first): a remove leaves a TOMB
 *     whose late adds (adds that found the key before the remove and
 *     stored after) are moved to the key's next life once a grace period
 *     has passed, and the slot becomes DEAD (reusable); a rebuild leaves
 *     the old table, whose counts are moved into the current table under
 *     the shard's settle sequence once no adder can be in it, and which is
 *     freed after one more grace period.
 *
 * Settling is done by whoever holds the shard lock next (inserts,
 * removes, handle calls), by foreach, drain and tally_map_sync; it never
 * waits for readers except in tally_map_sync.
 */
#include "map.h"

#include <errno.h>
#include <stdlib.h>

#include "alloc.h"

#define MIN_SLOTS 16u
/* A shard polls for a grace period (a membarrier) once this many records
 * wait, so that removes pay for one in a batch. */
#define POLL_BATCH 32u

/* Table sizes: 16, 24, 32, 48, 64, 96, ... (x1.5 then x4/3), so that the
 * load after a rebuild stays within 1/2..3/4 for any number of keys. */
static uint32_t size_at_least(size_t need)
{
    uint64_t s = MIN_SLOTS;
    while (s < need && s < ((uint64_t)1 << 31))
        s = (s & (s - 1)) == 0 ? s / 2 * 3 : s / 3 * 4;
    return (uint32_t)s;
}

/* Tables of this many bytes or more come straight from the kernel as
 * zero pages: no zeroing pass, and memory goes back when they are freed. */
#define PAGES_MIN ((size_t)256 << 10)

static size_t table_bytes(uint32_t size)
{
    return sizeof(struct table) + (size_t)size * sizeof(struct slot);
}

static struct table *table_alloc(uint32_t size, uint32_t cap, uint64_t salt)
{
    size_t bytes = table_bytes(size);
    struct table *tb = bytes >= PAGES_MIN
                           ? tally__alloc_pages(bytes)
                           : tally__aligned_alloc(TALLY_CACHE_LINE, bytes);
    if (tb == NULL)
        return NULL;
    /* Zero-filled: every slot EMPTY, older NULL, used 0. */
    tb->size = size;
    tb->cap = cap;
    tb->salt = salt;
    return tb;
}

void tally__map_table_free(struct table *tb)
{
    if (tb == NULL)
        return;
    size_t bytes = table_bytes(tb->size);
    if (bytes >= PAGES_MIN)
        tally__free_pages(tb, bytes);
    else
        tally__free(tb);
}

/* The shard's settle sequence (map.h): odd while counts move between
 * tables. Sections nest (a settle's deposit may rebuild); only the
 * outermost one moves the number. Under the lock. */
static void seq_begin(struct shard *sh)
{
    if (sh->seq_depth++ != 0)
        return;
    uint32_t q = tally_atomic_load(&sh->settle_seq, relaxed);
    tally_atomic_store(&sh->settle_seq, q + 1, relaxed);
    /* Release fence: the odd number is ordered before the moves that
     * follow (pairs with the acquire fence in map.c's read_key). */
    tally_atomic_fence(release);
}

static void seq_end(struct shard *sh)
{
    if (--sh->seq_depth != 0)
        return;
    uint32_t q = tally_atomic_load(&sh->settle_seq, relaxed);
    /* Release: ends the moves; pairs with the acquire load of the
     * sequence in map.c's read_key. */
    tally_atomic_store(&sh->settle_seq, q + 1, release);
}

static uint64_t new_salt(tally_map *m, struct shard *sh)
{
    /* Secret-dependent and different every time (the shard lock orders
     * the counter; it is per shard, mixed with the shard's address). */
    uint64_t in[2] = {(uint64_t)(uintptr_t)sh, (uint64_t)sh->pend_cap};
    static _Atomic(uint64_t) salts;
    in[1] ^= tally_atomic_fetch_add(&salts, 1, relaxed) << 32;
    return tally__hash(&m->seed, in, sizeof(in));
}

/* Puts a copy of old slot o (LIVE) into tb, which no reader sees yet:
 * the first EMPTY slot within cap, with o's count moved into it (an
 * exchange: adds that land in o afterwards stay there until the old table
 * is settled). False when there is no room. */
static bool place_move(struct table *tb, struct slot *o, uint64_t h)
{
    uint32_t i = home_of(tb, h);
    for (uint32_t n = 0; n <= tb->cap; n++) {
        struct slot *s = &tb->slot[i];
        if (tally_atomic_load(&s->meta, relaxed) == M_EMPTY) {
            uint64_t meta = tally_atomic_load(&o->meta, relaxed);
            /* Keep state, length, tag and a HOT key's id; drop a cold
             * key's contention record. */
            if (!(meta & M_HOT))
                meta &= 0xffffffffull;
            s->key = o->key;
            tally_atomic_store(&s->count,
                               tally_atomic_exchange(&o->count, 0, relaxed),
                               relaxed);
            tally_atomic_store(&s->meta, meta, relaxed);
            tb->used++;
            return true;
        }
        if (++i == tb->size)
            i = 0;
    }
    return false;
}

static uint64_t key_hash(tally_map *m, const struct slot *s, uint64_t meta)
{
    size_t len;
    const unsigned char *key = slot_key(s, meta, &len);
    return tally__hash(&m->seed, key, len);
}

/* Whether a key with hash h would find an EMPTY slot within cap of tb. */
static bool has_room(const struct table *tb, uint64_t h)
{
    uint32_t i = home_of(tb, h);
    for (uint32_t n = 0; n <= tb->cap; n++) {
        if (tally_atomic_load(&tb->slot[i].meta, relaxed) == M_EMPTY)
            return true;
        if (++i == tb->size)
            i = 0;
    }
    return false;
}

/* Copies old's LIVE keys into tb with their counts; false (some key found
 * no room within cap) leaves what was placed for unfill(). The keys are
 * taken in batches: hash a batch and prefetch each key's home line in tb,
 * then place them, so that a big table's cache misses overlap. */
#define FILL_BATCH 16

static bool fill(tally_map *m, struct table *tb, struct table *old)
{
    for (uint32_t i = 0; i < old->size; i += FILL_BATCH) {
        struct slot *os[FILL_BATCH];
        uint64_t hs[FILL_BATCH];
        unsigned n = 0;
        for (uint32_t j = i; j < i + FILL_BATCH && j < old->size; j++) {
            struct slot *o = &old->slot[j];
            uint64_t meta = tally_atomic_load(&o->meta, relaxed);
            if (meta_state(meta) != M_LIVE)
                continue;
            hs[n] = key_hash(m, o, meta);
            __builtin_prefetch(&tb->slot[home_of(tb, hs[n])], 1);
            os[n++] = o;
        }
        for (unsigned k = 0; k < n; k++)
            if (!place_move(tb, os[k], hs[k]))
                return false;
    }
    return true;
}

/* Gives old back the counts a failed fill() moved into tb. */
static void unfill(tally_map *m, struct table *tb, struct table *old)
{
    for (uint32_t i = 0; i < old->size; i++) {
        struct slot *o = &old->slot[i];
        uint64_t meta = tally_atomic_load(&o->meta, relaxed);
        if (meta_state(meta) != M_LIVE)
            continue;
        size_t len;
        (void)slot_key(o, meta, &len);
        struct slot *s = probe_older(tb, key_hash(m, o, meta), o, len);
        if (s != NULL)
            tally_atomic_fetch_add(
                &o->count, tally_atomic_exchange(&s->count, 0, relaxed),
                relaxed);
    }
}

/* Builds and publishes a new table for sh holding old's LIVE keys and
 * their counts, with room for need keys and an EMPTY slot for a key with
 * hash extra_h. Returns it, or NULL (-ENOMEM; nothing changed). The
 * caller reserved a deferred record for the old table. Readers that sum a
 * key over the tables wait (the settle sequence) while counts move. */
static struct table *rebuild(tally_map *m, struct shard *sh,
                             struct table *old, size_t need, uint64_t extra_h)
{
    uint32_t size = size_at_least(need + need * 2 / 3 + 1);
    uint32_t cap = MAX_DISP;
    struct table *tb;
    bool moving = false;
    for (unsigned attempt = 1;; attempt++) {
        tb = table_alloc(size, cap, new_salt(m, sh));
        if (tb == NULL) {
            if (moving)
                seq_end(sh);
            return NULL;
        }
        if (old != NULL && !moving) {
            seq_begin(sh);
            moving = true;
        }
        bool ok = old == NULL || fill(m, tb, old);
        if (ok && has_room(tb, extra_h))
            break;
        if (old != NULL)
            unfill(m, tb, old);
        tally__map_table_free(tb);
        /* Four salts per size; a cluster that survives them is not bad
         * luck at this size. Only keys whose full hashes collide (which
         * needs the secret) get past a few doublings: then the cap goes. */
        if (attempt % 4 == 0)
            size = size_at_least((size_t)size + 1);
        if (attempt >= 16)
            cap = size;
    }
    /* Relaxed: no reader sees tb before the release store below. */
    tally_atomic_store(&tb->older, old, relaxed);
    /* Release: publishes the filled table (pairs with the acquire loads
     * of sh->table in map.c). */
    tally_atomic_store(&sh->table, tb, release);
    if (old != NULL) {
        seq_end(sh);
        /* Release: threads that remembered a slot of old forget it (map.c,
         * the remembered slot), before the cookie below. */
        tally_atomic_fetch_add(&m->gen, 1, release);
        tally__map_pend_push(sh, (struct pend){.cookie = tally__rcu_cookie(),
                                               .tb = old,
                                               .kind = PEND_RESIZE});
    }
    return tb;
}

int tally__map_pend_reserve(struct shard *sh)
{
    if (sh->npend < sh->pend_cap)
        return 0;
    size_t cap = sh->pend_cap != 0 ? sh->pend_cap * 2 : 8;
    struct pend *p = tally__malloc(cap * sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    if (sh->npend != 0)
        memcpy(p, sh->pend, sh->npend * sizeof(*p));
    tally__free(sh->pend);
    sh->pend = p;
    sh->pend_cap = cap;
    return 0;
}

void tally__map_pend_push(struct shard *sh, struct pend p)
{
    sh->pend[sh->npend++] = p;
}

/* Finds key in the current table, or creates it there with count
 * initial (*created). No settling (settling calls it). */
static struct slot *insert_locked(tally_map *m, struct shard *sh, uint64_t h,
                                  const void *key, size_t len,
                                  int64_t initial, bool *created, int *err)
{
    *created = false;
    struct table *tb = tally_atomic_load(&sh->table, relaxed);
    uint64_t want = meta_want(h, len);
    struct slot *free_slot = NULL;
    bool free_empty = false;
    if (tb != NULL) {
        uint32_t i = home_of(tb, h);
        for (uint32_t n = 0; n <= tb->cap; n++) {
            struct slot *s = &tb->slot[i];
            uint64_t meta = tally_atomic_load(&s->meta, relaxed);
            unsigned st = meta_state(meta);
            if (st == M_EMPTY) {
                if (free_slot == NULL) {
                    free_slot = s;
                    free_empty = true;
                }
                break;
            }
            if (st == M_DEAD && free_slot == NULL)
                free_slot = s;
            if ((meta & M_MATCH) == want && slot_has_key(s, key, len))
                return s;
            if (++i == tb->size)
                i = 0;
        }
    }

    struct longkey *lk = NULL;
    if (len > SLOT_KEY) {
        lk = tally__malloc(sizeof(*lk) + len);
        if (lk == NULL) {
            *err = -ENOMEM;
            return NULL;
        }
        lk->len = (uint32_t)len;
        memcpy(lk->bytes, key, len);
    }
    if (tb == NULL || free_slot == NULL ||
        (free_empty && (tb->used + 1) * 4 > (uint64_t)tb->size * 3)) {
        size_t live = tally_atomic_load(&sh->live, relaxed);
        struct table *nt = NULL;
        if (tb == NULL || tally__map_pend_reserve(sh) == 0)
            nt = rebuild(m, sh, tb, live + 1, h);
        if (nt == NULL) {
            tally__free(lk);
            *err = -ENOMEM;
            return NULL;
        }
        tb = nt;
        /* rebuild() left an EMPTY slot within cap for h. */
        free_slot = NULL;
        uint32_t i = home_of(tb, h);
        while (tally_atomic_load(&tb->slot[i].meta, relaxed) != M_EMPTY)
            if (++i == tb->size)
                i = 0;
        free_slot = &tb->slot[i];
        free_empty = true;
    }
    if (free_empty)
        tb->used++;
    /* A DEAD slot's count is 0 and no thread can still touch it: the
     * grace period before it became DEAD saw every adder leave. */
    tally_atomic_store(&free_slot->count, initial, relaxed);
    if (lk != NULL)
        free_slot->key.lk = lk;
    else
        memcpy(free_slot->key.bytes, key, len);
    /* Release: publishes count and key with the LIVE state (pairs with
     * the acquire load in probe()). */
    tally_atomic_store(&free_slot->meta, want, release);
    tally_atomic_store(&sh->live, tally_atomic_load(&sh->live, relaxed) + 1,
                       relaxed);
    *created = true;
    return free_slot;
}

struct slot *tally__map_find_or_insert(tally_map *m, struct shard *sh,
                                       uint64_t h, const void *key,
                                       size_t len, int64_t initial,
                                       int *err)
{
    (void)tally__map_settle(m, sh, false);
    bool created;
    struct slot *s = insert_locked(m, sh, h, key, len, initial, &created,
                                   err);
    if (s != NULL && !created && initial != 0)
        tally_atomic_fetch_add(&s->count, initial, relaxed);
    return s;
}

int tally__map_deposit(tally_map *m, struct shard *sh, uint64_t h,
                       const void *key, size_t len, int64_t amount)
{
    if (amount == 0)
        return 0;
    bool created;
    int err = 0;
    struct slot *s = insert_locked(m, sh, h, key, len, amount, &created,
                                   &err);
    if (s == NULL)
        return err;
    if (!created)
        tally_atomic_fetch_add(&s->count, amount, relaxed);
    return 0;
}

bool tally__map_id_has_handle(struct shard *sh, uint32_t id,
                              const struct tally_handle *except)
{
    for (const struct tally_handle *hd = sh->handles; hd != NULL;
         hd = hd->next)
        if (hd != except && hd->head.id == id)
            return true;
    return false;
}

bool tally__map_id_pending(struct shard *sh, uint32_t id)
{
    for (size_t i = 0; i < sh->npend; i++) {
        const struct pend *p = &sh->pend[i];
        if (p->kind == PEND_TOMB) {
            uint64_t meta = tally_atomic_load(&p->tb->slot[p->idx].meta,
                                              relaxed);
            if ((meta & M_HOT) && meta_id(meta) == id)
                return true;
        }
    }
    for (const struct tally_handle *hd = sh->orphans; hd != NULL;
         hd = hd->next)
        if (hd->head.id == id)
            return true;
    return false;
}

void tally__map_settle_id(tally_map *m, struct shard *sh,
                          struct tally_handle *hd)
{
    uint32_t id = hd->head.id;
    /* No adder can reach the id now: by-name adders left with the TOMB's
     * grace period, and this was its last handle. */
    if (tally__map_deposit(m, sh, hd->hash, hd->key, hd->len,
                           tally__id_read(id)) != 0) {
        hd->next = sh->orphans; /* no memory: keep it, retry later */
        sh->orphans = hd;
        return;
    }
    (void)tally__id_release(id);
    tally__free(hd);
}

int tally__map_promote_locked(tally_map *m, struct slot *s, bool try)
{
    uint64_t meta = tally_atomic_load(&s->meta, relaxed);
    if (meta_state(meta) != M_LIVE || (meta & M_HOT))
        return 0;
    uint32_t id;
    int err = try ? tally__id_try_alloc(&id) : tally__id_alloc(&id);
    if (err != 0)
        return err;
    /* Only adders' contention updates can race with us (the lock keeps
     * every other writer out): retry the CAS until it lands. Relaxed: the
     * id's cells start at 0 and readers add them to the count whichever
     * meta they see. */
    while (!tally_atomic_cas(&s->meta, &meta,
                             (meta & 0xffffffffull) | M_HOT |
                                 (uint64_t)id << 32,
                             relaxed, relaxed))
        ;
    tally_atomic_fetch_add(&m->hot_keys, 1, relaxed);
    return 0;
}

/* ---- settling --------------------------------------------------------- */

static int settle_tomb(tally_map *m, struct shard *sh, const struct pend *p)
{
    struct slot *s = &p->tb->slot[p->idx];
    uint64_t meta = tally_atomic_load(&s->meta, relaxed);
    size_t len;
    const unsigned char *key = slot_key(s, meta, &len);
    uint64_t h = tally__hash(&m->seed, key, len);
    /* The grace period is over: no adder that found the key LIVE is still
     * running, so these amounts are final. A drain may have taken some of
     * them already (it exchanges too): each amount goes to one place. */
    int64_t r = tally_atomic_exchange(&s->count, 0, relaxed);
    bool hot = (meta & M_HOT) != 0;
    uint32_t id = meta_id(meta);
    /* A handle of the removed key keeps its id: its adds may go on until
     * it sees the dead mark, and its last release settles the id. */
    bool own_id = hot && !tally__map_id_has_handle(sh, id, NULL);
    int64_t total = r;
    if (own_id)
        total = tally_wrap_add(total, tally__id_read(id));
    int err = tally__map_deposit(m, sh, h, key, len, total);
    if (err != 0) {
        tally_atomic_fetch_add(&s->count, r, relaxed); /* try again later */
        return err;
    }
    if (own_id)
        (void)tally__id_release(id); /* what it held was just deposited */
    if (len > SLOT_KEY)
        tally__free(s->key.lk);
    /* Relaxed: readers already take TOMB for "not here"; DEAD only lets
     * inserts reuse the slot, under the lock. */
    tally_atomic_store(&s->meta, (uint64_t)M_DEAD, relaxed);
    return 0;
}

/* A replaced table, a grace period after the rebuild: no adder is in it
 * any more, so what adds left in it after the rebuild moved the counts
 * (usually nothing) goes to the current table, and it leaves the chain. */
static int settle_resize(tally_map *m, struct shard *sh, const struct pend *p)
{
    struct table *old = p->tb;
    int err = tally__map_pend_reserve(sh); /* for the PEND_FREE below */
    if (err != 0)
        return err;
    seq_begin(sh);
    for (uint32_t i = 0; i < old->size && err == 0; i++) {
        struct slot *s = &old->slot[i];
        if (tally_atomic_load(&s->count, relaxed) == 0)
            continue;
        uint64_t meta = tally_atomic_load(&s->meta, relaxed);
        if (meta_state(meta) != M_LIVE)
            continue;
        /* Drains exchange too: each amount goes to one of us. */
        int64_t c = tally_atomic_exchange(&s->count, 0, relaxed);
        if (c == 0)
            continue;
        size_t len;
        const unsigned char *key = slot_key(s, meta, &len);
        err = tally__map_deposit(m, sh, key_hash(m, s, meta), key, len, c);
        if (err != 0)
            tally_atomic_fetch_add(&s->count, c, relaxed);
    }
    if (err == 0) {
        /* Unlink old from the chain of tables. Release pairs with the
         * acquire loads of older in map.c: a reader that no longer sees
         * old sees the counts it moved. */
        for (struct table *t = tally_atomic_load(&sh->table, relaxed);
             t != NULL; t = tally_atomic_load(&t->older, relaxed)) {
            if (tally_atomic_load(&t->older, relaxed) == old) {
                tally_atomic_store(&t->older,
                                   tally_atomic_load(&old->older, relaxed),
                                   release);
                break;
            }
        }
    }
    seq_end(sh);
    if (err != 0)
        return err;
    /* Readers that loaded old from the chain may still be in it. */
    tally__map_pend_push(sh, (struct pend){.cookie = tally__rcu_cookie(),
                                           .tb = old,
                                           .kind = PEND_FREE});
    return 0;
}

static int settle_one(tally_map *m, struct shard *sh, const struct pend *p)
{
    switch (p->kind) {
    case PEND_TOMB:
        return settle_tomb(m, sh, p);
    case PEND_RESIZE:
        return settle_resize(m, sh, p);
    default: /* PEND_FREE */
        tally__map_table_free(p->tb);
        return 0;
    }
}

int tally__map_settle(tally_map *m, struct shard *sh, bool poll)
{
    if (tally_unlikely(sh->orphans != NULL)) {
        struct tally_handle *list = sh->orphans;
        sh->orphans = NULL;
        while (list != NULL) {
            struct tally_handle *next = list->next;
            tally__map_settle_id(m, sh, list);
            list = next;
        }
    }
    if (sh->npend == 0)
        return sh->orphans != NULL ? -ENOMEM : 0;
    if (!tally__rcu_done(sh->pend[0].cookie)) {
        if (!poll) {
            if (sh->poll_skip != 0) {
                sh->poll_skip--;
                return 0;
            }
            poll = sh->npend >= POLL_BATCH;
            for (size_t i = 0; i < sh->npend && !poll; i++)
                poll = sh->pend[i].kind != PEND_TOMB;
        }
        /* One poll for the newest record completes all that it can. */
        if (!poll || !tally__rcu_poll(sh->pend[sh->npend - 1].cookie)) {
            if (poll)
                sh->poll_skip = POLL_BATCH;
            if (!tally__rcu_done(sh->pend[0].cookie))
                return 0;
        }
    }
    int err = 0;
    size_t n = sh->npend, i;
    for (i = 0; i < n; i++) {
        /* A copy: settling may push records (and move the array). */
        struct pend p = sh->pend[i];
        if (!tally__rcu_done(p.cookie))
            break;
        if ((err = settle_one(m, sh, &p)) != 0)
            break;
    }
    memmove(sh->pend, sh->pend + i, (sh->npend - i) * sizeof(sh->pend[0]));
    sh->npend -= i;
    return err;
}

void tally__map_shard_destroy(struct shard *sh)
{
    /* Records first: a TOMB's longkey and id, an orphan's id and handle,
     * a table already unlinked from the chain. */
    for (size_t i = 0; i < sh->npend; i++) {
        struct pend *p = &sh->pend[i];
        if (p->kind == PEND_TOMB) {
            struct slot *s = &p->tb->slot[p->idx];
            uint64_t meta = tally_atomic_load(&s->meta, relaxed);
            if (meta & M_HOT)
                (void)tally__id_release(meta_id(meta));
            if (((meta >> M_LEN_SHIFT) & 31u) == LEN_LONG)
                tally__free(s->key.lk);
        } else if (p->kind == PEND_FREE) {
            tally__map_table_free(p->tb);
        }
        /* PEND_RESIZE: the table is still on the chain, freed below. */
    }
    tally__free(sh->pend);
    while (sh->orphans != NULL) {
        struct tally_handle *hd = sh->orphans;
        sh->orphans = hd->next;
        (void)tally__id_release(hd->head.id);
        tally__free(hd);
    }
    struct table *tb = tally_atomic_load(&sh->table, relaxed);
    if (tb != NULL) {
        /* The current table owns its LIVE keys' longkeys and ids. */
        for (uint32_t i = 0; i < tb->size; i++) {
            struct slot *s = &tb->slot[i];
            uint64_t meta = tally_atomic_load(&s->meta, relaxed);
            if (meta_state(meta) != M_LIVE)
                continue;
            if (meta & M_HOT)
                (void)tally__id_release(meta_id(meta));
            if (((meta >> M_LEN_SHIFT) & 31u) == LEN_LONG)
                tally__free(s->key.lk);
        }
    }
    while (tb != NULL) {
        struct table *older = tally_atomic_load(&tb->older, relaxed);
        tally__map_table_free(tb);
        tb = older;
    }
}
