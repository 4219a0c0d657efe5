/*
 * consumer.c - a program outside the tally tree, built against an
 * installed tally (pkg-config and find_package). Prints "tally 0.1.0 42".
 * Besides the counter it uses the header's inline fast paths (adder,
 * handle and map adds), which read libtally's thread-local tally__dir
 * across the library boundary; each total must come out exact.
 */
#include <stdio.h>
#include <tally.h>

static int inline_paths(void)
{
    tally_adder *a = NULL;
    tally_map *m = NULL;
    tally_handle *h = NULL;
    int ok = tally_adder_new(&a) == 0 && tally_map_new(&m) == 0 &&
             tally_map_handle(m, "by-handle", &h) == 0;
    for (int i = 0; ok && i < 1000; i++) {
        tally_adder_inc(a);
        tally_handle_add(h, 2);
        ok = tally_map_inc(m, "by-name") == 0;
    }
    ok = ok && tally_adder_sum(a) == 1000 &&
         tally_map_value(m, "by-handle") == 2000 &&
         tally_map_value(m, "by-name") == 1000;
    tally_handle_release(h);
    tally_map_free(m);
    tally_adder_free(a);
    return ok;
}

int main(void)
{
    tally_counter c = TALLY_COUNTER_INIT(40);

    tally_counter_inc(&c);
    tally_counter_add(&c, 1);
    if (!inline_paths()) {
        fprintf(stderr, "consumer: an inline-path total is wrong\n");
        return 1;
    }
    printf("tally %s %lld\n", TALLY_VERSION_STRING,
           (long long)tally_counter_load(&c));
    return tally_counter_load(&c) == 42 ? 0 : 1;
}
