-- kong.response -- the response to the client (Kong 3.x PDK): status and
-- headers (read: what the upstream sent, with this request's changes;
-- write: recorded by the core and applied to the head it sends), exit and
-- error (answer now, from a plugin), and the body in body_filter.
--
-- kong.response.exit hands status and body to the core
-- (mg_lua_resp_exit), then ends the running phase by raising the
-- context.EXIT sentinel: the runloop's xpcall handler recognises it, skips
-- the phase's remaining plugins and returns "exit" to the core -- however
-- deep in plugin code the call was made.  (A plugin that wraps the call in
-- its own pcall swallows the sentinel, as it would swallow Kong's
-- ngx.exit; the response is still the exit's, the phase just goes on.)

local api = require "moongate.ffi"
local phases = require "moongate.phases"
local context = require "moongate.context"
local P = require "moongate.pdk.private"

local C = api.C
local OK, AGAIN = api.OK, api.AGAIN
local cstr = api.cstr
local check = phases.check
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local lower = string.lower
local tonumber = tonumber
local format = string.format
local gsub = string.gsub
local match = string.match
local floor = math.floor

local _M = {}

local GET = phases.new("header_filter", "response", "body_filter", "log",
                       "admin_api")
local SET = phases.new("rewrite", "access", "header_filter", "response",
                       "admin_api")
local EXIT = phases.new("rewrite", "access", "header_filter", "response",
                        "admin_api")
local BODY = phases.new("response", "body_filter")

local CONTENT_TYPE_JSON = "application/json; charset=utf-8"

-- headers -------------------------------------------------------------------

-- one header change to the core; reads see it through P.mods
local set_one, set_value = P.header_setter("mg_lua_resp_set_header",
                                           "resp_mods")

--- The response status: the upstream's, the exit's, or the one set.
function _M.get_status()
    local ctx = check(GET)
    local s = C.mg_lua_resp_status(ctx.r)
    if s == 0 then
        return nil
    end
    return s
end

function _M.set_status(status)
    local ctx = check(SET)
    if type(status) ~= "number" then
        error("code must be a number", 2)
    elseif status < 100 or status > 599 or floor(status) ~= status then
        error("code must be a number between 100 and 599", 2)
    end
    if C.mg_lua_resp_set_status(ctx.r, status) ~= OK then
        P.core_error()
    end
end

function _M.get_header(name)
    local ctx = check(GET)
    if type(name) ~= "string" then
        error("header name must be a string", 2)
    end
    return P.first(P.resp_headers(ctx), P.mods(ctx, "resp_mods"), name)
end

function _M.get_headers(max_headers)
    local ctx = check(GET)
    max_headers = P.check_max(max_headers, "max_headers", 100)
    return P.headers_table(P.resp_headers(ctx), P.mods(ctx, "resp_mods"),
                           max_headers)
end

--- "service", "exit" or "error" (as the core tells).
function _M.get_source()
    local ctx = check(GET)
    return cstr(C.mg_lua_resp_source(ctx.r))
end

function _M.set_header(name, value)
    local ctx = check(SET)
    value = P.validate_header(name, value)
    local ok, err = set_one(ctx, name, value, false)
    if not ok then
        error(err, 2)
    end
end

function _M.add_header(name, value)
    local ctx = check(SET)
    value = P.validate_header(name, value)
    local ok, err = set_one(ctx, name, value, true)
    if not ok then
        error(err, 2)
    end
end

function _M.clear_header(name)
    local ctx = check(SET)
    if type(name) ~= "string" then
        error("header name must be a string", 2)
    end
    local ok, err = set_one(ctx, name, nil, false)
    if not ok then
        error(err, 2)
    end
end

--- Set several headers (each replaces the old values; an array value sets
-- the header several times).
function _M.set_headers(headers)
    local ctx = check(SET)
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

-- exit ----------------------------------------------------------------------

-- headers of an exit, body, then hand over and end the phase
local function send(ctx, status, body, headers, level)
    if headers then
        for name, value in pairs(headers) do
            if type(value) ~= "table" then
                value = tostring(value)
            end
            local ok, err = set_value(ctx, name, value, false)
            if not ok then
                error(err, level)
            end
        end
    end
    local content = body
    if type(body) == "table" then
        local err
        content, err = P.json.encode(body)
        if not content then
            error("could not JSON encode the body: " .. tostring(err), level)
        end
        if not P.first(P.resp_headers(ctx), P.mods(ctx, "resp_mods"),
                       "content-type") then
            set_one(ctx, "Content-Type", CONTENT_TYPE_JSON, false)
        end
    end
    local rc = C.mg_lua_resp_exit(ctx.r, status, content,
                                  content and #content or 0)
    if rc == AGAIN then
        ctx = context.wait("kong.response.exit")
    elseif rc ~= OK then
        error(P.last_error(), level)
    end
    ctx.exited = true
    ctx.exit_status = status
    error(context.EXIT, 0)
end

--- Answer the client now with status, body (a table is sent as JSON with
-- Content-Type application/json, a string as is) and headers; the
-- running phase ends here and the remaining plugins of the phase do not
-- run.  Does not return.
function _M.exit(status, body, headers)
    local ctx = check(EXIT)
    if type(status) ~= "number" then
        error("code must be a number", 2)
    elseif status < 100 or status > 599 then
        error("code must be a number between 100 and 599", 2)
    end
    if body ~= nil and type(body) ~= "string" and type(body) ~= "table" then
        error("body must be a nil, string or table", 2)
    end
    if headers ~= nil and type(headers) ~= "table" then
        error("headers must be a nil or table", 2)
    end
    if headers ~= nil then
        P.validate_headers(headers)
    end
    send(ctx, status, body, headers, 3)
end

-- content negotiation for kong.response.error (Accept, q-values)
local ERROR_TYPES = {
    ["application/json"] = "json",
    ["text/html"] = "html",
    ["application/xml"] = "xml",
    ["text/xml"] = "xml",
    ["text/plain"] = "plain",
    ["text/*"] = "plain",
    ["application/*"] = "json",
    ["*/*"] = "json",
}

local ERROR_CT = {
    json = "application/json; charset=utf-8",
    html = "text/html; charset=utf-8",
    xml = "application/xml; charset=utf-8",
    plain = "text/plain; charset=utf-8",
}

local function negotiate(accept)
    if not accept or accept == "" then
        return "json"
    end
    local best, best_q = nil, -1
    for item in (accept .. ","):gmatch("([^,]*),") do
        local mt = lower(match(item, "^%s*([^;%s]+)") or "")
        local q = tonumber(match(item, ";%s*q=([%d%.]+)") or "1") or 1
        local t = ERROR_TYPES[mt]
        if t and q > best_q then
            best, best_q = t, q
        end
    end
    return best or "json"
end

local function escape_markup(s)
    return (gsub(s, "[<>&\"']", {
        ["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;",
        ["\""] = "&quot;", ["'"] = "&#39;",
    }))
end

local function error_body(kind, message)
    if kind == "json" then
        return P.json.encode({ message = message })
    elseif kind == "html" then
        return (format('<!doctype html>\n<html>\n  <head>\n    <meta ' ..
                       'charset="utf-8">\n    <title>Error</title>\n  ' ..
                       '</head>\n  <body>\n    <h1>Error</h1>\n    <p>%s.' ..
                       '</p>\n  </body>\n</html>\n', escape_markup(message)))
    elseif kind == "xml" then
        return (format('<?xml version="1.0" encoding="UTF-8"?>\n<error>\n' ..
                       '  <message>%s</message>\n</error>\n',
                       escape_markup(message)))
    end
    return message .. "\n"
end

--- Answer with an error: status 400..599, Kong's default message for the
-- status unless given, in the format the client's Accept asks for (JSON
-- by default: {"message": "..."}).  Does not return.
function _M.error(status, message, headers)
    local ctx = check(EXIT)
    if type(status) ~= "number" then
        error("code must be a number", 2)
    elseif status < 400 or status > 599 then
        error("code must be a number between 400 and 599", 2)
    end
    if message ~= nil and type(message) ~= "string" then
        if type(message) == "table" then
            message = P.json.encode(message)
        else
            error("message must be a nil or a string", 2)
        end
    end
    if headers ~= nil then
        P.validate_headers(headers)
    end
    message = message or P.ERROR_MESSAGES[status] or
              ("The upstream server responded with " .. status)
    local kind
    local ct = headers and (headers["Content-Type"] or headers["content-type"])
    if type(ct) == "table" then
        ct = ct[1]
    end
    if ct then
        kind = negotiate(ct)
    else
        kind = negotiate(P.first(P.req_headers(ctx),
                                 P.mods(ctx, "req_mods"), "accept"))
        local h = {}
        for k, v in pairs(headers or {}) do
            h[k] = v
        end
        h["Content-Type"] = ERROR_CT[kind]
        headers = h
    end
    send(ctx, status, error_body(kind, message), headers, 3)
end

-- body_filter -------------------------------------------------------------

--- response: the whole buffered body (as set_raw_body left it).
-- body_filter: the whole body once its last chunk went through (the
-- earlier chunks are held back: they are replaced by ""), nil before.
function _M.get_raw_body()
    local ctx = check(BODY)
    if ctx.phase == "response" then
        return ctx.resp_body        -- the whole buffered body
    end
    local chunk, eof = ctx.chunk, ctx.eof
    local buf = ctx.body_buffer
    if eof and not buf then
        return chunk or ""
    end
    if type(chunk) == "string" and chunk ~= "" then
        if not buf then
            buf = {}
            ctx.body_buffer = buf
        end
        buf[#buf + 1] = chunk
    end
    if eof then
        return (table.concat(buf or {}))
    end
    ctx.chunk = ""
    ctx.chunk_changed = true
    return nil
end

--- response: replace the buffered body sent to the client.
-- body_filter: replace the body (the current chunk becomes `body`, and
-- it is the last one).
function _M.set_raw_body(body)
    local ctx = check(BODY)
    if type(body) ~= "string" then
        error("body must be a string", 2)
    end
    if ctx.phase == "response" then
        -- the body sent after the response phase (Content-Length follows)
        if C.mg_lua_resp_set_chunk(ctx.r, body, #body) ~= OK then
            error(P.last_error(), 2)
        end
        ctx.resp_body = body
        return
    end
    ctx.chunk = body
    ctx.eof = true
    ctx.chunk_changed = true
end

-- used by ngx.header / ngx.status
_M.set_value = set_value
_M.set_one = set_one
_M.GET, _M.SET = GET, SET

return _M
