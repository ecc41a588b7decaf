/*
 * handshake -- full TLS handshakes per second against one HTTPS port.
 *
 *   handshake [-c CONNS] [-d SECONDS] [-g GROUPS] HOST PORT [PATH]
 *
 * Keeps CONNS connections in flight (default 16) for SECONDS (default 10).
 * Each one: TCP connect, a full TLS 1.2 handshake, one
 * "GET PATH HTTP/1.1" with "Connection: close" (PATH defaults to /fast),
 * read the response until the server closes, close, start the next one.
 * No session is ever resumed: every connection gets a fresh TLS context
 * and the client keeps no session cache and offers no session id or
 * ticket (a ticket the server issues is never sent back).  The certificate
 * chain is not checked (the bench certificate is self-signed), but the
 * server's ServerKeyExchange signature is verified as the protocol
 * requires, so the server does its full share of the work.
 *
 * Offered: TLS 1.2 only, ECDHE-ECDSA-AES128-GCM-SHA256 and
 * ECDHE-RSA-AES128-GCM-SHA256, groups GROUPS (default "X25519:P-256"),
 * SNI "localhost".
 *
 * Prints one line:
 *   hs_per_s=.. done=.. errors=.. hs_p50_us=.. hs_p99_us=.. conn_p50_us=..
 *   conn_p99_us=.. client_cpu=.. proto=.. cipher=.. group=.. lib=..
 * done counts connections that completed (handshake + a 200 response)
 * before the deadline; hs_per_s = done / SECONDS.  hs_* is connect start to
 * handshake done, conn_* is connect start to the server's close.
 * client_cpu is this process's CPU time / wall time: near 1.00 means the
 * client, not the server, was the limit.
 *
 * Two TLS libraries, picked at build time:
 *   cc -O2 -DHS_OPENSSL -o handshake handshake.c -lssl -lcrypto
 *   cc -O2 -DHS_MBEDTLS -o handshake handshake.c -lmbedtls -lmbedx509 \
 *       -lmbedcrypto
 * OpenSSL is preferred: its P-256/X25519 code is several times faster than
 * mbedTLS 2.28's, so the client is less likely to be the bottleneck.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HS_ERR        (-1)
#define HS_WANT_READ  (-2)
#define HS_WANT_WRITE (-3)
#define HS_EOF        (-4)

static const char *sni = "localhost";

/* ------------------------------------------------------------------ */
#if defined(HS_OPENSSL)

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef SSL tls_t;
static SSL_CTX *ctx;
static const char *lib_name = "openssl";

static int tls_global_init(const char *groups)
{
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return -1;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (!SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:"
                                      "ECDHE-RSA-AES128-GCM-SHA256"))
        return -1;
    if (!SSL_CTX_set1_groups_list(ctx, groups)) {
        fprintf(stderr, "handshake: bad groups '%s'\n", groups);
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return 0;
}

static tls_t *tls_new(int fd)
{
    SSL *s = SSL_new(ctx);
    if (s == NULL)
        return NULL;
    SSL_set_fd(s, fd);
    SSL_set_tlsext_host_name(s, sni);
    SSL_set_connect_state(s);
    return s;
}

static int tls_map(SSL *s, int r)
{
    switch (SSL_get_error(s, r)) {
    case SSL_ERROR_WANT_READ:
        return HS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return HS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return HS_EOF;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return (r == 0 || errno == 0 || errno == ECONNRESET) ? HS_EOF : HS_ERR;
    default:
        ERR_clear_error();
        return HS_ERR;
    }
}

static int tls_handshake(tls_t *s)
{
    int r = SSL_do_handshake(s);
    return r == 1 ? 0 : tls_map(s, r);
}

static int tls_write(tls_t *s, const char *b, size_t n)
{
    int r = SSL_write(s, b, (int)n);
    return r > 0 ? r : tls_map(s, r);
}

static int tls_read(tls_t *s, char *b, size_t n)
{
    int r = SSL_read(s, b, (int)n);
    return r > 0 ? r : tls_map(s, r);
}

static void tls_free(tls_t *s)
{
    SSL_free(s);
}

static void tls_info(tls_t *s, char *out, size_t len)
{
    EVP_PKEY *pk = NULL;
    char      group[64] = "?";
    size_t    gl = 0;

    if (SSL_get_peer_tmp_key(s, &pk) && pk != NULL) {
        if (!EVP_PKEY_get_group_name(pk, group, sizeof(group), &gl))
            snprintf(group, sizeof(group), "%s", EVP_PKEY_get0_type_name(pk));
        EVP_PKEY_free(pk);
    }
    snprintf(out, len, "proto=%s cipher=%s group=%s", SSL_get_version(s),
             SSL_get_cipher_name(s), group);
}

/* ------------------------------------------------------------------ */
#elif defined(HS_MBEDTLS)

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

typedef struct {
    mbedtls_ssl_context ssl;
    int                 fd;
} tls_t;

static mbedtls_entropy_context  entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_ssl_config       conf;
static const char *lib_name = "mbedtls";
static const char *groups_offered;
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    0
};
static mbedtls_ecp_group_id curves[8];

static int tls_global_init(const char *groups)
{
    char  buf[128], *tok, *save = NULL;
    int   n = 0;

    snprintf(buf, sizeof(buf), "%s", groups);
    for (tok = strtok_r(buf, ":", &save); tok && n < 7;
         tok = strtok_r(NULL, ":", &save)) {
        if (strcasecmp(tok, "X25519") == 0)
            curves[n++] = MBEDTLS_ECP_DP_CURVE25519;
        else if (strcasecmp(tok, "P-256") == 0 ||
                 strcasecmp(tok, "prime256v1") == 0)
            curves[n++] = MBEDTLS_ECP_DP_SECP256R1;
        else if (strcasecmp(tok, "P-384") == 0)
            curves[n++] = MBEDTLS_ECP_DP_SECP384R1;
        else {
            fprintf(stderr, "handshake: unknown group '%s'\n", tok);
            return -1;
        }
    }
    curves[n] = MBEDTLS_ECP_DP_NONE;
    groups_offered = groups;

    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                              (const unsigned char *)"hs", 2) != 0)
        return -1;
    mbedtls_ssl_config_init(&conf);
    if (mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT,
                                    MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        return -1;
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&conf, suites);
    mbedtls_ssl_conf_curves(&conf, curves);
    return 0;
}

static int bio_send(void *p, const unsigned char *b, size_t n)
{
    ssize_t r = send(((tls_t *)p)->fd, b, n, MSG_NOSIGNAL);
    if (r >= 0)
        return (int)r;
    if (errno == EAGAIN || errno == EINTR)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *p, unsigned char *b, size_t n)
{
    ssize_t r = recv(((tls_t *)p)->fd, b, n, 0);
    if (r >= 0)
        return (int)r;
    if (errno == EAGAIN || errno == EINTR)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (errno == ECONNRESET)
        return MBEDTLS_ERR_NET_CONN_RESET;
    return MBEDTLS_ERR_NET_RECV_FAILED;
}

static tls_t *tls_new(int fd)
{
    tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->fd = fd;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &conf) != 0 ||
        mbedtls_ssl_set_hostname(&t->ssl, sni) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return t;
}

static int tls_map(int r)
{
    switch (r) {
    case MBEDTLS_ERR_SSL_WANT_READ:
        return HS_WANT_READ;
    case MBEDTLS_ERR_SSL_WANT_WRITE:
        return HS_WANT_WRITE;
    case 0:
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
    case MBEDTLS_ERR_SSL_CONN_EOF:
    case MBEDTLS_ERR_NET_CONN_RESET:
        return HS_EOF;
    default:
        return HS_ERR;
    }
}

static int tls_handshake(tls_t *t)
{
    int r = mbedtls_ssl_handshake(&t->ssl);
    return r == 0 ? 0 : (tls_map(r) == HS_EOF ? HS_ERR : tls_map(r));
}

static int tls_write(tls_t *t, const char *b, size_t n)
{
    int r = mbedtls_ssl_write(&t->ssl, (const unsigned char *)b, n);
    return r > 0 ? r : tls_map(r);
}

static int tls_read(tls_t *t, char *b, size_t n)
{
    int r = mbedtls_ssl_read(&t->ssl, (unsigned char *)b, n);
    return r > 0 ? r : tls_map(r);
}

static void tls_free(tls_t *t)
{
    mbedtls_ssl_free(&t->ssl);
    free(t);
}

static void tls_info(tls_t *t, char *out, size_t len)
{
    /* 2.28 does not expose the negotiated group after the handshake */
    snprintf(out, len, "proto=%s cipher=%s group=one-of:%s",
             mbedtls_ssl_get_version(&t->ssl),
             mbedtls_ssl_get_ciphersuite(&t->ssl), groups_offered);
}

#else
#error "build with -DHS_OPENSSL or -DHS_MBEDTLS"
#endif

/* ------------------------------------------------------------------ */

enum { S_CONNECT, S_HANDSHAKE, S_WRITE, S_READ };

typedef struct {
    int    fd;
    int    state;
    tls_t *tls;
    double t0, t_hs;
    size_t wpos;
    size_t got;
    char   head[512]; /* first bytes of the response: status line */
} conn_t;

typedef struct {
    double *v;
    size_t  n, cap;
} samples_t;

static struct sockaddr_in addr;
static char      request[512];
static size_t    request_len;
static int       ep;
static double    deadline;
static long      done, errors, err_connect, err_hs, err_io, err_status,
                 err_timeout;
static samples_t hs_lat, conn_lat;
static char      info[256];
static char      first_error[256];

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void sample(samples_t *s, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof(double));
        if (s->v == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    s->v[s->n++] = v;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(samples_t *s, double p)
{
    size_t i;
    if (s->n == 0)
        return 0;
    i = (size_t)(p / 100.0 * (double)s->n);
    return s->v[i >= s->n ? s->n - 1 : i];
}

static void fail(conn_t *c, long *kind, const char *what)
{
    (void)c;
    errors++;
    (*kind)++;
    if (first_error[0] == '\0')
        snprintf(first_error, sizeof(first_error), "%s (errno %d: %s)", what,
                 errno, strerror(errno));
}

static void conn_close(conn_t *c)
{
    if (c->tls != NULL)
        tls_free(c->tls);
    c->tls = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static void conn_start(conn_t *c);

static void interest(conn_t *c, int op, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &e);
}

/* Run the connection as far as it goes; returns when it waits or ends. */
static void drive(conn_t *c)
{
    int  r;
    char buf[16384];

    for (;;) {
        switch (c->state) {
        case S_CONNECT: {
            int       err = 0;
            socklen_t l = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err != 0) {
                errno = err;
                fail(c, &err_connect, "connect");
                goto next;
            }
            c->tls = tls_new(c->fd);
            if (c->tls == NULL) {
                fail(c, &err_hs, "tls_new");
                goto next;
            }
            c->state = S_HANDSHAKE;
            break;
        }
        case S_HANDSHAKE:
            r = tls_handshake(c->tls);
            if (r == HS_WANT_READ) {
                interest(c, EPOLL_CTL_MOD, EPOLLIN);
                return;
            }
            if (r == HS_WANT_WRITE) {
                interest(c, EPOLL_CTL_MOD, EPOLLOUT);
                return;
            }
            if (r != 0) {
                fail(c, &err_hs, "handshake");
                goto next;
            }
            c->t_hs = now_us();
            if (info[0] == '\0')
                tls_info(c->tls, info, sizeof(info));
            c->state = S_WRITE;
            break;
        case S_WRITE:
            r = tls_write(c->tls, request + c->wpos, request_len - c->wpos);
            if (r == HS_WANT_READ) {
                interest(c, EPOLL_CTL_MOD, EPOLLIN);
                return;
            }
            if (r == HS_WANT_WRITE) {
                interest(c, EPOLL_CTL_MOD, EPOLLOUT);
                return;
            }
            if (r < 0) {
                fail(c, &err_io, "write");
                goto next;
            }
            c->wpos += (size_t)r;
            if (c->wpos == request_len)
                c->state = S_READ;
            break;
        case S_READ:
            r = tls_read(c->tls, buf, sizeof(buf));
            if (r == HS_WANT_READ) {
                interest(c, EPOLL_CTL_MOD, EPOLLIN);
                return;
            }
            if (r == HS_WANT_WRITE) {
                interest(c, EPOLL_CTL_MOD, EPOLLOUT);
                return;
            }
            if (r > 0) {
                if (c->got < sizeof(c->head) - 1) {
                    size_t k = sizeof(c->head) - 1 - c->got;
                    if (k > (size_t)r)
                        k = (size_t)r;
                    memcpy(c->head + c->got, buf, k);
                    c->head[c->got + k] = '\0';
                }
                c->got += (size_t)r;
                break;
            }
            if (r == HS_EOF && c->got > 0) {
                double t = now_us();
                if (strncmp(c->head, "HTTP/1.1 200", 12) != 0) {
                    errno = 0;
                    fail(c, &err_status, "status is not 200");
                } else if (t <= deadline) {
                    done++;
                    sample(&hs_lat, c->t_hs - c->t0);
                    sample(&conn_lat, t - c->t0);
                }
                goto next;
            }
            fail(c, &err_io, r == HS_EOF ? "closed before a response"
                                         : "read");
            goto next;
        }
    }
next:
    conn_close(c);
    if (now_us() < deadline)
        conn_start(c);
}

static void conn_start(conn_t *c)
{
    int one = 1;

    c->state = S_CONNECT;
    c->wpos = 0;
    c->got = 0;
    c->head[0] = '\0';
    c->t0 = now_us();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("socket");
        exit(1);
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 &&
        errno != EINPROGRESS) {
        fail(c, &err_connect, "connect");
        close(c->fd);
        c->fd = -1;
        /* do not spin on a dead port: the main loop restarts idle slots */
        return;
    }
    interest(c, EPOLL_CTL_ADD, EPOLLOUT);
}

int main(int argc, char **argv)
{
    int                 conns = 16, opt, i;
    double              secs = 10, start, end;
    const char         *groups = "X25519:P-256", *path = "/fast";
    conn_t             *cs;
    struct epoll_event  evs[256];
    struct rusage       ru;
    double              cpu;

    while ((opt = getopt(argc, argv, "c:d:g:")) != -1) {
        switch (opt) {
        case 'c':
            conns = atoi(optarg);
            break;
        case 'd':
            secs = atof(optarg);
            break;
        case 'g':
            groups = optarg;
            break;
        default:
            goto usage;
        }
    }
    if (argc - optind < 2 || argc - optind > 3 || conns < 1 || secs <= 0)
        goto usage;
    if (argc - optind == 3)
        path = argv[optind + 2];
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &addr.sin_addr) != 1) {
        fprintf(stderr, "handshake: bad address %s\n", argv[optind]);
        return 2;
    }
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "GET %s HTTP/1.1\r\nHost: %s\r\n"
                                   "Connection: close\r\n\r\n", path, sni);
    if (tls_global_init(groups) != 0) {
        fprintf(stderr, "handshake: TLS setup failed\n");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    cs = calloc((size_t)conns, sizeof(*cs));
    if (ep < 0 || cs == NULL) {
        perror("handshake");
        return 1;
    }

    start = now_us();
    deadline = start + secs * 1e6;
    for (i = 0; i < conns; i++) {
        cs[i].fd = -1;
        conn_start(&cs[i]);
    }
    for (;;) {
        double now = now_us();
        int    n, left = 0;

        if (now >= deadline)
            break;
        n = epoll_wait(ep, evs, 256, 100);
        for (i = 0; i < n; i++)
            drive(evs[i].data.ptr);
        now = now_us();
        for (i = 0; i < conns; i++) {
            if (cs[i].fd < 0) {
                if (now < deadline - 100e3)
                    conn_start(&cs[i]); /* connect() failed: retry */
                continue;
            }
            left++;
            if (now - cs[i].t0 > 10e6) {
                errno = ETIMEDOUT;
                fail(&cs[i], &err_timeout, "no answer in 10 s");
                conn_close(&cs[i]);
                conn_start(&cs[i]);
            }
        }
        (void)left;
        if (errors > 1000 && done == 0) {
            fprintf(stderr, "handshake: giving up: %s\n", first_error);
            break;
        }
    }
    end = now_us();
    for (i = 0; i < conns; i++)
        conn_close(&cs[i]);

    getrusage(RUSAGE_SELF, &ru);
    cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
          ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    qsort(hs_lat.v, hs_lat.n, sizeof(double), cmp);
    qsort(conn_lat.v, conn_lat.n, sizeof(double), cmp);
    if (first_error[0] != '\0')
        fprintf(stderr,
                "handshake: first error: %s (connect %ld, handshake %ld, "
                "io %ld, status %ld, timeout %ld)\n", first_error,
                err_connect, err_hs, err_io, err_status, err_timeout);
    printf("hs_per_s=%.0f done=%ld errors=%ld hs_p50_us=%.0f hs_p99_us=%.0f "
           "conn_p50_us=%.0f conn_p99_us=%.0f client_cpu=%.2f %s lib=%s\n",
           (double)done / secs, done, errors, pct(&hs_lat, 50),
           pct(&hs_lat, 99), pct(&conn_lat, 50), pct(&conn_lat, 99),
           cpu / ((end - start) / 1e6), info[0] ? info : "proto=- cipher=-",
           lib_name);
    return done > 0 ? 0 : 1;

usage:
    fprintf(stderr,
            "usage: %s [-c CONNS] [-d SECONDS] [-g GROUPS] HOST PORT [PATH]\n",
            argv[0]);
    return 2;
}
