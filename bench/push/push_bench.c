/*
 * push_bench.c - what 'tally push' costs (docs/design.md, "Fleet totals
 * in Redis"): keys pushed per second and Redis round trips per push, for
 * stores of N keys, against a redis-server of its own on a free loopback
 * port (no persistence).
 *
 *   push-bench [--keys N[,N...]] [--reps R] [--batch B]
 *
 * For each N, a store of N keys "push/key/<7 digits>" (key i holds i + 1)
 * is pushed through the same code as 'tally push' (tools/redis_push.c),
 * the store read the same way (open, tally_store_foreach, sort). Cases,
 * each R times (the median is reported):
 *
 *   first      Redis empty, a new client: connect, SCRIPT LOAD, every key
 *   unchanged  the same client again, nothing changed: one empty call
 *   changed1   1% of the keys changed (+1 each): only those are sent
 *   changed100 every key changed (+1 each): every key sent, as a delta
 *   resync     a new client (a restarted pusher) while Redis holds the
 *              records: every key sent, none changes in Redis
 *   hincrby    the non-idempotent peer: N HINCRBY of the same keys in one
 *              pipeline, as envoy's rate limiter sends them (a retried
 *              batch would count twice), on a hash of its own
 *
 * Each line: keys, case, keys sent, keys changed in Redis, script calls,
 * round trips, request bytes, the store read (open + foreach + sort) in
 * ms, the push in ms, keys sent per second of push, and "ok" when
 * {P}:total then holds exactly the store's values (hincrby: exactly the
 * increments). Exit status 0 when every check is exact, 1 otherwise, 2
 * on bad usage, 77 without redis-server.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_push.h"
#include "tool.h"

#define PREFIX "pushbench"

static char dir[] = "/tmp/tally-push-bench-XXXXXX";
static char store_path[sizeof dir + 16];
static pid_t server;
static int port;

static void stop_redis(void)
{
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        server = 0;
    }
}

static redisContext *connect_redis(void)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

    if (c != NULL && c->err) {
        redisFree(c);
        c = NULL;
    }
    return c;
}

/* A loopback port nobody listens on now; 0 on error. */
static int pick_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), p = 0;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        p = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return p;
}

/* Starts redis-server (from PATH) and waits for PING; retries with
 * another port when one is taken meanwhile. 0 or -1. */
static int start_redis(void)
{
    int attempt, i;

    for (attempt = 0; attempt < 5; attempt++) {
        char ps[16];

        port = pick_port();
        snprintf(ps, sizeof ps, "%d", port);
        server = fork();
        if (server < 0)
            return -1;
        if (server == 0) {
            int null = open("/dev/null", O_RDWR);

            dup2(null, 1);
            dup2(null, 2);
            execlp("redis-server", "redis-server", "--port", ps, "--bind",
                   "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                   dir, "--protected-mode", "yes", (char *)NULL);
            _exit(127);
        }
        for (i = 0; i < 500; i++) {
            struct timespec nap = {0, 10000000};
            redisContext *c = connect_redis();

            if (c != NULL) {
                redisReply *r = redisCommand(c, "PING");
                int ok = r != NULL && r->type == REDIS_REPLY_STATUS;

                freeReplyObject(r);
                redisFree(c);
                if (ok)
                    return 0;
            }
            if (waitpid(server, NULL, WNOHANG) == server) {
                server = 0;
                break;
            }
            nanosleep(&nap, NULL);
        }
        stop_redis();
    }
    return -1;
}

static int command_ok(const char *cmd)
{
    redisContext *c = connect_redis();
    redisReply *r = c != NULL ? redisCommand(c, cmd) : NULL;
    int ok = r != NULL && r->type != REDIS_REPLY_ERROR;

    freeReplyObject(r);
    if (c != NULL)
        redisFree(c);
    return ok ? 0 : -1;
}

static int key_of(char *buf, size_t i)
{
    return sprintf(buf, "push/key/%07zu", i);
}

/* Adds d to every k-th key of the store (k = 1: all). */
static int store_add(size_t n, size_t every, int64_t d)
{
    struct tally_store_config cfg = {.flags = TALLY_STORE_CREATE};
    tally_store *s;
    size_t i;
    int err = tally_store_open(&s, store_path, &cfg);

    for (i = 0; i < n && err == 0; i += every) {
        char key[32];
        int len = key_of(key, i);

        err = tally_store_add_n(s, key, (size_t)len, d);
    }
    if (err == 0 || i != 0)
        tally_store_close(s);
    return err;
}

/* What push.c does before pushing: the store's keys, sorted. */
static int read_store(struct tool_keys *list, uint8_t id[16])
{
    struct tally_store_config cfg = {.flags = TALLY_STORE_READONLY};
    struct tally_store_info si;
    tally_store *s;
    int err = tally_store_open(&s, store_path, &cfg);

    if (err != 0)
        return err;
    err = tally_store_info(s, &si);
    if (err == 0)
        err = tool_keys_collect(s, NULL, 0, list);
    tally_store_close(s);
    if (err == 0)
        err = tool_keys_sort(list);
    memcpy(id, si.id, 16);
    return err;
}

/* {P}:total (or hash) against the store: every key, exactly. */
static int check_totals(const char *hash, size_t n)
{
    struct tool_keys list = {0};
    uint8_t id[16];
    redisContext *c = connect_redis();
    redisReply *r = c != NULL ? redisCommand(c, "HLEN %s", hash) : NULL;
    size_t i;
    int ok = r != NULL && r->type == REDIS_REPLY_INTEGER &&
             r->integer == (long long)n && read_store(&list, id) == 0 &&
             list.n == n;

    freeReplyObject(r);
    for (i = 0; ok && i < list.n; i++) {
        const struct tool_entry *e = &list.entries[i];
        char want[24];

        r = redisCommand(c, "HGET %s %b", hash, e->key, e->len);
        snprintf(want, sizeof want, "%" PRId64, e->value);
        ok = r != NULL && r->type == REDIS_REPLY_STRING &&
             strcmp(r->str, want) == 0;
        freeReplyObject(r);
    }
    tool_keys_free(&list);
    if (c != NULL)
        redisFree(c);
    return ok ? 0 : -1;
}

struct sample {
    struct tool_redis_stats st;
    double read_ms, push_ms;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One push of the store through *r (a new client when *r is NULL). */
static int push_now(struct tool_redis **r, size_t batch, struct sample *out)
{
    struct tool_redis_config cfg = {.host = "127.0.0.1", .port = port,
                                    .prefix = PREFIX, .batch = batch};
    struct tool_keys list = {0};
    uint8_t id[16];
    uint64_t t0, t1, t2;
    int err;

    if (*r == NULL && tool_redis_new(r, &cfg) != 0)
        return -1;
    t0 = tool_now_ns();
    err = read_store(&list, id);
    t1 = tool_now_ns();
    if (err == 0)
        err = tool_redis_push(*r, id, "host=bench", &list, &out->st);
    t2 = tool_now_ns();
    tool_keys_free(&list);
    if (err != 0) {
        fprintf(stderr, "push-bench: push: %s\n", tool_redis_errmsg(*r));
        return -1;
    }
    out->read_ms = (double)(t1 - t0) / 1e6;
    out->push_ms = (double)(t2 - t1) / 1e6;
    return 0;
}

static void report(size_t n, const char *name, struct sample *s, int reps,
                   int ok)
{
    double read[64], push[64];
    int i;

    for (i = 0; i < reps; i++) {
        read[i] = s[i].read_ms;
        push[i] = s[i].push_ms;
    }
    double pm = median(push, reps);
    printf("push keys=%zu case=%s sent=%zu changed=%zu calls=%zu "
           "round_trips=%zu bytes=%" PRIu64 " read_ms=%.2f push_ms=%.2f "
           "keys_per_s=%.0f %s\n",
           n, name, s[0].st.sent, s[0].st.changed, s[0].st.batches,
           s[0].st.round_trips, s[0].st.bytes, median(read, reps), pm,
           pm > 0 ? (double)s[0].st.sent / (pm / 1e3) : 0,
           ok ? "ok" : "WRONG");
    fflush(stdout);
}

/* Bytes of a RESP request of argc arguments of these lengths. */
static uint64_t resp_bytes(int argc, const size_t *lens)
{
    uint64_t n = 3 + (uint64_t)snprintf(NULL, 0, "%d", argc);
    int i;

    for (i = 0; i < argc; i++)
        n += 5 + (uint64_t)snprintf(NULL, 0, "%zu", lens[i]) + lens[i];
    return n;
}

/* The peer: N HINCRBY in one pipeline. */
static int hincrby(size_t n, int reps)
{
    double ms[64];
    uint64_t bytes = 0;
    int rep, ok = 1;

    command_ok("DEL {" PREFIX "}:hincrby");
    for (rep = 0; rep < reps && ok; rep++) {
        redisContext *c = connect_redis();
        uint64_t t0;
        size_t i;

        if (c == NULL)
            return -1;
        t0 = tool_now_ns();
        for (i = 0; i < n; i++) {
            char key[32];
            int len = key_of(key, i);

            redisAppendCommand(c, "HINCRBY {" PREFIX "}:hincrby %b 1", key,
                               (size_t)len);
            if (rep == 0) {
                size_t lens[4] = {7, sizeof "{" PREFIX "}:hincrby" - 1,
                                  (size_t)len, 1};

                bytes += resp_bytes(4, lens);
            }
        }
        for (i = 0; i < n && ok; i++) {
            redisReply *r = NULL;

            ok = redisGetReply(c, (void **)&r) == REDIS_OK && r != NULL &&
                 r->type == REDIS_REPLY_INTEGER && r->integer == rep + 1;
            freeReplyObject(r);
        }
        ms[rep] = (double)(tool_now_ns() - t0) / 1e6;
        redisFree(c);
    }
    if (ok) {
        /* every key holds reps: check with the store's key list */
        redisContext *c = connect_redis();
        redisReply *r = redisCommand(c, "HLEN {" PREFIX "}:hincrby");

        ok = r != NULL && r->type == REDIS_REPLY_INTEGER &&
             r->integer == (long long)n;
        freeReplyObject(r);
        redisFree(c);
    }
    double pm = median(ms, reps);
    printf("push keys=%zu case=hincrby sent=%zu changed=%zu calls=%zu "
           "round_trips=1 bytes=%" PRIu64 " read_ms=0 push_ms=%.2f "
           "keys_per_s=%.0f %s\n",
           n, n, n, n, bytes, pm, (double)n / (pm / 1e3),
           ok ? "ok" : "WRONG");
    command_ok("DEL {" PREFIX "}:hincrby");
    return ok ? 0 : -1;
}

static int bench_size(size_t n, int reps, size_t batch)
{
    struct sample s[64];
    struct tool_redis *r = NULL;
    int rep, ok, fails = 0;

    /* the store: key i holds i + 1 */
    unlink(store_path);
    {
        struct tally_store_config cfg = {.flags = TALLY_STORE_CREATE};
        tally_store *st;
        size_t i;
        int err = tally_store_open(&st, store_path, &cfg);

        for (i = 0; i < n && err == 0; i++) {
            char key[32];
            int len = key_of(key, i);

            err = tally_store_add_n(st, key, (size_t)len, (int64_t)i + 1);
        }
        if (err == 0 || i != 0)
            tally_store_close(st);
        if (err != 0)
            return -1;
    }

    /* first: Redis empty, a new client each time */
    for (rep = 0; rep < reps; rep++) {
        tool_redis_free(r);
        r = NULL;
        if (command_ok("FLUSHALL") != 0 || push_now(&r, batch, &s[rep]) != 0)
            return -1;
    }
    ok = check_totals("{" PREFIX "}:total", n) == 0;
    fails += !ok;
    report(n, "first", s, reps, ok);

    for (rep = 0; rep < reps; rep++)
        if (push_now(&r, batch, &s[rep]) != 0)
            return -1;
    ok = check_totals("{" PREFIX "}:total", n) == 0;
    fails += !ok;
    report(n, "unchanged", s, reps, ok);

    for (rep = 0; rep < reps; rep++) {
        if (store_add(n, 100, 1) != 0 || push_now(&r, batch, &s[rep]) != 0)
            return -1;
    }
    ok = check_totals("{" PREFIX "}:total", n) == 0;
    fails += !ok;
    report(n, "changed1", s, reps, ok);

    for (rep = 0; rep < reps; rep++) {
        if (store_add(n, 1, 1) != 0 || push_now(&r, batch, &s[rep]) != 0)
            return -1;
    }
    ok = check_totals("{" PREFIX "}:total", n) == 0;
    fails += !ok;
    report(n, "changed100", s, reps, ok);

    for (rep = 0; rep < reps; rep++) {
        tool_redis_free(r);
        r = NULL;
        if (push_now(&r, batch, &s[rep]) != 0)
            return -1;
    }
    ok = check_totals("{" PREFIX "}:total", n) == 0;
    fails += !ok;
    report(n, "resync", s, reps, ok);
    tool_redis_free(r);

    if (hincrby(n, reps) != 0)
        fails++;
    return fails != 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"keys", required_argument, NULL, 'k'},
        {"reps", required_argument, NULL, 'r'},
        {"batch", required_argument, NULL, 'b'},
        {NULL, 0, NULL, 0},
    };
    const char *keys = "1000,100000";
    long reps = 5, batch = TOOL_REDIS_BATCH;
    int opt, status = 0;
    char *list, *tok, *save;

    while ((opt = getopt_long(argc, argv, "k:r:b:", opts, NULL)) != -1) {
        if (opt == 'k')
            keys = optarg;
        else if (opt == 'r' && tool_parse_long(optarg, 1, 64, &reps) == 0)
            ;
        else if (opt == 'b' &&
                 tool_parse_long(optarg, 1, TOOL_REDIS_BATCH_MAX, &batch) ==
                     0)
            ;
        else {
            fprintf(stderr, "usage: push-bench [--keys N[,N...]] [--reps R "
                            "(1..64)] [--batch B]\n");
            return 2;
        }
    }
    if (mkdtemp(dir) == NULL) {
        perror("push-bench: mkdtemp");
        return 1;
    }
    snprintf(store_path, sizeof store_path, "%s/bench.tally", dir);
    if (start_redis() != 0) {
        printf("push-bench: skip: redis-server not found or did not start "
               "(apt-get install redis-server)\n");
        rmdir(dir);
        return 77;
    }
    list = strdup(keys);
    for (tok = strtok_r(list, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        long n;

        if (tool_parse_long(tok, 1, 100000000, &n) != 0) {
            fprintf(stderr, "push-bench: bad --keys '%s'\n", tok);
            status = 2;
            break;
        }
        if (bench_size((size_t)n, (int)reps, (size_t)batch) != 0) {
            fprintf(stderr, "push-bench: %ld keys: FAILED\n", n);
            status = 1;
        }
    }
    free(list);
    stop_redis();
    unlink(store_path);
    {
        char path[sizeof dir + 16];

        snprintf(path, sizeof path, "%s/dump.rdb", dir);
        unlink(path);
    }
    rmdir(dir);
    return status;
}
