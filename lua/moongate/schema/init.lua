-- moongate.schema -- Kong's schema DSL: the validator and default-filler for
-- plugin configs (and any other entity described the Kong way).
--
-- A definition is Kong's table: `{ name =, fields = { { f = {type=...} } },
-- entity_checks = {...} }`.  `Schema.new` copies it once (at plugin load),
-- indexes fields by name and checks its shape; the resulting object is
-- immutable in use and shared by every request and worker reload that keeps
-- the same plugin version.  Validation returns Kong's error table: field ->
-- message, nested tables for records / arrays (by position), "@entity" for
-- cross-field checks, with Kong's texts.  The field rules live in
-- moongate.schema.validators, the cross-field ones in
-- moongate.schema.entity_checks, the texts in moongate.schema.errors; this
-- file owns types, defaults, records and the plugin entity.
--
-- Semantics follow Kong 3.x `kong/db/schema/init.lua` where plugins can see
-- them: the validator order, the entity-checker rules for missing/invalid
-- fields, records being required (so filled with their defaults) unless
-- declared `required = false` -- Kong applies that to every plugin schema
-- through its Entity wrapper, `Schema.new` does it here.  Left out: DAO-only
-- features (foreign keys beyond their `id`, subschemas other than the plugin
-- one, transformations, workspaces, `json` fields' JSON-schema).
--
-- Rejected: compiling a definition into closures.  Config is validated at
-- start, reload and Admin API writes, never per request, so the simple
-- interpreter Kong authors can read beats a faster one they cannot.  What
-- an import of thousands of entities repeats is looked up once instead:
-- the rules each field sets (validator plans, registered by Schema.new),
-- the entity checks' views and field lists.  The hot loops make no
-- closures, which LuaJIT does not compile.

local errors = require "moongate.schema.errors"
local V = require "moongate.schema.validators"
local EC = require "moongate.schema.entity_checks"

local type = type
local next = next
local pairs = pairs
local pcall = pcall
local error = error
local select = select
local os_time = os.time
local tostring = tostring
local setmetatable = setmetatable
local getmetatable = getmetatable
local floor = math.floor
local huge = math.huge
local random = math.random
local find = string.find
local sub = string.sub
local format = string.format
local upper = string.upper
local sort = table.sort

local MSG = errors.messages

local null = V.null
local is_reference = V.is_reference
local validator_plans = V.plans
local UUID_PATTERN = V.UUID_PATTERN

-- Empty arrays must encode as [] (OpenResty's cjson); Debian's lua-cjson
-- has no array_mt, in which case arrays keep no metatable.
local array_mt
do
    local ok, cjson = pcall(require, "cjson")
    array_mt = ok and cjson.array_mt or nil
end

local Schema = {}
Schema.__index = Schema

--- The null value (ngx.null == cjson.null): a field explicitly set to null.
Schema.null = null

--- Kong's vault reference test: true for "{vault://<vault>/<resource>}".
-- Validation accepts a reference in a `referenceable` string field;
-- resolving it is the runtime's job (kong.vault).
Schema.is_reference = is_reference

--- The field validators and the order they run in (Kong's
-- `Schema.validators` / `validators_order`), and the entity checkers
-- (`Schema.entity_checkers`); tables a schema extension may add to.
Schema.validators = V.validators
Schema.validators_order = V.order
Schema.entity_checkers = EC.checkers
Schema.regex_syntax_ok = V.regex_syntax_ok

local VALID_TYPES = {
    array = true, set = true, map = true, record = true, string = true,
    number = true, integer = true, boolean = true, foreign = true,
    ["function"] = true, json = true, any = true,
}

-- helpers ---------------------------------------------------------------

local new_tab
do
    local ok, tnew = pcall(require, "table.new")
    new_tab = ok and tnew or function() return {} end
end

-- Tables reached twice (or in a cycle) are copied once; the map of what
-- was copied is made only when a table has tables inside -- most copies
-- (a default list, a flat record) need none.  size, when the caller knows
-- it, is the number of keys the copy ends with (an entity gets every
-- field of its schema): the table is made that big at once.
local function deep_copy(v, seen, size)
    if type(v) ~= "table" then
        return v
    end
    local c
    if seen then
        c = seen[v]
        if c then
            return c
        end
    end
    c = size and new_tab(0, size) or {}
    if seen then
        seen[v] = c
    end
    for k, x in pairs(v) do
        if type(x) == "table" then
            if not seen then
                seen = { [v] = c }
            end
            x = deep_copy(x, seen)
        end
        c[k] = x
    end
    return setmetatable(c, getmetatable(v))
end
Schema.deep_copy = deep_copy

-- A table whose keys are exactly 1..n (the empty table included).
local function is_sequence(t)
    if type(t) ~= "table" then
        return false
    end
    local n, max = 0, 0
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k ~= floor(k) then
            return false
        end
        n = n + 1
        if k > max then
            max = k
        end
    end
    return n == max
end

-- keys of a map in a stable order, so that "the first error" is stable
local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    pcall(sort, keys, function(a, b)
        if type(a) == type(b) and (type(a) == "string" or
                                   type(a) == "number") then
            return a < b
        end
        return type(a) < type(b)
    end)
    return keys
end

local function now_s()
    if ngx and ngx.time then
        return ngx.time()
    end
    return os_time()
end

local function now_ms()
    if ngx and ngx.now then
        return ngx.now()
    end
    return os_time()
end

-- Random bytes from the kernel: ids and generated secrets (key-auth keys
-- come from random_string) must differ across processes and restarts, so
-- math.random -- the same sequence in every fresh VM -- is only the last
-- resort.  Read in blocks: one read(2) per 256 ids.
local urandom, pool, pool_pos = nil, "", 1

local function random_bytes(n)
    if pool_pos + n - 1 > #pool then
        if urandom == nil then
            urandom = io.open("/dev/urandom", "rb") or false
        end
        pool = urandom and urandom:read(4096) or ""
        pool_pos = 1
        if #pool < n then
            local t = {}
            for i = 1, n do
                t[i] = string.char(random(0, 255))
            end
            return table.concat(t)
        end
    end
    local s = pool:sub(pool_pos, pool_pos + n - 1)
    pool_pos = pool_pos + n
    return s
end

local function uuid_v4()
    local b = { random_bytes(16):byte(1, 16) }
    b[7] = b[7] % 16 + 64   -- version 4
    b[9] = b[9] % 64 + 128  -- RFC 4122 variant
    return format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-" ..
                  "%02x%02x%02x%02x%02x%02x", b[1], b[2], b[3], b[4], b[5],
                  b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                  b[15], b[16])
end

local function random_string()
    return (uuid_v4():gsub("-", ""))
end

-- schema objects for record fields ----------------------------------------

local field_schemas = setmetatable({}, { __mode = "k" })

local function index_fields(def)
    local fields = def.fields
    for i = 1, #fields do
        if type(fields[i]) == "table" then
            local name, f = next(fields[i])
            if name ~= nil then
                fields[name] = f
            end
        end
    end
end

-- The schema object of a record field (or of a record-typed element),
-- built once per field table and shared.
local function get_field_schema(field)
    local s = field_schemas[field]
    if not s then
        local def = field
        if type(def.fields) ~= "table" then
            def = { fields = {} }
        end
        index_fields(def)
        s = setmetatable({
            fields = def.fields,
            entity_checks = def.entity_checks,
            shorthand_fields = def.shorthand_fields,
            check = def.check,
        }, Schema)
        field_schemas[field] = s
    end
    return s
end

-- validate_field ----------------------------------------------------------

local validate_value   -- forward

local function validate_map(self, field, value)
    local keys = sorted_keys(value)
    for i = 1, #keys do
        local k = keys[i]
        local ok, err = validate_value(self, field.keys, k, true)
        if not ok then
            return nil, err
        end
        ok, err = validate_value(self, field.values, value[k], true)
        if not ok then
            return nil, err
        end
    end
    return true
end

local function validate_foreign(value)
    if type(value) ~= "table" then
        return nil, { id = MSG.MISSING_PK }
    end
    local id = value.id
    if id == nil then
        return nil, { id = MSG.MISSING_PK }
    elseif id == null then
        return nil, { id = MSG.REQUIRED }
    elseif type(id) ~= "string" then
        return nil, { id = MSG.STRING }
    elseif not (#id == 36 and find(id, UUID_PATTERN)) then
        return nil, { id = MSG.UUID }
    end
    return true
end

-- force_required: elements of arrays/sets and map keys/values may not be
-- null (Kong sets `required = true` on them).
validate_value = function(self, field, value, force_required)
    if value == null then
        if field.ne == null then
            return nil, field.err or format(MSG.NE, "null")
        end
        if field.eq ~= nil and field.eq ~= null then
            return nil, format(MSG.EQ, tostring(field.eq))
        end
        if force_required or field.required then
            return nil, MSG.REQUIRED
        end
        return true
    end

    if field.eq == null then
        return nil, field.err or format(MSG.EQ, "null")
    end

    if field.abstract then
        return nil, MSG.SCHEMA_ABSTRACT_FIELD
    end

    local ftype = field.type
    local vtype = type(value)
    local len_min = field.len_min

    if ftype == "array" or ftype == "set" then
        if not is_sequence(value) then
            return nil, ftype == "array" and MSG.ARRAY or MSG.SET
        end
        local errs
        for i = 1, #value do
            local ok, err = validate_value(self, field.elements, value[i], true)
            if not ok then
                errs = errs or {}
                errs[i] = err
            end
        end
        if errs then
            return nil, errs
        end

    elseif ftype == "map" then
        if vtype ~= "table" then
            return nil, MSG.MAP
        end
        local ok, err = validate_map(self, field, value)
        if not ok then
            return nil, err
        end

    elseif ftype == "record" then
        if vtype ~= "table" then
            return nil, MSG.RECORD
        end
        local sub_schema = get_field_schema(field)
        local copy, perr = sub_schema:process_auto_fields(value, "insert")
        if not copy then
            return nil, perr
        end
        local ok, err = sub_schema:validate(copy)
        if not ok then
            return nil, err
        end

    elseif ftype == "foreign" then
        local ok, err = validate_foreign(value)
        if not ok then
            return nil, err
        end

    elseif ftype == "integer" then
        if not (vtype == "number" and value == floor(value)
                and value ~= huge and value ~= -huge) then
            return nil, MSG.INTEGER
        end

    elseif ftype == "string" then
        if vtype ~= "string" then
            return nil, MSG.STRING
        end
        -- empty strings are not accepted unless len_min says so
        if len_min == nil then
            len_min = 1
        end
        if field.referenceable and is_reference(value) then
            return true
        end

    elseif ftype == "number" or ftype == "boolean" or ftype == "function" then
        if vtype ~= ftype then
            return nil, MSG[upper(ftype)]
        end

    elseif ftype == "json" then
        return true

    elseif ftype ~= "any" then
        return nil, format(MSG.SCHEMA_TYPE, tostring(ftype))
    end

    local order = Schema.validators_order
    local validators = self.validators or Schema.validators
    local plan = validator_plans[field]
    if plan and plan.order == order and plan.n == #order then
        order = plan        -- the names this field sets, in order
    end
    for i = 1, #order do
        local k = order[i]
        local arg = field[k]
        if k == "len_min" then
            arg = len_min
        end
        if arg ~= nil then
            local ok, err = validators[k](value, arg, field)
            if not ok then
                if not err then
                    err = format(MSG[upper(k)] or MSG.VALIDATION,
                                 tostring(value))
                end
                return nil, field.err or err
            end
        end
    end

    return true
end

--- Validate one value against one field definition.
-- @param field a field definition table (need not belong to this schema)
-- @param value the value; `Schema.null` (ngx.null / cjson.null) is null
-- @return true, or nil and a message string (or a nested error table for
-- records, arrays and sets).
function Schema:validate_field(field, value)
    return validate_value(self, field, value, false)
end

-- defaults and auto fields ----------------------------------------------

local Set_mt
do
    local members = setmetatable({}, { __mode = "k" })
    Set_mt = {
        -- `conf.protocols.https` is true when the set holds "https" (Kong)
        __index = function(t, key)
            local m = members[t]
            return m and m[key]
        end,
    }

    function Schema.make_set(set)
        if not is_sequence(set) then
            return set
        end
        if #set == 0 then
            if array_mt then
                setmetatable(set, array_mt)
            end
            return set
        end
        local out, seen = {}, {}
        for i = 1, #set do
            local v = set[i]
            if not seen[v] then
                seen[v] = true
                out[#out + 1] = v
            end
        end
        members[out] = seen
        return setmetatable(out, Set_mt)
    end
end
local make_set = Schema.make_set

local function make_array(t)
    if array_mt and is_sequence(t) and getmetatable(t) == nil then
        setmetatable(t, array_mt)
    end
    return t
end

local function handle_missing_field(field, value, opts)
    if field.default ~= nil and not (opts and opts.no_defaults) then
        local copy = deep_copy(field.default)
        if (field.type == "array" or field.type == "set")
           and type(copy) == "table" and getmetatable(copy) == nil then
            make_array(copy)
        end
        return copy
    end
    if field.nilable then
        return value
    end
    if field.required ~= true then
        return null
    end
    if field.abstract then
        return nil
    end
    -- a required record that is missing gets its nested defaults
    if field.type == "record" and field.fields then
        return (get_field_schema(field):process_auto_fields({}, "insert",
                                                            nil, opts))
    end
    return nil
end

local function should_recurse_record(context, value, field)
    if context == "update" then
        return value ~= null and value ~= nil
    end
    return value ~= null and (value ~= nil or field.required == true)
end

local function adjust_field_for_context(field, value, context, nulls, opts)
    if context == "select" and value == null and field.required == true then
        return handle_missing_field(field, value, opts)
    end

    if field.abstract then
        return value
    end

    if field.type == "record" then
        if should_recurse_record(context, value, field) then
            if value == nil then
                value = handle_missing_field(field, value, opts)
            end
            if type(value) == "table" and field.fields then
                local s = get_field_schema(field)
                return s:process_auto_fields(value, context, nulls, opts)
            end
        end

    elseif type(value) == "table" then
        local subfield
        if field.type == "array" then
            value = make_array(value)
            subfield = field.elements
        elseif field.type == "set" then
            value = make_set(value)
            subfield = field.elements
        elseif field.type == "map" then
            subfield = field.values
        end
        if type(subfield) == "table" then
            for k, v in pairs(value) do
                value[k] = adjust_field_for_context(subfield, v, context,
                                                    nulls, opts)
            end
        end
    end

    if value == nil and context ~= "update" then
        return handle_missing_field(field, value, opts)
    end

    return value
end

local function apply_shorthands(self, data)
    local shorthands = self.shorthand_fields
    if not shorthands then
        return true
    end
    local errs
    for i = 1, #shorthands do
        local sname, sdef = next(shorthands[i])
        local value = data[sname]
        if value ~= nil then
            local ok, err = validate_value(self, sdef, value, false)
            if not ok then
                errs = errs or {}
                errs[sname] = err
            else
                data[sname] = nil
                local new_values = sdef.func and sdef.func(value)
                if type(new_values) == "table" then
                    for k, v in pairs(new_values) do
                        local cur = data[k]
                        if type(v) == "table" and type(cur) == "table" then
                            for kk, vv in pairs(v) do
                                -- a deprecated shorthand does not override
                                -- a value given in the new field
                                if not sdef.deprecation or cur[kk] == nil
                                   or cur[kk] == null then
                                    cur[kk] = vv
                                end
                            end
                        elseif not sdef.deprecation or cur == nil
                               or cur == null then
                            data[k] = v
                        end
                    end
                end
            end
        end
    end
    if errs then
        return nil, errs
    end
    return true
end

--- Fill defaults and auto fields, Kong's `process_auto_fields`.
-- @param data the entity (not modified unless context is "select")
-- @param context "insert" (default), "upsert", "update" or "select"
-- @param nulls with "select": keep null values (else they become nil)
-- @param opts { no_defaults = true } to leave defaults out
-- @return a new table with defaults filled in recursively (records that
-- are required -- records are by default -- appear with their nested
-- defaults even when absent; optional fields without a default become
-- null); or nil and an error table when a shorthand field is invalid.
function Schema:process_auto_fields(data, context, nulls, opts)
    context = context or "insert"
    if type(data) ~= "table" then
        return data
    end
    local is_select = context == "select"
    if not is_select then
        data = deep_copy(data, nil, #self.fields)
    end

    local ok, serr = apply_shorthands(self, data)
    if not ok then
        return nil, serr
    end

    local creating = context == "insert" or context == "upsert"
    -- each_field's order, without its closure (which LuaJIT does not
    -- compile: this loop runs for every entity of an import)
    local fields = self.fields
    local i, item = 1, fields[1]
    while item ~= nil do
        local key, field = next(item)
        if key == nil then
            break           -- where each_field's loop ends too
        end
        local value = data[key]
        if field.auto and not is_select then
            if field.uuid then
                if creating and value == nil then
                    value = uuid_v4()
                end
            elseif field.type == "string" then
                if creating and value == nil then
                    value = random_string()
                end
            elseif (key == "created_at" and creating
                    and (value == nil or value == null))
                or (key == "updated_at"
                    and (creating or context == "update")) then
                if field.type == "number" then
                    value = now_ms()
                elseif field.type == "integer" then
                    value = now_s()
                end
            end
        end

        value = adjust_field_for_context(field, value, context, nulls, opts)

        if is_select then
            if value == null and not nulls then
                value = nil
            elseif field.type == "integer" and type(value) == "number" then
                value = floor(value)
            end
        end
        data[key] = value
        i = i + 1
        item = fields[i]
    end

    if is_select then
        for key, v in pairs(data) do
            local field = type(key) == "string" and self.fields[key]
            if not field then
                data[key] = nil
            elseif field.type == "string" and (field.len_min or 1) > 0
                   and v == "" then
                data[key] = nulls and null or nil
            end
        end
    end

    return data
end

-- validate ----------------------------------------------------------------

--- Iterate the fields in declaration order: `for name, field in
-- s:each_field() do`.
function Schema:each_field()
    local fields = self.fields
    local i = 0
    return function()
        i = i + 1
        local item = fields[i]
        if item == nil then
            return nil
        end
        local name, field = next(item)
        return name, field
    end
end

--- Validate an entity (a plugin entity, or a config record's content).
-- @param input the table to check; not modified
-- @param full_check default true; false accepts missing required fields
-- (partial updates)
-- @return true, or nil and Kong's error table:
--   { field = "message", rec = { sub = "message" }, arr = { [2] = "..." },
--     ["@entity"] = { "entity check message", ... } }
function Schema:validate(input, full_check)
    if full_check == nil then
        full_check = true
    end
    if type(input) ~= "table" then
        return nil, { ["@entity"] = { MSG.BAD_INPUT } }
    end

    if self.plugin_name then
        local name = input.name
        if name == nil or name == null then
            return nil, { name = MSG.REQUIRED }
        end
        if name ~= self.plugin_name then
            return nil, { name = format(MSG.PLUGIN_NOT_ENABLED,
                                        tostring(name)) }
        end
    end

    local errs = {}
    local fields = self.fields
    for k, v in pairs(input) do
        local field = fields[tostring(k)]
        if type(field) == "table" and field.type ~= nil then
            local ok, err = validate_value(self, field, v, false)
            if not ok then
                errs[k] = err
            end
        else
            errs[k] = MSG.UNKNOWN
        end
    end

    local i, item = 1, fields[1]
    while item ~= nil do       -- each_field, without its closure
        local name, field = next(item)
        if name == nil then
            break
        end
        local v = input[name]
        if field.required and (v == null or (full_check and v == nil)) then
            errs[name] = MSG.REQUIRED
        end
        i = i + 1
        item = fields[i]
    end

    EC.run(self, input, full_check, errs)

    if next(errs) then
        return nil, errs
    end
    return true
end

function Schema:validate_insert(input)
    return self:validate(input, true)
end

function Schema:validate_upsert(input)
    return self:validate(input, true)
end

--- Partial validation; entity-check messages say "when updating", as
-- Kong's do.
function Schema:validate_update(input)
    local saved = {
        REQUIRED_FOR_ENTITY_CHECK = MSG.REQUIRED_FOR_ENTITY_CHECK,
        AT_LEAST_ONE_OF = MSG.AT_LEAST_ONE_OF,
        CONDITIONAL_AT_LEAST_ONE_OF = MSG.CONDITIONAL_AT_LEAST_ONE_OF,
    }
    MSG.REQUIRED_FOR_ENTITY_CHECK = saved.REQUIRED_FOR_ENTITY_CHECK ..
                                    " when updating"
    MSG.AT_LEAST_ONE_OF = "when updating, " .. saved.AT_LEAST_ONE_OF
    MSG.CONDITIONAL_AT_LEAST_ONE_OF = "when updating, " ..
                                      saved.CONDITIONAL_AT_LEAST_ONE_OF
    local pok, ok, errs = pcall(self.validate, self, input, false)
    for k, v in pairs(saved) do
        MSG[k] = v
    end
    if not pok then
        error(ok, 0)
    end
    return ok, errs
end

--- What the runtime calls on a config it loads: defaults first, then
-- validation, as Kong's DAO does on insert.
-- @return the processed entity, or nil and Kong's error table.
function Schema:process_and_validate(input, context)
    if type(input) ~= "table" then
        return nil, { ["@entity"] = { MSG.BAD_INPUT } }
    end
    local entity, err = self:process_auto_fields(input, context or "insert")
    if not entity then
        return nil, err
    end
    local ok, errs = self:validate(entity, context ~= "update")
    if not ok then
        return nil, errs
    end
    return entity
end

--- Kong's `errors_to_string`: "Validation error: a: b; ...".
function Schema:errors_to_string(errs)
    return errors.to_string(errs)
end

--- Schema-aware merge: records merge field by field, anything else
-- (arrays included) is replaced by `top`'s value.
function Schema:merge_values(top, bottom)
    local out = {}
    if type(bottom) ~= "table" then
        bottom = {}
    end
    for k, v in pairs(bottom) do
        out[k] = v
    end
    for k, v in pairs(top) do
        out[k] = v
    end
    for key, field in self:each_field() do
        local t = top[key]
        if t == nil then
            out[key] = bottom[key]
        elseif field.type == "record" and not field.abstract
               and type(t) == "table" and field.fields then
            out[key] = get_field_schema(field):merge_values(t, bottom[key])
        end
    end
    return out
end

-- definitions -------------------------------------------------------------

local function def_error(path, msg)
    return "error in schema definition: " ..
           (path ~= "" and ("field '" .. path .. "': ") or "") .. msg
end

local check_fields   -- forward

local function check_field(field, path)
    if type(field) ~= "table" then
        return nil, def_error(path, "expected a field definition table")
    end
    local t = field.type
    if t == nil then
        return nil, def_error(path, "missing attribute 'type'")
    end
    if not VALID_TYPES[t] then
        return nil, def_error(path, format(MSG.SCHEMA_TYPE, tostring(t)))
    end
    if t == "array" or t == "set" then
        if type(field.elements) ~= "table" then
            return nil, def_error(path, "missing attribute 'elements'")
        end
        return check_field(field.elements, path .. ".elements")
    elseif t == "map" then
        if type(field.keys) ~= "table" then
            return nil, def_error(path, "missing attribute 'keys'")
        end
        if type(field.values) ~= "table" then
            return nil, def_error(path, "missing attribute 'values'")
        end
        local ok, err = check_field(field.keys, path .. ".keys")
        if not ok then
            return nil, err
        end
        return check_field(field.values, path .. ".values")
    elseif t == "record" and not field.abstract then
        if type(field.fields) ~= "table" then
            return nil, def_error(path, "missing attribute 'fields'")
        end
        return check_fields(field, path)
    end
    return true
end

local function check_entity_checks(def, path)
    local checks = def.entity_checks
    if checks == nil then
        return true
    end
    if type(checks) ~= "table" then
        return nil, def_error(path, "entity_checks must be an array")
    end
    for i = 1, #checks do
        local c = checks[i]
        local name = type(c) == "table" and next(c)
        if not name or not Schema.entity_checkers[name] then
            return nil, def_error(path, "unknown entity check '" ..
                                  tostring(name) .. "'")
        end
        local arg = c[name]
        if name == "custom_entity_check" and type(arg) == "table"
           and type(arg.fn) ~= "function" then
            return nil, def_error(path, "custom_entity_check needs 'fn'")
        end
    end
    return true
end

check_fields = function(def, path)
    local fields = def.fields
    for i = 1, #fields do
        local item = fields[i]
        local name, field
        if type(item) == "table" then
            name, field = next(item)
        end
        if type(name) ~= "string" or next(item, name) ~= nil then
            return nil, def_error(path, "fields[" .. i .. "] must be a " ..
                                  "table with exactly one named field")
        end
        local fpath = path ~= "" and (path .. "." .. name) or name
        local ok, err = check_field(field, fpath)
        if not ok then
            return nil, err
        end
        fields[name] = field
    end
    return check_entity_checks(def, path)
end

-- validator plans (moongate.schema.validators) for every field of a new
-- schema, nested ones included; its tables are its own (deep-copied)
local function register_field(field)
    if type(field) ~= "table" then
        return
    end
    V.register(field)
    register_field(field.elements)
    register_field(field.keys)
    register_field(field.values)
    if type(field.fields) == "table" then
        for i = 1, #field.fields do
            local item = field.fields[i]
            if type(item) == "table" then
                register_field(select(2, next(item)))
            end
        end
    end
end

local function register_fields(fields)
    for i = 1, #fields do
        local item = fields[i]
        if type(item) == "table" then
            register_field(select(2, next(item)))
        end
    end
end

-- Kong's Entity wrapper: records are required unless they say otherwise,
-- so an absent config record comes back with its defaults.
local function make_records_required(field)
    if field.required == nil then
        field.required = true
    end
    if type(field.fields) == "table" then
        for i = 1, #field.fields do
            local _, f = next(field.fields[i])
            if type(f) == "table" and f.type == "record" then
                make_records_required(f)
            end
        end
    end
end

--- Build a schema object from a Kong-style definition.
-- @param definition `{ fields = {...}, entity_checks = {...}, ... }`; it
-- is deep-copied, the caller keeps ownership of its own table
-- @param opts `{ records_required = false }` keeps records optional unless
-- they say `required = true` (Kong's bare `Schema.new`)
-- @return the schema, or nil and an error string for a malformed
-- definition.
function Schema.new(definition, opts)
    if type(definition) ~= "table" then
        return nil, MSG.SCHEMA_NO_DEFINITION
    end
    if type(definition.fields) ~= "table" then
        return nil, MSG.SCHEMA_NO_FIELDS
    end
    local self = deep_copy(definition)
    setmetatable(self, Schema)

    local ok, err = check_fields(self, "")
    if not ok then
        return nil, err
    end

    if not (opts and opts.records_required == false) then
        for _, field in self:each_field() do
            if field.type == "record" then
                make_records_required(field)
            end
        end
    end
    register_fields(self.fields)
    return self
end

--- Kong's `Schema.define`: a field template callable with overrides,
-- `typedefs.host { required = true }` -> a new table (overrides win).
function Schema.define(tbl)
    return setmetatable(tbl, {
        __call = function(t, arg)
            arg = arg or {}
            for k, v in pairs(t) do
                if arg[k] == nil then
                    arg[k] = v
                end
            end
            return arg
        end,
    })
end

-- plugins -----------------------------------------------------------------

-- The fields every plugin entity has (Kong 3.x `plugins` entity); a plugin
-- schema specializes some of them (config, protocols, consumer, ...).
local function plugin_base_fields(typedefs)
    return {
        { id = typedefs.uuid },
        { name = { type = "string", required = true } },
        { instance_name = typedefs.utf8_name },
        { created_at = typedefs.auto_timestamp_s },
        { updated_at = typedefs.auto_timestamp_s },
        { route = { type = "foreign", reference = "routes",
                    default = null } },
        { service = { type = "foreign", reference = "services",
                      default = null } },
        { consumer = { type = "foreign", reference = "consumers",
                       default = null } },
        { config = { type = "record", abstract = true } },
        { protocols = typedefs.protocols },
        { enabled = { type = "boolean", default = true } },
        { tags = typedefs.tags },
    }
end

--- Build the schema of a plugin entity (`{ name =, config =, protocols =,
-- route =, ... }`) from a plugin's schema.lua table, as Kong merges a
-- plugin schema into its `plugins` entity.
-- @return the schema, or nil and an error string.
function Schema.new_plugin(definition)
    if type(definition) ~= "table" then
        return nil, MSG.SCHEMA_NO_DEFINITION
    end
    if type(definition.fields) ~= "table" then
        return nil, MSG.SCHEMA_NO_FIELDS
    end
    local pname = definition.name
    if type(pname) ~= "string" or pname == "" then
        return nil, "error in schema definition: plugin schema needs a name"
    end
    local typedefs = require "moongate.schema.typedefs"
    local base = plugin_base_fields(typedefs)
    local pos = {}
    for i = 1, #base do
        pos[next(base[i])] = i
    end

    local merged = {}
    for k, v in pairs(definition) do
        merged[k] = v
    end
    local fields = {}
    for i = 1, #base do
        fields[i] = base[i]
    end
    for i = 1, #definition.fields do
        local item = definition.fields[i]
        local fname, fdef
        if type(item) == "table" then
            fname, fdef = next(item)
        end
        local at = fname and pos[fname]
        if not at then
            return nil, format("error in definition of '%s': %s: cannot " ..
                               "create a new field", pname, tostring(fname))
        end
        local parent = select(2, next(base[at]))
        if type(fdef) ~= "table" or fdef.type ~= parent.type then
            return nil, format("error in definition of '%s': %s: cannot " ..
                               "change type in a specialized field", pname,
                               fname)
        end
        fields[at] = { [fname] = fdef }
    end
    local _, config = next(fields[pos.config])
    if config.abstract then
        return nil, format("error in definition of '%s': config: abstract " ..
                           "field was not specialized", pname)
    end
    merged.fields = fields

    local self, err = Schema.new(merged)
    if not self then
        return nil, err
    end
    self.plugin_name = pname
    return self
end

return Schema
