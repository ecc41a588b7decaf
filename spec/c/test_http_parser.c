/*
 * test_http_parser.c -- the http-parser adapter: head boundaries, request
 * and response heads, header limits, body framing (content-length,
 * chunked, split across feeds), smuggling shapes that must be refused.
 */
#include "tap.h"
#include "../../core/http/mg_http_parser.c"

static mg_http_header_t hdrs[64];

static int
parse_req(const char *s, mg_http_head_t *h, mg_http_parser_t *p, size_t max)
{
    size_t line, n = mg_http_head_end(s, strlen(s), &line);
    if (n == 0) {
        return -1;
    }
    return mg_http_parse_head(p, MG_HTTP_REQUEST, s, n, h, hdrs, max, 0);
}

static size_t collected;
static char   collect_buf[256];

static int
collect(void *ctx, const char *p, size_t n)
{
    (void) ctx;
    if (collected + n < sizeof(collect_buf)) {
        memcpy(collect_buf + collected, p, n);
    }
    collected += n;
    return 0;
}

int
main(void)
{
    mg_http_parser_t p;
    mg_http_head_t   h;
    size_t           line, n;
    const char      *s;

    /* head boundaries */
    s = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
    n = mg_http_head_end(s, strlen(s), &line);
    is_int(n, strlen(s) - 4, "head ends after the blank line");
    is_int(line, 15, "first line length includes CR");
    s = "GET / HTTP/1.1\r\nHost: a\r\n";
    is_int(mg_http_head_end(s, strlen(s), &line), 0, "incomplete head");
    s = "GET / HTTP/1.1\nHost: a\n\n";
    is_int(mg_http_head_end(s, strlen(s), &line), strlen(s), "bare LF heads");
    s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    is_int(mg_http_head_end(s, strlen(s), &line), strlen(s),
           "leading empty lines are skipped");
    s = "GET /very-long-line-without-end";
    is_int(mg_http_head_end(s, strlen(s), &line), 0, "no newline yet");
    is_int(line, 0, "line length unknown before its end");

    /* request head */
    is_int(parse_req("GET /a?b=1 HTTP/1.1\r\nHost: ex.com:8080\r\n"
                     "X-A: 1\r\nX-A: 2\r\nConnection: close\r\n\r\n",
                     &h, &p, 64), MG_HTTP_OK, "simple GET parses");
    ok(mg_str_eq_lit(h.method, "GET"), "method");
    ok(mg_str_eq_lit(h.uri, "/a?b=1"), "uri kept raw");
    ok(mg_str_eq_lit(h.host, "ex.com:8080"), "host header value");
    is_int(h.nheaders, 4, "all headers kept, repeats too");
    ok(h.conn_close && !h.keepalive, "Connection: close ends keep-alive");
    ok(mg_http_parser_done(&p), "no body: message complete");
    is_int(h.content_length, -1, "no content-length");

    is_int(parse_req("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     "Expect: 100-continue\r\n\r\n", &h, &p, 64),
           MG_HTTP_OK, "POST with length");
    is_int(h.content_length, 5, "content-length read");
    ok(h.expect_continue, "expect 100-continue seen");
    ok(h.keepalive, "HTTP/1.1 keeps alive by default");
    ok(!mg_http_parser_done(&p), "body pending");
    is_int(mg_http_body_feed(&p, "helloGET", 8, NULL, NULL), 5,
           "feed stops at the body end");
    ok(mg_http_parser_done(&p), "message complete after 5 bytes");

    /* chunked, split over feeds */
    is_int(parse_req("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                     &h, &p, 64), MG_HTTP_OK, "chunked POST");
    ok(h.chunked && h.content_length == -1, "chunked flagged");
    collected = 0;
    is_int(mg_http_body_feed(&p, "5\r\nhel", 6, collect, NULL), 6, "partial chunk");
    is_int(mg_http_body_feed(&p, "lo\r\n3;ext=1\r\nabc\r\n0\r\n\r\nNEXT", 27,
                             collect, NULL), 23, "rest of the body, stops before NEXT");
    is_int(collected, 8, "decoded bytes");
    ok(memcmp(collect_buf, "helloabc", 8) == 0, "decoded content");
    ok(mg_http_parser_done(&p), "chunked message complete");

    is_int(parse_req("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                     &h, &p, 64), MG_HTTP_OK, "chunked POST again");
    is_int(mg_http_body_feed(&p, "zz\r\n", 4, NULL, NULL), -1, "bad chunk size is an error");

    /* refusals */
    is_int(parse_req("GET / HTTP/1.1\r\n\r\n", &h, &p, 64), MG_HTTP_E_BAD,
           "HTTP/1.1 without Host is 400");
    ok(parse_req("GET / HTTP/1.0\r\n\r\n", &h, &p, 64) == MG_HTTP_OK
       && !h.keepalive, "HTTP/1.0 without Host is fine, no keep-alive");
    is_int(parse_req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &h, &p, 64),
           MG_HTTP_E_BAD, "two Host headers are 400");
    is_int(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n", &h, &p, 64),
           MG_HTTP_E_BAD, "content-length with chunked is refused (smuggling)");
    is_int(parse_req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                     "Content-Length: 4\r\n\r\n", &h, &p, 64),
           MG_HTTP_E_BAD, "two content-lengths are refused");
    is_int(parse_req("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", &h, &p, 64),
           MG_HTTP_E_BAD, "bad method");
    is_int(parse_req("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", &h, &p, 64),
           MG_HTTP_E_BAD, "space in a header name");
    is_int(parse_req("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
                     &h, &p, 3), MG_HTTP_E_HEADERS_TOO_LARGE,
           "more headers than allowed is 431");
    is_int(parse_req("GET / HTTP/2.0\r\nHost: a\r\n\r\n", &h, &p, 64),
           MG_HTTP_E_VERSION, "HTTP/2.0 on an HTTP/1 port is 505");
    is_int(parse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                     &h, &p, 64), MG_HTTP_E_NOT_IMPLEMENTED,
           "unknown transfer-coding is 501");

    /* responses */
    s = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    n = mg_http_head_end(s, strlen(s), &line);
    is_int(mg_http_parse_head(&p, MG_HTTP_RESPONSE, s, n, &h, hdrs, 64, 0),
           MG_HTTP_OK, "response head");
    is_int(h.status, 200, "status");
    ok(mg_str_eq_lit(h.reason, "OK"), "reason");
    is_int(mg_http_body_feed(&p, "hi", 2, NULL, NULL), 2, "response body");
    ok(mg_http_parser_done(&p), "response complete");

    s = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n";
    n = mg_http_head_end(s, strlen(s), &line);
    is_int(mg_http_parse_head(&p, MG_HTTP_RESPONSE, s, n, &h, hdrs, 64, 1),
           MG_HTTP_OK, "response to HEAD");
    ok(mg_http_parser_done(&p), "HEAD response has no body");

    s = "HTTP/1.1 204 No Content\r\n\r\n";
    n = mg_http_head_end(s, strlen(s), &line);
    mg_http_parse_head(&p, MG_HTTP_RESPONSE, s, n, &h, hdrs, 64, 0);
    ok(mg_http_parser_done(&p), "204 has no body");

    s = "HTTP/1.1 200 OK\r\n\r\n";
    n = mg_http_head_end(s, strlen(s), &line);
    mg_http_parse_head(&p, MG_HTTP_RESPONSE, s, n, &h, hdrs, 64, 0);
    ok(!mg_http_parser_done(&p), "close-delimited body pending");
    is_int(mg_http_body_feed(&p, "abc", 3, NULL, NULL), 3, "eof body bytes");
    is_int(mg_http_body_eof(&p), MG_OK, "EOF completes it");

    s = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
    n = mg_http_head_end(s, strlen(s), &line);
    is_int(mg_http_parse_head(&p, MG_HTTP_RESPONSE, s, n, &h, hdrs, 64, 0),
           MG_HTTP_OK, "interim response parses");
    is_int(h.status, 103, "103 status");

    ok(strcmp(mg_http_reason(404), "Not Found") == 0, "reason phrase table");
    return done_testing();
}
