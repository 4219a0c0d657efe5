/*
 * expo_dump.c - renders a map or a store as text 0.0.4 or OpenMetrics on
 * stdout, for tests/expo_promtool.sh to hand to Prometheus's own tools.
 *
 *   expo_dump text|openmetrics map N
 *   expo_dump text|openmetrics store FILE
 *
 * The map: key i is "key-<i>" with value 3 * i; six odd keys follow (a NUL
 * byte, invalid UTF-8, a backslash, a quote, a newline, UTF-8), values
 * 1..6. So the samples sum to 3 * N * (N - 1) / 2 + 21, which the script
 * checks; tests/serve_writer's "fill N" makes a store of the same keys.
 * The store is opened read-only, as tally serve opens it.
 */
#include "tally.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: expo_dump text|openmetrics map N | "
                    "store FILE\n");
    return 2;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "expo_dump: %s: %s\n", what, tally_strerror(err));
    return 1;
}

int main(int argc, char **argv)
{
    static const struct tally_expo_label labels[] = {{"instance_kind", "test"}};
    static const struct tally_expo_family fam = {
        .name = "expo_dump_requests",
        .help = "Keys of a map rendered by tests/expo_dump.",
        .labels = labels,
        .nlabels = 1};
    static const struct {
        const char *k;
        size_t len;
    } odd[] = {{"nul\0key", 7},  {"bad \xff utf8", 10}, {"back\\slash", 10},
               {"quote\"", 6},    {"new\nline", 8},      {"caf\xc3\xa9", 5}};
    unsigned format;
    tally_map *m;
    tally_expo *w;
    char *end;
    long n, i;
    int err;

    if (argc != 4)
        return usage();
    if (strcmp(argv[1], "text") == 0)
        format = TALLY_EXPO_TEXT;
    else if (strcmp(argv[1], "openmetrics") == 0)
        format = TALLY_EXPO_OPENMETRICS;
    else
        return usage();
    if (strcmp(argv[2], "store") == 0) {
        struct tally_store_config cfg = {.flags = TALLY_STORE_READONLY};
        tally_store *s;

        if ((err = tally_store_open(&s, argv[3], &cfg)) != 0)
            return fail(argv[3], err);
        if ((err = tally_expo_new(&w, format, tally_expo_sink_file,
                                  stdout)) != 0)
            return fail("tally_expo_new", err);
        if ((err = tally_expo_store(w, &fam, s)) != 0 ||
            (err = tally_expo_finish(w)) != 0)
            return fail("rendering", err);
        tally_expo_free(w);
        tally_store_close(s);
        return fflush(stdout) == 0 ? 0 : fail("stdout", -EIO);
    }
    if (strcmp(argv[2], "map") != 0)
        return usage();
    n = strtol(argv[3], &end, 10);
    if (*end != '\0' || n < 0 || n > 10000000)
        return usage();

    if ((err = tally_map_new(&m)) != 0)
        return fail("tally_map_new", err);
    for (i = 0; i < n; i++) {
        char key[32];
        int len = snprintf(key, sizeof key, "key-%ld", i);
        if ((err = tally_map_add_n(m, key, (size_t)len, 3 * i)) != 0)
            return fail("tally_map_add_n", err);
    }
    for (i = 0; i < (long)(sizeof odd / sizeof odd[0]); i++)
        if ((err = tally_map_add_n(m, odd[i].k, odd[i].len, i + 1)) != 0)
            return fail("tally_map_add_n", err);

    if ((err = tally_expo_new(&w, format, tally_expo_sink_file, stdout)) != 0)
        return fail("tally_expo_new", err);
    if ((err = tally_expo_map(w, &fam, m)) != 0 ||
        (err = tally_expo_finish(w)) != 0)
        return fail("rendering", err);
    tally_expo_free(w);
    tally_map_free(m);
    if (fflush(stdout) != 0)
        return fail("stdout", -EIO);
    return 0;
}
