/*
 * mg_router.c -- Kong 3.x route matching, traditional_compatible flavour.
 *
 * Owns: the per-snapshot matcher built from cf->routes.  Kong's path
 * normalisation and the upstream path (strip_path x path_handling) live
 * in mg_router_path.c.
 * Lifecycle: mg_router_build() once per config snapshot, off the request
 * path; read-only afterwards except for one PCRE2 match-data scratch
 * block, so a router is used by one thread (a worker) at a time.
 *
 * Semantics (Kong 3.x "Proxy reference" / "Routing" pages,
 * https://docs.konghq.com/gateway/latest/reference/proxy/ -- and Kong's
 * kong/router/transform.lua, which the traditional_compatible flavour
 * runs):
 *
 *  - A route matches when every field it sets matches.  hosts: the Host
 *    (without port) equals an entry case-insensitively; "*.example.com"
 *    matches any host ending in ".example.com", "example.*" any host
 *    starting with "example."; an entry with ":port" also requires the
 *    request port.  methods: exact.  paths: "/p" is a plain string prefix
 *    ("/foo" matches "/foobar"); "~re" is a PCRE2 regex anchored at the
 *    start of the path (ANCHORED, so every alternative is anchored, as the
 *    traditional router's "a" flag).  Paths match the normalised path
 *    (mg_router_path_normalize).  headers: every named header has a value
 *    equal (case-insensitive) to one listed, or matching a "~*re" value
 *    (caseless, unanchored).  snis: checked only when the scheme is https
 *    (Kong: `net.protocol != "https" || tls.sni == ...`), exact,
 *    trailing dot ignored.  protocols do not filter HTTP matching (Kong
 *    answers 426 afterwards, see mg_router_https_required); routes with no
 *    http/https/grpc/grpcs protocol (stream routes) are left out.
 *
 *  - A route with paths of different kinds is split like Kong's
 *    split_routes_and_services_by_path: one "entry" for all its regex
 *    paths and one per distinct prefix length.  Entries are ordered once,
 *    at build time, by Kong's get_priority() fields, most significant
 *    first:
 *      1. number of fields set among methods, hosts, headers, snis, paths
 *      2. hosts set and none of them a wildcard (plain hosts only)
 *      3. number of header names (max 255)
 *      4. regex paths before prefix paths
 *      5. regex_priority (regex entries only; higher first)
 *      6. prefix length (longer first)
 *    then, where Kong's ATC breaks ties by route UUID (arbitrary), by
 *    created_at (older first, the traditional router's rule) and position
 *    in the config.  The first entry in this order that matches wins.
 *
 * Index: entries are numbered by that order ("rank").  They are filed by
 * host -- exact-host hash, wildcard-suffix hash (".example.com"),
 * wildcard-prefix hash ("example."), or the host-less bucket -- and in
 * each bucket in a compressed prefix trie keyed by the prefix path (by
 * the regex's literal leading part for regex paths; at the root for
 * routes without paths).  A request walks at most a few buckets (its
 * host, one lookup per dot for wildcards, the host-less bucket) and, in
 * each, the trie nodes along its path; node lists are sorted by rank and
 * every node knows the lowest rank below it, so the search stops as soon
 * as nothing can beat the best match found.  Cost grows with path length
 * and overlapping routes, not with the number of routes.  Rejected: one
 * sorted list scanned per request (Kong's ATC does that; linear in
 * routes) and an LRU match cache (needs allocation and invalidation).
 */
#include <stdio.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "mg_router.h"

#define RT_NONE        UINT32_MAX
#define RT_MAX_HEADER_VALUES 32

/* Host entry kinds.  The ODD ones ("*x", "x*": a wildcard without its
 * dot, which Kong's schema rejects) are matched like Kong's ATC would
 * but not indexed: they sit in the host-less bucket. */
enum {
    RT_HOST_EXACT,
    RT_HOST_SUFFIX,
    RT_HOST_PREFIX,
    RT_HOST_ODD_SUFFIX,
    RT_HOST_ODD_PREFIX
};

typedef struct {
    mg_str_t    orig;      /* as configured: reported in matched_host */
    mg_str_t    name;      /* lower-case, no port; suffix ".x.com",
                              prefix "x." (wildcard removed) */
    uint16_t    port;      /* 0: any */
    uint8_t     kind;
} rt_host_t;

typedef struct {
    pcre2_code *code;
    uint32_t    ngroups;   /* capture groups (not counting group 0) */
    mg_str_t   *names;     /* ngroups + 1 entries; empty when unnamed */
} rt_regex_t;

typedef struct {
    mg_str_t    value;     /* literal, compared case-insensitively */
    rt_regex_t *re;        /* "~*" values */
} rt_hval_t;

typedef struct {
    mg_str_t    name;
    rt_hval_t  *vals;
    size_t      nvals;
} rt_header_t;

typedef struct {
    const mg_route_t *route;
    rt_host_t        *hosts;
    size_t            nhosts;
    rt_header_t      *headers;
    size_t            nheaders;
    mg_str_t         *snis;      /* lower-case, no trailing dot */
    size_t            nsnis;
} rt_route_t;

typedef struct {
    rt_route_t   *rt;
    mg_str_t     *paths;     /* prefixes, or regex sources without '~' */
    mg_str_t     *orig;      /* as configured (reported without '~') */
    rt_regex_t  **regexes;   /* regex entries: one per path */
    size_t        npaths;    /* 0: the route has no paths */
    int           is_regex;
    /* priority fields, see the file header */
    int           weight;
    int           plain_hosts;
    int           nheaders;
    int           regex_priority;
    size_t        prefix_len;
} rt_entry_t;

typedef struct {
    uint32_t    label;       /* offset in labels */
    uint32_t    label_len;
    uint32_t    kids;        /* first child; children are contiguous */
    uint32_t    nkids;
    uint32_t    list;        /* offset in lists */
    uint32_t    nlist;
    uint32_t    sub_min;     /* lowest rank in this subtree */
    uint32_t    first;       /* labels[label], children sorted by it */
} rt_node_t;

typedef struct {
    mg_str_t    key;
    uint32_t    hash;
    uint32_t    root;        /* trie root (build: temp node; then frozen) */
} rt_slot_t;

typedef struct {
    rt_slot_t  *slots;
    uint32_t    mask;
    uint32_t    n;
} rt_hash_t;

struct mg_router_s {
    mg_pool_t        *pool;
    rt_entry_t       *entries;   /* by rank */
    size_t            nentries;
    rt_node_t        *nodes;
    size_t            nnodes;
    uint32_t         *lists;
    unsigned char    *labels;
    rt_hash_t         exact;
    rt_hash_t         suffix;
    rt_hash_t         prefix;
    uint32_t          any_root;  /* host-less (and odd wildcard) entries */
    pcre2_match_data *md;        /* scratch: one router per thread */
    rt_regex_t      **regexes;   /* every compiled regex, to free */
    size_t            nregexes;
    size_t            cregexes;
};


/* ---- small helpers ------------------------------------------------------ */

static inline unsigned char
rt_lower(unsigned char c)
{
    return (unsigned) (c - 'A') < 26u ? (unsigned char) (c | 0x20) : c;
}

static uint32_t
rt_hash_bytes(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    size_t   i;

    for (i = 0; i < n; i++) {
        h ^= rt_lower((unsigned char) p[i]);
        h *= 16777619u;
    }
    return h;
}

static mg_str_t
rt_lower_dup(mg_pool_t *pool, const char *s, size_t n)
{
    mg_str_t r = { NULL, 0 };
    char    *p = mg_pool_alloc(pool, n + 1);
    size_t   i;

    if (p != NULL) {
        for (i = 0; i < n; i++) {
            p[i] = (char) rt_lower((unsigned char) s[i]);
        }
        p[n] = '\0';
        r.data = p;
        r.len = n;
    }
    return r;
}

static int
rt_has_prefix_ci(mg_str_t s, mg_str_t pfx)
{
    mg_str_t head;

    if (s.len < pfx.len) {
        return 0;
    }
    head.data = s.data;
    head.len = pfx.len;
    return mg_str_caseeq(head, pfx);
}

static int
rt_has_suffix_ci(mg_str_t s, mg_str_t sfx)
{
    mg_str_t tail;

    if (s.len < sfx.len) {
        return 0;
    }
    tail.data = s.data + s.len - sfx.len;
    tail.len = sfx.len;
    return mg_str_caseeq(tail, sfx);
}


/* ---- host hash tables --------------------------------------------------- */

static int
rt_hash_init(rt_hash_t *h, size_t expect)
{
    size_t cap = 16;

    while (cap < expect * 2) {
        cap <<= 1;
    }
    h->slots = calloc(cap, sizeof(rt_slot_t));
    if (h->slots == NULL) {
        return MG_ERROR;
    }
    h->mask = (uint32_t) cap - 1;
    h->n = 0;
    return MG_OK;
}

static rt_slot_t *
rt_hash_find(const rt_hash_t *h, const char *key, size_t n)
{
    uint32_t  hash, i;
    mg_str_t  k = { key, n };

    if (h->n == 0) {
        return NULL;
    }
    hash = rt_hash_bytes(key, n);
    for (i = hash & h->mask;; i = (i + 1) & h->mask) {
        rt_slot_t *s = &h->slots[i];
        if (s->key.data == NULL) {
            return NULL;
        }
        if (s->hash == hash && mg_str_caseeq(s->key, k)) {
            return s;
        }
    }
}

/* The slot for key (lower-case already), created with root RT_NONE. */
static rt_slot_t *
rt_hash_put(rt_hash_t *h, mg_str_t key)
{
    uint32_t  hash = rt_hash_bytes(key.data, key.len), i;

    for (i = hash & h->mask;; i = (i + 1) & h->mask) {
        rt_slot_t *s = &h->slots[i];
        if (s->key.data == NULL) {
            s->key = key;
            s->hash = hash;
            s->root = RT_NONE;
            h->n++;
            return s;
        }
        if (s->hash == hash && mg_str_eq(s->key, key)) {
            return s;
        }
    }
}


/* ---- build-time trie ---------------------------------------------------- */

typedef struct {
    uint32_t    kid;        /* first child */
    uint32_t    next;       /* next sibling */
    uint32_t    lhead;      /* list items, ascending rank */
    uint32_t    ltail;
    uint32_t    nlist;
    uint8_t     byte;
} bt_node_t;

typedef struct {
    uint32_t    rank;
    uint32_t    next;
} bt_item_t;

typedef struct {
    bt_node_t  *nodes;
    size_t      n, cap;
    bt_item_t  *items;
    size_t      ni, capi;
    /* frozen output, grown with realloc */
    rt_node_t  *fz;
    size_t      nfz, capfz;
    uint32_t   *lists;
    size_t      nlists, caplists;
    unsigned char *labels;
    size_t      nlabels, caplabels;
} bt_t;

static int
bt_grow(void **p, size_t *cap, size_t need, size_t size)
{
    size_t  ncap;
    void   *np;

    if (need <= *cap) {
        return MG_OK;
    }
    ncap = *cap ? *cap : 64;
    while (ncap < need) {
        ncap *= 2;
    }
    np = realloc(*p, ncap * size);
    if (np == NULL) {
        return MG_ERROR;
    }
    *p = np;
    *cap = ncap;
    return MG_OK;
}

static uint32_t
bt_node_new(bt_t *bt, uint8_t byte)
{
    bt_node_t *n;

    if (bt_grow((void **) &bt->nodes, &bt->cap, bt->n + 1, sizeof(bt_node_t))
        != MG_OK)
    {
        return RT_NONE;
    }
    n = &bt->nodes[bt->n];
    n->kid = n->next = n->lhead = n->ltail = RT_NONE;
    n->nlist = 0;
    n->byte = byte;
    return (uint32_t) bt->n++;
}

/* File rank under key in the trie at *root (created when RT_NONE). */
static int
bt_insert(bt_t *bt, uint32_t *root, const char *key, size_t n, uint32_t rank)
{
    uint32_t cur, k;
    size_t   i;

    if (*root == RT_NONE && (*root = bt_node_new(bt, 0)) == RT_NONE) {
        return MG_ERROR;
    }
    cur = *root;
    for (i = 0; i < n; i++) {
        uint8_t b = (uint8_t) key[i];
        for (k = bt->nodes[cur].kid; k != RT_NONE; k = bt->nodes[k].next) {
            if (bt->nodes[k].byte == b) {
                break;
            }
        }
        if (k == RT_NONE) {
            if ((k = bt_node_new(bt, b)) == RT_NONE) {
                return MG_ERROR;
            }
            bt->nodes[k].next = bt->nodes[cur].kid;
            bt->nodes[cur].kid = k;
        }
        cur = k;
    }
    /* Ranks arrive in ascending order; the same entry may be filed twice
     * under one key (two hosts of one bucket, two regexes sharing a
     * literal prefix). */
    if (bt->nodes[cur].ltail != RT_NONE
        && bt->items[bt->nodes[cur].ltail].rank == rank)
    {
        return MG_OK;
    }
    if (bt_grow((void **) &bt->items, &bt->capi, bt->ni + 1, sizeof(bt_item_t))
        != MG_OK)
    {
        return MG_ERROR;
    }
    bt->items[bt->ni].rank = rank;
    bt->items[bt->ni].next = RT_NONE;
    if (bt->nodes[cur].ltail == RT_NONE) {
        bt->nodes[cur].lhead = (uint32_t) bt->ni;
    } else {
        bt->items[bt->nodes[cur].ltail].next = (uint32_t) bt->ni;
    }
    bt->nodes[cur].ltail = (uint32_t) bt->ni;
    bt->nodes[cur].nlist++;
    bt->ni++;
    return MG_OK;
}

/*
 * Freeze temp node t into frozen slot fi (already reserved): copy its
 * list, then reserve its children contiguously, sorted by first byte, each
 * absorbing the chain of single-child, list-less nodes below it as its
 * label (path compression).  Recursion depth is the number of branching
 * levels along one key; frames carry no arrays.
 */
static int
bt_freeze(bt_t *bt, uint32_t t, uint32_t fi)
{
    uint32_t nk = 0, k, i, j, base, it, sub_min = RT_NONE;

    bt->fz[fi].list = (uint32_t) bt->nlists;
    bt->fz[fi].nlist = bt->nodes[t].nlist;
    if (bt_grow((void **) &bt->lists, &bt->caplists,
                bt->nlists + bt->nodes[t].nlist, sizeof(uint32_t)) != MG_OK)
    {
        return MG_ERROR;
    }
    for (it = bt->nodes[t].lhead; it != RT_NONE; it = bt->items[it].next) {
        bt->lists[bt->nlists++] = bt->items[it].rank;
    }
    if (bt->nodes[t].nlist) {
        sub_min = bt->lists[bt->fz[fi].list];
    }

    for (k = bt->nodes[t].kid; k != RT_NONE; k = bt->nodes[k].next) {
        nk++;
    }
    if (bt_grow((void **) &bt->fz, &bt->capfz, bt->nfz + nk,
                sizeof(rt_node_t)) != MG_OK)
    {
        return MG_ERROR;
    }
    base = (uint32_t) bt->nfz;
    bt->nfz += nk;
    bt->fz[fi].kids = base;
    bt->fz[fi].nkids = nk;

    /* children's temp ids parked in .kids, insertion-sorted by byte */
    for (k = bt->nodes[t].kid, i = 0; k != RT_NONE; k = bt->nodes[k].next) {
        for (j = i; j > 0 && bt->nodes[bt->fz[base + j - 1].kids].byte
                                 > bt->nodes[k].byte; j--)
        {
            bt->fz[base + j].kids = bt->fz[base + j - 1].kids;
        }
        bt->fz[base + j].kids = k;
        i++;
    }

    for (i = 0; i < nk; i++) {
        uint32_t c = bt->fz[base + i].kids;
        size_t   lab = bt->nlabels;

        for (;;) {
            if (bt_grow((void **) &bt->labels, &bt->caplabels,
                        bt->nlabels + 1, 1) != MG_OK)
            {
                return MG_ERROR;
            }
            bt->labels[bt->nlabels++] = bt->nodes[c].byte;
            if (bt->nodes[c].nlist != 0 || bt->nodes[c].kid == RT_NONE
                || bt->nodes[bt->nodes[c].kid].next != RT_NONE)
            {
                break;
            }
            c = bt->nodes[c].kid;
        }
        bt->fz[base + i].label = (uint32_t) lab;
        bt->fz[base + i].label_len = (uint32_t) (bt->nlabels - lab);
        bt->fz[base + i].first = bt->labels[lab];
        if (bt_freeze(bt, c, base + i) != MG_OK) {
            return MG_ERROR;
        }
        if (bt->fz[base + i].sub_min < sub_min) {
            sub_min = bt->fz[base + i].sub_min;
        }
    }
    bt->fz[fi].sub_min = sub_min;
    return MG_OK;
}

/* Freeze the trie rooted at temp node t; returns the frozen root. */
static uint32_t
bt_freeze_root(bt_t *bt, uint32_t t)
{
    uint32_t fi;

    if (t == RT_NONE) {
        return RT_NONE;
    }
    if (bt_grow((void **) &bt->fz, &bt->capfz, bt->nfz + 1, sizeof(rt_node_t))
        != MG_OK)
    {
        return RT_NONE;
    }
    fi = (uint32_t) bt->nfz++;
    memset(&bt->fz[fi], 0, sizeof(rt_node_t));
    if (bt_freeze(bt, t, fi) != MG_OK) {
        return RT_NONE;
    }
    return fi;
}


/* ---- compiling routes --------------------------------------------------- */

static void
rt_err(char *err, size_t errlen, const mg_route_t *r, const char *fmt,
       const char *what, const char *detail)
{
    int n;

    if (err == NULL || errlen == 0) {
        return;
    }
    n = snprintf(err, errlen, "route %.*s: ",
                 (int) (r->name.len ? r->name.len : r->id.len),
                 r->name.len ? r->name.data : r->id.data);
    if (n >= 0 && (size_t) n < errlen) {
        snprintf(err + n, errlen - (size_t) n, fmt, what, detail);
    }
}

static rt_regex_t *
rt_regex_compile(mg_router_t *r, const char *src, size_t n, uint32_t opts,
                 char *msg, size_t msglen)
{
    rt_regex_t  *re;
    int          ecode;
    PCRE2_SIZE   eoff;
    uint32_t     count, ent, nnames, i;
    PCRE2_SPTR   table;

    if (bt_grow((void **) &r->regexes, &r->cregexes, r->nregexes + 1,
                sizeof(rt_regex_t *)) != MG_OK)
    {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    re = mg_pool_calloc(r->pool, sizeof(rt_regex_t));
    if (re == NULL) {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    re->code = pcre2_compile((PCRE2_SPTR) src, n, opts, &ecode, &eoff, NULL);
    if (re->code == NULL) {
        char buf[128];
        pcre2_get_error_message(ecode, (PCRE2_UCHAR *) buf, sizeof(buf));
        snprintf(msg, msglen, "%s at offset %zu", buf, (size_t) eoff);
        return NULL;
    }
    r->regexes[r->nregexes++] = re;
    (void) pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);

    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &count);
    re->ngroups = count;
    re->names = mg_pool_calloc(r->pool, (count + 1) * sizeof(mg_str_t));
    if (re->names == NULL) {
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &nnames);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &ent);
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &table);
    for (i = 0; i < nnames; i++) {
        PCRE2_SPTR e = table + (size_t) i * ent;
        uint32_t   g = ((uint32_t) e[0] << 8) | e[1];
        if (g <= count) {
            const char *nm = (const char *) e + 2;
            re->names[g] = mg_pool_str(r->pool, nm, strlen(nm));
        }
    }
    return re;
}

/* Split "host[:port]" (an IPv6 literal keeps its brackets). */
static void
rt_split_port(mg_str_t s, mg_str_t *host, uint16_t *port)
{
    size_t i, start = 0;
    long   p = 0;

    *host = s;
    *port = 0;
    if (s.len && s.data[0] == '[') {
        for (start = 0; start < s.len && s.data[start] != ']'; start++) {
            /* skip the literal */
        }
    }
    for (i = start; i < s.len; i++) {
        if (s.data[i] == ':') {
            break;
        }
    }
    if (i >= s.len || i + 1 == s.len) {
        return;
    }
    for (size_t j = i + 1; j < s.len; j++) {
        if (s.data[j] < '0' || s.data[j] > '9' || p > 65535) {
            return;      /* not a port: the whole entry is the host (Kong) */
        }
        p = p * 10 + (s.data[j] - '0');
    }
    if (p > 65535) {
        return;
    }
    host->len = i;
    *port = (uint16_t) p;
}

static int
rt_route_compile(mg_router_t *r, const mg_route_t *route, rt_route_t *rt,
                 char *err, size_t errlen)
{
    mg_pool_t *pool = r->pool;
    size_t     i, j;
    char       msg[192];

    rt->route = route;

    rt->nhosts = route->hosts.n;
    rt->hosts = mg_pool_calloc(pool, (rt->nhosts + 1) * sizeof(rt_host_t));
    if (rt->hosts == NULL) {
        goto nomem;
    }
    for (i = 0; i < route->hosts.n; i++) {
        rt_host_t *h = &rt->hosts[i];
        mg_str_t   name;

        h->orig = route->hosts.elts[i];
        rt_split_port(h->orig, &name, &h->port);
        h->kind = RT_HOST_EXACT;
        if (name.len >= 2 && name.data[0] == '*' && name.data[1] == '.') {
            h->kind = RT_HOST_SUFFIX;          /* keep the dot */
            name.data++;
            name.len--;
        } else if (name.len >= 2 && name.data[name.len - 1] == '*'
                   && name.data[name.len - 2] == '.')
        {
            h->kind = RT_HOST_PREFIX;          /* keep the dot */
            name.len--;
        } else if (name.len && name.data[0] == '*') {
            h->kind = RT_HOST_ODD_SUFFIX;      /* "*x": suffix "x" */
            name.data++;
            name.len--;
        } else if (name.len && name.data[name.len - 1] == '*') {
            h->kind = RT_HOST_ODD_PREFIX;      /* "x*": prefix "x" */
            name.len--;
        }
        h->name = rt_lower_dup(pool, name.data, name.len);
        if (h->name.data == NULL) {
            goto nomem;
        }
    }

    rt->nsnis = route->snis.n;
    rt->snis = mg_pool_calloc(pool, (rt->nsnis + 1) * sizeof(mg_str_t));
    if (rt->snis == NULL) {
        goto nomem;
    }
    for (i = 0; i < route->snis.n; i++) {
        mg_str_t s = route->snis.elts[i];
        if (s.len > 1 && s.data[s.len - 1] == '.') {
            s.len--;
        }
        rt->snis[i] = rt_lower_dup(pool, s.data, s.len);
        if (rt->snis[i].data == NULL) {
            goto nomem;
        }
    }

    rt->nheaders = route->nheaders;
    rt->headers = mg_pool_calloc(pool,
                                 (rt->nheaders + 1) * sizeof(rt_header_t));
    if (rt->headers == NULL) {
        goto nomem;
    }
    for (i = 0; i < route->nheaders; i++) {
        const mg_route_header_t *src = &route->headers[i];
        rt_header_t             *h = &rt->headers[i];

        h->name = src->name;
        h->nvals = src->values.n;
        h->vals = mg_pool_calloc(pool, (h->nvals + 1) * sizeof(rt_hval_t));
        if (h->vals == NULL) {
            goto nomem;
        }
        for (j = 0; j < src->values.n; j++) {
            mg_str_t v = src->values.elts[j];
            if (v.len >= 2 && v.data[0] == '~' && v.data[1] == '*') {
                h->vals[j].re = rt_regex_compile(r, v.data + 2, v.len - 2,
                                                 PCRE2_CASELESS, msg,
                                                 sizeof(msg));
                if (h->vals[j].re == NULL) {
                    char what[96];
                    snprintf(what, sizeof(what), "%.*s",
                             (int) mg_min(src->name.len, 80), src->name.data);
                    rt_err(err, errlen, route,
                           "headers.%s: invalid regex: %s", what, msg);
                    return MG_ERROR;
                }
            }
            h->vals[j].value = v;
        }
    }
    return MG_OK;

nomem:
    rt_err(err, errlen, route, "%s%s", "out of memory", "");
    return MG_ERROR;
}

/*
 * The literal text every match of an anchored regex starts with, used
 * only to file the entry in the trie (the regex decides).  Stops at the
 * first metacharacter; a quantified last character is not required; any
 * alternation makes the prefix empty.
 */
static size_t
rt_regex_literal_prefix(mg_str_t src)
{
    size_t i;

    if (memchr(src.data, '|', src.len) != NULL) {
        return 0;
    }
    for (i = 0; i < src.len; i++) {
        char c = src.data[i];
        if (strchr("\\^$.|?*+()[]{}#", c) != NULL || c == ' ') {
            if ((c == '?' || c == '*' || c == '{') && i > 0) {
                i--;
            }
            return i;
        }
    }
    return i;
}

static int
rt_is_http_route(const mg_route_t *route)
{
    size_t i;

    if (route->protocols.n == 0) {
        return 1;                              /* default http, https */
    }
    for (i = 0; i < route->protocols.n; i++) {
        mg_str_t p = route->protocols.elts[i];
        if (mg_str_eq_lit(p, "http") || mg_str_eq_lit(p, "https")
            || mg_str_eq_lit(p, "grpc") || mg_str_eq_lit(p, "grpcs"))
        {
            return 1;
        }
    }
    return 0;
}

static void
rt_entry_priority(rt_entry_t *e)
{
    const mg_route_t *route = e->rt->route;
    size_t            i;

    e->weight = (route->methods.n > 0) + (route->hosts.n > 0)
                + (route->nheaders > 0) + (route->snis.n > 0)
                + (e->npaths > 0);
    e->plain_hosts = route->hosts.n > 0;
    for (i = 0; i < route->hosts.n; i++) {
        if (memchr(route->hosts.elts[i].data, '*', route->hosts.elts[i].len)) {
            e->plain_hosts = 0;
        }
    }
    e->nheaders = (int) mg_min(route->nheaders, (size_t) 255);
    e->regex_priority = e->is_regex ? route->regex_priority : 0;
    e->prefix_len = e->is_regex || e->npaths == 0
                    ? 0 : (e->paths[0].len & 0x7FFFF);
}

static int
rt_entry_cmp(const void *pa, const void *pb)
{
    const rt_entry_t *a = pa, *b = pb;

#define RT_DESC(f) if (a->f != b->f) return a->f > b->f ? -1 : 1
    RT_DESC(weight);
    RT_DESC(plain_hosts);
    RT_DESC(nheaders);
    RT_DESC(is_regex);
    RT_DESC(regex_priority);
    RT_DESC(prefix_len);
#undef RT_DESC
    if (a->rt->route->created_at != b->rt->route->created_at) {
        return a->rt->route->created_at < b->rt->route->created_at ? -1 : 1;
    }
    if (a->rt->route->index != b->rt->route->index) {
        return a->rt->route->index < b->rt->route->index ? -1 : 1;
    }
    if (a->rt != b->rt) {
        return a->rt < b->rt ? -1 : 1;
    }
    return 0;           /* never: one route's entries differ in priority */
}

/* Split a route's paths into entries (see the file header). */
static int
rt_route_entries(mg_router_t *r, rt_route_t *rt, rt_entry_t **ents,
                 size_t *n, size_t *cap, char *err, size_t errlen)
{
    const mg_route_t *route = rt->route;
    size_t            i, j, nre = 0;
    char              msg[192];

    for (i = 0; i < route->paths.n; i++) {
        if (route->paths.elts[i].len && route->paths.elts[i].data[0] == '~') {
            nre++;
        }
    }
    if (bt_grow((void **) ents, cap, *n + route->paths.n + 1,
                sizeof(rt_entry_t)) != MG_OK)
    {
        goto nomem;
    }

    if (route->paths.n == 0) {
        rt_entry_t *e = &(*ents)[(*n)++];
        memset(e, 0, sizeof(*e));
        e->rt = rt;
        rt_entry_priority(e);
        return MG_OK;
    }

    if (nre) {
        rt_entry_t *e = &(*ents)[(*n)++];
        memset(e, 0, sizeof(*e));
        e->rt = rt;
        e->is_regex = 1;
        e->paths = mg_pool_alloc(r->pool, nre * sizeof(mg_str_t));
        e->regexes = mg_pool_alloc(r->pool, nre * sizeof(rt_regex_t *));
        if (e->paths == NULL || e->regexes == NULL) {
            goto nomem;
        }
        for (i = 0; i < route->paths.n; i++) {
            mg_str_t p = route->paths.elts[i];
            if (p.len == 0 || p.data[0] != '~') {
                continue;
            }
            p.data++;
            p.len--;
            e->paths[e->npaths] = p;
            e->regexes[e->npaths] = rt_regex_compile(r, p.data, p.len,
                                                     PCRE2_ANCHORED, msg,
                                                     sizeof(msg));
            if (e->regexes[e->npaths] == NULL) {
                char what[96];
                snprintf(what, sizeof(what), "%.*s", (int) mg_min(p.len, 80),
                         p.data);
                rt_err(err, errlen, route, "paths: invalid regex ~%s: %s",
                       what, msg);
                return MG_ERROR;
            }
            e->npaths++;
        }
        e->orig = e->paths;
        rt_entry_priority(e);
    }

    /* one entry per distinct prefix length, paths in config order */
    for (i = 0; i < route->paths.n; i++) {
        mg_str_t    p = route->paths.elts[i];
        rt_entry_t *e;
        size_t      k, cnt = 0;
        int         seen = 0;

        if (p.len && p.data[0] == '~') {
            continue;
        }
        for (j = 0; j < i; j++) {
            mg_str_t q = route->paths.elts[j];
            if (!(q.len && q.data[0] == '~') && q.len == p.len) {
                seen = 1;
                break;
            }
        }
        if (seen) {
            continue;
        }
        for (j = i; j < route->paths.n; j++) {
            mg_str_t q = route->paths.elts[j];
            if (!(q.len && q.data[0] == '~') && q.len == p.len) {
                cnt++;
            }
        }
        e = &(*ents)[(*n)++];
        memset(e, 0, sizeof(*e));
        e->rt = rt;
        e->paths = mg_pool_alloc(r->pool, cnt * sizeof(mg_str_t));
        if (e->paths == NULL) {
            goto nomem;
        }
        for (j = i, k = 0; j < route->paths.n; j++) {
            mg_str_t q = route->paths.elts[j];
            if (!(q.len && q.data[0] == '~') && q.len == p.len) {
                e->paths[k++] = q;
            }
        }
        e->npaths = cnt;
        e->orig = e->paths;
        rt_entry_priority(e);
    }
    return MG_OK;

nomem:
    rt_err(err, errlen, route, "%s%s", "out of memory", "");
    return MG_ERROR;
}

/* File entry `rank` in the trie at *root under each of its path keys. */
static int
rt_file_paths(bt_t *bt, uint32_t *root, const rt_entry_t *e, uint32_t rank)
{
    size_t i;

    if (e->npaths == 0) {
        return bt_insert(bt, root, "", 0, rank);
    }
    for (i = 0; i < e->npaths; i++) {
        size_t n = e->is_regex ? rt_regex_literal_prefix(e->paths[i])
                               : e->paths[i].len;
        if (bt_insert(bt, root, e->paths[i].data, n, rank) != MG_OK) {
            return MG_ERROR;
        }
    }
    return MG_OK;
}

static int
rt_refreeze_hash(bt_t *bt, rt_hash_t *h)
{
    uint32_t i;

    for (i = 0; h->n && i <= h->mask; i++) {
        if (h->slots[i].key.data != NULL) {
            h->slots[i].root = bt_freeze_root(bt, h->slots[i].root);
            if (h->slots[i].root == RT_NONE) {
                return MG_ERROR;
            }
        }
    }
    return MG_OK;
}

mg_router_t *
mg_router_build(const mg_config_t *cf, char *err, size_t errlen)
{
    mg_router_t *r;
    rt_route_t  *rts = NULL;
    rt_entry_t  *ents = NULL;
    size_t       nents = 0, cents = 0, nrt = 0, i, j, nhosts = 0;
    bt_t         bt;
    uint32_t     max_groups = 0, any_tmp = RT_NONE;

    memset(&bt, 0, sizeof(bt));
    if (err && errlen) {
        err[0] = '\0';
    }
    r = calloc(1, sizeof(mg_router_t));
    if (r == NULL || (r->pool = mg_pool_create(16384)) == NULL) {
        free(r);
        goto nomem_early;
    }
    r->any_root = RT_NONE;

    rts = calloc(cf->routes_n + 1, sizeof(rt_route_t));
    if (rts == NULL) {
        goto nomem;
    }
    for (i = 0; i < cf->routes_n; i++) {
        const mg_route_t *route = cf->routes[i];
        if (route == NULL || !rt_is_http_route(route)
            || (route->service != NULL && !route->service->enabled))
        {
            continue;
        }
        if (rt_route_compile(r, route, &rts[nrt], err, errlen) != MG_OK
            || rt_route_entries(r, &rts[nrt], &ents, &nents, &cents, err,
                                errlen) != MG_OK)
        {
            goto failed;
        }
        nhosts += route->hosts.n;
        nrt++;
    }

    if (nents > 1) {
        qsort(ents, nents, sizeof(rt_entry_t), rt_entry_cmp);
    }

    if (rt_hash_init(&r->exact, nhosts) != MG_OK
        || rt_hash_init(&r->suffix, nhosts) != MG_OK
        || rt_hash_init(&r->prefix, nhosts) != MG_OK)
    {
        goto nomem;
    }

    for (i = 0; i < nents; i++) {
        rt_entry_t *e = &ents[i];
        uint32_t    rank = (uint32_t) i;
        int         anyhost = e->rt->nhosts == 0;

        for (j = 0; j < e->rt->nhosts; j++) {
            rt_host_t *h = &e->rt->hosts[j];
            rt_slot_t *s;

            switch (h->kind) {
            case RT_HOST_EXACT:
                s = rt_hash_put(&r->exact, h->name);
                break;
            case RT_HOST_SUFFIX:
                s = rt_hash_put(&r->suffix, h->name);
                break;
            case RT_HOST_PREFIX:
                s = rt_hash_put(&r->prefix, h->name);
                break;
            default:
                s = NULL;
                anyhost = 1;
            }
            if (s != NULL && rt_file_paths(&bt, &s->root, e, rank) != MG_OK) {
                goto nomem;
            }
        }
        if (anyhost && rt_file_paths(&bt, &any_tmp, e, rank) != MG_OK) {
            goto nomem;
        }
    }

    if (rt_refreeze_hash(&bt, &r->exact) != MG_OK
        || rt_refreeze_hash(&bt, &r->suffix) != MG_OK
        || rt_refreeze_hash(&bt, &r->prefix) != MG_OK)
    {
        goto nomem;
    }
    if (any_tmp != RT_NONE
        && (r->any_root = bt_freeze_root(&bt, any_tmp)) == RT_NONE)
    {
        goto nomem;
    }

    r->entries = ents;
    r->nentries = nents;
    ents = NULL;
    r->nodes = bt.fz;
    r->nnodes = bt.nfz;
    r->lists = bt.lists;
    r->labels = bt.labels;
    bt.fz = NULL;
    bt.lists = NULL;
    bt.labels = NULL;

    for (i = 0; i < r->nregexes; i++) {
        max_groups = mg_max(max_groups, r->regexes[i]->ngroups);
    }
    r->md = pcre2_match_data_create(max_groups + 1, NULL);
    if (r->md == NULL) {
        goto nomem;
    }
    /* rt_route_t arrays are referenced by entries: keep them alive */
    if (mg_pool_cleanup_add(r->pool, free, rts) != MG_OK) {
        goto nomem;
    }
    rts = NULL;

    free(bt.nodes);
    free(bt.items);
    return r;

nomem:
    if (err && errlen && err[0] == '\0') {
        snprintf(err, errlen, "router: out of memory");
    }
failed:
    free(rts);
    free(ents);
    free(bt.nodes);
    free(bt.items);
    free(bt.fz);
    free(bt.lists);
    free(bt.labels);
    mg_router_free(r);
    return NULL;

nomem_early:
    if (err && errlen) {
        snprintf(err, errlen, "router: out of memory");
    }
    return NULL;
}

void
mg_router_free(mg_router_t *r)
{
    size_t i;

    if (r == NULL) {
        return;
    }
    for (i = 0; i < r->nregexes; i++) {
        pcre2_code_free(r->regexes[i]->code);
    }
    free(r->regexes);
    if (r->md) {
        pcre2_match_data_free(r->md);
    }
    free(r->entries);
    free(r->nodes);
    free(r->lists);
    free(r->labels);
    free(r->exact.slots);
    free(r->suffix.slots);
    free(r->prefix.slots);
    if (r->pool) {
        mg_pool_destroy(r->pool);
    }
    free(r);
}


/* ---- matching ----------------------------------------------------------- */

static int
rt_host_match(const rt_host_t *h, const mg_router_req_t *req)
{
    if (h->port && h->port != req->port) {
        return 0;
    }
    switch (h->kind) {
    case RT_HOST_EXACT:
        return mg_str_caseeq(req->host, h->name);
    case RT_HOST_SUFFIX:
    case RT_HOST_ODD_SUFFIX:
        return rt_has_suffix_ci(req->host, h->name);
    default:
        return rt_has_prefix_ci(req->host, h->name);
    }
}

static int
rt_regex_exec(const mg_router_t *r, const rt_regex_t *re, mg_str_t s)
{
    int rc = pcre2_match(re->code, (PCRE2_SPTR) (s.data ? s.data : ""),
                         s.len, 0, 0, r->md, NULL);
    return rc >= 0;
}

static int
rt_headers_match(const mg_router_t *r, const rt_route_t *rt,
                 const mg_router_req_t *req)
{
    mg_str_t vals[RT_MAX_HEADER_VALUES];
    size_t   i, j, k, n;

    if (req->get_header == NULL) {
        return 0;
    }
    for (i = 0; i < rt->nheaders; i++) {
        const rt_header_t *h = &rt->headers[i];
        int                hit = 0;

        n = req->get_header(req->header_ctx, h->name, vals,
                            RT_MAX_HEADER_VALUES);
        n = mg_min(n, (size_t) RT_MAX_HEADER_VALUES);
        for (j = 0; j < n && !hit; j++) {
            for (k = 0; k < h->nvals; k++) {
                if (h->vals[k].re ? rt_regex_exec(r, h->vals[k].re, vals[j])
                                  : mg_str_caseeq(vals[j], h->vals[k].value))
                {
                    hit = 1;
                    break;
                }
            }
        }
        if (!hit) {
            return 0;
        }
    }
    return 1;
}

/*
 * Does entry e match req?  Cheap checks first, regexes last.  *m is
 * written only once the entry is known to match (the regex is the last
 * test), so a failed candidate never spoils the best match so far.
 */
static int
rt_entry_match(const mg_router_t *r, const rt_entry_t *e,
               const mg_router_req_t *req, mg_router_match_t *m)
{
    const rt_route_t *rt = e->rt;
    const mg_route_t *route = rt->route;
    mg_str_t          host = mg_null_string, path = mg_null_string;
    size_t            i, plen = 0, ncap = 0;
    int               hit;

    if (route->methods.n) {
        for (i = 0, hit = 0; i < route->methods.n && !hit; i++) {
            hit = mg_str_eq(req->method, route->methods.elts[i]);
        }
        if (!hit) {
            return 0;
        }
    }

    if (rt->nhosts) {
        for (i = 0; i < rt->nhosts; i++) {
            if (rt_host_match(&rt->hosts[i], req)) {
                host = rt->hosts[i].orig;
                break;
            }
        }
        if (i == rt->nhosts) {
            return 0;
        }
    }

    if (rt->nsnis && mg_str_eq_lit(req->scheme, "https")) {
        mg_str_t sni = req->sni;
        if (sni.len > 1 && sni.data[sni.len - 1] == '.') {
            sni.len--;
        }
        for (i = 0, hit = 0; i < rt->nsnis && !hit; i++) {
            hit = mg_str_caseeq(sni, rt->snis[i]);
        }
        if (!hit) {
            return 0;
        }
    }

    if (e->npaths && !e->is_regex) {
        for (i = 0; i < e->npaths; i++) {
            mg_str_t p = e->paths[i];
            if (req->path.len >= p.len
                && memcmp(req->path.data, p.data, p.len) == 0)
            {
                path = e->orig[i];
                plen = p.len;
                break;
            }
        }
        if (i == e->npaths) {
            return 0;
        }
    }

    if (rt->nheaders && !rt_headers_match(r, rt, req)) {
        return 0;
    }

    if (e->is_regex) {
        for (i = 0; i < e->npaths; i++) {
            const rt_regex_t *re = e->regexes[i];
            PCRE2_SIZE       *ov;
            uint32_t          g, ng;

            if (!rt_regex_exec(r, re, req->path)) {
                continue;
            }
            ov = pcre2_get_ovector_pointer(r->md);
            path = e->orig[i];
            plen = ov[1];
            /* Kong: captures only when the regex has groups; [0] is the
             * whole match, unset groups are empty views with NULL data. */
            ng = re->ngroups;
            ncap = 0;
            if (ng) {
                ng = mg_min(ng + 1, (uint32_t) MG_ROUTER_MAX_CAPTURES);
                for (g = 0; g < ng; g++) {
                    if (ov[2 * g] == PCRE2_UNSET) {
                        m->captures[g].data = NULL;
                        m->captures[g].len = 0;
                    } else {
                        m->captures[g].data = req->path.data + ov[2 * g];
                        m->captures[g].len = ov[2 * g + 1] - ov[2 * g];
                    }
                    m->capture_names[g] = re->names[g];
                }
                ncap = ng;
            }
            break;
        }
        if (i == e->npaths) {
            return 0;
        }
    }

    m->route = route;
    m->ncaptures = ncap;
    m->matched_host = host;
    m->matched_path = path;
    m->prefix_len = plen;
    return 1;
}

/* Scan one trie node's list (ascending ranks) for a better match. */
static inline void
rt_scan(const mg_router_t *r, const rt_node_t *node,
        const mg_router_req_t *req, uint32_t *best, mg_router_match_t *m)
{
    uint32_t i;

    if (node->sub_min >= *best) {
        return;
    }
    for (i = 0; i < node->nlist; i++) {
        uint32_t rank = r->lists[node->list + i];
        if (rank >= *best) {
            return;
        }
        if (rt_entry_match(r, &r->entries[rank], req, m)) {
            *best = rank;
            return;
        }
    }
}

#define RT_WALK_DEPTH 64

/*
 * Search one bucket's trie for an entry ranked better than *best.  The
 * nodes along the path are collected first and scanned deepest first:
 * longer prefixes rank higher, so the first match found usually cuts the
 * shallower lists short.  Order only affects speed; the lowest rank wins
 * whatever the order.
 */
static void
rt_walk(const mg_router_t *r, uint32_t root, const mg_router_req_t *req,
        uint32_t *best, mg_router_match_t *m)
{
    const rt_node_t *stack[RT_WALK_DEPTH];
    const rt_node_t *node = &r->nodes[root];
    const char      *path = req->path.data;
    size_t           len = req->path.len, pos = 0;
    int              depth = 0;

    for (;;) {
        if (node->nlist) {
            if (depth == RT_WALK_DEPTH) {
                while (depth > 0) {
                    rt_scan(r, stack[--depth], req, best, m);
                }
            }
            stack[depth++] = node;
        }
        if (pos == len || node->nkids == 0) {
            break;
        }
        {
            /* children sorted by first label byte: binary search */
            uint32_t         lo = node->kids, hi = node->kids + node->nkids;
            unsigned char    c = (unsigned char) path[pos];
            const rt_node_t *kid;

            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (r->nodes[mid].first < c) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if (lo == node->kids + node->nkids || r->nodes[lo].first != c) {
                break;
            }
            kid = &r->nodes[lo];
            if (kid->label_len > len - pos || kid->sub_min >= *best
                || memcmp(r->labels + kid->label, path + pos, kid->label_len))
            {
                break;
            }
            pos += kid->label_len;
            node = kid;
        }
    }
    while (depth > 0) {
        rt_scan(r, stack[--depth], req, best, m);
    }
}

int
mg_router_match(const mg_router_t *r, const mg_router_req_t *req,
                mg_router_match_t *m)
{
    uint32_t         best = RT_NONE;
    const rt_slot_t *s;
    const char      *h = req->host.data;
    size_t           hl = req->host.len, i;

    if (r->nentries == 0) {
        return MG_DECLINED;
    }
    /* Buckets most likely to hold the best ranks first (plain hosts rank
     * above wildcards), so later walks are cut short by sub_min. */
    if (hl && (s = rt_hash_find(&r->exact, h, hl)) != NULL) {
        rt_walk(r, s->root, req, &best, m);
    }
    if (r->suffix.n) {
        for (i = 0; i < hl; i++) {
            if (h[i] == '.' && (s = rt_hash_find(&r->suffix, h + i, hl - i))) {
                rt_walk(r, s->root, req, &best, m);
            }
        }
    }
    if (r->prefix.n) {
        for (i = 0; i < hl; i++) {
            if (h[i] == '.' && (s = rt_hash_find(&r->prefix, h, i + 1))) {
                rt_walk(r, s->root, req, &best, m);
            }
        }
    }
    if (r->any_root != RT_NONE) {
        rt_walk(r, r->any_root, req, &best, m);
    }
    return best == RT_NONE ? MG_DECLINED : MG_OK;
}


int
mg_router_https_required(const mg_route_t *route, mg_str_t scheme)
{
    size_t i;
    int    https = 0, http = 0;

    for (i = 0; i < route->protocols.n; i++) {
        if (mg_str_eq_lit(route->protocols.elts[i], "https")) https = 1;
        if (mg_str_eq_lit(route->protocols.elts[i], "http")) http = 1;
    }
    return https && !http && !mg_str_eq_lit(scheme, "https");
}
