-- End-to-end: a runaway plugin does not freeze the worker.
-- lua_max_run_time: an endless loop in a handler (in the handler itself,
-- in a helper of its file, or under the plugin's own pcall) is stopped
-- by the watchdog's count hook; the request gets Kong's 500, the error
-- log names the plugin, and the same worker serves the next request.
-- lua_max_memory: a plugin that allocates without bound gets "not enough
-- memory" (500, logged with its name) instead of an OOM kill.
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"

describe("e2e runaway plugins", function()
  local mock, gw

  setup(function()
    mock = H.start_mockup(1)
    local function route(mode)
      return { name = mode, paths = { "/" .. mode },
               plugins = { { name = "runaway", config = { mode = mode } } } }
    end
    gw = H.start_gateway { name = "runaway",
      conf = { lua_package_path = FIXTURES, plugins = "bundled,runaway",
               worker_processes = 1, lua_max_run_time = "300ms",
               lua_max_memory = "64m" },
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = mock:url(1), routes = {
              { name = "plain", paths = { "/plain" } },
              route("loop"), route("helper"), route("pcall"), route("alloc"),
            } },
        },
      } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  local function stopped(path)
    local workers = gw:worker_pids()
    for _ = 1, 2 do
      local t0 = H.now()
      local res = assert(H.request(gw.port, { path = path },
                                   { timeout = 10 }))
      local took = H.now() - t0
      assert.equals(500, res.status)
      assert.equals("An unexpected error occurred", res:json().message)
      assert.is_true(took < 3, path .. " took " .. took .. " s")
      -- the same worker answers the next request
      local ok = assert(H.request(gw.port, { path = "/plain/echo" }))
      assert.equals(200, ok.status)
    end
    assert.same(workers, gw:worker_pids())
  end

  it("stops an endless loop in a handler", function()
    stopped("/loop/echo")
    local log = gw:error_log()
    assert.matches("plugin 'runaway' failed in the access phase", log, 1, true)
    assert.matches("lua_max_run_time", log, 1, true)
  end)

  it("stops a loop in a helper function of the plugin's file", function()
    stopped("/helper/echo")
  end)

  it("stops a loop that swallows the error with pcall", function()
    stopped("/pcall/echo")
  end)

  it("stops unbounded allocation at lua_max_memory", function()
    stopped("/alloc/echo")
    local log = gw:error_log()
    assert.matches("lua_max_memory", log, 1, true)
    assert.matches("plugin 'runaway' failed in the access phase: not enough memory", log, 1, true)
  end)

  it("logs nothing unexpected", function()
    H.assert_no_error_log(gw, { "runaway", "lua_max_memory" })
  end)
end)
