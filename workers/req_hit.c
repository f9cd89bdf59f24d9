/* workers/req_hit.c - the hit side of a request: key, Vary, the L1 read, the decision to
 * serve fresh, stale or not at all (RFC 9111 §4, RFC 5861), the answer built from the stored
 * response with conditional and range handling (RFC 9110 §13, §14), and the refresh ask.
 * Leaves of the request state machine (workers/req.c): nothing here waits or queues. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/cc.h"
#include "core/cond.h"
#include "core/config.h"
#include "core/entry.h"
#include "core/fresh.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/clock.h"
#include "workers/req_int.h"

#define HIT_REFRESH_WANT_MS 30000 /* an unclaimed refresh request expires after this */

/* How a found entry is answered. */
enum hit_kind {
    HIT_FRESH = 0,
    HIT_STALE_SWR,    /* stale-while-revalidate: served, refresh in the background */
    HIT_STALE_CLIENT, /* the client's max-stale accepts it */
    HIT_STALE_ERROR,  /* stale-if-error after an origin failure */
    HIT_REVALIDATED,  /* just revalidated with the origin */
    HIT_FILLED,       /* this request's own miss, answered from what it stored; the last */
};

const char *req_hit_fwd(const struct worker_req *r)
{
    if (r->fwd_request) return "request";
    if (r->stale) return "stale";
    return r->vary_miss ? "vary-miss" : "uri-miss";
}

static void hit_copy_validator(const struct cw_entry_view *v, const char *name, char *out)
{
    struct cw_str value;

    out[0] = '\0';
    if (!cw_entry_header_find(v, cw_str_cstr(name), &value)) return;
    if (value.len > CW_LIMIT_VALIDATOR_BYTES) return;
    memcpy(out, value.p, value.len);
    out[value.len] = '\0';
}

/* The Age field's seconds and Cache-Status ttl= for an answer from v at now. */
static void hit_age_ttl(const struct cw_entry_view *v, int64_t now, long long *age_s,
                        long long *ttl_s)
{
    *age_s =
        (long long)(cw_fresh_age_ms(v->h.corrected_initial_age_ms, v->h.response_time_ms, now) /
                    1000);
    *ttl_s = (long long)((v->h.fresh_until_ms - now) / 1000);
}

/* Adds X-Cache, Cache-Status and Age for the kind of answer. */
static void hit_add_status(struct worker_req *r, struct MHD_Response *resp, enum hit_kind kind,
                           const struct cw_entry_view *v, int64_t now)
{
    long long age, ttl;
    char cs[192], num[32];

    hit_age_ttl(v, now, &age, &ttl);
    snprintf(num, sizeof(num), "%lld", age);
    req_resp_header(r, resp, "Age", num);
    switch (kind) {
    case HIT_FRESH:
        req_resp_header(r, resp, "X-Cache", "HIT");
        snprintf(cs, sizeof(cs), "CacheWarp; hit; ttl=%lld%s%s", ttl,
                 r->coalesced ? "; collapsed" : "", r->l2_hit ? "; detail=l2" : "");
        break;
    case HIT_STALE_SWR:
        req_resp_header(r, resp, "X-Cache", "STALE");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=stale; ttl=%lld; detail=stale-while-revalidate",
                 ttl);
        break;
    case HIT_STALE_CLIENT:
        req_resp_header(r, resp, "X-Cache", "STALE");
        snprintf(cs, sizeof(cs), "CacheWarp; hit; ttl=%lld; detail=max-stale", ttl);
        break;
    case HIT_STALE_ERROR:
        req_resp_header(r, resp, "X-Cache", "STALE-ERROR");
        if (r->job.rc == 0 && r->job.status > 0)
            snprintf(cs, sizeof(cs),
                     "CacheWarp; fwd=stale; fwd-status=%d; ttl=%lld; detail=stale-if-error",
                     r->job.status, ttl);
        else
            snprintf(cs, sizeof(cs), "CacheWarp; fwd=stale; ttl=%lld; detail=%s", ttl,
                     now >= v->h.sie_until_ms ? "breaker-open" : "stale-if-error");
        break;
    case HIT_FILLED:
        req_resp_header(r, resp, "X-Cache", "MISS");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=%s; fwd-status=%d; stored; ttl=%lld%s",
                 req_hit_fwd(r), r->job.status, ttl, r->coalesced ? "; collapsed" : "");
        break;
    case HIT_REVALIDATED:
        req_resp_header(r, resp, "X-Cache", "REVALIDATED");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=stale; fwd-status=304; ttl=%lld", ttl);
        break;
    }
    req_resp_header(r, resp, "Cache-Status", cs);
}

/* The stored headers RFC 9110 §15.4.5 wants on a 304. */
static bool hit_is_304_header(struct cw_str name)
{
    static const struct cw_str keep[] = {
        CW_STR_LIT("Cache-Control"), CW_STR_LIT("Content-Location"), CW_STR_LIT("Date"),
        CW_STR_LIT("ETag"),          CW_STR_LIT("Expires"),          CW_STR_LIT("Vary"),
        CW_STR_LIT("Last-Modified"),
    };
    for (size_t i = 0; i < CW_ARRAY_LEN(keep); i++)
        if (cw_str_eq_ci(name, keep[i])) return true;
    return false;
}

/* Evaluates the client's preconditions and Range against the entry: the status to answer
 * and, for 206, the byte range. */
static unsigned hit_client_status(struct worker_req *r, const struct cw_entry_view *v,
                                  uint64_t *first, uint64_t *last)
{
    struct cw_cond_req cq = {
        .if_match = cw_str_cstr(req_header(r, "If-Match")),
        .if_none_match = cw_str_cstr(req_header(r, "If-None-Match")),
        .if_modified_since = cw_str_cstr(req_header(r, "If-Modified-Since")),
        .if_unmodified_since = cw_str_cstr(req_header(r, "If-Unmodified-Since")),
    };
    struct cw_str etag = {NULL, 0}, lm = {NULL, 0}, date = {NULL, 0};
    struct cw_cond_validators val;
    const char *range;
    int rc;

    (void)cw_entry_header_find(v, CW_STR_LIT("ETag"), &etag);
    (void)cw_entry_header_find(v, CW_STR_LIT("Last-Modified"), &lm);
    (void)cw_entry_header_find(v, CW_STR_LIT("Date"), &date);
    cw_cond_validators_init(&val, etag, lm, date, v->h.response_time_ms);
    switch (cw_cond_evaluate(&cq, &val, v->h.status, true)) {
    case CW_COND_NOT_MODIFIED:
        return 304;
    case CW_COND_PRECONDITION_FAILED:
        return 412;
    case CW_COND_NONE:
        break;
    }
    range = req_header(r, "Range");
    if (range == NULL || v->h.status != 200) return v->h.status;
    if (!cw_cond_if_range_ok(cw_str_cstr(req_header(r, "If-Range")), &val)) return v->h.status;
    rc = cw_cond_range_parse(cw_str_cstr(range), v->body.len, first, last);
    if (rc == 0) return 206;
    if (rc == -ERANGE) return 416;
    return v->h.status; /* several ranges or a bad header: the whole body (RFC 9110 §14.2) */
}

static const enum cw_metrics_result hit_kind_result[] = {
    [HIT_FRESH] = CW_METRICS_RESULT_HIT,
    [HIT_STALE_SWR] = CW_METRICS_RESULT_STALE,
    [HIT_STALE_CLIENT] = CW_METRICS_RESULT_STALE,
    [HIT_STALE_ERROR] = CW_METRICS_RESULT_STALE_ERROR,
    [HIT_REVALIDATED] = CW_METRICS_RESULT_REVALIDATED,
    [HIT_FILLED] = CW_METRICS_RESULT_MISS,
};
static_assert(CW_ARRAY_LEN(hit_kind_result) == HIT_FILLED + 1, "a result for every hit kind");

/* Whether the answer may be kept ready for the next hits (req_ready.h), and its id: a fresh
 * hit's full answer that does not close its connection. */
static bool hit_ready_id(const struct worker_req *r, const struct cw_entry_view *v,
                         enum hit_kind kind, unsigned status, int64_t now, struct req_ready_id *id)
{
    long long age, ttl;

    if (r->w->ready == NULL || kind != HIT_FRESH || status != v->h.status || status == 206 ||
        status == 304 || status == 412 || status == 416 || r->close ||
        atomic_load_explicit(&r->w->draining, memory_order_relaxed))
        return false;
    hit_age_ttl(v, now, &age, &ttl);
    *id = (struct req_ready_id){.age_s = age,
                                .ttl_s = ttl,
                                .status = status,
                                .kind = (uint32_t)kind | (r->coalesced ? 0x100u : 0) |
                                        (r->l2_hit ? 0x200u : 0)};
    return true;
}

/* Builds the answer from a stored entry in r->resp (queued by REQ_DELIVER, outside the read
 * txn), or takes the one kept ready for it. 0, or -errno. */
static int hit_serve(struct worker_req *r, const struct cw_entry_view *v, enum hit_kind kind,
                     int64_t now)
{
    struct MHD_Response *resp;
    struct cw_str name, value;
    uint64_t first = 0, last = 0;
    unsigned status = hit_client_status(r, v, &first, &last);
    const char *body = v->body.p, *copy = NULL;
    size_t body_len = v->body.len, off = 0;
    struct req_ready_id id;
    bool ready = hit_ready_id(r, v, kind, status, now, &id);
    char cr[96];

    r->resp_kept = false;
    if (ready && (resp = req_ready_get(r->w->ready, &r->q.key, &id, v)) != NULL) {
        r->resp_kept = true;
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_HIT_READY, 1);
        goto counted;
    }
    if (status == 304 || status == 412 || status == 416) body_len = 0;
    if (status == 206) {
        body += first;
        body_len = (size_t)(last - first + 1);
    }
    /* Kept only for a hot key (req_ready_admit(): its answer built 8 times in one second of
     * Age, or its last kept one served as many hits), and within the bounds. */
    if (ready && !(req_ready_admit(r->w->ready, &r->q.key, &id, v) &&
                   req_ready_fits(r->w->ready, &r->q.key, v)))
        ready = false;
    if (ready)
        resp = req_ready_build(v, &copy);
    else
        resp = MHD_create_response_from_buffer(body_len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) return -ENOMEM;
    while (cw_entry_header_next(v, &off, &name, &value)) {
        if (cw_fill_is_internal_header(name)) continue;
        if ((status == 304 || status == 412) && !hit_is_304_header(name)) continue;
        if (req_resp_add(resp, name, value) < 0) {
            MHD_destroy_response(resp);
            return -EINVAL;
        }
    }
    if (status == 206) {
        snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%zu", first, last, v->body.len);
        req_resp_header(r, resp, "Content-Range", cr);
    } else if (status == 416) {
        snprintf(cr, sizeof(cr), "bytes */%zu", v->body.len);
        req_resp_header(r, resp, "Content-Range", cr);
    }
    hit_add_status(r, resp, kind, v, now);
    if (ready) {
        req_resp_via(r, resp);
        if (r->refused_header[0] == '\0') {
            req_ready_put(r->w->ready, &r->q.key, &id, v, resp, copy);
            r->resp_kept = true;
        }
    }
counted:
    cw_seg_hit(r->w->seg, &r->q.key);
    /* The outcome for the counters and the access log (REVALIDATED and STALE_ERROR are also
     * passed to req_count() by the caller). */
    req_count(r, hit_kind_result[kind]);
    r->bytes = body_len;
    r->resp = resp;
    r->resp_status = status;
    r->hit_stale = kind == HIT_STALE_SWR;
    return 0;
}

/* Inside the read txn: decides whether the entry may answer this request, and answers it.
 * 0 when a response was queued; 1 when the entry exists but may not be used as it is. */
static int hit_on_entry(void *cls, const struct cw_entry_view *v)
{
    struct worker_req *r = cls;
    int64_t now = cw_clock_wall_ms();
    int64_t age = cw_fresh_age_ms(v->h.corrected_initial_age_ms, v->h.response_time_ms, now);
    int64_t lifetime = v->h.fresh_until_ms - v->h.response_time_ms + v->h.corrected_initial_age_ms;
    bool must_reval = (v->h.flags & CW_ENTRY_MUST_REVALIDATE) != 0;
    bool always = (v->h.flags & CW_ENTRY_ALWAYS_REVALIDATE) != 0;
    enum hit_kind kind;

    if (r->serve == WSERVE_ANY) return hit_serve(r, v, HIT_REVALIDATED, now);
    if (r->serve == WSERVE_FILLED) return hit_serve(r, v, HIT_FILLED, now);
    if (r->serve == WSERVE_SIE) {
        /* Past stale-if-error, the origin's open breaker (the fetch was refused, or was the
         * failed probe) lets the copy serve up to breaker.max_stale. */
        bool breaker = r->job.rc == -EHOSTUNREACH && r->job.xfer.retry_after_ms > 0;
        if (cw_cond_error_use(v->h.fresh_until_ms, v->h.sie_until_ms, must_reval,
                              r->has_req_cc ? r->req_cc.sie_s : -1, breaker,
                              r->w->cfg->origins[r->rt->origin].breaker_max_stale_ms,
                              now) == CW_COND_ERROR_NONE)
            return 1;
        return hit_serve(r, v, HIT_STALE_ERROR, now);
    }
    switch (cw_cond_request_use(r->has_req_cc ? &r->req_cc : NULL, r->pragma_no_cache,
                                r->rt->ignore_client_no_cache, age, lifetime, must_reval, always)) {
    case CW_COND_USE_FRESH:
        if (v->h.flags & CW_ENTRY_SOFT_PURGED) goto stale;
        kind = HIT_FRESH;
        /* Refresh-ahead: a hit in the last refresh_ahead fraction of the lifetime asks for a
         * background refresh, so a hot key never goes stale. */
        if (r->rt->refresh_ahead > 0 &&
            now >= v->h.fresh_until_ms - (int64_t)((double)lifetime * r->rt->refresh_ahead))
            r->want_refresh = true;
        return hit_serve(r, v, kind, now);
    case CW_COND_USE_STALE_OK:
        return hit_serve(r, v, HIT_STALE_CLIENT, now);
    case CW_COND_USE_STALE:
        goto stale;
    case CW_COND_USE_REVALIDATE:
        /* A waiter whose request asked for validation (no-cache, max-age=0) takes what
         * another request validated with the origin after it arrived: so concurrent
         * no-cache requests share one conditional fetch instead of one each. */
        if (r->coalesced && age < lifetime && !always &&
            v->h.response_time_ms >= r->start_wall_ms && !(v->h.flags & CW_ENTRY_SOFT_PURGED))
            return hit_serve(r, v, HIT_FRESH, now);
        break;
    }
    /* Fresh, but the request itself asked for the origin (no-cache, max-age, min-fresh). */
    if (age < lifetime && !always && !(v->h.flags & CW_ENTRY_SOFT_PURGED)) r->fwd_request = true;
    r->stale = true;
    r->sie_until_ms = must_reval ? 0 : v->h.sie_until_ms;
    hit_copy_validator(v, "ETag", r->etag);
    hit_copy_validator(v, "Last-Modified", r->last_modified);
    return 1;
stale:
    r->stale = true;
    r->sie_until_ms = must_reval ? 0 : v->h.sie_until_ms;
    hit_copy_validator(v, "ETag", r->etag);
    hit_copy_validator(v, "Last-Modified", r->last_modified);
    if (!must_reval && now < v->h.swr_until_ms) {
        r->want_refresh = true;
        return hit_serve(r, v, HIT_STALE_SWR, now);
    }
    return 1;
}

/* Asks the refresher for a background refresh of the key, once however many hits ask, without
 * an LMDB write: a live lease record (a refresh wanted or running, a fetch) means it is under
 * way; else this worker asks once per WORKER_ASK_MS through its ring in the shm segment, and
 * the refresher records the ask (the wanted-refresh lease record) unless another worker's ask
 * or a fill came first. */
void req_hit_ask_refresh(struct worker_req *r)
{
    struct cw_worker *w = r->w;
    struct cw_store_lease lease;
    struct worker_ask *a;
    uint32_t b;
    uint64_t one = 1;
    int64_t now;

    now = cw_clock_mono_ms();
    if (cw_store_lease_get(w->reader, &r->q.key, &lease) == 0 && now < lease.deadline_ms) return;
    memcpy(&b, r->q.key.h + 8, sizeof(b));
    a = &w->asks[b & (WORKER_ASKS - 1)];
    if (now < a->until_ms && memcmp(&a->key, &r->q.key, sizeof(a->key)) == 0) return;
    if (!cw_seg_refresh_ask(w->seg, w->slot, &r->q.key, cw_clock_wall_ms())) {
        cw_seg_add(w->seg, w->slot, CW_METRICS_REFRESH_ASK_DROPPED, 1);
        return;
    }
    a->key = r->q.key;
    a->until_ms = now + WORKER_ASK_MS;
    if (w->refresh_fd != -1 && write(w->refresh_fd, &one, sizeof(one)) == -1)
        cw_debug("worker %d: wake refresher: %s", w->index, strerror(errno));
}

int req_hit_lookup(struct worker_req *r)
{
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t vary_len;
    int rc;

    r->want_refresh = false;
    if (r->q.key_len == 0) {
        rc = cw_fill_key_primary(&r->w->fill_mhd, &r->q);
        if (rc < 0) return rc;
        rc = cw_store_vary_get(r->w->reader, &r->q.primary, vary, sizeof(vary), &vary_len);
        if (rc == 0) {
            r->vary_miss = true; /* until the variant is found */
            rc = cw_fill_key_vary(&r->w->fill_mhd, &r->q, cw_str_make(vary, vary_len));
            if (rc < 0) return rc;
        }
    }
    r->q.lease_key = r->q.key;
    r->gen0 = atomic_load_explicit(cw_seg_fill_gen(r->w->seg, &r->q.key), memory_order_acquire);
    rc = cw_store_read(r->w->reader, &r->q.key, cw_str_make(r->q.key_buf, r->q.key_len),
                       hit_on_entry, r);
    if (rc == -EBADMSG) {
        /* The reader never writes: the fetch thread deletes the bad entry. */
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_STORE_BAD_ENTRY, 1);
        req_defer_drop(r->w, &r->q.key, false);
    }
    if (rc == -EINVAL) {
        /* Stored, but not servable (a header MHD refuses): a bad entry, so a miss. */
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_STORE_BAD_ENTRY, 1);
        cw_warn_rl("worker %d: unservable entry for %s deleted", r->w->index, r->uri);
        req_defer_drop(r->w, &r->q.key, true);
        rc = -ENOENT;
    }
    if (rc == 0) {
        r->vary_miss = false;
        return 1;
    }
    if (rc == 1) r->vary_miss = false; /* the variant exists, it is only stale */
    /* -ESTALE: this process can no longer use L1 (store_int.h, store_resized()). */
    if (rc == 1 || rc == -ENOENT || rc == -EBADMSG || rc == -ESTALE) return 0;
    return rc;
}

int req_hit_serve_again(struct worker_req *r, enum worker_serve serve)
{
    int rc;

    r->serve = serve;
    rc = cw_store_read(r->w->reader, &r->q.key, cw_str_make(r->q.key_buf, r->q.key_len),
                       hit_on_entry, r);
    if (rc == -EBADMSG) {
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_STORE_BAD_ENTRY, 1);
        req_defer_drop(r->w, &r->q.key, false);
    }
    return rc == 0 ? 1 : 0;
}
