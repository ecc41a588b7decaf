-- End-to-end: live configuration.  Admin API writes reach every worker
-- within a second without a reload and without dropping a request;
-- requests on kept-alive connections go on across config versions; what
-- was written survives a restart and a kill -9; DB-less POST /config and
-- `moongate config db_import/db_export` take the same path.

local H = require "moongate"

local function admin_req(gw, ...)
  return H.admin(gw.admin_port, ...)
end

local function start(opts)
  opts = opts or {}
  local aport = H.free_port()
  local conf = {
    database = opts.database or "lmdb",
    admin_listen = "127.0.0.1:" .. aport,
    worker_processes = opts.workers or 2,
  }
  for k, v in pairs(opts.conf or {}) do
    conf[k] = v
  end
  local gw = H.start_gateway { config = opts.config, conf = conf,
                               prefix = opts.prefix, name = "live",
                               port = opts.port }
  gw.admin_port = aport
  assert(H.wait_port(aport, 10, gw.pid), "admin port not open")
  return gw
end

-- GET path on `n` new connections (spread over the workers by
-- SO_REUSEPORT); true when all answered `status`.
local function all_answer(gw, path, status, n)
  for _ = 1, n or 8 do
    local res = H.request(gw.port, { path = path })
    if not res or res.status ~= status then
      return false
    end
  end
  return true
end

local function wait_all(gw, path, status, timeout)
  local t0 = H.now()
  while H.now() - t0 < (timeout or 3) do
    if all_answer(gw, path, status) then
      return H.now() - t0
    end
    H.sleep(0.01)
  end
  return nil
end

describe("live configuration (database = lmdb)", function()
  local mock, gw

  lazy_setup(function()
    mock = H.start_mockup(1)
    gw = start()
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("starts empty: 404 from the proxy, an empty list from the Admin API", function()
    local res = H.request(gw.port, { path = "/live/echo" })
    assert.equals(404, res.status)
    local ares, body = admin_req(gw, "GET", "/services")
    assert.equals(200, ares.status)
    assert.same({}, body.data)
  end)

  it("a service and a route created over the Admin API serve on every worker within 1 s", function()
    local res = admin_req(gw, "POST", "/services",
                          { name = "live", url = "http://127.0.0.1:" .. mock.port })
    assert.equals(201, res.status)
    local t0 = H.now()
    res = admin_req(gw, "POST", "/services/live/routes",
                    { name = "live-r", paths = { "/live" } })
    assert.equals(201, res.status)
    local took = wait_all(gw, "/live/echo", 200, 3)
    assert.truthy(took, "the route never served on every worker")
    assert.is_true(H.now() - t0 < 1.0, "propagation took " ..
                   tostring(H.now() - t0) .. " s")
    -- both workers logged the same new version
    local version
    for v in gw:error_log():gmatch("configuration version (%d+) in effect") do
      version = v
    end
    assert.truthy(version)
    local n = 0
    for _ in gw:error_log():gmatch("configuration version " .. version ..
                                   " in effect") do
      n = n + 1
    end
    assert.equals(2, n)
  end)

  it("100 admin writes in a row: zero failed requests on kept-alive connections", function()
    local conns = {}
    for i = 1, 4 do
      conns[i] = assert(H.connect(gw.port))
    end
    local failed, served = 0, 0
    for i = 1, 100 do
      -- a request in flight while the write lands
      for _, c in ipairs(conns) do
        assert(c:send(H.request_bytes({ path = "/live/echo" })))
      end
      local res = admin_req(gw, "PATCH", "/routes/live-r",
                            { tags = { "write-" .. i } })
      assert.equals(200, res.status)
      if i % 10 == 0 then
        res = admin_req(gw, "POST", "/services",
                        { name = "extra-" .. i,
                          url = "http://127.0.0.1:" .. mock.port })
        assert.equals(201, res.status)
      end
      for _, c in ipairs(conns) do
        local r = c:read_response()
        if r and r.status == 200 then
          served = served + 1
        else
          failed = failed + 1
        end
      end
    end
    for _, c in ipairs(conns) do
      c:close()
    end
    assert.equals(0, failed)
    assert.equals(400, served)
    H.assert_no_error_log(gw)
  end)

  it("GET /upstreams/{u}/health shows what the workers' passive checks saw", function()
    local up = { name = "hc-up", healthchecks = { passive = {
      unhealthy = { tcp_failures = 1, http_failures = 0, timeouts = 0 } } } }
    local res = admin_req(gw, "POST", "/upstreams", up)
    assert.equals(201, res.status)
    local dead = H.free_port()
    assert.equals(201, (admin_req(gw, "POST", "/upstreams/hc-up/targets",
      { target = "127.0.0.1:" .. mock.port })).status)
    assert.equals(201, (admin_req(gw, "POST", "/upstreams/hc-up/targets",
      { target = "127.0.0.1:" .. dead })).status)
    assert.equals(201, (admin_req(gw, "POST", "/services",
      { name = "hc", host = "hc-up", retries = 1 })).status)
    assert.equals(201, (admin_req(gw, "POST", "/services/hc/routes",
      { paths = { "/hc" } })).status)
    assert.truthy(wait_all(gw, "/hc/echo", 200, 3))
    -- enough requests that both workers tried the dead target
    for _ = 1, 20 do
      H.request(gw.port, { path = "/hc/echo" })
    end
    local j
    local deadline = H.now() + 3
    repeat
      res, j = admin_req(gw, "GET", "/upstreams/hc-up/health")
      assert.equals(200, res.status)
      local by = {}
      for _, t in ipairs(j.data) do
        by[t.target] = t.health
      end
      if by["127.0.0.1:" .. dead] == "UNHEALTHY" then
        assert.equals("HEALTHY", by["127.0.0.1:" .. mock.port])
        break
      end
      H.sleep(0.1)
    until H.now() > deadline
    local dead_health
    for _, t in ipairs(j.data) do
      if t.target == "127.0.0.1:" .. dead then
        dead_health = t.health
      end
    end
    assert.equals("UNHEALTHY", dead_health)
  end)

  it("a deleted route stops serving everywhere", function()
    local res = admin_req(gw, "DELETE", "/routes/live-r")
    assert.equals(204, res.status)
    assert.truthy(wait_all(gw, "/live/echo", 404, 3))
  end)

  it("what was written survives a restart", function()
    local res = admin_req(gw, "POST", "/services/live/routes",
                          { name = "persist", paths = { "/persist" } })
    assert.equals(201, res.status)
    assert.truthy(wait_all(gw, "/persist/echo", 200, 3))
    assert.is_true(gw:stop())
    local gw2 = start { prefix = gw.prefix }
    assert.truthy(all_answer(gw2, "/persist/echo", 200))
    local _, body = admin_req(gw2, "GET", "/routes/persist")
    assert.equals("persist", body.name)
    gw = gw2
  end)

  it("db_export writes what db_import reads back", function()
    local file = gw.prefix .. "/export.yml"
    local rc, out = H.moongate({ "config", "db_export", file, "-p", gw.prefix,
                                 "-c", gw.conf_path })
    assert.equals(0, rc, out)
    local text = H.read_file(file)
    assert.matches('_format_version: "3.0"', text, 1, true)
    assert.matches("persist", text, 1, true)
    -- empty the store through the Admin API, then import the file back
    local res = admin_req(gw, "DELETE", "/routes/persist")
    assert.equals(204, res.status)
    assert.truthy(wait_all(gw, "/persist/echo", 404, 3))
    rc, out = H.moongate({ "config", "db_import", file, "-p", gw.prefix,
                           "-c", gw.conf_path })
    assert.equals(0, rc, out)
    -- the running gateway picks the import up like any other write
    assert.truthy(wait_all(gw, "/persist/echo", 200, 3))
  end)
end)

describe("kill -9 in the middle of admin writes", function()
  local mock

  lazy_setup(function()
    mock = H.start_mockup(1)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("loses no acknowledged write and corrupts nothing", function()
    local gw = start { workers = 1 }
    local acked = {}
    -- acknowledged writes
    for i = 1, 20 do
      local res = admin_req(gw, "POST", "/services",
                            { name = "k" .. i,
                              url = "http://127.0.0.1:" .. mock.port })
      assert.equals(201, res.status)
      acked[#acked + 1] = "k" .. i
    end
    -- writes in flight when everything dies
    local conns = {}
    for i = 21, 60 do
      local c = assert(H.connect(gw.admin_port))
      local body = H.json_encode { name = "k" .. i,
                                   url = "http://127.0.0.1:" .. mock.port }
      c:send(H.request_bytes { method = "POST", path = "/services",
                               headers = { ["Content-Type"] = "application/json" },
                               body = body })
      conns[#conns + 1] = c
    end
    -- the master first (else it respawns what dies), then its children
    local children = H.children(gw.pid)
    H.kill(gw.pid, "KILL")
    for _, p in ipairs(children) do
      H.kill(p, "KILL")
    end
    H.wait_exit(gw.pid, 5)
    for _, p in ipairs(children) do
      H.wait_exit(p, 5)
    end
    for _, c in ipairs(conns) do
      c:close()
    end
    local gw2 = start { prefix = gw.prefix, workers = 1 }
    for _, name in ipairs(acked) do
      local res = admin_req(gw2, "GET", "/services/" .. name)
      assert.equals(200, res.status)
    end
    -- the store reads whole: a full listing pages through every entity
    local seen, offset = 0, nil
    repeat
      local res, body = admin_req(gw2, "GET", "/services?size=7" ..
                                  (offset and ("&offset=" .. offset) or ""))
      assert.equals(200, res.status)
      seen = seen + #body.data
      offset = body.offset
    until not offset or offset == H.json_decode("null")
    assert.is_true(seen >= 20 and seen <= 60)
    gw2:stop()
  end)
end)

describe("DB-less: POST /config", function()
  local mock, gw

  lazy_setup(function()
    mock = H.start_mockup(1)
    gw = start { database = "off",
                 config = { _format_version = "3.0",
                            services = { H.service("a", "http://127.0.0.1:" .. mock.port,
                                                   { { paths = { "/a" } } }) } } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("serves the file, refuses entity writes, takes a new config", function()
    assert.truthy(all_answer(gw, "/a/echo", 200))
    local res = admin_req(gw, "POST", "/services", { name = "x", url = "http://x" })
    assert.equals(405, res.status)
    local new = {
      _format_version = "3.0",
      services = { { name = "b", url = "http://127.0.0.1:" .. mock.port,
                     routes = { { name = "rb", paths = { "/b" } } } } },
    }
    res = admin_req(gw, "POST", "/config", { config = H.json_encode(new) })
    assert.equals(201, res.status)
    assert.truthy(wait_all(gw, "/b/echo", 200, 3))
    assert.truthy(wait_all(gw, "/a/echo", 404, 3))
  end)

  it("GET /config returns what POST /config accepts", function()
    local res = H.request(gw.admin_port, { path = "/config" })
    assert.equals(200, res.status)
    local cfg = res:json()
    local text = cfg.config or res.body
    local res2 = admin_req(gw, "POST", "/config", { config = text })
    assert.equals(201, res2.status)
    assert.truthy(all_answer(gw, "/b/echo", 200))
  end)

  it("a bad config is refused with the field named and changes nothing", function()
    local bad = { _format_version = "3.0",
                  services = { { name = "c", url = "http://127.0.0.1:1",
                                 routes = { { paths = { "no-slash" } } } } } }
    local res, body = admin_req(gw, "POST", "/config", { config = H.json_encode(bad) })
    assert.equals(400, res.status)
    assert.matches("paths", H.json_encode(body), 1, true)
    assert.truthy(all_answer(gw, "/b/echo", 200))
  end)
end)

describe("a full store", function()
  lazy_teardown(function()
    H.cleanup()
  end)

  it("answers 507 naming lmdb_map_size, keeps reading, and takes writes again with a bigger map", function()
    local gw = start { workers = 1, conf = { lmdb_map_size = "256k" } }
    local pad = string.rep("x", 200)
    local full_at
    for i = 1, 1000 do
      local res, body = admin_req(gw, "POST", "/services",
                                  { name = "svc" .. i, url = "http://127.0.0.1:9/" .. pad })
      if res.status ~= 201 then
        assert.equals(507, res.status)
        assert.matches("lmdb_map_size", body.message, 1, true)
        full_at = i
        break
      end
    end
    assert.truthy(full_at, "the store never filled")
    local res = admin_req(gw, "GET", "/services/svc1")
    assert.equals(200, res.status)
    -- nothing half-written: the refused one is absent
    res = admin_req(gw, "GET", "/services/svc" .. full_at)
    assert.equals(404, res.status)
    -- a delete needs pages too (LMDB copies on write): on a map this full
    -- it may be refused the same way, never half-done
    res = admin_req(gw, "DELETE", "/services/svc1")
    assert.is_true(res.status == 204 or res.status == 507)
    assert.truthy(gw:alive())
    -- the operator's fix: a bigger map; everything is still there
    assert.is_true(gw:stop())
    local gw2 = start { workers = 1, prefix = gw.prefix,
                        conf = { lmdb_map_size = "8m" } }
    res = admin_req(gw2, "GET", "/services/svc2")
    assert.equals(200, res.status)
    res = admin_req(gw2, "POST", "/services", { name = "again", url = "http://x" })
    assert.equals(201, res.status)
    gw2:stop()
  end)
end)

describe("TLS clients across config versions", function()
  lazy_teardown(function()
    H.cleanup()
  end)

  it("a kept-alive TLS connection goes on serving after config changes", function()
    local mock = H.start_mockup(1)
    local port, tport = H.free_port(), H.free_port()
    local gw = start { workers = 1, port = port, conf = {
      proxy_listen = "127.0.0.1:" .. port .. " reuseport, 127.0.0.1:"
                     .. tport .. " ssl reuseport" } }
    assert.equals(201, (admin_req(gw, "POST", "/services",
      { name = "t", url = "http://127.0.0.1:" .. mock.port })).status)
    assert.equals(201, (admin_req(gw, "POST", "/services/t/routes",
      { name = "tr", paths = { "/t" } })).status)
    assert.truthy(wait_all(gw, "/t/echo", 200, 3))
    -- one TLS connection: a request, 2 s of config changes, a request
    local out = os.tmpname()
    local req = "GET /t/echo HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
    os.execute(("(printf '%s'; sleep 2; printf '%s'; sleep 1) | " ..
                "openssl s_client -quiet -connect 127.0.0.1:%d >%s 2>/dev/null &")
               :format(req, req, tport, out))
    H.sleep(0.5)
    for i = 1, 5 do
      local res = admin_req(gw, "PATCH", "/routes/tr", { tags = { "v" .. i } })
      assert.equals(200, res.status)
      H.sleep(0.1)
    end
    H.sleep(3)
    local text = H.read_file(out) or ""
    os.remove(out)
    local n = 0
    for _ in text:gmatch("HTTP/1%.1 200") do
      n = n + 1
    end
    assert.equals(2, n, text)
    H.assert_no_error_log(gw)
  end)
end)

describe("kong.db and kong.cache in plugins", function()
  lazy_teardown(function()
    H.cleanup()
  end)

  it("a plugin reads entities through kong.db; a config change empties kong.cache in every worker", function()
    local mock = H.start_mockup(1)
    local gw = start { conf = {
      lua_package_path = H.root .. "/spec/fixtures/plugins/?.lua;;",
      plugins = "bundled,db-reader" } }
    assert.equals(201, (admin_req(gw, "POST", "/services",
      { name = "lookup", url = "http://first.test" })).status)
    assert.equals(201, (admin_req(gw, "POST", "/services",
      { name = "m", url = "http://127.0.0.1:" .. mock.port })).status)
    assert.equals(201, (admin_req(gw, "POST", "/services/m/routes",
      { name = "dbr", paths = { "/dbr" } })).status)
    local res = admin_req(gw, "POST", "/routes/dbr/plugins",
      { name = "db-reader", config = { service = "lookup" } })
    assert.equals(201, res.status)
    local function looked_up()
      local seen = {}
      for _ = 1, 8 do
        local r = H.request(gw.port, { path = "/dbr/echo" })
        if not r or r.status ~= 200 then
          return nil
        end
        seen[H.upstream_header(H.echo(r), "x-looked-up") or "?"] = true
      end
      local only = next(seen)
      return next(seen, only) == nil and only or "mixed"
    end
    local deadline = H.now() + 3
    while looked_up() ~= "first.test" and H.now() < deadline do
      H.sleep(0.05)
    end
    assert.equals("first.test", looked_up())
    -- the value is cached now; a change to the entity reaches every worker
    assert.equals(200, (admin_req(gw, "PATCH", "/services/lookup",
      { host = "second.test" })).status)
    deadline = H.now() + 3
    while looked_up() ~= "second.test" and H.now() < deadline do
      H.sleep(0.05)
    end
    assert.equals("second.test", looked_up())
    H.assert_no_error_log(gw)
  end)
end)
