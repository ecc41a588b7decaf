/*
 * mg_balancer_hash.c -- the consistent-hashing key of a request: Kong's
 * hash_on / hash_fallback inputs, read through mg_balancer_req_t so this
 * file knows nothing of the HTTP request, and the hash itself.
 *
 * Kong's rules (kong/runloop/balancer/init.lua, get_value_to_hash), kept
 * as they are because they decide which target a client sticks to:
 *
 *   consumer     the consumer's id (empty: absent).
 *   ip           the client address as text.
 *   header       every value of the header, joined with ", " (nginx
 *                1.23+ joins repeated headers that way for $http_*).
 *   cookie       nginx's $cookie_NAME: each Cookie header is split at
 *                ';' and ','; names compare case-insensitively; spaces
 *                around '=' are skipped; the value runs to the next ';'.
 *                No cookie: a random UUID v4 is hashed and returned as a
 *                Set-Cookie value for the response.
 *   path         the normalized path.
 *   query_arg    ngx.req.get_uri_args(): at most the first 100 args,
 *                '&'-separated, names and values percent-decoded with
 *                '+' as space, an arg without '=' is "true"; several
 *                occurrences are sorted and joined with ",".
 *   uri_capture  the named regex group; a group that did not take part
 *                in the match is absent (Kong looks captures up by name
 *                only, so "1" does not mean the first group).
 *
 * A present but empty value (a header "X-Id:", a cookie "id=") is an
 * input, as in Kong, where "" is truthy.  The fallback is tried only when
 * the primary input is absent; "none" on either side stops.
 *
 * The hash is FNV-1a over the identifier, folded through a 64-bit
 * finalizer so that nearby identifiers land far apart.  It is streamed,
 * so decoded query values and joined headers are never copied.
 * Rejected: hashing with a per-process seed -- every worker, and every
 * Moongate node behind the same load balancer, must send a key to the
 * same target.
 */
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "mg_balancer.h"

#define MG_BALANCER_MAX_VALUES     16     /* header lines read per name */
#define MG_BALANCER_MAX_ARGS       100    /* Kong's lua_max_uri_args */
#define MG_BALANCER_UUID_LEN       36

#define MG_FNV_OFFSET  0xcbf29ce484222325ULL
#define MG_FNV_PRIME   0x100000001b3ULL

static const char mg_balancer_cookie_tail[] = "; Same-Site=Lax; HttpOnly";

typedef enum {
    MG_HASH_NONE = 0,
    MG_HASH_CONSUMER,
    MG_HASH_IP,
    MG_HASH_HEADER,
    MG_HASH_COOKIE,
    MG_HASH_PATH,
    MG_HASH_QUERY_ARG,
    MG_HASH_URI_CAPTURE,
    MG_HASH_UNKNOWN
} mg_balancer_hash_on_e;

static uint64_t
mg_fnv(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t               i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= MG_FNV_PRIME;
    }
    return h;
}

uint64_t
mg_balancer_hash(const void *data, size_t len)
{
    return mg_balancer_mix64(mg_fnv(MG_FNV_OFFSET, data, len));
}

static mg_balancer_hash_on_e
mg_balancer_hash_on(mg_str_t s)
{
    static const char *names[] = {
        "none", "consumer", "ip", "header", "cookie", "path", "query_arg",
        "uri_capture"
    };
    size_t i;

    if (s.len == 0) {
        return MG_HASH_NONE;
    }
    for (i = 0; i < mg_nelems(names); i++) {
        if (mg_str_eq_lit(s, names[i])) {
            return (mg_balancer_hash_on_e) i;
        }
    }
    return MG_HASH_UNKNOWN;
}

/* --- query args ---------------------------------------------------- */

static int
mg_balancer_hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Next byte of a percent-decoded view; -1 at the end. */
static int
mg_balancer_unescape_next(const char **pp, const char *end)
{
    const char *p = *pp;
    int         c, hi, lo;

    if (p >= end) {
        return -1;
    }
    c = (unsigned char) *p++;
    if (c == '+') {
        c = ' ';
    } else if (c == '%' && end - p >= 2
               && (hi = mg_balancer_hex((unsigned char) p[0])) >= 0
               && (lo = mg_balancer_hex((unsigned char) p[1])) >= 0)
    {
        c = hi << 4 | lo;
        p += 2;
    }
    *pp = p;
    return c;
}

/* Compare two escaped views by their decoded bytes (Lua's < on strings). */
static int
mg_balancer_unescape_cmp(mg_str_t a, mg_str_t b)
{
    const char *p = a.data, *pe = a.data + a.len;
    const char *q = b.data, *qe = b.data + b.len;

    for (;;) {
        int x = mg_balancer_unescape_next(&p, pe);
        int y = mg_balancer_unescape_next(&q, qe);
        if (x != y) {
            return x < y ? -1 : 1;
        }
        if (x < 0) {
            return 0;
        }
    }
}

static int
mg_balancer_unescape_eq(mg_str_t esc, mg_str_t plain)
{
    const char *p = esc.data, *pe = esc.data + esc.len;
    size_t      i = 0;
    int         c;

    while ((c = mg_balancer_unescape_next(&p, pe)) >= 0) {
        if (i == plain.len || c != (unsigned char) plain.data[i]) {
            return 0;
        }
        i++;
    }
    return i == plain.len;
}

static uint64_t
mg_balancer_unescape_hash(uint64_t h, mg_str_t esc)
{
    const char *p = esc.data, *pe = esc.data + esc.len;
    int         c;

    while ((c = mg_balancer_unescape_next(&p, pe)) >= 0) {
        h ^= (unsigned) c;
        h *= MG_FNV_PRIME;
    }
    return h;
}

static int
mg_balancer_query_arg(mg_str_t query, mg_str_t name, uint64_t *h)
{
    static const mg_str_t yes = mg_string("true");
    mg_str_t    vals[MG_BALANCER_MAX_ARGS];
    const char *p = query.data, *end = query.data + query.len;
    size_t      nargs = 0, k = 0, i, j;

    if (name.len == 0 || query.len == 0) {
        return 0;
    }
    while (p < end && nargs < MG_BALANCER_MAX_ARGS) {
        const char *amp = memchr(p, '&', (size_t) (end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq;
        mg_str_t    key;

        if (seg_end == p) {
            p = seg_end + 1;
            continue;
        }
        nargs++;
        eq = memchr(p, '=', (size_t) (seg_end - p));
        key.data = p;
        key.len = (size_t) ((eq ? eq : seg_end) - p);
        if (mg_balancer_unescape_eq(key, name)) {
            if (eq) {
                vals[k].data = eq + 1;
                vals[k].len = (size_t) (seg_end - eq - 1);
            } else {
                vals[k] = yes;
            }
            k++;
        }
        p = seg_end + 1;
    }
    if (k == 0) {
        return 0;
    }
    for (i = 1; i < k; i++) {                 /* k <= 100: insertion */
        mg_str_t v = vals[i];
        for (j = i; j > 0 && mg_balancer_unescape_cmp(vals[j - 1], v) > 0; j--) {
            vals[j] = vals[j - 1];
        }
        vals[j] = v;
    }
    for (i = 0; i < k; i++) {
        if (i > 0) {
            *h = mg_fnv(*h, ",", 1);
        }
        *h = mg_balancer_unescape_hash(*h, vals[i]);
    }
    return 1;
}

/* --- cookies ------------------------------------------------------- */

/* nginx's ngx_http_parse_multi_header_lines() for one Cookie line. */
static int
mg_balancer_cookie_find(mg_str_t line, mg_str_t name, mg_str_t *value)
{
    const char *start = line.data, *end = line.data + line.len, *last;

    while (start < end) {
        mg_str_t cand = { start, name.len };

        if ((size_t) (end - start) < name.len || !mg_str_caseeq(cand, name)) {
            goto skip;
        }
        for (start += name.len; start < end && *start == ' '; start++) {
            /* void */
        }
        if (start == end || *start++ != '=') {
            goto skip;
        }
        while (start < end && *start == ' ') {
            start++;
        }
        last = start;
        while (last < end && *last != ';') {
            last++;
        }
        value->data = start;
        value->len = (size_t) (last - start);
        return 1;
    skip:
        while (start < end) {
            char ch = *start++;
            if (ch == ';' || ch == ',') {
                break;
            }
        }
        while (start < end && *start == ' ') {
            start++;
        }
    }
    return 0;
}

static void
mg_balancer_uuid(char *out)
{
    static const char hex[] = "0123456789abcdef";
    static uint64_t   counter;
    unsigned char     r[16];
    size_t            i, o = 0;

    if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t) sizeof(r)) {
        /* no entropy yet (early boot): unique, if guessable */
        struct timespec ts;
        uint64_t        a, c;
        clock_gettime(CLOCK_REALTIME, &ts);
        a = mg_balancer_mix64((uint64_t) ts.tv_nsec ^ ++counter << 40);
        c = mg_balancer_mix64((uint64_t) ts.tv_sec ^ (uint64_t) getpid() << 32
                              ^ a);
        memcpy(r, &a, 8);
        memcpy(r + 8, &c, 8);
    }
    r[6] = (unsigned char) ((r[6] & 0x0f) | 0x40);     /* version 4 */
    r[8] = (unsigned char) ((r[8] & 0x3f) | 0x80);     /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[r[i] >> 4];
        out[o++] = hex[r[i] & 15];
    }
}

size_t
mg_balancer_cookie_size(const mg_upstream_t *u)
{
    size_t path = u->hash_on_cookie_path.len ? u->hash_on_cookie_path.len : 1;

    return u->hash_on_cookie.len + 1 + MG_BALANCER_UUID_LEN
           + sizeof("; Path=") - 1 + path + sizeof(mg_balancer_cookie_tail)
           - 1;
}

/* --- inputs -------------------------------------------------------- */

/* 1: found (hashed into *h); 0: absent; -1: a cookie could not be set. */
static int
mg_balancer_input(const mg_upstream_t *u, const mg_balancer_req_t *req,
                  mg_balancer_hash_on_e kind, int fallback, uint64_t *h,
                  char *cookie_buf, size_t cookie_len, size_t *set_cookie_len)
{
    mg_str_t vals[MG_BALANCER_MAX_VALUES];
    size_t   n, i;

    switch (kind) {
    case MG_HASH_CONSUMER:
        if (req->consumer_id.len == 0) {
            return 0;
        }
        *h = mg_fnv(*h, req->consumer_id.data, req->consumer_id.len);
        return 1;

    case MG_HASH_IP:
        if (req->client_ip.len == 0) {
            return 0;
        }
        *h = mg_fnv(*h, req->client_ip.data, req->client_ip.len);
        return 1;

    case MG_HASH_PATH:
        if (req->path.data == NULL) {
            return 0;
        }
        *h = mg_fnv(*h, req->path.data, req->path.len);
        return 1;

    case MG_HASH_HEADER: {
        mg_str_t name = fallback ? u->hash_fallback_header : u->hash_on_header;
        if (name.len == 0 || req->get_header == NULL) {
            return 0;
        }
        n = req->get_header(req->header_ctx, name, vals, mg_nelems(vals));
        if (n == 0) {
            return 0;
        }
        for (i = 0; i < n && i < mg_nelems(vals); i++) {
            if (i > 0) {
                *h = mg_fnv(*h, ", ", 2);
            }
            *h = mg_fnv(*h, vals[i].data, vals[i].len);
        }
        return 1;
    }

    case MG_HASH_COOKIE: {
        static const mg_str_t cookie = mg_string("Cookie");
        mg_str_t name = u->hash_on_cookie, value, path;
        char    *p;

        if (name.len == 0) {
            return 0;
        }
        n = req->get_header ? req->get_header(req->header_ctx, cookie, vals,
                                              mg_nelems(vals))
                            : 0;
        for (i = 0; i < n && i < mg_nelems(vals); i++) {
            if (mg_balancer_cookie_find(vals[i], name, &value)) {
                *h = mg_fnv(*h, value.data, value.len);
                return 1;
            }
        }
        /* none: make one up, and the response sets it (Kong) */
        if (cookie_buf == NULL || cookie_len < mg_balancer_cookie_size(u)) {
            return -1;
        }
        path = u->hash_on_cookie_path;
        if (path.len == 0) {
            mg_str_set(&path, "/");
        }
        p = cookie_buf;
        memcpy(p, name.data, name.len);
        p += name.len;
        *p++ = '=';
        mg_balancer_uuid(p);
        *h = mg_fnv(*h, p, MG_BALANCER_UUID_LEN);
        p += MG_BALANCER_UUID_LEN;
        memcpy(p, "; Path=", sizeof("; Path=") - 1);
        p += sizeof("; Path=") - 1;
        memcpy(p, path.data, path.len);
        p += path.len;
        memcpy(p, mg_balancer_cookie_tail, sizeof(mg_balancer_cookie_tail) - 1);
        p += sizeof(mg_balancer_cookie_tail) - 1;
        *set_cookie_len = (size_t) (p - cookie_buf);
        return 1;
    }

    case MG_HASH_QUERY_ARG:
        return mg_balancer_query_arg(req->query,
                                     fallback ? u->hash_fallback_query_arg
                                              : u->hash_on_query_arg,
                                     h);

    case MG_HASH_URI_CAPTURE: {
        mg_str_t group = fallback ? u->hash_fallback_uri_capture
                                  : u->hash_on_uri_capture;
        if (group.len == 0 || req->capture_names == NULL
            || req->captures == NULL)
        {
            return 0;
        }
        for (i = 0; i < req->ncaptures; i++) {
            if (mg_str_eq(req->capture_names[i], group)) {
                if (req->captures[i].data == NULL) {
                    return 0;
                }
                *h = mg_fnv(*h, req->captures[i].data, req->captures[i].len);
                return 1;
            }
        }
        return 0;
    }

    default:
        return 0;
    }
}

int
mg_balancer_hash_key(const mg_upstream_t *u, const mg_balancer_req_t *req,
                     mg_balancer_key_t *key, char *cookie_buf,
                     size_t cookie_len, size_t *set_cookie_len)
{
    mg_balancer_hash_on_e kind;
    int                   pass, rc;

    if (set_cookie_len) {
        *set_cookie_len = 0;
    }
    key->hash = 0;
    key->valid = 0;
    if (u == NULL || req == NULL) {
        return 0;
    }
    kind = mg_balancer_hash_on(u->hash_on);
    for (pass = 0; pass < 2; pass++) {
        uint64_t h = MG_FNV_OFFSET;
        size_t   unused;

        if (kind == MG_HASH_NONE || kind == MG_HASH_UNKNOWN) {
            return 0;
        }
        rc = mg_balancer_input(u, req, kind, pass, &h, cookie_buf, cookie_len,
                               set_cookie_len ? set_cookie_len : &unused);
        if (rc < 0) {
            return 0;
        }
        if (rc > 0) {
            key->hash = mg_balancer_mix64(h);
            key->valid = 1;
            return 1;
        }
        kind = mg_balancer_hash_on(u->hash_fallback);
    }
    return 0;
}
