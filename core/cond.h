/* core/cond.h - conditional requests, ranges and the request's cache directives (RFC 9110
 * §13, §14; RFC 9111 §3.2, §4.2, §4.3.2, §4.4, §5.2.1).
 *
 * Pure: no I/O, no clock, no allocation, no globals. Owns nothing; every struct and every
 * result borrows the bytes it was given (request fields, stored headers, the 304's headers),
 * valid as long as they are. Header values are (pointer, length) pairs, never NUL-ended,
 * and a field that is absent is passed as .p == NULL. A field sent on several lines is
 * passed with its lines joined by ", " (RFC 9110 §5.3). The worker evaluates a request
 * against a stored entry in this order: cw_cond_request_use() (may the entry be used at
 * all), then cw_cond_evaluate() (304/412), then for a 200, cw_cond_range_parse() and
 * cw_cond_if_range_ok() (206/416). */
#ifndef CW_COND_H
#define CW_COND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

struct cw_cc;
struct cw_entry_header;

/* The validators of a stored response, read from its headers by cw_cond_validators_init(). */
struct cw_cond_validators {
    struct cw_str etag; /* the stored ETag field value, borrowed; .p NULL when absent */
    bool has_last_modified;
    int64_t last_modified_s;
    /* RFC 9111 §4.3.2: the date If-Modified-Since is compared with: Last-Modified, else the
     * stored Date, else the time the response was received. */
    int64_t ims_ref_s;
    /* RFC 9110 §8.8.2.2: Last-Modified is strong for a cache when it is at least 60 s before
     * the stored Date. Only a strong date satisfies If-Range. */
    bool last_modified_strong;
};

/* Fills v from the stored ETag, Last-Modified and Date values (.p NULL when absent; an
 * invalid date counts as absent) and the wall-clock time the response was received. Never
 * fails. v->etag borrows etag. */
void cw_cond_validators_init(struct cw_cond_validators *v, struct cw_str etag,
                             struct cw_str last_modified, struct cw_str date,
                             int64_t response_time_ms);

/* RFC 9110 §8.8.3.2 comparison of two entity-tags (each a single ETag value; OWS around it
 * is ignored). Strong (weak == false): both are strong and their opaque-tags are identical.
 * Weak: the opaque-tags are identical, W/ ignored. "W/" is case-sensitive (%s"W/"), and a
 * value that is not a valid entity-tag never matches anything, itself included. */
bool cw_cond_etag_eq(struct cw_str a, struct cw_str b, bool weak);

/* The request's precondition fields: raw values, borrowed, .p NULL when absent. A value that
 * is empty or only whitespace counts as absent. */
struct cw_cond_req {
    struct cw_str if_match;
    struct cw_str if_none_match;
    struct cw_str if_modified_since;
    struct cw_str if_unmodified_since;
};

enum cw_cond_result {
    CW_COND_NONE = 0,            /* serve the stored response (200, or a range of it) */
    CW_COND_NOT_MODIFIED,        /* 304 with the stored validators and cache headers */
    CW_COND_PRECONDITION_FAILED, /* 412 */
};

/* Evaluates the preconditions against a stored response with the given status, in the order
 * of RFC 9110 §13.2.2. Only for a 2xx stored status; any other gives NONE (§13.2.1: a server
 * ignores preconditions when it would not answer 2xx without them).
 *   1. If-Match (strong comparison; "*" matches any stored response) false: 412.
 *   2. Else, without If-Match, If-Unmodified-Since false (Last-Modified later than it): 412.
 *      Ignored when it is not a valid HTTP-date or the response has no Last-Modified.
 *   3. If-None-Match (weak comparison; "*" matches) matching: 304 for GET/HEAD, else 412.
 *   4. Else, only for GET/HEAD and without If-None-Match, If-Modified-Since: 304 when
 *      v->ims_ref_s <= the date. Ignored when it is not exactly one valid HTTP-date.
 * A list member that is not a valid entity-tag matches nothing; "*" only counts as the
 * whole field value. Never fails. */
enum cw_cond_result cw_cond_evaluate(const struct cw_cond_req *req,
                                     const struct cw_cond_validators *v, int status,
                                     bool is_get_or_head);

/* RFC 9110 §14.2, for a representation of length bytes. Returns:
 *   0        exactly one satisfiable range: *first and *last (inclusive, last clamped to
 *            length - 1) -> 206 with Content-Range: bytes first-last/length;
 *   -ERANGE  syntactically valid, but no range is satisfiable (every first-pos >= length,
 *            or a zero suffix-length, or length 0, as nginx does) -> 416 with an
 *            unsatisfied-range Content-Range (§14.4);
 *   -E2BIG   two or more satisfiable ranges (multipart is not served) -> the caller serves
 *            200 or forwards to the origin;
 *   -EINVAL  not "bytes", or invalid syntax (including last-pos < first-pos, §14.1.1) ->
 *            ignore Range and serve 200.
 * The unit is case-insensitive; OWS is allowed around the value and around list members,
 * and empty members (",,") are skipped (§5.6.1). Numbers beyond 2^64 - 1 saturate, which
 * keeps their meaning (a saturated first-pos is past any length; a saturated last-pos is
 * clamped). *first and *last are written only on 0. Bounded by value.len. */
CW_MUST_CHECK int cw_cond_range_parse(struct cw_str value, uint64_t length, uint64_t *first,
                                      uint64_t *last);

/* RFC 9110 §13.1.5: true when Range may be honoured. An absent If-Range (.p NULL) is true.
 * An entity-tag must strongly match v->etag; an HTTP-date must equal Last-Modified exactly,
 * and Last-Modified must be strong (v->last_modified_strong). Anything else is false: serve
 * the whole representation (200). */
bool cw_cond_if_range_ok(struct cw_str if_range, const struct cw_cond_validators *v);

/* How the request's own directives let a stored response be used (RFC 9111 §4.2, §4.2.4,
 * §5.2.1, §5.4). */
enum cw_cond_use {
    CW_COND_USE_FRESH = 0,  /* fresh, and acceptable to the client: serve */
    CW_COND_USE_STALE_OK,   /* stale, but the client's max-stale accepts it: serve */
    CW_COND_USE_STALE,      /* stale, the client said nothing: the caller's stale-while-
                             * revalidate / stale-if-error windows decide */
    CW_COND_USE_REVALIDATE, /* must not be served unvalidated: go to the origin (no swr) */
};

/* Decides, in this order (the first that applies wins):
 *   always_revalidate (stored no-cache)                                    -> REVALIDATE
 *   request no-cache, or req_pragma_no_cache, unless ignore_client_no_cache -> REVALIDATE
 *   request max-age=N and age > N                                          -> REVALIDATE
 *   request min-fresh=N and lifetime - age < N                             -> REVALIDATE
 *   fresh (age < lifetime)                                                 -> FRESH
 *   stale and must_revalidate (must-/proxy-revalidate, s-maxage)           -> REVALIDATE
 *   stale and max-stale (no value, or staleness <= N)                      -> STALE_OK
 *   stale and request max-age present (§5.2.1.1: no stale wanted)          -> REVALIDATE
 *   stale otherwise                                                        -> STALE
 * req_cc may be NULL (no Cache-Control). req_pragma_no_cache is true only when the request
 * has Pragma: no-cache and no Cache-Control field, which the caller decides (§5.4).
 * ignore_client_no_cache affects only no-cache and Pragma, not max-age=0. Durations in ms;
 * staleness = age - lifetime. only-if-cached (§5.2.1.7) is left to the caller: it serves on
 * FRESH or STALE_OK (or STALE inside its own stale window) and otherwise answers 504
 * without contacting the origin. Never fails. */
enum cw_cond_use cw_cond_request_use(const struct cw_cc *req_cc, bool req_pragma_no_cache,
                                     bool ignore_client_no_cache, int64_t age_ms,
                                     int64_t lifetime_ms, bool must_revalidate,
                                     bool always_revalidate);

/* RFC 9111 §3.2: the stored headers updated by a 304 (or a HEAD). The result, in out, is the
 * stored headers in their order, where every field the 304 carries replaces all the stored
 * lines of that name (at the first one's position, with all the 304's lines of that name),
 * then the 304's new fields in its order. Never taken from the 304: hop-by-hop fields
 * (cw_cc_is_hop_by_hop() and names its Connection field nominates), Content-Length,
 * Content-Range and Content-Encoding (they describe the stored body's bytes), Set-Cookie
 * (never shared through a cache) and empty names. Only the 304's first
 * CW_LIMIT_HEADER_COUNT lines are considered. A replacement that would not fit in out_cap
 * keeps the stored lines of that field; a new field that does not fit is dropped whole;
 * stored lines are never dropped. Returns the number of entries written to out, or 0 when
 * out_cap < n_stored or n_stored > CW_LIMIT_HEADER_COUNT (a caller bug: size out for the
 * stored headers plus the 304's). Borrows every string from stored and fresh. */
size_t cw_cond_merge_304(const struct cw_entry_header *stored, size_t n_stored,
                         const struct cw_entry_header *fresh, size_t n_fresh,
                         struct cw_entry_header *out, size_t out_cap);

/* How a stale copy may answer a request whose origin failed (cw_cond_error_use()). */
enum cw_cond_error_use {
    CW_COND_ERROR_NONE = 0, /* it may not: the error is answered */
    CW_COND_ERROR_SIE,      /* inside its stale-if-error window (RFC 5861 §4) */
    CW_COND_ERROR_BREAKER,  /* past that window, the origin's breaker open, within max_stale */
};

/* Decides, in this order: must_revalidate (RFC 9111 §4.2.4) -> NONE; staleness (now_ms -
 * fresh_until_ms) past the request's own stale-if-error=N (req_sie_s, -1 when absent) ->
 * NONE; now_ms before sie_until_ms -> SIE; breaker_open and staleness below max_stale_ms
 * (breaker.max_stale, 0 = off: as Varnish's grace, a dead origin's copies serve a while
 * longer) -> BREAKER; else NONE. Never fails. */
enum cw_cond_error_use cw_cond_error_use(int64_t fresh_until_ms, int64_t sie_until_ms,
                                         bool must_revalidate, int64_t req_sie_s, bool breaker_open,
                                         int64_t max_stale_ms, int64_t now_ms);

/* RFC 9111 §4.4: whether a Location or Content-Location value names a URI on the request's
 * own origin, whose cache entries a successful unsafe request invalidates. True and
 * *path_out (the path and query, fragment removed, borrowed from location; "/" for an empty
 * path) for an absolute path ("/x", not "//") or an http URI ("http://" or "//") whose
 * authority equals req_host case-insensitively, with an empty or default port (":80")
 * ignored on either side. False for any other host or scheme, userinfo, a relative
 * reference ("x", "?q"), or an authority with a query but no path. */
bool cw_cond_same_origin(struct cw_str location, struct cw_str req_host, struct cw_str *path_out);

#endif /* CW_COND_H */
