/*
 * mg_http_log.c -- the access log: one line per request, buffered per
 * worker and written when the buffer fills, once a second, and at exit,
 * so a busy worker makes one write(2) per many requests instead of one
 * per request (nginx's `access_log ... buffer=`).
 *
 * Format: nginx "combined" followed by Kong's latencies and the upstream:
 *   ip - - [time] "METHOD uri HTTP/x.y" status bytes "referer" "agent"
 *   request_time upstream=ADDR upstream_status=S upstream_latency=MS
 *   proxy_latency=MS route=NAME-or-id request_id=ID
 * Header values are escaped so a client cannot forge lines.
 */
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <unistd.h>
#include "mg_http.h"
#include "../base/mg_log.h"
#include "../base/mg_time.h"

#define MG_LOG_BUF (64 * 1024)

static const mg_http_header_t *
mg_log_header(const mg_request_t *r, const char *name)
{
    size_t i, n = strlen(name);

    for (i = 0; i < r->head.nheaders; i++) {
        if (r->head.headers[i].name.len == n
            && strncasecmp(r->head.headers[i].name.data, name, n) == 0)
        {
            return &r->head.headers[i];
        }
    }
    return NULL;
}

/* Copy s escaping quotes, backslashes and control bytes as \xHH. */
static char *
mg_log_escape(char *p, char *end, mg_str_t s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t            i;

    for (i = 0; i < s.len && p + 4 < end; i++) {
        unsigned char ch = (unsigned char) s.data[i];
        if (ch < 0x20 || ch == '"' || ch == '\\' || ch >= 0x7f) {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        } else {
            *p++ = (char) ch;
        }
    }
    return p;
}

void
mg_http_log_flush(void)
{
    mg_worker_t *w = mg_worker;
    mg_buf_t    *b;

    if (w == NULL || (b = w->access_buf) == NULL || mg_buf_len(b) == 0) {
        return;
    }
    if (write(w->access_fd, b->pos, mg_buf_len(b)) < 0) {
        mg_log_error("access log write failed: %s", strerror(errno));
    }
    b->pos = b->last = b->start;
}

void
mg_http_log_request(mg_request_t *r)
{
    mg_worker_t *w = mg_worker;
    mg_buf_t    *b;
    char        *p, *end, ip[64];
    const mg_http_header_t *ref, *ua;
    mg_str_t     dash = mg_string("-");
    double       up_lat = -1, px_lat = 0;

    if (w->access_fd < 0) {
        return;
    }
    if (w->access_buf == NULL) {
        w->access_buf = mg_buf_get(MG_LOG_BUF);
        if (w->access_buf == NULL) {
            return;
        }
    }
    b = w->access_buf;
    if (mg_buf_room(b) < 4096 + r->head.uri.len * 4) {
        mg_http_log_flush();
        if (mg_buf_room(b) < 4096 + r->head.uri.len * 4) {
            return;   /* an absurd URI: skip rather than overflow */
        }
    }
    p = b->last;
    end = b->end;
    mg_conn_peer_ip(r->conn, ip, sizeof(ip));
    ref = mg_log_header(r, "referer");
    ua = mg_log_header(r, "user-agent");
    if (r->upstream_first > 0) {
        up_lat = (r->upstream_first - r->upstream_start) * 1000;
    }
    if (r->upstream_start > 0) {
        px_lat = (r->upstream_start - r->start) * 1000;
    }
    p += snprintf(p, (size_t) (end - p), "%s - - [%.*s] \"", ip,
                  (int) mg_time_log_len, mg_time_log);
    if (r->head.method.len) {
        p = mg_log_escape(p, end, r->head.method);
        *p++ = ' ';
        p = mg_log_escape(p, end, r->head.uri);
        p += snprintf(p, (size_t) (end - p), " HTTP/%d.%d", r->head.http_major,
                      r->head.http_minor);
    } else {
        *p++ = '-';
    }
    p += snprintf(p, (size_t) (end - p), "\" %d %llu \"", r->status,
                  (unsigned long long) r->body_sent);
    p = mg_log_escape(p, end, ref ? ref->value : dash);
    *p++ = '"';
    *p++ = ' ';
    *p++ = '"';
    p = mg_log_escape(p, end, ua ? ua->value : dash);
    p += snprintf(p, (size_t) (end - p),
                  "\" %.3f upstream=%s upstream_status=%d upstream_latency=%d"
                  " proxy_latency=%d route=%.*s request_id=%s%s%s\n",
                  mg_time_now - r->start, r->peer ? r->peer->name : "-",
                  r->upstream_status, (int) up_lat, (int) px_lat,
                  r->route ? (int) (r->route->name.len ? r->route->name.len
                                                        : r->route->id.len)
                           : 1,
                  r->route ? (r->route->name.len ? r->route->name.data
                                                 : r->route->id.data)
                           : "-",
                  r->request_id, r->error ? " error=" : "",
                  r->error ? r->error : "");
    b->last = p;
}
