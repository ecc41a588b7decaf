-- Unit: the kong.* compatibility modules plugins require besides the PDK
-- (kong.meta, kong.constants, kong.tools.utils).

describe("kong compatibility modules", function()
    it("kong.meta reports the Kong API version", function()
        local meta = require "kong.meta"
        local constants = require "moongate.constants"
        assert.equals(constants.KONG_VERSION, meta._VERSION)
        assert.equals(3, meta._VERSION_TABLE.major)
        assert.equals(meta._VERSION, tostring(meta._VERSION_TABLE))
    end)

    it("kong.constants has Kong's header names", function()
        local c = require "kong.constants"
        assert.equals("X-Consumer-ID", c.HEADERS.CONSUMER_ID)
        assert.equals("X-Anonymous-Consumer", c.HEADERS.ANONYMOUS)
        assert.equals("http", c.PROTOCOLS_WITH_SUBSYSTEM.https)
        assert.is_true(c.BUNDLED_PLUGINS["mg-header-rewrite"])
    end)

    it("kong.tools.utils helpers", function()
        local u = require "kong.tools.utils"
        assert.same({ { "a", "b", "", "c" }, 4 }, { u.split("a,b,,c", ",") })
        assert.same({ "a", "b,c" }, (u.split("a,b,c", ",", 2)))
        assert.equals("x y", u.strip("  x y \n"))
        assert.is_true(u.is_valid_uuid(u.uuid()))
        assert.is_false(u.is_valid_uuid("nope"))
        assert.matches("^[%w]+$", u.random_string())
        assert.is_true(#u.random_string() >= 30)
        local t = { a = { b = 1 } }
        local c = u.deep_copy(t)
        assert.same(t, c)
        assert.not_equals(t.a, c.a)
        assert.is_true(u.table_contains({ 1, 2 }, 2))
        assert.is_true(u.is_array({ 1, 2 }))
        assert.is_false(u.is_array({ a = 1 }))
        assert.same({ false }, { (u.load_module_if_exists("no.such.mod")) })
        assert.is_true((u.load_module_if_exists("kong.meta")))
    end)
end)
