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
 * client's errors and timeouts from cw_l2_stats after each turn of the loop.
 *
 * Fleet-wide coalescing is here too (the lease in Redis, the wait for another node's fill;
 * docs/FLEET.md). Notifications: every worker's client subscribes once to one channel,
 * <prefix>fill, and filters the keys it waits for, rather than SUBSCRIBE per key while
 * waiting: a per-key SUBSCRIBE costs two round trips per wait on the one subscription
 * connection and races the publish it waits for (a fill published before the SUBSCRIBE is
 * confirmed is lost), while one standing subscription is there before any wait starts and
 * costs each worker a short message per fill in the fleet, which the origin's fill rate
 * bounds. A notification that is lost anyway (the subscription down, a publish that failed)
 * costs the waiter its budget, never a hang: at its deadline it GETs once more. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

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

static void l2_fleet_expire(struct cw_worker *w, bool all);
static void l2_fleet_unlink(struct worker_req *r);
static int l2_fleet_timeout_ms(struct cw_worker *w, int t);
static int l2_fleet_open(struct cw_worker *w);

/* The L2 name of the entry whose full key is q's: 32 hex digits and a NUL
 * (cw_l2_entry_name(): one fleet-wide secret, so every node names an entry alike). */
static void l2_key_hex(const struct cw_fill_req *q, char out[33])
{
    cw_l2_entry_name(cw_str_make(q->key_buf, q->key_len), out);
}

static size_t l2_poll_fds(void *cls, struct pollfd *fds, size_t max)
{
    struct cw_worker *w = cls;

    return cw_l2_pollfds(w->l2, fds, max);
}

static int l2_poll_timeout(void *cls)
{
    struct cw_worker *w = cls;

    return l2_fleet_timeout_ms(w, cw_l2_timeout_ms(w->l2));
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
    cw_seg_add(w->seg, w->slot, CW_METRICS_L2_REDIRECT, st.redirects - seen->redirects);
    cw_seg_add(w->seg, w->slot, CW_METRICS_L2_SLOT_REFRESH,
               st.slot_refreshes - seen->slot_refreshes);
    cw_seg_add(w->seg, w->slot, CW_METRICS_L2_MASTER_SWITCH,
               st.master_switches - seen->master_switches);
    if (st.breaker_state != seen->breaker_state) {
        cw_seg_set(w->seg, w->slot, CW_METRICS_L2_BREAKER_OPEN, st.breaker_state == 1);
        cw_seg_set(w->seg, w->slot, CW_METRICS_L2_BREAKER_PROBING, st.breaker_state == 2);
    }
    *seen = st;
    cw_seg_set(w->seg, w->slot, CW_METRICS_L2_READY, ready);
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
    l2_fleet_expire(w, !cw_l2_is_ready(w->l2));
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
    if (l2_fleet_open(w) < 0) {
        cw_warn("worker %d: fleet-wide coalescing off: no memory", w->index);
    }
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
    /* The loop has stopped: the requests waiting for another node's fill, then the commands
     * in flight, complete here with -ECANCELED (the request then fails its fetch submit and
     * answers 503, as the other fetches). */
    while (w->fleet_head != NULL) {
        struct worker_req *r = w->fleet_head;
        l2_fleet_unlink(r);
        r->fleet_fn(r, -ECANCELED, cw_str_make(NULL, 0));
    }
    cw_l2_close(w->l2);
    w->l2 = NULL;
    cw_seg_set(w->seg, w->slot, CW_METRICS_L2_READY, 0);
    free(w->fleet_seen);
    w->fleet_seen = NULL;
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
    /* One budget of redis.timeout for the request's GET and the lease take after it. */
    r->l2_asked_ms = cw_clock_mono_ms();
    rc = cw_l2_get(w->l2, cw_str_make(hex, 32), fn, r);
    if (rc < 0) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_SKIPPED, 1);
    return rc;
}

int req_l2_accept(struct worker_req *r, int rc, struct cw_str value)
{
    struct cw_worker *w = r->w;
    struct cw_entry_view v;

    if (rc == -ENOENT) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_MISS, 1);
    if (rc == -EFBIG) {
        /* Over the client's size limit: refused before it was decoded (logged there). */
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_BAD, 1);
        return rc;
    }
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
                   cw_l2_entry_tags(&v, tags), l2_on_set, w);
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
 * their routes, as this node did. A tag list goes out as one message per tag. The variants
 * of a URL (Vary, key_headers, cookies = "key") have L2 names this node cannot list: a ban
 * of their prefix "<URL's key>\n" covers them, as cwctl purge's does. */
void req_l2_purged(struct worker_req *r, size_t variants_len)
{
    struct cw_worker *w = r->w;
    char url[CW_LIMIT_KEY_BYTES];
    int n, rc;

    if (w->l2 == NULL) return;
    if (r->purge->prefix_url != NULL) { /* a ban in L2, the log and the channel */
        cw_fleet_publish(w->l2, &w->l2_purges, CW_CHAN_PURGE_PREFIX, r->purge->soft,
                         cw_str_cstr(r->purge->prefix_url));
        return;
    }
    if (r->purge->tags != NULL) {
        for (const char *p = r->purge->tags; *p != '\0';) {
            size_t len = 0;
            while (*p == ' ' || *p == '\t')
                p++;
            while (p[len] != '\0' && p[len] != ' ' && p[len] != '\t')
                len++;
            if (len == 0) break;
            cw_fleet_publish(w->l2, &w->l2_purges, CW_CHAN_PURGE_TAG, r->purge->soft,
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
        rc = cw_l2_purge_entry(w->l2, cw_str_make(hex, 32), r->purge->soft, cw_clock_wall_ms(),
                               l2_on_del, NULL);
        if (rc < 0) cw_warn_rl("worker %d: purge: L2 purge: %s", w->index, strerror(-rc));
    }
    if (variants_len > 0)
        cw_fleet_ban(w->l2, &w->l2_purges, cw_str_make(r->q.key_buf, variants_len), r->purge->soft,
                     cw_clock_wall_ms());
    n = snprintf(url, sizeof(url), "http://%.*s%s", (int)r->q.host.len, r->q.host.p, r->uri);
    if (n > 0 && (size_t)n < sizeof(url))
        cw_fleet_publish(w->l2, &w->l2_purges, CW_CHAN_PURGE_URL, r->purge->soft,
                         cw_str_make(url, (size_t)n));
}

/* ---- fleet-wide coalescing ----------------------------------------------------------- */

#define L2_FLEET_SEEN 64 /* fills remembered, direct-mapped by key */

/* A Redis lease held by a request: its name and token, and the task that hands its release
 * to the fetch thread when the request ends first. Owned by the request (r->fleet), then by
 * its release. */
struct req_fleet {
    struct cw_upstream_task task;
    struct cw_worker *w;
    char key[33];
    char token[48];
    size_t token_len;
};

/* A fill notified lately: a notification that overtakes the refusal of the lease it ends
 * (both come from Redis, on two connections) is found here when the wait starts. */
struct req_fleet_seen {
    char key[32];
    int64_t at_ms; /* monotonic; 0 = free */
};

static unsigned l2_fleet_slot(const char *key32)
{
    unsigned v = 0;

    /* The key is a hash in hex: its last two digits are as good as any. */
    for (size_t i = 30; i < 32; i++) {
        char c = key32[i];
        v = v * 16 + (unsigned)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
    }
    return v % L2_FLEET_SEEN;
}

static void l2_fleet_unlink(struct worker_req *r)
{
    struct cw_worker *w = r->w;

    if (r->fleet_prev != NULL) {
        r->fleet_prev->fleet_next = r->fleet_next;
    } else {
        w->fleet_head = r->fleet_next;
    }
    if (r->fleet_next != NULL) r->fleet_next->fleet_prev = r->fleet_prev;
    r->fleet_next = r->fleet_prev = NULL;
    w->fleet_count--;
}

/* The wait of r is over (notified, or its deadline): GET its key, the outcome to its fn. */
static void l2_fleet_wake(struct worker_req *r)
{
    struct cw_worker *w = r->w;
    int rc;

    l2_fleet_unlink(r);
    rc = w->l2 != NULL ? cw_l2_get(w->l2, cw_str_make(r->fleet_key, 32), r->fleet_fn, r) : -ENODEV;
    if (rc < 0) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_SKIPPED, 1);
        r->fleet_fn(r, rc, cw_str_make(NULL, 0));
    }
}

/* A message on <prefix>fill (in cw_l2_process()): the named key's holder ended its fetch. */
static void l2_on_fill(void *arg, struct cw_str channel, struct cw_str payload)
{
    struct cw_worker *w = arg;
    struct worker_req *r, *next;

    (void)channel;
    if (payload.len != 32) return; /* not ours: another version's, or noise */
    if (w->fleet_seen != NULL) {
        struct req_fleet_seen *s = &w->fleet_seen[l2_fleet_slot(payload.p)];
        memcpy(s->key, payload.p, 32);
        s->at_ms = cw_clock_mono_ms();
    }
    for (r = w->fleet_head; r != NULL; r = next) {
        next = r->fleet_next;
        if (memcmp(r->fleet_key, payload.p, 32) == 0) l2_fleet_wake(r);
    }
}

/* After each turn of the loop: the waits whose budget ran out GET one last time; with all
 * (L2 unusable: no notification can come), every wait ends, and its GET, refused at once,
 * sends it to the origin. */
static void l2_fleet_expire(struct cw_worker *w, bool all)
{
    struct worker_req *r, *next;
    int64_t now;

    if (w->fleet_head == NULL) return;
    now = cw_clock_mono_ms();
    for (r = w->fleet_head; r != NULL; r = next) {
        next = r->fleet_next;
        if (!all && r->fleet_until_ms > now) continue;
        if (!all) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_WAIT_TIMEOUT, 1);
        l2_fleet_wake(r);
    }
}

/* The poll timeout t (-1: none) shortened to the nearest waiter's deadline. */
static int l2_fleet_timeout_ms(struct cw_worker *w, int t)
{
    int64_t next = INT64_MAX, now;

    if (w->fleet_head == NULL) return t;
    for (struct worker_req *r = w->fleet_head; r != NULL; r = r->fleet_next) {
        if (r->fleet_until_ms < next) next = r->fleet_until_ms;
    }
    now = cw_clock_mono_ms();
    next = next <= now ? 0 : next - now;
    if (next > INT32_MAX) next = INT32_MAX;
    return t >= 0 && t < next ? t : (int)next;
}

/* At the client's open: the token prefix (random, so that two nodes never share a token),
 * the memory of fills, and the fill subscription. -ENOMEM leaves coalescing off. */
static int l2_fleet_open(struct cw_worker *w)
{
    uint64_t rnd;
    int rc;

    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
        /* No entropy yet at boot: the clock and the pid still tell nodes apart in practice. */
        rnd = (uint64_t)cw_clock_wall_ms() * 1000003u ^ (uint64_t)getpid();
    }
    snprintf(w->fleet_id, sizeof(w->fleet_id), "%016llx", (unsigned long long)rnd);
    w->fleet_seen = calloc(L2_FLEET_SEEN, sizeof(*w->fleet_seen));
    if (w->fleet_seen == NULL) return -ENOMEM;
    rc = cw_l2_subscribe_fill(w->l2, l2_on_fill, w);
    if (rc < 0) {
        cw_warn("worker %d: fill notifications not subscribed: %s; waits end at lock_timeout",
                w->index, strerror(-rc));
    }
    return 0;
}

static void l2_fleet_on_published(void *arg, int rc, struct cw_str value)
{
    (void)arg;
    (void)value;
    /* Redis down or the breaker open is logged once, by the state change (l2_sync()). */
    if (rc < 0 && rc != -ECANCELED && rc != -EAGAIN && rc != -ENOTCONN)
        cw_warn_rl("worker: fill notification: PUBLISH: %s; other nodes wait until lock_timeout",
                   strerror(-rc));
}

/* The lease is released (or expired, or taken over): tell the waiting nodes now. After the
 * release's reply, so that in a cluster, where the channel's node may not be the key's, the
 * entry's SET (sent before the release, on the key's connection) is in before the message. */
static void l2_fleet_on_release(void *arg, int rc, struct cw_str value)
{
    struct req_fleet *f = arg;
    struct cw_worker *w = f->w;

    (void)value;
    if (rc != -ECANCELED && w->l2 != NULL) {
        int prc = cw_l2_publish_fill(w->l2, cw_str_make(f->key, 32), l2_fleet_on_published, NULL);
        if (prc < 0) l2_fleet_on_published(NULL, prc, cw_str_make(NULL, 0));
    }
    free(f);
}

/* Releases f's lease and then publishes the fill; frees f. Fetch thread. */
static void l2_fleet_release(struct req_fleet *f)
{
    struct cw_worker *w = f->w;
    int rc;

    if (w->l2 == NULL) {
        free(f);
        return;
    }
    rc = cw_l2_lease_release(w->l2, cw_str_make(f->key, 32), cw_str_make(f->token, f->token_len),
                             l2_fleet_on_release, f);
    /* Not sent: the lease expires by its PX; the notification may still get through. */
    if (rc < 0) l2_fleet_on_release(f, rc == -ESHUTDOWN ? -ECANCELED : rc, cw_str_make(NULL, 0));
}

static void l2_fleet_release_task(struct cw_upstream_task *t, bool cancelled)
{
    struct req_fleet *f = (struct req_fleet *)((char *)t - offsetof(struct req_fleet, task));

    if (cancelled) {
        free(f);
        return;
    }
    l2_fleet_release(f);
}

/* The take's reply: r holds the lease, or not; then the flow's fn. */
static void l2_fleet_on_take(void *arg, int rc, struct cw_str value)
{
    struct worker_req *r = arg;
    struct cw_worker *w = r->w;
    struct req_fleet *f = r->fleet;

    r->fleet = NULL;
    if (rc == 0) {
        r->fleet = f;
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_TAKEN, 1);
    } else if (rc == -EEXIST) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_BUSY, 1);
        free(f);
    } else if (rc == -ETIMEDOUT) {
        /* The SET may have landed all the same, and other nodes then wait for this fetch:
         * held as if taken, released (a no-op if it never landed) and notified after it. */
        r->fleet = f;
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_FAILED, 1);
    } else {
        if (rc != -ECANCELED) cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_FAILED, 1);
        free(f);
    }
    r->fleet_fn(r, rc, value);
}

int req_l2_lease(struct worker_req *r, cw_l2_done_fn fn)
{
    struct cw_worker *w = r->w;
    struct req_fleet *f;
    int n, rc;

    if (w->l2 == NULL || w->fleet_seen == NULL) return -ENODEV;
    if (!cw_l2_is_ready(w->l2)) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_FAILED, 1);
        return -ENOTCONN;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_FAILED, 1);
        return -ENOMEM;
    }
    f->w = w;
    l2_key_hex(&r->q, f->key);
    n = snprintf(f->token, sizeof(f->token), "%s.%d.%d.%llu", w->fleet_id, (int)getpid(), w->index,
                 (unsigned long long)++w->fleet_leases);
    f->token_len = n > 0 && (size_t)n < sizeof(f->token) ? (size_t)n : 0;
    /* PX = lock_timeout: the most any node waits for this fill, so a holder that died costs
     * the fleet at most that; a fetch that outlives it goes on, and others may fetch too. */
    /* Within what is left of the request's Redis budget, started by its GET: a GET that
     * answered late and a take that waits cost together at most one redis.timeout. */
    rc = cw_l2_lease_take_until(w->l2, cw_str_make(f->key, 32), cw_str_make(f->token, f->token_len),
                                r->rt->lock_timeout_ms, r->l2_asked_ms + w->cfg->redis_timeout_ms,
                                l2_fleet_on_take, r);
    if (rc < 0) {
        free(f);
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_FAILED, 1);
        return rc;
    }
    r->fleet = f; /* not held yet: l2_fleet_on_take() decides */
    r->fleet_fn = fn;
    r->fleet_asked_ms = cw_clock_mono_ms();
    return 0;
}

bool req_l2_wait(struct worker_req *r, cw_l2_done_fn fn)
{
    struct cw_worker *w = r->w;
    const struct req_fleet_seen *s;

    if (w->l2 == NULL || w->fleet_seen == NULL) return false;
    /* This node's waiters wait on r's FETCH lease until about r->wait_until_ms: r stops
     * waiting for the other node a little earlier, so that a fetch of its own after a holder
     * that died can still fill for them instead of each of them fetching. */
    r->fleet_until_ms = r->wait_until_ms - r->rt->lock_timeout_ms / 10;
    if (r->fleet_until_ms <= cw_clock_mono_ms()) return false;
    if (w->fleet_count >= CW_LIMIT_L2_WAITERS) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_L2_LEASE_FAILED, 1);
        cw_warn_rl("worker %d: %zu requests wait for other nodes' fills: %s fetches alone",
                   w->index, w->fleet_count, r->uri);
        return false;
    }
    l2_key_hex(&r->q, r->fleet_key);
    r->fleet_fn = fn;
    r->fleet_prev = NULL;
    r->fleet_next = w->fleet_head;
    if (w->fleet_head != NULL) w->fleet_head->fleet_prev = r;
    w->fleet_head = r;
    w->fleet_count++;
    /* Notified already, between the take and its refusal: GET now. */
    s = &w->fleet_seen[l2_fleet_slot(r->fleet_key)];
    if (s->at_ms >= r->fleet_asked_ms && memcmp(s->key, r->fleet_key, 32) == 0) l2_fleet_wake(r);
    return true;
}

void req_l2_lease_end(struct worker_req *r)
{
    struct req_fleet *f = r->fleet;

    if (f == NULL) return;
    r->fleet = NULL;
    l2_fleet_release(f);
}

void req_l2_lease_drop(struct worker_req *r)
{
    struct req_fleet *f = r->fleet;

    if (f == NULL) return;
    r->fleet = NULL;
    f->task.run = l2_fleet_release_task;
    /* Not queued (the loop stopped, or its queue is full): the lease expires by its PX. */
    if (cw_upstream_defer(f->w->fetch, &f->task) < 0) free(f);
}
