/*
 * fuzz_store.c - tally_store against arbitrary file contents.
 *
 * The input is a store file with one byte in front:
 *
 *   byte 0, bit 0   recompute the header checksum before use (so that
 *                   mutations of header fields reach the checks behind it)
 *           bit 1   recompute the hash check value from the file's secret
 *           bit 2   all key hashes 0 (test hook): collision chains
 *           bit 3   key hashes keep only their top 4 bits (test hook):
 *                   the deepest trie levels of a 4-bit root
 *   the rest        the file
 *
 * The file is written to a memfd (a temporary file where there is none)
 * and then, on /proc/self/fd/N:
 *
 *   1. tally_store_check, which must return, with well-formed lines;
 *   2. a read-only open, foreach, get of every key foreach visited and of
 *      one that is absent, size, info;
 *   3. a read-write open of the same (throwaway) file: adds to existing
 *      and new keys, a handle, a drain;
 *   4. tally_store_check again.
 *
 * Nothing may crash, hang or trip a sanitizer. And when the first check
 * says the store is sound, everything must agree with it: the opens
 * succeed, foreach visits every key once (no fewer than the key count),
 * get returns what foreach saw, adds land exactly, the drain hands out
 * exactly the values, and the store is still sound afterwards.
 *
 * Built two ways (as tests/fuzz_map.c):
 *   - with -DTALLY_LIBFUZZER and clang -fsanitize=fuzzer: the libFuzzer
 *     target (tests/fuzz/run.sh);
 *   - without: a program that replays the files and directories on its
 *     command line, and with no arguments the seed corpus compiled in
 *     (tests/fuzz_corpus_store/) plus fixed-seed mutations of each seed
 *     (flipped bytes, words set to boundary values, truncations), in every
 *     build dir. --make-corpus DIR writes the seed corpus (valid stores
 *     made by the library itself).
 */
#include "tally.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "hash.h"
#include "store.h"

enum {
    F_FIX_SUM = 1,
    F_FIX_HASH = 2,
    F_HASH_ZERO = 4,
    F_HASH_TOP4 = 8,
    MAX_KEYS = 64
};

/* ---- the file -------------------------------------------------------- */

static int g_fd = -1;
static char g_path[256];
static char g_tmpdir_path[256];

/* Puts the file's bytes at g_path. */
static void put_file(const uint8_t *data, size_t n)
{
    if (g_fd < 0) {
        g_fd = memfd_create("fuzz_store", MFD_CLOEXEC);
        if (g_fd >= 0) {
            snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
            if (access(g_path, R_OK) != 0) {
                close(g_fd);
                g_fd = -1;
            }
        }
        if (g_fd < 0) {
            const char *tmp = getenv("TMPDIR");
            snprintf(g_tmpdir_path, sizeof g_tmpdir_path,
                     "%s/fuzz_store.%d",
                     tmp != NULL && *tmp != '\0' ? tmp : "/tmp",
                     (int)getpid());
            g_fd = open(g_tmpdir_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
                        0600);
            CHECK_GE(g_fd, 0);
            memcpy(g_path, g_tmpdir_path, sizeof g_path);
        }
    }
    CHECK_EQ(ftruncate(g_fd, 0), 0);
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(g_fd, data + done, n - done, (off_t)done);
        CHECK_GT(w, 0);
        done += (size_t)w;
    }
}

/* ---- what the calls see ---------------------------------------------- */

struct seen {
    size_t n; /* visits */
    size_t kept;
    size_t len[MAX_KEYS];
    unsigned char key[MAX_KEYS][64];
    int64_t value[MAX_KEYS];
    uint64_t sum;
};

static int visit(void *ctx, const void *key, size_t len, int64_t value)
{
    struct seen *s = ctx;
    CHECK_LE(len, TALLY_KEY_MAX);
    s->n++;
    s->sum += (uint64_t)value;
    if (s->kept < MAX_KEYS && len <= sizeof s->key[0]) {
        memcpy(s->key[s->kept], key, len);
        s->len[s->kept] = len;
        s->value[s->kept] = value;
        s->kept++;
    }
    return 0;
}

static void on_line(void *ctx, const char *line)
{
    size_t *lines = ctx;
    size_t n = strlen(line);
    CHECK_GT(n, 0);
    CHECK_LT(n, 256);
    (*lines)++;
}

static int store_check(void)
{
    size_t lines = 0;
    int r = tally_store_check(g_path, on_line, &lines);
    if (r == 0 || r == TALLY_ECORRUPT || r == TALLY_ENOTSTORE ||
        r == TALLY_EVERSION || r == TALLY_ELAYOUT)
        CHECK(r == 0 || lines > 0); /* a refusal says why */
    return r;
}

static void run_input(const uint8_t *data, size_t size)
{
    if (size == 0)
        return;
    uint8_t flags = data[0];
    size_t n = size - 1;
    uint8_t *file = malloc(n ? n : 1);
    CHECK(file != NULL);
    memcpy(file, data + 1, n);
    if ((flags & F_FIX_HASH) && n >= TALLY__STORE_HEADER_SIZE) {
        struct tally__seed seed;
        memcpy(seed.k, file + offsetof(struct tally__store_header, seed),
               sizeof seed.k);
        uint64_t h = tally__hash(&seed, TALLY__STORE_HASH_CHECK_KEY,
                                 sizeof TALLY__STORE_HASH_CHECK_KEY - 1);
        memcpy(file + offsetof(struct tally__store_header, hash_check), &h, 8);
    }
    if ((flags & (F_FIX_SUM | F_FIX_HASH)) && n >= TALLY__STORE_SUMMED + 8) {
        uint64_t sum = tally__store_header_sum(file);
        memcpy(file + TALLY__STORE_SUMMED, &sum, 8);
    }
    tally__store_hash_mask(flags & F_HASH_ZERO   ? 0
                           : flags & F_HASH_TOP4 ? 0xf000000000000000ull
                                                 : ~(uint64_t)0);
    put_file(file, n);
    free(file);

    int sound = store_check() == 0;

    /* Read-only. */
    static struct seen seen;
    memset(&seen, 0, sizeof seen);
    tally_store *s = NULL;
    struct tally_store_config ro = {TALLY_STORE_READONLY, 0, 0};
    int r = tally_store_open(&s, g_path, &ro);
    if (sound)
        CHECK_EQ(r, 0);
    if (r == 0) {
        size_t size = tally_store_size(s);
        r = tally_store_foreach(s, visit, &seen);
        if (sound) {
            CHECK_EQ(r, 0);
            CHECK_GE(seen.n, size);
        }
        for (size_t i = 0; i < seen.kept; i++) {
            int64_t v;
            r = tally_store_get_n(s, seen.key[i], seen.len[i], &v);
            if (sound) {
                CHECK_EQ(r, 0);
                CHECK_EQ(v, seen.value[i]);
            }
        }
        int64_t v;
        r = tally_store_get(s, "\xff absent from every seed", &v);
        if (sound)
            CHECK_EQ(r, -ENOENT);
        CHECK_EQ(tally_store_add(s, "x", 1), -EROFS);
        struct tally_store_info info;
        CHECK_EQ(tally_store_info(s, &info), 0);
        tally_store_close(s);
    }

    /* Read-write, on the throwaway file. */
    r = tally_store_open(&s, g_path, NULL);
    if (sound)
        CHECK_EQ(r, 0);
    if (r == 0) {
        for (size_t i = 0; i < seen.kept && i < 16; i++) {
            r = tally_store_add_n(s, seen.key[i], seen.len[i], 3);
            if (sound) {
                int64_t v;
                CHECK_EQ(r, 0);
                CHECK_EQ(tally_store_get_n(s, seen.key[i], seen.len[i], &v),
                         0);
                CHECK_EQ(v, (int64_t)((uint64_t)seen.value[i] + 3));
            }
        }
        int added = 0;
        for (int i = 0; i < 8; i++) {
            char name[32];
            snprintf(name, sizeof name, "fuzz-new-%d", i);
            r = tally_store_add(s, name, i + 1);
            if (sound)
                CHECK(r == 0 || r == -ENOSPC);
            if (sound && r == 0) {
                CHECK_EQ(tally_store_value(s, name), i + 1);
                added++;
            }
        }
        tally_store_handle *h;
        if (tally_store_handle_new(s, "fuzz-handle", &h) == 0) {
            tally_store_handle_add(h, 5);
            tally_store_handle_release(h);
        }
        if (seen.kept > 0)
            (void)tally__store_stripe(s, seen.key[0], seen.len[0]);
        static struct seen before, drained, after;
        memset(&before, 0, sizeof before);
        memset(&drained, 0, sizeof drained);
        memset(&after, 0, sizeof after);
        int rb = tally_store_foreach(s, visit, &before);
        int rd = tally_store_drain(s, visit, &drained);
        int ra = tally_store_foreach(s, visit, &after);
        if (sound) {
            CHECK_EQ(rb, 0);
            CHECK_EQ(rd, 0);
            CHECK_EQ(ra, 0);
            CHECK_EQ(drained.sum, before.sum); /* exactly the values */
            CHECK_EQ(after.sum, 0);
            CHECK_EQ(after.n, before.n);
            CHECK_GE(before.n, seen.n + (size_t)added);
        }
        tally_store_close(s);
    }
    r = store_check();
    if (sound)
        CHECK_EQ(r, 0); /* our calls keep a sound store sound */
    tally__store_hash_mask(~(uint64_t)0);
}

#ifdef TALLY_LIBFUZZER

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_input(data, size);
    return 0;
}

#else /* the replay driver */

#include <dirent.h>
#include <sys/stat.h>

static size_t g_files, g_mutants;

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz_store: cannot open %s: %s\n", path,
                strerror(errno));
        CHECK(f != NULL);
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0)
            break;
        n += got;
    }
    CHECK(!ferror(f));
    fclose(f);
    *len = n;
    return buf;
}

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_s ^= rng_s >> 12, rng_s ^= rng_s << 25, rng_s ^= rng_s >> 27;
    return rng_s * 0x2545f4914f6cdd1dull;
}

/* Fixed-seed mutations of one seed: what damage looks like. */
static void mutate_and_run(const uint8_t *seed, size_t n, int count)
{
    uint8_t *m = malloc(n + 1);
    CHECK(m != NULL);
    static const uint64_t words[] = {0,
                                     1,
                                     2,
                                     8,
                                     15,
                                     16,
                                     17,
                                     640,
                                     641,
                                     4096,
                                     65536,
                                     0x7fffffffffffffffull,
                                     0xffffffffffffffffull,
                                     0xfffffffffffffff0ull};
    for (int i = 0; i < count; i++) {
        memcpy(m, seed, n);
        size_t len = n;
        m[0] |= F_FIX_SUM; /* reach past the checksum mostly */
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits && len > 1; e++) {
            size_t at = 1 + (size_t)(rng() % (len - 1));
            switch (rng() % 5) {
            case 0: /* flip a bit */
                m[at] ^= (uint8_t)(1u << (rng() % 8));
                break;
            case 1: /* an aligned word set to a boundary value, or to
                       another word's offset +- a little */
                at = 1 + ((at - 1) & ~(size_t)7);
                if (at + 8 <= len) {
                    uint64_t w = rng() % 2 ? words[rng() % (sizeof words /
                                                           sizeof *words)]
                                           : (uint64_t)(rng() % len) +
                                                 (rng() % 3) - 1;
                    memcpy(m + at, &w, 8);
                }
                break;
            case 2: /* truncate */
                len = 1 + (size_t)(rng() % (len - 1));
                break;
            case 3: /* copy a word from elsewhere */
                if (len > 17) {
                    size_t from = 1 + (size_t)(rng() % (len - 9));
                    at = 1 + (size_t)(rng() % (len - 9));
                    memmove(m + at, m + from, 8);
                }
                break;
            default: /* a random byte */
                m[at] = (uint8_t)rng();
                break;
            }
        }
        run_input(m, len);
        g_mutants++;
    }
    free(m);
}

static int mutants_per_seed;

static void replay_file(const char *path)
{
    size_t n;
    uint8_t *buf = read_all(path, &n);
    run_input(buf, n);
    if (mutants_per_seed > 0 && n > 1)
        mutate_and_run(buf, n, mutants_per_seed);
    free(buf);
    g_files++;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz_store: %s: %s\n", path, strerror(errno));
        CHECK(!"corpus path exists");
    }
    if (!S_ISDIR(st.st_mode)) {
        replay_file(path);
        return;
    }
    DIR *d = opendir(path);
    CHECK(d != NULL);
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        CHECK(names != NULL);
        size_t l = strlen(path) + strlen(e->d_name) + 2;
        names[n] = malloc(l);
        CHECK(names[n] != NULL);
        snprintf(names[n++], l, "%s/%s", path, e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), name_cmp); /* a fixed order */
    for (size_t i = 0; i < n; i++) {
        replay_file(names[i]);
        free(names[i]);
    }
    free(names);
}

/* ---- the seed corpus -------------------------------------------------- */

static char g_make_dir[256];

/* Writes the store at tmp (closed) to DIR/name, cut to its used size,
 * behind a flags byte. */
static void save_seed(const char *tmp, const char *name, uint8_t flags)
{
    size_t n;
    uint8_t *f = read_all(tmp, &n);
    struct tally__store_header h;
    CHECK_GE(n, sizeof h);
    memcpy(&h, f, sizeof h);
    size_t used = (size_t)atomic_load(&h.used);
    CHECK_LE(used, n);
    char out[512];
    snprintf(out, sizeof out, "%s/%s", g_make_dir, name);
    FILE *o = fopen(out, "wb");
    CHECK(o != NULL);
    CHECK_EQ(fwrite(&flags, 1, 1, o), 1);
    CHECK_EQ(fwrite(f, 1, used, o), used);
    CHECK_EQ(fclose(o), 0);
    free(f);
    printf("fuzz_store: wrote %s (%zu bytes)\n", out, used + 1);
}

static tally_store *seed_store(const char *tmp, uint32_t cells)
{
    unlink(tmp);
    tally__store_test_layout(cells, 4);
    struct tally_store_config cfg = {TALLY_STORE_CREATE, 0600,
                                     TALLY__STORE_MIN_BYTES};
    tally_store *s;
    CHECK_EQ(tally_store_open(&s, tmp, &cfg), 0);
    tally__store_test_layout(0, 0);
    return s;
}

static void make_corpus(void)
{
    char tmp[300];
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/fuzz_store_seed.%d",
             t != NULL && *t != '\0' ? t : "/tmp", (int)getpid());
    char name[32];
    tally_store *s;

    s = seed_store(tmp, 2);
    tally_store_close(s);
    save_seed(tmp, "seed-empty.bin", 0);

    s = seed_store(tmp, 2);
    CHECK_EQ(tally_store_add(s, "a", 1), 0);
    CHECK_EQ(tally_store_add(s, "bb", -2), 0);
    CHECK_EQ(tally_store_add_n(s, "c\0c", 3, 3), 0);
    CHECK_EQ(tally_store_add(s, "", 4), 0);
    tally_store_close(s);
    save_seed(tmp, "seed-four-keys.bin", 0);

    s = seed_store(tmp, 2);
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof name, "k%d", i);
        CHECK_EQ(tally_store_add(s, name, i), 0);
    }
    tally_store_close(s);
    save_seed(tmp, "seed-60-keys.bin", 0);

    s = seed_store(tmp, 4);
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "s%d", i);
        CHECK_EQ(tally_store_add(s, name, i), 0);
        if (i % 2 == 0)
            CHECK_EQ(tally__store_stripe(s, name, strlen(name)), 0);
        tally__store_test_cpu(i);
        CHECK_EQ(tally_store_add(s, name, 100), 0);
    }
    tally__store_test_cpu(-1);
    tally_store_close(s);
    save_seed(tmp, "seed-striped.bin", 0);

    s = seed_store(tmp, 2);
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof name, "d%d", i);
        CHECK_EQ(tally_store_add(s, name, 7 * i), 0);
    }
    struct seen d = {0};
    CHECK_EQ(tally_store_drain(s, visit, &d), 0);
    CHECK_EQ(tally_store_add(s, "d3", 1), 0);
    tally_store_close(s);
    save_seed(tmp, "seed-drained.bin", 0);

    tally__store_hash_mask(0);
    s = seed_store(tmp, 2);
    for (int i = 0; i < 20; i++) { /* a chain of two collision nodes */
        snprintf(name, sizeof name, "z%d", i);
        CHECK_EQ(tally_store_add(s, name, i), 0);
    }
    tally_store_close(s);
    save_seed(tmp, "seed-collisions.bin", F_HASH_ZERO);
    tally__store_hash_mask(0xf000000000000000ull);
    s = seed_store(tmp, 2);
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "y%d", i);
        CHECK_EQ(tally_store_add(s, name, i), 0);
    }
    tally_store_close(s);
    save_seed(tmp, "seed-deep.bin", F_HASH_TOP4);
    tally__store_hash_mask(~(uint64_t)0);
    unlink(tmp);
}

#ifndef DEFAULT_MUTANTS
#define DEFAULT_MUTANTS 300
#endif

/* With no arguments (as ctest runs it): the corpus directory compiled in,
 * each seed and DEFAULT_MUTANTS mutations of it. */
int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--make-corpus") == 0) {
        snprintf(g_make_dir, sizeof g_make_dir, "%s", argv[2]);
        make_corpus();
        return 0;
    }
    if (argc == 1) {
#ifdef TALLY_FUZZ_STORE_CORPUS
        mutants_per_seed = DEFAULT_MUTANTS;
#if defined(TALLY_TSAN)
        mutants_per_seed /= 4;
#endif
        replay_path(TALLY_FUZZ_STORE_CORPUS);
        CHECK_GT(g_files, 0);
#endif
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mutants") == 0 && i + 1 < argc)
            mutants_per_seed = atoi(argv[++i]);
        else
            replay_path(argv[i]);
    }
    if (g_fd >= 0)
        close(g_fd);
    if (g_tmpdir_path[0] != '\0')
        unlink(g_tmpdir_path);
    printf("fuzz_store: ok: %zu files and %zu mutations of them replayed\n",
           g_files, g_mutants);
    return 0;
}

#endif
