/*
 * mg_store.c -- the environment, keys, records and reads by key.  See
 * mg_store.h for the contract and mg_store_int.h for the key layout.
 *
 * Record (the value under type \0 id), little-endian-agnostic (memcpy of
 * native integers: the file never leaves the host that wrote it):
 *
 *   u8 version, u8 0, u16 nuniques, u16 nrefs, u16 0, u32 ntags, u32 jlen
 *   nuniques x { u16 flen, u32 vlen, field \0, value \0 }
 *   nrefs    x { u8 on_delete, u16 flen, u16 tlen, u16 ilen,
 *                field \0, type \0, id \0 }
 *   ntags    x { u32 len, tag \0 }
 *   json \0
 *
 * Every string is followed by a NUL so a decoded entity can point into the
 * map and still hand out C strings.  The record repeats what the indexes
 * hold so a write can remove the old index entries and a read can confirm
 * an index hit (see V() in mg_store_int.h).
 *
 * Read transactions: one is kept per handle and reset between uses
 * (mdb_txn_reset/renew) so polling the version costs no allocation and an
 * idle worker pins no old snapshot.  A read nested in a list callback
 * gets a transaction of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "../base/mg_log.h"
#include "mg_store_int.h"

#define MG_ST_MAP_DEFAULT ((size_t) 2048 * 1024 * 1024)

/* --- errors ------------------------------------------------------------- */

void
mg_st_copy(char *dst, size_t size, const char *src, size_t n)
{
    if (n >= size) {
        n = size - 1;
    }
    if (n) {
        memcpy(dst, src, n);
    }
    dst[n] = '\0';
}

void
mg_st_err_reset(mg_store_err_t *err)
{
    if (err) {
        err->code = MG_OK;
        err->index = -1;
        err->type[0] = err->id[0] = err->field[0] = '\0';
        err->ref_type[0] = err->ref_id[0] = err->msg[0] = '\0';
    }
}

int
mg_st_fail(mg_store_err_t *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

void
mg_st_err_entity(mg_store_err_t *err, const char *type, mg_str_t id)
{
    if (err) {
        mg_st_copy(err->type, sizeof(err->type), type, strlen(type));
        mg_st_copy(err->id, sizeof(err->id), id.data, id.len);
    }
}

/* Map an LMDB failure to a store error; logged here, where the store
 * knows it is not the caller's fault. */
int
mg_st_mdb_fail(mg_store_t *s, mg_store_err_t *err, int rc, const char *what)
{
    if (rc == MDB_MAP_FULL) {
        mg_log_warn("store: %s: lmdb map full (%zu bytes); raise "
                    "lmdb_map_size", what, s->map_size);
        return mg_st_fail(err, MG_STORE_E_FULL,
                          "the store is full: lmdb_map_size (%zu bytes) is "
                          "reached; raise lmdb_map_size", s->map_size);
    }
    if (rc == MDB_TXN_FULL) {
        mg_log_warn("store: %s: transaction too large", what);
        return mg_st_fail(err, MG_STORE_E_FULL,
                          "the store is full: one transaction changes too "
                          "many pages");
    }
    mg_log_error("store: %s: %s", what, mdb_strerror(rc));
    return mg_st_fail(err, MG_STORE_E_IO, "store %s failed: %s", what,
                      mdb_strerror(rc));
}

int
mg_store_kong_code(int code, const char **name)
{
    static const struct {
        int         code;
        int         kong;
        const char *name;
    } map[] = {
        { MG_STORE_E_INVALID, 2, "schema violation" },
        { MG_STORE_E_EXISTS, 3, "primary key violation" },
        { MG_STORE_E_FOREIGN, 4, "foreign key violation" },
        { MG_STORE_E_UNIQUE, 5, "unique constraint violation" },
        { MG_STORE_E_NOT_FOUND, 6, "not found" },
        { MG_STORE_E_OFFSET, 7, "invalid offset" },
        { MG_STORE_E_FULL, 8, "database error" },
        { MG_STORE_E_IO, 8, "database error" },
    };
    size_t i;

    for (i = 0; i < mg_nelems(map); i++) {
        if (map[i].code == code) {
            if (name) *name = map[i].name;
            return map[i].kong;
        }
    }
    if (name) *name = NULL;
    return 0;
}

/* --- cascade rules ------------------------------------------------------ */

int
mg_store_on_delete_default(const char *type, mg_str_t field)
{
    /* Kong's schemas and its Postgres migrations (ON DELETE CASCADE). */
    static const struct {
        const char *type;
        const char *field;
    } cascades[] = {
        { "plugins", "service" },
        { "plugins", "route" },
        { "plugins", "consumer" },
        { "targets", "upstream" },
        { "snis", "certificate" },
        { "keyauth_credentials", "consumer" },
        { "basicauth_credentials", "consumer" },
        { "jwt_secrets", "consumer" },
        { "hmacauth_credentials", "consumer" },
        { "oauth2_credentials", "consumer" },
        { "oauth2_tokens", "credential" },
        { "oauth2_authorization_codes", "credential" },
        { "acls", "consumer" },
    };
    size_t i;

    for (i = 0; i < mg_nelems(cascades); i++) {
        if (strcmp(type, cascades[i].type) == 0
            && mg_str_eq_lit(field, cascades[i].field))
        {
            return MG_STORE_ON_DELETE_CASCADE;
        }
    }
    return MG_STORE_ON_DELETE_RESTRICT;
}

/* --- validation --------------------------------------------------------- */

int
mg_st_valid_name(const char *p, size_t n)
{
    size_t i;

    if (p == NULL || n == 0 || n > MG_STORE_TYPE_MAX) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
        {
            return 0;
        }
    }
    return 1;
}

int
mg_st_valid_id(mg_str_t id)
{
    size_t i;

    if (id.data == NULL || id.len == 0 || id.len > MG_STORE_ID_MAX) {
        return 0;
    }
    for (i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char) id.data[i];
        if (c <= 0x20 || c >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

int
mg_st_check_entity(const mg_store_entity_t *e, mg_store_err_t *err)
{
    size_t i;

    if (e == NULL || e->type == NULL
        || !mg_st_valid_name(e->type, strlen(e->type)))
    {
        return mg_st_fail(err, MG_STORE_E_INVALID, "invalid entity type");
    }
    mg_st_err_entity(err, e->type, e->id);
    if (!mg_st_valid_id(e->id)) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "invalid id");
    }
    if (e->json.len && e->json.data == NULL) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "no json");
    }
    if (e->json.len > UINT32_MAX - 1) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "entity too large");
    }
    if (e->nuniques > MG_ST_UNIQUES_MAX || e->nrefs > MG_ST_REFS_MAX
        || e->ntags > MG_ST_TAGS_MAX
        || (e->nuniques && e->uniques == NULL)
        || (e->nrefs && e->refs == NULL) || (e->ntags && e->tags == NULL))
    {
        return mg_st_fail(err, MG_STORE_E_INVALID,
                          "too many uniques, references or tags");
    }
    for (i = 0; i < e->nuniques; i++) {
        const mg_store_key_t *u = &e->uniques[i];
        if (!mg_st_valid_name(u->field.data, u->field.len)) {
            return mg_st_fail(err, MG_STORE_E_INVALID,
                              "invalid unique field name");
        }
        if (u->value.len == 0 || u->value.data == NULL
            || u->value.len > UINT32_MAX - 1)
        {
            if (err) {
                mg_st_copy(err->field, sizeof(err->field), u->field.data,
                           u->field.len);
            }
            return mg_st_fail(err, MG_STORE_E_INVALID,
                              "empty unique value");
        }
    }
    for (i = 0; i < e->nrefs; i++) {
        const mg_store_ref_t *r = &e->refs[i];
        if (!mg_st_valid_name(r->field.data, r->field.len)
            || !mg_st_valid_name(r->type.data, r->type.len)
            || !mg_st_valid_id(r->id)
            || r->on_delete < MG_STORE_ON_DELETE_DEFAULT
            || r->on_delete > MG_STORE_ON_DELETE_CASCADE)
        {
            if (err && mg_st_valid_name(r->field.data, r->field.len)) {
                mg_st_copy(err->field, sizeof(err->field), r->field.data,
                           r->field.len);
            }
            return mg_st_fail(err, MG_STORE_E_INVALID, "invalid reference");
        }
    }
    for (i = 0; i < e->ntags; i++) {
        const mg_str_t *t = &e->tags[i];
        if (t->len == 0 || t->data == NULL || t->len > UINT32_MAX - 1
            || memchr(t->data, '\0', t->len) != NULL)
        {
            return mg_st_fail(err, MG_STORE_E_INVALID, "invalid tag");
        }
    }
    return MG_OK;
}

/* --- keys --------------------------------------------------------------- */

void
mg_st_key_init(mg_st_key_t *k)
{
    k->n = 0;
}

/* Lengths are validated before keys are built, so the sum never reaches
 * the limit; the check is a last line against a future caller. */
void
mg_st_key_add(mg_st_key_t *k, const char *p, size_t n)
{
    if (k->n + n > MG_ST_KEY_MAX) {
        n = MG_ST_KEY_MAX - k->n;
    }
    if (n) {
        memcpy(k->b + k->n, p, n);
        k->n += n;
    }
}

void
mg_st_key_sep(mg_st_key_t *k)
{
    if (k->n < MG_ST_KEY_MAX) {
        k->b[k->n++] = '\0';
    }
}

void
mg_st_key_val(mg_st_key_t *k, const char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t          h = 0xcbf29ce484222325ull;   /* FNV-1a 64 */
    char              tail[16];
    size_t            i;

    if (n <= MG_ST_VAL_RAW) {
        mg_st_key_add(k, p, n);
        return;
    }
    for (i = 0; i < n; i++) {
        h ^= (unsigned char) p[i];
        h *= 0x100000001b3ull;
    }
    for (i = 0; i < 16; i++) {
        tail[i] = hex[(h >> (60 - 4 * i)) & 0xf];
    }
    mg_st_key_add(k, p, MG_ST_VAL_KEEP);
    mg_st_key_add(k, tail, sizeof(tail));
}

void
mg_st_key_ent(mg_st_key_t *k, const char *type, mg_str_t id)
{
    k->n = 0;
    mg_st_key_add(k, type, strlen(type));
    mg_st_key_sep(k);
    mg_st_key_add(k, id.data, id.len);
}

void
mg_st_key_uniq(mg_st_key_t *k, const char *type, mg_str_t field, mg_str_t v)
{
    k->n = 0;
    mg_st_key_add(k, type, strlen(type));
    mg_st_key_sep(k);
    mg_st_key_add(k, field.data, field.len);
    mg_st_key_sep(k);
    mg_st_key_val(k, v.data, v.len);
}

void
mg_st_key_tag(mg_st_key_t *k, const char *type, mg_str_t tag, mg_str_t id)
{
    k->n = 0;
    mg_st_key_add(k, type, strlen(type));
    mg_st_key_sep(k);
    mg_st_key_val(k, tag.data, tag.len);
    mg_st_key_sep(k);
    mg_st_key_add(k, id.data, id.len);
}

void
mg_st_key_ref(mg_st_key_t *k, mg_str_t ptype, mg_str_t pid, const char *type,
              mg_str_t field, mg_str_t id)
{
    k->n = 0;
    mg_st_key_add(k, ptype.data, ptype.len);
    mg_st_key_sep(k);
    mg_st_key_add(k, pid.data, pid.len);
    mg_st_key_sep(k);
    if (type == NULL) {
        return;                           /* prefix: every child of pid */
    }
    mg_st_key_add(k, type, strlen(type));
    mg_st_key_sep(k);
    mg_st_key_add(k, field.data, field.len);
    mg_st_key_sep(k);
    mg_st_key_add(k, id.data, id.len);
}

/* --- records ------------------------------------------------------------ */

static unsigned char *
st_put16(unsigned char *p, size_t v)
{
    uint16_t x = (uint16_t) v;

    memcpy(p, &x, 2);
    return p + 2;
}

static unsigned char *
st_put32(unsigned char *p, size_t v)
{
    uint32_t x = (uint32_t) v;

    memcpy(p, &x, 4);
    return p + 4;
}

static unsigned char *
st_putstr(unsigned char *p, const char *s, size_t n)
{
    if (n) {
        memcpy(p, s, n);
    }
    p[n] = '\0';
    return p + n + 1;
}

size_t
mg_st_rec_size(const mg_store_entity_t *e)
{
    size_t n = MG_ST_REC_HDR + e->json.len + 1, i;

    for (i = 0; i < e->nuniques; i++) {
        n += 6 + e->uniques[i].field.len + 1 + e->uniques[i].value.len + 1;
    }
    for (i = 0; i < e->nrefs; i++) {
        n += 7 + e->refs[i].field.len + 1 + e->refs[i].type.len + 1
             + e->refs[i].id.len + 1;
    }
    for (i = 0; i < e->ntags; i++) {
        n += 4 + e->tags[i].len + 1;
    }
    return n;
}

void
mg_st_rec_encode(const mg_store_entity_t *e, unsigned char *p)
{
    size_t i;

    *p++ = MG_ST_REC_VERSION;
    *p++ = 0;
    p = st_put16(p, e->nuniques);
    p = st_put16(p, e->nrefs);
    p = st_put16(p, 0);
    p = st_put32(p, e->ntags);
    p = st_put32(p, e->json.len);
    for (i = 0; i < e->nuniques; i++) {
        const mg_store_key_t *u = &e->uniques[i];
        p = st_put16(p, u->field.len);
        p = st_put32(p, u->value.len);
        p = st_putstr(p, u->field.data, u->field.len);
        p = st_putstr(p, u->value.data, u->value.len);
    }
    for (i = 0; i < e->nrefs; i++) {
        const mg_store_ref_t *r = &e->refs[i];
        *p++ = (unsigned char) r->on_delete;
        p = st_put16(p, r->field.len);
        p = st_put16(p, r->type.len);
        p = st_put16(p, r->id.len);
        p = st_putstr(p, r->field.data, r->field.len);
        p = st_putstr(p, r->type.data, r->type.len);
        p = st_putstr(p, r->id.data, r->id.len);
    }
    for (i = 0; i < e->ntags; i++) {
        p = st_put32(p, e->tags[i].len);
        p = st_putstr(p, e->tags[i].data, e->tags[i].len);
    }
    st_putstr(p, e->json.data, e->json.len);
}

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    mg_pool_t           *pool;
    int                  copy;
    int                  bad;
} st_rd_t;

static size_t
st_get(st_rd_t *r, size_t width)
{
    uint16_t x16;
    uint32_t x32;

    if (r->bad || (size_t) (r->end - r->p) < width) {
        r->bad = 1;
        return 0;
    }
    if (width == 1) {
        return *r->p++;
    }
    if (width == 2) {
        memcpy(&x16, r->p, 2);
        r->p += 2;
        return x16;
    }
    memcpy(&x32, r->p, 4);
    r->p += 4;
    return x32;
}

static mg_str_t
st_getstr(st_rd_t *r, size_t n)
{
    mg_str_t s = { "", 0 };

    if (r->bad || (size_t) (r->end - r->p) < n + 1 || r->p[n] != '\0') {
        r->bad = 1;
        return s;
    }
    if (r->copy) {
        s = mg_pool_str(r->pool, (const char *) r->p, n);
        if (s.data == NULL) {
            r->bad = 2;
        }
    } else {
        s.data = (const char *) r->p;
        s.len = n;
    }
    r->p += n + 1;
    return s;
}

int
mg_st_rec_decode(mg_pool_t *pool, const char *type, mg_str_t id,
                 const MDB_val *v, int copy, mg_store_entity_t *out)
{
    st_rd_t         r;
    size_t          i, nu, nr, nt, jl;
    mg_store_key_t *u = NULL;
    mg_store_ref_t *rf = NULL;
    mg_str_t       *t = NULL;

    r.p = v->mv_data;
    r.end = r.p + v->mv_size;
    r.pool = pool;
    r.copy = copy;
    r.bad = 0;
    if (st_get(&r, 1) != MG_ST_REC_VERSION) {
        return MG_STORE_E_IO;
    }
    st_get(&r, 1);
    nu = st_get(&r, 2);
    nr = st_get(&r, 2);
    st_get(&r, 2);
    nt = st_get(&r, 4);
    jl = st_get(&r, 4);
    if (r.bad || nu > MG_ST_UNIQUES_MAX || nr > MG_ST_REFS_MAX
        || nt > MG_ST_TAGS_MAX)
    {
        return MG_STORE_E_IO;
    }
    if ((nu && (u = mg_pool_alloc(pool, nu * sizeof(*u))) == NULL)
        || (nr && (rf = mg_pool_alloc(pool, nr * sizeof(*rf))) == NULL)
        || (nt && (t = mg_pool_alloc(pool, nt * sizeof(*t))) == NULL))
    {
        return MG_ERROR;
    }
    for (i = 0; i < nu; i++) {
        size_t fl = st_get(&r, 2), vl = st_get(&r, 4);
        u[i].field = st_getstr(&r, fl);
        u[i].value = st_getstr(&r, vl);
    }
    for (i = 0; i < nr; i++) {
        size_t fl, tl, il;
        rf[i].on_delete = (int) st_get(&r, 1);
        fl = st_get(&r, 2);
        tl = st_get(&r, 2);
        il = st_get(&r, 2);
        rf[i].field = st_getstr(&r, fl);
        rf[i].type = st_getstr(&r, tl);
        rf[i].id = st_getstr(&r, il);
    }
    for (i = 0; i < nt; i++) {
        t[i] = st_getstr(&r, st_get(&r, 4));
    }
    out->json = st_getstr(&r, jl);
    if (r.bad || r.p != r.end) {
        return r.bad == 2 ? MG_ERROR : MG_STORE_E_IO;
    }
    out->type = type;
    out->id = id;
    if (copy) {
        out->id = mg_pool_str(pool, id.data, id.len);
        out->type = mg_pool_strndup(pool, type, strlen(type));
        if (out->id.data == NULL || out->type == NULL) {
            return MG_ERROR;
        }
    }
    out->uniques = u;
    out->nuniques = nu;
    out->refs = rf;
    out->nrefs = nr;
    out->tags = t;
    out->ntags = nt;
    return MG_OK;
}

int
mg_st_rec_has_tag(const mg_store_entity_t *e, mg_str_t tag)
{
    size_t i;

    for (i = 0; i < e->ntags; i++) {
        if (mg_str_eq(e->tags[i], tag)) {
            return 1;
        }
    }
    return 0;
}

int
mg_st_rec_has_ref(const mg_store_entity_t *e, const mg_store_ref_t *r)
{
    size_t i;

    for (i = 0; i < e->nrefs; i++) {
        if (mg_str_eq(e->refs[i].field, r->field)
            && mg_str_eq(e->refs[i].type, r->type)
            && mg_str_eq(e->refs[i].id, r->id))
        {
            return 1;
        }
    }
    return 0;
}

/* --- transactions ------------------------------------------------------- */

int
mg_st_usable(mg_store_t *s, mg_store_err_t *err)
{
    mg_st_err_reset(err);
    if (s == NULL || s->env == NULL) {
        return mg_st_fail(err, MG_STORE_E_INVALID, "store is not open");
    }
    if (s->pid != getpid()) {
        /* An MDB_env inherited through fork() corrupts the lock table if
         * used: the child must open its own. */
        return mg_st_fail(err, MG_STORE_E_IO,
                          "store opened in another process (open it after "
                          "fork)");
    }
    return MG_OK;
}

int
mg_st_rbegin(mg_store_t *s, MDB_txn **txn, mg_store_err_t *err)
{
    int rc, tries;

    if (s->rtxn && !s->rtxn_busy) {
        rc = mdb_txn_renew(s->rtxn);
        if (rc == MDB_SUCCESS) {
            s->rtxn_busy = 1;
            *txn = s->rtxn;
            return MG_OK;
        }
        mdb_txn_abort(s->rtxn);
        s->rtxn = NULL;
    }
    for (tries = 0;; tries++) {
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc == MDB_MAP_RESIZED && tries == 0) {
            /* another process grew the map: adopt its size */
            mdb_env_set_mapsize(s->env, 0);
            continue;
        }
        break;
    }
    if (rc != MDB_SUCCESS) {
        return mg_st_mdb_fail(s, err, rc, "read transaction");
    }
    if (s->rtxn == NULL) {
        s->rtxn = *txn;
        s->rtxn_busy = 1;
    }
    return MG_OK;
}

void
mg_st_rend(mg_store_t *s, MDB_txn *txn)
{
    if (txn == s->rtxn) {
        mdb_txn_reset(txn);
        s->rtxn_busy = 0;
    } else {
        mdb_txn_abort(txn);
    }
}

int
mg_st_wbegin(mg_store_t *s, MDB_txn **txn, mg_store_err_t *err)
{
    int rc, tries;

    for (tries = 0;; tries++) {
        rc = mdb_txn_begin(s->env, NULL, 0, txn);
        if (rc == MDB_MAP_RESIZED && tries == 0) {
            mdb_env_set_mapsize(s->env, 0);
            continue;
        }
        break;
    }
    if (rc != MDB_SUCCESS) {
        return mg_st_mdb_fail(s, err, rc, "write transaction");
    }
    return MG_OK;
}

int
mg_st_meta_u64(mg_store_t *s, MDB_txn *txn, const char *name, uint64_t *out)
{
    MDB_val k, v;
    int     rc;

    k.mv_data = (void *) name;
    k.mv_size = strlen(name);
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *out = 0;
        return MG_OK;
    }
    if (rc != MDB_SUCCESS || v.mv_size != sizeof(uint64_t)) {
        return rc != MDB_SUCCESS ? rc : MDB_CORRUPTED;
    }
    memcpy(out, v.mv_data, sizeof(uint64_t));
    return MG_OK;
}

static int
st_meta_put(mg_store_t *s, MDB_txn *txn, const char *name, uint64_t x)
{
    MDB_val k, v;

    k.mv_data = (void *) name;
    k.mv_size = strlen(name);
    v.mv_data = &x;
    v.mv_size = sizeof(x);
    return mdb_put(txn, s->meta, &k, &v, 0);
}

int
mg_st_wcommit(mg_store_t *s, MDB_txn *txn, mg_store_err_t *err)
{
    struct timespec ts;
    uint64_t        version;
    int             rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    rc = mg_st_meta_u64(s, txn, "version", &version);
    if (rc == MG_OK) {
        rc = st_meta_put(s, txn, "version", version + 1);
    }
    if (rc == MG_OK) {
        rc = st_meta_put(s, txn, "mtime",
                         (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    }
    if (rc != MG_OK) {
        mdb_txn_abort(txn);
        mg_pool_reset(s->scratch);
        return mg_st_mdb_fail(s, err, rc, "version update");
    }
    rc = mdb_txn_commit(txn);        /* frees txn whatever the outcome */
    mg_pool_reset(s->scratch);
    if (rc != MDB_SUCCESS) {
        return mg_st_mdb_fail(s, err, rc, "commit");
    }
    /* only now can readers see the version (LMDB publishes it in the lock
     * region after the meta page write): tell the watchers */
    version++;
    if (s->notify_fd >= 0
        && pwrite(s->notify_fd, &version, sizeof(version), 0) < 0)
    {
        mg_log_warn("store: cannot write the version file: %s",
                    strerror(errno));
    }
    return MG_OK;
}

/* --- open, close -------------------------------------------------------- */

static int
st_open_dbis(mg_store_t *s, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t      off;
    } dbs[] = {
        { "mg_meta", offsetof(mg_store_t, meta) },
        { "mg_ent", offsetof(mg_store_t, ent) },
        { "mg_uniq", offsetof(mg_store_t, uniq) },
        { "mg_tag", offsetof(mg_store_t, tag) },
        { "mg_ref", offsetof(mg_store_t, ref) },
    };
    MDB_txn *txn;
    MDB_val  k, v;
    uint32_t format = MG_ST_FORMAT;
    size_t   i;
    int      rc;

    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        snprintf(err, errlen, "lmdb: begin: %s", mdb_strerror(rc));
        return MG_ERROR;
    }
    for (i = 0; i < mg_nelems(dbs); i++) {
        rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE,
                          (MDB_dbi *) ((char *) s + dbs[i].off));
        if (rc != MDB_SUCCESS) {
            snprintf(err, errlen, "lmdb: open %s: %s", dbs[i].name,
                     mdb_strerror(rc));
            mdb_txn_abort(txn);
            return MG_ERROR;
        }
    }
    k.mv_data = "format";
    k.mv_size = 6;
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_SUCCESS) {
        if (v.mv_size != sizeof(format)
            || memcmp(v.mv_data, &format, sizeof(format)) != 0)
        {
            snprintf(err, errlen, "lmdb: unknown store format (written by "
                     "another Moongate version)");
            mdb_txn_abort(txn);
            return MG_ERROR;
        }
    } else if (rc == MDB_NOTFOUND) {
        v.mv_data = &format;
        v.mv_size = sizeof(format);
        rc = mdb_put(txn, s->meta, &k, &v, 0);
    }
    if (rc == MDB_SUCCESS) {
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc != MDB_SUCCESS) {
        snprintf(err, errlen, "lmdb: create: %s", mdb_strerror(rc));
        return MG_ERROR;
    }
    return MG_OK;
}

mg_store_t *
mg_store_open(const char *dir, size_t map_size, char *err, size_t errlen)
{
    mg_store_t *s;
    long        page = sysconf(_SC_PAGESIZE);
    int         rc, dead;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "lmdb: mkdir %s: %s", dir, strerror(errno));
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->scratch = mg_pool_create(4096)) == NULL) {
        snprintf(err, errlen, "lmdb: out of memory");
        free(s);
        return NULL;
    }
    if (map_size == 0) {
        map_size = MG_ST_MAP_DEFAULT;
    }
    if (page <= 0) {
        page = 4096;
    }
    map_size = (map_size + (size_t) page - 1) / (size_t) page * (size_t) page;
    s->map_size = map_size;
    s->pid = getpid();
    s->notify_fd = -1;

    rc = mdb_env_create(&s->env);
    if (rc == MDB_SUCCESS) rc = mdb_env_set_maxdbs(s->env, 16);
    if (rc == MDB_SUCCESS) rc = mdb_env_set_maxreaders(s->env, 510);
    if (rc == MDB_SUCCESS) rc = mdb_env_set_mapsize(s->env, map_size);
    if (rc == MDB_SUCCESS) rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600);
    if (rc != MDB_SUCCESS) {
        snprintf(err, errlen, "lmdb: open %s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if (mdb_env_get_maxkeysize(s->env) < MG_ST_KEY_MAX) {
        snprintf(err, errlen, "lmdb: key size limit %d is below %d",
                 mdb_env_get_maxkeysize(s->env), MG_ST_KEY_MAX);
        goto fail;
    }
    /* reader slots of processes that died (kill -9) would pin old pages */
    if (mdb_reader_check(s->env, &dead) == MDB_SUCCESS && dead > 0) {
        mg_log_info("store: cleared %d stale lmdb reader slot(s)", dead);
    }
    if (st_open_dbis(s, err, errlen) != MG_OK) {
        goto fail;
    }
    {
        char vpath[4096];

        snprintf(vpath, sizeof(vpath), "%s/version", dir);
        s->notify_fd = open(vpath, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    }
    return s;

fail:
    if (s->env) {
        mdb_env_close(s->env);
    }
    mg_pool_destroy(s->scratch);
    free(s);
    return NULL;
}

void
mg_store_close(mg_store_t *s)
{
    if (s == NULL) {
        return;
    }
    /* In a forked child the environment is the parent's: closing it here
     * would release the parent's reader slots and locks. */
    if (s->env && s->pid == getpid()) {
        if (s->rtxn) {
            mdb_txn_abort(s->rtxn);
        }
        mdb_env_close(s->env);
    }
    if (s->notify_fd >= 0) {
        close(s->notify_fd);
    }
    mg_pool_destroy(s->scratch);
    free(s);
}

/* --- reads by key ------------------------------------------------------- */

int
mg_store_info(mg_store_t *s, uint64_t *version, uint64_t *mtime_ms,
              mg_store_err_t *err)
{
    MDB_txn *txn;
    uint64_t v = 0, m = 0;
    int      rc;

    if ((rc = mg_st_usable(s, err)) != MG_OK
        || (rc = mg_st_rbegin(s, &txn, err)) != MG_OK)
    {
        return rc;
    }
    rc = mg_st_meta_u64(s, txn, "version", &v);
    if (rc == MG_OK) {
        rc = mg_st_meta_u64(s, txn, "mtime", &m);
    }
    mg_st_rend(s, txn);
    if (rc != MG_OK) {
        return mg_st_mdb_fail(s, err, rc, "read version");
    }
    if (version) *version = v;
    if (mtime_ms) *mtime_ms = m;
    return MG_OK;
}

uint64_t
mg_store_version(mg_store_t *s)
{
    uint64_t v = 0;

    return mg_store_info(s, &v, NULL, NULL) == MG_OK ? v : 0;
}

int
mg_st_load(mg_store_t *s, MDB_txn *txn, const char *type, mg_str_t id,
        mg_pool_t *pool, int copy, mg_store_entity_t *out,
        mg_store_err_t *err)
{
    mg_st_key_t k;
    MDB_val     kv, v;
    int         rc;

    mg_st_key_ent(&k, type, id);
    kv = mg_st_val(&k);
    rc = mdb_get(txn, s->ent, &kv, &v);
    if (rc == MDB_NOTFOUND) {
        return MG_STORE_E_NOT_FOUND;
    }
    if (rc != MDB_SUCCESS) {
        return mg_st_mdb_fail(s, err, rc, "get");
    }
    rc = mg_st_rec_decode(pool, type, id, &v, copy, out);
    if (rc == MG_STORE_E_IO) {
        mg_log_error("store: corrupt record %s %.*s", type, (int) id.len,
                     id.data);
        return mg_st_fail(err, rc, "corrupt record");
    }
    return rc;
}

int
mg_st_has_unique(const mg_store_entity_t *e, mg_str_t field, mg_str_t value)
{
    size_t i;

    for (i = 0; i < e->nuniques; i++) {
        if (mg_str_eq(e->uniques[i].field, field)
            && mg_str_eq(e->uniques[i].value, value))
        {
            return 1;
        }
    }
    return 0;
}

int
mg_store_get(mg_store_t *s, const char *type, mg_str_t key,
             const char *by_field, mg_pool_t *pool, mg_store_entity_t *out,
             mg_store_err_t *err)
{
    MDB_txn    *txn;
    mg_st_key_t k;
    MDB_val     kv, v;
    mg_str_t    field;
    int         rc;

    if ((rc = mg_st_usable(s, err)) != MG_OK) {
        return rc;
    }
    if (type == NULL || !mg_st_valid_name(type, strlen(type)) || pool == NULL
        || out == NULL
        || (by_field && !mg_st_valid_name(by_field, strlen(by_field))))
    {
        return mg_st_fail(err, MG_STORE_E_INVALID, "invalid arguments");
    }
    if (key.len == 0 || key.data == NULL) {
        return mg_st_fail(err, MG_STORE_E_NOT_FOUND, "Not found");
    }
    if ((rc = mg_st_rbegin(s, &txn, err)) != MG_OK) {
        return rc;
    }
    rc = MG_STORE_E_NOT_FOUND;
    if (mg_st_valid_id(key)) {
        rc = mg_st_load(s, txn, type, key, pool, 1, out, err);
    }
    if (rc == MG_STORE_E_NOT_FOUND && by_field) {
        field.data = by_field;
        field.len = strlen(by_field);
        mg_st_key_uniq(&k, type, field, key);
        kv = mg_st_val(&k);
        rc = mdb_get(txn, s->uniq, &kv, &v);
        if (rc == MDB_SUCCESS) {
            mg_str_t id = { v.mv_data, v.mv_size };
            rc = mg_st_load(s, txn, type, id, pool, 1, out, err);
            if (rc == MG_OK && !mg_st_has_unique(out, field, key)) {
                rc = MG_STORE_E_NOT_FOUND;   /* a V() hash collision */
            }
        } else if (rc == MDB_NOTFOUND) {
            rc = MG_STORE_E_NOT_FOUND;
        } else {
            rc = mg_st_mdb_fail(s, err, rc, "get");
        }
    }
    mg_st_rend(s, txn);
    if (rc == MG_STORE_E_NOT_FOUND) {
        mg_st_err_entity(err, type, key);
        return mg_st_fail(err, rc, "Not found");
    }
    if (rc == MG_ERROR) {
        return mg_st_fail(err, MG_ERROR, "out of memory");
    }
    return rc;
}
