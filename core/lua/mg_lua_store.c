/*
 * mg_lua_store.c -- the entity store (core/store/mg_store.h) as flat
 * functions LuaJIT's FFI can call: no struct Lua must declare, entities
 * and results passed as one byte string each.  lua/moongate/db/store.lua
 * is the only caller; it owns the encoding on the Lua side.
 *
 * The encoding is a sequence of items, each "<decimal length>:<bytes>"
 * (a netstring without the trailing comma); numbers are items too.
 *
 *   entity  = type id json nuniques {field value} nrefs
 *             {field type id on_delete} ntags {tag}
 *   filter  = tags_any ntags {tag} has_ref [field type id]
 *   get     -> entity
 *   list    -> next count {entity}
 *   export  -> version count {entity}
 *   replace_all <- count {entity}
 *   err     -> code index type id field ref_type ref_id msg   (err buffer)
 *
 * Results are written into a malloc'd buffer handed to Lua, which copies
 * it (ffi.string) and gives it back with mg_lua_free().  Decoding is
 * bounded: every count is checked against the bytes left before anything
 * is allocated, and all decoded arrays live in one pool per call.
 *
 * Rejected: JSON for the envelope -- C would need a JSON parser for
 * fields the store never interprets, and the entity JSON would be escaped
 * twice.  Rejected too: cdef'ing mg_store_entity_t and friends -- Lua
 * would have to keep every string alive by hand across the call, and the
 * header's struct layout would become part of the Lua contract.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../store/mg_store.h"
#include "mg_lua_api.h"

#define MG_LS_OUT_MAX   ((size_t) 1 << 30)    /* a result buffer's limit */
#define MG_LS_ITEMS_MAX 1000000               /* replace_all entities */

/* --- reading items ------------------------------------------------------ */

typedef struct {
    const char *p;
    const char *end;
    int         bad;
} mg_ls_rd_t;

static mg_str_t
mg_ls_item(mg_ls_rd_t *r)
{
    mg_str_t s = { NULL, 0 };
    size_t   n = 0;
    int      digits = 0;

    while (!r->bad && r->p < r->end && *r->p >= '0' && *r->p <= '9') {
        if (++digits > 10) {
            r->bad = 1;
            break;
        }
        n = n * 10 + (size_t) (*r->p++ - '0');
    }
    if (r->bad || digits == 0 || r->p >= r->end || *r->p != ':'
        || n > (size_t) (r->end - r->p - 1))
    {
        r->bad = 1;
        return s;
    }
    r->p++;
    s.data = r->p;
    s.len = n;
    r->p += n;
    return s;
}

/* A count item, at most max and small enough for the bytes left
 * (each counted element takes `min_bytes` at least). */
static size_t
mg_ls_count(mg_ls_rd_t *r, size_t max, size_t min_bytes)
{
    mg_str_t s = mg_ls_item(r);
    size_t   i, n = 0;

    if (r->bad || s.len == 0 || s.len > 9) {
        r->bad = 1;
        return 0;
    }
    for (i = 0; i < s.len; i++) {
        if (s.data[i] < '0' || s.data[i] > '9') {
            r->bad = 1;
            return 0;
        }
        n = n * 10 + (size_t) (s.data[i] - '0');
    }
    if (n > max || n * min_bytes > (size_t) (r->end - r->p)) {
        r->bad = 1;
        return 0;
    }
    return n;
}

static int
mg_ls_read_entity(mg_ls_rd_t *r, mg_pool_t *pool, mg_store_entity_t *e)
{
    mg_store_key_t *u = NULL;
    mg_store_ref_t *f = NULL;
    mg_str_t       *t = NULL, type;
    size_t          i;

    memset(e, 0, sizeof(*e));
    type = mg_ls_item(r);
    e->id = mg_ls_item(r);
    e->json = mg_ls_item(r);
    e->nuniques = mg_ls_count(r, 64, 4);
    /* the type becomes a C string: a NUL inside would truncate it into
     * another, valid, type */
    if (r->bad || memchr(type.data, '\0', type.len) != NULL
        || (e->type = mg_pool_strndup(pool, type.data, type.len)) == NULL)
    {
        return MG_ERROR;
    }
    if (e->nuniques
        && (u = mg_pool_alloc(pool, e->nuniques * sizeof(*u))) == NULL)
    {
        return MG_ERROR;
    }
    for (i = 0; i < e->nuniques; i++) {
        u[i].field = mg_ls_item(r);
        u[i].value = mg_ls_item(r);
    }
    e->nrefs = mg_ls_count(r, 4096, 8);
    if (r->bad
        || (e->nrefs && (f = mg_pool_alloc(pool, e->nrefs * sizeof(*f)))
                        == NULL))
    {
        return MG_ERROR;
    }
    for (i = 0; i < e->nrefs && !r->bad; i++) {
        mg_str_t od;

        f[i].field = mg_ls_item(r);
        f[i].type = mg_ls_item(r);
        f[i].id = mg_ls_item(r);
        od = mg_ls_item(r);
        f[i].on_delete = od.len == 1 ? od.data[0] - '0' : -1;
    }
    e->ntags = mg_ls_count(r, 4096, 2);
    if (r->bad
        || (e->ntags && (t = mg_pool_alloc(pool, e->ntags * sizeof(*t)))
                        == NULL))
    {
        return MG_ERROR;
    }
    for (i = 0; i < e->ntags; i++) {
        t[i] = mg_ls_item(r);
    }
    e->uniques = u;
    e->refs = f;
    e->tags = t;
    return r->bad ? MG_ERROR : MG_OK;
}

/* --- writing items ------------------------------------------------------ */

typedef struct {
    char  *data;
    size_t len;
    size_t cap;
    int    failed;
} mg_ls_out_t;

static void
mg_ls_put(mg_ls_out_t *o, const char *s, size_t n)
{
    char   num[24];
    int    nl;
    size_t need, cap;
    char  *d;

    if (o->failed) {
        return;
    }
    nl = snprintf(num, sizeof(num), "%zu:", n);
    need = o->len + (size_t) nl + n + 1;
    if (need > MG_LS_OUT_MAX) {         /* before doubling can wrap */
        o->failed = 1;
        return;
    }
    if (need > o->cap) {
        cap = o->cap ? o->cap : 4096;
        while (cap < need) cap *= 2;
        if (cap > MG_LS_OUT_MAX || (d = realloc(o->data, cap)) == NULL) {
            o->failed = 1;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, num, (size_t) nl);
    if (n) {
        memcpy(o->data + o->len + nl, s, n);
    }
    o->len += (size_t) nl + n;
    o->data[o->len] = '\0';
}

static void
mg_ls_put_str(mg_ls_out_t *o, mg_str_t s)
{
    mg_ls_put(o, s.data, s.len);
}

static void
mg_ls_put_num(mg_ls_out_t *o, unsigned long long v)
{
    char num[24];
    int  n = snprintf(num, sizeof(num), "%llu", v);

    mg_ls_put(o, num, (size_t) n);
}

static void
mg_ls_put_entity(mg_ls_out_t *o, const mg_store_entity_t *e)
{
    size_t i;

    mg_ls_put(o, e->type, strlen(e->type));
    mg_ls_put_str(o, e->id);
    mg_ls_put_str(o, e->json);
    mg_ls_put_num(o, e->nuniques);
    for (i = 0; i < e->nuniques; i++) {
        mg_ls_put_str(o, e->uniques[i].field);
        mg_ls_put_str(o, e->uniques[i].value);
    }
    mg_ls_put_num(o, e->nrefs);
    for (i = 0; i < e->nrefs; i++) {
        mg_ls_put_str(o, e->refs[i].field);
        mg_ls_put_str(o, e->refs[i].type);
        mg_ls_put_str(o, e->refs[i].id);
        mg_ls_put_num(o, (unsigned long long) e->refs[i].on_delete);
    }
    mg_ls_put_num(o, e->ntags);
    for (i = 0; i < e->ntags; i++) {
        mg_ls_put_str(o, e->tags[i]);
    }
}

/* Hand o's buffer to the caller; MG_ERROR (buffer freed) on failure. */
static int
mg_ls_finish(mg_ls_out_t *o, char **out, size_t *outlen)
{
    if (o->failed || o->data == NULL) {
        free(o->data);
        *out = NULL;
        *outlen = 0;
        return MG_ERROR;
    }
    *out = o->data;
    *outlen = o->len;
    return MG_OK;
}

/* The store's error as items into err (errlen: 1024 is plenty; when it
 * is not enough the message is dropped, then everything: err = ""). */
static void
mg_ls_err_items(mg_ls_out_t *o, int rc, const mg_store_err_t *e,
                const char *msg)
{
    char num[24];

    snprintf(num, sizeof(num), "%d", rc);
    mg_ls_put(o, num, strlen(num));
    snprintf(num, sizeof(num), "%ld", e ? e->index : -1L);
    mg_ls_put(o, num, strlen(num));
    mg_ls_put(o, e ? e->type : "", e ? strlen(e->type) : 0);
    mg_ls_put(o, e ? e->id : "", e ? strlen(e->id) : 0);
    mg_ls_put(o, e ? e->field : "", e ? strlen(e->field) : 0);
    mg_ls_put(o, e ? e->ref_type : "", e ? strlen(e->ref_type) : 0);
    mg_ls_put(o, e ? e->ref_id : "", e ? strlen(e->ref_id) : 0);
    mg_ls_put(o, msg, strlen(msg));
}

static int
mg_ls_err(int rc, const mg_store_err_t *e, const char *msg, char *err,
          size_t errlen)
{
    mg_ls_out_t o = { NULL, 0, 0, 0 };

    if (err == NULL || errlen == 0) {
        return rc;
    }
    if (msg == NULL) {
        msg = e ? e->msg : "";
    }
    mg_ls_err_items(&o, rc, e, msg);
    if (o.failed || o.len >= errlen) {
        free(o.data);
        memset(&o, 0, sizeof(o));
        mg_ls_err_items(&o, rc, e, "");
    }
    if (o.failed || o.len >= errlen) {
        err[0] = '\0';
    } else {
        memcpy(err, o.data, o.len + 1);
    }
    free(o.data);
    return rc;
}

static mg_store_err_t *
mg_ls_err_init(mg_store_err_t *e)
{
    memset(e, 0, sizeof(*e));
    e->index = -1;
    return e;
}

/* --- the API ------------------------------------------------------------ */

void *
mg_lua_store_open(const char *dir, size_t map_size, char *err, size_t errlen)
{
    char msg[256] = "";
    mg_store_t *s;

    if (dir == NULL) {
        if (err && errlen) snprintf(err, errlen, "no directory");
        return NULL;
    }
    s = mg_store_open(dir, map_size, msg, sizeof(msg));
    if (s == NULL && err && errlen) {
        snprintf(err, errlen, "%s", msg);
    }
    return s;
}

void
mg_lua_store_close(void *s)
{
    if (s) {
        mg_store_close(s);
    }
}

void
mg_lua_free(void *p)
{
    free(p);
}

int
mg_lua_store_write(void *s, int op, const char *ent, size_t len,
                   int *created, char *err, size_t errlen)
{
    mg_store_err_t    e;
    mg_store_entity_t ent_s;
    mg_ls_rd_t        r = { ent, ent + len, 0 };
    mg_pool_t        *pool;
    int               rc, c = 0;

    if (s == NULL || ent == NULL || op < 0 || op > 2) {
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "invalid arguments", err,
                         errlen);
    }
    if ((pool = mg_pool_create(4096)) == NULL) {
        return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
    }
    if (mg_ls_read_entity(&r, pool, &ent_s) != MG_OK || r.p != r.end) {
        mg_pool_destroy(pool);
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "malformed entity", err,
                         errlen);
    }
    mg_ls_err_init(&e);
    rc = op == 0 ? mg_store_insert(s, &ent_s, &e)
       : op == 1 ? mg_store_update(s, &ent_s, &e)
                 : mg_store_upsert(s, &ent_s, &c, &e);
    mg_pool_destroy(pool);
    if (created) {
        *created = c;
    }
    return rc == MG_OK ? MG_OK : mg_ls_err(rc, &e, NULL, err, errlen);
}

int
mg_lua_store_delete(void *s, const char *type, const char *id, size_t idlen,
                    size_t *ndeleted, char *err, size_t errlen)
{
    mg_store_err_t e;
    mg_str_t       sid = { id, idlen };
    int            rc;

    if (s == NULL || type == NULL || id == NULL) {
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "invalid arguments", err,
                         errlen);
    }
    rc = mg_store_delete(s, type, sid, ndeleted, mg_ls_err_init(&e));
    return rc == MG_OK ? MG_OK : mg_ls_err(rc, &e, NULL, err, errlen);
}

int
mg_lua_store_get(void *s, const char *type, const char *key, size_t kl,
                 const char *by_field, char **out, size_t *outlen, char *err,
                 size_t errlen)
{
    mg_store_err_t    e;
    mg_store_entity_t ent;
    mg_str_t          k = { key, kl };
    mg_ls_out_t       o = { NULL, 0, 0, 0 };
    mg_pool_t        *pool;
    int               rc;

    *out = NULL;
    *outlen = 0;
    if (s == NULL || type == NULL || key == NULL) {
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "invalid arguments", err,
                         errlen);
    }
    if ((pool = mg_pool_create(4096)) == NULL) {
        return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
    }
    rc = mg_store_get(s, type, k, by_field, pool, &ent, mg_ls_err_init(&e));
    if (rc != MG_OK) {
        mg_pool_destroy(pool);
        return mg_ls_err(rc, &e, NULL, err, errlen);
    }
    mg_ls_put_entity(&o, &ent);
    mg_pool_destroy(pool);
    if (mg_ls_finish(&o, out, outlen) != MG_OK) {
        return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
    }
    return MG_OK;
}

/* list/export callback: count and append each entity */
typedef struct {
    mg_ls_out_t o;
    size_t      n;
} mg_ls_walk_t;

static int
mg_ls_each(void *data, const mg_store_entity_t *e)
{
    mg_ls_walk_t *w = data;

    mg_ls_put_entity(&w->o, e);
    w->n++;
    return w->o.failed ? MG_ERROR : MG_OK;
}

/* head items, then the count, then the entities collected in w */
static int
mg_ls_walk_finish(mg_ls_walk_t *w, mg_str_t head, char **out,
                  size_t *outlen, char *err, size_t errlen)
{
    mg_ls_out_t o = { NULL, 0, 0, 0 };

    mg_ls_put_str(&o, head);
    mg_ls_put_num(&o, w->n);
    if (!o.failed && w->o.len) {
        size_t need = o.len + w->o.len + 1;
        char  *d = need > o.cap ? realloc(o.data, need) : o.data;

        if (d == NULL) {
            o.failed = 1;
        } else {
            o.data = d;
            o.cap = need > o.cap ? need : o.cap;
            memcpy(o.data + o.len, w->o.data, w->o.len + 1);
            o.len += w->o.len;
        }
    }
    free(w->o.data);
    if (mg_ls_finish(&o, out, outlen) != MG_OK) {
        return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
    }
    return MG_OK;
}

int
mg_lua_store_list(void *s, const char *type, const char *filter, size_t fl,
                  size_t size, const char *offset, size_t ol, char **out,
                  size_t *outlen, char *err, size_t errlen)
{
    mg_str_t          tags[MG_STORE_FILTER_TAGS_MAX];
    mg_store_ref_t    ref;
    mg_store_filter_t f;
    mg_store_err_t    e;
    mg_ls_rd_t        r = { filter, filter + fl, 0 };
    mg_ls_walk_t      w;
    mg_str_t          any, has, off = { offset ? offset : "", ol };
    char              next[MG_STORE_CURSOR_MAX] = "";
    size_t            i;
    int               rc;

    *out = NULL;
    *outlen = 0;
    memset(&f, 0, sizeof(f));
    memset(&w, 0, sizeof(w));
    if (s == NULL || type == NULL || (filter == NULL && fl)) {
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "invalid arguments", err,
                         errlen);
    }
    if (fl) {
        any = mg_ls_item(&r);
        f.tags_any = any.len == 1 && any.data[0] == '1';
        f.ntags = mg_ls_count(&r, MG_STORE_FILTER_TAGS_MAX, 2);
        for (i = 0; i < f.ntags; i++) {
            tags[i] = mg_ls_item(&r);
        }
        f.tags = f.ntags ? tags : NULL;
        has = mg_ls_item(&r);
        if (has.len == 1 && has.data[0] == '1') {
            memset(&ref, 0, sizeof(ref));
            ref.field = mg_ls_item(&r);
            ref.type = mg_ls_item(&r);
            ref.id = mg_ls_item(&r);
            f.ref = &ref;
        }
        if (r.bad || r.p != r.end) {
            return mg_ls_err(MG_STORE_E_INVALID, NULL, "malformed filter",
                             err, errlen);
        }
    }
    rc = mg_store_list(s, type, fl ? &f : NULL, size, off, mg_ls_each, &w,
                       next, mg_ls_err_init(&e));
    if (rc != MG_OK) {
        free(w.o.data);
        if (w.o.failed) {
            return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
        }
        return mg_ls_err(rc, &e, NULL, err, errlen);
    }
    {
        mg_str_t head = { next, strlen(next) };
        return mg_ls_walk_finish(&w, head, out, outlen, err, errlen);
    }
}

int
mg_lua_store_export(void *s, char **out, size_t *outlen, char *err,
                    size_t errlen)
{
    mg_store_err_t e;
    mg_ls_walk_t   w;
    uint64_t       version = 0;
    char           num[24];
    int            rc;

    *out = NULL;
    *outlen = 0;
    memset(&w, 0, sizeof(w));
    if (s == NULL) {
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "invalid arguments", err,
                         errlen);
    }
    rc = mg_store_export(s, mg_ls_each, &w, &version, mg_ls_err_init(&e));
    if (rc != MG_OK) {
        free(w.o.data);
        if (w.o.failed) {
            return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
        }
        return mg_ls_err(rc, &e, NULL, err, errlen);
    }
    {
        mg_str_t head = { num, 0 };
        head.len = (size_t) snprintf(num, sizeof(num), "%llu",
                                     (unsigned long long) version);
        return mg_ls_walk_finish(&w, head, out, outlen, err, errlen);
    }
}

int
mg_lua_store_replace_all(void *s, const char *ents, size_t len, char *err,
                         size_t errlen)
{
    mg_store_entity_t *list = NULL;
    mg_store_err_t     e;
    mg_ls_rd_t         r = { ents, ents + len, 0 };
    mg_pool_t         *pool;
    size_t             i, n;
    int                rc;

    if (s == NULL || (ents == NULL && len)) {
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "invalid arguments", err,
                         errlen);
    }
    if ((pool = mg_pool_create(16384)) == NULL) {
        return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
    }
    n = len ? mg_ls_count(&r, MG_LS_ITEMS_MAX, 16) : 0;
    if (n && (list = mg_pool_alloc(pool, n * sizeof(*list))) == NULL) {
        mg_pool_destroy(pool);
        return mg_ls_err(MG_ERROR, NULL, "out of memory", err, errlen);
    }
    for (i = 0; i < n && !r.bad; i++) {
        if (mg_ls_read_entity(&r, pool, &list[i]) != MG_OK) {
            r.bad = 1;
        }
    }
    if (r.bad || r.p != r.end) {
        mg_pool_destroy(pool);
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "malformed entity list",
                         err, errlen);
    }
    rc = mg_store_replace_all(s, list, n, mg_ls_err_init(&e));
    mg_pool_destroy(pool);
    return rc == MG_OK ? MG_OK : mg_ls_err(rc, &e, NULL, err, errlen);
}

double
mg_lua_store_version(void *s)
{
    return s ? (double) mg_store_version(s) : 0;
}

int
mg_lua_store_check(void *s, size_t *nentities, char *err, size_t errlen)
{
    mg_store_err_t e;
    int            rc;

    if (s == NULL) {
        return mg_ls_err(MG_STORE_E_INVALID, NULL, "invalid arguments", err,
                         errlen);
    }
    rc = mg_store_check(s, nentities, mg_ls_err_init(&e));
    return rc == MG_OK ? MG_OK : mg_ls_err(rc, &e, NULL, err, errlen);
}
