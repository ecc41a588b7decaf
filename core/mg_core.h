/*
 * mg_core.h -- what every Moongate C file includes first.
 *
 * Return codes, the string view type and forward typedefs of the objects
 * that cross subsystem boundaries.  Subsystem headers include this one and
 * nothing of each other's internals.
 *
 * Strings are views (pointer + length), never NUL-terminated by contract:
 * most of them point into a connection's read buffer or a config arena.
 * Where a C API needs a C string, the owner makes a terminated copy.
 */
#ifndef MG_CORE_H
#define MG_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define MOONGATE_VERSION "0.1.0"
#define MOONGATE_VER     "moongate/" MOONGATE_VERSION

#define MG_OK       0
#define MG_ERROR   -1
#define MG_AGAIN   -2
#define MG_DONE    -4
#define MG_DECLINED -5

typedef struct {
    const char *data;
    size_t      len;
} mg_str_t;

#define mg_string(s)     { (s), sizeof(s) - 1 }
#define mg_null_string   { NULL, 0 }
#define mg_str_set(str, s) ((str)->data = (s), (str)->len = sizeof(s) - 1)

#define mg_min(a, b) ((a) < (b) ? (a) : (b))
#define mg_max(a, b) ((a) > (b) ? (a) : (b))
#define mg_nelems(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define mg_likely(x)   __builtin_expect(!!(x), 1)
#define mg_unlikely(x) __builtin_expect(!!(x), 0)
#else
#define mg_likely(x)   (x)
#define mg_unlikely(x) (x)
#endif

/* Forward typedefs of cross-subsystem objects. */
typedef struct mg_pool_s     mg_pool_t;
typedef struct mg_buf_s      mg_buf_t;
typedef struct mg_conf_s     mg_conf_t;      /* moongate.conf properties */
typedef struct mg_config_s   mg_config_t;    /* entity snapshot */
typedef struct mg_router_s   mg_router_t;
typedef struct mg_conn_s     mg_conn_t;
typedef struct mg_request_s  mg_request_t;
typedef struct mg_worker_s   mg_worker_t;
typedef struct mg_runtime_s  mg_runtime_t;   /* config snapshot + router + peers */

static inline int
mg_str_eq(mg_str_t a, mg_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static inline int
mg_str_eq_lit(mg_str_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.data, lit, n) == 0;
}

/* ASCII case-insensitive comparison of two views of equal length. */
static inline int
mg_str_caseeq(mg_str_t a, mg_str_t b)
{
    size_t i;

    if (a.len != b.len) {
        return 0;
    }
    for (i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char) a.data[i];
        unsigned char y = (unsigned char) b.data[i];
        if ((unsigned) (x - 'A') < 26u) x |= 0x20;
        if ((unsigned) (y - 'A') < 26u) y |= 0x20;
        if (x != y) {
            return 0;
        }
    }
    return 1;
}

static inline int
mg_str_caseeq_lit(mg_str_t a, const char *lit)
{
    mg_str_t b = { lit, strlen(lit) };
    return mg_str_caseeq(a, b);
}

/* Decimal digits of v at p; returns the end.  printf costs more than the
 * rest of a response head together, so the request path formats with
 * this instead. */
static inline char *
mg_fmt_u64(char *p, uint64_t v)
{
    char   tmp[20];
    size_t n = 0;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        *p++ = tmp[--n];
    }
    return p;
}

#endif /* MG_CORE_H */
