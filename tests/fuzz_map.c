/*
 * fuzz_map.c - differential fuzzing of tally_map against a reference model.
 *
 * The input is decoded into a sequence of operations on one tally_map:
 * add (by bytes and by C string), get, value, remove, drain and foreach
 * (to the end or stopping after k visits), handles (create, add, release;
 * a table of 4), adds from a short-lived thread (its cells are folded into
 * the map at its exit), calls from inside a visit callback, with arbitrary
 * keys: any bytes, empty, 255 bytes, TALLY_KEY_MAX and one more. The same
 * operations run on the model below: an array of (key bytes, value) pairs
 * searched linearly, simple enough to be obviously right. After every
 * operation the results must match exactly: return codes, values, last
 * values, size, and the exact set of (key, value) pairs that foreach
 * visits and that drain reports.
 *
 * Built two ways:
 *   - with -DTALLY_LIBFUZZER and clang -fsanitize=fuzzer: the libFuzzer
 *     target (tests/fuzz/run.sh);
 *   - without: a program that replays the files and directories given on
 *     its command line (the seed corpus in tests/fuzz_corpus/), then runs
 *     --random N inputs from a fixed-seed generator (with no arguments: the
 *     corpus dir compiled in and 2000 random inputs). ctest runs it in every
 *     build dir, so the corpus is a regression test even without clang.
 */
#include "tally.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ---- reading the input ----------------------------------------------- */

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t get8(struct input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static int64_t get_delta(struct input *in)
{
    static const int64_t special[8] = {0,         1,         -1, INT64_MAX,
                                       INT64_MIN, INT64_MAX - 1, 1000000007,
                                       -((int64_t)1 << 32)};
    uint8_t b = get8(in);
    switch (b >> 6) {
    case 0:
        return b & 63;
    case 1:
        return -(int64_t)(b & 63);
    case 2: {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | get8(in);
        return (int64_t)v;
    }
    default:
        return special[b & 7];
    }
}

#define KEYBUF (TALLY_KEY_MAX + 2)

/* Recently used keys, so that operations meet the same keys again. */
#define RECENT 16
struct recent {
    unsigned char key[RECENT][KEYBUF];
    size_t len[RECENT];
    unsigned next, count;
};

/* Decodes a key into buf (KEYBUF bytes); returns its length, which may be
 * TALLY_KEY_MAX + 1 (too long). */
static size_t get_key(struct input *in, struct recent *r, unsigned char *buf)
{
    uint8_t b = get8(in);
    size_t len = 0;
    switch (b >> 6) {
    case 0: /* short literal */
        len = b & 15;
        for (size_t i = 0; i < len; i++)
            buf[i] = get8(in);
        break;
    case 1: /* a recent key */
        if (r->count > 0) {
            unsigned i = (b & 15) % r->count;
            len = r->len[i];
            memcpy(buf, r->key[i], len);
            return len;
        }
        break; /* none yet: the empty key */
    case 2: /* literal up to 255 bytes */
        len = get8(in);
        for (size_t i = 0; i < len; i++)
            buf[i] = get8(in);
        break;
    default: { /* long keys around TALLY_KEY_MAX, filled with one byte */
        static const size_t lens[4] = {TALLY_KEY_MAX, TALLY_KEY_MAX + 1,
                                       TALLY_KEY_MAX - 1, 1};
        len = lens[b & 3];
        memset(buf, get8(in), len);
        if (len > 16) /* differ near the end too */
            buf[len - 2] = (unsigned char)(b >> 2);
        break;
    }
    }
    unsigned slot = r->next;
    r->next = (r->next + 1) % RECENT;
    if (r->count < RECENT)
        r->count++;
    memcpy(r->key[slot], buf, len);
    r->len[slot] = len;
    return len;
}

/* ---- the reference model --------------------------------------------- */

struct mkey {
    unsigned char *key;
    size_t len;
    uint64_t value; /* unsigned: wraps like tally's counters */
};

struct model {
    struct mkey *k;
    size_t n, cap;
};

static ptrdiff_t model_find(const struct model *m, const void *key,
                            size_t len)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->k[i].len == len && (len == 0 || memcmp(m->k[i].key, key,
                                                      len) == 0))
            return (ptrdiff_t)i;
    return -1;
}

/* The key's index, created at 0 if absent. */
static size_t model_get_or_create(struct model *m, const void *key,
                                  size_t len)
{
    ptrdiff_t i = model_find(m, key, len);
    if (i >= 0)
        return (size_t)i;
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 16;
        m->k = realloc(m->k, m->cap * sizeof(*m->k));
        CHECK(m->k != NULL);
    }
    struct mkey *k = &m->k[m->n];
    k->key = malloc(len ? len : 1);
    CHECK(k->key != NULL);
    if (len)
        memcpy(k->key, key, len);
    k->len = len;
    k->value = 0;
    return m->n++;
}

static void model_add(struct model *m, const void *key, size_t len,
                      int64_t delta)
{
    size_t i = model_get_or_create(m, key, len);
    m->k[i].value += (uint64_t)delta;
}

static void model_remove_at(struct model *m, size_t i)
{
    free(m->k[i].key);
    m->k[i] = m->k[--m->n];
}

static void model_free(struct model *m)
{
    while (m->n > 0)
        model_remove_at(m, m->n - 1);
    free(m->k);
}

/* ---- checking the map against the model ------------------------------ */

struct visits {
    const struct model *model;
    unsigned char *seen; /* per model key */
    size_t count;        /* visits */
    size_t stop_after;   /* return STOP_RC at this visit; 0: never */
    bool drain;
    int64_t *drained;    /* per model key, for drains */
    /* re-entry checks from inside the callback */
    tally_map *map;
    bool reenter;
};

#define STOP_RC 7

static int visit_cb(void *ctx, const void *key, size_t len, int64_t value)
{
    struct visits *v = ctx;
    ptrdiff_t i = model_find(v->model, key, len);
    if (i < 0)
        fprintf(stderr, "fuzz_map: visited a key (len %zu) the model lacks\n",
                len);
    CHECK_GE(i, 0);
    CHECK_EQ(v->seen[i], 0); /* no key twice */
    v->seen[i] = 1;
    if (v->drain) {
        CHECK_NE(value, 0); /* drain skips keys at 0 */
        v->drained[i] = value;
    }
    CHECK_EQ((uint64_t)value, v->model->k[i].value);
    v->count++;
    if (v->reenter && v->count == 1) {
        /* The one call that would wait for this visit; nothing changes.
         * (Removes and drains inside a visit work: test_map.) */
        CHECK_EQ(tally_map_sync(v->map), -EDEADLK);
        CHECK_EQ(tally_map_size(v->map), v->model->n);
    }
    return v->stop_after != 0 && v->count == v->stop_after ? STOP_RC : 0;
}

/* foreach (drain = false) or drain, stopping after stop_after visits (0:
 * to the end), checked against the model; a drain zeroes the model's
 * values of the keys it reported. */
static void check_visit(tally_map *map, struct model *m, bool drain,
                        size_t stop_after, bool reenter)
{
    struct visits v;
    memset(&v, 0, sizeof(v));
    v.model = m;
    v.seen = calloc(m->n + 1, 1);
    v.drained = calloc(m->n + 1, sizeof(int64_t));
    CHECK(v.seen != NULL && v.drained != NULL);
    v.stop_after = stop_after;
    v.drain = drain;
    v.map = map;
    v.reenter = reenter;
    int rc = drain ? tally_map_drain(map, visit_cb, &v)
                   : tally_map_foreach(map, visit_cb, &v);
    size_t eligible = 0;
    for (size_t i = 0; i < m->n; i++)
        eligible += !drain || m->k[i].value != 0;
    if (stop_after != 0 && stop_after <= eligible) {
        CHECK_EQ(rc, STOP_RC);
        CHECK_EQ(v.count, stop_after);
    } else {
        CHECK_EQ(rc, 0);
        CHECK_EQ(v.count, eligible); /* every key exactly once */
    }
    if (drain)
        for (size_t i = 0; i < m->n; i++)
            if (v.seen[i])
                m->k[i].value = 0;
    free(v.seen);
    free(v.drained);
}

/* The size; with `gets`, every key's value by get; with `visit`, the full
 * set by foreach (which walks every slot of 64 shards: the costly one). */
static void check_all(tally_map *map, struct model *m, bool gets, bool visit)
{
    CHECK_EQ(tally_map_size(map), m->n);
    for (size_t i = 0; gets && i < m->n; i++) {
        int64_t v = 0;
        CHECK_EQ(tally_map_get_n(map, m->k[i].key, m->k[i].len, &v), 0);
        CHECK_EQ((uint64_t)v, m->k[i].value);
    }
    if (visit)
        check_visit(map, m, false, 0, false);
}

/* ---- operations ------------------------------------------------------- */

enum {
    OP_ADD_N,
    OP_ADD_CSTR,
    OP_GET_N,
    OP_GET_CSTR,
    OP_REMOVE_N,
    OP_REMOVE_CSTR,
    OP_DRAIN,
    OP_FOREACH,
    OP_HANDLE_NEW,
    OP_HANDLE_ADD,
    OP_HANDLE_RELEASE,
    OP_THREAD_ADD,
    OP_REENTER,
    OP_SYNC,       /* tally_map_sync: settles deferred work, changes no value */
    OP_ADD_REPEAT, /* many adds in a row to one key: it becomes HOT */
    NOPS
};

#define NHANDLES 4
#define MAX_THREADS_PER_INPUT 8

struct hslot {
    tally_handle *h;
    unsigned char key[KEYBUF];
    size_t len;
};

struct thread_op {
    tally_map *map;
    tally_handle *h; /* add through it when not NULL */
    const unsigned char *key;
    size_t len;
    int64_t delta;
    int rc;
};

static void *thread_add(void *arg)
{
    struct thread_op *op = arg;
    if (op->h != NULL) {
        tally_handle_add(op->h, op->delta);
        op->rc = 0;
    } else {
        op->rc = tally_map_add_n(op->map, op->key, op->len, op->delta);
    }
    return NULL;
}

/* The expected result of a keyed call that validates its key. */
static int key_rc(size_t len)
{
    return len > TALLY_KEY_MAX ? -ENAMETOOLONG : 0;
}

static void run_input(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct recent *recent = calloc(1, sizeof(*recent));
    unsigned char *key = malloc(KEYBUF + 1);
    struct hslot *hs = calloc(NHANDLES, sizeof(*hs));
    struct model m = {NULL, 0, 0};
    tally_map *map = NULL;
    unsigned threads = 0;
    CHECK(recent != NULL && key != NULL && hs != NULL);
    CHECK_EQ(tally_map_new(&map), 0);

    for (unsigned step = 0; in.n > 0; step++) {
        uint8_t op = get8(&in) % NOPS;
        size_t len;
        int64_t delta, v, last;
        ptrdiff_t i;
        bool want_last;
        int rc;

        switch (op) {
        case OP_ADD_N:
            len = get_key(&in, recent, key);
            delta = get_delta(&in);
            CHECK_EQ(tally_map_add_n(map, key, len, delta), key_rc(len));
            if (len <= TALLY_KEY_MAX)
                model_add(&m, key, len, delta);
            break;

        case OP_ADD_CSTR: /* the C-string calls see up to the first NUL */
            len = get_key(&in, recent, key);
            key[len] = '\0';
            len = strlen((char *)key);
            delta = get_delta(&in);
            if (delta == 1)
                rc = tally_map_inc(map, (char *)key);
            else
                rc = tally_map_add(map, (char *)key, delta);
            CHECK_EQ(rc, key_rc(len));
            if (len <= TALLY_KEY_MAX)
                model_add(&m, key, len, delta);
            break;

        case OP_GET_N:
            len = get_key(&in, recent, key);
            v = 12345;
            rc = tally_map_get_n(map, key, len, &v);
            i = len <= TALLY_KEY_MAX ? model_find(&m, key, len) : -1;
            if (len > TALLY_KEY_MAX) {
                CHECK_EQ(rc, -ENAMETOOLONG);
                CHECK_EQ(v, 12345);
            } else if (i < 0) {
                CHECK_EQ(rc, -ENOENT);
                CHECK_EQ(v, 12345); /* untouched */
            } else {
                CHECK_EQ(rc, 0);
                CHECK_EQ((uint64_t)v, m.k[i].value);
            }
            break;

        case OP_GET_CSTR:
            len = get_key(&in, recent, key);
            key[len] = '\0';
            len = strlen((char *)key);
            i = len <= TALLY_KEY_MAX ? model_find(&m, key, len) : -1;
            CHECK_EQ((uint64_t)tally_map_value(map, (char *)key),
                     i < 0 ? 0 : m.k[i].value);
            v = 12345;
            rc = tally_map_get(map, (char *)key, &v);
            CHECK_EQ(rc, len > TALLY_KEY_MAX ? -ENAMETOOLONG
                         : i < 0             ? -ENOENT
                                             : 0);
            CHECK_EQ((uint64_t)v, i < 0 ? 12345 : m.k[i].value);
            break;

        case OP_REMOVE_N:
        case OP_REMOVE_CSTR:
            len = get_key(&in, recent, key);
            if (op == OP_REMOVE_CSTR) {
                key[len] = '\0';
                len = strlen((char *)key);
            }
            last = 12345;
            want_last = op == OP_REMOVE_N || (in.n & 1);
            rc = op == OP_REMOVE_N
                     ? tally_map_remove_n(map, key, len, &last)
                     : tally_map_remove(map, (char *)key,
                                        want_last ? &last : NULL);
            i = len <= TALLY_KEY_MAX ? model_find(&m, key, len) : -1;
            if (len > TALLY_KEY_MAX) {
                CHECK_EQ(rc, -ENAMETOOLONG);
                CHECK_EQ(last, 12345);
            } else if (i < 0) {
                CHECK_EQ(rc, -ENOENT);
                CHECK_EQ(last, 12345);
            } else {
                CHECK_EQ(rc, 0);
                /* The last value, or nothing written when not asked. */
                CHECK_EQ((uint64_t)last, want_last ? m.k[i].value : 12345);
                model_remove_at(&m, (size_t)i);
            }
            break;

        case OP_DRAIN:
        case OP_FOREACH:
            check_visit(map, &m, op == OP_DRAIN, get8(&in) % 8, false);
            break;

        case OP_HANDLE_NEW: {
            struct hslot *s = &hs[get8(&in) % NHANDLES];
            len = get_key(&in, recent, key);
            tally_handle_release(s->h); /* NULL: no-op */
            s->h = NULL;
            tally_handle *h = NULL;
            rc = tally_map_handle_n(map, key, len, &h);
            CHECK_EQ(rc, key_rc(len));
            if (rc == 0) {
                CHECK(h != NULL);
                s->h = h;
                memcpy(s->key, key, len);
                s->len = len;
                (void)model_get_or_create(&m, key, len);
            } else {
                CHECK(h == NULL);
            }
            break;
        }

        case OP_HANDLE_ADD: {
            struct hslot *s = &hs[get8(&in) % NHANDLES];
            delta = get_delta(&in);
            if (s->h == NULL)
                break;
            /* The key may have been removed: the add then creates it
             * again (its next life). */
            if (delta == 1)
                tally_handle_inc(s->h);
            else
                tally_handle_add(s->h, delta);
            model_add(&m, s->key, s->len, delta);
            break;
        }

        case OP_HANDLE_RELEASE: {
            struct hslot *s = &hs[get8(&in) % NHANDLES];
            tally_handle_release(s->h);
            s->h = NULL;
            break;
        }

        case OP_THREAD_ADD: {
            uint8_t b = get8(&in);
            struct hslot *s = &hs[b % NHANDLES];
            struct thread_op t = {map, NULL, key, 0, 0, -1};
            if (b & 0x80 && s->h != NULL) {
                t.h = s->h;
                t.key = s->key;
                t.len = s->len;
            } else {
                t.len = get_key(&in, recent, key);
            }
            t.delta = get_delta(&in);
            if (threads++ < MAX_THREADS_PER_INPUT) {
                pthread_t tid;
                CHECK_EQ(pthread_create(&tid, NULL, thread_add, &t), 0);
                CHECK_EQ(pthread_join(tid, NULL), 0);
            } else {
                thread_add(&t);
            }
            CHECK_EQ(t.rc, key_rc(t.len));
            if (t.rc == 0)
                model_add(&m, t.key, t.len, t.delta);
            break;
        }

        case OP_REENTER:
            check_visit(map, &m, get8(&in) & 1, 0, true);
            break;

        case OP_SYNC:
            CHECK_EQ(tally_map_sync(map), 0);
            break;

        case OP_ADD_REPEAT: {
            len = get_key(&in, recent, key);
            delta = get_delta(&in);
            unsigned n = 60 + get8(&in) % 80;
            for (unsigned r = 0; r < n; r++) {
                rc = tally_map_add_n(map, key, len, delta);
                CHECK_EQ(rc, key_rc(len));
                if (rc == 0)
                    model_add(&m, key, len, delta);
            }
            break;
        }
        }
        /* Every step: the operation's own results (above) and the size;
         * every key's value while the map is small, else every 8th step;
         * the set foreach sees every 8th step (and at every foreach and
         * drain operation, above). */
        check_all(map, &m, m.n <= 32 || step % 8 == 0, step % 8 == 0);
    }

    check_all(map, &m, true, true);
    for (int j = 0; j < NHANDLES; j++)
        tally_handle_release(hs[j].h);
    check_all(map, &m, true, true);
    check_visit(map, &m, true, 0, false); /* drain all */
    for (size_t j = 0; j < m.n; j++)
        CHECK_EQ(m.k[j].value, 0);
    check_all(map, &m, true, true);
    tally_map_free(map);
    model_free(&m);
    free(hs);
    free(key);
    free(recent);
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

static size_t g_files;

static void replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz_map: cannot open %s: %s\n", path,
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
    run_input(buf, n);
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
        fprintf(stderr, "fuzz_map: %s: %s\n", path, strerror(errno));
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
    qsort(names, n, sizeof(*names), name_cmp); /* a fixed order */
    for (size_t i = 0; i < n; i++) {
        replay_file(names[i]);
        free(names[i]);
    }
    free(names);
}

/* Random inputs from a fixed seed (xorshift64*): the same ones every run. */
static void run_random(unsigned long count)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    uint8_t buf[1024];
    for (unsigned long i = 0; i < count; i++) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        size_t n = (size_t)((s * 0x2545f4914f6cdd1dull) >> 54) % sizeof(buf);
        for (size_t j = 0; j < n; j++) {
            s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
            buf[j] = (uint8_t)((s * 0x2545f4914f6cdd1dull) >> 56);
        }
        run_input(buf, n);
    }
}

/* With no arguments (as ctest runs it): the corpus directory compiled in
 * and DEFAULT_RANDOM random inputs. */
#ifndef DEFAULT_RANDOM
#define DEFAULT_RANDOM 2000
#endif

int main(int argc, char **argv)
{
    unsigned long random = 0;
    if (argc == 1) {
#ifdef TALLY_FUZZ_CORPUS
        replay_path(TALLY_FUZZ_CORPUS);
        CHECK_GT(g_files, 0);
#endif
        random = DEFAULT_RANDOM;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--random") == 0 && i + 1 < argc)
            random = strtoul(argv[++i], NULL, 10);
        else
            replay_path(argv[i]);
    }
    run_random(random);
    printf("fuzz_map: ok: %zu corpus files and %lu random inputs replayed\n",
           g_files, random);
    return 0;
}

#endif
