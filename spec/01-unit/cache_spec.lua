-- Unit: kong.cache (lua/moongate/pdk/cache.lua) over the fake FFI, whose
-- shared dictionaries stand in for the core's.  Two caches made on the
-- same dictionaries play two workers of a node: what one loads the other
-- reads from the shared level, invalidations and purges reach the other's
-- worker-level copy, per-key locks make a miss wait for the holder, and a
-- config version (cache.configure) hides what older versions stored.

local H = require "lua_runtime"

local fake = H.fake
local cache = require "moongate.pdk.cache"

local function worker(version)
    local c = cache.new(cache.KONG)
    cache.configure(c, version or 7)
    return c
end

-- a loader that counts its runs and returns { n = runs, tag = tag }
local function counting(tag)
    local l = { runs = 0 }
    function l.fn()
        l.runs = l.runs + 1
        return { n = l.runs, tag = tag }
    end
    return l
end

-- Run fn as a plugin handler of `phase`, one resume per step() (the spec
-- plays the event loop: a step ends when the handler waits).  step()
-- returns done, and fn's results once done.
local function start(phase, fn)
    local r = H.request()
    local ctx = { r = r, req_id = "cache-spec", phase = phase,
                  phase_bit = H.phases.bits[phase] or 0, shared = {},
                  plugin_ctx = {}, ngx_ctx = {}, confs = {}, times = {},
                  plugin_name = "cache-spec" }
    local co = coroutine.create(function()
        H.context.current = ctx
        return fn()
    end)
    local function step()
        local res = { coroutine.resume(co) }
        H.context.current = nil
        if not res[1] then
            error(res[2], 0)
        end
        return coroutine.status(co) == "dead", unpack(res, 2, 4)
    end
    return step, r
end

local function sum(list)
    local s = 0
    for _, v in ipairs(list) do
        s = s + v
    end
    return s
end

before_each(function()
    H.setup()
end)

describe("kong.cache levels", function()
    it("a value one worker loaded is a level-2 hit in another", function()
        local w1, w2 = worker(), worker()
        local l1, l2 = counting("w1"), counting("w2")
        assert.same({ { n = 1, tag = "w1" }, nil, 3 },
                    { w1:get("k", nil, l1.fn) })
        local v, err, hit = w2:get("k", nil, l2.fn)
        assert.same({ { n = 1, tag = "w1" }, nil, 2 }, { v, err, hit })
        assert.same({ { n = 1, tag = "w1" }, nil, 1 },
                    { w2:get("k", nil, l2.fn) })
        assert.same({ { n = 1, tag = "w1" }, nil, 1 },
                    { w1:get("k", nil, l1.fn) })
        assert.equals(1, l1.runs)
        assert.equals(0, l2.runs)
        -- the other worker has a copy, not the loader's table
        assert.are_not.equal((w1:get("k")), v)
    end)

    it("carries every Lua value a loader may return through level 2", function()
        local values = {
            "", "a:b:c", ("\0x"):rep(1000), 0, -0.0, 0.1, 2 ^ 53, -1e300,
            math.huge, -math.huge, true, false,
            { 1, 2, nil, 4, [10] = "ten", x = { y = { z = false } } },
            { [true] = 1, [2.5] = "k", ["1"] = "string one", [1] = "one" },
            {},
        }
        local w1, w2 = worker(), worker()
        for i, value in ipairs(values) do
            local key = "v" .. i
            w1:get(key, nil, function() return value end)
            local v, err, hit = w2:get(key, nil, function() return "nope" end)
            assert.is_nil(err)
            assert.equals(2, hit, key)
            assert.same(value, v, key)
        end
        -- not a number: NaN, still
        w1:get("nan", nil, function() return 0 / 0 end)
        local v = w2:get("nan")
        assert.is_true(v ~= v)
        -- a miss is cached for neg_ttl and seen as a miss by the other
        assert.same({ nil, nil, 3 },
                    { w1:get("none", { neg_ttl = 10 }, function() end) })
        assert.same({ nil, nil, 2 }, { w2:get("none", nil, error) })
        assert.equals(10, (w2:probe("none")))
    end)

    it("refuses values it cannot share", function()
        local w1 = worker()
        local v, err = w1:get("f", nil, function() return print end)
        assert.is_nil(v)
        assert.matches("could not serialize value .*function", err)
        local t = {}
        t.self = t
        v, err = w1:get("cycle", nil, function() return t end)
        assert.is_nil(v)
        assert.matches("contains itself", err)
        assert.is_nil(w1:probe("f"))
    end)

    it("honours ttls at both levels, and a loader's own ttl", function()
        local w1, w2 = worker(), worker()
        local l = counting()
        w1:get("t", { ttl = 10 }, l.fn)
        fake.clock = fake.clock + 4
        assert.equals(2, select(3, w2:get("t", nil, l.fn)))
        assert.equals(6, (w2:probe("t")))
        fake.clock = fake.clock + 7
        assert.same({ { n = 2 }, nil, 3 }, { w2:get("t", { ttl = 10 }, l.fn) })
        assert.same({ { n = 2 }, nil, 2 }, { w1:get("t", nil, l.fn) })
        -- the loader's third value: a ttl (for a miss: the neg_ttl), or
        -- below 0 "do not cache"
        w1:get("own", { ttl = 100 }, function() return "x", nil, 3 end)
        assert.equals(3, (w1:probe("own")))
        w1:get("neg", { neg_ttl = 100 }, function() return nil, nil, 2 end)
        assert.equals(2, (w1:probe("neg")))
        assert.same({ "y", nil, 3 },
                    { w1:get("skip", nil, function() return "y", nil, -1 end) })
        assert.is_nil(w1:probe("skip"))
        assert.is_nil((w1:get("skip")))
        assert.has_error(function() w1:get("k", { ttl = -1 }, l.fn) end,
                         "opts.ttl must be a number >= 0")
        assert.has_error(function() w1:get("k", nil, "x") end,
                         "callback must be a function")
    end)

    it("stores what the l1_serializer makes in the worker level", function()
        local w1, w2 = worker(), worker()
        local function ser(v) return { wrapped = v } end
        assert.same({ { wrapped = "raw" }, nil, 3 },
                    { w1:get("s", { l1_serializer = ser },
                             function() return "raw" end) })
        assert.same({ { wrapped = "raw" }, nil, 2 },
                    { w2:get("s", { l1_serializer = ser }, error) })
        assert.equals("raw", select(3, w2:probe("s")))
    end)

    it("get_bulk answers each operation as get would", function()
        local w1, w2 = worker(), worker()
        w1:get("a", nil, function() return "A" end)
        w2:get("b", nil, function() return "B" end)
        local res = w1:get_bulk({ n = 3,
            "a", nil, error, nil,
            "b", nil, error, nil,
            "c", { ttl = 5 }, function(x) return "C" .. x end, "!",
        })
        assert.same({ n = 9, "A", nil, 1, "B", nil, 2, "C!", nil, 3 }, res)
        res = w2:get_bulk({ n = 1, "d", nil, function() return 1 end },
                          { skip_callback = true })
        assert.same({ n = 3 }, res)
        assert.has_error(function() w1:get_bulk({ n = 1, 1 }) end)
    end)
end)

describe("kong.cache invalidation", function()
    local w1, w2, l

    before_each(function()
        w1, w2, l = worker(), worker(), counting()
        w1:get("k", nil, l.fn)
        w2:get("k", nil, l.fn)
        assert.equals(1, select(3, w2:get("k", nil, l.fn)))
        assert.equals(1, l.runs)
    end)

    it("invalidate in one worker drops the key from every worker", function()
        assert.is_true(w1:invalidate("k"))
        assert.is_nil(w1:probe("k"))
        assert.same({ { n = 2 }, nil, 3 }, { w2:get("k", nil, l.fn) })
        assert.same({ { n = 2 }, nil, 2 }, { w1:get("k", nil, l.fn) })
        assert.is_true(w2:invalidate_local("k"))
        assert.same({ { n = 3 }, nil, 3 }, { w1:get("k", nil, l.fn) })
    end)

    it("purge empties every level of every worker", function()
        w2:get("other", nil, l.fn)
        assert.is_true(w1:purge())
        assert.is_nil(w2:probe("k"))
        assert.equals(3, select(3, w2:get("k", nil, l.fn)))
        assert.equals(3, select(3, w1:get("other", nil, l.fn)))
    end)

    it("safe_set replaces the value in every worker", function()
        assert.is_true(w1:safe_set("k", "set"))
        assert.same({ "set", nil, 2 }, { w2:get("k", nil, l.fn) })
        assert.is_true(w2:safe_set("k", nil, 30))
        assert.same({ nil, nil, 2 }, { w1:get("k", nil, l.fn) })
        assert.equals(30, (w1:probe("k")))
        assert.equals(1, l.runs)
    end)

    it("a lost log entry makes a worker drop its whole level 1", function()
        w2:get("j", nil, function() return "J" end)
        w1:invalidate("k")
        local locks = ngx.shared.kong_locks
        local seq = locks:get("mlcache:ipc:kong_db_cache")
        locks:delete("mlcache:ipc:kong_db_cache:" .. seq)
        -- j comes from level 2 again, k from the loader
        assert.same({ "J", nil, 2 }, { w2:get("j", nil, error) })
        assert.equals(3, select(3, w2:get("k", nil, l.fn)))
    end)

    it("a restarted or far-ahead log drops level 1 too", function()
        local locks = ngx.shared.kong_locks
        locks:delete("mlcache:ipc:kong_db_cache")
        assert.equals(2, select(3, w2:get("k", nil, l.fn)))
        w2:get("k", nil, l.fn)
        locks:incr("mlcache:ipc:kong_db_cache", 20000, 0)
        assert.equals(2, select(3, w2:get("k", nil, l.fn)))
    end)

    it("a loader running when its key is invalidated does not store", function()
        w1:invalidate("k")
        local v, err, hit = w1:get("k", nil, function()
            w2:invalidate("k")           -- another worker, meanwhile
            return "read before"
        end)
        assert.same({ "read before", nil, 3 }, { v, err, hit })
        assert.is_nil(w1:probe("k"))
        assert.equals(3, select(3, w1:get("k", nil, l.fn)))
        -- nor one that cannot tell: more keys dropped than it remembers
        v, err, hit = w1:get("n", nil, function()
            for i = 1, 1100 do
                w1:invalidate("other" .. i)
            end
            return "unsure"
        end)
        assert.same({ "unsure", nil, 3 }, { v, err, hit })
        assert.is_nil(w1:probe("n"))
        w1:get("n", nil, function() return "sure" end)
        assert.equals("sure", select(3, w1:probe("n")))
        -- nor one running when the config version changes
        v, err, hit = w1:get("m", nil, function()
            cache.configure(w1, 8)
            return "old version"
        end)
        assert.same({ "old version", nil, 3 }, { v, err, hit })
        assert.is_nil(w1:probe("m"))
    end)
end)

describe("kong.cache config versions", function()
    it("a worker ignores what another version stored", function()
        local w1, w2, l = worker(7), worker(7), counting()
        w1:get("k", nil, l.fn)
        cache.configure(w2, 8)             -- w2 switched first
        assert.same({ { n = 2 }, nil, 3 }, { w2:get("k", nil, l.fn) })
        assert.same({ { n = 1 }, nil, 1 }, { w1:get("k", nil, l.fn) })
        cache.configure(w1, 8)
        assert.same({ { n = 2 }, nil, 2 }, { w1:get("k", nil, l.fn) })
        assert.is_nil(worker(9):probe("k"))
    end)

    it("every config the runloop installs empties kong.cache", function()
        local l = counting()
        assert.equals(3, select(3, kong.cache:get("k", nil, l.fn)))
        assert.equals(1, select(3, kong.cache:get("k", nil, l.fn)))
        H.init({ config_version = 41 })
        assert.equals(3, select(3, kong.cache:get("k", nil, l.fn)))
        local other = worker(41)
        assert.same({ { n = 2 }, nil, 2 }, { other:get("k", nil, l.fn) })
        H.init({ config_version = 42 })
        assert.equals(3, select(3, kong.cache:get("k", nil, l.fn)))
        assert.equals(3, l.runs)
    end)

    it("takes db_cache_ttl, db_cache_neg_ttl and resurrect_ttl from the " ..
       "configuration", function()
        local c = worker()
        cache.configure(c, 7, { db_cache_ttl = 60, db_cache_neg_ttl = 5,
                                resurrect_ttl = 30 })
        assert.same({ 60, 5, 30 }, { c.ttl, c.neg_ttl, c.resurrect_ttl })
        c:get("k", nil, function() return 1 end)
        assert.equals(60, (c:probe("k")))
    end)
end)

describe("kong.cache locks", function()
    local LOCK = "lua-resty-mlcache:lock:kong_db_cache:k"

    it("a miss waits for the holder, then reads level 2", function()
        local w1, w2, l = worker(), worker(), counting()
        local locks = ngx.shared.kong_locks
        assert.is_true(locks:add(LOCK, "other worker", 30))
        local step, r = start("access", function()
            return w2:get("k", nil, l.fn)
        end)
        assert.is_false((step()))             -- waiting, not blocking
        assert.is_false((step()))
        assert.same({ 0.001, 0.002 }, r.sleeps)
        -- the holder stores its value and lets go
        w1:safe_set("k", { n = 0, tag = "holder" })
        locks:delete(LOCK)
        local done, v, err, hit = step()
        assert.is_true(done)
        assert.same({ { n = 0, tag = "holder" }, nil, 2 }, { v, err, hit })
        assert.equals(0, l.runs)
        assert.is_nil(locks:get(LOCK))
    end)

    it("runs the loader once it holds the lock, and lets it go", function()
        local w1, l = worker(), counting()
        local locks = ngx.shared.kong_locks
        local step = start("access", function()
            return w1:get("k", nil, function()
                assert.is_string(locks:get(LOCK))   -- held while loading
                return l.fn()
            end)
        end)
        local done, v, _, hit = step()
        assert.is_true(done)
        assert.same({ { n = 1 }, 3 }, { v, hit })
        assert.is_nil(locks:get(LOCK))
        -- a loader that throws lets it go too
        local _, err = w1:get("k2", nil, function() error("kaboom") end)
        assert.matches("callback threw an error: .*kaboom", err)
        assert.is_nil(locks:get("lua-resty-mlcache:lock:kong_db_cache:k2"))
    end)

    it("gives up after the lock timeout, as mlcache", function()
        local w1, l = worker(), counting()
        ngx.shared.kong_locks:add(LOCK, "stuck", 30)
        local step, r = start("rewrite", function()
            return w1:get("k", nil, l.fn)
        end)
        local done, v, err
        repeat
            done, v, err = step()
        until done
        assert.is_nil(v)
        assert.equals("could not acquire callback lock: timeout", err)
        assert.equals(0, l.runs)
        assert.is_true(math.abs(sum(r.sleeps) - 5) < 1e-9)
        assert.equals(0.5, r.sleeps[#r.sleeps - 1])   -- max_step
    end)

    it("runs the loader without the lock where it cannot wait", function()
        local w1, l = worker(), counting()
        ngx.shared.kong_locks:add(LOCK, "other worker", 30)
        local step, r = start("log", function()
            return w1:get("k", nil, l.fn)
        end)
        local done, v, _, hit = step()
        assert.is_true(done)
        assert.same({ { n = 1 }, 3 }, { v, hit })
        assert.same({}, r.sleeps)
        assert.equals("other worker", ngx.shared.kong_locks:get(LOCK))
    end)

    it("resurrects a stale value when the loader fails (resurrect_ttl)",
       function()
        local w1, w2 = worker(), worker()
        w1:get("k", { ttl = 1 }, function() return "old" end)
        fake.clock = fake.clock + 2
        local v, err, hit = w2:get("k", { resurrect_ttl = 30 }, function()
            return nil, "db down"
        end)
        assert.same({ "old", nil, 4 }, { v, err, hit })
        assert.same({ "old", nil, 4 }, { w1:get("k", nil, error) })
        assert.equals(30, (w1:probe("k")))
        -- without resurrect_ttl the error comes back
        fake.clock = fake.clock + 31
        assert.same({ nil, "db down" },
                    { w2:get("k", nil, function() return nil, "db down" end) })
    end)
end)

describe("kong.cache without a shared dictionary", function()
    it("caches per worker", function()
        local c, l = cache.new(), counting()
        assert.is_nil(c.dict)
        assert.equals(3, select(3, c:get("k", nil, l.fn)))
        assert.equals(1, select(3, c:get("k", nil, l.fn)))
        assert.is_nil(ngx.shared.kong_db_cache:get("k"))
        c:invalidate("k")
        assert.equals(3, select(3, c:get("k", nil, l.fn)))
        assert.is_true(c:safe_set("k", false))
        assert.same({ false, nil, 1 }, { c:get("k") })
        assert.equals(false, select(3, c:probe("k")))
    end)

    it("is what a cache on an undeclared dictionary falls back to", function()
        local c = cache.new({ shm_name = "undeclared", shm_locks = "kong" })
        assert.is_nil(c.dict)
        assert.is_nil(c.locks)
        assert.equals(3, select(3, c:get("k", nil, function() return 1 end)))
        assert.equals(1, select(3, c:get("k", nil, error)))
    end)
end)

describe("kong.cache encoding", function()
    it("round-trips values and rejects damaged input", function()
        local t = { a = { 1, 2, { "x" } }, [3] = false, [-1.5] = "neg" }
        assert.same(t, cache.decode(cache.encode(t)))
        assert.equals(2 ^ 53 + 2, cache.decode(cache.encode(2 ^ 53 + 2)))
        assert.equals(0.1 + 0.2, cache.decode(cache.encode(0.1 + 0.2)))
        assert.is_nil((cache.decode("T")))
        assert.is_nil((cache.decode("x")))
        assert.is_nil((cache.decode("s9:abc")))
    end)
end)
