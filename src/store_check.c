/*
 * store_check.c - tally_store_check: verify a store file's whole
 * structure, read-only, and say what is wrong, one line per problem.
 *
 * It maps the file read-only (a process of its own, as far as the file is
 * concerned: it writes nothing), then:
 *
 *   - the header: everything tally_store_open checks (magic, byte order,
 *     versions, word size, checksum, sizes, the hash function), 'used'
 *     within the file and the limit, the file within its limit;
 *   - the index: every slot of the root and of every node reached (tags,
 *     alignment, bounds), every entry (bounds, key length, that its hash
 *     leads to where it is), collision chains (only entries in slots
 *     0..14, filled in order, equal hashes, no key twice), and that the
 *     walk stays within what the file could hold (no cycles);
 *   - stripes: each striped key's cells lie in a valid slab, in a slot
 *     that slab handed out, and no two keys share a slot; header.slab is
 *     a valid slab;
 *   - space: every chunk reached (nodes, entries, slabs) lies in
 *     [data_start, used) and no two overlap. What remains of [data_start,
 *     used) is leaked: allocated by a process that died before linking it,
 *     or by the loser of a race. That is reported as a note, not a
 *     problem, as is a key count that lags the keys found (a process died
 *     between publishing a key and counting it).
 *
 * On a store that other processes are changing, the check sees a moving
 * target: it reads 'used' and the key count first, allows offsets up to
 * the latest 'used' it reads, and its leak figure then includes inserts
 * in flight. Its problems are still real problems: nothing a live writer
 * does passes through a state the check rejects.
 *
 * Every walk is bounded by the file's size, every offset is checked
 * before use, and the check's memory is bounded by the number of chunks
 * the file could hold, so any file gets an answer.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"

#define MAX_LINES 1000 /* problems reported one by one; then a count */

enum kind { K_NODE, K_ENTRY, K_SLAB };

struct chunk {
    uint64_t off;  /* start of the allocation */
    uint64_t size;
    uint64_t what; /* the offset it was reached by (for messages) */
    enum kind kind;
};

struct checker {
    struct tally_store *s;
    tally_report_fn report;
    void *ctx;
    uint64_t problems;
    uint64_t used; /* the latest 'used' read */
    int nomem;
    struct chunk *chunks;
    size_t nchunks, cap;
    uint64_t *stripes; /* stripe offsets of striped keys */
    size_t nstripes, scap;
    uint64_t entries, nodes;
};

static const char *kind_name[] = {"node", "entry", "slab"};

__attribute__((format(printf, 2, 3))) static void say(struct checker *c,
                                                      const char *fmt, ...)
{
    c->problems++;
    if (c->report == NULL || c->problems > MAX_LINES)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->report(c->ctx, line);
}

__attribute__((format(printf, 2, 3))) static void note(struct checker *c,
                                                       const char *fmt, ...)
{
    if (c->report == NULL)
        return;
    char line[256];
    int n = snprintf(line, sizeof line, "note: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    c->report(c->ctx, line);
}

static int grow_array(void **arr, size_t *cap, size_t elem)
{
    size_t ncap = *cap ? *cap * 2 : 1024;
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static void add_chunk(struct checker *c, uint64_t off, uint64_t size,
                      uint64_t what, enum kind kind)
{
    if (c->nchunks == c->cap &&
        grow_array((void **)&c->chunks, &c->cap, sizeof *c->chunks) != 0) {
        c->nomem = 1;
        return;
    }
    c->chunks[c->nchunks++] = (struct chunk){off, size, what, kind};
}

/* Whether [off, off + size) lies in the allocated area; rereads 'used'
 * (live stores grow) before saying no. */
static int allocated(struct checker *c, uint64_t off, uint64_t size)
{
    if (off >= c->s->data_start && off <= c->used && size <= c->used - off)
        return 1;
    uint64_t u = tally_atomic_load(&tally__store_hdr(c->s)->used, relaxed);
    if (u > c->used && u <= c->s->max_bytes)
        c->used = u;
    return off >= c->s->data_start && off <= c->used &&
           size <= c->used - off;
}

/* ------------------------------------------------------------------ */
/* Stripes and slabs                                                   */
/* ------------------------------------------------------------------ */

static uint64_t slab_bytes(const struct tally_store *s)
{
    return TALLY__STORE_SLAB_HEAD + (uint64_t)s->cells * TALLY__STORE_LINE;
}

/* Checks the slab at off; 1 when sound. what names who points at it. */
static int check_slab(struct checker *c, uint64_t off, const char *what,
                      uint64_t from)
{
    struct tally_store *s = c->s;
    if (off % TALLY__STORE_LINE != 0 || !allocated(c, off, slab_bytes(s))) {
        say(c, "%s at 0x%llx: slab 0x%llx misaligned or outside the "
               "allocated area", what, (unsigned long long)from,
            (unsigned long long)off);
        return 0;
    }
    struct tally__store_slab *sl = tally__store_at(s, off, slab_bytes(s));
    if (sl == NULL) {
        say(c, "slab at 0x%llx: beyond the end of the file",
            (unsigned long long)off);
        return 0;
    }
    if (sl->magic != TALLY__STORE_SLAB_MAGIC || sl->cells != s->cells) {
        say(c, "slab at 0x%llx: bad magic or cell count (%u, header says "
               "%u)", (unsigned long long)off, sl->cells, s->cells);
        return 0;
    }
    if (sl->chunk > off || off - sl->chunk >= TALLY__STORE_LINE ||
        sl->chunk % TALLY__STORE_GRANULE != 0 || sl->chunk < s->data_start) {
        say(c, "slab at 0x%llx: its allocation start 0x%llx is wrong",
            (unsigned long long)off, (unsigned long long)sl->chunk);
        return 0;
    }
    if (tally_atomic_load(&sl->claimed, relaxed) == 0) {
        say(c, "slab at 0x%llx: no slot claimed (its installer holds "
               "slot 0)", (unsigned long long)off);
        return 0;
    }
    return 1;
}

static void check_stripe(struct checker *c, uint64_t entry, uint64_t st)
{
    struct tally_store *s = c->s;
    uint64_t k = (st % TALLY__STORE_LINE) / 8;
    if (st % 8 != 0 || st < s->data_start + TALLY__STORE_SLAB_HEAD) {
        say(c, "entry at 0x%llx: stripe 0x%llx is not a cell slot",
            (unsigned long long)entry, (unsigned long long)st);
        return;
    }
    uint64_t slab = st - st % TALLY__STORE_LINE - TALLY__STORE_SLAB_HEAD;
    if (!check_slab(c, slab, "stripe of entry", entry))
        return;
    struct tally__store_slab *sl = tally__store_at(s, slab, slab_bytes(s));
    if (tally_atomic_load(&sl->claimed, relaxed) <= k) {
        say(c, "entry at 0x%llx: uses slot %llu of slab 0x%llx, which "
               "was never handed out", (unsigned long long)entry,
            (unsigned long long)k, (unsigned long long)slab);
        return;
    }
    if (c->nstripes == c->scap &&
        grow_array((void **)&c->stripes, &c->scap, sizeof *c->stripes) != 0) {
        c->nomem = 1;
        return;
    }
    c->stripes[c->nstripes++] = st;
}

/* ------------------------------------------------------------------ */
/* The index                                                           */
/* ------------------------------------------------------------------ */

static uint64_t entry_bytes(uint32_t len)
{
    return (TALLY__STORE_ENTRY_HEAD + (uint64_t)len +
            TALLY__STORE_GRANULE - 1) &
           ~(uint64_t)(TALLY__STORE_GRANULE - 1);
}

/* Checks the entry at off, found at level with the path's hash bits
 * prefix; records it. Returns it, or NULL when it is unusable. */
static struct tally__store_entry *check_entry(struct checker *c,
                                              uint64_t off, unsigned level,
                                              uint64_t prefix)
{
    struct tally_store *s = c->s;
    if (off % TALLY__STORE_GRANULE != 0 ||
        !allocated(c, off, TALLY__STORE_ENTRY_HEAD)) {
        say(c, "slot value 0x%llx: entry misaligned or outside the "
               "allocated area", (unsigned long long)off);
        return NULL;
    }
    struct tally__store_entry *e = tally__store_entry_at(s, off);
    if (e == NULL) {
        say(c, "entry at 0x%llx: key length or bounds wrong",
            (unsigned long long)off);
        return NULL;
    }
    if (!allocated(c, off, entry_bytes(e->key_len))) {
        say(c, "entry at 0x%llx: key runs past the allocated area",
            (unsigned long long)off);
        return NULL;
    }
    uint64_t h = tally__store_hash(s, e->key, e->key_len);
    int ok;
    if (level > s->last_level) {
        ok = h == prefix;
    } else {
        unsigned shift = 64 - s->root_bits - TALLY__STORE_NODE_BITS * level;
        ok = (h >> shift) == (prefix >> shift);
    }
    if (!ok)
        say(c, "entry at 0x%llx: its key's hash does not lead to where it "
               "is (level %u)", (unsigned long long)off, level);
    add_chunk(c, off, entry_bytes(e->key_len), off, K_ENTRY);
    c->entries++;
    /* Acquire: pairs with the striper's release CAS, so that the slab's
     * claimed count we read next includes its claim (live stores). */
    uint64_t st = tally_atomic_load(&e->stripe, acquire);
    if (st != 0)
        check_stripe(c, off, st);
    return e;
}

/* Checks the node at slot value v; records it; returns its slots. */
static _Atomic(uint64_t) *check_node(struct checker *c, uint64_t v)
{
    uint64_t off = v - TALLY__SLOT_NODE;
    if (off % TALLY__STORE_GRANULE != 0 ||
        !allocated(c, off, TALLY__STORE_NODE_SIZE)) {
        say(c, "slot value 0x%llx: node misaligned or outside the "
               "allocated area", (unsigned long long)v);
        return NULL;
    }
    _Atomic(uint64_t) *n = tally__store_at(c->s, off, TALLY__STORE_NODE_SIZE);
    if (n == NULL) {
        say(c, "node at 0x%llx: beyond the end of the file",
            (unsigned long long)off);
        return NULL;
    }
    add_chunk(c, off, TALLY__STORE_NODE_SIZE, off, K_NODE);
    c->nodes++;
    return n;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct tally__store_entry *x = *(const void *const *)a;
    const struct tally__store_entry *y = *(const void *const *)b;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return memcmp(x->key, y->key, x->key_len);
}

/* A collision chain starting at node value v, below a path with full
 * hash prefix. Returns -1 when the walk must stop. */
static int check_chain(struct checker *c, uint64_t v, uint64_t prefix)
{
    struct tally_store *s = c->s;
    const struct tally__store_entry **keys = NULL;
    size_t nkeys = 0, kcap = 0;
    int stop = 0;
    while (v != 0) {
        if (!(v & TALLY__SLOT_NODE)) {
            say(c, "collision chain: link 0x%llx is not a node",
                (unsigned long long)v);
            break;
        }
        if (c->nodes + 1 > c->used / TALLY__STORE_NODE_SIZE) {
            say(c, "more nodes than the file can hold: a cycle");
            stop = 1;
            break;
        }
        _Atomic(uint64_t) *n = check_node(c, v);
        if (n == NULL)
            break;
        int empty_seen = 0;
        for (unsigned i = 0; i < TALLY__STORE_NODE_SLOTS - 1; i++) {
            /* Acquire: pairs with the inserter's release CAS (a live
             * store), so the entry behind it is whole. */
            uint64_t w = tally_atomic_load(&n[i], acquire);
            if (w == 0) {
                empty_seen = 1;
                continue;
            }
            if (empty_seen) {
                /* On a live store the empty slot may have been filled
                 * since we read it: only a gap still there is one. */
                for (unsigned j = 0; j < i; j++)
                    if (tally_atomic_load(&n[j], relaxed) == 0) {
                        say(c, "collision node at 0x%llx: slot %u filled "
                               "after an empty one",
                            (unsigned long long)(v - 1), i);
                        break;
                    }
                empty_seen = 0;
            }
            if (w & TALLY__SLOT_NODE) {
                say(c, "collision node at 0x%llx: slot %u holds a node",
                    (unsigned long long)(v - 1), i);
                continue;
            }
            const struct tally__store_entry *e =
                check_entry(c, w, s->last_level + 1, prefix);
            if (e == NULL)
                continue;
            if (nkeys == kcap &&
                grow_array((void **)&keys, &kcap, sizeof *keys) != 0) {
                c->nomem = 1;
                free(keys);
                return -1;
            }
            keys[nkeys++] = e;
        }
        v = tally_atomic_load(&n[TALLY__STORE_NODE_SLOTS - 1],
                              acquire); /* as above: the linking CAS */
    }
    if (nkeys > 1) {
        qsort(keys, nkeys, sizeof *keys, cmp_entry);
        for (size_t i = 1; i < nkeys; i++)
            if (cmp_entry(&keys[i - 1], &keys[i]) == 0)
                say(c, "collision chain: a key of %u bytes is there twice",
                    keys[i]->key_len);
    }
    free(keys);
    return stop ? -1 : 0;
}

struct frame {
    _Atomic(uint64_t) *slots;
    unsigned n, next, level;
    uint64_t prefix;
};

static void check_index(struct checker *c)
{
    struct tally_store *s = c->s;
    struct frame st[18];
    int top = 0;
    st[0] = (struct frame){(_Atomic(uint64_t) *)(void *)(s->base + s->root_off),
                           1u << s->root_bits, 0, 0, 0};
    while (top >= 0 && !c->nomem) {
        struct frame *f = &st[top];
        if (f->next == f->n) {
            top--;
            continue;
        }
        unsigned i = f->next++;
        /* Acquire: pairs with the release CAS that published the entry
         * or node (store_index.c), on a live store. */
        uint64_t v = tally_atomic_load(&f->slots[i], acquire);
        if (v == 0)
            continue;
        uint64_t prefix = f->prefix |
                          (uint64_t)i << (64 - s->root_bits -
                                          TALLY__STORE_NODE_BITS * f->level);
        if ((v & (TALLY__STORE_GRANULE - 1)) != 0 &&
            (v & (TALLY__STORE_GRANULE - 1)) != TALLY__SLOT_NODE) {
            say(c, "slot value 0x%llx: bad tag bits", (unsigned long long)v);
            continue;
        }
        if (!(v & TALLY__SLOT_NODE)) {
            if (c->entries + 1 > c->used / TALLY__STORE_ENTRY_HEAD) {
                say(c, "more entries than the file can hold: a cycle");
                return;
            }
            check_entry(c, v, f->level, prefix);
            continue;
        }
        if (f->level == s->last_level) {
            if (check_chain(c, v, prefix) != 0)
                return;
            continue;
        }
        if (c->nodes + 1 > c->used / TALLY__STORE_NODE_SIZE) {
            say(c, "more nodes than the file can hold: a cycle");
            return;
        }
        _Atomic(uint64_t) *n = check_node(c, v);
        if (n == NULL)
            continue;
        st[++top] = (struct frame){n, TALLY__STORE_NODE_SLOTS, 0,
                                   f->level + 1, prefix};
    }
}

/* ------------------------------------------------------------------ */
/* Space                                                               */
/* ------------------------------------------------------------------ */

static int cmp_chunk(const void *a, const void *b)
{
    const struct chunk *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void check_space(struct checker *c)
{
    struct tally_store *s = c->s;
    /* Slabs: each stripe's, once, and the header's current one. */
    if (c->nstripes > 1)
        qsort(c->stripes, c->nstripes, sizeof *c->stripes, cmp_u64);
    uint64_t last_slab = 0;
    for (size_t i = 0; i < c->nstripes; i++) {
        uint64_t st = c->stripes[i];
        if (i > 0 && c->stripes[i - 1] == st)
            say(c, "two keys share the cells at 0x%llx",
                (unsigned long long)st);
        uint64_t slab = st - st % TALLY__STORE_LINE - TALLY__STORE_SLAB_HEAD;
        if (slab != last_slab) {
            struct tally__store_slab *sl =
                tally__store_at(s, slab, slab_bytes(s));
            add_chunk(c, sl->chunk, slab + slab_bytes(s) - sl->chunk, slab,
                      K_SLAB);
            last_slab = slab;
        }
    }
    /* Acquire: pairs with the installer's release CAS (store_count.c). */
    uint64_t cur = tally_atomic_load(&tally__store_hdr(s)->slab, acquire);
    if (cur != 0 && check_slab(c, cur, "header.slab", 192)) {
        int seen = 0;
        for (size_t i = 0; i < c->nstripes && !seen; i++)
            seen = c->stripes[i] - c->stripes[i] % TALLY__STORE_LINE -
                       TALLY__STORE_SLAB_HEAD == cur;
        if (!seen) {
            struct tally__store_slab *sl =
                tally__store_at(s, cur, slab_bytes(s));
            add_chunk(c, sl->chunk, cur + slab_bytes(s) - sl->chunk, cur,
                      K_SLAB);
        }
    }
    if (c->nomem)
        return;

    if (c->nchunks > 1)
        qsort(c->chunks, c->nchunks, sizeof *c->chunks, cmp_chunk);
    uint64_t inuse = 0, end = s->data_start;
    for (size_t i = 0; i < c->nchunks; i++) {
        const struct chunk *k = &c->chunks[i];
        if (k->off < end) {
            say(c, "%s at 0x%llx overlaps what lies before it (shared or "
                   "overlapping chunks)", kind_name[k->kind],
                (unsigned long long)k->what);
            continue;
        }
        inuse += k->size;
        end = k->off + k->size;
    }
    if (end > c->used)
        say(c, "chunks reach 0x%llx, beyond the allocated area (0x%llx)",
            (unsigned long long)end, (unsigned long long)c->used);
    else if (c->used - s->data_start > inuse)
        note(c, "%llu bytes leaked (allocated, never linked: left by "
                "processes that died while inserting, or by lost races); "
                "harmless",
             (unsigned long long)(c->used - s->data_start - inuse));
}

/* ------------------------------------------------------------------ */

int tally_store_check(const char *path, tally_report_fn report, void *ctx)
{
    if (path == NULL)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct tally_store *s = tally__calloc(1, sizeof *s);
    if (s == NULL) {
        close(fd);
        return -ENOMEM;
    }
    s->readonly = 1;
    tally__store_cpu_init();
    const char *why;
    int r = tally__store_attach(s, fd, &why);
    if (r != 0) {
        if (why != NULL && report != NULL)
            report(ctx, why);
        close(fd);
        tally__free(s);
        return r;
    }

    struct checker c = {.s = s, .report = report, .ctx = ctx};
    struct tally__store_header *h = tally__store_hdr(s);
    uint64_t keys = tally_atomic_load(&h->keys, relaxed);
    c.used = tally_atomic_load(&h->used, relaxed);
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > s->max_bytes)
        say(&c, "file is %llu bytes, longer than its limit (%llu)",
            (unsigned long long)st.st_size,
            (unsigned long long)s->max_bytes);

    check_index(&c);
    if (!c.nomem)
        check_space(&c);
    if (!c.nomem) {
        if (keys > c.entries)
            say(&c, "header counts %llu keys, the index holds %llu",
                (unsigned long long)keys, (unsigned long long)c.entries);
        else if (keys < c.entries)
            note(&c, "header counts %llu keys, the index holds %llu (a "
                     "process died between publishing a key and counting "
                     "it, or keys are being added)",
                 (unsigned long long)keys, (unsigned long long)c.entries);
    }
    if (c.problems > MAX_LINES && report != NULL) {
        char line[96];
        snprintf(line, sizeof line, "... and %llu more problems",
                 (unsigned long long)(c.problems - MAX_LINES));
        report(ctx, line);
    }
    free(c.chunks);
    free(c.stripes);
    int nomem = c.nomem;
    uint64_t problems = c.problems;
    tally_store_close(s);
    if (nomem)
        return -ENOMEM;
    return problems != 0 ? TALLY_ECORRUPT : 0;
}
