/*
 * tool.h - what the 'tally' command's files share.
 *
 * Each subcommand is a function int cmd_NAME(int argc, char **argv) that
 * gets argv[0] == "NAME" and returns the exit status: 0 success, 1 failure
 * (a check failed, a resource ran out), 2 usage error.
 */
#ifndef TALLY_TOOL_H
#define TALLY_TOOL_H

#include <stdint.h>

enum { TOOL_OK = 0, TOOL_FAIL = 1, TOOL_USAGE = 2 };

/* tally demo [--threads N] [--key K]: the article's program. */
int cmd_demo(int argc, char **argv);

/* Prints "tally CMD: MSG" and a usage hint to stderr; returns TOOL_USAGE. */
int tool_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reports what getopt_long returned as opt (':' or '?', with opterr 0
 * and optstring starting "+:" or ":") as a usage error; TOOL_USAGE. */
int tool_bad_option(const char *cmd, int opt, char **argv);

/* Parses a decimal integer in [min, max] from s into *out. 0 or -1. */
int tool_parse_long(const char *s, long min, long max, long *out);

/* Nanoseconds on a monotonic clock. */
uint64_t tool_now_ns(void);

#endif /* TALLY_TOOL_H */
