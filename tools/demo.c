/*
 * demo.c - 'tally demo': the article's program, run for real.
 *
 * The article starts 1000 goroutines that each call Inc("somekey") once,
 * sleeps one second hoping they are done, and prints the value. Here each
 * implementation in the table below runs that program with N threads,
 * joins them all (no sleeping and hoping), and the value must be exactly N.
 * The time includes creating and joining the threads, as the program does.
 *
 * With --processes P the same program runs in P processes at once, each
 * with N threads, all counting into one tally_store file: each process
 * opens (and, the first time, creates) the file itself, as unrelated
 * programs would, and the value must be exactly P x N.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "seedmap.h"
#include "tally.h"
#include "tool.h"

enum {
    DEMO_DEFAULT_THREADS = 1000,
    DEMO_MAX_THREADS = 100000,
    DEMO_MAX_PROCESSES = 1024,
};

/*
 * One implementation of SafeCounter: make one, Inc(key) from many threads,
 * Value(key), free it. Functions return 0 or a negative errno.
 */
struct demo_impl {
    const char *name;
    int (*create)(void **state);
    int (*inc)(void *state, const char *key);
    int64_t (*value)(void *state, const char *key);
    void (*destroy)(void *state);
};

/* The article's design: one mutex around a map (seedmap.c). */
static int seed_create(void **s) { return seedmap_new((seedmap **)s); }
static int seed_inc(void *s, const char *key) { return seedmap_inc(s, key); }
static int64_t seed_value(void *s, const char *key)
{
    return seedmap_value(s, key);
}
static void seed_destroy(void *s) { seedmap_free(s); }

/* The article's "another way": one atomic counter (the demo has one key). */
static int counter_create(void **s)
{
    tally_counter *c = calloc(1, sizeof *c);

    *s = c;
    return c != NULL ? 0 : -ENOMEM;
}
static int counter_inc(void *s, const char *key)
{
    (void)key;
    tally_counter_inc(s);
    return 0;
}
static int64_t counter_value(void *s, const char *key)
{
    (void)key;
    return tally_counter_load(s);
}
static void counter_destroy(void *s) { free(s); }

/* The SafeCounter without the mutex: a tally_map (adds to an existing key
 * take no lock and write no shared cache line). */
static int map_create(void **s) { return tally_map_new((tally_map **)s); }
static int map_inc(void *s, const char *key) { return tally_map_inc(s, key); }
static int64_t map_value(void *s, const char *key)
{
    return tally_map_value(s, key);
}
static void map_destroy(void *s) { tally_map_free(s); }

/* The store: the article's program in each of several processes. */
static int store_inc(void *s, const char *key)
{
    return tally_store_inc(s, key);
}
static const struct demo_impl store_impl = {"tally_store", NULL, store_inc,
                                            NULL, NULL};

static const struct demo_impl impls[] = {
    {"mutex + map (the article's SafeCounter)", seed_create, seed_inc,
     seed_value, seed_destroy},
    {"tally_counter", counter_create, counter_inc, counter_value,
     counter_destroy},
    {"tally_map", map_create, map_inc, map_value, map_destroy},
};

struct demo_run {
    const struct demo_impl *impl;
    void *state;
    const char *key;
    tally_counter errors; /* incs that failed (out of memory) */
};

static void *demo_thread(void *p)
{
    struct demo_run *r = p;

    if (r->impl->inc(r->state, r->key) != 0)
        tally_counter_inc(&r->errors);
    return NULL;
}

/*
 * Starts n threads on r and joins them. If the system runs out of threads
 * (EAGAIN) before all n are started, joins those running and goes on, so
 * that every one of the n increments still happens. 0 or an errno.
 */
static int demo_threads(struct demo_run *r, pthread_t *tids, long n)
{
    pthread_attr_t attr;
    long started = 0, joined = 0;
    int err = 0;

    if (pthread_attr_init(&attr) != 0)
        return ENOMEM;
    pthread_attr_setstacksize(&attr, (size_t)256 << 10);
    while (started < n) {
        err = pthread_create(&tids[started], &attr, demo_thread, r);
        if (err == 0) {
            started++;
        } else if (err == EAGAIN && joined < started) {
            while (joined < started)
                pthread_join(tids[joined++], NULL);
        } else {
            break;
        }
    }
    while (joined < started)
        pthread_join(tids[joined++], NULL);
    pthread_attr_destroy(&attr);
    return started == n ? 0 : err;
}

static void demo_usage(FILE *f)
{
    fprintf(f,
            "usage: tally demo [--threads N] [--key K]\n"
            "       tally demo --processes P [--threads N] [--key K] "
            "[--file FILE]\n"
            "\n"
            "Runs the article's program with each implementation: N threads\n"
            "(default %d) each increment key K (default \"somekey\") once;\n"
            "the threads are joined and the value must be exactly N.\n"
            "\n"
            "With --processes, P processes run it at once, each with N\n"
            "threads, counting into one store file: a new temporary one, or\n"
            "FILE (created when absent; then K's increase is checked). The\n"
            "value must be exactly P x N.\n"
            "\n"
            "Exits 1 if any value differs.\n"
            "\n"
            "  -t, --threads N     threads (per process), 1..%d\n"
            "  -k, --key K         the key to increment\n"
            "  -p, --processes P   processes sharing one store, 1..%d\n"
            "  -f, --file FILE     the store for --processes (default: a\n"
            "                      temporary file, removed afterwards)\n"
            "  -h, --help          show this help\n",
            DEMO_DEFAULT_THREADS, DEMO_MAX_THREADS, DEMO_MAX_PROCESSES);
}

/* The article's program once per implementation, in this process. */
static int demo_in_process(long threads, const char *key)
{
    pthread_t *tids;
    size_t i;
    int status = TOOL_OK;

    tids = malloc((size_t)threads * sizeof *tids);
    if (tids == NULL) {
        fprintf(stderr, "tally demo: out of memory\n");
        return TOOL_FAIL;
    }
    printf("%ld threads, each incrementing \"%s\" once; expected value %ld\n\n",
           threads, key, threads);
    printf("%-42s %10s %10s\n", "implementation", "value", "time");
    for (i = 0; i < sizeof impls / sizeof impls[0]; i++) {
        struct demo_run r = {&impls[i], NULL, key, TALLY_COUNTER_INIT(0)};
        uint64_t t0, t1;
        int64_t value;
        int err;

        err = r.impl->create(&r.state);
        if (err != 0) {
            fprintf(stderr, "tally demo: %s: %s\n", r.impl->name,
                    tally_strerror(err));
            status = TOOL_FAIL;
            continue;
        }
        t0 = tool_now_ns();
        err = demo_threads(&r, tids, threads);
        t1 = tool_now_ns();
        value = r.impl->value(r.state, key);
        r.impl->destroy(r.state);
        if (err != 0) {
            fprintf(stderr, "tally demo: %s: starting threads: %s\n",
                    r.impl->name, strerror(err));
            status = TOOL_FAIL;
            continue;
        }
        printf("%-42s %10lld %7.2f ms%s\n", r.impl->name, (long long)value,
               (double)(t1 - t0) / 1e6, value == threads ? "" : "  WRONG");
        if (tally_counter_load(&r.errors) != 0)
            fprintf(stderr, "tally demo: %s: %lld increments failed\n",
                    r.impl->name, (long long)tally_counter_load(&r.errors));
        if (value != threads)
            status = TOOL_FAIL;
    }
    free(tids);
    return status;
}

/*
 * One process of --processes: waits on the gate (a pipe whose write end
 * the parent closes once every process is started), opens the store,
 * runs the program with its threads, and exits 0 when every increment
 * succeeded.
 */
static void demo_child(int gate, const char *path, long threads,
                       const char *key)
{
    struct tally_store_config config = {TALLY_STORE_CREATE, 0, 0};
    struct demo_run r = {&store_impl, NULL, key, TALLY_COUNTER_INIT(0)};
    pthread_t *tids = malloc((size_t)threads * sizeof *tids);
    char c;
    int err;

    while (read(gate, &c, 1) < 0 && errno == EINTR)
        continue;
    close(gate);
    if (tids == NULL) {
        fprintf(stderr, "tally demo: process %ld: out of memory\n",
                (long)getpid());
        _exit(TOOL_FAIL);
    }
    err = tally_store_open((tally_store **)&r.state, path, &config);
    if (err != 0) {
        fprintf(stderr, "tally demo: %s: %s\n", path, tally_strerror(err));
        _exit(TOOL_FAIL);
    }
    err = demo_threads(&r, tids, threads);
    tally_store_close(r.state);
    free(tids);
    if (err != 0) {
        fprintf(stderr, "tally demo: process %ld: starting threads: %s\n",
                (long)getpid(), strerror(err));
        _exit(TOOL_FAIL);
    }
    if (tally_counter_load(&r.errors) != 0) {
        fprintf(stderr, "tally demo: process %ld: %lld increments failed\n",
                (long)getpid(), (long long)tally_counter_load(&r.errors));
        _exit(TOOL_FAIL);
    }
    _exit(TOOL_OK);
}

/* The key's value in the store at path into *value; an absent file or
 * key reads 0. 0 or a negative error. */
static int demo_read(const char *path, const char *key, int64_t *value)
{
    struct tally_store_config config = {TALLY_STORE_READONLY, 0, 0};
    tally_store *s;
    int err = tally_store_open(&s, path, &config);

    *value = 0;
    if (err == -ENOENT)
        return 0;
    if (err != 0)
        return err;
    err = tally_store_get(s, key, value);
    tally_store_close(s);
    return err == -ENOENT ? 0 : err;
}

/* The article's program in procs processes at once, one store. */
static int demo_processes(long procs, long threads, const char *key,
                          const char *file)
{
    const char *tmpdir = getenv("TMPDIR");
    char dir[4096], tmp_path[4096 + 16];
    const char *path = file;
    int64_t before = 0, after = 0, want = (int64_t)procs * threads;
    long started = 0, failed = 0, i;
    int gate[2], err, status = TOOL_OK, wstatus;
    uint64_t t0, t1;
    pid_t pid;

    if (file == NULL) {
        snprintf(dir, sizeof dir, "%s/tally-demo.XXXXXX",
                 tmpdir != NULL && *tmpdir != '\0' ? tmpdir : "/tmp");
        if (mkdtemp(dir) == NULL) {
            fprintf(stderr, "tally demo: %s: %s\n", dir, strerror(errno));
            return TOOL_FAIL;
        }
        snprintf(tmp_path, sizeof tmp_path, "%s/demo.tally", dir);
        path = tmp_path;
    } else if ((err = demo_read(path, key, &before)) != 0) {
        return tool_fail("demo", path, err);
    }
    if (pipe(gate) != 0) {
        fprintf(stderr, "tally demo: pipe: %s\n", strerror(errno));
        status = TOOL_FAIL;
        goto out;
    }

    if (file == NULL)
        printf("%ld processes x %ld threads, each thread incrementing "
               "\"%s\" once in one new store; expected value %lld\n\n",
               procs, threads, key, (long long)want);
    else
        printf("%ld processes x %ld threads, each thread incrementing "
               "\"%s\" once in %s (value before: %lld); expected increase "
               "%lld\n\n",
               procs, threads, key, path, (long long)before,
               (long long)want);
    printf("%-42s %10s %10s\n", "implementation",
           file == NULL ? "value" : "increase", "time");
    fflush(stdout); /* the children must not inherit buffered output */

    for (started = 0; started < procs; started++) {
        pid = fork();
        if (pid == 0) {
            close(gate[1]);
            demo_child(gate[0], path, threads, key);
        }
        if (pid < 0) {
            fprintf(stderr, "tally demo: starting process %ld of %ld: %s\n",
                    started + 1, procs, strerror(errno));
            status = TOOL_FAIL;
            break;
        }
    }
    close(gate[0]);
    t0 = tool_now_ns();
    close(gate[1]); /* opens the gate: every child's read returns 0 */
    for (i = 0; i < started; i++) {
        while ((pid = wait(&wstatus)) < 0 && errno == EINTR)
            continue;
        if (pid < 0 || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
            failed++;
    }
    t1 = tool_now_ns();
    if (failed != 0) {
        fprintf(stderr, "tally demo: %ld of %ld processes failed\n", failed,
                started);
        status = TOOL_FAIL;
    }

    err = demo_read(path, key, &after);
    if (err != 0) {
        status = tool_fail("demo", path, err);
        goto out;
    }
    {
        char name[64];
        int64_t got = (int64_t)((uint64_t)after - (uint64_t)before);

        snprintf(name, sizeof name, "%s, %ld processes", store_impl.name,
                 procs);
        printf("%-42s %10lld %7.2f ms%s\n", name, (long long)got,
               (double)(t1 - t0) / 1e6, got == want ? "" : "  WRONG");
        if (got != want)
            status = TOOL_FAIL;
    }
out:
    if (file == NULL) {
        unlink(tmp_path);
        rmdir(dir);
    }
    return status;
}

int cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {
        {"threads", required_argument, NULL, 't'},
        {"key", required_argument, NULL, 'k'},
        {"processes", required_argument, NULL, 'p'},
        {"file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long threads = DEMO_DEFAULT_THREADS, procs = 0;
    const char *key = "somekey", *file = NULL;
    int opt;

    while ((opt = getopt_long(argc, argv, ":t:k:p:f:h", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            if (tool_parse_long(optarg, 1, DEMO_MAX_THREADS, &threads) != 0)
                return tool_usage_error("demo",
                                        "--threads wants a number from 1 "
                                        "to %d, not '%s'",
                                        DEMO_MAX_THREADS, optarg);
            break;
        case 'k':
            key = optarg;
            break;
        case 'p':
            if (tool_parse_long(optarg, 1, DEMO_MAX_PROCESSES, &procs) != 0)
                return tool_usage_error("demo",
                                        "--processes wants a number from 1 "
                                        "to %d, not '%s'",
                                        DEMO_MAX_PROCESSES, optarg);
            break;
        case 'f':
            file = optarg;
            break;
        case 'h':
            demo_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("demo", opt, argv);
        }
    }
    if (optind < argc)
        return tool_usage_error("demo", "unexpected argument '%s'",
                                argv[optind]);
    if (file != NULL && procs == 0)
        return tool_usage_error("demo", "--file needs --processes");
    if (strlen(key) > TALLY_KEY_MAX)
        return tool_usage_error("demo", "--key is longer than %d bytes",
                                TALLY_KEY_MAX);
    if (procs == 0)
        return demo_in_process(threads, key);
    return demo_processes(procs, threads, key, file);
}
