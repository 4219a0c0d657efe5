/*
 * adder.c - tally_adder: a counter whose adds scale with cores.
 *
 * An adder is one id in the cell scheme of cells.h: each thread adds to
 * its own cell with a plain load and store, and reads sum the cells plus
 * the shared adj(id). Everything about who writes what and what readers
 * see is in cells.h; this file adds only the drain rule.
 *
 * Drain: under the adder's drain lock, read v = value(id), then subtract
 * v from adj. Adds that land between the read and the subtraction are in
 * cells and not in v, so they stay in the value; every add is counted by
 * exactly one drain or by the value left. The drain locks only order
 * drains among themselves: adds and sums never take them.
 *
 * The drain locks are a fixed array shared by all adders (picked by id),
 * not one per adder, so that fork handlers can take them all before a
 * fork and re-create them in the child: a drain running on another thread
 * at the fork cannot leave the child's adder locked forever.
 */
#include "tally.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>

#include "alloc.h"
#include "cells.h"

struct tally_adder {
    /* head.id: immutable from new to free. First, where tally.h's inline
     * add reads it. */
    struct tally__adder_head head;
};

#define DRAIN_LOCKS 64
static pthread_mutex_t drain_locks[DRAIN_LOCKS];
static pthread_once_t drain_once = PTHREAD_ONCE_INIT;

static void drain_fork_prepare(void)
{
    for (unsigned i = 0; i < DRAIN_LOCKS; i++)
        pthread_mutex_lock(&drain_locks[i]);
}

static void drain_fork_parent(void)
{
    for (unsigned i = DRAIN_LOCKS; i-- > 0;)
        pthread_mutex_unlock(&drain_locks[i]);
}

static void drain_fork_child(void)
{
    for (unsigned i = 0; i < DRAIN_LOCKS; i++)
        pthread_mutex_init(&drain_locks[i], NULL);
}

static void drain_init(void)
{
    for (unsigned i = 0; i < DRAIN_LOCKS; i++)
        pthread_mutex_init(&drain_locks[i], NULL);
    /* After cells.c's handlers: these locks come before ids_lock. */
    tally__cells_init();
    (void)pthread_atfork(drain_fork_prepare, drain_fork_parent,
                         drain_fork_child);
}

static pthread_mutex_t *drain_lock(const tally_adder *a)
{
    return &drain_locks[a->head.id % DRAIN_LOCKS];
}

int tally_adder_new(tally_adder **out)
{
    if (out == NULL)
        return -EINVAL;
    tally_adder *a = tally__malloc(sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    pthread_once(&drain_once, drain_init);
    int err = tally__id_alloc(&a->head.id);
    if (err != 0) {
        tally__free(a);
        return err;
    }
    *out = a;
    return 0;
}

void tally_adder_free(tally_adder *a)
{
    if (a == NULL)
        return;
    /* The caller guarantees no add is running or will run: the id can go
     * back with its cells zeroed. */
    (void)tally__id_release(a->head.id);
    tally__free(a);
}

_Static_assert(offsetof(struct tally_adder, head) == 0, "tally.h layout");

void tally_adder_add(tally_adder *a, int64_t delta)
{
    tally__id_add(a->head.id, delta);
}

/* What tally.h's inline add calls when the thread has no cell yet. */
void tally__adder_add_slow(tally_adder *a, int64_t delta)
{
    tally__id_add(a->head.id, delta);
}

void tally_adder_inc(tally_adder *a)
{
    tally__id_add(a->head.id, 1);
}

int64_t tally_adder_sum(tally_adder *a)
{
    return tally__id_read(a->head.id);
}

int64_t tally_adder_drain(tally_adder *a)
{
    pthread_mutex_lock(drain_lock(a));
    int64_t v = tally__id_read(a->head.id);
    tally__id_sub(a->head.id, v);
    pthread_mutex_unlock(drain_lock(a));
    return v;
}
