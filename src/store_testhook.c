/*
 * store_testhook.c - the crash points of testhook.h. Compiled into the
 * tests' build of the library only (TALLY_TEST_HOOKS); empty otherwise.
 */
#include "testhook.h"

#if defined(TALLY_TEST_HOOKS)

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"

#define NAME_MAX_LEN 63

_Atomic(int) tally__crash_armed;
/* Written only while no point is armed (tally__crash_arm disarms first),
 * read only while one is: the relaxed flag is set after them by the same
 * thread that then runs the operations, or before fork. */
static char armed_name[NAME_MAX_LEN + 1];
static unsigned long armed_nth;
static _Atomic(unsigned long) passes;

void tally__crash_arm(const char *point, unsigned long nth)
{
    tally_atomic_store(&tally__crash_armed, 0, relaxed);
    tally_atomic_store(&passes, 0, relaxed);
    if (point == NULL || nth == 0)
        return;
    strncpy(armed_name, point, NAME_MAX_LEN);
    armed_name[NAME_MAX_LEN] = '\0';
    armed_nth = nth;
    tally_atomic_store(&tally__crash_armed, 1, relaxed);
}

unsigned long tally__crash_hits(void)
{
    return tally_atomic_load(&passes, relaxed);
}

void tally__crash_pass(const char *point)
{
    if (strcmp(point, armed_name) != 0)
        return;
    unsigned long n = tally_atomic_fetch_add(&passes, 1, relaxed) + 1;
    if (n >= armed_nth) {
        /* What kill -9 does, from inside: no handler runs, nothing is
         * flushed or unmapped first. */
        raise(SIGKILL);
        _exit(137); /* not reached */
    }
}

/* TALLY_CRASH_POINT=name or name:n in the environment arms a point at
 * load time, for test programs that run others. */
__attribute__((constructor)) static void arm_from_env(void)
{
    const char *v = getenv("TALLY_CRASH_POINT");
    if (v == NULL || *v == '\0')
        return;
    char name[NAME_MAX_LEN + 1];
    strncpy(name, v, NAME_MAX_LEN);
    name[NAME_MAX_LEN] = '\0';
    unsigned long nth = 1;
    char *colon = strchr(name, ':');
    if (colon != NULL) {
        *colon = '\0';
        nth = strtoul(colon + 1, NULL, 10);
    }
    tally__crash_arm(name, nth);
}

#else

/* ISO C wants something in a translation unit. */
typedef int tally__store_testhook_empty;

#endif
