/*
 * mg_upstream.c -- the per-config runtime (services -> peers) and upstream
 * connections with their keep-alive pools.  See mg_upstream.h.
 *
 * Pools are LIFO so the warmest connection is reused first and the cold
 * tail ages out through its idle timer.  An idle pooled connection keeps
 * its read watcher armed: the server closing it, or sending anything
 * unasked, closes it here before a request can pick it up.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "mg_upstream.h"
#include "mg_health.h"
#include "../tls/mg_tls.h"
#include "../lua/mg_lua.h"
#include "../base/mg_log.h"
#include "../base/mg_time.h"
#include "../event/mg_event.h"
#include "../router/mg_router.h"

/*
 * Set up a peer for host:port.  An IP literal is its address at once; a
 * name is resolved on the request path through the worker's asynchronous
 * resolver (mg_dns), which honours TTLs -- nothing here blocks on DNS.
 */
int
mg_peer_init(mg_pool_t *pool, mg_peer_t *peer, mg_str_t host, uint16_t port,
             int default_port)
{
    char   h[256], buf[300];
    size_t n;
    struct sockaddr_in  *sin = (struct sockaddr_in *) &peer->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &peer->addr;

    memset(peer, 0, sizeof(*peer));
    n = mg_min(host.len, sizeof(h) - 1);
    memcpy(h, host.data, n);
    h[n] = '\0';
    if (n > 2 && h[0] == '[' && h[n - 1] == ']') {     /* "[::1]" */
        memmove(h, h + 1, n - 2);
        h[n - 2] = '\0';
    }
    if (port == default_port) {
        snprintf(buf, sizeof(buf), "%.*s", (int) host.len, host.data);
    } else {
        snprintf(buf, sizeof(buf), "%.*s:%u", (int) host.len, host.data,
                 (unsigned) port);
    }
    peer->host = mg_pool_str(pool, buf, strlen(buf));
    peer->port = port;
    if (strchr(h, ':') != NULL) {
        snprintf(peer->name, sizeof(peer->name), "[%s]:%u", h, (unsigned) port);
    } else {
        snprintf(peer->name, sizeof(peer->name), "%s:%u", h, (unsigned) port);
    }
    if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        peer->addrlen = sizeof(*sin);
        peer->resolved = 1;
        return MG_OK;
    }
    if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        peer->addrlen = sizeof(*sin6);
        peer->resolved = 1;
        return MG_OK;
    }
    peer->dns_name = mg_pool_strndup(pool, h, strlen(h));
    return peer->dns_name ? MG_OK : MG_ERROR;
}

void
mg_peer_set_address(mg_peer_t *peer, const struct sockaddr_storage *ss,
                    socklen_t len, uint16_t srv_port)
{
    uint16_t port = htons(srv_port ? srv_port : peer->port);

    memcpy(&peer->addr, ss, len);
    peer->addrlen = len;
    if (ss->ss_family == AF_INET) {
        ((struct sockaddr_in *) &peer->addr)->sin_port = port;
    } else {
        ((struct sockaddr_in6 *) &peer->addr)->sin6_port = port;
    }
    peer->resolved = 1;
}

mg_runtime_t *
mg_runtime_build(mg_config_t *cf, char *err, size_t errlen)
{
    mg_runtime_t *rt;
    mg_pool_t    *pool = cf->pool;
    size_t        i, j;

    rt = mg_pool_calloc(pool, sizeof(*rt));
    if (rt == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->cf = cf;
    rt->services = mg_pool_calloc(pool, sizeof(mg_service_rt_t)
                                            * (cf->services_n + 1));
    rt->upstreams = mg_pool_calloc(pool, sizeof(mg_upstream_rt_t)
                                             * (cf->upstreams_n + 1));
    if (rt->services == NULL || rt->upstreams == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    for (i = 0; i < cf->upstreams_n; i++) {
        mg_upstream_t    *u = cf->upstreams[i];
        mg_upstream_rt_t *urt = &rt->upstreams[i];

        u->index = i;
        urt->balancer = mg_balancer_build(u);
        if (urt->balancer == NULL) {
            continue;     /* no target with weight > 0: 503 at request time */
        }
        urt->npeers = mg_balancer_size(urt->balancer);
        urt->peers = mg_pool_calloc(pool, sizeof(mg_peer_t) * urt->npeers);
        if (urt->peers == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        for (j = 0; j < urt->npeers; j++) {
            const mg_target_t *t = mg_balancer_target(urt->balancer, (int) j);
            mg_peer_init(pool, &urt->peers[j], t->host, t->port, 80);
            urt->peers[j].target = t;
        }
    }

    for (i = 0; i < cf->services_n; i++) {
        mg_service_t    *s = cf->services[i];
        mg_service_rt_t *srt = &rt->services[i];

        s->index = i;
        srt->service = s;
        srt->tls = mg_str_eq_lit(s->protocol, "https");
        if (srt->tls) {
            srt->tls_client = mg_tls_client_create(cf, s, err, errlen);
            if (srt->tls_client == NULL) {
                return NULL;
            }
        }
        if (s->upstream) {
            mg_upstream_rt_t *urt = &rt->upstreams[s->upstream->index];
            srt->upstream = urt;
            srt->npeers = urt->npeers;
            if (urt->npeers == 0) {
                continue;
            }
            srt->peers = mg_pool_calloc(pool, sizeof(mg_peer_t) * urt->npeers);
            if (srt->peers == NULL) {
                snprintf(err, errlen, "out of memory");
                return NULL;
            }
            for (j = 0; j < urt->npeers; j++) {
                srt->peers[j] = urt->peers[j];     /* resolved copy */
                srt->peers[j].idle = NULL;
                srt->peers[j].nidle = 0;
                srt->peers[j].active = 0;
            }
            continue;
        }
        srt->peer = mg_pool_calloc(pool, sizeof(mg_peer_t));
        if (srt->peer == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        mg_peer_init(pool, srt->peer, s->host, s->port,
                        srt->tls ? 443 : 80);
    }

    rt->router = mg_router_build(cf, err, errlen);
    if (rt->router == NULL) {
        for (i = 0; i < cf->upstreams_n; i++) {
            mg_balancer_free(rt->upstreams[i].balancer);
        }
        return NULL;
    }
    return rt;
}

void
mg_runtime_release(mg_runtime_t *rt)
{
    if (rt && --rt->refs == 0 && rt->retired) {
        mg_upconn_close_idle(rt);
        mg_runtime_free(rt);
    }
}

void
mg_runtime_retire(mg_runtime_t *rt)
{
    rt->retired = 1;
    if (rt->refs == 0) {
        mg_upconn_close_idle(rt);
        mg_runtime_free(rt);
    }
}

void
mg_runtime_free(mg_runtime_t *rt)
{
    size_t i;

    if (rt == NULL) {
        return;
    }
    if (rt->health) {
        mg_health_free(rt->health);
    }
    if (rt->tls_server) {
        mg_tls_server_free(rt->tls_server);
    }
    mg_lua_runtime_free(rt);
    for (i = 0; i < rt->cf->services_n; i++) {
        if (rt->services[i].tls_client) {
            mg_tls_client_free(rt->services[i].tls_client);
        }
    }
    mg_router_free(rt->router);
    for (i = 0; i < rt->cf->upstreams_n; i++) {
        mg_balancer_free(rt->upstreams[i].balancer);
    }
    mg_config_free(rt->cf);
}

/* --- connections --------------------------------------------------- */

static mg_upconn_t *mg_upconn_free_list;

static uint64_t mg_upconn_gen;

static void
mg_upconn_ready(void *obj, int revents)
{
    mg_upconn_t *u = obj;
    u->handler(u, revents);
}

static void
mg_upconn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_upconn_t *u = w->data;
    if (w == &u->wev) {
        ev_io_stop(loop, w);
        u->write_armed = 0;
    }
    mg_worker_ready(mg_upconn_ready, u, &u->gen, revents & (EV_READ | EV_WRITE));
}

static void
mg_upconn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_upconn_t *u = w->data;
    (void) revents;
    if (!mg_timer_due(w, &u->deadline)) {
        return;
    }
    mg_time_update(ev_now(loop));
    u->handler(u, EV_TIMER);
    mg_worker_ready_flush();
}

static void
mg_upconn_unlink_idle(mg_upconn_t *u)
{
    mg_peer_t *p = u->peer;

    if (u->prev) u->prev->next = u->next; else p->idle = u->next;
    if (u->next) u->next->prev = u->prev;
    u->next = u->prev = NULL;
    p->nidle--;
}

/* Idle pooled connection: any event means it is no longer usable. */
static void
mg_upconn_idle_handler(mg_upconn_t *u, int events)
{
    char c;

    if ((events & EV_READ) && u->tls == NULL) {
        ssize_t n = recv(u->fd, &c, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        mg_log_debug("upstream %s closed an idle keep-alive connection",
                     u->peer->name);
    }
    mg_upconn_unlink_idle(u);
    mg_upconn_close(u);
}

void
mg_upconn_want_write(mg_upconn_t *u, int on)
{
    if (on && !u->write_armed) {
        u->write_armed = 1;
        ev_io_start(mg_worker->loop, &u->wev);
    } else if (!on && u->write_armed) {
        u->write_armed = 0;
        ev_io_stop(mg_worker->loop, &u->wev);
    }
}

/* As mg_conn_timer_set (mg_timer_deadline). */
void
mg_upconn_timer(mg_upconn_t *u, int msec)
{
    mg_timer_deadline(&u->timer, &u->deadline, msec);
}

mg_upconn_t *
mg_upconn_get(mg_peer_t *peer, uint64_t key, void *owner,
              mg_upconn_handler_pt handler, const char **err)
{
    struct ev_loop *loop = mg_worker->loop;
    mg_upconn_t    *u;
    int             fd, one = 1;

    /* the newest idle connection to the same address and server name
     * (a DNS change or another SNI must not reuse an old session) */
    for (u = peer->idle; u && u->key != key; u = u->next) { }
    if (u != NULL) {
        mg_upconn_unlink_idle(u);
        u->deadline = 0;        /* the idle timeout; the timer stays */
        u->owner = owner;
        u->handler = handler;
        u->reused = 1;
        peer->active++;
        return u;
    }

    fd = socket(peer->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK
                                          | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        mg_log_error("socket() for upstream %s failed: %s", peer->name,
                     strerror(errno));
        *err = mg_err_io;
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *) &peer->addr, peer->addrlen) < 0
        && errno != EINPROGRESS)
    {
        *err = errno == ECONNREFUSED ? mg_err_refused : mg_err_io;
        mg_log_error("connect() to %s failed: %s", peer->name,
                     strerror(errno));
        close(fd);
        return NULL;
    }
    if ((u = mg_upconn_free_list) != NULL) {
        mg_upconn_free_list = u->next;
    } else if ((u = malloc(sizeof(*u))) == NULL) {
        close(fd);
        *err = mg_err_io;
        return NULL;
    }
    memset(u, 0, sizeof(*u));
    u->gen = ++mg_upconn_gen;
    u->key = key;
    u->fd = fd;
    u->peer = peer;
    u->owner = owner;
    u->handler = handler;
    u->connecting = 1;
    ev_io_init(&u->rev, mg_upconn_io_cb, fd, EV_READ);
    ev_io_init(&u->wev, mg_upconn_io_cb, fd, EV_WRITE);
    ev_init(&u->timer, mg_upconn_timer_cb);
    u->rev.data = u->wev.data = u->timer.data = u;
    ev_io_start(loop, &u->rev);
    mg_upconn_want_write(u, 1);
    peer->active++;
    return u;
}

ssize_t
mg_upconn_recv(mg_upconn_t *u, char *buf, size_t n)
{
    if (u->tls) {
        return mg_tls_recv(u->tls, buf, n);
    }
    return recv(u->fd, buf, n, 0);
}

ssize_t
mg_upconn_writev(mg_upconn_t *u, const struct iovec *iov, int iovcnt)
{
    if (u->tls) {
        return mg_tls_writev(u->tls, iov, iovcnt);
    }
    if (iovcnt == 1) {
        return send(u->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    }
    return writev(u->fd, iov, iovcnt);
}

int
mg_upconn_connect_result(mg_upconn_t *u)
{
    int       e = 0;
    socklen_t l = sizeof(e);

    if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0) {
        e = errno;
    }
    if (e == 0) {
        u->connecting = 0;
    }
    return e;
}

void
mg_upconn_close(mg_upconn_t *u)
{
    struct ev_loop *loop = mg_worker->loop;

    ev_io_stop(loop, &u->rev);
    ev_io_stop(loop, &u->wev);
    ev_timer_stop(loop, &u->timer);
    u->deadline = 0;
    if (u->owner) {
        u->peer->active--;
    }
    if (u->in) {
        mg_buf_put(u->in);
        u->in = NULL;
    }
    if (u->tls) {
        mg_tls_conn_free(u->tls);
        u->tls = NULL;
    }
    close(u->fd);
    u->fd = -1;
    u->gen = 0;         /* queued readiness for it is now stale */
    u->next = mg_upconn_free_list;
    mg_upconn_free_list = u;
}

void
mg_upconn_release(mg_upconn_t *u, int keepalive)
{
    mg_conf_t *conf = mg_worker->conf;
    mg_peer_t *p = u->peer;

    u->requests++;
    if (!keepalive || mg_worker->shutting_down || p->no_pool
        || (conf->upstream_keepalive_max_requests > 0
            && u->requests >= (uint32_t) conf->upstream_keepalive_max_requests)
        || p->nidle >= conf->upstream_keepalive_pool_size
        || (u->in && mg_buf_len(u->in) > 0))
    {
        mg_upconn_close(u);
        return;
    }
    p->active--;
    u->owner = NULL;
    u->handler = mg_upconn_idle_handler;
    u->reused = 0;
    mg_upconn_want_write(u, 0);
    if (u->in) {
        mg_buf_put(u->in);
        u->in = NULL;
    }
    u->prev = NULL;
    u->next = p->idle;
    if (p->idle) p->idle->prev = u;
    p->idle = u;
    p->nidle++;
    mg_upconn_timer(u, conf->upstream_keepalive_idle_timeout);
}

static void
mg_upconn_close_peer_idle(mg_peer_t *p)
{
    mg_upconn_t *u;

    while ((u = p->idle) != NULL) {
        mg_upconn_unlink_idle(u);
        mg_upconn_close(u);
    }
}

void
mg_upconn_close_idle(mg_runtime_t *rt)
{
    size_t i, j;

    if (rt == NULL) {
        return;
    }
    for (i = 0; i < rt->cf->services_n; i++) {
        if (rt->services[i].peer) {
            mg_upconn_close_peer_idle(rt->services[i].peer);
        }
    }
    for (i = 0; i < rt->cf->services_n; i++) {
        for (j = 0; j < rt->services[i].npeers; j++) {
            mg_upconn_close_peer_idle(&rt->services[i].peers[j]);
        }
    }
}
