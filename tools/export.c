/*
 * export.c - 'tally export FILE [--format json|csv] [GLOB...]': every key
 * and value, sorted by key, for programs.
 *
 * Keys are byte strings, so each format says how any bytes come through
 * (the usage text below is the documentation; README repeats it):
 *
 *   JSON  {"format":"tally-export","version":1,...,"counters":[...]}, one
 *         counter per line. A key that is valid UTF-8 is a JSON string
 *         ("key"); any other key is its bytes in base64 ("key_base64").
 *         Values are JSON integers, exact over the whole int64_t range.
 *         "version" changes only when a reader would misread the new form.
 *   CSV   RFC 4180: a header row "key,value", then one row per key; a key
 *         holding a comma, a double quote, CR or LF is quoted, quotes
 *         doubled. The key is written as its raw bytes (read it with a
 *         byte-transparent decoder, e.g. Python's errors="surrogateescape").
 *         Rows end in LF.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tool.h"

/* The "version" of the JSON form; see the comment above. */
enum { EXPORT_JSON_VERSION = 1 };

static void export_usage(FILE *f)
{
    fprintf(f,
            "usage: tally export FILE [--format json|csv] [GLOB...]\n"
            "\n"
            "Writes every key of the store FILE (with GLOBs: those that match,\n"
            "as in 'tally ls') and its value to stdout, sorted by key.\n"
            "\n"
            "  -f, --format F   json (the default) or csv\n"
            "  -h, --help       show this help\n"
            "\n"
            "json: one object, one counter per line:\n"
            "  {\"format\":\"tally-export\",\"version\":%d,\"store_id\":\"<hex>\",\n"
            "   \"time_unix_ns\":<export time>,\"counters\":[\n"
            "  {\"key\":\"requests\",\"value\":42},\n"
            "  {\"key_base64\":\"/w==\",\"value\":-1}\n"
            "  ]}\n"
            "  A key that is valid UTF-8 is a string (\"key\"); any other key\n"
            "  is its bytes in base64 (\"key_base64\"). Values are integers\n"
            "  (int64). \"version\" changes only when a reader would misread\n"
            "  the output; new fields may appear without it.\n"
            "csv: RFC 4180, a header row 'key,value', rows ending in LF. Keys\n"
            "  are their raw bytes; one holding a comma, a double quote, CR\n"
            "  or LF is quoted (quotes doubled).\n",
            EXPORT_JSON_VERSION);
}

/* The length of the valid UTF-8 sequence at p[0..n), or 0: no overlong
 * forms, no surrogates, nothing past U+10FFFF (RFC 3629). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len, i;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0, len;

    while (i < n) {
        if ((len = utf8_seq(p + i, n - i)) == 0)
            return false;
        i += len;
    }
    return true;
}

/* Writes key (valid UTF-8) as a JSON string, quotes included. */
static void json_string(FILE *out, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    putc_unlocked('"', out);
    for (i = 0; i < n; i++) {
        unsigned char c = p[i];

        if (c == '"' || c == '\\') {
            putc_unlocked('\\', out);
            putc_unlocked(c, out);
        } else if (c == '\n') {
            fputs_unlocked("\\n", out);
        } else if (c == '\t') {
            fputs_unlocked("\\t", out);
        } else if (c == '\r') {
            fputs_unlocked("\\r", out);
        } else if (c < 0x20) {
            fputs_unlocked("\\u00", out);
            putc_unlocked(hex[c >> 4], out);
            putc_unlocked(hex[c & 15], out);
        } else {
            putc_unlocked(c, out);
        }
    }
    putc_unlocked('"', out);
}

static void base64(FILE *out, const unsigned char *p, size_t n)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    putc_unlocked('"', out);
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

        putc_unlocked(b64[v >> 18], out);
        putc_unlocked(b64[v >> 12 & 63], out);
        putc_unlocked(b64[v >> 6 & 63], out);
        putc_unlocked(b64[v & 63], out);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;

        putc_unlocked(b64[v >> 18], out);
        putc_unlocked(b64[v >> 12 & 63], out);
        fputs_unlocked("==", out);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

        putc_unlocked(b64[v >> 18], out);
        putc_unlocked(b64[v >> 12 & 63], out);
        putc_unlocked(b64[v >> 6 & 63], out);
        putc_unlocked('=', out);
    }
    putc_unlocked('"', out);
}

static void export_json(FILE *out, const struct tool_keys *list,
                        const struct tally_store_info *info)
{
    struct timespec now;
    size_t i;

    clock_gettime(CLOCK_REALTIME, &now);
    fprintf(out, "{\"format\":\"tally-export\",\"version\":%d,\"store_id\":\"",
            EXPORT_JSON_VERSION);
    for (i = 0; i < sizeof info->id; i++)
        fprintf(out, "%02x", info->id[i]);
    fprintf(out, "\",\"time_unix_ns\":%" PRId64 ",\"counters\":[\n",
            (int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
    for (i = 0; i < list->n; i++) {
        const struct tool_entry *e = &list->entries[i];

        if (utf8_valid(e->key, e->len)) {
            fputs_unlocked("{\"key\":", out);
            json_string(out, e->key, e->len);
        } else {
            fputs_unlocked("{\"key_base64\":", out);
            base64(out, e->key, e->len);
        }
        fputs_unlocked(",\"value\":", out);
        tool_put_int64(out, e->value);
        fputs_unlocked(i + 1 < list->n ? "},\n" : "}\n", out);
    }
    fputs_unlocked("]}\n", out);
}

static void export_csv(FILE *out, const struct tool_keys *list)
{
    size_t i, j;

    fputs_unlocked("key,value\n", out);
    for (i = 0; i < list->n; i++) {
        const struct tool_entry *e = &list->entries[i];
        bool quote = false;

        for (j = 0; j < e->len && !quote; j++)
            quote = e->key[j] == ',' || e->key[j] == '"' ||
                    e->key[j] == '\r' || e->key[j] == '\n';
        if (!quote) {
            fwrite_unlocked(e->key, 1, e->len, out);
        } else {
            putc_unlocked('"', out);
            for (j = 0; j < e->len; j++) {
                if (e->key[j] == '"')
                    putc_unlocked('"', out);
                putc_unlocked(e->key[j], out);
            }
            putc_unlocked('"', out);
        }
        putc_unlocked(',', out);
        tool_put_int64(out, e->value);
        putc_unlocked('\n', out);
    }
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"format", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct tool_keys list = {0};
    struct tally_store_info info;
    const char *file;
    bool csv = false;
    tally_store *s;
    int opt, rc, err;

    while ((opt = getopt_long(argc, argv, ":f:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "csv") != 0)
                return tool_usage_error("export",
                                        "--format wants json or csv, not "
                                        "'%s'",
                                        optarg);
            csv = strcmp(optarg, "csv") == 0;
            break;
        case 'h':
            export_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("export", opt, argv);
        }
    }
    if (optind == argc)
        return tool_usage_error("export", "missing FILE");
    file = argv[optind];

    rc = tool_store_open("export", file, TALLY_STORE_READONLY, &s);
    if (rc != TOOL_OK)
        return rc;
    err = tally_store_info(s, &info);
    if (err == 0)
        err = tool_keys_collect(s, argv + optind + 1, argc - optind - 1,
                                &list);
    tally_store_close(s);
    if (err == 0)
        err = tool_keys_sort(&list);
    if (err != 0) {
        tool_keys_free(&list);
        return tool_fail("export", file, err);
    }
    if (csv)
        export_csv(stdout, &list);
    else
        export_json(stdout, &list, &info);
    tool_keys_free(&list);
    return TOOL_OK;
}
