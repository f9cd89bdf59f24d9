/* core/fleetmsg.h - the bytes of a fleet-wide purge: one line of text, published on
 * redis.channel, appended to the purge log stream and kept as a ban record in Redis.
 *
 * Version 2: "cwpurge2 <id> <time_ms> <kind> <soft> <value>", where <id> is
 * "<node>/<pid>:<n>" (at most CW_FLEETMSG_ID_BYTES - 1 bytes, no space; <node> names the
 * sending node, so that a node skips its own purges), <time_ms> the purge's wall-clock time
 * in decimal milliseconds, <kind> one of u (URL), p (URL prefix), t (tag) or b (ban record:
 * the value is a prefix of the cache key string), <soft> 0 or 1, and <value> every byte to
 * the end (at least one, at most CW_LIMIT_KEY_BYTES; it may hold spaces and newlines).
 * Version 1 ("cwpurge1 <id> <kind> <soft> <value>", no time) is still read, with time 0.
 * Pure: decode borrows the bytes it is given; nothing is allocated. */
#ifndef CW_FLEETMSG_H
#define CW_FLEETMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/limits.h"

#define CW_FLEETMSG_ID_BYTES 96 /* an id and its NUL */
/* The longest message: magic, id, time, kind, soft, value and the spaces between. */
#define CW_FLEETMSG_BYTES (9 + CW_FLEETMSG_ID_BYTES + 20 + 4 + CW_LIMIT_KEY_BYTES)

/* The kinds; URL, prefix and tag have the values of the control channel's (workers/chan.h). */
enum cw_fleetmsg_kind {
    CW_FLEETMSG_URL = 0,
    CW_FLEETMSG_PREFIX = 1,
    CW_FLEETMSG_TAG = 2,
    CW_FLEETMSG_BAN = 3,
    CW_FLEETMSG_KIND_COUNT
};

/* A decoded message; the strings borrow the decoded bytes. */
struct cw_fleetmsg {
    struct cw_str id;   /* "<node>/<pid>:<n>" */
    struct cw_str node; /* id up to its first '/' */
    int64_t time_ms;    /* 0 for a version 1 message */
    uint32_t kind;      /* enum cw_fleetmsg_kind */
    bool soft;
    struct cw_str value;
};

/* Writes m (id, time_ms, kind, soft, value; node is not read) into buf: 0 and *len, -EINVAL
 * for an id that is empty, too long, has no '/' or holds a space or control byte, a time
 * below 0, a kind out of range or a value that is empty or longer than CW_LIMIT_KEY_BYTES,
 * -ENOSPC when it does not fit in size bytes (CW_FLEETMSG_BYTES always does). Not
 * NUL-terminated. */
CW_MUST_CHECK int cw_fleetmsg_encode(const struct cw_fleetmsg *m, char *buf, size_t size,
                                     size_t *len);
/* Reads a version 1 or 2 message from the len bytes at p: 0 and *out (borrowing p), or
 * -EBADMSG for anything encode would not have written. */
CW_MUST_CHECK int cw_fleetmsg_decode(const char *p, size_t len, struct cw_fleetmsg *out);

/* ---- a read of the purge log (workers/l2.h: cw_l2_log_read()) ----
 * "<1|0> <last id>\n", then per entry "<id> <length> <message>" with no separator: the
 * message is exactly <length> bytes. An id is a Redis stream id, "<ms>-<seq>" in decimal. */
#define CW_FLEETMSG_LOG_ID_BYTES 48 /* a stream id and its NUL */

struct cw_fleetmsg_log {
    bool kept;             /* the entry read after is still in the log: nothing was lost */
    struct cw_str last_id; /* the log's last entry, "0-0" when it is empty */
    struct cw_str rest;    /* the entries not read yet */
};

/* Reads the head of the len bytes at p: 0 and *out (borrowing p), or -EBADMSG. */
CW_MUST_CHECK int cw_fleetmsg_log_open(const char *p, size_t len, struct cw_fleetmsg_log *out);
/* The next entry: 1 with *id and *msg (borrowed; msg at most CW_FLEETMSG_BYTES, not yet
 * decoded), 0 at the end, -EBADMSG for bytes that do not read (the rest is then dropped). */
CW_MUST_CHECK int cw_fleetmsg_log_next(struct cw_fleetmsg_log *log, struct cw_str *id,
                                       struct cw_str *msg);
/* Compares two stream ids as Redis orders them: <0, 0, >0; a malformed id sorts first. */
int cw_fleetmsg_log_cmp(struct cw_str a, struct cw_str b);

#endif /* CW_FLEETMSG_H */
