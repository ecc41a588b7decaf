/*
 * mg_http.h -- a request's life on the proxy: head, routing, the
 * upstream exchange and the response, all on one client connection.
 *
 * A request lives in its own arena (from the worker's arena cache); it
 * starts when a complete head has been buffered and ends after the last
 * response byte is written and the access-log line is queued.  Bodies
 * stream: request bytes go from the connection's read buffer straight to
 * the upstream socket, response bytes from the upstream connection's read
 * buffer straight to the client socket; neither side reads more while the
 * other is blocked (backpressure), so memory per request stays at two
 * buffers whatever the body size.
 */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include "../mg_core.h"
#include "../event/mg_event.h"
#include "../router/mg_router.h"
#include "../upstream/mg_upstream.h"
#include "mg_http_parser.h"

#define MG_HTTP_MAX_RESP_HEADERS 128

typedef enum {
    MG_REQ_UPSTREAM_NONE = 0,
    MG_REQ_UPSTREAM_RESOLVING,    /* waiting for DNS */
    MG_REQ_UPSTREAM_CONNECTING,
    MG_REQ_UPSTREAM_SENDING,      /* head and body going out */
    MG_REQ_UPSTREAM_WAITING,      /* all sent, no response byte yet */
    MG_REQ_UPSTREAM_READING,      /* response head/body coming in */
    MG_REQ_UPSTREAM_DONE
} mg_req_upstream_e;

/* A header change asked for by a plugin (kong.service.request.* for the
 * upstream request, kong.response.* for the response). */
typedef struct mg_hdr_mod_s {
    mg_str_t              name;
    mg_str_t              value;      /* data NULL: remove the header */
    int                   add;        /* 1: another value, keep others */
    struct mg_hdr_mod_s  *next;
} mg_hdr_mod_t;

struct mg_request_s {
    mg_pool_t           *pool;
    mg_conn_t           *conn;
    mg_runtime_t        *rt;
    mg_http_head_t       head;
    mg_http_parser_t     parser;      /* request body framing */
    size_t               head_len;    /* bytes of the head in conn->in */
    mg_str_t             path;        /* uri up to '?' */
    mg_str_t             query;       /* after '?', without it */
    mg_str_t             npath;       /* normalized path the router saw */
    mg_str_t             host;        /* Host without port */
    uint16_t             host_port;
    char                 request_id[33];

    /* request body */
    int64_t              body_left;   /* Content-Length bytes not yet sent */
    uint64_t             body_seen;   /* decoded bytes received (limit) */
    unsigned             has_body:1;
    unsigned             body_chunked:1;
    unsigned             body_done:1;       /* all body bytes consumed */
    unsigned             body_replayable:1; /* whole body still buffered */
    unsigned             continue_sent:1;
    unsigned             keepalive:1;       /* keep the client connection */
    unsigned             head_method:1;
    unsigned             finalized:1;
    unsigned             response_started:1;/* bytes reached the client */
    unsigned             response_done:1;
    unsigned             upstream_eof_body:1; /* close-delimited response */
    unsigned             resp_chunked:1;
    unsigned             resp_no_body:1;
    unsigned             client_blocked:1;  /* waiting for client writable */
    unsigned             upstream_blocked:1;/* waiting for upstream writable */
    unsigned             body_too_large:1;
    unsigned             tunnel:1;          /* after 101: raw both ways */

    /* routing */
    mg_router_match_t    match;
    const mg_route_t    *route;
    mg_service_rt_t     *svc;
    char                *upath;       /* path sent upstream */
    size_t               upath_len;

    /* upstream exchange */
    mg_req_upstream_e    ustate;
    mg_peer_t           *peer;
    mg_upconn_t         *u;
    int                  tries;       /* connection attempts made */
    int                  bidx;        /* balancer index of the try, or -1 */
    unsigned             bheld:1;     /* a pick awaits its release */
    unsigned             key_done:1;  /* hash key computed (once) */
    mg_balancer_key_t    key;
    mg_str_t             set_cookie;  /* hash_on cookie made up for the client */
    double               try_start;

    /* Lua plugins (core/lua) */
    unsigned             lua:1;       /* the route has plugins */
    unsigned             lua_exit:1;  /* kong.response.exit was called */
    unsigned             lua_log_done:1;
    unsigned             lua_forgotten:1; /* the runloop dropped its state */
    int                  lua_stage;   /* phase being run (MG_LUA_PHASE_*) */
    int                  lua_mask;    /* phases the route's plugins have */
    int                  lua_ref;     /* registry ref of the coroutine */
    void                *lua_co;      /* lua_State of the coroutine */
    ev_timer             lua_timer;   /* ngx.sleep */
    mg_hdr_mod_t        *up_mods;     /* upstream request header changes */
    mg_hdr_mod_t        *resp_mods;   /* response header changes */
    mg_str_t             up_method;   /* overrides, data NULL when unset */
    mg_str_t             up_query;
    mg_str_t             up_body;
    int                  exit_status;
    mg_str_t             exit_body;
    int                  status_override; /* kong.response.set_status */
    char                *lua_body;        /* request body read for plugins */
    size_t               lua_body_len;
    size_t               lua_body_cap;
    unsigned             lua_body_reading:1;
    unsigned             lua_body_done:1;
    unsigned             lua_bf:1;        /* body_filter plugins on route */
    unsigned             resp_buffered:1; /* response phase: whole body in
                                             bf_in before anything is sent */
    unsigned             resp_too_large:1;
    unsigned             bf_replaced:1;
    char                *bf_in;           /* decoded chunk (chunked upstream) */
    size_t               bf_in_len, bf_in_cap;
    char                *bf_out;          /* a plugin's replacement chunk */
    size_t               bf_out_len, bf_out_cap;
    char                 bf_size[24];     /* "<hex>\r\n" chunk size line */
    mg_peer_t           *peer_override;   /* kong.service.set_target */
    uint8_t             *tried;       /* balancer bitmap */
    ev_timer             retry_timer; /* backoff before the next try */
    void                *dns_handle;  /* a lookup under way */
    char                *uhead;       /* upstream request head */
    mg_str_t             uhost;       /* the Host header sent upstream */
    size_t               uhead_len;
    size_t               uhead_sent;
    size_t               body_inflight; /* validated chunked bytes unsent */
    char                *body_base;   /* first byte after the head */
    char                *body_ptr;    /* a fully buffered body (replayable) */
    size_t               body_len;    /* its length */
    size_t               bsent;       /* body bytes sent this try */
    mg_http_parser_t     rparser;     /* upstream response framing */
    mg_http_head_t       rhead;
    mg_http_header_t    *rhdrs;
    int                  status;      /* status sent to the client */
    int                  upstream_status;
    int64_t              resp_left;   /* content-length bytes still to come */

    /* output to the client */
    struct iovec         out[5];
    int                  nout;
    char                *ohead;       /* response head being written */
    uint64_t             bytes_sent;  /* to the client, head included */
    uint64_t             body_sent;

    /* timing, seconds from ev_now() (mg_time_now) */
    double               start;
    double               upstream_start;  /* connect/send start */
    double               upstream_first;  /* first response byte */
    double               upstream_end;
    const char          *error;       /* reason when the upstream failed */
};

/* Client side (mg_http_request.c). */
void mg_http_conn_init(mg_conn_t *c);
void mg_http_conn_read(mg_conn_t *c);
void mg_http_conn_write(mg_conn_t *c);
void mg_http_conn_timeout(mg_conn_t *c);
void mg_http_conn_handshake(mg_conn_t *c);

/* Answer with a gateway-generated JSON error (Kong's shape) and finish. */
void mg_http_send_error(mg_request_t *r, int status, const char *message);
/* The same with extra header lines ("Name: value\r\n"...) or NULL. */
void mg_http_send_error_hdr(mg_request_t *r, int status, const char *message,
                            const char *extra);

/* Answer with what a plugin gave kong.response.exit. */
void mg_http_send_lua_exit(mg_request_t *r);

/* Called when the response to r has been fully handed to the client. */
void mg_http_request_done(mg_request_t *r);

/* Abort r: close the client connection at once (client gone, or a
 * failure after part of the response went out). */
void mg_http_request_abort(mg_request_t *r, const char *why);

/* Write r->out to the client; MG_OK when all written, MG_AGAIN when the
 * rest waits for the client, MG_ERROR on failure (request aborted). */
int mg_http_write_out(mg_request_t *r);

/* Proxy side (mg_http_proxy.c). */
void mg_proxy_start(mg_request_t *r);
/* The client connection has more request body bytes, or became
 * writable again: continue whichever direction was waiting. */
void mg_proxy_client_input(mg_request_t *r);
void mg_proxy_client_writable(mg_request_t *r);
/* The response phase ended (mg_lua_response): run header_filter and
 * body_filter on the buffered response (r->bf_in) and send it with a
 * Content-Length, or answer 500 when a filter failed. */
void mg_proxy_send_buffered(mg_request_t *r);
/* Free upstream resources of r (on abort/finalize). */
void mg_proxy_cleanup(mg_request_t *r);

/* Access log (mg_http_log.c). */
void mg_http_log_request(mg_request_t *r);
void mg_http_log_flush(void);

/* All values of request header name (case-insensitive) into out[0..max);
 * returns how many there are.  ctx is the request.  (The router's and
 * the balancer's header accessor.) */
size_t mg_http_request_header(void *ctx, mg_str_t name, mg_str_t *out,
                              size_t max);

/* Kong's message for a status the gateway generates. */
const char *mg_http_error_message(int status);

#endif
