-- Unit: the schema DSL (moongate.schema, moongate.schema.typedefs and the
-- kong.db.schema compatibility names): every type and attribute, defaults,
-- nested records/arrays/maps/sets, entity checks, Kong's error texts and
-- error-table shape, and three plugin schemas written the way Kong plugins
-- write them.

local Schema = require "moongate.schema"
local typedefs = require "moongate.schema.typedefs"
local errors = require "moongate.schema.errors"
local cjson = require "cjson"

local null = cjson.null

-- schema with a single field `f`
local function one(field)
    return assert(Schema.new { fields = { { f = field } } })
end

-- validate { f = value } against one field; returns the error of `f`
local function err_of(field, value)
    local ok, errs = one(field):validate { f = value }
    if ok then
        return nil
    end
    return errs.f
end

local function valid(field, value)
    local ok, errs = one(field):validate { f = value }
    return ok == true, errs
end

describe("schema definitions", function()
    it("rejects what is not a definition", function()
        local s, err = Schema.new(nil)
        assert.is_nil(s)
        assert.equals("expected a definition table", err)
        s, err = Schema.new {}
        assert.is_nil(s)
        assert.equals("error in schema definition: no 'fields' table", err)
    end)

    it("names the field with a bad type or missing attribute", function()
        local _, err = Schema.new { fields = { { a = { type = "strin" } } } }
        assert.equals("error in schema definition: field 'a': invalid " ..
                      "type: strin", err)
        _, err = Schema.new { fields = { { a = { default = 1 } } } }
        assert.equals("error in schema definition: field 'a': missing " ..
                      "attribute 'type'", err)
        _, err = Schema.new { fields = { { a = { type = "array" } } } }
        assert.matches("field 'a': missing attribute 'elements'", err, 1,
                       true)
        _, err = Schema.new { fields = { { a = { type = "map",
                                                 keys = { type = "string" } } } } }
        assert.matches("field 'a': missing attribute 'values'", err, 1, true)
        _, err = Schema.new { fields = { { r = { type = "record", fields = {
            { inner = { type = "set", elements = { type = "nope" } } } } } } } }
        assert.matches("field 'r.inner.elements': invalid type: nope", err,
                       1, true)
        _, err = Schema.new { fields = { { a = { type = "string" },
                                           b = { type = "string" } } } }
        assert.matches("exactly one named field", err, 1, true)
    end)

    it("rejects an unknown entity check", function()
        local _, err = Schema.new { fields = { { a = { type = "string" } } },
                                    entity_checks = { { at_most = { "a" } } } }
        assert.equals("error in schema definition: unknown entity check " ..
                      "'at_most'", err)
    end)

    it("copies the definition and indexes fields by name", function()
        local def = { fields = { { a = { type = "string" } },
                                 { r = { type = "record", fields = {
                                     { b = { type = "integer" } } } } } } }
        local s = assert(Schema.new(def))
        assert.is_nil(def.fields.a)           -- caller's table untouched
        assert.is_nil(def.fields[2].r.required)
        assert.equals("string", s.fields.a.type)
        assert.equals("integer", s.fields.r.fields.b.type)
        assert.is_true(s.fields.r.required)   -- records required by default
        local names = {}
        for name in s:each_field() do
            names[#names + 1] = name
        end
        assert.same({ "a", "r" }, names)
    end)

    it("keeps records optional with records_required = false", function()
        local s = assert(Schema.new({ fields = { { r = { type = "record",
            fields = { { b = { type = "integer", default = 1 } } } } } } },
            { records_required = false }))
        assert.equals(null, s:process_auto_fields({}, "insert").r)
    end)

    it("Schema.define templates are callable with overrides", function()
        local port = Schema.define { type = "integer", between = { 0, 9 } }
        local p = port { default = 5, between = { 1, 2 } }
        assert.equals(5, p.default)
        assert.equals("integer", p.type)
        assert.same({ 1, 2 }, p.between)
        assert.same({ 0, 9 }, port.between)
    end)
end)

describe("field types", function()
    it("string", function()
        assert.is_true(valid({ type = "string" }, "x"))
        assert.equals("expected a string", err_of({ type = "string" }, 1))
        assert.equals("length must be at least 1",
                      err_of({ type = "string" }, ""))
        assert.is_true(valid({ type = "string", len_min = 0 }, ""))
    end)

    it("number", function()
        assert.is_true(valid({ type = "number" }, 1.5))
        assert.equals("expected a number", err_of({ type = "number" }, "1"))
    end)

    it("integer", function()
        assert.is_true(valid({ type = "integer" }, 3))
        assert.equals("expected an integer", err_of({ type = "integer" }, 1.5))
        assert.equals("expected an integer",
                      err_of({ type = "integer" }, math.huge))
        assert.equals("expected an integer", err_of({ type = "integer" }, "3"))
    end)

    it("boolean", function()
        assert.is_true(valid({ type = "boolean" }, false))
        assert.equals("expected a boolean",
                      err_of({ type = "boolean" }, "true"))
    end)

    it("function and any", function()
        assert.is_true(valid({ type = "function" }, print))
        assert.equals("expected a function",
                      err_of({ type = "function" }, "print"))
        assert.is_true(valid({ type = "any" }, {}))
        assert.equals("expected one of: 1, 2",
                      err_of({ type = "any", one_of = { 1, 2 } }, 3))
    end)

    it("json accepts any value", function()
        assert.is_true(valid({ type = "json" }, { a = { 1, 2 } }))
    end)

    it("array: sequence, element errors by position", function()
        local f = { type = "array", elements = { type = "integer" } }
        assert.is_true(valid(f, { 1, 2, 3 }))
        assert.is_true(valid(f, {}))
        assert.equals("expected an array", err_of(f, { a = 1 }))
        assert.equals("expected an array", err_of(f, { [1] = 1, [3] = 3 }))
        assert.equals("expected an array", err_of(f, "1,2"))
        assert.same({ [2] = "expected an integer",
                      [3] = "expected an integer" },
                    err_of(f, { 1, "x", 2.5 }))
    end)

    it("array elements may not be null", function()
        local f = { type = "array", elements = { type = "string" } }
        assert.same({ [1] = "required field missing" }, err_of(f, { null }))
    end)

    it("set: sequence, element errors by position", function()
        local f = { type = "set", elements = { type = "string",
                                               one_of = { "a", "b" } } }
        assert.is_true(valid(f, { "a", "b", "a" }))
        assert.equals("expected a set", err_of(f, { x = "a" }))
        assert.same({ [2] = "expected one of: a, b" }, err_of(f, { "a", "c" }))
    end)

    it("map: keys and values are checked, the first error is the field's",
       function()
        local f = { type = "map", keys = { type = "string" },
                    values = { type = "integer" } }
        assert.is_true(valid(f, { a = 1, b = 2 }))
        assert.is_true(valid(f, {}))
        assert.equals("expected a map", err_of(f, "a=1"))
        assert.equals("expected an integer", err_of(f, { a = "1" }))
        assert.equals("expected a string", err_of(f, { [1] = 1 }))
        assert.equals("required field missing", err_of(f, { a = null }))
    end)

    it("record: nested error tables, unknown fields", function()
        local f = { type = "record", fields = {
            { host = { type = "string", required = true } },
            { port = { type = "integer", between = { 0, 65535 } } },
            { tls = { type = "record", fields = {
                { verify = { type = "boolean" } } } } },
        } }
        assert.is_true(valid(f, { host = "h", port = 1 }))
        assert.equals("expected a record", err_of(f, "h:1"))
        assert.same({ host = "required field missing",
                      port = "value should be between 0 and 65535",
                      tls = { verify = "expected a boolean" },
                      extra = "unknown field" },
                    err_of(f, { port = 70000, tls = { verify = 1 },
                                extra = true }))
    end)

    it("array of records reports errors by position and field", function()
        local f = { type = "array", elements = { type = "record", fields = {
            { name = { type = "string", required = true } },
            { weight = { type = "integer", default = 100,
                         between = { 0, 65535 } } },
        } } }
        assert.is_true(valid(f, { { name = "a" }, { name = "b", weight = 1 } }))
        assert.same({ [2] = { name = "required field missing",
                              weight = "value should be between 0 and 65535" } },
                    err_of(f, { { name = "a" }, { weight = -1 } }))
    end)

    it("map of records", function()
        local f = { type = "map", keys = { type = "string" },
                    values = { type = "record", fields = {
                        { cost = { type = "number", required = true } } } } }
        assert.is_true(valid(f, { ["gpt-4o"] = { cost = 2.5 } }))
        assert.same({ cost = "required field missing" },
                    err_of(f, { ["gpt-4o"] = {} }))
    end)

    it("foreign: null-only typedefs and primary keys", function()
        assert.is_true(valid(typedefs.no_consumer, null))
        assert.equals("value must be null",
                      err_of(typedefs.no_consumer, { id = "x" }))
        local f = { type = "foreign", reference = "services" }
        assert.is_true(valid(f, { id = "9748f662-7711-4a90-8186-dc02f10eb0f5" }))
        assert.same({ id = "expected a valid UUID" }, err_of(f, { id = "x" }))
        assert.same({ id = "missing primary key" }, err_of(f, {}))
    end)

    it("validate_field reports an unknown type", function()
        local s = one { type = "string" }
        local ok, err = s:validate_field({ type = "strange" }, 1)
        assert.is_nil(ok)
        assert.equals("invalid type: strange", err)
    end)
end)

describe("field attributes", function()
    it("required: missing and null", function()
        local s = one { type = "string", required = true }
        local ok, errs = s:validate {}
        assert.is_nil(ok)
        assert.same({ f = "required field missing" }, errs)
        ok, errs = s:validate { f = null }
        assert.same({ f = "required field missing" }, errs)
        -- partial updates accept missing required fields, not null ones
        assert.is_true(s:validate({}, false))
        ok = s:validate({ f = null }, false)
        assert.is_nil(ok)
    end)

    it("an optional field may be null", function()
        assert.is_true(valid({ type = "integer" }, null))
    end)

    it("unknown top-level fields", function()
        local ok, errs = one({ type = "string" }):validate { f = "a", g = 1 }
        assert.is_nil(ok)
        assert.same({ g = "unknown field" }, errs)
    end)

    it("one_of / not_one_of", function()
        local f = { type = "string", one_of = { "local", "cluster", "redis" } }
        assert.is_true(valid(f, "redis"))
        assert.equals("expected one of: local, cluster, redis",
                      err_of(f, "memcached"))
        local g = { type = "string", not_one_of = { "host", "content-length" } }
        assert.is_true(valid(g, "x-id"))
        assert.equals("must not be one of: host, content-length",
                      err_of(g, "host"))
        assert.equals("expected one of: 1, 2",
                      err_of({ type = "integer", one_of = { 1, 2 } }, 3))
    end)

    it("between / gt", function()
        assert.equals("value should be between 0 and 65535",
                      err_of({ type = "integer", between = { 0, 65535 } }, -1))
        assert.is_true(valid({ type = "integer", between = { 0, 65535 } }, 0))
        assert.is_true(valid({ type = "integer", between = { 0, 65535 } },
                             65535))
        assert.equals("value should be between 0 and 1.5",
                      err_of({ type = "number", between = { 0, 1.5 } }, 2))
        assert.equals("value must be greater than 0",
                      err_of({ type = "number", gt = 0 }, 0))
        assert.is_true(valid({ type = "number", gt = 0 }, 0.1))
    end)

    it("eq / ne", function()
        assert.equals("value must be 5", err_of({ type = "integer", eq = 5 }, 4))
        assert.equals("value must not be 4",
                      err_of({ type = "integer", ne = 4 }, 4))
        assert.equals("value must be null",
                      err_of({ type = "string", eq = null }, "x"))
        assert.equals("value must not be null",
                      err_of({ type = "string", ne = null }, null))
    end)

    it("len_eq / len_min / len_max on strings, arrays and maps", function()
        assert.equals("length must be 2",
                      err_of({ type = "string", len_eq = 2 }, "abc"))
        assert.equals("length must be at least 3",
                      err_of({ type = "string", len_min = 3 }, "ab"))
        assert.equals("length must be at most 3",
                      err_of({ type = "string", len_max = 3 }, "abcd"))
        local arr = { type = "array", elements = { type = "string" },
                      len_min = 1, len_max = 2 }
        assert.equals("length must be at least 1", err_of(arr, {}))
        assert.equals("length must be at most 2", err_of(arr, { "a", "b", "c" }))
        local map = { type = "map", keys = { type = "string" },
                      values = { type = "string" }, len_max = 1 }
        assert.equals("length must be at most 1",
                      err_of(map, { a = "1", b = "2" }))
    end)

    it("match / not_match use Lua patterns", function()
        local f = { type = "string", match = "^%u+$" }
        assert.is_true(valid(f, "GET"))
        assert.equals("invalid value: get", err_of(f, "get"))
        assert.equals("invalid value: a b",
                      err_of({ type = "string", not_match = "%s" }, "a b"))
    end)

    it("match_all / match_none / match_any carry their own messages",
       function()
        local f = { type = "string",
                    match_all = { { pattern = "^/", err = "must start with /" },
                                  { pattern = "[^/]$", err = "no trailing /" } },
                    match_none = { { pattern = "//",
                                     err = "must not have empty segments" } } }
        assert.is_true(valid(f, "/a/b"))
        assert.equals("must start with /", err_of(f, "a"))
        assert.equals("no trailing /", err_of(f, "/a/"))
        assert.equals("must not have empty segments", err_of(f, "/a//b"))
        local g = { type = "string",
                    match_any = { patterns = { "^http://", "^https://" },
                                  err = "must be an http(s) URL" } }
        assert.is_true(valid(g, "https://x"))
        assert.equals("must be an http(s) URL", err_of(g, "ftp://x"))
        -- no err given: Kong's generic text
        assert.equals("invalid value: x",
                      err_of({ type = "string",
                               match_any = { patterns = { "^y" } } }, "x"))
    end)

    it("starts_with / contains", function()
        assert.equals("should start with: /",
                      err_of({ type = "string", starts_with = "/" }, "a"))
        local f = { type = "array", elements = { type = "string" },
                    contains = "http" }
        assert.is_true(valid(f, { "https", "http" }))
        assert.equals("expected to contain: http", err_of(f, { "https" }))
    end)

    it("uuid / timestamp", function()
        local f = { type = "string", uuid = true }
        assert.is_true(valid(f, "9748f662-7711-4a90-8186-DC02F10EB0F5"))
        assert.equals("expected a valid UUID", err_of(f, "9748f662"))
        assert.equals("expected a valid UUID",
                      err_of(f, "9748f662-7711-4a90-8186-dc02f10eb0fz"))
        assert.equals("expected a valid timestamp",
                      err_of({ type = "integer", timestamp = true }, 0))
    end)

    it("is_regex", function()
        local f = { type = "string", is_regex = true }
        assert.is_true(valid(f, "^/api/v[0-9]+/(users|groups)$"))
        assert.is_true(valid(f, "(?i)^bearer\\s+\\S+$"))
        assert.equals("not a valid regex: (abc", err_of(f, "(abc"))
        assert.equals("not a valid regex: [a-z", err_of(f, "[a-z"))
        assert.equals("not a valid regex: *abc", err_of(f, "*abc"))
        assert.equals("not a valid regex: a{3,1}", err_of(f, "a{3,1}"))
    end)

    it("custom_validator: its message, or Kong's generic one", function()
        local even = { type = "integer", custom_validator = function(v)
            if v % 2 == 0 then
                return true
            end
            return nil, "must be even"
        end }
        assert.is_true(valid(even, 4))
        assert.equals("must be even", err_of(even, 3))
        local silent = { type = "string", custom_validator = function()
            return nil
        end }
        assert.equals("failed validating: abc", err_of(silent, "abc"))
    end)

    it("custom_validator on a record sees the whole record", function()
        local f = { type = "record", fields = {
            { min = { type = "integer" } }, { max = { type = "integer" } } },
            custom_validator = function(r)
                if type(r.min) == "number" and type(r.max) == "number"
                   and r.min > r.max then
                    return nil, "min must not exceed max"
                end
                return true
            end }
        assert.is_true(valid(f, { min = 1, max = 2 }))
        assert.is_true(valid(f, { min = 1 }))
        assert.equals("min must not exceed max", err_of(f, { min = 3, max = 2 }))
    end)

    it("err replaces the validator's message", function()
        assert.equals("pick a real policy",
                      err_of({ type = "string", one_of = { "a" },
                               err = "pick a real policy" }, "b"))
    end)

    it("validators run in Kong's order: one_of before len_min", function()
        assert.equals("expected one of: abc",
                      err_of({ type = "string", one_of = { "abc" },
                               len_min = 5 }, "x"))
    end)

    it("mutually_exclusive_subsets", function()
        local f = { type = "set", elements = { type = "string" },
                    mutually_exclusive_subsets = { { "http", "https" },
                                                   { "tcp", "tls" } } }
        assert.is_true(valid(f, { "http", "https" }))
        assert.equals("these sets are mutually exclusive: ('http', " ..
                      "'https'), ('tcp', 'tls')", err_of(f, { "http", "tcp" }))
    end)

    it("referenceable strings accept vault references", function()
        local f = { type = "string", referenceable = true, match = "^sk%-",
                    encrypted = true, description = "API key" }
        assert.is_true(valid(f, "sk-123"))
        assert.is_true(valid(f, "{vault://env/OPENAI_API_KEY}"))
        assert.equals("invalid value: {not-a-ref}", err_of(f, "{not-a-ref}"))
        -- not referenceable: the reference is just a string
        assert.equals("invalid value: {vault://env/X}",
                      err_of({ type = "string", match = "^sk%-" },
                             "{vault://env/X}"))
        -- arrays of referenceable strings
        assert.is_true(valid({ type = "array", elements = {
            type = "string", referenceable = true, match = "^sk%-" } },
            { "sk-1", "{vault://aws/secret/key}" }))
    end)

    it("Schema.is_reference", function()
        assert.is_true(Schema.is_reference("{vault://env/NAME}"))
        assert.is_true(Schema.is_reference("{vault://hcv/path/to/x?ttl=60}"))
        assert.is_false(Schema.is_reference("vault://env/NAME"))
        assert.is_false(Schema.is_reference("{vault:/env/NAME}"))
        assert.is_false(Schema.is_reference("{secret://env/NAME}"))
        assert.is_false(Schema.is_reference(42))
    end)

    it("attributes without validation meaning are accepted", function()
        assert.is_true(valid({ type = "string", description = "d",
                               encrypted = true, unique = true,
                               referenceable = true }, "x"))
    end)
end)

describe("validate input", function()
    it("wants a table", function()
        local s = one { type = "string" }
        local ok, errs = s:validate "x"
        assert.is_nil(ok)
        assert.same({ ["@entity"] = { "expected an input table" } }, errs)
        ok, errs = s:process_and_validate(42)
        assert.is_nil(ok)
        assert.same({ ["@entity"] = { "expected an input table" } }, errs)
    end)

    it("treats cjson's decoded null as null", function()
        local s = one { type = "string", required = true }
        local _, errs = s:validate(cjson.decode('{"f": null}'))
        assert.same({ f = "required field missing" }, errs)
        assert.is_true(one({ type = "string" }):validate(
            cjson.decode('{"f": null}')))
    end)
end)

describe("process_auto_fields", function()
    local s = assert(Schema.new { fields = {
        { name = { type = "string", required = true } },
        { enabled = { type = "boolean", default = true } },
        { optional = { type = "string" } },
        { methods = { type = "array", elements = { type = "string" },
                      default = { "GET", "POST" } } },
        { protocols = { type = "set", elements = { type = "string" } } },
        { config = { type = "record", fields = {
            { timeout = { type = "integer", default = 60000 } },
            { mode = { type = "string", default = "fast" } },
            { key = { type = "string" } },
            { nested = { type = "record", fields = {
                { depth = { type = "integer", default = 2 } } } } },
            { extra = { type = "record", required = false, fields = {
                { x = { type = "integer", default = 1 } } } } },
            { targets = { type = "array", elements = { type = "record",
                fields = {
                    { host = { type = "string", required = true } },
                    { weight = { type = "integer", default = 100 } },
                } } } },
            { costs = { type = "map", keys = { type = "string" },
                        values = { type = "record", fields = {
                            { input = { type = "number", default = 0 } } } } } },
        } } },
    } })

    it("fills defaults recursively and leaves the input alone", function()
        local input = { name = "x", config = { targets = { { host = "a" } },
                                               costs = { m = {} } } }
        local out = s:process_auto_fields(input, "insert")
        assert.is_nil(input.enabled)
        assert.is_nil(input.config.timeout)
        assert.equals(true, out.enabled)
        assert.same({ "GET", "POST" }, out.methods)
        assert.equals(null, out.optional)
        assert.equals(60000, out.config.timeout)
        assert.equals("fast", out.config.mode)
        assert.equals(null, out.config.key)
        assert.equals(2, out.config.nested.depth)
        assert.equals(null, out.config.extra)
        assert.equals(100, out.config.targets[1].weight)
        assert.equals(0, out.config.costs.m.input)
    end)

    it("builds an absent config record from its defaults", function()
        local out = s:process_auto_fields({ name = "x" }, "insert")
        assert.equals(60000, out.config.timeout)
        assert.equals(2, out.config.nested.depth)
        assert.is_true(s:validate(out))
    end)

    it("keeps given values and explicit nulls", function()
        local out = s:process_auto_fields({ name = "x", enabled = false,
                                            config = { timeout = 5,
                                                       mode = null } })
        assert.equals(false, out.enabled)
        assert.equals(5, out.config.timeout)
        assert.equals(null, out.config.mode)
    end)

    it("does not share default tables between entities", function()
        local a = s:process_auto_fields({ name = "a" }, "insert")
        local b = s:process_auto_fields({ name = "b" }, "insert")
        a.methods[1] = "PUT"
        assert.equals("GET", b.methods[1])
    end)

    it("removes duplicates from sets", function()
        local out = s:process_auto_fields({ name = "x",
                                            protocols = { "http", "https",
                                                          "http" } })
        assert.same({ "http", "https" }, { out.protocols[1],
                                            out.protocols[2], out.protocols[3] })
        assert.equals(2, #out.protocols)
        assert.is_true(out.protocols.https)   -- Kong's set lookup
    end)

    it("no_defaults leaves defaults out", function()
        local out = s:process_auto_fields({ name = "x" }, "insert", false,
                                          { no_defaults = true })
        assert.equals(null, out.enabled)
    end)

    it("update does not fill defaults", function()
        local out = s:process_auto_fields({ config = { mode = "slow" } },
                                          "update")
        assert.is_nil(out.enabled)
        assert.is_nil(out.config.timeout)
        assert.equals("slow", out.config.mode)
    end)

    it("select drops nulls and unknown fields", function()
        local data = s:process_auto_fields({ name = "x" }, "insert")
        data.junk = 1
        local out = s:process_auto_fields(data, "select")
        assert.is_nil(out.optional)
        assert.is_nil(out.config.key)
        assert.is_nil(out.junk)
        assert.equals(60000, out.config.timeout)
        local kept = s:process_auto_fields(
            s:process_auto_fields({ name = "x" }, "insert"), "select", true)
        assert.equals(null, kept.optional)
    end)

    it("fills auto uuids and timestamps on insert", function()
        local t = assert(Schema.new { fields = {
            { id = typedefs.uuid },
            { created_at = typedefs.auto_timestamp_s },
            { updated_at = typedefs.auto_timestamp_ms },
        } })
        local out = t:process_auto_fields({}, "insert")
        assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", out.id)
        assert.is_number(out.created_at)
        assert.is_number(out.updated_at)
        assert.is_true(t:validate(out))
        local given = t:process_auto_fields(
            { id = "9748f662-7711-4a90-8186-dc02f10eb0f5" }, "insert")
        assert.equals("9748f662-7711-4a90-8186-dc02f10eb0f5", given.id)
    end)

    it("applies shorthand fields", function()
        local t = assert(Schema.new { fields = {
            { redis = { type = "record", fields = {
                { host = { type = "string" } },
                { port = { type = "integer", default = 6379 } } } } },
        }, shorthand_fields = {
            { redis_host = { type = "string", func = function(v)
                return { redis = { host = v } }
            end } },
        } })
        local out = t:process_auto_fields({ redis_host = "r1" }, "insert")
        assert.is_nil(out.redis_host)
        assert.equals("r1", out.redis.host)
        assert.equals(6379, out.redis.port)
        local _, errs = t:process_auto_fields({ redis_host = 5 }, "insert")
        assert.same({ redis_host = "expected a string" }, errs)
    end)

    it("validation of a record fills its defaults first", function()
        -- `mode` is required with a default: absent is fine inside a record
        local t = one { type = "record", fields = {
            { mode = { type = "string", required = true, default = "a" } } } }
        assert.is_true(t:validate { f = {} })
    end)
end)

describe("entity checks", function()
    local function check_schema(checks, fields)
        return assert(Schema.new {
            fields = fields or {
                { a = { type = "string" } },
                { b = { type = "string" } },
                { c = { type = "integer" } },
                { policy = { type = "string" } },
                { host = { type = "string" } },
            },
            entity_checks = checks,
        })
    end

    it("at_least_one_of", function()
        local s = check_schema { { at_least_one_of = { "a", "b" } } }
        assert.is_true(s:validate { a = "x" })
        local ok, errs = s:validate {}
        assert.is_nil(ok)
        assert.same({ ["@entity"] = {
            "at least one of these fields must be non-empty: 'a', 'b'" } },
            errs)
        _, errs = s:validate { a = "", b = null }
        assert.same({ "at least one of these fields must be non-empty: " ..
                      "'a', 'b'" }, errs["@entity"])
        -- partial validation without any of the fields does not run it
        assert.is_true(s:validate({ c = 1 }, false))
    end)

    it("only_one_of", function()
        local s = check_schema { { only_one_of = { "a", "b" } } }
        assert.is_true(s:validate { a = "x", b = null })
        local _, errs = s:validate { a = "x", b = "y" }
        assert.same({ "exactly one of these fields must be non-empty: " ..
                      "'a', 'b'" }, errs["@entity"])
        _, errs = s:validate { a = null, b = null }
        assert.same({ "exactly one of these fields must be non-empty: " ..
                      "'a', 'b'" }, errs["@entity"])
    end)

    it("only_one_of needs all its fields present (null counts)", function()
        local s = check_schema { { only_one_of = { "a", "b" } } }
        local ok, errs = s:validate { a = "x" }
        assert.is_nil(ok)
        assert.same({ b = "field required for entity check" }, errs)
        -- after process_auto_fields the absent field is null: the check runs
        assert.truthy(s:process_and_validate { a = "x" })
    end)

    it("mutually_exclusive", function()
        local s = check_schema { { mutually_exclusive = { "a", "b" } } }
        assert.is_true(s:validate {})
        assert.is_true(s:validate { a = "x" })
        local _, errs = s:validate { a = "x", b = "y" }
        assert.same({ "only one or none of these fields must be set: " ..
                      "'a', 'b'" }, errs["@entity"])
    end)

    it("mutually_required", function()
        local s = check_schema { { mutually_required = { "a", "b" } } }
        assert.is_true(s:validate {})
        assert.is_true(s:validate { a = "x", b = "y" })
        local _, errs = s:validate { a = "x" }
        assert.same({ "all or none of these fields must be set: 'a', 'b'" },
                    errs["@entity"])
    end)

    it("mutually_exclusive_sets", function()
        local s = check_schema { { mutually_exclusive_sets = {
            set1 = { "a", "b" }, set2 = { "c" } } } }
        assert.is_true(s:validate { a = "x", b = "y" })
        assert.is_true(s:validate { c = 1 })
        local _, errs = s:validate { a = "x", c = 1 }
        assert.same({ "these sets are mutually exclusive: ('a'), ('c')" },
                    errs["@entity"])
    end)

    it("distinct", function()
        local s = check_schema { { distinct = { "a", "b" } } }
        assert.is_true(s:validate { a = "x", b = "y" })
        local _, errs = s:validate { a = "x", b = "x" }
        assert.same({ "values of these fields must be distinct: 'a', 'b'" },
                    errs["@entity"])
    end)

    it("conditional: field error plus an entity error", function()
        local s = check_schema { { conditional = {
            if_field = "policy", if_match = { eq = "redis" },
            then_field = "host", then_match = { required = true } } } }
        assert.is_true(s:validate { policy = "local" })
        assert.is_true(s:validate { policy = "redis", host = "r" })
        local ok, errs = s:validate { policy = "redis" }
        assert.is_nil(ok)
        assert.same({
            host = "required field missing",
            ["@entity"] = { "failed conditional validation given value of " ..
                            "field 'policy'" },
        }, errs)
    end)

    it("conditional with a then_match validator and then_err", function()
        local s = check_schema { { conditional = {
            if_field = "policy", if_match = { one_of = { "a", "b" } },
            then_field = "c", then_match = { between = { 1, 5 } },
            then_err = "c must be small when '%s' is a or b" } } }
        assert.is_true(s:validate { policy = "a", c = 3 })
        assert.is_true(s:validate { policy = "z", c = 30 })
        local _, errs = s:validate { policy = "b", c = 30 }
        assert.same({ c = "value should be between 1 and 5",
                      ["@entity"] = { "c must be small when 'policy' is a " ..
                                      "or b" } }, errs)
    end)

    it("conditional needs its if_field", function()
        local s = check_schema { { conditional = {
            if_field = "policy", if_match = { eq = "redis" },
            then_field = "host", then_match = { required = true } } } }
        local _, errs = s:validate { host = "x" }
        assert.same({ policy = "field required for entity check" }, errs)
    end)

    it("conditional_at_least_one_of with else", function()
        local s = check_schema { { conditional_at_least_one_of = {
            if_field = "policy", if_match = { eq = "redis" },
            then_at_least_one_of = { "host" },
            then_err = "redis needs %s",
            else_match = { eq = "cluster" },
            else_then_at_least_one_of = { "a", "b" },
        } } }
        assert.is_true(s:validate { policy = "redis", host = "h" })
        assert.is_true(s:validate { policy = "local" })
        local _, errs = s:validate { policy = "redis" }
        assert.same({ "redis needs 'host'" }, errs["@entity"])
        _, errs = s:validate { policy = "cluster" }
        assert.same({ "at least one of these fields must be non-empty: " ..
                      "'a', 'b'" }, errs["@entity"])
    end)

    it("custom_entity_check sees only its field_sources", function()
        local seen
        local s = check_schema { { custom_entity_check = {
            field_sources = { "a", "c" },
            fn = function(entity)
                seen = entity
                if entity.c ~= null and entity.c > #entity.a then
                    return nil, "c must not exceed the length of a"
                end
                return true
            end } } }
        assert.is_true(s:validate { a = "abc", c = 2, b = "hidden" })
        assert.is_nil(seen.b)
        local _, errs = s:validate { a = "ab", c = 3 }
        assert.same({ "c must not exceed the length of a" }, errs["@entity"])
        -- does not run when one of its fields is invalid
        seen = nil
        _, errs = s:validate { a = "ab", c = "3" }
        assert.is_nil(seen)
        assert.same({ c = "expected an integer" }, errs)
    end)

    it("checks on nested paths", function()
        local s = assert(Schema.new {
            fields = { { config = { type = "record", fields = {
                { second = { type = "number" } },
                { minute = { type = "number" } },
                { policy = { type = "string", default = "local" } },
                { redis = { type = "record", fields = {
                    { host = { type = "string" } } } } },
            } } } },
            entity_checks = {
                { at_least_one_of = { "config.second", "config.minute" } },
                { conditional = { if_field = "config.policy",
                                  if_match = { eq = "redis" },
                                  then_field = "config.redis.host",
                                  then_match = { required = true } } },
            },
        })
        local ok, errs = s:process_and_validate { config = { second = 1 } }
        assert.truthy(ok)
        ok, errs = s:process_and_validate { config = { policy = "redis" } }
        assert.is_nil(ok)
        assert.same({
            config = { redis = { host = "required field missing" } },
            ["@entity"] = {
                "at least one of these fields must be non-empty: " ..
                "'config.second', 'config.minute'",
                "failed conditional validation given value of field " ..
                "'config.policy'",
            },
        }, errs)
    end)

    it("a record's own checks report under the record's @entity", function()
        local s = one { type = "record", fields = {
            { ip = typedefs.ip_or_cidr }, { port = typedefs.port } },
            entity_checks = { { at_least_one_of = { "ip", "port" } } } }
        local ok, errs = s:validate { f = {} }
        assert.is_nil(ok)
        assert.same({ f = { ["@entity"] = {
            "at least one of these fields must be non-empty: 'ip', 'port'" } } },
            errs)
    end)

    it("skips checks on vault references", function()
        local s = assert(Schema.new {
            fields = { { a = { type = "string", referenceable = true } },
                       { b = { type = "string" } } },
            entity_checks = { { distinct = { "a", "b" } } },
        })
        assert.is_true(s:validate { a = "{vault://env/X}",
                                    b = "{vault://env/X}" })
    end)

    it("validate_update words its messages for updates", function()
        local s = check_schema { { conditional = {
            if_field = "policy", if_match = { eq = "redis" },
            then_field = "host", then_match = { required = true } } },
            { at_least_one_of = { "a", "b" } } }
        local _, errs = s:validate_update { host = "x" }
        assert.same({ policy = "field required for entity check when " ..
                               "updating" }, errs)
        _, errs = s:validate { host = "x" }
        assert.equals("field required for entity check", errs.policy)
        local ok = s:validate_update { c = 1 }
        assert.is_true(ok)
    end)

    it("leaves the check arguments untouched", function()
        local checks = { { conditional = {
            if_field = "policy", if_match = { eq = "redis" },
            then_field = "host", then_match = { required = true } } } }
        local s = check_schema(checks)
        s:validate { policy = "redis" }
        assert.is_nil(getmetatable(s.entity_checks[1].conditional.if_match))
        assert.is_nil(s.entity_checks[1].conditional.if_match.len_min)
    end)

    it("runs the schema-level check function", function()
        local s = assert(Schema.new { fields = { { a = { type = "integer" } } },
            check = function(e)
                if e.a == 13 then
                    return nil, "unlucky"
                end
                return true
            end })
        assert.is_true(s:validate { a = 1 })
        local _, errs = s:validate { a = 13 }
        assert.same({ "unlucky" }, errs["@entity"])
    end)
end)

describe("error rendering", function()
    local errs = {
        ["@entity"] = { "at least one of these fields must be non-empty: " ..
                        "'config.second'" },
        config = { redis = { host = "required field missing" },
                   policy = "expected one of: local, redis" },
        protocols = { [2] = "expected one of: grpc, grpcs, http, https" },
    }

    it("flattens to dotted paths, entity errors first", function()
        assert.same({
            "at least one of these fields must be non-empty: 'config.second'",
            "config.policy: expected one of: local, redis",
            "config.redis.host: required field missing",
            "protocols.2: expected one of: grpc, grpcs, http, https",
        }, errors.flatten(errs))
    end)

    it("builds Kong's schema violation message", function()
        assert.equals("schema violation (name: required field missing)",
                      errors.schema_violation { name = "required field missing" })
        assert.matches("^4 schema violations %(at least one", 
                       errors.schema_violation(errs))
    end)

    it("errors_to_string", function()
        local s = one { type = "string" }
        assert.equals("Validation error: f: expected a string",
                      s:errors_to_string { f = "expected a string" })
        assert.is_nil(s:errors_to_string {})
    end)
end)

describe("typedefs", function()
    local kong_typedefs = require "kong.db.schema.typedefs"

    it("are the same module under Kong's names", function()
        assert.equals(typedefs, kong_typedefs)
        assert.equals(Schema, require "kong.db.schema")
    end)

    it("raise on an unknown typedef", function()
        assert.has_error(function()
            return typedefs.no_such_thing
        end, "schema typedef error: definition no_such_thing does not exist")
    end)

    it("protocols and protocols_http", function()
        assert.same({ "grpc", "grpcs", "http", "https" },
                    typedefs.protocols_http.default)
        assert.same({ [1] = "expected one of: grpc, grpcs, http, https" },
                    err_of(typedefs.protocols_http, { "tcp" }))
        assert.is_true(valid(typedefs.protocols, { "tcp", "tls" }))
        assert.same({ [1] = "expected one of: grpc, grpcs, http, https, " ..
                            "tcp, tls, tls_passthrough, udp" },
                    err_of(typedefs.protocols, { "ws" }))
    end)

    it("no_consumer / no_route / no_service", function()
        for _, name in ipairs { "no_consumer", "no_route", "no_service" } do
            assert.equals("value must be null",
                          err_of(typedefs[name], { id = "x" }))
            assert.is_true(valid(typedefs[name], null))
        end
    end)

    it("host", function()
        local t = typedefs.host
        for _, h in ipairs { "example.com", "a-b.example.com", "localhost",
                             "10.0.0.1", "::1", "[::1]", "example.com." } do
            assert.is_true(valid(t, h), h)
        end
        assert.equals("invalid value: ex ample.com", err_of(t, "ex ample.com"))
        assert.equals("invalid value: a-.com", err_of(t, "a-.com"))
        assert.equals("invalid value: 300.1.1.1", err_of(t, "300.1.1.1"))
        assert.equals("must not have a port", err_of(t, "example.com:80"))
        assert.equals("must not have a port", err_of(t, "example.com:99999"))
        assert.equals("must not have a port", err_of(t, "[::1]:80"))
    end)

    it("port and timeout", function()
        assert.equals("value should be between 0 and 65535",
                      err_of(typedefs.port, 65536))
        assert.equals("expected an integer", err_of(typedefs.port, 80.5))
        assert.is_true(valid(typedefs.timeout, 60000))
        assert.equals("value should be between 0 and 2147483646",
                      err_of(typedefs.timeout, -1))
    end)

    it("path", function()
        local t = typedefs.path
        assert.is_true(valid(t, "/v1/chat/completions"))
        assert.is_true(valid(t, "/a%20b/~x:@!$&'()*+,;="))
        assert.equals("should start with: /", err_of(t, "v1"))
        assert.equals("must not have empty segments", err_of(t, "/a//b"))
        assert.equals("invalid path: '/a b' (characters outside of the " ..
                      "reserved list of RFC 3986 found)", err_of(t, "/a b"))
        assert.equals("invalid url-encoded value: '%zz'", err_of(t, "/%zz"))
    end)

    it("url", function()
        local t = typedefs.url
        assert.is_true(valid(t, "https://api.openai.com/v1"))
        assert.is_true(valid(t, "http://user:pw@127.0.0.1:8080/x?y=1"))
        assert.equals("missing host in url", err_of(t, "api.openai.com"))
        assert.equals("missing host in url", err_of(t, "http://"))
        assert.equals("missing scheme in url", err_of(t, "//host/path"))
    end)

    it("header_name", function()
        assert.is_true(valid(typedefs.header_name, "X-Api-Key_2"))
        assert.equals("bad header name 'x api', allowed characters are " ..
                      "A-Z, a-z, 0-9, '_', and '-'",
                      err_of(typedefs.header_name, "x api"))
    end)

    it("http_method", function()
        assert.is_true(valid(typedefs.http_method, "PATCH"))
        assert.equals("invalid value: get", err_of(typedefs.http_method, "get"))
    end)

    it("ip, ip_or_cidr, cidr", function()
        assert.is_true(valid(typedefs.ip, "192.168.1.1"))
        assert.is_true(valid(typedefs.ip, "fe80::1"))
        assert.is_true(valid(typedefs.ip, "::ffff:10.0.0.1"))
        assert.equals("not an ip address: example.com",
                      err_of(typedefs.ip, "example.com"))
        assert.equals("not an ip address: 1.2.3", err_of(typedefs.ip, "1.2.3"))
        assert.equals("not an ip address: 1::2::3",
                      err_of(typedefs.ip, "1::2::3"))
        assert.is_true(valid(typedefs.ip_or_cidr, "10.0.0.0/8"))
        assert.is_true(valid(typedefs.ip_or_cidr, "2001:db8::/32"))
        assert.equals("invalid ip or cidr range: '10.0.0.0/33'",
                      err_of(typedefs.ip_or_cidr, "10.0.0.0/33"))
        assert.is_true(valid(typedefs.cidr, "10.0.0.0/8"))
        assert.equals("invalid ipv4 cidr range: '::1/64'",
                      err_of(typedefs.cidr, "::1/64"))
    end)

    it("sni and wildcard_host", function()
        assert.is_true(valid(typedefs.sni, "api.example.com"))
        assert.equals("must not be an IP", err_of(typedefs.sni, "10.0.0.1"))
        assert.equals("must not have a port",
                      err_of(typedefs.sni, "example.com:443"))
        assert.is_true(valid(typedefs.wildcard_host, "*.example.com"))
        assert.equals("wildcard must be leftmost or rightmost character",
                      err_of(typedefs.wildcard_host, "a.*.com"))
    end)

    it("name and utf8_name", function()
        assert.is_true(valid(typedefs.name, "my-service_1.v2~x"))
        assert.equals("invalid value 'a b': it must only contain " ..
                      "alphanumeric and '., -, _, ~' characters",
                      err_of(typedefs.name, "a b"))
        assert.is_true(valid(typedefs.utf8_name, "café"))
        assert.equals("invalid utf-8 character sequence detected at " ..
                      "position 3", err_of(typedefs.utf8_name, "ab\255"))
    end)

    it("tags", function()
        assert.is_true(valid(typedefs.tags, { "team-a", "prod env", "é" }))
        assert.same({ [2] = "invalid tag 'a/b': expected printable ascii " ..
                            "(except `,` and `/`) or valid utf-8 sequences" },
                    err_of(typedefs.tags, { "ok", "a/b" }))
    end)

    it("semantic_version", function()
        assert.is_true(valid(typedefs.semantic_version, "3.9.1"))
        assert.is_true(valid(typedefs.semantic_version, "1.0.0-beta"))
        assert.equals("invalid version number: must be in format of X.Y.Z",
                      err_of(typedefs.semantic_version, "v1"))
        assert.equals("must not have empty version segments",
                      err_of(typedefs.semantic_version, "1..2"))
    end)

    it("lua_code", function()
        assert.is_true(valid(typedefs.lua_code, { f = "return 1" }))
        assert.matches("lua_code:1:",
                       err_of(typedefs.lua_code, { f = "return +" }))
    end)

    it("certificate and key (PEM shape)", function()
        local cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n" ..
                     "-----END CERTIFICATE-----\n"
        local key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n" ..
                    "-----END PRIVATE KEY-----\n"
        assert.is_true(valid(typedefs.certificate, cert))
        assert.is_true(valid(typedefs.key, key))
        assert.matches("^invalid certificate: ",
                       err_of(typedefs.certificate, "not a cert"))
        assert.matches("^invalid key: ", err_of(typedefs.key, cert))
    end)

    it("queue record and its defaults", function()
        local s = one(typedefs.queue)
        local out = s:process_auto_fields({}, "insert")
        assert.equals(1, out.f.max_batch_size)
        assert.equals(10000, out.f.max_entries)
        assert.equals(0.01, out.f.initial_retry_delay)
        local _, errs = s:validate { f = { max_batch_size = 0 } }
        assert.same({ f = { max_batch_size =
                            "value should be between 1 and 1000000" } }, errs)
    end)

    it("pem record is optional and needs one key", function()
        local s = one(typedefs.pem)
        assert.equals(null, s:process_auto_fields({}, "insert").f)
        local _, errs = s:validate { f = {} }
        assert.same({ f = { ["@entity"] = {
            "at least one of these fields must be non-empty: " ..
            "'private_key', 'public_key'" } } }, errs)
        assert.is_true(s:validate { f = { private_key = "{vault://env/K}" } })
    end)

    it("hosts and router paths", function()
        assert.is_true(valid(typedefs.hosts, { "a.com", "*.b.com" }))
        assert.same({ [1] = "invalid wildcard: must be placed at leftmost " ..
                            "or rightmost label" },
                    err_of(typedefs.hosts, { "a.*.com" }))
        assert.is_true(valid(typedefs.router_paths, { "/a", "~/v[0-9]+$" }))
        assert.same({ [1] = "should start with: / (fixed path) or ~/ " ..
                            "(regex path)" },
                    err_of(typedefs.router_paths, { "a" }))
    end)

    it("typedefs can be specialized without changing the original",
       function()
        local p = typedefs.port { default = 6379 }
        assert.equals(6379, p.default)
        assert.is_nil(rawget(typedefs.port, "default"))
        assert.same({ 0, 65535 }, p.between)
    end)
end)

describe("Kong-style plugin schemas", function()
    -- Written the way Kong plugins write schema.lua, loaded through Kong's
    -- module names.

    local function rate_limiting_schema()
        local typedefs = require "kong.db.schema.typedefs"

        local ORDERED_PERIODS = { "second", "minute", "hour", "day", "month",
                                  "year" }

        local function validate_periods_order(config)
            for i, lower in ipairs(ORDERED_PERIODS) do
                local v1 = config[lower]
                if type(v1) == "number" then
                    for j = i + 1, #ORDERED_PERIODS do
                        local upper = ORDERED_PERIODS[j]
                        local v2 = config[upper]
                        if type(v2) == "number" and v2 < v1 then
                            return nil, string.format(
                                "The limit for %s(%.1f) cannot be lower " ..
                                "than the limit for %s(%.1f)",
                                upper, v2, lower, v1)
                        end
                    end
                end
            end
            return true
        end

        return {
            name = "rate-limiting",
            fields = {
                { protocols = typedefs.protocols_http },
                { config = {
                    type = "record",
                    fields = {
                        { second = { description = "Requests per second.",
                                     type = "number", gt = 0 } },
                        { minute = { description = "Requests per minute.",
                                     type = "number", gt = 0 } },
                        { hour = { description = "Requests per hour.",
                                   type = "number", gt = 0 } },
                        { day = { description = "Requests per day.",
                                  type = "number", gt = 0 } },
                        { month = { description = "Requests per month.",
                                    type = "number", gt = 0 } },
                        { year = { description = "Requests per year.",
                                   type = "number", gt = 0 } },
                        { limit_by = {
                            description = "The entity used to aggregate " ..
                                          "the limits.",
                            type = "string", default = "consumer",
                            one_of = { "consumer", "credential", "ip",
                                       "service", "header", "path" } } },
                        { header_name = typedefs.header_name },
                        { path = typedefs.path },
                        { policy = {
                            description = "Where the counters are kept.",
                            type = "string", default = "local", len_min = 0,
                            one_of = { "local", "cluster", "redis" } } },
                        { fault_tolerant = {
                            description = "Proxy when the counters fail.",
                            type = "boolean", required = true,
                            default = true } },
                        { redis = {
                            description = "Redis settings.",
                            type = "record",
                            fields = {
                                { host = typedefs.host },
                                { port = typedefs.port { default = 6379 } },
                                { password = {
                                    description = "Redis password.",
                                    type = "string", len_min = 0,
                                    referenceable = true,
                                    encrypted = true } },
                                { timeout = typedefs.timeout {
                                    default = 2000 } },
                                { database = { description = "Database.",
                                               type = "integer",
                                               default = 0 } },
                            },
                        } },
                        { hide_client_headers = {
                            description = "Hide the rate-limit headers.",
                            type = "boolean", required = true,
                            default = false } },
                        { error_code = { description = "Status on limit.",
                                         type = "number", default = 429,
                                         gt = 0 } },
                        { error_message = {
                            description = "Body on limit.",
                            type = "string",
                            default = "API rate limit exceeded" } },
                    },
                    custom_validator = validate_periods_order,
                } },
            },
            entity_checks = {
                { at_least_one_of = { "config.second", "config.minute",
                                      "config.hour", "config.day",
                                      "config.month", "config.year" } },
                { conditional = {
                    if_field = "config.policy", if_match = { eq = "redis" },
                    then_field = "config.redis.host",
                    then_match = { required = true } } },
                { conditional = {
                    if_field = "config.limit_by",
                    if_match = { eq = "header" },
                    then_field = "config.header_name",
                    then_match = { required = true } } },
            },
        }
    end

    local function key_auth_schema()
        local typedefs = require "kong.db.schema.typedefs"
        return {
            name = "key-auth",
            fields = {
                { consumer = typedefs.no_consumer },
                { protocols = typedefs.protocols_http },
                { config = {
                    type = "record",
                    fields = {
                        { key_names = {
                            description = "Where to look for the key.",
                            type = "array", required = true,
                            elements = typedefs.header_name,
                            default = { "apikey" } } },
                        { hide_credentials = {
                            description = "Strip the key upstream.",
                            type = "boolean", required = true,
                            default = false } },
                        { anonymous = {
                            description = "Consumer for failed auth.",
                            type = "string" } },
                        { key_in_header = { description = "Read headers.",
                                            type = "boolean",
                                            required = true,
                                            default = true } },
                        { key_in_query = { description = "Read the query.",
                                           type = "boolean", required = true,
                                           default = true } },
                        { key_in_body = { description = "Read the body.",
                                          type = "boolean", required = true,
                                          default = false } },
                        { run_on_preflight = {
                            description = "Authenticate OPTIONS.",
                            type = "boolean", required = true,
                            default = true } },
                    },
                } },
            },
        }
    end

    local function ai_proxy_schema()
        local typedefs = require "kong.db.schema.typedefs"

        local auth = {
            type = "record",
            required = false,
            fields = {
                { header_name = { description = "Auth header name.",
                                  type = "string", required = false,
                                  referenceable = true } },
                { header_value = { description = "Auth header value.",
                                   type = "string", required = false,
                                   encrypted = true, referenceable = true } },
                { param_name = { description = "Auth parameter name.",
                                 type = "string", required = false,
                                 referenceable = true } },
                { param_value = { description = "Auth parameter value.",
                                  type = "string", required = false,
                                  encrypted = true, referenceable = true } },
                { param_location = { description = "Where the parameter " ..
                                                   "goes.",
                                     type = "string", required = false,
                                     one_of = { "query", "body" } } },
                { allow_override = { description = "Let callers override.",
                                     type = "boolean", required = false,
                                     default = false } },
            },
        }

        local model_options = {
            type = "record",
            required = false,
            fields = {
                { max_tokens = { description = "Token limit.",
                                 type = "integer", required = false,
                                 default = 256 } },
                { input_cost = { description = "Cost per 1M input tokens.",
                                 type = "number", required = false,
                                 gt = 0 } },
                { output_cost = { description = "Cost per 1M output tokens.",
                                  type = "number", required = false,
                                  gt = 0 } },
                { temperature = { description = "Sampling temperature.",
                                  type = "number", required = false,
                                  between = { 0, 5 } } },
                { top_p = { description = "Nucleus sampling.",
                            type = "number", required = false,
                            between = { 0, 1 } } },
                { top_k = { description = "Top-k sampling.",
                            type = "integer", required = false,
                            between = { 0, 500 } } },
                { anthropic_version = { description = "Anthropic API " ..
                                                      "version.",
                                        type = "string",
                                        required = false } },
                { azure_instance = { description = "Azure instance.",
                                     type = "string", required = false } },
                { azure_api_version = { description = "Azure API version.",
                                        type = "string", required = false,
                                        default = "2023-05-15" } },
                { azure_deployment_id = { description = "Azure deployment.",
                                          type = "string",
                                          required = false } },
                { llama2_format = { description = "Llama2 wire format.",
                                    type = "string", required = false,
                                    one_of = { "raw", "openai", "ollama" } } },
                { mistral_format = { description = "Mistral wire format.",
                                     type = "string", required = false,
                                     one_of = { "openai", "ollama" } } },
                { upstream_url = typedefs.url {
                    description = "Override the provider URL.",
                    required = false } },
                { upstream_path = { description = "Override the path.",
                                    type = "string", required = false } },
            },
        }

        local model = {
            type = "record",
            required = true,
            fields = {
                { provider = { description = "LLM provider.",
                               type = "string", required = true,
                               one_of = { "openai", "azure", "anthropic",
                                          "cohere", "mistral", "llama2",
                                          "gemini", "bedrock",
                                          "huggingface" } } },
                { name = { description = "Model name.", type = "string",
                           required = false } },
                { options = model_options },
            },
        }

        local logging = {
            type = "record",
            required = true,
            fields = {
                { log_statistics = { description = "Log token usage.",
                                     type = "boolean", required = true,
                                     default = false } },
                { log_payloads = { description = "Log bodies.",
                                   type = "boolean", required = true,
                                   default = false } },
            },
        }

        return {
            name = "ai-proxy",
            fields = {
                { protocols = typedefs.protocols_http },
                { consumer = typedefs.no_consumer },
                { config = {
                    type = "record",
                    fields = {
                        { route_type = { description = "The kind of call.",
                                         type = "string", required = true,
                                         one_of = { "llm/v1/chat",
                                                    "llm/v1/completions",
                                                    "preserve" } } },
                        { auth = auth },
                        { model = model },
                        { logging = logging },
                        { response_streaming = {
                            description = "Streaming policy.",
                            type = "string", required = true,
                            default = "allow",
                            one_of = { "allow", "deny", "always" } } },
                        { max_request_body_size = {
                            description = "Largest request body to read.",
                            type = "integer", default = 8 * 1024,
                            gt = 0 } },
                        { model_name_header = {
                            description = "Send the model name back.",
                            type = "boolean", default = true } },
                    },
                    entity_checks = {
                        { mutually_required = { "auth.header_name",
                                                "auth.header_value" } },
                        { mutually_required = { "auth.param_name",
                                                "auth.param_value",
                                                "auth.param_location" } },
                        { conditional_at_least_one_of = {
                            if_field = "model.provider",
                            if_match = { one_of = { "llama2" } },
                            then_at_least_one_of = {
                                "model.options.llama2_format" },
                            then_err = "must set %s for llama2 provider" } },
                        { conditional_at_least_one_of = {
                            if_field = "model.provider",
                            if_match = { one_of = { "mistral" } },
                            then_at_least_one_of = {
                                "model.options.mistral_format" },
                            then_err = "must set %s for mistral provider" } },
                        { conditional = {
                            if_field = "model.provider",
                            if_match = { one_of = { "bedrock", "gemini" } },
                            then_field = "auth.allow_override",
                            then_match = { eq = false },
                            then_err = "bedrock and gemini only support " ..
                                       "auth.allow_override = false" } },
                    },
                } },
            },
        }
    end

    local rl, ka, ai

    setup(function()
        rl = assert(Schema.new_plugin(rate_limiting_schema()))
        ka = assert(Schema.new_plugin(key_auth_schema()))
        ai = assert(Schema.new_plugin(ai_proxy_schema()))
    end)

    describe("rate-limiting-like", function()
        it("accepts a minimal config and fills Kong's defaults", function()
            local e, errs = rl:process_and_validate {
                name = "rate-limiting", config = { minute = 5 } }
            assert.is_nil(errs)
            assert.equals(5, e.config.minute)
            assert.equals("local", e.config.policy)
            assert.equals("consumer", e.config.limit_by)
            assert.equals(true, e.config.fault_tolerant)
            assert.equals(429, e.config.error_code)
            assert.equals(6379, e.config.redis.port)
            assert.equals(2000, e.config.redis.timeout)
            assert.equals(null, e.config.redis.host)
            assert.same({ "grpc", "grpcs", "http", "https" },
                        { unpack(e.protocols) })
            assert.equals(true, e.enabled)
            assert.matches("^%x+%-", e.id)
            assert.equals(null, e.route)
            -- what a handler sees: nulls gone
            local conf = rl:process_auto_fields(e, "select").config
            assert.is_nil(conf.redis.host)
            assert.equals(6379, conf.redis.port)
        end)

        it("accepts redis with a vault password", function()
            local e = rl:process_and_validate {
                name = "rate-limiting",
                config = { second = 10, hour = 1000, policy = "redis",
                           redis = { host = "redis.internal",
                                     password = "{vault://env/REDIS_PW}" } } }
            assert.truthy(e)
            assert.equals("{vault://env/REDIS_PW}", e.config.redis.password)
        end)

        it("requires one limit", function()
            local _, errs = rl:process_and_validate {
                name = "rate-limiting", config = {} }
            assert.same({ ["@entity"] = {
                "at least one of these fields must be non-empty: " ..
                "'config.second', 'config.minute', 'config.hour', " ..
                "'config.day', 'config.month', 'config.year'" } }, errs)
        end)

        it("reports field errors with Kong's texts and shape", function()
            local _, errs = rl:process_and_validate {
                name = "rate-limiting",
                protocols = { "http", "tcp" },
                config = { minute = -1, policy = "memcached",
                           redis = { port = 70000, host = "a b" },
                           limit_by = "cookie", bogus = 1 } }
            assert.same({
                protocols = { [2] = "expected one of: grpc, grpcs, http, " ..
                                    "https" },
                config = {
                    minute = "value must be greater than 0",
                    policy = "expected one of: local, cluster, redis",
                    limit_by = "expected one of: consumer, credential, ip, " ..
                               "service, header, path",
                    bogus = "unknown field",
                    redis = { port = "value should be between 0 and 65535",
                              host = "invalid value: a b" },
                },
            }, errs)
        end)

        it("runs the record's custom validator", function()
            local _, errs = rl:process_and_validate {
                name = "rate-limiting", config = { minute = 10, hour = 5 } }
            assert.same({ config = "The limit for hour(5.0) cannot be lower " ..
                                   "than the limit for minute(10.0)" }, errs)
        end)

        it("needs config.redis.host with the redis policy", function()
            local _, errs = rl:process_and_validate {
                name = "rate-limiting",
                config = { second = 1, policy = "redis" } }
            assert.same({
                config = { redis = { host = "required field missing" } },
                ["@entity"] = { "failed conditional validation given value " ..
                                "of field 'config.policy'" },
            }, errs)
            assert.equals("2 schema violations (failed conditional " ..
                          "validation given value of field 'config.policy'; " ..
                          "config.redis.host: required field missing)",
                          errors.schema_violation(errs))
        end)

        it("checks the plugin name", function()
            local _, errs = rl:process_and_validate {
                name = "rate-limiting-advanced", config = { second = 1 } }
            assert.same({ name = "plugin 'rate-limiting-advanced' not " ..
                                 "enabled; add it to the 'plugins' " ..
                                 "configuration property" }, errs)
            _, errs = rl:validate { config = { second = 1 } }
            assert.same({ name = "required field missing" }, errs)
        end)

        it("accepts scoping to a service and route", function()
            assert.truthy(rl:process_and_validate {
                name = "rate-limiting", config = { second = 1 },
                service = { id = "9748f662-7711-4a90-8186-dc02f10eb0f5" },
                route = { id = "f7b8d4a4-4a06-45be-b0ff-3d4d5a0d2c31" },
                consumer = { id = "0b8a7ffe-d6b3-4d21-8d6e-4ba3b9dbd5a4" },
                tags = { "team-a" } })
        end)
    end)

    describe("key-auth-like", function()
        it("accepts the defaults", function()
            local e = assert(ka:process_and_validate { name = "key-auth" })
            assert.same({ "apikey" }, { unpack(e.config.key_names) })
            assert.equals(false, e.config.hide_credentials)
            assert.equals(null, e.config.anonymous)
        end)

        it("cannot be scoped to a consumer", function()
            local _, errs = ka:process_and_validate {
                name = "key-auth",
                consumer = { id = "0b8a7ffe-d6b3-4d21-8d6e-4ba3b9dbd5a4" } }
            assert.same({ consumer = "value must be null" }, errs)
        end)

        it("checks key names as header names", function()
            local _, errs = ka:process_and_validate {
                name = "key-auth",
                config = { key_names = { "apikey", "x key" },
                           hide_credentials = "yes" } }
            assert.same({ config = {
                key_names = { [2] = "bad header name 'x key', allowed " ..
                                    "characters are A-Z, a-z, 0-9, '_', " ..
                                    "and '-'" },
                hide_credentials = "expected a boolean" } }, errs)
        end)

        it("rejects an explicitly null required field", function()
            local _, errs = ka:process_and_validate {
                name = "key-auth", config = { key_names = null } }
            assert.same({ config = { key_names = "required field missing" } },
                        errs)
        end)
    end)

    describe("ai-proxy-like", function()
        local function conf(c)
            return { name = "ai-proxy", config = c }
        end

        it("accepts an OpenAI chat route and fills nested defaults",
           function()
            local e, errs = ai:process_and_validate(conf {
                route_type = "llm/v1/chat",
                auth = { header_name = "Authorization",
                         header_value = "Bearer {vault://env/OPENAI_KEY}" },
                model = { provider = "openai", name = "gpt-4o",
                          options = { temperature = 0.7, max_tokens = 512 } },
            })
            assert.is_nil(errs)
            assert.equals(512, e.config.model.options.max_tokens)
            assert.equals("2023-05-15", e.config.model.options.azure_api_version)
            assert.equals(false, e.config.logging.log_statistics)
            assert.equals("allow", e.config.response_streaming)
            assert.equals(8192, e.config.max_request_body_size)
            assert.equals(false, e.config.auth.allow_override)
        end)

        it("accepts vault references for credentials", function()
            assert.truthy(ai:process_and_validate(conf {
                route_type = "llm/v1/chat",
                auth = { header_name = "x-api-key",
                         header_value = "{vault://env/ANTHROPIC_API_KEY}" },
                model = { provider = "anthropic", name = "claude-sonnet-4-5",
                          options = { anthropic_version = "2023-06-01" } },
            }))
        end)

        it("requires route_type and a model provider", function()
            local _, errs = ai:process_and_validate(conf {})
            assert.same({ config = {
                route_type = "required field missing",
                model = { provider = "required field missing" },
            } }, errs)
        end)

        it("reports nested option errors", function()
            local _, errs = ai:process_and_validate(conf {
                route_type = "llm/v1/embeddings",
                model = { provider = "openia",
                          options = { temperature = 7, top_p = -0.1,
                                      max_tokens = 1.5,
                                      upstream_url = "localhost:11434" } },
                response_streaming = "sometimes",
            })
            assert.same({ config = {
                route_type = "expected one of: llm/v1/chat, " ..
                             "llm/v1/completions, preserve",
                response_streaming = "expected one of: allow, deny, always",
                model = {
                    provider = "expected one of: openai, azure, anthropic, " ..
                               "cohere, mistral, llama2, gemini, bedrock, " ..
                               "huggingface",
                    options = {
                        temperature = "value should be between 0 and 5",
                        top_p = "value should be between 0 and 1",
                        max_tokens = "expected an integer",
                        upstream_url = "missing host in url",
                    },
                },
            } }, errs)
        end)

        it("runs the config record's entity checks", function()
            local _, errs = ai:process_and_validate(conf {
                route_type = "llm/v1/chat",
                auth = { header_name = "Authorization" },
                model = { provider = "llama2", name = "llama3" },
            })
            assert.same({ config = { ["@entity"] = {
                "all or none of these fields must be set: " ..
                "'auth.header_name', 'auth.header_value'",
                "must set 'model.options.llama2_format' for llama2 provider",
            } } }, errs)
        end)

        it("conditional with then_err", function()
            local _, errs = ai:process_and_validate(conf {
                route_type = "llm/v1/chat",
                auth = { allow_override = true },
                model = { provider = "gemini", name = "gemini-1.5-pro" },
            })
            assert.same({ config = {
                auth = { allow_override = "value must be false" },
                ["@entity"] = { "bedrock and gemini only support " ..
                                "auth.allow_override = false" },
            } }, errs)
        end)

        it("rejects a config that is not a record", function()
            local _, errs = ai:process_and_validate(conf "openai")
            assert.same({ config = "expected a record" }, errs)
        end)
    end)

    it("needs a named plugin schema", function()
        local _, err = Schema.new_plugin { fields = {} }
        assert.equals("error in schema definition: plugin schema needs a " ..
                      "name", err)
        _, err = Schema.new_plugin "rate-limiting"
        assert.equals("expected a definition table", err)
    end)

    it("rejects plugin schemas that invent or retype base fields", function()
        local _, err = Schema.new_plugin { name = "p", fields = {
            { config = { type = "record", fields = {} } },
            { priority = { type = "integer" } } } }
        assert.equals("error in definition of 'p': priority: cannot create " ..
                      "a new field", err)
        _, err = Schema.new_plugin { name = "p", fields = {
            { config = { type = "record", fields = {} } },
            { protocols = { type = "string" } } } }
        assert.equals("error in definition of 'p': protocols: cannot change " ..
                      "type in a specialized field", err)
        _, err = Schema.new_plugin { name = "p", fields = {
            { protocols = typedefs.protocols_http } } }
        assert.equals("error in definition of 'p': config: abstract field " ..
                      "was not specialized", err)
    end)

    it("the bare config record validates with Schema.new too", function()
        local def = rate_limiting_schema()
        local s = assert(Schema.new(def))
        local e, errs = s:process_and_validate { config = { day = 100 } }
        assert.is_nil(errs)
        assert.equals("local", e.config.policy)
    end)
end)
