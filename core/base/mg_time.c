/* mg_time.c -- see mg_time.h. */
#include <stdio.h>
#include <time.h>
#include "mg_time.h"

double mg_time_now;
char   mg_time_http[32];
size_t mg_time_http_len;
char   mg_time_log[32];
size_t mg_time_log_len;

static time_t mg_time_last_sec = -1;

void
mg_time_update(double now)
{
    time_t    sec = (time_t) now;
    struct tm tm;
    long      off;

    mg_time_now = now;
    if (sec == mg_time_last_sec) {
        return;
    }
    mg_time_last_sec = sec;
    gmtime_r(&sec, &tm);
    mg_time_http_len = strftime(mg_time_http, sizeof(mg_time_http),
                                "%a, %d %b %Y %H:%M:%S GMT", &tm);
    localtime_r(&sec, &tm);
    off = tm.tm_gmtoff / 60;
    mg_time_log_len = strftime(mg_time_log, sizeof(mg_time_log) - 6,
                               "%d/%b/%Y:%H:%M:%S ", &tm);
    mg_time_log_len += (size_t) snprintf(mg_time_log + mg_time_log_len, 7,
                                         "%c%02ld%02ld", off < 0 ? '-' : '+',
                                         (off < 0 ? -off : off) / 60,
                                         (off < 0 ? -off : off) % 60);
}
