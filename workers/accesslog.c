/* workers/accesslog.c - see workers/accesslog.h. */
#include "workers/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "shm/seg.h"
#include "workers/clock.h"

#define ACCESSLOG_BUF_BYTES    (64u << 10) /* one buffer; a write of it is one syscall */
#define ACCESSLOG_AGE_MS       1000        /* a buffered line waits at most this long */
#define ACCESSLOG_ERR_EVERY_MS 60000       /* write errors are logged at most this often */
#define ACCESSLOG_TAIL         256         /* room kept for the fixed text after a field */
/* Field budgets (escaped bytes): with them a line stays under CW_ACCESSLOG_LINE_MAX. */
#define ACCESSLOG_URL_MAX   8192
#define ACCESSLOG_UA_MAX    1024
#define ACCESSLOG_SHORT_MAX 256

struct cw_accesslog {
    enum cw_config_log_format fmt;
    char *path; /* NULL for stderr */
    int fd;     /* the flusher's; swapped for new_fd under lock */
    bool is_pipe;
    struct cw_seg *seg;
    int slot;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool started;
    /* Under lock. */
    char *cur; /* the buffer writers append to */
    size_t cur_len;
    int64_t cur_since_ms; /* monotonic: when its first line came */
    char *out;            /* the buffer the flusher writes, while out_busy */
    size_t out_len;
    bool out_busy;
    bool stopping;
    int new_fd; /* from reopen, for the flusher to take; -1 none */
    _Atomic uint64_t dropped;
    int64_t last_err_ms; /* flusher only */
};

/* A bounded line under construction: size - 1 bytes usable (the NUL), and the last one is
 * kept for the newline. */
struct al_out {
    char *p;
    size_t len;
    size_t cap; /* bytes usable before the newline */
};

static void *accesslog_flusher(void *arg);

static const char accesslog_hex[] = "0123456789abcdef";
static const char *const accesslog_months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* ---- formatting ---- */

static void al_put(struct al_out *o, const char *s, size_t n)
{
    if (n > o->cap - o->len) n = o->cap - o->len;
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void al_puts(struct al_out *o, const char *s)
{
    al_put(o, s, strlen(s));
}

static void al_printf(struct al_out *o, const char *fmt, ...) CW_PRINTF(2, 3);
static void al_printf(struct al_out *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0) al_put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* The escaped bytes a field may still take: its budget, less what the rest of the line
 * needs. */
static size_t al_room(const struct al_out *o, size_t budget)
{
    size_t left = o->cap - o->len;

    left = left > ACCESSLOG_TAIL ? left - ACCESSLOG_TAIL : 0;
    return left < budget ? left : budget;
}

/* nginx's escaping of a log variable: '"', '\' and bytes outside 0x20..0x7e as \xHH. An
 * escape is written whole or not at all, so a cut field stays well-formed. */
static void al_escape_combined(struct al_out *o, const char *s, size_t n, size_t budget)
{
    size_t room = al_room(o, budget), used = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20 || c > 0x7e) {
            if (used + 4 > room) return;
            char e[4] = {'\\', 'x', accesslog_hex[c >> 4], accesslog_hex[c & 15]};
            al_put(o, e, 4);
            used += 4;
        } else {
            if (used + 1 > room) return;
            al_put(o, (const char *)&c, 1);
            used++;
        }
    }
}

/* JSON string escaping (RFC 8259 §7); bytes >= 0x80 as \u00XX, so that the line is valid
 * UTF-8 whatever the client sent (the byte is still recoverable). */
static void al_escape_json(struct al_out *o, const char *s, size_t n, size_t budget)
{
    size_t room = al_room(o, budget), used = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[6];
        size_t len = 2;
        e[0] = '\\';
        switch (c) {
        case '"':
            e[1] = '"';
            break;
        case '\\':
            e[1] = '\\';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        default:
            if (c < 0x20 || c >= 0x7f) {
                memcpy(e, "\\u00", 4);
                e[4] = accesslog_hex[c >> 4];
                e[5] = accesslog_hex[c & 15];
                len = 6;
            } else {
                e[0] = (char)c;
                len = 1;
            }
        }
        if (used + len > room) return;
        al_put(o, e, len);
        used += len;
    }
}

static void al_field(struct al_out *o, enum cw_config_log_format fmt, const char *s, size_t budget)
{
    if (fmt == CW_CONFIG_LOG_JSON) {
        al_escape_json(o, s ? s : "", s ? strlen(s) : 0, budget);
    } else if (s == NULL || s[0] == '\0') {
        al_puts(o, "-");
    } else {
        al_escape_combined(o, s, strlen(s), budget);
    }
}

/* Microseconds as seconds with six decimals ("0.000120"); "-" for a negative value. */
static void al_seconds(char *buf, size_t size, int64_t us)
{
    if (us < 0) {
        snprintf(buf, size, "-");
        return;
    }
    snprintf(buf, size, "%" PRId64 ".%06" PRId64, us / 1000000, us % 1000000);
}

static void al_combined(struct al_out *o, const struct cw_accesslog_rec *r)
{
    enum cw_config_log_format f = CW_CONFIG_LOG_COMBINED;
    time_t t = (time_t)(r->time_ms / 1000);
    struct tm tm;
    char rt[32], ot[32];

    if (gmtime_r(&t, &tm) == NULL) memset(&tm, 0, sizeof(tm));
    al_field(o, f, r->client, ACCESSLOG_SHORT_MAX);
    al_printf(o, " - - [%02d/%s/%04d:%02d:%02d:%02d +0000] \"", tm.tm_mday,
              accesslog_months[tm.tm_mon >= 0 && tm.tm_mon < 12 ? tm.tm_mon : 0], tm.tm_year + 1900,
              tm.tm_hour, tm.tm_min, tm.tm_sec);
    al_field(o, f, r->method, ACCESSLOG_SHORT_MAX);
    al_puts(o, " ");
    al_escape_combined(o, r->url.p ? r->url.p : "", r->url.p ? r->url.len : 0, ACCESSLOG_URL_MAX);
    if (r->protocol != NULL) {
        al_puts(o, " ");
        al_field(o, f, r->protocol, ACCESSLOG_SHORT_MAX);
    }
    al_printf(o, "\" %d %" PRIu64 " \"", r->status, r->bytes);
    al_field(o, f, r->referer, ACCESSLOG_UA_MAX);
    al_puts(o, "\" \"");
    al_field(o, f, r->user_agent, ACCESSLOG_UA_MAX);
    al_seconds(rt, sizeof(rt), r->duration_us < 0 ? 0 : r->duration_us);
    al_seconds(ot, sizeof(ot), r->origin_us);
    al_printf(o, "\" rt=%s cache=", rt);
    al_field(o, f, r->result, ACCESSLOG_SHORT_MAX);
    al_puts(o, " route=\"");
    al_field(o, f, r->route, ACCESSLOG_SHORT_MAX);
    al_printf(o, "\" ot=%s", ot);
}

static void al_json_str(struct al_out *o, const char *name, const char *s, size_t budget)
{
    al_printf(o, ",\"%s\":\"", name);
    al_field(o, CW_CONFIG_LOG_JSON, s, budget);
    al_puts(o, "\"");
}

static void al_json(struct al_out *o, const struct cw_accesslog_rec *r)
{
    time_t t = (time_t)(r->time_ms / 1000);
    struct tm tm;
    char d[32];

    if (gmtime_r(&t, &tm) == NULL) memset(&tm, 0, sizeof(tm));
    al_printf(o, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
              (int)(r->time_ms % 1000 + 1000) % 1000);
    al_json_str(o, "client", r->client, ACCESSLOG_SHORT_MAX);
    al_json_str(o, "method", r->method, ACCESSLOG_SHORT_MAX);
    al_puts(o, ",\"url\":\"");
    al_escape_json(o, r->url.p ? r->url.p : "", r->url.p ? r->url.len : 0, ACCESSLOG_URL_MAX);
    al_puts(o, "\"");
    al_json_str(o, "protocol", r->protocol, ACCESSLOG_SHORT_MAX);
    al_seconds(d, sizeof(d), r->duration_us < 0 ? 0 : r->duration_us);
    al_printf(o, ",\"status\":%d,\"bytes\":%" PRIu64 ",\"duration\":%s", r->status, r->bytes, d);
    al_json_str(o, "cache", r->result, ACCESSLOG_SHORT_MAX);
    if (r->route != NULL)
        al_json_str(o, "route", r->route, ACCESSLOG_SHORT_MAX);
    else
        al_puts(o, ",\"route\":null");
    al_seconds(d, sizeof(d), r->origin_us);
    al_printf(o, ",\"origin_time\":%s", r->origin_us < 0 ? "null" : d);
    al_json_str(o, "referer", r->referer, ACCESSLOG_UA_MAX);
    al_json_str(o, "user_agent", r->user_agent, ACCESSLOG_UA_MAX);
    al_puts(o, "}");
}

size_t cw_accesslog_format(enum cw_config_log_format fmt, const struct cw_accesslog_rec *rec,
                           char *buf, size_t size)
{
    struct al_out o = {buf, 0, 0};

    if (size < 2 * ACCESSLOG_TAIL) return 0;
    if (size > CW_ACCESSLOG_LINE_MAX) size = CW_ACCESSLOG_LINE_MAX;
    o.cap = size - 2; /* the newline and the NUL */
    if (fmt == CW_CONFIG_LOG_JSON)
        al_json(&o, rec);
    else
        al_combined(&o, rec);
    buf[o.len++] = '\n';
    buf[o.len] = '\0';
    return o.len;
}

/* ---- buffering and the flusher ---- */

static void accesslog_count_drops(struct cw_accesslog *log, uint64_t n)
{
    if (n == 0) return;
    atomic_fetch_add_explicit(&log->dropped, n, memory_order_relaxed);
    if (log->seg != NULL) cw_seg_add(log->seg, log->slot, CW_METRICS_ACCESSLOG_DROPPED, n);
}

static uint64_t accesslog_count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;

    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        lines++;
    return lines;
}

/* Writes n bytes to fd: 0, or -errno (the bytes from *done on were not written). */
static int accesslog_write_all(int fd, const char *p, size_t n, size_t *done)
{
    *done = 0;
    while (*done < n) {
        ssize_t w = write(fd, p + *done, n - *done);
        if (w == -1) {
            if (errno == EINTR) continue;
            return -errno;
        }
        *done += (size_t)w;
    }
    return 0;
}

/* Writes one buffer of whole lines. On a pipe each write is at most PIPE_BUF bytes cut at a
 * line end, so that lines from several processes sharing stderr never interleave. */
static void accesslog_flush_buf(struct cw_accesslog *log, const char *p, size_t n)
{
    size_t off = 0, done = 0;
    int rc = 0;

    while (off < n && rc == 0) {
        size_t chunk = n - off;
        if (log->is_pipe && chunk > PIPE_BUF) {
            const char *cut = NULL;
            for (size_t i = PIPE_BUF; i > 0 && cut == NULL; i--)
                if (p[off + i - 1] == '\n') cut = p + off + i;
            if (cut != NULL) {
                chunk = (size_t)(cut - (p + off));
            } else { /* one line longer than PIPE_BUF: it goes alone */
                const char *nl = memchr(p + off, '\n', n - off);
                chunk = nl ? (size_t)(nl + 1 - (p + off)) : n - off;
            }
        }
        rc = accesslog_write_all(log->fd, p + off, chunk, &done);
        off += done;
    }
    if (rc == 0) return;
    accesslog_count_drops(log, accesslog_count_lines(p + off, n - off));
    int64_t now = cw_clock_mono_ms();
    if (log->last_err_ms == 0 || now - log->last_err_ms >= ACCESSLOG_ERR_EVERY_MS) {
        log->last_err_ms = now;
        cw_warn("accesslog: write %s: %s; lines dropped (counted)",
                log->path ? log->path : "stderr", strerror(-rc));
    }
}

static void accesslog_swap(struct cw_accesslog *log)
{
    char *t = log->out;

    log->out = log->cur;
    log->out_len = log->cur_len;
    log->out_busy = true;
    log->cur = t;
    log->cur_len = 0;
}

static void accesslog_deadline(struct timespec *ts, int64_t mono_ms)
{
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

static void *accesslog_flusher(void *arg)
{
    struct cw_accesslog *log = arg;

    pthread_mutex_lock(&log->lock);
    for (;;) {
        if (log->new_fd >= 0) {
            int old = log->fd;
            log->fd = log->new_fd;
            log->new_fd = -1;
            pthread_mutex_unlock(&log->lock);
            close(old);
            pthread_mutex_lock(&log->lock);
            continue;
        }
        if (!log->out_busy && log->cur_len > 0 &&
            (log->stopping || cw_clock_mono_ms() >= log->cur_since_ms + ACCESSLOG_AGE_MS))
            accesslog_swap(log);
        if (log->out_busy) {
            const char *p = log->out;
            size_t n = log->out_len;
            pthread_mutex_unlock(&log->lock);
            accesslog_flush_buf(log, p, n);
            pthread_mutex_lock(&log->lock);
            log->out_len = 0;
            log->out_busy = false;
            continue;
        }
        if (log->stopping) break;
        if (log->cur_len > 0) {
            struct timespec ts;
            accesslog_deadline(&ts, log->cur_since_ms + ACCESSLOG_AGE_MS);
            pthread_cond_timedwait(&log->cond, &log->lock, &ts);
        } else {
            pthread_cond_wait(&log->cond, &log->lock);
        }
    }
    pthread_mutex_unlock(&log->lock);
    return NULL;
}

void cw_accesslog_write(struct cw_accesslog *log, const struct cw_accesslog_rec *rec)
{
    char line[CW_ACCESSLOG_LINE_MAX];
    size_t n;
    int64_t now;

    if (log == NULL) return;
    n = cw_accesslog_format(log->fmt, rec, line, sizeof(line));
    now = cw_clock_mono_ms();
    pthread_mutex_lock(&log->lock);
    if (log->cur_len + n > ACCESSLOG_BUF_BYTES ||
        (log->cur_len > 0 && now >= log->cur_since_ms + ACCESSLOG_AGE_MS)) {
        if (log->out_busy) {
            if (log->cur_len + n > ACCESSLOG_BUF_BYTES) {
                /* Both buffers are taken: the disk is behind. Drop rather than wait. */
                pthread_mutex_unlock(&log->lock);
                accesslog_count_drops(log, 1);
                return;
            }
        } else {
            accesslog_swap(log);
            pthread_cond_signal(&log->cond);
        }
    }
    if (log->cur_len == 0) {
        /* The first line of a buffer starts the flusher's one-second clock. */
        log->cur_since_ms = now;
        pthread_cond_signal(&log->cond);
    }
    memcpy(log->cur + log->cur_len, line, n);
    log->cur_len += n;
    pthread_mutex_unlock(&log->lock);
}

static int accesslog_open_path(const char *path, int *fd)
{
    *fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (*fd == -1) {
        int rc = -errno;
        cw_err("accesslog: open %s: %s", path, strerror(errno));
        return rc;
    }
    return 0;
}

static bool accesslog_fd_is_pipe(int fd)
{
    struct stat st;

    if (fstat(fd, &st) == -1) return true; /* unknown: cut writes, which is always safe */
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || S_ISCHR(st.st_mode);
}

int cw_accesslog_open(const struct cw_config *cfg, struct cw_accesslog **out)
{
    struct cw_accesslog *log;
    pthread_condattr_t ca;
    sigset_t all, old;
    int rc;

    *out = NULL;
    if (cfg->log_access == NULL || cfg->log_access[0] == '\0') return 0;
    log = calloc(1, sizeof(*log));
    if (log == NULL) return -ENOMEM;
    log->fd = -1;
    log->new_fd = -1;
    log->fmt = cfg->log_format;
    log->cur = malloc(ACCESSLOG_BUF_BYTES);
    log->out = malloc(ACCESSLOG_BUF_BYTES);
    if (log->cur == NULL || log->out == NULL) {
        rc = -ENOMEM;
        goto out_free;
    }
    if (strcmp(cfg->log_access, "-") == 0) {
        log->fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (log->fd == -1) {
            rc = -errno;
            cw_err("accesslog: dup stderr: %s", strerror(errno));
            goto out_free;
        }
    } else {
        log->path = strdup(cfg->log_access);
        if (log->path == NULL) {
            rc = -ENOMEM;
            goto out_free;
        }
        rc = accesslog_open_path(log->path, &log->fd);
        if (rc < 0) goto out_free;
    }
    log->is_pipe = accesslog_fd_is_pipe(log->fd);
    pthread_mutex_init(&log->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log->cond, &ca);
    pthread_condattr_destroy(&ca);
    /* The flusher takes no signal: the process's main thread handles them. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = -pthread_create(&log->thread, NULL, accesslog_flusher, log);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        cw_err("accesslog: pthread_create: %s", strerror(-rc));
        pthread_cond_destroy(&log->cond);
        pthread_mutex_destroy(&log->lock);
        goto out_free;
    }
    log->started = true;
    *out = log;
    return 0;

out_free:
    if (log->fd != -1) close(log->fd);
    free(log->path);
    free(log->out);
    free(log->cur);
    free(log);
    return rc;
}

void cw_accesslog_close(struct cw_accesslog *log)
{
    if (log == NULL) return;
    if (log->started) {
        pthread_mutex_lock(&log->lock);
        log->stopping = true;
        pthread_cond_signal(&log->cond);
        pthread_mutex_unlock(&log->lock);
        pthread_join(log->thread, NULL);
        pthread_cond_destroy(&log->cond);
        pthread_mutex_destroy(&log->lock);
    }
    if (log->new_fd != -1) close(log->new_fd);
    if (log->fd != -1) close(log->fd);
    free(log->path);
    free(log->out);
    free(log->cur);
    free(log);
}

void cw_accesslog_set_seg(struct cw_accesslog *log, struct cw_seg *seg, int slot)
{
    if (log == NULL) return;
    log->seg = seg;
    log->slot = slot;
}

int cw_accesslog_reopen(struct cw_accesslog *log)
{
    int fd, rc;

    if (log == NULL || log->path == NULL) return 0;
    rc = accesslog_open_path(log->path, &fd);
    if (rc < 0) return rc;
    pthread_mutex_lock(&log->lock);
    if (log->new_fd != -1) close(log->new_fd); /* two reopens before the flusher woke */
    log->new_fd = fd;
    pthread_cond_signal(&log->cond);
    pthread_mutex_unlock(&log->lock);
    return 0;
}

uint64_t cw_accesslog_dropped(const struct cw_accesslog *log)
{
    return log ? atomic_load_explicit(&log->dropped, memory_order_relaxed) : 0;
}
