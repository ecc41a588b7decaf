-- Unit: the project's rockspec (rockspecs/moongate-*.rockspec) is the
-- manifest of lua/: every .lua file under lua/ is a module of it under
-- its require name, and every module it lists is a file there (Kong's
-- spec/01-unit/01-rockspec_meta_spec.lua habit).  Its version is the
-- core's MOONGATE_VERSION.

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/01%-unit/")
             or "."

local function read(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

local function lines_of(cmd)
    local p = assert(io.popen(cmd))
    local t = {}
    for l in p:lines() do
        t[#t + 1] = l
    end
    p:close()
    return t
end

-- the single rockspec of rockspecs/, evaluated as LuaRocks does (a Lua
-- file of global assignments, in an empty environment)
local function load_rockspec()
    local files = lines_of("ls " .. ROOT .. "/rockspecs/moongate-*.rockspec")
    assert.equals(1, #files, "expected one rockspecs/moongate-*.rockspec")
    local env = {}
    local chunk = assert(loadfile(files[1]))
    setfenv(chunk, env)
    chunk()
    return env, files[1]
end

-- lua/a/b/init.lua -> "a.b", lua/a/b.lua -> "a.b"
local function module_name(rel)
    local m = rel:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", "")
    return (m:gsub("/", "."))
end

describe("rockspecs/moongate", function()
    local spec, path

    setup(function()
        spec, path = load_rockspec()
    end)

    it("is named after its package and version", function()
        assert.equals("moongate", spec.package)
        assert.matches("/moongate%-" .. spec.version:gsub("%-", "%%-")
                       .. "%.rockspec$", path)
        assert.equals("builtin", spec.build.type)
    end)

    it("has the core's version", function()
        local v = read(ROOT .. "/core/mg_core.h")
                  :match('#define MOONGATE_VERSION "([^"]+)"')
        assert.equals(v, spec.version:match("^(.*)%-%d+$"))
    end)

    it("lists every Lua file under lua/ under its module name", function()
        local missing = {}
        for _, f in ipairs(lines_of("cd " .. ROOT .. " && find lua -name "
                                    .. "'*.lua' | sort")) do
            local m = module_name(f)
            if spec.build.modules[m] ~= f then
                missing[#missing + 1] = string.format('["%s"] = "%s"', m, f)
            end
        end
        assert.same({}, missing)
    end)

    it("lists only files that exist, under their module names", function()
        local stale = {}
        for m, f in pairs(spec.build.modules) do
            local fh = io.open(ROOT .. "/" .. f, "rb")
            if fh then
                fh:close()
            end
            if not fh or not f:match("^lua/.*%.lua$")
               or module_name(f) ~= m then
                stale[#stale + 1] = m .. " = " .. tostring(f)
            end
        end
        table.sort(stale)
        assert.same({}, stale)
    end)
end)
