/* workers/upstream_int.h - what upstream.c shares with upstream_collect.c. Not a public API:
 * the rest of the program uses workers/upstream.h. Loop thread only, like the callbacks. */
#ifndef CW_UPSTREAM_INT_H
#define CW_UPSTREAM_INT_H

#include <stddef.h>

#include "core/common.h"

struct cw_upstream_buf;
struct cw_upstream_xfer;

/* Appends n bytes to b, growing it up to max: 0, -EFBIG past max, -ENOMEM. */
CW_MUST_CHECK int upstream_buf_append(struct cw_upstream_buf *b, const char *p, size_t n,
                                      size_t max);

/* From on_done: moves the transfer's response header lines (cw_upstream_fields layout) into
 * *out and their count into *count; the caller owns them (free()). Leaves both unchanged for a
 * transfer that never started. */
void upstream_take_headers(struct cw_upstream_xfer *x, struct cw_upstream_buf *out, size_t *count);

#endif /* CW_UPSTREAM_INT_H */
