/*
 * serve.c - 'tally serve FILE': a store's counters over HTTP, for
 * Prometheus to scrape (docs/exposition.md).
 *
 * HOW IT WORKS
 *
 * libmicrohttpd runs the HTTP side, one thread per connection. A scrape
 * of /metrics starts a render thread that opens the store's foreach
 * through tally's exposition writer (tally_expo_store) and writes the
 * output, gzipped when the client accepts it, into a pipe; the
 * connection's thread reads the pipe into the response as it comes
 * (chunked transfer). So a store of any size is served with a few
 * buffers of memory (the writer's 16 KiB, zlib's, the pipe's), the
 * response starts before the walk ends, and the store is only read
 * (opened TALLY_STORE_READONLY): no scrape ever blocks a process adding
 * to it. If the walk fails (a damaged store) the response is cut off
 * without its final chunk, so the client sees an error, not a short
 * exposition.
 *
 * The listening socket is made here, not by microhttpd, so that a port
 * in use is reported as such (and port 0 picks a free one, printed on
 * stdout). SIGINT and SIGTERM are blocked in every thread and taken by
 * the main thread with sigwait: it stops the server (microhttpd joins
 * its threads, each of which ends its render thread), closes the store
 * and exits 0.
 *
 * Built only with libmicrohttpd (tools/CMakeLists.txt); without it the
 * command says so. Without zlib it never compresses.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tally.h"
#include "tool.h"

static void serve_usage(FILE *f)
{
    fprintf(f,
            "usage: tally serve FILE [--listen ADDR:PORT] [--name NAME]\n"
            "                  [--help-text TEXT] [--key-label LABEL]\n"
            "                  [--label NAME=VALUE]... [--gauge]\n"
            "\n"
            "Serves the counters of the store FILE over HTTP for Prometheus:\n"
            "/metrics in the Prometheus text format 0.0.4, or OpenMetrics 1.0\n"
            "when the Accept header asks for application/openmetrics-text\n"
            "(or ?format=openmetrics / ?format=text), gzipped when the client\n"
            "accepts it; / is a small index page. Each key is one sample of\n"
            "the family NAME (NAME_total{LABEL=\"key\"} VALUE). The store is\n"
            "opened read-only. SIGINT or SIGTERM stops it (exit 0).\n"
            "\n"
            "  -l, --listen ADDR:PORT  where to listen (default 127.0.0.1:9464;\n"
            "                          [::1]:PORT for IPv6; PORT alone means\n"
            "                          127.0.0.1:PORT; port 0 picks a free one)\n"
            "  -n, --name NAME         the metric family (default tally)\n"
            "      --help-text TEXT    its HELP text\n"
            "  -k, --key-label LABEL   the label carrying the key (default key)\n"
            "      --label NAME=VALUE  a constant label on every sample\n"
            "                          (repeatable)\n"
            "      --gauge             a gauge (signed values) instead of a\n"
            "                          counter (negative values shown as 0)\n"
            "  -h, --help              show this help\n"
            "\n"
            "On start it prints 'listening on http://ADDR:PORT/metrics' on\n"
            "stdout. Exit status: 0 after SIGINT/SIGTERM, 1 when the store\n"
            "cannot be opened or the address cannot be listened on, 2 on a\n"
            "usage error.\n");
}

#if !defined(TALLY_TOOL_SERVE)

int cmd_serve(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        serve_usage(stdout);
        return TOOL_OK;
    }
    fprintf(stderr, "tally serve: this tally was built without libmicrohttpd "
                    "(install libmicrohttpd-dev and rebuild)\n");
    return TOOL_FAIL;
}

#else /* TALLY_TOOL_SERVE */

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(TALLY_TOOL_ZLIB)
#include <zlib.h>
#endif

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result serve_mhd_result;
#else
typedef int serve_mhd_result;
#endif

enum {
    SERVE_DEFAULT_PORT = 9464,
    SERVE_MAX_LABELS = 32,
    SERVE_MAX_CONNECTIONS = 64,
    SERVE_TIMEOUT_S = 60,      /* an idle connection is closed after it */
    SERVE_GZIP_LEVEL = 1,      /* docs/exposition.md: level 1 against 6 */
    SERVE_CHUNK = 16384,
};

struct serve {
    tally_store *store;
    const char *path;
    struct tally_expo_family family;
    struct tally_expo_label labels[SERVE_MAX_LABELS];
};

/* ---- content negotiation ---------------------------------------------- */

/* The q value of one media range or coding's parameters ("; q=0.5"):
 * 1 when absent, 0 when malformed. */
static double param_q(const char *params, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t start, end;

        while (i < len && (params[i] == ';' || params[i] == ' ' ||
                           params[i] == '\t'))
            i++;
        start = i;
        while (i < len && params[i] != ';')
            i++;
        end = i;
        while (end > start && (params[end - 1] == ' ' || params[end - 1] == '\t'))
            end--;
        if (end - start >= 2 && (params[start] == 'q' || params[start] == 'Q') &&
            params[start + 1] == '=') {
            char num[16];
            char *stop;
            double q;
            size_t n = end - start - 2;
            if (n == 0 || n >= sizeof num)
                return 0;
            memcpy(num, params + start + 2, n);
            num[n] = '\0';
            q = strtod(num, &stop);
            if (*stop != '\0' || q < 0 || q > 1)
                return 0;
            return q;
        }
    }
    return 1;
}

/* Calls fn for each element of a comma-separated header: its token (up
 * to ';', trimmed) and its q value. */
static void each_element(const char *h,
                         void (*fn)(void *ctx, const char *tok, size_t len,
                                    double q),
                         void *ctx)
{
    while (h != NULL && *h != '\0') {
        const char *end = strchr(h, ',');
        const char *semi;
        size_t len = end ? (size_t)(end - h) : strlen(h);
        size_t tlen;

        while (len > 0 && (*h == ' ' || *h == '\t')) {
            h++;
            len--;
        }
        semi = memchr(h, ';', len);
        tlen = semi ? (size_t)(semi - h) : len;
        while (tlen > 0 && (h[tlen - 1] == ' ' || h[tlen - 1] == '\t'))
            tlen--;
        if (tlen > 0)
            fn(ctx, h, tlen,
               semi ? param_q(semi, len - (size_t)(semi - h)) : 1.0);
        h = end ? end + 1 : NULL;
    }
}

static int token_is(const char *tok, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(tok, word, len) == 0;
}

struct accept_q {
    double om, text;
};

static void accept_element(void *ctx, const char *tok, size_t len, double q)
{
    struct accept_q *a = ctx;

    if (token_is(tok, len, "application/openmetrics-text")) {
        if (q > a->om)
            a->om = q;
    } else if (token_is(tok, len, "text/plain") ||
               token_is(tok, len, "text/*") || token_is(tok, len, "*/*")) {
        if (q > a->text)
            a->text = q;
    }
}

/*
 * OpenMetrics when the Accept header names application/openmetrics-text
 * (any version: there is one, 1.0.0, which Prometheus also takes for the
 * 0.0.1 it offers) with a q value above 0 and at least that of text/plain
 * (or a wildcard); the text format otherwise, including for no header or
 * one naming neither (the text format is every scraper's fallback).
 */
static unsigned choose_format(const char *accept)
{
    struct accept_q a = {0, 0};

    each_element(accept, accept_element, &a);
    return a.om > 0 && a.om >= a.text ? TALLY_EXPO_OPENMETRICS
                                      : TALLY_EXPO_TEXT;
}

struct encoding_q {
    double gzip, star;
    int gzip_named;
};

static void encoding_element(void *ctx, const char *tok, size_t len, double q)
{
    struct encoding_q *e = ctx;

    if (token_is(tok, len, "gzip") || token_is(tok, len, "x-gzip")) {
        e->gzip_named = 1;
        if (q > e->gzip)
            e->gzip = q;
    } else if (token_is(tok, len, "*")) {
        if (q > e->star)
            e->star = q;
    }
}

/* Whether Accept-Encoding allows gzip: named with q > 0, or "*" with
 * q > 0 and gzip not named. */
static int accepts_gzip(const char *accept_encoding)
{
    struct encoding_q e = {0, 0, 0};

    each_element(accept_encoding, encoding_element, &e);
    return e.gzip_named ? e.gzip > 0 : e.star > 0;
}

/* ---- a scrape: the render thread and the pipe ------------------------- */

struct scrape {
    struct serve *srv;
    unsigned format;
    int gzip;
    int rfd, wfd;       /* the pipe: the connection reads, the render writes */
    pthread_t thread;
    int started, joined;
    int result;         /* the render's: 0 or a negative errno */
#if defined(TALLY_TOOL_ZLIB)
    z_stream z;
    unsigned char zout[SERVE_CHUNK];
#endif
};

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno; /* EPIPE: the client went away */
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

#if defined(TALLY_TOOL_ZLIB)
/* Runs deflate with flush over what is in sc->z, writing every full
 * output buffer to the pipe. */
static int gzip_pump(struct scrape *sc, int flush)
{
    int zrc;

    do {
        size_t have;
        int rc;

        sc->z.next_out = sc->zout;
        sc->z.avail_out = sizeof sc->zout;
        zrc = deflate(&sc->z, flush);
        if (zrc == Z_STREAM_ERROR)
            return -EIO;
        have = sizeof sc->zout - sc->z.avail_out;
        if (have > 0 && (rc = write_all(sc->wfd, sc->zout, have)) != 0)
            return rc;
    } while (sc->z.avail_out == 0 || (flush == Z_FINISH && zrc != Z_STREAM_END));
    return 0;
}
#endif

/* The writer's sink: to the pipe, through deflate when gzipping. */
static int scrape_sink(void *ctx, const void *data, size_t len)
{
    struct scrape *sc = ctx;

#if defined(TALLY_TOOL_ZLIB)
    if (sc->gzip) {
        sc->z.next_in = (unsigned char *)(uintptr_t)data;
        sc->z.avail_in = (uInt)len;
        return gzip_pump(sc, Z_NO_FLUSH);
    }
#endif
    return write_all(sc->wfd, data, len);
}

static void *render_thread(void *arg)
{
    struct scrape *sc = arg;
    tally_expo *w = NULL;
    int rc;

    rc = tally_expo_new(&w, sc->format, scrape_sink, sc);
    if (rc == 0)
        rc = tally_expo_store(w, &sc->srv->family, sc->srv->store);
    if (rc == 0)
        rc = tally_expo_finish(w);
#if defined(TALLY_TOOL_ZLIB)
    if (rc == 0 && sc->gzip)
        rc = gzip_pump(sc, Z_FINISH);
#endif
    tally_expo_free(w);
    if (rc != 0 && rc != -EPIPE)
        fprintf(stderr, "tally serve: %s: scrape failed: %s\n",
                sc->srv->path, tally_strerror(rc));
    sc->result = rc;
    close(sc->wfd); /* end of stream for the reader */
    sc->wfd = -1;
    return NULL;
}

/* microhttpd's content reader: what the render thread wrote, as it comes. */
static ssize_t scrape_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct scrape *sc = cls;

    (void)pos;
    for (;;) {
        ssize_t n = read(sc->rfd, buf, max);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        /* The render closed its end: finished, or failed. */
        pthread_join(sc->thread, NULL);
        sc->joined = 1;
        return sc->result == 0 ? MHD_CONTENT_READER_END_OF_STREAM
                               : MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void scrape_free(void *cls)
{
    struct scrape *sc = cls;

    /* Closing the read end first makes a render still writing get EPIPE
     * and stop, so the join below ends. */
    if (sc->rfd >= 0)
        close(sc->rfd);
    if (sc->started && !sc->joined)
        pthread_join(sc->thread, NULL);
    if (sc->wfd >= 0)
        close(sc->wfd);
#if defined(TALLY_TOOL_ZLIB)
    if (sc->gzip)
        deflateEnd(&sc->z);
#endif
    free(sc);
}

/* For HEAD: the same headers as GET, no body and no render. */
static ssize_t empty_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_OF_STREAM;
}

/* ---- requests ------------------------------------------------------------ */

static serve_mhd_result reply_text(struct MHD_Connection *conn,
                                   unsigned status, const char *type,
                                   const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    serve_mhd_result ret;

    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* The path for the index page, HTML-escaped. */
static void html_escape(char *dst, size_t cap, const char *s)
{
    size_t n = 0;

    for (; *s != '\0' && n + 7 < cap; s++) {
        const char *e = NULL;
        switch (*s) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&quot;"; break;
        }
        if (e != NULL) {
            memcpy(dst + n, e, strlen(e));
            n += strlen(e);
        } else {
            dst[n++] = *s;
        }
    }
    dst[n] = '\0';
}

static serve_mhd_result reply_index(struct MHD_Connection *conn,
                                    struct serve *srv)
{
    char path[1024], body[2048];

    html_escape(path, sizeof path, srv->path);
    snprintf(body, sizeof body,
             "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
             "<title>tally serve</title></head>\n<body><h1>tally serve</h1>\n"
             "<p>Store <code>%s</code>: %zu keys.</p>\n"
             "<p><a href=\"/metrics\">/metrics</a> (Prometheus text 0.0.4; "
             "OpenMetrics 1.0 on request)</p>\n</body></html>\n",
             path, tally_store_size(srv->store));
    return reply_text(conn, MHD_HTTP_OK, "text/html; charset=utf-8", body);
}

static serve_mhd_result reply_metrics(struct MHD_Connection *conn,
                                      struct serve *srv, int head)
{
    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_ACCEPT);
    const char *fmt_arg = MHD_lookup_connection_value(
        conn, MHD_GET_ARGUMENT_KIND, "format");
    const char *enc = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    struct MHD_Response *r;
    struct scrape *sc = NULL;
    unsigned format;
    int gzip = 0, fds[2];
    serve_mhd_result ret;

    if (fmt_arg == NULL)
        format = choose_format(accept);
    else if (strcmp(fmt_arg, "text") == 0)
        format = TALLY_EXPO_TEXT;
    else if (strcmp(fmt_arg, "openmetrics") == 0)
        format = TALLY_EXPO_OPENMETRICS;
    else
        return reply_text(conn, MHD_HTTP_BAD_REQUEST,
                          "text/plain; charset=utf-8",
                          "format is 'text' or 'openmetrics'\n");
#if defined(TALLY_TOOL_ZLIB)
    gzip = accepts_gzip(enc);
#else
    (void)enc;
    (void)accepts_gzip;
#endif

    if (head) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024,
                                              empty_read, NULL, NULL);
    } else {
        sc = calloc(1, sizeof *sc);
        if (sc == NULL)
            return MHD_NO;
        sc->srv = srv;
        sc->format = format;
        sc->gzip = gzip;
        sc->rfd = sc->wfd = -1;
        if (pipe2(fds, O_CLOEXEC) != 0) {
            free(sc);
            return MHD_NO;
        }
        sc->rfd = fds[0];
        sc->wfd = fds[1];
#if defined(TALLY_TOOL_ZLIB)
        /* windowBits 15 + 16: a gzip header and trailer around deflate. */
        if (gzip && deflateInit2(&sc->z, SERVE_GZIP_LEVEL, Z_DEFLATED, 15 + 16,
                                 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            sc->gzip = 0;
            scrape_free(sc);
            return MHD_NO;
        }
#endif
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SERVE_CHUNK,
                                              scrape_read, sc, scrape_free);
        if (r == NULL) {
            scrape_free(sc);
            return MHD_NO;
        }
        if (pthread_create(&sc->thread, NULL, render_thread, sc) != 0) {
            MHD_destroy_response(r); /* scrape_free closes the pipe */
            return MHD_NO;
        }
        sc->started = 1;
    }
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            tally_expo_content_type(format));
    MHD_add_response_header(r, MHD_HTTP_HEADER_VARY,
                            "Accept, Accept-Encoding");
    if (gzip)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r); /* freed (scrape_free) when the reply is done */
    return ret;
}

static serve_mhd_result on_request(void *cls, struct MHD_Connection *conn,
                                   const char *url, const char *method,
                                   const char *version,
                                   const char *upload_data,
                                   size_t *upload_data_size, void **con_cls)
{
    static int seen; /* its address marks a request's first call */
    struct serve *srv = cls;
    int head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

    (void)version;
    (void)upload_data;
    /* microhttpd calls once for the headers, then for the body, then once
     * more at its end. Replying at the end (not on the first call, which
     * would close the connection) lets a scraper keep it alive. */
    if (*con_cls == NULL) {
        *con_cls = &seen;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* a body is ignored */
        return MHD_YES;
    }
    if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                          "text/plain; charset=utf-8",
                          "only GET and HEAD\n");
    if (strcmp(url, "/metrics") == 0)
        return reply_metrics(conn, srv, head);
    if (strcmp(url, "/") == 0)
        return reply_index(conn, srv);
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8",
                      "not found: try /metrics\n");
}

/* ---- listening ----------------------------------------------------------- */

/*
 * Splits ADDR:PORT, [ADDR]:PORT or PORT into host and port. 0 or -1.
 */
static int split_listen(const char *s, char *host, size_t hcap, char *port,
                        size_t pcap)
{
    const char *colon;
    size_t hlen;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= hcap)
            return -1;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        colon = close + 1;
    } else if ((colon = strrchr(s, ':')) != NULL) {
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen >= hcap || memchr(s, ':', hlen) != NULL)
            return -1; /* an IPv6 address needs brackets */
        memcpy(host, s, hlen);
        host[hlen] = '\0';
    } else {
        snprintf(host, hcap, "127.0.0.1");
        colon = s - 1;
    }
    {
        long p;
        if (tool_parse_long(colon + 1, 0, 65535, &p) != 0)
            return -1;
        snprintf(port, pcap, "%ld", p);
    }
    return 0;
}

/* A listening socket on host:port; prints what fails. -1 on failure. */
static int listen_on(const char *spec, const char *host, const char *port,
                     int *family)
{
    struct addrinfo hints, *res = NULL, *ai;
    int fd = -1, err = 0, one = 1, rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "tally serve: cannot listen on %s: %s\n", spec,
                gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        /* SO_REUSEADDR: a restart may reuse a port whose old connections
         * are in TIME_WAIT; a port another process listens on still gives
         * EADDRINUSE. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, SERVE_MAX_CONNECTIONS) == 0) {
            *family = ai->ai_family;
            break;
        }
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "tally serve: cannot listen on %s: %s\n", spec,
                strerror(err));
    return fd;
}

/* "http://ADDR:PORT/metrics" of a listening socket, as it really is. */
static void print_url(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[INET6_ADDRSTRLEN];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof addr);
        printf("listening on http://[%s]:%u/metrics\n", addr,
               ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, addr, sizeof addr);
        printf("listening on http://%s:%u/metrics\n", addr,
               ntohs(a->sin_port));
    }
    fflush(stdout);
}

/* ---- the command ----------------------------------------------------------- */

static int null_sink(void *ctx, const void *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return 0;
}

/* Checks the family options by beginning them on a scratch writer, piece
 * by piece, so that the message names the option at fault. */
static int check_family(const struct tally_expo_family *f)
{
    struct tally_expo_family probe = {.name = f->name, .help = f->help,
                                      .type = f->type};
    tally_expo *w;
    size_t i;
    int rc;

    if (tally_expo_new(&w, TALLY_EXPO_OPENMETRICS, null_sink, NULL) != 0) {
        fprintf(stderr, "tally serve: out of memory\n");
        return TOOL_FAIL;
    }
    rc = TOOL_OK;
    if (tally_expo_begin(w, &probe) != 0) {
        probe.help = "h";
        if (tally_expo_begin(w, &probe) != 0)
            rc = tool_usage_error("serve",
                                  "--name '%s' is not a metric name "
                                  "([a-zA-Z][a-zA-Z0-9_]*)", f->name);
        else
            rc = tool_usage_error("serve",
                                  "--help-text must be non-empty UTF-8");
    }
    if (rc == TOOL_OK) {
        /* a fresh name for each probe: one family per name */
        tally_expo_free(w);
        if (tally_expo_new(&w, TALLY_EXPO_OPENMETRICS, null_sink, NULL) != 0)
            return TOOL_FAIL;
        probe.name = "probe_key";
        probe.help = "h";
        probe.key_label = f->key_label;
        if (tally_expo_begin(w, &probe) != 0)
            rc = tool_usage_error("serve",
                                  "--key-label '%s' is not a label name "
                                  "([a-zA-Z_][a-zA-Z0-9_]*, not __...)",
                                  f->key_label);
    }
    for (i = 0; rc == TOOL_OK && i < f->nlabels; i++) {
        char name[48];
        snprintf(name, sizeof name, "probe_label_%zu", i);
        probe.name = name;
        probe.labels = f->labels;
        probe.nlabels = i + 1;
        if (tally_expo_begin(w, &probe) != 0)
            rc = tool_usage_error("serve",
                                  "--label %s=...: not a label name, a "
                                  "name given twice or the key label, or a "
                                  "value that is not UTF-8",
                                  f->labels[i].name);
    }
    tally_expo_free(w);
    return rc;
}

int cmd_serve(int argc, char **argv)
{
    enum { OPT_HELP_TEXT = 256, OPT_LABEL, OPT_GAUGE };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"name", required_argument, NULL, 'n'},
        {"help-text", required_argument, NULL, OPT_HELP_TEXT},
        {"key-label", required_argument, NULL, 'k'},
        {"label", required_argument, NULL, OPT_LABEL},
        {"gauge", no_argument, NULL, OPT_GAUGE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static struct serve srv;
    const char *listen_spec = "127.0.0.1:9464";
    struct tally_store_config cfg = {.flags = TALLY_STORE_READONLY};
    char host[256], port[16];
    struct MHD_Daemon *d;
    sigset_t stop;
    int opt, rc, fd, family = AF_INET, sig;

    srv.family.name = "tally";
    srv.family.help = "Counters of a tally store, by key.";
    srv.family.key_label = "key";
    srv.family.labels = srv.labels;
    while ((opt = getopt_long(argc, argv, ":l:n:k:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen_spec = optarg;
            break;
        case 'n':
            srv.family.name = optarg;
            break;
        case OPT_HELP_TEXT:
            srv.family.help = optarg;
            break;
        case 'k':
            srv.family.key_label = optarg;
            break;
        case OPT_LABEL: {
            char *eq = strchr(optarg, '=');
            if (eq == NULL)
                return tool_usage_error("serve",
                                        "--label wants NAME=VALUE, not '%s'",
                                        optarg);
            if (srv.family.nlabels == SERVE_MAX_LABELS)
                return tool_usage_error("serve", "at most %d --label options",
                                        SERVE_MAX_LABELS);
            *eq = '\0';
            srv.labels[srv.family.nlabels].name = optarg;
            srv.labels[srv.family.nlabels].value = eq + 1;
            srv.family.nlabels++;
            break;
        }
        case OPT_GAUGE:
            srv.family.type = TALLY_EXPO_GAUGE;
            break;
        case 'h':
            serve_usage(stdout);
            return TOOL_OK;
        default:
            return tool_bad_option("serve", opt, argv);
        }
    }
    if (optind >= argc)
        return tool_usage_error("serve", "which store? (tally serve FILE)");
    if (optind + 1 < argc)
        return tool_usage_error("serve", "unexpected argument '%s'",
                                argv[optind + 1]);
    srv.path = argv[optind];
    if (split_listen(listen_spec, host, sizeof host, port, sizeof port) != 0)
        return tool_usage_error("serve",
                                "--listen wants ADDR:PORT, [ADDR]:PORT or "
                                "PORT, not '%s'", listen_spec);
    if ((rc = check_family(&srv.family)) != TOOL_OK)
        return rc;

    rc = tally_store_open(&srv.store, srv.path, &cfg);
    if (rc != 0) {
        /* tally_strerror names -ENOENT for keys ("no such key") */
        fprintf(stderr, "tally serve: %s: %s\n", srv.path,
                rc == -ENOENT ? strerror(ENOENT) : tally_strerror(rc));
        return TOOL_FAIL;
    }
    fd = listen_on(listen_spec, host, port, &family);
    if (fd < 0) {
        tally_store_close(srv.store);
        return TOOL_FAIL;
    }

    /* Every thread from here on (microhttpd's, the renders) inherits the
     * mask: SIGINT and SIGTERM reach only the sigwait below. A client
     * gone mid-response must be an error return (EPIPE), not a signal. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_THREAD_PER_CONNECTION |
                             (family == AF_INET6 ? MHD_USE_IPv6 : 0),
                         0, NULL, NULL, on_request, &srv,
                         MHD_OPTION_LISTEN_SOCKET, fd,
                         MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)SERVE_MAX_CONNECTIONS,
                         MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)SERVE_TIMEOUT_S, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "tally serve: cannot start the HTTP server on %s\n",
                listen_spec);
        close(fd);
        tally_store_close(srv.store);
        return TOOL_FAIL;
    }
    print_url(fd);

    do {
        rc = sigwait(&stop, &sig);
    } while (rc != 0);

    MHD_stop_daemon(d); /* joins its threads; closes the socket */
    tally_store_close(srv.store);
    return TOOL_OK;
}

#endif /* TALLY_TOOL_SERVE */
