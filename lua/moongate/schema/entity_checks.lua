-- moongate.schema.entity_checks -- Kong's cross-field rules
-- (`entity_checks = { { at_least_one_of = {...} }, { conditional = {...} } }`)
-- and the runner that decides when each may run.
--
-- A check sees only the fields it names (a projection of the entity, with
-- dotted paths such as "config.redis.host"), so the same rules serve full
-- validation and partial updates: a custom check's function gets that
-- projection; the built-in checks, which read nothing but the fields they
-- name, get the entity and read the same values.  Its failures go to the
-- "@entity" list of the error table, and `conditional` also marks the
-- offending field, as Kong does.  Stateless but for what each check table
-- implies, worked out once (its fields, its match views): `moongate.schema`
-- calls `run` after the field checks of every schema and record.
--
-- Rejected: letting checks read the whole entity.  Kong's projection is
-- what keeps a check from depending on fields a partial update lacks.

local errors = require "moongate.schema.errors"
local V = require "moongate.schema.validators"

local type = type
local next = next
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local find = string.find
local sub = string.sub
local format = string.format
local upper = string.upper

local MSG = errors.messages
local quoted_list = errors.quoted_list
local null = V.null
local is_reference = V.is_reference

local _M = {}

local function is_nonempty(v)
    if v == nil or v == null then
        return false
    end
    local t = type(v)
    if t == "table" then
        return next(v) ~= nil
    end
    if t == "string" then
        return v ~= ""
    end
    return true
end

-- Names known to have no dot, so the path helpers below skip the search
-- for one: a route's checks look up some hundred names per entity.
-- Bounded (a schema's names repeat; anything past the bound is searched).
local undotted, n_undotted = {}, 0

local function has_dot(name)
    if undotted[name] then
        return false
    end
    if find(name, ".", 1, true) then
        return true
    end
    if n_undotted < 4096 and type(name) == "string" then
        undotted[name] = true
        n_undotted = n_undotted + 1
    end
    return false
end

-- get_field(t, "a.b.c") == t.a.b.c, nil through missing or null levels.
local function get_field(t, name)
    if not has_dot(name) then
        if type(t) ~= "table" then
            return nil
        end
        return t[name]
    end
    while true do
        if type(t) ~= "table" then
            return nil
        end
        local dot = find(name, ".", 1, true)
        if not dot then
            return t[name]
        end
        t = t[sub(name, 1, dot - 1)]
        name = sub(name, dot + 1)
    end
end

-- set_field(t, "a.b.c", v): creates missing levels; never replaces a
-- non-table level (an error string already there wins).
local function set_field(t, name, value)
    if not has_dot(name) then
        t[name] = value
        return
    end
    while true do
        local dot = find(name, ".", 1, true)
        if not dot then
            t[name] = value
            return
        end
        local hd = sub(name, 1, dot - 1)
        local nxt = t[hd]
        if nxt == nil then
            nxt = {}
            t[hd] = nxt
        elseif type(nxt) ~= "table" then
            return
        end
        t = nxt
        name = sub(name, dot + 1)
    end
end

-- Field definition at a dotted path ("config.redis.host"), or nil.
local function get_schema_field(schema, name)
    local fields = schema and schema.fields
    if type(fields) == "table" and not has_dot(name) then
        return fields[name]
    end
    while type(fields) == "table" do
        local dot = find(name, ".", 1, true)
        if not dot then
            return fields[name]
        end
        local f = fields[sub(name, 1, dot - 1)]
        if type(f) ~= "table" then
            return nil
        end
        fields = f.fields
        name = sub(name, dot + 1)
    end
    return nil
end

local function insert_entity_error(errs, msg)
    local list = errs["@entity"]
    if type(list) ~= "table" then
        list = {}
        errs["@entity"] = list
    end
    for i = 1, #list do
        if list[i] == msg then
            return
        end
    end
    list[#list + 1] = msg
end

local function mutually_required(entity, names)
    local set = 0
    for i = 1, #names do
        if is_nonempty(get_field(entity, names[i])) then
            set = set + 1
        end
    end
    if set == 0 or set == #names then
        return true
    end
    return nil, quoted_list(names)
end

local function mutually_exclusive(entity, names)
    local set = 0
    for i = 1, #names do
        if is_nonempty(get_field(entity, names[i])) then
            set = set + 1
        end
    end
    if set <= 1 then
        return true
    end
    return nil, quoted_list(names)
end

-- A match table with metamethods of its own, over base: read through
-- them, each time.  (A closure is made in a function of its own: LuaJIT
-- compiles no function that makes one, and checks run for every entity.)
local function proxy(match, base)
    return setmetatable({}, {
        __index = function(_, k)
            local v = match[k]
            if v == nil then
                v = base[k]
            end
            return v
        end,
    })
end

-- A view of a check's match table that falls back to the checked field's
-- own definition (Kong sets it as the __index of the match table; a view
-- keeps the schema's tables unmodified): match's entries copied, base as
-- __index.  Made once per match table and kept while the schema lives --
-- a check runs for every entity of an import, and a view per run (with
-- its closure) was most of the checks' cost.  The view holds no
-- reference to `match`, so the weak key lets a dropped schema go.
local views = setmetatable({}, { __mode = "k" })

local function inherit(match, base)
    if type(base) ~= "table" then
        return match
    end
    if getmetatable(match) ~= nil then
        return proxy(match, base)
    end
    local view = views[match]
    if view == nil or getmetatable(view).__index ~= base then
        view = {}
        for k, v in pairs(match) do
            view[k] = v
        end
        setmetatable(view, { __index = base })
        V.register(view)
        views[match] = view
    end
    return view
end

local function any_nonempty(entity, names)
    for i = 1, #names do
        if is_nonempty(get_field(entity, names[i])) then
            return true
        end
    end
    return false
end

-- Each checker: fn(entity_projection, arg, schema, errors) ->
-- true | nil, detail[, custom_message].  `detail` is formatted into
-- MSG[NAME]; a custom message (then_err, ...) is used as is.
-- run_with_missing_fields: run even when the fields are absent;
-- run_with_invalid_fields: run even when one of them failed validation;
-- field_sources / required_fields: where in `arg` the field names are and
-- which of them must be present (else "field required for entity check").
_M.checkers = {
    at_least_one_of = {
        run_with_missing_fields = true,
        run_with_invalid_fields = true,
        fn = function(entity, names)
            if any_nonempty(entity, names) then
                return true
            end
            return nil, quoted_list(names)
        end,
    },

    conditional_at_least_one_of = {
        run_with_missing_fields = true,
        run_with_invalid_fields = true,
        field_sources = { "if_field", "then_at_least_one_of",
                          "else_then_at_least_one_of" },
        fn = function(entity, arg, schema)
            local if_value = get_field(entity, arg.if_field)
            if if_value == nil then
                return true
            end
            local base = get_schema_field(schema, arg.if_field)
            local ok = schema:validate_field(inherit(arg.if_match, base),
                                                if_value)
            if not ok then
                if arg.else_match == nil then
                    return true
                end
                if not schema:validate_field(inherit(arg.else_match, base),
                                             if_value) then
                    return true
                end
                local names = arg.else_then_at_least_one_of or {}
                if any_nonempty(entity, names) then
                    return true
                end
                local list = quoted_list(names)
                return nil, list, arg.else_then_err
                                  and format(arg.else_then_err, list)
            end
            local names = arg.then_at_least_one_of or {}
            if any_nonempty(entity, names) then
                return true
            end
            local list = quoted_list(names)
            return nil, list, arg.then_err and format(arg.then_err, list)
        end,
    },

    only_one_of = {
        run_with_missing_fields = false,
        run_with_invalid_fields = true,
        fn = function(entity, names)
            local count = 0
            for i = 1, #names do
                if is_nonempty(get_field(entity, names[i])) then
                    count = count + 1
                end
            end
            if count == 1 then
                return true
            end
            return nil, quoted_list(names)
        end,
    },

    distinct = {
        run_with_missing_fields = false,
        run_with_invalid_fields = true,
        fn = function(entity, names)
            local seen = {}
            for i = 1, #names do
                local v = get_field(entity, names[i])
                if is_nonempty(v) then
                    if seen[v] then
                        return nil, quoted_list(names)
                    end
                    seen[v] = true
                end
            end
            return true
        end,
    },

    conditional = {
        run_with_missing_fields = false,
        run_with_invalid_fields = true,
        field_sources = { "if_field", "then_field" },
        required_fields = { if_field = true },
        fn = function(entity, arg, schema, errs)
            local if_value = get_field(entity, arg.if_field)
            local then_value = get_field(entity, arg.then_field)
            if then_value == nil then
                then_value = null
            end
            local if_match = inherit(arg.if_match,
                                     get_schema_field(schema, arg.if_field))
            if not schema:validate_field(if_match, if_value) then
                return true
            end
            if arg.then_match.required == true and then_value == null then
                set_field(errs, arg.then_field, MSG.REQUIRED)
                return nil, arg.if_field, arg.then_err
                    and format(arg.then_err, arg.if_field)
            end
            local then_match = inherit(arg.then_match,
                                    get_schema_field(schema, arg.then_field))
            local ok, err = schema:validate_field(then_match, then_value)
            if not ok then
                set_field(errs, arg.then_field, err)
                return nil, arg.if_field, arg.then_err
                    and format(arg.then_err, arg.if_field)
            end
            return true
        end,
    },

    custom_entity_check = {
        run_with_missing_fields = false,
        run_with_invalid_fields = false,
        field_sources = { "field_sources" },
        required_fields = { field_sources = true },
        fn = function(entity, arg)
            return arg.fn(entity)
        end,
    },

    mutually_required = {
        run_with_missing_fields = true,
        fn = mutually_required,
    },

    mutually_exclusive = {
        run_with_missing_fields = true,
        fn = mutually_exclusive,
    },

    mutually_exclusive_sets = {
        run_with_missing_fields = true,
        field_sources = { "set1", "set2" },
        fn = function(entity, arg)
            local a, b = {}, {}
            for _, name in ipairs(arg.set1) do
                if is_nonempty(get_field(entity, name)) then
                    a[#a + 1] = name
                end
            end
            for _, name in ipairs(arg.set2) do
                if is_nonempty(get_field(entity, name)) then
                    b[#b + 1] = name
                end
            end
            if #a > 0 and #b > 0 then
                return nil, format("(%s), (%s)", quoted_list(a),
                                   quoted_list(b))
            end
            return true
        end,
    },
}

-- The fields a check reads, and which of them it requires: a function of
-- the checker and its argument only, so worked out once per check (the
-- plan refers to neither key, so the weak key lets a dropped schema go;
-- make_plan's closure keeps check_fields compiled).
local plans = setmetatable({}, { __mode = "k" })

local function make_plan(checker, arg)
    local fields_to_check, required = {}, {}

    local function add(fname, req)
        fields_to_check[#fields_to_check + 1] = fname
        if req then
            required[fname] = true
        end
    end

    if checker.field_sources then
        local req_sources = checker.required_fields or {}
        for _, source in ipairs(checker.field_sources) do
            local v = arg[source]
            if type(v) == "string" then
                add(v, req_sources[source])
            elseif type(v) == "table" then
                for _, fname in ipairs(v) do
                    add(fname, req_sources[source])
                end
            end
        end
    else
        for _, fname in ipairs(arg) do
            add(fname, true)
        end
    end
    local plan = { checker = checker, fields = fields_to_check,
                   required = required }
    plans[arg] = plan
    return plan
end

local function check_fields(checker, arg)
    local plan = plans[arg]
    if not (plan and plan.checker == checker) then
        plan = make_plan(checker, arg)
    end
    return plan.fields, plan.required
end

-- The built-in checkers read nothing but the fields they name, through
-- get_field: they get the entity itself, which gives them the same
-- values as its projection without a new table per check and entity.
-- Known by function, so a checker replaced by a plugin (or a custom
-- check's own fn) is handed the projection.
local reads_named = {}
for name, c in pairs(_M.checkers) do
    if name ~= "custom_entity_check" then
        reads_named[c.fn] = true
    end
end

local function run_entity_check(self, name, input, arg, full_check, errs)
    local checker = self.entity_checkers[name]
    local fields_to_check, required = check_fields(checker, arg)

    local projection = not reads_named[checker.fn] and {} or nil
    local missing
    local all_nil, all_ok = true, true
    for i = 1, #fields_to_check do
        local fname = fields_to_check[i]
        local value = get_field(input, fname)
        local fdef = get_schema_field(self, fname)
        if value == nil then
            if not checker.run_with_missing_fields
               and not arg.run_with_missing_fields
               and required[fname]
               and not (fdef and fdef.nilable) then
                missing = missing or {}
                missing[#missing + 1] = fname
            end
        else
            all_nil = false
            -- a vault reference is checked once resolved, not here
            if fdef and fdef.type == "string" and fdef.referenceable
               and is_reference(value) then
                return
            end
        end
        if get_field(errs, fname) ~= nil then
            all_ok = false
        end
        if projection then
            set_field(projection, fname, value)
        end
    end

    if not all_ok and not checker.run_with_invalid_fields
       and not arg.run_with_invalid_fields then
        return
    end

    if all_nil and not (checker.run_with_missing_fields and full_check) then
        return
    end

    if missing then
        for _, fname in ipairs(missing) do
            set_field(errs, fname, MSG.REQUIRED_FOR_ENTITY_CHECK)
        end
        return
    end

    local ok, detail, custom = checker.fn(projection or input, arg, self,
                                          errs)
    if ok then
        return
    end
    if custom then
        insert_entity_error(errs, custom)
        return
    end
    local fmt = MSG[upper(name)]
    local msg
    if fmt and detail ~= nil then
        msg = format(fmt, tostring(detail))
    elseif type(detail) == "string" then
        msg = detail
    else
        msg = format(MSG.ENTITY_CHECK, name, quoted_list(fields_to_check))
    end
    insert_entity_error(errs, msg)
end

-- Kong's deprecated schema-level `check = function(entity)`.
local function run_self_check(self, input, errs)
    local ok, err = self.check(input)
    if ok then
        return
    end
    if type(err) == "string" then
        insert_entity_error(errs, err)
    elseif type(err) == "table" then
        for k, v in pairs(err) do
            if type(k) == "number" then
                insert_entity_error(errs, v)
            else
                errs[k] = v
            end
        end
    else
        insert_entity_error(errs, MSG.CHECK)
    end
end

--- Run a schema's entity checks (and its `check` function) on `input`,
-- adding failures to `errs`.
function _M.run(self, input, full_check, errs)
    local checks = self.entity_checks
    if type(checks) == "table" then
        for i = 1, #checks do
            local name, arg = next(checks[i])
            if arg and arg ~= null then
                run_entity_check(self, name, input, arg, full_check, errs)
            end
        end
    end
    if self.check and full_check then
        run_self_check(self, input, errs)
    end
end

_M.get_field = get_field
_M.is_nonempty = is_nonempty

return _M
