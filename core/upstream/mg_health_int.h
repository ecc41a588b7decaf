/*
 * mg_health_int.h -- what mg_health.c and mg_health_probe.c share; no
 * other file includes it.  See mg_health.h for the model.
 */
#ifndef MG_HEALTH_INT_H
#define MG_HEALTH_INT_H

#include <stdatomic.h>
#include "mg_health.h"

#if ATOMIC_LLONG_LOCK_FREE != 2
#error "health state needs lock-free 64-bit atomics (they live in shared memory)"
#endif

/* The state word: four saturating 8-bit counters and the unhealthy bit. */
enum {
    MG_HEALTH_CTR_SUCCESS = 0,
    MG_HEALTH_CTR_TCP,
    MG_HEALTH_CTR_TIMEOUT,
    MG_HEALTH_CTR_HTTP
};
#define MG_HEALTH_CTR_SHIFT(c)  ((unsigned) (c) * 8u)
#define MG_HEALTH_CTR_GET(w, c) ((unsigned) ((w) >> MG_HEALTH_CTR_SHIFT(c)) & 0xffu)
#define MG_HEALTH_SUCC_MASK     0xffULL
#define MG_HEALTH_FAIL_MASK     0xffffff00ULL
#define MG_HEALTH_DOWN          (1ULL << 32)

/* One cache line per target: workers reporting on different targets do
 * not bounce each other's lines. */
typedef struct {
    _Atomic uint64_t word;
    char             _pad[56];
} mg_health_slot_t;

typedef struct {
    _Atomic uint64_t gen;
    char             _pad[56];
    mg_health_slot_t slots[];
} mg_health_shm_t;

typedef struct {
    mg_health_conf_t     conf;
    const mg_upstream_t *upstream;
    size_t               first;      /* its first slot */
    size_t               n;          /* balancer size */
} mg_health_up_t;

typedef struct mg_health_checker_s mg_health_checker_t;

struct mg_health_s {
    mg_runtime_t        *rt;
    mg_pool_t           *pool;       /* parsed strings (process memory) */
    mg_health_up_t      *ups;        /* indexed by mg_upstream_t.index */
    size_t               nups;
    mg_health_shm_t     *shm;        /* shared by every process */
    size_t               shm_size;
    /* this process's own */
    uint64_t             _synced_gen;
    unsigned             _synced:1;
    uint64_t             _sync_passes;   /* full passes, for tests */
    struct ev_loop      *_loop;          /* active probes run here */
    mg_health_checker_t *_checkers;      /* one per upstream */
};

/* Count one outcome against the active (1) or passive (0) thresholds. */
void mg_health_count(mg_health_t *h, size_t uidx, size_t idx, int kind,
                     int http_status, int active);

static inline uint64_t
mg_health_word(const mg_health_t *h, size_t uidx, size_t idx)
{
    return atomic_load(&h->shm->slots[h->ups[uidx].first + idx].word);
}

#endif /* MG_HEALTH_INT_H */
