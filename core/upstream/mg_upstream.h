/*
 * mg_upstream.h -- where requests go: peers, keep-alive pools, upstream
 * connections, and the per-config runtime that ties services to them.
 *
 * The runtime is built from a config snapshot before workers fork (and
 * again by the new workers' master on reload): each service gets either a
 * single peer (its host resolved once) or an upstream entity's balancer
 * plus one peer per target.  A peer owns its keep-alive pool, so the
 * request path finds a pooled connection with a pointer read, no hashing.
 *
 * IP literals are addresses at build time; names are resolved on the
 * request path by the worker's asynchronous resolver (mg_dns, c-ares,
 * TTL-honouring cache) only when no pooled connection can be reused.  A
 * name that does not resolve gets Kong's 503 "name resolution failed".
 */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include <ev.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "../mg_core.h"
#include "../base/mg_buf.h"
#include "../conf/mg_config.h"
#include "../conf/mg_conf.h"
#include "mg_balancer.h"

typedef struct mg_upconn_s mg_upconn_t;

typedef struct mg_peer_s {
    struct sockaddr_storage addr;
    socklen_t               addrlen;
    int                     resolved;
    char                    name[280];     /* "127.0.0.1:9000" for logs */
    mg_str_t                host;          /* host[:port] for the Host header */
    const mg_target_t      *target;        /* NULL for a service's own host */
    mg_upconn_t            *idle;          /* LIFO of idle connections */
    int                     nidle;
    int                     active;        /* connections in use */
    char                   *dns_name;      /* NULL for an IP literal */
    uint16_t                port;
    unsigned                rr;            /* rotates over DNS answers */
    unsigned                no_pool:1;     /* per-request peer: no pooling */
} mg_peer_t;

/* Set up peer for host:port (IP literal now, a name via mg_dns later);
 * strings go to pool. */
int mg_peer_init(mg_pool_t *pool, mg_peer_t *peer, mg_str_t host,
                 uint16_t port, int default_port);

/* Point a peer at one address of its DNS answer (port from SRV when
 * non-zero, else the peer's). */
void mg_peer_set_address(mg_peer_t *peer, const struct sockaddr_storage *ss,
                         socklen_t len, uint16_t srv_port);

typedef struct {
    mg_balancer_t  *balancer;    /* NULL when no target has weight > 0 */
    mg_peer_t      *peers;       /* indexed like the balancer */
    size_t          npeers;
} mg_upstream_rt_t;

typedef struct {
    const mg_service_t *service;
    mg_peer_t          *peer;      /* when the host is not an upstream */
    mg_upstream_rt_t   *upstream;  /* when it is: its balancer picks... */
    mg_peer_t          *peers;     /* ...an index into the service's own
                                      peers, so keep-alive pools are per
                                      (service, target) and connections
                                      with different TLS settings never
                                      mix */
    size_t              npeers;
    int                 tls;       /* https service */
    struct mg_tls_client_s *tls_client; /* its verification settings */
} mg_service_rt_t;

struct mg_health_s;
struct mg_tls_server_s;
struct mg_tls_client_s;

struct mg_runtime_s {
    mg_config_t        *cf;
    mg_router_t        *router;
    struct mg_health_s *health;      /* shared target health (mg_health) */
    struct mg_tls_server_s *tls_server; /* certificates for ssl listeners */
    void               *lua;         /* the plugin VM (core/lua), or NULL */
    mg_service_rt_t    *services;    /* indexed by mg_service_t.index */
    mg_upstream_rt_t   *upstreams;   /* indexed by mg_upstream_t.index */
    uint64_t            version;     /* the store's config version */
    unsigned            refs;        /* requests on it */
    unsigned            retired:1;   /* a newer one took over */
};

/* Build the runtime for cf (takes ownership of cf on success). */
mg_runtime_t *mg_runtime_build(mg_config_t *cf, char *err, size_t errlen);
void mg_runtime_free(mg_runtime_t *rt);

/*
 * A worker swaps runtimes between requests (a new config version): each
 * request holds the runtime it started on, and a retired runtime is freed
 * -- its idle upstream connections closed -- when the last one ends.  A
 * TLS client connection holds only the runtime's certificate set
 * (mg_tls_server_t is reference counted), so a long-lived keep-alive
 * client does not keep a whole old router and pool set alive.
 */
static inline void
mg_runtime_hold(mg_runtime_t *rt)
{
    if (rt) {
        rt->refs++;
    }
}

void mg_runtime_release(mg_runtime_t *rt);
void mg_runtime_retire(mg_runtime_t *rt);

/* An upstream connection: pooled when idle, owned by a request in use. */
typedef void (*mg_upconn_handler_pt)(mg_upconn_t *u, int events);

struct mg_upconn_s {
    int                 fd;
    ev_io               rev;
    ev_io               wev;
    ev_timer            timer;
    ev_tstamp           deadline;   /* of the timeout set, 0 = none */
    mg_buf_t           *in;
    mg_peer_t          *peer;
    void               *owner;       /* the request using it, NULL idle */
    mg_upconn_handler_pt handler;    /* called with EV_READ/EV_WRITE/EV_TIMER */
    uint32_t            requests;    /* requests sent on this connection */
    unsigned            connecting:1;
    unsigned            reused:1;    /* came from the keep-alive pool */
    unsigned            write_armed:1;
    mg_upconn_t        *next;        /* idle list */
    mg_upconn_t        *prev;
    double              idle_since;
    uint64_t            gen;         /* changes on close and reuse */
    uint64_t            key;         /* address + TLS server name: a pooled
                                        connection is reused only by a
                                        request wanting the same pair */
    struct mg_tls_conn_s *tls;       /* TLS session, kept while pooled */
};

/*
 * Get a connection to peer: a pooled one (reused = 1) or a new
 * non-blocking connect in progress (connecting = 1; the handler gets
 * EV_WRITE when it completes or fails).  NULL with *err set when the
 * socket cannot be created or the connect fails at once.
 */
mg_upconn_t *mg_upconn_get(mg_peer_t *peer, uint64_t key, void *owner,
                           mg_upconn_handler_pt handler, const char **err);

/* Return a connection that finished a response cleanly to its pool (or
 * close it when the pool is full or it served its maximum). */
void mg_upconn_release(mg_upconn_t *u, int keepalive);
void mg_upconn_close(mg_upconn_t *u);

/* Arm/disarm write interest and the timer (msec, 0 = stop). */
void mg_upconn_want_write(mg_upconn_t *u, int on);
void mg_upconn_timer(mg_upconn_t *u, int msec);

/* Drop every idle pooled connection (graceful stop). */
void mg_upconn_close_idle(mg_runtime_t *rt);

/* I/O on an upstream connection, plain or TLS: recv(2)/writev(2)
 * semantics (-1 with errno EAGAIN when it would block; after EAGAIN a
 * write must be retried with the same bytes). */
ssize_t mg_upconn_recv(mg_upconn_t *u, char *buf, size_t n);
ssize_t mg_upconn_writev(mg_upconn_t *u, const struct iovec *iov, int iovcnt);

/* Result of a completed connect: 0, or the errno. */
int mg_upconn_connect_result(mg_upconn_t *u);

#endif
