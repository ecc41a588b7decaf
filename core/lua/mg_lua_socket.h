/*
 * mg_lua_socket.h -- the core-internal side of the cosockets
 * (ngx.socket.tcp, core/lua/mg_lua_socket.c): what mg_lua.c calls and
 * what it provides.  What Lua may call is in mg_lua_api.h.
 *
 * Kept apart from mg_lua.h so the socket code and the VM/phase runner
 * meet at two functions only: the runner tells the sockets that an
 * owner (a request or an ngx.timer run) ended, and the sockets ask the
 * runner to resume an owner's coroutine after a wait.
 */
#ifndef MG_LUA_SOCKET_H
#define MG_LUA_SOCKET_H

/*
 * The request r (mg_request_t *) or the timer run t (the handle given to
 * runloop.run_timer) ends: close every socket it still owns -- watchers
 * stopped, DNS lookup cancelled, fd closed -- even one its coroutine is
 * waiting on.  Exactly one of r, t is non-NULL.  Cheap when no socket is
 * open.  Pooled (keep-alive) sockets belong to no one and stay.
 */
void mg_lua_socket_owner_end(void *r, void *t);

/*
 * (mg_lua.c) Resume the coroutine of request r or timer t that yielded
 * after an mg_lua_socket_* call returned MG_AGAIN, with no values.  The
 * caller must not touch the socket afterwards: the coroutine may close it
 * and the request may end inside this call.
 */
void mg_lua_wake(void *r, void *t);

#endif /* MG_LUA_SOCKET_H */
