-- Unit: the ngx subset (moongate.ngx) over the fake FFI API: codecs and
-- digests against known vectors, time, ngx.var / ngx.header / ngx.req /
-- ngx.ctx / ngx.status bound to the running request, and the clear errors
-- of what this build lacks.

local H = require "lua_runtime"

local fake = H.fake
local in_phase = H.in_phase

local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

before_each(function()
    H.setup { trusted_ips = {} }
end)

describe("ngx codecs", function()
    it("base64", function()
        local cases = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v",
                        foob = "Zm9vYg==", fooba = "Zm9vYmE=",
                        foobar = "Zm9vYmFy", ["\0\255"] = "AP8=" }
        for plain, enc in pairs(cases) do
            assert.equals(enc, ngx.encode_base64(plain))
            assert.equals(plain, ngx.decode_base64(enc))
        end
        assert.equals("Zm8", ngx.encode_base64("fo", true))
        assert.equals("fo", ngx.decode_base64("Zm8"))
        assert.is_nil(ngx.decode_base64("Zm9v!"))
        assert.is_nil(ngx.decode_base64("Z"))
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        assert.equals(all, ngx.decode_base64(ngx.encode_base64(all)))
    end)

    it("URI escaping", function()
        assert.equals("a%20b%26c%3Dd%2F%C3%A9~-._",
                      ngx.escape_uri("a b&c=d/é~-._"))
        assert.equals("/a%20b/c?", ngx.escape_uri("/a b/c?", 0):gsub("%%3F",
                                                                     "?"))
        assert.equals("b r56 7", ngx.unescape_uri("b%20r56+7"))
        assert.equals("100%", ngx.unescape_uri("100%"))
        assert.equals("%zz", ngx.unescape_uri("%zz"))
    end)

    it("args", function()
        assert.equals("a&b=1&b=2&d=x%20y",
                      ngx.encode_args { b = { 1, 2 }, a = true, c = false,
                                        d = "x y" })
        assert.same({ a = { "1", "2" }, b = true, c = "", [" x"] = "y z" },
                    ngx.decode_args("a=1&b&c=&a=2&%20x=y+z&&=q"))
        local t, err = ngx.decode_args("a&b&c", 2)
        assert.equals("truncated", err)
        assert.is_true(t.a and t.b)
        assert.has_error(function() ngx.encode_args("x") end)
    end)

    it("digests (RFC 1321, FIPS 180-1, RFC 2202 vectors)", function()
        assert.equals("d41d8cd98f00b204e9800998ecf8427e", ngx.md5(""))
        assert.equals("900150983cd24fb0d6963f7d28e17f72", ngx.md5("abc"))
        assert.equals("57edf4a22be3c955ac49da2e2107b67a", ngx.md5(
            "12345678901234567890123456789012345678901234567890123456789" ..
            "012345678901234567890"))
        assert.equals("900150983cd24fb0d6963f7d28e17f72",
                      hex(ngx.md5_bin("abc")))
        assert.equals("a9993e364706816aba3e25717850c26c9cd0d89d",
                      hex(ngx.sha1_bin("abc")))
        assert.equals("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
                      hex(ngx.sha1_bin("abcdbcdecdefdefgefghfghighijhijkij" ..
                                       "kljklmklmnlmnomnopnopq")))
        assert.equals("b617318655057264e28bc0b6fb378c8ef146be00",
                      hex(ngx.hmac_sha1(string.rep("\11", 20), "Hi There")))
        assert.equals("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
                      hex(ngx.hmac_sha1("Jefe",
                                        "what do ya want for nothing?")))
        assert.equals("aa4ae5e15272d00e95705637ce8a3b55ed402112",
                      hex(ngx.hmac_sha1(string.rep("\170", 80),
                          "Test Using Larger Than Block-Size Key - Hash " ..
                          "Key First")))
    end)

    it("null and constants", function()
        assert.equals(require("cjson").null, ngx.null)
        assert.equals(200, ngx.HTTP_OK)
        assert.equals(404, ngx.HTTP_NOT_FOUND)
        assert.equals(2, ngx.HTTP_GET)
        assert.equals(4, ngx.ERR)
        assert.equals(8, ngx.DEBUG)
        assert.equals(0, ngx.OK)
    end)
end)

describe("ngx time", function()
    it("now, time, update_time from the core's clock", function()
        assert.equals(fake.clock, ngx.now())
        assert.equals(math.floor(fake.clock), ngx.time())
        ngx.update_time()
    end)

    it("HTTP dates", function()
        assert.equals("Thu, 18 Nov 2010 11:27:35 GMT",
                      ngx.http_time(1290079655))
        assert.equals("Thu, 18-Nov-2010 11:27:35 GMT",
                      ngx.cookie_time(1290079655))
        assert.equals(1290079655,
                      ngx.parse_http_time("Thu, 18 Nov 2010 11:27:35 GMT"))
        assert.equals(1290079655,
                      ngx.parse_http_time("Thursday, 18-Nov-10 11:27:35 GMT"))
        assert.equals(1290079655,
                      ngx.parse_http_time("Thu Nov 18 11:27:35 2010"))
        assert.is_nil(ngx.parse_http_time("yesterday"))
        assert.matches("^%d%d%d%d%-%d%d%-%d%d$", ngx.today())
        assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d$",
                       ngx.utctime())
    end)

    it("sleep yields in a request and fails outside one", function()
        local r = H.request()
        in_phase("access", r, function()
            assert.equals(1, ngx.sleep(0.25))
        end)
        assert.equals(1, H.last_yields)
        assert.same({ 0.25 }, r.sleeps)
        assert.has_error(function() ngx.sleep(1) end,
                         "API disabled in the context of init")
        r = H.request()
        r.no_wait = true
        local err = H.error_of(function()
            in_phase("header_filter", r, function() ngx.sleep(1) end)
        end)
        assert.matches("ngx.sleep can only wait in rewrite and access", err)
    end)
end)

describe("ngx request bindings", function()
    local r

    before_each(function()
        r = H.request {
            method = "GET", path = "/a%20b//c", query = "x=1&y=%41",
            host = "h.test", port = 8000, scheme = "http",
            client_ip = "192.0.2.1", client_port = 4321,
            headers = { { "Host", "h.test:8000" }, { "User-Agent", "t" },
                        { "X-Dup", "1" }, { "X-Dup", "2" },
                        { "Cookie", "a=1; session=abc" },
                        { "Content-Type", "application/x-www-form-urlencoded" } },
            body = "p=1&q=2&p=3",
        }
    end)

    it("ngx.var", function()
        in_phase("access", r, function()
            local var = ngx.var
            assert.equals("/a%20b//c?x=1&y=%41", var.request_uri)
            assert.equals("/a b/c", var.uri)
            assert.equals("x=1&y=%41", var.args)
            assert.equals("?", var.is_args)
            assert.equals("h.test", var.host)
            assert.equals("h.test:8000", var.http_host)
            assert.equals("t", var.http_user_agent)
            assert.equals("1, 2", var.http_x_dup)
            assert.equals("%41", var.arg_y)
            assert.equals("abc", var.cookie_session)
            assert.equals("192.0.2.1", var.remote_addr)
            assert.equals("4321", var.remote_port)
            assert.equals("8000", var.server_port)
            assert.equals("GET", var.request_method)
            assert.equals("http", var.scheme)
            assert.equals("", var.https)
            assert.equals("HTTP/1.1", var.server_protocol)
            assert.is_nil(var.no_such_variable)
            var.my_custom = "v"
            assert.equals("v", var.my_custom)
            assert.has_error(function() var.host = "x" end,
                             'variable "host" not changeable')
            var.upstream_uri = "/up?z=9"
            assert.equals("/up?z=9", var.upstream_uri)
        end)
        assert.equals("/up", r.upstream.path)
        assert.equals("z=9", r.upstream.query)
        assert.is_nil(ngx.var.host)       -- no request
    end)

    it("ngx.req", function()
        in_phase("access", r, function()
            local req = ngx.req
            assert.equals("GET", req.get_method())
            req.set_method(ngx.HTTP_POST)
            assert.equals("POST", req.get_method())
            assert.equals(1.1, req.http_version())
            assert.equals(r.start_time, req.start_time())
            assert.same({ "1", "2" }, req.get_headers()["x-dup"])
            assert.equals("t", req.get_headers(nil, true)["User-Agent"])
            req.set_header("X_New", "n")
            assert.equals("n", req.get_headers()["x-new"])
            assert.equals("n", kong.request.get_header("x-new"))
            req.clear_header("User-Agent")
            assert.is_nil(req.get_headers()["user-agent"])
            assert.same({ x = "1", y = "A" }, req.get_uri_args())
            req.set_uri_args({ k = "v" })
            assert.equals("k=v", ngx.var.args)
            req.read_body()
            assert.equals("p=1&q=2&p=3", req.get_body_data())
            assert.same({ p = { "1", "3" }, q = "2" }, req.get_post_args())
            req.set_body_data("new")
            assert.equals("new", req.get_body_data())
            assert.is_nil(req.get_body_file())
            req.set_uri("/other")
            -- the client's request line, not the changed query
            assert.matches("^GET /a%%20b//c%?x=1&y=%%41 HTTP/1.1\r\nHost: ",
                           req.raw_header())
            assert.equals("/a%20b//c?x=1&y=%41", ngx.var.request_uri)
        end)
        assert.equals("POST", r.upstream.method)
        assert.equals("new", r.upstream.body)
        assert.equals("/other", r.upstream.path)
        local up = fake.upstream_headers(r)
        assert.equals("n", fake.header(up, "X-New"))
        assert.is_nil(fake.header(up, "User-Agent"))
    end)

    it("ngx.header, ngx.status and ngx.resp", function()
        local ctx = {}
        in_phase("access", r, function()
            ngx.header["X_Resp"] = "a"
            ngx.header["X-Multi"] = { "1", "2" }
            ngx.header["X-Num"] = 3
            assert.equals("a", ngx.header["x-resp"])
            assert.same({ "1", "2" }, ngx.header["X-Multi"])
            ngx.header["X-Resp"] = nil
            assert.is_nil(ngx.header["X-Resp"])
        end, ctx)
        fake.respond(r, 200, { ["X-Up"] = "u" })
        in_phase("header_filter", r, function()
            assert.equals(200, ngx.status)
            ngx.status = 203
            assert.equals(203, ngx.status)
            assert.equals("u", ngx.header["x-up"])
            assert.equals("3", ngx.resp.get_headers()["x-num"])
        end, ctx)
        local h = fake.response_headers(r)
        assert.equals("3", fake.header(h, "x-num"))
        assert.same({ "1", "2" }, fake.header(h, "x-multi"))
        assert.is_nil(fake.header(h, "x-resp"))
    end)

    it("ngx.ctx is per request, a plain table outside", function()
        local ctx = {}
        in_phase("access", r, function()
            ngx.ctx.a = 1
        end, ctx)
        in_phase("log", r, function()
            assert.equals(1, ngx.ctx.a)
            ngx.ctx = { b = 2 }
        end, ctx)
        assert.equals(2, ctx.ngx_ctx.b)
        in_phase("access", H.request(), function()
            assert.is_nil(ngx.ctx.a)
        end)
        ngx.ctx.outside = true
        assert.is_true(ngx.ctx.outside)
    end)

    it("ngx.get_phase, worker, config", function()
        assert.equals("init", ngx.get_phase())
        in_phase("header_filter", r, function()
            assert.equals("header_filter", ngx.get_phase())
        end)
        assert.equals(0, ngx.worker.id())
        assert.equals(1, ngx.worker.count())
        assert.equals(fake.worker.pid, ngx.worker.pid())
        assert.equals("http", ngx.config.subsystem)
        assert.is_string(ngx.config.prefix())
    end)

    it("names what this build lacks", function()
        assert.has_error(function() return ngx.socket.udp end,
                         "ngx.socket.udp is not available in this " ..
                         "Moongate build")
        assert.is_function(ngx.socket.tcp)     -- moongate.socket
        -- ngx.shared is there (moongate.shdict); undeclared names are nil
        assert.is_nil(ngx.shared.cache)
        if not pcall(require, "ffi") then
            -- ngx.re is moongate.re, which needs the LuaJIT FFI
            assert.has_error(function() return ngx.re.match end)
        end
    end)

    it("queues ngx.timer callbacks with the core and runs them by id", function()
        local context = require "moongate.context"
        local runloop = require "moongate.runloop"
        local fake = require "moongate.ffi_fake"
        local n0 = #fake.timers
        local got = {}
        assert.is_true(ngx.timer.at(0.5, function(premature, a, b)
            got[#got + 1] = { premature, a, b }
        end, "x", nil))
        assert.is_true(ngx.timer.every(2, function() got.every = true end))
        assert.equals(n0 + 2, #fake.timers)
        local at, ev = fake.timers[n0 + 1], fake.timers[n0 + 2]
        assert.equals(0.5, at.delay)
        assert.equals(0, at.every)
        assert.equals(2, ev.every)
        -- the core fires them: run_timer(id, premature, handle)
        runloop.run_timer(at.id, false, {})
        assert.same({ false, "x", nil }, got[1])
        assert.is_nil(context.timers[at.id])           -- one-shot: gone
        runloop.run_timer(ev.id, false, {})
        assert.is_true(got.every)
        assert.is_table(context.timers[ev.id])          -- every: kept
        runloop.run_timer(ev.id, true, {})              -- premature ends it
        assert.is_nil(context.timers[ev.id])
        assert.has_error(function() ngx.timer.at(-1, function() end) end)
        assert.has_error(function() ngx.timer.at(1, "nope") end)
        assert.has_error(function() ngx.timer.every(0, function() end) end)
    end)
end)
