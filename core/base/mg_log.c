/*
 * mg_log.c -- see mg_log.h.  Formatting happens into a stack buffer so a
 * log call never allocates; lines longer than the buffer are truncated.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <strings.h>
#include <sys/time.h>
#include "mg_log.h"

int mg_log_level = MG_LOG_NOTICE;

static int mg_log_fd_ = STDERR_FILENO;

static const char *mg_log_names[] = {
    "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"
};

int
mg_log_level_parse(const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < mg_nelems(mg_log_names); i++) {
        if (strlen(mg_log_names[i]) == len
            && strncasecmp(mg_log_names[i], name, len) == 0)
        {
            return (int) i;
        }
    }
    return -1;
}

const char *
mg_log_level_name(int level)
{
    if (level < 0 || level >= (int) mg_nelems(mg_log_names)) {
        return "?";
    }
    return mg_log_names[level];
}

int
mg_log_open(const char *path, int level)
{
    int fd;

    mg_log_level = level;
    if (path == NULL || strcmp(path, "stderr") == 0
        || strcmp(path, "/dev/stderr") == 0)
    {
        if (mg_log_fd_ > STDERR_FILENO) {
            close(mg_log_fd_);
        }
        mg_log_fd_ = STDERR_FILENO;
        return MG_OK;
    }
    if (strcmp(path, "off") == 0) {
        fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    } else {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
    if (fd < 0) {
        return MG_ERROR;
    }
    if (mg_log_fd_ > STDERR_FILENO) {
        close(mg_log_fd_);
    }
    mg_log_fd_ = fd;
    return MG_OK;
}

int
mg_log_fd(void)
{
    return mg_log_fd_;
}

void
mg_log_write(int level, const char *fmt, ...)
{
    char           line[2048];
    struct timeval tv;
    struct tm      tm;
    va_list        ap;
    int            n, m;
    int            saved = errno;

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d/%02d/%02d %02d:%02d:%02d [%s] %d: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, mg_log_level_name(level), (int) getpid());
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        m = 0;
    }
    n += m;
    if (n > (int) sizeof(line) - 2) {
        n = (int) sizeof(line) - 2;
    }
    line[n++] = '\n';
    if (write(mg_log_fd_, line, n) < 0) {
        /* nowhere left to report it */
    }
    errno = saved;
}
