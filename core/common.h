/* core/common.h - small definitions every module shares.
 *
 * Owns nothing. Holds the attribute macros, the (pointer, length) byte string used for
 * every byte range that comes from the network, the map or Redis, and the error detail
 * that pure core/ functions hand back instead of logging. */
#ifndef CW_COMMON_H
#define CW_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CW_MUST_CHECK   __attribute__((warn_unused_result))
#define CW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CW_UNUSED       __attribute__((unused))
#define CW_LIKELY(x)    __builtin_expect(!!(x), 1)
#define CW_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define CW_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The release: cachewarpd --version, the supervisor's start line and the version label of
 * cachewarp_build_info on /metrics. Defined here only. */
#define CW_VERSION "0.1.0"

/* A byte range that is never assumed to end in NUL. Borrowed unless a function says
 * otherwise. */
struct cw_str {
    const char *p;
    size_t len;
};

#define CW_STR_LIT(s) ((struct cw_str){(s), sizeof(s) - 1})

static inline struct cw_str cw_str_make(const char *p, size_t len)
{
    struct cw_str s = {p, len};
    return s;
}

static inline struct cw_str cw_str_cstr(const char *p)
{
    struct cw_str s = {p, p ? strlen(p) : 0};
    return s;
}

/* RFC 9110 §5.6.3 OWS: space or horizontal tab. */
static inline bool cw_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 §5.6.2 tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" /
 * "_" / "`" / "|" / "~" / DIGIT / ALPHA: the bytes of a token (a method, a field name). */
static inline bool cw_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

/* Case-insensitive ASCII compare of n bytes at a and b. */
bool cw_bytes_eq_ci(const char *a, const char *b, size_t n);
/* Case-insensitive ASCII compare of two byte ranges. Inline for the length test: most
 * compares are of a field name against names of other lengths. */
static inline bool cw_str_eq_ci(struct cw_str a, struct cw_str b)
{
    return a.len == b.len && cw_bytes_eq_ci(a.p, b.p, a.len);
}
/* Exact compare. */
static inline bool cw_str_eq(struct cw_str a, struct cw_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Error detail from a pure function: where (file, line, setting) and why. A function
 * that fills one returns a negative errno as well. */
struct cw_err {
    char msg[256];
};

/* Formats msg into err (err may be NULL). Always returns; never allocates. */
void cw_err_set(struct cw_err *err, const char *fmt, ...) CW_PRINTF(2, 3);

#endif /* CW_COMMON_H */
