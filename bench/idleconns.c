/*
 * idleconns -- hold many idle keep-alive connections open on a proxy.
 *
 *   idleconns HOST PORT COUNT [PATH]
 *
 * Opens COUNT connections one after another, sends one keep-alive GET PATH
 * (default /fast) on each, reads the whole Content-Length response, and
 * keeps the socket open. Then prints "ready opened=N failed=F" on stdout,
 * flushes, and sleeps until SIGTERM/SIGINT. On exit every socket is reset
 * (SO_LINGER 0) so 10,000 client ports do not sit in TIME_WAIT and starve
 * the next run of ephemeral ports.
 *
 * Blocking sockets, one at a time: simple, and fast enough (~10k/s on
 * loopback); the point is the proxy's memory once they are idle, not how
 * fast they arrive.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* Read one response with a Content-Length body. 0 if it was a 200. */
static int read_response(int fd)
{
    char buf[16384];
    size_t len = 0;
    char *hend = NULL;
    while (!hend) {
        if (len == sizeof buf - 1)
            return -1;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = 0;
        hend = strstr(buf, "\r\n\r\n");
    }
    if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
        return -1;
    long clen = 0;
    for (const char *p = buf; p < hend;) {
        const char *eol = strstr(p, "\r\n");
        if (strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
        p = eol + 2;
    }
    long have = (long)(len - (size_t)(hend + 4 - buf));
    while (have < clen) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return -1;
        have += n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST PORT COUNT [PATH]\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[3]);
    const char *path = argc > 4 ? argv[4] : "/fast";
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || count < 1) {
        fprintf(stderr, "idleconns: bad arguments\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)count + 64) {
        rl.rlim_cur = (rlim_t)count + 64;
        if (rl.rlim_max < rl.rlim_cur)
            rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            fprintf(stderr, "idleconns: cannot raise open files to %d: %s\n",
                    count + 64, strerror(errno));
            return 1;
        }
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    char req[1024];
    int rlen = snprintf(req, sizeof req,
                        "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n", path,
                        argv[1], argv[2]);
    int *fds = calloc((size_t)count, sizeof *fds);
    if (!fds)
        return 1;
    int opened = 0, failed = 0;
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            failed++;
            continue;
        }
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            write(fd, req, (size_t)rlen) != rlen || read_response(fd) < 0) {
            close(fd);
            failed++;
            continue;
        }
        fds[opened++] = fd;
    }
    printf("ready opened=%d failed=%d\n", opened, failed);
    fflush(stdout);
    while (!g_stop)
        sigsuspend(&old); /* no lost wake-up between test and wait */
    struct linger lg = {1, 0};
    for (int i = 0; i < opened; i++) {
        setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fds[i]);
    }
    return 0;
}
