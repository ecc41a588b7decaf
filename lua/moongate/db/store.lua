-- moongate.db.store -- the entity store as the DAO sees it: one handle
-- with insert / update / upsert / delete / get / list / replace_all /
-- export / version / check, over either backend:
--
--   store.open(dir, map_size)  the LMDB store of the core
--                              (core/store/mg_store.h through the FFI
--                              wrappers of core/lua/mg_lua_store.c)
--   store.fake()               an in-memory store with the same semantics
--                              (moongate.db.store_fake), for unit specs on
--                              plain Lua 5.1 and for tools outside the
--                              binary
--
-- An entity `e` is { type =, id =, json =, uniques = {{field, value}...},
-- refs = {{field, type, id, on_delete}...}, tags = {...} }; on_delete is
-- store.ON_DELETE.default / restrict / cascade (0 / 1 / 2).  The store
-- never reads `json`; the DAO computes uniques, refs and tags from the
-- schema.  Failures return nil and err_t = { code = store.E.*, index,
-- type, id, field, ref_type, ref_id, msg } (mg_store_err_t's fields, msg
-- worded as Kong's).
--
-- Wire format to C: items "<length>:<bytes>" (see mg_lua_store.c).
-- Rejected: a lua_CFunction binding -- the classic C API would need its
-- own Lua-version glue, the FFI call needs only the declarations
-- moongate.ffi already has.

local api = require "moongate.ffi"

local type = type
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local find = string.find
local sub = string.sub
local concat = table.concat

local _M = {}

-- MG_STORE_E_* of mg_store.h
_M.E = {
    INVALID = -100, NOT_FOUND = -101, EXISTS = -102, UNIQUE = -103,
    FOREIGN = -104, OFFSET = -105, FULL = -106, IO = -107,
}
_M.ERROR = -1   -- MG_ERROR: out of memory

_M.ON_DELETE = { default = 0, restrict = 1, cascade = 2 }

-- Kong's rule for a reference (mg_store_on_delete_default).
local CASCADES = {
    plugins = { service = true, route = true, consumer = true },
    targets = { upstream = true },
    snis = { certificate = true },
    keyauth_credentials = { consumer = true },
    basicauth_credentials = { consumer = true },
    jwt_secrets = { consumer = true },
    hmacauth_credentials = { consumer = true },
    oauth2_credentials = { consumer = true },
    oauth2_tokens = { credential = true },
    oauth2_authorization_codes = { credential = true },
    acls = { consumer = true },
}

function _M.on_delete_default(typ, field)
    local c = CASCADES[typ]
    return (c and c[field]) and _M.ON_DELETE.cascade or _M.ON_DELETE.restrict
end

-- the export order's tie-break: Kong's order for its own types
local RANK = {}
for i, t in ipairs { "vaults", "certificates", "ca_certificates", "snis",
                     "services", "routes", "upstreams", "targets",
                     "consumers", "keyauth_credentials",
                     "basicauth_credentials", "jwt_secrets",
                     "hmacauth_credentials", "oauth2_credentials",
                     "acls" } do
    RANK[t] = i - 1
end
function _M.type_rank(typ)
    if typ == "plugins" then
        return 2000
    end
    return RANK[typ] or 1000
end

-- items ---------------------------------------------------------------

-- buf.n counts the pieces: `#buf` per piece costs a border search each
-- time, which a 10,000-entity import paid a million times
local function put(buf, s)
    s = tostring(s)
    local n = buf.n or 0
    buf[n + 1] = #s
    buf[n + 2] = ":"
    buf[n + 3] = s
    buf.n = n + 3
end

-- the item at pos: value, next position (nil, pos on malformed input)
local function item(s, pos)
    local colon = find(s, ":", pos, true)
    if not colon then
        return nil, pos
    end
    local n = tonumber(sub(s, pos, colon - 1))
    if not n then
        return nil, pos
    end
    return sub(s, colon + 1, colon + n), colon + n + 1
end

local function encode_entity(buf, e)
    put(buf, e.type)
    put(buf, e.id)
    put(buf, e.json or "")
    local u, r, t = e.uniques or {}, e.refs or {}, e.tags or {}
    put(buf, #u)
    for i = 1, #u do
        put(buf, u[i][1])
        put(buf, u[i][2])
    end
    put(buf, #r)
    for i = 1, #r do
        put(buf, r[i][1])
        put(buf, r[i][2])
        put(buf, r[i][3])
        put(buf, r[i][4] or 0)
    end
    put(buf, #t)
    for i = 1, #t do
        put(buf, t[i])
    end
end

local function decode_entity(s, pos)
    local e = { uniques = {}, refs = {}, tags = {} }
    local n
    e.type, pos = item(s, pos)
    e.id, pos = item(s, pos)
    e.json, pos = item(s, pos)
    n, pos = item(s, pos)
    for i = 1, tonumber(n) do
        local f, v
        f, pos = item(s, pos)
        v, pos = item(s, pos)
        e.uniques[i] = { f, v }
    end
    n, pos = item(s, pos)
    for i = 1, tonumber(n) do
        local f, t, id, od
        f, pos = item(s, pos)
        t, pos = item(s, pos)
        id, pos = item(s, pos)
        od, pos = item(s, pos)
        e.refs[i] = { f, t, id, tonumber(od) }
    end
    n, pos = item(s, pos)
    for i = 1, tonumber(n) do
        e.tags[i], pos = item(s, pos)
    end
    return e, pos
end

local function decode_err(rc, s)
    local err = { code = rc, index = -1, msg = "store error " .. rc }
    if type(s) ~= "string" or s == "" then
        return err
    end
    local pos, v = 1, nil
    local names = { "code", "index", "type", "id", "field", "ref_type",
                    "ref_id", "msg" }
    for i = 1, #names do
        v, pos = item(s, pos)
        if v == nil then
            return err
        end
        err[names[i]] = v
    end
    err.code = tonumber(err.code) or rc
    err.index = tonumber(err.index) or -1
    return err
end

_M.encode_entity = function(e)
    local buf = {}
    encode_entity(buf, e)
    return concat(buf)
end
_M.decode_entity = decode_entity

-- the LMDB backend ------------------------------------------------------

local LMDB = {}
LMDB.__index = LMDB

local ffi, C, errbuf, outp, outn, intp, sizep

local function ffi_init()
    if ffi then
        return true
    end
    if api.fake then
        return nil, "no entity store outside the moongate binary"
    end
    ffi = require "ffi"
    C = api.C
    errbuf = ffi.new("char[1024]")
    outp = ffi.new("char *[1]")
    outn = ffi.new("size_t[1]")
    intp = ffi.new("int[1]")
    sizep = ffi.new("size_t[1]")
    return true
end

local function ffi_err(rc)
    return nil, decode_err(rc, ffi.string(errbuf))
end

-- take the result buffer C handed over
local function ffi_out()
    local s = ffi.string(outp[0], outn[0])
    C.mg_lua_free(outp[0])
    outp[0] = nil
    return s
end

--- Open the LMDB store in dir (created when missing); map_size bytes
-- (0: 2 GB).  Returns the handle, or nil and a message.
function _M.open(dir, map_size)
    local ok, err = ffi_init()
    if not ok then
        return nil, err
    end
    errbuf[0] = 0
    local s = C.mg_lua_store_open(dir, map_size or 0, errbuf, 1024)
    if s == nil then
        return nil, ffi.string(errbuf)
    end
    return setmetatable({ s = ffi.gc(s, C.mg_lua_store_close),
                          backend = "lmdb" }, LMDB)
end

function LMDB:close()
    if self.s then
        C.mg_lua_store_close(ffi.gc(self.s, nil))
        self.s = nil
    end
end

local function write(self, op, e)
    local buf = {}
    encode_entity(buf, e)
    local s = concat(buf)
    intp[0] = 0
    local rc = C.mg_lua_store_write(self.s, op, s, #s, intp, errbuf, 1024)
    if rc ~= 0 then
        return ffi_err(rc)
    end
    return true, intp[0] == 1
end

function LMDB:insert(e) return write(self, 0, e) end
function LMDB:update(e) return write(self, 1, e) end
function LMDB:upsert(e) return write(self, 2, e) end

function LMDB:delete(typ, id)
    sizep[0] = 0
    local rc = C.mg_lua_store_delete(self.s, typ, id, #id, sizep, errbuf,
                                     1024)
    if rc ~= 0 then
        return ffi_err(rc)
    end
    return tonumber(sizep[0])
end

function LMDB:get(typ, key, by_field)
    local rc = C.mg_lua_store_get(self.s, typ, key, #key, by_field, outp,
                                  outn, errbuf, 1024)
    if rc ~= 0 then
        return ffi_err(rc)
    end
    return (decode_entity(ffi_out(), 1))
end

local function encode_filter(f)
    if not f then
        return ""
    end
    local buf = {}
    local tags = f.tags or {}
    put(buf, f.tags_any and 1 or 0)
    put(buf, #tags)
    for i = 1, #tags do
        put(buf, tags[i])
    end
    if f.ref then
        put(buf, 1)
        put(buf, f.ref[1])
        put(buf, f.ref[2])
        put(buf, f.ref[3])
    else
        put(buf, 0)
    end
    return concat(buf)
end

-- "count {entity}" from pos
local function decode_list(s, pos)
    local n
    n, pos = item(s, pos)
    local list = {}
    for i = 1, tonumber(n) do
        list[i], pos = decode_entity(s, pos)
    end
    return list
end

function LMDB:list(typ, filter, size, offset)
    local f = encode_filter(filter)
    offset = offset or ""
    local rc = C.mg_lua_store_list(self.s, typ, f, #f, size or 0, offset,
                                   #offset, outp, outn, errbuf, 1024)
    if rc ~= 0 then
        return ffi_err(rc)
    end
    local s = ffi_out()
    local nxt, pos = item(s, 1)
    return decode_list(s, pos), nxt ~= "" and nxt or nil
end

function LMDB:replace_all(list)
    local buf = {}
    put(buf, #list)
    for i = 1, #list do
        encode_entity(buf, list[i])
    end
    local s = concat(buf)
    local rc = C.mg_lua_store_replace_all(self.s, s, #s, errbuf, 1024)
    if rc ~= 0 then
        return ffi_err(rc)
    end
    return true
end

function LMDB:export()
    local rc = C.mg_lua_store_export(self.s, outp, outn, errbuf, 1024)
    if rc ~= 0 then
        return ffi_err(rc)
    end
    local s = ffi_out()
    local v, pos = item(s, 1)
    return decode_list(s, pos), tonumber(v)
end

function LMDB:version()
    return tonumber(C.mg_lua_store_version(self.s))
end

function LMDB:check()
    sizep[0] = 0
    local rc = C.mg_lua_store_check(self.s, sizep, errbuf, 1024)
    if rc ~= 0 then
        return ffi_err(rc)
    end
    return tonumber(sizep[0])
end

--- The in-memory backend (moongate.db.store_fake).
function _M.fake()
    return require("moongate.db.store_fake").new(_M)
end

--- YAML or JSON text -> JSON text (mg_lua_yaml_to_json; outside the
-- binary the fake reads JSON and a YAML subset).
function _M.yaml_to_json(text)
    if api.fake then
        local e, o, n = {}, {}, {}
        local rc = api.C.mg_lua_yaml_to_json(text, #text, o, n, e, 1024)
        if rc ~= 0 then
            return nil, e[0]
        end
        return o[0]
    end
    ffi_init()
    errbuf[0] = 0
    local rc = C.mg_lua_yaml_to_json(text, #text, outp, outn, errbuf, 1024)
    if rc ~= 0 then
        return nil, ffi.string(errbuf)
    end
    return ffi_out()
end

return _M
