/*
 * ls.c - 'tally ls FILE [GLOB...]': the keys and their values, sorted by
 * key, in two aligned columns. Keys show in the escaped form of tool.h.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

/* Keys longer than this (as shown) do not widen the key column; their
 * line's value is pushed right instead. */
enum { LS_KEY_COLUMN_MAX = 64 };

static void ls_usage(FILE *f)
{
    fprintf(f,
            "usage: tally ls FILE [GLOB...]\n"
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
            "  -h, --help   show this help\n");
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct tool_keys list = {0};
    const char *file;
    char *shown;
    size_t i, key_width = 0;
    int value_width = 1;
    tally_store *s;
    int opt, rc, err;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            ls_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("ls", opt, argv);
        }
    }
    if (optind == argc)
        return tool_usage_error("ls", "missing FILE");
    file = argv[optind];

    rc = tool_store_open("ls", file, TALLY_STORE_READONLY, &s);
    if (rc != TOOL_OK)
        return rc;
    err = tool_keys_collect(s, argv + optind + 1, argc - optind - 1, &list);
    tally_store_close(s);
    if (err == 0)
        err = tool_keys_sort(&list);
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
