/* workers/fill.c - see workers/fill.h. */
#include "workers/fill.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/adaptive.h"
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
#include "workers/fetch.h"

#define FILL_PASS_MS  60000 /* hit-for-miss: how long an uncacheable key is not coalesced */
#define FILL_MAX_HDRS (CW_LIMIT_HEADER_COUNT)

/* The request part of an entry being stored (core/entry.h): the request fields the entry is
 * chosen by, with the values the origin was sent. Names point into names, values are owned
 * copies (a joined multi-line value from q->header lives only until its next call). */
struct fill_req_part {
    struct cw_entry_req req;
    struct cw_entry_header f[CW_LIMIT_ENTRY_REQ_FIELDS];
    char *values[CW_LIMIT_ENTRY_REQ_FIELDS];
    char names[CW_LIMIT_ENTRY_REQ_FIELDS * (CW_LIMIT_HEADER_NAME_BYTES + 1)];
    size_t names_len;
};

bool cw_fill_is_internal_header(struct cw_str name)
{
    return (name.len > 0 && name.p[0] == ':') || cw_str_eq_ci(name, CW_STR_LIT("Content-Length")) ||
           cw_str_eq_ci(name, CW_STR_LIT("Surrogate-Key")) || cw_str_eq_ci(name, CW_STR_LIT("Age"));
}

int cw_fill_key_primary(const struct cw_fill *f, struct cw_fill_req *q)
{
    int rc = cw_key_build(q->rt, CW_STR_LIT("http"), q->host, q->uri, q->key_buf,
                          CW_LIMIT_KEY_BYTES, &q->key_len);

    if (rc < 0) return rc;
    for (size_t i = 0; i < q->rt->key_headers_count; i++) {
        const char *name = q->rt->key_headers[i];
        rc = cw_key_append_header(q->key_buf, CW_LIMIT_KEY_BYTES, &q->key_len, cw_str_cstr(name),
                                  cw_str_cstr(q->header(q->header_cls, name)));
        if (rc < 0) return rc;
    }
    /* cookies = "key": each Cookie value has its own entry. */
    if (q->rt->cookies == CW_CONFIG_COOKIES_KEY) {
        rc = cw_key_append_header(q->key_buf, CW_LIMIT_KEY_BYTES, &q->key_len, CW_STR_LIT("cookie"),
                                  cw_str_cstr(q->header(q->header_cls, "Cookie")));
        if (rc < 0) return rc;
    }
    q->primary_len = q->key_len;
    cw_key_hash(cw_store_secret(f->store), q->key_buf, q->key_len, &q->primary);
    q->key = q->primary;
    return 0;
}

int cw_fill_key_vary(const struct cw_fill *f, struct cw_fill_req *q, struct cw_str names)
{
    const char *p = names.p, *end = names.p + names.len;
    char name[CW_LIMIT_HEADER_NAME_BYTES + 1];
    unsigned n = 0;

    q->key_len = q->primary_len;
    while (p < end && n++ < CW_LIMIT_VARY_FIELDS) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        size_t len = (size_t)(e - p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0 && len < sizeof(name)) {
            memcpy(name, p, len);
            name[len] = '\0';
            int rc = cw_key_append_header(q->key_buf, CW_LIMIT_KEY_BYTES, &q->key_len,
                                          cw_str_make(name, len),
                                          cw_str_cstr(q->header(q->header_cls, name)));
            if (rc < 0) return rc;
        }
        p = comma ? comma + 1 : end;
    }
    cw_key_hash(cw_store_secret(f->store), q->key_buf, q->key_len, &q->key);
    return 0;
}

/* Joins every Vary line into a lower-case "a,b" list: 0, or -ENOSPC past the bounds. */
static int fill_vary_names(const struct cw_entry_header *hdrs, size_t n, char *buf, size_t size,
                           size_t *len)
{
    size_t out = 0, fields = 0;

    for (size_t k = 0; k < n; k++) {
        if (!cw_str_eq_ci(hdrs[k].name, CW_STR_LIT("Vary"))) continue;
        struct cw_str v = hdrs[k].value;
        for (size_t i = 0; i < v.len; i++) {
            char ch = v.p[i];
            if (ch == ' ' || ch == '\t') continue;
            bool sep = ch == ',';
            if (sep && (out == 0 || buf[out - 1] == ',')) continue;
            if (!sep && (out == 0 || buf[out - 1] == ',') && ++fields > CW_LIMIT_VARY_FIELDS)
                return -ENOSPC;
            if (out + 1 >= size) return -ENOSPC;
            buf[out++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        if (out > 0 && buf[out - 1] != ',') {
            if (out + 1 >= size) return -ENOSPC;
            buf[out++] = ',';
        }
    }
    while (out > 0 && buf[out - 1] == ',')
        out--;
    *len = out;
    return 0;
}

/* Picks the key the response is stored under, keeping the vary record in step. */
static int fill_vary_key(const struct cw_fill *f, struct cw_fill_req *q,
                         const struct cw_entry_header *hdrs, size_t n)
{
    char names[CW_LIMIT_VARY_RECORD_BYTES];
    size_t len = 0;
    int rc = fill_vary_names(hdrs, n, names, sizeof(names), &len);

    if (rc < 0) return rc;
    if (len == 0 && q->key_len == q->primary_len) return 0;
    rc = cw_store_vary_put(f->store, &q->primary, cw_str_make(names, len));
    if (rc < 0 && rc != -ENOENT) return rc;
    q->key_len = q->primary_len;
    q->key = q->primary;
    if (len == 0) return 0;
    return cw_fill_key_vary(f, q, cw_str_make(names, len));
}

/* Whether a stored response keeps this header (RFC 9111 §3.1, §5.2.2.4, §5.2.2.7). */
static bool fill_keep_header(const struct cw_fill_req *q, const struct cw_fresh_resp *fr,
                             struct cw_str name, struct cw_str conn)
{
    /* The directives this cache obeys: a targeted field's (RFC 9213) or Cache-Control's. */
    const struct cw_cc *cc = cw_fresh_resp_cc(fr);

    if (cw_cc_is_hop_by_hop(name)) return false;
    if (conn.len > 0 && cw_cc_list_has(conn, name)) return false;
    if (name.len > 0 && name.p[0] == ':') return false;
    if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length"))) return false;
    if (q->rt->strip_set_cookie && cw_str_eq_ci(name, CW_STR_LIT("Set-Cookie"))) return false;
    if ((cc->flags & CW_CC_NO_CACHE_FIELDS) && cw_cc_list_has(cc->no_cache_fields, name))
        return false;
    if ((cc->flags & CW_CC_PRIVATE_FIELDS) && cw_cc_list_has(cc->private_fields, name))
        return false;
    return true;
}

static void fill_policy(const struct cw_fill_req *q, const struct cw_fetch_job *job,
                        struct cw_fresh_policy *pol)
{
    const struct cw_config_route *rt = q->rt;

    memset(pol, 0, sizeof(*pol));
    pol->method_is_get_or_head = true;
    pol->req_has_authorization = q->header(q->header_cls, "Authorization") != NULL;
    pol->req_cookie_pass =
        rt->cookies == CW_CONFIG_COOKIES_PASS && q->header(q->header_cls, "Cookie") != NULL;
    pol->route_ttl_ms = rt->ttl_ms;
    pol->route_swr_ms = rt->swr_ms;
    pol->route_sie_ms = rt->sie_ms;
    pol->max_ttl_ms = rt->max_ttl_ms;
    pol->override = rt->override;
    pol->strip_set_cookie = rt->strip_set_cookie;
    pol->request_time_ms = job->request_time_ms;
    pol->response_time_ms = job->response_time_ms;
}

/* Reads the response's headers into fr, with the configured RFC 9213 target list: core/fresh
 * decides which of Cache-Control or a targeted field applies. */
static void fill_fresh_resp(const struct cw_fill *f, struct cw_fresh_resp *fr, int status,
                            const struct cw_entry_header *hdrs, size_t n)
{
    cw_fresh_resp_init(fr, status);
    cw_fresh_resp_set_targets(fr, (const char *const *)f->cfg->cache_targeted_cc,
                              f->cfg->cache_targeted_cc_count);
    for (size_t i = 0; i < n; i++)
        cw_fresh_add_header(fr, hdrs[i].name, hdrs[i].value);
}

/* Collects the job's response headers into hdrs (at most cap): the count. */
static size_t fill_job_headers(const struct cw_fetch_job *job, struct cw_entry_header *hdrs,
                               size_t cap)
{
    size_t off = 0, n = 0;
    struct cw_str name, value;

    while (n < cap && cw_fetch_job_header_next(job, &off, &name, &value)) {
        hdrs[n].name = name;
        hdrs[n++].value = value;
    }
    return n;
}

/* Filters the headers to store and adds Date when missing: the count. */
static size_t fill_stored_headers(const struct cw_fill_req *q, const struct cw_fresh_resp *fr,
                                  const struct cw_entry_header *in, size_t n_in,
                                  struct cw_entry_header *out, size_t cap, char *date,
                                  int64_t response_time_ms)
{
    struct cw_str conn = {NULL, 0};
    size_t n = 0;

    for (size_t i = 0; i < n_in; i++)
        if (cw_str_eq_ci(in[i].name, CW_STR_LIT("Connection"))) conn = in[i].value;
    for (size_t i = 0; i < n_in && n + 1 < cap; i++) {
        if (!fill_keep_header(q, fr, in[i].name, conn)) continue;
        out[n++] = in[i];
    }
    if (!fr->has_date) {
        /* RFC 9110 §6.6.1: a recipient with a clock adds Date when the origin did not. */
        size_t dl = cw_fresh_format_date(response_time_ms / 1000, date);
        out[n].name = CW_STR_LIT("Date");
        out[n++].value = cw_str_make(date, dl);
    }
    return n;
}

static void fill_wake(const struct cw_fill *f, const struct cw_fill_req *q)
{
    /* Waiters watch the key they looked up (the lease key); with a first Vary the entry is
     * stored under another key, so both move, whether or not the lease is still held. */
    cw_seg_fill_done(f->seg, &q->key);
    if (memcmp(&q->lease_key, &q->key, sizeof(q->key)) != 0)
        cw_seg_fill_done(f->seg, &q->lease_key);
}

/* Adds the request field name (NUL-terminated, lower-case) with the value the origin was sent,
 * once: 0 (also when the request has no such field: it gets no record), -ENOSPC past the
 * bounds, -ENOMEM. */
static int fill_req_add(const struct cw_fill_req *q, struct fill_req_part *rp, const char *name)
{
    size_t len = strlen(name);
    const char *value;

    for (size_t i = 0; i < rp->req.n; i++)
        if (cw_str_eq_ci(rp->f[i].name, cw_str_make(name, len))) return 0;
    value = q->header(q->header_cls, name);
    if (value == NULL) return 0;
    if (rp->req.n == CW_LIMIT_ENTRY_REQ_FIELDS || len + 1 > sizeof(rp->names) - rp->names_len)
        return -ENOSPC;
    rp->values[rp->req.n] = strdup(value);
    if (rp->values[rp->req.n] == NULL) return -ENOMEM;
    memcpy(rp->names + rp->names_len, name, len + 1);
    rp->f[rp->req.n].name = cw_str_make(rp->names + rp->names_len, len);
    rp->f[rp->req.n].value = cw_str_cstr(rp->values[rp->req.n]);
    rp->names_len += len + 1;
    rp->req.n++;
    return 0;
}

static void fill_req_part_free(struct fill_req_part *rp)
{
    for (size_t i = 0; i < rp->req.n; i++)
        free(rp->values[i]);
    rp->req.n = 0;
}

/* The request part of the entry for q with the stored headers hdrs (whose Vary names the
 * fields it varies on): host, target, and the route's key headers, Cookie when the route
 * keys on it and the Vary fields, with the values the key was made of. 0, or -ENOSPC or
 * -ENOMEM (then nothing to free). Free with fill_req_part_free(). */
static int fill_req_part(const struct cw_fill_req *q, const struct cw_entry_header *hdrs, size_t n,
                         struct fill_req_part *rp)
{
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t vary_len = 0;
    int rc = fill_vary_names(hdrs, n, vary, sizeof(vary), &vary_len);

    rp->req = (struct cw_entry_req){q->host, q->uri, rp->f, 0};
    rp->names_len = 0;
    for (size_t i = 0; rc == 0 && i < q->rt->key_headers_count; i++)
        rc = fill_req_add(q, rp, q->rt->key_headers[i]);
    if (rc == 0 && q->rt->cookies == CW_CONFIG_COOKIES_KEY) rc = fill_req_add(q, rp, "cookie");
    /* vary is "a,b" with no spaces (fill_vary_names()): split it in place. */
    for (size_t at = 0; rc == 0 && at < vary_len;) {
        char *comma = memchr(vary + at, ',', vary_len - at);
        size_t end = comma != NULL ? (size_t)(comma - vary) : vary_len;
        vary[end] = '\0';
        if (end > at) rc = fill_req_add(q, rp, vary + at);
        at = end + 1;
    }
    if (rc < 0) fill_req_part_free(rp);
    return rc;
}

/* Encodes the entry once, then writes those bytes and releases the lease in one txn: the
 * same bytes a second cache level would take. 0, -EINVAL (over the entry limits), -ENOMEM,
 * or the store's -errno. */
static int fill_put(const struct cw_fill *f, struct cw_fill_req *q, const struct cw_entry_hdr *h,
                    const struct cw_entry_req *req, const struct cw_entry_header *hdrs, size_t n,
                    struct cw_str body)
{
    struct cw_str full = cw_str_make(q->key_buf, q->key_len);
    char *buf = NULL;
    size_t len;
    int rc;

    rc = cw_entry_size(full, req, hdrs, n, body.len, &len);
    if (rc == -EOVERFLOW) rc = -EINVAL;
    if (rc < 0) goto out_count;
    buf = malloc(len);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out_count;
    }
    rc = cw_entry_encode(h, full, req, hdrs, n, body, buf, len);
    if (rc < 0) goto out_count;
    if (q->has_lease) {
        rc = cw_store_put_release_encoded(f->store, &q->key, &q->lease_key, q->lease_token, buf,
                                          len);
        if (rc == 0) q->has_lease = false;
    } else {
        rc = cw_store_put_encoded(f->store, &q->key, buf, len);
    }
out_count:
    free(buf);
    cw_seg_add(f->seg, f->slot, rc < 0 ? CW_METRICS_STORE_PUT_FAIL : CW_METRICS_STORE_PUT, 1);
    return rc;
}

static void fill_entry_hdr(struct cw_entry_hdr *h, int status, const struct cw_fresh_result *res,
                           int64_t response_time_ms)
{
    memset(h, 0, sizeof(*h));
    h->status = (uint16_t)status;
    h->flags = (res->always_revalidate ? CW_ENTRY_ALWAYS_REVALIDATE : 0) |
               (res->must_revalidate ? CW_ENTRY_MUST_REVALIDATE : 0) |
               (res->explicit_freshness ? 0 : CW_ENTRY_HEURISTIC);
    h->stored_at_ms = cw_clock_wall_ms();
    h->response_time_ms = response_time_ms;
    h->corrected_initial_age_ms = res->corrected_initial_age_ms;
    h->fresh_until_ms = res->fresh_until_ms;
    h->swr_until_ms = res->swr_until_ms;
    h->sie_until_ms = res->sie_until_ms;
    h->last_check_ms = h->stored_at_ms;
}

/* The adaptive state and strong ETag of the entry a fill replaces. */
struct fill_prev {
    bool found;
    struct cw_adaptive_state st;
    char etag[CW_LIMIT_VALIDATOR_BYTES + 1];
};

static int fill_prev_cb(void *cls, const struct cw_entry_view *v)
{
    struct fill_prev *p = cls;
    struct cw_str etag;

    p->found = true;
    p->st = (struct cw_adaptive_state){v->h.ttl_ms,  v->h.last_check_ms, v->h.checks,
                                       v->h.changes, v->h.observed_ms,   v->h.body_hash};
    p->etag[0] = '\0';
    if (cw_entry_header_find(v, CW_STR_LIT("ETag"), &etag) && etag.len < sizeof(p->etag) &&
        !(etag.len >= 2 && etag.p[0] == 'W' && etag.p[1] == '/')) {
        memcpy(p->etag, etag.p, etag.len);
        p->etag[etag.len] = '\0';
    }
    return 0;
}

static bool fill_is_adaptive(const struct cw_fill_req *q, const struct cw_fresh_result *fres)
{
    return q->rt->adaptive && (!fres->explicit_freshness || q->rt->override);
}

static void fill_adaptive_params(const struct cw_fill_req *q, struct cw_adaptive_params *p)
{
    p->initial_ttl_ms = q->rt->ttl_ms;
    p->min_ttl_ms = q->rt->min_ttl_ms;
    p->max_ttl_ms = q->rt->max_ttl_ms;
    p->stale_target = q->rt->stale_target;
}

/* Replaces the freshness lifetime in h by the learnt ttl (RFC 9111 §4.2.2 heuristic
 * freshness), keeping the stale windows' lengths. */
static void fill_adaptive_apply(struct cw_entry_hdr *h, const struct cw_adaptive_state *st)
{
    int64_t swr = h->swr_until_ms - h->fresh_until_ms;
    int64_t sie = h->sie_until_ms - h->fresh_until_ms;

    h->fresh_until_ms = h->response_time_ms + st->ttl_ms - h->corrected_initial_age_ms;
    h->swr_until_ms = h->fresh_until_ms + swr;
    h->sie_until_ms = h->fresh_until_ms + sie;
    h->ttl_ms = st->ttl_ms;
    h->last_check_ms = st->last_check_ms;
    h->checks = st->checks;
    h->changes = st->changes;
    h->observed_ms = st->observed_ms;
    h->body_hash = st->body_hash;
}

/* Learns from what this fill observed (the content changed or not since the last check)
 * and sets h's lifetime from the estimate (docs/ADAPTIVE_TTL.md). */
static void fill_adaptive_new(const struct cw_fill *f, struct cw_fill_req *q,
                              const struct cw_entry_header *hdrs, size_t n, struct cw_str body,
                              struct cw_entry_hdr *h, struct cw_fill_result *res)
{
    struct cw_adaptive_params p;
    struct fill_prev prev = {0};
    uint64_t hash = cw_adaptive_hash(body.p, body.len);
    int64_t now = cw_clock_wall_ms();
    struct cw_str etag = {NULL, 0};

    fill_adaptive_params(q, &p);
    if (cw_store_read(f->reader, &q->key, cw_str_make(q->key_buf, q->key_len), fill_prev_cb,
                      &prev) != 0)
        prev.found = false;
    for (size_t i = 0; i < n; i++)
        if (cw_str_eq_ci(hdrs[i].name, CW_STR_LIT("ETag"))) etag = hdrs[i].value;
    if (!prev.found) {
        cw_adaptive_init(&prev.st, &p, now, hash);
    } else {
        /* A strong validator decides; otherwise the body's hash. */
        bool changed = prev.etag[0] && etag.len ? !cw_str_eq(cw_str_cstr(prev.etag), etag)
                                                : prev.st.body_hash != hash;
        cw_adaptive_observe(&prev.st, &p, changed, now);
        prev.st.body_hash = hash;
        res->changed = changed;
    }
    fill_adaptive_apply(h, &prev.st);
}

/* A 200 (or other storable status): evaluate, pick the key, store. */
static void fill_store_new(const struct cw_fill *f, struct cw_fill_req *q, struct cw_fetch_job *job,
                           struct cw_fill_result *res)
{
    struct cw_entry_header in[FILL_MAX_HDRS], out[FILL_MAX_HDRS + 1];
    struct cw_fresh_resp fr;
    struct cw_fresh_policy pol;
    struct cw_fresh_result fres;
    struct cw_entry_hdr h;
    struct fill_req_part rp;
    char date[32];
    size_t n_in = fill_job_headers(job, in, FILL_MAX_HDRS), n;

    fill_fresh_resp(f, &fr, job->status, in, n_in);
    fill_policy(q, job, &pol);
    cw_fresh_evaluate(&fr, &pol, &fres);
    if (!fres.storable) {
        res->detail = fres.why_not;
        /* A 5xx is an outage, not a property of the resource: no hit-for-miss for it. */
        res->uncacheable = job->status < 500;
        return;
    }
    if (job->body.len > f->cfg->cache_max_object_bytes) {
        res->detail = "too-large";
        res->uncacheable = true;
        return;
    }
    if (fill_vary_key(f, q, in, n_in) < 0) {
        res->detail = "vary-too-large";
        res->uncacheable = true;
        return;
    }
    n = fill_stored_headers(q, &fr, in, n_in, out, CW_ARRAY_LEN(out), date, job->response_time_ms);
    if (fill_req_part(q, out, n, &rp) < 0) {
        res->detail = "request-too-large";
        return;
    }
    fill_entry_hdr(&h, job->status, &fres, job->response_time_ms);
    if (fill_is_adaptive(q, &fres))
        fill_adaptive_new(f, q, in, n_in, cw_str_make(job->body.p, job->body.len), &h, res);
    int rc = fill_put(f, q, &h, &rp.req, out, n, cw_str_make(job->body.p, job->body.len));
    fill_req_part_free(&rp);
    if (rc < 0) {
        res->detail = rc == -ENOSPC ? "cache-full" : "store-failed";
        return;
    }
    res->stored = true;
}

/* RFC 9111 §4.3.4: a 304 freshens the stored response: its headers replace the stored
 * ones, the body stays. */
static void fill_apply_304(const struct cw_fill *f, struct cw_fill_req *q, struct cw_fetch_job *job,
                           struct cw_fill_result *res)
{
    struct cw_entry_header stored[FILL_MAX_HDRS], fresh[FILL_MAX_HDRS];
    struct cw_entry_header merged[FILL_MAX_HDRS], out[FILL_MAX_HDRS + 1];
    struct cw_entry_view stored_v;
    struct fill_req_part rp;
    void *copy = NULL;
    size_t copy_len;
    struct cw_fresh_resp fr;
    struct cw_fresh_policy pol;
    struct cw_fresh_result fres;
    struct cw_entry_hdr h;
    struct cw_str name, value;
    size_t n_stored = 0, n_fresh, n_merged, n, off = 0;
    char date[32];
    int rc;

    /* The stored bytes, copied out: the view borrows them while the write happens. */
    rc = cw_store_read_encoded(f->reader, &q->key, cw_str_make(q->key_buf, q->key_len), &copy,
                               &copy_len);
    if (rc == 0 && cw_entry_decode(copy, copy_len, &stored_v) < 0) rc = -EBADMSG;
    if (rc < 0) {
        res->detail = "304-without-entry";
        goto out_free;
    }
    while (n_stored < FILL_MAX_HDRS && cw_entry_header_next(&stored_v, &off, &name, &value)) {
        if (name.len > 0 && name.p[0] == ':') continue;
        stored[n_stored].name = name;
        stored[n_stored++].value = value;
    }
    n_fresh = fill_job_headers(job, fresh, FILL_MAX_HDRS);
    n_merged = cw_cond_merge_304(stored, n_stored, fresh, n_fresh, merged, FILL_MAX_HDRS);
    fill_fresh_resp(f, &fr, stored_v.h.status, merged, n_merged);
    fill_policy(q, job, &pol);
    cw_fresh_evaluate(&fr, &pol, &fres);
    if (!fres.storable) {
        /* The origin now forbids storing: drop the stale copy rather than keep serving it. */
        int drc = cw_store_delete(f->store, &q->key);
        if (drc < 0 && drc != -ENOENT) cw_warn_rl("fill: delete unstorable: %s", strerror(-drc));
        res->detail = fres.why_not;
        res->uncacheable = true;
        goto out_free;
    }
    n = fill_stored_headers(q, &fr, merged, n_merged, out, CW_ARRAY_LEN(out), date,
                            job->response_time_ms);
    if (fill_req_part(q, out, n, &rp) < 0) {
        res->detail = "request-too-large";
        goto out_free;
    }
    fill_entry_hdr(&h, stored_v.h.status, &fres, job->response_time_ms);
    h.ttl_ms = stored_v.h.ttl_ms;
    h.last_check_ms = stored_v.h.last_check_ms;
    h.checks = stored_v.h.checks;
    h.changes = stored_v.h.changes;
    h.observed_ms = stored_v.h.observed_ms;
    h.body_hash = stored_v.h.body_hash;
    if (fill_is_adaptive(q, &fres)) {
        /* A 304 is the "unchanged" observation. */
        struct cw_adaptive_params p;
        struct cw_adaptive_state st = {h.ttl_ms,  h.last_check_ms, h.checks,
                                       h.changes, h.observed_ms,   h.body_hash};
        fill_adaptive_params(q, &p);
        if (st.ttl_ms <= 0) cw_adaptive_init(&st, &p, cw_clock_wall_ms(), h.body_hash);
        cw_adaptive_observe(&st, &p, false, cw_clock_wall_ms());
        fill_adaptive_apply(&h, &st);
    }
    rc = fill_put(f, q, &h, &rp.req, out, n, stored_v.body);
    fill_req_part_free(&rp);
    if (rc == 0) {
        res->stored = true;
        res->revalidated = true;
    } else {
        res->detail = rc == -ENOSPC ? "cache-full" : "store-failed";
    }
out_free:
    free(copy);
}

void cw_fill_complete(const struct cw_fill *f, struct cw_fill_req *q, struct cw_fetch_job *job,
                      struct cw_fill_result *res)
{
    memset(res, 0, sizeof(*res));
    if (job->status == 304)
        fill_apply_304(f, q, job, res);
    else
        fill_store_new(f, q, job, res);
    if (q->has_lease) cw_fill_abandon(f, q, res->uncacheable);
    fill_wake(f, q);
}

void cw_fill_abandon(const struct cw_fill *f, struct cw_fill_req *q, bool pass)
{
    int rc;

    if (q->has_lease) {
        rc = cw_store_lease_release(f->store, &q->lease_key, q->lease_token);
        if (rc < 0 && rc != -ENOENT) cw_warn_rl("fill: lease release: %s", strerror(-rc));
        q->has_lease = false;
    }
    if (pass) {
        int64_t now = cw_clock_mono_ms();
        /* Nobody releases a hit-for-miss record (it expires, and the refresher reaps it),
         * so its token is not kept. */
        rc = cw_store_lease_take(f->store, &q->lease_key, CW_STORE_LEASE_PASS, (int32_t)getpid(),
                                 now, now + FILL_PASS_MS, NULL, NULL);
        if (rc < 0 && rc != -EBUSY) cw_warn_rl("fill: hit-for-miss record: %s", strerror(-rc));
    }
    cw_seg_fill_done(f->seg, &q->lease_key);
}
