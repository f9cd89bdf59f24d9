/* core/metrics.h - the Prometheus text exposition (format 0.0.4) of CacheWarp's counters.
 *
 * Pure: cw_metrics_format() turns a snapshot the caller filled (sums of the shm segment's
 * slots, the L1 size, route and origin labels) into text appended to a growable buffer the
 * caller owns; no clock, file or socket. The stats process serves the text on /metrics and
 * writes it to the node_exporter textfile. Metric names follow Prometheus conventions:
 * prefix cachewarp_, base units (seconds, bytes), _total on counters, HELP and TYPE on
 * every family, label values escaped. The families are listed in docs/METRICS.md.
 * Thread-safe: no state. */
#ifndef CW_METRICS_H
#define CW_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/limits.h"
#include "core/metrics_types.h"

#define CW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A latency histogram as read: per-bucket counts (not cumulative; the last is +Inf only)
 * and the sum of the observations in microseconds. */
struct cw_metrics_hist {
    uint64_t b[CW_METRICS_LAT_BUCKETS + 1];
    uint64_t sum_us;
};

/* The counters of every slot added up (cw_seg_collect() fills it). */
struct cw_metrics_counts {
    uint64_t c[CW_METRICS_COUNTER_COUNT];
    uint64_t req[CW_METRICS_ROUTE_BUCKETS][CW_METRICS_RESULT_COUNT][CW_METRICS_METHOD_COUNT];
    struct cw_metrics_hist req_lat[CW_METRICS_ROUTE_BUCKETS][CW_METRICS_RESULT_COUNT];
    uint64_t origin_req[CW_METRICS_ORIGINS][CW_METRICS_OSTATUS_COUNT];
    struct cw_metrics_hist origin_lat[CW_METRICS_ORIGINS];
    uint64_t worker_restarts;
};

/* What one exposition says. Strings are borrowed for the call and need not be escaped. */
struct cw_metrics_snapshot {
    const char *version; /* cachewarp_build_info{version} */
    struct cw_metrics_counts n;
    /* Labels of the route buckets in use: route_labels[i] for bucket i < route_count
     * (route_count <= CW_METRICS_ROUTES). The no-route bucket is always printed as "none". */
    const char *route_labels[CW_METRICS_ROUTES];
    size_t route_count;
    const char *origin_labels[CW_METRICS_ORIGINS];
    size_t origin_count;
    /* Origin pools (the segment's shared health), for origin i < origin_count: breaker state
     * (0 closed, 1 half-open, 2 open) and what it counted, and each server's label (its
     * "scheme://host:port") and whether it takes requests now. */
    struct cw_metrics_pool {
        int breaker_state;
        uint64_t breaker_opens;
        uint64_t fail_fast;
        uint64_t retries;
        size_t server_count; /* <= CW_LIMIT_ORIGIN_SERVERS */
        const char *server_labels[CW_LIMIT_ORIGIN_SERVERS];
        bool server_up[CW_LIMIT_ORIGIN_SERVERS];
        /* DNS discovery (workers/upstream_dns.h): queries sent, rounds that failed, servers
         * added or removed, and servers in the published table (0: none published). */
        uint64_t dns_lookups;
        uint64_t dns_failures;
        uint64_t dns_changes;
        uint64_t dns_servers;
    } pools[CW_METRICS_ORIGINS];
    bool has_l1; /* false: the L1 gauges are left out (the store could not be read) */
    uint64_t l1_entries;
    uint64_t l1_used_bytes;
    uint64_t l1_size_bytes;
    int64_t start_time_ms; /* wall clock of the supervisor's start; <= 0 leaves it out */
};

/* A growable text buffer. Start zeroed; the caller owns p and frees it with
 * cw_metrics_buf_free(). */
struct cw_metrics_buf {
    char *p;
    size_t len;
    size_t cap;
};

void cw_metrics_buf_free(struct cw_metrics_buf *b);

/* Appends the whole exposition of s to out (NUL-terminated, len excludes the NUL): 0, or
 * -ENOMEM (out then holds a truncated text the caller discards). Request counters are
 * printed for every result and method of every route in use (zero included, so that rate()
 * sees the series from the start); a latency histogram is printed once its route and result
 * have seen a request. */
CW_MUST_CHECK int cw_metrics_format(const struct cw_metrics_snapshot *s,
                                    struct cw_metrics_buf *out);

#endif /* CW_METRICS_H */
