/*
 * test_lua_store.c -- the "<len>:<bytes>" wire format of the store's FFI
 * wrappers (core/lua/mg_lua_store.c): the item and count readers on
 * malformed lengths, counts larger than the buffer, truncated items, huge
 * numbers, empty strings and NUL bytes; every prefix of a valid entity
 * and entity list refused without a read past the end; round trips
 * (write, get, list, export, replace_all) through a real store in a
 * temporary directory removed at the end; error items and small error
 * buffers.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "lua/mg_lua_store.c"
#include "tap.h"

static char tmpdir[] = "/tmp/mg_test_lua_store_XXXXXX";

/* ---- an encoder, as lua/moongate/db/store.lua writes ------------------ */

typedef struct {
    char   d[65536];
    size_t n;
} enc_t;

static void
put(enc_t *e, const char *s, size_t n)
{
    e->n += (size_t) snprintf(e->d + e->n, sizeof(e->d) - e->n, "%zu:", n);
    memcpy(e->d + e->n, s, n);
    e->n += n;
}

static void
puts_(enc_t *e, const char *s)
{
    put(e, s, strlen(s));
}

static void
putn(enc_t *e, unsigned long n)
{
    char num[32];
    snprintf(num, sizeof(num), "%lu", n);
    puts_(e, num);
}

/* a service with a name unique and two tags */
static void
enc_service(enc_t *e, const char *id, const char *name)
{
    char json[256];

    snprintf(json, sizeof(json), "{\"id\":\"%s\",\"name\":\"%s\"}", id,
             name);
    puts_(e, "services");
    puts_(e, id);
    puts_(e, json);
    putn(e, 1);
    puts_(e, "name");
    puts_(e, name);
    putn(e, 0);
    putn(e, 2);
    puts_(e, "t1");
    puts_(e, "t2");
}

/* a route referencing a service (on_delete as given, a raw item) */
static void
enc_route(enc_t *e, const char *id, const char *svc, const char *od)
{
    puts_(e, "routes");
    puts_(e, id);
    puts_(e, "{\"paths\":[\"/\"]}");
    putn(e, 0);
    putn(e, 1);
    puts_(e, "service");
    puts_(e, "services");
    puts_(e, svc);
    puts_(e, od);
    putn(e, 0);
}

static mg_ls_rd_t
rd(const char *s, size_t n)
{
    mg_ls_rd_t r = { s, s + n, 0 };
    return r;
}

/* ---- item and count readers -------------------------------------------- */

static void
test_item(void)
{
    mg_ls_rd_t r;
    mg_str_t   s;
    char       nul[] = "3:a\0bX";

    r = rd("3:abc", 5);
    s = mg_ls_item(&r);
    ok(!r.bad && s.len == 3 && memcmp(s.data, "abc", 3) == 0
       && r.p == r.end, "item: 3:abc");

    r = rd("0:", 2);
    s = mg_ls_item(&r);
    ok(!r.bad && s.len == 0 && s.data != NULL && r.p == r.end,
       "item: the empty string");

    r = rd("", 0);
    s = mg_ls_item(&r);
    ok(r.bad && s.data == NULL, "item: nothing left is malformed");

    r = rd("3abc", 4);
    mg_ls_item(&r);
    ok(r.bad, "item: no colon");

    r = rd(":abc", 4);
    mg_ls_item(&r);
    ok(r.bad, "item: no digits");

    r = rd("-1:a", 4);
    mg_ls_item(&r);
    ok(r.bad, "item: a negative length");

    r = rd(" 1:a", 4);
    mg_ls_item(&r);
    ok(r.bad, "item: leading space");

    r = rd("4:abc", 5);
    mg_ls_item(&r);
    ok(r.bad, "item: length one past the end");

    r = rd("3", 1);
    mg_ls_item(&r);
    ok(r.bad, "item: digits then the end");

    r = rd("9999999999:x", 12);
    mg_ls_item(&r);
    ok(r.bad, "item: ten digits, larger than the buffer");

    r = rd("18446744073709551617:x", 22);
    mg_ls_item(&r);
    ok(r.bad, "item: a length past SIZE_MAX does not wrap");

    r = rd("00000000003:abc", 15);
    mg_ls_item(&r);
    ok(r.bad, "item: more than ten digits, even as leading zeros");

    r = rd("0000000003:abc", 14);
    s = mg_ls_item(&r);
    ok(!r.bad && s.len == 3, "item: ten digits with leading zeros");

    r = rd(nul, 6);
    s = mg_ls_item(&r);
    ok(!r.bad && s.len == 3 && s.data[1] == '\0' && *r.p == 'X',
       "item: a NUL byte inside is data");

    r = rd("1:a1:b", 6);
    r.bad = 1;
    s = mg_ls_item(&r);
    ok(r.bad && s.data == NULL && s.len == 0,
       "item: once bad, stays bad and yields nothing");
}

static void
test_count(void)
{
    mg_ls_rd_t r;
    size_t     n;

    r = rd("1:21:a1:b", 9);
    n = mg_ls_count(&r, 10, 2);
    ok(!r.bad && n == 2, "count: 2 with 2 items left");

    r = rd("1:3", 3);
    n = mg_ls_count(&r, 10, 2);
    ok(r.bad && n == 0, "count: 3 with nothing left");

    r = rd("3:1001:a", 8);
    n = mg_ls_count(&r, 10, 2);
    ok(r.bad && n == 0, "count: over the maximum");

    r = rd("0:", 2);
    mg_ls_count(&r, 10, 2);
    ok(r.bad, "count: the empty string is not a number");

    r = rd("2:1x", 4);
    mg_ls_count(&r, 10, 2);
    ok(r.bad, "count: a non-digit");

    r = rd("2:-1", 4);
    mg_ls_count(&r, 10, 2);
    ok(r.bad, "count: negative");

    r = rd("10:1000000000", 13);
    mg_ls_count(&r, (size_t) -1, 0);
    ok(r.bad, "count: ten digits refused");

    r = rd("9:999999999", 11);
    n = mg_ls_count(&r, (size_t) -1, 0);
    ok(!r.bad && n == 999999999, "count: nine digits, no minimum size");

    r = rd("9:999999999", 11);
    mg_ls_count(&r, (size_t) -1, 16);
    ok(r.bad, "count: nine digits times the minimum size, no overflow");

    r = rd("1:0", 3);
    n = mg_ls_count(&r, 0, 16);
    ok(!r.bad && n == 0, "count: zero at the end");
}

/* ---- whole entities ----------------------------------------------------- */

static int
read_entity(const char *s, size_t n, mg_store_entity_t *e, mg_pool_t *pool,
            int *whole)
{
    mg_ls_rd_t r = rd(s, n);
    int        rc = mg_ls_read_entity(&r, pool, e);

    *whole = r.p == r.end;
    return rc;
}

static void
test_entity(void)
{
    mg_store_entity_t e;
    mg_pool_t        *pool = mg_pool_create(4096);
    enc_t             x;
    size_t            i;
    int               whole, fails = 0;

    memset(&x, 0, sizeof(x));
    enc_service(&x, "s1", "svc");
    ok(read_entity(x.d, x.n, &e, pool, &whole) == MG_OK && whole
       && strcmp(e.type, "services") == 0 && e.nuniques == 1
       && e.uniques[0].value.len == 3 && e.ntags == 2 && e.nrefs == 0,
       "entity: a service decodes");

    /* every proper prefix is refused (ASan checks the reads) */
    for (i = 0; i < x.n; i++) {
        char *cp = malloc(i ? i : 1);
        memcpy(cp, x.d, i);
        if (read_entity(cp, i, &e, pool, &whole) == MG_OK && whole) {
            fails++;
            printf("#   prefix %zu accepted\n", i);
        }
        free(cp);
    }
    ok(fails == 0, "entity: every truncation is refused");

    memset(&x, 0, sizeof(x));
    enc_route(&x, "r1", "s1", "2");
    ok(read_entity(x.d, x.n, &e, pool, &whole) == MG_OK && whole
       && e.nrefs == 1 && e.refs[0].on_delete == 2,
       "entity: a route with a cascading reference");

    memset(&x, 0, sizeof(x));
    enc_route(&x, "r1", "s1", "12");
    ok(read_entity(x.d, x.n, &e, pool, &whole) == MG_OK
       && e.refs[0].on_delete == -1,
       "entity: a two-digit on_delete reads as invalid (-1)");

    /* counts larger than the buffer */
    memset(&x, 0, sizeof(x));
    puts_(&x, "services");
    puts_(&x, "s1");
    puts_(&x, "{}");
    puts_(&x, "64");
    ok(read_entity(x.d, x.n, &e, pool, &whole) != MG_OK,
       "entity: 64 uniques announced, none there");

    memset(&x, 0, sizeof(x));
    puts_(&x, "services");
    puts_(&x, "s1");
    puts_(&x, "{}");
    puts_(&x, "65");
    ok(read_entity(x.d, x.n, &e, pool, &whole) != MG_OK,
       "entity: more uniques than the maximum");

    memset(&x, 0, sizeof(x));
    puts_(&x, "services");
    puts_(&x, "s1");
    puts_(&x, "{}");
    putn(&x, 0);
    puts_(&x, "999999999");
    ok(read_entity(x.d, x.n, &e, pool, &whole) != MG_OK,
       "entity: a huge reference count");

    memset(&x, 0, sizeof(x));
    puts_(&x, "services");
    puts_(&x, "s1");
    puts_(&x, "{}");
    putn(&x, 0);
    putn(&x, 0);
    puts_(&x, "4096");
    for (i = 0; i < 4096; i++) puts_(&x, "");
    ok(read_entity(x.d, x.n, &e, pool, &whole) == MG_OK && whole
       && e.ntags == 4096 && e.tags[4095].len == 0,
       "entity: 4096 empty tags (the maximum) decode");

    memset(&x, 0, sizeof(x));
    put(&x, "routes\0x", 8);
    puts_(&x, "r1");
    puts_(&x, "{}");
    putn(&x, 0);
    putn(&x, 0);
    putn(&x, 0);
    ok(read_entity(x.d, x.n, &e, pool, &whole) != MG_OK,
       "entity: a NUL byte in the type is refused, not truncated");

    mg_pool_destroy(pool);
}

/* ---- a real store ------------------------------------------------------- */

static int
rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb; (void) flag; (void) ftw;
    return remove(p);
}

/* the code item of an error buffer */
static int
err_code(const char *err)
{
    mg_ls_rd_t r = rd(err, strlen(err));
    mg_str_t   s = mg_ls_item(&r);
    char       num[16];

    if (r.bad || s.len == 0 || s.len >= sizeof(num)) return 0;
    memcpy(num, s.data, s.len);
    num[s.len] = '\0';
    return atoi(num);
}

/* item i (0-based) of an item string, copied into out */
static const char *
nth(const char *s, size_t n, int i, char *out, size_t outlen)
{
    mg_ls_rd_t r = rd(s, n);
    mg_str_t   it = { NULL, 0 };

    while (i-- >= 0) it = mg_ls_item(&r);
    if (r.bad || it.len >= outlen) return NULL;
    memcpy(out, it.data, it.len);
    out[it.len] = '\0';
    return out;
}

static void
test_store(void)
{
    char              dir[300], err[1024], buf[256];
    char             *out = NULL;
    size_t            outlen = 0, nd = 0, i;
    void             *s;
    enc_t             x, y;
    int               rc, created = -1, fails;
    mg_store_entity_t e;
    mg_pool_t        *pool;

    snprintf(dir, sizeof(dir), "%s/a", tmpdir);
    s = mg_lua_store_open(dir, 16 << 20, err, sizeof(err));
    if (!ok(s != NULL, "store: open")) {
        printf("#   %s\n", err);
        return;
    }
    ok(mg_lua_store_open(NULL, 0, err, sizeof(err)) == NULL
       && strcmp(err, "no directory") == 0, "store: no directory");

    memset(&x, 0, sizeof(x));
    enc_service(&x, "s1", "svc");
    rc = mg_lua_store_write(s, 0, x.d, x.n, &created, err, sizeof(err));
    is_int(rc, MG_OK, "store: insert a service");

    rc = mg_lua_store_write(s, 0, x.d, x.n, &created, err, sizeof(err));
    is_int(rc, MG_STORE_E_EXISTS, "store: insert it again");
    is_int(err_code(err), MG_STORE_E_EXISTS, "store: the code item");
    ok(nth(err, strlen(err), 3, buf, sizeof(buf))
       && strcmp(buf, "s1") == 0, "store: the id item");

    rc = mg_lua_store_write(s, 2, x.d, x.n, &created, err, sizeof(err));
    ok(rc == MG_OK && created == 0, "store: upsert an existing one");

    /* trailing garbage, op out of range, NULL */
    memcpy(x.d + x.n, "1:x", 3);
    rc = mg_lua_store_write(s, 0, x.d, x.n + 3, NULL, err, sizeof(err));
    ok(rc == MG_STORE_E_INVALID && strstr(err, "malformed entity"),
       "store: trailing bytes are refused");
    rc = mg_lua_store_write(s, 3, x.d, x.n, NULL, err, sizeof(err));
    is_int(rc, MG_STORE_E_INVALID, "store: op 3 is refused");
    rc = mg_lua_store_write(s, 0, NULL, 0, NULL, err, sizeof(err));
    is_int(rc, MG_STORE_E_INVALID, "store: no entity");

    /* the get round trip: bytes out as they went in (NUL in json) */
    memset(&y, 0, sizeof(y));
    puts_(&y, "services");
    puts_(&y, "s2");
    put(&y, "{\"a\":\"\0\"}", 9);
    putn(&y, 1);
    puts_(&y, "name");
    puts_(&y, "two");
    putn(&y, 0);
    putn(&y, 1);
    puts_(&y, "x");
    rc = mg_lua_store_write(s, 2, y.d, y.n, &created, err, sizeof(err));
    if (!ok(rc == MG_OK && created == 1, "store: upsert creates s2")) {
        printf("#   rc %d err %s\n", rc, err);
    }
    rc = mg_lua_store_get(s, "services", "two", 3, "name", &out, &outlen,
                          err, sizeof(err));
    ok(rc == MG_OK && outlen == y.n && memcmp(out, y.d, y.n) == 0,
       "store: get by name returns the bytes written (NUL in json)");
    mg_lua_free(out);

    rc = mg_lua_store_get(s, "services", "nope", 4, NULL, &out, &outlen,
                          err, sizeof(err));
    ok(rc == MG_STORE_E_NOT_FOUND && out == NULL && outlen == 0,
       "store: get a missing one");

    /* a reference: bad on_delete items are refused by the store */
    memset(&x, 0, sizeof(x));
    enc_route(&x, "r1", "s1", "x");
    rc = mg_lua_store_write(s, 0, x.d, x.n, NULL, err, sizeof(err));
    is_int(rc, MG_STORE_E_INVALID, "store: on_delete 'x' is refused");
    memset(&x, 0, sizeof(x));
    enc_route(&x, "r1", "s1", "18446744073709551615");
    rc = mg_lua_store_write(s, 0, x.d, x.n, NULL, err, sizeof(err));
    is_int(rc, MG_STORE_E_INVALID, "store: a huge on_delete is refused");
    memset(&x, 0, sizeof(x));
    enc_route(&x, "r1", "s1", "0");
    rc = mg_lua_store_write(s, 0, x.d, x.n, NULL, err, sizeof(err));
    is_int(rc, MG_OK, "store: a route with the default on_delete");
    memset(&x, 0, sizeof(x));
    enc_route(&x, "r2", "s9", "0");
    rc = mg_lua_store_write(s, 0, x.d, x.n, NULL, err, sizeof(err));
    ok(rc == MG_STORE_E_FOREIGN && err_code(err) == MG_STORE_E_FOREIGN,
       "store: a dangling reference");

    /* list with a filter */
    memset(&x, 0, sizeof(x));
    puts_(&x, "0");
    putn(&x, 1);
    puts_(&x, "t1");
    puts_(&x, "0");
    rc = mg_lua_store_list(s, "services", x.d, x.n, 10, NULL, 0, &out,
                           &outlen, err, sizeof(err));
    ok(rc == MG_OK && nth(out, outlen, 1, buf, sizeof(buf))
       && strcmp(buf, "1") == 0, "store: list by tag t1 finds one");
    mg_lua_free(out);

    memset(&x, 0, sizeof(x));
    puts_(&x, "0");
    putn(&x, 17);
    for (i = 0; i < 17; i++) puts_(&x, "t");
    puts_(&x, "0");
    rc = mg_lua_store_list(s, "services", x.d, x.n, 10, NULL, 0, &out,
                           &outlen, err, sizeof(err));
    ok(rc == MG_STORE_E_INVALID && out == NULL,
       "store: 17 tags in a filter are refused");

    fails = 0;
    memset(&x, 0, sizeof(x));
    puts_(&x, "1");
    putn(&x, 1);
    puts_(&x, "t1");
    puts_(&x, "1");
    puts_(&x, "service");
    puts_(&x, "services");
    puts_(&x, "s1");
    for (i = 1; i < x.n; i++) {
        char *cp = malloc(i);
        memcpy(cp, x.d, i);
        rc = mg_lua_store_list(s, "routes", cp, i, 10, NULL, 0, &out,
                               &outlen, err, sizeof(err));
        if (rc == MG_OK) {
            fails++;
            mg_lua_free(out);
        }
        free(cp);
    }
    ok(fails == 0, "store: every truncated filter is refused");

    rc = mg_lua_store_list(s, "services", NULL, 0, 1, NULL, 0, &out,
                           &outlen, err, sizeof(err));
    ok(rc == MG_OK && nth(out, outlen, 0, buf, sizeof(buf)) && buf[0]
       && nth(out, outlen, 1, buf, sizeof(buf)) && strcmp(buf, "1") == 0,
       "store: a page of one has a cursor");
    mg_lua_free(out);

    /* export -> replace_all: the same bytes back */
    rc = mg_lua_store_export(s, &out, &outlen, err, sizeof(err));
    ok(rc == MG_OK && nth(out, outlen, 1, buf, sizeof(buf))
       && strcmp(buf, "3") == 0, "store: export has 3 entities");
    if (rc == MG_OK) {
        mg_ls_rd_t r = rd(out, outlen);
        char      *list, *out2 = NULL;
        size_t     out2len = 0;

        mg_ls_item(&r);                      /* version */
        list = (char *) r.p;
        rc = mg_lua_store_replace_all(s, list, outlen - (size_t) (list - out),
                                      err, sizeof(err));
        is_int(rc, MG_OK, "store: replace_all with the export");
        rc = mg_lua_store_export(s, &out2, &out2len, err, sizeof(err));
        r = rd(out2, out2len);
        mg_ls_item(&r);
        ok(rc == MG_OK && out2len - (size_t) (r.p - out2)
                          == outlen - (size_t) (list - out)
           && memcmp(r.p, list, out2len - (size_t) (r.p - out2)) == 0,
           "store: export after replace_all is the same list");
        mg_lua_free(out2);

        /* every truncation of the list is refused, the store unchanged */
        fails = 0;
        for (i = 1; i < outlen - (size_t) (list - out); i++) {
            char *cp = malloc(i);
            memcpy(cp, list, i);
            rc = mg_lua_store_replace_all(s, cp, i, err, sizeof(err));
            if (rc == MG_OK) fails++;
            free(cp);
        }
        ok(fails == 0, "store: every truncated list is refused");
        mg_lua_free(out);
    }
    ok(mg_lua_store_check(s, &nd, err, sizeof(err)) == MG_OK && nd == 3,
       "store: still 3 entities and consistent");

    memset(&x, 0, sizeof(x));
    puts_(&x, "1000001");
    rc = mg_lua_store_replace_all(s, x.d, x.n, err, sizeof(err));
    is_int(rc, MG_STORE_E_INVALID, "store: a list count over the maximum");

    rc = mg_lua_store_replace_all(s, NULL, 0, err, sizeof(err));
    ok(rc == MG_OK && mg_lua_store_check(s, &nd, err, sizeof(err)) == MG_OK
       && nd == 0, "store: replace_all with nothing empties the store");

    /* an entity of minimal size: the per-entity minimum must fit it */
    memset(&x, 0, sizeof(x));
    putn(&x, 1);
    puts_(&x, "a");
    puts_(&x, "b");
    puts_(&x, "");
    putn(&x, 0);
    putn(&x, 0);
    putn(&x, 0);
    rc = mg_lua_store_replace_all(s, x.d, x.n, err, sizeof(err));
    is_int(rc, MG_OK, "store: a list of one minimal entity");

    /* delete, and an error buffer too small for anything */
    rc = mg_lua_store_delete(s, "a", "b", 1, &nd, err, sizeof(err));
    ok(rc == MG_OK && nd == 1, "store: delete");
    rc = mg_lua_store_delete(s, "a", "b", 1, &nd, err, 4);
    ok(rc == MG_STORE_E_NOT_FOUND && err[0] == '\0',
       "store: a 4-byte error buffer gets the empty string");
    memset(err, 'z', sizeof(err));
    rc = mg_lua_store_delete(s, "a", "b", 1, &nd, err, 0);
    ok(rc == MG_STORE_E_NOT_FOUND && err[0] == 'z',
       "store: errlen 0 leaves err alone");
    rc = mg_lua_store_delete(s, "a", "b", 1, &nd, err, 25);
    ok(rc == MG_STORE_E_NOT_FOUND && strlen(err) < 25
       && err_code(err) == MG_STORE_E_NOT_FOUND,
       "store: a short buffer drops the message, keeps the items");

    /* a read-back entity re-encodes to what was written */
    pool = mg_pool_create(4096);
    memset(&x, 0, sizeof(x));
    enc_service(&x, "s3", "three");
    {
        mg_ls_rd_t  r = rd(x.d, x.n);
        mg_ls_out_t o = { NULL, 0, 0, 0 };

        ok(mg_ls_read_entity(&r, pool, &e) == MG_OK, "re-encode: decode");
        mg_ls_put_entity(&o, &e);
        ok(!o.failed && o.len == x.n && memcmp(o.data, x.d, x.n) == 0,
           "re-encode: the same bytes");
        free(o.data);
    }
    mg_pool_destroy(pool);

    ok(mg_lua_store_version(NULL) == 0, "version of no store");
    mg_lua_store_close(s);
    mg_lua_store_close(NULL);
}

int
main(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_item();
    test_count();
    test_entity();
    test_store();
    nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return done_testing();
}
