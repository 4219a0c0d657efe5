/*
 * atomic.h - tally's one internal layer over <stdatomic.h>.
 *
 * Every access to shared state goes through these macros, and the memory
 * order is always spelled out at the call site: tally_atomic_load(p, acquire).
 * Any order other than relaxed carries a comment where it is used, naming
 * the operation it pairs with and what it publishes.
 */
#ifndef TALLY_ATOMIC_H
#define TALLY_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

#define tally_atomic_load(p, mo) \
    atomic_load_explicit((p), memory_order_##mo)
#define tally_atomic_store(p, v, mo) \
    atomic_store_explicit((p), (v), memory_order_##mo)
#define tally_atomic_fetch_add(p, v, mo) \
    atomic_fetch_add_explicit((p), (v), memory_order_##mo)
#define tally_atomic_fetch_sub(p, v, mo) \
    atomic_fetch_sub_explicit((p), (v), memory_order_##mo)
#define tally_atomic_fetch_or(p, v, mo) \
    atomic_fetch_or_explicit((p), (v), memory_order_##mo)
#define tally_atomic_exchange(p, v, mo) \
    atomic_exchange_explicit((p), (v), memory_order_##mo)
#define tally_atomic_cas(p, expected, desired, mo_ok, mo_fail) \
    atomic_compare_exchange_strong_explicit((p), (expected), (desired), \
        memory_order_##mo_ok, memory_order_##mo_fail)
#if defined(TALLY_TSAN)
/* ThreadSanitizer does not model fences. In its builds a fence becomes a
 * seq_cst read-modify-write of one global atomic: on x86 the same full
 * barrier, and to TSan a chain of release/acquire pairs it understands
 * (stronger than the fence, so it can hide a race but never invent one). */
extern _Atomic(int) tally__tsan_fence;
#define tally_atomic_fence(mo) \
    ((void)atomic_fetch_add_explicit(&tally__tsan_fence, 0, \
                                     memory_order_seq_cst))
#else
#define tally_atomic_fence(mo) atomic_thread_fence(memory_order_##mo)
#endif

/* Stops the compiler, not the CPU, from moving memory accesses across it. */
#define tally_compiler_barrier() atomic_signal_fence(memory_order_seq_cst)

/* Polite spinning: tells the CPU we are in a wait loop. */
#if defined(__x86_64__) || defined(__i386__)
#define tally_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define tally_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define tally_cpu_relax() tally_compiler_barrier()
#endif

#define TALLY_CACHE_LINE 64

#if defined(__GNUC__)
#define tally_likely(x) __builtin_expect(!!(x), 1)
#define tally_unlikely(x) __builtin_expect(!!(x), 0)
#else
#define tally_likely(x) (x)
#define tally_unlikely(x) (x)
#endif

/* Two's-complement wrapping add: no signed overflow, ever. */
static inline int64_t tally_wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

#endif /* TALLY_ATOMIC_H */
