-- kong.client -- who sent the request: address, port, and the consumer
-- and credential an authentication plugin identified (Kong 3.x PDK).
--
-- The consumer and credential live in ngx.ctx (authenticated_consumer,
-- authenticated_credential) where Kong keeps them, so plugins that read
-- ngx.ctx directly keep working; the runloop's plugin iterator reads the
-- consumer id from there to pick consumer-scoped plugin configs for the
-- plugins that run after the authenticating one.  Consumers come from the
-- config snapshot (the runloop's init document), indexed by id and by
-- username.

local context = require "moongate.context"
local phases = require "moongate.phases"
local api = require "moongate.ffi"
local P = require "moongate.pdk.private"
local request = require "moongate.pdk.request"

local C = api.C
local check = phases.check
local type = type
local error = error
local match = string.match
local lower = string.lower

local _M = {}

local ADDR = phases.new("certificate", "rewrite", "access", "balancer",
                        "header_filter", "response", "body_filter", "log")
local AUTH = phases.new("access", "header_filter", "response",
                        "body_filter", "log")
local AUTHENTICATE = phases.new("rewrite", "access")

local by_id, by_username = {}, {}
local real_ip_header = "x-real-ip"

--- Install the consumers of a config snapshot and the real-IP header
-- name (Kong's real_ip_header property, default X-Real-IP).
function _M.configure(consumers, header)
    local id, un = {}, {}
    for _, c in ipairs(consumers or {}) do
        if type(c) == "table" and type(c.id) == "string" then
            id[c.id] = c
            if type(c.username) == "string" then
                un[c.username] = c
            end
        end
    end
    by_id, by_username = id, un
    if type(header) == "string" and header ~= "" then
        real_ip_header = lower(header)
    end
end

--- The address of the peer that connected (a proxy, maybe).
function _M.get_ip()
    local ctx = check(ADDR)
    return request.client_ip(ctx)
end

--- The client's address as a trusted proxy reports it (the real-IP
-- header: X-Real-IP by default, or the last X-Forwarded-For hop), else
-- the peer's.
function _M.get_forwarded_ip()
    local ctx = check(ADDR)
    local peer = request.client_ip(ctx)
    if request.trusted(ctx) then
        local v = P.first(P.req_headers(ctx), P.mods(ctx, "req_mods"),
                          real_ip_header)
        if v then
            if real_ip_header == "x-forwarded-for" then
                v = match(v, "([^,%s]+)%s*$")
            else
                v = match(v, "^%s*(.-)%s*$")
            end
            if v and v ~= "" then
                return v
            end
        end
    end
    return peer
end

function _M.get_port()
    local ctx = check(ADDR)
    return (C.mg_lua_req_client_port(ctx.r))
end

function _M.get_forwarded_port()
    local ctx = check(ADDR)
    return (C.mg_lua_req_client_port(ctx.r))
end

--- "http" or "https" (allow_terminated: trust X-Forwarded-Proto from a
-- trusted proxy).
function _M.get_protocol(allow_terminated)
    check(AUTH)
    if allow_terminated ~= nil and type(allow_terminated) ~= "boolean" then
        error("allow_terminated must be a boolean", 2)
    end
    if allow_terminated then
        return request.get_forwarded_scheme()
    end
    return request.get_scheme()
end

function _M.get_consumer()
    local ctx = check(AUTH)
    return context.ngx_ctx(ctx).authenticated_consumer
end

function _M.get_credential()
    local ctx = check(AUTH)
    return context.ngx_ctx(ctx).authenticated_credential
end

--- Set the authenticated consumer and credential of this request; the
-- plugins that run after this one see consumer-scoped configs.
function _M.authenticate(consumer, credential)
    local ctx = check(AUTHENTICATE)
    if consumer ~= nil and type(consumer) ~= "table" then
        error("consumer must be a table or nil", 2)
    elseif credential ~= nil and type(credential) ~= "table" then
        error("credential must be a table or nil", 2)
    elseif consumer == nil and credential == nil then
        error("either credential or consumer must be provided", 2)
    end
    local nctx = context.ngx_ctx(ctx)
    nctx.authenticated_consumer = consumer
    nctx.authenticated_credential = credential
end

--- The consumer with this id (or, with search_by_username, this
-- username); nil when there is none.
function _M.load_consumer(consumer_id, search_by_username)
    check(AUTH)
    if type(consumer_id) ~= "string" then
        error("consumer_id must be a string", 2)
    end
    local c = by_id[consumer_id]
    if not c and search_by_username then
        c = by_username[consumer_id]
    end
    return c
end

--- Used by the runloop (kong.log.serialize, the plugin iterator).
_M.find = function(id)
    return by_id[id]
end

return _M
