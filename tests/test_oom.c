/*
 * test_oom.c - out-of-memory handling: every allocation of an operation
 * sequence is made to fail in turn.
 *
 * For each sequence and N = 0, 1, 2, ...: tally__alloc_fail_after(N) (the
 * first N allocations succeed, every later one fails), run the sequence,
 * checking every call: it returns 0 or -ENOMEM (never -ENOMEM unless an
 * allocation really failed), or, for the calls that cannot fail (adds), it
 * still counts. After a failed call the state is what it was before the
 * call (size, every key's value, the failed key absent) and everything
 * still present is exact. Then failures are turned off, the final values
 * are checked exactly, and everything is freed. The loop stops at the
 * first N with which the sequence made no more than N allocation attempts:
 * it then ran with no failure at all.
 *
 * Two modes:
 *   fresh  each N runs in a forked child, so every run starts from the
 *          same state (no thread record, no cell block, no id ever
 *          allocated) and the runs enumerate the sequence's allocation
 *          points exactly, the process-wide lazy ones included. The child
 *          exits through exit(), so under ASan LeakSanitizer checks it
 *          for leaks, and its exit status is checked.
 *   warm   each N runs in this process, after the others: thread records
 *          and cell blocks are reused, ids come from the free stack.
 *          LeakSanitizer checks the whole process at exit.
 * In both modes the sequences start threads inside the loop, so a thread's
 * first use (record, cell block) happens with the hook armed.
 *
 * The thread-record allocation is a fallback path: a thread that cannot
 * get one still counts (locked and shared paths). foreach and drain need
 * the record and return -ENOMEM without it (see docs/reliability.md:
 * tally.h does not list -ENOMEM for them).
 */
#include "tally.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "check.h"
#include "hash.h"

/* ---- the hook, as seen by a sequence -------------------------------- */

static int64_t g_budget = -1;  /* N, or -1 when failures are off */
static uint64_t g_base;        /* tally__alloc_count() when armed */
static uint64_t g_enomem;      /* calls that returned -ENOMEM */

static void hook_arm(int64_t n)
{
    g_budget = n;
    g_base = tally__alloc_count();
    tally__alloc_fail_after(n);
}

/* Allocation attempts since hook_arm(). */
static uint64_t hook_attempts(void)
{
    return tally__alloc_count() - g_base;
}

/* Whether some allocation has failed since hook_arm(). */
static bool hook_failed(void)
{
    return g_budget >= 0 && hook_attempts() > (uint64_t)g_budget;
}

static void hook_off(void)
{
    tally__alloc_fail_after(-1);
    g_budget = -1;
}

/* A fallible call's result: 0, or -ENOMEM when an allocation failed. */
static bool ok_or_nomem(int rc, int line)
{
    if (rc == 0)
        return true;
    if (rc != -ENOMEM || !hook_failed())
        fprintf(stderr, "test_oom: line %d: rc %d (%s), allocation %s\n",
                line, rc, tally_strerror(rc),
                hook_failed() ? "failed" : "did not fail");
    CHECK_EQ(rc, -ENOMEM);
    CHECK(hook_failed());
    g_enomem++;
    return false;
}
#define OK_OR_NOMEM(rc) ok_or_nomem((rc), __LINE__)

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, fn, arg), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
}

/* ---- sequence 1: adder ---------------------------------------------- */

static void *adder_thread(void *arg)
{
    tally_adder *a = arg;
    for (int i = 1; i <= 100; i++)
        tally_adder_add(a, i); /* never fails: record or not, block or not */
    return NULL;
}

static void seq_adder(void)
{
    tally_adder *a = NULL, *b = NULL;
    if (!OK_OR_NOMEM(tally_adder_new(&a))) {
        CHECK(a == NULL);
        hook_off();
        return;
    }
    tally_adder_add(a, 5);
    tally_adder_inc(a);
    CHECK_EQ(tally_adder_sum(a), 6);
    run_thread(adder_thread, a); /* a fresh thread: record, cell block */
    CHECK_EQ(tally_adder_sum(a), 6 + 5050);
    if (OK_OR_NOMEM(tally_adder_new(&b))) {
        tally_adder_add(b, -3);
        run_thread(adder_thread, b);
        CHECK_EQ(tally_adder_sum(b), 5047);
        CHECK_EQ(tally_adder_sum(a), 5056); /* a is not disturbed */
    } else {
        CHECK(b == NULL);
    }
    CHECK_EQ(tally_adder_drain(a), 5056);
    CHECK_EQ(tally_adder_sum(a), 0);
    tally_adder_add(a, 1);
    hook_off();
    CHECK_EQ(tally_adder_sum(a), 1);
    tally_adder_free(a);
    tally_adder_free(b);
}

/* ---- sequence 2: map new -------------------------------------------- */

static void seq_map_new(void)
{
    tally_map *m = NULL;
    if (OK_OR_NOMEM(tally_map_new(&m))) {
        CHECK_EQ(tally_map_size(m), 0);
        int64_t v = 5;
        CHECK_EQ(tally_map_get(m, "k", &v), -ENOENT);
        CHECK_EQ(v, 5);
    } else {
        CHECK(m == NULL);
    }
    hook_off();
    tally_map_free(m);
}

/* ---- sequence 3: a map's whole life --------------------------------- */

/* NKEYS keys that all fall in one shard, so that inserting them resizes
 * that shard's table several times (16 -> 32 -> 64 -> 128 -> 256 slots),
 * plus a few keys anywhere. */
#define NSHARD_KEYS 100
#define NKEYS (NSHARD_KEYS + 3)
#define KEY_THREAD (NSHARD_KEYS)     /* created by a fresh thread */
#define KEY_HANDLE (NSHARD_KEYS + 1) /* created by a handle */
#define KEY_ABSENT (NSHARD_KEYS + 2) /* never created */

struct key {
    char bytes[32];
    size_t len;
    bool present;
    int64_t value;   /* the model: the key's exact value */
    int64_t held;    /* handle adds kept by a handle because the removed
                        key could not be created again (tally.h); they
                        reach the key when the handle is released */
};

static struct key g_keys[NKEYS];

/* The secret every map of this test hashes with (tally__seed_force), so
 * that keys_init can pick keys of one shard. */
static const struct tally__seed seed0 = {{1, 2, 3, 4}};

static void keys_init(void)
{
    int n = 0;
    tally__seed_force(&seed0);
    for (unsigned i = 0; n < NSHARD_KEYS; i++) {
        char buf[32];
        /* Every other key is longer than the 16 bytes a table slot holds,
         * so that it needs an allocation of its own. */
        int len = snprintf(buf, sizeof(buf),
                           n % 2 ? "oom-key-%u-long-enough" : "oom-key-%u",
                           i);
        if (tally__hash(&seed0, buf, (size_t)len) >> 58 != 0) /* shard 0 only */
            continue;
        memcpy(g_keys[n].bytes, buf, (size_t)len + 1);
        g_keys[n++].len = (size_t)len;
    }
    static const char *extra[] = {"made-by-a-fresh-thread", "made-by-handle",
                                  "never-created"};
    for (int i = 0; i < 3; i++) {
        g_keys[NSHARD_KEYS + i].len = strlen(extra[i]);
        memcpy(g_keys[NSHARD_KEYS + i].bytes, extra[i],
               g_keys[NSHARD_KEYS + i].len + 1);
    }
}

static void model_reset(void)
{
    for (int i = 0; i < NKEYS; i++) {
        g_keys[i].present = false;
        g_keys[i].value = g_keys[i].held = 0;
    }
}

static size_t model_size(void)
{
    size_t n = 0;
    for (int i = 0; i < NKEYS; i++)
        n += g_keys[i].present;
    return n;
}

static int model_find(const void *key, size_t len)
{
    for (int i = 0; i < NKEYS; i++)
        if (g_keys[i].len == len && memcmp(g_keys[i].bytes, key, len) == 0)
            return i;
    return -1;
}

struct seen {
    int count[NKEYS];
    int64_t value[NKEYS];
};

static int seen_visit(void *ctx, const void *key, size_t len, int64_t value)
{
    struct seen *s = ctx;
    int i = model_find(key, len);
    CHECK_GE(i, 0); /* no key the model does not know */
    s->count[i]++;
    s->value[i] = value;
    return 0;
}

/* The map holds exactly the model: size, every key by get, and the set
 * foreach visits. */
static void check_model(tally_map *m)
{
    for (int i = 0; i < NKEYS; i++) {
        struct key *k = &g_keys[i];
        int64_t v = INT64_MIN;
        int rc = tally_map_get_n(m, k->bytes, k->len, &v);
        if (rc != (k->present ? 0 : -ENOENT) || (rc == 0 && v != k->value))
            fprintf(stderr, "key %s: rc %d value %lld, model %s %lld\n",
                    k->bytes, rc, (long long)v,
                    k->present ? "present" : "absent", (long long)k->value);
        CHECK_EQ(rc, k->present ? 0 : -ENOENT);
        if (rc == 0)
            CHECK_EQ(v, k->value);
    }
    CHECK_EQ(tally_map_size(m), model_size());

    struct seen s;
    memset(&s, 0, sizeof(s));
    int rc = tally_map_foreach(m, seen_visit, &s);
    if (!OK_OR_NOMEM(rc)) {
        for (int i = 0; i < NKEYS; i++)
            CHECK_EQ(s.count[i], 0); /* -ENOMEM: nothing visited */
        return;
    }
    for (int i = 0; i < NKEYS; i++) {
        CHECK_EQ(s.count[i], g_keys[i].present ? 1 : 0);
        if (s.count[i])
            CHECK_EQ(s.value[i], g_keys[i].value);
    }
}

/* Adds delta to key i by name, checking the call against the model. */
static void model_add(tally_map *m, int i, int64_t delta)
{
    struct key *k = &g_keys[i];
    size_t size = tally_map_size(m);
    int rc = tally_map_add_n(m, k->bytes, k->len, delta);
    if (k->present) {
        CHECK_EQ(rc, 0); /* adds to an existing key never fail */
    } else if (!OK_OR_NOMEM(rc)) {
        /* Nothing changed: the key is still absent, the size the same. */
        int64_t v = 99;
        CHECK_EQ(tally_map_get_n(m, k->bytes, k->len, &v), -ENOENT);
        CHECK_EQ(v, 99);
        CHECK_EQ(tally_map_size(m), size);
        return;
    }
    k->present = true;
    k->value += delta;
}

static void *map_thread(void *arg)
{
    tally_map *m = arg;
    /* Existing keys (never fail) and one new key, from a thread whose
     * record and cell block are allocated here. */
    for (int i = 0; i < NSHARD_KEYS; i += 3)
        model_add(m, i, 1000);
    model_add(m, KEY_THREAD, 77);
    check_model(m);
    return NULL;
}

struct drained {
    int count[NKEYS];
    int64_t amount[NKEYS];
};

static int drain_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    struct drained *d = ctx;
    int i = model_find(key, len);
    CHECK_GE(i, 0);
    d->count[i]++;
    d->amount[i] = v;
    return 0;
}

#define NHANDLES 4

/* What handles kept (adds to a removed key that could not create it
 * again) reaches the key's next life once the remove has settled and the
 * handle is released: tally_map_sync, with memory back, does both. */
static void sync_held(tally_map *m)
{
    CHECK_EQ(tally_map_sync(m), 0);
    for (int i = 0; i < NKEYS; i++) {
        struct key *k = &g_keys[i];
        if (k->held != 0) {
            k->present = true;
            k->value += k->held;
            k->held = 0;
        }
    }
}

static void seq_map(void)
{
    tally_map *m = NULL;
    tally_handle *h[NHANDLES] = {NULL};
    int hkey[NHANDLES] = {0, 1, 2, KEY_HANDLE};

    model_reset();
    if (!OK_OR_NOMEM(tally_map_new(&m))) {
        hook_off();
        return;
    }

    /* 100 new keys into one shard: entries, ids (free stack growth, adj
     * block), the shard's first table and its resizes. */
    for (int i = 0; i < NSHARD_KEYS; i++) {
        model_add(m, i, i + 1);
        if (i % 10 == 9 || !g_keys[i].present)
            check_model(m);
    }
    check_model(m);
    run_thread(map_thread, m);
    check_model(m);

    /* Handles: on existing keys (may create the key when the add above
     * failed) and on a new key. */
    for (int j = 0; j < NHANDLES; j++) {
        struct key *k = &g_keys[hkey[j]];
        size_t size = tally_map_size(m);
        if (OK_OR_NOMEM(tally_map_handle_n(m, k->bytes, k->len, &h[j]))) {
            k->present = true;
            tally_handle_add(h[j], 10 * (j + 1));
            k->value += 10 * (j + 1);
        } else {
            CHECK(h[j] == NULL);
            CHECK_EQ(tally_map_size(m), size);
            int64_t v;
            if (!k->present)
                CHECK_EQ(tally_map_get_n(m, k->bytes, k->len, &v), -ENOENT);
        }
    }
    check_model(m);

    /* Remove half the keys (those with handles among them), then add
     * through the handles: the adds go to the keys' next lives, created
     * again, or kept by the handle when that fails. */
    for (int i = 0; i < NSHARD_KEYS; i += 2) {
        struct key *k = &g_keys[i];
        int64_t last = 12345;
        int rc = tally_map_remove_n(m, k->bytes, k->len, &last);
        if (k->present && !OK_OR_NOMEM(rc)) {
            /* No room to record the remove's deferred work: nothing
             * changed, the key is still there with its value. */
            CHECK_EQ(last, 12345);
            int64_t v = 0;
            CHECK_EQ(tally_map_get_n(m, k->bytes, k->len, &v), 0);
            CHECK_EQ(v, k->value);
            continue;
        }
        if (k->present) {
            CHECK_EQ(rc, 0);
            CHECK_EQ(last, k->value);
        } else {
            CHECK_EQ(rc, -ENOENT);
            CHECK_EQ(last, 12345);
        }
        k->present = false;
        k->value = 0;
    }
    check_model(m);
    for (int j = 0; j < NHANDLES; j++) {
        if (h[j] == NULL)
            continue;
        struct key *k = &g_keys[hkey[j]];
        size_t size = tally_map_size(m);
        bool was = k->present;
        tally_handle_add(h[j], 3);
        tally_handle_inc(h[j]);
        int64_t v;
        if (!was && tally_map_get_n(m, k->bytes, k->len, &v) == -ENOENT) {
            /* The key could not be created again: the handle keeps the
             * adds until its release, and nothing else changed. */
            CHECK(hook_failed());
            CHECK_EQ(tally_map_size(m), size);
            k->held += 4;
        } else {
            k->present = true;
            k->value += 4;
        }
    }
    check_model(m);

    /* A drain reports each key's exact value once and leaves it at 0. */
    struct drained d;
    memset(&d, 0, sizeof(d));
    int rc = tally_map_drain(m, drain_visit, &d);
    if (OK_OR_NOMEM(rc)) {
        for (int i = 0; i < NKEYS; i++) {
            struct key *k = &g_keys[i];
            CHECK_EQ(d.count[i], k->present && k->value != 0 ? 1 : 0);
            if (d.count[i]) {
                CHECK_EQ(d.amount[i], k->value);
                k->value = 0;
            }
        }
    } else {
        for (int i = 0; i < NKEYS; i++)
            CHECK_EQ(d.count[i], 0);
    }
    check_model(m);
    model_add(m, 1, 5);
    model_add(m, KEY_HANDLE, 6);

    /* Release two handles with failures still on (their kept amounts
     * may have to wait for memory), then settle with memory back. */
    for (int j = 0; j < 2; j++)
        tally_handle_release(h[j]);
    hook_off();
    sync_held(m);
    check_model(m);

    /* Create the other removed key again by name before releasing its
     * handle: the kept amount is added to it. */
    model_add(m, hkey[2], 9);
    check_model(m);
    for (int j = 2; j < NHANDLES; j++)
        tally_handle_release(h[j]);
    sync_held(m);
    check_model(m);
    /* With memory back, everything works and stays exact. */
    for (int i = 0; i < NKEYS - 1; i++)
        model_add(m, i, 1);
    check_model(m);
    tally_map_free(m);
}

/* ---- the loops ------------------------------------------------------- */

struct child_report {
    uint64_t attempts;
    uint64_t enomem;
};

struct seq {
    const char *name;
    void (*run)(void);
};

static const struct seq g_seqs[] = {
    {"adder new/add/drain/free", seq_adder},
    {"map new", seq_map_new},
    {"map add/resize/thread/handle/remove/foreach/drain", seq_map},
};

#define MAX_N 100000

/* Fresh mode: N = 0, 1, ... each in a forked child. Returns the number of
 * allocation points failed (the sequence's allocation count). */
static uint64_t loop_fresh(const struct seq *s, uint64_t *enomem)
{
    struct child_report *rep =
        mmap(NULL, sizeof(*rep), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(rep != MAP_FAILED);
    for (int64_t n = 0; n < MAX_N; n++) {
        rep->attempts = UINT64_MAX;
        fflush(NULL);
        pid_t pid = fork();
        CHECK_GE(pid, 0);
        if (pid == 0) {
            hook_arm(n);
            s->run();
            rep->attempts = hook_attempts();
            rep->enomem = g_enomem;
            hook_off();
            exit(0); /* exit, not _exit: LeakSanitizer checks the child */
        }
        int status = 0;
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "test_oom: %s, fresh, N=%lld: child %s %d\n",
                    s->name, (long long)n,
                    WIFEXITED(status) ? "exited with" : "killed by signal",
                    WIFEXITED(status) ? WEXITSTATUS(status)
                                      : WTERMSIG(status));
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        CHECK(rep->attempts != UINT64_MAX);
        *enomem += rep->enomem;
        if (rep->attempts <= (uint64_t)n) { /* ran with no failure */
            uint64_t points = rep->attempts;
            CHECK_EQ(rep->enomem, 0);
            munmap(rep, sizeof(*rep));
            return points;
        }
    }
    CHECK(!"sequence never completed");
    return 0;
}

/* Warm mode: N = 0, 1, ... in this process. Returns the number of runs
 * with a failed allocation. */
static uint64_t loop_warm(const struct seq *s, uint64_t *enomem)
{
    for (int64_t n = 0; n < MAX_N; n++) {
        g_enomem = 0;
        hook_arm(n);
        s->run();
        uint64_t attempts = hook_attempts();
        hook_off();
        *enomem += g_enomem;
        if (attempts <= (uint64_t)n) {
            CHECK_EQ(g_enomem, 0);
            return (uint64_t)n;
        }
    }
    CHECK(!"sequence never completed");
    return 0;
}

int main(void)
{
    keys_init();
    uint64_t total_fresh = 0, total_warm = 0, enomem = 0;
    const size_t nseq = sizeof(g_seqs) / sizeof(g_seqs[0]);

    /* Fresh mode first, while this process has never used tally. */
    for (size_t i = 0; i < nseq; i++) {
        uint64_t e = 0, p = loop_fresh(&g_seqs[i], &e);
        printf("test_oom: fresh: %-50s %4llu allocation points failed, "
               "%llu calls returned -ENOMEM\n",
               g_seqs[i].name, (unsigned long long)p, (unsigned long long)e);
        total_fresh += p;
        enomem += e;
    }
    for (size_t i = 0; i < nseq; i++) {
        uint64_t e = 0, p = loop_warm(&g_seqs[i], &e);
        printf("test_oom: warm:  %-50s %4llu allocation points failed, "
               "%llu calls returned -ENOMEM\n",
               g_seqs[i].name, (unsigned long long)p, (unsigned long long)e);
        total_warm += p;
        enomem += e;
    }
    printf("test_oom: ok: %llu allocation points failed (%llu fresh, %llu "
           "warm), %llu calls returned -ENOMEM\n",
           (unsigned long long)(total_fresh + total_warm),
           (unsigned long long)total_fresh, (unsigned long long)total_warm,
           (unsigned long long)enomem);
    return 0;
}
