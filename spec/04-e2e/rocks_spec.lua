-- End-to-end: plugin rocks.  The example plugin
-- (examples/plugins/hello-header) is installed offline from its rockspec
-- with `moongate plugin install` (luarocks make), packed into a binary
-- rock with `luarocks pack`, installed from that rock into a second
-- prefix, listed, enabled by name only (no lua_package_path: the rocks
-- tree is on the plugin path by itself) and seen to run on a route.  The
-- example's own unit spec (docs/plugin-development.md, step 2) runs too.
local H = require "moongate"

local EXAMPLE = H.root .. "/examples/plugins/hello-header"
local ROCKSPEC = "hello-header-0.1.0-1.rockspec"
local q = H.shell_quote

describe("e2e plugin rocks", function()
  local src, prefix_a, prefix_b, rock, mock, gw

  setup(function()
    -- a copy of the example, so nothing is ever written into the repo
    src = H.new_prefix("rocks-src") .. "/hello-header"
    local rc, out = H.run("cp -R " .. q(EXAMPLE) .. " " .. q(src))
    assert(rc == 0, out)
    prefix_a = H.new_prefix("rocks-a")
    prefix_b = H.new_prefix("rocks-b")
  end)

  teardown(function()
    if gw then gw:stop() end
    if mock then mock:stop() end
    H.cleanup()
  end)

  it("passes the example's own busted spec (the guide's step 2)", function()
    local rc, out = H.run("busted -o TAP --lpath="
                          .. q("spec/helpers/?.lua;lua/?.lua;lua/?/init.lua;"
                               .. "examples/plugins/hello-header/?.lua")
                          .. " examples/plugins/hello-header/spec",
                          { timeout = 60 })
    assert.equals(0, rc, out)
    assert.matches("1..3", out, 1, true)
  end)

  it("lists an empty prefix without needing a rocks tree", function()
    local rc, out = H.moongate { "plugin", "list", "-p", prefix_a }
    assert.equals(0, rc, out)
    assert.matches("no rocks in " .. prefix_a .. "/rocks", out, 1, true)
  end)

  it("installs a rockspec from the directory that holds its sources", function()
    local rc, out = H.moongate({ "plugin", "install", src .. "/" .. ROCKSPEC,
                                 "-p", prefix_a }, { timeout = 60 })
    assert.equals(0, rc, out)
    assert.matches("installed hello-header 0.1.0-1 in " .. prefix_a
                   .. "/rocks", out, 1, true)
    assert.matches("plugin hello-header: not enabled", out, 1, true)
    assert.truthy(H.read_file(prefix_a .. "/rocks/share/lua/5.1/kong/plugins/"
                              .. "hello-header/handler.lua"))
  end)

  it("installs a packed .rock into another prefix", function()
    local dir = H.new_prefix("rocks-pack")
    local rc, out = H.run("luarocks --tree " .. q(prefix_a .. "/rocks")
                          .. " --lua-version 5.1 pack hello-header",
                          { cwd = dir, timeout = 60 })
    assert.equals(0, rc, out)
    rock = dir .. "/hello-header-0.1.0-1.all.rock"
    assert.truthy(H.read_file(rock), out)

    rc, out = H.moongate({ "plugin", "install", rock, "-p", prefix_b },
                         { timeout = 60 })
    assert.equals(0, rc, out)
    assert.matches("installed hello-header 0.1.0-1 in " .. prefix_b
                   .. "/rocks", out, 1, true)
  end)

  it("lists the rock and its plugin as not enabled by default", function()
    local rc, out = H.moongate { "plugin", "list", "-p", prefix_b }
    assert.equals(0, rc, out)
    assert.matches("  hello-header 0.1.0-1\n", out, 1, true)
    assert.matches("plugin hello-header: not enabled", out, 1, true)
  end)

  it("runs the installed plugin once it is enabled", function()
    mock = H.start_mockup(1)
    gw = H.start_gateway { prefix = prefix_b,
      conf = { plugins = "bundled,hello-header" },
      config = {
        _format_version = "3.0",
        services = {
          { name = "s", url = mock:url(1), routes = {
              { name = "hello", paths = { "/hello" },
                plugins = { { name = "hello-header",
                              config = { greeting = "from a rock" } } } },
              { name = "plain", paths = { "/plain" } },
            } },
        },
      } }

    -- list reads the same moongate.conf as start
    local rc, out = H.moongate { "plugin", "list", "-p", prefix_b }
    assert.equals(0, rc, out)
    assert.matches("plugin hello-header: enabled", out, 1, true)

    for _ = 1, 2 do
      local res = assert(H.request(gw.port, { path = "/hello/echo" }))
      assert.equals(200, res.status)
      assert.equals("from a rock", res.headers["x-hello"])
      res = assert(H.request(gw.port, { path = "/plain/echo" }))
      assert.equals(200, res.status)
      assert.is_nil(res.headers["x-hello"])
    end
    H.assert_no_error_log(gw)
  end)

  it("fails clearly when luarocks is missing", function()
    local rc, out = H.moongate({ "plugin", "install", rock, "-p", prefix_a },
                               { env = { MOONGATE_LUAROCKS =
                                           "/nonexistent/luarocks" } })
    assert.equals(1, rc, out)
    assert.matches("/nonexistent/luarocks not found", out, 1, true)
  end)

  it("fails with luarocks' own message when it fails", function()
    local bad = H.write_file(H.new_prefix("rocks-bad") .. "/bad-0.1.0-1.rockspec",
                             "this is not a rockspec\n")
    local rc, out = H.moongate({ "plugin", "install", bad, "-p", prefix_a },
                               { timeout = 60 })
    assert.equals(1, rc, out)
    assert.matches("luarocks failed (exit", out, 1, true)
    assert.matches("bad-0.1.0-1.rockspec", out, 1, true)
  end)

  it("refuses a file that is neither a rockspec nor a rock", function()
    local rc, out = H.moongate { "plugin", "install", EXAMPLE .. "/kong/plugins/"
                                 .. "hello-header/handler.lua", "-p", prefix_a }
    assert.equals(1, rc, out)
    assert.matches("not a .rockspec or a .rock", out, 1, true)
    rc, out = H.moongate { "plugin", "install", "-p", prefix_a }
    assert.equals(2, rc, out)
  end)
end)
