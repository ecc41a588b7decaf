/*
 * mg_config_store.c -- a config snapshot from the entity store: the
 * workers' (and the master's) way from what the Admin API or an import
 * committed to what the router and balancers run.
 *
 * One read snapshot of the store is exported (mg_store_export: every
 * entity, types in dependency order) and its JSON documents are laid out
 * as one flat `_format_version: "3.0"` document -- "services": [...],
 * "routes": [...] -- which the declarative loader then reads like a file.
 * Entities in the store carry their ids and reference each other as
 * {"id": ...}, which the loader accepts as is; types the core does not
 * run (plugin-declared entities) are left out, credentials go in so the
 * loader checks their shape as it does for a file.
 *
 * An entity's top-level `"field":null` members are left out of the
 * document: the loader reads a null field as an absent one (its typed
 * readers return "not set" for both), and a stored row -- every field of
 * its schema, a route's seven unset ones included -- is a quarter shorter
 * without them.  The loader's cost is libyaml's, per token; nested nulls
 * stay (a plugin's config goes to Lua as it is).
 *
 * Rejected: a second loader reading the store's JSON into the structs --
 * two readers of the same entities would drift, and the declarative one
 * already carries every default, check and error message.  The cost is a
 * YAML parse of the JSON text (about 150 ms for 10,000 routes), paid off
 * the request path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mg_config.h"
#include "mg_config_store.h"

/* The types the loader reads, in the order they are laid out. */
static const char *const mg_cs_types[] = {
    "certificates", "snis", "ca_certificates", "services", "routes",
    "upstreams", "targets", "consumers", "plugins",
    "keyauth_credentials", "basicauth_credentials", "jwt_secrets", "acls",
    "hmacauth_credentials", "oauth2_credentials", "mtls_auth_credentials",
};

#define MG_CS_NTYPES (sizeof(mg_cs_types) / sizeof(mg_cs_types[0]))

typedef struct {
    char   *data;
    size_t  len;
    size_t  cap;
    size_t  count;
} mg_cs_buf_t;

typedef struct {
    mg_cs_buf_t bufs[MG_CS_NTYPES];
    int         oom;
} mg_cs_ctx_t;

static int
mg_cs_put(mg_cs_buf_t *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char  *d;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        d = realloc(b->data, cap);
        if (d == NULL) {
            return MG_ERROR;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return MG_OK;
}

/* --- an entity's JSON without its top-level nulls ----------------------- */

static const char *
mg_cs_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* The end of the string starting at p (on its '"'), or NULL. */
static const char *
mg_cs_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\') {
            p++;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* The end of the JSON value starting at p, or NULL: strings and nesting
 * are followed, scalars run to the next delimiter (the loader checks
 * what they hold). */
static const char *
mg_cs_value(const char *p, const char *end)
{
    size_t depth = 0;

    do {
        if (p >= end) {
            return NULL;
        }
        switch (*p) {
        case '"':
            if ((p = mg_cs_string(p, end)) == NULL) {
                return NULL;
            }
            break;
        case '{':
        case '[':
            depth++;
            p++;
            break;
        case '}':
        case ']':
            if (depth == 0) {
                return NULL;
            }
            depth--;
            p++;
            break;
        default:
            if (depth == 0) {
                while (p < end && *p != ',' && *p != '}' && *p != ']'
                       && *p != ' ' && *p != '\t' && *p != '\n'
                       && *p != '\r')
                {
                    p++;
                }
                return p;
            }
            p++;
        }
    } while (depth > 0);
    return p;
}

/*
 * Append the object text j without its members whose value is null.
 * Anything but an object of string keys goes in as it is, for the loader
 * to judge.  MG_ERROR: out of memory.
 */
static int
mg_cs_put_entity(mg_cs_buf_t *b, const char *j, size_t n)
{
    const char *p, *end, *k, *v, *ve;
    size_t      start = b->len;
    int         first = 1;

    if (n == 0) {
        return mg_cs_put(b, j, n);
    }
    end = j + n;
    p = mg_cs_ws(j, end);
    if (p == end || *p != '{') {
        goto verbatim;
    }
    if (mg_cs_put(b, "{", 1) != MG_OK) {
        return MG_ERROR;
    }
    p = mg_cs_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            k = p;
            if (p == end || *p != '"' || (p = mg_cs_string(p, end)) == NULL) {
                goto verbatim;
            }
            p = mg_cs_ws(p, end);
            if (p == end || *p != ':') {
                goto verbatim;
            }
            v = mg_cs_ws(p + 1, end);
            if ((ve = mg_cs_value(v, end)) == NULL || ve == v) {
                goto verbatim;
            }
            if (!(ve - v == 4 && memcmp(v, "null", 4) == 0)) {
                if ((!first && mg_cs_put(b, ",", 1) != MG_OK)
                    || mg_cs_put(b, k, (size_t) (ve - k)) != MG_OK)
                {
                    return MG_ERROR;
                }
                first = 0;
            }
            p = mg_cs_ws(ve, end);
            if (p < end && *p == ',') {
                p = mg_cs_ws(p + 1, end);
                continue;
            }
            if (p < end && *p == '}') {
                p++;
                break;
            }
            goto verbatim;
        }
    }
    if (mg_cs_ws(p, end) != end) {
        goto verbatim;
    }
    return mg_cs_put(b, "}", 1);

verbatim:
    b->len = start;
    return mg_cs_put(b, j, n);
}

static int
mg_cs_each(void *data, const mg_store_entity_t *e)
{
    mg_cs_ctx_t *ctx = data;
    size_t       i;

    for (i = 0; i < MG_CS_NTYPES; i++) {
        if (strcmp(e->type, mg_cs_types[i]) == 0) {
            break;
        }
    }
    if (i == MG_CS_NTYPES) {
        return MG_OK;                 /* a plugin's own entity */
    }
    if ((ctx->bufs[i].count++ ? mg_cs_put(&ctx->bufs[i], ",", 1) : MG_OK)
            != MG_OK
        || mg_cs_put_entity(&ctx->bufs[i], e->json.data, e->json.len)
           != MG_OK)
    {
        ctx->oom = 1;
        return MG_ERROR;
    }
    return MG_OK;
}

char *
mg_config_store_document(mg_store_t *s, uint64_t *version, size_t *len,
                         char *err, size_t errlen)
{
    mg_cs_ctx_t    ctx;
    mg_cs_buf_t    doc = { NULL, 0, 0, 0 };
    mg_store_err_t serr;
    size_t         i;
    int            rc, first = 1;

    memset(&ctx, 0, sizeof(ctx));
    rc = mg_store_export(s, mg_cs_each, &ctx, version, &serr);
    if (rc == MG_OK || ctx.oom) {
        static const char head[] = "{\"_format_version\":\"3.0\"";

        if (ctx.oom || mg_cs_put(&doc, head, sizeof(head) - 1) != MG_OK) {
            goto oom;
        }
        for (i = 0; i < MG_CS_NTYPES; i++) {
            char key[64];
            int  n;

            if (ctx.bufs[i].count == 0) {
                continue;
            }
            n = snprintf(key, sizeof(key), ",\"%s\":[", mg_cs_types[i]);
            if (mg_cs_put(&doc, key, (size_t) n) != MG_OK
                || mg_cs_put(&doc, ctx.bufs[i].data, ctx.bufs[i].len) != MG_OK
                || mg_cs_put(&doc, "]", 1) != MG_OK)
            {
                goto oom;
            }
        }
        if (mg_cs_put(&doc, "}", 1) != MG_OK) {
            goto oom;
        }
        first = 0;
    } else {
        snprintf(err, errlen, "cannot read the entity store: %s", serr.msg);
    }
    for (i = 0; i < MG_CS_NTYPES; i++) {
        free(ctx.bufs[i].data);
    }
    if (first) {
        free(doc.data);
        return NULL;
    }
    *len = doc.len;
    return doc.data;

oom:
    for (i = 0; i < MG_CS_NTYPES; i++) {
        free(ctx.bufs[i].data);
    }
    free(doc.data);
    snprintf(err, errlen, "out of memory reading the entity store");
    return NULL;
}

mg_config_t *
mg_config_from_store(mg_store_t *s, uint64_t *version, char *err,
                     size_t errlen)
{
    mg_config_errors_t errs = { NULL, 0, 0 };
    mg_config_t       *cf;
    char              *doc;
    size_t             len, i, n;

    doc = mg_config_store_document(s, version, &len, err, errlen);
    if (doc == NULL) {
        return NULL;
    }
    cf = mg_declarative_load_string(doc, len, &errs);
    free(doc);
    if (cf == NULL) {
        /* the Admin API validated every entity: this is a disagreement
         * between its schemas and the loader, worth every line */
        n = (size_t) snprintf(err, errlen, "the stored configuration does "
                              "not load:");
        for (i = 0; i < errs.n && n < errlen; i++) {
            n += (size_t) snprintf(err + n, errlen - n, "\n  %s",
                                   errs.lines[i]);
        }
    }
    mg_config_errors_free(&errs);
    return cf;
}
