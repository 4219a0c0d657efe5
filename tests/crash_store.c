/*
 * crash_store.c - tally_store after processes die at any instant.
 *
 * (a) Crash points. For every step of creating a store, inserting a key,
 * expanding a trie node, growing the file, striping a key, installing a
 * stripe slab and draining, a child process counts (and reports its
 * acknowledged adds through a pipe), then arms that step's crash point
 * (src/testhook.h) and runs the operation, which raises SIGKILL at that
 * step. The parent checks that the child died there (SIGKILL, not a
 * normal exit: the step was reached), then that
 *
 *   - tally_store_check finds no problem (leaked space and a lagging key
 *     count are notes, not problems; the test also checks which of them
 *     each step leaves);
 *   - every acknowledged add is in the store, exactly;
 *   - the key being inserted is absent or whole (value 0: the crash came
 *     before its add), never torn, never twice;
 *   - the store keeps working: the key can be inserted, keys counted,
 *     striped, drained, and the check stays clean.
 *
 * (b) Random kills. Writer processes add 1 to random keys (a hot key by
 * handle, shared keys by name, keys of their own that they create) and
 * report each add through a pipe after it returns. The parent SIGKILLs a
 * random writer at random moments and starts another, and now and then
 * checks the live store. At the end, for every key,
 *
 *     acknowledged <= stored <= acknowledged + kills
 *
 * (summed over keys too: each killed writer had at most one add in
 * flight), every acknowledged own key is present with its count, and the
 * check is clean. TALLY_STRESS_SCALE multiplies the kills.
 */
#include "tally.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "store.h"
#include "testhook.h"

static char dir[256];
static char path[300];
static const struct tally_store_config create_cfg = {TALLY_STORE_CREATE, 0,
                                                     0};

enum { ACKED = 8 };

/* The key the crashing insert creates (test_expand_points picks one whose
 * path meets another key's). */
static char victim[32] = "victim";

/* ------------------------------------------------------------------ */
/* The check, with its notes sorted out                                */
/* ------------------------------------------------------------------ */

struct report {
    int problems;
    int leaked;     /* a "leaked" note */
    int keys_lag;   /* a "header counts" note */
};

static void on_line(void *ctx, const char *line)
{
    struct report *r = ctx;
    if (strncmp(line, "note: ", 6) != 0) {
        fprintf(stderr, "  check: %s\n", line);
        r->problems++;
    } else if (strstr(line, "leaked") != NULL) {
        r->leaked = 1;
    } else if (strstr(line, "header counts") != NULL) {
        r->keys_lag = 1;
    }
}

static struct report check_store(const char *p)
{
    struct report r = {0};
    CHECK_EQ(tally_store_check(p, on_line, &r), 0);
    CHECK_EQ(r.problems, 0);
    return r;
}

/* ------------------------------------------------------------------ */
/* (a) crash points                                                    */
/* ------------------------------------------------------------------ */

typedef void (*op_fn)(tally_store *s);

static void op_insert(tally_store *s)
{
    tally_store_add(s, victim, 5);
}

static void op_grow(tally_store *s)
{
    /* Each add is acknowledged (one byte on stdout's pipe, fd 3) before
     * the next; the crash comes at a growth, inside some insert. */
    char name[32];
    for (int i = 0;; i++) {
        snprintf(name, sizeof name, "grow-%d", i);
        CHECK_EQ(tally_store_add(s, name, 1), 0);
        int32_t n = i;
        CHECK_EQ(write(3, &n, sizeof n), (ssize_t)sizeof n);
    }
}

/* As op_grow, but dies right after an allocation that needed the file
 * to grow has raised 'used': the file must already be long enough. */
static void op_grow_bump(tally_store *s)
{
    char name[32];
    for (int i = 0;; i++) {
        struct tally_store_info info;
        CHECK_EQ(tally_store_info(s, &info), 0);
        /* Less room than any chunk needs: the next insert grows. */
        if (info.file_bytes - info.used_bytes < 48)
            tally__crash_arm("alloc.after_bump", 1);
        snprintf(name, sizeof name, "grow-%d", i);
        CHECK_EQ(tally_store_add(s, name, 1), 0);
        int32_t n = i;
        CHECK_EQ(write(3, &n, sizeof n), (ssize_t)sizeof n);
    }
}

static void op_stripe(tally_store *s)
{
    tally__store_stripe(s, "hot", 3);
}

static int drain_none(void *ctx, const void *key, size_t len, int64_t v)
{
    (void)ctx;
    (void)key;
    (void)len;
    (void)v;
    return 0;
}

static void op_drain(tally_store *s)
{
    tally_store_drain(s, drain_none, NULL);
}

static void op_create(tally_store *s)
{
    (void)s;
    char p[320];
    snprintf(p, sizeof p, "%s/fresh", dir);
    tally_store *f;
    tally_store_open(&f, p, &create_cfg);
}

/* Runs op in a child that first makes ACKED acknowledged adds, then arms
 * point (its nth pass). The child must die of SIGKILL. Returns the
 * numbers the child wrote to fd 3 (for op_grow), in *acks. */
static void crash_child(const char *point, unsigned long nth, op_fn op,
                        int *acks)
{
    int ack[2];
    CHECK_EQ(pipe(ack), 0);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        close(ack[0]);
        if (ack[1] != 3) {
            CHECK_EQ(dup2(ack[1], 3), 3);
            close(ack[1]);
        }
        tally_store *s;
        CHECK_EQ(tally_store_open(&s, path, NULL), 0);
        char name[32];
        for (int i = 0; i < ACKED; i++) {
            snprintf(name, sizeof name, "acked-%d", i);
            CHECK_EQ(tally_store_add(s, name, i + 1), 0);
        }
        int32_t done = -1;
        CHECK_EQ(write(3, &done, sizeof done), (ssize_t)sizeof done);
        tally__crash_arm(point, nth); /* NULL: op arms it */
        op(s);
        _exit(0); /* the point was not reached */
    }
    close(ack[1]);
    int32_t n, got = 0;
    *acks = 0;
    while (read(ack[0], &n, sizeof n) == (ssize_t)sizeof n) {
        if (n == -1)
            got = 1;
        else
            *acks = n + 1;
    }
    close(ack[0]);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        fprintf(stderr, "crash point %s (pass %lu): child status 0x%x, not "
                        "killed there\n", point ? point : "(armed by op)",
                nth, status);
        CHECK(0);
    }
    CHECK(got);
}

/* The acknowledged adds are all there, exactly; then the store works. */
static void after_crash(tally_store *s, int64_t extra_for_acked)
{
    char name[32];
    for (int i = 0; i < ACKED; i++) {
        snprintf(name, sizeof name, "acked-%d", i);
        CHECK_EQ(tally_store_value(s, name), i + 1 + extra_for_acked);
    }
    /* Keeps working: inserts (the victim too), adds, stripes, drains. */
    size_t before = tally_store_size(s);
    int victim_was = tally_store_get(s, victim, &(int64_t){0}) == 0;
    CHECK_EQ(tally_store_add(s, victim, 5), 0);
    CHECK_EQ(tally_store_add(s, "after", 1), 0);
    CHECK_EQ(tally_store_value(s, "after"), 1);
    CHECK_EQ(tally_store_size(s), before + 1 + !victim_was);
    CHECK_EQ(tally__store_stripe(s, "after", 5), 0);
    CHECK_EQ(tally_store_add(s, "after", 1), 0);
    CHECK_EQ(tally_store_value(s, "after"), 2);
    CHECK_EQ(tally_store_drain(s, drain_none, NULL), 0);
    CHECK_EQ(tally_store_value(s, "after"), 0);
}

static tally_store *fresh(void)
{
    snprintf(path, sizeof path, "%s/store", dir);
    unlink(path);
    tally_store *s;
    CHECK_EQ(tally_store_open(&s, path, &create_cfg), 0);
    return s;
}

struct insert_case {
    const char *point;
    int present;  /* the victim is there afterwards (value 0) */
    int leaked;   /* check notes leaked space */
    int lag;      /* check notes the key count lagging */
};

static void test_insert_points(void)
{
    static const struct insert_case cases[] = {
        {"alloc.before_bump", 0, 0, 0},
        {"alloc.after_bump", 0, 1, 0},
        {"insert.after_alloc", 0, 1, 0},
        {"insert.after_fill", 0, 1, 0},
        {"insert.after_publish", 1, 0, 1},
        {"insert.after_count", 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct insert_case *c = &cases[i];
        tally_store *s = fresh();
        /* The point is armed after the acknowledged adds: its first
         * pass is in the victim's insert. */
        int acks;
        crash_child(c->point, 1, op_insert, &acks);
        struct report r = check_store(path);
        CHECK_EQ(r.leaked, c->leaked);
        CHECK_EQ(r.keys_lag, c->lag);
        int64_t v = -1;
        int got = tally_store_get(s, "victim", &v);
        if (c->present) {
            CHECK_EQ(got, 0);
            CHECK_EQ(v, 0); /* whole, and the add never happened */
        } else {
            CHECK_EQ(got, -ENOENT);
        }
        CHECK_EQ(tally_store_size(s), ACKED + (size_t)(c->present && !c->lag));
        after_crash(s, 0);
        tally_store_close(s);
        check_store(path);
        printf("crash point %-22s ok: victim %s, leaked %s, key count %s\n",
               c->point, c->present ? "present (0)" : "absent",
               c->leaked ? "yes" : "no", c->lag ? "lags" : "exact");
    }
}

static void test_expand_points(void)
{
    static const char *points[] = {"expand.after_fill",
                                   "expand.after_publish"};
    static const unsigned long nths[] = {1, 4, 14};
    for (size_t p = 0; p < 2; p++)
        for (size_t n = 0; n < 3; n++) {
            tally_store *s = fresh();
            /* A victim in the same root slot as "other" and in none of
             * the acknowledged keys' slots; with every hash bit below
             * the root's masked off, its insert expands level after
             * level under "other" (13 trie levels), down to a collision
             * node (the 14th expansion). */
            char other[32], name[32];
            uint64_t top;
            for (int o = 0;; o++) {
                snprintf(other, sizeof other, "other-%d", o);
                top = tally__store_hash(s, other, strlen(other)) >> 52;
                int shared = 0;
                for (int i = 0; i < ACKED; i++) {
                    snprintf(name, sizeof name, "acked-%d", i);
                    shared |= tally__store_hash(s, name, strlen(name)) >> 52 ==
                              top;
                }
                if (!shared)
                    break;
            }
            for (int i = 0;; i++) {
                snprintf(victim, sizeof victim, "v-%d", i);
                if (tally__store_hash(s, victim, strlen(victim)) >> 52 == top)
                    break;
            }
            tally__store_hash_mask(0xfff0000000000000ull);
            CHECK_EQ(tally_store_add(s, other, 77), 0);
            int acks;
            crash_child(points[p], nths[n], op_insert, &acks);
            struct report r = check_store(path);
            /* Expansions come before the victim's entry is allocated:
             * only an unpublished node is left over. */
            CHECK_EQ(r.leaked, p == 0);
            CHECK_EQ(tally_store_get(s, victim, &(int64_t){0}), -ENOENT);
            CHECK_EQ(tally_store_value(s, other), 77);
            /* The insert completes now, below what the dead one left. */
            CHECK_EQ(tally_store_add(s, victim, 5), 0);
            CHECK_EQ(tally_store_value(s, victim), 5);
            CHECK_EQ(tally_store_value(s, other), 77);
            CHECK_EQ(tally_store_size(s), ACKED + 2);
            after_crash(s, 0);
            tally_store_close(s);
            check_store(path);
            tally__store_hash_mask(~(uint64_t)0);
            printf("crash point %-22s ok (expansion %lu)\n", points[p],
                   nths[n]);
        }
    strcpy(victim, "victim");
}

static void test_grow_point(void)
{
    for (int bump = 0; bump < 2; bump++) {
        tally_store *s = fresh();
        int acks;
        if (bump)
            crash_child(NULL, 0, op_grow_bump, &acks);
        else
            crash_child("grow.after_extend", 1, op_grow, &acks);
        struct report r = check_store(path);
        CHECK_EQ(r.leaked, bump); /* the bumped chunk, never linked */
        CHECK_GT(acks, 100);
        char name[32];
        for (int i = 0; i < acks; i++) {
            snprintf(name, sizeof name, "grow-%d", i);
            CHECK_EQ(tally_store_value(s, name), 1);
        }
        /* The one in flight died before it was linked: absent. */
        snprintf(name, sizeof name, "grow-%d", acks);
        CHECK_EQ(tally_store_get(s, name, &(int64_t){0}), -ENOENT);
        CHECK_EQ(tally_store_size(s), ACKED + (size_t)acks);
        struct tally_store_info info;
        CHECK_EQ(tally_store_info(s, &info), 0);
        CHECK_GT(info.file_bytes, TALLY__STORE_MIN_BYTES); /* it grew */
        CHECK_GE(info.file_bytes, info.used_bytes);
        after_crash(s, 0);
        tally_store_close(s);
        check_store(path);
        printf("crash point %-22s ok: %d acknowledged inserts before it\n",
               bump ? "alloc.after_bump, growing" : "grow.after_extend", acks);
    }
}

static void test_stripe_points(void)
{
    static const struct {
        const char *point;
        int warm;    /* a slab exists before (another key striped) */
        int striped; /* hot is striped afterwards */
        int leaked;
    } cases[] = {
        {"slab.after_fill", 0, 0, 1},
        {"slab.after_publish", 0, 0, 0}, /* a claimed, unused slot */
        {"stripe.after_claim", 0, 0, 0},
        {"stripe.after_claim", 1, 0, 0},
        {"stripe.after_publish", 1, 1, 0},
        {"stripe.after_publish", 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tally_store *s = fresh();
        CHECK_EQ(tally_store_add(s, "hot", 100), 0);
        if (cases[i].warm) {
            CHECK_EQ(tally_store_add(s, "warm", 1), 0);
            CHECK_EQ(tally__store_stripe(s, "warm", 4), 0);
        }
        int acks;
        crash_child(cases[i].point, 1, op_stripe, &acks);
        struct report r = check_store(path);
        CHECK_EQ(r.leaked, cases[i].leaked);
        CHECK_EQ(tally__store_striped(s, "hot", 3), cases[i].striped);
        CHECK_EQ(tally_store_value(s, "hot"), 100);
        /* Counting goes on, striped or not, and striping works. */
        tally_store_handle *h;
        CHECK_EQ(tally_store_handle_new(s, "hot", &h), 0);
        for (int k = 0; k < 10; k++) {
            tally_store_handle_inc(h);
            CHECK_EQ(tally_store_inc(s, "hot"), 0);
        }
        CHECK_EQ(tally__store_stripe(s, "hot", 3), 0);
        tally_store_handle_inc(h);
        CHECK_EQ(tally_store_inc(s, "hot"), 0);
        tally_store_handle_release(h);
        CHECK_EQ(tally_store_value(s, "hot"), 122);
        after_crash(s, 0);
        tally_store_close(s);
        check_store(path);
        printf("crash point %-22s ok (%s slab): hot %s\n", cases[i].point,
               cases[i].warm ? "existing" : "new",
               cases[i].striped ? "striped" : "inline");
    }
}

static void test_drain_points(void)
{
    for (int after = 0; after < 2; after++) {
        tally_store *s = fresh();
        int acks;
        crash_child(after ? "drain.after_cas" : "drain.before_cas", 1,
                    op_drain, &acks);
        check_store(path);
        /* Before the CAS: nothing was taken. After it: exactly one key's
         * amount was taken, by a drainer that died holding it. */
        int taken = 0;
        char name[32];
        for (int i = 0; i < ACKED; i++) {
            snprintf(name, sizeof name, "acked-%d", i);
            int64_t v = tally_store_value(s, name);
            if (v == 0)
                taken++;
            else
                CHECK_EQ(v, i + 1);
        }
        CHECK_EQ(taken, after);
        /* Put back what the dead drainer took, for after_crash. */
        for (int i = 0; i < ACKED; i++) {
            snprintf(name, sizeof name, "acked-%d", i);
            if (tally_store_value(s, name) == 0)
                CHECK_EQ(tally_store_add(s, name, i + 1), 0);
        }
        after_crash(s, 0);
        tally_store_close(s);
        check_store(path);
        printf("crash point %-22s ok: %d key(s) taken by the dead drainer\n",
               after ? "drain.after_cas" : "drain.before_cas", taken);
    }
}

static int count_tmp(void)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp-") != NULL) {
            char p[600];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p); /* the stray name, cleaned up by the test */
            n++;
        }
    closedir(d);
    return n;
}

static void test_create_points(void)
{
    static const struct {
        const char *point;
        int named;
        int exists; /* the store exists afterwards */
    } cases[] = {
        {"create.before_link", 0, 0},
        {"create.before_link", 1, 0},
        {"create.after_link", 1, 1},
    };
    char p[320];
    snprintf(p, sizeof p, "%s/fresh", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tally_store *s = fresh();
        unlink(p);
        tally__store_test_named_create(cases[i].named);
        int acks;
        crash_child(cases[i].point, 1, op_create, &acks);
        tally__store_test_named_create(0);
        /* A stray temporary name: only the fallback's (documented). */
        CHECK_EQ(count_tmp(), cases[i].named);
        tally_store *f;
        if (cases[i].exists) {
            CHECK_EQ(tally_store_open(&f, p, NULL), 0);
            check_store(p);
        } else {
            CHECK_EQ(tally_store_open(&f, p, NULL), -ENOENT);
            CHECK_EQ(tally_store_open(&f, p, &create_cfg), 0);
        }
        CHECK_EQ(tally_store_size(f), 0);
        CHECK_EQ(tally_store_add(f, "k", 1), 0);
        tally_store_close(f);
        check_store(p);
        after_crash(s, 0);
        tally_store_close(s);
        printf("crash point %-22s ok (%s): store %s\n", cases[i].point,
               cases[i].named ? "named temporary" : "O_TMPFILE",
               cases[i].exists ? "whole" : "absent");
    }
}

/* ------------------------------------------------------------------ */
/* (b) random kills                                                    */
/* ------------------------------------------------------------------ */

enum { SHARED = 64, OWN = 0xffff, MAX_WRITERS = 4 };

struct record {
    uint32_t key; /* 0 hot, 1..SHARED shared, OWN an own key */
    uint32_t n;   /* own key's number */
};

static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return rng_state >> 33;
}

static void writer(int id, int out)
{
    tally_store *s;
    CHECK_EQ(tally_store_open(&s, path, NULL), 0);
    tally_store_handle *hot;
    CHECK_EQ(tally_store_handle_new(s, "hot", &hot), 0);
    uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ull + 1;
    char name[48];
    for (uint32_t n = 0;; n++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(x >> 33);
        struct record rec;
        if (r % 16 == 0) {
            snprintf(name, sizeof name, "own-%d-%u", id, n);
            CHECK_EQ(tally_store_add(s, name, 1), 0);
            rec = (struct record){OWN, n};
        } else if (r % 3 == 0) {
            tally_store_handle_inc(hot);
            rec = (struct record){0, 0};
        } else {
            uint32_t k = 1 + (r >> 8) % SHARED;
            snprintf(name, sizeof name, "shared-%u", k);
            CHECK_EQ(tally_store_inc(s, name), 0);
            rec = (struct record){k, 0};
        }
        CHECK_EQ(write(out, &rec, sizeof rec), (ssize_t)sizeof rec);
    }
}

struct slot {
    pid_t pid;
    int fd;
    int id;
};

/* Which own keys each writer acknowledged: a growing bitmap per id. */
struct own_set {
    unsigned char *bits;
    size_t cap; /* bytes */
};

struct tallies {
    uint64_t acked[SHARED + 1];
    struct own_set *own; /* [id] */
};

static void own_mark(struct own_set *o, uint32_t n)
{
    if (n / 8 >= o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (n / 8 >= cap)
            cap *= 2;
        o->bits = realloc(o->bits, cap);
        CHECK(o->bits != NULL);
        memset(o->bits + o->cap, 0, cap - o->cap);
        o->cap = cap;
    }
    o->bits[n / 8] |= (unsigned char)(1u << (n % 8));
}

static int own_has(const struct own_set *o, uint32_t n)
{
    return n / 8 < o->cap && (o->bits[n / 8] >> (n % 8) & 1);
}

static void take_records(struct tallies *t, struct slot *w, int block)
{
    struct record buf[512];
    for (;;) {
        if (!block) {
            struct pollfd pf = {w->fd, POLLIN, 0};
            if (poll(&pf, 1, 0) <= 0)
                return;
        }
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n <= 0)
            return;
        CHECK_EQ(n % (ssize_t)sizeof *buf, 0); /* records are atomic */
        for (ssize_t i = 0; i < n / (ssize_t)sizeof *buf; i++) {
            if (buf[i].key == OWN) {
                own_mark(&t->own[w->id], buf[i].n);
            } else {
                CHECK_LE(buf[i].key, SHARED);
                t->acked[buf[i].key]++;
            }
        }
    }
}

static void start_writer(struct slot *w, int id)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        close(p[0]);
        writer(id, p[1]);
    }
    close(p[1]);
    *w = (struct slot){pid, p[0], id};
}

static void kill_writer(struct tallies *t, struct slot *w)
{
    CHECK_EQ(kill(w->pid, SIGKILL), 0);
    int status;
    CHECK_EQ(waitpid(w->pid, &status, 0), w->pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    take_records(t, w, 1); /* to EOF */
    close(w->fd);
}

struct own_count {
    size_t present;
    const struct own_set *own;
    int max_id;
};

static int own_visit(void *ctx, const void *key, size_t len, int64_t v)
{
    struct own_count *oc = ctx;
    char name[64];
    if (len < 4 || len >= sizeof name || memcmp(key, "own-", 4) != 0)
        return 0;
    memcpy(name, key, len);
    name[len] = '\0';
    int id;
    unsigned n;
    CHECK_EQ(sscanf(name, "own-%d-%u", &id, &n), 2);
    CHECK_GE(id, 0);
    CHECK_LT(id, oc->max_id);
    oc->present++;
    if (own_has(&oc->own[id], n))
        CHECK_EQ(v, 1);
    else
        CHECK(v == 0 || v == 1); /* in flight when its writer died */
    return 0;
}

static void test_random_kills(void)
{
    int kills_wanted = 24 * (int)check_scale();
    rng_state = (uint64_t)time(NULL);
    const char *seed = getenv("TALLY_STRESS_SEED");
    if (seed != NULL)
        rng_state = strtoull(seed, NULL, 10);
    printf("random kills: TALLY_STRESS_SEED=%llu\n",
           (unsigned long long)rng_state);

    tally_store *s = fresh();
    struct tallies t = {0};
    int max_id = kills_wanted + MAX_WRITERS + 1;
    t.own = calloc((size_t)max_id, sizeof *t.own);
    CHECK(t.own != NULL);
    struct slot w[MAX_WRITERS];
    int next_id = 0, kills = 0, live_checks = 0;
    for (int i = 0; i < MAX_WRITERS; i++)
        start_writer(&w[i], next_id++);
    while (kills < kills_wanted) {
        /* Let them run a random while (0..4 ms), taking records. */
        uint64_t until = check_now_ns() + rng() % 4000000;
        while (check_now_ns() < until) {
            for (int i = 0; i < MAX_WRITERS; i++)
                take_records(&t, &w[i], 0);
            usleep(200);
        }
        int victim = (int)(rng() % MAX_WRITERS);
        kill_writer(&t, &w[victim]);
        kills++;
        start_writer(&w[victim], next_id++);
        if (kills == kills_wanted / 2)
            CHECK_EQ(tally__store_stripe(s, "hot", 3), 0);
        if (kills % 8 == 0) {
            /* The live store, while writers run: no problems. */
            check_store(path);
            live_checks++;
        }
    }
    for (int i = 0; i < MAX_WRITERS; i++) {
        kill_writer(&t, &w[i]);
        kills++;
    }

    check_store(path);
    uint64_t over = 0, acked_total = 0;
    char name[32];
    for (int k = 0; k <= SHARED; k++) {
        if (k == 0)
            snprintf(name, sizeof name, "hot");
        else
            snprintf(name, sizeof name, "shared-%d", k);
        int64_t v = 0;
        int r = tally_store_get(s, name, &v);
        if (r == -ENOENT)
            v = 0;
        else
            CHECK_EQ(r, 0);
        CHECK_GE((uint64_t)v, t.acked[k]);
        over += (uint64_t)v - t.acked[k];
        acked_total += t.acked[k];
    }
    CHECK_LE(over, (uint64_t)kills);
    struct own_count oc = {0, t.own, max_id};
    CHECK_EQ(tally_store_foreach(s, own_visit, &oc), 0);
    size_t own_acked = 0;
    for (int id = 0; id < max_id; id++) {
        for (size_t i = 0; i < t.own[id].cap; i++)
            own_acked += (size_t)__builtin_popcount(t.own[id].bits[i]);
        free(t.own[id].bits);
    }
    CHECK_GE(oc.present, own_acked);
    CHECK_LE(oc.present, own_acked + (size_t)kills);
    struct report r = check_store(path);
    tally_store_close(s);
    free(t.own);
    printf("random kills: %d writers killed, %llu adds acknowledged, %llu "
           "more stored (in flight when killed), %zu own keys created "
           "(%zu acknowledged), %d live checks clean%s\n",
           kills, (unsigned long long)acked_total, (unsigned long long)over,
           oc.present, own_acked, live_checks,
           r.leaked ? ", some space leaked" : "");
}

/* ------------------------------------------------------------------ */

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    char p[600];
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/crash_store.XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    test_insert_points();
    test_expand_points();
    test_grow_point();
    test_stripe_points();
    test_drain_points();
    test_create_points();
    test_random_kills();

    remove_dir();
    printf("crash_store: ok\n");
    return 0;
}
