-- moongate.schema.errors -- the message texts of Kong's schema validator and
-- the helpers that turn a nested error table into one line.
--
-- The texts are Kong's, word for word: operators grep their logs and tests
-- compare Admin API bodies against them, so a reworded message is a
-- compatibility bug.  `moongate.schema` formats them; nothing here keeps
-- state.  An error table has Kong's shape: field name -> message string, or
-- field name -> nested table for records, arrays (by position) and maps, plus
-- an "@entity" array for entity-check errors.
--
-- Rejected: one message per (field, rule) pair generated from rule names.
-- Kong's wording is irregular ("value should be between", "length must be
-- at least"), so the table is spelled out.

local type = type
local next = next
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local sort = table.sort
local concat = table.concat
local format = string.format
local floor = math.floor

local _M = {}

-- Kong's `validation_errors`, same keys and texts.
_M.messages = {
    -- general
    ERROR = "Validation error: %s",
    -- types
    ARRAY = "expected an array",
    SET = "expected a set",
    MAP = "expected a map",
    RECORD = "expected a record",
    STRING = "expected a string",
    NUMBER = "expected a number",
    BOOLEAN = "expected a boolean",
    INTEGER = "expected an integer",
    FUNCTION = "expected a function",
    -- field validators
    EQ = "value must be %s",
    NE = "value must not be %s",
    GT = "value must be greater than %s",
    BETWEEN = "value should be between %s and %s",
    LEN_EQ = "length must be %d",
    LEN_MIN = "length must be at least %d",
    LEN_MAX = "length must be at most %d",
    MATCH = "invalid value: %s",
    NOT_MATCH = "invalid value: %s",
    MATCH_ALL = "invalid value: %s",
    MATCH_NONE = "invalid value: %s",
    MATCH_ANY = "invalid value: %s",
    STARTS_WITH = "should start with: %s",
    CONTAINS = "expected to contain: %s",
    ONE_OF = "expected one of: %s",
    NOT_ONE_OF = "must not be one of: %s",
    IS_REGEX = "not a valid regex: %s",
    TIMESTAMP = "expected a valid timestamp",
    UUID = "expected a valid UUID",
    VALIDATION = "failed validating: %s",
    -- field presence
    BAD_INPUT = "expected an input table",
    REQUIRED = "required field missing",
    UNKNOWN = "unknown field",
    IMMUTABLE = "immutable field cannot be updated",
    NOT_PK = "not a primary key",
    MISSING_PK = "missing primary key",
    -- entity checks
    REQUIRED_FOR_ENTITY_CHECK = "field required for entity check",
    ENTITY_CHECK = "failed entity check: %s(%s)",
    CHECK = "entity check failed",
    CONDITIONAL = "failed conditional validation given value of field '%s'",
    AT_LEAST_ONE_OF = "at least one of these fields must be non-empty: %s",
    CONDITIONAL_AT_LEAST_ONE_OF =
        "at least one of these fields must be non-empty: %s",
    ONLY_ONE_OF = "exactly one of these fields must be non-empty: %s",
    DISTINCT = "values of these fields must be distinct: %s",
    MUTUALLY_REQUIRED = "all or none of these fields must be set: %s",
    MUTUALLY_EXCLUSIVE = "only one or none of these fields must be set: %s",
    MUTUALLY_EXCLUSIVE_SETS = "these sets are mutually exclusive: %s",
    -- schema definition
    SCHEMA_NO_DEFINITION = "expected a definition table",
    SCHEMA_NO_FIELDS = "error in schema definition: no 'fields' table",
    SCHEMA_TYPE = "invalid type: %s",
    SCHEMA_ABSTRACT_FIELD =
        "error in schema definition: abstract field was not specialized",
    SUBSCHEMA_UNKNOWN = "unknown type: %s",
    PLUGIN_NOT_ENABLED = "plugin '%s' not enabled; add it to the " ..
                         "'plugins' configuration property",
}

-- Text of a number as Kong prints it: integers without a fraction ("%d"),
-- anything else as Lua writes it (Kong's "%d" would truncate 0.5 to 0).
function _M.num(n)
    if type(n) == "number" and n == floor(n) and n > -2^53 and n < 2^53 then
        return format("%d", n)
    end
    return tostring(n)
end

-- quoted_list({"a", "b"}) -> "'a', 'b'"; nested arrays become "('a'), ...".
function _M.quoted_list(words)
    local out = {}
    for i = 1, #words do
        local w = words[i]
        if type(w) == "table" then
            out[i] = "(" .. _M.quoted_list(w) .. ")"
        else
            out[i] = "'" .. tostring(w) .. "'"
        end
    end
    return concat(out, ", ")
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then
            return ta < tb
        end
        if ta == "number" or ta == "string" then
            return a < b
        end
        return tostring(a) < tostring(b)
    end)
    return keys
end

-- Walk an error table depth-first; calls fn(path, message) for every leaf,
-- where path is the dotted field path ("config.redis.host",
-- "config.methods.2") and "@entity" messages carry their record's path
-- (nil at the top level).
local function walk(errs, prefix, fn)
    local entity = errs["@entity"]
    if type(entity) == "table" then
        for _, msg in ipairs(entity) do
            fn(prefix, msg)
        end
    end
    for _, k in ipairs(sorted_keys(errs)) do
        if k ~= "@entity" then
            local v = errs[k]
            local path = prefix and (prefix .. "." .. tostring(k))
                         or tostring(k)
            if type(v) == "table" then
                walk(v, path, fn)
            else
                fn(path, tostring(v))
            end
        end
    end
end

--- Flatten an error table to an array of "path: message" strings
-- (entity-check messages of the top level come first, bare).
-- @return array of strings, in a stable order.
function _M.flatten(errs)
    local out = {}
    if type(errs) ~= "table" then
        return out
    end
    walk(errs, nil, function(path, msg)
        if path then
            out[#out + 1] = path .. ": " .. msg
        else
            out[#out + 1] = msg
        end
    end)
    return out
end

--- The one-line message Kong's Admin API puts in `message` for a schema
-- violation: "schema violation (config.second: ...)" or
-- "N schema violations (a; b)".  Deeper levels are spelled as dotted paths.
function _M.schema_violation(errs)
    local list = _M.flatten(errs)
    if #list == 1 then
        return "schema violation (" .. list[1] .. ")"
    end
    return format("%d schema violations (%s)", #list, concat(list, "; "))
end

--- Kong's `Schema:errors_to_string`: "Validation error: a; b".
function _M.to_string(errs)
    if type(errs) ~= "table" or next(errs) == nil then
        return nil
    end
    return format(_M.messages.ERROR, concat(_M.flatten(errs), "; "))
end

return _M
