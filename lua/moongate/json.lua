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

local function encode_string(s)
    -- most strings need no escape at all: quoted as they are (what cjson
    -- would write for them), without a call into cjson
    if not find(s, '[%c"\\]') then
        return '"' .. s .. '"'
    end
    -- cjson escapes "/" as "\/"; Kong's bodies (and curl users) do not
    return (gsub(cjson.encode(s), "\\/", "/"))
end

-- object keys repeat from row to row: each is escaped once
-- (bounded: keys of user maps, such as header names in a plugin's
-- config, must not grow it without end)
local key_cache, key_cached = {}, 0
local function encode_key(k)
    local e = key_cache[k]
    if e == nil then
        e = encode_string(tostring(k))
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

local function encode(v, out, depth)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = encode_string(v)
    elseif t == "number" then
        if v ~= v or v == huge or v == -huge then
            out[#out + 1] = "null"
        elseif v == floor(v) and v > -2^53 and v < 2^53 then
            out[#out + 1] = format("%d", v)
        else
            out[#out + 1] = format("%.17g", v)
        end
    elseif t == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif t == "table" then
        if depth > 100 then
            error("cannot encode: nested too deeply", 0)
        end
        if is_array(v) then
            out[#out + 1] = "["
            for i = 1, #v do
                if i > 1 then
                    out[#out + 1] = ","
                end
                encode(v[i], out, depth + 1)
            end
            out[#out + 1] = "]"
        else
            local keys = {}
            for k in pairs(v) do
                keys[#keys + 1] = k
            end
            sort(keys, key_order)
            out[#out + 1] = "{"
            for i, k in ipairs(keys) do
                if i > 1 then
                    out[#out + 1] = ","
                end
                out[#out + 1] = encode_key(k)
                out[#out + 1] = ":"
                encode(v[k], out, depth + 1)
            end
            out[#out + 1] = "}"
        end
    else
        -- nil inside arrays, cjson.null, functions: null
        out[#out + 1] = "null"
    end
end

--- Encode v; returns the JSON text, or nil and a message.
function _M.encode(v)
    local out = {}
    local ok, err = pcall(encode, v, out, 0)
    if not ok then
        return nil, tostring(err)
    end
    return concat(out)
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
