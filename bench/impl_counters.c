/*
 * impl_counters.c - the single-counter implementations (workload
 * "counter"): tally's two counters, the C alternatives a user would write
 * instead, and two per-thread-cell references that bound what any counter
 * can do on the machine.
 *
 *   tally_counter      tally_counter_inc (one shared atomic)
 *   tally_adder        tally_adder_inc (per-thread cells, summed on read)
 *   c_atomic           one _Atomic int64_t, atomic_fetch_add relaxed
 *   c_mutex            a pthread mutex around an int64_t
 *   percpu_cell        reference: each thread its own padded cell,
 *                      atomic_fetch_add relaxed (a locked instruction)
 *   thread_cell_store  reference, the hardware limit: each thread its own
 *                      padded cell, relaxed load + relaxed store (no lock)
 *
 * The references are not counters a user can pick (their cells cannot
 * outlive the threads, or be shared by an unknown number of threads), so
 * the reports never count them as peers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "bench.h"
#include "tally.h"

/* One 64-byte line per counter or cell, so that no two threads' data and
 * no other allocation share it. */
struct line {
    _Alignas(64) _Atomic(int64_t) v;
    char pad_[64 - sizeof(_Atomic(int64_t))];
};
_Static_assert(sizeof(struct line) == 64, "a cell is one cache line");

static void *alloc_lines(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n * sizeof(struct line)) != 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        atomic_init(&((struct line *)p)[i].v, 0);
    return p;
}

static void free_state(struct bench_run *run)
{
    free(run->state);
    run->state = NULL;
}

/* ---- tally_counter ---------------------------------------------------- */

struct tc_state {
    _Alignas(64) tally_counter c;
    char pad_[64 - sizeof(tally_counter)];
};

static int tc_setup(struct bench_run *run)
{
    struct tc_state *s = NULL;
    if (posix_memalign((void **)&s, 64, sizeof(*s)) != 0)
        return -ENOMEM;
    tally_counter_store(&s->c, 0);
    run->state = s;
    return 0;
}

static void tc_work(struct bench_thread *th)
{
    tally_counter *c = &((struct tc_state *)th->run->state)->c;
    BENCH_LOOP(th, (void)0, tally_counter_inc(c));
}

static int64_t tc_value(struct bench_run *run)
{
    return tally_counter_load(&((struct tc_state *)run->state)->c);
}

const struct bench_impl bench_tally_counter = {
    .name = "tally_counter",
    .workloads = WBIT(W_COUNTER),
    .setup = tc_setup,
    .work = tc_work,
    .counter_value = tc_value,
    .teardown = free_state,
};

/* ---- tally_adder ------------------------------------------------------ */

static int ta_setup(struct bench_run *run)
{
    tally_adder *a;
    int rc = tally_adder_new(&a);
    if (rc == 0)
        run->state = a;
    return rc;
}

static void ta_work(struct bench_thread *th)
{
    tally_adder *a = th->run->state;
    BENCH_LOOP(th, (void)0, tally_adder_inc(a));
}

static int64_t ta_value(struct bench_run *run)
{
    return tally_adder_sum(run->state);
}

static void ta_teardown(struct bench_run *run)
{
    tally_adder_free(run->state);
    run->state = NULL;
}

const struct bench_impl bench_tally_adder = {
    .name = "tally_adder",
    .workloads = WBIT(W_COUNTER),
    .setup = ta_setup,
    .work = ta_work,
    .counter_value = ta_value,
    .teardown = ta_teardown,
};

/* ---- c_atomic --------------------------------------------------------- */

static int one_line_setup(struct bench_run *run)
{
    run->state = alloc_lines(1);
    return run->state ? 0 : -ENOMEM;
}

static void ca_work(struct bench_thread *th)
{
    _Atomic(int64_t) *v = &((struct line *)th->run->state)->v;
    BENCH_LOOP(th, (void)0,
               atomic_fetch_add_explicit(v, 1, memory_order_relaxed));
}

static int64_t line0_value(struct bench_run *run)
{
    return atomic_load_explicit(&((struct line *)run->state)->v,
                                memory_order_relaxed);
}

const struct bench_impl bench_c_atomic = {
    .name = "c_atomic",
    .workloads = WBIT(W_COUNTER),
    .setup = one_line_setup,
    .work = ca_work,
    .counter_value = line0_value,
    .teardown = free_state,
};

/* ---- c_mutex ---------------------------------------------------------- */

struct cm_state {
    _Alignas(64) pthread_mutex_t mu;
    int64_t v; /* guarded by mu */
};

static int cm_setup(struct bench_run *run)
{
    struct cm_state *s = NULL;
    if (posix_memalign((void **)&s, 64, sizeof(*s)) != 0)
        return -ENOMEM;
    int rc = pthread_mutex_init(&s->mu, NULL);
    if (rc != 0) {
        free(s);
        return -rc;
    }
    s->v = 0;
    run->state = s;
    return 0;
}

static void cm_work(struct bench_thread *th)
{
    struct cm_state *s = th->run->state;
    BENCH_LOOP(th, (void)0, {
        pthread_mutex_lock(&s->mu);
        s->v++;
        pthread_mutex_unlock(&s->mu);
    });
}

static int64_t cm_value(struct bench_run *run)
{
    struct cm_state *s = run->state;
    pthread_mutex_lock(&s->mu);
    int64_t v = s->v;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static void cm_teardown(struct bench_run *run)
{
    struct cm_state *s = run->state;
    pthread_mutex_destroy(&s->mu);
    free_state(run);
}

const struct bench_impl bench_c_mutex = {
    .name = "c_mutex",
    .workloads = WBIT(W_COUNTER),
    .setup = cm_setup,
    .work = cm_work,
    .counter_value = cm_value,
    .teardown = cm_teardown,
};

/* ---- percpu_cell and thread_cell_store (references) -------------------- */

static int cells_setup(struct bench_run *run)
{
    run->state = alloc_lines(run->cfg->threads);
    return run->state ? 0 : -ENOMEM;
}

static int64_t cells_value(struct bench_run *run)
{
    const struct line *cells = run->state;
    int64_t sum = 0;
    for (unsigned i = 0; i < run->cfg->threads; i++)
        sum += atomic_load_explicit(&cells[i].v, memory_order_relaxed);
    return sum;
}

static void pc_work(struct bench_thread *th)
{
    _Atomic(int64_t) *v = &((struct line *)th->run->state)[th->index].v;
    BENCH_LOOP(th, (void)0,
               atomic_fetch_add_explicit(v, 1, memory_order_relaxed));
}

const struct bench_impl bench_percpu_cell = {
    .name = "percpu_cell",
    .workloads = WBIT(W_COUNTER),
    .setup = cells_setup,
    .work = pc_work,
    .counter_value = cells_value,
    .teardown = free_state,
};

static void tcs_work(struct bench_thread *th)
{
    /* Only this thread writes the cell, so a load and a store are enough;
     * relaxed atomics keep every add a real memory access (the compiler
     * may not merge them) and keep the final read race-free. */
    _Atomic(int64_t) *v = &((struct line *)th->run->state)[th->index].v;
    BENCH_LOOP(th, (void)0,
               atomic_store_explicit(
                   v, atomic_load_explicit(v, memory_order_relaxed) + 1,
                   memory_order_relaxed));
}

const struct bench_impl bench_thread_cell_store = {
    .name = "thread_cell_store",
    .workloads = WBIT(W_COUNTER),
    .setup = cells_setup,
    .work = tcs_work,
    .counter_value = cells_value,
    .teardown = free_state,
};
