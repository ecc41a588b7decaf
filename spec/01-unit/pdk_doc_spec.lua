-- Unit: the PDK reference in docs/plugin-development.md is the one
-- spec/helpers/pdk_doc.lua generates from the code (run under LuaJIT, as
-- the gateway runs).  When this fails, regenerate it:
--
--   luajit spec/helpers/pdk_doc.lua --write

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/01%-unit/")
             or "."

describe("docs/plugin-development.md", function()
    it("holds the generated PDK reference", function()
        local p = assert(io.popen("cd '" .. ROOT .. "' && luajit " ..
                                  "spec/helpers/pdk_doc.lua --check 2>&1; " ..
                                  "echo \"rc=$?\""))
        local out = p:read("*a")
        p:close()
        assert.equals("rc=0\n", out)
    end)
end)
