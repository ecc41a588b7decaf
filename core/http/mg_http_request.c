/*
 * mg_http_request.c -- the client side of a request: reading and checking
 * the head, limits, routing, gateway-generated responses, keep-alive,
 * pipelining and lingering close.
 *
 * Life of a connection: IDLE (no buffer held) -> HEAD (first byte in,
 * client_header_timeout running) -> ACTIVE (a request exists; the proxy
 * drives it) -> back to IDLE, or LINGER (our side shut down, draining the
 * client's unread bytes so our last response is not destroyed by a reset)
 * -> closed.
 *
 * The head stays where it was read for the whole request: every view in
 * r->head points into conn->in, so the buffer is never compacted or grown
 * while a request is active; body and pipelined bytes use the room after
 * the head.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include "mg_http.h"
#include "../tls/mg_tls.h"
#include "../lua/mg_lua.h"
#include "../base/mg_log.h"
#include "../base/mg_pool.h"
#include "../base/mg_time.h"

#define MG_HTTP_LINGER_MS    5000
#define MG_HTTP_BODY_ROOM    4096     /* room after a head for body bytes */

const char *
mg_http_error_message(int status)
{
    /* Kong's kong/error_handlers.lua texts */
    switch (status) {
    case 400: return "Bad request";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 408: return "Request timeout";
    case 411: return "Length required";
    case 412: return "Precondition failed";
    case 413: return "Payload too large";
    case 414: return "URI too long";
    case 417: return "Expectation failed";
    case 431: return "Request header fields too large";
    case 494: return "Request header or cookie too large";
    case 500: return "An unexpected error occurred";
    case 501: return "Not implemented";
    case 502: return "An invalid response was received from the upstream server";
    case 503: return "The upstream server is currently unavailable";
    case 504: return "The upstream server is timing out";
    case 505: return "HTTP version not supported";
    default:  return "The upstream server responded with an error";
    }
}

void
mg_http_conn_init(mg_conn_t *c)
{
    if (c->state != MG_CONN_HANDSHAKE) {
        c->state = MG_CONN_HEAD;
    }
    /* the handshake and the first head share client_header_timeout */
    mg_conn_timer_set(c, mg_worker->conf->client_header_timeout);
}

/*
 * A full handshake costs milliseconds of CPU (mbedTLS's ECC: ~2.6 ms on
 * the development VM), all on the loop.  A burst of new connections --
 * wrk opening 50, clients reconnecting after a deploy -- would stall the
 * requests of established connections for the whole burst (50 x 2.6 ms).
 * So one loop turn spends at most this much on handshakes; the others
 * wait for the next turn (their bytes stay in the socket, and epoll,
 * level-triggered, reports them again), and the requests that arrived
 * meanwhile are served in between.
 */
#define MG_HS_TURN_NS  2000000L

static long
mg_http_ns_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long) (t1.tv_sec - t0->tv_sec) * 1000000000L
           + (t1.tv_nsec - t0->tv_nsec);
}

static void mg_http_conn_handshake_step(mg_conn_t *c);

/*
 * Drive the TLS handshake of a new connection, within the loop turn's
 * handshake budget (MG_HS_TURN_NS).
 */
void
mg_http_conn_handshake(mg_conn_t *c)
{
    struct timespec t0;

    if (mg_worker->hs_ns >= MG_HS_TURN_NS) {
        /* next turn; a wait for writability must stay armed (the write
         * watcher stops itself when it fires) */
        if (mg_tls_want_write(c->tls)) {
            ev_io_start(mg_worker->loop, &c->wev);
        }
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mg_http_conn_handshake_step(c);
    mg_worker->hs_ns += mg_http_ns_since(&t0);
}

/*
 * One go at the handshake.  Plain HTTP sent to a TLS port gets nginx's
 * answer (a plain-text 400 naming the mistake) instead of a silent
 * close; any other failure was logged by the TLS module and just closes.
 */
static void
mg_http_conn_handshake_step(mg_conn_t *c)
{
    static const char plain[] =
        "HTTP/1.1 400 Bad Request\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        "Content-Length: 60\r\n"
        "Connection: close\r\n\r\n"
        "{\"message\":\"The plain HTTP request was sent to HTTPS port\"}\n";
    int rc = mg_tls_handshake(c->tls);

    if (rc == MG_TLS_HELLO) {
        /* the ClientHello is in: the global plugins' certificate phase */
        if (mg_lua_certificate(c) != MG_OK) {
            mg_tls_conn_refuse(c->tls);
            mg_conn_close(c);
            return;
        }
        rc = mg_tls_handshake(c->tls);
    }
    if (rc == MG_OK) {
        ev_io_stop(mg_worker->loop, &c->wev);
        c->state = MG_CONN_HEAD;
        mg_conn_queue_read(c);       /* a request may have come with it */
        return;
    }
    if (rc == MG_AGAIN) {
        if (mg_tls_want_write(c->tls)) {
            ev_io_start(mg_worker->loop, &c->wev);
        }
        return;
    }
    if (mg_tls_error(c->tls) == mg_tls_err_plain_http) {
        ssize_t n = send(c->fd, plain, sizeof(plain) - 1, MSG_NOSIGNAL);
        (void) n;
        mg_tls_conn_free(c->tls);
        c->tls = NULL;
        c->io = NULL;
        c->state = MG_CONN_LINGER;
        shutdown(c->fd, SHUT_WR);
        mg_conn_timer_set(c, MG_HTTP_LINGER_MS);
        return;
    }
    mg_conn_close(c);
}

static mg_request_t *
mg_http_request_new(mg_conn_t *c)
{
    mg_pool_t    *pool = mg_worker_pool_get();
    mg_request_t *r;
    uint64_t      a, b;
    static const char hex[] = "0123456789abcdef";
    int           i;

    if (pool == NULL) {
        return NULL;
    }
    r = mg_pool_calloc(pool, sizeof(*r));
    if (r == NULL) {
        mg_pool_destroy(pool);
        return NULL;
    }
    r->pool = pool;
    r->conn = c;
    r->rt = mg_worker->rt;
    mg_runtime_hold(r->rt);
    r->start = mg_time_now;
    r->keepalive = 1;
    r->resp_left = -1;
    r->bidx = -1;
    a = mg_worker_random();
    b = mg_worker_random();
    for (i = 0; i < 16; i++) {
        r->request_id[i] = hex[(a >> (i * 4)) & 15];
        r->request_id[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    r->request_id[32] = '\0';
    c->req = r;
    c->state = MG_CONN_ACTIVE;
    return r;
}

int
mg_http_write_out(mg_request_t *r)
{
    mg_conn_t *c = r->conn;
    ssize_t    n;
    int        i;

    while (r->nout > 0) {
        n = c->io->writev(c, r->out, r->nout);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (errno == EINTR) {
                    continue;
                }
                r->client_blocked = 1;
                ev_io_start(mg_worker->loop, &c->wev);
                mg_conn_timer_set(c, mg_worker->conf->send_timeout);
                return MG_AGAIN;
            }
            mg_log_info("*%llu client write failed: %s",
                        (unsigned long long) c->id, strerror(errno));
            mg_http_request_abort(r, mg_err_io);
            return MG_ERROR;
        }
        r->bytes_sent += (uint64_t) n;
        r->response_started = 1;
        for (i = 0; i < r->nout && n > 0; i++) {
            if ((size_t) n >= r->out[i].iov_len) {
                n -= (ssize_t) r->out[i].iov_len;
                r->out[i].iov_len = 0;
            } else {
                r->out[i].iov_base = (char *) r->out[i].iov_base + n;
                r->out[i].iov_len -= (size_t) n;
                n = 0;
            }
        }
        /* drop written entries */
        for (i = 0; i < r->nout && r->out[i].iov_len == 0; i++) { }
        if (i) {
            memmove(r->out, r->out + i, (size_t) (r->nout - i) * sizeof(r->out[0]));
            r->nout -= i;
        }
    }
    if (r->client_blocked) {
        r->client_blocked = 0;
        mg_conn_timer_set(c, 0);
    }
    return MG_OK;
}

void
mg_http_send_error(mg_request_t *r, int status, const char *message)
{
    mg_http_send_error_hdr(r, status, message, NULL);
}

/*
 * Send a response the gateway makes itself: status, optional content
 * type, body, extra header lines ("Name: value\r\n"...).  The head and
 * body are one arena block written with one call.
 */
static void
mg_http_send(mg_request_t *r, int status, const char *ctype,
             const char *body, size_t blen, const char *extra,
             size_t extra_len)
{
    mg_conf_t *conf = mg_worker->conf;
    char      *p, *end;
    size_t     cap = 1024 + blen + extra_len;

    if (r->response_started) {
        mg_http_request_abort(r, r->error ? r->error : mg_err_io);
        return;
    }
    mg_proxy_cleanup(r);
    r->ustate = MG_REQ_UPSTREAM_NONE;
    if (!r->body_done || status == 400) {
        r->keepalive = 0;
    }
    if (mg_worker->shutting_down) {
        r->keepalive = 0;
    }
    p = mg_pool_alloc(r->pool, cap);
    if (p == NULL) {
        mg_http_request_abort(r, mg_err_io);
        return;
    }
    r->ohead = p;
    end = p + cap;
    p += snprintf(p, (size_t) (end - p),
                  "HTTP/1.1 %d %s\r\nDate: %.*s\r\n",
                  status, mg_http_reason(status), (int) mg_time_http_len,
                  mg_time_http);
    if (ctype) {
        p += snprintf(p, (size_t) (end - p), "Content-Type: %s\r\n", ctype);
    }
    if (status >= 200 && status != 204 && status != 304) {
        p += snprintf(p, (size_t) (end - p), "Content-Length: %zu\r\n", blen);
    }
    if (!r->keepalive) {
        p += snprintf(p, (size_t) (end - p), "Connection: close\r\n");
    }
    if (extra_len) {
        memcpy(p, extra, extra_len);
        p += extra_len;
    }
    if (conf->headers & MG_HDR_SERVER) {
        p += snprintf(p, (size_t) (end - p), "Server: %s\r\n", MOONGATE_VER);
    }
    if (conf->headers & MG_HDR_RESPONSE_LATENCY) {
        p += snprintf(p, (size_t) (end - p), "X-Kong-Response-Latency: %d\r\n",
                      (int) ((mg_time_now - r->start) * 1000));
    }
    if (conf->headers & MG_HDR_REQUEST_ID) {
        p += snprintf(p, (size_t) (end - p), "X-Kong-Request-Id: %s\r\n",
                      r->request_id);
    }
    p += snprintf(p, (size_t) (end - p), "\r\n");
    if (!r->head_method && blen && status >= 200 && status != 204
        && status != 304)
    {
        memcpy(p, body, blen);
        p += blen;
    }
    r->status = status;
    r->out[0].iov_base = r->ohead;
    r->out[0].iov_len = (size_t) (p - r->ohead);
    r->nout = 1;
    r->response_done = 1;
    if (mg_http_write_out(r) == MG_OK) {
        mg_http_request_done(r);
    }
}

void
mg_http_send_error_hdr(mg_request_t *r, int status, const char *message,
                       const char *extra)
{
    char body[256];
    int  n;

    if (message == NULL) {
        message = mg_http_error_message(status);
    }
    n = snprintf(body, sizeof(body), "{\"message\":\"%s\"}\n", message);
    mg_http_send(r, status, "application/json; charset=utf-8", body,
                 (size_t) mg_min(n, (int) sizeof(body) - 1), extra,
                 extra ? strlen(extra) : 0);
}

void
mg_http_send_lua_exit(mg_request_t *r)
{
    mg_hdr_mod_t *m;
    size_t        len = 0;
    char         *extra, *p;

    for (m = r->resp_mods; m; m = m->next) {
        len += m->name.len + m->value.len + 4;
    }
    extra = mg_pool_alloc(r->pool, len + 1);
    if (extra == NULL) {
        mg_http_request_abort(r, mg_err_io);
        return;
    }
    p = extra;
    for (m = r->resp_mods; m; m = m->next) {
        if (m->value.data == NULL) {
            continue;            /* a clear: nothing to send */
        }
        memcpy(p, m->name.data, m->name.len);
        p += m->name.len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, m->value.data, m->value.len);
        p += m->value.len;
        *p++ = '\r';
        *p++ = '\n';
    }
    mg_http_send(r, r->exit_status, NULL, r->exit_body.data, r->exit_body.len,
                 extra, (size_t) (p - extra));
}

static void
mg_http_linger(mg_conn_t *c)
{
    if (c->eof) {
        mg_conn_close(c);
        return;
    }
    if (c->tls) {
        mg_tls_close_notify(c->tls);
    }
    shutdown(c->fd, SHUT_WR);
    c->state = MG_CONN_LINGER;
    mg_conn_read_resume(c);
    mg_conn_timer_set(c, MG_HTTP_LINGER_MS);
}

void
mg_http_request_abort(mg_request_t *r, const char *why)
{
    mg_conn_t *c = r->conn;

    if (r->finalized) {
        return;
    }
    r->finalized = 1;
    r->error = why;
    if (r->status == 0) {
        r->status = 499;
    }
    mg_http_log_request(r);
    mg_conn_close(c);
}

static void mg_http_process(mg_conn_t *c);

static void
mg_http_conn_pipelined(void *obj, int revents)
{
    mg_conn_t *c = obj;

    (void) revents;
    if (c->req == NULL && c->fd >= 0) {
        MG_CONN_ENTER(c);
        mg_http_process(c);
        MG_CONN_LEAVE(c);
    }
}

void
mg_http_request_done(mg_request_t *r)
{
    mg_conn_t *c = r->conn;
    int        keepalive;

    if (r->finalized) {
        return;
    }
    r->finalized = 1;
    mg_http_log_request(r);
    mg_lua_request_end(r);       /* log phase: after the last byte went */
    keepalive = r->keepalive && r->body_done && !c->eof;
    c->req = NULL;
    mg_proxy_cleanup(r);
    mg_runtime_release(r->rt);
    mg_worker_pool_put(r->pool);
    c->requests++;

    if (!keepalive) {
        if (c->in) {
            c->in->pos = c->in->last = c->in->start;
        }
        mg_http_linger(c);
        return;
    }
    c->state = MG_CONN_IDLE;
    mg_conn_read_resume(c);
    if (c->in && mg_buf_len(c->in) > 0) {
        /* pipelined: the next head is already here */
        mg_buf_compact(c->in);
        c->state = MG_CONN_HEAD;
        mg_conn_timer_set(c, mg_worker->conf->client_header_timeout);
        /* run it from the ready queue, not from inside this request's
         * call chain (a long pipeline must not recurse) */
        mg_worker_ready(mg_http_conn_pipelined, c, &c->id, EV_CUSTOM);
        return;
    }
    if (c->in) {
        mg_buf_put(c->in);
        c->in = NULL;
    }
    mg_conn_timer_set(c, mg_worker->shutting_down
                             ? 1000
                             : mg_worker->conf->keepalive_timeout);
}

/* An error before or while parsing the head: answer and close. */
static void
mg_http_conn_fail(mg_conn_t *c, int status)
{
    mg_request_t *r = c->req ? c->req : mg_http_request_new(c);

    if (r == NULL) {
        mg_conn_close(c);
        return;
    }
    r->keepalive = 0;
    mg_http_send_error(r, status, NULL);
}

size_t
mg_http_request_header(void *ctx, mg_str_t name, mg_str_t *out, size_t max)
{
    mg_request_t *r = ctx;
    size_t        i, n = 0;

    for (i = 0; i < r->head.nheaders; i++) {
        if (mg_str_caseeq(r->head.headers[i].name, name)) {
            if (n < max) {
                out[n] = r->head.headers[i].value;
            }
            n++;
        }
    }
    return n;
}

/*
 * The admin_api_token check: "Authorization: Bearer <token>" or Kong's
 * "Kong-Admin-Token: <token>", compared in constant time (the length
 * aside, which is not secret enough to matter: tokens should be long).
 */
static int
mg_http_admin_authorized(mg_request_t *r)
{
    const char *token = mg_worker->conf->admin_api_token;
    size_t      tl, i;
    mg_str_t    v[2], name;
    unsigned    diff;

    if (token == NULL || token[0] == '\0') {
        return 1;
    }
    tl = strlen(token);
    mg_str_set(&name, "Kong-Admin-Token");
    if (mg_http_request_header(r, name, v, 2) != 1) {
        mg_str_set(&name, "Authorization");
        if (mg_http_request_header(r, name, v, 2) != 1
            || v[0].len < 7 || strncasecmp(v[0].data, "Bearer ", 7) != 0)
        {
            return 0;
        }
        v[0].data += 7;
        v[0].len -= 7;
        while (v[0].len && v[0].data[0] == ' ') {
            v[0].data++;
            v[0].len--;
        }
    }
    if (v[0].len != tl) {
        return 0;
    }
    diff = 0;
    for (i = 0; i < tl; i++) {
        diff |= (unsigned) (unsigned char) (v[0].data[i] ^ token[i]);
    }
    return diff == 0;
}

/*
 * The admin process serves three kinds of connection (mg_worker.c):
 *   - admin_listen: the Admin API, behind admin_api_token;
 *   - cluster_listen (control plane): data planes, already authenticated
 *     by the cluster mTLS handshake; only /v1/... (moongate.cluster);
 *   - its own socketpair (AF_UNIX, never a listener's family): the one
 *     internal request that starts the data plane's sync loop.
 * The /v1/ and /__moongate/ paths are not reachable from admin_listen.
 */
static int
mg_http_path_has_prefix(const mg_request_t *r, const char *prefix)
{
    size_t n = strlen(prefix);
    return r->path.len >= n && memcmp(r->path.data, prefix, n) == 0;
}

static void
mg_http_admin_request(mg_request_t *r)
{
    mg_conn_t *c = r->conn;

    if (c->tls && mg_tls_conn_cluster(c->tls)) {
        if (!mg_http_path_has_prefix(r, "/v1/")) {
            mg_http_send_error(r, 404, NULL);
            return;
        }
        mg_lua_admin(r);
        return;
    }
    if (c->peer.sa.sa_family == AF_UNIX) {
        mg_lua_admin(r);
        return;
    }
    if (mg_http_path_has_prefix(r, "/v1/")
        || mg_http_path_has_prefix(r, "/__moongate/"))
    {
        mg_http_send_error(r, 404, NULL);
        return;
    }
    if (c->tls && strcmp(mg_worker->conf->admin_ssl_verify_client, "off") != 0) {
        /* nginx's ssl_verify_client answers and words */
        int cert = mg_tls_conn_client_cert(c->tls);

        if (cert == 2 || (cert == 1
            && strcmp(mg_worker->conf->admin_ssl_verify_client, "on") == 0))
        {
            mg_log_info("*%llu admin API: %s", (unsigned long long) c->id,
                        cert == 1 ? "no client certificate"
                                  : "client certificate did not verify");
            r->keepalive = 0;
            mg_http_send_error(r, 400, cert == 1
                               ? "No required SSL certificate was sent"
                               : "The SSL certificate error");
            return;
        }
    }
    if (!mg_http_admin_authorized(r)) {
        mg_log_info("*%llu admin API: unauthorized request",
                    (unsigned long long) r->conn->id);
        mg_http_send_error_hdr(r, 401, "Unauthorized",
                               "WWW-Authenticate: Bearer realm=\"moongate\"\r\n");
        return;
    }
    mg_lua_admin(r);
}

static int
mg_http_split_uri(mg_request_t *r)
{
    mg_str_t    u = r->head.uri;
    const char *q;

    if (u.len == 0) {
        return MG_ERROR;
    }
    if (u.data[0] != '/') {
        /* absolute-form: http://host[:port]/path */
        const char *p = memchr(u.data, ':', u.len), *e = u.data + u.len;
        if (p == NULL || e - p < 3 || p[1] != '/' || p[2] != '/') {
            return MG_ERROR;        /* neither origin- nor absolute-form */
        }
        p += 3;
        const char *s = memchr(p, '/', (size_t) (e - p));
        r->host.data = p;
        r->host.len = (size_t) ((s ? s : e) - p);
        if (s == NULL) {
            mg_str_set(&r->path, "/");
            r->query.len = 0;
            return MG_OK;
        }
        u.data = s;
        u.len = (size_t) (e - s);
    }
    q = memchr(u.data, '?', u.len);
    r->path.data = u.data;
    r->path.len = q ? (size_t) (q - u.data) : u.len;
    if (q) {
        r->query.data = q + 1;
        r->query.len = u.len - r->path.len - 1;
    }
    return MG_OK;
}

static void
mg_http_split_host(mg_request_t *r)
{
    mg_str_t h = r->host.len ? r->host : r->head.host;
    size_t   i;

    r->host_port = r->conn->local_port;
    if (h.len && h.data[0] == '[') {
        const char *e = memchr(h.data, ']', h.len);
        if (e) {
            size_t hl = (size_t) (e - h.data) + 1;
            if (hl + 1 < h.len && e[1] == ':') {
                r->host_port = (uint16_t) atoi(e + 2);
            }
            h.len = hl;
        }
        r->host = h;
        return;
    }
    for (i = h.len; i > 0; i--) {
        if (h.data[i - 1] == ':') {
            unsigned port = 0;
            size_t   j;
            for (j = i; j < h.len && h.data[j] >= '0' && h.data[j] <= '9'; j++) {
                port = port * 10 + (unsigned) (h.data[j] - '0');
                if (port > 65535) break;
            }
            if (j == h.len && j > i && port <= 65535) {
                r->host_port = (uint16_t) port;
            }
            h.len = i - 1;
            break;
        }
    }
    r->host = h;
}

/* A complete head is buffered at c->in->pos: make it a request. */
static void
mg_http_start_request(mg_conn_t *c, size_t head_len)
{
    mg_conf_t        *conf = mg_worker->conf;
    mg_request_t     *r;
    mg_http_header_t *hdrs;
    mg_router_req_t   rq;
    const mg_service_t *svc;
    int               rc;
    size_t            max = (size_t) conf->max_req_headers;

    r = mg_http_request_new(c);
    if (r == NULL) {
        mg_conn_close(c);
        return;
    }
    mg_conn_timer_set(c, 0);
    hdrs = mg_pool_alloc(r->pool, sizeof(mg_http_header_t) * (max + 1));
    if (hdrs == NULL) {
        mg_http_conn_fail(c, 500);
        return;
    }
    rc = mg_http_parse_head(&r->parser, MG_HTTP_REQUEST, c->in->pos, head_len,
                            &r->head, hdrs, max, 0);
    r->head_len = head_len;
    c->in->pos += head_len;
    r->body_base = c->in->pos;
    if (rc != MG_HTTP_OK) {
        mg_log_info("*%llu client sent an invalid request (%d)",
                    (unsigned long long) c->id, rc);
        r->body_done = 0;
        mg_http_conn_fail(c, rc);
        return;
    }
    r->head_method = mg_str_eq_lit(r->head.method, "HEAD");
    r->keepalive = r->head.keepalive && !mg_worker->shutting_down
                   && (conf->keepalive_requests <= 0
                       || c->requests + 1 < (uint32_t) conf->keepalive_requests);
    r->body_chunked = r->head.chunked;
    r->has_body = r->head.chunked || r->head.content_length > 0;
    r->body_left = r->head.content_length > 0 ? r->head.content_length : 0;
    r->body_done = !r->has_body;
    r->body_replayable = !r->has_body
        || (!r->body_chunked
            && (int64_t) mg_buf_len(c->in) >= r->head.content_length);

    if (mg_http_split_uri(r) != MG_OK) {
        mg_http_send_error(r, 400, NULL);
        return;
    }
    mg_http_split_host(r);

    if (conf->client_max_body_size > 0 && r->head.content_length > 0
        && (uint64_t) r->head.content_length > conf->client_max_body_size)
    {
        mg_log_info("*%llu client intended to send too large body: %lld bytes",
                    (unsigned long long) c->id,
                    (long long) r->head.content_length);
        mg_http_send_error(r, 413, NULL);
        return;
    }
    if (mg_worker->admin) {
        mg_http_admin_request(r);
        return;
    }

    memset(&rq, 0, sizeof(rq));
    rq.method = r->head.method;
    rq.host = r->host;
    rq.port = r->host_port;
    {
        /* Kong routes on the normalized path (percent-decoding of
         * unreserved bytes, dot segments, repeated slashes) */
        char   *np = mg_pool_alloc(r->pool, r->path.len + 1);
        ssize_t nl = np ? mg_router_path_normalize(r->path.data, r->path.len,
                                                   np, r->path.len + 1)
                        : -1;
        if (nl < 0) {
            mg_http_send_error(r, 400, NULL);
            return;
        }
        rq.path.data = np;
        rq.path.len = (size_t) nl;
        r->npath = rq.path;
    }
    if (c->ssl) {
        mg_str_set(&rq.scheme, "https");
        if (c->tls) {
            rq.sni = mg_tls_sni(c->tls);
        }
    } else {
        mg_str_set(&rq.scheme, "http");
    }
    rq.get_header = mg_http_request_header;
    rq.header_ctx = r;
    if (r->rt == NULL || r->rt->router == NULL
        || mg_router_match(r->rt->router, &rq, &r->match) != MG_OK)
    {
        mg_http_send_error(r, 404, "no Route matched with those values");
        return;
    }
    r->route = r->match.route;
    if (mg_router_https_required(r->route, rq.scheme)) {
        int code = r->route->https_redirect_status_code;
        if (code == 426) {
            mg_http_send_error_hdr(r, 426, "Please use HTTPS protocol",
                                   "Connection: Upgrade\r\n"
                                   "Upgrade: TLS/1.2, HTTP/1.1\r\n");
        } else {
            size_t n = r->host.len + r->head.uri.len + 32;
            char  *loc = mg_pool_alloc(r->pool, n);
            if (loc == NULL) {
                mg_http_send_error(r, 500, NULL);
                return;
            }
            snprintf(loc, n, "Location: https://%.*s%.*s\r\n",
                     (int) r->host.len, r->host.data,
                     (int) r->head.uri.len, r->head.uri.data);
            mg_http_send_error_hdr(r, code, "Moved", loc);
        }
        return;
    }
    svc = r->route->service;
    if (svc == NULL) {
        mg_http_send_error(r, 503, "no Service found with those values");
        return;
    }
    r->svc = &r->rt->services[svc->index];

    /* the upstream path is re-escaped: a byte may become three */
    r->upath = mg_pool_alloc(r->pool, 3 * (rq.path.len + svc->path.len) + 2);
    if (r->upath == NULL) {
        mg_http_send_error(r, 500, NULL);
        return;
    }
    {
        ssize_t n = mg_router_upstream_path(&r->match, &rq, svc->path, r->upath,
                                            3 * (rq.path.len + svc->path.len) + 2);
        if (n < 0) {
            mg_http_send_error(r, 500, NULL);
            return;
        }
        r->upath_len = (size_t) n;
    }
    if (mg_lua_route_has_plugins(r->rt, r->route->index)) {
        mg_lua_access(r);        /* continues to mg_proxy_start itself */
        return;
    }
    mg_proxy_start(r);
}

/* Try to make a request out of the buffered bytes. */
static void
mg_http_process(mg_conn_t *c)
{
    mg_conf_t *conf = mg_worker->conf;
    mg_buf_t  *b = c->in;
    size_t     line_len, head_len;
    size_t     line_max = conf->large_client_header_buffer;
    size_t     head_max = conf->large_client_header_buffer
                          * conf->large_client_header_buffers;

    if (b == NULL || mg_buf_len(b) == 0) {
        return;
    }
    if (c->state == MG_CONN_IDLE) {
        c->state = MG_CONN_HEAD;
        mg_conn_timer_set(c, conf->client_header_timeout);
    }
    head_len = mg_http_head_end(b->pos, mg_buf_len(b), &line_len);
    if (line_len > line_max
        || (line_len == 0 && head_len == 0 && mg_buf_len(b) > line_max))
    {
        mg_http_conn_fail(c, 414);
        return;
    }
    if (head_len == 0) {
        if (mg_buf_len(b) >= head_max) {
            mg_http_conn_fail(c, 431);
            return;
        }
        if (mg_buf_room(b) == 0) {
            mg_buf_t *nb;
            mg_buf_compact(b);
            if (mg_buf_room(b) == 0) {
                nb = mg_buf_grow(b, head_max + MG_HTTP_BODY_ROOM);
                if (nb == NULL) {
                    mg_http_conn_fail(c, 500);
                    return;
                }
                c->in = nb;
            }
        }
        return;
    }
    if (head_len > head_max) {
        mg_http_conn_fail(c, 431);
        return;
    }
    /* keep room for body bytes after the head: the head must not move
     * once parsed */
    if ((size_t) (b->end - b->pos) < head_len + MG_HTTP_BODY_ROOM) {
        mg_buf_compact(b);
        if ((size_t) (b->end - b->pos) < head_len + MG_HTTP_BODY_ROOM) {
            mg_buf_t *nb = mg_buf_grow(b, head_len + MG_BUF_SIZE);
            if (nb == NULL) {
                mg_http_conn_fail(c, 500);
                return;
            }
            c->in = nb;
        }
    }
    mg_http_start_request(c, head_len);
}

void
mg_http_conn_read(mg_conn_t *c)
{
    ssize_t n;
    char    drain[4096];

    if (c->state == MG_CONN_LINGER) {
        for (;;) {
            n = recv(c->fd, drain, sizeof(drain), 0);
            if (n > 0) {
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            }
            mg_conn_close(c);
            return;
        }
    }
    if (c->in == NULL) {
        c->in = mg_buf_get(MG_BUF_SIZE);
        if (c->in == NULL) {
            mg_log_crit("out of memory reading from a client");
            mg_conn_close(c);
            return;
        }
    }
    if (mg_buf_room(c->in) == 0) {
        if (c->req == NULL) {
            mg_buf_compact(c->in);
        }
        if (mg_buf_room(c->in) == 0) {
            /* a pipelined backlog or a body the upstream is not taking:
             * stop reading until the request drains the buffer */
            if (c->req) {
                mg_conn_read_pause(c);
                mg_proxy_client_input(c->req);
            } else {
                mg_http_process(c);
            }
            return;
        }
    }
    n = c->io->recv(c, c->in->last, mg_buf_room(c->in));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            /* a fed event for pipelined bytes lands here */
            if (c->req == NULL && mg_buf_len(c->in) > 0) {
                mg_http_process(c);
            } else if (c->req == NULL && mg_buf_len(c->in) == 0
                       && c->state == MG_CONN_IDLE)
            {
                mg_buf_put(c->in);
                c->in = NULL;
            }
            return;
        }
        if (c->req) {
            mg_http_request_abort(c->req, errno == ECONNRESET ? mg_err_reset
                                                             : mg_err_io);
        } else {
            mg_conn_close(c);
        }
        return;
    }
    if (n == 0) {
        c->eof = 1;
        ev_io_stop(mg_worker->loop, &c->rev);
        if (c->req == NULL) {
            mg_conn_close(c);
            return;
        }
        /* The client went away (nginx's 499): stop the upstream work
         * too.  A half-closed socket looks the same from here; like
         * nginx, we take EOF as the client giving up. */
        mg_log_info("*%llu client closed the connection while waiting "
                    "for the response", (unsigned long long) c->id);
        mg_http_request_abort(c->req, mg_err_closed);
        return;
    }
    c->in->last += n;
    if (c->tls && mg_tls_pending(c->tls) > 0) {
        /* decrypted bytes no socket event will announce */
        mg_conn_queue_read(c);
    }
    if (c->req) {
        mg_proxy_client_input(c->req);
    } else {
        mg_http_process(c);
    }
}

void
mg_http_conn_write(mg_conn_t *c)
{
    mg_request_t *r = c->req;

    if (r == NULL) {
        return;
    }
    if (r->response_done && r->ustate == MG_REQ_UPSTREAM_NONE) {
        /* a gateway-generated response */
        if (mg_http_write_out(r) == MG_OK) {
            mg_http_request_done(r);
        }
        return;
    }
    mg_proxy_client_writable(r);
}

void
mg_http_conn_timeout(mg_conn_t *c)
{
    mg_request_t *r = c->req;

    switch (c->state) {
    case MG_CONN_HANDSHAKE:
        mg_log_info("*%llu TLS handshake timed out",
                    (unsigned long long) c->id);
        mg_conn_close(c);
        return;
    case MG_CONN_IDLE:
    case MG_CONN_LINGER:
        mg_conn_close(c);
        return;
    case MG_CONN_HEAD:
        if (c->in == NULL || mg_buf_len(c->in) == 0) {
            mg_conn_close(c);      /* never sent a byte: just close */
            return;
        }
        mg_log_info("*%llu client timed out sending the request head",
                    (unsigned long long) c->id);
        mg_http_conn_fail(c, 408);
        return;
    case MG_CONN_ACTIVE:
        if (r == NULL) {
            mg_conn_close(c);
            return;
        }
        if (r->client_blocked) {
            mg_log_info("*%llu client timed out reading the response",
                        (unsigned long long) c->id);
            mg_http_request_abort(r, mg_err_timeout);
            return;
        }
        if (!r->body_done) {
            mg_log_info("*%llu client timed out sending the request body",
                        (unsigned long long) c->id);
            r->keepalive = 0;
            if (r->response_started) {
                mg_http_request_abort(r, mg_err_timeout);
            } else {
                mg_http_send_error(r, 408, NULL);
            }
            return;
        }
        return;
    }
}
