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

-- The master's children that proxy (the admin process, named
-- "moongate-admin", is not one of them).
function Gateway:worker_pids()
  if not self.pid then
    return {}
  end
  local out = {}
  for _, p in ipairs(_M.children(self.pid)) do
    local comm = _M.read_file("/proc/" .. p .. "/comm") or ""
    if not comm:find("moongate-admin", 1, true) then
      out[#out + 1] = p
    end
  end
  return out
end

-- The admin process's pid, or nil.
function Gateway:admin_pid()
  for _, p in ipairs(self.pid and _M.children(self.pid) or {}) do
    local comm = _M.read_file("/proc/" .. p .. "/comm") or ""
    if comm:find("moongate-admin", 1, true) then
      return p
    end
  end
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

-- After a reload: wait until the master's n workers are all new (none
-- of them in `old`, a set of pids); returns the list or nil.
function Gateway:wait_new_generation(n, old, timeout)
  local deadline = _M.now() + (timeout or 10)
  repeat
    local w, fresh = self:worker_pids(), true
    for _, p in ipairs(w) do
      if old[p] then fresh = false end
    end
    if fresh and #w == n then
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

-- An Admin API request on port: a table body goes as JSON, a string as
-- is.  Admin writes wait for fsync (slow on a busy disk): 20 s timeout.
-- Returns res and its decoded JSON body (nil when empty); raises when no
-- response came.
function _M.admin(port, method, path, body, headers)
  headers = headers or {}
  local req = { method = method, path = path, headers = headers }
  if type(body) == "table" then
    req.body = _M.json_encode(body)
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  elseif body ~= nil then
    req.body = body
  end
  local res, err = _M.request(port, req, { timeout = 20 })
  assert(res, err)
  local json
  if res.body and #res.body > 0 then
    json = res:json()
  end
  return res, json
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


-------------------------------------------------------------------------------
-- TLS, DNS and failure-injection helpers (tls/dns/balancer/health/retry
-- specs).
-------------------------------------------------------------------------------

do
  local H = _M
  local qq = H.shell_quote

  local function sh(cmd, what)
    local rc, out = H.run(cmd, { timeout = 30 })
    if rc ~= 0 then
      error((what or cmd) .. " failed (" .. tostring(rc) .. "):\n" .. out, 3)
    end
    return out
  end

  local function pem_pair(dir, name)
    local c = {
      name = name,
      crt = dir .. "/" .. name .. ".crt",
      key = dir .. "/" .. name .. ".key",
    }
    c.cert = H.read_file(c.crt)
    c.key_pem = H.read_file(c.key)
    return c
  end

  --
  -- A self-signed test CA in dir: { name, crt, key (paths), cert, key_pem
  -- (PEM text) }.  ECDSA P-256, valid two days.  opts.cn (default name).
  --
  function H.make_ca(dir, name, opts)
    opts = opts or {}
    sh(string.format(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
      .. " -keyout %s -out %s -days 2 -subj %s"
      .. " -addext 'basicConstraints=critical,CA:TRUE'"
      .. " -addext 'keyUsage=critical,keyCertSign,cRLSign'",
      qq(dir .. "/" .. name .. ".key"), qq(dir .. "/" .. name .. ".crt"),
      qq("/CN=" .. (opts.cn or name))), "openssl req (CA " .. name .. ")")
    return pem_pair(dir, name)
  end

  --
  -- A certificate signed by ca (a make_ca/make_cert result) in dir.
  --   opts.cn     subject CN (default: the first DNS name, else name)
  --   opts.san    "DNS:a.test,IP:127.0.0.1" (default DNS:<cn>)
  --   opts.ca     true: an intermediate CA (can sign make_cert leaves)
  --   opts.chain  true: crt/cert also hold ca's certificate (and its own
  --               chain), as a server sends its intermediates
  --   opts.rsa    true: an RSA 2048 key (default ECDSA P-256)
  -- Returns { name, crt, key, cert, key_pem }.
  --
  function H.make_cert(dir, name, ca, opts)
    opts = opts or {}
    local cn = opts.cn or (opts.san and opts.san:match("DNS:([^,]+)")) or name
    local san = opts.san or ("DNS:" .. cn)
    local base = dir .. "/" .. name
    local ext = opts.ca
      and "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
      or ("subjectAltName=" .. san .. "\nbasicConstraints=CA:FALSE\n"
          .. "keyUsage=digitalSignature,keyEncipherment\n"
          .. "extendedKeyUsage=serverAuth,clientAuth\n")
    H.write_file(base .. ".ext", ext)
    local keyopt = opts.rsa and "rsa:2048"
                   or "ec -pkeyopt ec_paramgen_curve:P-256"
    sh(string.format(
      "openssl req -newkey %s -nodes -keyout %s -out %s -subj %s",
      keyopt, qq(base .. ".key"), qq(base .. ".csr"), qq("/CN=" .. cn)),
      "openssl req (" .. name .. ")")
    sh(string.format(
      "openssl x509 -req -in %s -CA %s -CAkey %s -set_serial %d -days 2"
      .. " -out %s -extfile %s",
      qq(base .. ".csr"), qq(ca.crt), qq(ca.key),
      math.random(1, 2 ^ 30), qq(base .. ".crt"), qq(base .. ".ext")),
      "openssl x509 (" .. name .. ")")
    if opts.chain then
      H.write_file(base .. ".crt", H.read_file(base .. ".crt")
                   .. (ca.chain_pem or ca.cert))
    end
    local c = pem_pair(dir, name)
    if opts.ca then
      -- what a leaf signed by this intermediate appends with opts.chain
      c.chain_pem = c.cert .. (ca.chain_pem or "")
    end
    return c
  end

  -- The SHA-256 fingerprint of a PEM file ("AB:CD:..."), for comparisons.
  function H.cert_fingerprint(path)
    local out = sh("openssl x509 -noout -fingerprint -sha256 -in " .. qq(path))
    return out:match("=%s*([%x:]+)")
  end

  -- a scratch directory for curl's files (made again after a cleanup())
  local tmpdir
  local function scratch()
    if not tmpdir or not H.read_file(tmpdir .. "/.scratch") then
      tmpdir = H.new_prefix("tlsclient")
      H.write_file(tmpdir .. "/.scratch", "")
    end
    return tmpdir
  end

  --
  -- One HTTPS request with curl(1) to 127.0.0.1:port.
  --   opts.host      name in the URL; it is the SNI and the Host (curl
  --                  --resolve maps it to 127.0.0.1).  Default "localhost".
  --                  An IP literal sends no SNI.
  --   opts.path      default "/"
  --   opts.method, opts.body, opts.headers (map)
  --   opts.cacert    CA file to verify against; default: no verification
  --   opts.cert, opts.key   client certificate
  --   opts.http1_0   send HTTP/1.0
  --   opts.timeout   seconds (default 10)
  --   opts.times     send the request this many times (curl keeps its
  --                  connection alive between them)
  -- Returns res { status, headers (lower-case), body, ssl_verify_result,
  -- transfers ({ status, ssl_verify_result, connects } each), rc, out } or nil, err when curl failed (err holds curl's message).
  --
  function H.https_request(port, opts)
    opts = opts or {}
    local dir = scratch()
    local host = opts.host or "localhost"
    local id = tostring(math.random(1, 2 ^ 30))
    local hdr, body = dir .. "/h" .. id, dir .. "/b" .. id
    local urlhost = host:find(":", 1, true) and ("[" .. host .. "]") or host
    local url = "https://" .. urlhost .. ":" .. port .. (opts.path or "/")
    local times = opts.times or 1
    local args = { "curl", "-sS", "--max-time", tostring(opts.timeout or 10),
                   "-D", qq(hdr),
                   "-w", qq("%{http_code} %{ssl_verify_result} %{num_connects}\\n") }
    if not host:match("^[%d%.]+$") and not host:find(":", 1, true) then
      args[#args + 1] = "--resolve " .. qq(host .. ":" .. port .. ":127.0.0.1")
    end
    if opts.cacert then
      args[#args + 1] = "--cacert " .. qq(opts.cacert)
    else
      args[#args + 1] = "-k"
    end
    if opts.cert then
      args[#args + 1] = "--cert " .. qq(opts.cert) .. " --key " .. qq(opts.key)
    end
    if opts.http1_0 then
      args[#args + 1] = "--http1.0"
    else
      args[#args + 1] = "--http1.1"
    end
    if opts.method then
      args[#args + 1] = "-X " .. qq(opts.method)
    end
    if opts.body then
      local bf = dir .. "/req" .. id
      H.write_file(bf, opts.body)
      args[#args + 1] = "--data-binary @" .. qq(bf)
    end
    for k, v in pairs(opts.headers or {}) do
      args[#args + 1] = "-H " .. qq(k .. ": " .. v)
    end
    -- the same URL `times` times: curl reuses its connection; the last
    -- body is kept
    for i = 1, times do
      args[#args + 1] = "-o " .. (i == times and qq(body) or "/dev/null")
      args[#args + 1] = qq(url)
    end
    local rc, out = H.run(table.concat(args, " "), { timeout = (opts.timeout or 10) + 5 })
    local heads = H.read_file(hdr) or ""
    local res = { rc = rc, out = out, body = H.read_file(body) or "",
                  headers = {} }
    os.remove(hdr)
    os.remove(body)
    -- one "status verify connects" line per transfer
    res.transfers = {}
    for code, verify, conns in out:gmatch("(%d%d%d) (%-?%d+) (%d+)\n") do
      res.transfers[#res.transfers + 1] = { status = tonumber(code),
        ssl_verify_result = tonumber(verify), connects = tonumber(conns) }
    end
    local last = res.transfers[#res.transfers] or {}
    res.status = last.status
    res.ssl_verify_result = last.ssl_verify_result
    -- the last response head in the file (after any 1xx)
    for block in heads:gmatch("HTTP/[^\r\n]*\r?\n.-\r?\n\r?\n") do
      res.headers = {}
      res.status_line = block:match("^[^\r\n]*")
      for name, value in block:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do
        local l = name:lower()
        res.headers[l] = res.headers[l] and (res.headers[l] .. ", " .. value)
                         or value
      end
    end
    if rc ~= 0 or not res.status or res.status == 0 then
      return nil, "curl rc " .. tostring(rc) .. ": " .. out, res
    end
    function res.json(self)
      local v, err = cjson.decode(self.body or "")
      if v == nil then
        error("response body is not JSON (" .. tostring(err) .. "): "
              .. tostring(self.body):sub(1, 300), 2)
      end
      return v
    end
    return res
  end

  --
  -- One TLS handshake with `openssl s_client` to 127.0.0.1:port.
  --   opts.servername  SNI (default none: -noservername)
  --   opts.alpn        ALPN list ("http/1.1" or "h2,http/1.1")
  --   opts.cafile      verify against this CA (result in verify_code)
  --   opts.sess_out / opts.sess_in   session file to save / resume
  --   opts.args        extra arguments (a string, shell syntax)
  --   opts.send        bytes written after the handshake (then EOF)
  -- Returns { ok (handshake done), subject, issuer, protocol, cipher, alpn,
  -- reused, verify_code, out }.
  --
  function H.tls_handshake(port, opts)
    opts = opts or {}
    local args = { "openssl s_client -connect", "127.0.0.1:" .. port }
    if opts.servername then
      args[#args + 1] = "-servername " .. qq(opts.servername)
    else
      args[#args + 1] = "-noservername"
    end
    if opts.alpn then args[#args + 1] = "-alpn " .. qq(opts.alpn) end
    if opts.cafile then args[#args + 1] = "-CAfile " .. qq(opts.cafile) end
    if opts.sess_out then args[#args + 1] = "-sess_out " .. qq(opts.sess_out) end
    if opts.sess_in then args[#args + 1] = "-sess_in " .. qq(opts.sess_in) end
    if opts.args then args[#args + 1] = opts.args end
    local input = opts.send and ("printf %s " .. qq(opts.send)) or "true"
    -- -ign_eof keeps s_client reading until the server closes when there
    -- is a request to answer
    if opts.send then args[#args + 1] = "-ign_eof" end
    -- (sh -c: run() gives the command /dev/null as its stdin)
    local cmd = "sh -c " .. qq(input .. " | " .. table.concat(args, " "))
    local _, out = H.run(cmd, { timeout = opts.timeout or 10 })
    local r = { out = out }
    r.subject = out:match("\nsubject=%s*([^\n]*)")
    r.issuer = out:match("\nissuer=%s*([^\n]*)")
    local kind, proto, cipher = out:match("\n(%a+), ([%w%.%(%)]+), Cipher is ([%w%-%(%)]+)")
    r.reused = kind == "Reused"
    r.protocol = proto
    r.cipher = cipher
    r.ok = cipher ~= nil and cipher ~= "(NONE)"
    r.alpn = out:match("ALPN protocol: ([^\n]+)")
    r.verify_code = tonumber(out:match("Verify return code: (%d+)") or "")
    return r
  end

  --
  -- A TLS server made of `openssl s_server -www` on a free port: it answers
  -- every request with a status page (HTTP/1.0, closed after) that shows
  -- the client certificate it got.  opts.cert (make_cert result),
  -- opts.verify_ca (require a client certificate signed by this CA).
  -- Returns { port, pid, out, stop() }.
  --
  function H.start_openssl_server(opts)
    local dir = H.new_prefix("s_server")
    local port = H.free_port()
    local out = dir .. "/s_server.out"
    local cmd = string.format("openssl s_server -accept 127.0.0.1:%d -cert %s"
                              .. " -key %s -www -no_tls1_3",
                              port, qq(opts.cert.crt), qq(opts.cert.key))
    if opts.verify_ca then
      cmd = cmd .. " -Verify 1 -verify_return_error -CAfile " .. qq(opts.verify_ca.crt)
    end
    local pid = H.spawn(cmd, out)
    if not H.wait_port(port, 10, pid) then
      H.terminate(pid, "KILL", 1)
      error("openssl s_server did not start:\n" .. (H.read_file(out) or ""), 2)
    end
    return setmetatable({ pid = pid, port = port, ports = { port },
                          out = out, dir = dir }, Mock)
  end

  --
  -- start_gateway with a plain and a TLS listener: proxy_listen =
  -- "127.0.0.1:P reuseport, 127.0.0.1:S ssl reuseport".  gw.port is the
  -- plain port, gw.ssl_port the TLS one.  opts as start_gateway (opts.conf
  -- may override proxy_listen; then set opts.ssl_port too).
  --
  function H.start_tls_gateway(opts)
    opts = opts or {}
    local port = opts.port or H.free_port()
    local ssl_port = opts.ssl_port or H.free_port()
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.port = port
    o.conf = {}
    for k, v in pairs(opts.conf or {}) do o.conf[k] = v end
    if o.conf.proxy_listen == nil then
      o.conf.proxy_listen = string.format(
        "127.0.0.1:%d reuseport, 127.0.0.1:%d ssl reuseport", port, ssl_port)
    end
    local gw = H.start_gateway(o)
    gw.ssl_port = ssl_port
    if opts.wait ~= false and not H.wait_port(ssl_port, 10, gw.pid) then
      error("moongate did not accept on its TLS port " .. ssl_port .. ":\n"
            .. H.tail(gw:error_log()), 2)
    end
    return gw
  end

  -------------------------------------------------------------------------
  -- mock DNS server (build/mockdns)
  -------------------------------------------------------------------------

  local Dns = {}
  Dns.__index = Dns
  H.Dns = Dns

  local function zone_text(records)
    if type(records) == "string" then
      return records
    end
    return table.concat(records, "\n") .. "\n"
  end

  --
  -- Start build/mockdns on a free UDP/TCP port with a zone: a string in
  -- the zone file format (spec/helpers/mockdns.c) or a list of lines such
  -- as "api.test A 1 127.0.0.1".  Returns { port, pid, zone (path),
  -- resolver ("127.0.0.1:PORT", for dns_resolver) }.
  --
  function H.start_mockdns(records)
    local bin = H.build .. "/mockdns"
    if not io.open(bin, "rb") then
      error("mock DNS server not built: " .. bin, 2)
    end
    local dir = H.new_prefix("mockdns")
    local zone = H.write_file(dir .. "/zone", zone_text(records or {}))
    local out = dir .. "/mockdns.out"
    local pid = H.spawn(qq(bin) .. " 0 " .. qq(zone), out)
    procs[#procs].helper = true
    local deadline = H.now() + 10
    local port
    while true do
      port = tonumber((H.read_file(out) or ""):match("ready (%d+)"))
      if port then break end
      if not H.alive(pid) or H.now() > deadline then
        H.terminate(pid, "KILL", 1)
        error("mockdns did not start:\n" .. (H.read_file(out) or ""), 2)
      end
      socket.sleep(0.02)
    end
    return setmetatable({ pid = pid, port = port, zone = zone, out = out,
                          dir = dir, resolver = "127.0.0.1:" .. port }, Dns)
  end

  -- Replace the zone and make the server re-read it (SIGHUP).
  function Dns:set(records)
    H.write_file(self.zone, zone_text(records))
    H.kill(self.pid, "HUP")
    socket.sleep(0.2)
  end

  -- Queries received so far for name (any type, or only qtype), counted
  -- from the server's "query NAME TYPE" lines.
  function Dns:queries(name, qtype)
    local n = 0
    for qn, qt in (H.read_file(self.out) or ""):gmatch("query (%S+) (%S+)") do
      if (not name or qn == name:lower():gsub("%.$", ""))
         and (not qtype or qt == qtype) then
        n = n + 1
      end
    end
    return n
  end

  function Dns:stop()
    return H.terminate(self.pid, "TERM", 5)
  end

  -------------------------------------------------------------------------
  -- more upstreams and clients
  -------------------------------------------------------------------------

  local SLOW_UPSTREAM = [[
local socket = require "socket"
local port, delay = tonumber(arg[1]), tonumber(arg[2])
local srv = assert(socket.bind("127.0.0.1", port))
io.stdout:write("ready\n")
io.stdout:flush()
while true do
  local c = srv:accept()
  if c then
    c:settimeout(5)
    local len = 0
    while true do
      local l = c:receive("*l")
      if not l or l == "" then break end
      local n = l:lower():match("^content%-length:%s*(%d+)")
      if n then len = tonumber(n) end
    end
    if len > 0 then c:receive(len) end
    socket.sleep(delay)
    local body = "slow\n"
    c:send("HTTP/1.1 200 OK\r\nX-Upstream-Port: " .. port
           .. "\r\nContent-Type: text/plain\r\nContent-Length: " .. #body
           .. "\r\nConnection: close\r\n\r\n" .. body)
    c:close()
  end
end
]]

  --
  -- A slow upstream: one connection at a time, answers every request
  -- (whatever its path) 200 "slow\n" with X-Upstream-Port after `delay`
  -- seconds, then closes.  Returns { port, pid, stop() }.
  --
  function H.start_slow_upstream(delay)
    local dir = H.new_prefix("slow")
    local script = H.write_file(dir .. "/slow.lua", SLOW_UPSTREAM)
    local port = H.free_port()
    local out = dir .. "/slow.out"
    local pid = H.spawn("$(command -v lua5.1 || echo lua) " .. qq(script) .. " "
                        .. port .. " " .. tostring(delay), out)
    procs[#procs].helper = true
    local deadline = H.now() + 10
    while not (H.read_file(out) or ""):find("ready", 1, true) do
      if not H.alive(pid) or H.now() > deadline then
        H.terminate(pid, "KILL", 1)
        error("slow upstream did not start: " .. (H.read_file(out) or ""), 2)
      end
      socket.sleep(0.02)
    end
    return setmetatable({ pid = pid, ports = { port }, port = port,
                          out = out, dir = dir }, Mock)
  end

  -- Like connect(), from a given local address (any 127.x.y.z works on
  -- Linux loopback), for tests that hash on the client address.
  function H.connect_from(port, local_ip, opts)
    opts = opts or {}
    local s = assert(socket.tcp())
    s:settimeout(opts.connect_timeout or 5)
    local ok, err = s:bind(local_ip, 0)
    if not ok then
      s:close()
      return nil, "bind " .. local_ip .. ": " .. tostring(err)
    end
    ok, err = s:connect("127.0.0.1", port)
    if not ok then
      s:close()
      return nil, "connect to " .. port .. ": " .. tostring(err)
    end
    s:setoption("tcp-nodelay", true)
    return setmetatable({ sock = s, buf = "", eof = false, port = port,
                          timeout = opts.timeout or 5 }, Conn)
  end

  -------------------------------------------------------------------------
  -- small request helpers
  -------------------------------------------------------------------------

  -- Send n requests (one connection each) and count the X-Upstream-Port
  -- of the answers: returns counts (port string -> n), statuses (status
  -- -> n), list of ports in order.  req: a H.request table or a function
  -- (i) -> table.
  function H.spread(port, n, req, opts)
    local counts, statuses, seq = {}, {}, {}
    for i = 1, n do
      local r = type(req) == "function" and req(i) or req
      local res, err = H.request(port, r, opts or { timeout = 10 })
      local st = res and res.status or ("error: " .. tostring(err))
      statuses[st] = (statuses[st] or 0) + 1
      local p = res and res.headers["x-upstream-port"] or "-"
      counts[p] = (counts[p] or 0) + 1
      seq[i] = p
    end
    return counts, statuses, seq
  end

  -- Poll fn() every 50 ms until it returns a truthy value or timeout
  -- seconds pass.  Returns that value, or nil.
  function H.wait_until(fn, timeout, step)
    local deadline = H.now() + (timeout or 5)
    repeat
      local v = fn()
      if v then
        return v
      end
      socket.sleep(step or 0.05)
    until H.now() > deadline
    return nil
  end
end
return _M
