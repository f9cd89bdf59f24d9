/* workers/refresher_purge.c - the refresher's purges: cwctl's (over the command channel) and
 * other nodes' (over Redis, workers/fleet.h), applied to this node's L1; a URL at once, a
 * prefix or tag in steps from the refresher's loop, one at a time and the others queued.
 * See workers/refresher_int.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/ctlmsg.h"
#include "core/fleetmsg.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/route.h"
#include "shm/store.h"
#include "workers/chan.h"
#include "workers/clock.h"
#include "workers/fleet.h"
#include "workers/l2.h"
#include "workers/refresher_int.h"

static void refr_l2_purged(void *arg, int rc, struct cw_str value)
{
    (void)arg;
    (void)value;
    if (rc < 0 && rc != -ECANCELED)
        cw_warn_rl("refresher: purge: L2 entry: %s; other nodes may read it from Redis",
                   strerror(-rc));
}

/* The URL's own entry in L2 (the entry without Vary: its full key is the primary key),
 * before the purge is published, on the same connection. */
static void refr_l2_purge_url(struct refresher *rf, struct cw_str primary, bool soft,
                              int64_t now_wall_ms)
{
    char name[33];
    int rc;

    cw_l2_entry_name(primary, name);
    rc = cw_l2_purge_entry(cw_fleet_l2(rf->fleet), cw_str_make(name, 32), soft, now_wall_ms,
                           refr_l2_purged, NULL);
    if (rc < 0) refr_l2_purged(NULL, rc, cw_str_make(NULL, 0));
}

/* Purges one URL as the HTTP PURGE does (workers/worker.c): the primary key the route
 * builds for it, and, when entries of the URL can differ by request fields (the route's
 * key_headers, cookies = "key", or a Vary record), every key that starts with the primary
 * key and a newline. A URL with no route has nothing cached: -ENOENT. */
static int refr_purge_url(struct refresher *rf, struct cw_str url, bool soft, int64_t now,
                          bool to_l2, size_t *count)
{
    struct cw_str host, target;
    struct cw_key primary;
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t klen, vlen, n = 0;
    const char *qm;
    char *key;
    int route, rc;

    if (cw_ctlmsg_split_url(url, &host, &target) < 0) return -EINVAL;
    qm = memchr(target.p, '?', target.len);
    route = cw_route_find(rf->cfg, host,
                          cw_str_make(target.p, qm ? (size_t)(qm - target.p) : target.len));
    if (route < 0) return -ENOENT;
    const struct cw_config_route *rt = &rf->cfg->routes[route];
    key = malloc(CW_LIMIT_KEY_BYTES);
    if (key == NULL) return -ENOMEM;
    rc = cw_key_build(rt, CW_STR_LIT("http"), host, target, key, CW_LIMIT_KEY_BYTES - 1, &klen);
    if (rc < 0) goto out_free_key;
    cw_key_hash(cw_store_secret(rf->store), key, klen, &primary);
    if (to_l2 && rf->fleet != NULL) refr_l2_purge_url(rf, cw_str_make(key, klen), soft, now);
    rc = cw_store_purge_key(rf->store, &primary, soft, now);
    if (rc == 0) (*count)++;
    if (rc < 0 && rc != -ENOENT) goto out_free_key;
    rc = 0;
    if (rt->key_headers_count > 0 || rt->cookies == CW_CONFIG_COOKIES_KEY ||
        cw_store_vary_get(rf->reader, &primary, vary, sizeof(vary), &vlen) == 0) {
        key[klen] = '\n';
        /* The variants' L2 names hash values this node may never have seen: a ban. */
        if (to_l2 && rf->fleet != NULL)
            cw_fleet_ban(cw_fleet_l2(rf->fleet), cw_fleet_counter(rf->fleet),
                         cw_str_make(key, klen + 1), soft, now);
        rc = cw_store_purge_prefix(rf->store, cw_str_make(key, klen + 1), soft, now, &n);
        *count += n;
        if (rc == 0 && !soft) rc = cw_store_vary_put(rf->store, &primary, cw_str_make(NULL, 0));
        if (rc == -ENOENT) rc = 0;
    }
out_free_key:
    free(key);
    return rc;
}

static const char *refr_purge_kind_name(uint32_t kind)
{
    return kind == CW_CHAN_PURGE_URL ? "url" : kind == CW_CHAN_PURGE_PREFIX ? "prefix" : "tag";
}

/* Answers a purge with its result (CW_CHAN_PURGED) and logs it. */
static void refr_purge_answer(struct refresher *rf, uint64_t seq, uint32_t kind, bool soft,
                              struct cw_str text, int rc, size_t count, int64_t t0_us)
{
    struct cw_chan_purged res = {.rc = rc, .count = count};

    res.took_us = (uint64_t)(cw_clock_mono_us() - t0_us);
    cw_notice("refresher: purge%s %s %.*s: %zu entries in %llu ms%s%s", soft ? " (soft)" : "",
              refr_purge_kind_name(kind), (int)(text.len > 200 ? 200 : text.len), text.p, count,
              (unsigned long long)(res.took_us / 1000), rc < 0 ? ": " : "",
              rc < 0 ? strerror(-rc) : "");
    rc = cw_chan_send(rf->cmd_fd, CW_CHAN_PURGED, seq, &res, sizeof(res));
    if (rc < 0 && rc != -EPIPE)
        cw_warn("refresher: command channel: purge result: %s", strerror(-rc));
}

/* Fills p for a prefix or tag purge asked now: 0, or -EINVAL for a bad prefix or tag. A prefix
 * is a URL prefix: its host is normalised as keys are (core/key.h). */
static int refr_purge_prepare(struct refr_purge *p, uint64_t seq, uint32_t kind, bool soft,
                              struct cw_str text)
{
    struct cw_str host, target;
    int rc;

    memset(p, 0, offsetof(struct refr_purge, text));
    if (kind == CW_FLEETMSG_BAN) {
        /* A prefix of the key string as it is (the purge log's gap: every entry). */
        if (text.len == 0 || text.len > sizeof(p->text)) return -EINVAL;
        memcpy(p->text, text.p, text.len);
        p->len = text.len;
        kind = CW_CHAN_PURGE_PREFIX;
    } else if (kind == CW_CHAN_PURGE_PREFIX) {
        if (cw_ctlmsg_split_url(text, &host, &target) < 0) return -EINVAL;
        rc =
            cw_key_build(NULL, CW_STR_LIT("http"), host, target, p->text, sizeof(p->text), &p->len);
        if (rc < 0) return rc;
    } else {
        if (text.len == 0 || text.len > CW_LIMIT_TAG_BYTES) return -EINVAL;
        memcpy(p->text, text.p, text.len);
        p->len = text.len;
    }
    p->seq = seq;
    p->kind = kind;
    p->soft = soft;
    p->now_wall_ms = cw_clock_wall_ms();
    p->t0_us = cw_clock_mono_us();
    return 0;
}

/* Makes p the purge in progress. */
static void refr_purge_begin(struct refresher *rf, const struct refr_purge *p)
{
    rf->purge = *p;
    rf->purge.active = true;
    rf->purge.report_at_ms = cw_clock_mono_ms() + REFR_PURGE_REPORT_MS;
}

/* Starts a prepared purge (the loop runs it: refr_purge_step()), or queues it behind the one
 * that runs: 0, -EBUSY when REFR_PURGE_WAIT_MAX wait already, -ENOMEM. A queued one keeps the
 * time it was asked (its soft purge windows, and the time its answer reports). */
static int refr_purge_submit(struct refresher *rf, const struct refr_purge *p)
{
    struct refr_purge *q;

    if (!rf->purge.active) {
        refr_purge_begin(rf, p);
        return 0;
    }
    if (rf->purge_wait_count == REFR_PURGE_WAIT_MAX) return -EBUSY;
    q = malloc(sizeof(*q));
    if (q == NULL) return -ENOMEM;
    *q = *p;
    rf->purge_wait[rf->purge_wait_count++] = q;
    cw_info("refresher: purge %s %.*s waits for %zu before it", refr_purge_kind_name(q->kind),
            (int)(q->len > 200 ? 200 : q->len), q->text, rf->purge_wait_count);
    return 0;
}

/* Starts the oldest queued purge once none runs. */
void refr_purge_next(struct refresher *rf)
{
    struct refr_purge *q = rf->purge_wait[0];

    memmove(&rf->purge_wait[0], &rf->purge_wait[1],
            --rf->purge_wait_count * sizeof(rf->purge_wait[0]));
    refr_purge_begin(rf, q);
    free(q);
}

/* One step of the purge in progress: REFR_PURGE_BATCHES write txns, then back to the loop.
 * Answers at the end (or on an error); in between, every REFR_PURGE_REPORT_MS, tells the
 * supervisor how far it got (CW_CHAN_PURGING: the count so far), which also keeps the
 * control client's deadline from running out on a purge that is making progress. */
void refr_purge_step(struct refresher *rf)
{
    struct refr_purge *p = &rf->purge;
    struct cw_str text = cw_str_make(p->text, p->len);
    int64_t now;
    int rc;

    rc = p->kind == CW_CHAN_PURGE_PREFIX
             ? cw_store_purge_prefix_step(rf->store, text, p->soft, p->now_wall_ms,
                                          REFR_PURGE_BATCHES, &p->pos, &p->count)
             : cw_store_purge_tag_step(rf->store, text, p->soft, p->now_wall_ms, REFR_PURGE_BATCHES,
                                       &p->pos, &p->count);
    if (rc < 0 || p->pos.done) {
        p->active = false;
        if (p->remote)
            cw_notice("refresher: fleet purge%s %s %.*s: %zu entries%s%s", p->soft ? " (soft)" : "",
                      refr_purge_kind_name(p->kind), (int)(p->len > 200 ? 200 : p->len), p->text,
                      p->count, rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
        else
            refr_purge_answer(rf, p->seq, p->kind, p->soft, text, rc, p->count, p->t0_us);
        return;
    }
    now = cw_clock_mono_ms();
    if (now < p->report_at_ms || p->remote) return;
    p->report_at_ms = now + REFR_PURGE_REPORT_MS;
    struct cw_chan_purged res = {.count = p->count};
    res.took_us = (uint64_t)(cw_clock_mono_us() - p->t0_us);
    cw_info("refresher: purge %s %.*s: %zu entries so far, %llu ms", refr_purge_kind_name(p->kind),
            (int)(p->len > 200 ? 200 : p->len), p->text, p->count,
            (unsigned long long)(res.took_us / 1000));
    rc = cw_chan_send(rf->cmd_fd, CW_CHAN_PURGING, p->seq, &res, sizeof(res));
    if (rc < 0 && rc != -EPIPE && rc != -EAGAIN)
        cw_warn("refresher: command channel: purge progress: %s", strerror(-rc));
    /* The queued ones are alive too (nothing removed yet): their deadlines move on. */
    for (size_t i = 0; i < rf->purge_wait_count; i++) {
        const struct refr_purge *q = rf->purge_wait[i];
        struct cw_chan_purged wait = {.count = 0};
        if (q->remote) continue;
        wait.took_us = (uint64_t)(cw_clock_mono_us() - q->t0_us);
        rc = cw_chan_send(rf->cmd_fd, CW_CHAN_PURGING, q->seq, &wait, sizeof(wait));
        if (rc < 0 && rc != -EPIPE && rc != -EAGAIN)
            cw_warn("refresher: command channel: purge progress: %s", strerror(-rc));
    }
}

/* CW_CHAN_PURGE from the control socket. A URL purge is applied at once and answered; a
 * prefix or tag purge starts here (or waits its turn), runs in steps from the loop and is
 * answered when it ends. */
void refr_on_purge(struct refresher *rf, const struct cw_chan_msg *m)
{
    struct cw_chan_purge h;
    int64_t t0 = cw_clock_mono_us();
    size_t count = 0;
    int rc;

    if (m->hdr.len < sizeof(h)) {
        refr_purge_answer(rf, m->hdr.seq, CW_CHAN_PURGE_URL, false, cw_str_make("", 0), -EBADMSG, 0,
                          t0);
        return;
    }
    memcpy(&h, m->payload, sizeof(h));
    struct cw_str text = cw_str_make((const char *)m->payload + sizeof(h), m->hdr.len - sizeof(h));
    bool soft = h.soft != 0;
    switch (h.kind) {
    case CW_CHAN_PURGE_URL:
        rc = refr_purge_url(rf, text, soft, cw_clock_wall_ms(), true, &count);
        if ((rc == 0 || rc == -ENOENT) && rf->fleet != NULL)
            cw_fleet_publish(cw_fleet_l2(rf->fleet), cw_fleet_counter(rf->fleet), h.kind, soft,
                             text);
        break;
    case CW_CHAN_PURGE_PREFIX:
    case CW_CHAN_PURGE_TAG: {
        struct refr_purge *p = &rf->purge_scratch;
        rc = refr_purge_prepare(p, m->hdr.seq, h.kind, soft, text);
        if (rc == 0) rc = refr_purge_submit(rf, p);
        if (rc == 0 && rf->fleet != NULL)
            cw_fleet_publish(cw_fleet_l2(rf->fleet), cw_fleet_counter(rf->fleet), h.kind, soft,
                             text);
        if (rc == 0) return; /* answered when it ends */
        break;
    }
    default:
        rc = -EINVAL;
        break;
    }
    refr_purge_answer(rf, m->hdr.seq, h.kind, soft, text, rc, count, t0);
}

/* A purge another node published (workers/fleet.h), applied to this node's L1 as cwctl's
 * are: a URL at once, a prefix or tag in steps from the loop, or queued behind the one that
 * runs (REFR_PURGE_WAIT_MAX; past that it is dropped, logged). */
void refr_on_fleet(void *cls, uint32_t kind, bool soft, struct cw_str value)
{
    struct refresher *rf = cls;
    size_t count = 0;
    int rc;

    if (kind == CW_CHAN_PURGE_URL) {
        rc = refr_purge_url(rf, value, soft, cw_clock_wall_ms(), false, &count);
        cw_notice("refresher: fleet purge%s url %.*s: %zu entries%s%s", soft ? " (soft)" : "",
                  (int)(value.len > 200 ? 200 : value.len), value.p, count,
                  rc < 0 && rc != -ENOENT ? ": " : "",
                  rc < 0 && rc != -ENOENT ? strerror(-rc) : "");
        return;
    }
    rc = refr_purge_prepare(&rf->purge_scratch, 0, kind, soft, value);
    rf->purge_scratch.remote = true;
    if (rc == 0) rc = refr_purge_submit(rf, &rf->purge_scratch);
    if (rc == -EBUSY)
        cw_warn_rl("refresher: fleet purge %.*s dropped: %d others wait",
                   (int)(value.len > 200 ? 200 : value.len), value.p, REFR_PURGE_WAIT_MAX);
    else if (rc < 0)
        cw_warn("refresher: fleet purge %.*s: %s", (int)(value.len > 200 ? 200 : value.len),
                value.p, strerror(-rc));
}

/* The purge log lost entries this node had not read: purges may have been missed, and which
 * entries they covered is unknown, so every entry of L1 is soft-purged (every key string
 * starts with its scheme, "http"): each is revalidated with the origin before it is served
 * fresh again, and until then served stale only within its stale windows. */
void refr_on_fleet_gap(void *cls)
{
    refr_on_fleet(cls, CW_FLEETMSG_BAN, true, CW_STR_LIT("http"));
}
