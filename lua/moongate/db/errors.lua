-- moongate.db.errors -- Kong's DAO error objects (kong/db/errors.lua):
-- the codes, names and message texts the Admin API puts in its answers,
-- and `tostring(err_t)` = "[<strategy>] <message>".
--
-- One instance per DB (`errors.new(strategy)`), stateless otherwise.
-- Messages quote keys the way Kong's (penlight) pretty printer does on one
-- line: {id="..."}, {name="x",route=null,service={id="..."}}.
-- Rejected: reusing the store's C messages as they are -- they cover only
-- the store's view (one unique field, an id), not the DAO's (plugin scope
-- fields, options, sizes).

local errors = require "moongate.schema.errors"
local V = require "moongate.schema.validators"

local type = type
local pairs = pairs
local tostring = tostring
local setmetatable = setmetatable
local format = string.format
local concat = table.concat
local sort = table.sort

local null = V.null

local _M = {}

_M.codes = {
    INVALID_PRIMARY_KEY = 1,
    SCHEMA_VIOLATION = 2,
    PRIMARY_KEY_VIOLATION = 3,
    FOREIGN_KEY_VIOLATION = 4,
    UNIQUE_VIOLATION = 5,
    NOT_FOUND = 6,
    INVALID_OFFSET = 7,
    DATABASE_ERROR = 8,
    INVALID_SIZE = 9,
    INVALID_UNIQUE = 10,
    INVALID_OPTIONS = 11,
    OPERATION_UNSUPPORTED = 12,
    FOREIGN_KEYS_UNRESOLVED = 13,
    DECLARATIVE_CONFIG = 14,
    TRANSFORMATION_ERROR = 15,
    INVALID_FOREIGN_KEY = 16,
}
local C = _M.codes

_M.names = {
    [C.INVALID_PRIMARY_KEY] = "invalid primary key",
    [C.SCHEMA_VIOLATION] = "schema violation",
    [C.PRIMARY_KEY_VIOLATION] = "primary key violation",
    [C.FOREIGN_KEY_VIOLATION] = "foreign key violation",
    [C.UNIQUE_VIOLATION] = "unique constraint violation",
    [C.NOT_FOUND] = "not found",
    [C.INVALID_OFFSET] = "invalid offset",
    [C.DATABASE_ERROR] = "database error",
    [C.INVALID_SIZE] = "invalid size",
    [C.INVALID_UNIQUE] = "invalid unique %s",
    [C.INVALID_OPTIONS] = "invalid options",
    [C.OPERATION_UNSUPPORTED] = "operation unsupported",
    [C.FOREIGN_KEYS_UNRESOLVED] = "foreign keys unresolved",
    [C.DECLARATIVE_CONFIG] = "invalid declarative configuration",
    [C.TRANSFORMATION_ERROR] = "transformation error",
    [C.INVALID_FOREIGN_KEY] = "invalid foreign key",
}

local err_mt = {
    __tostring = function(e)
        local msg = e.message
        if msg == nil or msg == null then
            msg = e.name
        end
        if e.strategy then
            return format("[%s] %s", e.strategy, msg)
        end
        return msg
    end,
    __concat = function(a, b)
        return tostring(a) .. tostring(b)
    end,
}
_M.err_mt = err_mt

--- One-line pretty print of a key table: {id="x"}, nested, sorted keys.
local function pretty(v)
    if v == null then
        return "null"
    end
    local t = type(v)
    if t == "string" then
        return (format("%q", v):gsub("\\\n", "\\n"))
    elseif t ~= "table" then
        return tostring(v)
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for i, k in ipairs(keys) do
        if type(k) == "number" then
            out[i] = pretty(v[k])
        else
            out[i] = tostring(k) .. "=" .. pretty(v[k])
        end
    end
    return "{" .. concat(out, ",") .. "}"
end
_M.pretty = pretty

local Errors = {}
Errors.__index = Errors

function _M.new(strategy)
    return setmetatable({ strategy = strategy }, Errors)
end

local function copy(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = v
    end
    return c
end

function Errors:new_err_t(code, message, fields, name)
    local e = {
        code = code,
        name = name or _M.names[code],
        message = message or null,
        strategy = self.strategy,
    }
    if fields then
        if code == C.INVALID_OPTIONS then
            e.options = copy(fields)
        else
            e.fields = copy(fields)
        end
    end
    return setmetatable(e, err_mt)
end

function Errors:invalid_primary_key(pk)
    return self:new_err_t(C.INVALID_PRIMARY_KEY,
                          format("invalid primary key: '%s'", pretty(pk)), pk)
end

function Errors:invalid_foreign_key(fk)
    return self:new_err_t(C.INVALID_FOREIGN_KEY,
                          format("invalid foreign key: '%s'", pretty(fk)), fk)
end

function Errors:schema_violation(errs)
    return self:new_err_t(C.SCHEMA_VIOLATION,
                          errors.schema_violation(errs), errs)
end

function Errors:primary_key_violation(pk)
    return self:new_err_t(C.PRIMARY_KEY_VIOLATION, format(
        "primary key violation on key '%s'", pretty(pk)), pk)
end

function Errors:foreign_key_violation_invalid_reference(fk, field, parent)
    return self:new_err_t(C.FOREIGN_KEY_VIOLATION, format(
        "the foreign key '%s' does not reference an existing '%s' entity.",
        pretty(fk), parent), { [field] = fk })
end

function Errors:foreign_key_violation_restricted(parent, child)
    return self:new_err_t(C.FOREIGN_KEY_VIOLATION, format(
        "an existing '%s' entity references this '%s' entity", child,
        parent), { ["@referenced_by"] = child })
end

function Errors:unique_violation(key)
    return self:new_err_t(C.UNIQUE_VIOLATION, format(
        "UNIQUE violation detected on '%s'", pretty(key)), key)
end

function Errors:not_found(pk)
    return self:new_err_t(C.NOT_FOUND, format(
        "could not find the entity with primary key '%s'", pretty(pk)), pk)
end

function Errors:not_found_by_field(filter)
    return self:new_err_t(C.NOT_FOUND, format(
        "could not find the entity with '%s'", pretty(filter)), filter)
end

function Errors:invalid_offset(offset, err)
    return self:new_err_t(C.INVALID_OFFSET, format(
        "'%s' is not a valid offset: %s", tostring(offset), err))
end

function Errors:database_error(err)
    return self:new_err_t(C.DATABASE_ERROR, err or _M.names[C.DATABASE_ERROR])
end

function Errors:invalid_size(err)
    return self:new_err_t(C.INVALID_SIZE, err)
end

function Errors:invalid_unique(name, err)
    return self:new_err_t(C.INVALID_UNIQUE, err, nil,
                          format(_M.names[C.INVALID_UNIQUE], name))
end

function Errors:invalid_options(errs)
    local list = errors.flatten(errs)
    local msg
    if #list == 1 then
        msg = "invalid option (" .. list[1] .. ")"
    else
        msg = format("%d option violations (%s)", #list, concat(list, "; "))
    end
    return self:new_err_t(C.INVALID_OPTIONS, msg, errs)
end

function Errors:operation_unsupported(err)
    return self:new_err_t(C.OPERATION_UNSUPPORTED, err)
end

function Errors:declarative_config(errs)
    return self:new_err_t(C.DECLARATIVE_CONFIG, format(
        "declarative config is invalid: %s", pretty(errs)), errs)
end

return _M
