-- kong.configuration -- a read-only view of the node's properties (the
-- `configuration` object of the runloop's init document: moongate.conf
-- after defaults and MOONGATE_* overrides).  Values whose name says they
-- are secrets (password, secret, token, ...) read as "******"; writing a
-- field raises, as in Kong.
--
-- Rejected: handing plugins the init table itself -- they could change
-- what other plugins see.

local _M = {}

local SECRET = { "password", "secret", "token", "_key_data", "api_key",
                 "credentials" }

local function is_secret(k)
    if type(k) ~= "string" then
        return false
    end
    local lk = k:lower()
    for _, s in ipairs(SECRET) do
        if lk:find(s, 1, true) then
            return true
        end
    end
    return false
end

local function readonly(t, path)
    local proxy = {}
    return setmetatable(proxy, {
        __index = function(_, k)
            local v = t[k]
            if v == nil then
                return nil
            end
            if is_secret(k) then
                return "******"
            end
            if type(v) == "table" then
                return readonly(v, path .. "." .. tostring(k))
            end
            return v
        end,
        __newindex = function()
            error("cannot write to configuration", 2)
        end,
        -- pairs() under LuaJIT with 5.2 compat; plain Lua 5.1 ignores it
        __pairs = function()
            return function(_, k)
                local nk, nv = next(t, k)
                if nk ~= nil and is_secret(nk) then
                    nv = "******"
                end
                return nk, nv
            end, proxy, nil
        end,
    })
end

--- The view of `props` (a table; copied, so later changes to it do not
-- leak in).
function _M.new(props)
    local function copy(v)
        if type(v) ~= "table" then
            return v
        end
        local c = {}
        for k, x in pairs(v) do
            c[k] = copy(x)
        end
        return c
    end
    return readonly(copy(props or {}), "kong.configuration")
end

_M.is_secret = is_secret

return _M
