-- moongate.db.store_fake -- the entity store of core/store/mg_store.h in
-- plain Lua tables, for unit specs (busted on Lua 5.1, no FFI) and tools
-- running outside the binary.  Same methods, results, error codes, fields
-- and messages as the LMDB backend of moongate.db.store: uniques per
-- (type, field), references that must exist, deletes that cascade or are
-- restricted (checked after the whole cascade, as the C store does),
-- tag filters (all / any), cursors that are the base64url of the last id
-- delivered (so pages survive writes), replace_all all-or-nothing,
-- export in dependency order, a version counter bumped per write.
--
-- Every write validates first and only then mutates, which gives the
-- all-or-nothing of an LMDB transaction without a rollback log.  Speed is
-- not a goal: deletes and lists scan.
--
-- Rejected: a fake at the FFI level (mg_lua_store_* over tables) -- the
-- specs would then test the wire encoding twice and the semantics never.

local codec = require "moongate.codec"

local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local format = string.format
local find = string.find
local byte = string.byte
local sort = table.sort
local next = next

local _M = {}

local Fake = {}
Fake.__index = Fake

local S                     -- moongate.db.store (codes, rules)

local TYPE_MAX, ID_MAX, FILTER_TAGS_MAX = 48, 64, 16

local function valid_name(s)
    return type(s) == "string" and #s > 0 and #s <= TYPE_MAX
           and not find(s, "[^%w_%.%-]")
end

local function valid_id(s)
    if type(s) ~= "string" or #s == 0 or #s > ID_MAX then
        return false
    end
    for i = 1, #s do
        local c = byte(s, i)
        if c <= 0x20 or c >= 0x7f then
            return false
        end
    end
    return true
end

local function fail(code, msg, fields)
    local err = { code = code, index = -1, type = "", id = "", field = "",
                  ref_type = "", ref_id = "", msg = msg }
    for k, v in pairs(fields or {}) do
        err[k] = v
    end
    return nil, err
end

local function copy_entity(e)
    local c = { type = e.type, id = e.id, json = e.json, uniques = {},
                refs = {}, tags = {} }
    for i, u in ipairs(e.uniques or {}) do
        c.uniques[i] = { u[1], u[2] }
    end
    for i, r in ipairs(e.refs or {}) do
        c.refs[i] = { r[1], r[2], r[3], r[4] or 0 }
    end
    for i, t in ipairs(e.tags or {}) do
        c.tags[i] = t
    end
    return c
end

-- mg_st_check_entity
local function check_entity(e)
    if type(e) ~= "table" or not valid_name(e.type) then
        return fail(S.E.INVALID, "invalid entity type")
    end
    local who = { type = e.type, id = type(e.id) == "string" and e.id or "" }
    if not valid_id(e.id) then
        return fail(S.E.INVALID, "invalid id", who)
    end
    local u, r, t = e.uniques or {}, e.refs or {}, e.tags or {}
    if #u > 64 or #r > 4096 or #t > 4096 then
        return fail(S.E.INVALID, "too many uniques, references or tags", who)
    end
    for _, x in ipairs(u) do
        if not valid_name(x[1]) then
            return fail(S.E.INVALID, "invalid unique field name", who)
        end
        if type(x[2]) ~= "string" or x[2] == "" then
            who.field = x[1]
            return fail(S.E.INVALID, "empty unique value", who)
        end
    end
    for _, x in ipairs(r) do
        local od = x[4] or 0
        if not (valid_name(x[1]) and valid_name(x[2]) and valid_id(x[3]))
           or od < 0 or od > 2 then
            who.field = valid_name(x[1]) and x[1] or ""
            return fail(S.E.INVALID, "invalid reference", who)
        end
    end
    for _, x in ipairs(t) do
        if type(x) ~= "string" or x == "" or find(x, "\0", 1, true) then
            return fail(S.E.INVALID, "invalid tag", who)
        end
    end
    return true
end

-- a copy of e with every DEFAULT on_delete resolved
local function resolve(e)
    local c = copy_entity(e)
    for _, r in ipairs(c.refs) do
        if r[4] == S.ON_DELETE.default then
            r[4] = S.on_delete_default(c.type, r[1])
        end
    end
    return c
end

function _M.new(store)
    S = store
    return setmetatable({ ents = {}, uniq = {}, ver = 0,
                          backend = "fake" }, Fake)
end

function Fake:close() end

local function ukey(field, value)
    return field .. "\0" .. value
end

function Fake:_index(e, add)
    local u = self.uniq[e.type]
    if not u then
        u = {}
        self.uniq[e.type] = u
    end
    for _, x in ipairs(e.uniques) do
        u[ukey(x[1], x[2])] = add and e.id or nil
    end
end

function Fake:_exists(typ, id)
    local t = self.ents[typ]
    return t ~= nil and t[id] ~= nil
end

function Fake:_check_uniques(e)
    local u = self.uniq[e.type] or {}
    for _, x in ipairs(e.uniques) do
        local holder = u[ukey(x[1], x[2])]
        if holder and holder ~= e.id then
            return fail(S.E.UNIQUE, format(
                "UNIQUE violation detected on '{%s=\"%s\"}'", x[1],
                x[2]:sub(1, 200)), { type = e.type, id = e.id,
                field = x[1], ref_type = e.type, ref_id = holder })
        end
    end
    return true
end

-- pending: entities about to exist (replace_all), else nil
function Fake:_check_refs(e)
    for _, r in ipairs(e.refs) do
        local self_ref = r[2] == e.type and r[3] == e.id
        if not self_ref and not self:_exists(r[2], r[3]) then
            return fail(S.E.FOREIGN, format(
                "the foreign key '{id=\"%s\"}' does not reference an " ..
                "existing '%s' entity.", r[3], r[2]),
                { type = e.type, id = e.id, field = r[1], ref_type = r[2],
                  ref_id = r[3] })
        end
    end
    return true
end

function Fake:_put(e)
    local t = self.ents[e.type]
    if not t then
        t = {}
        self.ents[e.type] = t
    end
    local old = t[e.id]
    if old then
        self:_index(old, false)
    end
    t[e.id] = e
    self:_index(e, true)
end

-- mode: "insert", "update", "upsert"
function Fake:_write(mode, input)
    local ok, err = check_entity(input)
    if not ok then
        return nil, err
    end
    local e = resolve(input)
    local exists = self:_exists(e.type, e.id)
    local who = { type = e.type, id = e.id }
    if mode == "insert" and exists then
        return fail(S.E.EXISTS, format(
            "primary key violation on key '{id=\"%s\"}'", e.id), who)
    end
    if mode == "update" and not exists then
        return fail(S.E.NOT_FOUND, format(
            "could not find the entity with primary key '{id=\"%s\"}'",
            e.id), who)
    end
    ok, err = self:_check_uniques(e)
    if ok then
        ok, err = self:_check_refs(e)
    end
    if not ok then
        return nil, err
    end
    self:_put(e)
    self.ver = self.ver + 1
    return true, not exists
end

function Fake:insert(e) return self:_write("insert", e) end
function Fake:update(e) return self:_write("update", e) end
function Fake:upsert(e) return self:_write("upsert", e) end

local function sorted_ids(t)
    local ids = {}
    for id in pairs(t or {}) do
        ids[#ids + 1] = id
    end
    sort(ids)
    return ids
end

local function sorted_types(ents)
    local types = {}
    for typ, t in pairs(ents) do
        if next(t) ~= nil then
            types[#types + 1] = typ
        end
    end
    sort(types)
    return types
end

-- entities referencing typ/id: {type, field, id, on_delete}, in the
-- reference index's key order (type, field, id)
function Fake:_children(typ, id)
    local out = {}
    for _, ctype in ipairs(sorted_types(self.ents)) do
        local t = self.ents[ctype]
        for _, cid in ipairs(sorted_ids(t)) do
            for _, r in ipairs(t[cid].refs) do
                if r[2] == typ and r[3] == id then
                    out[#out + 1] = { ctype, r[1], cid, r[4] }
                end
            end
        end
    end
    sort(out, function(a, b)
        if a[1] ~= b[1] then return a[1] < b[1] end
        if a[2] ~= b[2] then return a[2] < b[2] end
        return a[3] < b[3]
    end)
    return out
end

function Fake:delete(typ, id)
    if not valid_name(typ) then
        return fail(S.E.INVALID, "invalid entity type")
    end
    local who = { type = typ, id = type(id) == "string" and id or "" }
    if not valid_id(id) then
        return fail(S.E.NOT_FOUND, "Not found", who)
    end
    if not self:_exists(typ, id) then
        return fail(S.E.NOT_FOUND, format(
            "could not find the entity with primary key '{id=\"%s\"}'", id),
            who)
    end
    -- breadth-first over cascades; restrictions checked at the end
    local del, res, gone = { { typ, id } }, {}, {}
    local i = 1
    while del[i] do
        local node = del[i]
        local k = node[1] .. "\0" .. node[2]
        if not gone[k] and self:_exists(node[1], node[2]) then
            gone[k] = node
            for _, c in ipairs(self:_children(node[1], node[2])) do
                if c[4] == S.ON_DELETE.cascade then
                    del[#del + 1] = { c[1], c[3] }
                else
                    res[#res + 1] = { c[1], c[3], node[1], node[2], c[2] }
                end
            end
        end
        i = i + 1
    end
    for _, r in ipairs(res) do
        if not gone[r[1] .. "\0" .. r[2]] then
            return fail(S.E.FOREIGN, format(
                "an existing '%s' entity references this '%s' entity",
                r[1], r[3]), { type = r[3], id = r[4], field = r[5],
                ref_type = r[1], ref_id = r[2] })
        end
    end
    local n = 0
    for _, node in pairs(gone) do
        local e = self.ents[node[1]][node[2]]
        self:_index(e, false)
        self.ents[node[1]][node[2]] = nil
        n = n + 1
    end
    self.ver = self.ver + 1
    return n
end

function Fake:get(typ, key, by_field)
    if not valid_name(typ) or (by_field and not valid_name(by_field)) then
        return fail(S.E.INVALID, "invalid arguments")
    end
    local t = self.ents[typ]
    local e = t and valid_id(key) and t[key]
    if not e and by_field and t and type(key) == "string" and key ~= "" then
        local id = (self.uniq[typ] or {})[ukey(by_field, key)]
        e = id and t[id]
    end
    if not e then
        return fail(S.E.NOT_FOUND, "Not found",
                    { type = typ, id = tostring(key) })
    end
    return copy_entity(e)
end

local function has_tag(e, tag)
    for _, t in ipairs(e.tags) do
        if t == tag then
            return true
        end
    end
    return false
end

local function match(e, f)
    if not f then
        return true
    end
    if f.ref then
        local found = false
        for _, r in ipairs(e.refs) do
            if r[1] == f.ref[1] and r[2] == f.ref[2] and r[3] == f.ref[3] then
                found = true
            end
        end
        if not found then
            return false
        end
    end
    local tags = f.tags or {}
    if #tags == 0 then
        return true
    end
    local hits = 0
    for _, t in ipairs(tags) do
        if has_tag(e, t) then
            hits = hits + 1
        end
    end
    if f.tags_any then
        return hits > 0
    end
    return hits == #tags
end

local function cursor_encode(id)
    return codec.encode_base64url(id)
end

local function cursor_decode(s)
    if find(s, "[^%w%-_]") or #s % 4 == 1 then
        return nil
    end
    local id = codec.decode_base64url(s)
    if not id or not valid_id(id) or cursor_encode(id) ~= s then
        return nil
    end
    return id
end

function Fake:list(typ, filter, size, offset)
    if not valid_name(typ) then
        return fail(S.E.INVALID, "invalid arguments")
    end
    local tags = filter and filter.tags or {}
    if #tags > FILTER_TAGS_MAX then
        return fail(S.E.INVALID, "too many tags")
    end
    for _, t in ipairs(tags) do
        if type(t) ~= "string" or t == "" then
            return fail(S.E.INVALID, "empty tag")
        end
    end
    local after
    if offset and offset ~= "" then
        after = cursor_decode(offset)
        if not after then
            return fail(S.E.OFFSET, format("'%s' is not a valid offset",
                                           offset:sub(1, 128)))
        end
    end
    size = size or 0
    local t = self.ents[typ]
    local out, last, more = {}, nil, false
    for _, id in ipairs(sorted_ids(t)) do
        if (not after or id > after) and match(t[id], filter) then
            if size > 0 and #out == size then
                more = true
                break
            end
            out[#out + 1] = copy_entity(t[id])
            last = id
        end
    end
    return out, (more and last) and cursor_encode(last) or nil
end

function Fake:replace_all(list)
    -- validate everything against an empty store, then swap
    local tmp = _M.new(S)
    for i, input in ipairs(list) do
        local ok, err = check_entity(input)
        local e
        if ok then
            e = resolve(input)
            if tmp:_exists(e.type, e.id) then
                ok, err = fail(S.E.EXISTS, format(
                    "primary key violation on key '{id=\"%s\"}'", e.id),
                    { type = e.type, id = e.id })
            else
                ok, err = tmp:_check_uniques(e)
            end
        end
        if not ok then
            err.index = i - 1
            return nil, err
        end
        tmp:_put(e)
    end
    for i, input in ipairs(list) do
        local ok, err = tmp:_check_refs(tmp.ents[input.type][input.id])
        if not ok then
            err.index = i - 1
            return nil, err
        end
    end
    self.ents, self.uniq = tmp.ents, tmp.uniq
    self.ver = self.ver + 1
    return true
end

-- types in dependency order (Kahn; ties by Kong's rank, then name)
function Fake:_type_order()
    local types = sorted_types(self.ents)
    local idx, indeg, edges = {}, {}, {}
    for i, typ in ipairs(types) do
        idx[typ] = i
        indeg[i] = 0
        edges[i] = {}
    end
    for ci, ctype in ipairs(types) do
        for _, e in pairs(self.ents[ctype]) do
            for _, r in ipairs(e.refs) do
                local p = idx[r[2]]
                if p and p ~= ci and not edges[p][ci] then
                    edges[p][ci] = true
                    indeg[ci] = indeg[ci] + 1
                end
            end
        end
    end
    local function before(a, b)
        local ra, rb = S.type_rank(types[a]), S.type_rank(types[b])
        if ra ~= rb then
            return ra < rb
        end
        return types[a] < types[b]
    end
    local order, done = {}, {}
    for _ = 1, #types do
        local best, cyc
        for i = 1, #types do
            if not done[i] then
                if indeg[i] == 0 and (not best or before(i, best)) then
                    best = i
                end
                if not cyc or before(i, cyc) then
                    cyc = i       -- a cycle: take the first remaining
                end
            end
        end
        best = best or cyc
        done[best] = true
        order[#order + 1] = types[best]
        for c in pairs(edges[best]) do
            indeg[c] = indeg[c] - 1
        end
    end
    return order
end

function Fake:export()
    local out = {}
    for _, typ in ipairs(self:_type_order()) do
        local t = self.ents[typ]
        for _, id in ipairs(sorted_ids(t)) do
            out[#out + 1] = copy_entity(t[id])
        end
    end
    return out, self.ver
end

function Fake:version()
    return self.ver
end

function Fake:check()
    local n = 0
    for _, t in pairs(self.ents) do
        for _, e in pairs(t) do
            n = n + 1
            local ok, err = self:_check_refs(e)
            if not ok then
                err.code = S.E.IO
                return nil, err
            end
        end
    end
    return n
end

return _M
