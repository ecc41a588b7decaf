/*
 * mg_conf.c -- moongate.conf properties: defaults, the Kong-style file,
 * MOONGATE_<NAME> environment variables, and -p.  See mg_conf.h.
 *
 * One table lists every property once: its name, its type, where it lands
 * in mg_conf_t and its default written as it would be in the file.  The
 * defaults go through the same parsers as the file and the environment,
 * so a default can never be a value the parser would refuse.  Aliases
 * (Kong's nginx_http_* names) are table rows of their own pointing at the
 * same field, without a default.
 *
 * Every problem is collected, not just the first: the operator fixes the
 * file once.  Messages name the source ("path:line" or the environment
 * variable), the property and what is wrong; the value of a secret
 * property (admin_api_token) is never repeated.
 *
 * Rejected: a generic key/value map handed to subsystems -- typed fields
 * are checked once here and read for free everywhere else.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "mg_conf.h"
#include "../base/mg_log.h"

#define MG_CONF_DEFAULT_PREFIX "/usr/local/moongate"
#define MG_CONF_FILE_NAME      "moongate.conf"
#define MG_CONF_ENV_PREFIX     "MOONGATE_"
#define MG_CONF_MAX_LINE       65536
#define MG_CONF_LISTEN_BACKLOG 511

typedef enum {
    MG_CONF_T_STR,        /* non-empty string */
    MG_CONF_T_STR_EMPTY,  /* string, may be empty ("" kept) */
    MG_CONF_T_OPTSTR,     /* empty or NONE leaves NULL */
    MG_CONF_T_SECRET,     /* as OPTSTR; the value is never echoed */
    MG_CONF_T_INT,        /* integer within [min, max] */
    MG_CONF_T_OPTINT,     /* as INT; empty or NONE gives -1 */
    MG_CONF_T_BOOL,       /* on/off/true/false */
    MG_CONF_T_SIZE,       /* bytes: 8k, 10m, 1g (size_t) */
    MG_CONF_T_TIME,       /* ms into an int: 500ms, 60s, 1m; bare = s */
    MG_CONF_T_WORKERS,    /* "auto" or a count */
    MG_CONF_T_LOGLEVEL,
    MG_CONF_T_DATABASE,
    MG_CONF_T_ROLE,
    MG_CONF_T_VERIFY,     /* off | on | optional (ssl_verify_client) */
    MG_CONF_T_LISTEN,
    MG_CONF_T_HEADERS,
    MG_CONF_T_HEADERS_UP,
    MG_CONF_T_CIDRS,
    MG_CONF_T_LARGE_BUFS, /* "4 8k" */
    MG_CONF_T_DNS_ORDER,
    MG_CONF_T_DNS_RESOLVER
} mg_conf_type_e;

typedef struct {
    const char     *name;
    mg_conf_type_e  type;
    size_t          off;
    const char     *def;      /* NULL: no default (aliases, unset) */
    long long       min;
    long long       max;
} mg_conf_prop_t;

#define F(field) offsetof(mg_conf_t, field)

static const mg_conf_prop_t mg_conf_props[] = {
    { "prefix", MG_CONF_T_STR, F(prefix), MG_CONF_DEFAULT_PREFIX, 0, 0 },
    { "worker_processes", MG_CONF_T_WORKERS, F(worker_processes), "auto",
      1, 1024 },
    { "nginx_worker_processes", MG_CONF_T_WORKERS, F(worker_processes),
      NULL, 1, 1024 },
    { "declarative_config", MG_CONF_T_OPTSTR, F(declarative_config), NULL,
      0, 0 },
    { "database", MG_CONF_T_DATABASE, F(database), "lmdb", 0, 0 },
    { "log_level", MG_CONF_T_LOGLEVEL, F(log_level), "notice", 0, 0 },
    { "proxy_access_log", MG_CONF_T_STR, F(proxy_access_log),
      "logs/access.log", 0, 0 },
    { "proxy_error_log", MG_CONF_T_STR, F(proxy_error_log),
      "logs/error.log", 0, 0 },
    { "admin_access_log", MG_CONF_T_STR, F(admin_access_log),
      "logs/admin_access.log", 0, 0 },
    { "admin_error_log", MG_CONF_T_STR, F(admin_error_log),
      "logs/error.log", 0, 0 },
    { "pid_file", MG_CONF_T_STR, F(pid_file), "pids/moongate.pid", 0, 0 },

    { "proxy_listen", MG_CONF_T_LISTEN, F(proxy_listen),
      "0.0.0.0:8000 reuseport backlog=16384", 0, 0 },
    { "admin_listen", MG_CONF_T_LISTEN, F(admin_listen),
      "127.0.0.1:8001 reuseport backlog=16384", 0, 0 },
    { "status_listen", MG_CONF_T_LISTEN, F(status_listen), "off", 0, 0 },

    /*
     * Kong's default client_max_body_size is 0 (unlimited).  We cap bodies
     * at 10m by default: a gateway that buffers bodies for AI plugins must
     * not let one client exhaust memory.  Set 0 to get Kong's behaviour.
     */
    { "client_max_body_size", MG_CONF_T_SIZE, F(client_max_body_size),
      "10m", 0, 0 },
    { "nginx_http_client_max_body_size", MG_CONF_T_SIZE,
      F(client_max_body_size), NULL, 0, 0 },
    { "client_body_buffer_size", MG_CONF_T_SIZE, F(client_body_buffer_size),
      "8k", 0, 0 },
    { "nginx_http_client_body_buffer_size", MG_CONF_T_SIZE,
      F(client_body_buffer_size), NULL, 0, 0 },
    { "client_header_buffer_size", MG_CONF_T_SIZE,
      F(client_header_buffer_size), "1k", 0, 0 },
    { "nginx_http_client_header_buffer_size", MG_CONF_T_SIZE,
      F(client_header_buffer_size), NULL, 0, 0 },
    { "large_client_header_buffers", MG_CONF_T_LARGE_BUFS, 0, "4 8k", 0, 0 },
    { "nginx_http_large_client_header_buffers", MG_CONF_T_LARGE_BUFS, 0,
      NULL, 0, 0 },
    { "lua_max_req_headers", MG_CONF_T_INT, F(max_req_headers), "100",
      1, 1000 },
    { "max_req_headers", MG_CONF_T_INT, F(max_req_headers), NULL, 1, 1000 },
    { "client_header_timeout", MG_CONF_T_TIME, F(client_header_timeout),
      "60s", 1, INT_MAX },
    { "nginx_http_client_header_timeout", MG_CONF_T_TIME,
      F(client_header_timeout), NULL, 1, INT_MAX },
    { "client_body_timeout", MG_CONF_T_TIME, F(client_body_timeout), "60s",
      1, INT_MAX },
    { "nginx_http_client_body_timeout", MG_CONF_T_TIME,
      F(client_body_timeout), NULL, 1, INT_MAX },
    { "keepalive_timeout", MG_CONF_T_TIME, F(keepalive_timeout), "75s",
      0, INT_MAX },
    { "nginx_http_keepalive_timeout", MG_CONF_T_TIME, F(keepalive_timeout),
      NULL, 0, INT_MAX },
    { "keepalive_requests", MG_CONF_T_INT, F(keepalive_requests), "10000",
      0, INT_MAX },
    { "nginx_http_keepalive_requests", MG_CONF_T_INT, F(keepalive_requests),
      NULL, 0, INT_MAX },
    { "send_timeout", MG_CONF_T_TIME, F(send_timeout), "60s", 1, INT_MAX },
    { "nginx_http_send_timeout", MG_CONF_T_TIME, F(send_timeout), NULL,
      1, INT_MAX },

    { "upstream_keepalive_pool_size", MG_CONF_T_INT,
      F(upstream_keepalive_pool_size), "512", 0, INT_MAX },
    { "upstream_keepalive_max_requests", MG_CONF_T_INT,
      F(upstream_keepalive_max_requests), "10000", 0, INT_MAX },
    { "upstream_keepalive_idle_timeout", MG_CONF_T_TIME,
      F(upstream_keepalive_idle_timeout), "60", 0, INT_MAX },

    { "headers", MG_CONF_T_HEADERS, F(headers),
      "server_tokens, latency_tokens, X-Kong-Request-Id", 0, 0 },
    { "headers_upstream", MG_CONF_T_HEADERS_UP, F(headers_upstream),
      "X-Kong-Request-Id", 0, 0 },
    { "trusted_ips", MG_CONF_T_CIDRS, 0, "", 0, 0 },
    { "real_ip_header", MG_CONF_T_STR, F(real_ip_header), "X-Real-IP", 0, 0 },

    { "plugins", MG_CONF_T_STR, F(plugins), "bundled", 0, 0 },
    { "lua_package_path", MG_CONF_T_STR_EMPTY, F(lua_package_path),
      "./?.lua;./?/init.lua;", 0, 0 },
    { "lua_package_cpath", MG_CONF_T_STR_EMPTY, F(lua_package_cpath), "",
      0, 0 },
    /* "name size, ..." (OpenResty's lua_shared_dict directives); parsed
     * and checked by core/store/mg_shdict.c when the master creates them */
    { "lua_shared_dict", MG_CONF_T_STR_EMPTY, F(lua_shared_dict),
      "kong 5m, kong_locks 8m, kong_rate_limiting_counters 12m, "
      "moongate_cache 16m", 0, 0 },
    /* plugin runtime limits (no Kong equivalent; 0 = no limit) */
    { "response_phase_max_body_size", MG_CONF_T_SIZE,
      F(response_phase_max_body_size), "10m", 0, 0 },
    { "lua_max_run_time", MG_CONF_T_TIME, F(lua_max_run_time), "5s",
      0, INT_MAX },
    { "lua_max_memory", MG_CONF_T_SIZE, F(lua_max_memory), "1g", 0, 0 },

    { "role", MG_CONF_T_ROLE, F(role), "traditional", 0, 0 },
    { "cluster_control_plane", MG_CONF_T_OPTSTR, F(cluster_control_plane),
      NULL, 0, 0 },
    { "cluster_listen", MG_CONF_T_LISTEN, F(cluster_listen),
      "0.0.0.0:8005", 0, 0 },
    { "cluster_cert", MG_CONF_T_OPTSTR, F(cluster_cert), NULL, 0, 0 },
    { "cluster_cert_key", MG_CONF_T_OPTSTR, F(cluster_cert_key), NULL, 0, 0 },
    { "ssl_cert", MG_CONF_T_OPTSTR, F(ssl_cert), NULL, 0, 0 },
    { "ssl_cert_key", MG_CONF_T_OPTSTR, F(ssl_cert_key), NULL, 0, 0 },
    { "admin_ssl_cert", MG_CONF_T_OPTSTR, F(admin_ssl_cert), NULL, 0, 0 },
    { "admin_ssl_cert_key", MG_CONF_T_OPTSTR, F(admin_ssl_cert_key), NULL,
      0, 0 },
    { "admin_ssl_client_certificate", MG_CONF_T_OPTSTR,
      F(admin_ssl_client_certificate), NULL, 0, 0 },
    { "nginx_admin_ssl_client_certificate", MG_CONF_T_OPTSTR,
      F(admin_ssl_client_certificate), NULL, 0, 0 },
    { "admin_ssl_verify_client", MG_CONF_T_VERIFY,
      F(admin_ssl_verify_client), "off", 0, 0 },
    { "nginx_admin_ssl_verify_client", MG_CONF_T_VERIFY,
      F(admin_ssl_verify_client), NULL, 0, 0 },
    { "admin_api_token", MG_CONF_T_SECRET, F(admin_api_token), NULL, 0, 0 },
    { "lmdb_map_size", MG_CONF_T_SIZE, F(lmdb_map_size), "2048m", 0, 0 },
    { "dns_resolver", MG_CONF_T_DNS_RESOLVER, F(dns_resolver), NULL, 0, 0 },
    { "dns_order", MG_CONF_T_DNS_ORDER, F(dns_order), "LAST,SRV,A,CNAME",
      0, 0 },
    { "dns_valid_ttl", MG_CONF_T_OPTINT, F(dns_valid_ttl), "", 0, INT_MAX },
    { "dns_stale_ttl", MG_CONF_T_INT, F(dns_stale_ttl), "3600", 0, INT_MAX },
    { "dns_not_found_ttl", MG_CONF_T_INT, F(dns_not_found_ttl), "30",
      0, INT_MAX },
    { "dns_error_ttl", MG_CONF_T_INT, F(dns_error_ttl), "1", 0, INT_MAX },
    /* kong.cache (lua/moongate/pdk/cache.lua): the kong_db_cache shared
     * dictionary's size (0: none, see mg_shdict_declare), its ttls */
    { "mem_cache_size", MG_CONF_T_SIZE, F(mem_cache_size), "128m", 0, 0 },
    { "db_cache_ttl", MG_CONF_T_INT, F(db_cache_ttl), "0", 0, INT_MAX },
    { "db_cache_neg_ttl", MG_CONF_T_OPTINT, F(db_cache_neg_ttl), "", 0,
      INT_MAX },
    { "resurrect_ttl", MG_CONF_T_INT, F(resurrect_ttl), "30", 0, INT_MAX },
    { "dns_hostsfile", MG_CONF_T_STR, F(dns_hostsfile), "/etc/hosts", 0, 0 },
};

#undef F

/* Collected problems: '\n'-separated lines in a fixed caller buffer. */
typedef struct {
    char   *buf;
    size_t  len;
    size_t  cap;
    int     n;
} mg_conf_errs_t;

static void mg_conf_err(mg_conf_errs_t *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
mg_conf_err(mg_conf_errs_t *e, const char *fmt, ...)
{
    va_list ap;
    int     w;

    e->n++;
    if (e->buf == NULL || e->cap == 0 || e->len + 1 >= e->cap) {
        return;
    }
    if (e->len > 0) {
        e->buf[e->len++] = '\n';
        e->buf[e->len] = '\0';
    }
    va_start(ap, fmt);
    w = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
    va_end(ap);
    if (w > 0) {
        e->len = mg_min(e->len + (size_t) w, e->cap - 1);
    }
}

/* --- small string helpers ----------------------------------------------- */

static const char *
mg_conf_trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    end = s + strlen(s);
    while (end > s && isspace((unsigned char) end[-1])) {
        *--end = '\0';
    }
    return s;
}

/* Next comma-separated item of *cursor, trimmed, copied into buf. */
static int
mg_conf_next_item(const char **cursor, char *buf, size_t len)
{
    const char *p = *cursor, *end;
    size_t      n;

    if (p == NULL) {
        return 0;
    }
    end = strchr(p, ',');
    n = end ? (size_t) (end - p) : strlen(p);
    *cursor = end ? end + 1 : NULL;
    if (n >= len) {
        n = len - 1;
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    memmove(buf, mg_conf_trim(buf), strlen(mg_conf_trim(buf)) + 1);
    return 1;
}

static int
mg_conf_is_unset(const char *v)
{
    return *v == '\0' || strcmp(v, "NONE") == 0;
}

/* --- value parsers: return MG_OK or MG_ERROR with why in buf ------------ */

static int
mg_conf_parse_int(const char *v, long long min, long long max,
                  long long *out, char *why, size_t len)
{
    char      *end;
    long long  n;

    errno = 0;
    n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno == ERANGE) {
        snprintf(why, len, "invalid value '%s': expected an integer", v);
        return MG_ERROR;
    }
    if (n < min || n > max) {
        snprintf(why, len, "value %lld out of range (%lld..%lld)", n, min,
                 max);
        return MG_ERROR;
    }
    *out = n;
    return MG_OK;
}

static int
mg_conf_parse_bool(const char *v, int *out)
{
    if (strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0) {
        *out = 1;
        return MG_OK;
    }
    if (strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0) {
        *out = 0;
        return MG_OK;
    }
    return MG_ERROR;
}

/* nginx sizes: bytes, or a k/m/g suffix (either case). */
static int
mg_conf_parse_size(const char *v, size_t *out)
{
    unsigned long long n = 0, mult = 1;
    const char        *p = v;

    if (!isdigit((unsigned char) *p)) {
        return MG_ERROR;
    }
    while (isdigit((unsigned char) *p)) {
        if (n > (ULLONG_MAX - 9) / 10) {
            return MG_ERROR;
        }
        n = n * 10 + (unsigned) (*p++ - '0');
    }
    switch (*p) {
    case '\0': break;
    case 'k': case 'K': mult = 1024ULL; p++; break;
    case 'm': case 'M': mult = 1024ULL * 1024; p++; break;
    case 'g': case 'G': mult = 1024ULL * 1024 * 1024; p++; break;
    default: return MG_ERROR;
    }
    if (*p != '\0' || (n != 0 && mult > SIZE_MAX / n)) {
        return MG_ERROR;
    }
    *out = (size_t) (n * mult);
    return MG_OK;
}

/*
 * nginx times into milliseconds: "500ms", "60s", "1m30s", "2h", "1d"; a
 * bare number is seconds.  Units may be combined, larger first or not.
 */
static int
mg_conf_parse_time(const char *v, long long *out_ms)
{
    const char *p = v;
    long long   total = 0, n, unit;

    if (*p == '\0') {
        return MG_ERROR;
    }
    while (*p) {
        if (!isdigit((unsigned char) *p)) {
            return MG_ERROR;
        }
        n = 0;
        while (isdigit((unsigned char) *p)) {
            if (n > (LLONG_MAX - 9) / 10) {
                return MG_ERROR;
            }
            n = n * 10 + (*p++ - '0');
        }
        if (p[0] == 'm' && p[1] == 's') {
            unit = 1;
            p += 2;
        } else {
            switch (*p) {
            case '\0':
            case 's': unit = 1000; break;
            case 'm': unit = 60 * 1000LL; break;
            case 'h': unit = 3600 * 1000LL; break;
            case 'd': unit = 86400 * 1000LL; break;
            case 'w': unit = 7 * 86400 * 1000LL; break;
            default: return MG_ERROR;
            }
            if (*p) {
                p++;
            }
        }
        if (n > (LLONG_MAX - total) / unit) {
            return MG_ERROR;
        }
        total += n * unit;
    }
    *out_ms = total;
    return MG_OK;
}

/* Parse an IP literal (no brackets); fills sockaddr. */
static int
mg_conf_parse_ip(const char *host, int port, struct sockaddr_storage *ss,
                 socklen_t *slen)
{
    struct sockaddr_in  *sin = (struct sockaddr_in *) ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) ss;

    memset(ss, 0, sizeof(*ss));
    if (strcmp(host, "*") == 0) {
        host = "0.0.0.0";
    } else if (strcmp(host, "localhost") == 0) {
        host = "127.0.0.1";
    }
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t) port);
        *slen = sizeof(*sin);
        return MG_OK;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t) port);
        *slen = sizeof(*sin6);
        return MG_OK;
    }
    return MG_ERROR;
}

/*
 * Split "host:port", "[v6]:port" (and, when port_optional, "host", "v6",
 * "[v6]") into host (no brackets) and port (-1 when absent).
 */
static int
mg_conf_split_hostport(const char *s, char *host, size_t hlen, int *port,
                       int port_optional)
{
    const char *colon, *ps = NULL;
    size_t      n;
    long long   p;
    char       *end;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');

        if (rb == NULL) {
            return MG_ERROR;
        }
        n = (size_t) (rb - s - 1);
        if (rb[1] == ':') {
            ps = rb + 2;
        } else if (rb[1] != '\0') {
            return MG_ERROR;
        }
        if (n >= hlen) {
            return MG_ERROR;
        }
        memcpy(host, s + 1, n);
        host[n] = '\0';
    } else {
        colon = strrchr(s, ':');
        if (colon != NULL && strchr(s, ':') != colon) {
            /* Several colons without brackets: a bare IPv6 address. */
            if (!port_optional) {
                return MG_ERROR;
            }
            colon = NULL;
        }
        n = colon ? (size_t) (colon - s) : strlen(s);
        if (n >= hlen || n == 0) {
            return MG_ERROR;
        }
        memcpy(host, s, n);
        host[n] = '\0';
        if (colon) {
            ps = colon + 1;
        }
    }
    if (ps == NULL) {
        if (!port_optional) {
            return MG_ERROR;
        }
        *port = -1;
        return MG_OK;
    }
    errno = 0;
    p = strtoll(ps, &end, 10);
    if (*ps == '\0' || *end != '\0' || errno || p < 1 || p > 65535) {
        return MG_ERROR;
    }
    *port = (int) p;
    return MG_OK;
}

int
mg_conf_parse_listen(mg_pool_t *pool, const char *value,
                     mg_listen_list_t *out, char *err, size_t errlen)
{
    const char *cursor = value;
    char        item[512], host[256];
    int         port;

    memset(out, 0, sizeof(*out));
    if (strcmp(value, "off") == 0) {
        return MG_OK;
    }
    while (mg_conf_next_item(&cursor, item, sizeof(item))) {
        mg_listen_t *l;
        char        *tok, *save = NULL;

        if (item[0] == '\0') {
            snprintf(err, errlen, "empty entry in '%s'", value);
            return MG_ERROR;
        }
        if (strcmp(item, "off") == 0) {
            snprintf(err, errlen,
                     "'off' cannot be combined with other addresses");
            return MG_ERROR;
        }
        if (out->n == MG_CONF_MAX_LISTEN) {
            snprintf(err, errlen, "too many addresses (at most %d)",
                     MG_CONF_MAX_LISTEN);
            return MG_ERROR;
        }
        l = &out->elts[out->n];
        memset(l, 0, sizeof(*l));
        l->backlog = MG_CONF_LISTEN_BACKLOG;

        tok = strtok_r(item, " \t", &save);
        if (mg_conf_split_hostport(tok, host, sizeof(host), &port, 0)
                != MG_OK
            || mg_conf_parse_ip(host, port, &l->addr, &l->addrlen) != MG_OK)
        {
            snprintf(err, errlen,
                     "invalid address '%s': expected IP:PORT, [IPv6]:PORT "
                     "or *:PORT", tok);
            return MG_ERROR;
        }
        l->text = mg_pool_str(pool, tok, strlen(tok));
        if (l->text.data == NULL) {
            snprintf(err, errlen, "out of memory");
            return MG_ERROR;
        }
        while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
            if (strcmp(tok, "ssl") == 0) {
                l->ssl = 1;
            } else if (strcmp(tok, "http2") == 0) {
                l->http2 = 1;
            } else if (strcmp(tok, "reuseport") == 0) {
                l->reuseport = 1;
            } else if (strcmp(tok, "proxy_protocol") == 0) {
                l->proxy_protocol = 1;
            } else if (strcmp(tok, "deferred") == 0) {
                l->deferred = 1;
            } else if (strcmp(tok, "bind") == 0) {
                l->bind = 1;
            } else if (strncmp(tok, "backlog=", 8) == 0) {
                long long n;
                char      why[128];

                if (mg_conf_parse_int(tok + 8, 1, INT_MAX, &n, why,
                                      sizeof(why)) != MG_OK)
                {
                    snprintf(err, errlen, "invalid '%s': %s", tok, why);
                    return MG_ERROR;
                }
                l->backlog = (int) n;
            } else {
                snprintf(err, errlen,
                         "unknown flag '%s' after '%.*s' (known: ssl, "
                         "http2, reuseport, backlog=N, proxy_protocol, "
                         "deferred, bind)", tok, (int) l->text.len,
                         l->text.data);
                return MG_ERROR;
            }
        }
        out->n++;
    }
    if (out->n == 0) {
        snprintf(err, errlen, "no address given (use 'off' to disable)");
        return MG_ERROR;
    }
    return MG_OK;
}

static const struct {
    const char *name;
    unsigned    bits;
} mg_conf_header_names[] = {
    { "server_tokens", MG_HDR_SERVER_TOKENS },
    { "latency_tokens", MG_HDR_LATENCY_TOKENS },
    { "Server", MG_HDR_SERVER },
    { "Via", MG_HDR_VIA },
    { "X-Kong-Proxy-Latency", MG_HDR_PROXY_LATENCY },
    { "X-Kong-Upstream-Latency", MG_HDR_UPSTREAM_LATENCY },
    { "X-Kong-Response-Latency", MG_HDR_RESPONSE_LATENCY },
    { "X-Kong-Upstream-Status", MG_HDR_UPSTREAM_STATUS },
    { "X-Kong-Request-Id", MG_HDR_REQUEST_ID },
    { "X-Kong-Admin-Latency", MG_HDR_ADMIN_LATENCY },
};

static int
mg_conf_parse_headers(const char *v, int upstream, unsigned *out, char *why,
                      size_t len)
{
    const char *cursor = v;
    char        item[128];
    unsigned    bits = 0;
    size_t      i, nitems = 0;
    int         off = 0;

    while (mg_conf_next_item(&cursor, item, sizeof(item))) {
        nitems++;
        if (strcasecmp(item, "off") == 0) {
            off = 1;
            continue;
        }
        for (i = 0; i < mg_nelems(mg_conf_header_names); i++) {
            if (strcasecmp(item, mg_conf_header_names[i].name) == 0) {
                break;
            }
        }
        if (i == mg_nelems(mg_conf_header_names)
            || (upstream && mg_conf_header_names[i].bits != MG_HDR_REQUEST_ID))
        {
            snprintf(why, len, "invalid header '%s' (expected %s)", item,
                     upstream ? "X-Kong-Request-Id or off"
                              : "server_tokens, latency_tokens, Server, Via, "
                                "X-Kong-* or off");
            return MG_ERROR;
        }
        bits |= mg_conf_header_names[i].bits;
    }
    if (off && nitems > 1) {
        snprintf(why, len, "'off' cannot be combined with other values");
        return MG_ERROR;
    }
    *out = bits;
    return MG_OK;
}

/* One trusted_ips entry: IP, IP/len, or "unix:". */
static int
mg_conf_check_cidr(const char *item)
{
    char        ip[64];
    const char *slash = strchr(item, '/');
    size_t      n = slash ? (size_t) (slash - item) : strlen(item);
    long long   bits, max;
    char        why[64];
    unsigned char addr[16];

    if (strcmp(item, "unix:") == 0) {
        return MG_OK;
    }
    if (n == 0 || n >= sizeof(ip)) {
        return MG_ERROR;
    }
    memcpy(ip, item, n);
    ip[n] = '\0';
    if (inet_pton(AF_INET, ip, addr) == 1) {
        max = 32;
    } else if (inet_pton(AF_INET6, ip, addr) == 1) {
        max = 128;
    } else {
        return MG_ERROR;
    }
    if (slash && mg_conf_parse_int(slash + 1, 0, max, &bits, why,
                                   sizeof(why)) != MG_OK)
    {
        return MG_ERROR;
    }
    return MG_OK;
}

/* --- applying one value ------------------------------------------------- */

#define FIELD(conf, p, type) ((type *) ((char *) (conf) + (p)->off))

static int
mg_conf_set(mg_conf_t *conf, const mg_conf_prop_t *p, const char *value,
            const char *source, mg_conf_errs_t *errs)
{
    char        why[512];
    long long   n;
    size_t      sz;
    int         b;

    why[0] = '\0';

    switch (p->type) {
    case MG_CONF_T_STR:
        if (*value == '\0') {
            snprintf(why, sizeof(why), "must not be empty");
            break;
        }
        /* fall through */
    case MG_CONF_T_STR_EMPTY:
        *FIELD(conf, p, const char *) = mg_pool_strndup(conf->pool, value,
                                                        strlen(value));
        return MG_OK;

    case MG_CONF_T_OPTSTR:
    case MG_CONF_T_SECRET:
        *FIELD(conf, p, const char *) = mg_conf_is_unset(value)
            ? NULL : mg_pool_strndup(conf->pool, value, strlen(value));
        return MG_OK;

    case MG_CONF_T_OPTINT:
        if (mg_conf_is_unset(value)) {
            *FIELD(conf, p, int) = -1;
            return MG_OK;
        }
        /* fall through */
    case MG_CONF_T_INT:
        if (mg_conf_parse_int(value, p->min, p->max, &n, why, sizeof(why))
            == MG_OK)
        {
            *FIELD(conf, p, int) = (int) n;
            return MG_OK;
        }
        break;

    case MG_CONF_T_BOOL:
        if (mg_conf_parse_bool(value, &b) == MG_OK) {
            *FIELD(conf, p, int) = b;
            return MG_OK;
        }
        snprintf(why, sizeof(why),
                 "invalid boolean '%s' (expected on, off, true or false)",
                 value);
        break;

    case MG_CONF_T_SIZE:
        if (mg_conf_parse_size(value, &sz) == MG_OK) {
            *FIELD(conf, p, size_t) = sz;
            return MG_OK;
        }
        snprintf(why, sizeof(why),
                 "invalid size '%s' (expected bytes with an optional k, m "
                 "or g suffix, e.g. 8k)", value);
        break;

    case MG_CONF_T_TIME:
        if (mg_conf_parse_time(value, &n) == MG_OK) {
            if (n >= p->min && n <= p->max) {
                *FIELD(conf, p, int) = (int) n;
                return MG_OK;
            }
            snprintf(why, sizeof(why), "time '%s' out of range", value);
            break;
        }
        snprintf(why, sizeof(why),
                 "invalid time '%s' (expected e.g. 60s, 500ms, 1m; a bare "
                 "number is seconds)", value);
        break;

    case MG_CONF_T_WORKERS:
        if (strcmp(value, "auto") == 0) {
            long cpus = sysconf(_SC_NPROCESSORS_ONLN);

            *FIELD(conf, p, int) = cpus > 0 ? (int) mg_min(cpus, p->max) : 1;
            return MG_OK;
        }
        if (mg_conf_parse_int(value, p->min, p->max, &n, why, sizeof(why))
            == MG_OK)
        {
            *FIELD(conf, p, int) = (int) n;
            return MG_OK;
        }
        snprintf(why, sizeof(why),
                 "invalid value '%s' (expected auto or a number 1..%lld)",
                 value, p->max);
        break;

    case MG_CONF_T_LOGLEVEL:
        b = mg_log_level_parse(value, strlen(value));
        if (b >= 0) {
            *FIELD(conf, p, int) = b;
            return MG_OK;
        }
        snprintf(why, sizeof(why),
                 "invalid log level '%s' (expected debug, info, notice, "
                 "warn, error, crit, alert or emerg)", value);
        break;

    case MG_CONF_T_DATABASE:
        if (strcmp(value, "off") == 0 || strcmp(value, "lmdb") == 0) {
            *FIELD(conf, p, const char *) = strcmp(value, "off") == 0
                                            ? "off" : "lmdb";
            return MG_OK;
        }
        if (strcmp(value, "postgres") == 0
            || strcmp(value, "cassandra") == 0)
        {
            snprintf(why, sizeof(why),
                     "'%s' is not supported: Moongate stores entities in "
                     "LMDB (use lmdb, or off for declarative only)", value);
            break;
        }
        snprintf(why, sizeof(why),
                 "invalid value '%s' (expected lmdb or off)", value);
        break;

    case MG_CONF_T_ROLE:
        if (strcmp(value, "traditional") == 0
            || strcmp(value, "control_plane") == 0
            || strcmp(value, "data_plane") == 0)
        {
            *FIELD(conf, p, const char *) =
                mg_pool_strndup(conf->pool, value, strlen(value));
            return MG_OK;
        }
        snprintf(why, sizeof(why),
                 "invalid role '%s' (expected traditional, control_plane or "
                 "data_plane)", value);
        break;

    case MG_CONF_T_VERIFY:
        if (strcmp(value, "off") == 0 || strcmp(value, "on") == 0
            || strcmp(value, "optional") == 0)
        {
            *FIELD(conf, p, const char *) =
                mg_pool_strndup(conf->pool, value, strlen(value));
            return MG_OK;
        }
        snprintf(why, sizeof(why),
                 "invalid value '%s' (expected off, on or optional)", value);
        break;

    case MG_CONF_T_LISTEN:
        if (mg_conf_parse_listen(conf->pool, value,
                                 FIELD(conf, p, mg_listen_list_t), why,
                                 sizeof(why)) == MG_OK)
        {
            return MG_OK;
        }
        break;

    case MG_CONF_T_HEADERS:
    case MG_CONF_T_HEADERS_UP:
        if (mg_conf_parse_headers(value, p->type == MG_CONF_T_HEADERS_UP,
                                  FIELD(conf, p, unsigned), why,
                                  sizeof(why)) == MG_OK)
        {
            return MG_OK;
        }
        break;

    case MG_CONF_T_CIDRS: {
        const char *cursor = value;
        char        item[128];
        size_t      cap = 1, i = 0;

        if (mg_conf_is_unset(value)) {
            conf->trusted_ips = NULL;
            conf->trusted_ips_n = 0;
            return MG_OK;
        }
        for (const char *c = value; *c; c++) {
            cap += *c == ',';
        }
        conf->trusted_ips = mg_pool_calloc(conf->pool, cap * sizeof(mg_str_t));
        while (conf->trusted_ips
               && mg_conf_next_item(&cursor, item, sizeof(item)))
        {
            if (mg_conf_check_cidr(item) != MG_OK) {
                snprintf(why, sizeof(why),
                         "invalid entry '%s' (expected an IP, a CIDR such as "
                         "10.0.0.0/8 or ::/0, or unix:)", item);
                break;
            }
            conf->trusted_ips[i++] = mg_pool_str(conf->pool, item,
                                                 strlen(item));
        }
        conf->trusted_ips_n = i;
        if (why[0] == '\0') {
            return MG_OK;
        }
        break;
    }

    case MG_CONF_T_LARGE_BUFS: {
        char   num[32], size[32], extra[2];
        size_t bsize;

        if (sscanf(value, "%31s %31s %1s", num, size, extra) == 2
            && mg_conf_parse_int(num, 1, 1024, &n, why, sizeof(why)) == MG_OK
            && mg_conf_parse_size(size, &bsize) == MG_OK && bsize > 0)
        {
            conf->large_client_header_buffers = (size_t) n;
            conf->large_client_header_buffer = bsize;
            return MG_OK;
        }
        snprintf(why, sizeof(why),
                 "invalid value '%s' (expected a count and a size, e.g. "
                 "'4 8k')", value);
        break;
    }

    case MG_CONF_T_DNS_ORDER: {
        const char *cursor = value;
        char        item[32];
        static const char *kinds[] = { "LAST", "SRV", "A", "AAAA", "CNAME" };

        while (why[0] == '\0'
               && mg_conf_next_item(&cursor, item, sizeof(item)))
        {
            size_t i;

            for (i = 0; i < mg_nelems(kinds); i++) {
                if (strcasecmp(item, kinds[i]) == 0) {
                    break;
                }
            }
            if (i == mg_nelems(kinds)) {
                snprintf(why, sizeof(why),
                         "invalid record type '%s' (expected LAST, SRV, A, "
                         "AAAA or CNAME)", item);
            }
        }
        if (why[0] == '\0') {
            *FIELD(conf, p, const char *) =
                mg_pool_strndup(conf->pool, value, strlen(value));
            return MG_OK;
        }
        break;
    }

    case MG_CONF_T_DNS_RESOLVER: {
        const char *cursor = value;
        char        item[128], host[64];
        int         port;
        struct sockaddr_storage ss;
        socklen_t   slen;

        if (mg_conf_is_unset(value)) {
            *FIELD(conf, p, const char *) = NULL;
            return MG_OK;
        }
        while (why[0] == '\0'
               && mg_conf_next_item(&cursor, item, sizeof(item)))
        {
            if (mg_conf_split_hostport(item, host, sizeof(host), &port, 1)
                    != MG_OK
                || mg_conf_parse_ip(host, port < 0 ? 53 : port, &ss, &slen)
                    != MG_OK)
            {
                snprintf(why, sizeof(why),
                         "invalid nameserver '%s' (expected IP or IP:PORT)",
                         item);
            }
        }
        if (why[0] == '\0') {
            *FIELD(conf, p, const char *) =
                mg_pool_strndup(conf->pool, value, strlen(value));
            return MG_OK;
        }
        break;
    }
    }

    mg_conf_err(errs, "%s: %s: %s", source, p->name,
                p->type == MG_CONF_T_SECRET ? "invalid value" : why);
    return MG_ERROR;
}

static const mg_conf_prop_t *
mg_conf_find(const char *name)
{
    size_t i;

    for (i = 0; i < mg_nelems(mg_conf_props); i++) {
        if (strcmp(mg_conf_props[i].name, name) == 0) {
            return &mg_conf_props[i];
        }
    }
    return NULL;
}

/*
 * Kong's value syntax: everything after '=' up to an unescaped '#', with
 * "\#" standing for a literal '#'; surrounding blanks are dropped.
 */
static const char *
mg_conf_value(char *v)
{
    char *r = v, *w = v;

    while (*r) {
        if (r[0] == '\\' && r[1] == '#') {
            *w++ = '#';
            r += 2;
            continue;
        }
        if (*r == '#') {
            break;
        }
        *w++ = *r++;
    }
    *w = '\0';
    return mg_conf_trim(v);
}

static void
mg_conf_read_file(mg_conf_t *conf, const char *path, mg_conf_errs_t *errs)
{
    FILE   *f;
    char   *line = NULL;
    size_t  cap = 0;
    ssize_t n;
    int     lineno = 0;
    char    source[PATH_MAX + 32];

    f = fopen(path, "r");
    if (f == NULL) {
        mg_conf_err(errs, "%s: cannot open: %s", path, strerror(errno));
        return;
    }
    conf->conf_path = mg_pool_strndup(conf->pool, path, strlen(path));

    while ((n = getline(&line, &cap, f)) >= 0) {
        char                 *eq, *key;
        const char           *k, *v;
        const mg_conf_prop_t *p;

        lineno++;
        snprintf(source, sizeof(source), "%s:%d", path, lineno);
        if (n > MG_CONF_MAX_LINE) {
            mg_conf_err(errs, "%s: line too long", source);
            continue;
        }
        key = (char *) mg_conf_trim(line);
        if (*key == '\0' || *key == '#') {
            continue;
        }
        eq = strchr(key, '=');
        if (eq == NULL) {
            mg_conf_err(errs, "%s: expected 'name = value', got '%.64s'",
                        source, key);
            continue;
        }
        *eq = '\0';
        k = mg_conf_trim(key);
        v = mg_conf_value(eq + 1);
        for (char *c = (char *) k; *c; c++) {
            *c = (char) tolower((unsigned char) *c);
        }
        p = mg_conf_find(k);
        if (p == NULL) {
            mg_conf_err(errs, "%s: unknown property '%s'", source, k);
            continue;
        }
        mg_conf_set(conf, p, v, source, errs);
    }
    free(line);
    fclose(f);
}

static void
mg_conf_env_name(const char *prop, char *buf, size_t len)
{
    size_t i, plen = strlen(MG_CONF_ENV_PREFIX);

    snprintf(buf, len, "%s%s", MG_CONF_ENV_PREFIX, prop);
    for (i = plen; buf[i]; i++) {
        buf[i] = (char) toupper((unsigned char) buf[i]);
    }
}

/*
 * MOONGATE_<NAME> for every property and alias.  Unknown MOONGATE_*
 * variables are ignored, as Kong ignores unknown KONG_* ones: the test
 * harness and packaging use that namespace for their own settings.
 */
static void
mg_conf_read_env(mg_conf_t *conf, mg_conf_errs_t *errs)
{
    size_t      i;
    char        name[128], source[160], *copy;
    const char *v;

    for (i = 0; i < mg_nelems(mg_conf_props); i++) {
        mg_conf_env_name(mg_conf_props[i].name, name, sizeof(name));
        v = getenv(name);
        if (v == NULL) {
            continue;
        }
        copy = strdup(v);
        if (copy == NULL) {
            mg_conf_err(errs, "%s: out of memory", name);
            continue;
        }
        snprintf(source, sizeof(source), "environment %s", name);
        mg_conf_set(conf, &mg_conf_props[i], mg_conf_trim(copy), source,
                    errs);
        free(copy);
    }
}

/* The prefix is made absolute, without a trailing slash. */
static void
mg_conf_fix_prefix(mg_conf_t *conf, mg_conf_errs_t *errs)
{
    char        cwd[PATH_MAX], buf[PATH_MAX];
    size_t      n;
    const char *p = conf->prefix;

    if (p[0] != '/') {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            mg_conf_err(errs, "prefix: cannot resolve '%s': %s", p,
                        strerror(errno));
            return;
        }
        if ((size_t) snprintf(buf, sizeof(buf), "%s/%s", cwd, p)
            >= sizeof(buf))
        {
            mg_conf_err(errs, "prefix: path too long");
            return;
        }
        p = buf;
    }
    n = strlen(p);
    while (n > 1 && p[n - 1] == '/') {
        n--;
    }
    conf->prefix = mg_pool_strndup(conf->pool, p, n);
}

/* The Admin API's TLS settings that only make sense together. */
static void
mg_conf_check_admin_ssl(mg_conf_t *conf, mg_conf_errs_t *errs)
{
    if (strcmp(conf->admin_ssl_verify_client, "off") != 0
        && conf->admin_ssl_client_certificate == NULL)
    {
        mg_conf_err(errs, "admin_ssl_verify_client = %s needs "
                    "admin_ssl_client_certificate (the CA bundle client "
                    "certificates are checked against)",
                    conf->admin_ssl_verify_client);
    }
    if ((conf->admin_ssl_cert == NULL) != (conf->admin_ssl_cert_key == NULL)) {
        mg_conf_err(errs, "admin_ssl_cert and admin_ssl_cert_key go together");
    }
}

/* Hybrid mode (Kong's conf_loader checks, Kong's words). */
static void
mg_conf_check_role(mg_conf_t *conf, mg_conf_errs_t *errs)
{
    int cp = strcmp(conf->role, "control_plane") == 0;
    int dp = strcmp(conf->role, "data_plane") == 0;

    if (!cp && !dp) {
        return;
    }
    if (cp && strcmp(conf->database, "off") == 0) {
        mg_conf_err(errs, "in-memory storage can not be used when role = "
                    "\"control_plane\"");
    }
    if (dp && strcmp(conf->database, "off") != 0) {
        mg_conf_err(errs, "only in-memory storage can be used when role = "
                    "\"data_plane\"\nHint: set database = off in your "
                    "moongate.conf");
    }
    /* cluster_cert / cluster_cert_key are checked by the master, which
     * loads them (core/event/mg_master.c): `moongate check` of a data
     * plane's file does not need the key on that machine */
    if (dp && conf->cluster_control_plane == NULL) {
        mg_conf_err(errs, "cluster_control_plane must be set when role = "
                    "\"data_plane\"");
    }
    if (cp && conf->cluster_listen.n == 0) {
        mg_conf_err(errs, "cluster_listen must not be off when role = "
                    "\"control_plane\"");
    }
    if (cp && conf->cluster_listen.n + conf->admin_listen.n
                  > MG_CONF_MAX_LISTEN)
    {
        mg_conf_err(errs, "admin_listen and cluster_listen: at most %d "
                    "addresses together", MG_CONF_MAX_LISTEN);
    }
}

static int
mg_conf_defaults(mg_conf_t *conf, mg_conf_errs_t *errs)
{
    size_t i;

    for (i = 0; i < mg_nelems(mg_conf_props); i++) {
        if (mg_conf_props[i].def != NULL) {
            mg_conf_set(conf, &mg_conf_props[i], mg_conf_props[i].def,
                        "default", errs);
        }
    }
    return errs->n == 0 ? MG_OK : MG_ERROR;
}

mg_conf_t *
mg_conf_load(const char *path, const char *prefix_override, char *err,
             size_t errlen)
{
    mg_pool_t      *pool;
    mg_conf_t      *conf;
    mg_conf_errs_t  errs = { err, 0, errlen, 0 };
    char            buf[PATH_MAX];

    if (err && errlen) {
        err[0] = '\0';
    }
    pool = mg_pool_create(4096);
    conf = pool ? mg_pool_calloc(pool, sizeof(mg_conf_t)) : NULL;
    if (conf == NULL) {
        mg_conf_err(&errs, "out of memory");
        if (pool) {
            mg_pool_destroy(pool);
        }
        return NULL;
    }
    conf->pool = pool;
    mg_conf_defaults(conf, &errs);

    if (path == NULL) {
        /* No -c: use <prefix>/moongate.conf when there is one. */
        const char *prefix = prefix_override ? prefix_override
                                             : getenv("MOONGATE_PREFIX");

        if (prefix == NULL || *prefix == '\0') {
            prefix = conf->prefix;
        }
        snprintf(buf, sizeof(buf), "%s/%s", prefix, MG_CONF_FILE_NAME);
        if (access(buf, R_OK) == 0) {
            path = buf;
        }
    }
    if (path != NULL) {
        mg_conf_read_file(conf, path, &errs);
    }
    mg_conf_read_env(conf, &errs);
    if (prefix_override != NULL) {
        mg_conf_set(conf, mg_conf_find("prefix"), prefix_override,
                    "-p", &errs);
    }
    if (conf->prefix != NULL) {
        mg_conf_fix_prefix(conf, &errs);
    }
    if (errs.n == 0) {
        mg_conf_check_role(conf, &errs);
        mg_conf_check_admin_ssl(conf, &errs);
    }
    if (errs.n == 0) {
        /* The pid file is the one path stored resolved (see mg_conf.h). */
        mg_conf_path(conf, conf->pid_file, buf, sizeof(buf));
        conf->pid_file = mg_pool_strndup(pool, buf, strlen(buf));
    }
    if (errs.n > 0) {
        mg_pool_destroy(pool);
        return NULL;
    }
    return conf;
}

void
mg_conf_free(mg_conf_t *conf)
{
    if (conf != NULL) {
        mg_pool_destroy(conf->pool);
    }
}

/*
 * Absolute paths and the special log targets ("off", "stderr", "stdout")
 * are returned as they are; anything else is taken relative to the prefix.
 */
const char *
mg_conf_path(const mg_conf_t *conf, const char *path, char *buf, size_t len)
{
    if (path == NULL || len == 0) {
        return NULL;
    }
    if (path[0] == '/' || strcmp(path, "off") == 0
        || strcmp(path, "stderr") == 0 || strcmp(path, "stdout") == 0)
    {
        snprintf(buf, len, "%s", path);
    } else {
        snprintf(buf, len, "%s/%s", conf->prefix, path);
    }
    return buf;
}

/* --- the properties as JSON, for Lua ------------------------------------- */

static void
mg_conf_json_str(FILE *f, const char *s, size_t n)
{
    size_t i;

    fputc('"', f);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) s[i];
        if (ch == '"' || ch == '\\') {
            fputc('\\', f);
            fputc(ch, f);
        } else if (ch < 0x20) {
            fprintf(f, "\\u%04x", ch);
        } else {
            fputc(ch, f);
        }
    }
    fputc('"', f);
}

char *
mg_conf_json(const mg_conf_t *conf)
{
    char   *buf = NULL;
    size_t  len = 0, i, j, k;
    FILE   *f = open_memstream(&buf, &len);
    int     first = 1;

    if (f == NULL) {
        return NULL;
    }
    fputc('{', f);
    for (i = 0; i < mg_nelems(mg_conf_props); i++) {
        const mg_conf_prop_t *p = &mg_conf_props[i];
        const void           *v = (const char *) conf + p->off;
        int                   dup = 0;

        /* aliases share a field with the property listed first; secrets
         * never leave the core */
        for (j = 0; j < i; j++) {
            if (mg_conf_props[j].off == p->off) {
                dup = 1;
            }
        }
        if (dup || p->type == MG_CONF_T_SECRET) {
            continue;
        }
        switch (p->type) {
        case MG_CONF_T_STR:
        case MG_CONF_T_STR_EMPTY:
        case MG_CONF_T_OPTSTR:
        case MG_CONF_T_DATABASE:
        case MG_CONF_T_ROLE:
        case MG_CONF_T_VERIFY: {
            const char *s = *(const char *const *) v;
            fprintf(f, "%s\"%s\":", first ? "" : ",", p->name);
            if (s) mg_conf_json_str(f, s, strlen(s)); else fputs("null", f);
            break;
        }
        case MG_CONF_T_INT:
        case MG_CONF_T_OPTINT:
        case MG_CONF_T_TIME:
        case MG_CONF_T_WORKERS:
            fprintf(f, "%s\"%s\":%d", first ? "" : ",", p->name,
                    *(const int *) v);
            break;
        case MG_CONF_T_BOOL:
            fprintf(f, "%s\"%s\":%s", first ? "" : ",", p->name,
                    *(const int *) v ? "true" : "false");
            break;
        case MG_CONF_T_SIZE:
            fprintf(f, "%s\"%s\":%zu", first ? "" : ",", p->name,
                    *(const size_t *) v);
            break;
        case MG_CONF_T_LOGLEVEL:
            fprintf(f, "%s\"%s\":\"%s\"", first ? "" : ",", p->name,
                    mg_log_level_name(*(const int *) v));
            break;
        case MG_CONF_T_LISTEN: {
            const mg_listen_list_t *l = v;
            fprintf(f, "%s\"%s\":[", first ? "" : ",", p->name);
            for (k = 0; k < l->n; k++) {
                if (k) fputc(',', f);
                mg_conf_json_str(f, l->elts[k].text.data, l->elts[k].text.len);
            }
            fputc(']', f);
            break;
        }
        default:
            continue;
        }
        first = 0;
    }
    fputc('}', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
