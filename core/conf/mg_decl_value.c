/*
 * mg_decl_value.c -- the declarative loader's values: YAML scalars typed
 * by YAML 1.2's core schema, typed field readers, Kong's checks for names,
 * hosts, paths, methods and regexes (PCRE2), compact JSON encoding of a
 * node (with nested defaults laid under it) and name-based UUIDs.
 *
 * SHA-1 is written out here (RFC 3174) rather than taken from mbedTLS:
 * TLS libraries stay behind core/tls, and hashing a few names per load
 * needs no speed.  See mg_decl.h for the reader conventions.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include "mg_decl.h"

/* --- SHA-1 and name-based UUIDs (RFC 4122 version 5) -------------------- */

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

int
mg_decl_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 8-4-4-4-12 hex digits. */
int
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
void
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


/* --- scalars ------------------------------------------------------------- */


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

mg_decl_sk_e
mg_decl_scalar_kind(yaml_node_t *n)
{
    const char *s = SV(n);
    size_t      l = SL(n);
    int         f;

    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return MG_DECL_SK_STR;
    }
    if (l == 0 || (l == 1 && s[0] == '~') || strcmp(s, "null") == 0
        || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
    {
        return MG_DECL_SK_NULL;
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0
        || strcmp(s, "TRUE") == 0)
    {
        return MG_DECL_SK_TRUE;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0
        || strcmp(s, "FALSE") == 0)
    {
        return MG_DECL_SK_FALSE;
    }
    if (mg_decl_is_json_number(s, l, &f)) {
        return f ? MG_DECL_SK_FLOAT : MG_DECL_SK_INT;
    }
    if (mg_decl_is_yaml_int(s, l)) {
        return MG_DECL_SK_INT;
    }
    return MG_DECL_SK_STR;
}

int
mg_decl_is_null(yaml_node_t *n)
{
    return n == NULL || (n->type == YAML_SCALAR_NODE &&
                         mg_decl_scalar_kind(n) == MG_DECL_SK_NULL);
}

const char *
mg_decl_node_what(yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE) return "a record";
    if (n->type == YAML_SEQUENCE_NODE) return "an array";
    switch (mg_decl_scalar_kind(n)) {
    case MG_DECL_SK_NULL: return "null";
    case MG_DECL_SK_TRUE: case MG_DECL_SK_FALSE: return "a boolean";
    case MG_DECL_SK_INT: case MG_DECL_SK_FLOAT: return "a number";
    default: return "a string";
    }
}

/* Scalar mapping value of key in a mapping node, or NULL. */
yaml_node_t *
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
int
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


/* --- typed field readers: 1 set, 0 absent/null, -1 error ----------------- */

int
mg_decl_str(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
            const char *field, mg_str_t *out)
{
    if (mg_decl_is_null(v)) {
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE ||
        mg_decl_scalar_kind(v) != MG_DECL_SK_STR) {
        mg_decl_err(ctx, label, "%s: expected a string, got %s", field,
                    mg_decl_node_what(v));
        return -1;
    }
    *out = mg_pool_str(ctx->cf->pool, SV(v), SL(v));
    return 1;
}

int
mg_decl_int(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
            const char *field, long long min, long long max, long long *out)
{
    long long n;
    char     *end;

    if (mg_decl_is_null(v)) {
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE ||
        mg_decl_scalar_kind(v) != MG_DECL_SK_INT) {
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

void
mg_decl_int_field(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                  const char *field, long long min, long long max, int *out)
{
    long long n;

    if (mg_decl_int(ctx, v, label, field, min, max, &n) == 1) {
        *out = (int) n;
    }
}

void
mg_decl_time_field(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
                   const char *field, int64_t *out)
{
    long long n;

    /* Kong writes targets' timestamps with milliseconds (1700000000.123):
     * a non-negative number is taken, truncated to seconds */
    if (!mg_decl_is_null(v) && v->type == YAML_SCALAR_NODE
        && mg_decl_scalar_kind(v) == MG_DECL_SK_FLOAT)
    {
        double d = strtod(SV(v), NULL);

        if (d >= 0 && d < 9.2e18) {
            *out = (int64_t) d;
            return;
        }
    }
    if (mg_decl_int(ctx, v, label, field, 0, INT64_MAX, &n) == 1) {
        *out = n;
    }
}

void
mg_decl_bool(mg_decl_ctx_t *ctx, yaml_node_t *v, const char *label,
             const char *field, int *out)
{
    mg_decl_sk_e kind;

    if (mg_decl_is_null(v)) {
        return;
    }
    kind =
        v->type == YAML_SCALAR_NODE ? mg_decl_scalar_kind(v) : MG_DECL_SK_STR;
    if (v->type != YAML_SCALAR_NODE ||
        (kind != MG_DECL_SK_TRUE && kind != MG_DECL_SK_FALSE)) {
        mg_decl_err(ctx, label, "%s: expected a boolean, got %s", field,
                    mg_decl_node_what(v));
        return;
    }
    *out = kind == MG_DECL_SK_TRUE;
}

int
mg_decl_one_of(mg_str_t s, const char *const *set)
{
    for (; *set; set++) {
        if (mg_str_eq_lit(s, *set)) {
            return 1;
        }
    }
    return 0;
}

void
mg_decl_set_list(char *buf, size_t len, const char *const *set)
{
    size_t n = 0;

    buf[0] = '\0';
    for (; *set && n < len; set++) {
        n += (size_t) snprintf(buf + n, len - n, "%s%s", n ? ", " : "", *set);
    }
}

int
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


int
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
            || mg_decl_scalar_kind(e) != MG_DECL_SK_STR)
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
        }
        /* Kept even when invalid: later checks see the field as set. */
        out->elts[out->n++] = s;
    }
    return bad ? -1 : 1;
}

/* --- checkers ------------------------------------------------------------ */

const char *
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

const char *
mg_decl_check_uuid(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                   const char *f)
{
    (void) ctx; (void) l; (void) f;
    return mg_decl_is_uuid(s.data, s.len) ? NULL : "expected a valid UUID";
}

/* Kong's utf8_name: letters, digits, '.', '-', '_', '~', any UTF-8. */
const char *
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


/*
 * Hostname, IPv4 or IPv6 (bracketed when a port follows); with flags, a
 * ":port" suffix and one '*' as the leftmost or rightmost label.  Returns
 * NULL when valid, else Kong's wording of the problem.
 */
const char *
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

const char *
mg_decl_check_route_host(mg_decl_ctx_t *ctx, mg_str_t s, const char *l,
                         const char *f)
{
    (void) ctx; (void) l; (void) f;
    return mg_decl_check_host(s.data, s.len, MG_HOST_WILDCARD | MG_HOST_PORT);
}

const char *
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

const char *
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

const char *
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

const char *
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

void
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
    case MG_DECL_SK_NULL: PUTS(b, "null"); return;
    case MG_DECL_SK_TRUE: PUTS(b, "true"); return;
    case MG_DECL_SK_FALSE: PUTS(b, "false"); return;
    case MG_DECL_SK_INT:
    case MG_DECL_SK_FLOAT:
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
void
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
int
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
