/*
 * alloc.h - every allocation tally makes goes through here, so that tests
 * can make the Nth one fail and check that each failure is handled.
 */
#ifndef TALLY_ALLOC_H
#define TALLY_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *tally__malloc(size_t size);
void *tally__calloc(size_t n, size_t size);
void *tally__aligned_alloc(size_t align, size_t size); /* zero-filled */
void tally__free(void *p);

/*
 * Test hook (not in the public header; tests link the static library).
 * After tally__alloc_fail_after(n), the next n allocations succeed and
 * every later one fails, until tally__alloc_fail_after(-1) turns failures
 * off. tally__alloc_count() counts allocation attempts since the start.
 * The hook is process-wide; tests that use it run one thread at a time.
 */
void tally__alloc_fail_after(int64_t n);
uint64_t tally__alloc_count(void);

#endif /* TALLY_ALLOC_H */
