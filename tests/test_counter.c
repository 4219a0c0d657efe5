/*
 * test_counter.c - unit tests of every tally_counter call and of
 * tally_strerror, single-threaded, exact values.
 */
#include "tally.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static tally_counter g_zero;                          /* zero-filled global */
static tally_counter g_init = TALLY_COUNTER_INIT(-7); /* static initialiser */

static void test_layout(void)
{
    tally_counter c = TALLY_COUNTER_INIT(0);

    /* A plain 8-byte struct that embeds anywhere, lock-free as documented. */
    CHECK_EQ(sizeof(tally_counter), 8);
    CHECK(atomic_is_lock_free(&c.value));
}

static void test_init(void)
{
    tally_counter a = TALLY_COUNTER_INIT(42);
    tally_counter b = TALLY_COUNTER_INIT(INT64_MIN);
    tally_counter *heap;

    CHECK_EQ(tally_counter_load(&a), 42);
    CHECK_EQ(tally_counter_load(&b), INT64_MIN);
    CHECK_EQ(tally_counter_load(&g_init), -7);
    CHECK_EQ(tally_counter_load(&g_zero), 0);
    CHECK_EQ(tally_counter_inc(&g_zero), 1);

    /* Zero-filled memory is a counter at 0. */
    heap = calloc(4, sizeof *heap);
    CHECK(heap != NULL);
    CHECK_EQ(tally_counter_load(&heap[3]), 0);
    CHECK_EQ(tally_counter_add(&heap[3], 5), 5);
    memset(heap, 0, 4 * sizeof *heap);
    CHECK_EQ(tally_counter_load(&heap[3]), 0);
    free(heap);
}

static void test_add_inc_dec(void)
{
    tally_counter c = TALLY_COUNTER_INIT(0);

    CHECK_EQ(tally_counter_add(&c, 5), 5);
    CHECK_EQ(tally_counter_add(&c, -12), -7);
    CHECK_EQ(tally_counter_add(&c, 0), -7);
    CHECK_EQ(tally_counter_load(&c), -7);
    CHECK_EQ(tally_counter_inc(&c), -6);
    CHECK_EQ(tally_counter_inc(&c), -5);
    CHECK_EQ(tally_counter_dec(&c), -6);
    CHECK_EQ(tally_counter_load(&c), -6);

    tally_counter_store(&c, 0);
    CHECK_EQ(tally_counter_dec(&c), -1);
    CHECK_EQ(tally_counter_inc(&c), 0);
    CHECK_EQ(tally_counter_add(&c, 1000000000000LL), 1000000000000LL);
    CHECK_EQ(tally_counter_load(&c), 1000000000000LL);
}

static void test_load_store(void)
{
    static const int64_t values[] = {0, 1, -1, 123456789, INT64_MAX,
                                     INT64_MIN};
    tally_counter c = TALLY_COUNTER_INIT(3);
    size_t i;

    for (i = 0; i < sizeof values / sizeof values[0]; i++) {
        tally_counter_store(&c, values[i]);
        CHECK_EQ(tally_counter_load(&c), values[i]);
    }
}

static void test_wrap(void)
{
    tally_counter c = TALLY_COUNTER_INIT(INT64_MAX);

    /* Two's complement, as documented: INT64_MAX + 1 == INT64_MIN. */
    CHECK_EQ(tally_counter_inc(&c), INT64_MIN);
    CHECK_EQ(tally_counter_load(&c), INT64_MIN);
    CHECK_EQ(tally_counter_dec(&c), INT64_MAX);
    CHECK_EQ(tally_counter_load(&c), INT64_MAX);

    CHECK_EQ(tally_counter_add(&c, INT64_MAX), -2);
    CHECK_EQ(tally_counter_add(&c, 2), 0);

    tally_counter_store(&c, INT64_MIN);
    CHECK_EQ(tally_counter_add(&c, INT64_MIN), 0);
    tally_counter_store(&c, -1);
    CHECK_EQ(tally_counter_add(&c, INT64_MIN), INT64_MAX);
    tally_counter_store(&c, INT64_MIN);
    CHECK_EQ(tally_counter_add(&c, -1), INT64_MAX);
}

static void test_swap(void)
{
    tally_counter c = TALLY_COUNTER_INIT(17);

    CHECK_EQ(tally_counter_swap(&c, 0), 17);
    CHECK_EQ(tally_counter_load(&c), 0);
    CHECK_EQ(tally_counter_swap(&c, 0), 0);
    CHECK_EQ(tally_counter_swap(&c, INT64_MIN), 0);
    CHECK_EQ(tally_counter_swap(&c, -5), INT64_MIN);
    CHECK_EQ(tally_counter_load(&c), -5);
    CHECK_EQ(tally_counter_add(&c, 6), 1);
}

static void test_cas(void)
{
    tally_counter c = TALLY_COUNTER_INIT(10);

    /* Success: returns true and sets the new value. */
    CHECK(tally_counter_cas(&c, 10, 20));
    CHECK_EQ(tally_counter_load(&c), 20);

    /* Failure: returns false and changes nothing, also for a new value
     * equal to the current one or an old value off by one either way. */
    CHECK(!tally_counter_cas(&c, 10, 30));
    CHECK_EQ(tally_counter_load(&c), 20);
    CHECK(!tally_counter_cas(&c, 19, 20));
    CHECK(!tally_counter_cas(&c, 21, 0));
    CHECK_EQ(tally_counter_load(&c), 20);

    /* Same old and new value: succeeds and leaves the value. */
    CHECK(tally_counter_cas(&c, 20, 20));
    CHECK_EQ(tally_counter_load(&c), 20);

    /* The extremes. */
    CHECK(tally_counter_cas(&c, 20, INT64_MIN));
    CHECK(!tally_counter_cas(&c, INT64_MAX, 0));
    CHECK_EQ(tally_counter_load(&c), INT64_MIN);
    CHECK(tally_counter_cas(&c, INT64_MIN, INT64_MAX));
    CHECK_EQ(tally_counter_load(&c), INT64_MAX);
}

/* Counters are independent: an embedded array shares no state. */
static void test_array(void)
{
    tally_counter cs[8] = {TALLY_COUNTER_INIT(0)};
    int i;

    for (i = 0; i < 8; i++)
        CHECK_EQ(tally_counter_add(&cs[i], i + 1), i + 1);
    for (i = 0; i < 8; i++)
        CHECK_EQ(tally_counter_load(&cs[i]), i + 1);
}

static void test_strerror(void)
{
    static const int known[] = {0,        -EINVAL,       -ENOMEM,
                                -ENOENT,  -ENAMETOOLONG, -EDEADLK};
    const size_t n = sizeof known / sizeof known[0];
    size_t i, j;

    for (i = 0; i < n; i++) {
        const char *s = tally_strerror(known[i]);
        CHECK(s != NULL);
        CHECK_GT(strlen(s), 0);
        CHECK(strcmp(s, "unknown error") != 0);
        for (j = 0; j < i; j++)
            CHECK(strcmp(s, tally_strerror(known[j])) != 0);
    }
    CHECK_STREQ(tally_strerror(-9999), "unknown error");
    CHECK_STREQ(tally_strerror(12345), "unknown error");
    /* Positive errno values are not tally results. */
    CHECK_STREQ(tally_strerror(EINVAL), "unknown error");
    CHECK_STREQ(tally_strerror(INT_MIN), "unknown error");
    CHECK_STREQ(tally_strerror(INT_MAX), "unknown error");
}

int main(void)
{
    test_layout();
    test_init();
    test_add_inc_dec();
    test_load_store();
    test_wrap();
    test_swap();
    test_cas();
    test_array();
    test_strerror();
    return 0;
}
