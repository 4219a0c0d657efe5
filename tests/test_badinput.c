/*
 * test_badinput.c - every public call with bad or edge-case input: NULL
 * pointers (map, key, out, value, fn), empty keys, huge lengths, keys of
 * every byte value, keys of exactly TALLY_KEY_MAX bytes and one more.
 *
 * Each call must give its documented result (tally.h), and a rejected call
 * must leave the map exactly as it was: after every rejection the map's
 * full contents (every key's bytes and value, via foreach, and its size)
 * are compared with a snapshot taken before the call.
 */
#include "tally.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ---- snapshots of a map's contents --------------------------------- */

struct kv {
    size_t len;
    unsigned char *key;
    int64_t value;
};

struct snap {
    size_t n, cap;
    struct kv *kv;
};

static int snap_visit(void *ctx, const void *key, size_t len, int64_t value)
{
    struct snap *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->kv = realloc(s->kv, s->cap * sizeof(*s->kv));
        CHECK(s->kv != NULL);
    }
    struct kv *e = &s->kv[s->n++];
    e->len = len;
    e->key = malloc(len ? len : 1);
    CHECK(e->key != NULL);
    if (len)
        memcpy(e->key, key, len);
    e->value = value;
    return 0;
}

static int kv_cmp(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->len ? memcmp(x->key, y->key, x->len) : 0;
}

static struct snap snap_take(tally_map *m)
{
    struct snap s = {0, 0, NULL};
    CHECK_EQ(tally_map_foreach(m, snap_visit, &s), 0);
    CHECK_EQ(tally_map_size(m), s.n);
    if (s.n)
        qsort(s.kv, s.n, sizeof(*s.kv), kv_cmp);
    for (size_t i = 1; i < s.n; i++)
        CHECK(kv_cmp(&s.kv[i - 1], &s.kv[i]) != 0); /* no key twice */
    return s;
}

static void snap_free(struct snap *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->kv[i].key);
    free(s->kv);
    s->kv = NULL;
    s->n = s->cap = 0;
}

/* The map holds exactly what it held when `before` was taken. */
static void check_unchanged(tally_map *m, const struct snap *before, int line)
{
    struct snap now = snap_take(m);
    if (now.n != before->n)
        fprintf(stderr, "map changed by the call at line %d\n", line);
    CHECK_EQ(now.n, before->n);
    for (size_t i = 0; i < now.n; i++) {
        if (kv_cmp(&now.kv[i], &before->kv[i]) != 0 ||
            now.kv[i].value != before->kv[i].value)
            fprintf(stderr, "map changed by the call at line %d\n", line);
        CHECK_EQ(now.kv[i].len, before->kv[i].len);
        CHECK_MEMEQ(now.kv[i].key, before->kv[i].key, now.kv[i].len);
        CHECK_EQ(now.kv[i].value, before->kv[i].value);
    }
    snap_free(&now);
}

/* Runs a call that must be rejected with `want` and must change nothing. */
#define REJECT(m, want, call)                                               \
    do {                                                                    \
        struct snap before__ = snap_take(m);                                \
        CHECK_EQ((call), (want));                                           \
        check_unchanged((m), &before__, __LINE__);                          \
        snap_free(&before__);                                               \
    } while (0)

static int count_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    (void)key, (void)len, (void)v;
    ++*(size_t *)ctx;
    return 0;
}

/* ---- NULL pointers --------------------------------------------------- */

static void test_null_adder(void)
{
    CHECK_EQ(tally_adder_new(NULL), -EINVAL);
    tally_adder_free(NULL); /* documented no-op */
}

static void test_null_map(void)
{
    tally_map *m = NULL;
    int64_t v = 77;
    tally_handle *h = (tally_handle *)&v; /* must stay untouched */

    CHECK_EQ(tally_map_new(NULL), -EINVAL);
    tally_map_free(NULL); /* documented no-op */
    tally_handle_release(NULL);

    /* Calls on a NULL map. */
    CHECK_EQ(tally_map_add(NULL, "k", 1), -EINVAL);
    CHECK_EQ(tally_map_add_n(NULL, "k", 1, 1), -EINVAL);
    CHECK_EQ(tally_map_inc(NULL, "k"), -EINVAL);
    CHECK_EQ(tally_map_value(NULL, "k"), 0);
    CHECK_EQ(tally_map_get(NULL, "k", &v), -EINVAL);
    CHECK_EQ(tally_map_get_n(NULL, "k", 1, &v), -EINVAL);
    CHECK_EQ(v, 77);
    CHECK_EQ(tally_map_remove(NULL, "k", &v), -EINVAL);
    CHECK_EQ(tally_map_remove_n(NULL, "k", 1, &v), -EINVAL);
    CHECK_EQ(v, 77);
    CHECK_EQ(tally_map_size(NULL), 0);
    CHECK_EQ(tally_map_foreach(NULL, count_visit, &v), -EINVAL);
    CHECK_EQ(tally_map_drain(NULL, count_visit, &v), -EINVAL);
    CHECK_EQ(tally_map_handle(NULL, "k", &h), -EINVAL);
    CHECK_EQ(tally_map_handle_n(NULL, "k", 1, &h), -EINVAL);
    CHECK(h == (tally_handle *)&v);
    CHECK_EQ(v, 77);

    CHECK_EQ(tally_map_new(&m), 0);
    CHECK(m != NULL);
    CHECK_EQ(tally_map_add(m, "present", 5), 0);

    /* NULL key: -EINVAL whatever the length, even a huge one, and even
     * length 0 (only the pointer is checked for NULL, never read). */
    REJECT(m, -EINVAL, tally_map_add(m, NULL, 1));
    REJECT(m, -EINVAL, tally_map_inc(m, NULL));
    REJECT(m, -EINVAL, tally_map_add_n(m, NULL, 0, 1));
    REJECT(m, -EINVAL, tally_map_add_n(m, NULL, 7, 1));
    REJECT(m, -EINVAL, tally_map_add_n(m, NULL, SIZE_MAX, 1));
    REJECT(m, -EINVAL, tally_map_get(m, NULL, &v));
    REJECT(m, -EINVAL, tally_map_get_n(m, NULL, 0, &v));
    REJECT(m, -EINVAL, tally_map_get_n(m, NULL, SIZE_MAX, &v));
    CHECK_EQ(v, 77);
    CHECK_EQ(tally_map_value(m, NULL), 0);
    REJECT(m, -EINVAL, tally_map_remove(m, NULL, &v));
    REJECT(m, -EINVAL, tally_map_remove_n(m, NULL, 0, &v));
    REJECT(m, -EINVAL, tally_map_remove_n(m, NULL, SIZE_MAX, NULL));
    CHECK_EQ(v, 77);
    REJECT(m, -EINVAL, tally_map_handle(m, NULL, &h));
    REJECT(m, -EINVAL, tally_map_handle_n(m, NULL, 0, &h));
    CHECK(h == (tally_handle *)&v);

    /* NULL out / value / fn. handle(.., NULL) must not create the key. */
    REJECT(m, -EINVAL, tally_map_get(m, "present", NULL));
    REJECT(m, -EINVAL, tally_map_get(m, "absent", NULL));
    REJECT(m, -EINVAL, tally_map_get_n(m, "present", 7, NULL));
    REJECT(m, -EINVAL, tally_map_handle(m, "present", NULL));
    REJECT(m, -EINVAL, tally_map_handle(m, "new-key", NULL));
    REJECT(m, -EINVAL, tally_map_handle_n(m, "new-key", 7, NULL));
    REJECT(m, -EINVAL, tally_map_foreach(m, NULL, NULL));
    REJECT(m, -EINVAL, tally_map_drain(m, NULL, NULL));
    CHECK_EQ(tally_map_get(m, "new-key", &v), -ENOENT);
    CHECK_EQ(v, 77);

    /* last_value may be NULL: the key is removed all the same. */
    CHECK_EQ(tally_map_remove(m, "present", NULL), 0);
    CHECK_EQ(tally_map_size(m), 0);
    CHECK_EQ(tally_map_get(m, "present", &v), -ENOENT);
    CHECK_EQ(v, 77);
    /* A NULL ctx is just passed to fn. */
    size_t visits = 0;
    CHECK_EQ(tally_map_add(m, "x", 1), 0);
    CHECK_EQ(tally_map_foreach(m, count_visit, &visits), 0);
    CHECK_EQ(visits, 1);
    tally_map_free(m);
}

/* ---- lengths --------------------------------------------------------- */

static void test_lengths(void)
{
    tally_map *m;
    int64_t v = 0;
    tally_handle *h = NULL;
    CHECK_EQ(tally_map_new(&m), 0);

    /* The empty key is a valid key: "" and any pointer with length 0 name
     * the same key. */
    static const char other[] = "ignored";
    CHECK_EQ(tally_map_add(m, "", 3), 0);
    CHECK_EQ(tally_map_add_n(m, other, 0, 4), 0);
    CHECK_EQ(tally_map_inc(m, ""), 0);
    CHECK_EQ(tally_map_size(m), 1);
    CHECK_EQ(tally_map_get_n(m, other + 3, 0, &v), 0);
    CHECK_EQ(v, 8);
    CHECK_EQ(tally_map_value(m, ""), 8);
    CHECK_EQ(tally_map_handle_n(m, other, 0, &h), 0);
    tally_handle_add(h, 2);
    tally_handle_release(h);
    CHECK_EQ(tally_map_remove(m, "", &v), 0);
    CHECK_EQ(v, 10);
    CHECK_EQ(tally_map_size(m), 0);
    CHECK_EQ(tally_map_remove_n(m, other, 0, &v), -ENOENT);
    CHECK_EQ(tally_map_add(m, "base", 1), 0);

    /* Lengths past TALLY_KEY_MAX: -ENAMETOOLONG, the key is never read
     * (the buffer here is shorter than the length claimed). */
    static const size_t huge[] = {TALLY_KEY_MAX + 1, TALLY_KEY_MAX * 2,
                                  (size_t)UINT32_MAX, (size_t)UINT32_MAX + 1,
                                  ((size_t)1 << 32) + 1, /* truncated: 1 */
                                  SIZE_MAX / 2, SIZE_MAX - 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
        size_t n = huge[i];
        v = 99;
        h = NULL;
        REJECT(m, -ENAMETOOLONG, tally_map_add_n(m, "x", n, 1));
        REJECT(m, -ENAMETOOLONG, tally_map_get_n(m, "x", n, &v));
        REJECT(m, -ENAMETOOLONG, tally_map_remove_n(m, "x", n, &v));
        REJECT(m, -ENAMETOOLONG, tally_map_remove_n(m, "x", n, NULL));
        REJECT(m, -ENAMETOOLONG, tally_map_handle_n(m, "x", n, &h));
        CHECK_EQ(v, 99);
        CHECK(h == NULL);
    }

    /* Exactly TALLY_KEY_MAX bytes is accepted; one more is not, through
     * the C-string calls too. The two keys differ only in length. */
    char *big = malloc(TALLY_KEY_MAX + 2);
    CHECK(big != NULL);
    for (size_t i = 0; i < TALLY_KEY_MAX + 1; i++)
        big[i] = (char)('a' + i % 26);
    big[TALLY_KEY_MAX + 1] = '\0'; /* strlen = TALLY_KEY_MAX + 1 */
    REJECT(m, -ENAMETOOLONG, tally_map_add(m, big, 1));
    REJECT(m, -ENAMETOOLONG, tally_map_inc(m, big));
    REJECT(m, -ENAMETOOLONG, tally_map_get(m, big, &v));
    REJECT(m, -ENAMETOOLONG, tally_map_remove(m, big, &v));
    REJECT(m, -ENAMETOOLONG, tally_map_handle(m, big, &h));
    REJECT(m, -ENAMETOOLONG,
           tally_map_add_n(m, big, TALLY_KEY_MAX + 1, 1));
    CHECK_EQ(tally_map_value(m, big), 0);
    CHECK(h == NULL);

    big[TALLY_KEY_MAX] = '\0'; /* strlen = TALLY_KEY_MAX */
    CHECK_EQ(tally_map_add(m, big, 40), 0);
    CHECK_EQ(tally_map_inc(m, big), 0);
    CHECK_EQ(tally_map_add_n(m, big, TALLY_KEY_MAX, 1), 0);
    CHECK_EQ(tally_map_value(m, big), 42);
    CHECK_EQ(tally_map_get_n(m, big, TALLY_KEY_MAX, &v), 0);
    CHECK_EQ(v, 42);
    /* Its prefix of TALLY_KEY_MAX - 1 bytes is another key, absent. */
    CHECK_EQ(tally_map_get_n(m, big, TALLY_KEY_MAX - 1, &v), -ENOENT);
    CHECK_EQ(tally_map_handle(m, big, &h), 0);
    tally_handle_add(h, 8);
    tally_handle_release(h);
    CHECK_EQ(tally_map_size(m), 2);

    /* foreach sees the full key. */
    struct snap s = snap_take(m);
    CHECK_EQ(s.n, 2);
    CHECK_EQ(s.kv[1].len, TALLY_KEY_MAX);
    CHECK_MEMEQ(s.kv[1].key, big, TALLY_KEY_MAX);
    CHECK_EQ(s.kv[1].value, 50);
    snap_free(&s);
    CHECK_EQ(tally_map_remove(m, big, &v), 0);
    CHECK_EQ(v, 50);
    CHECK_EQ(tally_map_get(m, big, &v), -ENOENT);
    CHECK_EQ(tally_map_size(m), 1);

    free(big);
    tally_map_free(m);
}

/* ---- every byte value ------------------------------------------------ */

static void test_every_byte(void)
{
    tally_map *m;
    unsigned char all[256];
    int64_t v;
    CHECK_EQ(tally_map_new(&m), 0);

    /* 256 one-byte keys (NUL included), the key of all 256 bytes, and the
     * empty key: 258 distinct keys. */
    for (int b = 0; b < 256; b++) {
        unsigned char k = (unsigned char)b;
        all[b] = (unsigned char)b;
        CHECK_EQ(tally_map_add_n(m, &k, 1, b + 1), 0);
    }
    CHECK_EQ(tally_map_add_n(m, all, 256, 1000), 0);
    CHECK_EQ(tally_map_add_n(m, all, 0, 2000), 0);
    CHECK_EQ(tally_map_size(m), 258);
    for (int b = 0; b < 256; b++) {
        unsigned char k = (unsigned char)b;
        CHECK_EQ(tally_map_get_n(m, &k, 1, &v), 0);
        CHECK_EQ(v, b + 1);
    }
    CHECK_EQ(tally_map_get_n(m, all, 256, &v), 0);
    CHECK_EQ(v, 1000);
    CHECK_EQ(tally_map_get_n(m, all, 0, &v), 0);
    CHECK_EQ(v, 2000);
    /* Prefixes of the long key are other keys (absent, but "" and "\0"). */
    for (size_t n = 2; n < 256; n++)
        CHECK_EQ(tally_map_get_n(m, all, n, &v), -ENOENT);

    /* foreach sees each key once with its bytes intact: sorted by
     * (len, bytes) the snapshot is "", then 0x00..0xff, then all 256. */
    struct snap s = snap_take(m);
    CHECK_EQ(s.n, 258);
    CHECK_EQ(s.kv[0].len, 0);
    CHECK_EQ(s.kv[0].value, 2000);
    for (int b = 0; b < 256; b++) {
        CHECK_EQ(s.kv[1 + b].len, 1);
        CHECK_EQ(s.kv[1 + b].key[0], b);
        CHECK_EQ(s.kv[1 + b].value, b + 1);
    }
    CHECK_EQ(s.kv[257].len, 256);
    CHECK_MEMEQ(s.kv[257].key, all, 256);
    CHECK_EQ(s.kv[257].value, 1000);
    snap_free(&s);

    /* The C-string calls stop at the first NUL: "a\0b" is the key "a". */
    CHECK_EQ(tally_map_add(m, "a\0b", 5), 0);
    CHECK_EQ(tally_map_get_n(m, "a", 1, &v), 0);
    CHECK_EQ(v, 'a' + 1 + 5);
    CHECK_EQ(tally_map_get_n(m, "a\0b", 3, &v), -ENOENT);
    CHECK_EQ(tally_map_size(m), 258);

    /* Remove every key; each returns its own value. */
    for (int b = 255; b >= 0; b--) {
        unsigned char k = (unsigned char)b;
        CHECK_EQ(tally_map_remove_n(m, &k, 1, &v), 0);
        CHECK_EQ(v, b + 1 + (b == 'a' ? 5 : 0));
        CHECK_EQ(tally_map_remove_n(m, &k, 1, &v), -ENOENT);
    }
    CHECK_EQ(tally_map_remove_n(m, all, 256, &v), 0);
    CHECK_EQ(v, 1000);
    CHECK_EQ(tally_map_remove(m, "", &v), 0);
    CHECK_EQ(v, 2000);
    CHECK_EQ(tally_map_size(m), 0);
    tally_map_free(m);
}

/* ---- extreme values: wrapping, never undefined ----------------------- */

static void test_wrap(void)
{
    tally_map *m;
    tally_adder *a;
    tally_handle *h;
    int64_t v;
    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_map_add(m, "k", INT64_MAX), 0);
    CHECK_EQ(tally_map_inc(m, "k"), 0);
    CHECK_EQ(tally_map_value(m, "k"), INT64_MIN);
    CHECK_EQ(tally_map_add(m, "k", INT64_MIN), 0); /* MIN + MIN wraps to 0 */
    CHECK_EQ(tally_map_value(m, "k"), 0);
    CHECK_EQ(tally_map_handle(m, "k", &h), 0);
    tally_handle_add(h, INT64_MIN);
    tally_handle_add(h, -1);
    tally_handle_release(h);
    CHECK_EQ(tally_map_remove(m, "k", &v), 0);
    CHECK_EQ(v, INT64_MAX);
    tally_map_free(m);

    CHECK_EQ(tally_adder_new(&a), 0);
    tally_adder_add(a, INT64_MAX);
    tally_adder_inc(a);
    CHECK_EQ(tally_adder_sum(a), INT64_MIN);
    CHECK_EQ(tally_adder_drain(a), INT64_MIN);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_free(a);
}

/* ---- calls that would wait for themselves ---------------------------- */

struct reentry {
    tally_map *m;
    int sync_rc, add_rc, foreach_rc;
    size_t visits;
};

/* Inside a visit only tally_map_sync would wait for the visit itself:
 * -EDEADLK, and nothing changes. Adds and nested visits are allowed
 * (removes and drains too: test_map's test_reentry). */
static int reenter_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    struct reentry *r = ctx;
    (void)v;
    r->visits++;
    r->sync_rc = tally_map_sync(r->m);
    r->add_rc = tally_map_add_n(r->m, key, len, 1);
    size_t inner = 0;
    r->foreach_rc = tally_map_foreach(r->m, count_visit, &inner);
    CHECK_EQ(inner, 2);
    return 0;
}

static int stop_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    (void)key, (void)len, (void)v;
    ++*(size_t *)ctx;
    return -42;
}

static void test_reentry(void)
{
    tally_map *m;
    int64_t v;
    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_map_add(m, "k", 1), 0);
    CHECK_EQ(tally_map_add(m, "other", 10), 0);

    for (int drain = 0; drain < 2; drain++) {
        struct reentry r = {m, 0, 1, 1, 0};
        int rc = drain ? tally_map_drain(m, reenter_visit, &r)
                       : tally_map_foreach(m, reenter_visit, &r);
        CHECK_EQ(rc, 0);
        CHECK_EQ(r.visits, 2);
        CHECK_EQ(r.sync_rc, -EDEADLK);
        CHECK_EQ(r.add_rc, 0);
        CHECK_EQ(r.foreach_rc, 0);
        CHECK_EQ(tally_map_size(m), 2);
    }
    /* foreach: +1 per key. drain: reported and reset, then +1 per key. */
    CHECK_EQ(tally_map_get(m, "k", &v), 0);
    CHECK_EQ(v, 1);
    CHECK_EQ(tally_map_get(m, "other", &v), 0);
    CHECK_EQ(v, 1);

    /* A callback's non-zero result stops the visit and is returned. */
    size_t visits = 0;
    CHECK_EQ(tally_map_foreach(m, stop_visit, &visits), -42);
    CHECK_EQ(visits, 1);
    visits = 0;
    CHECK_EQ(tally_map_drain(m, stop_visit, &visits), -42);
    CHECK_EQ(visits, 1);
    /* Exactly one key was drained (to 0), the other kept its 1. */
    CHECK_EQ(tally_map_value(m, "k") + tally_map_value(m, "other"), 1);

    /* Outside a callback remove works again. */
    CHECK_EQ(tally_map_remove(m, "k", NULL), 0);
    CHECK_EQ(tally_map_remove(m, "other", NULL), 0);
    CHECK_EQ(tally_map_size(m), 0);
    tally_map_free(m);
}

/* ---- tally_strerror -------------------------------------------------- */

static void test_strerror(void)
{
    static const int codes[] = {0,        -EINVAL,  -ENOMEM, -ENOENT,
                                -ENAMETOOLONG, -EDEADLK, -ENOSPC, -EROFS,
                                TALLY_ENOTSTORE, TALLY_EVERSION,
                                TALLY_ELAYOUT, TALLY_ECORRUPT};
    const size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++) {
        const char *s = tally_strerror(codes[i]);
        CHECK(s != NULL);
        CHECK(s[0] != '\0');
        CHECK(strcmp(s, "unknown error") != 0);
        for (size_t j = 0; j < i; j++) /* every code has its own text */
            CHECK(strcmp(s, tally_strerror(codes[j])) != 0);
    }
    /* Positive values, values past the errno range and unused codes near
     * tally's own are unknown; other errno values get the system's text. */
    static const int unknown[] = {1, EINVAL, -4096, -9999, -20000, -20005,
                                  INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        CHECK_STREQ(tally_strerror(unknown[i]), "unknown error");
    CHECK_STREQ(tally_strerror(-ERANGE), "Numerical result out of range");
}

int main(void)
{
    test_null_adder();
    test_null_map();
    test_lengths();
    test_every_byte();
    test_wrap();
    test_reentry();
    test_strerror();
    printf("test_badinput: ok\n");
    return 0;
}
