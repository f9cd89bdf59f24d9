/* core/log.h - the logging API.
 *
 * Owns the log sink (an fd given by main) and the level: the only mutable globals in
 * core/. Each line is written with one write(2), so lines from forked processes sharing
 * the fd never interleave. On stderr each line carries the sd-daemon priority prefix
 * (<3>..<7>) that journald understands. The macros check the level before evaluating
 * their arguments. Safe to use after fork; not async-signal-safe. */
#ifndef CW_LOG_H
#define CW_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core/common.h"

enum cw_log_level {
    CW_LOG_ERR = 3,
    CW_LOG_WARN = 4,
    CW_LOG_NOTICE = 5,
    CW_LOG_INFO = 6,
    CW_LOG_DEBUG = 7,
};

extern int cw_log_level_cur;

/* Sets the sink fd and the level; prefix says whether to write the <N> prefix. */
void cw_log_init(int fd, enum cw_log_level level, bool prefix);
/* Sets the level only (a reload's log.level; children forked after inherit it). */
void cw_log_set_level(enum cw_log_level level);
/* "error", "warn", "notice", "info" or "debug". */
const char *cw_log_level_name(enum cw_log_level level);
/* Parses "err|warn|notice|info|debug": 0 and *out, or -EINVAL. */
CW_MUST_CHECK int cw_log_level_parse(const char *s, enum cw_log_level *out);

void cw_log_write(enum cw_log_level level, const char *fmt, ...) CW_PRINTF(2, 3);

#define CW_LOG_AT(lvl, ...)                                                                        \
    do {                                                                                           \
        if ((int)(lvl) <= cw_log_level_cur) cw_log_write((lvl), __VA_ARGS__);                      \
    } while (0)

/* Rate limit of one call site: at most CW_LOG_RL_BURST lines per second, then one line that
 * says how many were suppressed. For messages that bad input or a dead dependency can cause
 * on every request. Lock-free; a lost update only lets one line more or less through. */
#define CW_LOG_RL_BURST 10
struct cw_log_rl {
    _Atomic long long window_s;
    _Atomic unsigned count;
    _Atomic unsigned suppressed;
};
/* True when a line may be written in second now_s; *suppressed gets the lines dropped in
 * the previous window (to report once), else is left alone. */
bool cw_log_rl_allow(struct cw_log_rl *rl, long long now_s, unsigned *suppressed);
/* CLOCK_MONOTONIC seconds, for cw_log_rl_allow(). */
long long cw_log_now_s(void);

#define CW_LOG_AT_RL(lvl, ...)                                                                     \
    do {                                                                                           \
        static struct cw_log_rl cw_rl_;                                                            \
        unsigned cw_sup_ = 0;                                                                      \
        if ((int)(lvl) <= cw_log_level_cur &&                                                      \
            cw_log_rl_allow(&cw_rl_, cw_log_now_s(), &cw_sup_)) {                                  \
            if (cw_sup_ > 0) cw_log_write((lvl), "log: %u similar lines suppressed", cw_sup_);     \
            cw_log_write((lvl), __VA_ARGS__);                                                      \
        }                                                                                          \
    } while (0)

#define cw_warn_rl(...) CW_LOG_AT_RL(CW_LOG_WARN, __VA_ARGS__)
#define cw_info_rl(...) CW_LOG_AT_RL(CW_LOG_INFO, __VA_ARGS__)
#define cw_err_rl(...)  CW_LOG_AT_RL(CW_LOG_ERR, __VA_ARGS__)

#define cw_err(...)    CW_LOG_AT(CW_LOG_ERR, __VA_ARGS__)
#define cw_warn(...)   CW_LOG_AT(CW_LOG_WARN, __VA_ARGS__)
#define cw_notice(...) CW_LOG_AT(CW_LOG_NOTICE, __VA_ARGS__)
#define cw_info(...)   CW_LOG_AT(CW_LOG_INFO, __VA_ARGS__)
#define cw_debug(...)  CW_LOG_AT(CW_LOG_DEBUG, __VA_ARGS__)

#endif /* CW_LOG_H */
