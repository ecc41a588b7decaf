-- End-to-end: Kong's certificate phase.  A global plugin's certificate
-- handler runs once per full TLS handshake, after the ClientHello and
-- before the certificate goes out, with the SNI (ngx.ssl.server_name) and
-- the client address; not for a resumed session, not for plain HTTP.
-- ngx.exit(ngx.ERROR), an error or an attempt to wait there refuses the
-- handshake; the worker goes on.  (Fixture: spec/fixtures/plugins/cert-phase.)
local H = require "moongate"

local FIXTURES = H.root .. "/spec/fixtures/plugins/?.lua;;"

describe("e2e certificate phase", function()
  local mock, gw

  setup(function()
    mock = H.start_mockup(1)
    gw = H.start_tls_gateway { name = "certphase",
      conf = { lua_package_path = FIXTURES, plugins = "bundled,cert-phase",
               worker_processes = 1 },
      config = {
        _format_version = "3.0",
        plugins = { { name = "cert-phase" } },      -- global
        services = {
          { name = "s", url = mock:url(1), routes = {
              { name = "r", paths = { "/" } } } },
        },
      } }
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  -- what the certificate phase recorded, read over plain HTTP
  local function recorded()
    local res = assert(H.request(gw.port, { path = "/echo" }))
    assert.equals(200, res.status)
    return tonumber(res.headers["x-cert-count"]) or 0, res.headers
  end

  it("runs once per full handshake, with the SNI and the client", function()
    local before = recorded()
    local res = assert(H.https_request(gw.ssl_port, { host = "a.test",
                                                      path = "/echo" }))
    assert.equals(200, res.status)
    assert.equals("a.test 127.0.0.1", res.headers["x-cert-last"])
    -- the request's ngx.ctx is not the handshake's
    assert.equals("nil", res.headers["x-cert-ctx"])
    -- request functions are refused there, naming the phase
    assert.matches("certificate", res.headers["x-cert-request"])
    assert.not_equals("allowed", res.headers["x-cert-request"])
    local after = recorded()
    assert.equals(before + 1, after)
    -- plain HTTP has no handshake
    assert.equals(after, (recorded()))
    H.assert_no_error_log(gw)
  end)

  it("does not run for a resumed session", function()
    local sess = H.new_prefix("certphase-sess") .. "/sess.pem"
    local first = H.tls_handshake(gw.ssl_port, { servername = "b.test",
                                                 sess_out = sess })
    assert.is_true(first.ok, first.out)
    local n = recorded()
    local again = H.tls_handshake(gw.ssl_port, { servername = "b.test",
                                                 sess_in = sess })
    assert.is_true(again.ok, again.out)
    assert.is_true(again.reused, again.out)
    assert.equals(n, (recorded()))
  end)

  it("refuses the handshake on ngx.exit(ngx.ERROR), an error or a wait",
     function()
    for _, name in ipairs { "refuse.test", "crash.test", "wait.test" } do
      local r = H.tls_handshake(gw.ssl_port, { servername = name })
      assert.is_false(r.ok, name .. ": " .. r.out)
      -- the worker goes on
      local res = assert(H.https_request(gw.ssl_port, { host = "ok.test",
                                                        path = "/echo" }))
      assert.equals(200, res.status)
    end
    local log = gw:error_log()
    local function has(text)
      assert.truthy(log:find(text, 1, true), text .. " in\n" .. log)
    end
    has("plugin 'cert-phase' failed in the certificate phase: ")
    has("handler.lua:21: boom")
    has("ngx.sleep can only wait in rewrite, access and response")
    has("the certificate phase ended the handshake")
  end)
end)
