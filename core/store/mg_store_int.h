/*
 * mg_store_int.h -- what the files of core/store/ share and nobody else
 * sees: the handle, the key layout, the record codec and the transaction
 * helpers.  mg_store.c owns the environment, the codec and reads by key;
 * mg_store_write.c the writes; mg_store_list.c lists, export and check.
 *
 * Key layout (five sub-databases, fixed, opened once per process):
 *
 *   mg_meta   "version" -> u64, "mtime" -> u64 ms, "format" -> u32
 *   mg_ent    type \0 id                          -> record
 *   mg_uniq   type \0 field \0 V(value)           -> id
 *   mg_tag    type \0 V(tag) \0 id                -> ""
 *   mg_ref    ptype \0 pid \0 type \0 field \0 id -> on_delete (1 byte)
 *
 * V(x) is x itself up to MG_ST_VAL_RAW bytes; a longer x becomes its first
 * MG_ST_VAL_KEEP bytes and 16 hex digits of a 64-bit hash, one byte longer
 * than any raw value, so LMDB's 511-byte key limit holds whatever the
 * caller sends.  Reads never trust V(): a hit is confirmed against the
 * record, which holds the values in full.
 *
 * Rejected: a sub-database per entity type.  Plugin-declared types appear
 * at run time, and LMDB's named databases are handles that must be
 * opened inside a transaction (and vanish if it aborts), reopened in
 * every process that did not create them, and counted against a fixed
 * maxdbs.  Keys prefixed by type give the same locality -- one type is
 * one contiguous key range, in id order -- with five handles for good.
 */
#ifndef MG_STORE_INT_H
#define MG_STORE_INT_H

#include <lmdb.h>
#include <stdarg.h>
#include <sys/types.h>
#include "mg_store.h"

#define MG_ST_KEY_MAX     511        /* LMDB's default (and our) key limit */
#define MG_ST_VAL_RAW     256
#define MG_ST_VAL_KEEP    (MG_ST_VAL_RAW - 15)
#define MG_ST_FORMAT      1u
#define MG_ST_REC_VERSION 1
#define MG_ST_REC_HDR     16
#define MG_ST_UNIQUES_MAX 64
#define MG_ST_REFS_MAX    4096
#define MG_ST_TAGS_MAX    4096
#define MG_ST_CASCADE_MAX 1000000    /* entities one delete may remove */

struct mg_store_s {
    MDB_env    *env;
    MDB_dbi     meta;
    MDB_dbi     ent;
    MDB_dbi     uniq;
    MDB_dbi     tag;
    MDB_dbi     ref;
    MDB_txn    *rtxn;         /* cached read transaction, reset when idle */
    int         rtxn_busy;
    pid_t       pid;          /* the process that opened the environment */
    size_t      map_size;
    int         notify_fd;    /* <dir>/version, rewritten after a commit */
    mg_pool_t  *scratch;      /* a write's memory: decoded old records,
                                 reset when the write ends */
};

typedef struct {
    size_t n;
    char   b[MG_ST_KEY_MAX + 1];
} mg_st_key_t;

/* --- errors (mg_store.c) ------------------------------------------------ */

void mg_st_err_reset(mg_store_err_t *err);
int mg_st_fail(mg_store_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int mg_st_mdb_fail(mg_store_t *s, mg_store_err_t *err, int rc, const char *what);
void mg_st_err_entity(mg_store_err_t *err, const char *type, mg_str_t id);
void mg_st_copy(char *dst, size_t size, const char *src, size_t n);

/* --- validation, keys --------------------------------------------------- */

int mg_st_valid_name(const char *p, size_t n);
int mg_st_valid_id(mg_str_t id);
int mg_st_check_entity(const mg_store_entity_t *e, mg_store_err_t *err);

void mg_st_key_init(mg_st_key_t *k);
void mg_st_key_add(mg_st_key_t *k, const char *p, size_t n);
void mg_st_key_sep(mg_st_key_t *k);
void mg_st_key_val(mg_st_key_t *k, const char *p, size_t n);   /* V(x) */
void mg_st_key_ent(mg_st_key_t *k, const char *type, mg_str_t id);
void mg_st_key_uniq(mg_st_key_t *k, const char *type, mg_str_t field, mg_str_t v);
void mg_st_key_tag(mg_st_key_t *k, const char *type, mg_str_t tag, mg_str_t id);
void mg_st_key_ref(mg_st_key_t *k, mg_str_t ptype, mg_str_t pid, const char *type,
                mg_str_t field, mg_str_t id);

static inline MDB_val
mg_st_val(const mg_st_key_t *k)
{
    MDB_val v;

    v.mv_size = k->n;
    v.mv_data = (void *) k->b;
    return v;
}

/* --- records ------------------------------------------------------------ */

size_t mg_st_rec_size(const mg_store_entity_t *e);
void mg_st_rec_encode(const mg_store_entity_t *e, unsigned char *out);
/* Decode into out, arrays from pool; copy != 0 copies every string into
 * pool too (needed when the transaction will write before they are
 * read).  type and id are the key's. */
int mg_st_rec_decode(mg_pool_t *pool, const char *type, mg_str_t id,
                  const MDB_val *v, int copy, mg_store_entity_t *out);
/* The entity type/id in txn decoded into pool: MG_OK, E_NOT_FOUND (err
 * untouched), E_IO (corrupt or LMDB failure) or MG_ERROR (no memory). */
int mg_st_load(mg_store_t *s, MDB_txn *txn, const char *type, mg_str_t id,
               mg_pool_t *pool, int copy, mg_store_entity_t *out,
               mg_store_err_t *err);
/* Whether e holds the unique field = value (confirms an index hit). */
int mg_st_has_unique(const mg_store_entity_t *e, mg_str_t field,
                     mg_str_t value);
int mg_st_rec_has_tag(const mg_store_entity_t *e, mg_str_t tag);
int mg_st_rec_has_ref(const mg_store_entity_t *e, const mg_store_ref_t *r);

/* --- transactions ------------------------------------------------------- */

int mg_st_usable(mg_store_t *s, mg_store_err_t *err);
int mg_st_rbegin(mg_store_t *s, MDB_txn **txn, mg_store_err_t *err);
void mg_st_rend(mg_store_t *s, MDB_txn *txn);
int mg_st_wbegin(mg_store_t *s, MDB_txn **txn, mg_store_err_t *err);
/* Bump the version and the mtime, then commit; aborts on failure. */
int mg_st_wcommit(mg_store_t *s, MDB_txn *txn, mg_store_err_t *err);
int mg_st_meta_u64(mg_store_t *s, MDB_txn *txn, const char *name,
                uint64_t *out);

#endif /* MG_STORE_INT_H */
