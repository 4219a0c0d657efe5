/*
 * tool.c - helpers every subcommand uses: one-line usage errors, runtime
 * errors, option values.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tool.h"

int tool_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    if (cmd != NULL)
        fprintf(stderr, "tally %s: ", cmd);
    else
        fputs("tally: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd != NULL)
        fprintf(stderr, " (see 'tally %s --help')\n", cmd);
    else
        fputs(" (see 'tally --help')\n", stderr);
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

int tool_fail(const char *cmd, const char *file, int err)
{
    /* tally_strerror(-ENOENT) speaks of keys; from the tool's store calls
     * only opening the file gives it. */
    const char *what =
        err == -ENOENT ? "no such file or directory" : tally_strerror(err);

    fprintf(stderr, "tally %s: %s: %s\n", cmd, file, what);
    return TOOL_FAIL;
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
    if (errno != 0 || *end != '\0' || end == s || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int tool_parse_int64(const char *s, int64_t *out)
{
    char *end;
    long long v;

    _Static_assert(sizeof v == sizeof *out, "long long is 64 bits");
    if (s == NULL || !(isdigit((unsigned char)*s) || *s == '-'))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int tool_parse_seconds(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    /* Digits and one '.', nothing else: no blanks, signs, hex, inf, nan. */
    if (s == NULL || strspn(s, "0123456789.") != strlen(s) ||
        strchr(s, '.') != strrchr(s, '.'))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || end == s || !(v >= min && v <= max))
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
