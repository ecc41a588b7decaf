-- moongate.bit -- 32-bit bitwise operations: LuaJIT's `bit` module when
-- present (always, inside the binary), else a pure-Lua fallback so that
-- unit specs run on plain Lua 5.1.
--
-- The fallback works on unsigned values (0 .. 2^32-1) while LuaJIT's
-- returns signed ones; callers that print or compare results normalise
-- with `% 2^32`, and both accept either form as input.  Only band, bor,
-- bxor, bnot, lshift, rshift, rol and tobit are provided (what the phase
-- masks and the pure-Lua digests need).
--
-- Rejected: requiring bit32 or luabitop on the test host -- one more
-- package for code the binary never runs.

local ok, bit = pcall(require, "bit")
if ok and type(bit) == "table" and bit.band then
    return bit
end

local floor = math.floor
local M32 = 4294967296

local _M = {}

-- 4-bit lookup tables for and / or / xor
local AND, OR, XOR = {}, {}, {}
for a = 0, 15 do
    for b = 0, 15 do
        local x, y, band_, bor_, bxor_ = a, b, 0, 0, 0
        for i = 0, 3 do
            local p = 2 ^ i
            local xa, yb = x % 2, y % 2
            if xa == 1 and yb == 1 then band_ = band_ + p end
            if xa == 1 or yb == 1 then bor_ = bor_ + p end
            if xa ~= yb then bxor_ = bxor_ + p end
            x, y = floor(x / 2), floor(y / 2)
        end
        AND[a * 16 + b] = band_
        OR[a * 16 + b] = bor_
        XOR[a * 16 + b] = bxor_
    end
end

local function norm(x)
    return floor(x) % M32
end

local function op(t, a, b)
    a, b = norm(a), norm(b)
    local r, p = 0, 1
    for _ = 1, 8 do
        local na, nb = a % 16, b % 16
        r = r + t[na * 16 + nb] * p
        a, b, p = (a - na) / 16, (b - nb) / 16, p * 16
    end
    return r
end

local function fold(t, a, b, ...)
    local r = op(t, a, b)
    if ... then
        return fold(t, r, ...)
    end
    return r
end

function _M.band(a, b, ...) return fold(AND, a, b, ...) end
function _M.bor(a, b, ...) return fold(OR, a, b, ...) end
function _M.bxor(a, b, ...) return fold(XOR, a, b, ...) end

function _M.bnot(a)
    return M32 - 1 - norm(a)
end

function _M.lshift(a, n)
    return (norm(a) * 2 ^ (n % 32)) % M32
end

function _M.rshift(a, n)
    return floor(norm(a) / 2 ^ (n % 32))
end

function _M.rol(a, n)
    a, n = norm(a), n % 32
    return ((a * 2 ^ n) % M32) + floor(a / 2 ^ (32 - n))
end

function _M.tobit(a)
    return norm(a)
end

return _M
