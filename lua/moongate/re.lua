-- moongate.re -- OpenResty's ngx.re (match, find, gmatch, sub, gsub, and
-- ngx.re's split/opt from lua-resty-core's `ngx.re` module) on PCRE2,
-- called straight through the LuaJIT FFI (libpcre2-8, no C glue in the
-- core).  moongate.ngx installs it as `ngx.re`.
--
-- Lifecycle: loaded once per VM; loading fails (require raises) without
-- the FFI or libpcre2-8, and moongate.ngx then keeps ngx.re as a table
-- that names what is missing.  A compiled regex is a Lua table holding a
-- pcre2_code and its match data, both released by ffi.gc.  With the "o"
-- option it lives in a per-VM LRU cache of MAX_CACHE entries keyed by
-- (pattern, options) and is reused; without "o" it is compiled for the call
-- and freed as soon as the call is done (a gmatch iterator frees it when it
-- is exhausted or collected), as OpenResty does.
--
-- Semantics follow lua-nginx-module / lua-resty-core: unmatched groups are
-- false, named groups appear under their names (as arrays with "D"),
-- ctx.pos is 1-based and left after the match, errors are `nil, err` with
-- OpenResty's texts ("pcre2_compile() failed: ... in \"pat\"",
-- "pcre_exec() failed: N", "failed to compile the replacement template"),
-- an unknown option letter raises.  Replacement templates take $0..$N,
-- ${N} and $$ and, beyond OpenResty, $name / ${name} for named groups.
-- After an empty match the next search starts one character later (a
-- whole UTF-8 character with "u"/"U", where OpenResty steps one byte).
--
-- The match data of a cached regex is shared by every caller: an FFI call
-- never yields, and each function copies the offsets it needs out of the
-- ovector before running Lua code (a gsub replacement function) that could
-- match again with the same regex.
--
-- Rejected: a C binding in core/lua (one more C surface for what the FFI
-- reaches directly), and caching every pattern whatever its options (a
-- plugin building patterns from request data would evict the "o" ones).

local ffi = require "ffi"
local bit = require "bit"

local ffi_new = ffi.new
local ffi_gc = ffi.gc
local ffi_cast = ffi.cast
local ffi_string = ffi.string
local bor = bit.bor
local type = type
local pcall = pcall
local ipairs = ipairs
local error = error
local tostring = tostring
local tonumber = tonumber
local byte = string.byte
local sub = string.sub
local find = string.find
local match = string.match
local format = string.format
local concat = table.concat
local max = math.max
local min = math.min

local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then
    new_tab = function() return {} end
end

ffi.cdef [[
typedef struct mg_pcre2_code mg_pcre2_code;
typedef struct mg_pcre2_match_data mg_pcre2_match_data;
typedef struct mg_pcre2_match_context mg_pcre2_match_context;
typedef struct mg_pcre2_jit_stack mg_pcre2_jit_stack;

mg_pcre2_code *pcre2_compile_8(const char *pattern, size_t length,
    uint32_t options, int *errorcode, size_t *erroroffset, void *ccontext);
void pcre2_code_free_8(mg_pcre2_code *code);
int pcre2_jit_compile_8(mg_pcre2_code *code, uint32_t options);
int pcre2_pattern_info_8(const mg_pcre2_code *code, uint32_t what,
    void *where);
int pcre2_get_error_message_8(int errorcode, unsigned char *buffer,
    size_t bufflen);

mg_pcre2_match_data *pcre2_match_data_create_from_pattern_8(
    const mg_pcre2_code *code, void *gcontext);
void pcre2_match_data_free_8(mg_pcre2_match_data *match_data);
size_t *pcre2_get_ovector_pointer_8(mg_pcre2_match_data *match_data);

int pcre2_match_8(const mg_pcre2_code *code, const char *subject,
    size_t length, size_t startoffset, uint32_t options,
    mg_pcre2_match_data *match_data, mg_pcre2_match_context *mcontext);
int pcre2_dfa_match_8(const mg_pcre2_code *code, const char *subject,
    size_t length, size_t startoffset, uint32_t options,
    mg_pcre2_match_data *match_data, mg_pcre2_match_context *mcontext,
    int *workspace, size_t wscount);

mg_pcre2_match_context *pcre2_match_context_create_8(void *gcontext);
void pcre2_match_context_free_8(mg_pcre2_match_context *mcontext);
mg_pcre2_jit_stack *pcre2_jit_stack_create_8(size_t startsize,
    size_t maxsize, void *gcontext);
void pcre2_jit_stack_free_8(mg_pcre2_jit_stack *stack);
void pcre2_jit_stack_assign_8(mg_pcre2_match_context *mcontext,
    void *callback, void *callback_data);
]]

local function load_lib()
    local errs = {}
    for _, name in ipairs { "pcre2-8", "libpcre2-8.so.0" } do
        local ok, lib = pcall(ffi.load, name)
        if ok then
            return lib
        end
        errs[#errs + 1] = tostring(lib)
    end
    error("moongate.re: cannot load libpcre2-8: " .. concat(errs, "; "), 2)
end

local pcre = load_lib()

local _M = { MAX_CACHE = 1024 }

-- pcre2.h
local PCRE2_ANCHORED = 0x80000000
local PCRE2_NO_UTF_CHECK = 0x40000000
local PCRE2_ALLOW_EMPTY_CLASS = 0x00000001
local PCRE2_ALT_BSUX = 0x00000002
local PCRE2_CASELESS = 0x00000008
local PCRE2_DOTALL = 0x00000020
local PCRE2_DUPNAMES = 0x00000040
local PCRE2_EXTENDED = 0x00000080
local PCRE2_MATCH_UNSET_BACKREF = 0x00000200
local PCRE2_MULTILINE = 0x00000400
local PCRE2_UTF = 0x00080000
local PCRE2_JIT_COMPLETE = 0x00000001
local PCRE2_INFO_CAPTURECOUNT = 4
local PCRE2_INFO_NAMECOUNT = 17
local PCRE2_INFO_NAMEENTRYSIZE = 18
local PCRE2_INFO_NAMETABLE = 19
local PCRE2_ERROR_NOMATCH = -1

local DFA_WORKSPACE = 100           -- ints, as lua-nginx-module
local JIT_STACK_MIN = 32 * 1024
local JIT_STACK_MAX = 1024 * 1024

-- bit.bor yields signed 32-bit numbers; PCRE2 takes uint32_t
local function u32(n)
    if n < 0 then
        return n + 4294967296
    end
    return n
end

-- scratch out-parameters: FFI calls never yield, read right after the call
local errcode = ffi_new("int[1]")
local erroff = ffi_new("size_t[1]")
local u32_out = ffi_new("uint32_t[1]")
local ptr_out = ffi_new("const unsigned char *[1]")
local errbuf = ffi_new("unsigned char[256]")
local dfa_ws = ffi_new("int[?]", DFA_WORKSPACE)

-- The ovector is size_t pairs, PCRE2_UNSET (~0) for an unset group.  On a
-- little-endian machine the low 32 bits of each entry are the offset (Lua
-- strings stay below 2^31 bytes) and -1 for unset, read as plain numbers
-- without boxing a 64-bit cdata per access.
local ov_ptr_t, ovget
if ffi.abi("le") then
    local stride = ffi.sizeof("size_t") / 4
    ov_ptr_t = ffi.typeof("const int32_t *")
    ovget = function(p, i)
        return p[i * stride]
    end
else
    local UNSET = ffi_cast("size_t", -1)
    ov_ptr_t = ffi.typeof("const size_t *")
    ovget = function(p, i)
        local v = p[i]
        if v == UNSET then
            return -1
        end
        return tonumber(v)
    end
end

-- one match context for the VM, carrying a JIT stack larger than the 32 KB
-- of machine stack PCRE2 uses by default
local mctx = pcre.pcre2_match_context_create_8(nil)
local anchors = {}              -- cdata that must live as long as mctx

local function set_jit_stack(size)
    if mctx == nil then
        return nil, "no PCRE2 match context"
    end
    local stack = pcre.pcre2_jit_stack_create_8(min(JIT_STACK_MIN, size),
                                                size, nil)
    if stack == nil then
        return nil, "cannot create a JIT stack of " .. tostring(size) ..
                    " bytes"
    end
    stack = ffi_gc(stack, pcre.pcre2_jit_stack_free_8)
    pcre.pcre2_jit_stack_assign_8(mctx, nil, stack)
    anchors.jit_stack = stack   -- the old one is collected, unused now
    return true
end

if mctx ~= nil then
    mctx = ffi_gc(mctx, pcre.pcre2_match_context_free_8)
    set_jit_stack(JIT_STACK_MAX)
end

-- options ---------------------------------------------------------------------

-- option letter -> PCRE2 compile bits and our own flags
local OPT_BITS = {
    a = PCRE2_ANCHORED, i = PCRE2_CASELESS, m = PCRE2_MULTILINE,
    s = PCRE2_DOTALL, x = PCRE2_EXTENDED, u = PCRE2_UTF, U = PCRE2_UTF,
    D = PCRE2_DUPNAMES,
    -- PCRE2's spelling of PCRE1's PCRE_JAVASCRIPT_COMPAT
    J = bor(PCRE2_ALT_BSUX, PCRE2_MATCH_UNSET_BACKREF,
            PCRE2_ALLOW_EMPTY_CLASS),
    o = 0, j = 0, d = 0,
}

local parsed_opts = {}          -- options string -> parsed record
local parsed_count = 0

-- Parse an options string once; raises on an unknown letter (OpenResty
-- does, through luaL_argerror).
local function parse_opts(opts, level)
    local p = parsed_opts[opts]
    if p then
        return p
    end
    local bits = 0
    for i = 1, #opts do
        local c = sub(opts, i, i)
        local b = OPT_BITS[c]
        if not b then
            error(format('unknown flag "%s" (flags "%s")', c, opts),
                  level + 1)
        end
        bits = bor(bits, b)
    end
    p = {
        bits = u32(bits),
        once = find(opts, "o", 1, true) ~= nil,
        dfa = find(opts, "d", 1, true) ~= nil,
        jit = find(opts, "j", 1, true) ~= nil,
        dup = find(opts, "D", 1, true) ~= nil,
        utf = find(opts, "[uU]") ~= nil,
        exec = find(opts, "U", 1, true) and PCRE2_NO_UTF_CHECK or 0,
    }
    if parsed_count < 256 then  -- option strings are nearly always literals
        parsed_count = parsed_count + 1
        parsed_opts[opts] = p
    end
    return p
end

-- the cache ---------------------------------------------------------------------

-- Two generations, each at most half the bound: hits come from `young`,
-- or move there from `old`; when `young` is full, `old` is dropped and
-- `young` becomes it.  A regex used since the last turnover survives the
-- next one; dropped ones are freed by the GC once no gmatch iterator holds
-- them.  (A true LRU list costs more per hit than it saves here.)
local young, old = {}, {}
local young_n, old_n = 0, 0

local function cache_get(key)
    local e = young[key]
    if e then
        return e
    end
    e = old[key]
    if e then
        old[key] = nil
        old_n = old_n - 1
        young[key] = e
        young_n = young_n + 1
    end
    return e
end

local function cache_put(key, e)
    if young_n >= _M.MAX_CACHE / 2 then
        old, old_n = young, young_n
        young, young_n = {}, 0
    end
    young[key] = e
    young_n = young_n + 1
end

--- Number of compiled regexes in the cache.
function _M.cache_count()
    return young_n + old_n
end

--- Drop every cached regex (they are freed once unused).
function _M.cache_flush()
    young, old, young_n, old_n = {}, {}, 0, 0
end

-- compiling -------------------------------------------------------------------

local function free_regex(e)
    local code, md = e.code, e.md
    e.code, e.md, e.ov = nil, nil, nil
    if md ~= nil then
        pcre.pcre2_match_data_free_8(ffi_gc(md, nil))
    end
    if code ~= nil then
        pcre.pcre2_code_free_8(ffi_gc(code, nil))
    end
end

-- a regex compiled for one call goes away with it
local function release(e)
    if not e.cached and e.code then
        free_regex(e)
    end
end

local function info_u32(code, what)
    if pcre.pcre2_pattern_info_8(code, what, u32_out) ~= 0 then
        return 0
    end
    return tonumber(u32_out[0])
end

-- name table entries: 2 bytes of group number (big-endian), the name, NUL
local function read_names(code)
    local count = info_u32(code, PCRE2_INFO_NAMECOUNT)
    if count == 0 then
        return nil, nil
    end
    local size = info_u32(code, PCRE2_INFO_NAMEENTRYSIZE)
    pcre.pcre2_pattern_info_8(code, PCRE2_INFO_NAMETABLE, ptr_out)
    local t = ptr_out[0]
    local names, by_name = {}, {}
    for i = 0, count - 1 do
        local ent = t + i * size
        local n = ent[0] * 256 + ent[1]
        local name = ffi_string(ent + 2)
        names[#names + 1] = { n, name }
        local nums = by_name[name]
        if nums then
            nums[#nums + 1] = n
        else
            by_name[name] = { n }
        end
    end
    return names, by_name
end

local function compile_error(regex)
    pcre.pcre2_get_error_message_8(errcode[0], errbuf, 256)
    local msg = ffi_string(errbuf)
    local off = tonumber(erroff[0])
    if off >= #regex then
        return format('pcre2_compile() failed: %s in "%s"', msg, regex)
    end
    return format('pcre2_compile() failed: %s in "%s" at "%s"', msg, regex,
                  sub(regex, off + 1))
end

-- Compile `regex` with parsed options `p` (no cache involved).
local function compile_new(regex, p)
    local code = pcre.pcre2_compile_8(regex, #regex, p.bits, errcode,
                                      erroff, nil)
    if code == nil then
        return nil, compile_error(regex)
    end
    code = ffi_gc(code, pcre.pcre2_code_free_8)
    if p.jit and not p.dfa then
        -- no JIT (W^X policies, unsupported CPU) leaves the interpreter
        pcre.pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE)
    end
    local md = pcre.pcre2_match_data_create_from_pattern_8(code, nil)
    if md == nil then
        pcre.pcre2_code_free_8(ffi_gc(code, nil))
        return nil, "no memory"
    end
    md = ffi_gc(md, pcre.pcre2_match_data_free_8)
    local names, by_name = read_names(code)
    return {
        code = code,
        md = md,
        ov = ffi_cast(ov_ptr_t, pcre.pcre2_get_ovector_pointer_8(md)),
        -- DFA mode reports the whole match only, as OpenResty's does
        ncap = p.dfa and 0 or info_u32(code, PCRE2_INFO_CAPTURECOUNT),
        names = names,
        by_name = by_name,
        dup = p.dup,
        dfa = p.dfa,
        utf = p.utf,
        exec = p.exec,
        cached = false,
        pattern = regex,
    }
end

-- The compiled regex for (regex, opts): from the cache with "o".  Returns
-- the regex, or nil and the error text.  `level` is the caller's level for
-- argument errors.
local function compile(regex, opts, level)
    local tr = type(regex)
    if tr ~= "string" then
        if tr ~= "number" then
            error("bad argument #2 (string expected, got " .. tr .. ")",
                  level + 1)
        end
        regex = tostring(regex)
    end
    if opts == nil then
        opts = ""
    elseif type(opts) ~= "string" then
        error("bad options argument (string expected, got " ..
              type(opts) .. ")", level + 1)
    end
    local p = parse_opts(opts, level + 1)
    if not p.once then
        return compile_new(regex, p)
    end
    local key = regex .. "\0" .. opts
    local e = cache_get(key)
    if e then
        return e
    end
    local err
    e, err = compile_new(regex, p)
    if not e then
        return nil, err
    end
    e.cached = true
    cache_put(key, e)
    return e
end

--- The compiled regex object for (regex, opts), or nil and an error: the
-- cached object itself with "o".  For tests and diagnostics.
function _M.compile(regex, opts)
    return compile(regex, opts, 2)
end

-- matching ----------------------------------------------------------------------

-- Run regex `e` on subj from 0-based byte offset `pos`; PCRE2's return
-- code, made 1 (the whole match) in DFA mode.
local function exec(e, subj, len, pos)
    if e.dfa then
        local rc = pcre.pcre2_dfa_match_8(e.code, subj, len, pos, e.exec,
                                          e.md, mctx, dfa_ws, DFA_WORKSPACE)
        if rc >= 0 then
            return 1            -- longest match first; the others dropped
        end
        return rc
    end
    return pcre.pcre2_match_8(e.code, subj, len, pos, e.exec, e.md, mctx)
end

local function exec_error(rc)
    return "pcre_exec() failed: " .. tostring(rc)
end

-- the offset after an empty match at `pos`: a whole character with UTF-8
local function step(e, subj, pos)
    if e.utf then
        local c = byte(subj, pos + 1)
        if c and c >= 0xC0 then
            return pos + (c >= 0xF0 and 4 or c >= 0xE0 and 3 or 2)
        end
    end
    return pos + 1
end

-- The captures table of the last match (rc from exec): [0] the whole
-- match, [1..n] the groups (false when unset), named groups by name (with
-- "D" an array of the set ones, absent when none is).
local function captures(e, rc, subj, res)
    local ncap, p = e.ncap, e.ov
    if not res then
        res = new_tab(ncap, e.names and #e.names or 0)
    end
    for i = 0, ncap do
        local from = i < rc and ovget(p, 2 * i) or -1
        if from >= 0 then
            res[i] = sub(subj, from + 1, ovget(p, 2 * i + 1))
        else
            res[i] = false
        end
    end
    local names = e.names
    if names then
        if e.dup then
            for k = 1, #names do
                res[names[k][2]] = nil
            end
            for k = 1, #names do
                local nm = names[k]
                local v = res[nm[1]]
                if v then
                    local t = res[nm[2]]
                    if t then
                        t[#t + 1] = v
                    else
                        res[nm[2]] = { v }
                    end
                end
            end
        else
            for k = 1, #names do
                local nm = names[k]
                res[nm[2]] = res[nm[1]]
            end
        end
    end
    return res
end

local function start_pos(ctx, level)
    if ctx == nil then
        return 0
    end
    if type(ctx) ~= "table" then
        error("bad ctx argument (table expected, got " .. type(ctx) .. ")",
              level + 1)
    end
    local pos = ctx.pos
    if pos == nil then
        return 0
    end
    if type(pos) ~= "number" then
        error("bad pos field type in the ctx table argument: " .. type(pos),
              level + 1)
    end
    if pos <= 0 then
        return 0
    end
    return pos - 1
end

local function subject(s)
    if type(s) ~= "string" then
        return tostring(s)
    end
    return s
end

--- ngx.re.match(subject, regex, options?, ctx?, res_table?) -> captures,
-- or nil (no match), or nil, err.  `captures` is res_table when given
-- (its group and name slots overwritten).  ctx.pos (1-based, default 1)
-- says where to start and is set past the match.
function _M.match(subj, regex, opts, ctx, res)
    subj = subject(subj)
    local e, err = compile(regex, opts, 2)
    if not e then
        return nil, err
    end
    local rc = exec(e, subj, #subj, start_pos(ctx, 2))
    if rc < 0 then
        release(e)
        if rc == PCRE2_ERROR_NOMATCH then
            return nil
        end
        return nil, exec_error(rc)
    end
    if ctx then
        ctx.pos = ovget(e.ov, 1) + 1
    end
    if res ~= nil and type(res) ~= "table" then
        release(e)
        error("bad res_table argument (table expected)", 2)
    end
    res = captures(e, rc, subj, res)
    release(e)
    return res
end

--- ngx.re.find(subject, regex, options?, ctx?, nth?) -> from, to (1-based,
-- inclusive) of the whole match or of group `nth`; nil, nil when there is
-- no match or that group is unset; nil, nil, err on errors.
function _M.find(subj, regex, opts, ctx, nth)
    subj = subject(subj)
    local e, err = compile(regex, opts, 2)
    if not e then
        return nil, nil, err
    end
    local rc = exec(e, subj, #subj, start_pos(ctx, 2))
    if rc < 0 then
        release(e)
        if rc == PCRE2_ERROR_NOMATCH then
            return nil, nil
        end
        return nil, nil, exec_error(rc)
    end
    local p = e.ov
    if ctx then
        ctx.pos = ovget(p, 1) + 1
    end
    if not nth or nth < 0 then
        nth = 0
    end
    local ncap = e.ncap
    local from, to = -1, -1
    if nth <= ncap and nth < rc then
        from, to = ovget(p, 2 * nth), ovget(p, 2 * nth + 1)
    end
    release(e)
    if nth > ncap then
        return nil, nil, "nth out of bound"
    end
    if from < 0 then
        return nil, nil
    end
    return from + 1, to
end

--- ngx.re.gmatch(subject, regex, options?) -> iterator, or nil, err.  Each
-- call of the iterator returns the next match's captures (as ngx.re.match),
-- nil when there are no more, or nil, err.
function _M.gmatch(subj, regex, opts)
    subj = subject(subj)
    local e, err = compile(regex, opts, 2)
    if not e then
        return nil, err
    end
    local len = #subj
    local pos = 0               -- -1 once done
    return function()
        if pos < 0 then
            return nil
        end
        local rc = exec(e, subj, len, pos)
        if rc < 0 then
            pos = -1
            release(e)
            if rc == PCRE2_ERROR_NOMATCH then
                return nil
            end
            return nil, exec_error(rc)
        end
        local from, to = ovget(e.ov, 0), ovget(e.ov, 1)
        local res = captures(e, rc, subj)
        pos = from == to and step(e, subj, to) or to
        if pos > len then
            pos = -1
            release(e)
        end
        return res
    end
end

-- replacement templates -------------------------------------------------------

-- Compile template `s` for regex `e` into parts: strings are literal,
-- numbers group numbers, tables the group numbers of one name.  Nil when
-- it is malformed or names a group the regex lacks.
local function template(e, s)
    local tpls = e.tpls
    local parts = tpls and tpls[s]
    if parts then
        return parts
    end
    parts = {}
    local lit = {}
    local function flush()
        if #lit > 0 then
            parts[#parts + 1] = concat(lit)
            lit = {}
        end
    end
    local function name_ref(name)
        local nums = e.by_name and e.by_name[name]
        if not nums then
            return nil
        end
        flush()
        parts[#parts + 1] = #nums == 1 and nums[1] or nums
        return true
    end
    local i, n = 1, #s
    while i <= n do
        local j = find(s, "$", i, true)
        if not j then
            lit[#lit + 1] = sub(s, i)
            break
        end
        if j > i then
            lit[#lit + 1] = sub(s, i, j - 1)
        end
        local c = sub(s, j + 1, j + 1)
        if c == "$" then
            lit[#lit + 1] = "$"
            i = j + 2
        elseif match(c, "%d") then
            local d = match(s, "^%d+", j + 1)
            flush()
            parts[#parts + 1] = tonumber(d)
            i = j + 1 + #d
        elseif c == "{" then
            local inner, after = match(s, "^{([%w_]+)}()", j + 1)
            if not inner then
                return nil
            end
            if match(inner, "^%d+$") then
                flush()
                parts[#parts + 1] = tonumber(inner)
            elseif not match(inner, "^[%a_]") or not name_ref(inner) then
                return nil
            end
            i = after
        elseif match(c, "[%a_]") then
            local name = match(s, "^[%a_][%w_]*", j + 1)
            if not name_ref(name) then
                return nil
            end
            i = j + 1 + #name
        else
            return nil
        end
    end
    flush()
    if e.cached then
        if not tpls or e.tpls_n >= 64 then
            tpls = {}
            e.tpls, e.tpls_n = tpls, 0
        end
        tpls[s] = parts
        e.tpls_n = e.tpls_n + 1
    end
    return parts
end

-- the text of group g of the last match, "" when unset or absent
local function group(e, rc, subj, g)
    if g > e.ncap or g >= rc then
        return ""
    end
    local from = ovget(e.ov, 2 * g)
    if from < 0 then
        return ""
    end
    return sub(subj, from + 1, ovget(e.ov, 2 * g + 1))
end

local function expand(e, rc, subj, parts, out, k)
    for i = 1, #parts do
        local part = parts[i]
        local tp = type(part)
        if tp == "string" then
            k = k + 1
            out[k] = part
        elseif tp == "number" then
            k = k + 1
            out[k] = group(e, rc, subj, part)
        else
            local v = ""
            for m = 1, #part do
                v = group(e, rc, subj, part[m])
                if v ~= "" then
                    break
                end
            end
            k = k + 1
            out[k] = v
        end
    end
    return k
end

local function substitute(subj, regex, repl, opts, global)
    subj = subject(subj)
    local tr = type(repl)
    local func
    if tr == "function" then
        func = repl
    elseif tr == "string" or tr == "number" then
        repl = tostring(repl)
    else
        error("bad argument #3 (string, number, or function expected, " ..
              "got " .. tr .. ")", 3)
    end
    local e, err = compile(regex, opts, 3)
    if not e then
        return nil, nil, err
    end
    local parts
    if not func then
        parts = template(e, repl)
        if not parts then
            release(e)
            return nil, nil, "failed to compile the replacement template"
        end
    end
    local len = #subj
    local out, k = {}, 0
    local count, pos, cp = 0, 0, 0
    while true do
        local rc = exec(e, subj, len, pos)
        if rc < 0 then
            if rc == PCRE2_ERROR_NOMATCH then
                break
            end
            release(e)
            return nil, nil, exec_error(rc)
        end
        count = count + 1
        local from, to = ovget(e.ov, 0), ovget(e.ov, 1)
        if from > cp then
            k = k + 1
            out[k] = sub(subj, cp + 1, from)
        end
        if func then
            -- may run ngx.re again, with this very regex: offsets are
            -- already copied out
            k = k + 1
            out[k] = tostring(func(captures(e, rc, subj)))
        else
            k = expand(e, rc, subj, parts, out, k)
        end
        cp = to
        pos = from == to and step(e, subj, to) or to
        if not global or pos > len then
            break
        end
    end
    release(e)
    if count == 0 then
        return subj, 0
    end
    if cp < len then
        k = k + 1
        out[k] = sub(subj, cp + 1)
    end
    return concat(out, "", 1, k), count
end

--- ngx.re.sub(subject, regex, replace, options?) -> new, n (0 or 1), or
-- nil, nil, err.  `replace` is a template or a function given the
-- captures table and returning the replacement.
function _M.sub(subj, regex, repl, opts)
    local s, n, err = substitute(subj, regex, repl, opts, false)
    if err then
        return nil, nil, err
    end
    return s, n
end

--- ngx.re.gsub: ngx.re.sub for every match; n is how many there were.
function _M.gsub(subj, regex, repl, opts)
    local s, n, err = substitute(subj, regex, repl, opts, true)
    if err then
        return nil, nil, err
    end
    return s, n
end

-- lua-resty-core's ngx.re module ------------------------------------------

local split_ctx = {}

--- split(subject, regex, options?, ctx?, max?, res?) -> array of the
-- pieces between matches (with the first group of each match between
-- them when the regex captures), or nil, err.  At most `max` pieces when
-- max > 0; trailing empty pieces are dropped when there is no max.
function _M.split(subj, regex, opts, ctx, max_n, res)
    subj = subject(subj)
    if not ctx then
        ctx = split_ctx
        ctx.pos = 1
    elseif not ctx.pos then
        ctx.pos = 1
    end
    max_n = max_n or 0
    if res == nil then
        res = {}
    elseif type(res) ~= "table" then
        error("res is not a table", 2)
    end
    local len = #subj
    if ctx.pos > len then
        res[1] = nil
        return res
    end
    local e, err = compile(regex, opts, 2)
    if not e then
        return nil, err
    end
    local sub_idx = ctx.pos     -- 1-based start of the current piece
    local pos = max(ctx.pos - 1, 0)
    local n, count = 0, 1
    local last_empty
    while max_n <= 0 or count < max_n do
        local rc = exec(e, subj, len, pos)
        if rc < 0 then
            if rc == PCRE2_ERROR_NOMATCH then
                break
            end
            release(e)
            return nil, exec_error(rc)
        end
        local from, to = ovget(e.ov, 0), ovget(e.ov, 1)
        local capture
        if e.ncap > 0 and rc > 1 and ovget(e.ov, 2) >= 0 then
            capture = sub(subj, ovget(e.ov, 2) + 1, ovget(e.ov, 3))
        end
        pos = from == to and step(e, subj, to) or to
        ctx.pos = pos
        from, to = from + 1, to + 1     -- 1-based: first, one past last
        if last_empty then
            sub_idx = last_empty
        end
        if from == to then
            last_empty = from
        end
        if from > sub_idx or not last_empty then
            count = count + 1
            n = n + 1
            res[n] = sub(subj, sub_idx, from - 1)
            if capture then
                n = n + 1
                res[n] = capture
            end
            sub_idx = to
            if sub_idx > len then
                break
            end
        end
    end
    release(e)
    if max_n <= 0 and sub_idx > len then
        for i = n, 1, -1 do
            if res[i] ~= "" then
                n = i
                break
            end
            res[i] = nil
            n = i - 1
        end
    else
        n = n + 1
        res[n] = sub(subj, sub_idx)
    end
    res[n + 1] = nil
    return res
end

--- opt("jit_stack_size", bytes): the JIT stack's largest size; only while
-- the cache is empty, as OpenResty.
function _M.opt(name, value)
    if name == "jit_stack_size" then
        if _M.cache_count() > 0 then
            error("changing jit stack size is not allowed when some " ..
                  "regexs have already been compiled and cached", 2)
        end
        if type(value) ~= "number" or value < JIT_STACK_MIN then
            error("bad jit_stack_size (a number >= " ..
                  tostring(JIT_STACK_MIN) .. " expected)", 2)
        end
        local ok, err = set_jit_stack(value)
        if not ok then
            error(err, 2)
        end
        return
    end
    error("unrecognized option name", 2)
end

return _M
