-- End-to-end: cosockets (ngx.socket.tcp) and resty.http inside the binary,
-- over real sockets.  The `cosocket` test plugin
-- (spec/fixtures/plugins/cosocket) calls the mock upstream from access
-- and answers with what it got.  Checks: results reach the client,
-- keep-alive pools are reused, timeouts and refusals give OpenResty's
-- error strings, a slow call does not hold up another request, timers can
-- use sockets, filter phases refuse them, and a client that goes away
-- while its plugin waits on a socket leaves no socket and no crash behind.
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"

describe("e2e cosockets", function()
  local mock, gw, closed_port

  local function route(name, action, url, extra)
    local conf = { action = action, url = url }
    for k, v in pairs(extra or {}) do conf[k] = v end
    return { name = name, paths = { "/" .. name },
             plugins = { { name = "cosocket", config = conf } } }
  end

  setup(function()
    mock = H.start_mockup(1)
    closed_port = H.free_port()
    local port, ssl_port = H.free_port(), H.free_port()
    local tls_url = "https://localhost:" .. ssl_port .. "/plain/echo"
    local hostport = "127.0.0.1:" .. mock.port
    gw = H.start_gateway { name = "socket",
      port = port,
      conf = { lua_package_path = FIXTURES, plugins = "bundled,cosocket",
               worker_processes = 1,
               proxy_listen = string.format("127.0.0.1:%d reuseport, " ..
                 "127.0.0.1:%d ssl reuseport", port, ssl_port) },
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = mock:url(1), routes = {
              route("http", "http", mock:url(1, "/echo?a=1")),
              route("name", "http",
                    "http://localhost:" .. mock.port .. "/echo"),
              route("uri", "uri", mock:url(1, "/echo")),
              route("chunked", "http", mock:url(1, "/bytes/70000?chunked=1")),
              route("head204", "http", mock:url(1, "/status/204")),
              route("raw", "raw", hostport),
              route("until", "until", hostport),
              route("slow", "http", mock:url(1, "/delay/1500")),
              route("timeout", "http", mock:url(1, "/delay/3000"),
                    { timeout = 200 }),
              route("refused", "http",
                    "http://127.0.0.1:" .. closed_port .. "/"),
              route("unresolvable", "http", "http://no-such-host.invalid/"),
              route("timer", "timer", mock:url(1, "/echo")),
              route("count", "count"),
              route("tls", "uri", tls_url, { ssl_verify = false }),
              route("tlsverify", "uri", tls_url),
              { name = "plain", paths = { "/plain" } },
              route("filter", "filter"),
            } },
        },
      } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  local function get(path, opts)
    return assert(H.request(gw.port, { path = path }, opts))
  end

  it("calls a service with resty.http from access (twice)", function()
    for _ = 1, 2 do
      local res = get("/http")
      assert.equals(200, res.status)
      assert.equals("200", res.headers["x-status"])
      assert.equals(tostring(mock.port), res.headers["x-upstream-port-seen"])
      local echo = res:json()
      assert.equals("/echo", echo.path)
      assert.equals("cosocket", H.upstream_header(echo, "x-from"))
    end
  end)

  it("reuses kept-alive connections (getreusedtimes > 0)", function()
    get("/http")
    local res = get("/http")
    assert.equals("200", res.headers["x-status"])
    assert.is_true(tonumber(res.headers["x-reused"]) > 0,
                   "reused " .. tostring(res.headers["x-reused"]))
  end)

  it("resolves names through the worker's resolver", function()
    local res = get("/name")
    assert.equals("200", res.headers["x-status"], res.headers["x-err"])
    local res2 = get("/unresolvable")
    assert.equals(502, res2.status)
    assert.matches("could not be resolved", res2.headers["x-err"], 1, true)
  end)

  it("does request_uri with a body, and chunked and bodiless responses", function()
    for _ = 1, 2 do
      local res = get("/uri")
      assert.equals("200", res.headers["x-status"], res.headers["x-err"])
      local echo = res:json()
      assert.equals("POST", echo.method)
    end
    local res = get("/chunked")
    assert.equals("200", res.headers["x-status"], res.headers["x-err"])
    assert.equals(70000, #res.body)
    assert.equals("abcdefghij", res.body:sub(1, 10))
    res = get("/head204")
    assert.equals("204", res.headers["x-status"], res.headers["x-err"])
  end)

  it("speaks raw TCP: send tables, receive *l, *a, receiveuntil, sizes", function()
    for _ = 1, 2 do
      local res = get("/raw")
      assert.equals(200, res.status, res.headers["x-err"])
      assert.matches("^HTTP/1%.[01] 200", res.headers["x-line"])
      assert.is_true(tonumber(res.headers["x-len"]) > 10)
      res = get("/until")
      assert.equals(200, res.status)
      assert.is_true(tonumber(res.headers["x-head-lines"]) >= 2)
      assert.equals(#res.body, tonumber(res.headers["x-len"]))
      assert.equals("1", res.headers["x-keepalive"])
      assert.equals("/echo", res:json().path)
    end
  end)

  it("reports timeout and connection refused as OpenResty does", function()
    local t0 = H.now()
    local res = get("/timeout")
    assert.equals(502, res.status)
    assert.equals("timeout", res.headers["x-err"])
    assert.is_true(H.now() - t0 < 2, "the timeout took too long")
    res = get("/refused")
    assert.equals(502, res.status)
    assert.equals("connection refused", res.headers["x-err"])
  end)

  it("speaks TLS (sslhandshake), verifying peers when asked", function()
    for _ = 1, 2 do
      local res = get("/tls")
      assert.equals("200", res.headers["x-status"], res.headers["x-err"])
      assert.equals("POST", res:json().method)
    end
    -- the gateway's own generated certificate is trusted by no CA
    local res = get("/tlsverify")
    assert.equals(502, res.status)
    assert.matches("handshake failed", res.headers["x-err"], 1, true)
  end)

  it("does not let a slow call delay another request", function()
    local a = assert(H.connect(gw.port))
    local b = assert(H.connect(gw.port))
    assert(a:send(H.request_bytes { path = "/slow" }))
    H.sleep(0.1)
    assert(b:send(H.request_bytes { path = "/http" }))
    assert.equals(2, H.first_readable({ a, b }, 5))
    local rb = assert(b:read_response())
    assert.equals("200", rb.headers["x-status"])
    local ra = assert(a:read_response())
    assert.equals("200", ra.headers["x-status"])
    a:close()
    b:close()
  end)

  it("works inside ngx.timer.at callbacks", function()
    for _ = 1, 2 do
      local res = get("/timer")
      assert.equals(200, res.status)
      assert.equals("200", res.headers["x-timer-status"], res.headers["x-err"])
    end
  end)

  it("is disabled in header_filter", function()
    local res = get("/filter/echo")
    assert.equals(200, res.status)
    assert.matches("API disabled in the context of header_filter",
                   res.headers["x-filter-err"], 1, true)
  end)

  it("cleans up when the client leaves while a plugin waits", function()
    local mark = gw:log_mark()
    for _ = 1, 3 do
      local c = assert(H.connect(gw.port))
      assert(c:send(H.request_bytes { path = "/slow" }))
      H.sleep(0.2)
      c:close()
    end
    H.sleep(0.2)
    -- the worker goes on, and no socket is left in use
    local res = get("/count")
    assert.equals(200, res.status)
    assert.matches("^0 %d+$", res.headers["x-socks"])
    res = get("/http")
    assert.equals("200", res.headers["x-status"])
    assert.is_true(gw:alive())
    H.sleep(1.5)   -- past the mock's delay: nothing fires for the dead ones
    res = get("/count")
    assert.matches("^0 %d+$", res.headers["x-socks"])
    H.assert_no_error_log(gw, {}, mark)
  end)

  it("leaves no error in the log", function()
    H.assert_no_error_log(gw, { "could not be resolved",
                                "certificate verify failed" })
    assert.equals(1, #gw:worker_pids())
  end)
end)
