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
 * Files: this one owns the load, the walk's shared machinery (ids,
 * uniqueness, references, labels) and the resolution at the end;
 * mg_decl_entity.c has one walker per entity type, mg_decl_value.c the
 * typed readers, checkers, JSON encoding and UUIDs; mg_decl.h is private
 * to the three.
 *
 * Rejected: a generic value tree kept in the snapshot (see mg_config.h),
 * and libyaml's event API -- references and nested defaults need random
 * access to the tree, which the document API gives for free.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "mg_decl.h"

static const char *mg_decl_type_name[MG_DECL_NTYPES] = {
    "services", "routes", "upstreams", "targets", "consumers", "plugins",
    "certificates", "snis", "ca_certificates"
};

static const char *mg_decl_type_one[MG_DECL_NTYPES] = {
    "service", "route", "upstream", "target", "consumer", "plugin",
    "certificate", "sni", "ca_certificate"
};

/* The field that names an entity in error paths and generated ids. */
static const char *mg_decl_type_key[MG_DECL_NTYPES] = {
    "name", "name", "name", "target", "username", "name", NULL, "name", NULL
};

void
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

/* --- Kong's defaults for an upstream's healthchecks record --------------- */

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

/* --- entities: shared parts ---------------------------------------------- */





int
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

void
mg_decl_unknown(mg_decl_ctx_t *ctx, const char *label, const char *k)
{
    mg_decl_err(ctx, label, "%s: unknown field", k);
}

/*
 * Give the entity its id (generated from key when none was written) and
 * register it, with its natural key when it has one, for duplicate checks
 * and reference lookups.
 */
void
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
void
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
void
mg_decl_ref(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
            const char *field, int type, void **slot, mg_str_t *keyout)
{
    mg_decl_ref_t *r;
    mg_str_t       key = mg_null_string;
    int            by = 0;
    const char    *namekey = type == MG_DECL_CONSUMER ? "username" : "name";

    if (mg_decl_is_null(v)) {
        return;
    }
    if (v->type == YAML_SCALAR_NODE &&
        mg_decl_scalar_kind(v) == MG_DECL_SK_STR) {
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
            } else if (type != MG_DECL_CERTIFICATE &&
                       type != MG_DECL_CA_CERTIFICATE &&
                       kl == strlen(namekey) && memcmp(k, namekey, kl) == 0) {
                if (mg_decl_str(ctx, fv, label, f, &key) == 1) {
                    by = 2;
                }
            } else {
                mg_decl_err(ctx, label, "%s: unknown field", f);
                return;
            }
        }
        if (key.len == 0) {
            mg_decl_err(ctx, label, "%s: expected a record with 'id'%s", field,
                        type == MG_DECL_CERTIFICATE ? ""
                        : type == MG_DECL_CONSUMER  ? " or 'username'"
                                                    : " or 'name'");
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
char *
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

void *
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


/*
 * Walk an array of entity records: "<prefix><key>[i] (name=x)" labels,
 * each record handed to fn.
 */
void
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
    for (it = seq->data.sequence.items.start;
         it < seq->data.sequence.items.top; it++, i++) {
        yaml_node_t *n = NODE(ctx, *it), *nk = NULL;
        const char  *what = NULL;
        int          w;

        w = snprintf(buf, sizeof(buf), "%s%s%s[%zu]", prefix ? prefix : "",
                     prefix && *prefix ? "." : "", key, i);
        if (n && n->type == YAML_SCALAR_NODE && type == MG_DECL_SNI && parent
            && parent->type == MG_DECL_CERTIFICATE && w > 0
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
            if (type == MG_DECL_CONSUMER &&
                (nk == NULL || mg_decl_is_null(nk))) {
                what = "custom_id";
                nk = mg_decl_get(ctx, n, what);
            }
        }
        if (nk == NULL || nk->type != YAML_SCALAR_NODE ||
            mg_decl_is_null(nk)) {
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
void
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
    for (it = seq->data.sequence.items.start;
         it < seq->data.sequence.items.top; it++, i++) {
        yaml_node_t *n = NODE(ctx, *it);

        if (n == NULL || n->type != YAML_MAPPING_NODE) {
            mg_decl_err(ctx, label, "%s[%zu]: expected a record, got %s", key,
                        i, n ? mg_decl_node_what(n) : "nothing");
        }
    }
}

int
mg_decl_is_credential(const char *k, size_t kl)
{
    return KEY("keyauth_credentials") || KEY("basicauth_credentials")
           || KEY("jwt_secrets") || KEY("acls") || KEY("hmacauth_credentials")
           || KEY("oauth2_credentials") || KEY("mtls_auth_credentials");
}

/* --- after the walk: references, links, snapshot arrays ------------------ */

static void
mg_decl_resolve(mg_decl_ctx_t *ctx)
{
    size_t          i, j, kl;
    char            key[1024];
    mg_decl_slot_t *s;

    for (i = 0; i < ctx->refs.n; i++) {
        mg_decl_ref_t *r = ctx->refs.elts[i];
        const char *namekey =
            r->type == MG_DECL_CONSUMER ? "username" : "name";

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
    for (i = 0; i < ctx->ents[MG_DECL_SERVICE].n; i++) {
        mg_service_t *sv = ctx->ents[MG_DECL_SERVICE].elts[i];

        kl = mg_decl_key(key, sizeof(key), MG_DECL_UPSTREAM, "name",
                         sv->host.data, sv->host.len);
        if ((s = mg_decl_map_find(&ctx->map, key, kl)) != NULL) {
            sv->upstream = s->val;
        }
        for (j = 0; j < sv->ca_certificates.n; j++) {
            mg_str_t id = sv->ca_certificates.elts[j];

            kl = mg_decl_key(key, sizeof(key), MG_DECL_CA_CERTIFICATE, "id",
                             id.data, id.len);
            if (mg_decl_map_find(&ctx->map, key, kl) == NULL) {
                mg_decl_err(ctx, ctx->labels[MG_DECL_SERVICE].elts[i],
                            "ca_certificates[%zu]: ca_certificate '%.*s' not "
                            "found", j, (int) id.len, id.data);
            }
        }
    }

    /* Flat targets are unique within their upstream too. */
    for (i = 0; i < ctx->ents[MG_DECL_TARGET].n; i++) {
        mg_target_t *t = ctx->ents[MG_DECL_TARGET].elts[i];

        if (t->upstream && t->target.len) {
            kl = (size_t) snprintf(key, sizeof(key), "%.*s:%.*s",
                                   (int) t->target.len, t->target.data,
                                   (int) t->upstream->id.len,
                                   t->upstream->id.data);
            mg_decl_unique(ctx, MG_DECL_TARGET, "target",
                           (mg_str_t) { key, mg_min(kl, sizeof(key) - 1) }, t,
                           ctx->labels[MG_DECL_TARGET].elts[i]);
        }
    }

    /* Plugins: one per name and resolved scope. */
    for (i = 0; i < ctx->ents[MG_DECL_PLUGIN].n; i++) {
        mg_plugin_t *p = ctx->ents[MG_DECL_PLUGIN].elts[i];

        kl = (size_t) snprintf(key, sizeof(key), "scope/%.*s/%p/%p/%p",
                               (int) p->name.len, p->name.data,
                               (void *) p->route, (void *) p->service,
                               (void *) p->consumer);
        s = mg_decl_map_add(ctx, key, mg_min(kl, sizeof(key) - 1), p,
                            ctx->labels[MG_DECL_PLUGIN].elts[i]);
        if (s != NULL && p->name.len) {
            mg_decl_err(ctx, ctx->labels[MG_DECL_PLUGIN].elts[i],
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

    for (i = 0; i < ctx->ents[MG_DECL_TARGET].n; i++) {
        mg_target_t *t = ctx->ents[MG_DECL_TARGET].elts[i];

        if (t->upstream) t->upstream->ntargets++;
    }
    for (i = 0; i < ctx->ents[MG_DECL_UPSTREAM].n; i++) {
        mg_upstream_t *u = ctx->ents[MG_DECL_UPSTREAM].elts[i];

        u->targets = mg_pool_calloc(ctx->cf->pool, mg_max(u->ntargets, 1)
                                                   * sizeof(mg_target_t *));
        u->ntargets = 0;
    }
    for (i = 0; i < ctx->ents[MG_DECL_TARGET].n; i++) {
        mg_target_t *t = ctx->ents[MG_DECL_TARGET].elts[i];

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
    PUB(MG_DECL_SERVICE, services);
    PUB(MG_DECL_ROUTE, routes);
    PUB(MG_DECL_UPSTREAM, upstreams);
    PUB(MG_DECL_TARGET, targets);
    PUB(MG_DECL_CONSUMER, consumers);
    PUB(MG_DECL_PLUGIN, plugins);
    PUB(MG_DECL_CERTIFICATE, certificates);
    PUB(MG_DECL_SNI, snis);
    PUB(MG_DECL_CA_CERTIFICATE, ca_certificates);
#undef PUB
}

/* --- the top level ------------------------------------------------------- */

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
        { "certificates", MG_DECL_CERTIFICATE, mg_decl_certificate },
        { "snis", MG_DECL_SNI, mg_decl_sni },
        { "ca_certificates", MG_DECL_CA_CERTIFICATE, mg_decl_ca_certificate },
        { "services", MG_DECL_SERVICE, mg_decl_service },
        { "routes", MG_DECL_ROUTE, mg_decl_route },
        { "upstreams", MG_DECL_UPSTREAM, mg_decl_upstream },
        { "targets", MG_DECL_TARGET, mg_decl_target },
        { "consumers", MG_DECL_CONSUMER, mg_decl_consumer },
        { "plugins", MG_DECL_PLUGIN, mg_decl_plugin },
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
void
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

/*
 * Where and why libyaml failed, as "line L, column C: problem context".
 * A reader error (invalid UTF-8, a control character) leaves
 * problem_mark unset and gives a byte offset instead: the line and column
 * are counted from text (the input the parser was given) up to it.
 */
void
mg_decl_yaml_error(const yaml_parser_t *parser, const char *text,
                   size_t len, char *buf, size_t n)
{
    size_t line = parser->problem_mark.line, col = parser->problem_mark.column;
    size_t i, off;

    if (parser->error == YAML_READER_ERROR) {
        off = parser->problem_offset < len ? parser->problem_offset : len;
        line = col = 0;
        for (i = 0; i < off; i++) {
            unsigned char c = (unsigned char) text[i];

            if (c == '\n' || (c == '\r' && (i + 1 >= len
                                              || text[i + 1] != '\n')))
            {
                line++;
                col = 0;
            } else if ((c & 0xc0) != 0x80 && c != '\r') {
                col++;                  /* characters, as libyaml counts */
            }
        }
    }
    snprintf(buf, n, "line %zu, column %zu: %s%s%s", line + 1, col + 1,
             parser->problem ? parser->problem : "syntax error",
             parser->context ? " " : "",
             parser->context ? parser->context : "");
}

/*
 * libyaml's scanner checks every open flow level for each token, so
 * "[[[[..." costs time quadratic in its depth, and the loader has no depth
 * limit.  One pass over the events first stops at MG_DECL_MAX_NESTING
 * open collections; an input it cannot parse is left to yaml_parser_load,
 * which reports the same error.  Returns MG_ERROR (msg set) when too deep.
 */
/*
 * Plain JSON nested no deeper than the limit, found with one byte scan
 * (about 1 ms per MB, where libyaml's event pass costs ~25 ms): the
 * stored configuration the workers rebuild from is such a document.
 * Anything else -- YAML constructs outside strings (comments, quotes,
 * anchors, tags), deeper nesting, an unterminated string -- returns 0 and
 * gets the exact check, which also words the error.
 */
static int
mg_decl_json_shallow(const char *text, size_t len)
{
    size_t i = 0;
    int    depth = 0, in_str = 0;

    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n'
                       || text[i] == '\r'))
    {
        i++;
    }
    if (i == len || (text[i] != '{' && text[i] != '[')) {
        return 0;
    }
    for (; i < len; i++) {
        char c = text[i];

        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        switch (c) {
        case '"':
            in_str = 1;
            break;
        case '{':
        case '[':
            if (++depth > MG_DECL_MAX_NESTING) {
                return 0;
            }
            break;
        case '}':
        case ']':
            depth--;
            break;
        case '#': case '\'': case '&': case '*': case '!': case '|':
        case '>': case '%': case '@': case '`':
            return 0;
        default:
            break;
        }
    }
    return !in_str;
}

int
mg_decl_yaml_depth_check(const char *text, size_t len, char *msg, size_t n)
{
    yaml_parser_t parser;
    yaml_event_t  ev;
    int           depth = 0, rc = MG_OK, done = 0;

    if (mg_decl_json_shallow(text, len)) {
        return MG_OK;
    }

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
    while (!done && yaml_parser_parse(&parser, &ev)) {
        switch (ev.type) {
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > MG_DECL_MAX_NESTING) {
                snprintf(msg, n, "line %zu, column %zu: nested deeper than "
                         "%d levels", ev.start_mark.line + 1,
                         ev.start_mark.column + 1, MG_DECL_MAX_NESTING);
                rc = MG_ERROR;
                done = 1;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return rc;
}

mg_config_t *
mg_declarative_load_string(const char *text, size_t len,
                           mg_config_errors_t *errs)
{
    mg_decl_ctx_t   ctx;
    yaml_parser_t   parser;
    yaml_document_t doc;
    char           *copy, msg[512];
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
    if (len) {
        memcpy(copy, text, len);        /* text may be NULL when len is 0 */
    }
    copy[len] = '\0';
    for (i = 0; i < len && isspace((unsigned char) copy[i]); i++) {}
    if (i < len && (copy[i] == '{' || copy[i] == '[')) {
        mg_decl_fix_surrogates(copy, &len);
    }

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *) copy, len);
    if (mg_decl_yaml_depth_check(copy, len, msg, sizeof(msg)) != MG_OK) {
        mg_decl_err(&ctx, NULL, "%s", msg);
    } else if (!yaml_parser_load(&parser, &doc)) {
        mg_decl_yaml_error(&parser, copy, len, msg, sizeof(msg));
        mg_decl_err(&ctx, NULL, "%s", msg);
    } else {
        yaml_parser_t hp;

        ctx.doc = &doc;
        yaml_parser_initialize(&hp);
        yaml_parser_set_input_string(
            &hp, (const unsigned char *) MG_DECL_HC_DEFAULTS,
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

/* Messages do not repeat the path: callers print it before each line. */
mg_config_t *
mg_declarative_load_file(const char *path, mg_config_errors_t *errs)
{
    FILE        *f;
    char        *buf;
    long         size;
    size_t       n;
    mg_config_t *cf;

    f = fopen(path, "rb");
    if (f == NULL) {
        mg_config_errors_add(errs, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        mg_config_errors_add(errs, "cannot read: %s", strerror(errno));
        fclose(f);
        return NULL;
    }
    if (size > MG_DECL_MAX_FILE) {
        mg_config_errors_add(errs, "too large (%ld bytes, at most %d)", size,
                             MG_DECL_MAX_FILE);
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t) size + 1);
    if (buf == NULL) {
        mg_config_errors_add(errs, "out of memory");
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, (size_t) size, f);
    fclose(f);
    if (n != (size_t) size) {
        mg_config_errors_add(errs, "short read");
        free(buf);
        return NULL;
    }
    cf = mg_declarative_load_string(buf, n, errs);
    free(buf);
    return cf;
}
