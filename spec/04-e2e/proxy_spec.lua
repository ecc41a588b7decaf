-- End-to-end: what the gateway adds, removes and forwards when proxying
-- (headers, Host, X-Forwarded-*, Via and latency headers, methods, bodies,
-- Expect: 100-continue, keep-alive, pipelining, upstream keep-alive, the
-- `headers` property, the access log).  Each request is sent twice.

local H = require "moongate"

local function config(mock, extra_services)
  local services = {
    { name = "echo", url = mock:url(1), routes = {
        { name = "echo", paths = { "/" } } } },
    { name = "pool", url = mock:url(2), routes = {
        { name = "pool", paths = { "/pool" }, strip_path = false } } },
    { name = "noretry", url = mock:url(2), retries = 0, routes = {
        { name = "noretry", paths = { "/nr" } } } },
  }
  for _, s in ipairs(extra_services or {}) do
    services[#services + 1] = s
  end
  return { _format_version = "3.0", services = services }
end

describe("e2e proxy", function()
  local mock, gw, version, mock_abort

  lazy_setup(function()
    mock = H.start_mockup(2)
    -- a mock of its own, so its connection count is this test's alone
    mock_abort = H.start_mockup(1)
    gw = H.start_gateway { name = "proxy", config = config(mock, {
      { name = "abort", url = mock_abort:url(1), routes = {
        { name = "abort", paths = { "/abort" } } } } }) }
    version = H.version()
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function echo_req(req)
    local res, err = H.request(gw.port, req)
    assert(res, err)
    assert.equals(200, res.status, tostring(res.body))
    return res, res:json()
  end

  describe("response headers", function()
    it("adds Via and the latency headers to proxied responses", function()
      for _ = 1, 2 do
        local res = echo_req { path = "/echo" }
        assert.is_string(version, "`moongate version` printed no version")
        assert.equals("1.1 moongate/" .. version, res.headers["via"])
        assert.matches("^%d+$", res.headers["x-kong-upstream-latency"] or "")
        assert.matches("^%d+$", res.headers["x-kong-proxy-latency"] or "")
        assert.is_nil(res.headers["x-kong-response-latency"])
        assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
      end
    end)

    it("passes the upstream's status, headers and body", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/status/418" }))
        assert.equals(418, res.status)
        assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
        res = assert(H.request(gw.port, { path = "/fast" }))
        assert.equals(200, res.status)
        assert.equals("hello\n", res.body)
      end
    end)
  end)

  describe("request headers seen upstream", function()
    it("sets X-Forwarded-* and X-Real-IP as Kong does", function()
      for _ = 1, 2 do
        local _, e = echo_req { path = "/echo/x?y=1", host = "client.test" }
        local h = function(n) return H.upstream_header(e, n) end
        assert.equals("127.0.0.1", h("x-forwarded-for"))
        assert.equals("http", h("x-forwarded-proto"))
        assert.equals("client.test", h("x-forwarded-host"))
        assert.equals(tostring(gw.port), h("x-forwarded-port"))
        assert.equals("/echo/x", h("x-forwarded-path"))
        assert.equals("127.0.0.1", h("x-real-ip"))
      end
    end)

    it("strips the port from X-Forwarded-Host", function()
      for _ = 1, 2 do
        local _, e = echo_req { path = "/echo", host = "client.test:" .. gw.port }
        assert.equals("client.test", H.upstream_header(e, "x-forwarded-host"))
      end
    end)

    it("appends the client address to an incoming X-Forwarded-For", function()
      for _ = 1, 2 do
        local _, e = echo_req { path = "/echo", headers = {
          ["X-Forwarded-For"] = "203.0.113.7" } }
        assert.equals("203.0.113.7, 127.0.0.1",
                      H.upstream_header(e, "x-forwarded-for"))
      end
    end)

    it("ignores X-Forwarded-Proto/Host/Port from an untrusted client", function()
      for _ = 1, 2 do
        local _, e = echo_req { path = "/echo", host = "real.test", headers = {
          ["X-Forwarded-Proto"] = "https",
          ["X-Forwarded-Host"] = "spoofed.test",
          ["X-Forwarded-Port"] = "4443",
          ["X-Real-IP"] = "198.51.100.1",
        } }
        assert.equals("http", H.upstream_header(e, "x-forwarded-proto"))
        assert.equals("real.test", H.upstream_header(e, "x-forwarded-host"))
        assert.equals(tostring(gw.port), H.upstream_header(e, "x-forwarded-port"))
        assert.equals("127.0.0.1", H.upstream_header(e, "x-real-ip"))
      end
    end)

    it("sends Host = service host:port", function()
      for _ = 1, 2 do
        local _, e = echo_req { path = "/echo", host = "client.test" }
        assert.equals("127.0.0.1:" .. mock.ports[1], H.upstream_header(e, "host"))
      end
    end)

    it("removes hop-by-hop headers and keeps end-to-end ones", function()
      for _ = 1, 2 do
        local _, e = echo_req { path = "/echo", headers = {
          { "Connection", "keep-alive, X-Hop-Custom" },
          { "X-Hop-Custom", "dropped" },
          { "Keep-Alive", "timeout=5, max=100" },
          { "TE", "gzip" },
          { "X-Custom", "kept" },
          { "Accept", "text/plain" },
          { "X-Dup", "one" },
          { "X-Dup", "two" },
        } }
        assert.is_nil(H.upstream_header(e, "keep-alive"))
        assert.is_nil(H.upstream_header(e, "te"))
        -- Kong clears the headers the client's Connection names
        assert.is_nil(H.upstream_header(e, "x-hop-custom"))
        local conn = H.upstream_header(e, "connection")
        assert.is_true(conn == nil or conn:lower() == "keep-alive"
                       or conn:lower() == "close",
                       "upstream Connection: " .. tostring(conn))
        assert.equals("kept", H.upstream_header(e, "x-custom"))
        assert.equals("text/plain", H.upstream_header(e, "accept"))
        assert.equals("one, two", H.upstream_header(e, "x-dup"))
      end
    end)

    it("speaks HTTP/1.1 to the upstream and keeps the request line", function()
      for _ = 1, 2 do
        local _, e = echo_req { path = "/echo/a%20b?x=1&x=2" }
        assert.equals("1.1", tostring(e.http_version):match("1%.1"))
        assert.equals("/echo/a%20b?x=1&x=2", e.uri)
        assert.equals("x=1&x=2", e.query)
      end
    end)
  end)

  describe("methods", function()
    for _, m in ipairs { "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" } do
      it("forwards " .. m, function()
        for _ = 1, 2 do
          local body = (m ~= "GET" and m ~= "OPTIONS") and "payload" or nil
          local _, e = echo_req { method = m, path = "/echo", body = body }
          assert.equals(m, e.method)
          if body then
            assert.equals(body, e.body)
          end
        end
      end)
    end

    it("answers HEAD without a body and keeps the connection in sync", function()
      local c = assert(H.connect(gw.port))
      for _ = 1, 2 do
        local res = assert(c:request { method = "HEAD", path = "/bytes/1000" })
        assert.equals(200, res.status)
        assert.equals("1000", res.headers["content-length"])
        assert.equals("", res.body)
        res = assert(c:request { path = "/fast" })
        assert.equals(200, res.status)
        assert.equals("hello\n", res.body)
      end
      c:close()
    end)
  end)

  describe("request bodies", function()
    it("forwards a Content-Length body", function()
      local body = string.rep("0123456789abcdef", 4096) -- 64 KiB
      for _ = 1, 2 do
        local _, e = echo_req { method = "POST", path = "/echo", body = body }
        assert.equals(#body, e.body_len)
        assert.equals(body, e.body)
      end
    end)

    it("forwards a chunked body", function()
      for _ = 1, 2 do
        local _, e = echo_req { method = "POST", path = "/echo",
                                chunked = { "hello ", "chunked ", "world" } }
        assert.equals("hello chunked world", e.body)
        assert.equals(19, e.body_len)
      end
    end)

    it("forwards a chunked body with chunk extensions and trailers", function()
      local raw = "POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                  .. "Transfer-Encoding: chunked\r\n\r\n"
                  .. "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send(raw))
        local res = assert(c:read_response())
        assert.equals(200, res.status)
        assert.equals("hello world", res:json().body)
        c:close()
      end
    end)

    it("forwards an empty POST", function()
      for _ = 1, 2 do
        local _, e = echo_req { method = "POST", path = "/echo", body = "" }
        assert.equals(0, e.body_len)
      end
    end)

    it("answers Expect: 100-continue for a chunked body", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      .. "Transfer-Encoding: chunked\r\n"
                      .. "Expect: 100-continue\r\n\r\n"))
        assert.equals("HTTP/1.1 100 Continue", c:read_line(H.now() + 3))
        assert.equals("", c:read_line(H.now() + 3))
        assert(c:send("3\r\nabc\r\n0\r\n\r\n"))
        local res = assert(c:read_response())
        assert.equals(200, res.status)
        assert.equals("abc", res:json().body)
        c:close()
      end
    end)

    it("forwards a body split across many small writes", function()
      local body = string.rep("s", 3000)
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send_slowly(H.request_bytes { method = "PUT", path = "/echo",
                                               body = body }, 700, 0.02))
        local res = assert(c:read_response())
        assert.equals(200, res.status)
        assert.equals(body, res:json().body)
        c:close()
      end
    end)

    it("answers Expect: 100-continue before the body is sent", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      .. "Content-Length: 11\r\nExpect: 100-continue\r\n\r\n"))
        local line = c:read_line(H.now() + 3)
        assert.equals("HTTP/1.1 100 Continue", line)
        assert.equals("", c:read_line(H.now() + 3))
        assert(c:send("hello world"))
        local res = assert(c:read_response())
        assert.equals(200, res.status)
        assert.equals("hello world", res:json().body)
        c:close()
      end
    end)
  end)

  describe("client connections", function()
    it("keeps a connection alive across requests", function()
      local c = assert(H.connect(gw.port))
      for i = 1, 6 do
        local res = assert(c:request { path = "/echo?i=" .. i })
        assert.equals(200, res.status)
        assert.equals("i=" .. i, res:json().query)
        assert.is_not.equals("close", (res.headers["connection"] or ""):lower())
      end
      c:close()
    end)

    it("answers pipelined requests in order", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send(H.request_bytes { path = "/delay/300" }
                      .. H.request_bytes { path = "/fast" }
                      .. H.request_bytes { method = "POST", path = "/echo?n=3",
                                           body = "third" }
                      .. H.request_bytes { path = "/status/404" }))
        local r1 = assert(c:read_response())
        local r2 = assert(c:read_response())
        local r3 = assert(c:read_response())
        local r4 = assert(c:read_response())
        assert.equals(200, r1.status)
        assert.equals(200, r2.status)
        assert.equals("hello\n", r2.body)
        assert.equals(200, r3.status)
        assert.equals("n=3", r3:json().query)
        assert.equals("third", r3:json().body)
        assert.equals(404, r4.status)
        assert.equals(tostring(mock.ports[1]), r4.headers["x-upstream-port"])
        c:close()
      end
    end)

    it("closes after a response to Connection: close", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        local res = assert(c:request { path = "/fast",
                                       headers = { Connection = "close" } })
        assert.equals(200, res.status)
        assert.equals("close", (res.headers["connection"] or ""):lower())
        assert.is_true(c:wait_closed(3))
        c:close()
      end
    end)

    it("closes after an HTTP/1.0 response without keep-alive", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        local res = assert(c:request { path = "/fast", version = "1.0" })
        assert.equals(200, res.status)
        assert.equals("hello\n", res.body)
        assert.is_true(c:wait_closed(3))
        c:close()
      end
    end)

    it("serves an HTTP/1.0 request without Host", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("GET /fast HTTP/1.0\r\n\r\n"))
        local res = assert(c:read_response())
        assert.equals(200, res.status)
        assert.equals("hello\n", res.body)
        c:close()
      end
    end)

    it("routes an absolute-form request target", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("GET http://absolute.test/echo/abs?q=1 HTTP/1.1\r\n"
                      .. "Host: ignored.test\r\n\r\n"))
        local res = assert(c:read_response())
        assert.equals(200, res.status)
        local e = res:json()
        assert.equals("/echo/abs", e.path)
        assert.equals("q=1", e.query)
        assert.equals("absolute.test", H.upstream_header(e, "x-forwarded-host"))
        c:close()
      end
    end)

    it("answers 50 pipelined requests in one write, in order", function()
      local batch = {}
      for i = 1, 50 do
        batch[i] = H.request_bytes { method = (i % 3 == 0) and "POST" or "GET",
                                     path = "/echo?n=" .. i,
                                     body = (i % 3 == 0) and ("b" .. i) or nil }
      end
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send(table.concat(batch)))
        for i = 1, 50 do
          local res = assert(c:read_response())
          assert.equals(200, res.status)
          local e = res:json()
          assert.equals("n=" .. i, e.query)
          if i % 3 == 0 then
            assert.equals("b" .. i, e.body)
          end
        end
        c:close()
      end
    end)

    it("handles a request sent one byte at a time", function()
      local req = H.request_bytes { method = "POST", path = "/echo?slow=1",
                                    headers = { ["X-A"] = "1" },
                                    body = "0123456789" }
      local c = assert(H.connect(gw.port))
      assert(c:send_slowly(req, 1, 0.001))
      local res = assert(c:read_response())
      assert.equals(200, res.status)
      assert.equals("0123456789", res:json().body)
      c:close()
    end)

    it("treats a client's EOF while waiting as giving up (499, as nginx)", function()
      -- nginx (proxy_ignore_client_abort off) cannot tell a half-close
      -- from a close and finalizes with 499; so do we
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send(H.request_bytes { path = "/delay/300",
                                        headers = { Connection = "close" } }))
        c.sock:shutdown("send")
        local res, err = c:read_response()
        assert.is_nil(res)
        assert.is_truthy(err)
        c:close()
      end
      -- the access log is flushed once a second
      local found
      local deadline = H.now() + 3
      repeat
        H.sleep(0.2)
        local log = H.read_file(gw.prefix .. "/logs/access.log") or ""
        local _, n = log:gsub('"GET /delay/300 HTTP/1%.1" 499', "")
        found = n >= 2
      until found or H.now() > deadline
      assert.is_true(found, "two 499 lines in the access log")
    end)

    it("drops the upstream request when the client goes away", function()
      local conns = {}
      for i = 1, 10 do
        conns[i] = assert(H.connect(gw.port))
        assert(conns[i]:send(H.request_bytes { path = "/abort/delay/3000" }))
      end
      H.sleep(0.3)
      assert.is_true(mock_abort:stats(1).open >= 10)
      for _, c in ipairs(conns) do
        c:close()
      end
      -- nginx (proxy_ignore_client_abort off) closes the upstream
      -- connection when the client goes; the mock would answer after 3 s
      -- and a pooled connection would stay open, so count well before
      local open
      local deadline = H.now() + 1.5
      repeat
        H.sleep(0.1)
        open = mock_abort:stats(1).open  -- counts this /stats connection
      until open <= 1 or H.now() > deadline
      assert.is_true(open <= 1, "mock still has " .. (open - 1)
                     .. " connections from the gateway 1.5 s after the clients left")
      local res = assert(H.request(gw.port, { path = "/fast" }))
      assert.equals(200, res.status)
    end)

    it("keeps an HTTP/1.0 connection with Connection: keep-alive", function()
      local c = assert(H.connect(gw.port))
      for _ = 1, 2 do
        local res = assert(c:request { path = "/fast", version = "1.0",
                                       headers = { Connection = "keep-alive" } })
        assert.equals(200, res.status)
        assert.equals("hello\n", res.body)
      end
      c:close()
    end)
  end)

  describe("Upgrade", function()
    -- Kong proxies WebSocket-style upgrades: Upgrade/Connection pass
    -- through, the 101 comes back, then bytes flow both ways
    it("tunnels after 101 Switching Protocols", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        local res = assert(c:request { path = "/status/101", headers = {
          Connection = "Upgrade", Upgrade = "websocket" } })
        assert.equals(101, res.status)
        assert.equals("websocket", (res.headers["upgrade"] or ""):lower())
        assert(c:send("ping-through-tunnel"))
        assert.equals("ping-through-tunnel", c:read_bytes(19, H.now() + 3))
        assert(c:send("second"))
        assert.equals("second", c:read_bytes(6, H.now() + 3))
        c:close()
      end
    end)

    it("never puts an upgraded upstream connection back in the pool", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        local res = c:request({ path = "/nr/status/101", headers = {
          Connection = "Upgrade", Upgrade = "websocket" } }, { timeout = 2 })
        assert.equals(101, res and res.status)
        c:close()
        -- service retries = 0: a reused switched connection would be a 502
        for _ = 1, 3 do
          res = assert(H.request(gw.port, { path = "/nr/echo" }))
          assert.equals(200, res.status, tostring(res.body))
        end
      end
    end)
  end)

  describe("upstream keep-alive", function()
    it("reuses upstream connections", function()
      local before = mock:stats(2)
      local last
      for i = 1, 10 do
        local res = assert(H.request(gw.port, { path = "/pool/echo?i=" .. i }))
        assert.equals(200, res.status)
        assert.equals(tostring(mock.ports[2]), res.headers["x-upstream-port"])
        last = res:json()
      end
      assert.is_true(last.conn_requests > 1,
                     "conn_requests " .. tostring(last.conn_requests))
      local after = mock:stats(2)
      if before and after and before.connections and after.connections then
        -- the /stats requests themselves open 2 direct connections
        assert.is_true(after.connections - before.connections <= 4,
                       "upstream connections opened for 10 requests: "
                       .. (after.connections - before.connections))
      end
    end)
  end)

  describe("concurrency", function()
    it("serves 200 connections open at once", function()
      for _ = 1, 2 do
        local conns = {}
        for i = 1, 200 do
          conns[i] = assert(H.connect(gw.port))
        end
        for i, c in ipairs(conns) do
          assert(c:send(H.request_bytes { path = "/delay/100?c=" .. i }))
        end
        for i, c in ipairs(conns) do
          local res = assert(c:read_response())
          assert.equals(200, res.status)
          assert.equals("c=" .. i, res:json().query)
          c:close()
        end
      end
    end)
  end)

  describe("access log", function()
    it("writes one line per request with its status", function()
      local marker = "/echo/accesslog-" .. math.random(1e6, 9e6)
      for _ = 1, 2 do
        assert(H.request(gw.port, { path = marker }))
      end
      assert(H.request(gw.port, { path = "/status/503?" .. marker:sub(7) }))
      local deadline = H.now() + 3
      local lines
      repeat
        lines = {}
        for l in gw:access_log():gmatch("[^\n]+") do
          if l:find(marker:sub(7), 1, true) then
            lines[#lines + 1] = l
          end
        end
        if #lines >= 3 then break end
        H.sleep(0.05)
      until H.now() > deadline
      assert.equals(3, #lines, "access log lines:\n" .. table.concat(lines, "\n"))
      -- nginx "combined" then Kong's latencies (core/http/mg_http_log.c)
      local pat = marker:gsub("%-", "%%-")
      assert.matches('^127%.0%.0%.1 .*"GET ' .. pat .. ' HTTP/1%.1" 200 %d+', lines[1])
      assert.matches('"GET ' .. pat .. ' HTTP/1%.1" 200 ', lines[2])
      assert.matches('" 503 %d+', lines[3])
      for _, l in ipairs(lines) do
        assert.matches("upstream_latency=%d+", l)
        assert.matches("proxy_latency=%d+", l)
      end
    end)
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw)
  end)
end)

describe("e2e upstream keep-alive properties", function()
  local mock

  lazy_setup(function()
    mock = H.start_mockup(1)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function start(conf)
    return H.start_gateway { name = "upkeep", conf = conf,
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1),
        routes = { { paths = { "/" } } } } } } }
  end

  local function conn_requests(gw)
    local res = assert(H.request(gw.port, { path = "/echo" }))
    assert.equals(200, res.status)
    return res:json().conn_requests
  end

  it("upstream_keepalive_max_requests caps requests per connection", function()
    local gw = start { upstream_keepalive_max_requests = 3 }
    local seen = {}
    for i = 1, 9 do
      seen[i] = conn_requests(gw)
      assert.is_true(seen[i] <= 3, "request " .. i .. " was number "
                     .. seen[i] .. " on its upstream connection")
    end
    assert.equals(3, math.max(unpack(seen)))
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("upstream_keepalive_idle_timeout closes idle pooled connections", function()
    local gw = start { upstream_keepalive_idle_timeout = 1 }
    conn_requests(gw)
    assert.equals(2, conn_requests(gw))
    H.sleep(2)
    assert.equals(1, conn_requests(gw))
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("a reused connection's idle timer does not cut its next response short",
     function()
    -- the timer stays armed for the idle deadline when the connection is
    -- taken again; it must fire, see the read timeout, and wait on
    local gw = start { upstream_keepalive_idle_timeout = 1 }
    conn_requests(gw)
    H.sleep(0.5)
    local res = assert(H.request(gw.port, { path = "/delay/1500",
                                            timeout = 10 }))
    assert.equals(200, res.status)
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("upstream_keepalive_pool_size = 0 disables the pool", function()
    local gw = start { upstream_keepalive_pool_size = 0 }
    for _ = 1, 4 do
      assert.equals(1, conn_requests(gw))
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("proxy_access_log = off writes no access log", function()
    local gw = start { proxy_access_log = "off" }
    for _ = 1, 2 do
      conn_requests(gw)
    end
    gw:stop()
    assert.equals("", H.read_file(gw.prefix .. "/logs/access.log") or "")
    assert.is_nil(H.read_file(gw.prefix .. "/off"))
    assert.is_nil(H.read_file(H.root .. "/off"))
    H.assert_no_error_log(gw)
  end)
end)

describe("e2e proxy `headers` property", function()
  local mock

  lazy_setup(function()
    mock = H.start_mockup(1)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function start(headers)
    return H.start_gateway { name = "headers", conf = { headers = headers },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1),
        routes = { { paths = { "/" } } } } } } }
  end

  it("headers = off removes Via, Server and latency headers", function()
    local gw = start("off")
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/echo" }))
      assert.equals(200, res.status)
      assert.is_nil(res.headers["via"])
      assert.is_nil(res.headers["x-kong-upstream-latency"])
      assert.is_nil(res.headers["x-kong-proxy-latency"])
      res = assert(H.request(gw.port, { path = "/status/404" }))
      assert.equals(404, res.status)
      assert.is_nil(res.headers["via"])
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("headers = latency_tokens keeps latency headers only", function()
    local gw = start("latency_tokens")
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/echo" }))
      assert.is_nil(res.headers["via"])
      assert.matches("^%d+$", res.headers["x-kong-upstream-latency"] or "")
      assert.matches("^%d+$", res.headers["x-kong-proxy-latency"] or "")
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("headers = server_tokens keeps Via only", function()
    local gw = start("server_tokens")
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/echo" }))
      assert.matches("^1%.1 moongate/", res.headers["via"] or "")
      assert.is_nil(res.headers["x-kong-upstream-latency"])
      assert.is_nil(res.headers["x-kong-proxy-latency"])
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("headers = off drops Server and X-Kong-Response-Latency on 404", function()
    local gw = H.start_gateway { name = "headers404", conf = { headers = "off" },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1),
        routes = { { paths = { "/only" } } } } } } }
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/elsewhere" }))
      assert.equals(404, res.status)
      assert.is_nil(res.headers["x-kong-response-latency"])
      assert.is_falsy((res.headers["server"] or ""):find("moongate", 1, true))
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("trusted_ips lets a trusted client set X-Forwarded-*", function()
    local gw = H.start_gateway { name = "trusted",
      conf = { trusted_ips = "127.0.0.1/32" },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1),
        routes = { { paths = { "/" } } } } } } }
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/echo", headers = {
        ["X-Forwarded-Proto"] = "https",
        ["X-Forwarded-Host"] = "front.test",
        ["X-Forwarded-Port"] = "443",
        ["X-Forwarded-For"] = "203.0.113.7",
      } }))
      local e = res:json()
      assert.equals("https", H.upstream_header(e, "x-forwarded-proto"))
      assert.equals("front.test", H.upstream_header(e, "x-forwarded-host"))
      assert.equals("443", H.upstream_header(e, "x-forwarded-port"))
      assert.equals("203.0.113.7, 127.0.0.1",
                    H.upstream_header(e, "x-forwarded-for"))
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)
end)
