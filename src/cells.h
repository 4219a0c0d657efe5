/*
 * cells.h - per-thread counter cells, counter ids, and the grace periods
 * that tally_adder and tally_map are built on.
 *
 * THE IDEA
 *
 * Every counter that must scale (an adder, a map key) gets an id. Every
 * thread that adds to it owns one 8-byte cell for that id, and an add is a
 * plain load and store on that cell: no locked instruction, no cache line
 * written by two threads. A counter's value is
 *
 *     value(id) = adj(id) + sum over threads t of cell(t, id)
 *
 * where adj(id) is one shared atomic per id that absorbs what does not fit
 * the per-thread scheme: the cells of threads that exited (folded into it),
 * drained amounts (subtracted from it), and adds that could not get a cell
 * for lack of memory (added to it with an atomic RMW).
 *
 * THE STRUCTURES
 *
 * struct tally__thread (one per thread that has used tally; never freed,
 * reused by later threads once its thread exits):
 *   - dir[b]: pointer to a block of TALLY_CELLS_PER_BLOCK cells for ids
 *     b*1024 .. b*1024+1023, NULL until the owner first touches one of those
 *     ids. Written (once per block, release) by the owner; read by anyone.
 *     Blocks are cache-line aligned, so two threads' cells never share a
 *     line. A thread's cells for different ids do share lines: they are
 *     written by that one thread only, so that costs nothing.
 *     At its owner's exit the blocks are folded, zero, and detached from
 *     the directory onto the record's spare list; the next owner attaches
 *     them again, one at a time, as it touches ids. So an exit scans only
 *     the blocks its own thread touched, not every block the record ever
 *     held (a short-lived thread after one that touched a million keys).
 *   - cells: written by the owner (adds), and by others only when no add to
 *     that id can be running: when an id is released (its counter is gone,
 *     so no thread may add to it) and at the owner's exit fold (run by the
 *     owner itself).
 *   - rcu_ctr: the owner's read-side state (below). Written by the owner,
 *     read by threads waiting for a grace period.
 *   - next: the registry list link, written once before the record is
 *     published (release) and never again.
 *
 * Ids come from a global allocator (a free stack and a bump counter under
 * ids_lock). adj blocks are allocated with the id's block and never freed.
 *
 * WHAT A READER SEES
 *
 * tally__id_read() sums adj and every thread's cell. Adds are not blocked
 * and may or may not be seen if they run during the read; every add that
 * finished before the read began is seen. A thread's exit moves its cells
 * into adj; a read that overlaps such a move could see a value twice or not
 * at all, so exits run under a sequence lock (fold_seq) and reads retry when
 * a fold ran while they read. Folds are rare (one per thread exit); reads
 * never block anyone.
 *
 * GRACE PERIODS (a small user-space RCU, with deferred reclamation)
 *
 * Lookups and adds by key run inside a read-side section: the thread
 * stores the current grace-period number (tally__rcu_gp, odd, starting at
 * 1) into its rcu_ctr on entry and 0 on exit. A writer that unlinks
 * something takes a cookie (tally__rcu_cookie: an acq_rel fetch_add of 2
 * on the number, so every cookie is a fresh odd number) and may reclaim
 * the thing once tally__rcu_poll(cookie) is true: every section that could
 * have seen it has ended. Writers never wait for readers unless they ask
 * to (tally__rcu_wait), and one poll completes every cookie issued before
 * it, so any number of removes share one grace period.
 *
 * Why a reader whose rcu_ctr is >= a cookie cannot see what was unlinked
 * before that cookie was taken: the reader got its number with an
 * acquire load that read the cookie's fetch_add or a later one (all
 * writes of the number are RMWs, so they form one release sequence), so
 * the unlink happens before the reader's section.
 *
 * A poll (under gp_lock) reads the number N, runs a full fence on every
 * CPU that runs a thread of the process (membarrier), then reads every
 * thread's rcu_ctr; with m = the least non-zero rcu_ctr seen (or N), every
 * cookie <= m is complete (tally__rcu_done). The store-load pattern (the
 * reader stores rcu_ctr then loads the map; the writer unlinks then loads
 * rcu_ctr) needs a full fence on both sides: membarrier supplies the
 * reader's, so reads cost no fence. Where the kernel lacks
 * MEMBARRIER_CMD_PRIVATE_EXPEDITED, and in ThreadSanitizer builds, both
 * sides use seq_cst fences. If membarrier fails after it worked (it should
 * not: registration survives fork), the poll re-registers and retries,
 * then falls back to MEMBARRIER_CMD_GLOBAL; if that fails too, no grace
 * period completes from then on: nothing is ever freed early, and
 * tally__rcu_wait returns -EIO instead of waiting forever.
 *
 * FORK
 *
 * pthread_atfork handlers take gp_lock and ids_lock before a fork, release
 * them in the parent, and in the child re-create them and forget every
 * other thread: their cells are folded into adj (as at a thread exit),
 * their rcu_ctr cleared and their records freed for reuse. The child's
 * counts are then the parent's at the fork, and no grace period in the
 * child waits for a thread that does not exist there.
 *
 * Progress: adds to a cell are wait-free; id reads are lock-free (they
 * retry only when a thread exits during the read); read-side sections are
 * wait-free; polls never wait (they give up when another poll runs);
 * tally__rcu_wait blocks until current readers leave.
 */
#ifndef TALLY_CELLS_H
#define TALLY_CELLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "tally.h" /* tally__cell_t, TALLY__CELL_SHIFT, tally__dir */

#define TALLY_CELLS_PER_BLOCK 1024u
#define TALLY_CELL_SHIFT 10
#define TALLY_MAX_BLOCKS 65536u
/* Ids run from 0 to TALLY_ID_LIMIT - 1 (64 M live counters). */
#define TALLY_ID_LIMIT (TALLY_CELLS_PER_BLOCK * TALLY_MAX_BLOCKS)

/* The type and block shift are shared with tally.h's inline paths. */
typedef tally__cell_t tally__cell;
_Static_assert(TALLY_CELL_SHIFT == TALLY__CELL_SHIFT, "tally.h agrees");

struct tally__thread {
    /* The line the owner writes on every map operation. */
    /* Read-side section state: 0 outside a section, else the grace-period
     * number read on entry. Written by the owner, read by synchronize. */
    _Alignas(TALLY_CACHE_LINE) _Atomic(uint64_t) rcu_ctr;
    /* The owner's last map key (map.c): owner only. */
    uint64_t last_map;       /* the map's serial number, 0: none */
    uint64_t last_gen;       /* the map's generation then */
    void *last_entry;        /* map.c's record of the key (its slot) */
    uint64_t last_hash;      /* that key's hash */
    uint32_t streak;         /* consecutive adds to that key (map.c) */
    uint16_t tag;            /* never 0, set when the record is made: tells
                                map.c's keys which thread added last */
    /* Blocks of earlier owners, all zero, kept for reuse (cell 0 links
     * them); owner only, or the exit fold on the owner's thread. */
    tally__cell *spare;

    /* Read by other threads walking the registry. */
    _Alignas(TALLY_CACHE_LINE) _Atomic(int) in_use; /* 1 while owned */
    uint32_t blocks_hi;      /* owner (and its exit fold): 1 + highest
                                block index attached by this owner */
    struct tally__thread *next; /* registry link, immutable once published */
    _Alignas(TALLY_CACHE_LINE) tally__block_ptr dir[TALLY_MAX_BLOCKS];
};

_Static_assert(sizeof(((struct tally__thread *)0)->dir) ==
                   TALLY_MAX_BLOCKS * sizeof(void *),
               "directory layout");

/* This thread's record, or NULL before its first use of tally (or when it
 * could not get one for lack of memory). */
extern _Thread_local struct tally__thread *tally__self
#if defined(__GNUC__) && !defined(TALLY_NO_TLS_INITIAL_EXEC)
    __attribute__((tls_model("initial-exec")))
#endif
    ;

/* Whether read-side sections need a CPU fence (no membarrier available). */
extern bool tally__rcu_need_fence;

/* The grace-period number; odd, starts at 1, bumped by 2. */
extern _Atomic(uint64_t) tally__rcu_gp;

/* Sets up the registry, membarrier and the fork handlers, once. Modules
 * with fork handlers of their own call it before registering them. */
void tally__cells_init(void);

/* Registers the calling thread if needed; NULL only when out of memory. */
struct tally__thread *tally__thread_get_slow(void);

static inline struct tally__thread *tally__thread_get(void)
{
    struct tally__thread *t = tally__self;
    return tally_likely(t != NULL) ? t : tally__thread_get_slow();
}

/* The calling thread's cell for id, registering the thread and
 * allocating its block if needed. NULL when out of memory. */
tally__cell *tally__cell_slow(uint32_t id);

/* Adds delta to a cell the calling thread owns. Nobody else stores to the
 * cell while its owner may add (see the invariants above), so a load and a
 * store cannot lose an add. Relaxed: a cell publishes nothing; readers
 * need only its latest value, which coherence gives them. The same code
 * as tally.h's inline add, which is this function. */
static inline void tally__cell_add(tally__cell *c, int64_t delta)
{
    tally__cell_put(c, delta);
}

/* The shared slow path: one atomic add on adj(id). */
void tally__id_add_shared(uint32_t id, int64_t delta);

/* The slow half of an add: registers the thread or allocates its cell
 * block, then adds; falls back to tally__id_add_shared when out of
 * memory. Out of line so that the fast path needs no stack frame. */
void tally__id_add_slow(uint32_t id, int64_t delta);

/* The calling thread's cell for id if its block is attached, else NULL
 * (tally__id_add_t then takes the slow path). */
static inline tally__cell *tally__cell_of(struct tally__thread *t,
                                          uint32_t id)
{
    /* Relaxed: only this thread ever stores this slot. */
    tally__cell *blk =
        tally_atomic_load(&t->dir[id >> TALLY_CELL_SHIFT], relaxed);
    return tally_likely(blk != NULL)
               ? &blk[id & (TALLY_CELLS_PER_BLOCK - 1)]
               : NULL;
}

/* Adds delta to id's counter from the calling thread, never failing. */
static inline void tally__id_add_t(struct tally__thread *t, uint32_t id,
                                   int64_t delta)
{
    tally__cell *c = tally__cell_of(t, id);
    if (tally_likely(c != NULL))
        tally__cell_add(c, delta);
    else
        tally__id_add_slow(id, delta);
}

static inline void tally__id_add(uint32_t id, int64_t delta)
{
    struct tally__thread *t = tally__self;
    if (tally_likely(t != NULL))
        tally__id_add_t(t, id, delta);
    else
        tally__id_add_slow(id, delta);
}

/* Allocates an id whose value is 0. 0 or -ENOMEM. */
int tally__id_alloc(uint32_t *id);
/* The same, but gives up with -EBUSY instead of waiting for the id lock
 * (for callers that must not block, such as an add). */
int tally__id_try_alloc(uint32_t *id);
/* Returns id's final value and gives the id back. The caller guarantees
 * that no thread adds to id any more, and none will until it is handed
 * out again. */
int64_t tally__id_release(uint32_t id);
/* The value of id (see "WHAT A READER SEES"). */
int64_t tally__id_read(uint32_t id);
/* Subtracts amount from id's value (a drain). Never fails. */
void tally__id_sub(uint32_t id, int64_t amount);

/* Read-side sections. They nest: enter returns true when it opened the
 * outermost section, and exit must be given that result. rcu_ctr is
 * non-zero exactly while its owner is inside a section, so the owner can
 * tell by reading its own counter (relaxed: only it writes it). */
static inline bool tally__rcu_enter(struct tally__thread *t)
{
    if (tally_atomic_load(&t->rcu_ctr, relaxed) != 0)
        return false;
    /* Acquire pairs with the acq_rel fetch_add in tally__rcu_cookie(): a
     * reader that sees a cookie's number (or a later one) also sees every
     * unlink made before that cookie was taken, and is not waited for. */
    uint64_t gp = tally_atomic_load(&tally__rcu_gp, acquire);
    tally_atomic_store(&t->rcu_ctr, gp, relaxed);
    /* The store above must be visible before the loads of the section.
     * With membarrier, the writer's membarrier() supplies the fence on
     * this CPU; a compiler barrier keeps the order in program text. */
    if (tally__rcu_need_fence)
        tally_atomic_fence(seq_cst); /* pairs with the fence in a poll */
    else
        tally_compiler_barrier();
    return true;
}

static inline void tally__rcu_exit(struct tally__thread *t, bool outer)
{
    if (!outer)
        return;
    /* Release: every load of the section happens before a poll's acquire
     * load of 0 (or of a later section's number), so nothing this section
     * still reads is freed. */
    tally_atomic_store(&t->rcu_ctr, 0, release);
}

/* The number every section-free reclaimer compares with. */
extern _Atomic(uint64_t) tally__rcu_gp_done;

/* A cookie for what the caller unlinked before this call (see above). */
uint64_t tally__rcu_cookie(void);

/* Whether cookie's grace period is known to be complete; never waits,
 * makes no system call. */
static inline bool tally__rcu_done(uint64_t cookie)
{
    /* Acquire pairs with the release store in the poll that completed it:
     * every section that could see the unlinked thing ended before. */
    return tally_atomic_load(&tally__rcu_gp_done, acquire) >= cookie;
}

/* Tries to complete cookie's grace period without waiting: true when it
 * is complete. Costs a membarrier() when it has to look; gives up (false)
 * when another thread is polling. Callable anywhere, even inside a
 * read-side section (that section then keeps newer cookies open). */
bool tally__rcu_poll(uint64_t cookie);

/* Waits until cookie's grace period is complete. 0, -EDEADLK when called
 * from inside a section (it would wait for itself), -EIO when grace
 * periods can no longer be proven (membarrier broke; see above).
 * Blocking. */
int tally__rcu_wait(uint64_t cookie);

/* tally__rcu_wait(tally__rcu_cookie()). */
int tally__rcu_synchronize(void);

/* True when the calling thread is inside a read-side section. */
static inline bool tally__rcu_inside(void)
{
    struct tally__thread *t = tally__self;
    return t != NULL && tally_atomic_load(&t->rcu_ctr, relaxed) != 0;
}

#endif /* TALLY_CELLS_H */
