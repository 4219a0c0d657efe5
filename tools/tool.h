/*
 * tool.h - what the 'tally' command's files share.
 *
 * Each subcommand is a function int cmd_NAME(int argc, char **argv) in
 * its own file NAME.c, with one row in tally.c's table. It gets
 * argv[0] == "NAME" and returns the exit status:
 *
 *   0  success
 *   1  failure: a runtime error ("tally CMD: FILE: what went wrong" on
 *      stderr), an absent key, a store with problems, a wrong count
 *   2  usage error: one line on stderr saying what is wrong, nothing on
 *      stdout
 *
 * Every subcommand parses its options with getopt_long (opterr 0, the
 * optstring starting with ':') and reports what it rejects through
 * tool_bad_option and tool_usage_error, and answers --help with its usage
 * on stdout and status 0.
 */
#ifndef TALLY_TOOL_H
#define TALLY_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tally.h"

enum { TOOL_OK = 0, TOOL_FAIL = 1, TOOL_USAGE = 2 };

/* The subcommands, each in its own file. */
int cmd_add(int argc, char **argv);    /* add.c */
int cmd_get(int argc, char **argv);    /* get.c */
int cmd_ls(int argc, char **argv);     /* ls.c */
int cmd_export(int argc, char **argv); /* export.c */
int cmd_top(int argc, char **argv);    /* top.c */
int cmd_check(int argc, char **argv);  /* check.c */
int cmd_demo(int argc, char **argv);   /* demo.c */
int cmd_serve(int argc, char **argv);  /* serve.c */
int cmd_push(int argc, char **argv);   /* push.c */

/* ---- errors and option values (tool.c) ---- */

/* Prints "tally CMD: MSG (see 'tally CMD --help')" as one line on stderr;
 * returns TOOL_USAGE. cmd NULL: the top-level "tally: ...". */
int tool_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Reports what getopt_long returned as opt (':' or '?', with opterr 0
 * and an optstring starting "+:" or ":") as a usage error; TOOL_USAGE. */
int tool_bad_option(const char *cmd, int opt, char **argv);

/* Prints "tally CMD: FILE: " and tally_strerror(err) on stderr; returns
 * TOOL_FAIL. -ENOENT reads "no such file or directory": the tool passes
 * it on only from opening FILE. */
int tool_fail(const char *cmd, const char *file, int err);

/* Parses a decimal integer in [min, max] from s into *out. 0 or -1. */
int tool_parse_long(const char *s, long min, long max, long *out);
/* The same for the whole int64_t range (an optional '-', then digits). */
int tool_parse_int64(const char *s, int64_t *out);
/* Parses seconds ("2", "0.5") in [min, max] into *out. 0 or -1. */
int tool_parse_seconds(const char *s, double min, double max, double *out);

/* Nanoseconds on a monotonic clock. */
uint64_t tool_now_ns(void);

/* ---- stores and keys (keys.c) ---- */

/* Opens the store at path with flags (TALLY_STORE_*). On failure prints
 * the error as tool_fail does and returns TOOL_FAIL; else TOOL_OK. */
int tool_store_open(const char *cmd, const char *path, unsigned flags,
                    tally_store **out);

/*
 * Keys are byte strings. Wherever the tool shows one to a person (ls,
 * top, messages), it shows it in ASCII with these escapes, which the -e
 * option of add and get reads back:
 *
 *   \\  a backslash          \t \n \r  tab, line feed, carriage return
 *   \xHH  any other byte outside printable ASCII (0x20..0x7e), and a
 *         space that begins or ends the key
 *
 * So the shown form is unambiguous, has no control characters, and keys
 * that are plain printable ASCII show as themselves.
 */

/* The most bytes a shown key takes, its NUL included. */
#define TOOL_SHOWN_MAX (4 * TALLY_KEY_MAX + 1)

/* Writes the shown form of key[0..len) and a NUL into out, which holds
 * at least 4 * len + 1 bytes; returns its length. */
size_t tool_key_show(char *out, const void *key, size_t len);

/* Reads a shown key back: the bytes into out (room for TALLY_KEY_MAX),
 * their number into *len. 0, or -1 for a malformed escape or a key
 * longer than TALLY_KEY_MAX. */
int tool_key_parse(const char *shown, unsigned char *out, size_t *len);

/* A KEY argument: its bytes into out (room for TALLY_KEY_MAX) and *len;
 * escaped: arg is a shown key (the -e option). TOOL_OK, or a usage error
 * reported for cmd (a malformed escape, a key over TALLY_KEY_MAX). */
int tool_key_arg(const char *cmd, const char *arg, bool escaped,
                 unsigned char *out, size_t *len);

/* True when no globs are given or the shown key matches one of them
 * (fnmatch(3) with FNM_NOESCAPE: * ? [...] work, a backslash is itself). */
bool tool_globs_match(char *const *globs, int nglobs, const char *shown);

/* ---- a store's keys, collected and sorted (keys.c) ---- */

struct tool_entry {
    const unsigned char *key; /* len bytes in the list's arena */
    size_t len;
    int64_t value;
    /* The key's first 16 bytes, big-endian, zero-padded: most keys sort
     * by these two integers alone, without a call to memcmp. */
    uint64_t sort_hi, sort_lo;
};

struct tool_keys {
    struct tool_entry *entries;
    size_t n, cap;
    struct tool_chunk *chunks; /* the arena the keys live in */
};

/* Appends every key of s whose shown form matches globs (see
 * tool_globs_match) with its value to list (zero-filled before the first
 * call). 0, -ENOMEM, or the error of tally_store_foreach. */
int tool_keys_collect(tally_store *s, char *const *globs, int nglobs,
                      struct tool_keys *list);
/* Appends one key (its bytes copied into the list's arena) and value.
 * 0, -ENAMETOOLONG (len > TALLY_KEY_MAX) or -ENOMEM. */
int tool_keys_add(struct tool_keys *list, const void *key, size_t len,
                  int64_t value);
/* Sorts the entries by key bytes (memcmp order, a prefix first). 0 or
 * -ENOMEM (the list is left as it was). */
int tool_keys_sort(struct tool_keys *list);
/* Writes v in decimal to f (faster than printf for a million rows). */
void tool_put_int64(FILE *f, int64_t v);
/* Frees what the list holds and zero-fills it. */
void tool_keys_free(struct tool_keys *list);
#if defined(TALLY_TEST_HOOKS)
/* Tests: while >= 0, the quicksort levels tool_keys_sort allows before
 * it switches to heapsort (0: heapsort only). */
extern int tool_sort_depth_override;
#endif
/* Compares two entries' keys as tool_keys_sort orders them: memcmp
 * order, a key before the keys it is a prefix of. */
int tool_entry_keycmp(const struct tool_entry *a, const struct tool_entry *b);

#endif /* TALLY_TOOL_H */
