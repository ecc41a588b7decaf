-- Unit: moongate.socket (ngx.socket.tcp) and resty.http over the fake FFI
-- (moongate.socket_fake: a scripted peer, no event loop): receive
-- patterns, receiveuntil, phase checks, keep-alive pools, and the HTTP
-- client's framing (Content-Length, chunked, until close, HEAD/204/304),
-- headers, parse_uri and request_uri.

local H = require "lua_runtime"

local fake = H.fake
local in_phase = H.in_phase

-- a peer answering every request (one send = one request) with `reply`
local function serve(reply, chunk)
    fake.socket_server = function(c)
        c.on_send = function(conn, data)
            if data:find("\r\n\r\n", 1, true) or not data:find("^%u+ ") then
                local r = type(reply) == "function" and reply(conn, data)
                          or reply
                if r then
                    if chunk then
                        for i = 1, #r, chunk do
                            conn.replies[#conn.replies + 1] = r:sub(i, i + chunk - 1)
                        end
                    else
                        conn.replies[#conn.replies + 1] = r
                    end
                end
            end
        end
        return true
    end
end

before_each(function()
    H.setup {}
    fake.socket_reset()
end)

describe("ngx.socket.tcp", function()
    it("is disabled in header_filter, body_filter and log", function()
        for _, phase in ipairs { "header_filter", "body_filter", "log" } do
            local err = H.error_of(function()
                in_phase(phase, H.request {}, function()
                    return ngx.socket.tcp()
                end)
            end)
            assert.matches("API disabled in the context of " .. phase,
                           tostring(err), 1, true)
        end
    end)

    it("receives lines, sizes, everything, and until a pattern", function()
        fake.socket_server = function(c)
            c.replies = { "line one\r\nline", " two\nabc", "defXYZ--BOUND",
                          "ARY--tail", "--BOUNDARY--rest" }
            return true
        end
        in_phase("access", H.request {}, function()
            local s = ngx.socket.tcp()
            assert.equals(1, s:connect("127.0.0.1", 80))
            assert.equals(0, s:getreusedtimes())
            assert.equals("line one", s:receive())
            assert.equals("line two", s:receive("*l"))
            assert.equals("abcd", s:receive(4))
            local it = s:receiveuntil("--BOUNDARY")
            assert.equals("efXYZ", it())
            local it2 = s:receiveuntil("--BOUNDARY--", { inclusive = true })
            assert.equals("--tail--BOUNDARY--", it2())
            assert.equals("rest", s:receive("*a"))
            local d, err = s:receive()
            assert.is_nil(d)
            assert.equals("closed", err)
            assert.equals(1, s:close())
            assert.same({ nil, "closed" }, { s:send("x") })
        end)
    end)

    it("receiveuntil with a size gives pieces, then nil at the boundary", function()
        fake.socket_server = function(c)
            c.replies = { "0123456789--B", "after" }
            return true
        end
        in_phase("access", H.request {}, function()
            local s = ngx.socket.tcp()
            assert(s:connect("127.0.0.1", 80))
            local it = s:receiveuntil("--B")
            local parts = {}
            while true do
                local d, err = it(4)
                assert.is_nil(err)
                if not d then break end
                parts[#parts + 1] = d
            end
            assert.equals("0123456789", table.concat(parts))
            assert.equals("after", s:receiveany(100))
        end)
    end)

    it("sends nested tables and pools connections by key", function()
        fake.socket_server = function() return true end
        in_phase("access", H.request {}, function()
            local s = ngx.socket.tcp()
            assert(s:connect("example.com", 6379, { pool = "redis" }))
            assert.equals(11, s:send({ "a", { "b", 1 }, true, "cdef" }))
            assert.equals("ab1truecdef", fake.socket_conns[1].sent[1])
            assert.equals(1, s:setkeepalive(1000, 5))
            assert.same({ nil, "closed" }, { s:getreusedtimes() })
            local s2 = ngx.socket.tcp()
            assert(s2:connect("example.com", 6379, { pool = "redis" }))
            assert.equals(1, s2:getreusedtimes())
            assert.equals(1, #fake.socket_conns)
        end)
    end)

    it("passes connect errors on", function()
        fake.socket_server = function() return nil, "connection refused" end
        in_phase("access", H.request {}, function()
            local s = ngx.socket.tcp()
            assert.same({ nil, "connection refused" },
                        { s:connect("127.0.0.1", 1) })
            assert.same({ nil, "bad port number: 0" },
                        { s:connect("127.0.0.1", 0) })
        end)
    end)
end)

describe("resty.http", function()
    local http = require "resty.http"

    it("parses URIs like lua-resty-http", function()
        local c = http.new
        assert.same({ "http", "example.com", 80, "/", nil },
                    http:parse_uri("http://example.com"))
        assert.same({ "https", "a.b", 8443, "/p/q?x=1", nil },
                    http:parse_uri("https://user@a.b:8443/p/q?x=1#frag"))
        assert.same({ "http", "[::1]", 80, "/x", "y=2" },
                    http:parse_uri("http://[::1]/x?y=2", false))
        assert.is_nil(http:parse_uri("ftp://x/"))
        assert.is_function(c)
    end)

    it("requests with Content-Length and reads the head and body", function()
        serve("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" ..
              "Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n" ..
              "Content-Length: 11\r\n\r\nhello world", 3)
        in_phase("access", H.request {}, function()
            local httpc = http.new()
            assert(httpc:connect { host = "127.0.0.1", port = 8080 })
            local res = assert(httpc:request { method = "POST", path = "/x",
                query = { a = "b c" }, body = "payload",
                headers = { ["X-One"] = "1" } })
            assert.equals(200, res.status)
            assert.equals("OK", res.reason)
            assert.equals("text/plain", res.headers["content-type"])
            assert.equals("text/plain", res.headers["CONTENT-TYPE"])
            assert.same({ "a=1", "b=2" }, res.headers["set-cookie"])
            assert.is_true(res.has_body)
            assert.equals("hello world", res:read_body())
            assert.equals(1, httpc:set_keepalive())
            local sent = fake.socket_conns[1].sent[1]
            assert.matches("^POST /x%?a=b%%20c HTTP/1%.1\r\n", sent)
            assert.matches("\r\nHost: 127.0.0.1:8080\r\n", sent, 1, false)
            assert.matches("\r\nContent%-Length: 7\r\n", sent)
            assert.matches("\r\nX%-One: 1\r\n", sent)
            assert.matches("\r\n\r\npayload$", sent)
        end)
    end)

    it("reads chunked bodies piece by piece, and trailers", function()
        serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" ..
              "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n", 4)
        in_phase("access", H.request {}, function()
            local httpc = http.new()
            assert(httpc:connect("127.0.0.1", 80))
            local res = assert(httpc:request { path = "/" })
            local parts = {}
            while true do
                local chunk, err = res.body_reader(3)
                assert.is_nil(err)
                if not chunk then break end
                parts[#parts + 1] = chunk
            end
            assert.equals("hello world", table.concat(parts))
            assert.equals(1, httpc:set_keepalive())
            assert.equals(0, #fake.socket_conns[1].replies)
        end)
    end)

    it("has no body for HEAD, 204 and 304; skips 100 Continue", function()
        local replies = {
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
        }
        local i = 0
        serve(function() i = i + 1 return replies[i] end)
        in_phase("access", H.request {}, function()
            local httpc = http.new()
            assert(httpc:connect("127.0.0.1", 80))
            local res = assert(httpc:request { path = "/a" })
            assert.equals(204, res.status)
            assert.is_false(res.has_body)
            assert.equals("", res:read_body())
            res = assert(httpc:request { path = "/b" })
            assert.equals(304, res.status)
            assert.is_false(res.has_body)
            res = assert(httpc:request { method = "HEAD", path = "/c" })
            assert.equals(200, res.status)
            assert.is_false(res.has_body)
            assert.equals(1, httpc:set_keepalive())
            assert.equals(1, #fake.socket_conns)
        end)
    end)

    it("reads an unframed body until close and does not pool it", function()
        serve("HTTP/1.0 200 OK\r\n\r\nuntil the end")
        in_phase("access", H.request {}, function()
            local httpc = http.new()
            local res = assert(httpc:request_uri("http://h.test/z?q=1"))
            assert.equals("until the end", res.body)
            assert.is_true(fake.socket_conns[1].closed)
            assert.matches("^GET /z%?q=1 HTTP/1%.1\r\n",
                           fake.socket_conns[1].sent[1])
            assert.matches("\r\nHost: h.test\r\n", fake.socket_conns[1].sent[1])
        end)
    end)

    it("sends iterator bodies chunked; request_uri keeps the connection", function()
        serve("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        in_phase("access", H.request {}, function()
            local n = 0
            local body = function()
                n = n + 1
                if n <= 2 then return "part" .. n end
            end
            local httpc = http.new()
            local res = assert(httpc:request_uri("https://api.test/v1",
                { method = "POST", body = body, ssl_verify = false }))
            assert.equals("ok", res.body)
            local c = fake.socket_conns[1]
            assert.same({ name = "api.test", verify = 0 }, c.tls)
            assert.equals("api.test:443:api.test:false", c.key)
            local all = table.concat(c.sent)
            assert.matches("\r\nTransfer%-Encoding: chunked\r\n", all)
            assert.matches("\r\n\r\n5\r\npart1\r\n5\r\npart2\r\n0\r\n\r\n$",
                           all)
            assert.is_table(c.keepalive)
        end)
    end)

    it("says so when the body was not read before set_keepalive", function()
        serve("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        in_phase("access", H.request {}, function()
            local httpc = http.new()
            assert(httpc:connect("127.0.0.1", 80))
            assert(httpc:request { path = "/" })
            assert.same({ nil, "response not fully read" },
                        { httpc:set_keepalive() })
            assert.equals(1, httpc:close())
        end)
    end)
end)
