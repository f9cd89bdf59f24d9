/* workers/wire.c - see workers/wire.h. */
#include "workers/wire.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/reqscan.h"
#include "workers/clock.h"

/* The largest fd table: 4M entries (32 MiB of pointers). A higher RLIMIT_NOFILE is lowered
 * to it, so that no socket is ever outside the table (and so unread). */
#define WIRE_MAX_FDS    (1u << 22)
#define WIRE_HOLD_MIN   4096
#define WIRE_HOLD_MAX   (2 * CW_LIMIT_REQUEST_HEAD_BYTES)
#define WIRE_LINE_BYTES 256 /* of a refused request's first line, kept for the access log */

/* The stand-in head given to libmicrohttpd in place of a refused request. */
static const char wire_standin[] = "GET / HTTP/1.1\r\nHost: refused.invalid\r\n\r\n";

struct cw_wire_conn {
    int fd;
    struct cw_reqscan scan;
    unsigned begun;        /* requests numbered by cw_wire_request_begin() */
    int64_t head_since_ms; /* monotonic: when the head being read began; 0 between heads */
    /* Bytes read from the socket and not yet handed over: hold[0, ready) are deliverable,
     * hold[ready, held) are the start of a head not yet complete. hold[0] is stream byte
     * hold_pos. */
    char *hold;
    size_t cap, held, ready;
    uint64_t hold_pos;
    /* Refusal: after the deliverable bytes, the stand-in head, then nothing. */
    bool refused;
    bool reset;          /* refused inside a body already handed over: reset the connection */
    unsigned refused_at; /* place of the stand-in request on the connection */
    unsigned status;
    const char *reason;
    size_t standin_off;
    char line[WIRE_LINE_BYTES]; /* the refused request's first line, as far as it came */
    size_t line_len;
};

static _Atomic(struct cw_wire_conn *) *wire_table;
static size_t wire_table_size;
static int64_t wire_header_timeout_ms;

int cw_wire_init(int64_t header_timeout_ms)
{
    struct rlimit rl;
    size_t n = 65536;

    wire_header_timeout_ms = header_timeout_ms;
    if (wire_table != NULL) return 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > WIRE_MAX_FDS) {
            rl.rlim_cur = WIRE_MAX_FDS;
            if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
                cw_err("wire: setrlimit(RLIMIT_NOFILE, %u): %s", WIRE_MAX_FDS, strerror(errno));
                return -errno;
            }
        }
        n = (size_t)rl.rlim_cur;
    }
    wire_table = calloc(n, sizeof(*wire_table));
    if (wire_table == NULL) return -ENOMEM;
    wire_table_size = n;
    wire_header_timeout_ms = header_timeout_ms;
    return 0;
}

static struct cw_wire_conn *wire_lookup(int fd)
{
    if (fd < 0 || (size_t)fd >= wire_table_size || wire_table == NULL) return NULL;
    return atomic_load_explicit(&wire_table[fd], memory_order_acquire);
}

static void wire_conn_free(struct cw_wire_conn *c)
{
    if (c == NULL) return;
    free(c->hold);
    free(c);
}

struct cw_wire_conn *cw_wire_attach(int fd)
{
    struct cw_wire_conn *c;

    if (fd < 0 || (size_t)fd >= wire_table_size) return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->fd = fd;
    cw_reqscan_init(&c->scan);
    atomic_store_explicit(&wire_table[fd], c, memory_order_release);
    return c;
}

void cw_wire_detach(struct cw_wire_conn *c)
{
    if (c == NULL) return;
    atomic_store_explicit(&wire_table[c->fd], NULL, memory_order_release);
    wire_conn_free(c);
}

void cw_wire_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe)
{
    const union MHD_ConnectionInfo *ci;

    (void)cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        cw_wire_detach(*socket_context);
        *socket_context = NULL;
        return;
    }
    /* Without state the connection's requests all fail cw_wire_check(). */
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci != NULL) *socket_context = cw_wire_attach(ci->connect_fd);
}

struct cw_wire_conn *cw_wire_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

    return ci ? ci->socket_context : NULL;
}

unsigned cw_wire_begin(struct cw_wire_conn *c)
{
    return c ? c->begun++ : 0;
}

struct cw_str cw_wire_refused_line(const struct cw_wire_conn *c)
{
    return c && c->refused ? cw_str_make(c->line, c->line_len) : cw_str_make(NULL, 0);
}

unsigned cw_wire_check(const struct cw_wire_conn *c, unsigned n, const char **reason)
{
    if (c == NULL) {
        *reason = "connection not read";
        return 500;
    }
    if (c->refused && n == c->refused_at) {
        *reason = c->reason;
        return c->status;
    }
    /* The head at place n went through the scanner only if the scanner completed more than
     * n heads: anything else reached MHD some other way, and is refused. */
    if (n < c->scan.requests && !(c->refused && n > c->refused_at)) return 0;
    *reason = "request head not read by the validator";
    return 500;
}

/* The place on the connection of the request that begins at req_start: the next one while
 * between requests or inside a head, the last one whose head was read inside a body. */
static unsigned wire_req_index(const struct cw_reqscan *s)
{
    return s->in_body ? s->requests - 1 : s->requests;
}

/* Refuses the request that begins at stream byte req_start: what precedes it in the hold
 * stays deliverable, the rest is dropped. */
static void wire_refuse(struct cw_wire_conn *c, unsigned status, const char *reason)
{
    uint64_t start = c->scan.req_start;

    c->refused = true;
    c->status = status;
    c->reason = reason;
    c->refused_at = wire_req_index(&c->scan);
    if (start >= c->hold_pos && start - c->hold_pos < c->held) {
        const char *p = c->hold + (start - c->hold_pos);
        size_t n = c->held - (size_t)(start - c->hold_pos);
        while (c->line_len < n && c->line_len < sizeof(c->line) && p[c->line_len] != '\r' &&
               p[c->line_len] != '\n')
            c->line_len++;
        memcpy(c->line, p, c->line_len);
    }
    if (start < c->hold_pos + c->ready) {
        /* Part of the offending request was handed over already (its head was complete, so
         * the error is in its body): nothing honest can follow. */
        c->reset = true;
        c->held = c->ready;
        return;
    }
    c->held = (size_t)(start - c->hold_pos);
    c->ready = c->held;
}

static int wire_hold_reserve(struct cw_wire_conn *c, size_t need)
{
    size_t cap = c->cap ? c->cap : WIRE_HOLD_MIN;
    char *p;

    if (need <= c->cap) return 0;
    while (cap < need)
        cap *= 2;
    p = realloc(c->hold, cap);
    if (p == NULL) return -ENOMEM;
    c->hold = p;
    c->cap = cap;
    return 0;
}

/* client_header_timeout: the whole head must arrive in time, however slowly it trickles. */
static void wire_check_deadline(struct cw_wire_conn *c)
{
    if (wire_header_timeout_ms > 0 &&
        cw_clock_mono_ms() - c->head_since_ms > wire_header_timeout_ms)
        wire_refuse(c, 408, "request head not complete within client_header_timeout");
}

/* Feeds n new bytes that sit at hold[held]; marks what became deliverable. */
static void wire_scan_held(struct cw_wire_conn *c, size_t n)
{
    int rc = cw_reqscan_feed(&c->scan, c->hold + c->held, n);

    c->held += n;
    if (rc < 0) {
        wire_refuse(c, (unsigned)c->scan.status, c->scan.reason);
        return;
    }
    if (!c->scan.in_head) {
        c->head_since_ms = 0;
        c->ready = c->held;
        return;
    }
    if (c->head_since_ms == 0) c->head_since_ms = cw_clock_mono_ms();
    c->ready = (size_t)(c->scan.req_start - c->hold_pos);
    wire_check_deadline(c);
}

/* Hands over up to len deliverable bytes; 0 when there are none. */
static size_t wire_give(struct cw_wire_conn *c, char *buf, size_t len)
{
    size_t n = c->ready < len ? c->ready : len;

    if (n == 0) return 0;
    memcpy(buf, c->hold, n);
    memmove(c->hold, c->hold + n, c->held - n);
    c->held -= n;
    c->ready -= n;
    c->hold_pos += n;
    if (c->held == 0 && c->cap > WIRE_HOLD_MIN) {
        free(c->hold);
        c->hold = NULL;
        c->cap = 0;
    }
    return n;
}

/* After a refusal: the deliverable bytes, then the stand-in head, then nothing. */
static size_t wire_give_refused(struct cw_wire_conn *c, char *buf, size_t len)
{
    size_t n = wire_give(c, buf, len);

    if (n > 0 || c->reset) return n;
    n = sizeof(wire_standin) - 1 - c->standin_off;
    if (n > len) n = len;
    memcpy(buf, wire_standin + c->standin_off, n);
    c->standin_off += n;
    return n;
}

/* Reads n fresh bytes that sit at buf (the caller's buffer): all of them are handed over,
 * unless the stream now ends inside a head or breaks a rule; then what follows the last
 * complete request moves to the hold. Returns how many bytes of buf are handed over. */
static size_t wire_scan_direct(struct cw_wire_conn *c, const char *buf, size_t n)
{
    uint64_t before = c->scan.pos;
    int rc = cw_reqscan_feed(&c->scan, buf, n);
    size_t keep;

    if (rc == 0 && !c->scan.in_head) {
        c->head_since_ms = 0;
        return n;
    }
    if (rc < 0 && c->scan.req_start < before) {
        /* The broken rule is in the body of a request already handed over. */
        c->held = c->ready = 0;
        c->hold_pos = before;
        wire_refuse(c, (unsigned)c->scan.status, c->scan.reason);
        return 0;
    }
    keep = c->scan.req_start > before ? (size_t)(c->scan.req_start - before) : 0;
    if (keep > n) keep = n;
    if (wire_hold_reserve(c, n - keep) < 0) {
        /* Cannot hold the head: refuse it rather than hand over a part of it. */
        c->held = c->ready = 0;
        c->hold_pos = before + keep;
        wire_refuse(c, 503, "out of memory holding a request head");
        return keep;
    }
    memcpy(c->hold, buf + keep, n - keep);
    c->held = n - keep;
    c->ready = 0;
    c->hold_pos = before + keep;
    if (rc < 0) {
        wire_refuse(c, (unsigned)c->scan.status, c->scan.reason);
    } else {
        if (c->head_since_ms == 0) c->head_since_ms = cw_clock_mono_ms();
        wire_check_deadline(c);
    }
    return keep;
}

/* Fills buf as far as the stream allows. libmicrohttpd takes a short count to mean that the
 * socket has no more bytes for now and waits for the next epoll edge, so a short count is
 * returned only when the kernel said EAGAIN (or the connection is refused or ends). */
static ssize_t wire_recv(struct cw_wire_conn *c, char *buf, size_t len)
{
    size_t out = 0;
    ssize_t n = 0;

    while (out < len) {
        if (c->refused) {
            size_t g = wire_give_refused(c, buf + out, len - out);
            if (g == 0) break;
            out += g;
            continue;
        }
        if (c->ready > 0) {
            out += wire_give(c, buf + out, len - out);
            continue;
        }
        if (c->held == 0) {
            /* The common case: straight into the caller's buffer. */
            n = recvfrom(c->fd, buf + out, len - out, 0, NULL, NULL);
            if (n <= 0) goto out_end;
            size_t keep = wire_scan_direct(c, buf + out, (size_t)n);
            out += keep;
            if (keep == (size_t)n && (size_t)n < len - (out - keep)) return (ssize_t)out;
            continue;
        }
        /* Holding the start of a head: read more behind it until it is complete. */
        if (wire_hold_reserve(c, c->held + WIRE_HOLD_MIN) < 0) {
            wire_refuse(c, 503, "out of memory holding a request head");
            continue;
        }
        size_t room = c->cap - c->held;
        if (room > WIRE_HOLD_MAX) room = WIRE_HOLD_MAX;
        n = recvfrom(c->fd, c->hold + c->held, room, 0, NULL, NULL);
        if (n <= 0) goto out_end;
        wire_scan_held(c, (size_t)n);
    }
    if (out > 0) return (ssize_t)out;
    /* Refused and all handed over: the stand-in's answer closes the connection. */
    errno = c->reset ? ECONNRESET : EAGAIN;
    return -1;

out_end:
    /* EAGAIN, end of stream or an error: what was gathered first goes up; the next call
     * meets the same condition again (EOF and errors persist, EAGAIN is true until the next
     * edge). */
    if (out > 0) return (ssize_t)out;
    return n;
}

/* Every recv() of the process comes here: libmicrohttpd's for client sockets are read by
 * the scanner first; all others go straight to the kernel. */
ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    struct cw_wire_conn *c = wire_lookup(fd);

    if (c == NULL || flags != 0) return recvfrom(fd, buf, len, flags, NULL, NULL);
    return wire_recv(c, buf, len);
}
