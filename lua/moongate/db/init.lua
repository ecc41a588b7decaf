-- moongate.db -- Kong's entities and DAOs over the entity store.
--
--   local DB = require "moongate.db"
--   local db, err = DB.new {
--       store = handle,              -- moongate.db.store.open(...) / .fake()
--       enabled_plugins = { "key-auth", ... },   -- or "bundled,a,b"
--       database = "lmdb",           -- or "off": writes are refused
--   }
--
-- db.<entity> is the DAO of an entity: services, routes, upstreams,
-- targets, consumers, plugins, certificates, snis, ca_certificates,
-- keyauth_credentials, basicauth_credentials, jwt_secrets, acls, and any
-- entity an enabled plugin declares in its daos.lua (Kong's format: an
-- array of definitions, or a map name -> definition).  Each DAO has
-- Kong's API and return values:
--
--   dao:insert(entity, opts)             -> entity | nil, err, err_t
--   dao:select(pk)                       -> entity | nil | nil, err, err_t
--   dao:update(pk, patch, opts)          -> entity | nil, err, err_t
--   dao:upsert(pk, entity, opts)         -> entity | nil, err, err_t
--   dao:delete(pk, opts)                 -> true | nil, err, err_t
--   dao:select_by_<unique>(value)        (name, username, key, ...)
--   dao:update_by_<unique>(value, patch) / upsert_by_<unique>(value, e)
--   dao:delete_by_<unique>(value)
--   dao:select_by_key(id_or_endpoint_key)   the Admin API's "{id|name}"
--   dao:page(size, offset, opts)         -> rows, nil, nil, next | nil, err, err_t
--   dao:page_for_<fk>(fk, size, offset, opts)  e.g. routes:page_for_service({id=})
--   dao:each(size, opts)                 -> iterator: row | nil, err, err_t
--   dao:cache_key(entity | k1, ...)      -> "<type>:<k1>:...:" (Kong's)
--   dao:select_by_cache_key(key)
--   dao.schema                           the moongate.schema object
--
-- pk is { id = "<uuid>" }.  page: size 1..1000 (default 100); opts.tags =
-- { ... } (at most 5) with opts.tags_cond "and" (default for one tag) or
-- "or"; next is an opaque offset, nil on the last page.  Entities come
-- back with every default filled and absent optional fields as
-- Schema.null (cjson.null), foreign keys as { id = ... }, timestamps in
-- integer seconds (targets: Kong's milliseconds).  PATCH merges the patch
-- into the stored entity (records field by field) and validates the
-- whole.  err_t = { code, name, message, fields?, strategy = "lmdb" |
-- "off" } with Kong's codes: 1 invalid primary key, 2 schema violation,
-- 3 primary key violation, 4 foreign key violation, 5 unique constraint
-- violation, 6 not found, 7 invalid offset, 8 database error, 9 invalid
-- size, 10 invalid unique, 11 invalid options, 12 operation unsupported,
-- 14 invalid declarative configuration; err = tostring(err_t) =
-- "[lmdb] <message>".
--
-- Plugins: `config` is validated against the plugin's own schema
-- (moongate.plugin_loader), a plugin not in enabled_plugins is a schema
-- violation on `name` with Kong's message.  basicauth passwords are
-- stored as Kong stores them: hex sha1(password .. consumer_id).
--
-- DB.new is cheap and has no side effect: DAOs are built on first use,
-- plugin schemas and daos.lua are loaded on first need (so kong.db can be
-- handed to plugins).  Declarative import/export: moongate.db.declarative.
--
-- Rejected: Kong's strategy layer (one connector per database) -- there
-- is one store, its two backends share one contract (mg_store.h).

local errors = require "moongate.db.errors"
local dao_mod = require "moongate.db.dao"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local require = require
local setmetatable = setmetatable
local gmatch = string.gmatch
local find = string.find
local format = string.format

local _M = {}

--- Kong's own entities, in Kong's dependency order.
_M.CORE_ENTITIES = {
    "certificates", "ca_certificates", "snis", "services", "routes",
    "upstreams", "targets", "consumers", "keyauth_credentials",
    "basicauth_credentials", "jwt_secrets", "acls", "plugins",
}
local CORE = {}
for _, n in ipairs(_M.CORE_ENTITIES) do
    CORE[n] = true
end

local DB = {}

local function plugin_list(list)
    local names, seen = {}, {}
    local function add(n)
        if n == "bundled" then
            local ok, c = pcall(require, "moongate.constants")
            for _, b in ipairs(ok and c.BUNDLED_PLUGINS or {}) do
                add(b)
            end
        elseif n ~= "" and n ~= "off" and not seen[n] then
            seen[n] = true
            names[#names + 1] = n
        end
    end
    if type(list) == "string" then
        for n in gmatch(list, "[^,%s]+") do
            add(n)
        end
    elseif type(list) == "table" then
        for _, n in ipairs(list) do
            add(n)
        end
    end
    return names, seen
end

--- db, err = DB.new{ store =, enabled_plugins =, database = }
function _M.new(opts)
    if type(opts) ~= "table" or type(opts.store) ~= "table" then
        return nil, "moongate.db: opts.store is required"
    end
    local database = opts.database or "lmdb"
    if database ~= "lmdb" and database ~= "off" then
        return nil, format("moongate.db: unknown database '%s'",
                           tostring(database))
    end
    local names, enabled = plugin_list(opts.enabled_plugins)
    local strategy = database == "off" and "off" or "lmdb"
    local db = {
        store = opts.store,
        strategy = strategy,
        database = database,
        errors = errors.new(strategy),
        enabled_plugins = names,
        _enabled = enabled,
        _daos = {},
        _plugins = {},
        _plugin_errs = {},
    }
    return setmetatable(db, DB)
end

--- db, err = DB.open(conf): the entity store under conf.prefix opened in
-- this process (an LMDB handle must not cross fork), with conf.plugins
-- enabled and conf.database's strategy -- conf is kong.configuration or
-- the core's property document.
function _M.open(conf)
    local store_mod = require "moongate.db.store"
    local s, err = store_mod.open(tostring(conf.prefix) .. "/lmdb",
                                  tonumber(conf.lmdb_map_size) or 0)
    if not s then
        return nil, "cannot open the entity store: " .. tostring(err)
    end
    local db, derr = _M.new { store = s, enabled_plugins = conf.plugins,
                              database = conf.database }
    if not db then
        s:close()
        return nil, derr
    end
    return db
end

function DB:__index(k)
    local m = DB[k]
    if m ~= nil then
        return m
    end
    if type(k) ~= "string" then
        return nil
    end
    local dao = self:dao(k)
    return dao
end

--- The DAO of entity `name` (nil, err when there is none).
function DB:dao(name)
    local daos = rawget(self, "_daos")
    local d = daos[name]
    if d then
        return d
    end
    local def
    if CORE[name] then
        def = require("moongate.db.schema.entities." .. name)
    else
        def = self:plugin_entities()[name]
    end
    if not def then
        return nil, "no such entity: " .. tostring(name)
    end
    local err
    d, err = dao_mod.new(self, def)
    if not d then
        return nil, err
    end
    daos[name] = d
    return d
end

--- The plugin entity schema of an enabled plugin, or nil and a message.
function DB:plugin_schema(name)
    local cached = self._plugins[name]
    if cached then
        return cached
    end
    if not self._enabled[name] then
        return nil, format("plugin '%s' not enabled; add it to the " ..
                           "'plugins' configuration property", name)
    end
    local loader = require "moongate.plugin_loader"
    local plugin, err = loader.load(name)
    if not plugin then
        self._plugin_errs[name] = err
        return nil, err
    end
    self._plugins[name] = plugin.schema
    return plugin.schema
end

--- Entities declared by enabled plugins' daos.lua: name -> definition.
function DB:plugin_entities()
    local found = rawget(self, "_plugin_entities")
    if found then
        return found
    end
    found = {}
    for _, pname in ipairs(self.enabled_plugins) do
        local ok, defs = pcall(require, "kong.plugins." .. pname .. ".daos")
        if ok and type(defs) == "table" then
            for k, def in pairs(defs) do
                if type(def) == "table" then
                    local n = type(def.name) == "string" and def.name or k
                    if type(n) == "string" and not CORE[n] then
                        def.name = n
                        found[n] = def
                    end
                end
            end
        elseif not ok and not find(tostring(defs), "not found", 1, true) then
            self._plugin_errs[pname] = defs
        end
    end
    rawset(self, "_plugin_entities", found)
    return found
end

--- Every entity name: Kong's, then plugin-declared ones (by name).
function DB:entity_names()
    local list = {}
    for i, n in ipairs(_M.CORE_ENTITIES) do
        list[i] = n
    end
    local extra = {}
    for n in pairs(self:plugin_entities()) do
        extra[#extra + 1] = n
    end
    table.sort(extra)
    for _, n in ipairs(extra) do
        list[#list + 1] = n
    end
    return list
end

return _M
