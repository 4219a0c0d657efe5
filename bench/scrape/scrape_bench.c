/*
 * scrape_bench.c - what a Prometheus scrape costs (docs/exposition.md).
 *
 *   scrape-bench render [--source map|store] [--keys N[,N...]] [--reps R]
 *       Time to render N keys in each format into a sink that only counts
 *       the bytes (the formatting and the walk, not the network). Keys are
 *       "/api/v1/item/<7 digits>" (20 bytes), key i holds 3 * i. Prints
 *       one line per (source, format, keys): the median of R renders in
 *       ms, ns per key, bytes, and "ok" when the byte count and the
 *       sample count are exactly what those keys and values make.
 *
 *   scrape-bench interfere [--source map|store] [--keys N] [--seconds S]
 *                          [--rounds K] [--interval MS]
 *       Two threads add 1 to random keys by name, as fast as they can.
 *       Rounds alternate: S seconds with no scraper, S seconds with a
 *       third thread rendering the whole map or store (text format, to the
 *       counting sink) every MS milliseconds (default 1000: Prometheus's
 *       usual interval is 15 s or more, 1 s is the harsh case). Prints
 *       the adds/s of each phase, the medians, the slowdown in percent,
 *       and checks that the final values sum to the adds done.
 *
 *   scrape-bench fill FILE --keys N
 *       Adds 1 to each of N keys of the store FILE (created if absent), as
 *       one writer process; run.sh starts two at once, then serves FILE.
 *
 * --source store uses a tally_store in a temporary file (what tally serve
 * reads).
 *
 * Exit status 0 when every check is exact, 1 otherwise, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tally.h"

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int key_of(char *buf, size_t i)
{
    return sprintf(buf, "/api/v1/item/%07zu", i);
}

/* ---- the source: a map or a store ------------------------------------ */

struct source {
    int is_store;
    tally_map *map;
    tally_store *store;
    char path[64];
};

static int source_open(struct source *s, const char *kind)
{
    memset(s, 0, sizeof *s);
    if (strcmp(kind, "map") == 0)
        return tally_map_new(&s->map);
    if (strcmp(kind, "store") == 0) {
        struct tally_store_config cfg = {.flags = TALLY_STORE_CREATE};
        int fd;

        s->is_store = 1;
        snprintf(s->path, sizeof s->path, "/tmp/tally-scrape-XXXXXX");
        fd = mkstemp(s->path);
        if (fd < 0)
            return -errno;
        close(fd);
        unlink(s->path); /* tally_store_open creates it */
        return tally_store_open(&s->store, s->path, &cfg);
    }
    return -ENOTSUP;
}

static void source_close(struct source *s)
{
    if (s->is_store) {
        tally_store_close(s->store);
        unlink(s->path);
        return;
    }
    tally_map_free(s->map);
}

static int source_add(struct source *s, const char *key, size_t len,
                      int64_t v)
{
    if (s->is_store)
        return tally_store_add_n(s->store, key, len, v);
    return tally_map_add_n(s->map, key, len, v);
}

static int source_render(struct source *s, tally_expo *w,
                         const struct tally_expo_family *f)
{
    if (s->is_store)
        return tally_expo_store(w, f, s->store);
    return tally_expo_map(w, f, s->map);
}

/* ---- a sink that counts, and sums the values back --------------------- */

struct count {
    uint64_t bytes;
};

static int count_sink(void *ctx, const void *data, size_t len)
{
    struct count *c = ctx;

    (void)data;
    c->bytes += len;
    return 0;
}

static const struct tally_expo_family family = {
    .name = "scrape_bench_requests",
    .help = "Requests by item.",
};

/* Renders once; returns ns, or 0 on an error (printed). */
static uint64_t render_once(struct source *s, unsigned format,
                            uint64_t *bytes, uint64_t *samples)
{
    struct count c = {0};
    struct tally_expo_stats st;
    tally_expo *w;
    uint64_t t0, t1;
    int rc;

    rc = tally_expo_new(&w, format, count_sink, &c);
    if (rc != 0) {
        fprintf(stderr, "scrape-bench: %s\n", tally_strerror(rc));
        return 0;
    }
    t0 = now_ns();
    rc = source_render(s, w, &family);
    if (rc == 0)
        rc = tally_expo_finish(w);
    t1 = now_ns();
    tally_expo_stats(w, &st);
    tally_expo_free(w);
    if (rc != 0) {
        fprintf(stderr, "scrape-bench: render: %s\n", tally_strerror(rc));
        return 0;
    }
    *bytes = c.bytes;
    *samples = st.samples;
    return t1 - t0 ? t1 - t0 : 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The exact text 0.0.4 size of n keys: header lines plus one line per key
 * ("scrape_bench_requests_total{key=\"/api/v1/item/0000000\"} V\n"). */
static uint64_t text_bytes(size_t n)
{
    uint64_t b = strlen("# HELP scrape_bench_requests_total Requests by "
                        "item.\n# TYPE scrape_bench_requests_total "
                        "counter\n");
    size_t i;

    for (i = 0; i < n; i++) {
        char v[24];
        b += strlen("scrape_bench_requests_total{key=\"/api/v1/item/"
                    "0000000\"} \n") +
             (size_t)sprintf(v, "%zu", 3 * i);
    }
    return b;
}

static int cmd_render(const char *kind, const size_t *sizes, int nsizes,
                      int reps)
{
    int status = 0, k;

    printf("%-6s %-11s %8s %10s %9s %12s %s\n", "source", "format", "keys",
           "median_ms", "ns/key", "bytes", "check");
    for (k = 0; k < nsizes; k++) {
        size_t n = sizes[k], i;
        struct source s;
        unsigned fmt;
        int rc = source_open(&s, kind);

        if (rc != 0) {
            fprintf(stderr, "scrape-bench: %s: %s\n", kind,
                    tally_strerror(rc));
            return 1;
        }
        for (i = 0; i < n; i++) {
            char key[48];
            int len = key_of(key, i);
            if ((rc = source_add(&s, key, (size_t)len, 3 * (int64_t)i)) != 0) {
                fprintf(stderr, "scrape-bench: add: %s\n", tally_strerror(rc));
                source_close(&s);
                return 1;
            }
        }
        for (fmt = 0; fmt < 2; fmt++) {
            uint64_t *ns = calloc((size_t)reps, sizeof *ns);
            uint64_t bytes = 0, samples = 0, want;
            int r, ok = 1;

            if (ns == NULL)
                return 1;
            for (r = 0; r < reps; r++) {
                ns[r] = render_once(&s, fmt, &bytes, &samples);
                if (ns[r] == 0)
                    ok = 0;
            }
            qsort(ns, (size_t)reps, sizeof *ns, cmp_u64);
            /* OpenMetrics: the family line says "scrape_bench_requests"
             * (6 bytes fewer, twice) and ends with "# EOF\n". */
            want = text_bytes(n) + (fmt == TALLY_EXPO_OPENMETRICS ? 6 - 12 : 0);
            if (bytes != want || samples != n)
                ok = 0;
            if (!ok)
                status = 1;
            printf("%-6s %-11s %8zu %10.3f %9.1f %12llu %s\n", kind,
                   fmt == TALLY_EXPO_TEXT ? "text" : "openmetrics", n,
                   (double)ns[reps / 2] / 1e6,
                   n ? (double)ns[reps / 2] / (double)n : 0.0,
                   (unsigned long long)bytes, ok ? "ok" : "WRONG");
            fflush(stdout);
            free(ns);
        }
        source_close(&s);
    }
    return status;
}

/* ---- interference ---------------------------------------------------- */

struct shared {
    struct source *src;
    size_t keys;
    atomic_int phase_stop;   /* set by main: the adders' phase ends */
    atomic_int scraper_stop; /* set by main: the scraper ends */
    unsigned interval_ms;
    uint64_t scrapes, scrape_ns;
    int scrape_err;
};

struct adder {
    struct shared *sh;
    pthread_t thread;
    uint64_t seed;
    uint64_t adds; /* this phase */
    uint64_t total;
    int err;
};

static void *adder_run(void *arg)
{
    struct adder *a = arg;
    struct shared *sh = a->sh;
    char keys[64][48];
    int lens[64];
    uint64_t n = 0, x = a->seed;

    /* Keys drawn from all N at random, 64 at a time (formatting a key
     * would cost more than the add). */
    for (;;) {
        int j;
        for (j = 0; j < 64; j++) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            lens[j] = key_of(keys[j], (size_t)((x * 0x2545F4914F6CDD1DULL) %
                                               sh->keys));
        }
        for (j = 0; j < 64 * 16; j++) {
            if (source_add(sh->src, keys[j & 63], (size_t)lens[j & 63], 1) !=
                0) {
                a->err = 1;
                return NULL;
            }
            n++;
        }
        if (atomic_load_explicit(&sh->phase_stop, memory_order_relaxed))
            break;
    }
    a->adds = n;
    a->total += n;
    return NULL;
}

static void *scraper_run(void *arg)
{
    struct shared *sh = arg;

    while (!atomic_load_explicit(&sh->scraper_stop, memory_order_relaxed)) {
        uint64_t bytes, samples, t0 = now_ns(), ns;
        struct timespec ts;
        uint64_t left;

        ns = render_once(sh->src, TALLY_EXPO_TEXT, &bytes, &samples);
        if (ns == 0)
            sh->scrape_err = 1;
        sh->scrapes++;
        sh->scrape_ns += ns;
        /* sleep out the rest of the interval, in slices, to stop soon */
        for (;;) {
            uint64_t spent = now_ns() - t0;
            if (spent >= (uint64_t)sh->interval_ms * 1000000u ||
                atomic_load_explicit(&sh->scraper_stop, memory_order_relaxed))
                break;
            left = (uint64_t)sh->interval_ms * 1000000u - spent;
            if (left > 20000000u)
                left = 20000000u;
            ts.tv_sec = 0;
            ts.tv_nsec = (long)left;
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* One phase: the two adders for `seconds`; returns adds/s. */
static double phase(struct shared *sh, struct adder *ad, double seconds,
                    int scraping)
{
    pthread_t scraper;
    uint64_t t0, t1;
    struct timespec ts;
    int i;

    atomic_store_explicit(&sh->phase_stop, 0, memory_order_relaxed);
    atomic_store_explicit(&sh->scraper_stop, 0, memory_order_relaxed);
    if (scraping)
        pthread_create(&scraper, NULL, scraper_run, sh);
    t0 = now_ns();
    for (i = 0; i < 2; i++)
        pthread_create(&ad[i].thread, NULL, adder_run, &ad[i]);
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
    atomic_store_explicit(&sh->phase_stop, 1, memory_order_relaxed);
    for (i = 0; i < 2; i++)
        pthread_join(ad[i].thread, NULL);
    t1 = now_ns();
    if (scraping) {
        atomic_store_explicit(&sh->scraper_stop, 1, memory_order_relaxed);
        pthread_join(scraper, NULL);
    }
    return (double)(ad[0].adds + ad[1].adds) / ((double)(t1 - t0) / 1e9);
}

static int sum_visit(void *ctx, const void *key, size_t len, int64_t value)
{
    (void)key;
    (void)len;
    *(int64_t *)ctx += value;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmd_interfere(const char *kind, size_t keys, double seconds,
                         int rounds, unsigned interval_ms)
{
    struct source s;
    struct shared sh = {0};
    struct adder ad[2] = {{0}, {0}};
    double *off = calloc((size_t)rounds, sizeof *off);
    double *on = calloc((size_t)rounds, sizeof *on);
    int64_t sum = 0;
    size_t i;
    int r, rc;

    if (off == NULL || on == NULL)
        return 1;
    if ((rc = source_open(&s, kind)) != 0) {
        fprintf(stderr, "scrape-bench: %s: %s\n", kind, tally_strerror(rc));
        return 1;
    }
    for (i = 0; i < keys; i++) {
        char key[48];
        int len = key_of(key, i);
        if (source_add(&s, key, (size_t)len, 0) != 0)
            return 1;
    }
    sh.src = &s;
    sh.keys = keys;
    sh.interval_ms = interval_ms;
    ad[0].sh = ad[1].sh = &sh;
    ad[0].seed = 0x9E3779B97F4A7C15ULL;
    ad[1].seed = 0xD1B54A32D192ED03ULL;

    printf("interfere: %s, %zu keys, 2 adding threads, a scrape every %u "
           "ms in the 'on' phases, %d rounds of %.1f s off + %.1f s on\n",
           kind, keys, interval_ms, rounds, seconds, seconds);
    for (r = 0; r < rounds; r++) {
        /* alternate which goes first, so a trend in the machine's load
         * hits both alike */
        if (r % 2 == 0) {
            off[r] = phase(&sh, ad, seconds, 0);
            on[r] = phase(&sh, ad, seconds, 1);
        } else {
            on[r] = phase(&sh, ad, seconds, 1);
            off[r] = phase(&sh, ad, seconds, 0);
        }
        printf("round %d: off %.1f M adds/s, on %.1f M adds/s\n", r + 1,
               off[r] / 1e6, on[r] / 1e6);
        fflush(stdout);
    }
    qsort(off, (size_t)rounds, sizeof *off, cmp_double);
    qsort(on, (size_t)rounds, sizeof *on, cmp_double);

    if (s.is_store)
        rc = tally_store_foreach(s.store, sum_visit, &sum);
    else
        rc = tally_map_foreach(s.map, sum_visit, &sum);
    {
        int exact = rc == 0 && !ad[0].err && !ad[1].err && !sh.scrape_err &&
                    (uint64_t)sum == ad[0].total + ad[1].total;
        printf("median: off %.1f M adds/s, on %.1f M adds/s: slowdown "
               "%.1f%%; %llu scrapes, %.2f ms each on average; adds %llu, "
               "sum of values %lld: %s\n",
               off[rounds / 2] / 1e6, on[rounds / 2] / 1e6,
               100.0 * (1.0 - on[rounds / 2] / off[rounds / 2]),
               (unsigned long long)sh.scrapes,
               sh.scrapes ? (double)sh.scrape_ns / (double)sh.scrapes / 1e6
                          : 0.0,
               (unsigned long long)(ad[0].total + ad[1].total),
               (long long)sum, exact ? "ok" : "WRONG");
        source_close(&s);
        free(off);
        free(on);
        return exact ? 0 : 1;
    }
}

/* ---- fill ------------------------------------------------------------ */

static int cmd_fill(const char *path, size_t keys)
{
    struct tally_store_config cfg = {.flags = TALLY_STORE_CREATE};
    tally_store *st;
    size_t i;
    int rc = tally_store_open(&st, path, &cfg);

    if (rc != 0) {
        fprintf(stderr, "scrape-bench: %s: %s\n", path, tally_strerror(rc));
        return 1;
    }
    for (i = 0; i < keys && rc == 0; i++) {
        char key[48];
        int len = key_of(key, i);
        rc = tally_store_add_n(st, key, (size_t)len, 1);
    }
    tally_store_close(st);
    if (rc != 0) {
        fprintf(stderr, "scrape-bench: %s: %s\n", path, tally_strerror(rc));
        return 1;
    }
    return 0;
}

/* ---- main ----------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr,
            "usage: scrape-bench render [--source map|store] "
            "[--keys N[,N...]] [--reps R]\n"
            "       scrape-bench interfere [--source map|store] [--keys N] "
            "[--seconds S] [--rounds K] [--interval MS]\n"
            "       scrape-bench fill FILE --keys N\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"source", required_argument, NULL, 's'},
        {"keys", required_argument, NULL, 'k'},
        {"reps", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 'S'},
        {"rounds", required_argument, NULL, 'R'},
        {"interval", required_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    const char *kind = "map";
    size_t sizes[8] = {1000, 100000, 1000000};
    int nsizes = 3, reps = 5, rounds = 5, opt, keys_given = 0;
    double seconds = 2;
    long interval = 1000;
    char *end;

    if (argc < 2)
        return usage();
    optind = strcmp(argv[1], "fill") == 0 ? 3 : 2;
    if (optind > argc)
        return usage();
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            kind = optarg;
            break;
        case 'k': {
            char *p = optarg;
            nsizes = 0;
            keys_given = 1;
            while (*p != '\0' && nsizes < 8) {
                long v = strtol(p, &end, 10);
                if (end == p || v < 1 || v > 100000000)
                    return usage();
                sizes[nsizes++] = (size_t)v;
                p = *end == ',' ? end + 1 : end;
                if (*end != ',' && *end != '\0')
                    return usage();
            }
            break;
        }
        case 'r':
            reps = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || reps < 1 || reps > 1000)
                return usage();
            break;
        case 'S':
            seconds = strtod(optarg, &end);
            if (*end != '\0' || seconds <= 0 || seconds > 3600)
                return usage();
            break;
        case 'R':
            rounds = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || rounds < 1 || rounds > 1000)
                return usage();
            break;
        case 'i':
            interval = strtol(optarg, &end, 10);
            if (*end != '\0' || interval < 1 || interval > 3600000)
                return usage();
            break;
        default:
            return usage();
        }
    }
    if (optind != argc)
        return usage();
    if (strcmp(kind, "map") != 0 && strcmp(kind, "store") != 0)
        return usage();
    if (strcmp(argv[1], "fill") == 0)
        return cmd_fill(argv[2], sizes[0]);
    if (strcmp(argv[1], "render") == 0)
        return cmd_render(kind, sizes, nsizes, reps);
    if (strcmp(argv[1], "interfere") == 0)
        return cmd_interfere(kind, keys_given ? sizes[0] : 100000, seconds,
                             rounds,
                             (unsigned)interval);
    return usage();
}
