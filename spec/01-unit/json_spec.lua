-- Unit: moongate.json, the encoder of the store's rows and the Admin API's
-- bodies.  Its output is held to the encoder it replaced (kept below as
-- `reference`: one string per piece, every object's keys collected and
-- sorted with tostring) on fixed and generated values, to cjson's reading
-- of it, and to Kong's shapes (sorted keys, "/" unescaped, empty tables
-- as objects unless marked).  encode(v, order) -- a row written in its
-- schema's key order, without a sort -- must give the same text as
-- encode(v) for every value, its shortcut taken or not.

local json = require "moongate.json"
local cjson = require "cjson.safe"

local null = cjson.null
local array_mt = json.array_mt

-- the encoder before the rewrite, as it was --------------------------------

local reference
do
    local floor, huge = math.floor, math.huge

    local function is_array(t)
        if getmetatable(t) == array_mt then
            return true
        end
        local n = 0
        for k in pairs(t) do
            if type(k) ~= "number" or k < 1 or k ~= floor(k) then
                return false
            end
            n = n + 1
        end
        return n > 0 and n == #t
    end

    local function encode_string(s)
        if not s:find('[%c"\\]') then
            return '"' .. s .. '"'
        end
        return (cjson.encode(s):gsub("\\/", "/"))
    end

    local function encode(v, out, depth)
        local t = type(v)
        if t == "string" then
            out[#out + 1] = encode_string(v)
        elseif t == "number" then
            if v ~= v or v == huge or v == -huge then
                out[#out + 1] = "null"
            elseif v == floor(v) and v > -2^53 and v < 2^53 then
                out[#out + 1] = string.format("%d", v)
            else
                out[#out + 1] = string.format("%.17g", v)
            end
        elseif t == "boolean" then
            out[#out + 1] = v and "true" or "false"
        elseif t == "table" then
            if depth > 100 then
                error("cannot encode: nested too deeply", 0)
            end
            if is_array(v) then
                out[#out + 1] = "["
                for i = 1, #v do
                    if i > 1 then
                        out[#out + 1] = ","
                    end
                    encode(v[i], out, depth + 1)
                end
                out[#out + 1] = "]"
            else
                local keys = {}
                for k in pairs(v) do
                    keys[#keys + 1] = k
                end
                table.sort(keys, function(a, b)
                    return tostring(a) < tostring(b)
                end)
                out[#out + 1] = "{"
                for i, k in ipairs(keys) do
                    if i > 1 then
                        out[#out + 1] = ","
                    end
                    out[#out + 1] = encode_string(tostring(k))
                    out[#out + 1] = ":"
                    encode(v[k], out, depth + 1)
                end
                out[#out + 1] = "}"
            end
        else
            out[#out + 1] = "null"
        end
    end

    reference = function(v)
        local out = {}
        local ok, err = pcall(encode, v, out, 0)
        if not ok then
            return nil, tostring(err)
        end
        return table.concat(out)
    end
end

-- generated values ----------------------------------------------------------

-- a small deterministic generator (math.random's sequence differs between
-- Lua 5.1 and LuaJIT; this one does not)
local seed = 12345
local function rnd(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n + 1
end

local STRINGS = {
    "", "a", "plain", "/r1/", "http", "with space", 'quo"te', "back\\slash",
    "tab\there", "new\nline", "\0nul", "\127del", "\1\31", "caf\195\169",
    "\226\156\147 check", "a/b/c", "null", "true", "1e5", "[]", "{}",
    "~/v(?<v>\\d+)/x$", string.rep("x", 80),
    -- longer ones, escapes at the end
    string.rep("a", 31) .. '"', string.rep("a", 32) .. "\\",
    string.rep("a", 33) .. "\n", string.rep("/", 40) .. "\127",
    string.rep("b", 32), string.rep("c", 33) .. "\195\169",
}
local NUMBERS = {
    0, 1, -1, 42, 426, 60000, 1700000000, 99999999999999, 1e14, -1e14,
    -99999999999999, 2^53 - 1, 2^53, -2^53, 1.5, -0.25, 1 / 3, 1e300,
    1e-300, 0 / 0, 1 / 0, -1 / 0, 123456789012345678,
}

local gen
local function gen_key()
    local r = rnd(10)
    if r <= 7 then
        return STRINGS[rnd(#STRINGS)] .. (rnd(3) == 1 and tostring(rnd(9)) or "")
    elseif r == 8 then
        return rnd(5)                -- numbers among string keys
    elseif r == 9 then
        return rnd(100) + 0.5
    end
    return "k" .. rnd(20)
end

gen = function(depth)
    local r = rnd(depth > 3 and 6 or 10)
    if r == 1 then
        return STRINGS[rnd(#STRINGS)]
    elseif r == 2 then
        return NUMBERS[rnd(#NUMBERS)]
    elseif r == 3 then
        return rnd(2) == 1
    elseif r == 4 then
        return null
    elseif r == 5 then
        return "s" .. rnd(1000)
    elseif r == 6 then
        return rnd(100000)
    elseif r == 7 then                   -- an array, marked or not
        local t = {}
        for i = 1, rnd(4) - 1 do
            t[i] = gen(depth + 1)
        end
        if rnd(2) == 1 then
            json.array(t)
        end
        return t
    end
    local t = {}                         -- an object, maybe empty
    for _ = 1, rnd(6) - 1 do
        t[gen_key()] = gen(depth + 1)
    end
    return t
end

describe("moongate.json", function()
    it("writes what the encoder it replaced wrote, for any value", function()
        for i = 1, 3000 do
            local v = gen(0)
            local want = assert(reference(v))
            local got, err = json.encode(v)
            assert.is_nil(err)
            if got ~= want then
                -- one readable failure rather than 3000
                assert.equals(want, got, "value #" .. i)
            end
        end
    end)

    it("writes fixed values as before", function()
        local cases = {
            { "x", '"x"' },
            { 'a"b\\c/d\n', '"a\\"b\\\\c/d\\n"' },
            { 1700000000, "1700000000" },
            { -5, "-5" },
            { 99999999999999, "99999999999999" },
            { 1e14, "100000000000000" },
            { 2^53, "9007199254740992" },
            { -0.0, "0" },
            { 0.1, "0.10000000000000001" },
            { 0 / 0, "null" },
            { 1 / 0, "null" },
            { true, "true" },
            { null, "null" },
            { {}, "{}" },
            { json.array(), "[]" },
            { { 1, 2, 3 }, "[1,2,3]" },
            { { [1] = 1, [3] = 3 }, '{"1":1,"3":3}' },
            { { b = 1, a = { d = json.array(), c = {} } },
              '{"a":{"c":{},"d":[]},"b":1}' },
            { { [2] = "n", x = "s", [10] = "m" },
              '{"10":"m","2":"n","x":"s"}' },
            { { ['q"k'] = 1, ["k/"] = 2 }, '{"k/":2,"q\\"k":1}' },
        }
        for _, c in ipairs(cases) do
            assert.equals(c[2], json.encode(c[1]))
            assert.equals(c[2], reference(c[1]))
        end
    end)

    it("writes JSON that cjson reads back to the same values", function()
        local v = {
            name = "r1", paths = { "/r1/" }, tags = json.array(),
            service = { id = "55f20bd0-72a6-567f-8016-e1c05ae5886a" },
            config = { set = { ["x-q"] = '"quoted" \\ back\tslash\n' },
                       n = 1.25, big = 1700000000, off = false },
            hosts = null,
        }
        local back = cjson.decode(json.encode(v))
        assert.same({ "/r1/" }, back.paths)
        assert.same({}, back.tags)
        assert.equals(v.service.id, back.service.id)
        assert.same(v.config, back.config)
        assert.equals(null, back.hosts)
        assert.equals("r1", back.name)
    end)

    it("sorts object keys", function()
        local t = {}
        for i = 1, 50 do
            t["key" .. (i * 7919 % 50)] = i
        end
        local s = json.encode(t)
        local last = ""
        for k in s:gmatch('"(key%d+)"') do
            assert.is_true(k > last, k .. " after " .. last)
            last = k
        end
    end)

    it("refuses what nests too deeply, and encodes after that", function()
        local deep = {}
        local t = deep
        for _ = 1, 120 do
            t.x = {}
            t = t.x
        end
        local s, err = json.encode(deep)
        assert.is_nil(s)
        assert.equals("cannot encode: nested too deeply", err)
        assert.equals('{"a":[1,2]}', json.encode { a = { 1, 2 } })
    end)

    it("encodes a large value, then small ones, right", function()
        local big = {}
        for i = 1, 5000 do
            big[i] = { id = i, name = "n" .. i }
        end
        local s = json.encode(big)
        assert.equals(reference(big), s)
        assert.equals('{"a":1}', json.encode { a = 1 })
        assert.equals("[true]", json.encode { true })
    end)

    describe("with a key order", function()
        local names = { "name", "paths", "id", "service", "tags", "hosts",
                        "created_at", "strip_path", "protocols" }
        local order = json.key_order(names)

        it("gives the text of a plain encode", function()
            local rows = {
                { name = "r1", paths = { "/a" }, id = "x", created_at = 5,
                  strip_path = true, hosts = null,
                  service = { id = "s" }, protocols = { "http", "https" } },
                {},
                { tags = json.array() },
                { name = 'a"b', paths = {} },
                -- a key the order lacks: encoded the general way
                { name = "r", extra = 1, id = "y" },
                { [1] = "a" },
                { [1] = "a", name = "n" },
                json.array { "x" },
                "not a table",
                12,
            }
            for _, v in ipairs(rows) do
                assert.equals(json.encode(v), json.encode(v, order))
                assert.equals(reference(v), json.encode(v, order))
            end
            for _ = 1, 1000 do
                local v = {}
                for _, n in ipairs(names) do
                    if rnd(3) > 1 then
                        v[n] = gen(1)
                    end
                end
                if rnd(5) == 1 then
                    v[gen_key()] = gen(1)
                end
                assert.equals(reference(v), json.encode(v, order))
            end
        end)

        it("reads only the table's own keys", function()
            local v = setmetatable({ name = "n" }, {
                __index = function() return "inherited" end })
            assert.equals('{"name":"n"}', json.encode(v, order))
        end)

        it("takes string names, each once", function()
            local o = json.key_order { "b", "a", "b" }
            assert.equals(2, #o)
            assert.equals("a", o[1])
            assert.equals("b", o[2])
            assert.has_error(function() json.key_order { "a", 1 } end,
                             "key_order: names must be strings")
        end)
    end)
end)
