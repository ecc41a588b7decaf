-- moongate.phases -- the phase list and the PDK's phase check.
--
-- The list is declared once, in C (the MG_LUA_PHASES X-macro of
-- core/lua/mg_lua_api.h); it is read here through mg_lua_phase_name /
-- mg_lua_phase_bit at load time, never retyped.  A PDK function builds its
-- mask once with `phases.new("rewrite", "access", ...)` and calls
-- `phases.check(mask)` first thing; outside any phase (module load,
-- `init`) the current bit is 0 and every check fails.  Names of phases
-- the core does not have (Kong's admin_api, error, preread...) are
-- accepted and ignored, so PDK code can list Kong's phases verbatim.
--
-- Semantics of Kong's kong/pdk/private/phases.lua `check_phase`: the error
-- names the current phase and every allowed one, in the core's order.
--
-- Rejected: a string set per function (`allowed[phase]`): the bitmask is
-- one AND per call and the error message is built only on failure.

local api = require "moongate.ffi"
local bit = require "moongate.bit"
local context = require "moongate.context"

local C = api.C
local band = bit.band
local bor = bit.bor
local concat = table.concat
local error = error
local format = string.format

local _M = {
    list = {},      -- { "init_worker", "configure", ... } in the core's order
    bits = {},      -- name -> bit
    names = {},     -- bit -> name
}

for i = 0, 63 do
    local name = api.cstr(C.mg_lua_phase_name(i))
    if not name then
        break
    end
    local b = C.mg_lua_phase_bit(i)
    _M.list[#_M.list + 1] = name
    _M.bits[name] = b
    _M.names[b] = name
end

--- The mask of every phase that carries a request.
_M.REQUEST = 0
for _, name in ipairs { "rewrite", "access", "balancer", "response",
                        "header_filter", "body_filter", "log" } do
    _M.REQUEST = bor(_M.REQUEST, _M.bits[name] or 0)
end

--- A mask from phase names (unknown names count for nothing).
function _M.new(...)
    local mask = 0
    for i = 1, select("#", ...) do
        mask = bor(mask, _M.bits[select(i, ...)] or 0)
    end
    return mask
end

local mask_names = {}   -- mask -> "a, b, c"

local function names_of(mask)
    local s = mask_names[mask]
    if not s then
        local list = {}
        for _, name in ipairs(_M.list) do
            if band(mask, _M.bits[name]) ~= 0 then
                list[#list + 1] = name
            end
        end
        s = concat(list, ", ")
        mask_names[mask] = s
    end
    return s
end
_M.names_of = names_of

--- The current phase's name: "init" outside any phase.
function _M.current()
    local ctx = context.current
    return ctx and ctx.phase or "init"
end

--- Raise Kong's phase error unless the current phase is in `mask`.  The
-- error points at the caller of the PDK function (level 3).
function _M.check(mask)
    local ctx = context.current
    if ctx and band(ctx.phase_bit, mask) ~= 0 then
        return ctx
    end
    error(format("function cannot be called in %s phase (only in: %s)",
                 ctx and ctx.phase or "init", names_of(mask)), 3)
end

--- Is the current phase in `mask`? (no error)
function _M.is(mask)
    local ctx = context.current
    return ctx ~= nil and band(ctx.phase_bit, mask) ~= 0
end

return _M
