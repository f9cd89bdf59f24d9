/* core/policy.c - see core/policy.h. */
#include "core/policy.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "core/cc.h"
#include "core/cond.h"
#include "core/config.h"

static bool policy_conn_names(const struct cw_entry_header *hdrs, size_t n, struct cw_str name);
static bool policy_keep(const struct cw_policy_in *in, const struct cw_cc *cc,
                        const struct cw_entry_header *hdrs, size_t n, struct cw_str name);
static void policy_fresh_policy(const struct cw_policy_in *in, struct cw_fresh_policy *pol);
static void policy_entry_hdr(const struct cw_policy_in *in, int status, struct cw_policy *out);
static void policy_tags(struct cw_policy *out);
static void policy_refuse(struct cw_policy *out, const char *detail, int origin_status);
static void policy_adaptive_params(const struct cw_config_route *rt, struct cw_adaptive_params *p);
static void policy_adaptive_apply(struct cw_entry_hdr *h, const struct cw_adaptive_state *st);
static int64_t policy_add_sat(int64_t a, int64_t b);
static int64_t policy_sub_sat(int64_t a, int64_t b);

/* True when a Connection line of hdrs nominates name (RFC 9110 §7.6.1): every line counts. */
static bool policy_conn_names(const struct cw_entry_header *hdrs, size_t n, struct cw_str name)
{
    for (size_t i = 0; i < n; i++) {
        if (cw_str_eq_ci(hdrs[i].name, CW_STR_LIT("Connection")) &&
            cw_cc_list_has(hdrs[i].value, name)) {
            return true;
        }
    }
    return false;
}

/* Whether a stored response keeps this header (RFC 9111 §3.1, §5.2.2.4, §5.2.2.7). cc is the
 * directives this cache obeys: a targeted field's (RFC 9213) or Cache-Control's. */
static bool policy_keep(const struct cw_policy_in *in, const struct cw_cc *cc,
                        const struct cw_entry_header *hdrs, size_t n, struct cw_str name)
{
    if (cw_cc_is_hop_by_hop(name)) return false;
    if (policy_conn_names(hdrs, n, name)) return false;
    if (name.len > 0 && name.p[0] == ':') return false;
    if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length"))) return false;
    if (in->rt->strip_set_cookie && cw_str_eq_ci(name, CW_STR_LIT("Set-Cookie"))) return false;
    if ((cc->flags & CW_CC_NO_CACHE_FIELDS) && cw_cc_list_has(cc->no_cache_fields, name))
        return false;
    if ((cc->flags & CW_CC_PRIVATE_FIELDS) && cw_cc_list_has(cc->private_fields, name))
        return false;
    return true;
}

static void policy_fresh_policy(const struct cw_policy_in *in, struct cw_fresh_policy *pol)
{
    const struct cw_config_route *rt = in->rt;

    memset(pol, 0, sizeof(*pol));
    pol->method_is_get_or_head = in->method_is_get_or_head;
    pol->req_has_authorization = in->req_has_authorization;
    pol->req_cookie_pass = rt->cookies == CW_CONFIG_COOKIES_PASS && in->req_has_cookie;
    pol->req_no_store = in->req_no_store;
    pol->route_ttl_ms = rt->ttl_ms;
    pol->route_swr_ms = rt->swr_ms;
    pol->route_sie_ms = rt->sie_ms;
    pol->max_ttl_ms = rt->max_ttl_ms;
    pol->override = rt->override;
    pol->strip_set_cookie = rt->strip_set_cookie;
    pol->request_time_ms = in->request_time_ms;
    pol->response_time_ms = in->response_time_ms;
}

static void policy_entry_hdr(const struct cw_policy_in *in, int status, struct cw_policy *out)
{
    const struct cw_fresh_result *res = &out->fresh;
    struct cw_entry_hdr *h = &out->h;

    memset(h, 0, sizeof(*h));
    h->status = (uint16_t)(status >= 0 && status <= 999 ? status : 0);
    h->flags = (res->always_revalidate ? CW_ENTRY_ALWAYS_REVALIDATE : 0) |
               (res->must_revalidate ? CW_ENTRY_MUST_REVALIDATE : 0) |
               (res->explicit_freshness ? 0 : CW_ENTRY_HEURISTIC);
    h->stored_at_ms = in->now_ms;
    h->response_time_ms = in->response_time_ms;
    h->corrected_initial_age_ms = res->corrected_initial_age_ms;
    h->fresh_until_ms = res->fresh_until_ms;
    h->swr_until_ms = res->swr_until_ms;
    h->sie_until_ms = res->sie_until_ms;
    h->last_check_ms = in->now_ms;
}

/* The same split as the store's tag index (shm/store_tag.c): space- or tab-separated, every
 * Surrogate-Key line counts, at most CW_LIMIT_TAGS, a tag over CW_LIMIT_TAG_BYTES skipped. */
static void policy_tags(struct cw_policy *out)
{
    size_t count = 0;

    for (size_t k = 0; k < out->n && count < CW_LIMIT_TAGS; k++) {
        struct cw_str v = out->hdrs[k].value;
        size_t i = 0;

        if (!cw_str_eq_ci(out->hdrs[k].name, CW_STR_LIT("Surrogate-Key"))) continue;
        while (i < v.len && count < CW_LIMIT_TAGS) {
            size_t start;
            while (i < v.len && cw_is_ows((unsigned char)v.p[i]))
                i++;
            start = i;
            while (i < v.len && !cw_is_ows((unsigned char)v.p[i]))
                i++;
            if (i == start || i - start > CW_LIMIT_TAG_BYTES) continue;
            out->tags[count++] = cw_str_make(v.p + start, i - start);
        }
    }
    out->tag_count = count;
}

/* Refuses with detail. A refused answer leaves a hit-for-miss record, except for a 5xx (an
 * outage, not a property of the resource: the next request should try again, coalesced) and
 * for a 304 without an entry. A 304 is judged on its merge, whatever prev's status. */
static void policy_refuse(struct cw_policy *out, const char *detail, int origin_status)
{
    out->store = false;
    out->detail = detail;
    out->hit_for_miss = origin_status < 500 && !(origin_status == 304 && !out->revalidated);
}

int cw_policy_vary_names(const struct cw_entry_header *hdrs, size_t n, char *buf, size_t size,
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

void cw_policy_prev_init(struct cw_policy_prev *p, const struct cw_entry_view *v)
{
    struct cw_str etag;

    memset(p, 0, sizeof(*p));
    p->status = v->h.status;
    p->st = (struct cw_adaptive_state){v->h.ttl_ms,  v->h.last_check_ms, v->h.checks,
                                       v->h.changes, v->h.observed_ms,   v->h.body_hash};
    if (cw_entry_header_find(v, CW_STR_LIT("ETag"), &etag) && etag.len < sizeof(p->etag) &&
        !(etag.len >= 2 && etag.p[0] == 'W' && etag.p[1] == '/')) {
        memcpy(p->etag, etag.p, etag.len);
        p->etag[etag.len] = '\0';
    }
}

void cw_policy_decide(const struct cw_policy_in *in, struct cw_policy *out)
{
    const struct cw_entry_header *src = in->hdrs;
    size_t n_src = in->hdrs != NULL ? in->n : 0;
    bool is_304 = in->status == 304;
    int status = in->status;
    struct cw_fresh_resp fr;
    struct cw_fresh_policy pol;
    const struct cw_cc *cc;

    memset(out, 0, offsetof(struct cw_policy, hdrs));
    out->n = 0;
    out->vary_len = 0;
    out->tag_count = 0;
    if (is_304) {
        /* RFC 9111 §4.3.4: a 304 freshens the stored response; without one there is
         * nothing to freshen (the request was not conditional on our copy). */
        if (in->prev == NULL) {
            policy_refuse(out, "304-without-entry", in->status);
            return;
        }
        n_src = cw_cond_merge_304(in->prev->hdrs, in->prev->hdrs ? in->prev->n : 0, src, n_src,
                                  out->merged, CW_ARRAY_LEN(out->merged));
        src = out->merged;
        status = in->prev->status;
        out->revalidated = true;
    }

    cw_fresh_resp_init(&fr, status);
    cw_fresh_resp_set_targets(&fr, in->targets, in->target_count);
    for (size_t i = 0; i < n_src; i++)
        cw_fresh_add_header(&fr, src[i].name, src[i].value);
    policy_fresh_policy(in, &pol);
    cw_fresh_evaluate(&fr, &pol, &out->fresh);
    policy_entry_hdr(in, status, out);
    out->adaptive = in->rt->adaptive && (!out->fresh.explicit_freshness || in->rt->override);
    out->store = true;

    if (!out->fresh.storable) {
        /* A 304 that now forbids storing makes the stored copy go as well (the caller's). */
        policy_refuse(out, out->fresh.why_not, in->status);
        return;
    }
    if (!is_304 && in->body_len >= 0 && (uint64_t)in->body_len > in->max_object_bytes) {
        policy_refuse(out, "too-large", in->status);
        return;
    }

    cc = cw_fresh_resp_cc(&fr);
    for (size_t i = 0; i < n_src; i++) {
        if (!policy_keep(in, cc, src, n_src, src[i].name)) continue;
        if (out->n == CW_ARRAY_LEN(out->hdrs)) {
            policy_refuse(out, "headers-too-large", in->status);
            return;
        }
        out->hdrs[out->n++] = src[i];
    }
    if (!fr.has_date) {
        /* RFC 9110 §6.6.1: a recipient with a clock adds Date when the origin did not. */
        size_t dl;
        if (out->n == CW_ARRAY_LEN(out->hdrs)) {
            policy_refuse(out, "headers-too-large", in->status);
            return;
        }
        dl = cw_fresh_format_date(in->response_time_ms / 1000, out->date);
        out->hdrs[out->n].name = CW_STR_LIT("Date");
        out->hdrs[out->n++].value = cw_str_make(out->date, dl);
    }
    if (cw_policy_vary_names(out->hdrs, out->n, out->vary, sizeof(out->vary), &out->vary_len) < 0) {
        out->vary_len = 0;
        policy_refuse(out, "vary-too-large", in->status);
        return;
    }
    policy_tags(out);
}

static void policy_adaptive_params(const struct cw_config_route *rt, struct cw_adaptive_params *p)
{
    p->initial_ttl_ms = rt->ttl_ms;
    p->min_ttl_ms = rt->min_ttl_ms;
    p->max_ttl_ms = rt->max_ttl_ms;
    p->stale_target = rt->stale_target;
}

/* a + b, clamped to the int64_t range (times from a foreign clock or damaged entry). */
static int64_t policy_add_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > 0 ? INT64_MAX : INT64_MIN;
}

/* a - b, clamped to the int64_t range. */
static int64_t policy_sub_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (!__builtin_sub_overflow(a, b, &r)) return r;
    return b < 0 ? INT64_MAX : INT64_MIN;
}

/* Replaces the freshness lifetime in h by the learnt ttl (RFC 9111 §4.2.2 heuristic
 * freshness), keeping the stale windows' lengths. */
static void policy_adaptive_apply(struct cw_entry_hdr *h, const struct cw_adaptive_state *st)
{
    /* Saturating: times may come from a foreign clock. */
    int64_t swr = policy_sub_sat(h->swr_until_ms, h->fresh_until_ms);
    int64_t sie = policy_sub_sat(h->sie_until_ms, h->fresh_until_ms);

    h->fresh_until_ms = policy_sub_sat(policy_add_sat(h->response_time_ms, st->ttl_ms),
                                       h->corrected_initial_age_ms);
    h->swr_until_ms = policy_add_sat(h->fresh_until_ms, swr);
    h->sie_until_ms = policy_add_sat(h->fresh_until_ms, sie);
    h->ttl_ms = st->ttl_ms;
    h->last_check_ms = st->last_check_ms;
    h->checks = st->checks;
    h->changes = st->changes;
    h->observed_ms = st->observed_ms;
    h->body_hash = st->body_hash;
}

void cw_policy_finish(const struct cw_policy_in *in, int64_t body_len, uint64_t body_hash,
                      struct cw_policy *out)
{
    const struct cw_policy_prev *prev = in->prev;
    struct cw_adaptive_params p;
    struct cw_adaptive_state st;

    if (!out->store) return;
    if (out->revalidated) {
        /* The body is prev's, and so is what the adaptive TTL learnt. */
        st = prev->st;
        out->h.ttl_ms = st.ttl_ms;
        out->h.last_check_ms = st.last_check_ms;
        out->h.checks = st.checks;
        out->h.changes = st.changes;
        out->h.observed_ms = st.observed_ms;
        out->h.body_hash = st.body_hash;
        if (!out->adaptive) return;
        /* A 304 is the "unchanged" observation. */
        policy_adaptive_params(in->rt, &p);
        if (st.ttl_ms <= 0) cw_adaptive_init(&st, &p, in->now_ms, st.body_hash);
        cw_adaptive_observe(&st, &p, false, in->now_ms);
        policy_adaptive_apply(&out->h, &st);
        return;
    }
    if (body_len >= 0 && (uint64_t)body_len > in->max_object_bytes) {
        policy_refuse(out, "too-large", in->status);
        return;
    }
    if (!out->adaptive) return;
    policy_adaptive_params(in->rt, &p);
    if (prev == NULL) {
        cw_adaptive_init(&st, &p, in->now_ms, body_hash);
    } else {
        struct cw_str etag = {NULL, 0};
        bool changed;

        for (size_t i = 0; i < out->n; i++)
            if (cw_str_eq_ci(out->hdrs[i].name, CW_STR_LIT("ETag"))) etag = out->hdrs[i].value;
        /* A strong validator on both sides decides; otherwise the body's hash. */
        st = prev->st;
        changed = prev->etag[0] && etag.len ? !cw_str_eq(cw_str_cstr(prev->etag), etag)
                                            : st.body_hash != body_hash;
        cw_adaptive_observe(&st, &p, changed, in->now_ms);
        st.body_hash = body_hash;
        out->changed = changed;
    }
    policy_adaptive_apply(&out->h, &st);
}
