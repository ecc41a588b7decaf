-- moongate.admin.info -- the node endpoints of Kong's Admin API
-- (kong/api/routes/kong.lua, health.lua, plugins.lua): GET /, /status,
-- /status/ready, /endpoints, /plugins/enabled, GET /schemas/{entity},
-- GET /schemas/plugins/{name}, POST /schemas/{entity}/validate and
-- POST /schemas/plugins/validate; then the hybrid mode endpoints of the
-- node's role (moongate.cluster).
--
-- Only what is real is reported: `timers`, `pids` and the `server` /
-- `memory` counters of /status appear when the core hands them over
-- (state.status_source), never as made-up numbers.  GET / lists the
-- configuration with every property whose name says secret (password,
-- token, key data...) replaced by "******", Kong's placeholder.
--
-- Rejected: asking the core for live worker counters on every GET / --
-- the admin process is separate from the workers and has nothing to ask
-- in this build.

local json = require "moongate.admin.json"
local endpoints = require "moongate.admin.endpoints"
local serrors = require "moongate.schema.errors"

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local sort = table.sort
local lower = string.lower
local find = string.find

local null = json.null
local array = json.array

local _M = {}

local SECRET = { "password", "secret", "token", "_key_data", "api_key",
                 "credentials", "cert_key" }

local function is_secret(k)
    local lk = lower(tostring(k))
    for _, s in ipairs(SECRET) do
        if find(lk, s, 1, true) then
            return true
        end
    end
    return false
end

--- A copy of the properties with secrets masked (Kong's remove_sensitive).
function _M.remove_sensitive(conf)
    local out = {}
    for k, v in pairs(conf or {}) do
        if is_secret(k) and v ~= nil and v ~= null and v ~= "" then
            out[k] = "******"
        elseif type(v) == "table" then
            local c = {}
            for kk, vv in pairs(v) do
                c[kk] = vv
            end
            out[k] = c
        else
            out[k] = v
        end
    end
    return out
end

-- the schema as JSON: fields (functions dropped, nested records too) and
-- entity checks, as Kong's schema_to_jsonable
local to_jsonable

local function value_jsonable(v, depth)
    if type(v) == "function" or depth > 30 then
        return nil
    end
    if type(v) ~= "table" then
        return v
    end
    local out = {}
    for k, x in pairs(v) do
        if k ~= "schema" or type(x) ~= "table" then
            out[k] = value_jsonable(x, depth + 1)
        end
    end
    if v[1] ~= nil then
        array(out)
    end
    return out
end

to_jsonable = function(schema)
    local fields = array({})
    for name, field in json.each_field(schema.fields or {}) do
        local f = value_jsonable(field, 0)
        if field.type == "record" and type(field.fields) == "table" then
            f.fields = to_jsonable(field).fields
        end
        fields[#fields + 1] = { [name] = f }
    end
    local out = { fields = fields }
    if type(schema.entity_checks) == "table" and
       #schema.entity_checks > 0 then
        out.entity_checks = value_jsonable(schema.entity_checks, 0)
    end
    return out
end
_M.schema_to_jsonable = to_jsonable

local VALID = { message = "schema validation successful" }

local function violation(errs)
    return 400, {
        code = endpoints.CODES.SCHEMA_VIOLATION,
        name = "schema violation",
        message = serrors.schema_violation(errs),
        fields = errs,
    }
end

-- validate input against schema (a moongate.schema object)
local function validate(schema, input)
    if type(schema.process_auto_fields) ~= "function" or
       type(schema.validate) ~= "function" then
        return 500, { message = "An unexpected error occurred" }
    end
    local data, err = schema:process_auto_fields(input, "insert")
    if not data then
        return violation(err)
    end
    local ok, errs = schema:validate(data)
    if not ok then
        return violation(errs)
    end
    return 200, VALID
end

--- Add the node endpoints to router; state is moongate.admin's.
function _M.register(router, state)
    router:add("/", { GET = function()
        local distinct = array({})
        local seen = {}
        local dao = state.db and state.db.plugins
        if dao then
            local offset
            repeat
                local rows, err, _, next_offset = dao:page(1000, offset)
                if not rows then
                    kong.log.err("could not list plugins: ", err)
                    return 500, { message = "An unexpected error occurred" }
                end
                for _, row in ipairs(rows) do
                    if row.name and not seen[row.name] then
                        seen[row.name] = true
                        distinct[#distinct + 1] = row.name
                    end
                end
                offset = next_offset
            until not offset
            sort(distinct)
        end
        local available = {}
        for name, p in pairs(state.plugins) do
            available[name] = { version = p.version, priority = p.priority }
        end
        local doc = state.doc
        local body = {
            tagline = "Welcome to moongate",
            version = doc.version,
            edition = "community",
            hostname = doc.hostname,
            node_id = doc.node_id,
            lua_version = (jit and jit.version) or _VERSION,
            plugins = {
                available_on_server = available,
                enabled_in_cluster = distinct,
            },
            configuration = _M.remove_sensitive(doc.configuration),
        }
        if doc.pid then
            body.pids = { master = doc.pid }
        end
        local extra = state.node_info and state.node_info()
        if type(extra) == "table" then
            for k, v in pairs(extra) do
                body[k] = v
            end
        end
        return 200, body
    end })

    router:add("/status", { GET = function()
        local reachable = state.reachable()
        local body = { database = { reachable = reachable } }
        local extra = state.status_source and state.status_source()
        if type(extra) == "table" then
            for k, v in pairs(extra) do
                body[k] = v
            end
        end
        -- a data plane: its control plane connection and config
        -- (moongate.cluster.data_plane)
        extra = state.cluster_status and state.cluster_status()
        if type(extra) == "table" then
            for k, v in pairs(extra) do
                body[k] = v
            end
        end
        return 200, body
    end })

    router:add("/status/ready", { GET = function()
        if not state.reachable() then
            return 503, { message = "failed to connect to database" }
        end
        if state.dbless and not state.has_config() then
            return 503, { message = "no configuration available (empty " ..
                                    "configuration present)" }
        end
        return 200, { message = "ready" }
    end })

    router:add("/endpoints", { GET = function()
        return 200, { data = array(router:patterns()) }
    end })

    router:add("/plugins/enabled", { GET = function()
        return 200, { enabled_plugins = array(state.enabled_list()) }
    end })

    -- the DAO /schemas/:name names, or 404 and Kong's message
    local function named_dao(req)
        local dao = state.daos[req.params.name]
        if not dao then
            return nil, { message = "No entity named '" ..
                                    req.params.name .. "'" }
        end
        return dao
    end

    router:add("/schemas/:name", { GET = function(req)
        local dao, body = named_dao(req)
        if not dao then
            return 404, body
        end
        return 200, to_jsonable(dao.schema)
    end })

    router:add("/schemas/plugins/:name", { GET = function(req)
        local p = state.plugins[req.params.name]
        if not p then
            return 404, { message = "No plugin named '" ..
                                    req.params.name .. "'" }
        end
        return 200, to_jsonable(p.schema)
    end })

    router:add("/schemas/:name/validate", { POST = function(req)
        local dao, body = named_dao(req)
        if not dao then
            return 404, body
        end
        return validate(dao.schema, endpoints.body_for(req, dao.schema))
    end })

    router:add("/schemas/plugins/validate", { POST = function(req)
        local body = req.body or {}
        local name = body.name
        local p = type(name) == "string" and state.plugins[name]
        if not p then
            local msg
            if type(name) ~= "string" then
                msg = "required field missing"
            else
                msg = serrors.messages.PLUGIN_NOT_ENABLED:format(name)
            end
            return violation({ name = msg })
        end
        if req.body_kind == "form" then
            require("moongate.admin.args").infer(body, p.schema)
        end
        return validate(p.schema, body)
    end })

    -- hybrid mode: /clustering/*, /v1/config, a data plane's read-only
    -- API (moongate.cluster)
    require("moongate.cluster").register(router, state)
end

return _M
