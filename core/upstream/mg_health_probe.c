/*
 * mg_health_probe.c -- active health checks: timers and non-blocking
 * probes on one worker's loop.  See mg_health.h.
 *
 * Per upstream with an active interval, a checker owns two repeating
 * timers (healthy.interval over targets now healthy, unhealthy.interval
 * over targets now unhealthy), a queue of targets due, and `concurrency`
 * probe slots (at most one per target) allocated once at start: a probe
 * never allocates and a slot is reused, never freed inside its own
 * callback.  A target already queued or being probed is not queued again
 * when its timer fires before the probe ended.
 *
 * A probe is Kong's (lua-resty-healthcheck's): connect, for `https` a
 * TLS handshake, send `GET path HTTP/1.0` with the headers and Host, read
 * the status line, close.  The timeout applies to each step (connect,
 * handshake, send, status line) as a socket timeout does in OpenResty; a
 * timeout of 0 means OpenResty's default socket timeout, 60 s.  Results
 * count against the active thresholds: refused/reset/closed early = TCP
 * failure, a step timing out = timeout, a status line = its status
 * (unparsable = status 0, an HTTP failure).  A failed handshake, a
 * certificate that does not verify included, is a TCP failure, as
 * Kong's `sslhandshake` failing is.
 *
 * https: one TLS client object per checker (core/tls, the upstream side),
 * built when probing starts with `https_verify_certificate` as tls_verify
 * and the system trust anchors (Kong's lua_ssl_trusted_certificate), so
 * sessions are resumed from one probe to the next.  SNI and the name
 * checked: `https_sni`, else the upstream's host_header, else the target's
 * host (an IP literal: no SNI, and it must be an IP SAN).  A probe holds
 * its TLS connection (~37 KB) only while it runs.
 * Probes belong to one mg_health_t; starting another instance's stops
 * them (a worker swapping runtimes), and so does mg_health_free, so the
 * peers a probe points into outlive it.
 *
 * Rejected: reusing mg_upconn_t (keep-alive pools, request ownership and
 * the worker's ready queue are all things a probe must not touch).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include "mg_health_int.h"
#include "../base/mg_log.h"
#include "../tls/mg_tls.h"

#define MG_PROBE_IDLE    0
#define MG_PROBE_CONNECT 1
#define MG_PROBE_SEND    2
#define MG_PROBE_RECV    3
#define MG_PROBE_TLS     4     /* handshake */

typedef struct {
    mg_health_checker_t *ck;
    size_t               idx;
    int                  fd;
    int                  phase;
    mg_tls_conn_t       *tls;        /* https, while the probe runs */
    ev_io                io;
    ev_timer             timer;
    char                *req;
    size_t               reqlen;
    size_t               sent;
    char                 buf[256];   /* the status line is what we read */
    size_t               got;
} mg_health_probe_t;

struct mg_health_checker_s {
    mg_health_t             *h;
    size_t                   uidx;
    mg_upstream_rt_t        *urt;
    const mg_health_conf_t  *conf;
    ev_timer                 healthy_timer;
    ev_timer                 unhealthy_timer;
    unsigned                 healthy_on:1;
    unsigned                 unhealthy_on:1;
    unsigned                 pumping:1;
    unsigned                 host_configured:1; /* headers carry a Host */
    size_t                  *queue;             /* ring of target indexes */
    size_t                   qhead;
    size_t                   qlen;
    uint8_t                 *busy;              /* queued or probing */
    mg_health_probe_t       *probes;
    size_t                   nprobes;
    size_t                   reqcap;
    double                   timeout;
    mg_tls_client_t         *tls;               /* type https */
    char                     tls_name[96];
};

static void mg_health_probe_pump(mg_health_checker_t *ck);

static void
mg_health_probe_finish(mg_health_probe_t *p, int kind, int status)
{
    mg_health_checker_t *ck = p->ck;
    struct ev_loop      *loop = ck->h->_loop;
    size_t               idx = p->idx;

    ev_io_stop(loop, &p->io);
    ev_timer_stop(loop, &p->timer);
    if (p->tls != NULL) {
        if (kind == MG_HEALTH_HTTP_STATUS) {
            mg_tls_close_notify(p->tls);
        }
        mg_tls_conn_free(p->tls);
        p->tls = NULL;
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    p->phase = MG_PROBE_IDLE;
    ck->busy[idx] = 0;
    if (kind >= 0) {
        mg_health_count(ck->h, ck->uidx, idx, kind, status, 1);
    }
    mg_health_probe_pump(ck);
}

/* Wait for events on the fd in `phase`.  The timer starts over when the
 * phase changes: the timeout is per step, as a socket timeout in
 * OpenResty (a TLS handshake, however many round trips, is one step). */
static void
mg_health_probe_arm(mg_health_probe_t *p, int phase, int events)
{
    struct ev_loop *loop = p->ck->h->_loop;

    ev_io_stop(loop, &p->io);
    ev_io_set(&p->io, p->fd, events);
    ev_io_start(loop, &p->io);
    if (phase != p->phase || !ev_is_active(&p->timer)) {
        ev_timer_stop(loop, &p->timer);
        ev_timer_set(&p->timer, p->ck->timeout, 0.);
        ev_timer_start(loop, &p->timer);
    }
    p->phase = phase;
}

/* The direction a TLS call that returned "again" waits for. */
static int
mg_health_probe_tls_events(const mg_health_probe_t *p)
{
    return mg_tls_want_write(p->tls) ? EV_WRITE : EV_READ;
}

/* "HTTP/1.1 200 OK" -> 200; 0 when the line is not a status line. */
static int
mg_health_probe_status(const char *s, size_t n)
{
    size_t i = 5;
    int    st = 0, d;

    if (n < 5 || memcmp(s, "HTTP/", 5) != 0) {
        return 0;
    }
    for (d = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) d++;
    if (d == 0) return 0;
    if (i < n && s[i] == '.') {
        for (i++, d = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) d++;
        if (d == 0) return 0;
    }
    if (i >= n || (s[i] != ' ' && s[i] != '\t')) return 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
    for (d = 0; i < n && s[i] >= '0' && s[i] <= '9' && d < 4; i++, d++) {
        st = st * 10 + (s[i] - '0');
    }
    return d == 3 ? st : 0;
}

static void
mg_health_probe_send(mg_health_probe_t *p)
{
    ssize_t n;

    while (p->sent < p->reqlen) {
        if (p->tls != NULL) {
            /* after "again" the same bytes are offered again, as mbedTLS
             * requires */
            struct iovec iov = { p->req + p->sent, p->reqlen - p->sent };
            n = mg_tls_writev(p->tls, &iov, 1);
        } else {
            n = send(p->fd, p->req + p->sent, p->reqlen - p->sent,
                     MSG_NOSIGNAL);
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                mg_health_probe_arm(p, MG_PROBE_SEND,
                                    p->tls ? mg_health_probe_tls_events(p)
                                           : EV_WRITE);
                return;
            }
            mg_health_probe_finish(p, MG_HEALTH_TCP_FAILURE, 0);
            return;
        }
        p->sent += (size_t) n;
    }
    p->got = 0;
    mg_health_probe_arm(p, MG_PROBE_RECV, EV_READ);
}

/* Connected (and, for https, the handshake done): send the request. */
static void
mg_health_probe_request(mg_health_probe_t *p)
{
    mg_health_checker_t *ck = p->ck;
    const mg_target_t   *t;
    const mg_str_t      *hh;
    char                *r = p->req;
    size_t               left = ck->reqcap;
    unsigned             defport = ck->tls ? 443 : 80;
    int                  n;

    t = ck->urt->peers[p->idx].target;
    hh = &ck->h->ups[ck->uidx].upstream->host_header;
    n = snprintf(r, left, "GET %s HTTP/1.0\r\n%s", ck->conf->active.http_path,
                 ck->conf->active.headers);
    if (!ck->host_configured && n >= 0 && (size_t) n < left) {
        if (hh->len > 0) {
            n += snprintf(r + n, left - n, "Host: %.*s\r\n", (int) hh->len,
                          hh->data);
        } else if (t->port == defport) {
            n += snprintf(r + n, left - n, "Host: %.*s\r\n",
                          (int) t->host.len, t->host.data);
        } else {
            n += snprintf(r + n, left - n, "Host: %.*s:%u\r\n",
                          (int) t->host.len, t->host.data,
                          (unsigned) t->port);
        }
    }
    if (n >= 0 && (size_t) n < left) {
        n += snprintf(r + n, left - n, "\r\n");
    }
    if (n < 0 || (size_t) n >= left) {
        /* reqcap is computed from the same parts: cannot happen */
        mg_log_error("health check request for upstream \"%.*s\" too long",
                     (int) ck->h->ups[ck->uidx].upstream->name.len,
                     ck->h->ups[ck->uidx].upstream->name.data);
        mg_health_probe_finish(p, -1, 0);
        return;
    }
    p->reqlen = (size_t) n;
    p->sent = 0;
    mg_health_probe_send(p);
}

static void
mg_health_probe_handshake(mg_health_probe_t *p)
{
    int rc = mg_tls_handshake(p->tls);

    if (rc == MG_AGAIN) {
        mg_health_probe_arm(p, MG_PROBE_TLS, mg_health_probe_tls_events(p));
        return;
    }
    if (rc != MG_OK) {
        /* mg_tls logged the reason (certificate verify failed: ...) */
        mg_health_probe_finish(p, MG_HEALTH_TCP_FAILURE, 0);
        return;
    }
    mg_health_probe_request(p);
}

/* The SNI and name to check for target idx: https_sni, else the
 * upstream's host_header, else the target's host. */
static void
mg_health_probe_sni(mg_health_probe_t *p, char *buf, size_t len)
{
    mg_health_checker_t *ck = p->ck;
    const mg_str_t      *hh = &ck->h->ups[ck->uidx].upstream->host_header;
    const mg_target_t   *t = ck->urt->peers[p->idx].target;

    if (ck->conf->active.https_sni != NULL
        && ck->conf->active.https_sni[0] != '\0')
    {
        snprintf(buf, len, "%s", ck->conf->active.https_sni);
    } else if (hh->len > 0) {
        snprintf(buf, len, "%.*s", (int) hh->len, hh->data);
    } else {
        snprintf(buf, len, "%.*s", (int) t->host.len, t->host.data);
    }
}

static void
mg_health_probe_connected(mg_health_probe_t *p)
{
    char sni[256];

    if (p->ck->conf->active.type == MG_HEALTH_TYPE_TCP) {
        mg_health_probe_finish(p, MG_HEALTH_OK_STATUS, 0);
        return;
    }
    if (p->ck->tls == NULL) {
        mg_health_probe_request(p);
        return;
    }
    mg_health_probe_sni(p, sni, sizeof(sni));
    p->tls = mg_tls_conn_client(p->ck->tls, p->fd, sni[0] ? sni : NULL);
    if (p->tls == NULL) {
        /* ENOMEM or a name mbedTLS refuses: not the target's fault */
        mg_log_error("health check: cannot start TLS with %s (sni \"%s\")",
                     p->ck->urt->peers[p->idx].name, sni);
        mg_health_probe_finish(p, -1, 0);
        return;
    }
    mg_health_probe_handshake(p);
}

static void
mg_health_probe_read(mg_health_probe_t *p)
{
    ssize_t n;
    char   *nl;

    for (;;) {
        if (p->tls != NULL) {
            n = mg_tls_recv(p->tls, p->buf + p->got, sizeof(p->buf) - p->got);
        } else {
            n = recv(p->fd, p->buf + p->got, sizeof(p->buf) - p->got, 0);
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (p->tls != NULL) {
                    mg_health_probe_arm(p, MG_PROBE_RECV,
                                        mg_health_probe_tls_events(p));
                }
                return;
            }
            mg_health_probe_finish(p, MG_HEALTH_TCP_FAILURE, 0);
            return;
        }
        if (n == 0) {
            /* closed before a whole status line (Kong: receive failed) */
            mg_health_probe_finish(p, MG_HEALTH_TCP_FAILURE, 0);
            return;
        }
        p->got += (size_t) n;
        nl = memchr(p->buf, '\n', p->got);
        if (nl != NULL || p->got == sizeof(p->buf)) {
            size_t len = nl ? (size_t) (nl - p->buf) : p->got;
            int    st = mg_health_probe_status(p->buf, len);

            if (st == 0) {
                mg_log_debug("health check: bad status line from %s",
                             p->ck->urt->peers[p->idx].name);
            }
            mg_health_probe_finish(p, MG_HEALTH_HTTP_STATUS, st);
            return;
        }
    }
}

static void
mg_health_probe_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_health_probe_t *p = w->data;
    int                e = 0;
    socklen_t          el = sizeof(e);

    (void) loop;
    (void) revents;
    switch (p->phase) {
    case MG_PROBE_CONNECT:
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0) {
            e = errno;
        }
        if (e != 0) {
            mg_log_debug("health check: connect to %s: %s",
                         p->ck->urt->peers[p->idx].name, strerror(e));
            mg_health_probe_finish(p, e == ETIMEDOUT ? MG_HEALTH_TIMEOUT
                                                     : MG_HEALTH_TCP_FAILURE,
                                   0);
            return;
        }
        mg_health_probe_connected(p);
        return;
    case MG_PROBE_TLS:
        mg_health_probe_handshake(p);
        return;
    case MG_PROBE_SEND:
        mg_health_probe_send(p);
        return;
    case MG_PROBE_RECV:
        mg_health_probe_read(p);
        return;
    default:
        return;
    }
}

static void
mg_health_probe_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_health_probe_t *p = w->data;

    (void) loop;
    (void) revents;
    mg_log_debug("health check: %s timed out",
                 p->ck->urt->peers[p->idx].name);
    mg_health_probe_finish(p, MG_HEALTH_TIMEOUT, 0);
}

/* Start probing target idx in slot p (idle).  May finish at once. */
static void
mg_health_probe_start(mg_health_probe_t *p, size_t idx)
{
    const mg_peer_t *peer = &p->ck->urt->peers[idx];

    p->idx = idx;
    p->got = 0;
    p->fd = socket(peer->addr.ss_family,
                   SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        /* our problem, not the target's: count nothing */
        mg_log_error("health check: socket() failed: %s", strerror(errno));
        mg_health_probe_finish(p, -1, 0);
        return;
    }
    if (connect(p->fd, (const struct sockaddr *) &peer->addr, peer->addrlen)
        == 0)
    {
        p->phase = MG_PROBE_CONNECT;
        mg_health_probe_connected(p);
        return;
    }
    if (errno != EINPROGRESS) {
        int e = errno;

        mg_log_debug("health check: connect to %s: %s", peer->name,
                     strerror(e));
        mg_health_probe_finish(p, e == ETIMEDOUT ? MG_HEALTH_TIMEOUT
                                                 : MG_HEALTH_TCP_FAILURE, 0);
        return;
    }
    mg_health_probe_arm(p, MG_PROBE_CONNECT, EV_WRITE);
}

/* Start queued targets while slots are free; re-entry (a probe finishing
 * at once inside the loop) only returns. */
static void
mg_health_probe_pump(mg_health_checker_t *ck)
{
    size_t i, idx;

    if (ck->pumping) {
        return;
    }
    ck->pumping = 1;
    for (i = 0; i < ck->nprobes && ck->qlen > 0; i++) {
        if (ck->probes[i].phase != MG_PROBE_IDLE) {
            continue;
        }
        idx = ck->queue[ck->qhead];
        ck->qhead = (ck->qhead + 1) % ck->urt->npeers;
        ck->qlen--;
        mg_health_probe_start(&ck->probes[i], idx);
        if (ck->probes[i].phase == MG_PROBE_IDLE) {
            i--;    /* finished at once: the slot is free again */
        }
    }
    ck->pumping = 0;
}

/* Queue every resolved target in the given state not already busy. */
static void
mg_health_probe_due(mg_health_checker_t *ck, int down)
{
    size_t i, n = ck->urt->npeers;

    for (i = 0; i < n; i++) {
        int is_down = !mg_health_is_healthy(ck->h, ck->uidx, i);

        if (ck->busy[i] || is_down != down || !ck->urt->peers[i].resolved) {
            continue;
        }
        ck->busy[i] = 1;
        ck->queue[(ck->qhead + ck->qlen) % n] = i;
        ck->qlen++;
    }
    mg_health_probe_pump(ck);
}

static void
mg_health_probe_healthy_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    mg_health_probe_due(w->data, 0);
}

static void
mg_health_probe_unhealthy_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;
    mg_health_probe_due(w->data, 1);
}

static const char *const mg_health_type_name[] = {
    "http", "https", "tcp", "grpc", "grpcs"
};

/* Does the header block set Host itself? */
static int
mg_health_headers_have_host(const char *hdrs)
{
    const char *l = hdrs;

    while (*l) {
        if (strncasecmp(l, "host:", 5) == 0) {
            return 1;
        }
        l = strstr(l, "\r\n");
        if (l == NULL) {
            break;
        }
        l += 2;
    }
    return 0;
}

static int
mg_health_checker_init(mg_health_checker_t *ck, mg_health_t *h, size_t uidx,
                       mg_runtime_t *rt)
{
    const mg_health_up_t   *up = &h->ups[uidx];
    const mg_health_conf_t *c = &up->conf;
    size_t                  n, i, hostmax = 0;

    ck->h = h;
    ck->uidx = uidx;
    ck->conf = c;
    ck->urt = &rt->upstreams[up->upstream->index];
    n = ck->urt->npeers;
    if (!c->active_on || n == 0 || ck->urt->peers == NULL) {
        return MG_DECLINED;
    }
    if (c->active.type == MG_HEALTH_TYPE_GRPC
        || c->active.type == MG_HEALTH_TYPE_GRPCS)
    {
        mg_log_warn("upstream \"%.*s\": active health checks of type %s are "
                    "not available yet (no gRPC client in this build); "
                    "probes skipped", (int) up->upstream->name.len,
                    up->upstream->name.data,
                    mg_health_type_name[c->active.type]);
        return MG_DECLINED;
    }
    if (c->active.type == MG_HEALTH_TYPE_HTTPS) {
        mg_service_t svc;
        char         err[256];

        /* a service of our own: its name is what TLS failures log */
        memset(&svc, 0, sizeof(svc));
        svc.name.data = ck->tls_name;
        svc.name.len = (size_t) snprintf(ck->tls_name, sizeof(ck->tls_name),
                                         "health check of upstream %.*s",
                                         (int) up->upstream->name.len,
                                         up->upstream->name.data);
        svc.name.len = mg_min(svc.name.len, sizeof(ck->tls_name) - 1);
        svc.tls_verify = c->active.https_verify_certificate != 0;
        svc.tls_verify_depth = -1;
        ck->tls = mg_tls_client_create(NULL, &svc, err, sizeof(err));
        if (ck->tls == NULL) {
            mg_log_error("upstream \"%.*s\": no active https health checks: "
                         "%s", (int) up->upstream->name.len,
                         up->upstream->name.data, err);
            return MG_DECLINED;
        }
    }
    for (i = 0; i < n; i++) {
        const mg_target_t *t = ck->urt->peers[i].target;
        hostmax = mg_max(hostmax, t ? t->host.len : 0);
    }
    hostmax = mg_max(hostmax + 6, up->upstream->host_header.len);
    ck->reqcap = strlen(c->active.http_path) + strlen(c->active.headers)
                 + hostmax + 64;
    ck->host_configured = mg_health_headers_have_host(c->active.headers);
    ck->timeout = c->active.timeout > 0 ? c->active.timeout : 60.;
    ck->nprobes = mg_min((size_t) c->active.concurrency, n);
    ck->queue = calloc(n, sizeof(size_t));
    ck->busy = calloc(n, 1);
    ck->probes = calloc(ck->nprobes, sizeof(mg_health_probe_t));
    if (ck->queue == NULL || ck->busy == NULL || ck->probes == NULL) {
        return MG_ERROR;
    }
    for (i = 0; i < ck->nprobes; i++) {
        mg_health_probe_t *p = &ck->probes[i];

        p->ck = ck;
        p->fd = -1;
        p->req = malloc(ck->reqcap);
        if (p->req == NULL) {
            return MG_ERROR;
        }
        ev_io_init(&p->io, mg_health_probe_io_cb, -1, EV_WRITE);
        p->io.data = p;
        ev_timer_init(&p->timer, mg_health_probe_timer_cb, 1., 0.);
        p->timer.data = p;
    }
    return MG_OK;
}

static void
mg_health_checker_free(mg_health_checker_t *ck)
{
    struct ev_loop *loop = ck->h ? ck->h->_loop : NULL;
    size_t          i;

    if (loop != NULL && ck->healthy_on) {
        ev_ref(loop);
        ev_timer_stop(loop, &ck->healthy_timer);
    }
    if (loop != NULL && ck->unhealthy_on) {
        ev_ref(loop);
        ev_timer_stop(loop, &ck->unhealthy_timer);
    }
    for (i = 0; ck->probes && i < ck->nprobes; i++) {
        mg_health_probe_t *p = &ck->probes[i];

        if (loop != NULL) {
            ev_io_stop(loop, &p->io);
            ev_timer_stop(loop, &p->timer);
        }
        mg_tls_conn_free(p->tls);
        if (p->fd >= 0) {
            close(p->fd);
        }
        free(p->req);
    }
    mg_tls_client_free(ck->tls);
    free(ck->probes);
    free(ck->queue);
    free(ck->busy);
    memset(ck, 0, sizeof(*ck));
}

void
mg_health_start_active(mg_health_t *h, struct ev_loop *loop,
                       mg_runtime_t *rt)
{
    mg_health_t *o;
    size_t       u;
    int          rc;

    if (h == NULL || loop == NULL || rt != h->rt) {
        return;
    }
    /* one prober per process: a runtime swapped in takes over from the
     * old one (same targets, same words) */
    for (o = mg_health_live; o != NULL; o = o->_next) {
        mg_health_stop_active(o);
    }
    h->_loop = loop;
    ev_now_update(loop);     /* intervals count from now, not the last poll */
    h->_checkers = calloc(h->nups + 1, sizeof(mg_health_checker_t));
    if (h->_checkers == NULL) {
        mg_log_error("health checks: out of memory, no active probes");
        return;
    }
    for (u = 0; u < h->nups; u++) {
        mg_health_checker_t    *ck = &h->_checkers[u];
        const mg_health_conf_t *c = &h->ups[u].conf;

        rc = mg_health_checker_init(ck, h, u, rt);
        if (rc != MG_OK) {
            if (rc == MG_ERROR) {
                mg_log_error("upstream \"%.*s\": out of memory, no active "
                             "health checks",
                             (int) h->ups[u].upstream->name.len,
                             h->ups[u].upstream->name.data);
            }
            mg_health_checker_free(ck);
            continue;
        }
        if (c->active.healthy.interval > 0) {
            ev_timer_init(&ck->healthy_timer, mg_health_probe_healthy_cb,
                          c->active.healthy.interval,
                          c->active.healthy.interval);
            ck->healthy_timer.data = ck;
            ev_timer_start(loop, &ck->healthy_timer);
            ev_unref(loop);     /* probing alone keeps no loop alive */
            ck->healthy_on = 1;
        }
        if (c->active.unhealthy.interval > 0) {
            ev_timer_init(&ck->unhealthy_timer, mg_health_probe_unhealthy_cb,
                          c->active.unhealthy.interval,
                          c->active.unhealthy.interval);
            ck->unhealthy_timer.data = ck;
            ev_timer_start(loop, &ck->unhealthy_timer);
            ev_unref(loop);
            ck->unhealthy_on = 1;
        }
        mg_log_info("upstream \"%.*s\": active %s health checks on %zu "
                    "targets (healthy every %gs, unhealthy every %gs)",
                    (int) h->ups[u].upstream->name.len,
                    h->ups[u].upstream->name.data,
                    mg_health_type_name[c->active.type], ck->urt->npeers,
                    c->active.healthy.interval, c->active.unhealthy.interval);
    }
}

void
mg_health_stop_active(mg_health_t *h)
{
    size_t u;

    if (h == NULL || h->_checkers == NULL) {
        return;
    }
    for (u = 0; u < h->nups; u++) {
        mg_health_checker_free(&h->_checkers[u]);
    }
    free(h->_checkers);
    h->_checkers = NULL;
    h->_loop = NULL;
}
