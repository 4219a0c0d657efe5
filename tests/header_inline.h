/*
 * header_inline.h - the inline fast paths of tally.h (section 5), as
 * compiled by the including language (C11 or C++23, strict): adder,
 * handle and map adds, wrapping, and the library copies they stand in for.
 * Returns 0 when every total is exact, else the number of the failed step.
 */
#ifndef TALLY_TEST_HEADER_INLINE_H
#define TALLY_TEST_HEADER_INLINE_H

#include <errno.h>

#include "tally.h"

static int header_inline_paths(void)
{
    tally_adder *a = NULL;
    tally_map *m = NULL;
    tally_handle *h = NULL;
    if (tally_adder_new(&a) != 0 || tally_map_new(&m) != 0 ||
        tally_map_handle(m, "h", &h) != 0)
        return 1;
    tally_adder_inc(a);              /* first add: the library's slow path */
    tally_adder_add(a, INT64_MAX);   /* inline: wraps to INT64_MIN */
    (tally_adder_add)(a, 5);         /* the exported function */
    if (tally_adder_sum(a) != INT64_MIN + 5)
        return 2;
    for (int i = 0; i < 10; i++) {
        tally_handle_inc(h);
        (tally_handle_add)(h, 2);
        if (tally_map_inc(m, "k") != 0 || (tally_map_add)(m, "k", 3) != 0)
            return 3;
    }
    if (tally_map_value(m, "h") != 30 || tally_map_value(m, "k") != 40)
        return 4;
    if (tally_map_add(m, NULL, 1) != -EINVAL)
        return 5;
    tally_handle_release(h);
    tally_map_free(m);
    tally_adder_free(a);
    return 0;
}

#endif
