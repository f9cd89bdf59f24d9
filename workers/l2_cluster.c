/* workers/l2_cluster.c - Cluster mode: the slot map (CLUSTER SLOTS, asked of the seeds
 * and then of any node), routing by hash slot to one connection per master, MOVED (the map
 * entry is fixed at once and the whole map reloaded), ASK (ASKING, then the command, map
 * unchanged) and TRYAGAIN (the command again a few milliseconds later, within its
 * deadline); see workers/l2.h. Nodes live in a fixed array of CW_LIMIT_L2_NODES so that
 * pointers to their connections stay valid. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "workers/l2_int.h"

#define L2_REFRESH_GAP_MS 100 /* slot map loads at most this often */
/* A TRYAGAIN is resent after this long. It comes while a slot's keys move one MIGRATE batch
 * at a time (redis-cli --cluster reshard: 10 keys a batch by default), which on the test box
 * took a few milliseconds per slot. */
#define L2_TRYAGAIN_MS 5

/* The index of node host:port, added when new: or -1 when the table is full (logged). */
static int l2_cluster_node(struct cw_l2 *l2, const char *host, int port)
{
    struct l2_cluster_node *n;

    for (size_t i = 0; i < l2->node_count; i++) {
        n = &l2->nodes[i];
        if (n->conn.port == port && strcmp(n->conn.host, host) == 0) return (int)i;
    }
    if (l2->node_count >= CW_LIMIT_L2_NODES) {
        cw_warn_rl("l2: cluster: more than %d nodes; %s:%d not used", CW_LIMIT_L2_NODES, host,
                   port);
        return -1;
    }
    n = &l2->nodes[l2->node_count];
    l2_conn_init(&n->conn, l2, L2_CONN_DATA);
    l2_conn_set_addr(&n->conn, host, port, false);
    return (int)l2->node_count++;
}

int l2_cluster_open(struct cw_l2 *l2, const struct cw_config *cfg)
{
    char host[L2_HOST_SIZE];
    int port;

    l2->nodes = calloc(CW_LIMIT_L2_NODES, sizeof(*l2->nodes));
    l2->slots = malloc(CW_HASHSLOT_COUNT * sizeof(*l2->slots));
    if (l2->nodes == NULL || l2->slots == NULL) return -ENOMEM;
    for (size_t i = 0; i < CW_HASHSLOT_COUNT; i++) {
        l2->slots[i] = -1;
    }
    for (size_t i = 0; i < cfg->redis_node_count; i++) {
        if (cw_config_split_hostport(cfg->redis_nodes[i], host, sizeof(host), &port) < 0) {
            cw_err("l2: redis.nodes: \"%s\" is not host:port", cfg->redis_nodes[i]);
            return -EINVAL;
        }
        if (l2_cluster_node(l2, host, port) < 0) return -EINVAL;
    }
    l2->seed_count = l2->node_count;
    l2->refresh_backoff_ms = CW_L2_BACKOFF_MIN_MS;
    l2->refresh_at_ms = 0; /* now: the first tick asks for the map */
    l2_cluster_tick(l2, l2_now_ms());
    return 0;
}

void l2_cluster_free(struct cw_l2 *l2)
{
    /* Parked ops were completed by cw_l2_close(): only their hold is left. */
    while (l2->retry_head != NULL) {
        struct l2_op *op = l2->retry_head;
        l2->retry_head = op->retry_next;
        op->inflight--;
        l2_op_release(op);
    }
    l2->retry_tail = NULL;
    free(l2->nodes);
    free(l2->slots);
    l2->nodes = NULL;
    l2->slots = NULL;
    l2->node_count = 0;
}

struct l2_conn *l2_cluster_route(struct cw_l2 *l2, unsigned slot)
{
    int idx = l2->slots != NULL ? l2->slots[slot % CW_HASHSLOT_COUNT] : -1;
    struct l2_conn *c;

    if (idx < 0) {
        /* Unmapped slot (no map yet, or a hole): any live node answers MOVED. */
        for (size_t i = 0; i < l2->node_count; i++) {
            if (l2_conn_is_usable(&l2->nodes[i].conn)) return &l2->nodes[i].conn;
        }
        return NULL;
    }
    c = &l2->nodes[idx].conn;
    if (c->ac == NULL && l2_now_ms() >= c->retry_at_ms) (void)l2_conn_connect(c);
    return l2_conn_is_usable(c) ? c : NULL;
}

void l2_cluster_want_refresh(struct cw_l2 *l2)
{
    int64_t at = l2->refresh_last_ms + L2_REFRESH_GAP_MS;

    if (l2->mode != CW_CONFIG_REDIS_CLUSTER) return;
    if (at < l2->refresh_at_ms) l2->refresh_at_ms = at;
}

/* TRYAGAIN: a multi-key command (an entry and its tag sets) met its slot half moved, some
 * keys on each side. op is parked, held by one inflight count, and sent again to the slot's
 * node L2_TRYAGAIN_MS later (l2_cluster_retry_due()), as long as that is before its deadline:
 * false when it is not (op then fails with the error, as before). */
static bool l2_cluster_park(struct l2_op *op)
{
    struct cw_l2 *l2 = op->l2;
    int64_t at = l2_now_ms() + L2_TRYAGAIN_MS;

    if (at >= op->deadline_ms) return false;
    op->retry_at_ms = at;
    op->retry_next = NULL;
    op->conn = NULL; /* on no connection: its deadline must not mark one as stalled */
    op->inflight++;
    if (l2->retry_tail != NULL) {
        l2->retry_tail->retry_next = op;
    } else {
        l2->retry_head = op;
    }
    l2->retry_tail = op; /* one delay for all: the list stays in retry_at_ms order */
    return true;
}

/* Sends the parked ops that are due again, by the slot map as it is now; an op that timed
 * out meanwhile is only released. */
static void l2_cluster_retry_due(struct cw_l2 *l2, int64_t now_ms)
{
    while (l2->retry_head != NULL && l2->retry_head->retry_at_ms <= now_ms) {
        struct l2_op *op = l2->retry_head;
        struct l2_conn *c;

        l2->retry_head = op->retry_next;
        if (l2->retry_head == NULL) l2->retry_tail = NULL;
        op->inflight--;
        if (!op->done) {
            c = l2_cluster_route(l2, op->slot);
            if (c == NULL || l2_send(op, c, false) < 0) {
                l2_complete(op, -ENOTCONN, cw_str_make(NULL, 0));
            }
        }
        l2_op_release(op);
    }
}

bool l2_cluster_redirect(struct l2_op *op, const redisReply *r)
{
    struct cw_l2 *l2 = op->l2;
    struct cw_hashslot_redirect rd;
    struct l2_conn *c;
    int idx;

    switch (cw_hashslot_error_kind(r->str, r->len)) {
    case CW_HASHSLOT_ERROR_TRYAGAIN:
        return l2_cluster_park(op);
    case CW_HASHSLOT_ERROR_CLUSTERDOWN:
        l2_cluster_want_refresh(l2);
        return false;
    case CW_HASHSLOT_ERROR_OTHER:
        return false;
    case CW_HASHSLOT_ERROR_MOVED:
    case CW_HASHSLOT_ERROR_ASK:
        break;
    }
    if (cw_hashslot_parse_redirect(r->str, r->len, &rd) < 0) return false;
    l2->stats.redirects++;
    if (++op->redirects > CW_LIMIT_L2_REDIRECTS) {
        cw_warn_rl("l2: cluster: more than %d redirects for slot %u: %s", CW_LIMIT_L2_REDIRECTS,
                   rd.slot, r->str);
        l2_complete(op, -EIO, cw_str_make(NULL, 0));
        return true;
    }
    idx = l2_cluster_node(l2, rd.host, rd.port);
    if (idx < 0) {
        l2_complete(op, -EIO, cw_str_make(NULL, 0));
        return true;
    }
    if (!rd.is_ask) {
        l2->slots[rd.slot] = (int16_t)idx;
        l2_cluster_want_refresh(l2);
    }
    c = &l2->nodes[idx].conn;
    if (c->ac == NULL) (void)l2_conn_connect(c); /* commands queue behind the handshake */
    if (l2_send(op, c, rd.is_ask) < 0) l2_complete(op, -ENOTCONN, cw_str_make(NULL, 0));
    return true;
}

void l2_cluster_tick(struct cw_l2 *l2, int64_t now_ms)
{
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    struct l2_conn *c = NULL;

    l2_cluster_retry_due(l2, now_ms);
    if (l2->sub.wanted && l2->sub.ac == NULL && now_ms >= l2->sub.retry_at_ms &&
        l2->node_count > 0) {
        /* Pub/sub is cluster-wide: any node serves; each attempt tries the next. */
        struct l2_conn *n = &l2->nodes[l2->sub_idx++ % l2->node_count].conn;
        int64_t backoff = l2->sub.backoff_ms, retry = l2->sub.retry_at_ms;
        l2_conn_set_addr(&l2->sub, n->host, n->port, false);
        l2->sub.backoff_ms = backoff;
        l2->sub.retry_at_ms = retry;
    }
    if (l2->refresh_inflight || now_ms < l2->refresh_at_ms || l2->node_count == 0) return;
    for (size_t i = 0; i < l2->node_count && c == NULL; i++) {
        struct l2_conn *n = &l2->nodes[(l2->refresh_idx + i) % l2->node_count].conn;
        if (n->state == L2_CONN_READY && !n->dying) c = n;
    }
    if (c == NULL) {
        c = &l2->nodes[l2->refresh_idx % l2->node_count].conn;
        if (c->ac == NULL) (void)l2_conn_connect(c);
    }
    l2->refresh_last_ms = now_ms;
    l2->refresh_at_ms = INT64_MAX;
    l2->refresh_inflight = true;
    if (l2_submit_to(l2, L2_OP_REFRESH, c, 0, 2, argv, lens, NULL, NULL) < 0) {
        l2->refresh_inflight = false;
        l2->refresh_at_ms = now_ms + l2->refresh_backoff_ms;
        if (l2->refresh_backoff_ms < CW_L2_BACKOFF_MAX_MS) l2->refresh_backoff_ms *= 2;
        l2->refresh_idx++;
    }
}

int64_t l2_cluster_next_ms(const struct cw_l2 *l2)
{
    int64_t next = INT64_MAX;

    if (l2->mode != CW_CONFIG_REDIS_CLUSTER) return next;
    if (!l2->refresh_inflight) next = l2->refresh_at_ms;
    if (l2->retry_head != NULL && l2->retry_head->retry_at_ms < next) {
        next = l2->retry_head->retry_at_ms;
    }
    return next;
}

/* One CLUSTER SLOTS range: [start, end, [host, port, id?], replicas...] into map. */
static int l2_cluster_range(struct cw_l2 *l2, const redisReply *e, const struct l2_conn *from,
                            int16_t *map)
{
    const redisReply *m;
    const char *host;
    int idx;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) return -EBADMSG;
    m = e->element[2];
    if (e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
        m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_INTEGER) {
        return -EBADMSG;
    }
    if (e->element[0]->integer < 0 || e->element[1]->integer >= CW_HASHSLOT_COUNT ||
        e->element[0]->integer > e->element[1]->integer || m->element[1]->integer <= 0 ||
        m->element[1]->integer > 65535 || m->element[0]->len >= L2_HOST_SIZE) {
        return -EBADMSG;
    }
    /* An empty host means "the node you asked" (a node that does not know its address). */
    host = m->element[0]->len > 0 ? m->element[0]->str : from->host;
    idx = l2_cluster_node(l2, host, (int)m->element[1]->integer);
    if (idx < 0) return -ENOSPC;
    l2->nodes[idx].is_master = true;
    for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++) {
        map[s] = (int16_t)idx;
    }
    return 0;
}

void l2_cluster_slots_reply(struct l2_op *op, const redisReply *r)
{
    struct cw_l2 *l2 = op->l2;
    int16_t *map = malloc(CW_HASHSLOT_COUNT * sizeof(*map));
    size_t covered = 0, masters = 0;
    int rc = 0;

    if (map == NULL) {
        l2_complete(op, -ENOMEM, cw_str_make(NULL, 0));
        return;
    }
    for (size_t i = 0; i < CW_HASHSLOT_COUNT; i++) {
        map[i] = -1;
    }
    if (r->type != REDIS_REPLY_ARRAY) rc = -EBADMSG;
    for (size_t i = 0; i < l2->node_count && rc == 0; i++) {
        l2->nodes[i].is_master = false;
    }
    for (size_t i = 0; rc == 0 && i < r->elements; i++) {
        rc = l2_cluster_range(l2, r->element[i], op->conn, map);
    }
    if (rc < 0) {
        cw_warn_rl("l2: cluster: unusable CLUSTER SLOTS reply: %s", strerror(-rc));
        free(map);
        l2_complete(op, -EIO, cw_str_make(NULL, 0));
        return;
    }
    memcpy(l2->slots, map, CW_HASHSLOT_COUNT * sizeof(*map));
    free(map);
    for (size_t i = 0; i < CW_HASHSLOT_COUNT; i++) {
        covered += l2->slots[i] >= 0;
    }
    for (size_t i = 0; i < l2->node_count; i++) {
        struct l2_conn *c = &l2->nodes[i].conn;
        c->wanted = l2->nodes[i].is_master;
        masters += l2->nodes[i].is_master;
        if (c->wanted && c->ac == NULL) (void)l2_conn_connect(c); /* failures retry */
    }
    if (l2->stats.slot_refreshes++ == 0 || covered < CW_HASHSLOT_COUNT) {
        cw_info("l2: cluster map: %zu masters, %zu of %d slots served", masters, covered,
                CW_HASHSLOT_COUNT);
    }
    l2->refresh_backoff_ms = CW_L2_BACKOFF_MIN_MS;
    l2_complete(op, 0, cw_str_make(NULL, 0));
}
