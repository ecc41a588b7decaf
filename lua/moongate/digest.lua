-- moongate.digest -- MD5, SHA-1 and HMAC-SHA1 (and SHA-256 in the
-- binary), for ngx.md5, ngx.md5_bin, ngx.sha1_bin, ngx.hmac_sha1 and the
-- declarative loader's v5 UUIDs.
--
-- Inside the binary they are mbedTLS's (mg_lua_digest / mg_lua_hmac of
-- core/lua/mg_lua_api.h: about 40x faster than Lua for a UUID's input).
-- The pure-Lua versions below stay for the unit specs, which run on
-- plain Lua without the binary, and are checked against the same test
-- vectors (RFC 1321 / FIPS 180-1 / RFC 2104).  Word arithmetic goes
-- through moongate.bit:
-- `tobit` wraps sums to 32 bits (signed under LuaJIT, unsigned in the
-- fallback), and outputs are normalised with `% 2^32`.

local bit = require "moongate.bit"

local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rol, tobit = bit.rol, bit.tobit
local byte, char, rep, format = string.byte, string.char, string.rep,
                                string.format
local concat = table.concat
local floor, abs, sin = math.floor, math.abs, math.sin

local M32 = 4294967296

local _M = {}

local function u32(x)
    return x % M32
end

local function be_bytes(x)
    x = u32(x)
    return char(floor(x / 16777216), floor(x / 65536) % 256,
                floor(x / 256) % 256, x % 256)
end

local function le_bytes(x)
    x = u32(x)
    return char(x % 256, floor(x / 256) % 256, floor(x / 65536) % 256,
                floor(x / 16777216))
end

-- 64-bit message length in bits, as 8 bytes
local function len_bytes(n, big_endian)
    local bits = n * 8
    local hi, lo = floor(bits / M32), bits % M32
    if big_endian then
        return be_bytes(hi) .. be_bytes(lo)
    end
    return le_bytes(lo) .. le_bytes(hi)
end

local function tohex(s)
    return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end
_M.tohex = tohex

-- MD5 -------------------------------------------------------------------------

local MD5_K, MD5_S = {}, {}
for i = 0, 63 do
    MD5_K[i] = floor(abs(sin(i + 1)) * M32)
end
do
    local s = { { 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 },
                { 6, 10, 15, 21 } }
    for i = 0, 63 do
        MD5_S[i] = s[floor(i / 16) + 1][i % 4 + 1]
    end
end

--- The 16-byte MD5 digest of s.
function _M.md5_bin(s)
    local len = #s
    s = s .. "\128" .. rep("\0", (55 - len) % 64) .. len_bytes(len, false)
    local a0, b0, c0, d0 = 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476
    local M = {}
    for chunk = 1, #s, 64 do
        for i = 0, 15 do
            local p = chunk + i * 4
            local w1, w2, w3, w4 = byte(s, p, p + 3)
            M[i] = w1 + w2 * 256 + w3 * 65536 + w4 * 16777216
        end
        local A, B, C, D = a0, b0, c0, d0
        for i = 0, 63 do
            local F, g
            if i < 16 then
                F = bor(band(B, C), band(bnot(B), D))
                g = i
            elseif i < 32 then
                F = bor(band(D, B), band(bnot(D), C))
                g = (5 * i + 1) % 16
            elseif i < 48 then
                F = bxor(B, C, D)
                g = (3 * i + 5) % 16
            else
                F = bxor(C, bor(B, bnot(D)))
                g = (7 * i) % 16
            end
            F = tobit(F + A + MD5_K[i] + M[g])
            A, D, C = D, C, B
            B = tobit(B + rol(F, MD5_S[i]))
        end
        a0, b0 = tobit(a0 + A), tobit(b0 + B)
        c0, d0 = tobit(c0 + C), tobit(d0 + D)
    end
    return le_bytes(a0) .. le_bytes(b0) .. le_bytes(c0) .. le_bytes(d0)
end

--- The MD5 digest of s in lower-case hex (ngx.md5).
function _M.md5(s)
    return tohex(_M.md5_bin(s))
end

-- SHA-1 -----------------------------------------------------------------------

--- The 20-byte SHA-1 digest of s.
function _M.sha1_bin(s)
    local len = #s
    s = s .. "\128" .. rep("\0", (55 - len) % 64) .. len_bytes(len, true)
    local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE,
                               0x10325476, 0xC3D2E1F0
    local w = {}
    for chunk = 1, #s, 64 do
        for i = 0, 15 do
            local p = chunk + i * 4
            local w1, w2, w3, w4 = byte(s, p, p + 3)
            w[i] = tobit(w1 * 16777216 + w2 * 65536 + w3 * 256 + w4)
        end
        for i = 16, 79 do
            w[i] = rol(bxor(w[i - 3], w[i - 8], w[i - 14], w[i - 16]), 1)
        end
        local a, b, c, d, e = h0, h1, h2, h3, h4
        for i = 0, 79 do
            local f, k
            if i < 20 then
                f, k = bor(band(b, c), band(bnot(b), d)), 0x5A827999
            elseif i < 40 then
                f, k = bxor(b, c, d), 0x6ED9EBA1
            elseif i < 60 then
                f, k = bor(band(b, c), band(b, d), band(c, d)), 0x8F1BBCDC
            else
                f, k = bxor(b, c, d), 0xCA62C1D6
            end
            local t = tobit(rol(a, 5) + f + e + k + w[i])
            e, d, c, b, a = d, c, rol(b, 30), a, t
        end
        h0, h1, h2 = tobit(h0 + a), tobit(h1 + b), tobit(h2 + c)
        h3, h4 = tobit(h3 + d), tobit(h4 + e)
    end
    return be_bytes(h0) .. be_bytes(h1) .. be_bytes(h2) .. be_bytes(h3) ..
           be_bytes(h4)
end

-- HMAC-SHA1 -------------------------------------------------------------------

local function xor_pad(key, v)
    local out = {}
    for i = 1, 64 do
        out[i] = char(bxor(byte(key, i), v) % 256)
    end
    return concat(out)
end

--- HMAC-SHA1(key, msg), 20 raw bytes (ngx.hmac_sha1).
function _M.hmac_sha1(key, msg)
    if #key > 64 then
        key = _M.sha1_bin(key)
    end
    key = key .. rep("\0", 64 - #key)
    return _M.sha1_bin(xor_pad(key, 0x5c) ..
                       _M.sha1_bin(xor_pad(key, 0x36) .. msg))
end

-- mbedTLS inside the binary --------------------------------------------------

_M.lua_md5_bin, _M.lua_sha1_bin, _M.lua_hmac_sha1 = _M.md5_bin,
                                                    _M.sha1_bin,
                                                    _M.hmac_sha1

local api = require "moongate.ffi"
if not api.fake then
    local ffi = require "ffi"
    local C = api.C
    local out = ffi.new("unsigned char[32]")
    local ffi_string = ffi.string
    local SIZE = { [0] = 16, [1] = 20, [2] = 32 }

    local function digest(alg, s)
        if C.mg_lua_digest(alg, s, #s, out) ~= 0 then
            error("digest failed", 2)
        end
        return ffi_string(out, SIZE[alg])
    end

    function _M.md5_bin(s)
        return digest(0, s)
    end
    function _M.sha1_bin(s)
        return digest(1, s)
    end
    --- The 32-byte SHA-256 digest of s (binary only).
    function _M.sha256_bin(s)
        return digest(2, s)
    end
    function _M.hmac_sha1(key, msg)
        if C.mg_lua_hmac(1, key, #key, msg, #msg, out) ~= 0 then
            error("hmac failed", 2)
        end
        return ffi_string(out, 20)
    end
end

return _M
