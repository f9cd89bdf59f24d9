/* core/fresh.h - HTTP dates, age and freshness (RFC 9111 §3, §4.2; RFC 5861; RFC 9213).
 *
 * Pure: time comes in as parameters (wall-clock milliseconds since the epoch, because
 * HTTP dates are wall time and entries outlive processes). Owns nothing; the input struct
 * borrows the header bytes it was fed and the target list it was given. Its caller (core/policy,
 * which decides what an origin answer becomes) sets the configured targeted cache-control
 * fields (cw_fresh_resp_set_targets()), feeds every response header line to
 * cw_fresh_add_header(), then asks cw_fresh_evaluate() whether and for how long to store.
 * Which of Cache-Control or a targeted field applies is decided here, not by the caller. */
#ifndef CW_FRESH_H
#define CW_FRESH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/cc.h"
#include "core/common.h"
#include "core/limits.h"

/* Parses an HTTP-date (IMF-fixdate, obsolete RFC 850 and asctime forms, RFC 9110 §5.6.7):
 * 0 and *out_s (seconds since the epoch), or -EBADMSG. */
CW_MUST_CHECK int cw_fresh_parse_date(const char *p, size_t len, int64_t *out_s);
/* As cw_fresh_parse_date(), but a two-digit RFC 850 year more than 50 years after now_s is
 * taken to be in the previous century (RFC 9110 §5.6.7). Without a reference,
 * cw_fresh_parse_date() reads 70-99 as 19xx and 00-69 as 20xx. */
CW_MUST_CHECK int cw_fresh_parse_date_at(const char *p, size_t len, int64_t now_s, int64_t *out_s);
/* Writes the IMF-fixdate for t_s into buf (at least 30 bytes): returns 29. */
size_t cw_fresh_format_date(int64_t t_s, char *buf);

/* True for the statuses RFC 9110 §15.1 calls heuristically cacheable:
 * 200 203 204 206 300 301 308 404 405 410 414 501. */
bool cw_fresh_status_heuristic(int status);

/* One field of the RFC 9213 target list, as the response carried it. */
struct cw_fresh_target {
    bool present;   /* at least one line of the field */
    bool invalid;   /* a line was not a valid dictionary: the field is ignored (§2.1) */
    size_t members; /* dictionary members over all its lines; 0 = empty, ignored (§2.1) */
    struct cw_cc cc;
};

/* What a response says about itself, gathered header by header. */
struct cw_fresh_resp {
    int status;
    struct cw_cc cc; /* Cache-Control; see cw_fresh_resp_cc() for the one that applies */
    bool has_date;
    int64_t date_s;
    bool has_expires;
    bool expires_valid; /* an invalid Expires means already expired (§5.3) */
    int64_t expires_s;
    bool has_last_modified;
    int64_t last_modified_s;
    int64_t age_s; /* origin's Age, -1 when absent or invalid */
    bool age_seen; /* the first Age member was read (valid or not): the rest are ignored */
    bool has_etag;
    bool has_set_cookie;
    bool vary_star;     /* Vary: * */
    struct cw_str vary; /* borrowed: the last Vary value (lists are joined by the worker) */
    bool has_content_length;
    uint64_t content_length;
    bool content_length_bad; /* invalid or conflicting Content-Length seen */
    int64_t date_ref_s; /* set by the caller after init: "now" for two-digit years (0 = none) */
    const char *const *target_names; /* borrowed: see cw_fresh_resp_set_targets() */
    size_t target_count;
    struct cw_fresh_target targets[CW_LIMIT_TARGETED_FIELDS];
};

void cw_fresh_resp_init(struct cw_fresh_resp *r, int status);
/* Sets this cache's RFC 9213 target list: count field names (matched case-insensitively) in
 * priority order, such as { "CacheWarp-Cache-Control", "CDN-Cache-Control" }. Call after
 * cw_fresh_resp_init() and before the first header; without a call (or with count 0) there
 * are no targeted fields. Names past CW_LIMIT_TARGETED_FIELDS are ignored (the config refuses
 * them). names is borrowed and must outlive r. */
void cw_fresh_resp_set_targets(struct cw_fresh_resp *r, const char *const *names, size_t count);
/* Records one response header line (name and value without CRLF, value trimmed or not). */
void cw_fresh_add_header(struct cw_fresh_resp *r, struct cw_str name, struct cw_str value);
/* RFC 9213 §2.2: the index in the target list of the targeted field this cache obeys, the
 * first one present whose value is a valid, non-empty dictionary; -1 when there is none, and
 * Cache-Control and Expires apply as usual. */
int cw_fresh_resp_target(const struct cw_fresh_resp *r);
/* The directives that decide storing and freshness: the selected targeted field's, which
 * replace Cache-Control (and Expires) entirely, else Cache-Control's. Borrowed from r. */
const struct cw_cc *cw_fresh_resp_cc(const struct cw_fresh_resp *r);

/* What the request and the route contribute. */
struct cw_fresh_policy {
    bool method_is_get_or_head;
    bool req_has_authorization;
    bool req_cookie_pass; /* request has Cookie and the route passes those (cookies = "pass") */
    bool req_no_store;    /* request Cache-Control: no-store */
    int64_t route_ttl_ms; /* used when the origin gives no explicit freshness */
    int64_t route_swr_ms;
    int64_t route_sie_ms;
    int64_t max_ttl_ms;       /* cap for heuristic freshness (0 = no cap) */
    bool override;            /* route ignores origin freshness */
    bool strip_set_cookie;    /* route caches Set-Cookie responses, cookie stripped */
    int64_t request_time_ms;  /* when the request to the origin was sent */
    int64_t response_time_ms; /* when the response arrived */
};

struct cw_fresh_result {
    bool storable;
    const char *why_not;              /* static text when !storable, for Cache-Status detail */
    bool explicit_freshness;          /* origin gave max-age/s-maxage/Expires */
    bool always_revalidate;           /* no-cache without fields: store, but validate each use */
    bool must_revalidate;             /* must-revalidate/proxy-revalidate/s-maxage: no stale use */
    int64_t lifetime_ms;              /* freshness lifetime */
    int64_t corrected_initial_age_ms; /* §4.2.3 */
    int64_t fresh_until_ms;           /* response_time + lifetime - corrected_initial_age */
    int64_t swr_until_ms;             /* fresh_until + swr (0 window when must_revalidate) */
    int64_t sie_until_ms;             /* fresh_until + sie */
};

/* Decides storability (§3) and computes freshness (§4.2) for one response. Never fails. */
void cw_fresh_evaluate(const struct cw_fresh_resp *r, const struct cw_fresh_policy *pol,
                       struct cw_fresh_result *out);

/* Current age in ms (§4.2.3) of a stored response: corrected_initial_age + resident time. */
int64_t cw_fresh_age_ms(int64_t corrected_initial_age_ms, int64_t response_time_ms, int64_t now_ms);

#endif /* CW_FRESH_H */
