/* shm/seg.c - see shm/seg.h. */
#include "shm/seg.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "core/log.h"

int cw_seg_create(struct cw_seg **out)
{
    void *p = mmap(NULL, sizeof(struct cw_seg), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);

    if (p == MAP_FAILED) {
        int rc = -errno;
        cw_err("seg: mmap %zu bytes: %s", sizeof(struct cw_seg), strerror(errno));
        return rc;
    }
    /* MAP_ANONYMOUS memory is zero-filled: every counter, generation and bit starts at 0. */
    *out = p;
    (*out)->version = CW_SEG_VERSION;
    (*out)->slot_count = CW_SEG_SLOTS;
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
