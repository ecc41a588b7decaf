-- End-to-end: the declarative config (Kong `_format_version: "3.0"`) in
-- YAML and JSON, nested and flat forms, url shorthand and explicit fields,
-- references by name and by id, Kong's defaults.

local H = require "moongate"

describe("e2e declarative config", function()
  local mock

  lazy_setup(function()
    mock = H.start_mockup(2)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function get(gw, path, host)
    local res, err = H.request(gw.port, { path = path, host = host })
    assert(res, err)
    return res
  end

  local function expect_echo(gw, path, want_path, port, host)
    for _ = 1, 2 do
      local res = get(gw, path, host)
      assert.equals(200, res.status, path .. ": " .. tostring(res.body))
      assert.equals(want_path, res:json().path)
      if port then
        assert.equals(tostring(port), res.headers["x-upstream-port"])
      end
    end
  end

  it("loads nested YAML with url shorthand, upstreams and tags", function()
    local yaml = ([[
_format_version: "3.0"
_transform: true

services:
  - name: yaml-url
    url: http://127.0.0.1:%d/base
    tags: [team-a, e2e]
    routes:
      - name: yaml-url-route
        paths:
          - /yaml
  - name: yaml-fields
    protocol: http
    host: 127.0.0.1
    port: %d
    path: /fields
    connect_timeout: 2000
    read_timeout: 5000
    write_timeout: 5000
    retries: 1
    routes:
      - name: yaml-fields-route
        hosts: ["fields.test"]
        strip_path: false
        methods: [GET, POST]
  - name: yaml-up
    host: yaml-upstream
    routes:
      - paths: ["/up"]

upstreams:
  - name: yaml-upstream
    tags: [e2e]
    targets:
      - target: 127.0.0.1:%d
        weight: 100
]]):format(mock.ports[1], mock.ports[2], mock.ports[2])
    local gw = H.start_gateway { name = "cfg-yaml", config = yaml }
    assert.matches("%.yml$", gw.config_path)
    expect_echo(gw, "/yaml/x", "/base/x", mock.ports[1])
    expect_echo(gw, "/p", "/fields/p", mock.ports[2], "fields.test")
    expect_echo(gw, "/up/x", "/x", mock.ports[2])
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("loads flat JSON with references by name and by id", function()
    local sid = "5d7e4a3b-6c1f-4e4a-9a4e-0d1b2c3d4e5f"
    local gw = H.start_gateway { name = "cfg-flat", config = {
      _format_version = "3.0",
      services = {
        { name = "by-name", url = mock:url(1, "/named") },
        { id = sid, name = "by-id", url = mock:url(2, "/ided") },
      },
      routes = {
        { name = "r-name", service = "by-name", paths = { "/byname" } },
        { name = "r-id", service = { id = sid }, paths = { "/byid" } },
        { name = "r-obj", service = { name = "by-name" }, paths = { "/byobj" } },
      },
    } }
    assert.matches("%.json$", gw.config_path)
    expect_echo(gw, "/byname/a", "/named/a", mock.ports[1])
    expect_echo(gw, "/byid/b", "/ided/b", mock.ports[2])
    expect_echo(gw, "/byobj/c", "/named/c", mock.ports[1])
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("loads flat YAML targets that name their upstream", function()
    local yaml = ([[
_format_version: "3.0"
services:
  - name: flat-up
    host: flat-upstream
    port: 80
    routes:
      - paths: ["/flat"]
upstreams:
  - name: flat-upstream
targets:
  - upstream: flat-upstream
    target: 127.0.0.1:%d
]]):format(mock.ports[1])
    local gw = H.start_gateway { name = "cfg-flat-yaml", config = yaml }
    expect_echo(gw, "/flat/z", "/z", mock.ports[1])
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("loads a JSON file given as text", function()
    local json = H.json_encode { _format_version = "3.0", services = { {
      name = "j", url = mock:url(1), routes = { { paths = { "/json" } } } } } }
    local gw = H.start_gateway { name = "cfg-jsontext", config = json }
    assert.matches("%.json$", gw.config_path)
    expect_echo(gw, "/json/q", "/q", mock.ports[1])
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("applies Kong's defaults", function()
    -- route: strip_path true, preserve_host false, path_handling v0;
    -- service: path none, port 80 for http (here explicit)
    local gw = H.start_gateway { name = "cfg-defaults", config = {
      _format_version = "3.0", services = { {
        name = "d", host = "127.0.0.1", port = mock.ports[1],
        routes = { { paths = { "/def" } } } } } } }
    for _ = 1, 2 do
      local res = get(gw, "/def/x", "client.test")
      assert.equals(200, res.status)
      local e = res:json()
      assert.equals("/x", e.path)
      assert.equals("127.0.0.1:" .. mock.ports[1], H.upstream_header(e, "host"))
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("skips routes of a disabled service", function()
    local gw = H.start_gateway { name = "cfg-disabled", config = {
      _format_version = "3.0", services = {
        { name = "off", url = mock:url(1), enabled = false,
          routes = { { paths = { "/off" } } } },
        { name = "on", url = mock:url(2),
          routes = { { paths = { "/on" } } } } } } }
    for _ = 1, 2 do
      assert.equals(404, get(gw, "/off/x").status)
      assert.equals(200, get(gw, "/on/x").status)
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("starts with an empty config and answers 404", function()
    local gw = H.start_gateway { name = "cfg-empty",
                                 config = { _format_version = "3.0" } }
    for _ = 1, 2 do
      local res = get(gw, "/anything")
      assert.equals(404, res.status)
      assert.same({ message = "no Route matched with those values" }, res:json())
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("starts without declarative_config and answers 404", function()
    local gw = H.start_gateway { name = "cfg-none" }
    for _ = 1, 2 do
      local res = get(gw, "/anything")
      assert.equals(404, res.status)
    end
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("accepts consumers with tags", function()
    local gw = H.start_gateway { name = "cfg-consumers", config = {
      _format_version = "3.0",
      consumers = { { username = "alice", custom_id = "a-1", tags = { "x" } },
                    { username = "bob" } },
      services = { { name = "c", url = mock:url(1),
                     routes = { { paths = { "/c" } } } } } } }
    expect_echo(gw, "/c/1", "/1", mock.ports[1])
    gw:stop()
    H.assert_no_error_log(gw)
  end)

  it("refuses to start on an invalid declarative config", function()
    local prefix = H.new_prefix("cfg-bad")
    local port = H.free_port()
    local conf = H.default_conf(port, prefix)
    conf.declarative_config = H.write_declarative(prefix, {
      _format_version = "3.0",
      services = { { name = "bad", url = "http://127.0.0.1:1",
                     routes = { { paths = { "no-leading-slash" } } } } } })
    local conf_path = H.write_conf(prefix .. "/moongate.conf", conf)
    local rc, out = H.moongate({ "start", "-p", prefix, "-c", conf_path },
                               { timeout = 15 })
    assert.is_not.equals(0, rc)
    assert.matches("paths", out)
    assert.is_false(H.wait_port(port, 0.2))
  end)
end)
