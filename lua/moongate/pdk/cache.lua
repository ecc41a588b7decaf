-- kong.cache -- the entity cache plugins use to remember what a loader
-- callback found: lua-resty-mlcache as Kong's kong/cache/init.lua wraps it.
--
--   local v, err, hit_level = kong.cache:get(key, opts, loader, ...)
--
-- Three levels, as mlcache: L1 is a table in the worker's VM (hit_level
-- 1); L2 the `kong_db_cache` shared dictionary (core/store/mg_shdict.c,
-- sized by mem_cache_size), one per node, read by every worker (hit_level
-- 2); L3 the loader, run by one worker at a time per key (hit_level 3).
-- A stale L2 value brought back by resurrect_ttl after a failing loader is
-- hit_level 4.
--
-- L2 holds a string per key: "<version>:<at>:<ttl>:" and the value in a
-- small self-describing encoding (nil, booleans, numbers to the last bit,
-- strings, tables with keys of those types, nested; metatables are
-- dropped, functions, userdata and cycles refused), expiring with the
-- entry's ttl.  A loader that returns nil is cached as a miss for neg_ttl;
-- one that returns nil, err or throws is not cached and get returns nil,
-- err.  ttl / neg_ttl 0 mean "never expires" (Kong's db_cache_ttl = 0).
--
-- Locks.  A miss takes the key's lock in `kong_locks` (resty.lock's way:
-- an `add` with an expiry; the waiter sleeps 1 ms, doubling up to 0.5 s,
-- with ngx.sleep, so only its request waits), reads L2 again -- the
-- holder may have just stored it -- and only then runs the loader.  Past
-- the lock timeout (5 s) get returns nil, "could not acquire callback
-- lock: timeout" as mlcache does.  Where ngx.sleep cannot wait
-- (header_filter, body_filter, log, outside a request) a locked key's
-- loader runs without the lock.
--
-- Config versions.  Every config version (an Admin API write, POST
-- /config, a DB-less reload) must empty the cache in every worker, since
-- a loader read entities that may have changed.  Each worker drops its L1 when it
-- switches (`_M.configure`), and L2 entries carry the version they were
-- loaded under: a worker ignores those of another version, so a worker
-- that switches late (or a loader that started before the switch) never
-- hands stale data to one that switched.  Rejected: flushing L2 at each
-- switch -- a worker still on the old version would refill it with old
-- data after the flush.
--
-- Invalidation.  invalidate / invalidate_local / safe_set / purge change
-- L2 and append to an invalidation log in `kong_locks` (a sequence number
-- and one entry per event); every get first compares the sequence with
-- the last one this worker applied (one shared-dictionary read) and drops
-- the keys logged since from its L1.  A log entry it cannot find (evicted,
-- expired after 5 minutes, or not written yet) makes it drop its whole L1:
-- never a stale value, at worst a few more L2 reads.  This is mlcache's
-- own ipc_shm design; Kong relays the same events through worker_events,
-- which Moongate delivers within one worker only.  A loader that was
-- running when its key was invalidated does not store what it read.
--
-- A cache made without `shm_name` (or when the dictionary is not
-- declared: mem_cache_size = 0) is L1 only, per worker.

local api = require "moongate.ffi"
local context = require "moongate.context"
local shdict = require "moongate.shdict"

local C = api.C
local type = type
local pcall = pcall
local error = error
local select = select
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local format = string.format
local find = string.find
local sub = string.sub
local byte = string.byte
local concat = table.concat
local floor = math.floor
local huge = math.huge
local min = math.min
local max = math.max

local NEG = {}                 -- L1's "cached miss"

local IPC_TTL = 300            -- s an invalidation stays in the log
local IPC_SPAN = 10000         -- events one poll replays; more: drop all
local SET_TRIES = 3            -- L2 stores retried on "no memory"
local STALE = 1                -- L2 flag of a resurrected value
local FORGOTTEN = 1024         -- dropped keys a finishing load checks

-- resty.lock's defaults, as mlcache passes them
local LOCK_DEFAULTS = { exptime = 30, timeout = 5, step = 0.001, ratio = 2,
                        max_step = 0.5 }

-- phases where ngx.sleep can wait
local WAIT_PHASES = { rewrite = true, access = true, response = true }

local Cache = {}
Cache.__index = Cache

local _M = {}

local function now()
    local t = C.mg_lua_now()
    if t == 0 then             -- before the loop runs (the master)
        return os.time()
    end
    return t
end

-- encoding -----------------------------------------------------------------

local encode_into

local function encode_number(v, buf, n)
    if v ~= v then
        buf[n + 1] = "N"
    elseif v == huge then
        buf[n + 1] = "I"
    elseif v == -huge then
        buf[n + 1] = "J"
    else
        buf[n + 1] = format("d%.17g;", v)
    end
    return n + 1
end

-- append v's encoding to buf[n+1..]; the new n, or nil, err
function encode_into(v, buf, n, seen)
    local t = type(v)
    if t == "string" then
        buf[n + 1] = "s" .. #v .. ":"
        buf[n + 2] = v
        return n + 2
    elseif t == "number" then
        return encode_number(v, buf, n)
    elseif t == "boolean" then
        buf[n + 1] = v and "t" or "f"
        return n + 1
    elseif v == nil then
        buf[n + 1] = "n"
        return n + 1
    elseif t == "table" then
        if seen[v] then
            return nil, "cannot serialize a table that contains itself"
        end
        seen[v] = true
        buf[n + 1] = "T"
        n = n + 1
        local err
        for k, e in pairs(v) do
            n, err = encode_into(k, buf, n, seen)
            if not n then
                return nil, err
            end
            n, err = encode_into(e, buf, n, seen)
            if not n then
                return nil, err
            end
        end
        seen[v] = nil
        buf[n + 1] = "e"
        return n + 1
    end
    return nil, "cannot serialize a " .. t
end

local function encode(v)
    local buf = {}
    local n, err = encode_into(v, buf, 0, {})
    if not n then
        return nil, err
    end
    return (concat(buf, "", 1, n))
end

local decode_at

-- the value encoded at s[i..], and the index after it; nil, nil, err
function decode_at(s, i)
    local c = byte(s, i)
    if c == 115 then                                        -- s
        local colon = find(s, ":", i + 1, true)
        local len = colon and tonumber(sub(s, i + 1, colon - 1))
        if not len or colon + len > #s then
            return nil, nil, "bad string"
        end
        return sub(s, colon + 1, colon + len), colon + len + 1
    elseif c == 100 then                                    -- d
        local semi = find(s, ";", i + 1, true)
        local v = semi and tonumber(sub(s, i + 1, semi - 1))
        if not v then
            return nil, nil, "bad number"
        end
        return v, semi + 1
    elseif c == 116 then                                    -- t
        return true, i + 1
    elseif c == 102 then                                    -- f
        return false, i + 1
    elseif c == 110 then                                    -- n
        return nil, i + 1
    elseif c == 78 then                                     -- N
        return 0 / 0, i + 1
    elseif c == 73 then                                     -- I
        return huge, i + 1
    elseif c == 74 then                                     -- J
        return -huge, i + 1
    elseif c == 84 then                                     -- T
        local t, k, v, err = {}, nil, nil, nil
        i = i + 1
        while byte(s, i) ~= 101 do                          -- e
            if i > #s then
                return nil, nil, "truncated table"
            end
            k, i, err = decode_at(s, i)
            if err then
                return nil, nil, err
            end
            v, i, err = decode_at(s, i)
            if err then
                return nil, nil, err
            end
            if k ~= nil then
                t[k] = v
            end
        end
        return t, i + 1
    end
    return nil, nil, "bad type tag"
end

-- L2 entries: "<version>:<at>:<ttl>:<value>"
local function entry_encode(version, value, ttl)
    local v, err = encode(value)
    if not v then
        return nil, err
    end
    return format("%s:%.3f:%s:", version, now(), ttl) .. v
end

-- version, at, ttl, value; or nil, err
local function entry_decode(s)
    local a = find(s, ":", 1, true)
    local b = a and find(s, ":", a + 1, true)
    local c = b and find(s, ":", b + 1, true)
    if not c then
        return nil, "bad entry"
    end
    local value, _, err = decode_at(s, c + 1)
    if err then
        return nil, err
    end
    return sub(s, 1, a - 1), tonumber(sub(s, a + 1, b - 1)),
           tonumber(sub(s, b + 1, c - 1)), value
end

_M.encode = encode
_M.decode = function(s)
    local v, _, err = decode_at(s, 1)
    if err then
        return nil, err
    end
    return v
end

-- L1 -----------------------------------------------------------------------

local function l1_clear(self)
    self.items, self.count = {}, 0
    self.fifo, self.head, self.tail = {}, 1, 0
    self.epoch = self.epoch + 1      -- loads in flight must not store
end

local function l1_store(self, key, value, ttl)
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

local function l1_lookup(self, key)
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

-- Drop key from L1, and remember it among the last FORGOTTEN keys
-- dropped, so that a load of it in flight does not store (forgotten_since).
-- Rejected: a count of loads in flight per key -- a request abandoned
-- while its loader waits never decrements it.
local function l1_forget(self, key)
    if self.items[key] then
        self.items[key] = nil
        self.count = self.count - 1
    end
    local n = self.forgets + 1
    self.forgets = n
    self.forgot[n] = key
    self.forgot[n - FORGOTTEN] = nil
end

-- Was key dropped since forgets was `since`?  (true when unsure)
local function forgotten_since(self, key, since)
    local n = self.forgets
    if n - since > FORGOTTEN then
        return true
    end
    for i = since + 1, n do
        if self.forgot[i] == key then
            return true
        end
    end
    return false
end

-- L1 gets value (NEG for nil) through the l1_serializer; value or nil, err
local function l1_set(self, key, value, ttl, l1_serializer)
    if value == nil then
        l1_store(self, key, NEG, ttl)
        return nil
    end
    if l1_serializer then
        local ok, v, err = pcall(l1_serializer, value)
        if not ok then
            return nil, "l1_serializer threw an error: " .. tostring(v)
        end
        if err then
            return nil, err
        end
        if v == nil then
            return nil, "l1_serializer returned a nil value"
        end
        value = v
    end
    l1_store(self, key, value, ttl)
    return value
end

-- invalidation log -------------------------------------------------------

-- Apply the events other workers logged since the last poll.
local function poll(self)
    local locks = self.locks
    if not locks then
        return
    end
    local cur = locks:get(self.ipc_key) or 0
    local last = self.ipc_seq
    if cur == last then
        return
    end
    self.ipc_seq = cur
    if cur < last or cur - last > IPC_SPAN then
        l1_clear(self)               -- the log restarted, or we lag too far
        return
    end
    local prefix = self.ipc_key .. ":"
    for i = last + 1, cur do
        local ev = locks:get(prefix .. i)
        if type(ev) ~= "string" or ev == "p" then
            l1_clear(self)           -- a purge, or an event we lost
            return
        end
        l1_forget(self, sub(ev, 2))
    end
end

-- Log ev ("p": purge, "i<key>": invalidate key) for the other workers.
local function broadcast(self, ev)
    local locks = self.locks
    if not locks then
        return true
    end
    -- a log that starts again (flushed, evicted, a new dictionary) starts
    -- far above any number a worker saw, so pollers notice the gap
    local seq, err = locks:incr(self.ipc_key, 1, floor(now()) * 1048576)
    if not seq then
        return nil, "could not broadcast: " .. tostring(err)
    end
    local k = self.ipc_key .. ":" .. seq
    local ok
    ok, err = locks:safe_set(k, ev, IPC_TTL)
    if not ok then
        ok, err = locks:set(k, ev, IPC_TTL)
        if not ok then
            return nil, "could not broadcast: " .. tostring(err)
        end
    end
    if seq == self.ipc_seq + 1 then
        self.ipc_seq = seq           -- ours, already applied here
    end
    return true
end

-- locks --------------------------------------------------------------------

local function can_wait()
    local ctx = context.current
    if not ctx then
        return false
    end
    if ctx.timer then
        return true
    end
    return ctx.r ~= nil and WAIT_PHASES[ctx.phase] == true
end

-- The lock of key: a token, or nil, "timeout" | "cannot wait" | err.
local function lock(self, key)
    local locks, o = self.locks, self.lock_opts
    local lkey = self.lock_prefix .. key
    self.tokens = self.tokens + 1
    local token = format("%d:%d", C.mg_lua_worker_pid(), self.tokens)
    local step, left = o.step, o.timeout
    local first = true
    while true do
        local ok, err = locks:add(lkey, token, o.exptime)
        if ok then
            return token
        end
        if err ~= "exists" then
            return nil, err
        end
        if first and not can_wait() then
            return nil, "cannot wait"
        end
        if left <= 0 then
            return nil, "timeout"
        end
        if not first then
            step = min(max(0.001, step * o.ratio), o.max_step)
        end
        first = false
        if step > left then
            step = left
        end
        ngx.sleep(step)
        left = left - step
    end
end

local function unlock(self, key, token)
    local lkey = self.lock_prefix .. key
    if token and self.locks:get(lkey) == token then
        self.locks:delete(lkey)
    end
end

-- L2 -----------------------------------------------------------------------

-- An L2 entry's load time, ttl and value when it was loaded under the
-- running version; nil when absent or of another version; nil, err.
local function l2_entry(self, raw)
    if type(raw) ~= "string" then
        return nil
    end
    local version, at, ttl, value = entry_decode(raw)
    if not version then
        return nil, "could not deserialize value after lua_shared_dict " ..
                    "retrieval: " .. tostring(at)
    end
    if version ~= self.version or not at or not ttl then
        return nil
    end
    return at, ttl, value
end

-- Read key from L2 and copy a fresh value into L1.  Returns
--   value, nil, 2 | 4      a fresh value (4: a resurrected one)
--   value, nil, "stale"    expired but not evicted (for resurrect_ttl)
--   nil                    absent, or loaded under another version
--   nil, err
local function l2_get(self, key, l1_serializer)
    local raw, flags, went_stale = self.dict:get_stale(key)
    local at, ttl, value = l2_entry(self, raw)
    if not at then
        return nil, ttl
    end
    if went_stale then
        return value, nil, "stale"
    end
    local level = flags == STALE and 4 or 2
    local left = 0
    if ttl ~= 0 then
        left = ttl - (now() - at)
        if left <= 0 then
            return value, nil, level  -- about to expire: not worth L1
        end
    end
    local v, err = l1_set(self, key, value, left, l1_serializer)
    if err then
        return nil, err
    end
    return v, nil, level
end

-- Store value (nil: a miss) in L2 under the running version; true, or
-- nil, err (the value cannot be encoded, or L2 refused it).
local function l2_set(self, key, value, ttl, flags, safe)
    local s, err = entry_encode(self.version, value, ttl)
    if not s then
        return nil, "could not serialize value for lua_shared_dict " ..
                    "insertion: " .. err
    end
    local dict, ok = self.dict, nil
    if safe then
        ok, err = dict:safe_set(key, s, ttl, flags)
    else
        for _ = 1, SET_TRIES do
            ok, err = dict:set(key, s, ttl, flags)
            if ok or err ~= "no memory" then
                break
            end
        end
    end
    if not ok then
        return nil, "could not write to lua_shared_dict '" .. self.shm ..
                    "': " .. tostring(err)
    end
    return true
end

-- get ----------------------------------------------------------------------

local function check_key(key)
    if type(key) ~= "string" then
        error("key must be a string", 3)
    end
end

local function check_ttl(opts, name)
    local v = opts[name]
    if v ~= nil and (type(v) ~= "number" or v < 0) then
        error("opts." .. name .. " must be a number >= 0", 5)
    end
    return v
end

-- ttl, neg_ttl, resurrect_ttl, l1_serializer for one call (errors blame
-- the plugin: call_opts < get < Cache:get or get_bulk < the plugin)
local function call_opts(self, opts)
    if opts == nil then
        return self.ttl, self.neg_ttl, self.resurrect_ttl, nil
    end
    if type(opts) ~= "table" then
        error("opts must be a table", 4)
    end
    local ser = opts.l1_serializer
    if ser ~= nil and type(ser) ~= "function" then
        error("opts.l1_serializer must be a function", 4)
    end
    local ttl = check_ttl(opts, "ttl")
    local neg_ttl = check_ttl(opts, "neg_ttl")
    local resurrect_ttl = check_ttl(opts, "resurrect_ttl")
    if ttl == nil then
        ttl = self.ttl
    end
    if neg_ttl == nil then
        neg_ttl = self.neg_ttl
    end
    if resurrect_ttl == nil then
        resurrect_ttl = self.resurrect_ttl
    end
    return ttl, neg_ttl, resurrect_ttl, ser
end

-- Run the loader and store what it returns, unless the key was
-- invalidated, the cache purged or the config version changed meanwhile.
local function load(self, key, ttl, neg_ttl, resurrect_ttl, ser, stale,
                    cb, ...)
    local version, epoch, forgets = self.version, self.epoch, self.forgets
    local ok, value, err, new_ttl = pcall(cb, ...)
    poll(self)                       -- invalidations logged meanwhile
    -- what the loader read may predate a change made since it started
    local changed = epoch ~= self.epoch or version ~= self.version
                    or forgotten_since(self, key, forgets)
    if not ok then
        return nil, "callback threw an error: " .. tostring(value)
    end
    if err ~= nil then
        err = tostring(err)
        if stale == nil or not resurrect_ttl or not self.dict or changed then
            return nil, err
        end
        -- mlcache: the stale value lives resurrect_ttl more seconds
        ngx.log(ngx.WARN, "callback returned an error (", err, ") but ",
                "stale value found in shm will be resurrected for ",
                resurrect_ttl, "s (resurrect_ttl)")
        local v = stale[1]
        local sok, serr = l2_set(self, key, v, resurrect_ttl, STALE)
        if not sok then
            ngx.log(ngx.WARN, "could not resurrect stale data (", serr, ")")
        end
        v, serr = l1_set(self, key, v, resurrect_ttl, ser)
        if serr then
            return nil, serr
        end
        return v, nil, 4
    end
    if type(new_ttl) == "number" then
        if new_ttl < 0 then
            return value, nil, 3     -- the loader says: do not cache
        end
        if value == nil then
            neg_ttl = new_ttl
        else
            ttl = new_ttl
        end
    end
    if changed then
        return value, nil, 3         -- keep it out of the cache
    end
    local t = value == nil and neg_ttl or ttl
    if self.dict then
        local sok, serr = l2_set(self, key, value, t, 0)
        if not sok then
            if not find(serr, "no memory", 1, true) then
                return nil, serr
            end
            ngx.log(ngx.WARN, serr, " (kept in this worker only; consider ",
                    "a larger mem_cache_size)")
        end
    end
    local v, serr = l1_set(self, key, value, t, ser)
    if serr then
        return nil, serr
    end
    return v, nil, 3
end

local function get(self, key, opts, cb, ...)
    local ttl, neg_ttl, resurrect_ttl, ser = call_opts(self, opts)
    poll(self)
    local it = l1_lookup(self, key)
    if it then
        local v = it[1]
        if v == NEG then
            return nil, nil, 1
        end
        return v, nil, 1
    end
    local stale
    if self.dict then
        local v, err, level = l2_get(self, key, ser)
        if err then
            return nil, err
        end
        if level == "stale" then
            stale = { v }
        elseif level then
            return v, nil, level
        end
    end
    if cb == nil then
        return nil
    end
    if not self.locks then
        return load(self, key, ttl, neg_ttl, resurrect_ttl, ser, stale, cb,
                    ...)
    end
    local token, lerr = lock(self, key)
    if not token and lerr ~= "timeout" and lerr ~= "cannot wait" then
        return nil, "could not acquire callback lock: " .. tostring(lerr)
    end
    -- the holder we waited for (or a worker that finished between our
    -- read and our lock) may have stored it
    local v, err, level = l2_get(self, key, ser)
    if err or (level and level ~= "stale") then
        unlock(self, key, token)
        if err then
            return nil, err
        end
        return v, nil, level
    end
    if level == "stale" then
        stale = { v }
    end
    if lerr == "timeout" then
        if stale == nil or not resurrect_ttl then
            return nil, "could not acquire callback lock: timeout"
        end
        ngx.log(ngx.WARN, "could not acquire callback lock: timeout")
        return stale[1], nil, 4
    end
    v, err, level = load(self, key, ttl, neg_ttl, resurrect_ttl, ser, stale,
                         cb, ...)
    unlock(self, key, token)
    return v, err, level
end

-- API ----------------------------------------------------------------------

--- value, err, hit_level (1: this worker, 2: the node's shared
-- dictionary, 3: the loader ran, 4: a stale value resurrected).  opts:
-- ttl, neg_ttl, resurrect_ttl, l1_serializer.  The loader cb(...)
-- returns value[, err[, ttl]]; without cb, a lookup only.
function Cache:get(key, opts, cb, ...)
    check_key(key)
    if cb ~= nil and type(cb) ~= "function" then
        error("callback must be a function", 2)
    end
    return get(self, key, opts, cb, ...)
end

--- mlcache's bulk get: bulk = { n = N, key, opts, cb, arg, ... } (4
-- slots per operation); returns { n = 3N, value, err, hit_level, ... }.
-- Operations run one after the other (opts.concurrency is accepted and
-- ignored); opts.skip_callback = true makes them lookups.
function Cache:get_bulk(bulk, opts)
    if type(bulk) ~= "table" then
        error("bulk must be a table", 2)
    end
    if type(bulk.n) ~= "number" then
        error("bulk must have n field", 2)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("opts must be a table", 2)
    end
    local skip = opts and opts.skip_callback == true
    local res = { n = bulk.n * 3 }
    for i = 1, bulk.n do
        local b = (i - 1) * 4
        local key, o, cb = bulk[b + 1], bulk[b + 2], bulk[b + 3]
        if type(key) ~= "string" then
            error("key at index " .. (b + 1) .. " must be a string for " ..
                  "operation " .. i .. " (got " .. type(key) .. ")", 2)
        end
        if cb ~= nil and type(cb) ~= "function" then
            error("callback at index " .. (b + 3) .. " must be a function " ..
                  "for operation " .. i .. " (got " .. type(cb) .. ")", 2)
        end
        local r = (i - 1) * 3
        res[r + 1], res[r + 2], res[r + 3] =
            get(self, key, o, not skip and cb or nil, bulk[b + 4])
    end
    return res
end

--- ttl (remaining seconds, 0: never expires), err, value -- or nil when
-- absent.  Reads the node's shared level (mlcache's peek).
function Cache:probe(key)
    check_key(key)
    if not self.dict then
        local it = l1_lookup(self, key)
        if not it then
            return nil
        end
        local v = it[1]
        if v == NEG then
            v = nil
        end
        return it[2] == 0 and 0 or (it[2] - now()), nil, v
    end
    local at, ttl, value = l2_entry(self, self.dict:get(key))
    if not at then
        return nil, ttl
    end
    if ttl == 0 then
        return 0, nil, value
    end
    return ttl - (now() - at), nil, value
end

--- Drop key from this node: the shared level and every worker's L1
-- (Kong's "local" is the node; there is no cluster-wide event here).
-- true, or nil, err.
function Cache:invalidate_local(key)
    check_key(key)
    if self.dict then
        self.dict:delete(key)
    end
    l1_forget(self, key)
    local ok, err = broadcast(self, "i" .. key)
    if not ok then
        ngx.log(ngx.ERR, "[DB cache] failed to invalidate '", key, "': ", err)
        return nil, err
    end
    return true
end

--- As invalidate_local: every worker of the node forgets key.
function Cache:invalidate(key)
    check_key(key)
    return self:invalidate_local(key)
end

--- Store a value directly (mlcache's set; nil caches a miss) for ttl
-- seconds (default: the cache's ttl); every worker sees it.  Never evicts
-- other entries: true, or nil, "no memory".
function Cache:safe_set(key, value, ttl)
    check_key(key)
    if ttl ~= nil and (type(ttl) ~= "number" or ttl < 0) then
        error("ttl must be a number >= 0", 2)
    end
    if ttl == nil then
        ttl = value == nil and self.neg_ttl or self.ttl
    end
    if not self.dict then
        l1_forget(self, key)
        if value == nil then
            value = NEG
        end
        l1_store(self, key, value, ttl)
        return true
    end
    local ok, err = l2_set(self, key, value, ttl, 0, true)
    if not ok then
        return nil, err
    end
    l1_forget(self, key)
    ok, err = broadcast(self, "i" .. key)
    if not ok then
        return nil, err
    end
    return true
end

--- Empty the cache in every worker of the node.  true, or nil, err.
function Cache:purge()
    if self.dict then
        self.dict:flush_all()
        self.dict:flush_expired()
    end
    l1_clear(self)
    local ok, err = broadcast(self, "p")
    if not ok then
        ngx.log(ngx.ERR, "[DB cache] failed to purge: ", err)
        return nil, err
    end
    return true
end

-- module functions (not methods: the runtime's, not the plugins') ----------

local function positive(v, name)
    if v ~= nil and (type(v) ~= "number" or v < 0) then
        error("opts." .. name .. " must be a number >= 0", 3)
    end
    return v
end

--- A new cache.  opts: shm_name (the shared level's dictionary; none: L1
-- only), shm_locks (locks and invalidation log; default shm_name), ttl
-- (default 0), neg_ttl (default ttl), resurrect_ttl (default none),
-- lru_size or max_items (L1 entries, default 10000), resty_lock_opts
-- (exptime 30, timeout 5, step 0.001, ratio 2, max_step 0.5).
function _M.new(opts)
    opts = opts or {}
    local ttl = positive(opts.ttl, "ttl") or 0
    local lock_opts = {}
    for k, v in pairs(LOCK_DEFAULTS) do
        local o = opts.resty_lock_opts and opts.resty_lock_opts[k]
        lock_opts[k] = type(o) == "number" and o or v
    end
    local self = setmetatable({
        ttl = ttl,
        neg_ttl = positive(opts.neg_ttl, "neg_ttl") or ttl,
        resurrect_ttl = positive(opts.resurrect_ttl, "resurrect_ttl"),
        max_items = opts.lru_size or opts.max_items or 10000,
        lock_opts = lock_opts,
        version = "0",
        epoch = 0,          -- L1 clears so far
        forgets = 0,        -- keys dropped so far
        forgot = {},        -- the last FORGOTTEN of them: number -> key
        tokens = 0,
        seq = 0,
    }, Cache)
    l1_clear(self)
    local shm = opts.shm_name
    if shm then
        self.dict = shdict.shared[shm]
        self.shm = shm
        local locks = opts.shm_locks or shm
        self.locks = self.dict and shdict.shared[locks] or nil
        self.lock_prefix = "lua-resty-mlcache:lock:" .. shm .. ":"
        self.ipc_key = "mlcache:ipc:" .. shm
        if self.locks then
            -- start the log here, so this VM's first event is not a gap
            self.locks:add(self.ipc_key, floor(now()) * 1048576)
            self.ipc_seq = self.locks:get(self.ipc_key) or 0
        end
    end
    return self
end

local local_versions = 0

--- A config version is in effect in this worker (doc.config_version of
-- the runloop's init document): forget L1 and trust only L2 entries
-- loaded under it.  props (kong.configuration) may set db_cache_ttl,
-- db_cache_neg_ttl and resurrect_ttl.  A document without a version
-- (unit specs) gets one of this process's own.
function _M.configure(cache, version, props)
    if type(version) == "number" then
        cache.version = format("%.0f", version)
    else
        local_versions = local_versions + 1
        cache.version = "local" .. local_versions
    end
    l1_clear(cache)
    props = props or {}
    local ttl = tonumber(props.db_cache_ttl)
    if ttl and ttl >= 0 then
        cache.ttl = ttl
        cache.neg_ttl = ttl
    end
    local neg = tonumber(props.db_cache_neg_ttl)
    if neg and neg >= 0 then
        cache.neg_ttl = neg
    end
    local res = tonumber(props.resurrect_ttl)
    if res and res >= 0 then
        cache.resurrect_ttl = res
    end
end

--- The options kong.cache is made with (Kong's dictionaries).
_M.KONG = { shm_name = "kong_db_cache", shm_locks = "kong_locks" }

return _M
