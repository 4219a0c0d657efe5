/*
 * seedmap.h - the article's SafeCounter in C: one pthread mutex around a
 * string-keyed hash map of int64_t counters.
 *
 * This is the design tally replaces, kept as a faithful baseline for the
 * demo, the examples and the benchmarks. Standalone: no tally dependency.
 *
 * Every call may run from any number of threads at once, except
 * seedmap_free; every call takes the one mutex (blocking). Values wrap in
 * two's complement. Errors are negative errno values; nothing aborts.
 */
#ifndef SEEDMAP_H
#define SEEDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct seedmap seedmap;

/* Creates an empty map. 0, -EINVAL (out NULL), -ENOMEM, or the error of
 * pthread_mutex_init negated. */
int seedmap_new(seedmap **out);
/* Frees the map and its keys. NULL is a no-op. */
void seedmap_free(seedmap *m);

/* SafeCounter.Inc: seedmap_add_n(m, key, strlen(key), 1). */
int seedmap_inc(seedmap *m, const char *key);
/* Adds delta to the key's value, creating the key at 0 first if absent.
 * 0, -EINVAL (m or key NULL), -ENOMEM (the key was absent and could not
 * be created; nothing changed). */
int seedmap_add_n(seedmap *m, const void *key, size_t len, int64_t delta);

/* SafeCounter.Value: the key's value, 0 when absent (or m/key NULL). */
int64_t seedmap_value(seedmap *m, const char *key);
int64_t seedmap_value_n(seedmap *m, const void *key, size_t len);

/* The number of keys. */
size_t seedmap_size(seedmap *m);

#endif /* SEEDMAP_H */
