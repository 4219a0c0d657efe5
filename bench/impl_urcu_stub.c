/*
 * impl_urcu_stub.c - urcu_lfht's entry when liburcu is not built in: it
 * only says why, and how to get it (see impl_urcu.c for the real one).
 *
 * TALLY_BENCH_URCU_SKIP: 0 or undefined = liburcu was not found,
 * 1 = this is the driver library (the tally tool stays libc + pthreads),
 * 2 = a sanitizer build (liburcu is not instrumented: false reports).
 */
#include "bench.h"

#ifndef TALLY_BENCH_URCU_SKIP
#define TALLY_BENCH_URCU_SKIP 0
#endif

static const char *stub_skip_reason(void)
{
    switch (TALLY_BENCH_URCU_SKIP) {
    case 1:
        return "urcu_lfht is built into bench/tally-bench only";
    case 2:
        return "urcu_lfht is left out of sanitizer builds (liburcu is not "
               "instrumented)";
    default:
        return "liburcu not found (apt-get install liburcu-dev, then "
               "reconfigure)";
    }
}

const struct bench_impl bench_urcu_lfht = {
    .name = "urcu_lfht",
    .workloads = W_ALL_MAP,
    .skip_reason = stub_skip_reason,
};
