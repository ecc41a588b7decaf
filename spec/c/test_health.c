/*
 * test_health.c -- upstream health checks: Kong's defaults and validation
 * of the healthchecks record, passive thresholds, state shared across
 * fork (and exact under concurrent reports), the sync into balancers with
 * its generation short-circuit and threshold, and active probes against
 * an HTTP server run by this test on the same libev loop (status
 * failures, refused port, timeouts, recovery, tcp probes).
 *
 * The arena: slots claimed by key (same key, same slot, also from
 * processes that build their runtime after fork), state surviving a
 * rebuilt runtime (and what a changed record keeps or resets), a full
 * arena falling back to per-process words, the Admin API's read, and a
 * runtime swap handing the probes over.  Scenarios that must start from
 * HEALTHY take a fresh arena (fresh_arena).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "upstream/mg_health.c"
#include "upstream/mg_health_arena.c"
#include "upstream/mg_health_probe.c"
#include "upstream/mg_health_lua.c"
#include "tap.h"

static char logpath[] = "/tmp/test_health.XXXXXX";

/* Replace the process's arena with an empty one of `slots` (0: default);
 * no mg_health_t may be alive. */
static void
fresh_arena(size_t slots)
{
    char err[128];

    mg_health_arena_free(mg_health_arena_get());
    mg_health_arena_set(mg_health_arena_create(slots, err, sizeof(err)));
    if (mg_health_arena_get() == NULL) {
        printf("# arena: %s\n", err);
        exit(1);
    }
}

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

    fresh_arena(0);
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
    fresh_arena(0);
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
    fresh_arena(0);
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

    fresh_arena(0);
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

    fresh_arena(0);
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
    fresh_arena(0);
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

    fresh_arena(0);
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
             " \"https_verify_certificate\": false,"
             " \"healthy\": {\"interval\": 0.05}}}\n"
             "  targets:\n"
             "  - target: 127.0.0.1:%d\n",
             port, dead_port, hang_port, port, hang_port);
    fresh_arena(0);
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
    /* https against a port that never answers: the handshake waits
     * (counted as a timeout, no threshold); spec/04-e2e/health_spec.lua
     * probes real TLS servers */
    ok(h->_checkers[2].healthy_on && h->_checkers[2].tls != NULL,
       "https: probed, with a TLS client");
    is_int(log_count("are not available"), 0, "https: no skip warning");

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

    /* a worker swapping runtimes: the new instance takes the probes over
     * and both read the same words */
    {
        mg_runtime_t *rt2 = build(yaml);
        mg_health_t  *h2 = rt2 ? mg_health_create(rt2, err, sizeof(err))
                               : NULL;

        ok(h2 != NULL, "swap: second runtime created");
        if (h2 != NULL) {
            ok(mg_health_is_healthy(h2, 0, 0) && !mg_health_is_healthy(h2, 0, 1)
               && !mg_health_is_healthy(h2, 0, 2),
               "swap: the new runtime starts from the probes' verdicts");
            mg_health_start_active(h2, loop, rt2);
            ok(h->_checkers == NULL && h2->_checkers != NULL,
               "swap: old probes stopped, new ones started");
            run_h = h2;
            srv_status = 500;
            ok(run_until(0, 0, 0, 3.0), "swap: the new probes mark a target");
            ok(!mg_health_is_healthy(h, 0, 0),
               "swap: the old instance sees it");
            srv_status = 200;
            ok(run_until(0, 0, 1, 3.0), "swap: and bring it back");
            mg_health_free(h2);          /* stops its probes */
            mg_runtime_free(rt2);
            run_h = h;
            ok(mg_health_is_healthy(h, 0, 0) && !mg_health_is_healthy(h, 0, 1),
               "swap: freeing the new instance keeps the state");
            mg_health_start_active(h, loop, rt);
            ok(h->_checkers != NULL, "probes back on the first instance");
        }
    }

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

/* --- the arena ------------------------------------------------------ */

static void
test_arena(void)
{
    mg_health_arena_t *a;
    mg_health_slot_t  *s1, *s2;
    char               err[128];
    size_t             i, got = 0;

    a = mg_health_arena_create(100, err, sizeof(err));
    ok(a != NULL, "arena created");
    is_int(mg_health_arena_slots(a), 128, "size rounded up to a power of 2");
    is_int(mg_health_arena_used(a), 0, "empty");
    ok(mg_health_arena_find(a, 42) == NULL, "find: absent");
    s1 = mg_health_arena_claim(a, 42);
    s2 = mg_health_arena_claim(a, 42);
    ok(s1 != NULL && s1 == s2, "claim twice: the same slot");
    ok(mg_health_arena_find(a, 42) == s1, "find: that slot");
    ok(atomic_load(&s1->word) == 0, "a claimed slot starts HEALTHY");
    /* same home slot (42 + 128): probes on to the next one */
    s2 = mg_health_arena_claim(a, 42 + 128);
    ok(s2 != NULL && s2 != s1 && s2 - a->slots == (s1 - a->slots + 1) % 128,
       "colliding key: the next slot");
    is_int(mg_health_arena_used(a), 2, "two slots used");
    for (i = 1; i <= 200; i++) {
        got += mg_health_arena_claim(a, i * 7919) != NULL;
    }
    is_int(mg_health_arena_used(a), 128, "filled up");
    is_int(got, 126, "claims beyond the size fail (NULL), nothing else");
    ok(mg_health_arena_claim(a, 42) == s1, "a full arena still finds its keys");
    mg_health_arena_free(a);

    ok(mg_health_arena_create((size_t) 1 << 30, err, sizeof(err)) == NULL
       && strstr(err, "at most") != NULL, "too many slots: refused (%s)", err);
    ok(mg_health_hash_end(mg_health_hash_begin()) != 0, "keys are never 0");
    ok(mg_health_hash_add(mg_health_hash_add(mg_health_hash_begin(), "ab", 2),
                          "c", 1)
       != mg_health_hash_add(mg_health_hash_add(mg_health_hash_begin(), "a", 1),
                             "bc", 2),
       "fields are length-prefixed");
}

/* The balancer index of target s in upstream 0 (-1 when absent). */
static int
idx_of(mg_runtime_t *rt, const char *s)
{
    const mg_balancer_t *b = rt->upstreams[0].balancer;
    size_t               i;

    for (i = 0; i < mg_balancer_size(b); i++) {
        const mg_target_t *t = mg_balancer_target(b, (int) i);

        if (mg_str_eq_lit(t->target, s)) {
            return (int) i;
        }
    }
    return -1;
}

/* A runtime of upstream u1 with the given targets YAML and record. */
static mg_health_t *
create_yaml(mg_runtime_t **rtp, const char *targets, const char *record)
{
    char          yaml[2048], err[256];
    mg_health_t  *h;

    snprintf(yaml, sizeof(yaml), V3 "upstreams:\n- name: u1\n"
             "  healthchecks: %s\n  targets:\n%s", record, targets);
    *rtp = build(yaml);
    if (*rtp == NULL) {
        return NULL;
    }
    h = mg_health_create(*rtp, err, sizeof(err));
    if (h == NULL) {
        printf("#   health error: %s\n", err);
    }
    return h;
}

#define T12 "  - target: 127.0.0.1:9001\n  - target: 127.0.0.1:9002\n"
#define T312 "  - target: 127.0.0.1:9003\n" T12
#define PASSIVE(tcp, to) "{\"passive\": {\"healthy\": {\"successes\": 1}," \
    " \"unhealthy\": {\"tcp_failures\": " #tcp ", \"timeouts\": " #to "}}}"

static void
test_survives(void)
{
    mg_runtime_t *rt, *rt2;
    mg_health_t  *h, *h2;
    int           i2, i1, i3, healthy = -1;
    uint64_t      used;

    fresh_arena(0);
    h = create_yaml(&rt, T12, PASSIVE(1, 3));
    ok(h != NULL, "first runtime");
    mg_health_report(h, 0, 1, MG_HEALTH_TCP_FAILURE, 0);
    mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
    ok(!mg_health_is_healthy(h, 0, 1), "9002 unhealthy");
    used = mg_health_arena_used(mg_health_arena_get());
    is_int(used, 2, "one slot per target");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* the same config again (a reload): same words */
    h = create_yaml(&rt, T12, PASSIVE(1, 3));
    ok(!mg_health_is_healthy(h, 0, 1), "rebuilt: 9002 still unhealthy");
    is_str(mg_health_state_name(h, 0, 1), "UNHEALTHY", "rebuilt: state name");
    is_int(mg_health_arena_used(mg_health_arena_get()), used,
           "rebuilt: no new slot");
    mg_health_sync(h, rt);
    is_int(pick(rt->upstreams[0].balancer), 0,
           "rebuilt: the first sync marks it down in the balancer");

    /* both alive (old runtime draining while the new one serves) */
    h2 = create_yaml(&rt2, T12, PASSIVE(1, 3));
    mg_health_set(h2, 0, 1, 1);
    ok(mg_health_is_healthy(h, 0, 1), "two live runtimes share the word");
    mg_health_set(h2, 0, 1, 0);
    mg_health_free(h2);
    mg_runtime_free(rt2);
    mg_health_free(h);
    mg_runtime_free(rt);

    /* a target added in front: indexes move, keys do not */
    h = create_yaml(&rt, T312, PASSIVE(1, 3));
    i3 = idx_of(rt, "127.0.0.1:9003");
    i1 = idx_of(rt, "127.0.0.1:9001");
    i2 = idx_of(rt, "127.0.0.1:9002");
    ok(i2 >= 0 && i2 != 1, "9002 moved to index %d", i2);
    ok(!mg_health_is_healthy(h, 0, (size_t) i2)
       && mg_health_is_healthy(h, 0, (size_t) i1)
       && mg_health_is_healthy(h, 0, (size_t) i3),
       "target added: 9002 still unhealthy, the others healthy");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* thresholds changed: same key, counters re-evaluated */
    h = create_yaml(&rt, T12, PASSIVE(5, 1));
    ok(!mg_health_is_healthy(h, 0, 1),
       "thresholds changed: 9002 keeps its state");
    ok(mg_health_is_healthy(h, 0, 0), "9001 (1 timeout of 3 counted) healthy");
    mg_health_report(h, 0, 0, MG_HEALTH_TIMEOUT, 0);
    ok(!mg_health_is_healthy(h, 0, 0),
       "lowered timeouts threshold (3 -> 1): the next timeout flips it");
    is_int(log_count("target \"127.0.0.1:9001\" is UNHEALTHY now: 2 timeouts "
                     "(passive"), 1, "with the counter carried over (2)");
    mg_health_set(h, 0, 0, 1);
    mg_health_free(h);
    mg_runtime_free(rt);

    /* another check identity (probe path): new state */
    h = create_yaml(&rt, T12, "{\"active\": {\"http_path\": \"/other\"},"
                    " \"passive\": {\"unhealthy\": {\"tcp_failures\": 1}}}");
    ok(mg_health_is_healthy(h, 0, 1),
       "another http_path: 9002 starts HEALTHY (another key)");
    mg_health_free(h);
    mg_runtime_free(rt);

    /* checks off, then on again: the state is forgotten */
    used = mg_health_arena_used(mg_health_arena_get());
    h = create_yaml(&rt, T12, PASSIVE(0, 0));
    is_str(mg_health_state_name(h, 0, 1), "HEALTHCHECKS_OFF", "checks off");
    is_int(mg_health_arena_used(mg_health_arena_get()), used,
           "checks off: no slot claimed");
    is_int(log_count("target \"127.0.0.1:9002\" is HEALTHY now: health "
                     "checks turned off"), 1, "forgetting is logged");
    mg_health_free(h);
    mg_runtime_free(rt);
    h = create_yaml(&rt, T12, PASSIVE(1, 3));
    ok(mg_health_is_healthy(h, 0, 1), "checks on again: 9002 HEALTHY");

    /* the Admin API's read */
    is_int(mg_health_target_status("u1", 2, "127.0.0.1:9002", 14, &healthy),
           MG_OK, "status by upstream name");
    is_int(healthy, 1, "status: healthy");
    mg_health_set(h, 0, 1, 0);
    healthy = -1;
    is_int(mg_lua_health_target_status(rt->cf->upstreams[0]->id.data,
                                       rt->cf->upstreams[0]->id.len,
                                       "127.0.0.1:9002", 14, &healthy),
           MG_OK, "status by upstream id, through the Lua API");
    is_int(healthy, 0, "status: unhealthy");
    is_int(mg_health_target_status("u1", 2, "127.0.0.1:9009", 14, &healthy),
           MG_DECLINED, "status: unknown target declined");
    is_int(mg_health_target_status("u9", 2, "127.0.0.1:9002", 14, &healthy),
           MG_DECLINED, "status: unknown upstream declined");
    /* the newest runtime answers: here with checks off */
    h2 = create_yaml(&rt2, T12, PASSIVE(0, 0));
    is_int(mg_health_target_status("u1", 2, "127.0.0.1:9002", 14, &healthy),
           MG_DECLINED, "status: checks off in the newest runtime: declined");
    mg_health_free(h2);
    mg_runtime_free(rt2);
    mg_health_free(h);
    mg_runtime_free(rt);
    is_int(mg_health_target_status("u1", 2, "127.0.0.1:9002", 14, &healthy),
           MG_DECLINED, "status: no live runtime: declined");

    /* a target written without its port is host:8000 */
    h = create_yaml(&rt, "  - target: localhost\n", PASSIVE(1, 1));
    is_int(mg_health_target_status("u1", 2, "localhost:8000", 14, &healthy),
           MG_OK, "status: the normalised host:port");
    is_int(mg_lua_health_target_status("u1", 2, "localhost", 9, &healthy),
           MG_OK, "status: the target as written");
    mg_health_free(h);
    mg_runtime_free(rt);
}

/* Processes that build their runtime after fork share the state. */
static void
test_after_fork(void)
{
    mg_runtime_t *rt;
    mg_health_t  *h;
    pid_t         pids[4];
    int           i, j, st, clean = 1;

    fresh_arena(0);
    fflush(stdout);
    for (i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            /* build, report, free: each child on its own runtime */
            h = create_yaml(&rt, T12, PASSIVE(0, 200));
            for (j = 0; h != NULL && j < 49; j++) {
                mg_health_report(h, 0, 1, MG_HEALTH_TIMEOUT, 0);
            }
            mg_health_free(h);
            mg_runtime_free(rt);
            _exit(h == NULL);
        }
    }
    for (i = 0; i < 4; i++) {
        waitpid(pids[i], &st, 0);
        clean &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    ok(clean, "4 children built runtimes after fork and exited");
    is_int(mg_health_arena_used(mg_health_arena_get()), 2,
           "they agreed on one slot per target");
    h = create_yaml(&rt, T12, PASSIVE(0, 200));
    is_int(MG_HEALTH_CTR_GET(mg_health_word(h, 0, 1), MG_HEALTH_CTR_TIMEOUT),
           196, "the parent's new runtime sees all 196 timeouts");
    mg_health_free(h);
    mg_runtime_free(rt);
}

/* A full arena: per-process words, one error line, no crash. */
static void
test_full(void)
{
    mg_runtime_t *rt;
    mg_health_t  *h;
    uint64_t      k;
    pid_t         pid;
    int           st;

    fresh_arena(64);
    for (k = 1; k <= 64; k++) {
        mg_health_arena_claim(mg_health_arena_get(), k * 0x9e3779b97f4a7c15ULL);
    }
    h = create_yaml(&rt, T12, PASSIVE(1, 1));
    ok(h != NULL, "full arena: created anyway");
    is_int(h->_nprivate, 2, "both targets got a per-process word");
    is_int(log_count("health arena full (64 of 64 slots taken): 2 targets"),
           1, "one error line");
    mg_health_report(h, 0, 0, MG_HEALTH_TCP_FAILURE, 0);
    ok(!mg_health_is_healthy(h, 0, 0), "full arena: health still works");
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        mg_health_set(h, 0, 0, 1);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    ok(!mg_health_is_healthy(h, 0, 0),
       "a per-process word: the child's change stays in the child");
    mg_health_free(h);
    mg_runtime_free(rt);
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
    test_arena();
    test_survives();
    test_after_fork();
    test_full();
    mg_health_arena_free(mg_health_arena_get());
    unlink(logpath);
    return done_testing();
}
