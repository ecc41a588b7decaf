/*
 * mg_lua_api.h -- the one definition of what Lua may call in the core.
 *
 * lua/moongate/ffi.lua declares exactly these functions with ffi.cdef
 * (a spec checks that the two lists agree); the binary exports them
 * (-rdynamic).  FFI calls are plain C calls: none of them blocks, none
 * yields.  An API that waits is split in two (lua-resty-core's habit):
 * C arms a watcher and returns MG_AGAIN, Lua yields the request's
 * coroutine, C resumes it when the event fires.
 *
 * `r` is the request (mg_request_t *) as an opaque pointer.  Strings
 * returned through (const char **p, size_t *n) point into request memory
 * and stay valid until the request ends; Lua copies them with ffi.string.
 * Every function returns MG_OK (0) or a negative code; MG_DECLINED when
 * the thing asked for does not exist (an absent header), MG_ERROR with a
 * reason in mg_lua_last_error() when the call is not allowed now (for
 * instance a header change after the response head was sent).
 */
#ifndef MG_LUA_API_H
#define MG_LUA_API_H

#include <stddef.h>
#include <stdint.h>

/* phases, declared once (name, bit); Lua reads them via mg_lua_phase_name */
#define MG_LUA_PHASES(X)                                                     \
    X(init_worker,   0x0001)                                                 \
    X(configure,     0x0002)                                                 \
    X(certificate,   0x0004)                                                 \
    X(rewrite,       0x0008)                                                 \
    X(access,        0x0010)                                                 \
    X(balancer,      0x0020)                                                 \
    X(response,      0x0040)                                                 \
    X(header_filter, 0x0080)                                                 \
    X(body_filter,   0x0100)                                                 \
    X(log,           0x0200)

typedef enum {
#define MG_LUA_PHASE_ENUM(name, bit) MG_LUA_PHASE_##name = bit,
    MG_LUA_PHASES(MG_LUA_PHASE_ENUM)
#undef MG_LUA_PHASE_ENUM
} mg_lua_phase_e;

/* phase table for Lua: index 0.. until NULL name */
const char *mg_lua_phase_name(int i);
int mg_lua_phase_bit(int i);

const char *mg_lua_last_error(void);

/* --- the client request (kong.request) ---------------------------- */
int mg_lua_req_method(void *r, const char **p, size_t *n);
int mg_lua_req_path(void *r, const char **p, size_t *n);      /* raw path */
int mg_lua_req_query(void *r, const char **p, size_t *n);     /* raw, no '?' */
int mg_lua_req_host(void *r, const char **p, size_t *n);      /* no port */
int mg_lua_req_port(void *r);                                 /* server port */
int mg_lua_req_scheme(void *r, const char **p, size_t *n);    /* http/https */
/* the SNI of a TLS connection, lower-cased; MG_DECLINED when none */
int mg_lua_req_sni(void *r, const char **p, size_t *n);
int mg_lua_req_http_version(void *r);                         /* 10, 11 */
int mg_lua_req_header_count(void *r);
int mg_lua_req_header_at(void *r, int i, const char **name, size_t *nl,
                         const char **value, size_t *vl);
/* the first header whose lower-cased name is lname (already lower-case) */
int mg_lua_req_header_find(void *r, const char *lname, size_t n,
                           const char **value, size_t *vl);
int mg_lua_req_client_ip(void *r, char *buf, size_t len);     /* length */
int mg_lua_req_client_port(void *r);
int mg_lua_req_id(void *r, const char **p, size_t *n);        /* 32 hex */
double mg_lua_req_start_time(void *r);                        /* seconds */
/* The request body.  MG_OK with the whole body when it is buffered;
 * MG_AGAIN when C starts reading it (the coroutine must yield; it is
 * resumed when the body is in); MG_ERROR when it is larger than
 * client_body_buffer_size allows to buffer (reason set). */
int mg_lua_req_body(void *r, const char **p, size_t *n);

/* route match data for the PDK / router captures */
int mg_lua_req_route_id(void *r, const char **p, size_t *n);
int mg_lua_req_service_id(void *r, const char **p, size_t *n);
int mg_lua_req_capture_count(void *r);
int mg_lua_req_capture_at(void *r, int i, const char **name, size_t *nl,
                          const char **value, size_t *vl);

/* --- the upstream request (kong.service.request) ------------------- */
/* value NULL: remove every header of that name; add=1 appends another */
int mg_lua_upstream_set_header(void *r, const char *name, size_t nl,
                               const char *value, size_t vl, int add);
int mg_lua_upstream_set_path(void *r, const char *p, size_t n);
int mg_lua_upstream_set_query(void *r, const char *p, size_t n);
int mg_lua_upstream_set_method(void *r, const char *p, size_t n);
int mg_lua_upstream_set_body(void *r, const char *p, size_t n);
/* kong.service.set_target(host, port): send this request there */
int mg_lua_upstream_set_target(void *r, const char *host, size_t hl,
                               int port);

/* --- the response (kong.response) ---------------------------------- */
/* status of the response being sent (upstream's or exit's), 0 before */
int mg_lua_resp_status(void *r);
int mg_lua_resp_set_status(void *r, int status);      /* header_filter */
/* response headers as the upstream sent them: valid during header_filter
 * only (they live in the upstream read buffer, which the body reuses);
 * later phases use the copy the runloop takes there */
int mg_lua_resp_header_count(void *r);
int mg_lua_resp_header_at(void *r, int i, const char **name, size_t *nl,
                          const char **value, size_t *vl);
int mg_lua_resp_set_header(void *r, const char *name, size_t nl,
                           const char *value, size_t vl, int add);
/* the i-th recorded header change (0-based) of the upstream request
 * (resp 0) or of the response (resp 1), in order, a set having dropped
 * the earlier changes of its name: -1 past the end, else its add flag;
 * *value NULL for a clear */
int mg_lua_header_mod_at(void *r, int resp, int i, const char **name,
                         size_t *nl, const char **value, size_t *vl);
/* kong.response.exit: answer now with status, body and the headers set
 * with mg_lua_resp_set_header; the phase ends after the yield. */
int mg_lua_resp_exit(void *r, int status, const char *body, size_t bl);
/* "upstream", "exit" or "error" (kong.response.get_source) */
const char *mg_lua_resp_source(void *r);
/* body_filter: replace the current chunk (ngx.arg[1]); eof is ngx.arg[2] */
int mg_lua_resp_set_chunk(void *r, const char *p, size_t n);

/* --- waits --------------------------------------------------------- */
/* arm a timer; returns MG_AGAIN: the caller yields, C resumes it */
int mg_lua_sleep(void *r, double seconds);

/* --- timers (ngx.timer) -------------------------------------------- */
/* Run runloop.run_timer(id, premature, t) after delay seconds (again every
 * `every` seconds when > 0) in a coroutine of its own.  MG_ERROR outside a
 * worker or when the worker is stopping (reason set). */
int mg_lua_timer_at(double delay, int id, double every);
/* ngx.sleep inside a timer: t is the timer handle run_timer was given;
 * returns MG_AGAIN, the caller yields. */
int mg_lua_timer_sleep(void *t, double seconds);
int mg_lua_timer_count(int running);   /* running (1) or pending (0) */

/* --- misc ---------------------------------------------------------- */
void mg_lua_log(int level, const char *msg, size_t n);  /* MG_LOG_* */
double mg_lua_now(void);               /* cached loop time, seconds */
double mg_lua_update_time(void);       /* refresh and return it */
int mg_lua_worker_id(void);
int mg_lua_worker_count(void);
int mg_lua_worker_pid(void);

/* --- shared dictionaries (ngx.shared.DICT) -------------------------- */
/*
 * The `lua_shared_dict` dictionaries, one set shared by every worker of a
 * generation (core/store/mg_shdict.c).  `d` is an index from
 * mg_shdict_find (0 .. mg_shdict_count() - 1).  Keys are 1..65535 bytes;
 * times are seconds (kept to the millisecond), exptime 0 = never expires.
 * Value types are Lua's tags, as ngx_lua's: 0 nil, 1 boolean (num 0 or 1),
 * 3 number, 4 string.  Failures return MG_DECLINED ("not found", "exists")
 * or MG_ERROR ("no memory", "not a number", ...) with a static reason in
 * *err.  Strings handed back (values, names, keys) live in a per-process
 * buffer valid until the next mg_shdict_* call.  *forcible is set when
 * live items were evicted (least recently used first) to make room.
 */
int mg_shdict_count(void);
int mg_shdict_name(int d, const char **p, size_t *n);
int mg_shdict_find(const char *name, size_t nl);      /* d, MG_DECLINED */
/* MG_OK with the value; MG_DECLINED when absent, or expired unless
 * get_stale (then MG_OK and *stale = 1) */
int mg_shdict_get(int d, const char *k, size_t kl, int get_stale, int *type,
                  double *num, const char **str, size_t *sl, int *flags,
                  int *stale);
/* op: 0 set, 1 add, 2 replace, | 4 safe (never evict); type 0 deletes */
int mg_shdict_store(int d, int op, const char *k, size_t kl, int type,
                    double num, const char *s, size_t sl, double exptime,
                    int flags, int *forcible, const char **err);
/* *value becomes the stored number + *value, or init + *value stored with
 * init_ttl when the key is absent or expired and has_init is set */
int mg_shdict_incr(int d, const char *k, size_t kl, double *value,
                   int has_init, double init, double init_ttl, int *forcible,
                   const char **err);
/* seconds left (0: never expires; negative: expired), MG_DECLINED */
int mg_shdict_ttl(int d, const char *k, size_t kl, double *ttl);
int mg_shdict_expire(int d, const char *k, size_t kl, double exptime);
int mg_shdict_flush_all(int d);                       /* expire them all */
int mg_shdict_flush_expired(int d, int max);          /* count removed */
/* live keys, most recently used first, at most max (0: all): returns the
 * count; *p holds them as "<length>:<key>" records */
int mg_shdict_get_keys(int d, int max, const char **p, size_t *n);
double mg_shdict_capacity(int d);                     /* bytes */
double mg_shdict_free_space(int d);                   /* bytes in free pages */

/* --- entity store (moongate.db) ------------------------------------ */
/*
 * core/store/mg_store.h for Lua (core/lua/mg_lua_store.c).  `s` is an
 * opaque mg_store_t *.  Entities, filters and results travel as one
 * string of items "<decimal length>:<bytes>" (lua/moongate/db/store.lua
 * documents the layout).  Every int function returns MG_OK or the
 * store's code (MG_STORE_E_*, or MG_ERROR when out of memory) and then
 * fills err (give 1024 bytes) with the items: code index type id field
 * ref_type ref_id msg.  Results come in a malloc'd *out the caller
 * releases with mg_lua_free.  op of mg_lua_store_write: 0 insert,
 * 1 update, 2 upsert (*created says which).  Cursors are at most 95
 * bytes; size 0 lists everything.
 */
void *mg_lua_store_open(const char *dir, size_t map_size, char *err,
                        size_t errlen);
void mg_lua_store_close(void *s);
void mg_lua_free(void *p);
int mg_lua_store_write(void *s, int op, const char *ent, size_t len,
                       int *created, char *err, size_t errlen);
int mg_lua_store_delete(void *s, const char *type, const char *id,
                        size_t idlen, size_t *ndeleted, char *err,
                        size_t errlen);
int mg_lua_store_get(void *s, const char *type, const char *key, size_t kl,
                     const char *by_field, char **out, size_t *outlen,
                     char *err, size_t errlen);
int mg_lua_store_list(void *s, const char *type, const char *filter,
                      size_t fl, size_t size, const char *offset, size_t ol,
                      char **out, size_t *outlen, char *err, size_t errlen);
int mg_lua_store_export(void *s, char **out, size_t *outlen, char *err,
                        size_t errlen);
int mg_lua_store_replace_all(void *s, const char *ents, size_t len,
                             char *err, size_t errlen);
double mg_lua_store_version(void *s);
int mg_lua_store_check(void *s, size_t *nentities, char *err,
                       size_t errlen);
/* YAML or JSON text -> compact JSON (core/conf/mg_yaml_json.c), scalars
 * typed as the declarative loader types them; MG_ERROR with
 * "line L, column C: problem" in err */
int mg_lua_yaml_to_json(const char *text, size_t len, char **out,
                        size_t *outlen, char *err, size_t errlen);

/* --- cosockets (ngx.socket.tcp; core/lua/mg_lua_socket.c) ---------- */
/*
 * A TCP connection owned by a request r or a timer run t (exactly one
 * non-NULL), named by an int id (slot and generation: after close,
 * setkeepalive or the owner's end the id is stale and every call fails
 * with "closed"; freed memory is never reached).  key names the
 * keep-alive pool ("host:port[:name]"); connect takes an idle pooled
 * connection of that key first (MG_OK at once).  Calls that wait return
 * MG_AGAIN: the caller yields, C resumes it when the event fired or
 * timeout_ms (0: none) passed, then mg_lua_socket_result(id) tells how
 * the wait ended.  MG_ERROR: the reason ("timeout", "closed",
 * "connection refused", "no resolver defined to resolve \"x\"", ...) is
 * in mg_lua_socket_error(), a static string until the next socket call.
 * recv: MG_OK with 1..max bytes in (*p, *n), valid until the next call on
 * id; MG_DONE at end of stream; MG_AGAIN: wait, result, then recv again.
 * A request or timer that ends closes what it left open, even mid-wait.
 */
int mg_lua_socket_connect(void *r, void *t, const char *host, size_t hl,
                          int port, const char *key, size_t kl,
                          int timeout_ms, int *id);
int mg_lua_socket_result(int id);
const char *mg_lua_socket_error(void);
int mg_lua_socket_send(int id, const char *p, size_t n, int timeout_ms);
int mg_lua_socket_recv(int id, size_t max, int timeout_ms, const char **p,
                       size_t *n);
int mg_lua_socket_sslhandshake(int id, const char *name, size_t nl,
                               int verify, int timeout_ms);
int mg_lua_socket_reused(int id);                     /* MG_DECLINED: stale */
/* back to the pool of its key (size: most idle kept, LRU evicted) */
int mg_lua_socket_setkeepalive(int id, int timeout_ms, int size);
int mg_lua_socket_close(int id);
int mg_lua_socket_count(int pooled);  /* open sockets in use (0) or idle (1) */

/* --- upstream health (core/upstream/mg_health_lua.c) --------------- */
/* The Admin API's GET /upstreams/{u}/health: MG_OK with *healthy 1 or 0
 * when target ("host:port", or as written in the target entity) of the
 * upstream (id or name) has health state, as this process's newest
 * runtime sees it (the state itself is shared by every process and
 * survives reloads); MG_DECLINED when the upstream or target is unknown
 * there or health checks are off for the upstream (HEALTHCHECKS_OFF). */
int mg_lua_health_target_status(const char *upstream, size_t ul,
                                const char *target, size_t tl, int *healthy);

/* --- digests (core/tls/mg_tls_digest.c, mbedTLS) ------------------- */
/* alg: 0 MD5 (16 bytes), 1 SHA-1 (20), 2 SHA-256 (32); out must hold
 * that many.  MG_OK, or MG_ERROR for an unknown alg. */
int mg_lua_digest(int alg, const char *p, size_t n, unsigned char *out);
int mg_lua_hmac(int alg, const char *key, size_t kl, const char *p, size_t n,
                unsigned char *out);

#endif /* MG_LUA_API_H */
