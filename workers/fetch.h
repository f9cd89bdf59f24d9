/* workers/fetch.h - a worker's origin fetch loop: one thread running a libcurl multi
 * handle, with keep-alive connection reuse per origin.
 *
 * Owns the thread, the CURLM handle, its easy handles and their connection pool; no other
 * module includes curl.h. Jobs are submitted from any thread (the MHD thread) and
 * completed on the fetch thread: the done callback runs there and must not block for
 * long. A job is owned by its submitter; the fetch loop only borrows it between submit and
 * done. Create after fork(), in the process that uses it. */
#ifndef CW_FETCH_H
#define CW_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

struct cw_fetch; /* opaque */
struct cw_fetch_job;

typedef void (*cw_fetch_done_fn)(struct cw_fetch_job *job, void *cls);

/* Work that is not a transfer, run on the fetch thread: what may block on a lock (an LMDB
 * write txn waits for the writer mutex), so that the submitting thread (the MHD thread, which
 * answers hits) never does. run owns t from the call on (it may free it); cancelled is true
 * when the loop stopped before t ran, and run is then called on the cancelling thread. */
struct cw_fetch_task;
typedef void (*cw_fetch_task_fn)(struct cw_fetch_task *t, bool cancelled);
struct cw_fetch_task {
    cw_fetch_task_fn run;       /* set by the submitter */
    struct cw_fetch_task *next; /* the fetch loop's own */
};

/* A growable byte buffer with a hard cap. */
struct cw_fetch_buf {
    char *p;
    size_t len;
    size_t cap;
};

struct cw_fetch_job {
    /* Set by the submitter. Strings are borrowed until done runs. */
    const char *url;         /* full origin URL, NUL-terminated */
    const char *method;      /* "GET", "POST", … */
    const char *req_headers; /* "Name: value\r\n" lines, NUL-terminated, may be NULL */
    struct cw_str req_body;
    int64_t connect_timeout_ms;
    int64_t timeout_ms;
    size_t max_body; /* a larger body fails the job with -EFBIG */
    cw_fetch_done_fn done;
    void *cls;

    /* Set by the fetch loop before done runs. */
    int rc;           /* 0, -ECONNREFUSED, -ETIMEDOUT, -EFBIG, -EBADMSG, -ECANCELED, -EIO */
    char errbuf[256]; /* curl's message when rc != 0 */
    int status;
    /* Response header lines of the final response, each "Name: value" without CRLF,
     * separated by NUL; count in header_count. Owned by the job; see cw_fetch_job_reset(). */
    struct cw_fetch_buf headers;
    size_t header_count;
    struct cw_fetch_buf body;
    int64_t request_time_ms;  /* wall clock when the job started */
    int64_t response_time_ms; /* wall clock when the response ended */
    void *internal;           /* the fetch loop's own, NULL outside it */
};

/* Starts the fetch thread: 0 and *out, or -errno with the cause logged. max_host_conns
 * bounds the keep-alive connections per origin host. Caller owns *out; stop with
 * cw_fetch_stop(), which takes NULL. */
CW_MUST_CHECK int cw_fetch_start(int max_host_conns, size_t max_pending, struct cw_fetch **out);

/* Queues job: 0, or -EAGAIN when max_pending jobs are already queued or running (the job is
 * then untouched and done will not run), -ESHUTDOWN after stop began. */
CW_MUST_CHECK int cw_fetch_submit(struct cw_fetch *f, struct cw_fetch_job *job);

/* Queues t to run on the fetch thread, in submission order, before the transfers queued
 * with it start: 0, -EAGAIN when max_pending tasks are already queued (t untouched; the
 * caller counts and handles it), -ESHUTDOWN after stop began (t untouched). */
CW_MUST_CHECK int cw_fetch_defer(struct cw_fetch *f, struct cw_fetch_task *t);

/* Completes every queued and running job with rc -ECANCELED (done runs for each, on the
 * calling thread for queued ones), runs every queued task with cancelled true and stops the thread;
 * later submits get -ESHUTDOWN. The handle stays valid until cw_fetch_stop(). Takes NULL; may be
 * called more than once. */
void cw_fetch_cancel(struct cw_fetch *f);
/* cw_fetch_cancel(), then frees everything. Takes NULL. */
void cw_fetch_stop(struct cw_fetch *f);

/* Frees the buffers a job owns and zeroes its results. Takes NULL. */
void cw_fetch_job_reset(struct cw_fetch_job *job);

/* Iterates the response header lines: *off starts at 0; true and (name, value trimmed), or
 * false at the end. */
bool cw_fetch_job_header_next(const struct cw_fetch_job *job, size_t *off, struct cw_str *name,
                              struct cw_str *value);

#endif /* CW_FETCH_H */
