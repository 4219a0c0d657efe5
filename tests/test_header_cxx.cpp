// test_header_cxx.cpp - tally.h compiles as C++23 (-std=c++2b with g++ 12,
// -pedantic-errors), where <stdatomic.h> maps _Atomic(T) to std::atomic<T>,
// and tally_counter and the inline fast paths work through it.
#include "tally.h"

#include <type_traits>

#include "check.h"
#include "header_inline.h"

static_assert(__cplusplus > 202002L, "this test must be compiled as C++23");
static_assert(std::is_standard_layout_v<tally_counter>);
static_assert(sizeof(tally_counter) == 8);

static tally_counter g_counter = TALLY_COUNTER_INIT(-3);

int main()
{
    tally_counter c = TALLY_COUNTER_INIT(40);

    CHECK_EQ(tally_counter_inc(&c), 41);
    CHECK_EQ(tally_counter_add(&c, 1), 42);
    CHECK_EQ(tally_counter_dec(&c), 41);
    CHECK_EQ(tally_counter_swap(&c, 7), 41);
    CHECK(tally_counter_cas(&c, 7, 8));
    CHECK(!tally_counter_cas(&c, 7, 9));
    CHECK_EQ(tally_counter_load(&c), 8);
    tally_counter_store(&c, INT64_MAX);
    CHECK_EQ(tally_counter_inc(&c), INT64_MIN);
    CHECK_EQ(tally_counter_load(&g_counter), -3);
    CHECK_STREQ(tally_strerror(12345), "unknown error");
    CHECK_EQ(header_inline_paths(), 0);
    return 0;
}
