-- moongate.socket_fake -- the cosocket functions of the pure-Lua FFI fake
-- (moongate.ffi_fake installs them): a scripted peer per connection, so
-- moongate.socket and resty.http run in busted on plain Lua 5.1.
--
--   fake.socket_server = function(conn) ... end
--       called on every new connect with conn = { host, port, key, sent =
--       {}, replies = {} }; return nil, "reason" to refuse the connect.
--       conn.on_send(conn, data) may append to conn.replies (strings
--       delivered in order, at most `max` bytes per recv); when replies
--       run out the peer has closed (recv says "closed").
--   fake.socket_conns  every connection made, in order (for specs).
--
-- No wait ever happens here (no AGAIN): the fake has no event loop.
-- Rejected: simulating timeouts -- the e2e specs cover them on the binary.

return function(fake)
    local OK, ERROR, DONE, DECLINED = 0, -1, -4, -5
    local reason = ""
    local socks, pools, next_id = {}, {}, 0

    fake.socket_conns = {}

    local function fail(msg)
        reason = msg
        return ERROR
    end

    function fake.mg_lua_socket_connect(_, _, host, hl, port, key, kl, _, id)
        host, key = host:sub(1, hl), key:sub(1, kl)
        id[0] = 0
        local pool = pools[key]
        if pool and #pool > 0 then
            local c = table.remove(pool)
            c.reused = c.reused + 1
            next_id = next_id + 1
            socks[next_id] = c
            id[0] = next_id
            return OK
        end
        local c = { host = host, port = port, key = key, sent = {},
                    replies = {}, reused = 0 }
        local server = fake.socket_server
        if not server then
            return fail("connection refused")
        end
        local ok, err = server(c)
        if ok == nil and err then
            return fail(err)
        end
        fake.socket_conns[#fake.socket_conns + 1] = c
        next_id = next_id + 1
        socks[next_id] = c
        id[0] = next_id
        return OK
    end

    function fake.mg_lua_socket_result(id)
        return socks[id] and OK or fail("closed")
    end

    function fake.mg_lua_socket_error()
        return reason
    end

    function fake.mg_lua_socket_send(id, p, n)
        local c = socks[id]
        if not c then return fail("closed") end
        local data = p:sub(1, tonumber(n))
        c.sent[#c.sent + 1] = data
        if c.on_send then
            c.on_send(c, data)
        end
        return OK
    end

    function fake.mg_lua_socket_recv(id, max, _, p, n)
        local c = socks[id]
        if not c then return fail("closed") end
        local r = table.remove(c.replies, 1)
        if r == nil then
            return DONE
        end
        max = tonumber(max)
        if max > 0 and #r > max then
            table.insert(c.replies, 1, r:sub(max + 1))
            r = r:sub(1, max)
        end
        p[0], n[0] = r, #r
        return OK
    end

    function fake.mg_lua_socket_sslhandshake(id, name, nl, verify)
        local c = socks[id]
        if not c then return fail("closed") end
        c.tls = { name = name:sub(1, nl), verify = verify }
        return OK
    end

    function fake.mg_lua_socket_reused(id)
        local c = socks[id]
        return c and c.reused or DECLINED
    end

    function fake.mg_lua_socket_setkeepalive(id, timeout, size)
        local c = socks[id]
        if not c then return fail("closed") end
        socks[id] = nil
        c.keepalive = { timeout = timeout, size = size }
        pools[c.key] = pools[c.key] or {}
        table.insert(pools[c.key], c)
        return OK
    end

    function fake.mg_lua_socket_close(id)
        local c = socks[id]
        if not c then return fail("closed") end
        socks[id] = nil
        c.closed = true
        return OK
    end

    function fake.mg_lua_socket_count(pooled)
        local n = 0
        if pooled ~= 0 then
            for _, l in pairs(pools) do n = n + #l end
        else
            for _ in pairs(socks) do n = n + 1 end
        end
        return n
    end

    --- Forget every connection and pool (between specs).
    function fake.socket_reset()
        socks, pools = {}, {}
        fake.socket_conns = {}
        fake.socket_server = nil
    end
end
