-- kong.tools.utils -- compatibility name for the helpers custom Kong
-- plugins most often take from it (Kong 3 re-exports them from
-- kong.tools.string / .uuid / .table / .rand): split, strip, uuid,
-- is_valid_uuid, random_string, deep_copy, shallow_copy, table_merge,
-- table_contains, is_array, load_module_if_exists.  Others are absent.

local node = require "moongate.pdk.node"
local codec = require "moongate.codec"

local _M = {}

--- Split str on delim (plain); returns the array and its length.
function _M.split(str, delim, max)
    local out, n, pos = {}, 0, 1
    max = max or math.huge
    while n < max - 1 do
        local s, e = str:find(delim, pos, true)
        if not s then
            break
        end
        n = n + 1
        out[n] = str:sub(pos, s - 1)
        pos = e + 1
    end
    n = n + 1
    out[n] = str:sub(pos)
    return out, n
end

function _M.strip(str)
    if str == nil then
        return ""
    end
    return (tostring(str):gsub("^%s+", ""):gsub("%s+$", ""))
end

_M.uuid = node.uuid

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-" ..
             "%x%x%x%x%x%x%x%x%x%x%x%x$"

function _M.is_valid_uuid(s)
    return type(s) == "string" and s:match(UUID) ~= nil
end

--- 32 random characters from a URL-safe alphabet.
function _M.random_string()
    local f = io.open("/dev/urandom", "rb")
    local bytes = f and f:read(24)
    if f then
        f:close()
    end
    if not bytes then
        local t = {}
        for i = 1, 24 do
            t[i] = string.char(math.random(0, 255))
        end
        bytes = table.concat(t)
    end
    return (codec.encode_base64(bytes):gsub("[+/=]", {
        ["+"] = "a", ["/"] = "b", ["="] = "",
    }))
end

function _M.deep_copy(orig, copy_mt)
    if type(orig) ~= "table" then
        return orig
    end
    local copy = {}
    for k, v in pairs(orig) do
        copy[_M.deep_copy(k, copy_mt)] = _M.deep_copy(v, copy_mt)
    end
    if copy_mt ~= false then
        setmetatable(copy, getmetatable(orig))
    end
    return copy
end

function _M.shallow_copy(orig)
    if type(orig) ~= "table" then
        return orig
    end
    local copy = {}
    for k, v in pairs(orig) do
        copy[k] = v
    end
    return copy
end

function _M.table_merge(t1, t2)
    local res = {}
    for k, v in pairs(t1 or {}) do res[k] = v end
    for k, v in pairs(t2 or {}) do res[k] = v end
    return res
end

function _M.table_contains(arr, val)
    if arr then
        for _, v in pairs(arr) do
            if v == val then
                return true
            end
        end
    end
    return false
end

function _M.is_array(t)
    if type(t) ~= "table" then
        return false
    end
    local i = 0
    for _ in pairs(t) do
        i = i + 1
        if t[i] == nil then
            return false
        end
    end
    return true
end

--- ok, module -- or false, error when the module does not exist (a
-- module that exists but fails to load raises).
function _M.load_module_if_exists(name)
    local ok, res = pcall(require, name)
    if ok then
        return true, res
    end
    if type(res) == "string" and
       res:find("module '" .. name .. "' not found", 1, true) then
        return false, res
    end
    error(res, 2)
end

_M.unpack = unpack or table.unpack
_M.pack = function(...) return { n = select("#", ...), ... } end

return _M
