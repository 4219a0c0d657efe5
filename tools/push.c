/*
 * push.c - 'tally push FILE --redis HOST[:PORT]': sends a store's counts
 * to Redis, where the hash {P}:total holds each key's sum over every
 * store pushed with the same prefix, exact whatever fails (the protocol
 * is redis_push.c's; docs/design.md, "Fleet totals in Redis").
 *
 * Each push opens the store read-only, collects and sorts its keys,
 * closes it, and hands the list to tool_redis_push. Reopening every time
 * means a store deleted and made again at FILE is noticed at the next
 * push: it has a new id, so it is a new producer (the old one's
 * contribution stays in the totals: those adds happened). The store is
 * never drained or written.
 *
 * Between pushes it waits in sigtimedwait with SIGINT and SIGTERM
 * blocked, so a signal never interrupts a push half way: it is taken
 * after, and one last push follows before the command exits. After a
 * failure the next try comes after an exponential backoff (0.1 s
 * doubling up to 30 s, with jitter so that a fleet does not reconnect in
 * step) instead of the interval.
 *
 * Built only with hiredis (tools/CMakeLists.txt); without it the command
 * says so.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_push.h"
#include "tool.h"

static void push_usage(FILE *f)
{
    fprintf(f,
            "usage: tally push FILE --redis HOST[:PORT] [--prefix P]\n"
            "                  [--interval S] [--once] [--batch N]\n"
            "                  [--timeout S] [--verbose]\n"
            "\n"
            "Sends the counts of the store FILE to Redis, where the hash\n"
            "{P}:total holds, for each key, the sum of its values in all the\n"
            "stores pushed with prefix P (one per host, say). Exact whatever\n"
            "fails: every push sends running totals and Redis adds only what\n"
            "it has not yet recorded for this store, so a retried, repeated,\n"
            "late or half-done push never counts twice, and after Redis loses\n"
            "its data the next push adds the whole value again. The store is\n"
            "only read. 'tally get --redis' and 'tally ls --redis' read the\n"
            "totals.\n"
            "\n"
            "Every S seconds it pushes the keys that changed. A failed push is\n"
            "tried again after a backoff (0.1 s doubling to 30 s). SIGINT or\n"
            "SIGTERM: one last push, then exit (status 1 if it failed).\n"
            "\n"
            "  -r, --redis HOST[:PORT]  the Redis server (port 6379 unless\n"
            "                           given; [ADDR]:PORT for IPv6)\n"
            "  -p, --prefix P           key prefix (default tally): Redis keys\n"
            "                           {P}:total, {P}:prod:ID, {P}:seq and\n"
            "                           {P}:producers, all in one Cluster slot\n"
            "  -i, --interval S         seconds between pushes (default 10)\n"
            "  -1, --once               push once and exit: status 1 if it\n"
            "                           failed\n"
            "  -b, --batch N            keys per Redis script call (default\n"
            "                           1000, at most 2000); all calls of a\n"
            "                           push share one round trip\n"
            "  -t, --timeout S          for connecting and for each reply\n"
            "                           (default 10)\n"
            "  -v, --verbose            one line per push on stdout: keys,\n"
            "                           sent, changed, round trips, bytes, ms\n"
            "  -h, --help               show this help\n");
}

#if !defined(TALLY_TOOL_REDIS)

int cmd_push(int argc, char **argv)
{
    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        push_usage(stdout);
        return TOOL_OK;
    }
    fprintf(stderr, "tally push: this tally was built without hiredis "
                    "(install libhiredis-dev and rebuild)\n");
    return TOOL_FAIL;
}

#else /* TALLY_TOOL_REDIS */

#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

enum { HOST_MAX = 256 };

struct pusher {
    const char *file;
    const char *addr; /* as given, for messages */
    struct tool_redis *redis;
    bool verbose;
    char where[HOST_MAX + PATH_MAX + 16]; /* "host=H path=P" */
    char info[HOST_MAX + PATH_MAX + 48];  /* ... created_ns=N, for
                                             {P}:producers */
    char last_error[512];                /* to say each failure once */
    unsigned failures;                   /* in a row */
};

/* Reports a failure on stderr, unless it is the one reported last. */
static void push_failed(struct pusher *p, const char *where,
                        const char *what, double retry_s)
{
    char msg[sizeof p->last_error];

    snprintf(msg, sizeof msg, "%s: %s", where, what);
    p->failures++;
    if (strcmp(msg, p->last_error) == 0)
        return;
    snprintf(p->last_error, sizeof p->last_error, "%s", msg);
    if (retry_s > 0)
        fprintf(stderr, "tally push: %s (trying again in %.1f s)\n", msg,
                retry_s);
    else
        fprintf(stderr, "tally push: %s\n", msg);
}

/* One push of the store's keys. 0 or the error (reported by the caller
 * through *where and *what). */
static int push_one(struct pusher *p, const char **where, const char **what)
{
    struct tally_store_config cfg = {.flags = TALLY_STORE_READONLY};
    struct tool_redis_stats st;
    struct tally_store_info si;
    struct tool_keys list = {0};
    tally_store *s;
    uint64_t t0;
    int err;

    *where = p->file;
    err = tally_store_open(&s, p->file, &cfg);
    if (err != 0) {
        *what = err == -ENOENT ? "no such file or directory"
                               : tally_strerror(err);
        return err;
    }
    err = tally_store_info(s, &si);
    if (err == 0)
        err = tool_keys_collect(s, NULL, 0, &list);
    tally_store_close(s);
    if (err == 0)
        err = tool_keys_sort(&list);
    if (err != 0) {
        tool_keys_free(&list);
        *what = tally_strerror(err);
        return err;
    }
    snprintf(p->info, sizeof p->info, "%s created_ns=%" PRIu64, p->where,
             si.created_ns);
    t0 = tool_now_ns();
    err = tool_redis_push(p->redis, si.id, p->info, &list, &st);
    tool_keys_free(&list);
    if (err != 0) {
        *where = p->addr;
        *what = tool_redis_errmsg(p->redis);
        return err;
    }
    if (p->failures != 0) {
        fprintf(stderr, "tally push: %s: pushed again, after %u failed "
                        "tries\n", p->file, p->failures);
        p->failures = 0;
        p->last_error[0] = '\0';
    }
    if (p->verbose) {
        printf("tally push: %s: keys=%zu sent=%zu changed=%zu full=%u "
               "batches=%zu round_trips=%zu bytes=%" PRIu64 " reloaded=%d "
               "connected=%d ms=%.3f\n",
               p->file, st.keys, st.sent, st.changed, st.full, st.batches,
               st.round_trips, st.bytes, (int)st.reloaded, (int)st.connected,
               (double)(tool_now_ns() - t0) / 1e6);
        fflush(stdout);
    }
    return 0;
}

int cmd_push(int argc, char **argv)
{
    static const struct option opts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"prefix", required_argument, NULL, 'p'},
        {"interval", required_argument, NULL, 'i'},
        {"once", no_argument, NULL, '1'},
        {"batch", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct tool_redis_config rc = {.prefix = "tally"};
    struct pusher p = {0};
    char host[HOST_MAX], me[HOST_MAX], *abs;
    const char *where, *what;
    double interval = 10, timeout = 10, backoff = 0;
    bool once = false, stopping = false;
    long batch = TOOL_REDIS_BATCH;
    sigset_t stop;
    unsigned seed;
    int opt, err, status;

    while ((opt = getopt_long(argc, argv, ":r:p:i:1b:t:vh", opts, NULL)) !=
           -1) {
        switch (opt) {
        case 'r':
            if (tool_redis_parse_addr(optarg, host, sizeof host,
                                      &rc.port) != 0)
                return tool_usage_error("push", "bad --redis '%s' (want "
                                        "HOST[:PORT])", optarg);
            rc.host = host;
            p.addr = optarg;
            break;
        case 'p':
            if (!tool_redis_prefix_ok(optarg))
                return tool_usage_error("push", "bad --prefix '%s' (1 to %d "
                                        "bytes, no { or })", optarg,
                                        TOOL_REDIS_PREFIX_MAX);
            rc.prefix = optarg;
            break;
        case 'i':
            if (tool_parse_seconds(optarg, 0.01, 86400, &interval) != 0)
                return tool_usage_error("push", "bad --interval '%s' (want "
                                        "seconds, 0.01 to 86400)", optarg);
            break;
        case '1':
            once = true;
            break;
        case 'b':
            if (tool_parse_long(optarg, 1, TOOL_REDIS_BATCH_MAX, &batch) !=
                0)
                return tool_usage_error("push", "bad --batch '%s' (want 1 "
                                        "to %d)", optarg,
                                        TOOL_REDIS_BATCH_MAX);
            break;
        case 't':
            if (tool_parse_seconds(optarg, 0.001, 3600, &timeout) != 0)
                return tool_usage_error("push", "bad --timeout '%s' (want "
                                        "seconds, 0.001 to 3600)", optarg);
            break;
        case 'v':
            p.verbose = true;
            break;
        case 'h':
            push_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("push", opt, argv);
        }
    }
    if (optind == argc)
        return tool_usage_error("push", "missing FILE");
    if (argc - optind > 1)
        return tool_usage_error("push", "unexpected argument '%s'",
                                argv[optind + 1]);
    if (rc.host == NULL)
        return tool_usage_error("push", "missing --redis HOST[:PORT]");
    p.file = argv[optind];
    rc.timeout_s = timeout;
    rc.batch = (size_t)batch;
    err = tool_redis_new(&p.redis, &rc);
    if (err != 0)
        return tool_fail("push", p.addr, err);

    if (gethostname(me, sizeof me) != 0)
        snprintf(me, sizeof me, "unknown");
    me[sizeof me - 1] = '\0';
    abs = realpath(p.file, NULL);
    snprintf(p.where, sizeof p.where, "host=%s path=%s", me,
             abs != NULL ? abs : p.file);
    free(abs);

    if (once) {
        err = push_one(&p, &where, &what);
        if (err != 0)
            push_failed(&p, where, what, 0);
        tool_redis_free(p.redis);
        return err != 0 ? TOOL_FAIL : TOOL_OK;
    }

    /* A wrong FILE is an error now, not a retry forever. */
    err = push_one(&p, &where, &what);
    if (err != 0 && where == p.file) {
        push_failed(&p, where, what, 0);
        tool_redis_free(p.redis);
        return TOOL_FAIL;
    }
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    seed = (unsigned)getpid() ^ (unsigned)tool_now_ns();
    for (;;) {
        double wait = interval;
        struct timespec ts;

        if (stopping) {
            if (err != 0)
                push_failed(&p, where, what, 0);
            break;
        }
        if (err == 0) {
            backoff = 0;
        } else {
            backoff = backoff == 0 ? 0.1 : backoff * 2 > 30 ? 30 : backoff * 2;
            /* jitter: between half and all of it */
            wait = backoff * (0.5 + 0.5 * (double)rand_r(&seed) / RAND_MAX);
            push_failed(&p, where, what, wait);
        }
        ts.tv_sec = (time_t)wait;
        ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
        if (sigtimedwait(&stop, NULL, &ts) > 0)
            stopping = true; /* one last push */
        err = push_one(&p, &where, &what);
    }
    status = err != 0 ? TOOL_FAIL : TOOL_OK;
    tool_redis_free(p.redis);
    return status;
}

#endif /* TALLY_TOOL_REDIS */
