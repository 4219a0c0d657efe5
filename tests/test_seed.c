/*
 * test_seed.c - the keyed hash against hash flooding (issue 9, part 2).
 *
 *   1. Two runs of a program lay out the same keys differently: the test
 *      runs itself twice (--order) and compares the foreach orders.
 *   2. Keys crafted to collide under one secret (same shard, same low 8
 *      hash bits: found by hashing candidates under a secret forced with
 *      the test hook tally__seed_force) tell nothing about another map's
 *      secret: a map with a fresh secret spreads them over its shards like
 *      any keys. With the old unkeyed hash every map put them all in one
 *      shard.
 *   3. Even a map that does use the known secret keeps its probes short:
 *      the crafted keys all land in one shard, but every key sits within
 *      its table's cap (128 slots) of its home, and the values are exact.
 *      The check reads the tables (map.h), so it does not depend on
 *      timing.
 */
#include "tally.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "map.h"

#define ORDER_KEYS 64
#define CRAFTED 1500

static int print_fn(void *ctx, const void *key, size_t len, int64_t value)
{
    (void)ctx;
    (void)value;
    printf("%.*s\n", (int)len, (const char *)key);
    return 0;
}

/* --order: the foreach order of keys k0..k63 in a fresh map. */
static int print_order(void)
{
    tally_map *m;
    char key[16];
    CHECK_EQ(tally_map_new(&m), 0);
    for (int i = 0; i < ORDER_KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CHECK_EQ(tally_map_inc(m, key), 0);
    }
    CHECK_EQ(tally_map_foreach(m, print_fn, NULL), 0);
    tally_map_free(m);
    return 0;
}

/* Runs this program with --order; returns its output (malloc'd). */
static char *run_order(const char *self)
{
    int fd[2];
    CHECK_EQ(pipe(fd), 0);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl(self, self, "--order", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    CHECK(out != NULL);
    ssize_t r;
    while ((r = read(fd[0], out + n, cap - n - 1)) > 0) {
        n += (size_t)r;
        if (n + 1 == cap) {
            cap *= 2;
            out = realloc(out, cap);
            CHECK(out != NULL);
        }
    }
    out[n] = '\0';
    close(fd[0]);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return out;
}

static void test_layout_differs(const char *self)
{
    char *a = run_order(self), *b = run_order(self);
    /* Same keys... */
    size_t lines = 0;
    for (const char *p = a; *p; p++)
        lines += *p == '\n';
    CHECK_EQ(lines, ORDER_KEYS);
    CHECK_EQ(strlen(a), strlen(b));
    /* ...in another order: the odds of two secrets giving the same order
     * of 64 keys are negligible. */
    CHECK(strcmp(a, b) != 0);
    free(a);
    free(b);
}

/* ---- crafted keys ------------------------------------------------------ */

static const struct tally__seed known = {{0x0123456789abcdefull,
                                          0xfedcba9876543210ull,
                                          0x0f1e2d3c4b5a6978ull,
                                          0x8796a5b4c3d2e1f0ull}};

static char crafted[CRAFTED][24];

/* Keys whose hashes under the known secret share the top 6 bits (the
 * shard) and the low 8 bits: what an attacker who knew the secret would
 * send against an unsalted table. */
static void craft(void)
{
    uint64_t want = 0;
    int n = 0;
    for (uint64_t c = 0; n < CRAFTED; c++) {
        char key[24];
        int len = snprintf(key, sizeof(key), "flood-%llu",
                           (unsigned long long)c);
        uint64_t h = tally__hash(&known, key, (size_t)len);
        uint64_t sig = (h >> 58) << 8 | (h & 0xff);
        if (n == 0)
            want = sig;
        if (sig != want)
            continue;
        memcpy(crafted[n++], key, (size_t)len + 1);
    }
}

static void fill(tally_map *m)
{
    for (int i = 0; i < CRAFTED; i++)
        CHECK_EQ(tally_map_add(m, crafted[i], i + 1), 0);
    for (int i = 0; i < CRAFTED; i++)
        CHECK_EQ(tally_map_value(m, crafted[i]), i + 1);
    CHECK_EQ(tally_map_size(m), CRAFTED);
}

/* Keys per shard, and the largest distance of a key from its home in any
 * table (which must be within the table's cap). */
static void inspect(tally_map *m, size_t *max_shard, uint32_t *max_disp)
{
    *max_shard = 0;
    *max_disp = 0;
    for (unsigned s = 0; s < NSHARDS; s++) {
        struct shard *sh = &m->shard[s];
        size_t live = tally_atomic_load(&sh->live, relaxed);
        if (live > *max_shard)
            *max_shard = live;
        struct table *tb = tally_atomic_load(&sh->table, relaxed);
        if (tb == NULL)
            continue;
        CHECK_EQ(tb->cap, MAX_DISP);
        for (uint32_t i = 0; i < tb->size; i++) {
            uint64_t meta = tally_atomic_load(&tb->slot[i].meta, relaxed);
            if (meta_state(meta) != M_LIVE)
                continue;
            size_t len;
            const unsigned char *key = slot_key(&tb->slot[i], meta, &len);
            uint32_t home = home_of(tb, tally__hash(&m->seed, key, len));
            uint32_t d = i >= home ? i - home : i + tb->size - home;
            CHECK_LE(d, tb->cap);
            if (d > *max_disp)
                *max_disp = d;
        }
    }
}

static void test_crafted_keys(void)
{
    size_t max_shard;
    uint32_t max_disp;
    tally_map *m;

    craft();

    /* A map with the known secret: one shard gets every key, and its
     * table still keeps each within the cap of its home. */
    tally__seed_force(&known);
    CHECK_EQ(tally_map_new(&m), 0);
    tally__seed_force(NULL);
    fill(m);
    inspect(m, &max_shard, &max_disp);
    CHECK_EQ(max_shard, CRAFTED);
    printf("test_seed: known secret: %d keys in one shard, longest probe "
           "%u slots (cap %u)\n",
           CRAFTED, max_disp + 1, MAX_DISP);
    tally_map_free(m);

    /* A map with its own secret: the keys spread like any others. With
     * 64 shards the mean is about 23 keys per shard; a shard with more than
     * three times that would mean the secret did not matter. */
    CHECK_EQ(tally_map_new(&m), 0);
    fill(m);
    inspect(m, &max_shard, &max_disp);
    printf("test_seed: fresh secret: at most %zu keys per shard (mean %d), "
           "longest probe %u slots\n",
           max_shard, CRAFTED / NSHARDS, max_disp + 1);
    CHECK_LE(max_shard, 3 * CRAFTED / NSHARDS);
    tally_map_free(m);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--order") == 0)
        return print_order();
    test_layout_differs("/proc/self/exe");
    test_crafted_keys();
    printf("test_seed: ok\n");
    return 0;
}
