/*
 * mg_tls_cluster.c -- TLS between a control plane and its data planes
 * (Kong's hybrid mode, cluster_mtls = shared).
 *
 * Both ends hold one certificate and key (cluster_cert, cluster_cert_key).
 * Identity is equality: the control plane requires a client certificate
 * and accepts the handshake only when the peer's leaf is byte-for-byte
 * our own certificate; the data plane checks the control plane the same
 * way.  The certificate is also the only trust anchor, so mbedTLS sends
 * its subject in CertificateRequest and a client with another cert fails
 * the handshake ("certificate verify failed").  Chain flags (a
 * self-signed leaf without CA:TRUE, expiry of a parent) are replaced by
 * the equality verdict in the verify callback: what proves the peer is
 * the signature over the handshake with the shared key.
 *
 * Rejected: reusing mg_tls_server_create() with an extra flag -- that
 * object serves SNI certificates from the config snapshot and session
 * tickets; a cluster listener has one certificate and must never resume
 * a session without a client certificate check.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../base/mg_log.h"
#include "mg_tls_int.h"

/* mbedTLS calls this for every certificate of the peer's chain, the root
 * first, the leaf (depth 0) last; the final verdict is the OR of all
 * flags.  p: our certificate. */
static int
mg_tls_cluster_verify(void *p, mbedtls_x509_crt *crt, int depth,
                      uint32_t *flags)
{
    const mbedtls_x509_crt *own = p;

    if (depth > 0) {
        *flags = 0;
        return 0;
    }
    if (crt->raw.len == own->raw.len
        && memcmp(crt->raw.p, own->raw.p, own->raw.len) == 0)
    {
        *flags = 0;
    } else {
        *flags |= MBEDTLS_X509_BADCERT_NOT_TRUSTED;
    }
    return 0;
}

mg_tls_server_t *
mg_tls_cluster_server_create(const char *cert_path, const char *key_path,
                             char *err, size_t errlen)
{
    mg_tls_server_t *s;
    char             buf[128];
    int              ret, k;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    s->cluster = 1;
    s->refs = 1;
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_gcm_init(&s->ticket[0].gcm);
    mbedtls_gcm_init(&s->ticket[1].gcm);
    for (k = 0; k < MG_TLS_MAX_PAIRS; k++) {
        mg_tls_pair_init(&s->dflt.pairs[k]);
    }
    if (mg_tls_rng_init(err, errlen) != MG_OK) {
        goto failed;
    }
    if (mg_tls_cert_pair_files(&s->dflt.pairs[0], cert_path, key_path, err,
                               errlen) != MG_OK)
    {
        goto failed;
    }
    s->dflt.npairs = 1;
    ret = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                      MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0) {
        mbedtls_ssl_conf_rng(&s->conf, mg_tls_rng, NULL);
        mbedtls_ssl_conf_min_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_ciphersuites(&s->conf, mg_tls_ciphersuites);
        mbedtls_ssl_conf_curves(&s->conf, mg_tls_curves);
        (void) mbedtls_ssl_conf_alpn_protocols(&s->conf, mg_tls_alpn);
        mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&s->conf, &s->dflt.pairs[0].crt, NULL);
        mbedtls_ssl_conf_verify(&s->conf, mg_tls_cluster_verify,
                                &s->dflt.pairs[0].crt);
        ret = mbedtls_ssl_conf_own_cert(&s->conf, &s->dflt.pairs[0].crt,
                                        &s->dflt.pairs[0].key);
    }
    if (ret != 0) {
        snprintf(err, errlen, "tls: cluster listener: %s",
                 mg_tls_strerror(ret, buf, sizeof(buf)));
        goto failed;
    }
    return s;

failed:
    mg_tls_server_free(s);
    return NULL;
}

mg_tls_client_t *
mg_tls_cluster_client_create(const char *cert_path, const char *key_path,
                             char *err, size_t errlen)
{
    mg_tls_client_t *c;
    char             buf[128];
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
    c->verify = 0;          /* our callback, set on the config, decides */
    snprintf(c->name, sizeof(c->name), "cluster");
    if (mg_tls_rng_init(err, errlen) != MG_OK) {
        goto failed;
    }
    if (mg_tls_cert_pair_files(&c->pair, cert_path, key_path, err, errlen)
        != MG_OK)
    {
        goto failed;
    }
    c->has_pair = 1;
    ret = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT,
                                      MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0) {
        mbedtls_ssl_conf_rng(&c->conf, mg_tls_rng, NULL);
        mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_ciphersuites(&c->conf, mg_tls_ciphersuites);
        mbedtls_ssl_conf_curves(&c->conf, mg_tls_curves);
        (void) mbedtls_ssl_conf_alpn_protocols(&c->conf, mg_tls_alpn);
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&c->conf, &c->pair.crt, NULL);
        mbedtls_ssl_conf_verify(&c->conf, mg_tls_cluster_verify,
                                &c->pair.crt);
        ret = mbedtls_ssl_conf_own_cert(&c->conf, &c->pair.crt, &c->pair.key);
    }
    if (ret != 0) {
        snprintf(err, errlen, "tls: cluster client: %s",
                 mg_tls_strerror(ret, buf, sizeof(buf)));
        goto failed;
    }
    return c;

failed:
    mg_tls_client_free(c);
    return NULL;
}

int
mg_tls_conn_cluster(const mg_tls_conn_t *t)
{
    return t != NULL && t->server != NULL && t->server->cluster;
}
