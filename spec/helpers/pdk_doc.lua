-- spec/helpers/pdk_doc.lua -- the PDK reference of
-- docs/plugin-development.md, generated from the code.
--
--   luajit spec/helpers/pdk_doc.lua            print the section
--   luajit spec/helpers/pdk_doc.lua --write    replace it in the doc
--   luajit spec/helpers/pdk_doc.lua --check    exit 1 when the doc is stale
--                                              (spec/01-unit/pdk_doc_spec.lua)
--
-- It installs the `kong` and `ngx` globals the way the runtime does, over
-- the fake FFI (spec/helpers/lua_runtime.lua), and walks them.  For each
-- function it reports:
--   - the signature, from the line that defines it (debug.getinfo);
--   - the phases it may be called in: first by calling it outside any
--     phase (with no arguments, then ("x", "x"), then (1, 1), until one
--     call tells): a PDK phase check raises Kong's "only in: ..." list,
--     ngx's "API disabled in the context of init" means any phase with a
--     request, a call that returns means any phase; failing that, from
--     the source of its body (`check(MASK)` and the file's
--     `local MASK = phases.new(...)`; a request-context lookup means any
--     phase with a request); else "any";
--   - the comment above its definition.
-- Phases Moongate declares but does not run (certificate, balancer,
-- response) are left out of the lists.  Helpers the PDK modules export to
-- each other (a first parameter named `ctx`, and the few in INTERNAL) are
-- not Kong's API and are left out.  Tables the build does not have (they
-- raise "... is not available in this Moongate build") are listed as such.
--
-- Run it with LuaJIT, as the gateway runs: ngx.re needs the FFI (on plain
-- Lua 5.1 it would be reported missing).
--
-- Rejected: LDoc -- another tool to install, and it cannot tell the phases
-- or what the build leaves out.

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/helpers/pdk_doc%.lua$")
             or "."
package.path = ROOT .. "/spec/helpers/?.lua;" .. ROOT .. "/lua/?.lua;" ..
               ROOT .. "/lua/?/init.lua;" .. package.path

local DOC = ROOT .. "/docs/plugin-development.md"
local BEGIN = "<!-- pdk:begin -->"
local END = "<!-- pdk:end -->"

local INTERNAL = {
    ["kong.client.configure"] = true,
    ["kong.client.find"] = true,
    ["kong.vault.resolve_config"] = true,
    ["kong.request.PHASES"] = true,     -- values: phase masks, ...
    ["kong.response.GET"] = true,
    ["kong.response.SET"] = true,
    ["kong.cache.*"] = true,            -- the cache object's own state
}

-- the phases plugins run in today, in the core's order
local RUN = { "init_worker", "configure", "rewrite", "access",
              "header_filter", "body_filter", "log" }
local REQUEST = { rewrite = true, access = true, header_filter = true,
                  body_filter = true, log = true }

-- tables of like objects, documented once under a placeholder name
local COLLAPSE = { ["ngx.shared"] = "DICT" }

local KONG_ORDER = { "", "request", "response", "service", "service.request",
                     "service.response", "client", "ctx", "log", "node",
                     "ip", "table", "cache", "vault", "worker_events" }
local NGX_ORDER = { "", "req", "resp", "re", "worker", "config" }

local unpack = unpack or table.unpack
local concat = table.concat
local sort = table.sort
local format = string.format

local _M = {}

-- sources -----------------------------------------------------------------

local files = {}

local function lines_of(source)
    local path = source:match("^@(.*)$")
    if not path then
        return nil
    end
    local t = files[path]
    if t == nil then
        t = false
        local f = io.open(path, "rb")
        if f then
            t = {}
            for l in f:lines() do
                t[#t + 1] = l
            end
            f:close()
        end
        files[path] = t
    end
    return t or nil
end

local function doc_comment(lines, at)
    local out = {}
    local i = at - 1
    while i >= 1 do
        local l = lines[i]
        if not l:match("^%s*%-%-") or l:match("%-%-%-%-%-%-%s*$") then
            break
        end
        table.insert(out, 1, (l:gsub("^%s*%-%-%-?%s?", "")))
        i = i - 1
    end
    local s = concat(out, " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
    return s
end

-- `local NAME = phases.new("a", "b", ...)` (over several lines) -> names
local function masks_of(lines)
    local text = concat(lines, "\n")
    local masks = {}
    for name, args in text:gmatch("local%s+([%w_]+)%s*=%s*phases%.new(%b())") do
        local list = {}
        for p in args:gmatch('"([%w_]+)"') do
            list[#list + 1] = p
        end
        masks[name] = list
    end
    return masks
end

local function info_of(fn)
    local i = debug.getinfo(fn, "S")
    local lines = lines_of(i.source)
    local r = { params = "...", doc = "", method = false }
    if not lines or i.linedefined < 1 then
        return r
    end
    r.lines, r.first, r.last = lines, i.linedefined, i.lastlinedefined
    local def = lines[i.linedefined]
    local method, params = def:match("function%s+[%w_.]+:([%w_]+)%s*%(([^)]*)%)")
    if method then
        r.method = true
    else
        params = def:match("function%s*[%w_.]*%s*%(([^)]*)%)")
    end
    r.params = params and params:gsub("%s+", " ") or "..."
    r.doc = doc_comment(lines, i.linedefined)
    return r
end

-- phases ------------------------------------------------------------------

local function phase_label(list)
    local allowed = {}
    for _, p in ipairs(list) do
        allowed[p] = true
    end
    local all_req = true
    for p in pairs(REQUEST) do
        if not allowed[p] then
            all_req = false
        end
    end
    local out = {}
    if all_req then
        out[1] = "request"
    end
    for _, p in ipairs(RUN) do
        if allowed[p] and not (all_req and REQUEST[p]) then
            out[#out + 1] = p
        end
    end
    if #out == 0 then
        return "none that run"
    end
    return concat(out, ", ")
end

local PROBE_ARGS = { {}, { "x", "x" }, { 1, 1 } }

-- call fn outside any phase: a label, or nil when the call does not tell
local function probe(fn, self, args)
    local context = require "moongate.context"
    local saved = context.current
    context.current = nil
    local co = coroutine.create(function()
        if self ~= nil then
            return fn(self, unpack(args))
        end
        return fn(unpack(args))
    end)
    local ok, err = coroutine.resume(co)
    context.current = saved
    if ok then
        return coroutine.status(co) == "dead" and "any" or nil
    end
    err = tostring(err)
    local list = err:match("cannot be called in init phase %(only in: ([^)]*)%)")
    if list then
        local names = {}
        for p in list:gmatch("[%w_]+") do
            names[#names + 1] = p
        end
        return phase_label(names)
    end
    if err:find("API disabled in the context of init", 1, true) then
        return "request"
    end
    if err:find("is not available in this Moongate build", 1, true) then
        return "missing"
    end
    return nil
end

local function phases_of(fn, self, info)
    for _, args in ipairs(PROBE_ARGS) do
        local label = probe(fn, self, args)
        if label then
            return label
        end
    end
    -- not told by a call: read the body
    if info.lines then
        local body = concat(info.lines, "\n", info.first, info.last)
        local mask = body:match("check%(([%w_]+)%)")
        local masks = mask and masks_of(info.lines)
        if masks and masks[mask] then
            return phase_label(masks[mask])
        end
        if body:find("API disabled in the context", 1, true) or
           body:find("need_ctx()", 1, true) or
           body:find("req_ctx()", 1, true) then
            return "request"
        end
    end
    return "any"
end

-- walking -------------------------------------------------------------------

local function missing_table(t)
    local mt = getmetatable(t)
    if not mt or type(mt.__index) ~= "function" or next(t) ~= nil then
        return false
    end
    local ok, err = pcall(function() return t.__probe end)
    return not ok and tostring(err):find("not available in this Moongate",
                                         1, true) ~= nil
end

-- the keys of t and of its metatable's __index table; the second result
-- marks the keys found only there (methods, called with ':')
local function keys_of(t)
    local keys, seen, inherited = {}, {}, {}
    local function add(k, from_mt)
        if type(k) == "string" and not seen[k] and not k:match("^_") then
            seen[k] = true
            keys[#keys + 1] = k
            inherited[k] = from_mt
        end
    end
    for k in pairs(t) do
        add(k, false)
    end
    local mt = getmetatable(t)
    if mt and type(mt.__index) == "table" then
        for k in pairs(mt.__index) do
            add(k, true)
        end
    end
    sort(keys)
    return keys, inherited
end

local function get(t, k)
    local ok, v = pcall(function() return t[k] end)
    if ok then
        return v
    end
    return nil
end

-- namespaces[name] = { funcs = {...}, values = {...}, missing = bool }
local function collect(root_name, root, order)
    local spaces, names = {}, {}
    local function visit(name, t, depth)
        local full = name == "" and root_name or (root_name .. "." .. name)
        local space = { name = full, funcs = {}, values = {}, absent = {} }
        if missing_table(t) then
            space.missing = true
        end
        spaces[name] = space
        names[#names + 1] = name
        if space.missing then
            return
        end
        local keys, inherited = keys_of(t)
        local collapsed = false
        for _, k in ipairs(keys) do
            local v = get(t, k)
            local child = name == "" and k or (name .. "." .. k)
            if COLLAPSE[full] and type(v) == "table" then
                child = name .. "." .. COLLAPSE[full]
                if collapsed then
                    v = nil             -- one of them is enough
                end
                collapsed = true
            end
            if type(v) == "function" then
                local info = info_of(v)
                local first = info.params:match("^%s*([%w_]+)")
                local qualified = full .. "." .. k
                if inherited[k] and not info.method then
                    -- a method defined as `function M.f(self, ...)`
                    info.method = true
                    info.params = info.params:gsub("^%s*[%w_]+%s*,?%s*", "")
                end
                if first ~= "ctx" and not INTERNAL[qualified] then
                    info.name = full .. (info.method and ":" or ".") .. k
                    info.phases = phases_of(v, info.method and t or nil, info)
                    if info.phases == "missing" then
                        space.absent[#space.absent + 1] = info.name
                    else
                        space.funcs[#space.funcs + 1] = info
                    end
                end
            elseif type(v) == "table" and depth < 3 and
                   not spaces[child] and not INTERNAL[full .. ".*"] then
                local seen_before = false
                for _, s in pairs(spaces) do
                    if s.table == v then
                        seen_before = true
                    end
                end
                if not seen_before then
                    visit(child, v, depth + 1)
                    spaces[child].table = v
                end
            elseif type(v) ~= "table" and type(v) ~= "nil" and
                   not INTERNAL[full .. "." .. k] and
                   not INTERNAL[full .. ".*"] then
                space.values[#space.values + 1] = k
            end
        end
    end
    visit("", root, 1)
    -- the order: `order` first, then the rest by name
    local rank = {}
    for i, n in ipairs(order) do
        rank[n] = i
    end
    sort(names, function(a, b)
        local ra, rb = rank[a] or math.huge, rank[b] or math.huge
        if ra ~= rb then
            return ra < rb
        end
        return a < b
    end)
    local list = {}
    for _, n in ipairs(names) do
        list[#list + 1] = spaces[n]
    end
    return list
end

-- output --------------------------------------------------------------------

local function cell(s)
    return (s:gsub("|", "\\|"))
end

local function render_spaces(out, spaces)
    local missing = {}
    for _, s in ipairs(spaces) do
        for _, f in ipairs(s.absent) do
            missing[#missing + 1] = "`" .. f .. "`"
        end
        if s.missing then
            missing[#missing + 1] = "`" .. s.name .. "`"
        elseif #s.funcs > 0 or #s.values > 0 then
            out[#out + 1] = "#### " .. s.name
            out[#out + 1] = ""
            if #s.funcs > 0 then
                out[#out + 1] = "| function | phases | notes |"
                out[#out + 1] = "| --- | --- | --- |"
                for _, f in ipairs(s.funcs) do
                    out[#out + 1] = format("| `%s(%s)` | %s | %s |", f.name,
                                           f.params, f.phases, cell(f.doc))
                end
                out[#out + 1] = ""
            end
            if #s.values > 0 then
                local v = {}
                for _, k in ipairs(s.values) do
                    v[#v + 1] = "`" .. k .. "`"
                end
                out[#out + 1] = "Values: " .. concat(v, ", ") .. "."
                out[#out + 1] = ""
            end
        end
    end
    if #missing > 0 then
        out[#out + 1] = "Not in this build (using them raises \"... is " ..
                        "not available in this Moongate build\"): " ..
                        concat(missing, ", ") .. "."
        out[#out + 1] = ""
    end
end

--- The generated section, markers included.
function _M.generate()
    local H = require "lua_runtime"
    H.setup()
    local out = {
        BEGIN,
        "<!-- generated by `luajit spec/helpers/pdk_doc.lua --write`; " ..
        "edit the code's comments, not this -->",
        "",
        "Phases: \"request\" is every phase with a request (rewrite, " ..
        "access, header_filter, body_filter, log); \"any\" includes " ..
        "module load and `init_worker`.",
        "",
        "### kong",
        "",
    }
    render_spaces(out, collect("kong", rawget(_G, "kong"), KONG_ORDER))
    out[#out + 1] = "### ngx"
    out[#out + 1] = ""
    render_spaces(out, collect("ngx", rawget(_G, "ngx"), NGX_ORDER))
    out[#out + 1] = END
    return concat(out, "\n") .. "\n"
end

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- the doc's current section (markers included), and the text around it
local function split_doc(text)
    local b = text:find(BEGIN, 1, true)
    local e = text:find(END, 1, true)
    if not b or not e or e < b then
        return nil
    end
    local stop = e + #END
    if text:sub(stop, stop) == "\n" then
        stop = stop + 1
    end
    return text:sub(1, b - 1), text:sub(b, stop - 1), text:sub(stop)
end

--- true when `path` (default the doc) holds the generated section as is.
function _M.check(path)
    local before, section = split_doc(read(path or DOC))
    if not before then
        return false, "no " .. BEGIN .. " ... " .. END .. " section"
    end
    if section ~= _M.generate() then
        return false, "the PDK reference is out of date: run " ..
                      "`luajit spec/helpers/pdk_doc.lua --write`"
    end
    return true
end

--- Replace the section in `path` (default the doc).
function _M.write(path)
    path = path or DOC
    local before, _, after = split_doc(read(path))
    if not before then
        return nil, "no " .. BEGIN .. " ... " .. END .. " section in " .. path
    end
    local f = assert(io.open(path, "wb"))
    f:write(before, _M.generate(), after)
    f:close()
    return true
end

-- as a script --------------------------------------------------------------

local called_as_script = arg and arg[0] and
                         arg[0]:match("pdk_doc%.lua$") ~= nil
if called_as_script then
    if not rawget(_G, "jit") then
        io.stderr:write("pdk_doc.lua: run it with luajit (ngx.re needs " ..
                        "the FFI)\n")
        os.exit(2)
    end
    local mode, path = arg[1], arg[2]
    if mode == "--write" then
        local ok, err = _M.write(path)
        if not ok then
            io.stderr:write(err, "\n")
            os.exit(1)
        end
    elseif mode == "--check" then
        local ok, err = _M.check(path)
        if not ok then
            io.stderr:write(err, "\n")
            os.exit(1)
        end
    else
        io.write(_M.generate())
    end
end

return _M
