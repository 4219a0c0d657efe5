/*
 * testhook.h - crash points: places where a test can make the process die
 * (SIGKILL, as kill -9 would), to check what the store looks like to the
 * processes that survive.
 *
 * TALLY_CRASH_POINT("insert.after_publish") marks one step of a
 * multi-step operation on a shared file. In the installed libraries it
 * compiles to nothing. In the tests' build (TALLY_TEST_HOOKS) it checks
 * one relaxed flag and, when a point is armed, compares names: when the
 * armed point has been reached the armed number of times, the process
 * raises SIGKILL on itself. Nothing is cleaned up, nothing is flushed:
 * exactly what a kill -9 at that instant leaves.
 *
 * Arming: tally__crash_arm(name, n) from the test (n >= 1: die at the n-th
 * pass; NULL disarms), or the environment variable TALLY_CRASH_POINT=name
 * or name:n, read once when the library is loaded (for test programs that
 * exec others). tally__crash_hits(name) counts passes of a point while it
 * is armed, so a test can tell that a point was reached.
 *
 * The points used by the store are listed in docs/store-format.md
 * ("What a crash leaves") and exercised by tests/crash_store.c.
 */
#ifndef TALLY_TESTHOOK_H
#define TALLY_TESTHOOK_H

#if defined(TALLY_TEST_HOOKS)

#include <stdatomic.h>

/* Non-zero while a point is armed. Relaxed: set by the test before the
 * operations it wants to crash, on the thread that runs them (or before
 * it starts the threads that do). */
extern _Atomic(int) tally__crash_armed;

void tally__crash_pass(const char *point);
void tally__crash_arm(const char *point, unsigned long nth);
unsigned long tally__crash_hits(void);

#define TALLY_CRASH_POINT(point)                                            \
    do {                                                                    \
        if (atomic_load_explicit(&tally__crash_armed,                       \
                                 memory_order_relaxed))                     \
            tally__crash_pass(point);                                       \
    } while (0)

#else

#define TALLY_CRASH_POINT(point) ((void)0)

#endif

#endif /* TALLY_TESTHOOK_H */
