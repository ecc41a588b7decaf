-- Unit: ngx.shared.DICT (moongate.shdict) over the FFI fake's in-Lua
-- dictionaries: OpenResty's call shapes and return values.  The C side's
-- semantics (shared memory, LRU, locking) are spec/c/test_shdict.c's; the
-- binary is spec/04-e2e/shdict_spec.lua's.

local H = require "lua_runtime"

local fake = H.fake
local shdict = require "moongate.shdict"
local ngx = require("moongate.ngx").ngx

local function pack(...)
    return { n = select("#", ...), ... }
end

describe("ngx.shared", function()
    local dict

    before_each(function()
        fake.reset()
        dict = ngx.shared.kong
    end)

    it("is moongate.shdict's table, with the declared dictionaries", function()
        assert.equals(shdict.shared, ngx.shared)
        assert.is_table(ngx.shared.kong)
        assert.is_nil(ngx.shared.nope)
        local names = {}
        for name in pairs(ngx.shared) do
            names[#names + 1] = name
        end
        table.sort(names)
        assert.same({ "kong", "kong_db_cache", "kong_locks",
                      "kong_rate_limiting_counters", "moongate_cache" },
                    names)
    end)

    it("set and get return OpenResty's values", function()
        assert.same({ n = 3, true, nil, false }, pack(dict:set("k", "v")))
        assert.same({ n = 1, "v" }, pack(dict:get("k")))
        assert.same({ n = 3, true, nil, false }, pack(dict:set("k", "v", 0, 7)))
        assert.same({ n = 2, "v", 7 }, pack(dict:get("k")))
        dict:set("n", 1.5)
        dict:set("t", true)
        dict:set("f", false)
        assert.equals(1.5, dict:get("n"))
        assert.is_true(dict:get("t"))
        assert.is_false(dict:get("f"))
        assert.same({ n = 1 }, pack(dict:get("absent")))
        dict:set(42, "num key")
        assert.equals("num key", dict:get("42"))
    end)

    it("add, replace, safe_*, delete", function()
        dict:set("k", "v")
        assert.same({ n = 3, false, "exists", false }, pack(dict:add("k", "w")))
        assert.same({ n = 3, true, nil, false }, pack(dict:add("k2", "w")))
        assert.same({ n = 3, false, "not found", false },
                    pack(dict:replace("nope", "w")))
        assert.is_true((dict:replace("k", "w")))
        assert.equals("w", dict:get("k"))
        assert.is_true((dict:safe_set("s", 1)))
        assert.same({ n = 3, false, "exists", false },
                    pack(dict:safe_add("s", 2)))
        assert.is_true((dict:delete("k")))
        assert.is_nil(dict:get("k"))
        assert.same({ n = 3, false, "attempt to add or replace nil values",
                      false }, pack(dict:add("x", nil)))
    end)

    it("checks keys and values as lua-resty-core does", function()
        assert.same({ n = 2, nil, "nil key" }, pack(dict:get(nil)))
        assert.same({ n = 2, nil, "empty key" }, pack(dict:set("", 1)))
        assert.same({ n = 2, nil, "key too long" },
                    pack(dict:set(string.rep("k", 65536), 1)))
        assert.same({ n = 2, nil, "bad value type" }, pack(dict:set("k", {})))
        assert.has_error(function() dict.get("k") end, 'bad "zone" argument')
        assert.has_error(function() dict:set("k", 1, -1) end,
                         'bad "exptime" argument')
        assert.has_error(function() dict:lpush("l", 1) end)
    end)

    it("incr with init and init_ttl", function()
        assert.same({ n = 2, nil, "not found" }, pack(dict:incr("c", 1)))
        assert.same({ n = 3, 11, nil, false }, pack(dict:incr("c", 1, 10)))
        assert.same({ n = 1, 16 }, pack(dict:incr("c", 5)))
        dict:set("s", "x")
        assert.same({ n = 2, nil, "not a number" }, pack(dict:incr("s", 1)))
        assert.equals(1, (dict:incr("t", 1, 0, 2)))
        assert.equals(2, dict:ttl("t"))
        fake.clock = fake.clock + 2
        assert.is_nil(dict:get("t"))
        assert.equals(1, (dict:incr("t", 1, 0)))
        assert.has_error(function() dict:incr("t", 1, nil, 1) end,
                         'must provide "init" when providing "init_ttl"')
        assert.has_error(function() dict:incr("t", nil) end)
    end)

    it("expiry: get_stale, ttl, expire, flush_all, flush_expired", function()
        dict:set("e", "v", 1)
        assert.equals(1, dict:ttl("e"))
        fake.clock = fake.clock + 1.5
        assert.is_nil(dict:get("e"))
        assert.same({ n = 3, "v", nil, true }, pack(dict:get_stale("e")))
        assert.same({ n = 2, nil, "not found" }, pack(dict:ttl("nope")))
        assert.same({ n = 2, nil, "not found" }, pack(dict:expire("nope", 1)))
        assert.is_true(dict:expire("e", 0))
        assert.equals(0, dict:ttl("e"))
        assert.equals("v", dict:get("e"))
        dict:set("a", 1)
        dict:flush_all()
        assert.is_nil(dict:get("a"))
        assert.equals(1, (dict:get_stale("a")))
        assert.equals(2, dict:flush_expired())
        assert.is_nil((dict:get_stale("a")))
    end)

    it("get_keys, capacity, free_space", function()
        dict:set("k1", 1)
        dict:set("k2", 2)
        dict:set("k:3", 3)
        local keys = dict:get_keys()
        table.sort(keys)
        assert.same({ "k1", "k2", "k:3" }, keys)
        assert.equals(2, #dict:get_keys(2))
        assert.equals(5 * 1024 * 1024, dict:capacity())
        assert.is_true(dict:free_space() < dict:capacity())
    end)

    it("evicts for set, never for safe_set", function()
        local mb = string.rep("x", 1200 * 1024)   -- 4 fit in 5m
        for i = 1, 4 do
            assert.same({ n = 3, true, nil, false }, pack(dict:set("b" .. i, mb)))
        end
        assert.same({ n = 3, false, "no memory", false },
                    pack(dict:safe_set("b5", mb)))
        assert.equals(mb, dict:get("b1"))
        assert.same({ n = 3, true, nil, true }, pack(dict:set("b5", mb)))
        assert.is_nil(dict:get("b2"))      -- b1 was used more recently
        assert.equals(mb, dict:get("b5"))
    end)
end)
