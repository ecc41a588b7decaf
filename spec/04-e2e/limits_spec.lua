-- End-to-end: client-side limits and timeouts.  Bad input gets Kong's
-- status and JSON message, and the worker goes on serving.
--
-- Properties under test (small values so the suite stays fast):
--   client_max_body_size = 10k                        -> 413
--   nginx_http_large_client_header_buffers = 4 8k     -> 414 (line > 8k),
--                                                        431 (headers > 32k)
--   lua_max_req_headers = 20                          -> 431
--   nginx_http_client_header_timeout = 1s             -> 408 or close
--   nginx_http_client_body_timeout = 1s               -> 408 or close
--   nginx_http_keepalive_timeout = 1s                 -> idle close

local H = require "moongate"

describe("e2e limits", function()
  local mock, gw, workers

  lazy_setup(function()
    mock = H.start_mockup(1)
    gw = H.start_gateway { name = "limits",
      conf = {
        client_max_body_size = "10k",
        client_body_buffer_size = "4k",
        nginx_http_large_client_header_buffers = "4 8k",
        lua_max_req_headers = 20,
        nginx_http_client_header_timeout = "1s",
        nginx_http_client_body_timeout = "1s",
        nginx_http_keepalive_timeout = "1s",
        nginx_http_send_timeout = "1s",
      },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1), routes = { { paths = { "/" } } } } } } }
    workers = gw:worker_pids()
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  -- The gateway still answers a normal request.
  local function still_serving()
    local res, err = H.request(gw.port, { path = "/fast" })
    assert(res, err)
    assert.equals(200, res.status)
    assert.equals("hello\n", res.body)
  end

  local function assert_error(res, status, message)
    assert.equals(status, res.status, tostring(res.body))
    assert.matches("^application/json", res.headers["content-type"] or "")
    local body = res:json()
    if type(message) == "table" then
      local ok = false
      for _, m in ipairs(message) do
        ok = ok or body.message == m
      end
      assert.is_true(ok, "message: " .. tostring(body.message))
    else
      assert.equals(message, body.message)
    end
  end

  describe("client_max_body_size", function()
    it("accepts a body at the limit", function()
      for _ = 1, 2 do
        local body = string.rep("x", 10240)
        local res = assert(H.request(gw.port, { method = "POST",
                                                path = "/echo", body = body }))
        assert.equals(200, res.status)
        assert.equals(10240, res:json().body_len)
      end
    end)

    it("answers 413 on Content-Length over the limit before the body", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        -- headers only: the answer must come without any body byte sent
        assert(c:send("POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      .. "Content-Length: 10241\r\n\r\n"))
        local res = assert(c:read_response { timeout = 3 })
        assert_error(res, 413, "Payload too large")
        c:close()
      end
      still_serving()
    end)

    it("answers 413 on Content-Length over the limit with Expect", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      .. "Content-Length: 1048576\r\n"
                      .. "Expect: 100-continue\r\n\r\n"))
        local res = assert(c:read_response { timeout = 3 })
        assert.equals(0, #res.informational, "sent 100 Continue anyway")
        assert_error(res, 413, "Payload too large")
        c:close()
      end
    end)

    it("answers 413 on a chunked body over the limit", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      .. "Transfer-Encoding: chunked\r\n\r\n"))
        local piece = string.format("%x\r\n%s\r\n", 4096, string.rep("y", 4096))
        -- 4 x 4k = 16k > 10k; the gateway may answer and close early
        for _ = 1, 4 do
          if not c:send(piece) then break end
          H.sleep(0.01)
        end
        c:send("0\r\n\r\n")
        local res, err = c:read_response { timeout = 3 }
        assert(res, err)
        assert_error(res, 413, "Payload too large")
        c:close()
      end
      still_serving()
    end)

    it("accepts a chunked body under the limit", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { method = "POST", path = "/echo",
          chunked = { string.rep("a", 4000), string.rep("b", 4000) } }))
        assert.equals(200, res.status)
        assert.equals(8000, res:json().body_len)
      end
    end)
  end)

  describe("request line and headers", function()
    it("answers 414 to a request line over 8k", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port,
                                     { path = "/" .. string.rep("a", 9000) }))
        assert_error(res, 414, "URI too long")
      end
      still_serving()
    end)

    it("accepts a request line just under 8k", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port,
                                     { path = "/echo/" .. string.rep("a", 7000) }))
        assert.equals(200, res.status)
      end
    end)

    it("answers 431 to a header block over 4 x 8k", function()
      local headers = {}
      for i = 1, 6 do
        headers[#headers + 1] = { "X-Big-" .. i, string.rep("h", 6000) }
      end
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/echo",
                                                headers = headers }))
        assert_error(res, 431, { "Request header fields too large",
                                 "Request header or cookie too large" })
      end
      still_serving()
    end)

    it("accepts big headers that fit", function()
      local headers = {}
      for i = 1, 3 do
        headers[#headers + 1] = { "X-Big-" .. i, string.rep("h", 6000) }
      end
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/echo",
                                                headers = headers }))
        assert.equals(200, res.status)
        assert.equals(string.rep("h", 6000),
                      H.upstream_header(res:json(), "x-big-3"))
      end
    end)

    it("answers 431 to more headers than lua_max_req_headers", function()
      local headers = {}
      for i = 1, 30 do
        headers[#headers + 1] = { "X-H" .. i, "v" }
      end
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/echo",
                                                headers = headers }))
        assert_error(res, 431, { "Request header fields too large",
                                 "Request header or cookie too large" })
      end
      still_serving()
    end)
  end)

  describe("malformed requests", function()
    local garbage = {
      ["a garbage request line"] = "GARBAGE\r\n\r\n",
      ["a bad version"] = "GET / HTTP/9.Z\r\nHost: x\r\n\r\n",
      ["a header line without colon"] =
        "GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
      ["a bad Content-Length"] =
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
      ["a bad chunk size"] =
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "zz\r\nhello\r\n0\r\n\r\n",
      ["two different Content-Lengths"] =
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        .. "Content-Length: 6\r\n\r\nhello!",
      ["two Host headers"] =
        "GET /echo HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
      ["a NUL in the request line"] = "GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n",
      ["Content-Length with Transfer-Encoding"] =
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    }
    local names = {}
    for k in pairs(garbage) do names[#names + 1] = k end
    table.sort(names)

    for _, name in ipairs(names) do
      it("answers 400 to " .. name .. " and closes", function()
        for _ = 1, 2 do
          local c = assert(H.connect(gw.port))
          assert(c:send(garbage[name]))
          local res, err = c:read_response { timeout = 3 }
          assert(res, err)
          assert_error(res, 400, "Bad request")
          assert.is_true(c:wait_closed(3), "connection left open")
          c:close()
        end
        still_serving()
      end)
    end

    -- RFC 9112 6.1: unknown transfer coding -> 501 (nginx does the same)
    it("answers 501 to an unknown Transfer-Encoding and closes", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("POST /echo HTTP/1.1\r\nHost: x\r\n"
                      .. "Transfer-Encoding: gzip\r\n\r\nxxxx"))
        local res = assert(c:read_response { timeout = 3 })
        assert.equals(501, res.status)
        assert.is_string(res:json().message)
        assert.is_true(c:wait_closed(3), "connection left open")
        c:close()
      end
      still_serving()
    end)

    it("answers 400 to a request without Host in HTTP/1.1", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("GET /echo HTTP/1.1\r\n\r\n"))
        local res = assert(c:read_response { timeout = 3 })
        assert_error(res, 400, "Bad request")
        c:close()
      end
    end)

    it("does not answer a request pipelined after a malformed one", function()
      local c = assert(H.connect(gw.port))
      assert(c:send("GARBAGE\r\n\r\n" .. H.request_bytes { path = "/fast" }))
      local res = assert(c:read_response { timeout = 3 })
      assert.equals(400, res.status)
      local closed, rest = c:wait_closed(3)
      assert.is_true(closed)
      assert.equals("", rest)
      c:close()
    end)
  end)

  describe("timeouts", function()
    -- nginx closes silently on a header timeout; a 408 is fine too
    local function assert_408_or_close(c)
      local closed, data = c:wait_closed(5)
      assert.is_true(closed, "connection still open after the timeout")
      if data ~= "" then
        assert.matches("^HTTP/1%.1 408", data)
        assert.matches('"message":%s*"Request timeout"', data)
      end
    end

    it("closes on client header timeout", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("GET /echo HTTP/1.1\r\nHost: localhost\r\n"))
        assert_408_or_close(c)
        c:close()
      end
      still_serving()
    end)

    it("closes an idle new connection after the header timeout", function()
      local c = assert(H.connect(gw.port))
      assert_408_or_close(c)
      c:close()
    end)

    it("closes on client body timeout", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send("POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                      .. "Content-Length: 100\r\n\r\n0123456789"))
        assert_408_or_close(c)
        c:close()
      end
      still_serving()
    end)

    it("closes an idle keep-alive connection", function()
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        local res = assert(c:request { path = "/fast" })
        assert.equals(200, res.status)
        local closed, data = c:wait_closed(5)
        assert.is_true(closed, "keep-alive connection never closed")
        assert.equals("", data)
        c:close()
      end
    end)

    it("gives up on a client that stops reading (send timeout)", function()
      local N = 50000000
      local c = assert(H.connect(gw.port, { timeout = 5 }))
      assert(c:send(H.request_bytes { path = "/bytes/" .. N }))
      -- read nothing: socket buffers fill, the gateway's writes stall
      H.sleep(3)
      local data, err = c:read_all(10)
      c:close()
      assert.equals("closed", err)
      assert.matches("^HTTP/1%.1 200", data)
      assert.is_true(#data < N, "got the whole body: no send timeout")
      still_serving()
    end)

    it("does not time out a client that keeps sending", function()
      -- a header sent slowly but steadily within the timeout per read is
      -- still subject to the whole-header timeout in nginx; here the whole
      -- request takes well under 1s
      for _ = 1, 2 do
        local c = assert(H.connect(gw.port))
        assert(c:send_slowly(H.request_bytes { path = "/fast" }, 8, 0.01))
        local res = assert(c:read_response())
        assert.equals(200, res.status)
        c:close()
      end
    end)
  end)

  it("kept the same worker through all of it", function()
    assert.same(workers, gw:worker_pids())
    still_serving()
  end)

  it("leaves no unexpected error log lines", function()
    -- client errors are logged at info level in nginx; anything at
    -- [error] or above is a gateway problem
    H.assert_no_error_log(gw)
  end)
end)

-- The connection's timer is moved only when a timeout comes earlier than
-- the one it is set for (mg_conn_timer_set): with a header timeout of 1 s
-- and a keep-alive timeout of 2 s, the timer armed for the header fires
-- first and must set itself again for the keep-alive's deadline, not close.
describe("e2e limits, a later timeout replacing an earlier one", function()
  local mock, gw

  lazy_setup(function()
    mock = H.start_mockup(1)
    gw = H.start_gateway { name = "limits-timers",
      conf = {
        nginx_http_client_header_timeout = "1s",
        nginx_http_keepalive_timeout = "2s",
      },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1), routes = { { paths = { "/" } } } } } } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("keeps an idle keep-alive connection past the header timeout", function()
    local c = assert(H.connect(gw.port))
    local res = assert(c:request { path = "/fast" })
    assert.equals(200, res.status)
    H.sleep(1.4)            -- past the header timer, before the keep-alive's
    res = assert(c:request { path = "/fast" })
    assert.equals(200, res.status)
    local closed, data = c:wait_closed(5)
    assert.is_true(closed, "keep-alive connection never closed")
    assert.equals("", data)
    c:close()
  end)
end)
