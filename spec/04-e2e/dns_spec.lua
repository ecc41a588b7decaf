-- End-to-end: upstream hosts named by DNS, resolved with c-ares against
-- build/mockdns (dns_resolver): A, SRV (its port wins), CNAME, the hosts
-- file first (dns_hostsfile), dns_order, TTLs (the zone changes, SIGHUP,
-- the new target shows after the TTL), dns_valid_ttl, negative caching
-- (dns_not_found_ttl, dns_error_ttl), Kong's 503 "name resolution failed"
-- on NXDOMAIN / SERVFAIL / timeout (bounded, never a hang), a slow answer
-- that does not stall other requests, a dead first nameserver.
--
-- Names end in .test and are absent from /etc/hosts; the gateways read a
-- hosts file written here.

local H = require "moongate"

local MSG_DNS = "name resolution failed"

local function zone(mock)
  local p1, p2 = mock.ports[1], mock.ports[2]
  return {
    "api.test        A      30 127.0.0.1",
    "srv.test        SRV    30 10 1 " .. p2 .. " api.test",
    "alias.test      CNAME  30 api.test",
    "shadow.test     SRV    30 10 1 " .. p2 .. " api.test",
    "both.test       SRV    30 10 1 " .. p2 .. " api.test",
    "both.test       A      30 127.0.0.1",
    "second.test     A      30 127.0.0.1",
    "fail.test       SERVFAIL",
    "fail.test       A      30 127.0.0.1",
    "ttl.test        SRV    1 10 1 " .. p1 .. " api.test",
    "valid.test      SRV    3600 10 1 " .. p1 .. " api.test",
    "multi.test      SRV    30 10 1 " .. p1 .. " api.test",
    "multi.test      SRV    30 10 1 " .. p2 .. " api.test",
    "prio.test       SRV    30 10 1 " .. p1 .. " api.test",
    "prio.test       SRV    30 20 1 " .. p2 .. " api.test",
    "slow.test       DELAY  400",
    "slow.test       A      30 127.0.0.1",
    "drop.test       DROP",
    "drop.test       A      30 127.0.0.1",
  }
end

local function svc(name, host, port, extra)
  local s = { name = name, url = "http://" .. host .. ":" .. port, retries = 0,
              routes = { { name = name, paths = { "/" .. name } } } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function get(gw, path, timeout)
  local res, err = H.request(gw.port, { path = path }, { timeout = timeout or 10 })
  assert(res, err)
  return res
end

local function assert_503(res)
  assert.equals(503, res.status, tostring(res.body))
  assert.same({ message = MSG_DNS }, res:json())
end

describe("e2e DNS", function()
  local mock, dns, gw, records

  lazy_setup(function()
    mock = H.start_mockup(3)
    records = zone(mock)
    dns = H.start_mockdns(records)
    local hosts = H.write_file(H.new_prefix("hosts") .. "/hosts", table.concat({
      "127.0.0.1 localhost",
      "127.0.0.1 hosted.test",
      "127.0.0.1 shadow.test",
    }, "\n") .. "\n")
    local p1, p2 = mock.ports[1], mock.ports[2]
    gw = H.start_gateway { name = "dns", conf = {
        dns_resolver = dns.resolver, dns_hostsfile = hosts,
        dns_not_found_ttl = 1, dns_error_ttl = 1,
      }, config = {
        _format_version = "3.0",
        upstreams = { { name = "byname", targets = {
          { target = "api.test:" .. p1 }, { target = "second.test:" .. p2 } } } },
        services = {
          svc("a", "api.test", p1),
          svc("srv", "srv.test", p1),
          svc("cname", "alias.test", p1),
          svc("multi", "multi.test", p1),
          svc("prio", "prio.test", p1),
          svc("hosted", "hosted.test", p1),
          svc("shadow", "shadow.test", p1),
          svc("both", "both.test", p1),
          svc("nx", "nx.test", p1),
          svc("later", "later.test", p1),
          svc("fail", "fail.test", p1),
          svc("ttl", "ttl.test", p1),
          svc("slow", "slow.test", p1),
          svc("drop", "drop.test", p1),
          svc("ip", "127.0.0.1", mock.ports[3]),
          { name = "byname", host = "byname", retries = 0,
            routes = { { paths = { "/byname" } } } },
        },
      } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("resolves an A record and caches it for its TTL", function()
    for _ = 1, 2 do
      local res = get(gw, "/a/echo")
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
      -- the Host sent upstream is the name, as in Kong
      assert.equals("api.test:" .. mock.ports[1], H.upstream_header(res:json(), "host"))
    end
    local q = dns:queries("api.test")
    assert.is_true(q >= 1 and q <= 2, q .. " queries")   -- SRV (empty), A
    for _ = 1, 10 do
      assert.equals(200, H.request(gw.port, { path = "/a/fast",
        headers = { Connection = "close" } }).status)
    end
    assert.equals(q, dns:queries("api.test"))
  end)

  it("uses the port of an SRV record", function()
    for _ = 1, 2 do
      local res = get(gw, "/srv/echo")
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.ports[2]), res.headers["x-upstream-port"])
    end
  end)

  it("spreads over the entries of an SRV record", function()
    for _ = 1, 2 do
      local counts, statuses = H.spread(gw.port, 10, { path = "/multi/echo" })
      assert.same({ [200] = 10 }, statuses)
      assert.is_true((counts[tostring(mock.ports[1])] or 0) > 0
                     and (counts[tostring(mock.ports[2])] or 0) > 0,
                     "10 requests to two SRV entries of equal priority went "
                     .. "to one: " .. tostring(next(counts)))
    end
  end)

  it("uses only the lowest SRV priority", function()
    for _ = 1, 2 do
      local counts = H.spread(gw.port, 6, { path = "/prio/echo" })
      assert.same({ [tostring(mock.ports[1])] = 6 }, counts)
    end
  end)

  it("follows a CNAME", function()
    for _ = 1, 2 do
      local res = get(gw, "/cname/echo")
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
    end
  end)

  it("answers from the hosts file first, without a query", function()
    for _ = 1, 2 do
      local res = get(gw, "/hosted/echo")
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
      -- shadow.test has an SRV record to port 2 in DNS; the hosts file wins
      res = get(gw, "/shadow/echo")
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
    end
    assert.equals(0, dns:queries("hosted.test"))
    assert.equals(0, dns:queries("shadow.test"))
  end)

  it("tries SRV before A with the default dns_order", function()
    for _ = 1, 2 do
      local res = get(gw, "/both/echo")
      assert.equals(200, res.status)
      assert.equals(tostring(mock.ports[2]), res.headers["x-upstream-port"])
    end
  end)

  it("resolves upstream targets by name", function()
    local counts = H.spread(gw.port, 8, { path = "/byname/echo" })
    assert.equals(4, counts[tostring(mock.ports[1])])
    assert.equals(4, counts[tostring(mock.ports[2])])
  end)

  it("answers 503 for NXDOMAIN and caches it dns_not_found_ttl", function()
    for _ = 1, 2 do
      assert_503(get(gw, "/nx/echo"))
    end
    assert.equals(1, dns:queries("nx.test"))   -- NXDOMAIN stops the order

    -- a name that appears after the gateway was told it does not exist
    assert_503(get(gw, "/later/echo"))
    local q = dns:queries("later.test")
    local more = { "later.test A 30 127.0.0.1" }
    for _, r in ipairs(records) do more[#more + 1] = r end
    dns:set(more)
    assert_503(get(gw, "/later/echo"))            -- still cached
    assert.equals(q, dns:queries("later.test"))
    local res = H.wait_until(function()
      local r = get(gw, "/later/echo")
      return r.status == 200 and r
    end, 4, 0.2)
    assert.truthy(res, "later.test never resolved after dns_not_found_ttl")
    assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
    dns:set(records)
  end)

  it("answers 503 for SERVFAIL and caches it dns_error_ttl", function()
    assert_503(get(gw, "/fail/echo"))
    local q = dns:queries("fail.test")
    assert_503(get(gw, "/fail/echo"))
    assert.equals(q, dns:queries("fail.test"))
  end)

  it("sees a changed record once its TTL is over", function()
    local res = get(gw, "/ttl/echo")
    assert.equals(200, res.status)
    assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
    local changed = {}
    for _, r in ipairs(records) do
      changed[#changed + 1] = r:gsub("^(ttl%.test%s+SRV%s+1 10 1 )%d+",
                                     "%1" .. mock.ports[2])
    end
    dns:set(changed)
    -- TTL 1 s; a stale answer may serve one more request while the
    -- refresh runs.  Requests keep coming (the keep-alive pool stays warm)
    local seen = H.wait_until(function()
      local r = get(gw, "/ttl/echo")
      return r.headers["x-upstream-port"] == tostring(mock.ports[2])
    end, 5, 0.25)
    dns:set(records)
    assert.truthy(seen, "still proxied to the old SRV target 5 s after a "
                  .. "TTL of 1 s (" .. dns:queries("ttl.test") .. " queries)")
  end)

  it("does not stall other requests while an answer is slow", function()
    for i = 1, 2 do
      -- round 1 waits for the 400 ms answer; round 2 has it cached
      local slow = assert(H.connect(gw.port, { timeout = 10 }))
      local fast = assert(H.connect(gw.port))
      assert(slow:send(H.request_bytes { path = "/slow/echo?i=" .. i }))
      H.sleep(0.05)
      assert(fast:send(H.request_bytes { path = "/ip/fast" }))
      if i == 1 then
        assert.equals(2, H.first_readable({ slow, fast }, 5),
                      "a request to an IP waited for a slow DNS answer")
      end
      local res = assert(fast:read_response())
      assert.equals(200, res.status)
      res = assert(slow:read_response())
      assert.equals(200, res.status)
      assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
      slow:close()
      fast:close()
    end
  end)

  it("answers 503 when the resolver does not answer (default timeouts)", function()
    -- resolv.conf has no options here: 2 s x 2 tries, doubling (~6 s)
    local t0 = H.now()
    local res = get(gw, "/drop/echo", 15)
    assert_503(res)
    assert.is_true(H.now() - t0 < 14)
    -- the timeout is cached dns_error_ttl (1 s): no second wait
    assert_503(get(gw, "/drop/echo", 15))
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, { 'could not resolve "nx%.test"',
                                'could not resolve "later%.test"',
                                'could not resolve "fail%.test"',
                                'could not resolve "drop%.test": timeout' })
  end)
end)

describe("e2e DNS settings", function()
  local mock, dns, gw, records, dead

  lazy_setup(function()
    mock = H.start_mockup(2)
    records = zone(mock)
    dns = H.start_mockdns(records)
    dead = H.free_port()          -- no DNS server there
    gw = H.start_gateway { name = "dnsset", conf = {
        -- the first nameserver is dead: lookups move on to the second
        dns_resolver = "127.0.0.1:" .. dead .. "," .. dns.resolver,
        dns_order = "A,SRV",
        dns_valid_ttl = 1,
        upstream_keepalive_pool_size = 0,
      }, config = {
        _format_version = "3.0",
        services = {
          svc("both", "both.test", mock.ports[1]),
          svc("valid", "valid.test", mock.ports[1]),
          svc("srv", "srv.test", mock.ports[1]),
        },
      } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("follows dns_order (A before SRV)", function()
    for _ = 1, 2 do
      local res = get(gw, "/both/echo", 15)
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
      -- srv.test has no A record: SRV comes next
      res = get(gw, "/srv/echo", 15)
      assert.equals(200, res.status, tostring(res.body))
      assert.equals(tostring(mock.ports[2]), res.headers["x-upstream-port"])
    end
  end)

  it("overrides record TTLs with dns_valid_ttl", function()
    local res = get(gw, "/valid/echo", 15)
    assert.equals(200, res.status, tostring(res.body))
    assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
    local changed = {}
    for _, r in ipairs(records) do
      changed[#changed + 1] = r:gsub("^(valid%.test%s+SRV%s+3600 10 1 )%d+",
                                     "%1" .. mock.ports[2])
    end
    dns:set(changed)
    -- the record says 3600 s, dns_valid_ttl says 1 s
    local seen = H.wait_until(function()
      local r = get(gw, "/valid/echo", 15)
      return r.headers["x-upstream-port"] == tostring(mock.ports[2])
    end, 6, 0.25)
    dns:set(records)
    assert.truthy(seen, "the record's 3600 s TTL won over dns_valid_ttl = 1")
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw)
  end)
end)

describe("e2e DNS timeouts from resolv.conf options", function()
  local mock, dns, gw

  lazy_setup(function()
    mock = H.start_mockup(1)
    dns = H.start_mockdns { "drop.test DROP", "drop.test A 30 127.0.0.1" }
    -- RES_OPTIONS is resolv.conf's `options` line from the environment
    gw = H.start_gateway { name = "dnsopt",
      env = { RES_OPTIONS = "timeout:1 attempts:1" },
      conf = { dns_resolver = dns.resolver },
      config = { _format_version = "3.0",
                 services = { svc("drop", "drop.test", mock.port) } } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("answers 503 after one 1 s try, not after c-ares' defaults", function()
    -- c-ares' own defaults (5 s, 4 tries, doubling) would take ~75 s
    local res, err = H.request(gw.port, { path = "/drop/echo" }, { timeout = 8 })
    assert(res, "no answer within 8 s with `options timeout:1 attempts:1`: "
           .. tostring(err) .. " (" .. dns:queries("drop.test") .. " queries)")
    assert_503(res)
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, { 'could not resolve "drop%.test": timeout' })
  end)
end)
