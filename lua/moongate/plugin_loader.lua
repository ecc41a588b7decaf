-- moongate.plugin_loader -- finds and loads a plugin's handler and schema
-- by Kong's module names.
--
-- `kong.plugins.<name>.<module>` and `moongate.plugins.<name>.<module>`
-- resolve, in this order:
--   1. package.path as usual (a Kong-layout tree on lua_package_path:
--      <dir>/kong/plugins/<name>/handler.lua);
--   2. the bundled folder: <root>/plugins/<name>/<module>.lua;
--   3. a plugin folder directly under a lua_package_path entry:
--      "<dir>/?.lua" -> <dir>/<name>/<module>.lua (the layout plugins/
--      uses, and the one spec/fixtures/plugins/ uses).
-- Steps 2 and 3 are a package searcher appended to package.loaders /
-- package.searchers, so `require` inside a plugin finds its sibling
-- modules (`kong.plugins.<name>.access`) the same way.
--
-- The rocks tree of `moongate plugin install` (<prefix>/rocks, LuaRocks'
-- Lua 5.1 layout) is added to package.path and package.cpath by
-- install(), from `moongate.prefix` (set by the core).  It is searched
-- last: a rock adds modules, it never replaces one of the runtime, of
-- lua_package_path or of the system (a stray copy of cjson.so or of
-- kong.db.schema in a tree must not change what the runtime runs).  The
-- bundled folder (step 2) comes after package.path, so a rock's plugin
-- must not take a bundled plugin's name -- as in Kong, names are unique.
--
-- Loading checks Kong's handler contract (a table, a numeric PRIORITY, a
-- VERSION "x.y.z") and builds the plugin entity schema from schema.lua
-- (moongate.schema.new_plugin).  Errors use Kong's messages.
--
-- Rejected: copying plugin folders into a Kong-layout tree at start --
-- edits to a plugin would need a copy step, and error messages would
-- name the copies.

local Schema = require "moongate.schema"

local type = type
local pcall = pcall
local error = error
local tostring = tostring
local loadfile = loadfile
local gsub = string.gsub
local match = string.match
local find = string.find
local format = string.format
local concat = table.concat
local ipairs = ipairs

local _M = {}

local root                  -- the installation root (lua/, plugins/)
local installed = false

local function exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

local function candidates(name, rest)
    local rel = name .. "/" .. gsub(rest, "%.", "/")
    local list = {}
    if root then
        list[#list + 1] = root .. "/plugins/" .. rel .. ".lua"
        list[#list + 1] = root .. "/plugins/" .. rel .. "/init.lua"
    end
    for template in gsub(package.path, ";;", ";"):gmatch("[^;]+") do
        if find(template, "?", 1, true) then
            list[#list + 1] = (gsub(template, "%?", (gsub(rel, "%%", "%%%%"))))
        end
    end
    return list
end

local function searcher(modname)
    local name, rest = match(modname, "^kong%.plugins%.([^.]+)%.(.+)$")
    if not name then
        name, rest = match(modname, "^moongate%.plugins%.([^.]+)%.(.+)$")
    end
    if not name then
        return nil
    end
    local tried = {}
    for _, path in ipairs(candidates(name, rest)) do
        if exists(path) then
            local chunk, err = loadfile(path)
            if not chunk then
                error(format("error loading module '%s' from file '%s':\n\t%s",
                             modname, path, tostring(err)), 0)
            end
            return chunk, path
        end
        tried[#tried + 1] = "\n\tno file '" .. path .. "'"
    end
    return concat(tried)
end

-- "a;b" .. ";" .. "c", without doubling separators or adding an entry
-- twice
local function append_path(path, entries)
    for _, e in ipairs(entries) do
        if not find(";" .. path .. ";", ";" .. e .. ";", 1, true) then
            if path == "" or find(path, ";$") then
                path = path .. e
            else
                path = path .. ";" .. e
            end
        end
    end
    return path
end
_M.append_path = append_path

--- Put the rocks tree of `prefix` (<prefix>/rocks) on package.path and
-- package.cpath, last.  Idempotent.
function _M.add_rocks_tree(prefix)
    if type(prefix) ~= "string" or prefix == "" then
        return
    end
    local tree = gsub(prefix, "/+$", "") .. "/rocks"
    package.path = append_path(package.path, {
        tree .. "/share/lua/5.1/?.lua",
        tree .. "/share/lua/5.1/?/init.lua",
    })
    package.cpath = append_path(package.cpath, {
        tree .. "/lib/lua/5.1/?.so",
    })
end

--- Install the searcher (once) for plugins under `dir`/plugins, and the
-- rocks tree of `moongate.prefix` on the package paths.
function _M.install(dir)
    root = dir
    local mg = rawget(_G, "moongate")
    if type(mg) == "table" then
        _M.add_rocks_tree(mg.prefix)
    end
    if installed then
        return
    end
    local loaders = package.searchers or package.loaders
    loaders[#loaders + 1] = searcher
    installed = true
end

function _M.root()
    return root
end

-- require the first module of `names` that exists; a module that exists
-- but fails to load is an error (not "try the next")
local function require_first(names)
    local misses = {}
    for _, modname in ipairs(names) do
        local ok, mod = pcall(require, modname)
        if ok then
            return mod, modname
        end
        local msg = tostring(mod)
        if not find(msg, "module '" .. modname .. "' not found", 1, true) then
            return nil, msg, true
        end
        misses[#misses + 1] = msg
    end
    return nil, concat(misses, "\n")
end

--- Load plugin `name`: { name, handler, schema, priority, version } or
-- nil and Kong's message.
function _M.load(name)
    if type(name) ~= "string" or not match(name, "^[%w_%-]+$") then
        return nil, "invalid plugin name: " .. tostring(name)
    end
    local handler, err, broken = require_first {
        "kong.plugins." .. name .. ".handler",
        "moongate.plugins." .. name .. ".handler",
    }
    if not handler then
        if broken then
            return nil, format("error loading plugin '%s': %s", name, err)
        end
        return nil, name .. " plugin is enabled but not installed;\n" .. err
    end
    if type(handler) ~= "table" then
        return nil, format('Plugin "%s" cannot be loaded because its ' ..
                           'handler is not a table, got: "%s".', name,
                           type(handler))
    end
    if type(handler.PRIORITY) ~= "number" then
        return nil, format('Plugin "%s" cannot be loaded because its ' ..
                           'PRIORITY field is not a valid integer number, ' ..
                           'got: "%s".', name, tostring(handler.PRIORITY))
    end
    if type(handler.VERSION) ~= "string" or
       not match(handler.VERSION, "^%d+%.%d+%.%d+") then
        return nil, format('Plugin "%s" cannot be loaded because its ' ..
                           'VERSION field does not follow the "x.y.z" ' ..
                           'format, got: "%s".', name,
                           tostring(handler.VERSION))
    end

    local def
    def, err, broken = require_first {
        "kong.plugins." .. name .. ".schema",
        "moongate.plugins." .. name .. ".schema",
    }
    if not def then
        if broken then
            return nil, format("error loading plugin schemas: on plugin " ..
                               "'%s': %s", name, err)
        end
        return nil, "no configuration schema found for plugin: " .. name
    end
    if type(def) ~= "table" then
        return nil, format("error loading plugin schemas: on plugin '%s': " ..
                           "schema.lua must return a table", name)
    end
    if def.name == nil then
        local copy = {}
        for k, v in pairs(def) do
            copy[k] = v
        end
        copy.name = name
        def = copy
    end
    local schema, serr = Schema.new_plugin(def)
    if not schema then
        return nil, format("error loading plugin schemas: on plugin '%s': %s",
                           name, tostring(serr))
    end
    return {
        name = name,
        handler = handler,
        schema = schema,
        priority = handler.PRIORITY,
        version = handler.VERSION,
    }
end

return _M
