/*
 * store.h - tally_store: the file layout and what the store's modules
 * share. docs/store-format.md is the format's contract (every field, the
 * invariants, growth and publication); this header is its C form, and
 * docs/design.md ("tally_store") says why it is built this way.
 *
 * THE MODULES
 *
 *   store_file.c   open/create/close, the header, the mapping, file growth
 *                  and the allocator (the bump pointer 'used')
 *   store_index.c  the key index: a hash trie of 16-slot nodes under a
 *                  root table, append-only, published by one CAS per step
 *   store_count.c  counts: the inline count, per-CPU cells for contended
 *                  keys, handles, values, foreach and drain
 *   store_check.c  tally_store_check: the whole structure, read-only
 *
 * SHARED STATE AND WHO WRITES IT
 *
 * Every process maps the same file MAP_SHARED; the file is the only shared
 * state. Nothing in it is a lock, and nothing in it is ever freed, moved or
 * reused: the allocated area only grows ('used' only increases), slots
 * only go forward (0 -> entry -> node), an entry's key never changes, a
 * stripe offset is set once. So any process may die between any two
 * instructions and leave only states that every other process already
 * handles (listed per step in each module and in docs/store-format.md):
 * the worst a death leaves is allocated space that nothing references
 * ("leaked", reported by tally_store_check, never reused) and, in one
 * window of a few instructions, a key count that lags by one.
 *
 *   header, immutable part (bytes 0..127): written once by the creator
 *     before the file gets its name (link(2)), never again. Each process
 *     validates it at open and copies what it needs into its own struct
 *     tally_store, and never reads it from the mapping again: a process
 *     that scribbled over it later could not steer our offsets.
 *   header.used: the end of the allocated area. Raised by CAS by any
 *     allocating process, after it has grown the file to cover the new
 *     end, so the file is always at least 'used' bytes long.
 *   header.keys: keys published; fetch_add by the inserter right after
 *     its publishing CAS.
 *   header.slab: the stripe slab new slots are claimed from; CAS by the
 *     process that installs a new one.
 *   root and node slots: CAS 0 -> entry (publish a key), CAS entry ->
 *     node (expand: the node already holds that entry), by inserters.
 *   entry.count, cells: atomic adds by any process (wrapping); drains
 *     never write them.
 *   entry.drained: CAS by drainers only.
 *   entry.stripe: CAS 0 -> cell offset, once, by the process that stripes
 *     the key.
 *   entry.contention: fetch_add by adders whose CAS on count failed, reset
 *     to 0 now and then by adders (a heuristic; no correctness role).
 *   entry.key_len, entry.key: written by the inserter before the entry is
 *     published, never again.
 *
 * Address-free atomics: every shared atomic is an 8- or 4-byte lock-free
 * atomic (asserted below), so an atomic operation in one process is atomic
 * with respect to the same operation in another that maps the same page
 * at another address.
 *
 * PROCESS-LOCAL STATE (struct tally_store)
 *
 * base..base+reserved is address space reserved once at open (PROT_NONE)
 * for the whole max_bytes; the file is mapped over its prefix with
 * MAP_FIXED, so the base never moves and pointers into the mapping stay
 * valid for the life of the tally_store. 'mapped' is how much of the file
 * is mapped; it only grows, and any thread extends it when an offset
 * beyond it is needed: after this process grew the file, or when it meets
 * an offset that another process allocated after we last looked. That
 * takes a process-local mutex around the mmap (store_file.c); nothing
 * else in the process locks, and adds never map. A fork at any instant
 * leaves the child a usable store (atfork handlers keep the mutex sane).
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include "tally.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "atomic.h"
#include "hash.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2,
               "tally_store needs lock-free (address-free) 8-byte atomics");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
               "tally_store needs lock-free (address-free) 4-byte atomics");
_Static_assert(sizeof(uint64_t) == 8 && sizeof(int) == 4, "word sizes");

/* ------------------------------------------------------------------ */
/* The format (docs/store-format.md)                                   */
/* ------------------------------------------------------------------ */

#define TALLY__STORE_MAGIC "\x89tally\r\n" /* 8 bytes */
#define TALLY__STORE_MAJOR 1
#define TALLY__STORE_MINOR 0
#define TALLY__STORE_BOM 0x01020304u
#define TALLY__STORE_HEADER_SIZE 512u
#define TALLY__STORE_SUMMED 120u /* header bytes covered by header_sum */
#define TALLY__STORE_ENTRY_HEAD 32u
#define TALLY__STORE_SLAB_HEAD 64u
#define TALLY__STORE_NODE_BITS 4u
#define TALLY__STORE_NODE_SLOTS 16u
#define TALLY__STORE_NODE_SIZE 128u
#define TALLY__STORE_ROOT_BITS 12u /* what the library creates */
#define TALLY__STORE_GRANULE 16u   /* every chunk's alignment and size unit */
#define TALLY__STORE_LINE 64u      /* a cell line: one CPU's cells */
#define TALLY__STORE_SLAB_SLOTS 8u /* keys per slab: 8 cells per line */
#define TALLY__STORE_CELLS_MAX 256u
#define TALLY__STORE_MIN_BYTES ((uint64_t)1 << 16) /* initial file size */
#define TALLY__STORE_MAX_BYTES_CAP ((uint64_t)1 << 44)
#define TALLY__STORE_SLAB_MAGIC 0x62616c73u /* "slab" little-endian */
#define TALLY__STORE_HASH_CHECK_KEY "tally store hash check"

/* Slot values: 0 empty, an even value is an entry's offset, an odd value
 * is a node's offset + 1. */
#define TALLY__SLOT_NODE 1u

/* The header: the first 512 bytes of the file, in the creator's byte
 * order (which byte_order records). */
struct tally__store_header {
    unsigned char magic[8];    /* 0   TALLY__STORE_MAGIC */
    uint32_t byte_order;       /* 8   0x01020304 */
    uint16_t major;            /* 12  format major version */
    uint16_t minor;            /* 14  format minor version */
    uint32_t header_size;      /* 16  512 */
    uint8_t ptr_size;          /* 20  sizeof(void *) of the creator */
    uint8_t u64_align;         /* 21  _Alignof(uint64_t) of the creator */
    uint8_t root_bits;         /* 22  root table: 2^root_bits slots */
    uint8_t node_bits;         /* 23  node: 2^node_bits slots (4) */
    uint16_t entry_head;       /* 24  entry header bytes (32) */
    uint16_t slab_head;        /* 26  slab header bytes (64) */
    uint32_t cpu_cells;        /* 28  cells per striped key */
    uint64_t max_bytes;        /* 32  the size limit */
    uint64_t created_ns;       /* 40  CLOCK_REALTIME at creation */
    uint8_t id[16];            /* 48  random at creation */
    uint64_t seed[4];          /* 64  the key hash's secret */
    uint64_t hash_check;       /* 96  tally__hash(seed, CHECK_KEY) */
    uint64_t root_off;         /* 104 the root table's offset */
    uint64_t data_start;       /* 112 where allocation starts */
    uint64_t header_sum;       /* 120 FNV-1a 64 of bytes 0..119 */
    uint8_t reserved0[64];     /* 128 zero */
    /* The mutable words, each on its own cache line. */
    _Alignas(64) _Atomic(uint64_t) used;  /* 192 end of allocated area */
    _Alignas(64) _Atomic(uint64_t) keys;  /* 256 keys published */
    _Alignas(64) _Atomic(uint64_t) slab;  /* 320 current stripe slab */
    _Alignas(64) uint8_t reserved1[128];  /* 384 zero */
};

_Static_assert(sizeof(struct tally__store_header) ==
                   TALLY__STORE_HEADER_SIZE, "header size");
_Static_assert(offsetof(struct tally__store_header, header_sum) ==
                   TALLY__STORE_SUMMED, "header_sum offset");
_Static_assert(offsetof(struct tally__store_header, used) == 192, "used");
_Static_assert(offsetof(struct tally__store_header, keys) == 256, "keys");
_Static_assert(offsetof(struct tally__store_header, slab) == 320, "slab");

/* A key's entry: at a 16-aligned offset, align16(32 + key_len) bytes. */
struct tally__store_entry {
    _Atomic(uint64_t) count;      /* 0  the inline count (wrapping) */
    _Atomic(uint64_t) stripe;     /* 8  offset of the key's cell for CPU 0,
                                        0 while not striped */
    _Atomic(uint64_t) drained;    /* 16 sum of all drained amounts */
    uint32_t key_len;             /* 24 */
    _Atomic(uint32_t) contention; /* 28 failed CASes on count, lately */
    unsigned char key[];          /* 32 key_len bytes */
};

_Static_assert(sizeof(struct tally__store_entry) ==
                   TALLY__STORE_ENTRY_HEAD, "entry header size");

/* A stripe slab: at a 64-aligned offset; this 64-byte header, then
 * cpu_cells lines of 64 bytes. Line 1 + c holds CPU c's cells of the
 * slab's 8 keys: slot k's cell for CPU c is at slab + 64 * (1 + c) + 8 * k,
 * and the entry's stripe is slab + 64 + 8 * k. */
struct tally__store_slab {
    uint32_t magic;               /* 0  TALLY__STORE_SLAB_MAGIC */
    uint32_t cells;               /* 4  = header cpu_cells */
    _Atomic(uint64_t) claimed;    /* 8  slots handed out (may pass 8) */
    uint64_t chunk;               /* 16 offset of the allocation holding
                                        this slab (<= the slab's offset) */
    uint64_t reserved[5];         /* 24 zero */
};

_Static_assert(sizeof(struct tally__store_slab) == TALLY__STORE_SLAB_HEAD,
               "slab header size");

/* FNV-1a 64 of the header's first TALLY__STORE_SUMMED bytes. */
uint64_t tally__store_header_sum(const void *header);

/* ------------------------------------------------------------------ */
/* A process's view of an open store                                   */
/* ------------------------------------------------------------------ */

struct tally_store {
    char *base;                  /* the reservation; the file at offset 0 */
    uint64_t reserved;           /* bytes reserved at base */
    /* [0, mapped) of the file is mapped and accessible. Only grows;
     * raised (release) after the mmap that covers it, read (acquire)
     * before a pointer below it is formed. */
    _Atomic(uint64_t) mapped;
    uint64_t map_end;            /* the mapping's end, a page boundary;
                                    under store_file.c's map_lock */
    int fd;
    int readonly;
    uint64_t page;               /* the system page size */
    /* Copies of the immutable header, validated at open. */
    struct tally__seed seed;
    uint64_t max_bytes;
    uint64_t root_off;
    uint64_t data_start;
    uint64_t created_ns;
    uint32_t cells;              /* cpu_cells */
    uint32_t cell_mask;          /* cells - 1 */
    uint32_t root_bits;
    uint32_t last_level;         /* the deepest trie level; below it
                                    collision nodes */
    uint16_t minor;
    uint8_t id[16];
    /* Unique per tally_store_open in this process (never 0): names the
     * store in a thread's remembered entry (store_count.c). */
    uint64_t serial;
};

struct tally_store_handle {
    /* The key's cell for CPU 0 once the key is striped (or NULL): set
     * once, relaxed, by whichever thread first sees the stripe; the cells
     * are atomics, so nothing else needs publishing. */
    _Atomic(char *) cells;
    uint32_t cell_mask;
    struct tally__store_entry *entry;
    tally_store *store;
};

static inline struct tally__store_header *
tally__store_hdr(const struct tally_store *s)
{
    return (struct tally__store_header *)(void *)s->base;
}

/* Validates the file open at fd and maps it into s (whose readonly field
 * is set): 0, or the error, with *why (when the file is to blame) a short
 * text saying what is wrong. On success s owns fd. */
int tally__store_attach(struct tally_store *s, int fd, const char **why);

/* The CPU-number source; tally_store_open calls it once (pthread_once). */
void tally__store_cpu_init(void);

/* A pointer to [off, off + len) of the file, or NULL when that lies
 * beyond the file (the slow path maps what another process added). */
void *tally__store_at_slow(struct tally_store *s, uint64_t off,
                           uint64_t len);

static inline void *tally__store_at(struct tally_store *s, uint64_t off,
                                    uint64_t len)
{
    /* Acquire: pairs with the release that raised 'mapped' after the
     * mmap covering it (store_file.c, map_to). */
    uint64_t m = tally_atomic_load(&s->mapped, acquire);
    if (tally_likely(off <= m && len <= m - off))
        return s->base + off;
    return tally__store_at_slow(s, off, len);
}

/* The entry at off (a slot's value), checked: aligned, in the data area,
 * its key within the file. NULL when any of that fails. */
struct tally__store_entry *tally__store_entry_at(struct tally_store *s,
                                                 uint64_t off);

/* Allocates size bytes (a multiple of 16) at an align-aligned offset
 * (16 or 64), growing the file as needed. *off gets the offset, *chunk the
 * allocation's start (below *off by the alignment padding). 0, -ENOSPC
 * (max_bytes reached, or the file system is full), another -errno from
 * growing the file, or TALLY_ECORRUPT ('used' is out of range). */
int tally__store_alloc(struct tally_store *s, uint64_t size, uint64_t align,
                       uint64_t *off, uint64_t *chunk);

/* Whether entry e's key is the len bytes at key. Keys of up to 16 bytes
 * compare as two (possibly overlapping) words, without a call. */
static inline int tally__store_key_eq(const struct tally__store_entry *e,
                                      const void *key, size_t len)
{
    if (e->key_len != len)
        return 0;
    const unsigned char *a = e->key, *b = key;
    if (len >= 8 && len <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&b0, b, 8);
        memcpy(&a1, a + len - 8, 8);
        memcpy(&b1, b + len - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    return memcmp(a, b, len) == 0;
}

/* The key hash (hash.h keyed by the file's secret). */
uint64_t tally__store_hash(const struct tally_store *s, const void *key,
                           size_t len);

/* Finds key; with create, inserts it at 0 when absent. 0 and *out, or
 * -ENOENT (absent, !create), -ENOSPC, -errno, TALLY_ECORRUPT. */
int tally__store_find(struct tally_store *s, const void *key, size_t len,
                      int create, struct tally__store_entry **out);

/* Calls visit(s, entry, ctx) for every published key, each once (see
 * store_index.c for the guarantee under concurrent inserts). Returns 0,
 * visit's non-zero result, TALLY_ECORRUPT or -ENOMEM. */
typedef int (*tally__store_walk_fn)(struct tally_store *s,
                                    struct tally__store_entry *e, void *ctx);
int tally__store_walk(struct tally_store *s, tally__store_walk_fn visit,
                      void *ctx);

/* e's value into *value: 0 or TALLY_ECORRUPT (a bad stripe offset). */
int tally__store_entry_value(struct tally_store *s,
                             struct tally__store_entry *e, int64_t *value);

/* Tests only: see store_count.c and store_index.c. */
#if defined(TALLY_TEST_HOOKS)
/* Every store hash is and-ed with mask (process-wide; ~0 restores). A
 * mask of 0 makes every key collide. */
void tally__store_hash_mask(uint64_t mask);
/* Stores created while set get this many cells per striped key (a power
 * of two, 1..256) and a root of 2^root_bits slots (4, 8, 12 or 16); 0
 * restores the defaults. */
void tally__store_test_layout(uint32_t cells, uint32_t root_bits);
/* While on, creation skips O_TMPFILE and uses a temporary name. */
void tally__store_test_named_create(int on);
/* Where CPU numbers come from: "rseq", "sched_getcpu" or "thread". */
const char *tally__store_cpu_source(void);
/* Forces "sched_getcpu" or "thread", or "probe"s again; -EINVAL when
 * that source is not there. No add may run meanwhile. */
int tally__store_test_cpu_source(const char *source);
/* The next n CASes on an inline count fail, as under contention. */
void tally__store_test_cas_failures(long n);
/* While >= 0, the CPU number used to pick cells (process-wide). */
void tally__store_test_cpu(int cpu);
/* Stripes key now (it must exist). 0, -ENOENT, -ENOSPC, -EROFS... */
int tally__store_stripe(tally_store *s, const void *key, size_t len);
/* Whether key is striped: 1, 0, or -ENOENT. */
int tally__store_striped(tally_store *s, const void *key, size_t len);
#endif

#endif /* TALLY_STORE_H */
