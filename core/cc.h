/* core/cc.h - Cache-Control parsing (RFC 9111 §5.2), targeted cache-control fields (RFC
 * 9213) and hop-by-hop header rules.
 *
 * Pure; owns nothing. A parsed struct borrows the field-name lists from the header bytes
 * it was parsed from. Several Cache-Control field lines accumulate into one struct (RFC
 * 9110 §5.3), so call cw_cc_parse() once per line after cw_cc_init(). Unknown directives
 * are ignored (§5.2.3); a malformed delta-seconds makes the directive count as present
 * with value 0 where that is the safe reading (max-age, s-maxage) and absent otherwise. */
#ifndef CW_CC_H
#define CW_CC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/common.h"

enum cw_cc_flag {
    CW_CC_NO_STORE = 1u << 0,
    CW_CC_NO_CACHE = 1u << 1, /* without field names: revalidate every use */
    CW_CC_PRIVATE = 1u << 2,  /* without field names: not for a shared cache */
    CW_CC_PUBLIC = 1u << 3,
    CW_CC_MUST_REVALIDATE = 1u << 4,
    CW_CC_PROXY_REVALIDATE = 1u << 5,
    CW_CC_NO_TRANSFORM = 1u << 6,
    CW_CC_ONLY_IF_CACHED = 1u << 7,
    CW_CC_MUST_UNDERSTAND = 1u << 8,
    CW_CC_IMMUTABLE = 1u << 9,
    CW_CC_NO_CACHE_FIELDS = 1u << 10, /* no-cache="a, b": strip those fields, store */
    CW_CC_PRIVATE_FIELDS = 1u << 11,  /* private="a, b": strip those fields, store */
    CW_CC_MAX_STALE_ANY = 1u << 12,   /* request max-stale without a value */
};

/* -1 means "directive absent" for every int64_t field. */
struct cw_cc {
    uint32_t flags;
    int64_t max_age_s;
    int64_t s_maxage_s;
    int64_t max_stale_s;
    int64_t min_fresh_s;
    int64_t swr_s;                 /* stale-while-revalidate (RFC 5861) */
    int64_t sie_s;                 /* stale-if-error (RFC 5861) */
    struct cw_str no_cache_fields; /* borrowed: the quoted list of no-cache="..." */
    struct cw_str private_fields;  /* borrowed: the quoted list of private="..." */
};

void cw_cc_init(struct cw_cc *cc);
/* Adds the directives of one Cache-Control field value. Bounded by CW_LIMIT_CC_DIRECTIVES
 * directives per call. Never fails: bad syntax is skipped up to the next comma. */
void cw_cc_parse(struct cw_cc *cc, const char *p, size_t len);

/* Adds the directives of one line of an RFC 9213 targeted cache-control field (such as
 * CDN-Cache-Control), which is a Structured Fields Dictionary (RFC 8941 §3.2, §4.2.2): the
 * number of members (0 for an empty line), or -EBADMSG when the line is not a valid
 * dictionary, and then cc is unchanged. Several lines of one field accumulate into one struct
 * as for cw_cc_parse(), but a member replaces an earlier one of the same name (a dictionary
 * keeps the last), and parameters are ignored (RFC 9213 §2.1). A value of a type no
 * directive takes (max-age=1.5, max-age=-1, no-store=?0, a byte sequence, an inner list) is
 * malformed and read as cw_cc_parse() reads a malformed one: max-age and s-maxage as 0,
 * restrictive directives still apply, permissive ones are dropped. Unknown members count but
 * do nothing. Linear in len; no member limit (RFC 8941 §3.2 asks for at least 1024). */
CW_MUST_CHECK int cw_cc_parse_targeted(struct cw_cc *cc, const char *p, size_t len);

/* RFC 9110 §7.6.1: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding, Upgrade, and the proxy-only Proxy-Authenticate/Proxy-Authorization. */
bool cw_cc_is_hop_by_hop(struct cw_str name);
/* True when name appears (case-insensitively) in the comma-separated token list. Used for
 * the names a Connection header nominates, Vary, and no-cache/private field lists. */
bool cw_cc_list_has(struct cw_str list, struct cw_str name);

#endif /* CW_CC_H */
