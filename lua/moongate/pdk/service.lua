-- kong.service, kong.service.request, kong.service.response -- the
-- request sent upstream and the response that came back (Kong 3.x PDK).
--
-- Changes go to the core at once (mg_lua_upstream_*), which applies them
-- when it builds the upstream request; after the request left, the core
-- refuses them and the PDK raises its reason.  Header changes are also
-- recorded in the request's overlay so kong.request.get_header reads them
-- back, as in Kong (moongate.pdk.private).  A body set here is what
-- kong.request.get_raw_body returns afterwards, as in Kong.

local api = require "moongate.ffi"
local phases = require "moongate.phases"
local codec = require "moongate.codec"
local P = require "moongate.pdk.private"

local C = api.C
local OK = api.OK
local check = phases.check
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local lower = string.lower
local find = string.find
local match = string.match
local floor = math.floor
local concat = table.concat
local setmetatable = setmetatable

local _M = { request = {}, response = {} }
local request = _M.request
local response = _M.response

local ACCESS = phases.new("rewrite", "access", "balancer")
local UPSTREAM = phases.new("access")
local RESP = phases.new("header_filter", "response", "body_filter", "log")

-- kong.service ----------------------------------------------------------------

--- Send this request to host:port instead of the service's target.
function _M.set_target(host, port)
    local ctx = check(ACCESS)
    if type(host) ~= "string" then
        error("host must be a string", 2)
    end
    if type(port) ~= "number" or floor(port) ~= port then
        error("port must be an integer", 2)
    end
    if port < 0 or port > 65535 then
        error("port must be an integer between 0 and 65535: given " ..
              port, 2)
    end
    if C.mg_lua_upstream_set_target(ctx.r, host, #host, port) ~= OK then
        P.core_error()
    end
end

--- Send this request to the upstream named `host`: the core resolves the
-- name as it resolves a service host (an upstream entity or DNS), on the
-- service's port.
function _M.set_upstream(host)
    local ctx = check(UPSTREAM)
    if type(host) ~= "string" then
        error("host must be a string", 2)
    end
    local port = ctx.service and ctx.service.port
    if type(port) ~= "number" or port <= 0 then
        port = 80
    end
    if C.mg_lua_upstream_set_target(ctx.r, host, #host, port) ~= OK then
        return nil, P.last_error()
    end
    return true
end

-- kong.service.request ----------------------------------------------------

-- one header change to the core; reads see it through P.mods
local set_one, set_value = P.header_setter("mg_lua_upstream_set_header",
                                           "req_mods")

--- "http" or "https" toward the upstream.  Recorded; the core connects
-- with the service's protocol in this build.
function request.set_scheme(scheme)
    local ctx = check(ACCESS)
    if type(scheme) ~= "string" then
        error("scheme must be a string", 2)
    end
    if scheme ~= "http" and scheme ~= "https" then
        error("invalid scheme: " .. scheme, 2)
    end
    ctx.upstream_scheme = scheme
end

function request.set_path(path)
    local ctx = check(ACCESS)
    if type(path) ~= "string" then
        error("path must be a string", 2)
    end
    if path:sub(1, 1) ~= "/" then
        error("path must start with /", 2)
    end
    if C.mg_lua_upstream_set_path(ctx.r, path, #path) ~= OK then
        P.core_error()
    end
    ctx.upstream_path = path
end

function request.set_raw_query(query)
    local ctx = check(ACCESS)
    if type(query) ~= "string" then
        error("query must be a string", 2)
    end
    P.save_query(ctx)
    if C.mg_lua_upstream_set_query(ctx.r, query, #query) ~= OK then
        P.core_error()
    end
end

--- The query from a table (keys sorted; arrays repeat the key; true: the
-- key alone).
function request.set_query(args)
    local ctx = check(ACCESS)
    if type(args) ~= "table" then
        error("query must be a table", 2)
    end
    for k, v in pairs(args) do
        if type(k) ~= "string" then
            error("arg keys must be strings", 2)
        end
        local t = type(v)
        if t ~= "string" and t ~= "number" and t ~= "boolean"
           and t ~= "table" then
            error("arg values must be strings, numbers, booleans or " ..
                  "tables", 2)
        end
    end
    local q = codec.encode_args(args)
    P.save_query(ctx)
    if C.mg_lua_upstream_set_query(ctx.r, q, #q) ~= OK then
        P.core_error()
    end
end

local METHODS = {
    GET = true, HEAD = true, PUT = true, POST = true, DELETE = true,
    OPTIONS = true, MKCOL = true, COPY = true, MOVE = true,
    PROPFIND = true, PROPPATCH = true, LOCK = true, UNLOCK = true,
    PATCH = true, TRACE = true, CONNECT = true,
}

function request.set_method(method)
    local ctx = check(ACCESS)
    if type(method) ~= "string" then
        error("method must be a string", 2)
    end
    if not METHODS[method] then
        error("invalid method: " .. method, 2)
    end
    if C.mg_lua_upstream_set_method(ctx.r, method, #method) ~= OK then
        P.core_error()
    end
    ctx.upstream_method = method
end

function request.set_header(name, value)
    local ctx = check(ACCESS)
    value = P.validate_header(name, value)
    if #name == 4 and lower(name) == "host" then
        ctx.upstream_host = value
    end
    local ok, err = set_one(ctx, name, value, false)
    if not ok then
        error(err, 2)
    end
end

function request.add_header(name, value)
    local ctx = check(ACCESS)
    value = P.validate_header(name, value)
    local ok, err = set_one(ctx, name, value, true)
    if not ok then
        error(err, 2)
    end
end

function request.clear_header(name)
    local ctx = check(ACCESS)
    if type(name) ~= "string" then
        error("header name must be a string", 2)
    end
    local ok, err = set_one(ctx, name, nil, false)
    if not ok then
        error(err, 2)
    end
end

function request.set_headers(headers)
    local ctx = check(ACCESS)
    if type(headers) ~= "table" then
        error("headers must be a table", 2)
    end
    P.validate_headers(headers)
    for name, value in pairs(headers) do
        if type(value) ~= "table" then
            value = tostring(value)
        end
        local ok, err = set_value(ctx, name, value, false)
        if not ok then
            error(err, 2)
        end
    end
end

local function set_body(ctx, body)
    if C.mg_lua_upstream_set_body(ctx.r, body, #body) ~= OK then
        return nil, P.last_error()
    end
    ctx.req_body = body
    return true
end

function request.set_raw_body(body)
    local ctx = check(ACCESS)
    if type(body) ~= "string" then
        error("body must be a string", 2)
    end
    local ok, err = set_body(ctx, body)
    if not ok then
        error(err, 2)
    end
end

local CT_FORM = "application/x-www-form-urlencoded"
local CT_JSON = "application/json"
local CT_MULTI = "multipart/form-data"

local function multipart(args, boundary)
    local out = {}
    local keys = {}
    for k in pairs(args) do
        keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
        local v = args[k]
        local list = type(v) == "table" and v or { v }
        for _, x in ipairs(list) do
            out[#out + 1] = "--" .. boundary .. "\r\n" ..
                            'Content-Disposition: form-data; name="' .. k ..
                            '"\r\n\r\n' .. tostring(x) .. "\r\n"
        end
    end
    out[#out + 1] = "--" .. boundary .. "--\r\n"
    return (concat(out))
end

--- The body from a table, encoded by `mimetype` or the request's
-- Content-Type: form-urlencoded, JSON or multipart.  Returns true, or nil
-- and a message.
function request.set_body(args, mimetype)
    local ctx = check(ACCESS)
    if type(args) ~= "table" then
        error("args must be a table", 2)
    end
    if mimetype ~= nil and type(mimetype) ~= "string" then
        error("mime must be a string", 2)
    end
    local ct = mimetype or P.first(P.req_headers(ctx),
                                   P.mods(ctx, "req_mods"), "content-type")
    if not ct or ct == "" then
        return nil, "content type was neither explicitly given as an " ..
                    "argument or received as a header"
    end
    local lct = lower(ct)
    local body, new_ct
    if find(lct, CT_FORM, 1, true) == 1 then
        body, new_ct = codec.encode_args(args), CT_FORM
    elseif find(lct, CT_JSON, 1, true) == 1 or
           match(lct, "^application/[%w%.%-]+%+json") then
        local err
        body, err = P.json.encode(args)
        if not body then
            return nil, err
        end
        new_ct = ct
    elseif find(lct, CT_MULTI, 1, true) == 1 then
        local boundary = match(ct, ";%s*boundary=\"?([^\";]+)")
        if not boundary then
            boundary = "moongate" .. tostring(floor(math.random() * 1e9))
            ct = CT_MULTI .. "; boundary=" .. boundary
        end
        body, new_ct = multipart(args, boundary), ct
    else
        return nil, "unsupported content type '" .. ct .. "'"
    end
    if mimetype or new_ct ~= ct then
        local ok, err = set_one(ctx, "Content-Type", new_ct, false)
        if not ok then
            return nil, err
        end
    end
    return set_body(ctx, body)
end

--- Kong's no-op for buffered proxying (the core decides per plugin need).
function request.enable_buffering()
    local ctx = check(ACCESS)
    ctx.buffering = true
end

-- kong.service.response -----------------------------------------------------

local function from_service(ctx)
    local src = api.cstr(C.mg_lua_resp_source(ctx.r))
    return src == "service"
end

--- The upstream's status, nil when the response did not come from it.
function response.get_status()
    local ctx = check(RESP)
    if not from_service(ctx) then
        return nil
    end
    local s = C.mg_lua_resp_status(ctx.r)
    return s ~= 0 and s or nil
end

--- The upstream's headers (without the changes plugins made).
function response.get_headers(max_headers)
    local ctx = check(RESP)
    max_headers = P.check_max(max_headers, "max_headers", 100)
    if not from_service(ctx) then
        return (setmetatable({}, P.headers_mt))
    end
    return P.headers_table(P.resp_headers(ctx), nil, max_headers)
end

function response.get_header(name)
    local ctx = check(RESP)
    if type(name) ~= "string" then
        error("header name must be a string", 2)
    end
    if not from_service(ctx) then
        return nil
    end
    return P.first(P.resp_headers(ctx), nil, name)
end

local CT_FORM = "application/x-www-form-urlencoded"
local CT_JSON = "application/json"

--- The upstream's body as buffered for the response phase (a plugin of
-- the route implements `response`): the whole body in response and the
-- later phases, nil when the response was streamed (not buffered).
function response.get_raw_body()
    local ctx = check(RESP)
    if not from_service(ctx) then
        return nil
    end
    return ctx.resp_body_raw
end

--- The buffered body decoded by its Content-Type (or `mimetype`):
-- application/json and application/x-www-form-urlencoded.  Returns the
-- table, or nil and an error.
function response.get_body(mimetype, max_args)
    check(RESP)
    if mimetype ~= nil and type(mimetype) ~= "string" then
        error("mimetype must be a string", 2)
    end
    max_args = P.check_max(max_args, "max_args", 100)
    local body = response.get_raw_body()
    if body == nil then
        return nil, "the response body was not buffered (no plugin of " ..
                    "the route implements the response phase)"
    end
    local ct = mimetype or response.get_header("content-type")
    if not ct then
        return nil, "missing content type"
    end
    ct = lower(ct)
    if find(ct, CT_JSON, 1, true) == 1 or
       match(ct, "^application/[%w%.%-]+%+json") then
        local json = P.json.decode(body)
        if type(json) ~= "table" then
            return nil, "invalid json body"
        end
        return json
    elseif find(ct, CT_FORM, 1, true) == 1 then
        return (codec.decode_args(body, max_args))
    end
    return nil, "unsupported content type '" .. ct .. "'"
end

_M.set_header_value = set_value

return _M
