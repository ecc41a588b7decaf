-- moongate.ffi_fake -- a pure-Lua stand-in for the core's FFI API
-- (core/lua/mg_lua_api.h), used when Lua runs outside the moongate binary:
-- unit specs on plain Lua 5.1, `moongate check`-style tools.
--
-- Every function of the header exists here with the same name and
-- argument order.  `r` is a request table built by `fake.request{...}`;
-- the out-parameters are tables whose [0] slot receives the value (see
-- moongate.ffi `str`).  What the core would do to the real request is
-- recorded on the table instead, for specs to look at:
--
--   r.upstream = { mods = {{name, value|nil, add}...}, path, query, method,
--                  body, target = { host, port } }
--   r.resp     = { status, headers = {{name, value}...} (the upstream's),
--                  mods = {{name, value|nil, add}...}, source, started }
--   r.exit     = { status, body }             -- after mg_lua_resp_exit
--   r.sleeps   = { seconds... }               -- mg_lua_sleep calls
--   r.chunk    -- last mg_lua_resp_set_chunk
--   fake.logs  = { { level = MG_LOG_*, msg = "..." }... }
--
-- Header changes are recorded as the core records them (a list of
-- modifications, applied when the head is built), not applied to the
-- lists the read functions return: `fake.apply(list, mods)` gives the
-- result.  Waits behave as in the core: mg_lua_sleep returns MG_AGAIN and the
-- caller yields; the spec resumes the coroutine (it plays the event loop).
-- `r.body_again = true` makes the first mg_lua_req_body return MG_AGAIN.
--
-- Rejected: faking ffi itself (cdata pointers) -- plain Lua 5.1 has no
-- ffi, and tables with a [0] slot are all the PDK needs.

local OK, ERROR, AGAIN, DECLINED = 0, -1, -2, -5

local fake = {}

-- the MG_LUA_PHASES X-macro of mg_lua_api.h (the contract spec compares)
fake.PHASES = {
    { "init_worker",   0x0001 },
    { "configure",     0x0002 },
    { "certificate",   0x0004 },
    { "rewrite",       0x0008 },
    { "access",        0x0010 },
    { "balancer",      0x0020 },
    { "response",      0x0040 },
    { "header_filter", 0x0080 },
    { "body_filter",   0x0100 },
    { "log",           0x0200 },
}

fake.logs = {}
fake.clock = 1700000000.25
fake.worker = { id = 0, count = 1, pid = 4242 }
fake.echo = false           -- print log lines as they come (debugging)

local last_error = ""

local function fail(msg)
    last_error = msg
    return ERROR
end

local function out(p, n, s)
    p[0] = s
    n[0] = #s
    return OK
end

local function lower(s)
    return s:lower()
end

--- Reset the recorded logs and the clock between specs.
function fake.reset()
    fake.logs = {}
    fake.clock = 1700000000.25
    last_error = ""
    fake.shdict_clear()
end

--- Headers as a list of {name, value}: accepts that, or a map
-- name -> value | { values }.
local function header_list(h)
    local list = {}
    if not h then
        return list
    end
    if h[1] ~= nil then
        for i = 1, #h do
            list[i] = { h[i][1], h[i][2] }
        end
        return list
    end
    local names = {}
    for k in pairs(h) do
        names[#names + 1] = k
    end
    table.sort(names)
    for _, k in ipairs(names) do
        local v = h[k]
        if type(v) == "table" then
            for _, x in ipairs(v) do
                list[#list + 1] = { k, tostring(x) }
            end
        else
            list[#list + 1] = { k, tostring(v) }
        end
    end
    return list
end
fake.header_list = header_list

--- Every value of header `name` (case-insensitive) in a {name, value}
-- list: nil, one string, or an array when repeated.
function fake.header(list, name)
    local found = {}
    name = lower(name)
    for _, h in ipairs(list) do
        if lower(h[1]) == name then
            found[#found + 1] = h[2]
        end
    end
    if #found == 0 then
        return nil
    end
    if #found == 1 then
        return found[1]
    end
    return found
end

--- A request as the core would hand it to Lua.
function fake.request(o)
    o = o or {}
    local r = {
        method = o.method or "GET",
        path = o.path or "/",
        query = o.query or "",
        host = o.host or "localhost",
        port = o.port or 8000,
        scheme = o.scheme or "http",
        http_version = o.http_version or 11,
        headers = header_list(o.headers),
        client_ip = o.client_ip or "127.0.0.1",
        client_port = o.client_port or 40000,
        id = o.id or "0123456789abcdef0123456789abcdef",
        start_time = o.start_time or fake.clock,
        body = o.body,
        body_again = o.body_again,
        body_error = o.body_error,
        route_id = o.route_id,
        service_id = o.service_id,
        captures = o.captures or {},
        upstream_sent = false,
        upstream = { mods = {} },
        resp = {
            status = o.status or 0,
            headers = header_list(o.resp_headers),
            mods = {},
            source = o.source,
            started = false,
        },
        sleeps = {},
    }
    return r
end

--- Simulate the upstream's response head arriving (header_filter input).
function fake.respond(r, status, headers)
    r.upstream_sent = true
    r.resp.status = status
    r.resp.upstream = true
    r.resp.headers = header_list(headers)
end

--- Apply recorded modifications to a {name, value} list (a new list):
-- what the core sends.
function fake.apply(list, mods)
    local outl = {}
    for i = 1, #list do
        outl[i] = { list[i][1], list[i][2] }
    end
    for _, m in ipairs(mods) do
        local name, value, add = m[1], m[2], m[3]
        if add == 0 then
            local lname = lower(name)
            for i = #outl, 1, -1 do
                if lower(outl[i][1]) == lname then
                    table.remove(outl, i)
                end
            end
        end
        if value ~= nil then
            outl[#outl + 1] = { name, value }
        end
    end
    return outl
end

--- The headers the upstream gets / the client gets.
function fake.upstream_headers(r)
    return fake.apply(r.headers, r.upstream.mods)
end

function fake.response_headers(r)
    return fake.apply(r.resp.headers, r.resp.mods)
end

-- phases --------------------------------------------------------------

function fake.mg_lua_phase_name(i)
    local p = fake.PHASES[i + 1]
    return p and p[1] or nil
end

function fake.mg_lua_phase_bit(i)
    local p = fake.PHASES[i + 1]
    return p and p[2] or 0
end

function fake.mg_lua_last_error()
    return last_error
end

-- the client request ----------------------------------------------------

function fake.mg_lua_req_method(r, p, n) return out(p, n, r.method) end
function fake.mg_lua_req_path(r, p, n) return out(p, n, r.path) end
function fake.mg_lua_req_query(r, p, n) return out(p, n, r.query) end
function fake.mg_lua_req_host(r, p, n) return out(p, n, r.host) end
function fake.mg_lua_req_port(r) return r.port end
function fake.mg_lua_req_scheme(r, p, n) return out(p, n, r.scheme) end
function fake.mg_lua_req_http_version(r) return r.http_version end
function fake.mg_lua_req_header_count(r) return #r.headers end

function fake.mg_lua_req_header_at(r, i, name, nl, value, vl)
    local h = r.headers[i + 1]
    if not h then
        return DECLINED
    end
    out(name, nl, h[1])
    return out(value, vl, h[2])
end

function fake.mg_lua_req_header_find(r, lname, n, value, vl)
    for _, h in ipairs(r.headers) do
        if #h[1] == tonumber(n) and h[1]:lower() == lname then
            return out(value, vl, h[2])
        end
    end
    return DECLINED
end

function fake.mg_lua_req_client_ip(r, buf, len)
    local ip = r.client_ip:sub(1, tonumber(len))
    buf[0] = ip
    return #ip
end

function fake.mg_lua_req_client_port(r) return r.client_port end
function fake.mg_lua_req_id(r, p, n) return out(p, n, r.id) end

function fake.mg_lua_req_sni(r, p, n)
    if not r.sni or r.sni == "" then
        return DECLINED
    end
    return out(p, n, r.sni)
end
function fake.mg_lua_req_start_time(r) return r.start_time end

function fake.mg_lua_req_body(r, p, n)
    if r.body_error then
        return fail(r.body_error)
    end
    if r.body_again then
        r.body_again = false
        r.body_waits = (r.body_waits or 0) + 1
        return AGAIN
    end
    return out(p, n, r.body or "")
end

function fake.mg_lua_req_route_id(r, p, n)
    if not r.route_id then
        return DECLINED
    end
    return out(p, n, r.route_id)
end

function fake.mg_lua_req_service_id(r, p, n)
    if not r.service_id then
        return DECLINED
    end
    return out(p, n, r.service_id)
end

function fake.mg_lua_req_capture_count(r) return #r.captures end

function fake.mg_lua_req_capture_at(r, i, name, nl, value, vl)
    local c = r.captures[i + 1]
    if not c then
        return DECLINED
    end
    out(name, nl, c[1])
    return out(value, vl, c[2])
end

-- the upstream request --------------------------------------------------

local function before_upstream(r)
    if r.upstream_sent then
        return fail("the upstream request was already sent")
    end
    return OK
end

local function bad_crlf(s)
    return s and s:find("[\r\n]") ~= nil
end

-- a set (add == 0) replaces earlier changes of that header, as the core's
local function mod_headers(mods, name, value, add)
    if name == "" or bad_crlf(name) or bad_crlf(value) then
        return nil
    end
    if add == 0 then
        local lname = lower(name)
        for i = #mods, 1, -1 do
            if lower(mods[i][1]) == lname then
                table.remove(mods, i)
            end
        end
    end
    mods[#mods + 1] = { name, value, add }
    return true
end

local function sub(s, n)
    if s == nil then
        return nil
    end
    return s:sub(1, tonumber(n))
end

function fake.mg_lua_upstream_set_header(r, name, nl, value, vl, add)
    if before_upstream(r) ~= OK then
        return ERROR
    end
    if not mod_headers(r.upstream.mods, sub(name, nl), sub(value, vl),
                       add) then
        return fail("invalid header name or value (CR/LF)")
    end
    return OK
end

function fake.mg_lua_upstream_set_path(r, p, n)
    if before_upstream(r) ~= OK then
        return ERROR
    end
    p = sub(p, n)
    if p:sub(1, 1) ~= "/" or p:find("[ \r\n?]") then
        return fail("path must start with / and contain no spaces, CR/LF "
                    .. "or '?'")
    end
    r.upstream.path = p
    return OK
end

function fake.mg_lua_upstream_set_query(r, p, n)
    if before_upstream(r) ~= OK then
        return ERROR
    end
    p = sub(p, n)
    if p:find("[ \r\n]") then
        return fail("query must contain no spaces or CR/LF")
    end
    r.upstream.query = p
    r.query = p             -- the core's kong.request sees it, as Kong's
    return OK
end

function fake.mg_lua_upstream_set_method(r, p, n)
    if before_upstream(r) ~= OK then
        return ERROR
    end
    p = sub(p, n)
    if p == "" or p:find("[^A-Z]") then
        return fail("method must be upper-case letters")
    end
    r.upstream.method = p
    return OK
end

function fake.mg_lua_upstream_set_body(r, p, n)
    if before_upstream(r) ~= OK then
        return ERROR
    end
    r.upstream.body = sub(p, n)
    return OK
end

function fake.mg_lua_upstream_set_target(r, host, hl, port)
    if before_upstream(r) ~= OK then
        return ERROR
    end
    if hl == 0 or port <= 0 or port > 65535 then
        return fail("invalid host or port")
    end
    r.upstream.target = { host = sub(host, hl), port = port }
    return OK
end

-- the response ------------------------------------------------------------

function fake.mg_lua_resp_status(r)
    if r.exit then
        return r.exit.status
    end
    return r.resp.status
end

function fake.mg_lua_resp_set_status(r, status)
    if r.resp.started or status < 100 or status > 999 then
        return fail("status can only be set before the response head is "
                    .. "sent, to 100..999")
    end
    r.resp.status = status
    return OK
end

function fake.mg_lua_resp_header_count(r) return #r.resp.headers end

function fake.mg_lua_resp_header_at(r, i, name, nl, value, vl)
    local h = r.resp.headers[i + 1]
    if not h then
        return DECLINED
    end
    out(name, nl, h[1])
    return out(value, vl, h[2])
end

function fake.mg_lua_resp_set_header(r, name, nl, value, vl, add)
    if r.resp.started then
        return fail("the response head was already sent")
    end
    if not mod_headers(r.resp.mods, sub(name, nl), sub(value, vl),
                       add) then
        return fail("invalid header name or value (CR/LF)")
    end
    return OK
end

function fake.mg_lua_header_mod_at(r, resp, i, name, nl, value, vl)
    local m = (resp ~= 0 and r.resp.mods or r.upstream.mods)[i + 1]
    if not m then
        return -1
    end
    out(name, nl, m[1])
    if m[2] == nil then
        value[0], vl[0] = nil, 0
    else
        out(value, vl, m[2])
    end
    return (m[3] and m[3] ~= 0) and 1 or 0
end

function fake.mg_lua_resp_exit(r, status, body, bl)
    if r.resp.started or r.resp.upstream then
        return fail("exit is only possible before a response from the "
                    .. "upstream has started")
    end
    if status < 100 or status > 999 then
        return fail("exit status must be 100..999")
    end
    r.exit = { status = status, body = sub(body, bl) }
    return OK
end

function fake.mg_lua_resp_source(r)
    if r.resp.source then
        return r.resp.source
    end
    if r.exit then
        return "exit"
    end
    if r.resp.upstream then
        return "service"
    end
    return "error"
end

function fake.mg_lua_resp_set_chunk(r, p, n)
    r.chunk = sub(p, n)
    return OK
end

-- waits -------------------------------------------------------------------

function fake.mg_lua_sleep(r, seconds)
    if r.no_wait then
        return fail("ngx.sleep can only wait in rewrite and access")
    end
    r.sleeps[#r.sleeps + 1] = seconds
    return AGAIN
end

-- timers (a list the test drives; see fake.timers) -----------------------

fake.timers = {}

function fake.mg_lua_timer_at(delay, id, every)
    fake.timers[#fake.timers + 1] = { delay = delay, id = id, every = every }
    return OK
end

function fake.mg_lua_timer_sleep(t, seconds)
    t.sleeps = t.sleeps or {}
    t.sleeps[#t.sleeps + 1] = seconds
    return AGAIN
end

function fake.mg_lua_timer_count(running)
    if running ~= 0 then
        return 0
    end
    return #fake.timers
end

-- misc --------------------------------------------------------------------

function fake.mg_lua_log(level, msg, n)
    msg = sub(msg, n)
    fake.logs[#fake.logs + 1] = { level = level, msg = msg }
    if fake.echo then
        io.stderr:write("[", level, "] ", msg, "\n")
    end
end

function fake.mg_lua_now() return fake.clock end
function fake.mg_lua_update_time() return fake.clock end
function fake.mg_lua_worker_id() return fake.worker.id end
function fake.mg_lua_worker_count() return fake.worker.count end
function fake.mg_lua_worker_pid() return fake.worker.pid end

-- shared dictionaries ------------------------------------------------------
-- One in-Lua dictionary per `lua_shared_dict` entry (fake.shdict_setup
-- sets the list; the defaults are the property's, and kong_db_cache the
-- core adds for mem_cache_size), with the core's
-- semantics over fake.clock: expiry, LRU order, eviction from the LRU tail
-- when `capacity` would be exceeded (an item counts 64 bytes plus its key
-- and value), safe stores that never evict.  One process only, of course.

local SHDICT_DEFAULTS = {
    { "kong", 5 * 1048576 }, { "kong_locks", 8 * 1048576 },
    { "kong_rate_limiting_counters", 12 * 1048576 },
    { "moongate_cache", 16 * 1048576 }, { "kong_db_cache", 128 * 1048576 },
}
local SH_NIL, SH_STRING = 0, 4
local SH_ADD, SH_REPLACE, SH_SAFE = 1, 2, 4

local shdicts = {}
local sh_tick = 0

--- Declare the fake's dictionaries: { { name, bytes }... } (nil: the
-- defaults).  Every dictionary starts empty.
function fake.shdict_setup(list)
    shdicts = {}
    for i, e in ipairs(list or SHDICT_DEFAULTS) do
        shdicts[i] = { name = e[1], capacity = e[2], used = 0, items = {},
                       n = 0 }
    end
end
fake.shdict_setup()

--- Empty every dictionary, keeping the list (fake.reset calls it).
function fake.shdict_clear()
    for _, sd in ipairs(shdicts) do
        sd.items, sd.used, sd.n = {}, 0, 0
    end
end

local function sh_dict(d)
    return shdicts[d + 1]
end

local function sh_expired(it)
    return it.expires ~= 0 and it.expires <= fake.clock
end

local function sh_expires(exptime)
    if exptime > 0 then
        return fake.clock + math.floor(exptime * 1000) / 1000
    end
    return 0
end

local function sh_touch(it)
    sh_tick = sh_tick + 1
    it.tick = sh_tick
end

local function sh_delete(sd, key)
    local it = sd.items[key]
    if it then
        sd.items[key] = nil
        sd.used = sd.used - it.size
        sd.n = sd.n - 1
    end
end

-- items least recently used first
local function sh_lru(sd)
    local list = {}
    for k, it in pairs(sd.items) do
        list[#list + 1] = { k, it }
    end
    table.sort(list, function(a, b) return a[2].tick < b[2].tick end)
    return list
end

local function sh_insert(sd, key, it, safe, forcible)
    it.size = 64 + #key + (it.type == SH_STRING and #it.str or 8)
    if it.size > sd.capacity then
        return false
    end
    if sd.used + it.size > sd.capacity then
        if safe then
            return false
        end
        local lru = sh_lru(sd)
        for i = 1, math.min(30, #lru) do
            sh_delete(sd, lru[i][1])
            forcible[0] = 1
            if sd.used + it.size <= sd.capacity then
                break
            end
        end
        if sd.used + it.size > sd.capacity then
            return false
        end
    end
    sh_touch(it)
    sd.items[key] = it
    sd.used = sd.used + it.size
    sd.n = sd.n + 1
    return true
end

function fake.mg_shdict_count() return #shdicts end

function fake.mg_shdict_name(d, p, n)
    local sd = sh_dict(d)
    if not sd then
        return DECLINED
    end
    return out(p, n, sd.name)
end

function fake.mg_shdict_find(name, nl)
    name = sub(name, nl)
    for i, sd in ipairs(shdicts) do
        if sd.name == name then
            return i - 1
        end
    end
    return DECLINED
end

function fake.mg_shdict_get(d, k, kl, get_stale, typ, num, str, sl, flags,
                            stale)
    local sd = sh_dict(d)
    typ[0], num[0], str[0], sl[0], flags[0], stale[0] = SH_NIL, 0, nil, 0,
                                                         0, 0
    if not sd or kl == 0 then
        return ERROR
    end
    local it = sd.items[sub(k, kl)]
    if not it or (sh_expired(it) and get_stale == 0) then
        return DECLINED
    end
    if sh_expired(it) then
        stale[0] = 1
    else
        sh_touch(it)
    end
    typ[0], num[0], flags[0] = it.type, it.num or 0, it.flags
    if it.type == SH_STRING then
        out(str, sl, it.str)
    end
    return OK
end

function fake.mg_shdict_store(d, op, k, kl, typ, num, s, sl, exptime, flags,
                              forcible, err)
    local sd = sh_dict(d)
    forcible[0] = 0
    if not sd then
        err[0] = "no such dictionary"
        return ERROR
    end
    if typ == SH_NIL and op % 4 ~= 0 then
        err[0] = "attempt to add or replace nil values"
        return ERROR
    end
    local key = sub(k, kl)
    local it = sd.items[key]
    local live = it and not sh_expired(it)
    if op % 4 == SH_REPLACE and not live then
        err[0] = "not found"
        return DECLINED
    end
    if op % 2 == SH_ADD and live then
        err[0] = "exists"
        return DECLINED
    end
    sh_delete(sd, key)
    if typ == SH_NIL then
        return OK
    end
    local new = { type = typ, num = num, flags = flags,
                  expires = sh_expires(exptime) }
    if typ == SH_STRING then
        new.str = sub(s, sl)
    end
    if not sh_insert(sd, key, new, op >= SH_SAFE, forcible) then
        err[0] = "no memory"
        return ERROR
    end
    return OK
end

function fake.mg_shdict_incr(d, k, kl, value, has_init, init, init_ttl,
                             forcible, err)
    local sd = sh_dict(d)
    forcible[0] = 0
    if not sd then
        err[0] = "no such dictionary"
        return ERROR
    end
    local key = sub(k, kl)
    local it = sd.items[key]
    if not it or sh_expired(it) then
        if has_init == 0 then
            err[0] = "not found"
            return DECLINED
        end
        sh_delete(sd, key)
        local new = { type = 3, num = init + value[0], flags = 0,
                      expires = sh_expires(init_ttl) }
        if not sh_insert(sd, key, new, false, forcible) then
            err[0] = "no memory"
            return ERROR
        end
        value[0] = new.num
        return OK
    end
    if it.type ~= 3 then
        err[0] = "not a number"
        return ERROR
    end
    it.num = it.num + value[0]
    sh_touch(it)
    value[0] = it.num
    return OK
end

function fake.mg_shdict_ttl(d, k, kl, ttl)
    local sd = sh_dict(d)
    ttl[0] = 0
    if not sd then
        return ERROR
    end
    local it = sd.items[sub(k, kl)]
    if not it then
        return DECLINED
    end
    if it.expires ~= 0 then
        ttl[0] = it.expires - fake.clock
    end
    return OK
end

function fake.mg_shdict_expire(d, k, kl, exptime)
    local sd = sh_dict(d)
    if not sd then
        return ERROR
    end
    local it = sd.items[sub(k, kl)]
    if not it then
        return DECLINED
    end
    it.expires = sh_expires(exptime)
    return OK
end

function fake.mg_shdict_flush_all(d)
    local sd = sh_dict(d)
    if not sd then
        return ERROR
    end
    for _, it in pairs(sd.items) do
        it.expires = 1
    end
    return OK
end

function fake.mg_shdict_flush_expired(d, max)
    local sd = sh_dict(d)
    if not sd then
        return ERROR
    end
    local n = 0
    for _, e in ipairs(sh_lru(sd)) do
        if max > 0 and n >= max then
            break
        end
        if sh_expired(e[2]) then
            sh_delete(sd, e[1])
            n = n + 1
        end
    end
    return n
end

function fake.mg_shdict_get_keys(d, max, p, n)
    local sd = sh_dict(d)
    p[0], n[0] = "", 0
    if not sd then
        return ERROR
    end
    local lru, recs, count = sh_lru(sd), {}, 0
    for i = #lru, 1, -1 do
        if max > 0 and count >= max then
            break
        end
        if not sh_expired(lru[i][2]) then
            count = count + 1
            recs[count] = #lru[i][1] .. ":" .. lru[i][1]
        end
    end
    out(p, n, table.concat(recs))
    return count
end

function fake.mg_shdict_capacity(d)
    local sd = sh_dict(d)
    return sd and sd.capacity or 0
end

function fake.mg_shdict_free_space(d)
    local sd = sh_dict(d)
    return sd and (sd.capacity - sd.used) or 0
end

--- The log lines whose message contains `text` (plain find).
function fake.logged(text, level)
    local found = {}
    for _, l in ipairs(fake.logs) do
        if (level == nil or l.level == level)
           and l.msg:find(text, 1, true) then
            found[#found + 1] = l
        end
    end
    return found
end

-- entity store (moongate.db) ----------------------------------------------
-- Outside the binary there is no LMDB: the store functions fail, and
-- moongate.db.store.fake() is the in-memory backend specs use instead.
-- mg_lua_yaml_to_json accepts JSON only (checked with cjson): there is no
-- YAML reader in plain Lua, specs feed the declarative layer JSON or
-- tables.

local function store_fail(err)
    if type(err) == "table" then
        local msg = "no entity store outside the moongate binary"
        err[0] = "4:-1072:-10:0:0:0:0:" .. #msg .. ":" .. msg
    end
    return -107
end

function fake.mg_lua_store_open(dir, map_size, err)
    if type(err) == "table" then
        err[0] = "no entity store outside the moongate binary"
    end
    return nil
end
function fake.mg_lua_store_close() end
function fake.mg_lua_free() end
function fake.mg_lua_store_write(s, op, ent, len, created, err)
    return store_fail(err)
end
function fake.mg_lua_store_delete(s, typ, id, idlen, n, err)
    return store_fail(err)
end
function fake.mg_lua_store_get(s, typ, key, kl, by, o, ol, err)
    return store_fail(err)
end
function fake.mg_lua_store_list(s, typ, f, fl, size, off, offl, o, ol, err)
    return store_fail(err)
end
function fake.mg_lua_store_export(s, o, ol, err)
    return store_fail(err)
end
function fake.mg_lua_store_replace_all(s, ents, len, err)
    return store_fail(err)
end
function fake.mg_lua_store_version() return 0 end
function fake.mg_lua_store_check(s, n, err)
    return store_fail(err)
end

--- text -> JSON into out[0]; ERROR with a message in err[0]
function fake.mg_lua_yaml_to_json(text, len, out, outlen, err)
    local cjson = require "cjson.safe"
    text = text:sub(1, tonumber(len))
    local v, msg = cjson.decode(text)
    if v == nil and msg then
        err[0] = "line 1, column 1: not JSON (the fake reads no YAML): " ..
                 tostring(msg)
        return ERROR
    end
    out[0] = text
    outlen[0] = #text
    return OK
end

-- upstream health (mg_lua_health_target_status) ---------------------------

fake.health = {}   -- [upstream .. " " .. target] = true | false
function fake.mg_lua_health_target_status(upstream, ul, target, tl, healthy)
    local v = fake.health[upstream:sub(1, ul) .. " " .. target:sub(1, tl)]
    if v == nil then
        return DECLINED
    end
    healthy[0] = v and 1 or 0
    return OK
end

-- digests (mg_lua_digest / mg_lua_hmac): the pure-Lua ones --------------

local function fake_digest_out(out, s)
    for i = 1, #s do
        out[i - 1] = s:byte(i)
    end
end

function fake.mg_lua_digest(alg, p, n, out)
    local d = require "moongate.digest"
    local s = p:sub(1, n)
    if alg == 0 then
        fake_digest_out(out, d.lua_md5_bin(s))
    elseif alg == 1 then
        fake_digest_out(out, d.lua_sha1_bin(s))
    else
        return ERROR
    end
    return OK
end

function fake.mg_lua_hmac(alg, key, kl, p, n, out)
    if alg ~= 1 then
        return ERROR
    end
    local d = require "moongate.digest"
    fake_digest_out(out, d.lua_hmac_sha1(key:sub(1, kl), p:sub(1, n)))
    return OK
end

-- cosockets (mg_lua_socket_*): moongate.socket_fake ---------------------
require("moongate.socket_fake")(fake)

return fake
