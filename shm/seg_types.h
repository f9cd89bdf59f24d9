/* shm/seg_types.h - the layout of the shared-memory segment, types only.
 *
 * The supervisor maps one segment (MAP_SHARED | MAP_ANONYMOUS) before it forks, so every
 * process sees the same bytes at the same address. The layout is fixed and carries a
 * version word; fields are _Atomic and updated with relaxed order unless a comment says
 * otherwise. Each process owns one counter slot, on its own cache lines, and a restarted
 * process takes over the slot of the one it replaces, so sums never go backwards. */
#ifndef CW_SEG_TYPES_H
#define CW_SEG_TYPES_H

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/limits.h"

#define CW_SEG_VERSION        3
#define CW_SEG_SLOTS          (CW_LIMIT_WORKERS + 4) /* workers, refresher, stats, spare */
#define CW_SEG_SLOT_REFRESHER CW_LIMIT_WORKERS
#define CW_SEG_SLOT_STATS     (CW_LIMIT_WORKERS + 1)
#define CW_SEG_FILL_BUCKETS   4096                    /* power of two */
#define CW_SEG_WAKE_WORDS     (CW_LIMIT_WORKERS / 64) /* a bit per worker slot */
#define CW_SEG_HIT_BITS       (1u << 20)              /* bits for eviction's second chance */
#define CW_SEG_CACHE_LINE     64

/* Per-route and per-origin detail. Routes and origins past the last index fold into it (the
 * stats process labels it "other" when more than one folds there); requests that matched no
 * route have a bucket of their own (CW_SEG_ROUTE_NONE). 33 x 7 x 3 request counters and
 * 33 x 7 latency histograms make about 38 KiB a slot, 10 MiB for all 260 slots (the size is
 * logged at start); pages of slots no process uses are never touched by a writer. */
#define CW_SEG_ROUTES        32            /* individual routes, the last one shared */
#define CW_SEG_ROUTE_NONE    CW_SEG_ROUTES /* no route matched (404, 400) */
#define CW_SEG_ROUTE_BUCKETS (CW_SEG_ROUTES + 1)
#define CW_SEG_ORIGINS       16
#define CW_SEG_LAT_BUCKETS   14 /* finite bounds; see CW_SEG_LAT_BOUNDS_US */
/* Upper bounds of the latency buckets, in microseconds: 0.5 ms to 10 s, the span between a
 * hit from L1 and an origin timeout. A larger value goes to +Inf only. */
#define CW_SEG_LAT_BOUNDS_US                                                                       \
    {                                                                                              \
        500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,      \
            5000000, 10000000                                                                      \
    }

/* What the cache did with a request; the order is the worker's enum worker_result. */
enum cw_seg_result {
    CW_SEG_RESULT_HIT = 0,
    CW_SEG_RESULT_MISS,
    CW_SEG_RESULT_STALE,
    CW_SEG_RESULT_REVALIDATED,
    CW_SEG_RESULT_PASS,
    CW_SEG_RESULT_ERROR,
    CW_SEG_RESULT_STALE_ERROR,
    CW_SEG_RESULT_COUNT
};

/* The request method, as a class: the two a cache answers, and every other (unsafe) one. */
enum cw_seg_method {
    CW_SEG_METHOD_GET = 0,
    CW_SEG_METHOD_HEAD,
    CW_SEG_METHOD_OTHER,
    CW_SEG_METHOD_COUNT
};

/* An origin answer's status class; CW_SEG_OSTATUS_ERROR is a transport failure (connect
 * error, timeout, bad response), not a 5xx. */
enum cw_seg_ostatus {
    CW_SEG_OSTATUS_1XX = 0,
    CW_SEG_OSTATUS_2XX,
    CW_SEG_OSTATUS_3XX,
    CW_SEG_OSTATUS_4XX,
    CW_SEG_OSTATUS_5XX,
    CW_SEG_OSTATUS_ERROR,
    CW_SEG_OSTATUS_COUNT
};

/* Per-process counters. Append only: the stats process prints them by index. */
enum cw_seg_counter {
    CW_SEG_REQ_HIT = 0,
    CW_SEG_REQ_MISS,
    CW_SEG_REQ_STALE,
    CW_SEG_REQ_REVALIDATED,
    CW_SEG_REQ_PASS,
    CW_SEG_REQ_ERROR,
    CW_SEG_REQ_STALE_ERROR,
    CW_SEG_ORIGIN_REQ,
    CW_SEG_ORIGIN_ERR,
    CW_SEG_STORE_PUT,
    CW_SEG_STORE_PUT_FAIL,
    CW_SEG_STORE_BAD_ENTRY,
    CW_SEG_FETCH_QUEUE_FULL,
    CW_SEG_COALESCED,
    CW_SEG_BYTES_OUT,
    CW_SEG_REFRESH_OK,           /* background refresh stored a new answer */
    CW_SEG_REFRESH_NOT_MODIFIED, /* background refresh got 304 */
    CW_SEG_REFRESH_FAIL,         /* background refresh failed or was not storable */
    CW_SEG_EVICT_EXPIRED,
    CW_SEG_EVICT_CLOCK,
    CW_SEG_EVICT_VISITED,       /* entries the eviction hand passed */
    CW_SEG_EVICT_SECOND_CHANCE, /* hit bits the eviction hand cleared */
    CW_SEG_ACCESSLOG_DROPPED,   /* access-log lines dropped: buffer full, or write failed */
    CW_SEG_COUNTER_COUNT
};

/* A latency histogram: one count per bucket (not cumulative; the last is +Inf only) and the
 * sum of the observations. The count is the sum of the buckets. */
struct cw_seg_hist {
    _Atomic uint64_t b[CW_SEG_LAT_BUCKETS + 1];
    _Atomic uint64_t sum_us;
};

/* One process's counters. The struct is a multiple of the cache line (the first member is
 * aligned to it), so neighbouring slots never share a line. */
struct cw_seg_slot {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t c[CW_SEG_COUNTER_COUNT];
    _Atomic int32_t pid; /* current owner, 0 = free */
    /* Client requests by route, result and method class. */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t
        req[CW_SEG_ROUTE_BUCKETS][CW_SEG_RESULT_COUNT][CW_SEG_METHOD_COUNT];
    struct cw_seg_hist req_lat[CW_SEG_ROUTE_BUCKETS][CW_SEG_RESULT_COUNT];
    /* Origin requests by origin and status class, and their latency. */
    _Atomic uint64_t origin_req[CW_SEG_ORIGINS][CW_SEG_OSTATUS_COUNT];
    struct cw_seg_hist origin_lat[CW_SEG_ORIGINS];
};

/* A worker slot's wake-up word, on its own cache line: a filler bumps seq and wakes it. */
struct cw_seg_wake {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t seq;
};

struct cw_seg {
    uint32_t version;
    uint32_t slot_count;
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t worker_restarts;
    _Atomic uint64_t started_at_ms; /* wall clock, set by cw_seg_create() */
    /* Fill generations: a fill of key k bumps fill_gen[hash(k) % buckets] (cw_seg_fill_done)
     * and waiters compare it instead of polling LMDB. */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t fill_gen[CW_SEG_FILL_BUCKETS];
    /* Who waits on a bucket: bit s of fill_watch[b] is set while worker slot s has a
     * coalesced waiter on bucket b (only that worker sets or clears its bit). A fill bumps
     * the generation, then wakes every slot whose bit it sees (seq_cst on both sides: a
     * waiter sets its bit before it re-reads the generation). 128 KiB. */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t fill_watch[CW_SEG_FILL_BUCKETS][CW_SEG_WAKE_WORDS];
    /* One futex word per worker slot, which its waiter thread sleeps on (FUTEX_WAIT, shared:
     * the mapping is MAP_SHARED, so the word is the same futex in every process). */
    struct cw_seg_wake wake[CW_LIMIT_WORKERS];
    /* One bit per hashed key, set on a hit, cleared by eviction's sweep. */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t hit_bits[CW_SEG_HIT_BITS / 64];
    struct cw_seg_slot slots[CW_SEG_SLOTS];
};

static_assert(sizeof(struct cw_seg_slot) % CW_SEG_CACHE_LINE == 0, "slots share cache lines");
static_assert(sizeof(struct cw_seg_wake) == CW_SEG_CACHE_LINE, "wake words share cache lines");
static_assert(CW_LIMIT_WORKERS % 64 == 0, "fill_watch has a whole word per 64 workers");
static_assert(sizeof(_Atomic uint32_t) == 4, "a futex word is 32 bits");
static_assert(sizeof(struct cw_seg) < (64u << 20), "the segment outgrew 64 MiB");

#endif /* CW_SEG_TYPES_H */
