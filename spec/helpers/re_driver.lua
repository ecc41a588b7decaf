-- spec/helpers/re_driver.lua -- the cases of spec/01-unit/re_spec.lua
-- (moongate.re, ngx.re on PCRE2 through the LuaJIT FFI), kept apart from
-- busted because spec/run runs busted on Lua 5.1, which has no FFI.
--
--   require "re_driver"                 -> { { name, fn }, ... }
--   luajit spec/helpers/re_driver.lua   -> runs them, one line per case:
--       ok<TAB>name | not ok<TAB>name<TAB>message (newlines as \n)
--     then done<TAB>count
--
-- A case raises on failure.  The helpers below stand in for luassert,
-- which the LuaJIT side may lack.

local script = (...) ~= "re_driver"

if script then
    local root = (arg and arg[0] or ""):match("^(.*)/spec/helpers/") or "."
    package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" ..
                   root .. "/spec/helpers/?.lua;" .. package.path
end

local re = require "moongate.re"

local fmt = string.format

-- helpers ---------------------------------------------------------------------

local function show(v)
    if type(v) == "string" then
        return fmt("%q", v)
    elseif type(v) ~= "table" then
        return tostring(v)
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
        if type(a) == type(b) then
            return a < b
        end
        return type(a) == "number"
    end)
    local out = {}
    for _, k in ipairs(keys) do
        out[#out + 1] = "[" .. show(k) .. "]=" .. show(v[k])
    end
    return "{" .. table.concat(out, ", ") .. "}"
end

local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not same(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

-- eq(expected, actual[, what]): deep equality
local function eq(want, got, what)
    if not same(want, got) then
        error(fmt("%sexpected %s, got %s", what and (what .. ": ") or "",
                  show(want), show(got)), 2)
    end
end

-- rets(...): the returned values as an array with n
local function rets(...)
    return { n = select("#", ...), ... }
end

local function raises(fn, pattern)
    local ok, err = pcall(fn)
    if ok then
        error("expected an error matching " .. show(pattern), 2)
    end
    if not tostring(err):find(pattern, 1, true) then
        error(fmt("expected an error with %s, got %s", show(pattern),
                  show(err)), 2)
    end
end

-- the cases ---------------------------------------------------------------------

local cases = {}

local function case(name, fn)
    cases[#cases + 1] = { name, fn }
end

case("match: whole match and numbered captures", function()
    local m = re.match("hello, 1234", "([0-9])([0-9]+)")
    eq({ [0] = "1234", "1", "234" }, m)
    m = re.match("hello", "l+")
    eq({ [0] = "ll" }, m)
    -- a number subject is matched as its string
    eq({ [0] = "12" }, re.match(123, "1\\d"))
end)

case("match: no match is a single nil", function()
    local r = rets(re.match("hello", "xyz"))
    eq(1, r.n)
    eq(nil, r[1])
    r = rets(re.match("", "a"))
    eq(nil, r[1])
    eq({ [0] = "" }, re.match("", "a*"))
end)

case("match: unmatched groups are false", function()
    local m = re.match("ac", "(a)(b)?(c)")
    eq({ [0] = "ac", "a", false, "c" }, m)
    -- trailing unset groups too
    m = re.match("a", "(a)(b)?(c)?")
    eq({ [0] = "a", "a", false, false }, m)
    m = re.match("b", "(a)|(b)")
    eq({ [0] = "b", false, "b" }, m)
end)

case("match: named captures by name and number", function()
    local m = re.match("2024-05-17", "(?<y>\\d{4})-(?<m>\\d\\d)-(\\d\\d)")
    eq({ [0] = "2024-05-17", "2024", "05", "17", y = "2024", m = "05" }, m)
    m = re.match("x", "(?<a>x)|(?<b>y)")
    eq(false, m.b)
    eq("x", m.a)
    m = re.match("ab", "(?P<first>a)(?'second'b)")
    eq("a", m.first)
    eq("b", m.second)
end)

case("match: D collects duplicate names into arrays", function()
    local m = re.match("hello, world", "(?<w>\\w+), (?<w>\\w+)", "D")
    eq({ "hello", "world" }, m.w)
    m = re.match("b", "(?<n>a)|(?<n>b)", "D")
    eq({ "b" }, m.n)
    m = re.match("c", "(?<n>a)?c", "D")
    eq(nil, m.n)
    local ok, err = re.match("ab", "(?<n>a)(?<n>b)")
    eq(nil, ok)
    eq('pcre2_compile() failed: two named subpatterns have the same name ' ..
       '(PCRE2_DUPNAMES not set) in "(?<n>a)(?<n>b)" at "b)"', err)
end)

case("match: res_table is filled and returned", function()
    local res = { stale = true }
    local m = re.match("k=v", "(\\w)=(\\w)", "o", nil, res)
    eq(true, m == res, "same table")
    eq("k", res[1])
    eq("v", res[2])
    m = re.match("a=", "(\\w)=(\\w)?", "o", nil, res)
    eq(false, m[2])
    raises(function() re.match("a", "a", nil, nil, "x") end, "res_table")
end)

case("match: ctx.pos starts the search and moves past the match", function()
    local ctx = {}
    eq({ [0] = "1" }, re.match("1,22,333", "\\d+", "", ctx))
    eq(2, ctx.pos)
    eq({ [0] = "22" }, re.match("1,22,333", "\\d+", "", ctx))
    eq(5, ctx.pos)
    eq({ [0] = "333" }, re.match("1,22,333", "\\d+", "", ctx))
    eq(9, ctx.pos)
    eq(nil, re.match("1,22,333", "\\d+", "", ctx))
    eq(9, ctx.pos, "unchanged without a match")
    -- pos <= 0 means the start; nil pos too
    ctx = { pos = -3 }
    eq("1", re.match("1,2", "\\d", "", ctx)[0])
    ctx = { pos = 3 }
    eq("2", re.match("1,2", "\\d", "", ctx)[0])
    -- a loop collecting every number
    local all, c = {}, { pos = 1 }
    while true do
        local m = re.match("a1b22c333", "\\d+", "jo", c)
        if not m then
            break
        end
        all[#all + 1] = m[0]
    end
    eq({ "1", "22", "333" }, all)
    -- a start beyond the end is PCRE2's bad offset
    local r = rets(re.match("abc", "a", "", { pos = 10 }))
    eq(nil, r[1])
    eq("pcre_exec() failed: -33", r[2])
    raises(function() re.match("a", "a", "", { pos = "1" }) end,
           "bad pos field type")
end)

case("flags: i m s x a", function()
    eq("HeLLo", re.match("HeLLo", "hello", "i")[0])
    eq(nil, re.match("HeLLo", "hello"))
    -- m: ^ and $ at line ends
    eq(nil, re.match("one\ntwo", "^two$"))
    eq("two", re.match("one\ntwo", "^two$", "m")[0])
    -- s: dot matches newline
    eq(nil, re.match("a\nb", "a.b"))
    eq("a\nb", re.match("a\nb", "a.b", "s")[0])
    -- x: white space and comments ignored
    eq("ab12", re.match("ab12", [[
        [a-z]+   # letters
        \d+      # digits
    ]], "x")[0])
    -- a: anchored at the start position
    eq(nil, re.match("xab", "ab", "a"))
    eq("ab", re.match("abx", "ab", "a")[0])
    eq("ab", re.match("xab", "ab", "a", { pos = 2 })[0])
    -- combined, in any order
    eq("Two", re.match("one\nTwo\n", "^two$", "mij")[0])
    eq("Two", re.match("one\nTwo\n", "^two$", "jim")[0])
end)

case("flags: j and d", function()
    eq({ [0] = "abc", "b" }, re.match("xabcx", "a(b)c", "j"))
    eq({ [0] = "abc", "b" }, re.match("xabcx", "a(b)c", "jo"))
    -- d: the DFA gives the longest match and no groups
    eq({ [0] = "a" }, re.match("aaa", "a+?"))
    eq({ [0] = "aaa" }, re.match("aaa", "a+?", "d"))
    eq({ [0] = "aaa" }, re.match("aaa", "(a)+?", "dj"))
    -- back references are not for the DFA
    local r = rets(re.match("aa", "(a)\\1", "d"))
    eq(nil, r[1])
    eq(true, r[2]:find("^pcre_exec%(%) failed: %-%d+$") ~= nil, r[2])
end)

case("flags: unknown letters raise", function()
    raises(function() re.match("a", "a", "z") end,
           'unknown flag "z" (flags "z")')
    raises(function() re.find("a", "a", "iq") end,
           'unknown flag "q" (flags "iq")')
    raises(function() re.gsub("a", "a", "b", "k") end, 'unknown flag "k"')
    raises(function() re.match("a", "a", 5) end, "string expected")
    raises(function() re.match("a", {}) end, "string expected")
end)

case("u: UTF-8 patterns and subjects", function()
    local s = "héllo wörld"
    -- without u a dot is one byte, with u one character
    eq("h\195", re.match(s, "^h.")[0])
    eq("hé", re.match(s, "^h.", "u")[0])
    eq("wörld", re.match(s, "w.rld", "u")[0])
    eq(nil, re.match(s, "w.rld"))
    eq("ö", re.match(s, "[ö]", "u")[0])
    eq("é", re.match(s, "\\x{e9}", "u")[0])
    eq("日本", re.match("これは日本語", "日.", "u")[0])
    -- find reports byte offsets
    eq({ 8, 13 }, { re.find(s, "w.rld", "u") })
    -- U skips the UTF-8 check of valid subjects with the same result
    eq("hé", re.match(s, "^h.", "U")[0])
    -- invalid UTF-8 in the subject is an error with u
    local r = rets(re.match("a\255b", "b", "u"))
    eq(nil, r[1])
    eq(true, r[2]:find("^pcre_exec%(%) failed: %-%d+$") ~= nil, r[2])
    -- and in the pattern a compile error
    local m, err = re.match("a", "\255", "u")
    eq(nil, m)
    eq(true, err:find("^pcre2_compile%(%) failed: UTF%-8 error") ~= nil, err)
    -- empty matches step whole characters
    eq({ "-h-é-!-", 4 }, { re.gsub("hé!", "", "-", "u") })
    eq(2, select(2, re.gsub("日本", "", "", "u")) - 1)
end)

case("bad patterns: OpenResty's error texts", function()
    local want = 'pcre2_compile() failed: missing closing parenthesis ' ..
                 'in "(abc"'
    eq({ n = 2, nil, want }, rets(re.match("x", "(abc")))
    eq({ n = 3, nil, nil, want }, rets(re.find("x", "(abc")))
    eq({ n = 2, nil, want }, rets(re.gmatch("x", "(abc")))
    eq({ n = 3, nil, nil, want }, rets(re.sub("x", "(abc", "y")))
    eq({ n = 3, nil, nil, want }, rets(re.gsub("x", "(abc", "y", "jo")))
    eq({ n = 2, nil, want }, rets(re.split("x", "(abc")))
    eq('pcre2_compile() failed: quantifier does not follow a repeatable ' ..
       'item in "a**b" at "*b"', select(2, re.match("x", "a**b")))
    eq('pcre2_compile() failed: missing terminating ] for character ' ..
       'class in "[a-z"', select(2, re.match("x", "[a-z")))
    eq('pcre2_compile() failed: \\ at end of pattern in "ab\\"',
       select(2, re.match("x", "ab\\")))
    -- a failed "o" compile is not cached
    local n = re.cache_count()
    re.match("x", "(abc", "o")
    eq(n, re.cache_count())
end)

case("find: offsets, nth group, ctx", function()
    eq({ n = 2, 5, 7 }, rets(re.find("hello world", "o w")))
    eq({ n = 2, 1, 0 }, rets(re.find("abc", "")))
    eq({ n = 2, nil, nil }, rets(re.find("abc", "x")))
    eq({ 2, 5 }, { re.find("a=123;", "=(\\d+)", "jo", nil, 0) })
    eq({ 3, 5 }, { re.find("a=123;", "=(\\d+)", "jo", nil, 1) })
    eq({ 2, 5 }, { re.find("a=123;", "=(\\d+)", "jo", nil, -1) })
    eq({ n = 2, nil, nil }, rets(re.find("ac", "a(b)?c", nil, nil, 1)))
    eq({ n = 3, nil, nil, "nth out of bound" },
       rets(re.find("ac", "a(b)?c", nil, nil, 2)))
    local ctx = { pos = 4 }
    eq({ 5, 5 }, { re.find("a,b,c,d", "[a-z]", "", ctx) })
    eq(6, ctx.pos)
    eq({ 2, 4 }, { re.find("aé!", "é!", "u") })
end)

case("gmatch: every match, named groups, exhaustion", function()
    local got = {}
    for m in re.gmatch("a=1, b=22, c=333", "(?<k>\\w)=(?<v>\\d+)") do
        got[#got + 1] = m.k .. ":" .. m.v .. ":" .. m[0]
    end
    eq({ "a:1:a=1", "b:22:b=22", "c:333:c=333" }, got)
    local it = assert(re.gmatch("xAxBx", "[A-Z]", "jo"))
    eq("A", it()[0])
    eq("B", it()[0])
    eq(nil, it())
    eq(nil, it(), "still done")
    -- empty matches advance
    got = {}
    for m in re.gmatch("ab", "x*") do
        got[#got + 1] = m[0]
    end
    eq({ "", "", "" }, got)
    got = {}
    for m in re.gmatch("ab,cd", "\\w*") do
        got[#got + 1] = m[0]
    end
    eq({ "ab", "", "cd", "" }, got)
    -- unset groups are false here too
    it = re.gmatch("ac", "(a)(b)?")
    eq({ [0] = "a", "a", false }, it())
    -- a runtime error ends the iteration with nil, err
    it = re.gmatch("a\255", "a", "u")
    local r = rets(it())
    eq(nil, r[1])
    eq(true, r[2]:find("^pcre_exec%(%) failed") ~= nil, r[2])
    eq(nil, it())
end)

case("sub: the first match; n is 0 or 1", function()
    eq({ n = 2, "hexlo", 1 }, rets(re.sub("hello", "l", "x")))
    eq({ n = 2, "hello", 0 }, rets(re.sub("hello", "z", "x")))
    eq({ n = 2, "[h]ello", 1 }, rets(re.sub("hello", "^.", "[$0]")))
    eq({ n = 2, "h5llo", 1 }, rets(re.sub("hello", "e", 5)))
    raises(function() re.sub("a", "a", {}) end,
           "string, number, or function expected")
end)

case("gsub: every match; n counts them", function()
    eq({ n = 2, "hexxo", 2 }, rets(re.gsub("hello", "l", "x")))
    eq({ n = 2, "hello", 0 }, rets(re.gsub("hello", "z", "x")))
    eq({ n = 2, "a_b_c", 2 }, rets(re.gsub("a  b c", "\\s+", "_")))
    eq({ "-a-b-c-", 4 }, { re.gsub("abc", "", "-") })
    eq({ "-a--c-", 4 }, { re.gsub("abc", "b*", "-") })
    eq({ "", 1 }, { re.gsub("", "", "") })
    eq({ "x", 1 }, { re.gsub("", "^", "x") })
    local big = string.rep("ab", 50000)
    local out, n = re.gsub(big, "b", "", "jo")
    eq(50000, n)
    eq(string.rep("a", 50000), out)
end)

case("templates: $0 ${1} $name ${name} $$", function()
    local s = "John Smith"
    local p = "(?<first>\\w+) (?<last>\\w+)"
    eq("Smith, John", (re.sub(s, p, "$2, $1")))
    eq("Smith, John", (re.sub(s, p, "${2}, ${1}")))
    eq("Smith, John", (re.sub(s, p, "$last, $first")))
    eq("Smith_x, John", (re.sub(s, p, "${last}_x, ${first}")))
    eq("[John Smith]", (re.sub(s, p, "[$0]")))
    eq("[John Smith]", (re.sub(s, p, "[${0}]")))
    eq("$5 John", (re.sub(s, p, "$$5 $1")))
    eq("Johnx", (re.sub(s, p, "${1}x")))
    -- a group number past the last group, or an unset group, is empty
    eq("<>", (re.sub(s, p, "<$9>")))
    eq("a<>c", (re.sub("abc", "(x)?b", "<$1>")))
    -- $12 reads as group 12
    eq("a<>c", (re.sub("abc", "(b)", "<$12>")))
    for _, bad in ipairs { "$", "x$", "${1", "${}", "$nope", "${nope}",
                           "$-", "${1x}" } do
        eq({ n = 3, nil, nil, "failed to compile the replacement template" },
           rets(re.gsub(s, p, bad)), bad)
    end
    -- cached templates on a cached regex, two templates for one regex
    eq("J", (re.sub(s, p, "$first", "o"):sub(1, 1)))
    eq("S", (re.sub(s, p, "$last", "o"):sub(1, 1)))
    eq("J", (re.sub(s, p, "$first", "o"):sub(1, 1)))
end)

case("function replacements", function()
    local seen = {}
    local out, n = re.gsub("a1b22", "(?<d>\\d+)", function(m)
        seen[#seen + 1] = m.d
        return "<" .. m[0] .. ">"
    end)
    eq({ "a<1>b<22>", 2 }, { out, n })
    eq({ "1", "22" }, seen)
    -- numbers are converted; the captures table has false for unset groups
    eq("x3y", (re.sub("xay", "(a)(b)?", function(m)
        eq(false, m[2])
        return 3
    end)))
    -- the function may use the same cached regex again
    out = re.gsub("a1 b2 c3", "[a-z]\\d", function(m)
        local inner = re.gsub(m[0] .. m[0], "[a-z]\\d", "_", "jo")
        return inner .. "|"
    end, "jo")
    eq("__| __| __|", out)
    -- only the first with sub
    local function up(m)
        return m[0]:upper()
    end
    eq({ "A bc", 1 }, { re.sub("a bc", "\\w+", up) })
    eq({ "A BC", 2 }, { re.gsub("a bc", "\\w+", up) })
end)

case("split (lua-resty-core's ngx.re)", function()
    eq({ "a", "b", "c", "d" }, re.split("a,b,c,d", ","))
    eq({ "a", "b", "", "c" }, re.split("a,b,,c,,", ","))
    eq({ "a", "1", "b", "2", "c" }, re.split("a1b2c", "(\\d)"))
    eq({ "a", "b", "c,d" }, re.split("a,b,c,d", ",", nil, nil, 3))
    eq({ "a", "b", "c" }, re.split("a, b ,c", "\\s*,\\s*", "jo"))
    eq({ "a", "b", "c" }, re.split("abc", ""))
    eq({}, re.split("", ","))
    local res = { "old", "old", "old", "old" }
    eq(true, re.split("x,y", ",", nil, nil, nil, res) == res)
    -- as OpenResty: a nil ends the new pieces, later slots stay
    eq({ "x", "y", nil, "old" }, res)
    local ctx = { pos = 3 }
    eq({ "b", "c" }, re.split("a,b,c", ",", nil, ctx))
end)

case("cache: 'o' reuses one compiled object, bounded", function()
    re.cache_flush()
    eq(0, re.cache_count())
    local a = assert(re.compile("^/v(\\d+)/", "jo"))
    local b = assert(re.compile("^/v(\\d+)/", "jo"))
    eq(true, a == b, "same object")
    eq(true, a.cached)
    eq(1, re.cache_count())
    -- the options are part of the key
    local c = assert(re.compile("^/v(\\d+)/", "joi"))
    eq(false, a == c)
    -- without "o" nothing is cached
    local d = assert(re.compile("^/v(\\d+)/", "j"))
    eq(false, a == d)
    eq(false, d.cached)
    eq(2, re.cache_count())
    -- calls with "o" go through the cache, and still work after it
    eq("2", re.match("/v2/x", "^/v(\\d+)/", "jo")[1])
    eq(true, a == re.compile("^/v(\\d+)/", "jo"))
    local old_max = re.MAX_CACHE
    re.MAX_CACHE = 16
    for i = 1, 100 do
        assert(re.match("k" .. i, "k" .. i, "o"))
    end
    eq(true, re.cache_count() <= 16, "bounded: " .. re.cache_count())
    -- a recently used entry survives the churn
    local hot = re.compile("hot", "o")
    for i = 1, 100 do
        re.match("z", "z" .. i, "o")
        eq(true, hot == re.compile("hot", "o"), "hot stays cached")
    end
    re.MAX_CACHE = old_max
    collectgarbage()
    collectgarbage()
    eq("k1", re.match("k1", "k1", "o")[0])
    re.cache_flush()
end)

case("opt: jit_stack_size only with an empty cache", function()
    re.cache_flush()
    re.opt("jit_stack_size", 256 * 1024)
    re.match("a", "a", "jo")
    raises(function() re.opt("jit_stack_size", 512 * 1024) end,
           "regexs have already been compiled")
    raises(function() re.opt("nope", 1) end, "unrecognized option name")
    re.cache_flush()
    re.opt("jit_stack_size", 1024 * 1024)
end)

case("Kong-style: bearer token, paths, headers", function()
    local auth = "bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl"
    local m = re.match(auth, "^Bearer\\s+(.+)$", "joi")
    eq("eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", m[1])
    eq(nil, re.match("Basic dXNlcjpwYXNz", "^Bearer\\s+(.+)$", "joi"))
    -- route-style named path capture
    m = re.match("/users/42/orders", "^/users/(?<id>\\d+)(?:/(?<rest>.*))?$",
                 "jo")
    eq("42", m.id)
    eq("orders", m.rest)
    -- header list splitting and media type parsing
    local got = {}
    for v in re.gmatch("gzip, deflate;q=0.5 ,br", "\\s*([^,;\\s]+)[^,]*",
                       "jo") do
        got[#got + 1] = v[1]
    end
    eq({ "gzip", "deflate", "br" }, got)
    eq("application/json",
       re.match("Application/JSON; charset=utf-8", "^\\s*([^;\\s]+)", "jo")[1]
           :lower())
    -- redacting secrets with a template and the i flag
    eq("api_key=***&x=1",
       (re.gsub("API_KEY=abc123&x=1", "(api_key)=[^&]*", "api_key=***",
                "joi")))
    -- IPv4 check as plugins write it
    local ipv4 = [[^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$]]
    eq("10", re.match("10.0.0.1", ipv4, "jo")[1])
    eq(nil, re.match("10.0.0", ipv4, "jo"))
end)

case("wiring: ngx.re, require 'ngx.re', is_regex on PCRE", function()
    local mngx = require "moongate.ngx"
    local ngx = mngx.ngx
    eq(true, ngx.re.match == re.match)
    eq(true, ngx.re.gsub == re.gsub)
    eq("b", ngx.re.match("ab", "b", "jo")[0])
    eq(true, require("ngx.re").split == re.split)
    -- is_regex compiles with PCRE: the syntax scan would pass these
    local validators = require "moongate.schema.validators"
    local is_regex = validators.validators.is_regex
    eq(true, is_regex("^/api/v[0-9]+/(users|groups)$"))
    eq(nil, is_regex("(?<=a+)b"))
    eq(nil, is_regex("\\k<nope>"))
    eq(true, validators.regex_syntax_ok("(?<=a+)b"), "the scan passes it")
    local Schema = require "moongate.schema"
    local s = assert(Schema.new { fields = {
        { f = { type = "string", is_regex = true } } } })
    eq(true, (s:validate { f = "^Bearer\\s+(.+)$" }))
    local ok, errs = s:validate { f = "(?<=a+)b" }
    eq(nil, ok)
    eq("not a valid regex: (?<=a+)b", errs.f)
end)

if not script then
    return cases
end

-- the runner ------------------------------------------------------------------

for _, c in ipairs(cases) do
    local ok, err = xpcall(c[2], debug.traceback)
    if ok then
        io.write("ok\t", c[1], "\n")
    else
        io.write("not ok\t", c[1], "\t",
                 (tostring(err):gsub("\\", "\\\\"):gsub("\n", "\\n")), "\n")
    end
end
io.write("done\t", #cases, "\n")
