/* shm/seg.c - see shm/seg.h. */
#include "shm/seg.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/key.h"
#include "core/log.h"
#include "core/metrics.h"

int cw_seg_create(struct cw_seg **out)
{
    struct timespec ts;
    void *p = mmap(NULL, sizeof(struct cw_seg), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);

    if (p == MAP_FAILED) {
        int rc = -errno;
        cw_err("seg: mmap %zu bytes: %s", sizeof(struct cw_seg), strerror(errno));
        return rc;
    }
    /* MAP_ANONYMOUS memory is zero-filled: every counter, generation and bit starts at 0.
     * Pages are backed on first touch, so slots no process uses cost no memory. */
    cw_info("seg: mapped %zu bytes (%d slots of %zu bytes, layout version %d)",
            sizeof(struct cw_seg), CW_SEG_SLOTS, sizeof(struct cw_seg_slot), CW_SEG_VERSION);
    *out = p;
    (*out)->version = CW_SEG_VERSION;
    (*out)->slot_count = CW_SEG_SLOTS;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_store(&(*out)->started_at_ms,
                 (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
    return 0;
}

void cw_seg_destroy(struct cw_seg *seg)
{
    if (seg == NULL) return;
    munmap(seg, sizeof(*seg));
}

uint64_t cw_seg_sum(const struct cw_seg *seg, enum cw_metrics_counter c)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < CW_SEG_SLOTS; i++)
        sum += atomic_load_explicit(&seg->slots[i].c[c], memory_order_relaxed);
    return sum;
}

static uint64_t seg_load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void seg_hist_collect(const struct cw_seg_hist *h, struct cw_metrics_hist *out)
{
    for (int i = 0; i <= CW_METRICS_LAT_BUCKETS; i++)
        out->b[i] += seg_load(&h->b[i]);
    out->sum_us += seg_load(&h->sum_us);
}

void cw_seg_collect(const struct cw_seg *seg, struct cw_metrics_counts *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < CW_SEG_SLOTS; i++) {
        const struct cw_seg_slot *s = &seg->slots[i];
        for (int c = 0; c < CW_METRICS_COUNTER_COUNT; c++)
            out->c[c] += seg_load(&s->c[c]);
        for (int rt = 0; rt < CW_METRICS_ROUTE_BUCKETS; rt++) {
            for (int res = 0; res < CW_METRICS_RESULT_COUNT; res++) {
                for (int m = 0; m < CW_METRICS_METHOD_COUNT; m++)
                    out->req[rt][res][m] += seg_load(&s->req[rt][res][m]);
                seg_hist_collect(&s->req_lat[rt][res], &out->req_lat[rt][res]);
            }
        }
        for (int o = 0; o < CW_METRICS_ORIGINS; o++) {
            for (int c = 0; c < CW_METRICS_OSTATUS_COUNT; c++)
                out->origin_req[o][c] += seg_load(&s->origin_req[o][c]);
            seg_hist_collect(&s->origin_lat[o], &out->origin_lat[o]);
        }
    }
    out->worker_restarts = seg_load(&seg->worker_restarts);
}

/* FUTEX_WAKE and FUTEX_WAIT without FUTEX_PRIVATE_FLAG: the word is in a MAP_SHARED mapping
 * and the sleeper and the waker are different processes. */
static long seg_futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

void cw_seg_wake(struct cw_seg *seg, int slot)
{
    _Atomic uint32_t *w = &seg->wake[slot].seq;

    atomic_fetch_add(w, 1);
    /* Fails only for a bad address (EFAULT), which the mapping rules out. */
    (void)seg_futex(w, FUTEX_WAKE, INT_MAX, NULL);
}

void cw_seg_fill_done(struct cw_seg *seg, const struct cw_key *key)
{
    uint32_t b = cw_seg_fill_bucket(key);

    /* seq_cst, paired with cw_seg_fill_watch() and the waiter's generation load: either the
     * waiter sees the new generation, or this sees its watch bit (or both). */
    atomic_fetch_add(&seg->fill_gen[b], 1);
    for (int i = 0; i < CW_SEG_WAKE_WORDS; i++) {
        uint64_t m = atomic_load(&seg->fill_watch[b][i]);
        while (m != 0) {
            int bit = __builtin_ctzll(m);
            m &= m - 1;
            cw_seg_wake(seg, i * 64 + bit);
        }
    }
}

void cw_seg_fill_watch(struct cw_seg *seg, int slot, uint32_t bucket)
{
    atomic_fetch_or(&seg->fill_watch[bucket][slot / 64], 1ull << (slot % 64));
}

void cw_seg_fill_unwatch(struct cw_seg *seg, int slot, uint32_t bucket)
{
    atomic_fetch_and(&seg->fill_watch[bucket][slot / 64], ~(1ull << (slot % 64)));
}

void cw_seg_fill_unwatch_all(struct cw_seg *seg, int slot)
{
    uint64_t bit = 1ull << (slot % 64);

    for (uint32_t b = 0; b < CW_SEG_FILL_BUCKETS; b++) {
        /* Read first: most bits are clear, and a load keeps the lines shared. */
        if (atomic_load_explicit(&seg->fill_watch[b][slot / 64], memory_order_relaxed) & bit)
            cw_seg_fill_unwatch(seg, slot, b);
    }
}

int cw_seg_wake_wait(struct cw_seg *seg, int slot, uint32_t seq, int64_t timeout_ms)
{
    struct timespec ts, *tsp = NULL;

    if (timeout_ms >= 0) {
        ts.tv_sec = (time_t)(timeout_ms / 1000);
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
        tsp = &ts;
    }
    if (seg_futex(&seg->wake[slot].seq, FUTEX_WAIT, seq, tsp) == 0) return 0;
    if (errno == EAGAIN) return 0; /* the word had moved: woken before we slept */
    if (errno == ETIMEDOUT) return -ETIMEDOUT;
    if (errno == EINTR) return -EINTR;
    return -errno;
}

bool cw_seg_refresh_ask(struct cw_seg *seg, int slot, const struct cw_key *key,
                        int64_t asked_wall_ms)
{
    struct cw_seg_refresh_ring *ring = &seg->refresh[slot];
    uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    uint32_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    struct cw_seg_refresh_ask *rec;

    if (tail - head >= CW_SEG_REFRESH_ASKS) return false;
    rec = &ring->rec[tail & (CW_SEG_REFRESH_ASKS - 1)];
    static_assert(sizeof(rec->key) == sizeof(key->h), "a refresh ask holds a whole key");
    memcpy(rec->key, key->h, sizeof(rec->key));
    rec->asked_wall_ms = asked_wall_ms;
    atomic_store_explicit(&ring->tail, tail + 1, memory_order_release);
    return true;
}

bool cw_seg_refresh_take(struct cw_seg *seg, int slot, struct cw_seg_refresh_ask *out)
{
    struct cw_seg_refresh_ring *ring = &seg->refresh[slot];
    uint32_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);

    if (head == tail) return false;
    /* A tail more than a ring ahead can only be a torn or damaged index: start over. */
    if (tail - head > CW_SEG_REFRESH_ASKS) {
        atomic_store_explicit(&ring->head, tail, memory_order_release);
        return false;
    }
    *out = ring->rec[head & (CW_SEG_REFRESH_ASKS - 1)];
    atomic_store_explicit(&ring->head, head + 1, memory_order_release);
    return true;
}

void cw_seg_origins_reset(struct cw_seg *seg)
{
    for (size_t i = 0; i < CW_LIMIT_ORIGINS; i++) {
        struct cw_seg_origin *o = &seg->origins[i];
        atomic_store_explicit(&o->breaker, 0, memory_order_relaxed);
        for (size_t k = 0; k < CW_LIMIT_ORIGIN_SERVERS; k++) {
            atomic_store_explicit(&o->server_health[k], 0, memory_order_relaxed);
            atomic_store_explicit(&o->server_probe[k], 0, memory_order_relaxed);
        }
        atomic_store_explicit(&o->dns.gen, 0, memory_order_release);
        memset(o->dns.slot, 0, sizeof(o->dns.slot));
    }
}

void cw_seg_url_offer(struct cw_seg *seg, int slot, int route, const char *target, size_t len,
                      int64_t mono_ms)
{
    struct cw_seg_url_ring *ring = &seg->urls[slot];
    struct cw_seg_url_sample *rec;
    uint32_t i;

    /* One in CW_SEG_URL_EVERY: a counter, not a random draw, so the cost is one relaxed add
     * and the sample still follows the traffic's mix (requests do not arrive in a cycle). */
    if (atomic_fetch_add_explicit(&ring->every, 1, memory_order_relaxed) % CW_SEG_URL_EVERY != 0)
        return;
    i = atomic_fetch_add_explicit(&ring->tail, 1, memory_order_relaxed);
    rec = &ring->rec[i & (CW_SEG_URL_SAMPLES - 1)];
    atomic_store_explicit(&rec->seq, 2 * i + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    if (len > sizeof(rec->target)) len = sizeof(rec->target);
    memcpy(rec->target, target, len);
    rec->len = (uint16_t)len;
    rec->route = route < 0 || route >= UINT16_MAX ? 0 : (uint16_t)(route + 1);
    atomic_store_explicit(&rec->at_ms, mono_ms, memory_order_relaxed);
    atomic_store_explicit(&rec->seq, 2 * i + 2, memory_order_release);
}

size_t cw_seg_url_read(const struct cw_seg *seg, int slot, int64_t since_ms,
                       struct cw_seg_url_copy *out, size_t cap)
{
    const struct cw_seg_url_ring *ring = &seg->urls[slot];
    uint32_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    size_t n = 0;

    for (uint32_t k = 0; k < CW_SEG_URL_SAMPLES && k < tail && n < cap; k++) {
        uint32_t i = tail - 1 - k;
        const struct cw_seg_url_sample *rec = &ring->rec[i & (CW_SEG_URL_SAMPLES - 1)];
        struct cw_seg_url_copy *c = &out[n];
        if (atomic_load_explicit(&rec->seq, memory_order_acquire) != 2 * i + 2) continue;
        c->at_ms = atomic_load_explicit(&rec->at_ms, memory_order_relaxed);
        c->len = rec->len <= sizeof(c->target) ? rec->len : sizeof(c->target);
        c->route = (int)rec->route - 1;
        memcpy(c->target, rec->target, c->len);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&rec->seq, memory_order_relaxed) != 2 * i + 2) continue;
        if (c->at_ms < since_ms) break; /* older ones are older still */
        n++;
    }
    return n;
}

bool cw_seg_dns_read(const struct cw_seg_dns *d, uint32_t gen, uint64_t origin_id,
                     struct cw_seg_dns_server out[CW_LIMIT_ORIGIN_SERVERS])
{
    uint64_t id;

    if (gen == 0 || (gen & 1u) != 0) return false;
    id = d->origin_id;
    memcpy(out, d->slot, sizeof(d->slot));
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&d->gen, memory_order_relaxed) == gen && id == origin_id;
}

void cw_seg_dns_write(struct cw_seg_dns *d, uint64_t origin_id,
                      const struct cw_seg_dns_server table[CW_LIMIT_ORIGIN_SERVERS])
{
    uint32_t gen = atomic_load_explicit(&d->gen, memory_order_relaxed);

    gen |= 1u; /* odd: a table is being written */
    atomic_store_explicit(&d->gen, gen, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    d->origin_id = origin_id;
    memcpy(d->slot, table, sizeof(d->slot));
    /* Even again, and never 0 (no table) after a wrap. */
    gen = gen + 1u == 0 ? 2u : gen + 1u;
    atomic_store_explicit(&d->gen, gen, memory_order_release);
}

unsigned cw_seg_dns_count(const struct cw_seg_dns *d, uint64_t origin_id)
{
    struct cw_seg_dns_server t[CW_LIMIT_ORIGIN_SERVERS];
    uint32_t gen = atomic_load_explicit(&d->gen, memory_order_acquire);
    unsigned n = 0;

    if (!cw_seg_dns_read(d, gen, origin_id, t)) return 0;
    for (size_t k = 0; k < CW_LIMIT_ORIGIN_SERVERS; k++)
        n += t[k].family != 0;
    return n;
}
