-- runloop.guard_handler under LuaJIT (busted runs on plain Lua, where the
-- guard does nothing): which handlers keep the JIT with lua_max_run_time
-- on.  A handler that loops or tail-calls, itself, in a function of its
-- file it reaches or in a nested function, runs interpreted (the count
-- hook must reach it); a loop-free one keeps the JIT.

local SCRIPT = [==[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local runloop = require "moongate.runloop"
local guard = runloop.guard_handler
local function helper(x) while x do end end
local function rec(n) if n > 0 then return rec(n - 1) end end
local function plain(x) return x and 1 end
local cases = {
  noop = { access = function(self, conf) end },
  lookup = { access = function(self, conf)
    local t = { a = "x" }
    local v = t[conf.key] or "unknown"
    return
  end },
  calls_plain = { access = function() plain(1) end },
  for_loop = { access = function() for i = 1, 3 do end end },
  pairs_loop = { access = function(self, conf) for k in pairs(conf) do end end },
  while_helper = { access = function() helper(false) end },
  tail_call = { access = function() return plain(1) end },
  recursion = { access = function() rec(3) end },
  nested = { access = function() local f = function() repeat until true end end },
  other_phase = { access = function() end,
                  log = function() for i = 1, 2 do end end },
  other_module = { access = function() runloop.lookup({}, 1, 2, 3) end },
}
local names = {}
for k in pairs(cases) do names[#names + 1] = k end
table.sort(names)
for _, k in ipairs(names) do
  local h = cases[k]
  local guarded = guard(h)
  io.write(k, "=", tostring(guarded), "\n")
end
]==]

local function run()
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(SCRIPT)
  f:close()
  local p = io.popen("luajit " .. path .. " 2>&1")
  local out = p:read("*a")
  p:close()
  os.remove(path)
  local got = {}
  for k, v in out:gmatch("([%w_]+)=(%a+)") do
    got[k] = v
  end
  return got, out
end

describe("runloop.guard_handler (LuaJIT)", function()
  local got, out

  setup(function()
    got, out = run()
  end)

  it("keeps the JIT for handlers that cannot loop", function()
    assert.equals("false", got.noop, out)
    assert.equals("false", got.lookup, out)
    assert.equals("false", got.calls_plain, out)
    assert.equals("false", got.other_module, out)
  end)

  it("turns it off when the handler's file can loop", function()
    assert.equals("true", got.for_loop, out)
    assert.equals("true", got.pairs_loop, out)
    assert.equals("true", got.while_helper, out)
    assert.equals("true", got.tail_call, out)
    assert.equals("true", got.recursion, out)
    assert.equals("true", got.nested, out)
    assert.equals("true", got.other_phase, out)
  end)
end)
