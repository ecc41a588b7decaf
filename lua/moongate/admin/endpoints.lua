-- moongate.admin.endpoints -- the CRUD endpoints Kong generates from each
-- DAO's schema (kong/api/endpoints.lua), as handler functions.
--
-- For a DAO `S` (path name: schema.admin_api_name or schema.name) and each
-- of its foreign fields `f` -> `F`:
--   /S                 GET page, POST insert
--   /S/:S              GET, PUT (upsert), PATCH (update), DELETE
--   /S/:S/f            the parent: GET, PUT, PATCH; DELETE -> 405
--   /F/:F/S'           GET page_for_f, POST (f filled from the URL)
--   /F/:F/S'/:S        GET, PUT, PATCH, DELETE of a child of that parent
-- (S' = admin_api_nested_name or the path name).  `:S` is an id, or the
-- schema's endpoint_key (a service's name, a consumer's username).
--
-- A handler is `fn(req) -> status, body[, headers]`; moongate.admin sends
-- the answer.  Errors from the DAO (`nil, err, err_t`) become Kong's
-- statuses and bodies (handle_error).  In database = off every write is
-- refused here, before the DAO, with Kong's "off" strategy errors.
--
-- Where the DAO lacks Kong's `<op>_by_<endpoint_key>` helpers, the entity
-- is first selected by its endpoint key and the operation then runs on its
-- primary key (same answers, one more read).
--
-- Rejected: calling kong.response.exit inside the handlers, as Kong's do
-- -- the exit unwinds through error(), and every pcall between here and the
-- dispatcher would have to tell it apart from a real failure.

local args = require "moongate.admin.args"
local json = require "moongate.admin.json"
local codec = require "moongate.codec"

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local format = string.format
local escape_uri = codec.escape_uri

local null = json.null
local is_uuid = args.is_uuid
local infer_value = args.infer_value

local _M = {}

-- Kong's kong/db/errors.lua codes
local CODES = {
    INVALID_PRIMARY_KEY = 1, SCHEMA_VIOLATION = 2, PRIMARY_KEY_VIOLATION = 3,
    FOREIGN_KEY_VIOLATION = 4, UNIQUE_VIOLATION = 5, NOT_FOUND = 6,
    INVALID_OFFSET = 7, DATABASE_ERROR = 8, INVALID_SIZE = 9,
    INVALID_UNIQUE = 10, INVALID_OPTIONS = 11, OPERATION_UNSUPPORTED = 12,
    FOREIGN_KEYS_UNRESOLVED = 13, DECLARATIVE_CONFIG = 14,
    TRANSFORMATION_ERROR = 15, INVALID_FOREIGN_KEY = 16,
    INVALID_WORKSPACE = 17, INVALID_UNIQUE_GLOBAL = 18,
    REFERENCED_BY_OTHERS = 19,
}
_M.CODES = CODES

local HTTP = {
    [1] = 400, [2] = 400, [3] = 400, [4] = 400, [5] = 409, [6] = 404,
    [7] = 400, [8] = 500, [9] = 400, [10] = 400, [11] = 400, [12] = 405,
    [13] = 400, [14] = 400, [16] = 400, [18] = 400, [19] = 400,
}

local NAMES = {
    [9] = "invalid size", [12] = "operation unsupported",
    [2] = "schema violation", [14] = "invalid declarative configuration",
}
_M.NAMES = NAMES

local UNEXPECTED = { message = "An unexpected error occurred" }
local NOT_FOUND = { message = "Not found" }
local METHOD_NOT_ALLOWED = { message = "Method not allowed" }
_M.NOT_FOUND = NOT_FOUND
_M.METHOD_NOT_ALLOWED = METHOD_NOT_ALLOWED

local function log_err(...)
    if kong and kong.log then
        kong.log.err(...)
    end
end

local function copy(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = v
    end
    return c
end

--- Kong's handle_error: a DAO error table (or string) -> status, body.
function _M.handle_error(err_t, err)
    if type(err_t) ~= "table" then
        log_err(tostring(err_t or err))
        return 500, UNEXPECTED
    end
    local body = copy(err_t)
    body.strategy = nil
    if body.store_full then
        -- nothing was written; the message names the property to raise
        log_err(body.message)
        return 507, { message = body.message }
    end
    local status = HTTP[body.code]
    if not status or status == 500 then
        log_err(body.message or err or "database error")
        return 500, UNEXPECTED
    end
    if body.message == nil then
        body.message = err
    end
    return status, body
end

-- A DAO call's result as the answer: the row presented with `status`,
-- Kong's error for err/err_t, or 404 when there is neither (not found).
local function answer(req, schema, status, row, err, err_t)
    if row then
        return status, _M.present(req, schema, row)
    end
    if err_t or err then
        return _M.handle_error(err_t, err)
    end
    return 404, NOT_FOUND
end

--- Kong's "off" strategy refusal for a write in database = off.
local WRITE_WORDS = {
    insert = "create", update = "update", upsert = "create or update",
    delete = "remove",
}
function _M.unsupported(schema, op, by)
    local msg
    if by then
        msg = format("cannot %s '%s' entities by '%s' when not using a " ..
                     "database", WRITE_WORDS[op], schema.name, by)
    else
        msg = format("cannot %s '%s' entities when not using a database",
                     WRITE_WORDS[op], schema.name)
    end
    return { code = CODES.OPERATION_UNSUPPORTED, name = "operation unsupported",
             message = msg }
end

local function pk_fields(schema)
    return schema.primary_key or { "id" }
end

--- The primary key values of row: { id = ... }.
local function pk_of(schema, row)
    local pk = {}
    for _, k in ipairs(pk_fields(schema)) do
        local v = row[k]
        if type(v) == "table" then
            v = v.id
        end
        pk[k] = v
    end
    return pk
end
_M.pk_of = pk_of

local function same_pk(schema, fk, parent)
    if type(fk) ~= "table" then
        return false
    end
    for k, v in pairs(pk_of(schema, parent)) do
        if fk[k] ~= v then
            return false
        end
    end
    return true
end

-- the endpoint-key field to use for a URL key, or nil (then it is a pk)
local function endpoint_key(schema, key)
    local ek = schema.endpoint_key
    if type(key) ~= "string" or is_uuid(key) or not ek then
        return nil
    end
    local field = schema.fields and schema.fields[ek]
    return ek, infer_value(key, field)
end

local function opts_of(extra)
    local o = { nulls = true }
    if extra then
        for k, v in pairs(extra) do
            o[k] = v
        end
    end
    return o
end

--- Select by URL key (id or endpoint key) -> row | nil, err, err_t.
local function select_key(dao, key)
    local schema = dao.schema
    if type(key) == "table" then
        return dao:select(key, opts_of())
    end
    local ek, v = endpoint_key(schema, key)
    if ek then
        local fn = dao["select_by_" .. ek]
        if fn then
            return fn(dao, v, opts_of())
        end
    end
    return dao:select({ id = key }, opts_of())
end
_M.select_key = select_key

-- pk for a URL key: { id = key } for ids, else the selected row's pk;
-- nil (no error) when the endpoint key names nothing
local function resolve(dao, key)
    local ek = type(key) == "string" and endpoint_key(dao.schema, key)
    if not ek then
        if type(key) == "table" then
            return key
        end
        return { id = key }
    end
    local row, err, err_t = select_key(dao, key)
    if not row then
        return nil, err, err_t
    end
    return pk_of(dao.schema, row)
end

-- the DAO write `op` on URL key, with Kong's by-endpoint-key variants
local function write_key(req, dao, op, key, body)
    local schema = dao.schema
    local ek, v = endpoint_key(schema, key)
    if req.dbless then
        return nil, nil, _M.unsupported(schema, op, nil)
    end
    if ek then
        local fn = dao[op .. "_by_" .. ek]
        if fn then
            if op == "delete" then
                return fn(dao, v, opts_of())
            end
            return fn(dao, v, body, opts_of())
        end
        if op == "upsert" then
            body[ek] = v
            local row, err, err_t = select_key(dao, key)
            if err_t or err then
                return nil, err, err_t
            end
            if not row then
                return dao:insert(body, opts_of())
            end
            return dao:upsert(pk_of(schema, row), body, opts_of())
        end
    end
    local pk, err, err_t = resolve(dao, key)
    if not pk then
        if err or err_t then
            return nil, err, err_t
        end
        if op == "delete" then
            return true
        end
        return nil
    end
    if op == "delete" then
        return dao:delete(pk, opts_of())
    end
    return dao[op](dao, pk, body, opts_of())
end
_M.write_key = write_key

local function insert(req, dao, body)
    if req.dbless then
        return nil, nil, _M.unsupported(dao.schema, "insert")
    end
    return dao:insert(body, opts_of())
end

-- list options: size (1..1000, default 100), offset, tags ("a,b": all
-- of them, "a/b": any of them)

local function page_options(req, schema)
    local q = req.query
    local size = q.size
    if type(size) == "table" then
        size = size[1]
    end
    if size ~= nil then
        local n = tonumber(size)
        if not n then
            return nil, { code = CODES.INVALID_SIZE, name = "invalid size",
                          message = "size must be a number" }
        end
        if n < 1 or n > 1000 or n ~= math.floor(n) then
            return nil, { code = CODES.INVALID_SIZE, name = "invalid size",
                          message = "size must be an integer between 1 " ..
                                    "and 1000" }
        end
        size = n
    end
    local offset = q.offset
    if type(offset) == "table" then
        offset = offset[1]
    end
    if offset == true then
        offset = nil
    end
    local o = opts_of()
    local tags = q.tags
    if type(tags) == "table" then
        tags = tags[1]
    end
    if type(tags) == "string" and schema.fields and schema.fields.tags then
        local list = {}
        if string.find(tags, "/", 1, true) and
           not string.find(tags, ",", 1, true) then
            for t in string.gmatch(tags, "[^/]+") do
                list[#list + 1] = t
            end
            o.tags_cond = "or"
        elseif not string.find(tags, "/", 1, true) then
            for t in string.gmatch(tags, "[^,]+") do
                list[#list + 1] = t
            end
            o.tags_cond = "and"
        else
            return nil, { code = CODES.INVALID_OPTIONS,
                          name = "invalid options",
                          message = "invalid option (tags: invalid filter " ..
                                    "syntax)",
                          fields = { tags = "invalid filter syntax" } }
        end
        o.tags = list
    end
    return size or 100, offset, o
end
_M.page_options = page_options

--- Present one row of schema (mark arrays; plugins by their own schema).
function _M.present(req, schema, row)
    if type(row) ~= "table" then
        return row
    end
    local s = schema
    if schema.name == "plugins" and req.plugin_schema then
        s = req.plugin_schema(row.name) or schema
    end
    json.mark(s, row)
    if req.decorate then
        req.decorate(schema, row)
    end
    return row
end

local function present_list(req, schema, rows)
    local data = json.array({})
    for i, row in ipairs(rows or {}) do
        data[i] = _M.present(req, schema, row)
    end
    return data
end
_M.present_list = present_list

-- the body of a write, inferred from schema (forms only)
local function body_for(req, schema)
    local body = req.body or {}
    if req.body_kind == "form" then
        local s = schema
        if schema.name == "plugins" and req.plugin_schema and body.name then
            s = req.plugin_schema(body.name) or schema
        end
        args.infer(body, s)
    end
    return body
end
_M.body_for = body_for

local function path_name(schema)
    return schema.admin_api_name or schema.name
end
_M.path_name = path_name

local function nested_name(schema)
    return schema.admin_api_nested_name or schema.admin_api_name or
           schema.name
end

-- handlers ---------------------------------------------------------------

local function collection(db, schema, fschema, fname)
    local dao = db[schema.name]
    local h = {}

    if not fschema then
        h.GET = function(req)
            local size, offset, opts = page_options(req, schema)
            if not size then
                return _M.handle_error(offset)
            end
            local rows, err, err_t, next_offset =
                dao:page(size, offset, opts)
            if not rows then
                return _M.handle_error(err_t, err)
            end
            local q = req.query
            local extra = ""
            local tags = type(q.tags) == "table" and q.tags[1] or q.tags
            if type(tags) == "string" then
                extra = extra .. "&tags=" .. escape_uri(tags)
            end
            local size_arg = type(q.size) == "table" and q.size[1] or q.size
            if size_arg ~= nil and size_arg ~= true then
                extra = extra .. "&size=" .. tostring(size_arg)
            end
            return 200, {
                data = present_list(req, schema, rows),
                offset = next_offset,
                next = next_offset and format("/%s?offset=%s%s",
                    path_name(schema), escape_uri(tostring(next_offset)),
                    extra) or null,
            }
        end
        h.POST = function(req)
            local row, err, err_t = insert(req, dao, body_for(req, schema))
            if not row then
                return _M.handle_error(err_t, err)
            end
            return 201, _M.present(req, schema, row)
        end
        return h
    end

    local fdao = db[fschema.name]
    local pname = fschema.name

    h.GET = function(req)
        local parent, err, err_t = select_key(fdao, req.params[pname])
        if err_t or err then
            return _M.handle_error(err_t, err)
        end
        if not parent then
            return 404, NOT_FOUND
        end
        local size, offset, opts = page_options(req, schema)
        if not size then
            return _M.handle_error(offset)
        end
        local method = dao["page_for_" .. fname]
        if not method then
            return 500, UNEXPECTED
        end
        local rows, next_offset
        rows, err, err_t, next_offset = method(dao, pk_of(fschema, parent),
                                               size, offset, opts)
        if not rows then
            return _M.handle_error(err_t, err)
        end
        return 200, {
            data = present_list(req, schema, rows),
            offset = next_offset,
            next = next_offset and format("/%s/%s/%s?offset=%s",
                path_name(fschema), escape_uri(req.params[pname]),
                nested_name(schema), escape_uri(tostring(next_offset)))
                or null,
        }
    end

    h.POST = function(req)
        local parent, err, err_t = select_key(fdao, req.params[pname])
        if err_t or err then
            return _M.handle_error(err_t, err)
        end
        if not parent then
            return 404, NOT_FOUND
        end
        local body = body_for(req, schema)
        body[fname] = pk_of(fschema, parent)
        local row
        row, err, err_t = insert(req, dao, body)
        if not row then
            return _M.handle_error(err_t, err)
        end
        return 201, _M.present(req, schema, row)
    end
    return h
end
_M.collection = collection

-- /S/:S
local function entity(db, schema)
    local dao = db[schema.name]
    local name = schema.name
    local h = {}
    h.GET = function(req)
        local row, err, err_t = select_key(dao, req.params[name])
        if err_t or err then
            return _M.handle_error(err_t, err)
        end
        if not row then
            return 404, NOT_FOUND
        end
        return 200, _M.present(req, schema, row)
    end
    h.PUT = function(req)
        local row, err, err_t = write_key(req, dao, "upsert",
                                          req.params[name],
                                          body_for(req, schema))
        return answer(req, schema, 200, row, err, err_t)
    end
    h.PATCH = function(req)
        local row, err, err_t = write_key(req, dao, "update",
                                          req.params[name],
                                          body_for(req, schema))
        return answer(req, schema, 200, row, err, err_t)
    end
    h.DELETE = function(req)
        local ok, err, err_t = write_key(req, dao, "delete",
                                         req.params[name])
        if not ok and (err_t or err) then
            -- Kong answers 204 for what is not there
            if type(err_t) == "table" and err_t.code == CODES.NOT_FOUND then
                return 204
            end
            return _M.handle_error(err_t, err)
        end
        return 204
    end
    return h
end
_M.entity = entity

-- /S/:S/f -- the entity S points to through its foreign field f
local function parent_entity(db, schema, fschema, fname)
    local dao, fdao = db[schema.name], db[fschema.name]
    local name = schema.name
    local h = {}

    local function child(req)
        local row, err, err_t = select_key(dao, req.params[name])
        if err_t or err then
            return nil, _M.handle_error(err_t, err)
        end
        if not row then
            return nil, 404, NOT_FOUND
        end
        return row
    end

    h.GET = function(req)
        local row, status, body = child(req)
        if not row then
            return status, body
        end
        local fk = row[fname]
        if type(fk) ~= "table" then
            return 404, NOT_FOUND
        end
        local parent, err, err_t = fdao:select(pk_of(fschema, fk), opts_of())
        if err_t or err then
            return _M.handle_error(err_t, err)
        end
        if not parent then
            return 404, NOT_FOUND
        end
        return 200, _M.present(req, fschema, parent)
    end

    h.PATCH = function(req)
        local row, status, body = child(req)
        if not row then
            return status, body
        end
        local fk = row[fname]
        if type(fk) ~= "table" then
            return 404, NOT_FOUND
        end
        if req.dbless then
            return _M.handle_error(_M.unsupported(fschema, "update"))
        end
        local parent, err, err_t = fdao:update(pk_of(fschema, fk),
                                               body_for(req, fschema),
                                               opts_of())
        return answer(req, fschema, 200, parent, err, err_t)
    end

    h.PUT = function(req)
        local row, status, body = child(req)
        if not row then
            return status, body
        end
        if req.dbless then
            return _M.handle_error(_M.unsupported(fschema, "upsert"))
        end
        local fk = row[fname]
        local parent, err, err_t
        if type(fk) == "table" then
            parent, err, err_t = fdao:upsert(pk_of(fschema, fk),
                                             body_for(req, fschema),
                                             opts_of())
        else
            -- not associated yet: create the parent, then point to it
            parent, err, err_t = fdao:insert(body_for(req, fschema),
                                             opts_of())
            if parent then
                local _, uerr, uerr_t = dao:update(pk_of(schema, row), {
                    [fname] = pk_of(fschema, parent) }, opts_of())
                if uerr or uerr_t then
                    return _M.handle_error(uerr_t, uerr)
                end
            end
        end
        return answer(req, fschema, 200, parent, err, err_t)
    end

    h.DELETE = function(req)
        local row, status, body = child(req)
        if not row then
            return status, body
        end
        if type(row[fname]) ~= "table" then
            return 404, NOT_FOUND
        end
        return 405, METHOD_NOT_ALLOWED
    end
    return h
end
_M.parent_entity = parent_entity

-- /F/:F/S'/:S -- a child S of parent F (through S.f)
local function child_entity(db, fschema, schema, fname)
    local dao, fdao = db[schema.name], db[fschema.name]
    local h = {}

    -- parent and child, the child belonging to the parent
    local function both(req)
        local parent, err, err_t = select_key(fdao, req.params[fschema.name])
        if err_t or err then
            return nil, _M.handle_error(err_t, err)
        end
        if not parent then
            return nil, 404, NOT_FOUND
        end
        local row
        row, err, err_t = select_key(dao, req.params[schema.name])
        if err_t or err then
            return nil, _M.handle_error(err_t, err)
        end
        if not row or not same_pk(fschema, row[fname], parent) then
            return nil, 404, NOT_FOUND
        end
        return parent, row
    end

    h.GET = function(req)
        local parent, row, body = both(req)
        if not parent then
            return row, body
        end
        return 200, _M.present(req, schema, row)
    end

    h.PATCH = function(req)
        local parent, row, body = both(req)
        if not parent then
            return row, body
        end
        local patch = body_for(req, schema)
        if patch[fname] == nil then
            patch[fname] = pk_of(fschema, parent)
        end
        if req.dbless then
            return _M.handle_error(_M.unsupported(schema, "update"))
        end
        local updated, err, err_t = dao:update(pk_of(schema, row), patch,
                                               opts_of())
        return answer(req, schema, 200, updated, err, err_t)
    end

    h.PUT = function(req)
        local parent, err, err_t = select_key(fdao, req.params[fschema.name])
        if err_t or err then
            return _M.handle_error(err_t, err)
        end
        if not parent then
            return 404, NOT_FOUND
        end
        local body = body_for(req, schema)
        body[fname] = pk_of(fschema, parent)
        local row
        row, err, err_t = write_key(req, dao, "upsert",
                                    req.params[schema.name], body)
        return answer(req, schema, 200, row, err, err_t)
    end

    h.DELETE = function(req)
        local parent, row, body = both(req)
        if not parent then
            return row, body
        end
        if req.dbless then
            return _M.handle_error(_M.unsupported(schema, "delete"))
        end
        local ok, err, err_t = dao:delete(pk_of(schema, row), opts_of())
        if not ok and (err or err_t) then
            return _M.handle_error(err_t, err)
        end
        return 204
    end
    return h
end
_M.child_entity = child_entity

--- Add every endpoint of DAO `dao` to router.
function _M.generate(router, db, dao)
    local schema = dao.schema
    local pn = path_name(schema)
    router:add("/" .. pn, collection(db, schema), schema)
    router:add("/" .. pn .. "/:" .. schema.name, entity(db, schema), schema)
    for fname, field in json.each_field(schema.fields or {}) do
        local ref = field.type == "foreign" and field.reference
        local fdao = ref and db[ref]
        if type(fdao) == "table" and fdao.schema then
            local fschema = fdao.schema
            local fpn = path_name(fschema)
            router:add("/" .. pn .. "/:" .. schema.name .. "/" .. fname,
                       parent_entity(db, schema, fschema, fname), fschema)
            router:add("/" .. fpn .. "/:" .. fschema.name .. "/" ..
                       nested_name(schema),
                       collection(db, schema, fschema, fname), schema)
            router:add("/" .. fpn .. "/:" .. fschema.name .. "/" ..
                       nested_name(schema) .. "/:" .. schema.name,
                       child_entity(db, fschema, schema, fname), schema)
        end
    end
end

return _M
