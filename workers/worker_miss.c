/* workers/worker_miss.c - the origin side of a worker: has workers/upstream build the origin
 * request for a miss or a pass, suspends the client connection, and on completion (on the
 * upstream loop's thread) decides storage, writes L1, and resumes the connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/cc.h"
#include "core/cond.h"
#include "core/config.h"
#include "core/entry.h"
#include "core/fresh.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/clock.h"
#include "workers/fetch.h"
#include "workers/worker_int.h"

/* Hands one request field to the builder. The fields came through the wire reader, so each
 * is a valid token and a value without CR, LF or NUL (workers/wire.h). */
static enum MHD_Result miss_on_req_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    struct cw_upstream_head *h = cls;

    (void)kind;
    return cw_upstream_head_add(h, cw_str_cstr(key), cw_str_cstr(value ? value : "")) == 0 ? MHD_YES
                                                                                           : MHD_NO;
}

/* The forwarding rules, as the builder asks for them. */
static enum cw_upstream_fwd miss_fwd(void *cls, struct cw_str name)
{
    switch (worker_fwd_field(cls, name)) {
    case WFWD_OURS:
        return CW_UPSTREAM_FWD_OURS;
    case WFWD_DROP:
        return CW_UPSTREAM_FWD_DROP;
    case WFWD_PASS:
        break;
    }
    return CW_UPSTREAM_FWD_PASS;
}

void worker_client_addr(struct MHD_Connection *conn, char *buf, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    snprintf(buf, size, "unknown");
    if (ci == NULL || ci->client_addr == NULL) return;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ci->client_addr;
        inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)size);
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
    }
}

/* Builds the origin request's header block from what the request was understood to be
 * (workers/upstream.h has the rules): the client's fields as the route forwards them, ours
 * (worker_req_header() gives their values), and a stale copy's validators. */
static int miss_build_headers(struct worker_req *r)
{
    struct cw_upstream_head h = {.fwd = miss_fwd,
                                 .ours = worker_req_header,
                                 .cls = r,
                                 .connection = r->conn_hdr,
                                 .strip_preconditions = r->cacheable};
    bool cond = r->cacheable && r->stale;

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, miss_on_req_header, &h);
    return cw_upstream_head_finish(&h, cw_str_cstr(cond ? r->etag : ""),
                                   cw_str_cstr(cond ? r->last_modified : ""), &r->hdr_lines);
}

static void miss_done(struct cw_upstream_collect *job, void *cls);
static void miss_lease_run(struct cw_upstream_task *t, bool cancelled);

/* Submits r's built job; the connection is suspended. On failure r resumes with the error
 * (its lease, if any, is released at completion). */
static void miss_submit(struct worker_req *r)
{
    int rc;

    r->fetch_start_us = cw_clock_mono_us();
    rc = cw_upstream_collect(r->w->fetch, &r->job);
    if (rc < 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
        r->job.rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
        r->state = WREQ_READY;
        MHD_resume_connection(r->conn);
    }
}

enum MHD_Result worker_miss_start(struct worker_req *r)
{
    const struct cw_config_origin *o = &r->w->cfg->origins[r->rt->origin];
    int rc;

    /* Built once: a request that waited, or took a lease first, comes back here. */
    if (r->url == NULL && cw_upstream_build_url(o, r->rt, cw_str_make(r->uri, r->uri_len),
                                                !r->cacheable, &r->url) < 0)
        return worker_answer_error(r, 503, "out of memory\n", "enomem");
    if (r->hdr_lines == NULL && miss_build_headers(r) < 0)
        return worker_answer_error(r, 503, "out of memory\n", "enomem");
    r->job.req.origin = r->rt->origin;
    r->job.req.url = r->url;
    /* HEAD is fetched as GET so that the whole response can be stored (nginx does too). */
    r->job.req.method = r->cacheable ? "GET" : r->method;
    r->job.req.head = r->hdr_lines;
    r->job.req.body = cw_str_make(r->body_in.p, r->body_in.len);
    r->job.req.connect_timeout_ms = o->connect_timeout_ms;
    r->job.req.timeout_ms = o->timeout_ms;
    /* Bodies past max_object are not stored; until they stream, they pass up to a bound. */
    r->job.max_body = r->w->cfg->cache_max_object_bytes > CW_LIMIT_FETCH_BODY_BYTES
                          ? (size_t)r->w->cfg->cache_max_object_bytes
                          : (size_t)CW_LIMIT_FETCH_BODY_BYTES;
    r->job.done = miss_done;
    r->job.cls = r;
    r->state = WREQ_WAIT;
    /* Suspend before submitting: the fetch may complete (and resume) at once. */
    MHD_suspend_connection(r->conn);
    if (!r->lease_step) {
        miss_submit(r);
        return MHD_YES;
    }
    r->task.run = miss_lease_run;
    rc = cw_upstream_defer(r->w->fetch, &r->task);
    if (rc < 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
        r->lease_step = false;
        r->job.rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
        r->state = WREQ_READY;
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* cw_store_read() callback: 0 when the entry's answer arrived after the request did (another
 * request's fill, made while this one was on its way to the lease), else 1. */
static int miss_on_entry_since(void *cls, const struct cw_entry_view *v)
{
    const struct worker_req *r = cls;

    return v->h.response_time_ms >= r->start_wall_ms ? 0 : 1;
}

/* True when the key was filled since r arrived. The fill generation says so at once; but a
 * filler releases the lease in the same txn as its put and bumps the generation just after,
 * so a lease taken in between sees the old generation, and the entry itself is asked. */
static bool miss_filled_since(struct worker_req *r)
{
    struct cw_worker *w = r->w;

    if (atomic_load_explicit(cw_seg_fill_gen(w->seg, &r->q.key), memory_order_acquire) != r->gen0)
        return true;
    return cw_store_read(w->fetch_reader, &r->q.key, cw_str_make(r->q.key_buf, r->q.key_len),
                         miss_on_entry_since, r) == 0;
}

/* On the fetch thread, r suspended: takes the key's FETCH lease (a write txn, which may wait
 * on another process's write without stalling hits), then fetches, or hands r back to the
 * MHD thread (WREQ_LEASED) to answer from L1 or to wait for the holder's fill. */
static void miss_lease_run(struct cw_upstream_task *t, bool cancelled)
{
    struct worker_req *r = (struct worker_req *)((char *)t - offsetof(struct worker_req, task));
    struct cw_worker *w = r->w;
    struct cw_store_lease *holder = &r->lease_holder;
    uint64_t token = 0;
    int64_t now;

    r->lease_step = false;
    if (cancelled) {
        r->job.rc = -ECANCELED;
        r->state = WREQ_READY;
        MHD_resume_connection(r->conn);
        return;
    }
    now = cw_clock_mono_ms();
    r->lease_rc = cw_store_lease_take(w->store, &r->q.key, CW_STORE_LEASE_FETCH, (int32_t)getpid(),
                                      now, now + r->rt->lock_timeout_ms, &token, holder);
    if (r->lease_rc == 0) {
        r->q.has_lease = true;
        r->q.lease_key = r->q.key;
        r->q.lease_token = token;
        if (!miss_filled_since(r)) {
            miss_submit(r);
            return;
        }
    } else if (!(r->lease_rc == -EBUSY && holder->kind != CW_STORE_LEASE_PASS &&
                 now < r->wait_until_ms)) {
        /* Hit-for-miss, the wait budget spent, or the lease db failed: fetch alone. */
        miss_submit(r);
        return;
    }
    r->state = WREQ_LEASED;
    MHD_resume_connection(r->conn);
}

/* With a Vary record, the URI's variants are keyed by the primary key plus header lines:
 * they go by key prefix (a scan, so only when there is a record). */
static void miss_invalidate_variants(struct worker_req *r)
{
    struct cw_fill *f = &r->w->fill;
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t vary_len, n = 0;

    if (r->q.primary_len >= CW_LIMIT_KEY_BYTES) return;
    if (cw_store_vary_get(f->reader, &r->q.primary, vary, sizeof(vary), &vary_len) != 0) return;
    r->q.key_buf[r->q.primary_len] = '\n';
    if (cw_store_purge_prefix(f->store, cw_str_make(r->q.key_buf, r->q.primary_len + 1), false,
                              cw_clock_wall_ms(), &n) < 0)
        cw_warn_rl("worker %d: invalidate variants of %s failed", r->w->index, r->uri);
}

/* Deletes the entry, the variants and the Vary record of one URI on the request's origin. */
static void miss_invalidate_uri(struct worker_req *r, struct cw_str uri)
{
    struct cw_fill *f = &r->w->fill;
    struct cw_str saved = r->q.uri;
    int rc;

    r->q.uri = uri;
    rc = cw_fill_key_primary(f, &r->q);
    r->q.uri = saved;
    if (rc < 0) return;
    rc = cw_store_delete(f->store, &r->q.primary);
    miss_invalidate_variants(r);
    if (rc < 0 && rc != -ENOENT)
        cw_warn_rl("worker %d: invalidate %.*s: %s", r->w->index, (int)uri.len, uri.p,
                   strerror(-rc));
    rc = cw_store_vary_put(f->store, &r->q.primary, cw_str_make(NULL, 0));
    if (rc < 0 && rc != -ENOENT)
        cw_warn_rl("worker %d: invalidate vary %.*s: %s", r->w->index, (int)uri.len, uri.p,
                   strerror(-rc));
}

/* RFC 9111 §4.4: a non-error response to an unsafe method invalidates the target URI, and
 * the Location and Content-Location URIs when they are on the same origin. */
static void miss_invalidate(struct worker_req *r)
{
    static const struct cw_str names[] = {CW_STR_LIT("Location"), CW_STR_LIT("Content-Location")};
    const char *m = r->method;
    struct cw_str name, value, path;
    size_t off = 0;

    if (r->rt == NULL || strcmp(m, "OPTIONS") == 0 || strcmp(m, "TRACE") == 0) return;
    if (r->job.status < 200 || r->job.status >= 400) return;
    miss_invalidate_uri(r, r->q.uri);
    while (cw_upstream_collect_header_next(&r->job, &off, &name, &value)) {
        for (size_t i = 0; i < CW_ARRAY_LEN(names); i++) {
            if (cw_str_eq_ci(name, names[i]) && cw_cond_same_origin(value, r->q.host, &path))
                miss_invalidate_uri(r, path);
        }
    }
}

/* On the fetch thread. The connection is suspended, so reading its request headers here
 * races with nothing; resuming hands the request back to the MHD thread. */
static void miss_done(struct cw_upstream_collect *job, void *cls)
{
    struct worker_req *r = cls;
    struct cw_worker *w = r->w;

    cw_seg_add(w->seg, w->slot, CW_METRICS_ORIGIN_REQ, 1);
    r->origin_us = cw_clock_mono_us() - r->fetch_start_us;
    /* A cancelled job (shutdown) never reached the origin: not an origin error. */
    if (job->rc != -ECANCELED)
        cw_seg_record_origin(w->seg, w->slot, r->rt->origin, job->rc == 0 ? job->status : 0,
                             r->origin_us);
    if (job->rc != 0) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_ORIGIN_ERR, 1);
        if (job->rc != -ECANCELED)
            cw_warn_rl("worker %d: origin %s %s: %s", w->index, job->req.method, job->req.url,
                       job->xfer.errbuf);
        if (r->cacheable) cw_fill_abandon(&w->fill, &r->q, false);
    } else if (r->cacheable && r->stale && job->status >= 500 && job->status <= 504) {
        /* Keep the stale copy: stale-if-error may answer, and a 5xx replaces nothing. */
        cw_fill_abandon(&w->fill, &r->q, false);
    } else if (r->cacheable) {
        struct cw_fetch_job fj = cw_fetch_job_of(job); /* TODO(#11): fill takes cw_fill_resp */
        cw_fill_complete(&w->fill, &r->q, &fj, &r->fill);
    } else {
        miss_invalidate(r);
    }
    r->state = WREQ_READY;
    MHD_resume_connection(r->conn);
}
