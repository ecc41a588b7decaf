/*
 * mg_decl.h -- private to the declarative loader: mg_declarative.c (load,
 * shared walk machinery, resolution), mg_decl_entity.c (one walker per
 * entity) and mg_decl_value.c (typed readers, checkers, JSON, UUIDs).
 * Nothing outside core/conf includes it; the public API is mg_config.h.
 *
 * Readers and walkers report problems through mg_decl_err() and go on, so
 * one pass finds every problem.  Field readers return 1 when the field was
 * set, 0 when absent or null (the default stays), -1 on error.
 */
#ifndef MG_DECL_H
#define MG_DECL_H

#include <yaml.h>
#include "mg_config.h"

#define MG_DECL_MAX_FILE   (64 * 1024 * 1024)
#define MG_DECL_MAX_DEPTH  64
#define MG_DECL_MAX_NESTING (MG_DECL_MAX_DEPTH + 8) /* from the root */
#define MG_DECL_MAX_NODES  (4 * 1024 * 1024)   /* per JSON encode: aliases */
#define MG_DECL_TIMEOUT_MAX 2147483646

enum {
    MG_DECL_SERVICE,
    MG_DECL_ROUTE,
    MG_DECL_UPSTREAM,
    MG_DECL_TARGET,
    MG_DECL_CONSUMER,
    MG_DECL_PLUGIN,
    MG_DECL_CERTIFICATE,
    MG_DECL_SNI,
    MG_DECL_CA_CERTIFICATE,
    MG_DECL_NTYPES
};

typedef struct {
    const char *key;
    size_t      klen;
    uint32_t    hash;
    void       *val;
    const char *label;
} mg_decl_slot_t;

typedef struct {
    mg_decl_slot_t *slots;
    size_t          cap;
    size_t          n;
} mg_decl_map_t;

typedef struct {
    void  **elts;
    size_t  n;
    size_t  cap;
} mg_decl_vec_t;

/* A reference by name or id, resolved once every entity is known. */
typedef struct {
    int          type;       /* T_* of the referenced entity */
    void       **slot;
    const char  *key;
    int          by;         /* 0: id or name, 1: id only, 2: name only */
    const char  *label;
    const char  *field;
} mg_decl_ref_t;

typedef struct {
    int   type;              /* T_* of the parent, -1 at the top level */
    void *ptr;
    const char *id;          /* parent's id, for generated child ids */
} mg_decl_parent_t;

typedef struct {
    yaml_document_t    *doc;
    yaml_document_t     hc_doc;      /* Kong's healthchecks defaults */
    int                 hc_loaded;
    mg_config_t        *cf;
    mg_pool_t          *tmp;         /* labels, keys, refs: load only */
    mg_config_errors_t *errs;
    size_t              nerr;
    int64_t             now;
    mg_decl_vec_t       ents[MG_DECL_NTYPES];
    mg_decl_vec_t       labels[MG_DECL_NTYPES];
    mg_decl_map_t       map;
    mg_decl_vec_t       refs;
} mg_decl_ctx_t;

/* A growable byte buffer (malloc'd) for JSON. */
typedef struct {
    char   *data;
    size_t  len;
    size_t  cap;
    size_t  nodes;
    int     failed;
} mg_decl_buf_t;

typedef enum {
    MG_DECL_SK_STR,
    MG_DECL_SK_NULL,
    MG_DECL_SK_TRUE,
    MG_DECL_SK_FALSE,
    MG_DECL_SK_INT,
    MG_DECL_SK_FLOAT
} mg_decl_sk_e;

#define NODE(ctx, i) yaml_document_get_node((ctx)->doc, (i))
#define SV(n) ((const char *) (n)->data.scalar.value)
#define SL(n) ((n)->data.scalar.length)

#define FOR_PAIRS(ctx, map, label, k, kl, v)                                 \
    for (yaml_node_pair_t *p_ = (map)->data.mapping.pairs.start;             \
         p_ < (map)->data.mapping.pairs.top; p_++)                           \
        if (mg_decl_pair((ctx), (map), p_, (label), &(k), &(kl), &(v)))

#define KEY(lit) (kl == sizeof(lit) - 1 && memcmp(k, lit, kl) == 0)

#define MG_HOST_WILDCARD 1
#define MG_HOST_PORT     2

/* An array of strings; checker (may be NULL) validates each element. */
typedef const char *(*mg_decl_check_pt)(mg_decl_ctx_t *ctx, mg_str_t s,
                                        const char *label, const char *field);

/* Fields every entity has; returns 1 when k was one of them. */
typedef struct {
    mg_str_t       *id;
    mg_str_array_t *tags;
    int64_t        *created_at;
    int64_t        *updated_at;
} mg_decl_common_t;

typedef void (*mg_decl_entity_pt)(mg_decl_ctx_t *ctx, yaml_node_t *n,
                                  const char *label,
                                  const mg_decl_parent_t *parent);

/* The root namespace Kong uses for declarative ids. */
#define MG_DECL_UUID_NS "fd02801f-0957-4a15-a55a-c8d9606f30b5"

/* mg_declarative.c */
void mg_decl_err(mg_decl_ctx_t *ctx, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int mg_decl_common(mg_decl_ctx_t *ctx, const char *k, size_t kl,
                   yaml_node_t *v, const char *label, mg_decl_common_t *c);
void mg_decl_unknown(mg_decl_ctx_t *ctx, const char *label, const char *k);
void mg_decl_register(mg_decl_ctx_t *ctx, int type, void *ent, mg_str_t *id,
                      const char *natural, size_t nlen, const char *label);
void mg_decl_unique(mg_decl_ctx_t *ctx, int type, const char *what,
                    mg_str_t v, void *ent, const char *label);
void mg_decl_ref(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                 const char *field, int type, void **slot, mg_str_t *keyout);
char *mg_decl_content_key(mg_decl_ctx_t *ctx, yaml_node_t *n,
                          const char *parent_id, size_t *len);
void *mg_decl_new(mg_decl_ctx_t *ctx, int type, size_t size,
                  const char *label);
void mg_decl_each(mg_decl_ctx_t *ctx, yaml_node_t *seq, const char *prefix,
                  const char *key, int type, mg_decl_entity_pt fn,
                  const mg_decl_parent_t *parent);
void mg_decl_records_only(mg_decl_ctx_t *ctx, yaml_node_t *seq,
                          const char *label, const char *key);
int mg_decl_is_credential(const char *k, size_t kl);
void mg_decl_fix_surrogates(char *s, size_t *len);
void mg_decl_yaml_error(const yaml_parser_t *parser, const char *text,
                        size_t len, char *buf, size_t n);
int mg_decl_yaml_depth_check(const char *text, size_t len, char *msg,
                             size_t n);

/* mg_decl_value.c */
void mg_decl_buf_put(mg_decl_buf_t *b, const char *s, size_t n);
#define PUTS(b, lit) mg_decl_buf_put((b), (lit), sizeof(lit) - 1)
int mg_decl_hexval(int c);
int mg_decl_is_uuid(const char *s, size_t n);
void mg_decl_uuid_v5(const char *ns, const char *name, size_t n, char out[37]);
mg_decl_sk_e mg_decl_scalar_kind(yaml_node_t *n);
int mg_decl_is_null(yaml_node_t *n);
const char *mg_decl_node_what(yaml_node_t *n);
yaml_node_t *mg_decl_get(mg_decl_ctx_t *ctx, yaml_node_t *map,
                         const char *key);
int mg_decl_pair(mg_decl_ctx_t *ctx, yaml_node_t *map, yaml_node_pair_t *p,
                 const char *label, const char **k, size_t *kl,
                 yaml_node_t **v);
int mg_decl_str(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                const char *field, mg_str_t *out);
int mg_decl_int(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                const char *field, long long min, long long max,
                long long *out);
void mg_decl_int_field(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                       const char *field, long long min, long long max,
                       int *out);
void mg_decl_time_field(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                        const char *field, int64_t *out);
void mg_decl_bool(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                  const char *field, int *out);
int mg_decl_one_of(mg_str_t s, const char *const *set);
void mg_decl_set_list(char *buf, size_t len, const char *const *set);
int mg_decl_enum(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                 const char *field, const char *const *set, mg_str_t *out);
int mg_decl_str_array(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                      const char *field, mg_decl_check_pt check,
                      mg_str_array_t *out);
const char *mg_decl_check_tag(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                              const char *f);
const char *mg_decl_check_uuid(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                               const char *f);
const char *mg_decl_check_name(mg_str_t s);
const char *mg_decl_check_host(const char *s, size_t n, int flags);
const char *mg_decl_check_route_host(mg_decl_ctx_t *ctx, mg_str_t s,
                                     const char *l, const char *f);
const char *mg_decl_check_sni(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                              const char *f);
const char *mg_decl_check_method(mg_decl_ctx_t *ctx, mg_str_t s,
                                 const char *l, const char *f);
const char *mg_decl_check_path(mg_decl_ctx_t *ctx, mg_str_t s,
                               const char *label, const char *field);
const char *mg_decl_check_header_value(mg_decl_ctx_t *ctx, mg_str_t s,
                                       const char *label, const char *field);
void mg_decl_json(mg_decl_buf_t *b, yaml_document_t *doc, yaml_node_t *n,
                  yaml_document_t *ddoc, yaml_node_t *def, int depth);
int mg_decl_json_field(mg_decl_ctx_t *ctx, yaml_node_t *n,
                       yaml_document_t *ddoc, yaml_node_t *def,
                       const char *label, const char *field, mg_str_t *out);

/* mg_decl_entity.c */
void mg_decl_service(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                     const mg_decl_parent_t *parent);
void mg_decl_route(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                   const mg_decl_parent_t *parent);
void mg_decl_upstream(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                      const mg_decl_parent_t *parent);
void mg_decl_target(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                    const mg_decl_parent_t *parent);
void mg_decl_consumer(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                      const mg_decl_parent_t *parent);
void mg_decl_plugin(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                    const mg_decl_parent_t *parent);
void mg_decl_certificate(mg_decl_ctx_t *ctx, yaml_node_t *n,
                         const char *label, const mg_decl_parent_t *parent);
void mg_decl_sni(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                 const mg_decl_parent_t *parent);
void mg_decl_ca_certificate(mg_decl_ctx_t *ctx, yaml_node_t *n,
                            const char *label,
                            const mg_decl_parent_t *parent);

#endif /* MG_DECL_H */
