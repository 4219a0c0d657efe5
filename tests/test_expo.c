/*
 * test_expo.c - the exposition writer (tally.h section 6): every format
 * rule against golden files, every error, sink failures, allocation
 * failures, maps, counters and adders rendered while threads add,
 * stores (as written and opened read-only), and each kind of byte at each
 * place of the writer's 8-byte scan against the byte-by-byte rules.
 *
 * Golden files: tests/expo_golden/CASE.prom (text 0.0.4) and CASE.om
 * (OpenMetrics 1.0), one pair per case below. The output of each case must
 * equal its files byte for byte. tests/expo_promtool.sh checks the same
 * files with promtool and prometheus_client's parsers, so the bytes this
 * test pins are bytes Prometheus's own tools accept.
 *
 * To write the files after a deliberate change of format:
 *   TALLY_EXPO_GOLDEN_WRITE=1 ./test_expo    (then review the diff)
 */
#include "tally.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "check.h"

#ifndef TALLY_EXPO_GOLDEN_DIR
#error "TALLY_EXPO_GOLDEN_DIR: the golden files' folder (tests/CMakeLists.txt)"
#endif

/* ---- a sink that keeps everything ----------------------------------- */

struct out {
    char *data;
    size_t len, cap;
    size_t calls;      /* sink calls */
    size_t max_chunk;  /* largest chunk handed over */
    size_t fail_at;    /* the call (1-based) that fails; 0: none */
    int fail_rc;       /* what it returns */
};

static int sink_keep(void *ctx, const void *data, size_t len)
{
    struct out *o = ctx;

    CHECK(len > 0);
    o->calls++;
    if (o->fail_at != 0 && o->calls >= o->fail_at) {
        CHECK_EQ(o->calls, o->fail_at); /* never called again after */
        return o->fail_rc;
    }
    if (len > o->max_chunk)
        o->max_chunk = len;
    if (o->len + len > o->cap) {
        o->cap = (o->len + len) * 2;
        o->data = realloc(o->data, o->cap + 1);
        CHECK(o->data != NULL);
    }
    memcpy(o->data + o->len, data, len);
    o->len += len;
    o->data[o->len] = '\0'; /* for strstr */
    return 0;
}

static void out_reset(struct out *o)
{
    free(o->data);
    memset(o, 0, sizeof *o);
}

static tally_expo *writer(unsigned format, struct out *o)
{
    tally_expo *w = NULL;

    CHECK_EQ(tally_expo_new(&w, format, sink_keep, o), 0);
    CHECK(w != NULL);
    return w;
}

/* ---- golden cases ----------------------------------------------------- */

static const struct tally_expo_family fam_requests = {
    .name = "http_requests",
    .help = "HTTP requests served, by route.",
};

/* The plain case: a counter family, three keys, # HELP and # TYPE once
 * before the samples, _total on the samples only (OpenMetrics family
 * name without it), trailing newline, # EOF. */
static void case_counter(tally_expo *w)
{
    CHECK_EQ(tally_expo_begin(w, &fam_requests), 0);
    CHECK_EQ(tally_expo_key(w, "/", 1, 0), 0);
    CHECK_EQ(tally_expo_key(w, "/api/users", 10, 1), 0);
    CHECK_EQ(tally_expo_key(w, "/login", 6, 1000000), 0);
}

/* A name that already ends in _total renders exactly as without it. */
static void case_counter_total(tally_expo *w)
{
    struct tally_expo_family f = fam_requests;

    f.name = "http_requests_total";
    CHECK_EQ(tally_expo_begin(w, &f), 0);
    CHECK_EQ(tally_expo_key(w, "/", 1, 0), 0);
    CHECK_EQ(tally_expo_key(w, "/api/users", 10, 1), 0);
    CHECK_EQ(tally_expo_key(w, "/login", 6, 1000000), 0);
}

/* Integers exactly at the int64 limits, never an exponent; a counter's
 * negative value shown as 0, a gauge's as it is. */
static void case_int64(tally_expo *w)
{
    static const struct tally_expo_family c = {
        .name = "events", .help = "Events, whatever their value."};
    static const struct tally_expo_family g = {
        .name = "balance", .help = "Signed balance.",
        .type = TALLY_EXPO_GAUGE};

    CHECK_EQ(tally_expo_begin(w, &c), 0);
    CHECK_EQ(tally_expo_key(w, "max", 3, INT64_MAX), 0);
    CHECK_EQ(tally_expo_key(w, "million", 7, 1000000), 0);
    CHECK_EQ(tally_expo_key(w, "two_pow_53_plus_1", 17,
                            (INT64_C(1) << 53) + 1), 0);
    CHECK_EQ(tally_expo_key(w, "minus_one", 9, -1), 0);
    CHECK_EQ(tally_expo_key(w, "min", 3, INT64_MIN), 0);
    CHECK_EQ(tally_expo_begin(w, &g), 0);
    CHECK_EQ(tally_expo_key(w, "max", 3, INT64_MAX), 0);
    CHECK_EQ(tally_expo_key(w, "minus_one", 9, -1), 0);
    CHECK_EQ(tally_expo_key(w, "min", 3, INT64_MIN), 0);
    CHECK_EQ(tally_expo_key(w, "zero", 4, 0), 0);
}

/* HELP escaping: \\ and \n in both formats, \" in OpenMetrics only;
 * UTF-8 as it is. */
static void case_help(tally_expo *w)
{
    static const struct tally_expo_family f = {
        .name = "jobs",
        .help = "Jobs run by C:\\worker \"main\"\nsecond line, caf\xc3\xa9"};

    CHECK_EQ(tally_expo_begin(w, &f), 0);
    CHECK_EQ(tally_expo_key(w, "a", 1, 2), 0);
}

/* Label value escaping (\\ \" \n) in constant labels and keys; a custom
 * key label; constant labels in the given order, then the key label. */
static void case_labels(tally_expo *w)
{
    static const struct tally_expo_label labels[] = {
        {"service", "api \"v2\""},
        {"path", "C:\\data\nnext"},
        {"empty", ""},
        {"region", "\xe6\x9d\xb1\xe4\xba\xac"}, /* UTF-8 as it is */
    };
    static const struct tally_expo_family f = {
        .name = "cache_hits",
        .help = "Cache hits.",
        .key_label = "table",
        .labels = labels,
        .nlabels = 4};

    CHECK_EQ(tally_expo_begin(w, &f), 0);
    CHECK_EQ(tally_expo_key(w, "users", 5, 7), 0);
    CHECK_EQ(tally_expo_key(w, "say \"hi\"", 8, 8), 0);
    CHECK_EQ(tally_expo_key(w, "two\nlines", 9, 9), 0);
}

/* Keys that are not plain text: each gives a different label value, and
 * the output stays valid UTF-8 in both formats (tally.h section 6). */
static void case_keys(tally_expo *w)
{
#define K(s) {s, sizeof(s) - 1}
    static const struct {
        const char *bytes;
        size_t len;
    } keys[] = {
        K("nul\0inside"),
        K("\0"),
        K("invalid \xff byte"),
        K("overlong \xc0\x80"),
        K("surrogate \xed\xa0\x80"),
        K("truncated \xe2\x82"),
        K("beyond \xf4\x90\x80\x80"),
        K("stray \x80 continuation"),
        K("lead \xf5"),
        K("control \x01\r\x1b\x7f"),
        K("tab\tand newline\n"),
        K("back\\slash"),
        K("literal \\x00"), /* not the same as a NUL byte */
        K("valid \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
        K("quote \""),
    };
#undef K
    static const struct tally_expo_family f = {
        .name = "odd_keys", .help = "Keys of every kind of byte."};
    size_t i;

    CHECK_EQ(tally_expo_begin(w, &f), 0);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK_EQ(tally_expo_key(w, keys[i].bytes, keys[i].len,
                                (int64_t)i + 1), 0);
}

/* Several families in one exposition: each one's # HELP and # TYPE
 * before its samples; single values with and without constant labels;
 * the empty key. */
static void case_families(tally_expo *w)
{
    static const struct tally_expo_label up_labels[] = {{"zone", "b"}};
    static const struct tally_expo_family a = {
        .name = "requests", .help = "Requests."};
    static const struct tally_expo_family b = {
        .name = "queue_depth", .help = "Queued jobs.",
        .type = TALLY_EXPO_GAUGE};
    static const struct tally_expo_family c = {
        .name = "restarts", .help = "Restarts.", .labels = up_labels,
        .nlabels = 1};
    static const struct tally_expo_family d = {
        .name = "empty_family", .help = "A family with no samples."};

    CHECK_EQ(tally_expo_begin(w, &a), 0);
    CHECK_EQ(tally_expo_value(w, 5), 0);
    CHECK_EQ(tally_expo_key(w, "x", 1, 6), 0);
    CHECK_EQ(tally_expo_begin(w, &b), 0);
    CHECK_EQ(tally_expo_key(w, "", 0, -3), 0); /* the empty key */
    CHECK_EQ(tally_expo_key(w, NULL, 0, 4), -EEXIST);
    CHECK_EQ(tally_expo_begin(w, &c), 0);
    CHECK_EQ(tally_expo_value(w, 2), 0);
    CHECK_EQ(tally_expo_key(w, "k", 1, 3), 0);
    CHECK_EQ(tally_expo_begin(w, &d), 0);
}

/* The whole-family calls: a counter, an adder, a one-key map. */
static void case_sources(tally_expo *w)
{
    static const struct tally_expo_label labels[] = {{"pool", "main"}};
    static const struct tally_expo_family fc = {
        .name = "connections", .help = "Connections accepted.",
        .labels = labels, .nlabels = 1};
    static const struct tally_expo_family fa = {
        .name = "bytes_received", .help = "Bytes received."};
    static const struct tally_expo_family fm = {
        .name = "logins", .help = "Logins by user.", .key_label = "user"};
    tally_counter c = TALLY_COUNTER_INIT(42);
    tally_adder *a;
    tally_map *m;

    CHECK_EQ(tally_adder_new(&a), 0);
    CHECK_EQ(tally_map_new(&m), 0);
    tally_adder_add(a, 123456789);
    CHECK_EQ(tally_map_add(m, "alice", 3), 0);
    CHECK_EQ(tally_expo_counter(w, &fc, &c), 0);
    CHECK_EQ(tally_expo_adder(w, &fa, a), 0);
    CHECK_EQ(tally_expo_map(w, &fm, m), 0);
    tally_map_free(m);
    tally_adder_free(a);
}

/* No family at all: an empty body (text), "# EOF" alone (OpenMetrics). */
static void case_empty(tally_expo *w)
{
    (void)w;
}

static const struct gcase {
    const char *name;
    void (*run)(tally_expo *w);
} cases[] = {
    {"counter", case_counter},   {"counter_total", case_counter_total},
    {"int64", case_int64},       {"help", case_help},
    {"labels", case_labels},     {"keys", case_keys},
    {"families", case_families}, {"sources", case_sources},
    {"empty", case_empty},
};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long n;

    if (f == NULL) {
        fprintf(stderr, "test_expo: cannot open %s (golden file)\n", path);
        CHECK(f != NULL);
    }
    CHECK_EQ(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    CHECK_GE(n, 0);
    rewind(f);
    data = malloc((size_t)n + 1);
    CHECK(data != NULL);
    CHECK_EQ(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0'; /* for strstr */
    fclose(f);
    *len = (size_t)n;
    return data;
}

static void test_golden(void)
{
    const char *regen = getenv("TALLY_EXPO_GOLDEN_WRITE");
    size_t i;
    unsigned fmt;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (fmt = 0; fmt < 2; fmt++) {
            struct out o = {0};
            tally_expo *w = writer(fmt, &o);
            char path[1024];
            size_t glen;
            char *golden;

            cases[i].run(w);
            CHECK_EQ(tally_expo_finish(w), 0);
            tally_expo_free(w);
            snprintf(path, sizeof path, "%s/%s.%s", TALLY_EXPO_GOLDEN_DIR,
                     cases[i].name, fmt == TALLY_EXPO_TEXT ? "prom" : "om");
            if (regen != NULL && strcmp(regen, "1") == 0) {
                FILE *f = fopen(path, "wb");
                CHECK(f != NULL);
                CHECK_EQ(fwrite(o.data ? o.data : "", 1, o.len, f), o.len);
                CHECK_EQ(fclose(f), 0);
                fprintf(stderr, "test_expo: wrote %s\n", path);
            }
            golden = read_file(path, &glen);
            if (glen != o.len || (glen > 0 && memcmp(golden, o.data, glen))) {
                fprintf(stderr, "test_expo: case %s differs from %s\n"
                        "--- got (%zu bytes):\n%.*s\n", cases[i].name, path,
                        o.len, (int)o.len, o.data ? o.data : "");
            }
            CHECK_EQ(o.len, glen);
            CHECK_MEMEQ(o.data, golden, glen);
            /* Every exposition ends with a newline, OpenMetrics with
             * exactly one # EOF. */
            if (fmt == TALLY_EXPO_OPENMETRICS) {
                CHECK_GE(glen, 6);
                CHECK_MEMEQ(golden + glen - 6, "# EOF\n", 6);
                CHECK(strstr(golden, "# EOF") == golden + glen - 6);
            } else if (glen > 0) {
                CHECK_EQ(golden[glen - 1], '\n');
                CHECK(strstr(golden, "# EOF") == NULL);
            }
            free(golden);
            out_reset(&o);
        }
    }
}

/* ---- rules checked without golden files ------------------------------- */

static void test_content_types(void)
{
    CHECK_STREQ(TALLY_EXPO_CONTENT_TYPE_TEXT,
                "text/plain; version=0.0.4; charset=utf-8");
    CHECK_STREQ(TALLY_EXPO_CONTENT_TYPE_OPENMETRICS,
                "application/openmetrics-text; version=1.0.0; charset=utf-8");
    CHECK_STREQ(tally_expo_content_type(TALLY_EXPO_TEXT),
                TALLY_EXPO_CONTENT_TYPE_TEXT);
    CHECK_STREQ(tally_expo_content_type(TALLY_EXPO_OPENMETRICS),
                TALLY_EXPO_CONTENT_TYPE_OPENMETRICS);
    CHECK(tally_expo_content_type(2) == NULL);
}

/* A writer that has output something the rejected call must not touch. */
static void check_rejected(unsigned fmt, const struct tally_expo_family *f,
                           int want)
{
    struct out o = {0};
    tally_expo *w = writer(fmt, &o);
    struct tally_expo_stats before, after;

    CHECK_EQ(tally_expo_begin(w, &fam_requests), 0);
    CHECK_EQ(tally_expo_key(w, "a", 1, 1), 0);
    CHECK_EQ(tally_expo_stats(w, &before), 0);
    CHECK_EQ(tally_expo_begin(w, f), want);
    CHECK_EQ(tally_expo_stats(w, &after), 0);
    CHECK_MEMEQ(&before, &after, sizeof before);
    /* The current family is still the one before. */
    CHECK_EQ(tally_expo_key(w, "b", 1, 2), 0);
    CHECK_EQ(tally_expo_finish(w), 0);
    tally_expo_free(w);
    CHECK_EQ(o.len, strlen(fmt == TALLY_EXPO_TEXT
                               ? "# HELP http_requests_total HTTP requests "
                                 "served, by route.\n# TYPE "
                                 "http_requests_total counter\n"
                                 "http_requests_total{key=\"a\"} 1\n"
                                 "http_requests_total{key=\"b\"} 2\n"
                               : "# HELP http_requests HTTP requests "
                                 "served, by route.\n# TYPE "
                                 "http_requests counter\n"
                                 "http_requests_total{key=\"a\"} 1\n"
                                 "http_requests_total{key=\"b\"} 2\n# EOF\n"));
    out_reset(&o);
}

static void test_names(void)
{
    static const char *bad_metric[] = {
        "", "1abc", "a-b", "a:b", ":a", "_a", "__a", "a b", "a.b",
        "caf\xc3\xa9", "a\n", "_total", "a$"};
    static const char *good_metric[] = {"a", "A", "a1", "a_b", "a__b",
                                        "Z9_", "a_total_total", "x_total"};
    static const char *bad_label[] = {"", "1a", "a-b", "__a", "__", "a:b",
                                      "a b", "\xc3\xa9", "key\n"};
    static const char *good_label[] = {"a", "_a", "a_", "A1", "a__b",
                                       "le"};
    struct tally_expo_family f;
    struct tally_expo_label l[2];
    size_t i;
    unsigned fmt;

    for (fmt = 0; fmt < 2; fmt++) {
        for (i = 0; i < sizeof bad_metric / sizeof bad_metric[0]; i++) {
            f = (struct tally_expo_family){.name = bad_metric[i], .help = "h"};
            check_rejected(fmt, &f, -EINVAL);
            f.type = TALLY_EXPO_GAUGE;
            check_rejected(fmt, &f, -EINVAL);
        }
        for (i = 0; i < sizeof good_metric / sizeof good_metric[0]; i++) {
            struct out o = {0};
            tally_expo *w = writer(fmt, &o);
            f = (struct tally_expo_family){.name = good_metric[i],
                                           .help = "h"};
            CHECK_EQ(tally_expo_begin(w, &f), 0);
            tally_expo_free(w);
            out_reset(&o);
        }
        f = (struct tally_expo_family){.name = NULL, .help = "h"};
        check_rejected(fmt, &f, -EINVAL);

        for (i = 0; i < sizeof bad_label / sizeof bad_label[0]; i++) {
            /* as the key label */
            f = (struct tally_expo_family){.name = "m", .help = "h",
                                           .key_label = bad_label[i]};
            check_rejected(fmt, &f, -EINVAL);
            /* as a constant label */
            l[0] = (struct tally_expo_label){bad_label[i], "v"};
            f = (struct tally_expo_family){.name = "m", .help = "h",
                                           .labels = l, .nlabels = 1};
            check_rejected(fmt, &f, -EINVAL);
        }
        for (i = 0; i < sizeof good_label / sizeof good_label[0]; i++) {
            struct out o = {0};
            tally_expo *w = writer(fmt, &o);
            l[0] = (struct tally_expo_label){good_label[i], "v"};
            f = (struct tally_expo_family){.name = "m", .help = "h",
                                           .key_label = "k", .labels = l,
                                           .nlabels = 1};
            CHECK_EQ(tally_expo_begin(w, &f), 0);
            tally_expo_free(w);
            out_reset(&o);
        }

        /* Help: required, UTF-8. Constant values: present, UTF-8. */
        f = (struct tally_expo_family){.name = "m", .help = NULL};
        check_rejected(fmt, &f, -EINVAL);
        f.help = "";
        check_rejected(fmt, &f, -EINVAL);
        f.help = "bad \xff";
        check_rejected(fmt, &f, -EINVAL);
        f.help = "surrogate \xed\xa0\x80";
        check_rejected(fmt, &f, -EINVAL);
        f.help = "h";
        l[0] = (struct tally_expo_label){"a", NULL};
        f.labels = l;
        f.nlabels = 1;
        check_rejected(fmt, &f, -EINVAL);
        l[0].value = "\xc3";
        check_rejected(fmt, &f, -EINVAL);
        /* labels NULL with a count; a label twice; a label named as the
         * key label (default or given) */
        f.labels = NULL;
        check_rejected(fmt, &f, -EINVAL);
        l[0] = (struct tally_expo_label){"a", "1"};
        l[1] = (struct tally_expo_label){"a", "2"};
        f.labels = l;
        f.nlabels = 2;
        check_rejected(fmt, &f, -EINVAL);
        l[1] = (struct tally_expo_label){"key", "2"};
        check_rejected(fmt, &f, -EINVAL);
        f.key_label = "a";
        f.nlabels = 1;
        check_rejected(fmt, &f, -EINVAL);
        /* an unknown type */
        f = (struct tally_expo_family){.name = "m", .help = "h", .type = 2};
        check_rejected(fmt, &f, -EINVAL);
        check_rejected(fmt, NULL, -EINVAL);
    }
}

/* One family per name, whatever the format names in # TYPE. */
static void test_unique_families(void)
{
    static const struct {
        const char *first;
        unsigned first_type;
        const char *second;
        unsigned second_type;
        int want;
    } pairs[] = {
        {"a", TALLY_EXPO_COUNTER, "a", TALLY_EXPO_COUNTER, -EEXIST},
        {"a", TALLY_EXPO_COUNTER, "a_total", TALLY_EXPO_COUNTER, -EEXIST},
        {"a_total", TALLY_EXPO_COUNTER, "a", TALLY_EXPO_COUNTER, -EEXIST},
        {"a", TALLY_EXPO_COUNTER, "a", TALLY_EXPO_GAUGE, -EEXIST},
        {"a", TALLY_EXPO_COUNTER, "a_total", TALLY_EXPO_GAUGE, -EEXIST},
        {"a_total", TALLY_EXPO_GAUGE, "a", TALLY_EXPO_COUNTER, -EEXIST},
        {"a", TALLY_EXPO_GAUGE, "a", TALLY_EXPO_GAUGE, -EEXIST},
        {"a", TALLY_EXPO_GAUGE, "a", TALLY_EXPO_COUNTER, -EEXIST},
        {"a", TALLY_EXPO_COUNTER, "b", TALLY_EXPO_COUNTER, 0},
        {"a", TALLY_EXPO_GAUGE, "a_x", TALLY_EXPO_GAUGE, 0},
        {"a", TALLY_EXPO_COUNTER, "a_total_total", TALLY_EXPO_COUNTER, 0},
    };
    size_t i;
    unsigned fmt;

    for (fmt = 0; fmt < 2; fmt++) {
        for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            struct out o = {0};
            tally_expo *w = writer(fmt, &o);
            struct tally_expo_family f1 = {.name = pairs[i].first,
                                           .help = "h",
                                           .type = pairs[i].first_type};
            struct tally_expo_family f2 = {.name = pairs[i].second,
                                           .help = "h",
                                           .type = pairs[i].second_type};
            struct tally_expo_stats st;

            CHECK_EQ(tally_expo_begin(w, &f1), 0);
            CHECK_EQ(tally_expo_begin(w, &f2), pairs[i].want);
            CHECK_EQ(tally_expo_stats(w, &st), 0);
            CHECK_EQ(st.families, pairs[i].want == 0 ? 2 : 1);
            tally_expo_free(w);
            out_reset(&o);
        }
    }
}

/* Calls out of order, NULL arguments, a finished writer. */
static void test_usage(void)
{
    struct out o = {0};
    tally_expo *w = NULL;
    struct tally_expo_stats st;
    int sink_ctx = 0;

    CHECK_EQ(tally_expo_new(NULL, TALLY_EXPO_TEXT, sink_keep, &o), -EINVAL);
    CHECK_EQ(tally_expo_new(&w, TALLY_EXPO_TEXT, NULL, &o), -EINVAL);
    CHECK(w == NULL);
    CHECK_EQ(tally_expo_new(&w, 2, sink_keep, &o), -EINVAL);
    CHECK(w == NULL);
    tally_expo_free(NULL);
    CHECK_EQ(tally_expo_begin(NULL, &fam_requests), -EINVAL);
    CHECK_EQ(tally_expo_key(NULL, "a", 1, 1), -EINVAL);
    CHECK_EQ(tally_expo_value(NULL, 1), -EINVAL);
    CHECK_EQ(tally_expo_finish(NULL), -EINVAL);
    CHECK_EQ(tally_expo_stats(NULL, &st), -EINVAL);
    CHECK_EQ(tally_expo_map(NULL, &fam_requests, NULL), -EINVAL);
    CHECK_EQ(tally_expo_counter(NULL, &fam_requests, NULL), -EINVAL);
    CHECK_EQ(tally_expo_adder(NULL, &fam_requests, NULL), -EINVAL);
    (void)sink_ctx;

    w = writer(TALLY_EXPO_OPENMETRICS, &o);
    CHECK_EQ(tally_expo_stats(w, NULL), -EINVAL);
    /* samples need a family */
    CHECK_EQ(tally_expo_key(w, "a", 1, 1), -EINVAL);
    CHECK_EQ(tally_expo_value(w, 1), -EINVAL);
    CHECK_EQ(tally_expo_map(w, &fam_requests, NULL), -EINVAL);
    CHECK_EQ(tally_expo_begin(w, &fam_requests), 0);
    CHECK_EQ(tally_expo_key(w, NULL, 1, 1), -EINVAL);
    CHECK_EQ(tally_expo_value(w, 1), 0);
    CHECK_EQ(tally_expo_value(w, 1), -EEXIST);
    CHECK_EQ(tally_expo_key(w, "", 0, 1), -EEXIST);
    CHECK_EQ(tally_expo_key(w, "a", 1, 1), 0);
    CHECK_EQ(tally_expo_key(w, "a", 1, 1), 0); /* the caller's to avoid */
    CHECK_EQ(tally_expo_finish(w), 0);
    /* finished: everything is refused, nothing more is written */
    CHECK_EQ(tally_expo_finish(w), -EINVAL);
    CHECK_EQ(tally_expo_key(w, "b", 1, 1), -EINVAL);
    CHECK_EQ(tally_expo_value(w, 1), -EINVAL);
    CHECK_EQ(tally_expo_begin(w, &fam_requests), -EINVAL);
    CHECK_EQ(tally_expo_stats(w, &st), 0);
    CHECK_EQ(st.bytes, o.len);
    CHECK_EQ(st.samples, 3);
    CHECK_EQ(st.families, 1);
    CHECK(strstr(o.data, "# EOF\n") == o.data + o.len - 6);
    tally_expo_free(w);
    out_reset(&o);
}

/* ---- streaming: chunks, long keys, sink errors ------------------------ */

/* The expected line of key k (ASCII, no escapes) in family "big". */
static size_t big_line(char *dst, size_t k, int64_t v)
{
    return (size_t)sprintf(dst, "big_total{key=\"key-%zu\"} %lld\n", k,
                           (long long)v);
}

static void render_big(tally_expo *w, size_t n)
{
    static const struct tally_expo_family f = {.name = "big",
                                               .help = "Many keys."};
    char key[32];
    size_t k;
    int rc = tally_expo_begin(w, &f);

    for (k = 0; k < n && rc == 0; k++) {
        int len = sprintf(key, "key-%zu", k);
        rc = tally_expo_key(w, key, (size_t)len, (int64_t)(k * 7919));
    }
    if (rc == 0)
        rc = tally_expo_finish(w);
    (void)rc;
}

static void test_streaming(void)
{
    enum { N = 20000 };
    struct out o = {0};
    tally_expo *w = writer(TALLY_EXPO_TEXT, &o);
    struct tally_expo_stats st;
    char *want = malloc((size_t)N * 48 + 128);
    size_t wlen, k;

    CHECK(want != NULL);
    wlen = (size_t)sprintf(want, "# HELP big_total Many keys.\n"
                                 "# TYPE big_total counter\n");
    for (k = 0; k < N; k++)
        wlen += big_line(want + wlen, k, (int64_t)(k * 7919));
    render_big(w, N);
    CHECK_EQ(o.len, wlen);
    CHECK_MEMEQ(o.data, want, wlen);
    /* Handed over in chunks of the writer's buffer, not per key. */
    CHECK_GT(o.calls, 1);
    CHECK_LE(o.calls, wlen / 8192 + 1);
    CHECK_LE(o.max_chunk, 16384);
    CHECK_EQ(tally_expo_stats(w, &st), 0);
    CHECK_EQ(st.bytes, wlen);
    CHECK_EQ(st.samples, N);
    tally_expo_free(w);

    /* A sink error at each chunk in turn: the call that hit it and every
     * later one return it, the sink is not called again, and what came
     * out is the full output's first chunks. */
    {
        size_t chunks = o.calls, fail;
        out_reset(&o);
        for (fail = 1; fail <= chunks; fail++) {
            struct out f = {.fail_at = fail, .fail_rc = -EPIPE};
            tally_expo *fw = writer(TALLY_EXPO_TEXT, &f);
            render_big(fw, N);
            CHECK_EQ(f.calls, fail);
            CHECK_LT(f.len, wlen);
            CHECK_MEMEQ(f.data, want, f.len);
            CHECK_EQ(tally_expo_key(fw, "x", 1, 1), -EPIPE);
            CHECK_EQ(tally_expo_value(fw, 1), -EPIPE);
            CHECK_EQ(tally_expo_begin(fw, &fam_requests), -EPIPE);
            CHECK_EQ(tally_expo_finish(fw), -EPIPE);
            CHECK_EQ(f.calls, fail);
            CHECK_EQ(tally_expo_stats(fw, &st), 0);
            CHECK_EQ(st.bytes, f.len);
            tally_expo_free(fw);
            out_reset(&f);
        }
        /* A positive return counts as -EIO. */
        {
            struct out f = {.fail_at = 1, .fail_rc = 7};
            tally_expo *fw = writer(TALLY_EXPO_OPENMETRICS, &f);
            CHECK_EQ(tally_expo_begin(fw, &fam_requests), 0);
            CHECK_EQ(tally_expo_finish(fw), -EIO);
            tally_expo_free(fw);
            out_reset(&f);
        }
    }
    free(want);

    /* A key far longer than the buffer, every byte escaped (5 bytes on
     * the wire each), and a long HELP. */
    {
        enum { KLEN = 3 * 16384 };
        unsigned char *key = malloc(KLEN);
        char *help = malloc(KLEN + 1);
        struct tally_expo_family f = {.name = "long", .help = NULL};
        size_t i, p;

        CHECK(key != NULL && help != NULL);
        memset(key, 0xff, KLEN);
        memset(help, 'h', KLEN);
        help[KLEN] = '\0';
        help[100] = '\n';
        f.help = help;
        w = writer(TALLY_EXPO_TEXT, &o);
        CHECK_EQ(tally_expo_begin(w, &f), 0);
        CHECK_EQ(tally_expo_key(w, key, KLEN, 1), 0);
        CHECK_EQ(tally_expo_finish(w), 0);
        tally_expo_free(w);
        p = (size_t)sprintf(want = malloc(6 * KLEN + 256),
                            "# HELP long_total %.100s\\n%s\n"
                            "# TYPE long_total counter\n"
                            "long_total{key=\"",
                            help, help + 101);
        for (i = 0; i < KLEN; i++)
            p += (size_t)sprintf(want + p, "\\\\xff");
        p += (size_t)sprintf(want + p, "\"} 1\n");
        CHECK_EQ(o.len, p);
        CHECK_MEMEQ(o.data, want, p);
        free(want);
        free(key);
        free(help);
        out_reset(&o);
    }
}

/* The FILE * sink: output as given; a failing stream's error. */
static void test_file_sink(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tally_expo *w;

    CHECK(f != NULL);
    CHECK_EQ(tally_expo_new(&w, TALLY_EXPO_OPENMETRICS, tally_expo_sink_file,
                            f), 0);
    CHECK_EQ(tally_expo_begin(w, &fam_requests), 0);
    CHECK_EQ(tally_expo_key(w, "/", 1, 3), 0);
    CHECK_EQ(tally_expo_finish(w), 0);
    tally_expo_free(w);
    CHECK_EQ(fclose(f), 0);
    CHECK_STREQ(buf, "# HELP http_requests HTTP requests served, by route.\n"
                     "# TYPE http_requests counter\n"
                     "http_requests_total{key=\"/\"} 3\n"
                     "# EOF\n");
    free(buf);
    CHECK_EQ(tally_expo_sink_file(NULL, "x", 1), -EINVAL);

    /* /dev/full: every write fails with ENOSPC. */
    f = fopen("/dev/full", "w");
    if (f != NULL) {
        setvbuf(f, NULL, _IONBF, 0);
        CHECK_EQ(tally_expo_new(&w, TALLY_EXPO_TEXT, tally_expo_sink_file, f),
                 0);
        CHECK_EQ(tally_expo_begin(w, &fam_requests), 0);
        CHECK_EQ(tally_expo_finish(w), -ENOSPC);
        tally_expo_free(w);
        fclose(f);
    }
}

/* ---- allocation failures ---------------------------------------------- */

static void test_oom(void)
{
    static const struct tally_expo_label labels[] = {{"a", "b"}};
    static const struct tally_expo_family f = {
        .name = "m", .help = "h", .labels = labels, .nlabels = 1};
    int64_t n;
    int done = 0;

    for (n = 0; !done; n++) {
        struct out o = {0};
        tally_expo *w = NULL;
        struct tally_expo_stats st;
        int rc, i;
        char name[16];

        tally__alloc_fail_after(n);
        rc = tally_expo_new(&w, TALLY_EXPO_TEXT, sink_keep, &o);
        if (rc != 0) {
            CHECK_EQ(rc, -ENOMEM);
            CHECK(w == NULL);
            tally__alloc_fail_after(-1);
            continue;
        }
        /* Nine families (the name list grows past its first 8). */
        for (i = 0; i < 9; i++) {
            struct tally_expo_family g = f;
            sprintf(name, "m%d", i);
            g.name = name;
            rc = tally_expo_begin(w, &g);
            if (rc != 0) {
                CHECK_EQ(rc, -ENOMEM);
                CHECK_EQ(tally_expo_stats(w, &st), 0);
                CHECK_EQ(st.families, (uint64_t)i);
                /* nothing written; the name is still free */
                tally__alloc_fail_after(-1);
                CHECK_EQ(tally_expo_begin(w, &g), 0);
            }
            CHECK_EQ(tally_expo_key(w, "k", 1, i), 0);
        }
        tally__alloc_fail_after(-1);
        CHECK_EQ(tally_expo_finish(w), 0);
        CHECK_EQ(tally_expo_stats(w, &st), 0);
        CHECK_EQ(st.families, 9);
        CHECK_EQ(st.samples, 9);
        CHECK_EQ(st.bytes, o.len);
        tally_expo_free(w);
        out_reset(&o);
        if (n > 40)
            done = 1; /* well past the allocations of this sequence */
    }
}

/* ---- statistics ------------------------------------------------------- */

static void test_stats(void)
{
    static const struct tally_expo_family c = {.name = "c", .help = "h"};
    static const struct tally_expo_family g = {.name = "g", .help = "h",
                                               .type = TALLY_EXPO_GAUGE};
    struct out o = {0};
    tally_expo *w = writer(TALLY_EXPO_TEXT, &o);
    struct tally_expo_stats st;

    CHECK_EQ(tally_expo_begin(w, &c), 0);
    CHECK_EQ(tally_expo_key(w, "a", 1, -5), 0);        /* clamped */
    CHECK_EQ(tally_expo_key(w, "b\\", 2, INT64_MIN), 0); /* both */
    CHECK_EQ(tally_expo_key(w, "\xff", 1, 1), 0);      /* encoded */
    CHECK_EQ(tally_expo_key(w, "\"\n", 2, 1), 0);      /* escaped only */
    CHECK_EQ(tally_expo_begin(w, &g), 0);
    CHECK_EQ(tally_expo_value(w, -5), 0);               /* a gauge: as is */
    CHECK_EQ(tally_expo_finish(w), 0);
    CHECK_EQ(tally_expo_stats(w, &st), 0);
    CHECK_EQ(st.families, 2);
    CHECK_EQ(st.samples, 5);
    CHECK_EQ(st.clamped, 2);
    CHECK_EQ(st.keys_encoded, 2);
    CHECK_EQ(st.bytes, o.len);
    CHECK(strstr(o.data, "c_total{key=\"a\"} 0\n") != NULL);
    CHECK(strstr(o.data, "c_total{key=\"b\\\\\\\\\"} 0\n") != NULL);
    CHECK(strstr(o.data, "\ng -5\n") != NULL);
    tally_expo_free(w);
    out_reset(&o);
}

/* ---- a map rendered while threads add --------------------------------- */

enum { MAP_KEYS = 500, MAP_THREADS = 2, MAP_ADDS = 20000 };

static void *map_adder(void *arg)
{
    tally_map *m = arg;
    char key[16];
    int i;

    for (i = 0; i < MAP_ADDS; i++) {
        int len = sprintf(key, "k%d", i % MAP_KEYS);
        CHECK_EQ(tally_map_add_n(m, key, (size_t)len, 1), 0);
    }
    return NULL;
}

struct render_arg {
    tally_map *m;
    int64_t last[MAP_KEYS]; /* each key's value in the previous render */
    int renders;
};

/* Parses the rendered map: every line a key present once, its value
 * never below the previous render's. Returns the number of samples. */
static int check_render(struct render_arg *r, const char *text, size_t len)
{
    static const char head[] = "# HELP map_total Keys of a map.\n"
                               "# TYPE map_total counter\n";
    const char *p = text + sizeof head - 1, *end = text + len;
    static unsigned char seen[MAP_KEYS];
    int n = 0;

    CHECK_GE(len, sizeof head - 1);
    CHECK_MEMEQ(text, head, sizeof head - 1);
    memset(seen, 0, sizeof seen);
    while (p < end) {
        int k;
        long long v;
        int used = 0;

        CHECK_EQ(sscanf(p, "map_total{key=\"k%d\"} %lld\n%n", &k, &v, &used),
                 2);
        CHECK_GT(used, 0);
        CHECK(k >= 0 && k < MAP_KEYS);
        CHECK_EQ(seen[k], 0);
        seen[k] = 1;
        CHECK_GE(v, r->last[k]);
        r->last[k] = v;
        p += used;
        n++;
    }
    return n;
}

static void *map_renderer(void *arg)
{
    static const struct tally_expo_family f = {.name = "map",
                                               .help = "Keys of a map."};
    struct render_arg *r = arg;
    int i;

    for (i = 0; i < 20; i++) {
        struct out o = {0};
        tally_expo *w = writer(TALLY_EXPO_TEXT, &o);
        CHECK_EQ(tally_expo_map(w, &f, r->m), 0);
        CHECK_EQ(tally_expo_finish(w), 0);
        check_render(r, o.data, o.len);
        tally_expo_free(w);
        out_reset(&o);
        r->renders++;
    }
    return NULL;
}

static void *map_worker(void *arg)
{
    struct render_arg *r = ((struct render_arg **)arg)[0];
    long idx = (long)((void **)arg)[1];

    return idx == 0 ? map_renderer(r) : map_adder(r->m);
}

static void test_map_concurrent(void)
{
    static struct render_arg r;
    void *args[MAP_THREADS + 1][2];
    struct out o = {0};
    tally_expo *w;
    int i, k;

    CHECK_EQ(tally_map_new(&r.m), 0);
    /* Every key exists before the renders, so each render has them all. */
    for (k = 0; k < MAP_KEYS; k++) {
        char key[16];
        int len = sprintf(key, "k%d", k);
        CHECK_EQ(tally_map_add_n(r.m, key, (size_t)len, 0), 0);
    }
    for (i = 0; i <= MAP_THREADS; i++) {
        args[i][0] = &r;
        args[i][1] = (void *)(long)i;
    }
    check_threads_run(MAP_THREADS + 1, map_worker, args, sizeof args[0]);
    CHECK_EQ(r.renders, 20);

    /* After the adders: every key exactly MAP_THREADS * MAP_ADDS /
     * MAP_KEYS. */
    w = writer(TALLY_EXPO_TEXT, &o);
    CHECK_EQ(tally_expo_map(w, &(struct tally_expo_family){
                                    .name = "map", .help = "Keys of a map."},
                            r.m), 0);
    CHECK_EQ(tally_expo_finish(w), 0);
    CHECK_EQ(check_render(&r, o.data, o.len), MAP_KEYS);
    for (k = 0; k < MAP_KEYS; k++)
        CHECK_EQ(r.last[k], MAP_THREADS * MAP_ADDS / MAP_KEYS);
    tally_expo_free(w);
    out_reset(&o);
    tally_map_free(r.m);
}

/* A sink error inside a map's foreach stops the walk and comes back. */
static void test_map_sink_error(void)
{
    static const struct tally_expo_family f = {.name = "m", .help = "h"};
    tally_map *m;
    struct out o = {.fail_at = 1, .fail_rc = -ECONNRESET};
    tally_expo *w;
    int k;

    CHECK_EQ(tally_map_new(&m), 0);
    for (k = 0; k < 5000; k++) {
        char key[16];
        int len = sprintf(key, "key%d", k);
        CHECK_EQ(tally_map_add_n(m, key, (size_t)len, k), 0);
    }
    w = writer(TALLY_EXPO_OPENMETRICS, &o);
    CHECK_EQ(tally_expo_map(w, &f, m), -ECONNRESET);
    CHECK_EQ(o.calls, 1);
    CHECK_EQ(tally_expo_finish(w), -ECONNRESET);
    tally_expo_free(w);
    tally_map_free(m);
    out_reset(&o);
}

/* ---- a store ----------------------------------------------------------- */

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of a rendering, sorted (a store's order is its own). */
static size_t sorted_lines(char *text, char **lines, size_t max)
{
    size_t n = 0;
    char *save = NULL, *l;

    for (l = strtok_r(text, "\n", &save); l != NULL && n < max;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    qsort(lines, n, sizeof *lines, cmp_lines);
    return n;
}

static void test_store_render(void)
{
    static const struct tally_expo_family f = {
        .name = "stored", .help = "Keys of a store.", .key_label = "k"};
    static const char *want[] = {
        "# EOF", /* sorted */
        "# HELP stored Keys of a store.",
        "# TYPE stored counter",
        "stored_total{k=\"\"} 4",
        "stored_total{k=\"a\"} 1",
        "stored_total{k=\"b\\\\x00\"} 3",
        "stored_total{k=\"neg\"} 0",
        "stored_total{k=\"quote\\\"\"} 2",
    };
    char path[] = "/tmp/tally-test-expo-XXXXXX";
    struct tally_store_config create = {.flags = TALLY_STORE_CREATE};
    struct tally_store_config ro = {.flags = TALLY_STORE_READONLY};
    tally_store *s, *r;
    char *lines[16];
    int fd, pass;
    size_t n, i;

    fd = mkstemp(path);
    CHECK_GE(fd, 0);
    close(fd);
    unlink(path);
    CHECK_EQ(tally_store_open(&s, path, &create), 0);
    CHECK_EQ(tally_store_add(s, "a", 1), 0);
    CHECK_EQ(tally_store_add(s, "quote\"", 2), 0);
    CHECK_EQ(tally_store_add_n(s, "b\0", 2, 3), 0);
    CHECK_EQ(tally_store_add_n(s, "", 0, 4), 0);
    CHECK_EQ(tally_store_add(s, "neg", -5), 0);
    CHECK_EQ(tally_store_open(&r, path, &ro), 0);

    /* The writer's store and a read-only one (as tally serve opens it)
     * render the same. */
    for (pass = 0; pass < 2; pass++) {
        struct out o = {0};
        tally_expo *w = writer(TALLY_EXPO_OPENMETRICS, &o);
        struct tally_expo_stats st;

        CHECK_EQ(tally_expo_store(w, &f, pass == 0 ? s : r), 0);
        CHECK_EQ(tally_expo_finish(w), 0);
        CHECK_EQ(tally_expo_stats(w, &st), 0);
        CHECK_EQ(st.samples, 5);
        CHECK_EQ(st.clamped, 1);
        CHECK_EQ(st.keys_encoded, 1);
        n = sorted_lines(o.data, lines, 16);
        CHECK_EQ(n, sizeof want / sizeof want[0]);
        for (i = 0; i < n; i++)
            CHECK_STREQ(lines[i], want[i]);
        tally_expo_free(w);
        out_reset(&o);
    }

    /* Bad input; a sink error stops the store's walk. */
    {
        struct out o = {.fail_at = 1, .fail_rc = -EPIPE};
        tally_expo *w = writer(TALLY_EXPO_TEXT, &o);
        int k;

        CHECK_EQ(tally_expo_store(w, &f, NULL), -EINVAL);
        CHECK_EQ(tally_expo_store(NULL, &f, s), -EINVAL);
        for (k = 0; k < 3000; k++) {
            char key[16];
            int len = sprintf(key, "key%d", k);
            CHECK_EQ(tally_store_add_n(s, key, (size_t)len, k), 0);
        }
        CHECK_EQ(tally_expo_store(w, &f, r), -EPIPE);
        CHECK_EQ(o.calls, 1);
        tally_expo_free(w);
        out_reset(&o);
    }
    tally_store_close(r);
    tally_store_close(s);
    unlink(path);
}

/* ---- every kind of byte at every place in a word -------------------- */

/* The label value of key byte c as the format puts it (one byte; the
 * callers keep multi-byte UTF-8 apart). */
static size_t ref_byte(char *dst, unsigned char c)
{
    if (c == '\\')
        return (size_t)sprintf(dst, "\\\\\\\\");
    if (c == '"')
        return (size_t)sprintf(dst, "\\\"");
    if (c == '\n')
        return (size_t)sprintf(dst, "\\n");
    if ((c < 0x20 && c != '\t') || c >= 0x7F)
        return (size_t)sprintf(dst, "\\\\x%02x", c);
    dst[0] = (char)c;
    return 1;
}

/* The writer scans keys 8 bytes at a time: each special byte (and a
 * two-byte UTF-8 character, and the plain bytes at the edges of the
 * ranges) at each of 24 places in a 27-byte key of 'a's must come out
 * exactly as the byte-by-byte rules say. */
static void test_key_positions(void)
{
    static const unsigned char special[] = {
        '"', '\\', '\n', '\t', 0x00, 0x01, 0x1F, 0x20, 0x7E, 0x7F,
        0x80, 0xFF, 0x21, 0x5B, 0x5D, 0x23, 0x5C ^ 0x80, 0x22 ^ 0x80,
    };
    static const struct tally_expo_family f = {.name = "pos", .help = "h"};
    enum { LEN = 27 };

    for (size_t si = 0; si <= sizeof special; si++) {
        for (size_t at = 0; at + 2 <= LEN; at++) {
            unsigned char key[LEN];
            char want[LEN * 5 + 64], *p = want;
            struct out o = {0};
            tally_expo *w = writer(TALLY_EXPO_TEXT, &o);

            memset(key, 'a', sizeof key);
            p += sprintf(p, "pos_total{key=\"");
            for (size_t i = 0; i < at; i++)
                *p++ = 'a';
            if (si < sizeof special) {
                key[at] = special[si];
                p += ref_byte(p, special[si]);
            } else {
                /* U+00E9, whole, possibly across two words */
                key[at] = 0xC3;
                key[at + 1] = 0xA9;
                memcpy(p, "\xc3\xa9", 2);
                p += 2;
            }
            for (size_t i = at + 1 + (si == sizeof special); i < LEN; i++)
                *p++ = 'a';
            p += sprintf(p, "\"} 7\n");

            CHECK_EQ(tally_expo_begin(w, &f), 0);
            CHECK_EQ(tally_expo_key(w, key, LEN, 7), 0);
            CHECK_EQ(tally_expo_finish(w), 0);
            CHECK(strstr(o.data, want) != NULL);
            tally_expo_free(w);
            out_reset(&o);
        }
    }
}

int main(void)
{
    test_content_types();
    test_golden();
    test_names();
    test_unique_families();
    test_usage();
    test_streaming();
    test_file_sink();
    test_oom();
    test_stats();
    test_map_concurrent();
    test_map_sink_error();
    test_store_render();
    test_key_positions();
    printf("test_expo: ok\n");
    return 0;
}
