-- kong.table -- table helpers of the Kong PDK: new (pre-sized, luajit2's
-- table.new), clear (luajit2's table.clear), merge.  Plain-Lua fallbacks
-- keep the module usable outside LuaJIT.

local _M = {}

local ok_new, tnew = pcall(require, "table.new")
if not ok_new or type(tnew) ~= "function" then
    tnew = function() return {} end
end

local ok_clear, tclear = pcall(require, "table.clear")
if not ok_clear or type(tclear) ~= "function" then
    tclear = function(t)
        for k in pairs(t) do
            t[k] = nil
        end
    end
end

--- A table with room for narr array and nrec hash slots.
function _M.new(narr, nrec)
    return tnew(narr or 0, nrec or 0)
end

--- Empty t in place (keeps its allocated size under LuaJIT).
function _M.clear(t)
    if type(t) ~= "table" then
        error("argument #1 must be a table", 2)
    end
    tclear(t)
end

--- A new table with the keys of t1 and t2 (t2 wins); shallow.
function _M.merge(t1, t2)
    local res = {}
    if t1 then
        for k, v in pairs(t1) do
            res[k] = v
        end
    end
    if t2 then
        for k, v in pairs(t2) do
            res[k] = v
        end
    end
    return res
end

return _M
