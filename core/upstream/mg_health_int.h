/*
 * mg_health_int.h -- what mg_health.c, mg_health_arena.c,
 * mg_health_probe.c and mg_health_lua.c share; no other file includes
 * it.  See mg_health.h for the model.
 */
#ifndef MG_HEALTH_INT_H
#define MG_HEALTH_INT_H

#include <stddef.h>
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

/* Probes past a slot's home before the arena counts as full: bounds the
 * cost of a lookup in an (almost) full arena to a few pages. */
#define MG_HEALTH_ARENA_PROBES  1024

/*
 * One cache line per target: workers reporting on different targets do
 * not bounce each other's lines.  `key` goes from 0 (free) to the
 * target's key once, by compare-and-swap, and never changes again;
 * `word` is written only through a slot whose key is set, so a slot
 * just claimed always holds 0 (HEALTHY, no counts).
 */
typedef struct {
    _Atomic uint64_t key;
    _Atomic uint64_t word;
    char             _pad[48];
} mg_health_slot_t;

#define MG_HEALTH_ARENA_MAGIC 0x314854484c41484dULL   /* "MHALHTH1" */

/* The mapping: this header, then the slots. */
struct mg_health_arena_s {
    uint64_t         magic;
    size_t           nslots;     /* a power of two */
    size_t           size;       /* bytes mapped */
    _Atomic uint64_t used;       /* slots claimed so far */
    char             _pad0[32];
    _Atomic uint64_t gen;        /* bumped on every state change */
    char             _pad1[56];
    mg_health_slot_t slots[];
};

/* The slot holding key (claimed for it if free; other processes claiming
 * the same key get the same slot), or NULL when none is free within
 * MG_HEALTH_ARENA_PROBES of its home. */
mg_health_slot_t *mg_health_arena_claim(mg_health_arena_t *a, uint64_t key);

/* The slot holding key, or NULL: never claims. */
mg_health_slot_t *mg_health_arena_find(mg_health_arena_t *a, uint64_t key);

/* Hashing: FNV-1a over length-prefixed fields, finished with a 64-bit
 * mixer so linear probing sees well-spread home slots. */
uint64_t mg_health_hash_begin(void);
uint64_t mg_health_hash_add(uint64_t hv, const void *p, size_t n);
uint64_t mg_health_hash_end(uint64_t hv);        /* never 0 */

typedef struct {
    mg_health_conf_t     conf;
    const mg_upstream_t *upstream;
    size_t               first;      /* its first entry in h->_slots */
    size_t               n;          /* balancer size */
    uint64_t             check;      /* what the state means (key part) */
} mg_health_up_t;

typedef struct mg_health_checker_s mg_health_checker_t;

struct mg_health_s {
    mg_runtime_t        *rt;
    mg_pool_t           *pool;       /* parsed strings (process memory) */
    mg_health_up_t      *ups;        /* indexed by mg_upstream_t.index */
    size_t               nups;
    mg_health_arena_t   *arena;      /* shared by every process */
    mg_health_slot_t   **_slots;     /* per target: in the arena, in
                                        _private, or the off slot */
    mg_health_slot_t    *_private;   /* per-process fallback slots */
    size_t               _nprivate;
    /* this process's own */
    mg_health_t         *_next;      /* live instances, newest first */
    mg_health_t         *_prev;
    uint64_t             _synced_gen;
    unsigned             _synced:1;
    uint64_t             _sync_passes;   /* full passes, for tests */
    struct ev_loop      *_loop;          /* active probes run here */
    mg_health_checker_t *_checkers;      /* one per upstream */
};

/* The live instances of this process, newest first (mg_health_create
 * links, mg_health_free unlinks). */
extern mg_health_t *mg_health_live;

/* Count one outcome against the active (1) or passive (0) thresholds. */
void mg_health_count(mg_health_t *h, size_t uidx, size_t idx, int kind,
                     int http_status, int active);

static inline uint64_t
mg_health_word(const mg_health_t *h, size_t uidx, size_t idx)
{
    return atomic_load(&h->_slots[h->ups[uidx].first + idx]->word);
}

#endif /* MG_HEALTH_INT_H */
