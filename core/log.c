/* core/log.c - see core/log.h. */
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cw_log_level_cur = CW_LOG_INFO;
static int log_fd = 2;
static bool log_prefix = true;
static const char log_tag[] = "cachewarpd"; /* every process: the pid tells them apart */

void cw_log_init(int fd, enum cw_log_level level, bool prefix)
{
    log_fd = fd;
    cw_log_level_cur = (int)level;
    log_prefix = prefix;
}

void cw_log_set_level(enum cw_log_level level)
{
    cw_log_level_cur = (int)level;
}

int cw_log_level_parse(const char *s, enum cw_log_level *out)
{
    static const struct {
        const char *name;
        enum cw_log_level level;
    } names[] = {
        {"err", CW_LOG_ERR},      {"error", CW_LOG_ERR},     {"warn", CW_LOG_WARN},
        {"warning", CW_LOG_WARN}, {"notice", CW_LOG_NOTICE}, {"info", CW_LOG_INFO},
        {"debug", CW_LOG_DEBUG},
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(names); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].level;
            return 0;
        }
    }
    return -EINVAL;
}

static const char *const log_names[] = {"", "", "", "error", "warn", "notice", "info", "debug"};

const char *cw_log_level_name(enum cw_log_level level)
{
    return log_names[level & 7];
}

void cw_log_write(enum cw_log_level level, const char *fmt, ...)
{
    char line[2048];
    size_t n = 0;
    int rc;
    va_list ap;

    if (log_prefix) {
        rc = snprintf(line, sizeof(line), "<%d>%s[%d]: ", (int)level, log_tag, (int)getpid());
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        rc = snprintf(line, sizeof(line),
                      "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d]: ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      ts.tv_nsec / 1000000, log_names[level & 7], log_tag, (int)getpid());
    }
    if (rc > 0) n = (size_t)rc < sizeof(line) ? (size_t)rc : sizeof(line) - 1;
    va_start(ap, fmt);
    rc = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (rc > 0) n += (size_t)rc < sizeof(line) - n ? (size_t)rc : sizeof(line) - n - 1;
    if (n >= sizeof(line) - 1) n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line: O_APPEND or a pipe keeps lines from several processes whole. */
    while (write(log_fd, line, n) == -1 && errno == EINTR) {
    }
}

long long cw_log_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

bool cw_log_rl_allow(struct cw_log_rl *rl, long long now, unsigned *suppressed)
{
    long long window;

    window = atomic_load_explicit(&rl->window_s, memory_order_relaxed);
    if (window != now &&
        atomic_compare_exchange_strong_explicit(&rl->window_s, &window, now, memory_order_relaxed,
                                                memory_order_relaxed)) {
        *suppressed = atomic_exchange_explicit(&rl->suppressed, 0, memory_order_relaxed);
        atomic_store_explicit(&rl->count, 0, memory_order_relaxed);
    }
    if (atomic_fetch_add_explicit(&rl->count, 1, memory_order_relaxed) < CW_LOG_RL_BURST)
        return true;
    atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
    return false;
}
