/*
 * mg_tls_cert.c -- certificates and keys: PEM views parsed into mbedTLS
 * objects, files read from disk, the generated default certificate, and
 * the cert/key check config loaders use.
 *
 * Config strings are views, not C strings, and mbedTLS wants PEM with its
 * terminating NUL counted, so every parse goes through a short-lived
 * NUL-terminated copy; copies of keys are wiped before they are freed.
 * Messages name the object (certificate id, sni, file) and mbedTLS's
 * reason, never a byte of a key.
 *
 * The default certificate (no ssl_cert configured) is ECDSA P-256: key
 * generation takes milliseconds where RSA 2048 takes seconds, and every
 * client this gateway serves speaks ECDSA.  Rejected: regenerating it at
 * every start -- clients that pinned it (curl --cacert in a test script)
 * would break at each restart; Kong keeps it under the prefix too.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/x509_crt.h>

#include "../base/mg_log.h"
#include "mg_tls_int.h"

#define MG_TLS_DEFAULT_CRT   "ssl/moongate-default.crt"
#define MG_TLS_DEFAULT_KEY   "ssl/moongate-default.key"
#define MG_TLS_MAX_FILE      (1024 * 1024)

void
mg_tls_pair_init(mg_tls_pair_t *p)
{
    mbedtls_x509_crt_init(&p->crt);
    mbedtls_pk_init(&p->key);
}

void
mg_tls_pair_free(mg_tls_pair_t *p)
{
    mbedtls_x509_crt_free(&p->crt);
    mbedtls_pk_free(&p->key);
}

void
mg_tls_cert_free(mg_tls_cert_t *c)
{
    int k;

    for (k = 0; k < MG_TLS_MAX_PAIRS; k++) {
        mg_tls_pair_free(&c->pairs[k]);
    }
    c->npairs = 0;
}

/* ------------------------------------------------------------------ */
/* Parsing                                                             */

static unsigned char *
mg_tls_dup0(const char *data, size_t len)
{
    unsigned char *p = malloc(len + 1);

    if (p != NULL) {
        memcpy(p, data, len);
        p[len] = '\0';
    }
    return p;
}

/* Append the certificates of pem (PEM or DER) to crt. */
int
mg_tls_cert_parse_crt(mbedtls_x509_crt *crt, mg_str_t pem, const char *what,
                      char *err, size_t errlen)
{
    unsigned char *buf;
    char           reason[128];
    int            ret;

    if (pem.len == 0) {
        snprintf(err, errlen, "%s: empty certificate", what);
        return MG_ERROR;
    }
    buf = mg_tls_dup0(pem.data, pem.len);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", what);
        return MG_ERROR;
    }
    ret = mbedtls_x509_crt_parse(crt, buf, pem.len + 1);
    free(buf);
    if (ret > 0) {
        snprintf(err, errlen, "%s: %d certificate(s) could not be parsed",
                 what, ret);
        return MG_ERROR;
    }
    if (ret < 0) {
        snprintf(err, errlen, "%s: cannot parse certificate: %s", what,
                 mg_tls_strerror(ret, reason, sizeof(reason)));
        return MG_ERROR;
    }
    return MG_OK;
}

static int
mg_tls_cert_parse_key(mbedtls_pk_context *key, mg_str_t pem, const char *what,
                      char *err, size_t errlen)
{
    unsigned char *buf;
    char           reason[128];
    int            ret;

    if (pem.len == 0) {
        snprintf(err, errlen, "%s: empty key", what);
        return MG_ERROR;
    }
    buf = mg_tls_dup0(pem.data, pem.len);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", what);
        return MG_ERROR;
    }
    ret = mbedtls_pk_parse_key(key, buf, pem.len + 1, NULL, 0);
    mbedtls_platform_zeroize(buf, pem.len + 1);
    free(buf);
    if (ret != 0) {
        snprintf(err, errlen, "%s: cannot parse key: %s", what,
                 mg_tls_strerror(ret, reason, sizeof(reason)));
        return MG_ERROR;
    }
    if (!mbedtls_pk_can_do(key, MBEDTLS_PK_RSA)
        && !mbedtls_pk_can_do(key, MBEDTLS_PK_ECDSA))
    {
        snprintf(err, errlen, "%s: key is neither RSA nor ECDSA", what);
        return MG_ERROR;
    }
    return MG_OK;
}

static int
mg_tls_cert_match(mg_tls_pair_t *p, const char *what, char *err,
                  size_t errlen)
{
    if (mbedtls_pk_check_pair(&p->crt.pk, &p->key) != 0) {
        snprintf(err, errlen, "%s: key does not match the certificate", what);
        return MG_ERROR;
    }
    return MG_OK;
}

int
mg_tls_cert_pair_parse(mg_tls_pair_t *p, mg_str_t cert, mg_str_t key,
                       const char *what, char *err, size_t errlen)
{
    if (mg_tls_cert_parse_crt(&p->crt, cert, what, err, errlen) != MG_OK
        || mg_tls_cert_parse_key(&p->key, key, what, err, errlen) != MG_OK
        || mg_tls_cert_match(p, what, err, errlen) != MG_OK)
    {
        return MG_ERROR;
    }
    return MG_OK;
}

int
mg_tls_check_cert_key(mg_str_t cert_pem, mg_str_t key_pem, char *err,
                      size_t errlen)
{
    mg_tls_pair_t p;
    int           rc;

    mg_tls_pair_init(&p);
    rc = mg_tls_cert_pair_parse(&p, cert_pem, key_pem, "certificate", err,
                                errlen);
    mg_tls_pair_free(&p);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */

static char *
mg_tls_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    char       *buf;
    size_t      got = 0;
    ssize_t     n;
    int         fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || st.st_size > MG_TLS_MAX_FILE) {
        snprintf(err, errlen, "%s: not a readable file under 1 MB", path);
        close(fd);
        return NULL;
    }
    buf = malloc((size_t) st.st_size + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    while (got < (size_t) st.st_size) {
        n = read(fd, buf + got, (size_t) st.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t) n;
    }
    close(fd);
    buf[got] = '\0';
    *len = got;
    return buf;
}

int
mg_tls_cert_pair_files(mg_tls_pair_t *p, const char *cert_path,
                       const char *key_path, char *err, size_t errlen)
{
    char     what[PATH_MAX + 32], *cbuf, *kbuf;
    size_t   clen, klen;
    mg_str_t s;
    int      rc;

    cbuf = mg_tls_read_file(cert_path, &clen, err, errlen);
    if (cbuf == NULL) {
        return MG_ERROR;
    }
    s.data = cbuf;
    s.len = clen;
    snprintf(what, sizeof(what), "certificate file %s", cert_path);
    rc = mg_tls_cert_parse_crt(&p->crt, s, what, err, errlen);
    free(cbuf);
    if (rc != MG_OK) {
        return MG_ERROR;
    }
    kbuf = mg_tls_read_file(key_path, &klen, err, errlen);
    if (kbuf == NULL) {
        return MG_ERROR;
    }
    s.data = kbuf;
    s.len = klen;
    snprintf(what, sizeof(what), "key file %s", key_path);
    rc = mg_tls_cert_parse_key(&p->key, s, what, err, errlen);
    mbedtls_platform_zeroize(kbuf, klen);
    free(kbuf);
    if (rc != MG_OK) {
        return MG_ERROR;
    }
    snprintf(what, sizeof(what), "key file %s (for %s)", key_path, cert_path);
    return mg_tls_cert_match(p, what, err, errlen);
}

/* Write data to path through a temporary file and rename(2). */
static int
mg_tls_write_file(const char *path, const unsigned char *data, size_t len,
                  mode_t mode, char *err, size_t errlen)
{
    char    tmp[PATH_MAX];
    size_t  done = 0;
    ssize_t n;
    int     fd;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long) getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return MG_ERROR;
    }
    while (done < len) {
        n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            snprintf(err, errlen, "cannot write %s: %s", tmp,
                     strerror(n < 0 ? errno : EIO));
            close(fd);
            unlink(tmp);
            return MG_ERROR;
        }
        done += (size_t) n;
    }
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0 || close(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return MG_ERROR;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path,
                 strerror(errno));
        unlink(tmp);
        return MG_ERROR;
    }
    return MG_OK;
}

/* ------------------------------------------------------------------ */
/* The generated default certificate                                   */

static int
mg_tls_cert_generate(unsigned char *crt_pem, size_t crt_size,
                     unsigned char *key_pem, size_t key_size, char *err,
                     size_t errlen)
{
    /* subjectAltName: SEQUENCE { [2] dNSName "localhost" } */
    static const unsigned char san[] = {
        0x30, 0x0b, 0x82, 0x09,
        'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't'
    };
    static const char name[] = "C=US,O=Moongate,OU=Moongate default "
                               "certificate,CN=localhost";
    mbedtls_pk_context     key;
    mbedtls_x509write_cert w;
    mbedtls_mpi            serial;
    unsigned char          sbytes[16];
    char                   nb[20], na[20], reason[128];
    time_t                 now = time(NULL), t;
    struct tm              tm;
    int                    ret;

    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi_init(&serial);

    ret = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret == 0) {
        ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key),
                                  mg_tls_rng, NULL);
    }
    if (ret == 0) {
        ret = mg_tls_rng(NULL, sbytes, sizeof(sbytes));
    }
    if (ret == 0) {
        sbytes[0] = (unsigned char) ((sbytes[0] & 0x7f) | 0x40); /* > 0 */
        ret = mbedtls_mpi_read_binary(&serial, sbytes, sizeof(sbytes));
    }
    if (ret == 0) {
        /* Valid from yesterday (clock skew) for ten years. */
        t = now - 86400;
        gmtime_r(&t, &tm);
        strftime(nb, sizeof(nb), "%Y%m%d%H%M%S", &tm);
        t = now + (time_t) 3650 * 86400;
        gmtime_r(&t, &tm);
        strftime(na, sizeof(na), "%Y%m%d%H%M%S", &tm);

        mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
        mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
        mbedtls_x509write_crt_set_subject_key(&w, &key);
        mbedtls_x509write_crt_set_issuer_key(&w, &key);
        ret = mbedtls_x509write_crt_set_serial(&w, &serial);
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_set_validity(&w, nb, na);
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_set_subject_name(&w, name);
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_set_issuer_name(&w, name);
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_set_basic_constraints(&w, 0, -1);
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_set_key_usage(
            &w, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_set_subject_key_identifier(&w);
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_set_extension(
            &w, MBEDTLS_OID_SUBJECT_ALT_NAME,
            MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0, san,
            sizeof(san));
    }
    if (ret == 0) {
        ret = mbedtls_x509write_crt_pem(&w, crt_pem, crt_size, mg_tls_rng,
                                        NULL);
    }
    if (ret == 0) {
        ret = mbedtls_pk_write_key_pem(&key, key_pem, key_size);
    }
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&w);
    mbedtls_pk_free(&key);
    if (ret != 0) {
        snprintf(err, errlen, "tls: cannot generate the default certificate: "
                 "%s", mg_tls_strerror(ret, reason, sizeof(reason)));
        return MG_ERROR;
    }
    return MG_OK;
}

static int
mg_tls_cert_default_generated(const mg_conf_t *conf, mg_tls_cert_t *c,
                              char *err, size_t errlen)
{
    char           crt_path[PATH_MAX], key_path[PATH_MAX], dir[PATH_MAX];
    unsigned char  crt_pem[2048], key_pem[1024];
    char           what[64];
    int            have_crt, have_key, rc;
    mg_str_t       cs, ks;

    if (conf == NULL || conf->prefix == NULL) {
        snprintf(err, errlen, "tls: no prefix to keep the default "
                 "certificate in (set ssl_cert and ssl_cert_key)");
        return MG_ERROR;
    }
    snprintf(crt_path, sizeof(crt_path), "%s/%s", conf->prefix,
             MG_TLS_DEFAULT_CRT);
    snprintf(key_path, sizeof(key_path), "%s/%s", conf->prefix,
             MG_TLS_DEFAULT_KEY);
    have_crt = access(crt_path, F_OK) == 0;
    have_key = access(key_path, F_OK) == 0;
    if (have_crt && have_key) {
        return mg_tls_cert_pair_files(&c->pairs[c->npairs++], crt_path,
                                      key_path, err, errlen);
    }

    /* One of the two missing: make a new pair; half a pair is useless. */
    (void) mkdir(conf->prefix, 0755);
    snprintf(dir, sizeof(dir), "%s/ssl", conf->prefix);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "tls: cannot create %s: %s", dir,
                 strerror(errno));
        return MG_ERROR;
    }
    rc = mg_tls_cert_generate(crt_pem, sizeof(crt_pem), key_pem,
                              sizeof(key_pem), err, errlen);
    if (rc == MG_OK) {
        rc = mg_tls_write_file(key_path, key_pem,
                               strlen((char *) key_pem), 0600, err, errlen);
    }
    if (rc == MG_OK) {
        rc = mg_tls_write_file(crt_path, crt_pem,
                               strlen((char *) crt_pem), 0644, err, errlen);
    }
    if (rc == MG_OK) {
        cs.data = (const char *) crt_pem;
        cs.len = strlen((char *) crt_pem);
        ks.data = (const char *) key_pem;
        ks.len = strlen((char *) key_pem);
        snprintf(what, sizeof(what), "default certificate");
        rc = mg_tls_cert_pair_parse(&c->pairs[c->npairs++], cs, ks, what, err,
                                    errlen);
    }
    mbedtls_platform_zeroize(key_pem, sizeof(key_pem));
    if (rc == MG_OK) {
        mg_log_notice("tls: generated the default certificate %s", crt_path);
    }
    return rc;
}

/* Split "a, b,c" into at most max trimmed items in buf; the count or -1. */
static int
mg_tls_split(const char *list, char *buf, size_t size, char **items, int max)
{
    char *p, *save = NULL, *tok;
    int   n = 0;

    if (strlen(list) >= size) {
        return -1;
    }
    strcpy(buf, list);
    for (p = buf; (tok = strtok_r(p, ",", &save)) != NULL; p = NULL) {
        char *end;
        while (*tok == ' ' || *tok == '\t') {
            tok++;
        }
        end = tok + strlen(tok);
        while (end > tok && (end[-1] == ' ' || end[-1] == '\t')) {
            *--end = '\0';
        }
        if (*tok == '\0') {
            continue;
        }
        if (n == max) {
            return -1;
        }
        items[n++] = tok;
    }
    return n;
}

int
mg_tls_cert_default(const mg_conf_t *conf, mg_tls_cert_t *c, char *err,
                    size_t errlen)
{
    char  cbuf[4096], kbuf[4096], cp[PATH_MAX], kp[PATH_MAX];
    char *certs[MG_TLS_MAX_PAIRS], *keys[MG_TLS_MAX_PAIRS];
    int   nc, nk, i;

    if (conf == NULL || conf->ssl_cert == NULL || *conf->ssl_cert == '\0') {
        return mg_tls_cert_default_generated(conf, c, err, errlen);
    }
    if (conf->ssl_cert_key == NULL || *conf->ssl_cert_key == '\0') {
        snprintf(err, errlen, "ssl_cert is set but ssl_cert_key is not");
        return MG_ERROR;
    }
    nc = mg_tls_split(conf->ssl_cert, cbuf, sizeof(cbuf), certs,
                      MG_TLS_MAX_PAIRS);
    nk = mg_tls_split(conf->ssl_cert_key, kbuf, sizeof(kbuf), keys,
                      MG_TLS_MAX_PAIRS);
    if (nc <= 0 || nk <= 0) {
        snprintf(err, errlen, "ssl_cert, ssl_cert_key: between 1 and %d "
                 "comma-separated paths expected", MG_TLS_MAX_PAIRS);
        return MG_ERROR;
    }
    if (nc != nk) {
        snprintf(err, errlen, "ssl_cert has %d paths but ssl_cert_key %d",
                 nc, nk);
        return MG_ERROR;
    }
    for (i = 0; i < nc; i++) {
        mg_conf_path(conf, certs[i], cp, sizeof(cp));
        mg_conf_path(conf, keys[i], kp, sizeof(kp));
        if (mg_tls_cert_pair_files(&c->pairs[c->npairs++], cp, kp, err,
                                   errlen) != MG_OK)
        {
            return MG_ERROR;
        }
    }
    return MG_OK;
}
