-- End-to-end: Kong 3's `response` phase.  A plugin of the route that
-- implements `response` makes the gateway buffer the upstream's whole
-- response (decoded: chunked or Content-Length alike), run the phase in a
-- coroutine (it may wait), then run header_filter/body_filter and send
-- what the phase left, with a Content-Length.  A body larger than
-- response_phase_max_body_size gets a 502 with a JSON message.  Routes
-- without such a plugin stream as before.
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"
local PLUGINS = "bundled,resp-phase,upper-stream"

describe("e2e response phase", function()
  local mock, gw

  setup(function()
    mock = H.start_mockup(1)
    local function route(name, conf, extra)
      local r = { name = name, paths = { "/" .. name },
                  plugins = { { name = "resp-phase", config = conf } } }
      for _, p in ipairs(extra or {}) do
        table.insert(r.plugins, p)
      end
      return r
    end
    gw = H.start_gateway { name = "respphase",
      conf = { lua_package_path = FIXTURES, plugins = PLUGINS,
               worker_processes = 1,
               response_phase_max_body_size = "100k" },
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = mock:url(1), routes = {
              { name = "plain", paths = { "/plain" } },
              { name = "stream", paths = { "/stream" },
                plugins = { { name = "upper-stream" } } },
              route("upper", { upper = true }),
              route("status", { status = 201 }),
              route("exit", { exit = true }),
              route("sleepy", { sleep = 0.3, wrap = true }),
              route("both", { wrap = true }, { { name = "upper-stream" } }),
            } },
        },
      } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  it("rewrites a Content-Length body and reads it as JSON", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/upper/echo" }))
      assert.equals(200, res.status)
      assert.equals(#res.body, tonumber(res.headers["content-length"]))
      assert.is_nil(res.headers["transfer-encoding"])
      assert.equals(res.body:upper(), res.body)
      assert.matches('"METHOD":"GET"', res.body, 1, true)
      local rp = assert(res.headers["x-response-phase"])
      assert.matches("len=" .. #res.body .. ";status=200;json=table;port=%d+", rp)
      -- header_filter ran after response, on the final status
      assert.equals("200", res.headers["x-header-filter"])
    end
  end)

  it("buffers a chunked upstream body and sends it with a length", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port,
                                   { path = "/upper/bytes/40000?chunked=1" }))
      assert.equals(200, res.status)
      assert.equals("40000", res.headers["content-length"])
      assert.is_nil(res.headers["transfer-encoding"])
      assert.equals(40000, #res.body)
      assert.equals("ABCDEFGHIJKLMNOPQRSTUVWXYZABCD", res.body:sub(1, 30))
      assert.matches("len=40000;status=200;json=nil", res.headers["x-response-phase"], 1, true)
    end
  end)

  it("changes the status", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/status/echo" }))
      assert.equals(201, res.status)
      assert.equals("201", res.headers["x-header-filter"])
      assert.matches("status=200", res.headers["x-response-phase"], 1, true)
      assert.equals("GET", res:json().method)
    end
  end)

  it("answers kong.response.exit from the response phase", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/exit/status/503" }))
      assert.equals(409, res.status)
      local j = res:json()
      assert.equals("from response", j.message)
      assert.equals(503, j.upstream_status)
      assert.is_truthy(res.headers["x-response-phase"])
    end
  end)

  it("lets the phase wait (ngx.sleep) without blocking the worker", function()
    local slow = assert(H.connect(gw.port))
    local fast = assert(H.connect(gw.port))
    assert(slow:send(H.request_bytes { path = "/sleepy/bytes/10" }))
    H.sleep(0.05)
    assert(fast:send(H.request_bytes { path = "/plain/echo" }))
    assert.equals(2, H.first_readable({ slow, fast }, 5))
    assert.equals(200, assert(fast:read_response()).status)
    local sres = assert(slow:read_response({ timeout = 5 }))
    assert.equals(200, sres.status)
    assert.equals("[abcdefghij]", sres.body)
    slow:close()
    fast:close()
  end)

  it("runs body_filter on what the response phase left", function()
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/both/bytes/5" }))
      assert.equals(200, res.status)
      assert.equals("[ABCDE]", res.body)
    end
  end)

  it("answers 502 with a JSON message when the body is over the limit", function()
    for _, path in ipairs { "/upper/bytes/200000", "/upper/bytes/200000?chunked=1" } do
      local res = assert(H.request(gw.port, { path = path }))
      assert.equals(502, res.status)
      assert.matches("too large", res:json().message, 1, true)
    end
    assert.matches("response_phase_max_body_size", gw:error_log(), 1, true)
    -- the worker goes on
    assert.equals(200, assert(H.request(gw.port, { path = "/upper/echo" })).status)
  end)

  it("leaves streaming routes without a response plugin untouched", function()
    local c = assert(H.connect(gw.port))
    assert(c:send(H.request_bytes { path = "/stream/sse?n=3&interval_ms=400" }))
    local t0 = H.now()
    assert.equals(1, H.first_readable({ c }, 5))
    assert.is_true(H.now() - t0 < 0.35)
    c:close()
    local res = assert(H.request(gw.port, { path = "/plain/bytes/200000?chunked=1" }))
    assert.equals(200, res.status)
    assert.equals("chunked", res.headers["transfer-encoding"])
    assert.equals(200000, #res.body)
  end)

  it("logs no unexpected errors", function()
    H.assert_no_error_log(gw, { "response_phase_max_body_size" })
  end)
end)
