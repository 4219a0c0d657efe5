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

struct collect_ctx {
    struct tool_keys *list;
    char *const *globs;
    int nglobs;
    char shown[TOOL_SHOWN_MAX];
};

static int collect_one(void *p, const void *key, size_t len, int64_t value)
{
    struct collect_ctx *ctx = p;
    struct tool_keys *list = ctx->list;
    struct tool_entry *e;

    if (len > TALLY_KEY_MAX)
        return -ENAMETOOLONG; /* the store promises it never happens */
    if (ctx->nglobs != 0) {
        tool_key_show(ctx->shown, key, len);
        if (!tool_globs_match(ctx->globs, ctx->nglobs, ctx->shown))
            return 0;
    }
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
    int c = n != 0 ? memcmp(a->key, b->key, n) : 0;

    if (c != 0)
        return c;
    return (a->len > b->len) - (a->len < b->len);
}

static int entry_cmp(const void *a, const void *b)
{
    return tool_entry_keycmp(a, b);
}

void tool_keys_sort(struct tool_keys *list)
{
    if (list->n > 1)
        qsort(list->entries, list->n, sizeof *list->entries, entry_cmp);
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
