/* shm/store_evict.c - page accounting and eviction: the CLOCK sweep over obj, the
 * background step, and the emergency path of a put that met a full map; see the eviction
 * section of shm/store.h.
 *
 * LMDB hands out a page freed by txn N only from txn N+2 on (it keeps the previous
 * snapshot's meta page valid), so the emergency path commits one more small txn after its
 * deletes before the put is retried. */
#include "shm/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "shm/seg.h"
#include "shm/store_int.h"

#define STORE_META_HAND       "hand"
#define STORE_META_SETTLE     "settle"
#define STORE_EVICT_BATCH     64  /* entries visited per write txn */
#define STORE_EVICT_PUT_VISIT 128 /* bound of the pass a put over the high watermark runs */
#define STORE_ROOM_VISIT                                                                           \
    4096 /* bound of one emergency attempt: two turns of CLOCK over                                \
          * 2048 entries of a small map, a slice of a large one */
#define STORE_ROOM_ATTEMPTS 4
#define STORE_ROOM_SHARE    4 /* an entry over 1/4 of the map never evicts others */
#define STORE_FIXED_PAGES   3 /* two meta pages and the main db's root */

/* What one sweep may do. */
struct store_sweep {
    struct cw_seg *seg;
    int64_t now_ms;
    size_t max_visit;
    size_t target_pages;       /* evict live entries while used > this; SIZE_MAX = never */
    size_t freed_goal;         /* also stop once this many pages were freed (0 = no goal) */
    size_t batch;              /* entries per txn */
    size_t freed_pages;        /* out: pages freed so far */
    const struct cw_key *keep; /* never evicted (the entry a put stores); may be NULL */
    struct cw_store_evict_stats *stats;
};

static int64_t store_wall_ms(void);
static bool store_hit_test_clear(struct cw_seg *seg, const uint8_t *key);
static bool store_is_expired(const struct cw_entry_hdr *h, int64_t now_ms);
static int store_hand_load(struct cw_store *st, MDB_txn *txn, MDB_cursor *cur, MDB_val *k,
                           MDB_val *v);
static int store_hand_save(struct cw_store *st, MDB_txn *txn, const MDB_val *k);
static int store_sweep_visit(struct cw_store *st, MDB_txn *txn, MDB_cursor *cur, const MDB_val *k,
                             const MDB_val *v, struct store_sweep *sw, size_t *used);
static int store_sweep_batch(struct cw_store *st, struct store_sweep *sw, bool *more);
static int store_sweep(struct cw_store *st, struct store_sweep *sw);
static int store_settle(struct cw_store *st);

/* The clock of the entries' *_until_ms fields, for the paths that run inside a put and so
 * have no now_ms from the caller. */
static int64_t store_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cw_store_set_seg(struct cw_store *st, struct cw_seg *seg, int slot)
{
    st->seg = seg;
    st->slot = slot;
}

/* Counts what a put's own eviction removed, as the refresher counts its steps. */
static void store_evict_count(struct cw_store *st, const struct cw_store_evict_stats *stats)
{
    if (st->seg == NULL) return;
    cw_seg_add(st->seg, st->slot, CW_METRICS_EVICT_EXPIRED, stats->expired);
    cw_seg_add(st->seg, st->slot, CW_METRICS_EVICT_CLOCK, stats->clock);
    cw_seg_add(st->seg, st->slot, CW_METRICS_EVICT_VISITED, stats->visited);
    cw_seg_add(st->seg, st->slot, CW_METRICS_EVICT_SECOND_CHANCE, stats->second_chance);
}

int store_used_pages(struct cw_store *st, MDB_txn *txn, size_t *used)
{
    const MDB_dbi dbis[] = {st->obj, st->vary, st->lease, st->tag, st->meta};
    size_t sum = STORE_FIXED_PAGES;
    MDB_stat ms;

    for (size_t i = 0; i < CW_ARRAY_LEN(dbis); i++) {
        int rc = mdb_stat(txn, dbis[i], &ms);
        if (rc != MDB_SUCCESS) {
            store_log_mdb("mdb_stat", NULL, rc);
            return store_errno(rc);
        }
        sum += ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages;
    }
    *used = sum;
    return 0;
}

bool store_is_over_high(const struct cw_store *st, size_t used)
{
    return used > st->budget_pages / 100 * CW_STORE_EVICT_HIGH_PCT;
}

static size_t store_low_pages(const struct cw_store *st)
{
    return st->budget_pages / 100 * CW_STORE_EVICT_LOW_PCT;
}

/* The second chance: true when key's bit was set (it is cleared now). Same bit as
 * cw_seg_hit(): key bytes 4..7 masked to the bit count. */
static bool store_hit_test_clear(struct cw_seg *seg, const uint8_t *key)
{
    uint32_t b;
    uint64_t bit;

    if (seg == NULL) return false;
    memcpy(&b, key + 4, sizeof(b));
    b &= CW_SEG_HIT_BITS - 1;
    bit = 1ull << (b & 63);
    if (!(atomic_load_explicit(&seg->hit_bits[b >> 6], memory_order_relaxed) & bit)) return false;
    atomic_fetch_and_explicit(&seg->hit_bits[b >> 6], ~bit, memory_order_relaxed);
    return true;
}

/* Past every window in which the entry could still be served. */
static bool store_is_expired(const struct cw_entry_hdr *h, int64_t now_ms)
{
    return now_ms > h->fresh_until_ms && now_ms > h->swr_until_ms && now_ms > h->sie_until_ms;
}

/* Puts the cursor on the hand (the first key at or after the saved one), wrapping to the
 * first entry: 0 with *k, *v, or -ENOENT when obj is empty, or -errno logged. */
static int store_hand_load(struct cw_store *st, MDB_txn *txn, MDB_cursor *cur, MDB_val *k,
                           MDB_val *v)
{
    MDB_val hk = {sizeof(STORE_META_HAND) - 1, STORE_META_HAND};
    MDB_val hv;
    int rc;

    rc = mdb_get(txn, st->meta, &hk, &hv);
    if (rc == MDB_SUCCESS && hv.mv_size == sizeof(((struct cw_key *)0)->h)) {
        *k = hv;
        rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    } else if (rc == MDB_SUCCESS || rc == MDB_NOTFOUND) {
        rc = MDB_NOTFOUND;
    }
    if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(cur, k, v, MDB_FIRST);
    if (rc == MDB_SUCCESS) return 0;
    if (rc != MDB_NOTFOUND) store_log_mdb("evict hand", NULL, rc);
    return store_errno(rc);
}

static int store_hand_save(struct cw_store *st, MDB_txn *txn, const MDB_val *k)
{
    MDB_val hk = {sizeof(STORE_META_HAND) - 1, STORE_META_HAND};
    MDB_val hv = *k;
    int rc = mdb_put(txn, st->meta, &hk, &hv, 0);

    if (rc == MDB_SUCCESS) return 0;
    if (rc != MDB_MAP_FULL) store_log_mdb("evict mdb_put(meta hand)", NULL, rc);
    return store_errno(rc);
}

/* Decides about the entry under the cursor and deletes it (with its tags) when it goes.
 * *used is kept current. 0, or -errno logged. */
static int store_sweep_visit(struct cw_store *st, MDB_txn *txn, MDB_cursor *cur, const MDB_val *k,
                             const MDB_val *v, struct store_sweep *sw, size_t *used)
{
    struct cw_entry_hdr h;
    struct cw_key key;
    uint64_t *reason;
    size_t before = *used;
    int rc;

    sw->stats->visited++;
    if (k->mv_size != sizeof(key.h) || v->mv_size < sizeof(h)) {
        reason = &sw->stats->bad;
    } else {
        memcpy(key.h, k->mv_data, sizeof(key.h));
        memcpy(&h, v->mv_data, sizeof(h));
        if (sw->keep != NULL && memcmp(sw->keep->h, key.h, sizeof(key.h)) == 0) return 0;
        if (h.magic != CW_ENTRY_MAGIC || h.version != CW_ENTRY_VERSION) {
            reason = &sw->stats->bad;
        } else if (store_is_expired(&h, sw->now_ms)) {
            reason = &sw->stats->expired;
        } else if (*used <= sw->target_pages && sw->freed_pages >= sw->freed_goal) {
            return 0; /* under the watermark: live entries and their bits stay */

        } else if (store_hit_test_clear(sw->seg, key.h)) {
            sw->stats->second_chance++;
            return 0;
        } else {
            reason = &sw->stats->clock;
        }
        rc = store_tag_unindex_txn(st, txn, &key, v);
        if (rc < 0) return rc;
    }
    rc = mdb_cursor_del(cur, 0);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("evict mdb_cursor_del(obj)", NULL, rc);
        return store_errno(rc);
    }
    (*reason)++;
    rc = store_used_pages(st, txn, used);
    if (rc < 0) return rc;
    if (before > *used) sw->freed_pages += before - *used;
    return 0;
}

/* Whether the sweep has reached what it was run for. */
static bool store_sweep_is_done(const struct store_sweep *sw, size_t used)
{
    if (sw->stats->visited >= sw->max_visit) return true;
    if (sw->target_pages == SIZE_MAX) return false; /* background: visits for expiry */
    return used <= sw->target_pages && sw->freed_pages >= sw->freed_goal;
}

/* One write txn: up to sw->batch entries from the hand, which is saved where it stops.
 * *more is false when the sweep is done or obj is empty. */
static int store_sweep_batch(struct cw_store *st, struct store_sweep *sw, bool *more)
{
    MDB_cursor *cur;
    MDB_txn *txn;
    MDB_val k;
    MDB_val v;
    size_t used;
    size_t n = 0;
    int rc;

    *more = false;
    rc = store_txn_write(st, &txn, "evict", NULL);
    if (rc < 0) return rc;
    rc = store_used_pages(st, txn, &used);
    if (rc < 0) goto out_abort_txn;
    rc = mdb_cursor_open(txn, st->obj, &cur);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("evict mdb_cursor_open", NULL, rc);
        rc = store_errno(rc);
        goto out_abort_txn;
    }
    rc = store_hand_load(st, txn, cur, &k, &v);
    while (rc == 0 && n < sw->batch && !store_sweep_is_done(sw, used)) {
        n++;
        rc = store_sweep_visit(st, txn, cur, &k, &v, sw, &used);
        if (rc < 0) break;
        /* After mdb_cursor_del the cursor already sits on the next entry; NEXT returns it. */
        rc = store_errno(mdb_cursor_get(cur, &k, &v, MDB_NEXT));
        if (rc == -ENOENT) rc = store_errno(mdb_cursor_get(cur, &k, &v, MDB_FIRST));
    }
    mdb_cursor_close(cur);
    if (rc == -ENOENT) {
        rc = 0; /* obj is empty: nothing left to evict */
    } else if (rc == 0) {
        *more = !store_sweep_is_done(sw, used);
        rc = store_hand_save(st, txn, &k);
    }
    if (rc < 0) goto out_abort_txn;
    sw->stats->used_pages = used;
    return store_commit(txn, "evict", NULL);

out_abort_txn:
    mdb_txn_abort(txn);
    return rc;
}

/* Runs batches until the sweep is done; a batch that meets a full map is retried one
 * entry at a time (deleting needs a few new pages too). */
static int store_sweep(struct cw_store *st, struct store_sweep *sw)
{
    bool more = true;
    int rc = 0;

    sw->stats->map_pages = st->budget_pages;
    while (more) {
        rc = store_sweep_batch(st, sw, &more);
        if (rc == -ENOSPC && sw->batch > 1) {
            sw->batch = 1;
            more = true;
            continue;
        }
        if (rc < 0) break;
    }
    if (sw->target_pages != SIZE_MAX && sw->stats->used_pages <= sw->target_pages)
        st->clock_active = false;
    return rc;
}

int cw_store_evict_step(struct cw_store *st, struct cw_seg *seg, int64_t now_ms, size_t max_visit,
                        struct cw_store_evict_stats *out)
{
    struct cw_store_evict_stats local;
    struct store_sweep sw;
    MDB_txn *txn;
    MDB_stat ms;
    size_t used;
    int rc;

    memset(&local, 0, sizeof(local));
    rc = store_txn_read(st, &txn, "evict");
    if (rc < 0) return rc;
    rc = store_used_pages(st, txn, &used);
    if (rc == 0) rc = store_errno(mdb_stat(txn, st->obj, &ms));
    mdb_txn_abort(txn);
    if (rc < 0) return rc;
    if (store_is_over_high(st, used)) st->clock_active = true;
    /* Under the watermark the pass only looks for expired entries: once round is enough. */
    if (!st->clock_active && max_visit > ms.ms_entries) max_visit = ms.ms_entries;

    memset(&sw, 0, sizeof(sw));
    sw.seg = seg;
    sw.now_ms = now_ms;
    sw.max_visit = max_visit;
    sw.target_pages = st->clock_active ? store_low_pages(st) : SIZE_MAX;
    sw.batch = STORE_EVICT_BATCH;
    sw.stats = &local;
    local.used_pages = used;
    rc = max_visit > 0 ? store_sweep(st, &sw) : 0;
    local.map_pages = st->budget_pages;
    if (out != NULL) {
        out->visited += local.visited;
        out->expired += local.expired;
        out->clock += local.clock;
        out->second_chance += local.second_chance;
        out->bad += local.bad;
        out->used_pages = local.used_pages;
        out->map_pages = local.map_pages;
    }
    return rc;
}

/* A small write txn that changes meta, so that pages freed by the txns before it may be
 * handed out to the next one (see the top of this file). */
static int store_settle(struct cw_store *st)
{
    MDB_val k = {sizeof(STORE_META_SETTLE) - 1, STORE_META_SETTLE};
    MDB_val v;
    MDB_txn *txn;
    uint64_t gen = 0;
    int rc;

    rc = store_txn_write(st, &txn, "evict settle", NULL);
    if (rc < 0) return rc;
    rc = mdb_get(txn, st->meta, &k, &v);
    if (rc == MDB_SUCCESS && v.mv_size == sizeof(gen)) memcpy(&gen, v.mv_data, sizeof(gen));
    gen++;
    v.mv_size = sizeof(gen);
    v.mv_data = &gen;
    rc = mdb_put(txn, st->meta, &k, &v, 0);
    if (rc != MDB_SUCCESS) {
        if (rc != MDB_MAP_FULL) store_log_mdb("evict settle mdb_put(meta)", NULL, rc);
        mdb_txn_abort(txn);
        return store_errno(rc);
    }
    return store_commit(txn, "evict settle", NULL);
}

bool store_make_room(struct cw_store *st, const struct cw_key *keep, size_t need, int attempt)
{
    struct cw_store_evict_stats stats;
    struct store_sweep sw;
    size_t need_pages = need / st->page_bytes + 2;

    if (attempt >= STORE_ROOM_ATTEMPTS || need > st->map_pages / STORE_ROOM_SHARE * st->page_bytes)
        return false;
    memset(&stats, 0, sizeof(stats));
    memset(&sw, 0, sizeof(sw));
    sw.seg = st->seg;
    sw.now_ms = store_wall_ms();
    sw.max_visit = STORE_ROOM_VISIT;
    sw.target_pages = store_low_pages(st);
    sw.freed_goal = need_pages << attempt;
    sw.keep = keep;
    sw.batch = STORE_EVICT_BATCH;
    sw.stats = &stats;
    st->clock_active = true;
    if (store_sweep(st, &sw) < 0) return false;
    store_evict_count(st, &stats);
    if (store_settle(st) < 0) return false;
    if (stats.expired + stats.clock + stats.bad == 0 && attempt > 0) return false;
    cw_debug("store: map full: evicted %" PRIu64 " expired, %" PRIu64 " by clock (%zu pages) for "
             "%zu bytes, attempt %d",
             stats.expired, stats.clock, sw.freed_pages, need, attempt + 1);
    return true;
}

void store_evict_after_put(struct cw_store *st, const struct cw_key *keep)
{
    struct cw_store_evict_stats stats;
    struct store_sweep sw;

    memset(&stats, 0, sizeof(stats));
    memset(&sw, 0, sizeof(sw));
    sw.seg = st->seg;
    sw.now_ms = store_wall_ms();
    sw.max_visit = STORE_EVICT_PUT_VISIT;
    sw.keep = keep;
    sw.target_pages = store_low_pages(st);
    sw.batch = STORE_EVICT_BATCH;
    sw.stats = &stats;
    st->clock_active = true;
    /* Failures were logged; the put that got here succeeded, and the next put or the
     * refresher's step tries again. */
    (void)store_sweep(st, &sw);
    store_evict_count(st, &stats);
}
