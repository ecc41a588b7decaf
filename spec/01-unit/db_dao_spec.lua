-- Unit: moongate.db DAOs and moongate.db.declarative over the fake store:
-- Kong's CRUD API and return values, err_t shapes, PATCH merge, plugin
-- config validation with real plugins, basicauth hashing, off mode,
-- declarative nested/flat import, deterministic ids, export round trip.

local H = require "lua_runtime"           -- fixture plugins on the path
local DB = require "moongate.db"
local D = require "moongate.db.declarative"
local S = require "moongate.db.store"
local loader = require "moongate.plugin_loader"
local Schema = require "moongate.schema"
local digest = require "moongate.digest"

local null = Schema.null

loader.install(H.ROOT)

local function new_db(database)
    return assert(DB.new { store = S.fake(), database = database,
                           enabled_plugins = { "headers",
                                               "mg-header-rewrite" } })
end

describe("db DAO", function()
    local db
    before_each(function()
        db = new_db()
    end)

    it("inserts with defaults and the url shorthand", function()
        local s = assert(db.services:insert {
            name = "s1", url = "https://example.com:8443/v1" })
        assert.equals("https", s.protocol)
        assert.equals("example.com", s.host)
        assert.equals(8443, s.port)
        assert.equals("/v1", s.path)
        assert.equals(5, s.retries)
        assert.equals(60000, s.read_timeout)
        assert.equals(null, s.tags)
        assert.matches("^%x+%-%x+%-4%x+%-%x+%-%x+$", s.id)
        assert.equals("number", type(s.created_at))
        assert.same(s, db.services:select { id = s.id })
        assert.same(s, db.services:select_by_name("s1"))
        assert.same(s, db.services:select_by_key("s1"))
    end)

    it("returns Kong's err_t for schema violations", function()
        local r, err, err_t = db.routes:insert { name = "r1" }
        assert.is_nil(r)
        assert.equals(2, err_t.code)
        assert.equals("schema violation", err_t.name)
        assert.equals("lmdb", err_t.strategy)
        assert.same({ "must set one of 'methods', 'hosts', 'headers', " ..
                      "'paths', 'snis' when 'protocols' is 'https'" },
                    err_t.fields["@entity"])
        assert.equals("[lmdb] schema violation (must set one of 'methods'," ..
                      " 'hosts', 'headers', 'paths', 'snis' when " ..
                      "'protocols' is 'https')", err)
        local _, _, e2 = db.services:insert { host = 5 }
        assert.equals("expected a string", e2.fields.host)
    end)

    it("reports unique and foreign key violations as Kong", function()
        local s = assert(db.services:insert { name = "s1", host = "a.test" })
        local _, err, err_t = db.services:insert { name = "s1",
                                                   host = "b.test" }
        assert.equals(5, err_t.code)
        assert.equals("unique constraint violation", err_t.name)
        assert.same({ name = "s1" }, err_t.fields)
        assert.equals([[[lmdb] UNIQUE violation detected on '{name="s1"}']],
                      err)
        local missing = "00000000-0000-4000-8000-000000000009"
        _, _, err_t = db.routes:insert { paths = { "/" },
                                         service = { id = missing } }
        assert.equals(4, err_t.code)
        assert.same({ service = { id = missing } }, err_t.fields)
        assert.equals("the foreign key '{id=\"" .. missing .. "\"}' does " ..
                      "not reference an existing 'services' entity.",
                      err_t.message)
        assert(db.routes:insert { paths = { "/" }, service = { id = s.id } })
        _, _, err_t = db.services:delete { id = s.id }
        assert.equals(4, err_t.code)
        assert.same({ ["@referenced_by"] = "routes" }, err_t.fields)
        _, _, err_t = db.services:select { id = "nope" }
        assert.equals(1, err_t.code)
    end)

    it("PATCH merges then validates the whole entity", function()
        local s = assert(db.services:insert { name = "s1", host = "a.test",
                                              tags = { "a" } })
        local u = assert(db.services:update({ id = s.id }, { retries = 2 }))
        assert.equals(2, u.retries)
        assert.equals("a.test", u.host)
        assert.same({ "a" }, { u.tags[1] })
        local _, _, err_t = db.services:update({ id = s.id },
                                               { protocol = "tcp",
                                                 path = "/x" })
        assert.equals(2, err_t.code)
        _, _, err_t = db.services:update(
            { id = "00000000-0000-4000-8000-000000000001" }, { retries = 1 })
        assert.equals(6, err_t.code)
        u = assert(db.services:update_by_name("s1", { port = 8080 }))
        assert.equals(8080, u.port)
        assert.is_true(db.services:delete_by_name("s1"))
        assert.is_nil(db.services:select { id = s.id })
    end)

    it("pages with tags, and lists routes of a service", function()
        local s = assert(db.services:insert { host = "a.test" })
        for i = 1, 5 do
            assert(db.routes:insert { paths = { "/" .. i },
                                      service = i <= 3 and { id = s.id }
                                                or null,
                                      tags = { i % 2 == 0 and "even"
                                               or "odd" } })
        end
        local rows, err, err_t, offset = db.routes:page(2)
        assert.is_nil(err)
        assert.equals(2, #rows)
        assert.is_string(offset)
        local all = {}
        for row in db.routes:each(2) do
            all[#all + 1] = row
        end
        assert.equals(5, #all)
        rows = db.routes:page(10, nil, { tags = { "even" } })
        assert.equals(2, #rows)
        rows = db.routes:page(10, nil, { tags = { "even", "odd" },
                                         tags_cond = "or" })
        assert.equals(5, #rows)
        rows = db.routes:page_for_service({ id = s.id })
        assert.equals(3, #rows)
        _, _, err_t = db.routes:page(0)
        assert.equals(9, err_t.code)
        _, _, err_t = db.routes:page(10, "%%%")
        assert.equals(7, err_t.code)
        _, _, err_t = db.routes:page(10, nil, { tags = { "a", "b" } })
        assert.equals(11, err_t.code)
    end)

    it("validates plugin config with the plugin's schema", function()
        local p = assert(db.plugins:insert { name = "headers" })
        assert.equals("X-Plugin", p.config.name)
        assert.equals(true, p.enabled)
        local _, _, err_t = db.plugins:insert { name = "headers" }
        assert.equals(5, err_t.code)             -- same scope: cache_key
        _, _, err_t = db.plugins:insert { name = "exiter" }
        assert.equals(2, err_t.code)
        assert.equals("plugin 'exiter' not enabled; add it to the " ..
                      "'plugins' configuration property", err_t.fields.name)
        local s = assert(db.services:insert { host = "a.test" })
        _, _, err_t = db.plugins:insert { name = "headers",
                                          service = { id = s.id },
                                          config = { bogus = true } }
        assert.equals("unknown field", err_t.fields.config.bogus)
        local u = assert(db.plugins:update({ id = p.id },
                                           { config = { value = "v" } }))
        assert.equals("v", u.config.value)
        assert.equals("X-Plugin", u.config.name)  -- merged, not replaced
        assert.equals(p.id, db.plugins:select_by_cache_key(
            db.plugins:cache_key(p)).id)
    end)

    it("stores basicauth passwords hashed, and cascades credentials",
       function()
        local c = assert(db.consumers:insert { username = "bob" })
        local b = assert(db.basicauth_credentials:insert {
            consumer = { id = c.id }, username = "u", password = "secret" })
        assert.equals(digest.tohex(digest.sha1_bin("secret" .. c.id)),
                      b.password)
        local k = assert(db.keyauth_credentials:insert {
            consumer = { id = c.id } })
        assert.is_string(k.key)
        assert.is_true(db.consumers:delete { id = c.id })
        assert.is_nil(db.basicauth_credentials:select { id = b.id })
        assert.is_nil(db.keyauth_credentials:select { id = k.id })
    end)

    it("refuses writes in database=off with Kong's message", function()
        local odb = new_db("off")
        local _, err, err_t = odb.services:insert { host = "a.test" }
        assert.equals(12, err_t.code)
        assert.equals("off", err_t.strategy)
        assert.equals("[off] cannot create 'services' entities when not " ..
                      "using a database", err)
        assert.equals(12, select(3, odb.services:delete {
            id = "00000000-0000-4000-8000-000000000001" }).code)
    end)
end)

describe("db declarative", function()
    local doc = {
        _format_version = "3.0",
        services = { {
            name = "s1", url = "http://a.test", tags = { "t1" },
            routes = { { name = "r1", paths = { "/a" },
                         plugins = { { name = "headers" } } } },
            plugins = { { name = "headers", config = { value = "x" } } },
        } },
        routes = { { name = "r2", service = "s1", hosts = { "x.test" } } },
        consumers = { { username = "bob",
                        keyauth_credentials = { { key = "k1" } },
                        acls = { { group = "g" } } } },
        upstreams = { { name = "u1",
                        targets = { { target = "10.0.0.1" } } } },
    }

    it("imports nested and flat forms, resolving names", function()
        local db = new_db("off")
        local ok, counts = D.import(db, doc)
        assert.is_true(ok)
        assert.same({ services = 1, routes = 2, plugins = 2, consumers = 1,
                      keyauth_credentials = 1, acls = 1, upstreams = 1,
                      targets = 1 }, counts)
        local s = db.services:select_by_name("s1")
        assert.equals(s.id, db.routes:select_by_name("r2").service.id)
        assert.equals(s.id, db.routes:select_by_name("r1").service.id)
        assert.equals("10.0.0.1:8000", db.targets:page()[1].target)
        local bob = db.consumers:select_by_username("bob")
        assert.equals(bob.id, db.keyauth_credentials:select_by_key("k1")
                                  .consumer.id)
    end)

    it("gives the same ids for the same file", function()
        local a, b = new_db(), new_db()
        assert(D.import(a, doc))
        assert(D.import(b, doc))
        assert.equals(a.services:select_by_name("s1").id,
                      b.services:select_by_name("s1").id)
        assert.equals(a.routes:select_by_name("r2").id,
                      b.routes:select_by_name("r2").id)
        assert.matches("^%x+%-%x+%-5%x+%-", a.routes:select_by_name("r2").id)
    end)

    it("round-trips through export (json) and import", function()
        local a, b = new_db(), new_db()
        assert(D.import(a, doc))
        local text = assert(D.export(a, "json"))
        assert(D.import(b, text))
        -- an import stamps updated_at with its own time (Kong's auto
        -- timestamps); the two imports may straddle a second
        local function stable(y)
            return (y:gsub("\n%s*updated_at: %d+", ""))
        end
        assert.equals(stable(D.export(a, "yaml")), stable(D.export(b, "yaml")))
        assert.matches('_format_version: "3.0"', D.export(a, "yaml"), 1, true)
    end)

    it("reports errors nested like the input, and flat", function()
        local db = new_db()
        local before = db.store:version()
        local ok, err, err_t = D.import(db, {
            _format_version = "3.0",
            services = { { name = "s", host = 5,
                           routes = { { name = "r" } } } },
        })
        assert.is_nil(ok)
        assert.equals(14, err_t.code)
        assert.equals("expected a string", err_t.fields.services[1].host)
        assert.is_table(err_t.fields.services[1].routes[1]["@entity"])
        assert.same({
            "services[1].routes[1]: must set one of 'methods', 'hosts', " ..
            "'headers', 'paths', 'snis' when 'protocols' is 'https'",
            "services[1]: host: expected a string",
        }, err_t.flattened)
        assert.is_string(err)
        assert.equals(before, db.store:version())   -- nothing written
        _, _, err_t = D.parse(db, { services = {} })
        assert.equals("required field missing",
                      err_t.fields._format_version)
    end)
end)
