/*
 * mg_tls.h -- TLS for client connections (termination) and upstream
 * connections, on mbedTLS 2.28.  core/tls/ is the only place that includes
 * mbedTLS headers; everything else sees the opaque types below.
 *
 * Three objects, three lifetimes:
 *   mg_tls_server_t  one per config snapshot: parsed certificates, the SNI
 *                    map, the default certificate, the mbedTLS server
 *                    config.  Built in the master before fork (so workers
 *                    share its pages copy-on-write) or in a worker when a
 *                    snapshot is built there; it must outlive every
 *                    connection made from it.
 *   mg_tls_client_t  one per upstream TLS setting (a service): trust
 *                    anchors, verification depth, client certificate, and a
 *                    small cache of sessions for resumption.  Same lifetime
 *                    rule as the server object.
 *   mg_tls_conn_t    one per TCP connection; owns the mbedTLS context and
 *                    its record buffers.  Free it as soon as the connection
 *                    closes: it is the expensive part (see the cost below).
 *
 * I/O is non-blocking and event-loop driven: every call that cannot finish
 * returns "again" together with the direction it waits for
 * (mg_tls_want_write()), and the caller re-arms its watcher.  Nothing here
 * ever blocks or sleeps.  The module never closes the fd: the caller owns it.
 *
 * Per-connection memory (Debian's mbedTLS 2.28 build, measured by
 * spec/c/test_tls.c): MBEDTLS_SSL_IN_CONTENT_LEN and _OUT_CONTENT_LEN are
 * 16 KB each and cannot be changed without rebuilding the library, so each
 * mg_tls_conn_t holds two ~16.7 KB record buffers, 1.3 KB of its own, and
 * the session and cipher contexts: about 37 KB for its whole life, a few
 * KB more during the handshake.  An idle keep-alive TLS connection costs
 * ~37 KB where OpenSSL with SSL_MODE_RELEASE_BUFFERS would cost a few KB;
 * 2.28 has no way to release the buffers of a live TLS context.
 *
 * Rejected: a TLS layer of our own on top of mbedTLS's blocking helpers
 * (mbedtls_net_*) -- they block; the BIO here is two small functions on the
 * fd.  Rejected: mbedtls_ssl_ticket for session tickets -- 2.28 cannot
 * rotate its keys deterministically, so forked workers would drift apart at
 * the first rotation (see mg_tls_server.c).
 */
#ifndef MG_TLS_H
#define MG_TLS_H

#include <sys/uio.h>
#include "../mg_core.h"
#include "../conf/mg_conf.h"
#include "../conf/mg_config.h"

typedef struct mg_tls_server_s mg_tls_server_t;
typedef struct mg_tls_client_s mg_tls_client_t;
typedef struct mg_tls_conn_s   mg_tls_conn_t;

/*
 * Static failure reasons, compared by pointer (h2o style).  A server
 * handshake that fails with mg_tls_err_plain_http saw plain HTTP on a TLS
 * port: the caller may answer "400 The plain HTTP request was sent to HTTPS
 * port" in clear text, as nginx and Kong do, then close.
 */
extern const char mg_tls_err_plain_http[];
extern const char mg_tls_err_closed[];    /* peer closed during handshake */
extern const char mg_tls_err_reset[];     /* ECONNRESET / EPIPE */

/*
 * Server side for one config snapshot.
 *
 * Certificates come from cf->snis (each names a certificate in
 * cf->certificates; cert_alt/key_alt, when present, are offered too, and
 * mbedTLS picks the one matching the negotiated suite).  Lookup follows
 * Kong: the exact name, then "*.rest" (first label replaced, at least three
 * labels), then "prefix.*" (last label replaced), then an SNI named "*",
 * else the default certificate.  No SNI: the default certificate.
 *
 * The default certificate is conf->ssl_cert / conf->ssl_cert_key (comma
 * separated lists of paths, relative to the prefix, in matching order).
 * When ssl_cert is unset, <prefix>/ssl/moongate-default.crt and .key are
 * loaded, or generated once (ECDSA P-256, CN=localhost, SAN localhost, key
 * mode 0600) and reused on later starts, as Kong does.  cf may be NULL
 * (no certificate entities).
 *
 * TLS 1.2 (the highest mbedTLS 2.28 offers) with ECDHE + AES-GCM or
 * ChaCha20-Poly1305 only; ALPN "http/1.1"; session tickets whose keys are
 * derived from a per-process secret and the time period, so every worker
 * forked from one master (and every later snapshot) accepts the tickets of
 * the others.
 *
 * Returns NULL with a message in err naming the certificate id, sni name or
 * file at fault.
 */
mg_tls_server_t *mg_tls_server_create(const mg_conf_t *conf,
                                      const mg_config_t *cf, char *err,
                                      size_t errlen);
/*
 * The Admin API's listener: admin_ssl_cert / admin_ssl_cert_key, or the
 * proxy's certificate when unset; with admin_ssl_verify_client on or
 * optional, clients are asked for a certificate, verified against
 * admin_ssl_client_certificate.  The handshake goes on without one (as
 * nginx's): the request is answered 400 then (mg_tls_conn_client_cert).
 */
mg_tls_server_t *mg_tls_admin_server_create(const mg_conf_t *conf, char *err,
                                            size_t errlen);
/* The client certificate of t: 0 one that verified, 1 none sent, 2 one
 * that did not verify (unknown issuer, expired, ...). */
int mg_tls_conn_client_cert(const mg_tls_conn_t *t);

/* Drops the caller's reference: the server lives on while connections
 * made from it (mg_tls_conn_server) are open -- a runtime swapped out by
 * a config change may go while its TLS clients stay connected. */
void mg_tls_server_free(mg_tls_server_t *s);

/*
 * Upstream side for one service (svc may be NULL: defaults).
 *
 * tls_verify -1 (unset) or 1 verifies the peer, 0 does not.  Trust anchors
 * are the service's ca_certificates (ids looked up in cf->ca_certificates),
 * which replace the system bundle as in Kong, else the system bundle
 * (/etc/ssl/certs/ca-certificates.crt or the usual alternatives, parsed
 * once per process and shared).  tls_verify_depth has OpenSSL's meaning:
 * the number of intermediate CAs allowed between the peer certificate and
 * the trust anchor; unset means mbedTLS's own limit.  client_certificate
 * names a certificate in cf->certificates, presented when the server asks.
 *
 * Returns NULL with a message naming the service and the id at fault.
 */
mg_tls_client_t *mg_tls_client_create(const mg_config_t *cf,
                                      const mg_service_t *svc, char *err,
                                      size_t errlen);
void mg_tls_client_free(mg_tls_client_t *c);

/*
 * A TLS connection on a connected non-blocking fd.  Returns NULL on ENOMEM
 * (or a host name mbedTLS rejects).  The fd stays the caller's: free the
 * connection with mg_tls_conn_free(), then close the fd.
 *
 * Client side: sni_host is sent as SNI and the certificate is checked
 * against it (DNS SAN or CN).  An IP literal is not sent as SNI (RFC 6066);
 * the certificate must then carry it as an IP SAN.  NULL: neither SNI nor
 * a name check (the chain is still verified).  A session saved from an
 * earlier full handshake with the same host through the same client object
 * is offered for resumption.
 */
mg_tls_conn_t *mg_tls_conn_server(mg_tls_server_t *s, int fd);
mg_tls_conn_t *mg_tls_conn_client(mg_tls_client_t *c, int fd,
                                  const char *sni_host);
void mg_tls_conn_free(mg_tls_conn_t *t);

/* Connection id used in log lines ("*42"); 0 leaves it out. */
void mg_tls_conn_set_id(mg_tls_conn_t *t, uint64_t id);

/*
 * Drive the handshake.  MG_OK when done (also on later calls); MG_AGAIN
 * when it waits for the fd: readable if mg_tls_want_write() == 0, writable
 * if 1; MG_ERROR with mg_tls_error() set, logged once at info level with
 * the peer's address and reason (e.g. "certificate verify failed: ...",
 * "handshake failed: peer sent alert: unknown_ca").  Never crashes on bad
 * input.
 */
int mg_tls_handshake(mg_tls_conn_t *t);
int mg_tls_want_write(const mg_tls_conn_t *t);

/*
 * Server side, before the first mg_tls_handshake(): pause once after the
 * ClientHello of a full handshake (not of a resumed one), when the SNI is
 * known and the certificate not yet sent.  mg_tls_handshake() then
 * returns MG_TLS_HELLO; call it again to go on.  (The plugins'
 * certificate phase runs there.)
 */
#define MG_TLS_HELLO  1
void mg_tls_conn_want_hello(mg_tls_conn_t *t);

/* Refuse the handshake paused at MG_TLS_HELLO: a handshake_failure alert,
 * best effort (never blocks); the caller closes the connection. */
void mg_tls_conn_refuse(mg_tls_conn_t *t);

/*
 * Like recv(2): >0 bytes of plaintext; 0 on close_notify or EOF; -1 with
 * errno EAGAIN (see mg_tls_want_write() for the direction), ECONNRESET, or
 * EIO (mg_tls_error() says why).
 */
ssize_t mg_tls_recv(mg_tls_conn_t *t, char *buf, size_t n);

/*
 * Like writev(2): writes iov in order, one TLS record at a time (up to
 * 16 KB of plaintext each); small leading entries are coalesced with what
 * follows into one record through a static buffer, so a response head and
 * its body do not go out as a tiny record plus a big one.
 *
 * Returns the bytes written (possibly fewer than offered), or -1 with errno
 * EAGAIN (direction: mg_tls_want_write()), ECONNRESET or EIO.  mbedTLS
 * holds an encrypted record it could not send yet: after a short count or
 * EAGAIN the caller must call again with the unsent data unchanged (it may
 * append more); that record counts as written only once it is on the wire.
 */
ssize_t mg_tls_writev(mg_tls_conn_t *t, const struct iovec *iov, int iovcnt);

/*
 * Plaintext already decrypted inside mbedTLS (the caller must read it
 * without waiting for a readable event); 1 when only undecrypted record
 * bytes are buffered; 0 when nothing is.
 */
int mg_tls_pending(const mg_tls_conn_t *t);

const char *mg_tls_error(const mg_tls_conn_t *t);   /* NULL when none */

/* Server side: the SNI the client sent, lower-cased (empty when none).
 * Client side: the host given to mg_tls_conn_client(). */
mg_str_t mg_tls_sni(const mg_tls_conn_t *t);

/* After a successful handshake: whether it resumed a session, the
 * protocol ("TLSv1.2") and the cipher suite's IANA-style name. */
int mg_tls_resumed(const mg_tls_conn_t *t);
const char *mg_tls_protocol(const mg_tls_conn_t *t);
const char *mg_tls_cipher(const mg_tls_conn_t *t);

/* Send close_notify: best effort, never blocks, at most once. */
void mg_tls_close_notify(mg_tls_conn_t *t);

/*
 * Hybrid mode, Kong's "shared" mTLS (mg_tls_cluster.c).  Both ends hold
 * the same certificate and key (cluster_cert / cluster_cert_key, paths
 * already resolved): the control plane's listener requires a client
 * certificate and accepts only one byte-for-byte equal to its own; the
 * data plane presents it and accepts only a server presenting it too.
 * No SNI, no name check, no session resumption: every connection proves
 * the key.  Returns NULL with a message naming the file at fault.  Free
 * with mg_tls_server_free() / mg_tls_client_free().
 */
mg_tls_server_t *mg_tls_cluster_server_create(const char *cert_path,
                                              const char *key_path,
                                              char *err, size_t errlen);
mg_tls_client_t *mg_tls_cluster_client_create(const char *cert_path,
                                              const char *key_path,
                                              char *err, size_t errlen);
/* 1 when t was made from a cluster server object (a data plane's
 * connection to the control plane's cluster_listen). */
int mg_tls_conn_cluster(const mg_tls_conn_t *t);

/*
 * Validation for config loaders: both parse (PEM) and the key belongs to
 * the certificate.  MG_OK, or MG_ERROR with a message (never key bytes).
 */
int mg_tls_check_cert_key(mg_str_t cert_pem, mg_str_t key_pem, char *err,
                          size_t errlen);

/*
 * Reseed the process's random generator with fresh entropy and the pid.
 * Call in each worker right after fork; the module also notices a changed
 * pid on its own, so a missed call cannot make two workers share ECDHE
 * secrets.
 */
void mg_tls_after_fork(void);

#endif /* MG_TLS_H */
