-- Unit spec of the example plugin: the runtime and the PDK run on the
-- fake FFI (moongate.ffi_fake), no gateway needed.  From the Moongate
-- checkout:
--
--   busted --lpath='spec/helpers/?.lua;lua/?.lua;lua/?/init.lua;examples/plugins/hello-header/?.lua' \
--       examples/plugins/hello-header/spec
local H = require "lua_runtime"

local ROUTE = "00000000-0000-4000-8000-000000000001"
local PLUGIN = "00000000-0000-4000-8000-000000000002"

-- the init document the core would build: one route with the plugin
local function init(config)
  H.runloop.reset()
  H.fake.reset()
  return H.init {
    enabled_plugins = "hello-header",
    routes = { { id = ROUTE, name = "r", index = 0 } },
    plugins = { { id = PLUGIN, name = "hello-header", route = ROUTE,
                  config = config } },
  }
end

describe("hello-header", function()
  it("adds X-Hello to the response", function()
    assert(init { greeting = "hi" })
    local r = H.request { path = "/" }
    H.phase("access", r, "req-1", 0)
    H.fake.respond(r, 200, { ["Content-Type"] = "text/plain" })
    assert.is_nil(H.phase("header_filter", r, "req-1", 0))
    H.runloop.finish("req-1")
    assert.equals("hi", H.fake.header(H.fake.response_headers(r), "X-Hello"))
  end)

  it("says world by default", function()
    assert(init(nil))
    local r = H.request {}
    H.fake.respond(r, 200, {})
    H.phase("header_filter", r, "req-2", 0)
    assert.equals("world", H.fake.header(H.fake.response_headers(r), "X-Hello"))
  end)

  it("rejects an invalid config as the gateway would at start", function()
    local ok, err = init { greeting = string.rep("x", 300) }
    assert.is_nil(ok)
    assert.matches("config.greeting: length must be at most 256", err, 1, true)
  end)
end)
