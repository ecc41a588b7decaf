-- moongate.ffi -- the one door from Lua into the core: the functions of
-- core/lua/mg_lua_api.h, declared with ffi.cdef in the same order and with
-- the same signatures (spec/01-unit/ffi_contract_spec.lua keeps the two
-- lists equal), plus the few helpers every caller needs to read the
-- (const char **p, size_t *n) out-parameters the API returns strings in.
--
-- Lifecycle: loaded once per VM.  Inside the moongate binary (LuaJIT with
-- the API symbols exported) `_M.C` is `ffi.C`.  Anywhere else -- busted on
-- plain Lua 5.1, or LuaJIT without the binary -- `_M.C` is the pure-Lua
-- fake in moongate.ffi_fake, which implements the same function names over
-- request tables, so the PDK and the runloop run unchanged in unit tests.
-- The out-parameters then are plain tables whose [0] slot the fake fills,
-- which is why callers go through `_M.str()` instead of ffi.string.
--
-- The scratch out-parameters (`_M.sp`, `_M.sn`, `_M.vp`, `_M.vn`) are
-- shared: FFI calls never yield, so a caller reads them right after its
-- call, before anything else can run.
--
-- Rejected: one lua_CFunction per API call through the classic C API --
-- LuaJIT compiles FFI calls into the trace, the C API is an interpreter
-- exit per call (DESIGN.md section 4).

local _M = {
    OK = 0,
    ERROR = -1,
    AGAIN = -2,
    DONE = -4,
    DECLINED = -5,
}

-- The declarations of core/lua/mg_lua_api.h, in order.  Keep them verbatim:
-- the contract spec compares signatures after collapsing white space.
_M.cdef = [[
const char *mg_lua_phase_name(int i);
int mg_lua_phase_bit(int i);

const char *mg_lua_last_error(void);

int mg_lua_req_method(void *r, const char **p, size_t *n);
int mg_lua_req_path(void *r, const char **p, size_t *n);
int mg_lua_req_query(void *r, const char **p, size_t *n);
int mg_lua_req_host(void *r, const char **p, size_t *n);
int mg_lua_req_port(void *r);
int mg_lua_req_scheme(void *r, const char **p, size_t *n);
int mg_lua_req_sni(void *r, const char **p, size_t *n);
int mg_lua_req_http_version(void *r);
int mg_lua_req_header_count(void *r);
int mg_lua_req_header_at(void *r, int i, const char **name, size_t *nl,
                         const char **value, size_t *vl);
int mg_lua_req_header_find(void *r, const char *lname, size_t n,
                           const char **value, size_t *vl);
int mg_lua_req_client_ip(void *r, char *buf, size_t len);
int mg_lua_req_client_port(void *r);
int mg_lua_req_id(void *r, const char **p, size_t *n);
double mg_lua_req_start_time(void *r);
int mg_lua_req_body(void *r, const char **p, size_t *n);

int mg_lua_req_route_id(void *r, const char **p, size_t *n);
int mg_lua_req_service_id(void *r, const char **p, size_t *n);
int mg_lua_req_capture_count(void *r);
int mg_lua_req_capture_at(void *r, int i, const char **name, size_t *nl,
                          const char **value, size_t *vl);

int mg_lua_upstream_set_header(void *r, const char *name, size_t nl,
                               const char *value, size_t vl, int add);
int mg_lua_upstream_set_path(void *r, const char *p, size_t n);
int mg_lua_upstream_set_query(void *r, const char *p, size_t n);
int mg_lua_upstream_set_method(void *r, const char *p, size_t n);
int mg_lua_upstream_set_body(void *r, const char *p, size_t n);
int mg_lua_upstream_set_target(void *r, const char *host, size_t hl,
                               int port);

int mg_lua_resp_status(void *r);
int mg_lua_resp_set_status(void *r, int status);
int mg_lua_resp_header_count(void *r);
int mg_lua_resp_header_at(void *r, int i, const char **name, size_t *nl,
                          const char **value, size_t *vl);
int mg_lua_resp_set_header(void *r, const char *name, size_t nl,
                           const char *value, size_t vl, int add);
int mg_lua_header_mod_at(void *r, int resp, int i, const char **name,
                         size_t *nl, const char **value, size_t *vl);
int mg_lua_resp_exit(void *r, int status, const char *body, size_t bl);
const char *mg_lua_resp_source(void *r);
int mg_lua_resp_set_chunk(void *r, const char *p, size_t n);

int mg_lua_sleep(void *r, double seconds);

int mg_lua_timer_at(double delay, int id, double every);
int mg_lua_timer_sleep(void *t, double seconds);
int mg_lua_timer_count(int running);

void mg_lua_log(int level, const char *msg, size_t n);
double mg_lua_now(void);
double mg_lua_update_time(void);
int mg_lua_worker_id(void);
int mg_lua_worker_count(void);
int mg_lua_worker_pid(void);

int mg_shdict_count(void);
int mg_shdict_name(int d, const char **p, size_t *n);
int mg_shdict_find(const char *name, size_t nl);
int mg_shdict_get(int d, const char *k, size_t kl, int get_stale, int *type,
                  double *num, const char **str, size_t *sl, int *flags,
                  int *stale);
int mg_shdict_store(int d, int op, const char *k, size_t kl, int type,
                    double num, const char *s, size_t sl, double exptime,
                    int flags, int *forcible, const char **err);
int mg_shdict_incr(int d, const char *k, size_t kl, double *value,
                   int has_init, double init, double init_ttl, int *forcible,
                   const char **err);
int mg_shdict_ttl(int d, const char *k, size_t kl, double *ttl);
int mg_shdict_expire(int d, const char *k, size_t kl, double exptime);
int mg_shdict_flush_all(int d);
int mg_shdict_flush_expired(int d, int max);
int mg_shdict_get_keys(int d, int max, const char **p, size_t *n);
double mg_shdict_capacity(int d);
double mg_shdict_free_space(int d);

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
int mg_lua_yaml_to_json(const char *text, size_t len, char **out,
                        size_t *outlen, char *err, size_t errlen);

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
int mg_lua_socket_reused(int id);
int mg_lua_socket_setkeepalive(int id, int timeout_ms, int size);
int mg_lua_socket_close(int id);
int mg_lua_socket_count(int pooled);
int mg_lua_health_target_status(const char *upstream, size_t ul,
                                const char *target, size_t tl, int *healthy);
/* --- digests (core/tls/mg_tls_digest.c, mbedTLS) ------------------- */
/* alg: 0 MD5 (16 bytes), 1 SHA-1 (20), 2 SHA-256 (32); out must hold
 * that many.  MG_OK, or MG_ERROR for an unknown alg. */
int mg_lua_digest(int alg, const char *p, size_t n, unsigned char *out);
int mg_lua_hmac(int alg, const char *key, size_t kl, const char *p, size_t n,
                unsigned char *out);
]]

-- MG_LOG_* of core/base/mg_log.h (mg_lua_log's level)
_M.LOG = {
    DEBUG = 0, INFO = 1, NOTICE = 2, WARN = 3,
    ERR = 4, CRIT = 5, ALERT = 6, EMERG = 7,
}

local has_ffi, ffi = pcall(require, "ffi")

local real = false
if has_ffi then
    local ok, err = pcall(ffi.cdef, _M.cdef)
    if not ok and not tostring(err):find("redefine", 1, true) then
        error(err, 0)
    end
    -- the symbols resolve only inside the moongate binary (-rdynamic)
    real = pcall(function() return ffi.C.mg_lua_now end)
end

if real then
    local ffi_string = ffi.string
    local ffi_new = ffi.new

    _M.fake = false
    _M.C = ffi.C
    _M.sp = ffi_new("const char *[1]")
    _M.sn = ffi_new("size_t[1]")
    _M.vp = ffi_new("const char *[1]")
    _M.vn = ffi_new("size_t[1]")

    -- The parentheses are deliberate, here and in the PDK's per-request
    -- getters: a function that ends in a tail call of a builtin or an FFI
    -- function cannot be compiled as a trace of its own when its caller
    -- runs interpreted (LuaJIT aborts: "JIT compilation disabled for
    -- function" / "leaving loop in root trace"), and plugin handlers run
    -- interpreted while lua_max_run_time is on.  spec/01-unit/
    -- jit_tailcall_spec.lua keeps new ones out.

    --- A Lua string from a (pointer, length) pair an API call filled.
    function _M.str(p, n)
        return (ffi_string(p, n))
    end

    --- A Lua string from a NUL-terminated `const char *` return, or nil.
    function _M.cstr(p)
        if p == nil then
            return nil
        end
        return (ffi_string(p))
    end

    --- A writable char buffer for calls such as mg_lua_req_client_ip.
    function _M.buf(len)
        return ffi_new("char[?]", len)
    end

    -- The core hands the request to the runloop as a number (its
    -- address); it becomes a `void *` cdata once per request and every
    -- PDK call passes that.  A lightuserdata would not do: the JIT cannot
    -- convert one to a `void *` argument ("NYI: unsupported C type
    -- conversion") and every PDK call would run interpreted.
    local cast = ffi.cast
    local VOIDP = ffi.typeof("void *")
    function _M.ptr(p)
        local v = cast(VOIDP, p)
        return v
    end

else
    local fake = require "moongate.ffi_fake"

    _M.fake = true
    _M.C = fake
    _M.sp, _M.sn, _M.vp, _M.vn = {}, {}, {}, {}

    function _M.str(p, n)
        if type(p) == "table" then   -- a buffer the fake wrote into
            p = p[0]
        end
        return p:sub(1, tonumber(n))
    end

    function _M.cstr(p)
        return p
    end

    function _M.buf()
        return {}
    end

    function _M.ptr(p)
        return p
    end
end

return _M
