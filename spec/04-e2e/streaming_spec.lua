-- End-to-end: streaming.  Server-sent events pass event by event; a large
-- response to a slow client does not grow the worker (backpressure);
-- 204/304/HEAD/1xx framing.  Assertions compare times with each other
-- (causality), never against absolute speed.

local H = require "moongate"

local ASAN = (os.getenv("MOONGATE_BUILD") or ""):find("asan") ~= nil

describe("e2e streaming", function()
  local mock, gw, mock_abort

  lazy_setup(function()
    mock = H.start_mockup(1)
    mock_abort = H.start_mockup(1)   -- its connection count is ours alone
    -- client_max_body_size = 0: no limit (Kong's default is 10m since 3.7)
    gw = H.start_gateway { name = "streaming",
      conf = { client_max_body_size = 0 }, config = {
      _format_version = "3.0", services = {
        { name = "s", url = mock:url(1), read_timeout = 10000,
          routes = { { paths = { "/" } } } },
        { name = "abort", url = mock_abort:url(1), read_timeout = 10000,
          routes = { { paths = { "/abort" } } } } } } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  -- Read an SSE response; returns res and a list of {data=, t=} per event
  -- (t = arrival of the event's terminating blank line).
  local function read_sse(path)
    local events, pending = {}, ""
    local c = assert(H.connect(gw.port, { timeout = 10 }))
    assert(c:send(H.request_bytes { path = path,
                                    headers = { Accept = "text/event-stream" } }))
    local t0 = H.now()
    local res, err = c:read_response { on_data = function(data, t)
      pending = pending .. data
      while true do
        local i, j = pending:find("\n\n", 1, true)
        if not i then break end
        events[#events + 1] = { data = pending:sub(1, i - 1), t = t - t0 }
        pending = pending:sub(j + 1)
      end
    end }
    c:close()
    assert(res, err)
    return res, events
  end

  describe("server-sent events", function()
    it("delivers the first event while the upstream is still sending", function()
      for _ = 1, 2 do
        -- 5 events 300 ms apart: the last leaves the mock >= 1.2 s after
        -- the first
        local res, events = read_sse("/sse?n=5&interval_ms=300")
        assert.equals(200, res.status)
        assert.matches("^text/event%-stream", res.headers["content-type"] or "")
        assert.equals(6, #events)               -- 5 + [DONE]
        for i = 1, 5 do
          assert.matches('^data: {"i":' .. (i - 1) .. ',', events[i].data)
        end
        assert.equals("data: [DONE]", events[6].data)
        local first, last = events[1].t, events[5].t
        -- the mock stamps each event with ms since its stream began: the
        -- last left it >= 1.2 s after the first
        local sent_gap = tonumber(events[5].data:match('"t":(%d+)')) / 1000
        assert.is_true(sent_gap >= 1.0, "mock paced " .. sent_gap)
        -- had the gateway held the events back and sent them together,
        -- they would arrive together; the first must arrive well before
        -- the last (the arrival gap can only be that large if the first
        -- event was delivered while the mock had not sent the last yet)
        assert.is_true(last - first > sent_gap - 0.5, string.format(
          "first event at %.3fs, last at %.3fs (sent %.3fs apart): "
          .. "events were buffered", first, last, sent_gap))
      end
    end)

    it("stops the upstream stream when the client goes away", function()
      local c = assert(H.connect(gw.port))
      assert(c:send(H.request_bytes { path = "/abort/sse?n=100&interval_ms=50" }))
      local got = 0
      local ok = pcall(c.read_response, c, { on_data = function(d)
        got = got + #d
        if got > 50 then error("enough") end
      end })
      assert.is_false(ok)       -- stopped reading after the first events
      assert.is_true(got > 50)
      c:close()
      -- the gateway notices on its next write and closes the upstream
      -- connection long before the 5 s stream would end
      local open
      local deadline = H.now() + 1.5
      repeat
        H.sleep(0.1)
        open = mock_abort:stats(1).open   -- counts this /stats connection
      until open <= 1 or H.now() > deadline
      assert.is_true(open <= 1, "the upstream stream is still open "
                     .. "1.5 s after the client left")
      local r2 = assert(H.request(gw.port, { path = "/fast" }))
      assert.equals(200, r2.status)
    end)

    it("passes an unpaced 21-event stream intact", function()
      for _ = 1, 2 do
        local res, events = read_sse("/sse?n=21&interval_ms=0")
        assert.equals(200, res.status)
        assert.equals(22, #events)
        for i = 1, 21 do
          assert.matches('^data: {"i":' .. (i - 1) .. ',', events[i].data)
        end
      end
    end)
  end)

  describe("large responses", function()
    local function worker_rss()
      local w = gw:worker_pids()
      assert.equals(1, #w)
      return H.proc_mem(w[1])
    end

    it("streams 50 MB to a slow reader without buffering it", function()
      local N = 50000000
      local base = worker_rss()
      local peak = base.rss
      local function sample()
        local m = worker_rss()
        if m and m.rss > peak then peak = m.rss end
      end
      local c = assert(H.connect(gw.port, { timeout = 20 }))
      assert(c:send(H.request_bytes { path = "/bytes/" .. N }))
      local got, since = 0, 0
      local res, err = c:read_response {
        discard = true,
        read_size = 1048576,
        -- do not read for a while: the upstream is ready to send it all
        pause = function()
          for _ = 1, 15 do
            H.sleep(0.1)
            sample()
          end
        end,
        on_data = function(data)
          got = got + #data
          since = since + #data
          if since >= 4 * 1048576 then
            since = 0
            sample()
          end
        end,
      }
      c:close()
      assert(res, err)
      assert.equals(200, res.status)
      assert.equals(N, res.body_len)
      assert.equals(N, got)
      sample()
      local grew = (peak - base.rss) / 1024
      if not ASAN then
        assert.is_true(grew < 24, string.format(
          "worker RSS grew by %.1f MiB while streaming 50 MB (base %.1f MiB)",
          grew, base.rss / 1024))
      end
    end)

    it("streams a chunked 2 MB response intact", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/bytes/2000000?chunked=1" },
                                     { timeout = 10 }))
        assert.equals(200, res.status)
        assert.equals(2000000, res.body_len)
        assert.equals("abcdefghij", res.body:sub(1, 10))
      end
    end)

    it("streams a 32 MB request body to a slow upstream without buffering it", function()
      local N = 32 * 1048576
      local base = worker_rss()
      local peak = base.rss
      local c = assert(H.connect(gw.port, { timeout = 30 }))
      assert(c:send("POST /slow-read?bytes=262144&interval_ms=2 HTTP/1.1\r\n"
                    .. "Host: localhost\r\nContent-Length: " .. N .. "\r\n\r\n"))
      local piece = string.rep("q", 1048576)
      for _ = 1, N / 1048576 do
        assert(c:send(piece))
        local m = worker_rss()
        if m.rss > peak then peak = m.rss end
      end
      local res = assert(c:read_response())
      c:close()
      assert.equals(200, res.status)
      assert.equals(N, res:json().body_len)
      local grew = (peak - base.rss) / 1024
      if not ASAN then
        assert.is_true(grew < 24, string.format(
          "worker RSS grew by %.1f MiB while forwarding a 32 MB body", grew))
      end
    end)

    it("streams a request body to a slow-reading upstream", function()
      local body = string.rep("z", 2000000)
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { method = "POST",
          path = "/slow-read?bytes=65536&interval_ms=5", body = body },
          { timeout = 20 }))
        assert.equals(200, res.status)
        assert.equals(#body, res:json().body_len)
      end
    end)
  end)

  describe("framing", function()
    it("204 and 304 carry no body and keep the connection in sync", function()
      local c = assert(H.connect(gw.port))
      for _ = 1, 2 do
        for _, st in ipairs { 204, 304 } do
          local res = assert(c:request { path = "/status/" .. st })
          assert.equals(st, res.status)
          assert.equals("", res.body)
          assert.is_nil(res.headers["transfer-encoding"])
          res = assert(c:request { path = "/fast" })
          assert.equals("hello\n", res.body)
        end
      end
      c:close()
    end)

    it("HEAD gets headers only, for length and chunked responses", function()
      local c = assert(H.connect(gw.port))
      for _ = 1, 2 do
        local res = assert(c:request { method = "HEAD", path = "/bytes/12345" })
        assert.equals(200, res.status)
        assert.equals("12345", res.headers["content-length"])
        res = assert(c:request { method = "HEAD", path = "/bytes/12345?chunked=1" })
        assert.equals(200, res.status)
        res = assert(c:request { path = "/fast" })
        assert.equals("hello\n", res.body)
      end
      c:close()
    end)

    -- RFC 9110 15.2: a proxy MUST forward 1xx responses
    it("forwards 103 Early Hints before the final response", function()
      local c = assert(H.connect(gw.port))
      for _ = 1, 2 do
        local res = assert(c:request { path = "/early-hints" })
        assert.equals(200, res.status)
        assert.equals(1, #res.informational)
        assert.equals(103, res.informational[1].status)
        assert.is_string(res.informational[1].headers["link"])
        assert.equals("GET", res:json().method)
      end
      c:close()
    end)

    it("reads an upstream response framed by connection close", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/close" }))
        assert.equals(200, res.status)
        assert.equals("GET", res:json().method)
      end
    end)
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw)
  end)
end)
