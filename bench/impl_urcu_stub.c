/*
 * impl_urcu_stub.c - urcu_lfht's entry when liburcu is not built in: it
 * only says why, and how to get it (see impl_urcu.c for the real one).
 */
#include "bench.h"

static const char *stub_skip_reason(void)
{
#if TALLY_BENCH_URCU_NOT_LINKED
    return "urcu_lfht is built into bench/tally-bench only";
#else
    return "liburcu not found (apt-get install liburcu-dev, then reconfigure)";
#endif
}

const struct bench_impl bench_urcu_lfht = {
    .name = "urcu_lfht",
    .workloads = W_ALL_MAP,
    .skip_reason = stub_skip_reason,
};
