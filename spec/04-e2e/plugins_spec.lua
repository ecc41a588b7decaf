-- End-to-end: the LuaJIT plugin runtime against the real binary.
-- Test plugins live in spec/fixtures/plugins/ (see its README) and are put
-- on the plugin path the way an operator would: lua_package_path + the
-- `plugins` property.
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"
local PLUGINS = "bundled,sleeper,exiter,crasher,headers,ctx-check,body-reader,upper-stream,body-replace,timer-log,header-lookup"

describe("e2e plugins", function()
  local mock, gw

  setup(function()
    mock = H.start_mockup(1)
    gw = H.start_gateway { name = "plugins",
      conf = { lua_package_path = FIXTURES, plugins = PLUGINS,
               worker_processes = 1 },
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = mock:url(1), routes = {
              { name = "plain", paths = { "/plain" } },
              { name = "sleepy", paths = { "/sleepy" },
                plugins = { { name = "sleeper", config = { seconds = 1 } } } },
              { name = "exit", paths = { "/exit" },
                plugins = { { name = "exiter",
                              config = { status = 403, message = "nope" } } } },
              { name = "crash", paths = { "/crash" },
                plugins = { { name = "crasher" } } },
              { name = "body", paths = { "/body" },
                plugins = { { name = "body-reader", config = { upper = true } } } },
              { name = "upper", paths = { "/upper" },
                plugins = { { name = "upper-stream" } } },
              { name = "replace", paths = { "/replace" },
                plugins = { { name = "body-replace", config = { tag = "x1" } } } },
              { name = "timer", paths = { "/timer" },
                plugins = { { name = "timer-log", config = { delay = 0.2 } } } },
              { name = "hdr", paths = { "/hdr" },
                plugins = { { name = "headers",
                              config = { name = "X-Added", value = "v1" } } } },
              { name = "lookup", paths = { "/lookup" },
                plugins = { { name = "header-lookup" } } },
              { name = "overlay", paths = { "/overlay" },
                plugins = { { name = "header-lookup",
                              config = { overlay = true } } } },
            } },
        },
        plugins = { { name = "ctx-check" } },       -- global
      } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  it("runs a global plugin on every route, carrying ctx across phases", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/plain/echo",
                                              headers = { ["X-Ctx-Value"] = "42" } }))
      assert.equals(200, res.status)
      assert.equals("rewrite=1;access=42;plugin=1;ngx=ngx;leak=0",
                    res.headers["x-ctx-check"])
    end
  end)

  it("never shows a request another request's state", function()
    -- the runloop reuses its per-request tables: one keep-alive
    -- connection after another, and several at once, each request starts
    -- with empty kong.ctx.shared, kong.ctx.plugin and ngx.ctx
    local conns = {}
    for i = 1, 4 do
      conns[i] = assert(H.connect(gw.port))
    end
    for round = 1, 25 do
      for i = 1, 4 do
        assert(conns[i]:send(H.request_bytes { path = "/plain/echo",
          headers = { ["X-Ctx-Value"] = tostring(round * 10 + i) } }))
      end
      for i = 1, 4 do
        local res = assert(conns[i]:read_response({ timeout = 5 }))
        assert.equals(200, res.status)
        assert.equals("rewrite=1;access=" .. (round * 10 + i) ..
                      ";plugin=1;ngx=ngx;leak=0", res.headers["x-ctx-check"])
      end
    end
    for i = 1, 4 do
      conns[i]:close()
    end
  end)

  it("lets a plugin change the upstream request and the response", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/hdr/echo" }))
      assert.equals(200, res.status)
      assert.equals("v1", H.upstream_header(H.echo(res), "X-Added"))
      assert.equals("v1", res.headers["x-from-plugin"])
    end
  end)

  -- 300 rounds: LuaJIT compiles the PDK calls after a few dozen, so the
  -- later rounds check the compiled code gives the same answers
  it("finds request headers by any case and '_' name, compiled or not", function()
    local cases = {
      { { ["X-Key"] = "alpha" }, "tenant-a", "alpha" },
      { { ["x-KEY"] = "beta" }, "tenant-b", "beta" },
      { { ["X-Key"] = "Alpha" }, "unknown", "Alpha" },
      { { ["X-Keys"] = "alpha", ["X-Ke"] = "beta" }, "unknown", "nil" },
      { {}, "unknown", "nil" },
    }
    for round = 1, 300 do
      local c = cases[round % #cases + 1]
      local res = assert(H.request(gw.port, { path = "/lookup/echo", headers = c[1] }))
      assert.equals(200, res.status)
      local echo = H.echo(res)
      assert.equals(c[2], H.upstream_header(echo, "X-Tenant"), "round " .. round)
      assert.equals(c[3], H.upstream_header(echo, "X-Key-Seen"), "round " .. round)
    end
    -- a repeated header: the first value, as Kong
    local res = assert(H.request(gw.port, { path = "/lookup/echo",
      headers = { { "X-Key", "beta" }, { "X-Key", "alpha" } } }))
    assert.equals("beta", H.upstream_header(H.echo(res), "X-Key-Seen"))
    -- after kong.service.request.set_header, get_header sees the change
    for _ = 1, 60 do
      res = assert(H.request(gw.port, { path = "/overlay/echo",
                                        headers = { ["X-Key"] = "alpha" } }))
      local echo = H.echo(res)
      assert.equals("alpha", H.upstream_header(echo, "X-Key-Seen"))
      assert.equals("beta", H.upstream_header(echo, "X-Overlay-Seen"))
    end
  end)

  it("answers kong.response.exit without reaching the upstream", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/exit/echo" }))
      assert.equals(403, res.status)
      assert.equals("1", res.headers["x-exit"])
      assert.equals("nope", res:json().message)
      assert.is_nil(res.headers["x-upstream-port"])
    end
  end)

  it("turns a plugin error into a 500 naming the plugin in the log", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/crash/echo" }))
      assert.equals(500, res.status)
      assert.equals("An unexpected error occurred", res:json().message)
    end
    local log = gw:error_log()
    assert.matches("crasher", log, 1, true)
    assert.matches("boom", log, 1, true)
    -- the worker goes on
    local res = assert(H.request(gw.port, { path = "/plain/echo" }))
    assert.equals(200, res.status)
  end)

  it("never blocks the worker: a sleeping plugin lets another request finish first", function()
    local slow = assert(H.connect(gw.port))
    local fast = assert(H.connect(gw.port))
    assert(slow:send(H.request_bytes { path = "/sleepy/echo" }))
    H.sleep(0.05)
    assert(fast:send(H.request_bytes { path = "/plain/echo" }))
    -- first_readable returns the index of the first connection to answer
    assert.equals(2, H.first_readable({ slow, fast }, 5))
    local fres = assert(fast:read_response())
    assert.equals(200, fres.status)
    local sres = assert(slow:read_response({ timeout = 5 }))
    assert.equals(200, sres.status)
    assert.equals("1", H.upstream_header(H.echo(sres), "X-Slept"))
    slow:close()
    fast:close()
  end)

  it("buffers a request body that arrives after the head for get_body", function()
    for _ = 1, 2 do
      -- the body comes 300 ms after the head, in two parts
      local c = assert(H.connect(gw.port))
      local body = string.rep("abcdefghij", 5000)       -- 50,000 bytes
      assert(c:send("POST /body/echo HTTP/1.1\r\nHost: x\r\n"
                    .. "Content-Length: " .. #body .. "\r\n\r\n"))
      H.sleep(0.3)
      assert(c:send(body:sub(1, 20000)))
      H.sleep(0.1)
      assert(c:send(body:sub(20001)))
      local res = assert(c:read_response({ timeout = 5 }))
      c:close()
      assert.equals(200, res.status)
      local echo = H.echo(res)
      assert.equals("50000", H.upstream_header(echo, "X-Body-Len"))
      assert.equals(50000, echo.body_len)
      assert.equals(body:upper(), echo.body)
    end
  end)

  it("buffers a chunked request body for get_body and sends it with a length", function()
    local c = assert(H.connect(gw.port))
    assert(c:send("POST /body/echo HTTP/1.1\r\nHost: x\r\n"
                  .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
    H.sleep(0.2)
    assert(c:send("6\r\n world\r\n0\r\n\r\n"))
    local res = assert(c:read_response({ timeout = 5 }))
    c:close()
    assert.equals(200, res.status)
    local echo = H.echo(res)
    assert.equals("HELLO WORLD", echo.body)
    assert.is_false(echo.chunked)
  end)

  it("runs body_filter on every piece of a stream, without holding it back", function()
    for _ = 1, 2 do
      local c = assert(H.connect(gw.port))
      local t0 = H.now()
      assert(c:send(H.request_bytes { path = "/upper/sse?n=4&interval_ms=300" }))
      local res = assert(c:read_response({ timeout = 10, stream = true }))
      c:close()
      assert.equals(200, res.status)
      assert.equals("chunked", res.headers["transfer-encoding"])
      assert.is_nil(res.headers["content-length"])
      -- upper-cased events
      assert.matches('DATA: {"I":0', res.body, 1, true)
      assert.matches("DATA: [DONE]", res.body, 1, true)
      assert.is_nil(res.body:find("data:", 1, true))
      assert.is_true(H.now() - t0 >= 0.9)
    end
  end)

  it("streams the first filtered event before the upstream sends the last", function()
    local c = assert(H.connect(gw.port))
    assert(c:send(H.request_bytes { path = "/upper/sse?n=3&interval_ms=400" }))
    local t0 = H.now()
    assert.equals(1, H.first_readable({ c }, 5))
    local first = H.now() - t0
    c:close()
    assert.is_true(first < 0.35, "first bytes after " .. first .. " s")
  end)

  it("lets body_filter replace the whole body", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/replace/bytes/30000" }))
      assert.equals(200, res.status)
      local j = res:json()
      assert.is_true(j.replaced)
      assert.equals("x1", j.tag)
      assert.equals(30000, j.original_len)
    end
  end)

  it("runs ngx.timer callbacks after the response, with ngx.sleep in them", function()
    local res = assert(H.request(gw.port, { path = "/timer/echo",
                                            headers = { ["X-Id"] = "abc123" } }))
    assert.equals(200, res.status)
    -- the response did not wait for the timer: it has not fired yet
    assert.is_nil(gw:error_log():find("timer-log fired for abc123", 1, true))
    local found
    local deadline = H.now() + 3
    repeat
      found = gw:error_log():find("timer-log fired for abc123 premature=false",
                                  1, true)
      if not found then H.sleep(0.05) end
    until found or H.now() > deadline
    assert.is_truthy(found)
  end)

  it("runs the log phase after the response", function()
    local deadline = H.now() + 3
    local found
    repeat
      found = gw:error_log():find("ctx-check log:", 1, true)
      if not found then H.sleep(0.1) end
    until found or H.now() > deadline
    assert.is_truthy(found)
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, { "boom", "crasher", "lua error", "plugin" })
  end)
end)

describe("e2e plugins configuration errors", function()
  it("refuses to start with an invalid plugin config, naming plugin and field", function()
    local mock = H.start_mockup(1)
    local ok, err = pcall(H.start_gateway, { name = "badplugin",
      timeout = 3,
      conf = { lua_package_path = FIXTURES, plugins = PLUGINS },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1), routes = { { paths = { "/" },
          plugins = { { name = "sleeper",
                        config = { seconds = "not a number" } } } } } } } } })
    mock:stop()
    assert.is_false(ok)
    assert.matches("sleeper", tostring(err), 1, true)
    assert.matches("seconds", tostring(err), 1, true)
    H.cleanup()
  end)

  it("has moongate check validate plugin configs against their schemas", function()
    local dir = H.new_prefix("check")
    local conf = H.write_file(dir .. "/m.conf",
      "plugins = " .. PLUGINS .. "\nlua_package_path = " .. FIXTURES .. "\n")
    local function file(cfg)
      return H.write_file(dir .. "/kong.json", H.json_encode({
        _format_version = "3.0", services = { {
          name = "s", url = "http://127.0.0.1:9", routes = { { paths = { "/" },
            plugins = { { name = "sleeper", config = cfg } } } } } } }))
    end
    local rc, out = H.moongate({ "check", file({ seconds = "x" }), "-c", conf })
    assert.equals(1, rc)
    assert.matches("sleeper", out, 1, true)
    assert.matches("config.seconds", out, 1, true)
    rc, out = H.moongate({ "check", file({ seconds = 2 }), "-c", conf })
    assert.equals(0, rc, out)
    assert.matches(": ok", out, 1, true)
    H.cleanup()
  end)

  it("refuses a plugin that is not enabled", function()
    local mock = H.start_mockup(1)
    local ok, err = pcall(H.start_gateway, { name = "notenabled",
      timeout = 3,
      conf = { lua_package_path = FIXTURES, plugins = "bundled" },
      config = { _format_version = "3.0", services = { {
        name = "s", url = mock:url(1), routes = { { paths = { "/" },
          plugins = { { name = "sleeper" } } } } } } } })
    mock:stop()
    assert.is_false(ok)
    assert.matches("sleeper", tostring(err), 1, true)
    H.cleanup()
  end)
end)
