/* workers/accesslog.h - the access log: one line per request, off the hit path.
 *
 * Owns, in the process that opens it: the log fd (a file opened O_APPEND, or stderr for
 * "-"), two 64 KiB line buffers and one flusher thread. cw_accesslog_write() formats the
 * line on the caller's stack and copies it into the current buffer under a mutex that is
 * only ever held for a copy or a buffer swap, never across I/O: it never blocks on the disk.
 * The flusher writes a buffer when it fills (the writer swaps it out) or when its oldest
 * line is about a second old. When both buffers are busy (the disk is slower than the
 * traffic), the line is dropped and counted (cw_accesslog_dropped(), and
 * CW_METRICS_ACCESSLOG_DROPPED once a segment is set). Every worker opens its own after fork();
 * their O_APPEND writes of whole lines never interleave in a file, and writes to a pipe
 * (stderr) are cut at line ends into PIPE_BUF pieces so that they do not either.
 *
 * Lines, combined format (nginx's combined, then CacheWarp's fields):
 *   127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /a?x=1 HTTP/1.1" 200 512 "-" "curl/8"
 *   rt=0.000120 cache=HIT route="/" ot=-
 * (one line), with '"', '\' and bytes outside 0x20..0x7e written as \xHH, as nginx does.
 * JSON format, one object a line:
 *   {"time":"2024-10-10T13:55:36.123Z","client":"127.0.0.1","method":"GET","url":"/a?x=1",
 *    "protocol":"HTTP/1.1","status":200,"bytes":512,"duration":0.00012,"cache":"HIT",
 *    "route":"/","origin_time":null,"referer":"","user_agent":"curl/8"}
 * with JSON string escaping (bytes >= 0x80 as \u00XX, so that every line is valid JSON).
 * No request header other than User-Agent and Referer, and no body, is ever logged:
 * Authorization and Cookie values cannot leak through it. */
#ifndef CW_ACCESSLOG_H
#define CW_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/config.h"

struct cw_accesslog; /* opaque */
struct cw_seg;

/* One finished request. Strings are borrowed for the call; NULL prints as "-" (combined)
 * or "" (JSON). */
struct cw_accesslog_rec {
    int64_t time_ms;    /* wall clock when the request arrived */
    const char *client; /* the client's address */
    const char *method;
    struct cw_str url;    /* the request target as sent; need not end in NUL */
    const char *protocol; /* "HTTP/1.1"; NULL leaves it out of the request line */
    int status;
    uint64_t bytes;      /* response body bytes */
    int64_t duration_us; /* from arrival until the answer was sent */
    const char *result;  /* "HIT", "MISS", ... as in X-Cache */
    const char *route;   /* the route's label, NULL when none matched */
    int64_t origin_us;   /* time spent on the origin; < 0 when the origin was not asked */
    const char *user_agent;
    const char *referer;
};

/* The longest line cw_accesslog_format() writes, newline included; longer fields (a long
 * URL or User-Agent) are cut so that the line fits and stays well-formed. */
#define CW_ACCESSLOG_LINE_MAX 16384

/* Opens the log that cfg->log_access names ("-" = stderr; a path is opened O_APPEND and
 * created mode 0640) in cfg->log_format and starts its flusher: 0 and *out; 0 and *out =
 * NULL when cfg->log_access is NULL (no log); -errno with the cause logged. Caller owns
 * *out; close with cw_accesslog_close(), which takes NULL. Call after fork(). */
CW_MUST_CHECK int cw_accesslog_open(const struct cw_config *cfg, struct cw_accesslog **out);

/* Flushes what is buffered (within about a second of waiting on the disk), stops the
 * flusher and closes the fd. Takes NULL. */
void cw_accesslog_close(struct cw_accesslog *log);

/* Counts dropped lines in seg's slot from now on as well (borrowed; must outlive log). */
void cw_accesslog_set_seg(struct cw_accesslog *log, struct cw_seg *seg, int slot);

/* Queues one line; never blocks on I/O and never fails: a line that does not fit is
 * dropped and counted. Thread-safe. Takes a NULL log (does nothing). */
void cw_accesslog_write(struct cw_accesslog *log, const struct cw_accesslog_rec *rec);

/* Reopens the file by its path (logrotate's postrotate sends SIGUSR1): 0, or -errno with the
 * cause logged, the old fd then kept. The flusher takes the new fd before its next write
 * and closes the old one. Thread-safe; with stderr or a NULL log it does nothing. */
CW_MUST_CHECK int cw_accesslog_reopen(struct cw_accesslog *log);

/* Lines dropped since open. */
uint64_t cw_accesslog_dropped(const struct cw_accesslog *log);

/* Formats one line (with its newline) into buf: the length, at most size - 1 (buf is
 * NUL-terminated), or 0 when size is below 512. Pure; for the writer and the tests. */
size_t cw_accesslog_format(enum cw_config_log_format fmt, const struct cw_accesslog_rec *rec,
                           char *buf, size_t size);

#endif /* CW_ACCESSLOG_H */
