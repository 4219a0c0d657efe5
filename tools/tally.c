/*
 * tally.c - the 'tally' command: its own options, the table of
 * subcommands, and 'tally help'. Each subcommand lives in its own file
 * (add.c, get.c, ...); tool.h says what they share.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "tool.h"

static int cmd_help(int argc, char **argv);

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"add", cmd_add, "add N (default 1) to a key in a store file"},
    {"get", cmd_get, "print a key's value"},
    {"ls", cmd_ls, "list keys and values, sorted by key"},
    {"export", cmd_export, "write every key and value as JSON or CSV"},
    {"top", cmd_top, "watch values and rates live"},
    {"check", cmd_check, "check a store file's structure"},
    {"demo", cmd_demo,
     "run the article's program: N threads each add 1 to one key"},
    {"serve", cmd_serve, "serve a store's counters to Prometheus over HTTP"},
    {"push", cmd_push, "send a store's counts to Redis: fleet-wide totals"},
    {"help", cmd_help, "show this help, or a command's"},
};

static void usage(FILE *f)
{
    size_t i;

    fprintf(f,
            "usage: tally [--help] [--version] COMMAND [ARGS]\n"
            "\n"
            "Exact counters for code where many threads count at once, and\n"
            "store files that processes share (FILE below).\n"
            "\n"
            "commands:\n");
    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'tally COMMAND --help' for a command's options.\n");
}

static const struct command *find_command(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* tally help [COMMAND]: the usage of tally, or of COMMAND. */
static int cmd_help(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct command *c;
    char *sub[] = {NULL, "--help", NULL};
    int opt;

    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt != 'h')
            return tool_bad_option("help", opt, argv);
        usage(stdout);
        return TOOL_OK;
    }
    if (optind == argc) {
        usage(stdout);
        return TOOL_OK;
    }
    if (argc - optind > 1)
        return tool_usage_error("help", "unexpected argument '%s'",
                                argv[optind + 1]);
    c = find_command(argv[optind]);
    if (c == NULL)
        return tool_usage_error(NULL, "unknown command '%s'", argv[optind]);
    sub[0] = argv[optind];
    optind = 0; /* a fresh getopt scan for the command */
    return c->run(2, sub);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const struct command *c;
    int opt, status;

    opterr = 0; /* tool_bad_option prints our own one-line messages */
    /* '+': stop at the command name, whose options are its own;
     * ':': report a missing value as ':' rather than '?'. */
    while ((opt = getopt_long(argc, argv, "+:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            usage(stdout);
            return TOOL_OK;
        case 'V':
            printf("tally %s\n", TALLY_VERSION_STRING);
            return TOOL_OK;
        default:
            return tool_bad_option(NULL, opt, argv);
        }
    }
    if (optind >= argc)
        return tool_usage_error(NULL, "no command given");
    c = find_command(argv[optind]);
    if (c == NULL)
        return tool_usage_error(NULL, "unknown command '%s'", argv[optind]);

    argc -= optind;
    argv += optind;
    optind = 0; /* glibc: start a fresh getopt scan for the command */
    status = c->run(argc, argv);
    /* Output that could not be written (a full disk, a closed pipe) is a
     * failure, not a silent success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tally %s: writing the output: %s\n", c->name,
                strerror(errno));
        return TOOL_FAIL;
    }
    return status;
}
