/* core/path.h - request paths: RFC 3986 normalisation and absolute-form targets.
 *
 * Routes match, keys are built and origins are asked on the normalised path, so that
 * "/public/../admin" or "/public/%2e%2e/admin" reaches the route of "/admin", not the one of
 * "/public/", and "/%7euser" and "/~user" share one cache entry. Choices, beyond RFC 3986:
 * - a path that climbs above the root ("/..", "/a/../../b") is rejected, not clamped as RFC
 *   3986 §5.2.4 would: no client has a reason to send one, and clamping hides probes;
 * - empty segments are kept ("/a//b" stays): origins differ on them, and merging them
 *   (nginx merge_slashes) would make two targets one entry that the origin may tell apart;
 * - %2F is data, not a separator: "/a%2Fb" is one segment, so "/a%2Fb/../c" is "/c";
 * - raw bytes other than the ones rejected below pass through unchanged (raw UTF-8, '|',
 *   '\\': note that '\\' is not a separator here, so an origin that treats it as '/'
 *   needs such targets refused in front of it).
 * Pure; owns nothing; thread-safe. */
#ifndef CW_PATH_H
#define CW_PATH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/common.h"

/* Normalises the path part (no query) of an origin-form request target p[0..len): RFC 3986
 * §6.2.2.1 hex digits of escapes upper-cased, §6.2.2.2 escapes of unreserved bytes
 * (ALPHA DIGIT - . _ ~) decoded, other escapes (%2F, %20, %C3...) kept; then §5.2.4
 * remove_dot_segments on the decoded segments, so "%2e%2e" counts as "..". A final "." or
 * ".." leaves a trailing slash ("/a/b/.." is "/a/").
 * Writes out[0..*out_len) (not NUL-terminated; cap bytes at most; the output is never
 * longer than len) and returns 0, or -EINVAL when p does not start with '/', holds a bad
 * escape ("%zz", "%2" at the end), an escaped NUL (%00), a raw control byte, space, DEL,
 * '?' or '#', or climbs above the root; -ENOSPC when out is too small (out is then
 * unspecified). Idempotent: normalising the output again yields it unchanged. */
CW_MUST_CHECK int cw_path_normalize(const char *p, size_t len, char *out, size_t cap,
                                    size_t *out_len);

/* True when cw_path_normalize() would give p back unchanged, decided in one pass without
 * writing: p starts with '/', has no escape, no byte normalisation refuses and no "." or ".."
 * segment. False says nothing (normalise to find out). For the hit path, where most paths
 * are already normal. */
bool cw_path_is_normal(const char *p, size_t len);

/* Splits an absolute-form request target (RFC 9112 §3.2.2) "scheme://authority[path][?query]"
 * into borrowed ranges of target: 0, or -EINVAL. scheme is "http" or "https" in any case (as
 * sent: compare with cw_str_eq_ci()); authority is host[":"port] with a non-empty host of
 * RFC 3986 reg-name bytes (unreserved, sub-delims, %HH) or an IPv4 address or "[IPv6]",
 * and a port of 1 to 5 digits up to 65535; userinfo ('@') is refused (RFC 9110 §4.2.4).
 * rest is what follows the authority: the path and the query, unchecked (give the path to
 * cw_path_normalize()). When rest is empty or starts with '?', the path is empty, which
 * means "/" (RFC 9110 §4.2.3): the caller puts "/" in front of rest. */
CW_MUST_CHECK int cw_path_split_absolute(struct cw_str target, struct cw_str *scheme,
                                         struct cw_str *authority, struct cw_str *rest);

#endif /* CW_PATH_H */
