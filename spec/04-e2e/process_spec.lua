-- End-to-end: master and workers.  Reload (SIGHUP and `moongate reload`)
-- swaps the config with no failed request while requests keep coming;
-- SIGQUIT lets an in-flight request finish; SIGTERM stops fast; a killed
-- worker is replaced and the event logged.
--
-- Log line for a dead worker: nginx writes "worker process N exited on
-- signal 9"; we accept any line naming the signal ("signal 9", "SIGKILL"
-- or "killed") -- see WORKER_DIED below.

local H = require "moongate"

local WORKER_DIED = { "signal 9", "SIGKILL", "[Kk]illed" }

local function config(mock, svc_path)
  return { _format_version = "3.0", services = {
    { name = "s", url = mock:url(1, svc_path), read_timeout = 20000,
      routes = { { name = "v", paths = { "/v" } } } },
    { name = "direct", url = mock:url(1), read_timeout = 20000,
      routes = { { name = "d", paths = { "/d" } } } },
  } }
end

describe("e2e processes", function()
  local mock

  lazy_setup(function()
    mock = H.start_mockup(1)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function start(name, extra)
    return H.start_gateway { name = name, config = config(mock, "/one"),
      conf = { worker_processes = 2,
               nginx_http_keepalive_timeout = "2s" } }
  end

  -- which config answered: "one" or "two" (nil on failure)
  local function version_of(res)
    if not res or res.status ~= 200 then return nil end
    local e = res:json()
    return e.path and e.path:match("^/(%a+)/")
  end

  it("runs a master with worker_processes workers", function()
    local gw = start("proc-workers")
    local w = gw:wait_workers(2)
    assert.is_table(w, "expected 2 workers, got " .. #gw:worker_pids())
    assert.equals(gw.pid, tonumber((H.read_file(gw:pid_file()) or ""):match("%d+")))
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/v/x" }))
      assert.equals("one", version_of(res))
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  -- Send requests one after the other on new connections; in the middle,
  -- write the new config and trigger the reload.  Every request must
  -- succeed, and the new config must take over.
  local function reload_under_load(gw, trigger)
    local failures, served, switched_at = {}, { one = 0, two = 0 }, nil
    local i, triggered_at = 0, nil
    local deadline = H.now() + 20
    while H.now() < deadline do
      i = i + 1
      if i == 30 then
        gw:write_config(config(mock, "/two"))
        triggered_at = i
        trigger()
      end
      local res, err = H.request(gw.port, { path = "/v/x?i=" .. i },
                                 { timeout = 5 })
      local v = version_of(res)
      if not v then
        failures[#failures + 1] = string.format("#%d: %s", i,
          res and (res.status .. " " .. tostring(res.body)) or tostring(err))
      else
        served[v] = served[v] + 1
        if v == "two" and not switched_at then
          switched_at = i
        end
        if triggered_at and not switched_at then
          assert.equals("one", v)
        end
      end
      -- after the switch, keep going a while to catch stragglers
      if switched_at and i >= switched_at + 100 then
        break
      end
    end
    assert.same({}, failures)
    assert.is_number(switched_at, "the new config never took effect ("
                     .. served.one .. " requests served by the old one)")
    -- once switched, never back to the old config
    local res = assert(H.request(gw.port, { path = "/v/x" }))
    assert.equals("two", version_of(res))
    return served
  end

  it("SIGHUP reloads the config with no failed request", function()
    local gw = start("proc-hup")
    local old = gw:wait_workers(2)
    reload_under_load(gw, function() assert(gw:signal("HUP")) end)
    -- the old workers go away once idle
    local set = {}
    for _, p in ipairs(old or {}) do set[p] = true end
    local deadline = H.now() + 10
    while H.now() < deadline do
      local still = 0
      for p in pairs(set) do
        if H.alive(p) then still = still + 1 end
      end
      if still == 0 then break end
      H.sleep(0.1)
    end
    for p in pairs(set) do
      assert.is_false(H.alive(p), "old worker " .. p .. " still running")
    end
    assert.is_table(gw:wait_workers(2))
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("`moongate reload` reloads with no failed request", function()
    local gw = start("proc-reload")
    gw:wait_workers(2)
    reload_under_load(gw, function()
      local rc, out = gw:reload()
      assert.equals(0, rc, out)
    end)
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  -- 10 keep-alive connections with a request in flight on each, across a
  -- reload.  As with any HTTP client, a request sent on a reused
  -- connection that the server closed while idle (no response byte) is
  -- sent again on a new connection; anything else is a failure.
  it("reloads under concurrent keep-alive load with no failed request", function()
    local gw = start("proc-hup-ka")
    gw:wait_workers(2)
    local N = 10
    local conns, used = {}, {}
    local function connect(i)
      conns[i] = assert(H.connect(gw.port, { timeout = 5 }))
      used[i] = 0
    end
    for i = 1, N do connect(i) end
    local failures, resent, switched, round = {}, 0, nil, 0
    local deadline = H.now() + 20
    while H.now() < deadline do
      round = round + 1
      if round == 10 then
        gw:write_config(config(mock, "/two"))
        assert(gw:signal("HUP"))
      end
      for i = 1, N do
        local req = H.request_bytes { path = "/v/delay/20?r=" .. round .. "&c=" .. i }
        if not conns[i]:send(req) then
          if used[i] == 0 then
            failures[#failures + 1] = "send on a new connection"
          end
          conns[i]:close()
          connect(i)
          resent = resent + 1
          assert(conns[i]:send(req))
        end
        conns[i].pending = req
      end
      for i = 1, N do
        local res, err, partial = conns[i]:read_response()
        if not res and used[i] > 0 and not (partial and partial.status)
           and tostring(err):find("closed") then
          -- idle keep-alive connection closed by the old worker: resend
          conns[i]:close()
          connect(i)
          resent = resent + 1
          assert(conns[i]:send(conns[i].pending))
          res, err = conns[i]:read_response()
        end
        local v = version_of(res)
        if not v then
          failures[#failures + 1] = string.format("round %d conn %d: %s", round, i,
            res and (res.status .. " " .. tostring(res.body)) or tostring(err))
          conns[i]:close()
          connect(i)
        else
          used[i] = used[i] + 1
          if v == "two" and not switched then switched = round end
          if (res.headers["connection"] or ""):lower() == "close" then
            conns[i]:close()
            connect(i)
          end
        end
      end
      if switched and round >= switched + 20 then break end
    end
    for i = 1, N do conns[i]:close() end
    assert.same({}, failures)
    assert.is_number(switched, "the new config never took effect; error log:\n"
                     .. H.tail(gw:error_log(), 30))
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("a reload re-reads moongate.conf too", function()
    local gw = start("proc-reload-conf")
    gw:wait_workers(2)
    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/d/fast" }))
      assert.matches("^1%.1 moongate/", res.headers["via"] or "")
    end
    local conf = {}
    for k, v in pairs(gw.conf) do conf[k] = v end
    conf.headers = "off"
    H.write_conf(gw.conf_path, conf)
    assert(gw:signal("HUP"))
    local deadline, via = H.now() + 10, "x"
    while via and H.now() < deadline do
      local res = assert(H.request(gw.port, { path = "/d/fast" }))
      assert.equals(200, res.status)
      via = res.headers["via"]
      if via then H.sleep(0.05) end
    end
    assert.is_nil(via, "headers = off not applied after reload")
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("a reload keeps in-flight requests on the old workers", function()
    local gw = start("proc-reload-inflight")
    gw:wait_workers(2)
    local c = assert(H.connect(gw.port, { timeout = 10 }))
    assert(c:send(H.request_bytes { path = "/v/delay/1000" }))
    H.sleep(0.2)
    gw:write_config(config(mock, "/two"))
    assert(gw:signal("HUP"))
    local res = assert(c:read_response())
    c:close()
    assert.equals(200, res.status)
    assert.equals("/one/delay/1000", res:json().path)
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("SIGQUIT lets an in-flight request finish, then exits", function()
    local gw = start("proc-quit")
    gw:wait_workers(2)
    local c = assert(H.connect(gw.port, { timeout = 10 }))
    assert(c:send(H.request_bytes { path = "/d/delay/1000" }))
    H.sleep(0.2)
    assert(gw:signal("QUIT"))
    local res, err = c:read_response()
    c:close()
    assert(res, err)
    assert.equals(200, res.status)
    assert.equals("/delay/1000", res:json().path)
    assert.is_true(H.wait_exit(gw.pid, 10), "master still running after QUIT")
    -- the listener is gone
    assert.is_false(H.wait_port(gw.port, 0.2))
    H.assert_no_error_log(gw)
  end)

  it("SIGQUIT stops accepting new connections", function()
    local gw = start("proc-quit-accept")
    gw:wait_workers(2)
    local c = assert(H.connect(gw.port, { timeout = 10 }))
    assert(c:send(H.request_bytes { path = "/d/delay/1500" }))
    H.sleep(0.2)
    assert(gw:signal("QUIT"))
    H.sleep(0.3)
    local c2 = H.connect(gw.port, { connect_timeout = 1 })
    if c2 then
      -- accepted by the kernel backlog at most; never served
      local res = c2:request({ path = "/d/fast" }, { timeout = 2 })
      assert.is_nil(res)
      c2:close()
    end
    local res = assert(c:read_response())
    assert.equals(200, res.status)
    c:close()
    assert.is_true(H.wait_exit(gw.pid, 10))
  end)

  it("SIGTERM stops at once, even with a request in flight", function()
    local gw = start("proc-term")
    gw:wait_workers(2)
    local workers = gw:worker_pids()
    local c = assert(H.connect(gw.port, { timeout = 10 }))
    assert(c:send(H.request_bytes { path = "/d/hang" }))
    H.sleep(0.2)
    assert(gw:signal("TERM"))
    -- /hang never answers and read_timeout is 20 s: exiting means the
    -- request was cut, not waited for
    assert.is_true(H.wait_exit(gw.pid, 5), "master still running 5 s after TERM")
    for _, w in ipairs(workers) do
      assert.is_true(H.wait_exit(w, 2), "worker " .. w .. " outlived its master")
    end
    local closed = c:wait_closed(2)
    assert.is_true(closed)
    c:close()
    H.assert_no_error_log(gw)
  end)

  it("workers stop when their master is killed with SIGKILL", function()
    local gw = start("proc-master-kill")
    local workers = assert(gw:wait_workers(2))
    assert(H.kill(gw.pid, "KILL"))
    assert.is_true(H.wait_exit(gw.pid, 5))
    for _, p in ipairs(workers) do
      assert.is_true(H.wait_exit(p, 5), "worker " .. p .. " outlived its master")
    end
  end)

  it("replaces a worker killed with SIGKILL and logs it", function()
    local gw = start("proc-kill")
    local before = assert(gw:wait_workers(2))
    local mark = gw:log_mark()
    local victim = before[1]
    assert(H.kill(victim, "KILL"))
    assert.is_true(H.wait_exit(victim, 5))
    local exclude = { [before[1]] = true, [before[2]] = true }
    local after = gw:wait_workers(2, 10, exclude)
    assert.is_table(after, "no replacement worker")
    local fresh = 0
    for _, p in ipairs(after) do
      if p ~= before[2] then
        assert.is_not.equals(victim, p)
        fresh = fresh + 1
      end
    end
    assert.equals(1, fresh)
    -- the event is in the log
    local logged = false
    local deadline = H.now() + 3
    repeat
      local since = gw:error_log_since(mark)
      for _, pat in ipairs(WORKER_DIED) do
        if since:find(pat) then logged = true end
      end
      if not logged then H.sleep(0.05) end
    until logged or H.now() > deadline
    assert.is_true(logged, "no log line about the killed worker:\n"
                   .. H.tail(gw:error_log_since(mark), 10))
    -- and the gateway serves on
    for i = 1, 20 do
      local res = assert(H.request(gw.port, { path = "/d/echo?i=" .. i }))
      assert.equals(200, res.status)
    end
    gw:stop()
    -- the master may log the death at [alert]/[crit] as nginx does
    H.assert_no_error_log(gw, WORKER_DIED)
  end)
end)
