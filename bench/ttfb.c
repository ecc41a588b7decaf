/*
 * ttfb -- time to first byte of a streamed response, one stream at a time.
 *
 *   ttfb HOST PORT PATH COUNT
 *
 * COUNT times, sequentially: connect (not timed), write one GET with
 * "Connection: close", then time the first byte of the response (ttfb), the
 * first "data:" of the body (first event), and EOF (total). Prints one line
 *   n=.. errors=.. ttfb_p50_us=.. ttfb_p99_us=.. event_p50_us=..
 *   event_p99_us=.. total_p50_us=.. total_p99_us=..
 * A stream whose status is not 200 or that never shows "data:" counts as an
 * error. Sequential on purpose: this measures latency the proxy adds, not
 * throughput (bench/run uses wrk for that).
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    if (n == 0)
        return 0;
    int i = (int)(p / 100.0 * n);
    return v[i >= n ? n - 1 : i];
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT PATH COUNT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "ttfb: bad address %s\n", argv[1]);
        return 2;
    }
    int count = atoi(argv[4]);
    if (count < 1)
        count = 1;
    char req[2048];
    int rlen = snprintf(req, sizeof req,
                        "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
                        "Connection: close\r\n\r\n", argv[3], argv[1],
                        argv[2]);
    double *fb = calloc((size_t)count, sizeof *fb);
    double *fe = calloc((size_t)count, sizeof *fe);
    double *tt = calloc((size_t)count, sizeof *tt);
    if (!fb || !fe || !tt)
        return 1;
    int ok = 0, errors = 0;
    static char buf[1 << 16], acc[8192];

    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        struct timeval tv = {10, 0};
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            errors++;
            if (fd >= 0)
                close(fd);
            continue;
        }
        double t0 = now_us(), t_fb = 0, t_fe = 0;
        size_t alen = 0;
        int bad = write(fd, req, (size_t)rlen) != rlen;
        while (!bad) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0) {
                bad = n < 0;
                break;
            }
            if (!t_fb)
                t_fb = now_us();
            if (!t_fe) {
                /* keep the head of the response to look for the status and
                 * the first event across read boundaries */
                size_t k = (size_t)n < sizeof acc - 1 - alen
                               ? (size_t)n
                               : sizeof acc - 1 - alen;
                memcpy(acc + alen, buf, k);
                alen += k;
                acc[alen] = 0;
                char *hend = strstr(acc, "\r\n\r\n");
                if (hend && strstr(hend, "data:"))
                    t_fe = now_us();
            }
        }
        double t_end = now_us();
        close(fd);
        if (bad || !t_fe || strncmp(acc, "HTTP/1.1 200", 12) != 0) {
            errors++;
            continue;
        }
        fb[ok] = t_fb - t0;
        fe[ok] = t_fe - t0;
        tt[ok] = t_end - t0;
        ok++;
    }
    qsort(fb, (size_t)ok, sizeof *fb, cmp);
    qsort(fe, (size_t)ok, sizeof *fe, cmp);
    qsort(tt, (size_t)ok, sizeof *tt, cmp);
    printf("n=%d errors=%d ttfb_p50_us=%.0f ttfb_p99_us=%.0f "
           "event_p50_us=%.0f event_p99_us=%.0f total_p50_us=%.0f "
           "total_p99_us=%.0f\n",
           ok, errors, pct(fb, ok, 50), pct(fb, ok, 99), pct(fe, ok, 50),
           pct(fe, ok, 99), pct(tt, ok, 50), pct(tt, ok, 99));
    return ok ? 0 : 1;
}
