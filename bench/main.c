/* main.c - bench/tally-bench: the C benchmark driver as a program. The
 * driver itself is tally_bench_main() in driver.c, so that the tally tool
 * can offer it as "tally bench". */
#include "bench.h"

int main(int argc, char **argv)
{
    return tally_bench_main(argc, argv);
}
