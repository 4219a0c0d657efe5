/*
 * keys.c - stores and their keys: opening a store, keys as people see
 * them (the escapes in tool.h), globs, and a store's keys collected into a
 * sorted list for ls, export and top.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

int tool_store_open(const char *cmd, const char *path, unsigned flags,
                    tally_store **out)
{
    struct tally_store_config config = {flags, 0, 0};
    int err = tally_store_open(out, path, &config);

    return err == 0 ? TOOL_OK : tool_fail(cmd, path, err);
}

size_t tool_key_show(char *out, const void *key, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = key;
    char *o = out;
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = p[i];

        if (c == '\\') {
            *o++ = '\\';
            *o++ = '\\';
        } else if (c == '\t' || c == '\n' || c == '\r') {
            *o++ = '\\';
            *o++ = c == '\t' ? 't' : c == '\n' ? 'n' : 'r';
        } else if (c > 0x20 && c < 0x7f) {
            *o++ = (char)c;
        } else if (c == ' ' && i != 0 && i != len - 1) {
            *o++ = ' ';
        } else {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return (size_t)(o - out);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int tool_key_parse(const char *shown, unsigned char *out, size_t *len)
{
    const char *s = shown;
    size_t n = 0;

    while (*s != '\0') {
        unsigned char c = (unsigned char)*s++;

        if (c == '\\') {
            int hi, lo;

            switch (*s++) {
            case '\\':
                c = '\\';
                break;
            case 't':
                c = '\t';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 'x':
                if ((hi = hex_digit(s[0])) < 0 || (lo = hex_digit(s[1])) < 0)
                    return -1;
                c = (unsigned char)(hi << 4 | lo);
                s += 2;
                break;
            default: /* an unknown escape, or a '\' that ends the text */
                return -1;
            }
        }
        if (n == TALLY_KEY_MAX)
            return -1;
        out[n++] = c;
    }
    *len = n;
    return 0;
}

int tool_key_arg(const char *cmd, const char *arg, bool escaped,
                 unsigned char *out, size_t *len)
{
    size_t n = strlen(arg);

    if (escaped) {
        if (tool_key_parse(arg, out, len) != 0)
            return tool_usage_error(cmd,
                                    "KEY '%s' is not a valid escaped key "
                                    "(\\xHH \\t \\n \\r \\\\; "
                                    "at most %d bytes)",
                                    arg, TALLY_KEY_MAX);
        return TOOL_OK;
    }
    if (n > TALLY_KEY_MAX)
        return tool_usage_error(cmd, "KEY is longer than %d bytes",
                                TALLY_KEY_MAX);
    memcpy(out, arg, n);
    *len = n;
    return TOOL_OK;
}

bool tool_globs_match(char *const *globs, int nglobs, const char *shown)
{
    int i;

    if (nglobs == 0)
        return true;
    for (i = 0; i < nglobs; i++)
        if (fnmatch(globs[i], shown, FNM_NOESCAPE) == 0)
            return true;
    return false;
}

/* The arena: keys are copied into chunks that never move, so entries can
 * point into them while the entry array grows. */
struct tool_chunk {
    struct tool_chunk *next;
    size_t used, size;
    unsigned char bytes[];
};

enum { TOOL_CHUNK_BYTES = 1 << 20 }; /* > TALLY_KEY_MAX: every key fits */

static const unsigned char *arena_copy(struct tool_keys *list,
                                       const void *key, size_t len)
{
    struct tool_chunk *c = list->chunks;

    if (c == NULL || c->size - c->used < len) {
        c = malloc(sizeof *c + TOOL_CHUNK_BYTES);
        if (c == NULL)
            return NULL;
        c->next = list->chunks;
        c->used = 0;
        c->size = TOOL_CHUNK_BYTES;
        list->chunks = c;
    }
    if (len != 0)
        memcpy(c->bytes + c->used, key, len);
    c->used += len;
    return c->bytes + c->used - len;
}

/* Bytes at..at+7 of key as a big-endian integer, zero past the end. */
static uint64_t sort_word(const void *key, size_t len, size_t at)
{
    const unsigned char *p = key;
    uint64_t w = 0;
    size_t i;

    for (i = at; i < at + 8; i++)
        w = w << 8 | (i < len ? p[i] : 0);
    return w;
}

struct collect_ctx {
    struct tool_keys *list;
    char *const *globs;
    int nglobs;
    char shown[TOOL_SHOWN_MAX];
};

static int collect_one(void *p, const void *key, size_t len, int64_t value)
{
    struct collect_ctx *ctx = p;

    if (len > TALLY_KEY_MAX)
        return -ENAMETOOLONG; /* the store promises it never happens */
    if (ctx->nglobs != 0) {
        tool_key_show(ctx->shown, key, len);
        if (!tool_globs_match(ctx->globs, ctx->nglobs, ctx->shown))
            return 0;
    }
    return tool_keys_add(ctx->list, key, len, value);
}

int tool_keys_add(struct tool_keys *list, const void *key, size_t len,
                  int64_t value)
{
    struct tool_entry *e;

    if (len > TALLY_KEY_MAX)
        return -ENAMETOOLONG;
    if (list->n == list->cap) {
        size_t cap = list->cap != 0 ? 2 * list->cap : 1024;
        struct tool_entry *grown;

        grown = realloc(list->entries, cap * sizeof *grown);
        if (grown == NULL)
            return -ENOMEM;
        list->entries = grown;
        list->cap = cap;
    }
    e = &list->entries[list->n];
    e->key = arena_copy(list, key, len);
    if (e->key == NULL)
        return -ENOMEM;
    e->len = len;
    e->value = value;
    e->sort_hi = sort_word(key, len, 0);
    e->sort_lo = sort_word(key, len, 8);
    list->n++;
    return 0;
}

int tool_keys_collect(tally_store *s, char *const *globs, int nglobs,
                      struct tool_keys *list)
{
    struct collect_ctx *ctx = malloc(sizeof *ctx); /* 16 KiB: not on the stack */
    int err;

    if (ctx == NULL)
        return -ENOMEM;
    ctx->list = list;
    ctx->globs = globs;
    ctx->nglobs = nglobs;
    err = tally_store_foreach(s, collect_one, ctx);
    free(ctx);
    return err;
}

int tool_entry_keycmp(const struct tool_entry *a, const struct tool_entry *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int c;

    /* Zero padding orders as memcmp-then-length does: where the padded
     * words first differ, either both keys have real bytes there, or the
     * shorter key has ended and is a prefix of the other. */
    if (a->sort_hi != b->sort_hi)
        return a->sort_hi < b->sort_hi ? -1 : 1;
    if (a->sort_lo != b->sort_lo)
        return a->sort_lo < b->sort_lo ? -1 : 1;
    c = n > 16 ? memcmp(a->key + 16, b->key + 16, n - 16) : 0;
    if (c != 0)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

/*
 * Sorting a million keys is most of what 'tally export' and 'tally ls'
 * cost, so the sort works on 24-byte records holding the two sort words
 * and the entry's index (most comparisons touch nothing else), with the
 * comparison inlined, then moves the entries into that order once. It is
 * an introsort: quicksort with a median-of-three pivot, insertion sort for
 * short runs, and heapsort past 2 log2(n) levels, so that no order of keys
 * in a file (a crafted one included) makes it quadratic.
 */
#if defined(TALLY_TEST_HOOKS)
int tool_sort_depth_override = -1;
#endif

struct sort_rec {
    uint64_t hi, lo;
    size_t i; /* index into the entries */
};

static inline bool rec_lt(const struct tool_entry *ents,
                          const struct sort_rec *a, const struct sort_rec *b)
{
    if (a->hi != b->hi)
        return a->hi < b->hi;
    if (a->lo != b->lo)
        return a->lo < b->lo;
    return tool_entry_keycmp(&ents[a->i], &ents[b->i]) < 0;
}

static inline void rec_swap(struct sort_rec *a, struct sort_rec *b)
{
    struct sort_rec t = *a;

    *a = *b;
    *b = t;
}

static void rec_insertion(const struct tool_entry *ents, struct sort_rec *r,
                          size_t n)
{
    size_t i, j;

    for (i = 1; i < n; i++) {
        struct sort_rec t = r[i];

        for (j = i; j > 0 && rec_lt(ents, &t, &r[j - 1]); j--)
            r[j] = r[j - 1];
        r[j] = t;
    }
}

static void rec_sift(const struct tool_entry *ents, struct sort_rec *r,
                     size_t root, size_t n)
{
    size_t child;

    while ((child = 2 * root + 1) < n) {
        if (child + 1 < n && rec_lt(ents, &r[child], &r[child + 1]))
            child++;
        if (!rec_lt(ents, &r[root], &r[child]))
            return;
        rec_swap(&r[root], &r[child]);
        root = child;
    }
}

static void rec_heapsort(const struct tool_entry *ents, struct sort_rec *r,
                         size_t n)
{
    size_t i;

    for (i = n / 2; i-- > 0;)
        rec_sift(ents, r, i, n);
    for (i = n; i-- > 1;) {
        rec_swap(&r[0], &r[i]);
        rec_sift(ents, r, 0, i);
    }
}

static void rec_introsort(const struct tool_entry *ents, struct sort_rec *r,
                          size_t n, unsigned depth)
{
    while (n > 16) {
        size_t mid = n / 2, i, j;
        struct sort_rec pivot;

        if (depth-- == 0) {
            rec_heapsort(ents, r, n);
            return;
        }
        /* r[0] <= r[mid] <= r[n-1]; the pivot waits at n-2. */
        if (rec_lt(ents, &r[mid], &r[0]))
            rec_swap(&r[mid], &r[0]);
        if (rec_lt(ents, &r[n - 1], &r[0]))
            rec_swap(&r[n - 1], &r[0]);
        if (rec_lt(ents, &r[n - 1], &r[mid]))
            rec_swap(&r[n - 1], &r[mid]);
        rec_swap(&r[mid], &r[n - 2]);
        pivot = r[n - 2];
        /* r[0] and the pivot itself stop the scans: no bounds checks. */
        i = 0;
        j = n - 2;
        for (;;) {
            while (rec_lt(ents, &r[++i], &pivot))
                continue;
            while (rec_lt(ents, &pivot, &r[--j]))
                continue;
            if (i >= j)
                break;
            rec_swap(&r[i], &r[j]);
        }
        rec_swap(&r[i], &r[n - 2]);
        /* [0, i) < pivot < (i, n): recurse into the smaller side. */
        if (i < n - i - 1) {
            rec_introsort(ents, r, i, depth);
            r += i + 1;
            n -= i + 1;
        } else {
            rec_introsort(ents, r + i + 1, n - i - 1, depth);
            n = i;
        }
    }
    rec_insertion(ents, r, n);
}

int tool_keys_sort(struct tool_keys *list)
{
    struct tool_entry *sorted;
    struct sort_rec *r;
    unsigned depth = 0;
    size_t i;

    if (list->n < 2)
        return 0;
    r = malloc(list->n * sizeof *r);
    sorted = malloc(list->cap * sizeof *sorted);
    if (r == NULL || sorted == NULL) {
        free(r);
        free(sorted);
        return -ENOMEM;
    }
    for (i = 0; i < list->n; i++) {
        r[i].hi = list->entries[i].sort_hi;
        r[i].lo = list->entries[i].sort_lo;
        r[i].i = i;
    }
    for (i = list->n; i > 1; i >>= 1)
        depth += 2;
#if defined(TALLY_TEST_HOOKS)
    if (tool_sort_depth_override >= 0)
        depth = (unsigned)tool_sort_depth_override;
#endif
    rec_introsort(list->entries, r, list->n, depth);
    for (i = 0; i < list->n; i++)
        sorted[i] = list->entries[r[i].i];
    free(r);
    free(list->entries);
    list->entries = sorted;
    return 0;
}

void tool_put_int64(FILE *f, int64_t v)
{
    char buf[24], *p = buf + sizeof buf;
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    fwrite_unlocked(p, 1, (size_t)(buf + sizeof buf - p), f);
}

void tool_keys_free(struct tool_keys *list)
{
    struct tool_chunk *c = list->chunks, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(list->entries);
    memset(list, 0, sizeof *list);
}
