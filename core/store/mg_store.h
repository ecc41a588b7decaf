/*
 * mg_store.h -- the entity store: Kong's entities (services, routes,
 * upstreams, targets, consumers, plugins, certificates, snis,
 * ca_certificates, credentials and any entity a plugin declares) kept as
 * JSON documents in one LMDB environment under <prefix>/lmdb.
 *
 * What the store understands.  The store never parses JSON.  The caller
 * (the Admin API, the declarative loader) has already validated the entity
 * against its schema, so it passes the JSON text together with the few
 * fields the store must enforce: the id, the unique keys, the foreign
 * keys with their on-delete rule, and the tags.  The store keeps those
 * beside the JSON and maintains the indexes from them; the JSON is stored
 * and handed back byte for byte.  Rejected: extracting the fields with
 * libyaml -- a second parse of every write, a schema table in C that
 * plugin-declared entities (daos.lua) would have to extend, and YAML's
 * scalar rules do not distinguish JSON's "1" from 1.
 *
 * Lifecycle.  mg_store_open() in each process that uses the store, after
 * fork(): an LMDB environment must never cross fork (the handle checks
 * its pid and refuses, and mg_store_close() in the wrong process only
 * frees memory).  Several processes open the same directory at once;
 * LMDB serializes their writers and gives readers snapshots.  A handle is
 * single-threaded (the workers are); it is opened with MDB_NOTLS so read
 * transactions are not tied to threads.
 *
 * Writes.  Every call that changes something is one LMDB write
 * transaction: either all of it commits, or nothing changes (a unique or
 * foreign-key violation, a full map, an I/O error).  Every commit also
 * increments the config version and sets the "last change" time stored in
 * the environment, in the same transaction, and once the commit is
 * readable the new version is written to the file <dir>/version: a
 * watcher (inotify, IN_MODIFY) there wakes exactly when
 * mg_store_version() (a read transaction, sub-microsecond) can return
 * it.  (Watching data.mdb instead races: LMDB writes the meta page
 * before it publishes the transaction to readers.)  Commits are synchronous (LMDB's
 * default): once a write call returns MG_OK it survives kill -9.
 *
 * Strings.  Types and field names are [A-Za-z0-9_.-], at most 48 bytes;
 * ids are printable ASCII without spaces, at most 64 bytes (Kong's are
 * UUIDs); unique values and tags are any bytes (tags: no NUL); values are
 * compared byte for byte, so callers normalise case where Kong does.
 */
#ifndef MG_STORE_H
#define MG_STORE_H

#include "../mg_core.h"
#include "../base/mg_pool.h"

typedef struct mg_store_s mg_store_t;

/* Error codes: MG_OK on success, else one of these (all negative and
 * distinct from MG_ERROR .. MG_DECLINED). */
enum {
    MG_STORE_E_INVALID   = -100, /* bad argument: type, id, field, limit */
    MG_STORE_E_NOT_FOUND = -101, /* no such entity */
    MG_STORE_E_EXISTS    = -102, /* insert: the id is taken (primary key) */
    MG_STORE_E_UNIQUE    = -103, /* a unique value belongs to another
                                    entity; err->field names it */
    MG_STORE_E_FOREIGN   = -104, /* write: a reference to a missing entity;
                                    delete: a restricting reference */
    MG_STORE_E_OFFSET    = -105, /* list: the cursor does not decode */
    MG_STORE_E_FULL      = -106, /* the map (lmdb_map_size) is full */
    MG_STORE_E_IO        = -107  /* LMDB or the file system failed, or
                                    the environment is inconsistent */
};

#define MG_STORE_TYPE_MAX   48
#define MG_STORE_FIELD_MAX  48
#define MG_STORE_ID_MAX     64
#define MG_STORE_CURSOR_MAX 96   /* a cursor's size, NUL included */
#define MG_STORE_FILTER_TAGS_MAX 16

/* What a delete does to the entities that reference the deleted one. */
enum {
    MG_STORE_ON_DELETE_DEFAULT = 0, /* Kong's rule for (type, field), see
                                       mg_store_on_delete_default() */
    MG_STORE_ON_DELETE_RESTRICT,    /* refuse the delete */
    MG_STORE_ON_DELETE_CASCADE      /* delete the referencing entity too */
};

/* A unique key: field "name" value "svc1".  Composite keys (a plugin's
 * name+scope, an ACL's consumer+group, a target's upstream+target) are one
 * field whose value the caller composes, e.g. field "cache_key". */
typedef struct {
    mg_str_t field;
    mg_str_t value;
} mg_store_key_t;

/* A foreign key: this entity's `field` references entity `type`/`id`. */
typedef struct {
    mg_str_t field;         /* "service" */
    mg_str_t type;          /* "services" */
    mg_str_t id;
    int      on_delete;     /* MG_STORE_ON_DELETE_*; read back resolved */
} mg_store_ref_t;

/*
 * An entity as written and as read back.  Written: the caller owns every
 * string and array for the duration of the call; pass only the uniques
 * and references that are set (a route without a name has no "name"
 * unique).  Read back: see the function that returned it for lifetime;
 * every string (json included) is also NUL-terminated, len excluding it.
 */
typedef struct {
    const char           *type;     /* "services", "keyauth_credentials" */
    mg_str_t              id;
    mg_str_t              json;
    const mg_store_key_t *uniques;
    size_t                nuniques;
    const mg_store_ref_t *refs;
    size_t                nrefs;
    const mg_str_t       *tags;
    size_t                ntags;
} mg_store_entity_t;

/*
 * Why a call failed.  Every call takes an optional mg_store_err_t * (NULL
 * when the caller only wants the code) and fills it on failure; msg is
 * Kong's wording where Kong has one, e.g.
 *     UNIQUE violation detected on '{name="svc1"}'
 *     the foreign key '{id="..."}' does not reference an existing
 *         'services' entity.
 *     an existing 'routes' entity references this 'services' entity
 * The message may quote a unique value the caller sent (as Kong's does):
 * it is for the Admin API's answer, not for the log.
 */
typedef struct {
    int    code;
    long   index;                          /* replace_all: the failing
                                              entity's position, else -1 */
    char   type[MG_STORE_TYPE_MAX + 1];    /* the entity written/deleted */
    char   id[MG_STORE_ID_MAX + 1];
    char   field[MG_STORE_FIELD_MAX + 1];  /* unique or reference field */
    char   ref_type[MG_STORE_TYPE_MAX + 1];/* E_UNIQUE: type of the holder;
                                              E_FOREIGN: the referenced
                                              (write) or referencing
                                              (delete) entity */
    char   ref_id[MG_STORE_ID_MAX + 1];
    char   msg[320];
} mg_store_err_t;

/*
 * Open (creating when missing, mode 0700/0600) the environment in
 * directory dir with a map of map_size bytes (0: 2 GB; rounded up to the
 * page size; an existing larger file keeps its size).  Returns NULL with
 * a message in err on failure.  Cost: one write transaction (creates the
 * sub-databases the first time) and a sweep of stale reader slots left by
 * killed processes.
 */
mg_store_t *mg_store_open(const char *dir, size_t map_size, char *err,
                          size_t errlen);
void mg_store_close(mg_store_t *s);

/*
 * Writes.  insert: E_EXISTS when the id is taken.  update: replaces the
 * whole entity (PATCH merges before calling), E_NOT_FOUND when absent.
 * upsert: either (Kong's PUT); *created (may be NULL) says which.  All
 * check every unique (E_UNIQUE) and that every reference names an
 * existing entity (E_FOREIGN; a self-reference is allowed).  Indexes are
 * rewritten from the new entity: a rename frees the old name in the same
 * transaction.
 */
int mg_store_insert(mg_store_t *s, const mg_store_entity_t *e,
                    mg_store_err_t *err);
int mg_store_update(mg_store_t *s, const mg_store_entity_t *e,
                    mg_store_err_t *err);
int mg_store_upsert(mg_store_t *s, const mg_store_entity_t *e, int *created,
                    mg_store_err_t *err);

/*
 * Delete type/id and, transitively, every entity referencing it with
 * on_delete CASCADE.  Refused with E_FOREIGN when, after the cascade, an
 * entity referencing a deleted one with RESTRICT would remain (the first
 * one found is named).  E_NOT_FOUND when type/id does not exist.
 * *ndeleted (may be NULL) receives how many entities went, cascade
 * included.
 */
int mg_store_delete(mg_store_t *s, const char *type, mg_str_t id,
                    size_t *ndeleted, mg_store_err_t *err);

/*
 * Replace every entity in the store by ents[0..n) in one transaction
 * (POST /config, db_import): the order of ents does not matter, references
 * are checked once all are in.  On any failure (err->index names the
 * entity) the store is left exactly as it was.  Other users of the
 * environment (caches, counters) are untouched.
 */
int mg_store_replace_all(mg_store_t *s, const mg_store_entity_t *ents,
                         size_t n, mg_store_err_t *err);

/*
 * Read one entity into pool (every string and array copied there).  key
 * is an id; when by_field is not NULL and no entity has that id, key is
 * then looked up as the value of the unique field by_field (Kong's
 * "id or name" endpoints: by_field "name", "username", ...).
 * E_NOT_FOUND when neither matches.
 */
int mg_store_get(mg_store_t *s, const char *type, mg_str_t key,
                 const char *by_field, mg_pool_t *pool,
                 mg_store_entity_t *out, mg_store_err_t *err);

/*
 * Called for each entity by list and export.  The entity and its strings
 * point into the read snapshot and into store scratch memory: valid only
 * until the callback returns (copy what you keep).  Return MG_OK to go
 * on; anything else stops the walk and becomes the walk's return value.
 * A callback must not write to the store.
 */
typedef int (*mg_store_each_pt)(void *data, const mg_store_entity_t *e);

typedef struct {
    const mg_str_t       *tags;      /* NULL/0: no tag filter */
    size_t                ntags;     /* at most MG_STORE_FILTER_TAGS_MAX */
    int                   tags_any;  /* 0: all tags (Kong "a,b"),
                                        1: any tag (Kong "a/b") */
    const mg_store_ref_t *ref;       /* NULL, or only the entities whose
                                        ref->field references ref->type /
                                        ref->id ("routes of service X") */
} mg_store_filter_t;

/*
 * List entities of type in id order (bytewise), one page of at most size
 * entities (0: no limit), starting after the cursor offset (empty: from
 * the start).  next (MG_STORE_CURSOR_MAX bytes, may be NULL) receives the
 * cursor of the next page, or "" when this page is the last.  Cursors are
 * opaque URL-safe text and stay valid across writes: a page starts after
 * the last id of the previous one, even if that entity was deleted since.
 * Each page is read from one snapshot.  E_OFFSET on a malformed cursor.
 */
int mg_store_list(mg_store_t *s, const char *type, const mg_store_filter_t *f,
                  size_t size, mg_str_t offset, mg_store_each_pt fn,
                  void *data, char *next, mg_store_err_t *err);

/*
 * Every entity of every type, from one snapshot, types in dependency
 * order (a referenced type before the types referencing it; Kong's order
 * for its own types, then plugin-declared types by name), ids in order
 * within a type.  *version (may be NULL) receives the snapshot's version.
 */
int mg_store_export(mg_store_t *s, mg_store_each_pt fn, void *data,
                    uint64_t *version, mg_store_err_t *err);

/* The config version (0 for a new store; +1 per committed write) and the
 * wall-clock time of the last committed write in ms (0 if none).
 * mg_store_version() returns 0 when the read fails. */
int mg_store_info(mg_store_t *s, uint64_t *version, uint64_t *mtime_ms,
                  mg_store_err_t *err);
uint64_t mg_store_version(mg_store_t *s);

/*
 * Verify every index against the records and every record against the
 * indexes, and that no reference dangles.  MG_OK, or E_IO naming the
 * first inconsistency.  A full scan: for tests and diagnostics.
 * *nentities (may be NULL) receives the number of entities.
 */
int mg_store_check(mg_store_t *s, size_t *nentities, mg_store_err_t *err);

/* Kong's on-delete rule for a reference: CASCADE for plugins' service,
 * route and consumer, targets' upstream, snis' certificate and every
 * credential's consumer; RESTRICT for everything else. */
int mg_store_on_delete_default(const char *type, mg_str_t field);

/* Kong's error code and name for a store error (e.g. 5, "unique
 * constraint violation"); 0 and NULL for MG_OK. */
int mg_store_kong_code(int code, const char **name);

#endif /* MG_STORE_H */
