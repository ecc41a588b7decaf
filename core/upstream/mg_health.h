/*
 * mg_health.h -- Kong's upstream `healthchecks`: active probes and passive
 * circuit breakers, with one health state per target that every process
 * sees exactly, and that outlives the config it was built for.
 *
 * The arena.  The master maps one region shared by every process it will
 * ever fork (mg_health_arena_create, MAP_SHARED | MAP_ANONYMOUS), once,
 * before its first fork, installs it process-wide (mg_health_arena_set)
 * and keeps it for its whole life, across reloads.  It holds a state word
 * per target, found by key, and the generation counter.  The key is a
 * 64-bit hash of (upstream id, target host and port, the check identity)
 * (mg_health_create claims slots by compare-and-swap, see
 * mg_health_arena.c): any runtime built in any process -- the master's
 * for a new generation, a worker's or the admin process's rebuilt
 * in-process after an Admin API write -- lands on the same words for the
 * same targets, so health survives reloads and live changes.  A full
 * arena gives the targets that do not fit a per-process word (one error
 * line per runtime); nothing fails.
 *
 * What the key holds decides what survives a change:
 *  - kept: the state of a target still in the upstream under the same id;
 *    any change to thresholds, intervals, status lists, timeout,
 *    concurrency, threshold, weights or other targets.  Thresholds only
 *    say how many consecutive outcomes flip the state, not what the word
 *    means, so the counters are re-evaluated, not reset: the down bit
 *    stays, and a counter already at or above a lowered threshold flips
 *    the state at the next outcome of its kind (a raised one needs more;
 *    one set to 0 stops counting).
 *  - new state (HEALTHY, no counts): a changed check identity -- active
 *    type, http_path, https_sni, headers -- because a verdict reached
 *    with one probe says nothing about another, and old and new runtimes
 *    probing the same target must not fight over one word while old
 *    workers drain.  Turning checks off for an upstream forgets its
 *    targets' state (the words are cleared when a runtime with checks off
 *    is built), so turning them on again later starts from HEALTHY.
 * Rejected: thresholds in the key -- tightening them during an incident
 * would put every target known down back into rotation.  Two targets
 * hashing to one 64-bit key would share a word: about n^2 / 2^65, taken.
 *
 * Per runtime.  mg_health_create parses each upstream's healthchecks
 * record, applies Kong's defaults, validates it and looks the targets up.
 * Processes report outcomes of proxied requests (mg_health_report,
 * passive), one process runs the active probes (mg_health_start_active,
 * worker slot 0; starting them stops this process's other instances'
 * probes), and every process copies the shared state into its own
 * balancers' down flags with mg_health_sync before picking a target.
 * mg_health_free releases only what the process owns; the arena stays.
 *
 * State word.  Four saturating 8-bit counters (successes, TCP failures,
 * timeouts, HTTP failures) and the unhealthy bit live in one word and
 * change together with one compare-and-swap, so a transition is exact
 * however many processes report at once; the process whose CAS flips the
 * bit bumps the generation and logs the change (notice level), once.
 *
 * Rejected: per-worker state merged over a pipe (a worker would route to
 * a target another worker already knows is down); a lock in shared
 * memory (a process dying while holding it would wedge every other one);
 * one region per runtime, mapped by the master before fork (the previous
 * design: a reload started health over, and a runtime built after fork
 * had state no other process saw); keying by balancer index (indexes
 * move when targets are added or removed).
 */
#ifndef MG_HEALTH_H
#define MG_HEALTH_H

#include <ev.h>
#include "../mg_core.h"
#include "mg_upstream.h"

typedef struct mg_health_s mg_health_t;
typedef struct mg_health_arena_s mg_health_arena_t;

/* Slots of the master's arena: 64 bytes each, so 4 MiB of address space,
 * touched only where used. */
#define MG_HEALTH_ARENA_SLOTS 65536

/* What the proxy saw on a request to a target (mg_health_report kind). */
enum {
    MG_HEALTH_OK_STATUS = 0,  /* a success, whatever the status lists say
                                 (the TCP exchange worked) */
    MG_HEALTH_TCP_FAILURE,    /* connect refused/reset, broken response */
    MG_HEALTH_TIMEOUT,        /* connect, send or read timed out */
    MG_HEALTH_HTTP_STATUS     /* classify http_status with the
                                 healthy/unhealthy http_statuses lists;
                                 0 = unparsable response (a failure) */
};

/* Check types (Kong's one_of; grpc/grpcs are accepted, not probed). */
enum {
    MG_HEALTH_TYPE_HTTP = 0,
    MG_HEALTH_TYPE_HTTPS,
    MG_HEALTH_TYPE_TCP,
    MG_HEALTH_TYPE_GRPC,
    MG_HEALTH_TYPE_GRPCS
};

/* A set of HTTP statuses 100..999, one bit each. */
typedef struct {
    uint8_t bits[125];
} mg_health_statuses_t;

typedef struct {
    double                interval;      /* s; 0 = do not probe (active) */
    mg_health_statuses_t  http_statuses;
    unsigned              successes;     /* 0..255; 0 = not counted */
} mg_health_healthy_t;

typedef struct {
    double                interval;      /* s; 0 = do not probe (active) */
    mg_health_statuses_t  http_statuses;
    unsigned              tcp_failures;  /* thresholds 0..255; 0 = off */
    unsigned              timeouts;
    unsigned              http_failures;
} mg_health_unhealthy_t;

typedef struct {
    int                   type;          /* MG_HEALTH_TYPE_* */
    double                timeout;       /* s, default 1 */
    unsigned              concurrency;   /* default 10 */
    const char           *http_path;     /* default "/" */
    const char           *https_sni;     /* NULL when unset */
    int                   https_verify_certificate;  /* default 1 */
    const char           *headers;       /* "Name: value\r\n"..., or "" */
    mg_health_healthy_t   healthy;
    mg_health_unhealthy_t unhealthy;
} mg_health_active_conf_t;

typedef struct {
    int                   type;
    mg_health_healthy_t   healthy;       /* interval unused */
    mg_health_unhealthy_t unhealthy;
} mg_health_passive_conf_t;

/* One upstream's healthchecks record with Kong's defaults applied. */
typedef struct {
    mg_health_active_conf_t  active;
    mg_health_passive_conf_t passive;
    double                   threshold;  /* % of weight, 0..100, default 0 */
    unsigned                 on:1;       /* Kong's "using health checks":
                                            an active interval or a passive
                                            failure threshold is set */
    unsigned                 active_on:1;/* an active interval is set */
} mg_health_conf_t;

/*
 * Map an arena of `slots` slots (0 = MG_HEALTH_ARENA_SLOTS; rounded up to
 * a power of two), every slot free.  The master calls it once before its
 * first fork and keeps it; NULL with a message in err when mmap fails.
 */
mg_health_arena_t *mg_health_arena_create(size_t slots, char *err,
                                          size_t errlen);

/* Unmap.  Only when no mg_health_t built on it lives in any process
 * (tests; the master never needs to). */
void mg_health_arena_free(mg_health_arena_t *a);

/* The arena mg_health_create uses in this process and, after fork, in its
 * children.  Set by the master before the first fork. */
void mg_health_arena_set(mg_health_arena_t *a);
mg_health_arena_t *mg_health_arena_get(void);

/* Its size and how many slots are taken (slots are never given back). */
size_t mg_health_arena_slots(const mg_health_arena_t *a);
size_t mg_health_arena_used(const mg_health_arena_t *a);

/*
 * Any process, any time (the master before fork, a worker or the admin
 * process rebuilding its runtime).  Parse and validate every upstream's
 * healthchecks_json (empty = all defaults) and find each target's state
 * word in the process's arena by key, claiming the slot for a target
 * never seen (it starts HEALTHY).  With no arena set, one of
 * MG_HEALTH_ARENA_SLOTS is created and set first (a process that never
 * forks -- tests, tools -- needs nothing more).  Returns NULL with a
 * message in err naming the upstream and the field, e.g. `upstream
 * "llm": healthchecks.active.timeout: value should be between 0 and
 * 65535`.  rt must outlive h.
 */
mg_health_t *mg_health_create(mg_runtime_t *rt, char *err, size_t errlen);

/* Stop probes (if this process runs them) and free what this process
 * owns; the state stays in the arena for the next runtime.  NULL is a
 * no-op.  Each process that holds h frees its own copy. */
void mg_health_free(mg_health_t *h);

/* The parsed record of upstream uidx (NULL when out of range). */
const mg_health_conf_t *mg_health_conf(const mg_health_t *h, size_t uidx);

/* 1 unless target idx of upstream uidx is UNHEALTHY (targets of an
 * upstream with health checks off, and out-of-range indexes, are 1). */
int mg_health_is_healthy(const mg_health_t *h, size_t uidx, size_t idx);

/*
 * Copy the shared state into rt's balancers (mg_balancer_set_down): call
 * before picks.  O(1) when no state changed since this process's last
 * sync (one atomic load of the generation); otherwise one pass over all
 * targets.  An upstream whose healthy weight falls below its `threshold`
 * percentage gets every target marked down (Kong: the whole upstream is
 * unhealthy and requests get 503).  rt must be the runtime h was built
 * for; another one is ignored.
 */
void mg_health_sync(mg_health_t *h, mg_runtime_t *rt);

/* Bumped on every state change of any target, in every process (one
 * counter for the whole arena). */
uint64_t mg_health_generation(const mg_health_t *h);

/*
 * Passive: the outcome of one proxied request to target idx of upstream
 * uidx (kind MG_HEALTH_*, http_status for MG_HEALTH_HTTP_STATUS).  Cheap
 * when the upstream counts nothing (a few loads, no shared write).  h may
 * be NULL.  Kong's semantics: a failure adds to its counter and clears
 * the success counter; a success clears the failure counters; a counter
 * reaching its threshold flips the state; a threshold of 0 turns that
 * counter off entirely (so with healthy.successes = 0, failures are never
 * cleared and need not be consecutive).  Passive checks alone never bring
 * a target back (it gets no traffic): active checks or mg_health_set do.
 */
void mg_health_report(mg_health_t *h, size_t uidx, size_t idx, int kind,
                      int http_status);

/* Force a state and clear the counters (Admin API's POST .../healthy and
 * .../unhealthy).  MG_DECLINED when the upstream has health checks off
 * or the index is out of range. */
int mg_health_set(mg_health_t *h, size_t uidx, size_t idx, int healthy);

/*
 * Active: start probing on loop, in ONE process (worker slot 0).  Per
 * upstream with an active interval: a healthy.interval timer probes the
 * targets currently healthy, an unhealthy.interval timer those currently
 * unhealthy; at most `concurrency` probes run at once per upstream.  A
 * probe connects without blocking, sends `GET http_path HTTP/1.0` with
 * Host (the upstream's host_header, else the target host) and the
 * configured headers, and reads the status line; type tcp only connects;
 * type https does the same over the core's TLS client (https_sni,
 * https_verify_certificate; a failed handshake is a TCP failure, as in
 * Kong).  grpc(s) probes are skipped with a warning.
 * The timers do not keep the loop alive (ev_unref).  Probes of this
 * process's other instances stop first: one prober per process, so a
 * worker that swaps runtimes probes the new targets only (same targets,
 * same words: nothing is lost).
 */
void mg_health_start_active(mg_health_t *h, struct ev_loop *loop,
                            mg_runtime_t *rt);

/* Stop h's timers and close its probes in flight (counted nothing);
 * NULL or not probing is a no-op.  Call before freeing a runtime's loop
 * objects; mg_health_free calls it. */
void mg_health_stop_active(mg_health_t *h);

/* "HEALTHY", "UNHEALTHY", "HEALTHCHECKS_OFF" (checks off for the
 * upstream) or "DNS_ERROR" (target did not resolve); NULL out of range. */
const char *mg_health_state_name(const mg_health_t *h, size_t uidx,
                                 size_t idx);

/* The whole upstream: "HEALTHCHECKS_OFF", or "HEALTHY" / "UNHEALTHY" by
 * its threshold (Kong's ?balancer_health=1). */
const char *mg_health_upstream_state_name(const mg_health_t *h, size_t uidx);

/*
 * The Admin API's GET /upstreams/{u}/health: the state of target
 * ("host:port", or as written in the target entity) of the upstream with
 * that id (or name), as the newest runtime of THIS process sees it.
 * MG_OK with *healthy 1 or 0 when the target has health state;
 * MG_DECLINED when this process has no runtime with that upstream, the
 * newest one has no such target, or health checks are off for the
 * upstream (Kong's HEALTHCHECKS_OFF).  Reads one shared word.
 */
int mg_health_target_status(const char *upstream, size_t ul,
                            const char *target, size_t tl, int *healthy);

#endif /* MG_HEALTH_H */
