/*
 * tally.h - exact counters for code where many threads count at once.
 *
 * This is tally's one public header. Read it top to bottom:
 *
 *   1. errors and limits
 *   2. tally_counter  one lock-free 64-bit counter, a plain struct
 *   3. tally_adder    a counter whose adds scale with cores
 *   4. tally_map      string-keyed counters (the article's SafeCounter)
 *   5. tally_store    keyed counters in a file that processes share
 *   6. exposition     Prometheus text and OpenMetrics output
 *   7. inline fast paths for the adds (how they work; not API)
 *
 * Conventions used by every call:
 *
 *   - Fallible calls return int: 0 on success or a negative errno value
 *     (-EINVAL, -ENOMEM, ...); tally_strerror() turns one into text. A call
 *     that fails has changed nothing.
 *   - The library never aborts, exits or prints, and needs only libc and
 *     pthreads.
 *   - Values are int64_t and wrap in two's complement on overflow
 *     (INT64_MAX + 1 == INT64_MIN), as Go's atomic.Int64 and Java's
 *     AtomicLong/LongAdder do. No overflow is ever undefined behaviour.
 *   - Counters order no other memory. An add is atomic and is never lost,
 *     but it is not a fence: do not use a tally counter to publish other
 *     data to another thread (use your own atomics or locks for that).
 *
 * The header compiles as C11 and as C++ (C++23 or later, where
 * <stdatomic.h> provides _Atomic(T)).
 */
#ifndef TALLY_H
#define TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#include <stdatomic.h> /* C++23: _Atomic(T) is std::atomic<T> */
extern "C" {
#else
#include <stdatomic.h>
#endif

#define TALLY_VERSION_MAJOR 0
#define TALLY_VERSION_MINOR 1
#define TALLY_VERSION_PATCH 0
#define TALLY_VERSION_STRING "0.1.0"

#if defined(_WIN32)
#define TALLY_API
#elif defined(__GNUC__)
#define TALLY_API __attribute__((visibility("default")))
#else
#define TALLY_API
#endif

/* ------------------------------------------------------------------ */
/* 1. Errors and limits                                                */
/* ------------------------------------------------------------------ */

/*
 * Returns a static, human-readable description of err, which is a value
 * returned by a tally call (0 or a negative errno). Never returns NULL;
 * unknown values give "unknown error". Thread-safe.
 */
TALLY_API const char *tally_strerror(int err);

/* The longest key, in bytes, that tally_map and tally_store accept. */
#define TALLY_KEY_MAX 4096

/*
 * tally's own error codes, for what no errno value names. Negative, like
 * the errno values, and far below them; tally_strerror() knows them.
 */
#define TALLY_ENOTSTORE (-20001) /* the file is not a tally store */
#define TALLY_EVERSION (-20002)  /* a store format version this library
                                    does not read */
#define TALLY_ELAYOUT (-20003)   /* a store made on a machine of another
                                    byte order or word size */
#define TALLY_ECORRUPT (-20004)  /* the store's structure is damaged */

/* ------------------------------------------------------------------ */
/* 2. tally_counter: one lock-free 64-bit counter                      */
/* ------------------------------------------------------------------ */

/*
 * A plain struct that can be embedded anywhere (a global, a struct field,
 * an array) with no allocation. Every operation is a single atomic
 * instruction: lock-free and wait-free on every 64-bit target tally
 * supports. Initialise with TALLY_COUNTER_INIT(v), with tally_counter_store,
 * or by zero-filling the memory.
 *
 * Ordering: every operation is relaxed (memory_order_relaxed). All threads
 * agree on one order of the operations on one counter, and each operation
 * sees the result of all those before it in that order, so nothing is
 * lost and cas/swap behave as expected; but an operation on a counter
 * does not order accesses to any other memory.
 *
 * This is the counter of choice when one thread (or a few) adds, or when
 * you need the new value back from an add. Under heavy contention from
 * many threads every add fights for one cache line; use tally_adder there.
 */
typedef struct tally_counter {
    _Atomic(int64_t) value;
} tally_counter;

#define TALLY_COUNTER_INIT(v) { (v) }

/* Adds delta and returns the new value (wrapping). */
TALLY_API int64_t tally_counter_add(tally_counter *c, int64_t delta);
/* Adds 1 and returns the new value. */
TALLY_API int64_t tally_counter_inc(tally_counter *c);
/* Subtracts 1 and returns the new value. */
TALLY_API int64_t tally_counter_dec(tally_counter *c);
/* Returns the current value. */
TALLY_API int64_t tally_counter_load(const tally_counter *c);
/* Sets the value. */
TALLY_API void tally_counter_store(tally_counter *c, int64_t v);
/* Sets the value to v and returns the value it replaced. swap(c, 0) reads
 * and resets at once: every add lands in exactly one swap's result or in
 * the value left. */
TALLY_API int64_t tally_counter_swap(tally_counter *c, int64_t v);
/* If the value is old_value, sets it to new_value and returns true;
 * otherwise changes nothing and returns false. Never fails spuriously. */
TALLY_API bool tally_counter_cas(tally_counter *c, int64_t old_value,
                                 int64_t new_value);

/* ------------------------------------------------------------------ */
/* 3. tally_adder: a counter whose adds scale with cores               */
/* ------------------------------------------------------------------ */

/*
 * Each thread that adds gets its own 8-byte cell for this adder, on a
 * cache line that only that thread writes; an add is a plain load and
 * store to that cell, with no locked instruction and no shared cache line.
 * Reads sum the cells. Cells of threads that exit are folded into a
 * shared total, so nothing is lost and memory stays bounded.
 *
 * Costs (bench/adder_costs): 40 bytes per adder at rest (a 32-byte heap
 * chunk and an 8-byte shared word), plus 8 bytes per adder in each thread
 * that has added to it (cells are allocated per thread in blocks of 1024,
 * shared by all adders, hot map keys and handles). A sum reads one cell per thread
 * that has used tally: a few ns with 2 threads, about 60 ns with 16.
 *
 * tally_adder_add and tally_adder_inc are inline (section 7): once the
 * thread has its cell, an add is a few instructions in the caller.
 *
 * Progress: adds are wait-free after a thread's first add to an adder
 * with a new cell block (which allocates). If that allocation fails the
 * add falls back to one atomic add on a shared total: still counted,
 * never an error. Reads never block adds.
 */
typedef struct tally_adder tally_adder;

/* Creates an adder at 0. Returns 0, -EINVAL (out is NULL) or -ENOMEM. */
TALLY_API int tally_adder_new(tally_adder **out);
/* Frees an adder. NULL is a no-op. No other call on a may run at the same
 * time or later. */
TALLY_API void tally_adder_free(tally_adder *a);
/* Adds delta. Never fails, never blocks once the thread has its cell. */
TALLY_API void tally_adder_add(tally_adder *a, int64_t delta);
/* Adds 1. */
TALLY_API void tally_adder_inc(tally_adder *a);
/* Returns the value: all adds minus all drained amounts. Exact when no
 * add is in flight; with concurrent adds it returns a value that counts
 * every add that finished before the call and some of those running
 * during it. Does not block adds; O(threads that have used tally). */
TALLY_API int64_t tally_adder_sum(tally_adder *a);
/* Returns the adds since the previous drain (the current value) and
 * resets the value to 0, atomically with respect to adds: every add is
 * counted by exactly one drain or by the value left. Drains serialise
 * with each other; they never block adds. */
TALLY_API int64_t tally_adder_drain(tally_adder *a);

/* ------------------------------------------------------------------ */
/* 4. tally_map: string-keyed counters                                 */
/* ------------------------------------------------------------------ */

/*
 * A concurrent map from byte-string keys (0..TALLY_KEY_MAX bytes) to 64-bit
 * counters: the article's SafeCounter, without the mutex. Calls that take
 * a C string use strlen(key) bytes; the _n variants take any bytes, NUL
 * included.
 *
 * Every call may run from any number of threads at once, except
 * tally_map_free. Adds and reads of existing keys are lock-free and never
 * wait for each other or for anything else; creating a key takes a
 * per-shard lock; removing one takes it briefly and never waits for adds.
 *
 * Costs (docs/design.md, docs/benchmarks.md): a key of up to 16 bytes and
 * its count live in one 32-byte table slot (about 50 bytes per key with
 * the table's free slots); an add to it by name is one hash, one probe
 * and one atomic add on that slot's cache line. A key that threads add to
 * at the same moment, or that one thread adds to many times in a row,
 * becomes "hot": it then also gets per-thread cells, as a tally_adder
 * does, and adds to it touch no shared cache line. Handles make their key
 * hot. Only hot keys cost memory per thread.
 *
 * Keys are hashed with a secret drawn from the OS for each map, so keys
 * chosen to collide against one map (or one run of a program) do not
 * collide in another, and the order foreach visits keys in differs from
 * run to run.
 *
 * Accounting rule: for every key, the sum of all successful adds (by key
 * or by handle) equals the sum of the values returned by remove, plus the
 * sum of the drained amounts, plus the value left (once tally_map_sync
 * has settled late adds; see tally_map_remove).
 *
 * Fork: a process that forks while other threads use a map (or an adder)
 * may go on making every call in the child, on everything it inherited
 * and on new objects; the child's values are the parent's at the fork
 * plus the child's own adds (pthread_atfork handlers take the library's
 * locks around the fork and forget the parent's other threads in the
 * child). Parent and child then count separately: nothing is shared after
 * the fork (tally_store is for counting across processes).
 */
typedef struct tally_map tally_map;

/* Creates an empty map. 0, -EINVAL (out NULL) or -ENOMEM. */
TALLY_API int tally_map_new(tally_map **out);
/* Frees the map and all its keys. NULL is a no-op. No other call on m may
 * run at the same time or later, and all its handles must be released. */
TALLY_API void tally_map_free(tally_map *m);

/* Adds delta to key, creating the key at 0 first if absent.
 * 0, -EINVAL (m or key NULL), -ENAMETOOLONG (key longer than
 * TALLY_KEY_MAX), -ENOMEM (the key was absent and could not be created;
 * nothing changed). Adds to an existing key never fail and never block. */
TALLY_API int tally_map_add(tally_map *m, const char *key, int64_t delta);
TALLY_API int tally_map_add_n(tally_map *m, const void *key, size_t len,
                              int64_t delta);
/* tally_map_add(m, key, 1): SafeCounter.Inc. */
TALLY_API int tally_map_inc(tally_map *m, const char *key);

/* SafeCounter.Value: the key's value, 0 when the key is absent or on bad
 * input. Use tally_map_get to tell those apart. */
TALLY_API int64_t tally_map_value(tally_map *m, const char *key);
/* Stores the key's value in *value. 0, -ENOENT (absent; *value untouched),
 * -EINVAL, -ENAMETOOLONG. Every add that returned before the call began
 * is in the value, except late adds of an earlier life (see remove). */
TALLY_API int tally_map_get(tally_map *m, const char *key, int64_t *value);
TALLY_API int tally_map_get_n(tally_map *m, const void *key, size_t len,
                              int64_t *value);

/* Removes key and stores its last value in *last_value (when not NULL):
 * the value at the moment of the remove, which counts every add that
 * returned before the remove began. Adds that raced with it (they found
 * the key before the remove and landed after) are "late adds": they are
 * not in the returned value; they are moved to the key's next life
 * (creating the key again if it is absent) once no add that found the
 * key can still be running, which the map checks when it next settles
 * the key's shard: at the shard's next insert, remove or handle call, at
 * the next foreach or drain, or at tally_map_sync, which waits for it.
 * Never waits for adds or readers; may be called from a foreach or drain
 * callback. 0, -ENOENT, -EINVAL, -ENAMETOOLONG, or -ENOMEM (no memory to
 * record the deferred work; nothing changed). */
TALLY_API int tally_map_remove(tally_map *m, const char *key,
                               int64_t *last_value);
TALLY_API int tally_map_remove_n(tally_map *m, const void *key, size_t len,
                                 int64_t *last_value);

/* The number of keys present. */
TALLY_API size_t tally_map_size(tally_map *m);

/* Waits for a grace period and finishes the work removes and table
 * growth deferred: late adds (adds that raced with a remove) are moved to
 * their key's next life, and memory is freed. After it returns, every add
 * that returned before the call is visible to get, foreach and drain.
 * Blocking; never needed for exactness. 0, -EINVAL, -EDEADLK (from inside
 * a foreach or drain callback, which it would wait for), -ENOMEM (some
 * late adds could not re-create their key; they are kept and retried),
 * -EIO (the OS no longer lets tally prove grace periods: see
 * docs/design.md; nothing is freed early). */
TALLY_API int tally_map_sync(tally_map *m);

/* A visitor: return 0 to go on, non-zero to stop (that value is returned
 * by the call that is visiting). key is valid only during the call. */
typedef int (*tally_visit_fn)(void *ctx, const void *key, size_t len,
                              int64_t value);

/* Calls fn for each key present: every key present for the whole call is
 * visited exactly once; keys added or removed during the call may or may
 * not be visited (a key removed and created again during the call may be
 * visited in both lives). For a key that is only ever incremented the
 * value seen lies between its values at the call's start and end.
 * Returns 0, fn's non-zero result, -EINVAL (m or fn NULL), or -ENOMEM (the
 * calling thread's first use of tally could not allocate its record;
 * nothing was visited). fn may make any call on any map (add, get,
 * remove, drain, foreach) except tally_map_sync (-EDEADLK) and
 * tally_map_free. A running foreach blocks nobody; it delays only the
 * freeing of memory that removes and growth left behind. Lock-free. */
TALLY_API int tally_map_foreach(tally_map *m, tally_visit_fn fn, void *ctx);

/* Like foreach, but passes each key's adds since the previous drain (its
 * current value) and resets that key to 0; keys whose amount is 0 are not
 * visited. Every add is counted exactly once by a drain, a remove, or the
 * value left, with any number of drains, removes and adds at once. Keys
 * stay present. Never blocks adds; takes a key's shard lock briefly only
 * for a hot key. Returns as foreach does. */
TALLY_API int tally_map_drain(tally_map *m, tally_visit_fn fn, void *ctx);

/*
 * Handles: resolve a key once, then count at nearly tally_adder speed
 * (the same inline add plus one load of the handle's dead flag). The key
 * becomes hot (per-thread cells).
 *
 * tally_map_handle creates the key at 0 if absent. A handle may be used
 * from any number of threads until it is released. If the key is removed
 * while a handle to it exists, later adds through the handle go to the
 * key's next life (they create the key again); adds through it that
 * raced with the remove reach the key's next life once the remove has
 * settled and the handle is released. Release every handle before
 * tally_map_free.
 */
typedef struct tally_handle tally_handle;

/* 0, -EINVAL, -ENAMETOOLONG, -ENOMEM. */
TALLY_API int tally_map_handle(tally_map *m, const char *key,
                               tally_handle **out);
TALLY_API int tally_map_handle_n(tally_map *m, const void *key, size_t len,
                                 tally_handle **out);
/* Adds delta to the handle's key. Never fails (if the key was removed and
 * cannot be created again for lack of memory, the add is kept in the
 * handle's cells and reaches the map when memory is there, after the
 * handle's release). */
TALLY_API void tally_handle_add(tally_handle *h, int64_t delta);
TALLY_API void tally_handle_inc(tally_handle *h);
/* Releases the handle (taking its key's shard lock briefly). NULL is a
 * no-op. */
TALLY_API void tally_handle_release(tally_handle *h);

/* ------------------------------------------------------------------ */
/* 5. tally_store: keyed counters in a file that processes share       */
/* ------------------------------------------------------------------ */

/*
 * A file that any number of processes map at once, each with any number
 * of threads, holding byte-string keys (0..TALLY_KEY_MAX bytes) with one
 * 64-bit counter each: the article's SafeCounter across processes. The
 * conventions are tally_map's: add/inc create a key at 0 first; the _n
 * variants take any bytes; values wrap in two's complement.
 *
 * Every call may run from any number of threads and processes at once,
 * except tally_store_close on the same tally_store. Adds to an existing
 * key take no lock and make no system call: by handle, one atomic
 * instruction; by name, a lookup first (a thread adding to the key it
 * added to last skips it), which maps the part of the file another
 * process grew the first time it meets it (one mmap, under a
 * process-local mutex). A key that many CPUs add to at once gets per-CPU
 * cells, so processes do not fight over one cache line; cold keys cost no
 * per-CPU memory. Creating a key is lock-free too (it may grow the file:
 * fallocate and mmap). Reads and foreach never wait for adds, nor adds
 * for them.
 *
 * Crash safety: a process may be killed (kill -9) at any instant. Every
 * add whose call returned is in the file; an add in flight counts once
 * or not at all; a key being created is either absent or whole; the file
 * stays readable and writable by every other process and by the next one
 * to open it. No lock is ever held in the file.
 *
 * Keys are never removed (docs/design.md says why); tally_store_drain
 * resets values. The file grows as keys are added and never shrinks, up
 * to a size limit fixed when it is created; past it, creating a key gives
 * -ENOSPC while existing keys keep counting.
 *
 * A process that forks after opening a store keeps counting into the
 * same file in parent and child (the mapping is shared); handles and the
 * tally_store object are usable in the child.
 *
 * Counts live in the page cache: they survive any process's death, not
 * the machine's (the file is not fsync'ed on every add).
 * docs/store-format.md describes the file.
 */
typedef struct tally_store tally_store;

/* Flags for struct tally_store_config. */
#define TALLY_STORE_CREATE 0x1u   /* create the file when it is absent */
#define TALLY_STORE_READONLY 0x2u /* map it read-only: reads and foreach
                                     work, writes give -EROFS */

/* The default size limit: 64 GiB of file, room for several hundred
 * million keys. Every process that opens a store reserves address space
 * for its whole limit (only what the file uses takes memory or disk), so
 * the limit also bounds how many stores a process can have open at once
 * (about 2000 of the default size in x86-64's 128 TiB, fewer under
 * ThreadSanitizer or a 'ulimit -v'). The largest limit is 16 TiB. */
#define TALLY_STORE_DEFAULT_MAX_BYTES ((uint64_t)1 << 36)

/* Options for tally_store_open. A NULL config means all zero: open an
 * existing store for reading and writing. */
struct tally_store_config {
    unsigned flags;     /* TALLY_STORE_* */
    unsigned mode;      /* permissions of a created file (the umask
                           applies); 0: 0644 */
    uint64_t max_bytes; /* the file's size limit, fixed at creation;
                           0: TALLY_STORE_DEFAULT_MAX_BYTES. Ignored when
                           the file exists. */
};

/* Opens (and with TALLY_STORE_CREATE creates) the store at path. Several
 * processes racing to create the same path end up sharing one store (the
 * file is built under no name and linked into place; a loser opens the
 * winner's). Returns 0, -EINVAL (out or path NULL, unknown flags, a mode
 * above 07777, or when creating a max_bytes below 64 KiB or above 16
 * TiB), -ENOENT (absent and not CREATE), -EACCES (e.g. read-write open of
 * a file we may only read: use TALLY_STORE_READONLY), -ENOMEM (no address
 * space for max_bytes), -ENOSPC, another negative errno from the system,
 * or, for a file it will not use: TALLY_ENOTSTORE (no store magic, or not
 * a regular file), TALLY_EVERSION (another format major version, or a
 * store made with another key hash function), TALLY_ELAYOUT (another byte
 * order, word size or alignment), TALLY_ECORRUPT (a damaged header, or a
 * file truncated below what it has allocated). Open reads only the
 * header; damage deeper in is found by the calls that meet it
 * (TALLY_ECORRUPT) and by tally_store_check. Never crashes on a damaged
 * or hostile file. (A file that another process truncates while it is
 * mapped raises SIGBUS on access, as any mapped file does; tally never
 * truncates.) */
TALLY_API int tally_store_open(tally_store **out, const char *path,
                               const struct tally_store_config *config);
/* Unmaps and frees. NULL is a no-op. No other call on s may run at the
 * same time or later; its handles must be released first. */
TALLY_API void tally_store_close(tally_store *s);

/* Adds delta to key, creating it at 0 first. 0, -EINVAL, -ENAMETOOLONG,
 * -EROFS, -ENOSPC (the key was absent and the file is at its limit, or
 * the file system is full), another negative errno from growing the file,
 * or TALLY_ECORRUPT (the index is damaged on the key's path). Adds to an
 * existing key never fail. A creation that fails has changed nothing a
 * reader can see (it may leave allocated space unused: see
 * tally_store_check). */
TALLY_API int tally_store_add(tally_store *s, const char *key,
                              int64_t delta);
TALLY_API int tally_store_add_n(tally_store *s, const void *key, size_t len,
                                int64_t delta);
TALLY_API int tally_store_inc(tally_store *s, const char *key);

/* tally_store_add and tally_store_inc take strlen in the caller, where
 * the compiler folds it for a literal key (as tally_map_add does, section
 * 7); the library's copies remain for &tally_store_add and for
 * TALLY_NO_INLINE builds. Same behaviour either way. */
static inline int tally__store_add_inline(tally_store *s, const char *key,
                                          int64_t delta)
{
    return tally_store_add_n(s, key, key != NULL ? strlen(key) : 0, delta);
}
#if !defined(TALLY_NO_INLINE)
#define tally_store_add(s, key, delta)                                      \
    tally__store_add_inline((s), (key), (delta))
#define tally_store_inc(s, key) tally__store_add_inline((s), (key), 1)
#endif

/* The key's value: 0, -ENOENT (*value untouched), -EINVAL,
 * -ENAMETOOLONG, TALLY_ECORRUPT. */
TALLY_API int tally_store_get(tally_store *s, const char *key,
                              int64_t *value);
TALLY_API int tally_store_get_n(tally_store *s, const void *key, size_t len,
                                int64_t *value);
/* The value, 0 when the key is absent or on bad input. */
TALLY_API int64_t tally_store_value(tally_store *s, const char *key);
/* The number of keys (0 for NULL): a counter in the header, bumped
 * right after a key is published. A process killed between the two
 * leaves it one low (tally_store_check notes it). */
TALLY_API size_t tally_store_size(tally_store *s);

/* Calls fn for each key, in no particular order: every key present for
 * the whole call exactly once, keys created during it at most once.
 * Weakly consistent values, as tally_map_foreach. Returns 0, fn's
 * non-zero result, -EINVAL or TALLY_ECORRUPT (damage met during the walk:
 * it stops there, having visited some keys; a damaged file never makes it
 * visit a key twice or loop). fn may call anything on s. Lock-free: never
 * waits for adds or inserts, and they never wait for it. */
TALLY_API int tally_store_foreach(tally_store *s, tally_visit_fn fn,
                                  void *ctx);
/* Like foreach, but passes each key's adds since the previous drain (by
 * any process) and takes them out; keys whose amount is 0 are skipped.
 * Every add is counted by exactly one drain or stays in the value, with
 * any number of processes adding and draining: the sum of all amounts
 * ever drained plus the values left equals the sum of all adds. The
 * amount passed to fn is already out of the value: a process that dies
 * before using it loses it. Lock-free. -EROFS when read-only. */
TALLY_API int tally_store_drain(tally_store *s, tally_visit_fn fn,
                                void *ctx);

/* Handles: resolve a key once, then add without hashing. */
typedef struct tally_store_handle tally_store_handle;
/* Creates the key at 0 if absent. 0 or as tally_store_add. */
TALLY_API int tally_store_handle_new(tally_store *s, const char *key,
                                 tally_store_handle **out);
TALLY_API int tally_store_handle_new_n(tally_store *s, const void *key,
                                   size_t len, tally_store_handle **out);
/* Never fails, never blocks, takes no lock, makes no system call: one
 * atomic add (a CAS on the key's inline count; for a contended key, an
 * add to the running CPU's cell). h must be a live handle. */
TALLY_API void tally_store_handle_add(tally_store_handle *h, int64_t delta);
TALLY_API void tally_store_handle_inc(tally_store_handle *h);
/* NULL is a no-op. */
TALLY_API void tally_store_handle_release(tally_store_handle *h);

/* What tally_store_info reports. */
struct tally_store_info {
    uint64_t file_bytes;     /* the file's size now */
    uint64_t used_bytes;     /* bytes allocated to the structure */
    uint64_t max_bytes;      /* the size limit */
    uint64_t keys;           /* as tally_store_size */
    uint64_t created_ns;     /* creation time, ns since the Unix epoch */
    uint8_t id[16];          /* random at creation: a store made again at
                                the same path has another id */
    uint32_t format_major, format_minor;
    uint32_t cpu_cells;      /* per-CPU cells of a contended key */
};
TALLY_API int tally_store_info(tally_store *s, struct tally_store_info *out);

/* Checks a store file's whole structure without changing it (what
 * 'tally check' runs): the header, every slot and entry of the index
 * (bounds, tags, that each key's hash leads to where it is, no key
 * twice, no cycle), the per-CPU cells, and that no two pieces overlap.
 * Calls report (when not NULL) with one line of text per problem found
 * (at most 1000, then a count), and with lines that begin "note: " for
 * facts that are not problems: space leaked by processes killed while
 * inserting (allocated, never linked, never reused) and a key count that
 * lags the keys found. Returns 0 when the store is sound (notes or not),
 * TALLY_ECORRUPT when a problem was found, or the error that kept it
 * from checking the file (-ENOENT, -EACCES, -ENOMEM, TALLY_ENOTSTORE,
 * TALLY_EVERSION, TALLY_ELAYOUT, or TALLY_ECORRUPT for a header it cannot
 * read past; then report gets one line saying why). Safe on a store that
 * other processes are using. */
typedef void (*tally_report_fn)(void *ctx, const char *problem);
TALLY_API int tally_store_check(const char *path, tally_report_fn report,
                                void *ctx);

/* ------------------------------------------------------------------ */
/* 6. Exposition: Prometheus text format and OpenMetrics               */
/* ------------------------------------------------------------------ */

/*
 * A writer renders counters as Prometheus text format 0.0.4 or as
 * OpenMetrics 1.0, streamed to a sink of yours (a callback; a FILE *
 * through tally_expo_sink_file). It formats into a fixed buffer inside
 * the writer and hands the sink a chunk whenever the buffer fills, so it
 * allocates nothing per key. Maps and stores are read with their foreach,
 * which never blocks adds. docs/exposition.md has every format rule.
 *
 * Output is a sequence of families: tally_expo_begin writes a family's
 * # HELP and # TYPE lines, then tally_expo_key / tally_expo_value write
 * its samples, then the next begin (or tally_expo_finish) ends it.
 * tally_expo_map, _store, _counter and _adder write a whole family.
 * tally_expo_finish writes OpenMetrics' "# EOF" and hands the sink the
 * rest of the buffer: nothing reaches the sink completely until then.
 *
 * A family renders the same series in both formats. For a counter named
 * "requests" or "requests_total" the samples are requests_total{...};
 * text 0.0.4 names the family requests_total in # HELP/# TYPE, OpenMetrics
 * names it requests. A gauge's samples carry its name unchanged.
 *
 * Names: a metric name matches [a-zA-Z][a-zA-Z0-9_]* (no colon: reserved
 * for recording rules; no leading underscore: reserved by OpenMetrics);
 * a label name matches [a-zA-Z_][a-zA-Z0-9_]* and does not start with
 * "__". HELP text and constant label values are UTF-8.
 *
 * Keys become the value of the key label. A key's bytes are shown as
 * they are, except: a backslash becomes two backslashes, and a NUL byte,
 * another control character (U+0001-U+001F other than tab and newline,
 * U+007F) or a byte that is not part of valid UTF-8 becomes \xNN (two
 * lowercase hex digits). Every key gives a different label value, both
 * formats stay valid, and a label value with no backslash is exactly its
 * key. (The format then escapes the label value: \ " and newline.)
 *
 * Values are printed exactly, in decimal (-9223372036854775808 and
 * 9223372036854775807 included, never an exponent). A Prometheus counter
 * never goes negative: a counter family shows a negative value (a key
 * that was decremented) as 0 and counts it in tally_expo_stats.clamped;
 * a gauge family shows the signed value.
 *
 * A writer is used by one thread at a time; the counters it reads may
 * change meanwhile (the values are foreach's: weakly consistent).
 */

/* The Content-Type of each format, byte for byte as servers send it. */
#define TALLY_EXPO_CONTENT_TYPE_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define TALLY_EXPO_CONTENT_TYPE_OPENMETRICS \
    "application/openmetrics-text; version=1.0.0; charset=utf-8"

/* Formats. */
#define TALLY_EXPO_TEXT 0u        /* Prometheus text format 0.0.4 */
#define TALLY_EXPO_OPENMETRICS 1u /* OpenMetrics 1.0 */

/* Family types. */
#define TALLY_EXPO_COUNTER 0u /* samples NAME_total, never negative */
#define TALLY_EXPO_GAUGE 1u   /* samples NAME, signed */

/* The format's Content-Type (one of the macros above), or NULL for an
 * unknown format. */
TALLY_API const char *tally_expo_content_type(unsigned format);

/*
 * A sink: takes all len bytes of data (len > 0) and returns 0, or returns
 * a negative errno; the writer then stops (see below). A positive return
 * counts as -EIO.
 */
typedef int (*tally_expo_sink_fn)(void *ctx, const void *data, size_t len);

/* A sink writing to the FILE * given as ctx (fwrite). Returns 0, or the
 * stream's errno, negated (-EIO when fwrite sets none). */
TALLY_API int tally_expo_sink_file(void *ctx, const void *data, size_t len);

/* A constant label, written on every sample of its family. */
struct tally_expo_label {
    const char *name;  /* a label name (rules above) */
    const char *value; /* UTF-8; escaped on output */
};

/* What a family is called and how its samples are labelled. */
struct tally_expo_family {
    const char *name;     /* metric name; for a counter, a trailing
                             "_total" is optional */
    const char *help;     /* HELP text, not empty (promtool's lint wants
                             one); escaped on output */
    unsigned type;        /* TALLY_EXPO_COUNTER (0) or TALLY_EXPO_GAUGE */
    const char *key_label;  /* the label that carries the key; NULL:
                               "key" */
    const struct tally_expo_label *labels; /* constant labels, or NULL */
    size_t nlabels;
};

/* What a writer has done so far. */
struct tally_expo_stats {
    uint64_t bytes;        /* handed to the sink */
    uint64_t families;     /* begun */
    uint64_t samples;      /* written (into the buffer) */
    uint64_t keys_encoded; /* keys shown with \xNN or a doubled backslash */
    uint64_t clamped;      /* negative counter values shown as 0 */
};

typedef struct tally_expo tally_expo;

/* Creates a writer of format (TALLY_EXPO_TEXT or TALLY_EXPO_OPENMETRICS)
 * that hands its output to sink(ctx, ...). 0, -EINVAL (out or sink NULL,
 * unknown format) or -ENOMEM. */
TALLY_API int tally_expo_new(tally_expo **out, unsigned format,
                             tally_expo_sink_fn sink, void *ctx);
/* Frees the writer, without flushing: output not yet handed to the sink
 * (everything after the last full buffer, unless tally_expo_finish ran)
 * is dropped. NULL is a no-op. */
TALLY_API void tally_expo_free(tally_expo *w);

/*
 * Errors of every writing call below. A call that returns -EINVAL,
 * -EEXIST or -ENOMEM wrote nothing and changed nothing: the writer goes
 * on as before. A sink error is sticky: the call that made the sink fail
 * returns its error, and so does every later call (tally_expo_finish
 * included), without writing or calling the sink again; the output so far
 * is cut at a chunk boundary. Otherwise, after tally_expo_finish every
 * writing call returns -EINVAL.
 */

/* Begins family f, ending the current one: writes its # HELP and # TYPE.
 * 0, -EINVAL (w or f NULL, an invalid name, empty or NULL help, help or a
 * label value not UTF-8, an unknown type, a label name used twice or
 * equal to the key label, or finished), -EEXIST (a family of this writer
 * already has this name or these sample names), -ENOMEM, or a sink
 * error. f and its strings are copied: they need not outlive the call. */
TALLY_API int tally_expo_begin(tally_expo *w,
                               const struct tally_expo_family *f);
/* Writes a sample of the current family whose key label is key (len
 * bytes, any bytes; NULL with len 0 is the empty key). 0, -EINVAL (no
 * family begun, key NULL with len > 0, finished), -EEXIST (the empty key
 * when the family already has the sample with no key label, or the empty
 * key twice: Prometheus sees an empty label as no label), or a sink
 * error. Other duplicate keys are the caller's to avoid. */
TALLY_API int tally_expo_key(tally_expo *w, const void *key, size_t len,
                             int64_t value);
/* Writes the current family's sample with no key label (its constant
 * labels only). As tally_expo_key, with -EEXIST when the family already
 * has it (or the empty key). */
TALLY_API int tally_expo_value(tally_expo *w, int64_t value);
/* Ends the output: writes "# EOF" (OpenMetrics) and hands the sink the
 * rest of the buffer. 0, -EINVAL (w NULL or already finished), or a sink
 * error. An exposition with no family is valid (empty in text 0.0.4,
 * "# EOF" alone in OpenMetrics). */
TALLY_API int tally_expo_finish(tally_expo *w);

/* Whole families: begin f, then one sample per key (tally_map_foreach /
 * tally_store_foreach) or the one value (no key label). Return begin's
 * errors, -EINVAL for a NULL source, the foreach's errors (then the
 * family is cut short), or a sink error. Rendering blocks nobody: adds,
 * removes and drains go on while it (and the sink) runs. */
TALLY_API int tally_expo_map(tally_expo *w, const struct tally_expo_family *f,
                             tally_map *m);
TALLY_API int tally_expo_store(tally_expo *w,
                               const struct tally_expo_family *f,
                               tally_store *s);
TALLY_API int tally_expo_counter(tally_expo *w,
                                 const struct tally_expo_family *f,
                                 const tally_counter *c);
TALLY_API int tally_expo_adder(tally_expo *w,
                               const struct tally_expo_family *f,
                               tally_adder *a);

/* Copies the writer's statistics into *out. 0 or -EINVAL. */
TALLY_API int tally_expo_stats(const tally_expo *w,
                               struct tally_expo_stats *out);

/* ------------------------------------------------------------------ */
/* 7. Inline fast paths                                                */
/* ------------------------------------------------------------------ */

/*
 * tally_adder_add/inc, tally_handle_add/inc and tally_map_add/inc are
 * function-like macros that expand to the static inline functions below.
 * An adder or handle add whose thread already has its cell is then a few
 * instructions in the caller (on the 2-core development machine 0.8 ns
 * instead of 1.6 ns for a call into the library); anything else goes to
 * the library. The functions
 * themselves are also exported, for address-taking (&tally_adder_add is
 * the library's copy) and for other languages. Define TALLY_NO_INLINE
 * before including this header to call the library's copies everywhere;
 * the behaviour is the same.
 *
 * Everything named tally__ is not API: it is the part of libtally.so.0's
 * layout that the inline paths read, and it may change with the soname.
 *
 * What the inline paths read, and why each load is what it is:
 *   - tally__dir: the calling thread's cell directory (its own TLS slot,
 *     set and cleared only by the thread itself). NULL until the thread
 *     first uses tally and after its exit handler has folded its cells.
 *   - tally__dir[id >> 10]: the thread's block of 1024 cells holding id's
 *     cell, or NULL. Only the thread itself stores it (relaxed is enough:
 *     it reads its own store); other threads only read it.
 *   - the cell: written only by this thread, so a relaxed load and a
 *     relaxed store cannot lose an add; readers on other threads need only
 *     the latest value, which coherence gives them.
 *   - a handle's dead flag: set once when its key is removed. Relaxed: the
 *     flag only steers the add to the key's next life; an add that misses
 *     a fresh flag still reaches the map through the library (src/map.c).
 */
#if defined(__cplusplus)
#define TALLY__TLS thread_local
#else
#define TALLY__TLS _Thread_local
#endif
#if defined(__GNUC__)
#define TALLY__TLS_MODEL __attribute__((tls_model("initial-exec")))
#define TALLY__LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define TALLY__TLS_MODEL
#define TALLY__LIKELY(x) (x)
#endif

typedef _Atomic(int64_t) tally__cell_t;
typedef _Atomic(tally__cell_t *) tally__block_ptr; /* a directory slot */
#define TALLY__CELL_SHIFT 10

TALLY_API extern TALLY__TLS tally__block_ptr *tally__dir TALLY__TLS_MODEL;

/* The first member of struct tally_adder. */
struct tally__adder_head {
    uint32_t id;
};
/* The first member of struct tally_handle. */
struct tally__handle_head {
    _Atomic(uint32_t) dead;
    uint32_t id;
};

TALLY_API void tally__adder_add_slow(tally_adder *a, int64_t delta);
TALLY_API void tally__handle_add_slow(tally_handle *h, int64_t delta);

/* The calling thread's cell for id, or NULL (the library then adds). */
static inline tally__cell_t *tally__cell_fast(uint32_t id)
{
    tally__block_ptr *dir = tally__dir;
    if (!TALLY__LIKELY(dir != NULL))
        return NULL;
    tally__cell_t *blk = atomic_load_explicit(&dir[id >> TALLY__CELL_SHIFT],
                                              memory_order_relaxed);
    if (!TALLY__LIKELY(blk != NULL))
        return NULL;
    return &blk[id & ((1u << TALLY__CELL_SHIFT) - 1)];
}

static inline void tally__cell_put(tally__cell_t *c, int64_t delta)
{
    /* Unsigned arithmetic: wraps in two's complement, never UB. */
    uint64_t v = (uint64_t)atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, (int64_t)(v + (uint64_t)delta),
                          memory_order_relaxed);
}

static inline void tally__adder_add_inline(tally_adder *a, int64_t delta)
{
    const struct tally__adder_head *head =
        (const struct tally__adder_head *)(const void *)a;
    tally__cell_t *c = tally__cell_fast(head->id);
    if (TALLY__LIKELY(c != NULL))
        tally__cell_put(c, delta);
    else
        tally__adder_add_slow(a, delta);
}

static inline void tally__handle_add_inline(tally_handle *h, int64_t delta)
{
    const struct tally__handle_head *head =
        (const struct tally__handle_head *)(const void *)h;
    tally__cell_t *c = tally__cell_fast(head->id);
    if (TALLY__LIKELY(c != NULL && !atomic_load_explicit(
                                       &head->dead, memory_order_relaxed)))
        tally__cell_put(c, delta);
    else
        tally__handle_add_slow(h, delta);
}

/* strlen in the caller: for a literal key the compiler folds it. */
static inline int tally__map_add_inline(tally_map *m, const char *key,
                                        int64_t delta)
{
    return tally_map_add_n(m, key, key != NULL ? strlen(key) : 0, delta);
}

#if !defined(TALLY_NO_INLINE)
#define tally_adder_add(a, delta) tally__adder_add_inline((a), (delta))
#define tally_adder_inc(a) tally__adder_add_inline((a), 1)
#define tally_handle_add(h, delta) tally__handle_add_inline((h), (delta))
#define tally_handle_inc(h) tally__handle_add_inline((h), 1)
#define tally_map_add(m, key, delta) tally__map_add_inline((m), (key), (delta))
#define tally_map_inc(m, key) tally__map_add_inline((m), (key), 1)
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* TALLY_H */
