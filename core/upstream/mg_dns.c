/*
 * mg_dns.c -- c-ares on libev with a per-name TTL cache, see mg_dns.h.
 *
 * Objects: an entry per name (the cache: answer, expiry, last type that
 * succeeded, the query in flight if any); a query per entry being
 * resolved (walks dns_order, one ares_search() per type, plus the
 * lookups of SRV targets and CNAME targets it waits on); a waiter per
 * caller of a query (the handle callers cancel), or per parent query for
 * those sub-lookups.  A query owns its own copy of the answer, detaches
 * from its entry before any callback runs, then frees itself: callbacks
 * may resolve and cancel freely, and nothing they do can free the memory
 * being delivered.
 *
 * Sub-lookups share queries like callers do, so a CNAME or SRV loop could
 * make a query wait on itself; joining is refused when the query joined
 * already waits, through its parents, on the one asking ("recursion
 * detected"), and depth is capped.
 *
 * libev drives c-ares: the sock_state callback starts and stops one
 * ev_io per c-ares socket, and one ev_timer follows ares_timeout().
 */
#include <arpa/inet.h>
#include <ares.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include "../base/mg_log.h"
#include "mg_dns.h"

#define MG_DNS_NAME_MAX    255
#define MG_DNS_MAX_DEPTH   8        /* CNAME / SRV target nesting */
#define MG_DNS_MAX_ADDRS   64       /* per answer */
#define MG_DNS_MAX_RRS     64       /* parsed per reply */
#define MG_DNS_MAX_TYPES   5
#define MG_DNS_CACHE_MAX   10000    /* Kong dns_cache_size default */
#define MG_DNS_TTL_MAX     0x7fffffff

#define MG_DNS_T_LAST      (-1)
#define MG_DNS_T_A         1
#define MG_DNS_T_CNAME     5
#define MG_DNS_T_AAAA      28
#define MG_DNS_T_SRV       33
#define MG_DNS_C_IN        1

/* Kong's messages (lua-resty-dns rcodes, Kong's client errors). */
static const char mg_dns_err_empty[] =
    "dns client error: 101 empty record received";
static const char mg_dns_err_nxdomain[] = "dns server error: 3 name error";
static const char mg_dns_err_servfail[] =
    "dns server error: 2 server failure";
static const char mg_dns_err_formerr[] = "dns server error: 1 format error";
static const char mg_dns_err_notimp[] = "dns server error: 4 not implemented";
static const char mg_dns_err_refused[] = "dns server error: 5 refused";
static const char mg_dns_err_timeout[] = "timeout";
static const char mg_dns_err_recursion[] = "recursion detected";
static const char mg_dns_err_name[] = "invalid name";
static const char mg_dns_err_nomem[] = "out of memory";

typedef struct mg_dns_query_s  mg_dns_query_t;
typedef struct mg_dns_waiter_s mg_dns_waiter_t;
typedef struct mg_dns_entry_s  mg_dns_entry_t;
typedef struct mg_dns_host_s   mg_dns_host_t;
typedef struct mg_dns_sock_s   mg_dns_sock_t;

struct mg_dns_waiter_s {
    mg_dns_waiter_t *next;
    mg_dns_waiter_t *prev;
    mg_dns_query_t  *q;          /* the query waited on */
    mg_dns_query_t  *parent;     /* sub-lookup: the query that needs it */
    mg_dns_cb        cb;
    void            *ctx;
    uint16_t         port;       /* sub-lookup of an SRV target */
    uint16_t         weight;
    uint16_t         priority;
    unsigned         srv:1;
};

struct mg_dns_entry_s {
    mg_dns_entry_t  *next;       /* hash chain */
    uint32_t         hash;
    int              status;
    const char      *error;
    mg_dns_addr_t   *addrs;
    size_t           naddrs;
    ev_tstamp        expires;
    ev_tstamp        stale_until;
    ev_tstamp        refresh_after;  /* failed refresh: wait error_ttl */
    int              last_type;      /* 0 when none */
    mg_dns_query_t  *query;          /* in flight, or NULL */
    char             name[];
};

struct mg_dns_host_s {
    mg_dns_host_t   *next;
    uint32_t         hash;
    mg_dns_addr_t    a4;
    mg_dns_addr_t    a6;
    unsigned         have4:1;
    unsigned         have6:1;
    char             name[];
};

struct mg_dns_query_s {
    mg_dns_t        *d;
    mg_dns_entry_t  *entry;
    mg_dns_waiter_t *waiters;
    int              depth;
    int              types[MG_DNS_MAX_TYPES];
    int              ntypes;
    int              ti;             /* next type to try */
    int              type;           /* type being tried */
    int              pending;        /* sub-lookups outstanding */
    int              status;         /* last failure */
    const char      *error;
    unsigned         stop:1;         /* failure ends the walk */
    int64_t          ttl;            /* smallest TTL of this attempt */
    mg_dns_addr_t   *addrs;
    size_t           naddrs;
};

struct mg_dns_sock_s {
    mg_dns_sock_t   *next;
    mg_dns_t        *d;
    ev_io            io;
};

typedef struct {
    void           **buckets;
    size_t           size;           /* power of two */
    size_t           count;
} mg_dns_table_t;

struct mg_dns_s {
    struct ev_loop  *loop;
    ares_channel     channel;
    ev_timer         timer;
    mg_dns_sock_t   *socks;
    mg_dns_table_t   cache;          /* of mg_dns_entry_t */
    mg_dns_table_t   hosts;          /* of mg_dns_host_t */
    int              order[MG_DNS_MAX_TYPES];
    int              norder;
    int              prefer6;        /* AAAA before A in dns_order */
    int              valid_ttl;      /* -1: the records' */
    int              stale_ttl;
    int              not_found_ttl;
    int              error_ttl;
    unsigned         closing:1;
    unsigned         ares_ready:1;
    uint64_t         nqueries;
    mg_dns_addr_t    lit;            /* IP literal answers */
};

static void mg_dns_query_next(mg_dns_query_t *q);
static void mg_dns_query_settle(mg_dns_query_t *q);
static int mg_dns_lookup(mg_dns_t *d, const char *name, int depth,
                         mg_dns_query_t *from, mg_dns_result_t *res,
                         mg_dns_waiter_t **wp);

/* ---- small helpers ------------------------------------------------------ */

static uint32_t
mg_dns_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    size_t   i;

    for (i = 0; i < len; i++) {
        h = (h ^ (unsigned char) s[i]) * 16777619u;
    }
    return h;
}

/* Both node types start with (next, hash); name is found by the caller. */
typedef struct mg_dns_node_s {
    struct mg_dns_node_s *next;
    uint32_t              hash;
} mg_dns_node_t;

static int
mg_dns_table_grow(mg_dns_table_t *t)
{
    size_t  size = t->size ? t->size * 2 : 64, i;
    void  **b = calloc(size, sizeof(void *));

    if (b == NULL) {
        return MG_ERROR;
    }
    for (i = 0; i < t->size; i++) {
        mg_dns_node_t *n = t->buckets[i], *next;
        for (; n != NULL; n = next) {
            next = n->next;
            n->next = b[n->hash & (size - 1)];
            b[n->hash & (size - 1)] = n;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->size = size;
    return MG_OK;
}

static int
mg_dns_table_add(mg_dns_table_t *t, void *node)
{
    mg_dns_node_t *n = node;

    if (t->count >= t->size && mg_dns_table_grow(t) != MG_OK
        && t->size == 0)
    {
        return MG_ERROR;
    }
    n->next = t->buckets[n->hash & (t->size - 1)];
    t->buckets[n->hash & (t->size - 1)] = n;
    t->count++;
    return MG_OK;
}

static mg_dns_entry_t *
mg_dns_cache_find(mg_dns_t *d, const char *key, uint32_t hash)
{
    mg_dns_entry_t *e;

    if (d->cache.size == 0) {
        return NULL;
    }
    for (e = d->cache.buckets[hash & (d->cache.size - 1)]; e; e = e->next) {
        if (e->hash == hash && strcmp(e->name, key) == 0) {
            return e;
        }
    }
    return NULL;
}

static mg_dns_host_t *
mg_dns_hosts_find(mg_dns_t *d, const char *key, uint32_t hash)
{
    mg_dns_host_t *h;

    if (d->hosts.size == 0) {
        return NULL;
    }
    for (h = d->hosts.buckets[hash & (d->hosts.size - 1)]; h; h = h->next) {
        if (h->hash == hash && strcmp(h->name, key) == 0) {
            return h;
        }
    }
    return NULL;
}

/* Parse an IPv4 or IPv6 literal ("[::1]" too) into a; MG_OK when it is
 * one. */
static int
mg_dns_parse_ip(const char *s, size_t len, mg_dns_addr_t *a)
{
    char buf[64];

    if (len >= sizeof(buf)) {
        return MG_DECLINED;
    }
    if (len > 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, buf, &((struct sockaddr_in *) &a->addr)->sin_addr)
        == 1)
    {
        a->addr.ss_family = AF_INET;
        a->addrlen = sizeof(struct sockaddr_in);
        return MG_OK;
    }
    if (inet_pton(AF_INET6, buf,
                  &((struct sockaddr_in6 *) &a->addr)->sin6_addr) == 1)
    {
        a->addr.ss_family = AF_INET6;
        a->addrlen = sizeof(struct sockaddr_in6);
        return MG_OK;
    }
    return MG_DECLINED;
}

static void
mg_dns_set_raw(mg_dns_addr_t *a, int family, const unsigned char *raw)
{
    memset(a, 0, sizeof(*a));
    a->addr.ss_family = (sa_family_t) family;
    if (family == AF_INET) {
        memcpy(&((struct sockaddr_in *) &a->addr)->sin_addr, raw, 4);
        a->addrlen = sizeof(struct sockaddr_in);
    } else {
        memcpy(&((struct sockaddr_in6 *) &a->addr)->sin6_addr, raw, 16);
        a->addrlen = sizeof(struct sockaddr_in6);
    }
}

static void
mg_dns_fill(mg_dns_t *d, const mg_dns_entry_t *e, mg_dns_result_t *res)
{
    ev_tstamp now = ev_now(d->loop);

    res->status = e->status;
    res->addrs = e->status == MG_OK ? e->addrs : NULL;
    res->naddrs = e->status == MG_OK ? e->naddrs : 0;
    res->error = e->status == MG_OK ? NULL : e->error;
    res->stale = e->status == MG_OK && now >= e->expires;
    res->ttl = now >= e->expires ? 0
               : e->expires - now > MG_DNS_TTL_MAX ? MG_DNS_TTL_MAX
               : (int) (e->expires - now + 0.5);
}

static void
mg_dns_fail(mg_dns_result_t *res, int status, const char *error)
{
    memset(res, 0, sizeof(*res));
    res->status = status;
    res->error = error;
}

/* ---- libev <-> c-ares ----------------------------------------------------- */

static void
mg_dns_timer_update(mg_dns_t *d)
{
    struct timeval tv, *tvp;

    if (d->closing || !d->ares_ready) {
        return;
    }
    tvp = ares_timeout(d->channel, NULL, &tv);
    ev_timer_stop(d->loop, &d->timer);
    if (tvp != NULL) {
        double after = tvp->tv_sec + tvp->tv_usec / 1e6;
        /* ev_now lags the clock c-ares reads; never spin on a 0 timer */
        ev_timer_set(&d->timer, after < 0.001 ? 0.001 : after, 0.);
        ev_timer_start(d->loop, &d->timer);
    }
}

static void
mg_dns_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    mg_dns_t *d = w->data;

    (void) loop;
    (void) revents;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    mg_dns_timer_update(d);
}

static void
mg_dns_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    mg_dns_sock_t *s = w->data;
    mg_dns_t      *d = s->d;
    int            fd = w->fd;

    (void) loop;
    /* s may be freed inside (c-ares closes the socket): only d after */
    ares_process_fd(d->channel,
                    (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    mg_dns_timer_update(d);
}

static void
mg_dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    mg_dns_t       *d = data;
    mg_dns_sock_t **pp, *s;
    int             events = (readable ? EV_READ : 0)
                             | (writable ? EV_WRITE : 0);

    for (pp = &d->socks; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->io.fd == fd) {
            break;
        }
    }
    s = *pp;
    if (events == 0) {
        if (s != NULL) {
            ev_io_stop(d->loop, &s->io);
            *pp = s->next;
            free(s);
        }
        return;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL) {
            /* c-ares times the query out: the error reaches the caller */
            mg_log_error("dns: out of memory watching socket %d", fd);
            return;
        }
        s->d = d;
        ev_io_init(&s->io, mg_dns_io_cb, fd, events);
        s->io.data = s;
        s->next = d->socks;
        d->socks = s;
    } else {
        ev_io_stop(d->loop, &s->io);
        ev_io_set(&s->io, fd, events);
    }
    ev_io_start(d->loop, &s->io);
}

/* ---- waiters -------------------------------------------------------------- */

static mg_dns_waiter_t *
mg_dns_waiter_add(mg_dns_query_t *q)
{
    mg_dns_waiter_t *w = calloc(1, sizeof(*w)), *t;

    if (w == NULL) {
        return NULL;
    }
    w->q = q;
    /* append: callbacks fire in the order callers asked */
    if (q->waiters == NULL) {
        q->waiters = w;
        w->prev = w;                 /* head's prev is the tail */
    } else {
        t = q->waiters->prev;
        t->next = w;
        w->prev = t;
        q->waiters->prev = w;
    }
    return w;
}

static void
mg_dns_waiter_unlink(mg_dns_waiter_t *w)
{
    mg_dns_query_t *q = w->q;

    if (w == q->waiters) {
        q->waiters = w->next;
        if (q->waiters != NULL) {
            q->waiters->prev = w->prev;
        }
    } else {
        w->prev->next = w->next;
        if (w->next != NULL) {
            w->next->prev = w->prev;
        } else {
            q->waiters->prev = w->prev;
        }
    }
    w->next = w->prev = NULL;
}

/* 1 when q is from or waits (through parents) for from's answer: then
 * from may not wait for q. */
static int
mg_dns_waits_for(const mg_dns_query_t *q, const mg_dns_query_t *from)
{
    const mg_dns_waiter_t *w;

    if (q == from) {
        return 1;
    }
    for (w = from->waiters; w != NULL; w = w->next) {
        if (w->parent != NULL && mg_dns_waits_for(q, w->parent)) {
            return 1;
        }
    }
    return 0;
}

/* ---- queries -------------------------------------------------------------- */

static void
mg_dns_query_add(mg_dns_query_t *q, const mg_dns_addr_t *a, int64_t ttl)
{
    mg_dns_addr_t *n;

    if (ttl < q->ttl) {
        q->ttl = ttl;
    }
    if (q->naddrs >= MG_DNS_MAX_ADDRS) {
        return;
    }
    n = realloc(q->addrs, (q->naddrs + 1) * sizeof(mg_dns_addr_t));
    if (n == NULL) {
        return;
    }
    q->addrs = n;
    q->addrs[q->naddrs++] = *a;
}

/* Take a sub-lookup's answer into q. */
static void
mg_dns_query_merge(mg_dns_query_t *q, const mg_dns_result_t *r, int srv,
                   uint16_t port, uint16_t weight, uint16_t priority)
{
    size_t i;

    if (r->status != MG_OK) {
        if (q->naddrs == 0) {
            q->status = r->status;
            q->error = r->error;
        }
        return;
    }
    for (i = 0; i < r->naddrs; i++) {
        mg_dns_addr_t a = r->addrs[i];
        if (srv) {
            /* a nested SRV answer's own port wins, as Kong's toip */
            if (a.port == 0) {
                a.port = port;
            }
            a.weight = weight;
            a.priority = priority;
        }
        mg_dns_query_add(q, &a, r->ttl);
    }
}

static void
mg_dns_query_sub(mg_dns_query_t *q, const char *name, int srv,
                 uint16_t port, uint16_t weight, uint16_t priority)
{
    mg_dns_result_t  r;
    mg_dns_waiter_t *w;

    if (mg_dns_lookup(q->d, name, q->depth + 1, q, &r, &w) == MG_AGAIN) {
        if (w != NULL) {
            w->parent = q;
            w->srv = srv;
            w->port = port;
            w->weight = weight;
            w->priority = priority;
            q->pending++;
        }
        return;
    }
    mg_dns_query_merge(q, &r, srv, port, weight, priority);
}

/* A sub-lookup q waited for has its answer. */
static void
mg_dns_query_sub_done(mg_dns_waiter_t *w, const mg_dns_result_t *r)
{
    mg_dns_query_t *q = w->parent;

    mg_dns_query_merge(q, r, w->srv, w->port, w->weight, w->priority);
    q->pending--;
    mg_dns_query_settle(q);
}

/* Finish q: update its entry, detach, call every waiter, free q. */
static void
mg_dns_query_done(mg_dns_query_t *q, int status)
{
    mg_dns_t        *d = q->d;
    mg_dns_entry_t  *e = q->entry;
    ev_tstamp        now = ev_now(d->loop);
    mg_dns_result_t  r;
    mg_dns_waiter_t *w;
    mg_dns_addr_t   *copy = NULL;
    int64_t          ttl;

    memset(&r, 0, sizeof(r));
    if (status == MG_OK) {
        copy = malloc(q->naddrs * sizeof(mg_dns_addr_t));
        if (copy == NULL) {
            status = MG_ERROR;
            q->error = mg_dns_err_nomem;
        }
    }

    if (status == MG_OK) {
        ttl = d->valid_ttl >= 0 ? d->valid_ttl : q->ttl;
        ttl = ttl < 0 ? 0 : ttl > MG_DNS_TTL_MAX ? MG_DNS_TTL_MAX : ttl;
        memcpy(copy, q->addrs, q->naddrs * sizeof(mg_dns_addr_t));
        free(e->addrs);
        e->addrs = copy;
        e->naddrs = q->naddrs;
        e->status = MG_OK;
        e->error = NULL;
        e->expires = now + (ev_tstamp) ttl;
        e->stale_until = e->expires + d->stale_ttl;
        e->refresh_after = 0;
        e->last_type = q->type;
        r.addrs = q->addrs;
        r.naddrs = q->naddrs;
        r.ttl = (int) ttl;
        mg_log_debug("dns: %s resolved, %zu addresses, ttl %d", e->name,
                     q->naddrs, (int) ttl);

    } else if (status == MG_ERROR && e->status == MG_OK && e->naddrs > 0
               && now < e->stale_until)
    {
        /* serve stale on failure (RFC 8767); retry after error_ttl */
        e->refresh_after = now + d->error_ttl;
        r.error = q->error;
        mg_log_info("dns: refreshing %s failed (%s), serving stale",
                    e->name, q->error);

    } else {
        ttl = status == MG_DECLINED ? d->not_found_ttl : d->error_ttl;
        free(e->addrs);
        e->addrs = NULL;
        e->naddrs = 0;
        e->status = status;
        e->error = q->error;
        e->expires = now + (ev_tstamp) ttl;
        e->stale_until = e->expires;
        e->refresh_after = 0;
        e->last_type = 0;
        r.error = q->error;
        r.ttl = (int) ttl;
        mg_log_debug("dns: %s: %s", e->name, q->error);
    }
    r.status = status;
    e->query = NULL;

    /* pop one at a time: a callback may cancel the others */
    while ((w = q->waiters) != NULL) {
        mg_dns_waiter_unlink(w);
        if (w->parent != NULL) {
            mg_dns_query_sub_done(w, &r);
        } else if (w->cb != NULL) {
            w->cb(w->ctx, &r);
        }
        free(w);
    }
    free(q->addrs);
    free(q);
}

/* The attempt for q->type ended (reply parsed, sub-lookups answered). */
static void
mg_dns_query_settle(mg_dns_query_t *q)
{
    if (q->pending > 0) {
        return;
    }
    if (q->naddrs > 0) {
        if (q->type == MG_DNS_T_SRV) {
            /* only the lowest priority (Kong) */
            size_t   i, n = 0;
            uint16_t best = 0xffff;
            for (i = 0; i < q->naddrs; i++) {
                if (q->addrs[i].priority < best) {
                    best = q->addrs[i].priority;
                }
            }
            for (i = 0; i < q->naddrs; i++) {
                if (q->addrs[i].priority == best) {
                    q->addrs[n++] = q->addrs[i];
                }
            }
            q->naddrs = n;
        }
        mg_dns_query_done(q, MG_OK);
        return;
    }
    if (q->stop) {
        mg_dns_query_done(q, q->status);
        return;
    }
    mg_dns_query_next(q);
}

/* ---- reply parsing ------------------------------------------------------- */

typedef struct {
    char          owner[MG_DNS_NAME_MAX + 1];
    char          target[MG_DNS_NAME_MAX + 1];   /* CNAME, SRV */
    int           type;
    int           additional;
    int64_t       ttl;
    uint16_t      priority;
    uint16_t      weight;
    uint16_t      port;
    unsigned char addr[16];
} mg_dns_rr_t;

static int
mg_dns_expand(const unsigned char *p, const unsigned char *abuf, int alen,
              char *out, long *enclen)
{
    char *s;

    if (ares_expand_name(p, abuf, alen, &s, enclen) != ARES_SUCCESS) {
        return MG_ERROR;
    }
    if (strlen(s) > MG_DNS_NAME_MAX) {
        ares_free_string(s);
        return MG_ERROR;
    }
    strcpy(out, s);
    ares_free_string(s);
    return MG_OK;
}

static unsigned
mg_dns_u16(const unsigned char *p)
{
    return (unsigned) p[0] << 8 | p[1];
}

/*
 * Read the question name and the answer and additional records of a
 * reply into rrs.  Returns the number of records, -1 when malformed.
 */
static int
mg_dns_parse(const unsigned char *abuf, int alen, char *qname,
             mg_dns_rr_t *rrs, int max)
{
    const unsigned char *p = abuf, *end = abuf + alen;
    unsigned             qd, an, ns, ar, i;
    long                 enclen;
    int                  n = 0;

    if (alen < 12) {
        return -1;
    }
    qd = mg_dns_u16(p + 4);
    an = mg_dns_u16(p + 6);
    ns = mg_dns_u16(p + 8);
    ar = mg_dns_u16(p + 10);
    p += 12;
    if (qd != 1 || mg_dns_expand(p, abuf, alen, qname, &enclen) != MG_OK
        || end - p < enclen + 4)
    {
        return -1;
    }
    p += enclen + 4;

    for (i = 0; i < an + ns + ar; i++) {
        mg_dns_rr_t *rr = &rrs[n];
        unsigned     type, rdlen;
        uint32_t     ttl;
        char         owner[MG_DNS_NAME_MAX + 1];

        if (mg_dns_expand(p, abuf, alen, owner, &enclen) != MG_OK
            || end - p < enclen + 10)
        {
            return -1;
        }
        p += enclen;
        type = mg_dns_u16(p);
        ttl = (uint32_t) p[4] << 24 | (uint32_t) p[5] << 16
              | (uint32_t) p[6] << 8 | p[7];
        rdlen = mg_dns_u16(p + 8);
        p += 10;
        if (end - p < (long) rdlen) {
            return -1;
        }
        if ((i >= an && i < an + ns) || mg_dns_u16(p - 8) != MG_DNS_C_IN
            || n >= max)
        {
            p += rdlen;              /* authority, other class, overflow */
            continue;
        }
        memset(rr, 0, sizeof(*rr));
        strcpy(rr->owner, owner);
        rr->type = (int) type;
        rr->additional = i >= an + ns;
        /* RFC 2181 8: a TTL with the top bit set means zero */
        rr->ttl = ttl > 0x7fffffffu ? 0 : ttl;
        switch (type) {
        case MG_DNS_T_A:
        case MG_DNS_T_AAAA:
            if (rdlen != (type == MG_DNS_T_A ? 4u : 16u)) {
                return -1;
            }
            memcpy(rr->addr, p, rdlen);
            n++;
            break;
        case MG_DNS_T_CNAME:
            if (mg_dns_expand(p, abuf, alen, rr->target, &enclen) != MG_OK) {
                return -1;
            }
            n++;
            break;
        case MG_DNS_T_SRV:
            if (rdlen < 7
                || mg_dns_expand(p + 6, abuf, alen, rr->target, &enclen)
                    != MG_OK)
            {
                return -1;
            }
            rr->priority = (uint16_t) mg_dns_u16(p);
            rr->weight = (uint16_t) mg_dns_u16(p + 2);
            rr->port = (uint16_t) mg_dns_u16(p + 4);
            n++;
            break;
        default:
            break;                   /* OPT, RRSIG...: not kept */
        }
        p += rdlen;
    }
    return n;
}

/* Addresses of name in the additional section into q, SRV-stamped. */
static int
mg_dns_query_glue(mg_dns_query_t *q, const mg_dns_rr_t *rrs, int n,
                  const mg_dns_rr_t *srv)
{
    int pass, i, found = 0;

    for (pass = 0; pass < 2 && !found; pass++) {
        int want = (pass == 0) == (q->d->prefer6 == 0) ? MG_DNS_T_A
                                                        : MG_DNS_T_AAAA;
        for (i = 0; i < n; i++) {
            mg_dns_addr_t a;
            if (!rrs[i].additional || rrs[i].type != want
                || strcasecmp(rrs[i].owner, srv->target) != 0)
            {
                continue;
            }
            mg_dns_set_raw(&a, want == MG_DNS_T_A ? AF_INET : AF_INET6,
                           rrs[i].addr);
            a.port = srv->port;
            a.weight = srv->weight;
            a.priority = srv->priority;
            mg_dns_query_add(q, &a, rrs[i].ttl < srv->ttl ? rrs[i].ttl
                                                            : srv->ttl);
            found = 1;
        }
    }
    return found;
}

/* A NOERROR reply for q->type: take its records, start sub-lookups. */
static void
mg_dns_query_answer(mg_dns_query_t *q, const unsigned char *abuf, int alen)
{
    char         qname[MG_DNS_NAME_MAX + 1];
    const char  *cur;
    mg_dns_rr_t *rrs;
    int          n, i, hops;
    int64_t      chain_ttl = MG_DNS_TTL_MAX;

    rrs = malloc(MG_DNS_MAX_RRS * sizeof(mg_dns_rr_t));
    if (rrs == NULL) {
        q->status = MG_ERROR;
        q->error = mg_dns_err_nomem;
        q->stop = 1;
        return;
    }
    n = mg_dns_parse(abuf, alen, qname, rrs, MG_DNS_MAX_RRS);
    if (n < 0) {
        free(rrs);
        q->status = MG_ERROR;
        q->error = mg_dns_err_formerr;
        return;
    }

    /* follow the CNAME chain the server put in the answer */
    cur = qname;
    for (hops = 0; hops < MG_DNS_MAX_DEPTH; hops++) {
        for (i = 0; i < n; i++) {
            if (!rrs[i].additional && rrs[i].type == MG_DNS_T_CNAME
                && strcasecmp(rrs[i].owner, cur) == 0)
            {
                break;
            }
        }
        if (i == n) {
            break;
        }
        if (rrs[i].ttl < chain_ttl) {
            chain_ttl = rrs[i].ttl;
        }
        cur = rrs[i].target;
    }

    if (q->type == MG_DNS_T_CNAME) {
        /* the alias itself: resolve its target with the whole order */
        if (cur != qname) {
            q->ttl = chain_ttl;
            mg_dns_query_sub(q, cur, 0, 0, 0, 0);
        }
        free(rrs);
        return;
    }

    for (i = 0; i < n; i++) {
        mg_dns_rr_t  *rr = &rrs[i];
        mg_dns_addr_t a;
        int64_t       ttl = rr->ttl < chain_ttl ? rr->ttl : chain_ttl;

        if (rr->additional || rr->type != q->type
            || strcasecmp(rr->owner, cur) != 0)
        {
            continue;
        }
        if (rr->type != MG_DNS_T_SRV) {
            mg_dns_set_raw(&a, rr->type == MG_DNS_T_A ? AF_INET : AF_INET6,
                           rr->addr);
            mg_dns_query_add(q, &a, ttl);
            continue;
        }
        /* SRV: "." means no service; a target naming the record itself
         * is Kubernetes' self-reference -- skipped, so A is tried next */
        if (rr->target[0] == '\0' || strcmp(rr->target, ".") == 0
            || strcasecmp(rr->target, cur) == 0
            || strcasecmp(rr->target, q->entry->name) == 0)
        {
            continue;
        }
        if (ttl < q->ttl) {
            q->ttl = ttl;
        }
        if (!mg_dns_query_glue(q, rrs, n, rr)) {
            mg_dns_query_sub(q, rr->target, 1, rr->port, rr->weight,
                             rr->priority);
        }
    }
    free(rrs);
}

static void
mg_dns_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf,
               int alen)
{
    mg_dns_query_t *q = arg;

    (void) timeouts;
    if (q->d->closing) {
        return;                      /* mg_dns_free frees q */
    }
    q->status = MG_DECLINED;
    q->error = mg_dns_err_empty;
    switch (status) {
    case ARES_SUCCESS:
        mg_dns_query_answer(q, abuf, alen);
        break;
    case ARES_ENODATA:
        break;
    case ARES_ENOTFOUND:
        q->error = mg_dns_err_nxdomain;
        q->stop = 1;
        break;
    case ARES_ESERVFAIL:
        q->status = MG_ERROR;
        q->error = mg_dns_err_servfail;
        break;
    case ARES_EREFUSED:
        q->status = MG_ERROR;
        q->error = mg_dns_err_refused;
        break;
    case ARES_EFORMERR:
    case ARES_EBADRESP:
        q->status = MG_ERROR;
        q->error = mg_dns_err_formerr;
        break;
    case ARES_ENOTIMP:
        q->status = MG_ERROR;
        q->error = mg_dns_err_notimp;
        break;
    case ARES_ETIMEOUT:
        q->status = MG_ERROR;
        q->error = mg_dns_err_timeout;
        q->stop = 1;
        break;
    default:
        /* network errors, bad names: no use trying other types */
        q->status = MG_ERROR;
        q->error = ares_strerror(status);
        q->stop = 1;
        break;
    }
    mg_dns_query_settle(q);
}

/* Try the next type of the order, or finish with the last failure. */
static void
mg_dns_query_next(mg_dns_query_t *q)
{
    mg_dns_t *d = q->d;

    if (q->ti >= q->ntypes) {
        mg_dns_query_done(q, q->status);
        return;
    }
    q->type = q->types[q->ti++];
    q->naddrs = 0;
    q->ttl = MG_DNS_TTL_MAX;
    d->nqueries++;
    mg_log_debug("dns: query %s type %d", q->entry->name, q->type);
    /* may call back at once (bad name, no servers): touch q no more */
    ares_search(d->channel, q->entry->name, MG_DNS_C_IN, q->type,
                mg_dns_ares_cb, q);
}

static int
mg_dns_query_start(mg_dns_t *d, mg_dns_entry_t *e, int depth)
{
    mg_dns_query_t *q = calloc(1, sizeof(*q));
    int             i, j, t;

    if (q == NULL) {
        return MG_ERROR;
    }
    q->d = d;
    q->entry = e;
    q->depth = depth;
    q->status = MG_DECLINED;
    q->error = mg_dns_err_empty;
    for (i = 0; i < d->norder; i++) {
        t = d->order[i] == MG_DNS_T_LAST ? e->last_type : d->order[i];
        for (j = 0; j < q->ntypes && q->types[j] != t; j++) {
            /* skip types already listed */
        }
        if (t != 0 && j == q->ntypes) {
            q->types[q->ntypes++] = t;
        }
    }
    e->query = q;
    mg_dns_query_next(q);
    return MG_OK;
}

/* ---- cache ---------------------------------------------------------------- */

static void
mg_dns_entry_free(mg_dns_entry_t *e)
{
    free(e->addrs);
    free(e);
}

/* Make room: drop idle entries past their stale time, then, when still
 * full, any idle entries down to 90% of the limit. */
static void
mg_dns_cache_evict(mg_dns_t *d)
{
    ev_tstamp now = ev_now(d->loop);
    size_t    i, limit = MG_DNS_CACHE_MAX;
    int       pass;

    for (pass = 0; pass < 2 && d->cache.count >= limit; pass++) {
        if (pass == 1) {
            limit = MG_DNS_CACHE_MAX / 10 * 9;
        }
        for (i = 0; i < d->cache.size && d->cache.count >= limit; i++) {
            mg_dns_entry_t **pp = (mg_dns_entry_t **) &d->cache.buckets[i];
            while (*pp != NULL && d->cache.count >= limit) {
                mg_dns_entry_t *e = *pp;
                if (e->query == NULL && (pass == 1 || now >= e->stale_until)) {
                    *pp = e->next;
                    mg_dns_entry_free(e);
                    d->cache.count--;
                } else {
                    pp = &e->next;
                }
            }
        }
    }
}

static mg_dns_entry_t *
mg_dns_entry_new(mg_dns_t *d, const char *key, size_t len, uint32_t hash)
{
    mg_dns_entry_t *e;

    if (d->cache.count >= MG_DNS_CACHE_MAX) {
        mg_dns_cache_evict(d);
    }
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL) {
        return NULL;
    }
    memcpy(e->name, key, len + 1);
    e->hash = hash;
    e->status = MG_ERROR;
    e->error = mg_dns_err_nomem;
    if (mg_dns_table_add(&d->cache, e) != MG_OK) {
        free(e);
        return NULL;
    }
    return e;
}

/* ---- lookups -------------------------------------------------------------- */

static int
mg_dns_hosts_answer(mg_dns_t *d, const char *key, size_t len,
                    mg_dns_result_t *res)
{
    mg_dns_host_t *h = mg_dns_hosts_find(d, key, mg_dns_hash(key, len));

    if (h == NULL) {
        return MG_DECLINED;
    }
    memset(res, 0, sizeof(*res));
    res->status = MG_OK;
    res->addrs = (h->have6 && (d->prefer6 || !h->have4)) ? &h->a6 : &h->a4;
    res->naddrs = 1;
    res->ttl = MG_DNS_TTL_MAX;
    return MG_OK;
}

static int
mg_dns_lookup(mg_dns_t *d, const char *name, int depth, mg_dns_query_t *from,
              mg_dns_result_t *res, mg_dns_waiter_t **wp)
{
    char            key[MG_DNS_NAME_MAX + 1];
    size_t          len = strlen(name), i;
    uint32_t        hash;
    mg_dns_entry_t *e;
    ev_tstamp       now;

    *wp = NULL;
    if (len == 0 || len > MG_DNS_NAME_MAX) {
        mg_dns_fail(res, MG_ERROR, mg_dns_err_name);
        return MG_ERROR;
    }
    for (i = 0; i < len; i++) {
        key[i] = (char) tolower((unsigned char) name[i]);
    }
    key[len] = '\0';

    if (mg_dns_parse_ip(key, len, &d->lit) == MG_OK) {
        memset(res, 0, sizeof(*res));
        res->status = MG_OK;
        res->addrs = &d->lit;
        res->naddrs = 1;
        res->ttl = MG_DNS_TTL_MAX;
        return MG_OK;
    }
    if (mg_dns_hosts_answer(d, key, len, res) == MG_OK) {
        return MG_OK;
    }

    hash = mg_dns_hash(key, len);
    e = mg_dns_cache_find(d, key, hash);
    now = ev_now(d->loop);
    if (e != NULL && now < e->expires) {
        mg_dns_fill(d, e, res);
        return res->status;
    }
    if (e != NULL && e->status == MG_OK && e->naddrs > 0
        && now < e->stale_until)
    {
        /* fresh while a refresh is in flight, or stale: serve it */
        if (e->query == NULL && now >= e->refresh_after
            && depth <= MG_DNS_MAX_DEPTH)
        {
            mg_dns_query_start(d, e, depth);
        }
        mg_dns_fill(d, e, res);
        return res->status;
    }
    if (e != NULL && e->query != NULL) {
        if (from != NULL && mg_dns_waits_for(e->query, from)) {
            mg_dns_fail(res, MG_ERROR, mg_dns_err_recursion);
            return MG_ERROR;
        }
        *wp = mg_dns_waiter_add(e->query);
        if (*wp == NULL) {
            mg_dns_fail(res, MG_ERROR, mg_dns_err_nomem);
            return MG_ERROR;
        }
        return MG_AGAIN;
    }
    if (depth > MG_DNS_MAX_DEPTH) {
        mg_dns_fail(res, MG_ERROR, mg_dns_err_recursion);
        return MG_ERROR;
    }
    if (e == NULL) {
        e = mg_dns_entry_new(d, key, len, hash);
        if (e == NULL) {
            mg_dns_fail(res, MG_ERROR, mg_dns_err_nomem);
            return MG_ERROR;
        }
    }
    if (mg_dns_query_start(d, e, depth) != MG_OK) {
        mg_dns_fail(res, MG_ERROR, mg_dns_err_nomem);
        return MG_ERROR;
    }
    if (e->query == NULL) {
        /* answered at once (c-ares refused the name, no servers...) */
        mg_dns_fill(d, e, res);
        res->stale = 0;
        return res->status;
    }
    *wp = mg_dns_waiter_add(e->query);
    if (*wp == NULL) {
        mg_dns_fail(res, MG_ERROR, mg_dns_err_nomem);
        return MG_ERROR;
    }
    return MG_AGAIN;
}

int
mg_dns_resolve(mg_dns_t *d, const char *name, mg_dns_result_t *res,
               mg_dns_cb cb, void *ctx, void **handle)
{
    mg_dns_waiter_t *w;
    int              rc;

    rc = mg_dns_lookup(d, name, 0, NULL, res, &w);
    if (rc == MG_AGAIN) {
        if (cb == NULL) {
            mg_dns_waiter_unlink(w);
            free(w);
        } else {
            w->cb = cb;
            w->ctx = ctx;
        }
        if (handle != NULL) {
            *handle = cb != NULL ? w : NULL;
        }
    }
    mg_dns_timer_update(d);
    return rc;
}

void
mg_dns_cancel(mg_dns_t *d, void *handle)
{
    mg_dns_waiter_t *w = handle;

    (void) d;
    if (w == NULL) {
        return;
    }
    mg_dns_waiter_unlink(w);
    free(w);
}

uint64_t
mg_dns_queries(const mg_dns_t *d)
{
    return d->nqueries;
}

/* ---- setup ---------------------------------------------------------------- */

static int
mg_dns_hosts_add(mg_dns_t *d, const char *name, size_t len,
                 const mg_dns_addr_t *a)
{
    char           key[MG_DNS_NAME_MAX + 1];
    size_t         i;
    uint32_t       hash;
    mg_dns_host_t *h;

    if (len == 0 || len > MG_DNS_NAME_MAX) {
        return MG_OK;
    }
    for (i = 0; i < len; i++) {
        key[i] = (char) tolower((unsigned char) name[i]);
    }
    key[len] = '\0';
    hash = mg_dns_hash(key, len);
    h = mg_dns_hosts_find(d, key, hash);
    if (h == NULL) {
        h = calloc(1, sizeof(*h) + len + 1);
        if (h == NULL) {
            return MG_ERROR;
        }
        memcpy(h->name, key, len + 1);
        h->hash = hash;
        if (mg_dns_table_add(&d->hosts, h) != MG_OK) {
            free(h);
            return MG_ERROR;
        }
    }
    /* the first address of each family wins, as Kong's hosts parser */
    if (a->addr.ss_family == AF_INET && !h->have4) {
        h->a4 = *a;
        h->have4 = 1;
    } else if (a->addr.ss_family == AF_INET6 && !h->have6) {
        h->a6 = *a;
        h->have6 = 1;
    }
    return MG_OK;
}

/* Read "ADDRESS NAME [ALIAS...]" lines; '#' starts a comment. */
static int
mg_dns_hosts_load(mg_dns_t *d, const char *path)
{
    FILE         *f = fopen(path, "r");
    char          line[1024];
    mg_dns_addr_t a;

    if (f == NULL) {
        mg_log_warn("dns: hosts file \"%s\" not found", path);
        return MG_OK;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = strchr(line, '#'), *tok, *save = NULL;
        if (p != NULL) {
            *p = '\0';
        }
        tok = strtok_r(line, " \t\r\n", &save);
        if (tok == NULL || mg_dns_parse_ip(tok, strlen(tok), &a) != MG_OK) {
            continue;
        }
        while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
            if (mg_dns_hosts_add(d, tok, strlen(tok), &a) != MG_OK) {
                fclose(f);
                return MG_ERROR;
            }
        }
    }
    fclose(f);
    return MG_OK;
}

/*
 * The value of an "options" key ("timeout:", "attempts:") from RES_OPTIONS
 * or resolv.conf, or -1.  Read here because c-ares 1.18 only understands
 * "retrans:"/"retry:" and would silently use its own 5 s x 4 defaults.
 */
static int
mg_dns_resolv_get(const char *path, const char *key)
{
    const char *env = getenv("RES_OPTIONS"), *v;
    char        line[1024];
    FILE       *f;
    int         val = -1;

    if (env != NULL && (v = strstr(env, key)) != NULL) {
        return atoi(v + strlen(key));
    }
    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "options", 7) == 0 && (v = strstr(line, key)) != NULL) {
            val = atoi(v + strlen(key));
        }
    }
    fclose(f);
    return val;
}

static int
mg_dns_order_parse(mg_dns_t *d, const char *s, char *err, size_t errlen)
{
    static const struct { const char *name; int type; } kinds[] = {
        { "LAST", MG_DNS_T_LAST }, { "SRV", MG_DNS_T_SRV },
        { "AAAA", MG_DNS_T_AAAA }, { "A", MG_DNS_T_A },
        { "CNAME", MG_DNS_T_CNAME }
    };
    int seen_ip = 0;

    d->norder = 0;
    while (*s != '\0') {
        size_t n, k;
        while (*s == ',' || *s == ' ' || *s == '\t') {
            s++;
        }
        n = strcspn(s, ", \t");
        if (n == 0) {
            break;
        }
        for (k = 0; k < mg_nelems(kinds); k++) {
            if (strlen(kinds[k].name) == n
                && strncasecmp(s, kinds[k].name, n) == 0)
            {
                break;
            }
        }
        if (k == mg_nelems(kinds)) {
            snprintf(err, errlen, "dns_order: invalid record type '%.*s'",
                     (int) n, s);
            return MG_ERROR;
        }
        if (d->norder < MG_DNS_MAX_TYPES) {
            d->order[d->norder++] = kinds[k].type;
        }
        if (!seen_ip && (kinds[k].type == MG_DNS_T_A
                         || kinds[k].type == MG_DNS_T_AAAA))
        {
            seen_ip = 1;
            d->prefer6 = kinds[k].type == MG_DNS_T_AAAA;
        }
        s += n;
    }
    if (d->norder == 0) {
        snprintf(err, errlen, "dns_order: no record types");
        return MG_ERROR;
    }
    return MG_OK;
}

mg_dns_t *
mg_dns_create(struct ev_loop *loop, const mg_conf_t *conf,
              const mg_dns_opts_t *opts, char *err, size_t errlen)
{
    static const mg_dns_opts_t no_opts;
    struct ares_options        ao;
    mg_dns_t                  *d;
    const char                *resolv, *hostsfile;
    int                        mask, rc;

    if (opts == NULL) {
        opts = &no_opts;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "dns: out of memory");
        return NULL;
    }
    d->loop = loop;
    ev_init(&d->timer, mg_dns_timer_cb);
    d->timer.data = d;
    d->valid_ttl = conf ? conf->dns_valid_ttl : -1;
    d->stale_ttl = conf ? conf->dns_stale_ttl : 3600;
    d->not_found_ttl = conf ? conf->dns_not_found_ttl : 30;
    d->error_ttl = conf ? conf->dns_error_ttl : 1;
    if (mg_dns_order_parse(d, conf && conf->dns_order ? conf->dns_order
                                                      : "LAST,SRV,A,CNAME",
                           err, errlen) != MG_OK)
    {
        free(d);
        return NULL;
    }

    hostsfile = opts->hostsfile ? opts->hostsfile : "/etc/hosts";
    if (mg_dns_hosts_load(d, hostsfile) != MG_OK) {
        snprintf(err, errlen, "dns: out of memory reading \"%s\"", hostsfile);
        mg_dns_free(d);
        return NULL;
    }
    /* RFC 6761 6.3: localhost is always defined, as Kong does */
    if (mg_dns_hosts_find(d, "localhost", mg_dns_hash("localhost", 9))
        == NULL)
    {
        mg_dns_addr_t a;
        mg_dns_parse_ip("127.0.0.1", 9, &a);
        mg_dns_hosts_add(d, "localhost", 9, &a);
        mg_dns_parse_ip("::1", 3, &a);
        mg_dns_hosts_add(d, "localhost", 9, &a);
    }

    rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(rc));
        mg_dns_free(d);
        return NULL;
    }
    memset(&ao, 0, sizeof(ao));
    /* NOCHECKRESP: SERVFAIL/REFUSED reach us with their rcode, as Kong
     * sees them (c-ares 1.18 would report "Could not contact DNS
     * servers" after skipping the server) */
    ao.flags = ARES_FLAG_NOCHECKRESP;
    mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS;
    ao.sock_state_cb = mg_dns_sock_state;
    ao.sock_state_cb_data = d;
    resolv = opts->resolv_conf ? opts->resolv_conf : "/etc/resolv.conf";
    if (opts->resolv_conf != NULL) {
        ao.resolvconf_path = (char *) opts->resolv_conf;
        mask |= ARES_OPT_RESOLVCONF;
    }
    /* Kong: resolv.conf's timeout and attempts; c-ares' own defaults
     * (5 s, 4 tries, doubling) would keep a request ~75 s */
    {
        int t = mg_dns_resolv_get(resolv, "timeout:");
        int a = mg_dns_resolv_get(resolv, "attempts:");
        ao.timeout = opts->timeout_ms > 0 ? opts->timeout_ms
                     : t > 0 ? t * 1000 : 2000;
        mask |= ARES_OPT_TIMEOUTMS;
        ao.tries = opts->attempts > 0 ? opts->attempts : a > 0 ? a : 2;
        mask |= ARES_OPT_TRIES;
    }
    rc = ares_init_options(&d->channel, &ao, mask);
    if (rc != ARES_SUCCESS) {
        ares_library_cleanup();
        snprintf(err, errlen, "dns: c-ares: %s", ares_strerror(rc));
        mg_dns_free(d);
        return NULL;
    }
    d->ares_ready = 1;

    if (conf != NULL && conf->dns_resolver != NULL) {
        /* "1.2.3.4, [::1]:5353" -> "1.2.3.4,[::1]:5353" */
        char   csv[1024];
        size_t i, n = 0;
        for (i = 0; conf->dns_resolver[i] != '\0' && n + 1 < sizeof(csv);
             i++)
        {
            if (!isspace((unsigned char) conf->dns_resolver[i])) {
                csv[n++] = conf->dns_resolver[i];
            }
        }
        csv[n] = '\0';
        rc = ares_set_servers_ports_csv(d->channel, csv);
        if (rc != ARES_SUCCESS) {
            snprintf(err, errlen, "dns_resolver: %s: %s", csv,
                     ares_strerror(rc));
            mg_dns_free(d);
            return NULL;
        }
    }
    return d;
}

void
mg_dns_free(mg_dns_t *d)
{
    size_t i;

    if (d == NULL) {
        return;
    }
    d->closing = 1;
    if (d->ares_ready) {
        /* runs every pending ares callback (ignored now), closes sockets */
        ares_destroy(d->channel);
        ares_library_cleanup();
    }
    ev_timer_stop(d->loop, &d->timer);
    while (d->socks != NULL) {
        mg_dns_sock_t *s = d->socks;
        d->socks = s->next;
        ev_io_stop(d->loop, &s->io);
        free(s);
    }
    for (i = 0; i < d->cache.size; i++) {
        mg_dns_entry_t *e = d->cache.buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            if (e->query != NULL) {
                mg_dns_waiter_t *w = e->query->waiters, *wn;
                for (; w != NULL; w = wn) {
                    wn = w->next;
                    free(w);
                }
                free(e->query->addrs);
                free(e->query);
            }
            mg_dns_entry_free(e);
        }
    }
    free(d->cache.buckets);
    for (i = 0; i < d->hosts.size; i++) {
        mg_dns_host_t *h = d->hosts.buckets[i], *next;
        for (; h != NULL; h = next) {
            next = h->next;
            free(h);
        }
    }
    free(d->hosts.buckets);
    free(d);
}
