/*
 * mg_balancer.c -- the four algorithms, see mg_balancer.h; the hash of a
 * request (hash_on) lives in mg_balancer_hash.c.
 *
 * The aim is a pick whose cost does not grow with the number of targets,
 * so each algorithm has a structure built once per snapshot:
 *
 * - The wheel.  nginx's smooth weighted round-robin (each step adds every
 *   weight to a running score, takes the highest, subtracts the total) is
 *   periodic: after sum(weight)/gcd steps it starts over.  So one period
 *   is computed at build time and a pick is a cursor step.  The wheel
 *   holds at most max(slots, 16 x targets) entries (Kong: `slots` is the
 *   round-robin maximum); beyond that weights are scaled down to fit,
 *   each to at least one entry.  Up to 4M wheel x targets the period is
 *   nginx's exact sequence, beyond it entries are spread evenly by
 *   position.  Down and tried targets are stepped over: a pick costs
 *   1 / (share of eligible weight) steps.  Rejected: nginx's O(n) scan
 *   per pick (1,000 targets cost 100x two), Kong's shuffled wheel
 *   (bunches heavy targets).
 *
 * - Least-connections: the least in_flight/weight (compared exactly, by
 *   cross multiplication).  Busy targets are kept by weight class and,
 *   within a class, in levels of equal in_flight (lists in count order):
 *   a pick or a release moves one target to the neighbouring level, O(1).
 *   A binary heap over the classes, keyed by first level's count / weight
 *   then a stride-scheduling pass (1/weight per pick, so ties across
 *   classes follow the weights), gives the least: O(log classes), O(1)
 *   for the usual handful of distinct weights, O(log n) only when every
 *   weight differs.  Idle targets (ratio 0, the least possible) are in
 *   no level: they are found by walking the wheel, which breaks their
 *   ties in smooth round-robin order, or, when 32 wheel steps meet only
 *   busy targets, taken from a stack of idle targets (entries that went
 *   busy are dropped lazily, so a pick or release pays nothing for it).  A retry whose best
 *   choice was tried takes an O(n) scan; bringing a busy target back up
 *   walks its class's levels.  Rejected: a heap of targets (O(log n) per
 *   pick and release: 4.8x the 2-target cost at 1,000 busy targets);
 *   Kong's (in_flight + 1)/weight heap -- with sequential traffic it
 *   sends everything to the heaviest target.
 *
 * - Per target, what every pick reads and release writes (in_flight, the
 *   down flag) lives in its own 8-byte array, apart from the colder
 *   fields, so 1,000 targets stay within L1.
 *
 * - Latency: an EWMA of response times per target (alpha 0.3 per
 *   sample), decaying toward 0 with idle time as e^(-t / 10 s) (Kong's
 *   decay), so a target that was slow is tried again once the others
 *   look slower than its faded average.  Score = EWMA x (in_flight + 1)
 *   / weight: load spreads a burst, and weight 200 counts as twice as
 *   fast as 100 (Kong divides by weight too).  Every EWMA decays at the
 *   same rate, so ordering by ln(EWMA) + t_sample / tau needs no exp()
 *   at pick time.  Exploration: a target with no sample yet (a new one,
 *   or all of them after a reload) wins while it has nothing in flight,
 *   so it is probed one request at a time, never flooded.  Up to 16
 *   targets the pick is the exact minimum; above, the better of two
 *   random targets ("power of two choices", as Kong and Finagle) keeps
 *   it O(1).  A failed try counts as at least MG_BALANCER_FAIL_MS.  The
 *   clock is mg_time_now, the worker loop's time.
 *
 * - Consistent hashing: a table of `slots` entries, entry s owned by the
 *   target with the best weighted rendezvous score for s (highest
 *   hash(target, s) among equal weights, least -ln(u) / weight across
 *   weights).  A key's slot is (high 32 bits of its hash x slots) >> 32.
 *   Removing a target moves exactly the keys of its slots (each to its
 *   runner-up), adding one moves only keys to it, and a target's share
 *   is its weight's to within sqrt(p(1-p)/slots).  A down or tried
 *   target's keys walk on to the next slots, so they spread by weight.
 *   Building costs slots x targets hashes (10,000 x 1,000: about 15 ms
 *   with equal weights, 60 ms with all weights different).  Rejected:
 *   Kong's ring of 160 points per target -- shares off by 1/sqrt(160),
 *   and only as many targets as fit the slots.
 */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include "mg_balancer.h"
#include "../base/mg_time.h"

#define MG_BALANCER_SLOTS_DEFAULT  10000
#define MG_BALANCER_SLOTS_MIN      10
#define MG_BALANCER_SLOTS_MAX      65536
#define MG_BALANCER_WHEEL_PER_PEER 16
#define MG_BALANCER_SWRR_WORK      (1u << 22)  /* wheel x targets, exact */
#define MG_BALANCER_IDLE_WALK      32
#define MG_BALANCER_LATENCY_SCAN   16
#define MG_BALANCER_DECAY_S        10.0
#define MG_BALANCER_ALPHA          0.3
#define MG_BALANCER_MIN_MS         0.001
#define MG_BALANCER_DRAWS          8

/* What every pick reads and every release writes, apart from the rest
 * of a peer: 8 bytes a target keeps 1,000 targets within L1. */
typedef struct {
    uint32_t in_flight;
    uint8_t  down;
    uint8_t  stacked;               /* least-connections: in idle_stack */
    uint16_t _pad;
} mg_balancer_hot_t;

typedef struct {
    const mg_target_t *target;
    int64_t            weight;
    /* latency */
    int                sampled;
    double             ewma;        /* ms, as of ewma_at */
    double             ewma_at;     /* s, mg_time_now */
    double             lkey;        /* ln(ewma) + (ewma_at - t0)/tau
                                       - ln(weight) */
    double             lnw;
    /* consistent hashing */
    uint64_t           hash;        /* of the target's name */
} mg_balancer_peer_t;

/* least-connections (see its section) */
typedef struct {
    int32_t  cls;                   /* weight class */
    int32_t  level;                 /* -1: idle or down */
    int32_t  prev, next;            /* in its level */
} mg_balancer_lcpeer_t;

typedef struct {
    uint32_t count;                 /* in_flight of each target here */
    int32_t  head, tail;            /* targets, first come first */
    int32_t  prev, next;            /* the class's levels by count; next
                                       also links the free pool */
} mg_balancer_level_t;

typedef struct {
    uint64_t pass;                  /* tie-break between equal ratios */
    uint64_t stride;                /* 2^32 / weight */
    uint32_t weight;
    int32_t  first;                 /* least busy level, -1: none */
} mg_balancer_class_t;

typedef struct {
    uint64_t pass;                  /* copies of the class's keys */
    uint32_t in_flight;             /* its first level's count */
    uint32_t weight;
    uint32_t idx;                   /* the class */
} mg_balancer_hent_t;

struct mg_balancer_s {
    mg_balancer_algorithm_e alg;
    size_t             n;
    size_t             nup;         /* targets not down */
    uint32_t          *wheel;
    size_t             nwheel;
    size_t             cursor;
    mg_balancer_hot_t *hot;         /* per target */
    /* least-connections */
    mg_balancer_lcpeer_t *lc;       /* per target */
    mg_balancer_level_t *levels;    /* pool of n */
    int32_t            lfree;       /* free levels */
    mg_balancer_class_t *classes;
    size_t             nclasses;
    mg_balancer_hent_t *heap;       /* classes with busy up targets */
    int32_t           *hpos;        /* a class's heap entry, -1: none */
    size_t             nheap;
    int32_t           *idle_stack;  /* holds every idle up target, and
                                       stale entries dropped lazily */
    size_t             nstack;
    size_t             nidle;       /* up targets with nothing in flight */
    uint64_t           vtime;       /* pass of the last pick */
    uint32_t          *slot;        /* consistent hashing */
    size_t             nslots;
    uint64_t           rng;         /* latency, seeded at first use */
    double             t0;
    mg_balancer_peer_t peers[];
};

/* --- helpers ------------------------------------------------------- */

static int
mg_balancer_tried(const uint8_t *tried, size_t i)
{
    return tried != NULL && (tried[i >> 3] & (1u << (i & 7))) != 0;
}

static int
mg_balancer_eligible(const mg_balancer_t *b, size_t i, const uint8_t *tried)
{
    return !b->hot[i].down && !mg_balancer_tried(tried, i);
}

static uint64_t
mg_balancer_gcd(uint64_t a, uint64_t c)
{
    while (c) {
        uint64_t t = a % c;
        a = c;
        c = t;
    }
    return a;
}

static uint64_t
mg_balancer_random(mg_balancer_t *b)
{
    /* xorshift64*; seeded per process so forked workers differ */
    if (b->rng == 0) {
        b->rng = mg_balancer_mix64((uint64_t) getpid() * 0x9e3779b97f4a7c15ULL
                                   ^ (uint64_t) (uintptr_t) b) | 1;
    }
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 0x2545f4914f6cdd1dULL;
}

static size_t
mg_balancer_below(mg_balancer_t *b, size_t n)
{
    return (size_t) (((mg_balancer_random(b) >> 32) * (uint64_t) n) >> 32);
}

/* Target indexes by ascending weight, then index. */
static int
mg_balancer_weight_cmp(const void *x, const void *y, void *arg)
{
    const mg_balancer_t *b = arg;
    uint32_t i = *(const uint32_t *) x, j = *(const uint32_t *) y;

    if (b->peers[i].weight != b->peers[j].weight) {
        return b->peers[i].weight < b->peers[j].weight ? -1 : 1;
    }
    return i < j ? -1 : i > j;
}

static mg_balancer_algorithm_e
mg_balancer_parse_algorithm(mg_str_t s)
{
    if (mg_str_eq_lit(s, "least-connections")) {
        return MG_BALANCER_LEAST_CONNECTIONS;
    }
    if (mg_str_eq_lit(s, "consistent-hashing")) {
        return MG_BALANCER_CONSISTENT_HASHING;
    }
    if (mg_str_eq_lit(s, "latency")) {
        return MG_BALANCER_LATENCY;
    }
    return MG_BALANCER_ROUND_ROBIN;
}

static size_t
mg_balancer_slots(const mg_upstream_t *u)
{
    if (u->slots < MG_BALANCER_SLOTS_MIN || u->slots > MG_BALANCER_SLOTS_MAX) {
        return MG_BALANCER_SLOTS_DEFAULT;
    }
    return (size_t) u->slots;
}

/* --- the wheel ----------------------------------------------------- */

typedef struct {
    double pos;
    uint32_t idx;
} mg_balancer_mark_t;

static int
mg_balancer_mark_cmp(const void *x, const void *y)
{
    const mg_balancer_mark_t *a = x, *c = y;

    if (a->pos != c->pos) {
        return a->pos < c->pos ? -1 : 1;
    }
    return a->idx < c->idx ? -1 : a->idx > c->idx;
}

/*
 * One period of smooth weighted round-robin.  Exact (nginx's sequence)
 * while wheel x targets stays under MG_BALANCER_SWRR_WORK; beyond that
 * the k-th entry of a target of w entries sits at (k + 1/2) / w of the
 * period, which spreads it as evenly, in O(L log L).
 */
static int
mg_balancer_wheel_build(mg_balancer_t *b, size_t slots)
{
    uint64_t *w, g = 0, total = 0;
    size_t    i, k, cap;

    w = malloc(b->n * sizeof(uint64_t));
    if (w == NULL) {
        return MG_ERROR;
    }
    for (i = 0; i < b->n; i++) {
        g = mg_balancer_gcd(g, (uint64_t) b->peers[i].weight);
    }
    for (i = 0; i < b->n; i++) {
        w[i] = (uint64_t) b->peers[i].weight / g;
        total += w[i];
    }
    cap = mg_max(slots, MG_BALANCER_WHEEL_PER_PEER * b->n);
    if (total > cap) {
        uint64_t scaled = 0;
        g = 0;
        for (i = 0; i < b->n; i++) {
            w[i] = (uint64_t) llround((double) w[i] * (double) cap
                                      / (double) total);
            w[i] = mg_max(w[i], 1);
            g = mg_balancer_gcd(g, w[i]);
        }
        for (i = 0; i < b->n; i++) {
            w[i] /= g;
            scaled += w[i];
        }
        total = scaled;
    }

    b->nwheel = (size_t) total;
    b->wheel = malloc(b->nwheel * sizeof(uint32_t));
    if (b->wheel == NULL) {
        free(w);
        return MG_ERROR;
    }

    if ((uint64_t) b->nwheel * b->n <= MG_BALANCER_SWRR_WORK) {
        int64_t *cur = calloc(b->n, sizeof(int64_t));
        if (cur == NULL) {
            free(w);
            return MG_ERROR;
        }
        for (k = 0; k < b->nwheel; k++) {
            size_t best = 0;
            for (i = 0; i < b->n; i++) {
                cur[i] += (int64_t) w[i];
                if (cur[i] > cur[best]) {
                    best = i;
                }
            }
            cur[best] -= (int64_t) total;
            b->wheel[k] = (uint32_t) best;
        }
        free(cur);
    } else {
        mg_balancer_mark_t *m = malloc(b->nwheel * sizeof(*m));
        size_t              j = 0;
        if (m == NULL) {
            free(w);
            return MG_ERROR;
        }
        for (i = 0; i < b->n; i++) {
            for (k = 0; k < w[i]; k++) {
                m[j].pos = ((double) k + 0.5) / (double) w[i];
                m[j].idx = (uint32_t) i;
                j++;
            }
        }
        qsort(m, b->nwheel, sizeof(*m), mg_balancer_mark_cmp);
        for (k = 0; k < b->nwheel; k++) {
            b->wheel[k] = m[k].idx;
        }
        free(m);
    }
    free(w);
    return MG_OK;
}

/* Next eligible entry of the wheel within at most `limit` steps; the
 * cursor moves past it.  -1 (cursor where it was) when none. */
static int
mg_balancer_wheel_next(mg_balancer_t *b, const uint8_t *tried, int idle_only,
                       size_t limit)
{
    size_t c = b->cursor, step;

    for (step = 0; step < limit; step++) {
        uint32_t idx = b->wheel[c];
        if (++c == b->nwheel) {
            c = 0;
        }
        if (mg_balancer_eligible(b, idx, tried)
            && (!idle_only || b->hot[idx].in_flight == 0))
        {
            b->cursor = c;
            return (int) idx;
        }
    }
    return -1;
}

static int
mg_balancer_rr_pick(mg_balancer_t *b, const uint8_t *tried)
{
    int idx = mg_balancer_wheel_next(b, tried, 0, b->nwheel);

    if (idx < 0 && tried != NULL) {
        idx = mg_balancer_wheel_next(b, NULL, 0, b->nwheel);
    }
    return idx;
}

/* --- least-connections --------------------------------------------- */

/*
 * Busy targets are grouped by weight class (targets of one weight) and,
 * within a class, by in_flight into levels: a level is the list of the
 * class's busy targets that have exactly `count` requests in flight, and
 * a class keeps its levels in a list by ascending count (the "LFU in
 * O(1)" layout).  A pick or release moves one target by one count, so it
 * goes to the neighbouring level (made or freed on the spot) in O(1).
 * The least ratio of a class is its first level's count / weight; a heap
 * over the classes (not the targets) finds the least across them, in
 * O(log classes): one class when weights are equal, a handful in
 * practice, n only when every weight differs.  Ties between classes go
 * by a stride pass (1/weight per pick), within a level first come first
 * served.  Levels are taken from a pool of n allocated at build time: a
 * busy target belongs to exactly one, so the pool never runs dry.
 */

static void
mg_balancer_lc_link(mg_balancer_t *b, int32_t lv, int32_t i)
{
    mg_balancer_level_t *l = &b->levels[lv];
    mg_balancer_lcpeer_t *q = &b->lc[i];

    q->level = lv;
    q->next = -1;
    q->prev = l->tail;
    if (l->tail >= 0) {
        b->lc[l->tail].next = i;
    } else {
        l->head = i;
    }
    l->tail = i;
}

/* Take i out of its level; the level stays, maybe empty. */
static void
mg_balancer_lc_unlink(mg_balancer_t *b, int32_t i)
{
    mg_balancer_lcpeer_t *q = &b->lc[i];
    mg_balancer_level_t  *l = &b->levels[q->level];

    if (q->prev >= 0) {
        b->lc[q->prev].next = q->next;
    } else {
        l->head = q->next;
    }
    if (q->next >= 0) {
        b->lc[q->next].prev = q->prev;
    } else {
        l->tail = q->prev;
    }
    q->level = -1;
}

/* A new level of class c with `count`, after level `after` (-1: first). */
static int32_t
mg_balancer_level_new(mg_balancer_t *b, int32_t c, uint32_t count,
                      int32_t after)
{
    int32_t              lv = b->lfree;
    mg_balancer_level_t *l = &b->levels[lv];

    b->lfree = l->next;
    l->count = count;
    l->head = l->tail = -1;
    l->prev = after;
    if (after >= 0) {
        l->next = b->levels[after].next;
        b->levels[after].next = lv;
    } else {
        l->next = b->classes[c].first;
        b->classes[c].first = lv;
    }
    if (l->next >= 0) {
        b->levels[l->next].prev = lv;
    }
    return lv;
}

static void
mg_balancer_level_free(mg_balancer_t *b, int32_t c, int32_t lv)
{
    mg_balancer_level_t *l = &b->levels[lv];

    if (l->prev >= 0) {
        b->levels[l->prev].next = l->next;
    } else {
        b->classes[c].first = l->next;
    }
    if (l->next >= 0) {
        b->levels[l->next].prev = l->prev;
    }
    l->next = b->lfree;
    b->lfree = lv;
}

/* Up target i has nothing in flight (any more). */
static void
mg_balancer_idle_push(mg_balancer_t *b, int32_t i)
{
    b->lc[i].level = -1;
    b->nidle++;
    if (!b->hot[i].stacked) {
        b->hot[i].stacked = 1;
        b->idle_stack[b->nstack++] = i;
    }
}

/*
 * An idle up target from the stack: entries that went busy or down are
 * popped on the way (each was pushed once: amortized O(1)).  While
 * nidle > 0 one is there, since every target turning idle is pushed
 * unless it still is in the stack.  -1 when the one found was tried.
 */
static int
mg_balancer_idle_find(mg_balancer_t *b, const uint8_t *tried)
{
    while (b->nstack > 0) {
        int32_t i = b->idle_stack[b->nstack - 1];
        if (!b->hot[i].down && b->hot[i].in_flight == 0) {
            return mg_balancer_tried(tried, (size_t) i) ? -1 : i;
        }
        b->nstack--;
        b->hot[i].stacked = 0;
    }
    return -1;
}

/* Heap entries carry their keys, so a sift touches only the heap array. */
static int
mg_balancer_hent_less(const mg_balancer_hent_t *x, const mg_balancer_hent_t *y)
{
    uint64_t a = (uint64_t) x->in_flight * y->weight;
    uint64_t c = (uint64_t) y->in_flight * x->weight;

    if (a != c) {
        return a < c;
    }
    if (x->pass != y->pass) {
        return x->pass < y->pass;
    }
    return x->idx < y->idx;
}

static void
mg_balancer_heap_up(mg_balancer_t *b, size_t pos)
{
    mg_balancer_hent_t e = b->heap[pos];

    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (!mg_balancer_hent_less(&e, &b->heap[parent])) {
            break;
        }
        b->heap[pos] = b->heap[parent];
        b->hpos[b->heap[pos].idx] = (int32_t) pos;
        pos = parent;
    }
    b->heap[pos] = e;
    b->hpos[e.idx] = (int32_t) pos;
}

static void
mg_balancer_heap_down(mg_balancer_t *b, size_t pos)
{
    mg_balancer_hent_t e = b->heap[pos];

    for (;;) {
        size_t child = 2 * pos + 1;
        if (child >= b->nheap) {
            break;
        }
        if (child + 1 < b->nheap
            && mg_balancer_hent_less(&b->heap[child + 1], &b->heap[child]))
        {
            child++;
        }
        if (!mg_balancer_hent_less(&b->heap[child], &e)) {
            break;
        }
        b->heap[pos] = b->heap[child];
        b->hpos[b->heap[pos].idx] = (int32_t) pos;
        pos = child;
    }
    b->heap[pos] = e;
    b->hpos[e.idx] = (int32_t) pos;
}

static void
mg_balancer_heap_remove(mg_balancer_t *b, int32_t c)
{
    size_t   pos = (size_t) b->hpos[c];
    uint32_t moved;

    b->hpos[c] = -1;
    b->nheap--;
    if (pos == b->nheap) {
        return;
    }
    moved = b->heap[b->nheap].idx;
    b->heap[pos] = b->heap[b->nheap];
    mg_balancer_heap_up(b, pos);
    if ((size_t) b->hpos[moved] == pos) {
        mg_balancer_heap_down(b, pos);      /* it did not go up: maybe down */
    }
}

/* Class c's heap entry after its first level or pass changed: inserted,
 * moved or removed (no busy target left).  dir says which way its key
 * went when the caller knows (1 up: a pick; -1 down: a release), 0 when
 * it does not. */
static void
mg_balancer_class_sync(mg_balancer_t *b, int32_t c, int dir)
{
    mg_balancer_class_t *k = &b->classes[c];
    mg_balancer_hent_t  *e, old;
    size_t               pos;

    if (k->first < 0) {
        if (b->hpos[c] >= 0) {
            mg_balancer_heap_remove(b, c);
        }
        return;
    }
    if (b->hpos[c] < 0) {
        if (k->pass < b->vtime) {
            k->pass = b->vtime;       /* no burst of catching up */
        }
        pos = b->nheap++;
        e = &b->heap[pos];
        e->in_flight = b->levels[k->first].count;
        e->weight = k->weight;
        e->pass = k->pass;
        e->idx = (uint32_t) c;
        mg_balancer_heap_up(b, pos);
        return;
    }
    pos = (size_t) b->hpos[c];
    e = &b->heap[pos];
    old = *e;
    e->in_flight = b->levels[k->first].count;
    e->pass = k->pass;
    if (b->nheap == 1) {
        return;                         /* one weight busy: nothing to order */
    }
    if (dir > 0 || (dir == 0 && mg_balancer_hent_less(&old, e))) {
        mg_balancer_heap_down(b, pos);
    } else {
        mg_balancer_heap_up(b, pos);
    }
}

/* Put busy up target i (not in a level) into the level of its count:
 * a walk over the class's levels, for set_down only. */
static void
mg_balancer_lc_insert(mg_balancer_t *b, int32_t i)
{
    int32_t  c = b->lc[i].cls, lv, prev = -1;
    uint32_t k = b->hot[i].in_flight;

    for (lv = b->classes[c].first; lv >= 0 && b->levels[lv].count < k;
         lv = b->levels[lv].next)
    {
        prev = lv;
    }
    if (lv < 0 || b->levels[lv].count != k) {
        lv = mg_balancer_level_new(b, c, k, prev);
    }
    mg_balancer_lc_link(b, lv, i);
    mg_balancer_class_sync(b, c, 0);
}

/* Take up target i out of the structure (it goes down). */
static void
mg_balancer_lc_remove(mg_balancer_t *b, int32_t i)
{
    int32_t lv = b->lc[i].level, c = b->lc[i].cls;

    if (lv < 0) {
        b->nidle--;                      /* its stack entry goes stale */
        return;
    }
    mg_balancer_lc_unlink(b, i);
    if (b->levels[lv].head < 0) {
        mg_balancer_level_free(b, c, lv);
    }
    mg_balancer_class_sync(b, c, 0);
}

static int
mg_balancer_lc_less(const mg_balancer_t *b, int32_t x, int32_t y)
{
    const mg_balancer_peer_t *p = &b->peers[x], *q = &b->peers[y];
    uint64_t a = (uint64_t) b->hot[x].in_flight * (uint64_t) q->weight;
    uint64_t c = (uint64_t) b->hot[y].in_flight * (uint64_t) p->weight;
    uint64_t px = b->classes[b->lc[x].cls].pass;
    uint64_t py = b->classes[b->lc[y].cls].pass;

    if (a != c) {
        return a < c;
    }
    if (px != py) {
        return px < py;
    }
    return x < y;
}

/* The exact rule by a scan: least ratio, then pass, among eligible. */
static int
mg_balancer_lc_scan(mg_balancer_t *b, const uint8_t *tried)
{
    int    best = -1;
    size_t i;

    for (i = 0; i < b->n; i++) {
        if (!mg_balancer_eligible(b, i, tried)) {
            continue;
        }
        if (best < 0 || mg_balancer_lc_less(b, (int32_t) i, best)) {
            best = (int) i;
        }
    }
    return best;
}

static int
mg_balancer_lc_pick(mg_balancer_t *b, const uint8_t *tried)
{
    int idx;

    if (b->nidle > 0) {
        idx = mg_balancer_wheel_next(b, tried, 1,
                                     mg_min(b->nwheel, MG_BALANCER_IDLE_WALK));
        if (idx >= 0) {
            return idx;
        }
        /* idle targets are rare on the wheel: take one from the stack */
        idx = mg_balancer_idle_find(b, tried);
        if (idx >= 0) {
            return idx;
        }
    } else if (b->nheap > 0) {
        int32_t lv = b->classes[b->heap[0].idx].first;
        idx = b->levels[lv].head;
        if (!mg_balancer_tried(tried, (size_t) idx)) {
            return idx;
        }
    }
    idx = mg_balancer_lc_scan(b, tried);
    if (idx < 0 && tried != NULL) {
        idx = mg_balancer_lc_scan(b, NULL);
    }
    return idx;
}

/* in_flight of up target i went up by one: to the next level. */
static void
mg_balancer_lc_picked(mg_balancer_t *b, int32_t i)
{
    int32_t              c = b->lc[i].cls, lv = b->lc[i].level, nx;
    uint32_t             k = b->hot[i].in_flight;
    mg_balancer_class_t *cl = &b->classes[c];

    b->vtime = cl->pass;
    cl->pass += cl->stride;
    if (lv < 0) {                        /* was idle: k == 1 */
        b->nidle--;
        nx = cl->first;
        if (nx < 0 || b->levels[nx].count != k) {
            nx = mg_balancer_level_new(b, c, k, -1);
        }
        mg_balancer_lc_link(b, nx, i);
    } else {
        nx = b->levels[lv].next;
        mg_balancer_lc_unlink(b, i);
        if (nx >= 0 && b->levels[nx].count == k) {
            mg_balancer_lc_link(b, nx, i);
            if (b->levels[lv].head < 0) {
                mg_balancer_level_free(b, c, lv);
            }
        } else if (b->levels[lv].head < 0) {
            b->levels[lv].count = k;     /* i was alone: relabel */
            mg_balancer_lc_link(b, lv, i);
        } else {
            mg_balancer_lc_link(b, mg_balancer_level_new(b, c, k, lv), i);
        }
    }
    /* from a level: the pass went up, and the first count if it moved;
     * from idle a level of 1 may have come in front (down) */
    mg_balancer_class_sync(b, c, lv >= 0 ? 1 : 0);
}

/* in_flight of up target i went down by one: to the previous level, or
 * the idle list. */
static void
mg_balancer_lc_released(mg_balancer_t *b, int32_t i)
{
    int32_t  c = b->lc[i].cls, lv = b->lc[i].level, pv;
    uint32_t k = b->hot[i].in_flight;
    int      was_first = b->classes[c].first == lv;

    pv = b->levels[lv].prev;
    mg_balancer_lc_unlink(b, i);
    if (k == 0) {
        if (b->levels[lv].head < 0) {
            mg_balancer_level_free(b, c, lv);
        }
        mg_balancer_idle_push(b, i);
    } else if (pv >= 0 && b->levels[pv].count == k) {
        mg_balancer_lc_link(b, pv, i);
        if (b->levels[lv].head < 0) {
            mg_balancer_level_free(b, c, lv);
        }
    } else if (b->levels[lv].head < 0) {
        b->levels[lv].count = k;
        mg_balancer_lc_link(b, lv, i);
    } else {
        mg_balancer_lc_link(b, mg_balancer_level_new(b, c, k, pv), i);
    }
    /* only a move at the front changes the class's least count */
    if (was_first) {
        /* down, except when the first level emptied into the idle stack:
         * the next level takes over (up) */
        mg_balancer_class_sync(b, c, k > 0 ? -1 : 0);
    }
}

/* One class per distinct weight, every target idle, the level pool
 * free. */
static int
mg_balancer_lc_build(mg_balancer_t *b)
{
    uint32_t *order;
    size_t    i, n = b->n;

    b->lc = malloc(n * sizeof(mg_balancer_lcpeer_t));
    b->idle_stack = malloc(n * sizeof(int32_t));
    b->levels = malloc(n * sizeof(mg_balancer_level_t));
    b->classes = malloc(n * sizeof(mg_balancer_class_t));
    b->heap = malloc(n * sizeof(mg_balancer_hent_t));
    b->hpos = malloc(n * sizeof(int32_t));
    order = malloc(n * sizeof(uint32_t));
    if (b->lc == NULL || b->idle_stack == NULL || b->levels == NULL
        || b->classes == NULL
        || b->heap == NULL || b->hpos == NULL || order == NULL)
    {
        free(order);
        return MG_ERROR;
    }
    for (i = 0; i < n; i++) {
        order[i] = (uint32_t) i;
    }
    qsort_r(order, n, sizeof(uint32_t), mg_balancer_weight_cmp, b);
    for (i = 0; i < n; i++) {
        const mg_balancer_peer_t *p = &b->peers[order[i]];
        mg_balancer_class_t      *c;

        if (i == 0 || p->weight != b->peers[order[i - 1]].weight) {
            c = &b->classes[b->nclasses];
            c->weight = (uint32_t) p->weight;
            c->stride = ((uint64_t) 1 << 32) / (uint64_t) p->weight;
            c->pass = 0;
            c->first = -1;
            b->hpos[b->nclasses] = -1;
            b->nclasses++;
        }
        b->lc[order[i]].cls = (int32_t) (b->nclasses - 1);
    }
    free(order);
    for (i = 0; i < n; i++) {
        b->levels[i].next = i + 1 < n ? (int32_t) (i + 1) : -1;
    }
    b->lfree = 0;
    for (i = n; i-- > 0;) {              /* index 0 on top */
        mg_balancer_idle_push(b, (int32_t) i);
    }
    return MG_OK;
}

/* --- latency ------------------------------------------------------- */

static double mg_balancer_ln_table[64];

static double
mg_balancer_ln1p_int(uint32_t k)
{
    return k < 64 ? mg_balancer_ln_table[k] : log((double) k + 1.0);
}

/*
 * The rank of a target: lower class first, then lower value.  Class 0 is
 * a target with no sample and nothing in flight (probe it; heavier
 * first), 1 a sampled target (value: its log score), 2 a target with no
 * sample whose probe is still out (value: log of load / weight).
 */
static inline int
mg_balancer_lat_rank(const mg_balancer_t *b, size_t i, double *v)
{
    const mg_balancer_peer_t *p = &b->peers[i];
    uint32_t                  in_flight = b->hot[i].in_flight;

    if (p->sampled) {
        *v = p->lkey + mg_balancer_ln1p_int(in_flight);
        return 1;
    }
    if (in_flight == 0) {
        *v = -(double) p->weight;
        return 0;
    }
    *v = mg_balancer_ln1p_int(in_flight) - p->lnw;
    return 2;
}

static int
mg_balancer_lat_better(const mg_balancer_t *b, size_t x, size_t y)
{
    double vx, vy;
    int    cx = mg_balancer_lat_rank(b, x, &vx);
    int    cy = mg_balancer_lat_rank(b, y, &vy);

    return cx < cy || (cx == cy && vx < vy);
}

static int
mg_balancer_lat_scan(mg_balancer_t *b, const uint8_t *tried)
{
    double bv = 0, v;
    int    best = -1, bc = 3, c;
    size_t i;

    for (i = 0; i < b->n; i++) {
        if (!mg_balancer_eligible(b, i, tried)) {
            continue;
        }
        c = mg_balancer_lat_rank(b, i, &v);
        if (c < bc || (c == bc && v < bv)) {
            best = (int) i;
            bc = c;
            bv = v;
        }
    }
    return best;
}

/* Power of two choices among eligible targets; a scan when random
 * draws keep missing (most targets down or tried). */
static int
mg_balancer_lat_p2c(mg_balancer_t *b, const uint8_t *tried)
{
    size_t i, x = 0, y = 0;
    int    got = 0;

    for (i = 0; i < MG_BALANCER_DRAWS; i++) {
        x = mg_balancer_below(b, b->n);
        if (mg_balancer_eligible(b, x, tried)) {
            got = 1;
            break;
        }
    }
    if (!got) {
        return mg_balancer_lat_scan(b, tried);
    }
    for (i = 0; i < MG_BALANCER_DRAWS; i++) {
        y = mg_balancer_below(b, b->n - 1);
        y += y >= x;
        if (mg_balancer_eligible(b, y, tried)) {
            return mg_balancer_lat_better(b, y, x) ? (int) y : (int) x;
        }
    }
    return (int) x;
}

static int
mg_balancer_lat_pick(mg_balancer_t *b, const uint8_t *tried)
{
    int idx;

    if (b->n <= MG_BALANCER_LATENCY_SCAN) {
        idx = mg_balancer_lat_scan(b, tried);
        if (idx < 0 && tried != NULL) {
            idx = mg_balancer_lat_scan(b, NULL);
        }
        return idx;
    }
    idx = mg_balancer_lat_p2c(b, tried);
    if (idx < 0 && tried != NULL) {
        idx = mg_balancer_lat_p2c(b, NULL);
    }
    return idx;
}

static void
mg_balancer_lat_sample(mg_balancer_t *b, mg_balancer_peer_t *p, double ms,
                       int failed)
{
    double now = mg_time_now;

    if (!(ms >= 0)) {                  /* NaN or negative */
        ms = 0;
    }
    if (failed && ms < MG_BALANCER_FAIL_MS) {
        ms = MG_BALANCER_FAIL_MS;
    }
    if (!p->sampled) {
        p->ewma = ms;
        p->sampled = 1;
    } else {
        double dt = now - p->ewma_at;
        double v = p->ewma * exp(-(dt > 0 ? dt : 0) / MG_BALANCER_DECAY_S);
        p->ewma = v + MG_BALANCER_ALPHA * (ms - v);
    }
    if (now > p->ewma_at) {
        p->ewma_at = now;          /* a clock that steps back changes nothing */
    }
    p->lkey = log(mg_max(p->ewma, MG_BALANCER_MIN_MS))
              + (p->ewma_at - b->t0) / MG_BALANCER_DECAY_S - p->lnw;
}

/* --- consistent hashing -------------------------------------------- */

/*
 * Weighted rendezvous hashing, tabulated: slot s goes to the target with
 * the least -ln(u(target, s)) / weight.  Within targets of one weight
 * that is the largest u, so the log is taken once per distinct weight
 * and slot, not per target.
 */
static int
mg_balancer_ch_build(mg_balancer_t *b, size_t slots)
{
    uint32_t *order;
    uint64_t *hash;
    size_t   *group, ngroups = 0, s, g, i;

    b->nslots = slots;
    b->slot = malloc(slots * sizeof(uint32_t));
    order = malloc(b->n * sizeof(uint32_t));
    hash = malloc(b->n * sizeof(uint64_t));
    group = malloc((b->n + 1) * sizeof(size_t));
    if (b->slot == NULL || order == NULL || hash == NULL || group == NULL) {
        free(order);
        free(hash);
        free(group);
        return MG_ERROR;
    }
    for (i = 0; i < b->n; i++) {
        order[i] = (uint32_t) i;
    }
    qsort_r(order, b->n, sizeof(uint32_t), mg_balancer_weight_cmp, b);
    for (i = 0; i < b->n; i++) {
        hash[i] = b->peers[order[i]].hash;
        if (i == 0 || b->peers[order[i]].weight
                          != b->peers[order[i - 1]].weight)
        {
            group[ngroups++] = i;
        }
    }
    group[ngroups] = b->n;

    for (s = 0; s < slots; s++) {
        uint64_t salt = mg_balancer_mix64((uint64_t) s * 0x9e3779b97f4a7c15ULL
                                          + 0x632be59bd9b4e019ULL);
        double   best_score = INFINITY;
        size_t   best = 0;

        /* heaviest group first: the best score found so far then rules
         * out most lighter targets without a log (below) */
        for (g = ngroups; g-- > 0;) {
            uint64_t top_h = 0;
            size_t   top = group[g];
            double   w = (double) b->peers[order[top]].weight, u, score;

            for (i = group[g]; i < group[g + 1]; i++) {
                uint64_t h = mg_balancer_mix64(hash[i] ^ salt);
                if (h > top_h) {
                    top_h = h;
                    top = i;
                }
            }
            if (ngroups == 1) {
                best = top;
                break;
            }
            u = ((double) (top_h >> 11) + 0.5) * 0x1.0p-53;
            /* -ln(u)/w < best needs u > e^(-best w) >= 1 - best w: a u
             * under 1 - best w (less a margin for rounding) cannot win */
            if (u < 1.0 - best_score * w - 0x1.0p-40) {
                continue;
            }
            score = -log(u) / w;
            if (score < best_score) {
                best_score = score;
                best = top;
            }
        }
        b->slot[s] = order[best];
    }
    free(order);
    free(hash);
    free(group);
    return MG_OK;
}

static int
mg_balancer_ch_walk(mg_balancer_t *b, size_t s, const uint8_t *tried)
{
    size_t k;

    for (k = 0; k < b->nslots; k++) {
        uint32_t idx = b->slot[s];
        if (mg_balancer_eligible(b, idx, tried)) {
            return (int) idx;
        }
        if (++s == b->nslots) {
            s = 0;
        }
    }
    return -1;
}

static int
mg_balancer_ch_pick(mg_balancer_t *b, const uint8_t *tried,
                    const mg_balancer_key_t *key)
{
    size_t s;
    int    idx;

    if (key == NULL || !key->valid) {
        return mg_balancer_rr_pick(b, tried);
    }
    s = (size_t) (((key->hash >> 32) * (uint64_t) b->nslots) >> 32);
    idx = mg_balancer_ch_walk(b, s, tried);
    if (idx < 0 && tried != NULL) {
        idx = mg_balancer_ch_walk(b, s, NULL);
    }
    return idx;
}

/* --- public -------------------------------------------------------- */

mg_balancer_t *
mg_balancer_build(const mg_upstream_t *u)
{
    mg_balancer_t *b;
    size_t         i, n = 0, slots;
    int            rc;

    if (u == NULL) {
        return NULL;
    }
    for (i = 0; i < u->ntargets; i++) {
        if (u->targets[i] != NULL && u->targets[i]->weight > 0) {
            n++;
        }
    }
    if (n == 0 || n > INT32_MAX) {
        return NULL;
    }
    b = calloc(1, sizeof(mg_balancer_t) + n * sizeof(mg_balancer_peer_t));
    if (b == NULL) {
        return NULL;
    }
    if (mg_balancer_ln_table[1] == 0) {
        for (i = 0; i < 64; i++) {
            mg_balancer_ln_table[i] = log((double) i + 1.0);
        }
    }
    b->alg = mg_balancer_parse_algorithm(u->algorithm);
    b->t0 = mg_time_now;
    for (i = 0; i < u->ntargets; i++) {
        const mg_target_t  *t = u->targets[i];
        mg_balancer_peer_t *p;
        if (t == NULL || t->weight <= 0) {
            continue;
        }
        p = &b->peers[b->n];
        p->target = t;
        p->weight = t->weight;
        p->lnw = log((double) t->weight);
        p->hash = t->target.len ? mg_balancer_hash(t->target.data,
                                                   t->target.len)
                                : mg_balancer_mix64(b->n + 1);
        b->n++;
    }
    b->nup = b->n;

    slots = mg_balancer_slots(u);
    b->hot = calloc(n, sizeof(mg_balancer_hot_t));
    rc = b->hot ? mg_balancer_wheel_build(b, slots) : MG_ERROR;
    if (rc == MG_OK && b->alg == MG_BALANCER_LEAST_CONNECTIONS) {
        rc = mg_balancer_lc_build(b);
    }
    if (rc == MG_OK && b->alg == MG_BALANCER_CONSISTENT_HASHING) {
        rc = mg_balancer_ch_build(b, slots);
    }
    if (rc != MG_OK) {
        mg_balancer_free(b);
        return NULL;
    }
    return b;
}

void
mg_balancer_free(mg_balancer_t *b)
{
    if (b == NULL) {
        return;
    }
    free(b->wheel);
    free(b->hot);
    free(b->lc);
    free(b->idle_stack);
    free(b->levels);
    free(b->classes);
    free(b->heap);
    free(b->hpos);
    free(b->slot);
    free(b);
}

size_t
mg_balancer_size(const mg_balancer_t *b)
{
    return b ? b->n : 0;
}

mg_balancer_algorithm_e
mg_balancer_algorithm(const mg_balancer_t *b)
{
    return b ? b->alg : MG_BALANCER_ROUND_ROBIN;
}

int
mg_balancer_pick(mg_balancer_t *b, const uint8_t *tried,
                 const mg_balancer_key_t *key)
{
    int idx;

    if (b == NULL || b->nup == 0) {
        return -1;
    }
    switch (b->alg) {
    case MG_BALANCER_LEAST_CONNECTIONS:
        idx = mg_balancer_lc_pick(b, tried);
        break;
    case MG_BALANCER_CONSISTENT_HASHING:
        idx = mg_balancer_ch_pick(b, tried, key);
        break;
    case MG_BALANCER_LATENCY:
        idx = mg_balancer_lat_pick(b, tried);
        break;
    default:
        idx = mg_balancer_rr_pick(b, tried);
        break;
    }
    if (idx < 0) {
        return -1;
    }
    b->hot[idx].in_flight++;
    if (b->alg == MG_BALANCER_LEAST_CONNECTIONS) {
        mg_balancer_lc_picked(b, idx);
    }
    return idx;
}

void
mg_balancer_release(mg_balancer_t *b, int idx, double latency_ms, int failed)
{
    mg_balancer_hot_t *h;

    if (b == NULL || idx < 0 || (size_t) idx >= b->n) {
        return;
    }
    h = &b->hot[idx];
    if (h->in_flight > 0) {
        h->in_flight--;
        if (b->alg == MG_BALANCER_LEAST_CONNECTIONS && !h->down) {
            mg_balancer_lc_released(b, idx);
        }
    }
    if (b->alg == MG_BALANCER_LATENCY) {
        mg_balancer_lat_sample(b, &b->peers[idx], latency_ms, failed);
    }
}

const mg_target_t *
mg_balancer_target(const mg_balancer_t *b, int idx)
{
    if (b == NULL || idx < 0 || (size_t) idx >= b->n) {
        return NULL;
    }
    return b->peers[idx].target;
}

unsigned
mg_balancer_in_flight(const mg_balancer_t *b, int idx)
{
    if (b == NULL || idx < 0 || (size_t) idx >= b->n) {
        return 0;
    }
    return b->hot[idx].in_flight;
}

void
mg_balancer_set_down(mg_balancer_t *b, int idx, int down)
{
    mg_balancer_hot_t *h;

    if (b == NULL || idx < 0 || (size_t) idx >= b->n) {
        return;
    }
    h = &b->hot[idx];
    down = down != 0;
    if ((int) h->down == down) {
        return;
    }
    h->down = (uint8_t) down;
    b->nup += down ? (size_t) -1 : 1;
    if (b->alg != MG_BALANCER_LEAST_CONNECTIONS) {
        return;
    }
    /* the levels and the idle list hold up targets only */
    if (down) {
        mg_balancer_lc_remove(b, idx);
    } else if (h->in_flight > 0) {
        mg_balancer_lc_insert(b, idx);
    } else {
        mg_balancer_idle_push(b, idx);
    }
}
