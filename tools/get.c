/*
 * get.c - 'tally get FILE KEY': prints a key's value. Exit status 1 when
 * the key (or the file) is absent, so that scripts can tell "absent"
 * from "0". With --redis instead of FILE: the key's fleet total, as
 * 'tally push' keeps it in Redis (redis_push.h).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "redis_push.h"
#include "tool.h"

static void get_usage(FILE *f)
{
    fprintf(f,
            "usage: tally get [-e] FILE KEY\n"
            "       tally get [-e] --redis HOST[:PORT] [--prefix P] KEY\n"
            "\n"
            "Prints KEY's value in the store FILE. Exits with status 1, and\n"
            "a message on stderr, when FILE or KEY is absent.\n"
            "\n"
            "With --redis, prints KEY's fleet total instead: the sum of its\n"
            "values in every store that 'tally push' sends to that Redis\n"
            "with prefix P (the hash {P}:total).\n"
            "\n"
            "  -e, --escaped            KEY is written as 'tally ls' shows keys\n"
            "                           (\\xHH, \\t, \\n, \\r, \\\\), to give\n"
            "                           any bytes\n"
            "  -r, --redis HOST[:PORT]  read the fleet total from Redis (port\n"
            "                           6379 unless given; [ADDR]:PORT for IPv6)\n"
            "  -p, --prefix P           with --redis: the key prefix (default\n"
            "                           tally)\n"
            "  -h, --help               show this help\n"
            "\n"
            "Options go before FILE (or KEY, with --redis), so that KEY may\n"
            "start with '-'.\n");
}

/* tally get --redis ADDR [--prefix P] KEY: args are what follows the
 * options (KEY alone). */
static int get_redis(const char *addr, const char *prefix, int nargs,
                     char **args, bool escaped)
{
    unsigned char key[TALLY_KEY_MAX];
    struct tool_redis *r;
    int64_t value;
    size_t len;
    int rc, err;

    if (nargs < 1)
        return tool_usage_error("get", "missing KEY");
    if (nargs > 1)
        return tool_usage_error("get", "unexpected argument '%s' (FILE and "
                                "--redis do not go together)", args[1]);
    rc = tool_key_arg("get", args[0], escaped, key, &len);
    if (rc == TOOL_OK)
        rc = tool_redis_open_arg("get", addr, prefix, &r);
    if (rc != TOOL_OK)
        return rc;
    err = tool_redis_get(r, key, len, &value);
    if (err == -ENOENT) {
        char shown[TOOL_SHOWN_MAX];

        tool_key_show(shown, key, len);
        fprintf(stderr, "tally get: %s: no such key '%s'\n", addr, shown);
    } else if (err != 0) {
        fprintf(stderr, "tally get: %s: %s\n", addr, tool_redis_errmsg(r));
    } else {
        printf("%" PRId64 "\n", value);
    }
    tool_redis_free(r);
    return err != 0 ? TOOL_FAIL : TOOL_OK;
}

int cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {
        {"escaped", no_argument, NULL, 'e'},
        {"redis", required_argument, NULL, 'r'},
        {"prefix", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned char key[TALLY_KEY_MAX];
    const char *file, *redis = NULL, *prefix = NULL;
    bool escaped = false;
    int64_t value;
    size_t len;
    tally_store *s;
    int opt, rc, err;

    /* '+': options end at FILE (KEY may begin with '-'). */
    while ((opt = getopt_long(argc, argv, "+:er:p:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'e':
            escaped = true;
            break;
        case 'r':
            redis = optarg;
            break;
        case 'p':
            prefix = optarg;
            break;
        case 'h':
            get_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("get", opt, argv);
        }
    }
    if (prefix != NULL && redis == NULL)
        return tool_usage_error("get", "--prefix needs --redis");
    if (redis != NULL)
        return get_redis(redis, prefix, argc - optind, argv + optind,
                         escaped);
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
