-- End-to-end: kong.cache across the workers of a node (the `cache-user`
-- test plugin of spec/fixtures/plugins drives it).  With two workers:
-- what one worker's loader found is a level-2 hit in the other; misses of
-- one key that arrive together on both workers run the loader once (its
-- runs are counted in ngx.shared.kong); invalidate and purge in one worker
-- reach the other's level 1; a config change (POST /config) empties every
-- level of every worker.
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"

local function config(tag)
  return {
    _format_version = "3.0",
    services = {
      { name = "s", url = "http://127.0.0.1:1", tags = { tag }, routes = {
          { name = "c", paths = { "/c" },
            plugins = { { name = "cache-user" } } },
        } },
    },
  }
end

describe("e2e kong.cache with two workers", function()
  local gw, a, b          -- a and b: kept-alive connections to each worker
  local spare = {}        -- more connections: spare[pid] = { conn... }

  local function call(conn, query)
    local res = assert(conn:request({ path = "/c?" .. query },
                                    { timeout = 10 }))
    assert.equals(200, res.status, res.body)
    return res:json()
  end

  local function get(conn, key)
    local r = call(conn, "op=get&key=" .. key)
    assert.is_nil(r.err)
    return r
  end

  local function loads(key)
    return call(a.conn, "op=loads&key=" .. key).loads
  end

  setup(function()
    local aport = H.free_port()
    gw = H.start_gateway { name = "cache", config = config("v1"),
      conf = { lua_package_path = FIXTURES,
               plugins = "bundled,cache-user", worker_processes = 2,
               admin_listen = "127.0.0.1:" .. aport } }
    gw.admin_port = aport
    assert(H.wait_port(aport, 10, gw.pid), "admin port not open")
    -- SO_REUSEPORT spreads new connections over the workers: keep one
    -- per worker, and a few more for the concurrent misses
    local by_pid = {}
    for _ = 1, 40 do
      local conn = assert(H.connect(gw.port))
      local pid = call(conn, "op=loads&key=none").pid
      by_pid[pid] = by_pid[pid] or {}
      table.insert(by_pid[pid], conn)
    end
    local pids = {}
    for pid in pairs(by_pid) do pids[#pids + 1] = pid end
    assert.equals(2, #pids, "both workers answer")
    a = { pid = pids[1], conn = table.remove(by_pid[pids[1]]) }
    b = { pid = pids[2], conn = table.remove(by_pid[pids[2]]) }
    spare = by_pid
  end)

  teardown(function()
    if gw then gw:stop() end
    H.cleanup()
  end)

  it("a value loaded in one worker is a level-2 hit in the other", function()
    local r = get(a.conn, "x")
    assert.equals(3, r.hit)
    assert.equals(a.pid, r.pid)
    assert.same({ key = "x", n = 1, pid = a.pid }, r.value)
    r = get(b.conn, "x")
    assert.equals(b.pid, r.pid)
    assert.equals(2, r.hit)
    assert.same({ key = "x", n = 1, pid = a.pid }, r.value)
    -- and from then on each worker's own level
    assert.equals(1, get(b.conn, "x").hit)
    assert.equals(1, get(a.conn, "x").hit)
    assert.equals(1, loads("x"))
    local p = call(b.conn, "op=probe&key=x")
    assert.equals(0, p.ttl)
    assert.same({ key = "x", n = 1, pid = a.pid }, p.value)
  end)

  it("concurrent misses of one key on both workers run the loader once",
     function()
    local conns = {}
    for _, pid in ipairs({ a.pid, b.pid }) do
      assert.is_true(#spare[pid] >= 3, "three spare connections per worker")
      for i = 1, 3 do
        conns[#conns + 1] = spare[pid][i]
      end
    end
    -- all sent before any is read: the loader waits 0.5 s, so every other
    -- request misses while it runs
    for _, conn in ipairs(conns) do
      assert(conn:send(H.request_bytes {
        path = "/c?op=get&key=y&delay=0.5" }))
    end
    local hits, values, pids = {}, {}, {}
    for _, conn in ipairs(conns) do
      local res = assert(conn:read_response({ timeout = 10 }))
      assert.equals(200, res.status, res.body)
      local r = res:json()
      assert.is_nil(r.err)
      hits[r.hit] = (hits[r.hit] or 0) + 1
      values[r.value.n .. "@" .. r.value.pid] = true
      pids[r.pid] = true
    end
    assert.is_true(pids[a.pid] and pids[b.pid], "both workers answered")
    assert.equals(1, loads("y"))
    assert.same({ [3] = 1, [2] = 5 }, hits)
    local only = next(values)
    assert.is_nil(next(values, only), "one value for everyone")
    -- again: level 1 everywhere, no more loads
    for _, conn in ipairs(conns) do
      assert.equals(1, get(conn, "y").hit)
    end
    assert.equals(1, loads("y"))
  end)

  it("invalidate in one worker is seen by the other", function()
    get(a.conn, "z")
    get(b.conn, "z")
    assert.equals(1, get(b.conn, "z").hit)
    assert.equals(1, get(a.conn, "z").hit)
    assert.is_true(call(a.conn, "op=invalidate&key=z").ok)
    local r = get(b.conn, "z")
    assert.equals(3, r.hit)
    assert.same({ key = "z", n = 2, pid = b.pid }, r.value)
    r = get(a.conn, "z")
    assert.equals(2, r.hit)
    assert.same({ key = "z", n = 2, pid = b.pid }, r.value)
    -- purge, from the other side
    assert.is_true(call(b.conn, "op=purge").ok)
    assert.equals(3, get(a.conn, "z").hit)
    assert.equals(2, get(b.conn, "z").hit)
    assert.equals(3, loads("z"))
  end)

  it("a config change empties every level of every worker", function()
    get(a.conn, "w")
    assert.equals(1, get(a.conn, "w").hit)
    assert.equals(2, get(b.conn, "w").hit)
    assert.equals(1, get(b.conn, "w").hit)
    local mark = gw:log_mark()
    local res = H.admin(gw.admin_port, "POST", "/config",
                        { config = H.json_encode(config("v2")) })
    assert.equals(201, res.status)
    -- both workers switch to the new version
    for slot = 0, 1 do
      assert.is_true(gw:wait_log("worker " .. slot .. ": configuration "
                                 .. "version %d+ in effect", 5, mark))
    end
    local r = get(b.conn, "w")
    assert.equals(3, r.hit)
    assert.equals(2, r.value.n)
    r = get(a.conn, "w")
    assert.equals(2, r.hit)
    assert.same({ key = "w", n = 2, pid = b.pid }, r.value)
    assert.is_table(call(a.conn, "op=probe&key=w").value)
    assert.equals(2, loads("w"))
    H.assert_no_error_log(gw)
  end)
end)
