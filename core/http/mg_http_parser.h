/*
 * mg_http_parser.h -- the HTTP/1.x wire parser, behind one file.
 *
 * mg_http_parser.c is the only includer of http_parser.h.  A head (request
 * or response line plus headers) is parsed in one call once the whole
 * block is buffered: mg_http_head_end() finds its end first, so every
 * header is one contiguous span and views can point straight into the
 * read buffer with no copying.  The same parser object then frames the
 * body: mg_http_body_feed() consumes body bytes, reports where the message
 * ends and, for chunked bodies, hands out the decoded data spans.
 *
 * Rejected: feeding http-parser byte streams as they arrive and stitching
 * split header callbacks -- it costs a copy per header and more code for
 * no gain, since nothing can be done with half a head anyway.
 */
#ifndef MG_HTTP_PARSER_H
#define MG_HTTP_PARSER_H

#include "../mg_core.h"

typedef struct {
    mg_str_t name;
    mg_str_t value;
} mg_http_header_t;

typedef struct {
    /* request line */
    mg_str_t           method;
    mg_str_t           uri;          /* request-target as sent */
    /* status line */
    int                status;
    mg_str_t           reason;
    int                http_major;
    int                http_minor;
    mg_http_header_t  *headers;
    size_t             nheaders;
    int64_t            content_length;  /* -1 when absent */
    unsigned           chunked:1;
    unsigned           keepalive:1;     /* per HTTP version + Connection */
    unsigned           upgrade:1;       /* Connection: upgrade + Upgrade */
    unsigned           expect_continue:1;
    unsigned           has_host:1;
    unsigned           conn_close:1;    /* explicit Connection: close */
    mg_str_t           host;            /* Host header value */
    mg_str_t           connection;      /* Connection header value */
} mg_http_head_t;

/* Parser errors, mapped to the status the client gets. */
enum {
    MG_HTTP_OK = 0,
    MG_HTTP_E_BAD = 400,
    MG_HTTP_E_URI_TOO_LONG = 414,
    MG_HTTP_E_HEADERS_TOO_LARGE = 431,
    MG_HTTP_E_NOT_IMPLEMENTED = 501,    /* unknown transfer-coding */
    MG_HTTP_E_VERSION = 505
};

typedef struct {
    uint64_t   _hp[4];       /* struct http_parser, sized in the .c */
    void      *_cb;          /* body callback state */
    unsigned   _done:1;
    unsigned   _type:2;
} mg_http_parser_t;

#define MG_HTTP_REQUEST  0
#define MG_HTTP_RESPONSE 1

/*
 * Length of the head at p (up to and including the blank line), 0 when
 * incomplete.  Leading empty lines (allowed before a request line) count
 * as part of the head.  *line_len gets the length of the first line once
 * it is complete (0 before), for the 414 check.
 */
size_t mg_http_head_end(const char *p, size_t len, size_t *line_len);

/*
 * Parse a complete head of type MG_HTTP_REQUEST or MG_HTTP_RESPONSE into
 * *head, using hdrs[0..max_headers) for the headers.  head_only is set for
 * responses to HEAD (no body follows).  Returns MG_HTTP_OK or an
 * MG_HTTP_E_* status.  On success *parser is ready for the body.
 */
int mg_http_parse_head(mg_http_parser_t *parser, int type, const char *p,
                       size_t len, mg_http_head_t *head,
                       mg_http_header_t *hdrs, size_t max_headers,
                       int head_only);

/* True once the message (head and body) is complete. */
static inline int
mg_http_parser_done(const mg_http_parser_t *parser)
{
    return parser->_done;
}

/*
 * Feed body bytes.  Returns bytes consumed (less than len only when the
 * message ended inside the data: the rest is the next message) or -1 on a
 * framing error.  For chunked bodies on_data (may be NULL) receives each
 * decoded span; returning non-zero from it stops with an error.
 */
typedef int (*mg_http_body_pt)(void *ctx, const char *p, size_t n);

ssize_t mg_http_body_feed(mg_http_parser_t *parser, const char *p,
                          size_t len, mg_http_body_pt on_data, void *ctx);

/* A close-delimited response body ended at EOF: finish the message. */
int mg_http_body_eof(mg_http_parser_t *parser);

/* Standard reason phrase for a status ("OK"); "Unknown" when none. */
const char *mg_http_reason(int status);

#endif
