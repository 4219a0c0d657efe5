/*
 * alloc.c - allocation wrappers with a failure-injection hook, compiled
 * only into the tests' build of the library (TALLY_TEST_HOOKS); the
 * installed libraries use alloc.h's inline calls to the C library.
 */
#include "alloc.h"

#if defined(TALLY_TEST_HOOKS)

#include <stdlib.h>
#include <string.h>

#include "atomic.h"

/* -1: never fail. n >= 0: n more allocations succeed, then all fail.
 * Relaxed: the hook is set by a test between operations, on the thread
 * that then allocates; it orders nothing. */
static _Atomic(int64_t) fail_after = -1;
static _Atomic(uint64_t) attempts;

static int should_fail(void)
{
    tally_atomic_fetch_add(&attempts, 1, relaxed);
    int64_t n = tally_atomic_load(&fail_after, relaxed);
    if (tally_likely(n < 0))
        return 0;
    if (n == 0)
        return 1;
    tally_atomic_store(&fail_after, n - 1, relaxed);
    return 0;
}

void tally__alloc_fail_after(int64_t n)
{
    tally_atomic_store(&fail_after, n < 0 ? -1 : n, relaxed);
}

uint64_t tally__alloc_count(void)
{
    return tally_atomic_load(&attempts, relaxed);
}

void *tally__malloc(size_t size)
{
    return should_fail() ? NULL : malloc(size);
}

void *tally__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *tally__aligned_alloc(size_t align, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
    memset(p, 0, size);
    return p;
}

void *tally__alloc_pages(size_t size)
{
    if (should_fail())
        return NULL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | TALLY_MAP_POPULATE, -1, 0);
    return p != MAP_FAILED ? p : NULL;
}

#else
/* ISO C wants at least one declaration in a translation unit. */
typedef int tally__alloc_c_is_test_only;
#endif
