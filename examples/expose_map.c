/*
 * expose_map.c - a program that counts into a tally_map and serves it to
 * Prometheus from its own thread, as 'tally serve' does for a store.
 *
 *   expose_map [PORT]    count forever; serve http://127.0.0.1:PORT/metrics
 *                        (default 9465) until Ctrl-C
 *   expose_map --check   count a fixed amount, scrape itself once over
 *                        HTTP and print the total it read back (40000)
 *
 * Worker threads stand in for a server's request handlers: each
 * increments a route's key. libmicrohttpd's thread answers /metrics: it
 * renders the map with tally_expo_map into memory (a program's own map
 * is small; 'tally serve' streams instead) in the format the scraper's
 * Accept header asks for, with the matching Content-Type. The render
 * reads the map with foreach, so the workers never wait for a scrape.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tally.h"

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

enum { WORKERS = 4, CHECK_ADDS = 10000 };

static const char *const routes[] = {"/", "/login", "/api/users",
                                     "/api/orders"};

static tally_map *requests;
static atomic_int stop; /* set once, on SIGINT/SIGTERM */

static const struct tally_expo_family family = {
    .name = "example_requests",
    .help = "Requests handled, by route.",
    .key_label = "route",
};

/* ---- the program's work --------------------------------------------- */

struct worker {
    pthread_t thread;
    unsigned seed;
    long adds; /* how many to do; 0: until stop */
};

static void *work(void *arg)
{
    struct worker *wk = arg;
    long i;

    for (i = 0; wk->adds == 0 ? !atomic_load_explicit(&stop, memory_order_relaxed)
                               : i < wk->adds; i++) {
        const char *route = routes[rand_r(&wk->seed) % 4];
        if (tally_map_inc(requests, route) != 0)
            break; /* out of memory creating the key */
        if (wk->adds == 0 && i % 1000 == 0) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL); /* a made-up server: ~1000 requests/s */
        }
    }
    return NULL;
}

/* ---- /metrics ----------------------------------------------------------- */

struct body {
    char *data;
    size_t len, cap;
};

static int body_sink(void *ctx, const void *data, size_t len)
{
    struct body *b = ctx;

    if (b->len + len > b->cap) {
        size_t cap = (b->len + len) * 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return -ENOMEM;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static mhd_result on_request(void *cls, struct MHD_Connection *conn,
                             const char *url, const char *method,
                             const char *version, const char *upload_data,
                             size_t *upload_data_size, void **con_cls)
{
    static int seen;
    const char *accept;
    struct MHD_Response *r;
    struct body b = {NULL, 0, 0};
    tally_expo *w;
    unsigned format;
    mhd_result ret;
    int rc;

    (void)cls;
    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) { /* headers in; reply on the next call */
        *con_cls = &seen;
        return MHD_YES;
    }
    *upload_data_size = 0;
    if (strcmp(url, "/metrics") != 0 || strcmp(method, "GET") != 0)
        return MHD_NO; /* a fuller server answers 404 / 405 */

    /* OpenMetrics when the scraper asks for it (Prometheus does). */
    accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    format = accept != NULL && strstr(accept, "application/openmetrics-text")
                 ? TALLY_EXPO_OPENMETRICS
                 : TALLY_EXPO_TEXT;
    rc = tally_expo_new(&w, format, body_sink, &b);
    if (rc == 0) {
        rc = tally_expo_map(w, &family, requests);
        if (rc == 0)
            rc = tally_expo_finish(w);
        tally_expo_free(w);
    }
    if (rc != 0) {
        fprintf(stderr, "expose_map: rendering: %s\n", tally_strerror(rc));
        free(b.data);
        return MHD_NO;
    }
    r = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(b.data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", tally_expo_content_type(format));
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- --check: scrape ourselves once ------------------------------------- */

/* GET /metrics from 127.0.0.1:port as Prometheus would; returns the sum of
 * the example_requests_total samples, or -1. */
static long long scrape_total(unsigned port)
{
    static const char req[] =
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Accept: application/openmetrics-text;version=1.0.0,"
        "text/plain;version=0.0.4;q=0.5\r\nConnection: close\r\n\r\n";
    struct sockaddr_in a = {0};
    static char resp[1 << 16];
    size_t len = 0;
    long long total = 0;
    char *line;
    ssize_t n;
    int fd;

    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
        return -1;
    while (len < sizeof resp - 1 &&
           (n = read(fd, resp + len, sizeof resp - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    resp[len] = '\0';
    if (strstr(resp, "\r\nContent-Type: " TALLY_EXPO_CONTENT_TYPE_OPENMETRICS
                     "\r\n") == NULL ||
        strstr(resp, "\n# EOF\n") == NULL)
        return -1;
    for (line = strstr(resp, "\r\n\r\n"); line != NULL;
         line = strchr(line + 1, '\n'))
        if (strncmp(line + 1, "example_requests_total{", 23) == 0)
            total += atoll(strchr(line + 1, '}') + 1);
    return total;
}

int main(int argc, char **argv)
{
    struct worker workers[WORKERS];
    int check = argc == 2 && strcmp(argv[1], "--check") == 0;
    unsigned port = check ? 0 : 9465;
    struct sockaddr_in sa = {0};
    sigset_t stop_sigs;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *info;
    int i, rc, sig;

    if (argc == 2 && !check)
        port = (unsigned)atoi(argv[1]);
    if ((rc = tally_map_new(&requests)) != 0) {
        fprintf(stderr, "expose_map: %s\n", tally_strerror(rc));
        return 1;
    }
    /* A scraper gone mid-response is an error return, not a signal; and
     * SIGINT/SIGTERM reach only the sigwait below (every thread started
     * from here on inherits the mask). */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
    /* Loopback only: a program's metrics are not for the whole network
     * unless you say so. */
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port,
                         NULL, NULL, on_request, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "expose_map: cannot listen on 127.0.0.1:%u\n", port);
        return 1;
    }
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    port = info != NULL ? info->port : port;

    for (i = 0; i < WORKERS; i++) {
        workers[i].seed = (unsigned)i + 1;
        workers[i].adds = check ? CHECK_ADDS : 0;
        pthread_create(&workers[i].thread, NULL, work, &workers[i]);
    }
    if (check) {
        for (i = 0; i < WORKERS; i++)
            pthread_join(workers[i].thread, NULL);
        printf("%lld\n", scrape_total(port)); /* WORKERS * CHECK_ADDS */
    } else {
        fprintf(stderr, "expose_map: serving http://127.0.0.1:%u/metrics "
                        "(Ctrl-C stops)\n", port);
        sigwait(&stop_sigs, &sig);
        atomic_store_explicit(&stop, 1, memory_order_relaxed);
        for (i = 0; i < WORKERS; i++)
            pthread_join(workers[i].thread, NULL);
    }
    MHD_stop_daemon(d);
    tally_map_free(requests);
    return 0;
}
