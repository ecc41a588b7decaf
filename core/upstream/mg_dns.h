/*
 * mg_dns.h -- asynchronous name resolution with a TTL cache, per worker.
 *
 * One resolver per worker, created after fork on the worker's libev loop:
 * c-ares sends and receives, libev watches its sockets and its timeout.
 * Answers are cached per name (lower-cased) with Kong's dns_* semantics:
 *
 *   - IP literals ("10.0.0.1", "::1", "[::1]") resolve at once, no cache.
 *   - The hosts file (Kong `dns_hostsfile`, default /etc/hosts) is read
 *     once at create time and answers first; `localhost` is always
 *     defined (RFC 6761, as Kong).  The first address of the preferred
 *     family (the first of A/AAAA in dns_order, A by default) is returned,
 *     else the first of the other family.
 *   - `dns_order` ("LAST,SRV,A,CNAME") lists the record types tried in
 *     turn; LAST is the type that last succeeded for that name.  A type
 *     whose answer is empty, or a server error (SERVFAIL, REFUSED),
 *     falls through to the next type, as Kong.  NXDOMAIN stops at once:
 *     the name has no records of any type (RFC 8020).  A timeout or a
 *     network error stops at once too (Kong: "we don't want to try other
 *     record types" after a network error).
 *   - CNAME chains in an answer are followed; the CNAME type in the order
 *     queries the alias and resolves its target with the full order.
 *   - SRV: only the lowest-priority entries that resolve are kept (Kong's
 *     documented rule); each target is resolved (from the additional
 *     section when the server sent it, else by a lookup of its own), and
 *     every address carries its entry's port, weight and priority.  A
 *     target that points back at the name being resolved is skipped, so
 *     Kubernetes-style self-referencing SRV records fall through to A.
 *   - TTL: the smallest TTL on the chain, or `dns_valid_ttl` when set.
 *     Past it, the entry is served stale for `dns_stale_ttl` seconds
 *     while one background query refreshes it.  A refresh that fails
 *     with a server error or timeout keeps the stale answer (RFC 8767);
 *     a refresh that says NXDOMAIN/empty replaces it.
 *   - Not found (NXDOMAIN, empty answers) is cached `dns_not_found_ttl`
 *     seconds; errors (SERVFAIL and the like, and timeouts) are cached
 *     `dns_error_ttl` seconds.  (Kong caches no timeout; one second of
 *     negative caching keeps a dead resolver from being hammered by every
 *     request.)
 *   - Concurrent lookups of one name share one query (Kong's default,
 *     dns_no_sync = off).
 *
 * Nameservers come from `dns_resolver` ("ip[:port], ..."), else from
 * resolv.conf; search domains and ndots from resolv.conf, as Kong (a
 * trailing dot skips the search list).  The timeout per try and the
 * number of tries are resolv.conf's `options timeout:` / `attempts:` (or
 * RES_OPTIONS), else 2 s and 2 tries; c-ares doubles the timeout on each
 * round, so a dead server fails in ~6 s.  Timeouts move on to the next
 * nameserver; SERVFAIL/REFUSED answers are taken as they are (as Kong's
 * resolver does), not retried elsewhere.
 *
 * Rejected: ares_getaddrinfo() -- it cannot do SRV, hides TTLs of CNAME
 * chains and would read the hosts file on every call; and ares_parse_*()
 * -- SRV replies carry no TTL there.  One small walker over the reply
 * (names decompressed by ares_expand_name) reads every type with its TTL.
 */
#ifndef MG_DNS_H
#define MG_DNS_H

#include <ev.h>
#include <sys/socket.h>
#include "../mg_core.h"
#include "../conf/mg_conf.h"

typedef struct mg_dns_s mg_dns_t;

typedef struct {
    struct sockaddr_storage addr;     /* port in addr is 0 */
    socklen_t               addrlen;
    uint16_t                port;     /* SRV port, else 0 (caller's) */
    uint16_t                weight;   /* SRV weight, else 0 */
    uint16_t                priority; /* SRV priority, else 0 */
} mg_dns_addr_t;

typedef struct {
    int                  status;  /* MG_OK, MG_DECLINED (not found) or
                                     MG_ERROR (server error, timeout) */
    const mg_dns_addr_t *addrs;   /* naddrs > 0 when MG_OK */
    size_t               naddrs;
    const char          *error;   /* static string when not MG_OK, e.g.
                                     "dns server error: 3 name error" */
    int                  ttl;     /* seconds the answer stays fresh (0 when
                                     served stale) */
    unsigned             stale:1; /* past its TTL, refresh under way */
} mg_dns_result_t;

typedef void (*mg_dns_cb)(void *ctx, const mg_dns_result_t *res);

typedef struct {
    const char *hostsfile;     /* NULL: "/etc/hosts" (Kong dns_hostsfile) */
    const char *resolv_conf;   /* NULL: "/etc/resolv.conf" */
    int         timeout_ms;    /* per try; 0: resolv.conf, else 2000 */
    int         attempts;      /* tries; 0: resolv.conf, else 2 */
} mg_dns_opts_t;

/*
 * Create a resolver on loop with conf's dns_* properties (opts may be
 * NULL).  Call it in the worker, after fork.  NULL with err filled when
 * c-ares cannot start or dns_resolver is refused; a missing hosts file is
 * not an error (as Kong: logged, then empty).
 */
mg_dns_t *mg_dns_create(struct ev_loop *loop, const mg_conf_t *conf,
                        const mg_dns_opts_t *opts, char *err, size_t errlen);

/*
 * Stop every watcher and free everything.  Lookups still in flight are
 * dropped without their callbacks.  Never call it from an mg_dns callback.
 */
void mg_dns_free(mg_dns_t *d);

/*
 * Resolve name (NUL-terminated, any case).
 *
 * Returns MG_OK, MG_DECLINED or MG_ERROR with *res filled when the answer
 * is known now: an IP literal, a hosts-file name, a fresh cache entry, a
 * cached negative answer, or a stale entry (then res->stale is set and a
 * background refresh starts).  res->addrs then points into the cache and
 * stays valid until the next call into mg_dns or the next loop iteration,
 * whichever comes first: copy what you keep.
 *
 * Otherwise returns MG_AGAIN, sets *handle, and later calls cb(ctx, res)
 * exactly once from the loop -- also on timeout and failure -- unless
 * mg_dns_cancel(d, *handle) was called first.  res and its addrs are
 * valid during the callback only.  The callback may call mg_dns_resolve
 * and mg_dns_cancel, never mg_dns_free.  The handle is dead once the
 * callback has run.
 */
int mg_dns_resolve(mg_dns_t *d, const char *name, mg_dns_result_t *res,
                   mg_dns_cb cb, void *ctx, void **handle);
/* (cb may be NULL to warm the cache: MG_AGAIN then sets no handle.) */

/* Forget a pending lookup: its callback will not run.  The query itself
 * goes on and its answer still lands in the cache. */
void mg_dns_cancel(mg_dns_t *d, void *handle);

/* Queries started so far (one per name and record type tried; c-ares
 * retries and search-domain variants not counted), for tests and stats. */
uint64_t mg_dns_queries(const mg_dns_t *d);

#endif /* MG_DNS_H */
