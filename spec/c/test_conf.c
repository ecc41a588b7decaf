/*
 * test_conf.c -- moongate.conf: defaults, file syntax, environment, -p,
 * every value parser and the error messages.
 */
#include <sys/stat.h>
#include "tap.h"
#include "../../core/conf/mg_conf.c"

extern char **environ;

static char tmpdir[] = "/tmp/mg_test_conf_XXXXXX";

static const char *
write_file(const char *name, const char *text)
{
    static char path[512];
    FILE       *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void
clear_env(void)
{
    char **e;
    char   name[256];

    for (;;) {
        for (e = environ; *e; e++) {
            if (strncmp(*e, "MOONGATE_", 9) == 0) break;
        }
        if (*e == NULL) return;
        snprintf(name, sizeof(name), "%.*s",
                 (int) (strchr(*e, '=') - *e), *e);
        unsetenv(name);
    }
}

static int
has(const char *err, const char *needle)
{
    int found = strstr(err, needle) != NULL;

    if (!found) printf("#   looked for \"%s\" in:\n#   %s\n", needle, err);
    return found;
}

static void
test_defaults(void)
{
    char       err[1024];
    mg_conf_t *c = mg_conf_load(NULL, NULL, err, sizeof(err));
    long       cpus = sysconf(_SC_NPROCESSORS_ONLN);
    struct sockaddr_in *sin;

    if (!ok(c != NULL, "defaults load")) {
        printf("# %s\n", err);
        return;
    }
    is_str(c->prefix, "/usr/local/moongate", "prefix");
    is_int(c->worker_processes, cpus > 0 ? cpus : 1, "worker_processes auto");
    ok(c->declarative_config == NULL, "declarative_config unset");
    is_str(c->database, "lmdb", "database lmdb");
    is_int(c->log_level, MG_LOG_NOTICE, "log_level notice");
    is_str(c->proxy_access_log, "logs/access.log", "proxy_access_log");
    is_str(c->proxy_error_log, "logs/error.log", "proxy_error_log");
    is_str(c->admin_access_log, "logs/admin_access.log", "admin_access_log");
    is_str(c->admin_error_log, "logs/error.log", "admin_error_log");
    is_str(c->pid_file, "/usr/local/moongate/pids/moongate.pid",
           "pid_file resolved against prefix");
    is_int(c->proxy_listen.n, 1, "one proxy listener");
    sin = (struct sockaddr_in *) &c->proxy_listen.elts[0].addr;
    is_int(sin->sin_family, AF_INET, "proxy_listen IPv4");
    is_int(ntohs(sin->sin_port), 8000, "proxy_listen port 8000");
    is_int(sin->sin_addr.s_addr, htonl(INADDR_ANY), "proxy_listen 0.0.0.0");
    ok(c->proxy_listen.elts[0].reuseport, "proxy_listen reuseport");
    is_int(c->proxy_listen.elts[0].backlog, 16384, "proxy_listen backlog");
    ok(!c->proxy_listen.elts[0].ssl, "proxy_listen no ssl");
    ok(mg_str_eq_lit(c->proxy_listen.elts[0].text, "0.0.0.0:8000"),
       "listen text as written");
    sin = (struct sockaddr_in *) &c->admin_listen.elts[0].addr;
    is_int(ntohs(sin->sin_port), 8001, "admin_listen port 8001");
    is_int(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK), "admin on loopback");
    is_int(c->status_listen.n, 0, "status_listen off");
    is_int(c->client_max_body_size, 10 * 1024 * 1024, "client_max_body_size");
    is_int(c->client_body_buffer_size, 8192, "client_body_buffer_size");
    is_int(c->client_header_buffer_size, 1024, "client_header_buffer_size");
    is_int(c->large_client_header_buffers, 4, "large buffers count");
    is_int(c->large_client_header_buffer, 8192, "large buffer size");
    is_int(c->max_req_headers, 100, "max_req_headers");
    is_int(c->client_header_timeout, 60000, "client_header_timeout");
    is_int(c->client_body_timeout, 60000, "client_body_timeout");
    is_int(c->keepalive_timeout, 75000, "keepalive_timeout");
    is_int(c->keepalive_requests, 10000, "keepalive_requests");
    is_int(c->send_timeout, 60000, "send_timeout");
    is_int(c->upstream_keepalive_pool_size, 512, "upstream pool size");
    is_int(c->upstream_keepalive_max_requests, 10000, "upstream max reqs");
    is_int(c->upstream_keepalive_idle_timeout, 60000, "upstream idle ms");
    is_int(c->headers, MG_HDR_SERVER_TOKENS | MG_HDR_LATENCY_TOKENS
                       | MG_HDR_REQUEST_ID, "headers default");
    is_int(c->headers_upstream, MG_HDR_REQUEST_ID, "headers_upstream");
    is_int(c->trusted_ips_n, 0, "trusted_ips empty");
    is_str(c->real_ip_header, "X-Real-IP", "real_ip_header");
    is_str(c->plugins, "bundled", "plugins");
    is_str(c->lua_package_path, "./?.lua;./?/init.lua;", "lua_package_path");
    is_str(c->lua_package_cpath, "", "lua_package_cpath");
    is_str(c->role, "traditional", "role");
    ok(c->cluster_control_plane == NULL && c->cluster_cert == NULL
       && c->cluster_cert_key == NULL && c->ssl_cert == NULL
       && c->ssl_cert_key == NULL && c->admin_api_token == NULL
       && c->dns_resolver == NULL, "unset strings are NULL");
    is_int(c->lmdb_map_size, 2048ULL * 1024 * 1024, "lmdb_map_size");
    is_str(c->dns_order, "LAST,SRV,A,CNAME", "dns_order");
    is_int(c->dns_valid_ttl, -1, "dns_valid_ttl unset");
    is_int(c->dns_stale_ttl, 3600, "dns_stale_ttl");
    is_int(c->dns_not_found_ttl, 30, "dns_not_found_ttl");
    is_int(c->dns_error_ttl, 1, "dns_error_ttl");
    is_int(c->mem_cache_size, 128 * 1024 * 1024, "mem_cache_size");
    is_int(c->db_cache_ttl, 0, "db_cache_ttl");
    is_int(c->db_cache_neg_ttl, -1, "db_cache_neg_ttl unset");
    is_int(c->resurrect_ttl, 30, "resurrect_ttl");
    ok(c->conf_path == NULL, "no file read");
    mg_conf_free(c);
}

static void
test_file(void)
{
    char        err[2048];
    const char *path;
    mg_conf_t  *c;
    struct sockaddr_in6 *sin6;

    path = write_file("ok.conf",
        "# a comment\n"
        "\n"
        "   # indented comment\n"
        "log_level = debug   # trailing comment\n"
        "proxy_listen = 127.0.0.1:9000 ssl http2, [::1]:9001 reuseport "
        "backlog=100 proxy_protocol deferred bind , *:9002\n"
        "admin_listen=off\n"
        "status_listen = 0.0.0.0:8100\n"
        "real_ip_header = X-Forwarded-For\n"
        "lua_package_path = /opt/\\#x/?.lua;;  # the # is escaped\n"
        "nginx_http_client_max_body_size = 0\n"
        "nginx_http_client_body_buffer_size = 16K\n"
        "nginx_http_client_header_buffer_size = 2k\n"
        "nginx_http_large_client_header_buffers = 8 16k\n"
        "nginx_http_client_header_timeout = 500ms\n"
        "nginx_http_client_body_timeout = 1m30s\n"
        "nginx_http_keepalive_timeout = 5\n"
        "nginx_http_keepalive_requests = 7\n"
        "nginx_http_send_timeout = 2h\n"
        "lua_max_req_headers = 50\n"
        "upstream_keepalive_idle_timeout = 30\n"
        "headers = Server, X-Kong-Upstream-Status\n"
        "headers_upstream = off\n"
        "trusted_ips = 0.0.0.0/0,::/0, unix:, 10.1.2.3\n"
        "nginx_worker_processes = 3\n"
        "database = off\n"
        "declarative_config = /etc/kong.yml\n"
        "plugins = bundled, ai-proxy\n"
        "role = data_plane\n"
        "cluster_control_plane = cp.example.com:8005\n"
        "admin_api_token = s3cr3t#notacomment\n"
        "lmdb_map_size = 1g\n"
        "dns_resolver = 8.8.8.8, [::1]:5353, 1.1.1.1:53\n"
        "dns_order = A,CNAME\n"
        "dns_valid_ttl = 10\n"
        "mem_cache_size = 64m\n"
        "db_cache_ttl = 3600\n"
        "db_cache_neg_ttl = 60\n"
        "prefix = /tmp/mgprefix/\n"
        "pid_file = /run/mg.pid\n");
    c = mg_conf_load(path, NULL, err, sizeof(err));
    if (!ok(c != NULL, "file loads")) {
        printf("# %s\n", err);
        return;
    }
    is_str(c->conf_path, path, "conf_path");
    is_int(c->log_level, MG_LOG_DEBUG, "trailing comment stripped");
    is_int(c->proxy_listen.n, 3, "three proxy listeners");
    ok(c->proxy_listen.elts[0].ssl && c->proxy_listen.elts[0].http2
       && !c->proxy_listen.elts[0].reuseport, "ssl http2 flags");
    is_int(c->proxy_listen.elts[0].backlog, 511, "backlog default 511");
    sin6 = (struct sockaddr_in6 *) &c->proxy_listen.elts[1].addr;
    is_int(sin6->sin6_family, AF_INET6, "[::1] is IPv6");
    is_int(ntohs(sin6->sin6_port), 9001, "IPv6 port");
    ok(c->proxy_listen.elts[1].reuseport &&
           c->proxy_listen.elts[1].proxy_protocol &&
           c->proxy_listen.elts[1].deferred && c->proxy_listen.elts[1].bind,
       "all flags");
    is_int(c->proxy_listen.elts[1].backlog, 100, "backlog=100");
    ok(mg_str_eq_lit(c->proxy_listen.elts[2].text, "*:9002"), "* text kept");
    is_int(c->admin_listen.n, 0, "admin_listen=off without spaces");
    is_int(c->status_listen.n, 1, "status_listen on");
    is_str(c->real_ip_header, "X-Forwarded-For", "real_ip_header");
    is_str(c->lua_package_path, "/opt/#x/?.lua;;", "\\# unescaped");
    is_int(c->client_max_body_size, 0, "0 = unlimited via alias");
    is_int(c->client_body_buffer_size, 16384, "16K");
    is_int(c->client_header_buffer_size, 2048, "2k");
    is_int(c->large_client_header_buffers, 8, "8 buffers");
    is_int(c->large_client_header_buffer, 16384, "of 16k");
    is_int(c->client_header_timeout, 500, "500ms");
    is_int(c->client_body_timeout, 90000, "1m30s");
    is_int(c->keepalive_timeout, 5000, "bare number is seconds");
    is_int(c->keepalive_requests, 7, "keepalive_requests alias");
    is_int(c->send_timeout, 7200000, "2h");
    is_int(c->max_req_headers, 50, "lua_max_req_headers");
    is_int(c->upstream_keepalive_idle_timeout, 30000, "idle timeout seconds");
    is_int(c->headers, MG_HDR_SERVER | MG_HDR_UPSTREAM_STATUS, "headers");
    is_int(c->headers_upstream, 0, "headers_upstream off");
    is_int(c->trusted_ips_n, 4, "four trusted ips");
    ok(c->trusted_ips_n == 4 && mg_str_eq_lit(c->trusted_ips[1], "::/0")
       && mg_str_eq_lit(c->trusted_ips[2], "unix:"), "trusted_ips values");
    is_int(c->worker_processes, 3, "nginx_worker_processes alias");
    is_str(c->database, "off", "database off");
    is_str(c->declarative_config, "/etc/kong.yml", "declarative_config");
    is_str(c->plugins, "bundled, ai-proxy", "value with comma and space");
    is_str(c->role, "data_plane", "role");
    is_str(c->cluster_control_plane, "cp.example.com:8005", "cluster cp");
    is_str(c->admin_api_token, "s3cr3t", "unescaped # starts a comment");
    is_int(c->lmdb_map_size, 1024 * 1024 * 1024, "lmdb_map_size 1g");
    is_str(c->dns_resolver, "8.8.8.8, [::1]:5353, 1.1.1.1:53", "dns_resolver");
    is_str(c->dns_order, "A,CNAME", "dns_order");
    is_int(c->dns_valid_ttl, 10, "dns_valid_ttl");
    is_int(c->mem_cache_size, 64 * 1024 * 1024, "mem_cache_size");
    is_int(c->db_cache_ttl, 3600, "db_cache_ttl");
    is_int(c->db_cache_neg_ttl, 60, "db_cache_neg_ttl");
    is_str(c->prefix, "/tmp/mgprefix", "trailing slash dropped");
    is_str(c->pid_file, "/run/mg.pid", "absolute pid_file kept");
    mg_conf_free(c);
}

static void
test_errors(void)
{
    char        err[4096];
    const char *path;
    mg_conf_t  *c;

    path = write_file("bad.conf",
        "log_level = loud\n"
        "no_such_property = 1\n"
        "just some words\n"
        "client_max_body_size = 10x\n"
        "client_header_timeout = soon\n"
        "proxy_listen = 0.0.0.0\n"
        "admin_listen = 127.0.0.1:8001 turbo\n"
        "status_listen = off, 127.0.0.1:1\n"
        "headers = X-Nope\n"
        "headers_upstream = Server\n"
        "trusted_ips = 10.0.0.0/33\n"
        "worker_processes = many\n"
        "database = postgres\n"
        "keepalive_requests = -1\n"
        "large_client_header_buffers = 4\n"
        "dns_order = A,MX\n"
        "dns_resolver = dns.google\n"
        "role = leader\n"
        "lua_max_req_headers = 0\n"
        "real_ip_header =\n");
    c = mg_conf_load(path, NULL, err, sizeof(err));
    ok(c == NULL, "bad file rejected");
    ok(has(err, "bad.conf:1: log_level: invalid log level 'loud'"),
       "bad log level names file:line and key");
    ok(has(err, "bad.conf:2: unknown property 'no_such_property'"),
       "unknown key rejected");
    ok(has(err, "bad.conf:3: expected 'name = value'"), "line without =");
    ok(has(err, "bad.conf:4: client_max_body_size: invalid size '10x'"),
       "malformed size");
    ok(has(err, "bad.conf:5: client_header_timeout: invalid time 'soon'"),
       "malformed time");
    ok(has(err, "bad.conf:6: proxy_listen: invalid address '0.0.0.0'"),
       "listen without port");
    ok(has(err, "bad.conf:7: admin_listen: unknown flag 'turbo'"),
       "unknown listen flag");
    ok(has(err, "bad.conf:8: status_listen: 'off' cannot be combined"),
       "off mixed with addresses");
    ok(has(err, "bad.conf:9: headers: invalid header 'X-Nope'"),
       "unknown header");
    ok(has(err, "bad.conf:10: headers_upstream: invalid header 'Server'"),
       "headers_upstream only takes X-Kong-Request-Id");
    ok(has(err, "bad.conf:11: trusted_ips: invalid entry '10.0.0.0/33'"),
       "bad CIDR");
    ok(has(err, "bad.conf:12: worker_processes: invalid value 'many'"),
       "bad worker_processes");
    ok(has(err, "bad.conf:13: database: 'postgres' is not supported"),
       "postgres refused with a reason");
    ok(has(err, "bad.conf:14: keepalive_requests: value -1 out of range"),
       "negative count");
    ok(has(err, "bad.conf:15: large_client_header_buffers: invalid value"),
       "large buffers needs two parts");
    ok(has(err, "bad.conf:16: dns_order: invalid record type 'MX'"),
       "dns_order");
    ok(has(err, "bad.conf:17: dns_resolver: invalid nameserver 'dns.google'"),
       "dns_resolver");
    ok(has(err, "bad.conf:18: role: invalid role 'leader'"), "role");
    ok(has(err, "bad.conf:19: lua_max_req_headers: value 0 out of range"),
       "max headers range");
    ok(has(err, "bad.conf:20: real_ip_header: must not be empty"),
       "empty required string");

    c = mg_conf_load("/nonexistent/moongate.conf", NULL, err, sizeof(err));
    ok(c == NULL && has(err, "/nonexistent/moongate.conf: cannot open"),
       "missing file");

    /* A small buffer truncates, never overflows. */
    c = mg_conf_load(path, NULL, err, 16);
    ok(c == NULL && strlen(err) < 16, "error buffer truncated safely");
}

static void
test_env(void)
{
    char        err[2048];
    const char *path;
    mg_conf_t  *c;

    path = write_file("env.conf",
        "log_level = info\n"
        "client_max_body_size = 1m\n"
        "prefix = /from/file\n");
    setenv("MOONGATE_LOG_LEVEL", "error", 1);
    setenv("MOONGATE_NGINX_HTTP_SEND_TIMEOUT", "3s", 1);
    setenv("MOONGATE_PROXY_LISTEN", "127.0.0.1:18000", 1);
    setenv("MOONGATE_PREFIX", "/from/env", 1);
    setenv("MOONGATE_ADMIN_API_TOKEN", "tok", 1);
    setenv("MOONGATE_SOMETHING_UNKNOWN", "x", 1);
    c = mg_conf_load(path, NULL, err, sizeof(err));
    if (!ok(c != NULL, "env loads; unknown MOONGATE_* ignored")) {
        printf("# %s\n", err);
        clear_env();
        return;
    }
    is_int(c->log_level, MG_LOG_ERR, "env beats file");
    is_int(c->client_max_body_size, 1024 * 1024, "file kept where no env");
    is_int(c->send_timeout, 3000, "env alias");
    is_int(ntohs(((struct sockaddr_in *) &c->proxy_listen.elts[0].addr)
                 ->sin_port), 18000, "env listen");
    is_str(c->prefix, "/from/env", "env prefix beats file");
    is_str(c->admin_api_token, "tok", "secret from env");
    is_str(c->pid_file, "/from/env/pids/moongate.pid", "pid under env prefix");
    mg_conf_free(c);

    c = mg_conf_load(path, "/from/flag", err, sizeof(err));
    ok(c && strcmp(c->prefix, "/from/flag") == 0, "-p beats env and file");
    mg_conf_free(c);

    setenv("MOONGATE_CLIENT_BODY_TIMEOUT", "forever", 1);
    c = mg_conf_load(path, NULL, err, sizeof(err));
    ok(c == NULL && has(err, "environment MOONGATE_CLIENT_BODY_TIMEOUT: "
                             "client_body_timeout: invalid time 'forever'"),
       "bad env value names the variable");
    clear_env();
}

static void
test_prefix_file(void)
{
    char       err[1024], dir[600];
    mg_conf_t *c;

    snprintf(dir, sizeof(dir), "%s/pfx", tmpdir);
    mkdir(dir, 0700);
    write_file("pfx/moongate.conf", "log_level = warn\n");
    c = mg_conf_load(NULL, dir, err, sizeof(err));
    ok(c && c->log_level == MG_LOG_WARN && c->conf_path
       && strstr(c->conf_path, "pfx/moongate.conf"),
       "<prefix>/moongate.conf read when no -c");
    mg_conf_free(c);

    c = mg_conf_load(NULL, "relative/dir", err, sizeof(err));
    ok(c && c->prefix[0] == '/' && strstr(c->prefix, "/relative/dir"),
       "relative prefix made absolute");
    mg_conf_free(c);
}

static void
test_listen(void)
{
    mg_pool_t        *pool = mg_pool_create(1024);
    mg_listen_list_t  l;
    char              err[256];
    struct sockaddr_in6 *sin6;

    ok(mg_conf_parse_listen(pool, "off", &l, err, sizeof(err)) == MG_OK
       && l.n == 0, "off");
    ok(mg_conf_parse_listen(pool, "[::]:443 ssl", &l, err, sizeof(err))
       == MG_OK && l.n == 1 && l.elts[0].ssl, "[::]:443 ssl");
    sin6 = (struct sockaddr_in6 *) &l.elts[0].addr;
    ok(sin6->sin6_family == AF_INET6 && l.elts[0].addrlen == sizeof(*sin6),
       "IPv6 sockaddr");
    ok(mg_conf_parse_listen(pool, "localhost:80", &l, err, sizeof(err))
       == MG_OK, "localhost accepted");
    ok(mg_conf_parse_listen(pool, "::1:80", &l, err, sizeof(err)) == MG_ERROR,
       "bare IPv6 refused");
    ok(mg_conf_parse_listen(pool, "1.2.3.4:0", &l, err, sizeof(err))
       == MG_ERROR, "port 0 refused");
    ok(mg_conf_parse_listen(pool, "1.2.3.4:65536", &l, err, sizeof(err))
       == MG_ERROR, "port too large");
    ok(mg_conf_parse_listen(pool, "1.2.3.4:80 backlog=x", &l, err,
                            sizeof(err)) == MG_ERROR
       && has(err, "backlog=x"), "bad backlog");
    ok(mg_conf_parse_listen(pool, "1.2.3.4:80,", &l, err, sizeof(err))
       == MG_ERROR && has(err, "empty entry"), "trailing comma");
    ok(mg_conf_parse_listen(pool, "example.com:80", &l, err, sizeof(err))
       == MG_ERROR, "hostname refused");
    ok(mg_conf_parse_listen(pool,
        "1.1.1.1:1,1.1.1.1:2,1.1.1.1:3,1.1.1.1:4,1.1.1.1:5,1.1.1.1:6,"
        "1.1.1.1:7,1.1.1.1:8,1.1.1.1:9,1.1.1.1:10,1.1.1.1:11,1.1.1.1:12,"
        "1.1.1.1:13,1.1.1.1:14,1.1.1.1:15,1.1.1.1:16,1.1.1.1:17", &l, err,
        sizeof(err)) == MG_ERROR && has(err, "too many"), "at most 16");
    mg_pool_destroy(pool);
}

static void
test_parsers(void)
{
    size_t    sz;
    long long ms;
    int       b;

    ok(mg_conf_parse_size("0", &sz) == MG_OK && sz == 0, "size 0");
    ok(mg_conf_parse_size("1g", &sz) == MG_OK && sz == 1073741824, "size 1g");
    ok(mg_conf_parse_size("", &sz) == MG_ERROR, "empty size");
    ok(mg_conf_parse_size("-1", &sz) == MG_ERROR, "negative size");
    ok(mg_conf_parse_size("1kb", &sz) == MG_ERROR, "size junk suffix");
    ok(mg_conf_parse_size("99999999999999999999999", &sz) == MG_ERROR,
       "size overflow");
    ok(mg_conf_parse_time("1d", &ms) == MG_OK && ms == 86400000, "1d");
    ok(mg_conf_parse_time("1w", &ms) == MG_OK && ms == 604800000LL, "1w");
    ok(mg_conf_parse_time("1s500ms", &ms) == MG_OK && ms == 1500, "1s500ms");
    ok(mg_conf_parse_time("1.5s", &ms) == MG_ERROR, "no fractions");
    ok(mg_conf_parse_time("", &ms) == MG_ERROR, "empty time");
    ok(mg_conf_parse_bool("on", &b) == MG_OK && b == 1, "on");
    ok(mg_conf_parse_bool("FALSE", &b) == MG_OK && b == 0, "FALSE");
    ok(mg_conf_parse_bool("yes", &b) == MG_ERROR, "yes is not Kong's");
    ok(mg_conf_check_cidr("::1") == MG_OK, "bare IPv6 trusted");
    ok(mg_conf_check_cidr("fe80::/10") == MG_OK, "IPv6 CIDR");
    ok(mg_conf_check_cidr("1.2.3") == MG_ERROR, "bad IP");
}

static void
test_path(void)
{
    char       err[256], buf[256];
    mg_conf_t *c = mg_conf_load(NULL, "/srv/mg", err, sizeof(err));

    if (!ok(c != NULL, "load with -p")) return;
    is_str(mg_conf_path(c, "logs/error.log", buf, sizeof(buf)),
           "/srv/mg/logs/error.log", "relative resolved");
    is_str(mg_conf_path(c, "/var/log/x", buf, sizeof(buf)), "/var/log/x",
           "absolute kept");
    is_str(mg_conf_path(c, "off", buf, sizeof(buf)), "off", "off kept");
    is_str(mg_conf_path(c, "stderr", buf, sizeof(buf)), "stderr",
           "stderr kept");
    ok(mg_conf_path(c, NULL, buf, sizeof(buf)) == NULL, "NULL in, NULL out");
    mg_conf_free(c);
}

int
main(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    clear_env();
    test_defaults();
    test_file();
    test_errors();
    test_env();
    test_prefix_file();
    test_listen();
    test_parsers();
    test_path();
    return done_testing();
}
