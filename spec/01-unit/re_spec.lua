-- Unit: ngx.re on PCRE2 (moongate.re): match, find, gmatch, sub, gsub,
-- split and opt with OpenResty's return values, flags, named and unset
-- groups, ctx.pos, templates, function replacements, error texts, the
-- compiled-regex cache, Kong-style uses, and the wiring into ngx and the
-- schema's is_regex.
--
-- The cases live in spec/helpers/re_driver.lua.  moongate.re needs the
-- LuaJIT FFI; spec/run runs busted on Lua 5.1, which has none, so there
-- the spec runs the driver under `luajit` and turns each line it prints
-- into one test.  Under a LuaJIT busted the cases run in-process.

local has_ffi = pcall(require, "ffi")

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/01%-unit/")
             or "."

local function shell_quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Run the driver; returns the array of { ok, name, message }, the case
-- count from its last line (nil when it never got there) and its output.
local function run_driver()
    local cmd = "cd " .. shell_quote(ROOT) .. " && " ..
                "timeout 120 luajit spec/helpers/re_driver.lua 2>&1; " ..
                "echo \"exit\t$?\""
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    local results, done, rc = {}, nil, nil
    for line in out:gmatch("[^\n]+") do
        local name = line:match("^ok\t(.*)$")
        if name then
            results[#results + 1] = { true, name }
        else
            local n, msg = line:match("^not ok\t([^\t]*)\t?(.*)$")
            if n then
                msg = msg:gsub("\\n", "\n"):gsub("\\\\", "\\")
                results[#results + 1] = { false, n, msg }
            elseif line:match("^done\t%d+$") then
                done = tonumber(line:match("%d+"))
            elseif line:match("^exit\t%d+$") then
                rc = tonumber(line:match("%d+"))
            end
        end
    end
    return results, done, rc, out
end

describe("ngx.re on PCRE2", function()
    if has_ffi then
        for _, c in ipairs(require "re_driver") do
            it(c[1], c[2])
        end
        return
    end

    local have_luajit = os.execute("command -v luajit >/dev/null 2>&1")
    have_luajit = have_luajit == 0 or have_luajit == true
    if not have_luajit then
        it("needs luajit to run its cases", function()
            error("luajit not found: moongate.re needs the LuaJIT FFI")
        end)
        return
    end

    local results, done, rc, out = run_driver()

    it("the LuaJIT driver ran every case", function()
        assert.is_number(done, "the driver did not finish:\n" .. out)
        assert.equals(done, #results)
        assert.equals(0, rc)
        assert.is_true(done >= 20)
    end)

    for _, r in ipairs(results) do
        it(r[2], function()
            assert(r[1], r[3])
        end)
    end
end)
