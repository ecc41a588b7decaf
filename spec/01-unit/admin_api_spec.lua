-- Unit: the Admin API handler (moongate.admin) driven through the fake
-- PDK the way the admin process drives it: one request, handle() in the
-- access phase, the answer read back from the fake core (r.exit).
--
-- The DAOs are moongate.db's over store.fake() when that module loads;
-- until then (it is written alongside), a small Kong-shaped DAO double
-- defined below stands in, so the handler's own behaviour -- routing,
-- bodies, pagination links, nesting, errors, DB-less refusals -- is what
-- these specs pin down.

local H = require "lua_runtime"
local cjson = require "cjson.safe"
local Schema = require "moongate.schema"
local typedefs = require "moongate.schema.typedefs"

local null = cjson.null

-- a Kong-shaped DAO double ---------------------------------------------------

local function uuid()
    local t = {}
    for i = 1, 32 do
        t[i] = string.format("%x", math.random(0, 15))
    end
    local s = table.concat(t)
    return s:sub(1, 8) .. "-" .. s:sub(9, 12) .. "-4" .. s:sub(14, 16) ..
           "-8" .. s:sub(18, 20) .. "-" .. s:sub(21, 32)
end

local function copy(v)
    if type(v) ~= "table" then
        return v
    end
    local c = {}
    for k, x in pairs(v) do
        c[k] = copy(x)
    end
    return c
end

local DEFS = {
    services = { endpoint_key = "name", fields = {
        { id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
        { name = { type = "string", unique = true } },
        { protocol = { type = "string", default = "http",
                       one_of = { "http", "https" } } },
        { host = { type = "string", required = true } },
        { port = { type = "integer", default = 80,
                   between = { 0, 65535 } } },
        { path = { type = "string" } },
        { enabled = { type = "boolean", default = true } },
        { tags = { type = "set", elements = { type = "string" } } },
    } },
    routes = { endpoint_key = "name", fields = {
        { id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
        { name = { type = "string", unique = true } },
        { service = { type = "foreign", reference = "services" } },
        { paths = { type = "array", elements = { type = "string" } } },
        { hosts = { type = "array", elements = { type = "string" } } },
        { strip_path = { type = "boolean", default = true } },
        { regex_priority = { type = "integer", default = 0 } },
        { tags = { type = "set", elements = { type = "string" } } },
    } },
    consumers = { endpoint_key = "username", fields = {
        { id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
        { username = { type = "string", unique = true } },
        { custom_id = { type = "string", unique = true } },
        { tags = { type = "set", elements = { type = "string" } } },
    } },
    upstreams = { endpoint_key = "name", fields = {
        { id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
        { name = { type = "string", unique = true, required = true } },
        { slots = { type = "integer", default = 10000 } },
        { tags = { type = "set", elements = { type = "string" } } },
    } },
    targets = { fields = {
        { id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
        { upstream = { type = "foreign", reference = "upstreams",
                       required = true } },
        { target = { type = "string", required = true } },
        { weight = { type = "integer", default = 100 } },
        { tags = { type = "set", elements = { type = "string" } } },
    } },
    plugins = { fields = {
        { id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
        { name = { type = "string", required = true } },
        { service = { type = "foreign", reference = "services" } },
        { route = { type = "foreign", reference = "routes" } },
        { consumer = { type = "foreign", reference = "consumers" } },
        { enabled = { type = "boolean", default = true } },
        { tags = { type = "set", elements = { type = "string" } } },
    } },
    keyauth_credentials = { fields = {
        { id = typedefs.uuid }, { created_at = typedefs.auto_timestamp_s },
        { consumer = { type = "foreign", reference = "consumers",
                       required = true } },
        { key = { type = "string", unique = true } },
        { tags = { type = "set", elements = { type = "string" } } },
    } },
}

local function err_t(code, name, message, fields)
    return message, { code = code, name = name, message = message,
                      fields = fields, strategy = "fake" }
end

local function new_double(dbless)
    local db = { daos = {} }
    local data = {}     -- name -> array of rows (insertion order)
    for name, def in pairs(DEFS) do
        local d = copy(def)
        d.name = name
        local schema = assert(Schema.new(d))
        schema.name = name
        schema.endpoint_key = def.endpoint_key
        schema.primary_key = { "id" }
        local dao = { schema = schema }
        data[name] = {}
        local rows = data[name]

        local function find(field, v)
            for i, row in ipairs(rows) do
                if row[field] == v then
                    return row, i
                end
            end
        end

        local function check(row, self_id)
            for fname, f in schema:each_field() do
                local v = row[fname]
                if f.unique and v ~= nil and v ~= null then
                    local other = find(fname, v)
                    if other and other.id ~= self_id then
                        return err_t(5, "unique constraint violation",
                            "UNIQUE violation detected on '{" .. fname ..
                            "=\"" .. tostring(v) .. "\"}'",
                            { [fname] = v })
                    end
                end
                if f.type == "foreign" and type(v) == "table" then
                    local fdao = db[f.reference]
                    if not fdao:select({ id = v.id }) then
                        return err_t(4, "foreign key violation",
                            "the foreign key '{id=\"" .. tostring(v.id) ..
                            "\"}' does not reference an existing '" ..
                            f.reference .. "' entity.",
                            { [fname] = { id = v.id } })
                    end
                end
            end
        end

        local function validate(row)
            local ok, errs = schema:validate(row)
            if not ok then
                local errors = require "moongate.schema.errors"
                return err_t(2, "schema violation",
                             errors.schema_violation(errs), errs)
            end
        end

        function dao:select(pk)
            local row = find("id", pk.id)
            return copy(row)
        end
        if def.endpoint_key then
            dao["select_by_" .. def.endpoint_key] = function(_, v)
                return copy((find(def.endpoint_key, v)))
            end
        end
        function dao:insert(t)
            local row = schema:process_auto_fields(t, "insert")
            local e1, e2 = validate(row)
            if e1 then return nil, e1, e2 end
            e1, e2 = check(row)
            if e1 then return nil, e1, e2 end
            rows[#rows + 1] = row
            return copy(row)
        end
        function dao:update(pk, patch)
            local old = find("id", pk.id)
            if not old then
                return nil
            end
            local row = copy(old)
            for k, v in pairs(patch) do
                row[k] = v
            end
            local e1, e2 = validate(row)
            if e1 then return nil, e1, e2 end
            e1, e2 = check(row, old.id)
            if e1 then return nil, e1, e2 end
            for k in pairs(old) do old[k] = nil end
            for k, v in pairs(row) do old[k] = v end
            return copy(old)
        end
        function dao:upsert(pk, t)
            local row = schema:process_auto_fields(t, "upsert")
            row.id = pk.id
            local e1, e2 = validate(row)
            if e1 then return nil, e1, e2 end
            e1, e2 = check(row, pk.id)
            if e1 then return nil, e1, e2 end
            local old, i = find("id", pk.id)
            if old then
                row.created_at = old.created_at
                rows[i] = row
            else
                rows[#rows + 1] = row
            end
            return copy(row)
        end
        function dao:delete(pk)
            local _, i = find("id", pk.id)
            if i then
                table.remove(rows, i)
            end
            return true
        end
        local function page_of(list, size, offset, opts)
            size = size or 100
            local from = tonumber(offset or "1")
            if offset and not from then
                return nil, err_t(7, "invalid offset",
                                  "'" .. offset .. "' is not a valid offset")
            end
            local sel = {}
            for _, row in ipairs(list) do
                local keep = true
                if opts and opts.tags then
                    local have = {}
                    for _, t in ipairs(row.tags or {}) do have[t] = true end
                    local n = 0
                    for _, t in ipairs(opts.tags) do
                        if have[t] then n = n + 1 end
                    end
                    keep = (opts.tags_cond == "or" and n > 0) or
                           (opts.tags_cond ~= "or" and n == #opts.tags)
                end
                if keep then sel[#sel + 1] = row end
            end
            local out = {}
            for i = from, math.min(#sel, from + size - 1) do
                out[#out + 1] = copy(sel[i])
            end
            local nexto = from + size <= #sel and tostring(from + size) or nil
            return out, nil, nil, nexto
        end
        function dao:page(size, offset, opts)
            return page_of(rows, size, offset, opts)
        end
        for fname, f in schema:each_field() do
            if f.type == "foreign" then
                dao["page_for_" .. fname] = function(_, fk, size, offset, o)
                    local list = {}
                    for _, row in ipairs(rows) do
                        if type(row[fname]) == "table" and
                           row[fname].id == fk.id then
                            list[#list + 1] = row
                        end
                    end
                    return page_of(list, size, offset, o)
                end
            end
        end
        db[name] = dao
        db.daos[name] = dao
    end
    if dbless then
        for _, dao in pairs(db.daos) do
            for _, op in ipairs { "insert", "update", "upsert", "delete" } do
                dao[op] = function() error("write in dbless") end
            end
        end
    end
    return db, data
end

-- driving handle() -------------------------------------------------------------

local admin = require "moongate.admin"

local function setup(dbless)
    H.setup()
    local db, data = new_double(dbless)
    local ok, err = admin.init({
        configuration = { prefix = "/tmp/x", database = dbless and "off"
                          or "lmdb", pg_password = "hunter2",
                          admin_listen = "127.0.0.1:8001" },
        enabled_plugins = { "headers" },
        node_id = "00000000-0000-4000-8000-000000000001",
        hostname = "node-1", version = "0.1.0", pid = 42,
    }, { db = db })
    assert(ok, err)
    return db, data
end

local function call(method, path, o)
    o = o or {}
    local query
    path, query = path:match("^([^?]*)%??(.*)$")
    local headers = o.headers or {}
    local body = o.body
    if type(body) == "table" then
        body = assert(cjson.encode(body))
        headers["Content-Type"] = headers["Content-Type"] or
                                  "application/json"
    elseif o.form then
        body = o.form
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    end
    local r = H.request { method = method, path = path, query = query,
                          headers = headers, body = body }
    local ok, err = pcall(H.in_phase, "access", r, function()
        admin.handle()
    end)
    assert(not ok, "handle() returned without answering")
    assert(err == H.context.EXIT, tostring(err))
    local res = { status = r.exit.status, raw = r.exit.body, r = r }
    if res.raw and res.raw ~= "" then
        res.json = cjson.decode(res.raw)
    end
    return res
end

describe("admin API", function()
    before_each(function()
        setup(false)
    end)

    describe("node endpoints", function()
        it("GET / tells about the node, secrets masked", function()
            local res = call("GET", "/")
            assert.equals(200, res.status)
            local j = res.json
            assert.equals("Welcome to moongate", j.tagline)
            assert.equals("0.1.0", j.version)
            assert.equals("node-1", j.hostname)
            assert.equals("00000000-0000-4000-8000-000000000001", j.node_id)
            assert.equals("******", j.configuration.pg_password)
            assert.equals("127.0.0.1:8001", j.configuration.admin_listen)
            assert.same({ version = "0.1.0", priority = 700 },
                        j.plugins.available_on_server.headers)
            assert.same({}, j.plugins.enabled_in_cluster)
            assert.matches('"enabled_in_cluster":%[%]', res.raw)
            assert.is_nil(j.timers)
        end)

        it("GET /status and /status/ready", function()
            local res = call("GET", "/status")
            assert.equals(200, res.status)
            assert.same({ database = { reachable = true } }, res.json)
            res = call("GET", "/status/ready")
            assert.equals(200, res.status)
            assert.same({ message = "ready" }, res.json)
        end)

        it("GET /endpoints lists Kong's patterns", function()
            local res = call("GET", "/endpoints")
            assert.equals(200, res.status)
            local set = {}
            for _, p in ipairs(res.json.data) do set[p] = true end
            for _, p in ipairs { "/", "/status", "/services",
                "/services/{services}", "/services/{services}/routes",
                "/services/{services}/routes/{routes}",
                "/routes/{routes}/service", "/consumers/{consumers}/key-auth",
                "/key-auths/{keyauth_credentials}", "/plugins/enabled",
                "/upstreams/{upstreams}/targets/{targets}",
                "/upstreams/{upstreams}/health", "/config",
                "/schemas/{name}" } do
                assert.is_true(set[p], p)
            end
            assert.is_nil(set["/targets"])
        end)

        it("GET /plugins/enabled", function()
            local res = call("GET", "/plugins/enabled")
            assert.same({ enabled_plugins = { "headers" } }, res.json)
        end)

        it("serves schemas and validates against them", function()
            local res = call("GET", "/schemas/services")
            assert.equals(200, res.status)
            assert.same({ type = "string", required = true },
                        res.json.fields[5].host)
            res = call("GET", "/schemas/nope")
            assert.equals(404, res.status)
            assert.same({ message = "No entity named 'nope'" }, res.json)
            res = call("POST", "/schemas/services/validate",
                       { body = { host = "example.com" } })
            assert.equals(200, res.status)
            assert.same({ message = "schema validation successful" },
                        res.json)
            res = call("POST", "/schemas/services/validate",
                       { body = { port = 70000 } })
            assert.equals(400, res.status)
            assert.equals(2, res.json.code)
            assert.equals("schema violation", res.json.name)
            assert.equals("required field missing", res.json.fields.host)
            assert.equals("2 schema violations (host: required field " ..
                          "missing; port: value should be between 0 and " ..
                          "65535)", res.json.message)
            res = call("GET", "/schemas/plugins/headers")
            assert.equals(200, res.status)
            assert.is_table(res.json.fields)
            res = call("GET", "/schemas/plugins/nope")
            assert.same({ message = "No plugin named 'nope'" }, res.json)
            res = call("POST", "/schemas/plugins/validate",
                       { body = { name = "nope" } })
            assert.equals(400, res.status)
            assert.equals("plugin 'nope' not enabled; add it to the " ..
                          "'plugins' configuration property",
                          res.json.fields.name)
        end)
    end)

    describe("CRUD", function()
        it("creates, reads, updates, replaces and deletes", function()
            local res = call("POST", "/services",
                             { body = { name = "s1", host = "a.test" } })
            assert.equals(201, res.status)
            local s = res.json
            assert.equals("s1", s.name)
            assert.equals(80, s.port)
            assert.matches("^%x+%-", s.id)
            assert.equals(201, call("POST", "/services", { body =
                { name = "s2", host = "b.test" } }).status)

            -- by id and by name, twice (no state leaking)
            for _ = 1, 2 do
                res = call("GET", "/services/" .. s.id)
                assert.equals(200, res.status)
                assert.equals("s1", res.json.name)
                res = call("GET", "/services/s1")
                assert.equals(s.id, res.json.id)
            end

            res = call("PATCH", "/services/s1", { body = { port = 8080 } })
            assert.equals(200, res.status)
            assert.equals(8080, res.json.port)
            assert.equals("a.test", res.json.host)

            res = call("PUT", "/services/s1", { body = { host = "c.test" } })
            assert.equals(200, res.status)
            assert.equals(s.id, res.json.id)
            assert.equals(80, res.json.port)
            assert.equals("s1", res.json.name)

            -- PUT creates by name
            res = call("PUT", "/services/s3", { body = { host = "d.test" } })
            assert.equals(200, res.status)
            assert.equals("s3", res.json.name)

            res = call("DELETE", "/services/s1")
            assert.equals(204, res.status)
            assert.is_nil(res.raw)
            assert.equals(404, call("GET", "/services/s1").status)
            -- DELETE of what is not there: 204, as Kong
            assert.equals(204, call("DELETE", "/services/s1").status)
            assert.equals(204, call("DELETE", "/services/" ..
                "6f1f2f3f-0000-4000-8000-000000000000").status)
        end)

        it("answers Kong's errors", function()
            local res = call("GET", "/services/nope")
            assert.equals(404, res.status)
            assert.same({ message = "Not found" }, res.json)

            res = call("POST", "/services", { body = { name = "x" } })
            assert.equals(400, res.status)
            assert.equals(2, res.json.code)
            assert.equals("schema violation", res.json.name)
            assert.equals("required field missing", res.json.fields.host)
            assert.is_nil(res.json.strategy)

            call("POST", "/services", { body = { name = "x", host = "h" } })
            res = call("POST", "/services", { body = { name = "x",
                                                       host = "h" } })
            assert.equals(409, res.status)
            assert.equals(5, res.json.code)
            assert.equals("unique constraint violation", res.json.name)

            res = call("POST", "/services", { headers = {
                ["Content-Type"] = "application/json" }, body = "{nope" })
            assert.equals(400, res.status)
            assert.same({ message = "Cannot parse JSON body" }, res.json)

            res = call("POST", "/services", { headers = {
                ["Content-Type"] = "text/plain" }, body = "x" })
            assert.equals(415, res.status)

            res = call("GET", "/nope")
            assert.equals(404, res.status)
            assert.same({ message = "Not found" }, res.json)

            res = call("DELETE", "/services")
            assert.equals(405, res.status)
            assert.same({ message = "Method not allowed" }, res.json)

            res = call("PATCH", "/services/nope", { body = { port = 1 } })
            assert.equals(404, res.status)
        end)

        it("answers 500 with Kong's body when an endpoint raises",
           function()
            local db = admin.state().db
            db.services.page = function() error("boom") end
            local res = call("GET", "/services")
            assert.equals(500, res.status)
            assert.same({ message = "An unexpected error occurred" },
                        res.json)
        end)

        it("takes form bodies the Kong way", function()
            local res = call("POST", "/services", {
                form = "name=f1&host=f.test&port=8443&enabled=false" ..
                       "&tags[]=a&tags[]=b" })
            assert.equals(201, res.status)
            assert.equals(8443, res.json.port)
            assert.is_false(res.json.enabled)
            assert.same({ "a", "b" }, res.json.tags)

            res = call("POST", "/services/f1/routes", {
                form = "paths=/x&paths=/y&hosts=h.test&strip_path=false" })
            assert.equals(201, res.status)
            assert.same({ "/x", "/y" }, res.json.paths)
            assert.same({ "h.test" }, res.json.hosts)
            assert.is_false(res.json.strip_path)

            res = call("POST", "/routes", {
                form = "name=r9&paths[1]=/p&service.id=" ..
                       call("GET", "/services/f1").json.id })
            assert.equals(201, res.status)
            assert.same({ "/p" }, res.json.paths)
        end)

        it("writes empty arrays as []", function()
            local res = call("POST", "/routes", { body = { paths = { "/a" },
                hosts = cjson.decode("[]") } })
            assert.equals(201, res.status)
            res = call("GET", "/services")
            assert.matches('"data":%[%]', res.raw)
            assert.matches('"next":null', res.raw)
        end)
    end)

    describe("lists", function()
        before_each(function()
            for i = 1, 5 do
                local tags = { "all", i % 2 == 0 and "even" or "odd" }
                call("POST", "/services", { body = { name = "s" .. i,
                    host = "h" .. i .. ".test", tags = tags } })
            end
        end)

        it("page with size, offset and next", function()
            local res = call("GET", "/services?size=2")
            assert.equals(200, res.status)
            assert.equals(2, #res.json.data)
            assert.equals("s1", res.json.data[1].name)
            assert.equals("3", res.json.offset)
            assert.equals("/services?offset=3&size=2", res.json.next)
            res = call("GET", res.json.next)
            assert.equals("s3", res.json.data[1].name)
            res = call("GET", "/services?offset=5&size=2")
            assert.equals(1, #res.json.data)
            assert.equals(null, res.json.next)
            assert.is_nil(res.json.offset)
        end)

        it("checks size", function()
            local res = call("GET", "/services?size=abc")
            assert.equals(400, res.status)
            assert.same({ code = 9, name = "invalid size",
                          message = "size must be a number" }, res.json)
            res = call("GET", "/services?size=1001")
            assert.equals(400, res.status)
            assert.equals("size must be an integer between 1 and 1000",
                          res.json.message)
            assert.equals(400, call("GET", "/services?size=0").status)
        end)

        it("filters by tags (a,b all; a/b any)", function()
            local res = call("GET", "/services?tags=all,even")
            assert.equals(2, #res.json.data)
            res = call("GET", "/services?tags=even/odd")
            assert.equals(5, #res.json.data)
            res = call("GET", "/services?tags=odd&size=1")
            assert.equals("/services?offset=2&tags=odd&size=1",
                          res.json.next)
        end)
    end)

    describe("nested endpoints", function()
        local svc, route

        before_each(function()
            svc = call("POST", "/services", { body = { name = "svc",
                host = "up.test" } }).json
            route = call("POST", "/services/svc/routes", { body = {
                name = "r1", paths = { "/r1" } } }).json
        end)

        it("/services/{s}/routes and /services/{s}/routes/{r}", function()
            assert.same({ id = svc.id }, route.service)
            call("POST", "/routes", { body = { name = "other",
                                               paths = { "/o" } } })
            local res = call("GET", "/services/svc/routes")
            assert.equals(200, res.status)
            assert.equals(1, #res.json.data)
            assert.equals("r1", res.json.data[1].name)
            res = call("GET", "/services/" .. svc.id .. "/routes/r1")
            assert.equals(200, res.status)
            -- a route of no (or another) service is not found here
            assert.equals(404, call("GET",
                                    "/services/svc/routes/other").status)
            res = call("PATCH", "/services/svc/routes/r1", { body = {
                paths = { "/new" } } })
            assert.same({ "/new" }, res.json.paths)
            assert.equals(404, call("GET", "/services/nope/routes").status)
            assert.equals(404, call("POST", "/services/nope/routes",
                                    { body = {} }).status)
            assert.equals(204, call("DELETE",
                                    "/services/svc/routes/r1").status)
            assert.equals(404, call("GET", "/routes/r1").status)
        end)

        it("/routes/{r}/service", function()
            local res = call("GET", "/routes/r1/service")
            assert.equals(200, res.status)
            assert.equals("svc", res.json.name)
            res = call("PATCH", "/routes/r1/service", { body = {
                port = 9000 } })
            assert.equals(9000, res.json.port)
            assert.equals(405, call("DELETE", "/routes/r1/service").status)
            call("POST", "/routes", { body = { name = "lone",
                                               paths = { "/l" } } })
            assert.equals(404, call("GET", "/routes/lone/service").status)
        end)

        it("plugins on services, routes and consumers", function()
            local res = call("POST", "/services/svc/plugins",
                             { body = { name = "headers" } })
            assert.equals(201, res.status)
            assert.same({ id = svc.id }, res.json.service)
            res = call("POST", "/routes/r1/plugins",
                       { body = { name = "headers" } })
            assert.equals(201, res.status)
            assert.equals(1, #call("GET", "/services/svc/plugins").json.data)
            assert.equals(2, #call("GET", "/plugins").json.data)
            local j = call("GET", "/").json
            assert.same({ "headers" }, j.plugins.enabled_in_cluster)
        end)

        it("credentials under consumers (key-auth)", function()
            local c = call("POST", "/consumers", { body = {
                username = "alice", custom_id = "a1" } }).json
            local res = call("POST", "/consumers/alice/key-auth",
                             { body = { key = "secret" } })
            assert.equals(201, res.status)
            assert.same({ id = c.id }, res.json.consumer)
            local k = res.json
            res = call("GET", "/consumers/alice/key-auth")
            assert.equals(1, #res.json.data)
            res = call("GET", "/consumers/alice/key-auth/" .. k.id)
            assert.equals("secret", res.json.key)
            res = call("GET", "/key-auths/" .. k.id .. "/consumer")
            assert.equals("alice", res.json.username)
            res = call("GET", "/key-auths")
            assert.equals(1, #res.json.data)
            res = call("GET", "/consumers?custom_id=a1")
            assert.equals(1, #res.json.data)
            assert.equals("alice", res.json.data[1].username)
            res = call("GET", "/consumers?custom_id=none")
            assert.matches('"data":%[%]', res.raw)
            assert.equals(204, call("DELETE", "/consumers/alice/key-auth/" ..
                                    k.id).status)
        end)

        it("targets under upstreams, by id or host:port", function()
            local up = call("POST", "/upstreams", { body = {
                name = "u1" } }).json
            local res = call("POST", "/upstreams/u1/targets",
                             { body = { target = "10.0.0.1:80" } })
            assert.equals(201, res.status)
            assert.same({ id = up.id }, res.json.upstream)
            local t = res.json
            res = call("GET", "/upstreams/u1/targets/10.0.0.1:80")
            assert.equals(200, res.status)
            assert.equals(t.id, res.json.id)
            res = call("GET", "/upstreams/u1/targets")
            assert.equals(1, #res.json.data)
            assert.equals(404, call("GET", "/targets").status)
            assert.equals(404, call("GET", "/targets/" .. t.id).status)
            local fake = require "moongate.ffi_fake"
            res = call("GET", "/upstreams/u1/health")
            assert.equals(200, res.status)
            assert.equals("HEALTHCHECKS_OFF", res.json.data[1].health)
            fake.health[res.json.data[1].upstream.id .. " 10.0.0.1:80"] = false
            res = call("GET", "/upstreams/u1/health")
            assert.equals("UNHEALTHY", res.json.data[1].health)
            fake.health = {}
            assert.equals(404, call("GET", "/upstreams/nope/health").status)
            assert.equals(204, call("DELETE",
                "/upstreams/u1/targets/10.0.0.1:80").status)
            assert.equals(0, #call("GET",
                                   "/upstreams/u1/targets").json.data)
        end)
    end)

    describe("nested endpoints, every method", function()
        local svc, other, route

        before_each(function()
            svc = call("POST", "/services", { body = { name = "svc",
                host = "up.test" } }).json
            other = call("POST", "/services", { body = { name = "other",
                host = "o.test" } }).json
            route = call("POST", "/services/svc/routes", { body = {
                name = "r1", paths = { "/r1" } } }).json
        end)

        it("PUT /services/{s}/routes/{r} creates and replaces there",
           function()
            local res = call("PUT", "/services/svc/routes/r2",
                             { body = { paths = { "/r2" } } })
            assert.equals(200, res.status)
            assert.equals("r2", res.json.name)
            assert.same({ id = svc.id }, res.json.service)
            res = call("PUT", "/services/svc/routes/" .. route.id,
                       { body = { name = "r1", paths = { "/new" } } })
            assert.equals(200, res.status)
            assert.equals(route.id, res.json.id)
            assert.same({ "/new" }, res.json.paths)
            assert.same({ id = svc.id }, res.json.service)
            -- the service in the URL wins over the body's
            res = call("PUT", "/services/svc/routes/r3", { body = {
                paths = { "/r3" }, service = { id = other.id } } })
            assert.same({ id = svc.id }, res.json.service)
            -- a route of another service is taken over (no check)
            call("POST", "/services/other/routes", { body = { name = "o1",
                paths = { "/o1" } } })
            res = call("PUT", "/services/svc/routes/o1",
                       { body = { paths = { "/o2" } } })
            assert.equals(200, res.status)
            assert.same({ id = svc.id }, res.json.service)
            res = call("PUT", "/services/nope/routes/r4",
                       { body = { paths = { "/x" } } })
            assert.equals(404, res.status)
            assert.same({ message = "Not found" }, res.json)
            assert.equals(404, call("GET", "/routes/r4").status)
            res = call("PUT", "/services/svc/routes/r5",
                       { body = { regex_priority = "x" } })
            assert.equals(400, res.status)
            assert.equals(2, res.json.code)
        end)

        it("GET, PATCH and DELETE of a child check its parent", function()
            call("POST", "/services/other/routes", { body = { name = "o1",
                paths = { "/o1" } } })
            for _, m in ipairs { "GET", "PATCH", "DELETE" } do
                local o = m == "PATCH" and { body = { paths = { "/x" } } }
                          or nil
                local res = call(m, "/services/svc/routes/o1", o)
                assert.equals(404, res.status, m)
                assert.same({ message = "Not found" }, res.json)
                assert.equals(404, call(m, "/services/nope/routes/r1",
                                        o).status, m)
                assert.equals(404, call(m, "/services/svc/routes/nope",
                                        o).status, m)
            end
            assert.same({ "/o1" }, call("GET", "/routes/o1").json.paths)
            -- PATCH keeps the child under the parent unless it names one
            local res = call("PATCH", "/services/svc/routes/r1",
                             { body = { strip_path = false } })
            assert.equals(200, res.status)
            assert.is_false(res.json.strip_path)
            assert.same({ id = svc.id }, res.json.service)
            res = call("PATCH", "/services/svc/routes/r1",
                       { body = { service = { id = other.id } } })
            assert.equals(200, res.status)
            assert.same({ id = other.id }, res.json.service)
            res = call("PATCH", "/services/other/routes/r1",
                       { body = { regex_priority = "x" } })
            assert.equals(400, res.status)
            assert.equals(2, res.json.code)
            res = call("DELETE", "/services/other/routes/" .. route.id)
            assert.equals(204, res.status)
            assert.is_nil(res.raw)
            assert.equals(404, call("GET", "/routes/r1").status)
        end)

        it("POST under a parent: the parent from the URL", function()
            local res = call("POST", "/services/svc/routes", { body = {
                name = "rx", paths = { "/x" },
                service = { id = other.id } } })
            assert.equals(201, res.status)
            assert.same({ id = svc.id }, res.json.service)
            res = call("POST", "/services/" .. svc.id .. "/routes",
                       { body = { regex_priority = "x" } })
            assert.equals(400, res.status)
            assert.equals(2, res.json.code)
            res = call("POST", "/services/nope/routes",
                       { body = { paths = { "/n" } } })
            assert.same({ message = "Not found" }, res.json)
        end)

        it("nested lists: parent first, then size; next drops size/tags",
           function()
            for i = 2, 3 do
                call("POST", "/services/svc/routes", { body = {
                    name = "r" .. i, paths = { "/r" .. i },
                    tags = { "t" } } })
            end
            -- (the double's tag filter needs every row tagged)
            call("PATCH", "/routes/r1", { body = { tags = { "u" } } })
            local res = call("GET", "/services/svc/routes?size=1")
            assert.equals(200, res.status)
            assert.equals(1, #res.json.data)
            assert.equals("2", res.json.offset)
            assert.equals("/services/svc/routes?offset=2", res.json.next)
            res = call("GET", "/services/" .. svc.id ..
                              "/routes?size=1&tags=t")
            assert.equals("r2", res.json.data[1].name)
            assert.equals("/services/" .. svc.id .. "/routes?offset=2",
                          res.json.next)
            res = call("GET", "/services/svc/routes?offset=2")
            assert.equals(2, #res.json.data)
            assert.equals(null, res.json.next)
            res = call("GET", "/services/svc/routes?size=abc")
            assert.equals(400, res.status)
            assert.same({ code = 9, name = "invalid size",
                          message = "size must be a number" }, res.json)
            res = call("GET", "/services/svc/routes?tags=a/b,c")
            assert.equals(400, res.status)
            assert.equals(11, res.json.code)
            assert.equals(404, call("GET",
                                    "/services/nope/routes?size=abc").status)
            res = call("GET", "/services/svc/routes?offset=zz")
            assert.equals(400, res.status)
            assert.equals(7, res.json.code)
            res = call("GET", "/services?offset=zz")
            assert.equals(400, res.status)
            assert.equals(7, res.json.code)
            -- a DAO that cannot page by the foreign key: 500, after size
            admin.state().db.routes.page_for_service = nil
            res = call("GET", "/services/svc/routes")
            assert.equals(500, res.status)
            assert.same({ message = "An unexpected error occurred" },
                        res.json)
            assert.equals(400, call("GET",
                                    "/services/svc/routes?size=0").status)
            assert.equals(404, call("GET", "/services/nope/routes").status)
        end)

        it("/routes/{r}/service: PUT replaces, or creates and links",
           function()
            local res = call("PUT", "/routes/r1/service", { body = {
                name = "svc", host = "new.test" } })
            assert.equals(200, res.status)
            assert.equals(svc.id, res.json.id)
            assert.equals("new.test", res.json.host)
            call("POST", "/routes", { body = { name = "lone",
                                               paths = { "/l" } } })
            for _, m in ipairs { "GET", "PATCH", "DELETE" } do
                res = call(m, "/routes/lone/service",
                           { body = { port = 1 } })
                assert.equals(404, res.status, m)
                assert.same({ message = "Not found" }, res.json)
            end
            res = call("PUT", "/routes/lone/service", { body = {
                name = "made", host = "m.test" } })
            assert.equals(200, res.status)
            assert.equals("made", res.json.name)
            assert.equals("made",
                          call("GET", "/routes/lone/service").json.name)
            assert.same({ id = res.json.id },
                        call("GET", "/routes/lone").json.service)
            for _, m in ipairs { "GET", "PUT", "PATCH", "DELETE" } do
                assert.equals(404, call(m, "/routes/nope/service",
                                        { body = { port = 1 } }).status, m)
            end
            res = call("PATCH", "/routes/r1/service",
                       { body = { port = "x" } })
            assert.equals(400, res.status)
            assert.equals(2, res.json.code)
            res = call("PUT", "/routes/lone/service",
                       { body = { port = "x" } })
            assert.equals(400, res.status)
            -- the service a route points to is gone
            assert.equals(204, call("DELETE", "/services/svc").status)
            assert.equals(404, call("GET", "/routes/r1/service").status)
            assert.equals(404, call("PATCH", "/routes/r1/service",
                                    { body = { port = 1 } }).status)
            assert.equals(405, call("DELETE", "/routes/r1/service").status)
        end)
    end)

    describe("OPTIONS and HEAD", function()
        it("OPTIONS lists the methods", function()
            local res = call("OPTIONS", "/services")
            assert.equals(204, res.status)
        end)
    end)
end)

describe("admin API with database = off", function()
    before_each(function()
        setup(true)
    end)

    it("refuses writes with Kong's 405", function()
        local res = call("POST", "/services", { body = { host = "x" } })
        assert.equals(405, res.status)
        assert.same({ code = 12, name = "operation unsupported",
                      message = "cannot create 'services' entities when " ..
                                "not using a database" }, res.json)
        res = call("PATCH", "/services/x", { body = { port = 1 } })
        assert.equals(405, res.status)
        assert.equals("cannot update 'services' entities when not using " ..
                      "a database", res.json.message)
        res = call("PUT", "/consumers/x", { body = {} })
        assert.equals("cannot create or update 'consumers' entities when " ..
                      "not using a database", res.json.message)
        res = call("DELETE", "/routes/x")
        assert.equals("cannot remove 'routes' entities when not using a " ..
                      "database", res.json.message)
    end)

    it("refuses nested writes after finding what the URL names",
       function()
        local _, data = setup(true)
        local sid = "6f1f2f3f-0000-4000-8000-000000000001"
        data.services[1] = { id = sid, name = "svc", host = "h.test",
                             port = 80, protocol = "http", enabled = true }
        data.routes[1] = { id = "6f1f2f3f-0000-4000-8000-000000000002",
                           name = "r1", service = { id = sid },
                           paths = { "/r" } }
        local function refused(m, path, what)
            local res = call(m, path, { body = { paths = { "/p" } } })
            assert.equals(405, res.status, m .. " " .. path)
            assert.same({ code = 12, name = "operation unsupported",
                          message = "cannot " .. what .. " entities " ..
                                    "when not using a database" },
                        res.json)
        end
        local function missing(m, path)
            local res = call(m, path, { body = { paths = { "/p" } } })
            assert.equals(404, res.status, m .. " " .. path)
        end
        missing("POST", "/services/nope/routes")
        refused("POST", "/services/svc/routes", "create 'routes'")
        missing("PUT", "/services/nope/routes/r1")
        refused("PUT", "/services/svc/routes/r1", "create or update 'routes'")
        missing("PATCH", "/services/svc/routes/nope")
        refused("PATCH", "/services/svc/routes/r1", "update 'routes'")
        missing("DELETE", "/services/svc/routes/nope")
        refused("DELETE", "/services/svc/routes/r1", "remove 'routes'")
        -- top-level writes are refused before any lookup
        refused("PATCH", "/services/nope", "update 'services'")
        refused("PUT", "/services/nope", "create or update 'services'")
        refused("DELETE", "/services/nope", "remove 'services'")
        missing("PATCH", "/routes/nope/service")
        refused("PATCH", "/routes/r1/service", "update 'services'")
        missing("PUT", "/routes/nope/service")
        refused("PUT", "/routes/r1/service", "create or update 'services'")
        assert.equals(405, call("DELETE", "/routes/r1/service").status)
        assert.equals("r1", call("GET", "/services/svc/routes/r1").json.name)
        assert.equals("svc", call("GET", "/routes/r1/service").json.name)
    end)

    it("reads, and is not ready without a config", function()
        local res = call("GET", "/services")
        assert.equals(200, res.status)
        res = call("GET", "/status/ready")
        assert.equals(503, res.status)
        assert.same({ message = "no configuration available (empty " ..
                                "configuration present)" }, res.json)
    end)

    it("POST /config needs a document", function()
        local res = call("POST", "/config", { body = {} })
        assert.equals(400, res.status)
        assert.same({ message = "expected a declarative configuration" },
                    res.json)
    end)
end)

describe("admin API with database = lmdb", function()
    it("refuses POST /config as Kong does", function()
        setup(false)
        local res = call("POST", "/config", { body = {
            _format_version = "3.0" } })
        assert.equals(400, res.status)
        assert.same({ message = "this endpoint is only available when " ..
                      "Kong is configured to not use a database" },
                    res.json)
    end)
end)

-- the same handler over the real DAOs (moongate.db over store.fake()),
-- once that module is in the tree
local have_db, DB = pcall(require, "moongate.db")
local describe_db = have_db and describe or pending

describe_db("admin API over moongate.db and store.fake()", function()
    before_each(function()
        H.setup()
        local store = require("moongate.db.store").fake()
        local db = assert(DB.new { store = store,
                                   enabled_plugins = { "headers" },
                                   database = "lmdb" })
        assert(admin.init({ configuration = { database = "lmdb" },
                            enabled_plugins = { "headers" },
                            version = "0.1.0" }, { db = db }))
    end)

    it("CRUD, nesting, pagination and errors", function()
        local res = call("POST", "/services", { form = "name=s1&host=a.test" })
        assert.equals(201, res.status)
        local s = res.json
        res = call("POST", "/services/s1/routes",
                   { body = { name = "r1", paths = { "/r" } } })
        assert.equals(201, res.status)
        assert.same({ id = s.id }, res.json.service)
        assert.equals("s1", call("GET", "/routes/r1/service").json.name)
        assert.equals(1, #call("GET", "/services/s1/routes").json.data)
        assert.equals(409, call("POST", "/services", { body = {
            name = "s1", host = "b.test" } }).status)
        assert.equals(400, call("POST", "/services", { body = {
            name = "s2" } }).status)
        for i = 2, 4 do
            call("POST", "/services", { body = { name = "p" .. i,
                                                 host = "h.test" } })
        end
        res = call("GET", "/services?size=2")
        assert.equals(2, #res.json.data)
        assert.matches("^/services%?offset=.+&size=2$", res.json.next)
        assert.equals(200, call("PATCH", "/services/s1", { body = {
            port = 81 } }).status)
        assert.equals(204, call("DELETE", "/routes/r1").status)
        assert.equals(204, call("DELETE", "/routes/r1").status)
        assert.equals(404, call("GET", "/routes/r1").status)
    end)

    it("nested PUT, PATCH and DELETE through the right parent only",
       function()
        call("POST", "/services", { body = { name = "s1", host = "a.test" } })
        call("POST", "/services", { body = { name = "s2", host = "b.test" } })
        local res = call("POST", "/services/s1/routes",
                         { body = { name = "r1", paths = { "/r" } } })
        local s1 = res.json.service
        res = call("PUT", "/services/s1/routes/r2",
                   { body = { paths = { "/r2" } } })
        assert.equals(200, res.status)
        assert.equals("r2", res.json.name)
        assert.same(s1, res.json.service)
        assert.equals(404, call("DELETE", "/services/s2/routes/r1").status)
        assert.equals(404, call("PATCH", "/services/s2/routes/r1",
                                { body = { paths = { "/x" } } }).status)
        res = call("GET", "/services/s1/routes?size=1")
        assert.matches("^/services/s1/routes%?offset=[^&]+$", res.json.next)
        res = call("PATCH", "/routes/r1/service", { body = { port = 82 } })
        assert.equals(200, res.status)
        assert.equals(82, res.json.port)
        res = call("PUT", "/services/s9", { body = { host = "c.test" } })
        assert.equals(200, res.status)
        assert.equals("s9", res.json.name)
        res = call("PATCH", "/services/nope", { body = { port = 1 } })
        assert.equals(404, res.status)
        assert.equals(6, res.json.code)
        assert.equals(204, call("DELETE", "/services/nope").status)
        assert.equals(204, call("DELETE", "/services/s1/routes/r1").status)
        assert.equals(404, call("GET", "/routes/r1").status)
    end)
end)
