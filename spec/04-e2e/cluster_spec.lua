-- End-to-end: hybrid mode (Kong's control plane / data planes, shared
-- mTLS).  One control plane and two data planes on loopback: Admin API
-- writes on the control plane reach both data planes within seconds;
-- the data planes keep serving their cached config when the control
-- plane is gone, across a restart too; the cluster listener refuses a
-- client with another certificate; the control plane lists its data
-- planes.  See docs/clustering.md.

local H = require "moongate"

local admin_req = H.admin

-- a self-signed P-256 certificate and key under dir, named name.crt/.key
local function make_cert(dir, name, cn)
  local crt, key = dir .. "/" .. name .. ".crt", dir .. "/" .. name .. ".key"
  local rc, out = H.run(string.format(
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes " ..
    "-days 2 -subj /CN=%s -keyout %s -out %s", cn, H.shell_quote(key),
    H.shell_quote(crt)))
  assert(rc == 0, out)
  return crt, key
end

-- wait until fn() is true; the seconds it took, or nil
local function eventually(fn, timeout)
  local t0 = H.now()
  while H.now() - t0 < (timeout or 5) do
    if fn() then
      return H.now() - t0
    end
    H.sleep(0.05)
  end
  return nil
end

-- GET path twice (repeat_each(2)); true when both answer status
local function serves(gw, path, status)
  for _ = 1, 2 do
    local res = H.request(gw.port, { path = path })
    if not res or res.status ~= status then
      return false
    end
  end
  return true
end

-- the raw answer of the cluster listener to a client presenting crt/key
local function cluster_client(port, crt, key)
  local cmd = string.format(
    "printf 'GET /v1/config?version=-1 HTTP/1.1\\r\\nHost: cp\\r\\n" ..
    "Connection: close\\r\\n\\r\\n' | openssl s_client -quiet " ..
    "-connect 127.0.0.1:%d%s", port,
    crt and (" -cert " .. H.shell_quote(crt) .. " -key " ..
             H.shell_quote(key)) or "")
  local _, out = H.run("sh -c " .. H.shell_quote(cmd), { timeout = 5 })
  return out
end

describe("hybrid mode (control plane / data planes)", function()
  local mock, dir, crt, key, cp, cport, caport, dps = nil, nil, nil, nil
  local dp_admin = {}

  local function start_cp(prefix)
    local gw = H.start_gateway {
      name = "cp", prefix = prefix,
      conf = {
        role = "control_plane",
        database = "lmdb",
        admin_listen = "127.0.0.1:" .. caport,
        cluster_listen = "127.0.0.1:" .. cport,
        cluster_cert = crt,
        cluster_cert_key = key,
      },
    }
    assert(H.wait_port(caport, 10, gw.pid), "CP admin port")
    assert(H.wait_port(cport, 10, gw.pid), "CP cluster port")
    return gw
  end

  local function start_dp(i, prefix)
    dp_admin[i] = dp_admin[i] or H.free_port()
    local gw = H.start_gateway {
      name = "dp" .. i, prefix = prefix,
      conf = {
        role = "data_plane",
        database = "off",
        admin_listen = "127.0.0.1:" .. dp_admin[i],
        cluster_control_plane = "127.0.0.1:" .. cport,
        cluster_cert = crt,
        cluster_cert_key = key,
        worker_processes = 2,
      },
    }
    gw.admin_port = dp_admin[i]
    assert(H.wait_port(dp_admin[i], 10, gw.pid), "DP admin port")
    return gw
  end

  local function dp_status(i)
    local _, body = admin_req(dp_admin[i], "GET", "/status")
    return body
  end

  lazy_setup(function()
    mock = H.start_mockup(1)
    dir = H.new_prefix("cluster-certs")
    crt, key = make_cert(dir, "cluster", "moongate_cluster")
    cport, caport = H.free_port(), H.free_port()
    cp = start_cp()
    dps = { start_dp(1), start_dp(2) }
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  it("refuses a data plane with a database", function()
    local prefix = H.new_prefix("dp-db")
    local conf = H.default_conf(H.free_port(), prefix)
    conf.role = "data_plane"
    conf.database = "lmdb"
    conf.cluster_control_plane = "127.0.0.1:" .. cport
    conf.cluster_cert = crt
    conf.cluster_cert_key = key
    local path = H.write_conf(prefix .. "/moongate.conf", conf)
    local rc, out = H.moongate({ "start", "-p", prefix, "-c", path },
                               { timeout = 10 })
    assert.is_not.equals(0, rc)
    assert.matches("only in-memory storage can be used when role = " ..
                   "\"data_plane\"", out, 1, true)
  end)

  it("a service and a route created on the CP reach both DPs", function()
    local res = admin_req(caport, "POST", "/services",
                          { name = "echo", url = mock:url(1, "/") })
    assert.equals(201, res.status)
    res = admin_req(caport, "POST", "/services/echo/routes",
                    { name = "r1", paths = { "/cluster" } })
    assert.equals(201, res.status)
    for i, dp in ipairs(dps) do
      local took = eventually(function()
        return serves(dp, "/cluster/x", 200)
      end, 5)
      assert.truthy(took, "data plane " .. i .. " did not get the route")
    end
    -- the CP itself proxies too (a control plane is a full node)
    assert.truthy(eventually(function()
      return serves(cp, "/cluster/x", 200)
    end, 3))
  end)

  it("a changed route reaches both DPs", function()
    local res = admin_req(caport, "PATCH", "/routes/r1",
                          { paths = { "/changed" } })
    assert.equals(200, res.status)
    for i, dp in ipairs(dps) do
      assert.truthy(eventually(function()
        return serves(dp, "/changed/y", 200) and serves(dp, "/cluster/x", 404)
      end, 5), "data plane " .. i .. " did not get the change")
    end
  end)

  it("DP /status says connected, with the config hash", function()
    local st = dp_status(1)
    assert.is_true(st.clustering.control_plane.connected)
    assert.is_number(st.clustering.control_plane.last_seen)
    assert.matches("^%x+$", st.configuration_hash)
    assert.equals(st.configuration_hash, st.clustering.config_hash)
  end)

  it("a DP's Admin API is read-only", function()
    local res = admin_req(dp_admin[1], "GET", "/routes/r1")
    assert.equals(200, res.status)
    res = admin_req(dp_admin[1], "POST", "/services",
                    { name = "x", url = "http://127.0.0.1:1/" })
    assert.equals(405, res.status)
    res = admin_req(dp_admin[1], "POST", "/config",
                    { _format_version = "3.0" })
    assert.equals(405, res.status)
  end)

  it("GET /clustering/data-planes on the CP lists both DPs", function()
    local res, body = admin_req(caport, "GET", "/clustering/data-planes")
    assert.equals(200, res.status)
    assert.equals(2, #body.data)
    local hosts = {}
    for _, dp in ipairs(body.data) do
      assert.equals("127.0.0.1", dp.ip)
      assert.is_number(dp.last_seen)
      assert.is_string(dp.id)
      hosts[#hosts + 1] = dp.hostname
    end
    assert.equals(2, #hosts)
    local sres, sbody = admin_req(caport, "GET", "/clustering/status")
    assert.equals(200, sres.status)
    assert.truthy(sbody[body.data[1].id])
  end)

  it("the cluster listener refuses other certificates and no certificate",
     function()
    local ok_out = cluster_client(cport, crt, key)
    assert.matches("HTTP/1.1 200", ok_out, 1, true)
    local ocrt, okey = make_cert(dir, "other", "moongate_cluster")
    local bad = cluster_client(cport, ocrt, okey)
    assert.is_nil(bad:find("HTTP/1.1", 1, true))
    local none = cluster_client(cport)
    assert.is_nil(none:find("HTTP/1.1", 1, true))
    -- the Admin API port does not serve /v1/config
    local res = admin_req(caport, "GET", "/v1/config?version=-1")
    assert.equals(404, res.status)
  end)

  it("with the CP stopped, DPs keep serving and say disconnected", function()
    cp:stop()
    for i, dp in ipairs(dps) do
      assert.truthy(eventually(function()
        local st = dp_status(i)
        return st.clustering.control_plane.connected == false
      end, 5), "data plane " .. i .. " still says connected")
      assert.truthy(serves(dp, "/changed/y", 200))
    end
  end)

  it("a DP restarted while the CP is down serves its cached config",
     function()
    local prefix = dps[1].prefix
    dps[1]:stop()
    dps[1] = start_dp(1, prefix)
    assert.truthy(eventually(function()
      return serves(dps[1], "/changed/y", 200)
    end, 5))
    local st = dp_status(1)
    assert.is_false(st.clustering.control_plane.connected)
  end)

  it("DPs reconnect when the CP comes back", function()
    cp = start_cp(cp.prefix)
    for i = 1, 2 do
      assert.truthy(eventually(function()
        return dp_status(i).clustering.control_plane.connected
      end, 15), "data plane " .. i .. " did not reconnect")
    end
    local res = admin_req(caport, "POST", "/services/echo/routes",
                          { name = "r2", paths = { "/again" } })
    assert.equals(201, res.status)
    for _, dp in ipairs(dps) do
      assert.truthy(eventually(function()
        return serves(dp, "/again/z", 200)
      end, 5))
    end
  end)

  it("logs no unexpected errors", function()
    H.assert_no_error_log(cp)
    for _, dp in ipairs(dps) do
      H.assert_no_error_log(dp)
    end
  end)
end)
