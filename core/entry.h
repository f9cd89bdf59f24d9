/* core/entry.h - the versioned encoding of one cached response (L1 value and L2 value).
 *
 * Layout (version 2): a fixed struct cw_entry_hdr (native endianness: L1 never leaves the
 * host, and every node of a fleet runs the same build), then the full cache key, then the
 * request part, then the header block, then the body. A record is
 * { uint16 name_len, uint32 value_len, name bytes, value bytes } with no padding (read with
 * memcpy: the bytes may be unaligned). The header block is header_count records of the
 * response's stored headers.
 *
 * The request part (req_len bytes) is what a background refresh needs to send the request
 * again, so that nobody parses the key string back into a request: the Host the origin was
 * sent (req_host_len bytes), the request target as routed and keyed (req_target_len bytes,
 * origin-form: path and whole query), then req_count records of the request fields the
 * entry was chosen by, with the values the origin was sent: the route's key_headers, Cookie
 * when the route keys on it, and the response's Vary fields. A field the request did not
 * carry has no record. Names are RFC 9110 tokens and values carry no NUL, CR or LF, so every
 * record can go on the wire as a field line as it is; host and target carry none of those
 * nor SP. An entry made without a request (req NULL) has an empty part: it cannot be
 * refreshed.
 * Pure; decode borrows the bytes it was given and checks every length against the bytes
 * present before use (a bad value is -EBADMSG, never a crash). */
#ifndef CW_ENTRY_H
#define CW_ENTRY_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/common.h"

#define CW_ENTRY_MAGIC   0x31455743u /* "CWE1" little-endian */
#define CW_ENTRY_VERSION 2           /* 2: the request part */

enum cw_entry_flag {
    CW_ENTRY_ALWAYS_REVALIDATE = 1u << 0, /* no-cache: validate before each use */
    CW_ENTRY_MUST_REVALIDATE = 1u << 1,   /* never served stale */
    CW_ENTRY_SOFT_PURGED = 1u << 2,       /* purged softly: stale, still usable for swr/sie */
    CW_ENTRY_HEURISTIC = 1u << 3,         /* freshness from route/heuristic, not the origin */
};

struct cw_entry_hdr {
    uint32_t magic;
    uint16_t version;
    uint16_t status;
    uint32_t flags;
    uint32_t key_len;
    uint32_t headers_len; /* bytes of the header block */
    uint32_t header_count;
    uint64_t body_len;
    int64_t stored_at_ms;     /* wall clock */
    int64_t response_time_ms; /* wall clock, §4.2.3 */
    int64_t corrected_initial_age_ms;
    int64_t fresh_until_ms;
    int64_t swr_until_ms;
    int64_t sie_until_ms;
    /* adaptive TTL state (issue: refresher) */
    int64_t ttl_ms;        /* current learnt ttl, 0 = not adaptive */
    int64_t last_check_ms; /* last validation against the origin */
    uint32_t checks;       /* validations observed */
    uint32_t changes;      /* of which found the content changed */
    uint64_t body_hash;    /* 64-bit hash of the body, for change detection */
    int64_t observed_ms;   /* adaptive: time covered by the checks, for the rate estimate */
    /* the request part (version 2) */
    uint32_t req_len;        /* bytes of the request part: host, target, records */
    uint32_t req_count;      /* request field records */
    uint32_t req_host_len;   /* <= CW_LIMIT_HOST_BYTES */
    uint32_t req_target_len; /* <= CW_LIMIT_URL_BYTES */
};
static_assert(sizeof(struct cw_entry_hdr) == 136, "entry header layout is pinned");

struct cw_entry_header {
    struct cw_str name;
    struct cw_str value;
};

/* The request an entry was filled for (see the request part above). Borrowed strings. */
struct cw_entry_req {
    struct cw_str host;                   /* Host as sent to the origin */
    struct cw_str target;                 /* the request target as routed and keyed ("/a/b?x=1") */
    const struct cw_entry_header *fields; /* may be NULL when n is 0 */
    size_t n;
};

/* A decoded entry: the header copied out (so it is aligned), the rest borrowed from the
 * bytes given to cw_entry_decode() and valid as long as they are. */
struct cw_entry_view {
    struct cw_entry_hdr h;
    struct cw_str key;
    struct cw_str req_host;   /* empty for an entry without a request part */
    struct cw_str req_target; /* empty for an entry without a request part */
    const char *req_fields;   /* req_fields_len bytes of h.req_count records */
    size_t req_fields_len;
    const char *headers;
    size_t headers_len;
    struct cw_str body;
};

/* Total encoded size of an entry: 0 and *out, or -EOVERFLOW (sizes past SIZE_MAX) or
 * -EINVAL (the key, a header name or value, the count or the block over core/limits.h, or
 * an empty header name; for req, a host, target, field count, name, value or block over
 * core/limits.h, a name that is not a token, or a byte the request part forbids). hdrs may
 * be NULL when n is 0; req may be NULL (no request part). */
CW_MUST_CHECK int cw_entry_size(struct cw_str key, const struct cw_entry_req *req,
                                const struct cw_entry_header *hdrs, size_t n, size_t body_len,
                                size_t *out);
/* Encodes into buf (size bytes, from cw_entry_size()). h's timing, status, flags and
 * adaptive fields are copied; magic, version and lengths are set here. 0, -ENOSPC
 * when size is too small, -EINVAL as cw_entry_size() or for a status outside 100..999.
 * Exactly cw_entry_size() bytes are written; decode needs exactly that many. */
CW_MUST_CHECK int cw_entry_encode(const struct cw_entry_hdr *h, struct cw_str key,
                                  const struct cw_entry_req *req,
                                  const struct cw_entry_header *hdrs, size_t n, struct cw_str body,
                                  void *buf, size_t size);
/* Validates and decodes: 0 and *out, or -EBADMSG (short, wrong magic or version, any
 * length not matching the bytes present, a header or request record running past its
 * block, a status outside 100..999, anything over the limits cw_entry_size() enforces or a
 * request part it would refuse). */
CW_MUST_CHECK int cw_entry_decode(const void *p, size_t len, struct cw_entry_view *out);
/* Iterates the request field records: *off starts at 0; true and the next (name, value),
 * or false at the end. Only for views from cw_entry_decode(). */
bool cw_entry_req_next(const struct cw_entry_view *v, size_t *off, struct cw_str *name,
                       struct cw_str *value);
/* Iterates the header block: *off starts at 0; true and the next (name, value), or false
 * at the end. Only for views from cw_entry_decode(), which validated the records. */
bool cw_entry_header_next(const struct cw_entry_view *v, size_t *off, struct cw_str *name,
                          struct cw_str *value);
/* First header named name (case-insensitive): true and *value, or false. */
bool cw_entry_header_find(const struct cw_entry_view *v, struct cw_str name, struct cw_str *value);

#endif /* CW_ENTRY_H */
