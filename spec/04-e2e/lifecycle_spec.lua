-- End-to-end: a plugin's init_worker and configure run in every worker,
-- after fork (as in Kong), never once in the master for all of them: the
-- `lifecycle` test plugin (spec/fixtures/plugins) reports, per worker,
-- where its hooks ran, whether a timer started in init_worker ran, and a
-- node-wide count of init_worker runs (ngx.shared.kong).
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"

describe("e2e plugin lifecycle", function()
  local mock, gw

  setup(function()
    mock = H.start_mockup(1)
    gw = H.start_gateway { name = "lifecycle",
      conf = { lua_package_path = FIXTURES, plugins = "bundled,lifecycle",
               worker_processes = 2 },
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = mock:url(1), routes = {
              { name = "r", paths = { "/" },
                plugins = { { name = "lifecycle" } } },
            } },
        },
      } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  -- one request on each of n connections at once (both workers answer);
  -- pid -> response headers
  local function by_worker(n)
    local conns, seen = {}, {}
    for i = 1, n do
      conns[i] = assert(H.connect(gw.port))
      assert(conns[i]:send(H.request_bytes { path = "/echo" }))
    end
    for i = 1, n do
      local res = assert(conns[i]:read_response({ timeout = 5 }))
      assert.equals(200, res.status)
      seen[res.headers["x-worker-pid"]] = res.headers
      conns[i]:close()
    end
    return seen
  end

  local function both_workers()
    local seen, count = {}, 0
    for _ = 1, 50 do
      for pid, h in pairs(by_worker(8)) do
        if not seen[pid] then
          seen[pid], count = h, count + 1
        end
      end
      if count >= 2 then
        return seen
      end
    end
    error("one worker answered every request")
  end

  it("runs init_worker and configure in each worker", function()
    -- timers started in init_worker run at the worker's first loop turn
    H.sleep(0.2)
    local ids = {}
    for pid, h in pairs(both_workers()) do
      local ran, id = h["x-init"]:match("^(%a+),(%d+)$")
      assert.equals("true", ran, "init_worker ran in worker " .. pid)
      ids[#ids + 1] = tonumber(id)
      assert.equals("true", h["x-timer"],
                    "the init_worker timer ran in worker " .. pid)
      assert.equals("true,1", h["x-configure"],
                    "configure ran in worker " .. pid .. " with 1 config")
      -- two workers, two runs: none in the master
      assert.equals("2", h["x-inits"])
    end
    table.sort(ids)
    assert.same({ 0, 1 }, ids)
    H.assert_no_error_log(gw)
  end)

  it("holds no state for requests that ended", function()
    local c = assert(H.connect(gw.port))
    for _ = 1, 30 do
      assert(c:send(H.request_bytes { path = "/echo" }))
      local res = assert(c:read_response({ timeout = 5 }))
      assert.equals(200, res.status)
      assert.equals("1", res.headers["x-live-requests"])
    end
    c:close()
  end)

  it("runs them again in the workers of a new generation", function()
    local old = {}
    for _, p in ipairs(gw:worker_pids()) do old[p] = true end
    assert.equals(0, (gw:reload()))
    assert.is_table(gw:wait_workers(2, 10, old))
    -- only the new generation answers once the old workers are gone
    assert.is_table(gw:wait_new_generation(2, old), "the old workers did not go")
    H.sleep(0.2)
    for pid, h in pairs(both_workers()) do
      assert.is_nil(old[tonumber(pid)])
      assert.matches("^true,[01]$", h["x-init"])
      assert.equals("true", h["x-timer"])
      assert.equals("true,1", h["x-configure"])
      -- the dictionary survives the reload: 2 + 2 runs
      assert.equals("4", h["x-inits"])
    end
    H.assert_no_error_log(gw)
  end)
end)
