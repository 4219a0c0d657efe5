/*
 * store_bench.c - tally_store against what people use to count across
 * processes (issue 11, part 6): Redis INCR, an SQLite counter table, and
 * one atomic per key in a shared mapping (the nginx way).
 *
 *   store-bench --impl NAME --workload hot|keys1024 --procs P --threads T
 *               --seconds S --rep R
 *   store-bench --export --keys N [--tally PATH]
 *   store-bench --list | --header
 *
 * HOW A CELL RUNS
 *
 * The parent creates the shared structure (a store file, a Redis server
 * of its own on a free loopback port, an SQLite database, a shared file
 * of counters) and creates the workload's keys at 0. It forks P
 * processes; each opens what a process opens (its store, its Redis
 * connection) and starts T threads, which open what a thread opens (an
 * SQLite connection, handles) and wait. When every process is ready the
 * parent lets them go, sleeps S seconds and raises a stop flag in a
 * shared page, which the threads read (relaxed) between batches. Each
 * process joins its threads and writes their operation counts to a pipe.
 * seconds: from the go to the last process's report; mops = ops /
 * seconds / 1e6 (all processes and threads together).
 *
 * Workloads (the C driver's, bench/README.md): "hot" adds 1 to "somekey"
 * every op; "keys1024" adds 1 to one of "k0".."k1023" drawn with the
 * driver's xorshift64* stream, seeded with the thread's global index + 1
 * (process * T + thread). After the run the parent replays every
 * thread's stream and checks that every key holds exactly its adds and
 * that the structure holds exactly the workload's keys: check=ok or FAIL
 * (and exit status 1).
 *
 * Implementations (--list says which this build and machine can run):
 *
 *   tally_store         tally_store_add_n by name, one store opened per
 *                       process
 *   tally_store_handle  a tally_store_handle per key and thread, resolved
 *                       before timing, then tally_store_handle_inc
 *   shm_atomic          the nginx way: a MAP_SHARED file of 64-byte slots,
 *                       one _Atomic int64_t each, added with a relaxed
 *                       fetch_add; key -> slot by a fixed name table
 *                       (reftable.h) built before the fork, so every op
 *                       still looks its key up by name
 *   redis_incr          INCR over loopback through hiredis, one connection
 *                       per process (its threads take turns on it, under
 *                       a mutex), one round trip per add
 *   redis_incr_pipe     the same with 16 INCRs per round trip (hiredis's
 *                       redisAppendCommand, then 16 replies)
 *   sqlite_upsert       a counter table (k TEXT PRIMARY KEY, v INTEGER),
 *                       INSERT ... ON CONFLICT(k) DO UPDATE SET v = v + 1,
 *                       WAL mode with synchronous=NORMAL (no fsync per
 *                       commit: like tally_store, durable across process
 *                       crashes, not power loss), one connection per
 *                       thread, a 60 s busy timeout
 *
 * --export: one process creates a store with N keys of 12 bytes
 * ("key:%08zu", one add each), then reports the file's bytes per key
 * (its size and the blocks it uses) and the time to export it: with
 * --tally PATH, 'tally export FILE --format csv' and 'tally ls FILE' run
 * as child processes writing to a pipe this program drains; else one
 * tally_store_foreach that formats "key,value" lines into a buffer.
 *
 * Exit status: 0 ok, 1 check failed or error, 2 usage, 77 skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if TALLY_BENCH_HIREDIS
#include <hiredis/hiredis.h>
#endif
#if TALLY_BENCH_SQLITE
#include <sqlite3.h>
#endif

#include "bench.h"
#include "reftable.h"
#include "tally.h"

#define EXIT_SKIP 77
#define MAX_PROCS 16
#define MAX_THREADS 64
#define PIPELINE 16

enum sb_workload { SB_HOT, SB_KEYS1024 };

static const char *const sb_workload_names[] = {"hot", "keys1024"};

struct sb_run;

/* One thread of one process. */
struct sb_thread {
    _Alignas(64) struct sb_run *run;
    unsigned proc, index, global; /* global = proc * threads + index */
    uint64_t ops, errors;
    void *conn; /* per-thread state: sqlite3 *, handle array */
    void *stmt;
    char why[160];
};

/* What every process's threads share: the stop flag, in a MAP_SHARED
 * page made before the fork. */
struct sb_ctl {
    _Alignas(64) atomic_int stop; /* relaxed: only ends the loops */
};

/* A process's report, written to the results pipe in one write (well
 * under PIPE_BUF, so reports from several processes never interleave). */
struct sb_report {
    unsigned proc;
    int failed; /* could not open or start */
    uint64_t ops[MAX_THREADS];
    uint64_t errors;
    char why[160];
};
_Static_assert(sizeof(struct sb_report) <= 4096, "one atomic pipe write");

struct sb_impl {
    const char *name;
    /* NULL, or why this build or machine cannot run it. */
    const char *(*skip_reason)(void);
    /* Ops per stop-flag check: 256 for the fast ones, 1 for round trips. */
    unsigned batch;
    /* Parent, before the fork: make the shared structure with every key
     * at 0. 0 or -1 (why in run->why). */
    int (*create)(struct sb_run *run);
    /* Child process, after the fork, before its threads start. */
    int (*proc_open)(struct sb_run *run);
    void (*proc_close)(struct sb_run *run);
    /* Each thread, before the start: 0 or -1 (why in th->why). */
    int (*thread_open)(struct sb_thread *th);
    void (*thread_close)(struct sb_thread *th);
    void (*work)(struct sb_thread *th);
    /* Parent, after the run: key i's value (*present = 0 when absent),
     * the number of keys, then cleanup. */
    int64_t (*value)(struct sb_run *run, size_t i, int *present);
    int64_t (*size)(struct sb_run *run);
    void (*destroy)(struct sb_run *run);
};

struct sb_run {
    const struct sb_impl *impl;
    enum sb_workload workload;
    unsigned procs, threads;
    double seconds;
    struct bench_key *keys; /* nkeys keys ("somekey" for hot) */
    struct bench_key hot;
    size_t nkeys;
    struct sb_ctl *ctl;
    char dir[256];  /* our temporary folder */
    char path[320]; /* the file in it */
    char why[256];

    /* per implementation; made by create (inherited by the children) or
     * by proc_open (the child's own) */
    void *proc_state;
    struct ref_table names;       /* shm_atomic */
    unsigned char *slots;         /* shm_atomic: the mapping */
    size_t slots_len;
    pid_t server;                 /* redis */
    int port;
    pthread_mutex_t conn_lock;    /* redis: the process's connection */
};

static int why_set(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int why_set(char *buf, size_t cap, const char *fmt, ...)
{
    if (buf[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, cap, fmt, ap);
        va_end(ap);
    }
    return -1;
}
#define RUN_FAIL(run, ...) why_set((run)->why, sizeof((run)->why), __VA_ARGS__)
#define TH_FAIL(th, ...) why_set((th)->why, sizeof((th)->why), __VA_ARGS__)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The timed loop: PICK chooses `k` (and `idx`), OP does one batch-worth
 * op; the stop flag is read every `batch` ops. */
#define SB_LOOP(th, batch, PICK, OP)                                     \
    do {                                                                 \
        uint64_t n_ = 0;                                                 \
        const unsigned b_ = (batch);                                     \
        while (!atomic_load_explicit(&(th)->run->ctl->stop,              \
                                     memory_order_relaxed)) {            \
            for (unsigned i_ = 0; i_ < b_; i_++) {                       \
                PICK;                                                    \
                OP;                                                      \
            }                                                            \
            n_ += b_;                                                    \
        }                                                                \
        (th)->ops = n_;                                                  \
    } while (0)

/* Key pickers for SB_LOOP: declare `k` (the key) and `idx` (its index).
 * hot: always key 0; keys1024: the driver's uniform stream. */
#define SB_PICK_HOT                                                      \
    const size_t idx = 0;                                                \
    const struct bench_key *k = &keys_[0];                               \
    (void)idx;                                                           \
    (void)k
#define SB_PICK_UNIFORM                                                  \
    const uint64_t x_ = bench_rng_next(&rng_);                           \
    const size_t idx = BENCH_UNIFORM_INDEX(x_, mask_);                   \
    const struct bench_key *k = &keys_[idx];                             \
    (void)idx;                                                           \
    (void)k

/* Runs OP on the workload's key stream, checking stop every batch ops. */
#define SB_RUN(th, batch, OP)                                            \
    do {                                                                 \
        const struct bench_key *keys_ = (th)->run->keys;                 \
        const size_t mask_ = (th)->run->nkeys - 1;                       \
        uint64_t rng_ = (uint64_t)(th)->global + 1;                      \
        if (mask_ == 0)                                                  \
            SB_LOOP(th, batch, SB_PICK_HOT, OP);                         \
        else                                                             \
            SB_LOOP(th, batch, SB_PICK_UNIFORM, OP);                     \
    } while (0)

/* ---- tally_store ------------------------------------------------------- */

#if TALLY_BENCH_STORE
static int ts_create(struct sb_run *run)
{
    tally_store *s;
    struct tally_store_config cfg = {TALLY_STORE_CREATE, 0600, 0};
    int rc = tally_store_open(&s, run->path, &cfg);
    if (rc != 0)
        return RUN_FAIL(run, "tally_store_open(%s): %s", run->path,
                        tally_strerror(rc));
    for (size_t i = 0; i < run->nkeys && rc == 0; i++)
        rc = tally_store_add_n(s, run->keys[i].s, run->keys[i].len, 0);
    tally_store_close(s);
    return rc == 0 ? 0 : RUN_FAIL(run, "preload: %s", tally_strerror(rc));
}

static int ts_proc_open(struct sb_run *run)
{
    tally_store *s;
    int rc = tally_store_open(&s, run->path, NULL);
    if (rc != 0)
        return RUN_FAIL(run, "tally_store_open: %s", tally_strerror(rc));
    run->proc_state = s;
    return 0;
}

static void ts_proc_close(struct sb_run *run)
{
    tally_store_close(run->proc_state);
    run->proc_state = NULL;
}

static void ts_work(struct sb_thread *th)
{
    tally_store *s = th->run->proc_state;
    uint64_t fails = 0;
    SB_RUN(th, 256, fails += tally_store_add_n(s, k->s, k->len, 1) != 0);
    th->errors += fails;
}

static int tsh_thread_open(struct sb_thread *th)
{
    struct sb_run *run = th->run;
    tally_store_handle **h = calloc(run->nkeys, sizeof(*h));
    if (h == NULL)
        return TH_FAIL(th, "out of memory");
    th->conn = h;
    for (size_t i = 0; i < run->nkeys; i++) {
        int rc = tally_store_handle_new_n(run->proc_state, run->keys[i].s,
                                          run->keys[i].len, &h[i]);
        if (rc != 0)
            return TH_FAIL(th, "handle for %s: %s", run->keys[i].s,
                           tally_strerror(rc));
    }
    return 0;
}

static void tsh_thread_close(struct sb_thread *th)
{
    tally_store_handle **h = th->conn;
    for (size_t i = 0; h != NULL && i < th->run->nkeys; i++)
        tally_store_handle_release(h[i]);
    free(h);
    th->conn = NULL;
}

static void tsh_work(struct sb_thread *th)
{
    tally_store_handle *const *h = th->conn;
    SB_RUN(th, 256, tally_store_handle_inc(h[idx]));
}

/* The parent's own store for the checks, opened on first use (the
 * parent never runs proc_open, so proc_state is free in it). */
static tally_store *ts_parent(struct sb_run *run)
{
    if (run->proc_state == NULL &&
        tally_store_open((tally_store **)&run->proc_state, run->path,
                         NULL) != 0)
        run->proc_state = NULL;
    return run->proc_state;
}

static int64_t ts_value(struct sb_run *run, size_t i, int *present)
{
    tally_store *s = ts_parent(run);
    int64_t v = 0;
    *present = s != NULL && tally_store_get_n(s, run->keys[i].s,
                                              run->keys[i].len, &v) == 0;
    return v;
}

static int64_t ts_size(struct sb_run *run)
{
    tally_store *s = ts_parent(run);
    return s != NULL ? (int64_t)tally_store_size(s) : -1;
}

static void ts_destroy(struct sb_run *run)
{
    tally_store_close(run->proc_state);
    run->proc_state = NULL;
}

#define TS_SKIP NULL
#else
static const char *ts_skip(void)
{
    return "tally_store is not complete in this build yet (src/ lacks "
           "some of the store calls store-bench makes; cmake names them)";
}
#define TS_SKIP ts_skip
#define ts_create NULL
#define ts_proc_open NULL
#define ts_proc_close NULL
#define ts_work NULL
#define tsh_thread_open NULL
#define tsh_thread_close NULL
#define tsh_work NULL
#define ts_value NULL
#define ts_size NULL
#define ts_destroy NULL
#endif

/* ---- shm_atomic ---------------------------------------------------------- */

/* One counter per 64-byte slot (as nginx spaces its shared counters), so
 * that two keys never share a line; the table's slot position i is the
 * file's slot i. */
#define SHM_SLOT 64

static _Atomic(int64_t) *shm_counter(struct sb_run *run, size_t pos)
{
    return (_Atomic(int64_t) *)(void *)(run->slots + SHM_SLOT * pos);
}

static int shm_create(struct sb_run *run)
{
    if (ref_table_init(&run->names) != 0)
        return RUN_FAIL(run, "out of memory");
    for (size_t i = 0; i < run->nkeys; i++)
        if (ref_table_insert(&run->names, run->keys[i].s,
                             run->keys[i].len) == NULL)
            return RUN_FAIL(run, "out of memory");
    run->slots_len = SHM_SLOT * (run->names.mask + 1);
    int fd = open(run->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return RUN_FAIL(run, "open %s: %s", run->path, strerror(errno));
    if (ftruncate(fd, (off_t)run->slots_len) != 0) {
        close(fd);
        return RUN_FAIL(run, "ftruncate: %s", strerror(errno));
    }
    void *p = mmap(NULL, run->slots_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return RUN_FAIL(run, "mmap: %s", strerror(errno));
    run->slots = p; /* zero-filled by ftruncate: every counter at 0 */
    return 0;
}

static void shm_work(struct sb_thread *th)
{
    struct sb_run *run = th->run;
    const struct ref_table *names = &run->names;
    uint64_t fails = 0;
    SB_RUN(th, 256, {
        const struct ref_slot *s = ref_table_find(names, k->s, k->len);
        if (s != NULL)
            atomic_fetch_add_explicit(
                shm_counter(run, (size_t)(s - names->slot)), 1,
                memory_order_relaxed);
        else
            fails++;
    });
    th->errors += fails;
}

static int64_t shm_value(struct sb_run *run, size_t i, int *present)
{
    const struct ref_slot *s =
        ref_table_find(&run->names, run->keys[i].s, run->keys[i].len);
    *present = s != NULL;
    return s ? atomic_load_explicit(
                   shm_counter(run, (size_t)(s - run->names.slot)),
                   memory_order_relaxed)
             : 0;
}

static int64_t shm_size(struct sb_run *run)
{
    return (int64_t)run->names.n;
}

static void shm_destroy(struct sb_run *run)
{
    if (run->slots != NULL)
        munmap(run->slots, run->slots_len);
    ref_table_free(&run->names);
}

/* ---- Redis ---------------------------------------------------------------- */

/* The first executable called name on $PATH, into buf; 0 or -1. */
static int find_in_path(const char *name, char *buf, size_t cap)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && (size_t)snprintf(buf, cap, "%.*s/%s", (int)n, path,
                                      name) < cap &&
            access(buf, X_OK) == 0)
            return 0;
        path += n + (path[n] == ':');
    }
    return -1;
}

#if TALLY_BENCH_HIREDIS
static const char *redis_skip(void)
{
    char buf[512];
    if (find_in_path("redis-server", buf, sizeof buf) != 0)
        return "redis-server not found (apt-get install redis-server, or "
               "scripts/bench-deps.sh)";
    return NULL;
}

/* A loopback port nobody listens on now (the kernel's pick); 0 on error.
 * Another process may take it before redis-server does: start_redis then
 * fails and the caller tries again. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static redisContext *redis_connect(struct sb_run *run)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", run->port, tv);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    return c;
}

static void stop_redis(struct sb_run *run)
{
    if (run->server > 0) {
        kill(run->server, SIGTERM);
        waitpid(run->server, NULL, 0);
        run->server = 0;
    }
}

/* Starts our own redis-server on a free loopback port, no persistence,
 * and waits until it answers PING. */
static int start_redis(struct sb_run *run)
{
    char exe[512], port[16];
    if (find_in_path("redis-server", exe, sizeof exe) != 0)
        return RUN_FAIL(run, "redis-server not found");
    for (int attempt = 0; attempt < 5; attempt++) {
        run->port = free_port();
        if (run->port == 0)
            return RUN_FAIL(run, "no free loopback port");
        snprintf(port, sizeof port, "%d", run->port);
        pid_t pid = fork();
        if (pid < 0)
            return RUN_FAIL(run, "fork: %s", strerror(errno));
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
                dup2(null, 2);
            }
            execl(exe, exe, "--port", port, "--bind", "127.0.0.1",
                  "--save", "", "--appendonly", "no", "--dir", run->dir,
                  "--daemonize", "no", "--protected-mode", "yes",
                  (char *)NULL);
            _exit(127);
        }
        run->server = pid;
        for (int i = 0; i < 500; i++) { /* up to 5 s */
            redisContext *c = redis_connect(run);
            if (c != NULL) {
                redisReply *r = redisCommand(c, "PING");
                int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
                if (r != NULL)
                    freeReplyObject(r);
                redisFree(c);
                if (ok)
                    return 0;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid) { /* it exited */
                run->server = 0;
                break;
            }
            sleep_s(0.01);
        }
        stop_redis(run);
    }
    return RUN_FAIL(run, "redis-server did not start");
}

static int redis_create(struct sb_run *run)
{
    if (start_redis(run) != 0)
        return -1;
    redisContext *c = redis_connect(run);
    if (c == NULL)
        return RUN_FAIL(run, "cannot connect to our redis-server");
    int rc = 0;
    for (size_t i = 0; i < run->nkeys && rc == 0; i++) {
        redisReply *r = redisCommand(c, "SET %b 0", run->keys[i].s,
                                     run->keys[i].len);
        rc = r != NULL && r->type == REDIS_REPLY_STATUS ? 0 : -1;
        if (r != NULL)
            freeReplyObject(r);
    }
    redisFree(c);
    return rc == 0 ? 0 : RUN_FAIL(run, "SET failed");
}

static int redis_proc_open(struct sb_run *run)
{
    run->proc_state = redis_connect(run);
    pthread_mutex_init(&run->conn_lock, NULL);
    return run->proc_state ? 0 : RUN_FAIL(run, "cannot connect");
}

static void redis_proc_close(struct sb_run *run)
{
    if (run->proc_state != NULL)
        redisFree(run->proc_state);
    run->proc_state = NULL;
    pthread_mutex_destroy(&run->conn_lock);
}

static void redis_work(struct sb_thread *th)
{
    struct sb_run *run = th->run;
    redisContext *c = run->proc_state;
    uint64_t fails = 0;
    SB_RUN(th, 1, {
        pthread_mutex_lock(&run->conn_lock);
        redisReply *r = redisCommand(c, "INCR %b", k->s, k->len);
        pthread_mutex_unlock(&run->conn_lock);
        fails += r == NULL || r->type != REDIS_REPLY_INTEGER;
        if (r != NULL)
            freeReplyObject(r);
    });
    th->errors += fails;
}

static void redis_pipe_work(struct sb_thread *th)
{
    struct sb_run *run = th->run;
    redisContext *c = run->proc_state;
    const struct bench_key *keys = run->keys;
    const size_t mask = run->nkeys - 1;
    uint64_t rng = (uint64_t)th->global + 1, n = 0, fails = 0;
    while (!atomic_load_explicit(&run->ctl->stop, memory_order_relaxed)) {
        pthread_mutex_lock(&run->conn_lock);
        for (int i = 0; i < PIPELINE; i++) {
            size_t idx = 0;
            if (mask != 0)
                idx = BENCH_UNIFORM_INDEX(bench_rng_next(&rng), mask);
            fails += redisAppendCommand(c, "INCR %b", keys[idx].s,
                                        keys[idx].len) != REDIS_OK;
        }
        for (int i = 0; i < PIPELINE; i++) {
            void *reply = NULL;
            if (redisGetReply(c, &reply) != REDIS_OK || reply == NULL) {
                fails++;
                continue;
            }
            fails += ((redisReply *)reply)->type != REDIS_REPLY_INTEGER;
            freeReplyObject(reply);
        }
        pthread_mutex_unlock(&run->conn_lock);
        n += PIPELINE;
    }
    th->ops = n;
    th->errors += fails;
}

/* The parent's connection for the checks, made on first use. */
static redisContext *redis_parent(struct sb_run *run)
{
    if (run->proc_state == NULL)
        run->proc_state = redis_connect(run);
    return run->proc_state;
}

static int64_t redis_value(struct sb_run *run, size_t i, int *present)
{
    redisContext *c = redis_parent(run);
    int64_t v = 0;
    *present = 0;
    redisReply *r = c ? redisCommand(c, "GET %b", run->keys[i].s,
                                     run->keys[i].len)
                      : NULL;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        *present = 1;
        v = strtoll(r->str, NULL, 10);
    }
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

static int64_t redis_size(struct sb_run *run)
{
    redisContext *c = redis_parent(run);
    int64_t n = -1;
    redisReply *r = c ? redisCommand(c, "DBSIZE") : NULL;
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        n = r->integer;
    if (r != NULL)
        freeReplyObject(r);
    return n;
}

static void redis_destroy(struct sb_run *run)
{
    if (run->proc_state != NULL)
        redisFree(run->proc_state);
    run->proc_state = NULL;
    stop_redis(run);
}
#else
static const char *redis_skip(void)
{
    return "hiredis not found at build time (apt-get install "
           "libhiredis-dev, then reconfigure)";
}
#define redis_create NULL
#define redis_proc_open NULL
#define redis_proc_close NULL
#define redis_work NULL
#define redis_pipe_work NULL
#define redis_value NULL
#define redis_size NULL
#define redis_destroy NULL
#endif

/* ---- SQLite ---------------------------------------------------------------- */

#if TALLY_BENCH_SQLITE
#define SQL_UPSERT                                                       \
    "INSERT INTO counters(k, v) VALUES (?1, 1) "                         \
    "ON CONFLICT(k) DO UPDATE SET v = v + 1"

static sqlite3 *sql_open(const char *path, char *why, size_t cap)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
                             SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 60000);
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; "
                          "PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        why_set(why, cap, "sqlite: %s", db ? sqlite3_errmsg(db)
                                           : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static int sql_create(struct sb_run *run)
{
    sqlite3 *db = sql_open(run->path, run->why, sizeof run->why);
    sqlite3_stmt *st = NULL;
    if (db == NULL)
        return -1;
    int rc = sqlite3_exec(db, "CREATE TABLE counters(k TEXT PRIMARY KEY, "
                          "v INTEGER NOT NULL) WITHOUT ROWID; BEGIN;",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO counters(k, v) "
                                "VALUES (?1, 0)", -1, &st, NULL);
    for (size_t i = 0; i < run->nkeys && rc == SQLITE_OK; i++) {
        sqlite3_bind_text(st, 1, run->keys[i].s, (int)run->keys[i].len,
                          SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        RUN_FAIL(run, "sqlite setup: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int sql_thread_open(struct sb_thread *th)
{
    sqlite3 *db = sql_open(th->run->path, th->why, sizeof th->why);
    sqlite3_stmt *st = NULL;
    if (db == NULL)
        return -1;
    th->conn = db;
    if (sqlite3_prepare_v2(db, SQL_UPSERT, -1, &st, NULL) != SQLITE_OK)
        return TH_FAIL(th, "prepare: %s", sqlite3_errmsg(db));
    th->stmt = st;
    return 0;
}

static void sql_thread_close(struct sb_thread *th)
{
    sqlite3_finalize(th->stmt);
    sqlite3_close(th->conn);
    th->stmt = th->conn = NULL;
}

static void sql_work(struct sb_thread *th)
{
    sqlite3_stmt *st = th->stmt;
    uint64_t fails = 0;
    SB_RUN(th, 1, {
        sqlite3_bind_text(st, 1, k->s, (int)k->len, SQLITE_STATIC);
        fails += sqlite3_step(st) != SQLITE_DONE;
        sqlite3_reset(st);
    });
    th->errors += fails;
}

/* One query on the parent's connection (opened on first use). */
static int64_t sql_query(struct sb_run *run, const char *sql, size_t key,
                         int *present)
{
    char why[64] = "";
    if (run->proc_state == NULL)
        run->proc_state = sql_open(run->path, why, sizeof why);
    sqlite3 *db = run->proc_state;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    *present = 0;
    if (db == NULL)
        return -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (key != SIZE_MAX)
            sqlite3_bind_text(st, 1, run->keys[key].s,
                              (int)run->keys[key].len, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            v = sqlite3_column_int64(st, 0);
            *present = 1;
        }
    }
    sqlite3_finalize(st);
    return v;
}

static int64_t sql_value(struct sb_run *run, size_t i, int *present)
{
    return sql_query(run, "SELECT v FROM counters WHERE k = ?1", i, present);
}

static int64_t sql_size(struct sb_run *run)
{
    int present;
    return sql_query(run, "SELECT count(*) FROM counters", SIZE_MAX,
                     &present);
}

static void sql_destroy(struct sb_run *run)
{
    sqlite3_close(run->proc_state);
    run->proc_state = NULL;
}
#define SQL_SKIP NULL
#else
static const char *sql_skip(void)
{
    return "SQLite not found at build time (apt-get install "
           "libsqlite3-dev, then reconfigure)";
}
#define SQL_SKIP sql_skip
#define sql_create NULL
#define sql_thread_open NULL
#define sql_thread_close NULL
#define sql_work NULL
#define sql_value NULL
#define sql_size NULL
#define sql_destroy NULL
#endif

/* ---- the table ---------------------------------------------------------- */

static const struct sb_impl impls[] = {
    {.name = "tally_store", .skip_reason = TS_SKIP, .batch = 256,
     .create = ts_create, .proc_open = ts_proc_open,
     .proc_close = ts_proc_close, .work = ts_work, .value = ts_value,
     .size = ts_size, .destroy = ts_destroy},
    {.name = "tally_store_handle", .skip_reason = TS_SKIP, .batch = 256,
     .create = ts_create, .proc_open = ts_proc_open,
     .proc_close = ts_proc_close, .thread_open = tsh_thread_open,
     .thread_close = tsh_thread_close, .work = tsh_work, .value = ts_value,
     .size = ts_size, .destroy = ts_destroy},
    {.name = "shm_atomic", .batch = 256, .create = shm_create,
     .work = shm_work, .value = shm_value, .size = shm_size,
     .destroy = shm_destroy},
    {.name = "redis_incr", .skip_reason = redis_skip, .batch = 1,
     .create = redis_create, .proc_open = redis_proc_open,
     .proc_close = redis_proc_close, .work = redis_work,
     .value = redis_value, .size = redis_size, .destroy = redis_destroy},
    {.name = "redis_incr_pipe", .skip_reason = redis_skip,
     .batch = PIPELINE, .create = redis_create,
     .proc_open = redis_proc_open, .proc_close = redis_proc_close,
     .work = redis_pipe_work, .value = redis_value, .size = redis_size,
     .destroy = redis_destroy},
    {.name = "sqlite_upsert", .skip_reason = SQL_SKIP, .batch = 1,
     .create = sql_create, .thread_open = sql_thread_open,
     .thread_close = sql_thread_close, .work = sql_work,
     .value = sql_value, .size = sql_size, .destroy = sql_destroy},
};
#define NIMPLS (sizeof(impls) / sizeof(impls[0]))

/* ---- one process ---------------------------------------------------------- */

static pthread_barrier_t proc_start;

static void *thread_main(void *arg)
{
    struct sb_thread *th = arg;
    const struct sb_impl *impl = th->run->impl;
    int ok = impl->thread_open == NULL || impl->thread_open(th) == 0;
    pthread_barrier_wait(&proc_start); /* 1: opened */
    pthread_barrier_wait(&proc_start); /* 2: go */
    if (ok)
        impl->work(th);
    else
        th->errors++;
    if (impl->thread_close != NULL)
        impl->thread_close(th);
    return NULL;
}

/* The child: opens, starts its threads, reports ready on `ready`, waits
 * for a byte on `go`, runs, reports on `results`. Never returns. */
static void child_main(struct sb_run *run, unsigned proc, int ready, int go,
                       int results)
{
    const struct sb_impl *impl = run->impl;
    struct sb_report rep;
    struct sb_thread *ths = NULL;
    pthread_t tids[MAX_THREADS];
    unsigned started = 0;
    char byte = 'r';

    memset(&rep, 0, sizeof(rep));
    rep.proc = proc;
    if (impl->proc_open != NULL && impl->proc_open(run) != 0) {
        rep.failed = 1;
        snprintf(rep.why, sizeof rep.why, "process %u: %.120s", proc,
                 run->why);
    }
    if (!rep.failed &&
        posix_memalign((void **)&ths, 64, run->threads * sizeof(*ths)) != 0)
        rep.failed = 1;
    if (!rep.failed) {
        memset(ths, 0, run->threads * sizeof(*ths));
        pthread_barrier_init(&proc_start, NULL, run->threads + 1);
        for (; started < run->threads; started++) {
            ths[started].run = run;
            ths[started].proc = proc;
            ths[started].index = started;
            ths[started].global = proc * run->threads + started;
            if (pthread_create(&tids[started], NULL, thread_main,
                               &ths[started]) != 0) {
                /* the barrier cannot be reached: give up loudly */
                fprintf(stderr, "store-bench: pthread_create failed\n");
                _exit(1);
            }
        }
        pthread_barrier_wait(&proc_start); /* every thread opened */
    }
    /* Closing our end as soon as we wrote lets the parent see EOF, not
     * wait forever, if a process died before reporting ready. */
    if (write(ready, &byte, 1) != 1)
        _exit(1);
    close(ready);
    if (read(go, &byte, 1) != 1)
        _exit(1);
    if (!rep.failed) {
        pthread_barrier_wait(&proc_start); /* go */
        for (unsigned i = 0; i < started; i++)
            pthread_join(tids[i], NULL);
        for (unsigned i = 0; i < started; i++) {
            rep.ops[i] = ths[i].ops;
            rep.errors += ths[i].errors;
            if (ths[i].why[0] != '\0' && rep.why[0] == '\0')
                snprintf(rep.why, sizeof rep.why,
                         "process %u thread %u: %.120s", proc, i, ths[i].why);
        }
        pthread_barrier_destroy(&proc_start);
        if (impl->proc_close != NULL)
            impl->proc_close(run);
    }
    ssize_t n = write(results, &rep, sizeof(rep));
    _exit(n == (ssize_t)sizeof(rep) ? 0 : 1);
}

/* ---- one cell --------------------------------------------------------------- */

static int check_cell(struct sb_run *run, const uint64_t *ops, char *why,
                      size_t cap)
{
    uint64_t *expected = calloc(run->nkeys, sizeof(*expected));
    if (expected == NULL)
        return why_set(why, cap, "out of memory for the check");
    for (unsigned g = 0; g < run->procs * run->threads; g++) {
        if (run->nkeys == 1) {
            expected[0] += ops[g];
            continue;
        }
        uint64_t rng = (uint64_t)g + 1;
        for (uint64_t n = 0; n < ops[g]; n++)
            expected[BENCH_UNIFORM_INDEX(bench_rng_next(&rng),
                                         run->nkeys - 1)]++;
    }
    int rc = 0;
    for (size_t i = 0; i < run->nkeys && rc == 0; i++) {
        int present;
        int64_t v = run->impl->value(run, i, &present);
        if (!present || v != (int64_t)expected[i])
            rc = why_set(why, cap, "key %s holds %" PRId64 " (%s), expected %"
                         PRIu64, run->keys[i].s, v,
                         present ? "present" : "absent", expected[i]);
    }
    int64_t size = run->impl->size(run);
    if (rc == 0 && size != (int64_t)run->nkeys)
        rc = why_set(why, cap, "%" PRId64 " keys, expected %zu", size,
                     run->nkeys);
    free(expected);
    return rc;
}

static int make_dir(struct sb_run *run)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(run->dir, sizeof run->dir, "%s/tally-store-bench.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(run->dir) == NULL)
        return RUN_FAIL(run, "mkdtemp: %s", strerror(errno));
    snprintf(run->path, sizeof run->path, "%s/counters", run->dir);
    return 0;
}

/* Removes our folder and every file the implementations left in it
 * (SQLite's -wal and -shm, anything a store or redis-server made). */
static void remove_dir(struct sb_run *run)
{
    if (run->dir[0] == '\0')
        return;
    DIR *d = opendir(run->dir);
    struct dirent *e;
    char p[600];
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", run->dir, e->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(run->dir);
}

static int run_cell(struct sb_run *run, unsigned rep)
{
    const struct sb_impl *impl = run->impl;
    int ready[2] = {-1, -1}, go[2] = {-1, -1}, results[2] = {-1, -1};
    pid_t pids[MAX_PROCS];
    unsigned forked = 0;
    uint64_t ops[MAX_PROCS * MAX_THREADS];
    uint64_t errors = 0, total = 0;
    char why[512] = "";
    double secs = 0;
    int status = 0;

    memset(ops, 0, sizeof(ops));
    run->ctl = mmap(NULL, sizeof(struct sb_ctl), PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (run->ctl == MAP_FAILED || make_dir(run) != 0 ||
        pipe(ready) != 0 || pipe(go) != 0 || pipe(results) != 0) {
        fprintf(stderr, "store-bench: setup: %s\n",
                run->why[0] ? run->why : strerror(errno));
        return 1;
    }
    atomic_init(&run->ctl->stop, 0);
    if (impl->create(run) != 0) {
        fprintf(stderr, "store-bench: %s: %s\n", impl->name, run->why);
        status = 1;
        goto out;
    }
    fflush(stdout);
    fflush(stderr);
    for (; forked < run->procs; forked++) {
        pid_t pid = fork();
        if (pid < 0) {
            why_set(why, sizeof why, "fork: %s", strerror(errno));
            break;
        }
        if (pid == 0) {
            close(ready[0]);
            close(go[1]);
            close(results[0]);
            child_main(run, forked, ready[1], go[0], results[1]);
        }
        pids[forked] = pid;
    }
    close(ready[1]);
    close(go[0]);
    close(results[1]);
    ready[1] = go[0] = results[1] = -1;

    char byte;
    unsigned nready = 0;
    while (nready < forked && read(ready[0], &byte, 1) == 1)
        nready++;
    double t0 = now_s();
    for (unsigned i = 0; i < forked; i++)
        if (write(go[1], "g", 1) != 1)
            why_set(why, sizeof why, "cannot start the processes");
    sleep_s(run->seconds);
    atomic_store_explicit(&run->ctl->stop, 1, memory_order_relaxed);
    unsigned reported = 0;
    struct sb_report r;
    while (reported < forked &&
           read(results[0], &r, sizeof(r)) == (ssize_t)sizeof(r)) {
        reported++;
        if (r.failed || r.why[0] != '\0')
            why_set(why, sizeof why, "%s", r.why[0] ? r.why
                                                    : "a process failed");
        errors += r.errors;
        for (unsigned i = 0; i < run->threads && r.proc < run->procs; i++)
            ops[r.proc * run->threads + i] = r.ops[i];
    }
    secs = now_s() - t0;
    for (unsigned i = 0; i < forked; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            why_set(why, sizeof why, "process %u exited badly (status %d)",
                    i, st);
    }
    if (reported != run->procs)
        why_set(why, sizeof why, "%u of %u processes reported", reported,
                run->procs);
    if (errors != 0)
        why_set(why, sizeof why, "%" PRIu64 " operations failed", errors);
    for (unsigned g = 0; g < run->procs * run->threads; g++)
        total += ops[g];
    if (why[0] == '\0')
        check_cell(run, ops, why, sizeof why);

    printf("%s,%s,%u,%u,%u,%.4f,%" PRIu64 ",%.6f,%s,-\n", impl->name,
           sb_workload_names[run->workload], run->procs, run->threads, rep,
           secs, total, secs > 0 ? (double)total / secs / 1e6 : 0.0,
           why[0] ? "FAIL" : "ok");
    fflush(stdout);
    if (why[0]) {
        fprintf(stderr, "check=FAIL %s %s procs=%u threads=%u rep=%u: %s\n",
                impl->name, sb_workload_names[run->workload], run->procs,
                run->threads, rep, why);
        status = 1;
    }
out:
    if (impl->destroy != NULL)
        impl->destroy(run);
    remove_dir(run);
    for (int i = 0; i < 2; i++) {
        if (ready[i] >= 0)
            close(ready[i]);
        if (go[i] >= 0)
            close(go[i]);
        if (results[i] >= 0)
            close(results[i]);
    }
    munmap(run->ctl, sizeof(struct sb_ctl));
    return status;
}

/* ---- --export ---------------------------------------------------------- */

#if TALLY_BENCH_STORE
struct fmt_buf {
    char *p;
    size_t len, cap;
    uint64_t keys;
    int64_t sum;
};

static int fmt_visit(void *ctx, const void *key, size_t len, int64_t value)
{
    struct fmt_buf *b = ctx;
    if (b->cap - b->len < len + 32) {
        size_t cap = b->cap ? 2 * b->cap : 1 << 20;
        while (cap - b->len < len + 32)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, key, len);
    b->len += len;
    b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len,
                               ",%" PRId64 "\n", value);
    b->keys++;
    b->sum += value;
    return 0;
}

/* Runs argv with stdout into a pipe that we drain; returns the seconds
 * it took (or -1), and the bytes and lines it wrote. */
static double run_tool(char *const argv[], uint64_t *bytes, uint64_t *lines)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    char buf[1 << 16];
    ssize_t n;
    *bytes = *lines = 0;
    while ((n = read(p[0], buf, sizeof buf)) > 0) {
        *bytes += (uint64_t)n;
        for (ssize_t i = 0; i < n; i++)
            *lines += buf[i] == '\n';
    }
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    double secs = now_s() - t0;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? secs : -1;
}

static int export_bench(size_t nkeys, const char *tally)
{
    struct sb_run run;
    memset(&run, 0, sizeof(run));
    if (make_dir(&run) != 0) {
        fprintf(stderr, "store-bench: %s\n", run.why);
        return 1;
    }
    tally_store *s = NULL;
    struct tally_store_config cfg = {TALLY_STORE_CREATE, 0600, 0};
    int rc = tally_store_open(&s, run.path, &cfg);
    char key[32];
    double t0 = now_s();
    for (size_t i = 0; i < nkeys && rc == 0; i++)
        rc = tally_store_add_n(s, key, bench_memory_key(key, i), 1);
    double insert_s = now_s() - t0;
    if (rc != 0) {
        fprintf(stderr, "store-bench: --export: %s\n", tally_strerror(rc));
        if (s != NULL)
            tally_store_close(s);
        remove_dir(&run);
        return 1;
    }
    struct stat st;
    struct tally_store_info info;
    int status = 0;
    memset(&info, 0, sizeof(info));
    tally_store_info(s, &info);
    stat(run.path, &st);
    const char *ok = tally_store_size(s) == nkeys ? "ok" : "FAIL";
    printf("what,keys,value,unit,check\n");
    printf("insert_s,%zu,%.3f,s to create the keys (one thread),%s\n",
           nkeys, insert_s, ok);
    printf("file_bytes_per_key,%zu,%.1f,file size / keys,%s\n", nkeys,
           (double)st.st_size / (double)nkeys, ok);
    printf("disk_bytes_per_key,%zu,%.1f,blocks used / keys,%s\n", nkeys,
           (double)st.st_blocks * 512.0 / (double)nkeys, ok);
    printf("used_bytes_per_key,%zu,%.1f,tally_store_info used_bytes / "
           "keys,%s\n", nkeys, (double)info.used_bytes / (double)nkeys, ok);
    status |= ok[0] != 'o';

    struct fmt_buf b = {NULL, 0, 0, 0, 0};
    t0 = now_s();
    rc = tally_store_foreach(s, fmt_visit, &b);
    double fe_s = now_s() - t0;
    ok = rc == 0 && b.keys == nkeys && b.sum == (int64_t)nkeys ? "ok"
                                                               : "FAIL";
    printf("foreach_format_s,%zu,%.3f,s for tally_store_foreach into "
           "key-value lines (%zu bytes),%s\n", nkeys, fe_s, b.len, ok);
    status |= ok[0] != 'o';
    free(b.p);
    tally_store_close(s);

    if (tally != NULL) {
        char *ex[] = {(char *)tally, "export", run.path, "--format", "csv",
                      NULL};
        char *ls[] = {(char *)tally, "ls", run.path, NULL};
        char **argv[] = {ex, ls};
        for (size_t i = 0; i < 2; i++) {
            uint64_t bytes, lines;
            double secs = run_tool(argv[i], &bytes, &lines);
            ok = secs >= 0 && lines >= nkeys ? "ok" : "FAIL";
            printf("tally_%s_s,%zu,%.3f,s for 'tally %s' into a pipe "
                   "(%" PRIu64 " lines),%s\n", argv[i][1], nkeys, secs,
                   i == 0 ? "export FILE --format csv" : "ls FILE", lines,
                   ok);
            status |= ok[0] != 'o';
        }
    }
    remove_dir(&run);
    return status;
}
#endif

/* ---- command line --------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: store-bench --impl NAME --workload hot|keys1024 --procs P\n"
        "                   --threads T --seconds S --rep R\n"
        "       store-bench --export --keys N [--tally PATH]\n"
        "       store-bench --list | --header\n");
}

int main(int argc, char **argv)
{
    const char *impl_name = NULL, *workload = NULL, *tally = NULL;
    unsigned long procs = 1, threads = 1, rep = 1, keys = 1000000;
    double seconds = 1.0;
    int export = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        int bad = 0;
        if (strcmp(a, "--list") == 0) {
            for (size_t j = 0; j < NIMPLS; j++) {
                const char *skip = impls[j].skip_reason
                                       ? impls[j].skip_reason()
                                       : NULL;
                printf("%s\thot,keys1024\t%s%s\n", impls[j].name,
                       skip ? "skip: " : "ok", skip ? skip : "");
            }
            return 0;
        } else if (strcmp(a, "--header") == 0) {
            printf("impl,workload,procs,threads,rep,seconds,ops,mops,check,"
                   "extra\n");
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--export") == 0) {
            export = 1;
            continue;
        } else if (v == NULL) {
            bad = 1;
        } else if (strcmp(a, "--impl") == 0) {
            impl_name = v;
        } else if (strcmp(a, "--workload") == 0) {
            workload = v;
        } else if (strcmp(a, "--tally") == 0) {
            tally = v;
        } else if (strcmp(a, "--procs") == 0) {
            procs = strtoul(v, &end, 10);
            bad = procs < 1 || procs > MAX_PROCS;
        } else if (strcmp(a, "--threads") == 0) {
            threads = strtoul(v, &end, 10);
            bad = threads < 1 || threads > MAX_THREADS;
        } else if (strcmp(a, "--rep") == 0) {
            rep = strtoul(v, &end, 10);
        } else if (strcmp(a, "--keys") == 0) {
            keys = strtoul(v, &end, 10);
            bad = keys < 1 || keys > 100000000;
        } else if (strcmp(a, "--seconds") == 0) {
            seconds = strtod(v, &end);
            bad = !(seconds > 0 && seconds < 3600);
        } else {
            bad = 1;
        }
        if (bad || (end != NULL && *end != '\0')) {
            fprintf(stderr, "store-bench: bad or unknown option %s%s%s\n", a,
                    v ? " " : "", v ? v : "");
            usage(stderr);
            return 2;
        }
        i++;
    }

    if (export) {
        (void)tally;
#if TALLY_BENCH_STORE
        return export_bench(keys, tally);
#else
        fprintf(stderr, "skip: %s\n", ts_skip());
        return EXIT_SKIP;
#endif
    }
    if (impl_name == NULL || workload == NULL) {
        usage(stderr);
        return 2;
    }
    const struct sb_impl *impl = NULL;
    for (size_t j = 0; j < NIMPLS; j++)
        if (strcmp(impls[j].name, impl_name) == 0)
            impl = &impls[j];
    int w = strcmp(workload, "hot") == 0        ? SB_HOT
            : strcmp(workload, "keys1024") == 0 ? SB_KEYS1024
                                                : -1;
    if (impl == NULL || w < 0) {
        fprintf(stderr, "store-bench: unknown %s '%s' (see --list)\n",
                impl == NULL ? "impl" : "workload",
                impl == NULL ? impl_name : workload);
        return 2;
    }
    if (impl->skip_reason != NULL && impl->skip_reason() != NULL) {
        fprintf(stderr, "skip: %s\n", impl->skip_reason());
        return EXIT_SKIP;
    }

    struct sb_run run;
    memset(&run, 0, sizeof(run));
    run.impl = impl;
    run.workload = (enum sb_workload)w;
    run.procs = (unsigned)procs;
    run.threads = (unsigned)threads;
    run.seconds = seconds;
    if (w == SB_HOT) {
        run.hot.s = "somekey";
        run.hot.len = strlen(run.hot.s);
        run.keys = &run.hot;
        run.nkeys = 1;
    } else {
        run.nkeys = 1024;
        run.keys = bench_keys_make(run.nkeys);
        if (run.keys == NULL) {
            fprintf(stderr, "store-bench: out of memory\n");
            return 1;
        }
    }
    /* A reader of our pipes that died must not kill us with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    int status = run_cell(&run, (unsigned)rep);
    if (run.keys != &run.hot)
        bench_keys_free(run.keys);
    return status;
}
