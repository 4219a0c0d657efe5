/*
 * counter.c - tally_counter: one lock-free 64-bit counter.
 *
 * Every operation is one atomic read-modify-write (or load, or store) on
 * c->value with memory_order_relaxed. Relaxed is enough because a counter
 * publishes nothing: each RMW still reads the latest value in the
 * counter's single modification order, so no add is lost and cas/swap see
 * a consistent value, but no other memory is ordered by it (the header
 * says so). C11 defines atomic arithmetic on signed types to wrap in two's
 * complement, and the value an add returns is computed in uint64_t, so
 * overflow is never undefined.
 */
#include "tally.h"

#include "atomic.h"

int64_t tally_counter_add(tally_counter *c, int64_t delta)
{
    return tally_wrap_add(tally_atomic_fetch_add(&c->value, delta, relaxed),
                          delta);
}

int64_t tally_counter_inc(tally_counter *c)
{
    return tally_counter_add(c, 1);
}

int64_t tally_counter_dec(tally_counter *c)
{
    return tally_counter_add(c, -1);
}

int64_t tally_counter_load(const tally_counter *c)
{
    /* C11 takes a non-const pointer for atomic loads in some libcs. */
    return tally_atomic_load((_Atomic(int64_t) *)&c->value, relaxed);
}

void tally_counter_store(tally_counter *c, int64_t v)
{
    tally_atomic_store(&c->value, v, relaxed);
}

int64_t tally_counter_swap(tally_counter *c, int64_t v)
{
    return tally_atomic_exchange(&c->value, v, relaxed);
}

bool tally_counter_cas(tally_counter *c, int64_t old_value, int64_t new_value)
{
    return tally_atomic_cas(&c->value, &old_value, new_value, relaxed,
                            relaxed);
}
