/*
 * mockdns -- a tiny authoritative-and-recursive-looking DNS responder for
 * tests.
 *
 *   build/mockdns PORT ZONEFILE
 *
 * Answers UDP (and TCP, for truncated answers) on 127.0.0.1:PORT; PORT 0
 * picks a free port.  Prints "ready PORT" once listening, then one line
 * "query NAME TYPE" per query received (before any delay), so a test can
 * count the packets a resolver sent.  SIGHUP re-reads ZONEFILE (a bad
 * file keeps the old zone and says why on stderr); SIGTERM/SIGINT stop.
 *
 * Zone file, one record per line, '#' starts a comment, names are case
 * insensitive, a trailing dot is ignored:
 *
 *   NAME A      TTL  IPV4
 *   NAME AAAA   TTL  IPV6
 *   NAME CNAME  TTL  TARGET
 *   NAME SRV    TTL  PRIORITY WEIGHT PORT TARGET
 *   NAME SERVFAIL          answer SERVFAIL to every query for NAME
 *   NAME REFUSED           answer REFUSED
 *   NAME DELAY  MS         answer MS milliseconds late (test timeouts)
 *   NAME DROP              never answer
 *   NAME NOADD             SRV answers for NAME carry no additional
 *                          section (so the resolver looks targets up)
 *   NAME NOCHASE           a CNAME at NAME is answered alone, its target
 *                          not followed (as an authoritative server of
 *                          another zone would)
 *
 * Semantics: a name with no A/AAAA/CNAME/SRV record gets NXDOMAIN (its
 * flags still apply); an existing name without records of the asked type
 * gets an empty NOERROR answer.  CNAMEs are chased like a recursive
 * resolver does (up to 8 hops) and SRV targets' addresses are added to
 * the additional section.  A UDP answer over 512 bytes is sent truncated
 * (TC) so the client retries over TCP.
 *
 * Rejected: a real server (dnsmasq, unbound) -- not installed everywhere,
 * slower to start, and none of them counts queries or injects faults.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define T_A      1
#define T_CNAME  5
#define T_AAAA   28
#define T_SRV    33

#define F_SERVFAIL 0x01
#define F_REFUSED  0x02
#define F_DROP     0x04
#define F_NOADD    0x08
#define F_NOCHASE  0x10

#define MAX_MSG    65535

typedef struct {
    char          name[256];
    int           type;         /* T_*, or 0 for a flags line */
    uint32_t      ttl;
    unsigned char addr[16];
    char          target[256];
    uint16_t      prio, weight, port;
    int           flags;
    int           delay_ms;
} rec_t;

typedef struct {
    rec_t  *r;
    size_t  n;
} zone_t;

typedef struct pending_s {
    ev_timer                 timer;
    struct sockaddr_storage  peer;
    socklen_t                peerlen;
    size_t                   len;
    unsigned char            msg[];
} pending_t;

typedef struct tcpconn_s {
    ev_io          io;
    unsigned char  buf[2 + MAX_MSG];
    size_t         len;
} tcpconn_t;

static struct ev_loop *g_loop;
static zone_t          g_zone;
static const char     *g_zonefile;
static int             g_udp = -1;

/* ---- zone --------------------------------------------------------------- */

static void
lower(char *s)
{
    for (; *s; s++) {
        if (*s >= 'A' && *s <= 'Z') {
            *s = (char) (*s + 32);
        }
    }
}

static void
canon(char *dst, const char *src)
{
    size_t n = strlen(src);

    if (n > 255) {
        n = 255;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
    if (n > 1 && dst[n - 1] == '.') {
        dst[n - 1] = '\0';
    }
    lower(dst);
}

static int
zone_load(const char *path, zone_t *z)
{
    FILE  *f = fopen(path, "r");
    char   line[1024];
    int    lineno = 0;
    size_t cap = 0;

    z->r = NULL;
    z->n = 0;
    if (f == NULL) {
        fprintf(stderr, "mockdns: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char  *tok[8], *save = NULL, *p = strchr(line, '#');
        int    nt = 0;
        rec_t  r;

        lineno++;
        if (p) {
            *p = '\0';
        }
        for (p = strtok_r(line, " \t\r\n", &save); p && nt < 8;
             p = strtok_r(NULL, " \t\r\n", &save))
        {
            tok[nt++] = p;
        }
        if (nt == 0) {
            continue;
        }
        memset(&r, 0, sizeof(r));
        if (nt < 2) {
            goto bad;
        }
        canon(r.name, tok[0]);
        if (strcasecmp(tok[1], "SERVFAIL") == 0) {
            r.flags = F_SERVFAIL;
        } else if (strcasecmp(tok[1], "REFUSED") == 0) {
            r.flags = F_REFUSED;
        } else if (strcasecmp(tok[1], "DROP") == 0) {
            r.flags = F_DROP;
        } else if (strcasecmp(tok[1], "NOADD") == 0) {
            r.flags = F_NOADD;
        } else if (strcasecmp(tok[1], "NOCHASE") == 0) {
            r.flags = F_NOCHASE;
        } else if (strcasecmp(tok[1], "DELAY") == 0 && nt == 3) {
            r.delay_ms = atoi(tok[2]);
        } else if (nt >= 4) {
            r.ttl = (uint32_t) strtoul(tok[2], NULL, 10);
            if (strcasecmp(tok[1], "A") == 0) {
                r.type = T_A;
                if (inet_pton(AF_INET, tok[3], r.addr) != 1) {
                    goto bad;
                }
            } else if (strcasecmp(tok[1], "AAAA") == 0) {
                r.type = T_AAAA;
                if (inet_pton(AF_INET6, tok[3], r.addr) != 1) {
                    goto bad;
                }
            } else if (strcasecmp(tok[1], "CNAME") == 0) {
                r.type = T_CNAME;
                canon(r.target, tok[3]);
            } else if (strcasecmp(tok[1], "SRV") == 0 && nt == 7) {
                r.type = T_SRV;
                r.prio = (uint16_t) atoi(tok[3]);
                r.weight = (uint16_t) atoi(tok[4]);
                r.port = (uint16_t) atoi(tok[5]);
                canon(r.target, tok[6]);
            } else {
                goto bad;
            }
        } else {
            goto bad;
        }
        if (z->n == cap) {
            rec_t *nr;
            cap = cap ? cap * 2 : 32;
            nr = realloc(z->r, cap * sizeof(rec_t));
            if (nr == NULL) {
                break;
            }
            z->r = nr;
        }
        z->r[z->n++] = r;
        continue;
    bad:
        fprintf(stderr, "mockdns: %s:%d: bad record\n", path, lineno);
        fclose(f);
        free(z->r);
        z->r = NULL;
        z->n = 0;
        return -1;
    }
    fclose(f);
    return 0;
}

static int
name_flags(const char *name, int *delay_ms)
{
    size_t i;
    int    flags = 0;

    *delay_ms = 0;
    for (i = 0; i < g_zone.n; i++) {
        if (strcmp(g_zone.r[i].name, name) == 0) {
            flags |= g_zone.r[i].flags;
            if (g_zone.r[i].delay_ms) {
                *delay_ms = g_zone.r[i].delay_ms;
            }
        }
    }
    return flags;
}

static int
name_exists(const char *name)
{
    size_t i;

    for (i = 0; i < g_zone.n; i++) {
        if (g_zone.r[i].type != 0 && strcmp(g_zone.r[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static const rec_t *
find_cname(const char *name)
{
    size_t i;

    for (i = 0; i < g_zone.n; i++) {
        if (g_zone.r[i].type == T_CNAME
            && strcmp(g_zone.r[i].name, name) == 0)
        {
            return &g_zone.r[i];
        }
    }
    return NULL;
}

/* ---- wire format ---------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t         len;
    size_t         cap;
    int            over;
} wbuf_t;

static void
put(wbuf_t *w, const void *data, size_t n)
{
    if (w->len + n > w->cap) {
        w->over = 1;
        return;
    }
    memcpy(w->p + w->len, data, n);
    w->len += n;
}

static void
put16(wbuf_t *w, unsigned v)
{
    unsigned char b[2] = { (unsigned char) (v >> 8), (unsigned char) v };
    put(w, b, 2);
}

static void
put32(wbuf_t *w, uint32_t v)
{
    put16(w, v >> 16);
    put16(w, v & 0xffff);
}

static void
put_name(wbuf_t *w, const char *name)
{
    const char *p = name;

    while (*p) {
        const char   *dot = strchr(p, '.');
        size_t        n = dot ? (size_t) (dot - p) : strlen(p);
        unsigned char l = (unsigned char) (n > 63 ? 63 : n);
        put(w, &l, 1);
        put(w, p, l);
        p += n;
        if (*p == '.') {
            p++;
        }
    }
    put(w, "", 1);
}

static void
put_rr(wbuf_t *w, const rec_t *r)
{
    size_t at;

    put_name(w, r->name);
    put16(w, (unsigned) r->type);
    put16(w, 1);
    put32(w, r->ttl);
    at = w->len;
    put16(w, 0);                     /* rdlength, patched below */
    switch (r->type) {
    case T_A:
        put(w, r->addr, 4);
        break;
    case T_AAAA:
        put(w, r->addr, 16);
        break;
    case T_CNAME:
        put_name(w, r->target);
        break;
    case T_SRV:
        put16(w, r->prio);
        put16(w, r->weight);
        put16(w, r->port);
        put_name(w, r->target);
        break;
    }
    if (!w->over) {
        size_t rdlen = w->len - at - 2;
        w->p[at] = (unsigned char) (rdlen >> 8);
        w->p[at + 1] = (unsigned char) rdlen;
    }
}

static const char *
type_name(int t, char *buf)
{
    switch (t) {
    case T_A:     return "A";
    case T_AAAA:  return "AAAA";
    case T_CNAME: return "CNAME";
    case T_SRV:   return "SRV";
    }
    sprintf(buf, "TYPE%d", t);
    return buf;
}

/* Parse the question; returns its wire length or -1. */
static int
parse_question(const unsigned char *q, size_t len, char *name, int *qtype)
{
    size_t off = 12, n = 0;

    if (len < 12 || (q[2] & 0x80) || ((q[4] << 8) | q[5]) != 1) {
        return -1;
    }
    for (;;) {
        unsigned l;
        if (off >= len) {
            return -1;
        }
        l = q[off++];
        if (l == 0) {
            break;
        }
        if (l > 63 || off + l > len || n + l + 1 > 255) {
            return -1;
        }
        if (n) {
            name[n++] = '.';
        }
        memcpy(name + n, q + off, l);
        n += l;
        off += l;
    }
    name[n] = '\0';
    if (off + 4 > len) {
        return -1;
    }
    *qtype = (q[off] << 8) | q[off + 1];
    return (int) (off + 4);
}

/*
 * Build the answer to query q into out (cap bytes).  Returns its length,
 * 0 to drop, and sets *delay_ms.
 */
static size_t
answer(const unsigned char *q, size_t qlen, unsigned char *out, size_t cap,
       size_t udp_max, int *delay_ms)
{
    char         qname[256], tbuf[16], cur[256];
    int          qtype, qend, flags, rcode = 0, hops;
    unsigned     an = 0, ar = 0;
    size_t       i;
    wbuf_t       w = { out, 0, cap, 0 };
    const rec_t *cn;

    *delay_ms = 0;
    qend = parse_question(q, qlen, qname, &qtype);
    if (qend < 0) {
        return 0;
    }
    lower(qname);
    printf("query %s %s\n", qname, type_name(qtype, tbuf));
    fflush(stdout);

    flags = name_flags(qname, delay_ms);
    if (flags & F_DROP) {
        return 0;
    }
    put(&w, q, 12);
    put(&w, q + 12, (size_t) qend - 12);
    w.p[2] = (unsigned char) (0x84 | (q[2] & 0x01));   /* QR AA RD */
    w.p[3] = 0x80;                                     /* RA */
    memset(w.p + 6, 0, 6);

    if (flags & F_SERVFAIL) {
        rcode = 2;
    } else if (flags & F_REFUSED) {
        rcode = 5;
    } else if (!name_exists(qname)) {
        rcode = 3;
    } else {
        strcpy(cur, qname);
        for (hops = 0; qtype != T_CNAME && hops < 8; hops++) {
            int dummy;
            cn = find_cname(cur);
            if (cn == NULL) {
                break;
            }
            put_rr(&w, cn);
            an++;
            if (name_flags(cur, &dummy) & F_NOCHASE) {
                cur[0] = '\0';
                break;
            }
            strcpy(cur, cn->target);
        }
        for (i = 0; cur[0] && i < g_zone.n; i++) {
            const rec_t *r = &g_zone.r[i];
            if (r->type == qtype && strcmp(r->name, cur) == 0) {
                put_rr(&w, r);
                an++;
            }
        }
        if (qtype == T_SRV && cur[0] && !(flags & F_NOADD)) {
            for (i = 0; i < g_zone.n; i++) {
                const rec_t *r = &g_zone.r[i];
                size_t       j;
                if (r->type != T_SRV || strcmp(r->name, cur) != 0) {
                    continue;
                }
                for (j = 0; j < g_zone.n; j++) {
                    const rec_t *t = &g_zone.r[j];
                    if ((t->type == T_A || t->type == T_AAAA)
                        && strcmp(t->name, r->target) == 0)
                    {
                        put_rr(&w, t);
                        ar++;
                    }
                }
            }
        }
    }
    if (w.over) {
        return 0;
    }
    w.p[3] = (unsigned char) (0x80 | rcode);
    w.p[6] = (unsigned char) (an >> 8);
    w.p[7] = (unsigned char) an;
    w.p[10] = (unsigned char) (ar >> 8);
    w.p[11] = (unsigned char) ar;
    if (w.len > udp_max) {
        /* truncated: question only, TC set */
        w.len = (size_t) qend;
        w.p[2] |= 0x02;
        memset(w.p + 6, 0, 6);
    }
    return w.len;
}

/* ---- UDP ------------------------------------------------------------------ */

static void
pending_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    pending_t *p = (pending_t *) t;

    (void) revents;
    ev_timer_stop(loop, t);
    sendto(g_udp, p->msg, p->len, 0, (struct sockaddr *) &p->peer,
           p->peerlen);
    free(p);
}

static void
udp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    unsigned char           q[MAX_MSG], out[MAX_MSG];
    struct sockaddr_storage peer;
    socklen_t               plen;
    ssize_t                 n;
    size_t                  len;
    int                     delay;

    (void) revents;
    for (;;) {
        plen = sizeof(peer);
        n = recvfrom(w->fd, q, sizeof(q), 0, (struct sockaddr *) &peer,
                     &plen);
        if (n <= 0) {
            return;
        }
        len = answer(q, (size_t) n, out, sizeof(out), 512, &delay);
        if (len == 0) {
            continue;
        }
        if (delay <= 0) {
            sendto(w->fd, out, len, 0, (struct sockaddr *) &peer, plen);
            continue;
        }
        pending_t *p = malloc(sizeof(*p) + len);
        if (p == NULL) {
            continue;
        }
        memcpy(p->msg, out, len);
        p->len = len;
        p->peer = peer;
        p->peerlen = plen;
        ev_timer_init(&p->timer, pending_cb, delay / 1000.0, 0.);
        ev_timer_start(loop, &p->timer);
    }
}

/* ---- TCP (truncated answers; no delays) ----------------------------------- */

static void
tcp_close(struct ev_loop *loop, tcpconn_t *c)
{
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c);
}

static void
tcp_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tcpconn_t    *c = (tcpconn_t *) w;
    unsigned char out[2 + MAX_MSG];
    ssize_t       n;

    (void) revents;
    n = read(w->fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        tcp_close(loop, c);
        return;
    }
    c->len += (size_t) n;
    while (c->len >= 2) {
        size_t mlen = (size_t) (c->buf[0] << 8 | c->buf[1]), len;
        int    delay;
        if (c->len < 2 + mlen) {
            break;
        }
        len = answer(c->buf + 2, mlen, out + 2, MAX_MSG, MAX_MSG, &delay);
        if (len > 0) {
            out[0] = (unsigned char) (len >> 8);
            out[1] = (unsigned char) len;
            if (write(w->fd, out, len + 2) != (ssize_t) (len + 2)) {
                tcp_close(loop, c);
                return;
            }
        }
        memmove(c->buf, c->buf + 2 + mlen, c->len - 2 - mlen);
        c->len -= 2 + mlen;
    }
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int fd;

    (void) revents;
    while ((fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC))
           >= 0)
    {
        tcpconn_t *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        ev_io_init(&c->io, tcp_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

/* ---- main ----------------------------------------------------------------- */

static void
hup_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    zone_t z;

    (void) loop;
    (void) w;
    (void) revents;
    if (zone_load(g_zonefile, &z) == 0) {
        free(g_zone.r);
        g_zone = z;
    }
}

static void
stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void) w;
    (void) revents;
    ev_break(loop, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sa;
    socklen_t          slen = sizeof(sa);
    ev_io              udp_w, tcp_w;
    ev_signal          hup_w, term_w, int_w;
    long               port;
    char              *end;
    int                tcp, one = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: %s PORT ZONEFILE\n", argv[0]);
        return 2;
    }
    port = strtol(argv[1], &end, 10);
    if (*end || port < 0 || port > 65535) {
        fprintf(stderr, "mockdns: bad port '%s'\n", argv[1]);
        return 2;
    }
    g_zonefile = argv[2];
    if (zone_load(g_zonefile, &g_zone) != 0) {
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);

    /* Port 0: take a free UDP port, then the same number for TCP; a TCP
     * socket of someone else's may hold it, so try again with another. */
    for (int attempt = 0;; attempt++) {
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t) port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        slen = sizeof(sa);
        g_udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (g_udp < 0 || bind(g_udp, (struct sockaddr *) &sa, sizeof(sa)) < 0
            || getsockname(g_udp, (struct sockaddr *) &sa, &slen) < 0)
        {
            fprintf(stderr, "mockdns: udp 127.0.0.1:%ld: %s\n", port,
                    strerror(errno));
            return 1;
        }
        tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        setsockopt(tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (tcp >= 0 && bind(tcp, (struct sockaddr *) &sa, sizeof(sa)) == 0
            && listen(tcp, 64) == 0)
        {
            break;
        }
        if (port != 0 || attempt >= 50) {
            fprintf(stderr, "mockdns: tcp 127.0.0.1:%d: %s\n",
                    ntohs(sa.sin_port), strerror(errno));
            return 1;
        }
        close(tcp);
        close(g_udp);
    }

    g_loop = EV_DEFAULT;
    ev_io_init(&udp_w, udp_cb, g_udp, EV_READ);
    ev_io_start(g_loop, &udp_w);
    ev_io_init(&tcp_w, accept_cb, tcp, EV_READ);
    ev_io_start(g_loop, &tcp_w);
    ev_signal_init(&hup_w, hup_cb, SIGHUP);
    ev_signal_start(g_loop, &hup_w);
    ev_signal_init(&term_w, stop_cb, SIGTERM);
    ev_signal_start(g_loop, &term_w);
    ev_signal_init(&int_w, stop_cb, SIGINT);
    ev_signal_start(g_loop, &int_w);

    printf("ready %d\n", ntohs(sa.sin_port));
    fflush(stdout);
    ev_run(g_loop, 0);
    free(g_zone.r);
    return 0;
}
