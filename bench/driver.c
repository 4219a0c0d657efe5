/*
 * driver.c - the C benchmark driver: runs one cell and prints one CSV line.
 *
 *   tally-bench --impl NAME --workload W --threads T --seconds S --rep R
 *               [--reps N] [--keys K] [--zipf-file F]
 *   tally-bench --list              impl, workloads, "ok" or "skip: why"
 *   tally-bench --header            the CSV header
 *   tally-bench --gen-zipf F --keys K
 *                                   writes the Zipf index file all three
 *                                   languages read
 *   tally-bench --stream N --workload W [--threads T] [--keys K]
 *                                   prints each thread's first N ops
 *                                   ("thread op key"), as Go and Java do,
 *                                   to show the workloads are identical
 *
 * Output (bench/README.md has the whole protocol):
 *
 *   impl,workload,threads,rep,seconds,ops,mops,check,extra
 *
 * HOW A CELL RUNS
 *
 * The main thread builds the structure and preloads the workload's keys,
 * starts T workers (plus one iterator for "iterate") that meet it on a
 * barrier, sleeps S seconds, raises run.stop, and joins them. Each worker
 * counts its own operations in batches of BENCH_BATCH and looks at stop
 * (relaxed) between batches. seconds is the measured time from the
 * barrier to the last join; mops = ops / seconds / 1e6.
 *
 * Then the check: the structure must hold exactly what the workers did
 * (per key, recomputed by replaying each worker's key stream). On a
 * mismatch the line says FAIL, stderr says why, and the exit status is 1.
 *
 * Exit status: 0 ok, 1 check failed or run error, 2 usage, 77 skipped
 * (this build lacks the implementation; stderr says "skip: ...").
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "bench.h"
#include "tally.h"

#define EXIT_SKIP 77

static const struct bench_impl *const impls[] = {
    &bench_tally_counter,  &bench_tally_adder,      &bench_c_atomic,
    &bench_c_mutex,        &bench_percpu_cell,      &bench_thread_cell_store,
    &bench_tally_map,      &bench_tally_map_handle, &bench_seed_mutex_map,
    &bench_urcu_lfht,      &bench_ref_plain_table,  &bench_ref_xadd_table,
    &bench_ref_inline_table,
};
#define NIMPLS (sizeof(impls) / sizeof(impls[0]))

static const char *const workload_names[W_COUNT] = {
    [W_COUNTER] = "counter",   [W_HOT] = "hot",
    [W_UNIFORM] = "uniform1k", [W_ZIPF] = "zipf1m",
    [W_INSERT] = "insert",     [W_MIXED] = "mixed",
    [W_ITERATE] = "iterate",   [W_MEMORY] = "memory",
};

/* Default K per workload (--keys overrides). */
static size_t default_keys(enum bench_workload w)
{
    switch (w) {
    case W_UNIFORM:
    case W_MIXED:
    case W_ITERATE:
        return 1024;
    case W_ZIPF:
        return (size_t)1 << 20;
    case W_MEMORY:
        return 1000000;
    default:
        return 0;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Resident set size in bytes, from /proc/self/statm; 0 if unreadable.
 * Free heap memory goes back to the system first (as the Go side does
 * with debug.FreeOSMemory), so that blocks a structure has freed, e.g.
 * the tables it outgrew, do not count as its footprint. */
static size_t rss_bytes(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- threads ------------------------------------------------------------ */

struct iter_slot {
    struct bench_run *run;
    uint64_t passes;
};

static pthread_barrier_t start_barrier;

static void *worker_main(void *arg)
{
    struct bench_thread *th = arg;
    const struct bench_impl *impl = th->run->impl;
    if (impl->thread_enter)
        impl->thread_enter(th->run);
    pthread_barrier_wait(&start_barrier);
    impl->work(th);
    if (impl->thread_exit)
        impl->thread_exit(th->run);
    return NULL;
}

static void *iterator_main(void *arg)
{
    struct iter_slot *it = arg;
    const struct bench_impl *impl = it->run->impl;
    static _Atomic(int64_t) sink;
    int64_t sum = 0;
    uint64_t passes = 0;
    if (impl->thread_enter)
        impl->thread_enter(it->run);
    pthread_barrier_wait(&start_barrier);
    while (!atomic_load_explicit(&it->run->stop, memory_order_relaxed)) {
        sum += impl->iterate(it->run);
        passes++;
    }
    atomic_fetch_add_explicit(&sink, sum, memory_order_relaxed);
    it->passes = passes;
    if (impl->thread_exit)
        impl->thread_exit(it->run);
    return NULL;
}

/* ---- checks ------------------------------------------------------------- */

/* Records why a check failed; the first reason is kept. Returns -1. */
static int failf(char *msg, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int failf(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int check_keyed(struct bench_run *run, const struct bench_thread *ths,
                       char *msg, size_t cap)
{
    const struct bench_cfg *cfg = run->cfg;
    uint64_t *expected = calloc(cfg->nkeys, sizeof(*expected));
    if (expected == NULL)
        return failf(msg, cap, "out of memory for the check");
    for (unsigned i = 0; i < cfg->threads; i++)
        bench_replay(run, i, ths[i].ops, expected);
    int rc = 0;
    for (size_t j = 0; j < cfg->nkeys; j++) {
        int present;
        int64_t v = run->impl->value(run, &run->keys[j], &present);
        if (present == 0 || v != (int64_t)expected[j]) {
            rc = failf(msg, cap, "key %s holds %" PRId64 " (%s), expected %"
                       PRIu64, run->keys[j].s, v,
                       present ? "present" : "absent", expected[j]);
            break;
        }
    }
    uint64_t size = run->impl->size(run);
    if (size != cfg->nkeys)
        rc = failf(msg, cap, "size %" PRIu64 ", expected %zu", size,
                   cfg->nkeys);
    free(expected);
    return rc;
}

static int check_insert(struct bench_run *run, const struct bench_thread *ths,
                        uint64_t total, char *msg, size_t cap)
{
    uint64_t size = run->impl->size(run);
    if (size != total)
        return failf(msg, cap, "size %" PRIu64 ", expected %" PRIu64, size,
                     total);
    /* Every thread's first 1000 keys, ~1000 spread over the rest, and the
     * one after its last must be absent. */
    char buf[64];
    for (unsigned i = 0; i < run->cfg->threads; i++) {
        uint64_t n = ths[i].ops;
        uint64_t stride = n / 1000 + 1;
        for (uint64_t j = 0; j <= n; j = j < 1000 ? j + 1 : j + stride) {
            if (j >= n)
                j = n;
            struct bench_key k = {buf, bench_insert_key(buf, i, j)};
            int present;
            int64_t v = run->impl->value(run, &k, &present);
            int64_t want = j < n ? 1 : 0;
            if (v != want || (j == n && present == 1) ||
                (j < n && present == 0))
                return failf(msg, cap, "key %s holds %" PRId64 ", expected %"
                             PRId64, buf, v, want);
            if (j == n)
                break;
        }
    }
    if (run->impl->iterate != NULL) {
        int64_t sum = run->impl->iterate(run);
        if (sum != (int64_t)total)
            return failf(msg, cap, "values sum to %" PRId64 ", expected %"
                         PRIu64, sum, total);
    }
    return 0;
}

/* ---- one cell ----------------------------------------------------------- */

struct outcome {
    double seconds;
    uint64_t ops;
    char extra[128];
    char why[512]; /* empty when the check passed */
};

static int load_zipf(struct bench_run *run, const char *file, uint32_t **seq)
{
    size_t len = 0;
    if (file == NULL) {
        *seq = bench_zipf_make(run->cfg->nkeys, &len);
        if (*seq == NULL)
            return -ENOMEM;
    } else {
        FILE *f = fopen(file, "rb");
        if (f == NULL)
            return -errno;
        len = run->cfg->nkeys * 4;
        *seq = malloc(len * sizeof(**seq));
        size_t got = *seq ? fread(*seq, sizeof(**seq), len, f) : 0;
        int extra = fgetc(f);
        fclose(f);
        if (got != len || extra != EOF) {
            fprintf(stderr, "tally-bench: %s does not hold %zu indices for "
                    "%zu keys\n", file, len, run->cfg->nkeys);
            return -EINVAL;
        }
        for (size_t i = 0; i < len; i++)
            if ((*seq)[i] >= run->cfg->nkeys)
                return -EINVAL;
    }
    run->zipf = *seq;
    run->zipf_mask = len - 1;
    return 0;
}

static int run_memory(struct bench_run *run, struct outcome *out)
{
    const size_t n = run->cfg->nkeys;
    char buf[32];
    size_t key_bytes = 0;
    size_t before = rss_bytes();
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        struct bench_key k = {buf, bench_memory_key(buf, i)};
        key_bytes += k.len;
        if (run->impl->add(run, &k, 1) != 0) {
            failf(out->why, sizeof(out->why), "insert of %s failed", buf);
            return 0;
        }
    }
    out->seconds = now_s() - t0;
    size_t after = rss_bytes();
    out->ops = n;
    double per_key = ((double)after - (double)before - (double)key_bytes) /
                     (double)(n ? n : 1);
    snprintf(out->extra, sizeof(out->extra), "bytes_per_key=%.1f", per_key);

    if (run->impl->size(run) != n)
        failf(out->why, sizeof(out->why), "size %" PRIu64 ", expected %zu",
              run->impl->size(run), n);
    for (size_t i = 0; i < n && out->why[0] == '\0'; i++) {
        struct bench_key k = {buf, bench_memory_key(buf, i)};
        int present;
        if (run->impl->value(run, &k, &present) != 1 || present == 0)
            failf(out->why, sizeof(out->why), "key %s does not hold 1", buf);
    }
    return 0;
}

static int run_timed(struct bench_run *run, struct outcome *out)
{
    const struct bench_cfg *cfg = run->cfg;
    const unsigned iterators = cfg->workload == W_ITERATE ? 1 : 0;
    struct bench_thread *ths = NULL;
    pthread_t *tids = calloc(cfg->threads + iterators, sizeof(*tids));
    struct iter_slot it = {run, 0};
    if (tids == NULL || posix_memalign((void **)&ths, 64,
                                       cfg->threads * sizeof(*ths)) != 0) {
        free(tids);
        return -ENOMEM;
    }
    memset(ths, 0, cfg->threads * sizeof(*ths));

    int rc = pthread_barrier_init(&start_barrier, NULL,
                                  cfg->threads + iterators + 1);
    if (rc != 0) {
        free(tids);
        free(ths);
        return -rc;
    }
    atomic_store_explicit(&run->stop, 0, memory_order_relaxed);
    unsigned started = 0;
    for (; started < cfg->threads + iterators; started++) {
        if (started < cfg->threads) {
            ths[started].run = run;
            ths[started].index = started;
            rc = pthread_create(&tids[started], NULL, worker_main,
                                &ths[started]);
        } else {
            rc = pthread_create(&tids[started], NULL, iterator_main, &it);
        }
        if (rc != 0) {
            /* cannot reach the barrier's count: give up loudly */
            fprintf(stderr, "tally-bench: pthread_create: %s\n",
                    strerror(rc));
            exit(1);
        }
    }
    pthread_barrier_wait(&start_barrier);
    double t0 = now_s();
    sleep_s(cfg->seconds);
    atomic_store_explicit(&run->stop, 1, memory_order_relaxed);
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    out->seconds = now_s() - t0;
    pthread_barrier_destroy(&start_barrier);

    uint64_t total = 0, failures = 0;
    for (unsigned i = 0; i < cfg->threads; i++) {
        total += ths[i].ops;
        failures += ths[i].failures;
    }
    out->ops = total;
    if (iterators)
        snprintf(out->extra, sizeof(out->extra), "iter_per_s=%.1f",
                 (double)it.passes / out->seconds);

    char *why = out->why;
    const size_t cap = sizeof(out->why);
    if (failures != 0)
        failf(why, cap, "%" PRIu64 " calls returned an error", failures);
    switch (cfg->workload) {
    case W_COUNTER: {
        int64_t v = run->impl->counter_value(run);
        if (v != (int64_t)total)
            failf(why, cap, "counter holds %" PRId64 ", expected %" PRIu64,
                  v, total);
        break;
    }
    case W_HOT: {
        struct bench_key k = {run->hot_key, run->hot_len};
        int present;
        int64_t v = run->impl->value(run, &k, &present);
        if (v != (int64_t)total || present == 0)
            failf(why, cap, "%s holds %" PRId64 ", expected %" PRIu64,
                  run->hot_key, v, total);
        if (run->impl->size(run) != 1)
            failf(why, cap, "size %" PRIu64 ", expected 1",
                  run->impl->size(run));
        break;
    }
    case W_INSERT:
        check_insert(run, ths, total, why, cap);
        break;
    default:
        check_keyed(run, ths, why, cap);
        break;
    }
    free(tids);
    free(ths);
    return 0;
}

static int run_cell(const struct bench_impl *impl, const struct bench_cfg *cfg,
                    const char *zipf_file, struct outcome *out)
{
    struct bench_run run;
    struct bench_key *keys = NULL;
    uint32_t *zipf = NULL;
    int rc;

    memset(&run, 0, sizeof(run));
    memset(out, 0, sizeof(*out));
    snprintf(out->extra, sizeof(out->extra), "-");
    run.cfg = cfg;
    run.impl = impl;
    run.hot_key = "somekey";
    run.hot_len = strlen(run.hot_key);

    if (impl->thread_enter)
        impl->thread_enter(&run);
    rc = impl->setup(&run);
    if (rc != 0) {
        fprintf(stderr, "tally-bench: %s setup: %s\n", impl->name,
                strerror(-rc));
        goto out;
    }

    switch (cfg->workload) {
    case W_HOT:
        rc = impl->add(&run, &(struct bench_key){run.hot_key, run.hot_len},
                       0);
        break;
    case W_ZIPF:
        rc = load_zipf(&run, zipf_file, &zipf);
        if (rc != 0)
            break;
        /* fall through */
    case W_UNIFORM:
    case W_MIXED:
    case W_ITERATE:
        keys = bench_keys_make(cfg->nkeys);
        if (keys == NULL) {
            rc = -ENOMEM;
            break;
        }
        run.keys = keys;
        run.key_mask = cfg->nkeys - 1;
        for (size_t i = 0; i < cfg->nkeys && rc == 0; i++)
            rc = impl->add(&run, &keys[i], 0);
        break;
    default:
        break;
    }
    if (rc == 0 && impl->prepare)
        rc = impl->prepare(&run);
    if (rc != 0) {
        fprintf(stderr, "tally-bench: %s preload: %s\n", impl->name,
                strerror(-rc));
        goto out;
    }

    rc = cfg->workload == W_MEMORY ? run_memory(&run, out)
                                   : run_timed(&run, out);
out:
    if (run.state != NULL && impl->teardown)
        impl->teardown(&run);
    if (impl->thread_exit)
        impl->thread_exit(&run);
    bench_keys_free(keys);
    free(zipf);
    return rc;
}

/* ---- --stream: the workload's op sequence, for cross-language checks ---- */

/* Prints the first n ops of every thread as "thread op key" lines: the
 * very sequence the timed loops follow. run.sh compares this output with
 * the Go and Java programs' (same option), so that the three languages
 * provably run the same workload. */
static int print_stream(const struct bench_cfg *cfg, const char *zipf_file,
                        size_t n)
{
    struct bench_run run;
    struct bench_key *keys = NULL;
    uint32_t *zipf = NULL;
    memset(&run, 0, sizeof(run));
    run.cfg = cfg;
    const enum bench_workload w = cfg->workload;
    if (w == W_ZIPF && load_zipf(&run, zipf_file, &zipf) != 0) {
        fprintf(stderr, "tally-bench: --stream zipf1m needs --zipf-file\n");
        return 1;
    }
    if (w == W_UNIFORM || w == W_ZIPF || w == W_MIXED || w == W_ITERATE) {
        keys = bench_keys_make(cfg->nkeys);
        if (keys == NULL)
            return 1;
        run.key_mask = cfg->nkeys - 1;
    }
    char buf[64];
    for (unsigned t = 0; t < cfg->threads; t++) {
        uint64_t rng = (uint64_t)t + 1;
        size_t pos = zipf ? bench_zipf_start(t, run.zipf_mask) : 0;
        for (size_t j = 0; j < n; j++) {
            const char *op = "add", *key = buf;
            uint64_t x;
            switch (w) {
            case W_COUNTER:
                key = "-";
                break;
            case W_HOT:
                key = "somekey";
                break;
            case W_MIXED:
            case W_UNIFORM:
            case W_ITERATE:
                x = bench_rng_next(&rng);
                key = keys[BENCH_UNIFORM_INDEX(x, run.key_mask)].s;
                if (w == W_MIXED && BENCH_MIXED_IS_GET(x))
                    op = "get";
                break;
            case W_ZIPF:
                key = keys[zipf[pos]].s;
                pos = (pos + 1) & run.zipf_mask;
                break;
            case W_INSERT:
                bench_insert_key(buf, t, j);
                break;
            case W_MEMORY:
                bench_memory_key(buf, j);
                break;
            default:
                break;
            }
            printf("%u %s %s\n", t, op, key);
        }
    }
    bench_keys_free(keys);
    free(zipf);
    return 0;
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: tally-bench --impl NAME --workload W --threads T --seconds S\n"
        "                   --rep R [--reps N] [--keys K] [--zipf-file F]\n"
        "       tally-bench --list | --header\n"
        "       tally-bench --stream N --workload W [--threads T] [--keys K]\n"
        "                   [--zipf-file F]   the first N ops of each thread\n"
        "       tally-bench --gen-zipf FILE --keys K\n"
        "workloads: counter hot uniform1k zipf1m insert mixed iterate memory\n"
        "prints impl,workload,threads,rep,seconds,ops,mops,check,extra\n");
}

static int list_impls(void)
{
    for (size_t i = 0; i < NIMPLS; i++) {
        const struct bench_impl *impl = impls[i];
        const char *skip = impl->skip_reason ? impl->skip_reason() : NULL;
        printf("%s\t", impl->name);
        const char *sep = "";
        for (int w = 0; w < W_COUNT; w++)
            if (impl->workloads & WBIT(w)) {
                printf("%s%s", sep, workload_names[w]);
                sep = ",";
            }
        if (skip)
            printf("\tskip: %s\n", skip);
        else
            printf("\tok\n");
    }
    return 0;
}

static int gen_zipf(const char *file, size_t nkeys)
{
    size_t len;
    uint32_t *seq = bench_zipf_make(nkeys, &len);
    if (seq == NULL) {
        fprintf(stderr, "tally-bench: out of memory\n");
        return 1;
    }
    /* little-endian uint32s: what x86 and arm64 store natively, and what
     * the Go and Java readers expect */
    FILE *f = fopen(file, "wb");
    int ok = f != NULL && fwrite(seq, sizeof(*seq), len, f) == len;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    free(seq);
    if (!ok) {
        fprintf(stderr, "tally-bench: cannot write %s\n", file);
        return 1;
    }
    return 0;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return -1;
    *out = (size_t)v;
    return 0;
}

int tally_bench_main(int argc, char **argv)
{
    const char *impl_name = NULL, *workload = NULL, *zipf_file = NULL,
               *gen_file = NULL;
    size_t threads = 1, rep = 1, reps = 1, keys = 0, stream = 0;
    double seconds = 1.0;
    int keys_given = 0;

    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--list") == 0)
            return list_impls();
        if (strcmp(a, "--header") == 0) {
            printf("impl,workload,threads,rep,seconds,ops,mops,check,extra\n");
            return 0;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (v == NULL) {
            static const char *const valued[] = {
                "--impl", "--workload", "--zipf-file", "--gen-zipf",
                "--threads", "--stream", "--rep", "--reps", "--keys",
                "--seconds"};
            int known = 0;
            for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
                known |= strcmp(a, valued[k]) == 0;
            if (known)
                fprintf(stderr, "tally-bench: option %s needs a value\n", a);
            else
                fprintf(stderr, "tally-bench: unknown option %s\n", a);
            fprintf(stderr, "Try 'tally-bench --help'.\n");
            return 2;
        }
        if (strcmp(a, "--impl") == 0)
            impl_name = v;
        else if (strcmp(a, "--workload") == 0)
            workload = v;
        else if (strcmp(a, "--zipf-file") == 0)
            zipf_file = v;
        else if (strcmp(a, "--gen-zipf") == 0)
            gen_file = v;
        else if (strcmp(a, "--threads") == 0)
            bad = parse_size(v, &threads) != 0 || threads < 1 ||
                  threads > 4096;
        else if (strcmp(a, "--stream") == 0)
            bad = parse_size(v, &stream) != 0 || stream < 1;
        else if (strcmp(a, "--rep") == 0)
            bad = parse_size(v, &rep) != 0;
        else if (strcmp(a, "--reps") == 0)
            bad = parse_size(v, &reps) != 0 || reps < 1;
        else if (strcmp(a, "--keys") == 0) {
            bad = parse_size(v, &keys) != 0 || keys < 1 ||
                  keys > ((size_t)1 << 30);
            keys_given = 1;
        } else if (strcmp(a, "--seconds") == 0) {
            char *end;
            seconds = strtod(v, &end);
            bad = *end != '\0' || !(seconds > 0 && seconds < 3600);
        } else {
            fprintf(stderr, "tally-bench: unknown option %s\n", a);
            fprintf(stderr, "Try 'tally-bench --help'.\n");
            return 2;
        }
        if (bad) {
            fprintf(stderr, "tally-bench: bad value for %s: %s\n", a, v);
            return 2;
        }
    }

    if (gen_file != NULL) {
        if (!keys_given || (keys & (keys - 1)) != 0) {
            fprintf(stderr, "tally-bench: --gen-zipf needs --keys, a power "
                    "of two\n");
            return 2;
        }
        return gen_zipf(gen_file, keys);
    }
    if (workload == NULL || (impl_name == NULL && stream == 0)) {
        usage(stderr);
        return 2;
    }
    if (impl_name == NULL) /* --stream: any impl of the workload, no run */
        impl_name = strcmp(workload, "counter") == 0 ? "tally_counter"
                                                     : "tally_map";

    const struct bench_impl *impl = NULL;
    for (size_t i = 0; i < NIMPLS; i++)
        if (strcmp(impls[i]->name, impl_name) == 0)
            impl = impls[i];
    int w = -1;
    for (int i = 0; i < W_COUNT; i++)
        if (strcmp(workload_names[i], workload) == 0)
            w = i;
    if (impl == NULL || w < 0) {
        fprintf(stderr, "tally-bench: unknown %s '%s' (see --list)\n",
                impl == NULL ? "impl" : "workload",
                impl == NULL ? impl_name : workload);
        return 2;
    }
    if (impl->skip_reason != NULL) {
        fprintf(stderr, "skip: %s\n", impl->skip_reason());
        return EXIT_SKIP;
    }
    if (!(impl->workloads & WBIT(w))) {
        fprintf(stderr, "tally-bench: %s does not run workload %s\n",
                impl->name, workload);
        return 2;
    }

    struct bench_cfg cfg = {
        .workload = (enum bench_workload)w,
        .threads = (unsigned)threads,
        .seconds = seconds,
        .nkeys = keys_given ? keys : default_keys((enum bench_workload)w),
    };
    if (w == W_MEMORY)
        cfg.threads = 1;
    if ((w == W_UNIFORM || w == W_ZIPF || w == W_MIXED || w == W_ITERATE) &&
        (cfg.nkeys & (cfg.nkeys - 1)) != 0) {
        fprintf(stderr, "tally-bench: --keys must be a power of two for %s\n",
                workload);
        return 2;
    }

    if (stream != 0)
        return print_stream(&cfg, zipf_file, stream);

    int status = 0;
    for (size_t r = rep; r < rep + reps; r++) {
        struct outcome out;
        cfg.rep = (unsigned)r;
        if (run_cell(impl, &cfg, zipf_file, &out) != 0)
            return 1;
        int ok = out.why[0] == '\0';
        printf("%s,%s,%u,%u,%.4f,%" PRIu64 ",%.3f,%s,%s\n", impl->name,
               workload, cfg.threads, cfg.rep, out.seconds, out.ops,
               (double)out.ops / out.seconds / 1e6, ok ? "ok" : "FAIL",
               out.extra);
        fflush(stdout);
        if (!ok) {
            fprintf(stderr, "check=FAIL %s %s threads=%u rep=%u: %s\n",
                    impl->name, workload, cfg.threads, cfg.rep, out.why);
            status = 1;
        }
    }
    return status;
}
