/* workers/chan.h - the command channel between the supervisor and a child: bounded,
 * typed messages over a socketpair(AF_UNIX, SOCK_SEQPACKET).
 *
 * Owns nothing but the two fds cw_chan_pair() hands out; the caller closes them. SEQPACKET
 * keeps message boundaries, so one send() is one whole message, and a short, oversized or
 * mislabelled one is rejected by its length instead of desynchronising the stream. Every
 * call is non-blocking: a full channel is -EAGAIN for the sender to handle, never a stall of
 * the supervisor's loop. Fork rule: after fork() the supervisor keeps one end and the child
 * the other, and each closes the end it does not use, so that either side sees the other's
 * exit as end of file.
 *
 * A message is a struct cw_chan_hdr (type, payload length, sequence number, in host byte
 * order: both ends are the same binary on the same machine) followed by len payload bytes,
 * at most CW_LIMIT_CHAN_MSG_BYTES in all. */
#ifndef CW_CHAN_H
#define CW_CHAN_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h" /* CW_MUST_CHECK */
#include "core/limits.h"

enum cw_chan_type {
    CW_CHAN_PING = 0, /* supervisor -> child: "are you running your loop?"; no payload */
    CW_CHAN_PONG = 1, /* child -> supervisor: the answer, with the PING's seq; no payload */
    /* supervisor -> refresher: purge L1 (struct cw_chan_purge, then the text) */
    CW_CHAN_PURGE = 2,
    CW_CHAN_PURGED = 3,   /* refresher -> supervisor: the result, with the PURGE's seq */
    CW_CHAN_L1_STAT = 4,  /* supervisor -> refresher: "how full is L1?"; no payload */
    CW_CHAN_L1_STATS = 5, /* refresher -> supervisor: struct cw_chan_l1_stats, with the seq */
    /* refresher -> supervisor: a long purge's progress (struct cw_chan_purged, rc 0, the
     * count so far), with the PURGE's seq; PURGED still ends it */
    CW_CHAN_PURGING = 6,
    CW_CHAN_TYPE_COUNT
};

enum cw_chan_purge_kind {
    CW_CHAN_PURGE_URL = 0, /* text: "http://host[:port]/path?query" (core/ctlmsg.h) */
    CW_CHAN_PURGE_PREFIX,  /* text: a prefix of the key string ("http://host/api/") */
    CW_CHAN_PURGE_TAG,     /* text: a Surrogate-Key tag */
    CW_CHAN_PURGE_KIND_COUNT
};

/* CW_CHAN_PURGE's payload: this header, then len - sizeof(it) bytes of text (no NUL). */
struct cw_chan_purge {
    uint32_t kind; /* enum cw_chan_purge_kind */
    uint32_t soft; /* 1: mark stale (store.h soft purge), 0: delete */
};

/* CW_CHAN_PURGED's payload. */
struct cw_chan_purged {
    int32_t rc; /* 0, or -errno: -EINVAL bad URL or prefix, -ENOENT no route, others logged */
    uint32_t pad;
    uint64_t count;   /* entries purged */
    uint64_t took_us; /* how long the refresher spent on it */
};

/* CW_CHAN_L1_STATS's payload. */
struct cw_chan_l1_stats {
    int32_t rc; /* 0, or -errno of cw_store_stat() */
    uint32_t pad;
    uint64_t entries;
    uint64_t used_bytes;
    uint64_t size_bytes; /* the map size (cache.size) */
};

static_assert(sizeof(struct cw_chan_purge) == 8, "purge header layout is pinned");
static_assert(sizeof(struct cw_chan_purged) == 24, "purge result layout is pinned");
static_assert(sizeof(struct cw_chan_l1_stats) == 32, "L1 stats layout is pinned");

struct cw_chan_hdr {
    uint32_t type; /* enum cw_chan_type */
    uint32_t len;  /* payload bytes after the header: at most CW_CHAN_PAYLOAD_MAX */
    uint64_t seq;  /* chosen by the sender of a request; an answer repeats it */
};

#define CW_CHAN_PAYLOAD_MAX (CW_LIMIT_CHAN_MSG_BYTES - sizeof(struct cw_chan_hdr))

struct cw_chan_msg {
    struct cw_chan_hdr hdr;
    unsigned char payload[CW_CHAN_PAYLOAD_MAX];
};

static_assert(sizeof(struct cw_chan_hdr) == 16, "the channel header is 16 bytes, no padding");
static_assert(sizeof(struct cw_chan_msg) == CW_LIMIT_CHAN_MSG_BYTES, "one message, one limit");

/* Creates a connected, non-blocking, close-on-exec pair: 0 with *sup_fd and *child_fd set,
 * or -errno with the cause logged. Caller owns both fds. */
CW_MUST_CHECK int cw_chan_pair(int *sup_fd, int *child_fd);

/* Sends one message: 0; -EINVAL for an unknown type or len > CW_CHAN_PAYLOAD_MAX; -EAGAIN
 * when the peer has not read what is queued; -EPIPE when the peer has closed its end; or
 * another -errno. Nothing is logged: the caller decides what a failure means. */
CW_MUST_CHECK int cw_chan_send(int fd, enum cw_chan_type type, uint64_t seq, const void *payload,
                               size_t len);

/* Receives one message into *out, checked before use: 0; -EAGAIN when none is waiting;
 * -EPIPE when the peer has closed its end; -EBADMSG for a message that is shorter than its
 * header, longer than CW_LIMIT_CHAN_MSG_BYTES, of an unknown type, or whose len disagrees
 * with the bytes received (it is consumed and dropped); or another -errno. */
CW_MUST_CHECK int cw_chan_recv(int fd, struct cw_chan_msg *out);

/* The type's name for logs ("ping"), or "unknown". */
const char *cw_chan_type_name(uint32_t type);

#endif /* CW_CHAN_H */
