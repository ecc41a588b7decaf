-- moongate.admin.router -- the Admin API's path table: patterns such as
-- "/services/:services/routes" with one handler per method.
--
-- Matching is by segments: a literal segment must be equal, a `:name`
-- segment takes any non-empty value (URL-decoded into params.name).  When
-- several patterns match, the one whose first differing segment is a
-- literal wins ("/schemas/plugins/validate" over "/schemas/:name/validate",
-- "/plugins/enabled" over "/plugins/:plugins"), as lapis orders Kong's
-- routes.  Adding a pattern twice merges its methods (the later wins), so
-- hand-written endpoints can replace generated ones method by method.
--
-- Rejected: one Lua pattern per route -- the precedence rule above would
-- then depend on insertion order.

local codec = require "moongate.codec"

local type = type
local pairs = pairs
local ipairs = ipairs
local setmetatable = setmetatable
local sub = string.sub
local gmatch = string.gmatch
local gsub = string.gsub
local sort = table.sort

local _M = {}
local R = {}
R.__index = R

function _M.new()
    return setmetatable({ list = {}, by = {} }, R)
end

local function split(path)
    local segs = {}
    for s in gmatch(path, "[^/]+") do
        segs[#segs + 1] = s
    end
    return segs
end

--- Add (or extend) pattern with handlers { GET = fn, ... } and the schema
-- its bodies follow (may be nil).
function R:add(pattern, handlers, schema)
    local route = self.by[pattern]
    if not route then
        route = { pattern = pattern, segs = {}, methods = {}, schema = schema }
        for i, s in ipairs(split(pattern)) do
            if sub(s, 1, 1) == ":" then
                route.segs[i] = { param = sub(s, 2) }
            else
                route.segs[i] = { lit = s }
            end
        end
        self.by[pattern] = route
        self.list[#self.list + 1] = route
    end
    for m, fn in pairs(handlers) do
        route.methods[m] = fn
    end
    if schema and not route.schema then
        route.schema = schema
    end
    return route
end

--- Remove pattern (Kong's endpoints.disable: the path answers 404).
function R:remove(pattern)
    local route = self.by[pattern]
    if route then
        self.by[pattern] = nil
        for i, r in ipairs(self.list) do
            if r == route then
                table.remove(self.list, i)
                break
            end
        end
    end
end

-- does a beat b (both matched)? the first differing kind decides
local function better(a, b)
    for i = 1, #a.segs do
        local la, lb = a.segs[i].lit ~= nil, b.segs[i].lit ~= nil
        if la ~= lb then
            return la
        end
    end
    return false
end

--- The route for path, and its params; nil when no pattern matches.
function R:match(path)
    local segs = split(path)
    local best
    for _, route in ipairs(self.list) do
        if #route.segs == #segs then
            local ok = true
            for i, s in ipairs(route.segs) do
                if s.lit and s.lit ~= segs[i] then
                    ok = false
                    break
                end
            end
            if ok and (not best or better(route, best)) then
                best = route
            end
        end
    end
    if not best then
        return nil
    end
    local params = {}
    for i, s in ipairs(best.segs) do
        if s.param then
            params[s.param] = codec.unescape_uri(segs[i])
        end
    end
    return best, params
end

--- Every pattern as Kong's /endpoints lists it ("/services/{services}"),
-- sorted segment by segment.
function R:patterns()
    local out = {}
    for _, route in ipairs(self.list) do
        out[#out + 1] = (gsub(route.pattern, ":([^/]+)", "{%1}"))
    end
    sort(out, function(a, b)
        return gsub(a, "/", "\0") < gsub(b, "/", "\0")
    end)
    return out
end

return _M
