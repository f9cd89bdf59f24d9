/* core/key.h - cache keys: the normalised key string and its 128-bit keyed hash.
 *
 * The key string is "<scheme>://<host><path>[?<query>]" with the host lower-cased and the
 * default port removed, the path as sent, and the query normalised by the route
 * (keep | sort | ignore | list). Route key_headers and Vary values are appended as
 * "\n<name>:<normalised value>" (values trimmed, inner whitespace runs folded to one
 * space). The store indexes entries by SipHash-2-4-128 of the string under a per-cache
 * secret, and keeps the string in the entry so that a collision is a miss, never a
 * wrong answer. Pure; owns nothing. */
#ifndef CW_KEY_H
#define CW_KEY_H

#include <stdint.h>

#include "core/common.h"

struct cw_config_route;

struct cw_key {
    uint8_t h[16];
};

/* Query parameters that a SORT or LIST route keeps at most (a fixed array on the stack, so
 * building a key never allocates); a target with more is -ENOSPC, i.e. not cached. Belongs
 * in core/limits.h once that file's owner takes it. */
#define CW_KEY_QUERY_PARAMS_MAX 128

/* Builds the primary key for a request into buf: 0 and *len, or -ENOSPC when it would
 * not fit (size or CW_LIMIT_KEY_BYTES), -EINVAL for a host with bytes no DNS name or
 * address literal has. path_query is the request target as sent ("/a/b?x=1").
 * Allowed host bytes: [A-Za-z0-9._:[]-]; scheme must be an RFC 3986 scheme (-EINVAL
 * otherwise, so that no key string reads as two different origins). route may be NULL (query kept
 * as sent). SORT and LIST drop empty parameters and sort the rest stably by name bytes; more than
 * CW_KEY_QUERY_PARAMS_MAX kept parameters is -ENOSPC. buf is not NUL-terminated, and on
 * failure its bytes are unspecified. */
CW_MUST_CHECK int cw_key_build(const struct cw_config_route *route, struct cw_str scheme,
                               struct cw_str host, struct cw_str path_query, char *buf, size_t size,
                               size_t *len);
/* The query string to send to the origin for route rt: exactly the parameters the key uses,
 * so that no parameter can choose the stored answer without being part of the key (cache
 * poisoning through unkeyed parameters). query and out are without the '?'. KEEP and SORT
 * (and rt NULL): the query as sent; SORT forwards the client's order, since stable sorting by
 * name only merges requests that differ in the order of different names, or in empty
 * parameters. IGNORE: nothing (*out_len 0). LIST: only the parameters named in query_keep,
 * matched on exact name bytes as the key does, in the order sent and joined by '&' (empty
 * parameters dropped). 0 and *out_len, or -ENOSPC when out (cap bytes) is too small. No
 * CW_KEY_QUERY_PARAMS_MAX cap: past it cw_key_build() fails, and nothing is cached. out is
 * not NUL-terminated. */
CW_MUST_CHECK int cw_key_forward_query(const struct cw_config_route *rt, struct cw_str query,
                                       char *out, size_t cap, size_t *out_len);
/* Appends "\n<name>:<normalised value>" at buf[*len]: 0, or -ENOSPC (past size or
 * CW_LIMIT_KEY_BYTES; *len is then unchanged), or -EINVAL when name is empty or not an RFC
 * 9110 token (it could forge the separators). name is lower-cased; value may be empty
 * (header absent); SP, HTAB, CR, LF, VT and FF count as whitespace. */
CW_MUST_CHECK int cw_key_append_header(char *buf, size_t size, size_t *len, struct cw_str name,
                                       struct cw_str value);
/* SipHash-2-4 with 128-bit output of p[0..len) under secret. */
void cw_key_hash(const uint8_t secret[16], const char *p, size_t len, struct cw_key *out);
/* Writes 32 lower-case hex digits and a NUL into out. */
void cw_key_hex(const struct cw_key *k, char out[33]);

#endif /* CW_KEY_H */
