-- resty.http -- an HTTP/1.1 client for plugins, compatible with the
-- commonly used API of lua-resty-http (ledgetech) on top of
-- ngx.socket.tcp (moongate.socket): it never blocks the worker.
--
--   local httpc = require("resty.http").new()
--   local res, err = httpc:request_uri("http://127.0.0.1:9000/x", {
--       method = "POST", body = "...", headers = { ... } })
--
-- Streaming: httpc:connect{...}, httpc:request{...} returns res after the
-- head; res.body_reader(size) yields the body piece by piece (chunked,
-- Content-Length, or until close), res:read_body() reads it whole, and
-- httpc:set_keepalive() hands the connection back to the worker's pool
-- once the body was read (closing it instead when it cannot be reused).
-- HEAD, 1xx, 204 and 304 responses have no body.
--
-- Lifecycle: the object belongs to the request (or timer) that connected
-- it, like the socket under it.
--
-- Rejected: a client in C shared with the proxy path -- plugins need the
-- lua-resty-http API shape (iterators, has_body, pools by name), and the
-- proxy's client is tied to services and balancers.

local http_headers = require "resty.http_headers"

local ngx = ngx
local rawget = rawget
local pcall = pcall
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local concat = table.concat
local lower = string.lower
local upper = string.upper
local find = string.find
local sub = string.sub
local match = string.match
local gsub = string.gsub
local format = string.format

local _M = { _VERSION = "0.17.1" }
local mt = { __index = _M }

local USER_AGENT = "lua-resty-http/" .. _M._VERSION ..
                   " (Lua) moongate"
local MAX_HEADERS = 1000
local DEFAULT_CHUNK = 65536

local function socket_tcp()
    local ng = ngx or rawget(_G, "ngx")
    if ng and ng.socket and ng.socket.tcp then
        return ng.socket.tcp()
    end
    return require("moongate.socket").tcp()
end

--- A new client (nil, err when no socket can be made here).
function _M.new()
    local ok, sock = pcall(socket_tcp)
    if not ok then
        return nil, sock
    end
    return setmetatable({ sock = sock, keepalive = true }, mt)
end

function _M.set_timeout(self, timeout)
    return self.sock:settimeout(timeout)
end

function _M.set_timeouts(self, connect, send, read)
    return self.sock:settimeouts(connect, send, read)
end

function _M.set_proxy_options()
    -- no forward proxy support; kept so callers that set it still run
end

function _M.ssl_handshake(self, session, server_name, verify)
    self.ssl = true
    return self.sock:sslhandshake(session, server_name, verify)
end

--- connect(options) or connect(host, port[, options]).
-- options: scheme, host, port, ssl_server_name, ssl_verify (default
-- true), pool, pool_size, backlog.
function _M.connect(self, opts, port, extra)
    if type(opts) ~= "table" then
        local o = {}
        for k, v in pairs(extra or {}) do
            o[k] = v
        end
        o.host, o.port = opts, port
        opts = o
    end
    local host = opts.host
    if type(host) ~= "string" or host == "" then
        return nil, "no host given"
    end
    local scheme = opts.scheme or "http"
    local ssl = scheme == "https"
    local unix = sub(host, 1, 5) == "unix:"
    port = tonumber(opts.port) or (ssl and 443 or 80)
    local sni = opts.ssl_server_name or (not unix and host) or nil
    local verify = opts.ssl_verify ~= false
    local pool = opts.pool
    if pool == nil then
        pool = unix and host or (host .. ":" .. port)
        if ssl then
            pool = pool .. ":" .. tostring(sni) .. ":" .. tostring(verify)
        end
    end
    local ok, err = self.sock:connect(host, unix and nil or port,
                                      { pool = pool,
                                        pool_size = opts.pool_size,
                                        backlog = opts.backlog })
    if not ok then
        return nil, err
    end
    self.host, self.port, self.ssl = host, port, ssl
    self.keepalive = true
    self.response_pending = nil
    if ssl and self.sock:getreusedtimes() == 0 then
        ok, err = self.sock:sslhandshake(nil, sni, verify)
        if not ok then
            self.sock:close()
            return nil, err
        end
    end
    return true
end

function _M.get_reused_times(self)
    return self.sock:getreusedtimes()
end

function _M.close(self)
    return self.sock:close()
end

--- Back to the pool when the last response was read in full and the
-- server allows reuse; closed otherwise (then 1 too, as lua-resty-http).
function _M.set_keepalive(self, ...)
    if self.response_pending then
        return nil, "response not fully read"
    end
    if self.keepalive then
        return self.sock:setkeepalive(...)
    end
    local ok, err = self.sock:close()
    if not ok and err ~= "closed" then
        return nil, err
    end
    return 1
end

--- parse_uri(uri[, query_in_path = true]): { scheme, host, port, path,
-- query } (array slots 1..5, lua-resty-http's shape), or nil, err.
function _M.parse_uri(_, uri, query_in_path)
    if type(uri) ~= "string" then
        return nil, "bad uri: " .. tostring(uri)
    end
    local scheme, rest = match(uri, "^(%a[%w+.-]*)://(.*)$")
    if not scheme then
        rest = match(uri, "^//(.*)$")
        if not rest then
            return nil, "bad uri: " .. uri
        end
        scheme = "http"
    end
    scheme = lower(scheme)
    if scheme ~= "http" and scheme ~= "https" then
        return nil, "bad uri: " .. uri
    end
    local authority, tail = match(rest, "^([^/?#]*)(.*)$")
    authority = gsub(authority, "^.*@", "")     -- userinfo is not sent
    local host, port
    if sub(authority, 1, 1) == "[" then
        host, port = match(authority, "^(%[[^%]]+%])(.*)$")
    else
        host, port = match(authority, "^([^:]*)(.*)$")
    end
    if not host or host == "" then
        return nil, "bad uri: " .. uri
    end
    if port and port ~= "" then
        port = tonumber(match(port, "^:(%d+)$"))
        if not port then
            return nil, "bad uri: " .. uri
        end
    else
        port = scheme == "https" and 443 or 80
    end
    tail = gsub(tail, "#.*$", "")
    local path, query = match(tail, "^([^?]*)%??(.*)$")
    if path == "" then
        path = "/"
    end
    if query_in_path ~= false then
        if query ~= "" then
            path = path .. "?" .. query
        end
        query = nil
    end
    return { scheme, host, port, path, query }
end

local function encode_args(t)
    local ng = ngx or rawget(_G, "ngx")
    if ng and ng.encode_args then
        return ng.encode_args(t)
    end
    return require("moongate.codec").encode_args(t)
end

-- the request head ----------------------------------------------------------

local function host_header(self)
    local h = self.host or ""
    if sub(h, 1, 5) == "unix:" then
        return "localhost"
    end
    local default = self.ssl and 443 or 80
    if self.port and self.port ~= default then
        return h .. ":" .. self.port
    end
    return h
end

local function add_header(out, k, v)
    if type(v) == "table" then
        for _, x in ipairs(v) do
            add_header(out, k, x)
        end
        return
    end
    v = tostring(v)
    if find(k, "[\r\n:]") or find(v, "[\r\n]") then
        error("invalid header: " .. k, 4)
    end
    out[#out + 1] = k .. ": " .. v .. "\r\n"
end

local function chunk_bytes(s)
    if s == "" then
        return ""
    end
    return format("%x\r\n", #s) .. s .. "\r\n"
end

-- the response --------------------------------------------------------------

local function read_head(sock)
    local line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    local maj, min, status, reason = match(line,
        "^HTTP/(%d)%.(%d) (%d%d%d) ?(.*)$")
    if not maj then
        return nil, "bad status line: " .. sub(line, 1, 80)
    end
    local headers = http_headers.new()
    for _ = 1, MAX_HEADERS do
        local l, e = sock:receive("*l")
        if not l then
            return nil, e
        end
        if l == "" then
            return {
                status = tonumber(status),
                reason = reason,
                version = tonumber(maj) + tonumber(min) / 10,
                headers = headers,
            }
        end
        local k, v = match(l, "^([^:%s]+)%s*:%s*(.-)%s*$")
        if k then
            local old = headers[k]
            if old == nil then
                headers[k] = v
            elseif type(old) == "table" then
                old[#old + 1] = v
            else
                headers[k] = { old, v }
            end
        end
    end
    return nil, "too many response headers"
end

local function header_str(v)
    if type(v) == "table" then
        return concat(v, ", ")
    end
    return v
end

-- An iterator over the body: chunk, or nil when done, or nil, err.
local function body_reader(self, sock, chunked, length)
    local left = length              -- Content-Length bytes still to read
    local chunk_left = 0             -- bytes of the current chunk
    local done = false

    return function(max)
        if done then
            return nil
        end
        max = tonumber(max) or DEFAULT_CHUNK
        if max <= 0 then
            max = DEFAULT_CHUNK
        end
        if chunked then
            if chunk_left == 0 then
                local line, err = sock:receive("*l")
                if not line then
                    self.keepalive = false
                    return nil, err
                end
                local size = tonumber(match(line, "^%s*(%x+)"), 16)
                if not size then
                    self.keepalive = false
                    return nil, "bad chunk size: " .. sub(line, 1, 40)
                end
                if size == 0 then
                    -- trailers, up to the empty line
                    for _ = 1, MAX_HEADERS do
                        local l, e = sock:receive("*l")
                        if not l then
                            self.keepalive = false
                            return nil, e
                        end
                        if l == "" then
                            break
                        end
                    end
                    done = true
                    self.response_pending = nil
                    return nil
                end
                chunk_left = size
            end
            local n = chunk_left < max and chunk_left or max
            local data, err = sock:receive(n)
            if not data then
                self.keepalive = false
                return nil, err
            end
            chunk_left = chunk_left - n
            if chunk_left == 0 then
                local crlf, e = sock:receive("*l")
                if crlf ~= "" then
                    self.keepalive = false
                    return nil, e or "bad chunk end"
                end
            end
            return data
        end
        if left then
            if left == 0 then
                done = true
                self.response_pending = nil
                return nil
            end
            local n = left < max and left or max
            local data, err = sock:receive(n)
            if not data then
                self.keepalive = false
                return nil, err
            end
            left = left - n
            if left == 0 then
                done = true
                self.response_pending = nil
            end
            return data
        end
        -- no framing: the body ends when the server closes
        local data, err = sock:receiveany(max)
        if not data then
            done = true
            self.keepalive = false
            if err == "closed" then
                self.response_pending = nil
                return nil
            end
            return nil, err
        end
        return data
    end
end

local function read_body(res)
    local reader = res.body_reader
    if not reader then
        return ""
    end
    local parts = {}
    while true do
        local chunk, err = reader()
        if err then
            return nil, err, concat(parts)
        end
        if not chunk then
            break
        end
        parts[#parts + 1] = chunk
    end
    return concat(parts)
end

local function read_trailers() end

--- Send one request on the connected client; returns res after the
-- response head (nil, err on failure).  params: method, path, query
-- (string or table), headers, body (string, array of strings, or an
-- iterator function yielding chunks, sent chunked unless a
-- Content-Length header is given), version (1.0 or 1.1).
function _M.send_request(self, params)
    params = params or {}
    local sock = self.sock
    local method = upper(params.method or "GET")
    local path = params.path or "/"
    local query = params.query
    if type(query) == "table" then
        query = encode_args(query)
    end
    if query and query ~= "" then
        path = path .. (find(path, "?", 1, true) and "&" or "?") .. query
    end
    if find(path, "[%s]") then
        return nil, "invalid path"
    end
    local version = params.version or 1.1
    local headers = http_headers.new()
    for k, v in pairs(params.headers or {}) do
        headers[k] = v
    end
    if headers["Host"] == nil then
        headers["Host"] = host_header(self)
    end
    if headers["User-Agent"] == nil then
        headers["User-Agent"] = USER_AGENT
    end
    local body = params.body
    if type(body) == "table" then
        body = concat(body)
    end
    local chunked_body = false
    if type(body) == "string" then
        if headers["Content-Length"] == nil
           and (#body > 0 or method == "POST" or method == "PUT"
                or method == "PATCH")
        then
            headers["Content-Length"] = #body
        end
    elseif type(body) == "function" then
        if headers["Content-Length"] == nil then
            if version < 1.1 then
                return nil, "an iterator body needs Content-Length on HTTP/1.0"
            end
            headers["Transfer-Encoding"] = "chunked"
            chunked_body = true
        end
    elseif body ~= nil then
        return nil, "body must be a string, a table or a function"
    end
    if version < 1.1 and headers["Connection"] == nil then
        headers["Connection"] = "keep-alive"
    end

    local out = { method, " ", path, " HTTP/", format("%.1f", version),
                  "\r\n" }
    local ok, err = pcall(function()
        local hl = {}
        for k, v in pairs(headers) do
            add_header(hl, k, v)
        end
        out[#out + 1] = concat(hl)
    end)
    if not ok then
        return nil, err
    end
    out[#out + 1] = "\r\n"
    if type(body) == "string" then
        out[#out + 1] = body
    end
    local bytes, serr = sock:send(concat(out))
    if not bytes then
        return nil, serr
    end
    if type(body) == "function" then
        while true do
            local chunk, e = body()
            if e then
                return nil, e
            end
            if chunk == nil then
                break
            end
            chunk = tostring(chunk)
            if chunked_body then
                chunk = chunk_bytes(chunk)
            end
            if chunk ~= "" then
                bytes, serr = sock:send(chunk)
                if not bytes then
                    return nil, serr
                end
            end
        end
        if chunked_body then
            bytes, serr = sock:send("0\r\n\r\n")
            if not bytes then
                return nil, serr
            end
        end
    end
    self.method = method
    self.response_pending = true
    return true
end

--- Read the response head to the request sent last; res or nil, err.
function _M.read_response(self, params)
    local sock = self.sock
    local method = self.method or upper((params and params.method) or "GET")
    local res, err
    repeat
        res, err = read_head(sock)
        if not res then
            self.keepalive = false
            return nil, err
        end
        -- interim responses (100 Continue, 103 Early Hints) are skipped
    until res.status >= 200 or res.status == 101

    local conn = lower(header_str(res.headers["Connection"]) or "")
    if res.version < 1.1 then
        self.keepalive = find(conn, "keep-alive", 1, true) ~= nil
    elseif find(conn, "close", 1, true) then
        self.keepalive = false
    end

    local status = res.status
    res.has_body = not (method == "HEAD" or status == 204 or status == 304
                        or status < 200)
    if res.has_body then
        local te = lower(header_str(res.headers["Transfer-Encoding"]) or "")
        local chunked = find(te, "chunked", 1, true) ~= nil
        local length
        if not chunked then
            local cl = res.headers["Content-Length"]
            if type(cl) == "table" then
                cl = cl[1]
            end
            length = tonumber(cl)
            if cl ~= nil and (not length or length < 0) then
                self.keepalive = false
                return nil, "bad Content-Length: " .. tostring(cl)
            end
            if not length then
                self.keepalive = false      -- read until close
            end
        end
        res.body_reader = body_reader(self, sock, chunked, length)
    else
        self.response_pending = nil
        res.body_reader = function() return nil end
    end
    res.read_body = read_body
    res.read_trailers = read_trailers
    return res
end

function _M.request(self, params)
    local ok, err = _M.send_request(self, params)
    if not ok then
        self.keepalive = false
        return nil, err
    end
    return _M.read_response(self, params)
end

--- One request on a new (or pooled) connection: connect, send, read the
-- whole body, then keep-alive (params.keepalive ~= false, with
-- keepalive_timeout / keepalive_pool) or close.  res has res.body.
function _M.request_uri(self, uri, params)
    params = params or {}
    local parsed, err = _M.parse_uri(self, uri, false)
    if not parsed then
        return nil, err
    end
    local scheme, host, port, path, query = parsed[1], parsed[2],
        parsed[3], parsed[4], parsed[5]
    if sub(host, 1, 1) == "[" then
        host = sub(host, 2, -2)
    end
    local p = {}
    for k, v in pairs(params) do
        p[k] = v
    end
    p.path = params.path or path
    if params.query == nil then
        p.query = query ~= "" and query or nil
    end
    local ok, cerr = _M.connect(self, {
        scheme = scheme, host = host, port = port,
        ssl_server_name = params.ssl_server_name,
        ssl_verify = params.ssl_verify,
        pool = params.pool, pool_size = params.pool_size,
    })
    if not ok then
        return nil, cerr
    end
    local res, rerr = _M.request(self, p)
    if not res then
        self.sock:close()
        return nil, rerr
    end
    local body, berr = res:read_body()
    if not body then
        self.sock:close()
        return nil, berr
    end
    res.body = body
    if params.keepalive == false then
        self.sock:close()
    else
        local kok, kerr = _M.set_keepalive(self, params.keepalive_timeout,
                                           params.keepalive_pool)
        if not kok and kerr ~= "closed" then
            self.sock:close()
        end
    end
    return res
end

return _M
