/*
 * test_balancer.c -- the four algorithms and the hash inputs.
 *
 * Round-robin: nginx's smooth sequence, weights, retries, down targets.
 * Least-connections: weights with sequential and concurrent traffic, and
 * a randomized check of every pick against a brute-force minimum.
 * Consistent hashing: stickiness, shares by weight, the remapping bound
 * when a target goes or comes, retries and down targets.  Latency: the
 * fastest target wins, slow ones are re-probed as their average decays,
 * recovery, probes of unsampled targets, failures, load spreading.  Hash
 * inputs: each hash_on kind, fallbacks, cookie parsing and generation.
 */
#include "upstream/mg_balancer.c"
#include "upstream/mg_balancer_hash.c"
#include "tap.h"

#define MAXT 1100

static mg_target_t    targets[MAXT];
static mg_target_t   *tptrs[MAXT];
static char           tnames[MAXT][40];
static mg_upstream_t  up;

static void
setup_alg(const char *alg, const int *weights, size_t n)
{
    size_t i;

    memset(&up, 0, sizeof(up));
    for (i = 0; i < n; i++) {
        memset(&targets[i], 0, sizeof(targets[i]));
        if (n <= 26) {
            snprintf(tnames[i], sizeof(tnames[i]), "%c", (int) ('a' + i));
        } else {
            snprintf(tnames[i], sizeof(tnames[i]), "10.0.%zu.%zu:8000",
                     i / 256, i % 256);
        }
        targets[i].target.data = tnames[i];
        targets[i].target.len = strlen(tnames[i]);
        targets[i].host = targets[i].target;
        targets[i].port = 8000;
        targets[i].weight = weights ? weights[i] : 100;
        targets[i].upstream = &up;
        tptrs[i] = &targets[i];
    }
    up.targets = tptrs;
    up.ntargets = n;
    up.slots = 10000;
    if (alg) {
        up.algorithm.data = alg;
        up.algorithm.len = strlen(alg);
    }
}

static void
setup(const int *weights, size_t n)
{
    setup_alg(NULL, weights, n);
}

/* Names of the next n picks, e.g. "aabacaa" (round-robin, no release). */
static const char *
seq(mg_balancer_t *b, int n, const uint8_t *tried)
{
    static char buf[64];
    int         i;

    for (i = 0; i < n && i < 63; i++) {
        int idx = mg_balancer_pick(b, tried, NULL);
        buf[i] = idx < 0 ? '-' : mg_balancer_target(b, idx)->target.data[0];
    }
    buf[i] = '\0';
    return buf;
}

/* The same, releasing each pick at once. */
static const char *
seq_rel(mg_balancer_t *b, int n, const uint8_t *tried)
{
    static char buf[64];
    int         i;

    for (i = 0; i < n && i < 63; i++) {
        int idx = mg_balancer_pick(b, tried, NULL);
        buf[i] = idx < 0 ? '-' : mg_balancer_target(b, idx)->target.data[0];
        mg_balancer_release(b, idx, 1, 0);
    }
    buf[i] = '\0';
    return buf;
}

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t
rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int
near(double got, double want, double tol)
{
    return got >= want - tol && got <= want + tol;
}

/* --- round-robin --------------------------------------------------- */

static void
test_round_robin(void)
{
    mg_balancer_t *b;
    uint8_t        tried[2];
    int            counts[8], i;

    {
        static const int w[] = { 5, 1, 1 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        ok(b != NULL, "rr: build 5/1/1");
        is_int(mg_balancer_size(b), 3, "rr: three targets");
        is_int(mg_balancer_algorithm(b), MG_BALANCER_ROUND_ROBIN,
               "rr: empty algorithm is round-robin");
        is_str(seq(b, 7, NULL), "aabacaa", "rr: nginx's smooth sequence");
        is_str(seq(b, 7, NULL), "aabacaa", "rr: and it repeats");
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 3, 2, 1 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 600; i++) {
            counts[mg_balancer_pick(b, NULL, NULL)]++;
        }
        ok(counts[0] == 300 && counts[1] == 200 && counts[2] == 100,
           "rr: 3/2/1 over 600 picks: %d/%d/%d", counts[0], counts[1],
           counts[2]);
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 100, 0, 100 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        is_int(mg_balancer_size(b), 2, "rr: weight 0 is left out");
        is_str(seq(b, 4, NULL), "acac", "rr: equal weights alternate");
        ok(mg_balancer_target(b, 2) == NULL
               && mg_balancer_target(b, -1) == NULL,
           "rr: out of range index: NULL");
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 0, 0 };
        setup(w, 2);
        ok(mg_balancer_build(&up) == NULL, "rr: no weight > 0: NULL");
        ok(mg_balancer_build(NULL) == NULL, "rr: no upstream: NULL");
        is_int(mg_balancer_pick(NULL, NULL, NULL), -1, "rr: pick on NULL: -1");
        mg_balancer_release(NULL, 0, 1, 0);   /* no crash */
    }

    {
        static const int w[] = { 10 };
        setup(w, 1);
        b = mg_balancer_build(&up);
        is_str(seq(b, 3, NULL), "aaa", "rr: single target");
        tried[0] = 1;
        is_str(seq(b, 2, tried), "aa",
               "rr: single target already tried: picked again");
        mg_balancer_set_down(b, 0, 1);
        is_int(mg_balancer_pick(b, NULL, NULL), -1,
               "rr: single target down: -1");
        mg_balancer_set_down(b, 0, 0);
        is_str(seq(b, 1, NULL), "a", "rr: back up");
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 5, 1, 1 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        tried[0] = 1 << 0;          /* a tried */
        is_str(seq(b, 4, tried), "bcbc", "rr: retry skips the tried target");
        tried[0] = (1 << 0) | (1 << 2);
        is_str(seq(b, 2, tried), "bb", "rr: only untried target left");
        tried[0] = 7;
        ok(strchr("abc", seq(b, 1, tried)[0]) != NULL,
           "rr: all tried: picks among all");
        tried[0] = 0;
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 70; i++) {
            counts[mg_balancer_pick(b, tried, NULL)]++;
        }
        ok(counts[0] == 50 && counts[1] == 10 && counts[2] == 10,
           "rr: empty tried bitmap: plain distribution %d/%d/%d", counts[0],
           counts[1], counts[2]);

        mg_balancer_set_down(b, 0, 1);
        {
            const char *s4 = seq(b, 4, NULL);
            ok(strcmp(s4, "bcbc") == 0 || strcmp(s4, "cbcb") == 0,
               "rr: down target skipped, b and c alternate (%s)", s4);
        }
        tried[0] = 1 << 1;
        is_str(seq(b, 2, tried), "cc", "rr: down and tried both skipped");
        tried[0] = (1 << 1) | (1 << 2);
        ok(strspn(seq(b, 4, tried), "bc") == 4,
           "rr: all up targets tried: among up ones, never the down one");
        mg_balancer_set_down(b, 1, 1);
        mg_balancer_set_down(b, 2, 1);
        is_int(mg_balancer_pick(b, NULL, NULL), -1, "rr: all down: -1");
        mg_balancer_set_down(b, 0, 0);
        is_str(seq(b, 2, NULL), "aa", "rr: one back up");
        mg_balancer_set_down(b, 7, 1);   /* out of range: ignored */
        mg_balancer_free(b);
    }

    {
        uint8_t t2[2] = { 0xff, 0x00 };    /* 0..7 tried, 8 not */
        setup(NULL, 9);
        b = mg_balancer_build(&up);
        is_int(mg_balancer_pick(b, t2, NULL), 8, "rr: bitmap spans bytes");
        mg_balancer_free(b);
    }

    {
        /* 1,000 targets, weights 1..4: one period gives exact counts */
        static int w[1000];
        static int c[1000];
        int        bad = 0, total = 0;
        for (i = 0; i < 1000; i++) {
            w[i] = 1 + i % 4;
            total += w[i];
        }
        setup_alg("round-robin", w, 1000);
        b = mg_balancer_build(&up);
        memset(c, 0, sizeof(c));
        for (i = 0; i < total * 3; i++) {
            c[mg_balancer_pick(b, NULL, NULL)]++;
        }
        for (i = 0; i < 1000; i++) {
            bad += c[i] != 3 * w[i];
        }
        is_int(bad, 0, "rr: 1,000 targets weights 1..4: exact per period");
        mg_balancer_free(b);
    }

    {
        /* weights whose period exceeds the wheel: scaled, still close */
        static const int w[] = { 65535, 32768, 9973 };
        double           tot = 65535.0 + 32768 + 9973;
        setup(w, 3);
        b = mg_balancer_build(&up);
        ok(b->nwheel <= 10000, "rr: long period scaled into the wheel (%zu)",
           b->nwheel);
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 100000; i++) {
            counts[mg_balancer_pick(b, NULL, NULL)]++;
        }
        ok(near(counts[0] / 1e5, w[0] / tot, 0.001)
               && near(counts[1] / 1e5, w[1] / tot, 0.001)
               && near(counts[2] / 1e5, w[2] / tot, 0.001),
           "rr: scaled shares within 0.1%%: %d/%d/%d", counts[0], counts[1],
           counts[2]);
        mg_balancer_free(b);
    }

    {
        /* smoothness: weight 3 of 4 never waits more than 2 picks */
        static const int w[] = { 300, 100 };
        setup(w, 2);
        b = mg_balancer_build(&up);
        is_str(seq(b, 8, NULL), "aaba" "aaba", "rr: gcd reduces 300/100");
        mg_balancer_free(b);
    }
}

/* --- least-connections --------------------------------------------- */

static void
test_least_connections(void)
{
    mg_balancer_t *b;
    int            counts[8], held[64], i, j;
    uint8_t        tried[1];

    {
        static const int w[] = { 3, 2, 1 };
        setup_alg("least-connections", w, 3);
        b = mg_balancer_build(&up);
        is_int(mg_balancer_algorithm(b), MG_BALANCER_LEAST_CONNECTIONS,
               "lc: algorithm parsed");
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 600; i++) {
            int idx = mg_balancer_pick(b, NULL, NULL);
            counts[idx]++;
            mg_balancer_release(b, idx, 1, 0);
        }
        ok(counts[0] == 300 && counts[1] == 200 && counts[2] == 100,
           "lc: sequential traffic follows weights 3/2/1: %d/%d/%d",
           counts[0], counts[1], counts[2]);
        is_str(seq_rel(b, 6, NULL), "abacba", "lc: idle ties in smooth order");
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 200, 100 };
        setup_alg("least-connections", w, 2);
        b = mg_balancer_build(&up);
        for (i = 0; i < 60; i++) {
            mg_balancer_pick(b, NULL, NULL);
        }
        ok(mg_balancer_in_flight(b, 0) == 40 && mg_balancer_in_flight(b, 1) == 20,
           "lc: 60 concurrent over 2:1 -> %u/%u in flight",
           mg_balancer_in_flight(b, 0), mg_balancer_in_flight(b, 1));
        for (i = 0; i < 10; i++) {
            mg_balancer_release(b, 0, 1, 0);
        }
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 5; i++) {
            counts[mg_balancer_pick(b, NULL, NULL)]++;
        }
        ok(counts[0] == 5, "lc: freed capacity on a is refilled first (%d)",
           counts[0]);
        mg_balancer_free(b);
    }

    {
        setup_alg("least-connections", NULL, 3);
        b = mg_balancer_build(&up);
        /* a long request holds a; short ones alternate over b and c */
        is_int(mg_balancer_pick(b, NULL, NULL), 0, "lc: first pick a");
        is_str(seq_rel(b, 6, NULL), "bcbcbc", "lc: busy a is avoided");
        mg_balancer_release(b, 0, 1, 0);
        ok(strchr(seq_rel(b, 3, NULL), 'a') != NULL, "lc: a idle again");

        /* every target busy: the heap decides; a retry skips the top */
        held[0] = mg_balancer_pick(b, NULL, NULL);
        held[1] = mg_balancer_pick(b, NULL, NULL);
        held[2] = mg_balancer_pick(b, NULL, NULL);
        ok(held[0] != held[1] && held[1] != held[2] && held[0] != held[2],
           "lc: three concurrent picks, three targets");
        tried[0] = (uint8_t) (1u << held[0]);
        i = mg_balancer_pick(b, tried, NULL);
        ok(i >= 0 && i != held[0], "lc: retry avoids the tried target (%d)", i);
        mg_balancer_release(b, i, 1, 0);

        mg_balancer_set_down(b, held[1], 1);
        for (i = 0, j = 0; i < 20; i++) {
            int idx = mg_balancer_pick(b, NULL, NULL);
            j += idx == held[1];
            mg_balancer_release(b, idx, 1, 0);
        }
        is_int(j, 0, "lc: down target never picked");
        mg_balancer_release(b, held[1], 1, 0);   /* released while down */
        mg_balancer_set_down(b, held[1], 0);
        is_int(mg_balancer_pick(b, NULL, NULL), held[1],
               "lc: back up and idle: picked first");
        mg_balancer_set_down(b, 0, 1);
        mg_balancer_set_down(b, 1, 1);
        mg_balancer_set_down(b, 2, 1);
        is_int(mg_balancer_pick(b, NULL, NULL), -1, "lc: all down: -1");
        mg_balancer_free(b);
    }

    {
        /* randomized: every pick has the least in_flight/weight among
         * eligible targets; in-flight counts stay consistent */
        static int w[50];
        static int inflight[50];
        int        held_n = 0, bad = 0, bad_count = 0, step;
        static int hold[4000];
        for (i = 0; i < 50; i++) {
            w[i] = 1 + (int) (rnd() % 300);
        }
        setup_alg("least-connections", w, 50);
        b = mg_balancer_build(&up);
        memset(inflight, 0, sizeof(inflight));
        for (step = 0; step < 20000; step++) {
            uint64_t r = rnd();
            if (step % 500 == 0) {
                mg_balancer_set_down(b, (int) (r % 50), (int) (r >> 8) & 1);
            }
            if (held_n > 0 && (r % 100 < 45 || held_n >= 4000)) {
                int k = (int) ((r >> 16) % (uint64_t) held_n);
                int idx = hold[k];
                hold[k] = hold[--held_n];
                inflight[idx]--;
                mg_balancer_release(b, idx, 1, 0);
            } else {
                uint8_t tr[7] = { 0 };
                int     idx, best = -1;
                if (r % 7 == 0) {
                    tr[(r >> 20) % 7] = (uint8_t) (r >> 30);
                }
                idx = mg_balancer_pick(b, tr, NULL);
                for (i = 0; i < 50; i++) {
                    if (b->hot[i].down || mg_balancer_tried(tr, (size_t) i)) {
                        continue;
                    }
                    if (best < 0 || (int64_t) inflight[i] * w[best]
                                        < (int64_t) inflight[best] * w[i])
                    {
                        best = i;
                    }
                }
                if (best >= 0 && idx >= 0
                    && (int64_t) inflight[idx] * w[best]
                           != (int64_t) inflight[best] * w[idx])
                {
                    bad++;
                }
                if (idx >= 0) {
                    inflight[idx]++;
                    hold[held_n++] = idx;
                }
            }
        }
        for (i = 0; i < 50; i++) {
            bad_count += (unsigned) inflight[i] != mg_balancer_in_flight(b, i);
        }
        is_int(bad, 0, "lc: 20,000 random picks/releases: always the least "
                       "in_flight/weight");
        is_int(bad_count, 0, "lc: in-flight counts agree");
        mg_balancer_free(b);
    }
}

/* --- least-connections: the level structure ------------------------ */

/*
 * Every invariant of the least-connections structure, checked against
 * the targets' own counters: an up target with nothing in flight is in
 * the idle stack, a busy up target in the level of its class whose count
 * is its in_flight, a down one in neither; each class's levels ascend
 * strictly and none is empty; a class is in the heap exactly when it has
 * a level, with its first level's count as key; the heap is ordered and
 * every level not in use is in the free pool.  Returns the number of
 * violations.
 */
static int
lc_check(const mg_balancer_t *b)
{
    int    bad = 0;
    size_t i, nidle = 0, nlev = 0, nfree = 0, nheap = 0, seen = 0;
    int32_t j, lv;

    for (i = 0; i < b->n; i++) {
        const mg_balancer_lcpeer_t *q = &b->lc[i];
        if (b->hot[i].down) {
            bad += q->level >= 0;
        } else if (b->hot[i].in_flight == 0) {
            bad += q->level >= 0;
            nidle++;
        } else {
            bad += q->level < 0
                   || b->levels[q->level].count != b->hot[i].in_flight;
        }
    }
    bad += nidle != b->nidle;
    /* the idle stack: each target at most once, flagged; every idle up
     * target in it */
    bad += b->nstack > b->n;
    for (i = 0; i < b->nstack && i <= b->n; i++) {
        j = b->idle_stack[i];
        bad += !b->hot[j].stacked;
        seen += !b->hot[j].down && b->hot[j].in_flight == 0;
    }
    for (i = 0; i < b->n; i++) {
        size_t k, in = 0;
        for (k = 0; k < b->nstack; k++) {
            in += b->idle_stack[k] == (int32_t) i;
        }
        bad += in != b->hot[i].stacked;
    }
    bad += seen != nidle;
    for (i = 0; i < b->nclasses; i++) {
        const mg_balancer_class_t *c = &b->classes[i];
        uint32_t                   prev = 0;
        for (lv = c->first; lv >= 0; lv = b->levels[lv].next) {
            const mg_balancer_level_t *l = &b->levels[lv];
            size_t                     m = 0;
            bad += l->count <= prev || l->head < 0;
            prev = l->count;
            for (j = l->head; j >= 0 && m <= b->n; j = b->lc[j].next) {
                bad += b->lc[j].level != lv || b->lc[j].cls != (int32_t) i
                       || (uint32_t) b->peers[j].weight != c->weight;
                m++;
            }
            nlev++;
        }
        if (c->first >= 0) {
            const mg_balancer_hent_t *e;
            nheap++;
            if (b->hpos[i] < 0) {
                bad++;
                continue;
            }
            e = &b->heap[b->hpos[i]];
            bad += e->idx != i || e->in_flight != b->levels[c->first].count
                   || e->pass != c->pass;
        } else {
            bad += b->hpos[i] >= 0;
        }
    }
    bad += nheap != b->nheap;
    for (i = 1; i < b->nheap; i++) {
        bad += mg_balancer_hent_less(&b->heap[i], &b->heap[(i - 1) / 2]);
    }
    for (lv = b->lfree; lv >= 0 && nfree <= b->n; lv = b->levels[lv].next) {
        nfree++;
    }
    bad += nlev + nfree != b->n;
    return bad;
}

static void
test_lc_levels(void)
{
    mg_balancer_t *b;
    int            i, bad, idx, held[256];

    {
        /* weights 1/1/2/2/3: three classes */
        static const int w[] = { 100, 100, 200, 200, 300 };
        setup_alg("least-connections", w, 5);
        b = mg_balancer_build(&up);
        is_int(b->nclasses, 3, "lc levels: one class per distinct weight");
        is_int(lc_check(b), 0, "lc levels: consistent when built");

        /* 90 concurrent: each class's targets share its share equally */
        for (i = 0; i < 90; i++) {
            held[i] = mg_balancer_pick(b, NULL, NULL);
        }
        ok(mg_balancer_in_flight(b, 0) == 10 && mg_balancer_in_flight(b, 1) == 10
           && mg_balancer_in_flight(b, 2) == 20
           && mg_balancer_in_flight(b, 3) == 20
           && mg_balancer_in_flight(b, 4) == 30,
           "lc levels: 90 in flight by weight: %u %u %u %u %u",
           mg_balancer_in_flight(b, 0), mg_balancer_in_flight(b, 1),
           mg_balancer_in_flight(b, 2), mg_balancer_in_flight(b, 3),
           mg_balancer_in_flight(b, 4));
        is_int(lc_check(b), 0, "lc levels: consistent under load");

        /* release sifting: freeing 5 on target 3 makes it the least
         * loaded by far; the next 5 picks all refill it */
        for (i = 0; i < 5; i++) {
            mg_balancer_release(b, 3, 1, 0);
        }
        is_int(lc_check(b), 0, "lc levels: consistent after releases");
        for (i = 0, bad = 0; i < 5; i++) {
            bad += mg_balancer_pick(b, NULL, NULL) != 3;
        }
        is_int(bad, 0, "lc levels: a release moves its target to the front");

        /* a down target leaves the structure with its count and comes
         * back in the level of its (changed) count */
        mg_balancer_set_down(b, 4, 1);
        is_int(lc_check(b), 0, "lc levels: consistent with a target down");
        for (i = 0; i < 12; i++) {
            mg_balancer_release(b, 4, 1, 0);       /* released while down */
        }
        for (i = 0, bad = 0; i < 40; i++) {
            idx = mg_balancer_pick(b, NULL, NULL);
            bad += idx == 4;
            mg_balancer_release(b, idx, 1, 0);
        }
        is_int(bad, 0, "lc levels: a down target is never picked");
        mg_balancer_set_down(b, 4, 0);
        is_int(mg_balancer_in_flight(b, 4), 18, "lc levels: 18 left on it");
        is_int(lc_check(b), 0, "lc levels: back up, in the level of 18");
        /* 18/300 is now the least (others at 10/100, 20/200): it is
         * refilled until it reaches 30 */
        for (i = 0, bad = 0; i < 12; i++) {
            bad += mg_balancer_pick(b, NULL, NULL) != 4;
        }
        is_int(bad, 0, "lc levels: the target back up gets the picks");
        is_int(lc_check(b), 0, "lc levels: consistent");

        /* everything down, then up: all in flight kept */
        for (i = 0; i < 5; i++) {
            mg_balancer_set_down(b, i, 1);
        }
        is_int(b->nheap + b->nidle, 0, "lc levels: all down: empty");
        is_int(mg_balancer_pick(b, NULL, NULL), -1, "lc levels: all down: -1");
        for (i = 0; i < 5; i++) {
            mg_balancer_set_down(b, i, 0);
        }
        is_int(lc_check(b), 0, "lc levels: all up again: consistent");
        mg_balancer_free(b);
    }

    {
        /* a weight change is a new snapshot: the new balancer follows
         * the new weights, sequential and concurrent */
        static const int w1[] = { 100, 100, 100 };
        static const int w2[] = { 100, 100, 400 };
        int              counts[3] = { 0, 0, 0 };

        setup_alg("least-connections", w1, 3);
        b = mg_balancer_build(&up);
        is_int(b->nclasses, 1, "lc weights: equal weights, one class");
        for (i = 0; i < 60; i++) {
            held[i] = mg_balancer_pick(b, NULL, NULL);
        }
        ok(mg_balancer_in_flight(b, 2) == 20, "lc weights: 1/1/1: 20 on c");
        mg_balancer_free(b);

        setup_alg("least-connections", w2, 3);
        b = mg_balancer_build(&up);
        is_int(b->nclasses, 2, "lc weights: changed to 1/1/4, two classes");
        for (i = 0; i < 60; i++) {
            held[i] = mg_balancer_pick(b, NULL, NULL);
        }
        is_int(mg_balancer_in_flight(b, 2), 40, "lc weights: 1/1/4: 40 on c");
        for (i = 0; i < 60; i++) {
            mg_balancer_release(b, held[i], 1, 0);
        }
        for (i = 0; i < 600; i++) {
            idx = mg_balancer_pick(b, NULL, NULL);
            counts[idx]++;
            mg_balancer_release(b, idx, 1, 0);
        }
        ok(counts[0] == 100 && counts[1] == 100 && counts[2] == 400,
           "lc weights: 1/1/4 sequential: %d/%d/%d", counts[0], counts[1],
           counts[2]);
        is_int(lc_check(b), 0, "lc weights: consistent");
        mg_balancer_free(b);
    }

    {
        /* 1,000 targets, 3 weights, random traffic with downs and
         * retries: exact least ratio every time (the scan is the
         * reference) and the structure intact */
        static int hold[8000];
        int        held_n = 0, step, worse = 0, broken = 0;
        static int w[1000];
        for (i = 0; i < 1000; i++) {
            w[i] = 100 + (i % 3) * 50;
        }
        setup_alg("least-connections", w, 1000);
        b = mg_balancer_build(&up);
        for (step = 0; step < 60000; step++) {
            uint64_t r = rnd();
            if (step % 997 == 0) {
                mg_balancer_set_down(b, (int) (r % 1000), (int) (r >> 12) & 1);
            }
            if (held_n > 0 && (r % 100 < 48 || held_n >= 8000)) {
                int k = (int) ((r >> 16) % (uint64_t) held_n);
                idx = hold[k];
                hold[k] = hold[--held_n];
                mg_balancer_release(b, idx, 1, 0);
            } else {
                int      ref = mg_balancer_lc_scan(b, NULL);
                uint64_t rf = ref >= 0 ? b->hot[ref].in_flight : 0;
                idx = mg_balancer_pick(b, NULL, NULL);
                if (idx >= 0 && ref >= 0
                    && (uint64_t) (b->hot[idx].in_flight - 1) * w[ref]
                           != rf * w[idx])
                {
                    worse++;
                }
                if (idx >= 0) {
                    hold[held_n++] = idx;
                }
            }
            if (step % 5000 == 0) {
                broken += lc_check(b);
            }
        }
        is_int(worse, 0, "lc 1,000 targets: 60,000 random steps, every pick "
                         "the least in_flight/weight");
        is_int(broken + lc_check(b), 0, "lc 1,000 targets: structure intact");
        while (held_n > 0) {
            mg_balancer_release(b, hold[--held_n], 1, 0);
        }
        is_int(lc_check(b), 0, "lc 1,000 targets: all released: consistent");
        mg_balancer_free(b);
    }
    (void) held;
}

/* --- consistent hashing -------------------------------------------- */

static int
ch_owner(mg_balancer_t *b, uint64_t h)
{
    mg_balancer_key_t k = { h, 1 };
    int               idx = mg_balancer_pick(b, NULL, &k);
    mg_balancer_release(b, idx, 0, 0);
    return idx;
}

static void
test_consistent_hashing(void)
{
    mg_balancer_t *b, *b2;
    int            counts[16], i, moved, stray;
    static short   owner[100000];
    enum { K = 100000 };

    {
        setup_alg("consistent-hashing", NULL, 4);
        b = mg_balancer_build(&up);
        is_int(mg_balancer_algorithm(b), MG_BALANCER_CONSISTENT_HASHING,
               "ch: algorithm parsed");
        {
            mg_balancer_key_t k = { mg_balancer_hash("alice", 5), 1 };
            int first = mg_balancer_pick(b, NULL, &k), same = 1;
            for (i = 0; i < 50; i++) {
                same &= mg_balancer_pick(b, NULL, &k) == first;
            }
            ok(same, "ch: a key always lands on the same target");
        }
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < K; i++) {
            counts[ch_owner(b, rnd())]++;
        }
        ok(near(counts[0] / (double) K, 0.25, 0.02)
               && near(counts[1] / (double) K, 0.25, 0.02)
               && near(counts[2] / (double) K, 0.25, 0.02)
               && near(counts[3] / (double) K, 0.25, 0.02),
           "ch: 4 equal targets within 2%% of 25%%: %d/%d/%d/%d", counts[0],
           counts[1], counts[2], counts[3]);
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 200, 100 };
        double share;
        setup_alg("consistent-hashing", w, 2);
        b = mg_balancer_build(&up);
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < K; i++) {
            counts[ch_owner(b, rnd())]++;
        }
        share = counts[0] / (double) K;
        ok(near(share, 2.0 / 3, 0.015),
           "ch: weights 2:1 give %.3f (ratio %.2f)", share,
           counts[0] / (double) counts[1]);
        mg_balancer_free(b);
    }

    {
        /* remove one of ten: only its keys move */
        static const int w[] = { 100, 100, 100, 100, 100,
                                 100, 100, 100, 100, 100, 100 };
        setup_alg("consistent-hashing", w, 10);
        b = mg_balancer_build(&up);
        rng_state = 12345;
        for (i = 0; i < K; i++) {
            owner[i] = (short) ch_owner(b, rnd());
        }
        /* targets 0..9 without 3: new index j maps to old j + (j >= 3) */
        tptrs[3] = &targets[9];
        up.ntargets = 9;
        b2 = mg_balancer_build(&up);
        rng_state = 12345;
        moved = 0;
        stray = 0;
        for (i = 0; i < K; i++) {
            int o = ch_owner(b2, rnd());
            int old = o == 3 ? 9 : o;      /* index 3 now holds target 9 */
            if (old != owner[i]) {
                moved++;
                stray += owner[i] != 3;
            }
        }
        ok(near(moved / (double) K, 0.1, 0.015) && stray == 0,
           "ch: one of 10 removed: %.2f%% of keys move, %d not from it",
           moved * 100.0 / K, stray);
        mg_balancer_free(b2);

        /* add an 11th: only keys that go to it move */
        tptrs[3] = &targets[3];
        tptrs[10] = &targets[10];
        memset(&targets[10], 0, sizeof(targets[10]));
        targets[10].target.data = "k";
        targets[10].target.len = 1;
        targets[10].weight = 100;
        up.ntargets = 11;
        b2 = mg_balancer_build(&up);
        rng_state = 12345;
        moved = 0;
        stray = 0;
        for (i = 0; i < K; i++) {
            int o = ch_owner(b2, rnd());
            if (o != owner[i]) {
                moved++;
                stray += o != 10;
            }
        }
        ok(near(moved / (double) K, 1.0 / 11, 0.015) && stray == 0,
           "ch: an 11th added: %.2f%% move, %d elsewhere than to it",
           moved * 100.0 / K, stray);
        mg_balancer_free(b2);

        /* down: only the down target's keys move, spread over others */
        mg_balancer_set_down(b, 3, 1);
        rng_state = 12345;
        moved = 0;
        stray = 0;
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < K; i++) {
            int o = ch_owner(b, rnd());
            if (o != owner[i]) {
                moved++;
                stray += owner[i] != 3;
                counts[o]++;
            }
        }
        ok(stray == 0 && near(moved / (double) K, 0.1, 0.015)
               && counts[3] == 0,
           "ch: target down: only its keys move (%d)", moved);
        for (i = 0, stray = 0; i < 10; i++) {
            stray += i != 3 && counts[i] < moved / 20;
        }
        is_int(stray, 0, "ch: its keys spread over the other nine");
        mg_balancer_set_down(b, 3, 0);
        mg_balancer_free(b);
    }

    {
        uint8_t           tried[1];
        mg_balancer_key_t k = { mg_balancer_hash("bob", 3), 1 };
        int               first, second, again;

        setup_alg("consistent-hashing", NULL, 5);
        b = mg_balancer_build(&up);
        first = mg_balancer_pick(b, NULL, &k);
        tried[0] = (uint8_t) (1u << first);
        second = mg_balancer_pick(b, tried, &k);
        again = mg_balancer_pick(b, tried, &k);
        ok(second >= 0 && second != first && again == second,
           "ch: a retry walks on to another target, the same each time");
        tried[0] = 0x1f;
        is_int(mg_balancer_pick(b, tried, &k), first,
               "ch: all tried: back to the key's own target");
        for (i = 0; i < 5; i++) {
            mg_balancer_set_down(b, i, 1);
        }
        is_int(mg_balancer_pick(b, NULL, &k), -1, "ch: all down: -1");
        for (i = 0; i < 5; i++) {
            mg_balancer_set_down(b, i, 0);
        }
        is_str(seq(b, 5, NULL), "abcde",
               "ch: no key: round-robin (Kong without a hash input)");
        {
            mg_balancer_key_t bad = { 42, 0 };
            i = mg_balancer_pick(b, NULL, &bad);
            is_int(i, 0, "ch: invalid key: round-robin too");
        }
        mg_balancer_free(b);
    }

    {
        setup_alg("consistent-hashing", NULL, 3);
        up.slots = 10;
        b = mg_balancer_build(&up);
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 1000; i++) {
            counts[ch_owner(b, rnd())]++;
        }
        ok(b->nslots == 10 && counts[0] + counts[1] + counts[2] == 1000,
           "ch: 10 slots work");
        mg_balancer_free(b);
        up.slots = 5;
        b = mg_balancer_build(&up);
        is_int(b->nslots, 10000, "ch: slots out of 10..65536: default");
        mg_balancer_free(b);
    }
}

/* --- latency ------------------------------------------------------- */

/* Sequential requests, each taking lat[idx] ms; the clock moves by the
 * latency of each request. */
static void
lat_run(mg_balancer_t *b, const double *lat, int n, int *counts)
{
    int i;

    for (i = 0; i < n; i++) {
        int idx = mg_balancer_pick(b, NULL, NULL);
        counts[idx]++;
        mg_time_now += lat[idx] / 1000.0;
        mg_balancer_release(b, idx, lat[idx], 0);
    }
}

static void
test_latency(void)
{
    mg_balancer_t *b;
    int            counts[64], i, j;
    double         lat[64];

    mg_time_now = 1000.0;
    {
        setup_alg("latency", NULL, 3);
        b = mg_balancer_build(&up);
        is_int(mg_balancer_algorithm(b), MG_BALANCER_LATENCY,
               "lat: algorithm parsed");
        lat[0] = 10;
        lat[1] = 20;
        lat[2] = 40;
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 3, counts);
        ok(counts[0] == 1 && counts[1] == 1 && counts[2] == 1,
           "lat: cold start probes each target once");
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 20000, counts);          /* ~ 200 s */
        ok(counts[0] > 19000 && counts[1] > counts[2] && counts[2] >= 5,
           "lat: 10/20/40 ms -> %d/%d/%d (fastest wins, others re-probed)",
           counts[0], counts[1], counts[2]);

        /* a turns slow: traffic leaves it; fast again: it comes back */
        lat[0] = 200;
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 5000, counts);
        ok(counts[1] > 4000 && counts[0] < 100,
           "lat: a at 200 ms -> %d/%d/%d", counts[0], counts[1], counts[2]);
        lat[0] = 10;
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 5000, counts);           /* <= 100 s */
        ok(counts[0] > 3000, "lat: a fast again recovers: %d/%d/%d",
           counts[0], counts[1], counts[2]);

        /* failures count as MG_BALANCER_FAIL_MS */
        for (i = 0; i < 3; i++) {
            int idx = mg_balancer_pick(b, NULL, NULL);
            mg_balancer_release(b, idx, 10, idx == 0);
        }
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 500, counts);
        ok(counts[0] == 0, "lat: a failing target is avoided: %d/%d/%d",
           counts[0], counts[1], counts[2]);
        mg_balancer_free(b);
    }

    {
        /* weight divides latency: 20 ms at 200 beats 15 ms at 100 */
        static const int w[] = { 200, 100 };
        setup_alg("latency", w, 2);
        b = mg_balancer_build(&up);
        lat[0] = 20;
        lat[1] = 15;
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 2000, counts);
        ok(counts[0] > 1900, "lat: weight-aware: %d/%d", counts[0], counts[1]);
        mg_balancer_free(b);
    }

    {
        /* concurrency: (in_flight + 1) spreads a burst */
        setup_alg("latency", NULL, 3);
        b = mg_balancer_build(&up);
        for (i = 0; i < 30; i++) {
            int idx = mg_balancer_pick(b, NULL, NULL);
            mg_balancer_release(b, idx, 10, 0);
        }
        for (i = 0; i < 30; i++) {
            mg_balancer_pick(b, NULL, NULL);
        }
        ok(mg_balancer_in_flight(b, 0) == 10 && mg_balancer_in_flight(b, 1) == 10
               && mg_balancer_in_flight(b, 2) == 10,
           "lat: a burst of 30 over equal targets: %u/%u/%u",
           mg_balancer_in_flight(b, 0), mg_balancer_in_flight(b, 1),
           mg_balancer_in_flight(b, 2));
        mg_balancer_free(b);
    }

    {
        /* unsampled targets are probed one request at a time */
        setup_alg("latency", NULL, 4);
        b = mg_balancer_build(&up);
        for (i = 0; i < 8; i++) {
            mg_balancer_pick(b, NULL, NULL);
        }
        ok(mg_balancer_in_flight(b, 0) == 2 && mg_balancer_in_flight(b, 3) == 2,
           "lat: cold burst of 8 over 4 unsampled targets: 2 each");
        mg_balancer_free(b);

        setup_alg("latency", NULL, 3);
        b = mg_balancer_build(&up);
        i = mg_balancer_pick(b, NULL, NULL);
        mg_balancer_release(b, i, 5, 0);         /* i sampled, fast */
        j = mg_balancer_pick(b, NULL, NULL);
        ok(j != i, "lat: an unsampled target is probed before a fast one");
        mg_balancer_free(b);
    }

    {
        /* more than 16 targets: power of two choices */
        setup_alg("latency", NULL, 40);
        b = mg_balancer_build(&up);
        for (i = 0; i < 40; i++) {
            lat[i] = i == 7 ? 5 : 50;
        }
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 400, counts);
        for (i = 0, j = 0; i < 40; i++) {
            j += b->peers[i].sampled;
        }
        is_int(j, 40, "lat p2c: every target probed within 400 requests");
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 40000, counts);
        ok(counts[7] > 40000 * 2 / 40 * 0.8,
           "lat p2c: the fast target gets its 2/n of pairs: %d", counts[7]);
        mg_balancer_free(b);
    }

    {
        uint8_t tried[1];
        setup_alg("latency", NULL, 3);
        b = mg_balancer_build(&up);
        lat[0] = 5;
        lat[1] = 10;
        lat[2] = 20;
        memset(counts, 0, sizeof(counts));
        lat_run(b, lat, 10, counts);
        tried[0] = 1;
        i = mg_balancer_pick(b, tried, NULL);
        is_int(i, 1, "lat: a retry takes the best untried target");
        mg_balancer_release(b, i, 10, 0);
        mg_balancer_set_down(b, 0, 1);
        mg_balancer_set_down(b, 1, 1);
        i = mg_balancer_pick(b, NULL, NULL);
        is_int(i, 2, "lat: down targets are skipped");
        mg_balancer_release(b, i, 20, 0);
        mg_balancer_set_down(b, 2, 1);
        is_int(mg_balancer_pick(b, NULL, NULL), -1, "lat: all down: -1");
        mg_balancer_free(b);
    }

    {
        /* p2c with most targets down still finds the live one */
        setup_alg("latency", NULL, 40);
        b = mg_balancer_build(&up);
        for (i = 0; i < 40; i++) {
            mg_balancer_set_down(b, i, i != 33);
        }
        for (i = 0, j = 0; i < 50; i++) {
            int idx = mg_balancer_pick(b, NULL, NULL);
            j += idx == 33;
            mg_balancer_release(b, idx, 10, 0);
        }
        is_int(j, 50, "lat p2c: 39 of 40 down: the live one, every time");
        mg_balancer_free(b);
    }
}

/* --- hash inputs --------------------------------------------------- */

typedef struct {
    const char *name;
    const char *value;
} hdr_t;

static const hdr_t *cur_hdrs;

static size_t
get_header(void *ctx, mg_str_t name, mg_str_t *out, size_t max)
{
    const hdr_t *h;
    size_t       n = 0;

    (void) ctx;
    for (h = cur_hdrs; h && h->name; h++) {
        mg_str_t hn = { h->name, strlen(h->name) };
        if (mg_str_caseeq(hn, name) && n < max) {
            out[n].data = h->value;
            out[n].len = strlen(h->value);
            n++;
        }
    }
    return n;
}

static mg_str_t
S(const char *s)
{
    mg_str_t r = { s, s ? strlen(s) : 0 };
    return r;
}

static uint64_t
H(const char *s)
{
    return mg_balancer_hash(s, strlen(s));
}

static mg_upstream_t hu;
static mg_balancer_req_t req;

static void
hreset(const char *on, const char *fallback)
{
    memset(&hu, 0, sizeof(hu));
    memset(&req, 0, sizeof(req));
    hu.hash_on = S(on);
    hu.hash_fallback = S(fallback);
    req.get_header = get_header;
    cur_hdrs = NULL;
}

/* hash_key with a roomy cookie buffer; returns the hash or 0 */
static char     cbuf[256];
static size_t   clen;

static uint64_t
key_of(void)
{
    mg_balancer_key_t k;
    int               rc = mg_balancer_hash_key(&hu, &req, &k, cbuf,
                                                sizeof(cbuf), &clen);
    if (rc != k.valid) {
        return 1;       /* never a real hash in these tests */
    }
    return rc ? k.hash : 0;
}

static void
test_hash_inputs(void)
{
    static const mg_str_t names[] = { { "", 0 }, { "user", 4 }, { "v", 1 } };
    mg_str_t              caps[3];

    ok(H("a") != H("b") && H("a") == mg_balancer_hash("a", 1)
           && H("") != 0,
       "hash: deterministic, distinct");

    hreset("none", "ip");
    req.client_ip = S("10.0.0.1");
    is_int(key_of(), 0, "hash_on none: no key (round-robin)");

    hreset("consumer", "none");
    req.consumer_id = S("c-1");
    ok(key_of() == H("c-1"), "hash_on consumer");
    req.consumer_id = S("");
    is_int(key_of(), 0, "consumer absent, fallback none: no key");

    hreset("consumer", "ip");
    req.client_ip = S("192.0.2.7");
    ok(key_of() == H("192.0.2.7"), "consumer absent: fallback ip");

    hreset("ip", "none");
    req.client_ip = S("2001:db8::1");
    ok(key_of() == H("2001:db8::1"), "hash_on ip (v6 text)");

    hreset("path", "none");
    req.path = S("/v1/chat");
    ok(key_of() == H("/v1/chat"), "hash_on path");

    {
        static const hdr_t h1[] = { { "X-Tenant", "acme" }, { NULL, NULL } };
        static const hdr_t h2[] = { { "x-tenant", "a" }, { "Other", "z" },
                                    { "X-TENANT", "b" }, { NULL, NULL } };
        static const hdr_t h3[] = { { "X-Tenant", "" }, { NULL, NULL } };
        hreset("header", "ip");
        hu.hash_on_header = S("X-Tenant");
        req.client_ip = S("10.1.1.1");
        cur_hdrs = h1;
        ok(key_of() == H("acme"), "hash_on header");
        cur_hdrs = h2;
        ok(key_of() == H("a, b"), "header twice: values joined with \", \"");
        cur_hdrs = h3;
        ok(key_of() == H(""), "empty header value is an input (Kong)");
        cur_hdrs = NULL;
        ok(key_of() == H("10.1.1.1"), "header absent: fallback ip");
        hu.hash_fallback = S("header");
        hu.hash_fallback_header = S("Other");
        {
            static const hdr_t h4[] = { { "Other", "z" }, { NULL, NULL } };
            cur_hdrs = h4;
            ok(key_of() == H("z"), "fallback header uses hash_fallback_header");
        }
    }

    {
        static const hdr_t c1[] = {
            { "Cookie", "a=1; sessx=no; sess=xyz; b=2" }, { NULL, NULL } };
        static const hdr_t c2[] = {
            { "Cookie", "a=1" }, { "Cookie", "SESS = v w ;b=1" },
            { NULL, NULL } };
        static const hdr_t c3[] = { { "Cookie", "sess=" }, { NULL, NULL } };
        static const hdr_t c4[] = { { "Cookie", "x=1,sess=comma" },
                                    { NULL, NULL } };
        char     small[16];
        size_t   sl = 99;
        mg_balancer_key_t k;
        uint64_t first;

        hreset("cookie", "none");
        hu.hash_on_cookie = S("sess");
        hu.hash_on_cookie_path = S("/app");
        cur_hdrs = c1;
        ok(key_of() == H("xyz") && clen == 0,
           "cookie: found among several, no Set-Cookie");
        cur_hdrs = c2;
        ok(key_of() == H("v w "),
           "cookie: second Cookie header, case-insensitive name, spaces "
           "around '=' skipped, value up to ';' (nginx)");
        cur_hdrs = c3;
        ok(key_of() == H("") && clen == 0, "cookie: empty value is an input");
        cur_hdrs = c4;
        ok(key_of() == H("comma"), "cookie: ',' also separates (nginx)");

        cur_hdrs = NULL;
        first = key_of();
        ok(first != 0 && clen == mg_balancer_cookie_size(&hu)
               && clen == strlen("sess=") + 36 + strlen("; Path=/app")
                              + strlen("; Same-Site=Lax; HttpOnly"),
           "cookie absent: one generated (%zu bytes)", clen);
        ok(memcmp(cbuf, "sess=", 5) == 0 && cbuf[5 + 14] == '4'
               && cbuf[5 + 8] == '-' && cbuf[5 + 23] == '-'
               && strchr("89ab", cbuf[5 + 19]) != NULL
               && memcmp(cbuf + 41, "; Path=/app; Same-Site=Lax; HttpOnly",
                         36) == 0,
           "cookie: Set-Cookie %.*s", (int) clen, cbuf);
        ok(first == mg_balancer_hash(cbuf + 5, 36),
           "cookie: the key is the hash of the generated value");
        ok(key_of() != first, "cookie: each request without one gets its own");
        ok(mg_balancer_hash_key(&hu, &req, &k, small, sizeof(small), &sl) == 0
               && sl == 0 && !k.valid,
           "cookie: buffer too small: no key, no Set-Cookie");
        hu.hash_on_cookie_path = S("");
        key_of();
        ok(memmem(cbuf, clen, "; Path=/;", 9) != NULL,
           "cookie: path defaults to /");
    }

    {
        hreset("query_arg", "ip");
        hu.hash_on_query_arg = S("user");
        req.client_ip = S("10.9.9.9");
        req.query = S("a=1&user=bob&x");
        ok(key_of() == H("bob"), "query_arg: found");
        req.query = S("username=x&user=b%20o+b");
        ok(key_of() == H("b o b"), "query_arg: exact name, value decoded "
                                   "(%%20 and +)");
        req.query = S("us%65r=enc");
        ok(key_of() == H("enc"), "query_arg: name decoded too");
        req.query = S("user=z&a=&user=a&user");
        ok(key_of() == H("a,true,z"),
           "query_arg: several: sorted, joined with ',', bare arg is true");
        req.query = S("user=");
        ok(key_of() == H(""), "query_arg: empty value is an input");
        req.query = S("User=x&&");
        ok(key_of() == H("10.9.9.9"), "query_arg absent: fallback ip");
        req.query = S("user=%zz%4");
        ok(key_of() == H("%zz%4"), "query_arg: bad escapes kept as they are");
        {
            static char q[2400];
            size_t      n = 0;
            for (int a = 0; a < 100; a++) {
                n += (size_t) snprintf(q + n, sizeof(q) - n, "p%d=1&", a);
            }
            snprintf(q + n, sizeof(q) - n, "user=late");
            req.query = S(q);
            ok(key_of() == H("10.9.9.9"),
               "query_arg: past the first 100 args: not seen (Kong)");
        }
        hu.hash_fallback = S("query_arg");
        hu.hash_fallback_query_arg = S("t");
        req.query = S("t=9");
        ok(key_of() == H("9"), "fallback query_arg uses its own name");
    }

    {
        hreset("uri_capture", "path");
        hu.hash_on_uri_capture = S("user");
        req.path = S("/p");
        caps[0] = S("x");
        caps[1] = S("u42");
        caps[2] = S("vv");
        req.ncaptures = 3;
        req.capture_names = names;
        req.captures = caps;
        ok(key_of() == H("u42"), "uri_capture: named group");
        caps[1].data = NULL;
        caps[1].len = 0;
        ok(key_of() == H("/p"), "uri_capture: unmatched group: fallback path");
        hu.hash_on_uri_capture = S("1");
        ok(key_of() == H("/p"), "uri_capture: by name only (Kong)");
        hu.hash_fallback = S("uri_capture");
        hu.hash_fallback_uri_capture = S("v");
        ok(key_of() == H("vv"), "fallback uri_capture");
    }

    hreset("bogus", "ip");
    req.client_ip = S("1.2.3.4");
    is_int(key_of(), 0, "unknown hash_on: no key");
}

int
main(void)
{
    test_round_robin();
    test_least_connections();
    test_lc_levels();
    test_consistent_hashing();
    test_latency();
    test_hash_inputs();
    return done_testing();
}
