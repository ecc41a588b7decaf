-- resty.http_headers -- the case-insensitive header table of
-- lua-resty-http: res.headers["content-type"] and
-- res.headers["Content-Type"] name the same entry; pairs() shows each
-- header once, under the spelling it was first set with.
--
-- The lower-case -> first-spelling map lives in the table's own
-- metatable (one per table), so the table itself holds only headers.
-- Rejected: lower-casing every key on the way in -- plugins that copy
-- the headers to the client would change their spelling.

local lower = string.lower
local rawget = rawget
local rawset = rawset
local setmetatable = setmetatable
local type = type

local _M = { _VERSION = "0.17.1" }

local function norm(k)
    if type(k) == "string" then
        return lower(k)
    end
    return k
end

function _M.new()
    local names = {}
    local mt = { normalised = names }

    mt.__index = function(t, k)
        local name = names[norm(k)]
        if name ~= nil then
            return rawget(t, name)
        end
        return nil
    end

    mt.__newindex = function(t, k, v)
        local lk = norm(k)
        local name = names[lk]
        if name == nil then
            if v == nil then
                return
            end
            names[lk] = k
            name = k
        elseif v == nil then
            names[lk] = nil
        end
        rawset(t, name, v)
    end

    return setmetatable({}, mt)
end

return _M
