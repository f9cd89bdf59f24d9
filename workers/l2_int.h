/* workers/l2_int.h - internals shared by the files of the l2 module.
 *
 * Not a public API: only workers/l2.c (commands, completion, the poll adapter, the breaker),
 * workers/l2_conn.c (one connection's life: connect, hiredis event hooks, handshake,
 * teardown and backoff), workers/l2_sentinel.c (master discovery and failover) and
 * workers/l2_cluster.c (slot map and redirects) include it. */
#ifndef CW_L2_INT_H
#define CW_L2_INT_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/breaker.h"
#include "core/config.h"
#include "core/hashslot.h"
#include "core/limits.h"
#include "workers/l2.h"

#define L2_HOST_SIZE 256
#define L2_PASS_MAX  1024 /* bytes of a password read from a file or the environment */

enum l2_conn_kind {
    L2_CONN_DATA = 0, /* commands: the master, or one cluster node */
    L2_CONN_SUB,      /* SUBSCRIBE redis.channel */
    L2_CONN_SENTINEL, /* SENTINEL get-master-addr-by-name, SUBSCRIBE +switch-master */
};

enum l2_conn_state {
    L2_CONN_DOWN = 0,   /* no context; reconnects at retry_at_ms when it has an address */
    L2_CONN_CONNECTING, /* context made, handshake not answered yet: commands queue */
    L2_CONN_READY,      /* handshake answered */
};

/* One connection. Lives as long as the l2 (array slots), its context comes and goes. */
struct l2_conn {
    struct cw_l2 *l2;
    enum l2_conn_kind kind;
    enum l2_conn_state state;
    redisAsyncContext *ac; /* NULL when DOWN */
    bool want_read;
    bool want_write;
    bool dying;    /* hiredis is freeing ac: send nothing more on it */
    bool has_addr; /* host/port (or unix path) known */
    bool is_unix;
    bool wanted;             /* reconnect in the background when down */
    bool logged_down;        /* the current outage is logged */
    char host[L2_HOST_SIZE]; /* or the unix socket path */
    int port;
    int64_t connect_deadline_ms; /* CONNECTING: handshake answered by then, or dropped */
    int64_t retry_at_ms;         /* DOWN: next connect */
    int64_t backoff_ms;
    int64_t stall_since_ms;  /* a command on it timed out then and no reply came since; 0 none */
    unsigned handshake_left; /* handshake replies still awaited */
    bool moving;             /* dropped for a new address (l2_conn_set_addr): not an outage */
    bool quiet;              /* remade on purpose (a question again): its connect is no news */
};

/* One command in flight. */
enum l2_op_kind {
    L2_OP_GET = 0,
    L2_OP_SET,
    L2_OP_DEL,
    L2_OP_LEASE_TAKE,
    L2_OP_LEASE_RELEASE,
    L2_OP_PUBLISH,
    L2_OP_PROBE,   /* the breaker's PING */
    L2_OP_REFRESH, /* CLUSTER SLOTS */
    L2_OP_PURGE,   /* a soft mark or a tag's group (l2_purge.c) */
    L2_OP_BAN,     /* a ban record into a group */
    L2_OP_LOG,     /* the purge log: XADD, or a read (its reply string is the value) */
};

struct l2_op {
    struct l2_op *prev, *next; /* in l2->pending while not completed, by deadline */
    struct cw_l2 *l2;
    enum l2_op_kind kind;
    cw_l2_done_fn fn;
    void *arg;
    int64_t deadline_ms;
    bool done;         /* completed to the caller; the reply is awaited only to free it */
    unsigned inflight; /* hiredis callbacks still to come for it */
    unsigned slot;     /* cluster routing */
    int redirects;
    struct l2_conn *conn; /* where it was sent last */
    char *cmd;            /* RESP-formatted, kept to resend on MOVED/ASK; redisFreeCommand */
    size_t cmd_len;
    struct l2_op *retry_next; /* in l2->retry_head while parked after TRYAGAIN */
    int64_t retry_at_ms;
};

struct l2_cluster_node {
    struct l2_conn conn;
    bool is_master; /* named by the last slot map */
};

struct cw_l2 {
    enum cw_config_redis_mode mode;
    bool closing;
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    int64_t stall_ms; /* a connection silent this long after a timeout is dropped */
    int db;
    char *user;
    char *password; /* NULL = no AUTH */
    char *prefix;
    char *channel;
    char *master; /* sentinel: master name */
    size_t max_value_bytes;

    struct l2_conn data; /* standalone, sentinel */
    struct l2_conn sub;
    struct l2_conn sentinel;
    char (*sentinels)[L2_HOST_SIZE + 8]; /* "host:port" each */
    size_t sentinel_count;
    size_t sentinel_idx;
    bool sentinel_reask;
    int64_t reask_not_before_ms;

    /* cluster */
    struct l2_cluster_node *nodes;
    size_t node_count;
    size_t seed_count; /* nodes[0..seed_count) are the configured seeds */
    int16_t *slots;    /* CW_HASHSLOT_COUNT node indexes, -1 unknown */
    bool refresh_inflight;
    int64_t refresh_at_ms; /* INT64_MAX: none wanted */
    int64_t refresh_backoff_ms;
    int64_t refresh_last_ms;
    size_t refresh_idx;
    size_t sub_idx;
    struct l2_op *retry_head, *retry_tail; /* parked after TRYAGAIN, by retry_at_ms */

    cw_l2_msg_fn msg_fn;
    void *msg_arg;

    struct l2_op *head, *tail; /* pending, by deadline */
    unsigned npending;
    struct cw_breaker breaker;
    int64_t breaker_closed_ms; /* when it last closed (0: never) */
    int64_t breaker_wait_ms;   /* its wait before a probe, kept across a quick reopen */
    struct cw_l2_stats stats;

    /* Fill notifications (cw_l2_subscribe_fill()): on the sub connection too. */
    char *fill_channel;   /* <prefix>fill */
    cw_l2_msg_fn fill_fn; /* NULL: not subscribed to it */
    void *fill_arg;
};

/* l2.c */
int64_t l2_now_ms(void);
/* Completes op once with rc (and value for GET): unlinks it, runs fn, feeds the breaker. */
void l2_complete(struct l2_op *op, int rc, struct cw_str value);
/* Sends op->cmd on conn (ASKING first when asking): 0, or -ENOTCONN. */
int l2_send(struct l2_op *op, struct l2_conn *conn, bool asking);
/* Formats argv into a new op and sends it on to, or on the connection for slot when to is
 * NULL; internal ops (PROBE, REFRESH) bypass the breaker. 0, or -errno as cw_l2_get(). */
int l2_submit_to(struct cw_l2 *l2, enum l2_op_kind kind, struct l2_conn *to, unsigned slot,
                 int argc, const char **argv, const size_t *lens, cw_l2_done_fn fn, void *arg);
/* l2_submit_to() with a deadline (monotonic ms) earlier than redis.timeout from now; 0 or a
 * later one: redis.timeout's. */
int l2_submit_until(struct cw_l2 *l2, enum l2_op_kind kind, struct l2_conn *to, unsigned slot,
                    int64_t deadline_ms, int argc, const char **argv, const size_t *lens,
                    cw_l2_done_fn fn, void *arg);
/* Frees op when it is done and no reply is awaited. */
void l2_op_release(struct l2_op *op);
/* Records an outcome in the breaker and logs a change of state. */
void l2_breaker_record(struct cw_l2 *l2, bool ok, bool probe);

/* l2_purge.c */
/* Submits the read of the entry named key (a whole Redis key name "<prefix>{hh}...") with
 * the bans of its group recorded since it was stored: 0, or -errno as cw_l2_get(). */
int l2_get_submit(struct cw_l2 *l2, const char *key, size_t key_len, cw_l2_done_fn fn, void *arg);
/* The result of that read: 0 and *value (the entry; a soft ban's is marked stale in the
 * reply), -ENOENT (none, or a hard ban covers it), -EIO (an unexpected reply), -EFBIG. */
int l2_get_result(struct l2_op *op, const redisReply *r, struct cw_str *value);

/* l2_conn.c */
void l2_conn_init(struct l2_conn *c, struct cw_l2 *l2, enum l2_conn_kind kind);
/* Sets the address ("host:port" split, or a unix path); drops a context on another one. */
void l2_conn_set_addr(struct l2_conn *c, const char *host, int port, bool is_unix);
/* Starts a connection now: 0, or -errno (logged; retried with backoff). */
int l2_conn_connect(struct l2_conn *c);
/* Drops the context (pending replies complete with NULL), reconnects after backoff. */
void l2_conn_drop(struct l2_conn *c, const char *why);
/* True when commands may be queued on it (a live context). */
bool l2_conn_is_usable(const struct l2_conn *c);
/* Deadlines: connect, stall, reconnect. */
void l2_conn_tick(struct l2_conn *c, int64_t now_ms);
int64_t l2_conn_next_ms(const struct l2_conn *c);
/* Its handshake finished: state READY, backoff reset, logged. */
void l2_conn_ready(struct l2_conn *c);
/* "host:port" or the unix path, for messages. */
const char *l2_conn_name(const struct l2_conn *c, char *buf, size_t size);
void l2_conn_handle(struct l2_conn *c, short revents);

/* l2_sentinel.c */
void l2_sentinel_start(struct cw_l2 *l2);
/* The sentinel connection's handshake (after AUTH): ask, then SUBSCRIBE +switch-master. */
void l2_sentinel_handshake(struct l2_conn *c);
/* The data connection failed or answered READONLY: ask the sentinels again. */
void l2_sentinel_reask(struct cw_l2 *l2);
void l2_sentinel_tick(struct cw_l2 *l2, int64_t now_ms);

/* l2_cluster.c */
int l2_cluster_open(struct cw_l2 *l2, const struct cw_config *cfg);
void l2_cluster_free(struct cw_l2 *l2);
/* The connection for slot, or NULL (-ENOTCONN). */
struct l2_conn *l2_cluster_route(struct cw_l2 *l2, unsigned slot);
/* Handles a MOVED/ASK error reply to op (and TRYAGAIN: parked, resent soon): true when op
 * was resent, parked or completed. */
bool l2_cluster_redirect(struct l2_op *op, const redisReply *r);
void l2_cluster_tick(struct cw_l2 *l2, int64_t now_ms);
int64_t l2_cluster_next_ms(const struct cw_l2 *l2);
/* Asks for a slot map refresh soon. */
void l2_cluster_want_refresh(struct cw_l2 *l2);
/* Completes the CLUSTER SLOTS op with its reply. */
void l2_cluster_slots_reply(struct l2_op *op, const redisReply *r);

#endif /* CW_L2_INT_H */
