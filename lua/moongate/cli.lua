-- moongate.cli -- the Lua half of the commands that move whole
-- configurations in and out of the entity store.  The core runs each
-- function in a VM of its own, closed afterwards (mg_lua_cli in
-- core/lua/mg_lua.c), so no LMDB handle outlives the call -- the master
-- calls import_declarative before it forks.
--
--   import_declarative(conf_json, path|nil) -> message | nil, err
--     database = off at start and reload: the declarative file (or, with
--     no file, an empty configuration) replaces the store's content in
--     one transaction -- the path POST /config takes.
--   db_import(conf_json, path) -> message | nil, err
--     `moongate config db_import FILE`: the same import into a database =
--     lmdb store.
--   db_export(conf_json, path) -> message | nil, err
--     `moongate config db_export FILE`: every entity as a declarative
--     file (YAML, or JSON when the name ends in .json); "-" is stdout.
--
-- Errors are lines naming the entity and field, as `moongate check`
-- prints them.

local cjson = require "cjson.safe"

local type = type
local tostring = tostring
local concat = table.concat
local format = string.format

local _M = {}

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local s = f:read("*a")
    f:close()
    return s
end

-- the plugin loader's search path, ngx and kong, before schemas load
local function install(conf)
    require("moongate.runloop").install_globals()
    return conf
end

local function open_db(conf)
    local DB = require "moongate.db"
    local db, err = DB.open(conf)
    if not db then
        return nil, err
    end
    return db, db.store
end

-- err, err_t -> the lines a person reads
local function explain(err, err_t)
    if type(err_t) == "table" and type(err_t.flattened) == "table"
       and #err_t.flattened > 0 then
        return concat(err_t.flattened, "\n  ")
    end
    if type(err_t) == "table" and type(err_t.lines) == "table"
       and #err_t.lines > 0 then
        return concat(err_t.lines, "\n  ")
    end
    return tostring(err)
end

local function import(conf_json, path, what)
    local conf = install(cjson.decode(conf_json))
    local text = '{"_format_version":"3.0"}'
    if path then
        local t, rerr = read_file(path)
        if not t then
            return nil, format("cannot read %s: %s", path, tostring(rerr))
        end
        text = t
    end
    local db, s = open_db(conf)
    if not db then
        return nil, s
    end
    local declarative = require "moongate.db.declarative"
    local ok, err, err_t = declarative.import(db, text)
    s:close()
    if not ok then
        return nil, format("%s %s is invalid:\n  %s", what,
                           path or "(empty)", explain(err, err_t))
    end
    return format("imported %s", path or "an empty configuration")
end

function _M.import_declarative(conf_json, path)
    return import(conf_json, path, "declarative config")
end

function _M.db_import(conf_json, path)
    if not path then
        return nil, "db_import: a file is required"
    end
    return import(conf_json, path, "declarative config")
end

function _M.db_export(conf_json, path)
    local conf = install(cjson.decode(conf_json))
    if not path then
        return nil, "db_export: a file is required"
    end
    local db, s = open_db(conf)
    if not db then
        return nil, s
    end
    local declarative = require "moongate.db.declarative"
    local fmt = path:match("%.json$") and "json" or "yaml"
    local text, err = declarative.export(db, fmt)
    s:close()
    if not text then
        return nil, "export failed: " .. tostring(err)
    end
    if path == "-" then
        io.stdout:write(text)
        return ""
    end
    local f, ferr = io.open(path, "wb")
    if not f then
        return nil, format("cannot write %s: %s", path, tostring(ferr))
    end
    f:write(text)
    f:close()
    return format("exported to %s", path)
end

return _M
