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

struct miss_hdr_ctx {
    struct worker_req *r;
    struct cw_fetch_buf out;
    bool have_via;
    int rc;
};

static int miss_append(struct cw_fetch_buf *b, const char *p, size_t n)
{
    size_t need;

    if (__builtin_add_overflow(b->len, n + 1, &need)) return -EOVERFLOW;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < need)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int miss_append_line(struct cw_fetch_buf *b, const char *name, const char *v1,
                            const char *v2)
{
    int rc = miss_append(b, name, strlen(name));
    if (rc == 0) rc = miss_append(b, ": ", 2);
    if (rc == 0) rc = miss_append(b, v1, strlen(v1));
    if (rc == 0 && v2 != NULL) rc = miss_append(b, v2, strlen(v2));
    if (rc == 0) rc = miss_append(b, "\r\n", 2);
    return rc;
}

/* Request headers a cache fetching a full response must not pass on (it answers
 * conditionals and ranges itself from what it stores). */
static bool miss_is_conditional(struct cw_str name)
{
    static const struct cw_str names[] = {
        CW_STR_LIT("If-None-Match"),       CW_STR_LIT("If-Modified-Since"), CW_STR_LIT("If-Match"),
        CW_STR_LIT("If-Unmodified-Since"), CW_STR_LIT("If-Range"),          CW_STR_LIT("Range"),
    };
    for (size_t i = 0; i < CW_ARRAY_LEN(names); i++)
        if (cw_str_eq_ci(name, names[i])) return true;
    return false;
}

/* Copies one request field the origin may see. The fields came through the wire reader, so
 * each is a valid token and a value without CR, LF or NUL (workers/wire.h); those CacheWarp
 * sets itself, the framing (our own Content-Length or chunked frames the body) and, for a
 * cacheable request, the client's preconditions (answered from what is stored) are left out. */
static enum MHD_Result miss_on_req_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    struct miss_hdr_ctx *c = cls;
    struct cw_str name = cw_str_cstr(key);

    (void)kind;
    if (value == NULL) value = "";
    if (req_fwd_field(c->r, name) != WFWD_PASS) return MHD_YES;
    if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length")) ||
        cw_str_eq_ci(name, CW_STR_LIT("Expect")))
        return MHD_YES;
    if (c->r->cacheable && miss_is_conditional(name)) return MHD_YES;
    if (cw_str_eq_ci(name, CW_STR_LIT("Via"))) {
        c->have_via = true;
        c->rc = miss_append_line(&c->out, key, value, ", 1.1 cachewarp");
    } else {
        c->rc = miss_append_line(&c->out, key, value, NULL);
    }
    return c->rc == 0 ? MHD_YES : MHD_NO;
}

/* The fields CacheWarp sets for the origin (when the route does not pass the client's). */
static const char *const miss_ours[] = {
    "Host",     "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
    "Forwarded"};

/* Builds the origin request's header block from what the request was understood to be. */
static int miss_build_headers(struct worker_req *r)
{
    struct miss_hdr_ctx c = {.r = r};

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, miss_on_req_header, &c);
    for (size_t i = 0; c.rc == 0 && i < CW_ARRAY_LEN(miss_ours); i++) {
        if (req_fwd_field(r, cw_str_cstr(miss_ours[i])) != WFWD_OURS) continue;
        const char *v = req_header(r, miss_ours[i]);
        c.rc = v ? miss_append_line(&c.out, miss_ours[i], v, NULL) : -ENOMEM;
    }
    if (c.rc == 0 && !c.have_via) c.rc = miss_append_line(&c.out, "Via", "1.1 cachewarp", NULL);
    /* RFC 9111 §4.3.1: validate a stale copy with its own validators. */
    if (c.rc == 0 && r->cacheable && r->stale && r->etag[0] != '\0')
        c.rc = miss_append_line(&c.out, "If-None-Match", r->etag, NULL);
    if (c.rc == 0 && r->cacheable && r->stale && r->last_modified[0] != '\0')
        c.rc = miss_append_line(&c.out, "If-Modified-Since", r->last_modified, NULL);
    if (c.rc < 0) {
        free(c.out.p);
        return c.rc;
    }
    r->hdr_lines = c.out.p;
    return 0;
}

/* The origin URL: the origin's prefix, the normalised path, and exactly the query parameters
 * the key uses (an unkeyed parameter must not choose the stored answer). */
static int miss_build_url(struct worker_req *r, const struct cw_config_origin *o)
{
    const char *qm = memchr(r->uri, '?', r->uri_len);
    size_t ulen = strlen(o->url), plen = qm ? (size_t)(qm - r->uri) : r->uri_len;
    size_t qlen = qm ? r->uri_len - plen - 1 : 0, fwd = 0;
    char *url = malloc(ulen + plen + qlen + 2);

    if (url == NULL) return -ENOMEM;
    memcpy(url, o->url, ulen);
    memcpy(url + ulen, r->uri, plen);
    /* A passed-through method (POST, PUT...) stores nothing: its query goes whole. */
    if (qm != NULL && !r->cacheable) {
        memcpy(url + ulen + plen + 1, qm + 1, qlen);
        fwd = qlen;
    } else if (qm != NULL && cw_key_forward_query(r->rt, cw_str_make(qm + 1, qlen),
                                                  url + ulen + plen + 1, qlen + 1, &fwd) < 0) {
        free(url);
        return -ENOSPC;
    }
    if (fwd > 0) url[ulen + plen] = '?';
    url[ulen + plen + (fwd > 0 ? fwd + 1 : 0)] = '\0';
    r->url = url;
    return 0;
}

int req_fetch_prepare(struct worker_req *r, cw_fetch_done_fn done)
{
    const struct cw_config_origin *o = &r->w->cfg->origins[r->rt->origin];

    /* Built once: a request that waited, or took a lease first, comes back here. */
    if (r->url == NULL && miss_build_url(r, o) < 0) return -ENOMEM;
    if (r->hdr_lines == NULL && miss_build_headers(r) < 0) return -ENOMEM;
    r->job.url = r->url;
    /* HEAD is fetched as GET so that the whole response can be stored (nginx does too). */
    r->job.method = r->cacheable ? "GET" : r->method;
    r->job.req_headers = r->hdr_lines;
    r->job.req_body = cw_str_make(r->body_in.p, r->body_in.len);
    r->job.connect_timeout_ms = o->connect_timeout_ms;
    r->job.timeout_ms = o->timeout_ms;
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
    rc = cw_fetch_submit(r->w->fetch, &r->job);
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
    while (cw_fetch_job_header_next(&r->job, &off, &name, &value)) {
        for (size_t i = 0; i < CW_ARRAY_LEN(names); i++) {
            if (cw_str_eq_ci(name, names[i]) && cw_cond_same_origin(value, r->q.host, &path))
                miss_invalidate_uri(r, path);
        }
    }
}

void req_fetch_account(struct worker_req *r)
{
    struct cw_worker *w = r->w;
    struct cw_fetch_job *job = &r->job;

    cw_seg_add(w->seg, w->slot, CW_METRICS_ORIGIN_REQ, 1);
    r->origin_us = cw_clock_mono_us() - r->fetch_start_us;
    /* A cancelled job (shutdown) never reached the origin: not an origin error. */
    if (job->rc != -ECANCELED)
        cw_seg_record_origin(w->seg, w->slot, r->rt->origin, job->rc == 0 ? job->status : 0,
                             r->origin_us);
    if (job->rc != 0) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_ORIGIN_ERR, 1);
        if (job->rc != -ECANCELED)
            cw_warn_rl("worker %d: origin %s %s: %s", w->index, job->method, job->url, job->errbuf);
    }
}
