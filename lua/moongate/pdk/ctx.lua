-- kong.ctx -- per-request tables: kong.ctx.shared (every plugin of the
-- request) and kong.ctx.plugin (one per plugin, private to it).
--
-- Both live in the runloop's request state (moongate.context.current), so
-- they are created on the request's first phase and dropped with it by
-- runloop.finish.  kong.ctx itself is a proxy: reading a field resolves it
-- against the running request and plugin.

local context = require "moongate.context"

local error = error
local setmetatable = setmetatable

local _M = {}

return setmetatable(_M, {
    __index = function(_, k)
        if k == "shared" then
            local ctx = context.current
            if not ctx then
                error("kong.ctx.shared is only available while a request " ..
                      "or a plugin phase runs", 2)
            end
            local shared = ctx.shared
            if not shared then          -- created on first use
                shared = {}
                ctx.shared = shared
            end
            return shared
        elseif k == "plugin" then
            local ctx = context.current
            if not ctx or not ctx.plugin_name then
                error("kong.ctx.plugin is only available while a plugin " ..
                      "runs", 2)
            end
            local pc = ctx.plugin_ctx
            if not pc then
                pc = {}
                ctx.plugin_ctx = pc
            end
            local t = pc[ctx.plugin_name]
            if not t then
                t = {}
                pc[ctx.plugin_name] = t
            end
            return t
        end
        return nil
    end,
    __newindex = function(_, k)
        error("kong.ctx." .. tostring(k) .. " cannot be assigned", 2)
    end,
})
