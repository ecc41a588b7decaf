-- kong.cache -- the entity cache plugins use to remember what a loader
-- callback found (lua-resty-mlcache's API as Kong exposes it):
--
--   local v, err, hit_level = kong.cache:get(key, opts, loader, ...)
--
-- In this build it is one in-memory table per worker (hit_level 1 on a
-- hit, 3 when the loader ran); the LMDB-backed shared level comes with the
-- store.  A loader that returns nil is cached as a miss for neg_ttl
-- (negative caching); one that returns nil, err or throws is not cached
-- and get returns nil, err.  ttl / neg_ttl 0 mean "never expires"
-- (Kong's db_cache_ttl = 0 default).  The loader's third return value,
-- when a number, overrides the ttl for that value.  Entries beyond
-- `max_items` are evicted oldest first.
--
-- Not yet: a per-key lock (two requests that miss the same key while the
-- first loader waits both run the loader), cross-worker invalidation.

local api = require "moongate.ffi"

local C = api.C
local type = type
local pcall = pcall
local error = error
local tostring = tostring

local NEG = {}   -- the cached "no value"

local Cache = {}
Cache.__index = Cache

local _M = {}

--- A new cache.  opts: ttl (default 0), neg_ttl (default ttl), max_items
-- (default 10000).
function _M.new(opts)
    opts = opts or {}
    local ttl = opts.ttl or 0
    return setmetatable({
        ttl = ttl,
        neg_ttl = opts.neg_ttl or ttl,
        max_items = opts.max_items or 10000,
        items = {},         -- key -> { value, expires (0: never), seq }
        count = 0,
        fifo = {},          -- insertion order: { key, seq }
        head = 1,
        tail = 0,
        seq = 0,
    }, Cache)
end

local function now()
    local t = C.mg_lua_now()
    if t == 0 then             -- before the loop runs (the master)
        return os.time()
    end
    return t
end

local function store(self, key, value, ttl)
    local items = self.items
    if not items[key] then
        self.count = self.count + 1
    end
    self.seq = self.seq + 1
    items[key] = { value, ttl > 0 and (now() + ttl) or 0, self.seq }
    self.tail = self.tail + 1
    self.fifo[self.tail] = { key, self.seq }
    -- evict the oldest entries still current
    while self.count > self.max_items and self.head <= self.tail do
        local e = self.fifo[self.head]
        self.fifo[self.head] = nil
        self.head = self.head + 1
        local it = items[e[1]]
        if it and it[3] == e[2] then
            items[e[1]] = nil
            self.count = self.count - 1
        end
    end
    -- compact the queue of stale positions now and then
    if self.tail - self.head > 4 * self.max_items then
        local fifo, n = {}, 0
        for i = self.head, self.tail do
            local e = self.fifo[i]
            local it = e and items[e[1]]
            if it and it[3] == e[2] then
                n = n + 1
                fifo[n] = e
            end
        end
        self.fifo, self.head, self.tail = fifo, 1, n
    end
end

local function lookup(self, key)
    local it = self.items[key]
    if not it then
        return nil
    end
    if it[2] ~= 0 and it[2] <= now() then
        self.items[key] = nil
        self.count = self.count - 1
        return nil
    end
    return it
end

local function check_key(key)
    if type(key) ~= "string" then
        error("key must be a string", 3)
    end
end

--- value, err, hit_level
function Cache:get(key, opts, cb, ...)
    check_key(key)
    if opts ~= nil and type(opts) ~= "table" then
        error("opts must be a table", 2)
    end
    local it = lookup(self, key)
    if it then
        local v = it[1]
        if v == NEG then
            return nil, nil, 1
        end
        return v, nil, 1
    end
    if cb == nil then
        return nil
    end
    if type(cb) ~= "function" then
        error("callback must be a function", 2)
    end
    local ok, value, err, ttl = pcall(cb, ...)
    if not ok then
        return nil, "callback threw an error: " .. tostring(value)
    end
    if value == nil and err ~= nil then
        return nil, err
    end
    local t
    if value == nil then
        t = opts and opts.neg_ttl or self.neg_ttl
        store(self, key, NEG, t)
        return nil, nil, 3
    end
    t = (type(ttl) == "number" and ttl) or (opts and opts.ttl) or self.ttl
    store(self, key, value, t)
    return value, nil, 3
end

--- ttl (remaining seconds, 0: never expires), err, value -- or nil when
-- absent.
function Cache:probe(key)
    check_key(key)
    local it = lookup(self, key)
    if not it then
        return nil
    end
    local ttl = it[2] == 0 and 0 or (it[2] - now())
    local v = it[1]
    if v == NEG then
        v = nil
    end
    return ttl, nil, v
end

function Cache:invalidate_local(key)
    check_key(key)
    if self.items[key] then
        self.items[key] = nil
        self.count = self.count - 1
    end
    return true
end

function Cache:invalidate(key)
    return self:invalidate_local(key)
end

--- Store a value directly (mlcache's set).
function Cache:safe_set(key, value, ttl)
    check_key(key)
    if value == nil then
        value = NEG
    end
    store(self, key, value, ttl or self.ttl)
    return true
end

function Cache:purge()
    self.items, self.count = {}, 0
    self.fifo, self.head, self.tail = {}, 1, 0
    return true
end

return _M
