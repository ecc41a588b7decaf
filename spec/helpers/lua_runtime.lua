-- spec/helpers/lua_runtime.lua -- drive the Lua plugin runtime the way
-- the core does, over the pure-Lua fake of the FFI API
-- (moongate.ffi_fake), for unit specs on plain Lua 5.1.
--
--   local H = require "lua_runtime"
--   H.init { plugins = {...}, routes = {...} }  -> runloop.init's returns
--   local r = H.request { method = "POST", headers = {...} }
--   local res, msg, yields = H.phase("access", r, "req-1", 0)
--   H.in_phase("access", r, function(ctx) ... kong PDK calls ... end)
--
-- H.phase runs runloop.phase in a coroutine and resumes it each time it
-- yields, as the core's event loop would (counting the yields).  H.in_phase
-- runs a function as if it were a plugin handler of `phase` (the request
-- state installed, in a coroutine so PDK waits work), without plugins.

local cjson = require "cjson"

local H = {}

H.fake = require "moongate.ffi_fake"
H.runloop = require "moongate.runloop"
H.context = require "moongate.context"
H.phases = require "moongate.phases"

H.ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers/") or ".")

-- the fixture plugins resolve as plugin folders on the package path
local fixtures = H.ROOT .. "/spec/fixtures/plugins/?.lua"
if not package.path:find(fixtures, 1, true) then
    package.path = package.path .. ";" .. fixtures
end

H.ENABLED = "bundled,sleeper,exiter,crasher,headers,ctx-check"

--- runloop.init with a document (defaults filled); returns its results.
function H.init(doc)
    doc = doc or {}
    doc.plugins = doc.plugins or {}
    doc.routes = doc.routes or {}
    doc.services = doc.services or {}
    doc.consumers = doc.consumers or {}
    doc.enabled_plugins = doc.enabled_plugins or H.ENABLED
    doc.trusted_ips = doc.trusted_ips or {}
    doc.configuration = doc.configuration or { log_level = "debug" }
    local json = cjson.encode(doc)
    -- cjson encodes empty tables as objects; the runloop accepts both
    return H.runloop.init(json)
end

--- A fake request (see moongate.ffi_fake.request).
function H.request(o)
    return H.fake.request(o)
end

local seq = 0

--- Run phase `name` as the core does; returns result, message, yields.
function H.phase(name, r, req_id, route_index, ...)
    local co = coroutine.create(H.runloop.phase)
    local res = { coroutine.resume(co, name, r, req_id, route_index, ...) }
    local yields = 0
    while coroutine.status(co) == "suspended" do
        yields = yields + 1
        res = { coroutine.resume(co) }
    end
    if not res[1] then
        error(res[2], 0)
    end
    return res[2], res[3], yields
end

--- Run fn(ctx) as a plugin handler of `phase` for request r; returns what
-- fn returns; raises what fn raises (the exit sentinel included).
function H.in_phase(phase, r, fn, ctx)
    seq = seq + 1
    ctx = ctx or {}
    ctx.r = r
    ctx.req_id = ctx.req_id or ("in-phase-" .. seq)
    ctx.phase = phase
    ctx.phase_bit = H.phases.bits[phase] or 0
    ctx.shared = ctx.shared or {}
    ctx.plugin_ctx = ctx.plugin_ctx or {}
    ctx.ngx_ctx = ctx.ngx_ctx or {}
    ctx.confs = ctx.confs or {}
    ctx.times = ctx.times or {}
    ctx.plugin_name = ctx.plugin_name or "test-plugin"
    local co = coroutine.create(function()
        H.context.current = ctx
        return fn(ctx)
    end)
    local res = { coroutine.resume(co) }
    local yields = 0
    while coroutine.status(co) == "suspended" do
        yields = yields + 1
        res = { coroutine.resume(co) }
    end
    H.context.current = nil
    H.last_yields = yields
    if not res[1] then
        error(res[2], 0)
    end
    return unpack(res, 2, table.maxn(res))
end

--- The error fn raises as a string (or the value itself if not one).
function H.error_of(fn)
    local ok, err = pcall(fn)
    if ok then
        return nil
    end
    return err
end

--- Install the globals (kong, ngx) with an empty config.
function H.setup(doc)
    H.runloop.reset()
    H.fake.reset()
    local ok, err = H.init(doc or {})
    assert(ok, err)
    return kong, ngx
end

return H
