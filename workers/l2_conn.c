/* workers/l2_conn.c - one L2 connection's life: connect, the hiredis event hooks that
 * make it pollable by any loop, the handshake (AUTH, SELECT, PING or SUBSCRIBE), deadlines,
 * teardown and reconnect with backoff; see workers/l2.h and l2_int.h.
 *
 * hiredis 0.14 facts relied on: redisAsyncFree() and an I/O error run every pending reply
 * callback with a NULL reply, then the ev.cleanup hook, synchronously (deferred to the end
 * of the callback when called inside one); a command queued before the connect finishes is
 * written once the socket is writable, after the handshake commands queued before it. */
#include "workers/l2_int.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

static void l2_conn_ev_add_read(void *p);
static void l2_conn_ev_del_read(void *p);
static void l2_conn_ev_add_write(void *p);
static void l2_conn_ev_del_write(void *p);
static void l2_conn_ev_cleanup(void *p);
static void l2_conn_on_handshake(redisAsyncContext *ac, void *reply, void *privdata);
static void l2_conn_on_sub(redisAsyncContext *ac, void *reply, void *privdata);

static const char *const l2_conn_kind_names[] = {"commands", "subscribe", "sentinel"};

void l2_conn_init(struct l2_conn *c, struct cw_l2 *l2, enum l2_conn_kind kind)
{
    memset(c, 0, sizeof(*c));
    c->l2 = l2;
    c->kind = kind;
    c->backoff_ms = CW_L2_BACKOFF_MIN_MS;
}

const char *l2_conn_name(const struct l2_conn *c, char *buf, size_t size)
{
    if (c->is_unix) {
        snprintf(buf, size, "%s", c->host);
    } else if (strchr(c->host, ':') != NULL) {
        snprintf(buf, size, "[%s]:%d", c->host, c->port);
    } else {
        snprintf(buf, size, "%s:%d", c->host, c->port);
    }
    return buf;
}

void l2_conn_set_addr(struct l2_conn *c, const char *host, int port, bool is_unix)
{
    if (c->has_addr && c->port == port && c->is_unix == is_unix && strcmp(c->host, host) == 0) {
        return;
    }
    /* A move (a new master, the next sentinel or cluster node), not an outage: the old
     * context goes before the address changes, without a warning, a breaker failure or a
     * new question to the sentinels; replies it still owed complete with -ENOTCONN. */
    if (c->ac != NULL && !c->dying) {
        c->moving = true;
        c->dying = true;
        redisAsyncFree(c->ac); /* runs l2_conn_ev_cleanup, now or when the callback returns */
    }
    snprintf(c->host, sizeof(c->host), "%s", host);
    c->port = port;
    c->is_unix = is_unix;
    c->has_addr = true;
    c->backoff_ms = CW_L2_BACKOFF_MIN_MS;
    c->retry_at_ms = 0; /* the new address is tried at once */
}

bool l2_conn_is_usable(const struct l2_conn *c)
{
    return c->ac != NULL && !c->dying;
}

/* A failed or lost connection: logged once per outage, counted, and fed to the breaker. */
static void l2_conn_failed(struct l2_conn *c, const char *what, const char *why)
{
    char name[L2_HOST_SIZE + 16];

    if (!c->logged_down) {
        cw_warn("l2: %s %s (%s): %s; retrying in the background", what,
                l2_conn_name(c, name, sizeof(name)), l2_conn_kind_names[c->kind], why);
        c->logged_down = true;
        c->quiet = false; /* an outage: its end is news */
    }
    if (c->kind == L2_CONN_DATA) l2_breaker_record(c->l2, false, false);
}

static void l2_conn_schedule_retry(struct l2_conn *c, int64_t now_ms)
{
    c->retry_at_ms = now_ms + c->backoff_ms;
    c->backoff_ms =
        c->backoff_ms * 2 < CW_L2_BACKOFF_MAX_MS ? c->backoff_ms * 2 : CW_L2_BACKOFF_MAX_MS;
}

/* Queues one handshake command (argv) whose reply l2_conn_on_handshake() awaits. */
static int l2_conn_hs(struct l2_conn *c, int argc, const char **argv)
{
    if (redisAsyncCommandArgv(c->ac, l2_conn_on_handshake, c, argc, argv, NULL) != REDIS_OK) {
        return -ENOMEM;
    }
    c->handshake_left++;
    return 0;
}

static int l2_conn_handshake(struct l2_conn *c)
{
    struct cw_l2 *l2 = c->l2;
    char db[16];
    const char *argv[3];
    int rc = 0;

    c->handshake_left = 0;
    /* Sentinels have no password setting of their own here: they are asked unauthenticated. */
    if (l2->password != NULL && c->kind != L2_CONN_SENTINEL) {
        argv[0] = "AUTH";
        argv[1] = l2->user != NULL ? l2->user : l2->password;
        argv[2] = l2->password;
        rc = l2_conn_hs(c, l2->user != NULL ? 3 : 2, argv);
        if (rc < 0) return rc;
    }
    switch (c->kind) {
    case L2_CONN_DATA:
        if (l2->db != 0) {
            snprintf(db, sizeof(db), "%d", l2->db);
            argv[0] = "SELECT";
            argv[1] = db;
            rc = l2_conn_hs(c, 2, argv);
            if (rc < 0) return rc;
        }
        argv[0] = "PING";
        return l2_conn_hs(c, 1, argv);
    case L2_CONN_SUB: {
        /* Ready when Redis confirms a subscription (l2_conn_on_sub): redis.channel, the fill
         * channel, or both. */
        int n = 1;
        argv[0] = "SUBSCRIBE";
        if (l2->msg_fn != NULL || l2->fill_fn == NULL) argv[n++] = l2->channel;
        if (l2->fill_fn != NULL) argv[n++] = l2->fill_channel;
        if (redisAsyncCommandArgv(c->ac, l2_conn_on_sub, c, n, argv, NULL) != REDIS_OK) {
            return -ENOMEM;
        }
        return 0;
    }
    case L2_CONN_SENTINEL:
        l2_sentinel_handshake(c);
        return 0;
    }
    return 0;
}

int l2_conn_connect(struct l2_conn *c)
{
    struct cw_l2 *l2 = c->l2;
    redisAsyncContext *ac;
    int64_t now = l2_now_ms();
    int rc;

    if (c->ac != NULL || !c->has_addr || l2->closing) return 0;
    ac = c->is_unix ? redisAsyncConnectUnix(c->host) : redisAsyncConnect(c->host, c->port);
    if (ac == NULL) {
        l2_conn_schedule_retry(c, now);
        return -ENOMEM;
    }
    if (ac->err != 0) {
        l2->stats.connect_failures++;
        l2_conn_failed(c, "connect to", ac->errstr);
        redisAsyncFree(ac);
        l2_conn_schedule_retry(c, now);
        return -ECONNREFUSED;
    }
    c->ac = ac;
    c->dying = false;
    c->want_read = c->want_write = false;
    c->stall_since_ms = 0;
    ac->ev.data = c;
    ac->ev.addRead = l2_conn_ev_add_read;
    ac->ev.delRead = l2_conn_ev_del_read;
    ac->ev.addWrite = l2_conn_ev_add_write;
    ac->ev.delWrite = l2_conn_ev_del_write;
    ac->ev.cleanup = l2_conn_ev_cleanup;
    c->state = L2_CONN_CONNECTING;
    c->connect_deadline_ms = now + l2->connect_timeout_ms;
    rc = l2_conn_handshake(c);
    if (rc < 0) l2_conn_drop(c, "handshake could not be queued");
    return rc;
}

void l2_conn_drop(struct l2_conn *c, const char *why)
{
    if (c->ac == NULL || c->dying) return;
    c->dying = true;
    l2_conn_failed(c, c->state == L2_CONN_READY ? "dropped connection to" : "connect to", why);
    redisAsyncFree(c->ac); /* runs l2_conn_ev_cleanup, now or when the callback returns */
}

void l2_conn_ready(struct l2_conn *c)
{
    char name[L2_HOST_SIZE + 16];

    if (c->state == L2_CONN_READY) return;
    c->state = L2_CONN_READY;
    c->backoff_ms = CW_L2_BACKOFF_MIN_MS;
    c->l2->stats.connects++;
    if (c->quiet) {
        cw_debug("l2: connected to %s (%s)", l2_conn_name(c, name, sizeof(name)),
                 l2_conn_kind_names[c->kind]);
    } else {
        cw_notice("l2: connected to %s (%s)%s", l2_conn_name(c, name, sizeof(name)),
                  l2_conn_kind_names[c->kind], c->logged_down ? " again" : "");
    }
    c->quiet = false;
    c->logged_down = false;
    if (c->kind == L2_CONN_DATA) l2_breaker_record(c->l2, true, false);
}

void l2_conn_tick(struct l2_conn *c, int64_t now_ms)
{
    if (c->ac != NULL && !c->dying && c->state == L2_CONN_CONNECTING &&
        now_ms >= c->connect_deadline_ms) {
        c->l2->stats.connect_failures++;
        l2_conn_drop(c, "connect timeout");
    }
    if (c->ac != NULL && !c->dying && c->stall_since_ms != 0 &&
        now_ms - c->stall_since_ms >= c->l2->stall_ms) {
        l2_conn_drop(c, "no reply since a command timed out");
    }
    if (c->ac == NULL && c->wanted && c->has_addr && now_ms >= c->retry_at_ms) {
        (void)l2_conn_connect(c); /* a failure is logged and retried with backoff */
    }
}

int64_t l2_conn_next_ms(const struct l2_conn *c)
{
    int64_t next = INT64_MAX;

    if (c->ac != NULL && !c->dying) {
        if (c->state == L2_CONN_CONNECTING) next = c->connect_deadline_ms;
        if (c->stall_since_ms != 0 && c->stall_since_ms + c->l2->stall_ms < next) {
            next = c->stall_since_ms + c->l2->stall_ms;
        }
    } else if (c->ac == NULL && c->wanted && c->has_addr) {
        next = c->retry_at_ms;
    }
    return next;
}

void l2_conn_handle(struct l2_conn *c, short revents)
{
    redisAsyncContext *ac = c->ac;

    if (ac == NULL) return;
    if ((revents & (POLLIN | POLLERR | POLLHUP)) != 0) redisAsyncHandleRead(ac);
    /* The read may have freed the context (EOF, error): check before writing. */
    if (c->ac == ac && (revents & (POLLOUT | POLLERR | POLLHUP)) != 0 && c->want_write) {
        redisAsyncHandleWrite(ac);
    }
}

/* ---- hiredis hooks and callbacks ---- */

static void l2_conn_ev_add_read(void *p)
{
    ((struct l2_conn *)p)->want_read = true;
}

static void l2_conn_ev_del_read(void *p)
{
    ((struct l2_conn *)p)->want_read = false;
}

static void l2_conn_ev_add_write(void *p)
{
    ((struct l2_conn *)p)->want_write = true;
}

static void l2_conn_ev_del_write(void *p)
{
    ((struct l2_conn *)p)->want_write = false;
}

/* The context is being freed (its pending callbacks already ran with NULL): forget it and
 * plan the reconnect. An error hiredis met is logged here; a drop of ours was logged. */
static void l2_conn_ev_cleanup(void *p)
{
    struct l2_conn *c = p;
    struct cw_l2 *l2 = c->l2;
    bool was_ready = c->state == L2_CONN_READY, moving = c->moving;

    c->moving = false;
    if (!c->dying && c->ac != NULL) {
        if (c->ac->err != 0 && !was_ready) l2->stats.connect_failures++;
        l2_conn_failed(c, was_ready ? "lost connection to" : "connect to",
                       c->ac->err != 0 ? c->ac->errstr : "closed by the server");
    }
    c->ac = NULL;
    c->dying = false;
    c->want_read = c->want_write = false;
    c->state = L2_CONN_DOWN;
    c->stall_since_ms = 0;
    c->handshake_left = 0;
    if (l2->closing) return;
    if (moving) {
        /* Deferred to the end of a callback: the new address may be set by now. */
        c->retry_at_ms = 0;
        return;
    }
    l2_conn_schedule_retry(c, l2_now_ms());
    if (c->kind == L2_CONN_DATA && l2->mode == CW_CONFIG_REDIS_SENTINEL) l2_sentinel_reask(l2);
    if (c->kind == L2_CONN_DATA && l2->mode == CW_CONFIG_REDIS_CLUSTER) {
        l2_cluster_want_refresh(l2);
    }
}

static bool l2_conn_is_auth_error(const char *s)
{
    return strncmp(s, "WRONGPASS", 9) == 0 || strncmp(s, "NOAUTH", 6) == 0 ||
           strstr(s, "AUTH") != NULL || strstr(s, "password") != NULL ||
           strncmp(s, "NOPERM", 6) == 0;
}

static void l2_conn_on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct l2_conn *c = privdata;
    const redisReply *r = reply;
    char name[L2_HOST_SIZE + 16];

    if (r == NULL || ac != c->ac || c->dying) return; /* the context is going: cleanup */
    if (r->type == REDIS_REPLY_ERROR) {
        if (l2_conn_is_auth_error(r->str)) {
            c->l2->stats.auth_failures++;
            /* A wrong password does not heal by itself: retry slowly, not in a loop. */
            c->backoff_ms = CW_L2_BACKOFF_MAX_MS;
            if (!c->logged_down) {
                cw_err("l2: Redis %s refused AUTH/SELECT: %s; serving without L2 until it "
                       "accepts",
                       l2_conn_name(c, name, sizeof(name)), r->str);
                c->logged_down = true;
            }
        }
        l2_conn_failed(c, "handshake with", r->str);
        c->dying = true;
        redisAsyncFree(ac);
        return;
    }
    if (c->handshake_left > 0 && --c->handshake_left == 0) l2_conn_ready(c);
}

/* SUBSCRIBE replies: the confirmation makes the connection ready, messages go up. */
static void l2_conn_on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct l2_conn *c = privdata;
    struct cw_l2 *l2 = c->l2;
    const redisReply *r = reply, *kind;

    if (r == NULL || ac != c->ac || c->dying) return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    kind = r->element[0];
    if (kind->type != REDIS_REPLY_STRING) return;
    if (strcmp(kind->str, "subscribe") == 0) {
        l2_conn_ready(c);
    } else if (strcmp(kind->str, "message") == 0 && r->element[1]->type == REDIS_REPLY_STRING &&
               r->element[2]->type == REDIS_REPLY_STRING) {
        struct cw_str ch = cw_str_make(r->element[1]->str, r->element[1]->len);
        struct cw_str payload = cw_str_make(r->element[2]->str, r->element[2]->len);
        l2->stats.messages++;
        if (l2->fill_fn != NULL && cw_str_eq(ch, cw_str_cstr(l2->fill_channel))) {
            l2->fill_fn(l2->fill_arg, ch, payload);
        } else if (l2->msg_fn != NULL) {
            l2->msg_fn(l2->msg_arg, ch, payload);
        }
    }
}
