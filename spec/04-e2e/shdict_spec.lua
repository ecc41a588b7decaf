-- End-to-end: ngx.shared dictionaries in the binary.  Two workers count
-- requests in ngx.shared.kong (the `counter` test plugin of
-- spec/fixtures/plugins): the count is exact whatever worker and
-- connection a request takes, survives a reload that keeps
-- lua_shared_dict, and restarts when a reload changes it.  The `selftest`
-- route runs the ngx.shared.DICT API through the real FFI.
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"

describe("e2e ngx.shared", function()
  local mock, gw

  setup(function()
    mock = H.start_mockup(1)
    gw = H.start_gateway { name = "shdict",
      conf = { lua_package_path = FIXTURES, plugins = "bundled,counter",
               worker_processes = 2 },
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = mock:url(1), routes = {
              { name = "count", paths = { "/count" },
                plugins = { { name = "counter" } } },
              { name = "self", paths = { "/selftest" },
                plugins = { { name = "counter",
                              config = { selftest = true } } } },
            } },
        },
      } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  -- rounds of one request on each of nconn connections, all sent before
  -- any is read; returns the counts seen (count -> times) and the pids
  local function count(nconn, rounds)
    local conns, seen, pids, n = {}, {}, {}, 0
    for i = 1, nconn do
      conns[i] = assert(H.connect(gw.port))
    end
    for _ = 1, rounds do
      for i = 1, nconn do
        assert(conns[i]:send(H.request_bytes { path = "/count/echo" }))
      end
      for i = 1, nconn do
        local res = assert(conns[i]:read_response({ timeout = 5 }))
        assert.equals(200, res.status)
        local hits = tonumber(res.headers["x-hits"])
        assert.is_number(hits)
        assert.equals(tostring(hits),
                      H.upstream_header(H.echo(res), "X-Hits"))
        seen[hits] = (seen[hits] or 0) + 1
        pids[res.headers["x-worker-pid"]] = true
        n = n + 1
      end
    end
    for i = 1, nconn do
      conns[i]:close()
    end
    return seen, pids, n
  end

  local function hits()
    local res = assert(H.request(gw.port, { path = "/count/echo" }))
    assert.equals(200, res.status)
    return tonumber(res.headers["x-hits"])
  end

  it("counts every request exactly once across workers", function()
    local seen, pids, n = count(16, 25)
    assert.equals(400, n)
    for i = 1, n do
      assert.equals(1, seen[i], "count " .. i .. " seen " .. tostring(seen[i])
                    .. " times")
    end
    assert.is_nil(seen[n + 1])
    local workers = 0
    for _ in pairs(pids) do workers = workers + 1 end
    assert.equals(2, workers, "both workers served requests")
    assert.equals(n + 1, hits())
    H.assert_no_error_log(gw)
  end)

  it("runs the ngx.shared.DICT API through the FFI", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/selftest/echo" }))
      assert.equals(200, res.status)
      assert.equals("ok", res.headers["x-selftest"])
    end
  end)

  it("keeps the counts across a reload with the same dictionaries", function()
    local before = hits()
    local old = {}
    for _, p in ipairs(gw:worker_pids()) do old[p] = true end
    assert.equals(0, (gw:reload()))
    assert.is_table(gw:wait_workers(2, 10, old))
    assert.equals(before + 1, hits())
  end)

  it("starts empty after a reload that changes lua_shared_dict", function()
    local old = {}
    for _, p in ipairs(gw:worker_pids()) do old[p] = true end
    gw.conf.lua_shared_dict = "kong 1m, moongate_cache 16m"
    H.write_conf(gw.conf_path, gw.conf)
    assert.equals(0, (gw:reload()))
    -- only the new generation answers once the old workers are gone
    gw:wait_new_generation(2, old)
    assert.equals(1, hits())
    assert.equals(2, hits())
    local res = assert(H.request(gw.port, { path = "/selftest/echo" }))
    assert.equals("ok", res.headers["x-selftest"])
    H.assert_no_error_log(gw)
  end)
end)
