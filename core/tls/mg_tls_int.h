/*
 * mg_tls_int.h -- what the files of core/tls/ share and nobody else sees:
 * the object layouts, the process-wide random generator and the
 * certificate helpers.  Included by the files of core/tls/ and by the unit
 * test only.
 *
 *   mg_tls.c         random generator, connections: BIO, handshake, I/O
 *   mg_tls_server.c  server object: SNI map, certificate choice, tickets
 *   mg_tls_client.c  client object: trust, verification, session cache
 *   mg_tls_cert.c    PEM parsing, key/cert pairs, the default certificate
 */
#ifndef MG_TLS_INT_H
#define MG_TLS_INT_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "mg_tls.h"

/* One certificate chain (leaf first) and its private key. */
typedef struct {
    mbedtls_x509_crt    crt;
    mbedtls_pk_context  key;
} mg_tls_pair_t;

/* What one SNI (or the default) serves: cert, and cert_alt when given. */
#define MG_TLS_MAX_PAIRS 4

typedef struct {
    mg_tls_pair_t            pairs[MG_TLS_MAX_PAIRS];
    int                      npairs;
    const mg_certificate_t  *src;        /* NULL for the default */
} mg_tls_cert_t;

typedef struct {
    char           *name;                /* lower-case, NUL-terminated */
    size_t          len;
    mg_tls_cert_t  *cert;
} mg_tls_sni_entry_t;

/* Ticket keys: one per time period, derived, never stored on disk. */
typedef struct {
    unsigned char        name[16];
    mbedtls_gcm_context  gcm;
} mg_tls_ticket_key_t;

struct mg_tls_server_s {
    mbedtls_ssl_config   conf;
    mg_tls_cert_t        dflt;
    mg_tls_cert_t       *certs;          /* one per distinct certificate */
    size_t               ncerts;
    mg_tls_sni_entry_t  *snis;           /* sorted by name */
    size_t               nsnis;
    uint64_t             ticket_period;  /* of keys[0]; keys[1] is the one
                                            before */
    int                  ticket_ready;
    mg_tls_ticket_key_t  ticket[2];
    unsigned             refs;           /* its owner + each connection
                                            (their sessions use conf) */
    unsigned             cluster:1;      /* mg_tls_cluster.c: dflt.pairs[0]
                                            is the cluster certificate and
                                            the client must present it */
    unsigned             has_client_ca:1;
    mbedtls_x509_crt     client_ca;      /* admin_ssl_client_certificate:
                                            clients are asked for a
                                            certificate it signed */
};

#define MG_TLS_CLIENT_SESSIONS 8

typedef struct {
    char                 *host;          /* NULL when the slot is free */
    mbedtls_ssl_session   sess;
} mg_tls_session_entry_t;

struct mg_tls_client_s {
    mbedtls_ssl_config      conf;
    mbedtls_x509_crt        ca;          /* the service's own CAs */
    mg_tls_pair_t           pair;        /* client certificate */
    unsigned                own_ca:1;
    unsigned                has_pair:1;
    int                     verify;
    int                     depth;       /* -1: no limit of ours */
    mg_tls_session_entry_t  sessions[MG_TLS_CLIENT_SESSIONS];
    unsigned                next_session;
    char                    name[64];    /* service name or id, for logs */
};

struct mg_tls_conn_s {
    mbedtls_ssl_context  ssl;            /* first: callbacks get back to the
                                            connection from &t->ssl */
    int                  fd;
    int                  depth;          /* client: max verify depth */
    mg_tls_server_t     *server;
    mg_tls_client_t     *client;
    const char          *err;
    uint64_t             id;
    size_t               wpending;       /* plaintext length of the record
                                            mbedTLS holds unsent */
    unsigned             want_write:1;
    unsigned             done:1;
    unsigned             resumed:1;
    unsigned             fatal:1;
    unsigned             plain_http:1;
    unsigned             rx_started:1;
    unsigned             notified:1;
    unsigned             depth_exceeded:1;
    unsigned             offered_session:1;
    unsigned             want_hello:1;   /* pause after the ClientHello */
    int                  sys_errno;      /* of the last failed send/recv */
    uint8_t              iplen;          /* client: host is an IP literal */
    unsigned char        ip[16];
    uint8_t              sni_len;
    char                 sni[256];
    char                 errbuf[256];
    /* read-ahead: mbedTLS asks for a record's 5-byte header, then for its
     * body, then for the next header -- three recv(2) calls per record
     * without this; with it one recv serves them all */
    uint16_t             ra_pos;
    uint16_t             ra_len;
    unsigned char        ra[4096];
};

#define mg_tls_conn_of(ssl) ((mg_tls_conn_t *) (void *) (ssl))

/* mg_tls.c: the process's random generator (see mg_tls_after_fork()). */
int mg_tls_rng_init(char *err, size_t errlen);
int mg_tls_rng(void *p, unsigned char *out, size_t len);

/* mg_tls.c: the suites, curves and ALPN list both sides use. */
extern const int                   mg_tls_ciphersuites[];
extern const mbedtls_ecp_group_id  mg_tls_curves[];
extern const char                 *mg_tls_alpn[];

/* mg_tls_client.c: verification and the session cache of a client. */
extern const int mg_tls_client_ciphersuites[];
int mg_tls_client_verify(void *p, mbedtls_x509_crt *crt, int depth,
                         uint32_t *flags);
/* Offer the session saved for t->sni; 1 when one was offered. */
int mg_tls_client_session_restore(mg_tls_client_t *c, mg_tls_conn_t *t);
void mg_tls_client_session_save(mg_tls_client_t *c, mg_tls_conn_t *t);
void mg_tls_client_session_drop(mg_tls_client_t *c, mg_tls_conn_t *t);

/* mg_tls_cert.c */
void mg_tls_pair_init(mg_tls_pair_t *p);
void mg_tls_pair_free(mg_tls_pair_t *p);
void mg_tls_cert_free(mg_tls_cert_t *c);
/* Parse PEM views; what names the object in messages ("certificate X"). */
int mg_tls_cert_parse_crt(mbedtls_x509_crt *crt, mg_str_t pem,
                          const char *what, char *err, size_t errlen);
int mg_tls_cert_pair_parse(mg_tls_pair_t *p, mg_str_t cert, mg_str_t key,
                           const char *what, char *err, size_t errlen);
int mg_tls_cert_pair_files(mg_tls_pair_t *p, const char *cert_path,
                           const char *key_path, char *err, size_t errlen);
/* conf->ssl_cert lists, or the generated default, into c. */
int mg_tls_cert_default(const mg_conf_t *conf, mg_tls_cert_t *c, char *err,
                        size_t errlen);
/* "<mbedTLS reason>" for ret, into buf. */
const char *mg_tls_strerror(int ret, char *buf, size_t len);

#endif /* MG_TLS_INT_H */
