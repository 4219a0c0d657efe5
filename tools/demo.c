/*
 * demo.c - 'tally demo': the article's program, run for real.
 *
 * The article starts 1000 goroutines that each call Inc("somekey") once,
 * sleeps one second hoping they are done, and prints the value. Here each
 * implementation in the table below runs that program with N threads,
 * joins them all (no sleeping and hoping), and the value must be exactly N.
 * The time includes creating and joining the threads, as the program does.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seedmap.h"
#include "tally.h"
#include "tool.h"

enum { DEMO_DEFAULT_THREADS = 1000, DEMO_MAX_THREADS = 100000 };

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

/* The article's design: one mutex around a map (examples/seedmap.c). */
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
            "\n"
            "Runs the article's program with each implementation: N threads\n"
            "(default %d) each increment key K (default \"somekey\") once;\n"
            "the threads are joined and the value must be exactly N.\n"
            "Exits 1 if any value differs.\n"
            "\n"
            "  -t, --threads N   threads, 1..%d\n"
            "  -k, --key K       the key to increment\n"
            "  -h, --help        show this help\n",
            DEMO_DEFAULT_THREADS, DEMO_MAX_THREADS);
}

int cmd_demo(int argc, char **argv)
{
    static const struct option opts[] = {
        {"threads", required_argument, NULL, 't'},
        {"key", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long threads = DEMO_DEFAULT_THREADS;
    const char *key = "somekey";
    pthread_t *tids;
    size_t i;
    int opt, status = TOOL_OK;

    while ((opt = getopt_long(argc, argv, ":t:k:h", opts, NULL)) != -1) {
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
                    strerror(-err));
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
