-- End-to-end: the bin/moongate command line.  start/stop/quit/reload/
-- check exit codes and messages, version, help, property validation at
-- start, MOONGATE_<NAME> environment overrides, --daemon and the pid file.

local H = require "moongate"

-- A prefix with a moongate.conf on a free port; returns prefix, port, conf.
local function setup_prefix(name, conf_extra, config)
  local prefix = H.new_prefix(name)
  local port = H.free_port()
  local conf = H.default_conf(port, prefix)
  if config then
    conf.declarative_config = H.write_declarative(prefix, config)
  end
  for k, v in pairs(conf_extra or {}) do
    conf[k] = v ~= false and v or nil
  end
  local conf_path = H.write_conf(prefix .. "/moongate.conf", conf)
  return prefix, port, conf_path
end

describe("e2e cli", function()
  local mock

  lazy_setup(function()
    mock = H.start_mockup(1)
  end)

  lazy_teardown(function()
    H.cleanup()
  end)

  local function simple_config()
    return { _format_version = "3.0", services = { {
      name = "s", url = mock:url(1), routes = { { paths = { "/" } } } } } }
  end

  describe("version and help", function()
    it("`version` prints the version and exits 0", function()
      local rc, out = H.moongate { "version" }
      assert.equals(0, rc)
      assert.matches("moongate", out:lower())
      assert.matches("%d+%.%d+%.%d+", out)
    end)

    it("`help` lists the commands and exits 0", function()
      local rc, out = H.moongate { "help" }
      assert.equals(0, rc)
      for _, cmd in ipairs { "start", "stop", "quit", "reload", "check",
                             "version" } do
        assert.matches(cmd, out, 1, true)
      end
    end)

    it("an unknown command exits non-zero with usage", function()
      local rc, out = H.moongate { "frobnicate" }
      assert.is_not.equals(0, rc)
      assert.matches("frobnicate", out, 1, true)
    end)

    it("no command at all exits non-zero with usage", function()
      local rc, out = H.moongate {}
      assert.is_not.equals(0, rc)
      assert.matches("start", out, 1, true)
    end)
  end)

  describe("check", function()
    it("exits 0 on a valid file", function()
      local prefix = H.new_prefix("check-ok")
      local path = H.write_declarative(prefix, simple_config())
      local rc, out = H.moongate { "check", path }
      assert.equals(0, rc, out)
    end)

    it("exits 0 on a valid YAML file", function()
      local prefix = H.new_prefix("check-ok-yaml")
      local path = H.write_declarative(prefix, [[
_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:9/
    routes:
      - name: r
        paths: [/]
]])
      local rc, out = H.moongate { "check", path }
      assert.equals(0, rc, out)
    end)

    it("exits 1 and names each bad entity and field", function()
      local prefix = H.new_prefix("check-bad")
      local path = H.write_declarative(prefix, [[
_format_version: "3.0"
services:
  - name: svc-bad-port
    host: 127.0.0.1
    port: 99999
    routes:
      - name: route-bad-strip
        paths: [/a]
        strip_path: maybe
      - name: route-bad-method
        paths: [/b]
        methods: "GET"
  - name: svc-bad-protocol
    protocol: gopher
    host: 127.0.0.1
]])
      local rc, out = H.moongate { "check", path }
      assert.equals(1, rc, out)
      assert.matches("port", out, 1, true)
      assert.matches("strip_path", out, 1, true)
      assert.matches("methods", out, 1, true)
      assert.matches("protocol", out, 1, true)
      -- the entity: by name, or at least its kind
      assert.is_truthy(out:find("svc-bad-port", 1, true)
                       or out:find("service", 1, true), out)
      assert.is_truthy(out:find("route-bad-strip", 1, true)
                       or out:find("route", 1, true), out)
    end)

    it("exits 1 on a route pointing at an unknown service", function()
      local prefix = H.new_prefix("check-ref")
      local path = H.write_declarative(prefix, {
        _format_version = "3.0",
        routes = { { name = "orphan", service = "nope", paths = { "/" } } } })
      local rc, out = H.moongate { "check", path }
      assert.equals(1, rc, out)
      assert.matches("service", out, 1, true)
    end)

    it("exits 1 without _format_version", function()
      local prefix = H.new_prefix("check-nofmt")
      local path = H.write_declarative(prefix, { services = {} })
      local rc, out = H.moongate { "check", path }
      assert.equals(1, rc, out)
      assert.matches("_format_version", out, 1, true)
    end)

    it("exits 1 on a YAML syntax error", function()
      local prefix = H.new_prefix("check-syntax")
      local path = H.write_declarative(prefix,
        "_format_version: \"3.0\"\nservices:\n  - name: [unclosed\n")
      local rc, out = H.moongate { "check", path }
      assert.equals(1, rc, out)
      assert.is_true(#out > 0)
    end)

    it("validates a moongate.conf too", function()
      local prefix, _, conf = setup_prefix("check-conf")
      local rc, out = H.moongate { "check", conf }
      assert.equals(0, rc, out)
      local _, _, bad = setup_prefix("check-conf-bad", { bogus_key = "1",
                                                        worker_processes = "x" })
      rc, out = H.moongate { "check", bad }
      assert.equals(1, rc, out)
      assert.matches("bogus_key", out, 1, true)
      assert.matches("worker_processes", out, 1, true)
      assert.is_string(prefix)
    end)

    it("exits 1 on a missing file", function()
      local rc, out = H.moongate { "check", "/nonexistent/kong.yml" }
      assert.equals(1, rc, out)
      assert.matches("/nonexistent/kong.yml", out, 1, true)
    end)
  end)

  describe("start", function()
    it("runs in the foreground, writes the pid file and serves", function()
      local gw = H.start_gateway { name = "cli-fg", config = simple_config() }
      local pid = tonumber((H.read_file(gw:pid_file()) or ""):match("%d+"))
      assert.equals(gw.pid, pid)
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/fast" }))
        assert.equals(200, res.status)
      end
      assert.is_true(gw:stop())
      H.assert_no_error_log(gw)
    end)

    it("listens on every proxy_listen address", function()
      local a, b = H.free_port(), H.free_port()
      local gw = H.start_gateway { name = "cli-listen2", config = simple_config(),
        conf = { proxy_listen = "127.0.0.1:" .. a .. " reuseport, 127.0.0.1:" .. b },
        wait = false }
      assert.is_true(H.wait_port(a, 15, gw.pid))
      assert.is_true(H.wait_port(b, 5, gw.pid))
      for _ = 1, 2 do
        for _, port in ipairs { a, b } do
          local res = assert(H.request(port, { path = "/echo" }))
          assert.equals(200, res.status)
          assert.equals(tostring(port),
                        H.upstream_header(res:json(), "x-forwarded-port"))
        end
      end
      gw:stop()
      H.assert_no_error_log(gw)
    end)

    it("worker_processes = auto starts one worker per core", function()
      local p = io.popen("nproc")
      local cores = tonumber(p:read("*l"))
      p:close()
      local gw = H.start_gateway { name = "cli-auto", config = simple_config(),
                                   conf = { worker_processes = "auto" } }
      assert.is_table(gw:wait_workers(cores), "workers: " .. #gw:worker_pids()
                      .. ", cores: " .. cores)
      gw:stop()
      H.assert_no_error_log(gw)
    end)

    it("writes the error and access logs where the properties say", function()
      local prefix = H.new_prefix("cli-logpaths")
      local gw = H.start_gateway { name = "cli-logpaths", prefix = prefix,
        config = simple_config(), conf = {
          proxy_error_log = prefix .. "/custom-error.log",
          proxy_access_log = prefix .. "/custom-access.log" } }
      for _ = 1, 2 do
        assert.equals(200, assert(H.request(gw.port, { path = "/fast" })).status)
      end
      gw:stop()
      assert.matches("started", H.read_file(prefix .. "/custom-error.log") or "")
      assert.matches("GET /fast", H.read_file(prefix .. "/custom-access.log") or "")
    end)

    it("rejects an unknown property with a message naming it", function()
      local prefix, port, conf = setup_prefix("cli-badkey",
                                              { no_such_property = "1" })
      local rc, out = H.moongate({ "start", "-p", prefix, "-c", conf },
                                 { timeout = 15 })
      assert.is_not.equals(0, rc)
      assert.matches("no_such_property", out, 1, true)
      assert.is_false(H.wait_port(port, 0.2))
    end)

    it("rejects a malformed value with a message naming the key", function()
      for key, value in pairs { worker_processes = "banana",
                                log_level = "loud",
                                proxy_listen = "not-an-address",
                                client_max_body_size = "12 parsecs" } do
        local prefix, _, conf = setup_prefix("cli-badval", { [key] = value })
        local rc, out = H.moongate({ "start", "-p", prefix, "-c", conf },
                                   { timeout = 15 })
        assert.is_not.equals(0, rc, key .. " = " .. value .. " accepted")
        assert.matches(key, out, 1, true)
      end
    end)

    it("rejects a missing conf file", function()
      local prefix = H.new_prefix("cli-noconf")
      local rc, out = H.moongate({ "start", "-p", prefix, "-c",
                                   prefix .. "/missing.conf" }, { timeout = 15 })
      assert.is_not.equals(0, rc)
      assert.matches("missing.conf", out, 1, true)
    end)

    it("MOONGATE_<NAME> overrides the conf file", function()
      local other = H.free_port()
      local gw = H.start_gateway { name = "cli-env", config = simple_config(),
        env = { MOONGATE_PROXY_LISTEN = "127.0.0.1:" .. other }, wait = false }
      assert.is_true(H.wait_port(other, 15, gw.pid),
                     "not listening on the MOONGATE_PROXY_LISTEN port\n"
                     .. H.tail(gw:error_log()) .. H.tail(H.read_file(gw.out)))
      assert.is_false(H.wait_port(gw.port, 0.2))
      for _ = 1, 2 do
        local res = assert(H.request(other, { path = "/fast" }))
        assert.equals(200, res.status)
      end
      gw:stop()
      H.assert_no_error_log(gw)
    end)

    it("a malformed MOONGATE_<NAME> value is rejected at start", function()
      local prefix, _, conf = setup_prefix("cli-badenv")
      local rc, out = H.moongate({ "start", "-p", prefix, "-c", conf },
        { timeout = 15, env = { MOONGATE_LOG_LEVEL = "loud" } })
      assert.is_not.equals(0, rc)
      assert.matches("log_level", out:lower(), 1, true)
    end)

    it("--daemon returns, leaves the gateway running, stop ends it", function()
      local prefix, port, conf = setup_prefix("cli-daemon", nil, simple_config())
      local rc, out = H.moongate({ "start", "-p", prefix, "-c", conf,
                                   "--daemon" }, { timeout = 15 })
      -- watch the daemon before asserting anything, so it never leaks
      H.sleep(0.2)
      local pid = tonumber((H.read_file(prefix .. "/pids/moongate.pid") or "")
                           :match("%d+"))
      if pid then H.watch(pid) end
      assert.equals(0, rc, out)
      assert.is_number(pid, "no pid file after --daemon")
      assert.is_true(H.wait_port(port, 10, pid))
      local res = assert(H.request(port, { path = "/fast" }))
      assert.equals(200, res.status)
      rc, out = H.moongate({ "stop", "-p", prefix })
      assert.equals(0, rc, out)
      assert.is_true(H.wait_exit(pid, 10), "daemon still running after stop")
      H.assert_no_error_log(H.read_file(prefix .. "/logs/error.log") or "")
    end)
  end)

  describe("stop, quit, reload", function()
    it("`stop -p` exits 0, ends the gateway and removes the pid file", function()
      local gw = H.start_gateway { name = "cli-stop", config = simple_config() }
      local rc, out = H.moongate { "stop", "-p", gw.prefix }
      assert.equals(0, rc, out)
      assert.is_true(H.wait_exit(gw.pid, 10))
      assert.is_nil(H.read_file(gw:pid_file()))
      H.assert_no_error_log(gw)
    end)

    it("`quit -p` exits 0 and ends the gateway gracefully", function()
      local gw = H.start_gateway { name = "cli-quit", config = simple_config() }
      local rc, out = H.moongate { "quit", "-p", gw.prefix }
      assert.equals(0, rc, out)
      assert.is_true(H.wait_exit(gw.pid, 10))
      H.assert_no_error_log(gw)
    end)

    it("`reload -p` exits 0 and keeps serving", function()
      local gw = H.start_gateway { name = "cli-reload", config = simple_config() }
      local rc, out = gw:reload()
      assert.equals(0, rc, out)
      H.sleep(0.3)
      assert.is_true(gw:alive())
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/fast" }))
        assert.equals(200, res.status)
      end
      gw:stop()
      H.assert_no_error_log(gw)
    end)

    it("`reload` with a broken config keeps the old one running", function()
      local gw = H.start_gateway { name = "cli-reload-bad",
                                   config = simple_config() }
      gw:write_config("_format_version: \"3.0\"\nservices: [ {name: \n")
      local rc = gw:reload()
      -- the command may report the error or leave it to the log; the
      -- gateway must keep serving the old config either way
      H.sleep(0.5)
      assert.is_true(gw:alive())
      for _ = 1, 2 do
        local res = assert(H.request(gw.port, { path = "/fast" }))
        assert.equals(200, res.status)
      end
      gw:stop()
      H.assert_no_error_log(gw, { "declarative", "config", "yaml", "YAML",
                                  "reload", "parse" })
      assert.is_number(rc)
    end)

    it("`stop` on a prefix with nothing running exits non-zero", function()
      local prefix = H.new_prefix("cli-nothing")
      local rc, out = H.moongate { "stop", "-p", prefix }
      assert.is_not.equals(0, rc)
      assert.is_true(#out > 0, "no message")
    end)
  end)
end)
