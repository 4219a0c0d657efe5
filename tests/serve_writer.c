/*
 * serve_writer.c - a process that counts into a tally store, for the
 * tally serve tests (serve_http.py, serve_prometheus.py) and the
 * 100,000-key promtool check (expo_promtool.sh).
 *
 *   serve_writer FILE count KEYS ADDS SECONDS SEED
 *       ADDS adds of 1, spread evenly over about SECONDS, each to one of
 *       KEYS keys "k<i>" or one of the odd keys below, picked by an
 *       xorshift generator seeded with SEED. Then prints one line per key
 *       it added to, "<key in hex> <adds>", and "total <ADDS>".
 *   serve_writer FILE put HEXKEY VALUE
 *       Adds VALUE (may be negative) to the key whose bytes are HEXKEY
 *       ("-" for the empty key).
 *   serve_writer FILE fill N
 *       Adds 3 i to key "key-<i>" for i in 0..N-1, and 1..6 to the six odd
 *       keys, as expo_dump does to its map: the samples sum to
 *       3 N (N - 1) / 2 + 21 (expo_parse.py checks it).
 *
 * FILE is created when absent. Exit status 0, or 1 with a message.
 */
#include "tally.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *k;
    size_t len;
} odd[] = {{"quote\"", 6},        {"back\\slash", 10}, {"new\nline", 8},
           {"caf\xc3\xa9", 5},    {"bad \xff byte", 10}, {"nul\0key", 7}};
enum { NODD = sizeof odd / sizeof odd[0] };

static int fail(const char *what, int err)
{
    fprintf(stderr, "serve_writer: %s: %s\n", what, tally_strerror(err));
    return 1;
}

static int open_store(const char *path, tally_store **s)
{
    struct tally_store_config cfg = {.flags = TALLY_STORE_CREATE};
    return tally_store_open(s, path, &cfg);
}

static void print_hex(const char *k, size_t len)
{
    size_t i;

    if (len == 0)
        fputs("-", stdout);
    for (i = 0; i < len; i++)
        printf("%02x", (unsigned char)k[i]);
}

static int cmd_count(tally_store *s, long keys, long adds, double seconds,
                     unsigned long long seed)
{
    long *counts = calloc((size_t)(keys + NODD), sizeof *counts);
    uint64_t x = seed * 2654435761u + 1;
    long i, batch = adds / 100 + 1;
    struct timespec pause;
    int rc;

    if (counts == NULL)
        return fail("calloc", -ENOMEM);
    pause.tv_sec = 0;
    pause.tv_nsec = (long)(seconds / 100 * 1e9);
    for (i = 0; i < adds; i++) {
        char key[32];
        const char *k = key;
        size_t len;
        long j;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        j = (long)((x * 0x2545F4914F6CDD1DULL) % (uint64_t)(keys + NODD));
        if (j < keys) {
            len = (size_t)sprintf(key, "k%ld", j);
        } else {
            k = odd[j - keys].k;
            len = odd[j - keys].len;
        }
        if ((rc = tally_store_add_n(s, k, len, 1)) != 0)
            return fail("tally_store_add_n", rc);
        counts[j]++;
        if (i % batch == batch - 1 && pause.tv_nsec > 0)
            nanosleep(&pause, NULL);
    }
    for (i = 0; i < keys + NODD; i++) {
        char key[32];
        if (counts[i] == 0)
            continue;
        if (i < keys)
            print_hex(key, (size_t)sprintf(key, "k%ld", i));
        else
            print_hex(odd[i - keys].k, odd[i - keys].len);
        printf(" %ld\n", counts[i]);
    }
    printf("total %ld\n", adds);
    free(counts);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int cmd_put(tally_store *s, const char *hex, long long value)
{
    char key[TALLY_KEY_MAX];
    size_t len = 0;
    int rc;

    if (strcmp(hex, "-") != 0) {
        size_t n = strlen(hex);
        if (n % 2 != 0 || n / 2 > sizeof key)
            return fail("HEXKEY", -EINVAL);
        for (; len < n / 2; len++) {
            unsigned b;
            if (sscanf(hex + 2 * len, "%2x", &b) != 1)
                return fail("HEXKEY", -EINVAL);
            key[len] = (char)b;
        }
    }
    rc = tally_store_add_n(s, key, len, value);
    return rc == 0 ? 0 : fail("tally_store_add_n", rc);
}

static int cmd_fill(tally_store *s, long n)
{
    long i;
    int rc;

    for (i = 0; i < n; i++) {
        char key[32];
        int len = sprintf(key, "key-%ld", i);
        if ((rc = tally_store_add_n(s, key, (size_t)len, 3 * i)) != 0)
            return fail("tally_store_add_n", rc);
    }
    for (i = 0; i < NODD; i++)
        if ((rc = tally_store_add_n(s, odd[i].k, odd[i].len, i + 1)) != 0)
            return fail("tally_store_add_n", rc);
    return 0;
}

int main(int argc, char **argv)
{
    tally_store *s;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: serve_writer FILE count KEYS ADDS SECONDS "
                        "SEED | put HEXKEY VALUE | fill N\n");
        return 2;
    }
    if ((rc = open_store(argv[1], &s)) != 0)
        return fail(argv[1], rc);
    if (strcmp(argv[2], "count") == 0 && argc == 7)
        rc = cmd_count(s, atol(argv[3]), atol(argv[4]), atof(argv[5]),
                       strtoull(argv[6], NULL, 10));
    else if (strcmp(argv[2], "put") == 0 && argc == 5)
        rc = cmd_put(s, argv[3], atoll(argv[4]));
    else if (strcmp(argv[2], "fill") == 0 && argc == 4)
        rc = cmd_fill(s, atol(argv[3]));
    else {
        fprintf(stderr, "serve_writer: bad arguments\n");
        rc = 2;
    }
    tally_store_close(s);
    return rc;
}
