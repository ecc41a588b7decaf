-- moongate.admin -- Kong's Admin API, served by the admin process.
--
-- Lifecycle: the core forks the admin process, builds one LuaJIT VM with
-- the `kong` PDK, calls `init(doc)` once, then `handle()` for every
-- request on admin_listen, in the request's access phase, inside a
-- coroutine (so DAO calls may wait).  The bearer token and TLS are
-- checked in C before this code runs.
--
-- handle() reads the request through the PDK, finds the endpoint
-- (moongate.admin.router), decodes the query and the body
-- (moongate.admin.args), runs the endpoint -- `fn(req) -> status, body,
-- headers` -- and answers once with kong.response.exit, the body JSON-
-- encoded by moongate.admin.json (Kong's [] for empty arrays).  An error
-- raised by an endpoint is logged with its traceback and answered with
-- Kong's 500 {"message": "An unexpected error occurred"}.
--
-- Endpoints: the node ones (moongate.admin.info), /config
-- (moongate.admin.config), the CRUD endpoints generated from every DAO of
-- moongate.db (moongate.admin.endpoints), and the few Kong writes by hand
-- (below: /targets disabled at the top level, targets by "host:port",
-- /upstreams/{u}/health, consumers by custom_id, certificates with their
-- snis).
--
-- Rejected: a lapis-style app object per request -- the table of routes
-- is built once at init and the request state is one small table.

local json = require "moongate.admin.json"
local args = require "moongate.admin.args"
local router_mod = require "moongate.admin.router"
local endpoints = require "moongate.admin.endpoints"
local info = require "moongate.admin.info"
local config = require "moongate.admin.config"
local context = require "moongate.context"

local type = type
local pairs = pairs
local next = next
local ipairs = ipairs
local xpcall = xpcall
local tostring = tostring
local traceback = debug.traceback
local sort = table.sort
local concat = table.concat
local find = string.find
local sub = string.sub
local match = string.match

local null = json.null
local array = json.array
local NOT_FOUND = endpoints.NOT_FOUND
local METHOD_NOT_ALLOWED = endpoints.METHOD_NOT_ALLOWED

local _M = {}

local state        -- set by init

local JSON_HEADERS = { ["Content-Type"] = "application/json; charset=utf-8" }
local MAX_BODY = 10 * 1024 * 1024

-- DAOs that have no generic Admin API endpoints (Kong's own choices)
local NO_ENDPOINTS = { tags = true, workspaces = true, clustering_data_planes
                       = true, parameters = true, oauth2_tokens = true,
                       oauth2_authorization_codes = true }

-- Kong's path names of the credential DAOs, for a db whose schemas do not
-- carry admin_api_name / admin_api_nested_name themselves
local API_NAMES = {
    keyauth_credentials = { "key-auths", "key-auth" },
    basicauth_credentials = { "basic-auths", "basic-auth" },
    jwt_secrets = { "jwts", "jwt" },
    hmacauth_credentials = { "hmac-auths", "hmac-auth" },
    acls = { "acls", "acls" },
    oauth2_credentials = { "oauth2", "oauth2" },
}

-- the DAOs of db: name -> dao
local function daos_of(db)
    local out = {}
    local src = type(db.daos) == "table" and db.daos or db
    if type(db.entity_names) == "function" then
        -- moongate.db builds its DAOs on first use: ask for each by name
        src = {}
        for _, name in ipairs(db:entity_names()) do
            src[name] = db[name]
        end
    end
    for name, dao in pairs(src) do
        if type(name) == "string" and type(dao) == "table" and
           type(dao.schema) == "table" and not NO_ENDPOINTS[name] then
            out[name] = dao
        end
    end
    return out
end

local function sorted_names(t)
    local names = {}
    for k in pairs(t) do
        names[#names + 1] = k
    end
    sort(names)
    return names
end

-- hand-written endpoints ----------------------------------------------------

local HEALTH_501 = {
    message = "setting a target's health through the Admin API is not " ..
              "supported yet; health follows the upstream's healthchecks",
}

-- A target's health as the workers see it: the shared health arena read
-- through the admin process's own view of the current configuration
-- (core/upstream/mg_health.h mg_health_target_status).  Kong's words:
-- HEALTHY, UNHEALTHY, HEALTHCHECKS_OFF.
local ffi_api = require "moongate.ffi"
local health_out
local function target_health(upstream_id, target)
    if not health_out then
        if ffi_api.fake then
            health_out = {}
        else
            health_out = require("ffi").new("int[1]")
        end
    end
    local rc = ffi_api.C.mg_lua_health_target_status(upstream_id,
                                                     #upstream_id, target,
                                                     #target, health_out)
    if rc ~= ffi_api.OK then
        return "HEALTHCHECKS_OFF"
    end
    return health_out[0] == 1 and "HEALTHY" or "UNHEALTHY"
end

local function register_custom(router, st)
    local db = st.db
    local daos = st.daos

    -- targets: no top-level collection, looked up by "host:port" too
    if daos.targets and daos.upstreams then
        router:remove("/targets")
        router:remove("/targets/:targets")
        router:remove("/targets/:targets/upstream")
        local tdao = daos.targets
        local tschema = tdao.schema
        local entity = endpoints.child_entity(db, daos.upstreams.schema,
                                              tschema, "upstream")
        -- a target given as "host:port": find it among the upstream's
        local function by_target(req)
            local key = req.params.targets
            if args.is_uuid(key) then
                return
            end
            local up = endpoints.select_key(daos.upstreams,
                                            req.params.upstreams)
            if not up then
                return
            end
            local offset
            repeat
                local rows, _, _, next_offset = tdao:page_for_upstream(
                    { id = up.id }, 1000, offset)
                if not rows then
                    return
                end
                for _, row in ipairs(rows) do
                    if row.target == key or row.target == key .. ":8000" then
                        req.params.targets = row.id
                        return
                    end
                end
                offset = next_offset
            until not offset
        end
        local wrapped = {}
        for m, fn in pairs(entity) do
            wrapped[m] = function(req)
                by_target(req)
                return fn(req)
            end
        end
        router:add("/upstreams/:upstreams/targets/:targets", wrapped, tschema)
        local not_yet = function()
            return 501, HEALTH_501
        end
        router:add("/upstreams/:upstreams/targets/:targets/healthy",
                   { PUT = not_yet, POST = not_yet }, tschema)
        router:add("/upstreams/:upstreams/targets/:targets/unhealthy",
                   { PUT = not_yet, POST = not_yet }, tschema)
        router:add("/upstreams/:upstreams/targets/all",
                   { GET = router.by["/upstreams/:upstreams/targets"]
                           .methods.GET }, tschema)
    end
    if daos.upstreams then
        router:add("/upstreams/:upstreams/health", { GET = function(req)
            local up, err, err_t = endpoints.select_key(daos.upstreams,
                                                        req.params.upstreams)
            if err_t or err then
                return endpoints.handle_error(err_t, err)
            end
            if not up then
                return 404, NOT_FOUND
            end
            local data, offset = {}, nil
            repeat
                local rows, terr, terr_t, next_offset =
                    daos.targets:page_for_upstream({ id = up.id }, 1000,
                                                   offset)
                if not rows then
                    return endpoints.handle_error(terr_t, terr)
                end
                for _, row in ipairs(rows) do
                    row.health = target_health(up.id, row.target)
                    data[#data + 1] = row
                end
                offset = next_offset
            until not offset
            return 200, { data = array(data), next = null,
                          node_id = state.doc.node_id or null }
        end })
    end

    -- GET /consumers?custom_id=x (Kong's filter)
    if daos.consumers then
        local route = router.by["/consumers"]
        local list = route.methods.GET
        route.methods.GET = function(req)
            local cid = req.query.custom_id
            if type(cid) == "table" then
                cid = cid[1]
            end
            if type(cid) ~= "string" then
                return list(req)
            end
            local dao = daos.consumers
            local row, err, err_t
            if dao.select_by_custom_id then
                row, err, err_t = dao:select_by_custom_id(cid)
            else
                -- a DAO without Kong's select_by_<unique>: look through
                local offset
                repeat
                    local rows, next_offset
                    rows, err, err_t, next_offset = dao:page(1000, offset)
                    for _, c in ipairs(rows or {}) do
                        if c.custom_id == cid then
                            row = c
                        end
                    end
                    offset = next_offset
                until row or not rows or not offset
            end
            if err_t or err then
                return endpoints.handle_error(err_t, err)
            end
            return 200, { data = array({ row and endpoints.present(
                req, dao.schema, row) or nil }), next = null }
        end
    end
end

-- certificates carry the names of their snis (Kong's "snis" field)
local function decorate(schema, row)
    if schema.name ~= "certificates" or not state.daos.snis or
       type(row.id) ~= "string" then
        return
    end
    local snis = state.daos.snis
    local names = array({})
    if snis.page_for_certificate then
        local rows = snis:page_for_certificate({ id = row.id }, 1000)
        for _, s in ipairs(rows or {}) do
            names[#names + 1] = s.name
        end
    end
    sort(names)
    row.snis = names
end

-- init ------------------------------------------------------------------

--- Called once by the core with the admin document (see the brief in
-- docs/admin-api.md): opens the store, builds the DAOs and the routes.
-- Returns true, or nil and a message.  `opts.db` (specs) replaces the
-- store and DAOs.
function _M.init(doc, opts)
    if type(doc) ~= "table" then
        return nil, "admin init: expected a document table"
    end
    opts = opts or {}
    local conf = type(doc.configuration) == "table" and doc.configuration
                 or {}
    local dbless = conf.database == "off"

    local db = opts.db
    if not db then
        local ok, DB = pcall(require, "moongate.db")
        if not ok then
            return nil, "admin init: cannot load moongate.db: " ..
                        tostring(DB)
        end
        local err
        db, err = DB.open(conf)
        if not db then
            return nil, "admin init: " .. tostring(err)
        end
    end

    -- the enabled plugins: schemas and versions
    local plugins = {}
    local loader = require "moongate.plugin_loader"
    local enabled = doc.enabled_plugins or {}
    if type(enabled) == "string" then
        local list = {}
        for n in enabled:gmatch("[^,%s]+") do
            list[#list + 1] = n
        end
        enabled = list
    end
    local enabled_list = {}
    for _, name in ipairs(enabled) do
        if name ~= "bundled" and name ~= "off" then
            local p, err = loader.load(name)
            if not p then
                return nil, "admin init: " .. tostring(err)
            end
            plugins[name] = p
            enabled_list[#enabled_list + 1] = name
        end
    end
    sort(enabled_list)

    local st = {
        doc = doc,
        conf = conf,
        db = db,
        dbless = dbless,
        plugins = plugins,
        daos = daos_of(db),
        status_source = opts.status_source,
        node_info = opts.node_info,
    }
    st.enabled_list = function()
        local c = {}
        for i, n in ipairs(enabled_list) do
            c[i] = n
        end
        return c
    end
    st.reachable = function()
        local dao = st.daos.services or st.daos[next(st.daos) or ""]
        if not dao then
            return false
        end
        local ok, rows = pcall(dao.page, dao, 1)
        return ok and rows ~= nil
    end
    st.has_config = function()
        for _, dao in pairs(st.daos) do
            local ok, rows = pcall(dao.page, dao, 1)
            if ok and type(rows) == "table" and rows[1] ~= nil then
                return true
            end
        end
        return false
    end
    for name, dao in pairs(st.daos) do
        local names = API_NAMES[name]
        if names and not dao.schema.admin_api_name then
            dao.schema.admin_api_name = names[1]
            dao.schema.admin_api_nested_name = names[2]
        end
    end

    local router = router_mod.new()
    for _, name in ipairs(sorted_names(st.daos)) do
        endpoints.generate(router, db, st.daos[name])
    end
    register_custom(router, st)
    info.register(router, st)
    config.register(router, st)
    st.router = router
    state = st
    return true
end

-- handle ----------------------------------------------------------------

local function multipart()
    local t, err = kong.request.get_body(nil, 1000)
    if not t then
        return nil, err
    end
    return t
end

local function plugin_schema(name)
    local p = type(name) == "string" and state.plugins[name]
    return p and p.schema or nil
end

local function allow_header(route)
    local m = sorted_names(route.methods)
    m[#m + 1] = "OPTIONS"
    return concat(m, ", ")
end

-- status, body, headers for the current request
local function dispatch()
    local method = kong.request.get_method()
    local path = kong.request.get_path()
    if #path > 1 and sub(path, -1) == "/" then
        path = match(path, "^(.-)/*$")
        if path == "" then
            path = "/"
        end
    end
    local route, params = state.router:match(path)
    if not route then
        return 404, NOT_FOUND
    end
    if method == "OPTIONS" then
        local allow = allow_header(route)
        return 204, nil, { Allow = allow,
                           ["Access-Control-Allow-Methods"] = allow }
    end
    local fn = route.methods[method]
    if not fn and method == "HEAD" then
        fn = route.methods.GET
    end
    if not fn then
        return 405, METHOD_NOT_ALLOWED
    end
    local req = {
        method = method,
        path = path,
        params = params,
        query = args.query(kong.request.get_raw_query()),
        db = state.db,
        dbless = state.dbless,
        plugin_schema = plugin_schema,
        decorate = decorate,
        body = {},
        body_kind = "none",
    }
    if args.NEEDS_BODY[method] then
        local raw, err = kong.request.get_raw_body()
        if not raw then
            if err and find(tostring(err), "large", 1, true) then
                return 413, { message = "Payload too large" }
            end
            raw = ""
        end
        if #raw > MAX_BODY then
            return 413, { message = "Payload too large" }
        end
        local body, kind, msg = args.body(kong.request.get_header(
                                          "content-type"), raw, multipart)
        if not body then
            return kind, { message = msg }
        end
        req.body, req.body_kind, req.raw_body = body, kind, raw
    end
    return fn(req)
end

local function on_error(err)
    if err == context.EXIT or err == context.QUIT then
        return err
    end
    return traceback(tostring(err), 2)
end

--- Answer the current Admin API request (runs in its access phase).
-- Never returns normally: kong.response.exit ends the phase.
function _M.handle()
    if not state then
        return kong.response.exit(500, '{"message":"An unexpected error ' ..
                                  'occurred"}', JSON_HEADERS)
    end
    local ok, status, body, headers = xpcall(dispatch, on_error)
    if not ok then
        if status == context.EXIT or status == context.QUIT then
            error(status, 0)
        end
        kong.log.err("admin API error: ", status)
        status, body, headers = 500, { message = "An unexpected error " ..
                                                 "occurred" }, nil
    end
    local h = {}
    for k, v in pairs(headers or {}) do
        h[k] = v
    end
    local text
    if body ~= nil and status ~= 204 and status ~= 304 then
        local err
        text, err = json.encode(body)
        if not text then
            kong.log.err("admin API: cannot encode the answer: ", err)
            status, text = 500, '{"message":"An unexpected error occurred"}'
        end
        h["Content-Type"] = JSON_HEADERS["Content-Type"]
    end
    return kong.response.exit(status, text, h)
end

--- The state built by init (specs).
function _M.state()
    return state
end

return _M
