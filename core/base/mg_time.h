/*
 * mg_time.h -- cached wall-clock strings and the request clock.
 *
 * mg_time_update() runs once per event-loop iteration (an ev_prepare
 * watcher in the worker): it reads the time once and rebuilds the HTTP
 * Date and access-log strings only when the second changed, so the request
 * path formats no dates.  mg_time_msec() is the cached monotonic-enough
 * time in milliseconds used for latencies.
 */
#ifndef MG_TIME_H
#define MG_TIME_H

#include "../mg_core.h"

extern double   mg_time_now;          /* seconds, as of the last update */
extern char     mg_time_http[32];     /* "Sat, 21 Nov 2026 21:13:53 GMT" */
extern size_t   mg_time_http_len;
extern char     mg_time_log[32];      /* "21/Nov/2026:21:13:53 +0000" */
extern size_t   mg_time_log_len;

void mg_time_update(double now);

static inline uint64_t
mg_time_msec(void)
{
    return (uint64_t) (mg_time_now * 1000.0);
}

#endif
