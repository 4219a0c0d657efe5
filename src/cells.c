/*
 * cells.c - thread registry, ids, cells and grace periods (see cells.h for
 * the invariants: who writes which field and what readers can see).
 *
 * Locks, in the order they may be taken (after any map shard lock):
 *   gp_lock   serialises grace-period polls.
 *   ids_lock  guards the id allocator, adj block allocation, the registry
 *             list's insertions, record reuse, exit folds and id releases.
 * Neither is ever taken by an add to a cell that exists, nor by a read.
 * Both are taken around fork() (fork_prepare) and re-created in the child.
 */
#include "cells.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "alloc.h"

_Thread_local struct tally__thread *tally__self;
/* &tally__self->dir[0] or NULL, kept in step with tally__self: the inline
 * fast paths in tally.h read it (exported, part of the soname's ABI). */
TALLY_API _Thread_local tally__block_ptr *tally__dir;
#if defined(TALLY_TSAN)
_Atomic(int) tally__tsan_fence;
#endif
bool tally__rcu_need_fence = true;
_Atomic(uint64_t) tally__rcu_gp = 1;
_Atomic(uint64_t) tally__rcu_gp_done = 1;
/* Set (under gp_lock) when no way to fence other threads is left. */
static bool membarrier_broken;

static pthread_mutex_t ids_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t gp_lock = PTHREAD_MUTEX_INITIALIZER;

/* Registry of thread records: a push-only list. Readers walk it without a
 * lock; the head is published with release after the record is fully
 * initialised, and each record's next is immutable once published. */
static _Atomic(struct tally__thread *) registry;

/* adj blocks, one atomic per id, allocated under ids_lock when the first id
 * of a block is handed out and published with release; never freed. */
static _Atomic(tally__cell *) adj_dir[TALLY_MAX_BLOCKS];

/* Id allocator, under ids_lock: a list of released ids, then a bump
 * counter. The list is threaded through the released ids' own adj
 * cells (holding the next free id + 1, 0 ending the list): nobody reads
 * the adj of an id that is not handed out, and this way a free id costs
 * no memory and a release never allocates. */
static uint32_t free_head; /* first free id + 1; 0: none */
static uint32_t next_id;

/* Fold sequence lock: odd while an exiting thread moves its cells into
 * adj. Written under ids_lock; read by tally__id_read. */
static _Atomic(uint64_t) fold_seq;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool exit_key_ok;

static void thread_exit(void *arg);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

#if defined(__linux__) && defined(__NR_membarrier) && !defined(TALLY_TSAN)
#define TALLY_MEMBARRIER 1
static bool membarrier_global; /* MEMBARRIER_CMD_GLOBAL is available */

static long membarrier(int cmd)
{
    return syscall(__NR_membarrier, cmd, 0, 0);
}
#endif

static void init(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
#if defined(TALLY_MEMBARRIER)
    /* ThreadSanitizer cannot see the ordering membarrier() provides, so its
     * builds keep the fence on the read side. */
    long cmds = membarrier(MEMBARRIER_CMD_QUERY);
    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
        tally__rcu_need_fence = false;
    membarrier_global = cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL);
#endif
    /* Registered before any map's or adder's handlers (they call
     * tally__cells_init first), so this prepare runs after theirs and
     * takes gp_lock and ids_lock last, as the lock order wants; the
     * child handler runs first. */
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void tally__cells_init(void)
{
    pthread_once(&init_once, init);
}

static tally__cell *adj_cell(uint32_t id)
{
    /* Acquire pairs with the release publication in ensure_adj_block():
     * the block's zeroed contents are visible. Any id a caller holds was
     * handed out after its block was published. */
    tally__cell *blk =
        tally_atomic_load(&adj_dir[id >> TALLY_CELL_SHIFT], acquire);
    return &blk[id & (TALLY_CELLS_PER_BLOCK - 1)];
}

/* Under ids_lock. */
static int ensure_adj_block(uint32_t block)
{
    if (tally_atomic_load(&adj_dir[block], relaxed) != NULL)
        return 0;
    tally__cell *blk = tally__aligned_alloc(
        TALLY_CACHE_LINE, TALLY_CELLS_PER_BLOCK * sizeof(tally__cell));
    if (blk == NULL)
        return -ENOMEM;
    /* Release: publishes the zero-filled block (see adj_cell). */
    tally_atomic_store(&adj_dir[block], blk, release);
    return 0;
}

struct tally__thread *tally__thread_get_slow(void)
{
    if (tally__self != NULL)
        return tally__self;
    pthread_once(&init_once, init);
    if (!exit_key_ok)
        return NULL; /* no way to fold at exit: use the shared path */

    struct tally__thread *t = NULL;
    pthread_mutex_lock(&ids_lock);
    /* Reuse the record of a thread that exited: its cells were folded into
     * adj and zeroed, its blocks stay allocated for the newcomer. */
    for (struct tally__thread *r = tally_atomic_load(&registry, relaxed);
         r != NULL; r = r->next) {
        if (tally_atomic_load(&r->in_use, relaxed) == 0) {
            t = r;
            break;
        }
    }
    if (t == NULL) {
        /* calloc: the 512 KiB directory is mostly never touched, and a
         * large calloc maps fresh zero pages instead of writing them. */
        char *raw = tally__calloc(1, sizeof(*t) + TALLY_CACHE_LINE);
        if (raw == NULL) {
            pthread_mutex_unlock(&ids_lock);
            return NULL;
        }
        uintptr_t p = ((uintptr_t)raw + TALLY_CACHE_LINE - 1) &
                      ~(uintptr_t)(TALLY_CACHE_LINE - 1);
        t = (struct tally__thread *)p;
        static uint32_t records; /* under ids_lock */
        t->tag = (uint16_t)(++records % 0xffffu + 1);
        t->next = tally_atomic_load(&registry, relaxed);
        tally_atomic_store(&t->in_use, 1, relaxed);
        /* Release: readers that find t through the head see its
         * initialised fields (next, the zeroed directory). */
        tally_atomic_store(&registry, t, release);
    } else {
        tally_atomic_store(&t->in_use, 1, relaxed);
    }
    pthread_mutex_unlock(&ids_lock);

    if (pthread_setspecific(exit_key, t) != 0) {
        pthread_mutex_lock(&ids_lock);
        tally_atomic_store(&t->in_use, 0, relaxed);
        pthread_mutex_unlock(&ids_lock);
        return NULL;
    }
    tally__self = t;
    tally__dir = t->dir;
    return t;
}

tally__cell *tally__cell_slow(uint32_t id)
{
    struct tally__thread *t = tally__thread_get_slow();
    if (t == NULL)
        return NULL;
    uint32_t b = id >> TALLY_CELL_SHIFT;
    tally__cell *blk = tally_atomic_load(&t->dir[b], relaxed);
    if (blk == NULL) {
        if (t->spare != NULL) {
            /* A block an earlier owner left, zero but for the link. */
            blk = t->spare;
            t->spare = (tally__cell *)(uintptr_t)tally_atomic_load(&blk[0],
                                                                   relaxed);
            tally_atomic_store(&blk[0], 0, relaxed);
        } else {
            blk = tally__aligned_alloc(
                TALLY_CACHE_LINE, TALLY_CELLS_PER_BLOCK * sizeof(tally__cell));
            if (blk == NULL)
                return NULL;
        }
        /* blocks_hi is read by this thread's exit fold, which runs on
         * this thread: no ordering needed. */
        if (b + 1 > t->blocks_hi)
            t->blocks_hi = b + 1;
        /* Release pairs with the acquire loads in tally__id_read and
         * tally__id_release: they see the block zero-filled. */
        tally_atomic_store(&t->dir[b], blk, release);
    }
    return &blk[id & (TALLY_CELLS_PER_BLOCK - 1)];
}

void tally__id_add_slow(uint32_t id, int64_t delta)
{
    tally__cell *c = tally__cell_slow(id);
    if (c != NULL)
        tally__cell_add(c, delta);
    else
        tally__id_add_shared(id, delta);
}

void tally__id_add_shared(uint32_t id, int64_t delta)
{
    /* Relaxed: like a cell, adj publishes nothing; the RMW loses no add. */
    tally_atomic_fetch_add(adj_cell(id), delta, relaxed);
}

void tally__id_sub(uint32_t id, int64_t amount)
{
    tally_atomic_fetch_sub(adj_cell(id), amount, relaxed);
}

/* Sum of id's cells over all registered threads, plus adj. */
static int64_t id_sum(uint32_t id)
{
    uint32_t b = id >> TALLY_CELL_SHIFT, i = id & (TALLY_CELLS_PER_BLOCK - 1);
    int64_t v = tally_atomic_load(adj_cell(id), relaxed);
    /* Acquire pairs with the release publication of each record. */
    for (struct tally__thread *t = tally_atomic_load(&registry, acquire);
         t != NULL; t = t->next) {
        /* Acquire pairs with tally__cell_slow's block publication. */
        tally__cell *blk = tally_atomic_load(&t->dir[b], acquire);
        if (blk != NULL)
            v = tally_wrap_add(v, tally_atomic_load(&blk[i], relaxed));
    }
    return v;
}

int64_t tally__id_read(uint32_t id)
{
    for (;;) {
        /* Acquire pairs with the release store that ends a fold: if we see
         * that fold's end we see all of its moves. */
        uint64_t s1 = tally_atomic_load(&fold_seq, acquire);
        if (s1 & 1) {
            tally_cpu_relax();
            continue;
        }
        int64_t v = id_sum(id);
        /* Acquire fence: if any load above saw a value written by a fold
         * that began after s1, the fold's opening increment is visible to
         * the load below (pairs with the release fence in thread_exit). */
        tally_atomic_fence(acquire);
        if (tally_atomic_load(&fold_seq, relaxed) == s1)
            return v;
    }
}

/* Under ids_lock. */
static int id_alloc_locked(uint32_t *out)
{
    if (free_head != 0) {
        uint32_t id = free_head - 1;
        tally__cell *link = adj_cell(id);
        free_head = (uint32_t)tally_atomic_load(link, relaxed);
        tally_atomic_store(link, 0, relaxed);
        *out = id;
        return 0;
    }
    if (next_id >= TALLY_ID_LIMIT)
        return -ENOMEM;
    int err = ensure_adj_block(next_id >> TALLY_CELL_SHIFT);
    if (err == 0)
        *out = next_id++;
    return err;
}

int tally__id_alloc(uint32_t *out)
{
    pthread_mutex_lock(&ids_lock);
    int err = id_alloc_locked(out);
    pthread_mutex_unlock(&ids_lock);
    return err;
}

int tally__id_try_alloc(uint32_t *out)
{
    if (pthread_mutex_trylock(&ids_lock) != 0)
        return -EBUSY;
    int err = id_alloc_locked(out);
    pthread_mutex_unlock(&ids_lock);
    return err;
}

int64_t tally__id_release(uint32_t id)
{
    uint32_t b = id >> TALLY_CELL_SHIFT, i = id & (TALLY_CELLS_PER_BLOCK - 1);
    pthread_mutex_lock(&ids_lock);
    /* Under ids_lock no fold runs, so a plain sum is exact: by the
     * caller's guarantee no add to id is running either. */
    int64_t v = id_sum(id);
    /* Zero every cell, so the next owner of id starts at 0, and push id
     * on the free list through its adj (zeroed again when handed out).
     * The cells' owners are not writing them (the caller's guarantee);
     * the next owner receives the id through ids_lock, which orders these
     * stores before its first add. */
    tally_atomic_store(adj_cell(id), (int64_t)free_head, relaxed);
    free_head = id + 1;
    /* Acquire loads: as in id_sum (record publication, block publication). */
    for (struct tally__thread *t = tally_atomic_load(&registry, acquire);
         t != NULL; t = t->next) {
        tally__cell *blk = tally_atomic_load(&t->dir[b], acquire);
        if (blk != NULL)
            tally_atomic_store(&blk[i], 0, relaxed);
    }
    pthread_mutex_unlock(&ids_lock);
    return v;
}

/* Moves t's cells into adj and detaches its blocks (see cells.h); called
 * under ids_lock with the fold sequence odd, for a record whose thread
 * will not add again: an exiting thread (on itself), or in a forked child
 * a thread that does not exist there. */
static void fold_record(struct tally__thread *t)
{
    /* Ids at or beyond next_id were never handed out; every cell below it
     * belongs to a live id or is 0 (release zeroes the cells). */
    for (uint32_t b = 0; b < t->blocks_hi; b++) {
        tally__cell *blk = tally_atomic_load(&t->dir[b], relaxed);
        if (blk == NULL)
            continue;
        for (uint32_t i = 0; i < TALLY_CELLS_PER_BLOCK; i++) {
            int64_t v = tally_atomic_load(&blk[i], relaxed);
            if (v == 0)
                continue;
            tally_atomic_fetch_add(adj_cell(b * TALLY_CELLS_PER_BLOCK + i), v,
                                   relaxed);
            tally_atomic_store(&blk[i], 0, relaxed);
        }
        /* Detach the (now zero) block for reuse. A reader that loaded the
         * pointer before this fold retries (fold_seq changed), so it never
         * uses a value read after the block moves to another index. The
         * link in cell 0 is written after the detach, inside the fold. */
        tally_atomic_store(&t->dir[b], NULL, relaxed);
        tally_atomic_store(&blk[0], (int64_t)(uintptr_t)t->spare, relaxed);
        t->spare = blk;
    }
    t->blocks_hi = 0;
    tally_atomic_store(&t->rcu_ctr, 0, relaxed);
    t->last_map = 0;
    t->streak = 0;
    tally_atomic_store(&t->in_use, 0, relaxed);
}

/* pthread key destructor: runs on the exiting thread. */
static void thread_exit(void *arg)
{
    struct tally__thread *t = arg;
    pthread_mutex_lock(&ids_lock);
    uint64_t s = tally_atomic_load(&fold_seq, relaxed);
    tally_atomic_store(&fold_seq, s + 1, relaxed);
    /* Release fence: the odd sequence number is ordered before the moves
     * below (pairs with the acquire fence in tally__id_read). */
    tally_atomic_fence(release);
    fold_record(t);
    /* Release: ends the fold; pairs with the acquire load in
     * tally__id_read. */
    tally_atomic_store(&fold_seq, s + 2, release);
    pthread_mutex_unlock(&ids_lock);
    tally__self = NULL;
    tally__dir = NULL;
}

/* ---- grace periods (cells.h) ---------------------------------------- */

uint64_t tally__rcu_cookie(void)
{
    /* Acq_rel RMW: release publishes the caller's unlinks to any reader
     * whose acquire load of the number reads this value or a later one
     * (every write of the number is an RMW, so they all continue this
     * release sequence); acquire keeps the caller's later work after it. */
    return tally_atomic_fetch_add(&tally__rcu_gp, 2, acq_rel) + 2;
}

/* Runs a full fence on every CPU that runs a thread of this process.
 * False when no way to do that is left (cells.h). Under gp_lock. */
static bool fence_everyone(void)
{
    if (tally__rcu_need_fence) {
        tally_atomic_fence(seq_cst); /* pairs with tally__rcu_enter's */
        return true;
    }
#if defined(TALLY_MEMBARRIER)
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
        return true;
    /* It worked at init, so the registration was lost: register again. */
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
        return true;
    /* The slow system-wide barrier needs no registration. */
    if (membarrier_global && membarrier(MEMBARRIER_CMD_GLOBAL) == 0)
        return true;
#endif
    membarrier_broken = true;
    return false;
}

/* One look (under gp_lock): completes every cookie it can. Returns the
 * record of a reader that kept cookie open, or NULL when cookie is
 * complete (or, with *broken, when no grace period can complete). */
static struct tally__thread *scan(uint64_t cookie, bool *broken)
{
    *broken = false;
    uint64_t done = tally_atomic_load(&tally__rcu_gp_done, relaxed);
    if (done >= cookie)
        return NULL;
    /* Acquire: every cookie up to n was taken (by an acq_rel RMW) before
     * this load, so the unlinks they cover happen before the fence. */
    uint64_t n = tally_atomic_load(&tally__rcu_gp, acquire);
    if (membarrier_broken || !fence_everyone()) {
        *broken = true;
        return NULL;
    }
    /* After the fence, a reader whose rcu_ctr store we cannot see began
     * its section after it, and sees every unlink made before n. */
    uint64_t m = n;
    struct tally__thread *blocker = NULL;
    /* Acquire on the head pairs with the release publication of each
     * record. */
    for (struct tally__thread *t = tally_atomic_load(&registry, acquire);
         t != NULL; t = t->next) {
        /* Acquire pairs with the release store in tally__rcu_exit: the
         * loads of a section we see ended happen before our caller's
         * frees. */
        uint64_t c = tally_atomic_load(&t->rcu_ctr, acquire);
        if (c != 0 && c < m) {
            m = c;
            if (c < cookie)
                blocker = t;
        }
    }
    if (m > done)
        /* Release pairs with the acquire load in tally__rcu_done. */
        tally_atomic_store(&tally__rcu_gp_done, m, release);
    return blocker;
}

bool tally__rcu_poll(uint64_t cookie)
{
    if (tally__rcu_done(cookie))
        return true;
    pthread_once(&init_once, init);
    if (pthread_mutex_trylock(&gp_lock) != 0)
        return false;
    bool broken;
    struct tally__thread *blocker = scan(cookie, &broken);
    pthread_mutex_unlock(&gp_lock);
    return blocker == NULL && !broken;
}

int tally__rcu_wait(uint64_t cookie)
{
    if (tally__rcu_done(cookie))
        return 0;
    if (tally__rcu_inside())
        return -EDEADLK;
    pthread_once(&init_once, init);
    for (;;) {
        pthread_mutex_lock(&gp_lock);
        bool broken;
        struct tally__thread *blocker = scan(cookie, &broken);
        /* The blocker's section began before cookie; wait for it to end
         * (its rcu_ctr changes) before looking again. */
        uint64_t c = blocker != NULL
                         ? tally_atomic_load(&blocker->rcu_ctr, relaxed)
                         : 0;
        pthread_mutex_unlock(&gp_lock);
        if (broken)
            return -EIO;
        if (blocker == NULL)
            return 0;
        unsigned spins = 0;
        /* Relaxed: only a hint to look again; scan() re-reads with
         * acquire. */
        while (tally_atomic_load(&blocker->rcu_ctr, relaxed) == c) {
            if (++spins < 128)
                tally_cpu_relax();
            else
                sched_yield();
        }
    }
}

int tally__rcu_synchronize(void)
{
    if (tally__rcu_inside())
        return -EDEADLK;
    return tally__rcu_wait(tally__rcu_cookie());
}

/* ---- fork (cells.h) -------------------------------------------------- */

static void fork_prepare(void)
{
    pthread_mutex_lock(&gp_lock);
    pthread_mutex_lock(&ids_lock);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&ids_lock);
    pthread_mutex_unlock(&gp_lock);
}

static void fork_child(void)
{
    /* One thread now, holding both locks (taken in fork_prepare): no fold,
     * id operation or grace period was half done at the fork. */
    struct tally__thread *self = tally__self;
    uint64_t s = tally_atomic_load(&fold_seq, relaxed);
    tally_atomic_store(&fold_seq, s + 1, relaxed);
    for (struct tally__thread *t = tally_atomic_load(&registry, relaxed);
         t != NULL; t = t->next)
        if (t != self && tally_atomic_load(&t->in_use, relaxed))
            fold_record(t); /* a thread of the parent only */
    tally_atomic_store(&fold_seq, s + 2, relaxed);
    pthread_mutex_init(&ids_lock, NULL);
    pthread_mutex_init(&gp_lock, NULL);
#if defined(TALLY_MEMBARRIER)
    /* Registration is kept across fork; renewing it costs little. */
    if (!tally__rcu_need_fence)
        (void)membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
#endif
}
