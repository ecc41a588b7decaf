-- moongate.db.declarative -- Kong's declarative config (format 3.0) over
-- moongate.db: parse (YAML or JSON text, or a Lua table; nested and flat
-- forms; references by name or id), validate every entity with its
-- schema, import in one store replace_all, export back to text.
--
--   parse(db, input)  -> entities_by_type | nil, err, err_t
--   import(db, input) -> true, counts     | nil, err, err_t
--   export(db, "yaml" | "json") -> text   | nil, err
--
-- Nesting follows Kong: routes and plugins under services, plugins under
-- routes and consumers, targets under upstreams, snis under
-- certificates, credentials (keyauth_credentials, basicauth_credentials,
-- jwt_secrets, acls, any plugin-declared entity with a consumer key)
-- under consumers.  A missing id is a UUID v5 over the type, the natural
-- key (the endpoint key, else the entity's content) and the parent's id,
-- so one file always gives the same ids.  Errors: err_t is Kong's
-- "invalid declarative configuration" (code 14) whose `fields` nest like
-- the input (services -> [1] -> routes -> [2] -> field -> message), and
-- err_t.flattened lists "label: field: message" lines for the CLI.
--
-- Passwords in a file are plain (Kong's rule); an exported basicauth
-- credential holds the hash, which a re-import would hash again -- as in
-- Kong.  Rejected: parsing YAML in Lua -- the C loader's libyaml reader
-- (mg_lua_yaml_to_json) types scalars the same way the core does.

local cjson = require "cjson.safe"
local Schema = require "moongate.schema"
local serrors = require "moongate.schema.errors"
local digest = require "moongate.digest"
local store_mod = require "moongate.db.store"
local dao_mod = require "moongate.db.dao"

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local format = string.format
local byte = string.byte
local char = string.char
local sub = string.sub
local find = string.find
local gsub = string.gsub
local concat = table.concat
local sort = table.sort
local floor = math.floor

local null = Schema.null
local json = dao_mod.json

local _M = {}

local NS = "fd02801f-0957-4a15-a55a-c8d9606f30b5"   -- mg_decl.h's root

-- children allowed under each parent type: child type -> foreign field
local NESTED = {
    services = { routes = "service", plugins = "service" },
    routes = { plugins = "route" },
    consumers = { plugins = "consumer", keyauth_credentials = "consumer",
                  basicauth_credentials = "consumer",
                  jwt_secrets = "consumer", acls = "consumer" },
    upstreams = { targets = "upstream" },
    certificates = { snis = "certificate" },
}

-- uuids ------------------------------------------------------------------

local function hex_to_bin(h)
    return (gsub(gsub(h, "-", ""), "%x%x", function(x)
        return char(tonumber(x, 16))
    end))
end

-- byte -> two hex digits
local HEX = {}
for i = 0, 255 do
    HEX[i] = format("%02x", i)
end

-- the last namespace's bytes: an import names every entity in one
local last_ns, last_ns_bin

--- RFC 4122 version 5 UUID of name in namespace ns (a UUID string).
function _M.uuid_v5(ns, name)
    if ns ~= last_ns then
        last_ns_bin, last_ns = hex_to_bin(ns), ns
    end
    local h = digest.sha1_bin(last_ns_bin .. name)
    local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15,
          b16 = byte(h, 1, 16)
    b7 = b7 % 16 + 0x50
    b9 = b9 % 64 + 0x80
    return HEX[b1] .. HEX[b2] .. HEX[b3] .. HEX[b4] .. "-" .. HEX[b5] ..
           HEX[b6] .. "-" .. HEX[b7] .. HEX[b8] .. "-" .. HEX[b9] ..
           HEX[b10] .. "-" .. HEX[b11] .. HEX[b12] .. HEX[b13] .. HEX[b14] ..
           HEX[b15] .. HEX[b16]
end

-- deterministic JSON (sorted keys) for content keys
local function canon(v)
    local t = type(v)
    if v == null then
        return "null"
    elseif t == "table" then
        local keys = {}
        for k in pairs(v) do
            keys[#keys + 1] = k
        end
        sort(keys, function(a, b) return tostring(a) < tostring(b) end)
        local out = {}
        for i, k in ipairs(keys) do
            out[i] = canon(tostring(k)) .. ":" .. canon(v[k])
        end
        return "{" .. concat(out, ",") .. "}"
    elseif t == "string" then
        return format("%q", v)
    end
    return tostring(v)
end

-- parse ------------------------------------------------------------------

local function decode_input(input)
    if type(input) == "table" then
        return input
    end
    if type(input) ~= "string" then
        return nil, "expected a string or a table"
    end
    local text, err = store_mod.yaml_to_json(input)
    if not text then
        return nil, err
    end
    local doc, derr = json.decode(text)
    if derr or type(doc) ~= "table" then
        return nil, derr or "expected an object"
    end
    return doc
end

local function set_path(t, path, value)
    for i = 1, #path - 1 do
        local k = path[i]
        if type(t[k]) ~= "table" then
            t[k] = {}
        end
        t = t[k]
    end
    t[path[#path]] = value
end

-- path with k appended, a new table (no vararg: LuaJIT compiles none)
local function copy_path(path, k)
    local p = {}
    local n = 0
    for i, x in ipairs(path) do
        p[i] = x
        n = i
    end
    p[n + 1] = k
    return p
end

local function label_of(path)
    local out = {}
    for i = 1, #path, 2 do
        out[#out + 1] = path[i] .. "[" .. tostring(path[i + 1]) .. "]"
    end
    return concat(out, ".")
end

-- walk one list of entities of type typ (parent: {type, field, item})
local function walk(ctx, typ, list, path, parent)
    if type(list) ~= "table" then
        set_path(ctx.errs, path, "expected an array")
        ctx.flat[#ctx.flat + 1] = label_of(path) .. ": expected an array"
        return
    end
    local nested = NESTED[typ] or {}
    if typ == "consumers" then
        nested = setmetatable({}, { __index = function(_, k)
            return NESTED.consumers[k] or ctx.consumer_children[k]
        end })
    end
    for i, raw in ipairs(list) do
        local p = copy_path(path, i)
        if typ == "snis" and type(raw) == "string" then
            raw = { name = raw }     -- a certificate's snis: ["a.test"]
        end
        if type(raw) ~= "table" then
            set_path(ctx.errs, p, "expected a record")
            ctx.flat[#ctx.flat + 1] = label_of(p) .. ": expected a record"
        else
            local e, kids = {}, {}
            for k, v in pairs(raw) do
                if type(k) == "string" and nested[k] then
                    kids[#kids + 1] = k
                else
                    e[k] = v
                end
            end
            if parent then
                e[parent.field] = parent.item
            end
            local item = { type = typ, entity = e, path = p,
                           parent = parent }
            ctx.items[#ctx.items + 1] = item
            sort(kids)
            for _, k in ipairs(kids) do
                walk(ctx, k, raw[k], copy_path(p, k),
                     { type = typ, field = nested[k], item = item })
            end
        end
    end
end

local function natural_key(db, item)
    local dao = db[item.type]
    local e = item.entity
    local ek = dao and dao.def.endpoint_key
    if ek and type(e[ek]) == "string" then
        return e[ek]
    end
    local c = {}
    for k, v in pairs(e) do
        if not (item.parent and k == item.parent.field) then
            c[k] = v
        end
    end
    return canon(c)
end

local function assign_ids(db, ctx)
    -- parents come before their children in ctx.items
    for _, item in ipairs(ctx.items) do
        local e = item.entity
        if e.id == nil then
            local pid = item.parent and item.parent.item.entity.id or ""
            e.id = _M.uuid_v5(NS, item.type .. ":" .. natural_key(db, item)
                                  .. ":" .. tostring(pid))
        end
    end
end

-- foreign values: a parent item, a name or id string, or {id = ...}
local function resolve_refs(db, ctx)
    local by_type = {}
    for _, item in ipairs(ctx.items) do
        local t = by_type[item.type]
        if not t then
            t = {}
            by_type[item.type] = t
        end
        local e = item.entity
        if type(e.id) == "string" then
            t[e.id] = e
        end
        local ek = db[item.type] and db[item.type].def.endpoint_key
        if ek and type(e[ek]) == "string" then
            t["\0" .. e[ek]] = e
        end
    end
    for _, item in ipairs(ctx.items) do
        local dao = db[item.type]
        for _, f in ipairs(dao and dao.foreign or {}) do
            local v = item.entity[f.name]
            if type(v) == "table" and v.entity then        -- a parent item
                item.entity[f.name] = { id = v.entity.id }
            elseif type(v) == "table" and v.id == nil then
                -- {name = "x"} / {username = "x"}: by the endpoint key
                local rdao = db[f.field.reference]
                local ek = rdao and rdao.def.endpoint_key
                local key = ek and v[ek]
                local target = type(key) == "string"
                               and (by_type[f.field.reference] or {})["\0" .. key]
                if target then
                    item.entity[f.name] = { id = target.id }
                else
                    local p = copy_path(item.path, f.name)
                    local msg = format("could not find %s '%s'",
                                       f.field.reference, tostring(key))
                    set_path(ctx.errs, p, msg)
                    ctx.flat[#ctx.flat + 1] = label_of(item.path) .. ": " ..
                                              f.name .. ": " .. msg
                end
            elseif type(v) == "string" then
                local t = by_type[f.field.reference] or {}
                local target = t[v] or t["\0" .. v]
                if target then
                    item.entity[f.name] = { id = target.id }
                elseif find(v, "^%x+%-%x+%-%x+%-%x+%-%x+$") then
                    item.entity[f.name] = { id = v }
                else
                    local p = copy_path(item.path, f.name)
                    local msg = format("could not find %s '%s'",
                                       f.field.reference, v)
                    set_path(ctx.errs, p, msg)
                    ctx.flat[#ctx.flat + 1] = label_of(item.path) .. ": " ..
                                              f.name .. ": " .. msg
                end
            end
        end
    end
end

-- validate each entity; item.row becomes the processed row
local function validate(db, ctx)
    for _, item in ipairs(ctx.items) do
        local dao = db[item.type]
        local schema, serr = dao.schema, nil
        if item.type == "plugins" then
            schema, serr = dao:plugin_check(item.entity)
        end
        local row, errs
        if schema then
            row, errs = schema:process_auto_fields(item.entity, "insert")
            if row then
                if dao.def.normalize then
                    dao.def.normalize(row)
                end
                local ok
                ok, errs = schema:validate(row, true)
                if ok then
                    errs = nil
                end
            end
        else
            errs = serr.fields
        end
        if errs then
            for k, v in pairs(errs) do
                set_path(ctx.errs, copy_path(item.path, k), v)
            end
            for _, line in ipairs(serrors.flatten(errs)) do
                ctx.flat[#ctx.flat + 1] = label_of(item.path) .. ": " ..
                                          line
            end
        else
            item.row = row
        end
    end
end

--- parse(db, input) -> { [type] = { rows... } } | nil, err, err_t
function _M.parse(db, input)
    local doc, derr = decode_input(input)
    local E = db.errors
    if not doc then
        local err_t = E:declarative_config({ error = derr })
        err_t.message = "failed parsing declarative configuration: " ..
                        tostring(derr)
        err_t.flattened = { derr }
        return nil, tostring(err_t), err_t
    end
    local ctx = { items = {}, errs = {}, flat = {}, consumer_children = {} }
    for n, def in pairs(db:plugin_entities()) do
        for _, item in ipairs(def.fields) do
            local fname, f = next(item)
            if f.type == "foreign" and f.reference == "consumers" then
                ctx.consumer_children[n] = fname
            end
        end
    end
    local fv = doc._format_version
    if fv == nil then
        ctx.errs._format_version = "required field missing"
    elseif fv ~= "3.0" and fv ~= "2.1" and fv ~= "1.1" then
        ctx.errs._format_version = "value must be one of: 1.1, 2.1, 3.0"
    end
    local known = {}
    for _, n in ipairs(db:entity_names()) do
        known[n] = true
    end
    for k in pairs(doc) do
        if not known[k] and k ~= "_format_version" and k ~= "_transform"
           and k ~= "_comment" and k ~= "_workspace" then
            ctx.errs[k] = "unknown field"
        end
    end
    for k, msg in pairs(ctx.errs) do
        ctx.flat[#ctx.flat + 1] = k .. ": " .. msg
    end
    for _, typ in ipairs(db:entity_names()) do
        if doc[typ] ~= nil and doc[typ] ~= null then
            walk(ctx, typ, doc[typ], { typ })
        end
    end
    assign_ids(db, ctx)
    resolve_refs(db, ctx)
    validate(db, ctx)
    if next(ctx.errs) then
        sort(ctx.flat)
        local err_t = E:declarative_config(ctx.errs)
        err_t.flattened = ctx.flat
        return nil, tostring(err_t), err_t
    end
    local out = {}
    for _, item in ipairs(ctx.items) do
        local t = out[item.type]
        if not t then
            t = {}
            out[item.type] = t
        end
        t[#t + 1] = item.row
    end
    return out
end

--- import(db, input) -> true, { [type] = count } | nil, err, err_t
function _M.import(db, input)
    local by_type, err, err_t = _M.parse(db, input)
    if not by_type then
        return nil, err, err_t
    end
    local list, counts, rows = {}, {}, {}
    for _, typ in ipairs(db:entity_names()) do
        local dao = db[typ]
        for _, row in ipairs(by_type[typ] or {}) do
            if dao.def.hash_password and type(row.password) == "string" then
                row.password = dao.def.hash_password(row.password,
                                                     row.consumer.id)
            end
            local e, jerr = dao:to_store(row)
            if not e then
                err_t = db.errors:database_error(jerr)
                return nil, tostring(err_t), err_t
            end
            list[#list + 1] = e
            rows[#list] = row
            counts[typ] = (counts[typ] or 0) + 1
        end
    end
    local ok, serr = db.store:replace_all(list)
    if not ok then
        local row = rows[(serr.index or -1) + 1]
        local dao = db[serr.type ~= "" and serr.type or "services"]
        err_t = dao and dao:store_error(serr, row, "insert")
                or db.errors:database_error(serr.msg)
        return nil, tostring(err_t), err_t
    end
    return true, counts
end

-- export -----------------------------------------------------------------

local YAML_PLAIN_KEY = "^[%a_][%w_%-]*$"

local function yaml_str(s)
    s = gsub(s, '[%c"\\\127]', function(c)
        if c == '"' then return '\\"' end
        if c == "\\" then return "\\\\" end
        if c == "\n" then return "\\n" end
        if c == "\t" then return "\\t" end
        if c == "\r" then return "\\r" end
        return format("\\x%02x", byte(c))
    end)
    return '"' .. s .. '"'
end

local function yaml_key(k)
    k = tostring(k)
    if find(k, YAML_PLAIN_KEY) and k ~= "null" and k ~= "true"
       and k ~= "false" then
        return k
    end
    return yaml_str(k)
end

local function is_array(t)
    local n = 0
    for k in pairs(t) do
        if type(k) ~= "number" then
            return false
        end
        n = n + 1
    end
    return n == #t
end

local function yaml_scalar(v)
    local t = type(v)
    if v == null or v == nil then
        return "null"
    elseif t == "string" then
        return yaml_str(v)
    elseif t == "number" then
        if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
            return format("%d", v)
        end
        return format("%.17g", v)
    end
    return tostring(v)
end

local emit

-- value at indent level `ind`; empty: "{}" or "[]" as `empty` says
local EMPTY_ARRAY = setmetatable({}, { __index = { yaml = "[]" } })
local EMPTY_RECORD = setmetatable({}, { __index = { yaml = "{}" } })

local function emit_value(out, v, ind, empty)
    if v == EMPTY_ARRAY or v == EMPTY_RECORD then
        out[#out] = out[#out] .. " " .. v.yaml
    elseif type(v) ~= "table" or v == null then
        out[#out] = out[#out] .. " " .. yaml_scalar(v)
    elseif next(v) == nil then
        out[#out] = out[#out] .. " " .. (empty or "[]")
    else
        emit(out, v, ind)
    end
end

emit = function(out, t, ind)
    local pad = string.rep("  ", ind)
    if is_array(t) then
        for _, v in ipairs(t) do
            if type(v) == "table" and v ~= null and next(v) ~= nil
               and not is_array(v) then
                local first = true
                local keys = {}
                for k in pairs(v) do keys[#keys + 1] = k end
                sort(keys, function(a, b) return tostring(a) < tostring(b) end)
                for _, k in ipairs(keys) do
                    out[#out + 1] = pad .. (first and "- " or "  ") ..
                                    yaml_key(k) .. ":"
                    first = false
                    emit_value(out, v[k], ind + 2, "{}")
                end
            else
                out[#out + 1] = pad .. "-"
                emit_value(out, v, ind + 1)
            end
        end
    else
        local keys = {}
        for k in pairs(t) do keys[#keys + 1] = k end
        sort(keys, function(a, b) return tostring(a) < tostring(b) end)
        for _, k in ipairs(keys) do
            out[#out + 1] = pad .. yaml_key(k) .. ":"
            emit_value(out, t[k], ind + 1, "{}")
        end
    end
end

--- A small YAML emitter for export: block style, every string
-- double-quoted (no YAML implicit typing can bite), sorted keys.
function _M.to_yaml(doc, order)
    local out = {}
    for _, k in ipairs(order) do
        if doc[k] ~= nil then
            out[#out + 1] = yaml_key(k) .. ":"
            emit_value(out, doc[k], 1, "[]")
        end
    end
    return concat(out, "\n") .. "\n"
end

-- the exported form of a row: nulls dropped, foreign keys as ids, empty
-- records kept as records
local function export_row(dao, row)
    local out = {}
    for k, v in pairs(row) do
        if v ~= null then
            local f = dao.schema.fields[k]
            if f and f.type == "foreign" and type(v) == "table" then
                v = v.id
            elseif f and type(v) == "table" and next(v) == nil then
                v = (f.type == "record" or f.type == "map") and EMPTY_RECORD
                    or EMPTY_ARRAY
            end
            out[k] = v
        end
    end
    return out
end

--- export(db, "yaml" | "json") -> text | nil, err
function _M.export(db, fmt)
    local list, version = db.store:export()
    if not list then
        return nil, version.msg
    end
    local doc = { _format_version = "3.0" }
    local order = { "_format_version" }
    for _, e in ipairs(list) do
        local dao = db[e.type]
        local row = json.decode(e.json)
        if dao and type(row) == "table" then
            if not doc[e.type] then
                doc[e.type] = {}
                order[#order + 1] = e.type
            end
            local t = doc[e.type]
            t[#t + 1] = export_row(dao, row)
        end
    end
    if fmt == "json" then
        -- the sentinels become marker strings, then [] and {}
        for _, typ in ipairs(order) do
            for _, row in ipairs(type(doc[typ]) == "table" and doc[typ]
                                 or {}) do
                for k, v in pairs(row) do
                    if v == EMPTY_ARRAY or v == EMPTY_RECORD then
                        row[k] = "\1mg-empty-" .. v.yaml .. "\1"
                    end
                end
            end
        end
        local text = json.encode(doc)
        text = gsub(text, '"\1mg%-empty%-(..)\1"', "%1")
        text = gsub(text, '"\\u0001mg%-empty%-(..)\\u0001"', "%1")
        return text
    end
    return _M.to_yaml(doc, order)
end

return _M
