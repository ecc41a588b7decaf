/*
 * fuzz_http.c -- libFuzzer target for the request parser path: the head
 * boundary scan, head parsing with the production header limit, the
 * request-target split the proxy does, and body framing fed in uneven
 * pieces (the way bytes arrive from a socket).  Built and run by
 * `make fuzz` (clang -fsanitize=fuzzer,address,undefined).
 */
#include <stdint.h>
#include <stdlib.h>
#include "../../core/http/mg_http_parser.h"

static int
sink(void *ctx, const char *p, size_t n)
{
    size_t *total = ctx;
    volatile char c = n ? p[n - 1] : 0;   /* touch the span */
    (void) c;
    *total += n;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_http_header_t hdrs[100];
    mg_http_head_t   head;
    mg_http_parser_t parser;
    size_t           line, hl, off, total = 0, step = 1;
    const char      *p = (const char *) data;
    int              rc, type;

    if (size == 0) {
        return 0;
    }
    /* first byte picks request or response parsing */
    type = (data[0] & 1) ? MG_HTTP_RESPONSE : MG_HTTP_REQUEST;
    p++;
    size--;
    hl = mg_http_head_end(p, size, &line);
    if (hl == 0 || hl > 32768) {
        return 0;
    }
    rc = mg_http_parse_head(&parser, type, p, hl, &head, hdrs, 100,
                            type == MG_HTTP_RESPONSE && (data[0] & 2));
    if (rc != MG_HTTP_OK) {
        return 0;
    }
    if (head.nheaders > 100) {
        abort();
    }
    /* views must stay inside the input */
    for (size_t i = 0; i < head.nheaders; i++) {
        if (hdrs[i].name.data < p || hdrs[i].name.data + hdrs[i].name.len > p + hl
            || hdrs[i].value.data < p
            || hdrs[i].value.data + hdrs[i].value.len > p + hl)
        {
            abort();
        }
    }
    off = hl;
    while (off < size && !mg_http_parser_done(&parser)) {
        size_t  n = mg_min(step, size - off);
        ssize_t k = mg_http_body_feed(&parser, p + off, n, sink, &total);
        if (k < 0) {
            break;
        }
        if ((size_t) k > n) {
            abort();
        }
        off += (size_t) k;
        if ((size_t) k < n) {
            break;
        }
        step = step * 3 + 1;
    }
    return 0;
}
