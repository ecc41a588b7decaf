-- moongate.pdk -- assembles the `kong` global: the PDK modules of
-- lua/moongate/pdk/ under Kong's names.
--
-- Lifecycle: `new()` builds the table once per VM; `configure(kong, doc)`
-- installs what comes with each config snapshot (the runloop's init
-- document): kong.configuration, trusted_ips, consumers, log level, node
-- id, kong.cache's config version and ttls.  PDK functions find the
-- running request themselves (moongate.context), so one table serves
-- every request and plugin.
--
-- kong.db is Kong's DAO (moongate.db) over the entity store, opened in
-- the calling process on first use (an LMDB handle must not cross fork:
-- one opened before the workers fork is reopened in each).  Reads are a
-- read transaction; a write is a synchronous commit that waits for the
-- disk -- plugins should write rarely (Kong's DB writes block the worker's
-- request too).  With database = off writes are refused as in Kong.
--
-- Not provided in this build: kong.dns, kong.router, kong.nginx,
-- kong.plugin, kong.telemetry; kong.worker_events is an in-worker
-- stand-in (register / post call handlers synchronously).

local constants = require "moongate.constants"
local configuration = require "moongate.pdk.configuration"
local cache = require "moongate.pdk.cache"
local ip = require "moongate.pdk.ip"
local log = require "moongate.pdk.log"
local node = require "moongate.pdk.node"
local client = require "moongate.pdk.client"

local _M = {}

local function worker_events()
    local handlers = {}
    local we = {}
    function we.register(handler, source, event)
        handlers[#handlers + 1] = { handler, source, event }
    end
    function we.unregister(handler)
        for i = #handlers, 1, -1 do
            if handlers[i][1] == handler then
                table.remove(handlers, i)
            end
        end
    end
    function we.post(source, event, data)
        for _, h in ipairs(handlers) do
            if (h[2] == nil or h[2] == source) and
               (h[3] == nil or h[3] == event) then
                local ok, err = pcall(h[1], data, event, source)
                if not ok then
                    log.err("worker event handler failed: ", err)
                end
            end
        end
        return true
    end
    we.post_local = we.post
    function we.poll() return "done" end
    return we
end

-- kong.db, opened in this process on first use
local db_handle, db_pid

local function this_pid()
    local ngx = rawget(_G, "ngx")
    local w = type(ngx) == "table" and ngx.worker
    return w and w.pid and w.pid() or 0
end

local function open_db(kong)
    local pid = this_pid()
    if db_handle and db_pid == pid then
        return db_handle
    end
    local conf = kong.configuration or {}
    if type(conf.prefix) ~= "string" then
        return nil                  -- no configuration yet
    end
    local DB = require "moongate.db"
    local db, err = DB.open(conf)
    if not db then
        log.err("kong.db: ", err)
        return nil
    end
    db_handle, db_pid = db, pid
    return db
end

local KONG_MT = {
    __index = function(kong, k)
        if k == "db" then
            return open_db(kong)
        end
    end,
}

--- The kong table.
function _M.new()
    local kong = {
        version = constants.KONG_VERSION,
        version_num = constants.KONG_VERSION_NUM,
        moongate_version = constants.MOONGATE_VERSION,
        pdk_major_version = 1,
        pdk_version = "1.5.0",

        request = require "moongate.pdk.request",
        response = require "moongate.pdk.response",
        service = require "moongate.pdk.service",
        client = client,
        ctx = require "moongate.pdk.ctx",
        log = log,
        node = {
            get_id = node.get_id,
            get_hostname = node.get_hostname,
        },
        table = require "moongate.pdk.table",
        ip = { is_trusted = ip.is_trusted },
        configuration = configuration.new({}),
        cache = cache.new(cache.KONG),
        vault = require "moongate.pdk.vault",
        worker_events = worker_events(),
    }
    kong.core_cache = kong.cache
    return (setmetatable(kong, KONG_MT))
end

--- Install a config snapshot's properties.  Returns true or nil, err.
function _M.configure(kong, doc)
    local props = type(doc.configuration) == "table" and doc.configuration
                  or {}
    kong.configuration = configuration.new(props)
    log.set_threshold(props.log_level)
    local trusted = doc.trusted_ips or props.trusted_ips
    if type(trusted) == "string" then
        local list = {}
        for s in trusted:gmatch("[^,%s]+") do
            list[#list + 1] = s
        end
        trusted = list
    end
    local ok, err = ip.configure(trusted)
    if not ok then
        return nil, err
    end
    client.configure(doc.consumers, props.real_ip_header)
    local prefix = props.prefix
    if type(prefix) ~= "string" or prefix == "" then
        prefix = type(_G.moongate) == "table" and _G.moongate.prefix or nil
    end
    node.init(prefix)
    -- a new config version: entities may have changed under what the
    -- plugins' loaders cached (credentials, consumers), so this worker
    -- forgets its L1 and trusts only shared entries of this version
    cache.configure(kong.cache, doc.config_version, props)
    return true
end

return _M
