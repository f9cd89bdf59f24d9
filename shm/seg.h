/* shm/seg.h - the shared-memory segment: counters, latency histograms, fill generations
 * and the futex words that wake coalesced waiters, hit bits.
 *
 * Owns one anonymous shared mapping, made by the supervisor before fork() and inherited by
 * every child; nothing in it is a pointer, so it means the same in every process. Children
 * never unmap it. Counter updates are relaxed atomics on the caller's own slot. Nothing here
 * allocates, and only cw_seg_wake_wait() blocks (a shared futex on the slot's wake word).
 * The stats process reads every slot with cw_seg_collect(). */
#ifndef CW_SEG_H
#define CW_SEG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"
#include "shm/seg_types.h"

struct cw_key;
struct cw_metrics_counts;

/* Maps a new zeroed segment: 0 and *out, or -errno with the cause logged. */
CW_MUST_CHECK int cw_seg_create(struct cw_seg **out);
/* Unmaps it (supervisor only, at exit). Takes NULL. */
void cw_seg_destroy(struct cw_seg *seg);

/* Adds n to counter c of slot. slot must be < CW_SEG_SLOTS. */
static inline void cw_seg_add(struct cw_seg *seg, int slot, enum cw_metrics_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&seg->slots[slot].c[c], n, memory_order_relaxed);
}

/* Sets counter c of slot to v: for the few counters that are a process's gauge (the L2
 * breaker's state), summed over the slots like the others. */
static inline void cw_seg_set(struct cw_seg *seg, int slot, enum cw_metrics_counter c, uint64_t v)
{
    atomic_store_explicit(&seg->slots[slot].c[c], v, memory_order_relaxed);
}

/* Sum of counter c over every slot. */
uint64_t cw_seg_sum(const struct cw_seg *seg, enum cw_metrics_counter c);

/* Sums every slot's counters and histograms, and the segment-wide counters, into *out
 * (overwritten). Relaxed loads: each value is one a writer stored, and every value only
 * grows, so a later call never reports less than an earlier one. */
void cw_seg_collect(const struct cw_seg *seg, struct cw_metrics_counts *out);

/* The latency bucket of a duration: the first bound >= us, or CW_METRICS_LAT_BUCKETS (+Inf). */
static inline int cw_seg_lat_bucket(int64_t us)
{
    static const int64_t bounds[CW_METRICS_LAT_BUCKETS] = CW_METRICS_LAT_BOUNDS_US;
    int i = 0;

    while (i < CW_METRICS_LAT_BUCKETS && us > bounds[i])
        i++;
    return i;
}

/* Adds one observation of us microseconds (a negative one counts as 0) to h. */
static inline void cw_seg_hist_add(struct cw_seg_hist *h, int64_t us)
{
    if (us < 0) us = 0;
    atomic_fetch_add_explicit(&h->b[cw_seg_lat_bucket(us)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)us, memory_order_relaxed);
}

/* The method class of a request method (NUL-terminated; NULL counts as other). */
static inline enum cw_metrics_method cw_seg_method_of(const char *method)
{
    if (method == NULL) return CW_METRICS_METHOD_OTHER;
    if (strcmp(method, "GET") == 0) return CW_METRICS_METHOD_GET;
    if (strcmp(method, "HEAD") == 0) return CW_METRICS_METHOD_HEAD;
    return CW_METRICS_METHOD_OTHER;
}

/* The status class of an origin answer; 0 (no answer) and anything outside 100..599 are
 * CW_METRICS_OSTATUS_ERROR. */
static inline enum cw_metrics_ostatus cw_seg_ostatus_of(int status)
{
    if (status < 100 || status > 599) return CW_METRICS_OSTATUS_ERROR;
    return (enum cw_metrics_ostatus)(status / 100 - 1);
}

/* Counts one finished client request in slot: route is the index into cfg->routes (-1 when
 * no route matched; indexes past CW_METRICS_ROUTES - 1 share the last bucket), latency_us the
 * time from the request's arrival until its answer was sent. Out-of-range result or method
 * values are clamped, never trusted as indexes. */
static inline void cw_seg_record_request(struct cw_seg *seg, int slot, int route,
                                         enum cw_metrics_result result,
                                         enum cw_metrics_method method, int64_t latency_us)
{
    struct cw_seg_slot *s = &seg->slots[slot];
    unsigned rt = route < 0
                      ? CW_METRICS_ROUTE_NONE
                      : (route >= CW_METRICS_ROUTES ? CW_METRICS_ROUTES - 1 : (unsigned)route);
    unsigned res =
        (unsigned)result < CW_METRICS_RESULT_COUNT ? (unsigned)result : CW_METRICS_RESULT_ERROR;
    unsigned m =
        (unsigned)method < CW_METRICS_METHOD_COUNT ? (unsigned)method : CW_METRICS_METHOD_OTHER;

    atomic_fetch_add_explicit(&s->req[rt][res][m], 1, memory_order_relaxed);
    cw_seg_hist_add(&s->req_lat[rt][res], latency_us);
}

/* Counts one origin request in slot: origin is the index into cfg->origins (indexes past
 * CW_METRICS_ORIGINS - 1 share the last bucket; a negative one is not counted), status the
 * answer's status or 0 for a transport error, latency_us the time the fetch took. */
static inline void cw_seg_record_origin(struct cw_seg *seg, int slot, int origin, int status,
                                        int64_t latency_us)
{
    struct cw_seg_slot *s = &seg->slots[slot];
    unsigned o;

    if (origin < 0) return;
    o = origin >= CW_METRICS_ORIGINS ? CW_METRICS_ORIGINS - 1 : (unsigned)origin;
    atomic_fetch_add_explicit(&s->origin_req[o][cw_seg_ostatus_of(status)], 1,
                              memory_order_relaxed);
    cw_seg_hist_add(&s->origin_lat[o], latency_us);
}

/* The fill-generation bucket of a key: an index below CW_SEG_FILL_BUCKETS. */
static inline uint32_t cw_seg_fill_bucket(const struct cw_key *key)
{
    uint32_t b;
    memcpy(&b, key, sizeof(b));
    return b & (CW_SEG_FILL_BUCKETS - 1);
}

/* The fill generation of a key's bucket. Read it with acquire (or seq_cst after
 * cw_seg_fill_watch()); only cw_seg_fill_done() moves it. */
static inline _Atomic uint32_t *cw_seg_fill_gen(struct cw_seg *seg, const struct cw_key *key)
{
    return &seg->fill_gen[cw_seg_fill_bucket(key)];
}

/* Coalesced waiters: a worker that suspends a request on key k watches k's bucket
 * (cw_seg_fill_watch), then compares the bucket's generation with the one it saw before its
 * lookup; a filler bumps the generation and wakes the wake word of every worker slot that
 * watches the bucket (cw_seg_fill_done). The worker's waiter thread reads its wake word
 * before it compares generations and sleeps only while the word still holds that value
 * (cw_seg_wake_wait), so a fill at any moment after the watch is never missed. Only worker
 * slots (below CW_LIMIT_WORKERS) watch or wait. */

/* Bumps the fill generation of key's bucket and wakes every worker with a waiter on it:
 * one FUTEX_WAKE per watching worker, none when nobody watches. Any process, any thread. */
void cw_seg_fill_done(struct cw_seg *seg, const struct cw_key *key);

/* Sets or clears slot's watch bit on bucket (seq_cst). The caller counts its own waiters per
 * bucket and calls watch on the first, unwatch after the last. */
void cw_seg_fill_watch(struct cw_seg *seg, int slot, uint32_t bucket);
void cw_seg_fill_unwatch(struct cw_seg *seg, int slot, uint32_t bucket);
/* Clears every watch bit of slot: a (re)started worker, whose predecessor may have died
 * with waiters, so that fillers stop waking a slot that waits on nothing. */
void cw_seg_fill_unwatch_all(struct cw_seg *seg, int slot);

/* The current value of slot's wake word (seq_cst); pass it to cw_seg_wake_wait(). */
static inline uint32_t cw_seg_wake_seq(struct cw_seg *seg, int slot)
{
    return atomic_load(&seg->wake[slot].seq);
}

/* Bumps slot's wake word and wakes its sleeper, if any. */
void cw_seg_wake(struct cw_seg *seg, int slot);

/* Sleeps while slot's wake word equals seq, at most timeout_ms (< 0: no bound): 0 when woken
 * or when the word had already moved, -ETIMEDOUT, or -EINTR (a signal). Spurious returns
 * happen; the caller re-checks what it waits for. */
int cw_seg_wake_wait(struct cw_seg *seg, int slot, uint32_t seq, int64_t timeout_ms);

/* Background refresh asks (one ring per worker slot, shm/seg_types.h): a worker's hit asks
 * for a refresh without an LMDB write, and the refresher turns asks into wanted-refresh lease
 * records. Only the MHD thread of the worker in slot asks on slot's ring; only the refresher
 * takes. */

/* Queues an ask for key on slot's ring: true, or false when the ring is full (the caller
 * counts it; the next hit asks again). Never blocks. */
bool cw_seg_refresh_ask(struct cw_seg *seg, int slot, const struct cw_key *key,
                        int64_t asked_wall_ms);
/* Takes the oldest ask from slot's ring into *out: true, or false when it is empty. */
bool cw_seg_refresh_take(struct cw_seg *seg, int slot, struct cw_seg_refresh_ask *out);

/* Zeroes every origin's breaker and server health words and empties its DNS server table (a
 * reload: the new config's origin indexes may name other origins). Counters are kept. */
void cw_seg_origins_reset(struct cw_seg *seg);

/* Marks key as recently hit (eviction's second chance). */
static inline void cw_seg_hit(struct cw_seg *seg, const struct cw_key *key)
{
    uint32_t b;
    memcpy(&b, (const uint8_t *)key + 4, sizeof(b));
    b &= CW_SEG_HIT_BITS - 1;
    uint64_t bit = 1ull << (b & 63);
    /* Read first: a hot key's bit is already set, and a plain load keeps the line shared. */
    if (!(atomic_load_explicit(&seg->hit_bits[b >> 6], memory_order_relaxed) & bit))
        atomic_fetch_or_explicit(&seg->hit_bits[b >> 6], bit, memory_order_relaxed);
}

/* Worker heartbeats (shm/seg_types.h): the worker stamps its slot with a CLOCK_MONOTONIC time,
 * the supervisor reads it. 0 = never stamped. */
static inline void cw_seg_beat(struct cw_seg *seg, int slot, int64_t mono_ms)
{
    atomic_store_explicit(&seg->slots[slot].heartbeat_ms, mono_ms, memory_order_relaxed);
}
static inline int64_t cw_seg_beat_at(const struct cw_seg *seg, int slot)
{
    return atomic_load_explicit(&seg->slots[slot].heartbeat_ms, memory_order_relaxed);
}

/* Sampled request targets (cwctl top): a worker offers each finished request; one in
 * CW_SEG_URL_EVERY is kept in slot's ring (target cut to CW_SEG_URL_BYTES, route as for
 * cw_seg_record_request()). Never blocks; costs a relaxed increment when not sampled. Only
 * worker slots (below CW_LIMIT_WORKERS). */
void cw_seg_url_offer(struct cw_seg *seg, int slot, int route, const char *target, size_t len,
                      int64_t mono_ms);

/* A sample as read back: target is a copy, not NUL-terminated. */
struct cw_seg_url_copy {
    int64_t at_ms;
    int route; /* -1: none */
    uint16_t len;
    char target[CW_SEG_URL_BYTES];
};

/* Copies the whole samples of slot's ring taken at or after since_ms into out (at most cap),
 * newest first: the count. A sample being written meanwhile is skipped. */
size_t cw_seg_url_read(const struct cw_seg *seg, int slot, int64_t since_ms,
                       struct cw_seg_url_copy *out, size_t cap);

/* ---- DNS server tables (struct cw_seg_dns) ----------------------------------------------- */

/* Copies the table of d into out when gen (read with acquire by the caller) is a whole
 * table published for origin_id: true, or false while the writer is in the middle (try again
 * later) or for another origin's table. */
bool cw_seg_dns_read(const struct cw_seg_dns *d, uint32_t gen, uint64_t origin_id,
                     struct cw_seg_dns_server out[CW_LIMIT_ORIGIN_SERVERS]);
/* The servers in d's table for origin_id now (0: no table); a table being written counts as
 * none. */
unsigned cw_seg_dns_count(const struct cw_seg_dns *d, uint64_t origin_id);
/* Publishes table as d's new table (one writer at a time): readers see the old one or this
 * one, never a mix. */
void cw_seg_dns_write(struct cw_seg_dns *d, uint64_t origin_id,
                      const struct cw_seg_dns_server table[CW_LIMIT_ORIGIN_SERVERS]);

#endif /* CW_SEG_H */
