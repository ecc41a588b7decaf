-- moongate.codec -- the string codecs ngx offers and the PDK needs:
-- base64, URI escaping, query strings (ngx.encode_args / decode_args) and
-- Kong's path normalisation.
--
-- Pure Lua, written for LuaJIT's trace compiler (byte loops into a buffer
-- table, lookup tables built once).  Semantics follow OpenResty's
-- lua-nginx-module: escape_uri escapes everything but A-Z a-z 0-9 - . _ ~
-- (type 2, the default), unescape_uri also turns '+' into a space,
-- decode_args gives `true` for a key without '=' and an array for a
-- repeated key, decode_base64 returns nil on malformed input.
--
-- Rejected: luasocket's `mime` (one more C module in the VM, and its
-- decoder skips invalid characters instead of failing).

local byte = string.byte
local char = string.char
local sub = string.sub
local gsub = string.gsub
local find = string.find
local format = string.format
local concat = table.concat
local sort = table.sort
local type = type
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local floor = math.floor

local _M = {}

-- base64 --------------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC, DEC = {}, {}
for i = 1, 64 do
    local c = byte(B64, i)
    ENC[i - 1] = char(c)
    DEC[c] = i - 1
end
-- the URL-safe alphabet decodes too (ngx.decode_base64url)
local DEC_URL = {}
for k, v in pairs(DEC) do DEC_URL[k] = v end
DEC_URL[byte("-")] = 62
DEC_URL[byte("_")] = 63
DEC_URL[byte("+")] = nil
DEC_URL[byte("/")] = nil

--- ngx.encode_base64(str, no_padding)
function _M.encode_base64(s, no_padding)
    if type(s) ~= "string" then
        if s == nil then
            s = ""
        else
            s = tostring(s)
        end
    end
    local out, n = {}, 0
    local len = #s
    local i = 1
    while i + 2 <= len do
        local a, b, c = byte(s, i, i + 2)
        local v = a * 65536 + b * 256 + c
        n = n + 1
        out[n] = ENC[floor(v / 262144)] .. ENC[floor(v / 4096) % 64] ..
                 ENC[floor(v / 64) % 64] .. ENC[v % 64]
        i = i + 3
    end
    local rest = len - i + 1
    if rest == 1 then
        local v = byte(s, i) * 65536
        n = n + 1
        out[n] = ENC[floor(v / 262144)] .. ENC[floor(v / 4096) % 64] ..
                 (no_padding and "" or "==")
    elseif rest == 2 then
        local a, b = byte(s, i, i + 1)
        local v = a * 65536 + b * 256
        n = n + 1
        out[n] = ENC[floor(v / 262144)] .. ENC[floor(v / 4096) % 64] ..
                 ENC[floor(v / 64) % 64] .. (no_padding and "" or "=")
    end
    return concat(out)
end

local function decode64(s, dec)
    if type(s) ~= "string" then
        error("string argument only", 3)
    end
    -- strip the padding; the rest must be alphabet characters only
    local len = #s
    while len > 0 and byte(s, len) == 61 do      -- '='
        len = len - 1
    end
    if #s - len > 2 or len % 4 == 1 then
        return nil
    end
    local out, n = {}, 0
    local i = 1
    while i + 3 <= len do
        local a, b, c, d = byte(s, i, i + 3)
        a, b, c, d = dec[a], dec[b], dec[c], dec[d]
        if not (a and b and c and d) then
            return nil
        end
        local v = a * 262144 + b * 4096 + c * 64 + d
        n = n + 1
        out[n] = char(floor(v / 65536), floor(v / 256) % 256, v % 256)
        i = i + 4
    end
    local rest = len - i + 1
    if rest == 2 then
        local a, b = byte(s, i, i + 1)
        a, b = dec[a], dec[b]
        if not (a and b) then
            return nil
        end
        n = n + 1
        out[n] = char(floor((a * 262144 + b * 4096) / 65536))
    elseif rest == 3 then
        local a, b, c = byte(s, i, i + 2)
        a, b, c = dec[a], dec[b], dec[c]
        if not (a and b and c) then
            return nil
        end
        local v = a * 262144 + b * 4096 + c * 64
        n = n + 1
        out[n] = char(floor(v / 65536), floor(v / 256) % 256)
    end
    return concat(out)
end

--- ngx.decode_base64(str): the decoded string or nil when malformed.
function _M.decode_base64(s)
    return decode64(s, DEC)
end

--- ngx.base64 URL-safe variants (resty.core.base64 / ngx.base64)
function _M.encode_base64url(s)
    return (gsub(gsub(_M.encode_base64(s, true), "+", "-"), "/", "_"))
end

function _M.decode_base64url(s)
    return decode64(s, DEC_URL)
end

-- URI escaping --------------------------------------------------------------

local HEX = {}
for i = 0, 255 do
    HEX[char(i)] = format("%%%02X", i)
end

--- ngx.escape_uri(str, type): type 2 (default) escapes a URI component,
-- type 0 a whole URI (keeps the reserved characters).
function _M.escape_uri(s, typ)
    if type(s) ~= "string" then
        if s == nil then
            return ""
        end
        s = tostring(s)
    end
    if typ == 0 then
        return (gsub(s, "[^%w%-%._~!%$&'%(%)%*%+,;=:@/]", HEX))
    end
    return (gsub(s, "[^%w%-%._~]", HEX))
end

local function unhex(h)
    return char(tonumber(h, 16))
end

--- ngx.unescape_uri(str): %XX decoded, '+' as a space; malformed escapes
-- are kept as they are.
function _M.unescape_uri(s)
    if type(s) ~= "string" then
        if s == nil then
            return ""
        end
        s = tostring(s)
    end
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", unhex))
end

--- Percent-decoding only (no '+'), for paths.
function _M.unescape_path(s)
    return (gsub(s, "%%(%x%x)", unhex))
end

-- query strings -------------------------------------------------------------

local escape_uri, unescape_uri = _M.escape_uri, _M.unescape_uri

local function encode_pair(out, k, v)
    if v == true then
        out[#out + 1] = escape_uri(k)
    elseif v ~= false and v ~= nil then
        out[#out + 1] = escape_uri(k) .. "=" .. escape_uri(tostring(v))
    end
end

--- ngx.encode_args(table): keys sorted (a stable order for specs and for
-- caches keyed on the result), arrays as repeated keys, `true` as a bare
-- key, `false` left out.  Kong's kong.service.request.set_query sorts too.
function _M.encode_args(args)
    if type(args) ~= "table" then
        error("bad argument #1 to 'encode_args' (table expected, got " ..
              type(args) .. ")", 2)
    end
    local keys = {}
    for k in pairs(args) do
        local tk = type(k)
        if tk ~= "string" and tk ~= "number" then
            error("bad argument #1 to 'encode_args' (bad key type: " ..
                  tk .. ")", 2)
        end
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for _, k in ipairs(keys) do
        local v = args[k]
        local sk = tostring(k)
        if type(v) == "table" then
            for i = 1, #v do
                encode_pair(out, sk, v[i])
            end
        else
            local tv = type(v)
            if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
                error("bad argument #1 to 'encode_args' (bad value type: " ..
                      tv .. ")", 2)
            end
            encode_pair(out, sk, v)
        end
    end
    return concat(out, "&")
end

--- ngx.decode_args(str, max_args): a table (key -> string | true |
-- array), and "truncated" as a second value when more than max_args
-- (default 100, 0 means no limit) were present.
function _M.decode_args(s, max_args)
    local args = {}
    if type(s) ~= "string" or s == "" then
        return args
    end
    max_args = max_args or 100
    local count = 0
    local pos = 1
    local len = #s
    while pos <= len do
        local amp = find(s, "&", pos, true) or (len + 1)
        local part = sub(s, pos, amp - 1)
        pos = amp + 1
        if part ~= "" then
            if max_args > 0 and count >= max_args then
                return args, "truncated"
            end
            count = count + 1
            local eq = find(part, "=", 1, true)
            local k, v
            if eq then
                k = unescape_uri(sub(part, 1, eq - 1))
                v = unescape_uri(sub(part, eq + 1))
            else
                k = unescape_uri(part)
                v = true
            end
            if k ~= "" then
                local old = args[k]
                if old == nil then
                    args[k] = v
                elseif type(old) == "table" then
                    old[#old + 1] = v
                else
                    args[k] = { old, v }
                end
            end
        end
    end
    return args
end

-- paths ---------------------------------------------------------------------

local UNRESERVED = {}
for c in ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
         :gmatch(".") do
    UNRESERVED[c] = true
end

local function norm_escape(h)
    local c = char(tonumber(h, 16))
    if UNRESERVED[c] then
        return c
    end
    return "%" .. h:upper()
end

--- Kong's path normalisation (kong.request.get_path): escapes of
-- unreserved characters decoded, other escapes upper-cased, runs of
-- slashes merged, "." and ".." segments resolved (RFC 3986 5.2.4).
function _M.normalize_path(path)
    if path == "" then
        return "/"
    end
    path = gsub(path, "%%(%x%x)", norm_escape)
    path = gsub(path, "//+", "/")
    if not find(path, "/%.") then
        return path
    end
    local segs, n = {}, 0
    local trailing = false
    local rest = sub(path, 2) .. "/"
    for seg in rest:gmatch("([^/]*)/") do
        trailing = false
        if seg == ".." then
            if n > 0 then
                segs[n] = nil
                n = n - 1
            end
            trailing = true
        elseif seg == "." then
            trailing = true
        elseif seg ~= "" then
            n = n + 1
            segs[n] = seg
        end
    end
    local out = "/" .. concat(segs, "/")
    if (trailing or sub(path, -1) == "/") and out ~= "/" then
        out = out .. "/"
    end
    return out
end

return _M
