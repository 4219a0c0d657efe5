/*
 * test_store.c - unit tests of tally_store (tally.h section 5): every
 * call with exact values, every error on bad input (and that nothing
 * changed), read-only opens, the size limit, reopening, files that are
 * not stores or are damaged, fork, and several processes racing to
 * create one store.
 *
 * Each test works in a fresh temporary directory (removed at the end).
 */
#include "tally.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

static char dir[256];
static char path[300];

static void fresh_path(const char *name)
{
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static const struct tally_store_config create_cfg = {TALLY_STORE_CREATE, 0,
                                                     0};

static tally_store *open_new(const char *name)
{
    tally_store *s = NULL;
    fresh_path(name);
    CHECK_EQ(tally_store_open(&s, path, &create_cfg), 0);
    CHECK(s != NULL);
    return s;
}

/* ------------------------------------------------------------------ */
/* Snapshots: every (key, value) a foreach sees, sorted                */
/* ------------------------------------------------------------------ */

struct kv {
    size_t len;
    unsigned char key[TALLY_KEY_MAX];
    int64_t value;
};

struct snap {
    struct kv *kv;
    size_t n, cap;
};

static int snap_visit(void *ctx, const void *key, size_t len, int64_t value)
{
    struct snap *sn = ctx;
    if (sn->n == sn->cap) {
        sn->cap = sn->cap ? sn->cap * 2 : 64;
        sn->kv = realloc(sn->kv, sn->cap * sizeof *sn->kv);
        CHECK(sn->kv != NULL);
    }
    CHECK_LE(len, TALLY_KEY_MAX);
    struct kv *k = &sn->kv[sn->n++];
    k->len = len;
    memcpy(k->key, key, len);
    k->value = value;
    return 0;
}

static int kv_cmp(const void *a, const void *b)
{
    const struct kv *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp(x->key, y->key, x->len);
}

static struct snap take(tally_store *s)
{
    struct snap sn = {0};
    CHECK_EQ(tally_store_foreach(s, snap_visit, &sn), 0);
    if (sn.n > 1)
        qsort(sn.kv, sn.n, sizeof *sn.kv, kv_cmp);
    for (size_t i = 1; i < sn.n; i++)
        CHECK_NE(kv_cmp(&sn.kv[i - 1], &sn.kv[i]), 0); /* each key once */
    CHECK_EQ(sn.n, tally_store_size(s));
    return sn;
}

static void same(struct snap a, struct snap b)
{
    CHECK_EQ(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        CHECK_EQ(a.kv[i].len, b.kv[i].len);
        CHECK_MEMEQ(a.kv[i].key, b.kv[i].key, a.kv[i].len);
        CHECK_EQ(a.kv[i].value, b.kv[i].value);
    }
}

static void drop(struct snap *sn)
{
    free(sn->kv);
    sn->kv = NULL;
}

/* The check of the file at path must find nothing wrong (notes allowed).
 */
static int problems;
static void count_problem(void *ctx, const char *line)
{
    (void)ctx;
    if (strncmp(line, "note: ", 6) != 0) {
        fprintf(stderr, "  check: %s\n", line);
        problems++;
    }
}

static void check_clean(const char *p)
{
    problems = 0;
    CHECK_EQ(tally_store_check(p, count_problem, NULL), 0);
    CHECK_EQ(problems, 0);
}

/* ------------------------------------------------------------------ */

static void test_basic(void)
{
    tally_store *s = open_new("basic");
    int64_t v = -1;

    CHECK_EQ(tally_store_size(s), 0);
    CHECK_EQ(tally_store_get(s, "a", &v), -ENOENT);
    CHECK_EQ(v, -1);
    CHECK_EQ(tally_store_value(s, "a"), 0);
    CHECK_EQ(tally_store_inc(s, "a"), 0);
    CHECK_EQ(tally_store_add(s, "a", 41), 0);
    CHECK_EQ(tally_store_add(s, "b", -7), 0);
    CHECK_EQ(tally_store_get(s, "a", &v), 0);
    CHECK_EQ(v, 42);
    CHECK_EQ(tally_store_value(s, "b"), -7);
    CHECK_EQ(tally_store_size(s), 2);

    /* Adding 0 creates the key at 0. */
    CHECK_EQ(tally_store_add(s, "zero", 0), 0);
    CHECK_EQ(tally_store_get(s, "zero", &v), 0);
    CHECK_EQ(v, 0);

    /* _n: any bytes; the C-string calls stop at the NUL. */
    const char bin[] = {'x', '\0', 'y'};
    CHECK_EQ(tally_store_add_n(s, bin, 3, 5), 0);
    CHECK_EQ(tally_store_add_n(s, bin, 1, 6), 0);
    CHECK_EQ(tally_store_get_n(s, bin, 3, &v), 0);
    CHECK_EQ(v, 5);
    CHECK_EQ(tally_store_value(s, "x"), 6);
    CHECK_EQ(tally_store_get_n(s, bin, 2, &v), -ENOENT);

    /* The empty key: "" and any pointer with length 0. */
    CHECK_EQ(tally_store_add(s, "", 3), 0);
    CHECK_EQ(tally_store_add_n(s, bin, 0, 4), 0);
    CHECK_EQ(tally_store_value(s, ""), 7);

    /* The longest key, and its one-shorter prefix (another key). */
    static unsigned char big[TALLY_KEY_MAX];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 7 + 1);
    CHECK_EQ(tally_store_add_n(s, big, TALLY_KEY_MAX, 9), 0);
    CHECK_EQ(tally_store_get_n(s, big, TALLY_KEY_MAX - 1, &v), -ENOENT);
    CHECK_EQ(tally_store_add_n(s, big, TALLY_KEY_MAX - 1, 10), 0);
    CHECK_EQ(tally_store_get_n(s, big, TALLY_KEY_MAX, &v), 0);
    CHECK_EQ(v, 9);

    /* Wrapping. */
    CHECK_EQ(tally_store_add(s, "wrap", INT64_MAX), 0);
    CHECK_EQ(tally_store_inc(s, "wrap"), 0);
    CHECK_EQ(tally_store_value(s, "wrap"), INT64_MIN);

    CHECK_EQ(tally_store_size(s), 9);
    struct snap sn = take(s);
    CHECK_EQ(sn.n, 9);
    drop(&sn);
    tally_store_close(s);
    check_clean(path);
}

/* All 256 one-byte keys, the key of all 256 bytes and many more: every
 * value exact, foreach sees each once. */
static void test_many_keys(void)
{
    tally_store *s = open_new("many");
    unsigned char k[256];
    for (int i = 0; i < 256; i++) {
        k[0] = (unsigned char)i;
        CHECK_EQ(tally_store_add_n(s, k, 1, i + 1), 0);
        k[i] = (unsigned char)i;
    }
    for (int i = 0; i < 256; i++)
        k[i] = (unsigned char)i;
    CHECK_EQ(tally_store_add_n(s, k, 256, 1000), 0);
    char name[32];
    const int n = 20000; /* grows the file several times */
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "key-%d", i);
        CHECK_EQ(tally_store_add(s, name, i), 0);
        if (i % 3 == 0)
            CHECK_EQ(tally_store_add(s, name, i), 0);
    }
    CHECK_EQ(tally_store_size(s), 257 + n);
    for (int i = 0; i < 256; i++) {
        int64_t v;
        k[0] = (unsigned char)i;
        CHECK_EQ(tally_store_get_n(s, k, 1, &v), 0);
        CHECK_EQ(v, i + 1);
    }
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "key-%d", i);
        CHECK_EQ(tally_store_value(s, name), i % 3 == 0 ? 2 * i : i);
    }
    struct snap sn = take(s);
    CHECK_EQ(sn.n, 257 + n);
    int64_t sum = 0;
    for (size_t i = 0; i < sn.n; i++)
        sum += sn.kv[i].value;
    int64_t want = 256 * 257 / 2 + 1000;
    for (int i = 0; i < n; i++)
        want += i % 3 == 0 ? 2 * i : i;
    CHECK_EQ(sum, want);
    drop(&sn);

    struct tally_store_info info;
    CHECK_EQ(tally_store_info(s, &info), 0);
    CHECK_EQ(info.keys, 257 + n);
    CHECK_GE(info.file_bytes, info.used_bytes);
    CHECK_GT(info.file_bytes, TALLY__STORE_MIN_BYTES);
    CHECK_EQ(info.max_bytes, TALLY_STORE_DEFAULT_MAX_BYTES);
    CHECK_EQ(info.format_major, 1);
    CHECK_EQ(info.format_minor, 0);
    CHECK_GE(info.cpu_cells, 1);
    CHECK_EQ(info.cpu_cells & (info.cpu_cells - 1), 0);
    tally_store_close(s);
    check_clean(path);
}

static int stop_at_3(void *ctx, const void *key, size_t len, int64_t value)
{
    (void)key;
    (void)len;
    (void)value;
    int *n = ctx;
    return ++*n == 3 ? 77 : 0;
}

struct adder_ctx {
    tally_store *s;
    int visits;
    struct snap seen;
};

/* A callback may call anything on the store: it adds a key per visit. */
static int add_during(void *ctx, const void *key, size_t len, int64_t value)
{
    struct adder_ctx *a = ctx;
    char name[64];
    snap_visit(&a->seen, key, len, value);
    snprintf(name, sizeof name, "new-%d", a->visits++);
    CHECK_EQ(tally_store_add(a->s, name, 1), 0);
    CHECK_EQ(tally_store_add_n(a->s, key, len, 1), 0);
    return 0;
}

static void test_foreach(void)
{
    tally_store *s = open_new("foreach");
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "k%d", i);
        CHECK_EQ(tally_store_add(s, name, i * 10), 0);
    }
    int n = 0;
    CHECK_EQ(tally_store_foreach(s, stop_at_3, &n), 77);
    CHECK_EQ(n, 3);

    struct snap before = take(s);
    struct adder_ctx a = {s, 0, {0}};
    CHECK_EQ(tally_store_foreach(s, add_during, &a), 0);
    /* Every key present for the whole call visited once (each got its +1
     * exactly once, below); the keys added during it at most once. */
    CHECK_GE(a.visits, 10);
    if (a.seen.n > 1)
        qsort(a.seen.kv, a.seen.n, sizeof *a.seen.kv, kv_cmp);
    for (size_t i = 1; i < a.seen.n; i++)
        CHECK_NE(kv_cmp(&a.seen.kv[i - 1], &a.seen.kv[i]), 0);
    drop(&a.seen);
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof name, "k%d", i);
        CHECK_EQ(tally_store_value(s, name), i * 10 + 1);
    }
    CHECK_EQ(tally_store_size(s), 10 + (size_t)a.visits);
    drop(&before);
    tally_store_close(s);
    check_clean(path);
}

struct drained {
    int64_t sum;
    int visits;
    int64_t a_amount;
};

static int drain_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    struct drained *d = ctx;
    CHECK_NE(v, 0); /* zero amounts are skipped */
    d->sum += v;
    d->visits++;
    if (len == 1 && memcmp(key, "a", 1) == 0)
        d->a_amount = v;
    return 0;
}

static void test_drain(void)
{
    tally_store *s = open_new("drain");
    CHECK_EQ(tally_store_add(s, "a", 5), 0);
    CHECK_EQ(tally_store_add(s, "b", 7), 0);
    CHECK_EQ(tally_store_add(s, "c", 0), 0);
    CHECK_EQ(tally_store_add(s, "neg", -3), 0);
    struct drained d = {0};
    CHECK_EQ(tally_store_drain(s, drain_visit, &d), 0);
    CHECK_EQ(d.visits, 3);
    CHECK_EQ(d.sum, 9);
    CHECK_EQ(d.a_amount, 5);
    CHECK_EQ(tally_store_value(s, "a"), 0);
    CHECK_EQ(tally_store_value(s, "neg"), 0);
    CHECK_EQ(tally_store_size(s), 4); /* keys stay */

    /* Nothing since: nothing visited. */
    d = (struct drained){0};
    CHECK_EQ(tally_store_drain(s, drain_visit, &d), 0);
    CHECK_EQ(d.visits, 0);

    /* Adds after a drain: only those. A striped key too. */
    CHECK_EQ(tally_store_add(s, "a", 2), 0);
    CHECK_EQ(tally__store_stripe(s, "a", 1), 0);
    CHECK_EQ(tally_store_add(s, "a", 3), 0);
    CHECK_EQ(tally_store_value(s, "a"), 5);
    d = (struct drained){0};
    CHECK_EQ(tally_store_drain(s, drain_visit, &d), 0);
    CHECK_EQ(d.visits, 1);
    CHECK_EQ(d.a_amount, 5);
    CHECK_EQ(tally_store_value(s, "a"), 0);

    /* A callback's non-zero result stops the drain; the key it was
     * given is drained, the others not yet. */
    CHECK_EQ(tally_store_add(s, "a", 1), 0);
    CHECK_EQ(tally_store_add(s, "b", 1), 0);
    CHECK_EQ(tally_store_add(s, "c", 1), 0);
    int n = 0;
    CHECK_EQ(tally_store_drain(s, stop_at_3, &n), 77);
    CHECK_EQ(n, 3);
    CHECK_EQ(tally_store_value(s, "a") + tally_store_value(s, "b") +
                 tally_store_value(s, "c"),
             0);
    tally_store_close(s);
    check_clean(path);
}

static void test_handles(void)
{
    tally_store *s = open_new("handles");
    tally_store_handle *h = NULL, *h2 = NULL;
    CHECK_EQ(tally_store_handle_new(s, "h", &h), 0);
    CHECK(h != NULL);
    CHECK_EQ(tally_store_value(s, "h"), 0); /* created at 0 */
    CHECK_EQ(tally_store_size(s), 1);
    for (int i = 0; i < 1000; i++)
        tally_store_handle_inc(h);
    tally_store_handle_add(h, -10);
    CHECK_EQ(tally_store_value(s, "h"), 990);

    /* Two handles of one key; striping under them; a handle made after. */
    CHECK_EQ(tally_store_handle_new_n(s, "h", 1, &h2), 0);
    tally_store_handle_add(h2, 10);
    CHECK_EQ(tally__store_striped(s, "h", 1), 0);
    CHECK_EQ(tally__store_stripe(s, "h", 1), 0);
    CHECK_EQ(tally__store_striped(s, "h", 1), 1);
    tally_store_handle_add(h, 5);
    tally_store_handle_add(h2, 5);
    CHECK_EQ(tally_store_add(s, "h", 5), 0);
    CHECK_EQ(tally_store_value(s, "h"), 1015);
    tally_store_handle *h3 = NULL;
    CHECK_EQ(tally_store_handle_new(s, "h", &h3), 0);
    tally_store_handle_add(h3, INT64_MAX);
    tally_store_handle_add(h3, 1);
    CHECK_EQ(tally_store_value(s, "h"), (int64_t)((uint64_t)1015 + INT64_MAX + 1));
    tally_store_handle_add(h3, INT64_MIN); /* and back */
    CHECK_EQ(tally_store_value(s, "h"), 1015);
    tally_store_handle_release(h);
    tally_store_handle_release(h2);
    tally_store_handle_release(h3);
    tally_store_handle_release(NULL);
    tally_store_close(s);
    check_clean(path);
}

/* Striped keys: the CPU number picks a cell; numbers beyond the cells
 * fold onto them; every add lands in exactly one place. */
static void test_cells(void)
{
    static const uint32_t layouts[] = {1, 2, 8, 256};
    for (size_t l = 0; l < sizeof layouts / sizeof *layouts; l++) {
        tally__store_test_layout(layouts[l], 0);
        tally_store *s = open_new("cells");
        tally__store_test_layout(0, 0);
        struct tally_store_info info;
        CHECK_EQ(tally_store_info(s, &info), 0);
        CHECK_EQ(info.cpu_cells, layouts[l]);
        /* 20 striped keys: three slabs of 8. */
        int64_t want = 0;
        tally_store_handle *h;
        CHECK_EQ(tally_store_handle_new(s, "k0", &h), 0);
        for (int k = 0; k < 20; k++) {
            char name[16];
            snprintf(name, sizeof name, "k%d", k);
            CHECK_EQ(tally_store_add(s, name, 1), 0);
            CHECK_EQ(tally__store_stripe(s, name, strlen(name)), 0);
            CHECK_EQ(tally__store_striped(s, name, strlen(name)), 1);
        }
        for (int cpu = 0; cpu < 600; cpu += 7) {
            tally__store_test_cpu(cpu);
            for (int k = 0; k < 20; k++) {
                char name[16];
                snprintf(name, sizeof name, "k%d", k);
                CHECK_EQ(tally_store_add(s, name, cpu + k), 0);
            }
            tally_store_handle_add(h, 1000);
            want += cpu + 1000;
        }
        tally__store_test_cpu(-1);
        CHECK_EQ(tally_store_value(s, "k0"), 1 + want);
        for (int k = 1; k < 20; k++) {
            char name[16];
            snprintf(name, sizeof name, "k%d", k);
            int64_t w = 1;
            for (int cpu = 0; cpu < 600; cpu += 7)
                w += cpu + k;
            CHECK_EQ(tally_store_value(s, name), w);
        }
        tally_store_handle_release(h);
        tally_store_close(s);
        check_clean(path);
    }
}

/* Striping follows contention, with hysteresis (a test hook makes CASes
 * on the inline count fail as if another add got in first): failures
 * that pile up stripe the key after 32; one failure now and then never
 * does, because successful adds forget old failures. Deterministic: the
 * forgetting depends only on the values the key takes. */
static void test_contention(void)
{
    tally__store_test_layout(4, 0);
    tally_store *s = open_new("contention");
    tally__store_test_layout(0, 0);
    tally_store_handle *h;
    CHECK_EQ(tally_store_handle_new(s, "hot", &h), 0);
    for (int i = 0; i < 31; i++) {
        tally__store_test_cas_failures(1);
        if (i % 2)
            tally_store_handle_inc(h);
        else
            CHECK_EQ(tally_store_inc(s, "hot"), 0);
    }
    CHECK_EQ(tally__store_striped(s, "hot", 3), 0);
    tally__store_test_cas_failures(1);
    tally_store_handle_inc(h); /* the 32nd failure */
    CHECK_EQ(tally__store_striped(s, "hot", 3), 1);
    tally_store_handle_inc(h);
    CHECK_EQ(tally_store_value(s, "hot"), 33);
    tally_store_handle_release(h);

    /* A failure every 5000 adds, 2 million adds: never striped. */
    CHECK_EQ(tally_store_handle_new(s, "cold", &h), 0);
    for (int i = 0; i < 2000000; i++) {
        if (i % 5000 == 0)
            tally__store_test_cas_failures(1);
        tally_store_handle_inc(h);
    }
    CHECK_EQ(tally__store_striped(s, "cold", 4), 0);
    CHECK_EQ(tally_store_value(s, "cold"), 2000000);

    /* Several failures in one add count each. */
    CHECK_EQ(tally_store_add(s, "burst", 0), 0);
    tally__store_test_cas_failures(40);
    CHECK_EQ(tally_store_add(s, "burst", 7), 0);
    CHECK_EQ(tally__store_striped(s, "burst", 5), 1);
    CHECK_EQ(tally_store_value(s, "burst"), 7);
    tally__store_test_cas_failures(0);
    tally_store_handle_release(h);
    tally_store_close(s);
    check_clean(path);
}

/* Every source of CPU numbers: threads adding to striped keys count
 * exactly whichever cells they pick. With TALLY_EXPECT_CPU_SOURCE set
 * (ctest's test_store_norseq runs with glibc's rseq turned off), the
 * library must have picked that source by itself. */
struct cpu_worker {
    tally_store *s;
    tally_store_handle *h;
};

static void *cpu_adder(void *arg)
{
    struct cpu_worker *w = arg;
    for (int i = 0; i < 20000; i++) {
        tally_store_handle_inc(w->h);
        CHECK_EQ(tally_store_inc(w->s, "by-name"), 0);
    }
    return NULL;
}

static void test_cpu_sources(void)
{
    const char *expect = getenv("TALLY_EXPECT_CPU_SOURCE");
    printf("test_store: CPU numbers from %s\n", tally__store_cpu_source());
    if (expect != NULL && *expect != '\0')
        CHECK_STREQ(tally__store_cpu_source(), expect);
    static const char *sources[] = {"probe", "sched_getcpu", "thread"};
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++) {
        if (tally__store_test_cpu_source(sources[i]) != 0)
            continue;
        tally__store_test_layout(4, 0);
        tally_store *s = open_new("cpus");
        tally__store_test_layout(0, 0);
        tally_store_handle *h;
        CHECK_EQ(tally_store_handle_new(s, "handle", &h), 0);
        CHECK_EQ(tally_store_add(s, "by-name", 0), 0);
        CHECK_EQ(tally__store_stripe(s, "handle", 6), 0);
        CHECK_EQ(tally__store_stripe(s, "by-name", 7), 0);
        struct cpu_worker w = {s, h};
        check_threads_run(4, cpu_adder, &w, 0);
        CHECK_EQ(tally_store_value(s, "handle"), 4 * 20000);
        CHECK_EQ(tally_store_value(s, "by-name"), 4 * 20000);
        tally_store_handle_release(h);
        tally_store_close(s);
        check_clean(path);
    }
    CHECK_EQ(tally__store_test_cpu_source("probe"), 0);
}

/* Keys whose hashes collide in every bit (a test hook masks the hash):
 * collision chains; and keys that collide in all but the root bits: the
 * deepest trie levels. */
static void test_collisions(void)
{
    static const uint64_t masks[] = {0, 0xfff0000000000000ull, 0xfull,
                                     0x8000000000000001ull};
    for (size_t m = 0; m < sizeof masks / sizeof *masks; m++) {
        tally__store_hash_mask(masks[m]);
        tally_store *s = open_new("collide");
        char name[32];
        for (int i = 0; i < 200; i++) {
            snprintf(name, sizeof name, "c-%d", i);
            CHECK_EQ(tally_store_add(s, name, i + 1), 0);
        }
        for (int i = 0; i < 200; i++) {
            snprintf(name, sizeof name, "c-%d", i);
            CHECK_EQ(tally_store_value(s, name), i + 1);
            CHECK_EQ(tally_store_add(s, name, 1), 0);
        }
        CHECK_EQ(tally_store_get(s, "absent", &(int64_t){0}), -ENOENT);
        struct snap sn = take(s);
        CHECK_EQ(sn.n, 200);
        int64_t sum = 0;
        for (size_t i = 0; i < sn.n; i++)
            sum += sn.kv[i].value;
        CHECK_EQ(sum, 200 * 201 / 2 + 200);
        drop(&sn);
        tally_store_close(s);
        check_clean(path);
        /* Reopened with the same mask: all there. */
        CHECK_EQ(tally_store_open(&s, path, NULL), 0);
        CHECK_EQ(tally_store_value(s, "c-199"), 201);
        tally_store_close(s);
        tally__store_hash_mask(~(uint64_t)0);
    }
}

/* ------------------------------------------------------------------ */
/* Bad input: every call, every error, nothing changed                 */
/* ------------------------------------------------------------------ */

static int never(void *ctx, const void *key, size_t len, int64_t value)
{
    (void)ctx;
    (void)key;
    (void)len;
    (void)value;
    CHECK(0);
    return 0;
}

static void test_bad_input(void)
{
    tally_store *s = open_new("bad");
    CHECK_EQ(tally_store_add(s, "x", 1), 0);
    CHECK_EQ(tally_store_add(s, "y", 2), 0);
    struct snap before = take(s);
    static unsigned char big[TALLY_KEY_MAX + 2];
    memset(big, 'b', sizeof big);
    static const size_t long_lens[] = {TALLY_KEY_MAX + 1,
                                       2 * TALLY_KEY_MAX,
                                       UINT32_MAX,
                                       (size_t)UINT32_MAX + 1,
                                       (size_t)UINT32_MAX + 2,
                                       SIZE_MAX / 2,
                                       SIZE_MAX};
    int64_t v = 123;
    tally_store_handle *h = (tally_store_handle *)&v;

    CHECK_EQ(tally_store_add(NULL, "x", 1), -EINVAL);
    CHECK_EQ(tally_store_add(s, NULL, 1), -EINVAL);
    CHECK_EQ(tally_store_add_n(NULL, "x", 1, 1), -EINVAL);
    CHECK_EQ(tally_store_add_n(s, NULL, 0, 1), -EINVAL);
    CHECK_EQ(tally_store_add_n(s, NULL, 7, 1), -EINVAL);
    CHECK_EQ(tally_store_add_n(s, NULL, SIZE_MAX, 1), -EINVAL);
    CHECK_EQ(tally_store_inc(NULL, "x"), -EINVAL);
    CHECK_EQ(tally_store_inc(s, NULL), -EINVAL);
    CHECK_EQ(tally_store_get(NULL, "x", &v), -EINVAL);
    CHECK_EQ(tally_store_get(s, NULL, &v), -EINVAL);
    CHECK_EQ(tally_store_get(s, "x", NULL), -EINVAL);
    CHECK_EQ(tally_store_get_n(s, NULL, 0, &v), -EINVAL);
    CHECK_EQ(tally_store_get_n(s, "x", 1, NULL), -EINVAL);
    CHECK_EQ(v, 123);
    CHECK_EQ(tally_store_value(NULL, "x"), 0);
    CHECK_EQ(tally_store_value(s, NULL), 0);
    CHECK_EQ(tally_store_size(NULL), 0);
    CHECK_EQ(tally_store_foreach(NULL, never, NULL), -EINVAL);
    CHECK_EQ(tally_store_foreach(s, NULL, NULL), -EINVAL);
    CHECK_EQ(tally_store_drain(NULL, never, NULL), -EINVAL);
    CHECK_EQ(tally_store_drain(s, NULL, NULL), -EINVAL);
    CHECK_EQ(tally_store_handle_new(NULL, "x", &h), -EINVAL);
    CHECK_EQ(tally_store_handle_new(s, NULL, &h), -EINVAL);
    CHECK_EQ(tally_store_handle_new(s, "new", NULL), -EINVAL);
    CHECK_EQ(tally_store_handle_new_n(s, NULL, 0, &h), -EINVAL);
    CHECK_EQ(tally_store_handle_new_n(s, "new", 3, NULL), -EINVAL);
    CHECK(h == (tally_store_handle *)&v);
    CHECK_EQ(tally_store_info(NULL, &(struct tally_store_info){0}), -EINVAL);
    CHECK_EQ(tally_store_info(s, NULL), -EINVAL);
    tally_store_close(NULL);
    tally_store_handle_release(NULL);
    for (size_t i = 0; i < sizeof long_lens / sizeof *long_lens; i++) {
        size_t n = long_lens[i];
        CHECK_EQ(tally_store_add_n(s, big, n, 1), -ENAMETOOLONG);
        CHECK_EQ(tally_store_get_n(s, big, n, &v), -ENAMETOOLONG);
        CHECK_EQ(tally_store_handle_new_n(s, big, n, &h), -ENAMETOOLONG);
    }
    big[TALLY_KEY_MAX + 1] = '\0';
    CHECK_EQ(tally_store_add(s, (char *)big, 1), -ENAMETOOLONG);
    CHECK_EQ(tally_store_inc(s, (char *)big), -ENAMETOOLONG);
    CHECK_EQ(tally_store_get(s, (char *)big, &v), -ENAMETOOLONG);
    CHECK_EQ(tally_store_handle_new(s, (char *)big, &h), -ENAMETOOLONG);
    CHECK_EQ(tally_store_value(s, (char *)big), 0);
    CHECK_EQ(v, 123);
    CHECK(h == (tally_store_handle *)&v);

    /* Open: bad arguments and configurations. */
    tally_store *o = (tally_store *)&v;
    struct tally_store_config cfg = {TALLY_STORE_CREATE, 0, 0};
    CHECK_EQ(tally_store_open(NULL, path, NULL), -EINVAL);
    CHECK_EQ(tally_store_open(&o, NULL, NULL), -EINVAL);
    cfg.flags = 0x80;
    CHECK_EQ(tally_store_open(&o, path, &cfg), -EINVAL);
    cfg.flags = TALLY_STORE_CREATE;
    cfg.mode = 010000;
    CHECK_EQ(tally_store_open(&o, path, &cfg), -EINVAL);
    cfg.mode = 0;
    char other[320];
    snprintf(other, sizeof other, "%s/never", dir);
    cfg.max_bytes = 1000; /* below the least size */
    CHECK_EQ(tally_store_open(&o, other, &cfg), -EINVAL);
    cfg.max_bytes = (uint64_t)1 << 60;
    CHECK_EQ(tally_store_open(&o, other, &cfg), -EINVAL);
    CHECK_EQ(access(other, F_OK), -1); /* not created */
    CHECK_EQ(tally_store_open(&o, other, NULL), -ENOENT);
    CHECK_EQ(tally_store_open(&o, "", NULL), -ENOENT);
    CHECK(o == (tally_store *)&v);
    /* An existing store ignores max_bytes. */
    cfg.max_bytes = 1000;
    tally_store *again = NULL;
    CHECK_EQ(tally_store_open(&again, path, &cfg), 0);
    tally_store_close(again);

    struct snap after = take(s);
    same(before, after);
    drop(&before);
    drop(&after);
    tally_store_close(s);
    check_clean(path);
}

/* ------------------------------------------------------------------ */
/* Read-only, limits, reopening                                        */
/* ------------------------------------------------------------------ */

static void test_readonly(void)
{
    tally_store *s = open_new("ro");
    CHECK_EQ(tally_store_add(s, "a", 3), 0);
    CHECK_EQ(tally_store_add(s, "b", 4), 0);
    tally_store_close(s);

    struct tally_store_config ro = {TALLY_STORE_READONLY, 0, 0};
    CHECK_EQ(tally_store_open(&s, path, &ro), 0);
    struct snap before = take(s);
    CHECK_EQ(before.n, 2);
    CHECK_EQ(tally_store_value(s, "a"), 3);
    tally_store_handle *h = NULL;
    CHECK_EQ(tally_store_add(s, "a", 1), -EROFS);
    CHECK_EQ(tally_store_add(s, "new", 1), -EROFS);
    CHECK_EQ(tally_store_inc(s, "a"), -EROFS);
    CHECK_EQ(tally_store_add_n(s, "a", 1, 1), -EROFS);
    CHECK_EQ(tally_store_handle_new(s, "a", &h), -EROFS);
    CHECK(h == NULL);
    CHECK_EQ(tally_store_drain(s, never, NULL), -EROFS);
    CHECK_EQ(tally_store_get(s, "new", &(int64_t){0}), -ENOENT);

    /* A writer elsewhere: the read-only view follows it, growth too. */
    tally_store *w;
    CHECK_EQ(tally_store_open(&w, path, NULL), 0);
    char name[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "grow-%d", i);
        CHECK_EQ(tally_store_add(w, name, i), 0);
    }
    CHECK_EQ(tally_store_value(s, "grow-19999"), 19999);
    CHECK_EQ(tally_store_size(s), 20002);
    struct snap all = take(s);
    CHECK_EQ(all.n, 20002);
    drop(&all);
    drop(&before);
    tally_store_close(w);
    tally_store_close(s);

    /* A file we may only read: read-write gives -EACCES, read-only
     * works (root may write anything: skip that part). */
    CHECK_EQ(chmod(path, 0444), 0);
    if (geteuid() != 0)
        CHECK_EQ(tally_store_open(&s, path, NULL), -EACCES);
    CHECK_EQ(tally_store_open(&s, path, &ro), 0);
    CHECK_EQ(tally_store_value(s, "b"), 4);
    tally_store_close(s);
    check_clean(path);
}

/* Creating past the limit gives -ENOSPC and changes nothing; existing
 * keys keep counting. Space runs out unevenly (a key that needs a new
 * trie node needs 128 bytes more than one landing in an empty slot), so
 * the test fills until 200 new keys in a row have failed. */
static void test_limit(void)
{
    fresh_path("limit");
    struct tally_store_config cfg = {TALLY_STORE_CREATE, 0,
                                     TALLY__STORE_MIN_BYTES};
    tally_store *s;
    CHECK_EQ(tally_store_open(&s, path, &cfg), 0);
    char name[32];
    int made = 0, tried = 0, failed_in_a_row = 0;
    while (failed_in_a_row < 200) {
        snprintf(name, sizeof name, "key-%d", tried++);
        CHECK_LT(tried, 100000);
        struct snap before = take(s);
        int r = tally_store_add(s, name, tried);
        if (r == 0) {
            made++;
            failed_in_a_row = 0;
            drop(&before);
            continue;
        }
        CHECK_EQ(r, -ENOSPC);
        failed_in_a_row++;
        struct snap after = take(s);
        same(before, after); /* nothing changed */
        drop(&before);
        drop(&after);
        CHECK_EQ(tally_store_get(s, name, &(int64_t){0}), -ENOENT);
        tally_store_handle *h = NULL;
        r = tally_store_handle_new(s, name, &h);
        CHECK_EQ(r, -ENOSPC);
        CHECK(h == NULL);
    }
    CHECK_GT(made, 100);
    CHECK_EQ(tally_store_size(s), (size_t)made);
    /* Existing keys keep counting, by name and by handle. */
    int counted = 0;
    for (int i = 0; i < tried; i++) {
        snprintf(name, sizeof name, "key-%d", i);
        int64_t v;
        if (tally_store_get(s, name, &v) != 0)
            continue;
        CHECK_EQ(v, i + 1);
        CHECK_EQ(tally_store_add(s, name, 1000), 0);
        CHECK_EQ(tally_store_value(s, name), i + 1 + 1000);
        tally_store_handle *h;
        CHECK_EQ(tally_store_handle_new(s, name, &h), 0);
        tally_store_handle_add(h, 1);
        tally_store_handle_release(h);
        CHECK_EQ(tally_store_value(s, name), i + 1 + 1001);
        counted++;
    }
    CHECK_EQ(counted, made);
    struct tally_store_info info;
    CHECK_EQ(tally_store_info(s, &info), 0);
    CHECK_EQ(info.max_bytes, TALLY__STORE_MIN_BYTES);
    CHECK_LE(info.file_bytes, TALLY__STORE_MIN_BYTES);
    CHECK_LE(info.used_bytes, TALLY__STORE_MIN_BYTES);
    tally_store_close(s);
    check_clean(path);
}

static void test_reopen(void)
{
    tally_store *s = open_new("reopen");
    CHECK_EQ(tally_store_add(s, "persist", 12345), 0);
    CHECK_EQ(tally__store_stripe(s, "persist", 7), 0);
    CHECK_EQ(tally_store_add(s, "persist", 5), 0);
    struct tally_store_info a, b;
    CHECK_EQ(tally_store_info(s, &a), 0);
    tally_store_close(s);
    CHECK_EQ(tally_store_open(&s, path, &create_cfg), 0); /* exists */
    CHECK_EQ(tally_store_value(s, "persist"), 12350);
    CHECK_EQ(tally_store_info(s, &b), 0);
    CHECK_MEMEQ(a.id, b.id, sizeof a.id);
    CHECK_EQ(a.created_ns, b.created_ns);
    CHECK_EQ(a.cpu_cells, b.cpu_cells);
    CHECK_EQ(b.keys, 1);
    tally_store_close(s);

    /* The same path made again: another id. */
    unlink(path);
    CHECK_EQ(tally_store_open(&s, path, &create_cfg), 0);
    CHECK_EQ(tally_store_info(s, &b), 0);
    CHECK(memcmp(a.id, b.id, sizeof a.id) != 0);
    CHECK_EQ(tally_store_size(s), 0);
    tally_store_close(s);

    /* The mode of a created file: mode & ~umask. */
    mode_t old = umask(022);
    fresh_path("mode");
    struct tally_store_config cfg = {TALLY_STORE_CREATE, 0666, 0};
    CHECK_EQ(tally_store_open(&s, path, &cfg), 0);
    tally_store_close(s);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 0644);
    fresh_path("mode2");
    cfg.mode = 0600;
    CHECK_EQ(tally_store_open(&s, path, &cfg), 0);
    tally_store_close(s);
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 0600);
    umask(old);
}

/* ------------------------------------------------------------------ */
/* Files that are not stores, or are damaged                           */
/* ------------------------------------------------------------------ */

static void write_file(const char *p, const void *data, size_t len)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK_GE(fd, 0);
    CHECK_EQ(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static unsigned char *read_file(const char *p, size_t *len)
{
    int fd = open(p, O_RDONLY);
    CHECK_GE(fd, 0);
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    unsigned char *buf = malloc((size_t)st.st_size);
    CHECK(buf != NULL);
    CHECK_EQ(read(fd, buf, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static void fix_sum(unsigned char *file)
{
    uint64_t sum = tally__store_header_sum(file);
    memcpy(file + TALLY__STORE_SUMMED, &sum, 8);
}

static int lines;
static void count_line(void *ctx, const char *line)
{
    (void)ctx;
    (void)line;
    lines++;
}

/* Opening (read-write and read-only) and checking the file at p give
 * want; check says why in at least one line. */
static void expect_refused(const char *p, int want)
{
    tally_store *s = (tally_store *)&lines;
    struct tally_store_config ro = {TALLY_STORE_READONLY, 0, 0};
    CHECK_EQ(tally_store_open(&s, p, NULL), want);
    CHECK_EQ(tally_store_open(&s, p, &ro), want);
    CHECK_EQ(tally_store_open(&s, p, &create_cfg), want);
    CHECK(s == (tally_store *)&lines);
    lines = 0;
    CHECK_EQ(tally_store_check(p, count_line, NULL), want);
    CHECK_GE(lines, 1);
}

static void test_not_stores(void)
{
    char p[320];
    snprintf(p, sizeof p, "%s/text", dir);
    const char text[] = "hello, this is not a tally store\n";
    write_file(p, text, sizeof text - 1);
    expect_refused(p, TALLY_ENOTSTORE);
    write_file(p, "", 0);
    expect_refused(p, TALLY_ENOTSTORE);
    write_file(p, "\x89tal", 4);
    expect_refused(p, TALLY_ENOTSTORE);
    /* A directory. */
    struct tally_store_config ro = {TALLY_STORE_READONLY, 0, 0};
    tally_store *s;
    CHECK_EQ(tally_store_open(&s, dir, &ro), TALLY_ENOTSTORE);
    CHECK_EQ(tally_store_open(&s, dir, NULL), -EISDIR);

    /* A real store, then damaged copies of it. */
    s = open_new("orig");
    CHECK_EQ(tally_store_add(s, "k", 1), 0);
    tally_store_close(s);
    size_t len;
    unsigned char *orig = read_file(path, &len);
    unsigned char *f = malloc(len);
    CHECK(f != NULL);
    struct tally__store_header h;

#define DAMAGE(what, want)                                                  \
    do {                                                                    \
        memcpy(f, orig, len);                                               \
        what;                                                               \
        write_file(p, f, len);                                              \
        expect_refused(p, want);                                            \
    } while (0)

    /* Only the magic and a few bytes. */
    memcpy(f, orig, 100);
    write_file(p, f, 100);
    expect_refused(p, TALLY_ECORRUPT);
    /* Another major version; a newer minor is fine. */
    DAMAGE(memcpy(f + offsetof(struct tally__store_header, major),
                  &(uint16_t){2}, 2);
           fix_sum(f), TALLY_EVERSION);
    memcpy(f, orig, len);
    memcpy(f + offsetof(struct tally__store_header, minor), &(uint16_t){7}, 2);
    fix_sum(f);
    write_file(p, f, len);
    CHECK_EQ(tally_store_open(&s, p, NULL), 0);
    struct tally_store_info info;
    CHECK_EQ(tally_store_info(s, &info), 0);
    CHECK_EQ(info.format_minor, 7);
    CHECK_EQ(tally_store_value(s, "k"), 1);
    tally_store_close(s);
    /* The other byte order; another word size; another alignment. */
    DAMAGE(memcpy(f + 8, &(uint32_t){0x04030201}, 4), TALLY_ELAYOUT);
    DAMAGE(f[offsetof(struct tally__store_header, ptr_size)] = 4;
           fix_sum(f), TALLY_ELAYOUT);
    DAMAGE(f[offsetof(struct tally__store_header, u64_align)] = 4;
           fix_sum(f), TALLY_ELAYOUT);
    /* Another hash function (the check value disagrees). */
    DAMAGE(f[offsetof(struct tally__store_header, hash_check)] ^= 1;
           fix_sum(f), TALLY_EVERSION);
    /* Damage the checksum catches: any byte of 0..119. */
    DAMAGE(f[offsetof(struct tally__store_header, seed) + 3] ^= 0x10,
           TALLY_ECORRUPT);
    DAMAGE(f[offsetof(struct tally__store_header, cpu_cells)] ^= 1,
           TALLY_ECORRUPT);
    DAMAGE(f[8] ^= 0x40, TALLY_ECORRUPT);
    DAMAGE(f[offsetof(struct tally__store_header, ptr_size)] = 4,
           TALLY_ECORRUPT); /* damage, not another machine */
    /* Damage with a good checksum: fields out of range. */
    DAMAGE(f[offsetof(struct tally__store_header, cpu_cells)] = 3;
           fix_sum(f), TALLY_ECORRUPT);
    DAMAGE(f[offsetof(struct tally__store_header, root_bits)] = 13;
           fix_sum(f), TALLY_ECORRUPT);
    DAMAGE(memcpy(f + offsetof(struct tally__store_header, max_bytes),
                  &(uint64_t){1000}, 8);
           fix_sum(f), TALLY_ECORRUPT);
    DAMAGE(memcpy(f + offsetof(struct tally__store_header, data_start),
                  &(uint64_t){4096}, 8);
           fix_sum(f), TALLY_ECORRUPT);
    DAMAGE(memcpy(f + offsetof(struct tally__store_header, entry_head),
                  &(uint16_t){40}, 2);
           fix_sum(f), TALLY_ECORRUPT);
    /* 'used' out of range (the mutable words are not summed). */
    DAMAGE(memcpy(f + offsetof(struct tally__store_header, used),
                  &(uint64_t){1}, 8), TALLY_ECORRUPT);
    DAMAGE(memcpy(f + offsetof(struct tally__store_header, used),
                  &(uint64_t){(uint64_t)1 << 50}, 8), TALLY_ECORRUPT);
    /* Truncated: inside the root, then below 'used'. */
    memcpy(&h, orig, sizeof h);
    write_file(p, orig, 4096);
    expect_refused(p, TALLY_ECORRUPT);
    uint64_t used = atomic_load(&h.used);
    CHECK_GT(used, h.data_start);
    write_file(p, orig, (size_t)used - 16);
    expect_refused(p, TALLY_ECORRUPT);
    /* Truncated to exactly 'used': still a sound store. */
    write_file(p, orig, (size_t)used);
    CHECK_EQ(tally_store_open(&s, p, NULL), 0);
    CHECK_EQ(tally_store_value(s, "k"), 1);
    CHECK_EQ(tally_store_add(s, "grows", 2), 0); /* grows it again */
    tally_store_close(s);
    check_clean(p);
#undef DAMAGE
    free(f);
    free(orig);
}

/* Damage inside the index: calls give TALLY_ECORRUPT, never a crash;
 * check names the problem. */
static void test_damaged_index(void)
{
    tally_store *s = open_new("damaged");
    char name[16];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof name, "k%d", i);
        CHECK_EQ(tally_store_add(s, name, i), 0);
    }
    tally_store_close(s);
    size_t len;
    unsigned char *orig = read_file(path, &len);
    struct tally__store_header h;
    memcpy(&h, orig, sizeof h);
    /* Find a used root slot, and the slot k7's path starts at. */
    uint64_t *root = (uint64_t *)(void *)(orig + h.root_off);
    size_t nroot = (size_t)1 << h.root_bits, used_slot = nroot;
    for (size_t i = 0; i < nroot && used_slot == nroot; i++)
        if (root[i] != 0)
            used_slot = i;
    CHECK_LT(used_slot, nroot);
    static const uint64_t bad[] = {
        3,                            /* a node in the header */
        ((uint64_t)1 << 40),          /* beyond the file */
        ((uint64_t)1 << 40) + 1,      /* a node beyond the file */
        8,                            /* misaligned entry, in the header */
        33280 + 8,                    /* misaligned */
        0xffffffffffffff00ull,        /* far away */
    };
    char p[320];
    snprintf(p, sizeof p, "%s/damaged-copy", dir);
    for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        uint64_t keep = root[used_slot];
        root[used_slot] = bad[b];
        write_file(p, orig, len);
        root[used_slot] = keep;
        CHECK_EQ(tally_store_open(&s, p, NULL), 0); /* open does not walk */
        struct snap sn = {0};
        CHECK_EQ(tally_store_foreach(s, snap_visit, &sn), TALLY_ECORRUPT);
        drop(&sn);
        int corrupt = 0;
        for (int i = 0; i < 50; i++) {
            snprintf(name, sizeof name, "k%d", i);
            int64_t v;
            int r = tally_store_get(s, name, &v);
            if (r == TALLY_ECORRUPT) {
                corrupt++;
                CHECK_EQ(tally_store_add(s, name, 1), TALLY_ECORRUPT);
            } else {
                CHECK_EQ(r, 0);
                CHECK_EQ(v, i);
            }
        }
        CHECK_GE(corrupt, 1);
        tally_store_close(s);
        lines = 0;
        CHECK_EQ(tally_store_check(p, count_line, NULL), TALLY_ECORRUPT);
        CHECK_GE(lines, 1);
    }
    /* A slot pointing to another key's entry: that key is then in the
     * wrong place (its hash leads elsewhere); foreach refuses it rather
     * than visit a key twice. */
    size_t other = nroot;
    for (size_t i = used_slot + 1; i < nroot && other == nroot; i++)
        if (root[i] != 0 && !(root[i] & 1))
            other = i;
    if (other < nroot) {
        uint64_t keep = root[used_slot];
        root[used_slot] = root[other];
        write_file(p, orig, len);
        root[used_slot] = keep;
        CHECK_EQ(tally_store_open(&s, p, NULL), 0);
        struct snap sn = {0};
        CHECK_EQ(tally_store_foreach(s, snap_visit, &sn), TALLY_ECORRUPT);
        drop(&sn);
        tally_store_close(s);
        CHECK_EQ(tally_store_check(p, NULL, NULL), TALLY_ECORRUPT);
    }
    free(orig);
}

/* ------------------------------------------------------------------ */
/* Processes                                                           */
/* ------------------------------------------------------------------ */

static void wait_ok(pid_t pid)
{
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "child %d: status 0x%x\n", (int)pid, status);
        CHECK(0);
    }
}

static void test_fork(void)
{
    tally_store *s = open_new("fork");
    tally_store_handle *h;
    CHECK_EQ(tally_store_handle_new(s, "shared", &h), 0);
    CHECK_EQ(tally_store_add(s, "parent", 1), 0);
    /* Two children and the parent count into one key at once; a child
     * also creates keys (growing the file), which the parent then sees. */
    pid_t kids[2];
    for (int c = 0; c < 2; c++) {
        kids[c] = fork();
        CHECK_GE(kids[c], 0);
        if (kids[c] == 0) {
            for (int i = 0; i < 100000; i++) {
                tally_store_handle_inc(h);
                if (i % 10 == 0)
                    tally_store_inc(s, "shared");
            }
            char name[32];
            for (int i = 0; i < 5000; i++) {
                snprintf(name, sizeof name, "child%d-%d", c, i);
                if (tally_store_add(s, name, i) != 0)
                    _exit(1);
            }
            tally_store_handle_release(h);
            tally_store_close(s);
            _exit(0);
        }
    }
    for (int i = 0; i < 100000; i++)
        tally_store_handle_inc(h);
    for (int c = 0; c < 2; c++)
        wait_ok(kids[c]);
    CHECK_EQ(tally_store_value(s, "shared"), 3 * 100000 + 2 * 10000);
    CHECK_EQ(tally_store_value(s, "child1-4999"), 4999);
    CHECK_EQ(tally_store_size(s), 2 + 2 * 5000);
    tally_store_handle_release(h);
    tally_store_close(s);
    check_clean(path);
}

/* N processes open (creating) the same path at the same instant; each
 * counts; one store ends up with everything, and no stray file. */
static void test_create_race(void)
{
    enum { N = 8, ADDS = 1000 };
    for (int round = 0; round < 5; round++) {
        fresh_path("race");
        int go[2];
        CHECK_EQ(pipe(go), 0);
        pid_t kids[N];
        for (int c = 0; c < N; c++) {
            kids[c] = fork();
            CHECK_GE(kids[c], 0);
            if (kids[c] == 0) {
                char b;
                close(go[1]);
                if (read(go[0], &b, 1) != 0) /* EOF: all start */
                    _exit(3);
                tally_store *s;
                if (tally_store_open(&s, path, &create_cfg) != 0)
                    _exit(1);
                char name[32];
                snprintf(name, sizeof name, "child-%d", c);
                for (int i = 0; i < ADDS; i++)
                    if (tally_store_inc(s, "k") != 0 ||
                        tally_store_inc(s, name) != 0)
                        _exit(2);
                tally_store_close(s);
                _exit(0);
            }
        }
        close(go[0]);
        close(go[1]);
        for (int c = 0; c < N; c++)
            wait_ok(kids[c]);
        tally_store *s;
        CHECK_EQ(tally_store_open(&s, path, NULL), 0);
        CHECK_EQ(tally_store_value(s, "k"), N * ADDS);
        CHECK_EQ(tally_store_size(s), N + 1);
        for (int c = 0; c < N; c++) {
            char name[32];
            snprintf(name, sizeof name, "child-%d", c);
            CHECK_EQ(tally_store_value(s, name), ADDS);
        }
        tally_store_close(s);
        check_clean(path);
    }
    /* The directory holds only what the tests made: no temporary files
     * left behind by the losers. */
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        CHECK(strstr(de->d_name, ".tmp-") == NULL);
    closedir(d);
}

/* ------------------------------------------------------------------ */

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    char p[600];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/test_store.XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);

    test_basic();
    test_many_keys();
    test_foreach();
    test_drain();
    test_handles();
    test_cells();
    test_contention();
    test_cpu_sources();
    test_collisions();
    test_bad_input();
    test_readonly();
    test_limit();
    test_reopen();
    test_not_stores();
    test_damaged_index();
    test_fork();
    test_create_race();

    remove_dir();
    printf("test_store: ok\n");
    return 0;
}
