/*
 * mg_http_parser.c -- the adapter around nodejs/http-parser 2.9 (Debian
 * libhttp-parser).  See mg_http_parser.h for the contract.
 */
#include <strings.h>
#include <http_parser.h>
#include "mg_http_parser.h"

_Static_assert(sizeof(http_parser) <= sizeof(((mg_http_parser_t *) 0)->_hp),
               "mg_http_parser_t too small for http_parser");

#define HP(p) ((http_parser *) (void *) (p)->_hp)

typedef struct {
    mg_http_parser_t  *parser;
    mg_http_head_t    *head;
    mg_http_header_t  *hdrs;
    size_t             max;
    int                err;
    int                head_only;
    unsigned           in_value:1;
    unsigned           complete:1;
    mg_http_body_pt    on_data;
    void              *ctx;
} mg_http_cb_t;

size_t
mg_http_head_end(const char *p, size_t len, size_t *line_len)
{
    const char *s = p, *end = p + len, *nl;

    /* skip the empty lines a client may send between requests */
    while (s < end && (*s == '\r' || *s == '\n')) {
        s++;
    }
    *line_len = 0;
    nl = memchr(s, '\n', (size_t) (end - s));
    if (nl == NULL) {
        return 0;
    }
    *line_len = (size_t) (nl - s);
    while (nl) {
        const char *q = nl + 1;
        if (q < end && *q == '\n') {
            return (size_t) (q + 1 - p);
        }
        if (q + 1 < end && q[0] == '\r' && q[1] == '\n') {
            return (size_t) (q + 2 - p);
        }
        if (q + 1 >= end) {
            return 0;
        }
        nl = memchr(q, '\n', (size_t) (end - q));
    }
    return 0;
}

static int
mg_http_on_url(http_parser *hp, const char *at, size_t n)
{
    mg_http_cb_t *cb = hp->data;
    cb->head->uri.data = at;
    cb->head->uri.len = n;
    return 0;
}

static int
mg_http_on_status(http_parser *hp, const char *at, size_t n)
{
    mg_http_cb_t *cb = hp->data;
    cb->head->reason.data = at;
    cb->head->reason.len = n;
    return 0;
}

static int
mg_http_on_header_field(http_parser *hp, const char *at, size_t n)
{
    mg_http_cb_t   *cb = hp->data;
    mg_http_head_t *h = cb->head;

    if (h == NULL) {
        return 0;       /* a chunked trailer: framing only, not kept */
    }
    if (h->nheaders >= cb->max) {
        cb->err = MG_HTTP_E_HEADERS_TOO_LARGE;
        return 1;
    }
    cb->hdrs[h->nheaders].name.data = at;
    cb->hdrs[h->nheaders].name.len = n;
    cb->hdrs[h->nheaders].value.data = at + n;   /* empty value default */
    cb->hdrs[h->nheaders].value.len = 0;
    h->nheaders++;
    return 0;
}

static int
mg_http_on_header_value(http_parser *hp, const char *at, size_t n)
{
    mg_http_cb_t     *cb = hp->data;
    mg_http_header_t *hdr;

    if (cb->head == NULL) {
        return 0;
    }
    if (cb->head->nheaders == 0) {
        return 1;
    }
    hdr = &cb->hdrs[cb->head->nheaders - 1];
    hdr->value.data = at;
    hdr->value.len = n;
    return 0;
}

static int
mg_http_on_headers_complete(http_parser *hp)
{
    mg_http_cb_t *cb = hp->data;
    return cb->head_only ? 1 : 0;
}

static int
mg_http_on_message_complete(http_parser *hp)
{
    mg_http_cb_t *cb = hp->data;
    cb->complete = 1;
    cb->parser->_done = 1;
    /* stop at the message boundary: the rest is the next message */
    http_parser_pause(hp, 1);
    return 0;
}

static int
mg_http_on_body(http_parser *hp, const char *at, size_t n)
{
    mg_http_cb_t *cb = hp->data;
    if (cb->on_data) {
        return cb->on_data(cb->ctx, at, n);
    }
    return 0;
}

static const http_parser_settings mg_http_settings = {
    .on_url = mg_http_on_url,
    .on_status = mg_http_on_status,
    .on_header_field = mg_http_on_header_field,
    .on_header_value = mg_http_on_header_value,
    .on_headers_complete = mg_http_on_headers_complete,
    .on_body = mg_http_on_body,
    .on_message_complete = mg_http_on_message_complete,
};

/* RFC 9110 tchar: what a header name may contain.  http-parser 2.9 lets
 * some bytes through (a space, for one), and "Transfer-Encoding : chunked"
 * read differently by two hops is how requests get smuggled. */
static const uint8_t mg_http_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static int
mg_http_token_has(mg_str_t v, const char *tok)
{
    size_t      n = strlen(tok), i = 0;

    while (i < v.len) {
        size_t s, e;
        while (i < v.len && (v.data[i] == ' ' || v.data[i] == '\t'
                             || v.data[i] == ','))
        {
            i++;
        }
        s = i;
        while (i < v.len && v.data[i] != ',') {
            i++;
        }
        e = i;
        while (e > s && (v.data[e - 1] == ' ' || v.data[e - 1] == '\t')) {
            e--;
        }
        if (e - s == n && strncasecmp(v.data + s, tok, n) == 0) {
            return 1;
        }
    }
    return 0;
}

int
mg_http_parse_head(mg_http_parser_t *parser, int type, const char *p,
                   size_t len, mg_http_head_t *head, mg_http_header_t *hdrs,
                   size_t max_headers, int head_only)
{
    http_parser *hp = HP(parser);
    mg_http_cb_t cb;
    size_t       n, i;

    memset(head, 0, sizeof(*head));
    memset(&cb, 0, sizeof(cb));
    cb.parser = parser;
    cb.head = head;
    cb.hdrs = hdrs;
    cb.max = max_headers;
    cb.head_only = head_only;
    head->headers = hdrs;
    head->content_length = -1;
    parser->_done = 0;
    parser->_type = type;
    parser->_cb = NULL;

    http_parser_init(hp, type == MG_HTTP_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
    hp->data = &cb;
    n = http_parser_execute(hp, &mg_http_settings, p, len);
    if (HTTP_PARSER_ERRNO(hp) == HPE_PAUSED) {
        http_parser_pause(hp, 0);
    } else if (HTTP_PARSER_ERRNO(hp) != HPE_OK) {
        if (cb.err) {
            return cb.err;
        }
        if (HTTP_PARSER_ERRNO(hp) == HPE_INVALID_TRANSFER_ENCODING) {
            return MG_HTTP_E_NOT_IMPLEMENTED;
        }
        if (HTTP_PARSER_ERRNO(hp) == HPE_INVALID_VERSION) {
            return MG_HTTP_E_BAD;
        }
        return MG_HTTP_E_BAD;
    } else if (n != len && !hp->upgrade) {
        return MG_HTTP_E_BAD;
    }
    (void) n;
    if (type == MG_HTTP_REQUEST) {
        const char *m = http_method_str((enum http_method) hp->method);
        head->method.data = m;
        head->method.len = strlen(m);
        if (head->uri.len == 0) {
            return MG_HTTP_E_BAD;
        }
    } else {
        head->status = hp->status_code;
    }
    head->http_major = hp->http_major;
    head->http_minor = hp->http_minor;
    if (hp->http_major != 1) {
        return MG_HTTP_E_VERSION;
    }
    head->chunked = (hp->flags & F_CHUNKED) != 0;
    if ((hp->flags & F_CONTENTLENGTH) && !head->chunked) {
        head->content_length = (int64_t) hp->content_length;
    }
    head->keepalive = http_should_keep_alive(hp) ? 1 : 0;
    head->upgrade = hp->upgrade ? 1 : 0;

    for (i = 0; i < head->nheaders; i++) {
        mg_http_header_t *h = &hdrs[i];
        size_t            k;
        if (h->name.len == 0) {
            return MG_HTTP_E_BAD;
        }
        for (k = 0; k < h->name.len; k++) {
            if (!mg_http_tchar[(unsigned char) h->name.data[k]]) {
                return MG_HTTP_E_BAD;
            }
        }
        if (memchr(h->value.data, '\0', h->value.len) != NULL) {
            return MG_HTTP_E_BAD;
        }
        switch (h->name.len) {
        case 4:
            if (strncasecmp(h->name.data, "host", 4) == 0) {
                if (head->has_host) {
                    return MG_HTTP_E_BAD;       /* two Host headers */
                }
                head->has_host = 1;
                head->host = h->value;
            }
            break;
        case 6:
            if (strncasecmp(h->name.data, "expect", 6) == 0
                && h->value.len == 12
                && strncasecmp(h->value.data, "100-continue", 12) == 0)
            {
                head->expect_continue = 1;
            }
            break;
        case 10:
            if (strncasecmp(h->name.data, "connection", 10) == 0) {
                head->connection = h->value;
                if (mg_http_token_has(h->value, "close")) {
                    head->conn_close = 1;
                }
            }
            break;
        }
    }
    if (type == MG_HTTP_REQUEST && head->http_minor >= 1 && !head->has_host) {
        return MG_HTTP_E_BAD;
    }
    if (mg_http_parser_done(parser) == 0 && head_only) {
        parser->_done = 1;
    }
    return MG_HTTP_OK;
}

ssize_t
mg_http_body_feed(mg_http_parser_t *parser, const char *p, size_t len,
                  mg_http_body_pt on_data, void *ctx)
{
    http_parser *hp = HP(parser);
    mg_http_cb_t cb;
    size_t       n;

    if (parser->_done) {
        return 0;
    }
    memset(&cb, 0, sizeof(cb));
    cb.parser = parser;
    cb.on_data = on_data;
    cb.ctx = ctx;
    hp->data = &cb;
    n = http_parser_execute(hp, &mg_http_settings, p, len);
    if (HTTP_PARSER_ERRNO(hp) == HPE_PAUSED) {
        http_parser_pause(hp, 0);
        return (ssize_t) n;
    }
    if (HTTP_PARSER_ERRNO(hp) != HPE_OK) {
        return -1;
    }
    return (ssize_t) n;
}

int
mg_http_body_eof(mg_http_parser_t *parser)
{
    http_parser *hp = HP(parser);
    mg_http_cb_t cb;

    if (parser->_done) {
        return MG_OK;
    }
    memset(&cb, 0, sizeof(cb));
    cb.parser = parser;
    hp->data = &cb;
    http_parser_execute(hp, &mg_http_settings, NULL, 0);
    if (HTTP_PARSER_ERRNO(hp) == HPE_PAUSED) {
        http_parser_pause(hp, 0);
    }
    return parser->_done ? MG_OK : MG_ERROR;
}

const char *
mg_http_reason(int status)
{
    const char *s = http_status_str((enum http_status) status);
    if (s == NULL || strcmp(s, "<unknown>") == 0) {
        return "Unknown";
    }
    return s;
}
