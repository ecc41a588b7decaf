/*
 * mg_declarative.c -- Kong's declarative config (`_format_version: "3.0"`,
 * YAML or JSON) into an mg_config_t snapshot.  See mg_config.h.
 *
 * libyaml's document API composes the whole file into a node tree (JSON is
 * YAML, so the same parser reads both); one pass then walks the tree entity
 * by entity, applying Kong's defaults and checks and collecting every
 * problem with a path such as
 *
 *     services[0] (name=s1).routes[1] (name=r2): paths[0]: invalid regex: ...
 *
 * References written by name or id (a flat route's `service:`, a plugin's
 * `consumer:`, ...) are recorded while walking and resolved to pointers at
 * the end, when every entity is known; so is a service whose host names an
 * upstream.  Nested entities take their parent's reference directly.
 *
 * Ids: given ids must be UUIDs.  Missing ids are generated the way Kong
 * does in DB-less mode: a name-based (v5, SHA-1) UUID of the entity's
 * natural key (name, username, upstream+target, plugin name+scope, ...)
 * under a namespace derived from the entity type, so ids stay the same
 * across reloads of the same file.  Entities without a natural key (an
 * unnamed route) hash their canonical JSON and their parent's id instead;
 * identical twins get "#2", "#3" appended to the key.
 *
 * Scalars follow YAML 1.2's core schema: a plain (unquoted) scalar that
 * reads as null, true/false or a number is that; quoted ones are strings.
 * Plugin configs and upstream healthchecks are kept as compact JSON.
 *
 * Rejected: a generic value tree kept in the snapshot (see mg_config.h),
 * and libyaml's event API -- references and nested defaults need random
 * access to the tree, which the document API gives for free.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <yaml.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "mg_config.h"

#define MG_DECL_MAX_FILE   (64 * 1024 * 1024)
#define MG_DECL_MAX_DEPTH  64
#define MG_DECL_MAX_NODES  (4 * 1024 * 1024)   /* per JSON encode: aliases */
#define MG_DECL_TIMEOUT_MAX 2147483646

enum {
    T_SERVICE, T_ROUTE, T_UPSTREAM, T_TARGET, T_CONSUMER, T_PLUGIN,
    T_CERTIFICATE, T_SNI, T_CA_CERTIFICATE, T_N
};

static const char *mg_decl_type_name[T_N] = {
    "services", "routes", "upstreams", "targets", "consumers", "plugins",
    "certificates", "snis", "ca_certificates"
};

static const char *mg_decl_type_one[T_N] = {
    "service", "route", "upstream", "target", "consumer", "plugin",
    "certificate", "sni", "ca_certificate"
};

/* The field that names an entity in error paths and generated ids. */
static const char *mg_decl_type_key[T_N] = {
    "name", "name", "name", "target", "username", "name", NULL, "name", NULL
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
    mg_decl_vec_t       ents[T_N];
    mg_decl_vec_t       labels[T_N];
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

static void mg_decl_err(mg_decl_ctx_t *ctx, const char *label,
                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
mg_decl_err(mg_decl_ctx_t *ctx, const char *label, const char *fmt, ...)
{
    char    msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->nerr++;
    if (label && *label) {
        mg_config_errors_add(ctx->errs, "%s: %s", label, msg);
    } else {
        mg_config_errors_add(ctx->errs, "%s", msg);
    }
}

/* --- small containers ---------------------------------------------------- */

static int
mg_decl_vec_push(mg_pool_t *pool, mg_decl_vec_t *v, void *elt)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        void **e = mg_pool_alloc(pool, cap * sizeof(void *));

        if (e == NULL) {
            return MG_ERROR;
        }
        if (v->n) {
            memcpy(e, v->elts, v->n * sizeof(void *));
        }
        v->elts = e;
        v->cap = cap;
    }
    v->elts[v->n++] = elt;
    return MG_OK;
}

static uint32_t
mg_decl_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    while (n--) {
        h = (h ^ (unsigned char) *s++) * 16777619u;
    }
    return h;
}

static mg_decl_slot_t *
mg_decl_map_find(mg_decl_map_t *m, const char *key, size_t klen)
{
    uint32_t h;
    size_t   i;

    if (m->cap == 0) {
        return NULL;
    }
    h = mg_decl_hash(key, klen);
    for (i = h & (m->cap - 1); m->slots[i].key; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].hash == h && m->slots[i].klen == klen
            && memcmp(m->slots[i].key, key, klen) == 0)
        {
            return &m->slots[i];
        }
    }
    return NULL;
}

/* Insert key (copied); returns the existing slot when taken, else NULL. */
static mg_decl_slot_t *
mg_decl_map_add(mg_decl_ctx_t *ctx, const char *key, size_t klen, void *val,
                const char *label)
{
    mg_decl_map_t  *m = &ctx->map;
    mg_decl_slot_t *s;
    size_t          i;
    uint32_t        h;

    if ((s = mg_decl_map_find(m, key, klen)) != NULL) {
        return s;
    }
    if ((m->n + 1) * 2 > m->cap) {
        size_t          cap = m->cap ? m->cap * 2 : 256;
        mg_decl_slot_t *slots = calloc(cap, sizeof(*slots));

        if (slots == NULL) {
            return NULL;
        }
        for (i = 0; i < m->cap; i++) {
            size_t j;

            if (m->slots[i].key == NULL) {
                continue;
            }
            for (j = m->slots[i].hash & (cap - 1); slots[j].key;
                 j = (j + 1) & (cap - 1)) {}
            slots[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    h = mg_decl_hash(key, klen);
    for (i = h & (m->cap - 1); m->slots[i].key; i = (i + 1) & (m->cap - 1)) {}
    m->slots[i].key = mg_pool_strndup(ctx->tmp, key, klen);
    m->slots[i].klen = klen;
    m->slots[i].hash = h;
    m->slots[i].val = val;
    m->slots[i].label = label;
    m->n++;
    return NULL;
}

/* Map keys look like "services/name/s1". */
static size_t
mg_decl_key(char *buf, size_t len, int type, const char *what, const char *v,
            size_t vlen)
{
    int n = snprintf(buf, len, "%s/%s/%.*s", mg_decl_type_name[type], what,
                     (int) vlen, v);

    return n < 0 ? 0 : mg_min((size_t) n, len - 1);
}

/* --- SHA-1 and name-based UUIDs (RFC 4122 version 5) ---------------------- */

typedef struct {
    uint32_t h[5];
    uint64_t len;
    uint8_t  buf[64];
    size_t   blen;
} mg_decl_sha1_t;

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void
mg_decl_sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80], a, b, c, d, e, f, k, t;
    int      i;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[4 * i] << 24 | (uint32_t) p[4 * i + 1] << 16
               | (uint32_t) p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (; i < 80; i++) {
        w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & c) | (~b & d); k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d; k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d; k = 0xCA62C1D6;
        }
        t = ROL(a, 5) + f + e + k + w[i];
        e = d; d = c; c = ROL(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void
mg_decl_sha1_init(mg_decl_sha1_t *s)
{
    s->h[0] = 0x67452301; s->h[1] = 0xEFCDAB89; s->h[2] = 0x98BADCFE;
    s->h[3] = 0x10325476; s->h[4] = 0xC3D2E1F0;
    s->len = 0;
    s->blen = 0;
}

static void
mg_decl_sha1_update(mg_decl_sha1_t *s, const void *data, size_t n)
{
    const uint8_t *p = data;

    s->len += n;
    while (n--) {
        s->buf[s->blen++] = *p++;
        if (s->blen == 64) {
            mg_decl_sha1_block(s->h, s->buf);
            s->blen = 0;
        }
    }
}

static void
mg_decl_sha1_final(mg_decl_sha1_t *s, uint8_t out[20])
{
    uint64_t bits = s->len * 8;
    uint8_t  pad = 0x80, zero = 0, lenb[8];
    int      i;

    mg_decl_sha1_update(s, &pad, 1);
    while (s->blen != 56) {
        mg_decl_sha1_update(s, &zero, 1);
    }
    for (i = 0; i < 8; i++) {
        lenb[i] = (uint8_t) (bits >> (56 - 8 * i));
    }
    mg_decl_sha1_update(s, lenb, 8);
    for (i = 0; i < 20; i++) {
        out[i] = (uint8_t) (s->h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

static int
mg_decl_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 8-4-4-4-12 hex digits. */
static int
mg_decl_is_uuid(const char *s, size_t n)
{
    size_t i;

    if (n != 36) {
        return 0;
    }
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (mg_decl_hexval((unsigned char) s[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

/* v5 UUID of name under the namespace ns (a UUID string); out gets 37. */
static void
mg_decl_uuid_v5(const char *ns, const char *name, size_t n, char out[37])
{
    mg_decl_sha1_t s;
    uint8_t        nsb[16], d[20];
    size_t         i, j;

    for (i = 0, j = 0; i < 16; j++) {
        if (ns[j] == '-') continue;
        nsb[i++] = (uint8_t) (mg_decl_hexval(ns[j]) << 4
                              | mg_decl_hexval(ns[j + 1]));
        j++;
    }
    mg_decl_sha1_init(&s);
    mg_decl_sha1_update(&s, nsb, 16);
    mg_decl_sha1_update(&s, name, n);
    mg_decl_sha1_final(&s, d);
    d[6] = (uint8_t) ((d[6] & 0x0f) | 0x50);
    d[8] = (uint8_t) ((d[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
             d[10], d[11], d[12], d[13], d[14], d[15]);
}

/* The root namespace Kong uses for declarative ids. */
#define MG_DECL_UUID_NS "fd02801f-0957-4a15-a55a-c8d9606f30b5"

/* --- scalars -------------------------------------------------------------- */

typedef enum { SK_STR, SK_NULL, SK_TRUE, SK_FALSE, SK_INT, SK_FLOAT } sk_e;

#define NODE(ctx, i) yaml_document_get_node((ctx)->doc, (i))
#define SV(n) ((const char *) (n)->data.scalar.value)
#define SL(n) ((n)->data.scalar.length)

static int
mg_decl_is_json_number(const char *s, size_t n, int *is_float)
{
    size_t i = 0;

    *is_float = 0;
    if (i < n && s[i] == '-') i++;
    if (i == n || !isdigit((unsigned char) s[i])) return 0;
    if (s[i] == '0') {
        i++;
    } else {
        while (i < n && isdigit((unsigned char) s[i])) i++;
    }
    if (i < n && s[i] == '.') {
        *is_float = 1;
        i++;
        if (i == n || !isdigit((unsigned char) s[i])) return 0;
        while (i < n && isdigit((unsigned char) s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        *is_float = 1;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i == n || !isdigit((unsigned char) s[i])) return 0;
        while (i < n && isdigit((unsigned char) s[i])) i++;
    }
    return i == n;
}

/* YAML integers JSON cannot write as they are: "+5", "007". */
static int
mg_decl_is_yaml_int(const char *s, size_t n)
{
    size_t i = 0;

    if (i < n && (s[i] == '-' || s[i] == '+')) i++;
    if (i == n) return 0;
    for (; i < n; i++) {
        if (!isdigit((unsigned char) s[i])) return 0;
    }
    return 1;
}

static sk_e
mg_decl_scalar_kind(yaml_node_t *n)
{
    const char *s = SV(n);
    size_t      l = SL(n);
    int         f;

    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return SK_STR;
    }
    if (l == 0 || (l == 1 && s[0] == '~') || strcmp(s, "null") == 0
        || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
    {
        return SK_NULL;
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0
        || strcmp(s, "TRUE") == 0)
    {
        return SK_TRUE;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0
        || strcmp(s, "FALSE") == 0)
    {
        return SK_FALSE;
    }
    if (mg_decl_is_json_number(s, l, &f)) {
        return f ? SK_FLOAT : SK_INT;
    }
    if (mg_decl_is_yaml_int(s, l)) {
        return SK_INT;
    }
    return SK_STR;
}

static int
mg_decl_is_null(yaml_node_t *n)
{
    return n == NULL
           || (n->type == YAML_SCALAR_NODE && mg_decl_scalar_kind(n) == SK_NULL);
}

static const char *
mg_decl_node_what(yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE) return "a record";
    if (n->type == YAML_SEQUENCE_NODE) return "an array";
    switch (mg_decl_scalar_kind(n)) {
    case SK_NULL: return "null";
    case SK_TRUE: case SK_FALSE: return "a boolean";
    case SK_INT: case SK_FLOAT: return "a number";
    default: return "a string";
    }
}

/* Scalar mapping value of key in a mapping node, or NULL. */
static yaml_node_t *
mg_decl_get(mg_decl_ctx_t *ctx, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *p;
    size_t            kl = strlen(key);

    if (map == NULL || map->type != YAML_MAPPING_NODE) {
        return NULL;
    }
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++)
    {
        yaml_node_t *k = NODE(ctx, p->key);

        if (k && k->type == YAML_SCALAR_NODE && SL(k) == kl
            && memcmp(SV(k), key, kl) == 0)
        {
            return NODE(ctx, p->value);
        }
    }
    return NULL;
}

/*
 * The pair walker: yields (key, value) for each pair of a mapping whose key
 * is a string seen for the first time; reports the others.
 */
static int
mg_decl_pair(mg_decl_ctx_t *ctx, yaml_node_t *map, yaml_node_pair_t *p,
             const char *label, const char **k, size_t *kl, yaml_node_t **v)
{
    yaml_node_t      *kn = NODE(ctx, p->key), *on;
    yaml_node_pair_t *q;

    if (kn == NULL || kn->type != YAML_SCALAR_NODE) {
        mg_decl_err(ctx, label, "keys must be strings");
        return 0;
    }
    for (q = map->data.mapping.pairs.start; q < p; q++) {
        on = NODE(ctx, q->key);
        if (on && on->type == YAML_SCALAR_NODE && SL(on) == SL(kn)
            && memcmp(SV(on), SV(kn), SL(kn)) == 0)
        {
            mg_decl_err(ctx, label, "%s: duplicate key", SV(kn));
            return 0;
        }
    }
    *k = SV(kn);
    *kl = SL(kn);
    *v = NODE(ctx, p->value);
    return 1;
}

#define FOR_PAIRS(ctx, map, label, k, kl, v)                                 \
    for (yaml_node_pair_t *p_ = (map)->data.mapping.pairs.start;             \
         p_ < (map)->data.mapping.pairs.top; p_++)                           \
        if (mg_decl_pair((ctx), (map), p_, (label), &(k), &(kl), &(v)))

#define KEY(lit) (kl == sizeof(lit) - 1 && memcmp(k, lit, kl) == 0)

/* --- typed field readers: 1 set, 0 absent/null, -1 error ----------------- */

static int
mg_decl_str(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
            const char *field, mg_str_t *out)
{
    if (mg_decl_is_null(v)) {
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE || mg_decl_scalar_kind(v) != SK_STR) {
        mg_decl_err(ctx, label, "%s: expected a string, got %s", field,
                    mg_decl_node_what(v));
        return -1;
    }
    *out = mg_pool_str(ctx->cf->pool, SV(v), SL(v));
    return 1;
}

static int
mg_decl_int(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
            const char *field, long long min, long long max, long long *out)
{
    long long n;
    char     *end;

    if (mg_decl_is_null(v)) {
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE || mg_decl_scalar_kind(v) != SK_INT) {
        mg_decl_err(ctx, label, "%s: expected an integer, got %s", field,
                    mg_decl_node_what(v));
        return -1;
    }
    errno = 0;
    n = strtoll(SV(v), &end, 10);
    if (errno == ERANGE || n < min || n > max) {
        mg_decl_err(ctx, label, "%s: value should be between %lld and %lld",
                    field, min, max);
        return -1;
    }
    *out = n;
    return 1;
}

static void
mg_decl_int_field(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                  const char *field, long long min, long long max, int *out)
{
    long long n;

    if (mg_decl_int(ctx, v, label, field, min, max, &n) == 1) {
        *out = (int) n;
    }
}

static void
mg_decl_time_field(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                   const char *field, int64_t *out)
{
    long long n;

    if (mg_decl_int(ctx, v, label, field, 0, INT64_MAX, &n) == 1) {
        *out = n;
    }
}

static void
mg_decl_bool(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
             const char *field, int *out)
{
    sk_e kind;

    if (mg_decl_is_null(v)) {
        return;
    }
    kind = v->type == YAML_SCALAR_NODE ? mg_decl_scalar_kind(v) : SK_STR;
    if (v->type != YAML_SCALAR_NODE || (kind != SK_TRUE && kind != SK_FALSE)) {
        mg_decl_err(ctx, label, "%s: expected a boolean, got %s", field,
                    mg_decl_node_what(v));
        return;
    }
    *out = kind == SK_TRUE;
}

static int
mg_decl_one_of(mg_str_t s, const char *const *set)
{
    for (; *set; set++) {
        if (mg_str_eq_lit(s, *set)) {
            return 1;
        }
    }
    return 0;
}

static void
mg_decl_set_list(char *buf, size_t len, const char *const *set)
{
    size_t n = 0;

    buf[0] = '\0';
    for (; *set && n < len; set++) {
        n += (size_t) snprintf(buf + n, len - n, "%s%s", n ? ", " : "", *set);
    }
}

static int
mg_decl_enum(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
             const char *field, const char *const *set, mg_str_t *out)
{
    mg_str_t s;
    char     list[512];
    int      rc = mg_decl_str(ctx, v, label, field, &s);

    if (rc != 1) {
        return rc;
    }
    if (!mg_decl_one_of(s, set)) {
        mg_decl_set_list(list, sizeof(list), set);
        mg_decl_err(ctx, label, "%s: expected one of: %s", field, list);
        return -1;
    }
    *out = s;
    return 1;
}

/* An array of strings; checker (may be NULL) validates each element. */
typedef const char *(*mg_decl_check_pt)(mg_decl_ctx_t *ctx, mg_str_t s,
                                        const char *label, const char *field);

static int
mg_decl_str_array(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                  const char *field, mg_decl_check_pt check,
                  mg_str_array_t *out)
{
    yaml_node_item_t *it;
    size_t            n, i = 0;
    char              f[128];
    int               bad = 0;

    if (mg_decl_is_null(v)) {
        return 0;
    }
    if (v->type != YAML_SEQUENCE_NODE) {
        mg_decl_err(ctx, label, "%s: expected an array, got %s", field,
                    mg_decl_node_what(v));
        return -1;
    }
    n = (size_t) (v->data.sequence.items.top - v->data.sequence.items.start);
    out->elts = n ? mg_pool_calloc(ctx->cf->pool, n * sizeof(mg_str_t)) : NULL;
    out->n = 0;
    for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++, i++)
    {
        yaml_node_t *e = NODE(ctx, *it);
        mg_str_t     s;
        const char  *why;

        snprintf(f, sizeof(f), "%s[%zu]", field, i);
        if (e == NULL || e->type != YAML_SCALAR_NODE
            || mg_decl_scalar_kind(e) != SK_STR)
        {
            mg_decl_err(ctx, label, "%s: expected a string, got %s", f,
                        e ? mg_decl_node_what(e) : "nothing");
            bad = 1;
            continue;
        }
        s = mg_pool_str(ctx->cf->pool, SV(e), SL(e));
        if (check && (why = check(ctx, s, label, f)) != NULL) {
            if (*why) {
                mg_decl_err(ctx, label, "%s: %s", f, why);
            }
            bad = 1;
            continue;
        }
        out->elts[out->n++] = s;
    }
    return bad ? -1 : 1;
}

/* --- checkers ------------------------------------------------------------- */

static const char *
mg_decl_check_tag(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                  const char *f)
{
    size_t i;

    (void) ctx; (void) l; (void) f;
    if (s.len == 0) {
        return "tags must not be empty";
    }
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char) s.data[i];

        if (c == ',' || c == '/' || c < 0x20 || c == 0x7f) {
            return "invalid tag: expected printable characters except "
                   "',' and '/'";
        }
    }
    return NULL;
}

static const char *
mg_decl_check_uuid(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                   const char *f)
{
    (void) ctx; (void) l; (void) f;
    return mg_decl_is_uuid(s.data, s.len) ? NULL : "expected a valid UUID";
}

/* Kong's utf8_name: letters, digits, '.', '-', '_', '~', any UTF-8. */
static const char *
mg_decl_check_name(mg_str_t s)
{
    size_t i;

    if (s.len == 0) {
        return "length must be at least 1";
    }
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char) s.data[i];

        if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == '~'
              || c >= 0x80))
        {
            return "invalid value: it must only contain alphanumeric and "
                   "'., -, _, ~' characters";
        }
    }
    return NULL;
}

#define MG_HOST_WILDCARD 1
#define MG_HOST_PORT     2

/*
 * Hostname, IPv4 or IPv6 (bracketed when a port follows); with flags, a
 * ":port" suffix and one '*' as the leftmost or rightmost label.  Returns
 * NULL when valid, else Kong's wording of the problem.
 */
static const char *
mg_decl_check_host(const char *s, size_t n, int flags)
{
    char         host[256];
    const char  *end = s + n, *colon = NULL, *p, *label;
    size_t       hn, nstar = 0;
    unsigned char addr[16];

    if (n == 0) {
        return "invalid hostname: empty";
    }
    if (s[0] == '[') {
        p = memchr(s, ']', n);
        if (p == NULL) {
            return "invalid value: missing ']'";
        }
        hn = (size_t) (p - s - 1);
        if (p + 1 < end) {
            if (p[1] != ':') {
                return "invalid value: unexpected characters after ']'";
            }
            colon = p + 1;
        }
        if (hn >= sizeof(host)) {
            return "invalid hostname: too long";
        }
        memcpy(host, s + 1, hn);
        host[hn] = '\0';
        if (inet_pton(AF_INET6, host, addr) != 1) {
            return "invalid value: not an IPv6 address";
        }
    } else {
        p = memchr(s, ':', n);
        if (p && memchr(p + 1, ':', (size_t) (end - p - 1))) {
            /* bare IPv6 */
            if (n >= sizeof(host)) return "invalid hostname: too long";
            memcpy(host, s, n);
            host[n] = '\0';
            return inet_pton(AF_INET6, host, addr) == 1
                   ? NULL : "invalid value: not an IPv6 address";
        }
        colon = p;
        hn = colon ? (size_t) (colon - s) : n;
        if (hn == 0 || hn > 253) {
            return "invalid hostname: length must be between 1 and 253";
        }
        memcpy(host, s, hn);
        host[hn] = '\0';
        if (inet_pton(AF_INET, host, addr) != 1) {
            for (label = host, p = host;; p++) {
                if (*p == '.' || *p == '\0') {
                    size_t ll = (size_t) (p - label);

                    if (ll == 0 || ll > 63) {
                        return "invalid hostname: empty or too long label";
                    }
                    if (ll == 1 && *label == '*') {
                        if (!(flags & MG_HOST_WILDCARD)) {
                            return "invalid hostname: wildcards are not "
                                   "allowed here";
                        }
                        if (label != host && *p != '\0') {
                            return "invalid wildcard: must be placed at "
                                   "leftmost or rightmost label";
                        }
                        nstar++;
                    }
                    if (*p == '\0') break;
                    label = p + 1;
                } else if (*p == '*') {
                    if (!(flags & MG_HOST_WILDCARD)) {
                        return "invalid hostname: wildcards are not allowed "
                               "here";
                    }
                    if (!((p == label && (p[1] == '.' || p[1] == '\0')))) {
                        return "invalid wildcard: must be placed at "
                               "leftmost or rightmost label";
                    }
                } else if (!(isalnum((unsigned char) *p) || *p == '-'
                             || *p == '_'))
                {
                    return "invalid hostname: only letters, digits, '-', "
                           "'_' and '.' are allowed";
                }
            }
            if (nstar > 1) {
                return "invalid wildcard: must have at most one wildcard";
            }
            if (nstar == 1 && strchr(host, '.') == NULL) {
                return "invalid wildcard: must have at least one dot";
            }
        }
    }
    if (colon) {
        long long port;
        char      pb[8], *e;
        size_t    pl = (size_t) (end - colon - 1);

        if (!(flags & MG_HOST_PORT)) {
            return "must not have a port";
        }
        if (pl == 0 || pl >= sizeof(pb)) {
            return "invalid port number";
        }
        memcpy(pb, colon + 1, pl);
        pb[pl] = '\0';
        port = strtoll(pb, &e, 10);
        if (*e != '\0' || port < 0 || port > 65535) {
            return "invalid port number";
        }
    }
    return NULL;
}

static const char *
mg_decl_check_route_host(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                         const char *f)
{
    (void) ctx; (void) l; (void) f;
    return mg_decl_check_host(s.data, s.len, MG_HOST_WILDCARD | MG_HOST_PORT);
}

static const char *
mg_decl_check_sni(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                  const char *f)
{
    unsigned char addr[16];
    char          buf[64];

    (void) ctx; (void) l; (void) f;
    if (s.len < sizeof(buf)) {
        memcpy(buf, s.data, s.len);
        buf[s.len] = '\0';
        if (inet_pton(AF_INET, buf, addr) == 1
            || inet_pton(AF_INET6, buf, addr) == 1)
        {
            return "must not be an IP";
        }
    }
    return mg_decl_check_host(s.data, s.len, MG_HOST_WILDCARD);
}

static const char *
mg_decl_check_method(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                     const char *f)
{
    size_t i;

    (void) ctx; (void) l; (void) f;
    for (i = 0; i < s.len; i++) {
        if (!isupper((unsigned char) s.data[i])) {
            return "invalid value: methods must be uppercase letters";
        }
    }
    return s.len ? NULL : "invalid value: empty method";
}

/* Compile a regex to check it; reports and returns "" (already said). */
static const char *
mg_decl_check_regex(mg_decl_ctx_t *ctx, const char *re, size_t n,
                    const char *label, const char *field, const char *whole)
{
    pcre2_code *code;
    int         errcode;
    PCRE2_SIZE  erroff;
    PCRE2_UCHAR msg[256];

    code = pcre2_compile((PCRE2_SPTR) re, n, PCRE2_UTF, &errcode, &erroff,
                         NULL);
    if (code != NULL) {
        pcre2_code_free(code);
        return NULL;
    }
    pcre2_get_error_message(errcode, msg, sizeof(msg));
    mg_decl_err(ctx, label, "%s: invalid regex: %s (at offset %zu in '%s')",
                field, (const char *) msg, (size_t) erroff, whole);
    return "";
}

static const char *
mg_decl_check_path(mg_decl_ctx_t *ctx, mg_str_t s, const char *label,
                   const char *field)
{
    size_t i;

    if (s.len && s.data[0] == '~') {
        return mg_decl_check_regex(ctx, s.data + 1, s.len - 1, label, field,
                                   s.data);
    }
    if (s.len == 0 || s.data[0] != '/') {
        return "should start with: / (fixed path) or ~/ (regex path)";
    }
    for (i = 0; i < s.len; i++) {
        if (s.data[i] == '%'
            && (i + 2 >= s.len
                || mg_decl_hexval((unsigned char) s.data[i + 1]) < 0
                || mg_decl_hexval((unsigned char) s.data[i + 2]) < 0))
        {
            return "invalid url-encoded value";
        }
    }
    return NULL;
}

static const char *
mg_decl_check_header_value(mg_decl_ctx_t *ctx, mg_str_t s, const char *label,
                           const char *field)
{
    if (s.len >= 2 && s.data[0] == '~' && s.data[1] == '*') {
        return mg_decl_check_regex(ctx, s.data + 2, s.len - 2, label, field,
                                   s.data);
    }
    return NULL;
}

/* --- JSON ---------------------------------------------------------------- */

static void
mg_decl_buf_put(mg_decl_buf_t *b, const char *s, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char  *d;

        while (cap < b->len + n + 1) cap *= 2;
        if (cap > MG_DECL_MAX_FILE || (d = realloc(b->data, cap)) == NULL) {
            b->failed = 1;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

#define PUTS(b, lit) mg_decl_buf_put((b), (lit), sizeof(lit) - 1)

static void
mg_decl_json_string(mg_decl_buf_t *b, const char *s, size_t n)
{
    size_t i, start = 0;
    char   esc[8];

    PUTS(b, "\"");
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) s[i];
        const char   *e = NULL;

        switch (c) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                e = esc;
            }
        }
        if (e) {
            mg_decl_buf_put(b, s + start, i - start);
            mg_decl_buf_put(b, e, strlen(e));
            start = i + 1;
        }
    }
    mg_decl_buf_put(b, s + start, n - start);
    PUTS(b, "\"");
}

static void
mg_decl_json_scalar(mg_decl_buf_t *b, yaml_node_t *n)
{
    char num[32];
    int  f;

    switch (mg_decl_scalar_kind(n)) {
    case SK_NULL: PUTS(b, "null"); return;
    case SK_TRUE: PUTS(b, "true"); return;
    case SK_FALSE: PUTS(b, "false"); return;
    case SK_INT:
    case SK_FLOAT:
        if (mg_decl_is_json_number(SV(n), SL(n), &f)) {
            mg_decl_buf_put(b, SV(n), SL(n));
            return;
        } else {
            /* "+5", "007": write the value JSON's way. */
            char     *end;
            long long v;

            errno = 0;
            v = strtoll(SV(n), &end, 10);
            if (errno == 0 && *end == '\0') {
                snprintf(num, sizeof(num), "%lld", v);
                mg_decl_buf_put(b, num, strlen(num));
                return;
            }
        }
        break;
    default:
        break;
    }
    mg_decl_json_string(b, SV(n), SL(n));
}

/*
 * Encode node (of doc) as compact JSON.  When def (of ddoc) is given and
 * both are records, the result is def with node's values laid over it,
 * recursively: Kong's nested defaults for records such as healthchecks.
 */
static void
mg_decl_json(mg_decl_buf_t *b, yaml_document_t *doc, yaml_node_t *n,
             yaml_document_t *ddoc, yaml_node_t *def, int depth)
{
    yaml_node_pair_t *p, *q;
    yaml_node_item_t *it;
    int               first = 1;

    if (++b->nodes > MG_DECL_MAX_NODES || depth > MG_DECL_MAX_DEPTH) {
        b->failed = 1;
        return;
    }
    if (n == NULL || (def && mg_decl_is_null(n))) {
        n = def;
        doc = ddoc;
        def = NULL;
        if (n == NULL) {
            PUTS(b, "null");
            return;
        }
    }
    switch (n->type) {
    case YAML_SCALAR_NODE:
        mg_decl_json_scalar(b, n);
        break;
    case YAML_SEQUENCE_NODE:
        PUTS(b, "[");
        for (it = n->data.sequence.items.start;
             it < n->data.sequence.items.top; it++)
        {
            if (!first) PUTS(b, ",");
            first = 0;
            mg_decl_json(b, doc, yaml_document_get_node(doc, *it), NULL,
                         NULL, depth + 1);
        }
        PUTS(b, "]");
        break;
    case YAML_MAPPING_NODE:
        PUTS(b, "{");
        if (def && def->type == YAML_MAPPING_NODE) {
            for (q = def->data.mapping.pairs.start;
                 q < def->data.mapping.pairs.top; q++)
            {
                yaml_node_t *dk = yaml_document_get_node(ddoc, q->key);
                yaml_node_t *uv = NULL;

                for (p = n->data.mapping.pairs.start;
                     p < n->data.mapping.pairs.top; p++)
                {
                    yaml_node_t *uk = yaml_document_get_node(doc, p->key);

                    if (uk && uk->type == YAML_SCALAR_NODE
                        && SL(uk) == SL(dk)
                        && memcmp(SV(uk), SV(dk), SL(dk)) == 0)
                    {
                        uv = yaml_document_get_node(doc, p->value);
                        break;
                    }
                }
                if (!first) PUTS(b, ",");
                first = 0;
                mg_decl_json_string(b, SV(dk), SL(dk));
                PUTS(b, ":");
                mg_decl_json(b, doc, uv, ddoc,
                             yaml_document_get_node(ddoc, q->value),
                             depth + 1);
            }
        }
        for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++)
        {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);

            if (k == NULL || k->type != YAML_SCALAR_NODE) {
                b->failed = 1;
                return;
            }
            if (def && def->type == YAML_MAPPING_NODE) {
                int known = 0;

                for (q = def->data.mapping.pairs.start;
                     q < def->data.mapping.pairs.top && !known; q++)
                {
                    yaml_node_t *dk = yaml_document_get_node(ddoc, q->key);

                    known = SL(dk) == SL(k)
                            && memcmp(SV(dk), SV(k), SL(k)) == 0;
                }
                if (known) continue;
            }
            if (!first) PUTS(b, ",");
            first = 0;
            mg_decl_json_string(b, SV(k), SL(k));
            PUTS(b, ":");
            mg_decl_json(b, doc, yaml_document_get_node(doc, p->value),
                         NULL, NULL, depth + 1);
        }
        PUTS(b, "}");
        break;
    default:
        PUTS(b, "null");
    }
}

/* JSON of node into the snapshot's arena; reports and returns 0 on error. */
static int
mg_decl_json_field(mg_decl_ctx_t *ctx, yaml_node_t *n, yaml_document_t *ddoc,
                   yaml_node_t *def, const char *label, const char *field,
                   mg_str_t *out)
{
    mg_decl_buf_t b = { NULL, 0, 0, 0, 0 };

    mg_decl_json(&b, ctx->doc, n, ddoc, def, 0);
    if (b.failed || b.data == NULL) {
        mg_decl_err(ctx, label, "%s: cannot encode as JSON (keys must be "
                    "strings; too deep or too large)", field);
        free(b.data);
        return 0;
    }
    *out = mg_pool_str(ctx->cf->pool, b.data, b.len);
    free(b.data);
    return 1;
}

/* --- entities: shared parts ----------------------------------------------- */

#define MG_DECL_HC_DEFAULTS                                                  \
    "{\"active\":{\"type\":\"http\",\"timeout\":1,\"concurrency\":10,"       \
    "\"http_path\":\"/\",\"https_verify_certificate\":true,"                 \
    "\"https_sni\":null,\"headers\":null,"                                   \
    "\"healthy\":{\"interval\":0,\"http_statuses\":[200,302],"               \
    "\"successes\":0},"                                                      \
    "\"unhealthy\":{\"interval\":0,\"http_statuses\":[429,404,500,501,502,"  \
    "503,504,505],\"tcp_failures\":0,\"timeouts\":0,\"http_failures\":0}},"  \
    "\"passive\":{\"type\":\"http\",\"healthy\":{\"http_statuses\":[200,"    \
    "201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,"   \
    "308],\"successes\":0},\"unhealthy\":{\"http_statuses\":[429,500,503],"  \
    "\"tcp_failures\":0,\"timeouts\":0,\"http_failures\":0}},"               \
    "\"threshold\":0}"

static const char *const mg_decl_protocols[] = {
    "http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp",
    "ws", "wss", NULL
};

static mg_str_t mg_decl_route_protocols_def[] = {
    mg_string("http"), mg_string("https")
};

static mg_str_t mg_decl_plugin_protocols_def[] = {
    mg_string("grpc"), mg_string("grpcs"), mg_string("http"),
    mg_string("https")
};

/* Fields every entity has; returns 1 when k was one of them. */
typedef struct {
    mg_str_t       *id;
    mg_str_array_t *tags;
    int64_t        *created_at;
    int64_t        *updated_at;
} mg_decl_common_t;

static int
mg_decl_common(mg_decl_ctx_t *ctx, const char *k, size_t kl, yaml_node_t *v,
               const char *label, mg_decl_common_t *c)
{
    if (KEY("id")) {
        mg_str_t id;

        if (mg_decl_str(ctx, v, label, "id", &id) == 1) {
            if (!mg_decl_is_uuid(id.data, id.len)) {
                mg_decl_err(ctx, label, "id: expected a valid UUID");
            } else {
                *c->id = id;
            }
        }
        return 1;
    }
    if (KEY("tags")) {
        mg_decl_str_array(ctx, v, label, "tags", mg_decl_check_tag, c->tags);
        return 1;
    }
    if (KEY("created_at")) {
        mg_decl_time_field(ctx, v, label, "created_at", c->created_at);
        return 1;
    }
    if (KEY("updated_at")) {
        int64_t ignored;

        mg_decl_time_field(ctx, v, label, "updated_at",
                           c->updated_at ? c->updated_at : &ignored);
        return 1;
    }
    /* Kong's declarative extras, allowed on every entity. */
    if (KEY("_comment")) {
        mg_str_t s;

        mg_decl_str(ctx, v, label, "_comment", &s);
        return 1;
    }
    if (KEY("_ignore")) {
        if (!mg_decl_is_null(v) && v->type != YAML_SEQUENCE_NODE) {
            mg_decl_err(ctx, label, "_ignore: expected an array");
        }
        return 1;
    }
    return 0;
}

static void
mg_decl_unknown(mg_decl_ctx_t *ctx, const char *label, const char *k)
{
    mg_decl_err(ctx, label, "%s: unknown field", k);
}

/*
 * Give the entity its id (generated from key when none was written) and
 * register it, with its natural key when it has one, for duplicate checks
 * and reference lookups.
 */
static void
mg_decl_register(mg_decl_ctx_t *ctx, int type, void *ent, mg_str_t *id,
                 const char *natural, size_t nlen, const char *label)
{
    char            key[1024], ns[37], uid[37];
    size_t          kl;
    mg_decl_slot_t *s;
    int             twin;

    if (id->len == 0) {
        mg_decl_uuid_v5(MG_DECL_UUID_NS, mg_decl_type_name[type],
                        strlen(mg_decl_type_name[type]), ns);
        for (twin = 1;; twin++) {
            const char *name = natural;
            size_t      nl = nlen;
            char       *twinned;

            if (twin > 1) {
                twinned = mg_pool_alloc(ctx->tmp, nlen + 16);
                if (twinned == NULL) {
                    return;
                }
                memcpy(twinned, natural, nlen);
                nl = nlen + (size_t) snprintf(twinned + nlen, 16, "#%d",
                                              twin);
                name = twinned;
            }
            mg_decl_uuid_v5(ns, name, nl, uid);
            kl = mg_decl_key(key, sizeof(key), type, "id", uid, 36);
            if (mg_decl_map_find(&ctx->map, key, kl) == NULL) {
                break;
            }
        }
        *id = mg_pool_str(ctx->cf->pool, uid, 36);
    }
    kl = mg_decl_key(key, sizeof(key), type, "id", id->data, id->len);
    s = mg_decl_map_add(ctx, key, kl, ent, label);
    if (s != NULL) {
        mg_decl_err(ctx, label, "id: duplicate id '%.*s' (also used by %s)",
                    (int) id->len, id->data, s->label);
    }
}

/* Register a unique name-like field; reports a duplicate. */
static void
mg_decl_unique(mg_decl_ctx_t *ctx, int type, const char *what, mg_str_t v,
               void *ent, const char *label)
{
    char            key[1024];
    size_t          kl;
    mg_decl_slot_t *s;

    if (v.len == 0) {
        return;
    }
    kl = mg_decl_key(key, sizeof(key), type, what, v.data, v.len);
    s = mg_decl_map_add(ctx, key, kl, ent, label);
    if (s != NULL) {
        mg_decl_err(ctx, label, "%s: '%.*s' is already used by %s", what,
                    (int) v.len, v.data, s->label);
    }
}

/*
 * A reference written as "name-or-id", {id: ...} or {name: ...}; recorded
 * for resolution at the end.  keyout gets the text, for generated ids.
 */
static void
mg_decl_ref(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
            const char *field, int type, void **slot, mg_str_t *keyout)
{
    mg_decl_ref_t *r;
    mg_str_t       key = mg_null_string;
    int            by = 0;
    const char    *namekey = type == T_CONSUMER ? "username" : "name";

    if (mg_decl_is_null(v)) {
        return;
    }
    if (v->type == YAML_SCALAR_NODE && mg_decl_scalar_kind(v) == SK_STR) {
        key.data = SV(v);
        key.len = SL(v);
    } else if (v->type == YAML_MAPPING_NODE) {
        const char  *k;
        size_t       kl;
        yaml_node_t *fv;
        char         f[64];

        FOR_PAIRS(ctx, v, label, k, kl, fv) {
            snprintf(f, sizeof(f), "%s.%.*s", field, (int) kl, k);
            if (KEY("id")) {
                if (mg_decl_str(ctx, fv, label, f, &key) == 1) {
                    if (!mg_decl_is_uuid(key.data, key.len)) {
                        mg_decl_err(ctx, label, "%s: expected a valid UUID",
                                    f);
                        return;
                    }
                    by = 1;
                }
            } else if (type != T_CERTIFICATE && type != T_CA_CERTIFICATE
                       && kl == strlen(namekey) && memcmp(k, namekey, kl) == 0)
            {
                if (mg_decl_str(ctx, fv, label, f, &key) == 1) {
                    by = 2;
                }
            } else {
                mg_decl_err(ctx, label, "%s: unknown field", f);
                return;
            }
        }
        if (key.len == 0) {
            mg_decl_err(ctx, label, "%s: expected a record with 'id'%s",
                        field, type == T_CERTIFICATE ? ""
                        : type == T_CONSUMER ? " or 'username'" : " or 'name'");
            return;
        }
    } else {
        mg_decl_err(ctx, label, "%s: expected a string or a record with "
                    "'id', got %s", field, mg_decl_node_what(v));
        return;
    }
    r = mg_pool_calloc(ctx->tmp, sizeof(*r));
    if (r == NULL) {
        return;
    }
    r->type = type;
    r->slot = slot;
    r->key = mg_pool_strndup(ctx->tmp, key.data, key.len);
    r->by = by;
    r->label = label;
    r->field = field;
    mg_decl_vec_push(ctx->tmp, &ctx->refs, r);
    if (keyout) {
        *keyout = key;
    }
}

/* Canonical JSON of a node, for ids of entities without a natural key. */
static char *
mg_decl_content_key(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *parent_id,
                    size_t *len)
{
    mg_decl_buf_t b = { NULL, 0, 0, 0, 0 };
    char         *s;

    mg_decl_json(&b, ctx->doc, n, NULL, NULL, 0);
    if (parent_id) {
        PUTS(&b, "@");
        mg_decl_buf_put(&b, parent_id, strlen(parent_id));
    }
    if (b.failed || b.data == NULL) {
        free(b.data);
        *len = 0;
        return "";
    }
    s = mg_pool_strndup(ctx->tmp, b.data, b.len);
    *len = b.len;
    free(b.data);
    return s ? s : "";
}

static void *
mg_decl_new(mg_decl_ctx_t *ctx, int type, size_t size, const char *label)
{
    void *e = mg_pool_calloc(ctx->cf->pool, size);

    if (e == NULL
        || mg_decl_vec_push(ctx->cf->pool, &ctx->ents[type], e) != MG_OK
        || mg_decl_vec_push(ctx->tmp, &ctx->labels[type], (void *) label)
           != MG_OK)
    {
        mg_decl_err(ctx, label, "out of memory");
        return NULL;
    }
    return e;
}

typedef void (*mg_decl_entity_pt)(mg_decl_ctx_t *ctx, yaml_node_t *n,
                                  const char *label,
                                  const mg_decl_parent_t *parent);

/*
 * Walk an array of entity records: "<prefix><key>[i] (name=x)" labels,
 * each record handed to fn.
 */
static void
mg_decl_each(mg_decl_ctx_t *ctx, yaml_node_t *seq, const char *prefix,
             const char *key, int type, mg_decl_entity_pt fn,
             const mg_decl_parent_t *parent)
{
    yaml_node_item_t *it;
    size_t            i = 0;
    char              buf[512];

    if (mg_decl_is_null(seq)) {
        return;
    }
    if (seq->type != YAML_SEQUENCE_NODE) {
        mg_decl_err(ctx, prefix, "%s: expected an array, got %s", key,
                    mg_decl_node_what(seq));
        return;
    }
    for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++, i++)
    {
        yaml_node_t *n = NODE(ctx, *it), *nk = NULL;
        const char  *what = NULL;
        int          w;

        w = snprintf(buf, sizeof(buf), "%s%s%s[%zu]", prefix ? prefix : "",
                     prefix && *prefix ? "." : "", key, i);
        if (n && n->type == YAML_SCALAR_NODE && type == T_SNI && parent
            && parent->type == T_CERTIFICATE && w > 0
            && (size_t) w < sizeof(buf))
        {
            /* Kong's shorthand: a certificate's snis as plain names. */
            snprintf(buf + w, sizeof(buf) - (size_t) w, " (name=%.*s)",
                     (int) mg_min(SL(n), 64), SV(n));
            fn(ctx, n, mg_pool_strndup(ctx->tmp, buf, strlen(buf)), parent);
            continue;
        }
        if (n == NULL || n->type != YAML_MAPPING_NODE) {
            mg_decl_err(ctx, buf, "expected a record, got %s",
                        n ? mg_decl_node_what(n) : "nothing");
            continue;
        }
        if (type >= 0 && mg_decl_type_key[type]) {
            what = mg_decl_type_key[type];
            nk = mg_decl_get(ctx, n, what);
            if (type == T_CONSUMER && (nk == NULL || mg_decl_is_null(nk))) {
                what = "custom_id";
                nk = mg_decl_get(ctx, n, what);
            }
        }
        if (nk == NULL || nk->type != YAML_SCALAR_NODE || mg_decl_is_null(nk)) {
            what = "id";
            nk = mg_decl_get(ctx, n, what);
        }
        if (nk && nk->type == YAML_SCALAR_NODE && !mg_decl_is_null(nk)
            && w > 0 && (size_t) w < sizeof(buf))
        {
            snprintf(buf + w, sizeof(buf) - (size_t) w, " (%s=%.*s)", what,
                     (int) mg_min(SL(nk), 64), SV(nk));
        }
        fn(ctx, n, mg_pool_strndup(ctx->tmp, buf, strlen(buf)), parent);
    }
}

/* Arrays of records we check for shape only (credentials, vaults). */
static void
mg_decl_records_only(mg_decl_ctx_t *ctx, yaml_node_t *seq, const char *label,
                     const char *key)
{
    yaml_node_item_t *it;
    size_t            i = 0;

    if (mg_decl_is_null(seq)) {
        return;
    }
    if (seq->type != YAML_SEQUENCE_NODE) {
        mg_decl_err(ctx, label, "%s: expected an array, got %s", key,
                    mg_decl_node_what(seq));
        return;
    }
    for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++, i++)
    {
        yaml_node_t *n = NODE(ctx, *it);

        if (n == NULL || n->type != YAML_MAPPING_NODE) {
            mg_decl_err(ctx, label, "%s[%zu]: expected a record, got %s", key,
                        i, n ? mg_decl_node_what(n) : "nothing");
        }
    }
}

static int
mg_decl_is_credential(const char *k, size_t kl)
{
    return KEY("keyauth_credentials") || KEY("basicauth_credentials")
           || KEY("jwt_secrets") || KEY("acls") || KEY("hmacauth_credentials")
           || KEY("oauth2_credentials") || KEY("mtls_auth_credentials");
}

/* --- entities --------------------------------------------------------------- */

static void mg_decl_route(mg_decl_ctx_t *ctx, yaml_node_t *n,
                          const char *label, const mg_decl_parent_t *parent);
static void mg_decl_plugin(mg_decl_ctx_t *ctx, yaml_node_t *n,
                           const char *label, const mg_decl_parent_t *parent);
static void mg_decl_target(mg_decl_ctx_t *ctx, yaml_node_t *n,
                           const char *label, const mg_decl_parent_t *parent);
static void mg_decl_sni(mg_decl_ctx_t *ctx, yaml_node_t *n,
                        const char *label, const mg_decl_parent_t *parent);

static int
mg_decl_default_port(mg_str_t proto)
{
    return mg_str_eq_lit(proto, "https") || mg_str_eq_lit(proto, "grpcs")
           || mg_str_eq_lit(proto, "wss") || mg_str_eq_lit(proto, "tls")
           ? 443 : 80;
}

/*
 * Service `url` shorthand: scheme://host[:port][/path].  Fills the four
 * fields; returns 0 with why set when malformed.
 */
static int
mg_decl_parse_url(mg_decl_ctx_t *ctx, mg_str_t url, mg_str_t *proto,
                  mg_str_t *host, int *port, mg_str_t *path, const char **why)
{
    const char *s = url.data, *end = url.data + url.len, *p, *h, *he, *pe;
    mg_str_t    scheme;
    long long   n;

    p = strstr(s, "://");
    if (p == NULL || p == s) {
        *why = "missing scheme (expected e.g. http://host:port/path)";
        return 0;
    }
    scheme.data = s;
    scheme.len = (size_t) (p - s);
    if (!mg_decl_one_of(scheme, mg_decl_protocols)) {
        *why = "unsupported scheme";
        return 0;
    }
    h = p + 3;
    for (pe = h; pe < end && *pe != '/' && *pe != '?' && *pe != '#'; pe++) {}
    if (memchr(h, '@', (size_t) (pe - h))) {
        *why = "credentials in the url are not supported";
        return 0;
    }
    if (pe < end && *pe != '/') {
        *why = "query strings and fragments are not supported";
        return 0;
    }
    *port = -1;
    he = pe;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t) (pe - h));

        if (rb == NULL) {
            *why = "invalid host";
            return 0;
        }
        he = rb + 1;
    } else {
        const char *c = memchr(h, ':', (size_t) (pe - h));

        if (c) he = c;
    }
    if (he < pe) {
        char  pb[8], *e;
        size_t pl = (size_t) (pe - he - 1);

        if (*he != ':' || pl == 0 || pl >= sizeof(pb)) {
            *why = "invalid port";
            return 0;
        }
        memcpy(pb, he + 1, pl);
        pb[pl] = '\0';
        n = strtoll(pb, &e, 10);
        if (*e || n < 0 || n > 65535) {
            *why = "invalid port";
            return 0;
        }
        *port = (int) n;
    }
    if (he == h) {
        *why = "missing host";
        return 0;
    }
    *proto = mg_pool_str(ctx->cf->pool, scheme.data, scheme.len);
    if (*h == '[') {
        *host = mg_pool_str(ctx->cf->pool, h + 1, (size_t) (he - h - 2));
    } else {
        *host = mg_pool_str(ctx->cf->pool, h, (size_t) (he - h));
    }
    if (pe < end) {
        *path = mg_pool_str(ctx->cf->pool, pe, (size_t) (end - pe));
    } else {
        path->data = NULL;
        path->len = 0;
    }
    return 1;
}

static void
mg_decl_service(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                const mg_decl_parent_t *parent)
{
    mg_service_t    *s;
    const char      *k;
    size_t           kl;
    yaml_node_t     *v, *url = NULL, *routes = NULL, *plugins = NULL;
    int              port = -1;
    long long        ll;
    mg_decl_common_t c;
    mg_decl_parent_t me;

    (void) parent;
    s = mg_decl_new(ctx, T_SERVICE, sizeof(*s), label);
    if (s == NULL) return;
    mg_str_set(&s->protocol, "http");
    s->retries = 5;
    s->connect_timeout = s->write_timeout = s->read_timeout = 60000;
    s->enabled = 1;
    s->tls_verify = -1;
    s->tls_verify_depth = -1;
    s->created_at = s->updated_at = ctx->now;
    c = (mg_decl_common_t) { &s->id, &s->tags, &s->created_at, &s->updated_at };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("name")) {
            if (mg_decl_str(ctx, v, label, "name", &s->name) == 1) {
                const char *why = mg_decl_check_name(s->name);

                if (why) mg_decl_err(ctx, label, "name: %s", why);
            }
        } else if (KEY("protocol")) {
            mg_decl_enum(ctx, v, label, "protocol", mg_decl_protocols,
                         &s->protocol);
        } else if (KEY("host")) {
            if (mg_decl_str(ctx, v, label, "host", &s->host) == 1) {
                const char *why = mg_decl_check_host(s->host.data,
                                                     s->host.len, 0);

                if (why) mg_decl_err(ctx, label, "host: %s", why);
            }
        } else if (KEY("port")) {
            if (mg_decl_int(ctx, v, label, "port", 0, 65535, &ll) == 1) {
                port = (int) ll;
            }
        } else if (KEY("path")) {
            if (mg_decl_str(ctx, v, label, "path", &s->path) == 1
                && (s->path.len == 0 || s->path.data[0] != '/'))
            {
                mg_decl_err(ctx, label, "path: should start with: /");
            }
        } else if (KEY("retries")) {
            mg_decl_int_field(ctx, v, label, "retries", 0, 32767, &s->retries);
        } else if (KEY("connect_timeout")) {
            mg_decl_int_field(ctx, v, label, "connect_timeout", 1,
                              MG_DECL_TIMEOUT_MAX, &s->connect_timeout);
        } else if (KEY("write_timeout")) {
            mg_decl_int_field(ctx, v, label, "write_timeout", 1,
                              MG_DECL_TIMEOUT_MAX, &s->write_timeout);
        } else if (KEY("read_timeout")) {
            mg_decl_int_field(ctx, v, label, "read_timeout", 1,
                              MG_DECL_TIMEOUT_MAX, &s->read_timeout);
        } else if (KEY("enabled")) {
            mg_decl_bool(ctx, v, label, "enabled", &s->enabled);
        } else if (KEY("tls_verify")) {
            mg_decl_bool(ctx, v, label, "tls_verify", &s->tls_verify);
        } else if (KEY("tls_verify_depth")) {
            mg_decl_int_field(ctx, v, label, "tls_verify_depth", 0, 64,
                              &s->tls_verify_depth);
        } else if (KEY("ca_certificates")) {
            mg_decl_str_array(ctx, v, label, "ca_certificates",
                              mg_decl_check_uuid, &s->ca_certificates);
        } else if (KEY("client_certificate")) {
            mg_str_t key = mg_null_string;

            mg_decl_ref(ctx, v, label, "client_certificate", T_CERTIFICATE,
                        NULL, &key);
            s->client_certificate = mg_pool_str(ctx->cf->pool, key.data,
                                                key.len);
        } else if (KEY("url")) {
            url = v;
        } else if (KEY("routes")) {
            routes = v;
        } else if (KEY("plugins")) {
            plugins = v;
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }

    if (!mg_decl_is_null(url)) {
        mg_str_t    u, proto, host, path;
        int         uport;
        const char *why = NULL;

        if (mg_decl_str(ctx, url, label, "url", &u) == 1) {
            if (!mg_decl_parse_url(ctx, u, &proto, &host, &uport, &path,
                                   &why))
            {
                mg_decl_err(ctx, label, "url: invalid url '%s': %s", SV(url),
                            why);
            } else {
                yaml_node_t *ep = mg_decl_get(ctx, n, "protocol");

                if (!mg_decl_is_null(ep) && !mg_str_eq(proto, s->protocol)) {
                    mg_decl_err(ctx, label, "url: conflicts with 'protocol'");
                }
                if (s->host.len && !mg_str_eq(host, s->host)) {
                    mg_decl_err(ctx, label, "url: conflicts with 'host'");
                }
                if (port >= 0 && uport >= 0 && port != uport) {
                    mg_decl_err(ctx, label, "url: conflicts with 'port'");
                }
                if (s->path.len && !mg_str_eq(path, s->path)) {
                    mg_decl_err(ctx, label, "url: conflicts with 'path'");
                }
                s->protocol = proto;
                s->host = host;
                if (uport >= 0) port = uport;
                if (path.len) s->path = path;
                if (host.len && mg_decl_check_host(host.data, host.len, 0)) {
                    mg_decl_err(ctx, label, "url: invalid host '%.*s'",
                                (int) host.len, host.data);
                }
            }
        }
    }
    if (s->host.len == 0) {
        mg_decl_err(ctx, label, "host: required field missing");
    }
    s->port = (uint16_t) (port >= 0 ? port : mg_decl_default_port(s->protocol));
    if (s->path.len && !mg_str_eq_lit(s->protocol, "http")
        && !mg_str_eq_lit(s->protocol, "https"))
    {
        mg_decl_err(ctx, label,
                    "path: value must be null when 'protocol' is not "
                    "'http' or 'https'");
    }
    mg_decl_unique(ctx, T_SERVICE, "name", s->name, s, label);
    if (s->name.len) {
        mg_decl_register(ctx, T_SERVICE, s, &s->id, s->name.data, s->name.len,
                         label);
    } else {
        size_t      cl;
        const char *ck = mg_decl_content_key(ctx, n, NULL, &cl);

        mg_decl_register(ctx, T_SERVICE, s, &s->id, ck, cl, label);
    }

    me.type = T_SERVICE;
    me.ptr = s;
    me.id = mg_pool_strndup(ctx->tmp, s->id.data, s->id.len);
    mg_decl_each(ctx, routes, label, "routes", T_ROUTE, mg_decl_route, &me);
    mg_decl_each(ctx, plugins, label, "plugins", T_PLUGIN, mg_decl_plugin, &me);
}

static int
mg_decl_has(const mg_str_array_t *a, const char *lit)
{
    size_t i;

    for (i = 0; i < a->n; i++) {
        if (mg_str_eq_lit(a->elts[i], lit)) return 1;
    }
    return 0;
}

static void
mg_decl_route_headers(mg_decl_ctx_t *ctx, mg_route_t *r, yaml_node_t *v,
                      const char *label)
{
    const char *k;
    size_t      kl, i = 0, n;
    yaml_node_t *hv;
    char         f[300];

    if (mg_decl_is_null(v)) {
        return;
    }
    if (v->type != YAML_MAPPING_NODE) {
        mg_decl_err(ctx, label, "headers: expected a map, got %s",
                    mg_decl_node_what(v));
        return;
    }
    n = (size_t) (v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    r->headers = mg_pool_calloc(ctx->cf->pool,
                                mg_max(n, 1) * sizeof(mg_route_header_t));
    if (r->headers == NULL) return;
    FOR_PAIRS(ctx, v, label, k, kl, hv) {
        mg_route_header_t *h = &r->headers[i];
        mg_str_t           name = { k, kl };

        snprintf(f, sizeof(f), "headers.%.*s", (int) mg_min(kl, 200), k);
        if (mg_str_caseeq_lit(name, "host")) {
            mg_decl_err(ctx, label, "headers: cannot contain 'host' header, "
                        "which must be specified in the 'hosts' attribute");
            continue;
        }
        if (kl == 0) {
            mg_decl_err(ctx, label, "headers: header names must not be empty");
            continue;
        }
        h->name = mg_pool_str(ctx->cf->pool, k, kl);
        if (hv && hv->type == YAML_SCALAR_NODE
            && mg_decl_scalar_kind(hv) == SK_STR)
        {
            /* A single value is taken as a one-element array. */
            h->values.elts = mg_pool_alloc(ctx->cf->pool, sizeof(mg_str_t));
            if (h->values.elts == NULL) continue;
            h->values.elts[0] = mg_pool_str(ctx->cf->pool, SV(hv), SL(hv));
            h->values.n = 1;
            if (mg_decl_check_header_value(ctx, h->values.elts[0], label, f)) {
                continue;
            }
        } else if (mg_decl_str_array(ctx, hv, label, f,
                                     mg_decl_check_header_value, &h->values)
                   != 1)
        {
            if (mg_decl_is_null(hv)) {
                mg_decl_err(ctx, label, "%s: expected an array of strings",
                            f);
            }
            continue;
        } else if (h->values.n == 0) {
            mg_decl_err(ctx, label, "%s: length must be at least 1", f);
            continue;
        }
        i++;
    }
    r->nheaders = i;
}

/* Kong's rule: an http route must be able to match on something. */
static void
mg_decl_route_check(mg_decl_ctx_t *ctx, mg_route_t *r, const char *label,
                    int has_sources)
{
    int http = mg_decl_has(&r->protocols, "http")
               || mg_decl_has(&r->protocols, "ws");
    int https = mg_decl_has(&r->protocols, "https")
                || mg_decl_has(&r->protocols, "wss");
    int grpc = mg_decl_has(&r->protocols, "grpc");
    int grpcs = mg_decl_has(&r->protocols, "grpcs");
    int stream = mg_decl_has(&r->protocols, "tcp")
                 || mg_decl_has(&r->protocols, "tls")
                 || mg_decl_has(&r->protocols, "udp")
                 || mg_decl_has(&r->protocols, "tls_passthrough");
    int common = r->hosts.n || r->paths.n || r->nheaders;

    if (r->snis.n && !(https || grpcs || mg_decl_has(&r->protocols, "tls")
                       || mg_decl_has(&r->protocols, "tls_passthrough")))
    {
        mg_decl_err(ctx, label, "snis: can only be set when 'protocols' is "
                    "'grpcs', 'https', 'tls' or 'tls_passthrough'");
    }
    if ((http || https) && stream) {
        mg_decl_err(ctx, label, "protocols: cannot mix http and stream "
                    "protocols");
        return;
    }
    if (http && !(common || r->methods.n)) {
        mg_decl_err(ctx, label, "must set one of 'methods', 'hosts', "
                    "'headers', 'paths' when 'protocols' is 'http'");
    } else if (https && !(common || r->methods.n || r->snis.n)) {
        mg_decl_err(ctx, label, "must set one of 'methods', 'hosts', "
                    "'headers', 'paths', 'snis' when 'protocols' is 'https'");
    } else if (grpc && !common) {
        mg_decl_err(ctx, label, "must set one of 'hosts', 'headers', 'paths' "
                    "when 'protocols' is 'grpc'");
    } else if (grpcs && !(common || r->snis.n)) {
        mg_decl_err(ctx, label, "must set one of 'hosts', 'headers', "
                    "'paths', 'snis' when 'protocols' is 'grpcs'");
    } else if (stream && !(has_sources || r->snis.n)) {
        mg_decl_err(ctx, label, "must set one of 'sources', 'destinations', "
                    "'snis' when 'protocols' is a stream protocol");
    }
}

static void
mg_decl_route(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
              const mg_decl_parent_t *parent)
{
    mg_route_t      *r;
    const char      *k;
    size_t           kl;
    yaml_node_t     *v, *plugins = NULL;
    mg_decl_common_t c;
    mg_decl_parent_t me;
    mg_str_t         svc_key = mg_null_string;
    int              has_sources = 0;
    long long        ll;
    static const char *const path_handling[] = { "v0", "v1", NULL };

    r = mg_decl_new(ctx, T_ROUTE, sizeof(*r), label);
    if (r == NULL) return;
    r->index = ctx->ents[T_ROUTE].n - 1;
    r->protocols.elts = mg_decl_route_protocols_def;
    r->protocols.n = mg_nelems(mg_decl_route_protocols_def);
    r->https_redirect_status_code = 426;
    r->strip_path = 1;
    r->request_buffering = r->response_buffering = 1;
    mg_str_set(&r->path_handling, "v0");
    r->created_at = r->updated_at = ctx->now;
    if (parent && parent->type == T_SERVICE) {
        r->service = parent->ptr;
    }
    c = (mg_decl_common_t) { &r->id, &r->tags, &r->created_at, &r->updated_at };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("name")) {
            if (mg_decl_str(ctx, v, label, "name", &r->name) == 1) {
                const char *why = mg_decl_check_name(r->name);

                if (why) mg_decl_err(ctx, label, "name: %s", why);
            }
        } else if (KEY("protocols")) {
            mg_str_array_t a;

            if (mg_decl_str_array(ctx, v, label, "protocols", NULL, &a) == 1) {
                size_t i;
                char   list[256];

                for (i = 0; i < a.n; i++) {
                    if (!mg_decl_one_of(a.elts[i], mg_decl_protocols)) {
                        mg_decl_set_list(list, sizeof(list),
                                         mg_decl_protocols);
                        mg_decl_err(ctx, label, "protocols[%zu]: expected "
                                    "one of: %s", i, list);
                    }
                }
                if (a.n == 0) {
                    mg_decl_err(ctx, label, "protocols: length must be at "
                                "least 1");
                } else {
                    r->protocols = a;
                }
            }
        } else if (KEY("methods")) {
            mg_decl_str_array(ctx, v, label, "methods", mg_decl_check_method,
                              &r->methods);
        } else if (KEY("hosts")) {
            mg_decl_str_array(ctx, v, label, "hosts", mg_decl_check_route_host,
                              &r->hosts);
        } else if (KEY("paths")) {
            mg_decl_str_array(ctx, v, label, "paths", mg_decl_check_path,
                              &r->paths);
        } else if (KEY("headers")) {
            mg_decl_route_headers(ctx, r, v, label);
        } else if (KEY("snis")) {
            mg_decl_str_array(ctx, v, label, "snis", mg_decl_check_sni,
                              &r->snis);
        } else if (KEY("sources") || KEY("destinations")) {
            /*
             * Stream routing (tcp/tls/udp) is not served yet: the fields
             * are checked for shape so Kong files load, and not kept.
             */
            mg_decl_records_only(ctx, v, label, k);
            has_sources |= !mg_decl_is_null(v);
        } else if (KEY("https_redirect_status_code")) {
            if (mg_decl_int(ctx, v, label, "https_redirect_status_code", 0,
                            999, &ll) == 1)
            {
                if (ll != 426 && ll != 301 && ll != 302 && ll != 307
                    && ll != 308)
                {
                    mg_decl_err(ctx, label, "https_redirect_status_code: "
                                "expected one of: 426, 301, 302, 307, 308");
                } else {
                    r->https_redirect_status_code = (int) ll;
                }
            }
        } else if (KEY("regex_priority")) {
            mg_decl_int_field(ctx, v, label, "regex_priority", INT_MIN,
                              INT_MAX, &r->regex_priority);
        } else if (KEY("strip_path")) {
            mg_decl_bool(ctx, v, label, "strip_path", &r->strip_path);
        } else if (KEY("preserve_host")) {
            mg_decl_bool(ctx, v, label, "preserve_host", &r->preserve_host);
        } else if (KEY("request_buffering")) {
            mg_decl_bool(ctx, v, label, "request_buffering",
                         &r->request_buffering);
        } else if (KEY("response_buffering")) {
            mg_decl_bool(ctx, v, label, "response_buffering",
                         &r->response_buffering);
        } else if (KEY("path_handling")) {
            mg_decl_enum(ctx, v, label, "path_handling", path_handling,
                         &r->path_handling);
        } else if (KEY("service")) {
            if (parent && parent->type == T_SERVICE) {
                if (!mg_decl_is_null(v)) {
                    mg_decl_err(ctx, label, "service: cannot be set on a "
                                "nested route (it takes its parent's)");
                }
            } else {
                mg_decl_ref(ctx, v, label, "service", T_SERVICE,
                            (void **) &r->service, &svc_key);
            }
        } else if (KEY("plugins")) {
            plugins = v;
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    mg_decl_route_check(ctx, r, label, has_sources);
    mg_decl_unique(ctx, T_ROUTE, "name", r->name, r, label);
    if (r->name.len) {
        mg_decl_register(ctx, T_ROUTE, r, &r->id, r->name.data, r->name.len,
                         label);
    } else {
        size_t      cl;
        const char *pid = parent && parent->type == T_SERVICE ? parent->id
                          : svc_key.len ? mg_pool_strndup(ctx->tmp,
                                                          svc_key.data,
                                                          svc_key.len)
                          : NULL;
        const char *ck = mg_decl_content_key(ctx, n, pid, &cl);

        mg_decl_register(ctx, T_ROUTE, r, &r->id, ck, cl, label);
    }
    me.type = T_ROUTE;
    me.ptr = r;
    me.id = mg_pool_strndup(ctx->tmp, r->id.data, r->id.len);
    mg_decl_each(ctx, plugins, label, "plugins", T_PLUGIN, mg_decl_plugin, &me);
}

static void
mg_decl_upstream(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                 const mg_decl_parent_t *parent)
{
    mg_upstream_t   *u;
    const char      *k;
    size_t           kl;
    yaml_node_t     *v, *targets = NULL, *hc = NULL;
    mg_decl_common_t c;
    mg_decl_parent_t me;
    int              slots = 10000, ignored;
    static const char *const algorithms[] = {
        "round-robin", "consistent-hashing", "least-connections", "latency",
        NULL
    };
    static const char *const hash_on[] = {
        "none", "consumer", "ip", "header", "cookie", "path", "query_arg",
        "uri_capture", NULL
    };

    (void) parent;
    u = mg_decl_new(ctx, T_UPSTREAM, sizeof(*u), label);
    if (u == NULL) return;
    mg_str_set(&u->algorithm, "round-robin");
    mg_str_set(&u->hash_on, "none");
    mg_str_set(&u->hash_fallback, "none");
    mg_str_set(&u->hash_on_cookie_path, "/");
    u->created_at = ctx->now;
    c = (mg_decl_common_t) { &u->id, &u->tags, &u->created_at, NULL };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("name")) {
            if (mg_decl_str(ctx, v, label, "name", &u->name) == 1) {
                const char *why = mg_decl_check_host(u->name.data,
                                                     u->name.len, 0);

                if (why) {
                    mg_decl_err(ctx, label, "name: Invalid name ('%.*s'); "
                                "must be a valid hostname", (int) u->name.len,
                                u->name.data);
                }
            }
        } else if (KEY("algorithm")) {
            mg_decl_enum(ctx, v, label, "algorithm", algorithms,
                         &u->algorithm);
        } else if (KEY("slots")) {
            mg_decl_int_field(ctx, v, label, "slots", 10, 65536, &slots);
        } else if (KEY("hash_on")) {
            mg_decl_enum(ctx, v, label, "hash_on", hash_on, &u->hash_on);
        } else if (KEY("hash_fallback")) {
            mg_decl_enum(ctx, v, label, "hash_fallback", hash_on,
                         &u->hash_fallback);
        } else if (KEY("hash_on_header")) {
            mg_decl_str(ctx, v, label, "hash_on_header", &u->hash_on_header);
        } else if (KEY("hash_fallback_header")) {
            mg_decl_str(ctx, v, label, "hash_fallback_header",
                        &u->hash_fallback_header);
        } else if (KEY("hash_on_cookie")) {
            mg_decl_str(ctx, v, label, "hash_on_cookie", &u->hash_on_cookie);
        } else if (KEY("hash_on_cookie_path")) {
            if (mg_decl_str(ctx, v, label, "hash_on_cookie_path",
                            &u->hash_on_cookie_path) == 1
                && (u->hash_on_cookie_path.len == 0
                    || u->hash_on_cookie_path.data[0] != '/'))
            {
                mg_decl_err(ctx, label, "hash_on_cookie_path: should start "
                            "with: /");
            }
        } else if (KEY("hash_on_query_arg")) {
            mg_decl_str(ctx, v, label, "hash_on_query_arg",
                        &u->hash_on_query_arg);
        } else if (KEY("hash_fallback_query_arg")) {
            mg_decl_str(ctx, v, label, "hash_fallback_query_arg",
                        &u->hash_fallback_query_arg);
        } else if (KEY("hash_on_uri_capture")) {
            mg_decl_str(ctx, v, label, "hash_on_uri_capture",
                        &u->hash_on_uri_capture);
        } else if (KEY("hash_fallback_uri_capture")) {
            mg_decl_str(ctx, v, label, "hash_fallback_uri_capture",
                        &u->hash_fallback_uri_capture);
        } else if (KEY("host_header")) {
            if (mg_decl_str(ctx, v, label, "host_header", &u->host_header) == 1
                && mg_decl_check_host(u->host_header.data,
                                      u->host_header.len, 0))
            {
                mg_decl_err(ctx, label, "host_header: invalid hostname");
            }
        } else if (KEY("healthchecks")) {
            hc = v;
        } else if (KEY("client_certificate")) {
            /* Kept by Kong; mTLS to targets is not implemented yet. */
            mg_decl_ref(ctx, v, label, "client_certificate", T_CERTIFICATE,
                        NULL, NULL);
        } else if (KEY("use_srv_name")) {
            mg_decl_bool(ctx, v, label, "use_srv_name", &ignored);
        } else if (KEY("targets")) {
            targets = v;
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    u->slots = slots;
    if (u->name.len == 0) {
        mg_decl_err(ctx, label, "name: required field missing");
    }

    /* Kong's hash checks: each hash source needs its parameter. */
#define NEED(on, what, field)                                                \
    if ((mg_str_eq_lit(u->hash_on, what) && (on))                            \
        && u->field.len == 0)                                                \
        mg_decl_err(ctx, label, #field ": required when 'hash_on' is '"      \
                    what "'")
#define NEED_FB(what, field)                                                 \
    if (mg_str_eq_lit(u->hash_fallback, what) && u->field.len == 0)          \
        mg_decl_err(ctx, label, #field ": required when 'hash_fallback' is '" \
                    what "'")
    NEED(1, "header", hash_on_header);
    NEED(1, "cookie", hash_on_cookie);
    NEED(1, "query_arg", hash_on_query_arg);
    NEED(1, "uri_capture", hash_on_uri_capture);
    NEED_FB("header", hash_fallback_header);
    NEED_FB("cookie", hash_on_cookie);
    NEED_FB("query_arg", hash_fallback_query_arg);
    NEED_FB("uri_capture", hash_fallback_uri_capture);
#undef NEED
#undef NEED_FB
    if (!mg_str_eq_lit(u->hash_fallback, "none")
        && (mg_str_eq_lit(u->hash_on, "none")
            || mg_str_eq_lit(u->hash_on, "cookie")))
    {
        mg_decl_err(ctx, label, "hash_fallback: must be 'none' when "
                    "'hash_on' is '%.*s'", (int) u->hash_on.len,
                    u->hash_on.data);
    } else if (!mg_str_eq_lit(u->hash_on, "none")
               && mg_str_eq(u->hash_on, u->hash_fallback)
               && !mg_str_eq_lit(u->hash_on, "header")
               && !mg_str_eq_lit(u->hash_on, "query_arg")
               && !mg_str_eq_lit(u->hash_on, "uri_capture"))
    {
        mg_decl_err(ctx, label, "hash_fallback: must be different from "
                    "'hash_on'");
    }

    if (!mg_decl_is_null(hc) && hc->type != YAML_MAPPING_NODE) {
        mg_decl_err(ctx, label, "healthchecks: expected a record, got %s",
                    mg_decl_node_what(hc));
    } else if (ctx->hc_loaded) {
        mg_decl_json_field(ctx, hc, &ctx->hc_doc,
                           yaml_document_get_root_node(&ctx->hc_doc), label,
                           "healthchecks", &u->healthchecks_json);
    }

    mg_decl_unique(ctx, T_UPSTREAM, "name", u->name, u, label);
    mg_decl_register(ctx, T_UPSTREAM, u, &u->id, u->name.data, u->name.len,
                     label);
    me.type = T_UPSTREAM;
    me.ptr = u;
    me.id = mg_pool_strndup(ctx->tmp, u->id.data, u->id.len);
    mg_decl_each(ctx, targets, label, "targets", T_TARGET, mg_decl_target,
                 &me);
}

static void
mg_decl_target(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
               const mg_decl_parent_t *parent)
{
    mg_target_t     *t;
    const char      *k, *why;
    size_t           kl;
    yaml_node_t     *v;
    mg_decl_common_t c;
    mg_str_t         up_key = mg_null_string;
    int              has_upstream = 0;
    char             key[1024];

    t = mg_decl_new(ctx, T_TARGET, sizeof(*t), label);
    if (t == NULL) return;
    t->weight = 100;
    t->port = 8000;
    t->created_at = ctx->now;
    if (parent && parent->type == T_UPSTREAM) {
        t->upstream = parent->ptr;
        up_key.data = parent->id;
        up_key.len = strlen(parent->id);
    }
    c = (mg_decl_common_t) { &t->id, &t->tags, &t->created_at, NULL };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("target")) {
            mg_decl_str(ctx, v, label, "target", &t->target);
        } else if (KEY("weight")) {
            mg_decl_int_field(ctx, v, label, "weight", 0, 65535, &t->weight);
        } else if (KEY("upstream")) {
            if (parent && parent->type == T_UPSTREAM) {
                if (!mg_decl_is_null(v)) {
                    mg_decl_err(ctx, label, "upstream: cannot be set on a "
                                "nested target (it takes its parent's)");
                }
            } else {
                has_upstream = !mg_decl_is_null(v);
                mg_decl_ref(ctx, v, label, "upstream", T_UPSTREAM,
                            (void **) &t->upstream, &up_key);
            }
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    if (!(parent && parent->type == T_UPSTREAM) && !has_upstream) {
        mg_decl_err(ctx, label, "upstream: required field missing");
    }
    if (t->target.len == 0) {
        mg_decl_err(ctx, label, "target: required field missing");
    } else if ((why = mg_decl_check_host(t->target.data, t->target.len,
                                         MG_HOST_PORT)) != NULL)
    {
        mg_decl_err(ctx, label, "target: Invalid target ('%.*s'); not a "
                    "valid hostname or ip address (%s)", (int) t->target.len,
                    t->target.data, why);
    } else {
        /* Split host and port: "[::1]:80", "::1", "a.com:80", "a.com". */
        const char *s = t->target.data, *e = s + t->target.len, *colon;

        if (s[0] == '[') {
            const char *rb = memchr(s, ']', t->target.len);

            t->host = mg_pool_str(ctx->cf->pool, s + 1, (size_t) (rb - s - 1));
            colon = rb + 1 < e ? rb + 1 : NULL;
        } else {
            colon = memchr(s, ':', t->target.len);
            if (colon && memchr(colon + 1, ':', (size_t) (e - colon - 1))) {
                colon = NULL;       /* bare IPv6 */
                t->host = t->target;
            } else {
                t->host = mg_pool_str(ctx->cf->pool, s,
                                      colon ? (size_t) (colon - s)
                                            : t->target.len);
            }
        }
        if (colon) {
            t->port = (uint16_t) atoi(colon + 1);
        }
    }
    /* Kong's natural key: the target within its upstream. */
    snprintf(key, sizeof(key), "%.*s:%.*s", (int) t->target.len,
             t->target.data, (int) up_key.len, up_key.data);
    mg_decl_register(ctx, T_TARGET, t, &t->id, key, strlen(key), label);
}

static void
mg_decl_consumer(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                 const mg_decl_parent_t *parent)
{
    mg_consumer_t   *cs;
    const char      *k;
    size_t           kl;
    yaml_node_t     *v, *plugins = NULL;
    mg_decl_common_t c;
    mg_decl_parent_t me;

    (void) parent;
    cs = mg_decl_new(ctx, T_CONSUMER, sizeof(*cs), label);
    if (cs == NULL) return;
    cs->created_at = ctx->now;
    c = (mg_decl_common_t) { &cs->id, &cs->tags, &cs->created_at, NULL };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("username")) {
            mg_decl_str(ctx, v, label, "username", &cs->username);
        } else if (KEY("custom_id")) {
            mg_decl_str(ctx, v, label, "custom_id", &cs->custom_id);
        } else if (KEY("plugins")) {
            plugins = v;
        } else if (mg_decl_is_credential(k, kl)) {
            /*
             * Credentials (key-auth keys, basic-auth passwords, JWT secrets,
             * ACL groups) become entities of their own when the auth
             * plugins arrive; until then they are checked for shape only
             * so Kong files load unchanged.
             */
            mg_decl_records_only(ctx, v, label, k);
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    if (cs->username.len == 0 && cs->custom_id.len == 0) {
        mg_decl_err(ctx, label, "at least one of these fields must be "
                    "non-empty: 'custom_id', 'username'");
    }
    mg_decl_unique(ctx, T_CONSUMER, "username", cs->username, cs, label);
    mg_decl_unique(ctx, T_CONSUMER, "custom_id", cs->custom_id, cs, label);
    if (cs->username.len) {
        mg_decl_register(ctx, T_CONSUMER, cs, &cs->id, cs->username.data,
                         cs->username.len, label);
    } else {
        char key[1024];

        snprintf(key, sizeof(key), "custom_id:%.*s", (int) cs->custom_id.len,
                 cs->custom_id.data);
        mg_decl_register(ctx, T_CONSUMER, cs, &cs->id, key, strlen(key),
                         label);
    }
    me.type = T_CONSUMER;
    me.ptr = cs;
    me.id = mg_pool_strndup(ctx->tmp, cs->id.data, cs->id.len);
    mg_decl_each(ctx, plugins, label, "plugins", T_PLUGIN, mg_decl_plugin, &me);
}

static void
mg_decl_plugin(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
               const mg_decl_parent_t *parent)
{
    mg_plugin_t     *pl;
    const char      *k;
    size_t           kl;
    yaml_node_t     *v, *config = NULL;
    mg_decl_common_t c;
    mg_str_t         scope[3] = { mg_null_string, mg_null_string,
                                  mg_null_string };
    char             key[2048];
    static const char *const scopes[3] = { "route", "service", "consumer" };
    static const int  scope_type[3] = { T_ROUTE, T_SERVICE, T_CONSUMER };
    int               i;

    pl = mg_decl_new(ctx, T_PLUGIN, sizeof(*pl), label);
    if (pl == NULL) return;
    pl->enabled = 1;
    pl->protocols.elts = mg_decl_plugin_protocols_def;
    pl->protocols.n = mg_nelems(mg_decl_plugin_protocols_def);
    pl->created_at = ctx->now;
    if (parent) {
        if (parent->type == T_ROUTE) pl->route = parent->ptr;
        if (parent->type == T_SERVICE) pl->service = parent->ptr;
        if (parent->type == T_CONSUMER) pl->consumer = parent->ptr;
        for (i = 0; i < 3; i++) {
            if (parent->type == scope_type[i]) {
                scope[i].data = parent->id;
                scope[i].len = strlen(parent->id);
            }
        }
    }
    c = (mg_decl_common_t) { &pl->id, &pl->tags, &pl->created_at, NULL };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        int s = KEY("route") ? 0 : KEY("service") ? 1
                : KEY("consumer") ? 2 : -1;

        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("name")) {
            mg_decl_str(ctx, v, label, "name", &pl->name);
        } else if (KEY("instance_name")) {
            if (mg_decl_str(ctx, v, label, "instance_name",
                            &pl->instance_name) == 1)
            {
                const char *why = mg_decl_check_name(pl->instance_name);

                if (why) mg_decl_err(ctx, label, "instance_name: %s", why);
            }
        } else if (KEY("config")) {
            config = v;
        } else if (KEY("enabled")) {
            mg_decl_bool(ctx, v, label, "enabled", &pl->enabled);
        } else if (KEY("protocols")) {
            mg_str_array_t a;

            if (mg_decl_str_array(ctx, v, label, "protocols", NULL, &a) == 1) {
                size_t j;
                char   list[256];

                for (j = 0; j < a.n; j++) {
                    if (!mg_decl_one_of(a.elts[j], mg_decl_protocols)) {
                        mg_decl_set_list(list, sizeof(list),
                                         mg_decl_protocols);
                        mg_decl_err(ctx, label, "protocols[%zu]: expected "
                                    "one of: %s", j, list);
                    }
                }
                if (a.n) pl->protocols = a;
            }
        } else if (KEY("ordering")) {
            /* Enterprise dynamic ordering: accepted, not applied. */
            if (!mg_decl_is_null(v) && v->type != YAML_MAPPING_NODE) {
                mg_decl_err(ctx, label, "ordering: expected a record");
            }
        } else if (s >= 0) {
            void **slot = s == 0 ? (void **) &pl->route
                        : s == 1 ? (void **) &pl->service
                                 : (void **) &pl->consumer;

            if (parent && parent->type >= 0) {
                if (!mg_decl_is_null(v)) {
                    mg_decl_err(ctx, label, "%s: cannot be set on a nested "
                                "plugin (it takes its parent's scope)",
                                scopes[s]);
                }
            } else {
                mg_decl_ref(ctx, v, label, scopes[s], scope_type[s], slot,
                            &scope[s]);
            }
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    if (pl->name.len == 0) {
        mg_decl_err(ctx, label, "name: required field missing");
    }
    if (mg_decl_is_null(config)) {
        mg_str_set(&pl->config_json, "{}");
    } else if (config->type != YAML_MAPPING_NODE) {
        mg_decl_err(ctx, label, "config: expected a record, got %s",
                    mg_decl_node_what(config));
        mg_str_set(&pl->config_json, "{}");
    } else {
        mg_decl_json_field(ctx, config, NULL, NULL, label, "config",
                           &pl->config_json);
    }
    mg_decl_unique(ctx, T_PLUGIN, "instance_name", pl->instance_name, pl,
                   label);
    /* Kong's cache key: one plugin of a name per route/service/consumer. */
    snprintf(key, sizeof(key), "%.*s:%.*s:%.*s:%.*s", (int) pl->name.len,
             pl->name.data, (int) scope[0].len, scope[0].data,
             (int) scope[1].len, scope[1].data, (int) scope[2].len,
             scope[2].data);
    mg_decl_register(ctx, T_PLUGIN, pl, &pl->id, key, strlen(key), label);
}

static int
mg_decl_pem(mg_str_t s, const char *what)
{
    char begin[64];

    snprintf(begin, sizeof(begin), "-----BEGIN %s", what);
    return memmem(s.data, s.len, begin, strlen(begin)) != NULL
           && memmem(s.data, s.len, "-----END ", 9) != NULL;
}

static void
mg_decl_certificate(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                    const mg_decl_parent_t *parent)
{
    mg_certificate_t *ct;
    const char       *k;
    size_t            kl;
    yaml_node_t      *v, *snis = NULL;
    mg_decl_common_t  c;
    mg_decl_parent_t  me;
    size_t            cl;
    const char       *ck;

    (void) parent;
    ct = mg_decl_new(ctx, T_CERTIFICATE, sizeof(*ct), label);
    if (ct == NULL) return;
    ct->created_at = ctx->now;
    c = (mg_decl_common_t) { &ct->id, &ct->tags, &ct->created_at, NULL };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("cert")) {
            mg_decl_str(ctx, v, label, "cert", &ct->cert);
        } else if (KEY("key")) {
            mg_decl_str(ctx, v, label, "key", &ct->key);
        } else if (KEY("cert_alt")) {
            mg_decl_str(ctx, v, label, "cert_alt", &ct->cert_alt);
        } else if (KEY("key_alt")) {
            mg_decl_str(ctx, v, label, "key_alt", &ct->key_alt);
        } else if (KEY("snis")) {
            snis = v;
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    /* Key material is checked for shape only and never echoed. */
    if (ct->cert.len == 0) {
        mg_decl_err(ctx, label, "cert: required field missing");
    } else if (!mg_decl_pem(ct->cert, "CERTIFICATE")) {
        mg_decl_err(ctx, label, "cert: invalid certificate: expected PEM");
    }
    if (ct->key.len == 0) {
        mg_decl_err(ctx, label, "key: required field missing");
    } else if (!mg_decl_pem(ct->key, "")) {
        mg_decl_err(ctx, label, "key: invalid key: expected PEM");
    }
    if ((ct->cert_alt.len == 0) != (ct->key_alt.len == 0)) {
        mg_decl_err(ctx, label, "all or none of these fields must be set: "
                    "'cert_alt', 'key_alt'");
    } else if (ct->cert_alt.len && !mg_decl_pem(ct->cert_alt, "CERTIFICATE")) {
        mg_decl_err(ctx, label, "cert_alt: invalid certificate: expected "
                    "PEM");
    } else if (ct->key_alt.len && !mg_decl_pem(ct->key_alt, "")) {
        mg_decl_err(ctx, label, "key_alt: invalid key: expected PEM");
    }
    ck = mg_decl_content_key(ctx, mg_decl_get(ctx, n, "cert"), NULL, &cl);
    mg_decl_register(ctx, T_CERTIFICATE, ct, &ct->id, ck, cl, label);

    me.type = T_CERTIFICATE;
    me.ptr = ct;
    me.id = mg_pool_strndup(ctx->tmp, ct->id.data, ct->id.len);
    mg_decl_each(ctx, snis, label, "snis", T_SNI, mg_decl_sni, &me);
}

static void
mg_decl_sni(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
            const mg_decl_parent_t *parent)
{
    mg_sni_t        *sn;
    const char      *k, *why;
    size_t           kl;
    yaml_node_t     *v;
    mg_decl_common_t c;
    int              nested = parent && parent->type == T_CERTIFICATE;
    int              has_cert = 0;

    sn = mg_decl_new(ctx, T_SNI, sizeof(*sn), label);
    if (sn == NULL) return;
    sn->created_at = ctx->now;
    if (nested) {
        sn->certificate = parent->ptr;
    }
    c = (mg_decl_common_t) { &sn->id, &sn->tags, &sn->created_at, NULL };

    if (n->type == YAML_SCALAR_NODE) {
        mg_decl_str(ctx, n, label, "name", &sn->name);
    } else {
        FOR_PAIRS(ctx, n, label, k, kl, v) {
            if (mg_decl_common(ctx, k, kl, v, label, &c)) {
            } else if (KEY("name")) {
                mg_decl_str(ctx, v, label, "name", &sn->name);
            } else if (KEY("certificate")) {
                if (nested) {
                    if (!mg_decl_is_null(v)) {
                        mg_decl_err(ctx, label, "certificate: cannot be set "
                                    "on a nested sni (it takes its "
                                    "parent's)");
                    }
                } else {
                    has_cert = !mg_decl_is_null(v);
                    mg_decl_ref(ctx, v, label, "certificate", T_CERTIFICATE,
                                (void **) &sn->certificate, NULL);
                }
            } else {
                mg_decl_unknown(ctx, label, k);
            }
        }
    }
    if (sn->name.len == 0) {
        mg_decl_err(ctx, label, "name: required field missing");
    } else if ((why = mg_decl_check_sni(ctx, sn->name, label, "name"))) {
        mg_decl_err(ctx, label, "name: %s", why);
    }
    if (!nested && !has_cert) {
        mg_decl_err(ctx, label, "certificate: required field missing");
    }
    mg_decl_unique(ctx, T_SNI, "name", sn->name, sn, label);
    mg_decl_register(ctx, T_SNI, sn, &sn->id, sn->name.data, sn->name.len,
                     label);
}

static void
mg_decl_ca_certificate(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                       const mg_decl_parent_t *parent)
{
    mg_ca_certificate_t *ca;
    const char          *k, *ck;
    size_t               kl, cl;
    yaml_node_t         *v;
    mg_decl_common_t     c;

    (void) parent;
    ca = mg_decl_new(ctx, T_CA_CERTIFICATE, sizeof(*ca), label);
    if (ca == NULL) return;
    ca->created_at = ctx->now;
    c = (mg_decl_common_t) { &ca->id, &ca->tags, &ca->created_at, NULL };

    FOR_PAIRS(ctx, n, label, k, kl, v) {
        if (mg_decl_common(ctx, k, kl, v, label, &c)) {
        } else if (KEY("cert")) {
            mg_decl_str(ctx, v, label, "cert", &ca->cert);
        } else if (KEY("cert_digest")) {
            /* Kong's SHA-256 of the DER; computing it is core/tls's job. */
            mg_decl_str(ctx, v, label, "cert_digest", &ca->cert_digest);
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    if (ca->cert.len == 0) {
        mg_decl_err(ctx, label, "cert: required field missing");
    } else if (!mg_decl_pem(ca->cert, "CERTIFICATE")) {
        mg_decl_err(ctx, label, "cert: invalid certificate: expected PEM");
    }
    ck = mg_decl_content_key(ctx, mg_decl_get(ctx, n, "cert"), NULL, &cl);
    mg_decl_register(ctx, T_CA_CERTIFICATE, ca, &ca->id, ck, cl, label);
}

/* --- after the walk: references, links, snapshot arrays ------------------- */

static void
mg_decl_resolve(mg_decl_ctx_t *ctx)
{
    size_t          i, j, kl;
    char            key[1024];
    mg_decl_slot_t *s;

    for (i = 0; i < ctx->refs.n; i++) {
        mg_decl_ref_t *r = ctx->refs.elts[i];
        const char    *namekey = r->type == T_CONSUMER ? "username" : "name";

        s = NULL;
        if (r->by != 2) {
            kl = mg_decl_key(key, sizeof(key), r->type, "id", r->key,
                             strlen(r->key));
            s = mg_decl_map_find(&ctx->map, key, kl);
        }
        if (s == NULL && r->by != 1) {
            kl = mg_decl_key(key, sizeof(key), r->type, namekey, r->key,
                             strlen(r->key));
            s = mg_decl_map_find(&ctx->map, key, kl);
        }
        if (s == NULL) {
            mg_decl_err(ctx, r->label, "%s: %s '%s' not found", r->field,
                        mg_decl_type_one[r->type], r->key);
        } else if (r->slot) {
            *r->slot = s->val;
        }
    }

    /* A service whose host is an upstream's name balances over it. */
    for (i = 0; i < ctx->ents[T_SERVICE].n; i++) {
        mg_service_t *sv = ctx->ents[T_SERVICE].elts[i];

        kl = mg_decl_key(key, sizeof(key), T_UPSTREAM, "name", sv->host.data,
                         sv->host.len);
        if ((s = mg_decl_map_find(&ctx->map, key, kl)) != NULL) {
            sv->upstream = s->val;
        }
        for (j = 0; j < sv->ca_certificates.n; j++) {
            mg_str_t id = sv->ca_certificates.elts[j];

            kl = mg_decl_key(key, sizeof(key), T_CA_CERTIFICATE, "id",
                             id.data, id.len);
            if (mg_decl_map_find(&ctx->map, key, kl) == NULL) {
                mg_decl_err(ctx, ctx->labels[T_SERVICE].elts[i],
                            "ca_certificates[%zu]: ca_certificate '%.*s' not "
                            "found", j, (int) id.len, id.data);
            }
        }
    }

    /* Flat targets are unique within their upstream too. */
    for (i = 0; i < ctx->ents[T_TARGET].n; i++) {
        mg_target_t *t = ctx->ents[T_TARGET].elts[i];

        if (t->upstream && t->target.len) {
            kl = (size_t) snprintf(key, sizeof(key), "%.*s:%.*s",
                                   (int) t->target.len, t->target.data,
                                   (int) t->upstream->id.len,
                                   t->upstream->id.data);
            mg_decl_unique(ctx, T_TARGET, "target",
                           (mg_str_t) { key, mg_min(kl, sizeof(key) - 1) }, t,
                           ctx->labels[T_TARGET].elts[i]);
        }
    }

    /* Plugins: one per name and resolved scope. */
    for (i = 0; i < ctx->ents[T_PLUGIN].n; i++) {
        mg_plugin_t *p = ctx->ents[T_PLUGIN].elts[i];

        kl = (size_t) snprintf(key, sizeof(key), "scope/%.*s/%p/%p/%p",
                               (int) p->name.len, p->name.data,
                               (void *) p->route, (void *) p->service,
                               (void *) p->consumer);
        s = mg_decl_map_add(ctx, key, mg_min(kl, sizeof(key) - 1), p,
                            ctx->labels[T_PLUGIN].elts[i]);
        if (s != NULL && p->name.len) {
            mg_decl_err(ctx, ctx->labels[T_PLUGIN].elts[i],
                        "plugin '%.*s' is already configured for this "
                        "scope by %s", (int) p->name.len, p->name.data,
                        s->label);
        }
    }
}

static void
mg_decl_link_targets(mg_decl_ctx_t *ctx)
{
    size_t i;

    for (i = 0; i < ctx->ents[T_TARGET].n; i++) {
        mg_target_t *t = ctx->ents[T_TARGET].elts[i];

        if (t->upstream) t->upstream->ntargets++;
    }
    for (i = 0; i < ctx->ents[T_UPSTREAM].n; i++) {
        mg_upstream_t *u = ctx->ents[T_UPSTREAM].elts[i];

        u->targets = mg_pool_calloc(ctx->cf->pool, mg_max(u->ntargets, 1)
                                                   * sizeof(mg_target_t *));
        u->ntargets = 0;
    }
    for (i = 0; i < ctx->ents[T_TARGET].n; i++) {
        mg_target_t *t = ctx->ents[T_TARGET].elts[i];

        if (t->upstream && t->upstream->targets) {
            t->upstream->targets[t->upstream->ntargets++] = t;
        }
    }
}

static void
mg_decl_publish(mg_decl_ctx_t *ctx)
{
    mg_config_t *cf = ctx->cf;

#define PUB(type, field)                                                     \
    cf->field = (void *) ctx->ents[type].elts;                               \
    cf->field##_n = ctx->ents[type].n
    PUB(T_SERVICE, services);
    PUB(T_ROUTE, routes);
    PUB(T_UPSTREAM, upstreams);
    PUB(T_TARGET, targets);
    PUB(T_CONSUMER, consumers);
    PUB(T_PLUGIN, plugins);
    PUB(T_CERTIFICATE, certificates);
    PUB(T_SNI, snis);
    PUB(T_CA_CERTIFICATE, ca_certificates);
#undef PUB
}

/* --- the top level ----------------------------------------------------------- */

static void
mg_decl_top(mg_decl_ctx_t *ctx, yaml_node_t *root)
{
    static const char *const versions[] = { "1.1", "2.1", "3.0", NULL };
    static const struct {
        const char        *key;
        int                type;
        mg_decl_entity_pt  fn;
    } order[] = {
        /* Fixed order, whatever the file's: the snapshot is the same. */
        { "certificates", T_CERTIFICATE, mg_decl_certificate },
        { "snis", T_SNI, mg_decl_sni },
        { "ca_certificates", T_CA_CERTIFICATE, mg_decl_ca_certificate },
        { "services", T_SERVICE, mg_decl_service },
        { "routes", T_ROUTE, mg_decl_route },
        { "upstreams", T_UPSTREAM, mg_decl_upstream },
        { "targets", T_TARGET, mg_decl_target },
        { "consumers", T_CONSUMER, mg_decl_consumer },
        { "plugins", T_PLUGIN, mg_decl_plugin },
    };
    const char  *k;
    size_t       kl, i;
    yaml_node_t *v, *fv = NULL;
    int          transform;

    if (root == NULL || root->type != YAML_MAPPING_NODE) {
        mg_decl_err(ctx, NULL, "expected an object at the top level, got %s",
                    root ? mg_decl_node_what(root) : "an empty document");
        return;
    }
    FOR_PAIRS(ctx, root, NULL, k, kl, v) {
        int known = 0;

        for (i = 0; i < mg_nelems(order); i++) {
            if (kl == strlen(order[i].key) && memcmp(k, order[i].key, kl) == 0)
                known = 1;
        }
        if (known) {
            continue;
        }
        if (KEY("_format_version")) {
            fv = v;
        } else if (KEY("_transform")) {
            mg_decl_bool(ctx, v, NULL, "_transform", &transform);
        } else if (KEY("_workspace") || KEY("_comment")) {
            mg_str_t s;

            mg_decl_str(ctx, v, NULL, k, &s);
        } else if (KEY("_ignore")) {
            if (!mg_decl_is_null(v) && v->type != YAML_SEQUENCE_NODE) {
                mg_decl_err(ctx, NULL, "_ignore: expected an array");
            }
        } else if (KEY("vaults") || mg_decl_is_credential(k, kl)) {
            /* Vaults and flat credentials: shape only, see consumers. */
            mg_decl_records_only(ctx, v, NULL, k);
        } else {
            mg_decl_unknown(ctx, NULL, k);
        }
    }
    if (mg_decl_is_null(fv)) {
        mg_decl_err(ctx, NULL, "_format_version: required field missing");
    } else if (fv->type != YAML_SCALAR_NODE) {
        mg_decl_err(ctx, NULL, "_format_version: expected a string");
    } else {
        /* Kong wants a string; an unquoted 3.0 is forgiven. */
        mg_str_t s = { SV(fv), SL(fv) };

        if (!mg_decl_one_of(s, versions)) {
            mg_decl_err(ctx, NULL, "_format_version: expected one of: 1.1, "
                        "2.1, 3.0");
        } else {
            ctx->cf->format_version = mg_pool_str(ctx->cf->pool, s.data,
                                                  s.len);
        }
    }
    for (i = 0; i < mg_nelems(order); i++) {
        mg_decl_each(ctx, mg_decl_get(ctx, root, order[i].key), NULL,
                     order[i].key, order[i].type, order[i].fn, NULL);
    }
    mg_decl_resolve(ctx);
    mg_decl_link_targets(ctx);
    mg_decl_publish(ctx);
}

/*
 * JSON writes characters outside the BMP as surrogate pairs ("\ud83d\ude00"),
 * which libyaml refuses; rewrite them as YAML's "\U0001F600" (same or
 * shorter, in place).  Only for JSON input, where '"' always delimits a
 * string so the scan is exact.
 */
static void
mg_decl_fix_surrogates(char *s, size_t *len)
{
    size_t i = 0, w = 0, n = *len;
    int    in_str = 0;

    while (i < n) {
        char c = s[i];

        if (!in_str) {
            in_str = c == '"';
            s[w++] = s[i++];
            continue;
        }
        if (c == '"') {
            in_str = 0;
            s[w++] = s[i++];
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 12 <= n && s[i + 6] == '\\'
                && s[i + 7] == 'u')
            {
                unsigned hi = 0, lo = 0;
                int      ok = 1, j;

                for (j = 0; j < 4; j++) {
                    int a = mg_decl_hexval((unsigned char) s[i + 2 + j]);
                    int b = mg_decl_hexval((unsigned char) s[i + 8 + j]);

                    if (a < 0 || b < 0) ok = 0;
                    hi = hi << 4 | (unsigned) (a & 0xf);
                    lo = lo << 4 | (unsigned) (b & 0xf);
                }
                if (ok && hi >= 0xD800 && hi <= 0xDBFF && lo >= 0xDC00
                    && lo <= 0xDFFF)
                {
                    unsigned cp = 0x10000 + ((hi - 0xD800) << 10)
                                  + (lo - 0xDC00);
                    char     tmp[11];

                    snprintf(tmp, sizeof(tmp), "\\U%08X", cp);
                    memcpy(s + w, tmp, 10);
                    w += 10;
                    i += 12;
                    continue;
                }
            }
            s[w++] = s[i++];
            s[w++] = s[i++];
            continue;
        }
        s[w++] = s[i++];
    }
    *len = w;
}

mg_config_t *
mg_declarative_load_string(const char *text, size_t len,
                           mg_config_errors_t *errs)
{
    mg_decl_ctx_t   ctx;
    yaml_parser_t   parser;
    yaml_document_t doc;
    char           *copy;
    size_t          i;

    memset(&ctx, 0, sizeof(ctx));
    ctx.errs = errs;
    ctx.now = (int64_t) time(NULL);
    ctx.cf = mg_config_new();
    ctx.tmp = mg_pool_create(16384);
    copy = malloc(len + 1);
    if (ctx.cf == NULL || ctx.tmp == NULL || copy == NULL) {
        mg_config_errors_add(errs, "out of memory");
        free(copy);
        if (ctx.tmp) mg_pool_destroy(ctx.tmp);
        mg_config_free(ctx.cf);
        return NULL;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    for (i = 0; i < len && isspace((unsigned char) copy[i]); i++) {}
    if (i < len && (copy[i] == '{' || copy[i] == '[')) {
        mg_decl_fix_surrogates(copy, &len);
    }

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *) copy, len);
    if (!yaml_parser_load(&parser, &doc)) {
        mg_decl_err(&ctx, NULL, "line %zu, column %zu: %s%s%s",
                    parser.problem_mark.line + 1,
                    parser.problem_mark.column + 1,
                    parser.problem ? parser.problem : "syntax error",
                    parser.context ? " " : "",
                    parser.context ? parser.context : "");
    } else {
        yaml_parser_t hp;

        ctx.doc = &doc;
        yaml_parser_initialize(&hp);
        yaml_parser_set_input_string(&hp,
                                     (const unsigned char *) MG_DECL_HC_DEFAULTS,
                                     sizeof(MG_DECL_HC_DEFAULTS) - 1);
        ctx.hc_loaded = yaml_parser_load(&hp, &ctx.hc_doc);
        yaml_parser_delete(&hp);

        mg_decl_top(&ctx, yaml_document_get_root_node(&doc));

        if (ctx.hc_loaded) yaml_document_delete(&ctx.hc_doc);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    free(copy);
    free(ctx.map.slots);
    mg_pool_destroy(ctx.tmp);
    if (ctx.nerr > 0) {
        mg_config_free(ctx.cf);
        return NULL;
    }
    return ctx.cf;
}

mg_config_t *
mg_declarative_load_file(const char *path, mg_config_errors_t *errs)
{
    FILE        *f;
    char        *buf;
    long         size;
    size_t       n, i, before;
    mg_config_t *cf;

    f = fopen(path, "rb");
    if (f == NULL) {
        mg_config_errors_add(errs, "%s: cannot open: %s", path,
                             strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        mg_config_errors_add(errs, "%s: cannot read: %s", path,
                             strerror(errno));
        fclose(f);
        return NULL;
    }
    if (size > MG_DECL_MAX_FILE) {
        mg_config_errors_add(errs, "%s: too large (%ld bytes, at most %d)",
                             path, size, MG_DECL_MAX_FILE);
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t) size + 1);
    if (buf == NULL) {
        mg_config_errors_add(errs, "%s: out of memory", path);
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, (size_t) size, f);
    fclose(f);
    if (n != (size_t) size) {
        mg_config_errors_add(errs, "%s: short read", path);
        free(buf);
        return NULL;
    }
    before = errs ? errs->n : 0;
    cf = mg_declarative_load_string(buf, n, errs);
    free(buf);
    /* Name the file in each message. */
    for (i = before; errs && i < errs->n; i++) {
        char *line;

        if (asprintf(&line, "%s: %s", path, errs->lines[i]) >= 0) {
            free(errs->lines[i]);
            errs->lines[i] = line;
        }
    }
    return cf;
}
