/* workers/req_l2.c - a worker's L2 (Redis): its client, driven on the fetch thread, the
 * lookup a miss makes inside its FETCH lease, and the write of what a commit stored.
 *
 * The worker's struct cw_l2 is opened by a task on the fetch thread (workers/upstream.c),
 * which from then on polls its sockets beside libcurl's (cw_upstream_set_poller()): every
 * command and completion runs there, never on the MHD thread. After the loop stopped, the
 * main thread closes it. The L2 key of an entry is a SipHash of its full key string (the
 * primary key and Vary values) under a fixed secret: L1 hashes under a secret of its own
 * cache file, which other nodes do not share. A crafted collision costs only an L2 slot:
 * the commit compares the full key string, so another key's entry is refused, never
 * served. Counters go to the worker's shm slot: the lookups' outcomes here, the
 * client's errors and timeouts from cw_l2_stats after each turn of the loop. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/entry.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "workers/chan.h"
#include "workers/clock.h"
#include "workers/fleet.h"
#include "workers/l2.h"
#include "workers/req_int.h"

/* The fleet-wide secret of L2 key hashes (see above): "cachewarp-l2-v1" and a NUL. */
static const uint8_t l2_key_secret[16] = "cachewarp-l2-v1";

/* The L2 name of the entry whose full key is q's: 32 hex digits and a NUL. */
static void l2_key_hex(const struct cw_fill_req *q, char out[33])
{
    struct cw_key k;

    cw_key_hash(l2_key_secret, q->key_buf, q->key_len, &k);
    cw_key_hex(&k, out);
}

static size_t l2_poll_fds(void *cls, struct pollfd *fds, size_t max)
{
    struct cw_worker *w = cls;

    return cw_l2_pollfds(w->l2, fds, max);
}

static int l2_poll_timeout(void *cls)
{
    struct cw_worker *w = cls;

    return cw_l2_timeout_ms(w->l2);
}

/* Copies what the client counted since the last turn into the worker's counters, keeps the
 * breaker gauges, and logs a change between usable and not once. */
static void l2_sync(struct cw_worker *w)
{
    struct cw_l2_stats st;
    struct cw_l2_stats *seen = &w->l2_seen;
    bool ready = cw_l2_is_ready(w->l2);

    cw_l2_stats_get(w->l2, &st);
    cw_seg_add(w->seg, w->slot, CW_METRICS_L2_ERROR, st.errors - seen->errors);
    cw_seg_add(w->seg, w->slot, CW_METRICS_L2_TIMEOUT, st.timeouts - seen->timeouts);
    if (st.breaker_state != seen->breaker_state) {
        cw_seg_set(w->seg, w->slot, CW_METRICS_L2_BREAKER_OPEN, st.breaker_state == 1);
        cw_seg_set(w->seg, w->slot, CW_METRICS_L2_BREAKER_PROBING, st.breaker_state == 2);
    }
    *seen = st;
    if (ready == w->l2_ready) return;
    /* Not ready at start is no news until a connect failed. */
    if (ready || w->l2_was_ready || st.connect_failures > 0 || st.auth_failures > 0) {
        if (ready)
            cw_notice("worker %d: L2 (Redis) in use", w->index);
        else
            cw_warn("worker %d: L2 (Redis) unavailable; serving from L1 and the origin until it "
                    "answers",
                    w->index);
        w->l2_ready = ready;
        w->l2_was_ready = w->l2_was_ready || ready;
    }
}

static void l2_poll_process(void *cls, const struct pollfd *fds, size_t n)
{
    struct cw_worker *w = cls;

    cw_l2_process(w->l2, fds, n);
    l2_sync(w);
}

static const struct cw_upstream_poller l2_poller = {
    .fds = l2_poll_fds,
    .timeout_ms = l2_poll_timeout,
    .process = l2_poll_process,
};

/* On the fetch thread, first of its tasks: the client, and its sockets into the loop. */
static void l2_open_task(struct cw_upstream_task *t, bool cancelled)
{
    struct cw_worker *w = (struct cw_worker *)((char *)t - offsetof(struct cw_worker, l2_task));
    int rc;

    if (cancelled) return;
    rc = cw_l2_open(w->cfg, &w->l2);
    if (rc < 0) {
        cw_warn("worker %d: L2 (Redis) not opened: %s; running L1-only", w->index, strerror(-rc));
        w->l2 = NULL;
        return;
    }
    w->l2_ready = false;
    cw_seg_set(w->seg, w->slot, CW_METRICS_L2_BREAKER_OPEN, 0);
    cw_seg_set(w->seg, w->slot, CW_METRICS_L2_BREAKER_PROBING, 0);
    cw_upstream_set_poller(w->fetch, &l2_poller, w);
}

int req_l2_start(struct cw_worker *w)
{
    if (!w->cfg->redis_enabled) return 0;
    w->l2_task.run = l2_open_task;
    return cw_upstream_defer(w->fetch, &w->l2_task);
}

void req_l2_stop(struct cw_worker *w)
{
    /* The loop has stopped: its commands complete here with -ECANCELED (a waiting lookup's
     * request then fails its fetch submit and answers 503, as the other fetches). */
    cw_l2_close(w->l2);
    w->l2 = NULL;
}

int req_l2_lookup(struct worker_req *r, cw_l2_done_fn fn)
{
    struct cw_worker *w = r->w;
    char hex[33];
    int rc;

    if (w->l2 == NULL) return -ENODEV;
    if (!cw_l2_is_ready(w->l2)) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_SKIPPED, 1);
        return -ENOTCONN;
    }
    l2_key_hex(&r->q, hex);
    rc = cw_l2_get(w->l2, cw_str_make(hex, 32), fn, r);
    if (rc < 0) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_SKIPPED, 1);
    return rc;
}

int req_l2_accept(struct worker_req *r, int rc, struct cw_str value)
{
    struct cw_worker *w = r->w;
    struct cw_entry_view v;

    if (rc == -ENOENT) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_MISS, 1);
    if (rc < 0) return rc; /* errors and timeouts: counted from the client's stats */
    /* Bytes from Redis: decoded (and checked field by field) before anything reads them. */
    rc = cw_entry_decode(value.p, value.len, &v);
    if (rc == 0 && v.body.len > (uint64_t)w->cfg->cache_max_object_bytes) rc = -EFBIG;
    if (rc == 0) rc = cw_fill_commit_encoded(&w->fill, &r->q, value.p, value.len);
    if (rc == 0) return 0;
    if (rc == -EBADMSG || rc == -ENOENT || rc == -EFBIG) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_BAD, 1);
        cw_warn_rl("worker %d: L2 value for %s refused: %s", w->index, r->uri,
                   rc == -EBADMSG  ? "does not decode"
                   : rc == -ENOENT ? "another key's entry"
                                   : "larger than cache.max_object");
    } else {
        cw_warn_rl("worker %d: L2 entry for %s not stored in L1: %s", w->index, r->uri,
                   strerror(-rc));
    }
    return rc;
}

static void l2_on_set(void *arg, int rc, struct cw_str value)
{
    struct cw_worker *w = arg;

    (void)value;
    cw_seg_add(w->seg, w->slot, rc == 0 ? CW_METRICS_L2_WRITE : CW_METRICS_L2_WRITE_FAIL, 1);
}

/* The Surrogate-Key tags of v, as core/entry keeps them: at most CW_LIMIT_TAGS. */
static size_t l2_tags(const struct cw_entry_view *v, struct cw_str *tags)
{
    struct cw_str name, value;
    size_t n = 0, off = 0;

    while (n < CW_LIMIT_TAGS && cw_entry_header_next(v, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT("Surrogate-Key"))) continue;
        for (size_t i = 0; i < value.len && n < CW_LIMIT_TAGS;) {
            size_t start;
            while (i < value.len && (value.p[i] == ' ' || value.p[i] == '\t'))
                i++;
            start = i;
            while (i < value.len && value.p[i] != ' ' && value.p[i] != '\t')
                i++;
            if (i > start && i - start <= CW_LIMIT_TAG_BYTES)
                tags[n++] = cw_str_make(value.p + start, i - start);
        }
    }
    return n;
}

/* cw_fill_stored_fn of the fetch thread's fill: the bytes just put go to L2 as they are, for
 * the entry's whole useful life (fresh, then the stale windows), with its tags. Fire and
 * forget: the client's answer never waits for it. */
static void l2_on_stored(void *cls, const struct cw_fill_req *q, const void *p, size_t len)
{
    struct cw_worker *w = cls;
    struct cw_str tags[CW_LIMIT_TAGS];
    struct cw_entry_view v;
    int64_t end_ms, ttl_ms;
    char hex[33];
    int rc;

    if (w->l2 == NULL || !cw_l2_is_ready(w->l2)) {
        if (w->l2 != NULL) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_WRITE_FAIL, 1);
        return;
    }
    if (cw_entry_decode(p, len, &v) < 0) return; /* cannot be: fill put these bytes */
    end_ms = v.h.fresh_until_ms;
    if (v.h.swr_until_ms > end_ms) end_ms = v.h.swr_until_ms;
    if (v.h.sie_until_ms > end_ms) end_ms = v.h.sie_until_ms;
    ttl_ms = end_ms - cw_clock_wall_ms();
    if (ttl_ms < 1) return;
    l2_key_hex(q, hex);
    rc = cw_l2_set(w->l2, cw_str_make(hex, 32), cw_str_make((const char *)p, len), ttl_ms, tags,
                   l2_tags(&v, tags), l2_on_set, w);
    if (rc < 0) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_WRITE_FAIL, 1);
}

void req_l2_fill_hook(struct cw_worker *w, struct cw_fill *f)
{
    if (!w->cfg->redis_enabled) return;
    f->stored = l2_on_stored;
    f->stored_cls = w;
}

static void l2_on_del(void *arg, int rc, struct cw_str value)
{
    (void)arg;
    (void)value;
    if (rc < 0 && rc != -ECANCELED) cw_warn_rl("worker: purge: L2 purge: %s", strerror(-rc));
}

/* The URL goes out as cwctl takes it ("http://host/target"); the other nodes key it with
 * their routes, as this node did. A tag list goes out as one message per tag. */
void req_l2_purged(struct worker_req *r)
{
    struct cw_worker *w = r->w;
    char url[CW_LIMIT_KEY_BYTES];
    int n, rc;

    if (w->l2 == NULL) return;
    if (r->purge_tags != NULL) {
        for (const char *p = r->purge_tags; *p != '\0';) {
            size_t len = 0;
            while (*p == ' ' || *p == '\t')
                p++;
            while (p[len] != '\0' && p[len] != ' ' && p[len] != '\t')
                len++;
            if (len == 0) break;
            cw_fleet_publish(w->l2, &w->l2_purges, CW_CHAN_PURGE_TAG, r->purge_soft,
                             cw_str_make(p, len));
            p += len;
        }
        return;
    }
    /* The L2 purge first: on the same connection, so it is done before another node can act
     * on the message and look the key up in L2. Soft: the L2 copy is marked stale. */
    {
        struct cw_fill_req q = r->q;
        char hex[33];
        q.key_len = q.primary_len; /* the entry without Vary: its full key is the primary key */
        l2_key_hex(&q, hex);
        rc = cw_l2_purge_entry(w->l2, cw_str_make(hex, 32), r->purge_soft, cw_clock_wall_ms(),
                               l2_on_del, NULL);
        if (rc < 0) cw_warn_rl("worker %d: purge: L2 purge: %s", w->index, strerror(-rc));
    }
    n = snprintf(url, sizeof(url), "http://%.*s%s", (int)r->q.host.len, r->q.host.p, r->uri);
    if (n > 0 && (size_t)n < sizeof(url))
        cw_fleet_publish(w->l2, &w->l2_purges, CW_CHAN_PURGE_URL, r->purge_soft,
                         cw_str_make(url, (size_t)n));
}
