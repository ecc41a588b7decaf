-- End-to-end: Kong's upstream `healthchecks`.  Active HTTP probes take a
-- dead, failing (500) or silent target out and bring a revived one back;
-- passive checks count TCP failures and chosen statuses on real traffic;
-- every target down, or the healthy weight under `threshold`, is Kong's
-- 503.  Two workers: the state is shared, so once a target is marked no
-- worker sends it anything.  Every change is logged at notice.
--
-- Failure injection: a mockup process stopped and restarted on its port,
-- a raw upstream that answers 500, a listener that never accepts, a port
-- nothing listens on.
--
-- Reloads: the state lives in the master's arena for its whole life, so a
-- target marked unhealthy stays so through `moongate reload` (SIGHUP),
-- with the same config or with changed thresholds, and the new workers
-- never try it.

local H = require "moongate"

local MSG_PEER = "failure to get a peer from the ring-balancer"
local MSG_502 = "An invalid response was received from the upstream server"

local function fmt(counts)
  local t = {}
  for k, v in pairs(counts) do t[#t + 1] = k .. "=" .. v end
  table.sort(t)
  return table.concat(t, " ")
end

local function esc(s)
  return (s:gsub("[%p]", "%%%0"))
end

-- the notice line for a state change
local function change_pattern(upstream, target, state, kind)
  return "%[notice%][^\n]*upstream \"" .. esc(upstream) .. "\" target \""
         .. esc(target) .. "\" is " .. state .. " now[^\n]*"
         .. (kind and ("%(" .. kind .. " health check%)") or "")
end

local function active(fields)
  local a = {
    type = "http", http_path = "/status/200", timeout = 0.5,
    healthy = { interval = 0.2, successes = 1 },
    unhealthy = { interval = 0.2, tcp_failures = 1, http_failures = 1,
                  timeouts = 1 },
  }
  for k, v in pairs(fields or {}) do a[k] = v end
  return a
end

describe("e2e health checks", function()
  local mock, revived, raw500, silent, gw
  local A, X, R, S, D        -- target strings
  local dead_port, revived_port

  lazy_setup(function()
    mock = H.start_mockup(1)
    revived_port = H.free_port()
    revived = H.start_mockup { revived_port }
    raw500 = H.start_raw_upstream("HTTP/1.1 500 Internal Server Error\r\n"
      .. "X-Upstream-Port: raw500\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    silent = assert(require("socket").tcp())
    assert(silent:bind("127.0.0.1", 0))
    assert(silent:listen(256))
    local _, sport = silent:getsockname()
    dead_port = H.free_port()
    A = "127.0.0.1:" .. mock.port
    X = "127.0.0.1:" .. revived_port
    R = "127.0.0.1:" .. raw500.port
    S = "127.0.0.1:" .. sport
    D = "127.0.0.1:" .. dead_port

    local function up(name, targets, hc)
      local t = {}
      for i, target in ipairs(targets) do t[i] = { target = target } end
      return { name = name, targets = t, healthchecks = hc }
    end
    local passive_tcp = { passive = { unhealthy = { tcp_failures = 2 } } }
    local ups = {
      up("active", { A, X }, { active = active() }),
      up("active-status", { A, R }, { active = active { http_path = "/" } }),
      up("active-timeout", { A, S }, { active = active {
        unhealthy = { interval = 0.2, timeouts = 2 } } }),
      up("passive", { A, D }, passive_tcp),
      up("passive-http", { A, R }, { passive = {
        unhealthy = { http_failures = 2, http_statuses = { 500 } } } }),
      up("all-down", { D }, { passive = { unhealthy = { tcp_failures = 1 } } }),
      up("all-down-active", { D }, { active = active() }),
      up("threshold", { A, R }, { threshold = 60,
                                  active = active { http_path = "/" } }),
      up("no-checks", { A, D }, nil),
    }
    local services = {}
    for _, u in ipairs(ups) do
      services[#services + 1] = { name = u.name, host = u.name, retries = 0,
        routes = { { name = u.name, paths = { "/" .. u.name } } } }
    end
    services[4].retries = 5          -- passive: the client never sees it
    gw = H.start_gateway { name = "health", conf = { worker_processes = 2 },
      config = { _format_version = "3.0", upstreams = ups, services = services } }
  end)

  lazy_teardown(function()
    if silent then silent:close() end
    H.cleanup()
  end)

  local function port(p)
    return tostring(p)
  end

  describe("active", function()
    it("takes a stopped target out, for every worker, and brings it back", function()
      -- both up: both get traffic
      local counts = H.spread(gw.port, 10, { path = "/active/echo" })
      assert.equals(10, (counts[port(mock.port)] or 0) + (counts[port(revived_port)] or 0),
                    fmt(counts))
      assert.is_true((counts[port(revived_port)] or 0) > 0, fmt(counts))

      local mark = gw:log_mark()
      revived:stop()
      assert.is_true(gw:wait_log(change_pattern("active", X, "UNHEALTHY", "active"),
                                 5, mark), "no UNHEALTHY notice for " .. X)
      -- no retries on this service: a request sent to the dead target
      -- would be a 502; none is, in either worker
      local m2 = gw:log_mark()
      for _ = 1, 2 do
        local c, statuses = H.spread(gw.port, 30, { path = "/active/echo" })
        assert.same({ [200] = 30 }, statuses)
        assert.same({ [port(mock.port)] = 30 }, c)
      end
      assert.is_nil(gw:error_log_since(m2):find(esc(X), 1))

      -- back on the same port: probes see it and it gets traffic again
      mark = gw:log_mark()
      revived = H.start_mockup { revived_port }
      assert.is_true(gw:wait_log(change_pattern("active", X, "HEALTHY", "active"),
                                 5, mark), "no HEALTHY notice for " .. X)
      counts = H.spread(gw.port, 10, { path = "/active/echo" })
      assert.is_true((counts[port(revived_port)] or 0) > 0, fmt(counts))
      assert.equals(10, (counts[port(mock.port)] or 0) + counts[port(revived_port)])
    end)

    it("marks a target that answers the probe with 500 unhealthy", function()
      assert.is_true(gw:wait_log(change_pattern("active-status", R, "UNHEALTHY", "active"), 5))
      for _ = 1, 2 do
        local c, statuses = H.spread(gw.port, 10, { path = "/active-status/echo" })
        assert.same({ [200] = 10 }, statuses)
        assert.same({ [port(mock.port)] = 10 }, c)
      end
      -- the healthy mock is never marked
      assert.is_false(gw:log_has(change_pattern("active-status", A, "UNHEALTHY")))
    end)

    it("marks a target whose probes time out unhealthy", function()
      assert.is_true(gw:wait_log(change_pattern("active-timeout", S, "UNHEALTHY",
                                                "active"), 6))
      assert.matches(esc(S) .. "\" is UNHEALTHY now: 2 timeouts", gw:error_log())
      for _ = 1, 2 do
        local c = H.spread(gw.port, 6, { path = "/active-timeout/echo" }, { timeout = 3 })
        assert.same({ [port(mock.port)] = 6 }, c)
      end
    end)

    it("answers 503 once its only target is down", function()
      assert.is_true(gw:wait_log(change_pattern("all-down-active", D, "UNHEALTHY", "active"), 5))
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/all-down-active/echo" }))
        assert.equals(503, res.status)
        assert.same({ message = MSG_PEER }, res:json())
      end
    end)

    it("takes the whole upstream down under its threshold", function()
      assert.is_true(gw:wait_log(change_pattern("threshold", R, "UNHEALTHY", "active"), 5))
      -- one of two equal targets healthy: 50% < 60%
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/threshold/echo" }))
        assert.equals(503, res.status)
        assert.same({ message = MSG_PEER }, res:json())
      end
    end)
  end)

  describe("passive", function()
    it("marks a refusing target after tcp_failures, for every worker", function()
      local mark = gw:log_mark()
      local seen_down = false
      for i = 1, 30 do
        local res = assert(H.request(gw.port, { path = "/passive/echo" }))
        assert.equals(200, res.status, "request " .. i)
        assert.equals(port(mock.port), res.headers["x-upstream-port"])
        if gw:log_has(change_pattern("passive", D, "UNHEALTHY", "passive"), mark) then
          seen_down = true
          break
        end
      end
      assert.is_true(seen_down, "no UNHEALTHY notice for " .. D)
      assert.matches("is UNHEALTHY now: 2 TCP failures", gw:error_log_since(mark))
      -- from now on no worker connects to it
      local m2 = gw:log_mark()
      for _ = 1, 2 do
        local c, statuses = H.spread(gw.port, 30, { path = "/passive/echo" })
        assert.same({ [200] = 30 }, statuses)
        assert.same({ [port(mock.port)] = 30 }, c)
      end
      assert.is_nil(gw:error_log_since(m2):find(esc(D)),
                    "a worker still tried the unhealthy target:\n"
                    .. gw:error_log_since(m2))
      -- the two failures were counted across workers: at most 2 tries
      local tries = 0
      for _ in gw:error_log_since(mark):gmatch(esc(D) .. ": connection refused") do
        tries = tries + 1
      end
      assert.equals(2, tries)
    end)

    it("marks a target after http_failures of the listed statuses", function()
      local mark = gw:log_mark()
      local n500 = 0
      for _ = 1, 10 do
        local res = assert(H.request(gw.port, { path = "/passive-http/echo" }))
        if res.status == 500 then
          n500 = n500 + 1     -- passed through: no retries for a 500
        else
          assert.equals(200, res.status)
        end
      end
      assert.equals(2, n500)
      assert.is_true(gw:log_has(change_pattern("passive-http", R, "UNHEALTHY", "passive"), mark))
      assert.matches("is UNHEALTHY now: 2 HTTP failures", gw:error_log_since(mark))
      for _ = 1, 2 do
        local c = H.spread(gw.port, 10, { path = "/passive-http/echo" })
        assert.same({ [port(mock.port)] = 10 }, c)
      end
    end)

    it("answers 502, then 503 once the only target is marked", function()
      local res = assert(H.request(gw.port, { path = "/all-down/echo" }))
      assert.equals(502, res.status)
      assert.same({ message = MSG_502 }, res:json())
      assert.is_true(gw:wait_log(change_pattern("all-down", D, "UNHEALTHY", "passive"), 2))
      for _ = 1, 2 do
        res = assert(H.request(gw.port, { path = "/all-down/echo" }))
        assert.equals(503, res.status)
        assert.same({ message = MSG_PEER }, res:json())
      end
    end)

    it("leaves an upstream without healthchecks alone", function()
      for _ = 1, 2 do
        -- two workers, each with its own round-robin cursor: both targets
        -- keep getting requests, the dead one answered 502 (no retries)
        local counts, statuses = H.spread(gw.port, 12, { path = "/no-checks/echo" })
        assert.is_true((statuses[502] or 0) >= 1, fmt(statuses))
        assert.is_true((statuses[200] or 0) >= 1, fmt(statuses))
        assert.equals(12, statuses[502] + statuses[200])
        assert.equals(statuses[200], counts[port(mock.port)])
      end
      assert.is_false(gw:log_has('upstream "no%-checks" target'))
    end)
  end)

  it("logs each change once", function()
    local log = gw:error_log()
    for _, c in ipairs {
      { "active-status", R }, { "active-timeout", S }, { "passive", D },
      { "passive-http", R }, { "all-down", D }, { "threshold", R },
    } do
      local n = 0
      for _ in log:gmatch(change_pattern(c[1], c[2], "UNHEALTHY")) do n = n + 1 end
      assert.equals(1, n, c[1] .. " " .. c[2] .. " logged " .. n .. " times")
    end
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, {
      "connection refused", "no peer available",
      "prematurely closed", "closed while reading",
    })
  end)
end)

describe("e2e health state across reloads", function()
  local mock, gw, A, D

  -- passive checks only: nothing but the Admin API brings D back, so a
  -- healthy D after a reload could only mean the state was lost
  local function config(tcp_failures)
    return {
      _format_version = "3.0",
      upstreams = { {
        name = "keep",
        targets = { { target = A }, { target = D } },
        healthchecks = { passive = { unhealthy = { tcp_failures = tcp_failures } } },
      } },
      services = { {
        name = "keep", host = "keep", retries = 5,
        routes = { { name = "keep", paths = { "/keep" } } },
      } },
    }
  end

  lazy_setup(function()
    mock = H.start_mockup(1)
    A = "127.0.0.1:" .. mock.port
    D = "127.0.0.1:" .. H.free_port()
    gw = H.start_gateway { name = "health-reload",
      conf = { worker_processes = 2 }, config = config(1) }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  -- reload and wait until only new workers serve
  local function reload()
    local old = {}
    for _, p in ipairs(gw:worker_pids()) do old[p] = true end
    local mark = gw:log_mark()
    local rc, out = gw:reload()
    assert.equals(0, rc, out)
    assert.is_true(gw:wait_log("configuration reloaded", 10, mark),
                   "no reload in the log")
    assert.is_table(gw:wait_new_generation(2, old), "the old workers did not go")
    return mark
  end

  -- no worker sends D anything, and nobody had to learn it again
  local function assert_avoided(mark, why)
    for _ = 1, 2 do
      local c, statuses = H.spread(gw.port, 20, { path = "/keep/echo" })
      assert.same({ [200] = 20 }, statuses)
      assert.same({ [tostring(mock.port)] = 20 }, c)
    end
    local since = gw:error_log_since(mark)
    assert.is_nil(since:find(esc(D) .. ": connection refused"),
                  why .. ": a new worker tried the unhealthy target:\n" .. since)
    assert.is_nil(since:find(change_pattern("keep", D, "UNHEALTHY")),
                  why .. ": the state was lost and learnt again:\n" .. since)
  end

  it("keeps a target marked unhealthy through `moongate reload`", function()
    local mark = gw:log_mark()
    local seen = false
    for i = 1, 20 do
      local res = assert(H.request(gw.port, { path = "/keep/echo" }))
      assert.equals(200, res.status, "request " .. i)
      if gw:log_has(change_pattern("keep", D, "UNHEALTHY", "passive"), mark) then
        seen = true
        break
      end
    end
    assert.is_true(seen, "no UNHEALTHY notice for " .. D)

    assert_avoided(reload(), "same config")
  end)

  it("keeps it through a reload that changes the thresholds", function()
    -- thresholds are not part of a target's key: same word, still down
    gw:write_config(config(3))
    assert_avoided(reload(), "new thresholds")
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, { "connection refused" })
  end)
end)

-- Active `https` probes.  The HTTPS target is a second gateway's `ssl`
-- listener (its generated self-signed certificate, CN and SAN localhost)
-- in front of a mockup, so `/status/NNN` answers NNN over TLS; its plain
-- HTTP port stands for a target that refuses TLS.  The gateway under test
-- trusts only the system bundle: with https_verify_certificate = true the
-- self-signed certificate fails verification, which counts as a TCP
-- failure (Kong: a failed sslhandshake is reported as one).
describe("e2e active https health checks", function()
  local mock, backend, gw, B, P, W

  -- A server that answers every connection at once in plain HTTP, without
  -- reading: a TLS client gets a record it cannot parse.
  local function start_plain_answerer()
    local dir = H.new_prefix("plain")
    local port = H.free_port()
    local script = H.write_file(dir .. "/plain.lua", [[
local socket = require "socket"
local srv = assert(socket.bind("127.0.0.1", tonumber(arg[1])))
io.stdout:write("ready\n") io.stdout:flush()
while true do
  local c = srv:accept()
  if c then
    c:send("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    c:close()
  end
end
]])
    H.spawn("$(command -v lua5.1 || echo lua) " .. H.shell_quote(script)
            .. " " .. port, dir .. "/plain.out")
    assert(H.wait_port(port, 10), "plain answerer did not start")
    return port
  end

  local function https(fields)
    local a = active(fields)
    a.type = "https"
    if a.https_verify_certificate == nil then
      a.https_verify_certificate = false
    end
    return { active = a }
  end

  lazy_setup(function()
    mock = H.start_mockup(1)
    backend = H.start_tls_gateway { name = "health-https-backend",
      config = { _format_version = "3.0", services = { {
        name = "b", url = mock:url(1),
        routes = { { name = "b", paths = { "/" }, strip_path = false } } } } } }
    B = "127.0.0.1:" .. backend.ssl_port
    P = "127.0.0.1:" .. start_plain_answerer()
    -- a plain HTTP port waits for a request line: the handshake times out
    W = "127.0.0.1:" .. backend.port
    local function up(name, targets, hc)
      local t = {}
      for i, target in ipairs(targets) do t[i] = { target = target } end
      return { name = name, targets = t, healthchecks = hc }
    end
    local ups = {
      -- a good and a refusing target side by side
      up("tls-mixed", { B, P }, https { https_sni = "localhost" }),
      up("tls-wait", { W }, https { unhealthy = { interval = 0.2, timeouts = 1 } }),
      up("tls-500", { B }, https { http_path = "/status/500" }),
      up("tls-verify", { B }, https { https_verify_certificate = true,
                                      https_sni = "localhost" }),
      up("tls-good", { B }, https()),
    }
    gw = H.start_gateway { name = "health-https", conf = { worker_processes = 2 },
      config = { _format_version = "3.0", upstreams = ups, services = { {
        name = "tls-good", host = "tls-good", protocol = "https", port = 443,
        tls_verify = false, retries = 0,
        routes = { { name = "tls-good", paths = { "/tls-good" } } } } } } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("marks a target refusing TLS UNHEALTHY, the HTTPS one stays HEALTHY", function()
    assert.is_true(gw:wait_log(change_pattern("tls-mixed", P, "UNHEALTHY", "active"), 5),
                   "no UNHEALTHY notice for " .. P .. ":\n" .. gw:error_log())
    assert.matches("upstream \"tls%-mixed\" target \"" .. esc(P)
                   .. "\" is UNHEALTHY now: 1 TCP failures", gw:error_log())
    -- several probe rounds (0.2 s apart) later the good one is untouched
    H.sleep(1)
    assert.is_nil(gw:error_log():find(change_pattern("tls-mixed", B, "UNHEALTHY")),
                  gw:error_log())
  end)

  it("counts a plain HTTP server that waits as a timeout", function()
    assert.is_true(gw:wait_log(change_pattern("tls-wait", W, "UNHEALTHY", "active"), 5),
                   "no UNHEALTHY notice for tls-wait:\n" .. gw:error_log())
    assert.matches("upstream \"tls%-wait\" target \"" .. esc(W)
                   .. "\" is UNHEALTHY now: 1 timeouts", gw:error_log())
  end)

  it("counts a status in unhealthy.http_statuses read over TLS", function()
    assert.is_true(gw:wait_log(change_pattern("tls-500", B, "UNHEALTHY", "active"), 5),
                   "no UNHEALTHY notice for tls-500:\n" .. gw:error_log())
    assert.matches("upstream \"tls%-500\" target \"" .. esc(B)
                   .. "\" is UNHEALTHY now: 1 HTTP failures", gw:error_log())
  end)

  it("counts a certificate that fails verification as a TCP failure", function()
    assert.is_true(gw:wait_log(change_pattern("tls-verify", B, "UNHEALTHY", "active"), 5),
                   "no UNHEALTHY notice for tls-verify:\n" .. gw:error_log())
    assert.matches("upstream \"tls%-verify\" target \"" .. esc(B)
                   .. "\" is UNHEALTHY now: 1 TCP failures", gw:error_log())
    assert.matches("service health check of upstream tls%-verify: "
                   .. "certificate verify failed", gw:error_log())
  end)

  it("keeps the verified-off HTTPS target HEALTHY and serving", function()
    H.sleep(0.5)
    assert.is_nil(gw:error_log():find(change_pattern("tls-good", B, "UNHEALTHY")),
                  gw:error_log())
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/tls-good/status/200" }))
      assert.equals(200, res.status)
    end
    -- the probes reached the backend over TLS with the configured path
    assert.matches("GET /status/200 ", backend:access_log())
  end)

  it("leaves no unexpected error log lines", function()
    -- TLS failures of probes are logged at error, naming the check, as
    -- Kong logs a failed SSL handshake of a health check
    H.assert_no_error_log(gw, { "service health check of upstream tls%-mixed: ",
                                "service health check of upstream tls%-verify: " })
    -- the backend saw ClientHellos on its plain port: client errors, info
    H.assert_no_error_log(backend, {})
  end)
end)
