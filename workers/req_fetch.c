/* workers/req_fetch.c - the origin side of a request: its origin request (URL and header
 * block, built once), the submit, the FETCH lease take and the "filled meanwhile" check on
 * the fetch thread, the origin's accounting, and RFC 9111 §4.4 invalidation. Leaves of the
 * request state machine (workers/req.c). */
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
#include "workers/req_int.h"

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
    switch (req_fwd_field(cls, name)) {
    case WFWD_OURS:
        return CW_UPSTREAM_FWD_OURS;
    case WFWD_DROP:
        return CW_UPSTREAM_FWD_DROP;
    case WFWD_PASS:
        break;
    }
    return CW_UPSTREAM_FWD_PASS;
}

/* Builds the origin request's header block from what the request was understood to be
 * (workers/upstream.h has the rules): the client's fields as the route forwards them, ours
 * (req_header() gives their values), and a stale copy's validators. */
static int miss_build_headers(struct worker_req *r)
{
    struct cw_upstream_head h = {.fwd = miss_fwd,
                                 .ours = req_header,
                                 .cls = r,
                                 .connection = r->conn_hdr,
                                 .strip_preconditions = r->cacheable};
    bool cond = r->cacheable && r->stale;

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, miss_on_req_header, &h);
    return cw_upstream_head_finish(&h, cw_str_cstr(cond ? r->etag : ""),
                                   cw_str_cstr(cond ? r->last_modified : ""), &r->hdr_lines);
}

int req_fetch_prepare(struct worker_req *r, cw_upstream_collect_fn done)
{
    const struct cw_config_origin *o = &r->w->cfg->origins[r->rt->origin];

    /* Built once: a request that waited, or took a lease first, comes back here. */
    if (r->url == NULL && cw_upstream_build_url(o, r->rt, cw_str_make(r->uri, r->uri_len),
                                                !r->cacheable, &r->url) < 0)
        return -ENOMEM;
    if (r->hdr_lines == NULL && miss_build_headers(r) < 0) return -ENOMEM;
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
    r->job.done = done;
    r->job.cls = r;
    return 0;
}

int req_fetch_submit(struct worker_req *r)
{
    int rc;

    r->fetch_start_us = cw_clock_mono_us();
    rc = cw_upstream_collect(r->w->fetch, &r->job);
    if (rc < 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
        r->job.rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
    }
    return rc;
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
bool req_fetch_filled_since(struct worker_req *r)
{
    struct cw_worker *w = r->w;

    if (atomic_load_explicit(cw_seg_fill_gen(w->seg, &r->q.key), memory_order_acquire) != r->gen0)
        return true;
    return cw_store_read(w->fetch_reader, &r->q.key, cw_str_make(r->q.key_buf, r->q.key_len),
                         miss_on_entry_since, r) == 0;
}

int req_fetch_lease(struct worker_req *r)
{
    struct cw_worker *w = r->w;
    uint64_t token = 0;
    int64_t now = cw_clock_mono_ms();
    int rc = cw_store_lease_take(w->store, &r->q.key, CW_STORE_LEASE_FETCH, (int32_t)getpid(), now,
                                 now + r->rt->lock_timeout_ms, &token, &r->lease_holder);

    if (rc == 0) {
        r->q.has_lease = true;
        r->q.lease_key = r->q.key;
        r->q.lease_token = token;
    }
    return rc;
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
void req_fetch_invalidate(struct worker_req *r)
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

void req_fetch_account(struct worker_req *r)
{
    struct cw_worker *w = r->w;
    struct cw_upstream_collect *job = &r->job;

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
    }
}
