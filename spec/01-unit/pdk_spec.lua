-- Unit: the kong PDK (lua/moongate/pdk/) over the fake FFI API: every
-- function's result, Kong's argument errors, the phase checks, the exit
-- sentinel, waits, and kong.log.serialize's shape.

local H = require "lua_runtime"
local cjson = require "cjson"

local fake = H.fake
local in_phase = H.in_phase
local context = H.context

local function request(o)
    return H.request(o)
end

before_each(function()
    H.setup {
        consumers = {
            { id = "00000000-0000-4000-8000-000000000021",
              username = "alice", custom_id = "a1" },
        },
        trusted_ips = { "10.0.0.0/8", "::1" },
        configuration = { log_level = "debug", prefix = "",
                          pg_password = "hunter2", nested = { a = 1 } },
    }
end)

describe("phase checks", function()
    it("name the current phase and the allowed ones", function()
        local r = request()
        local err = H.error_of(function()
            in_phase("log", r, function() kong.request.get_body() end)
        end)
        assert.matches("function cannot be called in log phase %(only " ..
                       "in: rewrite, access, response%)", err)
        err = H.error_of(function()
            in_phase("access", r, function()
                kong.response.get_status()
            end)
        end)
        assert.matches("function cannot be called in access phase %(only " ..
                       "in: response, header_filter, body_filter, log%)",
                       err)
    end)

    it("point at the plugin's line", function()
        local err = H.error_of(function()
            in_phase("log", request(), function()
                kong.service.request.set_header("a", "b")   -- this line
            end)
        end)
        assert.matches("pdk_spec.lua:%d+: function cannot be called in " ..
                       "log phase", err)
    end)

    it("fail outside any phase", function()
        local err = H.error_of(function() kong.request.get_method() end)
        assert.matches("function cannot be called in init phase", err)
    end)

    it("phases.new ignores phases the core does not have", function()
        local phases = H.phases
        assert.equals(phases.bits.access,
                      phases.new("access", "admin_api", "preread"))
    end)
end)

describe("kong.request", function()
    local r

    before_each(function()
        r = request {
            method = "POST",
            path = "/a//b/./c%7E/../d",
            query = "x=1&y=two&x=3&flag&e=&sp=a+b%20c",
            host = "Example.COM",
            port = 8443,
            scheme = "https",
            http_version = 11,
            client_ip = "10.1.2.3",
            client_port = 5555,
            headers = {
                { "Host", "example.com" },
                { "Content-Type", "application/json" },
                { "X-Multi", "1" },
                { "X-Multi", "2" },
                { "X-Custom-Header", "yes" },
                { "X-Forwarded-Proto", "HTTP" },
                { "X-Forwarded-Host", "front.example:9000, inner" },
                { "X-Forwarded-Port", "9443" },
                { "X-Forwarded-Path", "/front" },
                { "X-Forwarded-Prefix", "/pre" },
            },
            body = '{"a":[1,2],"b":"c"}',
            start_time = 1700000000.5,
        }
    end)

    it("reads the request line", function()
        in_phase("access", r, function()
            local req = kong.request
            assert.equals("POST", req.get_method())
            assert.equals("https", req.get_scheme())
            assert.equals("example.com", req.get_host())
            assert.equals(8443, req.get_port())
            assert.equals("/a//b/./c%7E/../d", req.get_raw_path())
            assert.equals("/a/b/d", req.get_path())
            assert.equals("x=1&y=two&x=3&flag&e=&sp=a+b%20c",
                          req.get_raw_query())
            assert.equals("/a//b/./c%7E/../d?x=1&y=two&x=3&flag&e=&sp=" ..
                          "a+b%20c", req.get_path_with_query())
            assert.equals(1.1, req.get_http_version())
            assert.equals(1700000000500, req.get_start_time())
            assert.equals(fake.request().id, req.get_id())
        end)
    end)

    it("decodes the query", function()
        in_phase("access", r, function()
            local q = kong.request.get_query()
            assert.same({ "1", "3" }, q.x)
            assert.equals("two", q.y)
            assert.is_true(q.flag)
            assert.equals("", q.e)
            assert.equals("a b c", q.sp)
            assert.equals("1", kong.request.get_query_arg("x"))
            assert.is_true(kong.request.get_query_arg("flag"))
            assert.is_nil(kong.request.get_query_arg("nope"))
            local two = kong.request.get_query(2)
            local n = 0
            for _ in pairs(two) do n = n + 1 end
            assert.equals(2, n)
            assert.has_error(function() kong.request.get_query(0) end,
                             "max_args must be >= 1")
            assert.has_error(function() kong.request.get_query(1001) end,
                             "max_args must be <= 1000")
            assert.has_error(function() kong.request.get_query("x") end,
                             "max_args must be a number")
        end)
    end)

    it("reads headers in any case, '_' for '-'", function()
        in_phase("access", r, function()
            local req = kong.request
            assert.equals("application/json", req.get_header("content-type"))
            assert.equals("application/json", req.get_header("CONTENT-TYPE"))
            assert.equals("yes", req.get_header("x_custom_header"))
            assert.equals("1", req.get_header("X-Multi"))
            assert.is_nil(req.get_header("absent"))
            assert.has_error(function() req.get_header(1) end,
                             "header name must be a string")
            local h = req.get_headers()
            assert.same({ "1", "2" }, h["x-multi"])
            assert.equals("yes", h.x_custom_header)
            assert.equals("yes", h["X-Custom-Header"])
            local h2, trunc = req.get_headers(2)
            assert.equals("truncated", trunc)
            assert.equals("example.com", h2.host)
            assert.is_nil(h2["x-custom-header"])
        end)
    end)

    it("sees header changes made through kong.service.request", function()
        in_phase("access", r, function()
            kong.service.request.set_header("X-Custom-Header", "changed")
            kong.service.request.add_header("X-Multi", "3")
            kong.service.request.clear_header("Content-Type")
            kong.service.request.set_header("X-New", "new")
            local req = kong.request
            assert.equals("changed", req.get_header("x-custom-header"))
            assert.is_nil(req.get_header("content-type"))
            assert.equals("new", req.get_header("x-new"))
            local h = req.get_headers()
            assert.same({ "1", "2", "3" }, h["x-multi"])
            assert.equals("changed", h["x-custom-header"])
            assert.is_nil(h["content-type"])
        end)
        local up = fake.upstream_headers(r)
        assert.equals("changed", fake.header(up, "x-custom-header"))
        assert.same({ "1", "2", "3" }, fake.header(up, "x-multi"))
        assert.is_nil(fake.header(up, "content-type"))
    end)

    it("reads each change back, between changes too", function()
        -- the overlay is rebuilt from the core's record after a change
        in_phase("access", r, function()
            local sr, req = kong.service.request, kong.request
            assert.equals("yes", req.get_header("x-custom-header"))
            sr.add_header("X-Multi", "3")
            assert.same({ "1", "2", "3" }, req.get_headers()["x-multi"])
            sr.set_header("X-Multi", "only")     -- a set drops the add
            assert.equals("only", req.get_header("x-multi"))
            assert.equals("only", req.get_headers()["x-multi"])
            sr.clear_header("X-Multi")
            assert.is_nil(req.get_header("x-multi"))
            sr.add_header("X-Multi", "again")    -- after a clear: alone
            assert.same("again", req.get_headers()["x-multi"])
            sr.set_header("X-Empty", "")         -- an empty value is kept
            assert.equals("", req.get_header("x-empty"))
            assert.equals("again", ngx.req.get_headers()["x-multi"])
        end)
        local up = fake.upstream_headers(r)
        assert.equals("again", fake.header(up, "x-multi"))
        assert.equals("", fake.header(up, "x-empty"))
    end)

    it("honours X-Forwarded-* from trusted proxies only", function()
        in_phase("access", r, function()
            local req = kong.request
            assert.equals("http", req.get_forwarded_scheme())
            assert.equals("front.example", req.get_forwarded_host())
            assert.equals(9443, req.get_forwarded_port())
            assert.equals("/front", req.get_forwarded_path())
            assert.equals("/pre", req.get_forwarded_prefix())
        end)
        r.client_ip = "192.0.2.1"
        in_phase("access", r, function()
            local req = kong.request
            assert.equals("https", req.get_forwarded_scheme())
            assert.equals("example.com", req.get_forwarded_host())
            assert.equals(8443, req.get_forwarded_port())
            assert.equals("/a//b/./c%7E/../d", req.get_forwarded_path())
            assert.is_nil(req.get_forwarded_prefix())
        end)
    end)

    it("decodes the body by content type", function()
        in_phase("access", r, function()
            local body, err, mime = kong.request.get_body()
            assert.is_nil(err)
            assert.equals("application/json", mime)
            assert.same({ 1, 2 }, body.a)
            assert.equals("c", body.b)
            assert.equals('{"a":[1,2],"b":"c"}', kong.request.get_raw_body())
        end)
        r = request { body = "a=1&b=2&a=3",
                      headers = { ["Content-Type"] =
                                  "application/x-www-form-urlencoded" } }
        in_phase("rewrite", r, function()
            local body, err, mime = kong.request.get_body()
            assert.is_nil(err)
            assert.equals("application/x-www-form-urlencoded", mime)
            assert.same({ a = { "1", "3" }, b = "2" }, body)
        end)
        local mp = "--XyZ\r\nContent-Disposition: form-data; name=\"f\"" ..
                   "\r\n\r\nval\r\n--XyZ\r\nContent-Disposition: form-data;" ..
                   " name=\"g\"; filename=\"a.txt\"\r\nContent-Type: text/" ..
                   "plain\r\n\r\nfile body\r\n--XyZ--\r\n"
        r = request { body = mp, headers = { ["Content-Type"] =
                      "multipart/form-data; boundary=XyZ" } }
        in_phase("access", r, function()
            local body = kong.request.get_body()
            assert.same({ f = "val", g = "file body" }, body)
        end)
        r = request { body = "{bad", headers = { ["Content-Type"] =
                      "application/json" } }
        in_phase("access", r, function()
            assert.same({ nil, "invalid json body", "application/json" },
                        { kong.request.get_body() })
        end)
        r = request { body = "x" }
        in_phase("access", r, function()
            assert.same({ nil, "missing content type" },
                        { kong.request.get_body() })
            local _, err = kong.request.get_body("text/csv")
            assert.equals("unsupported content type 'text/csv'", err)
            assert.same({ x = true },
                        (kong.request.get_body(
                            "application/x-www-form-urlencoded")))
        end)
    end)

    it("waits for a body the core still reads", function()
        r.body_again = true
        in_phase("access", r, function()
            assert.equals('{"a":[1,2],"b":"c"}', kong.request.get_raw_body())
        end)
        assert.equals(1, H.last_yields)
        assert.equals(1, r.body_waits)
    end)

    it("returns the core's reason when the body is not available",
       function()
        r.body_error = "too large"
        in_phase("access", r, function()
            assert.same({ nil, "too large" },
                        { kong.request.get_raw_body() })
        end)
    end)

    it("reads router captures", function()
        r.captures = { { "", "first" }, { "version", "v2" }, { "2", "x" } }
        in_phase("access", r, function()
            assert.same({ unnamed = { "first", "x" },
                          named = { version = "v2" } },
                        kong.request.get_uri_captures())
        end)
    end)
end)

describe("kong.response", function()
    it("sets, adds and clears headers and reads them back", function()
        local r = request()
        local ctx = {}          -- one request: the state carries over
        in_phase("access", r, function()
            kong.response.set_header("X-A", "1")
            kong.response.add_header("X-A", "2")
            kong.response.set_header("X-Num", 5)
            kong.response.set_headers({ ["X-B"] = { "x", "y" }, ["X-C"] = true })
            kong.response.clear_header("X-Gone")
        end, ctx)
        fake.respond(r, 200, { ["X-Gone"] = "g", ["X-A"] = "upstream" })
        in_phase("header_filter", r, function()
            assert.same({ "1", "2" }, kong.response.get_headers()["x-a"])
            assert.equals("1", kong.response.get_header("x_a"))
            assert.equals("5", kong.response.get_header("X-Num"))
            assert.same({ "x", "y" }, kong.response.get_headers()["x-b"])
            assert.is_nil(kong.response.get_header("X-Gone"))
            assert.equals(200, kong.response.get_status())
            assert.equals("service", kong.response.get_source())
            kong.response.set_status(299)
            assert.equals(299, kong.response.get_status())
        end, ctx)
        local h = fake.response_headers(r)
        assert.same({ "1", "2" }, fake.header(h, "x-a"))
        assert.equals("true", fake.header(h, "x-c"))
        assert.is_nil(fake.header(h, "x-gone"))
    end)

    it("checks its arguments as Kong does", function()
        in_phase("access", request(), function()
            local resp = kong.response
            assert.has_error(function() resp.set_header(nil, "v") end,
                             'invalid header name "nil": got nil, ' ..
                             'expected string')
            assert.has_error(function() resp.set_header("a", {}) end,
                             'invalid header value for "a": got table, ' ..
                             'expected string, number or boolean')
            assert.has_error(function() resp.set_headers({ a = { 1 } }) end,
                             'invalid header value in array "a": got ' ..
                             'number, expected string')
            assert.has_error(function() resp.set_status(99) end,
                             "code must be a number between 100 and 599")
            assert.has_error(function() resp.exit("200") end,
                             "code must be a number")
            assert.has_error(function() resp.exit(200, 5) end,
                             "body must be a nil, string or table")
            assert.has_error(function() resp.exit(200, nil, "h") end,
                             "headers must be a nil or table")
            assert.has_error(function() resp.error(302) end,
                             "code must be a number between 400 and 599")
        end)
    end)

    it("raises the core's refusal (CR/LF in a header)", function()
        in_phase("access", request(), function()
            assert.has_error(function()
                kong.response.set_header("X-A", "a\r\nInjected: 1")
            end, "invalid header name or value (CR/LF)")
        end)
    end)

    it("exit: table as JSON, string as is, and the exit sentinel", function()
        local r = request()
        local err = H.error_of(function()
            in_phase("access", r, function()
                kong.response.exit(404, { message = "nope" },
                                   { ["X-A"] = "1" })
            end)
        end)
        assert.equals(context.EXIT, err)
        assert.equals(404, r.exit.status)
        assert.same({ message = "nope" }, cjson.decode(r.exit.body))
        local h = fake.response_headers(r)
        assert.equals("application/json; charset=utf-8",
                      fake.header(h, "content-type"))
        assert.equals("1", fake.header(h, "x-a"))

        r = request()
        H.error_of(function()
            in_phase("rewrite", r, function()
                kong.response.exit(200, "plain",
                                   { ["Content-Type"] = "text/plain" })
            end)
        end)
        assert.equals("plain", r.exit.body)
        assert.equals("text/plain",
                      fake.header(fake.response_headers(r), "content-type"))

        r = request()
        H.error_of(function()
            in_phase("access", r, function() kong.response.exit(204) end)
        end)
        assert.equals(204, r.exit.status)
        assert.is_nil(r.exit.body)
    end)

    it("exit after the upstream answered raises the core's reason",
       function()
        local r = request()
        fake.respond(r, 200, {})
        local err = H.error_of(function()
            in_phase("header_filter", r, function()
                kong.response.exit(500)
            end)
        end)
        assert.matches("exit is only possible before a response", err)
    end)

    it("error: Kong's default messages, negotiated format", function()
        local r = request()
        H.error_of(function()
            in_phase("access", r, function() kong.response.error(404) end)
        end)
        assert.equals(404, r.exit.status)
        assert.same({ message = "Not found" }, cjson.decode(r.exit.body))
        assert.equals("application/json; charset=utf-8",
                      fake.header(fake.response_headers(r), "content-type"))

        r = request { headers = { Accept = "text/html;q=0.9, text/plain" } }
        H.error_of(function()
            in_phase("access", r, function()
                kong.response.error(429, "slow down")
            end)
        end)
        assert.equals("slow down\n", r.exit.body)
        assert.equals("text/plain; charset=utf-8",
                      fake.header(fake.response_headers(r), "content-type"))

        r = request { headers = { Accept = "text/html" } }
        H.error_of(function()
            in_phase("access", r, function()
                kong.response.error(403, "<no>")
            end)
        end)
        assert.matches("<p>&lt;no&gt;.</p>", r.exit.body, 1, true)
    end)

    it("get_raw_body / set_raw_body in body_filter", function()
        local r = request()
        local ctx = {}
        ctx.chunk, ctx.eof = "ab", false
        in_phase("body_filter", r, function()
            assert.is_nil(kong.response.get_raw_body())
        end, ctx)
        assert.equals("", ctx.chunk)
        ctx.chunk, ctx.eof = "cd", true
        in_phase("body_filter", r, function()
            assert.equals("abcd", kong.response.get_raw_body())
            kong.response.set_raw_body("new")
        end, ctx)
        assert.equals("new", ctx.chunk)
    end)
end)

describe("kong.service", function()
    it("changes the upstream request", function()
        local r = request { headers = { ["Content-Type"] = "application/json" } }
        in_phase("access", r, function()
            local sr = kong.service.request
            sr.set_path("/new")
            sr.set_raw_query("a=1")
            sr.set_method("PUT")
            sr.set_query({ b = { "2", "3" }, a = true, c = "x y" })
            kong.service.set_target("backend.test", 8080)
            assert.is_true(sr.set_body({ k = "v" }))
            sr.set_headers({ ["X-H"] = { "1", "2" }, ["X-I"] = 3 })
            assert.equals('{"k":"v"}', kong.request.get_raw_body())
            -- Kong: the query reads back changed, the request line does not
            assert.equals("a&b=2&b=3&c=x%20y", kong.request.get_raw_query())
            assert.equals("/", kong.request.get_path_with_query())
        end)
        assert.equals("/new", r.upstream.path)
        assert.equals("a&b=2&b=3&c=x%20y", r.upstream.query)
        assert.equals("PUT", r.upstream.method)
        assert.same({ host = "backend.test", port = 8080 }, r.upstream.target)
        assert.equals('{"k":"v"}', r.upstream.body)
        local up = fake.upstream_headers(r)
        assert.same({ "1", "2" }, fake.header(up, "x-h"))
        assert.equals("3", fake.header(up, "x-i"))
    end)

    it("encodes set_body by content type", function()
        local r = request()
        in_phase("access", r, function()
            local sr = kong.service.request
            assert.same({ nil, "content type was neither explicitly given " ..
                          "as an argument or received as a header" },
                        { sr.set_body({ a = 1 }) })
            assert.is_true(sr.set_body({ b = "2", a = "1" },
                                       "application/x-www-form-urlencoded"))
        end)
        assert.equals("a=1&b=2", r.upstream.body)
        assert.equals("application/x-www-form-urlencoded",
                      fake.header(fake.upstream_headers(r), "content-type"))
    end)

    it("checks its arguments", function()
        in_phase("access", request(), function()
            local sr = kong.service.request
            assert.has_error(function() sr.set_path("x") end,
                             "path must start with /")
            assert.has_error(function() sr.set_method("FETCH") end,
                             "invalid method: FETCH")
            assert.has_error(function() sr.set_query("a=1") end,
                             "query must be a table")
            assert.has_error(function()
                kong.service.set_target("h", 70000)
            end, "port must be an integer between 0 and 65535: given 70000")
        end)
    end)

    it("refuses changes once the request went upstream", function()
        local r = request()
        r.upstream_sent = true
        local err = H.error_of(function()
            in_phase("access", r, function()
                kong.service.request.set_path("/x")
            end)
        end)
        assert.matches("the upstream request was already sent", err)
    end)

    it("reads the upstream's response", function()
        local r = request()
        in_phase("access", r, function()
            kong.response.set_header("X-Plugin", "p")
        end)
        fake.respond(r, 201, { ["X-Up"] = "u" })
        in_phase("header_filter", r, function()
            local sresp = kong.service.response
            assert.equals(201, sresp.get_status())
            assert.equals("u", sresp.get_header("x-up"))
            assert.is_nil(sresp.get_header("x-plugin"))
            assert.equals("u", sresp.get_headers()["x-up"])
        end)
        local r2 = request()
        H.error_of(function()
            in_phase("access", r2, function() kong.response.exit(403) end)
        end)
        in_phase("log", r2, function()
            assert.is_nil(kong.service.response.get_status())
            assert.equals(403, kong.response.get_status())
            assert.equals("exit", kong.response.get_source())
        end)
    end)
end)

describe("kong.client", function()
    it("reads the peer and, from trusted proxies, the real IP", function()
        local r = request { client_ip = "10.0.0.5", client_port = 1234,
                            headers = { ["X-Real-IP"] = "203.0.113.9" } }
        in_phase("access", r, function()
            assert.equals("10.0.0.5", kong.client.get_ip())
            assert.equals("203.0.113.9", kong.client.get_forwarded_ip())
            assert.equals(1234, kong.client.get_port())
            assert.equals("http", kong.client.get_protocol())
        end)
        r.client_ip = "198.51.100.1"
        in_phase("access", r, function()
            assert.equals("198.51.100.1", kong.client.get_forwarded_ip())
        end)
    end)

    it("authenticates and loads consumers", function()
        in_phase("access", request(), function(ctx)
            local c = kong.client.load_consumer("alice", true)
            assert.equals("a1", c.custom_id)
            assert.is_nil(kong.client.load_consumer("alice"))
            assert.equals(c, kong.client.load_consumer(c.id))
            kong.client.authenticate(c, { id = "cred" })
            assert.equals(c, kong.client.get_consumer())
            assert.equals("cred", kong.client.get_credential().id)
            assert.equals(c, ngx.ctx.authenticated_consumer)
            assert.equals(c, ctx.ngx_ctx.authenticated_consumer)
            assert.has_error(function() kong.client.authenticate() end,
                             "either credential or consumer must be provided")
            assert.has_error(function() kong.client.load_consumer(1) end,
                             "consumer_id must be a string")
        end)
    end)
end)

describe("kong.ctx", function()
    it("fails clearly outside requests", function()
        assert.has_error(function() return kong.ctx.shared end)
        assert.has_error(function() kong.ctx.shared = {} end)
    end)
end)

describe("kong.log", function()
    it("logs with the plugin's name at each level", function()
        in_phase("access", request(), function()
            kong.log.err("bad ", "thing ", 42)
            kong.log.debug("dbg")
            kong.log.inspect({ a = 1 }, "s")
        end, { plugin_name = "my-plugin" })
        local l = fake.logged("bad thing 42")[1]
        assert.equals(4, l.level)
        assert.matches("^%[kong%] pdk_spec.lua:%d+ %[my%-plugin%] bad " ..
                       "thing 42$", l.msg)
        assert.equals(0, fake.logged("dbg")[1].level)
        assert.matches('{\n  a = 1\n} "s"', fake.logs[3].msg, 1, true)
    end)

    it("drops lines below log_level", function()
        H.setup { configuration = { log_level = "warn" } }
        in_phase("access", request(), function()
            kong.log.info("quiet")
            kong.log.warn("loud")
            ngx.log(ngx.INFO, "quiet too")
            ngx.log(ngx.ERR, "loud too")
        end)
        assert.equals(0, #fake.logged("quiet"))
        assert.equals(2, #fake.logged("loud"))
        assert.matches("^%[lua%] pdk_spec.lua:%d+: ",
                       fake.logged("loud too")[1].msg)
    end)

    it("serializes with Kong's shape", function()
        local r = request {
            method = "GET", path = "/p", query = "a=1", host = "h.test",
            port = 8000, client_ip = "192.0.2.7", start_time = fake.clock - 2,
            headers = { { "Host", "h.test" }, { "Authorization", "secret" } },
        }
        local ctx = { route = { id = "r", name = "route" },
                      service = { id = "s", name = "svc" },
                      times = { access_end = fake.clock - 1.5,
                                header_filter = fake.clock - 0.5 } }
        in_phase("access", r, function()
            kong.client.authenticate({ id = "c1", username = "u" },
                                     { id = "k1", consumer = { id = "c1" } })
            kong.log.set_serialize_value("extra.deep", "v")
            kong.log.set_serialize_value("route.name", "renamed",
                                         { mode = "replace" })
            kong.log.set_serialize_value("client_ip", "x", { mode = "add" })
        end, ctx)
        fake.respond(r, 200, { ["Content-Length"] = "12" })
        local s = in_phase("log", r, function()
            return kong.log.serialize()
        end, ctx)
        assert.equals("GET", s.request.method)
        assert.equals("/p?a=1", s.request.uri)
        assert.equals("http://h.test:8000/p?a=1", s.request.url)
        assert.same({ a = "1" }, s.request.querystring)
        assert.equals("REDACTED", s.request.headers.authorization)
        assert.is_nil(getmetatable(s.request.headers))
        assert.is_number(s.request.size)
        assert.equals(200, s.response.status)
        assert.equals(12, s.response.size)
        assert.equals("12", s.response.headers["content-length"])
        assert.equals(2000, s.latencies.request)
        assert.equals(500, s.latencies.kong)
        assert.equals(1000, s.latencies.proxy)
        assert.equals("192.0.2.7", s.client_ip)
        assert.equals((fake.clock - 2) * 1000, s.started_at)
        assert.equals("renamed", s.route.name)
        assert.equals("svc", s.service.name)
        assert.equals("c1", s.consumer.id)
        assert.same({ id = "k1", consumer_id = "c1" }, s.authenticated_entity)
        assert.equals("/p?a=1", s.upstream_uri)
        assert.equals("service", s.source)
        assert.equals("v", s.extra.deep)
        assert.equals("200", s.upstream_status)
        assert.is_string(cjson.encode(s))
    end)
end)

describe("kong.node, kong.table, kong.ip, kong.configuration", function()
    it("node id is a stable UUID kept under the prefix", function()
        local id = kong.node.get_id()
        assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", id)
        assert.equals(id, kong.node.get_id())
        assert.is_string(kong.node.get_hostname())

        local dir = os.tmpname()
        os.remove(dir)
        assert(os.execute("mkdir -p " .. dir) == 0 or true)
        package.loaded["moongate.pdk.node"] = nil
        local node = require "moongate.pdk.node"
        local a = node.init(dir)
        package.loaded["moongate.pdk.node"] = nil
        local node2 = require "moongate.pdk.node"
        assert.equals(a, node2.init(dir))
        os.execute("rm -rf " .. dir)
    end)

    it("table helpers", function()
        local t = kong.table.new(4, 4)
        t[1], t.a = 1, 2
        kong.table.clear(t)
        assert.is_nil(next(t))
        assert.same({ a = 1, b = 3 },
                    kong.table.merge({ a = 1, b = 2 }, { b = 3 }))
    end)

    it("is_trusted matches addresses and CIDR blocks", function()
        assert.is_true(kong.ip.is_trusted("10.200.3.4"))
        assert.is_false(kong.ip.is_trusted("11.0.0.1"))
        assert.is_true(kong.ip.is_trusted("::1"))
        assert.is_true(kong.ip.is_trusted("0:0:0:0:0:0:0:1"))
        assert.is_false(kong.ip.is_trusted("::2"))
        assert.is_false(kong.ip.is_trusted("not an ip"))
        local ip = require "moongate.pdk.ip"
        assert.is_true(ip.configure { "2001:db8::/32", "192.168.1.0/24" })
        assert.is_true(ip.is_trusted("2001:db8:1::5"))
        assert.is_false(ip.is_trusted("2001:db9::5"))
        assert.is_true(ip.is_trusted("192.168.1.255"))
        assert.is_false(ip.is_trusted("192.168.2.1"))
        local ok, err = ip.configure { "10.0.0.0/33" }
        assert.is_nil(ok)
        assert.matches("10.0.0.0/33", err)
    end)

    it("configuration is read-only with secrets masked", function()
        local c = kong.configuration
        assert.equals("debug", c.log_level)
        assert.equals("******", c.pg_password)
        assert.equals(1, c.nested.a)
        assert.has_error(function() c.log_level = "x" end,
                         "cannot write to configuration")
        assert.has_error(function() c.nested.a = 2 end,
                         "cannot write to configuration")
    end)
end)

describe("kong.cache", function()
    it("calls the loader once, then hits", function()
        local calls = 0
        local function load(a, b)
            calls = calls + 1
            return { v = a + b }
        end
        local v, err, hit = kong.cache:get("k", nil, load, 1, 2)
        assert.same({ { v = 3 }, nil, 3 }, { v, err, hit })
        v, err, hit = kong.cache:get("k", nil, load, 1, 2)
        assert.same({ { v = 3 }, nil, 1 }, { v, err, hit })
        assert.equals(1, calls)
    end)

    it("caches misses (negative caching) and honours ttls", function()
        local calls = 0
        local function none() calls = calls + 1 return nil end
        assert.same({ nil, nil, 3 },
                    { kong.cache:get("n", { neg_ttl = 10 }, none) })
        assert.same({ nil, nil, 1 },
                    { kong.cache:get("n", { neg_ttl = 10 }, none) })
        assert.equals(1, calls)
        fake.clock = fake.clock + 11
        kong.cache:get("n", { neg_ttl = 10 }, none)
        assert.equals(2, calls)

        kong.cache:get("t", { ttl = 5 }, function() return "x" end)
        local ttl, _, value = kong.cache:probe("t")
        assert.equals(5, ttl)
        assert.equals("x", value)
        fake.clock = fake.clock + 6
        assert.is_nil(kong.cache:probe("t"))
    end)

    it("does not cache errors; invalidate drops an entry", function()
        local v, err = kong.cache:get("e", nil, function()
            return nil, "db down"
        end)
        assert.is_nil(v)
        assert.equals("db down", err)
        v, err = kong.cache:get("e", nil, function() error("kaboom") end)
        assert.is_nil(v)
        assert.matches("callback threw an error: .*kaboom", err)
        assert.equals("ok", (kong.cache:get("e", nil, function()
            return "ok"
        end)))
        kong.cache:invalidate("e")
        assert.is_nil(kong.cache:probe("e"))
        assert.has_error(function() kong.cache:get(1) end,
                         "key must be a string")
    end)

    it("evicts the oldest entries beyond max_items", function()
        local cache = require("moongate.pdk.cache").new { max_items = 3 }
        for i = 1, 5 do
            cache:get("k" .. i, nil, function() return i end)
        end
        assert.is_nil(cache:probe("k1"))
        assert.is_nil(cache:probe("k2"))
        assert.equals(5, select(3, cache:probe("k5")))
    end)
end)

describe("kong.vault", function()
    it("resolves env references", function()
        local home = assert(os.getenv("HOME"))
        assert.is_true(kong.vault.is_reference("{vault://env/home}"))
        assert.is_false(kong.vault.is_reference("home"))
        assert.equals(home, kong.vault.get("{vault://env/home}"))
        local v, err = kong.vault.get("{vault://aws/x}")
        assert.is_nil(v)
        assert.matches("only the env vault", err)
    end)
end)
