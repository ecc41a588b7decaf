-- End-to-end: TLS termination (certificates chosen by SNI, the generated
-- default certificate, ssl_cert, TLS 1.2, ALPN, session resumption across
-- workers, plain HTTP and garbage on the TLS port, https-only routes,
-- routes by SNI) and TLS to upstreams (verification against the system
-- bundle or ca_certificates, tls_verify, tls_verify_depth, the upstream
-- name check through SNI, client certificates, keep-alive pools that never
-- mix TLS and plain connections).
--
-- Certificates are made by the test with openssl(1); clients are curl(1)
-- and `openssl s_client` (no luasec), or a second gateway.

local H = require "moongate"

local MSG_502 = "An invalid response was received from the upstream server"
local MSG_PLAIN = "The plain HTTP request was sent to HTTPS port"

local CA_ID      = "6e0f4c0a-0c6e-4d7a-9a51-000000000001"
local OTHER_CA_ID = "6e0f4c0a-0c6e-4d7a-9a51-000000000002"
local CLIENT_ID  = "6e0f4c0a-0c6e-4d7a-9a51-000000000003"
local A_ID       = "6e0f4c0a-0c6e-4d7a-9a51-000000000004"
local WILD_ID    = "6e0f4c0a-0c6e-4d7a-9a51-000000000005"
local ROGUE_ID   = "6e0f4c0a-0c6e-4d7a-9a51-000000000006"

-- CN of a subject line as s_client prints it ("CN = a.example.com")
local function cn(subject)
  return subject and subject:match("CN%s*=%s*([^,/]+)$")
end

-- A fresh set of certificates (H.cleanup() removes them with the other
-- prefixes, so each describe makes its own).
local function make_certs()
  local d = H.new_prefix("certs")
  local ca = H.make_ca(d, "ca", { cn = "Moongate Test CA" })
  local other = H.make_ca(d, "otherca", { cn = "Another Test CA" })
  local inter = H.make_cert(d, "inter", ca, { cn = "Moongate Test Intermediate",
                                              ca = true })
  return {
    ca = ca, other_ca = other, inter = inter,
    a = H.make_cert(d, "a", ca, { san = "DNS:a.example.com" }),
    wild = H.make_cert(d, "wild", ca, { san = "DNS:*.example.com" }),
    ip = H.make_cert(d, "ip", ca, { cn = "ip-default",
                                    san = "IP:127.0.0.1,DNS:localhost" }),
    other = H.make_cert(d, "other", ca, { san = "DNS:other.test" }),
    a_rsa = H.make_cert(d, "a_rsa", ca, { san = "DNS:a.example.com", rsa = true }),
    prefix = H.make_cert(d, "prefix", ca, { san = "DNS:api.other.org" }),
    chain = H.make_cert(d, "chain", inter, { san = "DNS:chain.example.com",
                                             chain = true }),
    client = H.make_cert(d, "client", ca, { cn = "client.test" }),
    rogue_client = H.make_cert(d, "rogue", other, { cn = "rogue.test" }),
  }
end

describe("e2e TLS termination", function()
  local mock, gw, c

  lazy_setup(function()
    c = make_certs()
    mock = H.start_mockup(3)
    gw = H.start_tls_gateway { name = "tls", conf = { worker_processes = 2 },
      config = {
        _format_version = "3.0",
        certificates = {
          { id = A_ID, cert = c.a.cert, key = c.a.key_pem,
            cert_alt = c.a_rsa.cert, key_alt = c.a_rsa.key_pem,
            snis = { { name = "a.example.com" } } },
          { cert = c.prefix.cert, key = c.prefix.key_pem,
            snis = { { name = "api.other.*" } } },
          { id = WILD_ID, cert = c.wild.cert, key = c.wild.key_pem,
            snis = { { name = "*.example.com" } } },
        },
        services = {
          { name = "any", url = mock:url(1), routes = {
            { name = "any", paths = { "/" } } } },
          { name = "secure", url = mock:url(2), routes = {
            { name = "secure", protocols = { "https" },
              paths = { "/secure" } } } },
          { name = "bysni", url = mock:url(3), routes = {
            { name = "bysni", protocols = { "https" },
              snis = { "b.example.com" }, paths = { "/sni" } } } },
        },
      } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  describe("certificate selection", function()
    it("serves the certificate whose sni matches exactly", function()
      for _ = 1, 2 do
        local r = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
                                                 cafile = c.ca.crt })
        assert.is_true(r.ok, r.out)
        assert.equals("a.example.com", cn(r.subject), r.out)
        assert.equals(0, r.verify_code, r.out)
      end
    end)

    it("serves the wildcard certificate for one label under it", function()
      for _, name in ipairs { "b.example.com", "zz.example.com", "b.example.com" } do
        local r = H.tls_handshake(gw.ssl_port, { servername = name })
        assert.is_true(r.ok, r.out)
        assert.equals("*.example.com", cn(r.subject), name)
      end
    end)

    it("serves the certificate of a prefix wildcard (\"name.*\")", function()
      for _, name in ipairs { "api.other.org", "api.other.net", "api.other.org" } do
        local r = H.tls_handshake(gw.ssl_port, { servername = name })
        assert.is_true(r.ok, r.out)
        assert.equals("api.other.org", cn(r.subject), name)
      end
      -- the wildcard stands for the last label only
      local r = H.tls_handshake(gw.ssl_port, { servername = "api.other.co.uk" })
      assert.not_equals("api.other.org", cn(r.subject))
    end)

    it("serves cert_alt to a client that only takes its key type", function()
      for _ = 1, 2 do
        local ec = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
          args = "-cipher ECDHE-ECDSA-AES128-GCM-SHA256", cafile = c.ca.crt })
        assert.is_true(ec.ok, ec.out)
        assert.matches("ECDSA", ec.cipher)
        assert.equals(0, ec.verify_code)
        local rsa = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
          args = "-cipher ECDHE-RSA-AES128-GCM-SHA256", cafile = c.ca.crt })
        assert.is_true(rsa.ok, rsa.out)
        assert.equals("ECDHE-RSA-AES128-GCM-SHA256", rsa.cipher)
        assert.equals("a.example.com", cn(rsa.subject))
        assert.equals(0, rsa.verify_code, rsa.out)
      end
    end)

    it("matches the sni case-insensitively", function()
      for _ = 1, 2 do
        local r = H.tls_handshake(gw.ssl_port, { servername = "A.Example.COM" })
        assert.equals("a.example.com", cn(r.subject), r.out)
      end
    end)

    it("serves the default certificate without a match or without SNI", function()
      local crt = gw.prefix .. "/ssl/moongate-default.crt"
      assert.truthy(H.read_file(crt), "no default certificate under the prefix")
      assert.truthy(H.read_file(gw.prefix .. "/ssl/moongate-default.key"))
      local _, subj = H.run("openssl x509 -noout -subject -in " .. H.shell_quote(crt))
      local want = cn(subj:match("subject=%s*([^\n]*)"))
      assert.is_string(want, subj)
      for _, name in ipairs { "x.y.example.com", "example.com", "other.test",
                              false, "x.y.example.com" } do
        local r = H.tls_handshake(gw.ssl_port, { servername = name or nil })
        assert.is_true(r.ok, r.out)
        assert.equals(want, cn(r.subject), tostring(name))
        assert.not_equals("*.example.com", cn(r.subject))
      end
    end)

    it("lets a client verify the chosen certificate", function()
      for _, host in ipairs { "a.example.com", "b.example.com" } do
        for _ = 1, 2 do
          local res, err = H.https_request(gw.ssl_port, { host = host,
                                                          path = "/echo",
                                                          cacert = c.ca.crt })
          assert(res, err)
          assert.equals(200, res.status)
          assert.equals(0, res.ssl_verify_result)
        end
      end
    end)
  end)

  describe("protocol", function()
    it("negotiates TLS 1.2 with an AEAD suite and ALPN http/1.1", function()
      for _, alpn in ipairs { "http/1.1", "h2,http/1.1", "http/1.1" } do
        local r = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
                                                 alpn = alpn })
        assert.is_true(r.ok, r.out)
        assert.equals("TLSv1.2", r.protocol)
        local aead = (r.cipher or ""):find("GCM") or (r.cipher or ""):find("CHACHA20")
        assert.truthy(aead, "cipher " .. tostring(r.cipher))
        assert.equals("http/1.1", r.alpn, r.out)
      end
    end)

    it("refuses a TLS 1.3-only client and keeps serving", function()
      local workers = gw:worker_pids()
      for _ = 1, 2 do
        local r = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
                                                 args = "-tls1_3" })
        assert.is_false(r.ok, r.out)
      end
      local res = assert(H.https_request(gw.ssl_port, { host = "a.example.com",
                                                        path = "/fast" }))
      assert.equals(200, res.status)
      assert.same(workers, gw:worker_pids())
    end)

    it("resumes sessions, whichever worker accepts", function()
      local sess = gw.prefix .. "/sess.pem"
      local first = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
                                                   sess_out = sess })
      assert.is_true(first.ok, first.out)
      assert.is_false(first.reused)
      -- two workers share the port (reuseport): eight connections land on
      -- both of them
      for i = 1, 8 do
        local r = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
                                                 sess_in = sess })
        assert.is_true(r.ok, r.out)
        assert.is_true(r.reused, "handshake " .. i .. " was not resumed:\n" .. r.out)
      end
    end)
  end)

  describe("proxying over TLS", function()
    it("proxies and tells the upstream the scheme was https", function()
      for _ = 1, 2 do
        local res, err = H.https_request(gw.ssl_port, { host = "a.example.com",
                                                        path = "/echo/x?y=1" })
        assert(res, err)
        assert.equals(200, res.status)
        assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
        local e = res:json()
        assert.equals("/echo/x?y=1", e.uri)
        assert.equals("https", H.upstream_header(e, "x-forwarded-proto"))
        assert.equals(tostring(gw.ssl_port), H.upstream_header(e, "x-forwarded-port"))
        assert.equals("a.example.com", H.upstream_header(e, "x-forwarded-host"))
      end
    end)

    it("keeps a TLS client connection alive across requests", function()
      for _ = 1, 2 do
        local res, err = H.https_request(gw.ssl_port, { host = "a.example.com",
                                                        path = "/fast", times = 3 })
        assert(res, err)
        assert.equals(200, res.status)
        -- one connection for the three transfers
        assert.equals(3, #res.transfers, res.out)
        assert.same({ 1, 0, 0 }, { res.transfers[1].connects,
                                   res.transfers[2].connects,
                                   res.transfers[3].connects })
      end
    end)

    it("carries large bodies both ways", function()
      for _ = 1, 2 do
        local res, err = H.https_request(gw.ssl_port, { host = "a.example.com",
                                                        path = "/bytes/1500000" })
        assert(res, err)
        assert.equals(200, res.status)
        assert.equals(1500000, #res.body)
        assert.equals(string.rep("abcdefghijklmnopqrstuvwxyz", 3), res.body:sub(1, 78))
        local body = string.rep("0123456789", 30000)
        res, err = H.https_request(gw.ssl_port, { host = "a.example.com",
                                                  method = "POST", path = "/echo",
                                                  body = body })
        assert(res, err)
        assert.equals(200, res.status)
        assert.equals(#body, res:json().body_len)
      end
    end)

    it("answers pipelined requests that arrive in one TLS record", function()
      local req = "GET /echo?n=%d HTTP/1.1\r\nHost: a.example.com\r\n\r\n"
      local three = req:format(1) .. req:format(2) .. req:format(3)
              .. "GET /fast HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"
      for _ = 1, 2 do
        local r = H.tls_handshake(gw.ssl_port, { servername = "a.example.com",
                                                 send = three, args = "-quiet" })
        local n = 0
        for _ in r.out:gmatch("HTTP/1%.1 200 OK") do n = n + 1 end
        assert.equals(4, n, r.out)
        assert.truthy(r.out:find('"uri":"/echo?n=1"', 1, true))
        assert.truthy(r.out:find('"uri":"/echo?n=3"', 1, true))
        assert.truthy(r.out:find("hello\n", 1, true))
      end
    end)

    it("does not wait for a client stuck in its handshake", function()
      -- six clients stop mid-ClientHello (both workers get some)
      local stuck = {}
      for i = 1, 6 do
        stuck[i] = assert(H.connect(gw.ssl_port))
        stuck[i]:send("\22\3\1\2\0\1\0\1\252\3\3")
      end
      for _ = 1, 2 do
        local res, err = H.https_request(gw.ssl_port, { host = "a.example.com",
                                                        path = "/fast", timeout = 5 })
        assert(res, err)
        assert.equals(200, res.status)
      end
      for _, c in ipairs(stuck) do c:close() end
    end)

    it("completes a burst of handshakes, a few per loop turn", function()
      -- 24 clients at once: more handshake work than one loop turn may
      -- spend (mg_http_conn_handshake); the rest wait for later turns
      local cmd = "for i in $(seq 24); do curl -sk -o /dev/null -w '%{http_code}\\n' " ..
        "--max-time 20 https://127.0.0.1:" .. gw.ssl_port .. "/fast & done; wait"
      local _, out = H.run("sh -c " .. H.shell_quote(cmd), { timeout = 30 })
      local ok = 0
      for code in out:gmatch("%d+") do
        assert.equals("200", code)
        ok = ok + 1
      end
      assert.equals(24, ok, out)
    end)

    it("answers 426 on plain HTTP for an https-only route", function()
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/secure/echo" }))
        assert.equals(426, res.status)
        assert.same({ message = "Please use HTTPS protocol" }, res:json())
        res = assert(H.https_request(gw.ssl_port, { host = "a.example.com",
                                                    path = "/secure/echo" }))
        assert.equals(200, res.status)
        assert.equals(tostring(mock.ports[2]), res.headers["x-upstream-port"])
      end
    end)

    it("routes by SNI", function()
      for _ = 1, 2 do
        local res = assert(H.https_request(gw.ssl_port, { host = "b.example.com",
                                                          path = "/sni/echo" }))
        assert.equals(200, res.status)
        assert.equals(tostring(mock.ports[3]), res.headers["x-upstream-port"])
        -- another SNI misses the route and falls to "/"
        res = assert(H.https_request(gw.ssl_port, { host = "a.example.com",
                                                    path = "/sni/echo" }))
        assert.equals(200, res.status)
        assert.equals(tostring(mock.ports[1]), res.headers["x-upstream-port"])
        assert.equals("/sni/echo", res:json().uri)
      end
    end)
  end)

  describe("bad clients", function()
    it("answers plain HTTP on the TLS port with 400 and closes", function()
      for _ = 1, 2 do
        local conn = assert(H.connect(gw.ssl_port))
        local res, err = conn:request { path = "/echo" }
        assert(res, err)
        assert.equals(400, res.status)
        assert.same({ message = MSG_PLAIN }, res:json())
        assert.is_true(conn:wait_closed(3))
        conn:close()
      end
    end)

    it("closes on handshake garbage without losing a worker", function()
      local workers = gw:worker_pids()
      local junk = {
        string.rep("\22\3\1\0\5garbage", 40),
        "\22\3\1\0\200" .. string.rep("\1", 200),
        "\22\3\3\255\255" .. string.rep("\0", 100),      -- oversized record
        "\128\1\0\0\0\0\0\0\0\0\0\0",                   -- SSLv2-style hello
        string.rep("\0", 5000),
      }
      for round = 1, 2 do
        for i, bytes in ipairs(junk) do
          local conn = assert(H.connect(gw.ssl_port))
          conn:send(bytes)
          local closed = conn:wait_closed(5)
          assert.is_true(closed, "junk " .. i .. " round " .. round
                         .. ": connection not closed")
          conn:close()
        end
        -- a client that connects and leaves mid-handshake
        local conn = assert(H.connect(gw.ssl_port))
        conn:send("\22\3\1")
        conn:close()
      end
      local res = assert(H.https_request(gw.ssl_port, { host = "a.example.com",
                                                        path = "/fast" }))
      assert.equals(200, res.status)
      assert.same(workers, gw:worker_pids())
      assert.is_true(gw:alive())
    end)
  end)

  it("leaves no unexpected error log lines", function()
    -- handshake failures are logged at info, not error
    H.assert_no_error_log(gw)
  end)
end)

describe("e2e TLS default certificates", function()
  local mock, c

  lazy_setup(function()
    c = make_certs()
    mock = H.start_mockup(1)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function cfg()
    return { _format_version = "3.0", services = { {
      name = "s", url = mock:url(1), routes = { { paths = { "/" } } } } } }
  end

  it("generates the default certificate once and reuses it at the next start", function()
    local prefix = H.new_prefix("tlsdefault")
    local gw = H.start_tls_gateway { name = "tlsdef", prefix = prefix, config = cfg() }
    local crt = prefix .. "/ssl/moongate-default.crt"
    local key = prefix .. "/ssl/moongate-default.key"
    assert.truthy(H.read_file(crt))
    assert.truthy(H.read_file(key))
    local fp = H.cert_fingerprint(crt)
    local r = H.tls_handshake(gw.ssl_port, { args = "-showcerts" })
    assert.is_true(r.ok, r.out)
    local served = H.write_file(prefix .. "/served.pem",
      r.out:match("(%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-)"))
    assert.equals(fp, H.cert_fingerprint(served))
    -- the key is private to the owner
    local _, mode = H.run("stat -c %a " .. H.shell_quote(key))
    assert.matches("^600", mode)
    assert.is_true(gw:stop())
    -- logged by the master before its error log is open (stderr)
    local said = gw:error_log() .. (H.read_file(gw.out) or "")
    assert.matches("generated the default certificate", said)
    local out_len = H.file_size(gw.out)

    local mark = H.file_size(gw.error_log_path)
    local gw2 = H.start_tls_gateway { name = "tlsdef", prefix = prefix, config = cfg() }
    assert.equals(fp, H.cert_fingerprint(crt))
    r = H.tls_handshake(gw2.ssl_port, { args = "-showcerts" })
    served = H.write_file(prefix .. "/served2.pem",
      r.out:match("(%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-)"))
    assert.equals(fp, H.cert_fingerprint(served))
    assert.is_false(gw2:log_has("generated the default certificate", mark))
    assert.is_nil((H.read_file(gw2.out) or ""):sub(out_len + 1)
                  :find("generated the default certificate", 1, true))
    local res = assert(H.https_request(gw2.ssl_port, { path = "/fast" }))
    assert.equals(200, res.status)
    H.assert_no_error_log(gw2)
    gw2:stop()
  end)

  it("serves ssl_cert / ssl_cert_key as the default certificate", function()
    local gw = H.start_tls_gateway { name = "sslcert", config = cfg(), conf = {
      ssl_cert = c.other.crt, ssl_cert_key = c.other.key } }
    for _, name in ipairs { "other.test", "unknown.test", false, "other.test" } do
      local r = H.tls_handshake(gw.ssl_port, { servername = name or nil,
                                               cafile = c.ca.crt })
      assert.is_true(r.ok, r.out)
      assert.equals("other.test", cn(r.subject))
    end
    local res, err = H.https_request(gw.ssl_port, { host = "other.test",
                                                    path = "/fast",
                                                    cacert = c.ca.crt })
    assert(res, err)
    assert.equals(200, res.status)
    -- nothing generated when ssl_cert is set
    assert.is_nil(H.read_file(gw.prefix .. "/ssl/moongate-default.crt"))
    H.assert_no_error_log(gw)
    gw:stop()
  end)
end)

describe("e2e upstream TLS", function()
  local mock, backend, mtls, gw, c

  lazy_setup(function()
    c = make_certs()
    mock = H.start_mockup(1)
    -- the TLS upstream: a second gateway terminating TLS in front of the
    -- mock; its default certificate names 127.0.0.1 (IP SAN)
    backend = H.start_tls_gateway { name = "tlsbackend",
      conf = { ssl_cert = c.ip.crt, ssl_cert_key = c.ip.key },
      config = {
        _format_version = "3.0",
        certificates = {
          { cert = c.a.cert, key = c.a.key_pem, snis = { "a.example.com" } },
          { cert = c.chain.cert, key = c.chain.key_pem,
            snis = { "chain.example.com" } },
        },
        services = { { name = "mock", url = mock:url(1),
                       routes = { { paths = { "/" } } } } },
      } }
    -- a TLS upstream that wants a client certificate signed by the CA
    mtls = H.start_openssl_server { cert = c.ip, verify_ca = c.ca }

    local b = "127.0.0.1:" .. backend.ssl_port
    local up = function(name, host_header)
      return { name = name, host_header = host_header,
               targets = { { target = b } } }
    end
    local svc = function(name, url, extra)
      local s = { name = name, url = url, retries = 0, routes = {
        { name = name, paths = { "/" .. name } } } }
      for k, v in pairs(extra or {}) do s[k] = v end
      return s
    end
    local hosts = H.write_file(H.new_prefix("hosts") .. "/hosts",
      "127.0.0.1 localhost\n127.0.0.1 a.example.com chain.example.com\n")
    gw = H.start_gateway { name = "uptls", conf = { dns_hostsfile = hosts }, config = {
      _format_version = "3.0",
      ca_certificates = {
        { id = CA_ID, cert = c.ca.cert },
        { id = OTHER_CA_ID, cert = c.other_ca.cert },
      },
      certificates = {
        { id = CLIENT_ID, cert = c.client.cert, key = c.client.key_pem },
        { id = ROGUE_ID, cert = c.rogue_client.cert, key = c.rogue_client.key_pem },
      },
      upstreams = {
        up("named-a", "a.example.com"),
        up("named-wrong", "wrong.example.org"),
        up("named-chain", "chain.example.com"),
      },
      services = {
        svc("trusted", "https://" .. b, { ca_certificates = { CA_ID } }),
        svc("sysbundle", "https://" .. b),
        svc("verifyon", "https://" .. b, { tls_verify = true }),
        svc("noverify", "https://" .. b, { tls_verify = false }),
        svc("wrongca", "https://" .. b, { ca_certificates = { OTHER_CA_ID } }),
        svc("bothca", "https://" .. b, { ca_certificates = { OTHER_CA_ID, CA_ID } }),
        svc("sni", "https://named-a", { ca_certificates = { CA_ID } }),
        svc("mismatch", "https://named-wrong", { ca_certificates = { CA_ID } }),
        svc("depth0", "https://named-chain", { ca_certificates = { CA_ID },
                                              tls_verify_depth = 0 }),
        svc("depth1", "https://named-chain", { ca_certificates = { CA_ID },
                                              tls_verify_depth = 1 }),
        svc("plainport", "http://" .. b),
        svc("byname", "https://a.example.com:" .. backend.ssl_port,
            { ca_certificates = { CA_ID } }),
        svc("preserve", "https://" .. b, { ca_certificates = { CA_ID },
                                          routes = { { name = "preserve",
                                            paths = { "/preserve" },
                                            preserve_host = true } } }),
        svc("mtls", "https://127.0.0.1:" .. mtls.port, {
          ca_certificates = { CA_ID }, client_certificate = { id = CLIENT_ID } }),
        svc("mtlsstr", "https://127.0.0.1:" .. mtls.port, {
          ca_certificates = { CA_ID }, client_certificate = CLIENT_ID }),
        svc("mtlsnone", "https://127.0.0.1:" .. mtls.port, {
          ca_certificates = { CA_ID } }),
        svc("mtlsrogue", "https://127.0.0.1:" .. mtls.port, {
          ca_certificates = { CA_ID }, client_certificate = { id = ROGUE_ID } }),
      },
    } }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function get(path, conn)
    local res, err
    if conn then
      res, err = conn:request { path = path }
    else
      res, err = H.request(gw.port, { path = path }, { timeout = 10 })
    end
    assert(res, err)
    return res
  end

  local function assert_502(res)
    assert.equals(502, res.status, tostring(res.body))
    assert.same({ message = MSG_502 }, res:json())
  end

  it("verifies the upstream against the service's ca_certificates", function()
    for _, name in ipairs { "trusted", "bothca" } do
      for _ = 1, 2 do
        local res = get("/" .. name .. "/echo")
        assert.equals(200, res.status, name .. ": " .. tostring(res.body))
        assert.equals(tostring(mock.port), res.headers["x-upstream-port"])
        -- the backend saw a TLS client
        assert.equals("https", H.upstream_header(res:json(), "x-forwarded-proto"))
      end
    end
  end)

  it("verifies against the system bundle by default and fails with 502", function()
    for _, name in ipairs { "sysbundle", "verifyon" } do
      local mark = gw:log_mark()
      for _ = 1, 2 do
        assert_502(get("/" .. name .. "/echo"))
      end
      local log = gw:error_log_since(mark)
      assert.matches("%[error%][^\n]*service " .. name .. "[^\n]*verif", log)
    end
  end)

  it("does not verify with tls_verify = false", function()
    for _ = 1, 2 do
      local res = get("/noverify/echo")
      assert.equals(200, res.status)
      assert.equals(tostring(mock.port), res.headers["x-upstream-port"])
    end
  end)

  it("replaces the system bundle with ca_certificates (wrong CA: 502)", function()
    local mark = gw:log_mark()
    for _ = 1, 2 do
      assert_502(get("/wrongca/echo"))
    end
    assert.matches("%[error%][^\n]*service wrongca[^\n]*verif",
                   gw:error_log_since(mark))
  end)

  it("sends the Host as SNI and checks the certificate's name", function()
    for _ = 1, 2 do
      local res = get("/sni/echo")
      assert.equals(200, res.status, tostring(res.body))
      local e = res:json()
      assert.equals("a.example.com", H.upstream_header(e, "x-forwarded-host"))
    end
    local mark = gw:log_mark()
    for _ = 1, 2 do
      -- the backend has no certificate for that name: it sends its
      -- default one (127.0.0.1), which does not match
      assert_502(get("/mismatch/echo"))
    end
    assert.matches("%[error%][^\n]*service mismatch", gw:error_log_since(mark))
  end)

  it("sends the service's host name as SNI", function()
    for _ = 1, 2 do
      local res = get("/byname/echo")
      assert.equals(200, res.status, tostring(res.body))
      assert.equals("a.example.com", H.upstream_header(res:json(), "x-forwarded-host"))
    end
  end)

  it("sends a preserved client Host as SNI", function()
    local function via(host)
      return assert(H.request(gw.port, { path = "/preserve/echo", host = host }))
    end
    -- a Host the backend has no certificate for fails the name check,
    -- also after a connection verified for another name went to the pool
    assert.equals(502, via("nothere.example.net").status)
    for i = 1, 2 do
      local res = via("a.example.com")
      assert.equals(200, res.status, tostring(res.body))
      res = via("nothere.example.net")
      assert.equals(502, res.status, "round " .. i .. ": a keep-alive "
                    .. "connection verified for a.example.com carried a "
                    .. "request for nothere.example.net")
    end
  end)

  it("applies tls_verify_depth to the intermediates", function()
    for _ = 1, 2 do
      local res = get("/depth1/echo")
      assert.equals(200, res.status, tostring(res.body))
      assert_502(get("/depth0/echo"))
    end
  end)

  it("presents the client certificate the upstream asks for", function()
    for _, name in ipairs { "mtls", "mtlsstr" } do
      for _ = 1, 2 do
        local res = get("/" .. name .. "/")
        assert.equals(200, res.status, name .. ": " .. tostring(res.body))
        assert.matches("Subject: CN%s*=%s*client%.test", res.body)
      end
    end
  end)

  it("fails with 502 without a client certificate the upstream accepts", function()
    for _, name in ipairs { "mtlsnone", "mtlsrogue" } do
      local mark = gw:log_mark()
      for _ = 1, 2 do
        assert_502(get("/" .. name .. "/"))
      end
      assert.matches("%[error%][^\n]*service " .. name, gw:error_log_since(mark))
    end
  end)

  it("never hands a TLS connection to a plain service of the same host:port", function()
    -- plain HTTP to the backend's TLS port gets the backend's 400; if the
    -- plain service reused a pooled TLS connection it would get a 200
    local conn = assert(H.connect(gw.port, { timeout = 10 }))
    for _ = 1, 3 do
      for _, name in ipairs { "trusted", "plainport", "noverify", "plainport" } do
        local res = get("/" .. name .. "/echo", conn)
        if name == "plainport" then
          assert.equals(400, res.status, tostring(res.body))
          assert.same({ message = MSG_PLAIN }, res:json())
        else
          assert.equals(200, res.status, name .. ": " .. tostring(res.body))
          assert.equals(tostring(mock.port), res.headers["x-upstream-port"])
        end
      end
    end
    conn:close()
  end)

  it("reuses upstream TLS connections and carries large bodies", function()
    for _ = 1, 2 do
      local res = get("/trusted/bytes/2000000")
      assert.equals(200, res.status)
      assert.equals(2000000, #res.body)
      local body = string.rep("x", 300000)
      res = assert(H.request(gw.port, { method = "POST", path = "/trusted/echo",
                                        body = body }, { timeout = 10 }))
      assert.equals(200, res.status)
      assert.equals(#body, res:json().body_len)
    end
  end)

  it("leaves no unexpected error log lines", function()
    H.assert_no_error_log(gw, {
      "tls: [^\n]*upstream [^\n]*service [%w_-]+: ",
      "ssl handshake failed",
    })
    H.assert_no_error_log(backend)
  end)
end)
