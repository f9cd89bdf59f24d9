/* shm/seg_types.h - the layout of the shared-memory segment, types only.
 *
 * The supervisor maps one segment (MAP_SHARED | MAP_ANONYMOUS) before it forks, so every
 * process sees the same bytes at the same address. The layout is fixed and carries a
 * version word; fields are _Atomic and updated with relaxed order unless a comment says
 * otherwise. Each process owns one counter slot, on its own cache lines, and a restarted
 * process takes over the slot of the one it replaces, so sums never go backwards. */
#ifndef CW_SEG_TYPES_H
#define CW_SEG_TYPES_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/limits.h"

#define CW_SEG_VERSION      1
#define CW_SEG_SLOTS        (CW_LIMIT_WORKERS + 4) /* workers, refresher, stats, spare */
#define CW_SEG_SLOT_REFRESHER CW_LIMIT_WORKERS
#define CW_SEG_SLOT_STATS     (CW_LIMIT_WORKERS + 1)
#define CW_SEG_FILL_BUCKETS 4096                   /* power of two */
#define CW_SEG_HIT_BITS     (1u << 20)             /* bits for eviction's second chance */
#define CW_SEG_CACHE_LINE   64

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
    CW_SEG_COUNTER_COUNT
};

struct cw_seg_slot {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t c[CW_SEG_COUNTER_COUNT];
    _Atomic int32_t pid; /* current owner, 0 = free */
};

struct cw_seg {
    uint32_t version;
    uint32_t slot_count;
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t worker_restarts;
    _Atomic uint64_t started_at_ms;
    /* Fill generations: a fill of key k bumps fill_gen[hash(k) % buckets] (release) and
     * waiters compare it (acquire) instead of polling LMDB. */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t fill_gen[CW_SEG_FILL_BUCKETS];
    /* One bit per hashed key, set on a hit, cleared by eviction's sweep. */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t hit_bits[CW_SEG_HIT_BITS / 64];
    struct cw_seg_slot slots[CW_SEG_SLOTS];
};

#endif /* CW_SEG_TYPES_H */
