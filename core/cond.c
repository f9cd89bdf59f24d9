/* core/cond.c - conditional requests, ranges, request directives, 304 merging and
 * same-origin invalidation (RFC 9110 §8.8.3, §13, §14; RFC 9111 §3.2, §4.2, §4.4, §5.2.1).
 *
 * Every parser here walks its input once, bounded by the value's length, and fails closed:
 * an entity-tag it cannot read matches nothing, a Range it cannot read is ignored, and a
 * Location it cannot read invalidates nothing beyond the request's own URI. */
#include "core/cond.h"

#include <errno.h>

#include "core/cc.h"
#include "core/entry.h"
#include "core/fresh.h"
#include "core/limits.h"

/* A parsed entity-tag: opaque is the bytes between the quotes. */
struct cond_etag {
    bool weak;
    struct cw_str opaque;
};

static size_t cond_skip_ows(const char *p, size_t len, size_t i);
static struct cw_str cond_trim(struct cw_str s);
static bool cond_present(struct cw_str s);
static bool cond_is_etagc(unsigned char c);
static bool cond_etag_read(const char *p, size_t len, size_t *i, struct cond_etag *out);
static bool cond_etag_one(struct cw_str v, struct cond_etag *out);
static bool cond_etag_match(const struct cond_etag *a, const struct cond_etag *b, bool weak);
static bool cond_list_match(struct cw_str list, struct cw_str stored_etag, bool weak);
static bool cond_date(struct cw_str v, int64_t *out_s);
static int64_t cond_sub_sat(int64_t a, int64_t b);
static size_t cond_digits(const char *p, size_t len, size_t i, uint64_t *out);
static int cond_range_spec(const char *p, size_t len, size_t *i, uint64_t length, bool *sat,
                           uint64_t *first, uint64_t *last);
static bool cond_merge_takes(struct cw_str name, const struct cw_entry_header *fresh,
                             size_t n_fresh);
static size_t cond_find(const struct cw_entry_header *h, size_t before, struct cw_str name);
static size_t cond_count(const struct cw_entry_header *h, size_t from, size_t n,
                         struct cw_str name);
static size_t cond_emit(const struct cw_entry_header *h, size_t n, struct cw_str name,
                        struct cw_entry_header *out, size_t out_n);
static bool cond_host_eq(struct cw_str a, struct cw_str b);

static size_t cond_skip_ows(const char *p, size_t len, size_t i)
{
    while (i < len && cw_is_ows((unsigned char)p[i]))
        i++;
    return i;
}

static struct cw_str cond_trim(struct cw_str s)
{
    if (s.p == NULL) return cw_str_make(NULL, 0);
    while (s.len > 0 && cw_is_ows((unsigned char)s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && cw_is_ows((unsigned char)s.p[s.len - 1]))
        s.len--;
    return s;
}

/* A field counts when it was sent with something other than whitespace in it. */
static bool cond_present(struct cw_str s)
{
    return cond_trim(s).len > 0;
}

/* RFC 9110 §8.8.3: etagc = %x21 / %x23-7E / obs-text. */
static bool cond_is_etagc(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x7e) || c >= 0x80;
}

/* Reads entity-tag = [ %s"W/" ] DQUOTE *etagc DQUOTE at p[*i]. True with *i just past the
 * closing quote; false with *i somewhere at or after where it started. */
static bool cond_etag_read(const char *p, size_t len, size_t *i, struct cond_etag *out)
{
    size_t k = *i, start;

    out->weak = false;
    if (len - k >= 2 && p[k] == 'W' && p[k + 1] == '/') {
        out->weak = true;
        k += 2;
    }
    if (k >= len || p[k] != '"') {
        *i = k;
        return false;
    }
    start = ++k;
    while (k < len && cond_is_etagc((unsigned char)p[k]))
        k++;
    if (k >= len || p[k] != '"') {
        *i = k;
        return false;
    }
    out->opaque = cw_str_make(p + start, k - start);
    *i = k + 1;
    return true;
}

/* The whole of v (OWS aside) must be one entity-tag. */
static bool cond_etag_one(struct cw_str v, struct cond_etag *out)
{
    size_t i = 0;

    v = cond_trim(v);
    if (v.len == 0) return false;
    return cond_etag_read(v.p, v.len, &i, out) && i == v.len;
}

/* RFC 9110 §8.8.3.2. */
static bool cond_etag_match(const struct cond_etag *a, const struct cond_etag *b, bool weak)
{
    if (!weak && (a->weak || b->weak)) return false;
    return cw_str_eq(a->opaque, b->opaque);
}

bool cw_cond_etag_eq(struct cw_str a, struct cw_str b, bool weak)
{
    struct cond_etag ta, tb;

    if (!cond_etag_one(a, &ta) || !cond_etag_one(b, &tb)) return false;
    return cond_etag_match(&ta, &tb, weak);
}

/* If-Match / If-None-Match: "*" (the whole value) matches any stored response; otherwise true
 * when a list member matches the stored ETag. A member that is not an entity-tag is skipped
 * up to the next comma. Commas inside the quotes of a valid tag do not split it. */
static bool cond_list_match(struct cw_str list, struct cw_str stored_etag, bool weak)
{
    struct cond_etag st, t;
    const char *p;
    size_t len, i = 0;

    list = cond_trim(list);
    if (list.len == 1 && list.p[0] == '*') return true;
    if (!cond_etag_one(stored_etag, &st)) return false;
    p = list.p;
    len = list.len;
    while (i < len) {
        i = cond_skip_ows(p, len, i);
        if (i >= len) break;
        if (p[i] == ',') {
            i++;
            continue;
        }
        if (cond_etag_read(p, len, &i, &t)) {
            i = cond_skip_ows(p, len, i);
            if (i >= len || p[i] == ',') {
                if (cond_etag_match(&t, &st, weak)) return true;
                continue;
            }
        }
        /* Junk in this member: it matches nothing. */
        while (i < len && p[i] != ',')
            i++;
    }
    return false;
}

static bool cond_date(struct cw_str v, int64_t *out_s)
{
    if (v.p == NULL) return false;
    return cw_fresh_parse_date(v.p, v.len, out_s) == 0;
}

static int64_t cond_sub_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (!__builtin_sub_overflow(a, b, &r)) return r;
    return b < 0 ? INT64_MAX : INT64_MIN;
}

void cw_cond_validators_init(struct cw_cond_validators *v, struct cw_str etag,
                             struct cw_str last_modified, struct cw_str date,
                             int64_t response_time_ms)
{
    int64_t date_s = 0;
    bool has_date = cond_date(date, &date_s);

    memset(v, 0, sizeof(*v));
    v->etag = etag.p != NULL ? etag : cw_str_make(NULL, 0);
    v->has_last_modified = cond_date(last_modified, &v->last_modified_s);
    /* Parsed dates lie in years 0..9999, so the subtraction cannot overflow. */
    v->last_modified_strong = v->has_last_modified && has_date && date_s - v->last_modified_s >= 60;
    if (v->has_last_modified) {
        v->ims_ref_s = v->last_modified_s;
    } else if (has_date) {
        v->ims_ref_s = date_s;
    } else {
        v->ims_ref_s = response_time_ms / 1000;
    }
}

enum cw_cond_result cw_cond_evaluate(const struct cw_cond_req *req,
                                     const struct cw_cond_validators *v, int status,
                                     bool is_get_or_head)
{
    int64_t t;

    if (status < 200 || status > 299) return CW_COND_NONE;
    if (cond_present(req->if_match)) {
        /* §13.1.1: If-Match uses the strong comparison. */
        if (!cond_list_match(req->if_match, v->etag, false)) return CW_COND_PRECONDITION_FAILED;
    } else if (cond_present(req->if_unmodified_since) && v->has_last_modified &&
               cond_date(req->if_unmodified_since, &t) && v->last_modified_s > t) {
        return CW_COND_PRECONDITION_FAILED;
    }
    if (cond_present(req->if_none_match)) {
        /* §13.1.2: weak comparison; a match is "not modified" only for GET and HEAD. */
        if (cond_list_match(req->if_none_match, v->etag, true)) {
            return is_get_or_head ? CW_COND_NOT_MODIFIED : CW_COND_PRECONDITION_FAILED;
        }
    } else if (is_get_or_head && cond_present(req->if_modified_since) &&
               cond_date(req->if_modified_since, &t) && v->ims_ref_s <= t) {
        /* §13.1.3: several members (joined lines) do not parse as one date: ignored. */
        return CW_COND_NOT_MODIFIED;
    }
    return CW_COND_NONE;
}

/* Reads decimal digits from p[i], saturating at UINT64_MAX; returns the index after them
 * (i itself when there are none). */
static size_t cond_digits(const char *p, size_t len, size_t i, uint64_t *out)
{
    uint64_t n = 0;

    while (i < len && p[i] >= '0' && p[i] <= '9') {
        if (__builtin_mul_overflow(n, 10, &n) ||
            __builtin_add_overflow(n, (uint64_t)(p[i] - '0'), &n)) {
            n = UINT64_MAX;
        }
        i++;
    }
    *out = n;
    return i;
}

/* Reads one range-spec at p[*i] (not OWS, not a comma) and the OWS after it: 0 with *sat
 * telling whether it is satisfiable (then *first and *last), or -EINVAL. */
static int cond_range_spec(const char *p, size_t len, size_t *i, uint64_t length, bool *sat,
                           uint64_t *first, uint64_t *last)
{
    size_t k = *i, end;
    uint64_t a, b;
    bool has_b;

    if (p[k] == '-') {
        /* suffix-range: the last b bytes (§14.1.1); nothing of an empty representation. */
        end = cond_digits(p, len, k + 1, &b);
        if (end == k + 1) return -EINVAL;
        *sat = b > 0 && length > 0;
        *first = b >= length ? 0 : length - b;
        *last = length - 1;
    } else {
        end = cond_digits(p, len, k, &a);
        if (end == k || end >= len || p[end] != '-') return -EINVAL;
        k = end + 1;
        end = cond_digits(p, len, k, &b);
        has_b = end > k;
        if (has_b && b < a) return -EINVAL;
        *sat = a < length;
        *first = a;
        *last = has_b && b < length ? b : length - 1;
    }
    end = cond_skip_ows(p, len, end);
    if (end < len && p[end] != ',') return -EINVAL;
    *i = end;
    return 0;
}

int cw_cond_range_parse(struct cw_str value, uint64_t length, uint64_t *first, uint64_t *last)
{
    struct cw_str v = cond_trim(value);
    size_t i = 6, n_specs = 0, n_sat = 0;
    uint64_t f, l, sat_first = 0, sat_last = 0;
    bool sat;
    int rc;

    if (v.len < 6 || !cw_str_eq_ci(cw_str_make(v.p, 5), CW_STR_LIT("bytes")) || v.p[5] != '=') {
        return -EINVAL;
    }
    while (i < v.len) {
        i = cond_skip_ows(v.p, v.len, i);
        if (i >= v.len) break;
        if (v.p[i] == ',') {
            i++;
            continue;
        }
        rc = cond_range_spec(v.p, v.len, &i, length, &sat, &f, &l);
        if (rc < 0) return rc;
        n_specs++;
        if (sat && n_sat++ == 0) {
            sat_first = f;
            sat_last = l;
        }
    }
    if (n_specs == 0) return -EINVAL;
    if (n_sat == 0) return -ERANGE;
    if (n_sat > 1) return -E2BIG;
    *first = sat_first;
    *last = sat_last;
    return 0;
}

bool cw_cond_if_range_ok(struct cw_str if_range, const struct cw_cond_validators *v)
{
    struct cw_str t;
    int64_t d;

    if (if_range.p == NULL) return true;
    t = cond_trim(if_range);
    if (t.len == 0) return false;
    if (t.p[0] == '"' || (t.len >= 2 && t.p[0] == 'W' && t.p[1] == '/')) {
        return cw_cond_etag_eq(t, v->etag, false);
    }
    return cond_date(t, &d) && v->has_last_modified && v->last_modified_strong &&
           d == v->last_modified_s;
}

enum cw_cond_use cw_cond_request_use(const struct cw_cc *req_cc, bool req_pragma_no_cache,
                                     bool ignore_client_no_cache, int64_t age_ms,
                                     int64_t lifetime_ms, bool must_revalidate,
                                     bool always_revalidate)
{
    uint32_t flags = req_cc != NULL ? req_cc->flags : 0;
    int64_t max_age_s = req_cc != NULL ? req_cc->max_age_s : -1;
    int64_t min_fresh_s = req_cc != NULL ? req_cc->min_fresh_s : -1;
    int64_t max_stale_s = req_cc != NULL ? req_cc->max_stale_s : -1;
    bool no_cache = (flags & (CW_CC_NO_CACHE | CW_CC_NO_CACHE_FIELDS)) || req_pragma_no_cache;

    if (always_revalidate) return CW_COND_USE_REVALIDATE;
    if (no_cache && !ignore_client_no_cache) return CW_COND_USE_REVALIDATE;
    /* cw_cc_parse() clamps delta-seconds to 2^31, so "* 1000" cannot overflow. */
    if (max_age_s >= 0 && age_ms > max_age_s * 1000) return CW_COND_USE_REVALIDATE;
    if (min_fresh_s >= 0 && cond_sub_sat(lifetime_ms, age_ms) < min_fresh_s * 1000) {
        return CW_COND_USE_REVALIDATE;
    }
    if (age_ms < lifetime_ms) return CW_COND_USE_FRESH;
    /* §4.2.4: must-revalidate overrides the client's max-stale. */
    if (must_revalidate) return CW_COND_USE_REVALIDATE;
    if ((flags & CW_CC_MAX_STALE_ANY) ||
        (max_stale_s >= 0 && cond_sub_sat(age_ms, lifetime_ms) <= max_stale_s * 1000)) {
        return CW_COND_USE_STALE_OK;
    }
    /* §5.2.1.1: max-age without max-stale means the client wants nothing stale. */
    if (max_age_s >= 0) return CW_COND_USE_REVALIDATE;
    return CW_COND_USE_STALE;
}

enum cw_cond_error_use cw_cond_error_use(int64_t fresh_until_ms, int64_t sie_until_ms,
                                         bool must_revalidate, int64_t req_sie_s, bool breaker_open,
                                         int64_t max_stale_ms, int64_t now_ms)
{
    int64_t stale_ms = cond_sub_sat(now_ms, fresh_until_ms);

    if (must_revalidate) return CW_COND_ERROR_NONE;
    /* RFC 5861 §4: the request's own stale-if-error bounds the staleness it accepts (the
     * parser clamps it to 2^31 s: "* 1000" cannot overflow). */
    if (req_sie_s >= 0 && stale_ms > req_sie_s * 1000) return CW_COND_ERROR_NONE;
    if (now_ms < sie_until_ms) return CW_COND_ERROR_SIE;
    if (breaker_open && stale_ms < max_stale_ms) return CW_COND_ERROR_BREAKER;
    return CW_COND_ERROR_NONE;
}

/* True when a 304's field of this name may replace or join the stored ones (RFC 9111 §3.2). */
static bool cond_merge_takes(struct cw_str name, const struct cw_entry_header *fresh,
                             size_t n_fresh)
{
    static const struct cw_str keep[] = {
        CW_STR_LIT("Content-Length"),
        CW_STR_LIT("Content-Range"),
        CW_STR_LIT("Content-Encoding"),
        CW_STR_LIT("Set-Cookie"),
    };

    if (name.len == 0 || cw_cc_is_hop_by_hop(name)) return false;
    for (size_t i = 0; i < CW_ARRAY_LEN(keep); i++) {
        if (cw_str_eq_ci(name, keep[i])) return false;
    }
    /* §3.1, RFC 9110 §7.6.1: fields the 304's Connection nominates are hop-by-hop too. */
    for (size_t i = 0; i < n_fresh; i++) {
        if (cw_str_eq_ci(fresh[i].name, CW_STR_LIT("Connection")) &&
            cw_cc_list_has(fresh[i].value, name)) {
            return false;
        }
    }
    return true;
}

/* Index of the first of h[0..before) named name, or before when none is. */
static size_t cond_find(const struct cw_entry_header *h, size_t before, struct cw_str name)
{
    for (size_t i = 0; i < before; i++) {
        if (cw_str_eq_ci(h[i].name, name)) return i;
    }
    return before;
}

static size_t cond_count(const struct cw_entry_header *h, size_t from, size_t n, struct cw_str name)
{
    size_t k = 0;

    for (size_t i = from; i < n; i++) {
        if (cw_str_eq_ci(h[i].name, name)) k++;
    }
    return k;
}

/* Appends every line of h named name to out at out_n; returns the new count. The caller has
 * checked that they fit. */
static size_t cond_emit(const struct cw_entry_header *h, size_t n, struct cw_str name,
                        struct cw_entry_header *out, size_t out_n)
{
    for (size_t i = 0; i < n; i++) {
        if (cw_str_eq_ci(h[i].name, name)) out[out_n++] = h[i];
    }
    return out_n;
}

/* Invariant: out_n + pending <= out_cap, where pending counts the stored lines still to be
 * written. It holds at the start (out_cap >= n_stored), copying a stored line keeps it, and a
 * replacement is made only when it keeps it; so no stored line is ever dropped. */
size_t cw_cond_merge_304(const struct cw_entry_header *stored, size_t n_stored,
                         const struct cw_entry_header *fresh, size_t n_fresh,
                         struct cw_entry_header *out, size_t out_cap)
{
    bool replaced[CW_LIMIT_HEADER_COUNT];
    size_t out_n = 0, pending = n_stored;

    if (n_stored > CW_LIMIT_HEADER_COUNT || out_cap < n_stored) return 0;
    if (n_fresh > CW_LIMIT_HEADER_COUNT) n_fresh = CW_LIMIT_HEADER_COUNT;
    if (fresh == NULL) n_fresh = 0;

    for (size_t i = 0; i < n_stored; i++) {
        struct cw_str name = stored[i].name;
        size_t first = cond_find(stored, i, name);
        size_t k_fresh, k_stored;

        replaced[i] = false;
        if (first < i) {
            /* A later line of a field already handled at its first line. */
            if (replaced[first]) continue;
            out[out_n++] = stored[i];
            pending--;
            continue;
        }
        k_fresh = cond_merge_takes(name, fresh, n_fresh) ? cond_count(fresh, 0, n_fresh, name) : 0;
        k_stored = cond_count(stored, i, n_stored, name);
        if (k_fresh > 0 && out_n + k_fresh + (pending - k_stored) <= out_cap) {
            out_n = cond_emit(fresh, n_fresh, name, out, out_n);
            pending -= k_stored;
            replaced[i] = true;
            continue;
        }
        out[out_n++] = stored[i];
        pending--;
    }

    for (size_t j = 0; j < n_fresh; j++) {
        struct cw_str name = fresh[j].name;
        size_t k;

        if (cond_find(fresh, j, name) < j) continue;
        if (cond_find(stored, n_stored, name) < n_stored) continue;
        if (!cond_merge_takes(name, fresh, n_fresh)) continue;
        k = cond_count(fresh, j, n_fresh, name);
        if (out_n + k > out_cap) continue;
        out_n = cond_emit(fresh, n_fresh, name, out, out_n);
    }
    return out_n;
}

/* Authorities compared case-insensitively, an empty or default port dropped from each. */
static bool cond_host_eq(struct cw_str a, struct cw_str b)
{
    struct cw_str *s[2] = {&a, &b};

    for (int i = 0; i < 2; i++) {
        struct cw_str *h = s[i];
        if (h->len >= 3 && memcmp(h->p + h->len - 3, ":80", 3) == 0) {
            h->len -= 3;
        } else if (h->len >= 1 && h->p[h->len - 1] == ':') {
            h->len -= 1;
        }
    }
    return a.len > 0 && cw_str_eq_ci(a, b);
}

bool cw_cond_same_origin(struct cw_str location, struct cw_str req_host, struct cw_str *path_out)
{
    struct cw_str v = cond_trim(location), host;
    size_t i = 0, a, end;

    if (v.len == 0) return false;
    if (v.p[0] == '/' && (v.len == 1 || v.p[1] != '/')) {
        end = 0;
        while (end < v.len && v.p[end] != '#')
            end++;
        *path_out = cw_str_make(v.p, end);
        return true;
    }
    if (v.len >= 7 && cw_str_eq_ci(cw_str_make(v.p, 7), CW_STR_LIT("http://"))) {
        i = 7;
    } else if (v.len >= 2 && v.p[0] == '/' && v.p[1] == '/') {
        i = 2;
    } else {
        return false;
    }
    a = i;
    while (i < v.len && v.p[i] != '/' && v.p[i] != '?' && v.p[i] != '#') {
        if (v.p[i] == '@') return false;
        i++;
    }
    host = cw_str_make(v.p + a, i - a);
    if (!cond_host_eq(host, cond_trim(req_host))) return false;
    end = i;
    while (end < v.len && v.p[end] != '#')
        end++;
    if (end == i) {
        *path_out = CW_STR_LIT("/");
        return true;
    }
    if (v.p[i] != '/') return false; /* "http://h?q": a query without a path */
    *path_out = cw_str_make(v.p + i, end - i);
    return true;
}
