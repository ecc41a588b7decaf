-- moongate.cluster.data_plane -- a data plane's sync loop (role =
-- data_plane): fetch the configuration from cluster_control_plane and
-- import it into the local entity store.
--
-- Runs in the admin process as one ngx.timer that never returns (the
-- core starts it with an internal request once the admin VM is up; see
-- core/event/mg_worker.c mg_admin_kick).  One TLS connection to the
-- control plane with the shared cluster certificate (socket
-- sslhandshake(.., "cluster")), kept open across requests; each request
-- is the long poll of moongate.cluster.control_plane.  A new config is
-- imported with moongate.db.declarative.import: one store transaction,
-- which the workers pick up through their store watch.  The store is the
-- cache of the last good config: the master never wipes it on a data
-- plane, so the node serves it while the control plane is away, across
-- restarts too.  Its hash is kept in <prefix>/cluster_config.hash so a
-- restarted node does not import the same config again.
--
-- Connection state changes are logged once each; reconnects back off
-- from 1 s to MAX_BACKOFF s, with jitter.
--
-- Rejected: resty.http -- its handshake has no place for the cluster
-- mode, and the one request shape here needs little parsing.

local json = require "moongate.admin.json"
local codec = require "moongate.codec"

local type = type
local tonumber = tonumber
local tostring = tostring
local concat = table.concat
local match = string.match
local lower = string.lower
local random = math.random
local min = math.min

local _M = {
    MAX_BACKOFF = 8,        -- s
    CONNECT_TIMEOUT = 5000, -- ms
    READ_TIMEOUT = 45000,   -- ms: longer than the control plane's wait
    MAX_BODY = 64 * 1024 * 1024,
}

-- what /status reports (moongate.cluster.status)
local st = {
    started = false,
    connected = false,
    last_seen = nil,        -- s (ngx.time) of the last answer
    last_error = nil,
    version = -1,           -- the control plane's config version we hold
    hash = "",              -- config_hash of what the store holds
    address = nil,
}
_M.state = st

local function hash_path(conf)
    return (conf.prefix or ".") .. "/cluster_config.hash"
end

local function load_hash(conf)
    local f = io.open(hash_path(conf), "r")
    if not f then
        return ""
    end
    local h = f:read("*l") or ""
    f:close()
    return match(h, "^%x+$") and h or ""
end

local function save_hash(conf, h)
    local tmp = hash_path(conf) .. ".tmp"
    local f = io.open(tmp, "w")
    if not f then
        return
    end
    f:write(h, "\n")
    f:close()
    os.rename(tmp, hash_path(conf))
end

-- "host:port" -> host, port
local function split_address(s)
    local host, port = match(s or "", "^%[(.+)%]:(%d+)$")
    if not host then
        host, port = match(s or "", "^([^:]+):(%d+)$")
    end
    if not host then
        host, port = s, 8005
    end
    return host, tonumber(port)
end

local function set_connected(on, err)
    if on and not st.connected then
        ngx.log(ngx.NOTICE, "cluster: connected to control plane ",
                st.address)
    elseif not on and (st.connected or st.last_error == nil) then
        ngx.log(ngx.WARN, "cluster: control plane ", st.address,
                " unreachable: ", tostring(err))
    end
    st.connected = on
    st.last_error = not on and tostring(err) or nil
end

-- status, headers (lower-case names), body | nil, err
local function read_response(sock)
    local line, err = sock:receive("*l")
    if not line then
        return nil, err
    end
    local status = tonumber(match(line, "^HTTP/1%.%d (%d%d%d)"))
    if not status then
        return nil, "bad status line"
    end
    local headers = {}
    while true do
        local h
        h, err = sock:receive("*l")
        if not h then
            return nil, err
        end
        if h == "" then
            break
        end
        local k, v = match(h, "^([^:]+):%s*(.-)%s*$")
        if k then
            headers[lower(k)] = v
        end
    end
    local body = ""
    if status == 304 or status == 204 then
        return status, headers, body
    end
    if lower(headers["transfer-encoding"] or "") == "chunked" then
        local parts, total = {}, 0
        while true do
            local sz
            sz, err = sock:receive("*l")
            if not sz then
                return nil, err
            end
            local n = tonumber(match(sz, "^%x+"), 16)
            if not n then
                return nil, "bad chunk size"
            end
            total = total + n
            if total > _M.MAX_BODY then
                return nil, "response too large"
            end
            if n == 0 then
                sock:receive("*l")
                break
            end
            local data
            data, err = sock:receive(n)
            if not data then
                return nil, err
            end
            parts[#parts + 1] = data
            sock:receive("*l")
        end
        body = concat(parts)
    else
        local n = tonumber(headers["content-length"] or "")
        if not n or n > _M.MAX_BODY then
            return nil, "no usable content-length"
        end
        if n > 0 then
            body, err = sock:receive(n)
            if not body then
                return nil, err
            end
        end
    end
    return status, headers, body
end

local function apply(db, conf, doc)
    if type(doc.config) == "string" then
        local D = require "moongate.db.declarative"
        local ok, err = D.import(db, doc.config)
        if not ok then
            -- keep serving the previous config; do not ask for this
            -- version again (the control plane would answer at once)
            ngx.log(ngx.ERR, "cluster: configuration version ",
                    tostring(doc.version), " from the control plane ",
                    "cannot be loaded, keeping the current one: ",
                    tostring(err))
            st.version = tonumber(doc.version) or st.version
            return
        end
        st.hash = doc.config_hash or ""
        save_hash(conf, st.hash)
        ngx.log(ngx.INFO, "cluster: configuration version ",
                tostring(doc.version), " (", st.hash, ") loaded")
    end
    st.version = tonumber(doc.version) or st.version
end

-- One connection's life: requests until an error.  Returns the error.
local function session(db, conf, host, port)
    local sock = ngx.socket.tcp()
    sock:settimeout(_M.CONNECT_TIMEOUT)
    local ok, err = sock:connect(host, port)
    if not ok then
        return err
    end
    ok, err = sock:sslhandshake(nil, host, "cluster")
    if not ok then
        sock:close()
        return err
    end
    -- the handshake proved the peer holds the cluster key: connected
    -- (the first answer may be a long poll that waits for a change)
    set_connected(true)
    st.last_seen = ngx.time()
    sock:settimeout(_M.READ_TIMEOUT)
    local node_id = kong.node.get_id()
    local hostname = kong.node.get_hostname()
    while true do
        local path = "/v1/config?" .. codec.encode_args({
            version = tostring(st.version),
            config_hash = st.hash,
            node_id = node_id,
            hostname = hostname,
            dp_version = st.dp_version or "",
        })
        local sent
        sent, err = sock:send("GET " .. path .. " HTTP/1.1\r\nHost: " ..
                              host .. "\r\nUser-Agent: moongate-dp\r\n\r\n")
        if not sent then
            break
        end
        local status, headers, body = read_response(sock)
        if not status then
            err = headers
            break
        end
        st.last_seen = ngx.time()
        if status == 200 then
            local doc = json.decode(body)
            if type(doc) ~= "table" then
                err = "bad answer from the control plane"
                break
            end
            apply(db, conf, doc)
        elseif status ~= 304 then
            err = "control plane answered " .. status
            break
        end
        if lower(headers.connection or "") == "close" then
            err = "closed"
            break
        end
    end
    sock:close()
    return err
end

local function loop(premature, db, conf)
    if premature then
        return
    end
    local host, port = split_address(conf.cluster_control_plane)
    st.address = host .. ":" .. tostring(port)
    local failures = 0
    while true do
        local err = session(db, conf, host, port)
        if st.connected then
            failures = 0
        end
        set_connected(false, err)
        failures = failures + 1
        local delay = min(2 ^ (failures - 1), _M.MAX_BACKOFF)
        ngx.sleep(delay * (0.75 + random() * 0.5))
    end
end

--- Start the sync loop once (the internal request's handler).
function _M.start(db, conf, version)
    st.dp_version = version
    if st.started then
        return true
    end
    st.hash = load_hash(conf)
    local ok, err = ngx.timer.at(0, loop, db, conf)
    if not ok then
        return nil, err
    end
    st.started = true
    return true
end

--- The fields the Admin API's /status adds on a data plane.
function _M.status()
    return {
        configuration_hash = st.hash ~= "" and st.hash or
                             "00000000000000000000000000000000",
        clustering = {
            role = "data_plane",
            control_plane = {
                address = st.address or json.null,
                connected = st.connected,
                last_seen = st.last_seen or json.null,
                last_error = st.last_error or json.null,
            },
            config_version = st.version,
            config_hash = st.hash,
        },
    }
end

return _M
