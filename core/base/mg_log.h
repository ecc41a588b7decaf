/*
 * mg_log.h -- the error log.
 *
 * One process-wide log file descriptor and level, set at start and after a
 * reload.  Lines look like nginx's: time, [level], pid, then the message.
 * Writes are single write(2) calls of a whole line so lines from several
 * workers sharing one O_APPEND file never interleave.  Messages must never
 * carry secrets: callers log names and ids, not header values or keys.
 */
#ifndef MG_LOG_H
#define MG_LOG_H

#include "../mg_core.h"

enum {
    MG_LOG_DEBUG = 0,
    MG_LOG_INFO,
    MG_LOG_NOTICE,
    MG_LOG_WARN,
    MG_LOG_ERR,
    MG_LOG_CRIT,
    MG_LOG_ALERT,
    MG_LOG_EMERG
};

extern int mg_log_level;

/* Parse a Kong log level name ("debug" .. "emerg"); -1 when unknown. */
int mg_log_level_parse(const char *name, size_t len);
const char *mg_log_level_name(int level);

/* Open path (or "stderr"/"/dev/stderr"); on failure keep the old fd. */
int mg_log_open(const char *path, int level);
int mg_log_fd(void);

void mg_log_write(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define mg_log(level, ...)                                                   \
    do {                                                                     \
        if ((level) >= mg_log_level) mg_log_write((level), __VA_ARGS__);     \
    } while (0)

#define mg_log_debug(...)  mg_log(MG_LOG_DEBUG, __VA_ARGS__)
#define mg_log_info(...)   mg_log(MG_LOG_INFO, __VA_ARGS__)
#define mg_log_notice(...) mg_log(MG_LOG_NOTICE, __VA_ARGS__)
#define mg_log_warn(...)   mg_log(MG_LOG_WARN, __VA_ARGS__)
#define mg_log_error(...)  mg_log(MG_LOG_ERR, __VA_ARGS__)
#define mg_log_crit(...)   mg_log(MG_LOG_CRIT, __VA_ARGS__)

#endif
