/*
 * remove_latency.c - how fast tally_map_remove is while other threads add
 * (issue 9, part 3: "removes stall for seconds when threads outnumber
 * cores").
 *
 *   remove_latency [--seconds S] [--config R,A]...
 *
 * For each configuration (default: 1,0 4,0 1,4 2,8 8,8), one map, and for
 * S seconds:
 *   - R remover threads, each in a loop: insert a fresh key (its own
 *     "r<thread>:<n>", with tally_map_add_n of an amount d = 1 + n % 7),
 *     then time one tally_map_remove_n of it;
 *   - A adder threads, each adding 1 by name (tally_map_inc) to one of 4
 *     hot keys in turn ("hot0" .. "hot3"), as fast as it can.
 *
 * Prints one CSV line per configuration:
 *
 *   removers,adders,seconds,removes,removes_per_s,p50_us,p99_us,max_us,
 *   adds_per_s,check
 *
 * removes_per_s counts every remover's removes together over the measured
 * time (start barrier to last join; a loop also does its insert and two
 * clock reads). The percentiles are over every remove of the run, each
 * timed alone with CLOCK_MONOTONIC around the call.
 *
 * check is ok only if every remove returned 0 and exactly the amount its
 * key received, every insert succeeded, each hot key holds exactly the
 * adds made to it, and the map ends with the 4 hot keys only. Exit status
 * 1 otherwise (and stderr says why), 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tally.h"

#define NHOT 4
#define MAX_THREADS 256

static const char *const hot_keys[NHOT] = {"hot0", "hot1", "hot2", "hot3"};

struct run {
    tally_map *m;
    atomic_int stop; /* relaxed: ends the loops; the join orders results */
    pthread_barrier_t start;
};

struct remover {
    struct run *run;
    unsigned index;
    uint64_t *lat_ns; /* one per remove */
    size_t n, cap;
    uint64_t errors;
    char why[160];
};

struct adder {
    struct run *run;
    unsigned index;
    uint64_t adds[NHOT];
    uint64_t errors;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *remover_main(void *arg)
{
    struct remover *r = arg;
    tally_map *m = r->run->m;
    char key[48];
    pthread_barrier_wait(&r->run->start);
    for (uint64_t n = 0;
         !atomic_load_explicit(&r->run->stop, memory_order_relaxed); n++) {
        int len = snprintf(key, sizeof key, "r%u:%" PRIu64, r->index, n);
        const int64_t d = 1 + (int64_t)(n % 7);
        int rc = tally_map_add_n(m, key, (size_t)len, d);
        if (rc != 0) {
            if (r->errors++ == 0)
                snprintf(r->why, sizeof r->why, "insert of %s: %s", key,
                         tally_strerror(rc));
            continue;
        }
        int64_t last = -1;
        uint64_t t0 = now_ns();
        rc = tally_map_remove_n(m, key, (size_t)len, &last);
        uint64_t t1 = now_ns();
        if (rc != 0 || last != d) {
            if (r->errors++ == 0)
                snprintf(r->why, sizeof r->why,
                         "remove of %s: rc %d, last %" PRId64 ", expected %"
                         PRId64, key, rc, last, d);
        }
        if (r->n == r->cap) {
            size_t cap = r->cap ? 2 * r->cap : 65536;
            uint64_t *p = realloc(r->lat_ns, cap * sizeof(*p));
            if (p == NULL) {
                if (r->errors++ == 0)
                    snprintf(r->why, sizeof r->why, "out of memory");
                break;
            }
            r->lat_ns = p;
            r->cap = cap;
        }
        r->lat_ns[r->n++] = t1 - t0;
    }
    return NULL;
}

static void *adder_main(void *arg)
{
    struct adder *a = arg;
    tally_map *m = a->run->m;
    unsigned k = a->index % NHOT;
    pthread_barrier_wait(&a->run->start);
    while (!atomic_load_explicit(&a->run->stop, memory_order_relaxed)) {
        for (int i = 0; i < 64; i++) {
            if (tally_map_inc(m, hot_keys[k]) == 0)
                a->adds[k]++;
            else
                a->errors++;
            k = (k + 1) % NHOT;
        }
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of sorted v[0..n): the smallest value with at least
 * q * n values at or below it. */
static double quantile_us(const uint64_t *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(q * (double)n);
    if (i > 0 && (double)i >= q * (double)n)
        i--;
    if (i >= n)
        i = n - 1;
    return (double)v[i] / 1000.0;
}

static int run_config(unsigned nr, unsigned na, double seconds)
{
    struct run run;
    struct remover *rs = calloc(nr ? nr : 1, sizeof(*rs));
    struct adder *as = calloc(na ? na : 1, sizeof(*as));
    pthread_t *tids = calloc(nr + na, sizeof(*tids));
    char why[200] = "";
    int rc;

    if (rs == NULL || as == NULL || tids == NULL) {
        fprintf(stderr, "remove_latency: out of memory\n");
        return 1;
    }
    memset(&run, 0, sizeof(run));
    rc = tally_map_new(&run.m);
    for (unsigned k = 0; k < NHOT && rc == 0; k++)
        rc = tally_map_add(run.m, hot_keys[k], 0);
    if (rc != 0) {
        fprintf(stderr, "remove_latency: map setup: %s\n", tally_strerror(rc));
        return 1;
    }
    pthread_barrier_init(&run.start, NULL, nr + na + 1);
    for (unsigned i = 0; i < nr + na; i++) {
        if (i < nr) {
            rs[i].run = &run;
            rs[i].index = i;
            rc = pthread_create(&tids[i], NULL, remover_main, &rs[i]);
        } else {
            as[i - nr].run = &run;
            as[i - nr].index = i - nr;
            rc = pthread_create(&tids[i], NULL, adder_main, &as[i - nr]);
        }
        if (rc != 0) {
            /* the barrier cannot be reached: give up loudly */
            fprintf(stderr, "remove_latency: pthread_create: %s\n",
                    strerror(rc));
            exit(1);
        }
    }
    pthread_barrier_wait(&run.start);
    uint64_t t0 = now_ns();
    sleep_s(seconds);
    atomic_store_explicit(&run.stop, 1, memory_order_relaxed);
    for (unsigned i = 0; i < nr + na; i++)
        pthread_join(tids[i], NULL);
    double secs = (double)(now_ns() - t0) * 1e-9;
    pthread_barrier_destroy(&run.start);

    /* all removes' latencies, sorted */
    size_t total = 0;
    for (unsigned i = 0; i < nr; i++)
        total += rs[i].n;
    uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
    if (all == NULL) {
        fprintf(stderr, "remove_latency: out of memory\n");
        return 1;
    }
    size_t off = 0;
    for (unsigned i = 0; i < nr; i++) {
        if (rs[i].n)
            memcpy(all + off, rs[i].lat_ns, rs[i].n * sizeof(*all));
        off += rs[i].n;
        if (rs[i].errors != 0 && why[0] == '\0')
            snprintf(why, sizeof why, "remover %u: %" PRIu64 " error(s), "
                     "first: %s", i, rs[i].errors, rs[i].why);
        free(rs[i].lat_ns);
    }
    qsort(all, total, sizeof(*all), cmp_u64);

    /* the hot keys hold exactly the adders' adds */
    uint64_t adds = 0;
    for (unsigned k = 0; k < NHOT; k++) {
        uint64_t want = 0;
        for (unsigned i = 0; i < na; i++)
            want += as[i].adds[k];
        adds += want;
        int64_t v = -1;
        rc = tally_map_get(run.m, hot_keys[k], &v);
        if ((rc != 0 || v != (int64_t)want) && why[0] == '\0')
            snprintf(why, sizeof why, "%s holds %" PRId64 " (rc %d), "
                     "expected %" PRIu64, hot_keys[k], v, rc, want);
    }
    for (unsigned i = 0; i < na; i++)
        if (as[i].errors != 0 && why[0] == '\0')
            snprintf(why, sizeof why, "adder %u: %" PRIu64 " failed adds",
                     i, as[i].errors);
    size_t size = tally_map_size(run.m);
    if (size != NHOT && why[0] == '\0')
        snprintf(why, sizeof why, "map size %zu, expected %d", size, NHOT);
    if (nr > 0 && total == 0 && why[0] == '\0')
        snprintf(why, sizeof why, "no remove finished");

    printf("%u,%u,%.3f,%zu,%.0f,%.2f,%.2f,%.2f,%.0f,%s\n", nr, na, secs,
           total, (double)total / secs, quantile_us(all, total, 0.50),
           quantile_us(all, total, 0.99),
           total ? (double)all[total - 1] / 1000.0 : 0.0,
           (double)adds / secs, why[0] ? "FAIL" : "ok");
    fflush(stdout);
    if (why[0])
        fprintf(stderr, "check=FAIL removers=%u adders=%u: %s\n", nr, na,
                why);
    free(all);
    free(rs);
    free(as);
    free(tids);
    tally_map_free(run.m);
    return why[0] ? 1 : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: remove_latency [--seconds S] [--config R,A]...\n"
               "  R remover threads (insert a key, time its remove), A adder\n"
               "  threads (add by name to 4 hot keys), for S seconds each\n"
               "  (default 2); default configs 1,0 4,0 1,4 2,8 8,8\n");
}

int main(int argc, char **argv)
{
    double seconds = 2.0;
    unsigned cfg[32][2];
    size_t ncfg = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--seconds") == 0 && v != NULL) {
            char *end;
            seconds = strtod(v, &end);
            if (*end != '\0' || !(seconds > 0 && seconds < 3600)) {
                fprintf(stderr, "remove_latency: bad --seconds %s\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(argv[i], "--config") == 0 && v != NULL) {
            unsigned r, a;
            char tail;
            if (ncfg == 32 || sscanf(v, "%u,%u%c", &r, &a, &tail) != 2 ||
                r + a == 0 || r > MAX_THREADS || a > MAX_THREADS) {
                fprintf(stderr, "remove_latency: bad --config %s (R,A)\n",
                        v);
                return 2;
            }
            cfg[ncfg][0] = r;
            cfg[ncfg][1] = a;
            ncfg++;
            i++;
        } else {
            fprintf(stderr, "remove_latency: unknown or incomplete option "
                    "%s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (ncfg == 0) {
        static const unsigned def[][2] = {{1, 0}, {4, 0}, {1, 4}, {2, 8},
                                          {8, 8}};
        for (; ncfg < sizeof def / sizeof def[0]; ncfg++) {
            cfg[ncfg][0] = def[ncfg][0];
            cfg[ncfg][1] = def[ncfg][1];
        }
    }
    printf("removers,adders,seconds,removes,removes_per_s,p50_us,p99_us,"
           "max_us,adds_per_s,check\n");
    int status = 0;
    for (size_t i = 0; i < ncfg; i++)
        status |= run_config(cfg[i][0], cfg[i][1], seconds);
    return status;
}
