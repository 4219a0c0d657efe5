/*
 * map_costs.c - what a tally_map costs in memory and in read time when
 * many threads have added to many keys (issue 10: "256 threads that each
 * added to the same 100,000 keys: <= 40 MB in all; tally_map_foreach over
 * 100,000 keys with 256 such threads <= 100 ms").
 *
 *   map_costs [--threads T] [--keys K] [--runs N]
 *
 * T threads (default 256) start and park on a barrier; then the resident
 * set is read (so that their stacks and tally's per-thread records for
 * other structures are not counted). Each thread then adds 1 by name
 * (tally_map_add_n) to each of the same K keys ("key:%08zu", 12 bytes;
 * default 100,000), starting at its own offset so that the threads spread
 * over the keys, creating each key on its first add. The threads stay
 * alive, parked, while the main thread reads the resident set again and
 * times N (default 7) tally_map_foreach calls over all keys.
 *
 * Prints CSV (what,threads,keys,value,unit,check):
 *
 *   map_rss_mb    resident-set growth of the whole process across the
 *                 adds (free heap memory returned first, malloc_trim): the
 *                 map's keys, entries and cells, and whatever per-thread
 *                 state tally made for them
 *   foreach_ms    the median time of one tally_map_foreach, with the T
 *                 threads alive
 *
 * Checks: every foreach visits exactly K keys, each holding exactly T,
 * and tally_map_size is K. Exit status 1 on a wrong count, 2 on a usage
 * error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "tally.h"

struct ctx {
    tally_map *m;
    const char *keys; /* K keys of 12 bytes, back to back */
    size_t nkeys;
    unsigned threads;
    pthread_barrier_t started, added, done;
};

struct worker {
    struct ctx *c;
    unsigned index;
    uint64_t errors;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static size_t rss_bytes(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    unsigned long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ctx *c = w->c;
    pthread_barrier_wait(&c->started);
    pthread_barrier_wait(&c->started); /* after the first RSS reading */
    size_t start = (size_t)w->index * c->nkeys / c->threads;
    for (size_t j = 0; j < c->nkeys; j++) {
        size_t i = (start + j) % c->nkeys;
        if (tally_map_add_n(c->m, c->keys + 12 * i, 12, 1) != 0)
            w->errors++;
    }
    pthread_barrier_wait(&c->added);
    pthread_barrier_wait(&c->done); /* alive while the main thread reads */
    return NULL;
}

struct visit {
    size_t keys;
    int64_t want;
    size_t wrong;
};

static int visit(void *ctx, const void *key, size_t len, int64_t value)
{
    struct visit *v = ctx;
    (void)key;
    v->keys++;
    if (value != v->want || len != 12)
        v->wrong++;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int parse(const char *opt, const char *v, unsigned long max,
                 unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long x = v ? strtoul(v, &end, 10) : 0;
    if (v == NULL || errno != 0 || *end != '\0' || x < 1 || x > max) {
        fprintf(stderr, "map_costs: bad value for %s (1..%lu)\n", opt, max);
        return -1;
    }
    *out = x;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long threads = 256, nkeys = 100000, runs = 7;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad;
        if (strcmp(argv[i], "--threads") == 0)
            bad = parse(argv[i], v, 4096, &threads);
        else if (strcmp(argv[i], "--keys") == 0)
            bad = parse(argv[i], v, 10000000, &nkeys);
        else if (strcmp(argv[i], "--runs") == 0)
            bad = parse(argv[i], v, 1000, &runs);
        else {
            fprintf(stderr, "usage: map_costs [--threads T] [--keys K] "
                    "[--runs N]\n");
            return 2;
        }
        if (bad)
            return 2;
    }

    struct ctx c;
    memset(&c, 0, sizeof(c));
    c.nkeys = nkeys;
    c.threads = (unsigned)threads;
    char *keys = malloc(12 * nkeys + 1);
    struct worker *ws = calloc(threads, sizeof(*ws));
    pthread_t *tids = calloc(threads, sizeof(*tids));
    uint64_t *ns = calloc(runs, sizeof(*ns));
    if (keys == NULL || ws == NULL || tids == NULL || ns == NULL) {
        fprintf(stderr, "map_costs: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nkeys; i++) {
        char buf[32]; /* "key:" + 8 digits: nkeys <= 10^7 */
        snprintf(buf, sizeof buf, "key:%08zu", i);
        memcpy(keys + 12 * i, buf, 12);
    }
    c.keys = keys;
    pthread_barrier_init(&c.started, NULL, c.threads + 1);
    pthread_barrier_init(&c.added, NULL, c.threads + 1);
    pthread_barrier_init(&c.done, NULL, c.threads + 1);
    for (unsigned i = 0; i < c.threads; i++) {
        ws[i].c = &c;
        ws[i].index = i;
        int rc = pthread_create(&tids[i], NULL, worker_main, &ws[i]);
        if (rc != 0) {
            fprintf(stderr, "map_costs: pthread_create: %s\n", strerror(rc));
            exit(1);
        }
    }
    pthread_barrier_wait(&c.started);
    size_t rss0 = rss_bytes();
    int rc = tally_map_new(&c.m);
    if (rc != 0) {
        fprintf(stderr, "map_costs: tally_map_new: %s\n", tally_strerror(rc));
        exit(1);
    }
    pthread_barrier_wait(&c.started);
    pthread_barrier_wait(&c.added);
    size_t rss1 = rss_bytes();

    int status = 0;
    uint64_t errors = 0;
    for (unsigned i = 0; i < c.threads; i++)
        errors += ws[i].errors;
    if (errors != 0) {
        fprintf(stderr, "check=FAIL: %" PRIu64 " adds failed\n", errors);
        status = 1;
    }
    if (tally_map_size(c.m) != nkeys) {
        fprintf(stderr, "check=FAIL: size %zu, expected %lu\n",
                tally_map_size(c.m), nkeys);
        status = 1;
    }
    for (unsigned long r = 0; r < runs; r++) {
        struct visit v = {0, (int64_t)threads, 0};
        uint64_t t0 = now_ns();
        rc = tally_map_foreach(c.m, visit, &v);
        ns[r] = now_ns() - t0;
        if (rc != 0 || v.keys != nkeys || v.wrong != 0) {
            fprintf(stderr, "check=FAIL: foreach returned %d, visited %zu "
                    "keys (expected %lu), %zu not holding %lu\n", rc, v.keys,
                    nkeys, v.wrong, threads);
            status = 1;
        }
    }
    qsort(ns, runs, sizeof(*ns), cmp_u64);

    const char *check = status ? "FAIL" : "ok";
    printf("what,threads,keys,value,unit,check\n");
    printf("map_rss_mb,%lu,%lu,%.1f,MB of resident set grown by the adds "
           "(keys and entries and cells),%s\n", threads, nkeys,
           ((double)rss1 - (double)rss0) / 1048576.0, check);
    printf("foreach_ms,%lu,%lu,%.2f,ms per tally_map_foreach (median of "
           "%lu),%s\n", threads, nkeys, (double)ns[(runs - 1) / 2] / 1e6,
           runs, check);

    pthread_barrier_wait(&c.done);
    for (unsigned i = 0; i < c.threads; i++)
        pthread_join(tids[i], NULL);
    tally_map_free(c.m);
    pthread_barrier_destroy(&c.started);
    pthread_barrier_destroy(&c.added);
    pthread_barrier_destroy(&c.done);
    free(keys);
    free(ws);
    free(tids);
    free(ns);
    return status;
}
