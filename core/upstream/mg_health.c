/*
 * mg_health.c -- healthchecks records, binding a runtime's targets to
 * their words in the arena (mg_health_arena.c), passive reports, the sync
 * into balancers and the Admin API's read.  Active probes are in
 * mg_health_probe.c.  See mg_health.h.
 *
 * The record arrives as compact JSON (mg_upstream_t.healthchecks_json,
 * usually already merged over Kong's defaults by the declarative loader;
 * the Admin API may hand over a partial one).  It is read with libyaml,
 * which reads JSON, over a C struct pre-filled with Kong's defaults, so
 * an empty or partial record gets them too.  Strings in JSON are quoted
 * scalars and numbers, booleans and null plain ones, which is how types
 * are told apart.  Rejected: a JSON library of our own -- libyaml is
 * already linked and the declarative loader trusts it with the same text.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <yaml.h>
#include "mg_health_int.h"
#include "../base/mg_log.h"

#define MG_HEALTH_PATH_MAX    2048   /* http_path */
#define MG_HEALTH_HEADERS_MAX 8192   /* the composed header block */
#define MG_HEALTH_SNI_MAX     253

/* --- Kong's defaults ------------------------------------------------- */

static void
mg_health_statuses_add(mg_health_statuses_t *s, int status)
{
    if (status >= 100 && status <= 999) {
        s->bits[(status - 100) >> 3] |= (uint8_t) (1u << ((status - 100) & 7));
    }
}

static int
mg_health_statuses_has(const mg_health_statuses_t *s, int status)
{
    return status >= 100 && status <= 999
           && (s->bits[(status - 100) >> 3] & (1u << ((status - 100) & 7)));
}

static void
mg_health_statuses_set(mg_health_statuses_t *s, const int *v, size_t n)
{
    size_t i;

    memset(s, 0, sizeof(*s));
    for (i = 0; i < n; i++) {
        mg_health_statuses_add(s, v[i]);
    }
}

static void
mg_health_conf_defaults(mg_health_conf_t *c)
{
    static const int active_ok[] = { 200, 302 };
    static const int active_bad[] = { 429, 404, 500, 501, 502, 503, 504,
                                      505 };
    static const int passive_ok[] = { 200, 201, 202, 203, 204, 205, 206,
                                      207, 208, 226, 300, 301, 302, 303,
                                      304, 305, 306, 307, 308 };
    static const int passive_bad[] = { 429, 500, 503 };

    memset(c, 0, sizeof(*c));
    c->active.type = MG_HEALTH_TYPE_HTTP;
    c->active.timeout = 1;
    c->active.concurrency = 10;
    c->active.http_path = "/";
    c->active.https_verify_certificate = 1;
    c->active.headers = "";
    mg_health_statuses_set(&c->active.healthy.http_statuses, active_ok,
                           mg_nelems(active_ok));
    mg_health_statuses_set(&c->active.unhealthy.http_statuses, active_bad,
                           mg_nelems(active_bad));
    c->passive.type = MG_HEALTH_TYPE_HTTP;
    mg_health_statuses_set(&c->passive.healthy.http_statuses, passive_ok,
                           mg_nelems(passive_ok));
    mg_health_statuses_set(&c->passive.unhealthy.http_statuses, passive_bad,
                           mg_nelems(passive_bad));
}

/* --- reading the record ---------------------------------------------- */

typedef struct {
    yaml_document_t     *doc;
    const mg_upstream_t *u;
    mg_pool_t           *pool;
    char                *err;
    size_t               errlen;
    int                  failed;
} mg_hc_ctx_t;

#define SV(n) ((const char *) (n)->data.scalar.value)
#define SL(n) ((n)->data.scalar.length)

static int
mg_hc_fail(mg_hc_ctx_t *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Only the first problem is kept: the caller refuses the config anyway. */
static int
mg_hc_fail(mg_hc_ctx_t *x, const char *path, const char *fmt, ...)
{
    va_list ap;
    int     n;

    if (!x->failed && x->errlen > 0) {
        n = snprintf(x->err, x->errlen, "upstream \"%.*s\": healthchecks%s%s: ",
                     (int) x->u->name.len, x->u->name.data,
                     path[0] ? "." : "", path);
        if (n >= 0 && (size_t) n < x->errlen) {
            va_start(ap, fmt);
            vsnprintf(x->err + n, x->errlen - n, fmt, ap);
            va_end(ap);
        }
    }
    x->failed = 1;
    return MG_ERROR;
}

static int
mg_hc_is_plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE
           && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static int
mg_hc_is_null(const yaml_node_t *n)
{
    return n == NULL
           || (mg_hc_is_plain(n)
               && (SL(n) == 0 || (SL(n) == 4 && memcmp(SV(n), "null", 4) == 0)
                   || (SL(n) == 1 && SV(n)[0] == '~')));
}

static int
mg_hc_number(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, double *out)
{
    char   buf[64], *end;
    double v;

    if (!mg_hc_is_plain(n) || SL(n) == 0 || SL(n) >= sizeof(buf)) {
        return mg_hc_fail(x, path, "expected a number");
    }
    memcpy(buf, SV(n), SL(n));
    buf[SL(n)] = '\0';
    errno = 0;
    v = strtod(buf, &end);
    if (*end != '\0' || errno != 0 || !isfinite(v)
        || !(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')))
    {
        return mg_hc_fail(x, path, "expected a number");
    }
    *out = v;
    return MG_OK;
}

static int
mg_hc_seconds(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, double *out)
{
    double v;

    if (mg_hc_number(x, n, path, &v) != MG_OK) {
        return MG_ERROR;
    }
    if (v < 0 || v > 65535) {
        return mg_hc_fail(x, path, "value should be between 0 and 65535");
    }
    *out = v;
    return MG_OK;
}

static int
mg_hc_integer(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, double lo,
              double hi, double *out)
{
    double v;

    if (!mg_hc_is_plain(n)) {
        return mg_hc_fail(x, path, "expected an integer");
    }
    if (mg_hc_number(x, n, path, &v) != MG_OK) {
        return MG_ERROR;
    }
    if (v != floor(v)) {
        return mg_hc_fail(x, path, "expected an integer");
    }
    if (v < lo || v > hi) {
        return mg_hc_fail(x, path, "value should be between %.0f and %.0f",
                          lo, hi);
    }
    *out = v;
    return MG_OK;
}

static int
mg_hc_byte(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, unsigned *out)
{
    double v;

    if (mg_hc_integer(x, n, path, 0, 255, &v) != MG_OK) {
        return MG_ERROR;
    }
    *out = (unsigned) v;
    return MG_OK;
}

static int
mg_hc_bool(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, int *out)
{
    if (mg_hc_is_plain(n) && SL(n) == 4 && memcmp(SV(n), "true", 4) == 0) {
        *out = 1;
        return MG_OK;
    }
    if (mg_hc_is_plain(n) && SL(n) == 5 && memcmp(SV(n), "false", 5) == 0) {
        *out = 0;
        return MG_OK;
    }
    return mg_hc_fail(x, path, "expected a boolean");
}

static int
mg_hc_string(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, mg_str_t *out)
{
    if (n->type != YAML_SCALAR_NODE || mg_hc_is_plain(n)) {
        return mg_hc_fail(x, path, "expected a string");
    }
    out->data = SV(n);
    out->len = SL(n);
    return MG_OK;
}

static int
mg_hc_type(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, int *out)
{
    static const char *names[] = { "http", "https", "tcp", "grpc", "grpcs" };
    mg_str_t           s = mg_null_string;
    size_t             i;

    if (mg_hc_string(x, n, path, &s) != MG_OK) {
        return MG_ERROR;
    }
    for (i = 0; i < mg_nelems(names); i++) {
        if (mg_str_eq_lit(s, names[i])) {
            *out = (int) i;
            return MG_OK;
        }
    }
    return mg_hc_fail(x, path, "expected one of: tcp, http, https, grpc, "
                      "grpcs");
}

static int
mg_hc_statuses(mg_hc_ctx_t *x, yaml_node_t *n, const char *path,
               mg_health_statuses_t *out)
{
    mg_health_statuses_t s;
    yaml_node_item_t    *it;
    char                 p[96];
    double               v;

    if (n->type != YAML_SEQUENCE_NODE) {
        return mg_hc_fail(x, path, "expected an array");
    }
    memset(&s, 0, sizeof(s));
    for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++)
    {
        snprintf(p, sizeof(p), "%s[%d]", path,
                 (int) (it - n->data.sequence.items.start) + 1);
        if (mg_hc_integer(x, yaml_document_get_node(x->doc, *it), p, 100,
                          999, &v) != MG_OK)
        {
            return MG_ERROR;
        }
        mg_health_statuses_add(&s, (int) v);
    }
    *out = s;
    return MG_OK;
}

/* RFC 9110 token characters. */
static int
mg_hc_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int
mg_hc_path(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, const char **out)
{
    mg_str_t s = mg_null_string;
    size_t   i;

    if (mg_hc_string(x, n, path, &s) != MG_OK) {
        return MG_ERROR;
    }
    if (s.len == 0 || s.data[0] != '/') {
        return mg_hc_fail(x, path, "should start with: /");
    }
    if (s.len > MG_HEALTH_PATH_MAX) {
        return mg_hc_fail(x, path, "length must be at most %d",
                          MG_HEALTH_PATH_MAX);
    }
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char) s.data[i];
        if (c <= 0x20 || c >= 0x7f) {
            return mg_hc_fail(x, path, "invalid path: contains spaces or "
                              "control characters");
        }
    }
    *out = mg_pool_strndup(x->pool, s.data, s.len);
    return *out ? MG_OK : mg_hc_fail(x, path, "out of memory");
}

static int
mg_hc_sni(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, const char **out)
{
    mg_str_t s = mg_null_string;
    size_t   i;
    int      alpha = 0;

    if (mg_hc_string(x, n, path, &s) != MG_OK) {
        return MG_ERROR;
    }
    if (s.len == 0 || s.len > MG_HEALTH_SNI_MAX) {
        return mg_hc_fail(x, path, "invalid value: %s", "must be a hostname");
    }
    for (i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char) s.data[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '.'))
        {
            return mg_hc_fail(x, path, "invalid value: %s",
                              "must be a hostname");
        }
        alpha |= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    }
    if (!alpha) {
        return mg_hc_fail(x, path, "must not be an IP");
    }
    *out = mg_pool_strndup(x->pool, s.data, s.len);
    return *out ? MG_OK : mg_hc_fail(x, path, "out of memory");
}

/* Kong's typedefs.headers: { "Name": ["value", ...] } -> "Name: value\r\n". */
static int
mg_hc_headers(mg_hc_ctx_t *x, yaml_node_t *n, const char *path,
              const char **out)
{
    yaml_node_pair_t *p;
    yaml_node_item_t *it;
    char             *buf;
    size_t            len = 0, i;
    char              fp[160];

    if (n->type != YAML_MAPPING_NODE) {
        return mg_hc_fail(x, path, "expected a map");
    }
    buf = mg_pool_alloc(x->pool, MG_HEALTH_HEADERS_MAX + 1);
    if (buf == NULL) {
        return mg_hc_fail(x, path, "out of memory");
    }
    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        mg_str_t     name, val = mg_null_string;

        if (k == NULL || k->type != YAML_SCALAR_NODE || SL(k) == 0) {
            return mg_hc_fail(x, path, "invalid header name");
        }
        name.data = SV(k);
        name.len = SL(k);
        snprintf(fp, sizeof(fp), "%s.%.*s", path, (int) mg_min(name.len, 64),
                 name.data);
        for (i = 0; i < name.len; i++) {
            if (!mg_hc_tchar((unsigned char) name.data[i])) {
                return mg_hc_fail(x, fp, "invalid header name");
            }
        }
        if (v == NULL || v->type != YAML_SEQUENCE_NODE) {
            return mg_hc_fail(x, fp, "expected an array");
        }
        for (it = v->data.sequence.items.start;
             it < v->data.sequence.items.top; it++)
        {
            yaml_node_t *e = yaml_document_get_node(x->doc, *it);

            if (e == NULL || mg_hc_string(x, e, fp, &val) != MG_OK) {
                return mg_hc_fail(x, fp, "expected a string");
            }
            for (i = 0; i < val.len; i++) {
                unsigned char c = (unsigned char) val.data[i];
                if ((c < 0x20 && c != '\t') || c == 0x7f) {
                    return mg_hc_fail(x, fp, "invalid header value");
                }
            }
            if (len + name.len + val.len + 4 > MG_HEALTH_HEADERS_MAX) {
                return mg_hc_fail(x, path, "headers too large (at most %d "
                                  "bytes)", MG_HEALTH_HEADERS_MAX);
            }
            memcpy(buf + len, name.data, name.len);
            len += name.len;
            memcpy(buf + len, ": ", 2);
            len += 2;
            memcpy(buf + len, val.data, val.len);
            len += val.len;
            memcpy(buf + len, "\r\n", 2);
            len += 2;
        }
    }
    buf[len] = '\0';
    *out = buf;
    return MG_OK;
}

/* Iterate over the pairs of record n; path names it in errors. */
#define MG_HC_RECORD(x, n, path, body)                                       \
    do {                                                                     \
        yaml_node_pair_t *p_;                                                \
        if ((n)->type != YAML_MAPPING_NODE) {                                \
            return mg_hc_fail((x), (path), "expected a record");             \
        }                                                                    \
        for (p_ = (n)->data.mapping.pairs.start;                             \
             p_ < (n)->data.mapping.pairs.top; p_++)                         \
        {                                                                    \
            yaml_node_t *k_ = yaml_document_get_node((x)->doc, p_->key);     \
            yaml_node_t *v = yaml_document_get_node((x)->doc, p_->value);    \
            char         fp[96];                                             \
            const char  *key;                                                \
            int          rc_ = MG_OK;                                        \
            if (k_ == NULL || k_->type != YAML_SCALAR_NODE) {                \
                return mg_hc_fail((x), (path), "keys must be strings");      \
            }                                                                \
            key = SV(k_);                                                    \
            snprintf(fp, sizeof(fp), "%s%s%.*s", (path), (path)[0] ? "." : "",\
                     (int) mg_min(SL(k_), 40), key);                         \
            if (mg_hc_is_null(v)) {                                          \
                continue;    /* null keeps Kong's default */                 \
            }                                                                \
            body                                                             \
            else {                                                           \
                rc_ = mg_hc_fail((x), fp, "unknown field");                  \
            }                                                                \
            if (rc_ != MG_OK) {                                              \
                return MG_ERROR;                                             \
            }                                                                \
        }                                                                    \
    } while (0)

#define KEY(s) (SL(k_) == sizeof(s) - 1 && memcmp(key, s, sizeof(s) - 1) == 0)

static int
mg_hc_healthy(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, int active,
              mg_health_healthy_t *hy)
{
    MG_HC_RECORD(x, n, path,
        if (active && KEY("interval")) {
            rc_ = mg_hc_seconds(x, v, fp, &hy->interval);
        } else if (KEY("http_statuses")) {
            rc_ = mg_hc_statuses(x, v, fp, &hy->http_statuses);
        } else if (KEY("successes")) {
            rc_ = mg_hc_byte(x, v, fp, &hy->successes);
        });
    return MG_OK;
}

static int
mg_hc_unhealthy(mg_hc_ctx_t *x, yaml_node_t *n, const char *path, int active,
                mg_health_unhealthy_t *uh)
{
    MG_HC_RECORD(x, n, path,
        if (active && KEY("interval")) {
            rc_ = mg_hc_seconds(x, v, fp, &uh->interval);
        } else if (KEY("http_statuses")) {
            rc_ = mg_hc_statuses(x, v, fp, &uh->http_statuses);
        } else if (KEY("tcp_failures")) {
            rc_ = mg_hc_byte(x, v, fp, &uh->tcp_failures);
        } else if (KEY("timeouts")) {
            rc_ = mg_hc_byte(x, v, fp, &uh->timeouts);
        } else if (KEY("http_failures")) {
            rc_ = mg_hc_byte(x, v, fp, &uh->http_failures);
        });
    return MG_OK;
}

static int
mg_hc_active(mg_hc_ctx_t *x, yaml_node_t *n, mg_health_active_conf_t *a)
{
    double d;

    MG_HC_RECORD(x, n, "active",
        if (KEY("type")) {
            rc_ = mg_hc_type(x, v, fp, &a->type);
        } else if (KEY("timeout")) {
            rc_ = mg_hc_seconds(x, v, fp, &a->timeout);
        } else if (KEY("concurrency")) {
            rc_ = mg_hc_integer(x, v, fp, 1, 2147483648.0, &d);
            a->concurrency = rc_ == MG_OK ? (unsigned) mg_min(d, 4294967295.0)
                                          : a->concurrency;
        } else if (KEY("http_path")) {
            rc_ = mg_hc_path(x, v, fp, &a->http_path);
        } else if (KEY("https_sni")) {
            rc_ = mg_hc_sni(x, v, fp, &a->https_sni);
        } else if (KEY("https_verify_certificate")) {
            rc_ = mg_hc_bool(x, v, fp, &a->https_verify_certificate);
        } else if (KEY("headers")) {
            rc_ = mg_hc_headers(x, v, fp, &a->headers);
        } else if (KEY("healthy")) {
            rc_ = mg_hc_healthy(x, v, fp, 1, &a->healthy);
        } else if (KEY("unhealthy")) {
            rc_ = mg_hc_unhealthy(x, v, fp, 1, &a->unhealthy);
        });
    return MG_OK;
}

static int
mg_hc_passive(mg_hc_ctx_t *x, yaml_node_t *n, mg_health_passive_conf_t *ps)
{
    MG_HC_RECORD(x, n, "passive",
        if (KEY("type")) {
            rc_ = mg_hc_type(x, v, fp, &ps->type);
        } else if (KEY("healthy")) {
            rc_ = mg_hc_healthy(x, v, fp, 0, &ps->healthy);
        } else if (KEY("unhealthy")) {
            rc_ = mg_hc_unhealthy(x, v, fp, 0, &ps->unhealthy);
        });
    return MG_OK;
}

static int
mg_hc_top(mg_hc_ctx_t *x, yaml_node_t *n, mg_health_conf_t *c)
{
    double d;

    MG_HC_RECORD(x, n, "",
        if (KEY("active")) {
            rc_ = mg_hc_active(x, v, &c->active);
        } else if (KEY("passive")) {
            rc_ = mg_hc_passive(x, v, &c->passive);
        } else if (KEY("threshold")) {
            rc_ = mg_hc_number(x, v, fp, &d);
            if (rc_ == MG_OK && (d < 0 || d > 100)) {
                rc_ = mg_hc_fail(x, fp, "value should be between 0 and 100");
            }
            c->threshold = rc_ == MG_OK ? d : c->threshold;
        });
    return MG_OK;
}

#undef KEY

/* Parse u's record into c (defaults first).  MG_ERROR with err set. */
static int
mg_health_conf_parse(mg_pool_t *pool, const mg_upstream_t *u,
                     mg_health_conf_t *c, char *err, size_t errlen)
{
    yaml_parser_t   parser;
    yaml_document_t doc;
    yaml_node_t    *root;
    mg_hc_ctx_t     x;
    int             rc = MG_OK;

    mg_health_conf_defaults(c);
    if (u->healthchecks_json.len > 0) {
        memset(&x, 0, sizeof(x));
        x.doc = &doc;
        x.u = u;
        x.pool = pool;
        x.err = err;
        x.errlen = errlen;
        yaml_parser_initialize(&parser);
        yaml_parser_set_input_string(
            &parser, (const unsigned char *) u->healthchecks_json.data,
            u->healthchecks_json.len);
        if (!yaml_parser_load(&parser, &doc)) {
            mg_hc_fail(&x, "", "invalid JSON: %s",
                       parser.problem ? parser.problem : "syntax error");
            yaml_parser_delete(&parser);
            return MG_ERROR;
        }
        root = yaml_document_get_root_node(&doc);
        if (root != NULL && !mg_hc_is_null(root)) {
            rc = mg_hc_top(&x, root, c);
        }
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
        if (rc != MG_OK) {
            return MG_ERROR;
        }
    }

    /* Kong's "is this upstream using health checks". */
    c->active_on = c->active.healthy.interval > 0
                   || c->active.unhealthy.interval > 0;
    c->on = c->active_on || c->passive.unhealthy.tcp_failures > 0
            || c->passive.unhealthy.timeouts > 0
            || c->passive.unhealthy.http_failures > 0;
    return MG_OK;
}

/* --- keys ------------------------------------------------------------ */

/* The check identity: what a verdict is about (see mg_health.h).  The
 * probe's request, never its thresholds or timing. */
static uint64_t
mg_health_check_id(const mg_health_conf_t *c)
{
    const char *sni = c->active.https_sni ? c->active.https_sni : "";
    uint64_t    hv = mg_health_hash_begin();
    uint8_t     type = (uint8_t) c->active.type;

    hv = mg_health_hash_add(hv, "health/1", 8);      /* the word's layout */
    hv = mg_health_hash_add(hv, &type, 1);
    hv = mg_health_hash_add(hv, c->active.http_path,
                            strlen(c->active.http_path));
    hv = mg_health_hash_add(hv, sni, strlen(sni));
    return mg_health_hash_add(hv, c->active.headers,
                              strlen(c->active.headers));
}

/* A target's key: upstream id, host and port (not the target string as
 * written: "h" and "h:8000" are one target), check identity. */
static uint64_t
mg_health_target_key(const mg_health_up_t *up, const mg_target_t *t)
{
    uint64_t hv = mg_health_hash_begin();
    uint8_t  port[2];

    port[0] = (uint8_t) (t->port >> 8);
    port[1] = (uint8_t) t->port;
    hv = mg_health_hash_add(hv, up->upstream->id.data, up->upstream->id.len);
    hv = mg_health_hash_add(hv, t->host.data, t->host.len);
    hv = mg_health_hash_add(hv, port, 2);
    hv = mg_health_hash_add(hv, &up->check, sizeof(up->check));
    return mg_health_hash_end(hv);
}

/* --- create / free ---------------------------------------------------- */

mg_health_t *mg_health_live;

/* Where the targets of an upstream with checks off point: never written
 * (report, set and probes all stop at conf.on first). */
static mg_health_slot_t mg_health_off_slot;

static void mg_health_log_change(const mg_health_t *h, size_t uidx,
                                 size_t idx, int down, const char *why);

/* Checks are off for upstream uidx: forget what a runtime with checks on
 * left in the arena for its targets (see mg_health.h), so turning them
 * on again starts from HEALTHY.  Looks up, never claims. */
static void
mg_health_forget(mg_health_t *h, size_t uidx)
{
    const mg_health_up_t *up = &h->ups[uidx];
    const mg_balancer_t  *b = h->rt->upstreams[up->upstream->index].balancer;
    mg_health_slot_t     *slot;
    uint64_t              old;
    size_t                i;

    for (i = 0; i < up->n; i++) {
        const mg_target_t *t = mg_balancer_target(b, (int) i);

        if (t == NULL
            || (slot = mg_health_arena_find(h->arena,
                                            mg_health_target_key(up, t)))
                   == NULL
            || atomic_load(&slot->word) == 0)
        {
            continue;
        }
        old = atomic_exchange(&slot->word, 0);
        if (old & MG_HEALTH_DOWN) {
            atomic_fetch_add(&h->arena->gen, 1);
            mg_health_log_change(h, uidx, i, 0, "health checks turned off");
        }
    }
}

/* Point every target at its word: claimed in the arena, or a private one
 * when the arena is full. */
static int
mg_health_bind(mg_health_t *h, size_t total, char *err, size_t errlen)
{
    size_t u, i, first_u = 0, first_i = 0;

    h->_slots = calloc(total + 1, sizeof(mg_health_slot_t *));
    if (h->_slots == NULL) {
        snprintf(err, errlen, "out of memory");
        return MG_ERROR;
    }
    for (u = 0; u < h->nups; u++) {
        mg_health_up_t      *up = &h->ups[u];
        const mg_balancer_t *b =
            h->rt->upstreams[up->upstream->index].balancer;

        up->check = mg_health_check_id(&up->conf);
        if (!up->conf.on) {
            for (i = 0; i < up->n; i++) {
                h->_slots[up->first + i] = &mg_health_off_slot;
            }
            mg_health_forget(h, u);
            continue;
        }
        for (i = 0; i < up->n; i++) {
            const mg_target_t *t = mg_balancer_target(b, (int) i);
            mg_health_slot_t  *slot = NULL;

            if (t != NULL) {
                slot = mg_health_arena_claim(h->arena,
                                             mg_health_target_key(up, t));
            }
            if (slot == NULL) {
                if (h->_private == NULL) {
                    h->_private = calloc(total, sizeof(mg_health_slot_t));
                    if (h->_private == NULL) {
                        snprintf(err, errlen, "out of memory");
                        return MG_ERROR;
                    }
                    first_u = u;
                    first_i = i;
                }
                slot = &h->_private[h->_nprivate++];
            }
            h->_slots[up->first + i] = slot;
        }
    }
    if (h->_nprivate > 0) {
        const mg_upstream_t *fu = h->ups[first_u].upstream;
        const mg_target_t   *ft = mg_balancer_target(
            h->rt->upstreams[fu->index].balancer, (int) first_i);

        mg_log_error("health arena full (%zu of %zu slots taken): %zu "
                     "targets keep their health state in this process only, "
                     "the first: upstream \"%.*s\" target \"%.*s\"",
                     mg_health_arena_used(h->arena),
                     mg_health_arena_slots(h->arena), h->_nprivate,
                     (int) fu->name.len, fu->name.data,
                     ft ? (int) ft->target.len : 1, ft ? ft->target.data : "?");
    }
    return MG_OK;
}

mg_health_t *
mg_health_create(mg_runtime_t *rt, char *err, size_t errlen)
{
    mg_health_t *h;
    mg_config_t *cf = rt->cf;
    size_t       i, total = 0;

    if (mg_health_arena_get() == NULL) {
        mg_health_arena_t *a = mg_health_arena_create(0, err, errlen);

        if (a == NULL) {
            return NULL;
        }
        mg_health_arena_set(a);
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->rt = rt;
    h->arena = mg_health_arena_get();
    h->nups = cf->upstreams_n;
    h->pool = mg_pool_create(4096);
    h->ups = calloc(h->nups + 1, sizeof(mg_health_up_t));
    if (h->pool == NULL || h->ups == NULL) {
        snprintf(err, errlen, "out of memory");
        mg_health_free(h);
        return NULL;
    }
    for (i = 0; i < h->nups; i++) {
        mg_health_up_t *up = &h->ups[i];
        mg_upstream_t  *u = cf->upstreams[i];

        up->upstream = u;
        if (mg_health_conf_parse(h->pool, u, &up->conf, err, errlen)
            != MG_OK)
        {
            mg_health_free(h);
            return NULL;
        }
        up->first = total;
        up->n = mg_balancer_size(rt->upstreams[u->index].balancer);
        total += up->n;
    }
    if (mg_health_bind(h, total, err, errlen) != MG_OK) {
        mg_health_free(h);
        return NULL;
    }
    h->_next = mg_health_live;
    if (mg_health_live != NULL) {
        mg_health_live->_prev = h;
    }
    mg_health_live = h;
    return h;
}

void
mg_health_free(mg_health_t *h)
{
    if (h == NULL) {
        return;
    }
    mg_health_stop_active(h);
    if (h->_prev != NULL) {
        h->_prev->_next = h->_next;
    } else if (mg_health_live == h) {
        mg_health_live = h->_next;
    }
    if (h->_next != NULL) {
        h->_next->_prev = h->_prev;
    }
    free(h->_slots);
    free(h->_private);
    free(h->ups);
    if (h->pool) {
        mg_pool_destroy(h->pool);
    }
    free(h);
}

const mg_health_conf_t *
mg_health_conf(const mg_health_t *h, size_t uidx)
{
    return h && uidx < h->nups ? &h->ups[uidx].conf : NULL;
}

/* --- state ------------------------------------------------------------ */

static const char *const mg_health_ctr_name[] = {
    "successes", "TCP failures", "timeouts", "HTTP failures"
};

static void
mg_health_log_change(const mg_health_t *h, size_t uidx, size_t idx,
                     int down, const char *why)
{
    const mg_upstream_t *u = h->ups[uidx].upstream;
    const mg_target_t   *t;

    t = mg_balancer_target(h->rt->upstreams[u->index].balancer, (int) idx);
    mg_log_notice("upstream \"%.*s\" target \"%.*s\" is %s now: %s",
                  (int) u->name.len, u->name.data,
                  t ? (int) t->target.len : 1, t ? t->target.data : "?",
                  down ? "UNHEALTHY" : "HEALTHY", why);
}

void
mg_health_count(mg_health_t *h, size_t uidx, size_t idx, int kind,
                int http_status, int active)
{
    const mg_health_conf_t      *c = &h->ups[uidx].conf;
    const mg_health_healthy_t   *hy;
    const mg_health_unhealthy_t *uh;
    mg_health_slot_t            *slot;
    uint64_t                     old, nw;
    unsigned                     limit, n = 0;
    int                          ctr, flipped;

    hy = active ? &c->active.healthy : &c->passive.healthy;
    uh = active ? &c->active.unhealthy : &c->passive.unhealthy;
    switch (kind) {
    case MG_HEALTH_OK_STATUS:
        ctr = MG_HEALTH_CTR_SUCCESS;
        limit = hy->successes;
        break;
    case MG_HEALTH_TCP_FAILURE:
        ctr = MG_HEALTH_CTR_TCP;
        limit = uh->tcp_failures;
        break;
    case MG_HEALTH_TIMEOUT:
        ctr = MG_HEALTH_CTR_TIMEOUT;
        limit = uh->timeouts;
        break;
    case MG_HEALTH_HTTP_STATUS:
        /* Kong looks at the healthy list first; 0 is a broken response */
        if (mg_health_statuses_has(&hy->http_statuses, http_status)) {
            ctr = MG_HEALTH_CTR_SUCCESS;
            limit = hy->successes;
        } else if (http_status == 0
                   || mg_health_statuses_has(&uh->http_statuses, http_status))
        {
            ctr = MG_HEALTH_CTR_HTTP;
            limit = uh->http_failures;
        } else {
            return;            /* in neither list: ignored */
        }
        break;
    default:
        return;
    }
    if (limit == 0) {
        return;                /* that counter is off (Kong fails fast) */
    }

    slot = h->_slots[h->ups[uidx].first + idx];
    old = atomic_load(&slot->word);
    do {
        int down = (old & MG_HEALTH_DOWN) != 0;

        flipped = 0;
        if (ctr == MG_HEALTH_CTR_SUCCESS) {
            if (!down && (old & MG_HEALTH_FAIL_MASK) == 0) {
                return;        /* fully healthy: nothing to count */
            }
            n = mg_min(MG_HEALTH_CTR_GET(old, ctr) + 1, 255u);
            if (down && n >= limit) {
                nw = 0;
                flipped = 1;
            } else {
                /* a success clears every failure counter */
                nw = (old & MG_HEALTH_DOWN) | n;
            }
        } else {
            if (down && (old & MG_HEALTH_SUCC_MASK) == 0) {
                return;        /* fully unhealthy: nothing to count */
            }
            n = mg_min(MG_HEALTH_CTR_GET(old, ctr) + 1, 255u);
            if (!down && n >= limit) {
                nw = MG_HEALTH_DOWN;
                flipped = 1;
            } else {
                /* a failure clears the success counter only */
                nw = old & ~(MG_HEALTH_SUCC_MASK
                             | (0xffULL << MG_HEALTH_CTR_SHIFT(ctr)));
                nw |= (uint64_t) n << MG_HEALTH_CTR_SHIFT(ctr);
            }
        }
    } while (!atomic_compare_exchange_weak(&slot->word, &old, nw));

    if (flipped) {
        char why[64];

        atomic_fetch_add(&h->arena->gen, 1);
        snprintf(why, sizeof(why), "%u %s (%s health check)", n,
                 mg_health_ctr_name[ctr], active ? "active" : "passive");
        mg_health_log_change(h, uidx, idx, (nw & MG_HEALTH_DOWN) != 0, why);
    }
}

void
mg_health_report(mg_health_t *h, size_t uidx, size_t idx, int kind,
                 int http_status)
{
    if (h == NULL || uidx >= h->nups || idx >= h->ups[uidx].n
        || !h->ups[uidx].conf.on)
    {
        return;
    }
    mg_health_count(h, uidx, idx, kind, http_status, 0);
}

int
mg_health_set(mg_health_t *h, size_t uidx, size_t idx, int healthy)
{
    mg_health_slot_t *slot;
    uint64_t          old;

    if (h == NULL || uidx >= h->nups || idx >= h->ups[uidx].n
        || !h->ups[uidx].conf.on)
    {
        return MG_DECLINED;
    }
    slot = h->_slots[h->ups[uidx].first + idx];
    old = atomic_exchange(&slot->word, healthy ? 0 : MG_HEALTH_DOWN);
    if ((old & MG_HEALTH_DOWN) != (healthy ? 0 : MG_HEALTH_DOWN)) {
        atomic_fetch_add(&h->arena->gen, 1);
        mg_health_log_change(h, uidx, idx, !healthy,
                             "set through the Admin API");
    }
    return MG_OK;
}

int
mg_health_is_healthy(const mg_health_t *h, size_t uidx, size_t idx)
{
    if (h == NULL || uidx >= h->nups || idx >= h->ups[uidx].n) {
        return 1;
    }
    return (mg_health_word(h, uidx, idx) & MG_HEALTH_DOWN) == 0;
}

uint64_t
mg_health_generation(const mg_health_t *h)
{
    return h ? atomic_load(&h->arena->gen) : 0;
}

/* Healthy weight below threshold % of the total: the whole upstream is
 * unhealthy (Kong's healthchecks.threshold). */
static int
mg_health_upstream_below(const mg_health_t *h, size_t uidx)
{
    const mg_health_up_t *up = &h->ups[uidx];
    const mg_balancer_t  *b;
    double                total = 0, healthy = 0;
    size_t                i;

    if (up->conf.threshold <= 0 || up->n == 0) {
        return 0;
    }
    b = h->rt->upstreams[up->upstream->index].balancer;
    for (i = 0; i < up->n; i++) {
        const mg_target_t *t = mg_balancer_target(b, (int) i);
        double             w = t ? t->weight : 0;

        total += w;
        if (!(mg_health_word(h, uidx, i) & MG_HEALTH_DOWN)) {
            healthy += w;
        }
    }
    return healthy * 100.0 < up->conf.threshold * total;
}

void
mg_health_sync(mg_health_t *h, mg_runtime_t *rt)
{
    uint64_t gen;
    size_t   u, i;

    if (h == NULL || rt != h->rt) {
        return;
    }
    /* Read the generation before the words: a change racing with this
     * pass bumps it again and the next sync repeats the pass. */
    gen = atomic_load(&h->arena->gen);
    if (h->_synced && gen == h->_synced_gen) {
        return;
    }
    h->_synced = 1;
    h->_synced_gen = gen;
    h->_sync_passes++;
    for (u = 0; u < h->nups; u++) {
        const mg_health_up_t *up = &h->ups[u];
        mg_balancer_t        *b = rt->upstreams[up->upstream->index].balancer;
        int                   below;

        if (b == NULL || !up->conf.on) {
            continue;
        }
        below = mg_health_upstream_below(h, u);
        for (i = 0; i < up->n; i++) {
            mg_balancer_set_down(b, (int) i,
                                 below || (mg_health_word(h, u, i)
                                           & MG_HEALTH_DOWN));
        }
    }
}

const char *
mg_health_state_name(const mg_health_t *h, size_t uidx, size_t idx)
{
    const mg_upstream_rt_t *urt;

    if (h == NULL || uidx >= h->nups || idx >= h->ups[uidx].n) {
        return NULL;
    }
    urt = &h->rt->upstreams[h->ups[uidx].upstream->index];
    if (urt->peers && idx < urt->npeers && !urt->peers[idx].resolved) {
        return "DNS_ERROR";
    }
    if (!h->ups[uidx].conf.on) {
        return "HEALTHCHECKS_OFF";
    }
    return mg_health_is_healthy(h, uidx, idx) ? "HEALTHY" : "UNHEALTHY";
}

const char *
mg_health_upstream_state_name(const mg_health_t *h, size_t uidx)
{
    const mg_health_up_t *up;
    size_t                i;
    int                   any = 0;

    if (h == NULL || uidx >= h->nups) {
        return NULL;
    }
    up = &h->ups[uidx];
    if (!up->conf.on) {
        return "HEALTHCHECKS_OFF";
    }
    if (up->conf.threshold > 0) {
        return mg_health_upstream_below(h, uidx) ? "UNHEALTHY" : "HEALTHY";
    }
    for (i = 0; i < up->n && !any; i++) {
        any = mg_health_is_healthy(h, uidx, i);
    }
    return any ? "HEALTHY" : "UNHEALTHY";
}

/* --- the Admin API's view ---------------------------------------------- */

/* Is target t the one the Admin API names: as written in the entity, or
 * normalised to host:port ("[v6]:port" for an IPv6 literal)? */
static int
mg_health_target_is(const mg_target_t *t, const char *s, size_t n)
{
    char buf[300];
    int  v6, len;

    if (t->target.len == n && memcmp(t->target.data, s, n) == 0) {
        return 1;
    }
    v6 = memchr(t->host.data, ':', t->host.len) != NULL
         && t->host.len > 0 && t->host.data[0] != '[';
    len = snprintf(buf, sizeof(buf), v6 ? "[%.*s]:%u" : "%.*s:%u",
                   (int) t->host.len, t->host.data, (unsigned) t->port);
    return len > 0 && (size_t) len == n && memcmp(buf, s, n) == 0;
}

int
mg_health_target_status(const char *upstream, size_t ul, const char *target,
                         size_t tl, int *healthy)
{
    const mg_health_t *h;
    size_t             u, i;

    /* the newest instance that has the upstream answers, even "no such
     * target": an older one is a config on its way out */
    for (h = mg_health_live; h != NULL; h = h->_next) {
        for (u = 0; u < h->nups; u++) {
            const mg_health_up_t *up = &h->ups[u];
            const mg_upstream_t  *us = up->upstream;
            const mg_balancer_t  *b;

            if (!(us->id.len == ul && memcmp(us->id.data, upstream, ul) == 0)
                && !(us->name.len == ul
                     && memcmp(us->name.data, upstream, ul) == 0))
            {
                continue;
            }
            if (!up->conf.on) {
                return MG_DECLINED;
            }
            b = h->rt->upstreams[us->index].balancer;
            for (i = 0; i < up->n; i++) {
                const mg_target_t *t = mg_balancer_target(b, (int) i);

                if (t != NULL && mg_health_target_is(t, target, tl)) {
                    *healthy = (mg_health_word(h, u, i) & MG_HEALTH_DOWN) == 0;
                    return MG_OK;
                }
            }
            return MG_DECLINED;
        }
    }
    return MG_DECLINED;
}
