/* seed.c - secrets for the keyed hash (hash.h). */
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/random.h>
#endif

#include "atomic.h"

/* Reads len bytes of OS randomness into buf; 0 or -1. */
static int os_random(void *buf, size_t len)
{
    unsigned char *p = buf;
#if defined(__linux__)
    while (len > 0) {
        /* Without GRND_NONBLOCK: blocks only until the kernel's pool is
         * first initialised at boot, never afterwards. */
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break; /* ENOSYS (old kernel), EPERM (seccomp): try the file */
        }
        p += n;
        len -= (size_t)n;
    }
    if (len == 0)
        return 0;
#endif
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        len -= (size_t)n;
    }
    close(fd);
    return len == 0 ? 0 : -1;
}

/* splitmix64's finaliser: a bijection that spreads every input bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

#if defined(TALLY_TEST_HOOKS)
static struct tally__seed forced;
/* Relaxed: set by a test between operations, on the thread that then
 * creates maps, or before it starts the threads that do. */
static _Atomic(int) forcing;

void tally__seed_force(const struct tally__seed *s)
{
    if (s != NULL)
        forced = *s;
    tally_atomic_store(&forcing, s != NULL, relaxed);
}
#endif

void tally__seed_init(struct tally__seed *s)
{
#if defined(TALLY_TEST_HOOKS)
    if (tally_atomic_load(&forcing, relaxed)) {
        *s = forced;
        return;
    }
#endif
    if (os_random(s->k, sizeof(s->k)) == 0)
        return;
    /* No OS randomness: still different per call and per run. Not secret
     * against a local attacker, who could read our memory anyway. */
    static _Atomic(uint64_t) calls;
    struct timespec rt, mono;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    uint64_t x = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
    x ^= mix64((uint64_t)mono.tv_nsec + (uint64_t)getpid());
    x ^= mix64((uint64_t)(uintptr_t)s ^ (uint64_t)(uintptr_t)&calls);
    x += tally_atomic_fetch_add(&calls, 1, relaxed) * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ull;
        s->k[i] = mix64(x);
    }
}
