/*
 * adder_costs.c - what a tally_adder costs beyond its adds (issue: "say
 * how much one adder costs at rest and per thread that used it, and
 * measure it"; "report the cost of tally_adder_sum with 2 and 16 threads
 * that have added").
 *
 *   sum:    T threads add to one adder and stay alive (parked on a
 *           barrier); the main thread times tally_adder_sum, median of
 *           runs of many calls. A sum walks every thread record, so its
 *           cost grows with the threads that have used tally, not cores.
 *   memory: resident-set growth for N adders created by one thread (at
 *           rest), then when one more thread adds once to each of them.
 *
 * Prints CSV: what,threads,value,unit. Checks every sum it reads.
 */
#include <pthread.h>
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

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

struct sum_ctx {
    tally_adder *a;
    pthread_barrier_t added, done;
};

static void *sum_worker(void *arg)
{
    struct sum_ctx *c = arg;
    tally_adder_add(c->a, 3);
    pthread_barrier_wait(&c->added);
    pthread_barrier_wait(&c->done);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int measure_sum(unsigned threads)
{
    struct sum_ctx c;
    pthread_t th[256];
    if (threads > 256 || tally_adder_new(&c.a) != 0)
        return -1;
    pthread_barrier_init(&c.added, NULL, threads + 1);
    pthread_barrier_init(&c.done, NULL, threads + 1);
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, sum_worker, &c) != 0)
            return -1;
    pthread_barrier_wait(&c.added);

    enum { RUNS = 21, CALLS = 20000 };
    uint64_t ns[RUNS];
    int bad = 0;
    for (int r = 0; r < RUNS; r++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < CALLS; i++)
            bad |= tally_adder_sum(c.a) != 3 * (int64_t)threads;
        ns[r] = now_ns() - t0;
    }
    qsort(ns, RUNS, sizeof ns[0], cmp_u64);
    pthread_barrier_wait(&c.done);
    for (unsigned i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    if (bad || tally_adder_sum(c.a) != 3 * (int64_t)threads) {
        fprintf(stderr, "adder_costs: wrong sum with %u threads\n", threads);
        return -1;
    }
    printf("sum_ns,%u,%.1f,ns per tally_adder_sum\n", threads,
           (double)ns[RUNS / 2] / CALLS);
    pthread_barrier_destroy(&c.added);
    pthread_barrier_destroy(&c.done);
    tally_adder_free(c.a);
    return 0;
}

struct mem_ctx {
    tally_adder **a;
    size_t n;
};

static void *mem_worker(void *arg)
{
    struct mem_ctx *c = arg;
    for (size_t i = 0; i < c->n; i++)
        tally_adder_inc(c->a[i]);
    return NULL;
}

static int measure_memory(size_t n)
{
    /* calloc + touch: the array's own pages are not the adders' cost. */
    tally_adder **a = malloc(n * sizeof(*a));
    if (a == NULL)
        return -1;
    memset(a, 0xa5, n * sizeof(*a));
    /* Warm the thread's record so that it is not counted per adder. */
    tally_adder *warm;
    if (tally_adder_new(&warm) != 0)
        return -1;
    tally_adder_inc(warm);

    long r0 = rss_bytes();
    for (size_t i = 0; i < n; i++)
        if (tally_adder_new(&a[i]) != 0)
            return -1;
    long r1 = rss_bytes();
    /* One more thread adds once to every adder, and stays registered
     * (records outlive their threads and are reused). */
    struct mem_ctx c = {a, n};
    pthread_t th;
    if (pthread_create(&th, NULL, mem_worker, &c) != 0)
        return -1;
    pthread_join(th, NULL);
    long r2 = rss_bytes();

    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad |= tally_adder_sum(a[i]) != 1;
    printf("bytes_per_adder_at_rest,1,%.1f,bytes (%zu adders)\n",
           (double)(r1 - r0) / (double)n, n);
    printf("bytes_per_adder_per_thread,1,%.1f,bytes (%zu adders)\n",
           (double)(r2 - r1) / (double)n, n);
    for (size_t i = 0; i < n; i++)
        tally_adder_free(a[i]);
    tally_adder_free(warm);
    free(a);
    if (bad) {
        fprintf(stderr, "adder_costs: wrong sum after the memory run\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    printf("what,threads,value,unit\n");
    static const unsigned counts[] = {1, 2, 16, 64};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        if (measure_sum(counts[i]) != 0)
            return 1;
    return measure_memory(n) != 0;
}
