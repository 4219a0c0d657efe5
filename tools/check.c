/*
 * check.c - 'tally check FILE': runs tally_store_check over the file and
 * prints each problem it finds. Exit status 0 sound, 1 problems (or the
 * file could not be read), 2 usage.
 */
#include <getopt.h>
#include <stdio.h>

#include "tool.h"

static void check_usage(FILE *f)
{
    fprintf(f,
            "usage: tally check FILE\n"
            "\n"
            "Checks the whole structure of the store FILE without changing\n"
            "it, and prints one line per problem found (\"FILE: problem\").\n"
            "Prints \"FILE: ok\" and exits 0 when the store is sound; exits 1\n"
            "when it has problems or cannot be read, 2 on a usage error.\n"
            "\n"
            "  -h, --help   show this help\n");
}

struct check_ctx {
    const char *file;
    unsigned long problems;
};

static void check_report(void *p, const char *problem)
{
    struct check_ctx *ctx = p;

    printf("%s: %s\n", ctx->file, problem);
    ctx->problems++;
}

int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct check_ctx ctx = {NULL, 0};
    int opt, err;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            check_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("check", opt, argv);
        }
    }
    if (optind == argc)
        return tool_usage_error("check", "missing FILE");
    if (argc - optind > 1)
        return tool_usage_error("check", "unexpected argument '%s'",
                                argv[optind + 1]);
    ctx.file = argv[optind];

    err = tally_store_check(ctx.file, check_report, &ctx);
    if (err == 0) {
        printf("%s: ok\n", ctx.file);
        return TOOL_OK;
    }
    if (err == TALLY_ECORRUPT) {
        if (ctx.problems == 0) /* the library found damage it did not name */
            printf("%s: %s\n", ctx.file, tally_strerror(err));
        return TOOL_FAIL;
    }
    /* Not a store at all, another version or layout, unreadable. */
    return tool_fail("check", ctx.file, err);
}
