/*
 * stress_store.c - tally_store under P processes x T threads: closed-form
 * totals, exactly.
 *
 * PROCS processes share one store, THREADS threads each. Every thread
 * runs the same deterministic sequence of operations (seeded by its
 * process and thread number), so the parent can compute what every key
 * must hold:
 *
 *   - adds to one hot key, by handle and by name (the hot key gets
 *     striped by contention, or not: either way the total is exact);
 *   - adds to a second hot key that one thread stripes (a test hook)
 *     while the others are adding to it: adds race with the stripe's
 *     publication;
 *   - adds of varied deltas (negative ones too) to KEYS shared keys;
 *   - inserts of new keys of its own (inserts race with each other and
 *     with expansions of the same trie nodes, and the file grows while
 *     others add).
 *
 * Meanwhile, in every other process, one more thread drains the store
 * over and over and adds up what each drain hands it, and one reads it
 * with foreach, checking that no key is ever visited twice and that no
 * key present before is missed. At the end every process sends its
 * drained amounts to the parent through a pipe, and for every key
 *
 *     sum of all drained amounts + the value left == the sum of its adds
 *
 * exactly; the size is exact, and tally_store_check finds nothing.
 *
 * TALLY_STRESS_SCALE multiplies the operations ('make stress').
 */
#include "tally.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

enum { PROCS = 3, THREADS = 2, KEYS = 256, OWN_EVERY = 16 };

static char path[300];
static long ops; /* per thread */

/* What a key's name is: index 0 hot, 1 hot2, 2 .. KEYS+1 shared. */
static void key_name(int k, char *buf, size_t size)
{
    if (k == 0)
        snprintf(buf, size, "hot");
    else if (k == 1)
        snprintf(buf, size, "hot2");
    else
        snprintf(buf, size, "shared/%03d", k - 2);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ull;
    x ^= x >> 29;
    return x;
}

/* The i-th operation of thread t of process p: which key, what delta.
 * Deltas are small, signed, and sometimes large. */
static void op_of(int p, int t, long i, int *key, int64_t *delta)
{
    uint64_t r = mix((uint64_t)p << 48 ^ (uint64_t)t << 40 ^ (uint64_t)i);
    int sel = (int)(r % 8);
    if (sel < 3)
        *key = 0;
    else if (sel < 5)
        *key = 1;
    else
        *key = 2 + (int)((r >> 8) % KEYS);
    *delta = (int64_t)((r >> 20) % 7) - 2; /* -2 .. 4 */
    if ((r >> 40) % 101 == 0)
        *delta = (int64_t)(r >> 1) - INT64_MAX / 2; /* big, wraps */
}

/* ------------------------------------------------------------------ */
/* In the children                                                     */
/* ------------------------------------------------------------------ */

struct child {
    tally_store *s;
    int proc;
    _Atomic(int) adders_left;
    /* Drained sums per key (index as key_name), own keys summed apart. */
    uint64_t drained[KEYS + 2];
    uint64_t drained_own;
    long drains, reads;
};

struct worker {
    struct child *c;
    int thread;
};

static void *adder(void *arg)
{
    struct worker *w = arg;
    struct child *c = w->c;
    tally_store_handle *hot;
    CHECK_EQ(tally_store_handle_new(c->s, "hot", &hot), 0);
    char name[64];
    for (long i = 0; i < ops; i++) {
        int k;
        int64_t d;
        op_of(c->proc, w->thread, i, &k, &d);
        if (k == 0 && i % 2 == 0) {
            tally_store_handle_add(hot, d);
        } else {
            key_name(k, name, sizeof name);
            CHECK_EQ(tally_store_add(c->s, name, d), 0);
        }
        if (i % OWN_EVERY == 0) {
            snprintf(name, sizeof name, "own/%d/%d/%ld", c->proc, w->thread,
                     i);
            CHECK_EQ(tally_store_add(c->s, name, 1), 0);
        }
        /* One thread stripes hot2 a third of the way through, while
         * everyone is adding to it. */
        if (c->proc == 1 && w->thread == 0 && i == ops / 3)
            CHECK_EQ(tally__store_stripe(c->s, "hot2", 4), 0);
    }
    tally_store_handle_release(hot);
    tally_atomic_fetch_sub(&c->adders_left, 1, release);
    return NULL;
}

static int index_of(const void *key, size_t len)
{
    char name[64];
    if (len >= 4 && memcmp(key, "own/", 4) == 0)
        return -1;
    for (int k = 0; k < KEYS + 2; k++) {
        key_name(k, name, sizeof name);
        if (strlen(name) == len && memcmp(name, key, len) == 0)
            return k;
    }
    CHECK(!"a key nobody added");
    return -2;
}

static int drain_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    struct child *c = ctx;
    CHECK_NE(v, 0);
    int k = index_of(key, len);
    if (k < 0)
        c->drained_own += (uint64_t)v;
    else
        c->drained[k] += (uint64_t)v;
    return 0;
}

struct seen {
    size_t n, cap;
    struct tally__store_entry **e;
};

/* Key pointers point into the mapping, so two visits of one key pass
 * the same pointer: duplicates show up as equal pointers. */
static int read_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    (void)len;
    (void)v;
    struct seen *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->e = realloc(s->e, s->cap * sizeof *s->e);
        CHECK(s->e != NULL);
    }
    s->e[s->n++] = (struct tally__store_entry *)(uintptr_t)key;
    return 0;
}

static int ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a;
    uintptr_t y = (uintptr_t)*(void *const *)b;
    return (x > y) - (x < y);
}

static void *drainer(void *arg)
{
    struct child *c = arg;
    /* Acquire: pairs with the adders' release decrements, though the
     * count orders nothing the test relies on; it only ends the loop. */
    while (tally_atomic_load(&c->adders_left, acquire) > 0 || c->drains < 3) {
        CHECK_EQ(tally_store_drain(c->s, drain_visit, c), 0);
        c->drains++;
    }
    return NULL;
}

static void *reader(void *arg)
{
    struct child *c = arg;
    struct seen s = {0};
    while (tally_atomic_load(&c->adders_left, acquire) > 0 || c->reads < 3) {
        s.n = 0;
        size_t before = tally_store_size(c->s);
        CHECK_EQ(tally_store_foreach(c->s, read_visit, &s), 0);
        CHECK_GE(s.n, before); /* present before: all visited */
        if (s.n > 1)
            qsort(s.e, s.n, sizeof *s.e, ptr_cmp);
        for (size_t i = 1; i < s.n; i++)
            CHECK(s.e[i - 1] != s.e[i]); /* none twice */
        c->reads++;
    }
    free(s.e);
    return NULL;
}

static void *run_adders(void *arg)
{
    struct worker *w = arg;
    check_threads_run(THREADS, adder, w, sizeof *w);
    return NULL;
}

static void child_main(int proc, int out_fd)
{
    static struct child c;
    memset(&c, 0, sizeof c);
    CHECK_EQ(tally_store_open(&c.s, path, NULL), 0);
    c.proc = proc;
    atomic_init(&c.adders_left, THREADS);
    struct worker w[THREADS];
    for (int t = 0; t < THREADS; t++)
        w[t] = (struct worker){&c, t};
    pthread_t adders, drain, read;
    CHECK_EQ(pthread_create(&adders, NULL, run_adders, w), 0);
    if (proc != 0) {
        CHECK_EQ(pthread_create(&drain, NULL, drainer, &c), 0);
        CHECK_EQ(pthread_create(&read, NULL, reader, &c), 0);
        CHECK_EQ(pthread_join(drain, NULL), 0);
        CHECK_EQ(pthread_join(read, NULL), 0);
    }
    CHECK_EQ(pthread_join(adders, NULL), 0);
    /* What this process drained, to the parent. */
    CHECK_EQ(write(out_fd, c.drained, sizeof c.drained),
             (ssize_t)sizeof c.drained);
    CHECK_EQ(write(out_fd, &c.drained_own, 8), 8);
    CHECK_EQ(write(out_fd, &c.drains, sizeof c.drains),
             (ssize_t)sizeof c.drains);
    tally_store_close(c.s);
    _exit(0);
}

/* ------------------------------------------------------------------ */

static void read_full(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        CHECK_GT(n, 0);
        p += n;
        len -= (size_t)n;
    }
}

static int total_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    uint64_t *left = ctx;
    int k = index_of(key, len);
    if (k < 0)
        left[KEYS + 2] += (uint64_t)v;
    else
        left[k] += (uint64_t)v;
    return 0;
}

int main(void)
{
    ops = 200000L * (long)check_scale();
#if defined(TALLY_TSAN)
    ops /= 4;
#endif
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/stress_store.%d",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp", (int)getpid());
    unlink(path);
    tally_store *s;
    struct tally_store_config cfg = {TALLY_STORE_CREATE, 0600, 0};
    CHECK_EQ(tally_store_open(&s, path, &cfg), 0);

    uint64_t t0 = check_now_ns();
    int fds[PROCS][2];
    pid_t kids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        CHECK_EQ(pipe(fds[p]), 0);
        kids[p] = fork();
        CHECK_GE(kids[p], 0);
        if (kids[p] == 0) {
            close(fds[p][0]);
            child_main(p, fds[p][1]);
        }
        close(fds[p][1]);
    }

    /* What every key must hold, from the sequences. */
    uint64_t want[KEYS + 3] = {0};
    for (int p = 0; p < PROCS; p++)
        for (int t = 0; t < THREADS; t++)
            for (long i = 0; i < ops; i++) {
                int k;
                int64_t d;
                op_of(p, t, i, &k, &d);
                want[k] += (uint64_t)d;
                if (i % OWN_EVERY == 0)
                    want[KEYS + 2] += 1;
            }

    uint64_t got[KEYS + 3] = {0};
    long drains = 0;
    for (int p = 0; p < PROCS; p++) {
        uint64_t d[KEYS + 3];
        long n;
        read_full(fds[p][0], d, sizeof d);
        read_full(fds[p][0], &n, sizeof n);
        for (int k = 0; k < KEYS + 3; k++)
            got[k] += d[k];
        drains += n;
        close(fds[p][0]);
        int status;
        CHECK_EQ(waitpid(kids[p], &status, 0), kids[p]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    uint64_t t1 = check_now_ns();

    /* drained + left == added, for every key and for the own keys. */
    CHECK_EQ(tally_store_foreach(s, total_visit, got), 0);
    for (int k = 0; k < KEYS + 3; k++) {
        if (got[k] != want[k])
            fprintf(stderr, "key %d: drained + left %llu, added %llu\n", k,
                    (unsigned long long)got[k], (unsigned long long)want[k]);
        CHECK_EQ(got[k], want[k]);
    }
    long own = 0;
    for (long i = 0; i < ops; i += OWN_EVERY)
        own++;
    CHECK_EQ(tally_store_size(s), 2 + KEYS + (size_t)(own * PROCS * THREADS));
    CHECK_EQ(tally__store_striped(s, "hot2", 4), 1);
    int hot_striped = tally__store_striped(s, "hot", 3);
    struct tally_store_info info;
    CHECK_EQ(tally_store_info(s, &info), 0);
    tally_store_close(s);
    CHECK_EQ(tally_store_check(path, NULL, NULL), 0);
    unlink(path);

    printf("stress_store: %d processes x %d threads x %ld ops, %ld drains, "
           "%zu keys, %.0f ms, hot key striped by contention: %s, "
           "%.1f bytes of file per key\n",
           PROCS, THREADS, ops, drains, (size_t)info.keys,
           (double)(t1 - t0) / 1e6, hot_striped ? "yes" : "no",
           (double)info.file_bytes / (double)info.keys);
    return 0;
}
