-- End-to-end: the upstream `algorithm`s on the wire, told apart by the
-- mock's X-Upstream-Port.  round-robin (weights, weight 0), least-
-- connections (requests in flight steer the next ones), consistent-
-- hashing (hash_on header / cookie / ip / path / query_arg / uri_capture,
-- hash_fallback, the generated cookie, minimal remapping when a target
-- goes away), latency (a slow target gets few requests, a failing one
-- none).  One worker, so each balancer's state is the only one.

local H = require "moongate"

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

local function count_of(counts)
  local n = 0
  for _ in pairs(counts) do n = n + 1 end
  return n
end

local function fmt(counts)
  local t = {}
  for k, v in pairs(counts) do t[#t + 1] = k .. "=" .. v end
  table.sort(t)
  return table.concat(t, " ")
end

describe("e2e balancer", function()
  local mock, gw, slow
  local P = {}          -- port strings

  local function targets(weights)
    local t = {}
    for i, w in ipairs(weights) do
      t[i] = { target = "127.0.0.1:" .. mock.ports[i], weight = w }
    end
    return t
  end

  local function hashing(name, fields, ntargets)
    local u = { name = name, algorithm = "consistent-hashing",
                targets = targets(ntargets == 2 and { 100, 100 }
                                  or { 100, 100, 100 }) }
    for k, v in pairs(fields) do u[k] = v end
    return u
  end

  local function route_svc(name, routes)
    return { name = name, host = name, retries = 0,
             routes = routes or { { name = name, paths = { "/" .. name } } } }
  end

  local function config(extra_targets)
    local ups = {
      { name = "rr", targets = targets { 30, 10, 0 } },
      { name = "lc", algorithm = "least-connections",
        targets = targets { 100, 100 } },
      hashing("h-header", { hash_on = "header", hash_on_header = "X-User" }),
      hashing("h-cookie", { hash_on = "cookie", hash_on_cookie = "sticky",
                            hash_on_cookie_path = "/h-cookie" }),
      hashing("h-ip", { hash_on = "ip" }),
      hashing("h-path", { hash_on = "path" }),
      hashing("h-query", { hash_on = "query_arg", hash_on_query_arg = "user" }),
      hashing("h-capture", { hash_on = "uri_capture",
                             hash_on_uri_capture = "tenant" }),
      hashing("h-fallback", { hash_on = "header", hash_on_header = "X-User",
                              hash_fallback = "query_arg",
                              hash_fallback_query_arg = "user" }),
      hashing("h-none", { hash_on = "header", hash_on_header = "X-User" }, 2),
      { name = "h-remap", algorithm = "consistent-hashing", hash_on = "header",
        hash_on_header = "X-User", targets = extra_targets or targets { 100, 100, 100 } },
      { name = "lat", algorithm = "latency", targets = {
        { target = "127.0.0.1:" .. mock.ports[1] },
        { target = "127.0.0.1:" .. slow.port } } },
      { name = "lat-dead", algorithm = "latency", targets = {
        { target = "127.0.0.1:" .. mock.ports[1] },
        { target = "127.0.0.1:" .. mock.ports[2] },
        { target = "127.0.0.1:" .. H.free_port() } } },
    }
    local svcs = {}
    for _, u in ipairs(ups) do
      svcs[#svcs + 1] = route_svc(u.name)
    end
    -- uri_capture hashes a named group of the route's regex
    svcs[8].routes = { { name = "h-capture",
                         paths = { [[~/h-capture/(?<tenant>[a-z0-9]+)/]] } } }
    svcs[#svcs].retries = 5
    svcs[#svcs + 1] = { name = "marker", url = mock:url(1),
                        routes = { { paths = { "/marker" .. (extra_targets and "2" or "1") } } } }
    return { _format_version = "3.0", upstreams = ups, services = svcs }
  end

  lazy_setup(function()
    mock = H.start_mockup(3)
    slow = H.start_slow_upstream(0.2)
    for i = 1, 3 do P[i] = tostring(mock.ports[i]) end
    gw = H.start_gateway { name = "balancer", config = config() }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function port_of(req)
    local res, err = H.request(gw.port, req, { timeout = 10 })
    assert(res, err)
    assert.equals(200, res.status, tostring(res.body))
    return res.headers["x-upstream-port"], res
  end

  describe("round-robin", function()
    it("spreads by weight and leaves weight-0 targets out", function()
      for round = 1, 2 do
        local counts, statuses = H.spread(gw.port, 40, { path = "/rr/echo" })
        assert.same({ [200] = 40 }, statuses)
        assert.equals(30, counts[P[1]], "round " .. round .. ": " .. fmt(counts))
        assert.equals(10, counts[P[2]], "round " .. round .. ": " .. fmt(counts))
        assert.is_nil(counts[P[3]])
      end
    end)

    it("spreads the requests of one keep-alive client connection", function()
      local c = assert(H.connect(gw.port))
      local counts = {}
      for _ = 1, 8 do
        local res = assert(c:request { path = "/rr/echo" })
        assert.equals(200, res.status)
        local p = res.headers["x-upstream-port"]
        counts[p] = (counts[p] or 0) + 1
      end
      c:close()
      assert.equals(6, counts[P[1]], fmt(counts))
      assert.equals(2, counts[P[2]], fmt(counts))
    end)
  end)

  describe("least-connections", function()
    it("sends new requests to the idle target while one is busy", function()
      for round = 1, 2 do
        local busy = assert(H.connect(gw.port, { timeout = 10 }))
        assert(busy:send(H.request_bytes { path = "/lc/delay/1500" }))
        H.sleep(0.2)            -- the slow request is in flight upstream
        local counts = H.spread(gw.port, 6, { path = "/lc/echo" })
        local res = assert(busy:read_response())
        busy:close()
        assert.equals(200, res.status)
        local busy_port = res.headers["x-upstream-port"]
        assert.is_nil(counts[busy_port], "round " .. round .. ": requests went "
                      .. "to the busy target " .. busy_port .. ": " .. fmt(counts))
        assert.equals(1, count_of(counts), fmt(counts))
      end
    end)

    it("spreads evenly when nothing is in flight", function()
      local counts = H.spread(gw.port, 10, { path = "/lc/echo" })
      assert.equals(5, counts[P[1]], fmt(counts))
      assert.equals(5, counts[P[2]], fmt(counts))
    end)
  end)

  describe("consistent-hashing", function()
    -- same key -> one target (asked `times` times); many keys -> every
    -- target gets some
    local function check(make_req, times)
      local owner = {}
      local spread = {}
      for k = 1, 30 do
        local first
        for _ = 1, times or 3 do
          local p = port_of(make_req("user" .. k))
          first = first or p
          assert.equals(first, p, "key user" .. k .. " moved")
        end
        owner[k] = first
        spread[first] = (spread[first] or 0) + 1
      end
      assert.equals(3, count_of(spread), "30 keys on " .. fmt(spread))
      return owner
    end

    it("hashes on a header", function()
      local a = check(function(key)
        return { path = "/h-header/echo", headers = { ["X-User"] = key } }
      end)
      -- twice: the same keys land where they did
      local b = check(function(key)
        return { path = "/h-header/echo", headers = { ["x-user"] = key } }
      end, 1)
      assert.same(a, b)
    end)

    it("hashes on a query argument", function()
      check(function(key)
        return { path = "/h-query/echo?a=1&user=" .. key .. "&z=2" }
      end)
    end)

    it("hashes on the path", function()
      check(function(key)
        return { path = "/h-path/echo/" .. key }
      end)
    end)

    it("hashes on a named regex capture", function()
      check(function(key)
        return { path = "/h-capture/" .. key .. "/echo?i=" .. math.random(1000) }
      end)
    end)

    it("hashes on the client address", function()
      local owner, spread = {}, {}
      for i = 1, 30 do
        local ip = "127.0.0." .. (i + 1)
        for _ = 1, 2 do
          local c = assert(H.connect_from(gw.port, ip))
          local res = assert(c:request { path = "/h-ip/echo",
            headers = { ["X-Forwarded-For"] = "203.0.113." .. math.random(200) } })
          c:close()
          assert.equals(200, res.status)
          assert.equals(ip, H.upstream_header(res:json(), "x-real-ip"))
          local p = res.headers["x-upstream-port"]
          owner[ip] = owner[ip] or p
          assert.equals(owner[ip], p, ip .. " moved")
        end
        spread[owner[ip]] = (spread[owner[ip]] or 0) + 1
      end
      assert.equals(3, count_of(spread), fmt(spread))
    end)

    it("falls back to hash_fallback when the header is missing", function()
      local by_query = check(function(key)
        return { path = "/h-fallback/echo?user=" .. key }
      end, 2)
      -- the header, when sent, wins over the query argument
      local moved = 0
      for k = 1, 30 do
        local p = port_of { path = "/h-fallback/echo?user=user" .. k,
                            headers = { ["X-User"] = "other" } }
        if p ~= by_query[k] then moved = moved + 1 end
        assert.equals(port_of { path = "/h-fallback/echo?user=x",
                                headers = { ["X-User"] = "other" } }, p)
      end
      assert.is_true(moved > 0, "the header was ignored")
    end)

    it("spreads requests without a key (no fallback)", function()
      for _ = 1, 2 do
        local counts = H.spread(gw.port, 10, { path = "/h-none/echo" })
        assert.equals(2, count_of(counts), fmt(counts))
      end
    end)

    it("sets a cookie when there is none and sticks to it", function()
      for _ = 1, 2 do
        local port, res = port_of { path = "/h-cookie/echo" }
        local sc = res.headers["set-cookie"]
        assert.is_string(sc, "no Set-Cookie")
        local value = sc:match("^sticky=([^;]+)")
        assert.matches(UUID, value or "", sc)
        assert.matches("; Path=/h%-cookie", sc)
        -- sent back, it keeps every request on the first one's target
        for _ = 1, 5 do
          local p, r = port_of { path = "/h-cookie/echo",
            headers = { Cookie = "a=b; sticky=" .. value .. "; c=d" } }
          assert.equals(port, p)
          assert.is_nil(r.headers["set-cookie"])
        end
      end
      -- different cookies spread
      check(function(key)
        return { path = "/h-cookie/echo", headers = {
          Cookie = "sticky=" .. string.format("%08x-0000-4000-8000-%012x",
                                              #key * 7919, tonumber(key:sub(5)) * 104729) } }
      end, 2)
    end)
  end)

  describe("consistent-hashing remapping", function()
    it("moves only the keys of a removed target", function()
      local before = {}
      for k = 1, 60 do
        before[k] = port_of { path = "/h-remap/echo", headers = { ["X-User"] = "k" .. k } }
      end
      -- drop target 3 and reload
      local t = {
        { target = "127.0.0.1:" .. mock.ports[1], weight = 100 },
        { target = "127.0.0.1:" .. mock.ports[2], weight = 100 },
      }
      gw:write_config(config(t))
      local rc, out = gw:reload()
      assert.equals(0, rc, out)
      assert.truthy(H.wait_until(function()
        local res = H.request(gw.port, { path = "/marker2/fast" })
        return res and res.status == 200
      end, 10), "the reloaded config never served")
      local moved = 0
      for k = 1, 60 do
        local p = port_of { path = "/h-remap/echo", headers = { ["X-User"] = "k" .. k } }
        assert.not_equals(P[3], p)
        if before[k] ~= P[3] then
          assert.equals(before[k], p, "key k" .. k .. " moved off a kept target")
        else
          moved = moved + 1
        end
      end
      assert.is_true(moved > 0)
    end)
  end)

  describe("latency", function()
    it("sends most requests to the faster target", function()
      local counts = H.spread(gw.port, 40, { path = "/lat/fast" })
      assert.equals(40, (counts[P[1]] or 0) + (counts[tostring(slow.port)] or 0))
      -- the slow one (200 ms) is probed, and retried now and then as its
      -- average decays, but the fast one carries the load
      assert.is_true((counts[tostring(slow.port)] or 0) >= 1, fmt(counts))
      assert.is_true((counts[P[1]] or 0) >= 30, fmt(counts))
    end)

    it("keeps away from a target that refuses", function()
      local mark = gw:log_mark()
      for _ = 1, 2 do
        local counts, statuses = H.spread(gw.port, 30, { path = "/lat-dead/echo" })
        assert.same({ [200] = 30 }, statuses)
        -- (two equally fast targets need not share sequential requests)
        assert.equals(30, (counts[P[1]] or 0) + (counts[P[2]] or 0), fmt(counts))
      end
      local refused = 0
      for _ in gw:error_log_since(mark):gmatch("connection refused") do
        refused = refused + 1
      end
      assert.is_true(refused >= 1 and refused <= 6, refused .. " tries to the dead target")
    end)
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, { "connection refused" })
  end)
end)
