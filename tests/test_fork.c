/*
 * test_fork.c - fork() while other threads use tally.
 *
 * The parent keeps four noise threads busy the whole time: one adds by
 * name to four keys (read-side sections, the remembered slot), one adds
 * through a handle, one inserts a key and removes it again (shard locks,
 * deferred work, grace-period polls), one drains the map, runs foreach and
 * tally_map_sync, and adds to an adder and drains it (drain locks, grace
 * periods). Meanwhile the main thread forks, again and again. The
 * pthread_atfork handlers (cells.c, map.c, adder.c) must leave the child a
 * library it can use in full: each child, under alarm(), makes every call
 * on every object it inherited and on new ones, and checks exact values:
 *
 *   - a "stable" map and adder that no noise thread touches hold exactly
 *     what the main thread put there before the fork;
 *   - on the noisy map and adder, whatever the value at the fork, the
 *     child's own calls are exact relative to it: add then get, remove
 *     returns what get said, drain plus what is left, handles (the
 *     inherited one and new ones), sync, foreach and drain complete;
 *   - new maps and adders, and new threads adding to them, are exact.
 *
 * A child that hangs is killed by its alarm (SIGALRM), which fails the
 * test; so does any failed check (the child's exit status). Before the
 * atfork handlers, a child's remove hung in 30 of 30 forks (issue 9).
 *
 * Under ThreadSanitizer the children do not start threads: TSan does not
 * support new threads after a multi-threaded fork (it would stop the
 * child), so that part runs in the other builds.
 *
 * Under AddressSanitizer the noise threads pause (at the top of their
 * loops, holding nothing of tally's) while the main thread forks: gcc
 * 12's ASan runtime does not take its own allocator's locks around
 * fork(), so a child could hang in ASan's malloc on a lock a parent's
 * thread held (seen: 1 child in about 200, starting a thread). The forks
 * during operations in flight are the normal and TSan builds' job.
 */
#include "tally.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#if defined(TALLY_TSAN)
#define FORKS 8 /* a fork of a ThreadSanitizer process costs seconds */
#else
#define FORKS 40
#endif
#define STABLE_KEYS 64
#define CHILD_THREADS 4
#define CHILD_ADDS 1000

static tally_map *noisy, *stable;
static tally_adder *noisy_adder, *stable_adder;
static tally_handle *noisy_handle; /* on noisy "h0" */
static atomic_bool stop;

#if defined(__SANITIZE_ADDRESS__)
#define QUIESCE 1
#else
#define QUIESCE 0
#endif
static atomic_bool pause_req; /* QUIESCE: the noise threads should wait */
static atomic_int paused;     /* how many are waiting */

/* At the top of each noise loop: wait while the main thread forks. */
static void noise_point(void)
{
    if (!QUIESCE || !atomic_load(&pause_req))
        return;
    atomic_fetch_add(&paused, 1);
    while (atomic_load(&pause_req))
        sched_yield();
    atomic_fetch_sub(&paused, 1);
}

static void *noise_by_name(void *arg)
{
    (void)arg;
    static const char *const keys[] = {"hot0", "hot1", "hot2", "hot3"};
    for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed);
         i++) {
        noise_point();
        CHECK_EQ(tally_map_inc(noisy, keys[i % 4]), 0);
    }
    return NULL;
}

static void *noise_handle(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        noise_point();
        tally_handle_inc(noisy_handle);
    }
    return NULL;
}

static void *noise_insert_remove(void *arg)
{
    (void)arg;
    char key[32];
    for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed);
         i++) {
        noise_point();
        snprintf(key, sizeof(key), "churn-%u", i % 512);
        CHECK_EQ(tally_map_add(noisy, key, 1), 0);
        int64_t v;
        int rc = tally_map_remove(noisy, key, &v);
        CHECK(rc == 0 || rc == -ENOENT);
    }
    return NULL;
}

static int count_fn(void *ctx, const void *key, size_t len, int64_t value)
{
    (void)key;
    (void)len;
    (void)value;
    ++*(size_t *)ctx;
    return 0;
}

static void *noise_drain(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load_explicit(&stop, memory_order_relaxed);
         i++) {
        noise_point();
        size_t n = 0;
        CHECK_EQ(tally_map_drain(noisy, count_fn, &n), 0);
        CHECK_EQ(tally_map_foreach(noisy, count_fn, &n), 0);
        if (i % 8 == 0)
            CHECK_EQ(tally_map_sync(noisy), 0);
        tally_adder_add(noisy_adder, 3);
        (void)tally_adder_drain(noisy_adder);
    }
    return NULL;
}

/* ---- the child -------------------------------------------------------- */

struct sum {
    int64_t total;
    size_t keys;
};

static int sum_fn(void *ctx, const void *key, size_t len, int64_t value)
{
    struct sum *s = ctx;
    (void)key;
    (void)len;
    s->total += value;
    s->keys++;
    return 0;
}

static void stable_key(unsigned i, char *buf, size_t cap)
{
    snprintf(buf, cap, "stable-%u", i);
}

/* What the main thread put in the stable map before fork number f. */
static int64_t stable_value(unsigned i, unsigned f)
{
    return (int64_t)i * 7 + (i == f % STABLE_KEYS ? (int64_t)f + 1 : 0);
}

struct child_thread {
    tally_map *map;
    tally_adder *adder;
    tally_handle *handle;
};

static void *child_adder(void *arg)
{
    struct child_thread *c = arg;
    for (int i = 0; i < CHILD_ADDS; i++) {
        CHECK_EQ(tally_map_inc(c->map, "child-key"), 0);
        tally_adder_inc(c->adder);
        tally_handle_inc(c->handle);
    }
    return NULL;
}

static void child(unsigned f)
{
    char key[32];
    int64_t v, w;

    alarm(20);
    /* The stable map and adder: exactly the parent's values at the fork
     * (the noise threads' cells never touched them). */
    for (unsigned i = 0; i < STABLE_KEYS; i++) {
        stable_key(i, key, sizeof(key));
        CHECK_EQ(tally_map_get(stable, key, &v), 0);
        CHECK_EQ(v, stable_value(i, f));
    }
    CHECK_EQ(tally_map_size(stable), STABLE_KEYS);
    CHECK_EQ(tally_adder_sum(stable_adder), ((int64_t)f + 1) * 5);

    /* Every call on the noisy map, exact relative to its fork value. */
    CHECK_EQ(tally_map_get(noisy, "hot0", &v), 0);
    CHECK_EQ(tally_map_add(noisy, "hot0", 5), 0);
    CHECK_EQ(tally_map_get(noisy, "hot0", &w), 0);
    CHECK_EQ(w, v + 5);
    CHECK_EQ(tally_map_remove(noisy, "hot0", &v), 0);
    CHECK_EQ(v, w);
    CHECK_EQ(tally_map_get(noisy, "hot0", &v), -ENOENT);
    CHECK_EQ(tally_map_sync(noisy), 0);
    /* The inherited handle: adds land exactly. */
    int64_t h0 = tally_map_value(noisy, "h0");
    tally_handle_add(noisy_handle, 11);
    CHECK_EQ(tally_map_value(noisy, "h0"), h0 + 11);
    /* Removes of keys the churn thread was working on, then foreach and
     * drain: they complete, and drain plus what is left is what foreach
     * saw. */
    for (unsigned i = 0; i < 512; i++) {
        snprintf(key, sizeof(key), "churn-%u", i);
        int rc = tally_map_remove(noisy, key, &v);
        CHECK(rc == 0 || rc == -ENOENT);
    }
    CHECK_EQ(tally_map_sync(noisy), 0);
    struct sum seen = {0, 0}, drained = {0, 0}, left = {0, 0};
    CHECK_EQ(tally_map_foreach(noisy, sum_fn, &seen), 0);
    CHECK_EQ(tally_map_drain(noisy, sum_fn, &drained), 0);
    CHECK_EQ(tally_map_foreach(noisy, sum_fn, &left), 0);
    CHECK_EQ(drained.total, seen.total);
    CHECK_EQ(left.total, 0);
    CHECK_EQ(left.keys, seen.keys);
    CHECK_EQ(tally_map_size(noisy), seen.keys);
    /* The noisy adder: its drain lock works. */
    (void)tally_adder_drain(noisy_adder);
    CHECK_EQ(tally_adder_sum(noisy_adder), 0);
    tally_adder_add(noisy_adder, 9);
    CHECK_EQ(tally_adder_drain(noisy_adder), 9);

    /* New objects, and new threads adding to old and new ones. */
    tally_map *m;
    tally_adder *a;
    tally_handle *h;
    CHECK_EQ(tally_map_new(&m), 0);
    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK_EQ(tally_map_handle(stable, "stable-0", &h), 0);
    struct child_thread c = {m, a, h};
#if defined(TALLY_TSAN)
    int threads = 1;
    child_adder(&c);
#else
    int threads = CHILD_THREADS;
    pthread_t tid[CHILD_THREADS];
    for (int i = 0; i < CHILD_THREADS; i++)
        CHECK_EQ(pthread_create(&tid[i], NULL, child_adder, &c), 0);
    for (int i = 0; i < CHILD_THREADS; i++)
        CHECK_EQ(pthread_join(tid[i], NULL), 0);
#endif
    CHECK_EQ(tally_map_value(m, "child-key"), (int64_t)threads * CHILD_ADDS);
    CHECK_EQ(tally_adder_sum(a), (int64_t)threads * CHILD_ADDS);
    CHECK_EQ(tally_map_value(stable, "stable-0"),
             stable_value(0, f) + (int64_t)threads * CHILD_ADDS);
    tally_handle_release(h);
    CHECK_EQ(tally_map_remove(m, "child-key", &v), 0);
    CHECK_EQ(v, (int64_t)threads * CHILD_ADDS);
    CHECK_EQ(tally_map_sync(m), 0);
    tally_map_free(m);
    tally_adder_free(a);
    exit(0);
}

int main(void)
{
    pthread_t tid[4];
    void *(*const noise[4])(void *) = {noise_by_name, noise_handle,
                                       noise_insert_remove, noise_drain};
    char key[32];

    CHECK_EQ(tally_map_new(&noisy), 0);
    CHECK_EQ(tally_map_new(&stable), 0);
    CHECK_EQ(tally_adder_new(&noisy_adder), 0);
    CHECK_EQ(tally_adder_new(&stable_adder), 0);
    CHECK_EQ(tally_map_handle(noisy, "h0", &noisy_handle), 0);
    /* The children read "hot0": it exists before the first fork. */
    CHECK_EQ(tally_map_add(noisy, "hot0", 0), 0);
    for (unsigned i = 0; i < STABLE_KEYS; i++) {
        stable_key(i, key, sizeof(key));
        CHECK_EQ(tally_map_add(stable, key, (int64_t)i * 7), 0);
    }
    atomic_init(&stop, false);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pthread_create(&tid[i], NULL, noise[i], NULL), 0);

    unsigned hung = 0, failed = 0;
    for (unsigned f = 0; f < FORKS; f++) {
        /* Known values, set by this thread only. */
        stable_key(f % STABLE_KEYS, key, sizeof(key));
        CHECK_EQ(tally_map_add(stable, key, (int64_t)f + 1), 0);
        tally_adder_add(stable_adder, 5);
        usleep(1000 + 300 * (f % 7)); /* let the noise get going */
        fflush(stdout);
        fflush(stderr);
        if (QUIESCE) {
            atomic_store(&pause_req, true);
            while (atomic_load(&paused) != 4)
                sched_yield();
        }
        pid_t pid = fork();
        CHECK_GE(pid, 0);
        if (pid == 0)
            child(f);
        atomic_store(&pause_req, false);
        int status;
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            hung++;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
        /* Undo the known add, so each fork's expected values are simple. */
        CHECK_EQ(tally_map_add(stable, key, -((int64_t)f + 1)), 0);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(pthread_join(tid[i], NULL), 0);
    if (hung != 0 || failed != 0)
        fprintf(stderr, "test_fork: %u of %u children hung, %u failed\n",
                hung, FORKS, failed);
    CHECK_EQ(hung, 0);
    CHECK_EQ(failed, 0);

    tally_handle_release(noisy_handle);
    tally_map_free(noisy);
    tally_map_free(stable);
    tally_adder_free(noisy_adder);
    tally_adder_free(stable_adder);
    printf("test_fork: ok: %d forks while 4 threads added, removed and "
           "drained; every child exact\n",
           FORKS);
    return 0;
}
