/* core/metrics.c - see core/metrics.h. */
#include "core/metrics.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_BUF_MIN 16384

struct metrics_out {
    struct cw_metrics_buf *b;
    int rc; /* the first error; later appends do nothing */
};

static const int64_t metrics_bounds_us[] = CW_METRICS_LAT_BOUNDS_US;
static_assert(CW_ARRAY_LEN(metrics_bounds_us) == CW_METRICS_LAT_BUCKETS, "a bound per bucket");

static const char *const metrics_result_names[] = {
    [CW_METRICS_RESULT_HIT] = "hit",
    [CW_METRICS_RESULT_MISS] = "miss",
    [CW_METRICS_RESULT_STALE] = "stale",
    [CW_METRICS_RESULT_REVALIDATED] = "revalidated",
    [CW_METRICS_RESULT_PASS] = "pass",
    [CW_METRICS_RESULT_ERROR] = "error",
    [CW_METRICS_RESULT_STALE_ERROR] = "stale_error",
};
static_assert(CW_ARRAY_LEN(metrics_result_names) == CW_METRICS_RESULT_COUNT, "a label per result");

static const char *const metrics_method_names[] = {
    [CW_METRICS_METHOD_GET] = "GET",
    [CW_METRICS_METHOD_HEAD] = "HEAD",
    [CW_METRICS_METHOD_OTHER] = "other",
};
static_assert(CW_ARRAY_LEN(metrics_method_names) == CW_METRICS_METHOD_COUNT, "a label per method");

static const char *const metrics_ostatus_names[] = {
    [CW_METRICS_OSTATUS_1XX] = "1xx", [CW_METRICS_OSTATUS_2XX] = "2xx",
    [CW_METRICS_OSTATUS_3XX] = "3xx", [CW_METRICS_OSTATUS_4XX] = "4xx",
    [CW_METRICS_OSTATUS_5XX] = "5xx", [CW_METRICS_OSTATUS_ERROR] = "error",
};
static_assert(CW_ARRAY_LEN(metrics_ostatus_names) == CW_METRICS_OSTATUS_COUNT,
              "a label per status class");

static int metrics_reserve(struct metrics_out *o, size_t more);
static void metrics_append(struct metrics_out *o, const char *p, size_t n);
static void metrics_printf(struct metrics_out *o, const char *fmt, ...) CW_PRINTF(2, 3);
static void metrics_family(struct metrics_out *o, const char *name, const char *type,
                           const char *help);

void cw_metrics_buf_free(struct cw_metrics_buf *b)
{
    if (b == NULL) return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Makes room for more bytes and a NUL: 0, or -ENOMEM recorded in o. */
static int metrics_reserve(struct metrics_out *o, size_t more)
{
    struct cw_metrics_buf *b = o->b;
    size_t need, cap;
    char *np;

    if (o->rc < 0) return o->rc;
    if (__builtin_add_overflow(b->len, more + 1, &need)) return o->rc = -ENOMEM;
    if (need <= b->cap) return 0;
    cap = b->cap < METRICS_BUF_MIN ? METRICS_BUF_MIN : b->cap;
    while (cap < need) {
        if (__builtin_mul_overflow(cap, 2, &cap)) return o->rc = -ENOMEM;
    }
    np = realloc(b->p, cap);
    if (np == NULL) return o->rc = -ENOMEM;
    b->p = np;
    b->cap = cap;
    return 0;
}

static void metrics_append(struct metrics_out *o, const char *p, size_t n)
{
    if (metrics_reserve(o, n) < 0) return;
    memcpy(o->b->p + o->b->len, p, n);
    o->b->len += n;
    o->b->p[o->b->len] = '\0';
}

static void metrics_puts(struct metrics_out *o, const char *s)
{
    metrics_append(o, s, strlen(s));
}

static void metrics_printf(struct metrics_out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (metrics_reserve(o, 256) < 0) return;
    va_start(ap, fmt);
    n = vsnprintf(o->b->p + o->b->len, o->b->cap - o->b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->rc = -EINVAL;
        return;
    }
    if ((size_t)n >= o->b->cap - o->b->len) {
        if (metrics_reserve(o, (size_t)n) < 0) return;
        va_start(ap, fmt);
        vsnprintf(o->b->p + o->b->len, o->b->cap - o->b->len, fmt, ap);
        va_end(ap);
    }
    o->b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 when it is not one. */
static size_t metrics_utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;

    if (p[0] < 0x80) return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;
    return len;
}

/* Appends s as the exposition format escapes a label value (quote=true: \\, \" and \n) or a
 * HELP text (\\ and \n). The format requires UTF-8: an invalid byte, and any other control
 * byte, becomes '?'. */
static void metrics_escape(struct metrics_out *o, const char *s, bool quote)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    size_t i = 0;

    while (i < n && o->rc == 0) {
        size_t len = metrics_utf8_len(p + i, n - i);
        if (len > 1) {
            metrics_append(o, (const char *)p + i, len);
            i += len;
            continue;
        }
        unsigned char c = p[i++];
        if (c == '\\') {
            metrics_append(o, "\\\\", 2);
        } else if (c == '\n') {
            metrics_append(o, "\\n", 2);
        } else if (c == '"' && quote) {
            metrics_append(o, "\\\"", 2);
        } else if (len == 0 || c < 0x20 || c == 0x7f) {
            metrics_append(o, "?", 1);
        } else {
            metrics_append(o, (const char *)&c, 1);
        }
    }
}

static void metrics_label(struct metrics_out *o, const char *name, const char *value)
{
    metrics_puts(o, name);
    metrics_append(o, "=\"", 2);
    metrics_escape(o, value, true);
    metrics_append(o, "\"", 1);
}

static void metrics_family(struct metrics_out *o, const char *name, const char *type,
                           const char *help)
{
    metrics_printf(o, "# HELP %s ", name);
    metrics_escape(o, help, false);
    metrics_printf(o, "\n# TYPE %s %s\n", name, type);
}

/* A sample without labels. */
static void metrics_plain(struct metrics_out *o, const char *name, const char *type,
                          const char *help, uint64_t v)
{
    metrics_family(o, name, type, help);
    metrics_printf(o, "%s %" PRIu64 "\n", name, v);
}

/* Microseconds as decimal seconds, exactly: 1500 -> "0.0015", 2000000 -> "2". */
/* One series of a family labelled by one key: its label value and its count. */
struct metrics_count {
    const char *value;
    uint64_t n;
};

/* A counter family whose series differ by one label (key="value"), n of them, in order. */
static void metrics_by(struct metrics_out *o, const char *name, const char *help, const char *key,
                       const struct metrics_count *series, size_t n)
{
    metrics_family(o, name, "counter", help);
    for (size_t i = 0; i < n; i++)
        metrics_printf(o, "%s{%s=\"%s\"} %" PRIu64 "\n", name, key, series[i].value, series[i].n);
}

static void metrics_seconds(char *buf, size_t size, uint64_t us)
{
    int n = snprintf(buf, size, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);

    if (n <= 0 || (size_t)n >= size) return;
    while (n > 0 && buf[n - 1] == '0')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '.') buf[--n] = '\0';
}

/* One histogram series' labels: name1="v1"[,name2="v2"] (v2 may be NULL). */
struct metrics_series {
    const char *n1, *v1, *n2, *v2;
};

static void metrics_series_labels(struct metrics_out *o, const struct metrics_series *l)
{
    metrics_label(o, l->n1, l->v1);
    if (l->n2 == NULL) return;
    metrics_append(o, ",", 1);
    metrics_label(o, l->n2, l->v2);
}

/* The _bucket, _sum and _count samples of one histogram series (buckets cumulative). */
static void metrics_hist(struct metrics_out *o, const char *name, const struct metrics_series *l,
                         const struct cw_metrics_hist *h)
{
    char v[32];
    uint64_t cum = 0;

    for (int i = 0; i <= CW_METRICS_LAT_BUCKETS; i++) {
        cum += h->b[i];
        if (i < CW_METRICS_LAT_BUCKETS)
            metrics_seconds(v, sizeof(v), (uint64_t)metrics_bounds_us[i]);
        else
            snprintf(v, sizeof(v), "+Inf");
        metrics_printf(o, "%s_bucket{", name);
        metrics_series_labels(o, l);
        metrics_printf(o, ",le=\"%s\"} %" PRIu64 "\n", v, cum);
    }
    metrics_seconds(v, sizeof(v), h->sum_us);
    metrics_printf(o, "%s_sum{", name);
    metrics_series_labels(o, l);
    metrics_printf(o, "} %s\n", v);
    metrics_printf(o, "%s_count{", name);
    metrics_series_labels(o, l);
    metrics_printf(o, "} %" PRIu64 "\n", cum);
}

static uint64_t metrics_hist_count(const struct cw_metrics_hist *h)
{
    uint64_t n = 0;

    for (int i = 0; i <= CW_METRICS_LAT_BUCKETS; i++)
        n += h->b[i];
    return n;
}

static const char *metrics_route_label(const struct cw_metrics_snapshot *s, size_t rt)
{
    if (rt == CW_METRICS_ROUTE_NONE) return "none";
    return s->route_labels[rt] ? s->route_labels[rt] : "unknown";
}

static void metrics_requests(struct metrics_out *o, const struct cw_metrics_snapshot *s)
{
    size_t routes = s->route_count > CW_METRICS_ROUTES ? CW_METRICS_ROUTES : s->route_count;

    metrics_family(o, "cachewarp_requests_total", "counter",
                   "Client requests answered, by route, method class and cache result.");
    for (size_t rt = 0; rt < CW_METRICS_ROUTE_BUCKETS; rt++) {
        bool in_use = rt < routes;
        if (!in_use && rt != CW_METRICS_ROUTE_NONE) continue;
        for (int res = 0; res < CW_METRICS_RESULT_COUNT; res++) {
            for (int m = 0; m < CW_METRICS_METHOD_COUNT; m++) {
                uint64_t v = s->n.req[rt][res][m];
                if (!in_use && v == 0) continue; /* "none": only what happened */
                metrics_puts(o, "cachewarp_requests_total{");
                metrics_label(o, "route", metrics_route_label(s, rt));
                metrics_printf(o, ",method=\"%s\",result=\"%s\"} %" PRIu64 "\n",
                               metrics_method_names[m], metrics_result_names[res], v);
            }
        }
    }
    metrics_family(o, "cachewarp_request_duration_seconds", "histogram",
                   "Time from a request's arrival until its answer was sent, by route and "
                   "cache result.");
    for (size_t rt = 0; rt < CW_METRICS_ROUTE_BUCKETS; rt++) {
        if (rt >= routes && rt != CW_METRICS_ROUTE_NONE) continue;
        for (int res = 0; res < CW_METRICS_RESULT_COUNT; res++) {
            const struct cw_metrics_hist *h = &s->n.req_lat[rt][res];
            if (metrics_hist_count(h) == 0) continue;
            struct metrics_series l = {"route", metrics_route_label(s, rt), "result",
                                       metrics_result_names[res]};
            metrics_hist(o, "cachewarp_request_duration_seconds", &l, h);
        }
    }
    metrics_plain(o, "cachewarp_response_body_bytes_total", "counter",
                  "Response body bytes queued to clients.", s->n.c[CW_METRICS_BYTES_OUT]);
    metrics_plain(o, "cachewarp_coalesced_requests_total", "counter",
                  "Requests that waited for another request's origin fetch of the same key.",
                  s->n.c[CW_METRICS_COALESCED]);
    metrics_plain(o, "cachewarp_fetch_queue_full_total", "counter",
                  "Origin fetches refused because a worker's fetch queue was full.",
                  s->n.c[CW_METRICS_FETCH_QUEUE_FULL]);
}

/* One counter family with a series per origin, read at off in each origin's pool. */
static void metrics_pool_counter(struct metrics_out *o, const struct cw_metrics_snapshot *s,
                                 size_t origins, const char *name, const char *help, size_t off)
{
    metrics_family(o, name, "counter", help);
    for (size_t i = 0; i < origins; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&s->pools[i] + off, sizeof(v));
        metrics_puts(o, name);
        metrics_puts(o, "{");
        metrics_label(o, "origin", s->origin_labels[i] ? s->origin_labels[i] : "unknown");
        metrics_printf(o, "} %" PRIu64 "\n", v);
    }
}

static void metrics_origins(struct metrics_out *o, const struct cw_metrics_snapshot *s)
{
    size_t origins = s->origin_count > CW_METRICS_ORIGINS ? CW_METRICS_ORIGINS : s->origin_count;

    metrics_family(o, "cachewarp_origin_requests_total", "counter",
                   "Requests sent to origins, by origin and status class (error: no answer).");
    for (size_t i = 0; i < origins; i++) {
        for (int c = 0; c < CW_METRICS_OSTATUS_COUNT; c++) {
            metrics_puts(o, "cachewarp_origin_requests_total{");
            metrics_label(o, "origin", s->origin_labels[i] ? s->origin_labels[i] : "unknown");
            metrics_printf(o, ",status_class=\"%s\"} %" PRIu64 "\n", metrics_ostatus_names[c],
                           s->n.origin_req[i][c]);
        }
    }
    metrics_family(o, "cachewarp_origin_request_duration_seconds", "histogram",
                   "Time an origin request took, from start to the end of the response.");
    for (size_t i = 0; i < origins; i++) {
        if (metrics_hist_count(&s->n.origin_lat[i]) == 0) continue;
        struct metrics_series l = {"origin", s->origin_labels[i] ? s->origin_labels[i] : "unknown",
                                   NULL, NULL};
        metrics_hist(o, "cachewarp_origin_request_duration_seconds", &l, &s->n.origin_lat[i]);
    }
    metrics_family(o, "cachewarp_origin_breaker_state", "gauge",
                   "Origin circuit breaker: 0 closed, 1 half-open, 2 open.");
    for (size_t i = 0; i < origins; i++) {
        metrics_puts(o, "cachewarp_origin_breaker_state{");
        metrics_label(o, "origin", s->origin_labels[i] ? s->origin_labels[i] : "unknown");
        metrics_printf(o, "} %d\n", s->pools[i].breaker_state);
    }
    metrics_pool_counter(o, s, origins, "cachewarp_origin_breaker_opens_total",
                         "Times the origin's circuit breaker opened.",
                         offsetof(struct cw_metrics_pool, breaker_opens));
    metrics_pool_counter(o, s, origins, "cachewarp_origin_fail_fast_total",
                         "Requests refused without an origin request: breaker open or every "
                         "server down.",
                         offsetof(struct cw_metrics_pool, fail_fast));
    metrics_pool_counter(o, s, origins, "cachewarp_origin_retries_total",
                         "Requests sent again to another server after a failed connection.",
                         offsetof(struct cw_metrics_pool, retries));
    metrics_pool_counter(o, s, origins, "cachewarp_origin_dns_lookups_total",
                         "DNS queries sent to find the origin's servers.",
                         offsetof(struct cw_metrics_pool, dns_lookups));
    metrics_pool_counter(o, s, origins, "cachewarp_origin_dns_failures_total",
                         "Rounds of DNS lookups that failed (the last known servers kept).",
                         offsetof(struct cw_metrics_pool, dns_failures));
    metrics_pool_counter(o, s, origins, "cachewarp_origin_dns_changes_total",
                         "Servers added to or removed from the origin's pool by DNS.",
                         offsetof(struct cw_metrics_pool, dns_changes));
    metrics_family(o, "cachewarp_origin_dns_servers", "gauge",
                   "Servers of the origin's pool found by DNS (0: none found yet, or no "
                   "discovery).");
    for (size_t i = 0; i < origins; i++) {
        metrics_puts(o, "cachewarp_origin_dns_servers{");
        metrics_label(o, "origin", s->origin_labels[i] ? s->origin_labels[i] : "unknown");
        metrics_printf(o, "} %" PRIu64 "\n", s->pools[i].dns_servers);
    }
    metrics_family(o, "cachewarp_origin_server_up", "gauge",
                   "1 when the server takes requests (passive and active health), else 0.");
    for (size_t i = 0; i < origins; i++) {
        for (size_t k = 0; k < s->pools[i].server_count && k < CW_LIMIT_ORIGIN_SERVERS; k++) {
            metrics_puts(o, "cachewarp_origin_server_up{");
            metrics_label(o, "origin", s->origin_labels[i] ? s->origin_labels[i] : "unknown");
            metrics_puts(o, ",");
            metrics_label(o, "server",
                          s->pools[i].server_labels[k] ? s->pools[i].server_labels[k] : "unknown");
            metrics_printf(o, "} %d\n", s->pools[i].server_up[k] ? 1 : 0);
        }
    }
}

static void metrics_l1(struct metrics_out *o, const struct cw_metrics_snapshot *s)
{
    const uint64_t *c = s->n.c;

    if (s->has_l1) {
        metrics_plain(o, "cachewarp_l1_entries", "gauge", "Entries in the L1 cache.",
                      s->l1_entries);
        metrics_plain(o, "cachewarp_l1_used_bytes", "gauge",
                      "Bytes of the L1 map in use (pages up to the highest used one).",
                      s->l1_used_bytes);
    }
    metrics_plain(o, "cachewarp_l1_size_bytes", "gauge", "Configured size of the L1 map.",
                  s->l1_size_bytes);
    metrics_by(o, "cachewarp_l1_evictions_total",
               "Entries evicted from L1, by reason (expired: past every stale window; "
               "clock: not hit since the last sweep while over the watermark).",
               "reason",
               (const struct metrics_count[]){{"expired", c[CW_METRICS_EVICT_EXPIRED]},
                                              {"clock", c[CW_METRICS_EVICT_CLOCK]}},
               2);
    metrics_plain(o, "cachewarp_l1_eviction_visited_total", "counter",
                  "Entries the eviction sweep has passed (its progress).",
                  c[CW_METRICS_EVICT_VISITED]);
    metrics_plain(o, "cachewarp_l1_second_chances_total", "counter",
                  "Hit bits the eviction sweep cleared, sparing a recently hit entry.",
                  c[CW_METRICS_EVICT_SECOND_CHANCE]);
    metrics_by(o, "cachewarp_l1_writes_total", "Entries written to L1, by outcome.", "outcome",
               (const struct metrics_count[]){{"stored", c[CW_METRICS_STORE_PUT]},
                                              {"failed", c[CW_METRICS_STORE_PUT_FAIL]}},
               2);
    metrics_plain(o, "cachewarp_l1_bad_entries_total", "counter",
                  "Stored entries that failed validation on read (deleted, served as a miss).",
                  c[CW_METRICS_STORE_BAD_ENTRY]);
    metrics_plain(o, "cachewarp_ready_hits_total", "counter",
                  "Hits answered with the response kept ready from an earlier hit on the same "
                  "entry in the same second, instead of a response built anew.",
                  c[CW_METRICS_HIT_READY]);
}

static void metrics_background(struct metrics_out *o, const struct cw_metrics_snapshot *s)
{
    const uint64_t *c = s->n.c;

    metrics_by(o, "cachewarp_refreshes_total",
               "Background refreshes (stale-while-revalidate, refresh-ahead), by outcome.",
               "outcome",
               (const struct metrics_count[]){{"stored", c[CW_METRICS_REFRESH_OK]},
                                              {"not_modified", c[CW_METRICS_REFRESH_NOT_MODIFIED]},
                                              {"failed", c[CW_METRICS_REFRESH_FAIL]}},
               3);
    metrics_plain(o, "cachewarp_l2_hits_total", "counter",
                  "Requests answered from an entry read from L2 (Redis) after an L1 miss.",
                  c[CW_METRICS_L2_HIT]);
    metrics_plain(o, "cachewarp_l2_misses_total", "counter",
                  "L2 (Redis) lookups that found nothing usable (absent, or a value refused).",
                  c[CW_METRICS_L2_MISS] + c[CW_METRICS_L2_BAD]);
    metrics_plain(o, "cachewarp_l2_bad_values_total", "counter",
                  "L2 values refused: bytes that do not decode, another key's entry, or over "
                  "cache.max_object. Never served.",
                  c[CW_METRICS_L2_BAD]);
    metrics_plain(o, "cachewarp_l2_errors_total", "counter",
                  "L2 (Redis) commands that failed: error replies, lost connections, timeouts.",
                  c[CW_METRICS_L2_ERROR] + c[CW_METRICS_L2_TIMEOUT]);
    metrics_plain(o, "cachewarp_l2_timeouts_total", "counter",
                  "L2 (Redis) commands with no reply within redis.timeout.",
                  c[CW_METRICS_L2_TIMEOUT]);
    metrics_plain(o, "cachewarp_l2_skipped_total", "counter",
                  "L1 misses that did not ask L2: its breaker was open or no connection was ready.",
                  c[CW_METRICS_L2_SKIPPED]);
    metrics_by(o, "cachewarp_l2_writes_total", "Entries written to L2, by outcome.", "outcome",
               (const struct metrics_count[]){{"stored", c[CW_METRICS_L2_WRITE]},
                                              {"failed", c[CW_METRICS_L2_WRITE_FAIL]}},
               2);
    metrics_plain(o, "cachewarp_l2_coalesced_total", "counter",
                  "Requests answered from L2 after waiting for another node's fill (fleet-wide "
                  "coalescing); also counted in cachewarp_l2_hits_total.",
                  c[CW_METRICS_L2_COALESCED]);
    metrics_by(o, "cachewarp_l2_leases_total",
               "Redis lease attempts before an origin fetch, by outcome.", "outcome",
               (const struct metrics_count[]){{"taken", c[CW_METRICS_L2_LEASE_TAKEN]},
                                              {"busy", c[CW_METRICS_L2_LEASE_BUSY]},
                                              {"failed", c[CW_METRICS_L2_LEASE_FAILED]}},
               3);
    metrics_plain(o, "cachewarp_l2_lease_wait_timeouts_total", "counter",
                  "Waits for another node's fill that reached lock_timeout without a notification.",
                  c[CW_METRICS_L2_WAIT_TIMEOUT]);
    metrics_plain(o, "cachewarp_l2_breaker_state", "gauge",
                  "L2 circuit breaker, the worst over the processes: 0 closed, 1 half-open "
                  "(probing), 2 open.",
                  c[CW_METRICS_L2_BREAKER_OPEN] > 0      ? 2
                  : c[CW_METRICS_L2_BREAKER_PROBING] > 0 ? 1
                                                         : 0);
    metrics_plain(o, "cachewarp_l2_redirects_total", "counter",
                  "Redis Cluster MOVED and ASK redirections the workers followed.",
                  c[CW_METRICS_L2_REDIRECT]);
    metrics_plain(o, "cachewarp_l2_slot_map_loads_total", "counter",
                  "Redis Cluster slot maps (CLUSTER SLOTS) the workers loaded.",
                  c[CW_METRICS_L2_SLOT_REFRESH]);
    metrics_plain(o, "cachewarp_l2_master_switches_total", "counter",
                  "Redis Sentinel master changes the workers followed.",
                  c[CW_METRICS_L2_MASTER_SWITCH]);
    metrics_plain(o, "cachewarp_l2_ready_workers", "gauge",
                  "Workers whose L2 client is usable now: connected, its breaker closed.",
                  c[CW_METRICS_L2_READY]);
    metrics_plain(o, "cachewarp_worker_restarts_total", "counter",
                  "Child processes (workers, refresher, stats) the supervisor restarted.",
                  s->n.worker_restarts);
    metrics_plain(o, "cachewarp_access_log_dropped_lines_total", "counter",
                  "Access-log lines dropped because the writer fell behind or failed.",
                  c[CW_METRICS_ACCESSLOG_DROPPED]);
    metrics_plain(o, "cachewarp_refresh_asks_dropped_total", "counter",
                  "Background refreshes hits asked for while the refresher was behind "
                  "(the worker's ask ring full); a later hit asks again.",
                  c[CW_METRICS_REFRESH_ASK_DROPPED]);
}

int cw_metrics_format(const struct cw_metrics_snapshot *s, struct cw_metrics_buf *out)
{
    struct metrics_out o = {out, 0};

    metrics_family(&o, "cachewarp_build_info", "gauge",
                   "CacheWarp build: always 1, the version as a label.");
    metrics_puts(&o, "cachewarp_build_info{");
    metrics_label(&o, "version", s->version ? s->version : "unknown");
    metrics_puts(&o, "} 1\n");
    if (s->start_time_ms > 0) {
        char v[32];
        metrics_seconds(v, sizeof(v), (uint64_t)s->start_time_ms * 1000);
        metrics_family(&o, "cachewarp_start_time_seconds", "gauge",
                       "When the supervisor started, in seconds since the Unix epoch.");
        metrics_printf(&o, "cachewarp_start_time_seconds %s\n", v);
    }
    metrics_requests(&o, s);
    metrics_origins(&o, s);
    metrics_l1(&o, s);
    metrics_background(&o, s);
    return o.rc;
}
