/*
 * top.c - 'tally top FILE': a live view of a store, like top(1) or
 * varnishstat: each key's value, its rate per second over the last
 * interval, and its average rate since top started; sorted by rate.
 *
 * HOW IT WORKS
 *
 * Every interval top reads every key (tally_store_foreach; adds are never
 * blocked) into a list sorted by key, and walks it together with the
 * previous one: a key in both has rate (value - previous) / interval; a
 * key that appeared in between counts from 0, since a key starts at 0; on
 * the first sample no rate is known yet. Each key also carries the value
 * and time it was first seen, for its average. Drains and wrap-around
 * make a rate negative, as they should.
 *
 * On a terminal, ncurses draws the table and reads keys: q quits, the
 * arrows, PgUp/PgDn, Home/End scroll. Ctrl-C, SIGTERM and SIGHUP quit the
 * same way (the handler only sets a flag), so the terminal is always
 * restored by endwin(). When stdout is not a terminal, top takes two
 * samples one interval apart and prints one plain table: what scripts and
 * tests read. A build without ncurses has only that plain form.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(TALLY_TOOL_CURSES)
#include <curses.h>
#endif

#include "tool.h"

/* Interval bounds, seconds. */
#define TOP_INTERVAL_DEFAULT 1.0
#define TOP_INTERVAL_MIN 0.01
#define TOP_INTERVAL_MAX 3600.0

/* Widths of the value, rate and average columns. */
enum { TOP_NUM_WIDTH = 14 };

struct top_options {
    const char *file;
    double interval;
    char **globs;
    int nglobs;
};

/* One sample: the keys sorted by key, and for each the value and time it
 * was first seen (parallel arrays). */
struct top_sample {
    struct tool_keys keys;
    int64_t *first_value;
    uint64_t *first_ns;
    uint64_t ns;
};

/* A row of the table. rate and avg are NAN when not known yet. */
struct top_row {
    const struct tool_entry *e;
    double rate, avg;
};

struct top {
    const struct top_options *opt;
    tally_store *store;
    struct top_sample prev, cur; /* prev.ns == 0: no previous sample */
    struct top_row *rows;
    size_t nrows;
    uint64_t start_ns;
};

static void sample_free(struct top_sample *s)
{
    tool_keys_free(&s->keys);
    free(s->first_value);
    free(s->first_ns);
    memset(s, 0, sizeof *s);
}

static int row_cmp(const void *pa, const void *pb)
{
    const struct top_row *a = pa, *b = pb;
    bool ka = !isnan(a->rate), kb = !isnan(b->rate);

    if (ka != kb)
        return ka ? -1 : 1; /* known rates first */
    if (ka && a->rate != b->rate)
        return a->rate > b->rate ? -1 : 1;
    return tool_entry_keycmp(a->e, b->e);
}

/*
 * Takes a sample into t->cur (the previous one moves to t->prev) and
 * builds the rows, sorted by rate. 0 or a negative error.
 */
static int top_sample(struct top *t)
{
    struct top_sample next = {0};
    size_t i, j = 0, n;
    struct top_row *rows;
    int err;

    err = tool_keys_collect(t->store, t->opt->globs, t->opt->nglobs,
                            &next.keys);
    next.ns = tool_now_ns();
    if (err == 0)
        err = tool_keys_sort(&next.keys);
    if (err != 0) {
        sample_free(&next);
        return err;
    }
    n = next.keys.n;
    next.first_value = malloc((n ? n : 1) * sizeof *next.first_value);
    next.first_ns = malloc((n ? n : 1) * sizeof *next.first_ns);
    rows = malloc((n ? n : 1) * sizeof *rows);
    if (next.first_value == NULL || next.first_ns == NULL || rows == NULL) {
        free(rows);
        sample_free(&next);
        return -ENOMEM;
    }

    /* Both lists are sorted by key: walk them together. */
    for (i = 0; i < n; i++) {
        const struct tool_entry *e = &next.keys.entries[i];
        const struct top_sample *p = &t->cur; /* becomes prev below */
        int64_t before = 0;
        int c = 1;

        while (j < p->keys.n &&
               (c = tool_entry_keycmp(&p->keys.entries[j], e)) < 0)
            j++;
        if (j < p->keys.n && c == 0) {
            before = p->keys.entries[j].value;
            next.first_value[i] = p->first_value[j];
            next.first_ns[i] = p->first_ns[j];
        } else if (p->ns != 0) {
            /* New since the last sample: it started at 0 in between. */
            next.first_value[i] = 0;
            next.first_ns[i] = p->ns;
        } else {
            next.first_value[i] = e->value;
            next.first_ns[i] = next.ns;
        }
        rows[i].e = e;
        rows[i].rate = rows[i].avg = NAN;
        if (p->ns != 0) {
            double dt = (double)(next.ns - p->ns) / 1e9;
            int64_t d = (int64_t)((uint64_t)e->value - (uint64_t)before);

            rows[i].rate = (double)d / dt;
        }
        if (next.first_ns[i] < next.ns) {
            double dt = (double)(next.ns - next.first_ns[i]) / 1e9;
            int64_t d = (int64_t)((uint64_t)e->value -
                                  (uint64_t)next.first_value[i]);

            rows[i].avg = (double)d / dt;
        }
    }
    qsort(rows, n, sizeof *rows, row_cmp);

    sample_free(&t->prev);
    t->prev = t->cur;
    t->cur = next;
    free(t->rows);
    t->rows = rows;
    t->nrows = n;
    return 0;
}

/* Formats a rate into buf: "-" when unknown. */
static const char *fmt_rate(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.1f", v);
    return buf;
}

/* The width of the key column: the widest shown key, within [min, max]. */
static int key_width(const struct top *t, char *shown, int min, int max)
{
    size_t i;
    int w = min;

    for (i = 0; i < t->nrows && w < max; i++) {
        int kw = (int)tool_key_show(shown, t->rows[i].e->key,
                                    t->rows[i].e->len);
        if (kw > w)
            w = kw < max ? kw : max;
    }
    return w;
}

/* One plain table on stdout: two samples an interval apart. */
static int top_plain(struct top *t)
{
    char *shown = malloc(TOOL_SHOWN_MAX);
    char r1[32], r2[32];
    struct timespec ts;
    size_t i;
    int err, w;

    if (shown == NULL)
        return -ENOMEM;
    err = top_sample(t);
    if (err == 0) {
        ts.tv_sec = (time_t)t->opt->interval;
        ts.tv_nsec = (long)((t->opt->interval - (double)ts.tv_sec) * 1e9);
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            continue;
        err = top_sample(t);
    }
    if (err != 0) {
        free(shown);
        return err;
    }
    printf("tally top  %s  %zu key%s  over %.2f s\n", t->opt->file, t->nrows,
           t->nrows == 1 ? "" : "s",
           (double)(t->cur.ns - t->prev.ns) / 1e9);
    w = key_width(t, shown, 3, 64);
    printf("%-*s  %*s  %*s  %*s\n", w, "KEY", TOP_NUM_WIDTH, "VALUE",
           TOP_NUM_WIDTH, "RATE/s", TOP_NUM_WIDTH, "AVG/s");
    for (i = 0; i < t->nrows; i++) {
        const struct top_row *r = &t->rows[i];

        tool_key_show(shown, r->e->key, r->e->len);
        printf("%-*s  %*" PRId64 "  %*s  %*s\n", w, shown, TOP_NUM_WIDTH,
               r->e->value, TOP_NUM_WIDTH, fmt_rate(r1, sizeof r1, r->rate),
               TOP_NUM_WIDTH, fmt_rate(r2, sizeof r2, r->avg));
    }
    free(shown);
    return 0;
}

#if defined(TALLY_TOOL_CURSES)

static volatile sig_atomic_t top_quit_signal;

static void top_on_signal(int sig)
{
    top_quit_signal = sig;
}

/* Draws the table on the whole screen, from row *first (clamped). */
static void top_draw(const struct top *t, char *shown, size_t *first)
{
    int rows = LINES, cols = COLS, w, y, fixed = 3 * (TOP_NUM_WIDTH + 2);
    uint64_t up = (tool_now_ns() - t->start_ns) / 1000000000u;
    size_t page = rows > 3 ? (size_t)(rows - 3) : 1, i;
    char r1[32], r2[32], line[512];

    if (t->nrows <= page)
        *first = 0;
    else if (*first > t->nrows - page)
        *first = t->nrows - page;

    erase();
    snprintf(line, sizeof line,
             " tally top  %s   %zu key%s   every %.2g s   up %" PRIu64
             ":%02" PRIu64 ":%02" PRIu64 "   q quits",
             t->opt->file, t->nrows, t->nrows == 1 ? "" : "s",
             t->opt->interval, up / 3600, up / 60 % 60, up % 60);
    attron(A_REVERSE);
    mvaddnstr(0, 0, line, cols);
    for (i = strlen(line); i < (size_t)cols; i++)
        addch(' ');
    attroff(A_REVERSE);

    w = key_width(t, shown, 3, cols - fixed > 10 ? cols - fixed : 10);
    snprintf(line, sizeof line, "%-*s  %*s  %*s  %*s", w, "KEY",
             TOP_NUM_WIDTH, "VALUE", TOP_NUM_WIDTH, "RATE/s", TOP_NUM_WIDTH,
             "AVG/s");
    attron(A_BOLD);
    mvaddnstr(2, 0, line, cols);
    attroff(A_BOLD);

    for (y = 3, i = *first; i < t->nrows && y < rows; i++, y++) {
        const struct top_row *r = &t->rows[i];
        size_t len = tool_key_show(shown, r->e->key, r->e->len);

        if (len > (size_t)w) /* too long for the column: cut, mark with ~ */
            strcpy(shown + w - 1, "~");
        snprintf(line, sizeof line, "%-*s  %*" PRId64 "  %*s  %*s", w, shown,
                 TOP_NUM_WIDTH, r->e->value, TOP_NUM_WIDTH,
                 fmt_rate(r1, sizeof r1, r->rate), TOP_NUM_WIDTH,
                 fmt_rate(r2, sizeof r2, r->avg));
        mvaddnstr(y, 0, line, cols);
    }
    refresh();
}

/*
 * The live view until q or a signal. 0, a negative error, or 1 when the
 * terminal could not be set up (the caller prints a plain table instead).
 */
static int top_screen(struct top *t)
{
    struct sigaction sa;
    SCREEN *screen;
    char *shown = malloc(TOOL_SHOWN_MAX);
    bool keys = isatty(STDIN_FILENO);
    uint64_t next, interval_ns = (uint64_t)(t->opt->interval * 1e9);
    size_t first = 0;
    int err = 0;

    if (shown == NULL)
        return -ENOMEM;
    /* Before newterm, so that ncurses leaves these signals to us. No
     * SA_RESTART: a signal ends the wait in getch at once. */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = top_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    screen = newterm(NULL, stdout, stdin);
    if (screen == NULL) {
        free(shown);
        return 1;
    }
    cbreak();
    noecho();
    curs_set(0);
    keypad(stdscr, TRUE);

    next = tool_now_ns();
    while (top_quit_signal == 0) {
        uint64_t now = tool_now_ns();
        int ch, wait_ms;

        if (now >= next) {
            if ((err = top_sample(t)) != 0)
                break;
            top_draw(t, shown, &first);
            next += interval_ns;
            if (next <= now)
                next = now + interval_ns;
            continue;
        }
        wait_ms = (int)((next - now + 999999) / 1000000);
        if (!keys) {
            napms(wait_ms);
            continue;
        }
        timeout(wait_ms);
        ch = getch();
        switch (ch) {
        case 'q':
        case 'Q':
            top_quit_signal = -1;
            break;
        case KEY_UP:
        case 'k':
            first -= first > 0;
            break;
        case KEY_DOWN:
        case 'j':
            first++;
            break;
        case KEY_PPAGE:
        case 'b':
            first = first > (size_t)(LINES - 3) ? first - (LINES - 3) : 0;
            break;
        case KEY_NPAGE:
        case ' ':
            first += LINES > 3 ? (size_t)(LINES - 3) : 1;
            break;
        case KEY_HOME:
        case 'g':
            first = 0;
            break;
        case KEY_END:
        case 'G':
            first = t->nrows;
            break;
        case KEY_RESIZE:
            break;
        default:
            continue; /* ERR (time is up, or a signal) or an unused key */
        }
        if (top_quit_signal == 0)
            top_draw(t, shown, &first);
    }
    endwin();
    delscreen(screen);
    free(shown);
    return err;
}
#endif /* TALLY_TOOL_CURSES */

static void top_usage(FILE *f)
{
    fprintf(f,
            "usage: tally top FILE [--interval S] [--glob G]... [GLOB...]\n"
            "\n"
            "Shows the keys of the store FILE live, like top(1): each key's\n"
            "value, its rate per second over the last interval, and its\n"
            "average rate since top started (or since the key appeared),\n"
            "sorted by rate, highest first. On a terminal: q quits (so do\n"
            "Ctrl-C, SIGTERM and SIGHUP), arrows, PgUp/PgDn, Home/End scroll.\n"
            "When stdout is not a terminal, prints one plain table after one\n"
            "interval and exits.%s\n"
            "\n"
            "  -i, --interval S   seconds between samples (default 1, %.2g..%g)\n"
            "  -g, --glob G       only keys matching G, as in 'tally ls'\n"
            "                     (GLOB arguments do the same; any may match)\n"
            "  -h, --help         show this help\n",
#if defined(TALLY_TOOL_CURSES)
            "",
#else
            "\n(This tally was built without ncurses: plain tables only.)",
#endif
            TOP_INTERVAL_MIN, TOP_INTERVAL_MAX);
}

int cmd_top(int argc, char **argv)
{
    static const struct option opts[] = {
        {"interval", required_argument, NULL, 'i'},
        {"glob", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct top_options o = {NULL, TOP_INTERVAL_DEFAULT, NULL, 0};
    struct top t;
    int opt, rc, err = 0, i;
    bool plain = true;

    o.globs = calloc((size_t)argc + 1, sizeof *o.globs);
    if (o.globs == NULL) {
        fprintf(stderr, "tally top: out of memory\n");
        return TOOL_FAIL;
    }
    while ((opt = getopt_long(argc, argv, ":i:g:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'i':
            if (tool_parse_seconds(optarg, TOP_INTERVAL_MIN,
                                   TOP_INTERVAL_MAX, &o.interval) != 0) {
                free(o.globs);
                return tool_usage_error("top",
                                        "--interval wants seconds from "
                                        "%.2g to %g, not '%s'",
                                        TOP_INTERVAL_MIN, TOP_INTERVAL_MAX,
                                        optarg);
            }
            break;
        case 'g':
            o.globs[o.nglobs++] = optarg;
            break;
        case 'h':
            free(o.globs);
            top_usage(stdout);
            return TOOL_OK;
        default:
            free(o.globs);
            return tool_bad_option("top", opt, argv);
        }
    }
    if (optind == argc) {
        free(o.globs);
        return tool_usage_error("top", "missing FILE");
    }
    o.file = argv[optind];
    for (i = optind + 1; i < argc; i++)
        o.globs[o.nglobs++] = argv[i];

    memset(&t, 0, sizeof t);
    t.opt = &o;
    t.start_ns = tool_now_ns();
    rc = tool_store_open("top", o.file, TALLY_STORE_READONLY, &t.store);
    if (rc != TOOL_OK) {
        free(o.globs);
        return rc;
    }
#if defined(TALLY_TOOL_CURSES)
    if (isatty(STDOUT_FILENO)) {
        err = top_screen(&t);
        plain = err == 1;
        if (plain)
            fprintf(stderr, "tally top: cannot use this terminal (TERM=%s); "
                            "printing one table\n",
                    getenv("TERM") ? getenv("TERM") : "");
    }
#endif
    if (plain)
        err = top_plain(&t);
    tally_store_close(t.store);
    sample_free(&t.prev);
    sample_free(&t.cur);
    free(t.rows);
    free(o.globs);
    return err == 0 ? TOOL_OK : tool_fail("top", o.file, err);
}
