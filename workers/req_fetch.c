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
#include <strings.h>
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
 * (req_fwd_ours() gives their values), and a stale copy's validators. */
static int miss_build_headers(struct worker_req *r)
{
    struct cw_upstream_head h = {.fwd = miss_fwd,
                                 .ours = req_fwd_ours,
                                 .cls = r,
                                 .connection = r->conn_hdr,
                                 .strip_preconditions = r->cacheable};
    bool cond = r->cacheable && r->stale;

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, miss_on_req_header, &h);
    return cw_upstream_head_finish(&h, cw_str_cstr(cond ? r->etag : ""),
                                   cw_str_cstr(cond ? r->last_modified : ""), &r->hdr_lines);
}

/* Copies the value the origin is sent for name (if any, once) into r->snap: 0 or -ENOMEM. */
static int miss_snap_add(struct worker_req *r, struct cw_str name)
{
    char nbuf[CW_LIMIT_HEADER_NAME_BYTES + 1];
    const char *v;
    int rc;

    if (name.len == 0 || name.len >= sizeof(nbuf)) return 0;
    memcpy(nbuf, name.p, name.len);
    nbuf[name.len] = '\0';
    if (req_fetch_snap_header(r, nbuf) != NULL) return 0;
    v = req_header(r, nbuf);
    if (v == NULL) return 0;
    rc = cw_upstream_buf_append(&r->snap, nbuf, name.len + 1, CW_LIMIT_REQUEST_HEAD_BYTES);
    if (rc == 0)
        rc = cw_upstream_buf_append(&r->snap, v, strlen(v) + 1, CW_LIMIT_REQUEST_HEAD_BYTES);
    return rc == -EFBIG ? 0 : rc; /* past the head's own bound: cannot happen (431) */
}

const char *req_fetch_snap_header(void *cls, const char *name)
{
    const struct worker_req *r = cls;
    size_t off = 0;

    while (off < r->snap.len) {
        const char *n = r->snap.p + off, *v = n + strlen(n) + 1;
        if (strcasecmp(n, name) == 0) return v;
        off = (size_t)(v + strlen(v) + 1 - r->snap.p);
    }
    return NULL;
}

/* The fields a commit or an invalidation reads of the request, besides those the answer's
 * Vary names (added at its head): Authorization and Cookie (storability), the route's key
 * fields. */
static int miss_snap_base(struct worker_req *r)
{
    int rc = miss_snap_add(r, CW_STR_LIT("Authorization"));

    if (rc == 0) rc = miss_snap_add(r, CW_STR_LIT("Cookie"));
    for (size_t i = 0; rc == 0 && i < r->rt->key_headers_count; i++)
        rc = miss_snap_add(r, cw_str_cstr(r->rt->key_headers[i]));
    return rc;
}

int req_fetch_prepare(struct worker_req *r, const struct cw_upstream_ops *ops)
{
    const struct cw_config_origin *o = &r->w->cfg->origins[r->rt->origin];

    /* Built once: a request that waited, or took a lease first, comes back here. */
    if (r->url == NULL && cw_upstream_build_url(o, r->rt, cw_str_make(r->uri, r->uri_len),
                                                !r->cacheable, &r->url) < 0)
        return -ENOMEM;
    if (r->hdr_lines == NULL && miss_build_headers(r) < 0) return -ENOMEM;
    if (r->snap.len == 0 && miss_snap_base(r) < 0) return -ENOMEM;
    r->job.req.origin = r->rt->origin;
    r->job.req.url = r->url;
    /* HEAD is fetched as GET so that the whole response can be stored (nginx does too). A
     * pass's method is copied: its answer may stream past the request's end (MHD's copy). */
    if (!r->cacheable && r->method_own == NULL && (r->method_own = strdup(r->method)) == NULL)
        return -ENOMEM;
    r->job.req.method = r->cacheable ? "GET" : r->method_own;
    r->job.req.head = r->hdr_lines;
    r->job.req.body = cw_str_make(r->body_in.p, r->body_in.len);
    r->job.req.connect_timeout_ms = o->connect_timeout_ms;
    r->job.req.timeout_ms = o->timeout_ms;
    /* A body that only collects (nothing streams it) is bounded all the same. */
    r->job.max_body = r->w->cfg->cache_max_object_bytes > CW_LIMIT_FETCH_BODY_BYTES
                          ? (size_t)r->w->cfg->cache_max_object_bytes
                          : (size_t)CW_LIMIT_FETCH_BODY_BYTES;
    r->job.xfer = (struct cw_upstream_xfer){.req = &r->job.req, .ops = ops, .cls = r};
    r->want_conditions = r->cacheable && req_recv_has_conditions(r);
    return 0;
}

int req_fetch_submit(struct worker_req *r)
{
    int rc;

    r->fetch_start_us = cw_clock_mono_us();
    rc = cw_upstream_submit(r->w->fetch, &r->job.xfer);
    if (rc < 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
        r->job.rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
    }
    return rc;
}

/* The Content-Length of a head whose body is not chunked: bytes, or -1. */
static int64_t miss_content_length(const struct cw_upstream_fields *h)
{
    struct cw_str name, value;
    int64_t len = -1;
    size_t off = 0;

    while (cw_upstream_fields_next(h, &off, &name, &value)) {
        if (cw_str_eq_ci(name, CW_STR_LIT("Transfer-Encoding"))) return -1;
        if (!cw_str_eq_ci(name, CW_STR_LIT("Content-Length")) || value.len == 0 || value.len > 18)
            continue;
        int64_t v = 0;
        for (size_t i = 0; i < value.len; i++) {
            if (value.p[i] < '0' || value.p[i] > '9') return -1;
            v = v * 10 + (value.p[i] - '0');
        }
        len = v;
    }
    return len;
}

/* Whether the body goes to the client as it arrives. It waits to be whole only when the
 * answer may still be another one: a 304 (the stored entry answers), a 5xx with a stale copy
 * (stale-if-error may answer), a passed-through HEAD (no body), and a stored answer of known,
 * storable size that the client's preconditions or Range are evaluated against. */
static bool miss_streams(const struct worker_req *r, int status, int64_t len, uint64_t max)
{
    bool fits = len >= 0 && (uint64_t)len <= max;

    if (status == 304 || (r->is_head && !r->cacheable)) return false;
    if (r->cacheable && r->stale && status >= 500 && status <= 504) return false;
    /* With a stale copy inside stale-if-error, a body that breaks off can still be answered
     * by the copy, if nothing of it went out yet. */
    if (r->cacheable && r->stale && (len < 0 || fits) && cw_clock_wall_ms() < r->sie_until_ms)
        return false;
    if (r->cacheable && fits && (r->want_conditions || r->is_head)) return false;
    return true;
}

int req_fetch_head(struct worker_req *r, int status, const struct cw_upstream_fields *h)
{
    uint64_t max = r->w->cfg->cache_max_object_bytes;
    struct cw_entry_header hdrs[CW_LIMIT_HEADER_COUNT];
    struct cw_str name, value;
    size_t n = 0, off = 0;

    /* The head stays with the request: the MHD thread builds the answer from it. */
    r->job.headers.p = malloc(h->len ? h->len : 1);
    if (r->job.headers.p == NULL) return -ENOMEM;
    memcpy(r->job.headers.p, h->p, h->len);
    r->job.headers.len = r->job.headers.cap = h->len;
    r->job.header_count = h->count;
    r->job.status = status;
    r->origin_us = cw_clock_mono_us() - r->fetch_start_us; /* to the head; done makes it whole */
    r->stream_len = miss_content_length(h);
    r->streaming = miss_streams(r, status, r->stream_len, max);
    r->collect = !r->streaming || r->cacheable;
    if (r->streaming) {
        /* From here the commit reads the copy: the client (and MHD's fields) may be gone. */
        r->q.header = req_fetch_snap_header;
        r->q.header_cls = r;
    }
    if (!r->streaming || !r->cacheable) return 0;
    while (n < CW_ARRAY_LEN(hdrs) && cw_upstream_fields_next(h, &off, &name, &value)) {
        hdrs[n].name = name;
        hdrs[n++].value = value;
    }
    cw_fill_intent(&r->w->fill, &r->q, status, hdrs, n, r->stream_len, &r->intent);
    r->collect = r->intent.stored;
    /* The Vary names are known now: their values join the copy the commit reads. */
    off = 0;
    while (cw_upstream_fields_next(h, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT("Vary"))) continue;
        for (size_t i = 0; i < value.len;) {
            size_t j = i;
            while (j < value.len && value.p[j] != ',')
                j++;
            size_t a = i, b = j;
            while (a < b && cw_is_ows((unsigned char)value.p[a]))
                a++;
            while (b > a && cw_is_ows((unsigned char)value.p[b - 1]))
                b--;
            if (miss_snap_add(r, cw_str_make(value.p + a, b - a)) < 0) return -ENOMEM;
            i = j + 1;
        }
    }
    /* Without a length, whether it fits is known only at its end: the answer does not say. */
    if (r->stream_len < 0) r->intent.stored = false;
    return 0;
}

int req_fetch_keep(struct worker_req *r, const char *p, size_t n)
{
    size_t max = r->streaming ? (size_t)r->w->cfg->cache_max_object_bytes : r->job.max_body;
    int rc;

    if (!r->collect) return 0;
    rc = cw_upstream_buf_append(&r->job.body, p, n, max);
    if (rc != -EFBIG || !r->streaming) return rc;
    /* Too large to store: the stream goes on, the copy stops. */
    r->collect = false;
    r->too_large = true;
    free(r->job.body.p);
    r->job.body = (struct cw_upstream_buf){0};
    return 0;
}

/* cw_store_read() callback: 0 when the entry was filled since r arrived (another request's
 * fill, made while this one was on its way to the lease), or is fresh on its own terms for a
 * request that asks nothing of freshness (the lookup would serve it); else 1. A streamed
 * answer reaches its client before its fill commits, so the next request can miss, then find
 * the lease released: its entry counts as filled since by the freshness test. */
static int miss_on_entry_since(void *cls, const struct cw_entry_view *v)
{
    const struct worker_req *r = cls;
    uint32_t unusable = CW_ENTRY_SOFT_PURGED | CW_ENTRY_ALWAYS_REVALIDATE;

    if (v->h.response_time_ms >= r->start_wall_ms || v->h.stored_at_ms >= r->start_wall_ms)
        return 0;
    if (!r->has_req_cc && !r->pragma_no_cache && !(v->h.flags & unusable) &&
        cw_clock_wall_ms() < v->h.fresh_until_ms)
        return 0;
    return 1;
}

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
    int rc = cw_store_lease_take(w->store, &r->q.key, CW_STORE_LEASE_FETCH, w->pid, now,
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
    const char *m = r->job.req.method; /* r->method may be gone with the request */
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
    int64_t us = cw_clock_mono_us() - r->fetch_start_us;

    cw_seg_add(w->seg, w->slot, CW_METRICS_ORIGIN_REQ, 1);
    /* A streamed answer's time was taken at its head: its client may be logged already. */
    if (!r->stream_started) r->origin_us = us;
    /* A cancelled job (shutdown) never reached the origin: not an origin error. */
    if (job->rc != -ECANCELED)
        cw_seg_record_origin(w->seg, w->slot, r->rt->origin, job->rc == 0 ? job->status : 0, us);
    if (job->rc != 0) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_ORIGIN_ERR, 1);
        /* The origin's queue was full: the fetch queue's cap, hit. */
        if (job->rc == -EAGAIN) cw_seg_add(w->seg, w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
        /* The loop logs some causes once per state (a TLS failure, a full queue). */
        if (job->rc != -ECANCELED && !job->xfer.logged)
            cw_warn_rl("worker %d: origin %s %s: %s", w->index, job->req.method, job->req.url,
                       job->xfer.errbuf);
    }
}
