/*
 * bench.c - 'tally bench': one cell of the benchmark suite, the same C
 * driver as bench/tally-bench (bench/driver.c), so that an installed tally
 * can measure the machine it runs on. The whole matrix with the Go and
 * Java peers is 'make bench' (bench/run.sh).
 */
#include <stdio.h>

#include "tool.h"

#if defined(TALLY_TOOL_BENCH)
#include "bench.h"

int cmd_bench(int argc, char **argv)
{
    /* argv[0] is "bench": the driver takes it as its program name. */
    return tally_bench_main(argc, argv);
}
#else
int cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tally bench: this tally was built without the "
                    "benchmarks (TALLY_BUILD_BENCH=OFF)\n");
    return TOOL_FAIL;
}
#endif
