-- moongate.socket -- ngx.socket.tcp: OpenResty's cosocket API over the
-- core's non-blocking sockets (core/lua/mg_lua_socket.c).
--
-- A socket object is a Lua table holding the core's socket id (an int:
-- slot and generation, never a pointer) and the bytes read but not yet
-- consumed.  Every call that waits is split in two (lua-resty-core
-- style): C arms a watcher and returns AGAIN, we yield the running
-- coroutine through moongate.context.wait, C resumes it when the event
-- fired, and mg_lua_socket_result says how it went.  Reads are done in C
-- one recv(2) at a time; the patterns ("*l", "*a", a size,
-- receiveuntil) are matched here on the buffered string.
--
-- Lifecycle: a socket belongs to the request (or ngx.timer run) that
-- connected it.  The core closes what the owner left open when it ends,
-- even while its coroutine is suspended on that socket; the Lua object
-- then only holds a stale id and answers nil, "closed".
--
-- Phases: rewrite, access and ngx.timer callbacks (where the core can
-- suspend the coroutine); elsewhere every method raises "API disabled in
-- the context of <phase>", as OpenResty does in header_filter,
-- body_filter and log.
--
-- Rejected: matching patterns in C (ngx_lua's state machines) -- one
-- recv per call and Lua string search are fast enough for plugin traffic
-- and keep the C side to event plumbing.

local api = require "moongate.ffi"
local context = require "moongate.context"

local C = api.C
local OK, AGAIN, DONE, DECLINED = api.OK, api.AGAIN, api.DONE, api.DECLINED
local sp, sn = api.sp, api.sn
local str, cstr = api.str, api.cstr
local type = type
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local concat = table.concat
local find = string.find
local sub = string.sub
local gsub = string.gsub
local floor = math.floor

local _M = {
    DEFAULT_TIMEOUT = 60000,       -- lua_socket_{connect,send,read}_timeout
    KEEPALIVE_TIMEOUT = 60000,     -- lua_socket_keepalive_timeout
    POOL_SIZE = 30,                -- lua_socket_pool_size
}

local idbuf
if api.fake then
    idbuf = {}
else
    idbuf = require("ffi").new("int[1]")
end

local function reason()
    return cstr(C.mg_lua_socket_error()) or "closed"
end

-- The running request or timer, or an error naming the phase.
local function owner(level)
    local ctx = context.current
    if ctx then
        if ctx.timer then
            return ctx
        end
        local ph = ctx.phase
        if ctx.r and (ph == "rewrite" or ph == "access") then
            return ctx
        end
    end
    local phase = ctx and ctx.phase
    if not phase then
        phase = ctx and ctx.timer and "timer" or "init"
    end
    error("API disabled in the context of " .. tostring(phase), level + 1)
end

local tcp = {}
local mt = { __index = tcp }

--- ngx.socket.tcp(): a new, unconnected socket object.
function _M.tcp()
    owner(2)
    return setmetatable({
        id = nil,
        buf = "",
        ct = _M.DEFAULT_TIMEOUT, st = _M.DEFAULT_TIMEOUT,
        rt = _M.DEFAULT_TIMEOUT,
        reused = 0,
    }, mt)
end

-- Wait for the core to finish an operation on self.id that returned
-- AGAIN.  true, or nil, reason.
local function wait(self)
    context.wait("cosocket")
    if C.mg_lua_socket_result(self.id) == OK then
        return true
    end
    return nil, reason()
end

local function ms(v)
    v = tonumber(v)
    if not v or v < 0 then
        return nil
    end
    return floor(v)
end

function tcp:settimeout(t)
    t = ms(t)
    if t == nil then
        error("bad argument #1 to 'settimeout' (non-negative number " ..
              "expected)", 2)
    end
    self.ct, self.st, self.rt = t, t, t
end

function tcp:settimeouts(c, s, r)
    self.ct = ms(c) or self.ct
    self.st = ms(s) or self.st
    self.rt = ms(r) or self.rt
end

--- connect(host, port[, opts]) or connect("unix:/path"[, opts]).
-- opts.pool names the keep-alive pool (default "host:port").
function tcp:connect(host, port, opts)
    local ctx = owner(2)
    if type(port) == "table" then
        opts, port = port, nil
    end
    if type(host) ~= "string" or host == "" then
        error("bad argument #1 to 'connect' (string expected)", 2)
    end
    local unix = sub(host, 1, 5) == "unix:"
    local p = tonumber(port)
    if not unix then
        if not p or p < 1 or p > 65535 or p ~= floor(p) then
            return nil, "bad port number: " .. tostring(port)
        end
    end
    if self.id then
        C.mg_lua_socket_close(self.id)  -- OpenResty closes the old one
        self.id = nil
    end
    self.buf = ""
    local key = opts and opts.pool
    if key == nil then
        key = unix and host or (host .. ":" .. p)
    end
    key = tostring(key)
    local rc = C.mg_lua_socket_connect(ctx.r, ctx.timer, host, #host, p or 0,
                                       key, #key, self.ct, idbuf)
    local id = tonumber(idbuf[0])
    if id and id > 0 then
        self.id = id
    end
    if rc == AGAIN then
        local ok, err = wait(self)
        if not ok then
            C.mg_lua_socket_close(self.id)
            self.id = nil
            return nil, err
        end
    elseif rc ~= OK then
        local err = reason()
        if self.id then
            C.mg_lua_socket_close(self.id)
            self.id = nil
        end
        return nil, err
    end
    self.reused = tonumber(C.mg_lua_socket_reused(self.id)) or 0
    return 1
end

function tcp:getreusedtimes()
    if not self.id then
        return nil, "closed"
    end
    local n = tonumber(C.mg_lua_socket_reused(self.id))
    if n == DECLINED then
        return nil, "closed"
    end
    return n
end

--- sslhandshake(reused_session, server_name, ssl_verify[, send_status_req])
-- Returns true (there is no session userdata to hand out: sessions are
-- cached per server name by the core) or nil, err.
-- ssl_verify "cluster" (moongate only): hybrid mode's shared mTLS --
-- present cluster_cert / cluster_cert_key and accept only a peer that
-- presents the same certificate (moongate.cluster.data_plane).  Such a
-- connection must not go back to a keepalive pool.
function tcp:sslhandshake(_, server_name, verify)
    owner(2)
    if not self.id then
        return nil, "closed"
    end
    local name = server_name and tostring(server_name) or ""
    local mode = verify == "cluster" and 2 or (verify and 1 or 0)
    local rc = C.mg_lua_socket_sslhandshake(self.id, name, #name, mode,
                                            self.ct)
    if rc == AGAIN then
        local ok, err = wait(self)
        if not ok then
            return nil, err
        end
    elseif rc ~= OK then
        return nil, reason()
    end
    return true
end

local function flatten(out, v)
    local t = type(v)
    if t == "table" then
        for i = 1, #v do
            if flatten(out, v[i]) == nil then
                return nil
            end
        end
    elseif t == "string" then
        out[#out + 1] = v
    elseif t == "number" then
        out[#out + 1] = tostring(v)
    elseif t == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif v == nil then
        out[#out + 1] = "nil"
    else
        return nil
    end
    return out
end

--- send(data): data is a string or a (nested) array of strings/numbers.
-- Returns the number of bytes sent, or nil, err.
function tcp:send(data)
    owner(2)
    if not self.id then
        return nil, "closed"
    end
    if type(data) ~= "string" then
        local t = flatten({}, data)
        if not t then
            error("bad argument #1 to 'send' (string, number, boolean, " ..
                  "nil, or array table expected, got " .. type(data) .. ")", 2)
        end
        data = concat(t)
    end
    local rc = C.mg_lua_socket_send(self.id, data, #data, self.st)
    if rc == AGAIN then
        local ok, err = wait(self)
        if not ok then
            return nil, err
        end
    elseif rc ~= OK then
        return nil, reason()
    end
    return #data
end

-- Read once more into self.buf (at most max bytes, 0: any).  true, or
-- nil, err ("closed" at end of stream).
local function fill(self, max)
    if not self.id then
        return nil, "closed"
    end
    while true do
        local rc = C.mg_lua_socket_recv(self.id, max or 0, self.rt, sp, sn)
        if rc == OK then
            local s = str(sp[0], sn[0])
            self.buf = self.buf == "" and s or self.buf .. s
            return true
        elseif rc == AGAIN then
            local ok, err = wait(self)
            if not ok then
                return nil, err
            end
        elseif rc == DONE then
            return nil, "closed"
        else
            return nil, reason()
        end
    end
end

local function take(self, n)
    local s = sub(self.buf, 1, n)
    self.buf = sub(self.buf, n + 1)
    return s
end

local function take_all(self)
    local s = self.buf
    self.buf = ""
    return s
end

--- receive(pattern): "*l" (default: a line, LF stripped, CRs dropped),
-- "*a" (until the peer closes), or a byte count.  nil, err, partial on
-- failure.
function tcp:receive(pat, prefix)
    owner(2)
    if not self.id then
        return nil, "closed"
    end
    prefix = prefix or ""
    if pat == nil then
        pat = "*l"
    end
    if type(pat) == "number" or tonumber(pat) then
        local n = floor(tonumber(pat))
        if n < 0 then
            error("bad argument #2 to 'receive' (bad pattern argument)", 2)
        end
        while #self.buf < n do
            local ok, err = fill(self, n - #self.buf)
            if not ok then
                return nil, err, prefix .. take_all(self)
            end
        end
        return prefix .. take(self, n)
    end
    if pat == "*a" or pat == "a" then
        local parts = { prefix, self.buf }
        self.buf = ""
        while true do
            local ok, err = fill(self)
            if not ok then
                if err == "closed" then
                    return concat(parts)
                end
                return nil, err, concat(parts)
            end
            parts[#parts + 1] = self.buf
            self.buf = ""
        end
    end
    if pat == "*l" or pat == "l" then
        local from = 1
        while true do
            local i = find(self.buf, "\n", from, true)
            if i then
                local line = sub(self.buf, 1, i - 1)
                self.buf = sub(self.buf, i + 1)
                if find(line, "\r", 1, true) then
                    line = gsub(line, "\r", "")
                end
                return prefix .. line
            end
            from = #self.buf + 1
            local ok, err = fill(self)
            if not ok then
                return nil, err, prefix .. take_all(self)
            end
        end
    end
    error("bad argument #1 to 'receive' (bad pattern argument)", 2)
end

--- receiveany(max): whatever is there (waiting for at least one byte),
-- at most max bytes.
function tcp:receiveany(max)
    owner(2)
    max = tonumber(max)
    if not max or max < 1 then
        error("bad argument #2 to 'receiveany' (bad max argument)", 2)
    end
    if not self.id then
        return nil, "closed"
    end
    if self.buf == "" then
        local ok, err = fill(self, max)
        if not ok then
            return nil, err
        end
    end
    return take(self, floor(max))
end

--- receiveuntil(pattern[, { inclusive = bool }]): an iterator reading up
-- to (and consuming) the next occurrence of pattern.  it() returns the
-- data before it (or including it when inclusive).  it(size) returns at
-- most size bytes per call; once the pattern was reached it returns nil
-- (no error), and the next call starts over.  nil, err, partial on
-- failure.
function tcp:receiveuntil(pattern, opts)
    if type(pattern) ~= "string" or pattern == "" then
        error("bad argument #2 to 'receiveuntil' (pattern is empty)", 2)
    end
    local inclusive = opts and opts.inclusive
    local plen = #pattern
    local finished = false
    return function(size)
        owner(2)
        if not self.id then
            return nil, "closed"
        end
        if finished then
            finished = false
            return nil, nil, nil
        end
        size = tonumber(size)
        local from = 1
        while true do
            local i = find(self.buf, pattern, from, true)
            if i then
                local n = inclusive and (i + plen - 1) or (i - 1)
                if size and n > size then
                    return take(self, floor(size))
                end
                local data = sub(self.buf, 1, n)
                self.buf = sub(self.buf, i + plen)
                if size then
                    finished = true
                end
                return data
            end
            -- bytes that cannot start a match may go out now
            local safe = #self.buf - plen + 1
            if size and safe >= size then
                return take(self, floor(size))
            end
            from = safe > 1 and safe or 1
            local ok, err = fill(self)
            if not ok then
                return nil, err, take_all(self)
            end
        end
    end
end

--- setkeepalive(timeout_ms, size): back to the pool of its key; the
-- object is closed afterwards.  nil, err when data is left unread.
function tcp:setkeepalive(timeout, size)
    owner(2)
    if not self.id then
        return nil, "closed"
    end
    local id = self.id
    self.id = nil
    if self.buf ~= "" then
        self.buf = ""
        C.mg_lua_socket_close(id)
        return nil, "unread data in buffer"
    end
    timeout = ms(timeout) or _M.KEEPALIVE_TIMEOUT
    size = tonumber(size) or _M.POOL_SIZE
    if C.mg_lua_socket_setkeepalive(id, timeout, floor(size)) ~= OK then
        return nil, reason()
    end
    return 1
end

function tcp:close()
    if not self.id then
        return nil, "closed"
    end
    local id = self.id
    self.id = nil
    self.buf = ""
    if C.mg_lua_socket_close(id) ~= OK then
        return nil, reason()
    end
    return 1
end

function tcp:setoption()
    return true     -- keepalive/reuseaddr/tcp-nodelay: nodelay is always on
end

--- ngx.socket.connect(host, port): tcp() + connect().
function _M.connect(host, port, opts)
    local s = _M.tcp()
    local ok, err = s:connect(host, port, opts)
    if not ok then
        return nil, err
    end
    return s
end

--- Open sockets of this worker: in use, and idle in pools (specs).
function _M.count()
    return tonumber(C.mg_lua_socket_count(0)), tonumber(C.mg_lua_socket_count(1))
end

return _M
