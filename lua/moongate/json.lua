-- moongate.json -- the JSON encoder of the Admin API's bodies and of the
-- rows the entity store keeps: empty arrays written as [] where marked,
-- and object keys in a stable (sorted) order.
--
-- The store writes rows with it rather than with cjson.encode for the
-- sorted keys: with cjson's table order -- which follows LuaJIT's seeded
-- string hashes -- 10,000 similar rows made long collision chains in
-- LuaJIT's string table in about one process in four (an import of
-- 10,000 routes took 1.9 s instead of 0.6 s, mostly in memcmp); sorted,
-- the rows differ where LuaJIT's sparse hash samples them, every run.
--
-- Kong runs on OpenResty's cjson, whose `array_mt` makes `"data": []` and
-- `"paths": []` come out as arrays; the Debian lua-cjson this build links
-- has none, and `{}` would turn every empty list into an object -- which
-- breaks deck, the Terraform provider and any client that indexes `data`.
-- So arrays are marked: `array(t)` for lists built here, `mark(schema,
-- row)` for entity fields whose schema says array or set.  Unmarked tables
-- whose keys are exactly 1..n are arrays too.  Scalars go through cjson
-- (number formatting, string escaping); object keys are sorted so bodies
-- (and the docs' examples) are stable.
--
-- An import encodes every row, so: a row is written in its schema's key
-- order (`key_order`, made once per DAO), which is what sorting its keys
-- gives, without the sort; an object's string keys sort without a Lua
-- comparator; the pieces of a text go to one reused table and one concat.
--
-- Rejected: setting cjson.encode_empty_table_as_object(false) -- it makes
-- every empty object (`config: {}`, `headers: {}`) an array instead.

local cjson = require "cjson.safe"

local type = type
local pairs = pairs
local next = next
local ipairs = ipairs
local tostring = tostring
local getmetatable = getmetatable
local setmetatable = setmetatable
local rawget = rawget
local floor = math.floor
local huge = math.huge
local sort = table.sort
local concat = table.concat
local gsub = string.gsub
local find = string.find
local format = string.format

local _M = {}

local null = cjson.null
_M.null = null

-- OpenResty's marker when there is one, so tables marked elsewhere count
local array_mt = cjson.array_mt or {}
_M.array_mt = array_mt

--- Mark t (default: a new table) as a JSON array; returns t.
function _M.array(t)
    return setmetatable(t or {}, array_mt)
end

local function is_array(t)
    if getmetatable(t) == array_mt then
        return true
    end
    local n = 0
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k ~= floor(k) then
            return false
        end
        n = n + 1
    end
    return n > 0 and n == #t
end

-- a string that needs escaping: cjson's escapes, but "/" left alone
-- (cjson writes "\/"; Kong's bodies -- and curl users -- do not)
local function escape_string(s)
    return (gsub(cjson.encode(s), "\\/", "/"))
end

local function encode_string(s)
    -- most strings need no escape at all: quoted as they are (what cjson
    -- would write for them), without a call into cjson
    if not find(s, '[%c"\\]') then
        return '"' .. s .. '"'
    end
    return escape_string(s)
end

-- object keys repeat from row to row: each is written once as `"key":`
-- (bounded: keys of user maps, such as header names in a plugin's
-- config, must not grow it without end)
local key_cache, key_cached = {}, 0
local function encode_key(k)
    local e = key_cache[k]
    if e == nil then
        e = encode_string(tostring(k)) .. ":"
        if key_cached < 4096 and type(k) == "string" and #k <= 64 then
            key_cache[k] = e
            key_cached = key_cached + 1
        end
    end
    return e
end

local function key_order(a, b)
    return tostring(a) < tostring(b)
end

-- Append v's JSON to out after piece n; returns the new piece count.
-- Pieces are left for one concat: a plain string goes in as '"', s, '"',
-- so encoding a row makes no new string but the row's own -- thousands
-- of similar short-lived strings are what LuaJIT's string table handles
-- worst (see the header).
local function encode(v, out, n, depth)
    local t = type(v)
    if t == "string" then
        if not find(v, '[%c"\\]') then
            out[n + 1] = '"'
            out[n + 2] = v
            out[n + 3] = '"'
            return n + 3
        end
        out[n + 1] = escape_string(v)
        return n + 1
    elseif t == "number" then
        if v ~= v or v == huge or v == -huge then
            out[n + 1] = "null"
        elseif v == floor(v) and v > -2^53 and v < 2^53 then
            out[n + 1] = format("%d", v)
        else
            out[n + 1] = format("%.17g", v)
        end
        return n + 1
    elseif t == "boolean" then
        out[n + 1] = v and "true" or "false"
        return n + 1
    elseif t ~= "table" then
        -- nil inside arrays, cjson.null, functions: null
        out[n + 1] = "null"
        return n + 1
    end
    if depth > 100 then
        error("cannot encode: nested too deeply", 0)
    end
    if is_array(v) then
        n = n + 1
        out[n] = "["
        for i = 1, #v do
            if i > 1 then
                n = n + 1
                out[n] = ","
            end
            n = encode(v[i], out, n, depth + 1)
        end
        n = n + 1
        out[n] = "]"
        return n
    end
    local keys, nk, plain = {}, 0, true
    for k in pairs(v) do
        nk = nk + 1
        keys[nk] = k
        if plain and type(k) ~= "string" then
            plain = false
        end
    end
    -- string keys sort the same with `<` as with tostring: no callback
    -- into Lua per comparison
    if plain then
        sort(keys)
    else
        sort(keys, key_order)
    end
    n = n + 1
    out[n] = "{"
    for i = 1, nk do
        local k = keys[i]
        if i > 1 then
            n = n + 1
            out[n] = ","
        end
        n = n + 1
        out[n] = encode_key(k)
        n = encode(v[k], out, n, depth + 1)
    end
    n = n + 1
    out[n] = "}"
    return n
end

-- v (an object) by a key order: the keys `order` lists that v holds, in
-- that order -- what sorting v's keys gives when they are all in the
-- list; anything else (v an array, a key the list lacks) the generic way
local function encode_ordered(v, order, out, n)
    if type(v) ~= "table" or is_array(v) then
        return encode(v, out, n, 0)
    end
    local known = order.known
    for k in pairs(v) do
        if not known[k] then
            return encode(v, out, n, 0)
        end
    end
    n = n + 1
    out[n] = "{"
    local first = true
    for i = 1, #order do
        local k = order[i]
        local x = rawget(v, k)
        if x ~= nil then
            if first then
                first = false
            else
                n = n + 1
                out[n] = ","
            end
            n = n + 1
            out[n] = encode_key(k)
            n = encode(x, out, n, 1)
        end
    end
    n = n + 1
    out[n] = "}"
    return n
end

--- A key order for encode: names, any order, strings; returns a value
-- to pass to encode for objects whose keys come from that list (a row
-- of one schema), which then need no sorting of their own.
function _M.key_order(names)
    local order, known = {}, {}
    for _, k in ipairs(names) do
        if type(k) ~= "string" then
            error("key_order: names must be strings", 2)
        end
        if not known[k] then
            known[k] = true
            order[#order + 1] = k
        end
    end
    sort(order)
    order.known = known
    return order
end

-- the pieces of the last encoding, reused: a row's hundred pieces made a
-- new table (grown five times) per row, most of an import's garbage.  Not
-- kept when it grew large (one big body must not stay in memory).
local scratch = {}

--- Encode v; returns the JSON text, or nil and a message.  order (from
-- key_order) is optional: with it, an object v whose keys are all in it
-- is written in its order -- the same text, without the sort.
function _M.encode(v, order)
    local out = scratch or {}
    scratch = nil
    local ok, n
    if order then
        ok, n = pcall(encode_ordered, v, order, out, 0)
    else
        ok, n = pcall(encode, v, out, 0, 0)
    end
    if not ok then
        return nil, tostring(n)
    end
    local s = concat(out, "", 1, n)
    if n <= 1024 then
        scratch = out
    end
    return s
end

--- Decode a JSON text (cjson.safe): value, or nil and a message.
function _M.decode(s)
    return cjson.decode(s)
end

-- fields of a schema or of a record field, as (name, field) pairs
local function each(fields)
    local i = 0
    return function()
        while true do
            i = i + 1
            local item = fields[i]
            if item == nil then
                return nil
            end
            if type(item) == "table" then
                local name, f = next(item)
                if name ~= nil and type(f) == "table" then
                    return name, f
                end
            end
        end
    end
end
_M.each_field = each

local mark_value

local function mark_record(fields, row)
    if type(fields) ~= "table" or type(row) ~= "table" then
        return
    end
    for name, field in each(fields) do
        local v = row[name]
        if v ~= nil then
            mark_value(field, v)
        end
    end
end

mark_value = function(field, v)
    if type(v) ~= "table" or v == null then
        return
    end
    local ft = field.type
    if ft == "array" or ft == "set" then
        _M.array(v)
        local el = field.elements
        if type(el) == "table" and el.type == "record" then
            for _, item in ipairs(v) do
                mark_record(el.fields, item)
            end
        end
    elseif ft == "record" then
        mark_record(field.fields, v)
    elseif ft == "map" then
        local el = field.values
        if type(el) == "table" then
            for _, item in pairs(v) do
                mark_value(el, item)
            end
        end
    end
end

--- Mark the array and set fields of row (and of its records) as arrays,
-- following schema (an object with `fields`); returns row.
function _M.mark(schema, row)
    if schema and type(row) == "table" then
        mark_record(schema.fields, row)
    end
    return row
end

return _M
