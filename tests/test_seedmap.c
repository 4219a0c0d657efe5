/*
 * test_seedmap.c - the seed's design (tools/seedmap.c), which the demo
 * and the benchmarks compare against, must itself count exactly.
 */
#include "seedmap.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

static void test_basic(void)
{
    seedmap *m;

    CHECK_EQ(seedmap_new(NULL), -EINVAL);
    CHECK_EQ(seedmap_new(&m), 0);
    CHECK_EQ(seedmap_size(m), 0);
    CHECK_EQ(seedmap_value(m, "somekey"), 0);

    CHECK_EQ(seedmap_inc(m, "somekey"), 0);
    CHECK_EQ(seedmap_inc(m, "somekey"), 0);
    CHECK_EQ(seedmap_value(m, "somekey"), 2);
    CHECK_EQ(seedmap_size(m), 1);

    /* Keys are bytes: a NUL inside makes a different key. */
    CHECK_EQ(seedmap_add_n(m, "a\0b", 3, -5), 0);
    CHECK_EQ(seedmap_add_n(m, "a\0c", 3, 7), 0);
    CHECK_EQ(seedmap_value_n(m, "a\0b", 3), -5);
    CHECK_EQ(seedmap_value_n(m, "a\0c", 3), 7);
    CHECK_EQ(seedmap_value(m, "a"), 0);
    CHECK_EQ(seedmap_add_n(m, "", 0, 1), 0);
    CHECK_EQ(seedmap_value(m, ""), 1);
    CHECK_EQ(seedmap_size(m), 4);

    /* Wraps in two's complement. */
    CHECK_EQ(seedmap_add_n(m, "w", 1, INT64_MAX), 0);
    CHECK_EQ(seedmap_inc(m, "w"), 0);
    CHECK_EQ(seedmap_value(m, "w"), INT64_MIN);

    CHECK_EQ(seedmap_inc(m, NULL), -EINVAL);
    CHECK_EQ(seedmap_inc(NULL, "k"), -EINVAL);
    CHECK_EQ(seedmap_value(NULL, "k"), 0);
    CHECK_EQ(seedmap_size(m), 5);
    seedmap_free(m);
    seedmap_free(NULL);
}

/* Many keys: the table grows and keeps every value. */
static void test_grow(void)
{
    enum { KEYS = 20000 };
    seedmap *m;
    char key[32];
    int i;

    CHECK_EQ(seedmap_new(&m), 0);
    for (i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        CHECK_EQ(seedmap_add_n(m, key, strlen(key), i), 0);
    }
    CHECK_EQ(seedmap_size(m), KEYS);
    for (i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        CHECK_EQ(seedmap_value(m, key), i);
    }
    seedmap_free(m);
}

enum { THREADS = 4, OPS = 20000, KEYS = 8 };

static void *inc_keys(void *m)
{
    char key[16];
    int i;

    for (i = 0; i < OPS; i++) {
        snprintf(key, sizeof key, "k%d", i % KEYS);
        CHECK_EQ(seedmap_inc(m, key), 0);
    }
    return NULL;
}

static void test_threads(void)
{
    seedmap *m;
    char key[16];
    int k;

    CHECK_EQ(seedmap_new(&m), 0);
    check_threads_run(THREADS, inc_keys, m, 0);
    CHECK_EQ(seedmap_size(m), KEYS);
    for (k = 0; k < KEYS; k++) {
        snprintf(key, sizeof key, "k%d", k);
        CHECK_EQ(seedmap_value(m, key), THREADS * OPS / KEYS);
    }
    seedmap_free(m);
}

int main(void)
{
    test_basic();
    test_grow();
    test_threads();
    return 0;
}
