-- Unit: what moongate.schema works out once and reuses across entities --
-- the validator plan of a schema's fields, the views entity checks build
-- of a match table over the checked field, the fields a check reads, the
-- owner map of mutually_exclusive_subsets, the names known to have no
-- dot -- must answer as a fresh computation would: for fields a caller
-- changes, for one check table under two schemas, for match tables with
-- metamethods, for checkers a plugin replaces, and after thousands of
-- entities (an import's worth).

local Schema = require "moongate.schema"
local EC = require "moongate.schema.entity_checks"
local cjson = require "cjson"

local null = cjson.null

describe("schema reuse", function()
    it("reads a field the caller built afresh each time", function()
        local s = assert(Schema.new { fields = { { a = { type = "string" } } } })
        local f = { type = "string" }
        assert.is_true(s:validate_field(f, "x"))
        f.len_min = 5
        local ok, err = s:validate_field(f, "x")
        assert.is_nil(ok)
        assert.equals("length must be at least 5", err)
        f.len_min = nil
        f.one_of = { "y" }
        ok, err = s:validate_field(f, "x")
        assert.is_nil(ok)
        assert.equals("expected one of: y", err)
    end)

    it("validates a schema's own fields with every rule they set", function()
        local s = assert(Schema.new { fields = {
            { a = { type = "string", len_min = 0, len_max = 3,
                    match = "^%l*$" } },
            { b = { type = "integer", between = { 1, 9 }, gt = 2 } },
            { c = { type = "array", elements = { type = "string",
                                                 one_of = { "x", "y" } } } },
            { d = { type = "string" } },
        } })
        for _ = 1, 300 do                   -- well past the JIT's warm-up
            assert.is_true(s:validate { a = "", b = 5, c = { "x" }, d = "v" })
            local _, errs = s:validate { a = "ABCD", b = 0, c = { "z" },
                                         d = "" }
            assert.same({ a = "length must be at most 3",
                          b = "value must be greater than 2",
                          c = { "expected one of: x, y" },
                          d = "length must be at least 1" }, errs)
        end
    end)

    it("follows each schema's field under one shared check", function()
        local arg = { if_field = "p", if_match = { one_of = { "aa" } },
                      then_at_least_one_of = { "t" } }
        local fn = EC.checkers.conditional_at_least_one_of.fn
        local a = assert(Schema.new { fields = {
            { p = { type = "string", len_max = 1 } },
            { t = { type = "string" } } } })
        local b = assert(Schema.new { fields = {
            { p = { type = "string" } },
            { t = { type = "string" } } } })
        for _ = 1, 3 do
            -- under a, "aa" breaks len_max: the condition does not hold
            assert.is_true(fn({ p = "aa" }, arg, a))
            -- under b it holds, and `t` is missing
            assert.is_nil(fn({ p = "aa" }, arg, b))
        end
    end)

    it("reads a match table with metamethods through them", function()
        local match = setmetatable({}, { __index = { eq = "x" } })
        local s = assert(Schema.new {
            fields = { { p = { type = "string" } },
                       { t = { type = "string" } } },
            entity_checks = { { conditional_at_least_one_of = {
                if_field = "p", if_match = match,
                then_at_least_one_of = { "t" } } } } })
        for _ = 1, 3 do
            local ok, errs = s:validate { p = "x" }
            assert.is_nil(ok)
            assert.same({ "at least one of these fields must be non-empty: " ..
                          "'t'" }, errs["@entity"])
            assert.is_true(s:validate { p = "y" })
        end
    end)

    it("hands a replaced checker the projection of its fields", function()
        local checker = Schema.entity_checkers.at_least_one_of
        local saved = checker.fn
        local seen
        checker.fn = function(entity, names)
            seen = entity
            return saved(entity, names)
        end
        local ok, err = pcall(function()
            local s = assert(Schema.new {
                fields = { { a = { type = "string" } },
                           { b = { type = "string" } } },
                entity_checks = { { at_least_one_of = { "a" } } } })
            assert.is_true(s:validate { a = "x", b = "hidden" })
            assert.same({ a = "x" }, seen)
        end)
        checker.fn = saved
        assert(ok, err)
    end)

    it("gives built-in checks the entity's values, nested or not", function()
        local s = assert(Schema.new {
            fields = {
                { a = { type = "string" } },
                { r = { type = "record", required = false, fields = {
                    { x = { type = "string" } },
                    { y = { type = "string" } } } } },
            },
            entity_checks = {
                { at_least_one_of = { "a", "r.x" } },
                { mutually_exclusive = { "r.x", "r.y" } },
                { conditional = { if_field = "a", if_match = { eq = "need" },
                                  then_field = "r.y",
                                  then_match = { required = true } } },
            } })
        for _ = 1, 3 do
            assert.is_true(s:validate { r = { x = "1" } })
            local _, errs = s:validate { a = null, r = null }
            assert.same({ "at least one of these fields must be non-empty: " ..
                          "'a', 'r.x'" }, errs["@entity"])
            _, errs = s:validate { r = { x = "1", y = "2" } }
            assert.same({ "only one or none of these fields must be set: " ..
                          "'r.x', 'r.y'" }, errs["@entity"])
            _, errs = s:validate { a = "need", r = { x = "1" } }
            assert.same({ y = "required field missing" }, errs.r)
            assert.is_true(s:validate { a = "need", r = { y = "2" } })
        end
    end)

    it("names every clashing subset, in the value's order", function()
        local f = { type = "set", elements = { type = "string" },
                    mutually_exclusive_subsets = { { "http", "https" },
                                                   { "tcp", "tls", "udp" },
                                                   { "grpc", "grpcs" } } }
        local s = assert(Schema.new { fields = { { p = f } } })
        for _ = 1, 3 do
            assert.is_true(s:validate { p = { "http", "https", "x" } })
            assert.is_true(s:validate { p = { "x", "udp", "tls" } })
            local _, errs = s:validate { p = { "tls", "grpc", "tcp", "http" } }
            assert.equals("these sets are mutually exclusive: ('tcp', 'tls', " ..
                          "'udp'), ('grpc', 'grpcs'), ('http', 'https')",
                          errs.p)
        end
    end)

    it("reads and writes dotted and plain paths alike", function()
        local t = { a = { b = { c = 1 } }, ["x"] = 2 }
        for _ = 1, 3 do
            assert.equals(1, EC.get_field(t, "a.b.c"))
            assert.equals(2, EC.get_field(t, "x"))
            assert.is_nil(EC.get_field(t, "a.z.c"))
            assert.is_nil(EC.get_field("not a table", "x"))
        end
    end)
end)
