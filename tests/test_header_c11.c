/*
 * test_header_c11.c - tally.h alone compiles as strict ISO C11
 * (-std=c11 -pedantic-errors, no _GNU_SOURCE) and links, inline fast
 * paths included.
 */
#include "tally.h"

#include "header_inline.h"

#if !defined(__STDC_VERSION__) || __STDC_VERSION__ != 201112L
#error "this test must be compiled as C11"
#endif

static tally_counter hits = TALLY_COUNTER_INIT(1);

int main(void)
{
    tally_counter_add(&hits, 41);
    if (tally_counter_load(&hits) != 42)
        return 1;
    if (tally_strerror(-9999) == NULL)
        return 1;
    return header_inline_paths();
}
