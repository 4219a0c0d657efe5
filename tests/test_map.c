/*
 * test_map.c - unit tests of every tally_map call, exact values.
 *
 *   1. Bad input: NULL map, key or out gives -EINVAL and changes nothing;
 *      value() of bad input or an absent key is 0.
 *   2. add / inc / value / get; get of an absent key is -ENOENT and leaves
 *      *value untouched.
 *   3. Keys are byte strings: NUL bytes (via _n), the empty key, every
 *      length 0..80 in exactly-sized heap buffers (ASan sees any read past
 *      the key), TALLY_KEY_MAX bytes work, TALLY_KEY_MAX + 1 is
 *      -ENAMETOOLONG and changes nothing.
 *   4. remove returns the last value; the key is gone; add creates it again
 *      at the new delta.
 *   5. drain visits only non-zero keys with their amounts and leaves them
 *      present at 0.
 *   6. foreach visits each of 10000 keys exactly once, exact values.
 *   7. A callback's non-zero result stops foreach and drain and is
 *      returned; a stopped drain took only what it visited.
 *   8. Inside a callback: remove and drain are -EDEADLK (on any map); adds
 *      work.
 *   9. Handles: creation at 0, adds, two handles on one key, remove while
 *      held, adds through a handle after remove create the key again,
 *      release after remove.
 *  10. 200000 keys: values, half removed, size exact, re-created at 0.
 *  11. Threads that add and exit: their adds stay in the keys.
 *  12. Out of memory: creating a key fails with -ENOMEM and changes
 *      nothing; adds to existing keys and through handles never fail.
 *  13. tally_map_free with keys present (LSan checks for leaks).
 *  14. foreach and drain while another thread grows every shard's table
 *      (rebuilds under the visit): each old key seen exactly once with
 *      its exact value; drained amounts plus what is left equal the adds.
 */
#include "tally.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "check.h"
#include "map.h" /* hot keys: test_hot_keys reads the slots */

/* ------------------------------------------------------------------ */
/* A visitor that records what it sees                                 */
/* ------------------------------------------------------------------ */

struct seen {
    unsigned char key[TALLY_KEY_MAX];
    size_t len;
    int64_t value;
};

struct collect {
    struct seen *items;
    size_t n, cap;
    size_t stop_at; /* return stop_rc at this visit (1-based); 0: never */
    int stop_rc;
};

static void collect_init(struct collect *c, size_t cap)
{
    memset(c, 0, sizeof *c);
    c->items = calloc(cap ? cap : 1, sizeof *c->items);
    CHECK(c->items != NULL);
    c->cap = cap;
}

static int collect_fn(void *ctx, const void *key, size_t len, int64_t value)
{
    struct collect *c = ctx;

    CHECK_LT(c->n, c->cap);
    CHECK_LE(len, TALLY_KEY_MAX);
    CHECK(key != NULL);
    memcpy(c->items[c->n].key, key, len);
    c->items[c->n].len = len;
    c->items[c->n].value = value;
    c->n++;
    return c->n == c->stop_at ? c->stop_rc : 0;
}

/* The value collected for key, or fails when it was not seen exactly
 * once. */
static int64_t collected(const struct collect *c, const void *key, size_t len)
{
    size_t hits = 0;
    int64_t v = 0;

    for (size_t i = 0; i < c->n; i++) {
        if (c->items[i].len == len && memcmp(c->items[i].key, key, len) == 0) {
            hits++;
            v = c->items[i].value;
        }
    }
    CHECK_EQ(hits, 1);
    return v;
}

static int count_fn(void *ctx, const void *key, size_t len, int64_t value)
{
    (void)key;
    (void)len;
    (void)value;
    ++*(size_t *)ctx;
    return 0;
}

static size_t count_keys(tally_map *m)
{
    size_t n = 0;
    CHECK_EQ(tally_map_foreach(m, count_fn, &n), 0);
    return n;
}

static int64_t get_n(tally_map *m, const void *key, size_t len)
{
    int64_t v = INT64_MIN + 17;
    CHECK_EQ(tally_map_get_n(m, key, len, &v), 0);
    return v;
}

static void check_absent_n(tally_map *m, const void *key, size_t len)
{
    int64_t v = 12345;
    CHECK_EQ(tally_map_get_n(m, key, len, &v), -ENOENT);
    CHECK_EQ(v, 12345); /* untouched */
}

/* ------------------------------------------------------------------ */
/* 1. Bad input                                                        */
/* ------------------------------------------------------------------ */

static void test_bad_input(void)
{
    tally_map *m;
    tally_handle *h = (tally_handle *)&h, *keep_h = h;
    int64_t v = 77;

    CHECK_EQ(tally_map_new(NULL), -EINVAL);
    tally_map_free(NULL);
    tally_handle_release(NULL);

    CHECK_EQ(tally_map_new(&m), 0);
    CHECK(m != NULL);
    CHECK_EQ(tally_map_size(m), 0);
    CHECK_EQ(tally_map_add(m, "k", 3), 0);

    CHECK_EQ(tally_map_add(NULL, "k", 1), -EINVAL);
    CHECK_EQ(tally_map_add(m, NULL, 1), -EINVAL);
    CHECK_EQ(tally_map_add_n(NULL, "k", 1, 1), -EINVAL);
    CHECK_EQ(tally_map_add_n(m, NULL, 0, 1), -EINVAL);
    CHECK_EQ(tally_map_add_n(m, NULL, 1, 1), -EINVAL);
    CHECK_EQ(tally_map_inc(NULL, "k"), -EINVAL);
    CHECK_EQ(tally_map_inc(m, NULL), -EINVAL);

    CHECK_EQ(tally_map_value(NULL, "k"), 0);
    CHECK_EQ(tally_map_value(m, NULL), 0);
    CHECK_EQ(tally_map_get(NULL, "k", &v), -EINVAL);
    CHECK_EQ(tally_map_get(m, NULL, &v), -EINVAL);
    CHECK_EQ(tally_map_get(m, "k", NULL), -EINVAL);
    CHECK_EQ(tally_map_get_n(NULL, "k", 1, &v), -EINVAL);
    CHECK_EQ(tally_map_get_n(m, NULL, 0, &v), -EINVAL);
    CHECK_EQ(tally_map_get_n(m, "k", 1, NULL), -EINVAL);
    CHECK_EQ(v, 77);

    CHECK_EQ(tally_map_remove(NULL, "k", &v), -EINVAL);
    CHECK_EQ(tally_map_remove(m, NULL, &v), -EINVAL);
    CHECK_EQ(tally_map_remove_n(NULL, "k", 1, &v), -EINVAL);
    CHECK_EQ(tally_map_remove_n(m, NULL, 0, &v), -EINVAL);
    CHECK_EQ(v, 77);

    CHECK_EQ(tally_map_foreach(NULL, count_fn, &v), -EINVAL);
    CHECK_EQ(tally_map_foreach(m, NULL, &v), -EINVAL);
    CHECK_EQ(tally_map_drain(NULL, count_fn, &v), -EINVAL);
    CHECK_EQ(tally_map_drain(m, NULL, &v), -EINVAL);

    CHECK_EQ(tally_map_handle(NULL, "k", &h), -EINVAL);
    CHECK_EQ(tally_map_handle(m, NULL, &h), -EINVAL);
    CHECK_EQ(tally_map_handle(m, "k", NULL), -EINVAL);
    CHECK_EQ(tally_map_handle(m, "new", NULL), -EINVAL);
    CHECK_EQ(tally_map_handle_n(NULL, "k", 1, &h), -EINVAL);
    CHECK_EQ(tally_map_handle_n(m, NULL, 0, &h), -EINVAL);
    CHECK_EQ(tally_map_handle_n(m, "k", 1, NULL), -EINVAL);
    CHECK(h == keep_h);

    /* Nothing changed: the drain with a NULL callback took nothing, and
     * the handle with a NULL out created no key. */
    CHECK_EQ(tally_map_size(m), 1);
    CHECK_EQ(tally_map_value(m, "k"), 3);
    check_absent_n(m, "new", 3);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 2. add, inc, value, get                                             */
/* ------------------------------------------------------------------ */

static void test_add_value_get(void)
{
    tally_map *m;
    int64_t v;

    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_map_value(m, "a"), 0);
    v = 99;
    CHECK_EQ(tally_map_get(m, "a", &v), -ENOENT);
    CHECK_EQ(v, 99);
    CHECK_EQ(tally_map_size(m), 0); /* reads create nothing */

    CHECK_EQ(tally_map_inc(m, "a"), 0);
    CHECK_EQ(tally_map_value(m, "a"), 1);
    CHECK_EQ(tally_map_add(m, "a", 41), 0);
    CHECK_EQ(tally_map_value(m, "a"), 42);
    CHECK_EQ(tally_map_add(m, "a", -50), 0);
    CHECK_EQ(tally_map_value(m, "a"), -8);
    CHECK_EQ(tally_map_get(m, "a", &v), 0);
    CHECK_EQ(v, -8);

    /* add 0 creates the key, at 0: get tells it from an absent key. */
    CHECK_EQ(tally_map_add(m, "zero", 0), 0);
    CHECK_EQ(tally_map_size(m), 2);
    v = 5;
    CHECK_EQ(tally_map_get(m, "zero", &v), 0);
    CHECK_EQ(v, 0);
    CHECK_EQ(tally_map_value(m, "zero"), 0);

    /* Two's-complement wrap. */
    CHECK_EQ(tally_map_add(m, "w", INT64_MAX), 0);
    CHECK_EQ(tally_map_inc(m, "w"), 0);
    CHECK_EQ(tally_map_value(m, "w"), INT64_MIN);
    CHECK_EQ(tally_map_add(m, "w", INT64_MIN), 0);
    CHECK_EQ(tally_map_value(m, "w"), 0);

    /* Similar keys are distinct. */
    CHECK_EQ(tally_map_add(m, "ab", 1), 0);
    CHECK_EQ(tally_map_add(m, "ba", 2), 0);
    CHECK_EQ(tally_map_add(m, "A", 3), 0);
    CHECK_EQ(tally_map_value(m, "ab"), 1);
    CHECK_EQ(tally_map_value(m, "ba"), 2);
    CHECK_EQ(tally_map_value(m, "A"), 3);
    CHECK_EQ(tally_map_value(m, "a"), -8);
    CHECK_EQ(tally_map_size(m), 6);

    /* The C-string and _n calls name the same key. */
    CHECK_EQ(tally_map_add_n(m, "abc", 2, 10), 0);
    CHECK_EQ(tally_map_value(m, "ab"), 11);
    CHECK_EQ(get_n(m, "ab", 2), 11);
    CHECK_EQ(tally_map_size(m), 6);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 3. Key bytes and lengths                                            */
/* ------------------------------------------------------------------ */

static void test_key_bytes(void)
{
    tally_map *m;
    struct collect c;
    int64_t v;

    CHECK_EQ(tally_map_new(&m), 0);
    /* NUL bytes are part of the key. */
    CHECK_EQ(tally_map_add_n(m, "a\0b", 3, 1), 0);
    CHECK_EQ(tally_map_add_n(m, "a\0c", 3, 2), 0);
    CHECK_EQ(tally_map_add_n(m, "a", 1, 4), 0);
    CHECK_EQ(tally_map_add_n(m, "a\0", 2, 8), 0);
    CHECK_EQ(tally_map_add_n(m, "\0", 1, 16), 0);
    CHECK_EQ(tally_map_size(m), 5);
    CHECK_EQ(get_n(m, "a\0b", 3), 1);
    CHECK_EQ(get_n(m, "a\0c", 3), 2);
    CHECK_EQ(get_n(m, "a", 1), 4);
    CHECK_EQ(get_n(m, "a\0", 2), 8);
    CHECK_EQ(get_n(m, "\0", 1), 16);
    CHECK_EQ(tally_map_value(m, "a"), 4); /* strlen stops at the NUL */
    CHECK_EQ(tally_map_value(m, "a\0b"), 4);

    /* The empty key is a key like any other. */
    check_absent_n(m, "", 0);
    CHECK_EQ(tally_map_add_n(m, "", 0, 32), 0);
    CHECK_EQ(tally_map_add(m, "", 64), 0);
    CHECK_EQ(tally_map_inc(m, ""), 0);
    CHECK_EQ(get_n(m, "x", 0), 97);
    CHECK_EQ(tally_map_value(m, ""), 97);
    CHECK_EQ(tally_map_size(m), 6);

    collect_init(&c, 16);
    CHECK_EQ(tally_map_foreach(m, collect_fn, &c), 0);
    CHECK_EQ(c.n, 6);
    CHECK_EQ(collected(&c, "a\0b", 3), 1);
    CHECK_EQ(collected(&c, "a\0c", 3), 2);
    CHECK_EQ(collected(&c, "a", 1), 4);
    CHECK_EQ(collected(&c, "a\0", 2), 8);
    CHECK_EQ(collected(&c, "\0", 1), 16);
    CHECK_EQ(collected(&c, "", 0), 97);
    free(c.items);

    CHECK_EQ(tally_map_remove_n(m, "a\0", 2, &v), 0);
    CHECK_EQ(v, 8);
    check_absent_n(m, "a\0", 2);
    CHECK_EQ(get_n(m, "a", 1), 4);
    CHECK_EQ(get_n(m, "a\0b", 3), 1);
    CHECK_EQ(tally_map_remove_n(m, "", 0, &v), 0);
    CHECK_EQ(v, 97);
    check_absent_n(m, "", 0);
    CHECK_EQ(tally_map_size(m), 4);
    tally_map_free(m);

    /* Every length 0..80 in a heap buffer of exactly that size: the hash
     * and the compare must read no byte past the key. Keys that differ
     * only in their last byte, or only in their first, are distinct. */
    CHECK_EQ(tally_map_new(&m), 0);
    for (size_t len = 0; len <= 80; len++) {
        for (int variant = 0; variant < 3; variant++) {
            unsigned char *k = malloc(len ? len : 1);
            CHECK(k != NULL);
            memset(k, 'k', len);
            if (len > 0 && variant == 1)
                k[len - 1] = 'L';
            if (len > 0 && variant == 2)
                k[0] = 'F';
            if (len == 0 && variant > 0) {
                free(k);
                continue;
            }
            CHECK_EQ(tally_map_add_n(m, k, len, (int64_t)(len * 3 + variant)),
                     0);
            free(k);
        }
    }
    CHECK_EQ(tally_map_size(m), 1 + 80 * 3);
    for (size_t len = 0; len <= 80; len++) {
        for (int variant = 0; variant < 3 && (len > 0 || variant == 0);
             variant++) {
            unsigned char *k = malloc(len ? len : 1);
            CHECK(k != NULL);
            memset(k, 'k', len);
            if (len > 0 && variant == 1)
                k[len - 1] = 'L';
            if (len > 0 && variant == 2)
                k[0] = 'F';
            CHECK_EQ(get_n(m, k, len), (int64_t)(len * 3 + variant));
            free(k);
        }
    }
    tally_map_free(m);
}

static void test_key_max(void)
{
    tally_map *m;
    tally_handle *h = NULL;
    struct collect c;
    int64_t v = 55;
    unsigned char *max = malloc(TALLY_KEY_MAX);     /* exactly sized */
    char *over = malloc(TALLY_KEY_MAX + 2);          /* + 1 and its NUL */
    char *cmax = malloc(TALLY_KEY_MAX + 1);          /* max and its NUL */

    CHECK(max != NULL && over != NULL && cmax != NULL);
    for (size_t i = 0; i < TALLY_KEY_MAX; i++)
        max[i] = (unsigned char)(i * 31 + 7);
    memset(over, 'o', TALLY_KEY_MAX + 1);
    over[TALLY_KEY_MAX + 1] = '\0';
    memset(cmax, 'o', TALLY_KEY_MAX);
    cmax[TALLY_KEY_MAX] = '\0';

    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_map_add_n(m, max, TALLY_KEY_MAX, 9), 0);
    CHECK_EQ(tally_map_add_n(m, max, TALLY_KEY_MAX, 1), 0);
    CHECK_EQ(get_n(m, max, TALLY_KEY_MAX), 10);
    CHECK_EQ(tally_map_add(m, cmax, 20), 0); /* by C string, too */
    CHECK_EQ(tally_map_value(m, cmax), 20);
    CHECK_EQ(tally_map_size(m), 2);
    CHECK_EQ(tally_map_handle_n(m, max, TALLY_KEY_MAX, &h), 0);
    tally_handle_add(h, 5);
    tally_handle_release(h);
    CHECK_EQ(get_n(m, max, TALLY_KEY_MAX), 15);

    /* One byte more: -ENAMETOOLONG everywhere, and nothing changes (in
     * particular the TALLY_KEY_MAX-byte prefix "ooo..." keeps its 20). */
    h = (tally_handle *)&h;
    CHECK_EQ(tally_map_add_n(m, over, TALLY_KEY_MAX + 1, 1), -ENAMETOOLONG);
    CHECK_EQ(tally_map_add(m, over, 1), -ENAMETOOLONG);
    CHECK_EQ(tally_map_inc(m, over), -ENAMETOOLONG);
    CHECK_EQ(tally_map_get_n(m, over, TALLY_KEY_MAX + 1, &v), -ENAMETOOLONG);
    CHECK_EQ(tally_map_get(m, over, &v), -ENAMETOOLONG);
    CHECK_EQ(v, 55);
    CHECK_EQ(tally_map_value(m, over), 0);
    CHECK_EQ(tally_map_remove_n(m, over, TALLY_KEY_MAX + 1, &v),
             -ENAMETOOLONG);
    CHECK_EQ(tally_map_remove(m, over, &v), -ENAMETOOLONG);
    CHECK_EQ(v, 55);
    CHECK_EQ(tally_map_handle_n(m, over, TALLY_KEY_MAX + 1, &h),
             -ENAMETOOLONG);
    CHECK_EQ(tally_map_handle(m, over, &h), -ENAMETOOLONG);
    CHECK(h == (tally_handle *)&h);
    CHECK_EQ(tally_map_add_n(m, max, SIZE_MAX, 1), -ENAMETOOLONG);
    CHECK_EQ(tally_map_size(m), 2);
    CHECK_EQ(tally_map_value(m, cmax), 20);
    CHECK_EQ(get_n(m, max, TALLY_KEY_MAX), 15);

    /* foreach hands out the whole key. */
    collect_init(&c, 4);
    CHECK_EQ(tally_map_foreach(m, collect_fn, &c), 0);
    CHECK_EQ(c.n, 2);
    CHECK_EQ(collected(&c, max, TALLY_KEY_MAX), 15);
    CHECK_EQ(collected(&c, cmax, TALLY_KEY_MAX), 20);
    free(c.items);

    CHECK_EQ(tally_map_remove_n(m, max, TALLY_KEY_MAX, &v), 0);
    CHECK_EQ(v, 15);
    CHECK_EQ(tally_map_remove(m, cmax, &v), 0);
    CHECK_EQ(v, 20);
    CHECK_EQ(tally_map_size(m), 0);
    tally_map_free(m);
    free(max);
    free(over);
    free(cmax);
}

/* ------------------------------------------------------------------ */
/* 4. remove                                                           */
/* ------------------------------------------------------------------ */

static void test_remove(void)
{
    tally_map *m;
    int64_t v;

    CHECK_EQ(tally_map_new(&m), 0);
    v = 3;
    CHECK_EQ(tally_map_remove(m, "r", &v), -ENOENT);
    CHECK_EQ(v, 3);
    CHECK_EQ(tally_map_remove(m, "r", NULL), -ENOENT);

    CHECK_EQ(tally_map_add(m, "r", 30), 0);
    CHECK_EQ(tally_map_add(m, "r", -4), 0);
    CHECK_EQ(tally_map_add(m, "other", 1), 0);
    CHECK_EQ(tally_map_size(m), 2);
    CHECK_EQ(tally_map_remove(m, "r", &v), 0);
    CHECK_EQ(v, 26);
    CHECK_EQ(tally_map_size(m), 1);
    check_absent_n(m, "r", 1);
    CHECK_EQ(tally_map_value(m, "r"), 0);
    v = 3;
    CHECK_EQ(tally_map_remove(m, "r", &v), -ENOENT);
    CHECK_EQ(v, 3);

    /* Created again at the new delta: nothing of the old life is left. */
    CHECK_EQ(tally_map_add(m, "r", 7), 0);
    CHECK_EQ(tally_map_value(m, "r"), 7);
    CHECK_EQ(tally_map_size(m), 2);
    CHECK_EQ(tally_map_remove(m, "r", NULL), 0); /* last_value optional */
    check_absent_n(m, "r", 1);
    CHECK_EQ(tally_map_inc(m, "r"), 0);
    CHECK_EQ(tally_map_value(m, "r"), 1);

    /* A key at 0 removes with 0; a negative one with its value. */
    CHECK_EQ(tally_map_add(m, "z", 0), 0);
    CHECK_EQ(tally_map_remove(m, "z", &v), 0);
    CHECK_EQ(v, 0);
    CHECK_EQ(tally_map_add(m, "n", -9), 0);
    CHECK_EQ(tally_map_remove(m, "n", &v), 0);
    CHECK_EQ(v, -9);
    CHECK_EQ(tally_map_value(m, "other"), 1);
    CHECK_EQ(tally_map_size(m), 2);

    /* Remove and create the same keys many times (tombstones pile up in
     * the table and ids are reused): each life starts at 0. */
    for (int i = 0; i < 2000; i++) {
        char key[16];
        snprintf(key, sizeof key, "cycle%d", i % 7);
        CHECK_EQ(tally_map_add(m, key, i), 0);
        CHECK_EQ(tally_map_value(m, key), i);
        CHECK_EQ(tally_map_remove(m, key, &v), 0);
        CHECK_EQ(v, i);
    }
    CHECK_EQ(tally_map_size(m), 2);
    CHECK_EQ(tally_map_value(m, "r"), 1);
    CHECK_EQ(tally_map_value(m, "other"), 1);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 5. drain                                                            */
/* ------------------------------------------------------------------ */

static void test_drain(void)
{
    tally_map *m;
    tally_handle *h;
    struct collect c;

    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_map_drain(m, collect_fn, NULL), 0); /* empty: no call */

    CHECK_EQ(tally_map_add(m, "pos", 5), 0);
    CHECK_EQ(tally_map_add(m, "neg", -3), 0);
    CHECK_EQ(tally_map_add(m, "zero", 0), 0);
    CHECK_EQ(tally_map_add(m, "back", 4), 0);
    CHECK_EQ(tally_map_add(m, "back", -4), 0);
    CHECK_EQ(tally_map_handle(m, "handle", &h), 0);
    CHECK_EQ(tally_map_add(m, "wrap", INT64_MIN), 0);
    CHECK_EQ(tally_map_size(m), 6);

    collect_init(&c, 8);
    CHECK_EQ(tally_map_drain(m, collect_fn, &c), 0);
    CHECK_EQ(c.n, 3);
    CHECK_EQ(collected(&c, "pos", 3), 5);
    CHECK_EQ(collected(&c, "neg", 3), -3);
    CHECK_EQ(collected(&c, "wrap", 4), INT64_MIN);
    /* The keys stay, at 0. */
    CHECK_EQ(tally_map_size(m), 6);
    CHECK_EQ(get_n(m, "pos", 3), 0);
    CHECK_EQ(get_n(m, "neg", 3), 0);
    CHECK_EQ(get_n(m, "wrap", 4), 0);
    CHECK_EQ(get_n(m, "zero", 4), 0);
    CHECK_EQ(get_n(m, "back", 4), 0);
    CHECK_EQ(get_n(m, "handle", 6), 0);

    /* A second drain finds nothing. */
    c.n = 0;
    CHECK_EQ(tally_map_drain(m, collect_fn, &c), 0);
    CHECK_EQ(c.n, 0);

    /* Adds after the drain, by key and by handle, are the next amounts. */
    CHECK_EQ(tally_map_add(m, "pos", 2), 0);
    tally_handle_add(h, 6);
    tally_handle_inc(h);
    CHECK_EQ(tally_map_add(m, "fresh", 1), 0);
    CHECK_EQ(tally_map_value(m, "handle"), 7);
    CHECK_EQ(tally_map_drain(m, collect_fn, &c), 0);
    CHECK_EQ(c.n, 3);
    CHECK_EQ(collected(&c, "pos", 3), 2);
    CHECK_EQ(collected(&c, "handle", 6), 7);
    CHECK_EQ(collected(&c, "fresh", 5), 1);
    CHECK_EQ(tally_map_size(m), 7);
    CHECK_EQ(tally_map_value(m, "handle"), 0);

    /* A drained key removes with what came after the drain. */
    int64_t v;
    CHECK_EQ(tally_map_add(m, "pos", 11), 0);
    CHECK_EQ(tally_map_remove(m, "pos", &v), 0);
    CHECK_EQ(v, 11);
    tally_handle_release(h);
    free(c.items);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 6. foreach over 10000 keys                                          */
/* ------------------------------------------------------------------ */

enum { FE_KEYS = 10000 };

struct fe_ctx {
    unsigned char seen[FE_KEYS];
    size_t visits;
    int64_t (*expect)(unsigned i);
};

static int64_t fe_value(unsigned i)
{
    return (int64_t)i * 3 - 5000;
}

static int64_t fe_value_after(unsigned i)
{
    return i % 2 ? 0 : fe_value(i) + 1;
}

static int fe_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct fe_ctx *ctx = p;
    char buf[16];
    unsigned i;

    CHECK_GT(len, 1);
    CHECK_LT(len, sizeof buf);
    memcpy(buf, key, len);
    buf[len] = '\0';
    CHECK_EQ(sscanf(buf, "f%u", &i), 1);
    CHECK_LT(i, FE_KEYS);
    CHECK_EQ(ctx->seen[i], 0);
    ctx->seen[i] = 1;
    ctx->visits++;
    CHECK_EQ(value, ctx->expect(i));
    return 0;
}

static void test_foreach(void)
{
    tally_map *m;
    struct fe_ctx ctx;
    char key[16];

    CHECK_EQ(tally_map_new(&m), 0);
    memset(&ctx, 0, sizeof ctx);
    ctx.expect = fe_value;
    CHECK_EQ(tally_map_foreach(m, fe_fn, &ctx), 0);
    CHECK_EQ(ctx.visits, 0);

    for (unsigned i = 0; i < FE_KEYS; i++) {
        snprintf(key, sizeof key, "f%u", i);
        CHECK_EQ(tally_map_add(m, key, fe_value(i)), 0);
    }
    CHECK_EQ(tally_map_size(m), FE_KEYS);
    CHECK_EQ(tally_map_foreach(m, fe_fn, &ctx), 0);
    CHECK_EQ(ctx.visits, FE_KEYS);
    for (unsigned i = 0; i < FE_KEYS; i++)
        CHECK_EQ(ctx.seen[i], 1);
    /* foreach is a read: values unchanged, and it can run again. */
    memset(&ctx, 0, sizeof ctx);
    ctx.expect = fe_value;
    CHECK_EQ(tally_map_foreach(m, fe_fn, &ctx), 0);
    CHECK_EQ(ctx.visits, FE_KEYS);

    /* Drain all (each is non-zero), then add to the even keys only. */
    memset(&ctx, 0, sizeof ctx);
    ctx.expect = fe_value;
    CHECK_EQ(tally_map_drain(m, fe_fn, &ctx), 0);
    /* fe_value(i) == 0 for no integer i (3i == 5000 has no solution). */
    CHECK_EQ(ctx.visits, FE_KEYS);
    for (unsigned i = 0; i < FE_KEYS; i += 2) {
        snprintf(key, sizeof key, "f%u", i);
        CHECK_EQ(tally_map_add(m, key, fe_value(i) + 1), 0);
    }
    memset(&ctx, 0, sizeof ctx);
    ctx.expect = fe_value_after;
    CHECK_EQ(tally_map_foreach(m, fe_fn, &ctx), 0);
    CHECK_EQ(ctx.visits, FE_KEYS);
    for (unsigned i = 0; i < FE_KEYS; i++)
        CHECK_EQ(ctx.seen[i], 1);

    /* Remove a third of the keys: foreach sees exactly the others. */
    for (unsigned i = 0; i < FE_KEYS; i += 3) {
        int64_t v;
        snprintf(key, sizeof key, "f%u", i);
        CHECK_EQ(tally_map_remove(m, key, &v), 0);
        CHECK_EQ(v, fe_value_after(i));
    }
    memset(&ctx, 0, sizeof ctx);
    ctx.expect = fe_value_after;
    CHECK_EQ(tally_map_foreach(m, fe_fn, &ctx), 0);
    CHECK_EQ(ctx.visits, FE_KEYS - (FE_KEYS + 2) / 3);
    CHECK_EQ(tally_map_size(m), FE_KEYS - (FE_KEYS + 2) / 3);
    for (unsigned i = 0; i < FE_KEYS; i++)
        CHECK_EQ(ctx.seen[i], i % 3 != 0);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 7. A callback's non-zero result stops the visit                     */
/* ------------------------------------------------------------------ */

static void test_visit_stop(void)
{
    enum { N = 100 };
    tally_map *m;
    struct collect c;
    char key[16];
    int64_t total = 0, left = 0;
    size_t nonzero = 0;

    CHECK_EQ(tally_map_new(&m), 0);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "s%d", i);
        CHECK_EQ(tally_map_add(m, key, i + 1), 0);
        total += i + 1;
    }

    collect_init(&c, N);
    c.stop_at = 3;
    c.stop_rc = 7;
    CHECK_EQ(tally_map_foreach(m, collect_fn, &c), 7);
    CHECK_EQ(c.n, 3);
    c.n = 0;
    c.stop_at = 1;
    c.stop_rc = -12345;
    CHECK_EQ(tally_map_foreach(m, collect_fn, &c), -12345);
    CHECK_EQ(c.n, 1);

    /* A stopped drain took exactly the one amount it passed on: that key
     * is at 0, every other key keeps its value. */
    c.n = 0;
    c.stop_at = 1;
    c.stop_rc = 1234;
    CHECK_EQ(tally_map_drain(m, collect_fn, &c), 1234);
    CHECK_EQ(c.n, 1);
    CHECK_GT(c.items[0].value, 0);
    CHECK_EQ(get_n(m, c.items[0].key, c.items[0].len), 0);
    struct collect all;
    collect_init(&all, N);
    CHECK_EQ(tally_map_foreach(m, collect_fn, &all), 0);
    CHECK_EQ(all.n, N);
    for (size_t i = 0; i < all.n; i++) {
        left += all.items[i].value;
        nonzero += all.items[i].value != 0;
    }
    CHECK_EQ(nonzero, N - 1);
    CHECK_EQ(left + c.items[0].value, total);
    CHECK_EQ(tally_map_size(m), N);

    /* Stopping at the last key is still a stop. */
    c.n = 0;
    c.stop_at = N;
    c.stop_rc = 5;
    CHECK_EQ(tally_map_foreach(m, collect_fn, &c), 5);
    CHECK_EQ(c.n, N);
    free(c.items);
    free(all.items);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 8. Calls from inside a callback                                     */
/* ------------------------------------------------------------------ */

struct reenter {
    tally_map *m, *other;
    size_t calls;
    int64_t seen;         /* the values the visits were given */
    int64_t removed;      /* what removes inside callbacks returned */
    int64_t other_seen;   /* what drains of other inside callbacks took */
};

static int sum_fn(void *p, const void *key, size_t len, int64_t value)
{
    (void)key;
    (void)len;
    *(int64_t *)p += value;
    return 0;
}

/* Inside a visit, only tally_map_sync would wait for the visit itself;
 * removes, drains, adds and reads work, on this map and others. */
static int reenter_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct reenter *r = p;
    int64_t v = 999;

    r->calls++;
    r->seen += value;
    CHECK_EQ(tally_map_sync(r->m), -EDEADLK);
    CHECK_EQ(tally_map_sync(r->other), -EDEADLK);
    /* Removing the key being visited: a foreach visit was given its value
     * (one thread), a drain visit what it took out, leaving 0. */
    CHECK_EQ(tally_map_remove_n(r->m, key, len, &v), 0);
    r->removed += v;
    CHECK_EQ(tally_map_remove_n(r->m, key, len, &v), -ENOENT);
    CHECK_EQ(tally_map_drain(r->other, sum_fn, &r->other_seen), 0);
    CHECK_EQ(tally_map_add(r->other, "o", 1), 0);
    CHECK_EQ(tally_map_get(r->other, "o", &v), 0);
    CHECK_EQ(v, 1);
    return 0;
}

static void test_reentry(void)
{
    struct reenter r = {0};
    int64_t v;

    CHECK_EQ(tally_map_new(&r.m), 0);
    CHECK_EQ(tally_map_new(&r.other), 0);
    CHECK_EQ(tally_map_add(r.m, "a", 1), 0);
    CHECK_EQ(tally_map_add(r.m, "b", 2), 0);
    CHECK_EQ(tally_map_add(r.other, "o", 3), 0);

    /* Both keys were present at the start: each visited once, and removed
     * by its own visit with the value the visit was given. */
    CHECK_EQ(tally_map_foreach(r.m, reenter_fn, &r), 0);
    CHECK_EQ(r.calls, 2);
    CHECK_EQ(r.seen, 3);
    CHECK_EQ(r.removed, 3);
    CHECK_EQ(tally_map_size(r.m), 0);
    /* The first inner drain took 3, the second the 1 the first visit
     * added; 1 is left. */
    CHECK_EQ(r.other_seen, 4);
    CHECK_EQ(tally_map_value(r.other, "o"), 1);

    /* From a drain callback: the drain took each key's value before the
     * callback removed the key, so the removes found 0. */
    CHECK_EQ(tally_map_add(r.m, "a", 5), 0);
    CHECK_EQ(tally_map_add(r.m, "b", 6), 0);
    r = (struct reenter){.m = r.m, .other = r.other};
    CHECK_EQ(tally_map_drain(r.m, reenter_fn, &r), 0);
    CHECK_EQ(r.calls, 2);
    CHECK_EQ(r.seen, 11);
    CHECK_EQ(r.removed, 0);
    CHECK_EQ(tally_map_size(r.m), 0);

    /* Outside a callback everything works again. */
    CHECK_EQ(tally_map_sync(r.m), 0);
    CHECK_EQ(tally_map_sync(r.other), 0);
    CHECK_EQ(tally_map_add(r.m, "a", 1), 0);
    CHECK_EQ(tally_map_remove(r.m, "a", &v), 0);
    CHECK_EQ(v, 1);
    tally_map_free(r.m);
    tally_map_free(r.other);
}

/* ------------------------------------------------------------------ */
/* 9. Handles                                                          */
/* ------------------------------------------------------------------ */

/* Many handles, several per shard: removes mark exactly the handles of
 * the removed key (each shard keeps its handles on one list), and releases
 * in any order leave the list intact. */
static void test_many_handles(void)
{
    enum { KEYS = 256 };
    tally_map *m;
    static tally_handle *h[KEYS][2];
    char key[16];
    int64_t v;

    CHECK_EQ(tally_map_new(&m), 0);
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        CHECK_EQ(tally_map_handle(m, key, &h[i][0]), 0);
        CHECK_EQ(tally_map_handle(m, key, &h[i][1]), 0);
        tally_handle_add(h[i][0], i);
    }
    /* Release one handle of every third key, from the middle out. */
    for (int i = 0; i < KEYS; i += 3) {
        tally_handle_release(h[i][1]);
        h[i][1] = NULL;
    }
    /* Remove the even keys: each returns exactly its own value. */
    for (int i = 0; i < KEYS; i += 2) {
        snprintf(key, sizeof(key), "key-%d", i);
        CHECK_EQ(tally_map_remove(m, key, &v), 0);
        CHECK_EQ(v, i);
    }
    CHECK_EQ(tally_map_size(m), KEYS / 2);
    /* One more add through every handle left: removed keys come back with
     * only these adds, kept keys have both. */
    for (int i = 0; i < KEYS; i++)
        for (int j = 0; j < 2; j++)
            if (h[i][j] != NULL)
                tally_handle_add(h[i][j], 1000);
    for (int i = 0; i < KEYS; i++) {
        int64_t want = (h[i][1] != NULL ? 2000 : 1000) + (i % 2 ? i : 0);
        snprintf(key, sizeof(key), "key-%d", i);
        CHECK_EQ(get_n(m, key, strlen(key)), want);
    }
    CHECK_EQ(tally_map_size(m), KEYS);
    /* Release the rest, last first; the values stay. */
    for (int i = KEYS - 1; i >= 0; i--)
        for (int j = 1; j >= 0; j--)
            tally_handle_release(h[i][j]);
    for (int i = 0; i < KEYS; i++) {
        int64_t want = (i % 3 ? 2000 : 1000) + (i % 2 ? i : 0);
        snprintf(key, sizeof(key), "key-%d", i);
        CHECK_EQ(get_n(m, key, strlen(key)), want);
    }
    tally_map_free(m);
}

/* The thread's remembered key against C strings passed to the library's
 * copy of tally_map_add (called directly, not through tally.h's inline
 * form): prefixes, extensions and a remembered key with an embedded NUL
 * must all miss it; lengths around the inline-compare limit. */
static void test_cstr_hit_path(void)
{
    tally_map *m;
    char buf[32];

    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_map_add_n(m, "ab\0cd", 5, 1), 0); /* remembered now */
    strcpy(buf, "ab");
    CHECK_EQ((tally_map_add)(m, buf, 10), 0);       /* not "ab\0cd" */
    CHECK_EQ(get_n(m, "ab\0cd", 5), 1);
    CHECK_EQ(get_n(m, "ab", 2), 10);
    CHECK_EQ((tally_map_add)(m, buf, 10), 0);       /* hit: "ab" */
    CHECK_EQ(get_n(m, "ab", 2), 20);
    strcpy(buf, "a");
    CHECK_EQ((tally_map_add)(m, buf, 100), 0);      /* a prefix */
    strcpy(buf, "abc");
    CHECK_EQ((tally_map_add)(m, buf, 1000), 0);     /* an extension */
    CHECK_EQ((tally_map_add)(m, buf, 1000), 0);
    strcpy(buf, "");
    CHECK_EQ((tally_map_add)(m, buf, 5), 0);        /* the empty key */
    CHECK_EQ((tally_map_add)(m, buf, 5), 0);
    CHECK_EQ(get_n(m, "a", 1), 100);
    CHECK_EQ(get_n(m, "ab", 2), 20);
    CHECK_EQ(get_n(m, "abc", 3), 2000);
    CHECK_EQ(get_n(m, "", 0), 10);
    CHECK_EQ(get_n(m, "ab\0cd", 5), 1);
    CHECK_EQ(tally_map_size(m), 5);
    /* 16 bytes (the longest remembered inline) and 17 (compared by the
     * miss path). */
    for (int len = 16; len <= 17; len++) {
        memset(buf, 'k', (size_t)len);
        buf[len] = '\0';
        for (int i = 0; i < 3; i++)
            CHECK_EQ((tally_map_add)(m, buf, 1), 0);
        CHECK_EQ(get_n(m, buf, (size_t)len), 3);
    }
    CHECK_EQ((tally_map_add)(m, NULL, 1), -EINVAL);
    CHECK_EQ((tally_map_add)(NULL, "ab", 1), -EINVAL);
    tally_map_free(m);
}

static void test_handles(void)
{
    tally_map *m;
    tally_handle *h1, *h2, *h3;
    int64_t v;

    CHECK_EQ(tally_map_new(&m), 0);

    /* A handle creates its key at 0. */
    CHECK_EQ(tally_map_handle(m, "h", &h1), 0);
    CHECK(h1 != NULL);
    CHECK_EQ(tally_map_size(m), 1);
    CHECK_EQ(get_n(m, "h", 1), 0);
    tally_handle_add(h1, 5);
    tally_handle_inc(h1);
    CHECK_EQ(tally_map_value(m, "h"), 6);
    CHECK_EQ(tally_map_add(m, "h", 4), 0);
    CHECK_EQ(tally_map_value(m, "h"), 10);

    /* A second handle to the same key does not reset it. */
    CHECK_EQ(tally_map_handle_n(m, "h", 1, &h2), 0);
    CHECK(h2 != h1);
    CHECK_EQ(tally_map_size(m), 1);
    CHECK_EQ(tally_map_value(m, "h"), 10);
    tally_handle_add(h2, -3);
    tally_handle_add(h1, 2);
    CHECK_EQ(tally_map_value(m, "h"), 9);
    tally_handle_release(h2);
    CHECK_EQ(tally_map_value(m, "h"), 9);
    CHECK_EQ(tally_map_size(m), 1);

    /* Remove while a handle is held: returns the value; the key is gone. */
    CHECK_EQ(tally_map_remove(m, "h", &v), 0);
    CHECK_EQ(v, 9);
    CHECK_EQ(tally_map_size(m), 0);
    check_absent_n(m, "h", 1);
    /* An add through the handle creates the key again, at that add. */
    tally_handle_add(h1, 11);
    CHECK_EQ(tally_map_size(m), 1);
    CHECK_EQ(get_n(m, "h", 1), 11);
    tally_handle_inc(h1);
    CHECK_EQ(get_n(m, "h", 1), 12);
    CHECK_EQ(tally_map_add(m, "h", 1), 0);
    CHECK_EQ(get_n(m, "h", 1), 13);
    /* Remove that life too, then release: nothing comes back. */
    CHECK_EQ(tally_map_remove(m, "h", &v), 0);
    CHECK_EQ(v, 13);
    tally_handle_release(h1);
    CHECK_EQ(tally_map_size(m), 0);
    check_absent_n(m, "h", 1);

    /* Release after remove, with no adds between: the key stays absent. */
    CHECK_EQ(tally_map_handle(m, "k", &h3), 0);
    tally_handle_add(h3, 4);
    CHECK_EQ(tally_map_remove(m, "k", &v), 0);
    CHECK_EQ(v, 4);
    tally_handle_release(h3);
    check_absent_n(m, "k", 1);
    CHECK_EQ(tally_map_size(m), 0);

    /* A handle to an existing key; the key is released with a new life
     * present: the new life keeps its own value. */
    CHECK_EQ(tally_map_add(m, "e", 20), 0);
    CHECK_EQ(tally_map_handle(m, "e", &h1), 0);
    CHECK_EQ(tally_map_value(m, "e"), 20);
    CHECK_EQ(tally_map_remove(m, "e", &v), 0);
    CHECK_EQ(v, 20);
    CHECK_EQ(tally_map_add(m, "e", 3), 0); /* new life, by key */
    tally_handle_add(h1, 5);               /* goes to the new life */
    CHECK_EQ(tally_map_value(m, "e"), 8);
    tally_handle_release(h1);
    CHECK_EQ(tally_map_value(m, "e"), 8);
    CHECK_EQ(tally_map_size(m), 1);

    /* Two handles to a removed key both reach the same next life. */
    CHECK_EQ(tally_map_handle(m, "z", &h1), 0);
    CHECK_EQ(tally_map_handle(m, "z", &h2), 0);
    tally_handle_add(h2, 100);
    CHECK_EQ(tally_map_remove(m, "z", &v), 0);
    CHECK_EQ(v, 100);
    tally_handle_add(h1, 1);
    tally_handle_add(h2, 2);
    CHECK_EQ(tally_map_value(m, "z"), 3);
    CHECK_EQ(tally_map_size(m), 2);
    tally_handle_release(h1);
    CHECK_EQ(tally_map_value(m, "z"), 3);
    tally_handle_add(h2, 4);
    tally_handle_release(h2);
    CHECK_EQ(tally_map_value(m, "z"), 7);

    /* Handles on byte keys and the empty key. */
    CHECK_EQ(tally_map_handle_n(m, "x\0y", 3, &h1), 0);
    CHECK_EQ(tally_map_handle_n(m, "", 0, &h2), 0);
    CHECK_EQ(tally_map_handle(m, "x", &h3), 0);
    tally_handle_add(h1, 1);
    tally_handle_add(h2, 2);
    tally_handle_add(h3, 3);
    CHECK_EQ(get_n(m, "x\0y", 3), 1);
    CHECK_EQ(get_n(m, "", 0), 2);
    CHECK_EQ(get_n(m, "x", 1), 3);
    CHECK_EQ(tally_map_size(m), 5);
    tally_handle_release(h1);
    tally_handle_release(h2);
    tally_handle_release(h3);

    /* Wrap through a handle. */
    CHECK_EQ(tally_map_handle(m, "w", &h1), 0);
    tally_handle_add(h1, INT64_MAX);
    tally_handle_inc(h1);
    CHECK_EQ(tally_map_value(m, "w"), INT64_MIN);
    tally_handle_release(h1);
    CHECK_EQ(tally_map_size(m), 6);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 10. Many keys                                                       */
/* ------------------------------------------------------------------ */

enum { MANY_KEYS = 200000 };

static int64_t many_value(unsigned i)
{
    return (int64_t)(i % 1000) - 500 + (int64_t)i * 1000;
}

struct many_ctx {
    unsigned char *seen;
    size_t visits;
};

static int many_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct many_ctx *ctx = p;
    char buf[16];
    unsigned i;

    CHECK_LT(len, sizeof buf);
    memcpy(buf, key, len);
    buf[len] = '\0';
    CHECK_EQ(sscanf(buf, "m%u", &i), 1);
    CHECK_LT(i, MANY_KEYS);
    CHECK_EQ(i % 2, 1); /* the even keys were removed */
    CHECK_EQ(ctx->seen[i], 0);
    ctx->seen[i] = 1;
    ctx->visits++;
    CHECK_EQ(value, many_value(i));
    return 0;
}

static void test_many_keys(void)
{
    tally_map *m;
    char key[16];
    int64_t v;
    struct many_ctx ctx;

    CHECK_EQ(tally_map_new(&m), 0);
    for (unsigned i = 0; i < MANY_KEYS; i++) {
        snprintf(key, sizeof key, "m%u", i);
        CHECK_EQ(tally_map_add(m, key, many_value(i)), 0);
    }
    CHECK_EQ(tally_map_size(m), MANY_KEYS);
    for (unsigned i = 0; i < MANY_KEYS; i++) {
        snprintf(key, sizeof key, "m%u", i);
        CHECK_EQ(tally_map_value(m, key), many_value(i));
    }
    for (unsigned i = 0; i < MANY_KEYS; i += 2) {
        snprintf(key, sizeof key, "m%u", i);
        CHECK_EQ(tally_map_remove(m, key, &v), 0);
        CHECK_EQ(v, many_value(i));
    }
    CHECK_EQ(tally_map_size(m), MANY_KEYS / 2);
    for (unsigned i = 0; i < MANY_KEYS; i++) {
        snprintf(key, sizeof key, "m%u", i);
        if (i % 2)
            CHECK_EQ(get_n(m, key, strlen(key)), many_value(i));
        else
            check_absent_n(m, key, strlen(key));
    }
    ctx.seen = calloc(MANY_KEYS, 1);
    CHECK(ctx.seen != NULL);
    ctx.visits = 0;
    CHECK_EQ(tally_map_foreach(m, many_fn, &ctx), 0);
    CHECK_EQ(ctx.visits, MANY_KEYS / 2);
    free(ctx.seen);

    /* The removed keys come back at 0 (their ids went to other lives). */
    for (unsigned i = 0; i < MANY_KEYS; i += 2) {
        snprintf(key, sizeof key, "m%u", i);
        CHECK_EQ(tally_map_inc(m, key), 0);
    }
    CHECK_EQ(tally_map_size(m), MANY_KEYS);
    for (unsigned i = 0; i < MANY_KEYS; i++) {
        snprintf(key, sizeof key, "m%u", i);
        CHECK_EQ(tally_map_value(m, key), i % 2 ? many_value(i) : 1);
    }
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 11. Threads that add and exit                                       */
/* ------------------------------------------------------------------ */

static void *add_then_exit(void *p)
{
    tally_map *m = p;
    tally_handle *h;

    CHECK_EQ(tally_map_add(m, "t", 5), 0);
    CHECK_EQ(tally_map_inc(m, "t"), 0);
    CHECK_EQ(tally_map_handle(m, "th", &h), 0);
    tally_handle_add(h, 3);
    tally_handle_release(h);
    return NULL; /* exit folds this thread's cells */
}

/* ------------------------------------------------------------------ */
/* Hot keys: when a cold key gets per-thread cells                     */
/* ------------------------------------------------------------------ */

static bool is_hot(tally_map *m, const char *key)
{
    size_t len = strlen(key);
    uint64_t h = tally__hash(&m->seed, key, len), meta = 0;
    struct table *tb = tally_atomic_load(&shard_of(m, h)->table, relaxed);
    CHECK(probe(tb, h, key, len, &meta) != NULL);
    return (meta & M_HOT) != 0;
}

/* Two threads that take turns adding to the same keys: every add finds
 * the other thread's tag as the key's last adder, so each key turns hot
 * after SWITCHES_HOT (16) of them, until the map's cap on hot keys. */
struct pingpong {
    tally_map *m;
    _Atomic(int) turn;
    unsigned nkeys, rounds;
};

struct pingpong_arg {
    struct pingpong *pp;
    int who;
};

static void *pingpong_fn(void *p)
{
    struct pingpong_arg *a = p;
    struct pingpong *pp = a->pp;
    char key[24];
    for (unsigned r = 0; r < pp->rounds; r++) {
        for (unsigned k = 0; k < pp->nkeys; k++) {
            while (atomic_load(&pp->turn) != a->who)
                sched_yield();
            snprintf(key, sizeof(key), "pp%u", k);
            CHECK_EQ(tally_map_inc(pp->m, key), 0);
            atomic_store(&pp->turn, 1 - a->who);
        }
    }
    return NULL;
}

/* Each of nkeys keys gets 2 x rounds adds, the threads taking turns. */
static void pingpong(tally_map *m, unsigned nkeys, unsigned rounds)
{
    struct pingpong pp = {.m = m, .nkeys = nkeys, .rounds = rounds};
    struct pingpong_arg a = {&pp, 0}, b = {&pp, 1};
    pthread_t ta, tb;
    atomic_init(&pp.turn, 0);
    CHECK_EQ(pthread_create(&ta, NULL, pingpong_fn, &a), 0);
    CHECK_EQ(pthread_create(&tb, NULL, pingpong_fn, &b), 0);
    CHECK_EQ(pthread_join(ta, NULL), 0);
    CHECK_EQ(pthread_join(tb, NULL), 0);
}

static void test_hot_keys(void)
{
    tally_map *m;
    char key[24];

    CHECK_EQ(tally_map_new(&m), 0);
    /* One thread, many adds in a row: hot after STREAK_HOT; exact. */
    for (int i = 0; i < 70; i++)
        CHECK_EQ(tally_map_inc(m, "streak"), 0);
    CHECK(is_hot(m, "streak"));
    CHECK_EQ(tally_map_value(m, "streak"), 70);
    /* One thread going round many keys: none turns hot. */
    for (int r = 0; r < 20; r++)
        for (int k = 0; k < 100; k++) {
            snprintf(key, sizeof(key), "solo%d", k);
            CHECK_EQ(tally_map_inc(m, key), 0);
        }
    for (int k = 0; k < 100; k++) {
        snprintf(key, sizeof(key), "solo%d", k);
        CHECK(!is_hot(m, key));
        CHECK_EQ(tally_map_value(m, key), 20);
    }
    /* Two threads taking turns on 8 keys: 7 turns each (14 switches)
     * leave them cold, 9 more make every one hot; values exact. */
    pingpong(m, 8, 7);
    for (unsigned k = 0; k < 8; k++) {
        snprintf(key, sizeof(key), "pp%u", k);
        CHECK(!is_hot(m, key));
    }
    pingpong(m, 8, 9);
    for (unsigned k = 0; k < 8; k++) {
        snprintf(key, sizeof(key), "pp%u", k);
        CHECK(is_hot(m, key));
        CHECK_EQ(tally_map_value(m, key), 2 * (7 + 9));
    }
    tally_map_free(m);

    /* The cap: shared keys turn hot only while the map has fewer than
     * HOT_KEYS_MIN + keys / HOT_KEYS_SHARE hot keys, so keys that many
     * threads touch rarely cannot give every thread cells for all of
     * them. With nkeys keys: exactly the cap turn hot. */
    unsigned nkeys = HOT_KEYS_MIN + 200;
    CHECK_EQ(tally_map_new(&m), 0);
    for (unsigned k = 0; k < nkeys; k++) {
        snprintf(key, sizeof(key), "pp%u", k);
        CHECK_EQ(tally_map_add(m, key, 0), 0);
    }
    pingpong(m, nkeys, 9);
    size_t hot = 0, cap = HOT_KEYS_MIN + nkeys / HOT_KEYS_SHARE;
    for (unsigned k = 0; k < nkeys; k++) {
        snprintf(key, sizeof(key), "pp%u", k);
        hot += is_hot(m, key);
        CHECK_EQ(tally_map_value(m, key), 18);
    }
    CHECK_EQ(hot, cap);
    CHECK_EQ(tally_atomic_load(&m->hot_keys, relaxed), cap);
    /* Removing hot keys makes room again. */
    int64_t v;
    for (unsigned k = 0; k < nkeys; k++) {
        snprintf(key, sizeof(key), "pp%u", k);
        CHECK_EQ(tally_map_remove(m, key, &v), 0);
        CHECK_EQ(v, 18);
    }
    CHECK_EQ(tally_atomic_load(&m->hot_keys, relaxed), 0);
    tally_map_free(m);
}

static void test_exited_threads(void)
{
    tally_map *m;
    int64_t v;

    CHECK_EQ(tally_map_new(&m), 0);
    check_threads_run(4, add_then_exit, m, 0);
    CHECK_EQ(tally_map_value(m, "t"), 24);
    CHECK_EQ(tally_map_value(m, "th"), 12);
    CHECK_EQ(tally_map_add(m, "t", 1), 0);
    CHECK_EQ(tally_map_remove(m, "t", &v), 0);
    CHECK_EQ(v, 25);
    check_threads_run(2, add_then_exit, m, 0);
    CHECK_EQ(tally_map_value(m, "t"), 12); /* a new life */
    CHECK_EQ(tally_map_value(m, "th"), 18);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 12. Out of memory                                                   */
/* ------------------------------------------------------------------ */

static void test_out_of_memory(void)
{
    tally_map *m = (tally_map *)&m, *keep = m;
    tally_handle *h;
    int64_t v;
    int created = 0;

    /* new: -ENOMEM, *out untouched. */
    tally__alloc_fail_after(0);
    CHECK_EQ(tally_map_new(&m), -ENOMEM);
    tally__alloc_fail_after(-1);
    CHECK(m == keep);

    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_map_add(m, "old", 1), 0);
    CHECK_EQ(tally_map_handle(m, "held", &h), 0);

    /* Creating a key with the Nth allocation failing: -ENOMEM and no
     * change, until enough allocations succeed. Keys longer than 16 bytes
     * need an allocation of their own (shorter ones live in the table). */
    static const char lnew[] = "new-key-longer-than-sixteen-bytes";
    static const char lhnew[] = "hnew-key-longer-than-sixteen-bytes";
    static const char held[] = "held-key-longer-than-sixteen-bytes";
    for (int64_t n = 0; n < 16 && !created; n++) {
        tally__alloc_fail_after(n);
        int err = tally_map_add(m, lnew, 5);
        tally__alloc_fail_after(-1);
        if (err == 0) {
            created = 1;
            CHECK_GT(n, 0); /* the first allocation was needed */
            CHECK_EQ(tally_map_value(m, lnew), 5);
            CHECK_EQ(tally_map_size(m), 3);
            break;
        }
        CHECK_EQ(err, -ENOMEM);
        CHECK_EQ(tally_map_size(m), 2);
        check_absent_n(m, lnew, strlen(lnew));

        tally__alloc_fail_after(n);
        tally_handle *h2 = (tally_handle *)&h2;
        err = tally_map_handle(m, lhnew, &h2);
        tally__alloc_fail_after(-1);
        if (err == 0) {
            tally_handle_release(h2);
            CHECK_EQ(tally_map_remove(m, lhnew, &v), 0);
            CHECK_EQ(v, 0);
        } else {
            CHECK_EQ(err, -ENOMEM);
            CHECK(h2 == (tally_handle *)&h2);
            check_absent_n(m, lhnew, strlen(lhnew));
        }
        CHECK_EQ(tally_map_size(m), 2);
    }
    CHECK(created);

    /* Adds to existing keys never fail, by key or by handle. */
    tally__alloc_fail_after(0);
    CHECK_EQ(tally_map_add(m, "old", 2), 0);
    tally_handle_add(h, 7);
    tally__alloc_fail_after(-1);
    CHECK_EQ(tally_map_value(m, "old"), 3);
    CHECK_EQ(tally_map_value(m, "held"), 7);

    /* A handle whose key was removed, with no memory to create the key
     * again: the add is kept in the handle's id and reaches the key's next
     * life once the remove has settled and the handle is released. */
    tally_handle *hl;
    CHECK_EQ(tally_map_handle(m, held, &hl), 0);
    tally_handle_add(hl, 7);
    CHECK_EQ(tally_map_remove(m, held, &v), 0);
    CHECK_EQ(v, 7);
    tally__alloc_fail_after(0);
    tally_handle_add(hl, 9);
    tally__alloc_fail_after(-1);
    check_absent_n(m, held, strlen(held));
    tally_handle_release(hl);
    CHECK_EQ(tally_map_sync(m), 0);
    CHECK_EQ(get_n(m, held, strlen(held)), 9);
    CHECK_EQ(tally_map_size(m), 4);

    /* Same, but the key was created again meanwhile: the kept add joins
     * the new life. */
    CHECK_EQ(tally_map_handle(m, held, &hl), 0);
    CHECK_EQ(tally_map_remove(m, held, &v), 0);
    CHECK_EQ(v, 9);
    tally__alloc_fail_after(0);
    tally_handle_add(hl, 4);
    tally__alloc_fail_after(-1);
    CHECK_EQ(tally_map_add(m, held, 30), 0);
    tally_handle_add(hl, 1); /* memory is back: straight to the new life */
    CHECK_EQ(get_n(m, held, strlen(held)), 31);
    tally_handle_release(hl);
    CHECK_EQ(tally_map_sync(m), 0);
    CHECK_EQ(get_n(m, held, strlen(held)), 35);
    CHECK_EQ(tally_map_size(m), 4);

    /* Settling a late add into a key that must be created again, with no
     * memory: it stays pending (sync says -ENOMEM) and lands later. */
    tally_handle_release(h);
    CHECK_EQ(tally_map_handle(m, held, &hl), 0);
    CHECK_EQ(tally_map_remove(m, held, &v), 0);
    CHECK_EQ(v, 35);
    tally__alloc_fail_after(0);
    tally_handle_add(hl, 11);
    tally_handle_release(hl);
    CHECK_EQ(tally_map_sync(m), -ENOMEM);
    tally__alloc_fail_after(-1);
    check_absent_n(m, held, strlen(held));
    CHECK_EQ(tally_map_sync(m), 0);
    CHECK_EQ(get_n(m, held, strlen(held)), 11);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 13. Free with keys present                                          */
/* ------------------------------------------------------------------ */

static void test_free_with_keys(void)
{
    tally_map *m;
    tally_handle *h;
    char key[16];

    CHECK_EQ(tally_map_new(&m), 0);
    tally_map_free(m); /* empty */

    CHECK_EQ(tally_map_new(&m), 0);
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "free%d", i);
        CHECK_EQ(tally_map_add(m, key, i), 0);
    }
    /* Tombstones, retired tables, a removed key with a released handle. */
    for (int i = 0; i < 3000; i += 5) {
        snprintf(key, sizeof key, "free%d", i);
        CHECK_EQ(tally_map_remove(m, key, NULL), 0);
    }
    CHECK_EQ(tally_map_handle(m, "free1", &h), 0);
    CHECK_EQ(tally_map_remove(m, "free1", NULL), 0);
    tally_handle_add(h, 1);
    tally_handle_release(h);
    CHECK_EQ(count_keys(m), 3000 - 600);
    tally_map_free(m);
}

/* ------------------------------------------------------------------ */
/* 14. Visits while the tables grow under them                         */
/* ------------------------------------------------------------------ */

/* Old keys: GV_OLD of them, half short (inline in the slot), half long
 * (out of line); key i holds gv_value(i) until phase 2. */
enum { GV_OLD = 1500, GV_NEW = 60000, GV_ROUNDS_MIN = 20 };

static int gv_key(char *buf, size_t size, unsigned i)
{
    return i % 2 ? snprintf(buf, size, "old-%u", i)
                 : snprintf(buf, size, "old-key-long-enough-%u", i);
}

static int64_t gv_value(unsigned i)
{
    return 7 * (int64_t)i + 1;
}

struct gv_ctx {
    tally_map *m;
    atomic_bool done;    /* the grower finished */
    bool add_old;        /* phase 2: the grower adds 1 to an old key per
                            new key */
    int64_t added[GV_OLD];     /* phase 2: what the grower added */
    int64_t drained[GV_OLD];   /* phase 2: what drains took */
    unsigned char seen[GV_OLD];
    unsigned new_seen;
};

/* "old-..." keys: their index; -1 for the grower's "new-..." keys. */
static long gv_index(const void *key, size_t len)
{
    const char *k = key;
    if (len > 4 && memcmp(k, "old-", 4) == 0) {
        /* The digits at the end (key bytes are not NUL-terminated). */
        const char *d = k + len;
        long i = 0, scale = 1;
        while (d > k && d[-1] >= '0' && d[-1] <= '9') {
            i += (d[-1] - '0') * scale;
            scale *= 10;
            d--;
        }
        CHECK(d < k + len);
        return i;
    }
    CHECK(len > 4 && memcmp(k, "new-", 4) == 0);
    return -1;
}

/* A slow callback: a visit then spends long enough in each shard that
 * the grower's rebuilds land inside the shards being visited. */
static void gv_linger(void)
{
    uint64_t until = check_now_ns() + 2000;
    while (check_now_ns() < until)
        ;
}

static int gv_read_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct gv_ctx *c = p;
    long i = gv_index(key, len);
    if (i < 0) {
        CHECK_EQ(value, 1); /* each new key gets one add */
        c->new_seen++;
        return 0;
    }
    CHECK(i < GV_OLD);
    gv_linger();
    CHECK_EQ(value, gv_value((unsigned)i));
    c->seen[i]++;
    return 0;
}

static int gv_drain_fn(void *p, const void *key, size_t len, int64_t value)
{
    struct gv_ctx *c = p;
    long i = gv_index(key, len);
    if (i >= 0) {
        CHECK(i < GV_OLD);
        gv_linger();
        c->drained[i] += value;
        c->seen[i]++;
    }
    return 0;
}

static void *gv_grow(void *p)
{
    struct gv_ctx *c = p;
    char key[64];
    for (unsigned j = 0; j < GV_NEW; j++) {
        snprintf(key, sizeof key, j % 2 ? "new-%u" : "new-and-long-%u", j);
        CHECK_EQ(tally_map_inc(c->m, key), 0);
        if (c->add_old) {
            unsigned i = (j * 7919u) % GV_OLD;
            gv_key(key, sizeof key, i);
            CHECK_EQ(tally_map_inc(c->m, key), 0);
            c->added[i]++;
        }
    }
    atomic_store(&c->done, true);
    return NULL;
}

/* Runs the grower on a fresh map holding the old keys and visits it
 * (drain when drain, else foreach) until the grower is done and at least
 * GV_ROUNDS_MIN visits ran; checks each visit saw each old key once (a
 * drain: at most once, as it skips keys with nothing to take). Every
 * shard's table must have been replaced meanwhile. */
static void gv_run(struct gv_ctx *c, bool drain)
{
    struct table *first[NSHARDS];
    pthread_t t;
    char key[64];
    unsigned rounds = 0;

    CHECK_EQ(tally_map_new(&c->m), 0);
    for (unsigned i = 0; i < GV_OLD; i++) {
        gv_key(key, sizeof key, i);
        CHECK_EQ(tally_map_add(c->m, key, gv_value(i)), 0);
    }
    for (unsigned i = 0; i < NSHARDS; i++)
        first[i] = atomic_load(&c->m->shard[i].table);
    atomic_store(&c->done, false);
    CHECK_EQ(pthread_create(&t, NULL, gv_grow, c), 0);
    while (!atomic_load(&c->done) || rounds < GV_ROUNDS_MIN) {
        memset(c->seen, 0, sizeof c->seen);
        c->new_seen = 0;
        if (drain) {
            CHECK_EQ(tally_map_drain(c->m, gv_drain_fn, c), 0);
            for (unsigned i = 0; i < GV_OLD; i++)
                CHECK(c->seen[i] <= 1);
        } else {
            CHECK_EQ(tally_map_foreach(c->m, gv_read_fn, c), 0);
            for (unsigned i = 0; i < GV_OLD; i++)
                CHECK_EQ(c->seen[i], 1);
        }
        rounds++;
    }
    CHECK_EQ(pthread_join(t, NULL), 0);
    for (unsigned i = 0; i < NSHARDS; i++)
        CHECK(atomic_load(&c->m->shard[i].table) != first[i]);
}

static void test_visit_while_growing(void)
{
    struct gv_ctx *c = calloc(1, sizeof *c);
    CHECK(c != NULL);

    /* Phase 1: foreach; nobody adds to the old keys. */
    gv_run(c, false);
    memset(c->seen, 0, sizeof c->seen);
    c->new_seen = 0;
    CHECK_EQ(tally_map_foreach(c->m, gv_read_fn, c), 0);
    CHECK_EQ(c->new_seen, GV_NEW);
    tally_map_free(c->m);

    /* Phase 2: drain while the grower also adds to the old keys. */
    c->add_old = true;
    for (unsigned i = 0; i < GV_OLD; i++)
        c->added[i] = gv_value(i); /* the value each key starts with */
    gv_run(c, true);
    for (unsigned i = 0; i < GV_OLD; i++) {
        char key[64];
        gv_key(key, sizeof key, i);
        CHECK_EQ(c->drained[i] + tally_map_value(c->m, key), c->added[i]);
    }
    tally_map_free(c->m);
    free(c);
}

int main(void)
{
    test_bad_input();
    test_add_value_get();
    test_key_bytes();
    test_key_max();
    test_remove();
    test_drain();
    test_foreach();
    test_visit_stop();
    test_reentry();
    test_handles();
    test_cstr_hit_path();
    test_many_handles();
    test_many_keys();
    test_hot_keys();
    test_exited_threads();
    test_out_of_memory();
    test_free_with_keys();
    test_visit_while_growing();
    return 0;
}
