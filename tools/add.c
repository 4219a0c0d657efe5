/*
 * add.c - 'tally add FILE KEY [N]': adds N to KEY, creating the store
 * file and the key when absent. What a shell script or a cron job calls
 * to count an event.
 */
#include <getopt.h>
#include <stdio.h>

#include "tool.h"

static void add_usage(FILE *f)
{
    fprintf(f,
            "usage: tally add [-e] FILE KEY [N]\n"
            "\n"
            "Adds N (default 1; may be negative) to KEY in the store FILE,\n"
            "creating FILE and KEY when absent. Prints nothing on success.\n"
            "Values wrap around in two's complement.\n"
            "\n"
            "  -e, --escaped   KEY is written as 'tally ls' shows keys\n"
            "                  (\\xHH, \\t, \\n, \\r, \\\\), to give any bytes\n"
            "  -h, --help      show this help\n"
            "\n"
            "Options go before FILE, so that KEY and N may start with '-'.\n");
}

int cmd_add(int argc, char **argv)
{
    static const struct option opts[] = {
        {"escaped", no_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned char key[TALLY_KEY_MAX];
    const char *file;
    bool escaped = false;
    int64_t n = 1;
    size_t len;
    tally_store *s;
    int opt, rc, err;

    /* '+': options end at FILE (KEY and N may begin with '-'). */
    while ((opt = getopt_long(argc, argv, "+:eh", opts, NULL)) != -1) {
        switch (opt) {
        case 'e':
            escaped = true;
            break;
        case 'h':
            add_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("add", opt, argv);
        }
    }
    if (argc - optind < 2)
        return tool_usage_error("add", argc == optind ? "missing FILE and KEY"
                                                      : "missing KEY");
    if (argc - optind > 3)
        return tool_usage_error("add", "unexpected argument '%s'",
                                argv[optind + 3]);
    file = argv[optind];
    rc = tool_key_arg("add", argv[optind + 1], escaped, key, &len);
    if (rc != TOOL_OK)
        return rc;
    if (argc - optind == 3 && tool_parse_int64(argv[optind + 2], &n) != 0)
        return tool_usage_error("add",
                                "N wants an integer from %lld to %lld, "
                                "not '%s'",
                                (long long)INT64_MIN, (long long)INT64_MAX,
                                argv[optind + 2]);

    rc = tool_store_open("add", file, TALLY_STORE_CREATE, &s);
    if (rc != TOOL_OK)
        return rc;
    err = tally_store_add_n(s, key, len, n);
    tally_store_close(s);
    return err == 0 ? TOOL_OK : tool_fail("add", file, err);
}
