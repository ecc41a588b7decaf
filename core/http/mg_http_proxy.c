/*
 * mg_http_proxy.c -- the upstream exchange of a request: pick a peer,
 * connect (or reuse a pooled connection), send the rewritten head and the
 * body, read the response head, rewrite it for the client and stream the
 * body through.
 *
 * Hot path shape, for a small GET on a warm keep-alive connection: one
 * send() of the upstream head, one recv() of the response, one writev()
 * of the rewritten head plus the body bytes that arrived with it.  Body
 * bytes are never copied: they go from the upstream connection's read
 * buffer to the client socket.  A response body is written as soon as it
 * is read (so server-sent events leave with no added delay); while the
 * client cannot take more, the upstream read watcher is stopped, which is
 * the backpressure.
 *
 * Retries follow Kong/nginx (proxy_next_upstream error timeout): after a
 * connect failure or timeout, or an error before any response byte when
 * the method is idempotent, the next try goes to another target (the
 * balancer skips tried ones) as long as the body can be sent again.  A
 * pooled connection the server had closed is retried at once on a fresh
 * connection without counting as a try.
 */
#include <errno.h>
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include "mg_http.h"
#include "../upstream/mg_dns.h"
#include "../upstream/mg_health.h"
#include "../tls/mg_tls.h"
#include "../lua/mg_lua.h"
#include "../base/mg_log.h"
#include "../base/mg_pool.h"
#include "../base/mg_time.h"

#define MG_PROXY_MAX_RESP_HEAD (64 * 1024)

static void mg_proxy_handler(mg_upconn_t *u, int events);
static void mg_proxy_connect(mg_request_t *r);
static void mg_proxy_send(mg_request_t *r);
static void mg_proxy_hash_key(mg_request_t *r);
static void mg_proxy_release(mg_request_t *r, int failed);
static int mg_proxy_emit(mg_request_t *r, const char *data, size_t len,
                         int eof);
static int mg_proxy_process_filtered(mg_request_t *r, mg_upconn_t *u,
                                     mg_buf_t *b);
static int mg_proxy_tunnel_start(mg_request_t *r);
static int mg_proxy_process_buffered(mg_request_t *r, mg_upconn_t *u,
                                     mg_buf_t *b);
static void mg_proxy_tunnel_read(mg_request_t *r);
static void mg_proxy_tunnel_c2u(mg_request_t *r);

/* --- trusted_ips ---------------------------------------------------- */

typedef struct {
    int      family;
    uint8_t  addr[16];
    int      bits;
} mg_cidr_t;

static mg_cidr_t *mg_trusted;
static size_t     mg_trusted_n;
static int        mg_trusted_ready;

static void
mg_proxy_trusted_init(void)
{
    mg_conf_t *conf = mg_worker->conf;
    size_t     i;

    mg_trusted_ready = 1;
    if (conf->trusted_ips_n == 0) {
        return;
    }
    mg_trusted = calloc(conf->trusted_ips_n, sizeof(mg_cidr_t));
    if (mg_trusted == NULL) {
        return;
    }
    for (i = 0; i < conf->trusted_ips_n; i++) {
        char  buf[64], *slash;
        mg_cidr_t *t = &mg_trusted[mg_trusted_n];
        size_t n = mg_min(conf->trusted_ips[i].len, sizeof(buf) - 1);

        memcpy(buf, conf->trusted_ips[i].data, n);
        buf[n] = '\0';
        slash = strchr(buf, '/');
        if (slash) *slash = '\0';
        if (inet_pton(AF_INET, buf, t->addr) == 1) {
            t->family = AF_INET;
            t->bits = slash ? atoi(slash + 1) : 32;
        } else if (inet_pton(AF_INET6, buf, t->addr) == 1) {
            t->family = AF_INET6;
            t->bits = slash ? atoi(slash + 1) : 128;
        } else {
            continue;
        }
        mg_trusted_n++;
    }
}

static int
mg_proxy_client_trusted(const mg_conn_t *c)
{
    const uint8_t *a;
    size_t         i;
    int            fam = c->peer.sa.sa_family;

    if (!mg_trusted_ready) {
        mg_proxy_trusted_init();
    }
    if (mg_trusted_n == 0) {
        return 0;
    }
    a = fam == AF_INET ? (const uint8_t *) &c->peer.sin.sin_addr
                       : (const uint8_t *) &c->peer.sin6.sin6_addr;
    for (i = 0; i < mg_trusted_n; i++) {
        const mg_cidr_t *t = &mg_trusted[i];
        int              bits = t->bits, k = 0;
        if (t->family != fam) {
            continue;
        }
        while (bits >= 8 && a[k] == t->addr[k]) {
            bits -= 8;
            k++;
        }
        if (bits <= 0 || (bits < 8 && ((a[k] ^ t->addr[k]) >> (8 - bits)) == 0)) {
            return 1;
        }
    }
    return 0;
}

/* --- the upstream request head ------------------------------------- */

/* Headers the proxy never forwards as sent (hop-by-hop, or rewritten). */
static int
mg_proxy_skip_header(mg_str_t n, int trusted)
{
#define IS(lit) (n.len == sizeof(lit) - 1 && strncasecmp(n.data, lit, n.len) == 0)
    switch (n.len) {
    case 2:  return IS("te");
    case 4:  return IS("host");
    case 6:  return IS("expect");
    case 7:  return IS("trailer") || IS("upgrade");
    case 9:  return IS("x-real-ip");
    case 10: return IS("connection") || IS("keep-alive");
    case 14: return IS("content-length");
    case 15: return IS("x-forwarded-for");
    case 16: return IS("proxy-connection")
                    || (!trusted && (IS("x-forwarded-host") || IS("x-forwarded-port")
                                     || IS("x-forwarded-path")));
    case 17: return IS("transfer-encoding") || (!trusted && IS("x-forwarded-proto"));
    case 18: return !trusted && IS("x-forwarded-prefix");
    }
    return 0;
#undef IS
}

/* Is name one of the tokens of the Connection header (hop-by-hop)? */
static int
mg_proxy_conn_token(mg_str_t conn, mg_str_t name)
{
    size_t i = 0;

    while (i < conn.len) {
        size_t s, e;
        while (i < conn.len && (conn.data[i] == ' ' || conn.data[i] == ',')) i++;
        s = i;
        while (i < conn.len && conn.data[i] != ',') i++;
        e = i;
        while (e > s && conn.data[e - 1] == ' ') e--;
        if (e - s == name.len && strncasecmp(conn.data + s, name.data, name.len) == 0) {
            return 1;
        }
    }
    return 0;
}

static const mg_http_header_t *
mg_proxy_find(const mg_http_head_t *h, const char *name)
{
    size_t i, n = strlen(name);

    for (i = 0; i < h->nheaders; i++) {
        if (h->headers[i].name.len == n
            && strncasecmp(h->headers[i].name.data, name, n) == 0)
        {
            return &h->headers[i];
        }
    }
    return NULL;
}

#define APPEND(p, s, n)                                                     \
    do {                                                                    \
        size_t n_ = (n);                                                    \
        if (n_) {                                                           \
            memcpy((p), (s), n_);                                           \
            (p) += n_;                                                      \
        }                                                                   \
    } while (0)

/* Plugin header changes: does one replace (set/clear) header name? */
static int
mg_proxy_mod_replaces(const mg_hdr_mod_t *m, mg_str_t name)
{
    for (; m; m = m->next) {
        if (!m->add && mg_str_caseeq(m->name, name)) {
            return 1;
        }
    }
    return 0;
}

static size_t
mg_proxy_mods_size(const mg_hdr_mod_t *m)
{
    size_t n = 0;
    for (; m; m = m->next) {
        n += m->name.len + m->value.len + 4;
    }
    return n;
}

static char *
mg_proxy_mods_append(char *p, const mg_hdr_mod_t *m)
{
    for (; m; m = m->next) {
        if (m->value.data == NULL) {
            continue;
        }
        APPEND(p, m->name.data, m->name.len);
        *p++ = ':';
        *p++ = ' ';
        APPEND(p, m->value.data, m->value.len);
        *p++ = '\r';
        *p++ = '\n';
    }
    return p;
}

static inline uint64_t
mg_proxy_ms(double seconds)
{
    return seconds > 0 ? (uint64_t) (seconds * 1000) : 0;
}
#define APPEND_LIT(p, lit) APPEND(p, lit, sizeof(lit) - 1)

static int
mg_proxy_build_head(mg_request_t *r)
{
    mg_conf_t      *conf = mg_worker->conf;
    mg_conn_t      *c = r->conn;
    mg_http_head_t *h = &r->head;
    const mg_http_header_t *xff;
    char            ip[INET6_ADDRSTRLEN];
    size_t          iplen, i, cap;
    char           *p;
    int             trusted = mg_proxy_client_trusted(c);
    int             conn_tokens = h->connection.len > 0
                                  && !mg_str_caseeq_lit(h->connection, "keep-alive")
                                  && !mg_str_caseeq_lit(h->connection, "close");
    const mg_upstream_t *up = r->svc->service->upstream;
    mg_str_t        host = r->route->preserve_host && h->has_host
                               ? h->host
                               : (up && up->host_header.len) ? up->host_header
                                                             : r->peer->host;

    r->uhost = host;     /* also the TLS server name, as Kong's $upstream_host */

    iplen = mg_conn_peer_ip(c, ip, sizeof(ip));
    xff = mg_proxy_find(h, "x-forwarded-for");
    cap = r->head_len + r->upath_len + r->query.len + host.len + r->npath.len
          + mg_proxy_mods_size(r->up_mods) + r->up_method.len
          + (xff ? xff->value.len : 0) + r->path.len * 2 + r->host.len
          + 2 * iplen + 512;
    p = mg_pool_alloc(r->pool, cap);
    if (p == NULL) {
        return MG_ERROR;
    }
    r->uhead = p;

    if (r->up_method.data) {
        APPEND(p, r->up_method.data, r->up_method.len);
    } else {
        APPEND(p, h->method.data, h->method.len);
    }
    *p++ = ' ';
    APPEND(p, r->upath, r->upath_len);
    if (r->query.len) {
        *p++ = '?';
        APPEND(p, r->query.data, r->query.len);
    }
    if (h->http_minor == 0) {
        APPEND_LIT(p, " HTTP/1.0\r\nHost: ");
    } else {
        APPEND_LIT(p, " HTTP/1.1\r\nHost: ");
    }
    APPEND(p, host.data, host.len);
    APPEND_LIT(p, "\r\n");

    for (i = 0; i < h->nheaders; i++) {
        const mg_http_header_t *hd = &h->headers[i];
        if ((mg_proxy_skip_header(hd->name, trusted)
             && !(h->upgrade && mg_str_caseeq_lit(hd->name, "upgrade")))
            || (conn_tokens && mg_proxy_conn_token(h->connection, hd->name)
                && !(h->upgrade && mg_str_caseeq_lit(hd->name, "upgrade")))
            || (r->up_mods && mg_proxy_mod_replaces(r->up_mods, hd->name)))
        {
            continue;
        }
        APPEND(p, hd->name.data, hd->name.len);
        *p++ = ':';
        *p++ = ' ';
        APPEND(p, hd->value.data, hd->value.len);
        *p++ = '\r';
        *p++ = '\n';
    }

    p = mg_proxy_mods_append(p, r->up_mods);
    APPEND_LIT(p, "X-Forwarded-For: ");
    if (xff && xff->value.len) {
        APPEND(p, xff->value.data, xff->value.len);
        *p++ = ',';
        *p++ = ' ';
    }
    APPEND(p, ip, iplen);
    APPEND_LIT(p, "\r\nX-Real-IP: ");
    APPEND(p, ip, iplen);
    APPEND_LIT(p, "\r\n");
    if (!trusted || !mg_proxy_find(h, "x-forwarded-proto")) {
        if (c->ssl) {
            APPEND_LIT(p, "X-Forwarded-Proto: https\r\n");
        } else {
            APPEND_LIT(p, "X-Forwarded-Proto: http\r\n");
        }
    }
    if (!trusted || !mg_proxy_find(h, "x-forwarded-host")) {
        APPEND_LIT(p, "X-Forwarded-Host: ");
        APPEND(p, r->host.data, r->host.len);
        APPEND_LIT(p, "\r\n");
    }
    if (!trusted || !mg_proxy_find(h, "x-forwarded-port")) {
        APPEND_LIT(p, "X-Forwarded-Port: ");
        p = mg_fmt_u64(p, c->local_port);
        APPEND_LIT(p, "\r\n");
    }
    if (!trusted || !mg_proxy_find(h, "x-forwarded-path")) {
        APPEND_LIT(p, "X-Forwarded-Path: ");
        APPEND(p, r->path.data, r->path.len);
        APPEND_LIT(p, "\r\n");
    }
    if ((!trusted || !mg_proxy_find(h, "x-forwarded-prefix"))
        && r->route->strip_path && r->match.prefix_len > 1)
    {
        /* the stripped prefix, as Kong sets it; "/" strips nothing */
        size_t n = r->match.prefix_len;
        if (r->npath.data[n - 1] == '/') {
            n--;
        }
        APPEND_LIT(p, "X-Forwarded-Prefix: ");
        APPEND(p, r->npath.data, n);
        APPEND_LIT(p, "\r\n");
    }
    if (conf->headers_upstream & MG_HDR_REQUEST_ID) {
        APPEND_LIT(p, "X-Kong-Request-Id: ");
        APPEND(p, r->request_id, 32);
        APPEND_LIT(p, "\r\n");
    }
    if (r->up_body.data) {
        APPEND_LIT(p, "Content-Length: ");
        p = mg_fmt_u64(p, r->up_body.len);
        APPEND_LIT(p, "\r\n");
    } else if (r->body_chunked) {
        APPEND_LIT(p, "Transfer-Encoding: chunked\r\n");
    } else if (h->content_length >= 0) {
        APPEND_LIT(p, "Content-Length: ");
        p = mg_fmt_u64(p, (uint64_t) h->content_length);
        APPEND_LIT(p, "\r\n");
    }
    if (h->upgrade) {
        APPEND_LIT(p, "Connection: upgrade\r\n");
    } else if (h->http_minor == 0) {
        APPEND_LIT(p, "Connection: close\r\n");
    }
    APPEND_LIT(p, "\r\n");
    r->uhead_len = (size_t) (p - r->uhead);
    r->uhead_sent = 0;
    return MG_OK;
}

/* --- peers, connects and retries ----------------------------------- */

static mg_peer_t *
mg_proxy_pick(mg_request_t *r)
{
    mg_service_rt_t  *s = r->svc;
    mg_upstream_rt_t *up = s->upstream;
    mg_peer_t        *peer;
    int               idx;

    if (r->peer_override) {
        return r->peer_override; /* kong.service.set_target */
    }
    if (s->peer) {
        return s->peer;          /* a name is resolved by the caller */
    }
    if (up && r->rt->health) {
        mg_health_sync(r->rt->health, r->rt);   /* O(1) when unchanged */
    }
    if (up && up->balancer && !r->key_done
        && mg_balancer_algorithm(up->balancer) == MG_BALANCER_CONSISTENT_HASHING)
    {
        mg_proxy_hash_key(r);
    }
    if (up == NULL || up->balancer == NULL
        || (idx = mg_balancer_pick(up->balancer, r->tried,
                                   r->key.valid ? &r->key : NULL)) < 0)
    {
        mg_log_error("*%llu no peer available for upstream of service %.*s",
                     (unsigned long long) r->conn->id,
                     (int) s->service->name.len, s->service->name.data);
        mg_http_send_error(r, 503, "failure to get a peer from the ring-balancer");
        return NULL;
    }
    if (r->tried) {
        r->tried[idx / 8] |= (uint8_t) (1u << (idx % 8));
    }
    r->bidx = idx;
    r->bheld = 1;
    r->try_start = mg_time_now;
    peer = &s->peers[idx];
    return peer;
}

static int
mg_proxy_idempotent(const mg_request_t *r)
{
    mg_str_t m = r->head.method;
    return !(mg_str_eq_lit(m, "POST") || mg_str_eq_lit(m, "PATCH")
             || mg_str_eq_lit(m, "LOCK"));
}

/*
 * Retries wait an exponential backoff with jitter: try k (k >= 1 tries
 * made) waits a uniform time in [d/2, d] with d = 5 ms * 2^(k-1), capped
 * at 1 s -- a target that just refused is given a moment, and a burst of
 * failing requests does not retry in lockstep.  The balancer has already
 * excluded the tried targets, so the next try goes elsewhere when it can.
 */
#define MG_RETRY_BASE_MS 5
#define MG_RETRY_MAX_MS  1000

static void
mg_proxy_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_request_t *r = w->data;
    mg_conn_t    *c = r->conn;

    (void) revents;
    ev_timer_stop(loop, w);
    mg_time_update(ev_now(loop));
    MG_CONN_ENTER(c);
    mg_proxy_connect(r);
    MG_CONN_LEAVE(c);
    mg_worker_ready_flush();
}

static void
mg_proxy_retry_later(mg_request_t *r)
{
    uint64_t d = MG_RETRY_BASE_MS;
    int      k;

    for (k = 1; k < r->tries && d < MG_RETRY_MAX_MS; k++) {
        d <<= 1;
    }
    if (d > MG_RETRY_MAX_MS) {
        d = MG_RETRY_MAX_MS;
    }
    d = d / 2 + mg_worker_random() % (d / 2 + 1);
    r->ustate = MG_REQ_UPSTREAM_NONE;
    ev_timer_init(&r->retry_timer, mg_proxy_retry_cb, (double) d / 1000.0, 0.);
    r->retry_timer.data = r;
    ev_timer_start(mg_worker->loop, &r->retry_timer);
}

/* Every pick is released once: least-connections counts what is in
 * flight, latency learns the time to the first response byte. */
static void
mg_proxy_release(mg_request_t *r, int failed)
{
    mg_upstream_rt_t *up = r->svc ? r->svc->upstream : NULL;
    double            ms = 0;

    if (!r->bheld || up == NULL || up->balancer == NULL) {
        return;
    }
    r->bheld = 0;
    if (!failed && r->upstream_first > r->try_start) {
        ms = (r->upstream_first - r->try_start) * 1000;
    }
    mg_balancer_release(up->balancer, r->bidx, ms, failed);
}

/* The consistent-hashing key, once per request (retries reuse it). */
static void
mg_proxy_hash_key(mg_request_t *r)
{
    const mg_upstream_t *u = r->svc->service->upstream;
    mg_balancer_req_t    br;
    char                 ip[INET6_ADDRSTRLEN];
    size_t               clen = mg_balancer_cookie_size(u), slen = 0;
    char                *cbuf = clen ? mg_pool_alloc(r->pool, clen) : NULL;

    r->key_done = 1;
    memset(&br, 0, sizeof(br));
    br.client_ip.data = ip;
    br.client_ip.len = mg_conn_peer_ip(r->conn, ip, sizeof(ip));
    br.path = r->npath;
    br.query = r->query;
    br.get_header = mg_http_request_header;
    br.header_ctx = r;
    br.ncaptures = r->match.ncaptures;
    br.capture_names = r->match.capture_names;
    br.captures = r->match.captures;
    if (mg_balancer_hash_key(u, &br, &r->key, cbuf, cbuf ? clen : 0, &slen)
        && slen > 0)
    {
        r->set_cookie.data = cbuf;
        r->set_cookie.len = slen;
    }
}

/* Passive health: tell the shared state how this try to a target went. */
static void
mg_proxy_report(mg_request_t *r, int kind, int status)
{
    const mg_upstream_t *up = r->svc->service->upstream;

    if (up && r->bidx >= 0 && r->rt->health) {
        mg_health_report(r->rt->health, up->index, (size_t) r->bidx, kind,
                         status);
    }
}

/* The current try failed before any response byte reached the client. */
static void
mg_proxy_next(mg_request_t *r, const char *err, int status)
{
    const mg_service_t *s = r->svc->service;
    mg_upconn_t        *u = r->u;
    int                 sent = r->ustate > MG_REQ_UPSTREAM_CONNECTING;
    int                 stale = u && u->reused && r->upstream_first == 0
                                && err != mg_err_timeout;
    int                 replay = r->body_replayable || r->body_seen == 0;

    mg_log_error("*%llu upstream %s: %s while %s, client: request \"%.*s %.*s\"",
                 (unsigned long long) r->conn->id, r->peer->name, err,
                 r->ustate == MG_REQ_UPSTREAM_CONNECTING ? "connecting"
                 : r->ustate == MG_REQ_UPSTREAM_SENDING ? "sending the request"
                 : "reading the response head",
                 (int) r->head.method.len, r->head.method.data,
                 (int) r->path.len, r->path.data);
    r->error = err;
    if (!stale) {
        mg_proxy_report(r, err == mg_err_timeout ? MG_HEALTH_TIMEOUT
                                                 : MG_HEALTH_TCP_FAILURE, 0);
    }
    mg_proxy_release(r, 1);
    if (u) {
        r->u = NULL;
        mg_upconn_close(u);
    }
    if (r->response_started) {
        mg_http_request_abort(r, err);
        return;
    }
    if (stale && replay) {
        /* a pooled connection the server had already closed */
        r->tries--;
        mg_proxy_connect(r);
        return;
    }
    if (r->tries <= s->retries && replay
        && (!sent || mg_proxy_idempotent(r)))
    {
        mg_proxy_retry_later(r);
        return;
    }
    r->ustate = MG_REQ_UPSTREAM_NONE;
    mg_http_send_error(r, status, NULL);
}

void
mg_proxy_start(mg_request_t *r)
{
    mg_conn_t *c = r->conn;

    if (r->svc->upstream && r->svc->upstream->npeers > 0) {
        r->tried = mg_pool_calloc(r->pool, (r->svc->upstream->npeers + 7) / 8);
    }
    r->body_base = c->in->pos;
    if (r->has_body && r->body_replayable && !r->lua_body_done) {
        /* the whole body is buffered: keep it for retries */
        r->body_ptr = c->in->pos;
        r->body_len = (size_t) r->head.content_length;
        c->in->pos += r->head.content_length;
        r->body_seen = (uint64_t) r->head.content_length;
        r->body_done = 1;
    }
    if (r->up_body.data) {
        /* a plugin's body replaces the client's (already consumed) */
        r->body_ptr = (char *) r->up_body.data;
        r->body_len = r->up_body.len;
        r->body_done = 1;
    }
    if (r->head.expect_continue && r->has_body && !r->body_done
        && r->head.http_minor >= 1 && mg_buf_len(c->in) == 0)
    {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec ci = { (void *) cont, sizeof(cont) - 1 };
        if (c->io->writev(c, &ci, 1) != (ssize_t) sizeof(cont) - 1)
        {
            mg_http_request_abort(r, mg_err_io);
            return;
        }
        r->continue_sent = 1;
    }
    if (!r->body_done) {
        mg_conn_timer_set(c, mg_worker->conf->client_body_timeout);
    }
    mg_proxy_connect(r);
}

/* The TLS server name: the Host sent upstream, without its port. */
static void
mg_proxy_sni(mg_request_t *r, char *sni, size_t len)
{
    size_t      n = r->uhost.len;
    const char *colon = n && r->uhost.data[0] != '['
                            ? memchr(r->uhost.data, ':', n) : NULL;

    if (colon) {
        n = (size_t) (colon - r->uhost.data);
    }
    n = mg_min(n, len - 1);
    memcpy(sni, r->uhost.data, n);
    sni[n] = '\0';
}

/* FNV-1a over the peer's current address and, for TLS, the server name. */
static uint64_t
mg_proxy_pool_key(mg_request_t *r)
{
    const unsigned char *p = (const unsigned char *) &r->peer->addr;
    uint64_t             h = 0xcbf29ce484222325ULL;
    socklen_t            i;
    char                 sni[256];

    for (i = 0; i < r->peer->addrlen; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    if (r->svc->tls_client) {
        mg_proxy_sni(r, sni, sizeof(sni));
        for (p = (const unsigned char *) sni; *p; p++) {
            h = (h ^ *p) * 0x100000001b3ULL;
        }
        h ^= 0x9e3779b97f4a7c15ULL;
    }
    return h;
}

static void mg_proxy_connect_peer(mg_request_t *r);

/* Apply a DNS answer to r's peer; 0 when it has an address now. */
static int
mg_proxy_dns_apply(mg_request_t *r, const mg_dns_result_t *res)
{
    mg_peer_t           *peer = r->peer;
    const mg_dns_addr_t *a;

    if (res->status != MG_OK || res->naddrs == 0) {
        mg_log_error("*%llu could not resolve \"%s\": %s",
                     (unsigned long long) r->conn->id, peer->dns_name,
                     res->error ? res->error : "no address");
        r->error = "name resolution failed";
        mg_http_send_error(r, 503, "name resolution failed");
        return -1;
    }
    a = &res->addrs[peer->rr++ % res->naddrs];
    mg_peer_set_address(peer, &a->addr, a->addrlen, a->port);
    return 0;
}

static void
mg_proxy_dns_cb(void *ctx, const mg_dns_result_t *res)
{
    mg_request_t *r = ctx;
    mg_conn_t    *c = r->conn;

    r->dns_handle = NULL;
    MG_CONN_ENTER(c);
    if (mg_proxy_dns_apply(r, res) == 0) {
        mg_proxy_connect_peer(r);
    }
    MG_CONN_LEAVE(c);
    mg_worker_ready_flush();
}

static void
mg_proxy_connect(mg_request_t *r)
{
    mg_peer_t      *peer = mg_proxy_pick(r);
    mg_dns_result_t res;
    int             rc;

    if (peer == NULL) {
        return;          /* answered: r is gone */
    }
    r->peer = peer;
    r->tries++;
    if (r->upstream_start == 0) {
        r->upstream_start = mg_time_now;
    }
    /* A name is resolved for every try: the cache answers at once while
     * the TTL lasts (a stale answer is used while it refreshes), and the
     * pooled connection must be one to the address it gives now. */
    if (peer->dns_name) {
        if (mg_worker->dns == NULL) {
            mg_http_send_error(r, 503, "name resolution failed");
            return;
        }
        rc = mg_dns_resolve(mg_worker->dns, peer->dns_name, &res,
                            mg_proxy_dns_cb, r, &r->dns_handle);
        if (rc == MG_AGAIN) {
            r->ustate = MG_REQ_UPSTREAM_RESOLVING;
            return;
        }
        if (mg_proxy_dns_apply(r, &res) != 0) {
            return;
        }
    }
    mg_proxy_connect_peer(r);
}

static void
mg_proxy_connect_peer(mg_request_t *r)
{
    const mg_service_t *s = r->svc->service;
    const char         *err = NULL;
    mg_upconn_t        *u;

    r->bsent = 0;
    if (mg_proxy_build_head(r) != MG_OK) {
        mg_http_send_error(r, 500, NULL);
        return;
    }
    u = mg_upconn_get(r->peer, mg_proxy_pool_key(r), r, mg_proxy_handler,
                      &err);
    if (u == NULL) {
        r->ustate = MG_REQ_UPSTREAM_CONNECTING;
        mg_proxy_next(r, err, 502);
        return;
    }
    r->u = u;
    if (u->connecting) {
        r->ustate = MG_REQ_UPSTREAM_CONNECTING;
        mg_upconn_timer(u, s->connect_timeout);
        return;
    }
    r->ustate = MG_REQ_UPSTREAM_SENDING;
    mg_proxy_send(r);
}

/* --- request body -------------------------------------------------- */

static int
mg_proxy_count_chunk(void *ctx, const char *p, size_t n)
{
    mg_request_t *r = ctx;
    size_t        max = mg_worker->conf->client_max_body_size;

    (void) p;
    r->body_seen += n;
    if (max > 0 && r->body_seen > max) {
        r->body_too_large = 1;
        return 1;
    }
    return 0;
}

static void
mg_proxy_send(mg_request_t *r)
{
    mg_conn_t          *c = r->conn;
    mg_buf_t           *b = c->in;
    mg_upconn_t        *u = r->u;
    const mg_service_t *s = r->svc->service;
    struct iovec        iov[2];
    int                 n = 0;
    size_t              head_left = r->uhead_len - r->uhead_sent;
    size_t              span = 0;
    ssize_t             w;

    if (head_left) {
        iov[n].iov_base = r->uhead + r->uhead_sent;
        iov[n].iov_len = head_left;
        n++;
    }
    if (r->body_ptr) {
        span = r->body_len - r->bsent;
        if (span) {
            iov[n].iov_base = r->body_ptr + r->bsent;
            iov[n].iov_len = span;
            n++;
        }
    } else if (!r->body_done || r->body_inflight) {
        size_t avail = mg_buf_len(b);
        if (r->body_chunked) {
            if (avail > r->body_inflight && !mg_http_parser_done(&r->parser)) {
                ssize_t k = mg_http_body_feed(&r->parser, b->pos + r->body_inflight,
                                              avail - r->body_inflight,
                                              mg_proxy_count_chunk, r);
                if (k < 0) {
                    r->keepalive = 0;
                    if (!r->response_started) {
                        /* the upstream connection is dropped with it */
                        mg_http_send_error(r, r->body_too_large ? 413 : 400, NULL);
                    } else {
                        mg_http_request_abort(r, mg_err_io);
                    }
                    return;
                }
                r->body_inflight += (size_t) k;
            }
            span = r->body_inflight;
        } else {
            span = (size_t) mg_min((int64_t) avail, r->body_left);
        }
        if (span) {
            iov[n].iov_base = b->pos;
            iov[n].iov_len = span;
            n++;
        }
    }
    if (n == 0) {
        goto sent;
    }
    w = mg_upconn_writev(u, iov, n);
    if (w < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            mg_upconn_want_write(u, 1);
            mg_upconn_timer(u, s->write_timeout);
            r->upstream_blocked = 1;
            return;
        }
        mg_proxy_next(r, errno == ECONNRESET || errno == EPIPE ? mg_err_reset
                                                               : mg_err_io, 502);
        return;
    }
    if ((size_t) w < head_left) {
        r->uhead_sent += (size_t) w;
        mg_upconn_want_write(u, 1);
        mg_upconn_timer(u, s->write_timeout);
        r->upstream_blocked = 1;
        return;
    }
    r->uhead_sent = r->uhead_len;
    w -= (ssize_t) head_left;
    if (r->body_ptr) {
        r->bsent += (size_t) w;
    } else if (w > 0) {
        b->pos += w;
        r->bsent += (size_t) w;
        if (r->body_chunked) {
            r->body_inflight -= (size_t) w;
            if (r->body_inflight == 0 && mg_http_parser_done(&r->parser)) {
                r->body_done = 1;
            }
        } else {
            r->body_left -= w;
            r->body_seen += (uint64_t) w;
            if (r->body_left == 0) {
                r->body_done = 1;
            }
        }
        if (mg_buf_len(b) == 0) {
            b->pos = b->last = r->body_base;
        }
        mg_conn_read_resume(c);
    }
    if ((size_t) w < span) {
        mg_upconn_want_write(u, 1);
        mg_upconn_timer(u, s->write_timeout);
        r->upstream_blocked = 1;
        return;
    }

sent:
    r->upstream_blocked = 0;
    mg_upconn_want_write(u, 0);
    if (r->body_done && r->body_inflight == 0
        && (!r->body_ptr || r->bsent == r->body_len))
    {
        if (r->ustate == MG_REQ_UPSTREAM_SENDING) {
            r->ustate = MG_REQ_UPSTREAM_WAITING;
            mg_conn_timer_set(c, 0);
            mg_upconn_timer(u, s->read_timeout);
        }
        return;
    }
    /* waiting for more body from the client */
    mg_conn_timer_set(c, mg_worker->conf->client_body_timeout);
    mg_upconn_timer(u, s->read_timeout);
    mg_conn_read_resume(c);
}

void
mg_proxy_client_input(mg_request_t *r)
{
    if (r->lua_body_reading) {
        mg_lua_body_input(r);
        return;
    }
    if (r->tunnel) {
        if (r->u && !r->u->write_armed) {
            mg_proxy_tunnel_c2u(r);
        }
        return;
    }
    if (r->ustate == MG_REQ_UPSTREAM_SENDING && !r->upstream_blocked
        && !r->body_done && r->u)
    {
        mg_proxy_send(r);
    } else if (!r->body_done && r->ustate < MG_REQ_UPSTREAM_SENDING) {
        /* connecting: keep the bytes; stop when the buffer fills */
        if (mg_buf_room(r->conn->in) == 0) {
            mg_conn_read_pause(r->conn);
        }
    } else if (!r->body_done && r->ustate >= MG_REQ_UPSTREAM_WAITING) {
        /* response already under way and body still coming: the
         * upstream answered early; drop what arrives */
        mg_buf_t *b = r->conn->in;
        b->pos = b->last = r->body_base;
    } else if (r->body_done && mg_buf_room(r->conn->in) == 0) {
        mg_conn_read_pause(r->conn);
    }
}

/* --- response ------------------------------------------------------ */

static int
mg_proxy_skip_resp_header(mg_str_t n)
{
#define IS(lit) (n.len == sizeof(lit) - 1 && strncasecmp(n.data, lit, n.len) == 0)
    switch (n.len) {
    case 2:  return IS("te");
    case 7:  return IS("trailer") || IS("upgrade");
    case 10: return IS("connection") || IS("keep-alive");
    case 16: return IS("proxy-connection");
    case 17: return IS("transfer-encoding");
    }
    return 0;
#undef IS
}

static int
mg_proxy_build_client_head(mg_request_t *r)
{
    mg_conf_t      *conf = mg_worker->conf;
    mg_http_head_t *h = &r->rhead;
    size_t          i, cap = 544 + r->set_cookie.len
                               + mg_proxy_mods_size(r->resp_mods);
    char           *p;
    int             conn_tokens = h->connection.len > 0
                                  && !mg_str_caseeq_lit(h->connection, "keep-alive")
                                  && !mg_str_caseeq_lit(h->connection, "close");

    for (i = 0; i < h->nheaders; i++) {
        cap += h->headers[i].name.len + h->headers[i].value.len + 4;
    }
    cap += h->reason.len;
    p = mg_pool_alloc(r->pool, cap);
    if (p == NULL) {
        return MG_ERROR;
    }
    r->ohead = p;
    APPEND_LIT(p, "HTTP/1.1 ");
    p = mg_fmt_u64(p, (uint64_t) (r->status_override ? r->status_override
                                                      : h->status));
    *p++ = ' ';
    if (r->status_override) {
        const char *rs = mg_http_reason(r->status_override);
        APPEND(p, rs, strlen(rs));
    } else if (h->reason.len) {
        APPEND(p, h->reason.data, h->reason.len);
    } else {
        const char *rs = mg_http_reason(h->status);
        APPEND(p, rs, strlen(rs));
    }
    APPEND_LIT(p, "\r\n");
    for (i = 0; i < h->nheaders; i++) {
        const mg_http_header_t *hd = &h->headers[i];
        if (((mg_proxy_skip_resp_header(hd->name)
              || (conn_tokens && mg_proxy_conn_token(h->connection, hd->name)))
             && !(r->tunnel && mg_str_caseeq_lit(hd->name, "upgrade")))
            || (r->resp_mods && mg_proxy_mod_replaces(r->resp_mods, hd->name))
            || ((r->lua_bf || r->resp_buffered) && !r->resp_no_body
                && mg_str_caseeq_lit(hd->name, "content-length")))
        {
            continue;       /* (a plugin may change the length) */
        }
        APPEND(p, hd->name.data, hd->name.len);
        *p++ = ':';
        *p++ = ' ';
        APPEND(p, hd->value.data, hd->value.len);
        *p++ = '\r';
        *p++ = '\n';
    }
    if (r->resp_buffered) {
        if (!r->resp_no_body) {
            /* the whole (final) body is known: its length in resp_left */
            APPEND_LIT(p, "Content-Length: ");
            p = mg_fmt_u64(p, (uint64_t) r->resp_left);
            APPEND_LIT(p, "\r\n");
        }
    } else if (r->resp_chunked
        || (r->lua_bf && !r->resp_no_body && r->head.http_minor >= 1))
    {
        APPEND_LIT(p, "Transfer-Encoding: chunked\r\n");
    } else if (r->lua_bf && !r->resp_no_body) {
        r->keepalive = 0;       /* HTTP/1.0: the close ends the body */
    }
    p = mg_proxy_mods_append(p, r->resp_mods);
    if (r->set_cookie.len) {
        APPEND_LIT(p, "Set-Cookie: ");
        APPEND(p, r->set_cookie.data, r->set_cookie.len);
        APPEND_LIT(p, "\r\n");
    }
    if (conf->headers & MG_HDR_VIA) {
        APPEND_LIT(p, "Via: 1.1 " MOONGATE_VER "\r\n");
    }
    if (conf->headers & MG_HDR_UPSTREAM_LATENCY) {
        APPEND_LIT(p, "X-Kong-Upstream-Latency: ");
        p = mg_fmt_u64(p, mg_proxy_ms(r->upstream_first - r->upstream_start));
        APPEND_LIT(p, "\r\n");
    }
    if (conf->headers & MG_HDR_PROXY_LATENCY) {
        APPEND_LIT(p, "X-Kong-Proxy-Latency: ");
        p = mg_fmt_u64(p, mg_proxy_ms(r->upstream_start - r->start));
        APPEND_LIT(p, "\r\n");
    }
    if (conf->headers & MG_HDR_UPSTREAM_STATUS) {
        APPEND_LIT(p, "X-Kong-Upstream-Status: ");
        p = mg_fmt_u64(p, (uint64_t) h->status);
        APPEND_LIT(p, "\r\n");
    }
    if (conf->headers & MG_HDR_REQUEST_ID) {
        APPEND_LIT(p, "X-Kong-Request-Id: ");
        APPEND(p, r->request_id, 32);
        APPEND_LIT(p, "\r\n");
    }
    if (r->tunnel) {
        APPEND_LIT(p, "Connection: upgrade\r\n");
    } else if (!r->keepalive) {
        APPEND_LIT(p, "Connection: close\r\n");
    } else if (r->head.http_minor == 0) {
        APPEND_LIT(p, "Connection: keep-alive\r\n");
    }
    APPEND_LIT(p, "\r\n");
    r->out[0].iov_base = r->ohead;
    r->out[0].iov_len = (size_t) (p - r->ohead);
    r->nout = 1;
    return MG_OK;
}

/* The upstream exchange is over: give the connection back (to the pool
 * when it can carry another request). */
static void
mg_proxy_upstream_done(mg_request_t *r)
{
    mg_upconn_t *u = r->u;
    int          ka;

    r->upstream_end = mg_time_now;
    r->ustate = MG_REQ_UPSTREAM_DONE;
    mg_proxy_release(r, 0);
    if (u) {
        ka = r->rhead.keepalive && !r->upstream_eof_body && r->body_done
             && r->body_inflight == 0 && r->uhead_sent == r->uhead_len
             && (!r->body_ptr || r->bsent == r->body_len)
             && !r->upstream_blocked;
        r->u = NULL;
        mg_upconn_timer(u, 0);
        mg_upconn_release(u, ka);
    }
}

static void
mg_proxy_finish(mg_request_t *r)
{
    mg_proxy_upstream_done(r);
    mg_http_request_done(r);
}

/* --- tunnel (101 Switching Protocols) -------------------------------- */

/*
 * After a 101 both connections carry raw bytes: client -> upstream from
 * conn->in (after the head, which stays in place for the access log),
 * upstream -> client from u->in through r->out.  Each direction stops
 * reading while the other side's socket is full.  The upstream timer is
 * the idle timeout (the service's read_timeout, as nginx's
 * proxy_read_timeout for WebSocket).  Either side closing ends the tunnel;
 * the connection is never pooled.
 */
static void
mg_proxy_tunnel_c2u(mg_request_t *r)
{
    mg_conn_t *c = r->conn;
    mg_buf_t  *b = c->in;
    mg_upconn_t *u = r->u;
    ssize_t    n;

    while (u && mg_buf_len(b) > 0) {
        struct iovec iov = { b->pos, mg_buf_len(b) };
        n = mg_upconn_writev(u, &iov, 1);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                mg_upconn_want_write(u, 1);
                mg_conn_read_pause(c);
                return;
            }
            mg_http_request_abort(r, mg_err_reset);
            return;
        }
        b->pos += n;
    }
    b->pos = b->last = r->body_base;
    mg_conn_read_resume(c);
    if (u) {
        mg_upconn_timer(u, r->svc->service->read_timeout);
    }
}

static int
mg_proxy_tunnel_u2c(mg_request_t *r)
{
    mg_upconn_t *u = r->u;
    mg_buf_t    *b = u->in;
    int          rc;

    if (mg_buf_len(b) > 0) {
        r->out[r->nout].iov_base = b->pos;
        r->out[r->nout].iov_len = mg_buf_len(b);
        r->nout++;
        r->body_sent += mg_buf_len(b);
        b->pos = b->last;
    }
    rc = mg_http_write_out(r);
    if (rc == MG_AGAIN) {
        ev_io_stop(mg_worker->loop, &u->rev);
        return MG_AGAIN;
    }
    if (rc == MG_OK) {
        b->pos = b->last = b->start;
        mg_upconn_timer(u, r->svc->service->read_timeout);
    }
    return rc;
}

static int
mg_proxy_tunnel_start(mg_request_t *r)
{
    r->tunnel = 1;
    r->keepalive = 0;
    r->resp_no_body = 1;
    mg_conn_timer_set(r->conn, 0);
    if (mg_proxy_build_client_head(r) != MG_OK) {
        mg_proxy_next(r, mg_err_io, 502);
        return MG_ERROR;
    }
    if (mg_proxy_tunnel_u2c(r) == MG_ERROR) {
        return MG_ERROR;
    }
    /* bytes the client sent after its head go up now */
    mg_proxy_tunnel_c2u(r);
    return MG_AGAIN;
}

/* One side of the tunnel closed: finish what is queued, then close. */
static void
mg_proxy_tunnel_end(mg_request_t *r)
{
    mg_upconn_t *u = r->u;

    r->u = NULL;
    r->upstream_end = mg_time_now;
    r->ustate = MG_REQ_UPSTREAM_DONE;
    r->response_done = 1;
    if (u) {
        mg_upconn_close(u);
    }
    if (r->nout == 0) {
        mg_http_request_done(r);
    }
}

static void
mg_proxy_tunnel_read(mg_request_t *r)
{
    mg_upconn_t *u = r->u;
    ssize_t      n;

    if (u->in == NULL && (u->in = mg_buf_get(MG_BUF_SIZE)) == NULL) {
        mg_http_request_abort(r, mg_err_io);
        return;
    }
    if (mg_buf_len(u->in) > 0) {
        return;                 /* still waiting for the client */
    }
    u->in->pos = u->in->last = u->in->start;
    n = mg_upconn_recv(u, u->in->last, mg_buf_room(u->in));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
        mg_proxy_tunnel_end(r);
        return;
    }
    if (n == 0) {
        mg_proxy_tunnel_end(r);
        return;
    }
    u->in->last += n;
    mg_proxy_tunnel_u2c(r);
}

/* --- body_filter (Lua plugins) --------------------------------------- */

/*
 * With body_filter plugins on the route the body goes through them piece
 * by piece, decoded whatever the upstream's framing, and leaves chunked
 * (HTTP/1.0 clients: close-delimited) since a plugin may change its
 * length.  Each piece still leaves as soon as it arrived: streaming
 * (SSE) is not buffered by the filter.
 */
static int
mg_proxy_emit(mg_request_t *r, const char *data, size_t len, int eof)
{
    static const char crlf[] = "\r\n";
    static const char last[] = "0\r\n\r\n";
    const char       *out;
    size_t            on;
    char             *p;

    if (mg_lua_body_filter(r, data, len, eof, &out, &on) != MG_OK) {
        return MG_ERROR;
    }
    if (r->head.http_minor >= 1) {
        if (on) {
            static const char hex[] = "0123456789abcdef";
            char   tmp[20];
            size_t k = 0, v = on;
            do {
                tmp[k++] = hex[v & 15];
                v >>= 4;
            } while (v);
            p = r->bf_size;
            while (k) {
                *p++ = tmp[--k];
            }
            *p++ = '\r';
            *p++ = '\n';
            r->out[r->nout].iov_base = r->bf_size;
            r->out[r->nout++].iov_len = (size_t) (p - r->bf_size);
            r->out[r->nout].iov_base = (void *) out;
            r->out[r->nout++].iov_len = on;
            r->out[r->nout].iov_base = (void *) crlf;
            r->out[r->nout++].iov_len = 2;
        }
        if (eof) {
            r->out[r->nout].iov_base = (void *) last;
            r->out[r->nout++].iov_len = sizeof(last) - 1;
        }
    } else if (on) {
        r->out[r->nout].iov_base = (void *) out;
        r->out[r->nout++].iov_len = on;
    }
    r->body_sent += on;
    return MG_OK;
}

static int
mg_proxy_process_filtered(mg_request_t *r, mg_upconn_t *u, mg_buf_t *b)
{
    size_t      avail = mg_buf_len(b), dlen = 0;
    const char *data = b->pos;
    int         complete = 0, rc;

    if (r->resp_chunked) {
        ssize_t k;
        r->bf_in_len = 0;
        k = avail ? mg_http_body_feed(&r->rparser, b->pos, avail,
                                      mg_lua_bf_collect, r) : 0;
        if (k < 0) {
            mg_log_error("*%llu upstream %s sent invalid chunked response",
                         (unsigned long long) r->conn->id, r->peer->name);
            mg_http_request_abort(r, "invalid chunked body");
            return MG_ERROR;
        }
        b->pos += k;
        data = r->bf_in;
        dlen = r->bf_in_len;
        complete = mg_http_parser_done(&r->rparser);
    } else if (r->resp_left >= 0) {
        dlen = (size_t) mg_min((int64_t) avail, r->resp_left);
        r->resp_left -= (int64_t) dlen;
        b->pos += dlen;
        complete = r->resp_left == 0;
    } else {
        dlen = avail;
        b->pos += dlen;
    }
    if ((dlen || complete) && mg_proxy_emit(r, data, dlen, complete) != MG_OK) {
        if (!r->response_started) {
            r->nout = 0;
            mg_http_send_error(r, 500, NULL);
        } else {
            mg_http_request_abort(r, "body_filter failed");
        }
        return MG_ERROR;
    }
    if (complete) {
        r->response_done = 1;
    }
    rc = mg_http_write_out(r);
    if (rc == MG_ERROR) {
        return MG_ERROR;
    }
    if (rc == MG_AGAIN) {
        ev_io_stop(mg_worker->loop, &u->rev);
        return MG_AGAIN;
    }
    if (b->pos == b->last) {
        b->pos = b->last = b->start;
    }
    if (complete) {
        mg_proxy_finish(r);
        return MG_DONE;
    }
    return MG_OK;
}

/*
 * The response phase (Kong's buffered proxying): the upstream's head is
 * copied out of the read buffer (the buffer is reused for the body and
 * the connection goes back to the pool before the phase runs), the body
 * is decoded into r->bf_in up to response_phase_max_body_size, then the
 * phase runs (mg_lua_response) and mg_proxy_send_buffered() sends what
 * it left.  Routes without a response plugin never come here.
 */
static void
mg_proxy_rebase(mg_str_t *s, const char *from, size_t len, char *to)
{
    if (s->data >= from && s->data < from + len) {
        s->data = to + (s->data - from);
    }
}

static int
mg_proxy_head_keep(mg_request_t *r, const char *p, size_t len)
{
    mg_http_head_t *h = &r->rhead;
    char           *copy = mg_pool_alloc(r->pool, len);
    size_t          i;

    if (copy == NULL) {
        return MG_ERROR;
    }
    memcpy(copy, p, len);
    mg_proxy_rebase(&h->reason, p, len, copy);
    mg_proxy_rebase(&h->host, p, len, copy);
    mg_proxy_rebase(&h->connection, p, len, copy);
    for (i = 0; i < h->nheaders; i++) {
        mg_proxy_rebase(&h->headers[i].name, p, len, copy);
        mg_proxy_rebase(&h->headers[i].value, p, len, copy);
    }
    return MG_OK;
}

static int
mg_proxy_process_buffered(mg_request_t *r, mg_upconn_t *u, mg_buf_t *b)
{
    size_t avail = mg_buf_len(b), n;
    int    complete = 0;

    (void) u;
    if (r->resp_no_body) {
        complete = 1;
    } else if (r->resp_chunked) {
        ssize_t k = avail ? mg_http_body_feed(&r->rparser, b->pos, avail,
                                              mg_lua_resp_collect, r) : 0;
        if (k < 0 && !r->resp_too_large) {
            mg_log_error("*%llu upstream %s sent invalid chunked response",
                         (unsigned long long) r->conn->id, r->peer->name);
            mg_http_send_error(r, 502, NULL);
            return MG_ERROR;
        }
        if (k > 0) {
            b->pos += k;
        }
        complete = mg_http_parser_done(&r->rparser);
    } else {
        n = r->resp_left >= 0 ? (size_t) mg_min((int64_t) avail, r->resp_left)
                              : avail;
        if (n && mg_lua_resp_collect(r, b->pos, n) == 0) {
            b->pos += n;
            if (r->resp_left >= 0) {
                r->resp_left -= (int64_t) n;
                complete = r->resp_left == 0;
            }
        }
    }
    if (r->resp_too_large) {
        mg_log_error("*%llu upstream %s: response body larger than "
                     "response_phase_max_body_size (%zu bytes), which a "
                     "plugin's response phase must buffer",
                     (unsigned long long) r->conn->id, r->peer->name,
                     mg_worker->conf->response_phase_max_body_size);
        mg_http_send_error(r, 502, "upstream response too large to buffer "
                           "for the response phase");
        return MG_ERROR;
    }
    if (b->pos == b->last) {
        b->pos = b->last = b->start;
    }
    if (!complete) {
        return MG_OK;
    }
    mg_proxy_upstream_done(r);
    mg_lua_response(r);         /* may finish r: not touched after */
    return MG_DONE;
}

void
mg_proxy_send_buffered(mg_request_t *r)
{
    const char *body = r->bf_in ? r->bf_in : "";
    size_t      blen = r->bf_in_len;
    const char *out;
    size_t      on;

    /* Kong: header_filter and body_filter run on what response left */
    if (mg_lua_header_filter(r) != MG_OK) {
        mg_http_send_error(r, 500, NULL);
        return;
    }
    if (r->lua_bf && !r->resp_no_body) {
        if (mg_lua_body_filter(r, body, blen, 1, &out, &on) != MG_OK) {
            mg_http_send_error(r, 500, NULL);
            return;
        }
        body = out;
        blen = on;
    }
    if (r->resp_no_body) {
        blen = 0;
    }
    r->resp_left = (int64_t) blen;
    if (mg_proxy_build_client_head(r) != MG_OK) {
        mg_http_send_error(r, 500, NULL);
        return;
    }
    if (blen) {
        r->out[1].iov_base = (void *) body;
        r->out[1].iov_len = blen;
        r->nout = 2;
        r->body_sent += blen;
    }
    r->response_done = 1;
    if (mg_http_write_out(r) == MG_OK) {
        mg_http_request_done(r);
    }
}

/* Consume what u->in holds.  MG_OK: read more; MG_AGAIN: client blocked;
 * MG_DONE/MG_ERROR: the request is finished or gone. */
static int
mg_proxy_process(mg_request_t *r)
{
    mg_upconn_t *u = r->u;
    mg_buf_t    *b = u->in;
    size_t       avail, span = 0;
    int          complete = 0, rc;

    while (!r->rhead.status) {
        size_t hl, line;
        hl = mg_http_head_end(b->pos, mg_buf_len(b), &line);
        if (hl == 0) {
            if (mg_buf_len(b) >= MG_PROXY_MAX_RESP_HEAD) {
                mg_log_error("*%llu upstream %s sent too big a header",
                             (unsigned long long) r->conn->id, r->peer->name);
                mg_proxy_next(r, "invalid header", 502);
                return MG_ERROR;
            }
            if (mg_buf_room(b) == 0) {
                mg_buf_t *nb;
                mg_buf_compact(b);
                if (mg_buf_room(b) == 0) {
                    nb = mg_buf_grow(b, MG_PROXY_MAX_RESP_HEAD + MG_BUF_SIZE);
                    if (nb == NULL) {
                        mg_proxy_next(r, mg_err_io, 502);
                        return MG_ERROR;
                    }
                    u->in = b = nb;
                }
            }
            return MG_OK;
        }
        if (r->rhdrs == NULL) {
            r->rhdrs = mg_pool_alloc(r->pool, sizeof(mg_http_header_t)
                                                  * MG_HTTP_MAX_RESP_HEADERS);
            if (r->rhdrs == NULL) {
                mg_proxy_next(r, mg_err_io, 502);
                return MG_ERROR;
            }
        }
        rc = mg_http_parse_head(&r->rparser, MG_HTTP_RESPONSE, b->pos, hl,
                                &r->rhead, r->rhdrs, MG_HTTP_MAX_RESP_HEADERS,
                                r->head_method);
        if (rc != MG_HTTP_OK) {
            mg_log_error("*%llu upstream %s sent an invalid header (%d)",
                         (unsigned long long) r->conn->id, r->peer->name, rc);
            r->rhead.status = 0;
            mg_proxy_next(r, "invalid header", 502);
            return MG_ERROR;
        }
        if (r->rhead.status >= 100 && r->rhead.status < 200
            && r->rhead.status != 101)
        {
            /* interim response: pass 103 and friends to HTTP/1.1 clients
             * when the socket takes them at once, else drop them */
            if (r->head.http_minor >= 1 && r->rhead.status != 100
                && !r->conn->ssl)
            {
                /* (not over TLS: a record that would block must be
                 * written again with the same bytes, and an optional
                 * hint is not worth holding the response for) */
                ssize_t w = send(r->conn->fd, b->pos, hl, MSG_NOSIGNAL);
                (void) w;
            }
            b->pos += hl;
            r->rhead.status = 0;
            continue;
        }
        b->pos += hl;
        r->upstream_status = r->status = r->rhead.status;
        mg_proxy_report(r, MG_HEALTH_HTTP_STATUS, r->rhead.status);
        if (r->rhead.status == 101) {
            if (!r->head.upgrade) {
                mg_log_error("*%llu upstream %s switched protocols on a "
                             "request that asked for no upgrade",
                             (unsigned long long) r->conn->id, r->peer->name);
                mg_proxy_next(r, "invalid header", 502);
                return MG_ERROR;
            }
            return mg_proxy_tunnel_start(r);
        }
        r->resp_no_body = r->head_method || r->rhead.status == 204
                          || r->rhead.status == 304 || r->rhead.status < 200;
        if (!r->resp_no_body) {
            if (r->rhead.chunked) {
                r->resp_chunked = 1;
            } else if (r->rhead.content_length >= 0) {
                r->resp_left = r->rhead.content_length;
            } else {
                r->upstream_eof_body = 1;
                r->keepalive = 0;
            }
        }
        if (mg_worker->shutting_down) {
            r->keepalive = 0;
        }
        if (r->lua && (r->lua_mask & MG_LUA_PHASE_response)) {
            /* Kong's buffered proxying: the whole response first, then
             * the response phase, then the filters (send_buffered) */
            if (mg_proxy_head_keep(r, b->pos - hl, hl) != MG_OK) {
                mg_proxy_next(r, mg_err_io, 502);
                return MG_ERROR;
            }
            r->resp_buffered = 1;
            break;
        }
        if (r->lua && mg_lua_header_filter(r) != MG_OK) {
            mg_http_send_error(r, 500, NULL);
            return MG_ERROR;
        }
        if (mg_proxy_build_client_head(r) != MG_OK) {
            mg_proxy_next(r, mg_err_io, 502);
            return MG_ERROR;
        }
        break;
    }

    if (r->resp_buffered) {
        return mg_proxy_process_buffered(r, u, b);
    }
    if (r->lua_bf && !r->resp_no_body) {
        return mg_proxy_process_filtered(r, u, b);
    }
    avail = mg_buf_len(b);
    if (r->resp_no_body) {
        complete = 1;
    } else if (r->resp_chunked) {
        ssize_t k = avail ? mg_http_body_feed(&r->rparser, b->pos, avail,
                                              NULL, NULL) : 0;
        if (k < 0) {
            mg_log_error("*%llu upstream %s sent invalid chunked response",
                         (unsigned long long) r->conn->id, r->peer->name);
            if (r->nout && !r->response_started) {
                r->nout = 0;
                mg_proxy_next(r, "invalid chunked body", 502);
            } else {
                mg_http_request_abort(r, "invalid chunked body");
            }
            return MG_ERROR;
        }
        span = (size_t) k;
        complete = mg_http_parser_done(&r->rparser);
    } else if (r->resp_left >= 0) {
        span = (size_t) mg_min((int64_t) avail, r->resp_left);
        r->resp_left -= (int64_t) span;
        complete = r->resp_left == 0;
    } else {
        span = avail;
    }
    if (span) {
        r->out[r->nout].iov_base = b->pos;
        r->out[r->nout].iov_len = span;
        r->nout++;
        b->pos += span;
        r->body_sent += span;
    }
    if (complete) {
        r->response_done = 1;
    }
    rc = mg_http_write_out(r);
    if (rc == MG_ERROR) {
        return MG_ERROR;
    }
    if (rc == MG_AGAIN) {
        ev_io_stop(mg_worker->loop, &u->rev);
        return MG_AGAIN;
    }
    if (b->pos == b->last) {
        b->pos = b->last = b->start;
    }
    if (complete) {
        mg_proxy_finish(r);
        return MG_DONE;
    }
    return MG_OK;
}

static void
mg_proxy_read(mg_request_t *r)
{
    const mg_service_t *s = r->svc->service;
    mg_upconn_t        *u = r->u;
    mg_buf_t           *b;
    ssize_t             n;
    size_t              room;
    int                 rc;

    for (;;) {
        if (u->in == NULL && (u->in = mg_buf_get(MG_BUF_SIZE)) == NULL) {
            mg_proxy_next(r, mg_err_io, 502);
            return;
        }
        b = u->in;
        room = mg_buf_room(b);
        if (room == 0) {
            return;      /* cannot happen: process() drains or grows */
        }
        n = mg_upconn_recv(u, b->last, room);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            if (r->rhead.status) {
                mg_log_error("*%llu upstream %s: %s while reading the response",
                             (unsigned long long) r->conn->id, r->peer->name,
                             strerror(errno));
                mg_http_request_abort(r, mg_err_reset);
                return;
            }
            mg_proxy_next(r, errno == ECONNRESET ? mg_err_reset : mg_err_io, 502);
            return;
        }
        if (n == 0) {
            if (r->rhead.status && r->upstream_eof_body && r->resp_buffered) {
                r->u = NULL;
                mg_upconn_close(u);
                r->upstream_end = mg_time_now;
                r->ustate = MG_REQ_UPSTREAM_DONE;
                mg_lua_response(r);
                return;
            }
            if (r->rhead.status && r->upstream_eof_body) {
                r->response_done = 1;
                r->u = NULL;
                mg_upconn_close(u);
                r->upstream_end = mg_time_now;
                r->ustate = MG_REQ_UPSTREAM_DONE;
                if (r->lua_bf) {
                    if (mg_proxy_emit(r, NULL, 0, 1) != MG_OK) {
                        mg_http_request_abort(r, "body_filter failed");
                        return;
                    }
                    if (mg_http_write_out(r) != MG_OK) {
                        return;     /* written later, or aborted */
                    }
                }
                if (r->nout == 0) {
                    mg_http_request_done(r);
                }
                return;
            }
            if (r->rhead.status) {
                mg_log_error("*%llu upstream %s prematurely closed the "
                             "connection while reading the response body",
                             (unsigned long long) r->conn->id, r->peer->name);
                mg_http_request_abort(r, mg_err_closed);
                return;
            }
            mg_proxy_next(r, mg_err_closed, 502);
            return;
        }
        b->last += n;
        if (r->upstream_first == 0) {
            r->upstream_first = mg_time_now;
            r->ustate = MG_REQ_UPSTREAM_READING;
        }
        rc = mg_proxy_process(r);
        if (rc != MG_OK) {
            return;
        }
        mg_upconn_timer(u, s->read_timeout);
        if ((size_t) n < room && !(u->tls && mg_tls_pending(u->tls) > 0)) {
            return;      /* drained: let epoll say when there is more */
        }
    }
}

void
mg_proxy_client_writable(mg_request_t *r)
{
    mg_upconn_t *u = r->u;
    int          rc = mg_http_write_out(r);

    if (rc != MG_OK) {
        return;
    }
    if (r->tunnel) {
        if (r->response_done) {
            mg_http_request_done(r);
        } else if (u) {
            u->in->pos = u->in->last = u->in->start;
            ev_io_start(mg_worker->loop, &u->rev);
        }
        return;
    }
    if (u && u->in && u->in->pos == u->in->last) {
        u->in->pos = u->in->last = u->in->start;
    }
    if (r->response_done) {
        if (r->ustate == MG_REQ_UPSTREAM_DONE) {
            mg_http_request_done(r);
        } else {
            mg_proxy_finish(r);
        }
        return;
    }
    if (u) {
        ev_io_start(mg_worker->loop, &u->rev);
        if (u->in && mg_buf_len(u->in) > 0) {
            mg_proxy_process(r);
        }
    }
}

static void
mg_proxy_timeout(mg_request_t *r)
{
    switch (r->ustate) {
    case MG_REQ_UPSTREAM_CONNECTING:
    case MG_REQ_UPSTREAM_SENDING:
        mg_proxy_next(r, mg_err_timeout, 504);
        return;
    case MG_REQ_UPSTREAM_WAITING:
    case MG_REQ_UPSTREAM_READING:
        if (r->rhead.status) {
            mg_log_error("*%llu upstream %s timed out while reading the "
                         "response body", (unsigned long long) r->conn->id,
                         r->peer->name);
            mg_http_request_abort(r, mg_err_timeout);
            return;
        }
        mg_proxy_next(r, mg_err_timeout, 504);
        return;
    default:
        return;
    }
}

/* The connect finished (or a TLS handshake step is due). */
static void
mg_proxy_connected(mg_request_t *r, mg_upconn_t *u)
{
    int  rc;
    char sni[256];

    if (u->tls == NULL) {
        int e = mg_upconn_connect_result(u);
        if (e != 0) {
            errno = e;
            mg_proxy_next(r, e == ECONNREFUSED ? mg_err_refused : mg_err_io, 502);
            return;
        }
        if (r->svc->tls_client) {
            mg_proxy_sni(r, sni, sizeof(sni));
            u->tls = mg_tls_conn_client(r->svc->tls_client, u->fd, sni);
            if (u->tls == NULL) {
                mg_proxy_next(r, mg_err_io, 502);
                return;
            }
            mg_tls_conn_set_id(u->tls, r->conn->id);
        }
    }
    if (u->tls) {
        rc = mg_tls_handshake(u->tls);
        if (rc == MG_AGAIN) {
            mg_upconn_want_write(u, mg_tls_want_write(u->tls));
            return;
        }
        if (rc != MG_OK) {
            /* the TLS module logged the reason, naming the service */
            mg_proxy_next(r, "ssl handshake failed", 502);
            return;
        }
    }
    mg_upconn_want_write(u, 0);
    r->ustate = MG_REQ_UPSTREAM_SENDING;
    mg_proxy_send(r);
}

static void
mg_proxy_handler(mg_upconn_t *u, int events)
{
    mg_request_t *r = u->owner;
    mg_conn_t    *c = r->conn;

    MG_CONN_ENTER(c);
    if (r->tunnel) {
        if (events & EV_TIMER) {
            mg_log_info("*%llu tunnel to %s idle for too long, closing",
                        (unsigned long long) c->id, r->peer->name);
            mg_proxy_tunnel_end(r);
        } else {
            if (events & EV_WRITE) {
                mg_proxy_tunnel_c2u(r);
            }
            if ((events & EV_READ) && c->req == r && !c->close_pending
                && r->u == u)
            {
                mg_proxy_tunnel_read(r);
            }
        }
    } else if (events & EV_TIMER) {
        mg_proxy_timeout(r);
    } else if (r->ustate == MG_REQ_UPSTREAM_CONNECTING) {
        mg_proxy_connected(r, u);
    } else {
        if ((events & EV_WRITE) && r->u == u
            && r->ustate <= MG_REQ_UPSTREAM_WAITING)
        {
            r->upstream_blocked = 0;
            mg_proxy_send(r);
        }
        /* the send may have finished the request: r is only read again
         * while it is still the connection's live request */
        if ((events & EV_READ) && c->req == r && !c->close_pending
            && r->u == u)
        {
            mg_proxy_read(r);
        }
    }
    MG_CONN_LEAVE(c);
}

void
mg_proxy_cleanup(mg_request_t *r)
{
    mg_proxy_release(r, r->ustate != MG_REQ_UPSTREAM_DONE);
    if (r->dns_handle) {
        mg_dns_cancel(mg_worker->dns, r->dns_handle);
        r->dns_handle = NULL;
    }
    if (ev_is_active(&r->retry_timer)) {
        ev_timer_stop(mg_worker->loop, &r->retry_timer);
    }
    if (r->u) {
        mg_upconn_t *u = r->u;
        r->u = NULL;
        mg_upconn_close(u);
    }
}
