/* workers/upstream.h - the origin side of a process: builds every origin request (a worker's
 * misses and passes, the refresher's refreshes) and runs them on one thread driving libcurl,
 * delivering each response as head, data and done callbacks with flow control.
 *
 * Owns the loop thread, its CURLM handle, the easy handles, the keep-alive connections
 * they leave in the multi handle's cache and the TLS sessions they share (a CURLSH); no other
 * module includes curl.h. Connections are capped per origin (cw_config_origin.max_conns, per
 * process) and per server ("max_conns=N" in servers[], per process): a transfer past a cap
 * waits in its origin's queue (at most cw_config_origin.queue of them; past that it ends at
 * once with -EAGAIN, unless it is an active check), for at most queue_timeout (-EAGAIN) or
 * else its first-byte timeout (-ETIMEDOUT), and starts on the connection the one before it
 * leaves. Each transfer goes to
 * a server of its origin's pool chosen when it
 * starts (upstream_pool.c: health shared in the shm segment, a circuit breaker per origin,
 * one retry of an idempotent request on another server). Transfers and tasks are submitted from any
 * thread; every callback (on_head, on_data, on_read, on_done, a task's run) runs on the loop thread
 * and must not block for long. cw_upstream_resume() may be called from any thread. A transfer's
 * memory is its submitter's: the loop borrows it from submit until on_done returns, and touches it
 * no more after that. Start after fork(), in the process that uses it.
 *
 * The request builders (cw_upstream_build_url(), cw_upstream_head_*()) are pure: no loop, no
 * I/O, any thread. */
#ifndef CW_UPSTREAM_H
#define CW_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h> /* ssize_t */

#include "core/common.h"

struct cw_config;
struct cw_config_origin;
struct cw_config_route;
struct cw_seg;
struct cw_upstream; /* opaque */
struct cw_upstream_xfer;

/* A growable byte buffer with a hard cap. */
struct cw_upstream_buf {
    char *p;
    size_t len;
    size_t cap;
};

/* Appends n bytes to b, growing it up to max: 0, -EFBIG past max, -ENOMEM. */
CW_MUST_CHECK int cw_upstream_buf_append(struct cw_upstream_buf *b, const char *p, size_t n,
                                         size_t max);

/* ---- Building a request ------------------------------------------------------------------ */

/* Builds the origin URL into *out: the origin's prefix, the path of target (the normalised
 * path, '?', the query as received) and, with whole_query, the query as it came (a passed-
 * through method stores nothing), else exactly the parameters route rt keys on
 * (cw_key_forward_query(): an unkeyed parameter must not choose a stored answer). 0,
 * -ENOMEM, or -ENOSPC for a query the key refuses. Caller owns *out; free with free(). */
CW_MUST_CHECK int cw_upstream_build_url(const struct cw_config_origin *o,
                                        const struct cw_config_route *rt, struct cw_str target,
                                        bool whole_query, char **out);

/* How a request field goes to the origin: as the client sent it, replaced by the value
 * CacheWarp sets (Host, X-Forwarded-*, Forwarded), or not at all. */
enum cw_upstream_fwd {
    CW_UPSTREAM_FWD_PASS = 0,
    CW_UPSTREAM_FWD_OURS,
    CW_UPSTREAM_FWD_DROP,
};

/* The forwarding rules for one field name (the worker's: route, trust, Connection). */
typedef enum cw_upstream_fwd (*cw_upstream_fwd_fn)(void *cls, struct cw_str name);
/* The NUL-terminated value CacheWarp sends for a field fwd called OURS, borrowed until the next
 * call; NULL when it could not be made (no memory), which fails the build with -ENOMEM. */
typedef const char *(*cw_upstream_ours_fn)(void *cls, const char *name);

/* An origin request's header block, built from the client's fields one at a time:
 * zero it, set the caller's part, cw_upstream_head_add() each field in the order received,
 * then cw_upstream_head_finish(). The rules, in one place for every caller:
 * - fields fwd does not PASS are left out (with fwd NULL, the fields are a replay of what an
 *   origin was sent before, and only Host is OURS);
 * - hop-by-hop fields (RFC 9110 §7.6.1) and those connection names are left out, and so is the
 *   framing (Content-Length, Expect: the body is framed for the origin by us);
 * - with strip_preconditions (a cache fetching the whole response to store it), the client's
 *   If-* and Range fields are left out: the cache answers them from what it stores;
 * - a Via field is extended with ", 1.1 cachewarp" (RFC 9110 §7.6.3), or one is added;
 * - then the OURS fields, in the order Host, X-Forwarded-For, X-Forwarded-Host,
 *   X-Forwarded-Proto, X-Forwarded-Port, Forwarded, with their values from ours;
 * - then the validators of a stored copy (RFC 9111 §4.3.1): If-None-Match from etag and
 *   If-Modified-Since from last_modified, each when not empty. */
struct cw_upstream_head {
    /* Set by the caller. */
    cw_upstream_fwd_fn fwd; /* NULL: replay (see above) */
    cw_upstream_ours_fn ours;
    void *cls; /* for fwd and ours */
    struct cw_str connection;
    bool strip_preconditions;
    /* The builder's own. */
    struct cw_upstream_buf out;
    bool have_via;
    int rc;
};

/* Adds one client field (value without CR, LF or NUL: the wire reader checked it). 0, or
 * -ENOMEM; after a failure, later calls do nothing and finish returns the error. */
CW_MUST_CHECK int cw_upstream_head_add(struct cw_upstream_head *h, struct cw_str name,
                                       struct cw_str value);
/* Ends the block: 0 and *out ("Name: value\r\n" lines, NUL-terminated; caller owns it, free
 * with free()), or -ENOMEM. The builder's memory is freed or handed over either way. */
CW_MUST_CHECK int cw_upstream_head_finish(struct cw_upstream_head *h, struct cw_str etag,
                                          struct cw_str last_modified, char **out);

/* ---- Running transfers ------------------------------------------------------------------- */

/* One origin request, as built above. Strings are borrowed until on_done returns. */
struct cw_upstream_req {
    int origin; /* index into the config's origins: the connection cap it waits for */
    /* 0: the origin's pool chooses the server (health, breaker, one retry elsewhere); n > 0:
     * server n - 1 only, with none of those (an active health check). */
    int server_pin;
    const char *url;    /* NUL-terminated */
    const char *method; /* "GET", "POST", …; HEAD is sent without reading a body */
    const char *head;   /* "Name: value\r\n" lines, NUL-terminated, may be NULL */
    int64_t connect_timeout_ms;
    /* The longest silence: to the response head (the wait for a connection included), then
     * between bytes either way; not counted while a callback holds the transfer paused. For a
     * transfer the pool routes (server_pin 0), the origin's first_byte_timeout replaces it up
     * to the head, and its total_timeout bounds the whole transfer (pauses included). */
    int64_t timeout_ms;
    /* The body, for a method that has one: whole in memory (body; POST, PUT and PATCH send an
     * empty one), or, when the ops have on_read, streamed: body_len bytes, or chunked for -1. */
    struct cw_str body;
    int64_t body_len;
};

/* The response's header lines, each "Name: value" without CRLF, separated by NUL. */
struct cw_upstream_fields {
    const char *p;
    size_t len;
    size_t count;
};

/* Iterates the lines of f: *off starts at 0; true and (name, value trimmed), or false at the
 * end. */
bool cw_upstream_fields_next(const struct cw_upstream_fields *f, size_t *off, struct cw_str *name,
                             struct cw_str *value);

/* A callback's verdict on the flow: go on, or hold the transfer until cw_upstream_resume().
 * A negative errno instead ends the transfer, and on_done gets that rc. */
enum cw_upstream_flow {
    CW_UPSTREAM_GO = 0,
    CW_UPSTREAM_PAUSE = 1,
};

/* The submitter's callbacks, run on the loop thread. Only on_done is required.
 * - on_head: the final response's head has arrived (status >= 200, fields checked: tokens,
 *   no control bytes, unambiguous framing, within the CW_LIMIT_HEADER* limits). Decide there
 *   what to do with the body: GO, PAUSE (no data until resumed; a response with no body may
 *   still complete), or -errno to refuse it.
 * - on_data: n > 0 bytes of the body, in order. GO: taken. PAUSE: NOT taken; they come again,
 *   with whatever follows, after cw_upstream_resume(). -errno: end the transfer.
 * - on_read: fills buf (cap > 0 bytes) with the next bytes of the request body: the count, 0 at
 *   its end, -EAGAIN to pause the upload until cw_upstream_resume(), or another -errno to end
 *   the transfer with it.
 * - on_done: the transfer ended, rc 0 (a whole response: see xfer->status), -ECONNREFUSED,
 *   -ETIMEDOUT, -EBADMSG (a malformed answer), -EPROTO (the TLS handshake failed: a
 *   certificate not trusted, a name that does not match, a client certificate refused),
 *   -ECANCELED (stopping), -EAGAIN (never ran: the loop's or the origin's queue was full, or
 *   it waited for a connection past queue_timeout), -EHOSTUNREACH (never ran: the origin's
 *   breaker is open or every server is down; see xfer->retry_after_ms), -EIO, or the errno a
 *   callback returned. The loop is done with the
 *   transfer when on_done returns: the submitter may free or reuse it from there. */
struct cw_upstream_ops {
    int (*on_head)(struct cw_upstream_xfer *x, int status, const struct cw_upstream_fields *h);
    int (*on_data)(struct cw_upstream_xfer *x, const char *p, size_t n);
    ssize_t (*on_read)(struct cw_upstream_xfer *x, char *buf, size_t cap);
    void (*on_done)(struct cw_upstream_xfer *x, int rc);
};

/* One transfer. Zero it, set the submitter's part, cw_upstream_submit(). */
struct cw_upstream_xfer {
    /* Set by the submitter; borrowed until on_done returns. */
    const struct cw_upstream_req *req;
    const struct cw_upstream_ops *ops;
    void *cls;

    /* Set by the loop, readable in the callbacks. */
    int status;               /* of the last status line read, 0 before */
    char errbuf[256];         /* what failed, when on_done's rc != 0 */
    int64_t request_time_ms;  /* wall clock when the transfer started */
    int64_t response_time_ms; /* wall clock when it ended */
    /* > 0 when the origin's breaker is open (the request was refused, or it was the probe
     * and failed): the time left in the breaker's cooldown, at least 1. */
    int64_t retry_after_ms;
    bool logged; /* the loop logged the cause itself (once per state): no need to again */

    /* The loop's own. */
    struct cw_upstream *up;
    void *internal;
    struct cw_upstream_xfer *next; /* in the submit queue or an origin's wait queue */
    struct cw_upstream_xfer *resume_next;
    bool resume_queued;   /* under the loop's lock */
    bool abort_requested; /* under the loop's lock: cw_upstream_abort() was called */
    bool live;            /* under the loop's lock: submitted, on_done not yet called */
};

/* Work that is not a transfer, run on the loop thread: what may block on a lock (an LMDB write
 * txn waits for the writer mutex), so that the submitting thread (the MHD thread, which answers
 * hits) never does. run owns t from the call on (it may free it); cancelled is true when the
 * loop stopped before t ran, and run is then called on the cancelling thread. */
struct cw_upstream_task;
typedef void (*cw_upstream_task_fn)(struct cw_upstream_task *t, bool cancelled);
struct cw_upstream_task {
    cw_upstream_task_fn run;       /* set by the submitter */
    struct cw_upstream_task *next; /* the loop's own */
};

/* Starts the loop thread: 0 and *out, or -errno with the cause logged. The connection cap and
 * server pool of each of cfg's origins are copied (cfg need not outlive the loop); at most
 * max_pending transfers are queued or running at once, and as many tasks queued. Server health
 * and the origins' breakers are shared through seg (NULL: kept in this process); with checks,
 * this process runs the origins' active health checks (one process per node: the refresher).
 * Caller owns *out; stop with cw_upstream_stop(), which takes NULL. */
CW_MUST_CHECK int cw_upstream_start(const struct cw_config *cfg, size_t max_pending,
                                    struct cw_seg *seg, bool checks, struct cw_upstream **out);

/* Queues x: 0, or -EAGAIN when max_pending transfers are already queued or running, -EINVAL
 * for an origin index the config does not have, -ESHUTDOWN after stop began (x is then
 * untouched and on_done will not run). */
CW_MUST_CHECK int cw_upstream_submit(struct cw_upstream *up, struct cw_upstream_xfer *x);

/* Lets a transfer that a callback paused (on_head or on_data answered PAUSE, on_read -EAGAIN)
 * go on: from any thread, once or many times; wakes the loop, which unpauses it on its own
 * thread. It unpauses whatever pause is current when the loop gets to it, so a late resume may
 * ask a callback again (which may answer PAUSE again): call it when there is room. Does
 * nothing for a transfer that has ended (until the submitter reuses x, which it must not do
 * while another thread may still call this). */
void cw_upstream_resume(struct cw_upstream_xfer *x);

/* Ends x early, from any thread: on_done follows (on the loop thread) with -ECANCELED, unless
 * x ended first. For a consumer that went away (the client closed mid-stream). Takes an x
 * that already ended (nothing happens). */
void cw_upstream_abort(struct cw_upstream_xfer *x);

/* Queues t to run on the loop thread, in submission order, before the transfers queued with
 * it start: 0, -EAGAIN when max_pending tasks are already queued (t untouched; the caller
 * counts and handles it), -ESHUTDOWN after stop began (t untouched). */
CW_MUST_CHECK int cw_upstream_defer(struct cw_upstream *up, struct cw_upstream_task *t);

/* Other sockets the loop waits on beside libcurl's (the worker's L2 client, workers/l2.h),
 * so that one thread drives both. Each turn of the loop asks fds() for at most max sockets
 * (struct pollfd: fd, events POLLIN/POLLOUT) and timeout_ms() for its next deadline (-1:
 * none), waits on them with libcurl's (curl_multi_poll()'s extra_fds, the wait capped by
 * that deadline), then hands the revents to process(), which also runs what is due. All
 * three run on the loop thread and must not block. */
struct pollfd;
struct cw_upstream_poller {
    size_t (*fds)(void *cls, struct pollfd *fds, size_t max);
    int (*timeout_ms)(void *cls);
    void (*process)(void *cls, const struct pollfd *fds, size_t n);
};
#define CW_UPSTREAM_POLLER_FDS 80 /* the most sockets a poller may give */

/* Sets (or, with p NULL, clears) the loop's poller; p and cls are borrowed until it is
 * cleared or the loop stops. Only on the loop thread (from a task): the loop reads it
 * there without a lock. */
void cw_upstream_set_poller(struct cw_upstream *up, const struct cw_upstream_poller *p, void *cls);

/* Ends every queued, waiting and running transfer with rc -ECANCELED (on_done runs for each, on
 * the calling thread for those that never started), runs every queued task with cancelled
 * true and stops the thread; later submits get -ESHUTDOWN. The handle stays valid until
 * cw_upstream_stop(). Takes NULL; may be called more than once. */
void cw_upstream_cancel(struct cw_upstream *up);
/* cw_upstream_cancel(), then frees everything. Takes NULL. */
void cw_upstream_stop(struct cw_upstream *up);

/* ---- Collecting a whole response --------------------------------------------------------- */

/* A transfer whose response is kept whole in memory, up to a cap: for the callers that store
 * what they fetch (the worker's miss path, the refresher). */
struct cw_upstream_collect;
typedef void (*cw_upstream_collect_fn)(struct cw_upstream_collect *c, void *cls);

struct cw_upstream_collect {
    /* Set by the caller (req's strings borrowed until done runs). */
    struct cw_upstream_req req;
    size_t max_body; /* a larger body ends the transfer with -EFBIG */
    cw_upstream_collect_fn done;
    void *cls;

    /* Set before done runs (on the loop thread); see cw_upstream_collect_reset(). */
    int rc; /* on_done's, above, -EFBIG, -ENOMEM */
    int status;
    struct cw_upstream_buf headers; /* the final response's lines, as cw_upstream_fields */
    size_t header_count;
    struct cw_upstream_buf body;
    int64_t request_time_ms;
    int64_t response_time_ms;
    struct cw_upstream_xfer xfer; /* the transfer; xfer.errbuf says what failed */
};

/* Submits c as a transfer (cw_upstream_submit()'s return codes); done runs once, later, unless
 * this fails. */
CW_MUST_CHECK int cw_upstream_collect(struct cw_upstream *up, struct cw_upstream_collect *c);
/* Frees the buffers c owns and zeroes its results. Takes NULL. */
void cw_upstream_collect_reset(struct cw_upstream_collect *c);
/* Iterates c's response header lines, as cw_upstream_fields_next(). */
bool cw_upstream_collect_header_next(const struct cw_upstream_collect *c, size_t *off,
                                     struct cw_str *name, struct cw_str *value);

#endif /* CW_UPSTREAM_H */
