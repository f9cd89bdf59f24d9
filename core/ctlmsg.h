/* core/ctlmsg.h - the bytes of the control protocol: a bounded JSON reader and writer, and
 * the check of a purge URL.
 *
 * The control socket (workers/control.h) and cwctl (workers/ctlclient.h) exchange one JSON
 * object per line, at most CW_LIMIT_CTL_LINE_BYTES a request and CW_LIMIT_CTL_REPLY_BYTES a
 * reply, each carrying "v": CW_CTLMSG_VERSION; docs/OPERATIONS.md lists the commands. The
 * reader is jsmn-shaped: it splits a text into a flat array of tokens the caller provides
 * (no allocation, no recursion: nesting is tracked on a fixed stack of CW_CTLMSG_DEPTH_MAX)
 * and never copies; strings are unescaped only when asked for. The writer appends to a
 * fixed buffer the caller owns and records overflow instead of failing each call. Pure: no
 * I/O, no clock; owns nothing. */
#ifndef CW_CTLMSG_H
#define CW_CTLMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

#define CW_CTLMSG_VERSION   1  /* "v" of every request and reply */
#define CW_CTLMSG_DEPTH_MAX 16 /* objects and arrays open at once */

enum cw_ctlmsg_kind {
    CW_CTLMSG_OBJECT = 0,
    CW_CTLMSG_ARRAY,
    CW_CTLMSG_STRING, /* start..end: the bytes between the quotes, still escaped */
    CW_CTLMSG_NUMBER,
    CW_CTLMSG_TRUE,
    CW_CTLMSG_FALSE,
    CW_CTLMSG_NULL,
};

/* One value, in document order (an object's members follow it as key, value, key, ...). */
struct cw_ctlmsg_tok {
    uint32_t kind;  /* enum cw_ctlmsg_kind */
    uint32_t start; /* byte offsets into the parsed text */
    uint32_t end;
    uint32_t next; /* the index of the token after this value's whole subtree */
};

/* Parses the len bytes at p (one JSON value, surrounded by optional whitespace) into tok[0..max):
 * 0 and *count; -EBADMSG for text that is not JSON (or holds a control byte in a string, or
 * is longer than UINT32_MAX); -ENOSPC past max tokens or CW_CTLMSG_DEPTH_MAX levels. */
CW_MUST_CHECK int cw_ctlmsg_parse(const char *p, size_t len, struct cw_ctlmsg_tok *tok, size_t max,
                                  size_t *count);

/* The index of the value of member key in the object at tok[obj], or -ENOENT (also when
 * tok[obj] is not an object). Keys are compared as written (an escaped key never matches). */
int cw_ctlmsg_find(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj, const char *key);

/* Unescapes the string at tok[i] into out (NUL-terminated): 0 and *len (may be NULL);
 * -EINVAL when it is not a string; -ENOSPC when it does not fit in size bytes; -EBADMSG for a
 * bad escape or an escaped NUL. \uXXXX is written as UTF-8 (surrogate pairs joined). */
CW_MUST_CHECK int cw_ctlmsg_str(const char *p, const struct cw_ctlmsg_tok *tok, size_t i, char *out,
                                size_t size, size_t *len);
/* The integer at tok[i]: 0 and *out; -EINVAL when it is not a number or not an integer in
 * int64_t's range. */
CW_MUST_CHECK int cw_ctlmsg_int(const char *p, const struct cw_ctlmsg_tok *tok, size_t i,
                                int64_t *out);
/* The number at tok[i] as a double (0 when it is not a number). */
double cw_ctlmsg_num(const char *p, const struct cw_ctlmsg_tok *tok, size_t i);
/* True when tok[i] is true. */
bool cw_ctlmsg_is_true(const struct cw_ctlmsg_tok *tok, size_t i);

/* Convenience lookups on the object at tok[obj]: the member's value or def when it is
 * absent or of another kind. cw_ctlmsg_get_str() copies at most size - 1 bytes (a longer or
 * badly escaped value gives def). */
int64_t cw_ctlmsg_get_int(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj,
                          const char *key, int64_t def);
bool cw_ctlmsg_get_bool(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj, const char *key,
                        bool def);
const char *cw_ctlmsg_get_str(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj,
                              const char *key, char *out, size_t size, const char *def);

/* A fixed output buffer: p (cap bytes, the caller's), len used; overflow set once an append
 * did not fit (the text is then cut and must not be sent). Always NUL-terminated when cap > 0. */
struct cw_ctlmsg_buf {
    char *p;
    size_t len;
    size_t cap;
    bool overflow;
};

/* Appends printf-style text as is. */
void cw_ctlmsg_put(struct cw_ctlmsg_buf *b, const char *fmt, ...) CW_PRINTF(2, 3);
/* Appends s (len bytes; need not end in NUL) as a quoted JSON string: '"' and '\' escaped,
 * control bytes as \n, \t or \u00XX, every other byte as it is. */
void cw_ctlmsg_put_str(struct cw_ctlmsg_buf *b, const char *s, size_t len);

/* Splits a purge URL "http://host[:port][/path][?query]" into host ("host[:port]", as a
 * client's Host field would say it) and target ("/path?query"; "/" when the URL has no path).
 * 0; -EINVAL for another scheme, an empty host or one with bytes no DNS name or address
 * literal has, a fragment, whitespace or control bytes, or a URL longer than
 * CW_LIMIT_URL_BYTES. The parts point into url. */
CW_MUST_CHECK int cw_ctlmsg_split_url(struct cw_str url, struct cw_str *host,
                                      struct cw_str *target);

#endif /* CW_CTLMSG_H */
