-- Repo invariants of the Lua <-> C contract: lua/moongate/ffi.lua declares
-- exactly the functions of core/lua/mg_lua_api.h, in the same order and
-- with the same signatures; the pure-Lua fake implements every one of
-- them; the fake's phase table equals the header's X-macro; the bundled
-- plugin list equals the plugins/ folder.

local H = require "lua_runtime"

local ROOT = H.ROOT

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- function prototypes of a C text: { { name =, sig = "normalised" } }
local function prototypes(text)
    text = text:gsub("/%*.-%*/", " ")            -- block comments
    text = text:gsub("//[^\n]*", " ")
    -- drop preprocessor lines, with their continuations
    text = text:gsub("\\\n", " ")
    text = text:gsub("\n%s*#[^\n]*", "\n")
    text = text:gsub("^%s*#[^\n]*", "")
    -- the typedef enum block is not a prototype
    text = text:gsub("typedef%s+enum%s*%b{}%s*[%w_]+%s*;", " ")
    local list = {}
    for decl in text:gmatch("([^;{}]+);") do
        local d = decl:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
        local name = d:match("([%w_]+)%s*%(")
        if name and (name:match("^mg_lua_") or name:match("^mg_shdict_")) then
            d = d:gsub("%s*%(%s*", "("):gsub("%s*%)", ")")
                 :gsub("%s*,%s*", ", "):gsub("%s*%*%s*", " *")
            list[#list + 1] = { name = name, sig = d }
        end
    end
    return list
end

describe("the FFI contract (core/lua/mg_lua_api.h)", function()
    local header = read(ROOT .. "/core/lua/mg_lua_api.h")
    local api = require "moongate.ffi"

    it("declares every API function, in order, with its signature", function()
        local want = prototypes(header)
        local got = prototypes(api.cdef)
        assert.is_true(#want > 30, "parsed too few prototypes from the header")
        local wn, gn = {}, {}
        for i, p in ipairs(want) do wn[i] = p.sig end
        for i, p in ipairs(got) do gn[i] = p.sig end
        assert.same(wn, gn)
    end)

    it("has no function the header does not have, and vice versa", function()
        local in_h, in_l = {}, {}
        for _, p in ipairs(prototypes(header)) do in_h[p.name] = true end
        for _, p in ipairs(prototypes(api.cdef)) do in_l[p.name] = true end
        for name in pairs(in_h) do
            assert.is_true(in_l[name] ~= nil, name .. " missing in ffi.lua")
        end
        for name in pairs(in_l) do
            assert.is_true(in_h[name] ~= nil, name .. " not in the header")
        end
    end)

    it("has a fake for every API function", function()
        local fake = require "moongate.ffi_fake"
        for _, p in ipairs(prototypes(header)) do
            assert.equals("function", type(fake[p.name]), p.name)
        end
    end)

    it("the fake's phase table is the header's X-macro", function()
        local fake = require "moongate.ffi_fake"
        local macro = header:match("#define MG_LUA_PHASES%(X%)(.-)\n%s*\n")
        assert.is_string(macro)
        local want = {}
        for name, bit in macro:gmatch("X%(([%w_]+),%s*(0x%x+)%)") do
            want[#want + 1] = { name, tonumber(bit) }
        end
        assert.is_true(#want >= 10)
        assert.same(want, fake.PHASES)
    end)

    it("reads the phase list from C (mg_lua_phase_name/bit)", function()
        local phases = require "moongate.phases"
        local fake = require "moongate.ffi_fake"
        for i, p in ipairs(fake.PHASES) do
            assert.equals(p[1], phases.list[i])
            assert.equals(p[2], phases.bits[p[1]])
        end
        assert.equals(#fake.PHASES, #phases.list)
    end)

    it("uses the core's return codes (mg_core.h)", function()
        local core = read(ROOT .. "/core/mg_core.h")
        for _, k in ipairs { "OK", "ERROR", "AGAIN", "DONE", "DECLINED" } do
            local v = core:match("#define MG_" .. k .. "%s+(%-?%d+)")
            assert.equals(tonumber(v), api[k], "MG_" .. k)
        end
    end)

    it("uses the core's log levels (mg_log.h)", function()
        local log_h = read(ROOT .. "/core/base/mg_log.h")
        local names = {}
        for name in log_h:match("enum%s*(%b{})"):gmatch("MG_LOG_(%u+)") do
            names[#names + 1] = name
        end
        assert.equals(8, #names)
        for i, name in ipairs(names) do
            assert.equals(i - 1, api.LOG[name], "MG_LOG_" .. name)
        end
    end)
end)

describe("bundled plugins", function()
    local constants = require "moongate.constants"

    local function dirs()
        local list = {}
        local p = io.popen("ls -1 '" .. ROOT .. "/plugins' 2>/dev/null")
        for line in p:lines() do
            if not line:match("%.") then     -- folders only (no README.md)
                list[#list + 1] = line
            end
        end
        p:close()
        table.sort(list)
        return list
    end

    it("BUNDLED_PLUGINS lists the folders of plugins/", function()
        local list = {}
        for i, n in ipairs(constants.BUNDLED_PLUGINS) do list[i] = n end
        table.sort(list)
        assert.same(dirs(), list)
    end)

    it("each has handler.lua, schema.lua and README.md", function()
        for _, name in ipairs(dirs()) do
            for _, f in ipairs { "handler.lua", "schema.lua", "README.md" } do
                local fh = io.open(ROOT .. "/plugins/" .. name .. "/" .. f)
                assert.is_truthy(fh, name .. "/" .. f)
                fh:close()
            end
        end
    end)

    it("each loads, and every config field has a description", function()
        local loader = require "moongate.plugin_loader"
        loader.install(ROOT)
        local function check(fields, path, name)
            for _, item in ipairs(fields) do
                local fname, f = next(item)
                assert.is_string(f.description,
                                 name .. ": " .. path .. fname ..
                                 " has no description")
                if f.type == "record" and f.fields then
                    check(f.fields, path .. fname .. ".", name)
                end
            end
        end
        for _, name in ipairs(constants.BUNDLED_PLUGINS) do
            local plugin, err = loader.load(name)
            assert.is_table(plugin, err)
            check(plugin.schema.fields.config.fields, "config.", name)
        end
    end)
end)
