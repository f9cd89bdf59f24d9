/* core/policy.h - what an origin answer becomes in this cache: stored or not (and why), its
 * freshness lifetime and stale windows, the headers the entry keeps, the Vary names it is keyed
 * by and its Surrogate-Key tags (RFC 9111 §3, §3.1, §3.2, §4.2, §4.3.4, §5.2.2; RFC 5861;
 * RFC 9213 targeted fields through core/fresh), decided from the answer's status and headers,
 * the route, the request and the times passed in.
 *
 * Pure: no I/O, no clock (now_ms and the request and response times are parameters, wall-clock
 * milliseconds like the entry header's), no allocation, no logging. Owns nothing. The result
 * borrows the input's header bytes and points into itself (the Date it adds, the fields a 304
 * merges), so it must not be copied, and it lives no longer than the input. Two steps, so that
 * the decision can be taken when the head arrives: cw_policy_decide() with the head, then
 * cw_policy_finish() with the body's length and hash, which completes the entry header (the
 * adaptive TTL learns from the entry the answer replaces). workers/fill executes the result:
 * it picks the key, encodes, puts, releases the lease and wakes the waiters. */
#ifndef CW_POLICY_H
#define CW_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/adaptive.h"
#include "core/common.h"
#include "core/entry.h"
#include "core/fresh.h"
#include "core/limits.h"

struct cw_config_route;

/* The entry stored under the key, as far as the policy needs it: what a 304 merges into (its
 * status and headers) and what the adaptive TTL learnt. Fill it with cw_policy_prev_init();
 * hdrs is set by the caller and read only for a 304. */
struct cw_policy_prev {
    int status;
    const struct cw_entry_header *hdrs; /* borrowed; may be NULL when n is 0 */
    size_t n;
    struct cw_adaptive_state st;
    char etag[CW_LIMIT_VALIDATOR_BYTES + 1]; /* its strong ETag, "" when none or weak */
};

/* One origin answer to a cacheable request. Borrowed, and must outlive the result. */
struct cw_policy_in {
    int status;                         /* the origin's; a 304 freshens prev (§4.3.4) */
    const struct cw_entry_header *hdrs; /* the origin's response header lines, in order */
    size_t n;
    int64_t body_len; /* bytes, or -1 while not known (a streamed head without a length) */
    const struct cw_config_route *rt;
    const char *const *targets; /* RFC 9213 target list in priority order (may be NULL) */
    size_t target_count;
    uint64_t max_object_bytes; /* cache.max_object: a larger body is not stored */
    bool method_is_get_or_head;
    bool req_has_authorization;
    bool req_has_cookie;      /* the request as sent to the origin carried Cookie */
    bool req_no_store;        /* request Cache-Control: no-store */
    int64_t request_time_ms;  /* when the request went to the origin */
    int64_t response_time_ms; /* when its answer arrived */
    int64_t now_ms;           /* when the entry is stored (and the adaptive TTL's clock) */
    /* The entry stored under the key, NULL when there is none or it was not read. Required for
     * a 304. For another status it is read only by cw_policy_finish(), so a caller may set it
     * after cw_policy_decide() (the key it is read under depends on the answer's Vary). */
    const struct cw_policy_prev *prev;
};

/* The decision. Complete after cw_policy_finish(); never copy it (it points into itself). */
struct cw_policy {
    bool store;         /* put the entry */
    bool hit_for_miss;  /* not stored, and later requests should not coalesce on the key */
    const char *detail; /* static text for the Cache-Status detail when !store, else NULL */
    bool revalidated;   /* a 304 freshened prev: the body is prev's */
    bool adaptive;      /* the lifetime is learnt per key (route adaptive, no origin rule) */
    bool changed;       /* adaptive, after finish: the content differs from prev's */
    struct cw_fresh_result fresh; /* storability and windows before the adaptive TTL */
    struct cw_entry_hdr h;        /* the entry header to encode (lengths are the encoder's) */
    /* The headers to store, in order: the answer's (a 304's merged into prev's) minus
     * hop-by-hop fields, those Connection names, Content-Length, internal ':' names, Set-Cookie
     * when the route strips it and the fields no-cache="..." / private="..." name; Date added
     * when the origin sent none (RFC 9110 §6.6.1). */
    struct cw_entry_header hdrs[CW_LIMIT_HEADER_COUNT];
    size_t n;
    /* The Vary field names of the stored headers, lower case, "a,b" (empty: no Vary). */
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t vary_len;
    /* Surrogate-Key tags of the stored headers, split as the store indexes them: at most
     * CW_LIMIT_TAGS, a tag over CW_LIMIT_TAG_BYTES skipped. Borrowed from the input. */
    struct cw_str tags[CW_LIMIT_TAGS];
    size_t tag_count;
    /* Scratch the entries above point into. */
    char date[32];
    struct cw_entry_header merged[CW_LIMIT_HEADER_COUNT];
};

/* Decides from the head of in: whether to store, and why not (static text): the RFC 9111 §3
 * reasons of cw_fresh_evaluate(), then "too-large" (a known body over max_object), then
 * "headers-too-large" (more stored fields than an entry holds) and "vary-too-large" (Vary over
 * CW_LIMIT_VARY_FIELDS or CW_LIMIT_VARY_RECORD_BYTES); for a 304, "304-without-entry" when
 * in->prev is NULL. hit_for_miss is set for every refusal but a 5xx (an outage, not a property
 * of the resource) and a 304 without an entry. Fills the windows into out->h. Never fails. */
void cw_policy_decide(const struct cw_policy_in *in, struct cw_policy *out);

/* Completes out (from cw_policy_decide() on the same in) once the body is known: body_len
 * bytes whose cw_adaptive_hash() is body_hash (both ignored for a 304, whose body is prev's;
 * a negative body_len is not checked). A body over max_object makes it "too-large". With the
 * adaptive TTL, learns from in->prev (NULL: a new key) whether the content changed (a strong ETag
 * on both sides decides, else the body hash; a 304 is "unchanged") and replaces the lifetime by the
 * learnt TTL, keeping the stale windows' lengths (RFC 9111 §4.2.2). A 304 keeps prev's adaptive
 * state otherwise. */
void cw_policy_finish(const struct cw_policy_in *in, int64_t body_len, uint64_t body_hash,
                      struct cw_policy *out);

/* Fills p from a decoded entry: status, adaptive state and strong ETag (hdrs left NULL). */
void cw_policy_prev_init(struct cw_policy_prev *p, const struct cw_entry_view *v);

/* Joins the values of every Vary line of hdrs into a lower-case "a,b" list without spaces in
 * buf (size bytes, not NUL-terminated): 0 and *len, or -ENOSPC past CW_LIMIT_VARY_FIELDS names
 * or size bytes. */
CW_MUST_CHECK int cw_policy_vary_names(const struct cw_entry_header *hdrs, size_t n, char *buf,
                                       size_t size, size_t *len);

#endif /* CW_POLICY_H */
