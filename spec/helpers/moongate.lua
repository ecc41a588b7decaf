--
-- spec/helpers/moongate.lua -- helpers for end-to-end specs (busted).
--
-- Starts the real gateway (bin/moongate) and the mock upstream
-- (build/mockup) on free loopback ports in a throwaway prefix, talks to
-- them over raw sockets, and checks the error log afterwards (Test::Nginx's
-- no_error_log).  Everything runs on plain Lua 5.1 + luasocket + cjson.
--
--   local H = require "moongate"
--   local mock = H.start_mockup(2)             -- mock.ports[1], [2]
--   local gw = H.start_gateway { config = { _format_version = "3.0",
--       services = { { name = "s", url = "http://127.0.0.1:" .. mock.port,
--                      routes = { { paths = { "/" } } } } } } }
--   local res = H.request(gw.port, { path = "/echo" })
--   assert.equals(200, res.status)
--   H.assert_no_error_log(gw)
--   H.cleanup()                                -- in lazy_teardown
--
-- Environment: MOONGATE_BUILD (default "build": where mockup lives),
-- MOONGATE_BIN (default "bin/moongate"), MOONGATE_KEEP_PREFIX=1 keeps the
-- temporary prefixes for post-mortem.
--
-- Processes started here are watched by a tiny shell loop that kills them
-- when the Lua process that started them goes away, so a crashed or killed
-- busted never leaves gateways or mocks behind.
--

local socket = require "socket"
local cjson  = require "cjson.safe"

local _M = {}

pcall(cjson.encode_escape_forward_slash, false)
pcall(cjson.encode_empty_table_as_object, false)

-------------------------------------------------------------------------------
-- paths and small utilities
-------------------------------------------------------------------------------

local function dirname(p)
  return (p:gsub("/+[^/]*$", ""))
end

local function abspath(p)
  if p:sub(1, 1) == "/" then
    return p
  end
  local cwd = os.getenv("PWD")
  if not cwd then
    local f = io.popen("pwd")
    cwd = f:read("*l")
    f:close()
  end
  p = cwd .. "/" .. p
  -- normalise "/./" and "x/../"
  p = p:gsub("/%./", "/")
  local n
  repeat
    p, n = p:gsub("/[^/]+/%.%./", "/", 1)
  until n == 0
  return p
end

do
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  _M.root = dirname(dirname(dirname(abspath(src))))
  if _M.root == "" then
    _M.root = "/"
  end
end

local function in_root(p)
  if p:sub(1, 1) == "/" then
    return p
  end
  return _M.root .. "/" .. p
end

_M.build = in_root(os.getenv("MOONGATE_BUILD") or "build")
_M.bin = in_root(os.getenv("MOONGATE_BIN") or "bin/moongate")
_M.mockup_bin = _M.build .. "/mockup"

_M.now = socket.gettime

function _M.sleep(s)
  socket.sleep(s)
end

function _M.shell_quote(s)
  s = tostring(s)
  if s:match("^[%w%./_:=,@%+%-]+$") then
    return s
  end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
local q = _M.shell_quote

function _M.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

function _M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  assert(f:write(data))
  f:close()
  return path
end

function _M.file_size(path)
  local f = io.open(path, "rb")
  if not f then
    return 0
  end
  local n = f:seek("end")
  f:close()
  return n or 0
end

function _M.tail(s, nlines)
  if not s or s == "" then
    return ""
  end
  nlines = nlines or 30
  local lines = {}
  for l in s:gmatch("[^\n]*\n?") do
    if l ~= "" then
      lines[#lines + 1] = l
    end
  end
  local from = math.max(1, #lines - nlines + 1)
  return table.concat(lines, "", from)
end

-- Run a shell command synchronously.  Returns exit code and combined
-- stdout+stderr.  opts.env: table of variables; opts.timeout: seconds
-- (default 30, via coreutils timeout(1)).
function _M.run(cmd, opts)
  opts = opts or {}
  local env = ""
  if opts.env then
    local parts = {}
    for k, v in pairs(opts.env) do
      parts[#parts + 1] = q(k .. "=" .. tostring(v))
    end
    table.sort(parts)
    env = "env " .. table.concat(parts, " ") .. " "
  end
  local full = string.format("cd %s && %stimeout -k 2 %d %s </dev/null 2>&1; echo \"__rc=$?\"",
                             q(opts.cwd or _M.root), env,
                             opts.timeout or 30, cmd)
  local p = io.popen(full)
  local out = p:read("*a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  out = out:gsub("__rc=%d+%s*$", "")
  return rc, out
end

-- Run bin/moongate with arguments (a list, quoted here).
function _M.moongate(args, opts)
  local parts = { q(_M.bin) }
  for _, a in ipairs(args) do
    parts[#parts + 1] = q(a)
  end
  return _M.run(table.concat(parts, " "), opts)
end

local lua_pid
do
  local s = _M.read_file("/proc/self/stat")
  lua_pid = s and tonumber(s:match("^(%d+)"))
end
_M.lua_pid = lua_pid

-------------------------------------------------------------------------------
-- processes
-------------------------------------------------------------------------------

-- /proc/PID/stat fields: state and ppid.  nil when the process is gone.
local function proc_stat(pid)
  local s = _M.read_file("/proc/" .. pid .. "/stat")
  if not s then
    return nil
  end
  local state, ppid = s:match("^%d+ %b() (%S) (%d+)")
  if not state then
    -- comm may hold spaces or parentheses: take the last ')'
    local rest = s:match(".*%) (.*)$")
    if not rest then
      return nil
    end
    state, ppid = rest:match("^(%S) (%d+)")
  end
  return state, tonumber(ppid)
end
_M.proc_stat = proc_stat

-- alive: exists and is not a zombie.
function _M.alive(pid)
  if not pid then
    return false
  end
  local state = proc_stat(pid)
  return state ~= nil and state ~= "Z" and state ~= "X"
end

function _M.kill(pid, sig)
  if not pid then
    return false
  end
  return os.execute("kill -" .. (sig or "TERM") .. " " .. tonumber(pid)
                    .. " 2>/dev/null") == 0
end

-- Wait until pid is gone; true when it went within timeout seconds.
function _M.wait_exit(pid, timeout)
  local deadline = _M.now() + (timeout or 5)
  while _M.alive(pid) do
    if _M.now() > deadline then
      return false
    end
    socket.sleep(0.02)
  end
  return true
end

local function list_proc()
  local pids = {}
  local ok, lfs = pcall(require, "lfs")
  if ok then
    for name in lfs.dir("/proc") do
      if name:match("^%d+$") then
        pids[#pids + 1] = tonumber(name)
      end
    end
  else
    local p = io.popen("ls /proc")
    for name in p:lines() do
      if name:match("^%d+$") then
        pids[#pids + 1] = tonumber(name)
      end
    end
    p:close()
  end
  return pids
end

-- Live children of pid.
function _M.children(pid)
  local out = {}
  for _, p in ipairs(list_proc()) do
    local state, ppid = proc_stat(p)
    if ppid == pid and state ~= "Z" then
      out[#out + 1] = p
    end
  end
  table.sort(out)
  return out
end

-- /proc/PID/status fields in kB (VmRSS, VmHWM, ...).
function _M.proc_mem(pid)
  local s = _M.read_file("/proc/" .. pid .. "/status")
  if not s then
    return nil
  end
  return {
    rss = tonumber(s:match("VmRSS:%s*(%d+)")),
    hwm = tonumber(s:match("VmHWM:%s*(%d+)")),
    size = tonumber(s:match("VmSize:%s*(%d+)")),
  }
end

local procs = {}        -- everything started here, for cleanup()

-- Start cmd in the background with stdout+stderr to outfile.  Returns the
-- pid of cmd itself (exec'd by sh).  A watchdog kills it when this Lua
-- process exits.
function _M.spawn(cmd, outfile, env)
  local envs = ""
  if env then
    local parts = {}
    for k, v in pairs(env) do
      parts[#parts + 1] = q(k .. "=" .. tostring(v))
    end
    table.sort(parts)
    if #parts > 0 then
      envs = "env " .. table.concat(parts, " ") .. " "
    end
  end
  -- a subshell runs cmd, prints its pid, waits for it and appends how it
  -- ended to outfile (a crash shows as "exited: status 139")
  local script = string.format([[
cd %s || exit 1
( %s%s </dev/null >%s 2>&1 &
  c=$!
  echo "$c"
  ( trap '' HUP INT QUIT TERM
    while kill -0 %d 2>/dev/null; do
      if ! kill -0 "$c" 2>/dev/null; then exit 0; fi
      sleep 0.5
    done
    kill -TERM "$c" 2>/dev/null; sleep 2; kill -KILL "$c" 2>/dev/null
  ) </dev/null >/dev/null 2>&1 &
  exec >/dev/null 2>&1 </dev/null
  wait "$c"
  echo "[spawn] $(date +%%T) pid $c exited: status $?" >>%s
) &
]], q(_M.root), envs, cmd, q(outfile), lua_pid or 1, q(outfile))
  local p = io.popen(script)
  local pid = tonumber(p:read("*l") or "")
  p:close()
  assert(pid, "could not start: " .. cmd)
  procs[#procs + 1] = { pid = pid, cmd = cmd, out = outfile }
  return pid
end

-- Watch a process this helper did not spawn (a daemonised gateway): it is
-- stopped by cleanup() and killed when this Lua process exits.
function _M.watch(pid)
  pid = tonumber(pid)
  assert(pid, "watch: no pid")
  os.execute(string.format([[
( trap '' HUP INT QUIT TERM
  while kill -0 %d 2>/dev/null; do
    if ! kill -0 %d 2>/dev/null; then exit 0; fi
    sleep 0.5
  done
  kill -TERM %d 2>/dev/null; sleep 2; kill -KILL %d 2>/dev/null
) </dev/null >/dev/null 2>&1 &]], lua_pid or 1, pid, pid, pid))
  procs[#procs + 1] = { pid = pid, cmd = "watched" }
  return pid
end

local function forget(pid)
  for i = #procs, 1, -1 do
    if procs[i].pid == pid then
      table.remove(procs, i)
    end
  end
end

-- Stop pid (and any children it leaves behind): sig first, KILL after
-- timeout.  Returns true when it exited on sig.
function _M.terminate(pid, sig, timeout)
  if not _M.alive(pid) then
    forget(pid)
    return true
  end
  local kids = _M.children(pid)
  _M.kill(pid, sig or "TERM")
  local clean = _M.wait_exit(pid, timeout or 5)
  if not clean then
    _M.kill(pid, "KILL")
    _M.wait_exit(pid, 2)
  end
  -- workers normally exit with their master; make sure of it
  for _, k in ipairs(kids) do
    if not _M.wait_exit(k, clean and 2 or 0.2) then
      _M.kill(k, "KILL")
    end
  end
  forget(pid)
  return clean
end

-------------------------------------------------------------------------------
-- ports and prefixes
-------------------------------------------------------------------------------

local given_ports = {}

-- A free TCP port on 127.0.0.1 (never the same twice in one process).
function _M.free_port()
  for _ = 1, 50 do
    local s = assert(socket.tcp())
    s:setoption("reuseaddr", true)
    assert(s:bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    port = tonumber(port)
    if port and not given_ports[port] then
      given_ports[port] = true
      return port
    end
  end
  error("no free port")
end

function _M.free_ports(n)
  local t = {}
  for i = 1, n do
    t[i] = _M.free_port()
  end
  return t
end

local prefixes = {}

-- A new empty prefix directory with logs/ and pids/.
function _M.new_prefix(name)
  local tmpl = "/tmp/moongate-spec-" .. (name or "x"):gsub("[^%w_-]", "_")
               .. ".XXXXXX"
  local p = io.popen("mktemp -d " .. q(tmpl))
  local dir = p:read("*l")
  p:close()
  assert(dir and dir ~= "", "mktemp failed")
  os.execute("mkdir -p " .. q(dir .. "/logs") .. " " .. q(dir .. "/pids"))
  prefixes[#prefixes + 1] = dir
  return dir
end

-------------------------------------------------------------------------------
-- configuration files
-------------------------------------------------------------------------------

local function conf_value(v)
  if v == true then
    return "on"
  elseif v == false then
    return "off"
  end
  return tostring(v)
end

-- moongate.conf text from a table (keys sorted, `key = value`).
function _M.conf_text(tbl)
  local keys = {}
  for k in pairs(tbl) do
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local out = { "# written by spec/helpers/moongate.lua" }
  for _, k in ipairs(keys) do
    out[#out + 1] = k .. " = " .. conf_value(tbl[k])
  end
  return table.concat(out, "\n") .. "\n"
end

function _M.write_conf(path, tbl)
  return _M.write_file(path, _M.conf_text(tbl))
end

function _M.json_encode(v)
  return assert(cjson.encode(v))
end

function _M.json_decode(s)
  return cjson.decode(s)
end

-- Write a declarative config: a table is written as JSON, a string as is
-- (YAML unless it starts with '{').  Returns the path.
function _M.write_declarative(dir, config, name)
  if type(config) == "table" then
    return _M.write_file(dir .. "/" .. (name or "kong.json"),
                         _M.json_encode(config))
  end
  local ext = config:match("^%s*{") and "json" or "yml"
  return _M.write_file(dir .. "/" .. (name or ("kong." .. ext)), config)
end

-- Shorthand: one service + its routes (nested form).
function _M.service(name, url, routes, extra)
  local s = { name = name, url = url, routes = routes }
  for k, v in pairs(extra or {}) do
    s[k] = v
  end
  return s
end

-------------------------------------------------------------------------------
-- mock upstream
-------------------------------------------------------------------------------

local Mock = {}
Mock.__index = Mock

-- Start build/mockup on n free ports (or on the given list of ports).
function _M.start_mockup(n_or_ports)
  local ports
  if type(n_or_ports) == "table" then
    ports = n_or_ports
  else
    ports = _M.free_ports(n_or_ports or 1)
  end
  local f = io.open(_M.mockup_bin, "rb")
  if not f then
    error("mock upstream not built: " .. _M.mockup_bin
          .. " (run `make " .. _M.mockup_bin:gsub("^" .. _M.root .. "/", "")
          .. "`)", 2)
  end
  f:close()
  local dir = _M.new_prefix("mockup")
  local out = dir .. "/mockup.out"
  local pid = _M.spawn(q(_M.mockup_bin) .. " " .. table.concat(ports, " "), out)
  procs[#procs].helper = true
  local deadline = _M.now() + 10
  while true do
    local s = _M.read_file(out) or ""
    if s:find("ready", 1, true) then
      break
    end
    if not _M.alive(pid) or _M.now() > deadline then
      _M.terminate(pid, "KILL", 1)
      error("mockup did not become ready on " .. table.concat(ports, ",")
            .. ":\n" .. _M.tail(s), 2)
    end
    socket.sleep(0.02)
  end
  return setmetatable({ pid = pid, ports = ports, port = ports[1],
                        out = out, dir = dir }, Mock)
end

function Mock:url(i, path)
  return "http://127.0.0.1:" .. self.ports[i or 1] .. (path or "")
end

function Mock:stats(i)
  local res = _M.request(self.ports[i or 1], { path = "/stats" })
  return res and res:json()
end

function Mock:stop()
  return _M.terminate(self.pid, "TERM", 5)
end

--
-- A misbehaving upstream: for every connection, read the request head,
-- write `reply` (exact bytes) and close.  For what the mock cannot do
-- (garbage status lines, truncated bodies, huge headers).  Runs as a
-- separate lua process; returns { port, pid, stop() }.
--
local RAW_UPSTREAM = [[
local socket = require "socket"
local port, file = tonumber(arg[1]), arg[2]
local f = assert(io.open(file, "rb"))
local reply = f:read("*a")
f:close()
local srv = assert(socket.bind("127.0.0.1", port))
io.stdout:write("ready\n")
io.stdout:flush()
while true do
  local c = srv:accept()
  if c then
    c:settimeout(5)
    while true do
      local l = c:receive("*l")
      if not l or l == "" then break end
    end
    c:send(reply)
    c:close()
  end
end
]]

function _M.start_raw_upstream(reply)
  local dir = _M.new_prefix("raw")
  local script = _M.write_file(dir .. "/raw.lua", RAW_UPSTREAM)
  local replyf = _M.write_file(dir .. "/reply", reply)
  local port = _M.free_port()
  local out = dir .. "/raw.out"
  local pid = _M.spawn("$(command -v lua5.1 || echo lua) " .. q(script) .. " " .. port .. " " .. q(replyf),
                       out)
  procs[#procs].helper = true
  local deadline = _M.now() + 10
  while not (_M.read_file(out) or ""):find("ready", 1, true) do
    if not _M.alive(pid) or _M.now() > deadline then
      _M.terminate(pid, "KILL", 1)
      error("raw upstream did not start: " .. (_M.read_file(out) or ""), 2)
    end
    socket.sleep(0.02)
  end
  return setmetatable({ pid = pid, ports = { port }, port = port,
                        out = out, dir = dir }, Mock)
end

-------------------------------------------------------------------------------
-- gateway
-------------------------------------------------------------------------------

local Gateway = {}
Gateway.__index = Gateway
_M.Gateway = Gateway

-- Default properties for tests: one worker, admin off, DB-less, short
-- timeouts so a stuck request fails fast.
function _M.default_conf(port, prefix)
  return {
    proxy_listen = "127.0.0.1:" .. port .. " reuseport",
    admin_listen = "off",
    worker_processes = 1,
    database = "off",
    log_level = "info",
    proxy_access_log = prefix .. "/logs/access.log",
    proxy_error_log = prefix .. "/logs/error.log",
  }
end

-- Poll until something accepts on port.  Returns true or false.
function _M.wait_port(port, timeout, pid)
  local deadline = _M.now() + (timeout or 10)
  while _M.now() < deadline do
    local s = socket.tcp()
    s:settimeout(0.5)
    local ok = s:connect("127.0.0.1", port)
    s:close()
    if ok then
      return true
    end
    if pid and not _M.alive(pid) then
      return false
    end
    socket.sleep(0.03)
  end
  return false
end

--
-- Start bin/moongate in the foreground (as a background child).
--   opts.config      declarative config: table (JSON) or YAML/JSON string
--   opts.conf        properties added to / overriding default_conf
--                    (a value of false removes a default; use "off" for off)
--   opts.env         environment variables for the gateway
--   opts.args        extra CLI arguments
--   opts.wait        false: do not wait for the port (default wait)
--   opts.timeout     seconds to wait for the port (default 15)
--   opts.name        used in the prefix's name
-- Returns a Gateway; raises with the log tails when it does not come up.
--
function _M.start_gateway(opts)
  opts = opts or {}
  if not io.open(_M.bin, "rb") then
    error("gateway binary missing: " .. _M.bin .. " (run `make`)", 2)
  end
  local prefix = opts.prefix or _M.new_prefix(opts.name or "gw")
  local port = opts.port or _M.free_port()
  local conf = _M.default_conf(port, prefix)
  local config_path
  if opts.config then
    config_path = _M.write_declarative(prefix, opts.config, opts.config_name)
    conf.declarative_config = config_path
  end
  for k, v in pairs(opts.conf or {}) do
    if v == false then
      conf[k] = nil
    else
      conf[k] = v
    end
  end
  local conf_path = _M.write_conf(prefix .. "/moongate.conf", conf)
  local gw = setmetatable({
    prefix = prefix, port = port, conf = conf, conf_path = conf_path,
    config_path = config_path, env = opts.env,
    error_log_path = conf.proxy_error_log or (prefix .. "/logs/error.log"),
    access_log_path = conf.proxy_access_log or (prefix .. "/logs/access.log"),
    out = prefix .. "/logs/stdout.log",
  }, Gateway)
  local cmd = { q(_M.bin), "start", "-p", q(prefix), "-c", q(conf_path) }
  for _, a in ipairs(opts.args or {}) do
    cmd[#cmd + 1] = q(a)
  end
  gw.pid = _M.spawn(table.concat(cmd, " "), gw.out, opts.env)
  if opts.wait == false then
    return gw
  end
  if not _M.wait_port(port, opts.timeout or 15, gw.pid) then
    local alive = _M.alive(gw.pid)
    local msg = string.format(
      "moongate did not accept on 127.0.0.1:%d (%s)\n--- stdout/stderr:\n%s"
      .. "--- error.log tail:\n%s--- moongate.conf:\n%s",
      port, alive and "still running" or "exited",
      _M.tail(_M.read_file(gw.out)), _M.tail(gw:error_log()),
      _M.read_file(conf_path) or "")
    gw:stop()
    error(msg, 2)
  end
  -- the port may be open before every worker runs; give workers a moment
  -- to exist so worker_pids() is meaningful
  local want = tonumber(conf.worker_processes) or 1
  local deadline = _M.now() + 5
  while #gw:worker_pids() < want and _M.now() < deadline do
    socket.sleep(0.02)
  end
  return gw
end

function Gateway:error_log()
  return _M.read_file(self.error_log_path) or ""
end

function Gateway:access_log()
  return _M.read_file(self.access_log_path) or ""
end

-- Byte offset of the error log now, for error_log_since().
function Gateway:log_mark()
  return _M.file_size(self.error_log_path)
end

function Gateway:error_log_since(mark)
  return (self:error_log()):sub((mark or 0) + 1)
end

function Gateway:pid_file()
  return self.prefix .. "/pids/moongate.pid"
end

function Gateway:worker_pids()
  if not self.pid then
    return {}
  end
  return _M.children(self.pid)
end

-- Wait until the master has n live workers; returns the list or nil.
function Gateway:wait_workers(n, timeout, exclude)
  local deadline = _M.now() + (timeout or 5)
  repeat
    local w = self:worker_pids()
    local fresh = 0
    for _, p in ipairs(w) do
      if not (exclude and exclude[p]) then
        fresh = fresh + 1
      end
    end
    if #w == n and (not exclude or fresh >= 1) then
      return w
    end
    socket.sleep(0.05)
  until _M.now() > deadline
  return nil
end

function Gateway:alive()
  return _M.alive(self.pid)
end

function Gateway:signal(sig)
  return _M.kill(self.pid, sig)
end

-- Rewrite the declarative config file (same path as at start).
function Gateway:write_config(config)
  assert(self.config_path, "gateway started without a declarative config")
  if type(config) == "table" then
    return _M.write_file(self.config_path, _M.json_encode(config))
  end
  return _M.write_file(self.config_path, config)
end

-- `moongate reload -p PREFIX`; returns rc, output.
function Gateway:reload()
  return _M.moongate({ "reload", "-p", self.prefix }, { env = self.env })
end

-- Fast stop (SIGTERM), KILL after timeout.  True when it exited on TERM.
function Gateway:stop(timeout)
  if not self.pid then
    return true
  end
  return _M.terminate(self.pid, "TERM", timeout or 5)
end

-- Graceful stop (SIGQUIT).
function Gateway:quit(timeout)
  return _M.terminate(self.pid, "QUIT", timeout or 10)
end

function Gateway:url(path)
  return "http://127.0.0.1:" .. self.port .. (path or "")
end

-- Kill every process started by this helper and remove prefixes (unless
-- MOONGATE_KEEP_PREFIX is set).  Safe to call more than once.
function _M.cleanup()
  -- a gateway that daemonised (or a master left by a failed test) in one
  -- of our prefixes: its pid file names it, its command line names the
  -- prefix
  for _, d in ipairs(prefixes) do
    local pid = tonumber((_M.read_file(d .. "/pids/moongate.pid") or "")
                         :match("%d+") or "")
    local cmdline = pid and _M.read_file("/proc/" .. pid .. "/cmdline")
    if cmdline and cmdline:find(d, 1, true) and _M.alive(pid) then
      _M.terminate(pid, "TERM", 3)
    end
  end
  for i = #procs, 1, -1 do
    local p = procs[i]
    if p then
      if p.helper and not _M.alive(p.pid) and p.out then
        -- died before its test was over: say so (TAP comment)
        local t = _M.tail(_M.read_file(p.out), 5):gsub("\n", "\n# ")
        io.stdout:write("# warning: " .. p.cmd .. " (pid " .. p.pid
                        .. ") had exited before cleanup:\n# " .. t .. "\n")
      end
      _M.terminate(p.pid, "TERM", 3)
    end
  end
  procs = {}
  if not os.getenv("MOONGATE_KEEP_PREFIX") then
    for _, d in ipairs(prefixes) do
      if d:match("^/tmp/moongate%-spec%-") then
        -- a wrapper may still be appending the exit status of its
        -- process: retry once
        os.execute("rm -rf " .. q(d) .. " 2>/dev/null || { sleep 0.2; rm -rf "
                   .. q(d) .. "; }")
      end
    end
    prefixes = {}
  end
end

local version_cache

-- The version `moongate version` prints (x.y.z), or nil.
function _M.version()
  if version_cache == nil then
    local rc, out = _M.moongate({ "version" }, { timeout = 10 })
    version_cache = rc == 0 and out:match("(%d+%.%d+%.%d+[%w%.%-]*)") or false
  end
  return version_cache or nil
end

-------------------------------------------------------------------------------
-- error log checks (Test::Nginx no_error_log)
-------------------------------------------------------------------------------

--
-- Fail when the gateway's error log (or its stderr: sanitizer reports)
-- holds a [crit], [alert] or [emerg] line, or an [error] line that matches
-- none of the allow patterns (Lua patterns; plain substrings work as long
-- as they hold no magic characters -- use opts.plain for literal strings).
-- gw_or_text: a Gateway, or the log text itself.  since: a log_mark().
--
function _M.check_error_log(gw_or_text, allow, since)
  allow = allow or {}
  local text, extra
  if type(gw_or_text) == "table" then
    text = gw_or_text:error_log_since(since)
    extra = _M.read_file(gw_or_text.out) or ""
  else
    text = gw_or_text
    extra = ""
  end
  local bad = {}
  for line in text:gmatch("[^\n]+") do
    local level = line:match("%[(%a+)%]")
    if level == "crit" or level == "alert" or level == "emerg"
       or level == "error" then
      local ok = false
      for _, pat in ipairs(allow) do
        if line:find(pat) then
          ok = true
          break
        end
      end
      if not ok then
        bad[#bad + 1] = line
      end
    end
  end
  for line in extra:gmatch("[^\n]+") do
    if line:find("AddressSanitizer", 1, true)
       or line:find("LeakSanitizer", 1, true)
       or line:find("runtime error:", 1, true) then
      bad[#bad + 1] = "stderr: " .. line
    end
  end
  return bad
end

function _M.assert_no_error_log(gw_or_text, allow, since)
  local bad = _M.check_error_log(gw_or_text, allow, since)
  if #bad > 0 then
    error("unexpected lines in the error log:\n  "
          .. table.concat(bad, "\n  ", 1, math.min(#bad, 20)), 2)
  end
end

-- True when the log (since mark) holds a line matching pattern.
function Gateway:log_has(pattern, since)
  return self:error_log_since(since):find(pattern) ~= nil
end

-- Wait up to timeout seconds for pattern to appear in the error log.
function Gateway:wait_log(pattern, timeout, since)
  local deadline = _M.now() + (timeout or 5)
  repeat
    if self:log_has(pattern, since) then
      return true
    end
    socket.sleep(0.05)
  until _M.now() > deadline
  return false
end

-------------------------------------------------------------------------------
-- raw HTTP client
-------------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn
_M.Conn = Conn

local Response = {}
Response.__index = Response

function Response:json()
  local v, err = cjson.decode(self.body or "")
  if v == nil then
    error("response body is not JSON (" .. tostring(err) .. "): "
          .. tostring(self.body):sub(1, 300), 2)
  end
  return v
end

-- Connect to 127.0.0.1:port.  opts.timeout: default per-read timeout (5s).
function _M.connect(port, opts)
  opts = opts or {}
  local s = assert(socket.tcp())
  s:settimeout(opts.connect_timeout or 5)
  local ok, err = s:connect(opts.host or "127.0.0.1", port)
  if not ok then
    s:close()
    return nil, "connect to " .. port .. ": " .. tostring(err)
  end
  s:setoption("tcp-nodelay", true)
  return setmetatable({ sock = s, buf = "", eof = false, port = port,
                        timeout = opts.timeout or 5 }, Conn)
end

function Conn:close()
  if self.sock then
    self.sock:close()
    self.sock = nil
  end
end

-- Send bytes; returns true or nil, err.
function Conn:send(data)
  self.sock:settimeout(self.timeout)
  local i, err, last = self.sock:send(data)
  if not i then
    return nil, err, last
  end
  self.t_sent = _M.now()
  return true
end

-- Send data in pieces of `size` bytes with `delay` seconds in between.
function Conn:send_slowly(data, size, delay)
  for i = 1, #data, size do
    local ok, err = self:send(data:sub(i, i + size - 1))
    if not ok then
      return nil, err
    end
    if i + size <= #data then
      socket.sleep(delay)
    end
  end
  return true
end

-- Read whatever arrives (at most 64k) into self.buf, waiting up to the
-- deadline.  Returns true, or nil and "timeout" / "closed".
function Conn:fill(deadline)
  if self.eof then
    return nil, "closed"
  end
  local sock = self.sock
  while true do
    sock:settimeout(0)
    local data, err, partial = sock:receive(65536)
    data = data or partial
    if data and #data > 0 then
      if not self.t_first then
        self.t_first = _M.now()
      end
      self.buf = self.buf .. data
      if err == "closed" then
        self.eof = true
      end
      return true
    end
    if err == "closed" then
      self.eof = true
      return nil, "closed"
    elseif err ~= "timeout" then
      self.eof = true
      return nil, err
    end
    local left = deadline - _M.now()
    if left <= 0 then
      return nil, "timeout"
    end
    socket.select({ sock }, nil, math.min(left, 1))
  end
end

function Conn:deadline(timeout)
  return _M.now() + (timeout or self.timeout)
end

-- A line without its CRLF (or LF).
function Conn:read_line(deadline)
  deadline = deadline or self:deadline()
  while true do
    local i = self.buf:find("\n", 1, true)
    if i then
      local line = self.buf:sub(1, i - 1):gsub("\r$", "")
      self.buf = self.buf:sub(i + 1)
      return line
    end
    local ok, err = self:fill(deadline)
    if not ok then
      return nil, err
    end
  end
end

-- Exactly n bytes.
function Conn:read_bytes(n, deadline)
  deadline = deadline or self:deadline()
  while #self.buf < n do
    local ok, err = self:fill(deadline)
    if not ok then
      return nil, err, self.buf
    end
  end
  local s = self.buf:sub(1, n)
  self.buf = self.buf:sub(n + 1)
  return s
end

-- Whatever is buffered or arrives next (up to max bytes).
function Conn:read_some(max, deadline)
  deadline = deadline or self:deadline()
  if #self.buf == 0 then
    local ok, err = self:fill(deadline)
    if not ok then
      return nil, err
    end
  end
  max = max or #self.buf
  local s = self.buf:sub(1, max)
  self.buf = self.buf:sub(max + 1)
  return s
end

-- Read until the peer closes (or timeout).  Returns data, err.
function Conn:read_all(timeout)
  local deadline = self:deadline(timeout)
  local parts = { self.buf }
  self.buf = ""
  while true do
    local ok, err = self:fill(deadline)
    parts[#parts + 1] = self.buf
    self.buf = ""
    if not ok then
      return table.concat(parts), err
    end
  end
end

-- True when the peer closes the connection within timeout seconds
-- (data received meanwhile is discarded and returned second).
function Conn:wait_closed(timeout)
  local data, err = self:read_all(timeout)
  return err == "closed", data
end

-- Index of the first of conns to have data to read (or to be closed),
-- nil on timeout.  For ordering assertions: which answer came first.
function _M.first_readable(conns, timeout)
  local deadline = _M.now() + (timeout or 5)
  local socks, index = {}, {}
  for i, c in ipairs(conns) do
    if #c.buf > 0 or c.eof then
      return i
    end
    socks[#socks + 1] = c.sock
    index[c.sock] = i
  end
  while true do
    local left = deadline - _M.now()
    if left <= 0 then
      return nil
    end
    local r = socket.select(socks, nil, left)
    if r and r[1] then
      return index[r[1]]
    end
  end
end

-- Read an HTTP/1.x response.
--   opts.method       "HEAD" means no body
--   opts.timeout      seconds for each wait (default conn timeout)
--   opts.on_data      function(data, t) called per body piece; the body is
--                     still kept unless opts.discard
--   opts.discard      do not keep the body (count only: res.body_len)
--   opts.read_size    max bytes per on_data piece (default 64k)
--   opts.pause        function(res) called after the headers, before the
--                     body is read (to read slowly, sample memory...)
-- Returns a response: status, reason, version, headers (lower-case name ->
-- value, repeated headers joined by ", "), header_list ({name, value} in
-- order), body, body_len, framing ("length", "chunked", "close", "none"),
-- chunks (sizes), trailers, informational (1xx responses: {status,
-- headers}), t_first (first byte time), t_headers, t_end, raw_head.
function Conn:read_response(opts)
  opts = opts or {}
  local timeout = opts.timeout or self.timeout
  local function dl() return _M.now() + timeout end
  local res = setmetatable({ informational = {} }, Response)
  local t_start = self.t_sent or _M.now()
  res.t_start = t_start

  while true do
    local line, err = self:read_line(dl())
    if not line then
      return nil, "reading status line: " .. tostring(err), res
    end
    if not res.t_first then
      res.t_first = _M.now()
    end
    local version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
    if not version then
      return nil, "bad status line: " .. line:sub(1, 200), res
    end
    local head = { line }
    local list, map = {}, {}
    while true do
      local h, err2 = self:read_line(dl())
      if not h then
        return nil, "reading headers: " .. tostring(err2), res
      end
      if h == "" then
        break
      end
      head[#head + 1] = h
      local name, value = h:match("^([^:]+):%s*(.-)%s*$")
      if name then
        list[#list + 1] = { name, value }
        local l = name:lower()
        if map[l] then
          map[l] = map[l] .. ", " .. value
        else
          map[l] = value
        end
      end
    end
    status = tonumber(status)
    if status >= 100 and status < 200 and status ~= 101 then
      res.informational[#res.informational + 1] = {
        status = status, headers = map, header_list = list,
        t = _M.now(),
      }
    else
      res.version, res.status, res.reason = version, status, reason
      res.headers, res.header_list = map, list
      res.raw_head = table.concat(head, "\r\n") .. "\r\n\r\n"
      break
    end
  end
  res.t_headers = _M.now()
  if opts.pause then
    opts.pause(res)
  end

  local parts = {}
  local len = 0
  local function got(data)
    len = len + #data
    if not opts.discard then
      parts[#parts + 1] = data
    end
    if opts.on_data then
      opts.on_data(data, _M.now())
    end
  end

  local h = res.headers
  local te = h["transfer-encoding"]
  local max = opts.read_size or 65536
  if opts.method == "HEAD" or res.status == 204 or res.status == 304
     or res.status == 101 then
    res.framing = "none"
  elseif te and te:lower():find("chunked", 1, true) then
    res.framing = "chunked"
    res.chunks = {}
    while true do
      local sline, err = self:read_line(dl())
      if not sline then
        return nil, "reading chunk size: " .. tostring(err), res
      end
      local size = tonumber(sline:match("^%s*(%x+)"), 16)
      if not size then
        return nil, "bad chunk size line: " .. sline:sub(1, 100), res
      end
      if size == 0 then
        break
      end
      res.chunks[#res.chunks + 1] = size
      local left = size
      while left > 0 do
        local d, err2 = self:read_some(math.min(left, max), dl())
        if not d then
          return nil, "reading chunk: " .. tostring(err2), res
        end
        left = left - #d
        got(d)
      end
      local crlf, err3 = self:read_line(dl())
      if crlf ~= "" then
        return nil, "chunk not followed by CRLF: " .. tostring(crlf or err3), res
      end
    end
    res.trailers = {}
    while true do
      local t, err = self:read_line(dl())
      if not t then
        return nil, "reading trailers: " .. tostring(err), res
      end
      if t == "" then
        break
      end
      local name, value = t:match("^([^:]+):%s*(.-)%s*$")
      if name then
        res.trailers[name:lower()] = value
      end
    end
  elseif h["content-length"] then
    res.framing = "length"
    local left = tonumber(h["content-length"])
    if not left then
      return nil, "bad content-length: " .. h["content-length"], res
    end
    while left > 0 do
      local d, err = self:read_some(math.min(left, max), dl())
      if not d then
        return nil, "reading body (" .. left .. " bytes left): "
                    .. tostring(err), res
      end
      left = left - #d
      got(d)
    end
  else
    res.framing = "close"
    while true do
      local d, err = self:read_some(max, dl())
      if not d then
        if err ~= "closed" then
          return nil, "reading body until close: " .. tostring(err), res
        end
        break
      end
      got(d)
    end
  end
  res.t_end = _M.now()
  res.body = table.concat(parts)
  res.body_len = len
  return res
end

local function has_header(headers, name)
  name = name:lower()
  for _, h in ipairs(headers) do
    if h[1]:lower() == name then
      return true
    end
  end
  return false
end

-- Normalise headers given as a map or as a list of {name, value} into a
-- list (a map value that is a table becomes repeated headers).
local function header_list(headers)
  local out = {}
  if not headers then
    return out
  end
  if headers[1] then
    for _, h in ipairs(headers) do
      out[#out + 1] = { h[1], h[2] }
    end
    return out
  end
  local names = {}
  for k in pairs(headers) do
    names[#names + 1] = k
  end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = headers[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do
        out[#out + 1] = { k, x }
      end
    else
      out[#out + 1] = { k, tostring(v) }
    end
  end
  return out
end

--
-- Request bytes.  req: method (GET), path ("/"), version ("1.1"),
-- host ("localhost"; false for none), headers (map or list), body
-- (string; Content-Length added unless one is given or req.chunked),
-- chunked (list of strings sent as chunks; adds Transfer-Encoding).
--
function _M.request_bytes(req)
  local method = req.method or "GET"
  local out = { string.format("%s %s HTTP/%s", method, req.path or "/",
                              req.version or "1.1") }
  local headers = header_list(req.headers)
  if req.host ~= false and not has_header(headers, "host") then
    table.insert(headers, 1, { "Host", req.host or "localhost" })
  end
  local body = req.body
  if req.chunked then
    if not has_header(headers, "transfer-encoding") then
      headers[#headers + 1] = { "Transfer-Encoding", "chunked" }
    end
    local parts = {}
    for _, c in ipairs(req.chunked) do
      if #c > 0 then
        parts[#parts + 1] = string.format("%x\r\n%s\r\n", #c, c)
      end
    end
    parts[#parts + 1] = "0\r\n\r\n"
    body = table.concat(parts)
  elseif body and not has_header(headers, "content-length") then
    headers[#headers + 1] = { "Content-Length", tostring(#body) }
  end
  for _, h in ipairs(headers) do
    out[#out + 1] = h[1] .. ": " .. h[2]
  end
  return table.concat(out, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- Send one request on this connection and read its response.
function Conn:request(req, opts)
  local ok, err = self:send(_M.request_bytes(req))
  if not ok then
    return nil, "send: " .. tostring(err)
  end
  local o = {}
  for k, v in pairs(opts or {}) do
    o[k] = v
  end
  if o.method == nil then
    o.method = req.method
  end
  return self:read_response(o)
end

-- One request on a new connection (closed after).  Returns res or nil, err.
function _M.request(port, req, opts)
  local c, err = _M.connect(port, opts)
  if not c then
    return nil, err
  end
  local res, err2 = c:request(req or {}, opts)
  c:close()
  return res, err2
end

-- The mock's JSON echo of what the upstream saw.
function _M.echo(res)
  assert(res, "no response")
  return res:json()
end

-- A header as the mock saw it (lower-case name); arrays joined by ", ".
function _M.upstream_header(echo, name)
  local v = echo.headers and echo.headers[name:lower()]
  if type(v) == "table" then
    return table.concat(v, ", ")
  end
  return v
end

-- Run fn(i) n times (repeat_each); fn gets the round number.
function _M.each(n, fn)
  for i = 1, n do
    fn(i)
  end
end

return _M
