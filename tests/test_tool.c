/*
 * test_tool.c - the 'tally' command's shared pieces (tools/keys.c,
 * tools/tool.c), below what the shell tests can reach: the shown form of
 * every byte and its way back, globs on it, the sort of a store's keys
 * (its quicksort, insertion and heapsort paths, against a reference
 * order), decimal output and option values at their limits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "tool.h"

static void test_show_every_byte(void)
{
    char shown[TOOL_SHOWN_MAX];
    unsigned char key[3], back[TALLY_KEY_MAX];
    size_t len, n, i;
    int b;

    for (b = 0; b < 256; b++) {
        /* the byte alone, and between two letters */
        key[0] = 'a';
        key[1] = (unsigned char)b;
        key[2] = 'z';
        n = tool_key_show(shown, key, 3);
        CHECK_EQ(n, strlen(shown));
        for (i = 0; i < n; i++)
            CHECK(shown[i] >= 0x20 && shown[i] < 0x7f);
        if (b == '\\')
            CHECK_STREQ(shown, "a\\\\z");
        else if (b == '\t')
            CHECK_STREQ(shown, "a\\tz");
        else if (b == '\n')
            CHECK_STREQ(shown, "a\\nz");
        else if (b == '\r')
            CHECK_STREQ(shown, "a\\rz");
        else if (b >= 0x20 && b < 0x7f)
            CHECK_EQ(n, 3); /* itself, space included */
        else
            CHECK_EQ(n, 6); /* \xHH */
        CHECK_EQ(tool_key_parse(shown, back, &len), 0);
        CHECK_EQ(len, 3);
        CHECK_MEMEQ(back, key, 3);

        n = tool_key_show(shown, key + 1, 1);
        CHECK_EQ(tool_key_parse(shown, back, &len), 0);
        CHECK_EQ(len, 1);
        CHECK_EQ(back[0], b);
        if (b == ' ')
            CHECK_STREQ(shown, "\\x20"); /* a space at an end */
    }
    CHECK_EQ(tool_key_show(shown, "", 0), 0);
    CHECK_STREQ(shown, "");
    CHECK_EQ(tool_key_parse("", back, &len), 0);
    CHECK_EQ(len, 0);
    tool_key_show(shown, " a b ", 5);
    CHECK_STREQ(shown, "\\x20a b\\x20");
    tool_key_show(shown, "\x00\xff\x7f", 3);
    CHECK_STREQ(shown, "\\x00\\xff\\x7f");
    /* upper-case hex reads too */
    CHECK_EQ(tool_key_parse("\\xFF\\xaB", back, &len), 0);
    CHECK_EQ(len, 2);
    CHECK_EQ(back[0], 0xff);
    CHECK_EQ(back[1], 0xab);
}

static void test_parse_errors(void)
{
    unsigned char back[TALLY_KEY_MAX];
    char *long_key = malloc(TALLY_KEY_MAX + 2);
    size_t len = 12345;

    CHECK(long_key != NULL);
    CHECK_EQ(tool_key_parse("\\q", back, &len), -1);
    CHECK_EQ(tool_key_parse("a\\", back, &len), -1);
    CHECK_EQ(tool_key_parse("\\x", back, &len), -1);
    CHECK_EQ(tool_key_parse("\\x4", back, &len), -1);
    CHECK_EQ(tool_key_parse("\\xg0", back, &len), -1);
    CHECK_EQ(tool_key_parse("\\X41", back, &len), -1);
    CHECK_EQ(len, 12345); /* untouched on failure */
    memset(long_key, 'k', TALLY_KEY_MAX);
    long_key[TALLY_KEY_MAX] = '\0';
    CHECK_EQ(tool_key_parse(long_key, back, &len), 0);
    CHECK_EQ(len, TALLY_KEY_MAX);
    long_key[TALLY_KEY_MAX] = 'k';
    long_key[TALLY_KEY_MAX + 1] = '\0';
    CHECK_EQ(tool_key_parse(long_key, back, &len), -1);
    free(long_key);
}

static void test_globs(void)
{
    char *g[] = {"a.*", "[*]", "x\\y", "?"};

    CHECK(tool_globs_match(g, 0, "anything")); /* no globs: all */
    CHECK(tool_globs_match(g, 1, "a.b"));
    CHECK(tool_globs_match(g, 1, "a./c")); /* '*' crosses '/' */
    CHECK(!tool_globs_match(g, 1, "ab"));
    CHECK(tool_globs_match(g, 2, "*"));
    CHECK(!tool_globs_match(g + 1, 1, "x"));
    CHECK(tool_globs_match(g + 2, 1, "x\\y")); /* backslash is itself */
    CHECK(!tool_globs_match(g + 2, 1, "xy"));
    CHECK(tool_globs_match(g, 4, "q"));
    CHECK(!tool_globs_match(g, 4, "qq"));
}

/* The reference order: memcmp over the common length, then the shorter. */
static int ref_cmp(const unsigned char *a, size_t la, const unsigned char *b,
                   size_t lb)
{
    size_t n = la < lb ? la : lb;
    int c = n != 0 ? memcmp(a, b, n) : 0;

    if (c != 0)
        return c < 0 ? -1 : 1;
    return (la > lb) - (la < lb);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A key from few distinct bytes and lengths around 16, so that keys share
 * long prefixes, are prefixes of each other, and tie on the sort words. */
static size_t random_key(unsigned char *k)
{
    static const unsigned char alphabet[] = {0x00, 'a', 'b', 0xff};
    size_t len = (size_t)(rng() % 40), i;

    if (rng() % 2 == 0)
        len = 14 + (size_t)(rng() % 5); /* 14..18: across the 16 bytes */
    for (i = 0; i < len; i++)
        k[i] = alphabet[rng() % 4];
    return len;
}

/* Fills a new store with keys; each key's value is its first index. */
static tally_store *random_store(const char *path, size_t n, size_t *unique)
{
    struct tally_store_config config = {TALLY_STORE_CREATE, 0, 0};
    unsigned char key[64];
    tally_store *s;
    size_t i;

    unlink(path);
    CHECK_EQ(tally_store_open(&s, path, &config), 0);
    for (i = 0; i < n; i++) {
        size_t len = random_key(key);
        int64_t v;

        if (tally_store_get_n(s, key, len, &v) == -ENOENT)
            CHECK_EQ(tally_store_add_n(s, key, len, (int64_t)i), 0);
    }
    *unique = tally_store_size(s);
    return s;
}

static void check_sorted(tally_store *s, size_t unique, int depth)
{
    struct tool_keys list = {0};
    size_t i;

    CHECK_EQ(tool_keys_collect(s, NULL, 0, &list), 0);
    CHECK_EQ(list.n, unique);
    tool_sort_depth_override = depth;
    CHECK_EQ(tool_keys_sort(&list), 0);
    tool_sort_depth_override = -1;
    CHECK_EQ(list.n, unique);
    for (i = 0; i < list.n; i++) {
        int64_t v;

        /* every entry still carries its own key's value */
        CHECK_EQ(tally_store_get_n(s, list.entries[i].key,
                                   list.entries[i].len, &v),
                 0);
        CHECK_EQ(list.entries[i].value, v);
        if (i > 0) {
            const struct tool_entry *a = &list.entries[i - 1],
                                    *b = &list.entries[i];

            CHECK_EQ(ref_cmp(a->key, a->len, b->key, b->len), -1);
            CHECK_EQ(tool_entry_keycmp(a, b), -1);
            CHECK_EQ(tool_entry_keycmp(b, a), 1);
        }
        CHECK_EQ(tool_entry_keycmp(&list.entries[i], &list.entries[i]), 0);
    }
    tool_keys_free(&list);
    CHECK(list.entries == NULL && list.n == 0);
}

static void test_sort(const char *dir)
{
    char path[4200];
    size_t unique, sizes[] = {0, 1, 2, 15, 16, 17, 300, 20000}, i;
    tally_store *s;

    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(path, sizeof path, "%s/sort%zu.tally", dir, i);
        s = random_store(path, sizes[i], &unique);
        check_sorted(s, unique, -1); /* introsort as shipped */
        check_sorted(s, unique, 0);  /* heapsort only */
        check_sorted(s, unique, 3);  /* quicksort, then heapsort */
        tally_store_close(s);
        unlink(path);
    }

    /* globs select while collecting: only keys starting with 'b' */
    snprintf(path, sizeof path, "%s/glob.tally", dir);
    s = random_store(path, 2000, &unique);
    {
        char *g[] = {"b*"};
        struct tool_keys list = {0};
        size_t want = 0;

        CHECK_EQ(tool_keys_collect(s, g, 1, &list), 0);
        CHECK_EQ(tool_keys_sort(&list), 0);
        for (i = 0; i < list.n; i++)
            CHECK(list.entries[i].len > 0 && list.entries[i].key[0] == 'b');
        /* ... and every such key: count them through an unfiltered list */
        {
            struct tool_keys all = {0};

            CHECK_EQ(tool_keys_collect(s, NULL, 0, &all), 0);
            for (i = 0; i < all.n; i++)
                want += all.entries[i].len > 0 && all.entries[i].key[0] == 'b';
            tool_keys_free(&all);
        }
        CHECK_EQ(list.n, want);
        CHECK_GT(want, 0);
        tool_keys_free(&list);
    }
    tally_store_close(s);
    unlink(path);
}

static void test_put_int64(void)
{
    static const struct {
        int64_t v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {7, "7"},
        {-1, "-1"},
        {1000000, "1000000"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
    };
    char buf[64];
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fmemopen(buf, sizeof buf, "w");

        CHECK(f != NULL);
        tool_put_int64(f, cases[i].v);
        putc('\0', f);
        fclose(f);
        CHECK_STREQ(buf, cases[i].text);
    }
}

static void test_parse_values(void)
{
    int64_t v = 99;
    long l = 99;
    double d = 99;

    CHECK_EQ(tool_parse_int64("9223372036854775807", &v), 0);
    CHECK_EQ(v, INT64_MAX);
    CHECK_EQ(tool_parse_int64("-9223372036854775808", &v), 0);
    CHECK_EQ(v, INT64_MIN);
    CHECK_EQ(tool_parse_int64("9223372036854775808", &v), -1);
    CHECK_EQ(tool_parse_int64("-9223372036854775809", &v), -1);
    CHECK_EQ(tool_parse_int64("", &v), -1);
    CHECK_EQ(tool_parse_int64("-", &v), -1);
    CHECK_EQ(tool_parse_int64("+1", &v), -1);
    CHECK_EQ(tool_parse_int64(" 1", &v), -1);
    CHECK_EQ(tool_parse_int64("1 ", &v), -1);
    CHECK_EQ(v, INT64_MIN); /* untouched by the failures */
    CHECK_EQ(tool_parse_long("-", -5, 5, &l), -1);
    CHECK_EQ(tool_parse_long("6", -5, 5, &l), -1);
    CHECK_EQ(tool_parse_long("-5", -5, 5, &l), 0);
    CHECK_EQ(l, -5);
    CHECK_EQ(tool_parse_seconds("0.25", 0.01, 10, &d), 0);
    CHECK(d == 0.25);
    CHECK_EQ(tool_parse_seconds("10", 0.01, 10, &d), 0);
    CHECK(d == 10);
    CHECK_EQ(tool_parse_seconds(".5", 0.01, 10, &d), 0);
    CHECK(d == 0.5);
    CHECK_EQ(tool_parse_seconds("10.5", 0.01, 10, &d), -1);
    CHECK_EQ(tool_parse_seconds("0.001", 0.01, 10, &d), -1);
    CHECK_EQ(tool_parse_seconds(".", 0.01, 10, &d), -1);
    CHECK_EQ(tool_parse_seconds("1.2.3", 0.01, 10, &d), -1);
    CHECK_EQ(tool_parse_seconds("nan", 0.01, 10, &d), -1);
    CHECK_EQ(tool_parse_seconds("1e0", 0.01, 10, &d), -1);
    CHECK_EQ(tool_parse_seconds("-1", 0.01, 10, &d), -1);
    CHECK_EQ(tool_parse_seconds("", 0.01, 10, &d), -1);
    CHECK(d == 0.5);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char dir[4096];

    snprintf(dir, sizeof dir, "%s/test_tool.XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);

    test_show_every_byte();
    test_parse_errors();
    test_globs();
    test_sort(dir);
    test_put_int64();
    test_parse_values();

    CHECK_EQ(rmdir(dir), 0);
    printf("test_tool: ok\n");
    return 0;
}
