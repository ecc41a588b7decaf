/*
 * test_store.c -- the LMDB entity store: CRUD, unique and foreign keys
 * (refuse and cascade), pagination cursors, tag filters, the version
 * counter, replace_all atomicity, export order, a full map, two processes
 * on one environment (one growing the map under the other), and kill -9
 * in the middle of writes.  Every store
 * lives in its own directory under one /tmp directory removed at the end.
 */
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "store/mg_store.c"
#include "store/mg_store_write.c"
#include "store/mg_store_list.c"
#include "tap.h"

static char tmpdir[] = "/tmp/mg_test_store_XXXXXX";

/* ---- helpers ----------------------------------------------------------- */

static mg_str_t
S(const char *s)
{
    mg_str_t r = { s, strlen(s) };
    return r;
}

static int
has(const char *hay, const char *needle)
{
    int found = strstr(hay, needle) != NULL;

    if (!found) printf("#   looked for \"%s\" in \"%s\"\n", needle, hay);
    return found;
}

static const char *
dir_for(const char *name)
{
    static char path[4][256];
    static int  slot;

    slot = (slot + 1) % 4;
    snprintf(path[slot], sizeof(path[slot]), "%s/%s", tmpdir, name);
    return path[slot];
}

static mg_store_t *
open_store(const char *name, size_t map)
{
    char        err[256];
    mg_store_t *s = mg_store_open(dir_for(name), map, err, sizeof(err));

    if (s == NULL) printf("# open %s: %s\n", name, err);
    return s;
}

/* Ids like Kong's UUIDs, ordered by n within a type letter. */
static const char *
uid(char *buf, char kind, int n)
{
    snprintf(buf, 40, "%c0000000-0000-4000-8000-%012d", kind, n);
    return buf;
}

typedef struct {
    mg_store_entity_t e;
    mg_store_key_t    u[4];
    mg_store_ref_t    r[4];
    mg_str_t          t[8];
    char              id[40];
    char              json[4096];
    char              strs[8][600];
    int               ns;
} ent_t;

static const char *
keep(ent_t *x, const char *s)
{
    char *p = x->strs[x->ns++ % 8];

    snprintf(p, sizeof(x->strs[0]), "%s", s);
    return p;
}

static ent_t *
ent(ent_t *x, const char *type, char kind, int n)
{
    memset(x, 0, sizeof(*x));
    x->e.type = type;
    uid(x->id, kind, n);
    x->e.id = S(x->id);
    snprintf(x->json, sizeof(x->json), "{\"id\":\"%s\",\"n\":%d}", x->id, n);
    x->e.json = S(x->json);
    x->e.uniques = x->u;
    x->e.refs = x->r;
    x->e.tags = x->t;
    return x;
}

static void
uniq(ent_t *x, const char *field, const char *value)
{
    x->u[x->e.nuniques].field = S(field);
    x->u[x->e.nuniques].value = S(keep(x, value));
    x->e.nuniques++;
}

static void
ref(ent_t *x, const char *field, const char *type, const char *id, int od)
{
    x->r[x->e.nrefs].field = S(field);
    x->r[x->e.nrefs].type = S(type);
    x->r[x->e.nrefs].id = S(keep(x, id));
    x->r[x->e.nrefs].on_delete = od;
    x->e.nrefs++;
}

static void
tag(ent_t *x, const char *t)
{
    x->t[x->e.ntags++] = S(keep(x, t));
}

static int
insert(mg_store_t *s, ent_t *x)
{
    mg_store_err_t err;
    int            rc = mg_store_insert(s, &x->e, &err);

    if (rc != MG_OK) printf("#   insert %s %s: %s\n", x->e.type, x->id,
                            err.msg);
    return rc;
}

static int
exists(mg_store_t *s, const char *type, const char *id)
{
    mg_pool_t        *pool = mg_pool_create(1024);
    mg_store_entity_t e;
    int               rc = mg_store_get(s, type, S(id), NULL, pool, &e, NULL);

    mg_pool_destroy(pool);
    return rc == MG_OK;
}

static int
check(mg_store_t *s, const char *what)
{
    mg_store_err_t err;
    int            rc = mg_store_check(s, NULL, &err);

    if (!ok(rc == MG_OK, "%s: indexes consistent", what)) {
        printf("#   %s\n", err.msg);
    }
    return rc == MG_OK;
}

/* A list collected as "n,n,n" of the entities' "n" JSON field. */
typedef struct {
    char   out[2048];
    size_t count;
    int    stop_after;
} coll_t;

static int
collect(void *data, const mg_store_entity_t *e)
{
    coll_t     *c = data;
    const char *p = strstr(e->json.data, "\"n\":");
    size_t      len = strlen(c->out);

    snprintf(c->out + len, sizeof(c->out) - len, "%s%d", len ? "," : "",
             p ? atoi(p + 4) : -1);
    c->count++;
    if (c->stop_after && c->count == (size_t) c->stop_after) {
        return MG_DONE;
    }
    return MG_OK;
}

static int
list(mg_store_t *s, const char *type, const mg_store_filter_t *f,
     size_t size, const char *offset, coll_t *c, char *next)
{
    mg_store_err_t err;
    int            rc;

    memset(c, 0, sizeof(*c));
    rc = mg_store_list(s, type, f, size, S(offset), collect, c, next, &err);
    if (rc != MG_OK) printf("#   list: %d %s\n", rc, err.msg);
    return rc;
}

/* ---- open -------------------------------------------------------------- */

static void
test_open(void)
{
    char        err[256];
    mg_store_t *s;
    uint64_t    v = 99, m = 99;

    s = open_store("open", 0);
    ok(s != NULL, "open creates the directory and the environment");
    is_int(mg_store_info(s, &v, &m, NULL), MG_OK, "info on a new store");
    is_int(v, 0, "a new store is at version 0");
    is_int(m, 0, "and has no last-change time");
    mg_store_close(s);
    s = open_store("open", 0);
    ok(s != NULL, "reopen");
    mg_store_close(s);
    s = mg_store_open("/proc/nonexistent/lmdb", 0, err, sizeof(err));
    ok(s == NULL && has(err, "mkdir"), "an impossible directory: error");
}

/* ---- CRUD and uniques -------------------------------------------------- */

static void
test_crud(void)
{
    mg_store_t       *s = open_store("crud", 0);
    mg_pool_t        *pool = mg_pool_create(1024);
    mg_store_entity_t out;
    mg_store_err_t    err;
    ent_t             a, b;
    int               created = -1;

    ent(&a, "services", 's', 1);
    uniq(&a, "name", "svc1");
    tag(&a, "prod");
    is_int(insert(s, &a), MG_OK, "insert a service");
    is_int(mg_store_get(s, "services", a.e.id, NULL, pool, &out, &err), MG_OK,
           "get it by id");
    is_str(out.json.data, a.json, "the JSON comes back byte for byte");
    ok(out.nuniques == 1 && mg_str_eq_lit(out.uniques[0].value, "svc1")
       && out.ntags == 1 && mg_str_eq_lit(out.tags[0], "prod")
       && strcmp(out.type, "services") == 0 && mg_str_eq(out.id, a.e.id),
       "with its uniques, tags, type and id");
    is_int(mg_store_get(s, "services", S("svc1"), "name", pool, &out, NULL),
           MG_OK, "get by name (id or name)");
    ok(mg_str_eq(out.id, a.e.id), "the name finds the id");
    is_int(mg_store_get(s, "services", S("svc1"), NULL, pool, &out, NULL),
           MG_STORE_E_NOT_FOUND, "without by_field, a name is not an id");
    is_int(mg_store_get(s, "routes", a.e.id, "name", pool, &out, &err),
           MG_STORE_E_NOT_FOUND, "types are separate");
    is_int(mg_store_insert(s, &a.e, &err), MG_STORE_E_EXISTS,
           "insert of an existing id");
    ok(has(err.msg, "primary key violation"), "names the primary key");

    ent(&b, "services", 's', 1);
    uniq(&b, "name", "svc1-renamed");
    is_int(mg_store_update(s, &b.e, &err), MG_OK, "update renames");
    is_int(mg_store_get(s, "services", S("svc1"), "name", pool, &out, NULL),
           MG_STORE_E_NOT_FOUND, "the old name is free");
    is_int(mg_store_get(s, "services", S("svc1-renamed"), "name", pool, &out,
                        NULL), MG_OK, "the new name is found");
    ok(out.ntags == 0, "tags replaced with the entity");
    ent(&b, "services", 's', 2);
    is_int(mg_store_update(s, &b.e, &err), MG_STORE_E_NOT_FOUND,
           "update of a missing entity");
    is_int(mg_store_upsert(s, &b.e, &created, &err), MG_OK, "upsert creates");
    is_int(created, 1, "and says so");
    is_int(mg_store_upsert(s, &b.e, &created, &err), MG_OK, "upsert updates");
    is_int(created, 0, "and says so");

    is_int(mg_store_delete(s, "services", b.e.id, NULL, &err), MG_OK,
           "delete");
    ok(!exists(s, "services", b.id), "gone");
    is_int(mg_store_delete(s, "services", b.e.id, NULL, &err),
           MG_STORE_E_NOT_FOUND, "delete again: not found");

    ent(&b, "bad type", 's', 3);
    is_int(mg_store_insert(s, &b.e, &err), MG_STORE_E_INVALID,
           "invalid type name");
    ent(&b, "services", 's', 3);
    b.e.id = S("has space");
    is_int(mg_store_insert(s, &b.e, &err), MG_STORE_E_INVALID, "invalid id");
    ent(&b, "services", 's', 3);
    uniq(&b, "name", "");
    is_int(mg_store_insert(s, &b.e, &err), MG_STORE_E_INVALID,
           "empty unique value");
    check(s, "crud");
    mg_pool_destroy(pool);
    mg_store_close(s);
}

static void
test_uniques(void)
{
    mg_store_t       *s = open_store("uniq", 0);
    mg_pool_t        *pool = mg_pool_create(1024);
    mg_store_entity_t out;
    mg_store_err_t    err;
    ent_t             a, b;
    char              big1[600], big2[600];
    uint64_t          v;

    ent(&a, "consumers", 'c', 1);
    uniq(&a, "username", "alice");
    uniq(&a, "custom_id", "A-1");
    is_int(insert(s, &a), MG_OK, "consumer with username and custom_id");
    v = mg_store_version(s);
    ent(&b, "consumers", 'c', 2);
    uniq(&b, "username", "bob");
    uniq(&b, "custom_id", "A-1");
    is_int(mg_store_insert(s, &b.e, &err), MG_STORE_E_UNIQUE,
           "a taken custom_id is refused");
    is_str(err.field, "custom_id", "the field is named");
    is_str(err.ref_id, a.id, "with the entity holding it");
    ok(has(err.msg, "UNIQUE violation detected on '{custom_id=\"A-1\"}'"),
       "Kong's message");
    is_int(mg_store_version(s), v, "a refused write does not bump the version");
    ok(!exists(s, "consumers", b.id), "and wrote nothing");
    ok(mg_store_get(s, "consumers", S("bob"), "username", pool, &out, NULL)
       == MG_STORE_E_NOT_FOUND, "not even the other unique");

    ent(&b, "keyauth_credentials", 'k', 1);
    uniq(&b, "key", "secret");
    is_int(insert(s, &b), MG_OK, "a credential key named like a username");
    ent(&b, "consumers", 'c', 2);
    uniq(&b, "username", "secret");
    is_int(insert(s, &b), MG_OK, "uniques are per type");

    /* values longer than a key can hold: prefix + hash, confirmed */
    memset(big1, 'x', sizeof(big1) - 1);
    big1[sizeof(big1) - 1] = '\0';
    memcpy(big2, big1, sizeof(big1));
    big2[sizeof(big2) - 2] = 'y';
    ent(&b, "keyauth_credentials", 'k', 2);
    uniq(&b, "key", big1);
    is_int(insert(s, &b), MG_OK, "a 599-byte key");
    ent(&b, "keyauth_credentials", 'k', 3);
    uniq(&b, "key", big2);
    is_int(insert(s, &b), MG_OK, "another with the same long prefix");
    ent(&b, "keyauth_credentials", 'k', 4);
    uniq(&b, "key", big1);
    is_int(mg_store_insert(s, &b.e, &err), MG_STORE_E_UNIQUE,
           "the same long key again is refused");
    is_int(mg_store_get(s, "keyauth_credentials", S(big2), "key", pool, &out,
                        NULL), MG_OK, "a long key is found");
    is_str(out.id.data, uid(a.id, 'k', 3), "the right one");

    /* a rename frees the old value in the same transaction */
    ent(&a, "consumers", 'c', 1);
    uniq(&a, "username", "alice2");
    is_int(mg_store_update(s, &a.e, &err), MG_OK, "rename alice");
    ent(&b, "consumers", 'c', 3);
    uniq(&b, "username", "alice");
    uniq(&b, "custom_id", "A-1");
    is_int(insert(s, &b), MG_OK, "the freed values can be taken");
    check(s, "uniques");
    mg_pool_destroy(pool);
    mg_store_close(s);
}

/* ---- foreign keys ------------------------------------------------------ */

static void
test_foreign(void)
{
    mg_store_t    *s = open_store("fk", 0);
    mg_store_err_t err;
    ent_t          x;
    char           id[40], id2[40];
    size_t         nd = 0;
    int            i;
    uint64_t       v;
    static const char *creds[] = {
        "keyauth_credentials", "basicauth_credentials", "jwt_secrets", "acls"
    };

    ent(&x, "routes", 'r', 1);
    ref(&x, "service", "services", uid(id, 's', 1), 0);
    is_int(mg_store_insert(s, &x.e, &err), MG_STORE_E_FOREIGN,
           "a route to a missing service is refused");
    is_str(err.field, "service", "the field is named");
    ok(has(err.msg, "does not reference an existing 'services' entity"),
       "Kong's message");
    ok(!exists(s, "routes", x.id), "nothing written");

    ent(&x, "services", 's', 1);
    is_int(insert(s, &x), MG_OK, "service");
    ent(&x, "routes", 'r', 1);
    ref(&x, "service", "services", uid(id, 's', 1), 0);
    is_int(insert(s, &x), MG_OK, "route to it");
    ent(&x, "plugins", 'p', 1);
    ref(&x, "service", "services", uid(id, 's', 1), 0);
    is_int(insert(s, &x), MG_OK, "plugin on the service");
    v = mg_store_version(s);
    is_int(mg_store_delete(s, "services", S(id), NULL, &err),
           MG_STORE_E_FOREIGN, "deleting a service routes use is refused");
    ok(has(err.msg, "an existing 'routes' entity references this 'services' "
           "entity"), "Kong's message");
    is_str(err.ref_type, "routes", "names the referencing type");
    is_str(err.ref_id, uid(id2, 'r', 1), "and the route");
    ok(exists(s, "services", id) && exists(s, "plugins", uid(id2, 'p', 1)),
       "the refused delete (and its cascade) left everything");
    is_int(mg_store_version(s), v, "version unchanged");
    is_int(mg_store_delete(s, "routes", S(uid(id2, 'r', 1)), NULL, &err),
           MG_OK, "delete the route");
    is_int(mg_store_delete(s, "services", S(id), &nd, &err), MG_OK,
           "now the service goes");
    is_int(nd, 2, "cascading to its plugin");
    ok(!exists(s, "plugins", uid(id2, 'p', 1)), "plugin gone");

    /* consumer cascade: credentials and plugins */
    ent(&x, "consumers", 'c', 1);
    uniq(&x, "username", "carol");
    is_int(insert(s, &x), MG_OK, "consumer");
    for (i = 0; i < 4; i++) {
        ent(&x, creds[i], 'k', i);
        uniq(&x, "key", "k");
        ref(&x, "consumer", "consumers", uid(id, 'c', 1), 0);
        is_int(insert(s, &x), MG_OK, "%s of the consumer", creds[i]);
    }
    ent(&x, "plugins", 'p', 2);
    ref(&x, "consumer", "consumers", id, 0);
    is_int(insert(s, &x), MG_OK, "plugin on the consumer");
    v = mg_store_version(s);
    is_int(mg_store_delete(s, "consumers", S(id), &nd, &err), MG_OK,
           "delete the consumer");
    is_int(nd, 6, "cascades to 4 credentials and the plugin");
    is_int(mg_store_version(s), v + 1, "one version for the whole cascade");
    ok(!exists(s, "acls", uid(id2, 'k', 3)) && !exists(s, "plugins",
                                                          uid(id2, 'p', 2)),
       "all gone");

    /* upstream -> targets, certificate -> snis, restrict on service */
    ent(&x, "upstreams", 'u', 1);
    uniq(&x, "name", "up");
    is_int(insert(s, &x), MG_OK, "upstream");
    for (i = 0; i < 3; i++) {
        ent(&x, "targets", 't', i);
        ref(&x, "upstream", "upstreams", uid(id, 'u', 1), 0);
        insert(s, &x);
    }
    is_int(mg_store_delete(s, "upstreams", S(id), &nd, &err), MG_OK,
           "delete the upstream");
    is_int(nd, 4, "with its 3 targets");
    ent(&x, "certificates", 'z', 1);
    is_int(insert(s, &x), MG_OK, "certificate");
    for (i = 0; i < 2; i++) {
        ent(&x, "snis", 'n', i);
        uniq(&x, "name", i ? "a.example" : "b.example");
        ref(&x, "certificate", "certificates", uid(id, 'z', 1), 0);
        insert(s, &x);
    }
    ent(&x, "services", 's', 2);
    ref(&x, "client_certificate", "certificates", id, 0);
    is_int(insert(s, &x), MG_OK, "service with a client certificate");
    is_int(mg_store_delete(s, "certificates", S(id), &nd, &err),
           MG_STORE_E_FOREIGN, "the certificate a service uses stays");
    ok(exists(s, "snis", uid(id2, 'n', 0)), "snis kept by the refusal");
    is_int(mg_store_delete(s, "services", S(uid(id2, 's', 2)), NULL, &err),
           MG_OK, "delete the service");
    is_int(mg_store_delete(s, "certificates", S(id), &nd, &err), MG_OK,
           "then the certificate");
    is_int(nd, 3, "with its 2 snis");
    ent(&x, "snis", 'n', 3);
    uniq(&x, "name", "a.example");
    is_int(insert(s, &x), MG_OK, "the sni names were freed");

    /* plugin-declared: explicit rules, a restriction deep in a cascade */
    ent(&x, "consumers", 'c', 2);
    is_int(insert(s, &x), MG_OK, "consumer 2");
    ent(&x, "keyauth_credentials", 'k', 9);
    ref(&x, "consumer", "consumers", uid(id, 'c', 2), 0);
    is_int(insert(s, &x), MG_OK, "its credential");
    ent(&x, "audits", 'a', 1);
    ref(&x, "credential", "keyauth_credentials", uid(id2, 'k', 9),
        MG_STORE_ON_DELETE_RESTRICT);
    is_int(insert(s, &x), MG_OK, "a plugin entity restricting the credential");
    is_int(mg_store_delete(s, "consumers", S(id), &nd, &err),
           MG_STORE_E_FOREIGN, "the cascade reaches a restriction: refused");
    is_str(err.type, "keyauth_credentials", "err names the restricted entity");
    is_str(err.ref_type, "audits", "and the restricting one");
    ok(exists(s, "consumers", id) && exists(s, "keyauth_credentials", id2),
       "nothing deleted");
    ent(&x, "audits", 'a', 1);
    ref(&x, "credential", "keyauth_credentials", id2,
        MG_STORE_ON_DELETE_CASCADE);
    ref(&x, "self", "audits", uid(id2, 'a', 1), 0);
    is_int(mg_store_update(s, &x.e, &err), MG_OK,
           "the entity now cascades (and references itself)");
    is_int(mg_store_delete(s, "consumers", S(id), &nd, &err), MG_OK,
           "the consumer goes");
    is_int(nd, 3, "consumer, credential, audit (the self-reference ends)");
    is_int(mg_store_on_delete_default("routes", S("service")),
           MG_STORE_ON_DELETE_RESTRICT, "default rule: routes.service");
    is_int(mg_store_on_delete_default("plugins", S("route")),
           MG_STORE_ON_DELETE_CASCADE, "default rule: plugins.route");
    check(s, "foreign keys");
    mg_store_close(s);
}

/* ---- pagination and tags ----------------------------------------------- */

static void
test_pagination(void)
{
    mg_store_t       *s = open_store("page", 0);
    mg_store_err_t    err;
    mg_store_filter_t f;
    mg_store_ref_t    fr;
    ent_t             x;
    coll_t            c;
    char              next[MG_STORE_CURSOR_MAX], cur[MG_STORE_CURSOR_MAX];
    char              all[1024] = "", id[40];
    int               i;

    for (i = 0; i < 2; i++) {
        ent(&x, "services", 's', i);
        insert(s, &x);
    }
    for (i = 24; i >= 0; i--) {          /* inserted out of order */
        ent(&x, "routes", 'r', i);
        ref(&x, "service", "services", uid(id, 's', i % 3 == 0), 0);
        insert(s, &x);
    }
    is_int(list(s, "routes", NULL, 10, "", &c, next), MG_OK, "page 1");
    is_str(c.out, "0,1,2,3,4,5,6,7,8,9", "10 routes in id order");
    ok(next[0] != '\0' && strspn(next, st_b64) == strlen(next),
       "a URL-safe next cursor");
    strcat(all, c.out);
    memcpy(cur, next, sizeof(cur));
    is_int(list(s, "routes", NULL, 10, cur, &c, next), MG_OK, "page 2");
    is_str(c.out, "10,11,12,13,14,15,16,17,18,19", "the next 10");
    memcpy(cur, next, sizeof(cur));
    is_int(list(s, "routes", NULL, 10, cur, &c, next), MG_OK, "page 3");
    is_str(c.out, "20,21,22,23,24", "the last 5");
    is_str(next, "", "no next after the last page");
    is_int(list(s, "routes", NULL, 5, "", &c, next), MG_OK, "size 5");
    is_int(list(s, "routes", NULL, 5, next, &c, next), MG_OK, "page 2");
    is_int(list(s, "routes", NULL, 5, next, &c, next), MG_OK, "page 3");
    is_int(list(s, "routes", NULL, 5, next, &c, next), MG_OK, "page 4");
    is_int(list(s, "routes", NULL, 5, next, &c, next), MG_OK, "page 5");
    is_str(c.out, "20,21,22,23,24", "exactly 5 pages of 5");
    is_str(next, "", "and no sixth");

    /* cursors survive writes between pages */
    is_int(list(s, "routes", NULL, 10, "", &c, next), MG_OK, "page 1 again");
    mg_store_delete(s, "routes", S(uid(id, 'r', 9)), NULL, NULL);
    mg_store_delete(s, "routes", S(uid(id, 'r', 10)), NULL, NULL);
    ent(&x, "routes", 'r', 3);           /* 3 exists: use another id */
    snprintf(x.id, sizeof(x.id), "%s", "r0000000-0000-4000-8000-000000000005x");
    x.e.id = S(x.id);
    snprintf(x.json, sizeof(x.json), "{\"n\":55}");
    x.e.json = S(x.json);
    insert(s, &x);
    is_int(list(s, "routes", NULL, 10, next, &c, next), MG_OK,
           "page 2 after deleting the cursor's entity");
    is_str(c.out, "11,12,13,14,15,16,17,18,19,20",
           "starts after the deleted id, skips the earlier insert");
    is_int(list(s, "routes", NULL, 0, "", &c, NULL), MG_OK, "size 0: all");
    is_int(c.count, 24, "24 routes");

    is_int(mg_store_list(s, "routes", NULL, 10, S("!!"), collect, &c, next,
                         &err), MG_STORE_E_OFFSET, "a bad cursor");
    ok(has(err.msg, "is not a valid offset"), "Kong's wording");
    is_int(mg_store_list(s, "routes", NULL, 10, S("AAAA"), collect, &c, next,
                         &err), MG_STORE_E_OFFSET,
           "a cursor decoding to a non-id");

    /* routes of one service (foreign-key filter) */
    memset(&f, 0, sizeof(f));
    fr.field = S("service");
    fr.type = S("services");
    fr.id = S(uid(id, 's', 1));
    fr.on_delete = 0;
    f.ref = &fr;
    is_int(list(s, "routes", &f, 3, "", &c, next), MG_OK, "routes of s1");
    is_str(c.out, "0,3,6", "first page of the service's routes");
    is_int(list(s, "routes", &f, 3, next, &c, next), MG_OK, "next page");
    is_str(c.out, "12,15,18", "second page (9 was deleted)");
    is_int(list(s, "routes", &f, 3, next, &c, next), MG_OK, "last page");
    is_str(c.out, "21,24", "third page");
    is_str(next, "", "the end");
    fr.field = S("other");
    is_int(list(s, "routes", &f, 3, "", &c, next), MG_OK, "another field");
    is_int(c.count, 0, "matches nothing");

    /* a callback that stops, a read nested in a callback */
    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    is_int(mg_store_list(s, "routes", NULL, 10, S(""), collect, &c, next,
                         NULL), MG_DONE, "a callback's MG_DONE stops the walk");
    is_int(c.count, 2, "after 2");
    check(s, "pagination");
    mg_store_close(s);
}

static mg_store_t *nested_s;

static int
nested_get(void *data, const mg_store_entity_t *e)
{
    mg_pool_t        *pool = mg_pool_create(1024);
    mg_store_entity_t out;
    int              *n = data;

    if (mg_store_get(nested_s, e->type, e->id, NULL, pool, &out, NULL)
            == MG_OK
        && mg_str_eq(out.json, e->json))
    {
        (*n)++;
    }
    mg_pool_destroy(pool);
    return MG_OK;
}

static void
test_tags(void)
{
    mg_store_t       *s = open_store("tags", 0);
    mg_store_filter_t f;
    mg_str_t          tg[3];
    ent_t             x;
    coll_t            c;
    char              next[MG_STORE_CURSOR_MAX], longtag[500];
    int               n = 0;

    memset(longtag, 'L', sizeof(longtag) - 1);
    longtag[sizeof(longtag) - 1] = '\0';
    ent(&x, "services", 's', 1); tag(&x, "a"); tag(&x, "b"); insert(s, &x);
    ent(&x, "services", 's', 2); tag(&x, "a"); insert(s, &x);
    ent(&x, "services", 's', 3); tag(&x, "b"); tag(&x, "c");
    tag(&x, longtag); insert(s, &x);
    ent(&x, "services", 's', 4); insert(s, &x);
    ent(&x, "routes", 'r', 5); tag(&x, "a"); insert(s, &x);

    memset(&f, 0, sizeof(f));
    f.tags = tg;
    tg[0] = S("a");
    tg[1] = S("b");
    f.ntags = 2;
    list(s, "services", &f, 100, "", &c, next);
    is_str(c.out, "1", "tags=a,b (all)");
    f.tags_any = 1;
    list(s, "services", &f, 100, "", &c, next);
    is_str(c.out, "1,2,3", "tags=a/b (any), no duplicates, id order");
    tg[1] = S("c");
    list(s, "services", &f, 2, "", &c, next);
    is_str(c.out, "1,2", "tags=a/c page 1 of 2");
    list(s, "services", &f, 2, next, &c, next);
    is_str(c.out, "3", "page 2");
    is_str(next, "", "end");
    f.ntags = 1;
    f.tags_any = 0;
    list(s, "services", &f, 100, "", &c, next);
    is_str(c.out, "1,2", "tags=a: per type");
    tg[0] = S(longtag);
    list(s, "services", &f, 100, "", &c, next);
    is_str(c.out, "3", "a 499-byte tag");
    tg[0] = S("zzz");
    list(s, "services", &f, 100, "", &c, next);
    is_str(c.out, "", "an unknown tag: nothing");

    ent(&x, "services", 's', 1); tag(&x, "a"); mg_store_update(s, &x.e, NULL);
    tg[0] = S("a");
    tg[1] = S("b");
    f.ntags = 2;
    list(s, "services", &f, 100, "", &c, next);
    is_str(c.out, "", "an update drops a tag from the index");
    f.ntags = MG_STORE_FILTER_TAGS_MAX + 1;
    is_int(mg_store_list(s, "services", &f, 10, S(""), collect, &c, next,
                         NULL), MG_STORE_E_INVALID, "too many tags");

    nested_s = s;
    is_int(mg_store_list(s, "services", NULL, 0, S(""), nested_get, &n, NULL,
                         NULL), MG_OK, "gets nested in a list callback");
    is_int(n, 4, "each sees the entity");
    check(s, "tags");
    mg_store_close(s);
}

/* ---- version ----------------------------------------------------------- */

static void
test_version(void)
{
    mg_store_t *s = open_store("version", 0);
    ent_t       x;
    uint64_t    v, m, m2;
    char        id[40];
    struct timespec ts;

    v = mg_store_version(s);
    ent(&x, "services", 's', 1);
    uniq(&x, "name", "one");
    insert(s, &x);
    mg_store_info(s, &v, &m, NULL);
    clock_gettime(CLOCK_REALTIME, &ts);
    is_int(v, 1, "insert: version 1");
    ok(m > 0 && m <= (uint64_t) ts.tv_sec * 1000 + 1000,
       "last change time set");
    mg_store_update(s, &x.e, NULL);
    is_int(mg_store_version(s), 2, "update: 2");
    mg_store_upsert(s, &x.e, NULL, NULL);
    is_int(mg_store_version(s), 3, "upsert: 3");
    mg_store_insert(s, &x.e, NULL);
    is_int(mg_store_version(s), 3, "refused insert: still 3");
    ent(&x, "services", 's', 2);
    uniq(&x, "name", "one");
    mg_store_insert(s, &x.e, NULL);
    mg_store_update(s, &x.e, NULL);
    ref(&x, "r", "routes", "nope", 0);
    mg_store_upsert(s, &x.e, NULL, NULL);
    mg_store_delete(s, "services", S(uid(id, 's', 9)), NULL, NULL);
    is_int(mg_store_version(s), 3, "unique, not-found, foreign: still 3");
    usleep(2000);
    mg_store_delete(s, "services", S(uid(id, 's', 1)), NULL, NULL);
    mg_store_info(s, &v, &m2, NULL);
    is_int(v, 4, "delete: 4");
    ok(m2 > m, "the last change time moved");
    mg_store_close(s);
    s = open_store("version", 0);
    is_int(mg_store_version(s), 4, "the version persists");
    mg_store_close(s);
}

/* ---- replace_all ------------------------------------------------------- */

static void
test_replace_all(void)
{
    mg_store_t       *s = open_store("replace", 0);
    mg_store_err_t    err;
    mg_store_entity_t arr[9];
    ent_t            *xs = calloc(9, sizeof(ent_t));
    ent_t             x;
    coll_t            c;
    uint64_t          v;
    size_t            n;
    char              id[40];
    int               i;

    for (i = 0; i < 3; i++) {
        ent(&x, "services", 's', 100 + i);
        uniq(&x, "name", i == 0 ? "old0" : i == 1 ? "old1" : "old2");
        insert(s, &x);
    }
    v = mg_store_version(s);
    /* new config: routes listed before their services */
    for (i = 0; i < 4; i++) {
        ent(&xs[i], "routes", 'r', i);
        ref(&xs[i], "service", "services", uid(id, 's', i % 2), 0);
        arr[i] = xs[i].e;
    }
    for (i = 4; i < 6; i++) {
        ent(&xs[i], "services", 's', i - 4);
        uniq(&xs[i], "name", i == 4 ? "new0" : "new1");
        arr[i] = xs[i].e;
    }
    ent(&xs[6], "services", 's', 9);
    uniq(&xs[6], "name", "new0");         /* conflicts with arr[4] */
    arr[6] = xs[6].e;
    is_int(mg_store_replace_all(s, arr, 7, &err), MG_STORE_E_UNIQUE,
           "a duplicate name in the new config");
    is_int(err.index, 6, "err->index names the entity");
    is_int(mg_store_version(s), v, "version unchanged");
    list(s, "services", NULL, 0, "", &c, NULL);
    is_str(c.out, "100,101,102", "the old services are all there");
    ok(!exists(s, "routes", xs[0].id), "no new route leaked");

    ent(&xs[6], "plugins", 'p', 1);
    ref(&xs[6], "route", "routes", uid(id, 'r', 77), 0);
    arr[6] = xs[6].e;
    is_int(mg_store_replace_all(s, arr, 7, &err), MG_STORE_E_FOREIGN,
           "a dangling reference in the new config");
    is_int(err.index, 6, "named");
    arr[6] = arr[0];
    is_int(mg_store_replace_all(s, arr, 7, &err), MG_STORE_E_EXISTS,
           "the same id twice");
    ent(&xs[6], "bad type", 'p', 1);
    arr[6] = xs[6].e;
    arr[3] = xs[6].e;
    is_int(mg_store_replace_all(s, arr, 7, &err), MG_STORE_E_INVALID,
           "an invalid entity in the middle");
    is_int(err.index, 3, "the first one is named");
    list(s, "services", NULL, 0, "", &c, NULL);
    is_str(c.out, "100,101,102", "still the old config");
    is_int(mg_store_version(s), v, "still the old version");

    arr[3] = xs[3].e;
    is_int(mg_store_replace_all(s, arr, 6, &err), MG_OK,
           "a valid config, in any order");
    is_int(mg_store_version(s), v + 1, "one version for the whole import");
    list(s, "services", NULL, 0, "", &c, NULL);
    is_str(c.out, "0,1", "only the new services");
    ok(mg_store_check(s, &n, NULL) == MG_OK && n == 6, "6 entities, consistent");
    is_int(mg_store_delete(s, "services", S(uid(id, 's', 0)), NULL, &err),
           MG_STORE_E_FOREIGN, "the imported references are enforced");
    is_int(mg_store_replace_all(s, NULL, 0, &err), MG_OK, "replace by nothing");
    ok(mg_store_check(s, &n, NULL) == MG_OK && n == 0, "empty");
    free(xs);
    mg_store_close(s);
}

/* ---- export ------------------------------------------------------------ */

typedef struct {
    char   types[1024];
    size_t n;
} exp_t;

static int
exp_cb(void *data, const mg_store_entity_t *e)
{
    exp_t *x = data;
    size_t len = strlen(x->types);
    char  *p = strrchr(x->types, ' ');
    char  *last = p ? p + 1 : x->types;

    if (strcmp(last, e->type) != 0) {
        snprintf(x->types + len, sizeof(x->types) - len, "%s%s",
                 len ? " " : "", e->type);
    }
    x->n++;
    return MG_OK;
}

static void
test_export(void)
{
    mg_store_t *s = open_store("export", 0);
    ent_t       x;
    exp_t       ex;
    uint64_t    v = 0;
    char        id[40];

    ent(&x, "services", 's', 1); insert(s, &x);
    ent(&x, "consumers", 'c', 1); insert(s, &x);
    ent(&x, "zzz_parents", 'z', 1); insert(s, &x);
    ent(&x, "aaa_children", 'a', 1);
    ref(&x, "parent", "zzz_parents", uid(id, 'z', 1), 0);
    insert(s, &x);
    ent(&x, "plugins", 'p', 1);
    ref(&x, "service", "services", uid(id, 's', 1), 0);
    insert(s, &x);
    ent(&x, "routes", 'r', 1);
    ref(&x, "service", "services", id, 0);
    insert(s, &x);
    ent(&x, "routes", 'r', 2); insert(s, &x);
    ent(&x, "keyauth_credentials", 'k', 1);
    ref(&x, "consumer", "consumers", uid(id, 'c', 1), 0);
    insert(s, &x);

    memset(&ex, 0, sizeof(ex));
    is_int(mg_store_export(s, exp_cb, &ex, &v, NULL), MG_OK, "export");
    is_str(ex.types, "services routes consumers keyauth_credentials "
           "zzz_parents aaa_children plugins",
           "Kong's order, references first, plugins last");
    is_int(ex.n, 8, "every entity once");
    is_int(v, mg_store_version(s), "the snapshot's version");
    mg_store_close(s);
}

/* ---- a full map -------------------------------------------------------- */

static void
test_map_full(void)
{
    mg_store_t       *s = open_store("full", 256 * 1024);
    mg_pool_t        *pool = mg_pool_create(1024);
    mg_store_entity_t out;
    mg_store_err_t    err;
    ent_t             x;
    coll_t            c;
    int               i, rc = MG_OK, stored = 0;
    uint64_t          v;
    char              id[40];

    if (!ok(s != NULL, "a 256 KB store opens")) {
        return;
    }
    for (i = 0; i < 1000 && rc == MG_OK; i++) {
        ent(&x, "services", 's', i);
        memset(x.json, ' ', 1500);
        snprintf(x.json, 40, "{\"n\":%d}", i);
        x.json[strlen(x.json)] = ' ';
        x.json[1500] = '\0';
        x.e.json = S(x.json);
        rc = mg_store_insert(s, &x.e, &err);
        stored += rc == MG_OK;
    }
    is_int(rc, MG_STORE_E_FULL, "the map fills: E_FULL, no crash");
    ok(has(err.msg, "lmdb_map_size"), "the message says what to raise");
    ok(stored > 10, "%d entities fit first", stored);
    v = mg_store_version(s);
    is_int(v, stored, "the failed write did not bump the version");
    is_int(mg_store_get(s, "services", S(uid(id, 's', 0)), NULL, pool,
                        &out, NULL), MG_OK, "reads still work");
    list(s, "services", NULL, 0, "", &c, NULL);
    is_int(c.count, stored, "every stored entity listed");
    is_int(mg_store_insert(s, &x.e, &err), MG_STORE_E_FULL,
           "still full, still clean");
    check(s, "full map");
    mg_store_close(s);
    s = open_store("full", 8 * 1024 * 1024);
    is_int(mg_store_insert(s, &x.e, &err), MG_OK,
           "reopened with a larger map_size: writes work");
    is_int(mg_store_version(s), v + 1, "version goes on");
    mg_pool_destroy(pool);
    mg_store_close(s);
}

/* ---- two processes ----------------------------------------------------- */

static void
test_multiprocess(void)
{
    mg_store_t *s = open_store("multi", 0);
    ent_t       x;
    pid_t       pid;
    int         st, p2c[2], c2p[2];
    uint64_t    v0;
    char        b = 0;

    if (pipe(p2c) != 0 || pipe(c2p) != 0) {
        ok(0, "pipe");
        return;
    }
    v0 = mg_store_version(s);
    pid = fork();
    if (pid == 0) {
        mg_store_t *cs;
        int         code = 0;
        uint64_t    v;
        int         i;

        /* the inherited handle refuses to work */
        if (mg_store_version(s) != 0
            || mg_store_info(s, NULL, NULL, NULL) != MG_STORE_E_IO)
        {
            code |= 1;
        }
        cs = open_store("multi", 0);
        if (cs == NULL) _exit(100);
        ent(&x, "services", 's', 1);
        if (mg_store_insert(cs, &x.e, NULL) != MG_OK) code |= 2;
        v = mg_store_version(cs);
        if (write(c2p[1], "w", 1) != 1) code |= 4;
        /* wait for the parent's write */
        for (i = 0; i < 5000 && mg_store_version(cs) == v; i++) {
            usleep(1000);
        }
        if (!exists(cs, "services", uid(x.id, 's', 2))) code |= 8;
        mg_store_close(cs);
        mg_store_close(s);               /* frees only: not ours */
        _exit(code);
    }
    ok(read(c2p[0], &b, 1) == 1, "the child wrote");
    ok(exists(s, "services", uid(x.id, 's', 1)),
       "its write is seen by the parent");
    is_int(mg_store_version(s), v0 + 1, "and moved the parent's version");
    ent(&x, "services", 's', 2);
    is_int(insert(s, &x), MG_OK, "the parent writes");
    waitpid(pid, &st, 0);
    is_int(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0,
           "the child saw the version change and the entity, and its "
           "inherited handle refused to work");
    is_int(mg_store_version(s), v0 + 2, "both writes counted");
    check(s, "two processes");
    close(p2c[0]);
    close(p2c[1]);
    close(c2p[0]);
    close(c2p[1]);
    mg_store_close(s);
}

/* Another process grows the map past this one's map_size: reads and
 * writes adopt the larger size (MDB_MAP_RESIZED) instead of failing. */
static void
test_map_resized(void)
{
    mg_store_t *s = open_store("grow", 256 * 1024);
    ent_t       x;
    coll_t      c;
    pid_t       pid;
    int         st, i;

    ent(&x, "services", 's', 0);
    insert(s, &x);
    pid = fork();
    if (pid == 0) {
        mg_store_t *cs = open_store("grow", 16 * 1024 * 1024);

        for (i = 1; cs && i <= 400; i++) {
            ent(&x, "services", 's', i);
            memset(x.json + strlen(x.json), ' ', 1500);
            x.json[1500] = '\0';
            x.e.json = S(x.json);
            if (mg_store_insert(cs, &x.e, NULL) != MG_OK) _exit(2);
        }
        mg_store_close(cs);
        _exit(cs ? 0 : 1);
    }
    waitpid(pid, &st, 0);
    is_int(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0,
           "another process wrote 600 KB through a 16 MB map");
    ok(exists(s, "services", uid(x.id, 's', 400)),
       "a 256 KB handle reads past its own map size");
    list(s, "services", NULL, 0, "", &c, NULL);
    is_int(c.count, 401, "and lists everything");
    ent(&x, "services", 's', 401);
    is_int(insert(s, &x), MG_OK, "and writes");
    mg_store_close(s);
}

/* ---- kill -9 ----------------------------------------------------------- */

/*
 * The child runs a fixed sequence of writes, 5 per step i:
 *   0 insert service S(i) name "svc-<it>-<i>"     1 insert route R(i) -> S(i)
 *   2 update S(i) with tag "done"                3 rename R(i) to "...-x"
 *   4 odd i: delete R(i-1); even i: insert consumer C(i)
 * and writes the count of committed writes to a pipe after each commit.
 * The parent kills it at a random moment; every committed write is then
 * exactly the first m of the sequence, where m is what the version moved
 * by, and m is the last count reported or one more (killed between the
 * commit and the report).
 */
#define K_OPS 5

static int
kill_op(mg_store_t *s, int it, int n)
{
    ent_t x;
    char  name[64], id[40];
    int   i = n / K_OPS, k = n % K_OPS, sid = it * 100000 + i;

    switch (k) {
    case 0:
    case 2:
        ent(&x, "services", 's', sid);
        snprintf(name, sizeof(name), "svc-%d-%d", it, i);
        uniq(&x, "name", name);
        tag(&x, "t");
        if (k == 2) {
            tag(&x, "done");
            return mg_store_update(s, &x.e, NULL);
        }
        return mg_store_insert(s, &x.e, NULL);
    case 1:
    case 3:
        ent(&x, "routes", 'r', sid);
        snprintf(name, sizeof(name), "rt-%d-%d%s", it, i, k == 3 ? "-x" : "");
        uniq(&x, "name", name);
        ref(&x, "service", "services", uid(id, 's', sid), 0);
        return k == 1 ? mg_store_insert(s, &x.e, NULL)
                      : mg_store_update(s, &x.e, NULL);
    default:
        if (i % 2) {
            return mg_store_delete(s, "routes", S(uid(id, 'r', sid - 1)),
                                   NULL, NULL);
        }
        ent(&x, "consumers", 'c', sid);
        snprintf(name, sizeof(name), "u-%d-%d", it, i);
        uniq(&x, "username", name);
        return mg_store_insert(s, &x.e, NULL);
    }
}

/* The state after the first m writes of iteration it; 1 when it holds. */
static int
kill_verify(mg_store_t *s, int it, int m)
{
    mg_pool_t        *pool = mg_pool_create(1024);
    mg_store_entity_t out;
    char              name[64], id[40];
    int               i, bad = 0;

    for (i = 0; i <= m / K_OPS + 1 && !bad; i++) {
        int sid = it * 100000 + i;
        int s_in = K_OPS * i < m, done = K_OPS * i + 2 < m;
        int r_in = K_OPS * i + 1 < m && !(i % 2 == 0
                                          && K_OPS * (i + 1) + 4 < m);
        int r_x = K_OPS * i + 3 < m;
        int c_in = i % 2 == 0 && K_OPS * i + 4 < m;
        int rc;

        rc = mg_store_get(s, "services", S(uid(id, 's', sid)), NULL, pool,
                          &out, NULL);
        bad |= (rc == MG_OK) != s_in;
        if (rc == MG_OK) bad |= (out.ntags == 2) != done;
        snprintf(name, sizeof(name), "svc-%d-%d", it, i);
        rc = mg_store_get(s, "services", S(name), "name", pool, &out, NULL);
        bad |= (rc == MG_OK) != s_in;
        snprintf(name, sizeof(name), "rt-%d-%d%s", it, i, r_x ? "-x" : "");
        rc = mg_store_get(s, "routes", S(name), "name", pool, &out, NULL);
        bad |= (rc == MG_OK) != r_in;
        snprintf(name, sizeof(name), "u-%d-%d", it, i);
        rc = mg_store_get(s, "consumers", S(name), "username", pool, &out,
                          NULL);
        bad |= (rc == MG_OK) != c_in;
        if (bad) printf("#   state differs at step %d of %d writes\n", i, m);
    }
    mg_pool_destroy(pool);
    return !bad && mg_store_check(s, NULL, NULL) == MG_OK;
}

static void
test_kill9(void)
{
    mg_store_t  *s = open_store("kill", 0);
    unsigned     seed = (unsigned) time(NULL) ^ (unsigned) getpid();
    int          it, iters = 8, all_ok = 1, total = 0;
    ent_t        x;

    printf("# kill -9 seed %u\n", seed);
    for (it = 1; it <= iters; it++) {
        int      fds[2], last = 0, got, m = 0, m_open = 0, m_open0 = 0;
        int      st, k;
        uint64_t base = mg_store_version(s), now;
        pid_t    pid;

        if (pipe(fds) != 0) {
            all_ok = 0;
            break;
        }
        pid = fork();
        if (pid == 0) {
            mg_store_t *cs = open_store("kill", 0);
            int         n;

            close(fds[0]);
            if (cs == NULL) _exit(1);
            for (n = 0;; n++) {
                int done = n + 1;
                if (kill_op(cs, it, n) != MG_OK) _exit(2);
                if (write(fds[1], &done, sizeof(done)) != sizeof(done)) {
                    _exit(3);
                }
            }
        }
        close(fds[1]);
        usleep(2000 + rand_r(&seed) % 60000);
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        while (read(fds[0], &got, sizeof(got)) == sizeof(got)) {
            last = got;
        }
        close(fds[0]);
        if (!WIFSIGNALED(st)) {
            printf("# child ended on its own: %d\n", st);
            all_ok = 0;
        }
        /* A handle that stayed open may not see a commit whose meta page
         * the child wrote just before dying (LMDB publishes it to readers
         * after the write); a reopen, or the next writer, does. */
        for (k = 0; k < 2; k++) {
            if (k == 1) {
                mg_store_close(s);
                s = open_store("kill", 0);
                if (s == NULL) {
                    all_ok = 0;
                    break;
                }
            }
            now = mg_store_version(s);
            m = (int) (now - base);
            if (m < last || m > last + 1 || m < m_open) {
                printf("# it %d: version moved %d, child reported %d\n", it,
                       m, last);
                all_ok = 0;
            }
            if (!kill_verify(s, it, m)) {
                printf("# it %d: state after %d writes wrong (%s)\n", it, m,
                       k ? "reopened" : "open handle");
                all_ok = 0;
            }
            if (k == 0) m_open0 = m;
            m_open = m;
        }
        if (s == NULL) {
            break;
        }
        printf("# it %d: killed after %d reported writes; %d committed "
               "(%d seen before the reopen)\n", it, last, m, m_open0);
        /* the writer lock the child may have held is recovered */
        ent(&x, "markers", 'm', it);
        if (mg_store_insert(s, &x.e, NULL) != MG_OK) {
            printf("# it %d: write after the kill failed\n", it);
            all_ok = 0;
        }
        total += m;
    }
    ok(all_ok, "%d kill -9 runs: every committed write (%d) kept, nothing "
       "half-written, indexes consistent, writes go on", iters, total);
    ok(total > iters, "the children got writes done (%d)", total);
    mg_store_close(s);
}

/* ---- main -------------------------------------------------------------- */

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(path);
}

int
main(void)
{
    int rc;

    mg_log_level = MG_LOG_CRIT;          /* E_FULL warns: expected here */
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_open();
    test_crud();
    test_uniques();
    test_foreign();
    test_pagination();
    test_tags();
    test_version();
    test_replace_all();
    test_export();
    test_map_full();
    test_multiprocess();
    test_map_resized();
    test_kill9();
    rc = done_testing();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
