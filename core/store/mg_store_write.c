/*
 * mg_store_write.c -- insert, update, upsert, delete with cascades, and
 * replace_all.  See mg_store.h.
 *
 * Each public call is one write transaction; every check happens inside
 * it, so a refused write aborts and leaves nothing behind, and two
 * processes writing at once are serialized by LMDB's writer lock (no
 * check-then-write race).  A write's scratch memory (resolved references,
 * the old record being replaced) lives in s->scratch and is reset when
 * the transaction ends.
 *
 * Delete walks the reference index breadth-first: every entity reached
 * through a CASCADE reference is deleted, every RESTRICT reference is
 * remembered, and once the cascade is complete a remembered referencing
 * entity that still exists refuses the whole delete.  Checking at the end
 * makes the outcome independent of the walk's order (an entity both
 * cascaded and restricting is simply gone by then) and ends cycles: an
 * entity already deleted is skipped.  Rejected: Kong's "null" rule (set
 * the referencing field to null) -- it would mean editing JSON here, and
 * no Kong entity uses it.
 */
#include <stdlib.h>
#include "../base/mg_log.h"
#include "mg_store_int.h"

enum { ST_INSERT, ST_UPDATE, ST_UPSERT };

static void
st_key_ent_s(mg_st_key_t *k, mg_str_t type, mg_str_t id)
{
    k->n = 0;
    mg_st_key_add(k, type.data, type.len);
    mg_st_key_sep(k);
    mg_st_key_add(k, id.data, id.len);
}

/* A copy of e with every DEFAULT on_delete replaced by the rule. */
static int
st_resolve(mg_store_t *s, const mg_store_entity_t *e, mg_store_entity_t *out)
{
    mg_store_ref_t *r;
    size_t          i;

    *out = *e;
    if (e->nrefs == 0) {
        return MG_OK;
    }
    r = mg_pool_alloc(s->scratch, e->nrefs * sizeof(*r));
    if (r == NULL) {
        return MG_ERROR;
    }
    for (i = 0; i < e->nrefs; i++) {
        r[i] = e->refs[i];
        if (r[i].on_delete == MG_STORE_ON_DELETE_DEFAULT) {
            r[i].on_delete = mg_store_on_delete_default(e->type, r[i].field);
        }
    }
    out->refs = r;
    return MG_OK;
}

/* Add (add != 0) or remove e's entries in the three indexes. */
static int
st_index(mg_store_t *s, MDB_txn *txn, const mg_store_entity_t *e, int add,
         mg_store_err_t *err)
{
    mg_st_key_t k;
    MDB_val     kv, v;
    size_t      i;
    int         rc = MDB_SUCCESS;
    unsigned char od;

    for (i = 0; rc == MDB_SUCCESS && i < e->nuniques; i++) {
        mg_st_key_uniq(&k, e->type, e->uniques[i].field,
                       e->uniques[i].value);
        kv = mg_st_val(&k);
        v.mv_data = (void *) e->id.data;
        v.mv_size = e->id.len;
        rc = add ? mdb_put(txn, s->uniq, &kv, &v, 0)
                 : mdb_del(txn, s->uniq, &kv, NULL);
        rc = rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
    }
    for (i = 0; rc == MDB_SUCCESS && i < e->ntags; i++) {
        mg_st_key_tag(&k, e->type, e->tags[i], e->id);
        kv = mg_st_val(&k);
        v.mv_data = (void *) "";
        v.mv_size = 0;
        rc = add ? mdb_put(txn, s->tag, &kv, &v, 0)
                 : mdb_del(txn, s->tag, &kv, NULL);
        rc = rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
    }
    for (i = 0; rc == MDB_SUCCESS && i < e->nrefs; i++) {
        const mg_store_ref_t *r = &e->refs[i];
        mg_st_key_ref(&k, r->type, r->id, e->type, r->field, e->id);
        kv = mg_st_val(&k);
        od = (unsigned char) r->on_delete;
        v.mv_data = &od;
        v.mv_size = 1;
        rc = add ? mdb_put(txn, s->ref, &kv, &v, 0)
                 : mdb_del(txn, s->ref, &kv, NULL);
        rc = rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
    }
    if (rc != MDB_SUCCESS) {
        return mg_st_mdb_fail(s, err, rc, "index write");
    }
    return MG_OK;
}

static int
st_unique_fail(mg_store_err_t *err, const char *type, mg_str_t field,
               mg_str_t value, mg_str_t holder)
{
    if (err) {
        mg_st_copy(err->field, sizeof(err->field), field.data, field.len);
        mg_st_copy(err->ref_type, sizeof(err->ref_type), type, strlen(type));
        mg_st_copy(err->ref_id, sizeof(err->ref_id), holder.data,
                   holder.len);
    }
    return mg_st_fail(err, MG_STORE_E_UNIQUE,
                      "UNIQUE violation detected on '{%.*s=\"%.*s\"}'",
                      (int) field.len, field.data,
                      (int) mg_min(value.len, 200), value.data);
}

static int
st_check_uniques(mg_store_t *s, MDB_txn *txn, const mg_store_entity_t *e,
                 mg_store_err_t *err)
{
    mg_st_key_t k;
    MDB_val     kv, v;
    size_t      i;
    int         rc;

    for (i = 0; i < e->nuniques; i++) {
        const mg_store_key_t *u = &e->uniques[i];
        mg_st_key_uniq(&k, e->type, u->field, u->value);
        kv = mg_st_val(&k);
        rc = mdb_get(txn, s->uniq, &kv, &v);
        if (rc == MDB_NOTFOUND) {
            continue;
        }
        if (rc != MDB_SUCCESS) {
            return mg_st_mdb_fail(s, err, rc, "unique check");
        }
        if (v.mv_size != e->id.len || memcmp(v.mv_data, e->id.data,
                                             e->id.len) != 0)
        {
            mg_str_t holder = { v.mv_data, v.mv_size };
            return st_unique_fail(err, e->type, u->field, u->value, holder);
        }
    }
    return MG_OK;
}

/* Every reference of e names an existing entity. */
static int
st_check_refs(mg_store_t *s, MDB_txn *txn, const mg_store_entity_t *e,
              mg_store_err_t *err)
{
    mg_st_key_t k;
    MDB_val     kv, v;
    size_t      i;
    int         rc;

    for (i = 0; i < e->nrefs; i++) {
        const mg_store_ref_t *r = &e->refs[i];
        st_key_ent_s(&k, r->type, r->id);
        kv = mg_st_val(&k);
        rc = mdb_get(txn, s->ent, &kv, &v);
        if (rc == MDB_SUCCESS) {
            continue;
        }
        if (rc != MDB_NOTFOUND) {
            return mg_st_mdb_fail(s, err, rc, "reference check");
        }
        if (err) {
            mg_st_err_entity(err, e->type, e->id);
            mg_st_copy(err->field, sizeof(err->field), r->field.data,
                       r->field.len);
            mg_st_copy(err->ref_type, sizeof(err->ref_type), r->type.data,
                       r->type.len);
            mg_st_copy(err->ref_id, sizeof(err->ref_id), r->id.data,
                       r->id.len);
        }
        return mg_st_fail(err, MG_STORE_E_FOREIGN,
                          "the foreign key '{id=\"%.*s\"}' does not "
                          "reference an existing '%.*s' entity.",
                          (int) r->id.len, r->id.data, (int) r->type.len,
                          r->type.data);
    }
    return MG_OK;
}

/* One entity written inside txn.  check_refs 0 defers the reference check
 * to the caller (replace_all checks once everything is in). */
static int
st_put(mg_store_t *s, MDB_txn *txn, const mg_store_entity_t *in, int mode,
       int check_refs, int *created, mg_store_err_t *err)
{
    mg_store_entity_t e, old;
    mg_st_key_t       k;
    MDB_val           kv, v;
    int               rc, exists;

    if ((rc = mg_st_check_entity(in, err)) != MG_OK) {
        return rc;
    }
    if (st_resolve(s, in, &e) != MG_OK) {
        return MG_ERROR;
    }
    rc = mg_st_load(s, txn, e.type, e.id, s->scratch, 1, &old, err);
    if (rc != MG_OK && rc != MG_STORE_E_NOT_FOUND) {
        return rc;
    }
    exists = rc == MG_OK;
    if (mode == ST_INSERT && exists) {
        return mg_st_fail(err, MG_STORE_E_EXISTS,
                          "primary key violation on key '{id=\"%.*s\"}'",
                          (int) e.id.len, e.id.data);
    }
    if (mode == ST_UPDATE && !exists) {
        return mg_st_fail(err, MG_STORE_E_NOT_FOUND,
                          "could not find the entity with primary key "
                          "'{id=\"%.*s\"}'", (int) e.id.len, e.id.data);
    }
    if ((rc = st_check_uniques(s, txn, &e, err)) != MG_OK) {
        return rc;
    }
    if (exists && (rc = st_index(s, txn, &old, 0, err)) != MG_OK) {
        return rc;
    }
    mg_st_key_ent(&k, e.type, e.id);
    kv = mg_st_val(&k);
    v.mv_size = mg_st_rec_size(&e);
    v.mv_data = NULL;
    rc = mdb_put(txn, s->ent, &kv, &v, MDB_RESERVE);
    if (rc != MDB_SUCCESS) {
        return mg_st_mdb_fail(s, err, rc, "write");
    }
    mg_st_rec_encode(&e, v.mv_data);
    if ((rc = st_index(s, txn, &e, 1, err)) != MG_OK) {
        return rc;
    }
    /* after the record, so an entity may reference itself */
    if (check_refs && (rc = st_check_refs(s, txn, &e, err)) != MG_OK) {
        return rc;
    }
    if (created) {
        *created = !exists;
    }
    return MG_OK;
}

static int
st_abort(mg_store_t *s, MDB_txn *txn, int rc, mg_store_err_t *err)
{
    mdb_txn_abort(txn);
    mg_pool_reset(s->scratch);
    if (rc == MG_ERROR) {
        return mg_st_fail(err, MG_ERROR, "out of memory");
    }
    return rc;
}

static int
st_write_one(mg_store_t *s, const mg_store_entity_t *e, int mode,
             int *created, mg_store_err_t *err)
{
    MDB_txn *txn;
    int      rc;

    if ((rc = mg_st_usable(s, err)) != MG_OK
        || (rc = mg_st_wbegin(s, &txn, err)) != MG_OK)
    {
        return rc;
    }
    rc = st_put(s, txn, e, mode, 1, created, err);
    if (rc != MG_OK) {
        return st_abort(s, txn, rc, err);
    }
    return mg_st_wcommit(s, txn, err);
}

int
mg_store_insert(mg_store_t *s, const mg_store_entity_t *e,
                mg_store_err_t *err)
{
    return st_write_one(s, e, ST_INSERT, NULL, err);
}

int
mg_store_update(mg_store_t *s, const mg_store_entity_t *e,
                mg_store_err_t *err)
{
    return st_write_one(s, e, ST_UPDATE, NULL, err);
}

int
mg_store_upsert(mg_store_t *s, const mg_store_entity_t *e, int *created,
                mg_store_err_t *err)
{
    return st_write_one(s, e, ST_UPSERT, created, err);
}

/* --- delete ------------------------------------------------------------- */

typedef struct {
    const char *type;        /* the entity to delete, or the referencing
                                one for a restriction */
    mg_str_t    id;
    const char *ptype;       /* restriction: the referenced entity */
    mg_str_t    pid;
    mg_str_t    field;
} st_node_t;

typedef struct {
    st_node_t *elts;
    size_t     n;
    size_t     cap;
} st_nodes_t;

static st_node_t *
st_nodes_push(st_nodes_t *a)
{
    st_node_t *p;
    size_t     cap;

    if (a->n == a->cap) {
        cap = a->cap ? a->cap * 2 : 16;
        p = realloc(a->elts, cap * sizeof(*p));
        if (p == NULL) {
            return NULL;
        }
        a->elts = p;
        a->cap = cap;
    }
    p = &a->elts[a->n++];
    memset(p, 0, sizeof(*p));
    return p;
}

/* Queue the entities referencing node: cascades into del, restrictions
 * into res.  Keys are copied: the deletes that follow move pages. */
static int
st_children(mg_store_t *s, MDB_txn *txn, const st_node_t *node,
            st_nodes_t *del, st_nodes_t *res, mg_store_err_t *err)
{
    MDB_cursor *c;
    mg_st_key_t k;
    MDB_val     kv, v;
    mg_str_t    ptype = { node->type, strlen(node->type) };
    int         rc;

    mg_st_key_ref(&k, ptype, node->id, NULL, ptype, node->id);
    rc = mdb_cursor_open(txn, s->ref, &c);
    if (rc != MDB_SUCCESS) {
        return mg_st_mdb_fail(s, err, rc, "cursor");
    }
    kv = mg_st_val(&k);
    for (rc = mdb_cursor_get(c, &kv, &v, MDB_SET_RANGE);
         rc == MDB_SUCCESS;
         rc = mdb_cursor_get(c, &kv, &v, MDB_NEXT))
    {
        const char *p = kv.mv_data, *type, *field;
        size_t      n = kv.mv_size, tl, fl;
        st_node_t  *x;

        if (n < k.n || memcmp(p, k.b, k.n) != 0) {
            break;
        }
        p += k.n;
        n -= k.n;
        type = p;
        tl = strnlen(p, n);
        field = p + tl + 1;
        fl = tl < n ? strnlen(field, n - tl - 1) : 0;
        if (tl >= n || tl + 1 + fl >= n || v.mv_size != 1) {
            mdb_cursor_close(c);
            mg_log_error("store: corrupt reference index entry");
            return mg_st_fail(err, MG_STORE_E_IO, "corrupt reference index");
        }
        x = st_nodes_push(*(unsigned char *) v.mv_data
                                  == MG_STORE_ON_DELETE_CASCADE ? del : res);
        if (x == NULL
            || (x->type = mg_pool_strndup(s->scratch, type, tl)) == NULL
            || (x->field = mg_pool_str(s->scratch, field, fl)).data == NULL
            || (x->id = mg_pool_str(s->scratch, field + fl + 1,
                                    n - tl - fl - 2)).data == NULL)
        {
            mdb_cursor_close(c);
            return MG_ERROR;
        }
        x->ptype = node->type;
        x->pid = node->id;
    }
    mdb_cursor_close(c);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        return mg_st_mdb_fail(s, err, rc, "cursor");
    }
    return MG_OK;
}

static int
st_delete(mg_store_t *s, MDB_txn *txn, st_nodes_t *del, st_nodes_t *res,
          size_t *ndeleted, mg_store_err_t *err)
{
    mg_store_entity_t old;
    mg_st_key_t       k;
    MDB_val           kv, v;
    size_t            i, count = 0;
    int               rc;

    for (i = 0; i < del->n; i++) {
        st_node_t node = del->elts[i];    /* copy: push may move elts */

        rc = mg_st_load(s, txn, node.type, node.id, s->scratch, 1, &old,
                        err);
        if (rc == MG_STORE_E_NOT_FOUND && i > 0) {
            continue;                     /* reached twice, or a cycle */
        }
        if (rc == MG_STORE_E_NOT_FOUND) {
            return mg_st_fail(err, rc, "could not find the entity with "
                              "primary key '{id=\"%.*s\"}'",
                              (int) node.id.len, node.id.data);
        }
        if (rc != MG_OK
            || (rc = st_children(s, txn, &node, del, res, err)) != MG_OK
            || (rc = st_index(s, txn, &old, 0, err)) != MG_OK)
        {
            return rc;
        }
        mg_st_key_ent(&k, node.type, node.id);
        kv = mg_st_val(&k);
        rc = mdb_del(txn, s->ent, &kv, NULL);
        if (rc != MDB_SUCCESS) {
            return mg_st_mdb_fail(s, err, rc, "delete");
        }
        if (++count > MG_ST_CASCADE_MAX) {
            return mg_st_fail(err, MG_STORE_E_INVALID,
                              "the delete cascades to too many entities");
        }
    }
    for (i = 0; i < res->n; i++) {
        const st_node_t *r = &res->elts[i];

        mg_st_key_ent(&k, r->type, r->id);
        kv = mg_st_val(&k);
        rc = mdb_get(txn, s->ent, &kv, &v);
        if (rc == MDB_NOTFOUND) {
            continue;                     /* deleted by the cascade */
        }
        if (rc != MDB_SUCCESS) {
            return mg_st_mdb_fail(s, err, rc, "reference check");
        }
        if (err) {
            mg_st_err_entity(err, r->ptype, r->pid);
            mg_st_copy(err->field, sizeof(err->field), r->field.data,
                       r->field.len);
            mg_st_copy(err->ref_type, sizeof(err->ref_type), r->type,
                       strlen(r->type));
            mg_st_copy(err->ref_id, sizeof(err->ref_id), r->id.data,
                       r->id.len);
        }
        return mg_st_fail(err, MG_STORE_E_FOREIGN,
                          "an existing '%s' entity references this '%s' "
                          "entity", r->type, r->ptype);
    }
    if (ndeleted) {
        *ndeleted = count;
    }
    return MG_OK;
}

int
mg_store_delete(mg_store_t *s, const char *type, mg_str_t id,
                size_t *ndeleted, mg_store_err_t *err)
{
    st_nodes_t del = { NULL, 0, 0 }, res = { NULL, 0, 0 };
    st_node_t *root;
    MDB_txn   *txn;
    int        rc;

    if ((rc = mg_st_usable(s, err)) != MG_OK) {
        return rc;
    }
    if (type == NULL || !mg_st_valid_name(type, strlen(type))) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "invalid entity type");
    }
    mg_st_err_entity(err, type, id);
    if (!mg_st_valid_id(id)) {
        return mg_st_fail(err, MG_STORE_E_NOT_FOUND, "Not found");
    }
    if ((rc = mg_st_wbegin(s, &txn, err)) != MG_OK) {
        return rc;
    }
    root = st_nodes_push(&del);
    if (root == NULL) {
        rc = MG_ERROR;
    } else {
        root->type = type;
        root->id = id;
        rc = st_delete(s, txn, &del, &res, ndeleted, err);
    }
    free(del.elts);
    free(res.elts);
    if (rc != MG_OK) {
        return st_abort(s, txn, rc, err);
    }
    return mg_st_wcommit(s, txn, err);
}

/* --- replace_all -------------------------------------------------------- */

int
mg_store_replace_all(mg_store_t *s, const mg_store_entity_t *ents, size_t n,
                     mg_store_err_t *err)
{
    MDB_dbi  dbis[4];
    MDB_txn *txn;
    size_t   i;
    int      rc;

    if ((rc = mg_st_usable(s, err)) != MG_OK) {
        return rc;
    }
    if (n && ents == NULL) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "no entities");
    }
    if ((rc = mg_st_wbegin(s, &txn, err)) != MG_OK) {
        return rc;
    }
    dbis[0] = s->ent;
    dbis[1] = s->uniq;
    dbis[2] = s->tag;
    dbis[3] = s->ref;
    for (i = 0; i < mg_nelems(dbis); i++) {
        rc = mdb_drop(txn, dbis[i], 0);
        if (rc != MDB_SUCCESS) {
            return st_abort(s, txn, mg_st_mdb_fail(s, err, rc, "empty"),
                            err);
        }
    }
    for (i = 0; i < n; i++) {
        rc = st_put(s, txn, &ents[i], ST_INSERT, 0, NULL, err);
        mg_pool_reset(s->scratch);
        if (rc != MG_OK) {
            if (err) err->index = (long) i;
            return st_abort(s, txn, rc, err);
        }
    }
    for (i = 0; i < n; i++) {
        rc = st_check_refs(s, txn, &ents[i], err);
        if (rc != MG_OK) {
            if (err) err->index = (long) i;
            return st_abort(s, txn, rc, err);
        }
    }
    return mg_st_wcommit(s, txn, err);
}
