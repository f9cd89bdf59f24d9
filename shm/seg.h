/* shm/seg.h - the shared-memory segment: counters, fill generations, hit bits.
 *
 * Owns one anonymous shared mapping, made by the supervisor before fork() and inherited by
 * every child; nothing in it is a pointer, so it means the same in every process. Children
 * never unmap it. All updates are atomics; nothing here blocks or allocates. */
#ifndef CW_SEG_H
#define CW_SEG_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/common.h"
#include "shm/seg_types.h"

struct cw_key;

/* Maps a new zeroed segment: 0 and *out, or -errno with the cause logged. */
CW_MUST_CHECK int cw_seg_create(struct cw_seg **out);
/* Unmaps it (supervisor only, at exit). Takes NULL. */
void cw_seg_destroy(struct cw_seg *seg);

/* Adds n to counter c of slot. slot must be < CW_SEG_SLOTS. */
static inline void cw_seg_add(struct cw_seg *seg, int slot, enum cw_seg_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&seg->slots[slot].c[c], n, memory_order_relaxed);
}

/* Sum of counter c over every slot. */
uint64_t cw_seg_sum(const struct cw_seg *seg, enum cw_seg_counter c);

/* The fill-generation bucket of a key. */
static inline _Atomic uint32_t *cw_seg_fill_gen(struct cw_seg *seg, const struct cw_key *key)
{
    uint32_t b;
    memcpy(&b, key, sizeof(b));
    return &seg->fill_gen[b & (CW_SEG_FILL_BUCKETS - 1)];
}

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

#endif /* CW_SEG_H */
