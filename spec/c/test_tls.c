/*
 * test_tls.c -- core/tls/ end to end in one process: certificates made
 * here with mbedTLS's x509write (a CA, an untrusted CA, an intermediate,
 * server certificates for "test.local" (+ IP SAN 127.0.0.1),
 * "*.wild.local", "deep.local" (through the intermediate), a client
 * certificate), a server object built from a hand-made mg_config_t, client
 * objects from hand-made services, and real handshakes over non-blocking
 * socketpair(AF_UNIX) fds, both ends driven in turn.
 *
 * Covers: SNI choice (exact, wildcard, Kong's fallbacks, default), chain
 * and host name verification (DNS, IP SAN), tls_verify 0, system bundle,
 * tls_verify_depth, client certificates, writev/recv with EAGAIN both ways
 * and coalescing, pending bytes, close_notify and EOF, ticket resumption
 * (same object, another snapshot, forked workers), tampered tickets,
 * the generated default certificate and its reuse, plain HTTP on the TLS
 * port, garbage and early close, the RNG after fork, config errors, the
 * log, and the per-connection memory cost.
 */
#include "tls/mg_tls.c"
#include "tls/mg_tls_server.c"
#include "tls/mg_tls_client.c"
#include "tls/mg_tls_cert.c"
#include "tap.h"

#include <malloc.h>
#include <poll.h>
#include <sys/wait.h>

#include <mbedtls/x509_csr.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* ------------------------------------------------------------------ */
/* Test certificates                                                   */

typedef struct {
    mbedtls_pk_context key;
    char               subject[128];
    char               crt[4096];
    char               keypem[1024];
} tcert_t;

/* GeneralNames with up to two DNS names and one IPv4 address. */
static size_t
san_der(unsigned char *out, const char *dns1, const char *dns2,
        const unsigned char *ip4)
{
    unsigned char body[256];
    size_t        n = 0;
    const char   *d[2] = { dns1, dns2 };
    int           i;

    for (i = 0; i < 2; i++) {
        if (d[i] != NULL) {
            size_t l = strlen(d[i]);
            body[n++] = 0x82;
            body[n++] = (unsigned char) l;
            memcpy(body + n, d[i], l);
            n += l;
        }
    }
    if (ip4 != NULL) {
        body[n++] = 0x87;
        body[n++] = 4;
        memcpy(body + n, ip4, 4);
        n += 4;
    }
    out[0] = 0x30;
    out[1] = (unsigned char) n;
    memcpy(out + 2, body, n);
    return n + 2;
}

/* A P-256 key and a certificate for cn, signed by issuer (NULL: itself). */
static int
make_cert(tcert_t *c, const char *cn, int is_ca, const tcert_t *issuer,
          const unsigned char *san, size_t sanlen)
{
    mbedtls_x509write_cert w;
    mbedtls_mpi            serial;
    static int             next_serial = 1;
    int                    ret;

    mbedtls_pk_init(&c->key);
    snprintf(c->subject, sizeof(c->subject), "CN=%s", cn);
    ret = mbedtls_pk_setup(&c->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0) {
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(c->key),
                                  mg_tls_rng, NULL);
    }
    if (ret != 0) {
        return ret;
    }
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);
    mbedtls_mpi_lset(&serial, next_serial++);
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &c->key);
    mbedtls_x509write_crt_set_issuer_key(
        &w, issuer ? (mbedtls_pk_context *) &issuer->key : &c->key);
    ret = mbedtls_x509write_crt_set_serial(&w, &serial);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_validity(&w, "20200101000000",
                                                 "20491231235959");
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_subject_name(&w, c->subject);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_issuer_name(
            &w, issuer ? issuer->subject : c->subject);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_basic_constraints(&w, is_ca, -1);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_key_usage(
            &w, is_ca ? MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN
                      : MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_subject_key_identifier(&w);
    if (ret == 0)
        ret = mbedtls_x509write_crt_set_authority_key_identifier(&w);
    if (ret == 0 && san != NULL)
        ret = mbedtls_x509write_crt_set_extension(
            &w, MBEDTLS_OID_SUBJECT_ALT_NAME,
            MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, san, sanlen);
    if (ret == 0)
        ret = mbedtls_x509write_crt_pem(&w, (unsigned char *) c->crt,
                                        sizeof(c->crt), mg_tls_rng, NULL);
    if (ret == 0)
        ret = mbedtls_pk_write_key_pem(&c->key, (unsigned char *) c->keypem,
                                       sizeof(c->keypem));
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
    return ret;
}

static tcert_t ca, ca2, inter, srv, wild, deep, cli, other;
static char    deep_chain[8192];

/* ------------------------------------------------------------------ */
/* Config built by hand                                                */

static mg_config_t *cf;
static char         tmpdir[64], tmpdir2[64], logpath[128];

static mg_str_t
pstr(const char *s)
{
    return mg_pool_str(cf->pool, s, strlen(s));
}

static mg_certificate_t *
add_cert(const char *id, const char *crt, const char *key)
{
    mg_certificate_t *c = mg_pool_calloc(cf->pool, sizeof(*c));
    c->id = pstr(id);
    c->cert = pstr(crt);
    c->key = pstr(key);
    return c;
}

static mg_sni_t *
add_sni(const char *name, mg_certificate_t *c)
{
    mg_sni_t *s = mg_pool_calloc(cf->pool, sizeof(*s));
    s->id = pstr(name);
    s->name = pstr(name);
    s->certificate = c;
    return s;
}

static mg_ca_certificate_t *
add_ca(const char *id, const char *crt)
{
    mg_ca_certificate_t *c = mg_pool_calloc(cf->pool, sizeof(*c));
    c->id = pstr(id);
    c->cert = pstr(crt);
    return c;
}

static void
build_config(void)
{
    mg_certificate_t *ct, *cw, *cd;

    cf = mg_config_new();
    ct = add_cert("cert-test", srv.crt, srv.keypem);
    cw = add_cert("cert-wild", wild.crt, wild.keypem);
    cd = add_cert("cert-deep", deep_chain, deep.keypem);

    cf->certificates = mg_pool_calloc(cf->pool, 4 * sizeof(void *));
    cf->certificates[0] = ct;
    cf->certificates[1] = cw;
    cf->certificates[2] = cd;
    cf->certificates[3] = add_cert("cert-client", cli.crt, cli.keypem);
    cf->certificates_n = 4;

    cf->snis = mg_pool_calloc(cf->pool, 5 * sizeof(void *));
    cf->snis[0] = add_sni("Test.Local", ct);     /* case-insensitive */
    cf->snis[1] = add_sni("*.wild.local", cw);
    cf->snis[2] = add_sni("deep.local", cd);
    cf->snis[3] = add_sni("suffix.*", cw);
    cf->snis[4] = add_sni("other.wild.local", cd);
    cf->snis_n = 5;

    cf->ca_certificates = mg_pool_calloc(cf->pool, 2 * sizeof(void *));
    cf->ca_certificates[0] = add_ca("ca-1", ca.crt);
    cf->ca_certificates[1] = add_ca("ca-2", ca2.crt);
    cf->ca_certificates_n = 2;
}

static void
service(mg_service_t *svc, int verify, int depth, const char *ca_id,
        const char *client_cert)
{
    memset(svc, 0, sizeof(*svc));
    svc->id = pstr("svc-1");
    svc->name = pstr("svc");
    svc->tls_verify = verify;
    svc->tls_verify_depth = depth;
    if (ca_id != NULL) {
        svc->ca_certificates.elts = mg_pool_calloc(cf->pool, sizeof(mg_str_t));
        svc->ca_certificates.elts[0] = pstr(ca_id);
        svc->ca_certificates.n = 1;
    }
    if (client_cert != NULL) {
        svc->client_certificate = pstr(client_cert);
    }
}

static int
write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) return -1;
    fputs(data, f);
    return fclose(f);
}

static char *
slurp(const char *path)
{
    static char buf[8192];
    FILE       *f = fopen(path, "r");
    size_t      n;

    if (f == NULL) return NULL;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------------ */
/* Driving both ends                                                   */

typedef struct {
    int            fd[2];        /* [0] client end, [1] server end */
    mg_tls_conn_t *c, *s;
    int            crc, src;
} link_t;

static void
link_open(link_t *l)
{
    socketpair(AF_UNIX, SOCK_STREAM, 0, l->fd);
    fcntl(l->fd[0], F_SETFL, O_NONBLOCK);
    fcntl(l->fd[1], F_SETFL, O_NONBLOCK);
    l->c = l->s = NULL;
    l->crc = l->src = MG_AGAIN;
}

static void
link_close(link_t *l)
{
    mg_tls_conn_free(l->c);
    mg_tls_conn_free(l->s);
    if (l->fd[0] >= 0) close(l->fd[0]);
    if (l->fd[1] >= 0) close(l->fd[1]);
}

static void
pump(link_t *l)
{
    int i, after = -1;

    for (i = 0; i < 2000; i++) {
        if (l->crc == MG_AGAIN) l->crc = mg_tls_handshake(l->c);
        if (l->src == MG_AGAIN) l->src = mg_tls_handshake(l->s);
        if (l->crc != MG_AGAIN && l->src != MG_AGAIN) return;
        if ((l->crc == MG_ERROR || l->src == MG_ERROR) && after < 0) after = i;
        if (after >= 0 && i - after > 20) return;   /* the other waits on */
    }
}

/* Handshake c (client object) with s (server object) for host. */
static void
connect_pair(link_t *l, mg_tls_server_t *s, mg_tls_client_t *c,
             const char *host)
{
    link_open(l);
    l->c = mg_tls_conn_client(c, l->fd[0], host);
    l->s = mg_tls_conn_server(s, l->fd[1]);
    pump(l);
}

static const char *
peer_subject(mg_tls_conn_t *t)
{
    static char             buf[256];
    const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&t->ssl);

    if (crt == NULL) return "(none)";
    mbedtls_x509_dn_gets(buf, sizeof(buf), &crt->subject);
    return buf;
}

static int
contains(const char *s, const char *sub)
{
    return s != NULL && strstr(s, sub) != NULL;
}

/* Drive one end in its own process: poll on the direction it wants. */
static int
drive(mg_tls_conn_t *t, int fd)
{
    struct pollfd p;
    int           rc;

    for (;;) {
        rc = mg_tls_handshake(t);
        if (rc != MG_AGAIN) return rc;
        p.fd = fd;
        p.events = mg_tls_want_write(t) ? POLLOUT : POLLIN;
        if (poll(&p, 1, 5000) <= 0) return MG_ERROR;
    }
}

/* ------------------------------------------------------------------ */

static void
test_check_cert_key(void)
{
    char     err[256];
    mg_str_t c = { srv.crt, strlen(srv.crt) };
    mg_str_t k = { srv.keypem, strlen(srv.keypem) };
    mg_str_t wk = { wild.keypem, strlen(wild.keypem) };
    mg_str_t junk = mg_string("-----BEGIN CERTIFICATE-----\nAAAA\n"
                              "-----END CERTIFICATE-----\n");

    is_int(mg_tls_check_cert_key(c, k, err, sizeof(err)), MG_OK,
           "check_cert_key: matching pair");
    is_int(mg_tls_check_cert_key(c, wk, err, sizeof(err)), MG_ERROR,
           "check_cert_key: key of another certificate");
    ok(contains(err, "does not match"), "  says: %s", err);
    is_int(mg_tls_check_cert_key(junk, k, err, sizeof(err)), MG_ERROR,
           "check_cert_key: broken certificate");
    ok(contains(err, "cannot parse certificate"), "  says: %s", err);
    is_int(mg_tls_check_cert_key(c, junk, err, sizeof(err)), MG_ERROR,
           "check_cert_key: broken key");
    ok(contains(err, "cannot parse key") && !contains(err, "BEGIN"),
       "  says: %s", err);
}

static void
test_config_errors(mg_conf_t *conf)
{
    char               err[512];
    mg_tls_server_t   *s;
    mg_tls_client_t   *c;
    mg_service_t       svc;
    mg_certificate_t   bad, *saved_cert;
    mg_sni_t          *saved_sni;
    const char        *saved_path;

    /* An SNI whose certificate does not parse: named by sni and id. */
    memset(&bad, 0, sizeof(bad));
    bad.id = pstr("cert-broken");
    bad.cert = pstr("not a certificate");
    bad.key = pstr(srv.keypem);
    saved_cert = cf->snis[2]->certificate;
    cf->snis[2]->certificate = &bad;
    s = mg_tls_server_create(conf, cf, err, sizeof(err));
    ok(s == NULL && contains(err, "cert-broken") && contains(err, "deep.local"),
       "server: broken certificate named: %s", err);
    cf->snis[2]->certificate = saved_cert;

    /* Two SNIs with one name. */
    saved_sni = cf->snis[4];
    cf->snis[4] = add_sni("TEST.local", saved_cert);
    s = mg_tls_server_create(conf, cf, err, sizeof(err));
    ok(s == NULL && contains(err, "test.local"), "server: duplicate sni: %s",
       err);
    cf->snis[4] = saved_sni;

    /* ssl_cert naming a missing file. */
    saved_path = conf->ssl_cert;
    conf->ssl_cert = "/nonexistent/x.crt";
    s = mg_tls_server_create(conf, cf, err, sizeof(err));
    ok(s == NULL && contains(err, "/nonexistent/x.crt"),
       "server: missing ssl_cert file named: %s", err);
    conf->ssl_cert = saved_path;

    service(&svc, 1, -1, "ca-nope", NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    ok(c == NULL && contains(err, "ca-nope") && contains(err, "svc"),
       "client: unknown ca_certificate named: %s", err);
    service(&svc, 1, -1, NULL, "cert-nope");
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    ok(c == NULL && contains(err, "cert-nope"),
       "client: unknown client_certificate named: %s", err);
}

static void
test_sni_map(mg_tls_server_t *s)
{
    ok(mg_tls_server_find(s, "test.local", 10) == &s->certs[0],
       "find: exact (stored lower-case)");
    ok(mg_tls_server_find(s, "a.wild.local", 12) == &s->certs[1],
       "find: *.wild.local matches a.wild.local");
    ok(mg_tls_server_find(s, "other.wild.local", 16) == &s->certs[2],
       "find: exact wins over wildcard");
    ok(mg_tls_server_find(s, "a.b.wild.local", 14) == NULL,
       "find: a wildcard covers one label only");
    ok(mg_tls_server_find(s, "wild.local", 10) == NULL,
       "find: *.wild.local does not match wild.local");
    ok(mg_tls_server_find(s, "suffix.com", 10) == &s->certs[1],
       "find: suffix.* matches suffix.com");
    ok(mg_tls_server_find(s, "nothing.here", 12) == NULL,
       "find: no match: default");
}

static void
test_handshakes(mg_tls_server_t *s)
{
    char             err[512];
    mg_service_t     svc;
    mg_tls_client_t *c;
    link_t           l;

    service(&svc, 1, -1, "ca-1", NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    ok(c != NULL, "client with ca-1: %s", c ? "ok" : err);

    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && l.src == MG_OK, "sni test.local: handshake ok (%s)",
       l.crc == MG_OK ? "" : mg_tls_error(l.c));
    is_str(peer_subject(l.c), "CN=test.local", "  server sent test.local");
    ok(mg_str_eq_lit(mg_tls_sni(l.s), "test.local"), "  server saw the sni");
    ok(mg_str_eq_lit(mg_tls_sni(l.c), "test.local"), "  client sni view");
    is_str(mbedtls_ssl_get_alpn_protocol(&l.s->ssl), "http/1.1",
           "  ALPN http/1.1 negotiated");
    is_str(mg_tls_protocol(l.s), "TLSv1.2", "  TLS 1.2");
    is_str(mg_tls_cipher(l.s), "ECDHE-ECDSA-AES128-GCM-SHA256",
           "  preferred suite, OpenSSL name");
    ok(!mg_tls_resumed(l.c) && !mg_tls_resumed(l.s), "  full handshake");
    link_close(&l);

    connect_pair(&l, s, c, "TEST.Local");
    ok(l.crc == MG_OK && mg_str_eq_lit(mg_tls_sni(l.s), "test.local"),
       "sni is case-insensitive and reported lower-case");
    link_close(&l);

    connect_pair(&l, s, c, "a.wild.local");
    ok(l.crc == MG_OK && l.src == MG_OK, "wildcard: handshake ok");
    is_str(peer_subject(l.c), "CN=*.wild.local", "  server sent *.wild.local");
    link_close(&l);

    connect_pair(&l, s, c, "a.b.wild.local");
    ok(l.crc == MG_ERROR, "two labels under a wildcard: default cert, "
       "verification fails");
    ok(contains(mg_tls_error(l.c), "certificate verify failed")
       && contains(mg_tls_error(l.c), "Common Name"),
       "  name mismatch: %s", mg_tls_error(l.c));
    ok(l.src == MG_ERROR && contains(mg_tls_error(l.s), "alert"),
       "  server got the alert: %s", mg_tls_error(l.s));
    link_close(&l);

    connect_pair(&l, s, c, NULL);
    ok(l.crc == MG_OK && l.src == MG_OK, "no sni: handshake ok");
    is_str(peer_subject(l.c), "CN=test.local", "  default certificate");
    is_int(mg_tls_sni(l.s).len, 0, "  empty sni");
    link_close(&l);

    connect_pair(&l, s, c, "127.0.0.1");
    ok(l.crc == MG_OK, "IP host matches the IP SAN");
    is_int(mg_tls_sni(l.s).len, 0, "  no SNI sent for an IP");
    link_close(&l);

    connect_pair(&l, s, c, "127.0.0.2");
    ok(l.crc == MG_ERROR && contains(mg_tls_error(l.c), "verify failed"),
       "other IP: verify fails");
    link_close(&l);
    mg_tls_client_free(c);

    /* Untrusted CA, verification on. */
    service(&svc, 1, -1, "ca-2", NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_ERROR, "untrusted CA: handshake fails");
    ok(contains(mg_tls_error(l.c), "certificate verify failed: ")
       && contains(mg_tls_error(l.c), "trusted CA"),
       "  reason: %s", mg_tls_error(l.c));
    ok(contains(mg_tls_error(l.s), "unknown_ca"), "  server: %s",
       mg_tls_error(l.s));
    link_close(&l);
    mg_tls_client_free(c);

    /* Same, tls_verify = 0. */
    service(&svc, 0, -1, "ca-2", NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && l.src == MG_OK, "tls_verify=0: untrusted accepted");
    link_close(&l);
    mg_tls_client_free(c);

    /* Default trust: the system bundle, which does not know our CA. */
    service(&svc, -1, -1, NULL, NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    ok(c != NULL && c->verify && !c->own_ca, "tls_verify unset: verify "
       "with the system bundle (%s)", c ? "loaded" : err);
    if (c != NULL) {
        connect_pair(&l, s, c, "test.local");
        ok(l.crc == MG_ERROR && contains(mg_tls_error(l.c), "verify failed"),
           "  test CA unknown to the system bundle");
        link_close(&l);
        mg_tls_client_free(c);
    }
    c = mg_tls_client_create(NULL, NULL, err, sizeof(err));
    ok(c != NULL && c->verify, "client without a service: defaults");
    mg_tls_client_free(c);
}

static void
test_depth(mg_tls_server_t *s)
{
    char             err[256];
    mg_service_t     svc;
    mg_tls_client_t *c;
    link_t           l;
    static const struct {
        int         depth;
        const char *host;
        int         want;
    } cases[] = {
        { -1, "deep.local", MG_OK },
        { 1, "deep.local", MG_OK },
        { 0, "deep.local", MG_ERROR },
        { 0, "test.local", MG_OK },
    };
    size_t i;

    for (i = 0; i < mg_nelems(cases); i++) {
        service(&svc, 1, cases[i].depth, "ca-1", NULL);
        c = mg_tls_client_create(cf, &svc, err, sizeof(err));
        connect_pair(&l, s, c, cases[i].host);
        ok(l.crc == cases[i].want, "tls_verify_depth %d, %s: %s",
           cases[i].depth, cases[i].host,
           l.crc == MG_OK ? "ok" : mg_tls_error(l.c));
        if (cases[i].want == MG_ERROR) {
            ok(contains(mg_tls_error(l.c), "tls_verify_depth 0"),
               "  reason names the depth");
        }
        link_close(&l);
        mg_tls_client_free(c);
    }
}

static void
test_client_cert(const mg_conf_t *conf)
{
    char             err[256];
    mg_service_t     svc;
    mg_tls_server_t *s;
    mg_tls_client_t *c;
    mbedtls_x509_crt anchors;
    link_t           l;

    /* A server that asks for a client certificate (white box: the
     * module has no server-side mTLS setting yet). */
    s = mg_tls_server_create(conf, cf, err, sizeof(err));
    mbedtls_x509_crt_init(&anchors);
    mbedtls_x509_crt_parse(&anchors, (const unsigned char *) ca.crt,
                           strlen(ca.crt) + 1);
    mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
    mbedtls_ssl_conf_ca_chain(&s->conf, &anchors, NULL);

    service(&svc, 1, -1, "ca-1", "cert-client");
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    ok(c != NULL && c->has_pair, "client with client_certificate (%s)",
       c ? "ok" : err);
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && l.src == MG_OK, "mTLS handshake ok");
    is_str(peer_subject(l.s), "CN=client.local",
           "  server received the client certificate");
    is_int(mbedtls_ssl_get_verify_result(&l.s->ssl), 0, "  and it verifies");
    link_close(&l);
    mg_tls_client_free(c);

    service(&svc, 1, -1, "ca-1", NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    connect_pair(&l, s, c, "test.local");
    is_str(peer_subject(l.s), "(none)", "without one: none presented");
    link_close(&l);
    mg_tls_client_free(c);
    mg_tls_server_free(s);
    mbedtls_x509_crt_free(&anchors);
}

static void
test_io(mg_tls_server_t *s, mg_tls_client_t *c)
{
    static char    body[1 << 20];
    char           head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";
    char           tail[] = "--tail--";
    char           buf[20000];
    size_t         parts[3], total, written = 0, received = 0, i;
    const char    *bases[3];
    struct iovec   iov[3];
    int            eagain_w = 0, partial = 0, eagain_want = 1, cnt, k;
    int            sndbuf = 4096, mismatch = 0;
    ssize_t        n;
    link_t         l;

    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && l.src == MG_OK, "io: handshake");

    /* recv with nothing there */
    n = mg_tls_recv(l.s, buf, sizeof(buf));
    ok(n == -1 && errno == EAGAIN && mg_tls_want_write(l.s) == 0,
       "recv on an empty socket: EAGAIN, wants read");

    /* a head and a small body go out as one record */
    iov[0].iov_base = head;
    iov[0].iov_len = strlen(head);
    iov[1].iov_base = tail;
    iov[1].iov_len = strlen(tail);
    n = mg_tls_writev(l.c, iov, 2);
    is_int(n, (long) (strlen(head) + strlen(tail)), "writev head+tail");
    n = mg_tls_recv(l.s, buf, sizeof(buf));
    is_int(n, (long) (strlen(head) + strlen(tail)),
           "  received in one record (coalesced)");
    ok(n > 0 && memcmp(buf, head, strlen(head)) == 0
       && memcmp(buf + strlen(head), tail, strlen(tail)) == 0,
       "  bytes intact");

    /* pending: a 100-byte record read 10 bytes at a time */
    memset(buf, 'x', 100);
    iov[0].iov_base = buf;
    iov[0].iov_len = 100;
    mg_tls_writev(l.c, iov, 1);
    n = mg_tls_recv(l.s, buf + 200, 10);
    is_int(n, 10, "recv 10 of a 100-byte record");
    is_int(mg_tls_pending(l.s), 90, "  pending 90");
    n = mg_tls_recv(l.s, buf + 200, 1000);
    is_int(n, 90, "  the rest without a new event");
    is_int(mg_tls_pending(l.s), 0, "  pending 0");

    /* 1 MB through a 4 KB socket buffer, both directions of EAGAIN */
    setsockopt(l.fd[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    for (i = 0; i < sizeof(body); i++) {
        body[i] = (char) (i * 7 + (i >> 11));
    }
    bases[0] = head;
    parts[0] = strlen(head);
    bases[1] = body;
    parts[1] = sizeof(body);
    bases[2] = tail;
    parts[2] = strlen(tail);
    total = parts[0] + parts[1] + parts[2];
    while (received < total) {
        if (written < total) {
            size_t skip = written;
            cnt = 0;
            for (k = 0; k < 3; k++) {
                if (skip >= parts[k]) {
                    skip -= parts[k];
                    continue;
                }
                iov[cnt].iov_base = (char *) bases[k] + skip;
                iov[cnt].iov_len = parts[k] - skip;
                skip = 0;
                cnt++;
            }
            n = mg_tls_writev(l.c, iov, cnt);
            if (n > 0) {
                if ((size_t) n < total - written) partial++;
                written += (size_t) n;
            } else if (n < 0 && errno == EAGAIN) {
                eagain_w++;
                if (!mg_tls_want_write(l.c)) eagain_want = 0;
            } else {
                break;
            }
        }
        for (;;) {
            n = mg_tls_recv(l.s, buf, sizeof(buf));
            if (n <= 0) break;
            if (received + (size_t) n > total) { mismatch = 1; break; }
            for (i = 0; i < (size_t) n; i++) {
                size_t pos = received + i;
                char   want = pos < parts[0] ? head[pos]
                            : pos < parts[0] + parts[1]
                                ? body[pos - parts[0]]
                                : tail[pos - parts[0] - parts[1]];
                if (buf[i] != want) mismatch = 1;
            }
            received += (size_t) n;
        }
        if (n < 0 && errno != EAGAIN) break;
        if (mismatch) break;
    }
    is_int(received, total, "1 MB + head + tail received");
    ok(!mismatch, "  in order and intact");
    ok(eagain_w > 0, "  writer saw EAGAIN (%d times)", eagain_w);
    ok(eagain_want, "  and wanted the fd writable each time");
    ok(partial > 0, "  short counts returned (%d)", partial);
    is_int(l.c->wpending, 0, "  nothing held at the end");

    /* the other direction, and close_notify */
    n = mg_tls_writev(l.s, iov, 0);
    is_int(n, 0, "writev of nothing: 0");
    iov[0].iov_base = head;
    iov[0].iov_len = 5;
    mg_tls_writev(l.s, iov, 1);
    n = mg_tls_recv(l.c, buf, sizeof(buf));
    is_int(n, 5, "server to client");
    mg_tls_close_notify(l.c);
    mg_tls_close_notify(l.c);
    n = mg_tls_recv(l.s, buf, sizeof(buf));
    is_int(n, 0, "close_notify: recv returns 0");
    link_close(&l);

    /* plain EOF */
    connect_pair(&l, s, c, "test.local");
    close(l.fd[0]);
    l.fd[0] = -1;
    n = mg_tls_recv(l.s, buf, sizeof(buf));
    is_int(n, 0, "EOF without close_notify: recv returns 0");
    link_close(&l);
}

static void
test_resumption(const mg_conf_t *conf, mg_tls_server_t *s)
{
    char             err[256];
    mg_service_t     svc;
    mg_tls_client_t *c;
    mg_tls_server_t *s2;
    link_t           l;
    size_t           i;

    service(&svc, 1, -1, "ca-1", NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));

    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && !mg_tls_resumed(l.c), "resumption: first is full");
    link_close(&l);
    ok(c->sessions[0].host != NULL && c->sessions[0].sess.ticket_len > 0,
       "  client saved a session with a ticket (%zu bytes)",
       c->sessions[0].sess.ticket_len);

    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && l.src == MG_OK, "second handshake ok");
    ok(mg_tls_resumed(l.c) && mg_tls_resumed(l.s),
       "  resumed on both ends (no certificate sent)");
    is_str(peer_subject(l.c), "CN=test.local", "  peer cert kept in session");
    link_close(&l);

    connect_pair(&l, s, c, "a.wild.local");
    ok(l.crc == MG_OK && !mg_tls_resumed(l.c),
       "another host: its own full handshake");
    link_close(&l);

    /* another snapshot (reload): same process secret, same keys */
    s2 = mg_tls_server_create(conf, cf, err, sizeof(err));
    connect_pair(&l, s2, c, "test.local");
    ok(l.crc == MG_OK && mg_tls_resumed(l.s),
       "a ticket from one server object resumes on another");
    link_close(&l);
    mg_tls_server_free(s2);

    /* a tampered ticket: full handshake, no error */
    for (i = 0; i < MG_TLS_CLIENT_SESSIONS; i++) {
        if (c->sessions[i].host && strcmp(c->sessions[i].host, "test.local") == 0)
            c->sessions[i].sess.ticket[40] ^= 1;
    }
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && l.src == MG_OK && !mg_tls_resumed(l.s)
       && !mg_tls_resumed(l.c),
       "tampered ticket: full handshake instead (both ends agree)");
    link_close(&l);
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && mg_tls_resumed(l.s), "  and the new one resumes");
    link_close(&l);

    /* key rotation: a ticket of the previous period still opens, one of
     * two periods ago does not */
    mg_tls_ticket_skew = MG_TLS_TICKET_PERIOD;
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && mg_tls_resumed(l.s),
       "ticket from the previous key period: resumed");
    link_close(&l);
    mg_tls_ticket_skew = 2 * MG_TLS_TICKET_PERIOD;
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && !mg_tls_resumed(l.s),
       "ticket from two periods ago: full handshake");
    link_close(&l);
    mg_tls_ticket_skew = 0;
    /* the client saved the new session, issued "in the future": its
     * start is later than now, which must not resume either */
    connect_pair(&l, s, c, "test.local");
    ok(l.crc == MG_OK && !mg_tls_resumed(l.s),
       "ticket whose session starts in the future: full handshake");
    link_close(&l);

    /* forked workers: each reseeds, both accept each other's tickets */
    {
        mg_tls_client_t *c2 = mg_tls_client_create(cf, &svc, err, sizeof(err));
        int              round, status, res[2] = { -1, -1 }, crc[2];
        pid_t            pid;

        for (round = 0; round < 2; round++) {
            link_open(&l);
            pid = fork();
            if (pid == 0) {
                mg_tls_conn_t *t;
                close(l.fd[0]);
                mg_tls_after_fork();
                t = mg_tls_conn_server(s, l.fd[1]);
                int rc = drive(t, l.fd[1]);
                _exit(rc != MG_OK ? 1 : 10 + mg_tls_resumed(t));
            }
            close(l.fd[1]);
            l.fd[1] = -1;
            l.c = mg_tls_conn_client(c2, l.fd[0], "test.local");
            crc[round] = drive(l.c, l.fd[0]);
            waitpid(pid, &status, 0);
            res[round] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            link_close(&l);
        }
        ok(crc[0] == MG_OK && res[0] == 10, "worker 1: full handshake");
        ok(crc[1] == MG_OK && res[1] == 11,
           "worker 2 resumes worker 1's ticket");
        mg_tls_client_free(c2);
    }
    mg_tls_client_free(c);
}

static void
test_rng_fork(void)
{
    unsigned char a[16], b[16], mine[16];
    int           p[2][2], k;
    pid_t         pid[2];

    for (k = 0; k < 2; k++) {
        if (pipe(p[k]) != 0) return;
        pid[k] = fork();
        if (pid[k] == 0) {
            unsigned char out[16];
            if (k == 0) mg_tls_after_fork();   /* the other relies on the
                                                  pid check */
            mg_tls_rng(NULL, out, sizeof(out));
            if (write(p[k][1], out, sizeof(out)) != (ssize_t) sizeof(out))
                _exit(1);
            _exit(0);
        }
        close(p[k][1]);
    }
    mg_tls_rng(NULL, mine, sizeof(mine));
    ok(read(p[0][0], a, 16) == 16 && read(p[1][0], b, 16) == 16,
       "rng: two forked children answered");
    ok(memcmp(a, b, 16) != 0 && memcmp(a, mine, 16) != 0
       && memcmp(b, mine, 16) != 0,
       "rng: children and parent draw different bytes after fork");
    for (k = 0; k < 2; k++) {
        close(p[k][0]);
        waitpid(pid[k], NULL, 0);
    }
}

static void
test_default_cert(void)
{
    char             err[512], path[256], first[4096];
    mg_conf_t        conf;
    mg_tls_server_t *s;
    mg_tls_client_t *c;
    mg_service_t     svc;
    struct stat      st;
    link_t           l;
    char            *text;

    memset(&conf, 0, sizeof(conf));
    conf.prefix = tmpdir2;
    s = mg_tls_server_create(&conf, NULL, err, sizeof(err));
    ok(s != NULL, "default certificate generated (%s)", s ? "ok" : err);
    if (s == NULL) return;
    snprintf(path, sizeof(path), "%s/ssl/moongate-default.key", tmpdir2);
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
       "  key file mode 0600");
    snprintf(path, sizeof(path), "%s/ssl/moongate-default.crt", tmpdir2);
    text = slurp(path);
    ok(text != NULL && contains(text, "BEGIN CERTIFICATE"), "  cert file");
    snprintf(first, sizeof(first), "%s", text ? text : "");

    service(&svc, 0, -1, NULL, NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    connect_pair(&l, s, c, "anything.example");
    ok(l.crc == MG_OK, "  serves it");
    ok(contains(peer_subject(l.c), "CN=localhost"), "  CN=localhost: %s",
       peer_subject(l.c));
    {
        const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&l.c->ssl);
        ok(crt != NULL && mbedtls_pk_get_type(&crt->pk) == MBEDTLS_PK_ECKEY
           && crt->subject_alt_names.buf.len == 9
           && memcmp(crt->subject_alt_names.buf.p, "localhost", 9) == 0,
           "  ECDSA, SAN localhost");
        ok(crt != NULL && mbedtls_x509_time_is_past(&crt->valid_from)
           && mbedtls_x509_time_is_future(&crt->valid_to),
           "  valid now");
    }
    link_close(&l);
    mg_tls_server_free(s);

    s = mg_tls_server_create(&conf, NULL, err, sizeof(err));
    text = slurp(path);
    ok(s != NULL && text != NULL && strcmp(text, first) == 0,
       "second start reuses the stored certificate");
    mg_tls_server_free(s);

    snprintf(path, sizeof(path), "%s/ssl/moongate-default.key", tmpdir2);
    unlink(path);
    s = mg_tls_server_create(&conf, NULL, err, sizeof(err));
    snprintf(path, sizeof(path), "%s/ssl/moongate-default.crt", tmpdir2);
    text = slurp(path);
    ok(s != NULL && text != NULL && strcmp(text, first) != 0,
       "key missing: a new pair is generated");
    mg_tls_server_free(s);
    mg_tls_client_free(c);
}

static void
test_bad_peers(mg_tls_server_t *s, mg_tls_client_t *c)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    static const unsigned char junk[] = { 0x16, 0x03, 0x01, 0x00, 0x05,
                                          1, 2, 3, 4, 5 };
    char   buf[64];
    link_t l;
    int    rc;

    link_open(&l);
    l.s = mg_tls_conn_server(s, l.fd[1]);
    ok(write(l.fd[0], http, sizeof(http) - 1) > 0, "plain HTTP sent");
    rc = mg_tls_handshake(l.s);
    ok(rc == MG_ERROR && mg_tls_error(l.s) == mg_tls_err_plain_http,
       "plain HTTP on the TLS port: MG_ERROR at once, %s", mg_tls_error(l.s));
    ok(mg_tls_handshake(l.s) == MG_ERROR, "  and stays failed");
    ok(mg_tls_recv(l.s, buf, sizeof(buf)) == -1 && errno == EIO,
       "  recv after failure: EIO");
    link_close(&l);

    link_open(&l);
    l.s = mg_tls_conn_server(s, l.fd[1]);
    ok(write(l.fd[0], junk, sizeof(junk)) > 0, "garbage handshake sent");
    rc = mg_tls_handshake(l.s);
    ok(rc == MG_ERROR && contains(mg_tls_error(l.s), "handshake failed"),
       "  garbage: %s", mg_tls_error(l.s));
    link_close(&l);

    link_open(&l);
    l.s = mg_tls_conn_server(s, l.fd[1]);
    l.c = mg_tls_conn_client(c, l.fd[0], "test.local");
    mg_tls_handshake(l.c);                  /* ClientHello out */
    ok(mg_tls_handshake(l.s) == MG_AGAIN, "client hello taken");
    close(l.fd[0]);
    l.fd[0] = -1;
    rc = mg_tls_handshake(l.s);
    ok(rc == MG_ERROR && (mg_tls_error(l.s) == mg_tls_err_closed
                          || mg_tls_error(l.s) == mg_tls_err_reset),
       "peer gone mid-handshake: %s", mg_tls_error(l.s));
    link_close(&l);

    link_open(&l);
    l.s = mg_tls_conn_server(s, l.fd[1]);
    close(l.fd[0]);
    l.fd[0] = -1;
    rc = mg_tls_handshake(l.s);
    ok(rc == MG_ERROR && mg_tls_error(l.s) == mg_tls_err_closed,
       "connect and close: %s", mg_tls_error(l.s));
    link_close(&l);
}

static void
test_memory(mg_tls_server_t *s, mg_tls_client_t *c)
{
#if !defined(UNDER_ASAN) && !defined(MG_DEBUG_PALLOC)
    enum { N = 32 };
    static link_t links[N];
    struct mallinfo2 before, after;
    int i, okc = 0;

    /* c holds a session for test.local by now: these resume */
    for (i = 0; i < N; i++) {
        link_open(&links[i]);
    }
    malloc_trim(0);
    before = mallinfo2();
    for (i = 0; i < N; i++) {
        links[i].c = mg_tls_conn_client(c, links[i].fd[0], "test.local");
        links[i].s = mg_tls_conn_server(s, links[i].fd[1]);
        pump(&links[i]);
        okc += links[i].crc == MG_OK && links[i].src == MG_OK;
    }
    after = mallinfo2();
    is_int(okc, N, "memory: %d connections established", N);
    printf("# per established TLS connection (client + server end): %zu "
           "bytes, i.e. ~%zu per end; sizeof(mg_tls_conn_t) = %zu; record "
           "buffers %d + %d\n",
           (after.uordblks - before.uordblks) / N,
           (after.uordblks - before.uordblks) / N / 2, sizeof(mg_tls_conn_t),
           (int) MBEDTLS_SSL_IN_BUFFER_LEN, (int) MBEDTLS_SSL_OUT_BUFFER_LEN);
    ok((after.uordblks - before.uordblks) / N / 2 < 48 * 1024,
       "  under 48 KB per end");
    for (i = 0; i < N; i++) {
        link_close(&links[i]);
    }

    /* handshake cost, both ends in this process (not a benchmark) */
    {
        struct timespec t0, t1;
        double          full, resumed;
        link_t          l;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (i = 0; i < N; i++) {
            connect_pair(&l, s, c, NULL);       /* no host: no session */
            link_close(&l);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        full = ((t1.tv_sec - t0.tv_sec) * 1e3
                + (t1.tv_nsec - t0.tv_nsec) / 1e6) / N;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (i = 0; i < N; i++) {
            connect_pair(&l, s, c, "test.local");
            link_close(&l);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        resumed = ((t1.tv_sec - t0.tv_sec) * 1e3
                   + (t1.tv_nsec - t0.tv_nsec) / 1e6) / N;
        printf("# handshake, client + server CPU in one process: full "
               "ECDSA P-256 + X25519 %.2f ms, resumed %.2f ms\n", full,
               resumed);
    }
#else
    (void) s;
    (void) c;
    printf("# memory measurement skipped under the sanitizer/debug pool\n");
#endif
}

int
main(void)
{
    char             err[512], crt_path[128], key_path[128];
    unsigned char    san[128];
    size_t           sanlen;
    static const unsigned char lo[4] = { 127, 0, 0, 1 };
    mg_conf_t        conf;
    mg_tls_server_t *s;
    mg_tls_client_t *c;
    mg_service_t     svc;
    char            *log;
    int              rc = 0;

    strcpy(tmpdir, "/tmp/mg-tls-XXXXXX");
    strcpy(tmpdir2, "/tmp/mg-tls-XXXXXX");
    if (mkdtemp(tmpdir) == NULL || mkdtemp(tmpdir2) == NULL) {
        return 1;
    }
    snprintf(logpath, sizeof(logpath), "%s/error.log", tmpdir);
    mg_log_open(logpath, MG_LOG_INFO);

    ok(mg_tls_rng_init(err, sizeof(err)) == MG_OK, "rng seeded");
    rc |= make_cert(&ca, "Test CA", 1, NULL, NULL, 0);
    rc |= make_cert(&ca2, "Other CA", 1, NULL, NULL, 0);
    rc |= make_cert(&inter, "Test Intermediate", 1, &ca, NULL, 0);
    sanlen = san_der(san, "test.local", NULL, lo);
    rc |= make_cert(&srv, "test.local", 0, &ca, san, sanlen);
    sanlen = san_der(san, "*.wild.local", "suffix.com", NULL);
    rc |= make_cert(&wild, "*.wild.local", 0, &ca, san, sanlen);
    sanlen = san_der(san, "deep.local", NULL, NULL);
    rc |= make_cert(&deep, "deep.local", 0, &inter, san, sanlen);
    rc |= make_cert(&cli, "client.local", 0, &ca, NULL, 0);
    rc |= make_cert(&other, "other", 0, &ca2, NULL, 0);
    ok(rc == 0, "test certificates generated");
    snprintf(deep_chain, sizeof(deep_chain), "%s%s", deep.crt, inter.crt);

    build_config();
    snprintf(crt_path, sizeof(crt_path), "%s/server.crt", tmpdir);
    snprintf(key_path, sizeof(key_path), "%s/server.key", tmpdir);
    write_file(crt_path, srv.crt);
    write_file(key_path, srv.keypem);

    memset(&conf, 0, sizeof(conf));
    conf.prefix = tmpdir;
    conf.ssl_cert = "server.crt";          /* relative to the prefix */
    conf.ssl_cert_key = key_path;

    test_check_cert_key();
    test_config_errors(&conf);

    s = mg_tls_server_create(&conf, cf, err, sizeof(err));
    ok(s != NULL, "server object: %s", s ? "ok" : err);
    if (s == NULL) {
        return done_testing();
    }
    ok(s->nsnis == 5 && s->ncerts == 3, "  5 snis over 3 certificates");

    test_sni_map(s);
    test_handshakes(s);
    test_depth(s);
    test_client_cert(&conf);

    service(&svc, 1, -1, "ca-1", NULL);
    c = mg_tls_client_create(cf, &svc, err, sizeof(err));
    test_io(s, c);
    test_bad_peers(s, c);
    test_memory(s, c);
    mg_tls_client_free(c);

    test_resumption(&conf, s);
    test_rng_fork();
    test_default_cert();
    mg_tls_server_free(s);

    log = slurp(logpath);
    ok(contains(log, "[info]") && contains(log, mg_tls_err_plain_http),
       "log: plain HTTP logged at info");
    ok(contains(log, "certificate verify failed") && contains(log, "svc"),
       "log: upstream verify failure names the service");
    ok(!contains(log, "PRIVATE KEY") && !contains(log, "BEGIN"),
       "log: no key material");

    mg_config_free(cf);
    mbedtls_pk_free(&ca.key);
    mbedtls_pk_free(&ca2.key);
    mbedtls_pk_free(&inter.key);
    mbedtls_pk_free(&srv.key);
    mbedtls_pk_free(&wild.key);
    mbedtls_pk_free(&deep.key);
    mbedtls_pk_free(&cli.key);
    mbedtls_pk_free(&other.key);
    {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf %s %s", tmpdir, tmpdir2);
        if (system(cmd) != 0) {
            printf("# could not remove %s %s\n", tmpdir, tmpdir2);
        }
    }
    return done_testing();
}
