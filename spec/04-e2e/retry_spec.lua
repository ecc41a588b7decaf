-- End-to-end: `retries` on services.  A retry goes to a target not tried
-- yet (two refusing targets and one good one: every request succeeds with
-- retries = 2); retries = 0 answers 502 at the first failure; a service's
-- retries bound the tries to a lone dead target (backoff between them,
-- the request still ends); a POST that reached an upstream is never sent
-- again, nor is a body that was streamed and cannot be replayed, while
-- a GET or a small buffered PUT is.

local H = require "moongate"

local MSG_502 = "An invalid response was received from the upstream server"

local function fmt(counts)
  local t = {}
  for k, v in pairs(counts) do t[#t + 1] = tostring(k) .. "=" .. v end
  table.sort(t)
  return table.concat(t, " ")
end

describe("e2e retries", function()
  local mock, closer, gw, dead1, dead2

  lazy_setup(function()
    mock = H.start_mockup(1)
    -- reads the request head, then closes without a word
    closer = H.start_raw_upstream("")
    dead1, dead2 = H.free_port(), H.free_port()
    local M = "127.0.0.1:" .. mock.port
    local C = "127.0.0.1:" .. closer.port
    local function up(name, targets)
      local t = {}
      for i, target in ipairs(targets) do t[i] = { target = target } end
      return { name = name, targets = t }
    end
    local function svc(name, retries, extra)
      local s = { name = name, host = name, retries = retries,
                  routes = { { name = name, paths = { "/" .. name } } } }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end
    gw = H.start_gateway { name = "retry", config = {
      _format_version = "3.0",
      upstreams = {
        up("two-dead", { "127.0.0.1:" .. dead1, "127.0.0.1:" .. dead2, M }),
        up("half-dead", { "127.0.0.1:" .. dead1, M }),
        up("lone-dead", { "127.0.0.1:" .. dead1 }),
        up("closer", { C, M }),
      },
      services = {
        svc("two-dead", 2),
        svc("half-dead-0", 0, { host = "half-dead" }),
        svc("half-dead-1", 1, { host = "half-dead" }),
        svc("lone-dead", 3, { host = "lone-dead" }),
        svc("closer", 5),
        svc("closer-0", 0, { host = "closer" }),
      },
    } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function assert_502(res)
    assert.equals(502, res.status, tostring(res.body))
    assert.same({ message = MSG_502 }, res:json())
  end

  it("retries on targets not tried yet", function()
    for _ = 1, 2 do
      -- each request starts at the next target of the wheel: every start
      -- needs at most 2 retries to reach the good one
      local counts, statuses = H.spread(gw.port, 9, { path = "/two-dead/echo" })
      assert.same({ [200] = 9 }, statuses, fmt(statuses))
      assert.same({ [tostring(mock.port)] = 9 }, counts)
    end
  end)

  it("answers 502 at the first failure with retries = 0", function()
    for _ = 1, 2 do
      local _, statuses = H.spread(gw.port, 10, { path = "/half-dead-0/echo" })
      -- one worker, round-robin: every other request hits the dead one
      assert.same({ [200] = 5, [502] = 5 }, statuses, fmt(statuses))
      local res = assert(H.request(gw.port, { path = "/half-dead-0/echo" }))
      if res.status ~= 200 then assert_502(res) end
    end
  end)

  it("succeeds with a single retry", function()
    for _ = 1, 2 do
      local _, statuses = H.spread(gw.port, 10, { path = "/half-dead-1/echo" })
      assert.same({ [200] = 10 }, statuses, fmt(statuses))
    end
  end)

  it("makes 1 + retries tries to a lone dead target, then 502", function()
    for _ = 1, 2 do
      local mark = gw:log_mark()
      local res = assert(H.request(gw.port, { path = "/lone-dead/echo" }, { timeout = 10 }))
      assert_502(res)
      local ids, tries = {}, 0
      for id in gw:error_log_since(mark):gmatch("%*(%d+) upstream 127%.0%.0%.1:"
                                                .. dead1 .. ": connection refused") do
        ids[id] = true
        tries = tries + 1
      end
      assert.equals(4, tries)
      local n = 0
      for _ in pairs(ids) do n = n + 1 end
      assert.equals(1, n, "tries logged under more than one connection id")
    end
  end)

  it("resends a GET whose connection was closed, not a POST", function()
    for _ = 1, 2 do
      -- GET: idempotent, retried on the mock when it lands on the closer
      local counts, statuses = H.spread(gw.port, 6, { path = "/closer/echo" })
      assert.same({ [200] = 6 }, statuses, fmt(statuses))
      assert.same({ [tostring(mock.port)] = 6 }, counts)

      -- POST: sent to the closer it must not be sent again
      local post_statuses, mock_bodies = {}, 0
      for i = 1, 6 do
        local res = assert(H.request(gw.port, { method = "POST",
          path = "/closer/echo", body = "order=" .. i }, { timeout = 10 }))
        post_statuses[res.status] = (post_statuses[res.status] or 0) + 1
        if res.status == 200 then
          assert.equals("order=" .. i, res:json().body)
          mock_bodies = mock_bodies + 1
        else
          assert_502(res)
        end
      end
      -- round-robin over two targets: three of six POSTs met the closer
      assert.same({ [200] = 3, [502] = 3 }, post_statuses, fmt(post_statuses))
    end
  end)

  it("resends a small buffered PUT, not a streamed one", function()
    for _ = 1, 2 do
      -- small, whole with its head: replayable
      local _, statuses = H.spread(gw.port, 6, function(i)
        return { method = "PUT", path = "/closer/echo", body = "v=" .. i }
      end, { timeout = 10 })
      assert.same({ [200] = 6 }, statuses, fmt(statuses))

      -- chunked, the last chunk sent late: the body streams to the
      -- upstream and cannot be replayed
      local st = {}
      for i = 1, 4 do
        local c = assert(H.connect(gw.port, { timeout = 10 }))
        assert(c:send("PUT /closer/echo HTTP/1.1\r\nHost: x\r\n"
                      .. "Transfer-Encoding: chunked\r\n\r\n"
                      .. "5\r\nfirst\r\n"))
        H.sleep(0.1)
        c:send("6\r\nsecond\r\n0\r\n\r\n")
        local res = c:read_response()
        c:close()
        local s = res and res.status or "closed"
        st[s] = (st[s] or 0) + 1
        if res and res.status == 200 then
          assert.equals("firstsecond", res:json().body, "request " .. i)
        end
      end
      assert.is_nil(st.closed, fmt(st))
      assert.same({ [200] = 2, [502] = 2 }, st, fmt(st))
    end
  end)

  it("retries a request whose streamed body was not sent yet", function()
    -- the connect to the dead target fails before any body byte left:
    -- the retry can still send the whole body
    for _ = 1, 2 do
      for i = 1, 2 do
        local c = assert(H.connect(gw.port, { timeout = 10 }))
        assert(c:send("PUT /half-dead-1/echo HTTP/1.1\r\nHost: x\r\n"
                      .. "Transfer-Encoding: chunked\r\n\r\n"))
        H.sleep(0.1)
        c:send("4\r\nbody\r\n0\r\n\r\n")
        local res = assert(c:read_response())
        c:close()
        assert.equals(200, res.status, "request " .. i)
        assert.equals("body", res:json().body)
      end
    end
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, {
      "connection refused", "prematurely closed", "closed while",
      "reset by peer", "Broken pipe", "broken pipe",
    })
  end)
end)
