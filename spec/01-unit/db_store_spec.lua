-- Unit: moongate.db.store.fake() -- the in-memory store keeps the
-- contract of core/store/mg_store.h: uniques, references with
-- cascade/restrict, tag filters, cursors, replace_all, export order,
-- version counter, error codes and messages.

local S = require "moongate.db.store"

local function U(n)
    return string.format("00000000-0000-4000-8000-%012d", n)
end

describe("db store (fake backend)", function()
    local s
    before_each(function()
        s = S.fake()
    end)

    it("inserts, gets by id and by unique field, bumps the version", function()
        assert.is_true(s:insert { type = "services", id = U(1), json = "{}",
                                  uniques = { { "name", "s1" } } })
        assert.equals(1, s:version())
        assert.equals(U(1), s:get("services", "s1", "name").id)
        assert.equals(U(1), s:get("services", U(1)).id)
        local _, err = s:get("services", "nope", "name")
        assert.equals(S.E.NOT_FOUND, err.code)
    end)

    it("refuses a taken id and a taken unique, naming the holder", function()
        s:insert { type = "services", id = U(1), json = "{}",
                   uniques = { { "name", "s1" } } }
        local ok, err = s:insert { type = "services", id = U(1), json = "{}" }
        assert.is_nil(ok)
        assert.equals(S.E.EXISTS, err.code)
        ok, err = s:insert { type = "services", id = U(2), json = "{}",
                             uniques = { { "name", "s1" } } }
        assert.equals(S.E.UNIQUE, err.code)
        assert.equals("name", err.field)
        assert.equals(U(1), err.ref_id)
        assert.equals([[UNIQUE violation detected on '{name="s1"}']], err.msg)
        assert.equals(1, s:version())
    end)

    it("checks references, restricts and cascades deletes", function()
        s:insert { type = "services", id = U(1), json = "{}" }
        local ok, err = s:insert { type = "routes", id = U(2), json = "{}",
                                   refs = { { "service", "services", U(9) } } }
        assert.equals(S.E.FOREIGN, err.code)
        assert.equals("service", err.field)
        assert.truthy(s:insert { type = "routes", id = U(2), json = "{}",
                                 refs = { { "service", "services", U(1) } } })
        assert.truthy(s:insert { type = "plugins", id = U(3), json = "{}",
                                 refs = { { "route", "routes", U(2) } } })
        ok, err = s:delete("services", U(1))
        assert.is_nil(ok)
        assert.equals(S.E.FOREIGN, err.code)
        assert.equals("routes", err.ref_type)
        assert.equals("an existing 'routes' entity references this " ..
                      "'services' entity", err.msg)
        -- plugins.route cascades
        assert.equals(2, s:delete("routes", U(2)))
        assert.equals(S.E.NOT_FOUND, select(2, s:get("plugins", U(3))).code)
        assert.equals(1, s:delete("services", U(1)))
    end)

    it("pages with tag filters and cursors stable across writes", function()
        for i = 10, 19 do
            s:insert { type = "consumers", id = U(i), json = "{}",
                       tags = { i % 2 == 0 and "even" or "odd", "all" } }
        end
        local page, nxt = s:list("consumers", { tags = { "even" } }, 2)
        assert.same({ U(10), U(12) }, { page[1].id, page[2].id })
        s:delete("consumers", U(12))          -- the cursor's own entity
        page, nxt = s:list("consumers", { tags = { "even" } }, 2, nxt)
        assert.same({ U(14), U(16) }, { page[1].id, page[2].id })
        page, nxt = s:list("consumers", { tags = { "even" } }, 2, nxt)
        assert.equals(1, #page)
        assert.is_nil(nxt)
        page = s:list("consumers", { tags = { "even", "odd" },
                                     tags_any = true })
        assert.equals(9, #page)
        page = s:list("consumers", { tags = { "even", "odd" } })
        assert.equals(0, #page)
        local _, err = s:list("consumers", nil, 2, "!!")
        assert.equals(S.E.OFFSET, err.code)
    end)

    it("replace_all is all or nothing, and export is in dependency order",
       function()
        s:insert { type = "services", id = U(1), json = "{}" }
        local ok, err = s:replace_all {
            { type = "routes", id = U(2), json = "{}",
              refs = { { "service", "services", U(7) } } },
        }
        assert.is_nil(ok)
        assert.equals(0, err.index)
        assert.equals(U(1), s:get("services", U(1)).id)
        assert.is_true(s:replace_all {
            { type = "plugins", id = U(5), json = "{}",
              refs = { { "route", "routes", U(2) } } },
            { type = "routes", id = U(2), json = "{}",
              refs = { { "service", "services", U(3) } } },
            { type = "services", id = U(3), json = "{}" },
        })
        local list = s:export()
        assert.same({ "services", "routes", "plugins" },
                    { list[1].type, list[2].type, list[3].type })
        assert.equals(S.E.NOT_FOUND, select(2, s:get("services", U(1))).code)
    end)

    it("round-trips entities through the wire encoding", function()
        local e = { type = "routes", id = U(2), json = '{"a":"b:c"}',
                    uniques = { { "name", "r:1" } },
                    refs = { { "service", "services", U(1), 2 } },
                    tags = { "x", "" .. "y:z" } }
        local got = S.decode_entity(S.encode_entity(e), 1)
        assert.same(e, got)
    end)
end)
