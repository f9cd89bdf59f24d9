/* workers/fetch.h - transitional, TODO(#11): the view of a collected origin response that
 * workers/fill.c still takes (cw_fill_complete()), until fill takes the source-neutral struct
 * cw_fill_resp; this header goes then. Types and inline helpers only, over the collected
 * response of workers/upstream.h; it owns nothing. */
#ifndef CW_FETCH_H
#define CW_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "workers/upstream.h"

/* Borrowed from a struct cw_upstream_collect: valid while it is, and not reset. */
struct cw_fetch_job {
    int status;
    struct cw_upstream_buf headers;
    size_t header_count;
    struct cw_upstream_buf body;
    int64_t request_time_ms;
    int64_t response_time_ms;
};

static inline struct cw_fetch_job cw_fetch_job_of(const struct cw_upstream_collect *c)
{
    return (struct cw_fetch_job){
        .status = c->status,
        .headers = c->headers,
        .header_count = c->header_count,
        .body = c->body,
        .request_time_ms = c->request_time_ms,
        .response_time_ms = c->response_time_ms,
    };
}

static inline bool cw_fetch_job_header_next(const struct cw_fetch_job *job, size_t *off,
                                            struct cw_str *name, struct cw_str *value)
{
    struct cw_upstream_fields f = {job->headers.p, job->headers.len, job->header_count};

    return cw_upstream_fields_next(&f, off, name, value);
}

#endif /* CW_FETCH_H */
