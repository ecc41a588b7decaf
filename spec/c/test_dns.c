/*
 * test_dns.c -- mg_dns against build/mockdns on a free loopback port:
 * IP literals, hosts file, A/AAAA/SRV/CNAME, TTL expiry with stale
 * answers and background refresh, LAST, negative caching, timeouts,
 * shared queries, cancel, CNAME loops, dns_valid_ttl.
 *
 * The responder prints one "query NAME TYPE" line per packet; the test
 * reads them from a pipe to count what the resolver sent.  Names that
 * must not meet a search domain (SERVFAIL, timeouts, NXDOMAIN counts)
 * are written fully qualified, with a trailing dot.
 */
#include "upstream/mg_dns.c"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static struct ev_loop *loop;
static pid_t           mock_pid = -1;
static int             mock_fd = -1;
static char            mock_log[1 << 16];
static size_t          mock_len;
static char            dir[64], zone_path[128], hosts_path[128],
                       resolv_path[128];

typedef struct {
    int           fired;
    int           status;
    size_t        naddrs;
    mg_dns_addr_t addrs[16];
    char          error[128];
    int           ttl;
} rec_t;

static void
rec_cb(void *ctx, const mg_dns_result_t *res)
{
    rec_t *r = ctx;
    size_t i;

    r->fired++;
    r->status = res->status;
    r->naddrs = res->naddrs;
    for (i = 0; i < res->naddrs && i < 16; i++) {
        r->addrs[i] = res->addrs[i];
    }
    snprintf(r->error, sizeof(r->error), "%s",
             res->error ? res->error : "");
    r->ttl = res->ttl;
}

static const char *
addr_str(const mg_dns_addr_t *a)
{
    static char buf[4][64];
    static int  k;
    char       *b = buf[k++ & 3];

    if (a->addr.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *) &a->addr)->sin_addr,
                  b, 64);
    } else {
        inet_ntop(AF_INET6,
                  &((const struct sockaddr_in6 *) &a->addr)->sin6_addr, b,
                  64);
    }
    return b;
}

static void
tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void) l;
    (void) w;
    (void) revents;
}

/* Run the loop until *flag (when given) or secs pass. */
static void
run_until(const int *flag, double secs)
{
    ev_timer  t;
    ev_tstamp end;

    ev_now_update(loop);
    end = ev_now(loop) + secs;
    ev_timer_init(&t, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &t);
    while ((flag == NULL || !*flag) && ev_now(loop) < end) {
        ev_run(loop, EVRUN_ONCE);
    }
    ev_timer_stop(loop, &t);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

/* "query NAME TYPE" lines received so far. */
static int
count(const char *name, const char *type)
{
    char    line[300], *p;
    ssize_t n;
    int     c = 0;

    while (mock_len + 1 < sizeof(mock_log)
           && (n = read(mock_fd, mock_log + mock_len,
                        sizeof(mock_log) - 1 - mock_len)) > 0)
    {
        mock_len += (size_t) n;
    }
    mock_log[mock_len] = '\0';
    snprintf(line, sizeof(line), "query %s %s\n", name, type);
    for (p = mock_log; (p = strstr(p, line)) != NULL; p += strlen(line)) {
        if (p == mock_log || p[-1] == '\n') {
            c++;
        }
    }
    return c;
}

/* Run the loop until the responder saw n queries for name/type. */
static int
wait_count(const char *name, const char *type, int n)
{
    int i;

    for (i = 0; i < 200 && count(name, type) < n; i++) {
        run_until(NULL, 0.01);
    }
    run_until(NULL, 0.05);           /* let the answer arrive */
    return count(name, type);
}

static int
start_mock(void)
{
    const char   *build = getenv("MOONGATE_BUILD");
    char          bin[256], buf[128] = "";
    int           p[2], port = 0;
    size_t        len = 0;
    struct pollfd pfd;

    snprintf(bin, sizeof(bin), "%s/mockdns", build ? build : "build");
    if (access(bin, X_OK) != 0 || pipe(p) != 0) {
        return -1;
    }
    mock_pid = fork();
    if (mock_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(bin, bin, "0", zone_path, (char *) NULL);
        _exit(127);
    }
    close(p[1]);
    mock_fd = p[0];
    pfd.fd = mock_fd;
    pfd.events = POLLIN;
    while (len + 1 < sizeof(buf) && strchr(buf, '\n') == NULL) {
        ssize_t n;
        if (poll(&pfd, 1, 5000) <= 0) {
            return -1;
        }
        n = read(mock_fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0) {
            return -1;
        }
        len += (size_t) n;
        buf[len] = '\0';
    }
    if (sscanf(buf, "ready %d", &port) != 1) {
        return -1;
    }
    fcntl(mock_fd, F_SETFL, O_NONBLOCK);
    return port;
}

static const char zone1[] =
    "a.test        A     1    127.0.0.2\n"
    "zero.test     A     0    127.0.0.30\n"
    "b.test        A     300  127.0.0.3\n"
    "b.test        A     300  127.0.0.4\n"
    "c.test        A     300  127.0.0.9\n"
    "d.test        A     300  127.0.0.10\n"
    "e.test        A     300  127.0.0.11\n"
    "v6.test       AAAA  300  2001:db8::6\n"
    "alias.test    CNAME 300  alias2.test\n"
    "alias2.test   CNAME 60   b.test\n"
    "nochase.test  CNAME 300  c.test\n"
    "nochase.test  NOCHASE\n"
    "loop1.test    CNAME 300  loop2.test\n"
    "loop1.test    NOCHASE\n"
    "loop2.test    CNAME 300  loop1.test\n"
    "loop2.test    NOCHASE\n"
    "srv.test      SRV   300  10 60 8001 b.test\n"
    "srv.test      SRV   120  10 20 8002 c.test\n"
    "srv.test      SRV   300  20 10 8003 d.test\n"
    "srv2.test     SRV   300  1 5 9001 e.test\n"
    "srv2.test     NOADD\n"
    "self.test     SRV   300  1 1 80 self.test\n"
    "self.test     A     300  127.0.0.12\n"
    "fail.test     SERVFAIL\n"
    "slow.test     A     300  127.0.0.7\n"
    "slow.test     DELAY 3000\n"
    "shared.test   A     300  127.0.0.8\n"
    "shared.test   DELAY 150\n"
    "cancel.test   A     300  127.0.0.13\n"
    "cancel.test   DELAY 100\n"
    "cancel2.test  A     300  127.0.0.14\n"
    "cancel2.test  DELAY 100\n";

int
main(void)
{
    mg_conf_t       conf;
    mg_dns_opts_t   opts;
    mg_dns_t       *d, *d2;
    mg_dns_result_t res;
    char            err[256], resolver[64], zone2[sizeof(zone1) + 64];
    void           *h, *h2;
    rec_t           r1, r2, r3, r4, r5;
    int             port, rc, n, i, ok_ports;
    ev_tstamp       t0, t_a;

    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof(dir), "/tmp/mg-test-dns.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(zone_path, sizeof(zone_path), "%s/zone", dir);
    snprintf(hosts_path, sizeof(hosts_path), "%s/hosts", dir);
    snprintf(resolv_path, sizeof(resolv_path), "%s/resolv.conf", dir);
    write_file(zone_path, zone1);
    write_file(hosts_path,
               "# test hosts\n"
               "10.1.2.3   myhost.local  MyAlias   # comment\n"
               "::2        v6only.local\n"
               "10.9.9.9   both.local\n"
               "::9        both.local\n"
               "10.9.9.10  both.local\n");
    write_file(resolv_path, "nameserver 127.0.0.1\n");

    port = start_mock();
    ok(port > 0, "mockdns started (port %d)", port);
    if (port <= 0) {
        printf("# build %s/mockdns first\n",
               getenv("MOONGATE_BUILD") ? getenv("MOONGATE_BUILD") : "build");
        return done_testing();
    }

    loop = ev_loop_new(EVFLAG_AUTO);
    memset(&conf, 0, sizeof(conf));
    snprintf(resolver, sizeof(resolver), "127.0.0.1:%d", port);
    conf.dns_resolver = resolver;
    conf.dns_order = "LAST,SRV,A,AAAA,CNAME";
    conf.dns_valid_ttl = -1;
    conf.dns_stale_ttl = 1;
    conf.dns_not_found_ttl = 1;
    conf.dns_error_ttl = 1;
    memset(&opts, 0, sizeof(opts));
    opts.hostsfile = hosts_path;
    opts.resolv_conf = resolv_path;
    opts.timeout_ms = 300;
    opts.attempts = 1;

    d = mg_dns_create(loop, &conf, &opts, err, sizeof(err));
    ok(d != NULL, "create: %s", d ? "ok" : err);
    conf.dns_valid_ttl = 100;
    d2 = mg_dns_create(loop, &conf, &opts, err, sizeof(err));
    ok(d2 != NULL, "create with dns_valid_ttl = 100");
    if (d == NULL || d2 == NULL) {
        return done_testing();
    }

    /* bad properties */
    {
        mg_conf_t bad = conf;
        mg_dns_t *x;
        bad.dns_order = "A,MX";
        x = mg_dns_create(loop, &bad, &opts, err, sizeof(err));
        ok(x == NULL && strstr(err, "MX") != NULL, "dns_order MX refused: %s",
           err);
        bad = conf;
        bad.dns_resolver = "not-an-ip";
        x = mg_dns_create(loop, &bad, &opts, err, sizeof(err));
        ok(x == NULL && strstr(err, "dns_resolver") != NULL,
           "bad dns_resolver refused: %s", err);
    }

    /* ---- synchronous answers ------------------------------------------ */
    rc = mg_dns_resolve(d, "192.0.2.1", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && res.naddrs == 1 && res.addrs[0].addr.ss_family == AF_INET
       && strcmp(addr_str(&res.addrs[0]), "192.0.2.1") == 0
       && res.addrs[0].port == 0,
       "IPv4 literal answers at once");
    rc = mg_dns_resolve(d, "[2001:db8::1]", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && res.addrs[0].addr.ss_family == AF_INET6
       && strcmp(addr_str(&res.addrs[0]), "2001:db8::1") == 0,
       "bracketed IPv6 literal answers at once");
    rc = mg_dns_resolve(d, "::1", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && res.addrs[0].addrlen == sizeof(struct sockaddr_in6),
       "bare IPv6 literal answers at once");
    rc = mg_dns_resolve(d, "myhost.local", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && res.naddrs == 1
       && strcmp(addr_str(&res.addrs[0]), "10.1.2.3") == 0,
       "hosts file name answers at once");
    rc = mg_dns_resolve(d, "MYALIAS", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && strcmp(addr_str(&res.addrs[0]), "10.1.2.3") == 0,
       "hosts file alias, any case");
    rc = mg_dns_resolve(d, "v6only.local", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && strcmp(addr_str(&res.addrs[0]), "::2") == 0,
       "hosts file IPv6-only name");
    rc = mg_dns_resolve(d, "both.local", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && res.naddrs == 1
       && strcmp(addr_str(&res.addrs[0]), "10.9.9.9") == 0,
       "hosts file: first IPv4 preferred (A before AAAA in dns_order)");
    rc = mg_dns_resolve(d, "localhost", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && strcmp(addr_str(&res.addrs[0]), "127.0.0.1") == 0,
       "localhost always defined");
    rc = mg_dns_resolve(d, "", &res, rec_cb, &r1, &h);
    ok(rc == MG_ERROR && res.error != NULL, "empty name refused");
    is_int(mg_dns_queries(d), 0, "no query sent so far");

    /* ---- A, cache, negative answers ----------------------------------- */
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    memset(&r3, 0, sizeof(r3));
    memset(&r4, 0, sizeof(r4));
    memset(&r5, 0, sizeof(r5));
    rc = mg_dns_resolve(d, "a.test", &res, rec_cb, &r1, &h);
    is_int(rc, MG_AGAIN, "A: first lookup is asynchronous");
    rc = mg_dns_resolve(d, "zero.test", &res, rec_cb, &r2, &h);
    rc = mg_dns_resolve(d, "missing.test.", &res, rec_cb, &r3, &h);
    is_int(rc, MG_AGAIN, "NXDOMAIN: asynchronous");
    rc = mg_dns_resolve(d, "fail.test.", &res, rec_cb, &r4, &h);
    is_int(rc, MG_AGAIN, "SERVFAIL: asynchronous");
    rc = mg_dns_resolve(d2, "a.test", &res, rec_cb, &r5, &h);
    run_until(&r1.fired, 3);
    run_until(&r2.fired, 3);
    run_until(&r3.fired, 3);
    run_until(&r4.fired, 3);
    run_until(&r5.fired, 3);
    t_a = ev_now(loop);
    ok(r1.fired == 1 && r1.status == MG_OK && r1.naddrs == 1
       && strcmp(addr_str(&r1.addrs[0]), "127.0.0.2") == 0 && r1.ttl == 1,
       "A: callback with 127.0.0.2, ttl 1 (%s %d)",
       r1.naddrs ? addr_str(&r1.addrs[0]) : r1.error, r1.ttl);
    rc = mg_dns_resolve(d, "a.test", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && res.naddrs == 1 && !res.stale
       && strcmp(addr_str(&res.addrs[0]), "127.0.0.2") == 0,
       "A: second lookup answered from the cache");
    is_int(count("a.test", "A"), 2, "A: one query per resolver");
    is_int(count("a.test", "SRV"), 2, "A: SRV tried first (dns_order)");
    is_int(count("a.test", "AAAA"), 0, "A: stops at the first success");

    ok(r3.fired == 1 && r3.status == MG_DECLINED
       && strcmp(r3.error, "dns server error: 3 name error") == 0,
       "NXDOMAIN: MG_DECLINED, Kong's message (%s)", r3.error);
    is_int(count("missing.test", "SRV") + count("missing.test", "A"), 1,
           "NXDOMAIN: no other type tried");
    rc = mg_dns_resolve(d, "missing.test.", &res, rec_cb, &r3, &h);
    ok(rc == MG_DECLINED && res.error != NULL,
       "NXDOMAIN: cached (dns_not_found_ttl)");

    ok(r4.fired == 1 && r4.status == MG_ERROR
       && strcmp(r4.error, "dns server error: 2 server failure") == 0,
       "SERVFAIL: MG_ERROR (%s)", r4.error);
    is_int(count("fail.test", "CNAME"), 1,
           "SERVFAIL: falls through every type, as Kong");
    rc = mg_dns_resolve(d, "fail.test.", &res, rec_cb, &r4, &h);
    ok(rc == MG_ERROR && res.error != NULL, "SERVFAIL: cached (dns_error_ttl)");

    /* TTL 0: served stale at once while refreshed */
    ok(r2.fired == 1 && r2.status == MG_OK, "TTL 0: first answer");
    rc = mg_dns_resolve(d, "zero.test", &res, rec_cb, &r2, &h);
    ok(rc == MG_OK && res.stale && res.ttl == 0,
       "TTL 0: next lookup served stale");
    is_int(wait_count("zero.test", "A", 2), 2,
           "TTL 0: stale answer triggered one background refresh");

    /* ---- AAAA, CNAME, SRV --------------------------------------------- */
    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "v6.test", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 3);
    ok(rc == MG_AGAIN && r1.status == MG_OK && r1.naddrs == 1
       && r1.addrs[0].addr.ss_family == AF_INET6
       && strcmp(addr_str(&r1.addrs[0]), "2001:db8::6") == 0,
       "AAAA: resolved after SRV and A came back empty");

    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "alias.test", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 3);
    ok(r1.status == MG_OK && r1.naddrs == 2
       && strcmp(addr_str(&r1.addrs[0]), "127.0.0.3") == 0
       && strcmp(addr_str(&r1.addrs[1]), "127.0.0.4") == 0,
       "CNAME chain in the answer followed (alias -> alias2 -> b)");
    ok(r1.ttl == 60, "CNAME chain: smallest TTL of the chain (%d)", r1.ttl);

    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "nochase.test", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 3);
    ok(r1.status == MG_OK && r1.naddrs == 1
       && strcmp(addr_str(&r1.addrs[0]), "127.0.0.9") == 0,
       "CNAME type: alias queried, target resolved (%s)",
       r1.naddrs ? addr_str(&r1.addrs[0]) : r1.error);
    is_int(count("nochase.test", "CNAME"), 1, "CNAME type tried last");

    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "loop1.test", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 3);
    ok(r1.fired == 1 && r1.status != MG_OK,
       "CNAME loop ends in an error, not a hang (%s)", r1.error);

    n = count("c.test", "A") + count("b.test", "A") + count("d.test", "A");
    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "srv.test", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 3);
    ok(r1.status == MG_OK && r1.naddrs == 3,
       "SRV: lowest priority targets only (%zu addresses)", r1.naddrs);
    ok_ports = r1.naddrs == 3;
    for (i = 0; i < (int) r1.naddrs && i < 3; i++) {
        const mg_dns_addr_t *a = &r1.addrs[i];
        const char          *ip = addr_str(a);
        if (a->priority != 10
            || (strcmp(ip, "127.0.0.9") == 0
                    ? (a->port != 8002 || a->weight != 20)
                    : ((strcmp(ip, "127.0.0.3") != 0
                        && strcmp(ip, "127.0.0.4") != 0)
                       || a->port != 8001 || a->weight != 60)))
        {
            ok_ports = 0;
        }
    }
    ok(ok_ports, "SRV: ports, weights and priorities carried");
    ok(r1.ttl == 120, "SRV: smallest TTL (%d)", r1.ttl);
    is_int(count("c.test", "A") + count("b.test", "A") + count("d.test", "A"),
           n, "SRV: targets taken from the additional section");

    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "srv2.test", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 3);
    ok(r1.status == MG_OK && r1.naddrs == 1 && r1.addrs[0].port == 9001
       && r1.addrs[0].weight == 5
       && strcmp(addr_str(&r1.addrs[0]), "127.0.0.11") == 0,
       "SRV without additional section: target looked up");
    is_int(count("e.test", "A"), 1, "SRV: one lookup for the target");
    rc = mg_dns_resolve(d, "e.test", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK, "SRV: the target's answer is cached too");

    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "self.test", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 3);
    ok(r1.status == MG_OK && r1.naddrs == 1 && r1.addrs[0].port == 0
       && strcmp(addr_str(&r1.addrs[0]), "127.0.0.12") == 0,
       "SRV pointing at itself skipped, A used (Kubernetes)");

    /* ---- shared query, cancel, timeout -------------------------------- */
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    rc = mg_dns_resolve(d, "shared.test", &res, rec_cb, &r1, &h);
    n = mg_dns_resolve(d, "shared.test", &res, rec_cb, &r2, &h2);
    ok(rc == MG_AGAIN && n == MG_AGAIN && h != h2,
       "shared: both lookups wait, distinct handles");
    run_until(&r1.fired, 3);
    run_until(&r2.fired, 3);
    ok(r1.fired == 1 && r2.fired == 1 && r1.status == MG_OK
       && r2.status == MG_OK && r2.naddrs == 1,
       "shared: both callbacks fired once");
    is_int(count("shared.test", "A"), 1, "shared: one A packet for two lookups");
    is_int(count("shared.test", "SRV"), 1, "shared: one SRV packet");

    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    rc = mg_dns_resolve(d, "cancel.test", &res, rec_cb, &r1, &h);
    n = mg_dns_resolve(d, "cancel.test", &res, rec_cb, &r2, &h2);
    mg_dns_cancel(d, h);
    run_until(&r2.fired, 3);
    run_until(NULL, 0.1);
    ok(r1.fired == 0 && r2.fired == 1 && r2.status == MG_OK,
       "cancel: the cancelled callback never runs, the other does");

    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "cancel2.test", &res, rec_cb, &r1, &h);
    mg_dns_cancel(d, h);
    wait_count("cancel2.test", "A", 1);
    run_until(NULL, 0.15);
    rc = mg_dns_resolve(d, "cancel2.test", &res, rec_cb, &r1, &h);
    ok(r1.fired == 0 && rc == MG_OK
       && strcmp(addr_str(&res.addrs[0]), "127.0.0.14") == 0,
       "cancel: the answer still lands in the cache");

    memset(&r1, 0, sizeof(r1));
    ev_now_update(loop);
    t0 = ev_now(loop);
    rc = mg_dns_resolve(d, "slow.test.", &res, rec_cb, &r1, &h);
    run_until(&r1.fired, 5);
    ok(rc == MG_AGAIN && r1.fired == 1 && r1.status == MG_ERROR
       && strcmp(r1.error, "timeout") == 0,
       "timeout: callback with MG_ERROR \"timeout\" (%s)", r1.error);
    ok(ev_now(loop) - t0 < 2.0, "timeout: after ~0.3 s, not a hang (%.2f s)",
       ev_now(loop) - t0);
    is_int(count("slow.test", "A"), 0, "timeout: no other type tried");
    rc = mg_dns_resolve(d, "slow.test.", &res, rec_cb, &r1, &h);
    ok(rc == MG_ERROR && strcmp(res.error, "timeout") == 0,
       "timeout: error cached for dns_error_ttl");

    /* ---- TTL expiry: stale answer, background refresh, LAST ----------- */
    snprintf(zone2, sizeof(zone2), "%s", zone1);
    memcpy(strstr(zone2, "127.0.0.2\n"), "127.0.0.5\n", 10);
    write_file(zone_path, zone2);
    kill(mock_pid, SIGHUP);
    ev_now_update(loop);
    if (ev_now(loop) < t_a + 1.3) {
        run_until(NULL, t_a + 1.3 - ev_now(loop));
    }
    n = count("a.test", "A");
    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "a.test", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && res.stale && res.naddrs == 1
       && strcmp(addr_str(&res.addrs[0]), "127.0.0.2") == 0,
       "expired: old answer served stale, synchronously");
    is_int(wait_count("a.test", "A", n + 1), n + 1,
           "expired: one background refresh");
    rc = mg_dns_resolve(d, "a.test", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && !res.stale && res.naddrs == 1
       && strcmp(addr_str(&res.addrs[0]), "127.0.0.5") == 0,
       "expired: the refresh brought the new answer (%s)",
       res.naddrs ? addr_str(&res.addrs[0]) : "none");
    is_int(count("a.test", "SRV"), 2,
           "LAST: the refresh asked for A only");
    ok(r1.fired == 0, "stale answers fire no callback");

    rc = mg_dns_resolve(d2, "a.test", &res, rec_cb, &r1, &h);
    ok(rc == MG_OK && !res.stale && res.ttl > 90
       && strcmp(addr_str(&res.addrs[0]), "127.0.0.2") == 0,
       "dns_valid_ttl overrides the record's TTL (ttl %d)", res.ttl);

    rc = mg_dns_resolve(d, "zero.test", &res, rec_cb, &r2, &h);
    is_int(rc, MG_AGAIN, "past dns_stale_ttl: a fresh query, not stale data");

    memset(&r3, 0, sizeof(r3));
    memset(&r4, 0, sizeof(r4));
    rc = mg_dns_resolve(d, "missing.test.", &res, rec_cb, &r3, &h);
    is_int(rc, MG_AGAIN, "NXDOMAIN: asked again after dns_not_found_ttl");
    rc = mg_dns_resolve(d, "fail.test.", &res, rec_cb, &r4, &h);
    is_int(rc, MG_AGAIN, "SERVFAIL: asked again after dns_error_ttl");
    run_until(&r3.fired, 3);
    run_until(&r4.fired, 3);
    ok(r3.status == MG_DECLINED && r4.status == MG_ERROR,
       "negative answers come back the same");

    /* free with a query in flight: no callback, nothing leaks (ASan) */
    memset(&r1, 0, sizeof(r1));
    rc = mg_dns_resolve(d, "slow.test", &res, rec_cb, &r1, &h);
    rc = mg_dns_resolve(d2, "shared.test", &res, rec_cb, &r2, &h);
    ok(mg_dns_queries(d) > 10, "queries counted (%llu)",
       (unsigned long long) mg_dns_queries(d));
    mg_dns_free(d);
    mg_dns_free(d2);
    run_until(NULL, 0.05);
    ok(r1.fired == 0, "free drops pending lookups without callbacks");

    ev_loop_destroy(loop);
    kill(mock_pid, SIGTERM);
    waitpid(mock_pid, NULL, 0);
    close(mock_fd);
    unlink(zone_path);
    unlink(hosts_path);
    unlink(resolv_path);
    rmdir(dir);
    return done_testing();
}
