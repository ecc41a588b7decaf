-- kong.request -- the client's request, as it arrived (Kong 3.x PDK).
--
-- Every function checks its phase first.  Strings come from the core
-- (moongate.ffi) and are copied into Lua; the header list is read once per
-- request.  Header changes made by kong.service.request are visible here,
-- as in Kong (see moongate.pdk.private, the overlay); a query changed by
-- kong.service.request.set_query / set_raw_query is too (the core reports
-- the new one).  The body is fetched from the core on demand; when the
-- core still has to read it, the call waits (the request's coroutine
-- yields) -- so get_body / get_raw_body are only allowed where a phase may
-- wait, as Kong allows them only where nginx can read a body.

local api = require "moongate.ffi"
local phases = require "moongate.phases"
local context = require "moongate.context"
local codec = require "moongate.codec"
local P = require "moongate.pdk.private"
local ip = require "moongate.pdk.ip"

local C = api.C
local OK, AGAIN = api.OK, api.AGAIN
local sp, sn, vp, vn = api.sp, api.sn, api.vp, api.vn
local str = api.str
local check = phases.check
local type = type
local error = error
local tonumber = tonumber
local lower = string.lower
local find = string.find
local sub = string.sub
local match = string.match
local decode_args = codec.decode_args
local norm_name = P.norm_name

local _M = {}

local REQ = phases.new("rewrite", "access", "response", "header_filter",
                       "body_filter", "log", "admin_api")
local BODY = phases.new("rewrite", "access", "response", "admin_api")
_M.PHASES = REQ

local CT_FORM = "application/x-www-form-urlencoded"
local CT_JSON = "application/json"
local CT_MULTI = "multipart/form-data"

-- string getters ------------------------------------------------------------

local function get(ctx, fn)
    if fn(ctx.r, sp, sn) ~= OK then
        return nil
    end
    return str(sp[0], sn[0])
end

-- per-request memo of the immutable strings
local function memo(ctx, key, fn)
    local v = ctx[key]
    if v == nil then
        v = get(ctx, fn) or ""
        ctx[key] = v
    end
    return v
end

--- "GET", "POST", ...
function _M.get_method()
    local ctx = check(REQ)
    return memo(ctx, "m_method", C.mg_lua_req_method)
end

--- "http" or "https"
function _M.get_scheme()
    local ctx = check(REQ)
    return (lower(memo(ctx, "m_scheme", C.mg_lua_req_scheme)))
end

--- The host the client asked for, lower-case, without port.
function _M.get_host()
    local ctx = check(REQ)
    return (lower(memo(ctx, "m_host", C.mg_lua_req_host)))
end

--- The port the request arrived on (the server's).
function _M.get_port()
    local ctx = check(REQ)
    return (C.mg_lua_req_port(ctx.r))
end

--- The path as sent by the client, without the query.
function _M.get_raw_path()
    local ctx = check(REQ)
    return memo(ctx, "m_path", C.mg_lua_req_path)
end

--- The normalised path (Kong 3: escapes of unreserved characters
-- decoded, dot segments resolved, slashes merged).
function _M.get_path()
    local ctx = check(REQ)
    local p = ctx.m_norm_path
    if not p then
        p = codec.normalize_path(memo(ctx, "m_path", C.mg_lua_req_path))
        ctx.m_norm_path = p
    end
    return p
end

--- The raw query string (no '?'), "" when none.
function _M.get_raw_query()
    local ctx = check(REQ)
    return get(ctx, C.mg_lua_req_query) or ""
end

--- Path and query as sent, no normalisation (the client's query, even
-- after a plugin changed the upstream's).
function _M.get_path_with_query()
    local ctx = check(REQ)
    local q = P.orig_query(ctx)
    local p = memo(ctx, "m_path", C.mg_lua_req_path)
    if q ~= "" then
        return p .. "?" .. q
    end
    return p
end

--- The decoded query: key -> string | true | array (repeated keys).
function _M.get_query(max_args)
    local ctx = check(REQ)
    max_args = P.check_max(max_args, "max_args", 100)
    return (decode_args(get(ctx, C.mg_lua_req_query) or "", max_args))
end

--- The first value of query argument `name` (true when it has none).
function _M.get_query_arg(name)
    local ctx = check(REQ)
    if type(name) ~= "string" then
        error("query argument name must be a string", 2)
    end
    local v = decode_args(get(ctx, C.mg_lua_req_query) or "", 0)[name]
    if type(v) == "table" then
        return v[1]
    end
    return v
end

--- 1.0, 1.1 or 2.0 (a number, as Kong's)
function _M.get_http_version()
    local ctx = check(REQ)
    local v = C.mg_lua_req_http_version(ctx.r)
    if not v or v <= 0 then
        return nil
    end
    return v / 10
end

--- When the request started, in milliseconds since the epoch.
function _M.get_start_time()
    local ctx = check(REQ)
    return (C.mg_lua_req_start_time(ctx.r) * 1000)
end

-- headers -------------------------------------------------------------------

--- The first value of header `name`: any case, '_' may stand for '-'.
function _M.get_header(name)
    local ctx = check(REQ)
    if type(name) ~= "string" then
        error("header name must be a string", 2)
    end
    local mods = P.mods(ctx, "req_mods")
    if mods or ctx.req_headers then
        return P.first(P.req_headers(ctx), mods, name)
    end
    -- nothing changed yet: the core finds the header (one call, one
    -- string); with changes, the list is built once (P.req_headers)
    local lname = norm_name(name)
    if C.mg_lua_req_header_find(ctx.r, lname, #lname, vp, vn) == OK then
        return str(vp[0], vn[0])
    end
    return nil
end

--- All headers: lower-case names, arrays for repeated headers (max_headers
-- default 100; "truncated" as a second value beyond).
function _M.get_headers(max_headers)
    local ctx = check(REQ)
    max_headers = P.check_max(max_headers, "max_headers", 100)
    return P.headers_table(P.req_headers(ctx), P.mods(ctx, "req_mods"),
                           max_headers)
end

-- forwarded values ------------------------------------------------------------

local function client_ip(ctx)
    local ip_ = ctx.m_client_ip
    if not ip_ then
        local buf = api.buf(64)
        local n = C.mg_lua_req_client_ip(ctx.r, buf, 64)
        ip_ = n and n > 0 and str(buf, n) or ""
        ctx.m_client_ip = ip_
    end
    return ip_
end
_M.client_ip = client_ip

local function trusted(ctx)
    local t = ctx.m_trusted
    if t == nil then
        t = ip.is_trusted(client_ip(ctx))
        ctx.m_trusted = t
    end
    return t
end
_M.trusted = trusted

local function fwd(ctx, name)
    if not trusted(ctx) then
        return nil
    end
    local v = P.first(P.req_headers(ctx), P.mods(ctx, "req_mods"), name)
    if v then
        v = match(v, "^%s*([^,]-)%s*,") or match(v, "^%s*(.-)%s*$")
        if v == "" then
            v = nil
        end
    end
    return v
end

--- X-Forwarded-Proto when the client is a trusted proxy, else the scheme.
function _M.get_forwarded_scheme()
    local ctx = check(REQ)
    local v = fwd(ctx, "x-forwarded-proto")
    if v then
        return (lower(v))
    end
    return _M.get_scheme()
end

--- X-Forwarded-Host (port stripped) when trusted, else the host.
function _M.get_forwarded_host()
    local ctx = check(REQ)
    local v = fwd(ctx, "x-forwarded-host")
    if v then
        if sub(v, 1, 1) == "[" then
            v = match(v, "^(%[.-%])") or v
        else
            v = match(v, "^([^:]+)") or v
        end
        return (lower(v))
    end
    return _M.get_host()
end

--- X-Forwarded-Port when trusted (else the port of X-Forwarded-Host),
-- else the server port.
function _M.get_forwarded_port()
    local ctx = check(REQ)
    local v = tonumber(fwd(ctx, "x-forwarded-port") or "")
    if v and v >= 1 and v <= 65535 then
        return v
    end
    local host = fwd(ctx, "x-forwarded-host")
    if host then
        local p = tonumber(match(host, ":(%d+)$") or "")
        if p and p >= 1 and p <= 65535 then
            return p
        end
    end
    return (C.mg_lua_req_port(ctx.r))
end

--- X-Forwarded-Path when trusted, else the raw path.
function _M.get_forwarded_path()
    local ctx = check(REQ)
    return fwd(ctx, "x-forwarded-path") or _M.get_raw_path()
end

--- X-Forwarded-Prefix when trusted, else nil.
function _M.get_forwarded_prefix()
    local ctx = check(REQ)
    return fwd(ctx, "x-forwarded-prefix")
end

-- body ----------------------------------------------------------------------

--- The body as sent, "" when none; nil and a message when the core cannot
-- hand it over (too large to buffer, or not buffered).  May wait.
function _M.get_raw_body()
    local ctx = check(BODY)
    if ctx.req_body ~= nil then     -- set by kong.service.request
        return ctx.req_body
    end
    local r = ctx.r
    local rc = C.mg_lua_req_body(r, sp, sn)
    if rc == AGAIN then
        ctx = context.wait("kong.request.get_raw_body")
        r = ctx.r
        rc = C.mg_lua_req_body(r, sp, sn)
    end
    if rc ~= OK then
        return nil, P.last_error()
    end
    return str(sp[0], sn[0])
end

-- multipart/form-data: name -> value (files: their content), arrays when
-- repeated
local function parse_multipart(body, content_type)
    local boundary = match(content_type, ';%s*boundary="([^"]+)"')
                     or match(content_type, ";%s*boundary=([^;%s]+)")
    if not boundary then
        return nil, "missing boundary"
    end
    local out = {}
    local delim = "--" .. boundary
    local pos = find(body, delim, 1, true)
    if not pos then
        return out
    end
    pos = pos + #delim
    while true do
        if sub(body, pos, pos + 1) == "--" then
            break
        end
        local head_end = find(body, "\r\n\r\n", pos, true)
        if not head_end then
            break
        end
        local head = sub(body, pos, head_end - 1)
        local next_pos = find(body, "\r\n" .. delim, head_end + 4, true)
        if not next_pos then
            break
        end
        local value = sub(body, head_end + 4, next_pos - 1)
        local name = match(head, '[Cc]ontent%-[Dd]isposition:[^\r\n]-;%s*name="([^"]*)"')
        if name then
            local old = out[name]
            if old == nil then
                out[name] = value
            elseif type(old) == "table" then
                old[#old + 1] = value
            else
                out[name] = { old, value }
            end
        end
        pos = next_pos + 2 + #delim
    end
    return out
end

--- The body decoded by content type (or `mimetype`): a table for
-- form-urlencoded, JSON and multipart; nil, message, mimetype otherwise.
function _M.get_body(mimetype, max_args)
    check(BODY)
    if mimetype ~= nil and type(mimetype) ~= "string" then
        error("mimetype must be a string", 2)
    end
    max_args = P.check_max(max_args, "max_args", 100)
    local content_type = mimetype or _M.get_header("content-type")
    if not content_type then
        return nil, "missing content type"
    end
    local ct = lower(content_type)
    if find(ct, CT_FORM, 1, true) == 1 then
        local body, err = _M.get_raw_body()
        if not body then
            return nil, err, CT_FORM
        end
        return (decode_args(body, max_args)), nil, CT_FORM
    elseif find(ct, CT_JSON, 1, true) == 1 or
           match(ct, "^application/[%w%.%-]+%+json") then
        local body, err = _M.get_raw_body()
        if not body then
            return nil, err, CT_JSON
        end
        local json = P.json.decode(body)
        if type(json) ~= "table" then
            return nil, "invalid json body", CT_JSON
        end
        return json, nil, CT_JSON
    elseif find(ct, CT_MULTI, 1, true) == 1 then
        local body, err = _M.get_raw_body()
        if not body then
            return nil, err, CT_MULTI
        end
        local t, perr = parse_multipart(body, content_type)
        if not t then
            return nil, perr, CT_MULTI
        end
        return t, nil, CT_MULTI
    end
    return nil, "unsupported content type '" .. content_type .. "'", ct
end

-- router captures -----------------------------------------------------------

--- The regex captures of the matched route path:
-- { unnamed = { "a", ... }, named = { name = "v" } }
function _M.get_uri_captures()
    local ctx = check(REQ)
    local r = ctx.r
    local unnamed, named = {}, {}
    for i = 0, C.mg_lua_req_capture_count(r) - 1 do
        if C.mg_lua_req_capture_at(r, i, sp, sn, vp, vn) == OK then
            local name = str(sp[0], sn[0])
            local value = str(vp[0], vn[0])
            if name == "" or tonumber(name) then
                unnamed[#unnamed + 1] = value
            else
                named[name] = value
            end
        end
    end
    return { unnamed = unnamed, named = named }
end

--- The request id the core gave this request (32 hex digits).
function _M.get_id()
    local ctx = check(REQ)
    return memo(ctx, "m_id", C.mg_lua_req_id)
end

return _M
