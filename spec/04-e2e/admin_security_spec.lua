-- End-to-end: Admin API security -- loopback by default, admin_api_token
-- (Authorization: Bearer or Kong-Admin-Token), the admin listener over
-- TLS, the token never in a log, and a slow admin client that does not
-- delay proxying (the Admin API runs in its own process).

local H = require "moongate"

local TOKEN = "s3cr3t-admin-token-0123456789abcdef"

local function start(conf)
  local aport = H.free_port()
  local c = { database = "lmdb", admin_listen = "127.0.0.1:" .. aport,
              worker_processes = 1 }
  for k, v in pairs(conf or {}) do
    c[k] = v
  end
  if c.admin_listen ~= "127.0.0.1:" .. aport then
    c.admin_listen = c.admin_listen:gsub("PORT", tostring(aport))
  end
  local gw = H.start_gateway { name = "adminsec", conf = c }
  gw.admin_port = aport
  assert(H.wait_port(aport, 10, gw.pid), "admin port not open")
  return gw
end

describe("Admin API security", function()
  lazy_teardown(function()
    H.cleanup()
  end)

  it("listens on loopback by default (127.0.0.1:8001)", function()
    local gw = H.start_gateway { name = "adminsec-default",
                                 conf = { admin_listen = false, database = "lmdb" } }
    assert.truthy(H.wait_port(8001, 10, gw.pid))
    -- /proc/net/tcp: state 0A (LISTEN) on 0100007F:1F41 only
    local tcp = H.read_file("/proc/net/tcp") or ""
    local loop, any = false, false
    for l, st in tcp:gmatch("%d+: (%x+:%x+) %x+:%x+ (%x%x)") do
      if st == "0A" and l == "0100007F:1F41" then loop = true end
      if st == "0A" and l == "00000000:1F41" then any = true end
    end
    assert.is_true(loop)
    assert.is_false(any)
    local res = H.request(8001, { path = "/status" })
    assert.equals(200, res.status)
    gw:stop()
  end)

  it("admin_api_token: 401 without it, 200 with Bearer or Kong-Admin-Token", function()
    local gw = start { admin_api_token = TOKEN }
    local res = H.request(gw.admin_port, { path = "/services" })
    assert.equals(401, res.status)
    assert.matches("Unauthorized", res.body)
    res = H.request(gw.admin_port, { path = "/services",
                                     headers = { Authorization = "Bearer wrong" } })
    assert.equals(401, res.status)
    res = H.request(gw.admin_port, { path = "/services",
      headers = { Authorization = "Bearer " .. TOKEN:sub(1, -2) } })
    assert.equals(401, res.status)
    res = H.request(gw.admin_port, { path = "/services",
                                     headers = { Authorization = "Bearer " .. TOKEN } })
    assert.equals(200, res.status)
    res = H.request(gw.admin_port, { path = "/services",
                                     headers = { ["Kong-Admin-Token"] = TOKEN } })
    assert.equals(200, res.status)
    -- the proxy is not affected
    res = H.request(gw.port, { path = "/" })
    assert.equals(404, res.status)
    -- GET / does not show it, and no log has it
    res = H.request(gw.admin_port, { path = "/", headers = { ["Kong-Admin-Token"] = TOKEN } })
    assert.equals(200, res.status)
    assert.is_nil(res.body:find(TOKEN, 1, true))
    gw:stop()
    assert.is_nil(gw:error_log():find(TOKEN, 1, true))
    local alog = H.read_file(gw.prefix .. "/logs/admin_access.log") or ""
    assert.is_nil(alog:find(TOKEN, 1, true))
  end)

  it("refuses an oversized body with 413 before reading it", function()
    local gw = start()
    local c = assert(H.connect(gw.admin_port))
    assert(c:send("POST /config HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  .. "Content-Length: 20000000\r\n\r\n"))
    local res = c:read_response()
    c:close()
    assert.equals(413, res.status)
    assert.truthy(gw:alive())
  end)

  it("serves over TLS when admin_listen says ssl", function()
    local gw = start { admin_listen = "127.0.0.1:PORT ssl" }
    -- plain HTTP on the TLS port gets nginx's 400
    local res = H.request(gw.admin_port, { path = "/" })
    assert.equals(400, res.status)
    local out = io.popen("curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:"
                         .. gw.admin_port .. "/status 2>&1"):read("*a")
    assert.equals("200", out)
  end)

  describe("client certificates (admin_ssl_verify_client)", function()
    local certs

    local function curl(port, args)
      local cmd = "curl -s -o /dev/stderr -w '%{http_code}' " .. args ..
                  " https://localhost:" .. port .. "/status 2>/tmp/mg-admin-mtls.body"
      local code = io.popen(cmd):read("*a")
      return code, H.read_file("/tmp/mg-admin-mtls.body") or ""
    end

    lazy_setup(function()
      local d = H.new_prefix("admin-mtls")
      local ca = H.make_ca(d, "ca", { cn = "Admin Test CA" })
      local other = H.make_ca(d, "other", { cn = "Other CA" })
      certs = {
        ca = ca,
        server = H.make_cert(d, "server", ca, { san = "DNS:localhost" }),
        client = H.make_cert(d, "client", ca, { cn = "operator" }),
        stranger = H.make_cert(d, "stranger", other, { cn = "stranger" }),
      }
    end)

    it("on: a certificate signed by the CA is required, else nginx's 400", function()
      local gw = start { admin_listen = "127.0.0.1:PORT ssl",
                         admin_ssl_cert = certs.server.crt,
                         admin_ssl_cert_key = certs.server.key,
                         admin_ssl_client_certificate = certs.ca.crt,
                         admin_ssl_verify_client = "on" }
      local ca = "--cacert " .. certs.ca.crt      -- admin_ssl_cert is served
      local code, body = curl(gw.admin_port, ca)
      assert.equals("400", code)
      assert.matches("No required SSL certificate was sent", body, 1, true)
      code = curl(gw.admin_port, ca .. " --cert " .. certs.client.crt ..
                                 " --key " .. certs.client.key)
      assert.equals("200", code)
      code, body = curl(gw.admin_port, ca .. " --cert " .. certs.stranger.crt ..
                                       " --key " .. certs.stranger.key)
      assert.equals("400", code)
      assert.matches("The SSL certificate error", body, 1, true)
      assert.truthy(gw:alive())
    end)

    it("optional: no certificate passes, a bad one does not", function()
      local gw = start { admin_listen = "127.0.0.1:PORT ssl",
                         admin_ssl_client_certificate = certs.ca.crt,
                         nginx_admin_ssl_verify_client = "optional" }
      assert.equals("200", (curl(gw.admin_port, "-k")))
      assert.equals("200", (curl(gw.admin_port, "-k --cert " .. certs.client.crt ..
                                                " --key " .. certs.client.key)))
      assert.equals("400", (curl(gw.admin_port, "-k --cert " .. certs.stranger.crt ..
                                                " --key " .. certs.stranger.key)))
    end)

    it("refuses to start with verify on and no CA bundle", function()
      local dir = H.new_prefix("admin-mtls-bad")
      local conf = dir .. "/moongate.conf"
      H.write_conf(conf, { prefix = dir, admin_listen = "127.0.0.1:" .. H.free_port() .. " ssl",
                           admin_ssl_verify_client = "on" })
      local rc, out = H.moongate({ "check", conf })
      assert.not_equals(0, rc)
      assert.matches("admin_ssl_verify_client = on needs admin_ssl_client_certificate",
                     out, 1, true)
    end)
  end)

  it("a slow admin client does not delay proxied requests", function()
    local mock = H.start_mockup(1)
    local gw = start()
    local res = H.request(gw.admin_port, { method = "POST", path = "/services",
      headers = { ["Content-Type"] = "application/json" },
      body = H.json_encode { name = "s", url = "http://127.0.0.1:" .. mock.port } })
    assert.equals(201, res.status)
    res = H.request(gw.admin_port, { method = "POST", path = "/services/s/routes",
      headers = { ["Content-Type"] = "application/json" },
      body = H.json_encode { paths = { "/s" } } })
    assert.equals(201, res.status)
    -- an admin client that sends half a request and stalls
    local slow = assert(H.connect(gw.admin_port))
    slow:send("POST /services HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              .. "Content-Length: 100000\r\n\r\n{\"name\":")
    local deadline = H.now() + 3
    local ok
    repeat
      local r = H.request(gw.port, { path = "/s/echo" })
      ok = r and r.status == 200
      if not ok then H.sleep(0.05) end
    until ok or H.now() > deadline
    assert.is_true(ok)
    local t0 = H.now()
    for _ = 1, 20 do
      local r = H.request(gw.port, { path = "/s/echo" })
      assert.equals(200, r.status)
    end
    assert.is_true(H.now() - t0 < 2)
    slow:close()
  end)
end)
