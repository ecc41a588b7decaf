/*
 * mg_lua_socket.c -- non-blocking TCP cosockets for Lua (ngx.socket.tcp,
 * resty.http): connect (IP literal or a name through the worker's c-ares
 * resolver), send, receive, TLS client handshake, and per-worker
 * keep-alive pools keyed by "host:port[:pool]".
 *
 * Ownership.  A socket is malloc'd (not arena memory: a pooled socket
 * outlives its request) and belongs to one owner -- a request or one run
 * of an ngx.timer callback -- or, while idle in a keep-alive pool, to the
 * pool.  Lua never holds a pointer: it holds an int id, slot | gen << 16.
 * A close, a setkeepalive or the owner's end bumps the generation, so a
 * stale id (a socket object kept in a module table, used by a later
 * request) fails with "closed" and never reaches freed memory.  When the
 * owner ends (mg_lua_socket_owner_end, called by mg_lua.c at the request's
 * end and when a timer's coroutine returns), every socket it left open is
 * closed, including one its coroutine is suspended on: the watcher stops,
 * the DNS query is cancelled, the fd is closed; the abandoned coroutine
 * is collected with the request's Lua state.
 *
 * Waits.  Each call either completes now or arms one ev_io (direction as
 * the operation or TLS asks) plus one ev_timer (the operation's timeout)
 * and returns MG_AGAIN; the event callback stops both, records the
 * outcome in the socket, and as its very last action resumes the owner
 * (mg_lua_wake) -- never touching the socket afterwards, since the
 * resumed Lua code may close it or end the request.  Lua then fetches the
 * outcome with mg_lua_socket_result() and, for reads, calls recv again.
 *
 * Buffering lives in Lua (moongate.socket): C hands out whatever one
 * recv(2) got; patterns ("*l", receiveuntil) are matched in Lua.  That
 * keeps this file to the event plumbing.
 *
 * Rejected: reusing mg_upconn_t and the proxy's peer pools -- those are
 * keyed by resolved (service, target) peers and carry the proxy's HTTP
 * state; cosocket pools are keyed by the name the plugin gives and hold
 * arbitrary protocols (Redis, HTTP, ...).  Rejected: a pointer (cdata) per
 * socket in Lua -- the request can end under it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <ev.h>
#include "mg_lua_api.h"
#include "mg_lua_socket.h"
#include "../base/mg_log.h"
#include "../base/mg_time.h"
#include "../event/mg_event.h"
#include "../tls/mg_tls.h"
#include "../upstream/mg_dns.h"
#include "../upstream/mg_upstream.h"

#define MG_LSOCK_SLOTS   65536      /* ids carry the slot in 16 bits */
#define MG_LSOCK_BUF     65536      /* at most this much per recv call */

enum {
    MG_LSOCK_OP_NONE = 0,
    MG_LSOCK_OP_RESOLVE,
    MG_LSOCK_OP_CONNECT,
    MG_LSOCK_OP_SEND,
    MG_LSOCK_OP_RECV,
    MG_LSOCK_OP_HANDSHAKE
};

typedef struct mg_lsock_s mg_lsock_t;
typedef struct mg_lpool_s mg_lpool_t;

struct mg_lsock_s {
    int            fd;
    ev_io          io;
    ev_timer       timer;
    int            slot;
    uint16_t       gen;
    int            op;            /* the wait under way */
    void          *r;             /* owner: a request... */
    void          *t;             /* ...or a timer run; both NULL pooled */
    void          *dns;           /* pending mg_dns handle */
    const char    *err;           /* outcome of the last wait, NULL: ok */
    char           errbuf[320];
    char           host[256];
    int            port;
    char          *key;           /* pool key (malloc) */
    char          *in;            /* recv buffer */
    char          *out;           /* unsent bytes of a send */
    size_t         out_len;
    size_t         out_off;
    mg_tls_conn_t *tls;
    int            reused;        /* times taken from a pool */
    unsigned       eof:1;
    unsigned       pooled:1;
    unsigned       handshaken:1;
    mg_lpool_t    *pool;
    mg_lsock_t    *pnext;         /* pool list, most recent first */
    mg_lsock_t    *pprev;
};

struct mg_lpool_s {
    char          *key;
    mg_lsock_t    *head;
    mg_lsock_t    *tail;
    int            n;
    mg_lpool_t    *next;
};

static mg_lsock_t     **mg_lsocks;  /* by slot */
static uint16_t        *mg_lsock_gens;
static int              mg_lsock_cap;
static int              mg_lsock_hint;
static int              mg_lsock_live;
static mg_lpool_t      *mg_lpools;
static const char      *mg_lsock_reason = "";
static mg_tls_client_t *mg_lsock_tls[3];   /* [verify]; [2]: cluster */

static const char mg_lsock_err_busy[] = "socket busy";
static const char mg_lsock_err_nomem[] = "no memory";
static const char mg_lsock_err_unread[] = "unread data in buffer";

static void mg_lsock_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void mg_lsock_timer_cb(struct ev_loop *loop, ev_timer *w, int rev);

static int
mg_lsock_fail(const char *reason)
{
    mg_lsock_reason = reason;
    return MG_ERROR;
}

/* The socket's own outcome becomes the reason Lua reads. */
static int
mg_lsock_fail_s(mg_lsock_t *s)
{
    mg_lsock_reason = s->err ? s->err : "closed";
    return MG_ERROR;
}

const char *
mg_lua_socket_error(void)
{
    return mg_lsock_reason;
}

/* --- ids and slots -------------------------------------------------- */

static int
mg_lsock_id(const mg_lsock_t *s)
{
    return (int) ((uint32_t) s->gen << 16 | (uint32_t) s->slot);
}

static uint16_t
mg_lsock_next_gen(uint16_t g)
{
    return (uint16_t) (g % 0x7fff + 1);      /* 1 .. 0x7fff: id > 0 */
}

static mg_lsock_t *
mg_lsock_get(int id)
{
    int         slot = id & 0xffff;
    mg_lsock_t *s;

    if (id <= 0 || slot >= mg_lsock_cap) {
        return NULL;
    }
    s = mg_lsocks[slot];
    if (s == NULL || s->pooled || s->gen != (uint16_t) (id >> 16)) {
        return NULL;
    }
    return s;
}

static mg_lsock_t *
mg_lsock_new(void *r, void *t)
{
    mg_lsock_t *s;
    int         i, slot = -1;

    for (i = 0; i < mg_lsock_cap; i++) {
        int k = (mg_lsock_hint + i) % mg_lsock_cap;
        if (mg_lsocks[k] == NULL) {
            slot = k;
            break;
        }
    }
    if (slot < 0) {
        int        cap = mg_lsock_cap ? mg_lsock_cap * 2 : 64;
        void      *np, *ng;

        if (cap > MG_LSOCK_SLOTS) {
            cap = MG_LSOCK_SLOTS;
        }
        if (cap == mg_lsock_cap) {
            return NULL;                     /* 65536 sockets open */
        }
        np = realloc(mg_lsocks, (size_t) cap * sizeof(*mg_lsocks));
        if (np == NULL) {
            return NULL;
        }
        mg_lsocks = np;
        ng = realloc(mg_lsock_gens, (size_t) cap * sizeof(*mg_lsock_gens));
        if (ng == NULL) {
            return NULL;
        }
        mg_lsock_gens = ng;
        for (i = mg_lsock_cap; i < cap; i++) {
            mg_lsocks[i] = NULL;
            mg_lsock_gens[i] = 1;
        }
        slot = mg_lsock_cap;
        mg_lsock_cap = cap;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->fd = -1;
    s->slot = slot;
    s->gen = mg_lsock_gens[slot];
    s->r = r;
    s->t = t;
    ev_init(&s->io, mg_lsock_io_cb);
    s->io.data = s;
    ev_init(&s->timer, mg_lsock_timer_cb);
    s->timer.data = s;
    mg_lsocks[slot] = s;
    mg_lsock_hint = slot + 1;
    mg_lsock_live++;
    return s;
}

/* A new generation for s: ids handed out so far go stale. */
static void
mg_lsock_regen(mg_lsock_t *s)
{
    mg_lsock_gens[s->slot] = mg_lsock_next_gen(mg_lsock_gens[s->slot]);
    s->gen = mg_lsock_gens[s->slot];
}

static void
mg_lsock_stop(mg_lsock_t *s)
{
    ev_io_stop(mg_worker->loop, &s->io);
    ev_timer_stop(mg_worker->loop, &s->timer);
}

/* Close the connection; the object (and its slot) stays. */
static void
mg_lsock_shut(mg_lsock_t *s)
{
    mg_lsock_stop(s);
    if (s->dns) {
        mg_dns_cancel(mg_worker->dns, s->dns);
        s->dns = NULL;
    }
    if (s->tls) {
        mg_tls_conn_free(s->tls);
        s->tls = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->op = MG_LSOCK_OP_NONE;
    s->handshaken = 0;
}

static void
mg_lpool_unlink(mg_lsock_t *s)
{
    mg_lpool_t *p = s->pool;

    if (s->pprev) s->pprev->pnext = s->pnext; else p->head = s->pnext;
    if (s->pnext) s->pnext->pprev = s->pprev; else p->tail = s->pprev;
    p->n--;
    s->pool = NULL;
    s->pnext = s->pprev = NULL;
    s->pooled = 0;
}

static void
mg_lsock_free(mg_lsock_t *s)
{
    if (s->pool) {
        mg_lpool_unlink(s);
    }
    mg_lsock_shut(s);
    mg_lsocks[s->slot] = NULL;
    mg_lsock_gens[s->slot] = mg_lsock_next_gen(mg_lsock_gens[s->slot]);
    mg_lsock_live--;
    free(s->key);
    free(s->in);
    free(s->out);
    free(s);
}

void
mg_lua_socket_owner_end(void *r, void *t)
{
    int i;

    for (i = 0; mg_lsock_live > 0 && i < mg_lsock_cap; i++) {
        mg_lsock_t *s = mg_lsocks[i];
        if (s == NULL || s->pooled) {
            continue;
        }
        if ((r != NULL && s->r == r) || (t != NULL && s->t == t)) {
            if (s->op != MG_LSOCK_OP_NONE) {
                mg_log_info("lua socket to %s:%d closed while its owner "
                            "waited: the %s ended", s->host, s->port,
                            r ? "request" : "timer");
            }
            mg_lsock_free(s);
        }
    }
}

/* --- waiting -------------------------------------------------------- */

static void
mg_lsock_arm(mg_lsock_t *s, int op, int events, int timeout_ms)
{
    s->op = op;
    s->err = NULL;
    ev_io_stop(mg_worker->loop, &s->io);
    if (events) {
        ev_io_set(&s->io, s->fd, events);
        ev_io_start(mg_worker->loop, &s->io);
    }
    if (!ev_is_active(&s->timer) && timeout_ms > 0) {
        ev_timer_set(&s->timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(mg_worker->loop, &s->timer);
    }
}

/* The wait is over with s->err as its outcome: resume the owner.  The
 * last thing an event callback does. */
static void
mg_lsock_done(mg_lsock_t *s, const char *err)
{
    void *r = s->r, *t = s->t;

    mg_lsock_stop(s);
    s->op = MG_LSOCK_OP_NONE;
    s->err = err;
    mg_lua_wake(r, t);
}

static int
mg_lsock_tls_dir(const mg_lsock_t *s)
{
    return s->tls && mg_tls_want_write(s->tls) ? EV_WRITE : EV_READ;
}

static const char *
mg_lsock_errno_reason(mg_lsock_t *s, int e)
{
    switch (e) {
    case ECONNREFUSED:
        return mg_err_refused;
    case ECONNRESET:
    case EPIPE:
        return mg_err_reset;
    case ETIMEDOUT:
        return mg_err_timeout;
    default:
        if (e == EIO && s->tls && mg_tls_error(s->tls)) {
            snprintf(s->errbuf, sizeof(s->errbuf), "%s", mg_tls_error(s->tls));
        } else {
            snprintf(s->errbuf, sizeof(s->errbuf), "%s", strerror(e));
        }
        return s->errbuf;
    }
}

/* --- connect -------------------------------------------------------- */

/* Start the TCP connect: MG_OK connected, MG_AGAIN in progress (the
 * watcher is armed), MG_ERROR with s->err. */
static int
mg_lsock_start_connect(mg_lsock_t *s, const struct sockaddr *sa,
                       socklen_t len, int timeout_ms)
{
    int one = 1;

    s->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   0);
    if (s->fd < 0) {
        s->err = mg_lsock_errno_reason(s, errno);
        return MG_ERROR;
    }
    if (sa->sa_family != AF_UNIX) {
        (void) setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(s->fd, sa, len) == 0) {
        return MG_OK;
    }
    if (errno == EINPROGRESS || errno == EAGAIN) {
        mg_lsock_arm(s, MG_LSOCK_OP_CONNECT, EV_WRITE, timeout_ms);
        return MG_AGAIN;
    }
    s->err = mg_lsock_errno_reason(s, errno);
    mg_lsock_shut(s);
    return MG_ERROR;
}

static int
mg_lsock_connect_to(mg_lsock_t *s, const struct sockaddr_storage *ss,
                    socklen_t len, int timeout_ms)
{
    struct sockaddr_storage a = *ss;

    if (a.ss_family == AF_INET) {
        ((struct sockaddr_in *) &a)->sin_port = htons((uint16_t) s->port);
    } else if (a.ss_family == AF_INET6) {
        ((struct sockaddr_in6 *) &a)->sin6_port = htons((uint16_t) s->port);
    }
    return mg_lsock_start_connect(s, (struct sockaddr *) &a, len, timeout_ms);
}

static void
mg_lsock_dns_cb(void *ctx, const mg_dns_result_t *res)
{
    mg_lsock_t *s = ctx;
    int         rc;

    s->dns = NULL;
    mg_time_update(ev_now(mg_worker->loop));
    if (res->status != MG_OK || res->naddrs == 0) {
        snprintf(s->errbuf, sizeof(s->errbuf), "%s could not be resolved (%s)",
                 s->host, res->error ? res->error : "no address");
        mg_lsock_done(s, s->errbuf);
        return;
    }
    rc = mg_lsock_connect_to(s, &res->addrs[0].addr, res->addrs[0].addrlen,
                             0 /* the resolve timer keeps running */);
    if (rc == MG_AGAIN) {
        return;
    }
    mg_lsock_done(s, rc == MG_OK ? NULL : s->err);
}

static int
mg_lsock_literal(const char *host, struct sockaddr_storage *ss,
                 socklen_t *len)
{
    char   buf[256];
    size_t n = strlen(host);

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *) ss)->sin_addr) == 1) {
        ss->ss_family = AF_INET;
        *len = sizeof(struct sockaddr_in);
        return 1;
    }
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, n - 2);
        buf[n - 2] = '\0';
        host = buf;
    }
    if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *) ss)->sin6_addr)
        == 1)
    {
        ss->ss_family = AF_INET6;
        *len = sizeof(struct sockaddr_in6);
        return 1;
    }
    return 0;
}

static mg_lpool_t *
mg_lpool_find(const char *key, size_t kl)
{
    mg_lpool_t *p;

    for (p = mg_lpools; p; p = p->next) {
        if (strlen(p->key) == kl && memcmp(p->key, key, kl) == 0) {
            return p;
        }
    }
    return NULL;
}

int
mg_lua_socket_connect(void *r, void *t, const char *host, size_t hl,
                      int port, const char *key, size_t kl, int timeout_ms,
                      int *id)
{
    struct sockaddr_storage ss;
    socklen_t               len = 0;
    mg_dns_result_t         res;
    mg_lpool_t             *p;
    mg_lsock_t             *s;
    int                     rc, is_unix;

    *id = 0;
    if (mg_worker == NULL || (r == NULL && t == NULL)) {
        return mg_lsock_fail("cosockets need a request or a timer");
    }
    is_unix = hl > 5 && memcmp(host, "unix:", 5) == 0;
    if (hl == 0 || hl >= sizeof(s->host)
        || (!is_unix && (port <= 0 || port > 65535)))
    {
        return mg_lsock_fail(hl == 0 || hl >= sizeof(s->host) ? "bad host"
                                                              : "bad port");
    }

    /* a pooled connection first, before any name resolution (ngx_lua) */
    p = mg_lpool_find(key, kl);
    if (p && p->head) {
        s = p->head;
        mg_lpool_unlink(s);
        mg_lsock_stop(s);
        mg_lsock_regen(s);
        s->r = r;
        s->t = t;
        s->reused++;
        s->err = NULL;
        *id = mg_lsock_id(s);
        return MG_OK;
    }

    s = mg_lsock_new(r, t);
    if (s == NULL) {
        return mg_lsock_fail(mg_lsock_err_nomem);
    }
    memcpy(s->host, host, hl);
    s->host[hl] = '\0';
    s->port = port;
    s->key = malloc(kl + 1);
    if (s->key == NULL) {
        mg_lsock_free(s);
        return mg_lsock_fail(mg_lsock_err_nomem);
    }
    memcpy(s->key, key, kl);
    s->key[kl] = '\0';
    *id = mg_lsock_id(s);

    if (is_unix) {
        struct sockaddr_un un;
        memset(&un, 0, sizeof(un));
        un.sun_family = AF_UNIX;
        if (hl - 5 >= sizeof(un.sun_path)) {
            s->err = "bad unix socket path";
            return mg_lsock_fail_s(s);
        }
        memcpy(un.sun_path, host + 5, hl - 5);
        rc = mg_lsock_start_connect(s, (struct sockaddr *) &un, sizeof(un),
                                    timeout_ms);
    } else if (mg_lsock_literal(s->host, &ss, &len)) {
        rc = mg_lsock_connect_to(s, &ss, len, timeout_ms);
    } else if (mg_worker->dns == NULL) {
        snprintf(s->errbuf, sizeof(s->errbuf),
                 "no resolver defined to resolve \"%s\"", s->host);
        s->err = s->errbuf;
        return mg_lsock_fail_s(s);
    } else {
        rc = mg_dns_resolve(mg_worker->dns, s->host, &res, mg_lsock_dns_cb,
                            s, &s->dns);
        if (rc == MG_AGAIN) {
            mg_lsock_arm(s, MG_LSOCK_OP_RESOLVE, 0, timeout_ms);
            return MG_AGAIN;
        }
        if (rc != MG_OK || res.naddrs == 0) {
            snprintf(s->errbuf, sizeof(s->errbuf),
                     "%s could not be resolved (%s)", s->host,
                     res.error ? res.error : "no address");
            s->err = s->errbuf;
            return mg_lsock_fail_s(s);
        }
        rc = mg_lsock_connect_to(s, &res.addrs[0].addr, res.addrs[0].addrlen,
                                 timeout_ms);
    }
    if (rc == MG_ERROR) {
        return mg_lsock_fail_s(s);
    }
    return rc;
}

int
mg_lua_socket_result(int id)
{
    mg_lsock_t *s = mg_lsock_get(id);

    if (s == NULL) {
        return mg_lsock_fail(mg_err_closed);
    }
    if (s->op != MG_LSOCK_OP_NONE) {
        return mg_lsock_fail(mg_lsock_err_busy);
    }
    return s->err ? mg_lsock_fail_s(s) : MG_OK;
}

int
mg_lua_socket_reused(int id)
{
    mg_lsock_t *s = mg_lsock_get(id);
    return s ? s->reused : MG_DECLINED;
}

/* Common checks of the calls on a connected socket. */
static mg_lsock_t *
mg_lsock_ready(int id, int *rc)
{
    mg_lsock_t *s = mg_lsock_get(id);

    if (s == NULL || s->fd < 0) {
        *rc = mg_lsock_fail(mg_err_closed);
        return NULL;
    }
    if (s->op != MG_LSOCK_OP_NONE) {
        *rc = mg_lsock_fail(mg_lsock_err_busy);
        return NULL;
    }
    return s;
}

/* --- send ----------------------------------------------------------- */

static ssize_t
mg_lsock_write(mg_lsock_t *s, const char *p, size_t n)
{
    struct iovec iov;

    if (s->tls) {
        iov.iov_base = (void *) p;
        iov.iov_len = n;
        return mg_tls_writev(s->tls, &iov, 1);
    }
    return send(s->fd, p, n, MSG_NOSIGNAL);
}

/* Write what s->out holds: MG_OK all sent, MG_AGAIN armed, MG_ERROR. */
static int
mg_lsock_flush(mg_lsock_t *s, int timeout_ms)
{
    while (s->out_off < s->out_len) {
        ssize_t k = mg_lsock_write(s, s->out + s->out_off,
                                   s->out_len - s->out_off);
        if (k > 0) {
            s->out_off += (size_t) k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            mg_lsock_arm(s, MG_LSOCK_OP_SEND,
                         s->tls ? mg_lsock_tls_dir(s) : EV_WRITE, timeout_ms);
            return MG_AGAIN;
        }
        s->err = mg_lsock_errno_reason(s, k < 0 ? errno : EPIPE);
        return MG_ERROR;
    }
    s->out_len = s->out_off = 0;
    return MG_OK;
}

int
mg_lua_socket_send(int id, const char *p, size_t n, int timeout_ms)
{
    mg_lsock_t *s;
    size_t      sent = 0;
    int         rc;

    if ((s = mg_lsock_ready(id, &rc)) == NULL) {
        return rc;
    }
    while (sent < n) {
        ssize_t k = mg_lsock_write(s, p + sent, n - sent);
        if (k > 0) {
            sent += (size_t) k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
            break;
        }
        s->err = mg_lsock_errno_reason(s, k < 0 ? errno : EPIPE);
        mg_lsock_shut(s);
        return mg_lsock_fail_s(s);
    }
    if (sent == n) {
        return MG_OK;
    }
    /* the rest waits in s->out; TLS needs the same bytes offered again */
    free(s->out);
    s->out = malloc(n - sent);
    if (s->out == NULL) {
        s->err = mg_lsock_err_nomem;
        mg_lsock_shut(s);
        return mg_lsock_fail_s(s);
    }
    memcpy(s->out, p + sent, n - sent);
    s->out_len = n - sent;
    s->out_off = 0;
    rc = mg_lsock_flush(s, timeout_ms);
    if (rc == MG_ERROR) {
        mg_lsock_shut(s);
        return mg_lsock_fail_s(s);
    }
    return rc;
}

/* --- receive -------------------------------------------------------- */

int
mg_lua_socket_recv(int id, size_t max, int timeout_ms, const char **p,
                   size_t *n)
{
    mg_lsock_t *s;
    ssize_t     k;
    int         rc;

    *n = 0;
    if ((s = mg_lsock_ready(id, &rc)) == NULL) {
        return rc;
    }
    if (s->eof) {
        return MG_DONE;
    }
    if (s->in == NULL) {
        s->in = malloc(MG_LSOCK_BUF);
        if (s->in == NULL) {
            return mg_lsock_fail(mg_lsock_err_nomem);
        }
    }
    if (max == 0 || max > MG_LSOCK_BUF) {
        max = MG_LSOCK_BUF;
    }
    for (;;) {
        k = s->tls ? mg_tls_recv(s->tls, s->in, max) : recv(s->fd, s->in, max, 0);
        if (k > 0) {
            *p = s->in;
            *n = (size_t) k;
            return MG_OK;
        }
        if (k == 0) {
            s->eof = 1;
            return MG_DONE;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN) {
            mg_lsock_arm(s, MG_LSOCK_OP_RECV,
                         s->tls ? mg_lsock_tls_dir(s) : EV_READ, timeout_ms);
            return MG_AGAIN;
        }
        s->err = mg_lsock_errno_reason(s, errno);
        mg_lsock_shut(s);
        return mg_lsock_fail_s(s);
    }
}

/* --- TLS ------------------------------------------------------------ */

static mg_tls_client_t *
mg_lsock_tls_client(int verify)
{
    mg_service_t svc;
    char         err[512];

    if (mg_lsock_tls[verify] == NULL) {
        memset(&svc, 0, sizeof(svc));
        mg_str_set(&svc.name, "cosocket");
        svc.tls_verify = verify;
        svc.tls_verify_depth = -1;
        mg_lsock_tls[verify] = mg_tls_client_create(
            mg_worker->rt ? mg_worker->rt->cf : NULL, &svc, err, sizeof(err));
        if (mg_lsock_tls[verify] == NULL) {
            mg_log_error("lua socket: %s", err);
        }
    }
    return mg_lsock_tls[verify];
}

/* verify == 2: a data plane's connection to its control plane, shared
 * mTLS with cluster_cert / cluster_cert_key (mg_tls_cluster.c). */
static mg_tls_client_t *
mg_lsock_tls_cluster(void)
{
    const mg_conf_t *conf = mg_worker->conf;
    char             cert[4096], key[4096], err[512];

    if (mg_lsock_tls[2] == NULL) {
        if (conf->cluster_cert == NULL || conf->cluster_cert_key == NULL) {
            return NULL;
        }
        mg_conf_path(conf, conf->cluster_cert, cert, sizeof(cert));
        mg_conf_path(conf, conf->cluster_cert_key, key, sizeof(key));
        mg_lsock_tls[2] = mg_tls_cluster_client_create(cert, key, err,
                                                       sizeof(err));
        if (mg_lsock_tls[2] == NULL) {
            mg_log_error("lua socket: %s", err);
        }
    }
    return mg_lsock_tls[2];
}

static int
mg_lsock_handshake(mg_lsock_t *s, int timeout_ms)
{
    int rc = mg_tls_handshake(s->tls);

    if (rc == MG_OK) {
        s->handshaken = 1;
        return MG_OK;
    }
    if (rc == MG_AGAIN) {
        mg_lsock_arm(s, MG_LSOCK_OP_HANDSHAKE, mg_lsock_tls_dir(s),
                     timeout_ms);
        return MG_AGAIN;
    }
    snprintf(s->errbuf, sizeof(s->errbuf), "handshake failed: %s",
             mg_tls_error(s->tls) ? mg_tls_error(s->tls) : "?");
    s->err = s->errbuf;
    return MG_ERROR;
}

int
mg_lua_socket_sslhandshake(int id, const char *name, size_t nl, int verify,
                           int timeout_ms)
{
    mg_tls_client_t *cl;
    mg_lsock_t      *s;
    char             sni[256];
    int              rc;

    if ((s = mg_lsock_ready(id, &rc)) == NULL) {
        return rc;
    }
    if (s->tls && s->handshaken) {
        return MG_OK;            /* a pooled TLS connection */
    }
    if (s->tls) {
        return mg_lsock_fail("handshake failed: already tried");
    }
    if (nl >= sizeof(sni)) {
        return mg_lsock_fail("bad server name");
    }
    cl = verify == 2 ? mg_lsock_tls_cluster()
                     : mg_lsock_tls_client(verify ? 1 : 0);
    if (cl == NULL) {
        return mg_lsock_fail("handshake failed: no TLS client context");
    }
    memcpy(sni, name ? name : "", nl);
    sni[nl] = '\0';
    s->tls = mg_tls_conn_client(cl, s->fd, nl && verify != 2 ? sni : NULL);
    if (s->tls == NULL) {
        return mg_lsock_fail(mg_lsock_err_nomem);
    }
    rc = mg_lsock_handshake(s, timeout_ms);
    if (rc == MG_ERROR) {
        mg_lsock_shut(s);
        return mg_lsock_fail_s(s);
    }
    return rc;
}

/* --- events --------------------------------------------------------- */

static void
mg_lsock_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_lsock_t *s = w->data;
    socklen_t   len = sizeof(int);
    int         e = 0, rc;

    (void) revents;
    mg_time_update(ev_now(loop));
    switch (s->op) {
    case MG_LSOCK_OP_CONNECT:
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) {
            e = errno;
        }
        if (e != 0) {
            const char *err = mg_lsock_errno_reason(s, e);
            mg_lsock_shut(s);
            mg_lsock_done(s, err);
            return;
        }
        mg_lsock_done(s, NULL);
        return;
    case MG_LSOCK_OP_SEND:
    case MG_LSOCK_OP_HANDSHAKE:
        rc = s->op == MG_LSOCK_OP_SEND ? mg_lsock_flush(s, 0)
                                       : mg_lsock_handshake(s, 0);
        if (rc == MG_AGAIN) {
            return;
        }
        if (rc == MG_ERROR) {
            const char *err = s->err;
            mg_lsock_shut(s);
            mg_lsock_done(s, err);
            return;
        }
        mg_lsock_done(s, NULL);
        return;
    case MG_LSOCK_OP_RECV:
        mg_lsock_done(s, NULL);      /* Lua reads again */
        return;
    default:
        break;
    }
    if (s->pooled) {
        /* an idle pooled connection got data or EOF: it is unusable.  The
         * last use of s in this callback. */
        mg_lsock_free(s);
        return;
    }
    ev_io_stop(loop, w);
}

static void
mg_lsock_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_lsock_t *s = w->data;

    (void) revents;
    mg_time_update(ev_now(loop));
    if (s->pooled) {
        mg_lsock_free(s);           /* idle too long; last use of s */
        return;
    }
    switch (s->op) {
    case MG_LSOCK_OP_RESOLVE:
    case MG_LSOCK_OP_CONNECT:
    case MG_LSOCK_OP_SEND:
    case MG_LSOCK_OP_HANDSHAKE:
        /* a half-done connect, write or handshake leaves the stream in an
         * unknown state: close it (a read timeout keeps it, as ngx_lua) */
        mg_lsock_shut(s);
        mg_lsock_done(s, mg_err_timeout);
        return;
    case MG_LSOCK_OP_RECV:
        mg_lsock_done(s, mg_err_timeout);
        return;
    default:
        ev_timer_stop(loop, w);
    }
}

/* --- keep-alive and close ------------------------------------------- */

int
mg_lua_socket_setkeepalive(int id, int timeout_ms, int size)
{
    mg_lpool_t *p;
    mg_lsock_t *s;
    int         rc;

    if ((s = mg_lsock_ready(id, &rc)) == NULL) {
        return rc;
    }
    if (s->eof || (s->tls && mg_tls_pending(s->tls) > 0)) {
        rc = mg_lsock_fail(s->eof ? mg_err_closed : mg_lsock_err_unread);
        mg_lsock_free(s);
        return rc;
    }
    if (size <= 0) {
        size = 30;                  /* lua_socket_pool_size */
    }
    p = mg_lpool_find(s->key, strlen(s->key));
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL || (p->key = strdup(s->key)) == NULL) {
            free(p);
            mg_lsock_free(s);
            return mg_lsock_fail(mg_lsock_err_nomem);
        }
        p->next = mg_lpools;
        mg_lpools = p;
    }
    while (p->n >= size && p->tail) {
        mg_lsock_free(p->tail);     /* the least recently used goes */
    }
    mg_lsock_stop(s);
    mg_lsock_regen(s);              /* the Lua object's id goes stale */
    s->r = s->t = NULL;
    s->pooled = 1;
    s->pool = p;
    s->pprev = NULL;
    s->pnext = p->head;
    if (p->head) p->head->pprev = s; else p->tail = s;
    p->head = s;
    p->n++;
    s->op = MG_LSOCK_OP_NONE;
    ev_io_set(&s->io, s->fd, EV_READ);
    ev_io_start(mg_worker->loop, &s->io);
    if (timeout_ms > 0) {
        ev_timer_set(&s->timer, timeout_ms / 1000.0, 0.);
        ev_timer_start(mg_worker->loop, &s->timer);
    }
    return MG_OK;
}

int
mg_lua_socket_close(int id)
{
    mg_lsock_t *s = mg_lsock_get(id);

    if (s == NULL) {
        return mg_lsock_fail(mg_err_closed);
    }
    if (s->op != MG_LSOCK_OP_NONE) {
        return mg_lsock_fail(mg_lsock_err_busy);
    }
    if (s->fd < 0) {
        mg_lsock_free(s);
        return mg_lsock_fail(mg_err_closed);
    }
    if (s->tls && s->handshaken) {
        mg_tls_close_notify(s->tls);
    }
    mg_lsock_free(s);
    return MG_OK;
}

int
mg_lua_socket_count(int pooled)
{
    int i, n = 0;

    for (i = 0; i < mg_lsock_cap; i++) {
        if (mg_lsocks[i] && (int) mg_lsocks[i]->pooled == (pooled != 0)) {
            n++;
        }
    }
    return n;
}
