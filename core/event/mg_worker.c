/*
 * mg_worker.c -- a worker process: its libev loop, accepting, client
 * connection life cycle, signals and graceful stop.
 *
 * Lifecycle: the master forks a worker with the listening sockets of its
 * slot already open; the worker builds nothing from config (the runtime
 * was built before fork and is shared copy-on-write) and runs its loop.
 * SIGQUIT: stop accepting (the master still holds the sockets, so queued
 * connections wait for the new workers instead of being reset), let
 * in-flight requests finish with "Connection: close", give idle keep-alive
 * connections a short grace to send one last request, then exit.
 * SIGTERM/SIGINT: exit at once.
 *
 * Rejected: closing idle keep-alive connections at once on SIGQUIT, as
 * nginx does -- a client that is sending its next request at that moment
 * sees a reset, which is exactly the failed request a reload must avoid.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include "mg_event.h"
#include "../base/mg_log.h"
#include "../base/mg_pool.h"
#include "../base/mg_time.h"
#include "../http/mg_http.h"
#include "../upstream/mg_dns.h"
#include "../upstream/mg_health.h"
#include "../tls/mg_tls.h"
#include "../lua/mg_lua.h"

const char mg_err_timeout[] = "timeout";
const char mg_err_closed[] = "closed";
const char mg_err_reset[] = "connection reset by peer";
const char mg_err_refused[] = "connection refused";
const char mg_err_io[] = "i/o error";

mg_worker_t *mg_worker;

/* The admin process of a control plane: the cluster listener's TLS
 * (client certificate required, equal to cluster_cert), and where its
 * listeners start in the admin process's listener list. */
static mg_tls_server_t  *mg_cluster_tls;
static const mg_listen_t *mg_cluster_ls;
/* admin_listen then cluster_listen, as the master passes their fds */
static mg_listen_list_t   mg_admin_lists;

#define MG_POOL_CACHE_MAX   1024
#define MG_REQ_POOL_SIZE    16384   /* a typical request fits one block */
#define MG_SHUTDOWN_GRACE   1.0     /* s an idle connection may still use */
#define MG_ADMIN_MAX_BODY   (10 * 1024 * 1024)

static ssize_t
mg_conn_plain_recv(mg_conn_t *c, char *buf, size_t n)
{
    return recv(c->fd, buf, n, 0);
}

static ssize_t
mg_conn_plain_writev(mg_conn_t *c, const struct iovec *iov, int iovcnt)
{
    if (iovcnt == 1) {
        return send(c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    }
    return writev(c->fd, iov, iovcnt);
}

static const mg_conn_io_t mg_conn_plain_io = {
    mg_conn_plain_recv,
    mg_conn_plain_writev,
};

static ssize_t
mg_conn_tls_recv(mg_conn_t *c, char *buf, size_t n)
{
    return mg_tls_recv(c->tls, buf, n);
}

static ssize_t
mg_conn_tls_writev(mg_conn_t *c, const struct iovec *iov, int iovcnt)
{
    return mg_tls_writev(c->tls, iov, iovcnt);
}

static const mg_conn_io_t mg_conn_tls_io = {
    mg_conn_tls_recv,
    mg_conn_tls_writev,
};

uint64_t
mg_worker_random(void)
{
    /* xorshift64*: request ids need uniqueness, not secrecy */
    uint64_t x = mg_worker->rand_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    mg_worker->rand_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

mg_pool_t *
mg_worker_pool_get(void)
{
    mg_worker_t *w = mg_worker;

    if (w->nfree_pools > 0) {
        return w->free_pools[--w->nfree_pools];
    }
    return mg_pool_create(MG_REQ_POOL_SIZE);
}

void
mg_worker_pool_put(mg_pool_t *pool)
{
    mg_worker_t *w = mg_worker;

    /* reset now: cleanups run and large blocks go back at once */
    mg_pool_reset(pool);
    if (w->nfree_pools >= MG_POOL_CACHE_MAX) {
        mg_pool_destroy(pool);
        return;
    }
    w->free_pools[w->nfree_pools++] = pool;
}

size_t
mg_conn_peer_ip(const mg_conn_t *c, char *buf, size_t len)
{
    const char *p = NULL;

    if (c->peer.sa.sa_family == AF_INET && len >= INET_ADDRSTRLEN) {
        /* every proxied request asks (X-Forwarded-For, X-Real-IP):
         * inet_ntop formats IPv4 with sprintf, which costs more than
         * the rest of the forwarded headers together */
        const unsigned char *a =
            (const unsigned char *) &c->peer.sin.sin_addr.s_addr;
        char                *q = buf;
        int                  i;

        for (i = 0; i < 4; i++) {
            if (i) *q++ = '.';
            if (a[i] >= 100) *q++ = (char) ('0' + a[i] / 100);
            if (a[i] >= 10) *q++ = (char) ('0' + a[i] / 10 % 10);
            *q++ = (char) ('0' + a[i] % 10);
        }
        *q = '\0';
        return (size_t) (q - buf);
    }
    if (c->peer.sa.sa_family == AF_INET) {
        p = inet_ntop(AF_INET, &c->peer.sin.sin_addr, buf, len);
    } else if (c->peer.sa.sa_family == AF_INET6) {
        p = inet_ntop(AF_INET6, &c->peer.sin6.sin6_addr, buf, len);
    }
    if (p == NULL) {
        if (len) buf[0] = '\0';
        return 0;
    }
    return strlen(buf);
}

/*
 * A connection's timeout changes several times per request (header, body,
 * send, keep-alive idle).  Only the deadline is kept; the libev timer
 * moves only when the new deadline comes before the one it is set for.
 * A later or cleared deadline leaves it alone, and when it fires early it
 * is set again for what is left (or does nothing).  On a busy keep-alive
 * connection that is no timer-heap work per request.
 */
void
mg_timer_deadline(ev_timer *t, ev_tstamp *deadline, int msec)
{
    struct ev_loop *loop = mg_worker->loop;
    ev_tstamp       now = ev_now(loop);

    if (msec <= 0) {
        *deadline = 0;
        return;
    }
    *deadline = now + msec / 1000.0;
    if (!ev_is_active(t) || now + ev_timer_remaining(loop, t) > *deadline) {
        t->repeat = msec / 1000.0;
        ev_timer_again(loop, t);
    }
}

int
mg_timer_due(ev_timer *t, ev_tstamp *deadline)
{
    struct ev_loop *loop = mg_worker->loop;
    ev_tstamp       left = *deadline - ev_now(loop);

    ev_timer_stop(loop, t);
    if (*deadline == 0) {
        return 0;               /* the timeout was cleared meanwhile */
    }
    if (left > 0.0005) {
        t->repeat = left;       /* moved later meanwhile */
        ev_timer_again(loop, t);
        return 0;
    }
    *deadline = 0;
    return 1;
}

void
mg_conn_timer_set(mg_conn_t *c, int msec)
{
    mg_timer_deadline(&c->timer, &c->deadline, msec);
}

void
mg_conn_read_pause(mg_conn_t *c)
{
    if (!c->read_paused) {
        c->read_paused = 1;
        ev_io_stop(mg_worker->loop, &c->rev);
    }
}

void
mg_conn_read_resume(mg_conn_t *c)
{
    if (c->read_paused && !c->eof) {
        c->read_paused = 0;
        ev_io_start(mg_worker->loop, &c->rev);
    }
}

static void
mg_conn_free(mg_conn_t *c)
{
    mg_worker_t *w = mg_worker;

    if (c->prev) c->prev->next = c->next; else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    c->next = w->free_conns;
    w->free_conns = c;
}

void
mg_conn_close(mg_conn_t *c)
{
    mg_worker_t *w = mg_worker;

    if (c->in_handler) {
        /* never free an object inside its own callback (Redis habit) */
        c->close_pending = 1;
        return;
    }
    if (c->req) {
        mg_request_t *r = c->req;
        c->req = NULL;
        mg_lua_request_end(r);
        mg_proxy_cleanup(r);
        mg_runtime_release(r->rt);
        mg_worker_pool_put(r->pool);
    }
    ev_io_stop(w->loop, &c->rev);
    ev_io_stop(w->loop, &c->wev);
    ev_timer_stop(w->loop, &c->timer);
    c->deadline = 0;
    if (c->in) {
        mg_buf_put(c->in);
        c->in = NULL;
    }
    if (c->tls) {
        mg_tls_conn_free(c->tls);
        c->tls = NULL;
    }
    close(c->fd);
    c->fd = -1;
    c->id = 0;          /* queued readiness for it is now stale */
    mg_conn_free(c);
    if (w->shutting_down && w->nconns == 0) {
        ev_break(w->loop, EVBREAK_ALL);
    }
}

void
mg_worker_ready(mg_ready_pt handler, void *obj, const uint64_t *genp,
                int revents)
{
    mg_worker_t *w = mg_worker;
    mg_ready_t  *e;

    if (w->nready == w->ready_cap) {
        size_t      cap = w->ready_cap ? w->ready_cap * 2 : 256;
        mg_ready_t *n = realloc(w->ready, cap * sizeof(*n));
        if (n == NULL) {
            handler(obj, revents);      /* out of memory: serve it now */
            return;
        }
        w->ready = n;
        w->ready_cap = cap;
    }
    e = &w->ready[w->nready++];
    e->handler = handler;
    e->obj = obj;
    e->genp = genp;
    e->gen = *genp;
    e->revents = revents;
}

/*
 * Run queued readiness.  Entries [0, n) came from libev's pending queue,
 * which it invokes last-in first-out: walking them backwards restores
 * epoll's order.  Entries the handlers add meanwhile (a pipelined request
 * behind the one that just finished) run after, in the order added.
 */
void
mg_worker_ready_flush(void)
{
    mg_worker_t *w = mg_worker;
    size_t       i, start, end;
    mg_ready_t   e;

    if (w->nready == 0 || w->in_ready) {
        return;
    }
    w->in_ready = 1;
    end = w->nready;
    for (i = end; i > 0; i--) {
        e = w->ready[i - 1];           /* by value: handlers may realloc */
        if (*e.genp == e.gen) {
            e.handler(e.obj, e.revents);
        }
    }
    start = end;
    while (w->nready > start) {
        end = w->nready;
        for (i = start; i < end; i++) {
            e = w->ready[i];
            if (*e.genp == e.gen) {
                e.handler(e.obj, e.revents);
            }
        }
        start = end;
    }
    w->nready = 0;
    w->in_ready = 0;
}

static void
mg_conn_ready(void *obj, int revents)
{
    mg_conn_t *c = obj;

    MG_CONN_ENTER(c);
    if (c->state == MG_CONN_HANDSHAKE) {
        mg_http_conn_handshake(c);
        MG_CONN_LEAVE(c);
        return;
    }
    if (revents & EV_WRITE) {
        mg_http_conn_write(c);
    }
    if ((revents & (EV_READ | EV_CUSTOM)) && c->fd >= 0 && !c->close_pending) {
        mg_http_conn_read(c);
    }
    MG_CONN_LEAVE(c);
}

void
mg_conn_queue_read(mg_conn_t *c)
{
    mg_worker_ready(mg_conn_ready, c, &c->id, EV_READ);
}

static void
mg_conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_conn_t *c = w->data;
    (void) loop;
    mg_worker_ready(mg_conn_ready, c, &c->id, revents & (EV_READ | EV_CUSTOM));
}

static void
mg_conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_conn_t *c = w->data;
    (void) revents;
    ev_io_stop(loop, w);
    mg_worker_ready(mg_conn_ready, c, &c->id, EV_WRITE);
}

static void
mg_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_conn_t *c = w->data;
    (void) revents;
    if (!mg_timer_due(w, &c->deadline)) {
        return;
    }
    mg_time_update(ev_now(loop));
    MG_CONN_ENTER(c);
    mg_http_conn_timeout(c);
    MG_CONN_LEAVE(c);
    mg_worker_ready_flush();
}

/*
 * A new client connection on fd (accepted from l, or l == NULL: the admin
 * process's own socketpair).  Closes fd and returns NULL on failure.
 */
static mg_conn_t *
mg_worker_conn_add(int fd, const struct sockaddr_storage *ss, socklen_t sl,
                   const mg_listener_t *l)
{
    mg_worker_t *wk = mg_worker;
    mg_conn_t   *c;
    int          one = 1;

    if (wk->free_conns) {
        c = wk->free_conns;
        wk->free_conns = c->next;
    } else {
        c = malloc(sizeof(*c));
        if (c == NULL) {
            mg_log_crit("out of memory accepting a connection");
            close(fd);
            return NULL;
        }
    }
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->io = &mg_conn_plain_io;
    memcpy(&c->peer, ss, mg_min(sl, sizeof(c->peer)));
    if (l != NULL) {
        c->local_port = ntohs(l->ls->addr.ss_family == AF_INET6
                                  ? ((struct sockaddr_in6 *) &l->ls->addr)->sin6_port
                                  : ((struct sockaddr_in *) &l->ls->addr)->sin_port);
        c->ssl = l->ls->ssl;
    }
    c->id = ++wk->next_conn_id;
    if (c->ssl) {
        mg_tls_server_t *ts = wk->rt ? wk->rt->tls_server : NULL;
        if (mg_cluster_ls != NULL && l->ls >= mg_cluster_ls) {
            ts = mg_cluster_tls;
        }
        c->tls = ts ? mg_tls_conn_server(ts, fd) : NULL;
        if (c->tls == NULL) {
            mg_log_error("cannot set up TLS for a new connection");
            close(fd);
            c->next = wk->free_conns;
            wk->free_conns = c;
            return NULL;
        }
        mg_tls_conn_set_id(c->tls, c->id);
        if (ts != mg_cluster_tls && mg_lua_wants_certificate(wk->rt)) {
            mg_tls_conn_want_hello(c->tls);     /* plugins' certificate */
        }
        c->io = &mg_conn_tls_io;
        c->state = MG_CONN_HANDSHAKE;
    }
    if (ss->ss_family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    ev_io_init(&c->rev, mg_conn_read_cb, fd, EV_READ);
    ev_io_init(&c->wev, mg_conn_write_cb, fd, EV_WRITE);
    ev_init(&c->timer, mg_conn_timer_cb);
    c->rev.data = c->wev.data = c->timer.data = c;
    c->next = wk->conns;
    if (wk->conns) wk->conns->prev = c;
    wk->conns = c;
    wk->nconns++;
    ev_io_start(wk->loop, &c->rev);
    mg_http_conn_init(c);
    return c;
}

static void
mg_worker_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_listener_t *l = w->data;
    int            i, fd;
    struct sockaddr_storage ss;
    socklen_t      sl;

    (void) revents;
    for (i = 0; i < 64; i++) {
        sl = sizeof(ss);
        fd = accept4(l->fd, (struct sockaddr *) &ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) {
                return;
            }
            if (errno == EMFILE || errno == ENFILE) {
                mg_log_crit("accept() failed: %s; pausing accept for 0.5s",
                            strerror(errno));
                ev_io_stop(loop, w);
                /* resumed by the flush timer */
                return;
            }
            mg_log_error("accept() failed: %s", strerror(errno));
            return;
        }
        mg_worker_conn_add(fd, &ss, sl, l);
    }
}

/* Runs after libev invoked the callbacks of the events the last poll
 * gathered, before it polls again: the time is the poll's, and the I/O
 * those callbacks queued runs now, in epoll's order. */
static void
mg_worker_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void) w;
    (void) revents;
    mg_time_update(ev_now(loop));
    mg_worker->hs_ns = 0;       /* a new turn: a new handshake budget */
    mg_worker_ready_flush();
}

static void
mg_worker_flush_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    size_t i;
    (void) w;
    (void) revents;
    mg_http_log_flush();
    if (!mg_worker->shutting_down) {
        for (i = 0; i < mg_worker->nlisteners; i++) {
            if (!ev_is_active(&mg_worker->listeners[i].w)) {
                ev_io_start(loop, &mg_worker->listeners[i].w);
            }
        }
    }
    mg_buf_trim(32);
}

static void __attribute__((noreturn))
mg_worker_exit(int status)
{
    mg_http_log_flush();
    _exit(status);
}

static void
mg_worker_shutdown_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_conn_t *c, *next;
    (void) w;
    (void) revents;
    /* Idle connections had their grace; anything still idle closes now.
     * Connections with a request in flight keep going. */
    for (c = mg_worker->conns; c; c = next) {
        next = c->next;
        if (c->req == NULL) {
            mg_conn_close(c);
        }
    }
    if (mg_worker->nconns == 0) {
        ev_break(loop, EVBREAK_ALL);
    }
}

static void
mg_worker_graceful(void)
{
    mg_worker_t *w = mg_worker;
    size_t       i;
    mg_conn_t   *c, *next;

    if (w->shutting_down) {
        return;
    }
    w->shutting_down = 1;
    mg_log_notice("worker %d: graceful stop, %zu connections open",
                  w->slot, w->nconns);
    for (i = 0; i < w->nlisteners; i++) {
        ev_io_stop(w->loop, &w->listeners[i].w);
        close(w->listeners[i].fd);    /* the master keeps its copy */
    }
    for (c = w->conns; c; c = next) {
        next = c->next;
        if (c->tls && mg_tls_conn_cluster(c->tls)) {
            /* a data plane's long poll would hold the stop for up to
             * its whole wait: it reconnects (to the new generation
             * after a reload) instead */
            mg_conn_close(c);
            continue;
        }
        if (c->req) {
            c->req->keepalive = 0;
        }
    }
    mg_worker_config_stop(w);
    mg_upconn_close_idle(w->rt);
    if (w->rt && w->rt->lua && !w->admin) {
        mg_lua_timers_shutdown();
    }
    ev_timer_init(&w->shutdown_timer, mg_worker_shutdown_timeout_cb,
                  MG_SHUTDOWN_GRACE, 0.);
    ev_timer_start(w->loop, &w->shutdown_timer);
    if (w->nconns == 0) {
        ev_break(w->loop, EVBREAK_ALL);
    }
}

/* ------------------------------------------------------------------ */
/* The admin process's internal request                                */

/*
 * The data plane's sync loop is Lua (moongate.cluster.data_plane) and
 * runs as an ngx.timer of the admin VM, but timers cannot be created
 * while that VM is being initialised, and a data plane may have no
 * admin listener at all.  So once the loop runs, the admin process sends
 * itself one request over a socketpair; its handler starts the timer and
 * answers at once.  The AF_UNIX peer is what marks it as internal
 * (mg_http_request.c): no listener has that family.  Our end reads the
 * answer away and closes at EOF.
 *
 * Rejected: a sync loop in C -- an HTTP client, JSON and the declarative
 * import would all be duplicated from Lua.
 */
static ev_io mg_admin_kick_w;

static void
mg_admin_kick_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    char    buf[4096];
    ssize_t n;

    (void) revents;
    do {
        n = recv(w->fd, buf, sizeof(buf), 0);
    } while (n > 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    ev_io_stop(loop, w);
    close(w->fd);
}

static void
mg_admin_kick(const char *path)
{
    static const char fmt[] = "GET %s HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n";
    struct sockaddr_storage ss;
    char                    req[256];
    int                     sv[2], n;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   sv) < 0)
    {
        mg_log_crit("admin process: socketpair() failed: %s; the cluster "
                    "sync loop does not run", strerror(errno));
        return;
    }
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    n = snprintf(req, sizeof(req), fmt, path);
    if (send(sv[1], req, (size_t) n, MSG_NOSIGNAL) != n) {
        close(sv[0]);
        close(sv[1]);
        mg_log_crit("admin process: cannot send the internal request %s",
                    path);
        return;
    }
    if (mg_worker_conn_add(sv[0], &ss, sizeof(sa_family_t), NULL) == NULL) {
        close(sv[1]);
        return;
    }
    ev_io_init(&mg_admin_kick_w, mg_admin_kick_cb, sv[1], EV_READ);
    ev_io_start(mg_worker->loop, &mg_admin_kick_w);
}

static void
mg_worker_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void) revents;
    if (w->signum == SIGQUIT) {
        mg_worker_graceful();
        return;
    }
    mg_worker->terminating = 1;
    ev_break(loop, EVBREAK_ALL);
}

static void __attribute__((noreturn))
mg_worker_main(mg_conf_t *conf, mg_runtime_t *rt, int slot, const int *fds,
               size_t nfds, mg_listen_list_t *lists, int admin)
{
    static mg_worker_t w;
    sigset_t           set;
    size_t             i;
    char               path[4096];

    mg_worker = &w;
    w.conf = conf;
    w.rt = rt;
    w.slot = slot;
    w.admin = admin ? 1 : 0;
    w.access_fd = -1;
    w.free_pools = calloc(MG_POOL_CACHE_MAX, sizeof(mg_pool_t *));
    if (w.free_pools == NULL) {
        mg_log(MG_LOG_EMERG, "worker %d: out of memory", slot);
        _exit(2);
    }
    if (getrandom(&w.rand_state, sizeof(w.rand_state), 0) < 0
        || w.rand_state == 0)
    {
        w.rand_state = (uint64_t) getpid() * 0x9E3779B97F4A7C15ULL + 1;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    w.loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (w.loop == NULL) {
        w.loop = ev_loop_new(EVFLAG_AUTO);
    }
    if (w.loop == NULL) {
        mg_log(MG_LOG_EMERG, "worker %d: cannot create event loop", slot);
        _exit(2);
    }
    mg_time_update(ev_time());
    mg_tls_after_fork();
    {
        char          derr[256];
        mg_dns_opts_t dopts;
        memset(&dopts, 0, sizeof(dopts));
        dopts.hostsfile = conf->dns_hostsfile;
        w.dns = mg_dns_create(w.loop, conf, &dopts, derr, sizeof(derr));
        if (w.dns == NULL) {
            mg_log_crit("worker %d: DNS resolver unavailable: %s; upstreams "
                        "named by hostname will answer 503", slot, derr);
        }
    }

    if (admin) {
        char aerr[4096];

        prctl(PR_SET_NAME, "moongate-admin", 0, 0, 0);
        /* Kong's admin body limit (nginx_admin_client_max_body_size):
         * a POST /config is a whole configuration */
        if (conf->client_max_body_size != 0
            && conf->client_max_body_size < MG_ADMIN_MAX_BODY)
        {
            conf->client_max_body_size = MG_ADMIN_MAX_BODY;
        }
        if (mg_cluster_ls != NULL) {
            char cert[4096], key[4096];
            mg_conf_path(conf, conf->cluster_cert, cert, sizeof(cert));
            mg_conf_path(conf, conf->cluster_cert_key, key, sizeof(key));
            mg_cluster_tls = mg_tls_cluster_server_create(cert, key, aerr,
                                                          sizeof(aerr));
            if (mg_cluster_tls == NULL) {
                mg_log_crit("cluster listener cannot start: %s", aerr);
                _exit(2);
            }
        }
        for (i = 0; i < nfds; i++) {
            if (mg_cluster_ls != NULL && &lists->elts[i] >= mg_cluster_ls) {
                break;
            }
            if (lists->elts[i].ssl && rt->tls_server == NULL) {
                /* admin over TLS: admin_ssl_cert, else the proxy's
                 * (ssl_cert, or the default one made under the prefix);
                 * client certificates per admin_ssl_verify_client */
                rt->tls_server = mg_tls_admin_server_create(conf, aerr,
                                                            sizeof(aerr));
                if (rt->tls_server == NULL) {
                    mg_log_crit("admin API cannot start: %s", aerr);
                    _exit(2);
                }
            }
        }
        if (mg_lua_admin_init(rt, conf, aerr, sizeof(aerr)) != MG_OK) {
            mg_log_crit("admin API cannot start: %s", aerr);
            _exit(2);
        }
    }
    {
        const char *alog = admin ? conf->admin_access_log
                                 : conf->proxy_access_log;
        if (alog && strcmp(alog, "off") != 0) {
            mg_conf_path(conf, alog, path, sizeof(path));
            w.access_fd = open(path, O_WRONLY | O_APPEND | O_CREAT
                                     | O_CLOEXEC, 0644);
            if (w.access_fd < 0) {
                mg_log_error("worker %d: cannot open access log \"%s\": %s",
                             slot, path, strerror(errno));
            }
        }
    }

    w.listeners = calloc(nfds ? nfds : 1, sizeof(mg_listener_t));
    w.nlisteners = nfds;
    for (i = 0; i < nfds; i++) {
        mg_listener_t *l = &w.listeners[i];
        l->fd = fds[i];
        l->ls = &lists->elts[i];
        ev_io_init(&l->w, mg_worker_accept_cb, l->fd, EV_READ);
        l->w.data = l;
        ev_io_start(w.loop, &l->w);
    }

    ev_signal_init(&w.sigquit, mg_worker_signal_cb, SIGQUIT);
    ev_signal_init(&w.sigterm, mg_worker_signal_cb, SIGTERM);
    ev_signal_init(&w.sigint, mg_worker_signal_cb, SIGINT);
    ev_signal_start(w.loop, &w.sigquit);
    ev_signal_start(w.loop, &w.sigterm);
    ev_signal_start(w.loop, &w.sigint);
    /* the master forked us with its signals blocked: unblock them only
     * now that the watchers exist, so a stop that arrives during start-up
     * is a clean stop, not death by the default action */
    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);
    ev_prepare_init(&w.prepare, mg_worker_prepare_cb);
    ev_prepare_start(w.loop, &w.prepare);
    ev_timer_init(&w.flush_timer, mg_worker_flush_cb, 1., 1.);
    ev_timer_start(w.loop, &w.flush_timer);
    ev_unref(w.loop);      /* the flush timer alone keeps nothing alive */

    if (!admin && slot == 0 && rt && rt->health) {
        /* one prober per generation; the master restarts slot 0 if it
         * dies, and the state it writes is shared */
        mg_health_start_active(rt->health, w.loop, rt);
    }
    if (!admin) {
        mg_lua_worker_start(rt);
    }
    mg_worker_config_init(&w);
    if (admin && strcmp(conf->role, "data_plane") == 0) {
        mg_admin_kick("/__moongate/cluster/start");
    }
    mg_log_info("%s %d started", admin ? "admin process" : "worker", slot);
    ev_run(w.loop, 0);
    if (w.terminating) {
        mg_log_info("worker %d: fast stop", slot);
    } else {
        mg_log_info("worker %d: exiting", slot);
    }
    mg_worker_exit(0);
}

void
mg_worker_run(mg_conf_t *conf, mg_runtime_t *rt, int slot, const int *fds,
              size_t nfds)
{
    mg_worker_main(conf, rt, slot, fds, nfds, &conf->proxy_listen, 0);
}

void
mg_admin_run(mg_conf_t *conf, mg_runtime_t *rt, const int *fds, size_t nfds)
{
    size_t i, n = conf->admin_listen.n;

    /* fds: the admin_listen sockets, then (control plane) the
     * cluster_listen ones, always TLS with the cluster certificate */
    mg_admin_lists = conf->admin_listen;
    for (i = n; i < nfds && i < MG_CONF_MAX_LISTEN; i++) {
        mg_admin_lists.elts[i] = conf->cluster_listen.elts[i - n];
        mg_admin_lists.elts[i].ssl = 1;
    }
    mg_admin_lists.n = nfds;
    if (nfds > n) {
        mg_cluster_ls = &mg_admin_lists.elts[n];
    }
    mg_worker_main(conf, rt, -1, fds, nfds, &mg_admin_lists, 1);
}
