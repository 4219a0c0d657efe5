/*
 * seedmap.c - one mutex around a chained hash map (see seedmap.h).
 *
 * Everything in struct seedmap is guarded by mu. Buckets are a power of
 * two, hashed with 64-bit FNV-1a, and double when there are more keys than
 * buckets. If growing fails for lack of memory the map keeps its old
 * table (longer chains, nothing lost); only creating a key can fail.
 */
#include "seedmap.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct seedmap_entry {
    struct seedmap_entry *next;
    uint64_t hash;
    int64_t value;
    size_t len;
    unsigned char key[]; /* len bytes */
};

struct seedmap {
    pthread_mutex_t mu;
    struct seedmap_entry **buckets; /* nbuckets chains */
    size_t nbuckets;                /* a power of two */
    size_t size;                    /* keys present */
};

enum { SEEDMAP_INITIAL_BUCKETS = 16 };

static uint64_t seedmap_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

int seedmap_new(seedmap **out)
{
    seedmap *m;
    int err;

    if (out == NULL)
        return -EINVAL;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->nbuckets = SEEDMAP_INITIAL_BUCKETS;
    m->buckets = calloc(m->nbuckets, sizeof m->buckets[0]);
    if (m->buckets == NULL) {
        free(m);
        return -ENOMEM;
    }
    err = pthread_mutex_init(&m->mu, NULL);
    if (err != 0) {
        free(m->buckets);
        free(m);
        return -err;
    }
    *out = m;
    return 0;
}

void seedmap_free(seedmap *m)
{
    size_t i;

    if (m == NULL)
        return;
    for (i = 0; i < m->nbuckets; i++) {
        struct seedmap_entry *e = m->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&m->mu);
    free(m->buckets);
    free(m);
}

/* Caller holds m->mu. */
static struct seedmap_entry *seedmap_find(seedmap *m, uint64_t h,
                                          const void *key, size_t len)
{
    struct seedmap_entry *e = m->buckets[h & (m->nbuckets - 1)];

    for (; e != NULL; e = e->next)
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* Caller holds m->mu. Doubles the table; on ENOMEM keeps the old one. */
static void seedmap_grow(seedmap *m)
{
    size_t n = m->nbuckets * 2, i;
    struct seedmap_entry **b = calloc(n, sizeof b[0]);

    if (b == NULL)
        return;
    for (i = 0; i < m->nbuckets; i++) {
        struct seedmap_entry *e = m->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

int seedmap_add_n(seedmap *m, const void *key, size_t len, int64_t delta)
{
    uint64_t h;
    struct seedmap_entry *e;

    if (m == NULL || key == NULL)
        return -EINVAL;
    h = seedmap_hash(key, len);

    pthread_mutex_lock(&m->mu);
    e = seedmap_find(m, h, key, len);
    if (e == NULL) {
        /* Allocating under the lock, as Go's map does inside c.mux. */
        e = malloc(sizeof *e + len);
        if (e == NULL) {
            pthread_mutex_unlock(&m->mu);
            return -ENOMEM;
        }
        e->hash = h;
        e->value = 0;
        e->len = len;
        memcpy(e->key, key, len);
        e->next = m->buckets[h & (m->nbuckets - 1)];
        m->buckets[h & (m->nbuckets - 1)] = e;
        if (++m->size > m->nbuckets)
            seedmap_grow(m);
    }
    /* Wraps like Go's int, without signed-overflow UB. */
    e->value = (int64_t)((uint64_t)e->value + (uint64_t)delta);
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int seedmap_inc(seedmap *m, const char *key)
{
    if (key == NULL)
        return -EINVAL;
    return seedmap_add_n(m, key, strlen(key), 1);
}

int64_t seedmap_value_n(seedmap *m, const void *key, size_t len)
{
    struct seedmap_entry *e;
    int64_t v;

    if (m == NULL || key == NULL)
        return 0;
    pthread_mutex_lock(&m->mu);
    e = seedmap_find(m, seedmap_hash(key, len), key, len);
    v = e != NULL ? e->value : 0;
    pthread_mutex_unlock(&m->mu);
    return v;
}

int64_t seedmap_value(seedmap *m, const char *key)
{
    if (key == NULL)
        return 0;
    return seedmap_value_n(m, key, strlen(key));
}

size_t seedmap_size(seedmap *m)
{
    size_t n;

    if (m == NULL)
        return 0;
    pthread_mutex_lock(&m->mu);
    n = m->size;
    pthread_mutex_unlock(&m->mu);
    return n;
}
