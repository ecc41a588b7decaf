-- Unit: moongate.runloop over the fake FFI API -- init (plugin loading,
-- schema validation and defaults, Kong's ordering and precedence, the
-- routes that enter Lua) and phases (exit, errors, waits, per-request
-- state, consumer-scoped configs).

local H = require "lua_runtime"
local cjson = require "cjson"

local fake = H.fake
local runloop = H.runloop

-- uuids for entities
local function uuid(n)
    return string.format("00000000-0000-4000-8000-%012d", n)
end

local R1, R2, R3 = uuid(1), uuid(2), uuid(3)          -- routes
local S1, S2 = uuid(11), uuid(12)                      -- services
local CA, CB = uuid(21), uuid(22)                      -- consumers

local ROUTES = {
    { id = R1, name = "r1", service = S1, index = 0 },
    { id = R2, name = "r2", service = S1, index = 1 },
    { id = R3, name = "r3", service = S2, index = 2 },
}
local SERVICES = {
    { id = S1, name = "s1", host = "a.test", port = 80, protocol = "http" },
    { id = S2, name = "s2", host = "b.test", port = 80, protocol = "http" },
}
local CONSUMERS = {
    { id = CA, username = "alice" },
    { id = CB, username = "bob" },
}

-- what the inline test plugins did, in order
local trace = {}

-- an inline plugin "t-<name>" through package.preload
local function define(name, priority, phases, fields, extra)
    local handler = { PRIORITY = priority, VERSION = "1.0.0" }
    for phase, fn in pairs(phases) do
        handler[phase] = fn
    end
    for k, v in pairs(extra or {}) do
        handler[k] = v
    end
    package.loaded["kong.plugins." .. name .. ".handler"] = nil
    package.loaded["kong.plugins." .. name .. ".schema"] = nil
    package.preload["kong.plugins." .. name .. ".handler"] = function()
        return handler
    end
    package.preload["kong.plugins." .. name .. ".schema"] = function()
        return {
            name = name,
            fields = {
                { config = { type = "record", fields = fields or {
                    { tag = { type = "string", default = "default" } },
                } } },
            },
        }
    end
    return handler
end

-- a plugin that records "<name>:<phase>:<conf.tag>"
local function recorder(name, priority, list)
    local phases = {}
    for _, phase in ipairs(list or { "access" }) do
        phases[phase] = function(_, conf)
            trace[#trace + 1] = name .. ":" .. phase .. ":" ..
                                tostring(conf.tag)
        end
    end
    return define(name, priority, phases)
end

local seq = 0
local function plugin(name, scope, config)
    seq = seq + 1
    local p = { id = uuid(100 + seq), name = name, enabled = true,
                config = config or {} }
    for k, v in pairs(scope or {}) do
        p[k] = v
    end
    return p
end

local function init(plugins, enabled, extra)
    local doc = {
        plugins = plugins,
        routes = ROUTES,
        services = SERVICES,
        consumers = CONSUMERS,
        enabled_plugins = enabled or H.ENABLED,
    }
    for k, v in pairs(extra or {}) do
        doc[k] = v
    end
    return H.init(doc)
end

local function request(o)
    return H.request(o)
end

before_each(function()
    runloop.reset()
    fake.reset()
    trace = {}
end)

describe("runloop.init", function()
    it("installs the kong and ngx globals", function()
        assert.same({}, (init({})))
        assert.is_table(kong)
        assert.is_table(kong.request)
        assert.is_table(ngx)
        assert.is_function(ngx.sleep)
        assert.equals("3.9.0", kong.version)
        assert.equals(3009000, kong.version_num)
    end)

    it("returns the 0-based indexes of the routes that enter Lua", function()
        assert.same({ 1 }, (init { plugin("headers", { route = R2 }) }))
        -- a service plugin: every route of the service
        assert.same({ 0, 1 }, (init { plugin("headers", { service = S1 }) }))
        assert.same({ 0, 2 }, (init {
            plugin("headers", { route = R1 }),
            plugin("exiter", { service = S2 }),
        }))
    end)

    it("returns true when a global plugin makes every route enter Lua",
       function()
        assert.is_true((init { plugin("headers") }))
        -- consumer-scoped only: still every route
        assert.is_true((init { plugin("headers", { consumer = CA }) }))
    end)

    it("ignores disabled instances", function()
        local p = plugin("headers", { route = R1 })
        p.enabled = false
        assert.same({}, (init { p }))
    end)

    it("accepts the enabled list as an array, and 'off'", function()
        assert.same({ 0 }, (init({ plugin("headers", { route = R1 }) },
                                 { "bundled", "headers" })))
        local ok, err = init({ plugin("headers") }, "off")
        assert.is_nil(ok)
        assert.matches("not enabled", err)
    end)

    it("rejects a plugin that is not enabled, naming it and its id",
       function()
        local p = plugin("headers")
        local ok, err = init({ p }, "bundled")
        assert.is_nil(ok)
        assert.equals("plugin 'headers' (id " .. p.id .. ") is not " ..
                      "enabled; add it to the 'plugins' configuration " ..
                      "property", err)
    end)

    it("rejects an enabled plugin that is not installed", function()
        local ok, err = init({}, "bundled,no-such-plugin")
        assert.is_nil(ok)
        assert.matches("^no%-such%-plugin plugin is enabled but not " ..
                       "installed;", err)
        assert.matches("no file", err)
    end)

    it("rejects a handler without PRIORITY or with a bad VERSION", function()
        define("t-noprio", nil, {})
        local ok, err = init({}, "t-noprio")
        assert.is_nil(ok)
        assert.equals('Plugin "t-noprio" cannot be loaded because its ' ..
                      'PRIORITY field is not a valid integer number, got: ' ..
                      '"nil".', err)
        local h = define("t-badver", 10, {})
        h.VERSION = "one"
        ok, err = init({}, "t-badver")
        assert.is_nil(ok)
        assert.matches('VERSION field does not follow the "x.y.z" format',
                       err, 1, true)
    end)

    it("reports a handler that fails to load, not 'not installed'",
       function()
        package.loaded["kong.plugins.t-broken.handler"] = nil
        package.preload["kong.plugins.t-broken.handler"] = function()
            error("syntax trouble")
        end
        local ok, err = init({}, "t-broken")
        assert.is_nil(ok)
        assert.matches("error loading plugin 't%-broken'", err)
        assert.matches("syntax trouble", err)
    end)

    it("rejects an invalid config with Kong's field message", function()
        local p = plugin("exiter", { route = R1 }, { status = 99, foo = 1 })
        local ok, err = init { p }
        assert.is_nil(ok)
        assert.equals("plugin 'exiter' (id " .. p.id .. "): 2 schema " ..
                      "violations (config.foo: unknown field; " ..
                      "config.status: value should be between 100 and 599)",
                      err)
    end)

    it("rejects a consumer scope where the schema says no_consumer",
       function()
        define("t-nocons", 10, {})
        package.loaded["kong.plugins.t-nocons.schema"] = nil
        package.preload["kong.plugins.t-nocons.schema"] = function()
            local typedefs = require "kong.db.schema.typedefs"
            return { name = "t-nocons", fields = {
                { consumer = typedefs.no_consumer },
                { config = { type = "record", fields = {} } },
            } }
        end
        local p = plugin("t-nocons", { consumer = CA })
        local ok, err = init({ p }, "t-nocons")
        assert.is_nil(ok)
        assert.matches("schema violation %(consumer: value must be null%)",
                       err)
    end)

    it("rejects a document that is not JSON", function()
        local ok, err = runloop.init("{nope")
        assert.is_nil(ok)
        assert.matches("^invalid init document", err)
    end)

    it("fills config defaults", function()
        local seen
        define("t-defaults", 10, {
            access = function(_, conf) seen = conf end,
        }, {
            { a = { type = "string", default = "x" } },
            { n = { type = "integer", default = 5 } },
            { rec = { type = "record", fields = {
                { inner = { type = "boolean", default = true } },
            } } },
        })
        assert.same({ 0 }, (init({ plugin("t-defaults", { route = R1 },
                                          { n = 7 }) }, "t-defaults")))
        H.phase("access", request(), "q1", 0)
        assert.equals("x", seen.a)
        assert.equals(7, seen.n)
        assert.is_true(seen.rec.inner)
        assert.is_string(seen.__key__)
    end)

    it("resolves {vault://env/...} references in referenceable fields",
       function()
        local seen
        define("t-vault", 10, {
            access = function(_, conf) seen = conf end,
        }, {
            { secret = { type = "string", referenceable = true } },
            { plain = { type = "string" } },
        })
        local home = os.getenv("HOME")
        assert(home, "HOME must be set for this spec")
        assert.same({ 0 }, (init({ plugin("t-vault", { route = R1 }, {
            secret = "{vault://env/home}",
            plain = "{vault://env/home}",
        }) }, "t-vault")))
        H.phase("access", request(), "q1", 0)
        assert.equals(home, seen.secret)
        assert.equals("{vault://env/home}", seen.plain)

        local ok, err = init({ plugin("t-vault", { route = R1 }, {
            secret = "{vault://env/moongate-surely-unset-var}",
        }) }, "t-vault")
        assert.is_nil(ok)
        assert.matches("config.secret: .*MOONGATE_SURELY_UNSET_VAR", err)
    end)

    it("calls init_worker once and configure with the configs", function()
        local inits, configured = 0, nil
        define("t-hooks", 10, {}, nil, {
            init_worker = function() inits = inits + 1 end,
            configure = function(_, configs) configured = configs end,
        })
        assert.same({ 0 }, (init({ plugin("t-hooks", { route = R1 },
                                          { tag = "c1" }) }, "t-hooks")))
        assert.equals(1, inits)
        assert.equals(1, #configured)
        assert.equals("c1", configured[1].tag)
        init({}, "t-hooks")
        assert.equals(1, inits)
        assert.is_nil(configured)
    end)

    it("keeps the old snapshot when a new config is rejected", function()
        recorder("t-a", 10)
        assert.same({ 0 }, (init({ plugin("t-a", { route = R1 }) }, "t-a")))
        local ok = init({ plugin("t-a", { route = R1 }, { bad = 1 }) }, "t-a")
        assert.is_nil(ok)
        H.phase("access", request(), "q1", 0)
        assert.same({ "t-a:access:default" }, trace)
    end)
end)

describe("plugin order", function()
    it("runs by PRIORITY, highest first; ties by name, descending",
       function()
        recorder("t-low", 1)
        recorder("t-high", 1000)
        recorder("t-mid-a", 500)
        recorder("t-mid-b", 500)
        init({
            plugin("t-low"), plugin("t-mid-a"), plugin("t-high"),
            plugin("t-mid-b"),
        }, "t-low,t-high,t-mid-a,t-mid-b")
        H.phase("access", request(), "q1", 0)
        assert.same({ "t-high:access:default", "t-mid-b:access:default",
                      "t-mid-a:access:default", "t-low:access:default" },
                    trace)
    end)

    it("runs only the phases a plugin implements", function()
        recorder("t-a", 10, { "access", "log" })
        recorder("t-b", 5, { "header_filter" })
        init({ plugin("t-a"), plugin("t-b") }, "t-a,t-b")
        local r = request()
        for _, phase in ipairs { "rewrite", "access", "header_filter",
                                 "log" } do
            H.phase(phase, r, "q1", 0)
        end
        assert.same({ "t-a:access:default", "t-b:header_filter:default",
                      "t-a:log:default" }, trace)
        local phases = H.phases
        assert.equals(phases.bits.access + phases.bits.log +
                      phases.bits.header_filter, runloop.route_phases(0))
    end)
end)

describe("plugin precedence (one instance per plugin)", function()
    before_each(function()
        recorder("t-p", 10)
    end)

    local function tag_for(route_index, r)
        trace = {}
        H.phase("access", r or request(), "q" .. route_index, route_index)
        runloop.finish("q" .. route_index)
        return trace[1] and trace[1]:match(":access:(.*)$")
    end

    it("route+service > route > service > global", function()
        init({
            plugin("t-p", nil, { tag = "global" }),
            plugin("t-p", { service = S1 }, { tag = "service" }),
            plugin("t-p", { route = R1 }, { tag = "route" }),
            plugin("t-p", { route = R1, service = S1 },
                   { tag = "route+service" }),
            plugin("t-p", { route = R2 }, { tag = "route2" }),
        }, "t-p")
        assert.equals("route+service", tag_for(0))
        assert.equals("route2", tag_for(1))
        assert.equals("global", tag_for(2))
    end)

    it("service beats global", function()
        init({
            plugin("t-p", { service = S1 }, { tag = "service" }),
            plugin("t-p", nil, { tag = "global" }),
        }, "t-p")
        assert.equals("service", tag_for(0))
        assert.equals("service", tag_for(1))
        assert.equals("global", tag_for(2))
    end)

    it("a route+service instance for another service does not apply",
       function()
        assert.same({}, (init({
            plugin("t-p", { route = R1, service = S2 }, { tag = "x" }),
        }, "t-p")))
        assert.is_nil(tag_for(0))
    end)

    it("consumer-scoped instances apply once a consumer is known",
       function()
        -- an auth plugin of higher priority authenticates from a header
        define("t-auth", 100, {
            access = function()
                local who = kong.request.get_header("x-user")
                if who then
                    kong.client.authenticate(
                        kong.client.load_consumer(who, true), nil)
                end
            end,
        })
        init({
            plugin("t-auth"),
            plugin("t-p", { route = R1 }, { tag = "route" }),
            plugin("t-p", { consumer = CA }, { tag = "consumer" }),
            plugin("t-p", { route = R1, consumer = CB },
                   { tag = "route+consumer" }),
        }, "t-p,t-auth")
        assert.equals("route", tag_for(0))
        assert.equals("consumer",
                      tag_for(0, request { headers = { ["X-User"] = "alice" } }))
        assert.equals("route+consumer",
                      tag_for(0, request { headers = { ["X-User"] = "bob" } }))
        assert.equals("consumer",
                      tag_for(2, request { headers = { ["X-User"] = "alice" } }))
        assert.is_nil(tag_for(2, request { headers = { ["X-User"] = "bob" } }))
    end)

    it("later phases keep the instance chosen in access", function()
        define("t-auth", 100, {
            access = function()
                kong.client.authenticate({ id = CA }, nil)
            end,
        })
        recorder("t-p", 10, { "access", "log" })
        init({
            plugin("t-auth"),
            plugin("t-p", nil, { tag = "global" }),
            plugin("t-p", { consumer = CA }, { tag = "consumer" }),
        }, "t-p,t-auth")
        local r = request()
        H.phase("access", r, "q", 0)
        H.phase("log", r, "q", 0)
        assert.same({ "t-p:access:consumer", "t-p:log:consumer" }, trace)
    end)

    it("rewrite runs global instances only", function()
        recorder("t-p", 10, { "rewrite", "access" })
        init({
            plugin("t-p", { route = R1 }, { tag = "route" }),
        }, "t-p")
        H.phase("rewrite", request(), "q", 0)
        assert.same({}, trace)
        init({
            plugin("t-p", nil, { tag = "global" }),
            plugin("t-p", { route = R1 }, { tag = "route" }),
        }, "t-p")
        local r = request()
        H.phase("rewrite", r, "q2", 0)
        H.phase("access", r, "q2", 0)
        assert.same({ "t-p:rewrite:global", "t-p:access:route" }, trace)
    end)
end)

describe("runloop.phase", function()
    it("returns 'exit' on kong.response.exit and skips the rest", function()
        recorder("t-after", 1)
        init({
            plugin("exiter", { route = R1 }, { status = 403,
                                               message = "go away" }),
            plugin("t-after", { route = R1 }),
        }, "exiter,t-after")
        local r = request()
        local res = H.phase("access", r, "q", 0)
        assert.equals("exit", res)
        assert.equals(403, r.exit.status)
        assert.same({ message = "go away" }, cjson.decode(r.exit.body))
        local headers = fake.response_headers(r)
        assert.equals("1", fake.header(headers, "X-Exit"))
        assert.equals("application/json; charset=utf-8",
                      fake.header(headers, "Content-Type"))
        assert.same({}, trace)
    end)

    it("recognises an exit made deep in plugin code or swallowed by pcall",
       function()
        local function deep(n)
            if n == 0 then
                kong.response.exit(200, "deep")
            end
            deep(n - 1)
        end
        define("t-deep", 10, { access = function() deep(5) end })
        define("t-swallow", 5, {
            access = function()
                pcall(kong.response.exit, 201, "swallowed")
                trace[#trace + 1] = "went on"
            end,
        })
        recorder("t-after", 1)
        init({ plugin("t-deep", { route = R1 }),
               plugin("t-swallow", { route = R2 }),
               plugin("t-after") }, "t-deep,t-swallow,t-after")
        local r = request()
        assert.equals("exit", (H.phase("access", r, "q1", 0)))
        assert.equals("deep", r.exit.body)
        r = request()
        assert.equals("exit", (H.phase("access", r, "q2", 1)))
        assert.equals(201, r.exit.status)
        assert.same({ "went on" }, trace)
    end)

    it("returns 'error' on a plugin error, logged with name and traceback",
       function()
        recorder("t-after", 1)
        init({ plugin("crasher", { route = R1 }),
               plugin("t-after", { route = R1 }) }, "crasher,t-after")
        local res, msg = H.phase("access", request(), "q", 0)
        assert.equals("error", res)
        assert.matches("plugin 'crasher' failed in the access phase", msg)
        assert.matches("boom", msg)
        assert.matches("stack traceback", msg)
        assert.matches("crasher/handler.lua", msg)
        local logs = fake.logged("plugin 'crasher' failed", 4)
        assert.equals(1, #logs)
        assert.same({}, trace)
    end)

    it("errors in header_filter and log phases too", function()
        init({ plugin("crasher", { route = R1 }, { phase = "log" }) },
             "crasher")
        local r = request()
        assert.is_nil((H.phase("access", r, "q", 0)))
        local res, msg = H.phase("log", r, "q", 0)
        assert.equals("error", res)
        assert.matches("failed in the log phase", msg)
    end)

    it("yields while a plugin sleeps and goes on when resumed", function()
        init({ plugin("sleeper", { route = R1 }, { seconds = 0.5 }) },
             "sleeper")
        local r = request()
        local res, _, yields = H.phase("access", r, "q", 0)
        assert.is_nil(res)
        assert.equals(1, yields)
        assert.same({ 0.5 }, r.sleeps)
        assert.equals("0.5", fake.header(fake.upstream_headers(r), "X-Slept"))
    end)

    it("keeps each request's state apart while one waits", function()
        define("t-ctx", 10, {
            access = function()
                kong.ctx.shared.id = kong.request.get_header("x-id")
                kong.ctx.plugin.id = kong.ctx.shared.id
                ngx.ctx.id = kong.ctx.shared.id
                ngx.sleep(0.1)
                trace[#trace + 1] = kong.ctx.shared.id .. "/" ..
                                    kong.ctx.plugin.id .. "/" ..
                                    ngx.ctx.id .. "/" ..
                                    kong.request.get_header("x-id")
            end,
        })
        init({ plugin("t-ctx") }, "t-ctx")
        local ra = request { headers = { ["X-Id"] = "a" } }
        local rb = request { headers = { ["X-Id"] = "b" } }
        local ca = coroutine.create(runloop.phase)
        local cb = coroutine.create(runloop.phase)
        assert(coroutine.resume(ca, "access", ra, "qa", 0))
        assert(coroutine.resume(cb, "access", rb, "qb", 0))
        assert.equals("suspended", coroutine.status(ca))
        assert(coroutine.resume(cb))            -- b finishes first
        assert(coroutine.resume(ca))
        assert.equals("dead", coroutine.status(ca))
        assert.same({ "b/b/b/b", "a/a/a/a" }, trace)
    end)

    it("keeps kong.ctx across phases and drops it at finish", function()
        init({ plugin("ctx-check") }, "ctx-check")
        local r = request { headers = { ["X-Ctx-Value"] = "v" } }
        for _, phase in ipairs { "rewrite", "access" } do
            assert.is_nil((H.phase(phase, r, "q", 0)))
        end
        fake.respond(r, 200, {})
        assert.is_nil((H.phase("header_filter", r, "q", 0)))
        assert.is_nil((H.phase("log", r, "q", 0)))
        assert.equals("rewrite=1;access=v;plugin=1;ngx=ngx;leak=0",
                      fake.header(fake.response_headers(r), "X-Ctx-Check"))
        assert.equals(1, #fake.logged("ctx-check log: access=v plugin=1"))
        assert.is_table(runloop.requests.q)
        runloop.finish("q")
        assert.is_nil(runloop.requests.q)
        -- a new request with the same id starts empty
        local r2 = request()
        H.phase("rewrite", r2, "q", 0)
        H.phase("access", r2, "q", 0)
        fake.respond(r2, 200, {})
        H.phase("header_filter", r2, "q", 0)
        assert.equals("rewrite=1;access=none;plugin=1;ngx=ngx;leak=0",
                      fake.header(fake.response_headers(r2), "X-Ctx-Check"))
    end)

    it("forgets a request whose plugins end in access as access returns",
       function()
        -- the core (mg_lua_resume) makes the same test and skips finish
        recorder("t-a", 10)
        recorder("t-l", 5, { "access", "log" })
        recorder("t-g", 1, { "rewrite" })
        init({ plugin("t-a", { route = R1 }), plugin("t-l", { route = R2 }) },
             "t-a,t-l")
        H.phase("access", request(), "q1", 0)
        assert.is_nil(runloop.requests.q1)
        local r2 = request()
        H.phase("access", r2, "q2", 1)
        assert.is_table(runloop.requests.q2)    -- log comes later
        fake.respond(r2, 200, {})
        H.phase("log", r2, "q2", 1)
        assert.is_table(runloop.requests.q2)    -- until finish
        runloop.finish("q2")
        assert.is_nil(runloop.requests.q2)
        -- a global rewrite plugin: kept after rewrite, forgotten after
        -- the route's access
        init({ plugin("t-a", { route = R1 }), plugin("t-g") }, "t-a,t-g")
        local r3 = request()
        H.phase("rewrite", r3, "q3", 0)
        assert.is_table(runloop.requests.q3)
        H.phase("access", r3, "q3", 0)
        assert.is_nil(runloop.requests.q3)
        assert.same({ "t-a:access:default", "t-l:access:default",
                      "t-l:log:default", "t-g:rewrite:default",
                      "t-a:access:default" }, trace)
    end)

    it("kong.ctx.plugin is private to each plugin", function()
        define("t-one", 20, { access = function()
            kong.ctx.plugin.v = "one"
        end })
        define("t-two", 10, { access = function()
            trace[#trace + 1] = tostring(kong.ctx.plugin.v)
            kong.ctx.plugin.v = "two"
        end, log = function()
            trace[#trace + 1] = kong.ctx.plugin.v
        end })
        init({ plugin("t-one"), plugin("t-two") }, "t-one,t-two")
        local r = request()
        H.phase("access", r, "q", 0)
        H.phase("log", r, "q", 0)
        assert.same({ "nil", "two" }, trace)
    end)

    it("answers with ngx.say output when a handler printed", function()
        define("t-say", 10, { access = function()
            ngx.status = 202
            ngx.say("hello ", "world")
        end })
        recorder("t-after", 1)
        init({ plugin("t-say"), plugin("t-after") }, "t-say,t-after")
        local r = request()
        assert.equals("exit", (H.phase("access", r, "q", 0)))
        assert.equals(202, r.exit.status)
        assert.equals("hello world\n", r.exit.body)
        assert.same({}, trace)
    end)

    it("ngx.exit(ngx.OK) ends one handler, the phase goes on", function()
        define("t-quit", 10, { access = function()
            trace[#trace + 1] = "quit"
            ngx.exit(ngx.OK)
            trace[#trace + 1] = "not reached"
        end })
        recorder("t-after", 1)
        init({ plugin("t-quit"), plugin("t-after") }, "t-quit,t-after")
        assert.is_nil((H.phase("access", request(), "q", 0)))
        assert.same({ "quit", "t-after:access:default" }, trace)
    end)

    it("ngx.exit(status) answers like kong.response.exit", function()
        define("t-nexit", 10, { access = function()
            ngx.exit(ngx.HTTP_UNAUTHORIZED)
        end })
        init({ plugin("t-nexit") }, "t-nexit")
        local r = request()
        assert.equals("exit", (H.phase("access", r, "q", 0)))
        assert.equals(401, r.exit.status)
    end)

    it("hands a changed body_filter chunk back to the core", function()
        define("t-upper", 10, { body_filter = function()
            ngx.arg[1] = ngx.arg[1]:upper()
            trace[#trace + 1] = tostring(ngx.arg[2])
        end })
        init({ plugin("t-upper") }, "t-upper")
        local r = request()
        H.phase("body_filter", r, "q", 0, "abc", false)
        assert.equals("ABC", r.chunk)
        H.phase("body_filter", r, "q", 0, "def", true)
        assert.equals("DEF", r.chunk)
        assert.same({ "false", "true" }, trace)
    end)

    it("keeps the upstream's response head for body_filter and log",
       function()
        define("t-resp", 10, {
            header_filter = function()
                trace[#trace + 1] = kong.response.get_header("x-up")
            end,
            log = function()
                trace[#trace + 1] = kong.response.get_header("x-up")
                trace[#trace + 1] = kong.log.serialize().response.headers["x-up"]
            end,
        })
        init({ plugin("t-resp") }, "t-resp")
        local r = request()
        H.phase("access", r, "q", 0)
        fake.respond(r, 200, { ["X-Up"] = "u" })
        H.phase("header_filter", r, "q", 0)
        r.resp.headers = { { "X-Up", "garbage" } }  -- the core reused it
        H.phase("log", r, "q", 0)
        assert.same({ "u", "u", "u" }, trace)
    end)

    it("does nothing for a route without plugins", function()
        recorder("t-p", 10)
        init({ plugin("t-p", { route = R1 }) }, "t-p")
        assert.is_nil((H.phase("access", request(), "q", 2)))
        assert.same({}, trace)
        assert.equals(0, runloop.route_phases(2))
    end)

    it("rejects an unknown phase", function()
        init({})
        local res, msg = H.phase("content", request(), "q", 0)
        assert.equals("error", res)
        assert.matches("unknown phase", msg)
    end)
end)
