/*
 * mg_tls.c -- TLS connections: the process's random generator, the BIO on
 * the non-blocking fd, the handshake driver, record I/O, errors and logs.
 *
 * A connection is one malloc'd mg_tls_conn_t whose first member is the
 * mbedTLS context, so callbacks that only get the context (SNI, verify)
 * find the connection without a lookup.  mbedtls_ssl_setup() adds the two
 * record buffers (~16.7 KB each in Debian's build); mbedtls_ssl_free()
 * returns them, so mg_tls_conn_free() as soon as the socket closes.
 *
 * The handshake is driven step by step (mbedtls_ssl_handshake_step) rather
 * than through mbedtls_ssl_handshake(), only to catch whether the session
 * was resumed: mbedTLS frees that state before the handshake call returns.
 *
 * Writes follow mbedTLS's rule that after WANT_WRITE the same record must
 * be offered again: we remember the plaintext length of the record mbedTLS
 * holds (wpending) and offer exactly that length first on the next call.
 * Rejected: counting that record as written at once (like a kernel socket
 * buffer) -- then a caller that has nothing more to send would have to
 * know about and call a separate flush, and "written" would no longer mean
 * "handed to the kernel".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl_internal.h>

#include "../base/mg_log.h"
#include "mg_tls_int.h"

const char mg_tls_err_plain_http[] = "plain HTTP request sent to HTTPS port";
const char mg_tls_err_closed[] = "handshake failed: peer closed connection";
const char mg_tls_err_reset[] = "connection reset by peer";
static const char mg_tls_err_nomem[] = "out of memory";

/*
 * Server preference order: AES-128-GCM first (AES-NI makes it the
 * cheapest), ChaCha20-Poly1305 for CPUs without it, AES-256-GCM last.
 * ECDHE only: forward secrecy, and no finite-field DHE (slow and often
 * misconfigured).
 */
const int mg_tls_ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0
};

/* X25519 first.  (P-256 first was tried: bench/run measured 311 full
 * handshakes per CPU-second against 366 with X25519 first.) */
const mbedtls_ecp_group_id mg_tls_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1,
    MBEDTLS_ECP_DP_NONE
};

const char *mg_tls_alpn[] = { "http/1.1", NULL };

/* ------------------------------------------------------------------ */
/* Random generator                                                    */

static mbedtls_entropy_context  mg_tls_entropy;
static mbedtls_ctr_drbg_context mg_tls_drbg;
static pid_t                    mg_tls_rng_pid;    /* 0: not seeded */

int
mg_tls_rng_init(char *err, size_t errlen)
{
    static const unsigned char pers[] = "moongate tls";
    int ret;

    if (mg_tls_rng_pid != 0) {
        return MG_OK;
    }
    mbedtls_entropy_init(&mg_tls_entropy);
    mbedtls_ctr_drbg_init(&mg_tls_drbg);
    ret = mbedtls_ctr_drbg_seed(&mg_tls_drbg, mbedtls_entropy_func,
                                &mg_tls_entropy, pers, sizeof(pers) - 1);
    if (ret != 0) {
        char buf[128];
        if (err != NULL) {
            snprintf(err, errlen, "tls: cannot seed the random generator: %s",
                     mg_tls_strerror(ret, buf, sizeof(buf)));
        }
        mbedtls_ctr_drbg_free(&mg_tls_drbg);
        mbedtls_entropy_free(&mg_tls_entropy);
        return MG_ERROR;
    }
    mg_tls_rng_pid = getpid();
    return MG_OK;
}

void
mg_tls_after_fork(void)
{
    struct {
        pid_t            pid;
        struct timespec  ts;
    } add;
    int ret;

    if (mg_tls_rng_pid == 0) {
        return;                 /* seeded fresh on first use */
    }
    memset(&add, 0, sizeof(add));
    add.pid = getpid();
    clock_gettime(CLOCK_MONOTONIC, &add.ts);
    ret = mbedtls_ctr_drbg_reseed(&mg_tls_drbg, (const unsigned char *) &add,
                                  sizeof(add));
    if (ret != 0) {
        /* No fresh entropy: start over rather than share the parent's
         * stream.  Seeding failing too leaves rng_pid 0, so every TLS
         * handshake fails instead of running on a predictable stream. */
        mbedtls_ctr_drbg_free(&mg_tls_drbg);
        mbedtls_entropy_free(&mg_tls_entropy);
        mg_tls_rng_pid = 0;
        if (mg_tls_rng_init(NULL, 0) != MG_OK) {
            mg_log_crit("tls: cannot reseed the random generator after fork");
        }
        return;
    }
    mg_tls_rng_pid = add.pid;
}

/* The f_rng given to mbedTLS.  getpid() costs a syscall per call, a few
 * per handshake: cheap insurance against workers sharing ECDHE keys. */
int
mg_tls_rng(void *p, unsigned char *out, size_t len)
{
    (void) p;
    if (mg_likely(mg_tls_rng_pid == getpid())) {
        return mbedtls_ctr_drbg_random(&mg_tls_drbg, out, len);
    }
    if (mg_tls_rng_pid != 0) {
        mg_tls_after_fork();
    } else {
        (void) mg_tls_rng_init(NULL, 0);
    }
    if (mg_tls_rng_pid == 0) {
        return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
    }
    return mbedtls_ctr_drbg_random(&mg_tls_drbg, out, len);
}

const char *
mg_tls_strerror(int ret, char *buf, size_t len)
{
    mbedtls_strerror(ret, buf, len);
    return buf;
}

/* ------------------------------------------------------------------ */
/* BIO: plain send/recv on the non-blocking fd                         */

static int
mg_tls_bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    mg_tls_conn_t *t = ctx;
    ssize_t        n;

    for (;;) {
        n = send(t->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            return (int) n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return MBEDTLS_ERR_SSL_WANT_WRITE;
        }
        t->sys_errno = errno;
        if (errno == ECONNRESET || errno == EPIPE) {
            return MBEDTLS_ERR_NET_CONN_RESET;
        }
        return MBEDTLS_ERR_NET_SEND_FAILED;
    }
}

static int
mg_tls_bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    mg_tls_conn_t *t = ctx;
    ssize_t        n;
    int            ahead;

    if (t->ra_pos < t->ra_len) {
        n = (ssize_t) mg_min(len, (size_t) (t->ra_len - t->ra_pos));
        memcpy(buf, t->ra + t->ra_pos, (size_t) n);
        t->ra_pos += (uint16_t) n;
        return (int) n;
    }
    /* small asks (a header, a small record) read ahead into t->ra */
    ahead = len < sizeof(t->ra);
    for (;;) {
        n = recv(t->fd, ahead ? t->ra : buf, ahead ? sizeof(t->ra) : len, 0);
        if (n > 0 && ahead) {
            t->ra_len = (uint16_t) n;
            t->ra_pos = (uint16_t) mg_min(len, (size_t) n);
            memcpy(buf, t->ra, t->ra_pos);
            if (!t->rx_started) {
                t->rx_started = 1;
                if (t->server != NULL && buf[0] >= 'A' && buf[0] <= 'Z') {
                    t->plain_http = 1;
                    return MBEDTLS_ERR_NET_RECV_FAILED;
                }
            }
            return (int) t->ra_pos;
        }
        if (n > 0) {
            /* A TLS record starts with a content type (20..23) or, for
             * an SSLv2-style hello, a byte with the high bit set; an
             * upper-case letter is an HTTP method on the wrong port. */
            if (!t->rx_started) {
                t->rx_started = 1;
                if (t->server != NULL && buf[0] >= 'A' && buf[0] <= 'Z') {
                    t->plain_http = 1;
                    return MBEDTLS_ERR_NET_RECV_FAILED;
                }
            }
            return (int) n;
        }
        if (n == 0) {
            return 0;           /* mbedTLS maps it to CONN_EOF */
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return MBEDTLS_ERR_SSL_WANT_READ;
        }
        t->sys_errno = errno;
        if (errno == ECONNRESET) {
            return MBEDTLS_ERR_NET_CONN_RESET;
        }
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

static mg_tls_conn_t *
mg_tls_conn_new(const mbedtls_ssl_config *conf, int fd)
{
    mg_tls_conn_t *t;

    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, conf) != 0) {
        mbedtls_ssl_free(&t->ssl);
        free(t);
        return NULL;
    }
    t->fd = fd;
    t->depth = -1;
    mbedtls_ssl_set_bio(&t->ssl, t, mg_tls_bio_send, mg_tls_bio_recv, NULL);
    return t;
}

mg_tls_conn_t *
mg_tls_conn_server(mg_tls_server_t *s, int fd)
{
    mg_tls_conn_t *t;

    t = mg_tls_conn_new(&s->conf, fd);
    if (t != NULL) {
        t->server = s;
        s->refs++;
    }
    return t;
}

/* "1.2.3.4" or "::1" / "[::1]" into out; the length, 0 if not an IP. */
static uint8_t
mg_tls_parse_ip(const char *host, unsigned char *out)
{
    char   buf[INET6_ADDRSTRLEN + 2];
    size_t len = strlen(host);

    if (inet_pton(AF_INET, host, out) == 1) {
        return 4;
    }
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']'
        && len - 2 < sizeof(buf))
    {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET6, host, out) == 1) {
        return 16;
    }
    return 0;
}

mg_tls_conn_t *
mg_tls_conn_client(mg_tls_client_t *c, int fd, const char *sni_host)
{
    mg_tls_conn_t *t;
    size_t         len;

    t = mg_tls_conn_new(&c->conf, fd);
    if (t == NULL) {
        return NULL;
    }
    t->client = c;
    t->depth = c->depth;
    if (sni_host != NULL && *sni_host != '\0') {
        len = strlen(sni_host);
        t->iplen = mg_tls_parse_ip(sni_host, t->ip);
        if (t->iplen == 0 && mbedtls_ssl_set_hostname(&t->ssl, sni_host) != 0)
        {
            mg_tls_conn_free(t);
            return NULL;
        }
        if (len < sizeof(t->sni)) {
            memcpy(t->sni, sni_host, len + 1);
            t->sni_len = (uint8_t) len;
            t->offered_session = mg_tls_client_session_restore(c, t);
        }
    }
    if (c->verify) {
        mbedtls_ssl_set_verify(&t->ssl, mg_tls_client_verify, t);
    }
    return t;
}

void
mg_tls_conn_free(mg_tls_conn_t *t)
{
    if (t != NULL) {
        mbedtls_ssl_free(&t->ssl);
        if (t->server) {
            mg_tls_server_free(t->server);     /* drops the connection's ref */
        }
        free(t);
    }
}

void
mg_tls_conn_set_id(mg_tls_conn_t *t, uint64_t id)
{
    t->id = id;
}

int
mg_tls_want_write(const mg_tls_conn_t *t)
{
    return t->want_write;
}

const char *
mg_tls_error(const mg_tls_conn_t *t)
{
    return t->err;
}

mg_str_t
mg_tls_sni(const mg_tls_conn_t *t)
{
    mg_str_t s = { t->sni, t->sni_len };
    return s;
}

int
mg_tls_resumed(const mg_tls_conn_t *t)
{
    return t->resumed;
}

const char *
mg_tls_protocol(const mg_tls_conn_t *t)
{
    return t->done ? mbedtls_ssl_get_version(&t->ssl) : NULL;
}

/* OpenSSL's names, which is what ngx.var.ssl_cipher shows in Kong. */
const char *
mg_tls_cipher(const mg_tls_conn_t *t)
{
    static const struct {
        int         id;
        const char *name;
    } names[] = {
        { MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
          "ECDHE-ECDSA-AES128-GCM-SHA256" },
        { MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
          "ECDHE-RSA-AES128-GCM-SHA256" },
        { MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
          "ECDHE-ECDSA-CHACHA20-POLY1305" },
        { MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
          "ECDHE-RSA-CHACHA20-POLY1305" },
        { MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
          "ECDHE-ECDSA-AES256-GCM-SHA384" },
        { MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
          "ECDHE-RSA-AES256-GCM-SHA384" },
    };
    size_t i;

    if (!t->done || t->ssl.session == NULL) {
        return NULL;
    }
    for (i = 0; i < mg_nelems(names); i++) {
        if (names[i].id == t->ssl.session->ciphersuite) {
            return names[i].name;
        }
    }
    return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

int
mg_tls_pending(const mg_tls_conn_t *t)
{
    size_t n = mbedtls_ssl_get_bytes_avail(&t->ssl);

    if (n > 0) {
        return n > INT_MAX ? INT_MAX : (int) n;
    }
    /* bytes read ahead by the BIO: no socket event will announce them */
    if (t->ra_pos < t->ra_len) {
        return t->ra_len - t->ra_pos;
    }
    return mbedtls_ssl_check_pending(&t->ssl) ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Errors and the handshake                                            */

static const char *
mg_tls_alert_name(unsigned char a)
{
    switch (a) {
    case 0:   return "close_notify";
    case 10:  return "unexpected_message";
    case 20:  return "bad_record_mac";
    case 22:  return "record_overflow";
    case 40:  return "handshake_failure";
    case 42:  return "bad_certificate";
    case 43:  return "unsupported_certificate";
    case 44:  return "certificate_revoked";
    case 45:  return "certificate_expired";
    case 46:  return "certificate_unknown";
    case 47:  return "illegal_parameter";
    case 48:  return "unknown_ca";
    case 49:  return "access_denied";
    case 50:  return "decode_error";
    case 51:  return "decrypt_error";
    case 70:  return "protocol_version";
    case 71:  return "insufficient_security";
    case 80:  return "internal_error";
    case 86:  return "inappropriate_fallback";
    case 90:  return "user_canceled";
    case 100: return "no_renegotiation";
    case 109: return "missing_extension";
    case 110: return "unsupported_extension";
    case 112: return "unrecognized_name";
    case 116: return "certificate_required";
    case 120: return "no_application_protocol";
    default:  return "unknown";
    }
}

/* Verify flags as one line: "text; text". */
static void
mg_tls_verify_text(mg_tls_conn_t *t, const char *prefix)
{
    char     info[512], *p;
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    size_t   n;
    int      r;

    if (t->depth_exceeded) {
        snprintf(t->errbuf, sizeof(t->errbuf),
                 "%s: certificate chain longer than tls_verify_depth %d",
                 prefix, t->depth);
        return;
    }
    r = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
    n = r > 0 ? (size_t) r : 0;
    while (n > 0 && info[n - 1] == '\n') {
        info[--n] = '\0';
    }
    if (n == 0) {
        snprintf(info, sizeof(info), "flags 0x%x", (unsigned) flags);
    }
    for (p = info; *p != '\0'; p++) {
        if (*p == '\n') {
            *p = ';';
        }
    }
    snprintf(t->errbuf, sizeof(t->errbuf), "%s: %.200s", prefix, info);
}

/* Record why ret failed in t->err, the I/O kind in t->sys_errno. */
static void
mg_tls_set_error(mg_tls_conn_t *t, int ret, int in_handshake)
{
    char        buf[128];
    const char *what = in_handshake ? "handshake failed" : "tls error";

    t->fatal = 1;
    if (t->plain_http) {
        t->err = mg_tls_err_plain_http;
        return;
    }
    switch (ret) {
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
        mg_tls_verify_text(t, "certificate verify failed");
        break;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        snprintf(t->errbuf, sizeof(t->errbuf), "%s: peer sent alert: %s",
                 what, t->ssl.in_msg != NULL
                           ? mg_tls_alert_name(t->ssl.in_msg[1]) : "?");
        break;
    case MBEDTLS_ERR_SSL_CONN_EOF:
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        if (in_handshake) {
            t->err = mg_tls_err_closed;
            return;
        }
        snprintf(t->errbuf, sizeof(t->errbuf), "%s: peer closed", what);
        break;
    case MBEDTLS_ERR_NET_CONN_RESET:
        t->sys_errno = ECONNRESET;
        t->err = mg_tls_err_reset;
        return;
    case MBEDTLS_ERR_NET_SEND_FAILED:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        snprintf(t->errbuf, sizeof(t->errbuf), "%s: %s", what,
                 strerror(t->sys_errno ? t->sys_errno : EIO));
        break;
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
        t->err = mg_tls_err_nomem;
        return;
    default:
        snprintf(t->errbuf, sizeof(t->errbuf), "%s: %s", what,
                 mg_tls_strerror(ret, buf, sizeof(buf)));
        break;
    }
    t->err = t->errbuf;
}

static void
mg_tls_log_failure(mg_tls_conn_t *t)
{
    struct sockaddr_storage ss;
    socklen_t               sl = sizeof(ss);
    char                    addr[INET6_ADDRSTRLEN + 8] = "-";
    char                    id[24] = "";
    char                    ip[INET6_ADDRSTRLEN];

    if (getpeername(t->fd, (struct sockaddr *) &ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;
            inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
            snprintf(addr, sizeof(addr), "%s:%u", ip, ntohs(s4->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
            snprintf(addr, sizeof(addr), "[%s]:%u", ip, ntohs(s6->sin6_port));
        } else if (ss.ss_family == AF_UNIX) {
            snprintf(addr, sizeof(addr), "unix");
        }
    }
    if (t->id != 0) {
        snprintf(id, sizeof(id), "*%llu ", (unsigned long long) t->id);
    }
    /* A client's failure is the client's business (info, as nginx); an
     * upstream's is the operator's (error: a certificate or trust setup
     * to fix). */
    if (t->server != NULL) {
        mg_log_info("tls: %sclient %s sni \"%.*s\": %s", id, addr,
                    (int) t->sni_len, t->sni, t->err);
    } else {
        mg_log_error("tls: %supstream %s host \"%.*s\" service %s: %s", id,
                     addr, (int) t->sni_len, t->sni,
                     t->client != NULL ? t->client->name : "-", t->err);
    }
}

void
mg_tls_conn_want_hello(mg_tls_conn_t *t)
{
    if (t->server != NULL) {
        t->want_hello = 1;
    }
}

void
mg_tls_conn_refuse(mg_tls_conn_t *t)
{
    (void) mbedtls_ssl_send_alert_message(&t->ssl,
                                          MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                          MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
    t->fatal = 1;
}

int
mg_tls_handshake(mg_tls_conn_t *t)
{
    int ret;

    if (t->done) {
        return MG_OK;
    }
    if (t->fatal) {
        return MG_ERROR;
    }
    while (t->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
        /* Not sticky: a client offering a session starts with resume
         * set and clears it when the server declines. */
        if (t->ssl.handshake != NULL) {
            t->resumed = t->ssl.handshake->resume != 0;
        }
        /* the ClientHello was read (a ticket decided resumption, the SNI
         * callback ran); the ServerHello and certificate are next */
        if (t->want_hello && t->ssl.state == MBEDTLS_SSL_SERVER_HELLO) {
            t->want_hello = 0;
            if (!t->resumed) {
                return MG_TLS_HELLO;
            }
        }
        ret = mbedtls_ssl_handshake_step(&t->ssl);
        if (ret == 0) {
            continue;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_READ) {
            t->want_write = 0;
            return MG_AGAIN;
        }
        if (ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
            t->want_write = 1;
            return MG_AGAIN;
        }
        mg_tls_set_error(t, ret, 1);
        mg_tls_log_failure(t);
        if (t->client != NULL && t->offered_session) {
            mg_tls_client_session_drop(t->client, t);
        }
        return MG_ERROR;
    }
    t->done = 1;
    t->want_write = 0;
    if (t->client != NULL && !t->resumed && t->sni_len > 0) {
        mg_tls_client_session_save(t->client, t);
    }
    mg_log_debug("tls: %s%llu handshake done: %s %s%s sni \"%.*s\"",
                 t->id ? "*" : "fd ",
                 (unsigned long long) (t->id ? t->id : (uint64_t) t->fd),
                 mg_tls_protocol(t), mg_tls_cipher(t),
                 t->resumed ? " resumed" : "", (int) t->sni_len, t->sni);
    return MG_OK;
}

/* ------------------------------------------------------------------ */
/* Record I/O                                                          */

static ssize_t
mg_tls_io_error(mg_tls_conn_t *t)
{
    errno = t->sys_errno == ECONNRESET ? ECONNRESET : EIO;
    return -1;
}

ssize_t
mg_tls_recv(mg_tls_conn_t *t, char *buf, size_t n)
{
    int ret;

    if (t->fatal) {
        return mg_tls_io_error(t);
    }
    if (n > INT_MAX) {
        n = INT_MAX;
    }
    ret = mbedtls_ssl_read(&t->ssl, (unsigned char *) buf, n);
    if (ret >= 0) {
        return ret;
    }
    switch (ret) {
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
    case MBEDTLS_ERR_SSL_CONN_EOF:
        return 0;
    case MBEDTLS_ERR_SSL_WANT_READ:
        t->want_write = 0;
        errno = EAGAIN;
        return -1;
    case MBEDTLS_ERR_SSL_WANT_WRITE:
        t->want_write = 1;
        errno = EAGAIN;
        return -1;
    default:
        mg_tls_set_error(t, ret, !t->done);
        if (!t->done) {
            mg_tls_log_failure(t);
        }
        return mg_tls_io_error(t);
    }
}

/*
 * Coalescing buffer: one record's worth of plaintext.  Workers are single
 * threaded and the buffer only lives across one mbedtls_ssl_write() call.
 */
static unsigned char mg_tls_wbuf[MBEDTLS_SSL_OUT_CONTENT_LEN];

ssize_t
mg_tls_writev(mg_tls_conn_t *t, const struct iovec *iov, int iovcnt)
{
    const unsigned char *p;
    size_t               avail = 0, total = 0, off = 0, len, first, maxrec;
    int                  i, ret;

    if (t->fatal) {
        return mg_tls_io_error(t);
    }
    for (i = 0; i < iovcnt; i++) {
        avail += iov[i].iov_len;
    }
    if (avail == 0) {
        return 0;
    }
    if (t->wpending > avail) {
        errno = EINVAL;         /* the caller dropped data mbedTLS holds */
        return -1;
    }
    ret = mbedtls_ssl_get_max_out_record_payload(&t->ssl);
    maxrec = sizeof(mg_tls_wbuf);
    if (ret > 0 && (size_t) ret < maxrec) {
        maxrec = (size_t) ret;
    }

    i = 0;
    while (total < avail) {
        while (off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        p = (const unsigned char *) iov[i].iov_base + off;
        first = iov[i].iov_len - off;

        if (t->wpending > 0) {
            /* mbedTLS flushes the record it holds and returns its
             * length; it does not read p. */
            len = t->wpending;
        } else if (first >= maxrec) {
            len = maxrec;
        } else if (first == avail - total) {
            len = first;
        } else {
            /* Gather this entry and the next ones into one record. */
            size_t got = 0, o = off;
            int    j = i;

            len = mg_min(maxrec, avail - total);
            while (got < len) {
                size_t k = mg_min(len - got, iov[j].iov_len - o);
                memcpy(mg_tls_wbuf + got,
                       (const unsigned char *) iov[j].iov_base + o, k);
                got += k;
                j++;
                o = 0;
            }
            p = mg_tls_wbuf;
        }

        ret = mbedtls_ssl_write(&t->ssl, p, len);
        if (ret < 0) {
            if (ret == MBEDTLS_ERR_SSL_WANT_WRITE
                || ret == MBEDTLS_ERR_SSL_WANT_READ)
            {
                t->wpending = len;
                t->want_write = ret == MBEDTLS_ERR_SSL_WANT_WRITE;
                if (total > 0) {
                    return (ssize_t) total;
                }
                errno = EAGAIN;
                return -1;
            }
            mg_tls_set_error(t, ret, 0);
            if (total > 0) {
                return (ssize_t) total;
            }
            return mg_tls_io_error(t);
        }
        t->wpending = 0;

        /* Advance (i, off) past the ret bytes now on the wire. */
        total += (size_t) ret;
        len = (size_t) ret;
        while (len > 0) {
            size_t k = mg_min(len, iov[i].iov_len - off);
            off += k;
            len -= k;
            if (len > 0) {
                i++;
                off = 0;
            }
        }
    }
    return (ssize_t) total;
}

void
mg_tls_close_notify(mg_tls_conn_t *t)
{
    int i;

    if (!t->done || t->fatal || t->notified) {
        return;
    }
    t->notified = 1;
    /* A held record is flushed first; a second call sends the alert. */
    for (i = 0; i < 2; i++) {
        int pending = t->ssl.out_left != 0;
        if (mbedtls_ssl_close_notify(&t->ssl) != 0 || !pending) {
            break;
        }
    }
}
