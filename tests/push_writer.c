/*
 * push_writer.c - a process that counts into a tally store until it is
 * told to stop, then reports exactly what it added, for the 'tally push'
 * tests (push_faults.py, push_basic.py).
 *
 *   push_writer FILE SEED KEYS [--drain N]
 *   push_writer FILE --fill N
 *
 * The second form adds i + 1 to key "f<i>" for i in 0..N-1 and exits.
 *
 * Adds to keys "k0".."k<KEYS-1>" and to the odd keys below (the empty
 * key, a NUL, a newline, bytes that are not UTF-8, blanks at both ends,
 * braces, a 4096-byte key, and "big", which gets adds near 2^62 so that
 * its value wraps around int64 and its sums need exact 64-bit arithmetic
 * in Redis). Deltas are mostly small and positive, some negative. Picks
 * come from an xorshift generator seeded with SEED. Every 64 adds it
 * sleeps 0.2 ms, so that a few writers leave the CPUs to the pushers and
 * Redis. With --drain N, every N adds it drains the store
 * (tally_store_drain) and subtracts what it took: a store's values then
 * go down, as a drained store's do.
 *
 * It starts with one line "ready" on stdout. On SIGTERM it stops and
 * prints one line per key it added to or drained, "<key in hex, '-' for empty>
 * <net>", where net is what it added minus what it drained, wrapped to
 * int64; then "adds <count>". Summed over every writer of every store,
 * the nets are exactly the fleet totals once every store is pushed.
 * Exit status 0, or 1 with a message.
 */
#include "tally.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *k;
    size_t len;
} odd[] = {
#define ODD(s) {s, sizeof s - 1}
    ODD(""),          ODD("nul\0key"),      ODD("new\nline"),
    ODD("\xff\xfe not utf-8"), ODD(" blanks "), ODD("{tally}:total"),
    ODD("big"),       {NULL, 4096}, /* the long key: filled in main */
#undef ODD
};
enum { NODD = sizeof odd / sizeof odd[0], BIG = 6, LONG = 7 };

static volatile sig_atomic_t stop;
static char long_key[4096];
static long nkeys;
static uint64_t *net; /* per key: nkeys "k<i>", then the odd ones */
static unsigned char *touched; /* per key: added to */

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const char *odd_key(int i)
{
    return i == LONG ? long_key : odd[i].k;
}

/* The index of a key in net, -1 if it is none of ours. */
static long key_index(const void *key, size_t len)
{
    const char *k = key;
    char digits[24];
    int i;

    if (len > 1 && len < sizeof digits && k[0] == 'k') {
        char *end;
        long v;

        memcpy(digits, k + 1, len - 1);
        digits[len - 1] = '\0';
        v = strtol(digits, &end, 10);
        if (*end == '\0' && v >= 0 && v < nkeys)
            return v;
    }
    for (i = 0; i < (int)NODD; i++)
        if (len == odd[i].len && memcmp(key, odd_key(i), len) == 0)
            return nkeys + i;
    return -1;
}

static int drained(void *ctx, const void *key, size_t len, int64_t amount)
{
    long i = key_index(key, len);

    (void)ctx;
    if (i < 0) {
        fprintf(stderr, "push_writer: drained a key that is not ours\n");
        return -1;
    }
    net[i] -= (uint64_t)amount;
    touched[i] = 1;
    return 0;
}

static int fill(const char *path, long n)
{
    struct tally_store_config cfg = {.flags = TALLY_STORE_CREATE};
    tally_store *s;
    long i;
    int err;

    err = tally_store_open(&s, path, &cfg);
    for (i = 0; i < n && err == 0; i++) {
        char key[24];

        snprintf(key, sizeof key, "f%ld", i);
        err = tally_store_add(s, key, i + 1);
    }
    if (err == 0 || i != 0)
        tally_store_close(s);
    if (err != 0) {
        fprintf(stderr, "push_writer: %s: %s\n", path, tally_strerror(err));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct tally_store_config cfg = {.flags = TALLY_STORE_CREATE};
    struct sigaction sa;
    struct timespec nap = {0, 200000};
    unsigned long long adds = 0;
    long drain_every = 0, i;
    uint64_t seed;
    tally_store *s;
    int err;

    if (argc == 4 && strcmp(argv[2], "--fill") == 0)
        return fill(argv[1], strtol(argv[3], NULL, 10));
    if (argc != 4 && !(argc == 6 && strcmp(argv[4], "--drain") == 0)) {
        fprintf(stderr, "usage: push_writer FILE SEED KEYS [--drain N]\n"
                        "       push_writer FILE --fill N\n");
        return 1;
    }
    seed = strtoull(argv[2], NULL, 10) * 2654435761u + 1;
    nkeys = strtol(argv[3], NULL, 10);
    if (argc == 6)
        drain_every = strtol(argv[5], NULL, 10);
    if (nkeys < 1 || drain_every < 0) {
        fprintf(stderr, "push_writer: bad KEYS or --drain\n");
        return 1;
    }
    memset(long_key, 'L', sizeof long_key);
    net = calloc((size_t)nkeys + NODD, sizeof *net);
    touched = calloc((size_t)nkeys + NODD, 1);
    if (net == NULL || touched == NULL)
        return 1;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);

    err = tally_store_open(&s, argv[1], &cfg);
    if (err != 0) {
        fprintf(stderr, "push_writer: %s: %s\n", argv[1],
                tally_strerror(err));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    while (!stop) {
        uint64_t r = next(&seed);
        long k = (long)(r % (uint64_t)(nkeys + NODD));
        int64_t delta = (int64_t)(r >> 40 & 7) - 2; /* -2..5 */
        const void *key;
        size_t len;
        char buf[24];

        if (k >= nkeys && k - nkeys == BIG)
            delta = (r >> 20 & 1 ? 1 : -1) *
                    ((int64_t)1 << 62 | (int64_t)(r >> 44));
        if (k < nkeys) {
            len = (size_t)snprintf(buf, sizeof buf, "k%ld", k);
            key = buf;
        } else {
            key = odd_key((int)(k - nkeys));
            len = odd[k - nkeys].len;
        }
        err = tally_store_add_n(s, key, len, delta);
        if (err != 0) {
            fprintf(stderr, "push_writer: add: %s\n", tally_strerror(err));
            return 1;
        }
        net[k] += (uint64_t)delta;
        touched[k] = 1;
        adds++;
        if (drain_every != 0 && adds % (unsigned long long)drain_every == 0) {
            err = tally_store_drain(s, drained, NULL);
            if (err != 0) {
                fprintf(stderr, "push_writer: drain: %d\n", err);
                return 1;
            }
        }
        if (adds % 64 == 0)
            nanosleep(&nap, NULL);
    }
    tally_store_close(s);
    for (i = 0; i < nkeys + (long)NODD; i++) {
        const unsigned char *key;
        size_t len, j;
        char buf[24];

        if (!touched[i])
            continue;
        if (i < nkeys) {
            len = (size_t)snprintf(buf, sizeof buf, "k%ld", i);
            key = (const unsigned char *)buf;
        } else {
            key = (const unsigned char *)odd_key((int)(i - nkeys));
            len = odd[i - nkeys].len;
        }
        if (len == 0)
            putchar('-');
        for (j = 0; j < len; j++)
            printf("%02x", key[j]);
        printf(" %lld\n", (long long)(int64_t)net[i]);
    }
    printf("adds %llu\n", adds);
    free(net);
    free(touched);
    return fflush(stdout) == 0 ? 0 : 1;
}
