/*
 * check.h - tally's test assertions and the helpers tests share.
 *
 * CHECK(cond), CHECK_EQ/NE/LT/LE/GT/GE(a, b) for integers, CHECK_STREQ(a, b)
 * and CHECK_MEMEQ(a, b, n). Each operand is evaluated once. On failure the
 * check prints file:line, the expression and both values to stderr and
 * calls abort(): tests may abort, the library may not.
 *
 * Integer checks compare mathematically: signed and unsigned operands of
 * any width are widened to intmax_t or uintmax_t (chosen with _Generic in
 * C, by overloading in C++), so CHECK_LT(-1, 1u) holds, unlike in C.
 *
 * Helpers: check_threads_run() starts and joins N threads,
 * check_now_ns() reads a monotonic clock, check_scale() is the stress
 * scale factor from TALLY_STRESS_SCALE (default 1; 'make stress' raises it).
 *
 * Needs POSIX (clock_gettime, pthreads): tally_add_test() compiles tests
 * with _GNU_SOURCE.
 */
#ifndef TALLY_TESTS_CHECK_H
#define TALLY_TESTS_CHECK_H

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__cplusplus)
#define CHECK__NORETURN [[noreturn]]
#else
#define CHECK__NORETURN _Noreturn
#endif

/* An integer operand, widened without losing its sign or its value. */
typedef struct check__int {
    int is_signed;
    intmax_t s;
    uintmax_t u;
} check__int;

static inline check__int check__from_s(intmax_t v)
{
    check__int r = {1, v, (uintmax_t)v};
    return r;
}

static inline check__int check__from_u(uintmax_t v)
{
    check__int r = {0, (intmax_t)v, v};
    return r;
}

#if defined(__cplusplus)
static inline check__int check__wrap(long long v) { return check__from_s(v); }
static inline check__int check__wrap(long v) { return check__from_s(v); }
static inline check__int check__wrap(int v) { return check__from_s(v); }
static inline check__int check__wrap(unsigned long long v)
{
    return check__from_u(v);
}
static inline check__int check__wrap(unsigned long v) { return check__from_u(v); }
static inline check__int check__wrap(unsigned v) { return check__from_u(v); }
#define CHECK__INT(x) check__wrap(x)
#else
/* (x) + 0 applies the integer promotions: char, short and bool become int. */
#define CHECK__INT(x)                                                       \
    _Generic((x) + 0,                                                       \
        unsigned int: check__from_u,                                        \
        unsigned long: check__from_u,                                       \
        unsigned long long: check__from_u,                                  \
        default: check__from_s)(x)
#endif

/* -1, 0 or 1 as a < b, a == b, a > b, comparing the values themselves. */
static inline int check__cmp(check__int a, check__int b)
{
    if (a.is_signed && b.is_signed)
        return (a.s > b.s) - (a.s < b.s);
    if (!a.is_signed && !b.is_signed)
        return (a.u > b.u) - (a.u < b.u);
    if (a.is_signed && a.s < 0)
        return -1;
    if (b.is_signed && b.s < 0)
        return 1;
    return (a.u > b.u) - (a.u < b.u);
}

static inline void check__print_int(const char *expr, check__int v)
{
    if (v.is_signed)
        fprintf(stderr, "  %s == %lld\n", expr, (long long)v.s);
    else
        fprintf(stderr, "  %s == %llu\n", expr, (unsigned long long)v.u);
}

CHECK__NORETURN static inline void check__fail(const char *file, int line,
                                               const char *what)
{
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

CHECK__NORETURN static inline void
check__fail_cmp(const char *file, int line, const char *ea, const char *op,
                const char *eb, check__int a, check__int b)
{
    fprintf(stderr, "%s:%d: check failed: %s %s %s\n", file, line, ea, op,
            eb);
    check__print_int(ea, a);
    check__print_int(eb, b);
    fflush(stderr);
    abort();
}

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond))                                                        \
            check__fail(__FILE__, __LINE__, #cond);                         \
    } while (0)

#define CHECK__CMP(a, op, b)                                                \
    do {                                                                    \
        check__int check__a = CHECK__INT(a);                                \
        check__int check__b = CHECK__INT(b);                                \
        if (!(check__cmp(check__a, check__b) op 0))                         \
            check__fail_cmp(__FILE__, __LINE__, #a, #op, #b, check__a,      \
                            check__b);                                      \
    } while (0)

#define CHECK_EQ(a, b) CHECK__CMP(a, ==, b)
#define CHECK_NE(a, b) CHECK__CMP(a, !=, b)
#define CHECK_LT(a, b) CHECK__CMP(a, <, b)
#define CHECK_LE(a, b) CHECK__CMP(a, <=, b)
#define CHECK_GT(a, b) CHECK__CMP(a, >, b)
#define CHECK_GE(a, b) CHECK__CMP(a, >=, b)

static inline void check__streq(const char *file, int line, const char *ea,
                                const char *eb, const char *a, const char *b)
{
    if (a != NULL && b != NULL && strcmp(a, b) == 0)
        return;
    fprintf(stderr, "%s:%d: check failed: %s equals %s\n", file, line, ea,
            eb);
    fprintf(stderr, a ? "  %s == \"%s\"\n" : "  %s == %s\n", ea,
            a ? a : "NULL");
    fprintf(stderr, b ? "  %s == \"%s\"\n" : "  %s == %s\n", eb,
            b ? b : "NULL");
    fflush(stderr);
    abort();
}

#define CHECK_STREQ(a, b) check__streq(__FILE__, __LINE__, #a, #b, (a), (b))

static inline void check__memeq(const char *file, int line, const char *ea,
                                const char *eb, const void *a, const void *b,
                                size_t n)
{
    const unsigned char *pa = (const unsigned char *)a;
    const unsigned char *pb = (const unsigned char *)b;
    size_t i, first;

    if (n == 0 || memcmp(a, b, n) == 0)
        return;
    for (first = 0; pa[first] == pb[first]; first++)
        ;
    fprintf(stderr, "%s:%d: check failed: %s and %s: %zu bytes equal\n",
            file, line, ea, eb, n);
    fprintf(stderr, "  first difference at byte %zu:\n  %s:", first, ea);
    for (i = first; i < n && i < first + 16; i++)
        fprintf(stderr, " %02x", pa[i]);
    fprintf(stderr, "\n  %s:", eb);
    for (i = first; i < n && i < first + 16; i++)
        fprintf(stderr, " %02x", pb[i]);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}

#define CHECK_MEMEQ(a, b, n)                                                \
    check__memeq(__FILE__, __LINE__, #a, #b, (a), (b), (n))

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/*
 * Starts n threads running fn and joins them all. Thread i gets
 * (char *)args + i * arg_size, or args itself when arg_size is 0 (one
 * context shared by all). Stacks are 1 MiB, enough under the sanitizers
 * and small enough for 1000 threads at once.
 */
static inline void check_threads_run(size_t n, void *(*fn)(void *),
                                     void *args, size_t arg_size)
{
    pthread_t *tids = (pthread_t *)calloc(n ? n : 1, sizeof *tids);
    pthread_attr_t attr;
    size_t i;
    int err;

    CHECK(tids != NULL);
    CHECK_EQ(pthread_attr_init(&attr), 0);
    CHECK_EQ(pthread_attr_setstacksize(&attr, (size_t)1 << 20), 0);
    for (i = 0; i < n; i++) {
        void *arg = arg_size ? (void *)((char *)args + i * arg_size) : args;
        err = pthread_create(&tids[i], &attr, fn, arg);
        if (err != 0) {
            fprintf(stderr, "pthread_create (thread %zu of %zu): %s\n", i, n,
                    strerror(err));
            CHECK_EQ(err, 0);
        }
    }
    for (i = 0; i < n; i++)
        CHECK_EQ(pthread_join(tids[i], NULL), 0);
    pthread_attr_destroy(&attr);
    free(tids);
}

/* Nanoseconds on a monotonic clock. */
static inline uint64_t check_now_ns(void)
{
    struct timespec ts;

    CHECK_EQ(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The stress scale factor: TALLY_STRESS_SCALE (an integer, 1..1000000),
 * 1 when unset or empty. A malformed value fails loudly rather than
 * silently running the default.
 */
static inline unsigned check_scale(void)
{
    const char *s = getenv("TALLY_STRESS_SCALE");
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return 1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > 1000000) {
        fprintf(stderr, "TALLY_STRESS_SCALE='%s': want an integer 1..1000000\n",
                s);
        check__fail(__FILE__, __LINE__, "valid TALLY_STRESS_SCALE");
    }
    return (unsigned)v;
}

#endif /* TALLY_TESTS_CHECK_H */
