-- moongate.ngx -- the subset of OpenResty's `ngx` API that Kong plugins
-- lean on, over the core's FFI API.  Installed as the global `ngx` by the
-- runloop when none exists (inside OpenResty the real one stays).
--
-- Request-bound fields resolve against the running request
-- (moongate.context.current): ngx.ctx (the request's table; a per-VM
-- table outside requests, as OpenResty's init phase has), ngx.var,
-- ngx.status, ngx.header, ngx.arg (body_filter).  They are served by the
-- metatable of the ngx table, so `ngx.ctx` and `ngx.status` are never
-- stored fields.  Header and body changes share the PDK's code paths
-- (moongate.pdk.*), so ngx.req.set_header and
-- kong.service.request.set_header see each other's changes.
--
-- ngx.say / ngx.print buffer output; ngx.exit(status >= 200) answers with
-- it (kong.response.exit semantics, no JSON), and a rewrite/access handler
-- that printed without calling ngx.exit answers with it when it returns.
-- ngx.exit(ngx.OK) ends the running plugin handler only (in OpenResty it
-- would end Kong's whole phase handler, skipping the other plugins).
--
-- ngx.re is moongate.re (PCRE2 through the FFI); where it cannot load (no
-- FFI, no libpcre2-8) it joins what is not in this build (their tables
-- raise a clear error when used): ngx.thread, ngx.location.  ngx.socket.tcp
-- is moongate.socket (cosockets).
-- ngx.shared is moongate.shdict (shared memory); ngx.timer runs callbacks
-- in coroutines of their own (core/lua/mg_lua.c, runloop.run_timer).  The
-- digests are pure Lua for now (moongate.digest); they move to mbedTLS
-- through the FFI API later.

local api = require "moongate.ffi"
local context = require "moongate.context"
local phases = require "moongate.phases"
local codec = require "moongate.codec"
local digest = require "moongate.digest"
local P = require "moongate.pdk.private"
local response = require "moongate.pdk.response"
local service = require "moongate.pdk.service"
local node = require "moongate.pdk.node"

local C = api.C
local OK, AGAIN = api.OK, api.AGAIN
local LOG = api.LOG
local sp, sn = api.sp, api.sn
local str = api.str
local type = type
local error = error
local select = select
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local rawset = rawset
local pairs = pairs
local ipairs = ipairs
local setmetatable = setmetatable
local concat = table.concat
local lower = string.lower
local sub = string.sub
local match = string.match
local gsub = string.gsub
local format = string.format
local floor = math.floor
local getinfo = debug.getinfo

local ngx = {}
local _M = { ngx = ngx }

-- constants -----------------------------------------------------------------

ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5

ngx.STDERR, ngx.EMERG, ngx.ALERT, ngx.CRIT = 0, 1, 2, 3
ngx.ERR, ngx.WARN, ngx.NOTICE, ngx.INFO, ngx.DEBUG = 4, 5, 6, 7, 8

local METHODS = {
    HTTP_GET = 2, HTTP_HEAD = 4, HTTP_POST = 8, HTTP_PUT = 16,
    HTTP_DELETE = 32, HTTP_MKCOL = 64, HTTP_COPY = 128, HTTP_MOVE = 256,
    HTTP_OPTIONS = 512, HTTP_PROPFIND = 1024, HTTP_PROPPATCH = 2048,
    HTTP_LOCK = 4096, HTTP_UNLOCK = 8192, HTTP_PATCH = 16384,
    HTTP_TRACE = 32768,
}
local METHOD_NAMES = {}
for k, v in pairs(METHODS) do
    ngx[k] = v
    METHOD_NAMES[v] = sub(k, 6)
end

local STATUS = {
    HTTP_CONTINUE = 100, HTTP_SWITCHING_PROTOCOLS = 101, HTTP_OK = 200,
    HTTP_CREATED = 201, HTTP_ACCEPTED = 202, HTTP_NO_CONTENT = 204,
    HTTP_PARTIAL_CONTENT = 206, HTTP_SPECIAL_RESPONSE = 300,
    HTTP_MOVED_PERMANENTLY = 301, HTTP_MOVED_TEMPORARILY = 302,
    HTTP_SEE_OTHER = 303, HTTP_NOT_MODIFIED = 304,
    HTTP_TEMPORARY_REDIRECT = 307, HTTP_PERMANENT_REDIRECT = 308,
    HTTP_BAD_REQUEST = 400, HTTP_UNAUTHORIZED = 401,
    HTTP_PAYMENT_REQUIRED = 402, HTTP_FORBIDDEN = 403,
    HTTP_NOT_FOUND = 404, HTTP_NOT_ALLOWED = 405,
    HTTP_NOT_ACCEPTABLE = 406, HTTP_REQUEST_TIMEOUT = 408,
    HTTP_CONFLICT = 409, HTTP_GONE = 410, HTTP_UPGRADE_REQUIRED = 426,
    HTTP_TOO_MANY_REQUESTS = 429, HTTP_CLOSE = 444, HTTP_ILLEGAL = 451,
    HTTP_INTERNAL_SERVER_ERROR = 500, HTTP_METHOD_NOT_IMPLEMENTED = 501,
    HTTP_BAD_GATEWAY = 502, HTTP_SERVICE_UNAVAILABLE = 503,
    HTTP_GATEWAY_TIMEOUT = 504, HTTP_VERSION_NOT_SUPPORTED = 505,
    HTTP_INSUFFICIENT_STORAGE = 507,
}
for k, v in pairs(STATUS) do
    ngx[k] = v
end

ngx.null = P.null

-- logging -------------------------------------------------------------------

-- ngx level (0 stderr .. 8 debug) -> MG_LOG_*
local NGX_TO_MG = {
    [0] = LOG.ERR, [1] = LOG.EMERG, [2] = LOG.ALERT, [3] = LOG.CRIT,
    [4] = LOG.ERR, [5] = LOG.WARN, [6] = LOG.NOTICE, [7] = LOG.INFO,
    [8] = LOG.DEBUG,
}

local function tostr(v)
    if v == nil then
        return "nil"
    elseif v == P.null then
        return "null"
    end
    return (tostring(v))
end

--- ngx.log(level, ...): the arguments concatenated, OpenResty's
-- "[lua] file.lua:12: fn(): " prefix.
function ngx.log(level, ...)
    local mg = NGX_TO_MG[level]
    if not mg then
        error("bad log level", 2)
    end
    if mg < require("moongate.pdk.log").get_threshold() then
        return
    end
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do
        parts[i] = tostr((select(i, ...)))
    end
    local info = getinfo(2, "Sln")
    local where = ""
    if info then
        local src = match(info.short_src or "", "([^/]+)$") or "?"
        where = src .. ":" .. tostring(info.currentline or 0) .. ": " ..
                (info.name and (info.name .. "(): ") or "")
    end
    local msg = "[lua] " .. where .. concat(parts)
    C.mg_lua_log(mg, msg, #msg)
end

-- time ----------------------------------------------------------------------

-- The core's cached loop time; before the loop runs (the master loads the
-- runtime before forking) it is 0, and the wall clock stands in.
local function now()
    local t = C.mg_lua_now()
    if t == 0 then
        return os.time()
    end
    return t
end

function ngx.now()
    return now()
end

function ngx.time()
    return (floor(now()))
end

function ngx.update_time()
    -- only a worker has a loop to refresh the time of
    if C.mg_lua_worker_id() >= 0 then
        C.mg_lua_update_time()
    end
end

local WDAY = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MON = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
              "Sep", "Oct", "Nov", "Dec" }
local MON_NUM = {}
for i, m in ipairs(MON) do
    MON_NUM[m] = i
end

function ngx.today()
    return os.date("%Y-%m-%d", ngx.time())
end

function ngx.localtime()
    return os.date("%Y-%m-%d %H:%M:%S", ngx.time())
end

function ngx.utctime()
    return os.date("!%Y-%m-%d %H:%M:%S", ngx.time())
end

function ngx.http_time(sec)
    local t = os.date("!*t", floor(sec))
    return (format("%s, %02d %s %04d %02d:%02d:%02d GMT", WDAY[t.wday],
                   t.day, MON[t.month], t.year, t.hour, t.min, t.sec))
end

function ngx.cookie_time(sec)
    local t = os.date("!*t", floor(sec))
    return (format("%s, %02d-%s-%04d %02d:%02d:%02d GMT", WDAY[t.wday],
                   t.day, MON[t.month], t.year, t.hour, t.min, t.sec))
end

-- days since the epoch of a civil date (UTC, no time zone involved)
local function days_from_civil(y, m, d)
    y = m <= 2 and y - 1 or y
    local era = floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

--- Seconds since the epoch of an HTTP date ("Thu, 18 Nov 2010 11:27:35
-- GMT", also the RFC 850 and asctime forms), or nil.
function ngx.parse_http_time(s)
    if type(s) ~= "string" then
        return nil
    end
    local d, mon, y, h, mi, se = match(s,
        "^%a+, (%d%d?)[ %-](%a%a%a)[ %-](%d+) (%d%d):(%d%d):(%d%d) GMT$")
    if not d then
        mon, d, h, mi, se, y = match(s,
            "^%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
    end
    if not d or not MON_NUM[mon] then
        return nil
    end
    y = tonumber(y)
    if y < 100 then
        y = y + (y < 70 and 2000 or 1900)
    end
    return days_from_civil(y, MON_NUM[mon], tonumber(d)) * 86400 +
           tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(se)
end

--- ngx.sleep(seconds): the request's coroutine waits; the worker goes on.
function ngx.sleep(seconds)
    if type(seconds) ~= "number" or seconds < 0 then
        error("bad argument #1 to 'sleep' (a non-negative number " ..
              "expected)", 2)
    end
    local ctx = context.current
    if not ctx or not (ctx.r or ctx.timer) then
        error("API disabled in the context of " .. phases.current(), 2)
    end
    local rc
    if ctx.timer then
        rc = C.mg_lua_timer_sleep(ctx.timer, seconds)
    else
        rc = C.mg_lua_sleep(ctx.r, seconds)
    end
    if rc == AGAIN then
        context.wait("ngx.sleep")
        return 1
    elseif rc == OK then
        return 1
    end
    error(P.last_error(), 2)
end

-- codecs --------------------------------------------------------------------

ngx.encode_base64 = codec.encode_base64
ngx.decode_base64 = codec.decode_base64
ngx.escape_uri = codec.escape_uri
ngx.unescape_uri = codec.unescape_uri
ngx.encode_args = codec.encode_args
function ngx.decode_args(s, max_args)
    return codec.decode_args(s, max_args)
end

function ngx.md5(s)
    return digest.md5(tostring(s or ""))
end

function ngx.md5_bin(s)
    return digest.md5_bin(tostring(s or ""))
end

function ngx.sha1_bin(s)
    return digest.sha1_bin(tostring(s or ""))
end

function ngx.hmac_sha1(key, s)
    return digest.hmac_sha1(tostring(key or ""), tostring(s or ""))
end

function ngx.quote_sql_str(s)
    s = gsub(tostring(s), "[%z\b\n\r\t\26\\'\"]", {
        ["\0"] = "\\0", ["\b"] = "\\b", ["\n"] = "\\n", ["\r"] = "\\r",
        ["\t"] = "\\t", ["\26"] = "\\Z", ["\\"] = "\\\\", ["'"] = "\\'",
        ['"'] = '\\"',
    })
    return "'" .. s .. "'"
end

-- the running request ----------------------------------------------------

local function req_ctx()
    local ctx = context.current
    if ctx and ctx.r then
        return ctx
    end
    return nil
end

local function get_str(ctx, fn)
    if fn(ctx.r, sp, sn) ~= OK then
        return nil
    end
    return str(sp[0], sn[0])
end

local function client_ip(ctx)
    return require("moongate.pdk.request").client_ip(ctx)
end

local function req_body(ctx, what)
    if ctx.req_body ~= nil then
        return ctx.req_body
    end
    local rc = C.mg_lua_req_body(ctx.r, sp, sn)
    if rc == AGAIN then
        ctx = context.wait(what)
        rc = C.mg_lua_req_body(ctx.r, sp, sn)
    end
    if rc ~= OK then
        return nil, P.last_error()
    end
    return str(sp[0], sn[0])
end

-- ngx.var ---------------------------------------------------------------------

local function header_var(ctx, lname)
    local vals = P.values(P.req_headers(ctx), P.mods(ctx, "req_mods"),
                          lname)
    if #vals == 0 then
        return nil
    end
    if #vals == 1 then
        return vals[1]
    end
    return (concat(vals, lname == "cookie" and "; " or ", "))
end

local function upstream_uri(ctx)
    local path = ctx.upstream_path or get_str(ctx, C.mg_lua_req_path) or "/"
    local q = get_str(ctx, C.mg_lua_req_query) or ""
    if q ~= "" then
        return path .. "?" .. q
    end
    return path
end

local VARS = {
    request_uri = function(ctx)
        local p = get_str(ctx, C.mg_lua_req_path) or "/"
        local q = P.orig_query(ctx)
        return q ~= "" and (p .. "?" .. q) or p
    end,
    uri = function(ctx)
        return ctx.upstream_path or codec.unescape_path(
            codec.normalize_path(get_str(ctx, C.mg_lua_req_path) or "/"))
    end,
    document_uri = function(ctx)
        return codec.unescape_path(
            codec.normalize_path(get_str(ctx, C.mg_lua_req_path) or "/"))
    end,
    args = function(ctx)
        local q = get_str(ctx, C.mg_lua_req_query) or ""
        return q ~= "" and q or nil
    end,
    is_args = function(ctx)
        return (get_str(ctx, C.mg_lua_req_query) or "") ~= "" and "?" or ""
    end,
    host = function(ctx)
        return (lower(get_str(ctx, C.mg_lua_req_host) or ""))
    end,
    hostname = function() return node.get_hostname() end,
    server_name = function(ctx)
        return (lower(get_str(ctx, C.mg_lua_req_host) or ""))
    end,
    remote_addr = client_ip,
    realip_remote_addr = client_ip,
    binary_remote_addr = function(ctx)
        local ip = require("moongate.pdk.ip").parse(client_ip(ctx))
        if not ip then
            return nil
        end
        local b = {}
        for i = 1, #ip do b[i] = string.char(ip[i]) end
        return (concat(b))
    end,
    remote_port = function(ctx)
        return (tostring(C.mg_lua_req_client_port(ctx.r)))
    end,
    realip_remote_port = function(ctx)
        return (tostring(C.mg_lua_req_client_port(ctx.r)))
    end,
    scheme = function(ctx)
        return get_str(ctx, C.mg_lua_req_scheme) or "http"
    end,
    https = function(ctx)
        return get_str(ctx, C.mg_lua_req_scheme) == "https" and "on" or ""
    end,
    request_method = function(ctx)
        return get_str(ctx, C.mg_lua_req_method)
    end,
    server_port = function(ctx)
        return (tostring(C.mg_lua_req_port(ctx.r)))
    end,
    server_protocol = function(ctx)
        local v = C.mg_lua_req_http_version(ctx.r)
        return (format("HTTP/%d.%d", floor(v / 10), v % 10))
    end,
    request_id = function(ctx)
        return get_str(ctx, C.mg_lua_req_id)
    end,
    content_type = function(ctx) return header_var(ctx, "content-type") end,
    content_length = function(ctx)
        return header_var(ctx, "content-length")
    end,
    request_time = function(ctx)
        return (format("%.3f", C.mg_lua_now() -
                       C.mg_lua_req_start_time(ctx.r)))
    end,
    msec = function() return format("%.3f", C.mg_lua_now()) end,
    status = function(ctx)
        return (tostring(C.mg_lua_resp_status(ctx.r)))
    end,
    request_body = function(ctx)
        return ctx.req_body
    end,
    upstream_uri = upstream_uri,
    upstream_host = function(ctx)
        return ctx.upstream_host or header_var(ctx, "host")
    end,
    upstream_scheme = function(ctx)
        return ctx.upstream_scheme or
               (ctx.service and ctx.service.protocol) or "http"
    end,
}

local function gmatch_pairs(q)
    return (q .. "&"):gmatch("([^&]*)&")
end

local function var_get(_, name)
    local ctx = req_ctx()
    if not ctx or type(name) ~= "string" then
        return nil
    end
    local custom = ctx.vars and ctx.vars[name]
    if custom ~= nil then
        return custom
    end
    local f = VARS[name]
    if f then
        return f(ctx)
    end
    if sub(name, 1, 5) == "http_" then
        return header_var(ctx, gsub(sub(name, 6), "_", "-"))
    elseif sub(name, 1, 4) == "arg_" then
        local q = get_str(ctx, C.mg_lua_req_query) or ""
        local want = sub(name, 5)
        for pair in gmatch_pairs(q) do
            local k, v = match(pair, "^([^=]*)=?(.*)$")
            if lower(k) == want then
                return v
            end
        end
        return nil
    elseif sub(name, 1, 7) == "cookie_" then
        local cookies = header_var(ctx, "cookie")
        if not cookies then
            return nil
        end
        local want = sub(name, 8)
        for part in (cookies .. ";"):gmatch("([^;]*);") do
            local k, v = match(part, "^%s*([^=]-)%s*=%s*(.-)%s*$")
            if k == want then
                return v
            end
        end
        return nil
    end
    return nil
end

local function var_set(_, name, value)
    local ctx = req_ctx()
    if not ctx then
        error("API disabled in the context of " .. phases.current(), 2)
    end
    if value ~= nil and type(value) ~= "string" then
        value = tostring(value)
    end
    if name == "upstream_uri" then
        local path, q = match(value or "/", "^([^?]*)%??(.*)$")
        if path == "" then
            path = "/"
        end
        if C.mg_lua_upstream_set_path(ctx.r, path, #path) ~= OK then
            error(P.last_error(), 2)
        end
        ctx.upstream_path = path
        P.save_query(ctx)
        if C.mg_lua_upstream_set_query(ctx.r, q, #q) ~= OK then
            error(P.last_error(), 2)
        end
        return
    elseif name == "upstream_host" then
        if value then
            local ok, err = service.set_header_value(ctx, "Host", value,
                                                     false)
            if not ok then
                error(err, 2)
            end
        end
        ctx.upstream_host = value
        return
    elseif name == "upstream_scheme" then
        ctx.upstream_scheme = value
        return
    end
    if VARS[name] then
        error('variable "' .. name .. '" not changeable', 2)
    end
    local vars = ctx.vars
    if not vars then
        vars = {}
        ctx.vars = vars
    end
    vars[name] = value
end

ngx.var = setmetatable({}, { __index = var_get, __newindex = var_set })

-- ngx.header ------------------------------------------------------------------

local function header_get(_, name)
    local ctx = req_ctx()
    if not ctx or type(name) ~= "string" then
        return nil
    end
    local vals = P.values(P.resp_headers(ctx), P.mods(ctx, "resp_mods"),
                          P.norm_name(name))
    if #vals == 0 then
        return nil
    elseif #vals == 1 then
        return vals[1]
    end
    return vals
end

local function header_set(_, name, value)
    local ctx = req_ctx()
    if not ctx then
        error("API disabled in the context of " .. phases.current(), 2)
    end
    if type(name) ~= "string" then
        error("header name must be a string", 2)
    end
    name = gsub(name, "_", "-")
    if value ~= nil and type(value) ~= "table" then
        value = tostring(value)
    end
    local ok, err = response.set_value(ctx, name, value, false)
    if not ok then
        error(err, 2)
    end
end

ngx.header = setmetatable({}, { __index = header_get,
                                __newindex = header_set })

-- ngx.arg (body_filter) ---------------------------------------------------

ngx.arg = setmetatable({}, {
    __index = function(_, i)
        local ctx = req_ctx()
        if not ctx then
            return nil
        end
        if i == 1 then
            return ctx.chunk
        elseif i == 2 then
            return ctx.eof or false
        end
        return nil
    end,
    __newindex = function(_, i, v)
        local ctx = req_ctx()
        if not ctx or ctx.phase ~= "body_filter" then
            error("API disabled in the context of " .. phases.current(), 2)
        end
        if i == 1 then
            if type(v) == "table" then
                v = concat(v)
            end
            ctx.chunk = v == nil and "" or tostring(v)
            ctx.chunk_changed = true
        elseif i == 2 then
            ctx.eof = v and true or false
        end
    end,
})

-- output and exit ---------------------------------------------------------

local function flatten(out, v)
    local t = type(v)
    if t == "table" then
        for i = 1, #v do
            flatten(out, v[i])
        end
    elseif v == P.null then
        out[#out + 1] = "null"
    elseif t == "nil" then
        out[#out + 1] = "nil"
    else
        out[#out + 1] = tostring(v)
    end
end

local function output(newline, ...)
    local ctx = req_ctx()
    if not ctx then
        error("API disabled in the context of " .. phases.current(), 3)
    end
    local buf = ctx.out
    if not buf then
        buf = {}
        ctx.out = buf
    end
    for i = 1, select("#", ...) do
        flatten(buf, (select(i, ...)))
    end
    if newline then
        buf[#buf + 1] = "\n"
    end
    return 1
end

function ngx.print(...)
    return output(false, ...)
end

function ngx.say(...)
    return output(true, ...)
end

function ngx.flush()
    return 1
end

function ngx.eof()
    return 1
end

local EXIT_PHASES = phases.new("rewrite", "access")

--- Answer with the buffered output (ngx.say / ngx.print) and `status`;
-- used by ngx.exit and by the runloop when a handler printed.
function _M.send_output(ctx, status)
    local body = ctx.out and concat(ctx.out) or nil
    ctx.out = nil
    local rc = C.mg_lua_resp_exit(ctx.r, status, body, body and #body or 0)
    if rc == AGAIN then
        ctx = context.wait("ngx.exit")
    elseif rc ~= OK then
        return nil, P.last_error()
    end
    ctx.exited = true
    ctx.exit_status = status
    return true
end

--- ngx.exit(status): status >= 200 answers now with the buffered output
-- and ends the phase (as kong.response.exit); ngx.OK (0) ends the running
-- handler; in filter and log phases it ends the running handler.
function ngx.exit(status)
    if type(status) ~= "number" then
        error("bad argument #1 to 'exit' (number expected)", 2)
    end
    local ctx = req_ctx()
    if not ctx then
        error("API disabled in the context of " .. phases.current(), 2)
    end
    if ctx.phase == "certificate" and status < 0 then
        error(context.EXIT, 0)  -- ngx.ERROR: abort the handshake
    end
    if status >= 200 and phases.is(EXIT_PHASES) then
        if status == 444 then
            status = 499
        end
        local ok, err = _M.send_output(ctx, status)
        if not ok then
            error(err, 2)
        end
        error(context.EXIT, 0)
    end
    if status == 0 and ctx.out and phases.is(EXIT_PHASES) then
        local s = C.mg_lua_resp_status(ctx.r)
        local ok, err = _M.send_output(ctx, s ~= 0 and s or 200)
        if not ok then
            error(err, 2)
        end
        error(context.EXIT, 0)
    end
    error(context.QUIT, 0)
end

-- ngx.req ---------------------------------------------------------------------

local req = {}
ngx.req = req

local function need_ctx()
    local ctx = req_ctx()
    if not ctx then
        error("API disabled in the context of " .. phases.current(), 3)
    end
    return ctx
end

function req.get_method()
    local ctx = need_ctx()
    return ctx.upstream_method or get_str(ctx, C.mg_lua_req_method)
end

function req.set_method(m)
    local ctx = need_ctx()
    local name = METHOD_NAMES[m]
    if not name then
        error("unsupported HTTP method: " .. tostring(m), 2)
    end
    if C.mg_lua_upstream_set_method(ctx.r, name, #name) ~= OK then
        error(P.last_error(), 2)
    end
    ctx.upstream_method = name
end

function req.http_version()
    local ctx = need_ctx()
    return (C.mg_lua_req_http_version(ctx.r) / 10)
end

function req.start_time()
    local ctx = need_ctx()
    return (C.mg_lua_req_start_time(ctx.r))
end

function req.is_internal()
    return false
end

function req.get_headers(max_headers, raw)
    local ctx = need_ctx()
    local list = P.req_headers(ctx)
    if max_headers == nil then
        max_headers = 100
    end
    if max_headers == 0 then
        max_headers = nil
    end
    if raw then
        local t, n, truncated = {}, 0, nil
        for _, h in ipairs(list) do
            if max_headers and n >= max_headers then
                truncated = "truncated"
                break
            end
            n = n + 1
            local old = t[h[2]]
            if old == nil then
                t[h[2]] = h[3]
            elseif type(old) == "table" then
                old[#old + 1] = h[3]
            else
                t[h[2]] = { old, h[3] }
            end
        end
        return t, truncated
    end
    return P.headers_table(list, P.mods(ctx, "req_mods"), max_headers)
end

function req.set_header(name, value)
    local ctx = need_ctx()
    if type(name) ~= "string" then
        error("bad argument #1 to 'set_header' (string expected)", 2)
    end
    name = gsub(name, "_", "-")
    if value ~= nil and type(value) ~= "table" then
        value = tostring(value)
    end
    if lower(name) == "host" then
        ctx.upstream_host = value
    end
    local ok, err = service.set_header_value(ctx, name, value, false)
    if not ok then
        error(err, 2)
    end
end

function req.clear_header(name)
    return req.set_header(name, nil)
end

function req.raw_header(no_request_line)
    local ctx = need_ctx()
    local out = {}
    if not no_request_line then
        out[1] = (get_str(ctx, C.mg_lua_req_method) or "GET") .. " " ..
                 VARS.request_uri(ctx) .. " " ..
                 VARS.server_protocol(ctx) .. "\r\n"
    end
    for _, h in ipairs(P.req_headers(ctx)) do
        out[#out + 1] = h[2] .. ": " .. h[3] .. "\r\n"
    end
    out[#out + 1] = "\r\n"
    return (concat(out))
end

function req.read_body()
    local ctx = need_ctx()
    local body, err = req_body(ctx, "ngx.req.read_body")
    if not body then
        error(err, 2)
    end
    ctx.body_read = body
end

function req.discard_body()
end

function req.get_body_data()
    local ctx = need_ctx()
    local body = ctx.req_body
    if body == nil then
        body = ctx.body_read
    end
    if body == nil then
        body = req_body(ctx, "ngx.req.get_body_data")
    end
    if body == "" then
        return nil
    end
    return body
end

function req.get_body_file()
    return nil
end

function req.set_body_data(data)
    local ctx = need_ctx()
    if type(data) ~= "string" then
        error("bad argument #1 to 'set_body_data' (string expected)", 2)
    end
    if C.mg_lua_upstream_set_body(ctx.r, data, #data) ~= OK then
        error(P.last_error(), 2)
    end
    ctx.req_body = data
end

function req.get_uri_args(max_args)
    local ctx = need_ctx()
    return codec.decode_args(get_str(ctx, C.mg_lua_req_query) or "",
                             max_args or 100)
end

function req.set_uri_args(args)
    local ctx = need_ctx()
    if type(args) == "table" then
        args = codec.encode_args(args)
    elseif type(args) ~= "string" then
        error("bad argument #1 to 'set_uri_args' (string or table " ..
              "expected)", 2)
    end
    P.save_query(ctx)
    if C.mg_lua_upstream_set_query(ctx.r, args, #args) ~= OK then
        error(P.last_error(), 2)
    end
end

function req.set_uri(uri)
    local ctx = need_ctx()
    if type(uri) ~= "string" or uri == "" then
        error("bad argument #1 to 'set_uri' (non-empty string expected)", 2)
    end
    if C.mg_lua_upstream_set_path(ctx.r, uri, #uri) ~= OK then
        error(P.last_error(), 2)
    end
    ctx.upstream_path = uri
end

function req.get_post_args(max_args)
    local ctx = need_ctx()
    local body, err = req_body(ctx, "ngx.req.get_post_args")
    if not body then
        return nil, err
    end
    return codec.decode_args(body, max_args or 100)
end

-- ngx.resp ------------------------------------------------------------------

ngx.resp = {
    get_headers = function(max_headers, raw)
        local ctx = need_ctx()
        local t, trunc = P.headers_table(P.resp_headers(ctx),
                                         P.mods(ctx, "resp_mods"),
                                         max_headers ~= 0 and
                                         (max_headers or 100) or nil)
        if raw then
            setmetatable(t, nil)
        end
        return t, trunc
    end,
}

-- worker, config, phase -----------------------------------------------------

ngx.worker = {
    id = function()
        local id = C.mg_lua_worker_id()
        if id < 0 then
            return nil
        end
        return id
    end,
    count = function() return C.mg_lua_worker_count() end,
    pid = function() return C.mg_lua_worker_pid() end,
    exiting = function() return false end,
}

ngx.config = {
    subsystem = "http",
    debug = false,
    is_console = false,
    ngx_lua_version = 10026,
    nginx_version = 1025003,
    prefix = function()
        local mg = rawget(_G, "moongate")
        return type(mg) == "table" and mg.prefix or ""
    end,
    nginx_configure = function() return "" end,
}

function ngx.get_phase()
    return phases.current()
end

-- what is not here yet ------------------------------------------------------

local function missing(name)
    return (setmetatable({}, {
        __index = function(_, k)
            error(name .. "." .. tostring(k) .. " is not available in " ..
                  "this Moongate build", 2)
        end,
    }))
end

local re_ok, re = pcall(require, "moongate.re")
if re_ok then
    ngx.re = {
        match = re.match, find = re.find, gmatch = re.gmatch,
        sub = re.sub, gsub = re.gsub, split = re.split, opt = re.opt,
    }
    -- lua-resty-core's `require "ngx.re"` (split, opt), for Kong code
    if package.loaded["ngx.re"] == nil then
        package.loaded["ngx.re"] = { split = re.split, opt = re.opt }
    end
else
    ngx.re = missing("ngx.re")
end
-- ngx.timer: the callback runs later in a coroutine of its own (no
-- request: kong.request.* raise), fn(premature, ...); premature is true
-- when the worker stops before the delay is over.
local function timer_add(delay, fn, every, ...)
    if type(delay) ~= "number" or delay < 0 then
        error("bad argument #1 to 'at' (a non-negative number expected)", 3)
    end
    if type(fn) ~= "function" then
        error("bad argument #2 to 'at' (function expected, got " ..
              type(fn) .. ")", 3)
    end
    context.timer_id = context.timer_id + 1
    local id = context.timer_id
    context.timers[id] = { fn = fn, every = every, n = select("#", ...),
                           args = { ... } }
    local rc = C.mg_lua_timer_at(delay, id, every or 0)
    if rc ~= OK then
        context.timers[id] = nil
        return nil, P.last_error()
    end
    return true
end

ngx.timer = {
    at = function(delay, fn, ...)
        return timer_add(delay, fn, nil, ...)
    end,
    every = function(delay, fn, ...)
        if type(delay) ~= "number" or delay <= 0 then
            error("bad argument #1 to 'every' (a positive number expected)", 2)
        end
        return timer_add(delay, fn, delay, ...)
    end,
    running_count = function()
        return (tonumber(C.mg_lua_timer_count(1)))
    end,
    pending_count = function()
        return (tonumber(C.mg_lua_timer_count(0)))
    end,
}
ngx.shared = require("moongate.shdict").shared     -- lua_shared_dict
-- ngx.socket: cosockets (moongate.socket, loaded on first use); udp and
-- stream are not in this build
ngx.socket = setmetatable({
    tcp = function(...) return require("moongate.socket").tcp(...) end,
    connect = function(...)
        return require("moongate.socket").connect(...)
    end,
}, getmetatable(missing("ngx.socket")))
ngx.thread = missing("ngx.thread")
ngx.location = missing("ngx.location")

-- ngx.ctx, ngx.status, ngx.headers_sent -----------------------------------

local init_ctx = {}     -- ngx.ctx outside requests (init, init_worker)

setmetatable(ngx, {
    __index = function(_, k)
        if k == "ctx" then
            local ctx = context.current
            if ctx then
                return context.ngx_ctx(ctx)
            end
            return init_ctx
        elseif k == "status" then
            local ctx = req_ctx()
            if not ctx then
                return nil
            end
            return (C.mg_lua_resp_status(ctx.r))
        elseif k == "headers_sent" then
            local ctx = req_ctx()
            if not ctx then
                return false
            end
            return ctx.phase == "body_filter" or ctx.phase == "log"
        end
        return nil
    end,
    __newindex = function(t, k, v)
        if k == "ctx" then
            if type(v) ~= "table" then
                error("ctx should be a table", 2)
            end
            local ctx = context.current
            if ctx then
                ctx.ngx_ctx = v
            else
                init_ctx = v
            end
        elseif k == "status" then
            local ctx = req_ctx()
            if not ctx then
                error("API disabled in the context of " ..
                      phases.current(), 2)
            end
            if type(v) ~= "number" then
                v = tonumber(v)
            end
            if not v or C.mg_lua_resp_set_status(ctx.r, v) ~= OK then
                error(P.last_error(), 2)
            end
        else
            rawset(t, k, v)
        end
    end,
})

--- Set the global ngx when there is none; returns the one in use.
function _M.install()
    local g = rawget(_G, "ngx")
    if g == nil then
        rawset(_G, "ngx", ngx)
        return ngx
    end
    return g
end

return _M
