/* workers/l2_sentinel.c - Sentinel mode: the master named redis.master is asked of one of
 * redis.sentinels (SENTINEL get-master-addr-by-name), and followed on failover, two ways:
 * the sentinel's +switch-master message on the same connection, and a fresh question
 * whenever the master connection fails or answers READONLY (a demoted master). Sentinels
 * are tried in turn, one connection at a time; see workers/l2.h. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "workers/l2_int.h"

#define L2_REASK_GAP_MS 200 /* questions to the sentinels at most this often */

static void l2_sentinel_on_addr(redisAsyncContext *ac, void *reply, void *privdata);
static void l2_sentinel_on_switch(redisAsyncContext *ac, void *reply, void *privdata);

/* Points the sentinel connection at sentinels[idx], keeping its backoff. */
static void l2_sentinel_use(struct cw_l2 *l2, size_t idx)
{
    struct l2_conn *c = &l2->sentinel;
    char host[L2_HOST_SIZE];
    int64_t backoff = c->backoff_ms, retry = c->retry_at_ms;
    int port;

    l2->sentinel_idx = idx % l2->sentinel_count;
    if (cw_config_split_hostport(l2->sentinels[l2->sentinel_idx], host, sizeof(host), &port) < 0) {
        return; /* checked by the config */
    }
    l2_conn_set_addr(c, host, port, false);
    c->backoff_ms = backoff;
    c->retry_at_ms = retry;
}

void l2_sentinel_start(struct cw_l2 *l2)
{
    l2_sentinel_use(l2, 0);
    l2->sentinel.wanted = true;
    (void)l2_conn_connect(&l2->sentinel); /* failures are logged and retried */
}

void l2_sentinel_handshake(struct l2_conn *c)
{
    struct cw_l2 *l2 = c->l2;
    const char *ask[3] = {"SENTINEL", "get-master-addr-by-name", l2->master};
    const char *sub[2] = {"SUBSCRIBE", "+switch-master"};

    if (redisAsyncCommandArgv(c->ac, l2_sentinel_on_addr, c, 3, ask, NULL) != REDIS_OK ||
        redisAsyncCommandArgv(c->ac, l2_sentinel_on_switch, c, 2, sub, NULL) != REDIS_OK) {
        l2_conn_drop(c, "could not queue the question");
    }
}

/* The master is at host:port: point the command and subscribe connections there. */
static void l2_sentinel_set_master(struct cw_l2 *l2, const char *host, int port)
{
    struct l2_conn *d = &l2->data;

    if (d->has_addr && d->port == port && strcmp(d->host, host) == 0) return;
    if (d->has_addr) {
        char old[L2_HOST_SIZE + 16];
        l2->stats.master_switches++;
        cw_notice("l2: master %s moved from %s to %s:%d", l2->master,
                  l2_conn_name(d, old, sizeof(old)), host, port);
    } else {
        cw_notice("l2: master %s is at %s:%d", l2->master, host, port);
    }
    l2_conn_set_addr(d, host, port, false);
    d->wanted = true;
    (void)l2_conn_connect(d); /* failures are logged and retried */
    if (l2->sub.wanted) {
        l2_conn_set_addr(&l2->sub, host, port, false);
        (void)l2_conn_connect(&l2->sub);
    }
}

void l2_sentinel_reask(struct cw_l2 *l2)
{
    l2->sentinel_reask = true;
}

void l2_sentinel_tick(struct cw_l2 *l2, int64_t now_ms)
{
    struct l2_conn *c = &l2->sentinel;

    if (l2->sentinel_reask && now_ms >= l2->reask_not_before_ms) {
        l2->sentinel_reask = false;
        l2->reask_not_before_ms = now_ms + L2_REASK_GAP_MS;
        if (c->ac != NULL && !c->dying) {
            c->logged_down = true; /* a planned reconnect, not an outage */
            l2_conn_drop(c, "asking again for the master");
            c->logged_down = false;
            c->quiet = true; /* nor is its connect: while a master is down, one per 200 ms */
            c->retry_at_ms = now_ms;
        }
    }
    /* Each new connection goes to the next sentinel: a dead one costs one connect. */
    if (c->ac == NULL && now_ms >= c->retry_at_ms && l2->sentinel_count > 1) {
        l2_sentinel_use(l2, l2->sentinel_idx + 1);
    }
}

static void l2_sentinel_on_addr(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct l2_conn *c = privdata;
    struct cw_l2 *l2 = c->l2;
    const redisReply *r = reply;
    char host[L2_HOST_SIZE], name[L2_HOST_SIZE + 16];
    long port;

    if (r == NULL || ac != c->ac || c->dying) return;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[0]->len < sizeof(host)) {
        memcpy(host, r->element[0]->str, r->element[0]->len + 1);
        port = strtol(r->element[1]->str, NULL, 10);
        if (port > 0 && port <= 65535) {
            l2_conn_ready(c);
            l2_sentinel_set_master(l2, host, (int)port);
            return;
        }
    }
    cw_warn_rl("l2: sentinel %s has no address for master %s%s%s",
               l2_conn_name(c, name, sizeof(name)), l2->master,
               r->type == REDIS_REPLY_ERROR ? ": " : "",
               r->type == REDIS_REPLY_ERROR ? r->str : "");
    l2_conn_drop(c, "no master address");
}

/* "+switch-master" messages: "<name> <old-ip> <old-port> <new-ip> <new-port>". */
static void l2_sentinel_on_switch(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct l2_conn *c = privdata;
    struct cw_l2 *l2 = c->l2;
    const redisReply *r = reply, *m;
    char name[128], oh[L2_HOST_SIZE], nh[L2_HOST_SIZE];
    int op, np;

    if (r == NULL || ac != c->ac || c->dying) return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
    m = r->element[2];
    if (r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0 ||
        m->type != REDIS_REPLY_STRING) {
        return;
    }
    static_assert(L2_HOST_SIZE == 256, "the sscanf widths below");
    if (sscanf(m->str, "%127s %255s %d %255s %d", name, oh, &op, nh, &np) != 5 || np <= 0 ||
        np > 65535) {
        cw_warn_rl("l2: sentinel: malformed +switch-master message");
        return;
    }
    if (strcmp(name, l2->master) != 0) return;
    l2_sentinel_set_master(l2, nh, np);
}
