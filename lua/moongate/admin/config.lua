-- moongate.admin.config -- /config: the declarative configuration through
-- the Admin API (kong/api/routes/config.lua).
--
--   GET /config    200 { config = "<YAML of every entity>" }
--   POST /config   database = off only (Kong's 400 otherwise): the body
--                  is the document itself (JSON with _format_version) or
--                  { config = "<YAML or JSON text>" } (JSON or form), or
--                  a raw YAML/JSON text; 201 with the loaded entities by
--                  type and id; 400 { code = 14, name = "invalid
--                  declarative configuration", message, fields } on
--                  error (plus flattened_errors with ?flatten_errors=1);
--                  304 with ?check_hash=1 when nothing changed.
--
-- Import and export are moongate.db.declarative's; nothing is parsed
-- here.  GET /config also answers with database = lmdb (Kong only has it
-- without a database): an export is harmless and handy for backups.
--
-- Rejected: accepting POST /config with database = lmdb as a bulk import
-- -- Kong refuses it there, and tools that probe for DB-less mode rely
-- on the refusal.

local json = require "moongate.admin.json"
local endpoints = require "moongate.admin.endpoints"
local serrors = require "moongate.schema.errors"

local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local tostring = tostring
local match = string.match

local _M = {}

local UNEXPECTED = { message = "An unexpected error occurred" }
local ONLY_DBLESS = { message = "this endpoint is only available when " ..
                      "Kong is configured to not use a database" }

local function truthy(v)
    if type(v) == "table" then
        v = v[1]
    end
    if type(v) == "string" then
        v = v:lower()
    end
    return v == true or v == 1 or v == "true" or v == "1" or v == "on" or
           v == "yes"
end

local function declarative()
    local ok, mod = pcall(require, "moongate.db.declarative")
    if ok and type(mod) == "table" then
        return mod
    end
    return nil, tostring(mod)
end

-- Kong's 400 for an invalid document
local function invalid(err, err_t, flatten)
    local body
    if type(err_t) == "table" and err_t.code then
        body = {}
        for k, v in pairs(err_t) do
            body[k] = v
        end
        body.strategy = nil
    else
        body = {
            code = endpoints.CODES.DECLARATIVE_CONFIG,
            name = "invalid declarative configuration",
            message = "declarative config is invalid: " ..
                      tostring(err or "unknown error"),
            fields = type(err_t) == "table" and err_t or {},
        }
    end
    if body.code == endpoints.CODES.DECLARATIVE_CONFIG or body.code == nil then
        if flatten then
            body.flattened_errors = json.array(
                serrors.flatten(type(body.fields) == "table" and
                                body.fields or {}))
        end
        return 400, body
    end
    return endpoints.handle_error(body, err)
end

-- every entity by type and id, as Kong's answer to POST /config
local function loaded_entities(state)
    local out = {}
    for name, dao in pairs(state.daos) do
        local by_id = {}
        local any = false
        local offset
        repeat
            local rows, _, _, next_offset = dao:page(1000, offset)
            if not rows then
                break
            end
            for _, row in ipairs(rows) do
                if row.id then
                    by_id[row.id] = json.mark(dao.schema, row)
                    any = true
                end
            end
            offset = next_offset
        until not offset
        if any then
            out[name] = by_id
        end
    end
    return out
end

function _M.register(router, state)
    router:add("/config", {
        GET = function()
            local D, derr = declarative()
            if not D or not D.export then
                kong.log.err("declarative export unavailable: ", derr)
                return 500, UNEXPECTED
            end
            local text, err = D.export(state.db, "yaml")
            if not text then
                kong.log.err("could not export the configuration: ", err)
                return 500, UNEXPECTED
            end
            return 200, { config = text }
        end,

        POST = function(req)
            if not state.dbless then
                return 400, ONLY_DBLESS
            end
            local q = req.query
            local body = req.body or {}
            local text
            if body._format_version ~= nil then
                if req.body_kind == "json" then
                    text = req.raw_body
                else
                    text = json.encode(body)
                end
            elseif type(body.config) == "string" then
                text = body.config
            elseif type(body.config) == "table" then
                text = json.encode(body.config)
            elseif req.raw_body and not match(req.raw_body, "^%s*$") and
                   req.body_kind ~= "form" and req.body_kind ~= "json" then
                text = req.raw_body
            end
            if not text then
                return 400, { message = "expected a declarative " ..
                                        "configuration" }
            end
            local D, derr = declarative()
            if not D or not D.import then
                kong.log.err("declarative import unavailable: ", derr)
                return 500, UNEXPECTED
            end
            if truthy(q.check_hash) and D.hash and D.get_current_hash then
                local old = D.get_current_hash(state.db)
                if old and old == D.hash(text) then
                    return 304
                end
            end
            local ok, err, err_t = D.import(state.db, text)
            if not ok then
                return invalid(err, err_t, truthy(q.flatten_errors))
            end
            if type(ok) == "table" then
                return 201, ok
            end
            return 201, loaded_entities(state)
        end,
    })
end

return _M
