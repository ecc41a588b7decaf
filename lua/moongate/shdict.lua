-- moongate.shdict -- ngx.shared.DICT: OpenResty's shared dictionary API in
-- lua-resty-core's shape (methods called with ':', the same return values
-- and error strings: `ok, err, forcible`, `value, flags`, `value, flags,
-- stale`, `newval, err, forcible`) over the core's mg_shdict_* functions
-- (core/lua/mg_lua_api.h, core/store/mg_shdict.c).
--
-- Lifecycle: `_M.shared` (ngx.shared) lists the dictionaries of the
-- `lua_shared_dict` property, and kong.cache's `kong_db_cache` and
-- `kong_locks` the core adds when the property does not name them
-- (mg_shdict_declare).  The VM is built in the master after the
-- dictionaries are mapped and inherited by the workers, so a dictionary
-- object a plugin keeps in an upvalue at load time stays valid in every
-- worker: it holds only the dictionary's index.  Values are copied out of
-- shared memory under the dictionary's lock; nothing here yields.
--
-- Not provided (they raise a clear error): the list methods lpush, rpush,
-- lpop, rpop, llen, and get's optional flags filter.
-- Rejected: a userdata per dictionary as OpenResty has -- a table with the
-- index is all the FFI calls need, and it survives the fork unchanged.

local api = require "moongate.ffi"

local C = api.C
local OK, DECLINED = api.OK, api.DECLINED
local str, cstr = api.str, api.cstr
local type = type
local error = error
local tostring = tostring
local tonumber = tonumber
local rawget = rawget
local rawset = rawset
local setmetatable = setmetatable
local find = string.find
local sub = string.sub

-- value types and store ops of mg_lua_api.h (ngx_lua's)
local T_NIL, T_BOOLEAN, T_NUMBER, T_STRING = 0, 1, 3, 4
local OP_SET, OP_ADD, OP_REPLACE, OP_SAFE = 0, 1, 2, 4

local INDEX = {}         -- a dictionary object's private slot: its index

-- out-parameters, shared: FFI calls never yield
local typ, num, flg, stl, frc, ival, ttlv, sp, sn, errp
if api.fake then
    typ, num, flg, stl, frc, ival, ttlv, sp, sn, errp =
        {}, {}, {}, {}, {}, {}, {}, {}, {}, {}
else
    local ffi = require "ffi"
    typ, flg, stl, frc = ffi.new("int[1]"), ffi.new("int[1]"),
                         ffi.new("int[1]"), ffi.new("int[1]")
    num, ival, ttlv = ffi.new("double[1]"), ffi.new("double[1]"),
                      ffi.new("double[1]")
    sp, sn = ffi.new("const char *[1]"), ffi.new("size_t[1]")
    errp = ffi.new("const char *[1]")
end

local _M = {}

local DICT = {}
DICT.__index = DICT

local function check_zone(zone)
    local d = type(zone) == "table" and rawget(zone, INDEX)
    if type(d) ~= "number" then
        error("bad \"zone\" argument", 3)
    end
    return d
end

-- key or nil, err (as lua-resty-core)
local function check_key(key)
    if key == nil then
        return nil, "nil key"
    end
    if type(key) ~= "string" then
        key = tostring(key)
    end
    local n = #key
    if n == 0 then
        return nil, "empty key"
    end
    if n > 65535 then
        return nil, "key too long"
    end
    return key
end

local function store(zone, op, key, value, exptime, flags)
    local d = check_zone(zone)
    if exptime == nil then
        exptime = 0
    else
        exptime = tonumber(exptime)
        if not exptime or exptime < 0 then
            error("bad \"exptime\" argument", 3)
        end
    end
    if flags == nil then
        flags = 0
    else
        flags = tonumber(flags)
        if not flags then
            error("bad \"flags\" argument", 3)
        end
    end
    local err
    key, err = check_key(key)
    if not key then
        return nil, err
    end
    local vt, n, s, sl = type(value), 0, nil, 0
    if vt == "string" then
        vt, s, sl = T_STRING, value, #value
    elseif vt == "number" then
        vt, n = T_NUMBER, value
    elseif value == nil then
        vt = T_NIL
    elseif vt == "boolean" then
        vt, n = T_BOOLEAN, value and 1 or 0
    else
        return nil, "bad value type"
    end
    local rc = C.mg_shdict_store(d, op, key, #key, vt, n, s, sl, exptime,
                                 flags, frc, errp)
    if rc == OK then
        return true, nil, frc[0] == 1
    end
    return false, cstr(errp[0]), frc[0] == 1
end

local function get(zone, key, stale)
    local d = check_zone(zone)
    local err
    key, err = check_key(key)
    if not key then
        return nil, err
    end
    local rc = C.mg_shdict_get(d, key, #key, stale and 1 or 0, typ, num, sp,
                               sn, flg, stl)
    if rc == DECLINED then
        return nil
    end
    if rc ~= OK then
        error("failed to get the key", 3)
    end
    local t, val = typ[0], nil
    if t == T_STRING then
        val = str(sp[0], sn[0])
    elseif t == T_NUMBER then
        val = tonumber(num[0])
    elseif t == T_BOOLEAN then
        val = num[0] ~= 0
    end
    local f = tonumber(flg[0])
    if stale then
        return val, f ~= 0 and f or nil, stl[0] == 1
    end
    if f ~= 0 then
        return val, f
    end
    return val
end

--- value, flags (flags only when not 0); nil when absent or expired.
function DICT.get(zone, key)
    return get(zone, key, false)
end

--- value, flags, stale: as get, and an expired value not yet evicted.
function DICT.get_stale(zone, key)
    return get(zone, key, true)
end

--- ok, err, forcible.  May evict least recently used items for room.
function DICT.set(zone, key, value, exptime, flags)
    return store(zone, OP_SET, key, value, exptime, flags)
end

--- As set, but fails with "no memory" rather than evict.
function DICT.safe_set(zone, key, value, exptime, flags)
    return store(zone, OP_SET + OP_SAFE, key, value, exptime, flags)
end

--- As set, but fails with "exists" when the key holds a live value.
function DICT.add(zone, key, value, exptime, flags)
    return store(zone, OP_ADD, key, value, exptime, flags)
end

function DICT.safe_add(zone, key, value, exptime, flags)
    return store(zone, OP_ADD + OP_SAFE, key, value, exptime, flags)
end

--- As set, but fails with "not found" unless the key holds a live value.
function DICT.replace(zone, key, value, exptime, flags)
    return store(zone, OP_REPLACE, key, value, exptime, flags)
end

function DICT.delete(zone, key)
    return store(zone, OP_SET, key, nil)
end

--- newval (newval, nil, forcible with init) or nil, err ("not found",
-- "not a number", "no memory").  With init, an absent or expired key
-- becomes init + value, expiring after init_ttl seconds (0: never).
function DICT.incr(zone, key, value, init, init_ttl)
    local d = check_zone(zone)
    local err
    key, err = check_key(key)
    if not key then
        return nil, err
    end
    if type(value) ~= "number" then
        local v = tonumber(value)
        if not v then
            error("bad \"value\" argument: number expected, got "
                  .. type(value), 2)
        end
        value = v
    end
    if init ~= nil and type(init) ~= "number" then
        local v = tonumber(init)
        if not v then
            error("bad init arg: number expected, got " .. type(init), 2)
        end
        init = v
    end
    if init_ttl ~= nil then
        local t = type(init_ttl)
        if t ~= "number" then
            init_ttl = tonumber(init_ttl)
            if not init_ttl then
                error("bad init_ttl arg: number expected, got " .. t, 2)
            end
        end
        if init_ttl < 0 then
            error("bad \"init_ttl\" argument", 2)
        end
        if init == nil then
            error("must provide \"init\" when providing \"init_ttl\"", 2)
        end
    else
        init_ttl = 0
    end
    ival[0] = value
    local rc = C.mg_shdict_incr(d, key, #key, ival, init and 1 or 0,
                                init or 0, init_ttl, frc, errp)
    if rc ~= OK then
        return nil, cstr(errp[0])
    end
    if init == nil then
        return tonumber(ival[0])
    end
    return tonumber(ival[0]), nil, frc[0] == 1
end

--- Seconds left (0: never expires), or nil, "not found".
function DICT.ttl(zone, key)
    local d = check_zone(zone)
    local err
    key, err = check_key(key)
    if not key then
        return nil, err
    end
    if C.mg_shdict_ttl(d, key, #key, ttlv) == DECLINED then
        return nil, "not found"
    end
    return tonumber(ttlv[0])
end

--- true, or nil, "not found".  exptime 0: never expires.
function DICT.expire(zone, key, exptime)
    local d = check_zone(zone)
    exptime = tonumber(exptime)
    if not exptime or exptime < 0 then
        error("bad \"exptime\" argument", 2)
    end
    local err
    key, err = check_key(key)
    if not key then
        return nil, err
    end
    if C.mg_shdict_expire(d, key, #key, exptime) == DECLINED then
        return nil, "not found"
    end
    return true
end

--- Expire every item (get_stale still sees them until they are evicted).
function DICT.flush_all(zone)
    C.mg_shdict_flush_all(check_zone(zone))
end

--- Free expired items, at most max (default 0: all); returns how many.
function DICT.flush_expired(zone, max)
    local d = check_zone(zone)
    max = tonumber(max) or 0
    return tonumber(C.mg_shdict_flush_expired(d, max < 0 and 0 or max))
end

--- Live keys, most recently used first, at most max (default 1024,
-- 0: all -- which can hold the lock a while on a big dictionary).
function DICT.get_keys(zone, max)
    local d = check_zone(zone)
    max = tonumber(max) or 1024
    local n = C.mg_shdict_get_keys(d, max < 0 and 0 or max, sp, sn)
    local keys = {}
    if n <= 0 then
        return keys
    end
    local s, pos = str(sp[0], sn[0]), 1
    for i = 1, n do
        local colon = find(s, ":", pos, true)
        local len = tonumber(sub(s, pos, colon - 1))
        keys[i] = sub(s, colon + 1, colon + len)
        pos = colon + len + 1
    end
    return keys
end

--- Bytes the dictionary was declared with.
function DICT.capacity(zone)
    return tonumber(C.mg_shdict_capacity(check_zone(zone)))
end

--- Bytes in free pages (memory inside partly used pages not counted, as
-- ngx_lua's).
function DICT.free_space(zone)
    return tonumber(C.mg_shdict_free_space(check_zone(zone)))
end

for _, name in ipairs { "lpush", "rpush", "lpop", "rpop", "llen" } do
    DICT[name] = function()
        error("ngx.shared.DICT:" .. name .. " is not available in this "
              .. "Moongate build", 2)
    end
end

local function zone_new(d, name)
    return setmetatable({ [INDEX] = d, name = name }, DICT)
end

--- ngx.shared: name -> dictionary object (nil for an undeclared name).
_M.shared = setmetatable({}, {
    __index = function(t, name)
        if type(name) ~= "string" then
            return nil
        end
        local d = C.mg_shdict_find(name, #name)
        if d < 0 then
            return nil
        end
        local zone = zone_new(d, name)
        rawset(t, name, zone)
        return zone
    end,
})

-- every declared dictionary is there for pairs(ngx.shared) too
for d = 0, C.mg_shdict_count() - 1 do
    if C.mg_shdict_name(d, sp, sn) == OK then
        local name = str(sp[0], sn[0])
        rawset(_M.shared, name, zone_new(d, name))
    end
end

_M.DICT = DICT

return _M
