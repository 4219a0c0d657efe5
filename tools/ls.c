/*
 * ls.c - 'tally ls FILE [GLOB...]': the keys and their values, sorted by
 * key, in two aligned columns. Keys show in the escaped form of tool.h.
 * With --redis instead of FILE: the fleet totals 'tally push' keeps in
 * Redis (redis_push.h), in the same form.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_push.h"
#include "tool.h"

/* Keys longer than this (as shown) do not widen the key column; their
 * line's value is pushed right instead. */
enum { LS_KEY_COLUMN_MAX = 64 };

static void ls_usage(FILE *f)
{
    fprintf(f,
            "usage: tally ls FILE [GLOB...]\n"
            "       tally ls --redis HOST[:PORT] [--prefix P] [GLOB...]\n"
            "\n"
            "Lists the keys of the store FILE with their values, sorted by\n"
            "key (byte order), one per line in two aligned columns. With\n"
            "GLOBs, only the keys that match one of them (fnmatch(3): * ? and\n"
            "[...]; a backslash is an ordinary character, [*] matches a *).\n"
            "\n"
            "Keys are shown in ASCII: a backslash as \\\\, tab, line feed and\n"
            "carriage return as \\t \\n \\r, any other byte outside printable\n"
            "ASCII, and a space at either end of a key, as \\xHH. Globs match\n"
            "that shown form; 'tally get -e' and 'tally add -e' read it back.\n"
            "\n"
            "With --redis, lists the fleet totals instead: for each key, the\n"
            "sum of its values in every store that 'tally push' sends to that\n"
            "Redis with prefix P (the hash {P}:total, read with HSCAN).\n"
            "\n"
            "  -r, --redis HOST[:PORT]  list the fleet totals in Redis (port\n"
            "                           6379 unless given; [ADDR]:PORT for\n"
            "                           IPv6)\n"
            "  -p, --prefix P           with --redis: the key prefix (default\n"
            "                           tally)\n"
            "  -h, --help               show this help\n");
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"prefix", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct tool_keys list = {0};
    const char *file, *redis = NULL, *prefix = NULL;
    char *shown;
    size_t i, key_width = 0;
    int value_width = 1;
    tally_store *s;
    int opt, rc, err;

    while ((opt = getopt_long(argc, argv, ":r:p:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'r':
            redis = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'h':
            ls_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("ls", opt, argv);
        }
    }
    if (prefix != NULL && redis == NULL)
        return tool_usage_error("ls", "--prefix needs --redis");
    if (redis != NULL) {
        struct tool_redis *r;

        /* every argument is a GLOB; the list comes sorted */
        rc = tool_redis_open_arg("ls", redis, prefix, &r);
        if (rc != TOOL_OK)
            return rc;
        err = tool_redis_collect(r, argv + optind, argc - optind, &list);
        if (err != 0 && err != -ENOMEM) {
            fprintf(stderr, "tally ls: %s: %s\n", redis,
                    tool_redis_errmsg(r));
            tool_redis_free(r);
            tool_keys_free(&list);
            return TOOL_FAIL;
        }
        tool_redis_free(r);
        file = redis;
    } else {
        if (optind == argc)
            return tool_usage_error("ls", "missing FILE");
        file = argv[optind];

        rc = tool_store_open("ls", file, TALLY_STORE_READONLY, &s);
        if (rc != TOOL_OK)
            return rc;
        err = tool_keys_collect(s, argv + optind + 1, argc - optind - 1,
                                &list);
        tally_store_close(s);
        if (err == 0)
            err = tool_keys_sort(&list);
    }
    shown = malloc(TOOL_SHOWN_MAX);
    if (err == 0 && shown == NULL)
        err = -ENOMEM;
    if (err != 0) {
        free(shown);
        tool_keys_free(&list);
        return tool_fail("ls", file, err);
    }

    for (i = 0; i < list.n; i++) {
        size_t w = tool_key_show(shown, list.entries[i].key,
                                 list.entries[i].len);
        int vw = snprintf(NULL, 0, "%" PRId64, list.entries[i].value);

        if (w > key_width && w <= LS_KEY_COLUMN_MAX)
            key_width = w;
        if (vw > value_width)
            value_width = vw;
    }
    for (i = 0; i < list.n; i++) {
        size_t w = tool_key_show(shown, list.entries[i].key,
                                 list.entries[i].len);
        char num[24];
        int vw = snprintf(num, sizeof num, "%" PRId64, list.entries[i].value);

        /* printf("%-*s  %*s\n") without its cost per million lines */
        fwrite_unlocked(shown, 1, w, stdout);
        for (; w < key_width + 2 + (size_t)(value_width - vw); w++)
            putc_unlocked(' ', stdout);
        fwrite_unlocked(num, 1, (size_t)vw, stdout);
        putc_unlocked('\n', stdout);
    }
    free(shown);
    tool_keys_free(&list);
    return TOOL_OK;
}
