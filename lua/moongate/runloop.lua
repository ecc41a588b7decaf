-- moongate.runloop -- the Lua half of the plugin runtime: loads and
-- validates the plugins of a config snapshot, sorts each route's plugin
-- list once, and runs a request's phases over those lists.
--
-- The core calls three functions (core/lua/mg_lua.c):
--
--   runloop.init(json) -> routes | true | nil, err
--     Once per VM (per config generation), with the init document:
--     { plugins = [{id, name, instance_name, enabled, protocols, config,
--       route, service, consumer}], routes = [{id, name, service, index}],
--       services = [{id, name, host, port, protocol, path}],
--       consumers = [{id, username, custom_id}],
--       enabled_plugins = "bundled,x" | ["bundled", "x"],
--       trusted_ips = [...], configuration = { prefix, log_level, ... } }
--     Returns the 0-based indexes of the routes that enter Lua (some
--     plugin applies to them), or true when every route does (a global
--     plugin exists), or nil and a message naming the plugin, its id and
--     the field for an unknown plugin or an invalid config.
--
--   runloop.phase(name, r, req_id, route_index[, chunk, eof | body])
--     -> result ("exit" | "error" | nil), message, forgotten
--     Runs phase `name` of every plugin of the route that implements it,
--     by priority, each handler as handler[name](handler, conf) inside
--     xpcall.  Runs inside a coroutine the core created; a PDK call that
--     waits yields it (moongate.context.wait) and the core resumes it.
--     "exit": a plugin answered (kong.response.exit, ngx.exit); the rest
--     of the phase was skipped.  "error": a plugin raised; it was logged
--     with the plugin's name and a traceback; the core answers 500.
--     body_filter also takes the chunk and the eof flag; a changed chunk
--     goes back through mg_lua_resp_set_chunk.  response (Kong 3: the
--     upstream's response buffered whole) takes the body; it may wait,
--     and kong.response.set_raw_body replaces what is sent.
--     forgotten: true when the request's state was dropped as the phase
--     returned (see runloop.finish); the core then does not call finish.
--
--   req_id is any value unique among the live requests: the core passes
--   the request pointer (no string to build per call), the phase as its
--   bit (mg_lua_api.h) rather than its name.
--
--   runloop.finish(req_id)
--     When the request ends: drops its state (kong.ctx, ngx.ctx, the
--     plugin configs it resolved).  Not called after a phase that
--     returned `forgotten` (forget_if_done).
--
-- Plugin selection follows Kong 3: one instance per plugin name per
-- request, the most specific of route+service+consumer, route+consumer,
-- service+consumer, route+service, consumer, route, service, global.
-- Consumer-scoped instances apply once kong.client.authenticate set a
-- consumer: a plugin's instance is chosen when its turn comes in access
-- and kept for the later phases (Kong's "collecting" iterator).  rewrite
-- runs global instances only (the route is not known in Kong's rewrite).
-- Ordering: PRIORITY descending, ties by name descending (Kong's rule).
--
-- Rejected: resolving instances per request from the full plugin list --
-- per-route lists, sorted and split by phase at init, leave the request
-- path a loop over the handlers that run.

local cjson = require "cjson.safe"
local api = require "moongate.ffi"
local context = require "moongate.context"
local unpack = unpack or table.unpack
local phases = require "moongate.phases"
local loader = require "moongate.plugin_loader"
local constants = require "moongate.constants"
local pdk = require "moongate.pdk"
local vault = require "moongate.pdk.vault"
local errors = require "moongate.schema.errors"
local mg_ngx = require "moongate.ngx"
local P = require "moongate.pdk.private"

local C = api.C
local LOG = api.LOG
local to_ptr = api.ptr
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local xpcall = xpcall
local traceback = debug.traceback
local sort = table.sort
local concat = table.concat
local format = string.format
local match = string.match
local null = cjson.null

local EXIT, QUIT = context.EXIT, context.QUIT
local phase_names = phases.names

local _M = {}

local loaded = {}        -- name -> plugin (moongate.plugin_loader.load)
local worker_inited = {} -- name -> true once init_worker ran
local active             -- the snapshot built by the last successful init
local requests = {}      -- req_id -> request state

_M.requests = requests   -- for specs and introspection

-- helpers ---------------------------------------------------------------------

local function log(level, msg)
    C.mg_lua_log(level, msg, #msg)
end

local function is_null(v)
    return v == nil or v == null
end

local function str_or_nil(v)
    if type(v) == "string" and v ~= "" then
        return v
    end
    return nil
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
             "%x%x%x%x%x%x%x%x%x%x%x%x$"
local PLACEHOLDER = "00000000-0000-4000-8000-000000000000"

-- a foreign key for validation: { id = uuid } or null
local function fk(id)
    if not id then
        return null
    end
    return { id = match(id, UUID) and id or PLACEHOLDER }
end

local function deep_copy(v)
    if type(v) ~= "table" then
        return v
    end
    local c = {}
    for k, x in pairs(v) do
        c[k] = deep_copy(x)
    end
    return setmetatable(c, getmetatable(v))
end

local HTTP_PROTOCOLS = { http = true, https = true, grpc = true,
                         grpcs = true, ws = true, wss = true }

-- "bundled,x" | { "bundled", "x" } -> ordered list of plugin names
local function enabled_names(spec)
    local items = {}
    if spec == nil or spec == null then
        spec = "bundled"
    end
    if type(spec) == "string" then
        for s in spec:gmatch("[^,%s]+") do
            items[#items + 1] = s
        end
    elseif type(spec) == "table" then
        for _, s in ipairs(spec) do
            items[#items + 1] = tostring(s)
        end
    end
    local names, seen = {}, {}
    local function add(n)
        if not seen[n] then
            seen[n] = true
            names[#names + 1] = n
        end
    end
    for _, s in ipairs(items) do
        if s == "off" then
            return {}, {}
        elseif s == "bundled" then
            for _, b in ipairs(constants.BUNDLED_PLUGINS) do
                add(b)
            end
        else
            add(s)
        end
    end
    return names, seen
end

-- Kong's order: PRIORITY descending, ties by name descending
local function by_priority(a, b)
    local pa, pb = a.priority, b.priority
    if pa == pb then
        return a.name > b.name
    end
    return pa > pb
end

local function combo_key(route, service, consumer)
    return (route or "") .. ":" .. (service or "") .. ":" .. (consumer or "")
end

-- Kong 3's lookup order through the combinations
local function lookup(combos, rid, sid, cid)
    local x
    if rid and sid and cid then
        x = combos[rid .. ":" .. sid .. ":" .. cid]
        if x then return x end
    end
    if rid and cid then
        x = combos[rid .. "::" .. cid]
        if x then return x end
    end
    if sid and cid then
        x = combos[":" .. sid .. ":" .. cid]
        if x then return x end
    end
    if rid and sid then
        x = combos[rid .. ":" .. sid .. ":"]
        if x then return x end
    end
    if cid then
        x = combos["::" .. cid]
        if x then return x end
    end
    if rid then
        x = combos[rid .. "::"]
        if x then return x end
    end
    if sid then
        x = combos[":" .. sid .. ":"]
        if x then return x end
    end
    return combos["::"]
end
_M.lookup = lookup

-- globals -------------------------------------------------------------------

local function this_root()
    local mg = rawget(_G, "moongate")
    if type(mg) == "table" and type(mg.root) == "string" then
        return mg.root
    end
    -- lua/moongate/runloop.lua -> the directory above lua/
    local src = debug.getinfo(1, "S").source
    local dir = match(src, "^@(.*)/lua/moongate/runloop%.lua$")
    if dir then
        return dir
    end
    return "."
end

local function install_globals()
    mg_ngx.install()
    local kong = rawget(_G, "kong")
    if kong == nil then
        kong = pdk.new()
        rawset(_G, "kong", kong)
    end
    if rawget(_G, "moongate") == nil then
        rawset(_G, "moongate", { root = this_root() })
    end
    loader.install(this_root())
    return kong
end

-- init ------------------------------------------------------------------------

-- validate one plugin entity; returns the instance or nil, err
local function build_instance(p, plugin, seq)
    local id = str_or_nil(p.id)
    local route = str_or_nil(p.route)
    local service = str_or_nil(p.service)
    local consumer = str_or_nil(p.consumer)
    local label = format("plugin '%s' (id %s)", plugin.name,
                         tostring(id or "none"))

    local entity = {
        name = p.name,
        config = deep_copy(is_null(p.config) and {} or p.config),
        route = fk(route),
        service = fk(service),
        consumer = fk(consumer),
    }
    if id and match(id, UUID) then
        entity.id = id
    end
    if type(p.instance_name) == "string" then
        entity.instance_name = p.instance_name
    end
    if type(p.enabled) == "boolean" then
        entity.enabled = p.enabled
    end
    if type(p.protocols) == "table" and #p.protocols > 0 then
        entity.protocols = deep_copy(p.protocols)
    end
    if type(p.tags) == "table" then
        entity.tags = deep_copy(p.tags)
    end

    local schema = plugin.schema
    local processed, perr = schema:process_auto_fields(entity, "insert")
    if not processed then
        return nil, label .. ": " .. errors.schema_violation(perr)
    end
    local ok, verr = schema:validate(processed)
    if not ok then
        return nil, label .. ": " .. errors.schema_violation(verr)
    end
    local conf = processed.config
    local rok, rerr = vault.resolve_config(schema.fields.config, conf)
    if not rok then
        return nil, label .. ": " .. rerr
    end

    local key = combo_key(route, service, consumer)
    conf.__plugin_id = id
    conf.__key__ = "plugins:" .. plugin.name .. ":" .. key
    conf.__seq__ = seq

    local http = false
    for _, proto in ipairs(processed.protocols or {}) do
        if HTTP_PROTOCOLS[proto] then
            http = true
        end
    end

    return {
        id = id,
        name = plugin.name,
        plugin = plugin,
        conf = conf,
        route = route,
        service = service,
        consumer = consumer,
        key = key,
        enabled = processed.enabled ~= false and http,
    }
end

-- a route's plugin entries from the instances that may apply to it
local function build_entries(names, buckets, rid, sid)
    local entries = {}
    for _, name in ipairs(names) do
        local combos, any, has_consumer = {}, false, false
        for _, bucket in ipairs(buckets) do
            local list = bucket[name]
            if list then
                for _, inst in ipairs(list) do
                    if (inst.route == nil or inst.route == rid) and
                       (inst.service == nil or inst.service == sid) then
                        combos[inst.key] = inst
                        any = true
                        if inst.consumer then
                            has_consumer = true
                        end
                    end
                end
            end
        end
        if any then
            local plugin = loaded[name]
            entries[#entries + 1] = {
                name = name,
                priority = plugin.priority,
                handler = plugin.handler,
                default = lookup(combos, rid, sid, nil),
                global = combos["::"],
                combos = has_consumer and combos or nil,
                rid = rid,
                sid = sid,
            }
        end
    end
    sort(entries, by_priority)

    -- per phase: the entries whose handler implements it
    local by_phase, mask = {}, 0
    for _, phase in ipairs(phases.list) do
        local list = {}
        for _, e in ipairs(entries) do
            if type(e.handler[phase]) == "function" and
               (phase ~= "rewrite" or e.global) then
                list[#list + 1] = e
            end
        end
        if #list > 0 then
            by_phase[phase] = list
            mask = mask + phases.bits[phase]
        end
    end
    return { entries = entries, by_phase = by_phase, phases = mask }
end

local EMPTY = { entries = {}, by_phase = {}, phases = 0 }

-- run init_worker / configure of a plugin outside any request
local function run_plugin_hook(plugin, phase, ...)
    local fn = plugin.handler[phase]
    if type(fn) ~= "function" then
        return
    end
    local saved = context.current
    context.current = {
        phase = phase,
        phase_bit = phases.bits[phase] or 0,
        shared = {},
        plugin_ctx = {},
        ngx_ctx = {},
        plugin_name = plugin.name,
    }
    local args = { ... }
    local ok, err = xpcall(function()
        return fn(plugin.handler, (unpack or table.unpack)(args))
    end, traceback)
    context.current = saved
    if not ok then
        log(LOG.ERR, format("[kong] failed to run %s of plugin '%s': %s",
                            phase, plugin.name, tostring(err)))
    end
end

-- init_worker of every loaded plugin that has not run it in this worker,
-- then configure of the active configuration's plugins
local configured         -- { names, configs } of the last successful init

local function run_worker_hooks()
    local names = configured and configured.names or {}
    for _, name in ipairs(names) do
        local plugin = loaded[name]
        if plugin and not worker_inited[name] then
            worker_inited[name] = true
            run_plugin_hook(plugin, "init_worker")
        end
    end
    for _, name in ipairs(names) do
        run_plugin_hook(loaded[name], "configure", configured.configs[name])
    end
end

--- Called by the core once in each worker, after fork and before the
-- worker accepts: the hooks do_init left to the worker.  Never raises.
function _M.worker_start()
    local ok, err = xpcall(run_worker_hooks, traceback)
    if not ok then
        log(LOG.ERR, "[kong] worker start failed: " .. tostring(err))
    end
end

-- lua_max_run_time: the core's watchdog stops a runaway plugin with a
-- count hook, which LuaJIT does not call from compiled code.  Compiled
-- code that does not loop always returns to the interpreter, where the
-- hook runs; only a loop -- a loop bytecode, or a tail call, which can
-- recurse for ever without growing the stack -- can keep it away.  So
-- the handler's phase functions, the functions of the same file they
-- reach through upvalues, and the functions nested in them are read:
-- when none of them loops or tail-calls, the handler keeps the JIT (and
-- so does the runloop that calls it: a call into code with the JIT off
-- aborts the caller's trace too); otherwise they all run interpreted
-- (jit.off(f, true)).  Code of other modules keeps the JIT (see mg_lua.c).
-- Without jit.util / jit.vmdef every handler runs interpreted.

local loop_ops      -- opcode -> true for loops and tail calls; false: unknown
local function get_loop_ops(jit)
    if loop_ops ~= nil then
        return loop_ops
    end
    loop_ops = false
    local ok, vmdef = pcall(require, "jit.vmdef")
    if not ok then
        -- the VM's share directory, e.g. /usr/share/luajit-2.1.0-beta3
        local ver = match(jit.version or "", "^LuaJIT (%S+)")
        local path = ver and package.searchpath and package.searchpath(
            "jit.vmdef", "/usr/share/luajit-" .. ver .. "/?.lua;" ..
                         "/usr/local/share/luajit-" .. ver .. "/?.lua")
        local chunk = path and loadfile(path)
        if chunk then
            ok, vmdef = pcall(chunk)
        end
    end
    local names = ok and type(vmdef) == "table" and vmdef.bcnames
    if type(names) ~= "string" then
        return loop_ops
    end
    local set = {}
    for op = 0, #names / 6 - 1 do
        local name = match(names:sub(op * 6 + 1, op * 6 + 6), "^(%S+)")
        if name and (match(name, "LOOP$") or match(name, "^J?FORI$")
                     or match(name, "FORL$") or match(name, "ITERL$")
                     or name == "ITERN" or name == "CALLT"
                     or name == "CALLMT") then
            set[op] = true
        end
    end
    if set[0] or not next(set) then
        return loop_ops          -- not the table we expect
    end
    loop_ops = set
    return loop_ops
end

-- does prototype or function f (or one nested in it) loop or tail-call?
local function loops(util, ops, f)
    local pc = 1
    while true do
        local ins = util.funcbc(f, pc)
        if not ins then
            break
        end
        if ops[ins % 256] then
            return true
        end
        pc = pc + 1
    end
    local info = util.funcinfo(f)
    if info and info.children then
        for n = -1, -1000000, -1 do
            local k = util.funck(f, n)
            if k == nil then
                break
            end
            if type(k) == "proto" and loops(util, ops, k) then
                return true
            end
        end
    end
    return false
end

local function guard_handler(handler)
    local jit = rawget(_G, "jit")
    if not jit then
        return
    end
    local getinfo, getupvalue = debug.getinfo, debug.getupvalue
    -- the handler's functions and those of its file they reach
    local fns, seen = {}, {}
    local function collect(f, src)
        if seen[f] then
            return
        end
        seen[f] = true
        local info = getinfo(f, "S")
        if info.what == "C" or (src and info.source ~= src) then
            return
        end
        fns[#fns + 1] = f
        local i = 1
        while true do
            local name, v = getupvalue(f, i)
            if not name then
                break
            end
            if type(v) == "function" then
                collect(v, info.source)
            end
            i = i + 1
        end
    end
    for _, phase in ipairs(phases.list) do
        local fn = handler[phase]
        if type(fn) == "function" then
            collect(fn, nil)
        end
    end
    local uok, util = pcall(require, "jit.util")
    local ops = uok and get_loop_ops(jit)
    local guard = not ops
    for i = 1, #fns do
        if guard then
            break
        end
        guard = loops(util, ops, fns[i])
    end
    if guard then
        for i = 1, #fns do
            jit.off(fns[i], true)
        end
    end
    return guard
end
_M.guard_handler = guard_handler

local function do_init(json)
    local doc, derr = cjson.decode(json)
    if type(doc) ~= "table" then
        return nil, "invalid init document: " .. tostring(derr or "not an " ..
                                                          "object")
    end
    local kong = install_globals()
    local ok, cerr = pdk.configure(kong, doc)
    if not ok then
        return nil, cerr
    end
    -- pdk.configure has moved kong.cache to this config version: every
    -- worker does the same when it switches, so what loaders cached under
    -- an older version is gone from every level (moongate.pdk.cache)

    -- every enabled plugin must load, as in Kong
    local names, enabled = enabled_names(doc.enabled_plugins)
    local fresh = {}
    for _, name in ipairs(names) do
        if not loaded[name] then
            local plugin, err = loader.load(name)
            if not plugin then
                return nil, err
            end
            loaded[name] = plugin
            fresh[#fresh + 1] = plugin
            local cf = doc.configuration
            if type(cf) == "table" and type(cf.lua_max_run_time) == "number"
               and cf.lua_max_run_time > 0 then
                guard_handler(plugin.handler)
            end
        end
    end

    -- validate every instance
    local instances = {}
    for i, p in ipairs(type(doc.plugins) == "table" and doc.plugins or {}) do
        local name = p.name
        if type(name) ~= "string" then
            return nil, format("plugin #%d (id %s): name: required field " ..
                               "missing", i, tostring(p.id))
        end
        if not enabled[name] then
            return nil, format("plugin '%s' (id %s) is not enabled; add it " ..
                               "to the 'plugins' configuration property",
                               name, tostring(p.id))
        end
        local inst, err = build_instance(p, loaded[name], i)
        if not inst then
            return nil, err
        end
        instances[#instances + 1] = inst
    end

    -- index the enabled instances by scope
    local global, by_route, by_service = {}, {}, {}
    local configs = {}           -- name -> { conf, ... } for configure()
    local function put(t, k, inst)
        local b = t[k]
        if not b then
            b = {}
            t[k] = b
        end
        local l = b[inst.name]
        if not l then
            l = {}
            b[inst.name] = l
        end
        l[#l + 1] = inst
    end
    for _, inst in ipairs(instances) do
        if inst.enabled then
            if inst.route then
                put(by_route, inst.route, inst)
            elseif inst.service then
                put(by_service, inst.service, inst)
            else
                local l = global[inst.name]
                if not l then
                    l = {}
                    global[inst.name] = l
                end
                l[#l + 1] = inst
            end
            local c = configs[inst.name]
            if not c then
                c = {}
                configs[inst.name] = c
            end
            c[#c + 1] = inst.conf
        end
    end

    local function names_of(...)
        local seen, list = {}, {}
        for i = 1, select("#", ...) do
            local b = select(i, ...)
            if b then
                for name in pairs(b) do
                    if not seen[name] then
                        seen[name] = true
                        list[#list + 1] = name
                    end
                end
            end
        end
        sort(list)
        return list
    end

    local services = {}
    for _, s in ipairs(type(doc.services) == "table" and doc.services or {}) do
        if type(s.id) == "string" then
            services[s.id] = s
        end
    end

    local snap = {
        lists = {},                 -- route index -> list
        routes = {},                -- route index -> route entity
        services = services,
        global = build_entries(names_of(global), { global }, nil, nil),
    }
    local result = {}
    for _, r in ipairs(type(doc.routes) == "table" and doc.routes or {}) do
        local idx = r.index
        if type(idx) == "number" then
            local rid = str_or_nil(r.id)
            local sid = str_or_nil(r.service)
            local rb, sb = rid and by_route[rid], sid and by_service[sid]
            local list = build_entries(names_of(global, rb, sb),
                                       { global, rb or {}, sb or {} },
                                       rid, sid)
            snap.lists[idx] = list
            local route = deep_copy(r)
            route.index = nil
            route.service = sid and { id = sid } or nil
            snap.routes[idx] = route
            if #list.entries > 0 then
                result[#result + 1] = idx
            end
        end
    end
    sort(result)

    active = snap
    _M.active = snap

    -- init_worker and configure run in each worker (as in Kong), never
    -- in the master or `moongate check`, which only load and validate:
    -- the master's VM is copied into every worker it forks, so a hook
    -- run there would run once for all of them, and without a worker
    -- (no timers, no worker id).  A worker runs the hooks of what it
    -- inherited in worker_start, and of its own reconfigures here.
    configured = { names = names, configs = configs }
    if C.mg_lua_worker_id() >= 0 then
        run_worker_hooks()
    end

    if #snap.global.entries > 0 then
        return true
    end
    return result
end

--- See the file header.  Never raises: a failure comes back as nil, err.
function _M.init(json)
    local ok, res, err = xpcall(function() return do_init(json) end,
                                traceback)
    if not ok then
        return nil, "plugin runtime init failed: " .. tostring(res)
    end
    return res, err
end

-- The admin process: its one "plugin" is the Admin API (moongate.admin),
-- run in the access phase of every request on admin_listen, so it has the
-- PDK (kong.request, kong.response.exit), body reading and the error
-- handling of any plugin.  `json` is the init document (its
-- `configuration` holds every property), `master_pid` the master's pid:
-- moongate.admin.init's table is made from them.
local function do_admin_init(json, master_pid)
    local doc, derr = cjson.decode(json)
    if type(doc) ~= "table" then
        return nil, "invalid admin document: " .. tostring(derr)
    end
    local kong = install_globals()
    local ok, cerr = pdk.configure(kong, doc)
    if not ok then
        return nil, cerr
    end
    local conf = type(doc.configuration) == "table" and doc.configuration
                 or {}
    local mg = rawget(_G, "moongate")
    local adoc = {
        configuration = conf,
        enabled_plugins = (enabled_names(doc.enabled_plugins)),
        version = type(mg) == "table" and mg.version or nil,
        pid = master_pid,
        node_id = kong.node.get_id(),
        hostname = kong.node.get_hostname(),
    }
    local admin = require "moongate.admin"
    local aok, aerr = admin.init(adoc)
    if not aok then
        return nil, aerr
    end
    local handler = {
        PRIORITY = 0,
        VERSION = "1.0.0",
        access = function()
            return admin.handle()
        end,
    }
    loaded["admin-api"] = { name = "admin-api", priority = 0,
                            handler = handler }
    local inst = { name = "admin-api", conf = {}, key = "::", enabled = true }
    local snap = {
        lists = {},
        routes = {},
        services = {},
        global = build_entries({ "admin-api" },
                               { { ["admin-api"] = { inst } } }, nil, nil),
    }
    active = snap
    _M.active = snap
    return true
end

--- See do_admin_init.  Never raises.
function _M.admin_init(json, master_pid)
    local ok, res, err = xpcall(function()
        return do_admin_init(json, master_pid)
    end, traceback)
    if not ok then
        return nil, "admin API init failed: " .. tostring(res)
    end
    return res, err
end

_M.enabled_names = enabled_names
_M.install_globals = install_globals

--- The phases (a mask of mg_lua_phase bits) some plugin of route
-- `route_index` implements: the core may skip the others.
function _M.route_phases(route_index)
    local snap = active
    if not snap then
        return 0
    end
    local list = route_index and snap.lists[route_index] or snap.global
    return (list or EMPTY).phases
end

-- phases ------------------------------------------------------------------

-- handlers run through run_current so xpcall needs no closure per call;
-- the values are read before the handler can yield.  Neither the call of
-- the handler nor that of xpcall is a tail call: a trace cannot return
-- into xpcall's frame ("NYI: return to lower frame"), so a handler that
-- ended run_current's frame with its own could never be compiled.  Kong
-- ignores what a handler returns.
local cur_fn, cur_self, cur_conf

local function run_current()
    local fn, self, conf = cur_fn, cur_self, cur_conf
    cur_fn, cur_self, cur_conf = nil, nil, nil
    fn(self, conf)
end

local function on_error(err, co)
    if err == EXIT or err == QUIT then
        return err
    end
    if co then
        return traceback(co, tostring(err))
    end
    return traceback(tostring(err), 2)
end

-- Yielding across xpcall: LuaJIT allows it.  Plain Lua 5.1 (unit specs)
-- does not, so there the handler runs in a coroutine of its own and its
-- yields are passed on to the request's coroutine.
local protected
if rawget(_G, "jit") then
    protected = function(f)
        local ok, err = xpcall(f, on_error)
        return ok, err
    end
else
    local create, resume, yield, status = coroutine.create,
        coroutine.resume, coroutine.yield, coroutine.status
    protected = function(f)
        local co = create(f)
        local function step(ok, ...)
            if not ok then
                return false, on_error((...), co)
            end
            if status(co) == "dead" then
                return true, ...
            end
            return step(resume(co, yield(...)))
        end
        return step(resume(co))
    end
end

-- Request states are reused: _M.finish empties a finished request's
-- table (table.clear keeps its slots) and keeps it for the next request,
-- so a request that only runs plugins makes almost no garbage (a fresh
-- 13-field table per request was most of the GC's work under load).
-- Nothing outlives the request with a reference to its state: plugins
-- see ngx.ctx and kong.ctx (tables of their own, never reused), timers
-- and cosockets keep no request state, and a request cut short has its
-- coroutine dropped before _M.finish.
local ok_clear, tclear = pcall(require, "table.clear")
if not ok_clear then
    tclear = nil                -- plain Lua (unit specs): no reuse
end
local spare, nspare = {}, 0
local SPARE_MAX = 512

-- A state table made with a slot for each field every request sets (no
-- rehash as they are filled); times (for kong.log.serialize: only when a
-- plugin of the route has a log phase), shared, plugin_ctx (kong.ctx),
-- confs and the rest are added on first use.  false = none.
local function new_state()
    return {
        r = false, req_id = false, route_index = false, snap = false,
        list = false, route = false, service = false,
        ngx_ctx = false,        -- made at first use (context.ngx_ctx)
        phase = false, phase_bit = false, plugin_name = false, plugin = false,
    }
end

local function new_request(r, req_id, route_index, name, bitv)
    local snap = active
    local route = route_index and snap and snap.routes[route_index]
    local ctx
    if nspare > 0 then
        ctx = spare[nspare]
        spare[nspare] = nil
        nspare = nspare - 1
    else
        ctx = new_state()
    end
    ctx.r = r                   -- a cdata (see _M.phase)
    ctx.req_id, ctx.route_index, ctx.snap = req_id, route_index, snap
    ctx.list = (route_index and snap and snap.lists[route_index]) or
               (snap and snap.global) or EMPTY
    ctx.route = route
    ctx.service = route and route.service and snap.services[route.service.id]
    ctx.ngx_ctx = false
    ctx.phase, ctx.phase_bit = name, bitv
    ctx.plugin_name, ctx.plugin = false, false
    return ctx
end

-- the instance of `entry` for this request and phase
-- (without consumer-scoped instances the choice is static)
local function resolve(ctx, entry, phase)
    if phase == "rewrite" or phase == "certificate" then
        return entry.global             -- global plugins only (Kong)
    end
    local combos = entry.combos
    if not combos then
        return entry.default
    end
    local confs = ctx.confs
    if not confs then
        confs = {}
        ctx.confs = confs
    end
    if phase ~= "access" then
        local c = confs[entry.name]
        if c ~= nil then
            return c or nil
        end
    end
    local inst = entry.default
    local nctx = ctx.ngx_ctx
    local consumer = nctx and nctx.authenticated_consumer
    local cid = type(consumer) == "table" and consumer.id or nil
    if cid then
        inst = lookup(combos, entry.rid, entry.sid, cid)
    end
    confs[entry.name] = inst or false
    return inst
end

-- Forget request req_id (runloop.finish, see the file header; or the
-- runloop itself, see forget_if_done).
local function finish(req_id)
    local ctx = requests[req_id]
    if not ctx then
        return
    end
    requests[req_id] = nil
    if context.current == ctx then
        context.current = nil
    end
    if tclear and nspare < SPARE_MAX then
        tclear(ctx)
        nspare = nspare + 1
        spare[nspare] = ctx
    end
end
_M.finish = finish

-- A request whose plugins run in rewrite / access only is done with Lua
-- when that phase returns: forget it then and say so (phase's third
-- value), and the core skips its runloop.finish call -- one C-to-Lua call
-- less per request.  Later phases (response, the filters, log) need the
-- state, and body_filter runs once per piece.  The certificate phase (a
-- TLS handshake, before any request, on a state of its own) is always
-- the last.  true: forgotten.
local FORGET_AFTER = { rewrite = true, access = true }

local function forget_if_done(ctx, name, bitv)
    if name == "certificate"
       or (FORGET_AFTER[name] and ctx.list.phases < bitv * 2)
    then
        finish(ctx.req_id)
        return true
    end
    return false
end

local EXIT_PHASES = { rewrite = true, access = true, response = true }

--- See the file header.
function _M.phase(name, r, req_id, route_index, chunk, eof)
    local bitv
    if type(name) == "number" then      -- the core passes the phase's bit
        bitv = name
        name = phase_names[bitv]
    else
        bitv = phases.bits[name]
    end
    if not name or not bitv then
        return "error", "unknown phase: " .. tostring(name)
    end
    local ctx = requests[req_id]
    if not ctx then
        -- the request's address as a cdata: PDK calls on it compile
        -- (moongate.ffi ptr)
        ctx = new_request(to_ptr(r), req_id, route_index, name, bitv)
        requests[req_id] = ctx
        if ctx.list.by_phase.log then
            ctx.times = {}
        end
    end
    if name == "header_filter" then
        local by_phase = ctx.list.by_phase
        local times = ctx.times
        if times then
            times.header_filter = C.mg_lua_now()
        end
        -- later phases read the upstream's head from a snapshot
        if by_phase.log or by_phase.body_filter then
            ctx.resp_snapshot = nil
            ctx.resp_snapshot = P.resp_headers(ctx)
        end
    elseif name == "body_filter" then
        ctx.chunk = chunk
        ctx.eof = eof and true or false
        ctx.chunk_changed = false
    elseif name == "response" then
        -- the upstream's whole body (Kong's buffered proxying)
        ctx.resp_body_raw = chunk
        ctx.resp_body = chunk
    end

    local entries = ctx.list.by_phase[name]
    if not entries then
        if name == "access" and ctx.times then
            ctx.times.access_end = C.mg_lua_now()
        end
        return nil, nil, forget_if_done(ctx, name, bitv)
    end

    ctx.phase = name
    ctx.phase_bit = bitv
    ctx.exited = nil
    context.current = ctx
    local can_exit = EXIT_PHASES[name]
    local result, msg

    for i = 1, #entries do
        local entry = entries[i]
        local inst = resolve(ctx, entry, name)
        if inst then
            ctx.plugin_name = entry.name
            ctx.plugin = inst
            cur_fn, cur_self, cur_conf = entry.handler[name], entry.handler,
                                         inst.conf
            local ok, err = protected(run_current)
            context.current = ctx
            if not ok and err == EXIT then
                result = "exit"
                break
            elseif not ok and err ~= QUIT then
                msg = format("[kong] plugin '%s' failed in the %s phase: %s",
                             entry.name, name, tostring(err))
                log(LOG.ERR, msg)
                result = "error"
                break
            end
            if can_exit then
                if ctx.exited then
                    result = "exit"     -- the exit's error was swallowed
                    break
                end
                if ctx.out then         -- ngx.say without ngx.exit
                    local s = C.mg_lua_resp_status(ctx.r)
                    local sok, serr = mg_ngx.send_output(ctx,
                                                         s ~= 0 and s or 200)
                    context.current = ctx
                    if sok then
                        result = "exit"
                    else
                        msg = format("[kong] plugin '%s' output failed: %s",
                                     entry.name, tostring(serr))
                        log(LOG.ERR, msg)
                        result = "error"
                    end
                    break
                end
            end
        end
    end

    ctx.plugin_name = false
    ctx.plugin = false
    if name == "body_filter" and ctx.chunk_changed then
        local c = ctx.chunk or ""
        if C.mg_lua_resp_set_chunk(ctx.r, c, #c) ~= api.OK then
            msg = "[kong] body_filter: " .. (api.cstr(C.mg_lua_last_error())
                                             or "set_chunk failed")
            log(LOG.ERR, msg)
            result = result or "error"
        end
    end
    if name == "access" and ctx.times then
        ctx.times.access_end = C.mg_lua_now()
    end
    context.current = nil
    return result, result == "error" and msg or nil,
           forget_if_done(ctx, name, bitv)
end

--- An ngx.timer callback, called by the core in the timer's own
-- coroutine: fn(premature, ...) under xpcall; an error is logged.
function _M.run_timer(id, premature, t)
    local tm = context.timers[id]
    if not tm then
        return
    end
    if not tm.every or premature then
        context.timers[id] = nil
    end
    local ctx = { timer = t, kind = "timer" }
    context.current = ctx
    local ok, err = xpcall(function()
        return tm.fn(premature, unpack(tm.args, 1, tm.n))
    end, debug.traceback)
    context.current = nil
    if not ok then
        log(LOG.ERR, "[kong] timer callback failed: " .. tostring(err))
    end
end

--- The loaded plugins (name -> { handler, schema, priority, ... }).
function _M.plugins()
    return loaded
end

--- Forget every loaded plugin and snapshot (specs).
function _M.reset()
    loaded, worker_inited, active, configured = {}, {}, nil, nil
    _M.active = nil
    for k in pairs(requests) do
        requests[k] = nil
    end
    context.current = nil
end

return _M
