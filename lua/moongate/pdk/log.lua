-- kong.log -- the error log with the plugin's name (Kong 3.x PDK), and
-- the log serializer every logging plugin calls (kong.log.serialize).
--
-- A line goes to the core's error log through mg_lua_log, which adds the
-- time, level and pid; here it gets Kong's prefix:
--   [kong] handler.lua:12 [my-plugin] the message
-- The plugin's name comes from the running request state, so one kong.log
-- table serves every plugin (Kong builds a namespaced copy per plugin).
-- Lines below the configured log_level are dropped before any string is
-- built.
--
-- serialize() returns Kong's shape (request, response, latencies, route,
-- service, consumer, client_ip, started_at, upstream_uri, ...) built from
-- what the core exposes; see the function for the fields that are
-- estimates in this build.

local api = require "moongate.ffi"
local phases = require "moongate.phases"
local context = require "moongate.context"
local P = require "moongate.pdk.private"

local C = api.C
local LOG = api.LOG
local type = type
local select = select
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local getmetatable = getmetatable
local pairs = pairs
local ipairs = ipairs
local error = error
local concat = table.concat
local sort = table.sort
local format = string.format
local match = string.match
local rep = string.rep
local getinfo = debug.getinfo

local _M = {}

local LEVELS = {
    debug = LOG.DEBUG, info = LOG.INFO, notice = LOG.NOTICE,
    warn = LOG.WARN, err = LOG.ERR, crit = LOG.CRIT, alert = LOG.ALERT,
    emerg = LOG.EMERG,
}
_M.LEVELS = LEVELS

local threshold = LOG.NOTICE

--- Set the level below which lines are dropped ("debug" .. "emerg").
function _M.set_threshold(name)
    threshold = LEVELS[name] or threshold
end

function _M.get_threshold()
    return threshold
end

local function raw_log(level, msg)
    C.mg_lua_log(level, msg, #msg)
end
_M.raw = raw_log

-- "[kong] file.lua:12 [plugin] " for the function `depth` levels up
local function prefix(depth)
    local info = getinfo(depth, "Sl")
    local where = ""
    if info then
        local src = match(info.short_src or "", "([^/]+)$") or "?"
        where = src .. ":" .. tostring(info.currentline or 0) .. " "
    end
    local ctx = context.current
    local name = ctx and ctx.plugin_name
    if name then
        return "[kong] " .. where .. "[" .. name .. "] "
    end
    return "[kong] " .. where
end

local function join(sep, ...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do
        parts[i] = tostring((select(i, ...)))
    end
    return (concat(parts, sep))
end

local function gen(level)
    return function(...)
        if level < threshold then
            return
        end
        raw_log(level, prefix(3) .. join("", ...))
    end
end

for name, level in pairs(LEVELS) do
    _M[name] = gen(level)
end

-- inspect -------------------------------------------------------------------

local function inspect_value(v, indent, seen)
    local t = type(v)
    if t == "string" then
        return (format("%q", v))
    elseif t ~= "table" then
        return (tostring(v))
    end
    if seen[v] then
        return "<cycle>"
    end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then
            return ta < tb
        end
        if ta == "number" or ta == "string" then
            return a < b
        end
        return tostring(a) < tostring(b)
    end)
    if #keys == 0 then
        seen[v] = nil
        return "{}"
    end
    local pad = rep("  ", indent + 1)
    local out = {}
    for _, k in ipairs(keys) do
        local ks
        if type(k) == "string" and match(k, "^[%a_][%w_]*$") then
            ks = k
        else
            ks = "[" .. inspect_value(k, indent + 1, seen) .. "]"
        end
        out[#out + 1] = pad .. ks .. " = " ..
                        inspect_value(v[k], indent + 1, seen)
    end
    seen[v] = nil
    return "{\n" .. concat(out, ",\n") .. "\n" .. rep("  ", indent) .. "}"
end

local inspect_on = true

--- Pretty-print the arguments at debug level (space separated).
_M.inspect = setmetatable({
    on = function() inspect_on = true end,
    off = function() inspect_on = false end,
}, {
    __call = function(_, ...)
        if not inspect_on or LOG.DEBUG < threshold then
            return
        end
        local n = select("#", ...)
        local parts = {}
        for i = 1, n do
            parts[i] = inspect_value((select(i, ...)), 0, {})
        end
        raw_log(LOG.DEBUG, prefix(3) .. concat(parts, " "))
    end,
})
_M.inspect_value = inspect_value

-- serialize -----------------------------------------------------------------

local SERIALIZE = phases.new("header_filter", "body_filter", "log")
local SET_VALUE = phases.new("rewrite", "access", "header_filter",
                             "response", "body_filter", "log")

local function copy(t, seen)
    if type(t) ~= "table" then
        return t
    end
    seen = seen or {}
    if seen[t] then
        return seen[t]
    end
    local c = {}
    seen[t] = c
    for k, v in pairs(t) do
        c[copy(k, seen)] = copy(v, seen)
    end
    return (setmetatable(c, getmetatable(t)))
end

--- kong.log.set_serialize_value(key, value, { mode = "set" | "add" |
-- "replace" }): change the serializer's output; dotted keys reach into
-- sub-tables ("request.headers.x").  "set" always writes, "add" only when
-- the key is absent, "replace" only when present.
function _M.set_serialize_value(key, value, options)
    local ctx = phases.check(SET_VALUE)
    if type(key) ~= "string" then
        error("key must be a string", 2)
    end
    local mode = options and options.mode or "set"
    if mode ~= "set" and mode ~= "add" and mode ~= "replace" then
        error("mode must be 'set', 'add' or 'replace'", 2)
    end
    local tv = type(value)
    if tv ~= "nil" and tv ~= "string" and tv ~= "number"
       and tv ~= "boolean" and tv ~= "table" then
        error("value must be nil, a number, string, boolean or a " ..
              "non-self-referencial table containing numbers, string " ..
              "and booleans", 2)
    end
    local list = ctx.serialize_values
    if not list then
        list = {}
        ctx.serialize_values = list
    end
    list[#list + 1] = { key = key, value = value, mode = mode }
end

local function apply_values(out, list)
    for _, item in ipairs(list or {}) do
        local t = out
        local parts = {}
        for p in (item.key .. "."):gmatch("([^.]*)%.") do
            parts[#parts + 1] = p
        end
        for i = 1, #parts - 1 do
            local nxt = t[parts[i]]
            if type(nxt) ~= "table" then
                nxt = {}
                t[parts[i]] = nxt
            end
            t = nxt
        end
        local last = parts[#parts]
        local present = t[last] ~= nil
        if item.mode == "set" or (item.mode == "add" and not present)
           or (item.mode == "replace" and present) then
            t[last] = copy(item.value)
        end
    end
    return out
end

-- Kong's request_length for HTTP/1.x: request line, headers, body
local function request_size(method, uri, headers)
    local n = #method + 1 + #uri + 1 + 8 + 2 + 2
    for _, h in ipairs(headers) do
        n = n + #h[2] + 2 + #h[3] + 2
    end
    local cl
    for _, h in ipairs(headers) do
        if h[1] == "content-length" then
            cl = tonumber(h[3])
        end
    end
    return n + (cl or 0)
end

--- Kong's log serializer output for the running request.  Estimates in
-- this build (the core does not report them yet): request.size is
-- computed from the head as received plus Content-Length; response.size
-- is the response's Content-Length; latencies come from the times the
-- runloop saw phases start and end (kong: start -> end of access, proxy:
-- end of access -> header_filter, request: start -> now); tries is absent.
function _M.serialize(options)
    local ctx = phases.check(SERIALIZE)
    local kong = _G.kong
    local req, resp, client = kong.request, kong.response, kong.client

    local method = req.get_method()
    local path_q = req.get_path_with_query()
    local host = req.get_host()
    local port = req.get_port()
    local scheme = req.get_scheme()

    local list = P.req_headers(ctx)
    local req_headers = P.headers_table(list, P.mods(ctx, "req_mods"), 1000)
    if req_headers.authorization then
        req_headers.authorization = "REDACTED"
    end
    if req_headers["proxy-authorization"] then
        req_headers["proxy-authorization"] = "REDACTED"
    end
    setmetatable(req_headers, nil)

    local resp_headers = resp.get_headers(1000)
    setmetatable(resp_headers, nil)

    local now = C.mg_lua_now()
    local start = C.mg_lua_req_start_time(ctx.r)
    local t = ctx.times or {}
    local request_ms = (now - start) * 1000
    local kong_ms = t.access_end and (t.access_end - start) * 1000
                    or request_ms
    local proxy_ms = -1
    if t.access_end and t.header_filter then
        proxy_ms = (t.header_filter - t.access_end) * 1000
    end

    local nctx = context.ngx_ctx(ctx)
    local credential = nctx.authenticated_credential
    local authenticated_entity
    if credential then
        authenticated_entity = {
            id = credential.id,
            consumer_id = credential.consumer_id or
                          (type(credential.consumer) == "table" and
                           credential.consumer.id) or nil,
        }
    end

    local upstream_uri = ctx.upstream_path or req.get_raw_path()
    local q = req.get_raw_query()
    if q ~= "" then
        upstream_uri = upstream_uri .. "?" .. q
    end

    local out = {
        request = {
            id = req.get_id(),
            uri = path_q,
            url = scheme .. "://" .. host .. ":" .. port .. path_q,
            querystring = req.get_query(1000),
            method = method,
            headers = req_headers,
            size = request_size(method, path_q, list),
        },
        upstream_uri = upstream_uri,
        response = {
            status = resp.get_status(),
            headers = resp_headers,
            size = tonumber(resp_headers["content-length"] or "") or 0,
        },
        latencies = {
            kong = kong_ms,
            proxy = proxy_ms,
            request = request_ms,
            receive = 0,
        },
        authenticated_entity = authenticated_entity,
        route = copy(ctx.route),
        service = copy(ctx.service),
        consumer = copy(nctx.authenticated_consumer),
        client_ip = client.get_forwarded_ip(),
        started_at = req.get_start_time(),
        source = resp.get_source(),
        workspace = "default",
        workspace_name = "default",
    }
    if out.source == "service" and out.response.status then
        out.upstream_status = tostring(out.response.status)
    end
    apply_values(out, ctx.serialize_values)
    return out
end

return _M
