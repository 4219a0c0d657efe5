/*
 * consumer.c - a program outside the tally tree, built against an
 * installed tally (pkg-config and find_package). Prints "tally 0.1.0 42".
 */
#include <stdio.h>
#include <tally.h>

int main(void)
{
    tally_counter c = TALLY_COUNTER_INIT(40);

    tally_counter_inc(&c);
    tally_counter_add(&c, 1);
    printf("tally %s %lld\n", TALLY_VERSION_STRING,
           (long long)tally_counter_load(&c));
    return tally_counter_load(&c) == 42 ? 0 : 1;
}
