/* workers/refresher.c - see workers/refresher.h.
 *
 * The main thread scans the lease database (bounded per tick), claims wanted refreshes and
 * submits conditional GETs to the fetch loop; the fetch thread completes them through the
 * same fill code as a worker's miss (workers/fill.c) and hands the finished refresh back on
 * a list the main thread frees. A refresh sends the request again from the entry's request
 * part (core/entry.h): the Host and target the worker routed and keyed, and the request
 * fields the entry was chosen by (route key_headers, Cookie when keyed, Vary) with the values
 * the origin was sent then. The key string is only compared, never read back into a request.
 *
 * With Redis, what a refresh or revalidation put into L1 also goes to L2: the fetch thread
 * queues the bytes, the main thread writes them with the fleet's client (workers/fleet.h),
 * which it drives from its poll loop beside the subscription and the purge log reads. */
#include "workers/refresher.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/config.h"
#include "core/ctlmsg.h"
#include "core/entry.h"
#include "core/fleetmsg.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/route.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/chan.h"
#include "workers/child.h"
#include "workers/clock.h"
#include "workers/fill.h"
#include "workers/fleet.h"
#include "workers/l2.h"
#include "workers/refresher_int.h"
#include "workers/upstream.h"
#include "workers/upstream_dns.h"

static const char *refr_header(void *cls, const char *name)
{
    struct refr_job *j = cls;

    for (size_t i = 0; i < j->hcount; i++)
        if (strcasecmp(j->hnames[i], name) == 0) return j->hvalues[i];
    return NULL;
}

/* The value of the one field a replayed request sets itself, Host: the entry's. */
static const char *refr_host(void *cls, const char *name)
{
    struct refr_job *j = cls;

    (void)name;
    return j->host;
}

static void refr_job_free(struct refr_job *j)
{
    if (j == NULL) return;
    cw_upstream_collect_reset(&j->job);
    for (size_t i = 0; i < j->hcount; i++) {
        free(j->hnames[i]);
        free(j->hvalues[i]);
    }
    free(j->q.key_buf);
    free(j->url);
    free(j->hdr_lines);
    free(j->target);
    free(j->host);
    free(j);
}

static char *refr_strndup(struct cw_str s)
{
    char *p = malloc(s.len + 1);

    if (p == NULL) return NULL;
    memcpy(p, s.p, s.len);
    p[s.len] = '\0';
    return p;
}

static void refr_copy_validator(const struct cw_entry_view *v, const char *name, char *out,
                                size_t size)
{
    struct cw_str value;

    out[0] = '\0';
    if (cw_entry_header_find(v, cw_str_cstr(name), &value) && value.len < size) {
        memcpy(out, value.p, value.len);
        out[value.len] = '\0';
    }
}

/* Copies what the refresh needs out of a decoded entry: its request part, full key and
 * validators. 0, -ENOENT for an entry with no request part (stored by a caller that never
 * refreshes), -ENOMEM. */
static int refr_copy_entry(struct refr_job *j, const struct cw_entry_view *v)
{
    struct cw_str name, value;
    size_t off = 0;

    if (v->req_target.len == 0) return -ENOENT;
    j->target = refr_strndup(v->req_target);
    j->host = refr_strndup(v->req_host);
    j->q.key_buf = malloc(CW_LIMIT_KEY_BYTES);
    if (j->target == NULL || j->host == NULL || j->q.key_buf == NULL) return -ENOMEM;
    /* decode() held key_len to CW_LIMIT_KEY_BYTES. */
    memcpy(j->q.key_buf, v->key.p, v->key.len);
    j->q.key_len = v->key.len;
    refr_copy_validator(v, "ETag", j->etag, sizeof(j->etag));
    refr_copy_validator(v, "Last-Modified", j->last_modified, sizeof(j->last_modified));
    /* decode() held req_count to CW_LIMIT_ENTRY_REQ_FIELDS, the size of hnames. */
    while (j->hcount < CW_LIMIT_ENTRY_REQ_FIELDS && cw_entry_req_next(v, &off, &name, &value)) {
        j->hnames[j->hcount] = refr_strndup(name);
        j->hvalues[j->hcount] = refr_strndup(value);
        j->hcount++;
        if (j->hnames[j->hcount - 1] == NULL || j->hvalues[j->hcount - 1] == NULL) return -ENOMEM;
    }
    return 0;
}

/* Reads key's entry (its encoded bytes, copied out, so no read txn outlives the call) into
 * j: 0, or -errno (-ENOENT: gone, or not refreshable). */
static int refr_load(struct refresher *rf, struct refr_job *j, const struct cw_key *key)
{
    struct cw_entry_view v;
    void *bytes = NULL;
    size_t len;
    int rc;

    rc = cw_store_read_encoded(rf->reader, key, cw_str_make(NULL, 0), &bytes, &len);
    if (rc < 0) return rc;
    rc = cw_entry_decode(bytes, len, &v);
    if (rc == 0) rc = refr_copy_entry(j, &v);
    free(bytes);
    return rc;
}

/* The conditional GET (workers/upstream.h builds it): the origin's URL as the worker builds
 * it, the stored request fields replayed as the origin was sent them (a stored Host or Via is
 * the client's, which the worker replaced or extended: Host is the entry's, Via extended
 * again), and the entry's validators. */
static int refr_build_request(struct refresher *rf, struct refr_job *j)
{
    const struct cw_config_origin *o = &rf->cfg->origins[j->q.rt->origin];
    struct cw_upstream_head h = {.ours = refr_host, .cls = j};
    int rc;

    rc = cw_upstream_build_url(o, j->q.rt, cw_str_cstr(j->target), false, &j->url);
    if (rc < 0) return rc;
    /* A failed add is kept by the builder: finish frees the block and returns it. */
    for (size_t i = 0; i < j->hcount; i++)
        if (cw_upstream_head_add(&h, cw_str_cstr(j->hnames[i]), cw_str_cstr(j->hvalues[i])) < 0)
            break;
    return cw_upstream_head_finish(&h, cw_str_cstr(j->etag), cw_str_cstr(j->last_modified),
                                   &j->hdr_lines);
}

/* On the fetch thread: store what came back, hand the job to the main thread. */
static void refr_on_done(struct cw_upstream_collect *job, void *cls)
{
    struct refr_job *j = cls;
    struct refresher *rf = j->rf;
    struct cw_fill_result res;

    if (job->rc != -ECANCELED)
        cw_seg_record_origin(rf->seg, rf->slot, j->q.rt->origin, job->rc == 0 ? job->status : 0,
                             (job->response_time_ms - job->request_time_ms) * 1000);
    if (job->rc != 0 || job->status >= 500) {
        cw_seg_add(rf->seg, rf->slot, CW_METRICS_REFRESH_FAIL, 1);
        if (job->rc != 0 && job->rc != -ECANCELED)
            cw_warn_rl("refresher: %s: %s", j->url, job->xfer.errbuf);
        cw_fill_abandon(&rf->fill, &j->q, false);
    } else {
        cw_fill_complete(&rf->fill, &j->q, job, &res);
        j->ok = res.stored;
        cw_seg_add(rf->seg, rf->slot,
                   res.revalidated ? CW_METRICS_REFRESH_NOT_MODIFIED
                                   : (res.stored ? CW_METRICS_REFRESH_OK : CW_METRICS_REFRESH_FAIL),
                   1);
    }
    pthread_mutex_lock(&rf->lock);
    j->next = rf->done;
    rf->done = j;
    pthread_mutex_unlock(&rf->lock);
}

/* Claims key's wanted refresh and starts it: 0, or -errno (the claim is dropped). */
static int refr_start(struct refresher *rf, const struct cw_key *key)
{
    struct refr_job *j;
    int64_t now = cw_clock_mono_ms();
    uint64_t token;
    const char *qm;
    int rc;

    rc = cw_store_lease_take(rf->store, key, CW_STORE_LEASE_REFRESH, (int32_t)getpid(), now,
                             now + REFR_LEASE_MS, &token, NULL);
    if (rc < 0) return rc; /* someone else is on it */
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        rc = -ENOMEM;
        goto out_release;
    }
    j->rf = rf;
    j->q.has_lease = true;
    j->q.lease_key = *key;
    j->q.lease_token = token;
    j->q.key = *key;
    rc = refr_load(rf, j, key);
    if (rc < 0) goto out_free;
    qm = strchr(j->target, '?');
    int route =
        cw_route_find(rf->cfg, cw_str_cstr(j->host),
                      cw_str_make(j->target, qm ? (size_t)(qm - j->target) : strlen(j->target)));
    if (route < 0) {
        rc = -ENOENT;
        goto out_free;
    }
    j->q.rt = &rf->cfg->routes[route];
    j->q.header = refr_header;
    j->q.header_cls = j;
    j->q.uri = cw_str_cstr(j->target);
    j->q.host = cw_str_cstr(j->host);
    /* primary_len: where the Vary values begin; the fill recomputes it when Vary changes. */
    j->q.primary_len = j->q.key_len;
    {
        struct cw_fill_req probe = j->q;
        char *buf = malloc(CW_LIMIT_KEY_BYTES);
        if (buf == NULL) {
            rc = -ENOMEM;
            goto out_free;
        }
        probe.key_buf = buf;
        rc = cw_fill_key_primary(&rf->fill, &probe);
        if (rc == 0) {
            j->q.primary = probe.primary;
            j->q.primary_len = probe.primary_len;
        }
        free(buf);
        if (rc < 0) goto out_free;
    }
    rc = refr_build_request(rf, j);
    if (rc < 0) goto out_free;
    j->job = (struct cw_upstream_collect){
        .req = {.origin = j->q.rt->origin,
                .url = j->url,
                .method = "GET",
                .head = j->hdr_lines,
                .connect_timeout_ms = rf->cfg->origins[j->q.rt->origin].connect_timeout_ms,
                .timeout_ms = rf->cfg->origins[j->q.rt->origin].timeout_ms},
        .max_body = (size_t)rf->cfg->cache_max_object_bytes,
        .done = refr_on_done,
        .cls = j,
    };
    rc = cw_upstream_collect(rf->fetch, &j->job);
    if (rc < 0) goto out_free;
    rf->inflight++;
    cw_debug("refresher: refreshing %s%s", j->host, j->target);
    return 0;

out_free:
    refr_job_free(j);
out_release:
    if (cw_store_lease_release(rf->store, key, token) < 0)
        cw_debug("refresher: release after failed start");
    return rc;
}

/* Scan callback: collects wanted or orphaned refreshes; deletes leases of dead owners and
 * expired hit-for-miss records later, outside the read txn. */
struct refr_scan {
    struct refresher *rf;
    int64_t now;
    struct cw_key reap[256];
    struct cw_store_lease reap_lease[256];
    size_t reap_count;
    struct cw_key last; /* the last record visited, where the next scan resumes */
};

static bool refr_scan_one(void *cls, const struct cw_key *key, const struct cw_store_lease *l)
{
    struct refr_scan *s = cls;
    struct refresher *rf = s->rf;

    s->last = *key;
    bool expired = s->now >= l->deadline_ms;
    bool dead = l->pid > 0 && kill(l->pid, 0) == -1 && errno == ESRCH;

    if (l->kind == CW_STORE_LEASE_REFRESH && (l->pid == 0 || dead || expired)) {
        if (rf->claim_count + rf->inflight < REFR_INFLIGHT_MAX) rf->claim[rf->claim_count++] = *key;
        return true;
    }
    if ((dead || expired) && s->reap_count < CW_ARRAY_LEN(s->reap)) {
        s->reap[s->reap_count] = *key;
        s->reap_lease[s->reap_count++] = *l;
    }
    return true;
}

/* Frees the refreshes the fetch thread finished. */
static void refr_reap_done(struct refresher *rf)
{
    struct refr_job *done;

    pthread_mutex_lock(&rf->lock);
    done = rf->done;
    rf->done = NULL;
    pthread_mutex_unlock(&rf->lock);
    while (done != NULL) {
        struct refr_job *next = done->next;
        refr_job_free(done);
        rf->inflight--;
        done = next;
    }
}

static int refr_response_time(void *cls, const struct cw_entry_view *v)
{
    *(int64_t *)cls = v->h.response_time_ms;
    return 0;
}

/* Records one worker's ask as a wanted-refresh lease record (pid 0), which the lease scan
 * then claims: the write a hit used to make itself. Once however many hits ask: a live record
 * (an ask of another worker, a refresh or a fetch running) refuses the take, and an entry
 * stored after the ask was made (by the refresh it asked for, or a fetch) needs none. */
static void refr_on_ask(struct refresher *rf, const struct cw_seg_refresh_ask *a)
{
    struct cw_key key;
    int64_t stored_ms = 0, now;
    int rc;

    memcpy(key.h, a->key, sizeof(key.h));
    rc = cw_store_read(rf->reader, &key, cw_str_make(NULL, 0), refr_response_time, &stored_ms);
    if (rc < 0 || stored_ms > a->asked_wall_ms) return;
    now = cw_clock_mono_ms();
    rc = cw_store_lease_take(rf->store, &key, CW_STORE_LEASE_REFRESH, 0, now, now + REFR_WANT_MS,
                             NULL, NULL);
    if (rc < 0 && rc != -EBUSY) cw_warn_rl("refresher: refresh ask: %s", strerror(-rc));
}

/* Takes the workers' refresh asks from their rings in the shm segment, at most REFR_ASK_MAX,
 * starting at another ring each tick so that no worker's asks wait behind the others'. */
static void refr_take_asks(struct refresher *rf)
{
    struct cw_seg_refresh_ask a;
    size_t n = 0;

    for (int i = 0; i < CW_LIMIT_WORKERS && n < REFR_ASK_MAX; i++) {
        int slot = (rf->ask_slot + i) % CW_LIMIT_WORKERS;
        while (n < REFR_ASK_MAX && cw_seg_refresh_take(rf->seg, slot, &a)) {
            n++;
            refr_on_ask(rf, &a);
        }
    }
    rf->ask_slot = (rf->ask_slot + 1) % CW_LIMIT_WORKERS;
}

static void refr_tick(struct refresher *rf)
{
    struct refr_scan s = {.rf = rf, .now = cw_clock_mono_ms()};

    refr_reap_done(rf);
    refr_take_asks(rf);
    rf->claim_count = 0;
    /* Each tick resumes where the last one stopped, so a lease table larger than one scan
     * (hit-for-miss records of many uncacheable URLs) never hides the records behind it. */
    int n = cw_store_lease_scan(rf->reader, rf->has_scan_from ? &rf->scan_from : NULL,
                                refr_scan_one, &s, REFR_SCAN_MAX);
    if (n < 0) return;
    rf->has_scan_from = (size_t)n >= REFR_SCAN_MAX;
    rf->scan_from = s.last;
    for (size_t i = 0; i < s.reap_count; i++) {
        if (cw_store_lease_release_exact(rf->store, &s.reap[i], &s.reap_lease[i]) == 0)
            cw_seg_fill_done(rf->seg, &s.reap[i]);
    }
    for (size_t i = 0; i < rf->claim_count; i++)
        (void)refr_start(rf, &rf->claim[i]);
}

/* Reader check every few seconds; an eviction step every tick while the map is near its
 * high watermark, else a sweep for expired entries every REFR_SWEEP_IDLE_MS, so that an idle
 * node costs no CPU. Returns true while the map is under pressure. */
static bool refr_housekeeping(struct refresher *rf, int64_t *next_reader_check, int64_t *next_sweep,
                              bool pressure)
{
    struct cw_store_evict_stats st = {0};
    int64_t now = cw_clock_mono_ms();
    int rc;

    if (now >= *next_reader_check) {
        rc = cw_store_reader_check(rf->store);
        if (rc > 0) cw_notice("refresher: cleared %d stale LMDB reader slots", rc);
        *next_reader_check = now + REFR_READER_CHECK_MS;
    }
    if (!pressure && now < *next_sweep) return false;
    *next_sweep = now + REFR_SWEEP_IDLE_MS;
    /* An entry past its stale windows is kept breaker.max_stale longer (the longest of any
     * origin's), so that an open breaker has a copy to serve: the sweep judges expiry as of
     * that long ago. Under pressure the CLOCK hand still takes such entries. */
    int64_t keep_ms = 0;
    for (size_t i = 0; i < rf->cfg->origin_count; i++)
        if (rf->cfg->origins[i].breaker_max_stale_ms > keep_ms)
            keep_ms = rf->cfg->origins[i].breaker_max_stale_ms;
    rc = cw_store_evict_step(rf->store, rf->seg, cw_clock_wall_ms() - keep_ms, REFR_EVICT_VISIT,
                             &st);
    if (rc < 0) return false;
    cw_seg_add(rf->seg, rf->slot, CW_METRICS_EVICT_VISITED, st.visited);
    cw_seg_add(rf->seg, rf->slot, CW_METRICS_EVICT_SECOND_CHANCE, st.second_chance);
    if (st.expired + st.clock > 0) {
        cw_seg_add(rf->seg, rf->slot, CW_METRICS_EVICT_EXPIRED, st.expired);
        cw_seg_add(rf->seg, rf->slot, CW_METRICS_EVICT_CLOCK, st.clock);
    }
    /* Pressure (a step every tick) only above the high watermark, where the CLOCK hand runs
     * down to the low one; between the two marks a full cache is simply in its steady state. */
    return st.map_pages > 0 &&
           (st.clock > 0 || st.used_pages * 100 > st.map_pages * CW_STORE_EVICT_HIGH_PCT);
}

/* CW_CHAN_L1_STAT: how full L1 is, for cwctl status (the supervisor never opens the store). */
static void refr_on_l1_stat(struct refresher *rf, uint64_t seq)
{
    struct cw_chan_l1_stats st = {.size_bytes = rf->cfg->cache_size_bytes};
    int rc;

    st.rc = cw_store_stat(rf->store, &st.entries, &st.used_bytes);
    rc = cw_chan_send(rf->cmd_fd, CW_CHAN_L1_STATS, seq, &st, sizeof(st));
    if (rc < 0 && rc != -EPIPE) cw_warn("refresher: command channel: L1 stats: %s", strerror(-rc));
}

/* Answers what the supervisor sent, at most REFR_CMD_MAX messages (the rest wake the next
 * poll): true, or false when the channel is closed or broken, which means the supervisor has
 * gone or retired this refresher. A PING is answered from this loop, so a refresher stuck
 * anywhere in it (an LMDB lock, a runaway step) stops answering and is replaced. */
static bool refr_on_commands(struct refresher *rf)
{
    struct cw_chan_msg m;
    int rc;

    for (int i = 0; i < REFR_CMD_MAX; i++) {
        rc = cw_chan_recv(rf->cmd_fd, &m);
        if (rc == -EAGAIN) return true;
        if (rc == -EPIPE) {
            cw_info("refresher: the supervisor closed the command channel; stopping");
            return false;
        }
        if (rc == -EBADMSG) {
            cw_warn("refresher: command channel: malformed message dropped");
            continue;
        }
        if (rc < 0) {
            cw_err("refresher: command channel: %s; stopping", strerror(-rc));
            return false;
        }
        if (m.hdr.type == CW_CHAN_PURGE) {
            refr_on_purge(rf, &m);
            continue;
        }
        if (m.hdr.type == CW_CHAN_L1_STAT) {
            refr_on_l1_stat(rf, m.hdr.seq);
            continue;
        }
        if (m.hdr.type != CW_CHAN_PING) {
            cw_warn("refresher: command %s is not one the refresher takes; dropped",
                    cw_chan_type_name(m.hdr.type));
            continue;
        }
        rc = cw_chan_send(rf->cmd_fd, CW_CHAN_PONG, m.hdr.seq, NULL, 0);
        if (rc < 0 && rc != -EPIPE)
            cw_warn("refresher: command channel: pong %llu: %s", (unsigned long long)m.hdr.seq,
                    strerror(-rc));
    }
    return true;
}

static bool refr_should_stop(void)
{
    sigset_t pending;

    if (sigpending(&pending) == -1) return false;
    return sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT) || getppid() == 1;
}

/* A signalfd for the blocked stop signals, so that poll() wakes on them at once. */
static int refr_signalfd(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* cw_fill_stored_fn of the refresher's fill, on the fetch thread: a refresh or revalidation
 * put these bytes into L1; they are queued for L2 (REFR_L2_PUTS_MAX; past it, counted as a
 * failed L2 write) and the main loop woken to write them. */
static void refr_l2_stored(void *cls, const struct cw_fill_req *q, const void *p, size_t len)
{
    struct refresher *rf = cls;
    struct refr_l2_put *put;
    uint64_t one = 1;
    bool full;

    pthread_mutex_lock(&rf->lock);
    full = rf->l2_put_count >= REFR_L2_PUTS_MAX;
    pthread_mutex_unlock(&rf->lock);
    if (full || (put = malloc(sizeof(*put) + len)) == NULL) {
        cw_seg_add(rf->seg, rf->slot, CW_METRICS_L2_WRITE_FAIL, 1);
        return;
    }
    cw_l2_entry_name(cw_str_make(q->key_buf, q->key_len), put->name);
    put->len = len;
    memcpy(put->bytes, p, len);
    pthread_mutex_lock(&rf->lock);
    put->next = rf->l2_puts;
    rf->l2_puts = put;
    rf->l2_put_count++;
    pthread_mutex_unlock(&rf->lock);
    if (write(rf->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
        cw_warn_rl("refresher: write wake fd: %s", strerror(errno));
}

static void refr_l2_written(void *arg, int rc, struct cw_str value)
{
    struct refresher *rf = arg;

    (void)value;
    if (rc != -ECANCELED)
        cw_seg_add(rf->seg, rf->slot, rc == 0 ? CW_METRICS_L2_WRITE : CW_METRICS_L2_WRITE_FAIL, 1);
}

/* Writes the queued refreshed entries to L2 as a worker's fill does (workers/req_l2.c): the
 * same bytes, a TTL of the entry's whole useful life, its tags. Fire and forget. */
static void refr_l2_flush(struct refresher *rf)
{
    struct cw_l2 *l2 = cw_fleet_l2(rf->fleet);
    struct cw_str tags[CW_LIMIT_TAGS];
    struct refr_l2_put *put;
    struct cw_entry_view v;
    int64_t end_ms, ttl_ms;
    int rc;

    pthread_mutex_lock(&rf->lock);
    put = rf->l2_puts;
    rf->l2_puts = NULL;
    rf->l2_put_count = 0;
    pthread_mutex_unlock(&rf->lock);
    while (put != NULL) {
        struct refr_l2_put *next = put->next;
        rc = cw_entry_decode(put->bytes, put->len, &v);
        if (rc == 0) {
            end_ms = v.h.fresh_until_ms;
            if (v.h.swr_until_ms > end_ms) end_ms = v.h.swr_until_ms;
            if (v.h.sie_until_ms > end_ms) end_ms = v.h.sie_until_ms;
            ttl_ms = end_ms - cw_clock_wall_ms();
            rc = ttl_ms < 1
                     ? 0
                     : cw_l2_set(l2, cw_str_make(put->name, 32), cw_str_make(put->bytes, put->len),
                                 ttl_ms, tags, cw_l2_entry_tags(&v, tags), refr_l2_written, rf);
        }
        if (rc < 0) cw_seg_add(rf->seg, rf->slot, CW_METRICS_L2_WRITE_FAIL, 1);
        free(put);
        put = next;
    }
}

static int refr_open(struct refresher *rf)
{
    int rc = cw_store_open(rf->cfg->cache_path, rf->cfg->cache_size_bytes, &rf->store);

    if (rc < 0) return rc;
    cw_store_set_seg(rf->store, rf->seg, rf->slot);
    rc = cw_store_reader_open(rf->store, &rf->reader);
    if (rc < 0) return rc;
    rc = cw_store_reader_open(rf->store, &rf->fetch_reader);
    if (rc < 0) return rc;
    rf->fill = (struct cw_fill){.cfg = rf->cfg,
                                .store = rf->store,
                                .reader = rf->fetch_reader,
                                .seg = rf->seg,
                                .slot = rf->slot};
    rc = pthread_mutex_init(&rf->lock, NULL);
    if (rc != 0) return -rc;
    rc = cw_upstream_start(rf->cfg, REFR_INFLIGHT_MAX * 2, rf->seg, true, &rf->fetch);
    if (rc == 0 && cw_upstream_dns_start(rf->cfg, rf->seg, rf->fetch, &rf->dns) < 0)
        cw_warn("refresher: origin DNS discovery off: the configured servers are used");
    if (rc < 0 || !rf->cfg->redis_enabled) return rc;
    /* Fleet-wide purge: without it this node still serves, its purges stay its own. */
    /* The place in the purge log lives as long as L1 does: beside its file. */
    char state[4096];
    int n = snprintf(state, sizeof(state), "%s.purgelog", rf->cfg->cache_path);
    if (cw_fleet_open(rf->cfg, n > 0 && (size_t)n < sizeof(state) ? state : NULL, refr_on_fleet,
                      refr_on_fleet_gap, rf, &rf->fleet) < 0) {
        cw_warn("refresher: fleet purge off: redis.channel not subscribed");
        return 0;
    }
    rf->fill.stored = refr_l2_stored;
    rf->fill.stored_cls = rf;
    return 0;
}

int cw_refresher_run(const struct cw_child_ctx *ctx)
{
    struct refresher rf = {.cfg = ctx->cfg,
                           .seg = ctx->seg,
                           .slot = ctx->slot,
                           .wake_fd = ctx->wake_fd,
                           .cmd_fd = ctx->cmd_fd};
    int wake_fd = ctx->wake_fd;
    int64_t next_reader_check = 0, next_sweep = 0, tick_at;
    bool pressure = false;
    int sig_fd = -1;
    int status = 0;

    cw_child_setup("cw-refresher", ctx->seg, ctx->slot);
    if (refr_open(&rf) < 0) {
        status = 1;
        goto out_close;
    }
    sig_fd = refr_signalfd();
    if (sig_fd == -1)
        cw_warn("refresher: signalfd: %s; stopping may take a second", strerror(errno));
    cw_info("refresher: running");
    tick_at = cw_clock_mono_ms() + REFR_IDLE_TICK_MS;
    while (!refr_should_stop()) {
        /* A -1 fd is skipped by poll(): no signalfd, or no command channel. */
        struct pollfd pfd[3 + CW_L2_POLLFDS_MAX] = {{.fd = wake_fd, .events = POLLIN},
                                                    {.fd = sig_fd, .events = POLLIN},
                                                    {.fd = rf.cmd_fd, .events = POLLIN}};
        struct cw_l2 *l2 = rf.fleet != NULL ? cw_fleet_l2(rf.fleet) : NULL;
        size_t nl2 = l2 != NULL ? cw_l2_pollfds(l2, pfd + 3, CW_L2_POLLFDS_MAX) : 0;
        int64_t now = cw_clock_mono_ms();
        int timeout = tick_at > now && !rf.purge.active ? (int)(tick_at - now) : 0;
        int l2_timeout = l2 != NULL ? cw_l2_timeout_ms(l2) : -1;
        bool woken = false;
        uint64_t n;
        int fleet_timeout = cw_fleet_timeout_ms(rf.fleet, now);
        if (l2_timeout >= 0 && l2_timeout < timeout) timeout = l2_timeout;
        if (fleet_timeout >= 0 && fleet_timeout < timeout) timeout = fleet_timeout;
        /* A purge in progress: look at the fds without waiting, then do its next step. */
        int rc = poll(pfd, 3 + nl2, timeout);
        if (rc > 0 && (pfd[1].revents & POLLIN)) break;
        if (rc > 0 && pfd[2].revents != 0 && !refr_on_commands(&rf)) break;
        if (rc > 0 && (pfd[0].revents & POLLIN)) {
            woken = true;
            if (read(wake_fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
                cw_warn("refresher: read wake fd: %s", strerror(errno));
        }
        if (l2 != NULL) {
            cw_l2_process(l2, pfd + 3, nl2);
            refr_l2_flush(&rf);
            cw_fleet_tick(rf.fleet, cw_clock_mono_ms());
        }
        if (!rf.purge.active && rf.purge_wait_count > 0) refr_purge_next(&rf);
        if (rf.purge.active) refr_purge_step(&rf);
        /* A command alone does no refresh work: the tick keeps its own schedule, so the
         * supervisor's pings change neither when entries are swept nor what it costs. */
        if (!woken && cw_clock_mono_ms() < tick_at) continue;
        refr_tick(&rf);
        pressure = refr_housekeeping(&rf, &next_reader_check, &next_sweep, pressure);
        tick_at =
            cw_clock_mono_ms() + (rf.inflight > 0 || pressure ? REFR_TICK_MS : REFR_IDLE_TICK_MS);
    }
out_close:
    if (rf.fetch != NULL) {
        cw_upstream_stop(rf.fetch); /* cancels what runs: their leases are released */
        refr_reap_done(&rf);
    }
    cw_upstream_dns_free(rf.dns);
    cw_fleet_close(rf.fleet);
    while (rf.l2_puts != NULL) {
        struct refr_l2_put *next = rf.l2_puts->next;
        free(rf.l2_puts);
        rf.l2_puts = next;
    }
    for (size_t i = 0; i < rf.purge_wait_count; i++)
        free(rf.purge_wait[i]);
    cw_store_reader_close(rf.fetch_reader);
    cw_store_reader_close(rf.reader);
    cw_store_close(rf.store);
    if (sig_fd != -1) close(sig_fd);
    if (rf.cmd_fd != -1) close(rf.cmd_fd);
    cw_info("refresher: stopped");
    return status;
}
