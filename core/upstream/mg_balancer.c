/*
 * mg_balancer.c -- smooth weighted round-robin, see mg_balancer.h.
 *
 * One flat array of targets; a pick is one pass over it (n is small: an
 * upstream has a handful of targets).  Rejected: Kong's ring balancer
 * (a slot wheel of `slots` entries, shuffled) -- it needs the wheel
 * rebuilt on every weight change and spreads heavy targets less evenly;
 * consistent hashing will get its own structure when hash_on is added.
 */
#include <stdlib.h>
#include "mg_balancer.h"

typedef struct {
    const mg_target_t *target;
    int64_t            weight;
    int64_t            current;
    int                down;
} mg_balancer_peer_t;

struct mg_balancer_s {
    size_t             n;
    mg_balancer_peer_t peers[];
};

mg_balancer_t *
mg_balancer_build(const mg_upstream_t *u)
{
    mg_balancer_t *b;
    size_t         i, n = 0;

    if (u == NULL) {
        return NULL;
    }
    for (i = 0; i < u->ntargets; i++) {
        if (u->targets[i] != NULL && u->targets[i]->weight > 0) {
            n++;
        }
    }
    if (n == 0) {
        return NULL;
    }
    b = calloc(1, sizeof(mg_balancer_t) + n * sizeof(mg_balancer_peer_t));
    if (b == NULL) {
        return NULL;
    }
    for (i = 0; i < u->ntargets; i++) {
        const mg_target_t *t = u->targets[i];
        if (t != NULL && t->weight > 0) {
            b->peers[b->n].target = t;
            b->peers[b->n].weight = t->weight;
            b->n++;
        }
    }
    return b;
}

void
mg_balancer_free(mg_balancer_t *b)
{
    free(b);
}

size_t
mg_balancer_size(const mg_balancer_t *b)
{
    return b ? b->n : 0;
}

static int
mg_balancer_tried(const uint8_t *tried, size_t i)
{
    return tried != NULL && (tried[i >> 3] & (1u << (i & 7))) != 0;
}

/* One smooth-WRR step over the peers that are up and, when skip_tried,
 * not in tried.  -1 when no peer qualifies. */
static int
mg_balancer_step(mg_balancer_t *b, const uint8_t *tried, int skip_tried)
{
    mg_balancer_peer_t *best = NULL;
    int64_t             total = 0;
    size_t              i;

    for (i = 0; i < b->n; i++) {
        mg_balancer_peer_t *p = &b->peers[i];

        if (p->down || (skip_tried && mg_balancer_tried(tried, i))) {
            continue;
        }
        p->current += p->weight;
        total += p->weight;
        if (best == NULL || p->current > best->current) {
            best = p;
        }
    }
    if (best == NULL) {
        return -1;
    }
    best->current -= total;
    return (int) (best - b->peers);
}

int
mg_balancer_pick(mg_balancer_t *b, const uint8_t *tried)
{
    int idx;

    if (b == NULL || b->n == 0) {
        return -1;
    }
    if (tried != NULL) {
        idx = mg_balancer_step(b, tried, 1);
        if (idx >= 0) {
            return idx;
        }
    }
    return mg_balancer_step(b, NULL, 0);
}

const mg_target_t *
mg_balancer_target(const mg_balancer_t *b, int idx)
{
    if (b == NULL || idx < 0 || (size_t) idx >= b->n) {
        return NULL;
    }
    return b->peers[idx].target;
}

void
mg_balancer_set_down(mg_balancer_t *b, int idx, int down)
{
    if (b == NULL || idx < 0 || (size_t) idx >= b->n) {
        return;
    }
    b->peers[idx].down = down != 0;
    if (down) {
        /* a target coming back starts even, not with a stale score */
        b->peers[idx].current = 0;
    }
}
