/*
 * mg_router.h -- route matching with Kong 3.x semantics.
 *
 * The router is built once per config snapshot (off the request path) and
 * is read-only afterwards; a worker holds one per snapshot.  Matching
 * does no allocation: results point into the router or the request.
 *
 * Matching rules are Kong's (traditional_compatible flavour): a route
 * matches when every field it sets matches; among matching routes the one
 * with the most specific conditions wins (see mg_router.c header).
 */
#ifndef MG_ROUTER_H
#define MG_ROUTER_H

#include "../mg_core.h"
#include "../conf/mg_config.h"

#define MG_ROUTER_MAX_CAPTURES 16

/* What the router needs from a request.  All views; nothing is copied. */
typedef struct {
    mg_str_t    method;      /* "GET" */
    mg_str_t    host;        /* Host header without port, lower-cased? no:
                                as sent; the router compares
                                case-insensitively */
    uint16_t    port;        /* port from Host, or the listener's port */
    mg_str_t    path;        /* URI path, no query string, as sent
                                (percent-encoded) */
    mg_str_t    scheme;      /* "http" or "https" */
    mg_str_t    sni;         /* empty on plain connections */
    /* Headers: a callback so the router needs no knowledge of the
     * request's header storage.  Returns the number of values found for
     * name (case-insensitive) and fills up to max of them into out. */
    size_t    (*get_header)(void *ctx, mg_str_t name, mg_str_t *out,
                            size_t max);
    void       *header_ctx;
} mg_router_req_t;

typedef struct {
    const mg_route_t *route;
    mg_str_t          matched_host;   /* the route's host entry that matched */
    mg_str_t          matched_path;   /* the route's path entry (no "~") */
    size_t            prefix_len;     /* bytes of req path consumed by the
                                         matched prefix or regex match */
    /* regex captures: ncaptures pairs of (offset,len) into req->path;
     * names[i] is the group name or empty for unnamed groups. */
    size_t            ncaptures;
    mg_str_t          captures[MG_ROUTER_MAX_CAPTURES];
    mg_str_t          capture_names[MG_ROUTER_MAX_CAPTURES];
} mg_router_match_t;

/*
 * Build a router for cf.  Routes whose service is disabled are skipped.
 * On error (bad regex) returns NULL and writes a message naming the route
 * and path into err.
 */
mg_router_t *mg_router_build(const mg_config_t *cf, char *err, size_t errlen);
void mg_router_free(mg_router_t *r);

/* MG_OK with *m filled, or MG_DECLINED when no route matches. */
int mg_router_match(const mg_router_t *r, const mg_router_req_t *req,
                    mg_router_match_t *m);

/*
 * The path to send upstream, Kong's rules: strip_path removes the matched
 * prefix; path_handling v0/v1 joins service path and the rest.  Writes
 * into buf (len bytes) and returns the length, or -1 when it does not fit.
 */
ssize_t mg_router_upstream_path(const mg_router_match_t *m,
                                const mg_router_req_t *req,
                                mg_str_t service_path, char *buf, size_t len);

/* --- additions (router owner) ------------------------------------------ */

/*
 * Notes on the functions above.  mg_router_match: a regex with no groups
 * gives ncaptures 0 (Kong); otherwise captures[0] is the whole match and
 * an unset group is { NULL, 0 }.  matched_path.data is NULL when the
 * route has no paths.  mg_router_upstream_path re-escapes its result as
 * Kong does (kong.tools.uri.escape: bytes outside unreserved/reserved
 * become %XX), so one input byte may take three: a buf of
 * 3 * (path.len + service_path.len) + 2 bytes never gives -1.
 */

/*
 * Kong normalises the request path before routing (kong.tools.uri
 * normalize, merge_slashes on): percent-encoded triplets are decoded
 * except those of reserved characters (!*'();:@&=+$,/?%#[], kept encoded
 * with upper-case hex), dot segments are removed (RFC 3986 5.2.4) and
 * runs of slashes are merged.  Prefix and regex paths match against the
 * result, captures are slices of it and the upstream path is built from
 * it (then re-escaped), so callers should pass the normalised path in
 * mg_router_req_t.path.  Writes at most len bytes (the result is never
 * longer than the input, so len == n always suffices; out == in is
 * allowed).  Returns the length, or -1 when out is too small.
 */
ssize_t mg_router_path_normalize(const char *in, size_t n, char *out,
                                 size_t len);

/*
 * Kong checks protocols after routing (runloop, not router): a route
 * whose protocols include "https" but not "http", hit with a forwarded
 * scheme other than "https", is answered with its
 * https_redirect_status_code (426, or a 301/302/307/308 redirect).
 * Returns 1 in that case, 0 otherwise.
 */
int mg_router_https_required(const mg_route_t *route, mg_str_t scheme);

#endif /* MG_ROUTER_H */
