/* core/metrics_types.h - what CacheWarp counts: the counters, the result of a request and
 * the dimensions of the per-route and per-origin detail. Types only.
 *
 * One definition for every module that names a result or a counter: the worker records
 * them, the shm segment (shm/seg_types.h) sizes its slots by them, core/metrics prints them
 * and the access log words them. Each table indexed by one of these enums is sized by its
 * _COUNT and checked with static_assert where it is defined. Owns nothing. */
#ifndef CW_METRICS_TYPES_H
#define CW_METRICS_TYPES_H

/* Per-route and per-origin detail, kept in each shm segment slot (shm/seg_types.h). Routes and
 * origins past the last index fold into it (the stats process labels it "other" when more than one
 * folds there); requests that matched no route have a bucket of their own (CW_METRICS_ROUTE_NONE).
 * 33 x 7 x 3 request counters and 33 x 7 latency histograms make about 38 KiB a slot, 10 MiB for
 * all 260 slots (the size is logged at start); pages of slots no process uses are never touched by
 * a writer. */
#define CW_METRICS_ROUTES        32                /* individual routes, the last one shared */
#define CW_METRICS_ROUTE_NONE    CW_METRICS_ROUTES /* no route matched (404, 400) */
#define CW_METRICS_ROUTE_BUCKETS (CW_METRICS_ROUTES + 1)
#define CW_METRICS_ORIGINS       16
#define CW_METRICS_LAT_BUCKETS   14 /* finite bounds; see CW_METRICS_LAT_BOUNDS_US */
/* Upper bounds of the latency buckets, in microseconds: 0.5 ms to 10 s, the span between a
 * hit from L1 and an origin timeout. A larger value goes to +Inf only. */
#define CW_METRICS_LAT_BOUNDS_US                                                                   \
    {                                                                                              \
        500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,      \
            5000000, 10000000                                                                      \
    }

/* What the cache did with a request: the worker sets one per answer, the access log words it
 * (X-Cache style) and /metrics labels it; the first seven counters count the same thing. */
enum cw_metrics_result {
    CW_METRICS_RESULT_HIT = 0,
    CW_METRICS_RESULT_MISS,
    CW_METRICS_RESULT_STALE,
    CW_METRICS_RESULT_REVALIDATED,
    CW_METRICS_RESULT_PASS,
    CW_METRICS_RESULT_ERROR,
    CW_METRICS_RESULT_STALE_ERROR,
    CW_METRICS_RESULT_COUNT
};

/* The request method, as a class: the two a cache answers, and every other (unsafe) one. */
enum cw_metrics_method {
    CW_METRICS_METHOD_GET = 0,
    CW_METRICS_METHOD_HEAD,
    CW_METRICS_METHOD_OTHER,
    CW_METRICS_METHOD_COUNT
};

/* An origin answer's status class; CW_METRICS_OSTATUS_ERROR is a transport failure (connect
 * error, timeout, bad response), not a 5xx. */
enum cw_metrics_ostatus {
    CW_METRICS_OSTATUS_1XX = 0,
    CW_METRICS_OSTATUS_2XX,
    CW_METRICS_OSTATUS_3XX,
    CW_METRICS_OSTATUS_4XX,
    CW_METRICS_OSTATUS_5XX,
    CW_METRICS_OSTATUS_ERROR,
    CW_METRICS_OSTATUS_COUNT
};

/* Per-process counters. Append only: the stats process prints them by index. */
enum cw_metrics_counter {
    CW_METRICS_REQ_HIT = 0,
    CW_METRICS_REQ_MISS,
    CW_METRICS_REQ_STALE,
    CW_METRICS_REQ_REVALIDATED,
    CW_METRICS_REQ_PASS,
    CW_METRICS_REQ_ERROR,
    CW_METRICS_REQ_STALE_ERROR,
    CW_METRICS_ORIGIN_REQ,
    CW_METRICS_ORIGIN_ERR,
    CW_METRICS_STORE_PUT,
    CW_METRICS_STORE_PUT_FAIL,
    CW_METRICS_STORE_BAD_ENTRY,
    CW_METRICS_FETCH_QUEUE_FULL,
    CW_METRICS_COALESCED,
    CW_METRICS_BYTES_OUT,
    CW_METRICS_REFRESH_OK,           /* background refresh stored a new answer */
    CW_METRICS_REFRESH_NOT_MODIFIED, /* background refresh got 304 */
    CW_METRICS_REFRESH_FAIL,         /* background refresh failed or was not storable */
    CW_METRICS_EVICT_EXPIRED,
    CW_METRICS_EVICT_CLOCK,
    CW_METRICS_EVICT_VISITED,       /* entries the eviction hand passed */
    CW_METRICS_EVICT_SECOND_CHANCE, /* hit bits the eviction hand cleared */
    CW_METRICS_ACCESSLOG_DROPPED,   /* access-log lines dropped: buffer full, or write failed */
    CW_METRICS_REFRESH_ASK_DROPPED, /* refresh asks dropped: the worker's ring was full */
    CW_METRICS_L2_HIT,              /* requests answered with an entry read from L2 */
    CW_METRICS_L2_MISS,             /* L2 lookups that found nothing */
    CW_METRICS_L2_BAD,              /* L2 values refused (bad bytes, other key, too large) */
    CW_METRICS_L2_ERROR,            /* L2 commands failed: error replies, lost connections */
    CW_METRICS_L2_TIMEOUT,          /* L2 commands past redis.timeout */
    CW_METRICS_L2_SKIPPED,          /* L2 not asked: breaker open or no connection */
    CW_METRICS_L2_WRITE,            /* entries written to L2 */
    CW_METRICS_L2_WRITE_FAIL,       /* L2 writes refused or failed */
    CW_METRICS_L2_BREAKER_OPEN,     /* gauge: processes whose L2 breaker is open (0 or 1 each) */
    CW_METRICS_L2_BREAKER_PROBING,  /* gauge: processes whose L2 breaker probes */
    CW_METRICS_L2_COALESCED,        /* answered from L2 after another node's fill */
    CW_METRICS_L2_LEASE_TAKEN,      /* Redis leases taken: this node fetched for the fleet */
    CW_METRICS_L2_LEASE_BUSY,       /* Redis lease held by another node: waited for its fill */
    CW_METRICS_L2_LEASE_FAILED,     /* Redis lease not asked or not answered: fetched alone */
    CW_METRICS_L2_WAIT_TIMEOUT,     /* waits for another node's fill that ran out */
    CW_METRICS_L2_READY,            /* gauge: workers whose L2 is usable (connected, closed) */
    CW_METRICS_L2_REDIRECT,         /* cluster MOVED and ASK followed */
    CW_METRICS_L2_SLOT_REFRESH,     /* cluster slot maps loaded (CLUSTER SLOTS) */
    CW_METRICS_L2_MASTER_SWITCH,    /* sentinel: the master's address changed */
    CW_METRICS_HIT_READY,           /* hits answered with a ready answer (workers/req_ready.h) */
    CW_METRICS_COUNTER_COUNT
};

#endif /* CW_METRICS_TYPES_H */
