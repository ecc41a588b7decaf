-- The PDK's functions must stay compilable by LuaJIT when an interpreted
-- caller calls them (plugin handlers run interpreted while
-- lua_max_run_time is on).  A function whose last statement is a tail
-- call of a builtin or an FFI function cannot be: LuaJIT aborts the
-- trace ("JIT compilation disabled for function at string.lower",
-- "leaving loop in root trace at ffi.string") and the function then runs
-- interpreted, with every FFI call in it on the slow path.  Writing
-- `return (lower(s))` instead keeps the single value and is no tail call.
-- This spec finds such returns in the per-request modules.

local FILES = {
    "lua/moongate/ffi.lua",
    "lua/moongate/ngx.lua",
    "lua/moongate/phases.lua",
    "lua/moongate/context.lua",
}

-- builtins that return one value (a tail call of gsub, find, match, pcall,
-- select, unpack ... passes several on, so those are left to the author)
local SINGLE = {}
for name in ([[lower upper sub format tonumber tostring setmetatable
               getmetatable rawget type concat rep floor ceil ffi_string
               string.lower string.upper string.sub string.format
               string.rep table.concat math.floor math.ceil ffi.string
               tab_new]]):gmatch("%S+") do
    SINGLE[name] = true
end

local function pdk_files()
    local out = {}
    local p = io.popen("ls lua/moongate/pdk/*.lua")
    for f in p:lines() do
        out[#out + 1] = f
    end
    p:close()
    for _, f in ipairs(FILES) do
        out[#out + 1] = f
    end
    return out
end

-- the end of the balanced call starting at the '(' at position i of s
local function call_end(s, i)
    local depth, q = 0, nil
    local j = i
    while j <= #s do
        local c = s:sub(j, j)
        if q then
            if c == "\\" then
                j = j + 1
            elseif c == q then
                q = nil
            end
        elseif c == '"' or c == "'" then
            q = c
        elseif c == "(" then
            depth = depth + 1
        elseif c == ")" then
            depth = depth - 1
            if depth == 0 then
                return j
            end
        end
        j = j + 1
    end
    return nil
end

local function offenders(path)
    local lines = {}
    for l in io.lines(path) do
        lines[#lines + 1] = l
    end
    local found = {}
    for n, l in ipairs(lines) do
        local name, rest = l:match("^%s*return%s+([%w_%.]+)(%(.*)$")
        local callee = name and (SINGLE[name] or name:match("^C%.[%w_]+$"))
        if callee then
            -- join continuation lines until the call is closed
            local text, k = rest, n
            local e = call_end(text, 1)
            while not e and k < #lines and k < n + 10 do
                k = k + 1
                text = text .. "\n" .. lines[k]
                e = call_end(text, 1)
            end
            local tail = e and text:sub(e + 1) or ""
            tail = tail:gsub("%-%-.*$", "")
            if e and tail:match("^%s*$") then
                found[#found + 1] = path .. ":" .. n .. ": " .. l
            end
        end
    end
    return found
end

describe("JIT-friendly returns in the per-request Lua", function()
    it("no function there ends in a tail call of a builtin or FFI call", function()
        local all = {}
        for _, f in ipairs(pdk_files()) do
            for _, o in ipairs(offenders(f)) do
                all[#all + 1] = o
            end
        end
        assert.same({}, all)
    end)

    it("the check finds the pattern it is written against", function()
        local tmp = os.tmpname()
        local fh = assert(io.open(tmp, "w"))
        fh:write([[
local function a(s) return lower(s) end
local function b(s)
    return lower(s)
end
local function c(r)
    return C.mg_lua_req_port(r)
end
local function d(s)
    return (lower(s))
end
local function e(s)
    return format("%s",
                  s)
end
local function f(s)
    return sub(s, 1, 2), 3
end
local function g(s)
    return lower(s) .. "x"
end
]])
        fh:close()
        local got = offenders(tmp)
        os.remove(tmp)
        local lines = {}
        for _, o in ipairs(got) do
            lines[#lines + 1] = tonumber(o:match(":(%d+):"))
        end
        -- line 1 is a one-line function (not matched: `return` is not first)
        assert.same({ 3, 6, 12 }, lines)
    end)
end)
