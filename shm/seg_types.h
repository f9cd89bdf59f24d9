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
#include "core/metrics_types.h" /* what each slot counts, and its dimensions */

#define CW_SEG_VERSION        7
#define CW_SEG_SLOTS          (CW_LIMIT_WORKERS + 4) /* workers, refresher, stats, spare */
#define CW_SEG_SLOT_REFRESHER CW_LIMIT_WORKERS
#define CW_SEG_SLOT_STATS     (CW_LIMIT_WORKERS + 1)
#define CW_SEG_FILL_BUCKETS   4096                    /* power of two */
#define CW_SEG_WAKE_WORDS     (CW_LIMIT_WORKERS / 64) /* a bit per worker slot */
#define CW_SEG_HIT_BITS       (1u << 20)              /* bits for eviction's second chance */
#define CW_SEG_CACHE_LINE     64
#define CW_SEG_REFRESH_ASKS   256 /* refresh asks a worker may leave unread; power of two */
#define CW_SEG_URL_SAMPLES    128 /* sampled request targets kept per worker; power of two */
#define CW_SEG_URL_BYTES      112 /* of a sampled target; longer ones are cut */
#define CW_SEG_URL_EVERY      8   /* a worker samples one request in this many */
/* A worker whose heartbeat is older than this is wedged: three of its 1 s periods, so that
 * one slow period (a busy machine) is not a wedge. */
#define CW_SEG_BEAT_STALE_MS 3000

/* A latency histogram: one count per bucket (not cumulative; the last is +Inf only) and the
 * sum of the observations. The count is the sum of the buckets. */
struct cw_seg_hist {
    _Atomic uint64_t b[CW_METRICS_LAT_BUCKETS + 1];
    _Atomic uint64_t sum_us;
};

/* One process's counters. The struct is a multiple of the cache line (the first member is
 * aligned to it), so neighbouring slots never share a line. */
struct cw_seg_slot {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t c[CW_METRICS_COUNTER_COUNT];
    _Atomic int32_t pid; /* current owner, 0 = free */
    /* A worker's proof of life (CLOCK_MONOTONIC ms, which every process shares): stamped each
     * second while its MHD thread answers a request and its fetch loop runs a task
     * (workers/worker_beat.h); the supervisor withholds WATCHDOG=1 when it is old. */
    _Atomic int64_t heartbeat_ms;
    /* Client requests by route, result and method class. */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t
        req[CW_METRICS_ROUTE_BUCKETS][CW_METRICS_RESULT_COUNT][CW_METRICS_METHOD_COUNT];
    struct cw_seg_hist req_lat[CW_METRICS_ROUTE_BUCKETS][CW_METRICS_RESULT_COUNT];
    /* Origin requests by origin and status class, and their latency. */
    _Atomic uint64_t origin_req[CW_METRICS_ORIGINS][CW_METRICS_OSTATUS_COUNT];
    struct cw_seg_hist origin_lat[CW_METRICS_ORIGINS];
};

/* A worker slot's wake-up word, on its own cache line: a filler bumps seq and wakes it. */
struct cw_seg_wake {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t seq;
};

/* A background refresh asked for by a hit: the key's 16-byte hash and when it was asked. */
struct cw_seg_refresh_ask {
    uint8_t key[16];
    int64_t asked_wall_ms; /* wall clock, comparable with an entry's response time */
};

/* One worker's refresh asks: a single-producer (the worker's MHD thread), single-consumer
 * (the refresher) ring with free-running indexes. The producer writes rec[tail % size], then
 * publishes it by storing tail (release); the consumer reads rec[head % size] after loading
 * tail (acquire), then frees it by storing head (release). Both indexes live here, so a
 * restarted worker or refresher continues its predecessor's ring. */
struct cw_seg_refresh_ring {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t tail; /* the worker's */
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t head; /* the refresher's */
    _Alignas(CW_SEG_CACHE_LINE) struct cw_seg_refresh_ask rec[CW_SEG_REFRESH_ASKS];
};

/* One server of an origin found by DNS: an address and port, its weight, and the configured
 * server it came from (whose "scheme://host:port" gives the Host header, SNI and URL). */
struct cw_seg_dns_server {
    uint8_t family; /* 0 = empty slot, 4 or 6 */
    uint8_t is_backup;
    uint16_t port;
    uint16_t weight;
    uint16_t cfg_server; /* index into cw_config_origin.servers */
    uint8_t addr[16];    /* network order; the first 4 bytes for IPv4 */
};

/* An origin's server table as DNS says it is (workers/upstream_dns.c writes it, one writer per
 * node: the refresher; every process's pool follows it). Slot k is server k of the pool, so
 * that the health words of struct cw_seg_origin stay with their server: a server keeps its
 * slot while it lasts. gen is a seqlock word: 0 = no table yet (the configured servers are
 * used as they are), odd while the writer changes the slots, and a reader that sees the same
 * even value before and after its copy has a whole table. */
struct cw_seg_dns {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t gen;
    _Atomic uint64_t lookups;  /* DNS queries sent */
    _Atomic uint64_t failures; /* rounds of lookups that failed (the last table kept) */
    _Atomic uint64_t changes;  /* servers added or removed */
    /* Which origin the table is for (cw_upstream_dns_origin_id() of its settings), written
     * with the slots: a table an old refresher published for another config is not taken. */
    uint64_t origin_id;
    struct cw_seg_dns_server slot[CW_LIMIT_ORIGIN_SERVERS];
};

/* An origin's shared health (workers/upstream_pool.c), one per cfg->origins index: the circuit
 * breaker's word and each server's passive and active health words (core/pool.h decodes them),
 * moved by compare-and-swap in any process, and what they counted (segment-wide, so a restart
 * loses nothing). A reload zeroes them (cw_seg_origins_reset): indexes may name other origins. */
struct cw_seg_origin {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint64_t breaker;
    _Atomic uint64_t breaker_opens; /* transitions to open */
    _Atomic uint64_t fail_fast;     /* requests refused without an origin request */
    _Atomic uint64_t retries;       /* requests sent again to another server */
    _Atomic uint64_t server_health[CW_LIMIT_ORIGIN_SERVERS]; /* passive */
    _Atomic uint32_t server_probe[CW_LIMIT_ORIGIN_SERVERS];  /* active checks */
    struct cw_seg_dns dns; /* servers found by DNS; a reload empties the table */
};

/* One sampled request target, for cwctl top's URL ranking. seq is a seqlock word: a writer
 * claims index i of the ring (fetch_add on tail), stores 2i+1, the bytes, then 2i+2 (release);
 * a reader that finds 2i+2 both before and after its copy has a whole sample. */
struct cw_seg_url_sample {
    _Atomic uint32_t seq;
    uint16_t len;
    uint16_t route;        /* index into cfg->routes + 1; 0 = no route */
    _Atomic int64_t at_ms; /* CLOCK_MONOTONIC */
    char target[CW_SEG_URL_BYTES];
};

/* One worker slot's samples: a ring with a free-running index. Normally one writer (the
 * worker's MHD thread); during a reload the retiring worker of the same slot may write too,
 * which the claim by fetch_add and the seqlock make safe. */
struct cw_seg_url_ring {
    _Alignas(CW_SEG_CACHE_LINE) _Atomic uint32_t tail;
    _Atomic uint32_t every; /* requests since the last sample */
    _Alignas(CW_SEG_CACHE_LINE) struct cw_seg_url_sample rec[CW_SEG_URL_SAMPLES];
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
    /* Refresh asks, one ring per worker slot: a hit asks without any LMDB write. 1.1 MiB. */
    struct cw_seg_refresh_ring refresh[CW_LIMIT_WORKERS];
    /* Origin breakers and server health, shared so that every process skips a down server. */
    struct cw_seg_origin origins[CW_LIMIT_ORIGINS];
    /* Sampled request targets, one ring per worker slot (cwctl top). 4 MiB. */
    struct cw_seg_url_ring urls[CW_LIMIT_WORKERS];
    struct cw_seg_slot slots[CW_SEG_SLOTS];
};

static_assert(sizeof(struct cw_seg_slot) % CW_SEG_CACHE_LINE == 0, "slots share cache lines");
static_assert(sizeof(struct cw_seg_wake) == CW_SEG_CACHE_LINE, "wake words share cache lines");
static_assert(CW_LIMIT_WORKERS % 64 == 0, "fill_watch has a whole word per 64 workers");
static_assert((CW_SEG_REFRESH_ASKS & (CW_SEG_REFRESH_ASKS - 1)) == 0,
              "the refresh ring's indexes wrap at a power of two");
static_assert(sizeof(struct cw_seg_refresh_ask) == 24, "refresh ask layout is pinned");
static_assert(sizeof(struct cw_seg_url_sample) == 128, "URL sample layout is pinned");
static_assert((CW_SEG_URL_SAMPLES & (CW_SEG_URL_SAMPLES - 1)) == 0,
              "the URL ring's index wraps at a power of two");
static_assert(sizeof(struct cw_seg_dns_server) == 24, "DNS server layout is pinned");
static_assert(sizeof(_Atomic uint32_t) == 4, "a futex word is 32 bits");
static_assert(sizeof(_Atomic uint64_t) == 8, "health and breaker words are 64 bits");
static_assert(sizeof(struct cw_seg) < (64u << 20), "the segment outgrew 64 MiB");

#endif /* CW_SEG_TYPES_H */
