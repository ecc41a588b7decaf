/*
 * mg_tls_client.c -- the client object for one upstream TLS setting (a
 * service): trust anchors, verification depth, client certificate, and a
 * small per-host cache of sessions for resumption.
 *
 * The system CA bundle is parsed once per process (~140 certificates, tens
 * of milliseconds and a few hundred KB) and shared by every client object;
 * it lives until the process exits.  A service's own ca_certificates
 * replace it, as in Kong, and are parsed into the object.
 *
 * Verification is mbedTLS's chain and name check plus a callback of ours
 * for two things 2.28 lacks: a depth limit with OpenSSL's meaning (Kong's
 * tls_verify_depth is nginx's proxy_ssl_verify_depth) and IP literals,
 * which mbedTLS 2.28 cannot match against iPAddress SANs.
 *
 * Sessions: after a full handshake the session (with its ticket) is saved
 * under the host name; the next connection to that host through this
 * object offers it.  Eight hosts per object, replaced round-robin: a
 * service has one host, an upstream entity a handful of targets.  Workers
 * each fill their own copy after fork.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../base/mg_log.h"
#include "mg_tls_int.h"

/*
 * Upstreams are not all modern: after the server's ECDHE AEAD list, allow
 * finite-field DHE and RSA key exchange with AES-GCM, still AEAD only.
 * The server picks; Finished protects the choice against downgrades.
 */
const int mg_tls_client_ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_DHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_DHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_RSA_WITH_AES_256_GCM_SHA384,
    0
};

static const char *mg_tls_system_ca_paths[] = {
    "/etc/ssl/certs/ca-certificates.crt",   /* Debian, Ubuntu, Alpine */
    "/etc/pki/tls/certs/ca-bundle.crt",     /* Fedora, RHEL */
    "/etc/ssl/ca-bundle.pem",               /* openSUSE */
    "/etc/ssl/cert.pem",                    /* macOS, BSD */
    NULL
};

static mbedtls_x509_crt mg_tls_system_ca;
static int              mg_tls_system_ca_state;   /* 0 untried, 1 ok */

/* SSL_CERT_FILE (OpenSSL's variable) first, then the usual places. */
static mbedtls_x509_crt *
mg_tls_system_ca_get(char *err, size_t errlen)
{
    const char *env = getenv("SSL_CERT_FILE");
    int         i;

    if (mg_tls_system_ca_state == 1) {
        return &mg_tls_system_ca;
    }
    mbedtls_x509_crt_init(&mg_tls_system_ca);
    if (env != NULL && *env != '\0') {
        /* >= 0: some parsed; a bundle may hold a few odd certificates */
        if (mbedtls_x509_crt_parse_file(&mg_tls_system_ca, env) < 0
            || mg_tls_system_ca.raw.p == NULL)
        {
            mbedtls_x509_crt_free(&mg_tls_system_ca);
            snprintf(err, errlen, "tls: cannot read CA bundle %s "
                     "(SSL_CERT_FILE)", env);
            return NULL;
        }
        mg_tls_system_ca_state = 1;
        return &mg_tls_system_ca;
    }
    for (i = 0; mg_tls_system_ca_paths[i] != NULL; i++) {
        if (mbedtls_x509_crt_parse_file(&mg_tls_system_ca,
                                        mg_tls_system_ca_paths[i]) >= 0
            && mg_tls_system_ca.raw.p != NULL)
        {
            mg_tls_system_ca_state = 1;
            return &mg_tls_system_ca;
        }
        mbedtls_x509_crt_free(&mg_tls_system_ca);
        mbedtls_x509_crt_init(&mg_tls_system_ca);
    }
    snprintf(err, errlen, "tls: no system CA bundle found (tried %s and "
             "others; set SSL_CERT_FILE or the service's ca_certificates)",
             mg_tls_system_ca_paths[0]);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Verification                                                        */

static int
mg_tls_san_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip,
                  size_t len)
{
    const mbedtls_x509_sequence *cur;

    for (cur = &crt->subject_alt_names; cur != NULL; cur = cur->next) {
        if (cur->buf.p != NULL
            && cur->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7)
            && cur->buf.len == len && memcmp(cur->buf.p, ip, len) == 0)
        {
            return 1;
        }
    }
    return 0;
}

/*
 * Called for every certificate of the chain mbedTLS built, trust anchor
 * included (depth 0 is the peer).  OpenSSL's depth N allows N
 * intermediates, i.e. the anchor at depth N + 1 at most.
 */
int
mg_tls_client_verify(void *p, mbedtls_x509_crt *crt, int depth,
                     uint32_t *flags)
{
    mg_tls_conn_t *t = p;

    if (t->depth >= 0 && depth > t->depth + 1) {
        *flags |= MBEDTLS_X509_BADCERT_OTHER;
        t->depth_exceeded = 1;
    }
    if (depth == 0 && t->iplen > 0
        && !mg_tls_san_has_ip(crt, t->ip, t->iplen))
    {
        *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Session cache                                                       */

static mg_tls_session_entry_t *
mg_tls_client_session_find(mg_tls_client_t *c, const mg_tls_conn_t *t)
{
    size_t i;

    for (i = 0; i < MG_TLS_CLIENT_SESSIONS; i++) {
        mg_tls_session_entry_t *e = &c->sessions[i];
        if (e->host != NULL && strlen(e->host) == t->sni_len
            && memcmp(e->host, t->sni, t->sni_len) == 0)
        {
            return e;
        }
    }
    return NULL;
}

static void
mg_tls_client_session_clear(mg_tls_session_entry_t *e)
{
    if (e->host != NULL) {
        free(e->host);
        e->host = NULL;
        mbedtls_ssl_session_free(&e->sess);
    }
}

int
mg_tls_client_session_restore(mg_tls_client_t *c, mg_tls_conn_t *t)
{
    mg_tls_session_entry_t *e = mg_tls_client_session_find(c, t);

    return e != NULL && mbedtls_ssl_set_session(&t->ssl, &e->sess) == 0;
}

void
mg_tls_client_session_save(mg_tls_client_t *c, mg_tls_conn_t *t)
{
    mg_tls_session_entry_t *e = mg_tls_client_session_find(c, t);

    if (e == NULL) {
        e = &c->sessions[c->next_session++ % MG_TLS_CLIENT_SESSIONS];
    }
    mg_tls_client_session_clear(e);
    e->host = malloc(t->sni_len + 1u);
    if (e->host == NULL) {
        return;
    }
    memcpy(e->host, t->sni, t->sni_len);
    e->host[t->sni_len] = '\0';
    mbedtls_ssl_session_init(&e->sess);
    if (mbedtls_ssl_get_session(&t->ssl, &e->sess) != 0) {
        mg_tls_client_session_clear(e);
    }
}

void
mg_tls_client_session_drop(mg_tls_client_t *c, mg_tls_conn_t *t)
{
    mg_tls_session_entry_t *e = mg_tls_client_session_find(c, t);

    if (e != NULL) {
        mg_tls_client_session_clear(e);
    }
}

/* ------------------------------------------------------------------ */
/* Create and free                                                     */

static const mg_ca_certificate_t *
mg_tls_find_ca(const mg_config_t *cf, mg_str_t id)
{
    size_t i;

    for (i = 0; cf != NULL && i < cf->ca_certificates_n; i++) {
        if (mg_str_eq(cf->ca_certificates[i]->id, id)) {
            return cf->ca_certificates[i];
        }
    }
    return NULL;
}

static const mg_certificate_t *
mg_tls_find_cert(const mg_config_t *cf, mg_str_t id)
{
    size_t i;

    for (i = 0; cf != NULL && i < cf->certificates_n; i++) {
        if (mg_str_eq(cf->certificates[i]->id, id)) {
            return cf->certificates[i];
        }
    }
    return NULL;
}

mg_tls_client_t *
mg_tls_client_create(const mg_config_t *cf, const mg_service_t *svc,
                     char *err, size_t errlen)
{
    mg_tls_client_t *c;
    char             buf[128], what[200];
    size_t           i;
    int              ret;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->ca);
    mg_tls_pair_init(&c->pair);
    c->depth = -1;
    c->verify = 1;
    if (svc != NULL) {
        mg_str_t n = svc->name.len > 0 ? svc->name : svc->id;
        snprintf(c->name, sizeof(c->name), "%.*s", (int) n.len, n.data);
        c->verify = svc->tls_verify != 0;
        if (svc->tls_verify_depth >= 0) {
            c->depth = svc->tls_verify_depth;
        }
    } else {
        snprintf(c->name, sizeof(c->name), "-");
    }

    if (mg_tls_rng_init(err, errlen) != MG_OK) {
        goto failed;
    }
    ret = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        snprintf(err, errlen, "service %s: tls config: %s", c->name,
                 mg_tls_strerror(ret, buf, sizeof(buf)));
        goto failed;
    }
    mbedtls_ssl_conf_rng(&c->conf, mg_tls_rng, NULL);
    mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&c->conf, mg_tls_client_ciphersuites);
    mbedtls_ssl_conf_curves(&c->conf, mg_tls_curves);
    (void) mbedtls_ssl_conf_alpn_protocols(&c->conf, mg_tls_alpn);
    mbedtls_ssl_conf_session_tickets(&c->conf,
                                     MBEDTLS_SSL_SESSION_TICKETS_ENABLED);

    /* ca_certificates are checked even with tls_verify off, so a typo
     * shows at load time, not the day verification is turned on. */
    for (i = 0; svc != NULL && i < svc->ca_certificates.n; i++) {
        mg_str_t                   id = svc->ca_certificates.elts[i];
        const mg_ca_certificate_t *ca = mg_tls_find_ca(cf, id);

        if (ca == NULL) {
            snprintf(err, errlen, "service %s: ca_certificates[%zu]: no "
                     "ca_certificate with id %.*s", c->name, i,
                     (int) mg_min(id.len, 64), id.data);
            goto failed;
        }
        snprintf(what, sizeof(what), "service %s: ca_certificate %.*s",
                 c->name, (int) mg_min(id.len, 64), id.data);
        if (mg_tls_cert_parse_crt(&c->ca, ca->cert, what, err, errlen)
            != MG_OK)
        {
            goto failed;
        }
        c->own_ca = 1;
    }
    if (c->verify) {
        mbedtls_x509_crt *anchors = &c->ca;
        if (!c->own_ca) {
            char e2[256];
            anchors = mg_tls_system_ca_get(e2, sizeof(e2));
            if (anchors == NULL) {
                snprintf(err, errlen, "service %s: %s", c->name, e2);
                goto failed;
            }
        }
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&c->conf, anchors, NULL);
    } else {
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
    }

    if (svc != NULL && svc->client_certificate.len > 0) {
        mg_str_t                id = svc->client_certificate;
        const mg_certificate_t *e = mg_tls_find_cert(cf, id);

        if (e == NULL) {
            snprintf(err, errlen, "service %s: client_certificate: no "
                     "certificate with id %.*s", c->name,
                     (int) mg_min(id.len, 64), id.data);
            goto failed;
        }
        snprintf(what, sizeof(what), "service %s: client_certificate %.*s",
                 c->name, (int) mg_min(id.len, 64), id.data);
        if (mg_tls_cert_pair_parse(&c->pair, e->cert, e->key, what, err,
                                   errlen) != MG_OK)
        {
            goto failed;
        }
        c->has_pair = 1;
        ret = mbedtls_ssl_conf_own_cert(&c->conf, &c->pair.crt, &c->pair.key);
        if (ret != 0) {
            snprintf(err, errlen, "%s: %s", what,
                     mg_tls_strerror(ret, buf, sizeof(buf)));
            goto failed;
        }
    }
    return c;

failed:
    mg_tls_client_free(c);
    return NULL;
}

void
mg_tls_client_free(mg_tls_client_t *c)
{
    size_t i;

    if (c == NULL) {
        return;
    }
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->ca);
    mg_tls_pair_free(&c->pair);
    for (i = 0; i < MG_TLS_CLIENT_SESSIONS; i++) {
        mg_tls_client_session_clear(&c->sessions[i]);
    }
    free(c);
}
