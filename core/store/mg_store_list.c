/*
 * mg_store_list.c -- the read walks: list (pages, cursors, tag and
 * foreign-key filters), export in dependency order, and the consistency
 * check.  See mg_store.h.
 *
 * A list is driven by the narrowest index the filter allows, read in id
 * order (every index key ends with the id):
 *
 *   foreign key       mg_ref  ptype \0 pid \0 type \0 field \0 | id
 *   tags, all of      mg_tag  type \0 V(first tag) \0          | id
 *   tags, any of      mg_tag  one source per tag, merged by id
 *   nothing           mg_ent  type \0                          | id
 *
 * and every candidate's record is then checked against the whole filter,
 * so the record -- not the index -- has the last word (V() collisions,
 * the other tags of an AND).  The cursor is the last id delivered,
 * base64url-encoded: a page starts at the first id after it, so cursors
 * survive inserts and deletes between pages (Kong's offset semantics).
 * Rejected: counting offsets (skip N) -- they shift under concurrent
 * writes and cost O(N) per page.
 *
 * Export orders types by their references (Kahn's algorithm on the graph
 * read from mg_ref, ties broken by Kong's order), so an importer can
 * create entities in the order it receives them.
 */
#include <stdlib.h>
#include "../base/mg_log.h"
#include "mg_store_int.h"

#define ST_EXPORT_TYPES_MAX 256

/* --- cursors ------------------------------------------------------------ */

static const char st_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void
st_cursor_encode(mg_str_t id, char *out)
{
    const unsigned char *p = (const unsigned char *) id.data;
    size_t               i;
    uint32_t             x;

    for (i = 0; i + 2 < id.len; i += 3) {
        x = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
        *out++ = st_b64[x >> 18];
        *out++ = st_b64[(x >> 12) & 63];
        *out++ = st_b64[(x >> 6) & 63];
        *out++ = st_b64[x & 63];
    }
    if (id.len - i == 1) {
        x = (uint32_t) p[i] << 16;
        *out++ = st_b64[x >> 18];
        *out++ = st_b64[(x >> 12) & 63];
    } else if (id.len - i == 2) {
        x = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;
        *out++ = st_b64[x >> 18];
        *out++ = st_b64[(x >> 12) & 63];
        *out++ = st_b64[(x >> 6) & 63];
    }
    *out = '\0';
}

/* Decode a cursor into id (MG_STORE_ID_MAX bytes); -1 when malformed. */
static int
st_cursor_decode(mg_str_t in, char *id, size_t *len)
{
    uint32_t acc = 0;
    size_t   i, bits = 0, n = 0;
    mg_str_t out;

    if (in.len % 4 == 1 || in.len > (MG_STORE_ID_MAX * 4 + 2) / 3) {
        return -1;
    }
    for (i = 0; i < in.len; i++) {
        const char *c = memchr(st_b64, in.data[i], 64);
        if (c == NULL || in.data[i] == '\0') {
            return -1;
        }
        acc = (acc << 6) | (uint32_t) (c - st_b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            id[n++] = (char) ((acc >> bits) & 0xff);
        }
    }
    out.data = id;
    out.len = n;
    if (!mg_st_valid_id(out)) {
        return -1;
    }
    *len = n;
    return 0;
}

/* --- sources: one index range read in id order -------------------------- */

typedef struct {
    MDB_cursor *c;
    mg_st_key_t pfx;
    MDB_val     k;
    int         valid;
} st_src_t;

static int
st_src_check(st_src_t *src, int rc)
{
    if (rc == MDB_SUCCESS && src->k.mv_size > src->pfx.n
        && memcmp(src->k.mv_data, src->pfx.b, src->pfx.n) == 0)
    {
        src->valid = 1;
        return MDB_SUCCESS;
    }
    src->valid = 0;
    return rc == MDB_NOTFOUND || rc == MDB_SUCCESS ? MDB_SUCCESS : rc;
}

static mg_str_t
st_src_id(const st_src_t *src)
{
    mg_str_t id;

    id.data = (const char *) src->k.mv_data + src->pfx.n;
    id.len = src->k.mv_size - src->pfx.n;
    return id;
}

/* Position on the first id after `after` (or the first id at all). */
static int
st_src_seek(st_src_t *src, mg_str_t after)
{
    mg_st_key_t k = src->pfx;
    MDB_val     v;
    int         rc;

    mg_st_key_add(&k, after.data, after.len);
    src->k = mg_st_val(&k);
    rc = mdb_cursor_get(src->c, &src->k, &v, MDB_SET_RANGE);
    if (rc == MDB_SUCCESS && after.len && src->k.mv_size == k.n
        && memcmp(src->k.mv_data, k.b, k.n) == 0)
    {
        rc = mdb_cursor_get(src->c, &src->k, &v, MDB_NEXT);
    }
    return st_src_check(src, rc);
}

static int
st_src_next(st_src_t *src)
{
    MDB_val v;

    return st_src_check(src, mdb_cursor_get(src->c, &src->k, &v, MDB_NEXT));
}

static int
st_idcmp(mg_str_t a, mg_str_t b)
{
    int c = memcmp(a.data, b.data, mg_min(a.len, b.len));

    if (c) {
        return c;
    }
    return a.len < b.len ? -1 : a.len > b.len;
}

static int
st_match(const mg_store_entity_t *e, const mg_store_filter_t *f)
{
    size_t i, hits = 0;

    if (f == NULL) {
        return 1;
    }
    if (f->ref && !mg_st_rec_has_ref(e, f->ref)) {
        return 0;
    }
    for (i = 0; i < f->ntags; i++) {
        hits += mg_st_rec_has_tag(e, f->tags[i]) ? 1 : 0;
    }
    return f->ntags == 0 || (f->tags_any ? hits > 0 : hits == f->ntags);
}

static int
st_check_filter(const mg_store_filter_t *f, mg_store_err_t *err)
{
    size_t i;

    if (f == NULL) {
        return MG_OK;
    }
    if (f->ntags > MG_STORE_FILTER_TAGS_MAX || (f->ntags && !f->tags)) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "too many tags");
    }
    for (i = 0; i < f->ntags; i++) {
        if (f->tags[i].len == 0 || f->tags[i].data == NULL) {
            return mg_st_fail(err, MG_STORE_E_INVALID, "empty tag");
        }
    }
    if (f->ref
        && (!mg_st_valid_name(f->ref->field.data, f->ref->field.len)
            || !mg_st_valid_name(f->ref->type.data, f->ref->type.len)
            || !mg_st_valid_id(f->ref->id)))
    {
        return mg_st_fail(err, MG_STORE_E_INVALID, "invalid reference");
    }
    return MG_OK;
}

/* --- list --------------------------------------------------------------- */

typedef struct {
    mg_store_t              *s;
    MDB_txn                 *txn;
    mg_pool_t               *pool;
    const char              *type;
    const mg_store_filter_t *f;
    st_src_t                 src[MG_STORE_FILTER_TAGS_MAX];
    size_t                   nsrc;
} st_walk_t;

static int
st_list_sources(st_walk_t *w, mg_store_err_t *err)
{
    const mg_store_filter_t *f = w->f;
    MDB_dbi                  dbi;
    size_t                   i;
    int                      rc;

    w->nsrc = 1;
    if (f && f->ref) {
        dbi = w->s->ref;
        mg_str_t none = { "", 0 };               /* up to "field \0" */
        mg_st_key_ref(&w->src[0].pfx, f->ref->type, f->ref->id, w->type,
                      f->ref->field, none);
    } else if (f && f->ntags) {
        dbi = w->s->tag;
        w->nsrc = f->tags_any ? f->ntags : 1;
        for (i = 0; i < w->nsrc; i++) {
            mg_st_key_init(&w->src[i].pfx);
            mg_st_key_add(&w->src[i].pfx, w->type, strlen(w->type));
            mg_st_key_sep(&w->src[i].pfx);
            mg_st_key_val(&w->src[i].pfx, f->tags[i].data, f->tags[i].len);
            mg_st_key_sep(&w->src[i].pfx);
        }
    } else {
        dbi = w->s->ent;
        mg_st_key_init(&w->src[0].pfx);
        mg_st_key_add(&w->src[0].pfx, w->type, strlen(w->type));
        mg_st_key_sep(&w->src[0].pfx);
    }
    for (i = 0; i < w->nsrc; i++) {
        w->src[i].c = NULL;
    }
    for (i = 0; i < w->nsrc; i++) {
        rc = mdb_cursor_open(w->txn, dbi, &w->src[i].c);
        if (rc != MDB_SUCCESS) {
            return mg_st_mdb_fail(w->s, err, rc, "cursor");
        }
    }
    return MG_OK;
}

static void
st_walk_end(st_walk_t *w)
{
    size_t i;

    for (i = 0; i < w->nsrc; i++) {
        if (w->src[i].c) {
            mdb_cursor_close(w->src[i].c);
        }
    }
    if (w->txn) {
        mg_st_rend(w->s, w->txn);
    }
    mg_pool_destroy(w->pool);
}

/* The smallest id among the sources, advancing every source on it.  0
 * when all are exhausted, 1 with *id set, or an error code. */
static int
st_list_pick(st_walk_t *w, mg_str_t *id, mg_store_err_t *err)
{
    size_t i;
    int    found = 0, rc;

    for (i = 0; i < w->nsrc; i++) {
        if (w->src[i].valid
            && (!found || st_idcmp(st_src_id(&w->src[i]), *id) < 0))
        {
            *id = st_src_id(&w->src[i]);
            found = 1;
        }
    }
    if (!found) {
        return 0;
    }
    /* read-only snapshot: *id stays valid after the cursors move */
    for (i = 0; i < w->nsrc; i++) {
        if (w->src[i].valid && st_idcmp(st_src_id(&w->src[i]), *id) == 0
            && (rc = st_src_next(&w->src[i])) != MDB_SUCCESS)
        {
            return mg_st_mdb_fail(w->s, err, rc, "cursor");
        }
    }
    return 1;
}

int
mg_store_list(mg_store_t *s, const char *type, const mg_store_filter_t *f,
              size_t size, mg_str_t offset, mg_store_each_pt fn, void *data,
              char *next, mg_store_err_t *err)
{
    st_walk_t         w;
    mg_store_entity_t e;
    char              after_buf[MG_STORE_ID_MAX];
    mg_str_t          after = { after_buf, 0 }, id, last = { NULL, 0 };
    size_t            i, delivered = 0;
    int               rc;

    if ((rc = mg_st_usable(s, err)) != MG_OK) {
        return rc;
    }
    if (type == NULL || !mg_st_valid_name(type, strlen(type)) || fn == NULL) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "invalid arguments");
    }
    if ((rc = st_check_filter(f, err)) != MG_OK) {
        return rc;
    }
    if (offset.len && st_cursor_decode(offset, after_buf, &after.len) != 0) {
        return mg_st_fail(err, MG_STORE_E_OFFSET,
                          "'%.*s' is not a valid offset",
                          (int) mg_min(offset.len, 128), offset.data);
    }
    if (next) {
        next[0] = '\0';            /* after reading offset: may be next */
    }
    memset(&w, 0, sizeof(w));
    w.s = s;
    w.type = type;
    w.f = f;
    w.pool = mg_pool_create(4096);
    if (w.pool == NULL) {
        return mg_st_fail(err, MG_ERROR, "out of memory");
    }
    if ((rc = mg_st_rbegin(s, &w.txn, err)) != MG_OK) {
        w.txn = NULL;
        st_walk_end(&w);
        return rc;
    }
    if ((rc = st_list_sources(&w, err)) != MG_OK) {
        st_walk_end(&w);
        return rc;
    }
    for (i = 0; i < w.nsrc; i++) {
        if ((rc = st_src_seek(&w.src[i], after)) != MDB_SUCCESS) {
            rc = mg_st_mdb_fail(s, err, rc, "cursor");
            st_walk_end(&w);
            return rc;
        }
    }
    for (;;) {
        rc = st_list_pick(&w, &id, err);
        if (rc <= 0) {
            break;                        /* 0: done, < 0: error */
        }
        rc = mg_st_load(s, w.txn, type, id, w.pool, 0, &e, err);
        if (rc == MG_STORE_E_NOT_FOUND) {
            continue;
        }
        if (rc != MG_OK) {
            break;
        }
        if (!st_match(&e, f)) {
            mg_pool_reset(w.pool);
            continue;
        }
        if (size && delivered == size) {
            if (next) {
                st_cursor_encode(last, next);
            }
            rc = MG_OK;
            break;
        }
        rc = fn(data, &e);
        mg_pool_reset(w.pool);
        if (rc != MG_OK) {
            break;
        }
        delivered++;
        last = id;
    }
    st_walk_end(&w);
    if (rc == MG_ERROR && err && err->code == MG_OK) {
        mg_st_fail(err, MG_ERROR, "out of memory or callback failed");
    }
    return rc;
}

/* --- export ------------------------------------------------------------- */

static int
st_rank(const char *type)
{
    static const char *kong[] = {
        "vaults", "certificates", "ca_certificates", "snis", "services",
        "routes", "upstreams", "targets", "consumers", "keyauth_credentials",
        "basicauth_credentials", "jwt_secrets", "hmacauth_credentials",
        "oauth2_credentials", "acls",
    };
    size_t i;

    if (strcmp(type, "plugins") == 0) {
        return 2000;                      /* after plugin-declared types */
    }
    for (i = 0; i < mg_nelems(kong); i++) {
        if (strcmp(type, kong[i]) == 0) {
            return (int) i;
        }
    }
    return 1000;
}

typedef struct {
    const char *name;
    int         rank;
    int         indeg;
    int         done;
} st_type_t;

static int
st_type_find(st_type_t *t, size_t n, const char *p, size_t len)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strlen(t[i].name) == len && memcmp(t[i].name, p, len) == 0) {
            return (int) i;
        }
    }
    return -1;
}

/* Every type with at least one entity, in key order. */
static int
st_export_types(st_walk_t *w, st_type_t *t, size_t *nt, mg_store_err_t *err)
{
    MDB_cursor *c;
    MDB_val     k, v;
    mg_st_key_t seek;
    int         rc;
    size_t      len;

    if ((rc = mdb_cursor_open(w->txn, w->s->ent, &c)) != MDB_SUCCESS) {
        return mg_st_mdb_fail(w->s, err, rc, "cursor");
    }
    *nt = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE))
    {
        len = strnlen(k.mv_data, k.mv_size);
        if (len == k.mv_size || *nt == ST_EXPORT_TYPES_MAX) {
            mdb_cursor_close(c);
            return mg_st_fail(err, MG_STORE_E_IO, len == k.mv_size
                              ? "corrupt entity key" : "too many types");
        }
        t[*nt].name = mg_pool_strndup(w->pool, k.mv_data, len);
        if (t[*nt].name == NULL) {
            mdb_cursor_close(c);
            return MG_ERROR;
        }
        t[*nt].rank = st_rank(t[*nt].name);
        t[*nt].indeg = t[*nt].done = 0;
        (*nt)++;
        /* skip the rest of this type: "type \1" sorts after "type \0 *" */
        mg_st_key_init(&seek);
        mg_st_key_add(&seek, k.mv_data, len);
        mg_st_key_add(&seek, "\1", 1);
        k = mg_st_val(&seek);
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) {
        return mg_st_mdb_fail(w->s, err, rc, "cursor");
    }
    return MG_OK;
}

/* Fill edges[p * nt + c] for every "type c references type p". */
static int
st_export_edges(st_walk_t *w, st_type_t *t, size_t nt, unsigned char *edges,
                mg_store_err_t *err)
{
    MDB_cursor *c;
    MDB_val     k, v;
    int         rc, p, ch;

    if ((rc = mdb_cursor_open(w->txn, w->s->ref, &c)) != MDB_SUCCESS) {
        return mg_st_mdb_fail(w->s, err, rc, "cursor");
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    {
        const char *s = k.mv_data, *end = s + k.mv_size, *pid, *ct;
        size_t      pl = strnlen(s, k.mv_size), il, cl;

        pid = s + pl + 1;
        il = pid < end ? strnlen(pid, (size_t) (end - pid)) : 0;
        ct = pid + il + 1;
        cl = ct < end ? strnlen(ct, (size_t) (end - ct)) : 0;
        if (ct >= end || ct + cl >= end) {
            continue;                     /* mg_store_check reports it */
        }
        p = st_type_find(t, nt, s, pl);
        ch = st_type_find(t, nt, ct, cl);
        if (p >= 0 && ch >= 0 && p != ch && !edges[p * nt + ch]) {
            edges[p * nt + ch] = 1;
            t[ch].indeg++;
        }
    }
    mdb_cursor_close(c);
    if (rc != MDB_NOTFOUND) {
        return mg_st_mdb_fail(w->s, err, rc, "cursor");
    }
    return MG_OK;
}

/* Next type: a ready one (no unexported type it references) with the
 * best rank; on a cycle, the best-ranked of what is left. */
static int
st_export_next(st_type_t *t, size_t nt)
{
    int    best = -1, ready = 0;
    size_t i;

    for (i = 0; i < nt; i++) {
        int r = !t[i].done && t[i].indeg == 0;
        if (t[i].done || (ready && !r)) {
            continue;
        }
        if (best < 0 || (r && !ready) || t[i].rank < t[best].rank
            || (t[i].rank == t[best].rank
                && strcmp(t[i].name, t[best].name) < 0))
        {
            best = (int) i;
            ready = r;
        }
    }
    return best;
}

/* Every entity of one type to fn; LMDB failures become store errors,
 * a callback's own return value goes back unchanged. */
static int
st_export_type(st_walk_t *w, const char *type, mg_store_each_pt fn,
               void *data, mg_store_err_t *err)
{
    st_src_t          src;
    mg_store_entity_t e;
    mg_pool_t        *ep;
    MDB_val           val;
    mg_str_t          none = { "", 0 };
    int               rc;

    if ((ep = mg_pool_create(4096)) == NULL) {
        return MG_ERROR;
    }
    rc = mdb_cursor_open(w->txn, w->s->ent, &src.c);
    if (rc != MDB_SUCCESS) {
        mg_pool_destroy(ep);
        return mg_st_mdb_fail(w->s, err, rc, "cursor");
    }
    mg_st_key_init(&src.pfx);
    mg_st_key_add(&src.pfx, type, strlen(type));
    mg_st_key_sep(&src.pfx);
    for (rc = st_src_seek(&src, none); rc == MDB_SUCCESS && src.valid;
         rc = st_src_next(&src))
    {
        rc = mdb_cursor_get(src.c, &src.k, &val, MDB_GET_CURRENT);
        if (rc != MDB_SUCCESS) {
            break;
        }
        rc = mg_st_rec_decode(ep, type, st_src_id(&src), &val, 0, &e);
        if (rc == MG_OK) {
            rc = fn(data, &e);
        } else if (rc == MG_STORE_E_IO) {
            rc = mg_st_fail(err, rc, "corrupt record");
        }
        mg_pool_reset(ep);
        if (rc != MG_OK) {
            mdb_cursor_close(src.c);
            mg_pool_destroy(ep);
            return rc;
        }
    }
    mdb_cursor_close(src.c);
    mg_pool_destroy(ep);
    return rc == MDB_SUCCESS ? MG_OK : mg_st_mdb_fail(w->s, err, rc,
                                                      "cursor");
}

int
mg_store_export(mg_store_t *s, mg_store_each_pt fn, void *data,
                uint64_t *version, mg_store_err_t *err)
{
    st_walk_t         w;
    st_type_t        *t;
    unsigned char    *edges = NULL;
    size_t            nt = 0, i, j;
    uint64_t          v = 0;
    int               rc, ti;

    if ((rc = mg_st_usable(s, err)) != MG_OK) {
        return rc;
    }
    if (fn == NULL) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "no callback");
    }
    memset(&w, 0, sizeof(w));
    w.s = s;
    w.pool = mg_pool_create(4096);
    t = malloc(ST_EXPORT_TYPES_MAX * sizeof(*t));
    if (w.pool == NULL || t == NULL) {
        mg_pool_destroy(w.pool);
        free(t);
        return mg_st_fail(err, MG_ERROR, "out of memory");
    }
    if ((rc = mg_st_rbegin(s, &w.txn, err)) != MG_OK) {
        w.txn = NULL;
        goto done;
    }
    if ((rc = mg_st_meta_u64(s, w.txn, "version", &v)) != MG_OK) {
        rc = mg_st_mdb_fail(s, err, rc, "read version");
        goto done;
    }
    if ((rc = st_export_types(&w, t, &nt, err)) != MG_OK) {
        goto done;
    }
    edges = calloc(nt * nt + 1, 1);
    if (edges == NULL) {
        rc = MG_ERROR;
        goto done;
    }
    if ((rc = st_export_edges(&w, t, nt, edges, err)) != MG_OK) {
        goto done;
    }
    /* the type names live in w.pool: entities use a pool of their own */
    for (j = 0; j < nt && rc == MG_OK; j++) {
        ti = st_export_next(t, nt);
        t[ti].done = 1;
        for (i = 0; i < nt; i++) {
            if (edges[(size_t) ti * nt + i]) {
                t[i].indeg--;
            }
        }
        rc = st_export_type(&w, t[ti].name, fn, data, err);
    }

done:
    st_walk_end(&w);
    free(t);
    free(edges);
    if (rc == MG_OK && version) {
        *version = v;
    }
    if (rc == MG_ERROR && err && err->code == MG_OK) {
        mg_st_fail(err, MG_ERROR, "out of memory or callback failed");
    }
    return rc;
}

/* --- check -------------------------------------------------------------- */

static int
st_check_fail(mg_store_err_t *err, const char *what, const char *type,
              mg_str_t id)
{
    mg_st_err_entity(err, type, id);
    mg_log_error("store: check: %s (%s %.*s)", what, type, (int) id.len,
                 id.data);
    return mg_st_fail(err, MG_STORE_E_IO, "store check: %s (%s %.*s)", what,
                      type, (int) id.len, id.data);
}

static int
st_has_key(MDB_txn *txn, MDB_dbi dbi, const mg_st_key_t *k, MDB_val *v)
{
    MDB_val kv = mg_st_val(k);

    return mdb_get(txn, dbi, &kv, v) == MDB_SUCCESS;
}

/* Every record's index entries exist and point back; no dangling ref. */
static int
st_check_records(st_walk_t *w, size_t *count, mg_store_err_t *err)
{
    MDB_cursor       *c;
    MDB_val           k, v, x;
    mg_store_entity_t e;
    mg_st_key_t       key;
    size_t            i, tl;
    int               rc;

    if ((rc = mdb_cursor_open(w->txn, w->s->ent, &c)) != MDB_SUCCESS) {
        return mg_st_mdb_fail(w->s, err, rc, "cursor");
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    {
        mg_str_t id;

        tl = strnlen(k.mv_data, k.mv_size);
        id.data = (const char *) k.mv_data + tl + 1;
        id.len = tl < k.mv_size ? k.mv_size - tl - 1 : 0;
        if (tl == k.mv_size || !mg_st_valid_name(k.mv_data, tl)
            || !mg_st_valid_id(id)
            || mg_st_rec_decode(w->pool, k.mv_data, id, &v, 0, &e) != MG_OK)
        {
            rc = st_check_fail(err, "bad record", "?", id);
            break;
        }
        for (i = 0; rc == MDB_SUCCESS && i < e.nuniques; i++) {
            mg_st_key_uniq(&key, e.type, e.uniques[i].field,
                           e.uniques[i].value);
            if (!st_has_key(w->txn, w->s->uniq, &key, &x)
                || x.mv_size != id.len || memcmp(x.mv_data, id.data, id.len))
            {
                rc = st_check_fail(err, "unique index entry missing",
                                   e.type, id);
            }
        }
        for (i = 0; rc == MDB_SUCCESS && i < e.ntags; i++) {
            mg_st_key_tag(&key, e.type, e.tags[i], id);
            if (!st_has_key(w->txn, w->s->tag, &key, &x)) {
                rc = st_check_fail(err, "tag index entry missing", e.type,
                                   id);
            }
        }
        for (i = 0; rc == MDB_SUCCESS && i < e.nrefs; i++) {
            const mg_store_ref_t *r = &e.refs[i];
            mg_st_key_ref(&key, r->type, r->id, e.type, r->field, id);
            if (!st_has_key(w->txn, w->s->ref, &key, &x) || x.mv_size != 1
                || *(unsigned char *) x.mv_data != r->on_delete)
            {
                rc = st_check_fail(err, "reference index entry missing",
                                   e.type, id);
                break;
            }
            mg_st_key_init(&key);
            mg_st_key_add(&key, r->type.data, r->type.len);
            mg_st_key_sep(&key);
            mg_st_key_add(&key, r->id.data, r->id.len);
            if (!st_has_key(w->txn, w->s->ent, &key, &x)) {
                rc = st_check_fail(err, "dangling reference", e.type, id);
            }
        }
        mg_pool_reset(w->pool);
        if (rc != MDB_SUCCESS) {
            break;
        }
        (*count)++;
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        return MG_OK;
    }
    return rc < MG_STORE_E_IO || rc > 0 ? mg_st_mdb_fail(w->s, err, rc,
                                                         "cursor") : rc;
}

/* Every index entry names a record that holds it. */
static int
st_check_index(st_walk_t *w, MDB_dbi dbi, mg_store_err_t *err)
{
    MDB_cursor       *c;
    MDB_val           k, v;
    mg_store_entity_t e;
    mg_st_key_t       key;
    size_t            i;
    int               rc, found;

    if ((rc = mdb_cursor_open(w->txn, dbi, &c)) != MDB_SUCCESS) {
        return mg_st_mdb_fail(w->s, err, rc, "cursor");
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
    {
        const char *p = k.mv_data, *type = p, *end = p + k.mv_size;
        mg_str_t    id = { "", 0 };
        size_t      tl = strnlen(p, k.mv_size);

        if (dbi == w->s->uniq) {
            id.data = v.mv_data;
            id.len = v.mv_size;
        } else if (dbi == w->s->tag) {
            const char *sep = memrchr(p, '\0', k.mv_size);
            if (sep) {
                id.data = sep + 1;
                id.len = (size_t) (end - sep - 1);
            }
        } else {                          /* ptype pid type field id */
            const char *q = p;
            for (i = 0; i < 2 && q < end; i++) {
                q += strnlen(q, (size_t) (end - q)) + 1;
            }
            type = q;
            tl = q < end ? strnlen(q, (size_t) (end - q)) : 0;
            q = q < end ? q + tl + 1 : end;
            if (q < end) {
                q += strnlen(q, (size_t) (end - q)) + 1;
            }
            if (q < end) {
                id.data = q;
                id.len = (size_t) (end - q);
            }
        }
        if (type + tl >= end || !mg_st_valid_name(type, tl)) {
            rc = st_check_fail(err, "bad index key", "?", id);
            break;
        }
        rc = mg_st_load(w->s, w->txn, type, id, w->pool, 0, &e, err);
        if (rc != MG_OK) {
            rc = st_check_fail(err, "index entry without record", type, id);
            break;
        }
        found = 0;
        for (i = 0; !found && dbi == w->s->uniq && i < e.nuniques; i++) {
            mg_st_key_uniq(&key, e.type, e.uniques[i].field,
                           e.uniques[i].value);
            found = key.n == k.mv_size && memcmp(key.b, p, key.n) == 0;
        }
        for (i = 0; !found && dbi == w->s->tag && i < e.ntags; i++) {
            mg_st_key_tag(&key, e.type, e.tags[i], id);
            found = key.n == k.mv_size && memcmp(key.b, p, key.n) == 0;
        }
        for (i = 0; !found && dbi == w->s->ref && i < e.nrefs; i++) {
            mg_st_key_ref(&key, e.refs[i].type, e.refs[i].id, e.type,
                          e.refs[i].field, id);
            found = key.n == k.mv_size && memcmp(key.b, p, key.n) == 0;
        }
        mg_pool_reset(w->pool);
        if (!found) {
            rc = st_check_fail(err, "stale index entry", type, id);
            break;
        }
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        return MG_OK;
    }
    return rc < MG_STORE_E_IO || rc > 0 ? mg_st_mdb_fail(w->s, err, rc,
                                                         "cursor") : rc;
}

int
mg_store_check(mg_store_t *s, size_t *nentities, mg_store_err_t *err)
{
    st_walk_t w;
    size_t    count = 0;
    int       rc;

    if ((rc = mg_st_usable(s, err)) != MG_OK) {
        return rc;
    }
    memset(&w, 0, sizeof(w));
    w.s = s;
    w.pool = mg_pool_create(4096);
    if (w.pool == NULL) {
        return mg_st_fail(err, MG_ERROR, "out of memory");
    }
    if ((rc = mg_st_rbegin(s, &w.txn, err)) != MG_OK) {
        w.txn = NULL;
    }
    if (rc == MG_OK) rc = st_check_records(&w, &count, err);
    if (rc == MG_OK) rc = st_check_index(&w, s->uniq, err);
    if (rc == MG_OK) rc = st_check_index(&w, s->tag, err);
    if (rc == MG_OK) rc = st_check_index(&w, s->ref, err);
    st_walk_end(&w);
    if (rc == MG_OK && nentities) {
        *nentities = count;
    }
    return rc;
}
