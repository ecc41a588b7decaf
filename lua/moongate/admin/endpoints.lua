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
-- The routes differ by data, not code.  Each route gets a scope -- the
-- DAO and schema of S and, on a nested route, of its parent F and the
-- field f -- and a kind: a table of method -> { lookup, handler }
-- (COLLECTION, ENTITY, CHILD, PARENT, at the end of this file).  The
-- lookup finds what the URL names and answers 404 (or Kong's error) when
-- it is not there; the handler does the rest.  /S and /F/:F/S' are one
-- kind, and /S/:S and /F/:F/S'/:S share GET and PUT: the few functions
-- that tell top level from nested (parent_of, fill, find_entity,
-- can_page, page_of, next_link) look at whether the scope has a parent.
-- Where Kong's answers really differ -- PATCH and DELETE by URL key
-- against a child's, and the parent route /S/:S/f -- the handlers do too.
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
-- Rejected: a generator per kind of route, each with its own lookups,
-- paging and writes -- the same checks stood in them up to eight times.

local args = require "moongate.admin.args"
local json = require "moongate.admin.json"
local codec = require "moongate.codec"

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local floor = math.floor
local find = string.find
local gmatch = string.gmatch
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

-- the first value of a repeated query argument
local function first(v)
    if type(v) == "table" then
        return v[1]
    end
    return v
end

local function invalid_size(message)
    return { code = CODES.INVALID_SIZE, name = "invalid size",
             message = message }
end

-- ?size -> n | nil, err_t
local function page_size(q)
    local size = first(q.size)
    if size == nil then
        return 100
    end
    local n = tonumber(size)
    if not n then
        return nil, invalid_size("size must be a number")
    end
    if n < 1 or n > 1000 or n ~= floor(n) then
        return nil, invalid_size("size must be an integer between 1 and 1000")
    end
    return n
end

local function split(s, pattern)
    local list = {}
    for t in gmatch(s, pattern) do
        list[#list + 1] = t
    end
    return list
end

-- ?tags -> the tags and "and" | "or"; nil, err_t for both "," and "/"
local function tag_filter(tags)
    if find(tags, "/", 1, true) and not find(tags, ",", 1, true) then
        return split(tags, "[^/]+"), "or"
    elseif not find(tags, "/", 1, true) then
        return split(tags, "[^,]+"), "and"
    end
    return nil, { code = CODES.INVALID_OPTIONS, name = "invalid options",
                  message = "invalid option (tags: invalid filter syntax)",
                  fields = { tags = "invalid filter syntax" } }
end

--- A list request's paging: size (1..1000, default 100), offset, tags
-- ("a,b": all of them, "a/b": any of them) -> size, offset, DAO options;
-- nil, err_t for a size or tags Kong refuses.
local function page_options(req, schema)
    local q = req.query
    local size, err_t = page_size(q)
    if not size then
        return nil, err_t
    end
    local offset = first(q.offset)
    if offset == true then
        offset = nil
    end
    local o = opts_of()
    local tags = first(q.tags)
    if type(tags) == "string" and schema.fields and schema.fields.tags then
        local list, cond = tag_filter(tags)
        if not list then
            return nil, cond
        end
        o.tags, o.tags_cond = list, cond
    end
    return size, offset, o
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

-- what a URL names -------------------------------------------------------

-- A route serves one entity S (its DAO, its schema, its `:S` parameter),
-- at the top level or under a parent F through S's foreign field f: a
-- scope is that row of data, and the handlers below read it.
local function scope(db, schema, fschema, fname)
    return {
        dao = db[schema.name], schema = schema, name = schema.name,
        fdao = fschema and db[fschema.name], fschema = fschema,
        fname = fname,
    }
end

-- A DAO answer -> the row, or nil and the answer to send: Kong's error,
-- else 404.
local function found(row, err, err_t)
    if err_t or err then
        return nil, _M.handle_error(err_t, err)
    end
    if not row then
        return nil, 404, NOT_FOUND
    end
    return row
end

-- the S of /S/:S... -> row | nil, status, body
local function named(s, req)
    return found(select_key(s.dao, req.params[s.name]))
end

-- the F of /F/:F/S'... -> row | nil, status, body; true at the top level
local function parent_of(s, req)
    if not s.fdao then
        return true
    end
    return found(select_key(s.fdao, req.params[s.fschema.name]))
end

-- The S of /S/:S, or of /F/:F/S'/:S when it belongs to that F -> row,
-- parent (true at the top level) | nil, status, body.
local function find_entity(s, req)
    local parent, status, body = parent_of(s, req)
    if not parent then
        return nil, status, body
    end
    local row
    row, status, body = named(s, req)
    if not row then
        return nil, status, body
    end
    if s.fdao and not same_pk(s.fschema, row[s.fname], parent) then
        return nil, 404, NOT_FOUND
    end
    return row, parent
end

-- The foreign key f of the S of /S/:S/f -> fk | nil, status, body (404
-- when S points to no F).
local function link_of(s, req)
    local row, status, body = named(s, req)
    if not row then
        return nil, status, body
    end
    local fk = row[s.fname]
    if type(fk) ~= "table" then
        return nil, 404, NOT_FOUND
    end
    return fk
end

-- paging -----------------------------------------------------------------

-- Can the DAO page this collection?  (page_for_f is looked up per call, as
-- every DAO method is, so a DAO may be changed after generate.)
local function can_page(s)
    return not s.fdao or s.dao["page_for_" .. s.fname] ~= nil
end

-- one page of S, or of the S of parent -> rows, err, err_t, next_offset
local function page_of(s, parent, size, offset, opts)
    local dao = s.dao
    if not s.fdao then
        return dao:page(size, offset, opts)
    end
    return dao["page_for_" .. s.fname](dao, pk_of(s.fschema, parent), size,
                                       offset, opts)
end

-- the tags and size a top-level `next` carries on (a nested one has none)
local function list_args(q)
    local extra = ""
    local tags = first(q.tags)
    if type(tags) == "string" then
        extra = extra .. "&tags=" .. escape_uri(tags)
    end
    -- the size page_size read (a `size[2]=5` table without a first value
    -- is no size: the default page, and none in the link)
    local size = first(q.size)
    if type(size) == "string" or type(size) == "number" then
        extra = extra .. "&size=" .. escape_uri(tostring(size))
    end
    return extra
end

-- Kong's `next` link to the page at next_offset
local function next_link(s, req, next_offset)
    local offset = escape_uri(tostring(next_offset))
    if s.fdao then
        return format("/%s/%s/%s?offset=%s", path_name(s.fschema),
                      escape_uri(req.params[s.fschema.name]),
                      nested_name(s.schema), offset)
    end
    return format("/%s?offset=%s%s", path_name(s.schema), offset,
                  list_args(req.query))
end

-- the handlers -----------------------------------------------------------

-- fn(s, req, ...) with what the route's lookup found (see the tables at
-- the end) -> status, body

-- body pointing to parent through f (under a parent); returns body
local function fill(s, body, parent)
    if s.fdao then
        body[s.fname] = pk_of(s.fschema, parent)
    end
    return body
end

-- Kong's refusal of a write in database = off -> status, body
local function refuse(schema, op)
    return _M.handle_error(_M.unsupported(schema, op))
end

-- a DAO delete's answer: 204, or Kong's error
local function deleted(ok, err, err_t)
    if not ok and (err_t or err) then
        return _M.handle_error(err_t, err)
    end
    return 204
end

-- GET /S, /F/:F/S': a page
local function list(s, req, parent)
    local size, offset, opts = page_options(req, s.schema)
    if not size then
        return _M.handle_error(offset)
    end
    if not can_page(s) then
        return 500, UNEXPECTED
    end
    local rows, err, err_t, next_offset = page_of(s, parent, size, offset,
                                                  opts)
    if not rows then
        return _M.handle_error(err_t, err)
    end
    return 200, {
        data = present_list(req, s.schema, rows),
        offset = next_offset,
        next = next_offset and next_link(s, req, next_offset) or null,
    }
end

-- POST /S, /F/:F/S': insert, under the parent the URL names
local function create(s, req, parent)
    local row, err, err_t = insert(req, s.dao,
                                   fill(s, body_for(req, s.schema), parent))
    if not row then
        return _M.handle_error(err_t, err)
    end
    return 201, _M.present(req, s.schema, row)
end

-- GET /S/:S, /F/:F/S'/:S
local function show(s, req, row)
    return 200, _M.present(req, s.schema, row)
end

-- PUT /S/:S, /F/:F/S'/:S (op "upsert") and PATCH /S/:S ("update"), by the
-- URL's key: Kong's upsert creates what is not there
local function write_by_key(op)
    return function(s, req, parent)
        local row, err, err_t = write_key(req, s.dao, op, req.params[s.name],
            fill(s, body_for(req, s.schema), parent))
        return answer(req, s.schema, 200, row, err, err_t)
    end
end
local upsert_by_key = write_by_key("upsert")
local update_by_key = write_by_key("update")

-- DELETE /S/:S: refused in database = off before any lookup; 204 for
-- what is not there, as Kong
local function delete_by_key(s, req)
    local ok, err, err_t = write_key(req, s.dao, "delete", req.params[s.name])
    if type(err_t) == "table" and err_t.code == CODES.NOT_FOUND then
        return 204
    end
    return deleted(ok, err, err_t)
end

-- PATCH /F/:F/S'/:S: the child stays under F unless the patch names f
local function update_child(s, req, row, parent)
    local patch = body_for(req, s.schema)
    if patch[s.fname] == nil then
        patch[s.fname] = pk_of(s.fschema, parent)
    end
    if req.dbless then
        return refuse(s.schema, "update")
    end
    local updated, err, err_t = s.dao:update(pk_of(s.schema, row), patch,
                                             opts_of())
    return answer(req, s.schema, 200, updated, err, err_t)
end

-- DELETE /F/:F/S'/:S (a child not there was answered 404 by the lookup)
local function delete_child(s, req, row)
    if req.dbless then
        return refuse(s.schema, "delete")
    end
    return deleted(s.dao:delete(pk_of(s.schema, row), opts_of()))
end

-- GET /S/:S/f
local function show_parent(s, req, fk)
    local parent, status, body = found(s.fdao:select(pk_of(s.fschema, fk),
                                                     opts_of()))
    if not parent then
        return status, body
    end
    return 200, _M.present(req, s.fschema, parent)
end

-- PATCH /S/:S/f
local function update_parent(s, req, fk)
    if req.dbless then
        return refuse(s.fschema, "update")
    end
    local parent, err, err_t = s.fdao:update(pk_of(s.fschema, fk),
                                             body_for(req, s.fschema),
                                             opts_of())
    return answer(req, s.fschema, 200, parent, err, err_t)
end

-- F created for row, then row pointed to it -> F | nil, err, err_t
local function create_parent(s, req, row)
    local parent, err, err_t = s.fdao:insert(body_for(req, s.fschema),
                                             opts_of())
    if parent then
        local _, uerr, uerr_t = s.dao:update(pk_of(s.schema, row), {
            [s.fname] = pk_of(s.fschema, parent) }, opts_of())
        if uerr or uerr_t then
            return nil, uerr, uerr_t
        end
    end
    return parent, err, err_t
end

-- PUT /S/:S/f: upsert the F the S points to; create it when S points to
-- none
local function replace_parent(s, req, row)
    if req.dbless then
        return refuse(s.fschema, "upsert")
    end
    local fk = row[s.fname]
    local parent, err, err_t
    if type(fk) == "table" then
        parent, err, err_t = s.fdao:upsert(pk_of(s.fschema, fk),
                                           body_for(req, s.fschema),
                                           opts_of())
    else
        parent, err, err_t = create_parent(s, req, row)
    end
    return answer(req, s.fschema, 200, parent, err, err_t)
end

-- DELETE /S/:S/f: Kong does not unlink through this path
local function keep_parent()
    return 405, METHOD_NOT_ALLOWED
end

-- the routes -------------------------------------------------------------

-- Each kind of route: method -> { lookup, handler }.  The lookup --
-- fn(s, req) -> what it found | nil, status, body -- runs first and
-- answers 404 (or Kong's error) for what the URL names and is not there;
-- the handler gets what it found.  `none` looks nothing up.
local function none()
    return true
end

local COLLECTION = {
    GET = { parent_of, list },
    POST = { parent_of, create },
}
local ENTITY = {
    GET = { find_entity, show },
    PUT = { none, upsert_by_key },
    PATCH = { none, update_by_key },
    DELETE = { none, delete_by_key },
}
local CHILD = {
    GET = { find_entity, show },
    PUT = { parent_of, upsert_by_key },
    PATCH = { find_entity, update_child },
    DELETE = { find_entity, delete_child },
}
local PARENT = {
    GET = { link_of, show_parent },
    PUT = { named, replace_parent },
    PATCH = { link_of, update_parent },
    DELETE = { link_of, keep_parent },
}

-- the handlers of a route of kind over scope s: method -> fn(req)
local function handlers(kind, s)
    local h = {}
    for method, step in pairs(kind) do
        local lookup, handler = step[1], step[2]
        h[method] = function(req)
            local a, b, c = lookup(s, req)
            if not a then
                return b, c
            end
            return handler(s, req, a, b)
        end
    end
    return h
end

--- /S, or /F/:F/S' when given F and f: the handlers { GET, POST }.
function _M.collection(db, schema, fschema, fname)
    return handlers(COLLECTION, scope(db, schema, fschema, fname))
end

--- /S/:S: the handlers { GET, PUT, PATCH, DELETE }.
function _M.entity(db, schema)
    return handlers(ENTITY, scope(db, schema))
end

--- /S/:S/f, the F that S points to: the handlers { GET, PUT, PATCH,
-- DELETE }.
function _M.parent_entity(db, schema, fschema, fname)
    return handlers(PARENT, scope(db, schema, fschema, fname))
end

--- /F/:F/S'/:S, a child S of F (through S.f): the handlers { GET, PUT,
-- PATCH, DELETE }.
function _M.child_entity(db, fschema, schema, fname)
    return handlers(CHILD, scope(db, schema, fschema, fname))
end

--- Add every endpoint of DAO `dao` to router.
function _M.generate(router, db, dao)
    local schema = dao.schema
    local own = "/" .. path_name(schema)
    router:add(own, _M.collection(db, schema), schema)
    router:add(own .. "/:" .. schema.name, _M.entity(db, schema), schema)
    for fname, field in json.each_field(schema.fields or {}) do
        local ref = field.type == "foreign" and field.reference
        local fdao = ref and db[ref]
        if type(fdao) == "table" and fdao.schema then
            local fschema = fdao.schema
            local nested = "/" .. path_name(fschema) .. "/:" ..
                           fschema.name .. "/" .. nested_name(schema)
            router:add(own .. "/:" .. schema.name .. "/" .. fname,
                       _M.parent_entity(db, schema, fschema, fname), fschema)
            router:add(nested, _M.collection(db, schema, fschema, fname),
                       schema)
            router:add(nested .. "/:" .. schema.name,
                       _M.child_entity(db, fschema, schema, fname), schema)
        end
    end
end

return _M
