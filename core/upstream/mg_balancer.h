/*
 * mg_balancer.h -- spreading requests over an upstream's targets with
 * Kong's four `algorithm`s: round-robin, least-connections,
 * consistent-hashing and latency.
 *
 * A balancer is built per config snapshot and per worker; its state
 * (cursor, in-flight counts, latency averages, down flags) is the
 * worker's own and never shared, so picks take no lock.  Targets with
 * weight 0 are left out; indexes run over the remaining targets in the
 * upstream's order.
 *
 * Every pick is followed by exactly one mg_balancer_release() of the
 * index it returned (also for round-robin and consistent hashing, where
 * it only counts): least-connections and latency live on that feedback.
 *
 * The rules, in short (the file headers of mg_balancer.c and
 * mg_balancer_hash.c say why):
 *
 *   round-robin         nginx's smooth weighted round-robin, tabulated
 *                       once into a wheel: weights 5/1/1 give a a b a c a a.
 *   least-connections   lowest in_flight/weight; ties (above all the idle
 *                       targets) go in the wheel's smooth order.
 *   consistent-hashing  a table of `slots` entries filled by weighted
 *                       rendezvous hashing: a key owns one slot; only the
 *                       keys of a removed target move; a retry walks on
 *                       to the next slot owned by an untried target.
 *   latency             lowest EWMA of response time x (in_flight + 1) /
 *                       weight; the EWMA decays toward 0 while a target
 *                       is idle, so a slow target is tried again later; a
 *                       target with no sample yet is probed, one request
 *                       at a time.  Above 16 targets: best of two random.
 */
#ifndef MG_BALANCER_H
#define MG_BALANCER_H

#include "../mg_core.h"
#include "../conf/mg_config.h"

typedef struct mg_balancer_s mg_balancer_t;

typedef enum {
    MG_BALANCER_ROUND_ROBIN = 0,
    MG_BALANCER_LEAST_CONNECTIONS,
    MG_BALANCER_CONSISTENT_HASHING,
    MG_BALANCER_LATENCY
} mg_balancer_algorithm_e;

/* The hash of a request for consistent hashing (mg_balancer_hash_key). */
typedef struct {
    uint64_t hash;
    int      valid;
} mg_balancer_key_t;

/*
 * What consistent hashing may hash, handed over by the proxy so the
 * balancer knows nothing of requests.  Views stay the caller's.
 *
 * get_header(ctx, name, out, max) fills out[0..] with the values of the
 * request header `name` (case-insensitive, every occurrence in order) and
 * returns how many it wrote, at most max.  NULL: no headers.
 * captures[i] is the router's regex group i + 1, capture_names[i] its
 * name (empty when unnamed); a group that did not take part in the match
 * has data == NULL.
 */
typedef struct {
    mg_str_t        consumer_id;  /* empty when no consumer */
    mg_str_t        client_ip;    /* text */
    mg_str_t        path;         /* normalized path */
    mg_str_t        query;        /* raw query string without '?' */
    size_t        (*get_header)(void *ctx, mg_str_t name, mg_str_t *out,
                                size_t max);
    void           *header_ctx;
    size_t          ncaptures;
    const mg_str_t *capture_names;
    const mg_str_t *captures;
} mg_balancer_req_t;

/* malloc'd; NULL when no target has weight > 0, or on ENOMEM.  The
 * balancer points at u's targets: free it before the snapshot.  The
 * algorithm is u->algorithm (empty or unknown: round-robin).  Building a
 * consistent-hashing balancer costs O(slots x targets) hash steps (about
 * 15 ms for 10,000 slots x 1,000 targets); the others O(targets) to
 * O(wheel x targets), wheel <= max(slots, 16 x targets). */
mg_balancer_t *mg_balancer_build(const mg_upstream_t *u);
void mg_balancer_free(mg_balancer_t *b);

/* Number of targets (weight > 0): indexes are 0 .. size - 1. */
size_t mg_balancer_size(const mg_balancer_t *b);

mg_balancer_algorithm_e mg_balancer_algorithm(const mg_balancer_t *b);

/*
 * Pick a target.  tried is a bitmap of mg_balancer_size() bits
 * (bit i = tried[i / 8] & (1 << (i % 8))) or NULL: a retry goes to a
 * target not tried yet when one is up; when every target that is up has
 * been tried, the pick is among all targets that are up.  Targets marked
 * down are never picked.  key is used by consistent hashing only; NULL
 * or !key->valid there means round-robin (Kong's behaviour when the hash
 * input is missing).  The same key always lands on the same target while
 * the targets and their down flags stay the same.
 *
 * Returns the index, or -1 when every target is down.  A pick counts as
 * in flight until mg_balancer_release() of that index.
 */
int mg_balancer_pick(mg_balancer_t *b, const uint8_t *tried,
                     const mg_balancer_key_t *key);

/*
 * The request sent to idx is over: exactly once per successful pick,
 * retries included (each try is a pick).  latency_ms is the time the
 * target took to answer (connect + response); failed marks a try that
 * failed (connect error, timeout, broken response): the latency
 * algorithm counts it as at least MG_BALANCER_FAIL_MS.  Out-of-range
 * indexes are ignored.
 */
#define MG_BALANCER_FAIL_MS  10000.0
void mg_balancer_release(mg_balancer_t *b, int idx, double latency_ms,
                         int failed);

/* The target at idx (NULL when out of range). */
const mg_target_t *mg_balancer_target(const mg_balancer_t *b, int idx);

/* Mark idx down (1) or up (0); for health checks and circuit breakers. */
void mg_balancer_set_down(mg_balancer_t *b, int idx, int down);

/* Requests currently in flight on idx (picked, not released). */
unsigned mg_balancer_in_flight(const mg_balancer_t *b, int idx);

/*
 * 64-bit hash of len bytes: FNV-1a folded through a 64-bit finalizer
 * (murmur3's fmix64) so that every input bit reaches every output bit.
 * Stable across processes and versions: keys may be compared between
 * workers.
 */
uint64_t mg_balancer_hash(const void *data, size_t len);

/*
 * The consistent-hashing key of a request, per u->hash_on and, when that
 * input is absent, u->hash_fallback (Kong's rules; see
 * mg_balancer_hash.c for each kind).  Returns 1 with key->valid = 1 when
 * an input was found, 0 with key->valid = 0 otherwise (hash_on "none",
 * input absent on both sides, or cookie_buf too small for a cookie that
 * must be set).
 *
 * hash_on = cookie and the request has no such cookie: a random UUID v4
 * is hashed and the value of the Set-Cookie header the response must
 * carry ("<name>=<uuid>; Path=<hash_on_cookie_path>; Same-Site=Lax;
 * HttpOnly", as Kong writes it) goes to cookie_buf, its length to
 * *set_cookie_len.  *set_cookie_len is 0 when no cookie is to be set.
 * mg_balancer_cookie_size(u) is the buffer size that always suffices.
 * Call it once per request and keep the key for its retries (a second
 * call would make up a second cookie).
 */
int mg_balancer_hash_key(const mg_upstream_t *u, const mg_balancer_req_t *req,
                         mg_balancer_key_t *key, char *cookie_buf,
                         size_t cookie_len, size_t *set_cookie_len);

size_t mg_balancer_cookie_size(const mg_upstream_t *u);

/* murmur3's 64-bit finalizer: a bijection that mixes every bit. */
static inline uint64_t
mg_balancer_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#endif /* MG_BALANCER_H */
