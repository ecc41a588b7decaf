/*
 * mg_config.h -- the entity snapshot: services, routes, upstreams, targets,
 * consumers, plugins, certificates, snis and ca_certificates, with Kong's
 * field names and defaults.
 *
 * A snapshot is immutable once built and owns one arena: every string and
 * array below lives in cf->pool and dies with mg_config_free().  References
 * between entities are resolved to pointers at load time (a route's
 * service, a target's upstream, a service whose host names an upstream), so
 * the request path never looks anything up by name.
 *
 * Built by mg_declarative_load() from a `_format_version: "3.0"` file (and
 * later by the LMDB store); the router and balancers are built from it.
 * Rejected: a generic tree of values -- typed structs make the hot path
 * plain field reads, and the loader is the single place that knows YAML.
 */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H

#include "../mg_core.h"
#include "../base/mg_pool.h"

typedef struct {
    mg_str_t *elts;
    size_t    n;
} mg_str_array_t;

typedef struct mg_upstream_s mg_upstream_t;

typedef struct mg_service_s {
    mg_str_t        id;              /* uuid, generated when absent */
    mg_str_t        name;            /* may be empty */
    mg_str_t        protocol;        /* "http" (default), "https", ... */
    mg_str_t        host;            /* hostname, IP, or an upstream name */
    uint16_t        port;            /* default 80, 443 for https */
    mg_str_t        path;            /* empty when unset; starts with '/' */
    int             retries;         /* default 5 */
    int             connect_timeout; /* ms, default 60000 */
    int             write_timeout;   /* ms, default 60000 */
    int             read_timeout;    /* ms, default 60000 */
    int             enabled;         /* default 1 */
    int             tls_verify;      /* -1 unset (use default), 0, 1 */
    int             tls_verify_depth;/* -1 unset */
    mg_str_array_t  ca_certificates; /* ids */
    mg_str_t        client_certificate; /* certificate id or empty */
    mg_str_array_t  tags;
    int64_t         created_at;
    int64_t         updated_at;
    mg_upstream_t  *upstream;        /* set when host names an upstream */
    size_t          index;           /* position in cf->services (set by the
                                        runtime that consumes the snapshot) */
} mg_service_t;

typedef struct {
    mg_str_t        name;            /* as given; compared case-insensitively */
    mg_str_array_t  values;          /* a value "~*re" is a regex (Kong) */
} mg_route_header_t;

typedef struct mg_route_s {
    mg_str_t            id;
    mg_str_t            name;
    mg_service_t       *service;     /* NULL when the route has none */
    mg_str_array_t      protocols;   /* default ["http","https"] */
    mg_str_array_t      methods;
    mg_str_array_t      hosts;       /* "example.com", "*.example.com",
                                        "example.*", optional ":port" */
    mg_str_array_t      paths;       /* "/prefix" or "~/regex" */
    mg_route_header_t  *headers;
    size_t              nheaders;
    mg_str_array_t      snis;
    int                 https_redirect_status_code; /* default 426 */
    int                 regex_priority;  /* default 0 */
    int                 strip_path;      /* default 1 */
    int                 preserve_host;   /* default 0 */
    int                 request_buffering;  /* default 1 */
    int                 response_buffering; /* default 1 */
    mg_str_t            path_handling;   /* "v0" (default) or "v1" */
    mg_str_array_t      tags;
    int64_t             created_at;
    int64_t             updated_at;
    size_t              index;           /* position in cf->routes */
} mg_route_t;

typedef struct mg_target_s {
    mg_str_t        id;
    mg_str_t        target;          /* "host:port" as given */
    mg_str_t        host;            /* split from target */
    uint16_t        port;            /* default 8000 as Kong */
    int             weight;          /* 0..65535, default 100 */
    mg_str_array_t  tags;
    int64_t         created_at;
    mg_upstream_t  *upstream;
} mg_target_t;

struct mg_upstream_s {
    mg_str_t        id;
    mg_str_t        name;            /* a virtual hostname */
    mg_str_t        algorithm;       /* "round-robin" (default) ... */
    int             slots;           /* default 10000 */
    mg_str_t        hash_on;         /* default "none" */
    mg_str_t        hash_fallback;   /* default "none" */
    mg_str_t        hash_on_header;
    mg_str_t        hash_fallback_header;
    mg_str_t        hash_on_cookie;
    mg_str_t        hash_on_cookie_path; /* default "/" */
    mg_str_t        hash_on_query_arg;
    mg_str_t        hash_fallback_query_arg;
    mg_str_t        hash_on_uri_capture;
    mg_str_t        hash_fallback_uri_capture;
    mg_str_t        host_header;     /* empty when unset */
    mg_str_t        healthchecks_json; /* the healthchecks record as JSON */
    mg_str_array_t  tags;
    int64_t         created_at;
    mg_target_t   **targets;         /* weight > 0 and weight == 0 both */
    size_t          ntargets;
    size_t          index;           /* position in cf->upstreams (runtime) */
};

typedef struct mg_consumer_s {
    mg_str_t        id;
    mg_str_t        username;
    mg_str_t        custom_id;
    mg_str_array_t  tags;
    int64_t         created_at;
} mg_consumer_t;

typedef struct mg_plugin_s {
    mg_str_t        id;
    mg_str_t        name;
    mg_str_t        instance_name;
    mg_str_t        config_json;     /* the "config" record re-encoded as JSON
                                        ("{}" when absent) */
    int             enabled;         /* default 1 */
    mg_str_array_t  protocols;       /* default grpc,grpcs,http,https */
    mg_route_t     *route;           /* scope; NULL = any */
    mg_service_t   *service;
    mg_consumer_t  *consumer;
    mg_str_array_t  tags;
    int64_t         created_at;
} mg_plugin_t;

typedef struct mg_certificate_s {
    mg_str_t        id;
    mg_str_t        cert;            /* PEM */
    mg_str_t        key;             /* PEM; never logged */
    mg_str_t        cert_alt;
    mg_str_t        key_alt;
    mg_str_array_t  tags;
    int64_t         created_at;
} mg_certificate_t;

typedef struct mg_sni_s {
    mg_str_t           id;
    mg_str_t           name;         /* "example.com" or "*.example.com" */
    mg_certificate_t  *certificate;
    mg_str_array_t     tags;
    int64_t            created_at;
} mg_sni_t;

typedef struct mg_ca_certificate_s {
    mg_str_t        id;
    mg_str_t        cert;
    mg_str_t        cert_digest;
    mg_str_array_t  tags;
    int64_t         created_at;
} mg_ca_certificate_t;

#define MG_CONFIG_ENTITY_LIST(n) \
    mg_##n##_t   **n##s;         \
    size_t         n##s_n

struct mg_config_s {
    mg_pool_t      *pool;
    uint64_t        version;         /* increases with every new snapshot */
    mg_str_t        format_version;  /* "3.0" */
    MG_CONFIG_ENTITY_LIST(service);
    MG_CONFIG_ENTITY_LIST(route);
    MG_CONFIG_ENTITY_LIST(upstream);
    MG_CONFIG_ENTITY_LIST(target);
    MG_CONFIG_ENTITY_LIST(consumer);
    MG_CONFIG_ENTITY_LIST(plugin);
    MG_CONFIG_ENTITY_LIST(certificate);
    MG_CONFIG_ENTITY_LIST(sni);
    MG_CONFIG_ENTITY_LIST(ca_certificate);
};

/*
 * Errors found while loading: one line per problem, naming the entity and
 * the field, e.g. "routes[2] (name=r1): paths[0]: must start with / or ~".
 */
typedef struct {
    char   **lines;
    size_t   n;
    size_t   cap;
} mg_config_errors_t;

void mg_config_errors_add(mg_config_errors_t *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void mg_config_errors_free(mg_config_errors_t *errs);

/* An empty snapshot (no entities) owning a fresh arena; NULL on ENOMEM. */
mg_config_t *mg_config_new(void);
void mg_config_free(mg_config_t *cf);

/*
 * Load a declarative file (YAML or JSON, chosen by content; JSON is read
 * with the YAML parser).  Returns a snapshot, or NULL with every problem
 * found appended to errs (the loader does not stop at the first).
 */
mg_config_t *mg_declarative_load_file(const char *path, mg_config_errors_t *errs);
mg_config_t *mg_declarative_load_string(const char *text, size_t len,
                                        mg_config_errors_t *errs);

#endif /* MG_CONFIG_H */
