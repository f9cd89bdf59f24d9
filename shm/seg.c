/* shm/seg.c - see shm/seg.h. */
#include "shm/seg.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

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

uint64_t cw_seg_sum(const struct cw_seg *seg, enum cw_seg_counter c)
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
    for (int i = 0; i <= CW_SEG_LAT_BUCKETS; i++)
        out->b[i] += seg_load(&h->b[i]);
    out->sum_us += seg_load(&h->sum_us);
}

void cw_seg_collect(const struct cw_seg *seg, struct cw_metrics_counts *out)
{
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < CW_SEG_SLOTS; i++) {
        const struct cw_seg_slot *s = &seg->slots[i];
        for (int c = 0; c < CW_SEG_COUNTER_COUNT; c++)
            out->c[c] += seg_load(&s->c[c]);
        for (int rt = 0; rt < CW_SEG_ROUTE_BUCKETS; rt++) {
            for (int res = 0; res < CW_SEG_RESULT_COUNT; res++) {
                for (int m = 0; m < CW_SEG_METHOD_COUNT; m++)
                    out->req[rt][res][m] += seg_load(&s->req[rt][res][m]);
                seg_hist_collect(&s->req_lat[rt][res], &out->req_lat[rt][res]);
            }
        }
        for (int o = 0; o < CW_SEG_ORIGINS; o++) {
            for (int c = 0; c < CW_SEG_OSTATUS_COUNT; c++)
                out->origin_req[o][c] += seg_load(&s->origin_req[o][c]);
            seg_hist_collect(&s->origin_lat[o], &out->origin_lat[o]);
        }
    }
    out->worker_restarts = seg_load(&seg->worker_restarts);
}
