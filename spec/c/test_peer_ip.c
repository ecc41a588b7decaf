/*
 * test_peer_ip.c -- mg_conn_peer_ip, the client address every proxied
 * request formats (X-Forwarded-For, X-Real-IP, logs): IPv4 by hand,
 * IPv6 by inet_ntop; compared with inet_ntop over edge octets.
 */
#include "tap.h"
#include <arpa/inet.h>
#include <string.h>
#include "event/mg_event.h"

static int
check4(const char *ip)
{
    mg_conn_t c;
    char      buf[64], want[64];
    size_t    n;

    memset(&c, 0, sizeof(c));
    c.peer.sin.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &c.peer.sin.sin_addr);
    n = mg_conn_peer_ip(&c, buf, sizeof(buf));
    inet_ntop(AF_INET, &c.peer.sin.sin_addr, want, sizeof(want));
    return ok(n == strlen(want) && strcmp(buf, want) == 0,
              "IPv4 %s -> %s (%zu)", ip, buf, n);
}

int
main(void)
{
    static const char *v4[] = {
        "0.0.0.0", "127.0.0.1", "255.255.255.255", "10.20.3.100",
        "1.10.100.199", "9.99.109.250", "192.168.0.9",
    };
    mg_conn_t c;
    char      buf[64];
    size_t    i, n;

    for (i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        check4(v4[i]);
    }

    memset(&c, 0, sizeof(c));
    c.peer.sin6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &c.peer.sin6.sin6_addr);
    n = mg_conn_peer_ip(&c, buf, sizeof(buf));
    ok(n == 11 && strcmp(buf, "2001:db8::1") == 0, "IPv6 -> %s", buf);

    /* a buffer too small for any IPv4 address: inet_ntop's answer (none) */
    memset(&c, 0, sizeof(c));
    c.peer.sin.sin_family = AF_INET;
    inet_pton(AF_INET, "255.255.255.255", &c.peer.sin.sin_addr);
    n = mg_conn_peer_ip(&c, buf, 8);
    ok(n == 0 && buf[0] == '\0', "short buffer -> empty");

    c.peer.sa.sa_family = AF_UNIX;
    n = mg_conn_peer_ip(&c, buf, sizeof(buf));
    ok(n == 0 && buf[0] == '\0', "no IP family -> empty");
    return done_testing();
}
