/*
 * flood.c - hash flooding: what crafted keys cost tally_map (issue 9,
 * part 2).
 *
 *   flood [--keys N] [--shard-bits B] [--low-bits L] [--min-seconds S]
 *
 * An attacker who knew a map's hash secret could pick keys whose hashes
 * share the shard (the top B bits, default 6) and the low L bits (default
 * 12, where the slot index starts), so that every one of them probes the
 * same run of slots. This program crafts N such keys (default 8000, 12
 * bytes each: "x" + 11 hex digits) for one known secret: it hashes
 * candidate keys under that secret with the map's own hash
 * (src/hash.h, tally__hash) on every CPU and keeps the matches, about one
 * in 2^(B+L). Then it times tally_map_inc over the N crafted keys against
 * N random keys of the same shape, on two maps:
 *
 *   fresh  a map made the normal way, with its own secret from the OS:
 *          what an attacker who crafted keys offline really gets;
 *   known  a map forced to the known secret (the test hook
 *          tally__seed_force, held for the whole row so that anything the
 *          map re-seeds gets the known secret again): the worst case,
 *          which only the map's probe bound limits.
 *
 * The hook exists only in the tally_test library (the library built with
 * TALLY_TEST_HOOKS), so this program links tally_test, not the installed
 * library, and says so in its output.
 *
 * Each measurement inserts the N keys (one tally_map_add_n of 1 each,
 * timed as insert_ns), then adds 1 to each key in turn for as many rounds
 * as fit in S seconds (at least 3; default S = 0.3), timed as ns per add.
 * One unreported warm-up measurement runs first.
 * Prints CSV (after '#' comment lines):
 *
 *   secret,keys,crafted_insert_ns,random_insert_ns,crafted_ns_per_add,
 *   random_ns_per_add,ratio,check
 *
 * ratio = crafted_ns_per_add / random_ns_per_add. check is ok when every
 * key holds exactly 1 + its rounds and the map holds exactly N keys.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hash.h" /* src/: tally__hash, tally__seed_force */
#include "tally.h"

#if !defined(TALLY_TEST_HOOKS)
#error "flood.c links tally_test (TALLY_TEST_HOOKS) for tally__seed_force"
#endif

#define KEY_LEN 12 /* "x" + 11 hex digits */

/* The secret the attacker is assumed to know. */
static const struct tally__seed known = {{
    UINT64_C(0x0123456789abcdef), UINT64_C(0xfedcba9876543210),
    UINT64_C(0x0f1e2d3c4b5a6978), UINT64_C(0x8796a5b4c3d2e1f0),
}};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- crafting ------------------------------------------------------------ */

struct craft {
    unsigned index;
    uint64_t mask, want; /* keep keys with (hash & mask) == want */
    size_t need;         /* keys this thread finds */
    char *out;           /* need * KEY_LEN bytes */
    uint64_t tried;
};

/* The 8 hex digits of v as 8 ASCII bytes (least significant digit first
 * in memory; any fixed order gives distinct keys), without a loop. */
static uint64_t hex8(uint32_t v)
{
    uint64_t x = v;
    x = ((x & 0xffff0000u) << 16) | (x & 0xffffu);
    x = ((x & UINT64_C(0x0000ff000000ff00)) << 8) |
        (x & UINT64_C(0x000000ff000000ff));
    x = ((x & UINT64_C(0x00f000f000f000f0)) << 4) |
        (x & UINT64_C(0x000f000f000f000f));
    /* each byte now holds one nibble: '0'+n, or 'a'+n-10 for n >= 10 */
    uint64_t letter = ((x + UINT64_C(0x0606060606060606)) >> 4) &
                      UINT64_C(0x0101010101010101);
    return x + UINT64_C(0x3030303030303030) + letter * 39;
}

#define CRAFT_BATCH 64

static void *craft_main(void *arg)
{
    struct craft *c = arg;
    static const char hex[] = "0123456789abcdef";
    /* Candidate n of thread i: "x", i's digit, then 10 hex digits of n,
     * so threads never try the same key. A batch of candidates is
     * written, then hashed: hashing a key right after writing it bytewise
     * would make each 8-byte load wait for the smaller stores. */
    unsigned char batch[CRAFT_BATCH][16];
    uint64_t n = 0;
    size_t found = 0;
    while (found < c->need) {
        for (unsigned j = 0; j < CRAFT_BATCH; j++) {
            uint64_t m = n + j, digits = hex8((uint32_t)m);
            unsigned char *k = batch[j];
            k[0] = 'x';
            k[1] = (unsigned char)hex[c->index & 15];
            k[2] = (unsigned char)hex[(m >> 36) & 15];
            k[3] = (unsigned char)hex[(m >> 32) & 15];
            memcpy(k + 4, &digits, 8);
        }
        for (unsigned j = 0; j < CRAFT_BATCH && found < c->need; j++)
            if ((tally__hash(&known, batch[j], KEY_LEN) & c->mask) == c->want)
                memcpy(c->out + KEY_LEN * found++, batch[j], KEY_LEN);
        n += CRAFT_BATCH;
    }
    c->tried = n; /* once: the threads' structs share cache lines */
    return NULL;
}

static int craft_keys(char *out, size_t n, unsigned shard_bits,
                      unsigned low_bits, double *secs, uint64_t *tried)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nthreads = cpus < 1 ? 1 : cpus > 16 ? 16 : (unsigned)cpus;
    struct craft c[16];
    pthread_t tid[16];
    uint64_t mask = (low_bits ? (UINT64_C(1) << low_bits) - 1 : 0) |
                    (shard_bits ? ~UINT64_C(0) << (64 - shard_bits) : 0);
    uint64_t t0 = now_ns();
    size_t given = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        c[i] = (struct craft){i, mask, 0,
                              n / nthreads + (i < n % nthreads),
                              out + KEY_LEN * given, 0};
        given += c[i].need;
        if (pthread_create(&tid[i], NULL, craft_main, &c[i]) != 0)
            return -1;
    }
    *tried = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(tid[i], NULL);
        *tried += c[i].tried;
    }
    *secs = (double)(now_ns() - t0) * 1e-9;
    return 0;
}

/* Random keys of the same shape: "x" + 11 hex digits from xorshift64*. */
static void random_keys(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t x = s * UINT64_C(0x2545F4914F6CDD1D);
        char *k = out + KEY_LEN * i;
        k[0] = 'x';
        for (int j = 1; j < KEY_LEN; j++, x >>= 4)
            k[j] = hex[x & 15];
    }
}

/* ---- timing ------------------------------------------------------------- */

struct result {
    double insert_ns, add_ns;
    int ok;
};

static struct result measure(const char *keys, size_t n, int known_secret,
                             double min_seconds)
{
    struct result res = {0, 0, 1};
    tally_map *m;
    /* Forced for the whole measurement: a shard the map rebuilds with a
     * new secret gets the known one again, so this row shows what the
     * probe bound alone does. */
    tally__seed_force(known_secret ? &known : NULL);
    if (tally_map_new(&m) != 0) {
        tally__seed_force(NULL);
        res.ok = 0;
        return res;
    }
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        res.ok &= tally_map_add_n(m, keys + KEY_LEN * i, KEY_LEN, 1) == 0;
    uint64_t t1 = now_ns();
    res.insert_ns = (double)(t1 - t0) / (double)n;

    uint64_t rounds = 0, spent = 0;
    const uint64_t budget = (uint64_t)(min_seconds * 1e9);
    while (rounds < 3 || spent < budget) {
        uint64_t a = now_ns();
        for (size_t i = 0; i < n; i++)
            res.ok &= tally_map_add_n(m, keys + KEY_LEN * i, KEY_LEN, 1) == 0;
        spent += now_ns() - a;
        rounds++;
    }
    res.add_ns = (double)spent / (double)(rounds * n);
    tally__seed_force(NULL);

    for (size_t i = 0; i < n && res.ok; i++) {
        int64_t v = -1;
        if (tally_map_get_n(m, keys + KEY_LEN * i, KEY_LEN, &v) != 0 ||
            v != (int64_t)(rounds + 1)) {
            fprintf(stderr, "check=FAIL: key %.*s holds %" PRId64
                    ", expected %" PRIu64 "\n", KEY_LEN, keys + KEY_LEN * i,
                    v, rounds + 1);
            res.ok = 0;
        }
    }
    if (tally_map_size(m) != n) {
        fprintf(stderr, "check=FAIL: size %zu, expected %zu (duplicate "
                "keys?)\n", tally_map_size(m), n);
        res.ok = 0;
    }
    tally_map_free(m);
    return res;
}

int main(int argc, char **argv)
{
    unsigned long n = 8000, shard_bits = 6, low_bits = 12;
    double min_seconds = 0.3;
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        int bad = v == NULL;
        if (!bad && strcmp(argv[i], "--keys") == 0)
            bad = (n = strtoul(v, &end, 10)) < 1 || n > 1000000;
        else if (!bad && strcmp(argv[i], "--shard-bits") == 0)
            bad = (shard_bits = strtoul(v, &end, 10)) > 16;
        else if (!bad && strcmp(argv[i], "--low-bits") == 0)
            bad = (low_bits = strtoul(v, &end, 10)) > 24;
        else if (!bad && strcmp(argv[i], "--min-seconds") == 0)
            bad = !((min_seconds = strtod(v, &end)) > 0 && min_seconds < 60);
        else
            bad = 1;
        if (bad || (end != NULL && *end != '\0')) {
            fprintf(stderr, "usage: flood [--keys N] [--shard-bits B] "
                    "[--low-bits L] [--min-seconds S]\n");
            return 2;
        }
    }
    char *crafted = malloc(KEY_LEN * n), *rnd = malloc(KEY_LEN * n);
    if (crafted == NULL || rnd == NULL) {
        fprintf(stderr, "flood: out of memory\n");
        return 1;
    }
    double craft_s;
    uint64_t tried;
    if (craft_keys(crafted, n, (unsigned)shard_bits, (unsigned)low_bits,
                   &craft_s, &tried) != 0) {
        fprintf(stderr, "flood: pthread_create failed\n");
        return 1;
    }
    random_keys(rnd, n);

    printf("# flood: linked with tally_test (the library built with "
           "TALLY_TEST_HOOKS) for tally__seed_force\n");
    printf("# %lu crafted keys of %d bytes sharing the top %lu and low %lu "
           "hash bits under the known secret: %" PRIu64 " candidates hashed "
           "in %.2f s\n", n, KEY_LEN, shard_bits, low_bits, tried, craft_s);
    printf("secret,keys,crafted_insert_ns,random_insert_ns,"
           "crafted_ns_per_add,random_ns_per_add,ratio,check\n");
    int status = 0;
    /* Warm-up, not reported: the first map of the process pays for
     * first-touch page faults and the allocator's growth, which would
     * otherwise land on whichever row runs first. */
    if (!measure(rnd, n, 0, min_seconds / 4).ok)
        status = 1;
    for (int k = 0; k < 2; k++) {
        struct result c = measure(crafted, n, k, min_seconds);
        struct result r = measure(rnd, n, k, min_seconds);
        int ok = c.ok && r.ok;
        printf("%s,%lu,%.1f,%.1f,%.1f,%.1f,%.2f,%s\n",
               k ? "known" : "fresh", n, c.insert_ns, r.insert_ns, c.add_ns,
               r.add_ns, r.add_ns > 0 ? c.add_ns / r.add_ns : 0.0,
               ok ? "ok" : "FAIL");
        fflush(stdout);
        status |= !ok;
    }
    free(crafted);
    free(rnd);
    return status;
}
