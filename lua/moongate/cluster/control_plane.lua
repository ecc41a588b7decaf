-- moongate.cluster.control_plane -- what a control plane (role =
-- control_plane) serves its data planes on cluster_listen, and what it
-- tells the Admin API about them.
--
-- Runs in the admin process.  A data plane asks
--   GET /v1/config?version=N&config_hash=H&node_id=..&hostname=..&dp_version=..
-- over the cluster mTLS connection (the handshake already proved it holds
-- cluster_cert; core/http/mg_http_request.c lets only /v1/ through).  The
-- answer is a long poll: at once when the store's config version differs
-- from N -- { version, config_hash, config = <declarative JSON text> }, or
-- without `config` when H already is that config's hash -- else the
-- request waits, checking the store version every POLL seconds, up to
-- WAIT seconds, and answers 304.  A write through the Admin API therefore
-- reaches every data plane within POLL seconds plus a transfer.
--
-- Each request records its data plane (Kong's clustering_data_planes
-- fields: id, hostname, ip, last_seen, config_hash, version,
-- sync_status); kept in this process's memory, so the list starts empty
-- after a control plane restart and fills within one poll.
--
-- Rejected: a WebSocket push channel as Kong's -- the admin process has
-- an HTTP server and cosockets, not a WebSocket stack; a held GET gives
-- the same latency with a handful of lines.

local json = require "moongate.admin.json"

local type = type
local pairs = pairs
local tonumber = tonumber
local tostring = tostring
local sort = table.sort
local sub = string.sub
local match = string.match

local null = json.null
local array = json.array

local _M = {
    POLL = 0.2,        -- s between two looks at the store version
    WAIT = 30,         -- s a request waits for a change at most
    MAX_DP = 10000,    -- data planes remembered
}

local data_planes = {}     -- node id -> record
local n_data_planes = 0
local cache = {}           -- { version, text, hash } of the last export

local function now()
    return ngx.time()
end

-- the export of the store's current config, cached by version
local function current(db)
    local v = db.store:version()
    if cache.version == v and cache.text then
        return cache
    end
    local D = require "moongate.db.declarative"
    local text, err = D.export(db, "json")
    if not text then
        return nil, err
    end
    cache = { version = v, text = text, hash = ngx.md5(text) }
    return cache
end

local function arg1(v)
    if type(v) == "table" then
        v = v[1]
    end
    if type(v) ~= "string" then
        return nil
    end
    return v
end

local function record(req, hash)
    local q = req.query
    local id = arg1(q.node_id)
    if not id or #id == 0 or #id > 64 then
        return
    end
    local dp = data_planes[id]
    if not dp then
        if n_data_planes >= _M.MAX_DP then
            return
        end
        n_data_planes = n_data_planes + 1
        dp = { id = id, created_at = now() }
        data_planes[id] = dp
    end
    dp.hostname = sub(arg1(q.hostname) or "", 1, 255)
    dp.ip = kong.client.get_ip()
    dp.version = sub(arg1(q.dp_version) or "", 1, 64)
    dp.last_seen = now()
    dp.updated_at = dp.last_seen
    dp.config_hash = hash or arg1(q.config_hash) or ""
    dp.sync_status = "normal"
    return dp
end

-- The /v1/config handler (req: moongate.admin's request table).
function _M.config(req, state)
    local q = req.query
    local have = tonumber(arg1(q.version) or "") or -1
    local have_hash = arg1(q.config_hash) or ""
    local deadline = ngx.now() + _M.WAIT
    local dp = record(req)
    repeat
        local cur, err = current(state.db)
        if not cur then
            kong.log.err("cluster: cannot export the configuration: ", err)
            return 500, { message = "An unexpected error occurred" }
        end
        if cur.version ~= have then
            if dp then
                dp.config_hash = have_hash
            end
            if cur.hash == have_hash then
                return 200, { version = cur.version,
                              config_hash = cur.hash }
            end
            return 200, { version = cur.version, config_hash = cur.hash,
                          config = cur.text }
        end
        ngx.sleep(_M.POLL)
        if dp then
            dp.last_seen = now()
        end
    until ngx.now() >= deadline
    return 304
end

local function list()
    local out = array({})
    for _, dp in pairs(data_planes) do
        out[#out + 1] = {
            id = dp.id,
            hostname = dp.hostname,
            ip = dp.ip,
            last_seen = dp.last_seen,
            config_hash = dp.config_hash,
            version = dp.version,
            sync_status = dp.sync_status,
            created_at = dp.created_at,
            updated_at = dp.updated_at,
            labels = {},
        }
    end
    sort(out, function(a, b) return a.id < b.id end)
    return out
end

-- our cluster_listen port (a /v1/ request must come in there)
local function cluster_port(conf)
    local l = conf and conf.cluster_listen
    if type(l) == "table" then
        l = l[1]
    end
    return tonumber(match(tostring(l or ""), ":(%d+)$") or "")
end

function _M.register(router, state)
    local port = cluster_port(state.conf)
    router:add("/v1/config", { GET = function(req)
        if kong.request.get_port() ~= port then
            return 404, { message = "Not found" }
        end
        return _M.config(req, state)
    end })
    router:add("/clustering/data-planes", { GET = function()
        return 200, { data = list(), next = null }
    end })
    router:add("/clustering/status", { GET = function()
        local out = {}
        for id, dp in pairs(data_planes) do
            out[id] = { config_hash = dp.config_hash, hostname = dp.hostname,
                        ip = dp.ip, last_seen = dp.last_seen }
        end
        return 200, out
    end })
end

-- specs
_M._data_planes = data_planes

return _M
