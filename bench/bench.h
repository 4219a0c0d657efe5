/*
 * bench.h - the C benchmark driver's internal interface.
 *
 * HOW IT WORKS
 *
 * The driver runs ONE cell: one implementation, one workload, one thread
 * count, for a fixed time, and prints one CSV line (see driver.c). Each
 * implementation is a struct bench_impl: a table of functions the driver
 * calls around a timed run. The timed loop itself lives in the
 * implementation (impl_*.c), written with the BENCH_LOOP macro below, so
 * that the per-operation cost is the implementation's call and nothing
 * else: no indirect call per operation, no per-key bookkeeping. The
 * per-key counts the exactness check needs are recomputed after the run
 * by replaying each thread's deterministic key sequence (keys.c).
 *
 * The same protocol is implemented in Go (go/main.go) and Java
 * (java/TallyBench.java); bench/README.md is the reference for all three.
 */
#ifndef TALLY_BENCH_H
#define TALLY_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Threads look at the stop flag once per batch of this many operations. */
#define BENCH_BATCH 256

enum bench_workload {
    W_COUNTER,   /* one hot counter, add 1 */
    W_HOT,       /* map, one key "somekey", increment by name */
    W_UNIFORM,   /* map, K keys (1024), uniform random per op */
    W_ZIPF,      /* map, K keys (2^20), Zipf(0.99), scrambled ranks */
    W_INSERT,    /* map, every op adds a new key "t<thread>:<n>" */
    W_MIXED,     /* map, K keys (1024), 90% add / 10% get */
    W_ITERATE,   /* uniform adds plus one thread iterating all keys */
    W_MEMORY,    /* one thread inserts K keys; bytes per key from RSS */
    W_COUNT
};

#define WBIT(w) (1u << (w))
#define W_ALL_MAP                                                        \
    (WBIT(W_HOT) | WBIT(W_UNIFORM) | WBIT(W_ZIPF) | WBIT(W_INSERT) |     \
     WBIT(W_MIXED) | WBIT(W_ITERATE) | WBIT(W_MEMORY))

/* A key as every map workload sees it: bytes, length, no NUL needed (but
 * every key the driver makes is NUL-terminated, for the by-C-string
 * calls). */
struct bench_key {
    const char *s;
    size_t len;
};

struct bench_cfg {
    enum bench_workload workload;
    unsigned threads;
    double seconds;
    unsigned rep;
    size_t nkeys; /* K: power of two for uniform/zipf/mixed/iterate */
};

struct bench_impl;

/* Everything the threads of one run share. Written by the main thread
 * before the start barrier, read-only during the run (except stop). */
struct bench_run {
    const struct bench_cfg *cfg;
    const struct bench_impl *impl;
    void *state; /* the implementation's structure */

    const struct bench_key *keys; /* cfg->nkeys keys, or NULL */
    size_t key_mask;              /* nkeys - 1 */
    const char *hot_key;          /* "somekey" */
    size_t hot_len;

    const uint32_t *zipf; /* zipf_len key indices, scrambled ranks */
    size_t zipf_mask;     /* zipf_len - 1 */

    /* Set by the main thread after cfg->seconds; workers read it relaxed
     * once per batch. Only ends the loops, publishes nothing: the results
     * are read after pthread_join, which orders everything. */
    atomic_int stop;
};

/* One worker thread's slot. The thread writes its counters once, at the
 * end of its run; padded so that neighbours never share a line. */
struct bench_thread {
    _Alignas(64) struct bench_run *run;
    unsigned index;    /* 0 .. threads-1 */
    uint64_t ops;      /* operations done (all kinds) */
    uint64_t failures; /* calls that returned an error */
    char keybuf[64];   /* insert: where "t<i>:<n>" is written */
    char pad_[64];
};

struct bench_impl {
    const char *name;
    unsigned workloads; /* WBIT() set of supported workloads */
    /* NULL, or a one-line reason why this build cannot run it. */
    const char *(*skip_reason)(void);

    /* Creates the empty structure in run->state. 0 or a negative errno. */
    int (*setup)(struct bench_run *run);
    /* Adds delta to key, creating it (delta 0 creates it at 0). Used to
     * preload keys, by the memory workload and by nothing timed. */
    int (*add)(struct bench_run *run, const struct bench_key *key,
               int64_t delta);
    /* Optional: called once after the keys are preloaded, before timing
     * (e.g. to resolve handles). */
    int (*prepare)(struct bench_run *run);
    /* Optional: called by each thread (workers, iterator, and the main
     * thread before setup) before it touches the structure. */
    void (*thread_enter)(struct bench_run *run);
    void (*thread_exit)(struct bench_run *run);
    /* The timed loop of one worker, until run->stop; sets th->ops. */
    void (*work)(struct bench_thread *th);
    /* iterate: one full pass over all keys; returns the sum seen. */
    int64_t (*iterate)(struct bench_run *run);
    /* Map reads for the check: *present = 0 when absent. */
    int64_t (*value)(struct bench_run *run, const struct bench_key *key,
                     int *present);
    uint64_t (*size)(struct bench_run *run);
    /* Counters: the final value. */
    int64_t (*counter_value)(struct bench_run *run);
    void (*teardown)(struct bench_run *run);
};

/* The implementation tables, in the order the driver lists them. */
extern const struct bench_impl bench_tally_counter, bench_tally_adder,
    bench_c_atomic, bench_c_mutex, bench_percpu_cell,
    bench_thread_cell_store, bench_tally_map, bench_tally_map_handle,
    bench_seed_mutex_map, bench_urcu_lfht, bench_ref_plain_table,
    bench_ref_xadd_table, bench_ref_inline_table;

/* ---- keys.c: the workloads' deterministic key streams ---------------- */

/* xorshift64* (Vigna): the per-thread generator of every language. Seed
 * thread_index + 1. */
static inline uint64_t bench_rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

/* The key index of a uniform draw, and whether a mixed op is a get. */
#define BENCH_UNIFORM_INDEX(x, mask) ((size_t)((x) >> 33) & (mask))
#define BENCH_MIXED_IS_GET(x) ((((x) >> 11) % 10) == 0)

/* Where thread i starts reading the shared Zipf sequence. */
static inline size_t bench_zipf_start(unsigned i, size_t mask)
{
    return (size_t)(((uint64_t)i * UINT64_C(2654435761)) & mask);
}

/* "k<i>" for i in [0, n): one allocation, freed with free(keys[0].s)
 * and free(keys). NULL on ENOMEM. */
struct bench_key *bench_keys_make(size_t n);
void bench_keys_free(struct bench_key *keys);
/* Writes "t<thread>:<n>" into buf (>= 32 bytes), returns its length. */
size_t bench_insert_key(char *buf, unsigned thread, uint64_t n);
/* Writes "key:%08zu" (12 bytes) into buf, the memory workload's keys. */
size_t bench_memory_key(char *buf, size_t i);

/* The Zipf(s = 0.99) index sequence over nkeys (a power of two) keys:
 * 4 * nkeys entries, each a rank scrambled into a key index by
 * rank * 0x9E3779B1 mod nkeys. Deterministic (seed 42). NULL on ENOMEM;
 * *len gets the length (a power of two). */
uint32_t *bench_zipf_make(size_t nkeys, size_t *len);

/* Adds to expected[] (nkeys entries) the adds that thread i made in ops
 * operations of the workload. */
void bench_replay(const struct bench_run *run, unsigned i, uint64_t ops,
                  uint64_t *expected);

/* ---- driver.c --------------------------------------------------------- */

/* The C driver's entry point; bench/main.c and the tally tool call it. */
int tally_bench_main(int argc, char **argv);

/*
 * The timed loop every implementation writes its work() with. PICK runs
 * before each op (choose a key), OP is the operation. The loop body is
 * fully visible to the compiler, which cannot drop or merge the atomic
 * operations or the library calls inside OP.
 */
#define BENCH_LOOP(th, PICK, OP)                                         \
    do {                                                                 \
        uint64_t n_ = 0;                                                 \
        while (!atomic_load_explicit(&(th)->run->stop,                   \
                                     memory_order_relaxed)) {            \
            for (unsigned i_ = 0; i_ < BENCH_BATCH; i_++) {              \
                PICK;                                                    \
                OP;                                                      \
            }                                                            \
            n_ += BENCH_BATCH;                                           \
        }                                                                \
        (th)->ops = n_;                                                  \
    } while (0)

/* Key pickers for BENCH_LOOP, declaring `k` (a const struct bench_key *)
 * and `idx` (its index), and for mixed `is_get`. rng_ / pos_ are the thread's stream state. */
#define BENCH_PICK_SETUP(th)                                             \
    const struct bench_run *r_ = (th)->run;                              \
    const struct bench_key *keys_ = r_->keys;                            \
    const size_t kmask_ = r_->key_mask;                                  \
    const uint32_t *zipf_ = r_->zipf;                                    \
    const size_t zmask_ = r_->zipf_mask;                                 \
    uint64_t rng_ = (uint64_t)(th)->index + 1;                           \
    size_t pos_ = zipf_ ? bench_zipf_start((th)->index, zmask_) : 0;     \
    (void)keys_; (void)kmask_; (void)zipf_; (void)zmask_; (void)rng_;    \
    (void)pos_

#define BENCH_PICK_UNIFORM                                               \
    const uint64_t x_ = bench_rng_next(&rng_);                           \
    const size_t idx = BENCH_UNIFORM_INDEX(x_, kmask_);                  \
    const struct bench_key *k = &keys_[idx];                             \
    (void)k

#define BENCH_PICK_MIXED                                                 \
    BENCH_PICK_UNIFORM;                                                  \
    const int is_get = BENCH_MIXED_IS_GET(x_)

#define BENCH_PICK_ZIPF                                                  \
    const size_t idx = zipf_[pos_];                                      \
    const struct bench_key *k = &keys_[idx];                             \
    (void)k;                                                             \
    pos_ = (pos_ + 1) & zmask_

#endif /* TALLY_BENCH_H */
