-- End-to-end: upstream failures (502/503/504 with Kong's messages),
-- retries, upstream entities with weighted targets (smooth weighted
-- round-robin), Host sent for an upstream entity.

local H = require "moongate"

local MSG_502 = "An invalid response was received from the upstream server"
local MSG_503_PEER = "failure to get a peer from the ring-balancer"
local MSG_504 = "The upstream server is timing out"

describe("e2e upstream", function()
  local mock, gw, dead_port

  lazy_setup(function()
    mock = H.start_mockup(4)
    dead_port = H.free_port()      -- nothing listens there
    local m = function(i) return "127.0.0.1:" .. mock.ports[i] end
    gw = H.start_gateway { name = "upstream", config = {
      _format_version = "3.0",
      upstreams = {
        { name = "weighted", targets = {
          { target = m(2), weight = 5 },
          { target = m(3), weight = 1 },
          { target = m(4), weight = 1 } } },
        { name = "allzero", targets = {
          { target = m(1), weight = 0 } } },
        { name = "notargets" },
        { name = "halfdead", targets = {
          { target = "127.0.0.1:" .. dead_port, weight = 100 },
          { target = m(1), weight = 100 } } },
        { name = "alldead", targets = {
          { target = "127.0.0.1:" .. dead_port, weight = 100 } } },
        { name = "withhost", host_header = "custom.host.test", targets = {
          { target = m(1) } } },
      },
      services = {
        { name = "plain", url = mock:url(1), retries = 0,
          routes = { { paths = { "/plain" } } } },
        { name = "refused", url = "http://127.0.0.1:" .. dead_port,
          retries = 0, routes = { { paths = { "/refused" } } } },
        { name = "slow", url = mock:url(1), retries = 0, read_timeout = 300,
          routes = { { paths = { "/slow" } } } },
        { name = "weighted", host = "weighted", port = 80,
          routes = { { paths = { "/weighted" } } } },
        { name = "allzero", host = "allzero",
          routes = { { paths = { "/allzero" } } } },
        { name = "notargets", host = "notargets",
          routes = { { paths = { "/notargets" } } } },
        { name = "halfdead", host = "halfdead", retries = 5,
          routes = { { paths = { "/halfdead" } } } },
        { name = "alldead", host = "alldead", retries = 2,
          routes = { { paths = { "/alldead" } } } },
        { name = "withhost", host = "withhost",
          routes = { { paths = { "/withhost" } } } },
        { name = "upname", url = "http://weighted:8080",
          routes = { { paths = { "/upname" } } } },
      },
    } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function get(path)
    local res, err = H.request(gw.port, { path = path }, { timeout = 10 })
    assert(res, err)
    return res
  end

  local function assert_error(res, status, message)
    assert.equals(status, res.status, tostring(res.body))
    assert.same({ message = message }, res:json())
    assert.matches("^moongate/", res.headers["server"] or "")
    assert.is_nil(res.headers["via"])
  end

  describe("errors", function()
    it("answers 502 when the upstream closes without answering", function()
      for _ = 1, 2 do
        assert_error(get("/plain/drop"), 502, MSG_502)
      end
    end)

    it("answers 502 when the connection is refused", function()
      for _ = 1, 2 do
        assert_error(get("/refused/echo"), 502, MSG_502)
      end
    end)

    it("answers 504 when the upstream does not answer in read_timeout", function()
      for _ = 1, 2 do
        local res = get("/slow/hang")
        assert_error(res, 504, MSG_504)
      end
    end)

    it("proxies an answer that comes within read_timeout", function()
      for _ = 1, 2 do
        local res = get("/slow/delay/50")
        assert.equals(200, res.status)
      end
    end)

    it("answers 503 for an upstream whose targets all have weight 0", function()
      for _ = 1, 2 do
        assert_error(get("/allzero/echo"), 503, MSG_503_PEER)
      end
    end)

    it("answers 503 for an upstream without targets", function()
      for _ = 1, 2 do
        assert_error(get("/notargets/echo"), 503, MSG_503_PEER)
      end
    end)

    it("answers 502 when every retry is refused", function()
      for _ = 1, 2 do
        assert_error(get("/alldead/echo"), 502, MSG_502)
      end
    end)

    it("passes upstream 5xx answers through unchanged", function()
      for _ = 1, 2 do
        local res = get("/plain/status/503")
        assert.equals(503, res.status)
        assert.same({ status = 503 }, res:json())
        assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
      end
    end)

    it("keeps serving after upstream errors", function()
      local c = assert(H.connect(gw.port))
      for _ = 1, 2 do
        local res = assert(c:request { path = "/plain/drop" })
        assert.equals(502, res.status)
        res = assert(c:request { path = "/plain/fast" })
        assert.equals(200, res.status)
        assert.equals("hello\n", res.body)
      end
      c:close()
    end)
  end)

  describe("retries", function()
    it("retries a refused target on another target", function()
      for _ = 1, 20 do
        local res = get("/halfdead/echo")
        assert.equals(200, res.status, tostring(res.body))
        assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
      end
    end)
  end)

  describe("weighted round-robin", function()
    it("spreads 70 requests 50/10/10 over weights 5/1/1", function()
      local seq, count = {}, {}
      for i = 1, 70 do
        local res = get("/weighted/echo")
        assert.equals(200, res.status)
        local p = res.headers["x-upstream-port"]
        seq[i] = p
        count[p] = (count[p] or 0) + 1
      end
      assert.equals(50, count[tostring(mock.ports[2])])
      assert.equals(10, count[tostring(mock.ports[3])])
      assert.equals(10, count[tostring(mock.ports[4])])
      -- smooth: every window of 7 consecutive picks holds each light
      -- target exactly once (the schedule repeats every 7)
      for i = 1, 64 do
        local n3, n4 = 0, 0
        for j = i, i + 6 do
          if seq[j] == tostring(mock.ports[3]) then n3 = n3 + 1 end
          if seq[j] == tostring(mock.ports[4]) then n4 = n4 + 1 end
        end
        assert.equals(1, n3, "window at " .. i .. ": " .. table.concat(seq, " ", i, i + 6))
        assert.equals(1, n4, "window at " .. i .. ": " .. table.concat(seq, " ", i, i + 6))
      end
    end)

    -- Kong sets Host from the balancer's pick (target host:port), see
    -- set_host_header() in kong/runloop/balancer
    it("sends the chosen target's host:port as Host", function()
      for _ = 1, 2 do
        for _, path in ipairs { "/weighted/echo", "/upname/echo" } do
          local res = get(path)
          assert.equals(200, res.status)
          assert.equals("127.0.0.1:" .. res.headers["x-upstream-port"],
                        H.upstream_header(res:json(), "host"))
        end
      end
    end)

    it("sends the upstream's host_header as Host", function()
      for _ = 1, 2 do
        local res = get("/withhost/echo")
        assert.equals(200, res.status)
        assert.equals("custom.host.test", H.upstream_header(res:json(), "host"))
      end
    end)
  end)

  it("leaves no unexpected error log lines", function()
    -- upstream failures are logged at [error], as nginx does
    H.assert_no_error_log(gw, {
      "no peer available", "connection refused",
      "closed while reading the response head",
      "timeout while reading the response head",
    })
  end)
end)

describe("e2e new upstream connections", function()
  local mock, gw

  lazy_setup(function()
    mock = H.start_mockup(1)
    -- no pool: every request opens a new upstream connection
    gw = H.start_gateway { name = "newconn",
      conf = { upstream_keepalive_pool_size = 0 },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1), routes = { { paths = { "/" } } } } } } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  -- Ordering, not speed: a /fast through the gateway (connect + request)
  -- must be answered before a /delay/500 sent to the mock directly at the
  -- same moment.
  it("answers over a new upstream connection without stalling", function()
    for i = 1, 3 do
      local direct = assert(H.connect(mock.port))
      local via = assert(H.connect(gw.port))
      assert(direct:send(H.request_bytes { path = "/delay/500" }))
      assert(via:send(H.request_bytes { path = "/fast?i=" .. i }))
      local first = H.first_readable({ via, direct }, 5)
      assert.equals(1, first, "round " .. i .. ": the gateway's answer came "
                    .. "after a 500 ms delay sent at the same time")
      local res = assert(via:read_response())
      assert.equals(200, res.status)
      assert(direct:read_response())
      via:close()
      direct:close()
    end
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw)
  end)
end)

describe("e2e retries on timeout", function()
  local mock, gw, silent

  lazy_setup(function()
    mock = H.start_mockup(1)
    -- a listener that never accepts: connects complete (backlog), the
    -- request is never answered -> read timeout
    silent = assert(require("socket").tcp())
    assert(silent:bind("127.0.0.1", 0))
    assert(silent:listen(64))
    local _, sport = silent:getsockname()
    gw = H.start_gateway { name = "tretry", config = {
      _format_version = "3.0",
      upstreams = { { name = "half-silent", targets = {
        { target = "127.0.0.1:" .. sport, weight = 100 },
        { target = "127.0.0.1:" .. mock.port, weight = 100 } } } },
      services = { { name = "t", host = "half-silent", retries = 2,
                     read_timeout = 300,
                     routes = { { paths = { "/t" } } } } } } }
  end)

  lazy_teardown(function()
    if silent then silent:close() end
    H.cleanup()
  end)

  it("retries an idempotent request that timed out on another target", function()
    for _ = 1, 6 do
      local res = assert(H.request(gw.port, { path = "/t/echo" }))
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.port), res.headers["x-upstream-port"])
    end
  end)

  -- nginx (proxy_next_upstream without non_idempotent) does not resend a
  -- POST that reached an upstream; with the two targets taking turns, one
  -- of two POSTs lands on the silent one and times out
  it("does not resend a POST that timed out", function()
    local statuses = {}
    for i = 1, 4 do
      local res = assert(H.request(gw.port, { method = "POST",
                                              path = "/t/echo", body = "x" }))
      statuses[i] = res.status
      assert.is_true(res.status == 200 or res.status == 504,
                     "status " .. res.status)
    end
    local n504 = 0
    for _, st in ipairs(statuses) do
      if st == 504 then n504 = n504 + 1 end
    end
    assert.is_true(n504 >= 1, "POSTs were resent: " .. table.concat(statuses, ","))
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, { "timeout while reading the response head",
                                "timed out" })
  end)
end)

describe("e2e misbehaving upstreams", function()
  local gw, raws = nil, {}

  lazy_setup(function()
    local replies = {
      garbage = "garbage\r\n\r\n",
      badstatus = "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
      hugehead = "HTTP/1.1 200 OK\r\nX-Huge: " .. string.rep("h", 200000)
                 .. "\r\nContent-Length: 2\r\n\r\nok",
      shortlen = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten!!",
      shortchunk = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   .. "5\r\nhello\r\n",
      closeframed = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                    .. "framed by close",
    }
    local services = {}
    for name, reply in pairs(replies) do
      raws[name] = H.start_raw_upstream(reply)
      services[#services + 1] = { name = name, retries = 0,
        url = "http://127.0.0.1:" .. raws[name].port,
        routes = { { paths = { "/" .. name } } } }
    end
    table.sort(services, function(a, b) return a.name < b.name end)
    gw = H.start_gateway { name = "rogue", config = {
      _format_version = "3.0", services = services } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  for _, name in ipairs { "garbage", "badstatus", "hugehead" } do
    it("answers 502 to an invalid response head (" .. name .. ")", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/" .. name }))
        assert.equals(502, res.status)
        assert.same({ message = MSG_502 }, res:json())
      end
    end)
  end

  it("does not complete a response whose body is cut short", function()
    for _, name in ipairs { "shortlen", "shortchunk" } do
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        local res, err, partial = c:request { path = "/" .. name }
        -- the status line may be a 200 already sent; what matters is
        -- that the client sees the cut (the gateway closes) instead of a
        -- well-framed, complete response
        assert.is_nil(res, name .. ": got a complete response")
        if partial and partial.status then
          assert.equals(200, partial.status)
        end
        assert.matches("closed", err)
        c:close()
      end
    end
  end)

  it("forwards a response framed by the upstream closing", function()
    for _ = 1, 2 do
      local c = assert(H.connect(gw.port))
      local res = assert(c:request { path = "/closeframed" })
      assert.equals(200, res.status)
      assert.equals("framed by close", res.body)
      c:close()
    end
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, { "prematurely closed", "invalid header",
                                "too big" })
  end)
end)
