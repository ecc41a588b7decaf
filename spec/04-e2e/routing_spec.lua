-- End-to-end: the router (Kong 3.x semantics) on the wire.
--
-- Every route's service points at the mock with a path "/svc/<name>", so
-- the path the mock saw tells which route matched.  Each request is sent
-- twice (repeat_each(2)).

local H = require "moongate"

local function svc(name, mock, routes, extra)
  local s = { name = name, url = mock:url(1, "/svc/" .. name),
              routes = routes }
  for k, v in pairs(extra or {}) do
    s[k] = v
  end
  return s
end

describe("e2e routing", function()
  local mock, gw

  lazy_setup(function()
    mock = H.start_mockup(1)
    local services = {
      svc("host", mock, { { name = "host", hosts = { "example.com" } } }),
      svc("wild", mock, { { name = "wild", hosts = { "*.wild.test" } } }),
      svc("wildsuffix", mock, { { name = "wildsuffix",
                                  hosts = { "suffix.*" } } }),
      svc("methods", mock, { { name = "methods", paths = { "/methods" },
                               methods = { "POST", "PUT" } } }),
      svc("hdrv2", mock, { { name = "hdrv2", paths = { "/hdr" },
                             headers = { ["x-version"] = { "v2" } } } }),
      svc("hdrany", mock, { { name = "hdrany", paths = { "/hdr" } } }),
      svc("hdrre", mock, { { name = "hdrre", paths = { "/hre" },
                             headers = { ["x-env"] = { "~*^prod-\\d+$" } } } }),
      svc("hdrtwo", mock, { { name = "hdrtwo", paths = { "/hre" },
                              headers = { ["x-env"] = { "staging" },
                                          ["x-team"] = { "a", "b" } } } }),
      svc("porthost", mock, { { name = "porthost",
                                hosts = { "porthost.test:PORT" } } }),
      svc("regex", mock, { { name = "regex",
                             paths = { "~/users/(?<id>\\d+)$" } } }),
      svc("mixedprefix", mock, { { name = "mixedprefix",
                                   paths = { "/mixed" } } }),
      svc("mixedregex", mock, { { name = "mixedregex",
                                  paths = { "~/mixed/\\d+$" } } }),
      svc("rplow", mock, { { name = "rplow", paths = { "~/rp/.*" },
                             regex_priority = 0 } }),
      svc("rphigh", mock, { { name = "rphigh", paths = { "~/rp/special$" },
                              regex_priority = 10 } }),
      svc("rqspecific", mock, { { name = "rqspecific",
                                  paths = { "~/rq/special$" },
                                  regex_priority = 0 } }),
      svc("rqcatch", mock, { { name = "rqcatch", paths = { "~/rq/.*" },
                               regex_priority = 5 } }),
      svc("api", mock, { { name = "api", paths = { "/api" } } }),
      svc("apiv1", mock, { { name = "apiv1", paths = { "/api/v1" } } }),
      svc("both", mock, { { name = "both", hosts = { "both.test" },
                            paths = { "/both" } } }),
      svc("pathonly", mock, { { name = "pathonly", paths = { "/both" } } }),
      svc("nostrip", mock, { { name = "nostrip", paths = { "/nostrip" },
                               strip_path = false } }),
      { name = "preserve", url = mock:url(1),
        routes = { { name = "preserve", hosts = { "preserve.test" },
                     preserve_host = true } } },
      { name = "nopreserve", url = mock:url(1),
        routes = { { name = "nopreserve", hosts = { "nopreserve.test" } } } },
      { name = "httpsonly", url = mock:url(1),
        routes = { { name = "httpsonly", paths = { "/https-only" },
                     protocols = { "https" } } } },
      -- Kong's path_handling table (Admin API docs, route object): service
      -- path "/s" and eight routes.
      { name = "ph", url = mock:url(1, "/s"), routes = {
        { name = "fv0", paths = { "/fv0" }, strip_path = false,
          path_handling = "v0" },
        { name = "fv1", paths = { "/fv1" }, strip_path = false,
          path_handling = "v1" },
        { name = "tv0", paths = { "/tv0" }, strip_path = true,
          path_handling = "v0" },
        { name = "tv1", paths = { "/tv1" }, strip_path = true,
          path_handling = "v1" },
        { name = "fv0s", paths = { "/fv0/" }, strip_path = false,
          path_handling = "v0" },
        { name = "fv1s", paths = { "/fv1/" }, strip_path = false,
          path_handling = "v1" },
        { name = "tv0s", paths = { "/tv0/" }, strip_path = true,
          path_handling = "v0" },
        { name = "tv1s", paths = { "/tv1/" }, strip_path = true,
          path_handling = "v1" },
        { name = "tdef", paths = { "/tdef" } },   -- defaults: strip, v0
      } },
      -- a service without a path, route stripped
      { name = "root", url = mock:url(1), routes = {
        { name = "root", paths = { "/rootsvc" } } } },
    }
    -- hosts with a port need the gateway's port, known before start
    local port = H.free_port()
    for _, sv in ipairs(services) do
      for _, r in ipairs(sv.routes or {}) do
        for i, h in ipairs(r.hosts or {}) do
          r.hosts[i] = h:gsub("PORT", tostring(port))
        end
      end
    end
    gw = H.start_gateway { name = "routing", port = port, config = {
      _format_version = "3.0", services = services } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  -- GET with Host, returns response and (for 200) the mock's echo.
  local function get(path, host, extra)
    local req = { path = path, host = host or "localhost" }
    for k, v in pairs(extra or {}) do
      req[k] = v
    end
    local res, err = H.request(gw.port, req)
    assert(res, err)
    local echo
    if res.status == 200 then
      echo = res:json()
    end
    return res, echo
  end

  -- the route name ("/svc/<name>/...") from the echo
  local function which(echo)
    return echo and echo.path and echo.path:match("^/svc/([%w_-]+)")
  end

  local function expect_route(name, path, host, extra)
    for _ = 1, 2 do
      local res, echo = get(path, host, extra)
      assert.equals(200, res.status, "status for " .. path .. " "
                    .. tostring(host) .. ": " .. tostring(res.body))
      assert.equals(name, which(echo), "route for " .. path)
    end
  end

  local function expect_404(path, host, extra)
    for _ = 1, 2 do
      local res = get(path, host, extra)
      assert.equals(404, res.status, "status for " .. path)
      assert.same({ message = "no Route matched with those values" },
                  res:json())
    end
  end

  describe("no match", function()
    it("answers 404 with Kong's JSON body and gateway headers", function()
      for _ = 1, 2 do
        local res = get("/nothing/here", "nomatch.test")
        assert.equals(404, res.status)
        assert.same({ message = "no Route matched with those values" },
                    res:json())
        assert.matches("^application/json", res.headers["content-type"])
        assert.equals(tostring(#res.body), res.headers["content-length"])
        assert.matches("^moongate/", res.headers["server"] or "")
        assert.matches("^%d+$", res.headers["x-kong-response-latency"] or "")
        assert.is_nil(res.headers["via"])
      end
    end)

    it("keeps the connection usable after a 404", function()
      local c = assert(H.connect(gw.port))
      for _ = 1, 2 do
        local res = assert(c:request { path = "/nothing", host = "x.test" })
        assert.equals(404, res.status)
        res = assert(c:request { path = "/api/ok" })
        assert.equals(200, res.status)
      end
      c:close()
    end)
  end)

  describe("hosts", function()
    it("matches an exact host", function()
      expect_route("host", "/anything", "example.com")
    end)

    it("matches a host sent with a port", function()
      expect_route("host", "/anything", "example.com:" .. gw.port)
    end)

    it("matches hosts case-insensitively", function()
      expect_route("host", "/anything", "Example.COM")
    end)

    it("does not match another host", function()
      expect_404("/anything", "example.org")
      expect_404("/anything", "sub.example.com")
    end)

    it("matches a leading wildcard", function()
      expect_route("wild", "/x", "foo.wild.test")
      expect_route("wild", "/x", "a.b.wild.test")
    end)

    it("does not match the bare domain of a leading wildcard", function()
      expect_404("/x", "wild.test")
    end)

    it("matches a trailing wildcard", function()
      expect_route("wildsuffix", "/x", "suffix.org")
      expect_route("wildsuffix", "/x", "suffix.co.uk")
      expect_404("/x", "presuffix.org")
    end)
  end)

  describe("hosts with a port", function()
    it("matches the Host's port, or the listener's when none is sent", function()
      expect_route("porthost", "/x", "porthost.test:" .. gw.port)
      expect_route("porthost", "/x", "porthost.test")
      expect_404("/x", "porthost.test:1")
    end)
  end)

  describe("methods", function()
    it("matches listed methods only", function()
      expect_route("methods", "/methods", nil, { method = "POST", body = "" })
      expect_route("methods", "/methods", nil, { method = "PUT", body = "x" })
      expect_404("/methods", nil, { method = "GET" })
      expect_404("/methods", nil, { method = "DELETE" })
    end)
  end)

  describe("headers", function()
    it("prefers the route whose header matches", function()
      expect_route("hdrv2", "/hdr", nil, { headers = { ["X-Version"] = "v2" } })
    end)

    it("matches a regex header value (~*) case-insensitively", function()
      expect_route("hdrre", "/hre", nil, { headers = { ["X-Env"] = "prod-42" } })
      expect_route("hdrre", "/hre", nil, { headers = { ["X-Env"] = "PROD-7" } })
      expect_404("/hre", nil, { headers = { ["X-Env"] = "prod-x" } })
    end)

    it("needs every header of the route, any of its values", function()
      expect_route("hdrtwo", "/hre", nil, { headers = {
        ["X-Env"] = "staging", ["X-Team"] = "b" } })
      expect_404("/hre", nil, { headers = { ["X-Env"] = "staging" } })
      expect_404("/hre", nil, { headers = {
        ["X-Env"] = "staging", ["X-Team"] = "c" } })
    end)

    it("falls back to the route without headers", function()
      expect_route("hdrany", "/hdr", nil, { headers = { ["X-Version"] = "v1" } })
      expect_route("hdrany", "/hdr")
    end)
  end)

  describe("paths", function()
    it("matches a regex path and anchors it", function()
      expect_route("regex", "/users/123")
      expect_404("/users/abc")
      expect_404("/users/123/more")
    end)

    it("evaluates regex paths before prefix paths", function()
      expect_route("mixedregex", "/mixed/42")
      expect_route("mixedprefix", "/mixed/abc")
      expect_route("mixedprefix", "/mixed")
    end)

    it("orders regex paths by regex_priority", function()
      expect_route("rphigh", "/rp/special")
      expect_route("rplow", "/rp/other")
      -- the catch-all has the higher priority here, so it wins
      expect_route("rqcatch", "/rq/special")
    end)

    it("picks the longest prefix", function()
      expect_route("apiv1", "/api/v1/users")
      expect_route("apiv1", "/api/v1")
      expect_route("api", "/api/v2/users")
      expect_route("api", "/api")
    end)

    it("treats a prefix as a plain string prefix", function()
      expect_route("api", "/apix")
    end)

    it("prefers the route with more matching attributes", function()
      expect_route("both", "/both/x", "both.test")
      expect_route("pathonly", "/both/x", "other.test")
    end)

    it("matches regex paths without the query string", function()
      expect_route("regex", "/users/123?x=1")
    end)

    it("matches the normalized path", function()
      expect_route("apiv1", "/api/./v1/x")
      expect_route("apiv1", "/api/%76%31/x")          -- %76%31 = "v1"
      expect_route("api", "/api/v1/../v2/x")
      expect_route("apiv1", "//api//v1/x")
    end)

    it("keeps the query string", function()
      for _ = 1, 2 do
        local res, echo = get("/api/v1/q?a=1&b=two%20words")
        assert.equals(200, res.status)
        assert.equals("/svc/apiv1/q", echo.path)
        assert.equals("a=1&b=two%20words", echo.query)
      end
    end)
  end)

  describe("strip_path", function()
    it("strips the matched prefix by default", function()
      for _ = 1, 2 do
        local _, echo = get("/api/v1/users")
        assert.equals("/svc/apiv1/users", echo.path)
      end
    end)

    it("tells the upstream the stripped prefix (X-Forwarded-Prefix)", function()
      for _ = 1, 2 do
        local _, echo = get("/api/v1/users")
        assert.equals("/api/v1", H.upstream_header(echo, "x-forwarded-prefix"))
        _, echo = get("/nostrip/users")
        assert.is_nil(H.upstream_header(echo, "x-forwarded-prefix"))
      end
    end)

    it("keeps the path with strip_path = false", function()
      for _ = 1, 2 do
        local _, echo = get("/nostrip/users")
        assert.equals("/svc/nostrip/nostrip/users", echo.path)
      end
    end)

    it("sends / for a service without a path when all was stripped", function()
      for _ = 1, 2 do
        local _, echo = get("/rootsvc")
        assert.equals("/", echo.path)
        _, echo = get("/rootsvc/a/b")
        assert.equals("/a/b", echo.path)
      end
    end)
  end)

  describe("path_handling (Kong's table)", function()
    local cases = {
      { "/fv0req",   "/s/fv0req" },
      { "/fv1req",   "/sfv1req" },
      { "/tv0req",   "/s/req" },
      { "/tv1req",   "/sreq" },
      { "/fv0/req",  "/s/fv0/req" },
      { "/fv1/req",  "/sfv1/req" },
      { "/tv0/req",  "/s/req" },
      { "/tv1/req",  "/sreq" },
      { "/tdefreq",  "/s/req" },
    }
    for _, c in ipairs(cases) do
      it(c[1] .. " -> " .. c[2], function()
        for _ = 1, 2 do
          local res, echo = get(c[1])
          assert.equals(200, res.status)
          assert.equals(c[2], echo.path)
        end
      end)
    end
  end)

  describe("preserve_host", function()
    it("sends the client's Host with preserve_host", function()
      for _ = 1, 2 do
        local _, echo = get("/p", "preserve.test")
        assert.equals("preserve.test", H.upstream_header(echo, "host"))
        _, echo = get("/p", "preserve.test:" .. gw.port)
        assert.equals("preserve.test:" .. gw.port,
                      H.upstream_header(echo, "host"))
      end
    end)

    it("sends the service's host:port without it", function()
      for _ = 1, 2 do
        local _, echo = get("/p", "nopreserve.test")
        assert.equals("127.0.0.1:" .. mock.port,
                      H.upstream_header(echo, "host"))
      end
    end)
  end)

  describe("protocols", function()
    it("answers 426 on plain HTTP for an https-only route", function()
      for _ = 1, 2 do
        local res = get("/https-only")
        assert.equals(426, res.status)
        assert.same({ message = "Please use HTTPS protocol" }, res:json())
      end
    end)
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw)
  end)
end)
