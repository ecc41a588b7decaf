/*
 * balancer_pick.c -- ns per pick + release of each balancing algorithm at
 * 2, 10, 100 and 1,000 targets, and the 1000/2 ratio (target: <= 2x).
 *
 *   make && cc -O2 -std=gnu11 -D_GNU_SOURCE -Icore -o build/balancer_pick \
 *       bench/balancer_pick.c build/libmoongate.a \
 *       $(pkg-config --libs yaml-0.1 libpcre2-8) -lev -lhttp_parser \
 *       -lcares -lm -lmbedtls -lmbedx509 -lmbedcrypto
 *   build/balancer_pick [iterations]        # default 2,000,000 per cell
 *
 * Table 1 is sequential traffic: each pick is released before the next
 * (consistent hashing gets a different random key each time; latency
 * reports 10..16 ms and the clock moves 0.1 ms per request).  Table 2
 * keeps 4 x targets requests in flight (released oldest first), so every
 * target is busy: least-connections then runs on its heap, O(log n).
 * Targets have weights 100/150/200 in turn.  Each cell is the best of 5
 * runs; run it on an idle machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "upstream/mg_balancer.h"
#include "base/mg_time.h"

static const char *algs[] = { "round-robin", "least-connections",
                              "consistent-hashing", "latency" };
static const size_t sizes[] = { 2, 10, 100, 1000 };

#define NKEYS 4096
static mg_balancer_key_t keys[NKEYS];
static volatile uint64_t sink;

static double
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static mg_balancer_t *
build(const char *alg, size_t n, mg_upstream_t *u, mg_target_t *t,
      mg_target_t **tp, char (*names)[32])
{
    size_t i;

    memset(u, 0, sizeof(*u));
    for (i = 0; i < n; i++) {
        memset(&t[i], 0, sizeof(t[i]));
        snprintf(names[i], sizeof(names[i]), "10.0.%zu.%zu:8000", i / 250,
                 i % 250);
        t[i].target.data = names[i];
        t[i].target.len = strlen(names[i]);
        t[i].host = t[i].target;
        t[i].port = 8000;
        t[i].weight = 100 + (int) (i % 3) * 50;
        t[i].upstream = u;
        tp[i] = &t[i];
    }
    u->targets = tp;
    u->ntargets = n;
    u->slots = 10000;
    u->algorithm.data = alg;
    u->algorithm.len = strlen(alg);
    return mg_balancer_build(u);
}

/* ns per pick + release with `depth` requests in flight (0: sequential) */
static double
run(mg_balancer_t *b, long iters, size_t depth)
{
    static int ring[4096];
    double     t0, best = 1e18;
    size_t     head = 0, held = 0;
    uint64_t   acc = 0;
    int        r;
    long       i;

    for (r = 0; r < 5; r++) {
        t0 = now_ns();
        for (i = 0; i < iters; i++) {
            int idx = mg_balancer_pick(b, NULL, &keys[i & (NKEYS - 1)]);
            mg_time_now += 0.0001;
            if (depth == 0) {
                mg_balancer_release(b, idx, 10 + idx % 7, 0);
            } else {
                ring[(head + held) % depth] = idx;
                if (++held == depth) {
                    int old = ring[head];
                    head = (head + 1) % depth;
                    held--;
                    mg_balancer_release(b, old, 10 + old % 7, 0);
                }
            }
            acc += (uint64_t) idx;
        }
        best = mg_min(best, (now_ns() - t0) / (double) iters);
    }
    while (held > 0) {
        mg_balancer_release(b, ring[head], 10, 0);
        head = (head + 1) % depth;
        held--;
    }
    sink += acc;
    return best;
}

static void
table(const char *title, long iters, int loaded)
{
    static mg_target_t  t[1000];
    static mg_target_t *tp[1000];
    static char         names[1000][32];
    mg_upstream_t       u;
    size_t              a, s;

    printf("\n%s\n", title);
    printf("%-20s %8s %8s %8s %8s %10s\n", "algorithm", "2", "10", "100",
           "1000", "1000/2");
    for (a = 0; a < mg_nelems(algs); a++) {
        double ns[4];
        for (s = 0; s < mg_nelems(sizes); s++) {
            mg_balancer_t *b = build(algs[a], sizes[s], &u, t, tp, names);
            if (b == NULL) {
                fprintf(stderr, "build failed\n");
                exit(1);
            }
            ns[s] = run(b, iters, loaded ? 4 * sizes[s] : 0);
            mg_balancer_free(b);
        }
        printf("%-20s %8.1f %8.1f %8.1f %8.1f %9.2fx\n", algs[a], ns[0], ns[1],
               ns[2], ns[3], ns[3] / ns[0]);
    }
}

int
main(int argc, char **argv)
{
    long   iters = argc > 1 ? atol(argv[1]) : 2000000;
    size_t i;

    if (iters <= 0) {
        fprintf(stderr, "usage: %s [iterations]\n", argv[0]);
        return 2;
    }
    for (i = 0; i < NKEYS; i++) {
        char buf[32];
        int  n = snprintf(buf, sizeof(buf), "client-%zu", i);
        keys[i].hash = mg_balancer_hash(buf, (size_t) n);
        keys[i].valid = 1;
    }
    mg_time_now = 1e9;
    printf("balancer pick + release, ns per request (best of 5 x %ld)\n",
           iters);
    table("sequential (one request at a time)", iters, 0);
    table("loaded (4 x targets in flight: every target busy)", iters, 1);
    return 0;
}
