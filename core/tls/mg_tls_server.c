/*
 * mg_tls_server.c -- the server object of one config snapshot: the mbedTLS
 * server config, the certificates named by SNIs, the default certificate,
 * the SNI map and session tickets.
 *
 * The SNI map is a sorted array of lower-cased names searched with
 * bsearch: Kong's four lookups (exact, "*.rest", "prefix.*", "*") are four
 * exact lookups, and a config snapshot never changes after it is built.
 * Rejected: a hash table -- more code for a search that runs once per
 * handshake, next to a signature that costs a thousand times more.
 *
 * Session tickets use our own mbedTLS ticket callbacks instead of
 * mbedtls_ssl_ticket: 2.28 rotates that module's keys with fresh random
 * bytes in each process, so workers forked from one master would stop
 * accepting each other's tickets at the first rotation, and a reload would
 * invalidate every ticket.  Here a process-wide secret is drawn once (in
 * the master, before fork) and the key of each 12-hour period is derived
 * from it with HMAC-SHA256; a ticket is accepted with the key of its
 * period or the one before, and for at most 24 hours.  Format:
 * key name (16) | IV (12) | length (2) | AES-256-GCM(session) | tag (16),
 * the first 30 bytes authenticated as additional data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "../base/mg_log.h"
#include "mg_tls_int.h"

#define MG_TLS_TICKET_PERIOD    (12 * 3600)
#define MG_TLS_TICKET_LIFETIME  (24 * 3600)
#define MG_TLS_TICKET_HDR       (16 + 12 + 2)
#define MG_TLS_TICKET_TAG       16

static unsigned char mg_tls_ticket_secret[32];
static int           mg_tls_ticket_secret_ready;
static time_t        mg_tls_ticket_skew;     /* tests move the clock */

static time_t
mg_tls_ticket_now(void)
{
    return time(NULL) + mg_tls_ticket_skew;
}

/* ------------------------------------------------------------------ */
/* SNI map                                                             */

static int
mg_tls_sni_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, mg_min(alen, blen));

    if (r != 0) {
        return r;
    }
    return alen < blen ? -1 : alen > blen;
}

static int
mg_tls_sni_sort(const void *a, const void *b)
{
    const mg_tls_sni_entry_t *x = a, *y = b;
    return mg_tls_sni_cmp(x->name, x->len, y->name, y->len);
}

static mg_tls_cert_t *
mg_tls_server_lookup(const mg_tls_server_t *s, const char *name, size_t len)
{
    size_t lo = 0, hi = s->nsnis;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mg_tls_sni_entry_t *e = &s->snis[mid];
        int r = mg_tls_sni_cmp(name, len, e->name, e->len);
        if (r == 0) {
            return e->cert;
        }
        if (r < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

/*
 * Kong's order for a lower-cased SNI: the name, "*.b.c" for "a.b.c" (the
 * first label replaced when two more follow), "a.b.*" (the last label
 * replaced), then "*".  NULL: serve the default certificate.
 */
static mg_tls_cert_t *
mg_tls_server_find(const mg_tls_server_t *s, const char *name, size_t len)
{
    char           buf[260];
    const char    *dot, *last;
    mg_tls_cert_t *c;
    size_t         n;

    if (s->nsnis == 0 || len == 0 || len > 253) {
        return NULL;
    }
    c = mg_tls_server_lookup(s, name, len);
    if (c != NULL) {
        return c;
    }
    dot = memchr(name, '.', len);
    if (dot != NULL && dot > name
        && memchr(dot + 1, '.', len - (size_t) (dot + 1 - name)) != NULL)
    {
        n = len - (size_t) (dot - name);
        buf[0] = '*';
        memcpy(buf + 1, dot, n);
        c = mg_tls_server_lookup(s, buf, n + 1);
        if (c != NULL) {
            return c;
        }
    }
    last = memrchr(name, '.', len);
    if (last != NULL && last > name && last + 1 < name + len) {
        n = (size_t) (last + 1 - name);
        memcpy(buf, name, n);
        buf[n] = '*';
        c = mg_tls_server_lookup(s, buf, n + 1);
        if (c != NULL) {
            return c;
        }
    }
    return mg_tls_server_lookup(s, "*", 1);
}

/* mbedTLS's SNI callback: remember the name, pick the certificate. */
static int
mg_tls_server_sni(void *p, mbedtls_ssl_context *ssl, const unsigned char *name,
                  size_t len)
{
    mg_tls_server_t *s = p;
    mg_tls_conn_t   *t = mg_tls_conn_of(ssl);
    mg_tls_cert_t   *c;
    size_t           i;
    int              k;

    if (len > 0 && name[len - 1] == '.') {
        len--;                  /* "example.com." is "example.com" */
    }
    if (len == 0 || len > 253) {
        return 0;               /* default certificate */
    }
    for (i = 0; i < len; i++) {
        unsigned char ch = name[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            return 0;           /* not a host name: default, no SNI */
        }
        t->sni[i] = (char) (ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
    }
    t->sni[len] = '\0';
    t->sni_len = (uint8_t) len;

    c = mg_tls_server_find(s, t->sni, len);
    if (c == NULL) {
        return 0;
    }
    for (k = 0; k < c->npairs; k++) {
        if (mbedtls_ssl_set_hs_own_cert(ssl, &c->pairs[k].crt,
                                        &c->pairs[k].key) != 0)
        {
            return -1;          /* ENOMEM: fail this handshake */
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Session tickets                                                     */

static int
mg_tls_ticket_derive(const char *label, uint64_t period, unsigned char *out)
{
    unsigned char in[32];
    size_t        n = strlen(label);
    int           i;

    memcpy(in, label, n);
    for (i = 0; i < 8; i++) {
        in[n + (size_t) i] = (unsigned char) (period >> (56 - 8 * i));
    }
    return mbedtls_md_hmac(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                           mg_tls_ticket_secret, sizeof(mg_tls_ticket_secret),
                           in, n + 8, out);
}

/* Make ticket[0] the key of now's period and ticket[1] the one before. */
static int
mg_tls_ticket_keys(mg_tls_server_t *s, time_t now)
{
    unsigned char out[32];
    uint64_t      period = (uint64_t) now / MG_TLS_TICKET_PERIOD;
    int           k, ret = 0;

    if (s->ticket_ready && s->ticket_period == period) {
        return 0;
    }
    for (k = 0; k < 2 && ret == 0; k++) {
        ret = mg_tls_ticket_derive("mg-ticket-name", period - (uint64_t) k,
                                   out);
        memcpy(s->ticket[k].name, out, sizeof(s->ticket[k].name));
        if (ret == 0) {
            ret = mg_tls_ticket_derive("mg-ticket-key", period - (uint64_t) k,
                                       out);
        }
        if (ret == 0) {
            ret = mbedtls_gcm_setkey(&s->ticket[k].gcm, MBEDTLS_CIPHER_ID_AES,
                                     out, 256);
        }
    }
    mbedtls_platform_zeroize(out, sizeof(out));
    s->ticket_ready = ret == 0;
    s->ticket_period = period;
    return ret;
}

static int
mg_tls_ticket_write(void *p, const mbedtls_ssl_session *session,
                    unsigned char *start, const unsigned char *end,
                    size_t *tlen, uint32_t *lifetime)
{
    mg_tls_server_t *s = p;
    unsigned char   *state = start + MG_TLS_TICKET_HDR;
    size_t           clear_len;
    int              ret;

    *tlen = 0;
    if (end - start < MG_TLS_TICKET_HDR + MG_TLS_TICKET_TAG) {
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    }
    ret = mg_tls_ticket_keys(s, mg_tls_ticket_now());
    if (ret != 0) {
        return ret;
    }
    memcpy(start, s->ticket[0].name, 16);
    ret = mg_tls_rng(NULL, start + 16, 12);
    if (ret != 0) {
        return ret;
    }
    ret = mbedtls_ssl_session_save(session, state,
                                   (size_t) (end - state) - MG_TLS_TICKET_TAG,
                                   &clear_len);
    if (ret != 0) {
        return ret;
    }
    if (clear_len > 0xffff) {
        return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    }
    start[28] = (unsigned char) (clear_len >> 8);
    start[29] = (unsigned char) clear_len;
    ret = mbedtls_gcm_crypt_and_tag(&s->ticket[0].gcm, MBEDTLS_GCM_ENCRYPT,
                                    clear_len, start + 16, 12, start,
                                    MG_TLS_TICKET_HDR, state, state,
                                    MG_TLS_TICKET_TAG, state + clear_len);
    if (ret != 0) {
        return ret;
    }
    *tlen = MG_TLS_TICKET_HDR + clear_len + MG_TLS_TICKET_TAG;
    *lifetime = MG_TLS_TICKET_LIFETIME;
    return 0;
}

/* Any error here only means "full handshake": mbedTLS ignores it. */
static int
mg_tls_ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf,
                    size_t len)
{
    mg_tls_server_t *s = p;
    unsigned char   *state = buf + MG_TLS_TICKET_HDR;
    size_t           enc_len;
    time_t           now = mg_tls_ticket_now();
    int              k, ret;

    if (len < MG_TLS_TICKET_HDR + MG_TLS_TICKET_TAG) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    }
    enc_len = ((size_t) buf[28] << 8) | buf[29];
    if (len != MG_TLS_TICKET_HDR + enc_len + MG_TLS_TICKET_TAG) {
        return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    }
    ret = mg_tls_ticket_keys(s, now);
    if (ret != 0) {
        return ret;
    }
    for (k = 0; k < 2; k++) {
        if (memcmp(buf, s->ticket[k].name, 16) == 0) {
            break;
        }
    }
    if (k == 2) {
        return MBEDTLS_ERR_SSL_INVALID_MAC;   /* other key or too old */
    }
    ret = mbedtls_gcm_auth_decrypt(&s->ticket[k].gcm, enc_len, buf + 16, 12,
                                   buf, MG_TLS_TICKET_HDR, state + enc_len,
                                   MG_TLS_TICKET_TAG, state, state);
    if (ret != 0) {
        return MBEDTLS_ERR_SSL_INVALID_MAC;
    }
    ret = mbedtls_ssl_session_load(session, state, enc_len);
    mbedtls_platform_zeroize(state, enc_len);
    if (ret != 0) {
        return ret;
    }
    if (now < session->start || now - session->start > MG_TLS_TICKET_LIFETIME)
    {
        return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Create and free                                                     */

/* Parse one certificate entity (cert, and cert_alt when both alt fields
 * are given) into c; messages name the sni that led to it and its id. */
static int
mg_tls_server_cert(mg_tls_cert_t *c, const mg_certificate_t *e,
                   const mg_sni_t *sni, char *err, size_t errlen)
{
    char what[200];

    c->src = e;
    snprintf(what, sizeof(what), "sni %.*s: certificate %.*s",
             (int) mg_min(sni->name.len, 64), sni->name.data,
             (int) mg_min(e->id.len, 64), e->id.data);
    if (mg_tls_cert_pair_parse(&c->pairs[0], e->cert, e->key, what, err,
                               errlen) != MG_OK)
    {
        return MG_ERROR;
    }
    c->npairs = 1;
    if (e->cert_alt.len > 0 || e->key_alt.len > 0) {
        if (e->cert_alt.len == 0 || e->key_alt.len == 0) {
            snprintf(err, errlen, "%s: cert_alt and key_alt go together",
                     what);
            return MG_ERROR;
        }
        strncat(what, " (cert_alt)", sizeof(what) - strlen(what) - 1);
        if (mg_tls_cert_pair_parse(&c->pairs[1], e->cert_alt, e->key_alt,
                                   what, err, errlen) != MG_OK)
        {
            return MG_ERROR;
        }
        c->npairs = 2;
    }
    return MG_OK;
}

static int
mg_tls_server_snis(mg_tls_server_t *s, const mg_config_t *cf, char *err,
                   size_t errlen)
{
    size_t i, j, k;

    s->certs = calloc(cf->snis_n, sizeof(mg_tls_cert_t));
    s->snis = calloc(cf->snis_n, sizeof(mg_tls_sni_entry_t));
    if (s->certs == NULL || s->snis == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return MG_ERROR;
    }
    for (i = 0; i < cf->snis_n; i++) {
        const mg_sni_t     *sni = cf->snis[i];
        mg_tls_sni_entry_t *e = &s->snis[s->nsnis];
        mg_str_t            name = sni->name;

        if (name.len == 0 || name.len > 253) {
            snprintf(err, errlen, "sni \"%.*s\": invalid name",
                     (int) mg_min(name.len, 64), name.data);
            return MG_ERROR;
        }
        if (sni->certificate == NULL) {
            snprintf(err, errlen, "sni %.*s: no certificate", (int) name.len,
                     name.data);
            return MG_ERROR;
        }
        for (j = 0; j < s->ncerts; j++) {
            if (s->certs[j].src == sni->certificate) {
                break;
            }
        }
        if (j == s->ncerts) {
            for (k = 0; k < MG_TLS_MAX_PAIRS; k++) {
                mg_tls_pair_init(&s->certs[j].pairs[k]);
            }
            s->ncerts++;
            if (mg_tls_server_cert(&s->certs[j], sni->certificate, sni, err,
                                   errlen) != MG_OK)
            {
                return MG_ERROR;
            }
        }
        e->name = malloc(name.len + 1);
        if (e->name == NULL) {
            snprintf(err, errlen, "tls: out of memory");
            return MG_ERROR;
        }
        for (k = 0; k < name.len; k++) {
            unsigned char ch = (unsigned char) name.data[k];
            e->name[k] = (char) (ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
        }
        e->name[name.len] = '\0';
        e->len = name.len;
        e->cert = &s->certs[j];
        s->nsnis++;
    }
    qsort(s->snis, s->nsnis, sizeof(mg_tls_sni_entry_t), mg_tls_sni_sort);
    for (i = 1; i < s->nsnis; i++) {
        if (mg_tls_sni_sort(&s->snis[i - 1], &s->snis[i]) == 0) {
            snprintf(err, errlen, "sni %s: name used more than once",
                     s->snis[i].name);
            return MG_ERROR;
        }
    }
    return MG_OK;
}

mg_tls_server_t *
mg_tls_server_create(const mg_conf_t *conf, const mg_config_t *cf, char *err,
                     size_t errlen)
{
    mg_tls_server_t *s;
    char             buf[128];
    int              ret, k;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    s->refs = 1;                /* the caller's */
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_gcm_init(&s->ticket[0].gcm);
    mbedtls_gcm_init(&s->ticket[1].gcm);
    for (k = 0; k < MG_TLS_MAX_PAIRS; k++) {
        mg_tls_pair_init(&s->dflt.pairs[k]);
    }

    if (mg_tls_rng_init(err, errlen) != MG_OK) {
        goto failed;
    }
    if (!mg_tls_ticket_secret_ready) {
        if (mg_tls_rng(NULL, mg_tls_ticket_secret,
                       sizeof(mg_tls_ticket_secret)) != 0)
        {
            snprintf(err, errlen, "tls: no random bytes for ticket keys");
            goto failed;
        }
        mg_tls_ticket_secret_ready = 1;
    }

    ret = mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                      MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) {
        snprintf(err, errlen, "tls: server config: %s",
                 mg_tls_strerror(ret, buf, sizeof(buf)));
        goto failed;
    }
    mbedtls_ssl_conf_rng(&s->conf, mg_tls_rng, NULL);
    mbedtls_ssl_conf_min_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&s->conf, mg_tls_ciphersuites);
    mbedtls_ssl_conf_curves(&s->conf, mg_tls_curves);
    (void) mbedtls_ssl_conf_alpn_protocols(&s->conf, mg_tls_alpn);
    mbedtls_ssl_conf_sni(&s->conf, mg_tls_server_sni, s);
    mbedtls_ssl_conf_session_tickets_cb(&s->conf, mg_tls_ticket_write,
                                        mg_tls_ticket_parse, s);

    if (mg_tls_cert_default(conf, &s->dflt, err, errlen) != MG_OK) {
        goto failed;
    }
    for (k = 0; k < s->dflt.npairs; k++) {
        ret = mbedtls_ssl_conf_own_cert(&s->conf, &s->dflt.pairs[k].crt,
                                        &s->dflt.pairs[k].key);
        if (ret != 0) {
            snprintf(err, errlen, "tls: default certificate: %s",
                     mg_tls_strerror(ret, buf, sizeof(buf)));
            goto failed;
        }
    }
    if (cf != NULL && cf->snis_n > 0
        && mg_tls_server_snis(s, cf, err, errlen) != MG_OK)
    {
        goto failed;
    }
    if (mg_tls_ticket_keys(s, time(NULL)) != 0) {
        snprintf(err, errlen, "tls: cannot derive ticket keys");
        goto failed;
    }
    return s;

failed:
    mg_tls_server_free(s);
    return NULL;
}

mg_tls_server_t *
mg_tls_admin_server_create(const mg_conf_t *conf, char *err, size_t errlen)
{
    mg_conf_t        c = *conf;
    mg_tls_server_t *s;
    char             path[PATH_MAX], buf[128];
    int              ret;

    if (conf->admin_ssl_cert != NULL) {
        c.ssl_cert = conf->admin_ssl_cert;
        c.ssl_cert_key = conf->admin_ssl_cert_key;
    }
    s = mg_tls_server_create(&c, NULL, err, errlen);
    if (s == NULL || conf->admin_ssl_client_certificate == NULL
        || strcmp(conf->admin_ssl_verify_client, "off") == 0)
    {
        return s;
    }
    mbedtls_x509_crt_init(&s->client_ca);
    s->has_client_ca = 1;
    mg_conf_path(conf, conf->admin_ssl_client_certificate, path,
                 sizeof(path));
    ret = mbedtls_x509_crt_parse_file(&s->client_ca, path);
    if (ret != 0) {
        snprintf(err, errlen, "tls: admin_ssl_client_certificate %s: %s",
                 path, ret < 0 ? mg_tls_strerror(ret, buf, sizeof(buf))
                               : "some certificates did not parse");
        mg_tls_server_free(s);
        return NULL;
    }
    /* optional at the TLS level: a client without a certificate gets
     * nginx's 400, not a handshake alert it cannot explain */
    mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
    mbedtls_ssl_conf_ca_chain(&s->conf, &s->client_ca, NULL);
    return s;
}

int
mg_tls_conn_client_cert(const mg_tls_conn_t *t)
{
    if (mbedtls_ssl_get_peer_cert(&t->ssl) == NULL) {
        return 1;
    }
    return mbedtls_ssl_get_verify_result(&t->ssl) == 0 ? 0 : 2;
}

void
mg_tls_server_free(mg_tls_server_t *s)
{
    size_t i;

    if (s == NULL || --s->refs > 0) {
        return;
    }
    if (s->has_client_ca) {
        mbedtls_x509_crt_free(&s->client_ca);
    }
    mbedtls_ssl_config_free(&s->conf);
    mg_tls_cert_free(&s->dflt);
    for (i = 0; i < s->ncerts; i++) {
        mg_tls_cert_free(&s->certs[i]);
    }
    free(s->certs);
    for (i = 0; i < s->nsnis; i++) {
        free(s->snis[i].name);
    }
    free(s->snis);
    mbedtls_gcm_free(&s->ticket[0].gcm);
    mbedtls_gcm_free(&s->ticket[1].gcm);
    mbedtls_platform_zeroize(s, sizeof(*s));
    free(s);
}
