/*
 * cells.c - thread registry, ids, cells and grace periods (see cells.h for
 * the invariants: who writes which field and what readers can see).
 *
 * Locks, in the order they may be taken:
 *   gp_lock   serialises grace periods.
 *   ids_lock  guards the id allocator, adj block allocation, the registry
 *             list's insertions, record reuse, exit folds and id releases.
 * Neither is ever taken by an add to a cell that exists, nor by a read.
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

static void init(void)
{
    exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
#if defined(__linux__) && defined(__NR_membarrier) && !defined(TALLY_TSAN)
    /* ThreadSanitizer cannot see the ordering membarrier() provides, so its
     * builds keep the fence on the read side. */
    long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0,
                0) == 0)
        tally__rcu_need_fence = false;
#endif
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

int tally__id_alloc(uint32_t *out)
{
    int err = 0;
    uint32_t id = 0;
    pthread_mutex_lock(&ids_lock);
    if (free_head != 0) {
        id = free_head - 1;
        tally__cell *link = adj_cell(id);
        free_head = (uint32_t)tally_atomic_load(link, relaxed);
        tally_atomic_store(link, 0, relaxed);
    } else if (next_id >= TALLY_ID_LIMIT) {
        err = -ENOMEM;
    } else {
        err = ensure_adj_block(next_id >> TALLY_CELL_SHIFT);
        if (err == 0)
            id = next_id++;
    }
    pthread_mutex_unlock(&ids_lock);
    if (err == 0)
        *out = id;
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
    /* Release: ends the fold; pairs with the acquire load in
     * tally__id_read. */
    tally_atomic_store(&fold_seq, s + 2, release);
    tally_atomic_store(&t->rcu_ctr, 0, relaxed);
    t->last_map = 0;
    tally_atomic_store(&t->in_use, 0, relaxed);
    pthread_mutex_unlock(&ids_lock);
    tally__self = NULL;
    tally__dir = NULL;
}

int tally__rcu_synchronize(void)
{
    if (tally__rcu_inside())
        return -EDEADLK;
    pthread_once(&init_once, init);
    pthread_mutex_lock(&gp_lock);
    uint64_t gp = tally_atomic_load(&tally__rcu_gp, relaxed) + 2;
    /* Release pairs with the acquire load in tally__rcu_enter: a reader
     * that starts with the new number sees the caller's unlinks. */
    tally_atomic_store(&tally__rcu_gp, gp, release);
#if defined(__linux__) && defined(__NR_membarrier)
    if (!tally__rcu_need_fence)
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    else
#endif
        tally_atomic_fence(seq_cst); /* pairs with tally__rcu_enter's fence */
    /* Either a reader's rcu_ctr store is visible to the loads below, or
     * that reader's section loads come after the fence and so cannot see
     * what the caller unlinked before calling us. Acquire on the head
     * pairs with the release publication of each record. */
    for (struct tally__thread *t = tally_atomic_load(&registry, acquire);
         t != NULL; t = t->next) {
        unsigned spins = 0;
        for (;;) {
            /* Acquire pairs with the release store in tally__rcu_exit: the
             * section's loads happen before whatever the caller does
             * next (typically a free). */
            uint64_t c = tally_atomic_load(&t->rcu_ctr, acquire);
            if (c == 0 || c >= gp)
                break;
            if (++spins < 128)
                tally_cpu_relax();
            else
                sched_yield();
        }
    }
    pthread_mutex_unlock(&gp_lock);
    return 0;
}
