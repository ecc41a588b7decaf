/*
 * test_router.c -- the router: every route field, Kong's priority rules,
 * captures, path normalisation, the strip_path x path_handling table, and
 * the index checked against a plain ordered scan on random configs.
 */
#include "router/mg_router.c"
#include "router/mg_router_path.c"
#include "tap.h"

/* ---- building configs by hand ------------------------------------------- */

#define MAX_ROUTES 20010

static mg_config_t *cf;

static void
cfg_new(void)
{
    cf = mg_config_new();
    cf->routes = mg_pool_calloc(cf->pool, MAX_ROUTES * sizeof(mg_route_t *));
    cf->routes_n = 0;
}

static void
cfg_free(void)
{
    mg_config_free(cf);
    cf = NULL;
}

static mg_str_t
S(const char *s)
{
    return mg_pool_str(cf->pool, s, strlen(s));
}

static void
strs(mg_str_array_t *a, const char *first, ...)
{
    va_list     ap;
    const char *s;
    size_t      n = 0;

    va_start(ap, first);
    for (s = first; s != NULL; s = va_arg(ap, const char *)) {
        n++;
    }
    va_end(ap);
    a->elts = mg_pool_calloc(cf->pool, (n + 1) * sizeof(mg_str_t));
    a->n = 0;
    va_start(ap, first);
    for (s = first; s != NULL; s = va_arg(ap, const char *)) {
        a->elts[a->n++] = S(s);
    }
    va_end(ap);
}

static mg_service_t *
service_new(const char *path)
{
    mg_service_t *s = mg_pool_calloc(cf->pool, sizeof(mg_service_t));
    s->enabled = 1;
    s->host = S("upstream.test");
    s->port = 80;
    s->protocol = S("http");
    if (path) {
        s->path = S(path);
    }
    return s;
}

static mg_route_t *
route_new(const char *name)
{
    mg_route_t *r = mg_pool_calloc(cf->pool, sizeof(mg_route_t));

    r->name = S(name);
    r->id = S(name);
    r->strip_path = 1;
    r->path_handling = S("v0");
    r->https_redirect_status_code = 426;
    strs(&r->protocols, "http", "https", NULL);
    r->index = cf->routes_n;
    r->service = NULL;
    cf->routes[cf->routes_n++] = r;
    return r;
}

static void
header_add(mg_route_t *r, const char *name, const char *v1, ...)
{
    mg_route_header_t *h = mg_pool_calloc(cf->pool,
                                          (r->nheaders + 1) * sizeof(*h));
    va_list            ap;
    const char        *s;
    size_t             n = 0;

    if (r->nheaders) {
        memcpy(h, r->headers, r->nheaders * sizeof(*h));
    }
    h[r->nheaders].name = S(name);
    va_start(ap, v1);
    for (s = v1; s != NULL; s = va_arg(ap, const char *)) {
        n++;
    }
    va_end(ap);
    h[r->nheaders].values.elts = mg_pool_calloc(cf->pool, n * sizeof(mg_str_t));
    va_start(ap, v1);
    for (s = v1; s != NULL; s = va_arg(ap, const char *)) {
        h[r->nheaders].values.elts[h[r->nheaders].values.n++] = S(s);
    }
    va_end(ap);
    r->headers = h;
    r->nheaders++;
}

/* ---- requests ------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *value;
} hdr_t;

static hdr_t  hdrs[16];
static size_t nhdrs;

static size_t
get_header(void *ctx, mg_str_t name, mg_str_t *out, size_t max)
{
    size_t i, n = 0;

    (void) ctx;
    for (i = 0; i < nhdrs; i++) {
        if (mg_str_caseeq_lit(name, hdrs[i].name)) {
            if (n < max) {
                out[n].data = hdrs[i].value;
                out[n].len = strlen(hdrs[i].value);
            }
            n++;
        }
    }
    return n;
}

static mg_router_req_t
req(const char *method, const char *host, const char *path)
{
    mg_router_req_t q;

    memset(&q, 0, sizeof(q));
    q.method.data = method;
    q.method.len = strlen(method);
    q.host.data = host;
    q.host.len = strlen(host);
    q.port = 80;
    q.path.data = path;
    q.path.len = strlen(path);
    mg_str_set(&q.scheme, "http");
    q.get_header = get_header;
    nhdrs = 0;
    return q;
}

static mg_router_t *router;
static mg_router_match_t mt;

static void
build(void)
{
    char err[256];

    mg_router_free(router);
    router = mg_router_build(cf, err, sizeof(err));
    if (router == NULL) {
        printf("# build failed: %s\n", err);
    }
}

/* Name of the matched route, or "-" on no match. */
static const char *
who(const mg_router_req_t *q)
{
    static char buf[128];

    memset(&mt, 0, sizeof(mt));
    if (mg_router_match(router, q, &mt) != MG_OK) {
        return "-";
    }
    snprintf(buf, sizeof(buf), "%.*s", (int) mt.route->name.len,
             mt.route->name.data);
    return buf;
}

static const char *
who3(const char *method, const char *host, const char *path)
{
    mg_router_req_t q = req(method, host, path);
    return who(&q);
}

static char *
cstr(mg_str_t s)
{
    static char buf[4][256];
    static int  k;

    k = (k + 1) & 3;
    snprintf(buf[k], sizeof(buf[k]), "%.*s", (int) s.len,
             s.data ? s.data : "");
    return buf[k];
}

/* ---- tests --------------------------------------------------------------- */

static void
test_empty(void)
{
    cfg_new();
    build();
    ok(router != NULL, "empty config builds");
    is_str(who3("GET", "a.com", "/"), "-", "empty router declines");
    is_int(mg_router_match(router, &(mg_router_req_t) { .path = { "/", 1 } },
                           &mt), MG_DECLINED, "MG_DECLINED");
    cfg_free();
}

static void
test_hosts(void)
{
    mg_route_t *r;

    cfg_new();
    r = route_new("exact");
    strs(&r->hosts, "Example.com", NULL);
    r = route_new("suffix");
    strs(&r->hosts, "*.wild.com", NULL);
    r = route_new("prefix");
    strs(&r->hosts, "pre.*", NULL);
    r = route_new("port");
    strs(&r->hosts, "svc.com:8080", NULL);
    r = route_new("wildport");
    strs(&r->hosts, "*.wp.com:9000", NULL);
    build();

    is_str(who3("GET", "example.com", "/"), "exact", "exact host");
    is_str(who3("GET", "EXAMPLE.COM", "/x"), "exact",
           "host is case-insensitive");
    ok(strcmp(cstr(mt.matched_host), "Example.com") == 0,
       "matched_host is the entry as configured");
    is_str(who3("GET", "www.example.com", "/"), "-", "exact is not suffix");
    is_str(who3("GET", "a.wild.com", "/"), "suffix", "*.wild.com: one label");
    is_str(who3("GET", "a.b.wild.com", "/"), "suffix",
           "*.wild.com: several labels");
    is_str(who3("GET", "wild.com", "/"), "-", "*.wild.com: not the apex");
    is_str(who3("GET", "xwild.com", "/"), "-", "*.wild.com: needs the dot");
    is_str(who3("GET", "pre.org", "/"), "prefix", "pre.*");
    is_str(who3("GET", "pre.co.uk", "/"), "prefix", "pre.* several labels");
    is_str(who3("GET", "www.pre.org", "/"), "-", "pre.*: anchored at start");
    is_str(who3("GET", "svc.com", "/"), "-", "host:port needs the port");
    {
        mg_router_req_t q = req("GET", "svc.com", "/");
        q.port = 8080;
        is_str(who(&q), "port", "host:port with the port");
        q.host.data = "a.wp.com";
        q.host.len = 8;
        is_str(who(&q), "-", "wildcard:port wrong port");
        q.port = 9000;
        is_str(who(&q), "wildport", "wildcard:port");
    }
    is_str(who3("GET", "", "/"), "-", "no host header");
    cfg_free();
}

static void
test_methods_paths(void)
{
    mg_route_t *r;

    cfg_new();
    r = route_new("get-foo");
    strs(&r->methods, "GET", NULL);
    strs(&r->paths, "/foo", NULL);
    r = route_new("bar");
    strs(&r->paths, "/bar/", "/baz", NULL);
    build();

    is_str(who3("GET", "h", "/foo"), "get-foo", "method + prefix");
    is_str(who3("POST", "h", "/foo"), "-", "other method declines");
    is_str(who3("GET", "h", "/foobar"), "get-foo",
           "prefix is a plain string prefix");
    is_str(who3("GET", "h", "/foo/x"), "get-foo", "prefix with segment");
    is_str(who3("GET", "h", "/fo"), "-", "shorter path declines");
    is_str(who3("GET", "h", "/x/foo"), "-", "prefix anchored at start");
    is_str(who3("GET", "h", "/baz"), "bar", "second path of a route");
    is_int(mt.prefix_len, 4, "prefix_len");
    is_str(cstr(mt.matched_path), "/baz", "matched_path");
    is_str(who3("GET", "h", "/bar"), "-", "/bar/ does not match /bar");
    is_str(who3("GET", "h", "/bar/1"), "bar", "/bar/ prefix");
    is_str(who3("GET", "h", "/Foo"), "-", "paths are case-sensitive");
    cfg_free();
}

static void
test_regex(void)
{
    mg_route_t *r;

    cfg_new();
    r = route_new("users");
    strs(&r->paths, "~/users/(?<id>\\d+)/(\\w+)$", NULL);
    r = route_new("alt");
    strs(&r->paths, "~/a1|/b1", NULL);
    r = route_new("nogroup");
    strs(&r->paths, "~/plain/\\d+", NULL);
    r = route_new("opt");
    strs(&r->paths, "~/opt/(x)?(y)", NULL);
    build();

    is_str(who3("GET", "h", "/users/42/profile"), "users", "regex matches");
    is_int(mt.ncaptures, 3, "captures: whole match + 2 groups");
    is_str(cstr(mt.captures[0]), "/users/42/profile", "capture 0");
    is_str(cstr(mt.captures[1]), "42", "named capture value");
    is_str(cstr(mt.capture_names[1]), "id", "named capture name");
    is_str(cstr(mt.captures[2]), "profile", "unnamed capture");
    is_int(mt.capture_names[2].len, 0, "unnamed capture has no name");
    is_int(mt.prefix_len, 17, "prefix_len is the match length");
    is_str(cstr(mt.matched_path), "/users/(?<id>\\d+)/(\\w+)$",
           "matched_path without ~");
    {
        mg_router_req_t q = req("GET", "h", "/users/7/me");
        who(&q);
        ok(mt.captures[1].data == q.path.data + 7,
           "captures are views into the request path");
    }
    is_str(who3("GET", "h", "/x/users/42/p"), "-", "regex anchored at start");
    is_str(who3("GET", "h", "/users/x/p"), "-", "regex mismatch");
    is_str(who3("GET", "h", "/b1/x"), "alt", "alternation: each branch");
    is_str(who3("GET", "h", "/x/b1"), "-", "alternation: anchored too");
    is_str(who3("GET", "h", "/plain/7/rest"), "nogroup", "no groups");
    is_int(mt.ncaptures, 0, "no groups: no captures (Kong)");
    is_int(mt.prefix_len, 8, "prefix_len of an unanchored-end regex");
    is_str(who3("GET", "h", "/opt/y"), "opt", "optional group");
    ok(mt.ncaptures == 3 && mt.captures[1].data == NULL
       && mt.captures[1].len == 0, "unset group is an empty NULL view");
    is_str(cstr(mt.captures[2]), "y", "later group still set");

    /* a bad regex fails the build and names the route */
    {
        char err[256];
        mg_router_t *bad;
        r = route_new("broken");
        strs(&r->paths, "~/(unclosed", NULL);
        bad = mg_router_build(cf, err, sizeof(err));
        ok(bad == NULL, "bad regex: build fails");
        ok(strstr(err, "broken") != NULL && strstr(err, "unclosed") != NULL,
           "error names route and path: %s", err);
    }
    cfg_free();
}

static void
test_headers(void)
{
    mg_route_t *r;
    mg_router_req_t q;

    cfg_new();
    r = route_new("ver");
    header_add(r, "X-Version", "v1", "V2", NULL);
    r = route_new("re");
    header_add(r, "x-client", "~*^mobile-\\d+$", NULL);
    r = route_new("two");
    header_add(r, "x-a", "1", NULL);
    header_add(r, "x-b", "2", NULL);
    build();

    q = req("GET", "h", "/");
    is_str(who(&q), "-", "no header: declines");
    q = req("GET", "h", "/");
    hdrs[0] = (hdr_t) { "x-version", "V1" };
    nhdrs = 1;
    is_str(who(&q), "ver", "value case-insensitive, name too");
    q = req("GET", "h", "/");
    hdrs[0] = (hdr_t) { "X-VERSION", "v3" };
    hdrs[1] = (hdr_t) { "X-Version", "v2" };
    nhdrs = 2;
    is_str(who(&q), "ver", "any of several request values");
    q = req("GET", "h", "/");
    hdrs[0] = (hdr_t) { "X-Version", "v1x" };
    nhdrs = 1;
    is_str(who(&q), "-", "literal value is exact");
    q = req("GET", "h", "/");
    hdrs[0] = (hdr_t) { "X-Client", "MOBILE-12" };
    nhdrs = 1;
    is_str(who(&q), "re", "~* regex value, caseless");
    q = req("GET", "h", "/");
    hdrs[0] = (hdr_t) { "X-Client", "desktop" };
    nhdrs = 1;
    is_str(who(&q), "-", "regex value mismatch");
    q = req("GET", "h", "/");
    hdrs[0] = (hdr_t) { "x-a", "1" };
    nhdrs = 1;
    is_str(who(&q), "-", "every header must match");
    q = req("GET", "h", "/");
    hdrs[0] = (hdr_t) { "x-a", "1" };
    hdrs[1] = (hdr_t) { "x-b", "2" };
    nhdrs = 2;
    is_str(who(&q), "two", "two headers match");
    cfg_free();
}

static void
test_snis_protocols_services(void)
{
    mg_route_t      *r;
    mg_router_req_t  q;
    mg_service_t    *off;

    cfg_new();
    r = route_new("sni");
    strs(&r->protocols, "https", NULL);
    strs(&r->snis, "secure.com.", NULL);
    strs(&r->paths, "/s", NULL);
    r = route_new("tcp");
    strs(&r->protocols, "tcp", NULL);
    strs(&r->paths, "/", NULL);
    off = service_new(NULL);
    off->enabled = 0;
    r = route_new("disabled");
    r->service = off;
    strs(&r->paths, "/off", NULL);
    r = route_new("httpsonly");
    strs(&r->protocols, "https", NULL);
    strs(&r->paths, "/h", NULL);
    r = route_new("grpc");
    strs(&r->protocols, "grpc", NULL);
    strs(&r->paths, "/g", NULL);
    build();

    q = req("GET", "secure.com", "/s");
    mg_str_set(&q.scheme, "https");
    mg_str_set(&q.sni, "secure.com");
    is_str(who(&q), "sni", "https with matching SNI");
    mg_str_set(&q.sni, "other.com");
    is_str(who(&q), "-", "https with other SNI declines");
    mg_str_set(&q.sni, "SECURE.com.");
    is_str(who(&q), "sni", "SNI: case and trailing dot ignored");
    q = req("GET", "secure.com", "/s");
    is_str(who(&q), "sni", "plain http: snis not considered (Kong)");
    is_str(who3("GET", "h", "/x"), "-", "stream (tcp) routes are left out");
    is_str(who3("GET", "h", "/off"), "-", "route of a disabled service");
    is_str(who3("GET", "h", "/h"), "httpsonly",
           "protocols do not filter matching (Kong answers 426 later)");
    ok(mg_router_https_required(mt.route, (mg_str_t) mg_string("http")),
       "https-only route over http: https required");
    ok(!mg_router_https_required(mt.route, (mg_str_t) mg_string("https")),
       "https-only route over https: fine");
    is_str(who3("GET", "h", "/g"), "grpc", "grpc routes are HTTP routes");
    ok(!mg_router_https_required(mt.route, (mg_str_t) mg_string("http")),
       "grpc route: no https redirect");
    cfg_free();
}

static void
test_priorities(void)
{
    mg_route_t      *r;
    mg_router_req_t  q;

    cfg_new();
    /* more conditions first */
    r = route_new("path-only");
    strs(&r->paths, "/p", NULL);
    r = route_new("host-path");
    strs(&r->hosts, "a.com", NULL);
    strs(&r->paths, "/p", NULL);
    r = route_new("host-path-method");
    strs(&r->hosts, "a.com", NULL);
    strs(&r->paths, "/p", NULL);
    strs(&r->methods, "POST", NULL);
    build();
    is_str(who3("GET", "a.com", "/p"), "host-path", "host+path over path");
    is_str(who3("POST", "a.com", "/p"), "host-path-method",
           "three fields over two");
    is_str(who3("GET", "b.com", "/p"), "path-only", "fallback to fewer");
    cfg_free();

    /* longer prefix wins; regex before prefix; regex_priority */
    cfg_new();
    r = route_new("short");
    strs(&r->paths, "/api", NULL);
    r = route_new("long");
    strs(&r->paths, "/api/v1", NULL);
    build();
    is_str(who3("GET", "h", "/api/v1/x"), "long", "longer prefix wins");
    is_str(who3("GET", "h", "/api/v2"), "short", "shorter when longer fails");
    r = route_new("re-low");
    strs(&r->paths, "~/api/v\\d", NULL);
    build();
    is_str(who3("GET", "h", "/api/v1/x"), "re-low",
           "regex before a longer prefix");
    r = route_new("re-high");
    strs(&r->paths, "~/api/.*", NULL);
    r->regex_priority = 5;
    build();
    is_str(who3("GET", "h", "/api/v1/x"), "re-high",
           "higher regex_priority first");
    r = route_new("re-neg");
    strs(&r->paths, "~/api", NULL);
    r->regex_priority = -1;
    build();
    is_str(who3("GET", "h", "/api/zz"), "re-high", "negative regex_priority");
    cfg_free();

    /* regex_priority is ignored for prefix paths */
    cfg_new();
    r = route_new("pfx-prio");
    strs(&r->paths, "/a", NULL);
    r->regex_priority = 100;
    r = route_new("pfx-long");
    strs(&r->paths, "/a/b", NULL);
    build();
    is_str(who3("GET", "h", "/a/b"), "pfx-long",
           "regex_priority does not rank prefix paths");
    cfg_free();

    /* plain host over wildcard; weight over plain host */
    cfg_new();
    r = route_new("wild");
    strs(&r->hosts, "*.ex.com", NULL);
    r = route_new("plain");
    strs(&r->hosts, "api.ex.com", NULL);
    r = route_new("mixed");
    strs(&r->hosts, "api.ex.com", "*.other.com", NULL);
    build();
    is_str(who3("GET", "api.ex.com", "/"), "plain", "plain host over wildcard");
    is_str(who3("GET", "web.ex.com", "/"), "wild", "wildcard otherwise");
    r = route_new("wild-method");
    strs(&r->hosts, "*.ex.com", NULL);
    strs(&r->methods, "GET", NULL);
    build();
    is_str(who3("GET", "api.ex.com", "/"), "wild-method",
           "more fields beat plain host");
    is_str(who3("DELETE", "api.ex.com", "/"), "plain", "plain again");
    cfg_free();

    /* header count; headers beat paths length */
    cfg_new();
    r = route_new("h1");
    header_add(r, "x-a", "1", NULL);
    strs(&r->paths, "/long/path", NULL);
    r = route_new("h2");
    header_add(r, "x-a", "1", NULL);
    header_add(r, "x-b", "~*.", NULL);
    strs(&r->paths, "/", NULL);
    build();
    q = req("GET", "h", "/long/path");
    hdrs[0] = (hdr_t) { "x-a", "1" };
    hdrs[1] = (hdr_t) { "x-b", "z" };
    nhdrs = 2;
    is_str(who(&q), "h2", "more headers first, before path length");
    q = req("GET", "h", "/long/path");
    hdrs[0] = (hdr_t) { "x-a", "1" };
    nhdrs = 1;
    is_str(who(&q), "h1", "fewer headers when more fail");
    cfg_free();

    /* a route's paths are ranked one by one (Kong splits by path kind) */
    cfg_new();
    r = route_new("X");
    strs(&r->paths, "/a", "/a/b/c", NULL);
    r = route_new("Y");
    strs(&r->paths, "/a/b", NULL);
    build();
    is_str(who3("GET", "h", "/a/b/c/d"), "X", "split: long path of X");
    is_str(who3("GET", "h", "/a/b/x"), "Y", "split: Y between X's paths");
    is_str(who3("GET", "h", "/a/x"), "X", "split: short path of X");
    cfg_free();

    /* ties: created_at, then config order */
    cfg_new();
    r = route_new("newer");
    strs(&r->paths, "/t", NULL);
    r->created_at = 200;
    r = route_new("older");
    strs(&r->paths, "/t", NULL);
    r->created_at = 100;
    r = route_new("older-later");
    strs(&r->paths, "/t", NULL);
    r->created_at = 100;
    build();
    is_str(who3("GET", "h", "/t"), "older", "tie: older created_at first");
    cfg_free();
}

/* Kong's spec/fixtures/router_path_handling_tests.lua rows (Kong 3.x). */
typedef struct {
    const char *service_path;
    const char *route_path;     /* NULL: the route matches on host */
    int         strip;          /* 0, 1, or 2 for both */
    int         v;              /* 0, 1, or 2 for both */
    const char *request;
    const char *expected;
} path_row_t;

static const path_row_t path_rows[] = {
    { "/", "/", 2, 2, "/", "/" },
    { "/", "/", 2, 2, "/route", "/route" },
    { "/", "/", 2, 2, "/route/", "/route/" },
    { "/", "/", 2, 2, "/routereq", "/routereq" },
    { "/", "/", 2, 2, "/route/req", "/route/req" },
    { "/", "/route", 0, 2, "/route", "/route" },
    { "/", "/route", 0, 2, "/route/", "/route/" },
    { "/", "/route", 0, 2, "/routereq", "/routereq" },
    { "/", "/route", 1, 2, "/route", "/" },
    { "/", "/route", 1, 2, "/route/", "/" },
    { "/", "/route", 1, 2, "/routereq", "/req" },
    { "/", "/route/", 0, 2, "/route/", "/route/" },
    { "/", "/route/", 0, 2, "/route/req", "/route/req" },
    { "/", "/route/", 1, 2, "/route/", "/" },
    { "/", "/route/", 1, 2, "/route/req", "/req" },
    { "/srv", "/rou", 0, 0, "/roureq", "/srv/roureq" },
    { "/srv", "/rou", 0, 1, "/roureq", "/srvroureq" },
    { "/srv", "/rou", 1, 0, "/roureq", "/srv/req" },
    { "/srv", "/rou", 1, 1, "/roureq", "/srvreq" },
    { "/srv/", "/rou", 0, 2, "/rou", "/srv/rou" },
    { "/srv/", "/rou", 1, 0, "/rou", "/srv" },
    { "/srv/", "/rou", 1, 1, "/rou", "/srv/" },
    { "/service", "/", 2, 2, "/", "/service" },
    { "/service", "/", 2, 0, "/route", "/service/route" },
    { "/service", "/", 2, 1, "/route", "/serviceroute" },
    { "/service", "/", 2, 0, "/route/", "/service/route/" },
    { "/service", "/", 2, 1, "/route/", "/serviceroute/" },
    { "/service", "/", 2, 0, "/routereq", "/service/routereq" },
    { "/service", "/", 2, 1, "/routereq", "/serviceroutereq" },
    { "/service", "/", 2, 0, "/route/req", "/service/route/req" },
    { "/service", "/", 2, 1, "/route/req", "/serviceroute/req" },
    { "/service", "/route", 0, 0, "/route", "/service/route" },
    { "/service", "/route", 0, 1, "/route", "/serviceroute" },
    { "/service", "/route", 0, 0, "/route/", "/service/route/" },
    { "/service", "/route", 0, 1, "/route/", "/serviceroute/" },
    { "/service", "/route", 0, 0, "/routereq", "/service/routereq" },
    { "/service", "/route", 0, 1, "/routereq", "/serviceroutereq" },
    { "/service", "/route", 1, 2, "/route", "/service" },
    { "/service", "/route", 1, 2, "/route/", "/service/" },
    { "/service", "/route", 1, 0, "/routereq", "/service/req" },
    { "/service", "/route", 1, 1, "/routereq", "/servicereq" },
    { "/service", "/route/", 0, 0, "/route/", "/service/route/" },
    { "/service", "/route/", 0, 1, "/route/", "/serviceroute/" },
    { "/service", "/route/", 0, 0, "/route/req", "/service/route/req" },
    { "/service", "/route/", 0, 1, "/route/req", "/serviceroute/req" },
    { "/service", "/route/", 1, 0, "/route/", "/service/" },
    { "/service", "/route/", 1, 1, "/route/", "/service" },
    { "/service", "/route/", 1, 0, "/route/req", "/service/req" },
    { "/service", "/route/", 1, 1, "/route/req", "/servicereq" },
    { "/service/", "/", 2, 0, "/route/", "/service/route/" },
    { "/service/", "/", 2, 1, "/route/", "/service/route/" },
    { "/service/", "/", 2, 2, "/", "/service/" },
    { "/service/", "/", 2, 2, "/route", "/service/route" },
    { "/service/", "/", 2, 2, "/routereq", "/service/routereq" },
    { "/service/", "/", 2, 2, "/route/req", "/service/route/req" },
    { "/service/", "/route", 0, 2, "/route", "/service/route" },
    { "/service/", "/route", 0, 2, "/route/", "/service/route/" },
    { "/service/", "/route", 0, 2, "/routereq", "/service/routereq" },
    { "/service/", "/route", 1, 0, "/route", "/service" },
    { "/service/", "/route", 1, 1, "/route", "/service/" },
    { "/service/", "/route", 1, 2, "/route/", "/service/" },
    { "/service/", "/route", 1, 2, "/routereq", "/service/req" },
    { "/service/", "/route/", 0, 2, "/route/", "/service/route/" },
    { "/service/", "/route/", 0, 2, "/route/req", "/service/route/req" },
    { "/service/", "/route/", 1, 2, "/route/", "/service/" },
    { "/service/", "/route/", 1, 2, "/route/req", "/service/req" },
    { "/", NULL, 2, 2, "/", "/" },
    { "/", NULL, 2, 2, "/route", "/route" },
    { "/", NULL, 2, 2, "/route/", "/route/" },
    { "/service", NULL, 2, 2, "/", "/service" },
    { "/service", NULL, 2, 0, "/route", "/service/route" },
    { "/service", NULL, 2, 1, "/route", "/serviceroute" },
    { "/service", NULL, 2, 0, "/route/", "/service/route/" },
    { "/service", NULL, 2, 1, "/route/", "/serviceroute/" },
    { "/service/", NULL, 2, 2, "/", "/service/" },
    { "/service/", NULL, 2, 2, "/route", "/service/route" },
    { "/service/", NULL, 2, 2, "/route/", "/service/route/" },
};

static void
test_path_handling(void)
{
    size_t i;
    int    strip, v, bad = 0, total = 0;
    char   buf[256];

    for (i = 0; i < mg_nelems(path_rows); i++) {
        const path_row_t *t = &path_rows[i];
        for (strip = 0; strip <= 1; strip++) {
            if (t->strip != 2 && t->strip != strip) {
                continue;
            }
            for (v = 0; v <= 1; v++) {
                mg_route_t   *r;
                mg_service_t *svc;
                ssize_t       n;
                mg_router_req_t q;

                if (t->v != 2 && t->v != v) {
                    continue;
                }
                cfg_new();
                svc = service_new(t->service_path);
                r = route_new("r");
                r->service = svc;
                r->strip_path = strip;
                r->path_handling = S(v ? "v1" : "v0");
                if (t->route_path) {
                    strs(&r->paths, t->route_path, NULL);
                } else {
                    strs(&r->hosts, "localbin.com", NULL);
                }
                build();
                q = req("GET", "localbin.com", t->request);
                n = -1;
                if (mg_router_match(router, &q, &mt) == MG_OK) {
                    n = mg_router_upstream_path(&mt, &q, svc->path, buf,
                                                sizeof(buf));
                }
                total++;
                if (n < 0 || strlen(t->expected) != (size_t) n
                    || memcmp(buf, t->expected, (size_t) n) != 0)
                {
                    bad++;
                    ok(0, "path row %zu: service %s route %s strip %d v%d "
                       "req %s -> %.*s (want %s)", i + 1, t->service_path,
                       t->route_path ? t->route_path : "(host)", strip, v,
                       t->request, (int) (n < 0 ? 0 : n), buf, t->expected);
                }
                cfg_free();
            }
        }
    }
    ok(bad == 0, "strip_path x path_handling x service.path: %d/%d rows",
       total - bad, total);
}

static void
test_regex_strip_and_escape(void)
{
    mg_route_t      *r;
    mg_service_t    *svc;
    mg_router_req_t  q;
    char             buf[128], small[4];
    ssize_t          n;

    cfg_new();
    svc = service_new("/s");
    r = route_new("re");
    r->service = svc;
    strs(&r->paths, "~/v(\\d+)/api", NULL);
    build();
    q = req("GET", "h", "/v2/api/users");
    ok(mg_router_match(router, &q, &mt) == MG_OK, "regex route matched");
    n = mg_router_upstream_path(&mt, &q, svc->path, buf, sizeof(buf));
    is_str(n > 0 ? (buf[n] = 0, buf) : "", "/s/users",
           "strip removes the whole regex match");
    r->strip_path = 0;
    n = mg_router_upstream_path(&mt, &q, svc->path, buf, sizeof(buf));
    is_str(n > 0 ? (buf[n] = 0, buf) : "", "/s/v2/api/users", "no strip");

    q = req("GET", "h", "/v2/api/a b\xc3\xa9\"<%2F");
    ok(mg_router_match(router, &q, &mt) == MG_OK, "matched");
    n = mg_router_upstream_path(&mt, &q, svc->path, buf, sizeof(buf));
    is_str(n > 0 ? (buf[n] = 0, buf) : "", "/s/v2/api/a%20b%C3%A9%22%3C%2F",
           "upstream path re-escaped like Kong (kept %2F)");
    n = mg_router_upstream_path(&mt, &q, svc->path, small, sizeof(small));
    is_int(n, -1, "too small a buffer: -1");
    n = mg_router_upstream_path(&mt, &q, (mg_str_t) mg_null_string, buf,
                                sizeof(buf));
    is_str(n > 0 ? (buf[n] = 0, buf) : "", "/v2/api/a%20b%C3%A9%22%3C%2F",
           "no service path: /");
    cfg_free();
}

static const char *
norm(const char *in)
{
    static char buf[256];
    ssize_t     n = mg_router_path_normalize(in, strlen(in), buf,
                                             sizeof(buf) - 1);
    if (n < 0) {
        return "(error)";
    }
    buf[n] = '\0';
    return buf;
}

static void
test_normalize(void)
{
    char    inplace[32];
    ssize_t n;

    is_str(norm("/"), "/", "normalize /");
    is_str(norm("/a/b"), "/a/b", "nothing to do");
    is_str(norm("/a//b///c"), "/a/b/c", "slashes merged");
    is_str(norm("/a/./b/../c"), "/a/c", "dot segments");
    is_str(norm("/a/b/.."), "/a/", "trailing ..");
    is_str(norm("/a/b/."), "/a/b/", "trailing .");
    is_str(norm("/../../x"), "/x", ".. above root");
    is_str(norm("/%61%62c"), "/abc", "unreserved decoded");
    is_str(norm("/a%2fb%3F"), "/a%2Fb%3F", "reserved kept, hex upper-cased");
    is_str(norm("/%2e%2E/x"), "/x", "encoded dots are dots");
    is_str(norm("/a%20b"), "/a b", "others decoded");
    is_str(norm("/%zz%4"), "/%zz%4", "malformed escapes left alone");
    is_str(norm("/a/..b/c"), "/a/..b/c", "..b is a name");
    strcpy(inplace, "/x/%41/../y//z");
    n = mg_router_path_normalize(inplace, strlen(inplace), inplace,
                                 strlen(inplace));
    ok(n == 6 && memcmp(inplace, "/x/y/z", 6) == 0, "in place");
    is_int(mg_router_path_normalize("/abc", 4, inplace, 2), -1,
           "too small: -1");
}

/* ---- random configs: the index against a plain ordered scan ------------- */

static uint32_t rnd_state = 12345;

static uint32_t
rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static void
test_random_against_scan(void)
{
    static const char *hosts[] = { "a.com", "b.com", "*.a.com", "x.*",
                                   "a.com:8080", "A.COM", "*.b.a.com" };
    static const char *paths[] = { "/", "/a", "/ab", "/a/b", "/b", "~/a.*",
                                   "~/(a|b)/\\d+", "~/a/(?<n>b)", "~.*",
                                   "/a/b/c" };
    static const char *rhosts[] = { "a.com", "b.com", "x.a.com", "x.org",
                                    "y.b.a.com", "x.b.com", "zz" };
    static const char *rpaths[] = { "/", "/a", "/ab", "/a/b", "/a/b/c",
                                    "/b/12", "/a/1", "/abc", "/c", "" };
    int     round, i, bad = 0, checks = 0, hits = 0;

    for (round = 0; round < 40; round++) {
        int nroutes = 1 + (int) rnd(60);

        cfg_new();
        for (i = 0; i < nroutes; i++) {
            char        name[16];
            mg_route_t *r;
            int         k;

            snprintf(name, sizeof(name), "r%d", i);
            r = route_new(name);
            r->created_at = rnd(3);
            r->regex_priority = (int) rnd(3) - 1;
            for (k = (int) rnd(3); k > 0; k--) {
                mg_str_array_t *a = &r->hosts;
                mg_str_t *e = mg_pool_calloc(cf->pool,
                                             (a->n + 1) * sizeof(mg_str_t));
                if (a->n) memcpy(e, a->elts, a->n * sizeof(mg_str_t));
                e[a->n] = S(hosts[rnd(mg_nelems(hosts))]);
                a->elts = e;
                a->n++;
            }
            for (k = (int) rnd(3); k > 0; k--) {
                mg_str_array_t *a = &r->paths;
                mg_str_t *e = mg_pool_calloc(cf->pool,
                                             (a->n + 1) * sizeof(mg_str_t));
                if (a->n) memcpy(e, a->elts, a->n * sizeof(mg_str_t));
                e[a->n] = S(paths[rnd(mg_nelems(paths))]);
                a->elts = e;
                a->n++;
            }
            if (rnd(3) == 0) {
                strs(&r->methods, rnd(2) ? "GET" : "POST", NULL);
            }
            if (rnd(4) == 0) {
                header_add(r, "x-h", rnd(2) ? "1" : "~*^[0-9]$", NULL);
            }
        }
        build();
        for (i = 0; i < 200; i++) {
            mg_router_req_t   q;
            mg_router_match_t a, b;
            uint32_t          rank;
            int               got, want = 0;

            q = req(rnd(2) ? "GET" : "POST", rhosts[rnd(mg_nelems(rhosts))],
                    rpaths[rnd(mg_nelems(rpaths))]);
            q.port = rnd(2) ? 80 : 8080;
            if (rnd(2)) {
                hdrs[0] = (hdr_t) { "X-H", rnd(2) ? "1" : "7" };
                nhdrs = 1;
            }
            got = mg_router_match(router, &q, &a) == MG_OK;
            for (rank = 0; rank < router->nentries; rank++) {
                if (rt_entry_match(router, &router->entries[rank], &q, &b)) {
                    want = 1;
                    break;
                }
            }
            checks++;
            hits += got;
            if (got && want && a.ncaptures == b.ncaptures) {
                size_t c;
                for (c = 0; c < a.ncaptures; c++) {
                    if (!mg_str_eq(a.captures[c], b.captures[c])
                        || !mg_str_eq(a.capture_names[c], b.capture_names[c]))
                    {
                        got = -1;
                    }
                }
            } else if (got && want) {
                got = -1;
            }
            if (got != want || (got && (a.route != b.route
                                        || a.prefix_len != b.prefix_len
                                        || !mg_str_eq(a.matched_path,
                                                      b.matched_path))))
            {
                if (bad++ < 5) {
                    ok(0, "index vs scan: round %d %.*s %.*s%.*s", round,
                       (int) q.method.len, q.method.data, (int) q.host.len,
                       q.host.data, (int) q.path.len, q.path.data);
                }
            }
        }
        cfg_free();
    }
    ok(bad == 0, "index agrees with an ordered scan: %d/%d requests",
       checks - bad, checks);
    ok(hits > checks / 4 && hits < checks, "random requests both match "
       "(%d) and miss (%d)", hits, checks - hits);
}

/* ---- 10,000 routes ---------------------------------------------------------- */

static void
test_many_routes(void)
{
    char        name[32], path[32], host[32];
    int         i, bad = 0;
    mg_route_t *r;

    /* 10,000 prefix paths on no host, plus 10,000 hosts */
    cfg_new();
    for (i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "p%d", i);
        r = route_new(name);
        snprintf(path, sizeof(path), "/route/%d", i);
        strs(&r->paths, path, NULL);
        snprintf(name, sizeof(name), "h%d", i);
        r = route_new(name);
        snprintf(host, sizeof(host), "host-%d.example.com", i);
        strs(&r->hosts, host, NULL);
        strs(&r->paths, "/", NULL);
    }
    r = route_new("re");
    strs(&r->paths, "~/re/(\\d+)$", NULL);
    build();
    ok(router != NULL, "20,001 routes build");

    for (i = 0; i < 10000; i++) {
        char want[32];
        snprintf(path, sizeof(path), "/route/%d/x", i);
        snprintf(want, sizeof(want), "p%d", i);
        if (strcmp(who3("GET", "nohost", path), want) != 0) {
            bad++;
        }
        snprintf(host, sizeof(host), "HOST-%d.example.com", i);
        snprintf(want, sizeof(want), "h%d", i);
        if (strcmp(who3("GET", host, path), want) != 0) {
            bad++;
        }
    }
    ok(bad == 0, "each of 20,000 requests finds its route (%d wrong)", bad);
    /* "/route/1" is a prefix of "/route/10", "/route/123", ... */
    is_str(who3("GET", "x", "/route/12345"), "p1234", "longest prefix wins");
    is_str(who3("GET", "x", "/route/"), "-", "no route for /route/");
    is_str(who3("GET", "x", "/re/77"), "re", "regex among 20,000 routes");
    is_str(cstr(mt.captures[1]), "77", "its capture");
    is_str(who3("GET", "host-1.example.com", "/re/77"), "h1",
           "host route has more fields");
    cfg_free();

    /* 10,000 wildcard hosts */
    cfg_new();
    for (i = 0; i < 10000; i++) {
        snprintf(name, sizeof(name), "w%d", i);
        r = route_new(name);
        snprintf(host, sizeof(host), "*.t%d.net", i);
        strs(&r->hosts, host, NULL);
    }
    build();
    bad = 0;
    for (i = 0; i < 10000; i += 7) {
        char want[32];
        snprintf(host, sizeof(host), "a.b.t%d.net", i);
        snprintf(want, sizeof(want), "w%d", i);
        if (strcmp(who3("GET", host, "/"), want) != 0) {
            bad++;
        }
    }
    ok(bad == 0, "10,000 wildcard hosts (%d wrong)", bad);
    cfg_free();
}

int
main(void)
{
    test_empty();
    test_hosts();
    test_methods_paths();
    test_regex();
    test_headers();
    test_snis_protocols_services();
    test_priorities();
    test_path_handling();
    test_regex_strip_and_escape();
    test_normalize();
    test_random_against_scan();
    test_many_routes();
    mg_router_free(router);
    return done_testing();
}
