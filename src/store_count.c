/*
 * store_count.c - a tally_store key's count: the inline count, per-CPU
 * cells for contended keys, handles, values, foreach and drain.
 *
 * HOW A KEY COUNTS
 *
 * A key's value is
 *
 *     count + sum over c < cpu_cells of cell[c] - drained      (wrapping)
 *
 * A cold key has no cells: an add is a CAS on its inline count (8 bytes in
 * its entry). When such CASes keep failing (another CPU added in between:
 * the key is contended), the key is striped: it gets one 8-byte cell per
 * CPU (cpu_cells, fixed in the header), each CPU's cell on its own cache
 * line, and adds go to the cell of the CPU the thread runs on, with an
 * atomic add. Processes on different CPUs then write different lines; a
 * thread that migrates between reading its CPU and adding just adds to
 * another CPU's cell, atomically, so nothing is lost either way.
 *
 * Striping is what LongAdder does on a failed CAS, with hysteresis: a
 * failed CAS counts in entry.contention, the key is striped when that
 * count reaches STRIPE_AFTER, and a successful add resets it now and then
 * (with chance 2^-CALM_BITS, picked by a hash of the new value), so only a
 * key whose adds fail often enough gets cells; an occasional collision
 * does not stripe every key. Cold keys cost no per-CPU memory.
 *
 * Cells live in slabs of 8 keys (store.h, struct tally__store_slab): line
 * 1 + c of a slab holds CPU c's cells of its 8 keys, so a striped key
 * costs 8 bytes per CPU, not a cache line per CPU, and no two CPUs' cells
 * share a line. A striping process claims a slot of the current slab
 * (fetch_add on its claimed count; the first 8 claims win slots) or
 * installs a new slab (CAS of header.slab), then publishes the slot in
 * the entry (CAS of entry.stripe from 0).
 *
 * The CPU comes from glibc's registered rseq area (the cpu_id field at
 * thread pointer + __rseq_offset: one load), else sched_getcpu() (which
 * uses the vDSO), else a number per thread. CPU numbers beyond the cells
 * fold onto them (cpu & (cpu_cells - 1)).
 *
 * DRAIN
 *
 * drained is a watermark: a drain reads t = count + cells (the total of
 * all adds so far) and d = drained, and moves drained from d to t by CAS,
 * reporting t - d. Adds never touch drained and drains never touch the
 * counts. Every successful CAS reports exactly the distance it moves the
 * watermark, so the sum of everything any process ever drained is the
 * watermark, and the value left is total - watermark: drained + left ==
 * added, exactly, with any number of processes adding and draining, even
 * though t is read one cell at a time (the sums telescope; a drain whose
 * read was stale just reports less, and the next one the rest).
 *
 * WHO WRITES WHAT (see also store.h)
 *
 *   entry.count        atomic adds (CAS) by any process
 *   cells              atomic adds (fetch_add) by any process
 *   entry.drained      CAS by drainers
 *   entry.stripe       CAS 0 -> slot, once
 *   entry.contention   fetch_add on a failed CAS; reset by adders
 *   slab.claimed       fetch_add by stripers
 *   header.slab        CAS by the process installing a slab
 *   handle.cells       a process-local cache of the stripe: set once
 *
 * WHAT A READER SEES
 *
 * A value read sums the count and the cells one load at a time, and the
 * watermark around them (read before and after; retried when a drain
 * moved it), so it counts every add that finished before the read began
 * and some of those that ran during it; for a key that is only
 * incremented and not drained, it lies between the values at the read's
 * start and end.
 *
 * WHAT A CRASH LEAVES
 *
 *   - during an add: the add is one atomic instruction (a CAS or a
 *     fetch_add): it happened or it did not.
 *   - striping, after claiming a slot, before the stripe CAS: a slot
 *     nobody uses (leaked); the key counts inline, and another failed CAS
 *     stripes it later.
 *   - installing a slab, before its CAS: a leaked slab.
 *   - a drain, after its CAS, before its callback ran: the amount is out
 *     of the value and was reported to nobody. A drain hands amounts to
 *     its caller; a caller that dies with them loses them, as it would
 *     lose anything else it had read.
 *
 * PROGRESS
 *
 * A striped key's add: one atomic add, wait-free. An inline add: a CAS
 * loop, lock-free (a failure means another add succeeded), and it stripes
 * the key when failures pile up. Value reads: wait-free but for retries
 * when a drain moved the watermark during the read. Drains: lock-free.
 */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "alloc.h"
#include "testhook.h"

#if defined(__GLIBC__) &&                                                   \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35)) &&         \
    (defined(__x86_64__) || defined(__aarch64__))
#include <sys/rseq.h>
#define HAVE_RSEQ 1
#else
#define HAVE_RSEQ 0
#endif

#define STRIPE_AFTER 32u /* failed CASes that stripe a key */
#define CALM_BITS 14     /* a successful add resets them w.p. 2^-14 */
#define SLAB_TRIES 16    /* claim attempts before striping gives up */

/* ------------------------------------------------------------------ */
/* Which CPU                                                           */
/* ------------------------------------------------------------------ */

enum { CPU_RSEQ = 1, CPU_GETCPU, CPU_THREAD };

/* Set once by cpu_probe (pthread_once, in tally_store_open) before any
 * store exists in the process, read by adds afterwards. */
static int cpu_mode;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#if defined(TALLY_TEST_HOOKS)
/* Relaxed: set by a test between operations. */
static _Atomic(int) test_cpu = -1;

void tally__store_test_cpu(int cpu)
{
    tally_atomic_store(&test_cpu, cpu, relaxed);
}
#endif

static void cpu_probe(void);

#if defined(TALLY_TEST_HOOKS)
const char *tally__store_cpu_source(void)
{
    tally__store_cpu_init();
    return cpu_mode == CPU_RSEQ     ? "rseq"
           : cpu_mode == CPU_GETCPU ? "sched_getcpu"
                                    : "thread";
}

/* Written between operations, with no add running (the tests' rule). */
int tally__store_test_cpu_source(const char *source)
{
    tally__store_cpu_init();
    if (strcmp(source, "probe") == 0)
        cpu_probe();
    else if (strcmp(source, "sched_getcpu") == 0 && sched_getcpu() >= 0)
        cpu_mode = CPU_GETCPU;
    else if (strcmp(source, "thread") == 0)
        cpu_mode = CPU_THREAD;
    else
        return -EINVAL;
    return 0;
}
#endif

static void cpu_probe(void)
{
#if HAVE_RSEQ
    if (__rseq_size >= offsetof(struct rseq, cpu_id) + sizeof(uint32_t)) {
        cpu_mode = CPU_RSEQ;
        return;
    }
#endif
    cpu_mode = sched_getcpu() >= 0 ? CPU_GETCPU : CPU_THREAD;
}

void tally__store_cpu_init(void)
{
    pthread_once(&cpu_once, cpu_probe);
}

static unsigned thread_number(void)
{
    static _Atomic(unsigned) next;
    static _Thread_local unsigned mine;
    if (mine == 0)
        mine = tally_atomic_fetch_add(&next, 1, relaxed) + 1;
    return mine;
}

static inline unsigned cpu_now(void)
{
#if defined(TALLY_TEST_HOOKS)
    int forced = tally_atomic_load(&test_cpu, relaxed);
    if (forced >= 0)
        return (unsigned)forced;
#endif
#if HAVE_RSEQ
    if (tally_likely(cpu_mode == CPU_RSEQ)) {
        char *tp;
#if defined(__x86_64__)
        __asm__("mov %%fs:0, %0" : "=r"(tp));
#else
        __asm__("mrs %0, tpidr_el0" : "=r"(tp));
#endif
        /* The kernel rewrites cpu_id whenever the thread is scheduled
         * onto a CPU; volatile so that each add reads it afresh. A stale
         * or uninitialised (-1) value only picks another cell. */
        return *(volatile uint32_t *)(void *)(tp + __rseq_offset +
                                              offsetof(struct rseq, cpu_id));
    }
#endif
    if (cpu_mode == CPU_GETCPU) {
        int c = sched_getcpu();
        if (c >= 0)
            return (unsigned)c;
    }
    return thread_number();
}

/* ------------------------------------------------------------------ */
/* Cells                                                               */
/* ------------------------------------------------------------------ */

/* The key's cell for CPU 0 at stripe offset st, checked, or NULL. */
static char *cells_at(struct tally_store *s, uint64_t st)
{
    if (st % 8 != 0 || st < s->data_start)
        return NULL;
    return tally__store_at(s, st,
                           (uint64_t)s->cell_mask * TALLY__STORE_LINE + 8);
}

static inline void cell_add(char *cells, uint32_t mask, int64_t delta)
{
    unsigned c = cpu_now() & mask;
    _Atomic(uint64_t) *cell =
        (_Atomic(uint64_t) *)(void *)(cells + (size_t)c * TALLY__STORE_LINE);
    tally_atomic_fetch_add(cell, (uint64_t)delta, relaxed);
}

/* The current slab at offset off, checked, or NULL. */
static struct tally__store_slab *slab_at(struct tally_store *s, uint64_t off)
{
    if (off % TALLY__STORE_LINE != 0 || off < s->data_start)
        return NULL;
    struct tally__store_slab *sl = tally__store_at(
        s, off, TALLY__STORE_SLAB_HEAD + (uint64_t)s->cells * TALLY__STORE_LINE);
    if (sl == NULL || sl->magic != TALLY__STORE_SLAB_MAGIC ||
        sl->cells != s->cells)
        return NULL;
    return sl;
}

/* A fresh slot of cells (its CPU-0 cell's offset) in *cell. */
static int claim_slot(struct tally_store *s, uint64_t *cell)
{
    struct tally__store_header *h = tally__store_hdr(s);
    for (int tries = 0; tries < SLAB_TRIES; tries++) {
        /* Acquire: pairs with the release CAS that installed the slab,
         * publishing its header and zeroed cells. */
        uint64_t cur = tally_atomic_load(&h->slab, acquire);
        if (cur != 0) {
            struct tally__store_slab *sl = slab_at(s, cur);
            if (sl == NULL)
                return TALLY_ECORRUPT;
            uint64_t k = tally_atomic_fetch_add(&sl->claimed, 1, relaxed);
            if (k < TALLY__STORE_SLAB_SLOTS) {
                *cell = cur + TALLY__STORE_SLAB_HEAD + 8 * k;
                return 0;
            }
        }
        /* The slab is full (or there is none): install a new one, taking
         * its slot 0 ourselves. */
        uint64_t size = TALLY__STORE_SLAB_HEAD +
                        (uint64_t)s->cells * TALLY__STORE_LINE;
        uint64_t off, chunk;
        int r = tally__store_alloc(s, size, TALLY__STORE_LINE, &off, &chunk);
        if (r != 0)
            return r;
        struct tally__store_slab *sl = (void *)(s->base + off);
        _Atomic(uint64_t) *c =
            (_Atomic(uint64_t) *)(void *)(s->base + off +
                                          TALLY__STORE_SLAB_HEAD);
        for (uint64_t i = 0; i < (uint64_t)s->cells * 8; i++)
            tally_atomic_store(&c[i], 0, relaxed);
        sl->magic = TALLY__STORE_SLAB_MAGIC;
        sl->cells = s->cells;
        sl->chunk = chunk;
        memset(sl->reserved, 0, sizeof sl->reserved);
        tally_atomic_store(&sl->claimed, 1, relaxed);
        TALLY_CRASH_POINT("slab.after_fill");
        /* Release: publishes the slab's header and zeroed cells to the
         * acquire load above (in any process). */
        if (tally_atomic_cas(&h->slab, &cur, off, release, relaxed)) {
            TALLY_CRASH_POINT("slab.after_publish");
            *cell = off + TALLY__STORE_SLAB_HEAD;
            return 0;
        }
        /* Another process installed one first: ours is leaked; claim in
         * theirs. */
    }
    return -EAGAIN;
}

/* Gives e per-CPU cells unless it has them. 0 or an error (the key then
 * keeps counting inline). */
static int stripe_entry(struct tally_store *s, struct tally__store_entry *e)
{
    if (tally_atomic_load(&e->stripe, relaxed) != 0)
        return 0;
    uint64_t cell;
    int r = claim_slot(s, &cell);
    if (r != 0)
        return r;
    TALLY_CRASH_POINT("stripe.after_claim");
    uint64_t none = 0;
    /* Release: the slot's zeroed cells, published to us by the slab's
     * CAS, are passed on to the adders that acquire-load entry.stripe.
     * A lost CAS leaves our slot unused (leaked). */
    if (tally_atomic_cas(&e->stripe, &none, cell, release, relaxed))
        TALLY_CRASH_POINT("stripe.after_publish");
    return 0;
}

/* Uses the stripe at st for an add; 1 when done, 0 when st is bad. */
static int striped_add(struct tally_store *s, uint64_t st, int64_t delta,
                       _Atomic(char *) *cache)
{
    char *cells = cells_at(s, st);
    if (cells == NULL)
        return 0; /* a damaged stripe: count inline instead */
    if (cache != NULL)
        /* Release: hands on what our acquire load of entry.stripe
         * got (the cells' zeroing) to threads acquire-loading the
         * handle's cache. */
        tally_atomic_store(cache, cells, release);
    cell_add(cells, s->cell_mask, delta);
    return 1;
}

static inline int calm(uint64_t v)
{
    return (v * 0x9e3779b97f4a7c15ull) >> (64 - CALM_BITS) == 0;
}

#if defined(TALLY_TEST_HOOKS)
/* The next n CASes on a count fail as if another add got in first.
 * Relaxed: set by a single-threaded test between operations. */
static _Atomic(long) test_cas_failures;

void tally__store_test_cas_failures(long n)
{
    tally_atomic_store(&test_cas_failures, n, relaxed);
}
#endif

/* The add's CAS on the inline count: 1 done, 0 failed (*v then holds the
 * count's current value). Relaxed: the count orders nothing; the CAS
 * alone makes the add atomic. Unsigned arithmetic wraps. */
static inline int count_cas(struct tally__store_entry *e, uint64_t *v,
                            int64_t delta)
{
#if defined(TALLY_TEST_HOOKS)
    long forced = tally_atomic_load(&test_cas_failures, relaxed);
    if (tally_unlikely(forced > 0)) {
        tally_atomic_store(&test_cas_failures, forced - 1, relaxed);
        *v = tally_atomic_load(&e->count, relaxed);
        return 0;
    }
#endif
    return tally_atomic_cas(&e->count, v, *v + (uint64_t)delta, relaxed,
                            relaxed);
}

/* After a failed CAS (v: the count seen then): count the failure, stripe
 * the key when failures pile up, and add inline or to the cells. */
static __attribute__((noinline)) void
add_contended(struct tally_store *s, struct tally__store_entry *e,
              int64_t delta, _Atomic(char *) *cache, uint64_t v)
{
    for (;;) {
        uint32_t n = tally_atomic_fetch_add(&e->contention, 1, relaxed) + 1;
        if (n % STRIPE_AFTER == 0 && s->cells > 1)
            (void)stripe_entry(s, e); /* on failure: stay inline */
        /* Acquire: pairs with the release CAS in stripe_entry. */
        uint64_t st = tally_atomic_load(&e->stripe, acquire);
        if (st != 0 && striped_add(s, st, delta, cache))
            return;
        if (count_cas(e, &v, delta))
            return;
    }
}

/* An add to e: to the running CPU's cell when the key is striped, else a
 * CAS on the inline count; a failed CAS goes to add_contended. *cache,
 * when not NULL, receives the cells once the key is striped (a handle's
 * cache). */
static inline void entry_add(struct tally_store *s,
                             struct tally__store_entry *e, int64_t delta,
                             _Atomic(char *) *cache)
{
    /* Acquire: pairs with the release CAS in stripe_entry. */
    uint64_t st = tally_atomic_load(&e->stripe, acquire);
    if (tally_unlikely(st != 0) && striped_add(s, st, delta, cache))
        return;
    uint64_t v = tally_atomic_load(&e->count, relaxed);
    if (tally_likely(count_cas(e, &v, delta))) {
        /* Now and then forget old failures: only keys whose adds keep
         * failing get striped. */
        if (tally_unlikely(calm(v + (uint64_t)delta)) &&
            tally_atomic_load(&e->contention, relaxed) != 0)
            tally_atomic_store(&e->contention, 0, relaxed);
        return;
    }
    add_contended(s, e, delta, cache, v);
}

static int entry_total(struct tally_store *s, struct tally__store_entry *e,
                       uint64_t *total)
{
    uint64_t v = tally_atomic_load(&e->count, relaxed);
    /* Acquire: pairs with the release CAS in stripe_entry (the cells are
     * zeroed before we read them). */
    uint64_t st = tally_atomic_load(&e->stripe, acquire);
    if (st != 0) {
        char *cells = cells_at(s, st);
        if (cells == NULL)
            return TALLY_ECORRUPT;
        for (uint32_t c = 0; c < s->cells; c++)
            v += tally_atomic_load(
                (_Atomic(uint64_t) *)(void *)(cells + (size_t)c *
                                                          TALLY__STORE_LINE),
                relaxed);
    }
    *total = v;
    return 0;
}

int tally__store_entry_value(struct tally_store *s,
                             struct tally__store_entry *e, int64_t *value)
{
    uint64_t d = tally_atomic_load(&e->drained, relaxed), t;
    /* A drain that moves the watermark while we read the total would
     * pair an old total with a new watermark: read it again. Bounded:
     * after a few tries the last pair is as good as a concurrent read
     * gets. */
    for (int tries = 0; tries < 8; tries++) {
        int r = entry_total(s, e, &t);
        if (r != 0)
            return r;
        uint64_t d2 = tally_atomic_load(&e->drained, relaxed);
        if (d2 == d)
            break;
        d = d2;
    }
    *value = (int64_t)(t - d);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The API                                                             */
/* ------------------------------------------------------------------ */

static int check_key(const tally_store *s, const void *key, size_t len)
{
    if (s == NULL || key == NULL)
        return -EINVAL;
    if (len > TALLY_KEY_MAX)
        return -ENAMETOOLONG;
    return 0;
}

/*
 * Each thread remembers the last entry it found by name (and the store's
 * serial), so that a thread adding to one key again and again compares
 * the key instead of hashing and walking. Entries never move and are
 * never freed while the store is open, so the remembered one is valid as
 * long as the serial matches: no generation to check, unlike tally_map.
 * Initial-exec TLS, like tally__dir (tally.h section 7).
 */
struct last_entry {
    uint64_t serial;
    struct tally__store_entry *entry;
    /* entry's cells once the thread has seen it striped (else NULL). Only
     * this thread reads or writes it: relaxed throughout. */
    _Atomic(char *) cells;
};
static _Thread_local struct last_entry last
    __attribute__((tls_model("initial-exec")));

static inline int lookup(tally_store *s, const void *key, size_t len,
                         int create, struct tally__store_entry **out)
{
    struct tally__store_entry *e = last.entry;
    if (last.serial == s->serial && tally__store_key_eq(e, key, len)) {
        *out = e;
        return 0;
    }
    int r = tally__store_find(s, key, len, create, &e);
    if (r != 0)
        return r;
    last.serial = s->serial;
    last.entry = e;
    tally_atomic_store(&last.cells, NULL, relaxed);
    *out = e;
    return 0;
}

/* An add by name, all cases. */
static __attribute__((noinline)) int add_key_slow(tally_store *s,
                                                  const void *key, size_t len,
                                                  int64_t delta)
{
    int r = check_key(s, key, len);
    if (r != 0)
        return r;
    if (s->readonly)
        return -EROFS;
    struct tally__store_entry *e;
    r = lookup(s, key, len, 1, &e);
    if (r != 0)
        return r;
    entry_add(s, e, delta, NULL);
    return 0;
}

/* The rest of entry_add's cases, for add_key to tail-call. A striped
 * key's cells are remembered with the entry. */
static __attribute__((noinline)) int add_key_striped(tally_store *s,
                                                     struct tally__store_entry *e,
                                                     int64_t delta)
{
    entry_add(s, e, delta, &last.cells);
    return 0;
}

static __attribute__((noinline)) int add_key_cells(tally_store *s,
                                                   char *cells, int64_t delta)
{
    cell_add(cells, s->cell_mask, delta);
    return 0;
}

static __attribute__((noinline)) int add_key_contended(tally_store *s,
                                                       struct tally__store_entry *e,
                                                       int64_t delta, uint64_t v)
{
    add_contended(s, e, delta, NULL, v);
    return 0;
}

static __attribute__((noinline)) int add_key_calm(struct tally__store_entry *e)
{
    if (tally_atomic_load(&e->contention, relaxed) != 0)
        tally_atomic_store(&e->contention, 0, relaxed);
    return 0;
}

/* An add by name. The common case, a thread adding again to the key it
 * added to last (a key of 4 to 16 bytes, not striped, an uncontended CAS)
 * runs here with no stack frame; everything else is a tail call. */
static inline int add_key(tally_store *s, const void *key, size_t len,
                          int64_t delta)
{
    struct tally__store_entry *e = last.entry;
    /* The length first: only then are len bytes of e's key there. */
    if (tally_likely(s != NULL && key != NULL && len - 4 <= 12 &&
                     !s->readonly && last.serial == s->serial &&
                     e->key_len == len)) {
        const unsigned char *a = e->key, *b = key;
        uint64_t diff;
        if (len >= 8) {
            uint64_t a0, a1, b0, b1;
            memcpy(&a0, a, 8);
            memcpy(&b0, b, 8);
            memcpy(&a1, a + len - 8, 8);
            memcpy(&b1, b + len - 8, 8);
            diff = (a0 ^ b0) | (a1 ^ b1);
        } else {
            uint32_t a0, a1, b0, b1;
            memcpy(&a0, a, 4);
            memcpy(&b0, b, 4);
            memcpy(&a1, a + len - 4, 4);
            memcpy(&b1, b + len - 4, 4);
            diff = (a0 ^ b0) | (a1 ^ b1);
        }
        if (tally_likely(diff == 0)) {
            char *cells = tally_atomic_load(&last.cells, relaxed);
            if (cells != NULL)
                return add_key_cells(s, cells, delta);
            /* Acquire: pairs with the release CAS in stripe_entry. */
            if (tally_atomic_load(&e->stripe, acquire) != 0)
                return add_key_striped(s, e, delta);
            uint64_t v = tally_atomic_load(&e->count, relaxed);
            if (!count_cas(e, &v, delta))
                return add_key_contended(s, e, delta, v);
            if (tally_unlikely(calm(v + (uint64_t)delta)))
                return add_key_calm(e);
            return 0;
        }
    }
    return add_key_slow(s, key, len, delta);
}

int tally_store_add_n(tally_store *s, const void *key, size_t len,
                      int64_t delta)
{
    return add_key(s, key, len, delta);
}

int tally_store_add(tally_store *s, const char *key, int64_t delta)
{
    if (key == NULL)
        return -EINVAL;
    return add_key(s, key, strlen(key), delta);
}

int tally_store_inc(tally_store *s, const char *key)
{
    if (key == NULL)
        return -EINVAL;
    return add_key(s, key, strlen(key), 1);
}

int tally_store_get_n(tally_store *s, const void *key, size_t len,
                      int64_t *value)
{
    int r = check_key(s, key, len);
    if (r != 0)
        return r;
    if (value == NULL)
        return -EINVAL;
    struct tally__store_entry *e;
    r = lookup(s, key, len, 0, &e);
    if (r != 0)
        return r;
    return tally__store_entry_value(s, e, value);
}

int tally_store_get(tally_store *s, const char *key, int64_t *value)
{
    if (key == NULL)
        return -EINVAL;
    return tally_store_get_n(s, key, strlen(key), value);
}

int64_t tally_store_value(tally_store *s, const char *key)
{
    int64_t v = 0;
    if (tally_store_get(s, key, &v) != 0)
        return 0;
    return v;
}

struct visit_ctx {
    tally_visit_fn fn;
    void *ctx;
};

static int foreach_visit(struct tally_store *s, struct tally__store_entry *e,
                         void *arg)
{
    struct visit_ctx *vc = arg;
    int64_t v;
    int r = tally__store_entry_value(s, e, &v);
    if (r != 0)
        return r;
    return vc->fn(vc->ctx, e->key, e->key_len, v);
}

int tally_store_foreach(tally_store *s, tally_visit_fn fn, void *ctx)
{
    if (s == NULL || fn == NULL)
        return -EINVAL;
    struct visit_ctx vc = {fn, ctx};
    return tally__store_walk(s, foreach_visit, &vc);
}

static int drain_visit(struct tally_store *s, struct tally__store_entry *e,
                       void *arg)
{
    struct visit_ctx *vc = arg;
    uint64_t d = tally_atomic_load(&e->drained, relaxed), t;
    for (;;) {
        int r = entry_total(s, e, &t);
        if (r != 0)
            return r;
        if (t == d)
            return 0; /* nothing since the last drain */
        TALLY_CRASH_POINT("drain.before_cas");
        /* Relaxed: the watermark is one location; exactness needs only
         * the CAS's atomicity (the reported amounts telescope). */
        if (tally_atomic_cas(&e->drained, &d, t, relaxed, relaxed))
            break;
    }
    TALLY_CRASH_POINT("drain.after_cas");
    return vc->fn(vc->ctx, e->key, e->key_len, (int64_t)(t - d));
}

int tally_store_drain(tally_store *s, tally_visit_fn fn, void *ctx)
{
    if (s == NULL || fn == NULL)
        return -EINVAL;
    if (s->readonly)
        return -EROFS;
    struct visit_ctx vc = {fn, ctx};
    return tally__store_walk(s, drain_visit, &vc);
}

/* ------------------------------------------------------------------ */
/* Handles                                                             */
/* ------------------------------------------------------------------ */

int tally_store_handle_new_n(tally_store *s, const void *key, size_t len,
                             tally_store_handle **out)
{
    int r = check_key(s, key, len);
    if (r != 0)
        return r;
    if (out == NULL)
        return -EINVAL;
    if (s->readonly)
        return -EROFS;
    struct tally_store_handle *h = tally__malloc(sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    struct tally__store_entry *e;
    r = tally__store_find(s, key, len, 1, &e);
    if (r != 0) {
        tally__free(h);
        return r;
    }
    atomic_init(&h->cells, NULL);
    h->cell_mask = s->cell_mask;
    h->entry = e;
    h->store = s;
    /* Acquire: pairs with the release CAS in stripe_entry. */
    uint64_t st = tally_atomic_load(&e->stripe, acquire);
    if (st != 0)
        atomic_init(&h->cells, cells_at(s, st));
    *out = h;
    return 0;
}

int tally_store_handle_new(tally_store *s, const char *key,
                           tally_store_handle **out)
{
    if (key == NULL)
        return -EINVAL;
    return tally_store_handle_new_n(s, key, strlen(key), out);
}

void tally_store_handle_add(tally_store_handle *h, int64_t delta)
{
    /* Acquire: pairs with the release store of the cache (striped_add),
     * so the cells' zeroing happens before our add. */
    char *cells = tally_atomic_load(&h->cells, acquire);
    if (tally_likely(cells != NULL)) {
        cell_add(cells, h->cell_mask, delta);
        return;
    }
    entry_add(h->store, h->entry, delta, &h->cells);
}

void tally_store_handle_inc(tally_store_handle *h)
{
    tally_store_handle_add(h, 1);
}

void tally_store_handle_release(tally_store_handle *h)
{
    tally__free(h);
}

/* ------------------------------------------------------------------ */
/* Test hooks                                                          */
/* ------------------------------------------------------------------ */

#if defined(TALLY_TEST_HOOKS)
int tally__store_stripe(tally_store *s, const void *key, size_t len)
{
    int r = check_key(s, key, len);
    if (r != 0)
        return r;
    if (s->readonly)
        return -EROFS;
    struct tally__store_entry *e;
    r = tally__store_find(s, key, len, 0, &e);
    if (r != 0)
        return r;
    return stripe_entry(s, e);
}

int tally__store_striped(tally_store *s, const void *key, size_t len)
{
    int r = check_key(s, key, len);
    if (r != 0)
        return r;
    struct tally__store_entry *e;
    r = tally__store_find(s, key, len, 0, &e);
    if (r != 0)
        return r;
    return tally_atomic_load(&e->stripe, relaxed) != 0;
}
#endif
