/*
 * alloc.h - every allocation tally makes goes through here.
 *
 * In the installed libraries these are the C library's calls, inline. In
 * the tests' build of the library (TALLY_TEST_HOOKS, tests/CMakeLists.txt)
 * they go through src/alloc.c, where a test can make the Nth allocation
 * fail and check that each failure is handled.
 */
#ifndef TALLY_ALLOC_H
#define TALLY_ALLOC_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Tables are filled right after they are made, so their pages are
 * faulted in at once by the kernel rather than one trap per page. */
#if defined(MAP_POPULATE)
#define TALLY_MAP_POPULATE MAP_POPULATE
#else
#define TALLY_MAP_POPULATE 0
#endif

#if defined(TALLY_TEST_HOOKS)

void *tally__malloc(size_t size);
void *tally__calloc(size_t n, size_t size);
void *tally__aligned_alloc(size_t align, size_t size); /* zero-filled */
void *tally__alloc_pages(size_t size); /* zero-filled, page-aligned */

/*
 * After tally__alloc_fail_after(n), the next n allocations succeed and
 * every later one fails, until tally__alloc_fail_after(-1) turns failures
 * off. tally__alloc_count() counts allocation attempts since the start.
 * The hook is process-wide; tests that use it run one thread at a time.
 */
void tally__alloc_fail_after(int64_t n);
uint64_t tally__alloc_count(void);

#else

static inline void *tally__malloc(size_t size)
{
    return malloc(size);
}

static inline void *tally__calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

static inline void *tally__aligned_alloc(size_t align, size_t size)
{
    void *p = NULL;
    if (posix_memalign(&p, align, size) != 0)
        return NULL;
    memset(p, 0, size);
    return p;
}

/* Fresh zero pages from the kernel: a big table costs no zeroing pass in
 * user space. */
static inline void *tally__alloc_pages(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | TALLY_MAP_POPULATE, -1, 0);
    return p != MAP_FAILED ? p : NULL;
}

#endif

static inline void tally__free_pages(void *p, size_t size)
{
    if (p != NULL)
        (void)munmap(p, size);
}

static inline void tally__free(void *p)
{
    free(p);
}

#endif /* TALLY_ALLOC_H */
