/*
 * tally.c - the 'tally' command: option parsing and subcommand dispatch.
 * Each subcommand lives in its own file (demo.c, ...).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tally.h"
#include "tool.h"

static int cmd_help(int argc, char **argv);

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"demo", cmd_demo,
     "run the article's program: N threads each add 1 to one key"},
    {"help", cmd_help, "show this help"},
};

static void usage(FILE *f)
{
    size_t i;

    fprintf(f,
            "usage: tally [--help] [--version] COMMAND [ARGS]\n"
            "\n"
            "Exact counters for code where many threads count at once.\n"
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

/* tally help [COMMAND] */
static int cmd_help(int argc, char **argv)
{
    const struct command *c;
    char *sub[] = {NULL, "--help", NULL};

    if (argc < 2) {
        usage(stdout);
        return TOOL_OK;
    }
    if (argc > 2)
        return tool_usage_error("help", "too many arguments");
    c = find_command(argv[1]);
    if (c == NULL)
        return tool_usage_error(NULL, "unknown command '%s'", argv[1]);
    if (c->run == cmd_help) {
        usage(stdout);
        return TOOL_OK;
    }
    sub[0] = argv[1];
    return c->run(2, sub);
}

int tool_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, cmd ? "tally %s: " : "tally: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'tally %s%s--help'.\n", cmd ? cmd : "",
            cmd ? " " : "");
    return TOOL_USAGE;
}

int tool_bad_option(const char *cmd, int opt, char **argv)
{
    const char *arg = argv[optind - 1];

    if (opt == ':') {
        if (optopt != 0 && arg[1] != '-')
            return tool_usage_error(cmd, "option '-%c' needs a value",
                                    optopt);
        return tool_usage_error(cmd, "option '%s' needs a value", arg);
    }
    if (optopt != 0)
        return tool_usage_error(cmd, "unknown option '-%c'", optopt);
    return tool_usage_error(cmd, "unknown option '%s'", arg);
}

int tool_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    /* strtol would skip leading blanks; a number starts with its digits. */
    if (s == NULL || !(isdigit((unsigned char)*s) || *s == '-'))
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

uint64_t tool_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const struct command *c;
    int opt;

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
    if (optind >= argc) {
        usage(stderr);
        return TOOL_USAGE;
    }
    c = find_command(argv[optind]);
    if (c == NULL)
        return tool_usage_error(NULL, "unknown command '%s'", argv[optind]);

    argc -= optind;
    argv += optind;
    optind = 0; /* glibc: start a fresh getopt scan for the command */
    return c->run(argc, argv);
}
