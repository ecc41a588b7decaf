-- moongate.admin.args -- what an Admin API request carries: the decoded
-- query and body, in Kong's conventions (kong/api/arguments.lua).
--
-- Bodies: application/json (an object, else "Cannot parse JSON body"),
-- application/x-www-form-urlencoded and multipart/form-data.  Form names
-- nest the Kong way: `config.minute=5` -> { config = { minute = "5" } },
-- `paths[]=/a&paths[]=/b`, `paths[1]=/a`, or `paths=/a&paths=/b` ->
-- { paths = { "/a", "/b" } }.  Form values are strings, so `infer` turns
-- them into what the entity schema says: numbers, booleans, a lone value
-- into a one-element array, "" into null (Kong's "unset this field").
-- JSON bodies are taken as they are, as in Kong.
--
-- Rejected: inferring types without a schema ("5" -> 5 everywhere): a
-- service named "5" or a tag "true" would change type.

local json = require "moongate.admin.json"
local codec = require "moongate.codec"

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local find = string.find
local match = string.match
local lower = string.lower
local gmatch = string.gmatch

local null = json.null

local _M = {}

local MAX_ARGS = 1000

-- add value (a string, true, or an array of them) to node[key]
local function merge(node, key, value)
    local old = node[key]
    if old == nil then
        node[key] = value
        return
    end
    if type(old) ~= "table" then
        old = { old }
        node[key] = old
    end
    if type(value) == "table" then
        for _, v in ipairs(value) do
            old[#old + 1] = v
        end
    else
        old[#old + 1] = value
    end
end

-- one form argument `name` = value into the tree `out`
local function decode_arg(out, name, value)
    if type(name) ~= "string" or find(name, "^%.") or find(name, "%.$") then
        merge(out, name, value)
        return
    end
    local parts = {}
    for part in gmatch(name, "[^%.]+") do
        parts[#parts + 1] = part
    end
    local node = out
    for i, part in ipairs(parts) do
        local last = i == #parts
        local base, idx = match(part, "^(.-)%[(%d*)%]$")
        if base and base ~= "" then
            local arr = node[base]
            if type(arr) ~= "table" then
                arr = arr ~= nil and { arr } or {}
                node[base] = arr
            end
            local n = tonumber(idx)
            if last then
                if n then
                    arr[n] = type(value) == "table" and value[1] or value
                else
                    merge(node, base, value)
                end
            else
                n = n or 1
                if type(arr[n]) ~= "table" then
                    arr[n] = {}
                end
                node = arr[n]
            end
        elseif last then
            merge(node, part, value)
        else
            if type(node[part]) ~= "table" then
                node[part] = {}
            end
            node = node[part]
        end
    end
end

--- Kong's form decoding: flat name -> value pairs into nested tables.
function _M.decode(flat)
    local out = {}
    if type(flat) ~= "table" then
        return out
    end
    -- names in a stable order: "a[1]" before "a[2]" whatever pairs() says
    local names = {}
    for name in pairs(flat) do
        names[#names + 1] = name
    end
    table.sort(names, function(a, b)
        return tostring(a) < tostring(b)
    end)
    for _, name in ipairs(names) do
        decode_arg(out, name, flat[name])
    end
    return out
end

local infer

--- Kong's infer_value: a form value as the field's type.
local function infer_value(value, field)
    if value == nil or type(field) ~= "table" then
        return value
    end
    if value == "" then
        return null
    end
    local ft = field.type
    if ft == "number" or ft == "integer" then
        return tonumber(value) or value
    elseif ft == "boolean" then
        if value == "true" then
            return true
        elseif value == "false" then
            return false
        end
    elseif ft == "array" or ft == "set" then
        if type(value) ~= "table" then
            value = { value }
        end
        -- collapse holes left by indexed names (paths[1], paths[3])
        local list, keys = {}, {}
        for k in pairs(value) do
            if type(k) == "number" then
                keys[#keys + 1] = k
            end
        end
        table.sort(keys)
        for i, k in ipairs(keys) do
            list[i] = infer_value(value[k], field.elements)
        end
        return list
    elseif ft == "foreign" then
        if type(value) == "table" then
            return value
        end
        return { id = value }
    elseif ft == "map" then
        if type(value) == "table" then
            for k, v in pairs(value) do
                value[k] = infer_value(v, field.values)
            end
        end
    elseif ft == "record" and not field.abstract then
        if type(value) == "table" and type(field.fields) == "table" then
            infer(value, field)
        end
    end
    return value
end
_M.infer_value = infer_value

--- Kong's infer: every field of args that the schema knows, in place.
infer = function(args, schema)
    if type(args) ~= "table" or type(schema) ~= "table" then
        return args
    end
    for name, field in json.each_field(schema.fields or {}) do
        local v = args[name]
        if v ~= nil then
            args[name] = infer_value(v, field)
        end
    end
    return args
end
_M.infer = infer

--- The query: decoded args (Kong's names nest as in forms).
function _M.query(raw)
    return _M.decode(codec.decode_args(raw or "", MAX_ARGS))
end

local NEEDS_BODY = { POST = true, PUT = true, PATCH = true }
_M.NEEDS_BODY = NEEDS_BODY

--- The request body as a table.
-- @param ct the Content-Type header (or nil)
-- @param raw the raw body ("" when none)
-- @return body table, kind ("json" | "form" | "none"); or nil, status,
-- message for a body Kong refuses (415 unsupported type, 400 bad JSON)
function _M.body(ct, raw, get_multipart)
    raw = raw or ""
    if not ct or ct == "" then
        if raw == "" then
            return {}, "none"
        end
        return nil, 415, "Unsupported Media Type"
    end
    local lct = lower(ct)
    if find(lct, "application/json", 1, true) == 1
       or match(lct, "^application/[%w%.%-]+%+json") then
        if match(raw, "^%s*$") then
            return {}, "json"
        end
        local t = json.decode(raw)
        if type(t) ~= "table" then
            return nil, 400, "Cannot parse JSON body"
        end
        return t, "json"
    elseif find(lct, "application/x-www-form-urlencoded", 1, true) == 1 then
        return _M.decode(codec.decode_args(raw, MAX_ARGS)), "form"
    elseif find(lct, "multipart/form-data", 1, true) == 1 then
        local flat, err = get_multipart()
        if not flat then
            return nil, 400, err or "Cannot parse multipart body"
        end
        return _M.decode(flat), "form"
    end
    if raw == "" then
        return {}, "none"
    end
    return nil, 415, "Unsupported Media Type"
end

--- Is s a UUID (any version, Kong's check)?
function _M.is_uuid(s)
    return type(s) == "string" and #s == 36 and
        match(lower(s), "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
              "%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
end

return _M
