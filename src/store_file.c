/*
 * store_file.c - a tally_store's file: creation, opening, the mapping,
 * growth and the allocator.
 *
 * CREATION (several processes may race to create one path)
 *
 * The creator builds the whole file under no name (O_TMPFILE; where the
 * file system lacks it, under a temporary name in the same directory):
 * fallocate the initial size, write the header. Only then does the file get
 * its name, with link(2), which fails with EEXIST when another process's
 * file got there first; the loser drops its own file and opens the
 * winner's. So a file is never seen under its name half built, and every
 * racer ends up in one store. A creator killed before the link leaves
 * nothing (O_TMPFILE) or a stray temporary file (the fallback), never a
 * broken store.
 *
 * THE MAPPING
 *
 * Open reserves max_bytes of address space (PROT_NONE, MAP_NORESERVE) and
 * maps the file over its start with MAP_FIXED; 'mapped' (process-local)
 * says how far. Offsets beyond it are mapped on demand (map_to), under a
 * process-local mutex held only around the mmap; 'mapped' is raised after
 * the mmap (release; tally__store_at's acquire load pairs with it). The
 * base never moves, so pointers into the file stay valid while the store
 * is open.
 *
 * GROWTH AND ALLOCATION
 *
 * header.used is the end of the allocated area; below it everything
 * belongs to someone. An allocation is:
 *
 *   1. read used (u); the chunk is [align(u), align(u) + size);
 *   2. if the file is shorter than the chunk's end, grow it with
 *      fallocate (never ftruncate: a slow process's stale ftruncate could
 *      cut off what others have allocated since; fallocate only extends);
 *   3. CAS used from u to the chunk's end; on failure, retry from 1.
 *
 * Because step 2 comes before step 3, the file is always at least 'used'
 * bytes long. A process killed after 2 leaves a longer file (harmless; the
 * next allocation uses it); killed after 3 leaves an allocated chunk that
 * nothing references: leaked space, which tally_store_check reports and
 * nothing reuses. Fresh space is zero (fallocate), but the allocator's
 * callers initialise every field anyway, so that a file someone scribbled
 * on beyond 'used' cannot plant values.
 *
 * Progress: allocation is lock-free (a CAS fails only because another
 * allocation succeeded). Growth and mapping make system calls; adds to
 * existing keys never allocate or grow.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "testhook.h"

#define GROW_MIN ((uint64_t)256 << 10) /* grow by at least 256 KiB */
#define GROW_UNIT ((uint64_t)64 << 10) /* file sizes: multiples of 64 KiB */


static uint64_t round_up(uint64_t v, uint64_t unit)
{
    return (v + unit - 1) / unit * unit;
}

uint64_t tally__store_header_sum(const void *header)
{
    const unsigned char *p = header;
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < TALLY__STORE_SUMMED; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#if defined(TALLY_TEST_HOOKS)
/* Relaxed: set by a test between operations. */
static _Atomic(uint32_t) test_cells;
static _Atomic(uint32_t) test_root_bits;

static _Atomic(int) test_named;

void tally__store_test_layout(uint32_t cells, uint32_t root_bits)
{
    tally_atomic_store(&test_cells, cells, relaxed);
    tally_atomic_store(&test_root_bits, root_bits, relaxed);
}

void tally__store_test_named_create(int on)
{
    tally_atomic_store(&test_named, on, relaxed);
}
#endif

/* Cells per striped key: the configured CPUs, rounded up to a power of
 * two, at most TALLY__STORE_CELLS_MAX. */
static uint32_t default_cells(void)
{
#if defined(TALLY_TEST_HOOKS)
    uint32_t t = tally_atomic_load(&test_cells, relaxed);
    if (t != 0)
        return t;
#endif
    long n = sysconf(_SC_NPROCESSORS_CONF);
    uint32_t c = 1;
    while (c < TALLY__STORE_CELLS_MAX && (long)c < n)
        c <<= 1;
    return c;
}

static uint32_t default_root_bits(void)
{
#if defined(TALLY_TEST_HOOKS)
    uint32_t t = tally_atomic_load(&test_root_bits, relaxed);
    if (t != 0)
        return t;
#endif
    return TALLY__STORE_ROOT_BITS;
}

static uint64_t data_start_for(uint32_t root_bits)
{
    return TALLY__STORE_HEADER_SIZE + ((uint64_t)8 << root_bits);
}

static uint64_t initial_size(uint32_t root_bits)
{
    return round_up(data_start_for(root_bits), TALLY__STORE_MIN_BYTES);
}

/* Extends fd to at least want bytes; never shrinks it. 0 or -errno. */
static int extend(int fd, uint64_t from, uint64_t want)
{
    if (want <= from)
        return 0;
    if (fallocate(fd, 0, (off_t)from, (off_t)(want - from)) == 0)
        return 0;
    int err = errno;
    if (err != EOPNOTSUPP)
        return -err;
    /* A file system without fallocate: glibc writes a zero byte into
     * each block that reads as zero (docs/store-format.md notes the
     * caveat). */
    err = posix_fallocate(fd, (off_t)from, (off_t)(want - from));
    return -err;
}

/* ------------------------------------------------------------------ */
/* Creation                                                            */
/* ------------------------------------------------------------------ */

static void build_header(struct tally__store_header *h, uint64_t max_bytes)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, TALLY__STORE_MAGIC, 8);
    h->byte_order = TALLY__STORE_BOM;
    h->major = TALLY__STORE_MAJOR;
    h->minor = TALLY__STORE_MINOR;
    h->header_size = TALLY__STORE_HEADER_SIZE;
    h->ptr_size = (uint8_t)sizeof(void *);
    h->u64_align = (uint8_t)_Alignof(uint64_t);
    h->root_bits = (uint8_t)default_root_bits();
    h->node_bits = TALLY__STORE_NODE_BITS;
    h->entry_head = TALLY__STORE_ENTRY_HEAD;
    h->slab_head = TALLY__STORE_SLAB_HEAD;
    h->cpu_cells = default_cells();
    h->max_bytes = max_bytes;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->created_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    struct tally__seed id, seed;
    tally__seed_init(&id);
    tally__seed_init(&seed);
    memcpy(h->id, id.k, sizeof h->id);
    memcpy(h->seed, seed.k, sizeof h->seed);
    h->hash_check = tally__hash(&seed, TALLY__STORE_HASH_CHECK_KEY,
                                sizeof TALLY__STORE_HASH_CHECK_KEY - 1);
    h->root_off = TALLY__STORE_HEADER_SIZE;
    h->data_start = data_start_for(h->root_bits);
    h->header_sum = tally__store_header_sum(h);
    atomic_init(&h->used, h->data_start);
    atomic_init(&h->keys, 0);
    atomic_init(&h->slab, 0);
}

/* Fills a new file: initial size, then the header. 0 or -errno. */
static int fill_new(int fd, uint64_t max_bytes)
{
    struct tally__store_header h;
    build_header(&h, max_bytes);
    int r = extend(fd, 0, initial_size(h.root_bits));
    if (r != 0)
        return r;
    const char *p = (const char *)&h;
    size_t left = sizeof h;
    off_t at = 0;
    while (left > 0) {
        ssize_t n = pwrite(fd, p, left, at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        at += n;
        left -= (size_t)n;
    }
    return 0;
}

/* The directory part of path, in buf: "." when path has no '/'. */
static int dir_of(const char *path, char *buf, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        if (size < 2)
            return -ENAMETOOLONG;
        strcpy(buf, ".");
        return 0;
    }
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n + 1 > size)
        return -ENAMETOOLONG;
    memcpy(buf, path, n);
    buf[n] = '\0';
    return 0;
}

/* Creates the store at path. 0 with *fd_out open on the new store (which
 * now has its name), -EEXIST when another file got the name first (open
 * that one), or -errno. */
static int create_store(const char *path, unsigned mode, uint64_t max_bytes,
                        int *fd_out)
{
    char dir[PATH_MAX];
    int r = dir_of(path, dir, sizeof dir);
    if (r != 0)
        return r;

    /* First choice: a file with no name until link gives it one. */
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
#if defined(TALLY_TEST_HOOKS)
    if (fd >= 0 && tally_atomic_load(&test_named, relaxed)) {
        close(fd);
        fd = -1;
    }
#endif
    if (fd >= 0) {
        r = fill_new(fd, max_bytes);
        if (r != 0) {
            close(fd);
            return r;
        }
        TALLY_CRASH_POINT("create.before_link");
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) {
            *fd_out = fd;
            return 0;
        }
        int err = errno;
        close(fd);
        if (err == EEXIST)
            return -EEXIST;
        /* No /proc, or a file system that will not link it: the named
         * way below. */
    }

    /* Fallback: a temporary name next to path, linked into place. */
    char tmp[PATH_MAX];
    for (int tries = 0;; tries++) {
        struct tally__seed rnd;
        tally__seed_init(&rnd);
        int n = snprintf(tmp, sizeof tmp, "%s.tmp-%016llx", path,
                         (unsigned long long)rnd.k[0]);
        if (n < 0 || (size_t)n >= sizeof tmp)
            return -ENAMETOOLONG;
        fd = open(tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, (mode_t)mode);
        if (fd >= 0)
            break;
        if (errno != EEXIST || tries >= 8)
            return -errno;
    }
    r = fill_new(fd, max_bytes);
    if (r == 0) {
        TALLY_CRASH_POINT("create.before_link");
        if (link(tmp, path) != 0)
            r = -errno;
        else
            TALLY_CRASH_POINT("create.after_link");
    }
    unlink(tmp);
    if (r != 0) {
        close(fd);
        return r;
    }
    *fd_out = fd;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Opening: header validation                                          */
/* ------------------------------------------------------------------ */

/* Validates the header bytes (n of them read, file of size bytes) and
 * fills s's copies. Returns 0 or the error for the file, with *why saying
 * what is wrong. */
static int take_header(struct tally_store *s, const unsigned char *buf,
                       size_t n, uint64_t size, const char **why)
{
    struct tally__store_header h;
#define BAD(err, text) return (*why = (text), (err))
    if (n < 8 || memcmp(buf, TALLY__STORE_MAGIC, 8) != 0)
        BAD(TALLY_ENOTSTORE, "no tally store magic at the start");
    if (n < TALLY__STORE_HEADER_SIZE)
        BAD(TALLY_ECORRUPT, "file shorter than the 512-byte header");
    memcpy(&h, buf, sizeof h);
    if (h.byte_order != TALLY__STORE_BOM) {
        if (h.byte_order == __builtin_bswap32(TALLY__STORE_BOM))
            BAD(TALLY_ELAYOUT, "made on a machine of the other byte order");
        BAD(TALLY_ECORRUPT, "byte-order marker damaged");
    }
    if (h.major != TALLY__STORE_MAJOR)
        BAD(TALLY_EVERSION, "format major version is not 1");
    /* The checksum before the word size: a damaged byte there is damage,
     * an intact header from another machine is another layout. */
    if (tally__store_header_sum(buf) != h.header_sum)
        BAD(TALLY_ECORRUPT, "header checksum does not match");
    if (h.ptr_size != sizeof(void *) || h.u64_align != _Alignof(uint64_t))
        BAD(TALLY_ELAYOUT, "made on a machine of another word size or "
                           "alignment");
    if (h.header_size != TALLY__STORE_HEADER_SIZE ||
        h.node_bits != TALLY__STORE_NODE_BITS ||
        h.entry_head != TALLY__STORE_ENTRY_HEAD ||
        h.slab_head != TALLY__STORE_SLAB_HEAD)
        BAD(TALLY_ECORRUPT, "header, node, entry or slab size is not "
                            "format 1's");
    if (h.root_bits != 4 && h.root_bits != 8 && h.root_bits != 12 &&
        h.root_bits != 16)
        BAD(TALLY_ECORRUPT, "root_bits is not 4, 8, 12 or 16");
    if (h.cpu_cells == 0 || h.cpu_cells > TALLY__STORE_CELLS_MAX ||
        (h.cpu_cells & (h.cpu_cells - 1)) != 0)
        BAD(TALLY_ECORRUPT, "cpu_cells is not a power of two <= 256");
    if (h.root_off != TALLY__STORE_HEADER_SIZE ||
        h.data_start != data_start_for(h.root_bits))
        BAD(TALLY_ECORRUPT, "root_off or data_start is wrong");
    if (h.max_bytes < initial_size(h.root_bits) ||
        h.max_bytes > TALLY__STORE_MAX_BYTES_CAP)
        BAD(TALLY_ECORRUPT, "max_bytes out of range");
    struct tally__seed seed;
    memcpy(seed.k, h.seed, sizeof seed.k);
    /* The key hash is part of the format: a library whose hash.h
     * computes another function would not find the file's keys. */
    if (tally__hash(&seed, TALLY__STORE_HASH_CHECK_KEY,
                    sizeof TALLY__STORE_HASH_CHECK_KEY - 1) != h.hash_check)
        BAD(TALLY_EVERSION, "made with another key hash function");
    if (size < h.data_start)
        BAD(TALLY_ECORRUPT, "file truncated inside its root table");
#undef BAD

    s->seed = seed;
    s->max_bytes = h.max_bytes;
    s->root_off = h.root_off;
    s->data_start = h.data_start;
    s->created_ns = h.created_ns;
    s->cells = h.cpu_cells;
    s->cell_mask = h.cpu_cells - 1;
    s->root_bits = h.root_bits;
    s->last_level = (64 - h.root_bits) / TALLY__STORE_NODE_BITS;
    s->minor = h.minor;
    memcpy(s->id, h.id, sizeof s->id);
    return 0;
}

/*
 * Mapping new parts of the file is serialised in the process by map_lock
 * (process-local, held only around the mmap; adds never map). Each page
 * is mapped once: map_end is where the mapping ends, a page boundary,
 * and a part is mapped only beyond it. (Mapping a page again would be
 * harmless to the data, the same file pages at the same address, but a
 * thread reading there meanwhile would fault and wait, and
 * ThreadSanitizer counts an mmap as a write of the whole range.) The
 * atfork handlers keep a fork from leaving the child a locked lock.
 */
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t map_once = PTHREAD_ONCE_INIT;

static void map_lock_prepare(void)
{
    pthread_mutex_lock(&map_lock);
}

static void map_lock_release(void)
{
    pthread_mutex_unlock(&map_lock);
}

static void map_lock_init(void)
{
    pthread_atfork(map_lock_prepare, map_lock_release, map_lock_release);
}

/* Maps the file up to want bytes (want <= the file's size). 0 or -errno. */
static int map_to(struct tally_store *s, uint64_t want)
{
    if (want > s->reserved)
        want = s->reserved;
    /* Acquire: pairs with the release store below (another thread's), so
     * a 'mapped' read here is backed by a finished mmap. */
    if (tally_atomic_load(&s->mapped, acquire) >= want)
        return 0;
    int r = 0;
    pthread_mutex_lock(&map_lock);
    if (tally_atomic_load(&s->mapped, relaxed) < want) {
        uint64_t end = round_up(want, s->page); /* <= reserved */
        if (end > s->map_end) {
            int prot = s->readonly ? PROT_READ : PROT_READ | PROT_WRITE;
            void *p = mmap(s->base + s->map_end, end - s->map_end, prot,
                           MAP_SHARED | MAP_FIXED, s->fd,
                           (off_t)s->map_end);
            if (p == MAP_FAILED)
                r = -errno;
            else
                s->map_end = end;
        }
        /* Release: publishes the mapping to threads that acquire-load
         * 'mapped' (tally__store_at, and the check above). */
        if (r == 0)
            tally_atomic_store(&s->mapped, want, release);
    }
    pthread_mutex_unlock(&map_lock);
    return r;
}

static int file_size(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    *size = st.st_size < 0 ? 0 : (uint64_t)st.st_size;
    return 0;
}

void *tally__store_at_slow(struct tally_store *s, uint64_t off, uint64_t len)
{
    if (off > s->reserved || len > s->reserved - off)
        return NULL;
    uint64_t size;
    if (file_size(s->fd, &size) != 0 || off + len > size)
        return NULL;
    if (map_to(s, size) != 0)
        return NULL;
    /* Acquire: as in tally__store_at, pairs with map_to's release. */
    uint64_t m = tally_atomic_load(&s->mapped, acquire);
    if (off + len > m)
        return NULL;
    return s->base + off;
}

/* Validates fd's file and maps it into s (s->readonly set). 0, or the
 * error with *why saying what is wrong when the file is to blame. */
int tally__store_attach(struct tally_store *s, int fd, const char **why)
{
    *why = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (!S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        return TALLY_ENOTSTORE;
    }
    uint64_t size = st.st_size < 0 ? 0 : (uint64_t)st.st_size;

    unsigned char buf[TALLY__STORE_HEADER_SIZE];
    size_t n = 0;
    while (n < sizeof buf) {
        ssize_t got = pread(fd, buf + n, sizeof buf - n, (off_t)n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            break;
        n += (size_t)got;
    }
    int r = take_header(s, buf, n, size, why);
    if (r != 0)
        return r;

    s->fd = fd;
    long pg = sysconf(_SC_PAGESIZE);
    s->page = pg > 0 ? (uint64_t)pg : 4096;
    s->reserved = round_up(s->max_bytes, s->page);
    void *base = mmap(NULL, s->reserved, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
        return -ENOMEM;
    s->base = base;
    atomic_init(&s->mapped, 0);
    s->map_end = 0;
    r = map_to(s, size);
    if (r != 0)
        goto fail;

    /* 'used' is read before the size (fstat) is, so that a growth by
     * another process between the two cannot look like corruption: the
     * file is grown before 'used' is raised. */
    struct tally__store_header *h = tally__store_hdr(s);
    uint64_t used = tally_atomic_load(&h->used, relaxed);
    if (used < s->data_start || used > s->max_bytes ||
        used % TALLY__STORE_GRANULE != 0) {
        *why = "header 'used' out of range";
        r = TALLY_ECORRUPT;
        goto fail;
    }
    if (used > size) {
        r = file_size(fd, &size);
        if (r == 0 && used > size) {
            *why = "file truncated below its allocated area ('used')";
            r = TALLY_ECORRUPT;
        }
        if (r == 0)
            r = map_to(s, size);
        if (r != 0)
            goto fail;
    }
    return 0;
fail:
    munmap(s->base, s->reserved);
    s->base = NULL;
    return r;
}

int tally_store_open(tally_store **out, const char *path,
                     const struct tally_store_config *config)
{
    static const struct tally_store_config defaults;
    if (out == NULL || path == NULL)
        return -EINVAL;
    if (config == NULL)
        config = &defaults;
    const unsigned known = TALLY_STORE_CREATE | TALLY_STORE_READONLY;
    if ((config->flags & ~known) != 0 || config->mode > 07777)
        return -EINVAL;
    unsigned mode = config->mode != 0 ? config->mode : 0644;
    uint64_t max_bytes = config->max_bytes != 0
                             ? config->max_bytes
                             : TALLY_STORE_DEFAULT_MAX_BYTES;
    int readonly = (config->flags & TALLY_STORE_READONLY) != 0;
    int create = (config->flags & TALLY_STORE_CREATE) != 0;

    tally__store_cpu_init();
    pthread_once(&map_once, map_lock_init);
    struct tally_store *s = tally__calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->readonly = readonly;
    static _Atomic(uint64_t) serials;
    s->serial = tally_atomic_fetch_add(&serials, 1, relaxed) + 1;

    int fd = -1, r = 0;
    /* Bounded: each round is an open that found no file and a create
     * that found one (the winner's, or one removed again meanwhile). */
    for (int round = 0; round < 16; round++) {
        fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd >= 0)
            break;
        r = -errno;
        if (r != -ENOENT || !create)
            break;
        /* max_bytes matters only to a creator: checked here, so that
         * opening an existing store ignores it as documented. */
        if (max_bytes > TALLY__STORE_MAX_BYTES_CAP ||
            max_bytes < initial_size(default_root_bits())) {
            r = -EINVAL;
            break;
        }
        r = create_store(path, mode, max_bytes, &fd);
        if (r == 0)
            break;
        fd = -1;
        if (r != -EEXIST)
            break;
        r = -ENOENT;
    }
    if (fd < 0) {
        tally__free(s);
        return r;
    }
    const char *why;
    r = tally__store_attach(s, fd, &why);
    if (r != 0) {
        close(fd);
        tally__free(s);
        return r;
    }
    *out = s;
    return 0;
}

void tally_store_close(tally_store *s)
{
    if (s == NULL)
        return;
    munmap(s->base, s->reserved);
    close(s->fd);
    tally__free(s);
}

/* ------------------------------------------------------------------ */
/* Growth and allocation                                               */
/* ------------------------------------------------------------------ */

/* Makes the file at least end bytes long and maps it. 0 or -errno. */
static int grow(struct tally_store *s, uint64_t end)
{
    uint64_t size;
    int r = file_size(s->fd, &size);
    if (r != 0)
        return r;
    if (size < end) {
        uint64_t step = size / 8 > GROW_MIN ? size / 8 : GROW_MIN;
        uint64_t target = round_up(size + step, GROW_UNIT);
        if (target < end)
            target = round_up(end, GROW_UNIT);
        if (target > s->max_bytes)
            target = s->max_bytes; /* >= end: the caller checked */
        r = extend(s->fd, size, target);
        if (r != 0)
            return r;
        TALLY_CRASH_POINT("grow.after_extend");
        size = target;
    }
    return map_to(s, size);
}

int tally__store_alloc(struct tally_store *s, uint64_t size, uint64_t align,
                       uint64_t *off, uint64_t *chunk)
{
    struct tally__store_header *h = tally__store_hdr(s);
    /* Relaxed: 'used' publishes nothing. What an allocation writes is
     * published by the CAS of the slot that links it (release), and the
     * growth that made room happened before this CAS in program order. */
    uint64_t u = tally_atomic_load(&h->used, relaxed);
    for (;;) {
        if (u < s->data_start || u > s->max_bytes ||
            u % TALLY__STORE_GRANULE != 0)
            return TALLY_ECORRUPT;
        uint64_t at = round_up(u, align);
        uint64_t end = at + size;
        if (end > s->max_bytes)
            return -ENOSPC;
        if (end > tally_atomic_load(&s->mapped, relaxed)) {
            int r = grow(s, end);
            if (r != 0)
                return r;
        }
        TALLY_CRASH_POINT("alloc.before_bump");
        if (tally_atomic_cas(&h->used, &u, end, relaxed, relaxed)) {
            TALLY_CRASH_POINT("alloc.after_bump");
            *off = at;
            *chunk = u;
            return 0;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Information                                                         */
/* ------------------------------------------------------------------ */

size_t tally_store_size(tally_store *s)
{
    if (s == NULL)
        return 0;
    return (size_t)tally_atomic_load(&tally__store_hdr(s)->keys, relaxed);
}

int tally_store_info(tally_store *s, struct tally_store_info *out)
{
    if (s == NULL || out == NULL)
        return -EINVAL;
    uint64_t size;
    int r = file_size(s->fd, &size);
    if (r != 0)
        return r;
    struct tally__store_header *h = tally__store_hdr(s);
    memset(out, 0, sizeof *out);
    out->file_bytes = size;
    out->used_bytes = tally_atomic_load(&h->used, relaxed);
    out->max_bytes = s->max_bytes;
    out->keys = tally_atomic_load(&h->keys, relaxed);
    out->created_ns = s->created_ns;
    memcpy(out->id, s->id, sizeof out->id);
    out->format_major = TALLY__STORE_MAJOR;
    out->format_minor = s->minor;
    out->cpu_cells = s->cells;
    return 0;
}
