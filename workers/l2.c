/* workers/l2.c - the L2 client: open and close, the poll adapter, the commands, their
 * completion and deadlines, and the breaker; see workers/l2.h. Connections are in
 * l2_conn.c, Sentinel in l2_sentinel.c, Cluster in l2_cluster.c. */
#include "workers/l2.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "workers/clock.h"
#include "workers/l2_int.h"

#define L2_GROUP_CHARS 2 /* hash tag: the key's first 2 hex chars, 256 groups */

/* KEYS[1] the entry, KEYS[2..] tag sets; ARGV value, ttl ms, member. A tag set lives as long
 * as its longest-lived member: its TTL is only ever raised (a new set has none, -1). Members
 * are never removed when their entry expires, so a set past L2_TAG_TRIM_OVER members is
 * trimmed by each write into it: L2_TAG_TRIM_SAMPLE random members whose entry is gone are
 * removed. Each write adds at most one member and removes about L2_TAG_TRIM_SAMPLE times the
 * share of dead ones, so a set settles at its live entries plus about 1/L2_TAG_TRIM_SAMPLE
 * dead ones, for L2_TAG_TRIM_SAMPLE EXISTS per write. The members' entries share the set's
 * hash tag (the entry's name less the member is the group's prefix), so they are on its
 * cluster slot, as in the tag purge script. */
#define L2_TAG_TRIM_OVER   "64"
#define L2_TAG_TRIM_SAMPLE "8"
static const char l2_set_script[] =
    "redis.call('SET',KEYS[1],ARGV[1],'PX',ARGV[2]) "
    "local g=string.sub(KEYS[1],1,#KEYS[1]-#ARGV[3]) "
    "for i=2,#KEYS do redis.call('SADD',KEYS[i],ARGV[3]) "
    "local t=redis.call('PTTL',KEYS[i]) "
    "if t==-1 or t<tonumber(ARGV[2]) then redis.call('PEXPIRE',KEYS[i],ARGV[2]) end "
    "if redis.call('SCARD',KEYS[i])>" L2_TAG_TRIM_OVER " then "
    "for _,m in ipairs(redis.call('SRANDMEMBER',KEYS[i]," L2_TAG_TRIM_SAMPLE ")) do "
    "if redis.call('EXISTS',g..m)==0 then redis.call('SREM',KEYS[i],m) end end end end "
    "return 1";
/* Compare-and-delete: only the holder's token releases a lease. */
static const char l2_release_script[] =
    "if redis.call('GET',KEYS[1])==ARGV[1] then return redis.call('DEL',KEYS[1]) end return 0";

static const char *const l2_op_names[] = {"GET",     "SET",     "DEL",      "lease take",
                                          "release", "PUBLISH", "PING",     "CLUSTER SLOTS",
                                          "purge",   "ban",     "purge log"};

static void l2_on_reply(redisAsyncContext *ac, void *reply, void *privdata);

int64_t l2_now_ms(void)
{
    return cw_clock_mono_ms();
}

/* ---- open and close ---- */

/* The password from the config, its file (first line) or its environment variable. */
static int l2_load_password(struct cw_l2 *l2, const struct cw_config *cfg)
{
    char buf[L2_PASS_MAX + 1];
    const char *v = cfg->redis_password;
    ssize_t n;
    int fd;

    if (cfg->redis_password_env != NULL) {
        v = getenv(cfg->redis_password_env);
        if (v == NULL || v[0] == '\0') {
            cw_err("l2: redis.password_env: variable %s is not set", cfg->redis_password_env);
            return -ENOENT;
        }
    } else if (cfg->redis_password_file != NULL) {
        fd = open(cfg->redis_password_file, O_RDONLY | O_CLOEXEC);
        if (fd == -1) {
            int e = errno;
            cw_err("l2: open redis.password_file %s: %s", cfg->redis_password_file, strerror(e));
            return -e;
        }
        n = read(fd, buf, sizeof(buf) - 1);
        if (n == -1) {
            int e = errno;
            close(fd);
            cw_err("l2: read redis.password_file %s: %s", cfg->redis_password_file, strerror(e));
            return -e;
        }
        close(fd);
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        if (buf[0] == '\0') {
            cw_err("l2: redis.password_file %s: empty first line", cfg->redis_password_file);
            return -ENOENT;
        }
        v = buf;
    }
    if (v == NULL) return 0;
    if (strlen(v) > L2_PASS_MAX) {
        cw_err("l2: redis password longer than %d bytes", L2_PASS_MAX);
        return -EINVAL;
    }
    l2->password = strdup(v);
    explicit_bzero(buf, sizeof(buf));
    return l2->password != NULL ? 0 : -ENOMEM;
}

/* The fill notification channel, <prefix>fill: 0 or -ENOMEM. */
static int l2_fill_channel_init(struct cw_l2 *l2)
{
    const char *prefix = l2->prefix != NULL ? l2->prefix : "";
    size_t len = strlen(prefix) + sizeof("fill");

    l2->fill_channel = malloc(len);
    if (l2->fill_channel == NULL) return -ENOMEM;
    snprintf(l2->fill_channel, len, "%sfill", prefix);
    return 0;
}

static int l2_dup(char **dst, const char *src)
{
    if (src == NULL) return 0;
    *dst = strdup(src);
    return *dst != NULL ? 0 : -ENOMEM;
}

int cw_l2_open(const struct cw_config *cfg, struct cw_l2 **out)
{
    struct cw_l2 *l2;
    int rc;

    *out = NULL;
    if (!cfg->redis_enabled) return -ENODEV;
    if ((l2 = calloc(1, sizeof(*l2))) == NULL) return -ENOMEM;
    l2->mode = cfg->redis_mode;
    l2->timeout_ms = cfg->redis_timeout_ms;
    l2->connect_timeout_ms = cfg->redis_connect_timeout_ms;
    /* Long enough for a reply that is merely late, short enough that a hung Redis does not
     * keep a connection whose every command times out. */
    l2->stall_ms = cfg->redis_connect_timeout_ms > 10 * cfg->redis_timeout_ms
                       ? cfg->redis_connect_timeout_ms
                       : 10 * cfg->redis_timeout_ms;
    l2->db = cfg->redis_db;
    l2->max_value_bytes = (size_t)cfg->cache_max_object_bytes + CW_LIMIT_HEADERS_BYTES +
                          CW_LIMIT_ENTRY_REQ_BYTES + 4096;
    l2->refresh_at_ms = INT64_MAX;
    cw_breaker_init(&l2->breaker, CW_L2_BREAKER_FAILURES, CW_L2_BACKOFF_MIN_MS,
                    CW_L2_BACKOFF_MAX_MS);
    l2_conn_init(&l2->data, l2, L2_CONN_DATA);
    l2_conn_init(&l2->sub, l2, L2_CONN_SUB);
    l2_conn_init(&l2->sentinel, l2, L2_CONN_SENTINEL);
    if ((rc = l2_dup(&l2->user, cfg->redis_user)) < 0 ||
        (rc = l2_dup(&l2->prefix, cfg->redis_prefix)) < 0 ||
        (rc = l2_dup(&l2->channel, cfg->redis_channel)) < 0 ||
        (rc = l2_dup(&l2->master, cfg->redis_master)) < 0 || (rc = l2_load_password(l2, cfg)) < 0) {
        goto out_close;
    }
    if ((rc = l2_fill_channel_init(l2)) < 0) goto out_close;
    switch (l2->mode) {
    case CW_CONFIG_REDIS_STANDALONE:
        if (cfg->redis_socket != NULL) {
            l2_conn_set_addr(&l2->data, cfg->redis_socket, 0, true);
        } else {
            l2_conn_set_addr(&l2->data, cfg->redis_host, cfg->redis_port, false);
        }
        l2->data.wanted = true;
        (void)l2_conn_connect(&l2->data); /* a failure is logged and retried */
        break;
    case CW_CONFIG_REDIS_SENTINEL:
        l2->sentinels = calloc(cfg->redis_sentinel_count, sizeof(*l2->sentinels));
        if (l2->sentinels == NULL) {
            rc = -ENOMEM;
            goto out_close;
        }
        for (size_t i = 0; i < cfg->redis_sentinel_count; i++) {
            snprintf(l2->sentinels[i], sizeof(l2->sentinels[i]), "%s", cfg->redis_sentinels[i]);
        }
        l2->sentinel_count = cfg->redis_sentinel_count;
        l2_sentinel_start(l2);
        break;
    case CW_CONFIG_REDIS_CLUSTER:
        rc = l2_cluster_open(l2, cfg);
        if (rc < 0) goto out_close;
        break;
    }
    *out = l2;
    return 0;
out_close:
    cw_l2_close(l2);
    return rc;
}

/* Every connection of l2, for loops over them: n of at most max. */
static size_t l2_conns(struct cw_l2 *l2, struct l2_conn **v, size_t max)
{
    size_t n = 0;

    if (n < max) v[n++] = &l2->data;
    if (n < max) v[n++] = &l2->sub;
    if (n < max) v[n++] = &l2->sentinel;
    for (size_t i = 0; i < l2->node_count && n < max; i++) {
        v[n++] = &l2->nodes[i].conn;
    }
    return n;
}

void cw_l2_close(struct cw_l2 *l2)
{
    struct l2_conn *v[CW_L2_POLLFDS_MAX];
    size_t n;

    if (l2 == NULL) return;
    l2->closing = true;
    while (l2->head != NULL) {
        struct l2_op *op = l2->head;
        l2_complete(op, -ECANCELED, cw_str_make(NULL, 0));
        l2_op_release(op);
    }
    /* Freeing a context runs its callbacks with NULL: done ops, freed there. */
    n = l2_conns(l2, v, CW_ARRAY_LEN(v));
    for (size_t i = 0; i < n; i++) {
        if (v[i]->ac != NULL) {
            v[i]->dying = true;
            redisAsyncFree(v[i]->ac);
        }
    }
    l2_cluster_free(l2);
    free(l2->sentinels);
    if (l2->password != NULL) explicit_bzero(l2->password, strlen(l2->password));
    free(l2->password);
    free(l2->user);
    free(l2->prefix);
    free(l2->channel);
    free(l2->fill_channel);
    free(l2->master);
    free(l2);
}

/* ---- the poll adapter ---- */

size_t cw_l2_pollfds(struct cw_l2 *l2, struct pollfd *fds, size_t max)
{
    struct l2_conn *v[CW_L2_POLLFDS_MAX];
    size_t n = l2_conns(l2, v, CW_ARRAY_LEN(v)), used = 0;

    for (size_t i = 0; i < n && used < max; i++) {
        short ev = (short)((v[i]->want_read ? POLLIN : 0) | (v[i]->want_write ? POLLOUT : 0));
        if (v[i]->ac == NULL || ev == 0) continue;
        fds[used].fd = v[i]->ac->c.fd;
        fds[used].events = ev;
        fds[used].revents = 0;
        used++;
    }
    return used;
}

int cw_l2_timeout_ms(struct cw_l2 *l2)
{
    struct l2_conn *v[CW_L2_POLLFDS_MAX];
    size_t n = l2_conns(l2, v, CW_ARRAY_LEN(v));
    int64_t next = cw_breaker_next_ms(&l2->breaker), now;

    if (l2->head != NULL && l2->head->deadline_ms < next) next = l2->head->deadline_ms;
    for (size_t i = 0; i < n; i++) {
        int64_t t = l2_conn_next_ms(v[i]);
        if (t < next) next = t;
    }
    if (l2_cluster_next_ms(l2) < next) next = l2_cluster_next_ms(l2);
    if (l2->sentinel_reask && l2->reask_not_before_ms < next) next = l2->reask_not_before_ms;
    if (next == INT64_MAX) return -1;
    now = l2_now_ms();
    if (next <= now) return 0;
    return next - now > INT_MAX ? INT_MAX : (int)(next - now);
}

static void l2_probe(struct cw_l2 *l2);

void cw_l2_process(struct cw_l2 *l2, const struct pollfd *fds, size_t n)
{
    struct l2_conn *v[CW_L2_POLLFDS_MAX];
    size_t nc = l2_conns(l2, v, CW_ARRAY_LEN(v));
    int64_t now;

    for (size_t i = 0; i < n; i++) {
        if (fds[i].revents == 0) continue;
        for (size_t j = 0; j < nc; j++) {
            if (v[j]->ac != NULL && v[j]->ac->c.fd == fds[i].fd) {
                l2_conn_handle(v[j], fds[i].revents);
                break;
            }
        }
    }
    now = l2_now_ms();
    while (l2->head != NULL && l2->head->deadline_ms <= now) {
        struct l2_op *op = l2->head;
        if (op->conn != NULL && op->conn->stall_since_ms == 0) op->conn->stall_since_ms = now;
        l2->stats.timeouts++;
        l2_complete(op, -ETIMEDOUT, cw_str_make(NULL, 0));
        l2_op_release(op);
    }
    /* Modes first: they pick the address a connection's tick then connects to. */
    if (l2->mode == CW_CONFIG_REDIS_SENTINEL) l2_sentinel_tick(l2, now);
    if (l2->mode == CW_CONFIG_REDIS_CLUSTER) l2_cluster_tick(l2, now);
    nc = l2_conns(l2, v, CW_ARRAY_LEN(v)); /* a redirect may have added a cluster node */
    for (size_t j = 0; j < nc; j++) {
        l2_conn_tick(v[j], now);
    }
    if (cw_breaker_take_probe(&l2->breaker, now)) l2_probe(l2);
}

bool cw_l2_is_ready(const struct cw_l2 *l2)
{
    if (!cw_breaker_is_closed(&l2->breaker)) return false;
    if (l2->mode != CW_CONFIG_REDIS_CLUSTER) return l2->data.state == L2_CONN_READY;
    for (size_t i = 0; i < l2->node_count; i++) {
        if (l2->nodes[i].is_master && l2->nodes[i].conn.state != L2_CONN_READY) return false;
    }
    return l2->slots != NULL && l2->stats.slot_refreshes > 0;
}

void cw_l2_stats_get(const struct cw_l2 *l2, struct cw_l2_stats *out)
{
    *out = l2->stats;
    out->breaker_state = (int)l2->breaker.state;
    out->pending = l2->npending;
    out->conns_ready = (l2->data.state == L2_CONN_READY) + (l2->sub.state == L2_CONN_READY) +
                       (l2->sentinel.state == L2_CONN_READY);
    for (size_t i = 0; i < l2->node_count; i++) {
        out->conns_ready += l2->nodes[i].conn.state == L2_CONN_READY;
    }
}

/* ---- the breaker ---- */

void l2_breaker_record(struct cw_l2 *l2, bool ok, bool probe)
{
    int64_t now = l2_now_ms();
    bool changed = probe ? cw_breaker_record_probe(&l2->breaker, ok, now)
                         : cw_breaker_record(&l2->breaker, ok, now);

    if (!changed) return;
    if (l2->breaker.state == CW_BREAKER_CLOSED) {
        l2->breaker_closed_ms = now;
        cw_notice("l2: breaker closed: Redis answers, L2 in use again");
    } else if (!probe) {
        /* Open again soon after a probe closed it: Redis answers the PING but fails the
         * commands (an error on every script or write, say). The wait goes on doubling
         * rather than starting over, so a Redis in that state costs one round of failures
         * and two log lines per CW_L2_BACKOFF_MAX_MS, not per few requests. */
        if (l2->breaker_closed_ms > 0 && now - l2->breaker_closed_ms < 2 * CW_L2_BACKOFF_MAX_MS) {
            l2->breaker_wait_ms = l2->breaker_wait_ms * 2 < CW_L2_BACKOFF_MAX_MS
                                      ? l2->breaker_wait_ms * 2
                                      : CW_L2_BACKOFF_MAX_MS;
        } else {
            l2->breaker_wait_ms = CW_L2_BACKOFF_MIN_MS;
        }
        l2->breaker.wait_ms = l2->breaker_wait_ms;
        l2->breaker.retry_at_ms = now + l2->breaker_wait_ms;
        l2->stats.breaker_opens++;
        cw_warn("l2: breaker open after %u failures in a row: serving without L2, probing "
                "Redis in the background",
                l2->breaker.threshold);
    }
}

/* ---- commands ---- */

/* Into the pending list, which stays in deadline order: almost every command has the same
 * timeout, so it goes last; one with a shorter deadline (cw_l2_lease_take_until()) walks
 * back past the few later ones. */
static void l2_link(struct cw_l2 *l2, struct l2_op *op)
{
    struct l2_op *after = l2->tail;

    while (after != NULL && after->deadline_ms > op->deadline_ms)
        after = after->prev;
    op->prev = after;
    op->next = after != NULL ? after->next : l2->head;
    if (op->next != NULL) {
        op->next->prev = op;
    } else {
        l2->tail = op;
    }
    if (after != NULL) {
        after->next = op;
    } else {
        l2->head = op;
    }
    l2->npending++;
}

static void l2_unlink(struct cw_l2 *l2, struct l2_op *op)
{
    if (op->prev != NULL) {
        op->prev->next = op->next;
    } else {
        l2->head = op->next;
    }
    if (op->next != NULL) {
        op->next->prev = op->prev;
    } else {
        l2->tail = op->prev;
    }
    op->prev = op->next = NULL;
    l2->npending--;
}

void l2_op_release(struct l2_op *op)
{
    if (!op->done || op->inflight > 0) return;
    if (op->cmd != NULL) redisFreeCommand(op->cmd);
    free(op);
}

static bool l2_is_failure(int rc)
{
    return rc == -ETIMEDOUT || rc == -ENOTCONN || rc == -EIO;
}

void l2_complete(struct l2_op *op, int rc, struct cw_str value)
{
    struct cw_l2 *l2 = op->l2;

    if (op->done) return;
    op->done = true;
    l2_unlink(l2, op);
    if (l2_is_failure(rc) && rc != -ETIMEDOUT) l2->stats.errors++;
    if (op->kind == L2_OP_GET && rc == 0) l2->stats.hits++;
    if (op->kind == L2_OP_GET && rc == -ENOENT) l2->stats.misses++;
    switch (op->kind) {
    case L2_OP_PROBE:
        if (rc != -ECANCELED) l2_breaker_record(l2, rc == 0, true);
        break;
    case L2_OP_REFRESH:
        l2->refresh_inflight = false;
        if (rc != 0 && rc != -ECANCELED) {
            l2->refresh_at_ms = l2_now_ms() + l2->refresh_backoff_ms;
            if (l2->refresh_backoff_ms < CW_L2_BACKOFF_MAX_MS) l2->refresh_backoff_ms *= 2;
            l2->refresh_idx++;
        }
        break;
    default:
        if (rc != -ECANCELED) l2_breaker_record(l2, !l2_is_failure(rc), false);
        break;
    }
    if (op->fn != NULL) op->fn(op->arg, rc, value);
}

int l2_send(struct l2_op *op, struct l2_conn *conn, bool asking)
{
    if (!l2_conn_is_usable(conn)) return -ENOTCONN;
    if (asking && redisAsyncCommand(conn->ac, NULL, NULL, "ASKING") != REDIS_OK) return -ENOTCONN;
    if (redisAsyncFormattedCommand(conn->ac, l2_on_reply, op, op->cmd, op->cmd_len) != REDIS_OK) {
        return -ENOTCONN;
    }
    op->inflight++;
    op->conn = conn;
    return 0;
}

/* The connection a command for slot goes to, connecting it now if it is down and due. */
static struct l2_conn *l2_route(struct cw_l2 *l2, unsigned slot)
{
    struct l2_conn *c;

    if (l2->mode == CW_CONFIG_REDIS_CLUSTER) return l2_cluster_route(l2, slot);
    c = &l2->data;
    return l2_conn_is_usable(c) ? c : NULL;
}

static int l2_submit(struct cw_l2 *l2, enum l2_op_kind kind, unsigned slot, int argc,
                     const char **argv, const size_t *lens, cw_l2_done_fn fn, void *arg)
{
    return l2_submit_to(l2, kind, NULL, slot, argc, argv, lens, fn, arg);
}

int l2_submit_to(struct cw_l2 *l2, enum l2_op_kind kind, struct l2_conn *to, unsigned slot,
                 int argc, const char **argv, const size_t *lens, cw_l2_done_fn fn, void *arg)
{
    return l2_submit_until(l2, kind, to, slot, 0, argc, argv, lens, fn, arg);
}

int l2_submit_until(struct cw_l2 *l2, enum l2_op_kind kind, struct l2_conn *to, unsigned slot,
                    int64_t deadline_ms, int argc, const char **argv, const size_t *lens,
                    cw_l2_done_fn fn, void *arg)
{
    bool internal = kind == L2_OP_PROBE || kind == L2_OP_REFRESH;
    struct l2_conn *conn;
    struct l2_op *op;
    int len;

    if (l2->closing) return -ESHUTDOWN;
    if (!internal && !cw_breaker_is_closed(&l2->breaker)) {
        l2->stats.rejected++;
        return -EAGAIN;
    }
    if (l2->npending >= CW_LIMIT_L2_PENDING) {
        l2->stats.rejected++;
        cw_warn_rl("l2: %u commands in flight: %s refused", l2->npending, l2_op_names[kind]);
        return -ENOBUFS;
    }
    conn = to != NULL ? to : l2_route(l2, slot);
    if (conn == NULL || !l2_conn_is_usable(conn)) {
        l2->stats.rejected++;
        return -ENOTCONN;
    }
    if ((op = calloc(1, sizeof(*op))) == NULL) return -ENOMEM;
    len = redisFormatCommandArgv(&op->cmd, argc, argv, lens);
    if (len < 0) {
        free(op);
        return -ENOMEM;
    }
    op->cmd_len = (size_t)len;
    op->l2 = l2;
    op->kind = kind;
    op->fn = fn;
    op->arg = arg;
    op->slot = slot;
    op->deadline_ms = l2_now_ms() + l2->timeout_ms;
    if (kind == L2_OP_REFRESH) op->deadline_ms += l2->connect_timeout_ms;
    if (deadline_ms > 0 && deadline_ms < op->deadline_ms) op->deadline_ms = deadline_ms;
    if (l2_send(op, conn, false) < 0) {
        redisFreeCommand(op->cmd);
        free(op);
        l2->stats.rejected++;
        return -ENOTCONN;
    }
    l2_link(l2, op);
    if (!internal) l2->stats.commands++;
    return 0;
}

/* Builds <prefix>{<group>}<kind><name> into buf: the length, or -EINVAL. group is the
 * first L2_GROUP_CHARS bytes of key. */
static int l2_key(const struct cw_l2 *l2, struct cw_str key, const char *kind, struct cw_str name,
                  char *buf, size_t size)
{
    size_t g = key.len < L2_GROUP_CHARS ? key.len : L2_GROUP_CHARS;
    int n;

    if (key.len == 0 || memchr(key.p, '{', key.len) != NULL || memchr(key.p, '}', key.len)) {
        return -EINVAL;
    }
    if (name.len > CW_LIMIT_L2_KEY_BYTES) return -EINVAL;
    n = snprintf(buf, size, "%s{%.*s}%s%.*s", l2->prefix, (int)g, key.p, kind, (int)name.len,
                 name.p);
    if (n < 0 || (size_t)n >= size) return -EINVAL;
    return n;
}

int cw_l2_get(struct cw_l2 *l2, struct cw_str key, cw_l2_done_fn fn, void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES];
    int n = l2_key(l2, key, "", key, k, sizeof(k));

    if (n < 0) return n;
    /* With the bans of its group (workers/l2_purge.c): one round trip still. */
    return l2_get_submit(l2, k, (size_t)n, fn, arg);
}

int cw_l2_set(struct cw_l2 *l2, struct cw_str key, struct cw_str value, int64_t ttl_ms,
              const struct cw_str *tags, size_t ntags, cw_l2_done_fn fn, void *arg)
{
    /* EVAL script numkeys entry tags... value ttl member: 3 + 1 + ntags + 3 arguments. */
    char keys[1 + CW_LIMIT_TAGS][CW_LIMIT_L2_KEY_BYTES], nk[16], ttl[24];
    const char *argv[7 + CW_LIMIT_TAGS];
    size_t lens[7 + CW_LIMIT_TAGS];
    int n, argc = 0;

    if (ttl_ms < 1 || ntags > CW_LIMIT_TAGS) return -EINVAL;
    if (value.len > l2->max_value_bytes) return -EFBIG;
    n = l2_key(l2, key, "", key, keys[0], sizeof(keys[0]));
    if (n < 0) return n;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
    if (ntags == 0) {
        const char *a[5] = {"SET", keys[0], value.p, "PX", ttl};
        size_t l[5] = {3, (size_t)n, value.len, 2, strlen(ttl)};
        return l2_submit(l2, L2_OP_SET, cw_hashslot_of(keys[0], (size_t)n), 5, a, l, fn, arg);
    }
    argv[argc] = "EVAL";
    lens[argc++] = 4;
    argv[argc] = l2_set_script;
    lens[argc++] = sizeof(l2_set_script) - 1;
    snprintf(nk, sizeof(nk), "%zu", ntags + 1);
    argv[argc] = nk;
    lens[argc++] = strlen(nk);
    argv[argc] = keys[0];
    lens[argc++] = (size_t)n;
    for (size_t i = 0; i < ntags; i++) {
        int m = l2_key(l2, key, "t:", tags[i], keys[1 + i], sizeof(keys[1 + i]));
        if (m < 0) return m;
        argv[argc] = keys[1 + i];
        lens[argc++] = (size_t)m;
    }
    argv[argc] = value.p;
    lens[argc++] = value.len;
    argv[argc] = ttl;
    lens[argc++] = strlen(ttl);
    argv[argc] = key.p;
    lens[argc++] = key.len;
    return l2_submit(l2, L2_OP_SET, cw_hashslot_of(keys[0], (size_t)n), argc, argv, lens, fn, arg);
}

int cw_l2_del(struct cw_l2 *l2, struct cw_str key, cw_l2_done_fn fn, void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES];
    const char *argv[2] = {"DEL", k};
    size_t lens[2] = {3, 0};
    int n = l2_key(l2, key, "", key, k, sizeof(k));

    if (n < 0) return n;
    lens[1] = (size_t)n;
    return l2_submit(l2, L2_OP_DEL, cw_hashslot_of(k, lens[1]), 2, argv, lens, fn, arg);
}

int cw_l2_lease_take(struct cw_l2 *l2, struct cw_str key, struct cw_str token, int64_t ttl_ms,
                     cw_l2_done_fn fn, void *arg)
{
    return cw_l2_lease_take_until(l2, key, token, ttl_ms, 0, fn, arg);
}

int cw_l2_lease_take_until(struct cw_l2 *l2, struct cw_str key, struct cw_str token, int64_t ttl_ms,
                           int64_t deadline_ms, cw_l2_done_fn fn, void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES], ttl[24];
    const char *argv[6] = {"SET", k, token.p, "NX", "PX", ttl};
    size_t lens[6] = {3, 0, token.len, 2, 2, 0};
    int n = l2_key(l2, key, "l:", key, k, sizeof(k));

    if (n < 0) return n;
    if (ttl_ms < 1 || token.len == 0) return -EINVAL;
    if (deadline_ms > 0 && deadline_ms <= l2_now_ms()) return -ETIMEDOUT;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms);
    lens[1] = (size_t)n;
    lens[5] = strlen(ttl);
    return l2_submit_until(l2, L2_OP_LEASE_TAKE, NULL, cw_hashslot_of(k, lens[1]), deadline_ms, 6,
                           argv, lens, fn, arg);
}

int cw_l2_lease_release(struct cw_l2 *l2, struct cw_str key, struct cw_str token, cw_l2_done_fn fn,
                        void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES];
    const char *argv[5] = {"EVAL", l2_release_script, "1", k, token.p};
    size_t lens[5] = {4, sizeof(l2_release_script) - 1, 1, 0, token.len};
    int n = l2_key(l2, key, "l:", key, k, sizeof(k));

    if (n < 0) return n;
    if (token.len == 0) return -EINVAL;
    lens[3] = (size_t)n;
    return l2_submit(l2, L2_OP_LEASE_RELEASE, cw_hashslot_of(k, lens[3]), 5, argv, lens, fn, arg);
}

int cw_l2_publish(struct cw_l2 *l2, struct cw_str payload, cw_l2_done_fn fn, void *arg)
{
    const char *argv[3] = {"PUBLISH", l2->channel, payload.p};
    size_t lens[3] = {7, strlen(l2->channel), payload.len};

    /* A cluster forwards PUBLISH to every node: any slot's node will do. */
    return l2_submit(l2, L2_OP_PUBLISH, cw_hashslot_of(l2->channel, lens[1]), 3, argv, lens, fn,
                     arg);
}

int cw_l2_subscribe(struct cw_l2 *l2, cw_l2_msg_fn fn, void *arg)
{
    if (l2->closing) return -ESHUTDOWN;
    if (l2->msg_fn != NULL) return -EEXIST;
    l2->msg_fn = fn;
    l2->msg_arg = arg;
    l2->sub.wanted = true;
    if (l2->mode == CW_CONFIG_REDIS_STANDALONE) {
        l2_conn_set_addr(&l2->sub, l2->data.host, l2->data.port, l2->data.is_unix);
    }
    /* Sentinel and cluster modes give it an address when they know one (their ticks). */
    if (l2->sub.has_addr) (void)l2_conn_connect(&l2->sub); /* failures retry */
    return 0;
}

int cw_l2_publish_fill(struct cw_l2 *l2, struct cw_str key, cw_l2_done_fn fn, void *arg)
{
    const char *argv[3] = {"PUBLISH", l2->fill_channel, key.p};
    size_t lens[3] = {7, strlen(l2->fill_channel), key.len};

    if (key.len == 0 || key.len > CW_LIMIT_L2_KEY_BYTES) return -EINVAL;
    return l2_submit(l2, L2_OP_PUBLISH, cw_hashslot_of(l2->fill_channel, lens[1]), 3, argv, lens,
                     fn, arg);
}

int cw_l2_subscribe_fill(struct cw_l2 *l2, cw_l2_msg_fn fn, void *arg)
{
    if (l2->closing) return -ESHUTDOWN;
    if (l2->fill_fn != NULL) return -EEXIST;
    if (l2->sub.ac != NULL) return -EBUSY; /* its SUBSCRIBE went without the fill channel */
    l2->fill_fn = fn;
    l2->fill_arg = arg;
    l2->sub.wanted = true;
    if (l2->mode == CW_CONFIG_REDIS_STANDALONE) {
        l2_conn_set_addr(&l2->sub, l2->data.host, l2->data.port, l2->data.is_unix);
    }
    /* Connected by the next cw_l2_process() (l2_conn_tick()), or at once by a
     * cw_l2_subscribe() made meanwhile: one handshake subscribes to both channels. */
    return 0;
}

bool cw_l2_fill_is_subscribed(const struct cw_l2 *l2)
{
    return l2->fill_fn != NULL && l2->sub.state == L2_CONN_READY;
}

/* The breaker's probe: on the connection commands would use, a script that reads a key
 * (standalone, Sentinel), so that a Redis that answers PING but refuses the commands (a
 * script error, renamed or disabled commands, OOM) keeps the breaker open; a PING in a
 * cluster, where it goes to any master that is up. */
static void l2_probe(struct cw_l2 *l2)
{
    static const char script[] = "return redis.call('EXISTS',KEYS[1])";
    char k[CW_LIMIT_L2_KEY_BYTES];
    const char *argv[4] = {"EVAL", script, "1", k};
    size_t lens[4] = {4, sizeof(script) - 1, 1, 0};
    int argc = 4, n;
    unsigned slot = 0;

    n = snprintf(k, sizeof(k), "%s{probe}", l2->prefix);
    lens[3] = n > 0 && (size_t)n < sizeof(k) ? (size_t)n : 0;
    if (l2->mode == CW_CONFIG_REDIS_CLUSTER || lens[3] == 0) {
        argv[0] = "PING";
        lens[0] = 4;
        argc = 1;
    }

    if (l2->mode == CW_CONFIG_REDIS_CLUSTER) {
        for (size_t i = 0; l2->slots != NULL && i < CW_HASHSLOT_COUNT; i++) {
            if (l2->slots[i] >= 0 && l2_conn_is_usable(&l2->nodes[l2->slots[i]].conn)) {
                slot = (unsigned)i;
                break;
            }
        }
    }
    if (l2_submit(l2, L2_OP_PROBE, slot, argc, argv, lens, NULL, NULL) < 0) {
        l2_breaker_record(l2, false, true);
    }
}

/* ---- replies ---- */

static int l2_reply_result(struct l2_op *op, const redisReply *r, struct cw_str *value)
{
    switch (op->kind) {
    case L2_OP_GET:
        return l2_get_result(op, r, value);
    case L2_OP_LOG:
        if (r->type == REDIS_REPLY_STRING) *value = cw_str_make(r->str, r->len);
        return 0;
    case L2_OP_BAN: /* how many bans the count limit pushed out */
        return r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? -ENOSPC : 0;
    case L2_OP_LEASE_TAKE:
        if (r->type == REDIS_REPLY_NIL) return -EEXIST;
        return r->type == REDIS_REPLY_STATUS ? 0 : -EIO;
    case L2_OP_LEASE_RELEASE:
        if (r->type != REDIS_REPLY_INTEGER) return -EIO;
        return r->integer == 1 ? 0 : -ENOENT;
    default:
        return 0;
    }
}

static void l2_on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct l2_op *op = privdata;
    struct cw_l2 *l2 = op->l2;
    const redisReply *r = reply;
    struct cw_str value = cw_str_make(NULL, 0);
    int rc;

    (void)ac;
    op->inflight--;
    if (r != NULL && op->conn != NULL) op->conn->stall_since_ms = 0;
    if (op->done) {
        l2_op_release(op);
        return;
    }
    if (r == NULL) {
        l2_complete(op, -ENOTCONN, value);
    } else if (r->type == REDIS_REPLY_ERROR) {
        if (l2->mode == CW_CONFIG_REDIS_CLUSTER && l2_cluster_redirect(op, r)) {
            l2_op_release(op);
            return;
        }
        if (l2->mode == CW_CONFIG_REDIS_SENTINEL && strncmp(r->str, "READONLY", 8) == 0) {
            l2_sentinel_reask(l2);
        }
        cw_warn_rl("l2: %s: Redis answered: %s", l2_op_names[op->kind], r->str);
        l2_complete(op, -EIO, value);
    } else if (op->kind == L2_OP_REFRESH) {
        l2_cluster_slots_reply(op, r);
    } else {
        rc = l2_reply_result(op, r, &value);
        if (rc == -EFBIG) {
            cw_warn_rl("l2: GET: value of %zu bytes over the %zu-byte limit: a miss", value.len,
                       l2->max_value_bytes);
        }
        l2_complete(op, rc, value);
    }
    l2_op_release(op);
}
