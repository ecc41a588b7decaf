/*
 * mockup -- the mock HTTP/1.1 upstream for end-to-end specs and bench/.
 *
 *   build/mockup [-q] PORT [PORT ...]
 *
 * Listens on 127.0.0.1:PORT for every PORT, prints "ready" once all are
 * listening, runs until SIGTERM/SIGINT. Quiet on stderr (-q is accepted for
 * symmetry with older scripts; there is no per-request log either way).
 *
 * One thread, one libev loop, level-triggered. A connection owns an input
 * buffer (bytes read, `rpos` = first unparsed byte), an output buffer (bytes
 * queued, `ooff` = first unwritten byte) and at most one request in flight.
 * Every callback does its I/O and then calls conn_run(), the only place that
 * parses, writes, advances streams and frees a connection; so no object is
 * freed inside a callback that still uses it. Requests are parsed in order
 * (pipelining); responses to a batch are written with one write() (/fast is
 * a prebuilt string). A request whose answer waits (/delay, /hang, /sse,
 * /bytes, /slow-read) stops parsing until it has finished; later pipelined
 * bytes stay in the input buffer (reading stops past 1 MB).
 *
 * The request parser is hand written rather than http-parser so that the
 * mock does not share a parser (and its bugs) with the gateway under test.
 *
 * Endpoints (the path without the query selects; query args are parsed):
 *   /fast            200 text/plain "hello\n" (prebuilt; bench target)
 *   /echo..., other  200 JSON describing the request (see echo_json)
 *   /status/NNN      status NNN, body {"status":NNN}; 204/304: no body;
 *                    101: switch to a raw echo of bytes; other 1xx: the
 *                    interim response, then 200 {"status":200,"interim":NNN}
 *   /delay/MS        the echo JSON after MS milliseconds (timer)
 *   /hang            read the request, never answer
 *   /drop            close without answering
 *   /close           the echo JSON with Connection: close, then close
 *   /bytes/N         N bytes 'a'..'z' repeating; ?chunked=1 for 16 KB
 *                    chunks; generated 256 KB at a time as the socket drains
 *   /sse             ?n=21&interval_ms=100&size=0: n chunked SSE events,
 *                    each its own chunk and write, then [DONE], then 0-chunk
 *   /early-hints     103 with a Link header, then the echo JSON
 *   /stats           {"connections":..,"requests":..,"open":..}
 *   /slow-read       ?bytes=1024&interval_ms=10: read the body `bytes` at a
 *                    time every interval, then {"body_len":N,...}
 * HEAD on any endpoint sends the headers the GET would (same
 * Content-Length) and no body. Every response carries X-Upstream-Port.
 */

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD     (64 * 1024)      /* request line + headers */
#define MAX_HDRS     1024
#define MAX_BODY     (64u << 20)      /* stored for echo; rest only counted */
#define IN_HIGH      (1 << 20)        /* stop reading past this much unparsed */
#define OUT_HIGH     (1 << 20)        /* stop parsing past this much unsent */
#define GEN_CHUNK    (256 * 1024)     /* /bytes generated per step */
#define BYTES_CHUNK  (16 * 1024)      /* /bytes?chunked=1 chunk size */
#define LINGER_SEC   2.0

/* ---- growable byte buffer ---------------------------------------------- */

typedef struct {
    char  *p;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t n)
{
    if (b->len + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        fputs("mockup: out of memory\n", stderr);
        abort();
    }
    b->p = p;
    b->cap = cap;
}

static void buf_add(buf_t *b, const void *d, size_t n)
{
    if (n == 0)
        return;
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_adds(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

__attribute__((format(printf, 2, 3)))
static void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    buf_reserve(b, 256);
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

/* JSON string with quotes. Valid UTF-8 passes through; every byte that is
 * not part of a valid sequence becomes \u00XX, so the output always
 * parses. */
static void json_str(buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    buf_reserve(b, n + 2);
    b->p[b->len++] = '"';
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' &&
               u[run] != '\\')
            run++;
        if (run > i) {
            buf_add(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned c = u[i];
        if (c < 0x80) {
            char e[8] = {'\\', 0};
            size_t el = 2;
            switch (c) {
            case '"': e[1] = '"'; break;
            case '\\': e[1] = '\\'; break;
            case '\n': e[1] = 'n'; break;
            case '\r': e[1] = 'r'; break;
            case '\t': e[1] = 't'; break;
            case '\b': e[1] = 'b'; break;
            case '\f': e[1] = 'f'; break;
            default:
                memcpy(e + 1, "u00", 3);
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
                el = 6;
            }
            buf_add(b, e, el);
            i++;
            continue;
        }
        /* multi-byte: accept only well-formed, shortest-form sequences */
        size_t len = 0;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0;
            if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90;
            if (c == 0xf4)
                hi = 0x8f;
        }
        int ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) {
            unsigned cc = u[i + k];
            if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xbf))
                ok = 0;
        }
        if (ok) {
            buf_add(b, s + i, len);
            i += len;
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_add(b, e, 6);
            i++;
        }
    }
    buf_reserve(b, 1);
    b->p[b->len++] = '"';
}

/* ---- state ------------------------------------------------------------- */

enum { ST_HEAD, ST_BODY, ST_BUSY };
enum { B_NONE, B_DELAY, B_HANG, B_BYTES, B_SSE, B_RAW };
enum { BODY_NONE, BODY_CL, BODY_CHUNKED };
enum { CH_SIZE, CH_DATA, CH_CRLF, CH_TRAILER };
enum { T_NONE, T_DELAY, T_SSE, T_SLOW, T_LINGER };
enum {
    EP_ECHO, EP_FAST, EP_STATUS, EP_DELAY, EP_HANG, EP_DROP, EP_CLOSE,
    EP_BYTES, EP_SSE, EP_HINTS, EP_STATS, EP_SLOW
};

#define AGAIN 1
#define E400  (-400)
#define E431  (-431)
#define E505  (-505)

typedef struct {
    ev_io  w;
    int    port;
    char   fast[256]; /* prebuilt keep-alive /fast response */
    size_t fast_len;
} listener_t;

typedef struct {
    uint32_t name, nlen, val, vlen; /* offsets into hbuf */
} hdr_t;

typedef struct conn_s {
    ev_io       rw, ww;
    ev_timer    tm;
    int         fd, tmode;
    listener_t *ls;
    unsigned    reading : 1, writing : 1, eof : 1, dead : 1, wblocked : 1,
                close_after : 1, drop : 1, lingering : 1, slow : 1;
    int         state, busy;
    unsigned    nreq;

    buf_t  in;
    size_t rpos, hscan;
    buf_t  out;
    size_t ooff;

    /* the request being parsed or answered; pointers into hbuf */
    buf_t       hbuf;
    hdr_t      *hdrs;
    int         nhdrs, hdrcap;
    const char *method, *target, *path, *query, *upgrade;
    size_t      mlen, tlen, plen, qlen, uplen;
    int         has_query, v11, keepalive, head, expect100, ep;
    int         body_mode, ch_state, body_trunc;
    uint64_t    body_left, body_len;
    size_t      trailer_len;
    buf_t       body;

    /* streaming responses */
    uint64_t s_left, s_pos;
    int      s_chunked, sse_i, sse_n, sse_due;
    double   sse_ival, t0, slow_ival;
    size_t   sse_size, slow_bytes;
} conn_t;

static struct ev_loop *g_loop;
static buf_t           g_tmp; /* scratch: response bodies */
static char            g_pat[GEN_CHUNK + 32];
static uint64_t        g_conns, g_reqs, g_open;
static ev_timer        g_accept_pause;
static listener_t     *g_ls;
static int             g_nls;

static void conn_run(conn_t *c);

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- request parsing --------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || (c && strchr(extra, c));
}

static int ieq(const char *a, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

static int peq(const conn_t *c, const char *lit)
{
    return strlen(lit) == c->plen && memcmp(c->path, lit, c->plen) == 0;
}

static int pfx(const conn_t *c, const char *lit)
{
    size_t n = strlen(lit);
    return c->plen >= n && memcmp(c->path, lit, n) == 0;
}

/* Parse an unsigned decimal of exactly n bytes; -1 when not one. */
static int64_t dec(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decode (and '+' to space) s[0..n) onto b. */
static void url_decode(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+')
            ch = ' ';
        else if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
                 hexval(s[i + 2]) >= 0) {
            ch = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        b->p[b->len++] = (char)ch;
    }
}

/* Numeric query argument `key` (matched undecoded), or def. */
static int64_t arg_num(const conn_t *c, const char *key, int64_t def)
{
    size_t kl = strlen(key);
    const char *q = c->query, *end = c->query + c->qlen;
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *e = amp ? amp : end;
        if ((size_t)(e - q) > kl && memcmp(q, key, kl) == 0 && q[kl] == '=') {
            int64_t v = dec(q + kl + 1, (size_t)(e - q - kl - 1));
            return v < 0 ? def : v;
        }
        q = e + 1;
    }
    return def;
}

static void req_reset(conn_t *c)
{
    c->nhdrs = 0;
    c->hbuf.len = 0;
    c->body.len = 0;
    c->body_len = 0;
    c->body_trunc = 0;
    c->body_mode = BODY_NONE;
    c->upgrade = NULL;
    c->uplen = 0;
    c->expect100 = 0;
    c->slow = 0;
    if (c->body.cap > (1 << 20))
        buf_free(&c->body);
    if (c->hbuf.cap > (64 << 10))
        buf_free(&c->hbuf);
}

static int endpoint(const conn_t *c)
{
    if (c->plen < 2)
        return EP_ECHO;
    switch (c->path[1]) {
    case 'f': if (peq(c, "/fast")) return EP_FAST; break;
    case 's':
        if (pfx(c, "/status/")) return EP_STATUS;
        if (peq(c, "/sse")) return EP_SSE;
        if (peq(c, "/stats")) return EP_STATS;
        if (peq(c, "/slow-read")) return EP_SLOW;
        break;
    case 'd':
        if (pfx(c, "/delay/")) return EP_DELAY;
        if (peq(c, "/drop")) return EP_DROP;
        break;
    case 'h': if (peq(c, "/hang")) return EP_HANG; break;
    case 'c': if (peq(c, "/close")) return EP_CLOSE; break;
    case 'b': if (pfx(c, "/bytes/")) return EP_BYTES; break;
    case 'e': if (peq(c, "/early-hints")) return EP_HINTS; break;
    }
    return EP_ECHO;
}

/* Find the end of the head in in[rpos..len); copy it to hbuf and parse.
 * Returns 0 (parsed), AGAIN, or E400/E431/E505. */
static int parse_head(conn_t *c)
{
    char *b = c->in.p;
    size_t len = c->in.len, end = 0;

    while (c->rpos < len && (b[c->rpos] == '\r' || b[c->rpos] == '\n'))
        c->rpos++; /* RFC 9112 2.2: ignore empty lines before a request */
    if (c->hscan < c->rpos)
        c->hscan = c->rpos;
    size_t i = c->hscan;
    while (i < len) {
        char *nl = memchr(b + i, '\n', len - i);
        if (!nl) {
            i = len;
            break;
        }
        size_t k = (size_t)(nl - b);
        if (k + 1 >= len) {
            i = k;
            break;
        }
        if (b[k + 1] == '\n') {
            end = k + 2;
            break;
        }
        if (b[k + 1] == '\r') {
            if (k + 2 >= len) {
                i = k;
                break;
            }
            if (b[k + 2] == '\n') {
                end = k + 3;
                break;
            }
        }
        i = k + 1;
    }
    if (!end) {
        c->hscan = i;
        return len - c->rpos > MAX_HEAD ? E431 : AGAIN;
    }
    if (end - c->rpos > MAX_HEAD)
        return E431;

    req_reset(c);
    buf_add(&c->hbuf, b + c->rpos, end - c->rpos);
    c->rpos = c->hscan = end;

    char *h = c->hbuf.p, *he = h + c->hbuf.len;

    /* request line: METHOD SP target SP HTTP/1.x */
    char *eol = memchr(h, '\n', (size_t)(he - h));
    char *le = eol > h && eol[-1] == '\r' ? eol - 1 : eol;
    char *sp1 = memchr(h, ' ', (size_t)(le - h));
    if (!sp1 || sp1 == h)
        return E400;
    char *sp2 = memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1));
    if (!sp2 || sp2 == sp1 + 1)
        return E400;
    for (char *p = h; p < sp1; p++)
        if (!is_tchar((unsigned char)*p))
            return E400;
    for (char *p = sp1 + 1; p < sp2; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return E400;
    size_t vl = (size_t)(le - sp2 - 1);
    const char *v = sp2 + 1;
    if (vl != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
        v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
        return E400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return E505;
    c->v11 = v[7] == '1';
    c->method = h;
    c->mlen = (size_t)(sp1 - h);
    c->target = sp1 + 1;
    c->tlen = (size_t)(sp2 - sp1 - 1);
    c->head = c->mlen == 4 && memcmp(h, "HEAD", 4) == 0;

    /* origin-form, or absolute-form: skip scheme://authority */
    const char *t = c->target, *te = t + c->tlen;
    if (*t != '/') {
        const char *ss = memmem(t, c->tlen, "://", 3);
        if (ss) {
            const char *sl = memchr(ss + 3, '/', (size_t)(te - ss - 3));
            const char *qm = memchr(ss + 3, '?', (size_t)(te - ss - 3));
            t = sl && (!qm || sl < qm) ? sl : (qm ? qm : te);
        }
    }
    const char *qm = memchr(t, '?', (size_t)(te - t));
    c->path = t == te || *t == '?' ? "/" : t;
    c->plen = t == te || *t == '?' ? 1 : (size_t)((qm ? qm : te) - t);
    c->has_query = qm != NULL;
    c->query = qm ? qm + 1 : "";
    c->qlen = qm ? (size_t)(te - qm - 1) : 0;

    /* header fields */
    int conn_close = 0, conn_ka = 0, te_seen = 0, te_chunked = 0;
    int64_t cl = -1;
    char *p = eol + 1;
    for (;;) {
        char *nl = memchr(p, '\n', (size_t)(he - p));
        char *e = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        if (e == p)
            break; /* the empty line */
        char *colon = memchr(p, ':', (size_t)(e - p));
        if (!colon || colon == p)
            return E400;
        for (char *q = p; q < colon; q++) {
            if (!is_tchar((unsigned char)*q))
                return E400; /* also obs-fold and "name :" */
            if (*q >= 'A' && *q <= 'Z')
                *q += 'a' - 'A';
        }
        char *vs = colon + 1, *ve = e;
        while (vs < ve && (*vs == ' ' || *vs == '\t'))
            vs++;
        while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (char *q = vs; q < ve; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
                return E400;
        if (c->nhdrs == MAX_HDRS)
            return E431;
        if (c->nhdrs == c->hdrcap) {
            c->hdrcap = c->hdrcap ? c->hdrcap * 2 : 32;
            c->hdrs = realloc(c->hdrs, sizeof(hdr_t) * (size_t)c->hdrcap);
            if (!c->hdrs)
                abort();
        }
        size_t nlen = (size_t)(colon - p), vlen = (size_t)(ve - vs);
        c->hdrs[c->nhdrs++] = (hdr_t){(uint32_t)(p - h), (uint32_t)nlen,
                                      (uint32_t)(vs - h), (uint32_t)vlen};
        if (nlen == 14 && memcmp(p, "content-length", 14) == 0) {
            int64_t n = dec(vs, vlen);
            if (n < 0 || (cl >= 0 && cl != n))
                return E400;
            cl = n;
        } else if (nlen == 17 && memcmp(p, "transfer-encoding", 17) == 0) {
            /* the last coding of the last field must be chunked */
            const char *lt = ve;
            while (lt > vs && lt[-1] != ',')
                lt--;
            while (lt < ve && (*lt == ' ' || *lt == '\t'))
                lt++;
            te_seen = 1;
            te_chunked = ieq(lt, (size_t)(ve - lt), "chunked");
        } else if (nlen == 10 && memcmp(p, "connection", 10) == 0) {
            const char *tk = vs;
            while (tk < ve) {
                const char *ce = memchr(tk, ',', (size_t)(ve - tk));
                const char *tke = ce ? ce : ve;
                while (tk < tke && (*tk == ' ' || *tk == '\t'))
                    tk++;
                const char *tt = tke;
                while (tt > tk && (tt[-1] == ' ' || tt[-1] == '\t'))
                    tt--;
                if (ieq(tk, (size_t)(tt - tk), "close"))
                    conn_close = 1;
                else if (ieq(tk, (size_t)(tt - tk), "keep-alive"))
                    conn_ka = 1;
                tk = tke + 1;
            }
        } else if (nlen == 6 && memcmp(p, "expect", 6) == 0) {
            c->expect100 = ieq(vs, vlen, "100-continue");
        } else if (nlen == 7 && memcmp(p, "upgrade", 7) == 0) {
            c->upgrade = vs;
            c->uplen = vlen;
        }
        p = nl + 1;
    }
    if (te_seen && (!te_chunked || cl >= 0))
        return E400; /* smuggling-shaped: refuse rather than guess */
    c->keepalive = c->v11 ? !conn_close : (conn_ka && !conn_close);
    if (te_seen) {
        c->body_mode = BODY_CHUNKED;
        c->ch_state = CH_SIZE;
        c->trailer_len = 0;
    } else if (cl > 0) {
        c->body_mode = BODY_CL;
        c->body_left = (uint64_t)cl;
    }
    c->ep = endpoint(c);
    return 0;
}

static void body_take(conn_t *c, size_t n)
{
    if (c->body.len + n <= MAX_BODY)
        buf_add(&c->body, c->in.p + c->rpos, n);
    else
        c->body_trunc = 1;
    c->body_len += n;
    c->rpos += n;
}

/* Consume body bytes from in[rpos..). Returns 0 when the body is complete,
 * AGAIN, or E400. */
static int parse_body(conn_t *c)
{
    if (c->body_mode == BODY_NONE)
        return 0;
    if (c->body_mode == BODY_CL) {
        size_t avail = c->in.len - c->rpos;
        size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
        body_take(c, n);
        c->body_left -= n;
        return c->body_left ? AGAIN : 0;
    }
    for (;;) {
        char *b = c->in.p + c->rpos;
        size_t avail = c->in.len - c->rpos;
        char *nl;
        switch (c->ch_state) {
        case CH_SIZE: {
            nl = memchr(b, '\n', avail);
            if (!nl)
                return avail > 4096 ? E400 : AGAIN;
            uint64_t sz = 0;
            char *q = b;
            int nd = 0;
            for (; hexval(*q) >= 0; q++, nd++) {
                if (nd == 15)
                    return E400;
                sz = sz * 16 + (uint64_t)hexval(*q);
            }
            if (nd == 0 || (*q != ';' && *q != '\r' && *q != '\n' &&
                            *q != ' ' && *q != '\t'))
                return E400;
            c->rpos += (size_t)(nl - b) + 1;
            if (sz == 0)
                c->ch_state = CH_TRAILER;
            else {
                c->ch_state = CH_DATA;
                c->body_left = sz;
            }
            break;
        }
        case CH_DATA: {
            size_t n = avail < c->body_left ? avail : (size_t)c->body_left;
            body_take(c, n);
            c->body_left -= n;
            if (c->body_left)
                return AGAIN;
            c->ch_state = CH_CRLF;
            break;
        }
        case CH_CRLF:
            if (avail < 1)
                return AGAIN;
            if (b[0] == '\n') {
                c->rpos += 1;
            } else {
                if (avail < 2)
                    return AGAIN;
                if (b[0] != '\r' || b[1] != '\n')
                    return E400;
                c->rpos += 2;
            }
            c->ch_state = CH_SIZE;
            break;
        case CH_TRAILER:
            nl = memchr(b, '\n', avail);
            if (!nl)
                return c->trailer_len + avail > MAX_HEAD ? E431 : AGAIN;
            size_t ll = (size_t)(nl - b) + 1;
            c->rpos += ll;
            c->trailer_len += ll;
            if (ll == 1 || (ll == 2 && b[0] == '\r'))
                return 0;
            if (c->trailer_len > MAX_HEAD)
                return E431;
            break;
        }
    }
}

/* ---- responses --------------------------------------------------------- */

static const char *reason(int s)
{
    switch (s) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    return "Status";
}

#define CL_CHUNKED (-1)
#define CL_NONE    (-2)

/* Status line and headers onto c->out. clen >= 0: Content-Length;
 * CL_CHUNKED: chunked (HTTP/1.1) or close-delimited (1.0); CL_NONE: no
 * framing header (1xx/204/304). `extra` is CRLF-terminated lines or NULL. */
static void resp_head(conn_t *c, int status, const char *ctype, int64_t clen,
                      const char *extra)
{
    buf_t *o = &c->out;
    buf_printf(o, "HTTP/1.1 %d %s\r\nX-Upstream-Port: %d\r\n", status,
               reason(status), c->ls->port);
    if (ctype)
        buf_printf(o, "Content-Type: %s\r\n", ctype);
    if (clen >= 0)
        buf_printf(o, "Content-Length: %" PRId64 "\r\n", clen);
    else if (clen == CL_CHUNKED && c->v11)
        buf_adds(o, "Transfer-Encoding: chunked\r\n");
    else if (clen == CL_CHUNKED)
        c->keepalive = 0; /* HTTP/1.0: the close ends the body */
    if (extra)
        buf_adds(o, extra);
    if (!c->keepalive) {
        buf_adds(o, "Connection: close\r\n");
        c->close_after = 1;
    } else if (!c->v11) {
        buf_adds(o, "Connection: keep-alive\r\n");
    }
    buf_add(o, "\r\n", 2);
}

/* The request is answered: ready for the next one. */
static void resp_done(conn_t *c)
{
    c->busy = B_NONE;
    c->state = ST_HEAD;
    if (c->tmode != T_LINGER && c->tmode != T_NONE) {
        ev_timer_stop(g_loop, &c->tm);
        c->tmode = T_NONE;
    }
    req_reset(c);
}

static void resp_full(conn_t *c, int status, const char *ctype,
                      const char *body, size_t len, const char *extra)
{
    resp_head(c, status, ctype, (int64_t)len, extra);
    if (!c->head)
        buf_add(&c->out, body, len);
    resp_done(c);
}

static void echo_json(conn_t *c, buf_t *b)
{
    const char *h = c->hbuf.p;
    b->len = 0;
    buf_adds(b, "{\"method\":");
    json_str(b, c->method, c->mlen);
    buf_adds(b, ",\"uri\":");
    json_str(b, c->target, c->tlen);
    buf_adds(b, ",\"path\":");
    json_str(b, c->path, c->plen);
    buf_adds(b, ",\"query\":");
    json_str(b, c->query, c->qlen);

    /* args: decoded; a repeated key becomes an array */
    buf_adds(b, ",\"args\":{");
    buf_t keys = {0};
    const char *q = c->query, *qe = c->query + c->qlen;
    int first = 1;
    while (q < qe) {
        const char *amp = memchr(q, '&', (size_t)(qe - q));
        const char *e = amp ? amp : qe;
        const char *eq = memchr(q, '=', (size_t)(e - q));
        const char *ke = eq ? eq : e;
        if (ke > q) {
            /* skip keys already emitted (emitted with all their values) */
            int dup = 0;
            for (const char *p2 = c->query; p2 < q;) {
                const char *a2 = memchr(p2, '&', (size_t)(q - p2));
                const char *e2 = a2 ? a2 : q;
                const char *q2 = memchr(p2, '=', (size_t)(e2 - p2));
                const char *k2 = q2 ? q2 : e2;
                if (k2 - p2 == ke - q && memcmp(p2, q, (size_t)(ke - q)) == 0)
                    dup = 1;
                p2 = e2 + 1;
            }
            if (!dup) {
                int count = 0;
                for (const char *p2 = q; p2 < qe;) {
                    const char *a2 = memchr(p2, '&', (size_t)(qe - p2));
                    const char *e2 = a2 ? a2 : qe;
                    const char *q2 = memchr(p2, '=', (size_t)(e2 - p2));
                    const char *k2 = q2 ? q2 : e2;
                    if (k2 - p2 == ke - q &&
                        memcmp(p2, q, (size_t)(ke - q)) == 0)
                        count++;
                    p2 = e2 + 1;
                }
                if (!first)
                    buf_add(b, ",", 1);
                first = 0;
                keys.len = 0;
                url_decode(&keys, q, (size_t)(ke - q));
                json_str(b, keys.p, keys.len);
                buf_add(b, ":", 1);
                if (count > 1)
                    buf_add(b, "[", 1);
                int n = 0;
                for (const char *p2 = q; p2 < qe;) {
                    const char *a2 = memchr(p2, '&', (size_t)(qe - p2));
                    const char *e2 = a2 ? a2 : qe;
                    const char *q2 = memchr(p2, '=', (size_t)(e2 - p2));
                    const char *k2 = q2 ? q2 : e2;
                    if (k2 - p2 == ke - q &&
                        memcmp(p2, q, (size_t)(ke - q)) == 0) {
                        if (n++)
                            buf_add(b, ",", 1);
                        keys.len = 0;
                        if (q2)
                            url_decode(&keys, q2 + 1, (size_t)(e2 - q2 - 1));
                        if (q2)
                            json_str(b, keys.p ? keys.p : "", keys.len);
                        else
                            buf_adds(b, "true");
                    }
                    p2 = e2 + 1;
                }
                if (count > 1)
                    buf_add(b, "]", 1);
            }
        }
        q = e + 1;
    }
    buf_free(&keys);
    buf_printf(b, "},\"http_version\":\"1.%d\",\"headers\":{", c->v11);

    /* headers: lower-case names, first-seen order, repeats as arrays */
    first = 1;
    for (int i = 0; i < c->nhdrs; i++) {
        hdr_t *x = &c->hdrs[i];
        int dup = 0, count = 0;
        for (int j = 0; j < i && !dup; j++)
            dup = c->hdrs[j].nlen == x->nlen &&
                  memcmp(h + c->hdrs[j].name, h + x->name, x->nlen) == 0;
        if (dup)
            continue;
        for (int j = i; j < c->nhdrs; j++)
            count += c->hdrs[j].nlen == x->nlen &&
                     memcmp(h + c->hdrs[j].name, h + x->name, x->nlen) == 0;
        if (!first)
            buf_add(b, ",", 1);
        first = 0;
        json_str(b, h + x->name, x->nlen);
        buf_add(b, ":", 1);
        if (count > 1)
            buf_add(b, "[", 1);
        int n = 0;
        for (int j = i; j < c->nhdrs; j++) {
            hdr_t *y = &c->hdrs[j];
            if (y->nlen == x->nlen &&
                memcmp(h + y->name, h + x->name, x->nlen) == 0) {
                if (n++)
                    buf_add(b, ",", 1);
                json_str(b, h + y->val, y->vlen);
            }
        }
        if (count > 1)
            buf_add(b, "]", 1);
    }
    buf_adds(b, "},\"body\":");
    json_str(b, c->body.p ? c->body.p : "", c->body.len);
    buf_printf(b,
               ",\"body_len\":%" PRIu64 "%s,\"chunked\":%s,\"port\":%d,"
               "\"conn_requests\":%u}",
               c->body_len, c->body_trunc ? ",\"body_truncated\":true" : "",
               c->body_mode == BODY_CHUNKED ? "true" : "false", c->ls->port,
               c->nreq);
}

static void resp_echo(conn_t *c, const char *extra)
{
    echo_json(c, &g_tmp);
    resp_full(c, 200, "application/json", g_tmp.p, g_tmp.len, extra);
    if (g_tmp.cap > (1 << 20))
        buf_free(&g_tmp);
}

/* A malformed request: answer and close (the rest of the input is not
 * trusted to be framed). */
static void resp_error(conn_t *c, int status)
{
    char body[64];
    int n = snprintf(body, sizeof body, "{\"status\":%d}", status);
    c->keepalive = 0;
    c->head = 0;
    c->v11 = 1;
    resp_head(c, status, "application/json", n, NULL);
    buf_add(&c->out, body, (size_t)n);
    resp_done(c);
}

static void sse_emit(conn_t *c)
{
    buf_t *o = &c->out;
    char ev[128];
    int n;
    if (c->sse_i < c->sse_n) {
        n = snprintf(ev, sizeof ev, "data: {\"i\":%d,\"t\":%.0f", c->sse_i,
                     now_ms() - c->t0);
        /* pad inside the JSON so the event stays valid: the event is
         * prefix + ,"pad":"xx..x" + }\n\n = n + 9 + pad + 3 bytes */
        int padded = c->sse_size >= (size_t)n + 12;
        size_t pad = padded ? c->sse_size - (size_t)n - 12 : 0;
        size_t total = (size_t)n + (padded ? 9 + pad : 0) + 3;
        if (c->s_chunked)
            buf_printf(o, "%zx\r\n", total);
        buf_add(o, ev, (size_t)n);
        if (padded) {
            buf_adds(o, ",\"pad\":\"");
            buf_reserve(o, pad);
            memset(o->p + o->len, 'x', pad);
            o->len += pad;
            buf_add(o, "\"", 1);
        }
        buf_add(o, "}\n\n", 3);
        if (c->s_chunked)
            buf_add(o, "\r\n", 2);
    } else if (c->sse_i == c->sse_n) {
        if (c->s_chunked)
            buf_adds(o, "e\r\ndata: [DONE]\n\n\r\n");
        else
            buf_adds(o, "data: [DONE]\n\n");
    } else {
        if (c->s_chunked)
            buf_adds(o, "0\r\n\r\n");
        resp_done(c);
        return;
    }
    c->sse_i++;
}

/* Advance a streaming response once its previous output has drained.
 * Returns 1 when it queued output or finished, 0 when it waits. */
static int stream_step(conn_t *c)
{
    if (c->busy == B_BYTES) {
        if (c->s_left == 0) {
            if (c->s_chunked)
                buf_adds(&c->out, "0\r\n\r\n");
            resp_done(c);
            return 1;
        }
        size_t n = c->s_left < GEN_CHUNK ? (size_t)c->s_left : GEN_CHUNK;
        buf_t *o = &c->out;
        size_t done = 0;
        while (done < n) {
            size_t k = n - done;
            if (c->s_chunked && k > BYTES_CHUNK)
                k = BYTES_CHUNK;
            if (c->s_chunked)
                buf_printf(o, "%zx\r\n", k);
            buf_add(o, g_pat + (c->s_pos + done) % 26, k);
            if (c->s_chunked)
                buf_add(o, "\r\n", 2);
            done += k;
        }
        c->s_pos += n;
        c->s_left -= n;
        return 1;
    }
    if (c->busy == B_SSE) {
        if (c->sse_ival > 0 && !c->sse_due && c->sse_i > 0 &&
            c->sse_i <= c->sse_n)
            return 0;
        c->sse_due = 0;
        sse_emit(c);
        if (c->busy == B_SSE && c->sse_ival > 0 && c->sse_i <= c->sse_n) {
            c->tmode = T_SSE;
            ev_timer_set(&c->tm, c->sse_ival / 1e3, 0.);
            ev_timer_start(g_loop, &c->tm);
        }
        return 1;
    }
    return 0;
}

static void dispatch(conn_t *c)
{
    c->nreq++;
    g_reqs++;
    switch (c->ep) {
    case EP_FAST:
        if (c->v11 && c->keepalive && !c->head) {
            buf_add(&c->out, c->ls->fast, c->ls->fast_len);
            resp_done(c);
        } else {
            resp_full(c, 200, "text/plain", "hello\n", 6, NULL);
        }
        return;

    case EP_STATUS: {
        int64_t s = dec(c->path + 8, c->plen - 8);
        if (s < 100 || s > 999) {
            resp_error(c, 400);
            return;
        }
        char body[64];
        int n;
        if (s == 101) {
            char extra[256];
            snprintf(extra, sizeof extra, "Connection: upgrade\r\n"
                     "Upgrade: %.*s\r\n", c->upgrade ? (int)c->uplen : 4,
                     c->upgrade ? c->upgrade : "mock");
            c->keepalive = 1;
            resp_head(c, 101, NULL, CL_NONE, extra);
            req_reset(c);
            c->state = ST_BUSY;
            c->busy = B_RAW;
            return;
        }
        if (s < 200) {
            buf_printf(&c->out, "HTTP/1.1 %d %s\r\nX-Upstream-Port: %d\r\n\r\n",
                       (int)s, reason((int)s), c->ls->port);
            n = snprintf(body, sizeof body,
                         "{\"status\":200,\"interim\":%d}", (int)s);
            resp_full(c, 200, "application/json", body, (size_t)n, NULL);
            return;
        }
        if (s == 204 || s == 304) {
            resp_head(c, (int)s, NULL, CL_NONE, NULL);
            resp_done(c);
            return;
        }
        n = snprintf(body, sizeof body, "{\"status\":%d}", (int)s);
        resp_full(c, (int)s, "application/json", body, (size_t)n, NULL);
        return;
    }

    case EP_DELAY: {
        int64_t ms = dec(c->path + 7, c->plen - 7);
        if (ms < 0) {
            resp_error(c, 400);
            return;
        }
        c->state = ST_BUSY;
        c->busy = B_DELAY;
        c->tmode = T_DELAY;
        ev_timer_set(&c->tm, (double)ms / 1e3, 0.);
        ev_timer_start(g_loop, &c->tm);
        return;
    }

    case EP_HANG:
        c->state = ST_BUSY;
        c->busy = B_HANG;
        return;

    case EP_DROP:
        c->drop = 1;
        c->close_after = 1;
        resp_done(c);
        return;

    case EP_CLOSE:
        c->keepalive = 0;
        resp_echo(c, NULL);
        return;

    case EP_BYTES: {
        int64_t n = dec(c->path + 7, c->plen - 7);
        if (n < 0) {
            resp_error(c, 400);
            return;
        }
        c->s_chunked = arg_num(c, "chunked", 0) && c->v11;
        resp_head(c, 200, "application/octet-stream",
                  c->s_chunked ? CL_CHUNKED : n, NULL);
        if (c->head) {
            resp_done(c);
            return;
        }
        c->s_left = (uint64_t)n;
        c->s_pos = 0;
        c->state = ST_BUSY;
        c->busy = B_BYTES;
        return;
    }

    case EP_SSE: {
        int64_t n = arg_num(c, "n", 21), iv = arg_num(c, "interval_ms", 100);
        int64_t sz = arg_num(c, "size", 0);
        c->sse_n = n > 1000000 ? 1000000 : (int)n;
        c->sse_ival = (double)iv;
        c->sse_size = sz > (1 << 20) ? (1 << 20) : (size_t)sz;
        c->s_chunked = c->v11;
        resp_head(c, 200, "text/event-stream", CL_CHUNKED,
                  "Cache-Control: no-cache\r\n");
        if (c->head) {
            resp_done(c);
            return;
        }
        c->sse_i = 0;
        c->sse_due = 0;
        c->t0 = now_ms();
        c->state = ST_BUSY;
        c->busy = B_SSE;
        return;
    }

    case EP_HINTS:
        buf_adds(&c->out, "HTTP/1.1 103 Early Hints\r\n"
                          "Link: </x>; rel=preload\r\n\r\n");
        resp_echo(c, NULL);
        return;

    case EP_STATS: {
        char body[160];
        int n = snprintf(body, sizeof body,
                         "{\"connections\":%" PRIu64 ",\"requests\":%" PRIu64
                         ",\"open\":%" PRIu64 "}", g_conns, g_reqs, g_open);
        resp_full(c, 200, "application/json", body, (size_t)n, NULL);
        return;
    }

    case EP_SLOW: {
        char body[160];
        int n = snprintf(body, sizeof body,
                         "{\"body_len\":%" PRIu64 ",\"chunked\":%s,"
                         "\"port\":%d}", c->body_len,
                         c->body_mode == BODY_CHUNKED ? "true" : "false",
                         c->ls->port);
        resp_full(c, 200, "application/json", body, (size_t)n, NULL);
        return;
    }

    default:
        resp_echo(c, NULL);
        return;
    }
}

/* Parse and answer every complete request in the input, in order, until
 * one has to wait. */
static void process(conn_t *c)
{
    for (;;) {
        if (c->dead || c->lingering)
            return;
        if (c->busy == B_RAW) {
            if (c->rpos < c->in.len)
                buf_add(&c->out, c->in.p + c->rpos, c->in.len - c->rpos);
            c->rpos = c->in.len;
            return;
        }
        if (c->state == ST_BUSY || c->out.len - c->ooff > OUT_HIGH)
            return;
        if (c->state == ST_HEAD) {
            if (c->close_after)
                return;
            int r = parse_head(c);
            if (r == AGAIN)
                return;
            if (r < 0) {
                resp_error(c, -r);
                return;
            }
            c->state = ST_BODY;
            if (c->body_mode != BODY_NONE && c->expect100 && c->v11 &&
                c->rpos == c->in.len)
                buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
            if (c->ep == EP_SLOW && c->body_mode != BODY_NONE) {
                int64_t b = arg_num(c, "bytes", 1024);
                int64_t iv = arg_num(c, "interval_ms", 10);
                c->slow = 1;
                c->slow_bytes = b < 1 ? 1 : b > (1 << 20) ? (1 << 20)
                                                          : (size_t)b;
                c->slow_ival = iv < 1 ? 1e-3 : (double)iv / 1e3;
                c->tmode = T_SLOW;
                ev_timer_set(&c->tm, c->slow_ival, c->slow_ival);
                ev_timer_start(g_loop, &c->tm);
            }
        }
        if (c->state == ST_BODY) {
            int r = parse_body(c);
            if (r == AGAIN)
                return;
            if (r < 0) {
                resp_error(c, -r);
                return;
            }
            if (c->slow) {
                ev_timer_stop(g_loop, &c->tm);
                c->tmode = T_NONE;
                c->slow = 0;
            }
            dispatch(c);
        }
    }
}

/* ---- connection I/O ---------------------------------------------------- */

static void conn_free(conn_t *c)
{
    ev_io_stop(g_loop, &c->rw);
    ev_io_stop(g_loop, &c->ww);
    ev_timer_stop(g_loop, &c->tm);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->hbuf);
    buf_free(&c->body);
    free(c->hdrs);
    free(c);
    g_open--;
}

/* One read of at most `max` bytes. Sets eof or dead. */
static void conn_read(conn_t *c, size_t max)
{
    if (c->lingering) {
        static char sink[65536];
        ssize_t n = read(c->fd, sink, sizeof sink);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            c->dead = 1;
        return;
    }
    buf_t *in = &c->in;
    if (c->rpos && (c->rpos == in->len || in->cap - in->len < 16384)) {
        memmove(in->p, in->p + c->rpos, in->len - c->rpos);
        in->len -= c->rpos;
        c->hscan = c->hscan > c->rpos ? c->hscan - c->rpos : 0;
        c->rpos = 0;
    }
    if (in->len == 0 && in->cap > (256 << 10))
        buf_free(in);
    buf_reserve(in, 16384);
    size_t room = in->cap - in->len;
    if (room > max)
        room = max;
    ssize_t n = read(c->fd, in->p + in->len, room);
    if (n > 0)
        in->len += (size_t)n;
    else if (n == 0)
        c->eof = 1;
    else if (errno != EAGAIN && errno != EINTR)
        c->dead = 1;
}

/* Write queued output. 1: all written; 0: the socket is full; -1: dead. */
static int conn_flush(conn_t *c)
{
    while (c->ooff < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + c->ooff, c->out.len - c->ooff);
        if (n > 0) {
            c->ooff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            c->wblocked = 1;
            return 0;
        } else {
            c->dead = 1;
            return -1;
        }
    }
    c->out.len = c->ooff = 0;
    c->wblocked = 0;
    if (c->out.cap > (1 << 20))
        buf_free(&c->out);
    return 1;
}

static void conn_linger(conn_t *c)
{
    /* Close gracefully: FIN first, then discard what the client still sends
     * so that unread input does not turn our close into a RST that could
     * destroy the response in flight. */
    c->lingering = 1;
    shutdown(c->fd, SHUT_WR);
    ev_timer_stop(g_loop, &c->tm);
    c->tmode = T_LINGER;
    ev_timer_set(&c->tm, LINGER_SEC, 0.);
    ev_timer_start(g_loop, &c->tm);
}

static void conn_watch(conn_t *c)
{
    int r = c->lingering ||
            (!c->eof && !c->slow && !c->close_after &&
             c->out.len - c->ooff < OUT_HIGH && c->in.len - c->rpos < IN_HIGH);
    int w = c->wblocked && !c->lingering;
    if (r != c->reading) {
        if (r)
            ev_io_start(g_loop, &c->rw);
        else
            ev_io_stop(g_loop, &c->rw);
        c->reading = r;
    }
    if (w != c->writing) {
        if (w)
            ev_io_start(g_loop, &c->ww);
        else
            ev_io_stop(g_loop, &c->ww);
        c->writing = w;
    }
}

static void conn_run(conn_t *c)
{
    int budget = 16; /* x GEN_CHUNK: yield to other connections */
    while (!c->dead && !c->lingering) {
        process(c);
        if (c->dead)
            break;
        if (c->ooff < c->out.len && conn_flush(c) <= 0)
            break;
        if (c->busy != B_BYTES && c->busy != B_SSE)
            break;
        if (--budget == 0) {
            c->wblocked = 1; /* writable: the watcher fires next turn */
            break;
        }
        if (!stream_step(c))
            break;
    }
    if (!c->dead && !c->lingering) {
        int idle = c->ooff == c->out.len;
        if (c->close_after && idle && c->busy == B_NONE &&
            c->state == ST_HEAD) {
            if (c->drop)
                c->dead = 1;
            else
                conn_linger(c);
        } else if (c->eof) {
            /* a client gone while we wait (delay, hang) is gone: a
             * proxy that drops its upstream request shows up here */
            if (c->busy == B_HANG || c->busy == B_DELAY ||
                (idle && (c->busy == B_NONE ||
                                               c->busy == B_RAW)))
                c->dead = 1;
        }
    }
    if (c->dead) {
        conn_free(c);
        return;
    }
    conn_watch(c);
}

static void on_read(struct ev_loop *L, ev_io *w, int revents)
{
    (void)L, (void)revents;
    conn_t *c = w->data;
    conn_read(c, SIZE_MAX);
    conn_run(c);
}

static void on_write(struct ev_loop *L, ev_io *w, int revents)
{
    (void)L, (void)revents;
    conn_t *c = w->data;
    c->wblocked = 0;
    conn_run(c);
}

static void on_timer(struct ev_loop *L, ev_timer *w, int revents)
{
    (void)L, (void)revents;
    conn_t *c = w->data;
    switch (c->tmode) {
    case T_DELAY:
        c->tmode = T_NONE;
        resp_echo(c, NULL);
        break;
    case T_SSE:
        c->tmode = T_NONE;
        c->sse_due = 1;
        break;
    case T_SLOW:
        conn_read(c, c->slow_bytes);
        break;
    case T_LINGER:
        c->dead = 1;
        break;
    }
    conn_run(c);
}

static void on_accept(struct ev_loop *L, ev_io *w, int revents)
{
    (void)revents;
    listener_t *ls = (listener_t *)w;
    for (int i = 0; i < 256; i++) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                for (int k = 0; k < g_nls; k++)
                    ev_io_stop(L, &g_ls[k].w);
                ev_timer_start(L, &g_accept_pause);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->ls = ls;
        c->state = ST_HEAD;
        ev_io_init(&c->rw, on_read, fd, EV_READ);
        ev_io_init(&c->ww, on_write, fd, EV_WRITE);
        ev_timer_init(&c->tm, on_timer, 0., 0.);
        c->rw.data = c->ww.data = c->tm.data = c;
        ev_io_start(L, &c->rw);
        c->reading = 1;
        g_conns++;
        g_open++;
    }
}

static void on_accept_resume(struct ev_loop *L, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    for (int k = 0; k < g_nls; k++)
        ev_io_start(L, &g_ls[k].w);
}

static void on_signal(struct ev_loop *L, ev_signal *w, int revents)
{
    (void)w, (void)revents;
    ev_break(L, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    int first = 1;
    if (argc > 1 && strcmp(argv[1], "-q") == 0)
        first = 2;
    if (first >= argc) {
        fprintf(stderr, "usage: %s [-q] PORT [PORT ...]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (size_t i = 0; i < sizeof g_pat; i++)
        g_pat[i] = (char)('a' + i % 26);

    g_loop = EV_DEFAULT;
    g_nls = argc - first;
    g_ls = calloc((size_t)g_nls, sizeof *g_ls);
    if (!g_ls)
        return 1;
    for (int i = 0; i < g_nls; i++) {
        char *end;
        long port = strtol(argv[first + i], &end, 10);
        if (*end || port < 1 || port > 65535) {
            fprintf(stderr, "mockup: bad port '%s'\n", argv[first + i]);
            return 2;
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
            listen(fd, 4096) < 0) {
            fprintf(stderr, "mockup: listen 127.0.0.1:%ld: %s\n", port,
                    strerror(errno));
            return 1;
        }
        listener_t *ls = &g_ls[i];
        ls->port = (int)port;
        int n = snprintf(ls->fast, sizeof ls->fast,
                         "HTTP/1.1 200 OK\r\nX-Upstream-Port: %d\r\n"
                         "Content-Type: text/plain\r\nContent-Length: 6\r\n"
                         "\r\nhello\n", ls->port);
        ls->fast_len = (size_t)n;
        ev_io_init(&ls->w, on_accept, fd, EV_READ);
        ev_io_start(g_loop, &ls->w);
    }
    ev_timer_init(&g_accept_pause, on_accept_resume, 0.1, 0.);

    ev_signal sig_term, sig_int;
    ev_signal_init(&sig_term, on_signal, SIGTERM);
    ev_signal_init(&sig_int, on_signal, SIGINT);
    ev_signal_start(g_loop, &sig_term);
    ev_signal_start(g_loop, &sig_int);

    printf("ready\n");
    fflush(stdout);
    ev_run(g_loop, 0);
    return 0;
}
