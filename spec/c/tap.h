/*
 * tap.h -- a minimal TAP producer for C unit tests, read by prove.
 * ok(cond, fmt, ...) prints "ok N - ..." or "not ok N - ...";
 * done_testing() prints the plan and returns the exit status.
 */
#ifndef MG_TAP_H
#define MG_TAP_H

#include <stdarg.h>
#include <stdio.h>

static int tap_n, tap_failed;

static inline int
ok(int cond, const char *fmt, ...)
{
    va_list ap;

    tap_n++;
    printf("%sok %d - ", cond ? "" : "not ", tap_n);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond) {
        tap_failed++;
    }
    return cond;
}

#define is_int(got, want, ...)                                              \
    do {                                                                    \
        long long g_ = (long long) (got), w_ = (long long) (want);          \
        if (!ok(g_ == w_, __VA_ARGS__))                                     \
            printf("#   got %lld, want %lld\n", g_, w_);                    \
    } while (0)

#define is_str(got, want, ...)                                              \
    do {                                                                    \
        const char *g_ = (got), *w_ = (want);                               \
        int same_ = (g_ && w_) ? strcmp(g_, w_) == 0 : g_ == w_;            \
        if (!ok(same_, __VA_ARGS__))                                        \
            printf("#   got \"%s\", want \"%s\"\n", g_ ? g_ : "(null)",     \
                   w_ ? w_ : "(null)");                                     \
    } while (0)

static inline int
done_testing(void)
{
    printf("1..%d\n", tap_n);
    return tap_failed ? 1 : 0;
}

#endif
