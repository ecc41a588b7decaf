/*
 * mg_lua.h -- the LuaJIT plugin runtime: one VM per config generation,
 * plugin phases run in a coroutine per request.
 *
 * Lifecycle: the master builds the VM for a generation (loads
 * moongate.runloop, which loads and validates every plugin and sorts the
 * per-route plugin lists once), then forks the workers, which inherit it
 * copy-on-write -- OpenResty's init_by_lua model; a bad plugin or config
 * refuses the start or the reload.  A route no plugin applies to never
 * enters Lua (rt->lua_routes[i] == 0): the C fast path is untouched.
 *
 * A phase runs as a coroutine; a PDK call that waits (ngx.sleep) arms a
 * watcher and yields, and the worker resumes the coroutine when it fires.
 * Rejected: a VM per worker built after fork -- every worker would repeat
 * the plugin loading, and config errors would surface after start.
 */
#ifndef MG_LUA_H
#define MG_LUA_H

#include "../mg_core.h"
#include "../conf/mg_conf.h"
#include "mg_lua_api.h"

/* Build the VM for rt when its config has plugins (rt->lua stays NULL
 * otherwise).  MG_ERROR with a message naming the plugin on failure. */
int mg_lua_runtime_init(mg_runtime_t *rt, const mg_conf_t *conf, char *err,
                        size_t errlen);
void mg_lua_runtime_free(mg_runtime_t *rt);

/* In a worker, once after fork: the plugins' init_worker and configure
 * hooks (the master only loads and validates).  Failures are logged. */
void mg_lua_worker_start(mg_runtime_t *rt);

/* Whether a global plugin of rt has a certificate handler, and the
 * certificate phase of TLS connection c (mg_lua.c says more). */
int mg_lua_wants_certificate(const mg_runtime_t *rt);
int mg_lua_certificate(mg_conn_t *c);

/*
 * In a worker swapping to rt (a new config version) from prev: configure
 * rt on prev's VM (plugins stay loaded; runloop.init builds the new
 * per-route lists, and in-flight requests keep the lists they started
 * with), or on a VM created now when prev had none and rt has plugins.
 * A worker never drops its VM once it has one: timers live there.
 */
int mg_lua_runtime_reconfigure(mg_runtime_t *rt, const mg_runtime_t *prev,
                               const mg_conf_t *conf, char *err,
                               size_t errlen);

/*
 * The admin process: replace rt's VM by one running the Admin API
 * (moongate.admin, see runloop.admin_init).  MG_ERROR with a message.
 */
int mg_lua_admin_init(mg_runtime_t *rt, const mg_conf_t *conf, char *err,
                      size_t errlen);

/*
 * Run moongate.cli[fn](conf_json, arg) in a VM of its own, closed after:
 * the import at start and reload (database = off), `moongate config
 * db_import/db_export`.  MG_OK with the function's message (its first
 * result when a string) in msg, or MG_ERROR with the error in msg.
 */
int mg_lua_cli(const mg_conf_t *conf, const char *fn, const char *arg,
               char *msg, size_t msglen);

/* Serve r, an Admin API request, in Lua (access phase, no route). */
void mg_lua_admin(mg_request_t *r);

/* Does route i enter Lua? */
int mg_lua_route_has_plugins(const mg_runtime_t *rt, size_t route_index);

/*
 * Run rewrite and access for r (after routing).  Continues the request
 * itself: proxies it (mg_proxy_start), answers a kong.response.exit, or
 * answers 500 on a plugin error.  May return while a coroutine waits.
 */
void mg_lua_access(mg_request_t *r);

/* Request body bytes arrived while a plugin waits for the whole body
 * (kong.request.get_body): take them, resume the plugin when complete. */
void mg_lua_body_input(mg_request_t *r);

/*
 * The response phase (a plugin of the route implements `response`): the
 * upstream's whole response is in r->bf_in and its head in r->rhead; run
 * the phase in a coroutine (it may wait), then mg_proxy_send_buffered(),
 * or answer the plugin's exit or a 500.  May return while it waits.
 */
void mg_lua_response(mg_request_t *r);

/* mg_http_body_pt collecting the response for the response phase into
 * r->bf_in; 1 (r->resp_too_large) past response_phase_max_body_size. */
int mg_lua_resp_collect(void *ctx, const char *p, size_t n);

/* header_filter on the response head about to be built (no yielding).
 * MG_OK or MG_ERROR (a plugin failed; the caller answers 500 if it can). */
int mg_lua_header_filter(mg_request_t *r);

/*
 * body_filter on one piece of the response body (decoded, whatever the
 * upstream's framing), eof set on the last call.  out and outn get what to
 * send: the piece itself or a plugin's replacement (valid until the next
 * call).  Synchronous: the phase may not wait.  MG_OK or MG_ERROR.
 */
int mg_lua_body_filter(mg_request_t *r, const char *p, size_t n, int eof,
                       const char **out, size_t *outn);

/* mg_http_body_pt collecting decoded chunked bytes into r->bf_in. */
int mg_lua_bf_collect(void *ctx, const char *p, size_t n);

/* The worker stops: pending ngx.timer callbacks run now, premature. */
void mg_lua_timers_shutdown(void);

/* log phase then the end of the request's Lua state; called once when the
 * request ends, whatever way it ends. */
void mg_lua_request_end(mg_request_t *r);

#endif /* MG_LUA_H */
