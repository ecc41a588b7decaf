/*
 * mg_event.h -- the worker's event loop, its listeners and client
 * connections.
 *
 * One libev loop per worker process, no threads.  A client connection
 * keeps one read watcher armed for its whole life (level-triggered epoll:
 * arming and disarming per request would cost two epoll_ctl calls); the
 * write watcher is armed only when a write would block.  One timer per
 * connection serves whichever client timeout applies to its state
 * (header, body, keep-alive idle, send), re-armed with ev_timer_again,
 * which costs a heap adjustment and no syscall.
 *
 * I/O goes through a small function table so TLS can slot in under the
 * same connection code later (h2o's socket layer does the same).
 */
#ifndef MG_EVENT_H
#define MG_EVENT_H

#include <ev.h>
#include <netinet/in.h>
#include <sys/uio.h>
#include "../mg_core.h"
#include "../base/mg_buf.h"
#include "../conf/mg_conf.h"

typedef struct {
    ssize_t (*recv)(mg_conn_t *c, char *buf, size_t n);
    ssize_t (*writev)(mg_conn_t *c, const struct iovec *iov, int iovcnt);
} mg_conn_io_t;

/* I/O failure reasons: static strings, passed on unchanged (h2o style). */
extern const char mg_err_timeout[];
extern const char mg_err_closed[];
extern const char mg_err_reset[];
extern const char mg_err_refused[];
extern const char mg_err_io[];

typedef enum {
    MG_CONN_IDLE = 0,      /* keep-alive, waiting for a request */
    MG_CONN_HANDSHAKE,     /* TLS handshake under way */
    MG_CONN_HEAD,          /* reading a request head */
    MG_CONN_ACTIVE,        /* a request is being served */
    MG_CONN_LINGER         /* response sent, draining input before close */
} mg_conn_state_e;

struct mg_conn_s {
    int                  fd;
    ev_io                rev;
    ev_io                wev;
    ev_timer             timer;
    ev_tstamp            deadline;    /* of the timeout set, 0 = none */
    const mg_conn_io_t  *io;
    struct mg_tls_conn_s *tls;        /* NULL on plain connections */
    mg_buf_t            *in;          /* NULL while idle */
    mg_request_t        *req;         /* current request, or NULL */
    union {
        struct sockaddr     sa;
        struct sockaddr_in  sin;
        struct sockaddr_in6 sin6;
    } peer;
    uint16_t             local_port;
    uint8_t              state;       /* mg_conn_state_e */
    unsigned             ssl:1;
    unsigned             eof:1;       /* client shut down its side */
    unsigned             read_paused:1;
    unsigned             closing:1;
    unsigned             close_pending:1;
    uint32_t             requests;    /* served on this connection */
    uint16_t             in_handler;  /* close deferred while > 0 */
    uint64_t             id;
    mg_conn_t           *prev, *next; /* the worker's connection list */
};

typedef struct {
    int          fd;
    ev_io        w;
    mg_listen_t *ls;
} mg_listener_t;

/*
 * I/O readiness is dispatched in the order epoll reported it.  libev
 * invokes pending watchers last-in first-out, so the connection that
 * became ready first in a batch would be served last; with dozens of
 * events per wake-up that unfairness is what the tail latency is made of.
 * I/O callbacks therefore only queue (object, generation, events) and the
 * worker's ev_prepare watcher (which runs after the callbacks, before the
 * next poll) walks the queue backwards, i.e. in epoll's order.  The
 * generation (a connection's id, an upstream connection's gen) drops
 * entries whose object was closed or reused meanwhile.
 */
typedef void (*mg_ready_pt)(void *obj, int revents);

typedef struct {
    mg_ready_pt  handler;
    void        *obj;
    uint64_t     gen;
    const uint64_t *genp;    /* where the object's live generation is */
    int          revents;
} mg_ready_t;

void mg_worker_ready(mg_ready_pt handler, void *obj, const uint64_t *genp,
                     int revents);
/* Run what is queued; callbacks outside the queue (timers) call it last. */
void mg_worker_ready_flush(void);

struct mg_worker_s {
    struct ev_loop   *loop;
    mg_conf_t        *conf;
    mg_runtime_t     *rt;
    int               slot;          /* 0 .. worker_processes-1 */
    mg_listener_t    *listeners;
    size_t            nlisteners;
    mg_conn_t        *conns;         /* all client connections */
    size_t            nconns;
    mg_conn_t        *free_conns;
    mg_pool_t       **free_pools;    /* request arenas, reset, for reuse */
    size_t            nfree_pools;
    uint64_t          next_conn_id;
    uint64_t          rand_state;
    unsigned          shutting_down:1;
    unsigned          terminating:1;
    unsigned          admin:1;       /* the admin process (admin_listen) */
    ev_signal         sigquit, sigterm, sigint;
    ev_prepare        prepare;
    ev_timer          flush_timer;
    ev_timer          shutdown_timer;
    mg_ready_t       *ready;         /* see mg_worker_ready() */
    size_t            nready;
    size_t            ready_cap;
    unsigned          in_ready;
    long              hs_ns;         /* TLS handshake work this loop turn
                                        (mg_http_conn_handshake) */
    struct mg_dns_s  *dns;           /* the worker's resolver, or NULL */
    int               access_fd;     /* -1 when off */
    mg_buf_t         *access_buf;
};

extern mg_worker_t *mg_worker;

/*
 * Run a worker on the given listening sockets (fds[i] belongs to
 * conf->proxy_listen.elts[i]) until it is told to stop.  Never returns:
 * exits the process with status 0 after a graceful or fast stop.
 */
void mg_worker_run(mg_conf_t *conf, mg_runtime_t *rt, int slot,
                   const int *fds, size_t nfds) __attribute__((noreturn));

/*
 * The admin process: the same loop and HTTP server on the admin_listen
 * sockets, every request answered by the Admin API (moongate.admin) in
 * Lua; no proxying, so a slow admin client never delays a proxied
 * request.  Exits with status 2 when the Admin API cannot start.
 */
void mg_admin_run(mg_conf_t *conf, mg_runtime_t *rt, const int *fds,
                  size_t nfds) __attribute__((noreturn));

/* Live configuration (mg_worker_config.c): watch the entity store and
 * swap to each new config version between requests. */
void mg_worker_config_init(mg_worker_t *w);
void mg_worker_config_stop(mg_worker_t *w);

/* Connection life cycle (mg_worker.c). */
void mg_conn_close(mg_conn_t *c);
void mg_conn_read_pause(mg_conn_t *c);
void mg_conn_read_resume(mg_conn_t *c);
void mg_conn_timer_set(mg_conn_t *c, int msec);   /* 0: no timeout */

/*
 * A timeout kept as a deadline (0 = none) beside the ev_timer that serves
 * it, for timeouts that change several times per request (mg_worker.c):
 * mg_timer_deadline sets it, moving the timer only for an earlier
 * deadline; a timer callback calls mg_timer_due first and handles the
 * timeout only when it returns 1 (0: cleared, or moved later -- the timer
 * was set again for what is left).
 */
void mg_timer_deadline(ev_timer *t, ev_tstamp *deadline, int msec);
int mg_timer_due(ev_timer *t, ev_tstamp *deadline);

/* Hold a connection across a callback: a close requested inside it is
 * deferred until the callback returns (never free an object inside its
 * own callback). */
#define MG_CONN_ENTER(c) ((c)->in_handler++)
#define MG_CONN_LEAVE(c)                                                    \
    do {                                                                    \
        if (--(c)->in_handler == 0 && (c)->close_pending) {                 \
            (c)->close_pending = 0;                                         \
            mg_conn_close(c);                                               \
        }                                                                   \
    } while (0)

/* Queue a read of c for this loop iteration (bytes TLS already holds). */
void mg_conn_queue_read(mg_conn_t *c);

/* Worker-wide resources. */
mg_pool_t *mg_worker_pool_get(void);
void mg_worker_pool_put(mg_pool_t *pool);
uint64_t mg_worker_random(void);

/* Format the peer address "1.2.3.4" into buf; returns its length. */
size_t mg_conn_peer_ip(const mg_conn_t *c, char *buf, size_t len);

/* Master (mg_master.c): run until stopped; returns the exit status. */
int mg_master_run(const char *conf_path, const char *prefix, int daemonize);

#endif
