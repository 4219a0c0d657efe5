/*
 * adder.c - tally_adder: a counter whose adds scale with cores.
 *
 * An adder is one id in the cell scheme of cells.h: each thread adds to
 * its own cell with a plain load and store, and reads sum the cells plus
 * the shared adj(id). Everything about who writes what and what readers
 * see is in cells.h; this file adds only the drain rule.
 *
 * Drain: under drain_lock, read v = value(id), then subtract v from adj.
 * Adds that land between the read and the subtraction are in cells and not
 * in v, so they stay in the value; every add is counted by exactly one
 * drain or by the value left. drain_lock only orders drains among
 * themselves: adds and sums never take it.
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
    pthread_mutex_t drain_lock; /* serialises drains */
};

int tally_adder_new(tally_adder **out)
{
    if (out == NULL)
        return -EINVAL;
    tally_adder *a = tally__malloc(sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    int err = tally__id_alloc(&a->head.id);
    if (err != 0) {
        tally__free(a);
        return err;
    }
    pthread_mutex_init(&a->drain_lock, NULL);
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
    pthread_mutex_destroy(&a->drain_lock);
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
    pthread_mutex_lock(&a->drain_lock);
    int64_t v = tally__id_read(a->head.id);
    tally__id_sub(a->head.id, v);
    pthread_mutex_unlock(&a->drain_lock);
    return v;
}
