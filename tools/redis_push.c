/*
 * redis_push.c - fleet totals in Redis, on hiredis: the push protocol of
 * 'tally push' and the reads of 'tally get/ls --redis' (redis_push.h;
 * docs/design.md, "Fleet totals in Redis", has the why and the failure
 * cases).
 *
 * HOW IT WORKS
 *
 * A producer's push sends (key, running total) pairs; Redis keeps, per
 * producer, the value it last added in for each key ({P}:prod:<id>), so
 * the script adds new - recorded to {P}:total and records new. Sending
 * the same pairs twice adds nothing the second time: a retry after a lost
 * reply, a batch applied just before a crash and sent again by the next
 * pusher, change nothing. Each batch (up to 'batch' keys) is one EVALSHA,
 * atomic in Redis; all batches of a push are pipelined: written at once,
 * then every reply read, one round trip.
 *
 * Sending every key at every push would cost Redis a script call per key
 * of every store every interval, so after a push that Redis acknowledged
 * in full, the client remembers what it sent (the sorted list, 'acked')
 * and next time sends only keys whose value differs. That is only right
 * while Redis's records still equal 'acked': each push carries a sequence
 * "N:NONCE" (N above every N before it, NONCE random per process), the
 * script keeps the producer's latest in {P}:seq, and a delta push names
 * the sequence it builds on ('base'). The script refuses:
 *
 *   - any batch whose N is below the recorded one (status 1, "stale"): a
 *     request that arrives late, after a newer push, never rolls a
 *     record back;
 *   - a delta batch when the recorded sequence is neither its base nor
 *     its own (status 2, "resync"): Redis lost the records (a restart
 *     without persistence, FLUSHALL, a failover to a replica that missed
 *     writes) or another process pushed the same store.
 *
 * On a refusal the client pushes every key again at once, with N above
 * the recorded one. When nothing changed, a push is one empty delta call
 * with seq = base, which writes nothing and only checks the record.
 *
 * The script reads everything it needs (HGET, HMGET: which also type-
 * check every key it writes) and computes every new value before its
 * first write, so an error (a foreign value in one of our hashes, a
 * WRONGTYPE, OOM, which Redis checks at a script's first write) leaves
 * nothing half done. Values are int64 and wrap as the store's do: sums
 * of values up to 15 characters are exact in Lua's doubles; longer ones
 * go through exact 64-bit two's complement arithmetic on four 16-bit
 * limbs.
 *
 * LIMITATIONS
 *
 * One 'tally push' per store: two stay exact but refuse each other's
 * deltas and keep pushing every key. A batch must not exceed Lua's
 * unpack limit (TOOL_REDIS_BATCH_MAX). Redis Cluster: every key of a
 * prefix is in one hash slot, but MOVED redirects are not followed;
 * --redis must name the node holding the slot.
 *
 * SIGPIPE is blocked around every hiredis call (a write to a connection
 * Redis closed then fails with EPIPE instead of killing the command) and
 * any SIGPIPE raised meanwhile is consumed.
 */
#include "redis_push.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- addresses and prefixes (with or without hiredis) ---- */

int tool_redis_parse_addr(const char *arg, char *host, size_t hostlen,
                          int *port)
{
    const char *h = arg, *colon, *end;
    size_t n;
    long p = TOOL_REDIS_DEFAULT_PORT;

    if (arg == NULL || *arg == '\0')
        return -1;
    if (*arg == '[') {
        end = strchr(arg, ']');
        if (end == NULL)
            return -1;
        h = arg + 1;
        n = (size_t)(end - h);
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] != '\0' && colon == NULL)
            return -1;
    } else {
        colon = strrchr(arg, ':');
        if (colon != NULL && strchr(arg, ':') != colon)
            return -1; /* an IPv6 address needs brackets */
        n = colon != NULL ? (size_t)(colon - arg) : strlen(arg);
    }
    if (n == 0 || n >= hostlen)
        return -1;
    if (colon != NULL && tool_parse_long(colon + 1, 1, 65535, &p) != 0)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

bool tool_redis_prefix_ok(const char *prefix)
{
    size_t n = prefix != NULL ? strlen(prefix) : 0;

    return n >= 1 && n <= TOOL_REDIS_PREFIX_MAX &&
           strpbrk(prefix, "{}") == NULL;
}

int tool_redis_open_arg(const char *cmd, const char *addr, const char *prefix,
                        struct tool_redis **out)
{
    struct tool_redis_config cfg = {.prefix = prefix != NULL ? prefix
                                                             : "tally"};
    char host[256];
    int err;

    if (tool_redis_parse_addr(addr, host, sizeof host, &cfg.port) != 0)
        return tool_usage_error(cmd, "bad --redis '%s' (want HOST[:PORT])",
                                addr);
    if (!tool_redis_prefix_ok(cfg.prefix))
        return tool_usage_error(cmd, "bad --prefix '%s' (1 to %d bytes, no "
                                "{ or })", cfg.prefix, TOOL_REDIS_PREFIX_MAX);
    cfg.host = host;
    err = tool_redis_new(out, &cfg);
    if (err == -ENOTSUP) {
        fprintf(stderr, "tally %s: this tally was built without hiredis "
                        "(install libhiredis-dev and rebuild)\n", cmd);
        return TOOL_FAIL;
    }
    if (err != 0)
        return tool_fail(cmd, addr, err);
    return TOOL_OK;
}

#if defined(TALLY_TOOL_REDIS)

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/*
 * The script. KEYS: {P}:total, {P}:prod:<id>, {P}:seq, {P}:producers.
 * ARGV: mode ('full' or 'delta'), seq, base (delta), info (or ''), id,
 * then key, value pairs. Returns {0, keys changed}, {1, recorded seq}
 * (stale) or {2, recorded seq or ''} (resync); an error before any write.
 */
static const char push_script[] =
    "local total, prod, seqs, producers = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "local mode, seq, base, info, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
    "local function counter(s)\n"
    "  local c = tonumber(string.match(s, '^(%d+):'))\n"
    "  if c == nil then error('tally push: malformed push sequence ' .. s) end\n"
    "  return c\n"
    "end\n"
    "local cur = redis.call('HGET', seqs, id)\n"
    "if cur and counter(seq) < counter(cur) then return {1, cur} end\n"
    "if mode ~= 'full' and cur ~= base and cur ~= seq then\n"
    "  return {2, cur or ''}\n"
    "end\n"
    "local n = (#ARGV - 5) / 2\n"
    "local fields = {}\n"
    "for i = 1, n do fields[i] = ARGV[4 + 2 * i] end\n"
    "local olds, tots = {}, {}\n"
    "if n > 0 then\n"
    "  olds = redis.call('HMGET', prod, unpack(fields))\n"
    "  tots = redis.call('HMGET', total, unpack(fields))\n"
    "end\n"
    /* a canonical decimal int64, as the client and this script write */
    "local function int(s)\n"
    "  if s ~= '0' and not string.find(s, '^%-?[1-9]%d*$') then\n"
    "    error('tally push: not an integer: ' .. s)\n"
    "  end\n"
    "  return s\n"
    "end\n"
    /* exact int64: four 16-bit limbs, least significant first, in two's
     * complement; every intermediate stays far below 2^53 */
    "local B = 65536\n"
    "local function negate(a)\n"
    "  local c = 1\n"
    "  for i = 1, 4 do\n"
    "    local x = B - 1 - a[i] + c\n"
    "    if x >= B then a[i] = x - B; c = 1 else a[i] = x; c = 0 end\n"
    "  end\n"
    "end\n"
    "local function parse(s)\n"
    "  local neg = string.byte(s, 1) == 45\n"
    "  local a = {0, 0, 0, 0}\n"
    "  for j = neg and 2 or 1, #s do\n"
    "    local c = string.byte(s, j) - 48\n"
    "    for i = 1, 4 do\n"
    "      local x = a[i] * 10 + c\n"
    "      c = math.floor(x / B)\n"
    "      a[i] = x - c * B\n"
    "    end\n"
    "    if c ~= 0 then error('tally push: out of range: ' .. s) end\n"
    "  end\n"
    "  if a[4] >= 32768 and not (neg and a[4] == 32768 and a[3] == 0 and\n"
    "                            a[2] == 0 and a[1] == 0) then\n"
    "    error('tally push: out of range: ' .. s)\n"
    "  end\n"
    "  if neg then negate(a) end\n"
    "  return a\n"
    "end\n"
    "local function add(a, b)\n"
    "  local c = 0\n"
    "  for i = 1, 4 do\n"
    "    local x = a[i] + b[i] + c\n"
    "    if x >= B then a[i] = x - B; c = 1 else a[i] = x; c = 0 end\n"
    "  end\n"
    "end\n"
    "local function format(a)\n"
    "  local neg = a[4] >= 32768\n"
    "  if neg then negate(a) end\n"
    "  local groups = {}\n"
    "  repeat\n"
    "    local r = 0\n"
    "    for i = 4, 1, -1 do\n"
    "      local x = r * B + a[i]\n"
    "      local q = math.floor(x / 10000)\n"
    "      r = x - q * 10000\n"
    "      a[i] = q\n"
    "    end\n"
    "    groups[#groups + 1] = r\n"
    "  until a[1] == 0 and a[2] == 0 and a[3] == 0 and a[4] == 0\n"
    "  local s = tostring(groups[#groups])\n"
    "  for i = #groups - 1, 1, -1 do s = s .. string.format('%04d', groups[i]) end\n"
    "  if neg then s = '-' .. s end\n"
    "  return s\n"
    "end\n"
    "local pw, tw, changed = {}, {}, 0\n"
    "for i = 1, n do\n"
    "  local k, v, o, t = fields[i], int(ARGV[5 + 2 * i]), olds[i], tots[i]\n"
    "  if v ~= o then\n"
    "    o = o and int(o) or '0'\n"
    "    t = t and int(t) or '0'\n"
    "    local r\n"
    "    if #v <= 15 and #o <= 15 and #t <= 15 then\n"
    "      r = string.format('%.0f', tonumber(t) + tonumber(v) - tonumber(o))\n"
    "    else\n"
    "      local a, m = parse(t), parse(o)\n"
    "      negate(m)\n"
    "      add(a, parse(v))\n"
    "      add(a, m)\n"
    "      r = format(a)\n"
    "    end\n"
    "    pw[#pw + 1] = k; pw[#pw + 1] = v\n"
    "    tw[#tw + 1] = k; tw[#tw + 1] = r\n"
    "    changed = changed + 1\n"
    "  end\n"
    "end\n"
    /* the writes: the first is the only one Redis may refuse for OOM */
    "if info ~= '' then redis.call('HSET', producers, id, info) end\n"
    "if cur ~= seq then redis.call('HSET', seqs, id, seq) end\n"
    "if changed > 0 then\n"
    "  redis.call('HSET', prod, unpack(pw))\n"
    "  redis.call('HSET', total, unpack(tw))\n"
    "end\n"
    "return {0, changed}\n";

enum { PUSH_OK = 0, PUSH_STALE = 1, PUSH_RESYNC = 2 };
enum { FIXED_ARGS = 12 }; /* EVALSHA sha 4 KEYS[1..4] ARGV[1..5] */
enum { SEQ_MAX = 64 };
enum { PUSH_ATTEMPTS = 3 };

struct tool_redis {
    char *host;
    int port;
    double timeout_s;
    size_t batch;
    char *k_total, *k_seq, *k_producers, *k_prod_base; /* "{P}:prod:" */
    char *k_prod;          /* k_prod_base + the id in hex */
    redisContext *c;       /* NULL when not connected */
    char sha[41];          /* of push_script, from SCRIPT LOAD */
    bool script_loaded;    /* on this connection */

    /* What the last successful push left in Redis for producer id. */
    uint8_t id[16];
    char idhex[33];
    bool have_id;
    bool synced;           /* Redis's records == acked, at sequence base */
    struct tool_keys acked;
    char base[SEQ_MAX];
    uint64_t counter;      /* N of the last sequence used */
    char nonce[17];

    char errmsg[256];
};

static void set_err(struct tool_redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(struct tool_redis *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
    va_end(ap);
}

const char *tool_redis_errmsg(const struct tool_redis *r)
{
    return r->errmsg;
}

/* ---- SIGPIPE around hiredis calls ---- */

struct pipe_guard {
    sigset_t old;
    bool was_pending;
};

static void pipe_block(struct pipe_guard *g)
{
    sigset_t set, pending;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void pipe_unblock(struct pipe_guard *g)
{
    static const struct timespec zero = {0, 0};
    sigset_t set, pending;
    int saved = errno; /* hiredis's, for conn_failed */

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE) == 1) {
        /* ours: raised by a write to a closed connection */
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

/* ---- connections ---- */

static char *key_name(const char *prefix, const char *suffix)
{
    size_t n = strlen(prefix) + strlen(suffix) + 3;
    char *s = malloc(n);

    if (s != NULL)
        snprintf(s, n, "{%s}%s", prefix, suffix);
    return s;
}

static void random_nonce(char out[17])
{
    uint64_t x = 0;

    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^
            (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid();
    }
    snprintf(out, 17, "%016" PRIx64, x);
}

int tool_redis_new(struct tool_redis **out, const struct tool_redis_config *cfg)
{
    struct tool_redis *r;

    if (out == NULL || cfg == NULL || cfg->host == NULL ||
        cfg->port < 1 || cfg->port > 65535 ||
        !tool_redis_prefix_ok(cfg->prefix) ||
        cfg->batch > TOOL_REDIS_BATCH_MAX || cfg->timeout_s < 0)
        return -EINVAL;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    r->host = strdup(cfg->host);
    r->port = cfg->port;
    r->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 10;
    r->batch = cfg->batch != 0 ? cfg->batch : TOOL_REDIS_BATCH;
    r->k_total = key_name(cfg->prefix, ":total");
    r->k_seq = key_name(cfg->prefix, ":seq");
    r->k_producers = key_name(cfg->prefix, ":producers");
    r->k_prod_base = key_name(cfg->prefix, ":prod:");
    r->k_prod = r->k_prod_base != NULL
                    ? malloc(strlen(r->k_prod_base) + 33)
                    : NULL;
    if (r->host == NULL || r->k_total == NULL || r->k_seq == NULL ||
        r->k_producers == NULL || r->k_prod == NULL) {
        tool_redis_free(r);
        return -ENOMEM;
    }
    random_nonce(r->nonce);
    *out = r;
    return 0;
}

static void disconnect(struct tool_redis *r)
{
    if (r->c != NULL) {
        struct pipe_guard g;

        pipe_block(&g);
        redisFree(r->c);
        pipe_unblock(&g);
        r->c = NULL;
    }
    r->script_loaded = false;
}

void tool_redis_free(struct tool_redis *r)
{
    if (r == NULL)
        return;
    disconnect(r);
    tool_keys_free(&r->acked);
    free(r->host);
    free(r->k_total);
    free(r->k_seq);
    free(r->k_producers);
    free(r->k_prod_base);
    free(r->k_prod);
    free(r);
}

/* The connection failed (r->c->err is set, errno is hiredis's): closes it
 * and returns what to report. */
static int conn_failed(struct tool_redis *r)
{
    int e = errno, err = -EIO;

    if (r->c->err == REDIS_ERR_IO &&
        (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT)) {
        set_err(r, "no answer within %g s", r->timeout_s);
        err = -ETIMEDOUT;
    } else if (r->c->err == REDIS_ERR_OOM) {
        set_err(r, "out of memory");
        err = -ENOMEM;
    } else if (r->c->err == REDIS_ERR_EOF) {
        set_err(r, "Redis closed the connection");
    } else {
        set_err(r, "%s", r->c->errstr[0] != '\0' ? r->c->errstr
                                                 : "connection lost");
    }
    disconnect(r);
    return err;
}

/* The reply was an error or not of the expected type: records Redis's
 * words (or what was expected) as the failure. */
static int reply_failed(struct tool_redis *r, const redisReply *rep,
                        const char *expected)
{
    if (rep->type == REDIS_REPLY_ERROR)
        set_err(r, "Redis: %.*s", (int)(rep->len < 200 ? rep->len : 200),
                rep->str);
    else
        set_err(r, "unexpected reply from Redis (type %d; wanted %s)",
                rep->type, expected);
    return -EPROTO;
}

static int ensure_connected(struct tool_redis *r, bool script,
                            struct tool_redis_stats *st)
{
    struct timeval tv;
    struct pipe_guard g;
    redisReply *rep;
    int err = 0;

    tv.tv_sec = (time_t)r->timeout_s;
    tv.tv_usec = (suseconds_t)((r->timeout_s - (double)tv.tv_sec) * 1e6);
    if (r->c == NULL) {
        pipe_block(&g);
        r->c = redisConnectWithTimeout(r->host, r->port, tv);
        pipe_unblock(&g);
        if (r->c == NULL) {
            set_err(r, "out of memory");
            return -ENOMEM;
        }
        if (r->c->err != 0) {
            int e = errno;

            set_err(r, "%s", r->c->errstr);
            disconnect(r);
            return e == ECONNREFUSED ? -ECONNREFUSED
                   : e == ETIMEDOUT || e == EINPROGRESS ? -ETIMEDOUT
                                                        : -EIO;
        }
        if (redisSetTimeout(r->c, tv) != REDIS_OK)
            return conn_failed(r);
        if (st != NULL)
            st->connected = true;
    }
    /* Once the script's SHA1 is known, a push sends SCRIPT LOAD in its
     * own pipeline, ahead of its EVALSHAs (append_load): no round trip
     * of its own. */
    if (!script || r->script_loaded || r->sha[0] != '\0')
        return 0;
    pipe_block(&g);
    rep = redisCommand(r->c, "SCRIPT LOAD %s", push_script);
    pipe_unblock(&g);
    if (st != NULL)
        st->round_trips++;
    if (rep == NULL)
        return conn_failed(r);
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
        memcpy(r->sha, rep->str, 40);
        r->sha[40] = '\0';
        r->script_loaded = true;
    } else {
        err = reply_failed(r, rep, "a SHA1");
    }
    freeReplyObject(rep);
    return err;
}

/* ---- one push ---- */

/* Bytes of the RESP request for argv (what hiredis writes). */
static uint64_t resp_bytes(int argc, const size_t *argvlen)
{
    uint64_t n = 3 + (uint64_t)snprintf(NULL, 0, "%d", argc);
    int i;

    for (i = 0; i < argc; i++)
        n += 5 + (uint64_t)snprintf(NULL, 0, "%zu", argvlen[i]) + argvlen[i];
    return n;
}

/* One attempt's plan: the entries to send, cut into batches. */
struct push_plan {
    const struct tool_entry **send;
    size_t nsend;
    size_t nbatches;
    bool full;
    const char *info;
    char seq[SEQ_MAX];
    /* scratch for building one batch's command */
    const char **argv;
    size_t *argvlen;
    char (*num)[24];
};

/* Appends batch b's EVALSHA to the pipeline. 0 or -ENOMEM. */
static int append_batch(struct tool_redis *r, struct push_plan *p, size_t b,
                        struct tool_redis_stats *st)
{
    size_t first = b * r->batch, n = p->nsend - first, i;
    int argc;
    struct pipe_guard g;
    int rc;

    if (n > r->batch)
        n = r->batch;
    p->argv[0] = "EVALSHA";
    p->argv[1] = r->sha;
    p->argv[2] = "4";
    p->argv[3] = r->k_total;
    p->argv[4] = r->k_prod;
    p->argv[5] = r->k_seq;
    p->argv[6] = r->k_producers;
    p->argv[7] = p->full ? "full" : "delta";
    p->argv[8] = p->seq;
    p->argv[9] = p->full ? "" : r->base;
    p->argv[10] = p->full && b == 0 ? p->info : "";
    p->argv[11] = r->idhex;
    for (i = 0; i < FIXED_ARGS; i++)
        p->argvlen[i] = strlen(p->argv[i]);
    for (i = 0; i < n; i++) {
        const struct tool_entry *e = p->send[first + i];
        int len = snprintf(p->num[i], sizeof p->num[i], "%" PRId64, e->value);

        p->argv[FIXED_ARGS + 2 * i] = (const char *)e->key;
        p->argvlen[FIXED_ARGS + 2 * i] = e->len;
        p->argv[FIXED_ARGS + 2 * i + 1] = p->num[i];
        p->argvlen[FIXED_ARGS + 2 * i + 1] = (size_t)len;
    }
    argc = FIXED_ARGS + 2 * (int)n;
    pipe_block(&g);
    rc = redisAppendCommandArgv(r->c, argc, p->argv, p->argvlen);
    pipe_unblock(&g);
    if (rc != REDIS_OK) {
        set_err(r, "out of memory");
        return -ENOMEM;
    }
    st->bytes += resp_bytes(argc, p->argvlen);
    return 0;
}

/* Appends SCRIPT LOAD to the pipeline (the SHA1 is known). 0 or
 * -ENOMEM. */
static int append_load(struct tool_redis *r, struct tool_redis_stats *st)
{
    const char *argv[3] = {"SCRIPT", "LOAD", push_script};
    size_t argvlen[3] = {6, 4, sizeof push_script - 1};
    struct pipe_guard g;
    int rc;

    pipe_block(&g);
    rc = redisAppendCommandArgv(r->c, 3, argv, argvlen);
    pipe_unblock(&g);
    if (rc != REDIS_OK) {
        set_err(r, "out of memory");
        return -ENOMEM;
    }
    st->bytes += resp_bytes(3, argvlen);
    return 0;
}

/* The N of a sequence "N:NONCE" (0 when malformed). */
static uint64_t seq_counter(const char *s, size_t len)
{
    uint64_t n = 0;
    size_t i;

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        n = n * 10 + (uint64_t)(s[i] - '0');
    return i < len && s[i] == ':' ? n : 0;
}

/* What the replies of one pipeline said. */
struct push_result {
    int err;          /* the first failure, 0 if none */
    bool refused;     /* a stale or resync answer */
    uint64_t seen;    /* the highest recorded N a refusal showed */
    size_t noscript;  /* batches answered NOSCRIPT */
    bool *retry;      /* per batch: answered NOSCRIPT */
};

/* Reads the reply to append_load's SCRIPT LOAD. */
static void read_load(struct tool_redis *r, struct push_result *res)
{
    redisReply *rep = NULL;
    struct pipe_guard g;
    int rc;

    pipe_block(&g);
    rc = redisGetReply(r->c, (void **)&rep);
    pipe_unblock(&g);
    if (rc != REDIS_OK || rep == NULL) {
        res->err = conn_failed(r);
        return;
    }
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40 &&
        memcmp(rep->str, r->sha, 40) == 0)
        r->script_loaded = true;
    else
        res->err = reply_failed(r, rep, "the script's SHA1");
    freeReplyObject(rep);
}

/* Reads the replies of batches [0, nb) where want[b] (NULL: all). */
static void read_replies(struct tool_redis *r, size_t nb, const bool *want,
                         struct push_result *res, struct tool_redis_stats *st)
{
    size_t b;

    for (b = 0; b < nb; b++) {
        redisReply *rep = NULL;
        struct pipe_guard g;
        int rc;

        if (want != NULL && !want[b])
            continue;
        if (r->c == NULL) /* the connection failed on an earlier reply */
            return;
        pipe_block(&g);
        rc = redisGetReply(r->c, (void **)&rep);
        pipe_unblock(&g);
        if (rc != REDIS_OK || rep == NULL) {
            int err = conn_failed(r);

            if (res->err == 0)
                res->err = err;
            return;
        }
        if (rep->type == REDIS_REPLY_ERROR &&
            strncmp(rep->str, "NOSCRIPT", 8) == 0) {
            res->retry[b] = true;
            res->noscript++;
        } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                   rep->element[0]->type == REDIS_REPLY_INTEGER &&
                   rep->element[0]->integer == PUSH_OK &&
                   rep->element[1]->type == REDIS_REPLY_INTEGER) {
            st->batches++;
            st->changed += (size_t)rep->element[1]->integer;
        } else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                   rep->element[0]->type == REDIS_REPLY_INTEGER &&
                   (rep->element[0]->integer == PUSH_STALE ||
                    rep->element[0]->integer == PUSH_RESYNC) &&
                   rep->element[1]->type == REDIS_REPLY_STRING) {
            uint64_t n = seq_counter(rep->element[1]->str,
                                     rep->element[1]->len);

            st->batches++;
            res->refused = true;
            if (n > res->seen)
                res->seen = n;
        } else if (res->err == 0) {
            res->err = reply_failed(r, rep, "the push script's answer");
        }
        freeReplyObject(rep);
    }
}

/* Puts in p->send the entries to send: all of them (full) or those whose
 * value differs from acked's (both lists sorted by tool_entry_keycmp). */
static void select_entries(const struct tool_redis *r,
                           const struct tool_keys *list, struct push_plan *p)
{
    size_t i, j = 0;

    p->nsend = 0;
    for (i = 0; i < list->n; i++) {
        const struct tool_entry *e = &list->entries[i];
        int cmp = -1;

        if (!p->full) {
            while (j < r->acked.n &&
                   (cmp = tool_entry_keycmp(&r->acked.entries[j], e)) < 0)
                j++; /* a key the store lost: cannot happen */
            if (j == r->acked.n)
                cmp = 1;
            if (cmp == 0 && r->acked.entries[j].value == e->value)
                continue;
        }
        p->send[p->nsend++] = e;
    }
}

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One attempt: plan, pipeline, replies; reloads the script and sends the
 * NOSCRIPT batches again once. */
static int push_attempt(struct tool_redis *r, struct push_plan *p,
                        const struct tool_keys *list,
                        struct push_result *res,
                        struct tool_redis_stats *st)
{
    size_t b;
    bool load;
    int err;

    err = ensure_connected(r, true, st);
    if (err != 0)
        return err;
    p->full = !r->synced;
    select_entries(r, list, p);
    st->sent += p->nsend;
    if (p->full)
        st->full++;
    if (!p->full && p->nsend == 0) {
        snprintf(p->seq, sizeof p->seq, "%s", r->base); /* a check only */
    } else {
        uint64_t t = now_us();

        r->counter = t > r->counter ? t : r->counter + 1;
        snprintf(p->seq, sizeof p->seq, "%" PRIu64 ":%s", r->counter,
                 r->nonce);
    }
    p->nbatches = p->nsend == 0 ? 1 : (p->nsend + r->batch - 1) / r->batch;
    res->retry = calloc(p->nbatches, sizeof *res->retry);
    if (res->retry == NULL) {
        set_err(r, "out of memory");
        return -ENOMEM;
    }
    load = !r->script_loaded;
    err = load ? append_load(r, st) : 0;
    for (b = 0; b < p->nbatches && err == 0; b++)
        err = append_batch(r, p, b, st);
    if (err != 0) {
        disconnect(r); /* a half-built pipeline must not be sent */
        return err;
    }
    st->round_trips++;
    if (load)
        read_load(r, res);
    read_replies(r, p->nbatches, NULL, res, st);
    if (res->err == 0 && res->noscript != 0) {
        /* SCRIPT FLUSH (or a restart behind a proxy) since we loaded it:
         * load it again and send those batches again, one round trip */
        bool *again = res->retry;
        size_t n = res->noscript;

        st->reloaded = true;
        r->script_loaded = false;
        res->retry = calloc(p->nbatches, sizeof *res->retry);
        res->noscript = 0;
        if (res->retry == NULL) {
            free(again);
            set_err(r, "out of memory");
            return -ENOMEM;
        }
        err = append_load(r, st);
        for (b = 0; b < p->nbatches && err == 0; b++)
            if (again[b])
                err = append_batch(r, p, b, st);
        if (err != 0) {
            free(again);
            disconnect(r);
            return err;
        }
        st->round_trips++;
        read_load(r, res);
        read_replies(r, p->nbatches, again, res, st);
        free(again);
        if (res->err == 0 && res->noscript != 0) {
            set_err(r, "Redis keeps answering NOSCRIPT (%zu of %zu "
                       "batches)", n, p->nbatches);
            res->err = -EPROTO;
        }
    }
    return res->err;
}

int tool_redis_push(struct tool_redis *r, const uint8_t id[16],
                    const char *info, struct tool_keys *list,
                    struct tool_redis_stats *st)
{
    struct push_plan p = {.info = info != NULL ? info : ""};
    size_t width = r->batch < list->n ? r->batch : list->n;
    int attempt, err = 0, i;

    memset(st, 0, sizeof *st);
    st->keys = list->n;
    r->errmsg[0] = '\0';
    if (!r->have_id || memcmp(r->id, id, 16) != 0) {
        /* another producer (a store made again): nothing is known */
        memcpy(r->id, id, 16);
        for (i = 0; i < 16; i++)
            snprintf(r->idhex + 2 * i, 3, "%02x", id[i]);
        sprintf(r->k_prod, "%s%s", r->k_prod_base, r->idhex);
        r->have_id = true;
        r->synced = false;
        tool_keys_free(&r->acked);
    }
    p.send = malloc((list->n != 0 ? list->n : 1) * sizeof *p.send);
    p.argv = malloc((FIXED_ARGS + 2 * width) * sizeof *p.argv);
    p.argvlen = malloc((FIXED_ARGS + 2 * width) * sizeof *p.argvlen);
    p.num = malloc((width != 0 ? width : 1) * sizeof *p.num);
    if (p.send == NULL || p.argv == NULL || p.argvlen == NULL ||
        p.num == NULL) {
        set_err(r, "out of memory");
        err = -ENOMEM;
        goto out;
    }
    for (attempt = 0; attempt < PUSH_ATTEMPTS; attempt++) {
        struct push_result res = {0};

        err = push_attempt(r, &p, list, &res, st);
        free(res.retry);
        if (err != 0)
            break;
        if (!res.refused) {
            /* every batch applied: Redis's records are list's values */
            r->synced = true;
            snprintf(r->base, sizeof r->base, "%s", p.seq);
            tool_keys_free(&r->acked);
            r->acked = *list;
            memset(list, 0, sizeof *list);
            goto out;
        }
        /* refused: push every key, above the sequence Redis holds */
        r->synced = false;
        if (res.seen > r->counter)
            r->counter = res.seen;
    }
    if (err == 0) {
        set_err(r, "Redis refused %d pushes in a row as older than its "
                   "record for producer %s: is another 'tally push' "
                   "pushing this store?", PUSH_ATTEMPTS, r->idhex);
        err = -EAGAIN;
    }
out:
    if (err != 0)
        r->synced = false;
    free(p.send);
    free(p.argv);
    free(p.argvlen);
    free(p.num);
    return err;
}

/* ---- reads ---- */

/* A total as Redis holds it: a canonical decimal int64. */
static int parse_total(struct tool_redis *r, const redisReply *rep,
                       int64_t *value)
{
    if (rep->type != REDIS_REPLY_STRING || strlen(rep->str) != rep->len ||
        tool_parse_int64(rep->str, value) != 0) {
        set_err(r, "%s holds a value that is not an integer", r->k_total);
        return -EPROTO;
    }
    return 0;
}

int tool_redis_get(struct tool_redis *r, const void *key, size_t len,
                   int64_t *value)
{
    struct pipe_guard g;
    redisReply *rep;
    int err;

    r->errmsg[0] = '\0';
    err = ensure_connected(r, false, NULL);
    if (err != 0)
        return err;
    pipe_block(&g);
    rep = redisCommand(r->c, "HGET %s %b", r->k_total, key, len);
    pipe_unblock(&g);
    if (rep == NULL)
        return conn_failed(r);
    if (rep->type == REDIS_REPLY_NIL)
        err = -ENOENT;
    else if (rep->type == REDIS_REPLY_STRING)
        err = parse_total(r, rep, value);
    else
        err = reply_failed(r, rep, "a string");
    freeReplyObject(rep);
    return err;
}

int tool_redis_collect(struct tool_redis *r, char *const *globs, int nglobs,
                       struct tool_keys *list)
{
    char cursor[32] = "0";
    char *shown = NULL;
    size_t i, kept;
    int err;

    r->errmsg[0] = '\0';
    err = ensure_connected(r, false, NULL);
    if (err != 0)
        return err;
    if (nglobs != 0 && (shown = malloc(TOOL_SHOWN_MAX)) == NULL)
        return -ENOMEM;
    do {
        struct pipe_guard g;
        redisReply *rep, *pairs;

        pipe_block(&g);
        rep = redisCommand(r->c, "HSCAN %s %s COUNT 1000", r->k_total,
                           cursor);
        pipe_unblock(&g);
        if (rep == NULL) {
            err = conn_failed(r);
            break;
        }
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[0]->len >= sizeof cursor ||
            rep->element[1]->type != REDIS_REPLY_ARRAY ||
            rep->element[1]->elements % 2 != 0) {
            err = reply_failed(r, rep, "an HSCAN page");
            freeReplyObject(rep);
            break;
        }
        memcpy(cursor, rep->element[0]->str, rep->element[0]->len + 1);
        pairs = rep->element[1];
        for (i = 0; i < pairs->elements && err == 0; i += 2) {
            const redisReply *k = pairs->element[i];
            int64_t v;

            if (k->type != REDIS_REPLY_STRING) {
                err = reply_failed(r, k, "a key");
                break;
            }
            if (k->len > TALLY_KEY_MAX)
                continue; /* not a key a store can hold */
            err = parse_total(r, pairs->element[i + 1], &v);
            if (err != 0)
                break;
            if (nglobs != 0) {
                tool_key_show(shown, k->str, k->len);
                if (!tool_globs_match(globs, nglobs, shown))
                    continue;
            }
            err = tool_keys_add(list, k->str, k->len, v);
        }
        freeReplyObject(rep);
    } while (err == 0 && strcmp(cursor, "0") != 0);
    free(shown);
    if (err == 0)
        err = tool_keys_sort(list);
    if (err == -ENOMEM)
        set_err(r, "out of memory");
    if (err != 0)
        return err;
    /* HSCAN may return a key twice (the hash grew during the scan) */
    for (i = 0, kept = 0; i < list->n; i++) {
        if (kept != 0 &&
            tool_entry_keycmp(&list->entries[kept - 1], &list->entries[i]) ==
                0)
            list->entries[kept - 1] = list->entries[i];
        else
            list->entries[kept++] = list->entries[i];
    }
    list->n = kept;
    return 0;
}

#else /* !TALLY_TOOL_REDIS: every call says so */

int tool_redis_new(struct tool_redis **out, const struct tool_redis_config *cfg)
{
    (void)out;
    (void)cfg;
    return -ENOTSUP;
}

void tool_redis_free(struct tool_redis *r)
{
    (void)r;
}

const char *tool_redis_errmsg(const struct tool_redis *r)
{
    (void)r;
    return "this tally was built without hiredis";
}

int tool_redis_push(struct tool_redis *r, const uint8_t id[16],
                    const char *info, struct tool_keys *list,
                    struct tool_redis_stats *st)
{
    (void)r, (void)id, (void)info, (void)list, (void)st;
    return -ENOTSUP;
}

int tool_redis_get(struct tool_redis *r, const void *key, size_t len,
                   int64_t *value)
{
    (void)r, (void)key, (void)len, (void)value;
    return -ENOTSUP;
}

int tool_redis_collect(struct tool_redis *r, char *const *globs, int nglobs,
                       struct tool_keys *list)
{
    (void)r, (void)globs, (void)nglobs, (void)list;
    return -ENOTSUP;
}

#endif /* TALLY_TOOL_REDIS */
