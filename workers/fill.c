/* workers/fill.c - see workers/fill.h. */
#include "workers/fill.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/adaptive.h"
#include "core/config.h"
#include "core/entry.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/policy.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/clock.h"
#include "workers/upstream.h"

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

/* Sets q->key for an answer that varies on names (a list from cw_policy_vary_names(), may be
 * empty) without writing: 0, or -ENOSPC (the key would pass CW_LIMIT_KEY_BYTES). */
static int fill_key_for(const struct cw_fill *f, struct cw_fill_req *q, struct cw_str names)
{
    q->key_len = q->primary_len;
    q->key = q->primary;
    if (names.len == 0) return 0;
    return cw_fill_key_vary(f, q, names);
}

/* Picks the key the answer is stored under and keeps the primary key's Vary record in step:
 * 0, or -ENOSPC, or the store's -errno. A request that found no Vary record (its key is the
 * primary) and an answer without Vary leave the record alone. */
static int fill_vary_key(const struct cw_fill *f, struct cw_fill_req *q, struct cw_str names)
{
    int rc;

    if (names.len == 0 && q->key_len == q->primary_len) return 0;
    rc = cw_store_vary_put(f->store, &q->primary, names);
    if (rc < 0 && rc != -ENOENT) return rc;
    return fill_key_for(f, q, names);
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

/* The request part of the entry for q, which varies on vary_names (a list from
 * cw_policy_vary_names()): host, target, and the route's key headers, Cookie when the route
 * keys on it and the Vary fields, with the values the key was made of. 0, or -ENOSPC or
 * -ENOMEM (then nothing to free). Free with fill_req_part_free(). */
static int fill_req_part(const struct cw_fill_req *q, struct cw_str vary_names,
                         struct fill_req_part *rp)
{
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t vary_len = vary_names.len < sizeof(vary) ? vary_names.len : 0;
    int rc = 0;

    if (vary_len > 0) memcpy(vary, vary_names.p, vary_len);
    rp->req = (struct cw_entry_req){q->host, q->uri, rp->f, 0};
    rp->names_len = 0;
    for (size_t i = 0; rc == 0 && i < q->rt->key_headers_count; i++)
        rc = fill_req_add(q, rp, q->rt->key_headers[i]);
    if (rc == 0 && q->rt->cookies == CW_CONFIG_COOKIES_KEY) rc = fill_req_add(q, rp, "cookie");
    /* vary is "a,b" with no spaces (cw_policy_vary_names()): split it in place. */
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

/* Writes len encoded bytes under q->key and, when q holds its lease, releases it by its token
 * in the same txn, so a waiter that sees the lease gone always finds the entry; counts the
 * put. 0, -EBADMSG (the bytes failed validation: nothing written, the lease kept), or the
 * store's -errno. */
static int fill_put_bytes(const struct cw_fill *f, struct cw_fill_req *q, const void *buf,
                          size_t len)
{
    int rc;

    if (q->has_lease) {
        rc = cw_store_put_release_encoded(f->store, &q->key, &q->lease_key, q->lease_token, buf,
                                          len);
        if (rc == 0) q->has_lease = false;
    } else {
        rc = cw_store_put_encoded(f->store, &q->key, buf, len);
    }
    cw_seg_add(f->seg, f->slot, rc < 0 ? CW_METRICS_STORE_PUT_FAIL : CW_METRICS_STORE_PUT, 1);
    return rc;
}

/* Encodes the entry once, then puts those bytes (fill_put_bytes()): the same bytes a second
 * cache level would take. 0, -EINVAL (over the entry limits), -ENOMEM, or the store's -errno. */
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
    rc = fill_put_bytes(f, q, buf, len);
    if (rc == 0 && f->stored != NULL) f->stored(f->stored_cls, q, buf, len);
    free(buf);
    return rc;
out_count:
    free(buf);
    cw_seg_add(f->seg, f->slot, CW_METRICS_STORE_PUT_FAIL, 1);
    return rc;
}

/* The entry stored under a key that a 304 freshens: its bytes, copied out (the view borrows
 * them while the write happens), and its headers as the policy takes them. */
struct fill_stored {
    void *copy;
    struct cw_entry_view v;
    struct cw_entry_header hdrs[FILL_MAX_HDRS];
    struct cw_policy_prev prev;
};

/* Reads the entry under q->key with its headers: 0, or -errno (the 304 then has no entry).
 * Free s->copy with free(), also on failure. */
static int fill_stored_read(const struct cw_fill *f, const struct cw_fill_req *q,
                            struct fill_stored *s)
{
    struct cw_str name, value;
    size_t len, off = 0;
    int rc;

    rc = cw_store_read_encoded(f->reader, &q->key, cw_str_make(q->key_buf, q->key_len), &s->copy,
                               &len);
    if (rc < 0) return rc;
    if (cw_entry_decode(s->copy, len, &s->v) < 0) return -EBADMSG;
    cw_policy_prev_init(&s->prev, &s->v);
    s->prev.hdrs = s->hdrs;
    while (s->prev.n < FILL_MAX_HDRS && cw_entry_header_next(&s->v, &off, &name, &value)) {
        if (name.len > 0 && name.p[0] == ':') continue;
        s->hdrs[s->prev.n].name = name;
        s->hdrs[s->prev.n++].value = value;
    }
    return 0;
}

static int fill_prev_cb(void *cls, const struct cw_entry_view *v)
{
    cw_policy_prev_init(cls, v);
    return 0;
}

/* What the policy is told about q and resp (core/policy.h). in->prev is left NULL. */
static void fill_policy_in(const struct cw_fill *f, const struct cw_fill_req *q,
                           const struct cw_fill_resp *resp, struct cw_policy_in *in)
{
    memset(in, 0, sizeof(*in));
    in->status = resp->status;
    in->hdrs = resp->hdrs;
    in->n = resp->n;
    in->body_len = resp->status == 304 ? -1 : (int64_t)resp->body.len;
    in->rt = q->rt;
    in->targets = (const char *const *)f->cfg->cache_targeted_cc;
    in->target_count = f->cfg->cache_targeted_cc_count;
    in->max_object_bytes = f->cfg->cache_max_object_bytes;
    in->method_is_get_or_head = true;
    in->req_has_authorization = q->header(q->header_cls, "Authorization") != NULL;
    in->req_has_cookie = q->header(q->header_cls, "Cookie") != NULL;
    in->request_time_ms = resp->request_time_ms;
    in->response_time_ms = resp->response_time_ms;
    in->now_ms = cw_clock_wall_ms();
}

/* Executes the policy's decision on resp: picks the key, reads what the adaptive TTL learnt,
 * encodes and puts. A 304 the policy refuses drops the stored copy rather than keep serving
 * it. */
static void fill_store(const struct cw_fill *f, struct cw_fill_req *q,
                       const struct cw_fill_resp *resp, struct cw_fill_result *res)
{
    struct cw_policy_in in;
    struct cw_policy pol;
    struct fill_stored stored = {0};
    struct cw_policy_prev prev;
    struct fill_req_part rp;
    struct cw_str body = resp->body;
    uint64_t hash = 0;
    int rc;

    fill_policy_in(f, q, resp, &in);
    if (resp->status == 304 && fill_stored_read(f, q, &stored) == 0) {
        in.prev = &stored.prev;
        body = stored.v.body;
    }
    cw_policy_decide(&in, &pol);
    if (!pol.store) {
        if (pol.revalidated) {
            int drc = cw_store_delete(f->store, &q->key);
            if (drc < 0 && drc != -ENOENT)
                cw_warn_rl("fill: delete unstorable: %s", strerror(-drc));
        }
        goto out_refused;
    }
    /* A 304 freshens the entry under the key it was found with. */
    if (!pol.revalidated && fill_vary_key(f, q, cw_str_make(pol.vary, pol.vary_len)) < 0) {
        res->detail = "vary-too-large";
        res->uncacheable = resp->status < 500; /* as core/policy: a 5xx is an outage */
        goto out_free;
    }
    if (pol.adaptive && !pol.revalidated) {
        if (cw_store_read(f->reader, &q->key, cw_str_make(q->key_buf, q->key_len), fill_prev_cb,
                          &prev) == 0)
            in.prev = &prev;
        hash = cw_adaptive_hash(body.p, body.len);
    }
    cw_policy_finish(&in, (int64_t)body.len, hash, &pol);
    if (!pol.store) goto out_refused;
    if (fill_req_part(q, cw_str_make(pol.vary, pol.vary_len), &rp) < 0) {
        res->detail = "request-too-large";
        goto out_free;
    }
    rc = fill_put(f, q, &pol.h, &rp.req, pol.hdrs, pol.n, body);
    fill_req_part_free(&rp);
    if (rc < 0) {
        res->detail = rc == -ENOSPC ? "cache-full" : "store-failed";
        goto out_free;
    }
    res->stored = true;
    res->revalidated = pol.revalidated;
    res->changed = pol.changed;
    goto out_free;
out_refused:
    res->detail = pol.detail;
    res->uncacheable = pol.hit_for_miss;
out_free:
    free(stored.copy);
}

void cw_fill_intent(const struct cw_fill *f, const struct cw_fill_req *q, int status,
                    const struct cw_entry_header *hdrs, size_t n, int64_t body_len,
                    struct cw_fill_result *res)
{
    struct cw_fill_resp resp = {.status = status, .hdrs = hdrs, .n = n};
    struct cw_policy_in in;
    struct cw_policy pol;

    memset(res, 0, sizeof(*res));
    fill_policy_in(f, q, &resp, &in);
    in.body_len = body_len;
    cw_policy_decide(&in, &pol);
    res->stored = pol.store;
    res->detail = pol.detail;
    res->uncacheable = pol.hit_for_miss;
}

void cw_fill_commit(const struct cw_fill *f, struct cw_fill_req *q, const struct cw_fill_resp *resp,
                    struct cw_fill_result *res)
{
    memset(res, 0, sizeof(*res));
    fill_store(f, q, resp, res);
    if (q->has_lease) cw_fill_abandon(f, q, res->uncacheable);
    fill_wake(f, q);
}

int cw_fill_commit_encoded(const struct cw_fill *f, struct cw_fill_req *q, const void *p,
                           size_t len)
{
    struct cw_entry_header hdrs[FILL_MAX_HDRS];
    struct cw_entry_view v;
    struct cw_str name, value;
    char names[CW_LIMIT_VARY_RECORD_BYTES];
    size_t n = 0, off = 0, names_len = 0;
    bool keyed_vary = q->key_len != q->primary_len;
    int rc;

    if (cw_entry_decode(p, len, &v) < 0) return -EBADMSG;
    while (n < FILL_MAX_HDRS && cw_entry_header_next(&v, &off, &name, &value)) {
        hdrs[n].name = name;
        hdrs[n++].value = value;
    }
    if (cw_policy_vary_names(hdrs, n, names, sizeof(names), &names_len) < 0) return -EBADMSG;
    /* The entry must be the one this request would have stored: its full key is the request's
     * primary key extended by the request's values of the fields the entry varies on. */
    rc = fill_key_for(f, q, cw_str_make(names, names_len));
    if (rc == 0 && !cw_str_eq(v.key, cw_str_make(q->key_buf, q->key_len))) rc = -ENOENT;
    if (rc == 0 && (names_len > 0 || keyed_vary)) {
        rc = cw_store_vary_put(f->store, &q->primary, cw_str_make(names, names_len));
        if (rc == -ENOENT) rc = 0;
    }
    if (rc == 0) rc = fill_put_bytes(f, q, p, len);
    if (rc < 0) {
        /* The request goes on without this entry (to the origin): back to its primary key. */
        q->key_len = q->primary_len;
        q->key = q->primary;
        return rc;
    }
    fill_wake(f, q);
    return 0;
}

void cw_fill_complete(const struct cw_fill *f, struct cw_fill_req *q,
                      const struct cw_upstream_collect *job, struct cw_fill_result *res)
{
    struct cw_entry_header hdrs[FILL_MAX_HDRS];
    struct cw_fill_resp resp = {
        .status = job->status,
        .hdrs = hdrs,
        .body = cw_str_make(job->body.p, job->body.len),
        .request_time_ms = job->request_time_ms,
        .response_time_ms = job->response_time_ms,
    };
    size_t off = 0;

    while (resp.n < FILL_MAX_HDRS &&
           cw_upstream_collect_header_next(job, &off, &hdrs[resp.n].name, &hdrs[resp.n].value)) {
        resp.n++;
    }
    cw_fill_commit(f, q, &resp, res);
}

void cw_fill_abandon(const struct cw_fill *f, struct cw_fill_req *q, bool pass)
{
    int rc;

    if (q->has_lease) {
        rc = cw_store_lease_release(f->store, &q->lease_key, q->lease_token);
        if (rc < 0 && rc != -ENOENT && rc != -ESTALE)
            cw_warn_rl("fill: lease release: %s", strerror(-rc));
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
