/*
 * expo.c - the exposition writer: Prometheus text format 0.0.4 and
 * OpenMetrics 1.0 (tally.h section 6, docs/exposition.md).
 *
 * HOW IT WORKS
 *
 * Everything is formatted into w->buf, a fixed buffer inside the writer;
 * when the next piece does not fit, the buffer goes to the sink and
 * formatting goes on from its start. So a sample costs no allocation, and
 * a key of any length streams through. tally_expo_begin does the work
 * that is the same for every sample of a family once: it checks every
 * name, builds the text before the key ("name_total{c=\"v\",key=\"") and
 * the keyless sample's ("name_total{c=\"v\"}"), and remembers the
 * family's names so that a later family cannot reuse them. Those copies
 * are the only allocations (per family, not per key).
 *
 * A writer is not a concurrent structure: one thread at a time uses it.
 * What it reads (maps, stores, counters, adders) is read through their
 * own calls (foreach, load, sum), which never block adds.
 *
 * Every check runs before anything is written, so a call that fails for
 * bad input has written nothing. A sink error is kept in w->err and ends
 * the output: nothing is formatted or sent after it.
 */
#include "tally.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

#define EXPO_BUF 16384

/* A family this writer has begun: the names no later family may reuse.
 * OpenMetrics names the family (counter "x" for samples x_total), text
 * 0.0.4 names the samples; both must be unique. */
struct expo_name {
    char *family; /* OpenMetrics family name */
    char *sample; /* sample name (x_total for a counter) */
};

struct tally_expo {
    tally_expo_sink_fn sink;
    void *ctx;
    unsigned format;
    int err;       /* the sink's error, sticky; 0 while none */
    int finished;  /* tally_expo_finish ran */

    /* The current family (valid when in_family). */
    int in_family;
    unsigned type;
    int empty_seen;       /* the keyless sample or the empty key written */
    char *key_prefix;     /* "name_total{c=\"v\",key=\"" */
    size_t key_prefix_len;
    char *nokey_prefix;   /* "name_total{c=\"v\"}" or "name_total" */
    size_t nokey_prefix_len;

    struct expo_name *names;
    size_t nnames, cap_names;

    struct tally_expo_stats stats;
    size_t used;
    char buf[EXPO_BUF];
};

/* ---- the buffer ------------------------------------------------------- */

static int expo_flush(tally_expo *w)
{
    int rc;

    if (w->err != 0)
        return w->err;
    if (w->used == 0)
        return 0;
    rc = w->sink(w->ctx, w->buf, w->used);
    if (rc != 0) {
        w->err = rc < 0 ? rc : -EIO;
        w->used = 0;
        return w->err;
    }
    w->stats.bytes += w->used;
    w->used = 0;
    return 0;
}

/* Makes room for n bytes (n <= EXPO_BUF). */
static int expo_room(tally_expo *w, size_t n)
{
    if (EXPO_BUF - w->used >= n)
        return 0;
    return expo_flush(w);
}

static int expo_put(tally_expo *w, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        size_t n;

        if (w->used == EXPO_BUF && expo_flush(w) != 0)
            return w->err;
        n = EXPO_BUF - w->used;
        if (n > len)
            n = len;
        memcpy(w->buf + w->used, p, n);
        w->used += n;
        p += n;
        len -= n;
    }
    return w->err;
}

static int expo_puts(tally_expo *w, const char *s)
{
    return expo_put(w, s, strlen(s));
}

/* ---- characters ------------------------------------------------------- */

/*
 * The length of the valid UTF-8 sequence (RFC 3629: shortest form, no
 * surrogates, at most U+10FFFF) at p, or 0 when the bytes there are not
 * one. n > 0 bytes are available.
 */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len, i;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* shorter forms are overlong */
        else if (c == 0xED)
            hi = 0x9F; /* U+D800..U+DFFF are surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* beyond U+10FFFF */
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

static int utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    while (n > 0) {
        size_t k = utf8_len(p, n);
        if (k == 0)
            return 0;
        p += k;
        n -= k;
    }
    return 1;
}

/*
 * A byte's class in a key (ASCII only; bytes from 0x80 are checked as
 * UTF-8): PLAIN as is, ESC with a format escape (\\ \" \n: the label
 * value's backslash doubling and the format's escaping combined), HEX as
 * \xNN in the label value.
 */
enum { PLAIN = 0, ESC = 1, HEX = 2 };

static unsigned char key_class(unsigned char c)
{
    if (c == '\\' || c == '"' || c == '\n')
        return ESC;
    if (c < 0x20 && c != '\t')
        return HEX;
    if (c == 0x7F)
        return HEX;
    return PLAIN;
}

/*
 * Appends s (a NUL-terminated UTF-8 string) with the format's escapes
 * into dst when dst is not NULL; returns the length either way.
 * quote: whether '"' is escaped (label values, OpenMetrics HELP).
 */
static size_t escape_text(char *dst, const char *s, int quote)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        const char *e = NULL;

        if (*s == '\\')
            e = "\\\\";
        else if (*s == '\n')
            e = "\\n";
        else if (*s == '"' && quote)
            e = "\\\"";
        if (e != NULL) {
            if (dst != NULL)
                memcpy(dst + n, e, 2);
            n += 2;
        } else {
            if (dst != NULL)
                dst[n] = *s;
            n++;
        }
    }
    return n;
}

/* Writes s (NUL-terminated UTF-8) as escape_text would, through the
 * buffer: runs without a special character go in one copy. */
static int put_escaped(tally_expo *w, const char *s, int quote)
{
    while (*s != '\0') {
        size_t run = strcspn(s, quote ? "\\\n\"" : "\\\n");
        const char *e;

        if (run > 0 && expo_put(w, s, run) != 0)
            return w->err;
        s += run;
        if (*s == '\0')
            break;
        e = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : "\\\"";
        if (expo_put(w, e, 2) != 0)
            return w->err;
        s++;
    }
    return w->err;
}

/* ---- names ------------------------------------------------------------ */

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* [a-zA-Z][a-zA-Z0-9_]* : valid in both formats, and neither a recording
 * rule's colon nor OpenMetrics' reserved leading underscore. */
static int metric_name_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || !is_alpha(s[0]))
        return 0;
    for (i = 1; i < len; i++)
        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '_')
            return 0;
    return 1;
}

/* [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved). */
static int label_name_ok(const char *s)
{
    size_t i;

    if (s == NULL || !(is_alpha(s[0]) || s[0] == '_'))
        return 0;
    if (s[0] == '_' && s[1] == '_')
        return 0;
    for (i = 1; s[i] != '\0'; i++)
        if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '_')
            return 0;
    return 1;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* ---- the writer ------------------------------------------------------- */

const char *tally_expo_content_type(unsigned format)
{
    switch (format) {
    case TALLY_EXPO_TEXT:
        return TALLY_EXPO_CONTENT_TYPE_TEXT;
    case TALLY_EXPO_OPENMETRICS:
        return TALLY_EXPO_CONTENT_TYPE_OPENMETRICS;
    default:
        return NULL;
    }
}

int tally_expo_sink_file(void *ctx, const void *data, size_t len)
{
    FILE *f = ctx;

    if (f == NULL)
        return -EINVAL;
    errno = 0;
    if (fwrite(data, 1, len, f) != len)
        return errno > 0 ? -errno : -EIO;
    return 0;
}

int tally_expo_new(tally_expo **out, unsigned format,
                   tally_expo_sink_fn sink, void *ctx)
{
    tally_expo *w;

    if (out == NULL || sink == NULL || tally_expo_content_type(format) == NULL)
        return -EINVAL;
    w = tally__calloc(1, sizeof *w);
    if (w == NULL)
        return -ENOMEM;
    w->sink = sink;
    w->ctx = ctx;
    w->format = format;
    *out = w;
    return 0;
}

static void free_family(tally_expo *w)
{
    tally__free(w->key_prefix); /* nokey_prefix shares its allocation */
    w->key_prefix = w->nokey_prefix = NULL;
    w->in_family = 0;
}

void tally_expo_free(tally_expo *w)
{
    size_t i;

    if (w == NULL)
        return;
    free_family(w);
    for (i = 0; i < w->nnames; i++)
        tally__free(w->names[i].family); /* .sample shares it */
    tally__free(w->names);
    tally__free(w);
}

/* Whether a family with these names would clash with one begun before. */
static int name_taken(const tally_expo *w, const char *family, size_t flen,
                      const char *sample, size_t slen)
{
    size_t i;

    for (i = 0; i < w->nnames; i++) {
        const struct expo_name *e = &w->names[i];
        if ((strlen(e->family) == flen &&
             memcmp(e->family, family, flen) == 0) ||
            (strlen(e->sample) == slen &&
             memcmp(e->sample, sample, slen) == 0))
            return 1;
    }
    return 0;
}

/* The checks tally_expo_begin makes before it writes anything. */
static int family_ok(const struct tally_expo_family *f, const char *key_label)
{
    size_t i, j, len;

    if (f->name == NULL || f->help == NULL || f->help[0] == '\0' ||
        !utf8_valid(f->help))
        return 0;
    if (f->type != TALLY_EXPO_COUNTER && f->type != TALLY_EXPO_GAUGE)
        return 0;
    len = strlen(f->name);
    if (!metric_name_ok(f->name, len))
        return 0;
    if (f->type == TALLY_EXPO_COUNTER && ends_with(f->name, len, "_total") &&
        !metric_name_ok(f->name, len - 6))
        return 0; /* e.g. "x_total" is fine, "_total" is not */
    if (!label_name_ok(key_label))
        return 0;
    if (f->nlabels > 0 && f->labels == NULL)
        return 0;
    for (i = 0; i < f->nlabels; i++) {
        const struct tally_expo_label *l = &f->labels[i];
        if (!label_name_ok(l->name) || l->value == NULL ||
            !utf8_valid(l->value) || strcmp(l->name, key_label) == 0)
            return 0;
        for (j = 0; j < i; j++)
            if (strcmp(f->labels[j].name, l->name) == 0)
                return 0;
    }
    return 1;
}

int tally_expo_begin(tally_expo *w, const struct tally_expo_family *f)
{
    const char *key_label;
    const char *type_word;
    size_t name_len, base_len, sample_len, labels_len, i, n;
    size_t meta_len;
    char *names, *prefix, *p;
    int om, rc;

    if (w == NULL || f == NULL)
        return -EINVAL;
    if (w->err != 0)
        return w->err;
    if (w->finished)
        return -EINVAL;
    key_label = f->key_label != NULL ? f->key_label : "key";
    if (!family_ok(f, key_label))
        return -EINVAL;
    om = w->format == TALLY_EXPO_OPENMETRICS;

    /* The names: base ("x"), sample ("x_total" or the gauge's name). */
    name_len = strlen(f->name);
    base_len = name_len;
    if (f->type == TALLY_EXPO_COUNTER && ends_with(f->name, name_len, "_total"))
        base_len -= 6;
    sample_len = f->type == TALLY_EXPO_COUNTER ? base_len + 6 : base_len;
    names = tally__malloc(base_len + 1 + sample_len + 1);
    if (names == NULL)
        return -ENOMEM;
    memcpy(names, f->name, base_len);
    names[base_len] = '\0';
    memcpy(names + base_len + 1, f->name, base_len);
    if (f->type == TALLY_EXPO_COUNTER)
        memcpy(names + base_len + 1 + base_len, "_total", 6);
    names[base_len + 1 + sample_len] = '\0';
    if (name_taken(w, names, base_len, names + base_len + 1, sample_len)) {
        tally__free(names);
        return -EEXIST;
    }
    if (w->nnames == w->cap_names) {
        size_t cap = w->cap_names ? 2 * w->cap_names : 8;
        struct expo_name *grown =
            tally__malloc(cap * sizeof *grown);
        if (grown == NULL) {
            tally__free(names);
            return -ENOMEM;
        }
        if (w->nnames > 0)
            memcpy(grown, w->names, w->nnames * sizeof *grown);
        tally__free(w->names);
        w->names = grown;
        w->cap_names = cap;
    }

    /* The sample prefixes: sample{labels,key=" and sample{labels} or
     * sample. */
    labels_len = 0;
    for (i = 0; i < f->nlabels; i++)
        labels_len += strlen(f->labels[i].name) + 2 /* =" */ +
                      escape_text(NULL, f->labels[i].value, 1) + 2 /* ", */;
    n = sample_len + 1 + labels_len + strlen(key_label) + 2; /* key prefix */
    n += sample_len + 1 + labels_len + 1;                    /* keyless */
    prefix = tally__malloc(n + 2);
    if (prefix == NULL) {
        tally__free(names);
        return -ENOMEM;
    }
    p = prefix;
    memcpy(p, names + base_len + 1, sample_len);
    p += sample_len;
    *p++ = '{';
    for (i = 0; i < f->nlabels; i++) {
        size_t ln = strlen(f->labels[i].name);
        memcpy(p, f->labels[i].name, ln);
        p += ln;
        *p++ = '=';
        *p++ = '"';
        p += escape_text(p, f->labels[i].value, 1);
        *p++ = '"';
        *p++ = ',';
    }
    memcpy(p, key_label, strlen(key_label));
    p += strlen(key_label);
    *p++ = '=';
    *p++ = '"';
    free_family(w);
    w->key_prefix = prefix;
    w->key_prefix_len = (size_t)(p - prefix);
    /* The keyless prefix is the key prefix without the key label. */
    w->nokey_prefix = p;
    if (f->nlabels == 0) {
        memcpy(p, names + base_len + 1, sample_len);
        p += sample_len;
    } else {
        size_t keep = sample_len + 1 + labels_len - 1; /* drop last ',' */
        memcpy(p, prefix, keep);
        p += keep;
        *p++ = '}';
    }
    w->nokey_prefix_len = (size_t)(p - w->nokey_prefix);

    w->names[w->nnames].family = names;
    w->names[w->nnames].sample = names + base_len + 1;
    w->nnames++;
    w->in_family = 1;
    w->type = f->type;
    w->empty_seen = 0;
    w->stats.families++;

    /* # HELP and # TYPE: OpenMetrics names the family, text 0.0.4 the
     * samples. Escaped HELP: \\ and \n; OpenMetrics also \". */
    meta_len = om ? base_len : sample_len;
    type_word = f->type == TALLY_EXPO_COUNTER ? "counter" : "gauge";
    rc = expo_puts(w, "# HELP ");
    if (rc == 0)
        rc = expo_put(w, names + (om ? 0 : base_len + 1), meta_len);
    if (rc == 0)
        rc = expo_put(w, " ", 1);
    if (rc == 0)
        rc = put_escaped(w, f->help, om);
    if (rc == 0)
        rc = expo_puts(w, "\n# TYPE ");
    if (rc == 0)
        rc = expo_put(w, names + (om ? 0 : base_len + 1), meta_len);
    if (rc == 0)
        rc = expo_puts(w, " ");
    if (rc == 0)
        rc = expo_puts(w, type_word);
    if (rc == 0)
        rc = expo_put(w, "\n", 1);
    return rc;
}

/* Decimal, exactly: INT64_MIN included. Returns the length. */
static size_t format_int(char *dst, int64_t v)
{
    char tmp[24];
    size_t n = 0, i;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    i = 0;
    if (v < 0)
        dst[i++] = '-';
    while (n > 0)
        dst[i++] = tmp[--n];
    return i;
}

/* The most bytes put_value writes: " -9223372036854775808\n". */
#define VALUE_MAX 22

/* " <value>\n" after a sample's labels. */
static int put_value(tally_expo *w, int64_t value)
{
    if (w->type == TALLY_EXPO_COUNTER && value < 0) {
        value = 0;
        w->stats.clamped++;
    }
    w->stats.samples++;
    if (expo_room(w, VALUE_MAX) != 0)
        return w->err;
    char *p = w->buf + w->used;
    size_t n = 0;
    p[n++] = ' ';
    n += format_int(p + n, value);
    p[n++] = '\n';
    w->used += n;
    return 0;
}

/* Whether key byte c goes into the label value as itself. */
static int key_plain(unsigned char c)
{
    return c < 0x80 && key_class(c) == PLAIN;
}

/* Whether all 8 bytes of x go in as themselves, tested at once: none
 * below 0x20 (a tab is plain but fails here: the byte loop takes it),
 * none from 0x7F, no '"', no '\\'. Each term sets a byte's high bit where
 * that byte is such a byte; a borrow or carry across bytes sets a bit
 * only above a byte that is one already. */
static int word_plain(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101u;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t bad = ((x - ones * 0x20) & ~x) | x | (x + ones) |
                   ((q - ones) & ~q) | ((b - ones) & ~b);
    return (bad & ones * 0x80) == 0;
}

/* How many bytes from p (n of them) go in as themselves: 8 at a time,
 * then byte by byte. */
static size_t plain_run(const unsigned char *p, size_t n)
{
    size_t r = 0;
    uint64_t x;

    while (n - r >= 8) {
        memcpy(&x, p + r, 8);
        if (!word_plain(x))
            break;
        r += 8;
    }
    while (r < n && key_plain(p[r]))
        r++;
    return r;
}

/* The most bytes one key byte becomes: "\\xNN". */
#define KEY_BYTE_MAX 5

/*
 * The key bytes k[0..len) as the label value, format-escaped (tally.h
 * section 6), into dst: as many whole characters as fit in cap bytes.
 * Returns the bytes written; *taken is the key bytes consumed. Sets
 * *encoded when a byte needed the \xNN encoding. Consumes at least one
 * character when cap >= KEY_BYTE_MAX.
 */
static size_t encode_key(char *dst, size_t cap, const unsigned char *k,
                         size_t len, size_t *taken, int *encoded)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, o = 0;

    while (i < len) {
        unsigned char c = k[i];
        size_t run;

        if (key_plain(c)) {
            /* A run of plain ASCII goes in one copy. */
            run = plain_run(k + i, len - i);
            if (run > cap - o)
                run = cap - o;
            if (run == 0)
                break;
            memcpy(dst + o, k + i, run);
            o += run;
            i += run;
            continue;
        }
        if (cap - o < KEY_BYTE_MAX)
            break;
        if (c >= 0x80) {
            size_t ulen = utf8_len(k + i, len - i);
            if (ulen > 0) {
                memcpy(dst + o, k + i, ulen);
                o += ulen;
                i += ulen;
                continue;
            }
        } else if (key_class(c) == ESC) {
            /* The label value doubles a backslash, the format escapes
             * each: four on the wire. */
            if (c == '\\') {
                memcpy(dst + o, "\\\\\\\\", 4);
                o += 4;
                *encoded = 1;
            } else {
                dst[o++] = '\\';
                dst[o++] = c == '"' ? '"' : 'n';
            }
            i++;
            continue;
        }
        /* \xNN in the label value: its backslash escaped on the wire. */
        dst[o++] = '\\';
        dst[o++] = '\\';
        dst[o++] = 'x';
        dst[o++] = hex[c >> 4];
        dst[o++] = hex[c & 15];
        *encoded = 1;
        i++;
    }
    *taken = i;
    return o;
}

/* The key as its label value, through the buffer in as many pieces as it
 * needs. */
static int put_key(tally_expo *w, const unsigned char *k, size_t len)
{
    int encoded = 0;

    while (len > 0) {
        size_t taken;

        if (expo_room(w, KEY_BYTE_MAX) != 0)
            return w->err;
        w->used += encode_key(w->buf + w->used, EXPO_BUF - w->used, k, len,
                              &taken, &encoded);
        k += taken;
        len -= taken;
    }
    if (encoded)
        w->stats.keys_encoded++;
    return 0;
}

/* The checks every sample call makes. */
static int sample_ok(const tally_expo *w)
{
    if (w == NULL)
        return -EINVAL;
    if (w->err != 0)
        return w->err;
    if (w->finished || !w->in_family)
        return -EINVAL;
    return 0;
}

int tally_expo_key(tally_expo *w, const void *key, size_t len, int64_t value)
{
    int rc = sample_ok(w);

    if (rc != 0)
        return rc;
    if (key == NULL && len > 0)
        return -EINVAL;
    if (len == 0) {
        if (w->empty_seen)
            return -EEXIST;
        w->empty_seen = 1;
    }
    /* The whole line at once when it certainly fits (every key of a
     * usual size, most of the time): one room check for the prefix, the
     * key, the closing and the value. */
    if (w->key_prefix_len + KEY_BYTE_MAX * len + 2 + VALUE_MAX <=
        EXPO_BUF - w->used) {
        int encoded = 0;
        size_t taken;
        char *p = w->buf + w->used;

        memcpy(p, w->key_prefix, w->key_prefix_len);
        p += w->key_prefix_len;
        p += encode_key(p, KEY_BYTE_MAX * len, key, len, &taken, &encoded);
        *p++ = '"';
        *p++ = '}';
        w->used = (size_t)(p - w->buf);
        if (encoded)
            w->stats.keys_encoded++;
        return put_value(w, value);
    }
    if (expo_put(w, w->key_prefix, w->key_prefix_len) != 0 ||
        put_key(w, key, len) != 0 || expo_put(w, "\"}", 2) != 0)
        return w->err;
    return put_value(w, value);
}

int tally_expo_value(tally_expo *w, int64_t value)
{
    int rc = sample_ok(w);

    if (rc != 0)
        return rc;
    if (w->empty_seen)
        return -EEXIST;
    w->empty_seen = 1;
    if (expo_put(w, w->nokey_prefix, w->nokey_prefix_len) != 0)
        return w->err;
    return put_value(w, value);
}

int tally_expo_finish(tally_expo *w)
{
    if (w == NULL)
        return -EINVAL;
    if (w->err != 0 || w->finished) {
        w->finished = 1;
        free_family(w);
        return w->err != 0 ? w->err : -EINVAL;
    }
    w->finished = 1;
    free_family(w);
    if (w->format == TALLY_EXPO_OPENMETRICS && expo_puts(w, "# EOF\n") != 0)
        return w->err;
    return expo_flush(w);
}

int tally_expo_stats(const tally_expo *w, struct tally_expo_stats *out)
{
    if (w == NULL || out == NULL)
        return -EINVAL;
    *out = w->stats;
    return 0;
}

/* ---- whole families --------------------------------------------------- */

/* A foreach visitor: one sample per key. A non-zero result (a sink
 * error) stops the walk, and foreach returns it. */
static int visit_key(void *ctx, const void *key, size_t len, int64_t value)
{
    return tally_expo_key(ctx, key, len, value);
}

int tally_expo_map(tally_expo *w, const struct tally_expo_family *f,
                   tally_map *m)
{
    int rc;

    if (m == NULL)
        return -EINVAL;
    rc = tally_expo_begin(w, f);
    if (rc != 0)
        return rc;
    return tally_map_foreach(m, visit_key, w);
}

int tally_expo_store(tally_expo *w, const struct tally_expo_family *f,
                     tally_store *s)
{
    int rc;

    if (s == NULL)
        return -EINVAL;
    rc = tally_expo_begin(w, f);
    if (rc != 0)
        return rc;
    return tally_store_foreach(s, visit_key, w);
}

int tally_expo_counter(tally_expo *w, const struct tally_expo_family *f,
                       const tally_counter *c)
{
    int rc;

    if (c == NULL)
        return -EINVAL;
    rc = tally_expo_begin(w, f);
    if (rc != 0)
        return rc;
    return tally_expo_value(w, tally_counter_load(c));
}

int tally_expo_adder(tally_expo *w, const struct tally_expo_family *f,
                     tally_adder *a)
{
    int rc;

    if (a == NULL)
        return -EINVAL;
    rc = tally_expo_begin(w, f);
    if (rc != 0)
        return rc;
    return tally_expo_value(w, tally_adder_sum(a));
}
