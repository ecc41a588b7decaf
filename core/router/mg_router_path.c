/*
 * mg_router_path.c -- the request path around routing: Kong's path
 * normalisation before matching, and the path sent upstream after it
 * (strip_path x path_handling x service.path, then re-escaping).
 *
 * Both are pure functions over caller buffers: the request path is
 * normalised once into the request arena, and the upstream path is
 * written where the request line to the upstream is being built.  The
 * rules are transcribed from Kong 3.x (kong.tools.uri normalize/escape,
 * kong.router.utils get_upstream_uri_v0, the traditional router's v1
 * branch) and checked against Kong's router_path_handling_tests table in
 * spec/c/test_router.c.  Kept apart from mg_router.c so the matcher file
 * stays readable; neither looks at the other's data.
 */
#include "mg_router.h"

static inline unsigned char
rp_lower(unsigned char c)
{
    return (unsigned) (c - 'A') < 26u ? (unsigned char) (c | 0x20) : c;
}

static int
rp_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = rp_lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int
rp_reserved(unsigned char c)
{
    return c != '\0' && strchr("!*'();:@&=+$,/?%#[]", c) != NULL;
}

ssize_t
mg_router_path_normalize(const char *in, size_t n, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t            i, o = 0, rd;

    /* 1. percent-decode all but reserved characters (kept, upper hex) */
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char) in[i];
        int           hi, lo;

        if (c == '%' && i + 2 < n
            && (hi = rp_hexval((unsigned char) in[i + 1])) >= 0
            && (lo = rp_hexval((unsigned char) in[i + 2])) >= 0)
        {
            unsigned char d = (unsigned char) (hi << 4 | lo);

            if (rp_reserved(d)) {
                if (o + 3 > len) {
                    return -1;
                }
                out[o++] = '%';
                out[o++] = hex[hi];
                out[o++] = hex[lo];
            } else {
                if (o + 1 > len) {
                    return -1;
                }
                out[o++] = (char) d;
            }
            i += 2;
            continue;
        }
        if (o >= len) {
            return -1;
        }
        out[o++] = (char) c;
    }

    /* 2. dot segments and repeated slashes (kong.tools.uri.normalize),
     * in place: the write position never passes the read position. */
    n = o;
    o = 0;
    rd = 0;
    while (rd < n) {
        const char *u = out + rd;
        size_t      ul = n - rd;

        if ((ul == 2 && u[0] == '/' && u[1] == '.')
            || (ul == 3 && u[0] == '/' && u[1] == '.' && u[2] == '.'))
        {
            if (ul == 3) {
                while (o > 0 && out[--o] != '/') { /* pop a segment */ }
            }
            out[o++] = '/';
            break;
        }
        if ((ul == 1 && u[0] == '.') || (ul == 2 && u[0] == '.' && u[1] == '.')) {
            break;
        }
        if (ul >= 3 && u[0] == '.' && u[1] == '.' && u[2] == '/') {
            rd += 3;
        } else if (ul >= 2 && u[0] == '.' && u[1] == '/') {
            rd += 2;
        } else if (ul >= 3 && u[0] == '/' && u[1] == '.' && u[2] == '/') {
            rd += 2;
        } else if (ul >= 4 && u[0] == '/' && u[1] == '.' && u[2] == '.'
                   && u[3] == '/')
        {
            rd += 3;
            while (o > 0 && out[--o] != '/') { /* pop a segment */ }
        } else if (ul >= 2 && u[0] == '/' && u[1] == '/') {
            rd += 1;
        } else {
            /* copy one segment: up to (not including) the next '/' found
             * from the second byte on */
            size_t k = 1;
            while (k < ul && u[k] != '/') {
                k++;
            }
            memmove(out + o, u, k);
            o += k;
            rd += k;
        }
    }
    return (ssize_t) o;
}

/* Kong's kong.tools.uri.escape: %-encode what may not travel raw. */
static int
rp_escape_ok(unsigned char c)
{
    if ((unsigned) ((c | 0x20) - 'a') < 26u || (unsigned) (c - '0') < 10u) {
        return 1;
    }
    return c != '\0' && strchr("!#$&'()*+,/:;=?@[]-_.~%", c) != NULL;
}

typedef struct {
    char   *buf;
    size_t  len;
    size_t  o;
    int     overflow;
} rp_out_t;

static void
rp_put(rp_out_t *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t            i;

    for (i = 0; i < n && !w->overflow; i++) {
        unsigned char c = (unsigned char) s[i];
        if (rp_escape_ok(c)) {
            if (w->o + 1 > w->len) {
                w->overflow = 1;
                return;
            }
            w->buf[w->o++] = (char) c;
        } else {
            if (w->o + 3 > w->len) {
                w->overflow = 1;
                return;
            }
            w->buf[w->o++] = '%';
            w->buf[w->o++] = hex[c >> 4];
            w->buf[w->o++] = hex[c & 15];
        }
    }
}

ssize_t
mg_router_upstream_path(const mg_router_match_t *m,
                        const mg_router_req_t *req, mg_str_t service_path,
                        char *buf, size_t len)
{
    const mg_route_t *route = m->route;
    mg_str_t          uri = req->path, base = service_path, post;
    int               strip = route->strip_path;
    int               v1 = mg_str_eq_lit(route->path_handling, "v1");
    int               base_slash, uri_slash;
    rp_out_t          w = { buf, len, 0, 0 };

    if (uri.len == 0) {
        mg_str_set(&uri, "/");
    }
    if (base.len == 0) {
        mg_str_set(&base, "/");
    }

    /* the part after the matched path (or after the first "/" when no
     * path matched), with a leading "./" or "../" dropped (Kong's
     * sanitize_uri_postfix) */
    if (strip && m->matched_path.data != NULL) {
        size_t k = mg_min(m->prefix_len, uri.len);
        post.data = uri.data + k;
        post.len = uri.len - k;
    } else {
        post.data = uri.data + 1;
        post.len = uri.len - 1;
    }
    if ((post.len == 1 && post.data[0] == '.')
        || (post.len == 2 && post.data[0] == '.' && post.data[1] == '.'))
    {
        post.len = 0;
    } else if (post.len >= 2 && post.data[0] == '.' && post.data[1] == '/') {
        post.data += 2;
        post.len -= 2;
    } else if (post.len >= 3 && post.data[0] == '.' && post.data[1] == '.'
               && post.data[2] == '/')
    {
        post.data += 3;
        post.len -= 3;
    }

    base_slash = base.data[base.len - 1] == '/';
    uri_slash = uri.data[uri.len - 1] == '/';

    if (v1) {
        if (!strip) {
            rp_put(&w, base.data, base.len);
            rp_put(&w, uri.data + 1, uri.len - 1);
        } else if (base_slash && post.len && post.data[0] == '/') {
            rp_put(&w, base.data, base.len - 1);
            rp_put(&w, post.data, post.len);
        } else {
            rp_put(&w, base.data, base.len);
            rp_put(&w, post.data, post.len);
        }

    } else if (base_slash) {
        if (!strip) {
            rp_put(&w, base.data, base.len);
            rp_put(&w, uri.data + 1, uri.len - 1);
        } else if (post.len == 0) {
            if (base.len == 1) {
                rp_put(&w, "/", 1);
            } else if (uri_slash) {
                rp_put(&w, base.data, base.len);
            } else {
                rp_put(&w, base.data, base.len - 1);
            }
        } else if (post.data[0] == '/') {
            rp_put(&w, base.data, base.len - 1);
            rp_put(&w, post.data, post.len);
        } else {
            rp_put(&w, base.data, base.len);
            rp_put(&w, post.data, post.len);
        }

    } else {
        if (!strip) {
            rp_put(&w, base.data, base.len);
            if (!(uri.len == 1 && uri.data[0] == '/')) {
                rp_put(&w, uri.data, uri.len);
            }
        } else if (post.len == 0) {
            rp_put(&w, base.data, base.len);
            if (uri.len > 1 && uri_slash) {
                rp_put(&w, "/", 1);
            }
        } else {
            rp_put(&w, base.data, base.len);
            if (post.data[0] != '/') {
                rp_put(&w, "/", 1);
            }
            rp_put(&w, post.data, post.len);
        }
    }

    return w.overflow ? -1 : (ssize_t) w.o;
}
