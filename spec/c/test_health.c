/*
 * test_health.c -- upstream health checks: Kong's defaults and validation
 * of the healthchecks record, passive thresholds, state shared across
 * fork (and exact under concurrent reports), the sync into balancers with
 * its generation short-circuit and threshold, and active probes against
 * an HTTP server run by this test on the same libev loop (status
 * failures, refused port, timeouts, recovery, tcp probes).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "upstream/mg_health.c"
#include "upstream/mg_health_probe.c"
#include "tap.h"

static char logpath[] = "/tmp/test_health.XXXXXX";

static mg_runtime_t *
build(const char *yaml)
{
    mg_config_errors_t errs = { NULL, 0, 0 };
    mg_config_t       *cf;
    mg_runtime_t      *rt;
    char               err[256];
    size_t             i;

    cf = mg_declarative_load_string(yaml, strlen(yaml), &errs);
    if (cf == NULL) {
        for (i = 0; i < errs.n; i++) {
            printf("#   config error: %s\n", errs.lines[i]);
        }
        mg_config_errors_free(&errs);
        return NULL;
    }
    rt = mg_runtime_build(cf, err, sizeof(err));
    if (rt == NULL) {
        printf("#   runtime error: %s\n", err);
        mg_config_free(cf);
    }
    return rt;
}

#define V3 "_format_version: \"3.0\"\n"

static const char *two_targets =
    V3 "upstreams:\n"
    "- name: u1\n"
    "  targets:\n"
    "  - target: 127.0.0.1:9001\n"
    "  - target: 127.0.0.1:9002\n";

/* A runtime of two_targets with u1's record replaced by json. */
static mg_health_t *
create_json(mg_runtime_t **rtp, const char *json, char *err, size_t errlen)
{
    mg_runtime_t *rt = build(two_targets);

    *rtp = rt;
    if (rt == NULL) {
        return NULL;
    }
    rt->cf->upstreams[0]->healthchecks_json.data = json;
    rt->cf->upstreams[0]->healthchecks_json.len = strlen(json);
    err[0] = '\0';
    return mg_health_create(rt, err, errlen);
}

static size_t
log_count(const char *needle)
{
    char   buf[65536];
    int    fd = open(logpath, O_RDONLY);
    ssize_t n;
    size_t count = 0;
    char  *p;

    if (fd < 0) {
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;
    }
    buf[n] = '\0';
    for (p = buf; (p = strstr(p, needle)) != NULL; p++) {
        count++;
    }
    return count;
}

/* --- defaults and validation ----------------------------------------- */

static void
test_defaults(void)
{
    mg_runtime_t           *rt;
    mg_health_t            *h;
    const mg_health_conf_t *c;
    char                    err[256];

    h = create_json(&rt, "", err, sizeof(err));
    ok(h != NULL, "empty record: created (%s)", err);
    c = mg_health_conf(h, 0);
    is_int(c->active.type, MG_HEALTH_TYPE_HTTP, "active.type http");
    ok(c->active.timeout == 1, "active.timeout 1");
    is_int(c->active.concurrency, 10, "active.concurrency 10");
    is_str(c->active.http_path, "/", "active.http_path /");
    is_int(c->active.https_verify_certificate, 1,
           "active.https_verify_certificate true");
    ok(c->active.https_sni == NULL, "active.https_sni unset");
    is_str(c->active.headers, "", "active.headers unset");
    ok(c->active.healthy.interval == 0 && c->active.unhealthy.interval == 0,
       "active intervals 0 (disabled)");
    ok(mg_health_statuses_has(&c->active.healthy.http_statuses, 200)
       && mg_health_statuses_has(&c->active.healthy.http_statuses, 302)
       && !mg_health_statuses_has(&c->active.healthy.http_statuses, 201),
       "active.healthy.http_statuses [200, 302]");
    {
        static const int bad[] = { 429, 404, 500, 501, 502, 503, 504, 505 };
        size_t           i;
        int              all = 1;

        for (i = 0; i < mg_nelems(bad); i++) {
            all &= mg_health_statuses_has(&c->active.unhealthy.http_statuses,
                                          bad[i]) != 0;
        }
        ok(all && !mg_health_statuses_has(&c->active.unhealthy.http_statuses,
                                          400),
           "active.unhealthy.http_statuses [429,404,500..505]");
    }
    ok(c->active.healthy.successes == 0 && c->active.unhealthy.tcp_failures == 0
       && c->active.unhealthy.timeouts == 0
       && c->active.unhealthy.http_failures == 0,
       "active thresholds 0");
    ok(mg_health_statuses_has(&c->passive.healthy.http_statuses, 226)
       && mg_health_statuses_has(&c->passive.healthy.http_statuses, 308)
       && !mg_health_statuses_has(&c->passive.healthy.http_statuses, 404),
       "passive.healthy.http_statuses 2xx/3xx list");
    ok(mg_health_statuses_has(&c->passive.unhealthy.http_statuses, 429)
       && mg_health_statuses_has(&c->passive.unhealthy.http_statuses, 500)
       && mg_health_statuses_has(&c->passive.unhealthy.http_statuses, 503)
       && !mg_health_statuses_has(&c->passive.unhealthy.http_statuses, 502),
       "passive.unhealthy.http_statuses [429, 500, 503]");
    ok(c->threshold == 0, "threshold 0");
    ok(!c->on && !c->active_on, "health checks off by default");
    is_str(mg_health_state_name(h, 0, 0), "HEALTHCHECKS_OFF",
           "state HEALTHCHECKS_OFF");
    is_str(mg_health_upstream_state_name(h, 0), "HEALTHCHECKS_OFF",
           "upstream state HEALTHCHECKS_OFF");
    ok(mg_health_state_name(h, 0, 2) == NULL && mg_health_state_name(h, 1, 0)
       == NULL, "state name out of range: NULL");
    mg_health_report(h, 0, 0, MG_HEALTH_TCP_FAILURE, 0);
    ok(mg_health_is_healthy(h, 0, 0), "report with checks off: no effect");
    is_int(mg_health_set(h, 0, 0, 0), MG_DECLINED,
           "set with checks off: declined");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* the declarative loader's merged record reads the same */
    rt = build(two_targets);
    h = mg_health_create(rt, err, sizeof(err));
    ok(h && rt->cf->upstreams[0]->healthchecks_json.len > 0
       && mg_health_conf(h, 0)->active.concurrency == 10
       && mg_health_statuses_has(
           &mg_health_conf(h, 0)->passive.unhealthy.http_statuses, 503),
       "loader-merged record: defaults");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* a partial record keeps the other defaults */
    h = create_json(&rt,
                    "{\"active\":{\"healthy\":{\"interval\":5,"
                    "\"http_statuses\":[204]},\"headers\":{\"X-A\":[\"1\","
                    "\"2\"],\"X-B\":[\"b c\"]},\"https_sni\":\"api.example\"},"
                    "\"passive\":{\"unhealthy\":{\"timeouts\":3}},"
                    "\"threshold\":25.5}",
                    err, sizeof(err));
    ok(h != NULL, "partial record: created (%s)", err);
    c = mg_health_conf(h, 0);
    ok(c->active.healthy.interval == 5 && c->active.unhealthy.interval == 0,
       "partial: healthy.interval 5, unhealthy.interval default");
    ok(mg_health_statuses_has(&c->active.healthy.http_statuses, 204)
       && !mg_health_statuses_has(&c->active.healthy.http_statuses, 200),
       "partial: a given status list replaces the default");
    is_str(c->active.headers, "X-A: 1\r\nX-A: 2\r\nX-B: b c\r\n",
           "partial: headers composed");
    is_str(c->active.https_sni, "api.example", "partial: https_sni");
    is_int(c->passive.unhealthy.timeouts, 3, "partial: passive timeouts");
    ok(c->threshold == 25.5, "partial: threshold");
    ok(c->on && c->active_on, "partial: checks on");
    is_str(mg_health_state_name(h, 0, 1), "HEALTHY", "state HEALTHY");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* explicit nulls keep defaults (the Admin API sends them) */
    h = create_json(&rt, "{\"active\":{\"type\":null,\"https_sni\":null},"
                    "\"passive\":null}", err, sizeof(err));
    ok(h && mg_health_conf(h, 0)->active.type == MG_HEALTH_TYPE_HTTP,
       "nulls keep defaults (%s)", err);
    mg_health_free(h);
    mg_runtime_free(rt);
}

/* One pick, released at once (every pick is released). */
static int
pick(mg_balancer_t *b)
{
    int idx = mg_balancer_pick(b, NULL, NULL);

    if (idx >= 0) {
        mg_balancer_release(b, idx, 1.0, 0);
    }
    return idx;
}

static void
fails(const char *json, const char *want)
{
    mg_runtime_t *rt;
    mg_health_t  *h;
    char          err[256];

    h = create_json(&rt, json, err, sizeof(err));
    if (!ok(h == NULL && strncmp(err, want, strlen(want)) == 0,
            "invalid: %s", json))
    {
        printf("#   got \"%s\"\n#   want \"%s\"\n", err, want);
    }
    mg_health_free(h);
    mg_runtime_free(rt);
}

#define UP "upstream \"u1\": healthchecks."

static void
test_validation(void)
{
    mg_config_errors_t errs = { NULL, 0, 0 };
    mg_runtime_t      *rt;
    mg_health_t       *h;
    char               err[256];

    fails("{\"active\":{\"timeout\":-1}}",
          UP "active.timeout: value should be between 0 and 65535");
    fails("{\"active\":{\"timeout\":\"1\"}}",
          UP "active.timeout: expected a number");
    fails("{\"active\":{\"healthy\":{\"interval\":70000}}}",
          UP "active.healthy.interval: value should be between 0 and 65535");
    fails("{\"active\":{\"type\":\"udp\"}}",
          UP "active.type: expected one of: tcp, http, https, grpc, grpcs");
    fails("{\"active\":{\"concurrency\":0}}",
          UP "active.concurrency: value should be between 1 and 2147483648");
    fails("{\"passive\":{\"unhealthy\":{\"http_failures\":256}}}",
          UP "passive.unhealthy.http_failures: value should be between 0 "
          "and 255");
    fails("{\"active\":{\"healthy\":{\"successes\":1.5}}}",
          UP "active.healthy.successes: expected an integer");
    fails("{\"active\":{\"healthy\":{\"http_statuses\":[200,99]}}}",
          UP "active.healthy.http_statuses[2]: value should be between 100 "
          "and 999");
    fails("{\"passive\":{\"healthy\":{\"http_statuses\":200}}}",
          UP "passive.healthy.http_statuses: expected an array");
    fails("{\"passive\":{\"healthy\":{\"interval\":1}}}",
          UP "passive.healthy.interval: unknown field");
    fails("{\"active\":{\"http_path\":\"health\"}}",
          UP "active.http_path: should start with: /");
    fails("{\"active\":{\"http_path\":\"/a b\"}}",
          UP "active.http_path: invalid path: contains spaces or control "
          "characters");
    fails("{\"active\":{\"https_verify_certificate\":\"yes\"}}",
          UP "active.https_verify_certificate: expected a boolean");
    fails("{\"active\":{\"https_sni\":\"10.0.0.1\"}}",
          UP "active.https_sni: must not be an IP");
    fails("{\"active\":{\"headers\":{\"X-A\":\"b\"}}}",
          UP "active.headers.X-A: expected an array");
    fails("{\"active\":{\"headers\":{\"X A\":[\"b\"]}}}",
          UP "active.headers.X A: invalid header name");
    fails("{\"active\":{\"headers\":{\"X-A\":[\"a\\r\\nX-Evil: 1\"]}}}",
          UP "active.headers.X-A: invalid header value");
    fails("{\"active\":{\"bogus\":1}}", UP "active.bogus: unknown field");
    fails("{\"active\":\"x\"}", UP "active: expected a record");
    fails("{\"threshold\":101}",
          UP "threshold: value should be between 0 and 100");
    fails("[1]", "upstream \"u1\": healthchecks: expected a record");
    fails("{\"active\":", "upstream \"u1\": healthchecks: invalid JSON: ");

    /* a bad record in a declarative file is refused at create time */
    rt = build(V3 "upstreams:\n- name: u2\n  healthchecks:\n    active:\n"
               "      unhealthy: {tcp_failures: 300}\n");
    h = rt ? mg_health_create(rt, err, sizeof(err)) : NULL;
    is_str(h ? "" : err, "upstream \"u2\": healthchecks.active.unhealthy."
           "tcp_failures: value should be between 0 and 255",
           "declarative healthchecks validated");
    mg_health_free(h);
    mg_runtime_free(rt);
    mg_config_errors_free(&errs);
}

/* --- passive --------------------------------------------------------- */

static void
test_passive(void)
{
    mg_runtime_t *rt;
    mg_health_t  *h;
    char          err[256];
    uint64_t      g;

    h = create_json(&rt,
                    "{\"passive\":{\"healthy\":{\"successes\":2},"
                    "\"unhealthy\":{\"http_failures\":3,\"tcp_failures\":2,"
                    "\"timeouts\":2}}}", err, sizeof(err));
    ok(h != NULL, "passive: created (%s)", err);
    g = mg_health_generation(h);

    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 500);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 503);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 200);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 500);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 500);
    ok(mg_health_is_healthy(h, 0, 0),
       "2 failures, a success, 2 failures: still healthy (success clears)");
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 404);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 502);
    ok(mg_health_is_healthy(h, 0, 0),
       "404 and 502 are in neither passive list: ignored");
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 429);
    ok(!mg_health_is_healthy(h, 0, 0), "third consecutive failure: unhealthy");
    is_str(mg_health_state_name(h, 0, 0), "UNHEALTHY", "state UNHEALTHY");
    ok(mg_health_is_healthy(h, 0, 1), "other target unaffected");
    is_int(mg_health_generation(h), g + 1, "generation bumped once");
    is_int(log_count("target \"127.0.0.1:9001\" is UNHEALTHY now: 3 HTTP "
                     "failures (passive"), 1, "state change logged once");

    mg_health_report(h, 0, 0, MG_HEALTH_TCP_FAILURE, 0);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 500);
    is_int(mg_health_generation(h), g + 1,
           "failures on an unhealthy target change nothing");
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 200);
    ok(!mg_health_is_healthy(h, 0, 0), "one success: still unhealthy");
    mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 204);
    ok(!mg_health_is_healthy(h, 0, 0),
       "success, failure, success: not consecutive, still unhealthy");
    mg_health_report(h, 0, 0, MG_HEALTH_OK_STATUS, 0);
    ok(mg_health_is_healthy(h, 0, 0), "two consecutive successes: healthy");
    is_int(mg_health_generation(h), g + 2, "generation bumped again");
    is_int(log_count("is HEALTHY now: 2 successes (passive"), 1,
           "recovery logged once");

    mg_health_report(h, 0, 1, MG_HEALTH_TCP_FAILURE, 0);
    mg_health_report(h, 0, 1, MG_HEALTH_TCP_FAILURE, 0);
    ok(!mg_health_is_healthy(h, 0, 1), "2 TCP failures: unhealthy");
    is_int(mg_health_set(h, 0, 1, 1), MG_OK, "set healthy");
    ok(mg_health_is_healthy(h, 0, 1), "forced healthy");
    mg_health_report(h, 0, 1, MG_HEALTH_TIMEOUT, 0);
    ok(mg_health_is_healthy(h, 0, 1), "counters were cleared by set");
    mg_health_report(h, 0, 1, MG_HEALTH_TIMEOUT, 0);
    ok(!mg_health_is_healthy(h, 0, 1), "2 timeouts: unhealthy");
    mg_health_report(h, 0, 9, MG_HEALTH_TIMEOUT, 0);
    mg_health_report(h, 7, 0, MG_HEALTH_TIMEOUT, 0);
    mg_health_report(NULL, 0, 0, MG_HEALTH_TIMEOUT, 0);
    ok(mg_health_is_healthy(h, 0, 9) && mg_health_is_healthy(NULL, 0, 0),
       "out of range and NULL: harmless, healthy");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* Kong: with healthy.successes 0 successes are not counted, so they
     * do not clear failures either */
    h = create_json(&rt, "{\"passive\":{\"unhealthy\":{\"http_failures\":2}}}",
                    err, sizeof(err));
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 500);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 200);
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 500);
    ok(!mg_health_is_healthy(h, 0, 0),
       "successes 0: failures need not be consecutive (Kong)");
    mg_health_report(h, 0, 0, MG_HEALTH_HTTP_STATUS, 200);
    ok(!mg_health_is_healthy(h, 0, 0),
       "passive alone never brings a target back");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* counters saturate at 255 */
    h = create_json(&rt, "{\"passive\":{\"unhealthy\":{\"timeouts\":255}}}",
                    err, sizeof(err));
    {
        int i;

        for (i = 0; i < 254; i++) {
            mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
        }
        ok(mg_health_is_healthy(h, 0, 0), "254 timeouts of 255: healthy");
        mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
        ok(!mg_health_is_healthy(h, 0, 0), "255th: unhealthy");
    }
    mg_health_free(h);
    mg_runtime_free(rt);
}

/* --- across processes ------------------------------------------------ */

static void
test_fork(void)
{
    mg_runtime_t *rt;
    mg_health_t  *h;
    char          err[256];
    pid_t         pids[4];
    int           i, j, st, clean = 1;

    h = create_json(&rt, "{\"passive\":{\"unhealthy\":{\"http_failures\":3,"
                    "\"timeouts\":200}}}", err, sizeof(err));
    fflush(stdout);
    pids[0] = fork();
    if (pids[0] == 0) {
        for (i = 0; i < 3; i++) {
            mg_health_report(h, 0, 1, MG_HEALTH_HTTP_STATUS, 500);
        }
        _exit(0);
    }
    waitpid(pids[0], &st, 0);
    ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child exited");
    ok(!mg_health_is_healthy(h, 0, 1),
       "child's failures: parent sees the target unhealthy");
    ok(mg_health_is_healthy(h, 0, 0), "other target healthy in the parent");
    is_int(mg_health_generation(h), 1, "parent sees the child's generation");

    /* 4 processes x 49 timeouts at once: 196 of 200, exactly */
    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            for (j = 0; j < 49; j++) {
                mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
            }
            _exit(0);
        }
    }
    for (i = 0; i < 4; i++) {
        waitpid(pids[i], &st, 0);
        clean &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    ok(clean, "4 children exited");
    is_int(MG_HEALTH_CTR_GET(mg_health_word(h, 0, 0), MG_HEALTH_CTR_TIMEOUT),
           196, "concurrent reports: no count lost (196)");
    ok(mg_health_is_healthy(h, 0, 0), "196 of 200: healthy");
    for (i = 0; i < 4; i++) {
        mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
    }
    ok(!mg_health_is_healthy(h, 0, 0), "the 200th timeout: unhealthy");
    is_int(mg_health_generation(h), 2, "one flip, one generation");
    mg_health_free(h);
    mg_runtime_free(rt);
}

/* --- sync into balancers --------------------------------------------- */

static void
test_sync(void)
{
    mg_runtime_t  *rt, *rt2;
    mg_health_t   *h;
    mg_balancer_t *b;
    char           err[256];
    uint64_t       passes;
    int            i, only0;

    h = create_json(&rt, "{\"passive\":{\"healthy\":{\"successes\":1},"
                    "\"unhealthy\":{\"tcp_failures\":1}}}", err, sizeof(err));
    b = rt->upstreams[0].balancer;
    mg_health_sync(h, rt);
    is_int(h->_sync_passes, 1, "first sync: one pass");
    mg_health_sync(h, rt);
    is_int(h->_sync_passes, 1, "nothing changed: no pass (generation)");

    mg_health_report(h, 0, 1, MG_HEALTH_TCP_FAILURE, 0);
    passes = h->_sync_passes;
    mg_health_sync(h, rt);
    is_int(h->_sync_passes, passes + 1, "after a change: one pass");
    for (i = 0, only0 = 1; i < 10; i++) {
        only0 &= pick(b) == 0;
    }
    ok(only0, "unhealthy target is never picked");
    mg_health_sync(h, rt);
    is_int(h->_sync_passes, passes + 1, "again unchanged: no pass");

    mg_health_report(h, 0, 0, MG_HEALTH_TCP_FAILURE, 0);
    mg_health_sync(h, rt);
    is_int(pick(b), -1, "every target down: no pick");
    is_str(mg_health_upstream_state_name(h, 0), "UNHEALTHY",
           "upstream UNHEALTHY when no target is healthy");
    mg_health_report(h, 0, 0, MG_HEALTH_OK_STATUS, 0);
    mg_health_report(h, 0, 1, MG_HEALTH_OK_STATUS, 0);
    mg_health_sync(h, rt);
    {
        int seen0 = 0, seen1 = 0;

        for (i = 0; i < 10; i++) {
            int idx = pick(b);
            seen0 |= idx == 0;
            seen1 |= idx == 1;
        }
        ok(seen0 && seen1, "both back: both picked");
    }

    rt2 = build(two_targets);
    mg_health_report(h, 0, 1, MG_HEALTH_TCP_FAILURE, 0);
    passes = h->_sync_passes;
    mg_health_sync(h, rt2);
    is_int(h->_sync_passes, passes, "sync with another runtime: ignored");
    mg_runtime_free(rt2);
    mg_health_free(h);
    mg_runtime_free(rt);

    /* threshold 60%: one of two equal targets down takes the upstream out */
    h = create_json(&rt, "{\"threshold\":60,\"passive\":{\"unhealthy\":"
                    "{\"timeouts\":1}}}", err, sizeof(err));
    b = rt->upstreams[0].balancer;
    mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
    mg_health_sync(h, rt);
    is_int(pick(b), -1,
           "healthy weight 50%% < threshold 60%%: every target down");
    is_str(mg_health_upstream_state_name(h, 0), "UNHEALTHY",
           "upstream UNHEALTHY below threshold");
    is_str(mg_health_state_name(h, 0, 1), "HEALTHY",
           "the healthy target still reads HEALTHY");
    mg_health_free(h);
    mg_runtime_free(rt);

    h = create_json(&rt, "{\"threshold\":50,\"passive\":{\"unhealthy\":"
                    "{\"timeouts\":1}}}", err, sizeof(err));
    mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
    mg_health_sync(h, rt);
    is_int(pick(rt->upstreams[0].balancer), 1,
           "50%% healthy meets threshold 50%%: the healthy target is picked");
    mg_health_free(h);
    mg_runtime_free(rt);
}

/* --- active probes against a server on our loop ---------------------- */

static struct ev_loop *loop;
static int             srv_status = 500;
static int             srv_requests;
static int             srv_conns;
static char            srv_last[1024];

typedef struct {
    int   fd;
    ev_io w;
    char  buf[1024];
    size_t len;
} tconn_t;

static void
tconn_cb(struct ev_loop *l, ev_io *w, int revents)
{
    tconn_t *c = w->data;
    ssize_t  n;
    char     resp[128];

    (void) revents;
    n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n < 0 && errno == EAGAIN) {
        return;
    }
    if (n > 0) {
        c->len += (size_t) n;
        c->buf[c->len] = '\0';
        if (strstr(c->buf, "\r\n\r\n") == NULL && c->len < sizeof(c->buf) - 1)
        {
            return;
        }
        srv_requests++;
        memcpy(srv_last, c->buf, c->len + 1);
        n = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: "
                     "0\r\nConnection: close\r\n\r\n", srv_status);
        if (write(c->fd, resp, (size_t) n) < 0) {
            /* the probe gave up already */
        }
    }
    ev_io_stop(l, w);
    close(c->fd);
    free(c);
}

static void
accept_cb(struct ev_loop *l, ev_io *w, int revents)
{
    tconn_t *c;
    int      fd;

    (void) revents;
    fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        return;
    }
    srv_conns++;
    c = calloc(1, sizeof(*c));
    c->fd = fd;
    ev_io_init(&c->w, tconn_cb, fd, EV_READ);
    c->w.data = c;
    ev_io_start(l, &c->w);
}

static int
listen_port(int *port)
{
    struct sockaddr_in sin;
    socklen_t          sl = sizeof(sin);
    int                fd, one = 1;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) < 0
        || listen(fd, 64) < 0
        || getsockname(fd, (struct sockaddr *) &sin, &sl) < 0)
    {
        close(fd);
        return -1;
    }
    *port = ntohs(sin.sin_port);
    return fd;
}

static mg_health_t *run_h;

static void
tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void) l;
    (void) w;
    (void) revents;
}

static int
cond_state(size_t u, size_t i, int healthy)
{
    return mg_health_is_healthy(run_h, u, i) == healthy;
}

/* Run the loop until target i of upstream u has the given health. */
static int
run_until(size_t u, size_t i, int healthy, double secs)
{
    double end = ev_time() + secs;

    while (!cond_state(u, i, healthy) && ev_time() < end) {
        ev_run(loop, EVRUN_ONCE);
    }
    return cond_state(u, i, healthy);
}

static void
run_for(double secs)
{
    double end = ev_time() + secs;

    while (ev_time() < end) {
        ev_run(loop, EVRUN_ONCE);
    }
}

static void
test_active(void)
{
    mg_runtime_t *rt;
    mg_health_t  *h;
    char          yaml[4096], err[256], want[128];
    int           srv_fd, hang_fd, dead_fd, port, hang_port, dead_port;
    int           reqs;
    ev_io         srv_w;
    ev_timer      tick;
    double        t0;

    loop = ev_loop_new(EVFLAG_AUTO);
    srv_fd = listen_port(&port);
    hang_fd = listen_port(&hang_port);    /* listens, never accepts */
    dead_fd = listen_port(&dead_port);
    close(dead_fd);                       /* refused from now on */
    ok(srv_fd >= 0 && hang_fd >= 0 && dead_fd >= 0, "test sockets");
    ev_io_init(&srv_w, accept_cb, srv_fd, EV_READ);
    ev_io_start(loop, &srv_w);
    /* wakes EVRUN_ONCE up when nothing else is due */
    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &tick);

    snprintf(yaml, sizeof(yaml), V3
             "upstreams:\n"
             "- name: probed\n"
             "  healthchecks: {\"active\": {\"http_path\": \"/health\","
             " \"timeout\": 0.2, \"concurrency\": 2,"
             " \"headers\": {\"X-Probe\": [\"yes\"]},"
             " \"healthy\": {\"interval\": 0.05, \"successes\": 2},"
             " \"unhealthy\": {\"interval\": 0.05, \"http_failures\": 3,"
             " \"tcp_failures\": 2, \"timeouts\": 2}}}\n"
             "  targets:\n"
             "  - target: 127.0.0.1:%d\n"
             "  - target: 127.0.0.1:%d\n"
             "  - target: 127.0.0.1:%d\n"
             "- name: tcpcheck\n"
             "  healthchecks: {\"active\": {\"type\": \"tcp\","
             " \"unhealthy\": {\"interval\": 0.05},"
             " \"healthy\": {\"successes\": 1}}}\n"
             "  targets:\n"
             "  - target: 127.0.0.1:%d\n"
             "- name: tlscheck\n"
             "  healthchecks: {\"active\": {\"type\": \"https\","
             " \"healthy\": {\"interval\": 0.05}}}\n"
             "  targets:\n"
             "  - target: 127.0.0.1:%d\n",
             port, dead_port, hang_port, port, port);
    rt = build(yaml);
    h = rt ? mg_health_create(rt, err, sizeof(err)) : NULL;
    ok(h != NULL, "active: created (%s)", h ? "" : err);
    if (h == NULL) {
        return;
    }
    run_h = h;
    is_int(mg_health_set(h, 1, 0, 0), MG_OK, "tcpcheck target set unhealthy");
    mg_health_start_active(h, loop, rt);
    ok(h->_checkers[0].healthy_on && h->_checkers[0].unhealthy_on,
       "probed: both timers on");
    is_int(h->_checkers[0].nprobes, 2, "probed: concurrency 2 slots");
    ok(!h->_checkers[2].healthy_on, "https: not probed (no TLS yet)");
    is_int(log_count("active health checks of type https are not available"),
           1, "https skip logged");

    t0 = ev_time();
    ok(run_until(0, 0, 0, 3.0), "status 500: unhealthy");
    reqs = srv_requests;
    ok(reqs >= 3 && ev_time() - t0 >= 0.1,
       "after unhealthy.http_failures (3) probes (%d requests)", reqs);
    snprintf(want, sizeof(want), "target \"127.0.0.1:%d\" is UNHEALTHY now: "
             "3 HTTP failures (active", port);
    is_int(log_count(want), 1, "state change logged once");
    ok(strncmp(srv_last, "GET /health HTTP/1.0\r\n", 22) == 0,
       "probe request line");
    snprintf(want, sizeof(want), "\r\nHost: 127.0.0.1:%d\r\n", port);
    ok(strstr(srv_last, want) != NULL, "probe Host header");
    ok(strstr(srv_last, "\r\nX-Probe: yes\r\n") != NULL,
       "probe configured header");

    ok(run_until(0, 1, 0, 3.0), "refused port: unhealthy (tcp_failures)");
    ok(run_until(0, 2, 0, 3.0), "no answer: unhealthy (timeouts)");
    is_int(log_count("is UNHEALTHY now: 2 TCP failures (active"), 1,
           "tcp failures logged");
    is_int(log_count("is UNHEALTHY now: 2 timeouts (active"), 1,
           "timeouts logged");
    ok(run_until(1, 0, 1, 3.0), "tcp probe: connect succeeds, healthy");

    srv_status = 200;
    reqs = srv_requests;
    ok(run_until(0, 0, 1, 3.0), "switched to 200: healthy again");
    ok(srv_requests - reqs >= 2,
       "after healthy.successes (2) probes (%d)", srv_requests - reqs);
    is_int(log_count("is HEALTHY now: 2 successes (active"), 1,
           "recovery logged");
    ok(!mg_health_is_healthy(h, 0, 1) && !mg_health_is_healthy(h, 0, 2),
       "dead targets stay unhealthy");

    /* healthy targets keep being probed at healthy.interval */
    reqs = srv_requests;
    run_for(0.3);
    ok(srv_requests > reqs, "healthy target probed on healthy.interval");
    ok(mg_health_is_healthy(h, 0, 0), "and stays healthy");

    mg_health_sync(h, rt);
    is_int(pick(rt->upstreams[0].balancer), 0,
           "sync: only the healthy target is picked");

    mg_health_stop_active(h);
    ok(h->_checkers == NULL, "stopped");
    run_for(0.05);      /* a request sent just before the stop lands */
    reqs = srv_requests;
    run_for(0.2);
    is_int(srv_requests, reqs, "no probe after stop");

    mg_health_free(h);
    mg_runtime_free(rt);
    ev_io_stop(loop, &srv_w);
    ev_timer_stop(loop, &tick);
    close(srv_fd);
    close(hang_fd);
    run_for(0.05);
    ev_loop_destroy(loop);
}

int
main(void)
{
    int fd = mkstemp(logpath);

    if (fd >= 0) {
        close(fd);
    }
    signal(SIGPIPE, SIG_IGN);
    mg_log_open(logpath, MG_LOG_NOTICE);
    test_defaults();
    test_validation();
    test_passive();
    test_fork();
    test_sync();
    test_active();
    unlink(logpath);
    return done_testing();
}
