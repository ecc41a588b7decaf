-- moongate.context -- which request the running Lua code belongs to, and
-- how PDK calls wait.
--
-- `_M.current` is the per-request state table of the request whose phase
-- is running (nil outside any phase).  The runloop sets it when it enters
-- a phase and clears it when the phase ends.  Phases of different
-- requests interleave when one waits, and the core resumes a coroutine
-- with lua_resume, without passing through Lua first: so every yield goes
-- through `_M.wait()`, which puts the waiting request back into `current`
-- as soon as it is resumed.  A yield that bypasses it (a plugin calling
-- coroutine.yield in the request coroutine itself) is a plugin bug.
--
-- Per-request state (built by the runloop):
--   { r, req_id, phase, phase_bit, route_index, cfg, shared, plugin_ctx,
--     ngx_ctx, plugin (running plugin entry), consumer, credential, ... }
-- ngx_ctx (ngx.ctx) is false until first used: _M.ngx_ctx makes it.
--
-- Rejected: looking the request up by coroutine.running() on every PDK
-- call -- plugins that wrap their own coroutines (iterators) would lose it.

local yield = coroutine.yield
local running = coroutine.running
local error = error
local setmetatable = setmetatable

local _M = {
    current = nil,
    timers = {},        -- ngx.timer callbacks by id (see ngx.timer.at)
    timer_id = 0,
}

--- ngx.ctx of a request's (or a timer's) state `ctx`, made at first use
-- with Kong's route and service: most requests never touch it.
function _M.ngx_ctx(ctx)
    local t = ctx.ngx_ctx
    if not t then
        t = { route = ctx.route, service = ctx.service }
        ctx.ngx_ctx = t
    end
    return t
end

--- The error value kong.response.exit raises to end the phase: the
-- runloop's xpcall handler recognises it and the phase returns "exit".
_M.EXIT = setmetatable({}, {
    __tostring = function() return "kong.response.exit" end,
})

--- What ngx.exit(ngx.OK) (and ngx.exit in a filter phase) raises: the
-- running handler ends, the phase goes on with the next plugin.
_M.QUIT = setmetatable({}, {
    __tostring = function() return "ngx.exit" end,
})

--- The current request's state, or an error naming `what` when no request
-- is running.
function _M.request(what)
    local ctx = _M.current
    if not ctx or not ctx.r then
        error((what or "this function") .. " needs a request; none is " ..
              "running", 3)
    end
    return ctx
end

--- Yield the request's coroutine after a core call returned MG_AGAIN; the
-- core resumes it when the event fired.  Restores `current`.
function _M.wait(what)
    local ctx = _M.current
    if not ctx or not (ctx.r or ctx.timer) or running() == nil then
        error((what or "this function") .. " can only wait inside a " ..
              "request phase", 3)
    end
    yield()
    _M.current = ctx
    return ctx
end

return _M
