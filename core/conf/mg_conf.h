/*
 * mg_conf.h -- moongate.conf: Kong-style `key = value` properties.
 *
 * Sources, later wins: built-in defaults, the file given with -c (or
 * <prefix>/moongate.conf when it exists), then MOONGATE_<NAME> environment
 * variables (upper-cased property name).  Unknown keys and malformed values
 * are rejected with a message naming the key, the source and the line.
 *
 * The result is a plain struct read by the master at start and reload and
 * copied into every worker by fork(); it owns its strings in conf->pool.
 * Sizes are in bytes ("8k", "10m", "1g" accepted), times in milliseconds
 * ("60s", "500ms", "1m", bare numbers are seconds as in nginx).
 */
#ifndef MG_CONF_H
#define MG_CONF_H

#include <sys/socket.h>
#include "../mg_core.h"
#include "../base/mg_pool.h"

#define MG_CONF_MAX_LISTEN 16

typedef struct {
    struct sockaddr_storage addr;
    socklen_t               addrlen;
    mg_str_t                text;        /* "127.0.0.1:8000" as written */
    unsigned                ssl:1;
    unsigned                reuseport:1;
    unsigned                http2:1;
    unsigned                proxy_protocol:1;
    unsigned                deferred:1;
    unsigned                bind:1;
    int                     backlog;     /* default 511, "backlog=N" */
} mg_listen_t;

typedef struct {
    mg_listen_t             elts[MG_CONF_MAX_LISTEN];
    size_t                  n;           /* 0 when "off" */
} mg_listen_list_t;

/* Bits of the `headers` property (Kong names). */
#define MG_HDR_SERVER                 0x0001  /* Server on gateway answers */
#define MG_HDR_VIA                    0x0002
#define MG_HDR_PROXY_LATENCY          0x0004  /* X-Kong-Proxy-Latency */
#define MG_HDR_UPSTREAM_LATENCY       0x0008  /* X-Kong-Upstream-Latency */
#define MG_HDR_RESPONSE_LATENCY       0x0010  /* X-Kong-Response-Latency */
#define MG_HDR_UPSTREAM_STATUS        0x0020  /* X-Kong-Upstream-Status */
#define MG_HDR_REQUEST_ID             0x0040  /* X-Kong-Request-Id */
#define MG_HDR_ADMIN_LATENCY          0x0080
#define MG_HDR_SERVER_TOKENS  (MG_HDR_SERVER | MG_HDR_VIA)
#define MG_HDR_LATENCY_TOKENS (MG_HDR_PROXY_LATENCY | MG_HDR_UPSTREAM_LATENCY \
                               | MG_HDR_RESPONSE_LATENCY | MG_HDR_ADMIN_LATENCY)

struct mg_conf_s {
    mg_pool_t        *pool;
    const char       *conf_path;         /* file read, or NULL */

    /* processes and files */
    const char       *prefix;            /* default /usr/local/moongate */
    int               worker_processes;  /* "auto" = number of cores */
    const char       *declarative_config;/* NULL when unset */
    const char       *database;          /* "off" or "lmdb" (default) */
    int               log_level;         /* MG_LOG_*, default notice */
    const char       *proxy_access_log;  /* "logs/access.log", "off" */
    const char       *proxy_error_log;   /* "logs/error.log" */
    const char       *admin_access_log;
    const char       *admin_error_log;
    const char       *pid_file;          /* <prefix>/pids/moongate.pid */

    /* listeners */
    mg_listen_list_t  proxy_listen;      /* 0.0.0.0:8000 reuseport */
    mg_listen_list_t  admin_listen;      /* 127.0.0.1:8001 reuseport */
    mg_listen_list_t  status_listen;     /* off */
    mg_listen_list_t  cluster_listen;    /* 0.0.0.0:8005; opened by a
                                            control plane only */

    /* client side limits (nginx_http_* equivalents accepted as aliases) */
    size_t            client_max_body_size;    /* 0 = unlimited */
    size_t            client_body_buffer_size; /* default 8k */
    size_t            client_header_buffer_size;   /* 1k: first read size */
    size_t            large_client_header_buffer;  /* 8k: max request line */
    size_t            large_client_header_buffers; /* count, default 4 */
    int               max_req_headers;   /* lua_max_req_headers, default 100 */
    int               client_header_timeout;   /* ms, default 60000 */
    int               client_body_timeout;     /* ms, default 60000 */
    int               keepalive_timeout;       /* ms, default 75000 */
    int               keepalive_requests;      /* default 10000 */
    int               send_timeout;            /* ms, default 60000 */

    /* upstream keep-alive */
    int               upstream_keepalive_pool_size;    /* default 512 */
    int               upstream_keepalive_max_requests; /* default 10000 */
    int               upstream_keepalive_idle_timeout; /* ms, default 60000 */

    /* response headers added by the gateway */
    unsigned          headers;           /* MG_HDR_* bits */
    unsigned          headers_upstream;  /* Kong's headers_upstream bits */

    /* trusted proxies for X-Forwarded-* (Kong `trusted_ips`) */
    mg_str_t         *trusted_ips;       /* CIDRs as written */
    size_t            trusted_ips_n;
    const char       *real_ip_header;    /* default "X-Real-IP" */

    /* plugin runtime (parsed and kept; used by the Lua runtime) */
    const char       *plugins;           /* "bundled" */
    const char       *lua_package_path;
    const char       *lua_package_cpath;
    const char       *lua_shared_dict;   /* "name size, ..." (mg_shdict) */
    size_t            response_phase_max_body_size; /* 10m, 0 = none */
    int               lua_max_run_time;  /* ms one resume may run, 0 off */
    size_t            lua_max_memory;    /* Lua heap cap, 0 = none */

    /*
     * Added for later issues: parsed, validated and kept, no behaviour yet.
     * Strings are NULL when unset; ttls are seconds as in Kong (-1 unset).
     */
    const char       *role;              /* traditional (default),
                                            control_plane, data_plane
                                            (hybrid mode: docs/clustering.md;
                                            checked at load) */
    const char       *cluster_control_plane; /* "host:port" */
    const char       *cluster_cert;
    const char       *cluster_cert_key;
    const char       *ssl_cert;
    const char       *ssl_cert_key;
    const char       *admin_ssl_cert;       /* NULL: the proxy's */
    const char       *admin_ssl_cert_key;
    const char       *admin_ssl_client_certificate;   /* CA bundle path */
    const char       *admin_ssl_verify_client;        /* off, on, optional */
    const char       *admin_api_token;   /* secret: never logged */
    size_t            lmdb_map_size;     /* default 2048m */
    const char       *dns_resolver;      /* "ip[:port], ..." */
    const char       *dns_order;         /* default LAST,SRV,A,CNAME */
    int               dns_valid_ttl;     /* s, -1 = use the record's TTL */
    int               dns_stale_ttl;     /* s, default 3600 */
    int               dns_not_found_ttl; /* s, default 30 */
    int               dns_error_ttl;     /* s, default 1 */
    size_t            mem_cache_size;    /* kong_db_cache bytes, 128m */
    int               db_cache_ttl;      /* s, kong.cache's ttl, 0 never */
    int               db_cache_neg_ttl;  /* s, -1 = db_cache_ttl */
    int               resurrect_ttl;     /* s, default 30 */
    const char       *dns_hostsfile;     /* default /etc/hosts */
};

/*
 * Read properties.  path may be NULL (defaults + environment only).  On
 * error returns NULL and writes one message per problem to err (a buffer
 * of errlen bytes, lines separated by '\n').
 */
mg_conf_t *mg_conf_load(const char *path, const char *prefix_override,
                        char *err, size_t errlen);
void mg_conf_free(mg_conf_t *conf);

/* Resolve a path relative to conf->prefix into buf; returns buf. */
/* The properties as one JSON object (malloc'd): strings, numbers (sizes
 * in bytes, times in ms), booleans, listen lists as their texts; secrets
 * left out.  For Lua (kong.configuration, the Admin API's GET /). */
char *mg_conf_json(const mg_conf_t *conf);

const char *mg_conf_path(const mg_conf_t *conf, const char *path,
                         char *buf, size_t len);

/* Parse "host:port [flags]" lists as the properties do (also for tests). */
int mg_conf_parse_listen(mg_pool_t *pool, const char *value,
                         mg_listen_list_t *out, char *err, size_t errlen);

#endif /* MG_CONF_H */
