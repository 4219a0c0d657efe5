/*
 * get.c - 'tally get FILE KEY': prints a key's value. Exit status 1 when
 * the key (or the file) is absent, so that scripts can tell "absent"
 * from "0".
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "tool.h"

static void get_usage(FILE *f)
{
    fprintf(f,
            "usage: tally get [-e] FILE KEY\n"
            "\n"
            "Prints KEY's value in the store FILE. Exits with status 1, and\n"
            "a message on stderr, when FILE or KEY is absent.\n"
            "\n"
            "  -e, --escaped   KEY is written as 'tally ls' shows keys\n"
            "                  (\\xHH, \\t, \\n, \\r, \\\\), to give any bytes\n"
            "  -h, --help      show this help\n"
            "\n"
            "Options go before FILE, so that KEY may start with '-'.\n");
}

int cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {
        {"escaped", no_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned char key[TALLY_KEY_MAX];
    const char *file;
    bool escaped = false;
    int64_t value;
    size_t len;
    tally_store *s;
    int opt, rc, err;

    /* '+': options end at FILE (KEY may begin with '-'). */
    while ((opt = getopt_long(argc, argv, "+:eh", opts, NULL)) != -1) {
        switch (opt) {
        case 'e':
            escaped = true;
            break;
        case 'h':
            get_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("get", opt, argv);
        }
    }
    if (argc - optind < 2)
        return tool_usage_error("get", argc == optind ? "missing FILE and KEY"
                                                      : "missing KEY");
    if (argc - optind > 2)
        return tool_usage_error("get", "unexpected argument '%s'",
                                argv[optind + 2]);
    file = argv[optind];
    rc = tool_key_arg("get", argv[optind + 1], escaped, key, &len);
    if (rc != TOOL_OK)
        return rc;

    rc = tool_store_open("get", file, TALLY_STORE_READONLY, &s);
    if (rc != TOOL_OK)
        return rc;
    err = tally_store_get_n(s, key, len, &value);
    tally_store_close(s);
    if (err == -ENOENT) {
        char shown[TOOL_SHOWN_MAX];

        tool_key_show(shown, key, len);
        fprintf(stderr, "tally get: %s: no such key '%s'\n", file, shown);
        return TOOL_FAIL;
    }
    if (err != 0)
        return tool_fail("get", file, err);
    printf("%" PRId64 "\n", value);
    return TOOL_OK;
}
