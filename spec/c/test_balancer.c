/*
 * test_balancer.c -- smooth weighted round-robin: nginx's sequence,
 * distribution over weights, retries skipping tried targets, weight 0,
 * down targets.
 */
#include "upstream/mg_balancer.c"
#include "tap.h"

static mg_target_t    targets[8];
static mg_target_t   *tptrs[8];
static mg_upstream_t  up;

static void
setup(const int *weights, size_t n)
{
    static const char *names[] = { "a", "b", "c", "d", "e", "f", "g", "h" };
    size_t i;

    memset(&up, 0, sizeof(up));
    for (i = 0; i < n; i++) {
        memset(&targets[i], 0, sizeof(targets[i]));
        targets[i].target.data = names[i];
        targets[i].target.len = 1;
        targets[i].host = targets[i].target;
        targets[i].port = 8000;
        targets[i].weight = weights[i];
        targets[i].upstream = &up;
        tptrs[i] = &targets[i];
    }
    up.targets = tptrs;
    up.ntargets = n;
}

/* Names of the next n picks, e.g. "aabacaa". */
static const char *
seq(mg_balancer_t *b, int n, const uint8_t *tried)
{
    static char buf[64];
    int         i;

    for (i = 0; i < n && i < 63; i++) {
        int idx = mg_balancer_pick(b, tried);
        buf[i] = idx < 0 ? '-' : mg_balancer_target(b, idx)->target.data[0];
    }
    buf[i] = '\0';
    return buf;
}

int
main(void)
{
    mg_balancer_t *b;
    uint8_t        tried[2];
    int            counts[8], i;

    {
        static const int w[] = { 5, 1, 1 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        ok(b != NULL, "build 5/1/1");
        is_int(mg_balancer_size(b), 3, "three targets");
        is_str(seq(b, 7, NULL), "aabacaa", "nginx's smooth sequence");
        is_str(seq(b, 7, NULL), "aabacaa", "and it repeats");
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 3, 2, 1 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 600; i++) {
            counts[mg_balancer_pick(b, NULL)]++;
        }
        ok(counts[0] == 300 && counts[1] == 200 && counts[2] == 100,
           "3/2/1 over 600 picks: %d/%d/%d", counts[0], counts[1],
           counts[2]);
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 100, 0, 100 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        is_int(mg_balancer_size(b), 2, "weight 0 is left out");
        is_str(seq(b, 4, NULL), "acac", "equal weights alternate");
        ok(mg_balancer_target(b, 2) == NULL && mg_balancer_target(b, -1) == NULL,
           "out of range index: NULL");
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 0, 0 };
        setup(w, 2);
        ok(mg_balancer_build(&up) == NULL, "no weight > 0: NULL");
        ok(mg_balancer_build(NULL) == NULL, "no upstream: NULL");
        is_int(mg_balancer_pick(NULL, NULL), -1, "pick on NULL: -1");
    }

    {
        static const int w[] = { 10 };
        setup(w, 1);
        b = mg_balancer_build(&up);
        is_str(seq(b, 3, NULL), "aaa", "single target");
        tried[0] = 1;
        is_str(seq(b, 2, tried), "aa",
               "single target already tried: picked again");
        mg_balancer_set_down(b, 0, 1);
        is_int(mg_balancer_pick(b, NULL), -1, "single target down: -1");
        mg_balancer_set_down(b, 0, 0);
        is_str(seq(b, 1, NULL), "a", "back up");
        mg_balancer_free(b);
    }

    {
        static const int w[] = { 5, 1, 1 };
        setup(w, 3);
        b = mg_balancer_build(&up);
        tried[0] = 1 << 0;          /* a tried */
        is_str(seq(b, 4, tried), "bcbc", "retry skips the tried target");
        tried[0] = (1 << 0) | (1 << 2);
        is_str(seq(b, 2, tried), "bb", "only untried target left");
        tried[0] = 7;
        ok(strchr("abc", seq(b, 1, tried)[0]) != NULL,
           "all tried: picks among all");
        tried[0] = 0;
        memset(counts, 0, sizeof(counts));
        for (i = 0; i < 70; i++) {
            counts[mg_balancer_pick(b, tried)]++;
        }
        ok(counts[0] == 50 && counts[1] == 10 && counts[2] == 10,
           "empty tried bitmap: plain distribution %d/%d/%d", counts[0],
           counts[1], counts[2]);

        mg_balancer_set_down(b, 0, 1);
        is_str(seq(b, 4, NULL), "bcbc", "down target skipped");
        tried[0] = 1 << 1;
        is_str(seq(b, 2, tried), "cc", "down and tried both skipped");
        tried[0] = (1 << 1) | (1 << 2);
        is_str(seq(b, 2, tried), "bc",
               "all up targets tried: among up ones, never the down one");
        mg_balancer_set_down(b, 1, 1);
        mg_balancer_set_down(b, 2, 1);
        is_int(mg_balancer_pick(b, NULL), -1, "all down: -1");
        mg_balancer_set_down(b, 0, 0);
        is_str(seq(b, 2, NULL), "aa", "one back up");
        mg_balancer_set_down(b, 7, 1);   /* out of range: ignored */
        mg_balancer_free(b);
    }

    {
        mg_target_t  many[9];
        mg_target_t *mp[9];
        uint8_t      t2[2] = { 0xff, 0x00 };    /* 0..7 tried, 8 not */
        memset(&up, 0, sizeof(up));
        for (i = 0; i < 9; i++) {
            memset(&many[i], 0, sizeof(many[i]));
            many[i].weight = 1;
            mp[i] = &many[i];
        }
        up.targets = mp;
        up.ntargets = 9;
        b = mg_balancer_build(&up);
        is_int(mg_balancer_pick(b, t2), 8, "bitmap spans bytes: bit 8");
        mg_balancer_free(b);
    }

    return done_testing();
}
