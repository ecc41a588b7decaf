-- kong.ip -- is_trusted(address): is the address in the `trusted_ips`
-- property (addresses and CIDR blocks, IPv4 and IPv6)?
--
-- The list comes with the runloop's init document and is compiled once
-- into (bytes, prefix length) pairs; a check parses the address and
-- compares prefixes byte by byte.  Results are memoised per address (a
-- bounded table, cleared when full): the same few proxies ask every time.
--
-- Rejected: resty.ipmatcher's hash of exact addresses -- the lists are
-- short, and this stays dependency-free.

local tonumber = tonumber
local floor = math.floor
local find = string.find
local sub = string.sub
local match = string.match
local gmatch = string.gmatch

local _M = {}

local trusted = {}          -- { { bytes = {...}, bits = n }, ... }
local memo, memo_n = {}, 0
local MEMO_MAX = 4096

local function parse_v4(s)
    local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then
        return nil
    end
    local out = { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
    for i = 1, 4 do
        if out[i] > 255 then
            return nil
        end
    end
    return out
end

local function parse_v6(s)
    if s:sub(1, 1) == "[" and s:sub(-1) == "]" then
        s = s:sub(2, -2)
    end
    local pct = find(s, "%", 1, true)       -- zone id
    if pct then
        s = sub(s, 1, pct - 1)
    end
    if not find(s, ":", 1, true) then
        return nil
    end
    -- an embedded IPv4 tail counts for two groups
    local v4tail
    local head, tail4 = match(s, "^(.*:)(%d+%.%d+%.%d+%.%d+)$")
    if head then
        v4tail = parse_v4(tail4)
        if not v4tail then
            return nil
        end
        s = head .. "0:0"
    end
    local left, right = s, nil
    local dc = find(s, "::", 1, true)
    if dc then
        left, right = sub(s, 1, dc - 1), sub(s, dc + 2)
        if find(right, "::", 1, true) then
            return nil
        end
    end
    local function groups(part)
        local g = {}
        if part == "" then
            return g
        end
        for x in gmatch(part .. ":", "([^:]*):") do
            if not match(x, "^%x%x?%x?%x?$") then
                return nil
            end
            g[#g + 1] = tonumber(x, 16)
        end
        return g
    end
    local lg, rg = groups(left), right and groups(right) or {}
    if not lg or not rg then
        return nil
    end
    local n = #lg + #rg
    if (dc and n > 7) or (not dc and n ~= 8) then
        return nil
    end
    local all = {}
    for i = 1, #lg do all[#all + 1] = lg[i] end
    for _ = 1, 8 - n do all[#all + 1] = 0 end
    for i = 1, #rg do all[#all + 1] = rg[i] end
    local out = {}
    for i = 1, 8 do
        out[#out + 1] = floor(all[i] / 256)
        out[#out + 1] = all[i] % 256
    end
    if v4tail then
        for i = 1, 4 do
            out[12 + i] = v4tail[i]
        end
    end
    return out
end

--- Bytes of an IPv4 (4) or IPv6 (16) address, or nil.
function _M.parse(s)
    if type(s) ~= "string" then
        return nil
    end
    return parse_v4(s) or parse_v6(s)
end

local function parse_cidr(s)
    local addr, bits = match(s, "^(.-)/(%d+)$")
    addr = addr or s
    local bytes = _M.parse(addr)
    if not bytes then
        return nil
    end
    bits = bits and tonumber(bits) or #bytes * 8
    if bits > #bytes * 8 then
        return nil
    end
    return { bytes = bytes, bits = bits }
end

local function in_block(bytes, block)
    if #bytes ~= #block.bytes then
        return false
    end
    local bits = block.bits
    local i = 1
    while bits >= 8 do
        if bytes[i] ~= block.bytes[i] then
            return false
        end
        bits = bits - 8
        i = i + 1
    end
    if bits > 0 then
        local div = 2 ^ (8 - bits)
        return floor(bytes[i] / div) == floor(block.bytes[i] / div)
    end
    return true
end

--- Set the trusted list (an array of addresses / CIDRs).  Returns true,
-- or nil and a message naming the first bad entry.
function _M.configure(list)
    local out = {}
    for _, s in ipairs(list or {}) do
        if s == "unix:" then
            out[#out + 1] = { unix = true }
        else
            local block = parse_cidr(s)
            if not block then
                return nil, "invalid trusted_ips entry: " .. tostring(s)
            end
            out[#out + 1] = block
        end
    end
    trusted = out
    memo, memo_n = {}, 0
    return true
end

--- kong.ip.is_trusted(address)
function _M.is_trusted(address)
    if #trusted == 0 then
        return false
    end
    local hit = memo[address]
    if hit ~= nil then
        return hit
    end
    local ok = false
    if address == "unix:" or (type(address) == "string"
                              and sub(address, 1, 5) == "unix:") then
        for _, b in ipairs(trusted) do
            if b.unix then
                ok = true
                break
            end
        end
    else
        local bytes = _M.parse(address)
        if bytes then
            for _, b in ipairs(trusted) do
                if b.bytes and in_block(bytes, b) then
                    ok = true
                    break
                end
            end
        end
    end
    if memo_n >= MEMO_MAX then
        memo, memo_n = {}, 0
    end
    memo[address] = ok
    memo_n = memo_n + 1
    return ok
end

return _M
