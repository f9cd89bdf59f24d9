/* workers/req.c - the request state machine of a worker: every step a request takes, from
 * the whole request received to the answer queued, in the manner of Varnish's
 * cache_req_fsm.c. One function per step returns the next step; req_run() drives them.
 *
 *   RECV -> LOOKUP -> HIT | STALE -> DELIVER
 *                  -> MISS -> (fetch thread: take the FETCH lease; then L2's GET; on its
 *                             miss the fleet's lease in Redis, or the wait for another node's
 *                             fill and L2's GET again) -> FETCH | L2 | LEASED
 *                     L2 -> HIT | STALE | MISS (L2's entry is in L1; once per request)
 *                     LEASED -> HIT | STALE | FETCH | WAIT -> WAITED -> LOOKUP
 *        -> PASS -> FETCH -> (fetch thread: STORE) -> FETCHED -> DELIVER | FETCH | SYNTH
 *                       -> (fetch thread: the head, streaming) -> STREAM -> DELIVER
 *                       -> UPLOAD (the body still arriving streams up; the answer follows)
 *        -> PURGE -> (fetch thread: the writes) -> PURGED -> DELIVER | SYNTH
 *        -> SYNTH
 *
 * A step that hands the request to another thread (the fetch thread, the waiter thread)
 * suspends the connection first and returns REQ_SUSPENDED; that thread sets r->step and
 * resumes it, and libmicrohttpd calls the handler, which calls req_run() again. What a step
 * needs done (an L1 read, an answer built, a write on the fetch thread) is a leaf call into
 * the other req_*.c files; they never call back here. The L2 (Redis) lookup goes between the
 * lease take and the fetch, on the fetch thread, and costs at most redis.timeout: whatever
 * it gives that is not a usable entry sends the request on to the origin. Fleet-wide
 * coalescing follows a clean L2 miss: the node's lease holder asks Redis for the key's lease;
 * taken, it fetches and releases it after the commit (with a fill notification); held by
 * another node, it waits, suspended and off every thread, for that node's notification or
 * its coalescing budget (lock_timeout), then reads L2 again, and fetches only if that finds
 * nothing. Redis failing costs nothing but the lookups' redis.timeout.
 * docs/ARCHITECTURE.md draws the graph. */
#include <errno.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/ctlmsg.h"
#include "core/log.h"
#include "core/route.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/clock.h"
#include "workers/req_int.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n)   ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

static enum req_step req_synth(struct worker_req *r, unsigned status, const char *body,
                               const char *detail)
{
    r->synth.status = status;
    r->synth.body = body;
    r->synth.detail = detail;
    return REQ_SYNTH;
}

/* As req_synth(), and the connection closes after the answer. */
static enum req_step req_synth_close(struct worker_req *r, unsigned status, const char *body,
                                     const char *detail)
{
    r->synth.close = true;
    return req_synth(r, status, body, detail);
}

/* From another thread: r continues at step. */
static void req_resume(struct worker_req *r, enum req_step step)
{
    r->step = step;
    req_conn_resume(r);
}

/* ---- on the fetch thread ------------------------------------------------------------- */

/* REQ_STORE, on the fetch thread when the origin answered or failed: commits what may be
 * stored (the entry, the lease's release in the same txn, the waiters woken), or releases
 * the lease. The connection is suspended (or its
 * answer streams from the pipe), so reading its request headers here races with nothing. */
static enum req_step req_step_store(struct worker_req *r)
{
    struct cw_worker *w = r->w;
    struct cw_upstream_collect *job = &r->job;

    if (job->rc != 0) {
        if (r->cacheable) cw_fill_abandon(&w->fill, &r->q, false);
    } else if (r->cacheable && r->stale && job->status >= 500 && job->status <= 504) {
        /* Keep the stale copy: stale-if-error may answer, and a 5xx replaces nothing. */
        cw_fill_abandon(&w->fill, &r->q, false);
    } else if (r->cacheable && !r->collect) {
        /* Streamed, not kept: too large, or not storable. Later requests go to the origin
         * on their own rather than queue behind one another. */
        cw_fill_abandon(&w->fill, &r->q, r->too_large || r->intent.uncacheable);
    } else if (r->cacheable) {
        cw_fill_complete(&w->fill, &r->q, job, &r->fill);
    }
    /* The fleet's lease goes after the commit (whose L2 write it follows), stored or not:
     * other nodes read the entry now, or go to the origin at once (hit-for-miss). */
    req_l2_lease_end(r);
    /* An unsafe method's invalidation ran at its answer's head (req_on_head()). */
    return REQ_FETCHED;
}

/* The origin's head: the body streams to the client (REQ_STREAM resumes r now), or waits to
 * be whole (r resumes when the transfer ends). */
static int req_on_head(struct cw_upstream_xfer *x, int status, const struct cw_upstream_fields *h)
{
    struct worker_req *r = x->cls;
    int rc = req_fetch_head(r, status, h);

    if (rc < 0) return rc;
    /* RFC 9111 §4.4: before any of the answer goes out, so that the client's next request
     * cannot be answered from what its unsafe request invalidated. */
    if (!r->cacheable) req_fetch_invalidate(r);
    if (!r->streaming) return CW_UPSTREAM_GO;
    rc = req_pipe_open(r);
    if (rc < 0) {
        r->streaming = false;
        return rc;
    }
    return CW_UPSTREAM_GO; /* the answer starts with the first byte of its body */
}

/* Hands r to REQ_STREAM: its answer goes out from now. */
static void req_stream_start(struct worker_req *r)
{
    r->stream_started = true;
    if (req_pipe_uploading(r))
        req_pipe_handoff(r, REQ_STREAM);
    else
        req_resume(r, REQ_STREAM);
}

static int req_on_data(struct cw_upstream_xfer *x, const char *p, size_t n)
{
    struct worker_req *r = x->cls;

    /* The last bytes of a body that will be stored wait for the commit (req_on_done()): a
     * client that has the whole answer must find it in L1 with its next request. */
    if (r->streaming && r->collect && r->stream_len >= 0 &&
        r->job.body.len + n == (uint64_t)r->stream_len) {
        r->tail_held = n;
        return req_fetch_keep(r, p, n);
    }
    if (r->streaming) {
        int v = req_pipe_push(r, p, n);
        if (v != CW_UPSTREAM_GO) return v; /* not taken: not kept either */
        if (!r->stream_started) req_stream_start(r);
    }
    return req_fetch_keep(r, p, n);
}

/* The transfer ended. Unstreamed, r resumes at the answer; streamed, the answer is under way
 * and the pipe is told the end (the last touch of r, unless r completed meanwhile). */
static void req_on_done(struct cw_upstream_xfer *x, int rc)
{
    struct worker_req *r = x->cls;

    r->job.rc = rc;
    if (r->job.status == 0) r->job.status = x->status;
    r->job.request_time_ms = x->request_time_ms;
    r->job.response_time_ms = x->response_time_ms;
    req_fetch_account(r);
    if (r->streaming && !r->stream_started && rc != 0) {
        /* Nothing of the body went out: the failure can still be answered cleanly. */
        r->streaming = false;
        if (!req_pipe_uploading(r)) req_pipe_free(r); /* else the body's end takes the answer */
    }
    if (r->streaming) {
        bool one_piece = !r->stream_started; /* an empty or one-piece body */
        (void)req_step_store(r);
        struct cw_str tail = cw_str_make(NULL, 0);
        if (rc == 0 && r->tail_held > 0 && r->job.body.len >= r->tail_held)
            tail = cw_str_make(r->job.body.p + r->job.body.len - r->tail_held, r->tail_held);
        if (req_pipe_end(r, rc, tail)) {
            req_free(r);
        } else if (one_piece) {
            /* Started only now, with the whole body in the pipe: the answer goes out in one
             * write (req_answer_stream()). r is suspended until this resume, so nothing
             * could complete it since the end. */
            req_stream_start(r);
        }
    } else if (r->pipe != NULL) {
        /* The body streamed up, the answer waits whole. */
        if (req_pipe_finish(r, rc, req_step_store(r))) req_free(r);
    } else {
        req_resume(r, req_step_store(r));
    }
}

static ssize_t req_on_read(struct cw_upstream_xfer *x, char *buf, size_t cap)
{
    return req_pipe_upload_read(x->cls, buf, cap);
}

static const struct cw_upstream_ops req_upstream_ops = {
    .on_head = req_on_head,
    .on_data = req_on_data,
    .on_done = req_on_done,
};

/* The same, for a request whose body streams to the origin as it arrives. */
static const struct cw_upstream_ops req_upstream_upload_ops = {
    .on_head = req_on_head,
    .on_data = req_on_data,
    .on_read = req_on_read,
    .on_done = req_on_done,
};

/* To the origin from the fetch thread: a submit that fails answers at once (and gives up the
 * fleet's lease, if r took it). */
static void req_fetch_now(struct worker_req *r)
{
    if (req_fetch_submit(r) == 0) return;
    req_l2_lease_end(r);
    req_resume(r, REQ_FETCHED);
}

/* L2's answer after another node's fill (notified, or the wait's deadline): an entry the
 * commit takes answers (REQ_L2, counted as coalesced across the fleet); nothing usable: the
 * origin (the filler's answer was not stored, or it died). */
static void req_on_l2_filled(void *arg, int rc, struct cw_str value)
{
    struct worker_req *r = arg;

    if (req_l2_accept(r, rc, value) == 0) {
        r->l2_fleet = true;
        req_resume(r, REQ_L2);
        return;
    }
    req_fetch_now(r);
}

/* The fleet's lease: taken, this node fetches for the fleet; held by another node, r waits
 * for its fill (bounded by r's coalescing budget); no answer from Redis: the origin, as
 * without L2. */
static void req_on_l2_lease(void *arg, int rc, struct cw_str value)
{
    struct worker_req *r = arg;

    (void)value;
    if (rc == -EEXIST && req_l2_wait(r, req_on_l2_filled)) return;
    req_fetch_now(r);
}

/* L2's answer, on the fetch thread, r holding its FETCH lease: an entry that the commit takes
 * is in L1 now and answers (REQ_L2); absent: the fleet's lease before the origin; refused,
 * an error, a timeout or the stop: the origin, as without L2. */
static void req_on_l2(void *arg, int rc, struct cw_str value)
{
    struct worker_req *r = arg;

    if (req_l2_accept(r, rc, value) == 0) {
        req_resume(r, REQ_L2);
        return;
    }
    if (rc == -ENOENT && req_l2_lease(r, req_on_l2_lease) == 0) return;
    req_fetch_now(r);
}

/* The fetch thread's half of REQ_MISS: takes the key's FETCH lease (a write txn, which may
 * wait on another process's write without stalling hits), then asks L2 (once per request;
 * not for a request whose own directives want the origin, nor when a stale copy will be
 * revalidated), or fetches at once, or hands r back to the MHD thread (REQ_LEASED) to answer
 * from L1 or to wait for the holder's fill. */
static void req_lease_task(struct cw_upstream_task *t, bool cancelled)
{
    struct worker_req *r = (struct worker_req *)((char *)t - offsetof(struct worker_req, task));

    if (cancelled) {
        r->job.rc = -ECANCELED;
        req_resume(r, REQ_FETCHED);
        return;
    }
    r->lease_rc = req_fetch_lease(r);
    if (r->lease_rc == 0) {
        if (req_fetch_filled_since(r)) {
            req_resume(r, REQ_LEASED);
            return;
        }
        if (!r->l2_tried && !r->stale && !r->fwd_request && !r->has_req_cc && !r->pragma_no_cache) {
            r->l2_tried = true;
            if (req_l2_lookup(r, req_on_l2) == 0) return; /* req_on_l2() goes on */
        }
    } else if (r->lease_rc == -EBUSY && r->lease_holder.kind != CW_STORE_LEASE_PASS &&
               cw_clock_mono_ms() < r->wait_until_ms) {
        req_resume(r, REQ_LEASED);
        return;
    }
    /* With the lease; or alone: hit-for-miss, the wait budget spent, or the lease db failed. */
    if (req_fetch_submit(r) < 0) req_resume(r, REQ_FETCHED);
}

/* The fetch thread's half of REQ_PURGE. */
static void req_purge_task(struct cw_upstream_task *t, bool cancelled)
{
    struct worker_req *r = (struct worker_req *)((char *)t - offsetof(struct worker_req, task));

    /* A tag or prefix purge with more to do goes to the back of the queue, so the fetches
     * and tasks queued meanwhile run between its steps; a full queue: the steps go on here. */
    while (req_purge_apply(r, cancelled)) {
        if (cw_upstream_defer(r->w->fetch, &r->task) == 0) return;
    }
    req_resume(r, REQ_PURGED);
}

/* Suspends r and queues task on the fetch thread: 0, or the -errno of a queue that took
 * nothing (r is then suspended still: the caller resumes it). */
static int req_to_fetch_thread(struct worker_req *r, cw_upstream_task_fn task)
{
    int rc;

    r->task.run = task;
    /* Suspend before queueing: the task may resume r at once. */
    MHD_suspend_connection(r->conn);
    rc = cw_upstream_defer(r->w->fetch, &r->task);
    if (rc < 0) cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
    return rc;
}

/* ---- the steps, on the MHD thread ------------------------------------------------------ */

/* The whole request is in: what is it, and for which route? */
static enum req_step req_step_recv(struct worker_req *r)
{
    const char *why = NULL;
    unsigned status;
    struct cw_str path;
    const char *qm;
    int route;

    if (r->refuse_status != 0) {
        req_recv_refused(r);
        return REQ_SYNTH;
    }
    if (r->body_over) return req_synth(r, 413, "request body too large\n", "body-too-large");
    if (atomic_load(&r->w->stopping)) return req_synth_close(r, 503, "shutting down\n", "shutdown");
    status = req_recv_target(r, &why);
    if (status == 414) return req_synth(r, 414, "request target too long\n", "uri-too-long");
    if (status == 503) return req_synth(r, 503, "out of memory\n", "enomem");
    if (status != 0) {
        cw_info_rl("worker %d: 400 for %.64s: %s", r->w->index, r->raw_uri, why);
        return req_synth_close(r, status, "bad request target\n", "bad-uri");
    }
    qm = memchr(r->uri, '?', r->uri_len);
    path = cw_str_make(r->uri, qm ? (size_t)(qm - r->uri) : r->uri_len);
    route = cw_route_find(r->w->cfg, cw_str_cstr(r->host), path);
    if (route < 0) return req_synth(r, 404, "no route for this host and path\n", "no-route");
    r->rt = &r->w->cfg->routes[route];
    r->trusted = req_recv_trusted(r);
    r->q.rt = r->rt;
    r->q.header = req_header;
    r->q.header_cls = r;
    r->q.uri = cw_str_make(r->uri, r->uri_len);
    r->q.host = cw_str_cstr(r->host);
    if (r->q.key_buf == NULL) r->q.key_buf = malloc(CW_LIMIT_KEY_BYTES);
    if (r->q.key_buf == NULL) return req_synth(r, 503, "out of memory\n", "enomem");
    if (strcmp(r->method, "PURGE") == 0) return REQ_PURGE;
    r->is_head = strcmp(r->method, "HEAD") == 0;
    r->cacheable = r->is_head || strcmp(r->method, "GET") == 0;
    if (!r->cacheable) return REQ_PASS;
    req_recv_directives(r);
    if (r->req_cc.flags & CW_CC_NO_STORE) {
        r->cacheable = false;
        r->fwd_request = true;
        return REQ_PASS;
    }
    return REQ_LOOKUP;
}

/* L1: the entry may answer (fresh, or stale within stale-while-revalidate), or the origin
 * is needed. */
static enum req_step req_step_lookup(struct worker_req *r)
{
    int rc = req_hit_lookup(r);

    if (rc == 1) return r->hit_stale ? REQ_STALE : REQ_HIT;
    if (rc == -ENOMEM) return req_synth(r, 503, "out of memory\n", "enomem");
    if (rc < 0) return req_synth(r, 400, "bad request target or host\n", "bad-key");
    return REQ_MISS;
}

/* A fresh entry answers; one in the last refresh_ahead of its life asks for a refresh. */
static enum req_step req_step_hit(struct worker_req *r)
{
    if (r->want_refresh) req_hit_ask_refresh(r);
    return REQ_DELIVER;
}

/* RFC 5861 §3: the stale entry answers now, and the refresher revalidates it. */
static enum req_step req_step_stale(struct worker_req *r)
{
    req_hit_ask_refresh(r);
    return REQ_DELIVER;
}

/* Whether another request's live fetch (or running refresh) of r's key stands, read in a
 * read txn by the take's own rule (cw_store_lease_is_blocking()): r then waits for its fill at
 * once, as the fetch thread's take would have found. Every other record (none, one past its
 * deadline or with a dead owner, a wanted refresh, hit-for-miss) goes to the take, which
 * decides; an owner that dies later is found by the waiter thread's liveness check, which
 * resumes r to take the lease over. */
static bool req_miss_lease_held(struct worker_req *r)
{
    struct cw_store_lease l;
    int64_t now = cw_clock_mono_ms();

    if (now >= r->wait_until_ms || cw_store_lease_get(r->w->reader, &r->q.key, &l) != 0)
        return false;
    /* Only a lease the take would refuse (the take's own rule), and only one a fill follows:
     * a fetch or a running refresh. A hit-for-miss record is the take's to act on. */
    if (l.kind == CW_STORE_LEASE_PASS || !cw_store_lease_is_blocking(&l, now)) return false;
    r->lease_rc = -EBUSY;
    r->lease_holder = l;
    return true;
}

/* RFC 9111 §4: a miss that takes the key's fetch lease fetches; one that finds another
 * process fetching waits for its fill (or fetches alone past the budget). The lease is a
 * write txn, so the fetch thread takes it; a lease seen held in a read txn sends r to wait
 * without that round trip (the 199 other clients of a 200-client stampede). */
static enum req_step req_step_miss(struct worker_req *r)
{
    int rc;

    if (r->has_req_cc && (r->req_cc.flags & CW_CC_ONLY_IF_CACHED))
        return req_synth(r, 504, "not in cache (only-if-cached)\n", "only-if-cached");
    r->result = CW_METRICS_RESULT_MISS;
    if (r->wait_until_ms == 0) r->wait_until_ms = cw_clock_mono_ms() + r->rt->lock_timeout_ms;
    if (req_miss_lease_held(r)) return REQ_WAIT;
    if (req_fetch_prepare(r, &req_upstream_ops) < 0)
        return req_synth(r, 503, "out of memory\n", "enomem");
    rc = req_to_fetch_thread(r, req_lease_task);
    if (rc < 0) {
        r->job.rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
        req_resume(r, REQ_FETCHED);
    }
    return REQ_SUSPENDED;
}

/* Back from the lease take without a fetch: the key was filled meanwhile (answer from L1,
 * else fetch with the lease), or another request holds the lease (wait for its fill). */
static enum req_step req_step_leased(struct worker_req *r)
{
    if (atomic_load(&r->w->stopping)) return req_synth_close(r, 503, "shutting down\n", "shutdown");
    if (r->lease_rc != 0) return REQ_WAIT;
    if (req_hit_lookup(r) == 1) {
        req_defer_release(r->w, &r->q);
        return r->hit_stale ? REQ_STALE : REQ_HIT;
    }
    /* The entry found now (stale, say) was not there when the origin request was built: it
     * is built again, with that entry's validators. */
    free(r->hdr_lines);
    r->hdr_lines = NULL;
    return REQ_FETCH;
}

/* L2's entry is in L1 (its lease released with the put): it answers as L1 would answer it,
 * marked as from L2; an entry that may not answer this request (past its windows) sends the
 * request back to MISS, which will not ask L2 again. */
static enum req_step req_step_l2(struct worker_req *r)
{
    if (atomic_load(&r->w->stopping)) return req_synth_close(r, 503, "shutting down\n", "shutdown");
    r->l2_hit = true;
    if (req_hit_lookup(r) == 1) {
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_L2_HIT, 1);
        if (r->l2_fleet) cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_L2_COALESCED, 1);
        return r->hit_stale ? REQ_STALE : REQ_HIT;
    }
    r->l2_hit = r->l2_fleet = false;
    return REQ_MISS;
}

/* Another request fetches the key: wait for its fill, bounded by the lease's deadline. */
static enum req_step req_step_wait(struct worker_req *r)
{
    struct cw_worker *w = r->w;

    if (req_wait_add(w, r, r->lease_holder.pid, r->lease_holder.deadline_ms)) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_COALESCED, 1);
        return REQ_SUSPENDED;
    }
    return req_synth_close(r, 503, "shutting down\n", "shutdown");
}

/* Woken: look up from scratch, for the fill may have recorded a Vary (the key can differ). */
static enum req_step req_step_waited(struct worker_req *r)
{
    if (atomic_load(&r->w->stopping)) return req_synth_close(r, 503, "shutting down\n", "shutdown");
    r->q.key_len = 0;
    r->vary_miss = r->stale = r->fwd_request = false;
    r->etag[0] = r->last_modified[0] = '\0';
    return REQ_LOOKUP;
}

/* Not for the cache (another method, or the request's no-store): the origin answers. */
static enum req_step req_step_pass(struct worker_req *r)
{
    r->result = CW_METRICS_RESULT_PASS;
    return REQ_FETCH;
}

/* A passed-through request whose body is still arriving: the origin request starts now and
 * the body follows it through the pipe (worker.c pushes it), so a large upload never sits in
 * memory. The connection stays live; the answer's step comes through the pipe. */
static enum req_step req_fetch_upload(struct worker_req *r)
{
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");

    if (req_pipe_upload_start(r) < 0 || req_fetch_prepare(r, &req_upstream_upload_ops) < 0)
        return req_synth(r, 503, "out of memory\n", "enomem");
    /* The wire reader let through one valid Content-Length, or chunked (then none). */
    r->job.req.body_len = cl != NULL ? strtoll(cl, NULL, 10) : -1;
    /* Not submitted: the body is discarded as it comes, then the error is answered (r cannot
     * have completed: this is its handler). */
    if (req_fetch_submit(r) < 0) (void)req_pipe_finish(r, r->job.rc, REQ_FETCHED);
    return REQ_UPLOAD;
}

static enum req_step req_step_fetch(struct worker_req *r)
{
    if (r->stream_body) return req_fetch_upload(r);
    if (req_fetch_prepare(r, &req_upstream_ops) < 0)
        return req_synth(r, 503, "out of memory\n", "enomem");
    /* Suspend before submitting: the fetch may complete (and resume r) at once. */
    MHD_suspend_connection(r->conn);
    if (req_fetch_submit(r) < 0) req_resume(r, REQ_FETCHED);
    return REQ_SUSPENDED;
}

/* The origin failed (connection, timeout, bad answer) or answered 5xx: RFC 5861 §4 lets a
 * stale copy inside its stale-if-error window answer instead. */
static bool req_is_origin_error(const struct cw_upstream_collect *job)
{
    return job->rc != 0 || job->status == 500 || job->status == 502 || job->status == 503 ||
           job->status == 504;
}

static enum req_step req_fetch_failed(struct worker_req *r)
{
    switch (r->job.rc) {
    case -ETIMEDOUT:
        return req_synth(r, 504, "origin timed out\n", "origin-timeout");
    case -EAGAIN:
        return req_synth(r, 503, "too many origin fetches waiting\n", "busy");
    case -EHOSTUNREACH:
        return req_synth(r, 503,
                         "origin unavailable: every server is down or its breaker is open\n",
                         "origin-down");
    case -ECANCELED:
        return req_synth(r, 503, "shutting down\n", "shutdown");
    case -EFBIG:
        return req_synth(r, 502, "origin response too large\n", "too-large");
    case -EPROTO:
        return req_synth(r, 502, "origin TLS handshake failed\n", "origin-tls");
    default:
        return req_synth(r, 502, "origin unreachable or sent a bad response\n", "origin-error");
    }
}

/* The origin answered (or failed): which answer the client gets. */
static enum req_step req_step_fetched(struct worker_req *r)
{
    struct cw_upstream_collect *job = &r->job;

    if (r->cacheable && r->stale && req_is_origin_error(job) &&
        req_hit_serve_again(r, WSERVE_SIE) == 1)
        return REQ_DELIVER;
    if (job->rc != 0) return req_fetch_failed(r);
    if (r->fill.revalidated) {
        if (req_hit_serve_again(r, WSERVE_ANY) == 1) return REQ_DELIVER;
        return req_synth(r, 502, "revalidation failed\n", "revalidation-failed");
    }
    /* The client's own preconditions and Range are answered from what was just stored. */
    if (r->fill.stored && req_recv_has_conditions(r) && req_hit_serve_again(r, WSERVE_FILLED) == 1)
        return REQ_DELIVER;
    if (job->status == 304 && r->cacheable) {
        /* Our conditional request's 304 could not be applied (the entry went, or the origin
         * now forbids storing): ask once more without validators. */
        if (r->stale && !r->refetched) {
            r->refetched = true;
            r->stale = false;
            r->etag[0] = r->last_modified[0] = '\0';
            memset(&r->fill, 0, sizeof(r->fill));
            cw_upstream_collect_reset(&r->job);
            free(r->url);
            free(r->hdr_lines);
            r->url = r->hdr_lines = NULL;
            return REQ_FETCH;
        }
        return req_synth(r, 502, "origin answered 304 to a request we did not make conditional\n",
                         "unexpected-304");
    }
    if (req_answer_origin(r) < 0) {
        r->ret = MHD_NO;
        return REQ_DONE;
    }
    return REQ_DELIVER;
}

/* The origin's head is in and its body streams: the answer goes out now, its body read from
 * the pipe as the fetch thread fills it. */
static enum req_step req_step_stream(struct worker_req *r)
{
    if (req_answer_stream(r) < 0) {
        r->ret = MHD_NO;
        return REQ_DONE;
    }
    return REQ_DELIVER;
}

/* PURGE <url>: drops the URL's entry and its Vary variants (or marks them stale with
 * "Soft-Purge: 1", so stale-while-revalidate and stale-if-error still shield the origin);
 * with a Surrogate-Key field, the entries tagged so instead; with "Purge-Prefix: 1", every
 * entry whose URL starts with this one.
 * Only from purge.allow. A purge is not a hit, but its writes still go to the fetch thread:
 * on the MHD thread they would stall every hit of this worker behind another process's. */
/* The prefix of a "Purge-Prefix: 1" purge: http://host/target as given, and the key-string
 * prefix L1 keys start with (core/key.h). 0, -ENOMEM, or -EINVAL for one that does not split. */
static int req_purge_prefix_prepare(struct worker_req *r)
{
    struct cw_str host, target;
    size_t n = 7 + r->q.host.len + strlen(r->uri) + 1;
    int rc;

    r->purge->prefix_url = malloc(n);
    r->purge->prefix = malloc(CW_LIMIT_KEY_BYTES);
    if (r->purge->prefix_url == NULL || r->purge->prefix == NULL) return -ENOMEM;
    snprintf(r->purge->prefix_url, n, "http://%.*s%s", (int)r->q.host.len, r->q.host.p, r->uri);
    if (cw_ctlmsg_split_url(cw_str_cstr(r->purge->prefix_url), &host, &target) < 0) return -EINVAL;
    rc = cw_key_build(NULL, CW_STR_LIT("http"), host, target, r->purge->prefix, CW_LIMIT_KEY_BYTES,
                      &r->purge->prefix_len);
    return rc < 0 ? -EINVAL : 0;
}

static enum req_step req_step_purge(struct worker_req *r)
{
    const char *soft = req_header(r, "Soft-Purge");
    int rc;

    if (!req_purge_allowed(r))
        return req_synth(r, 403, "purge not allowed from this address\n", "purge-denied");
    if (cw_fill_key_primary(&r->w->fill_mhd, &r->q) < 0)
        return req_synth(r, 400, "bad request target or host\n", "bad-key");
    r->purge = calloc(1, sizeof(*r->purge));
    if (r->purge == NULL) return req_synth(r, 503, "out of memory\n", "enomem");
    r->purge->soft = soft != NULL && strcmp(soft, "1") == 0;
    /* With Surrogate-Key, the entries so tagged go instead of the URL's. */
    const char *tags = req_header(r, "Surrogate-Key");
    if (tags != NULL && (r->purge->tags = strdup(tags)) == NULL)
        return req_synth(r, 503, "out of memory\n", "enomem");
    /* With "Purge-Prefix: 1", every entry whose URL starts with this one (as cwctl purge
     * --prefix: the key string's prefix, built as keys are). */
    const char *prefix = req_header(r, "Purge-Prefix");
    if (tags == NULL && prefix != NULL && strcmp(prefix, "1") == 0) {
        rc = req_purge_prefix_prepare(r);
        if (rc == -ENOMEM) return req_synth(r, 503, "out of memory\n", "enomem");
        if (rc < 0) return req_synth(r, 400, "bad purge prefix\n", "bad-key");
    }
    rc = req_to_fetch_thread(r, req_purge_task);
    if (rc < 0) {
        r->purge->rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
        req_resume(r, REQ_PURGED);
    }
    return REQ_SUSPENDED;
}

static enum req_step req_step_purged(struct worker_req *r)
{
    if (r->purge->rc == -EAGAIN) return req_synth(r, 503, "too many writes waiting\n", "busy");
    if (r->purge->rc < 0) return req_synth_close(r, 503, "shutting down\n", "shutdown");
    if (req_purge_response(r) < 0) {
        r->ret = MHD_NO;
        return REQ_DONE;
    }
    return REQ_DELIVER;
}

static enum req_step req_step_deliver(struct worker_req *r)
{
    struct MHD_Response *resp = r->resp;

    r->resp = NULL;
    r->ret = req_queue(r, r->resp_status, resp);
    return REQ_DONE;
}

static enum req_step req_step_synth(struct worker_req *r)
{
    r->close = r->close || r->synth.close;
    r->ret = req_answer_error(r, r->synth.status, r->synth.body, r->synth.detail);
    return REQ_DONE;
}

typedef enum req_step (*req_step_fn)(struct worker_req *r);

static const req_step_fn req_steps[] = {
    [REQ_RECV] = req_step_recv,       [REQ_LOOKUP] = req_step_lookup,
    [REQ_HIT] = req_step_hit,         [REQ_STALE] = req_step_stale,
    [REQ_MISS] = req_step_miss,       [REQ_L2] = req_step_l2,
    [REQ_LEASED] = req_step_leased,   [REQ_WAIT] = req_step_wait,
    [REQ_WAITED] = req_step_waited,   [REQ_PASS] = req_step_pass,
    [REQ_FETCH] = req_step_fetch,     [REQ_STORE] = req_step_store,
    [REQ_FETCHED] = req_step_fetched, [REQ_PURGE] = req_step_purge,
    [REQ_PURGED] = req_step_purged,   [REQ_DELIVER] = req_step_deliver,
    [REQ_STREAM] = req_step_stream,   [REQ_SYNTH] = req_step_synth,
};
static_assert(CW_ARRAY_LEN(req_steps) == REQ_SYNTH + 1, "a function for every step");

/* Frees what r owns, not r itself. */
static void req_release(struct worker_req *r)
{
    struct cw_worker *w = r->w;

    if (r->resp != NULL && !r->resp_kept) MHD_destroy_response(r->resp); /* never queued */
    req_pipe_free(r);
    cw_upstream_collect_reset(&r->job);
    free(r->body_in.p);
    free(r->url);
    free(r->hdr_lines);
    free(r->snap.p);
    free(r->method_own);
    if (r->purge != NULL) {
        free(r->purge->tags);
        free(r->purge->prefix);
        free(r->purge->prefix_url);
        free(r->purge);
    }
    if (r->q.has_lease) req_defer_release(w, &r->q);
    req_l2_lease_drop(r);
    free(r->q.key_buf);
    free(r->join_buf);
    free(r->xff);
    free(r->forwarded);
    free(r->refused_line);
    free(r->conn_joined);
    if (r->uri != r->raw_uri) free(r->uri);
    free(r->raw_uri);
}

void req_free(struct worker_req *r)
{
    struct cw_worker *w = r->w;

    req_release(r);
    free(r);
    atomic_fetch_sub(&w->inflight, 1);
}

void req_free_mhd(struct worker_req *r)
{
    struct cw_worker *w = r->w;

    if (w->spare == NULL) {
        /* Its key buffer is kept with it: every request needs one (CW_LIMIT_KEY_BYTES). The
         * bytes a request leaves there are never read: a key is read only to its length. */
        w->spare_key_buf = r->q.key_buf;
        r->q.key_buf = NULL;
        req_release(r);
        /* Parked: under ASan any use of it until req_alloc_mhd() is reported, as after free(). */
        w->spare = r;
        ASAN_POISON_MEMORY_REGION(r, sizeof(*r));
    } else {
        req_release(r);
        free(r);
    }
    atomic_fetch_sub(&w->inflight, 1);
}

struct worker_req *req_alloc_mhd(struct cw_worker *w)
{
    struct worker_req *r = w->spare;

    if (r == NULL) return calloc(1, sizeof(*r));
    w->spare = NULL;
    ASAN_UNPOISON_MEMORY_REGION(r, sizeof(*r));
    memset(r, 0, sizeof(*r));
    r->q.key_buf = w->spare_key_buf;
    w->spare_key_buf = NULL;
    return r;
}

enum MHD_Result req_run(struct worker_req *r)
{
    enum req_step s = r->step;

    for (;;) {
        if (s == REQ_SUSPENDED) return MHD_YES; /* r belongs to another thread now */
        if (s == REQ_UPLOAD) {
            r->step = REQ_UPLOAD; /* worker.c pushes the body; the answer comes by the pipe */
            return MHD_YES;
        }
        if (s == REQ_DONE) {
            r->step = REQ_DONE;
            return r->ret;
        }
        if (s < REQ_RECV || s > REQ_SYNTH || s == REQ_STORE) {
            /* REQ_STORE runs on the fetch thread; the others before RECV in worker.c. */
            cw_err("worker %d: request in step %d reached the state machine", r->w->index, (int)s);
            return MHD_NO;
        }
        r->step = s;
        s = req_steps[s](r);
    }
}
