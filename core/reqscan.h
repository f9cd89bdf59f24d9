/* core/reqscan.h - a streaming reader of HTTP/1.1 request framing (RFC 9112).
 *
 * Every byte a client sends goes through one scanner before libmicrohttpd sees it. The
 * scanner follows the stream across request heads and bodies (Content-Length and chunked,
 * trailers included), with pipelining, and with the input split at any byte boundary across
 * calls. It is the one reading of the wire that decides whether the bytes are a sequence of
 * well-formed requests; libmicrohttpd 0.9.75 parses leniently (whitespace before the colon,
 * obs-fold, bare CR, NUL, a second Content-Length), so only bytes the scanner accepted may
 * reach it. The first broken rule stops the scanner for good: the caller answers
 * s->status, delivers the complete requests before s->req_start, and closes the connection.
 *
 * Pure; owns nothing, allocates nothing, keeps no pointer to the bytes fed. The struct is
 * fixed-size: one per connection, used by one thread at a time. Work is O(len) per call;
 * body bytes are skipped in bulk, a whole plain head in one pass, other head bytes in runs by
 * class, and only the bytes that decide go through one switch each. */
#ifndef CW_REQSCAN_H
#define CW_REQSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

struct cw_reqscan {
    uint64_t pos;       /* stream bytes accepted so far; on error, the offset of the bad byte */
    uint64_t req_start; /* where the current request began: the first byte of its request
                         * line, or the end of the last complete request until that line starts.
                         * Bytes before it are complete, well-formed requests. */
    unsigned requests;  /* requests whose head has been completely read */
    bool in_head;       /* from a request line's first byte to the CRLF ending its head */
    bool in_body;       /* from the end of a head to the end of its request's body */
    int status;         /* 0 while the stream is fine; else 400, 414, 431, 501 or 505 */
    const char *reason; /* static text naming the rule broken; NULL while status is 0 */

    /* Private: the scanner's position in the grammar. Read only the fields above. */
    uint8_t state;          /* enum reqscan_state, in reqscan.c */
    uint8_t kind;           /* the field whose value is being read: framing fields are parsed */
    uint8_t sub;            /* position inside a framing field's value */
    uint8_t flags;          /* what this request's head has said so far (REQSCAN_HAS_*) */
    uint8_t version[2];     /* major, minor digit of the request line's HTTP-version */
    uint8_t empty_lines;    /* CRLFs read before the current request line */
    uint8_t tok_len;        /* bytes in tok, saturating at sizeof(tok) + 1 */
    char tok[20];           /* lowercased start of a field name or transfer-coding */
    uint16_t fields;        /* field lines in this head or trailer section */
    uint16_t sub_len;       /* digits of Content-Length or chunk-size, bytes of Host */
    uint32_t count;         /* bytes of the current method, target, name, value or chunk line */
    uint32_t trailer_bytes; /* bytes of the trailer section so far */
    uint64_t content_length;
    uint64_t remaining; /* body or chunk-data bytes still to skip; chunk-size being read */
};

/* Starts a scanner at the beginning of a connection's byte stream. */
void cw_reqscan_init(struct cw_reqscan *s);

/* Reads the next len bytes of the stream (p need not end in NUL and is not kept). Returns 0
 * when every byte read so far is well-formed, even if a request is still incomplete; or
 * -EBADMSG when a rule is broken: s->status and s->reason say which, s->pos is the offset of
 * the offending byte, and s->req_start where its request began. After an error every later
 * call returns -EBADMSG at once and changes nothing. The verdict does not depend on how the
 * stream is split across calls. */
CW_MUST_CHECK int cw_reqscan_feed(struct cw_reqscan *s, const char *p, size_t len);

/* True when the bytes read so far end between two requests (no request is partly read), so
 * the connection may end here without truncating a request. */
bool cw_reqscan_is_idle(const struct cw_reqscan *s);

#endif /* CW_REQSCAN_H */
