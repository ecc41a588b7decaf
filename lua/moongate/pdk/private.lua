-- moongate.pdk.private -- what the PDK modules share: reading header lists
-- from the core, the Lua-side view of header changes, Kong's argument
-- checks, JSON.
--
-- Header changes a plugin makes (kong.service.request.set_header,
-- kong.response.set_header) go to the core at once, which records them
-- and applies them when it builds the head it sends.  The core's read
-- functions keep returning what arrived (the client's request head, the
-- upstream's response head).  Kong's PDK reads back its own changes
-- (nginx edits the header list in place), so a read after a change sees
-- an overlay: name -> { replace = bool, values = {...} }; a set or clear
-- replaces what arrived, an add appends to it.  The overlay is built from
-- the core's record of the changes (mg_lua_header_mod_at) at the first
-- read after a change (_M.mods): a change itself costs one core call and
-- no Lua table, and most plugins that set a header never read it back.
-- (Kept in Lua as each change was made, the overlay cost three tables per
-- set_header -- most of a header-setting plugin's garbage.)

local api = require "moongate.ffi"

local C = api.C
local OK = api.OK
local sp, sn, vp, vn = api.sp, api.sn, api.vp, api.vn
local str, cstr = api.str, api.cstr
local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local lower = string.lower
local gsub = string.gsub
local format = string.format
local setmetatable = setmetatable

local _M = {}

-- JSON -----------------------------------------------------------------------

local cjson = require "cjson.safe"
local json = cjson.new and cjson.new() or cjson
if json.decode_array_with_array_mt then
    json.decode_array_with_array_mt(true)
end
if json.encode_escape_forward_slash then
    json.encode_escape_forward_slash(false)
end
_M.json = json
_M.null = cjson.null

-- errors ---------------------------------------------------------------------

--- Raise the core's last error at the caller of the PDK function that
-- called this (level 3).
function _M.core_error(prefix)
    local msg = cstr(C.mg_lua_last_error()) or "failed"
    error(prefix and (prefix .. ": " .. msg) or msg, 3)
end

function _M.last_error()
    return cstr(C.mg_lua_last_error()) or "failed"
end

-- header names -----------------------------------------------------------

local name_cache = setmetatable({}, { __mode = "k" })

--- "X_Custom_Header" -> "x-custom-header" (Kong's get_header lookup).
local function norm_name(name)
    local n = name_cache[name]
    if not n then
        n = gsub(lower(name), "_", "-")
        name_cache[name] = n
    end
    return n
end
_M.norm_name = norm_name

-- reading header lists from the core ---------------------------------------

--- The client's request headers, read once per request:
-- { { lname, name, value }, ... } in arrival order.
function _M.req_headers(ctx)
    local list = ctx.req_headers
    if list then
        return list
    end
    list = {}
    local r = ctx.r
    local n = C.mg_lua_req_header_count(r)
    for i = 0, n - 1 do
        if C.mg_lua_req_header_at(r, i, sp, sn, vp, vn) == OK then
            local name = str(sp[0], sn[0])
            list[#list + 1] = { lower(name), name, str(vp[0], vn[0]) }
        end
    end
    ctx.req_headers = list
    return list
end

--- The response headers the core holds now (the upstream's), same shape.
-- Read afresh until the runloop took a snapshot in header_filter (it
-- does when a later phase has plugins), then from the snapshot: the
-- upstream's head stays unchanged after header_filter, and the core
-- need not keep its buffer for body_filter and log.
function _M.resp_headers(ctx)
    local snap = ctx.resp_snapshot
    if snap then
        return snap
    end
    local list = {}
    local r = ctx.r
    local n = C.mg_lua_resp_header_count(r)
    for i = 0, n - 1 do
        if C.mg_lua_resp_header_at(r, i, sp, sn, vp, vn) == OK then
            local name = str(sp[0], sn[0])
            list[#list + 1] = { lower(name), name, str(vp[0], vn[0]) }
        end
    end
    return list
end

-- the original query ---------------------------------------------------------

--- The query as the client sent it (ngx.var.request_uri,
-- kong.request.get_path_with_query), even after a plugin changed it.
function _M.orig_query(ctx)
    local q = ctx.orig_query
    if q == nil then
        if C.mg_lua_req_query(ctx.r, sp, sn) == OK then
            q = str(sp[0], sn[0])
        else
            q = ""
        end
    end
    return q
end

--- Called before the query is changed: remember the client's.
function _M.save_query(ctx)
    if ctx.orig_query == nil then
        ctx.orig_query = _M.orig_query(ctx)
    end
end

-- the overlay ---------------------------------------------------------------

local MOD_WHICH = { req_mods = 0, resp_mods = 1 }

--- The overlay ctx[key] ("req_mods" or "resp_mods"): nil when nothing
-- changed, rebuilt from the core's record after a change (ctx[key] is
-- false then, see header_setter).
function _M.mods(ctx, key)
    local mods = ctx[key]
    if mods ~= false then
        return mods
    end
    mods = nil
    local r, which = ctx.r, MOD_WHICH[key]
    local i = 0
    while true do
        local add = C.mg_lua_header_mod_at(r, which, i, sp, sn, vp, vn)
        if add < 0 then
            break
        end
        mods = mods or {}
        local value = vp[0] ~= nil and str(vp[0], vn[0]) or nil
        _M.mod(mods, str(sp[0], sn[0]), value, add == 1)
        i = i + 1
    end
    ctx[key] = mods
    return mods
end

--- Record a change: value nil clears, add appends.
function _M.mod(mods, name, value, add)
    local lname = lower(name)
    local m = mods[lname]
    if add and m then
        m.values[#m.values + 1] = value
    elseif add then
        mods[lname] = { name = name, replace = false, values = { value } }
    else
        mods[lname] = { name = name, replace = true,
                        values = value ~= nil and { value } or {} }
    end
end

--- Every value of header lname (already lower-case, dashes) after the
-- overlay: an array, possibly empty.
function _M.values(list, mods, lname)
    local m = mods and mods[lname]
    if m and m.replace then
        return m.values
    end
    local out = {}
    for i = 1, #list do
        local h = list[i]
        if h[1] == lname then
            out[#out + 1] = h[3]
        end
    end
    if m then
        for i = 1, #m.values do
            out[#out + 1] = m.values[i]
        end
    end
    return out
end

--- The first value of header `name` (any case, '_' for '-'), or nil.
function _M.first(list, mods, name)
    local lname = norm_name(name)
    local m = mods and mods[lname]
    if m and m.replace then
        return m.values[1]
    end
    for i = 1, #list do
        local h = list[i]
        if h[1] == lname then
            return h[3]
        end
    end
    if m then
        return m.values[1]
    end
    return nil
end

-- a headers table answers lookups in any case and with '_' for '-', as
-- the table ngx.req.get_headers returns
local headers_mt = {
    __index = function(t, k)
        if type(k) == "string" then
            local n = norm_name(k)
            if n ~= k then
                return (rawget(t, n))
            end
        end
        return nil
    end,
}
_M.headers_mt = headers_mt

--- Kong's get_headers table: lower-case names, a string per header or an
-- array when repeated; at most `max` headers, "truncated" as the second
-- value beyond.
function _M.headers_table(list, mods, max)
    local t = setmetatable({}, headers_mt)
    local count = 0
    local truncated
    local function put(lname, v)
        if max and count >= max then
            truncated = "truncated"
            return
        end
        count = count + 1
        local old = rawget(t, lname)
        if old == nil then
            t[lname] = v
        elseif type(old) == "table" then
            old[#old + 1] = v
        else
            t[lname] = { old, v }
        end
    end
    for i = 1, #list do
        local h = list[i]
        local m = mods and mods[h[1]]
        if not (m and m.replace) then
            put(h[1], h[3])
        end
    end
    if mods then
        for lname, m in pairs(mods) do
            for _, v in ipairs(m.values) do
                put(lname, v)
            end
        end
    end
    return t, truncated
end

-- Kong's argument checks (kong/pdk/private/checks.lua) ---------------------

--- A header value as a string, or raise Kong's error.
function _M.validate_header(name, value)
    local tname = type(name)
    if tname ~= "string" then
        error(format("invalid header name %q: got %s, expected string",
                     tostring(name), tname), 3)
    end
    local tvalue = type(value)
    if tvalue ~= "string" then
        if tvalue == "number" or tvalue == "boolean" then
            value = tostring(value)
        else
            error(format("invalid header value for %q: got %s, expected " ..
                         "string, number or boolean", name, tvalue), 3)
        end
    end
    return value
end

--- Check a headers table (set_headers / exit): string names, values
-- strings, numbers, booleans or arrays of strings.
function _M.validate_headers(headers)
    if type(headers) ~= "table" then
        error("headers must be a table", 3)
    end
    for k, v in pairs(headers) do
        local tk = type(k)
        if tk ~= "string" then
            error(format("invalid header name %q: got %s, expected string",
                         tostring(k), tk), 3)
        end
        local tv = type(v)
        if tv ~= "string" and tv ~= "number" and tv ~= "boolean"
           and tv ~= "table" then
            error(format("invalid header value in %q: got %s, expected " ..
                         "string, number, boolean or array of strings",
                         k, tv), 3)
        end
        if tv == "table" then
            for _, vv in ipairs(v) do
                local tvv = type(vv)
                if tvv ~= "string" then
                    error(format("invalid header value in array %q: got " ..
                                 "%s, expected string", k, tvv), 3)
                end
            end
        end
    end
end

--- Kong's max_args / max_headers check: nil -> default, else a number in
-- 1..1000.
function _M.check_max(v, what, default)
    if v == nil then
        return default
    end
    if type(v) ~= "number" then
        error(what .. " must be a number", 3)
    elseif v < 1 then
        error(what .. " must be >= 1", 3)
    elseif v > 1000 then
        error(what .. " must be <= 1000", 3)
    end
    return v
end

-- HTTP status texts for kong.response.error (Kong's messages)
_M.ERROR_MESSAGES = {
    [400] = "Bad request",
    [401] = "Unauthorized",
    [402] = "Payment required",
    [403] = "Forbidden",
    [404] = "Not found",
    [405] = "Method not allowed",
    [406] = "Not acceptable",
    [407] = "Proxy authentication required",
    [408] = "Request timeout",
    [409] = "Conflict",
    [410] = "Gone",
    [411] = "Length required",
    [412] = "Precondition failed",
    [413] = "Payload too large",
    [414] = "URI too long",
    [415] = "Unsupported media type",
    [416] = "Range not satisfiable",
    [417] = "Expectation failed",
    [418] = "I'm a teapot",
    [421] = "Misdirected request",
    [422] = "Unprocessable entity",
    [423] = "Locked",
    [424] = "Failed dependency",
    [425] = "Too early",
    [426] = "Upgrade required",
    [428] = "Precondition required",
    [429] = "Too many requests",
    [431] = "Request header fields too large",
    [451] = "Unavailable for legal reasons",
    [494] = "Request header or cookie too large",
    [500] = "An unexpected error occurred",
    [501] = "Not implemented",
    [502] = "An invalid response was received from the upstream server",
    [503] = "The upstream server is currently unavailable",
    [504] = "The upstream server is timing out",
    [505] = "HTTP version not supported",
    [506] = "Variant also negotiates",
    [507] = "Insufficient storage",
    [508] = "Loop detected",
    [510] = "Not extended",
    [511] = "Network authentication required",
}

--- Header setters shared by kong.response (response head) and
-- kong.service.request (upstream request): cfn is the FFI function that
-- records one change in the core, key the ctx field of the Lua overlay
-- the getters read.  Returns set_one(ctx, name, value|nil, add) and
-- set_value(ctx, name, string|array, add).
function _M.header_setter(cfn, key)
    local function set_one(ctx, name, value, add)
        local rc = C[cfn](ctx.r, name, #name, value, value and #value or 0,
                          add and 1 or 0)
        if rc ~= OK then
            return nil, _M.last_error()
        end
        ctx[key] = false        -- stale: _M.mods rebuilds it
        return true
    end

    local function set_value(ctx, name, value, add)
        if type(value) == "table" then
            if #value == 0 and not add then
                return set_one(ctx, name, nil, false)
            end
            for i, v in ipairs(value) do
                local ok, err = set_one(ctx, name, tostring(v), add or i > 1)
                if not ok then
                    return nil, err
                end
            end
            return true
        end
        return set_one(ctx, name, value, add)
    end

    return set_one, set_value
end

return _M
