-- moongate.schema.validators -- the per-field rules of Kong's schema DSL
-- (`between`, `one_of`, `match`, `len_min`, `uuid`, `is_regex`, ...), the
-- order they run in, and the two values every part of the DSL shares: null
-- and the vault-reference test.
--
-- Stateless but for what is worked out once per schema table (a field's
-- validator plan, a subsets argument's owner map: an import validates
-- thousands of entities against the same fields); `moongate.schema` runs
-- the rules after the type check, in `order`, and reports the first
-- failure (or the field's `err`).  A rule returns true, or nil and a
-- message; a nil message falls back to Kong's text for the rule name.
-- Rules skip values of a type they do not apply to, where Kong would
-- raise on a schema that mixes them up.
--
-- Rejected: running `match` and friends on PCRE.  Kong's schema patterns
-- are Lua patterns, and plugins written for Kong rely on that.

local errors = require "moongate.schema.errors"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local setmetatable = setmetatable
local rawget = rawget
local require = require
local find = string.find
local sub = string.sub
local byte = string.byte
local format = string.format
local concat = table.concat

local MSG = errors.messages
local quoted_list = errors.quoted_list
local num = errors.num

local _M = {}

-- Kong's null is ngx.null; lua-cjson decodes JSON null to the same
-- lightuserdata (NULL), so one comparison covers both.
local null
do
    local ok, cjson = pcall(require, "cjson")
    null = (ngx and ngx.null) or (ok and cjson.null) or
           setmetatable({}, { __tostring = function() return "null" end })
end
_M.null = null

--- Kong's vault reference test: "{vault://<name>/<resource>...}".
-- @return true when `s` looks like a reference (resolution is the
-- runtime's job: kong.vault).
function _M.is_reference(s)
    return type(s) == "string"
        and byte(s, 1) == 123   -- {
        and byte(s, -1) == 125  -- }
        and byte(s, 7) == 58    -- :
        and byte(s, 8) == 47    -- /
        and byte(s, 9) == 47    -- /
        and sub(s, 2, 6) == "vault"
end

local function str_list(options)
    local out = {}
    for i = 1, #options do
        out[i] = tostring(options[i])
    end
    return concat(out, ", ")
end

-- is_regex: PCRE through ngx.re when the runtime provides it; outside it
-- (busted, `moongate check` before the VM exists) a syntax scan that
-- catches what PCRE rejects in practice: unbalanced groups and classes,
-- a trailing backslash, quantifiers with nothing to repeat, {m,n} with m>n.
local function regex_syntax_ok(re)
    local i, n, depth = 1, #re, 0
    local can_repeat = false   -- an atom precedes
    local quantified = false   -- a quantifier just closed
    while i <= n do
        local c = sub(re, i, i)
        if c == "\\" then
            if i == n then
                return false
            end
            i = i + 2
            can_repeat, quantified = true, false
        elseif c == "[" then
            local j = i + 1
            if sub(re, j, j) == "^" then
                j = j + 1
            end
            if sub(re, j, j) == "]" then
                j = j + 1
            end
            while j <= n and sub(re, j, j) ~= "]" do
                if sub(re, j, j) == "\\" then
                    j = j + 1
                elseif sub(re, j, j + 1) == "[:" then
                    local e = find(re, ":]", j + 2, true)
                    if e then
                        j = e + 1
                    end
                end
                j = j + 1
            end
            if j > n then
                return false
            end
            i = j + 1
            can_repeat, quantified = true, false
        elseif c == "(" then
            depth = depth + 1
            i = i + 1
            if sub(re, i, i) == "?" then
                -- (?:  (?=  (?!  (?<=  (?<!  (?<name>  (?P<name>  (?i)
                local rest = sub(re, i + 1)
                local skip = rest:match("^[:=!>|]") or rest:match("^<[=!]")
                    or rest:match("^P?<[%a_][%w_]*>")
                    or rest:match("^'[%a_][%w_]*'")
                    or rest:match("^[%a%-]+[:)]")
                if not skip then
                    return false
                end
                i = i + 1 + #skip
                if sub(skip, -1) == ")" then
                    depth = depth - 1
                end
            end
            can_repeat, quantified = false, false
        elseif c == ")" then
            depth = depth - 1
            if depth < 0 then
                return false
            end
            i = i + 1
            can_repeat, quantified = true, false
        elseif c == "|" then
            i = i + 1
            can_repeat, quantified = false, false
        elseif c == "*" or c == "+" or c == "?" then
            if quantified and (c == "?" or c == "+") then
                quantified = false          -- lazy / possessive suffix
                can_repeat = false
            elseif not can_repeat then
                return false
            else
                can_repeat, quantified = false, true
            end
            i = i + 1
        elseif c == "{" then
            local lo, hi, e = sub(re, i):match("^{(%d+)(,?%d*)}()")
            if lo then
                if not can_repeat then
                    return false
                end
                local h = hi:match("^,(%d+)$")
                if h and tonumber(h) < tonumber(lo) then
                    return false
                end
                i = i + e - 1
                can_repeat, quantified = false, true
            else
                i = i + 1                   -- a literal brace
                can_repeat, quantified = true, false
            end
        else
            i = i + 1
            can_repeat, quantified = true, false
        end
    end
    return depth == 0
end

-- The PCRE matcher: ngx.re's when its table really has one (rawget: the
-- placeholder moongate.ngx leaves without PCRE raises on any field), else
-- moongate.re when it loads (LuaJIT before ngx is installed), else none.
local re_module             -- moongate.re, or false once it failed to load

local function pcre_match()
    local g = rawget(_G, "ngx")
    local ngx_re = type(g) == "table" and rawget(g, "re")
    local m = type(ngx_re) == "table" and rawget(ngx_re, "match")
    if m then
        return m
    end
    if re_module == nil then
        local ok, re = pcall(require, "moongate.re")
        re_module = ok and re or false
    end
    return re_module and re_module.match or nil
end

local function regex_compiles(re)
    local m = pcre_match()
    if m then
        local _, err = m("any string", re)
        return err == nil
    end
    return regex_syntax_ok(re)
end
_M.regex_syntax_ok = regex_syntax_ok


-- the rules ---------------------------------------------------------------

local function length_of(value, field)
    if field.type == "map" then
        local n = 0
        for _ in pairs(value) do
            n = n + 1
        end
        return n
    end
    return #value
end

local function make_length_validator(key, test)
    return function(value, n, field)
        local tv = type(value)
        if tv ~= "string" and tv ~= "table" then
            return true
        end
        if test(length_of(value, field), n) then
            return true
        end
        return nil, format(MSG[key], n)
    end
end

local function is_str(v)
    return type(v) == "string"
end

local function is_num(v)
    return type(v) == "number"
end

local UUID_PATTERN = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
                     "%x%x%x%x%x%x%x%x%x%x%x%x$"

-- element -> its subset, per `mutually_exclusive_subsets` argument: built
-- once (a route's protocols are checked several times per entity); the
-- map refers to the subsets, not to the list, so the weak key lets a
-- dropped schema go
local owners = setmetatable({}, { __mode = "k" })

local function subset_owner(subsets)
    local owner = owners[subsets]
    if owner == nil then
        owner = {}
        for i = 1, #subsets do
            for _, el in ipairs(subsets[i]) do
                owner[el] = subsets[i]
            end
        end
        owners[subsets] = owner
    end
    return owner
end

-- Each validator: (value, argument, field) -> true | nil[, message].
-- A nil message falls back to MSG[NAME] (or "failed validating: %s").
_M.validators = {
    eq = function(value, wanted)
        if value == wanted then
            return true
        end
        return nil, format(MSG.EQ, wanted == null and "null"
                                   or tostring(wanted))
    end,

    ne = function(value, wanted)
        if value ~= wanted then
            return true
        end
        return nil, format(MSG.NE, wanted == null and "null"
                                   or tostring(value))
    end,

    not_one_of = function(value, options)
        for i = 1, #options do
            if value == options[i] then
                return nil, format(MSG.NOT_ONE_OF, str_list(options))
            end
        end
        return true
    end,

    one_of = function(value, options)
        for i = 1, #options do
            if value == options[i] then
                return true
            end
        end
        return nil, format(MSG.ONE_OF, str_list(options))
    end,

    gt = function(value, limit)
        if not is_num(value) or value > limit then
            return true
        end
        return nil, format(MSG.GT, num(limit))
    end,

    timestamp = function(value)
        if not is_num(value) then
            return true
        end
        return value > 0 or nil
    end,

    uuid = function(value)
        if not is_str(value) then
            return true
        end
        return (#value == 36 and find(value, UUID_PATTERN) ~= nil) or nil
    end,

    is_regex = function(value)
        if not is_str(value) then
            return true
        end
        return regex_compiles(value) or nil
    end,

    between = function(value, limits)
        if not is_num(value) then
            return true
        end
        if value < limits[1] or value > limits[2] then
            return nil, format(MSG.BETWEEN, num(limits[1]), num(limits[2]))
        end
        return true
    end,

    len_eq = make_length_validator("LEN_EQ", function(len, n)
        return len == n
    end),

    len_min = make_length_validator("LEN_MIN", function(len, n)
        return len >= n
    end),

    len_max = make_length_validator("LEN_MAX", function(len, n)
        return len <= n
    end),

    starts_with = function(value, prefix)
        if not is_str(value) or sub(value, 1, #prefix) == prefix then
            return true
        end
        return nil, format(MSG.STARTS_WITH, prefix)
    end,

    not_match = function(value, pattern)
        if is_str(value) and value:match(pattern) then
            return nil, format(MSG.NOT_MATCH, value)
        end
        return true
    end,

    match_none = function(value, list)
        if not is_str(value) then
            return true
        end
        for i = 1, #list do
            if value:match(list[i].pattern) then
                return nil, list[i].err
            end
        end
        return true
    end,

    match = function(value, pattern)
        if is_str(value) and not value:match(pattern) then
            return nil, format(MSG.MATCH, value)
        end
        return true
    end,

    match_all = function(value, list)
        if not is_str(value) then
            return true
        end
        for i = 1, #list do
            if not value:match(list[i].pattern) then
                return nil, list[i].err
            end
        end
        return true
    end,

    match_any = function(value, arg)
        if not is_str(value) then
            return true
        end
        local patterns = arg.patterns or {}
        for i = 1, #patterns do
            if value:match(patterns[i]) then
                return true
            end
        end
        return nil, arg.err
    end,

    contains = function(array, wanted)
        if type(array) ~= "table" then
            return true
        end
        for i = 1, #array do
            if array[i] == wanted then
                return true
            end
        end
        return nil, format(MSG.CONTAINS, tostring(wanted))
    end,

    custom_validator = function(value, fn)
        return fn(value)
    end,

    mutually_exclusive_subsets = function(value, subsets)
        if type(value) ~= "table" then
            return true
        end
        local owner = subset_owner(subsets)
        -- one pass without tables for the usual answer (one subset)
        local first
        for i = 1, #value do
            local s = owner[value[i]]
            if s and s ~= first then
                if first then
                    first = false
                    break
                end
                first = s
            end
        end
        if first ~= false then
            return true
        end
        local seen, members = {}, {}
        for i = 1, #value do
            local s = owner[value[i]]
            if s and not seen[s] then
                seen[s] = true
                members[#members + 1] = s
            end
        end
        return nil, format(MSG.MUTUALLY_EXCLUSIVE_SETS, quoted_list(members))
    end,
}

_M.order = {
    "eq", "ne", "not_one_of", "one_of",
    -- type-dependent
    "gt", "timestamp", "uuid", "is_regex", "between",
    -- strings (1/2)
    "len_eq", "len_min", "len_max",
    -- strings (2/2)
    "starts_with", "not_match", "match_none", "match", "match_all",
    "match_any",
    -- arrays
    "contains",
    -- other
    "custom_validator", "mutually_exclusive_subsets",
}

_M.UUID_PATTERN = UUID_PATTERN

-- Validator plans: for a field definition that belongs to a schema, the
-- names in `order` the field sets (len_min always: strings default it),
-- so validation looks up a handful of keys rather than every rule name
-- for every value.  Only registered fields have one -- a schema's own
-- (immutable once built) and the entity checks' views of them; a field
-- table built by a caller gets the full loop, so changing it between
-- two validations still counts.  A plan records the order it was made
-- from and is ignored once that list changes; it holds no reference to
-- its field (the weak key lets a dropped schema go).
local plans = setmetatable({}, { __mode = "k" })
_M.plans = plans

--- Register field's validator plan (see above); returns field.
function _M.register(field)
    local order = _M.order
    local plan = { order = order, n = #order }
    for i = 1, #order do
        local k = order[i]
        if k == "len_min" or field[k] ~= nil then
            plan[#plan + 1] = k
        end
    end
    plans[field] = plan
    return field
end

return _M
