/*
 * test_declarative.c -- the declarative loader: every entity in nested and
 * flat form, defaults, references, ids, JSON input, plugin config
 * encoding, and each validation message.
 */
#include "tap.h"
#include "../../core/conf/mg_declarative.c"
#include "../../core/conf/mg_decl_value.c"
#include "../../core/conf/mg_decl_entity.c"

#define FIXTURES "spec/fixtures/declarative/"

static mg_config_errors_t errs;

static void
dump_errs(void)
{
    size_t i;

    for (i = 0; i < errs.n; i++) {
        printf("#   error: %s\n", errs.lines[i]);
    }
}

static mg_config_t *
load(const char *yaml)
{
    mg_config_errors_free(&errs);
    return mg_declarative_load_string(yaml, strlen(yaml), &errs);
}

/* Loads must fail with a line containing want. */
static void
fails_with(const char *yaml, const char *want, const char *what)
{
    mg_config_t *cf = load(yaml);
    size_t       i;
    int          found = 0;

    for (i = 0; i < errs.n; i++) {
        if (strstr(errs.lines[i], want)) found = 1;
    }
    if (!ok(cf == NULL && found, "%s", what)) {
        printf("#   wanted: %s\n", want);
        dump_errs();
    }
    mg_config_free(cf);
}

static int
streq(mg_str_t s, const char *lit)
{
    return mg_str_eq_lit(s, lit);
}

#define V3 "_format_version: \"3.0\"\n"

static mg_service_t *
find_service(mg_config_t *cf, const char *name)
{
    size_t i;

    for (i = 0; i < cf->services_n; i++) {
        if (streq(cf->services[i]->name, name)) return cf->services[i];
    }
    return NULL;
}

static mg_route_t *
find_route(mg_config_t *cf, const char *name)
{
    size_t i;

    for (i = 0; i < cf->routes_n; i++) {
        if (streq(cf->routes[i]->name, name)) return cf->routes[i];
    }
    return NULL;
}

static void
test_uuid(void)
{
    char out[37];

    /* RFC 4122 / Python uuid5(NAMESPACE_DNS, "python.org"). */
    mg_decl_uuid_v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org", 10,
                    out);
    is_str(out, "886313e1-3b8a-5372-9b90-0c9aee199e5d", "uuid v5 vector");
    ok(mg_decl_is_uuid("886313e1-3b8a-5372-9b90-0c9aee199e5d", 36), "is uuid");
    ok(!mg_decl_is_uuid("886313e1-3b8a-5372-9b90-0c9aee199e5", 35),
       "short is not");
    ok(!mg_decl_is_uuid("886313e1x3b8a-5372-9b90-0c9aee199e5d", 36),
       "bad dash is not");
}

static void
test_minimal(void)
{
    mg_config_t *cf = load(V3);
    mg_config_t *cf2;

    if (!ok(cf != NULL, "empty 3.0 config loads")) dump_errs();
    ok(cf && streq(cf->format_version, "3.0"), "format_version kept");
    ok(cf && cf->services_n == 0 && cf->routes_n == 0, "no entities");
    cf2 = load("_format_version: '2.1'\n_workspace: default\n_comment: hi\n"
               "_transform: false\n");
    ok(cf2 != NULL, "2.1 with _workspace/_transform/_comment accepted");
    ok(cf && cf2 && cf2->version > cf->version, "versions increase");
    mg_config_free(cf);
    mg_config_free(cf2);
    cf = load("_format_version: 1.1\n");
    ok(cf != NULL, "unquoted 1.1 forgiven");
    mg_config_free(cf);
    fails_with("services: []\n", "_format_version: required field missing",
               "format version required");
    fails_with("_format_version: \"4.0\"\n",
               "_format_version: expected one of: 1.1, 2.1, 3.0",
               "unknown format version");
    fails_with("", "expected an object at the top level", "empty document");
    fails_with("- a\n- b\n", "expected an object at the top level, got an "
               "array", "array at the top");
    fails_with(V3 "servicez: []\n", "servicez: unknown field",
               "unknown top-level key");
    fails_with(V3 "services: {}\n",
               "services: expected an array, got a record",
               "services must be an array");
    fails_with(V3 "services:\n- just-a-string\n",
               "services[0]: expected a record, got a string",
               "entity must be a record");
    fails_with(V3 "services:\n  - name: a\n   host: x\n", "line 4, column 4: "
               "did not find expected '-' indicator",
               "YAML syntax error has line and column");
}

static void
test_fixture_yaml(void)
{
    mg_config_errors_t  e2 = { 0 };
    mg_config_t        *cf = mg_declarative_load_file(FIXTURES "kong.yml",
                                                      &errs);
    mg_config_t        *again;
    mg_service_t       *openai, *pool;
    mg_route_t         *chat, *byname, *byrec;
    mg_upstream_t      *up;
    mg_plugin_t        *p;
    size_t              i;

    if (!ok(cf != NULL, "kong.yml loads")) {
        dump_errs();
        return;
    }
    is_int(cf->services_n, 2, "2 services");
    is_int(cf->routes_n, 3, "3 routes (1 nested, 2 flat)");
    is_int(cf->upstreams_n, 2, "2 upstreams");
    is_int(cf->targets_n, 3, "3 targets (2 nested, 1 flat)");
    is_int(cf->consumers_n, 2, "2 consumers");
    is_int(cf->plugins_n, 5, "5 plugins");
    is_int(cf->certificates_n, 1, "1 certificate");
    is_int(cf->snis_n, 3, "3 snis (2 nested, 1 flat)");
    is_int(cf->ca_certificates_n, 1, "1 ca certificate");

    openai = find_service(cf, "openai");
    pool = find_service(cf, "llm-pool");
    ok(openai && pool, "services by name");
    if (!openai || !pool) return;
    ok(streq(openai->protocol, "https") &&
           streq(openai->host, "api.openai.com") && openai->port == 8443 &&
           streq(openai->path, "/v1"),
       "url shorthand split");
    is_int(openai->retries, 3, "retries");
    is_int(openai->connect_timeout, 5000, "connect_timeout");
    is_int(openai->read_timeout, 60000, "read_timeout default");
    is_int(openai->write_timeout, 60000, "write_timeout default");
    ok(openai->enabled == 1 && openai->tls_verify == -1
       && openai->tls_verify_depth == -1, "enabled/tls defaults");
    ok(openai->tags.n == 2 && streq(openai->tags.elts[1], "prod"), "tags");
    ok(openai->upstream == NULL, "no upstream named api.openai.com");
    ok(openai->created_at > 0 && openai->updated_at == openai->created_at,
       "timestamps default to load time");
    ok(pool->upstream != NULL && streq(pool->upstream->name, "llm-upstream"),
       "service host names an upstream");
    ok(pool->enabled == 0 && pool->tls_verify == 1
       && pool->tls_verify_depth == 2, "service booleans");
    ok(pool->ca_certificates.n == 1, "ca_certificates ids");

    chat = find_route(cf, "chat");
    byname = find_route(cf, "flat-by-name");
    byrec = find_route(cf, "flat-by-record");
    ok(chat && byname && byrec, "routes by name");
    if (!chat || !byname || !byrec) return;
    ok(chat->service == openai, "nested route takes parent service");
    ok(byname->service == pool, "flat route service by name");
    ok(byrec->service == openai, "flat route service by {name}");
    ok(chat->paths.n == 2 && streq(chat->paths.elts[1],
                                   "~/v(?<version>\\d+)/chat$"),
       "regex path kept");
    ok(chat->strip_path == 0 && chat->preserve_host == 0, "strip_path false");
    ok(chat->protocols.n == 2 && streq(chat->protocols.elts[0], "http")
       && streq(chat->protocols.elts[1], "https"), "protocols default");
    ok(chat->https_redirect_status_code == 426 && chat->regex_priority == 0
       && chat->request_buffering && chat->response_buffering
       && streq(chat->path_handling, "v0"), "route defaults");
    ok(byname->hosts.n == 2 && streq(byname->hosts.elts[0], "*.example.com"),
       "wildcard host");
    ok(byname->nheaders == 1 && streq(byname->headers[0].name, "x-version")
       && byname->headers[0].values.n == 2, "headers map");
    ok(byname->https_redirect_status_code == 301
       && byname->regex_priority == 10 && byname->preserve_host
       && streq(byname->path_handling, "v1"), "route fields");
    ok(byname->protocols.n == 1, "protocols set");
    for (i = 0; i < cf->routes_n; i++) {
        if (cf->routes[i]->index != i) break;
    }
    is_int(i, cf->routes_n, "route index is its position");

    up = pool->upstream;
    ok(streq(up->algorithm, "least-connections") && up->slots == 100
       && streq(up->hash_on, "none") && streq(up->hash_fallback, "none")
       && streq(up->hash_on_cookie_path, "/"), "upstream fields/defaults");
    ok(up->ntargets == 2, "nested targets linked");
    if (up->ntargets == 2) {
        ok(streq(up->targets[0]->host, "10.0.0.1")
           && up->targets[0]->port == 8080 && up->targets[0]->weight == 50,
           "target host:port split");
        ok(streq(up->targets[1]->host, "::1") && up->targets[1]->port == 9000
           && up->targets[1]->weight == 100
           && streq(up->targets[1]->target, "[::1]:9000"),
           "IPv6 target split, weight default");
        ok(up->targets[0]->upstream == up, "target points back");
    }
    ok(up->healthchecks_json.data
       && strstr(up->healthchecks_json.data,
                 "\"healthy\":{\"interval\":5,\"http_statuses\":[200,302]")
       && strstr(up->healthchecks_json.data, "\"threshold\":0"),
       "healthchecks merged over Kong's defaults");
    for (i = 0; i < cf->upstreams_n; i++) {
        if (streq(cf->upstreams[i]->name, "other-upstream"))
            up = cf->upstreams[i];
    }
    ok(up->ntargets == 1 && streq(up->targets[0]->host, "backend.internal")
       && up->targets[0]->port == 8000, "flat target, default port 8000");
    ok(streq(up->hash_on_header, "X-User") && streq(up->hash_fallback, "ip"),
       "hash fields");
    ok(strstr(up->healthchecks_json.data, "\"concurrency\":10") != NULL,
       "healthchecks defaults when absent");

    ok(streq(cf->consumers[0]->username, "alice")
       && streq(cf->consumers[0]->custom_id, "1001"), "consumer");
    ok(cf->consumers[1]->username.len == 0
       && streq(cf->consumers[1]->custom_id, "bob-id"),
       "consumer with custom_id only");

    /* Plugins, in walk order: nested in services/routes, consumers, flat. */
    for (i = 0; i < cf->plugins_n; i++) {
        p = cf->plugins[i];
        if (streq(p->name, "ai-proxy")) {
            ok(p->route == chat && !p->service && !p->consumer,
               "plugin nested in a nested route is route-scoped");
            is_str(
                p->config_json.data,
                "{\"route_type\":\"llm/v1/chat\",\"model\":{\"provider\":"
                "\"openai\",\"name\":\"gpt-4o\",\"options\":{\"max_tokens\":"
                "512,\"temperature\":0.7}},\"logging\":{\"log_statistics\":"
                "true,\"log_payloads\":false}}",
                "config as compact JSON");
        } else if (streq(p->name, "rate-limiting") && p->service) {
            ok(p->service == openai && !p->route, "service-scoped plugin");
        } else if (streq(p->name, "rate-limiting")) {
            ok(p->consumer == cf->consumers[0], "consumer-scoped plugin");
        } else if (streq(p->name, "prometheus")) {
            ok(!p->route && !p->service && !p->consumer && p->enabled,
               "global plugin");
            is_str(p->config_json.data, "{}", "absent config is {}");
            ok(p->protocols.n == 4 && streq(p->protocols.elts[0], "grpc"),
               "plugin protocols default");
        } else if (streq(p->name, "cors")) {
            ok(p->service == openai && p->route == chat
               && p->consumer == cf->consumers[0] && !p->enabled,
               "flat plugin references resolved");
            ok(p->protocols.n == 2, "plugin protocols");
        }
    }

    ok(streq(cf->certificates[0]->id, "2b2f4b0e-0e6f-4d7a-8b39-4b8f0f6c9a01"),
       "given id kept");
    for (i = 0; i < cf->snis_n; i++) {
        if (cf->snis[i]->certificate != cf->certificates[0]) break;
    }
    is_int(i, 3, "all snis point at the certificate");
    ok(streq(cf->snis[0]->name, "example.com")
       && streq(cf->snis[1]->name, "*.example.net")
       && cf->snis[1]->tags.n == 1, "nested snis: string and record");

    /* Generated ids: valid, and the same on every load. */
    ok(mg_decl_is_uuid(openai->id.data, openai->id.len), "generated uuid");
    ok(openai->id.data[14] == '5', "version 5");
    again = mg_declarative_load_file(FIXTURES "kong.yml", &e2);
    if (again) {
        for (i = 0; i < cf->plugins_n; i++) {
            if (!mg_str_eq(cf->plugins[i]->id, again->plugins[i]->id)) break;
        }
        ok(i == cf->plugins_n
           && mg_str_eq(cf->routes[0]->id, again->routes[0]->id)
           && mg_str_eq(cf->targets[2]->id, again->targets[2]->id)
           && mg_str_eq(cf->consumers[1]->id, again->consumers[1]->id),
           "ids are deterministic");
    }
    mg_config_free(again);
    mg_config_errors_free(&e2);
    mg_config_free(cf);
}

static void
test_fixture_json(void)
{
    mg_config_t *cf = mg_declarative_load_file(FIXTURES "kong.json", &errs);
    mg_service_t *s;

    if (!ok(cf != NULL, "kong.json (tabs, no spaces, surrogates) loads")) {
        dump_errs();
        return;
    }
    s = cf->services[0];
    ok(streq(s->host, "upstream.local") && s->port == 8080, "json service");
    ok(s->upstream && s->upstream->ntargets == 1
       && s->upstream->targets[0]->weight == 0, "json upstream, weight 0");
    ok(cf->routes_n == 1 && cf->routes[0]->service == s
       && cf->routes[0]->methods.n == 2, "json nested route");
    is_str(cf->plugins[0]->config_json.data,
           "{\"add\":{\"headers\":[\"x-emoji:\xf0\x9f\x98\x80\","
           "\"x-quote:\\\"q\\\"\"]},\"n\":1.5e3,\"flag\":false,"
           "\"nothing\":null,\"str\":\"123\"}",
           "json config re-encoded: types, escapes, emoji");
    ok(cf->consumers_n == 1 && cf->consumers[0]->tags.n == 1, "json consumer");
    mg_config_free(cf);

    mg_config_errors_free(&errs);
    cf = mg_declarative_load_file(FIXTURES "missing.yml", &errs);
    ok(cf == NULL && errs.n == 1 && strstr(errs.lines[0], "cannot open: "),
       "missing file reported");
    fails_with("{\"_format_version\": \"3.0\", \"services\": [{\"host\": 1}]}",
               "services[0]: host: expected a string, got a number",
               "json type error");
}

static void
test_scalars(void)
{
    mg_config_t *cf = load(V3
        "plugins:\n"
        "- name: p\n"
        "  config:\n"
        "    a: 123\n"
        "    b: '123'\n"
        "    c: \"true\"\n"
        "    d: true\n"
        "    e: ~\n"
        "    f: -1.5\n"
        "    g: 007\n"
        "    h: +5\n"
        "    i: 1.2.3\n"
        "    j: \"line\\nbreak\\ttab \\u0001 \\\\ \\\"\"\n"
        "    k: [1, two, {x: null}]\n"
        "    l: |\n"
        "      literal\n"
        "    m: .inf\n"
        "    n: 0x1F\n"
        "    o: {}\n"
        "    p: []\n"
        "    '9': key is a string\n"
        "    anchor: &A {deep: 1}\n"
        "    alias: *A\n");

    if (!ok(cf != NULL, "config with every scalar kind")) {
        dump_errs();
        return;
    }
    is_str(cf->plugins[0]->config_json.data,
           "{\"a\":123,\"b\":\"123\",\"c\":\"true\",\"d\":true,\"e\":null,"
           "\"f\":-1.5,\"g\":7,\"h\":5,\"i\":\"1.2.3\","
           "\"j\":\"line\\nbreak\\ttab \\u0001 \\\\ \\\"\","
           "\"k\":[1,\"two\",{\"x\":null}],\"l\":\"literal\\n\","
           "\"m\":\".inf\",\"n\":\"0x1F\",\"o\":{},\"p\":[],"
           "\"9\":\"key is a string\",\"anchor\":{\"deep\":1},"
           "\"alias\":{\"deep\":1}}",
           "plain scalars typed, quoted ones strings, escapes");
    mg_config_free(cf);

    fails_with(V3 "plugins:\n- name: p\n  config: &a\n    self: *a\n",
               "config: cannot encode as JSON", "recursive alias refused");
    fails_with(V3 "plugins:\n- name: p\n  config: [1]\n",
               "plugins[0] (name=p): config: expected a record, got an array",
               "config must be a record");
    fails_with(V3 "plugins:\n- name: p\n  config:\n    [a]: 1\n",
               "config: cannot encode as JSON", "non-string key in config");
}

static void
test_url(void)
{
    mg_config_t *cf;

    cf = load(V3 "services:\n- name: s\n  url: http://example.com\n");
    ok(cf && streq(cf->services[0]->protocol, "http")
       && cf->services[0]->port == 80 && cf->services[0]->path.len == 0,
       "url without port or path");
    mg_config_free(cf);
    cf = load(V3 "services:\n- name: s\n  url: https://[::1]/x/y\n");
    ok(cf && streq(cf->services[0]->host, "::1")
       && cf->services[0]->port == 443
       && streq(cf->services[0]->path, "/x/y"), "https IPv6 url");
    mg_config_free(cf);
    cf = load(V3 "services:\n- name: s\n  url: http://a.com:81/p\n"
              "  host: a.com\n  port: 81\n");
    ok(cf != NULL, "url with agreeing explicit fields");
    mg_config_free(cf);
    cf = load(V3 "services:\n- name: s\n  host: h\n  protocol: https\n");
    ok(cf && cf->services[0]->port == 443, "https default port 443");
    mg_config_free(cf);
    fails_with(V3 "services:\n- name: s\n  url: http://a.com\n  host: b.com\n",
               "services[0] (name=s): url: conflicts with 'host'",
               "url conflicts with host");
    fails_with(V3 "services:\n- name: s\n  url: http://a.com:1\n  port: 2\n",
               "url: conflicts with 'port'", "url conflicts with port");
    fails_with(V3 "services:\n- name: s\n  url: http://a.com/x\n  path: /y\n",
               "url: conflicts with 'path'", "url conflicts with path");
    fails_with(V3 "services:\n- name: s\n  url: https://a.com\n"
               "  protocol: http\n", "url: conflicts with 'protocol'",
               "url conflicts with protocol");
    fails_with(V3 "services:\n- name: s\n  url: ftp://a.com\n",
               "url: invalid url 'ftp://a.com': unsupported scheme",
               "bad scheme");
    fails_with(V3 "services:\n- name: s\n  url: a.com\n", "missing scheme",
               "url without scheme");
    fails_with(V3 "services:\n- name: s\n  url: http://a.com:99999\n",
               "invalid port", "url port range");
    fails_with(V3 "services:\n- name: s\n  url: http://a.com/?q=1\n",
               "query strings", "url query refused");
}

static void
test_service_errors(void)
{
    fails_with(V3 "services:\n- name: s\n", "services[0] (name=s): host: "
               "required field missing", "host required");
    fails_with(V3 "services:\n- name: s\n  host: h\n  port: 70000\n",
               "port: value should be between 0 and 65535", "port range");
    fails_with(V3 "services:\n- name: s\n  host: h\n  port: '80'\n",
               "port: expected an integer, got a string", "port type");
    fails_with(V3 "services:\n- name: s\n  host: h\n  retries: 32768\n",
               "retries: value should be between 0 and 32767", "retries");
    fails_with(V3 "services:\n- name: s\n  host: h\n  read_timeout: 0\n",
               "read_timeout: value should be between 1 and 2147483646",
               "timeout range");
    fails_with(V3 "services:\n- name: s\n  host: h\n  protocol: smtp\n",
               "protocol: expected one of: http, https", "protocol enum");
    fails_with(V3 "services:\n- name: s\n  host: h\n  path: x\n",
               "path: should start with: /", "service path");
    fails_with(V3 "services:\n- name: s\n  host: h\n  protocol: tcp\n"
               "  path: /x\n", "path: value must be null", "path with tcp");
    fails_with(V3 "services:\n- name: s\n  host: bad_host!\n",
               "host: invalid hostname", "host syntax");
    fails_with(V3 "services:\n- name: s\n  host: h:80\n",
               "host: must not have a port", "host with port");
    fails_with(V3 "services:\n- name: s\n  host: h\n  enabled: yes\n",
               "enabled: expected a boolean, got a string", "bool type");
    fails_with(V3 "services:\n- name: s\n  host: h\n  colour: red\n",
               "services[0] (name=s): colour: unknown field", "unknown field");
    fails_with(V3 "services:\n- name: s s\n  host: h\n",
               "name: invalid value: it must only contain alphanumeric",
               "name syntax");
    fails_with(V3 "services:\n- name: s\n  host: h\n- name: s\n  host: h2\n",
               "services[1] (name=s): name: 's' is already used by "
               "services[0] (name=s)", "unique names");
    fails_with(V3 "services:\n- id: not-a-uuid\n  host: h\n",
               "services[0] (id=not-a-uuid): id: expected a valid UUID",
               "uuid format");
    fails_with(V3 "services:\n"
               "- id: 11111111-1111-1111-1111-111111111111\n  host: a\n"
               "- id: 11111111-1111-1111-1111-111111111111\n  host: b\n",
               "id: duplicate id '11111111-1111-1111-1111-111111111111'",
               "duplicate ids");
    fails_with(V3 "services:\n- name: s\n  host: h\n  tags: [a/b]\n",
               "tags[0]: invalid tag", "tag syntax");
    fails_with(V3 "services:\n- name: s\n  host: h\n  name: t\n",
               "name: duplicate key", "duplicate key");
    fails_with(V3 "services:\n- name: s\n  host: h\n  ca_certificates: [x]\n",
               "ca_certificates[0]: expected a valid UUID", "ca id format");
    fails_with(V3 "services:\n- name: s\n  host: h\n  ca_certificates:\n"
               "  - 22222222-2222-2222-2222-222222222222\n",
               "ca_certificates[0]: ca_certificate "
               "'22222222-2222-2222-2222-222222222222' not found",
               "dangling ca certificate");
    fails_with(V3 "services:\n- name: s\n  host: h\n  client_certificate:\n"
               "    id: 22222222-2222-2222-2222-222222222222\n",
               "client_certificate: certificate "
               "'22222222-2222-2222-2222-222222222222' not found",
               "dangling client certificate");
}

static void
test_route_errors(void)
{
#define SVC V3 "services:\n- name: s\n  host: h\n  routes:\n"
    fails_with(SVC "  - name: r1\n", "services[0] (name=s).routes[0] "
               "(name=r1): must set one of 'methods', 'hosts', 'headers', "
               "'paths' when 'protocols' is 'http'", "route needs a matcher");
    fails_with(SVC "  - name: r1\n    protocols: [https]\n",
               "must set one of 'methods', 'hosts', 'headers', 'paths', "
               "'snis' when 'protocols' is 'https'", "https matcher rule");
    {
        mg_config_t *cf = load(SVC "  - name: r1\n    protocols: [https]\n"
                               "    snis: [a.com]\n");
        ok(cf != NULL, "https route with snis only is fine");
        mg_config_free(cf);
    }
    fails_with(SVC "  - name: r1\n    paths: [/a, /b(]\n"
               "  - name: r2\n    paths: [/ok, \"~/b(\"]\n",
               "services[0] (name=s).routes[1] (name=r2): paths[1]: invalid "
               "regex: missing closing parenthesis",
               "regex compiled with PCRE2, error names route and path");
    fails_with(SVC "  - name: r1\n    paths: [nope]\n",
               "paths[0]: should start with: / (fixed path) or ~/ (regex "
               "path)", "path must start with / or ~");
    fails_with(SVC "  - name: r1\n    paths: [/a%zz]\n",
               "paths[0]: invalid url-encoded value", "bad percent-encoding");
    fails_with(SVC "  - name: r1\n    methods: [get]\n",
               "methods[0]: invalid value: methods must be uppercase",
               "method case");
    fails_with(SVC "  - name: r1\n    hosts: [\"a.*.com\"]\n",
               "hosts[0]: invalid wildcard: must be placed at leftmost or "
               "rightmost label", "wildcard position");
    fails_with(SVC "  - name: r1\n    hosts: [\"*.a.*\"]\n",
               "hosts[0]: invalid wildcard: must have at most one wildcard",
               "one wildcard");
    fails_with(SVC "  - name: r1\n    hosts: [\"a.com:99999\"]\n",
               "hosts[0]: invalid port number", "host port range");
    fails_with(SVC "  - name: r1\n    hosts: [1]\n",
               "hosts[0]: expected a string, got a number", "host type");
    fails_with(SVC "  - name: r1\n    paths: [/]\n    protocols: [gopher]\n",
               "protocols[0]: expected one of: http, https, grpc",
               "route protocol enum");
    fails_with(SVC "  - name: r1\n    paths: [/]\n    path_handling: v2\n",
               "path_handling: expected one of: v0, v1", "path_handling enum");
    fails_with(SVC "  - name: r1\n    paths: [/]\n"
               "    https_redirect_status_code: 303\n",
               "https_redirect_status_code: expected one of: 426, 301, 302, "
               "307, 308", "redirect code");
    fails_with(SVC "  - name: r1\n    paths: [/]\n    regex_priority: x\n",
               "regex_priority: expected an integer", "regex_priority type");
    fails_with(SVC "  - name: r1\n    paths: [/]\n    snis: [a.com]\n"
               "    protocols: [http]\n",
               "snis: can only be set when 'protocols' is 'grpcs', 'https', "
               "'tls' or 'tls_passthrough'", "snis need tls protocols");
    fails_with(SVC "  - name: r1\n    headers: {Host: [a]}\n",
               "headers: cannot contain 'host' header", "host header");
    fails_with(SVC "  - name: r1\n    headers: {x-a: [\"~*(\"]}\n",
               "headers.x-a[0]: invalid regex", "header regex");
    fails_with(SVC "  - name: r1\n    paths: [/]\n    service: s\n",
               "service: cannot be set on a nested route", "nested service");
    fails_with(SVC "  - name: r1\n    paths: [/]\n    expression: x\n",
               "expression: unknown field", "expressions router field");
#undef SVC
    fails_with(V3 "routes:\n- name: r\n  paths: [/]\n  service: ghost\n",
               "routes[0] (name=r): service: service 'ghost' not found",
               "dangling service");
    fails_with(V3 "routes:\n- name: r\n  paths: [/]\n"
               "  service: {id: 33333333-3333-3333-3333-333333333333}\n",
               "service: service '33333333-3333-3333-3333-333333333333' not "
               "found", "dangling service id");
    fails_with(V3 "routes:\n- name: r\n  paths: [/]\n  service: {ip: 1}\n",
               "service.ip: unknown field", "bad reference record");
    fails_with(V3
               "routes:\n- name: r\n  paths: [/]\n- name: r\n  paths: [/]\n",
               "routes[1] (name=r): name: 'r' is already used by routes[0]",
               "unique route names");
    {
        mg_config_t *cf = load(V3 "services:\n"
            "- id: 44444444-4444-4444-4444-444444444444\n  host: h\n"
            "routes:\n"
            "- paths: [/]\n  service: 44444444-4444-4444-4444-444444444444\n"
            "- paths: [/]\n  service: 44444444-4444-4444-4444-444444444444\n"
            "- protocols: [tcp]\n  destinations: [{port: 80}]\n");
        ok(cf && cf->routes[0]->service == cf->services[0],
           "service by plain id");
        ok(cf && !mg_str_eq(cf->routes[0]->id, cf->routes[1]->id),
           "identical unnamed routes get distinct ids");
        if (!cf) dump_errs();
        mg_config_free(cf);
    }
}

static void
test_upstream_target_errors(void)
{
    fails_with(V3 "upstreams:\n- algorithm: round-robin\n",
               "upstreams[0]: name: required field missing", "upstream name");
    fails_with(V3 "upstreams:\n- name: u\n  algorithm: random\n",
               "algorithm: expected one of: round-robin, consistent-hashing, "
               "least-connections, latency", "algorithm enum");
    fails_with(V3 "upstreams:\n- name: u\n  hash_on: moon\n",
               "hash_on: expected one of: none, consumer, ip", "hash_on enum");
    fails_with(V3 "upstreams:\n- name: u\n  hash_on: header\n",
               "hash_on_header: required when 'hash_on' is 'header'",
               "hash_on header needs hash_on_header");
    fails_with(V3 "upstreams:\n- name: u\n  hash_fallback: ip\n",
               "hash_fallback: must be 'none' when 'hash_on' is 'none'",
               "fallback needs hash_on");
    fails_with(V3 "upstreams:\n- name: u\n  slots: 5\n",
               "slots: value should be between 10 and 65536", "slots range");
    fails_with(V3 "upstreams:\n- name: not_valid!\n",
               "name: Invalid name ('not_valid!'); must be a valid hostname",
               "upstream name is a hostname");
    fails_with(V3 "upstreams:\n- name: u\n  healthchecks: 1\n",
               "healthchecks: expected a record", "healthchecks type");
    fails_with(V3 "upstreams:\n- name: u\n  targets:\n  - target: a:1\n"
               "    weight: 70000\n",
               "upstreams[0] (name=u).targets[0] (target=a:1): weight: value "
               "should be between 0 and 65535", "weight range");
    fails_with(V3 "upstreams:\n- name: u\n  targets:\n  - weight: 1\n",
               "target: required field missing", "target required");
    fails_with(V3 "upstreams:\n- name: u\n  targets:\n  - target: a:b\n",
               "target: Invalid target ('a:b')", "target syntax");
    fails_with(V3 "upstreams:\n- name: u\n  targets:\n  - target: a:1\n"
               "  - target: a:1\n",
               "targets[1] (target=a:1): target:", "duplicate target");
    fails_with(V3 "targets:\n- target: a:1\n",
               "targets[0] (target=a:1): upstream: required field missing",
               "flat target needs upstream");
    fails_with(V3 "targets:\n- target: a:1\n  upstream: nope\n",
               "upstream: upstream 'nope' not found", "dangling upstream");
    fails_with(V3 "upstreams:\n- name: u\n  targets:\n  - target: a:1\n"
               "    upstream: u\n", "upstream: cannot be set on a nested "
               "target", "nested target upstream");
}

static void
test_consumer_plugin_errors(void)
{
    mg_config_t *cf;

    fails_with(V3 "consumers:\n- tags: [x]\n",
               "consumers[0]: at least one of these fields must be non-empty: "
               "'custom_id', 'username'", "consumer needs a name");
    fails_with(V3 "consumers:\n- username: a\n- username: a\n",
               "username: 'a' is already used by consumers[0]",
               "unique usernames");
    fails_with(V3 "consumers:\n- username: a\n  keyauth_credentials: [k]\n",
               "keyauth_credentials[0]: expected a record",
               "credential shape");
    cf = load(V3 "consumers:\n- username: a\n"
              "  keyauth_credentials: [{key: k}]\n"
              "  basicauth_credentials: [{username: u, password: p}]\n"
              "  jwt_secrets: [{key: iss, secret: s}]\n"
              "  acls: [{group: g}]\n");
    ok(cf != NULL && cf->consumers_n == 1, "credentials accepted, skipped");
    mg_config_free(cf);
    fails_with(V3 "plugins:\n- config: {}\n",
               "plugins[0]: name: required field missing", "plugin name");
    fails_with(V3 "plugins:\n- name: p\n  consumer: nobody\n",
               "plugins[0] (name=p): consumer: consumer 'nobody' not found",
               "dangling consumer");
    fails_with(V3 "plugins:\n- name: p\n  route: nowhere\n",
               "route: route 'nowhere' not found", "dangling route");
    fails_with(V3 "plugins:\n- name: p\n- name: p\n",
               "plugins[1] (name=p): plugin 'p' is already configured for "
               "this scope by plugins[0] (name=p)", "one plugin per scope");
    fails_with(V3 "services:\n- name: s\n  host: h\n  plugins:\n"
               "  - name: p\n    service: s\n",
               "service: cannot be set on a nested plugin",
               "nested plugin scope");
    fails_with(V3 "plugins:\n- name: p\n  protocols: [ftp]\n",
               "protocols[0]: expected one of", "plugin protocols enum");
    cf = load(V3 "services:\n- name: s\n  host: h\n  plugins:\n  - name: p\n"
              "plugins:\n- name: p\n  service: s\n");
    ok(cf == NULL, "nested and flat plugin on the same scope collide");
    mg_config_free(cf);
    cf = load(V3 "services:\n- name: s\n  host: h\n"
              "plugins:\n- name: p\n- name: p\n  service: s\n");
    ok(cf != NULL, "same plugin on different scopes is fine");
    mg_config_free(cf);
}

static void
test_cert_errors(void)
{
    fails_with(V3 "certificates:\n- key: x\n",
               "certificates[0]: cert: required field missing", "cert needed");
    fails_with(V3 "certificates:\n- cert: x\n  key: y\n",
               "cert: invalid certificate: expected PEM", "cert PEM");
    fails_with(V3 "certificates:\n- cert: '-----BEGIN CERTIFICATE-----\n"
               "    -----END CERTIFICATE-----'\n  key: nope\n",
               "key: invalid key: expected PEM", "key PEM");
    fails_with(V3 "snis:\n- name: a.com\n",
               "snis[0] (name=a.com): certificate: required field missing",
               "flat sni needs certificate");
    fails_with(V3 "snis:\n- name: a.com\n"
               "  certificate: {id: 55555555-5555-5555-5555-555555555555}\n",
               "certificate: certificate '55555555-5555-5555-5555-"
               "555555555555' not found", "dangling certificate");
    fails_with(V3 "snis:\n- name: 10.0.0.1\n"
               "  certificate: {id: 55555555-5555-5555-5555-555555555555}\n",
               "name: must not be an IP", "sni is not an IP");
    fails_with(V3 "ca_certificates:\n- cert_digest: abc\n",
               "ca_certificates[0]: cert: required field missing",
               "ca cert needed");
}

static void
test_many_errors(void)
{
    mg_config_t *cf = load(V3
        "services:\n"
        "- name: a\n"
        "  port: x\n"
        "- name: b\n"
        "  host: h\n"
        "  routes:\n"
        "  - name: r\n"
        "    paths: [\"~(\"]\n"
        "plugins:\n"
        "- name: p\n"
        "  service: zzz\n");

    ok(cf == NULL && errs.n == 4, "all problems collected (got %zu)", errs.n);
    dump_errs();
}

int
main(void)
{
    test_uuid();
    test_minimal();
    test_fixture_yaml();
    test_fixture_json();
    test_scalars();
    test_url();
    test_service_errors();
    test_route_errors();
    test_upstream_target_errors();
    test_consumer_plugin_errors();
    test_cert_errors();
    test_many_errors();
    mg_config_errors_free(&errs);
    return done_testing();
}
