-- End-to-end: the Admin API over sockets against the real binary --
-- node endpoints, CRUD with JSON and form bodies, nested routes,
-- pagination links, Kong's error bodies, upstream health, and the
-- database = off refusals.  Every request is sent twice (state must not
-- leak between requests); the error log must stay clean.

local H = require "moongate"

local function admin_req(gw, ...)
  return H.admin(gw.admin_port, ...)
end

local function start(database)
  local aport = H.free_port()
  local gw = H.start_gateway { name = "admin", conf = {
    database = database, admin_listen = "127.0.0.1:" .. aport,
    worker_processes = 1,
  } }
  gw.admin_port = aport
  assert(H.wait_port(aport, 10, gw.pid), "admin port not open")
  return gw
end

describe("Admin API (database = lmdb)", function()
  local gw

  lazy_setup(function()
    gw = start("lmdb")
  end)

  lazy_teardown(function()
    if gw then
      H.assert_no_error_log(gw)
    end
    H.cleanup()
  end)

  it("GET / and /status", function()
    for _ = 1, 2 do
      local res, j = admin_req(gw, "GET", "/")
      assert.equals(200, res.status)
      assert.equals("Welcome to moongate", j.tagline)
      assert.is_string(j.node_id)
      assert.is_table(j.configuration)
      assert.is_nil(j.configuration.admin_api_token)
      res, j = admin_req(gw, "GET", "/status")
      assert.equals(200, res.status)
      assert.is_true(j.database.reachable)
      res, j = admin_req(gw, "GET", "/status/ready")
      assert.equals(200, res.status)
      assert.same({ message = "ready" }, j)
    end
  end)

  it("creates a service and its route, form and JSON", function()
    local res, s = admin_req(gw, "POST", "/services",
      "name=e2e&host=example.test&port=8080",
      { ["Content-Type"] = "application/x-www-form-urlencoded" })
    assert.equals(201, res.status)
    assert.equals(8080, s.port)
    local r
    res, r = admin_req(gw, "POST", "/services/e2e/routes",
                       { name = "e2e-r", paths = { "/e2e" } })
    assert.equals(201, res.status)
    assert.same({ id = s.id }, r.service)
    for _ = 1, 2 do
      local j
      res, j = admin_req(gw, "GET", "/services/e2e/routes")
      assert.equals(200, res.status)
      assert.equals(1, #j.data)
      assert.matches('"next":null', res.body)
      res, j = admin_req(gw, "GET", "/routes/e2e-r/service")
      assert.equals("e2e", j.name)
    end
    res = admin_req(gw, "PATCH", "/services/e2e", { retries = 2 })
    assert.equals(200, res.status)
    res = admin_req(gw, "DELETE", "/routes/e2e-r")
    assert.equals(204, res.status)
    res = admin_req(gw, "DELETE", "/routes/e2e-r")
    assert.equals(204, res.status)
  end)

  it("pages with next links", function()
    for i = 1, 3 do
      admin_req(gw, "POST", "/consumers", { username = "u" .. i })
    end
    local res, j = admin_req(gw, "GET", "/consumers?size=2")
    assert.equals(200, res.status)
    assert.equals(2, #j.data)
    assert.matches("^/consumers%?offset=.+&size=2$", j.next)
    res, j = admin_req(gw, "GET", j.next)
    assert.equals(200, res.status)
    assert.equals(1, #j.data)
  end)

  it("answers Kong's errors", function()
    for _ = 1, 2 do
      local res, j = admin_req(gw, "GET", "/nope")
      assert.equals(404, res.status)
      assert.same({ message = "Not found" }, j)
      res, j = admin_req(gw, "DELETE", "/services")
      assert.equals(405, res.status)
      assert.same({ message = "Method not allowed" }, j)
      res, j = admin_req(gw, "POST", "/services", "{x",
                         { ["Content-Type"] = "application/json" })
      assert.equals(400, res.status)
      assert.same({ message = "Cannot parse JSON body" }, j)
      res, j = admin_req(gw, "POST", "/services", { name = "nohost" })
      assert.equals(400, res.status)
      assert.equals("schema violation", j.name)
      res, j = admin_req(gw, "GET", "/services?size=x")
      assert.equals(400, res.status)
      assert.equals("invalid size", j.name)
    end
  end)

  it("upstream health: HEALTHCHECKS_OFF for an upstream without checks", function()
    admin_req(gw, "POST", "/upstreams", { name = "up1" })
    local res = admin_req(gw, "POST", "/upstreams/up1/targets",
                          { target = "127.0.0.1:9" })
    assert.equals(201, res.status)
    local j
    res, j = admin_req(gw, "GET", "/upstreams/up1/health")
    assert.equals(200, res.status)
    assert.equals(1, #j.data)
    assert.equals("127.0.0.1:9", j.data[1].target)
    assert.equals("HEALTHCHECKS_OFF", j.data[1].health)
    res = admin_req(gw, "GET", "/upstreams/nope/health")
    assert.equals(404, res.status)
  end)
end)

describe("Admin API (database = off)", function()
  local gw

  lazy_setup(function()
    gw = start("off")
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("refuses writes with Kong's 405", function()
    for _ = 1, 2 do
      local res, j = admin_req(gw, "POST", "/services", { host = "x" })
      assert.equals(405, res.status)
      assert.same({ code = 12, name = "operation unsupported",
                    message = "cannot create 'services' entities when " ..
                              "not using a database" }, j)
    end
  end)

  it("loads a configuration through POST /config", function()
    local res = admin_req(gw, "POST", "/config", {
      config = "_format_version: \"3.0\"\nservices:\n- name: c1\n" ..
               "  url: http://127.0.0.1:9\n" })
    assert.equals(201, res.status)
    local j
    res, j = admin_req(gw, "GET", "/services/c1")
    assert.equals(200, res.status)
    assert.equals("c1", j.name)
    res, j = admin_req(gw, "GET", "/config")
    assert.equals(200, res.status)
    assert.matches("c1", j.config)
  end)

  it("refuses a file that repeats a key, as moongate check does", function()
    local text = "_format_version: \"3.0\"\nservices:\n- name: c2\n" ..
                 "  url: http://127.0.0.1:9\n  name: c3\n"
    local res, j = admin_req(gw, "POST", "/config", { config = text })
    assert.equals(400, res.status)
    assert.matches("duplicate key 'name'", j.message, 1, true)
    res = admin_req(gw, "GET", "/services/c3")
    assert.equals(404, res.status)
    res = admin_req(gw, "GET", "/services/c1")
    assert.equals(200, res.status)      -- the previous config stands
    local path = H.new_prefix("dupkey") .. "/dup.yml"
    H.write_file(path, text)
    local rc, out = H.moongate({ "check", path })
    assert.not_equals(0, rc)
    assert.matches("duplicate key", out, 1, true)
  end)
end)
