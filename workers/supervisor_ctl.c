/* workers/supervisor_ctl.c - the supervisor's side of the control socket: each command of
 * docs/OPERATIONS.md, the commands that wait on the refresher's answer, the one-line STATUS
 * for systemd, and the health test behind WATCHDOG=1.
 *
 * Requests come from workers/control.c, one JSON line each. status, stats and reload answer
 * at once, from the supervisor's own state and the shm segment; purge (and the L1 figures of
 * status) go to the refresher over its command channel (workers/chan.h) and are answered when
 * it replies, or with an error at their deadline. The supervisor never opens the store. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "core/config.h"
#include "core/ctlmsg.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/pool.h"
#include "shm/seg.h"
#include "workers/chan.h"
#include "workers/clock.h"
#include "workers/control.h"
#include "workers/supervisor_int.h"

#define SUP_CTL_TOKENS        64   /* a request is a flat object of a few members */
#define SUP_CTL_URL_WINDOW_MS 2000 /* top URLs: the samples of the last 2 s */
#define SUP_CTL_URLS          10   /* top URLs in a stats reply */

static char sup_ctl_out[CW_LIMIT_CTL_REPLY_BYTES]; /* single-threaded: one reply at a time */

static void sup_ctl_send(struct sup *s, uint64_t id, struct cw_ctlmsg_buf *b);
static void sup_ctl_error(struct sup *s, uint64_t id, const char *code, const char *msg);
static struct cw_ctlmsg_buf sup_ctl_begin(void);
static int64_t sup_ctl_beat_age(const struct sup *s, const struct sup_child *c, int64_t now);
static char sup_ctl_proc_state(pid_t pid);
static void sup_ctl_status(struct sup *s, uint64_t id, const struct cw_chan_l1_stats *l1,
                           const char *l1_error);
static void sup_ctl_status_ask(struct sup *s, uint64_t id);
static void sup_ctl_stats(struct sup *s, uint64_t id);
static int sup_ctl_url_cmp(const void *a, const void *b);
static void sup_ctl_put_urls(struct sup *s, struct cw_ctlmsg_buf *b);
static void sup_ctl_reload(struct sup *s, uint64_t id, const struct cw_control_peer *peer);
static void sup_ctl_purge(struct sup *s, uint64_t id, const char *line,
                          const struct cw_ctlmsg_tok *tok, const struct cw_control_peer *peer);
static struct sup_pending *sup_ctl_pending_add(struct sup *s);

static struct cw_ctlmsg_buf sup_ctl_begin(void)
{
    struct cw_ctlmsg_buf b = {sup_ctl_out, 0, sizeof(sup_ctl_out), false};

    cw_ctlmsg_put(&b, "{\"v\":%d,\"ok\":true", CW_CTLMSG_VERSION);
    return b;
}

/* Closes the object and sends it; a reply that outgrew the buffer becomes an error. */
static void sup_ctl_send(struct sup *s, uint64_t id, struct cw_ctlmsg_buf *b)
{
    cw_ctlmsg_put(b, "}");
    if (b->overflow) {
        sup_ctl_error(s, id, "internal", "the reply outgrew the control protocol's limit");
        return;
    }
    if (s->ctl != NULL && cw_control_reply(s->ctl, id, b->p, b->len) == -EMSGSIZE)
        cw_err("supervisor: control reply of %zu bytes too large", b->len);
}

static void sup_ctl_error(struct sup *s, uint64_t id, const char *code, const char *msg)
{
    struct cw_ctlmsg_buf b = {sup_ctl_out, 0, sizeof(sup_ctl_out), false};

    cw_ctlmsg_put(&b, "{\"v\":%d,\"ok\":false,\"code\":\"%s\",\"error\":", CW_CTLMSG_VERSION, code);
    cw_ctlmsg_put_str(&b, msg, strlen(msg));
    cw_ctlmsg_put(&b, "}");
    if (s->ctl != NULL && !b.overflow && cw_control_reply(s->ctl, id, b.p, b.len) < 0)
        cw_debug("supervisor: control client gone before its error reply");
}

void sup_ctl_on_request(void *cls, uint64_t id, const char *line, size_t len,
                        const struct cw_control_peer *peer)
{
    struct sup *s = cls;
    struct cw_ctlmsg_tok tok[SUP_CTL_TOKENS];
    char cmd[32];
    size_t n;
    int64_t v;

    if (cw_ctlmsg_parse(line, len, tok, CW_ARRAY_LEN(tok), &n) < 0 ||
        tok[0].kind != CW_CTLMSG_OBJECT) {
        sup_ctl_error(s, id, "bad-request",
                      "not a JSON object; send one per line, e.g. {\"v\":1,\"cmd\":\"status\"}");
        return;
    }
    v = cw_ctlmsg_get_int(line, tok, 0, "v", -1);
    if (v != CW_CTLMSG_VERSION) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "protocol version %lld is not spoken here; this daemon speaks \"v\":%d",
                 (long long)v, CW_CTLMSG_VERSION);
        sup_ctl_error(s, id, "version", msg);
        return;
    }
    if (cw_ctlmsg_get_str(line, tok, 0, "cmd", cmd, sizeof(cmd), NULL) == NULL) {
        sup_ctl_error(s, id, "bad-request", "no \"cmd\"");
        return;
    }
    if (strcmp(cmd, "status") == 0) {
        sup_ctl_status_ask(s, id);
    } else if (strcmp(cmd, "stats") == 0) {
        sup_ctl_stats(s, id);
    } else if (strcmp(cmd, "reload") == 0) {
        sup_ctl_reload(s, id, peer);
    } else if (strcmp(cmd, "purge") == 0) {
        sup_ctl_purge(s, id, line, tok, peer);
    } else {
        sup_ctl_error(s, id, "bad-request",
                      "unknown \"cmd\"; this daemon takes status, stats, reload and purge");
    }
}

/* ---- commands that wait on the refresher ---- */

static struct sup_pending *sup_ctl_pending_add(struct sup *s)
{
    for (size_t i = 0; i < SUP_PENDING_MAX; i++)
        if (s->pending[i].kind == SUP_PENDING_FREE) return &s->pending[i];
    return NULL; /* cannot happen: one per control client, and as many slots */
}

bool sup_ctl_has_pending(const struct sup *s)
{
    for (size_t i = 0; i < SUP_PENDING_MAX; i++)
        if (s->pending[i].kind != SUP_PENDING_FREE) return true;
    return false;
}

int64_t sup_ctl_deadline(const struct sup *s)
{
    int64_t next = INT64_MAX;

    for (size_t i = 0; i < SUP_PENDING_MAX; i++)
        if (s->pending[i].kind != SUP_PENDING_FREE && s->pending[i].deadline_ms < next)
            next = s->pending[i].deadline_ms;
    return next;
}

void sup_ctl_expire(struct sup *s, int64_t now_ms, const char *why)
{
    for (size_t i = 0; i < SUP_PENDING_MAX; i++) {
        struct sup_pending *p = &s->pending[i];
        if (p->kind == SUP_PENDING_FREE || (now_ms >= 0 && now_ms < p->deadline_ms)) continue;
        struct sup_pending done = *p;
        p->kind = SUP_PENDING_FREE;
        if (done.kind == SUP_PENDING_STATUS) {
            /* Status still answers, without the L1 figures. */
            sup_ctl_status(s, done.ctl_id, NULL,
                           why != NULL ? why : "the refresher did not answer in time");
        } else {
            sup_ctl_error(s, done.ctl_id, "failed",
                          why != NULL ? why
                                      : "the refresher did not finish the purge in time; it may "
                                        "still be running (see the daemon's log)");
        }
    }
}

void sup_ctl_on_answer(struct sup *s, const struct cw_chan_msg *m)
{
    for (size_t i = 0; i < SUP_PENDING_MAX; i++) {
        struct sup_pending *p = &s->pending[i];
        if (p->kind == SUP_PENDING_FREE || p->seq != m->hdr.seq) continue;
        if (m->hdr.type == CW_CHAN_PURGING) {
            /* A long purge making progress: its client waits on (a stuck one still times
             * out, SUP_PURGE_TIMEOUT_MS after its last progress). */
            if (p->kind == SUP_PENDING_PURGE)
                p->deadline_ms = cw_clock_mono_ms() + SUP_PURGE_TIMEOUT_MS;
            return;
        }
        struct sup_pending done = *p;
        p->kind = SUP_PENDING_FREE;
        if (done.kind == SUP_PENDING_STATUS && m->hdr.type == CW_CHAN_L1_STATS &&
            m->hdr.len == sizeof(struct cw_chan_l1_stats)) {
            struct cw_chan_l1_stats st;
            memcpy(&st, m->payload, sizeof(st));
            sup_ctl_status(s, done.ctl_id, st.rc == 0 ? &st : NULL,
                           st.rc == 0 ? NULL : strerror(-st.rc));
        } else if (done.kind == SUP_PENDING_PURGE && m->hdr.type == CW_CHAN_PURGED &&
                   m->hdr.len == sizeof(struct cw_chan_purged)) {
            struct cw_chan_purged r;
            struct cw_ctlmsg_buf b;
            memcpy(&r, m->payload, sizeof(r));
            if (r.rc == -EBUSY) {
                sup_ctl_error(s, done.ctl_id, "unavailable",
                              "16 prefix or tag purges wait already behind the one running; try "
                              "again when they end (the daemon's log shows their progress)");
            } else if (r.rc == -EINVAL) {
                sup_ctl_error(s, done.ctl_id, "invalid",
                              "invalid URL, prefix or tag: give http://host[:port]/path..., "
                              "or a tag as the origin sent it in Surrogate-Key");
            } else if (r.rc == -ENOENT) {
                sup_ctl_error(s, done.ctl_id, "no-route",
                              "no route matches this URL: nothing is cached under it");
            } else if (r.rc < 0) {
                char msg[160];
                snprintf(msg, sizeof(msg), "purge failed after %llu entries: %s",
                         (unsigned long long)r.count, strerror(-r.rc));
                sup_ctl_error(s, done.ctl_id, "failed", msg);
            } else {
                b = sup_ctl_begin();
                cw_ctlmsg_put(&b, ",\"purged\":%llu,\"took_ms\":%.1f", (unsigned long long)r.count,
                              (double)r.took_us / 1000.0);
                sup_ctl_send(s, done.ctl_id, &b);
            }
        } else {
            sup_ctl_error(s, done.ctl_id, "internal", "the refresher answered out of turn");
        }
        return;
    }
    cw_debug("supervisor: a refresher answer (%s, seq %llu) nobody waits for",
             cw_chan_type_name(m->hdr.type), (unsigned long long)m->hdr.seq);
}

/* ---- status ---- */

/* The state letter of /proc/<pid>/stat ('R', 'S', 'T' stopped, 'Z'...), or '?' */
static char sup_ctl_proc_state(pid_t pid)
{
    char path[64], buf[512], *rp;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) return '?';
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return '?';
    buf[n] = '\0';
    rp = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
    return rp != NULL && rp[1] == ' ' && rp[2] != '\0' ? rp[2] : '?';
}

/* How long a worker has gone without a heartbeat (workers/worker_beat.h): counted from its
 * start until its first beat, so that a worker starting up is not wedged. 0 for others. */
static int64_t sup_ctl_beat_age(const struct sup *s, const struct sup_child *c, int64_t now)
{
    int64_t at;

    if (c->kind != SUP_WORKER || c->pid == 0) return 0;
    at = cw_seg_beat_at(s->seg, c->slot);
    if (at < c->started_ms) at = c->started_ms; /* the beat of the slot's previous owner */
    return now - at;
}

const char *sup_ctl_child_state(const struct sup *s, const struct sup_child *c, int64_t now)
{
    if (c->pid == 0) return "restarting";
    if (c->health_killed) return "killed";
    char st = sup_ctl_proc_state(c->pid);
    if (st == 'T' || st == 't') return "stopped";
    if (st == 'Z') return "exiting";
    if (c->ping_missed > 0) return "not-answering";
    if (sup_ctl_beat_age(s, c, now) > CW_SEG_BEAT_STALE_MS) return "not-answering";
    return "running";
}

bool sup_ctl_children_healthy(const struct sup *s, char *why, size_t size)
{
    int64_t now = cw_clock_mono_ms();

    for (size_t i = 0; i < s->child_count; i++) {
        const struct sup_child *c = &s->children[i];
        const char *st = sup_ctl_child_state(s, c, now);
        int64_t age = sup_ctl_beat_age(s, c, now);
        if (strcmp(st, "running") == 0) continue;
        if (age > CW_SEG_BEAT_STALE_MS && strcmp(st, "not-answering") == 0) {
            snprintf(why, size, "%s %d (pid %d) is %s (no heartbeat for %.1f s)",
                     sup_kind_names[c->kind], c->index, (int)c->pid, st, (double)age / 1000.0);
        } else {
            snprintf(why, size, "%s %d (pid %d) is %s", sup_kind_names[c->kind], c->index,
                     (int)c->pid, st);
        }
        return false;
    }
    return true;
}

/* Asks the refresher for the L1 figures, then answers; without a refresher, answers now. */
static void sup_ctl_status_ask(struct sup *s, uint64_t id)
{
    struct sup_child *r = sup_refresher(s);
    struct sup_pending *p = sup_ctl_pending_add(s);

    if (r == NULL || p == NULL) {
        sup_ctl_status(s, id, NULL, "the refresher is not running");
        return;
    }
    *p = (struct sup_pending){SUP_PENDING_STATUS, id, ++s->cmd_seq,
                              cw_clock_mono_ms() + SUP_L1_STAT_TIMEOUT_MS};
    if (cw_chan_send(r->cmd_fd, CW_CHAN_L1_STAT, p->seq, NULL, 0) < 0) {
        p->kind = SUP_PENDING_FREE;
        sup_ctl_status(s, id, NULL, "the refresher's channel is full");
    }
}

/* L2 as the workers see it (their gauges in the segment): "off" (redis.enabled false), "up"
 * (every worker's client usable), "partial", or "down" (none: they serve from L1 and the
 * origin, and retry in the background); with the mode and what the workers counted. */
static void sup_ctl_status_l2(struct sup *s, struct cw_ctlmsg_buf *b)
{
    static const char *const modes[] = {"standalone", "sentinel", "cluster"};
    uint64_t ready = cw_seg_sum(s->seg, CW_METRICS_L2_READY);
    const char *state = "off";

    if (s->cfg.redis_enabled) {
        state = ready == 0 ? "down" : ready >= (uint64_t)s->cfg.workers ? "up" : "partial";
    }
    cw_ctlmsg_put(b, ",\"l2\":{\"state\":\"%s\",\"configured\":%s", state,
                  s->cfg.redis_enabled ? "true" : "false");
    if (s->cfg.redis_enabled) {
        cw_ctlmsg_put(b,
                      ",\"mode\":\"%s\",\"ready_workers\":%llu,\"hits\":%llu,\"misses\":%llu,"
                      "\"errors\":%llu,\"timeouts\":%llu",
                      (unsigned)s->cfg.redis_mode < 3 ? modes[s->cfg.redis_mode] : "?",
                      (unsigned long long)ready,
                      (unsigned long long)cw_seg_sum(s->seg, CW_METRICS_L2_HIT),
                      (unsigned long long)cw_seg_sum(s->seg, CW_METRICS_L2_MISS),
                      (unsigned long long)cw_seg_sum(s->seg, CW_METRICS_L2_ERROR),
                      (unsigned long long)cw_seg_sum(s->seg, CW_METRICS_L2_TIMEOUT));
    }
    cw_ctlmsg_put(b, "}");
}

static void sup_ctl_status(struct sup *s, uint64_t id, const struct cw_chan_l1_stats *l1,
                           const char *l1_error)
{
    struct cw_ctlmsg_buf b = sup_ctl_begin();
    int64_t now = cw_clock_mono_ms();
    const char *file = s->cfg.file != NULL ? s->cfg.file : "";

    cw_ctlmsg_put(&b, ",\"version\":");
    cw_ctlmsg_put_str(&b, s->version, strlen(s->version));
    cw_ctlmsg_put(&b, ",\"pid\":%d,\"uptime_s\":%lld,\"state\":\"%s\",\"config\":", (int)getpid(),
                  (long long)((now - s->started_ms) / 1000), s->stopping ? "stopping" : "running");
    cw_ctlmsg_put_str(&b, file, strlen(file));
    cw_ctlmsg_put(&b, ",\"listen\":");
    cw_ctlmsg_put_str(&b, s->cfg.listen, strlen(s->cfg.listen));
    cw_ctlmsg_put(&b, ",\"children\":[");
    for (size_t i = 0; i < s->child_count; i++) {
        const struct sup_child *c = &s->children[i];
        cw_ctlmsg_put(&b,
                      "%s{\"role\":\"%s\",\"index\":%d,\"pid\":%d,\"state\":\"%s\","
                      "\"restarts\":%u,\"uptime_s\":%lld}",
                      i ? "," : "", sup_kind_names[c->kind], c->index, (int)c->pid,
                      sup_ctl_child_state(s, c, now), c->restarts,
                      c->pid ? (long long)((now - c->started_ms) / 1000) : 0LL);
    }
    cw_ctlmsg_put(&b, "],\"retiring\":%zu,\"l1\":{\"path\":", s->retiring_count);
    cw_ctlmsg_put_str(&b, s->cfg.cache_path, strlen(s->cfg.cache_path));
    if (l1 != NULL) {
        cw_ctlmsg_put(&b, ",\"size_bytes\":%llu,\"used_bytes\":%llu,\"entries\":%llu}",
                      (unsigned long long)l1->size_bytes, (unsigned long long)l1->used_bytes,
                      (unsigned long long)l1->entries);
    } else {
        cw_ctlmsg_put(
            &b, ",\"size_bytes\":%llu,\"error\":", (unsigned long long)s->cfg.cache_size_bytes);
        cw_ctlmsg_put_str(&b, l1_error, strlen(l1_error));
        cw_ctlmsg_put(&b, "}");
    }
    sup_ctl_status_l2(s, &b);
    sup_ctl_send(s, id, &b);
}

/* ---- stats ---- */

static void sup_ctl_stats(struct sup *s, uint64_t id)
{
    static struct cw_metrics_counts n; /* 40 KiB: off the stack */
    static const char *const results[CW_METRICS_RESULT_COUNT] = {
        "hit", "miss", "stale", "revalidated", "pass", "error", "stale_error"};
    static const int64_t bounds[CW_METRICS_LAT_BUCKETS] = CW_METRICS_LAT_BOUNDS_US;
    struct cw_ctlmsg_buf b = sup_ctl_begin();
    uint64_t total = 0, from_l1, by_result[CW_METRICS_RESULT_COUNT] = {0};
    uint64_t lat[CW_METRICS_LAT_BUCKETS + 1] = {0};

    cw_seg_collect(s->seg, &n);
    for (int r = 0; r < CW_METRICS_RESULT_COUNT; r++) {
        for (int rt = 0; rt < CW_METRICS_ROUTE_BUCKETS; rt++) {
            for (int m = 0; m < CW_METRICS_METHOD_COUNT; m++)
                by_result[r] += n.req[rt][r][m];
            for (int k = 0; k <= CW_METRICS_LAT_BUCKETS; k++)
                lat[k] += n.req_lat[rt][r].b[k];
        }
        total += by_result[r];
    }
    from_l1 = by_result[CW_METRICS_RESULT_HIT] + by_result[CW_METRICS_RESULT_STALE] +
              by_result[CW_METRICS_RESULT_REVALIDATED] + by_result[CW_METRICS_RESULT_STALE_ERROR];
    cw_ctlmsg_put(&b, ",\"uptime_s\":%lld,\"requests\":%llu,\"hit_ratio\":%.4f,\"results\":{",
                  (long long)((cw_clock_mono_ms() - s->started_ms) / 1000),
                  (unsigned long long)total, total ? (double)from_l1 / (double)total : 0.0);
    for (int r = 0; r < CW_METRICS_RESULT_COUNT; r++)
        cw_ctlmsg_put(&b, "%s\"%s\":%llu", r ? "," : "", results[r],
                      (unsigned long long)by_result[r]);
    cw_ctlmsg_put(&b,
                  "},\"origin_requests\":%llu,\"origin_errors\":%llu,"
                  "\"evictions\":%llu,\"evicted_expired\":%llu,\"evicted_clock\":%llu,"
                  "\"coalesced\":%llu,\"restarts\":%llu,\"latency_us\":{\"bounds\":[",
                  (unsigned long long)n.c[CW_METRICS_ORIGIN_REQ],
                  (unsigned long long)n.c[CW_METRICS_ORIGIN_ERR],
                  (unsigned long long)(n.c[CW_METRICS_EVICT_EXPIRED] + n.c[CW_METRICS_EVICT_CLOCK]),
                  (unsigned long long)n.c[CW_METRICS_EVICT_EXPIRED],
                  (unsigned long long)n.c[CW_METRICS_EVICT_CLOCK],
                  (unsigned long long)n.c[CW_METRICS_COALESCED],
                  (unsigned long long)n.worker_restarts);
    for (int k = 0; k < CW_METRICS_LAT_BUCKETS; k++)
        cw_ctlmsg_put(&b, "%s%lld", k ? "," : "", (long long)bounds[k]);
    cw_ctlmsg_put(&b, "],\"counts\":[");
    for (int k = 0; k <= CW_METRICS_LAT_BUCKETS; k++)
        cw_ctlmsg_put(&b, "%s%llu", k ? "," : "", (unsigned long long)lat[k]);
    cw_ctlmsg_put(&b, "]},\"origins\":[");
    for (size_t o = 0; o < s->cfg.origin_count && o < CW_METRICS_ORIGINS; o++) {
        const uint64_t *os = n.origin_req[o];
        uint64_t sum = 0;
        for (int k = 0; k < CW_METRICS_OSTATUS_COUNT; k++)
            sum += os[k];
        cw_ctlmsg_put(&b, "%s{\"name\":", o ? "," : "");
        cw_ctlmsg_put_str(&b, s->cfg.origins[o].name, strlen(s->cfg.origins[o].name));
        /* The breaker's word in the segment: closed, open or half-open (core/pool.h). */
        enum cw_pool_breaker_state bs =
            o < CW_LIMIT_ORIGINS ? cw_pool_breaker_state(atomic_load_explicit(
                                       &s->seg->origins[o].breaker, memory_order_relaxed))
                                 : CW_POOL_BREAKER_CLOSED;
        cw_ctlmsg_put(&b, ",\"requests\":%llu,\"5xx\":%llu,\"errors\":%llu,\"breaker\":\"%s\"}",
                      (unsigned long long)sum, (unsigned long long)os[CW_METRICS_OSTATUS_5XX],
                      (unsigned long long)os[CW_METRICS_OSTATUS_ERROR],
                      bs == CW_POOL_BREAKER_OPEN        ? "open"
                      : bs == CW_POOL_BREAKER_HALF_OPEN ? "half-open"
                                                        : "closed");
    }
    cw_ctlmsg_put(&b, "],\"routes\":[");
    for (size_t rt = 0; rt < s->cfg.route_count && rt < CW_METRICS_ROUTES; rt++) {
        const struct cw_config_route *route = &s->cfg.routes[rt];
        uint64_t req = 0, l1 = 0;
        for (int r = 0; r < CW_METRICS_RESULT_COUNT; r++) {
            for (int m = 0; m < CW_METRICS_METHOD_COUNT; m++) {
                req += n.req[rt][r][m];
                if (r != CW_METRICS_RESULT_MISS && r != CW_METRICS_RESULT_PASS &&
                    r != CW_METRICS_RESULT_ERROR)
                    l1 += n.req[rt][r][m];
            }
        }
        cw_ctlmsg_put(&b, "%s{\"host\":", rt ? "," : "");
        const char *host = route->host != NULL ? route->host : "";
        cw_ctlmsg_put_str(&b, host, strlen(host));
        cw_ctlmsg_put(&b, ",\"match\":");
        cw_ctlmsg_put_str(&b, route->match, strlen(route->match));
        cw_ctlmsg_put(&b, ",\"requests\":%llu,\"from_l1\":%llu}", (unsigned long long)req,
                      (unsigned long long)l1);
    }
    cw_ctlmsg_put(&b, "]");
    sup_ctl_put_urls(s, &b);
    sup_ctl_send(s, id, &b);
}

static int sup_ctl_url_cmp(const void *a, const void *b)
{
    const struct cw_seg_url_copy *x = a, *y = b;
    int c = memcmp(x->target, y->target, x->len < y->len ? x->len : y->len);

    if (c != 0) return c;
    return (int)x->len - (int)y->len;
}

/* The busiest request targets of the last SUP_CTL_URL_WINDOW_MS, from the workers' sampled
 * rings (shm/seg.h: one request in CW_SEG_URL_EVERY): ,"urls":{"window_ms":W,"samples":N,
 * "top":[{"target":T,"samples":K,"share":K/N},...]}. The share of samples estimates the
 * share of requests; cwctl top multiplies it by the request rate. A ring that filled within
 * the window covers less of it (a busy worker at over 64 sampled requests a second), which
 * weighs that worker down: the ranking stays right for a mix that is even across workers, as
 * connections spread at random over the workers' sockets make it. */
static void sup_ctl_put_urls(struct sup *s, struct cw_ctlmsg_buf *b)
{
    size_t cap = s->child_count * CW_SEG_URL_SAMPLES, n = 0;
    struct cw_seg_url_copy *all = cap ? malloc(cap * sizeof(*all)) : NULL;
    size_t top[SUP_CTL_URLS], top_n[SUP_CTL_URLS], ntop = 0;
    int64_t since = cw_clock_mono_ms() - SUP_CTL_URL_WINDOW_MS;

    cw_ctlmsg_put(b, ",\"urls\":{\"window_ms\":%d,\"every\":%d", SUP_CTL_URL_WINDOW_MS,
                  CW_SEG_URL_EVERY);
    if (all == NULL && cap > 0) {
        cw_ctlmsg_put(b, ",\"error\":\"no memory\"}");
        return;
    }
    for (size_t i = 0; i < s->child_count; i++) {
        const struct sup_child *c = &s->children[i];
        if (c->kind == SUP_WORKER && c->slot >= 0 && c->slot < CW_LIMIT_WORKERS)
            n += cw_seg_url_read(s->seg, c->slot, since, all + n, cap - n);
    }
    qsort(all, n, sizeof(*all), sup_ctl_url_cmp);
    /* Runs of equal targets; keep the SUP_CTL_URLS longest (insertion into a short list). */
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && sup_ctl_url_cmp(&all[i], &all[j]) == 0; j++)
            ;
        size_t k = ntop < SUP_CTL_URLS ? ntop++ : SUP_CTL_URLS;
        while (k > 0 && top_n[k - 1] < j - i) {
            if (k < SUP_CTL_URLS) {
                top[k] = top[k - 1];
                top_n[k] = top_n[k - 1];
            }
            k--;
        }
        if (k < SUP_CTL_URLS) {
            top[k] = i;
            top_n[k] = j - i;
        }
    }
    cw_ctlmsg_put(b, ",\"samples\":%zu,\"top\":[", n);
    for (size_t k = 0; k < ntop; k++) {
        cw_ctlmsg_put(b, "%s{\"target\":", k ? "," : "");
        cw_ctlmsg_put_str(b, all[top[k]].target, all[top[k]].len);
        cw_ctlmsg_put(b, ",\"samples\":%zu,\"share\":%.4f}", top_n[k],
                      (double)top_n[k] / (double)n);
    }
    cw_ctlmsg_put(b, "]}");
    free(all);
}

/* ---- reload, purge ---- */

static void sup_ctl_reload(struct sup *s, uint64_t id, const struct cw_control_peer *peer)
{
    struct cw_err err = {{0}};
    struct cw_ctlmsg_buf b;

    cw_notice("supervisor: reload asked on the control socket by uid %d pid %d", (int)peer->uid,
              (int)peer->pid);
    if (sup_reload(s, &err) < 0) {
        sup_ctl_error(s, id, "refused", err.msg[0] ? err.msg : "reload failed (see the log)");
        return;
    }
    b = sup_ctl_begin();
    cw_ctlmsg_put(&b, ",\"workers\":%d,\"config\":", s->cfg.workers);
    cw_ctlmsg_put_str(&b, s->cfg.file, strlen(s->cfg.file));
    /* Settings the reload could not apply: the caller must restart for them. */
    cw_ctlmsg_put(&b, ",\"restart_needed\":[%s]", s->reload_restart);
    sup_ctl_send(s, id, &b);
}

static void sup_ctl_purge(struct sup *s, uint64_t id, const char *line,
                          const struct cw_ctlmsg_tok *tok, const struct cw_control_peer *peer)
{
    static const char *const keys[CW_CHAN_PURGE_KIND_COUNT] = {"url", "prefix", "tag"};
    static unsigned char payload[CW_CHAN_PAYLOAD_MAX];
    struct cw_chan_purge h = {0};
    struct sup_child *r;
    struct sup_pending *p;
    size_t len = 0;
    int which = -1, rc;

    for (int k = 0; k < CW_CHAN_PURGE_KIND_COUNT; k++) {
        int i = cw_ctlmsg_find(line, tok, 0, keys[k]);
        if (i < 0) continue;
        if (which >= 0) {
            sup_ctl_error(s, id, "bad-request", "give one of \"url\", \"prefix\" or \"tag\"");
            return;
        }
        which = k;
        rc = cw_ctlmsg_str(line, tok, (size_t)i, (char *)payload + sizeof(h),
                           sizeof(payload) - sizeof(h), &len);
        if (rc < 0 || len == 0) {
            sup_ctl_error(s, id, "invalid",
                          rc == -ENOSPC ? "too long" : "must be a non-empty string");
            return;
        }
    }
    if (which < 0) {
        sup_ctl_error(s, id, "bad-request", "give one of \"url\", \"prefix\" or \"tag\"");
        return;
    }
    if (which != CW_CHAN_PURGE_TAG) {
        struct cw_str host, target;
        if (cw_ctlmsg_split_url(cw_str_make((char *)payload + sizeof(h), len), &host, &target) <
            0) {
            sup_ctl_error(s, id, "invalid",
                          "invalid URL: want http://host[:port]/path, without spaces or #");
            return;
        }
    }
    h.kind = (uint32_t)which;
    h.soft = cw_ctlmsg_get_bool(line, tok, 0, "soft", false) ? 1 : 0;
    memcpy(payload, &h, sizeof(h));
    r = sup_refresher(s);
    p = sup_ctl_pending_add(s);
    if (r == NULL || p == NULL) {
        sup_ctl_error(s, id, "unavailable",
                      "the refresher, which applies purges, is not running; try again shortly");
        return;
    }
    *p = (struct sup_pending){SUP_PENDING_PURGE, id, ++s->cmd_seq,
                              cw_clock_mono_ms() + SUP_PURGE_TIMEOUT_MS};
    rc = cw_chan_send(r->cmd_fd, CW_CHAN_PURGE, p->seq, payload, sizeof(h) + len);
    if (rc < 0) {
        p->kind = SUP_PENDING_FREE;
        sup_ctl_error(s, id, "unavailable", "the refresher's channel is busy; try again");
        return;
    }
    cw_notice("supervisor: purge %s%s asked on the control socket by uid %d pid %d", keys[which],
              h.soft ? " (soft)" : "", (int)peer->uid, (int)peer->pid);
}

/* ---- systemd ---- */

void sup_ctl_notify_status(const struct sup *s)
{
    size_t up = 0, workers = 0;
    uint64_t total = 0, l1 = 0;

    for (size_t i = 0; i < s->child_count; i++) {
        up += s->children[i].pid != 0;
        workers += s->children[i].kind == SUP_WORKER;
    }
    for (int r = 0; r < CW_METRICS_RESULT_COUNT; r++) {
        uint64_t v = cw_seg_sum(s->seg, (enum cw_metrics_counter)r);
        total += v;
        if (r != CW_METRICS_RESULT_MISS && r != CW_METRICS_RESULT_PASS &&
            r != CW_METRICS_RESULT_ERROR)
            l1 += v;
    }
    sd_notifyf(0,
               "STATUS=%s on %s: %zu/%zu children up (%zu workers); %llu requests, %.1f%% from L1",
               s->stopping ? "stopping" : "serving", s->cfg.listen, up, s->child_count, workers,
               (unsigned long long)total, total ? 100.0 * (double)l1 / (double)total : 0.0);
}
