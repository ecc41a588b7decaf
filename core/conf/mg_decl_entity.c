/*
 * mg_decl_entity.c -- one walker per declarative entity: services (with
 * the url shorthand), routes, upstreams, targets, consumers, plugins,
 * certificates, snis and ca_certificates.  Each walker applies Kong's
 * defaults, reads every field it knows (anything else is "unknown field"),
 * checks Kong's cross-field rules, registers the entity's id and unique
 * keys, then walks its nested children with itself as their parent.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include "mg_decl.h"

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

/* --- entities ------------------------------------------------------------ */


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
    if (memchr(h, '?', (size_t) (end - h)) ||
        memchr(h, '#', (size_t) (end - h))) {
        *why = "query strings and fragments are not supported";
        return 0;
    }
    for (pe = h; pe < end && *pe != '/'; pe++) {}
    if (memchr(h, '@', (size_t) (pe - h))) {
        *why = "credentials in the url are not supported";
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

void
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
    s = mg_decl_new(ctx, MG_DECL_SERVICE, sizeof(*s), label);
    if (s == NULL) return;
    mg_str_set(&s->protocol, "http");
    s->retries = 5;
    s->connect_timeout = s->write_timeout = s->read_timeout = 60000;
    s->enabled = 1;
    s->tls_verify = -1;
    s->tls_verify_depth = -1;
    s->created_at = s->updated_at = ctx->now;
    c = (mg_decl_common_t){&s->id, &s->tags, &s->created_at, &s->updated_at};

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

            mg_decl_ref(ctx, v, label, "client_certificate",
                        MG_DECL_CERTIFICATE, NULL, &key);
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
    s->port =
        (uint16_t) (port >= 0 ? port : mg_decl_default_port(s->protocol));
    if (s->path.len && !mg_str_eq_lit(s->protocol, "http")
        && !mg_str_eq_lit(s->protocol, "https"))
    {
        mg_decl_err(ctx, label,
                    "path: value must be null when 'protocol' is not "
                    "'http' or 'https'");
    }
    mg_decl_unique(ctx, MG_DECL_SERVICE, "name", s->name, s, label);
    if (s->name.len) {
        mg_decl_register(ctx, MG_DECL_SERVICE, s, &s->id, s->name.data,
                         s->name.len, label);
    } else {
        size_t      cl;
        const char *ck = mg_decl_content_key(ctx, n, NULL, &cl);

        mg_decl_register(ctx, MG_DECL_SERVICE, s, &s->id, ck, cl, label);
    }

    me.type = MG_DECL_SERVICE;
    me.ptr = s;
    me.id = mg_pool_strndup(ctx->tmp, s->id.data, s->id.len);
    mg_decl_each(ctx, routes, label, "routes", MG_DECL_ROUTE, mg_decl_route,
                 &me);
    mg_decl_each(ctx, plugins, label, "plugins", MG_DECL_PLUGIN,
                 mg_decl_plugin, &me);
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
            && mg_decl_scalar_kind(hv) == MG_DECL_SK_STR)
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

void
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

    r = mg_decl_new(ctx, MG_DECL_ROUTE, sizeof(*r), label);
    if (r == NULL) return;
    r->index = ctx->ents[MG_DECL_ROUTE].n - 1;
    r->protocols.elts = mg_decl_route_protocols_def;
    r->protocols.n = mg_nelems(mg_decl_route_protocols_def);
    r->https_redirect_status_code = 426;
    r->strip_path = 1;
    r->request_buffering = r->response_buffering = 1;
    mg_str_set(&r->path_handling, "v0");
    r->created_at = r->updated_at = ctx->now;
    if (parent && parent->type == MG_DECL_SERVICE) {
        r->service = parent->ptr;
    }
    c = (mg_decl_common_t){&r->id, &r->tags, &r->created_at, &r->updated_at};

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
            if (parent && parent->type == MG_DECL_SERVICE) {
                if (!mg_decl_is_null(v)) {
                    mg_decl_err(ctx, label, "service: cannot be set on a "
                                "nested route (it takes its parent's)");
                }
            } else {
                mg_decl_ref(ctx, v, label, "service", MG_DECL_SERVICE,
                            (void **) &r->service, &svc_key);
            }
        } else if (KEY("plugins")) {
            plugins = v;
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    mg_decl_route_check(ctx, r, label, has_sources);
    mg_decl_unique(ctx, MG_DECL_ROUTE, "name", r->name, r, label);
    if (r->name.len) {
        mg_decl_register(ctx, MG_DECL_ROUTE, r, &r->id, r->name.data,
                         r->name.len, label);
    } else {
        size_t      cl;
        const char *pid =
            parent && parent->type == MG_DECL_SERVICE ? parent->id
            : svc_key.len
                ? mg_pool_strndup(ctx->tmp, svc_key.data, svc_key.len)
                : NULL;
        const char *ck = mg_decl_content_key(ctx, n, pid, &cl);

        mg_decl_register(ctx, MG_DECL_ROUTE, r, &r->id, ck, cl, label);
    }
    me.type = MG_DECL_ROUTE;
    me.ptr = r;
    me.id = mg_pool_strndup(ctx->tmp, r->id.data, r->id.len);
    mg_decl_each(ctx, plugins, label, "plugins", MG_DECL_PLUGIN,
                 mg_decl_plugin, &me);
}

void
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
    u = mg_decl_new(ctx, MG_DECL_UPSTREAM, sizeof(*u), label);
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
            mg_decl_ref(ctx, v, label, "client_certificate",
                        MG_DECL_CERTIFICATE, NULL, NULL);
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

    mg_decl_unique(ctx, MG_DECL_UPSTREAM, "name", u->name, u, label);
    mg_decl_register(ctx, MG_DECL_UPSTREAM, u, &u->id, u->name.data,
                     u->name.len, label);
    me.type = MG_DECL_UPSTREAM;
    me.ptr = u;
    me.id = mg_pool_strndup(ctx->tmp, u->id.data, u->id.len);
    mg_decl_each(ctx, targets, label, "targets", MG_DECL_TARGET,
                 mg_decl_target, &me);
}

void
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

    t = mg_decl_new(ctx, MG_DECL_TARGET, sizeof(*t), label);
    if (t == NULL) return;
    t->weight = 100;
    t->port = 8000;
    t->created_at = ctx->now;
    if (parent && parent->type == MG_DECL_UPSTREAM) {
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
            if (parent && parent->type == MG_DECL_UPSTREAM) {
                if (!mg_decl_is_null(v)) {
                    mg_decl_err(ctx, label, "upstream: cannot be set on a "
                                "nested target (it takes its parent's)");
                }
            } else {
                has_upstream = !mg_decl_is_null(v);
                mg_decl_ref(ctx, v, label, "upstream", MG_DECL_UPSTREAM,
                            (void **) &t->upstream, &up_key);
            }
        } else {
            mg_decl_unknown(ctx, label, k);
        }
    }
    if (!(parent && parent->type == MG_DECL_UPSTREAM) && !has_upstream) {
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
    mg_decl_register(ctx, MG_DECL_TARGET, t, &t->id, key, strlen(key), label);
}

void
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
    cs = mg_decl_new(ctx, MG_DECL_CONSUMER, sizeof(*cs), label);
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
    mg_decl_unique(ctx, MG_DECL_CONSUMER, "username", cs->username, cs, label);
    mg_decl_unique(ctx, MG_DECL_CONSUMER, "custom_id", cs->custom_id, cs,
                   label);
    if (cs->username.len) {
        mg_decl_register(ctx, MG_DECL_CONSUMER, cs, &cs->id, cs->username.data,
                         cs->username.len, label);
    } else {
        char key[1024];

        snprintf(key, sizeof(key), "custom_id:%.*s", (int) cs->custom_id.len,
                 cs->custom_id.data);
        mg_decl_register(ctx, MG_DECL_CONSUMER, cs, &cs->id, key, strlen(key),
                         label);
    }
    me.type = MG_DECL_CONSUMER;
    me.ptr = cs;
    me.id = mg_pool_strndup(ctx->tmp, cs->id.data, cs->id.len);
    mg_decl_each(ctx, plugins, label, "plugins", MG_DECL_PLUGIN,
                 mg_decl_plugin, &me);
}

void
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
    static const int scope_type[3] = {MG_DECL_ROUTE, MG_DECL_SERVICE,
                                      MG_DECL_CONSUMER};
    int               i;

    pl = mg_decl_new(ctx, MG_DECL_PLUGIN, sizeof(*pl), label);
    if (pl == NULL) return;
    pl->enabled = 1;
    pl->protocols.elts = mg_decl_plugin_protocols_def;
    pl->protocols.n = mg_nelems(mg_decl_plugin_protocols_def);
    pl->created_at = ctx->now;
    if (parent) {
        if (parent->type == MG_DECL_ROUTE) pl->route = parent->ptr;
        if (parent->type == MG_DECL_SERVICE) pl->service = parent->ptr;
        if (parent->type == MG_DECL_CONSUMER) pl->consumer = parent->ptr;
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
    mg_decl_unique(ctx, MG_DECL_PLUGIN, "instance_name", pl->instance_name, pl,
                   label);
    /* Kong's cache key: one plugin of a name per route/service/consumer. */
    snprintf(key, sizeof(key), "%.*s:%.*s:%.*s:%.*s", (int) pl->name.len,
             pl->name.data, (int) scope[0].len, scope[0].data,
             (int) scope[1].len, scope[1].data, (int) scope[2].len,
             scope[2].data);
    mg_decl_register(ctx, MG_DECL_PLUGIN, pl, &pl->id, key, strlen(key),
                     label);
}

static int
mg_decl_pem(mg_str_t s, const char *what)
{
    char begin[64];

    snprintf(begin, sizeof(begin), "-----BEGIN %s", what);
    return memmem(s.data, s.len, begin, strlen(begin)) != NULL
           && memmem(s.data, s.len, "-----END ", 9) != NULL;
}

void
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
    ct = mg_decl_new(ctx, MG_DECL_CERTIFICATE, sizeof(*ct), label);
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
    mg_decl_register(ctx, MG_DECL_CERTIFICATE, ct, &ct->id, ck, cl, label);

    me.type = MG_DECL_CERTIFICATE;
    me.ptr = ct;
    me.id = mg_pool_strndup(ctx->tmp, ct->id.data, ct->id.len);
    mg_decl_each(ctx, snis, label, "snis", MG_DECL_SNI, mg_decl_sni, &me);
}

void
mg_decl_sni(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
            const mg_decl_parent_t *parent)
{
    mg_sni_t        *sn;
    const char      *k, *why;
    size_t           kl;
    yaml_node_t     *v;
    mg_decl_common_t c;
    int              nested = parent && parent->type == MG_DECL_CERTIFICATE;
    int              has_cert = 0;

    sn = mg_decl_new(ctx, MG_DECL_SNI, sizeof(*sn), label);
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
                    mg_decl_ref(ctx, v, label, "certificate",
                                MG_DECL_CERTIFICATE,
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
    mg_decl_unique(ctx, MG_DECL_SNI, "name", sn->name, sn, label);
    mg_decl_register(ctx, MG_DECL_SNI, sn, &sn->id, sn->name.data,
                     sn->name.len, label);
}

void
mg_decl_ca_certificate(mg_decl_ctx_t *ctx, yaml_node_t *n, const char *label,
                       const mg_decl_parent_t *parent)
{
    mg_ca_certificate_t *ca;
    const char          *k, *ck;
    size_t               kl, cl;
    yaml_node_t         *v;
    mg_decl_common_t     c;

    (void) parent;
    ca = mg_decl_new(ctx, MG_DECL_CA_CERTIFICATE, sizeof(*ca), label);
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
    mg_decl_register(ctx, MG_DECL_CA_CERTIFICATE, ca, &ca->id, ck, cl, label);
}
