/*
 * mg_balancer.h -- round-robin over an upstream's targets.
 *
 * nginx's smooth weighted round-robin (ngx_http_upstream_round_robin.c):
 * every pick adds each eligible target's weight to its running score,
 * takes the highest score and subtracts the total weight from it.  Weights
 * 5/1/1 give a a b a c a a: heavy targets are spread out, not bunched.
 *
 * A balancer is built per config snapshot and per worker; its state (the
 * scores, the down flags) is the worker's own and never shared, so picks
 * take no lock.  Targets with weight 0 are left out; indexes run over the
 * remaining targets in the upstream's order.
 */
#ifndef MG_BALANCER_H
#define MG_BALANCER_H

#include "../mg_core.h"
#include "../conf/mg_config.h"

typedef struct mg_balancer_s mg_balancer_t;

/* malloc'd; NULL when no target has weight > 0, or on ENOMEM.  The
 * balancer points at u's targets: free it before the snapshot. */
mg_balancer_t *mg_balancer_build(const mg_upstream_t *u);
void mg_balancer_free(mg_balancer_t *b);

/* Number of targets (weight > 0): indexes are 0 .. size - 1. */
size_t mg_balancer_size(const mg_balancer_t *b);

/*
 * Pick the next target.  tried is a bitmap of mg_balancer_size() bits
 * (bit i = tried[i / 8] & (1 << (i % 8))) or NULL: a retry goes to a
 * target not tried yet when one is up; when every target that is up has
 * been tried, the pick is among all targets that are up.  Targets marked
 * down are never picked.  Returns the index, or -1 when every target is
 * down.
 */
int mg_balancer_pick(mg_balancer_t *b, const uint8_t *tried);

/* The target at idx (NULL when out of range). */
const mg_target_t *mg_balancer_target(const mg_balancer_t *b, int idx);

/* Mark idx down (1) or up (0); for health checks and circuit breakers. */
void mg_balancer_set_down(mg_balancer_t *b, int idx, int down);

#endif /* MG_BALANCER_H */
