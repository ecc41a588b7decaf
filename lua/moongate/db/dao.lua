-- moongate.db.dao -- one entity type's DAO with Kong's API (kong/db/dao):
-- insert / select / update / upsert / delete, their _by_<endpoint_key>
-- variants, page / page_for_<foreign key> / each, select_by_cache_key,
-- cache_key.  See moongate.db (init.lua) for the contract and return
-- values.
--
-- A write runs: defaults and auto fields (process_auto_fields) -> the
-- entity's normalize hook (targets' default port) -> validation of the
-- whole entity (PATCH merges with the stored entity first) -> password
-- hashing (basicauth) -> the store entity (JSON plus the uniques,
-- references and tags computed from the schema) -> one store write.  The
-- store has the last word on uniqueness and references (one transaction,
-- no check-then-write race); its errors are turned into Kong's err_t.
--
-- Rejected: checking uniques and references in Lua before writing (Kong's
-- off strategy does) -- two readers could both pass the check; the LMDB
-- writer lock makes the store's check the only one that is always right.

local cjson = require "cjson.safe"
local row_json = require "moongate.json"   -- sorted keys: see there
local Schema = require "moongate.schema"
local schema_errors = require "moongate.schema.errors"
local store_mod = require "moongate.db.store"

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local error = error
local setmetatable = setmetatable
local format = string.format
local floor = math.floor
local find = string.find
local next = next

local null = Schema.null
local SE = store_mod.E
local ON_DELETE = { cascade = 2, restrict = 1 }

-- JSON arrays stay arrays when re-encoded (OpenResty's cjson has
-- decode_array_with_array_mt; Debian's lua-cjson does not)
local json = cjson.new and cjson.new() or cjson
if json.decode_array_with_array_mt then
    json.decode_array_with_array_mt(true)
end
if json.encode_empty_table_as_object then
    json.encode_empty_table_as_object(false)
end

local PAGE_DEFAULT, PAGE_MAX = 100, 1000
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
             "%x%x%x%x%x%x%x%x%x%x%x%x$"

local DAO = {}
DAO.__index = DAO

local _M = {}

local function fail(err_t)
    return nil, tostring(err_t), err_t
end

local function is_uuid(s)
    return type(s) == "string" and find(s, UUID) ~= nil
end

-- the fields of a definition by name, in order
local function field_list(def)
    local list = {}
    for i, item in ipairs(def.fields) do
        local name, f = next(item)
        list[i] = { name = name, field = f }
    end
    return list
end

--- dao = _M.new(db, def): def is an entity definition (schema/entities/*
-- or a plugin's daos.lua); nil and an error string when it is malformed.
function _M.new(db, def)
    local schema, err = Schema.new(def)
    if not schema then
        return nil, err
    end
    local self = setmetatable({
        db = db,
        def = def,
        schema = schema,
        name = def.name,
        errors = db.errors,
        fields = field_list(def),
    }, DAO)
    self.foreign = {}
    self.uniques = {}
    local names = {}
    for i, f in ipairs(self.fields) do
        names[i] = f.name
    end
    -- a row's keys are its schema's fields: written in that (sorted)
    -- order without sorting each row's keys (moongate.json)
    self.row_order = row_json.key_order(names)
    for _, f in ipairs(self.fields) do
        if f.field.type == "foreign" then
            self.foreign[#self.foreign + 1] = f
        elseif f.field.unique then
            self.uniques[#self.uniques + 1] = f.name
        end
    end
    return self
end

-- encoding ----------------------------------------------------------------

local function decode_row(s)
    local row, err = json.decode(s)
    if type(row) ~= "table" then
        return nil, err or "stored entity is not an object"
    end
    return row
end

-- the plugin's entity schema for a plugins row (nil: not enabled)
function DAO:schema_for(entity)
    if self.name ~= "plugins" then
        return self.schema
    end
    local name = type(entity) == "table" and entity.name
    if type(name) ~= "string" then
        return self.schema
    end
    return self.db:plugin_schema(name)
end

-- a stored row as Kong returns it: every default, nulls as null
function DAO:row_to_entity(row)
    local schema = self:schema_for(row) or self.schema
    return schema:process_auto_fields(row, "select", true)
end

local function str(v)
    if v == nil or v == null then
        return ""
    end
    if type(v) == "table" then
        return str(v.id)
    end
    return tostring(v)
end

--- Kong's cache_key: "<type>:<k1>:<k2>:<k3>:<k4>:<k5>:" (no workspace),
-- from an entity (its cache_key fields) or from values.
function DAO:cache_key(key, a2, a3, a4, a5)
    if type(key) == "table" then
        local ck = self.def.cache_key
        if not ck then
            error("entity does not have a cache_key defined", 2)
        end
        local e = key
        key, a2, a3, a4, a5 = e[ck[1]], e[ck[2]], e[ck[3]], e[ck[4]],
                              e[ck[5]]
    end
    return format("%s:%s:%s:%s:%s:%s:", self.name, str(key), str(a2),
                  str(a3), str(a4), str(a5))
end

-- the store entity of a validated row
function DAO:to_store(row)
    local uniques, refs, tags = {}, {}, {}
    for _, name in ipairs(self.uniques) do
        local v = row[name]
        if v ~= nil and v ~= null then
            uniques[#uniques + 1] = { name, tostring(v) }
        end
    end
    if self.def.cache_key then
        uniques[#uniques + 1] = { "cache_key", self:cache_key(row) }
    end
    for _, f in ipairs(self.foreign) do
        local v = row[f.name]
        if type(v) == "table" and type(v.id) == "string" then
            refs[#refs + 1] = { f.name, f.field.reference, v.id,
                                ON_DELETE[f.field.on_delete] or 0 }
        end
    end
    if type(row.tags) == "table" then
        for i, t in ipairs(row.tags) do
            tags[i] = t
        end
    end
    local s, err = row_json.encode(row, self.row_order)
    if not s then
        return nil, err
    end
    return { type = self.name, id = row.id, json = s, uniques = uniques,
             refs = refs, tags = tags }
end

-- errors ------------------------------------------------------------------

-- a store failure as Kong's err_t; row is the entity being written
function DAO:store_error(e, row, op)
    local E = self.errors
    if e.code == SE.UNIQUE then
        if e.field == "cache_key" and row then
            local key = {}
            for _, f in ipairs(self.def.cache_key) do
                local v = row[f]
                if type(v) == "table" then
                    v = { id = v.id }
                end
                key[f] = v == nil and null or v
            end
            return E:unique_violation(key)
        end
        local v = row and row[e.field]
        return E:unique_violation({ [e.field] = v == nil and null or v })
    elseif e.code == SE.FOREIGN then
        if op == "delete" then
            return E:foreign_key_violation_restricted(e.type, e.ref_type)
        end
        return E:foreign_key_violation_invalid_reference({ id = e.ref_id },
                                                         e.field, e.ref_type)
    elseif e.code == SE.EXISTS then
        return E:primary_key_violation({ id = row and row.id or e.id })
    elseif e.code == SE.NOT_FOUND then
        return E:not_found({ id = row and row.id or e.id })
    elseif e.code == SE.OFFSET then
        return nil
    end
    local err_t = E:database_error(e.msg)
    if e.code == SE.FULL then
        err_t.store_full = true     -- an operator's problem, said plainly
    end
    return err_t
end

function DAO:check_pk(pk)
    if type(pk) ~= "table" then
        error("primary_key must be a table", 3)
    end
    local errs
    if pk.id == nil or pk.id == null then
        errs = { id = schema_errors.messages.MISSING_PK }
    elseif type(pk.id) ~= "string" then
        errs = { id = schema_errors.messages.STRING }
    elseif not is_uuid(pk.id) then
        errs = { id = schema_errors.messages.UUID }
    end
    if errs then
        return nil, self.errors:invalid_primary_key(pk)
    end
    return true
end

function DAO:unsupported(op)
    if self.db.strategy == "off" then
        return self.errors:operation_unsupported(format(
            "cannot %s '%s' entities when not using a database", op,
            self.name))
    end
    return nil
end

-- reads -------------------------------------------------------------------

function DAO:load(key, by_field)
    local e, err = self.db.store:get(self.name, key, by_field)
    if not e then
        if err.code == SE.NOT_FOUND then
            return nil
        end
        return nil, self.errors:database_error(err.msg)
    end
    local row, derr = decode_row(e.json)
    if not row then
        return nil, self.errors:database_error(derr)
    end
    return row
end

--- select(pk) -> entity | nil (not found) | nil, err, err_t
function DAO:select(pk)
    local ok, err_t = self:check_pk(pk)
    if not ok then
        return fail(err_t)
    end
    local row
    row, err_t = self:load(pk.id)
    if err_t then
        return fail(err_t)
    end
    if not row then
        return nil
    end
    return self:row_to_entity(row)
end

--- by id or by the endpoint key (the Admin API's "{id or name}")
function DAO:select_by_key(key)
    if type(key) ~= "string" or key == "" then
        return nil
    end
    local row, err_t = self:load(key, self.def.endpoint_key)
    if err_t then
        return fail(err_t)
    end
    return row and self:row_to_entity(row)
end

function DAO:check_unique(field, value)
    local f = self.schema.fields[field]
    local ok, err = self.schema:validate_field(f, value)
    if not ok or value == null then
        return nil, self.errors:invalid_unique(field, type(err) == "string"
                                               and err or "required field missing")
    end
    return true
end

function DAO:select_by(field, value)
    local ok, err_t = self:check_unique(field, value)
    if not ok then
        return fail(err_t)
    end
    local row
    row, err_t = self:load(tostring(value), field)
    if err_t then
        return fail(err_t)
    end
    if not row or row[field] ~= value then
        return nil
    end
    return self:row_to_entity(row)
end

function DAO:select_by_cache_key(key)
    if type(key) ~= "string" then
        error("cache_key must be a string", 2)
    end
    local row, err_t = self:load(key, "cache_key")
    if err_t then
        return fail(err_t)
    end
    return row and self:row_to_entity(row)
end

local function check_options(self, opts)
    if opts == nil then
        return true
    end
    local errs = {}
    local tags = opts.tags
    if tags ~= nil then
        if type(tags) ~= "table" then
            errs.tags = "must be a table"
        elseif #tags > 5 then
            errs.tags = "cannot query more than 5 tags"
        elseif #tags > 1 and opts.tags_cond ~= "and"
               and opts.tags_cond ~= "or" then
            errs.tags_cond = "must be a either 'and' or 'or' when more " ..
                             "than one tag is specified"
        else
            for _, t in ipairs(tags) do
                if type(t) ~= "string" or t == "" or find(t, "[,/%c]") then
                    errs.tags = "must only contain printable ascii " ..
                                "(except `,` and `/`) or valid utf-8"
                end
            end
        end
    end
    if next(errs) then
        return nil, self.errors:invalid_options(errs)
    end
    return true
end

local function check_size(self, size)
    if size == nil then
        return PAGE_DEFAULT
    end
    if type(size) ~= "number" then
        return nil, self.errors:invalid_size("size must be a number")
    end
    if size ~= floor(size) or size < 1 or size > PAGE_MAX then
        return nil, self.errors:invalid_size(format(
            "size must be an integer between 1 and %d", PAGE_MAX))
    end
    return size
end

function DAO:page_filtered(ref, size, offset, opts)
    local err_t
    size, err_t = check_size(self, size)
    if not size then
        return fail(err_t)
    end
    local ok
    ok, err_t = check_options(self, opts)
    if not ok then
        return fail(err_t)
    end
    if offset ~= nil and type(offset) ~= "string" then
        return fail(self.errors:invalid_offset(tostring(offset),
                                               "bad base64 encoding"))
    end
    local filter
    if ref or (opts and opts.tags) then
        filter = { ref = ref, tags = opts and opts.tags,
                   tags_any = opts and opts.tags_cond == "or" }
    end
    local list, nxt = self.db.store:list(self.name, filter, size, offset)
    if not list then
        if nxt.code == SE.OFFSET then
            return fail(self.errors:invalid_offset(offset,
                                                   "bad base64 encoding"))
        end
        return fail(self.errors:database_error(nxt.msg))
    end
    local rows = {}
    for i, e in ipairs(list) do
        local row, derr = decode_row(e.json)
        if not row then
            return fail(self.errors:database_error(derr))
        end
        rows[i] = self:row_to_entity(row)
    end
    return rows, nil, nil, nxt
end

--- page(size, offset, opts) -> rows, nil, nil, next_offset | nil, err, err_t
function DAO:page(size, offset, opts)
    return self:page_filtered(nil, size, offset, opts)
end

--- each(size, opts): for row, err, err_t in dao:each() do
function DAO:each(size, opts)
    local rows, offset, i, done = {}, nil, 0, false
    return function()
        i = i + 1
        if rows[i] then
            return rows[i]
        end
        if done then
            return nil
        end
        local err, err_t
        rows, err, err_t, offset = self:page(size, offset, opts)
        if not rows then
            done = true
            return nil, err, err_t
        end
        done = offset == nil
        i = 1
        return rows[1]
    end
end

-- writes ------------------------------------------------------------------

function DAO:plugin_check(entity)
    if self.name ~= "plugins" then
        return self.schema
    end
    local name = entity.name
    if name == nil or name == null then
        return nil, self.errors:schema_violation({
            name = schema_errors.messages.REQUIRED })
    end
    local schema = type(name) == "string" and self.db:plugin_schema(name)
    if not schema then
        return nil, self.errors:schema_violation({ name = format(
            schema_errors.messages.PLUGIN_NOT_ENABLED, tostring(name)) })
    end
    return schema
end

-- validate a complete row, hash what must be hashed, write it
function DAO:write(op, row, schema, plain_password)
    if self.def.normalize then
        self.def.normalize(row)
    end
    local ok, errs = schema:validate(row, true)
    if not ok then
        return nil, self.errors:schema_violation(errs)
    end
    if self.def.hash_password and plain_password then
        row.password = self.def.hash_password(row.password,
                                              row.consumer.id)
    end
    local e, jerr = self:to_store(row)
    if not e then
        return nil, self.errors:database_error(jerr)
    end
    local created, err
    ok, created = self.db.store[op](self.db.store, e)
    if not ok then
        err = created
        return nil, self:store_error(err, row, op)
    end
    return self:row_to_entity(row), created
end

-- The checks every write by primary key starts with: database = off
-- refuses (Kong's words for `what`), and the key must be a valid one.
function DAO:write_precheck(what, pk)
    local err_t = self:unsupported(what)
    if err_t then
        return err_t
    end
    if type(pk) ~= "table" then
        error("primary_key must be a table", 3)
    end
    local ok
    ok, err_t = self:check_pk(pk)
    if not ok then
        return err_t
    end
end

--- insert(entity, opts) -> entity | nil, err, err_t
function DAO:insert(entity, opts)
    if type(entity) ~= "table" then
        error("entity must be a table", 2)
    end
    local err_t = self:unsupported("create")
    if err_t then
        return fail(err_t)
    end
    local schema
    schema, err_t = self:plugin_check(entity)
    if not schema then
        return fail(err_t)
    end
    local row, errs = schema:process_auto_fields(entity, "insert")
    if not row then
        return fail(self.errors:schema_violation(errs))
    end
    local out
    out, err_t = self:write("insert", row, schema, true)
    if not out then
        return fail(err_t)
    end
    return out
end

-- merge, validate and write an update of the stored row `old`
function DAO:update_row(old, patch)
    local schema, err_t = self:plugin_check({ name = patch.name ~= nil and
                                              patch.name or old.name })
    if not schema then
        return fail(err_t)
    end
    local p, errs = schema:process_auto_fields(patch, "update")
    if not p then
        return fail(self.errors:schema_violation(errs))
    end
    p.id = nil
    p.created_at = nil
    local row = schema:merge_values(p, old)
    local plain = patch.password ~= nil
    local out
    out, err_t = self:write("update", row, schema, plain)
    if not out then
        return fail(err_t)
    end
    return out
end

--- update(pk, patch, opts) -> entity | nil, err, err_t
function DAO:update(pk, patch, opts)
    if type(patch) ~= "table" then
        error("entity must be a table", 2)
    end
    local err_t = self:write_precheck("update", pk)
    if err_t then
        return fail(err_t)
    end
    local old
    old, err_t = self:load(pk.id)
    if err_t then
        return fail(err_t)
    end
    if not old then
        return fail(self.errors:not_found({ id = pk.id }))
    end
    return self:update_row(old, patch)
end

--- upsert(pk, entity, opts) -> entity | nil, err, err_t (Kong's PUT: the
-- entity replaces the stored one; created_at survives)
function DAO:upsert(pk, entity, opts)
    if type(entity) ~= "table" then
        error("entity must be a table", 2)
    end
    local err_t = self:write_precheck("create or update", pk)
    if err_t then
        return fail(err_t)
    end
    local schema
    schema, err_t = self:plugin_check(entity)
    if not schema then
        return fail(err_t)
    end
    local old
    old, err_t = self:load(pk.id)
    if err_t then
        return fail(err_t)
    end
    local row, errs = schema:process_auto_fields(entity, "upsert")
    if not row then
        return fail(self.errors:schema_violation(errs))
    end
    row.id = pk.id
    if old and old.created_at and (entity.created_at == nil) then
        row.created_at = old.created_at
    end
    local out
    out, err_t = self:write("upsert", row, schema, true)
    if not out then
        return fail(err_t)
    end
    return out
end

--- delete(pk, opts) -> true | nil, err, err_t (true when absent, as Kong)
function DAO:delete(pk, opts)
    local err_t = self:write_precheck("remove", pk)
    if err_t then
        return fail(err_t)
    end
    local n, err = self.db.store:delete(self.name, pk.id)
    if not n then
        if err.code == SE.NOT_FOUND then
            return true
        end
        return fail(self:store_error(err, nil, "delete"))
    end
    return true
end

-- the *_by_<field> and page_for_<fk> methods --------------------------------

local function by_key(self, field, op, value, ...)
    local ok, err_t = self:check_unique(field, value)
    if not ok then
        return fail(err_t)
    end
    local row
    row, err_t = self:load(tostring(value), field)
    if err_t then
        return fail(err_t)
    end
    if row and row[field] ~= value then
        row = nil
    end
    if op == "update" then
        local err = self:unsupported("update")
        if err then
            return fail(err)
        end
        if not row then
            return fail(self.errors:not_found_by_field({ [field] = value }))
        end
        return self:update_row(row, (...))
    elseif op == "upsert" then
        local entity = ...
        local copy = {}
        for k, v in pairs(entity) do
            copy[k] = v
        end
        copy[field] = value
        if row then
            return self:upsert({ id = row.id }, copy)
        end
        local err = self:unsupported("create or update")
        if err then
            return fail(err)
        end
        return self:insert(copy)
    elseif op == "delete" then
        local err = self:unsupported("remove")
        if err then
            return fail(err)
        end
        if not row then
            return true
        end
        return self:delete({ id = row.id })
    end
end

-- the generated method k of self, made and kept on first use (or nil)
local function generated(self, k)
    local op, field = k:match("^(%a+)_by_([%w_]+)$")
    if op and field ~= "cache_key" and (op == "select" or op == "update"
        or op == "upsert" or op == "delete") then
        local f = rawget(self, "schema").fields[field]
        if type(f) == "table" and f.unique then
            local fn
            if op == "select" then
                fn = function(s, v) return s:select_by(field, v) end
            else
                fn = function(s, v, ...) return by_key(s, field, op, v, ...) end
            end
            rawset(self, k, fn)
            return fn
        end
        return nil
    end
    local fk = k:match("^page_for_([%w_]+)$")
    if fk then
        local f = rawget(self, "schema").fields[fk]
        if type(f) == "table" and f.type == "foreign" then
            local fn = function(s, key, size, offset, opts)
                if type(key) ~= "table" or not is_uuid(key.id) then
                    return fail(s.errors:invalid_foreign_key(
                        type(key) == "table" and key or { id = key }))
                end
                return s:page_filtered({ fk, f.reference, key.id }, size,
                                       offset, opts)
            end
            rawset(self, k, fn)
            return fn
        end
    end
    return nil
end

--- dao[name] for the generated methods: select_by_name, update_by_name,
-- upsert_by_name, delete_by_name (every unique field), page_for_service
-- (every foreign key).  Every method call on a DAO comes here: the
-- closures are made in `generated`, as LuaJIT compiles no function that
-- makes one.
function DAO:__index(k)
    local m = DAO[k]
    if m ~= nil then
        return m
    end
    if type(k) ~= "string" then
        return nil
    end
    return generated(self, k)
end

_M.DAO = DAO
_M.json = json

return _M
