/*
 * redis_push.h - fleet totals in Redis: the protocol under 'tally push'
 * and the reads of 'tally get --redis' and 'tally ls --redis'.
 *
 * Each producer (one store file, named by its 16-byte random id, which
 * doubles as its epoch: a store made again is a new producer) sends its
 * running totals; one Lua script per batch of keys adds to the fleet
 * total only the difference from what Redis last recorded for that
 * producer. docs/design.md, "Fleet totals in Redis", explains the
 * protocol and every failure case. The Redis keys of a prefix P (all in
 * one Cluster hash slot, through the hash tag {P}):
 *
 *   {P}:total          hash  key -> sum over all producers
 *   {P}:prod:<id>      hash  key -> the producer's value last added in
 *   {P}:seq            hash  <id> -> the producer's last push, "N:NONCE"
 *   {P}:producers      hash  <id> -> "host=... path=... created_ns=..."
 *
 * <id> is the store id in 32 lowercase hex digits. Keys are any bytes.
 *
 * This is part of the 'tally' command (hiredis is the tool's dependency,
 * never libtally's). One struct tool_redis is used by one thread.
 * Functions return 0 or a negative errno; tool_redis_errmsg() then says
 * what happened in words (a hiredis or Redis message).
 */
#ifndef TALLY_TOOL_REDIS_PUSH_H
#define TALLY_TOOL_REDIS_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tool.h"

/* Keys per script call: the default and the most (the script passes a
 * batch's fields to HMGET and HSET through Lua's unpack, whose limit is
 * a little under 8,000 values). */
#define TOOL_REDIS_BATCH 1000
#define TOOL_REDIS_BATCH_MAX 2000
/* The longest prefix, in bytes. */
#define TOOL_REDIS_PREFIX_MAX 200
#define TOOL_REDIS_DEFAULT_PORT 6379

struct tool_redis_config {
    const char *host;   /* a name or an address (IPv4 or IPv6) */
    int port;
    const char *prefix; /* P: 1..TOOL_REDIS_PREFIX_MAX bytes, no { or } */
    double timeout_s;   /* for connecting and for each reply; 0: 10 s */
    size_t batch;       /* keys per script call; 0: TOOL_REDIS_BATCH */
};

struct tool_redis;

/* Parses "HOST", "HOST:PORT", "[ADDR]" or "[ADDR]:PORT" (IPv6) into host
 * (room for hostlen bytes) and *port (TOOL_REDIS_DEFAULT_PORT when
 * absent). 0, or -1 when malformed. */
int tool_redis_parse_addr(const char *arg, char *host, size_t hostlen,
                          int *port);
/* Whether prefix is acceptable: 1..TOOL_REDIS_PREFIX_MAX bytes, no '{' or
 * '}' (so that {P} is the hash tag of every key). */
bool tool_redis_prefix_ok(const char *prefix);

/* Makes a client; it connects on first use and again after any failure.
 * 0, -EINVAL (bad config), -ENOMEM, or -ENOTSUP in a tally built without
 * hiredis (where every other call below fails that way too). */
int tool_redis_new(struct tool_redis **out,
                   const struct tool_redis_config *cfg);
/* Closes the connection and frees. NULL is a no-op. */
void tool_redis_free(struct tool_redis *r);
/* Text of the last failure ("" when none). */
const char *tool_redis_errmsg(const struct tool_redis *r);

/* For the --redis ADDR and --prefix P options of get and ls: parses
 * them (prefix NULL: "tally") and makes the client. TOOL_OK, a usage
 * error reported for cmd (a malformed address or prefix), or TOOL_FAIL
 * reported ("built without hiredis", no memory). */
int tool_redis_open_arg(const char *cmd, const char *addr, const char *prefix,
                        struct tool_redis **out);

/* What one tool_redis_push did. */
struct tool_redis_stats {
    size_t keys;        /* keys in the producer's list */
    size_t sent;        /* keys sent (a full push sends every key) */
    size_t changed;     /* keys whose recorded value changed in Redis */
    size_t batches;     /* script calls that were answered */
    size_t round_trips; /* request-then-wait-for-replies exchanges,
                           SCRIPT LOAD on connecting included */
    uint64_t bytes;     /* request bytes sent */
    unsigned full;      /* attempts that sent every key: 1 for a first
                           push, 2 after a refused delta (resync) */
    bool reloaded;      /* NOSCRIPT: the script was loaded again */
    bool connected;     /* a (re)connection was made */
};

/*
 * Pushes a producer's running totals: list holds every key of the store
 * with its value, sorted by tool_keys_sort (unique keys). id is the
 * store's id (tally_store_info); info a short description stored in
 * {P}:producers on full pushes (host, path).
 *
 * Sends every key when Redis's records for this producer are not known
 * to match what this client last pushed (the first push, a new id, after
 * any failure, or when Redis answers that they changed: lost data,
 * another pusher); else only the keys whose value changed since the last
 * push, or, when none did, one empty call that checks the records are
 * still there. All calls of a push go in one pipeline: one round trip.
 *
 * On success returns 0, takes list's contents (kept to compare the next
 * push with; *list is left empty) and fills *st. On failure list is left
 * as it was, *st says what got done, the next push sends every key, and
 * the result is -EIO or -ETIMEDOUT (connection: it is closed), -EPROTO (an
 * error reply from Redis, e.g. WRONGTYPE or OOM, or a reply the protocol
 * does not expect), -EAGAIN (pushes for this producer kept being refused
 * as older than Redis's record: another 'tally push' of the same store),
 * or -ENOMEM. Whatever the failure, Redis's totals stay exact: a batch is
 * applied whole or not at all, and applying one twice changes nothing.
 */
int tool_redis_push(struct tool_redis *r, const uint8_t id[16],
                    const char *info, struct tool_keys *list,
                    struct tool_redis_stats *st);

/* The fleet total of one key: 0, -ENOENT (no producer has pushed it),
 * or a failure as above (-EPROTO also for a field that is not an
 * integer). */
int tool_redis_get(struct tool_redis *r, const void *key, size_t len,
                   int64_t *value);

/* Appends every key of {P}:total whose shown form matches globs (see
 * tool_globs_match) with its total to list (zero-filled before), sorted
 * by tool_keys_sort, each key once. Reads with HSCAN, so Redis is never
 * blocked for long; a key pushed during the scan may show its value from
 * before or after. 0 or a failure as above. */
int tool_redis_collect(struct tool_redis *r, char *const *globs, int nglobs,
                       struct tool_keys *list);

#endif /* TALLY_TOOL_REDIS_PUSH_H */
