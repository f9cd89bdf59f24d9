/* core/path.c - request path normalisation and absolute-form targets; see core/path.h.
 *
 * cw_path_normalize() needs no stack of segments and no scratch buffer: walking the
 * segments from the right, a ".." cancels the next normal segment to its left, so one
 * counter of pending ".." decides which segments survive. A first walk sums the output
 * length (so that -ENOSPC is about the result, not the input), a second writes the
 * surviving segments from the end of out backwards. */
#include "core/path.h"

#include <errno.h>
#include <string.h>

#define PATH_PORT_MAX 65535

static int path_hex(unsigned char c);
static bool path_is_unreserved(unsigned char c);
static bool path_is_sub_delim(unsigned char c);
static bool path_is_bad_raw(unsigned char c);
static int path_escape(const char *p, size_t n, size_t i);
static int path_check(const char *p, size_t len);
static int path_seg_dots(const char *s, size_t n);
static size_t path_seg_len(const char *s, size_t n);
static void path_seg_put(const char *s, size_t n, char *out);
static int path_walk(const char *p, size_t len, char *out, size_t total, size_t *need);
static bool path_is_ip_literal(const char *p, size_t n);
static bool path_is_port(const char *p, size_t n);
static bool path_is_authority(const char *p, size_t n);

/* The value of a hex digit, or -1. */
static int path_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 3986 §2.3: escapes of these bytes mean the bytes themselves (§6.2.2.2). */
static bool path_is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 3986 §2.2 sub-delims. */
static bool path_is_sub_delim(unsigned char c)
{
    return c != 0 && strchr("!$&'()*+,;=", c) != NULL;
}

/* Bytes that no path in a request target holds: controls, SP and DEL end the request line
 * or smuggle one, '?' starts the query (the caller should have split it off), and '#' is
 * never sent (RFC 9112 §3.2). */
static bool path_is_bad_raw(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || c == '?' || c == '#';
}

/* The byte escaped at p[i] == '%' (0..255), or -1 when fewer than two hex digits follow. */
static int path_escape(const char *p, size_t n, size_t i)
{
    int hi, lo;

    if (n - i < 3) return -1;
    hi = path_hex((unsigned char)p[i + 1]);
    lo = path_hex((unsigned char)p[i + 2]);
    if (hi < 0 || lo < 0) return -1;
    return hi * 16 + lo;
}

/* 0 when p starts with '/', every escape is complete and not %00, and no byte is one that
 * path_is_bad_raw() refuses; else -EINVAL. */
static int path_check(const char *p, size_t len)
{
    if (len == 0 || p[0] != '/') return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (path_is_bad_raw(c)) return -EINVAL;
        if (c == '%') {
            if (path_escape(p, len, i) <= 0) return -EINVAL;
            i += 2;
        }
    }
    return 0;
}

/* 1 when the segment decodes to ".", 2 for "..", else 0 (empty or normal). Escapes are
 * already checked. */
static int path_seg_dots(const char *s, size_t n)
{
    int dots = 0;

    for (size_t i = 0; i < n && dots <= 2;) {
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '%' && path_escape(s, n, i) == '.') {
            i += 3;
        } else {
            return 0;
        }
        dots++;
    }
    return dots <= 2 ? dots : 0;
}

/* Length of the segment once normalised: an escaped unreserved byte shrinks to one. */
static size_t path_seg_len(const char *s, size_t n)
{
    size_t out = 0;

    for (size_t i = 0; i < n; out++) {
        if (s[i] == '%') {
            out += path_is_unreserved((unsigned char)path_escape(s, n, i)) ? 0 : 2;
            i += 3;
        } else {
            i++;
        }
    }
    return out;
}

/* Writes the normalised segment (path_seg_len(s, n) bytes) at out. */
static void path_seg_put(const char *s, size_t n, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t w = 0;

    for (size_t i = 0; i < n;) {
        int c;
        if (s[i] != '%') {
            out[w++] = s[i++];
            continue;
        }
        c = path_escape(s, n, i);
        if (path_is_unreserved((unsigned char)c)) {
            out[w++] = (char)c;
        } else {
            out[w++] = '%';
            out[w++] = digits[c >> 4];
            out[w++] = digits[c & 0xf];
        }
        i += 3;
    }
}

/* Walks the segments of the checked path p from the right. With out NULL, sums the output
 * length into *need; otherwise writes the output, total bytes, into out. -EINVAL when a
 * ".." is left with no segment to cancel (it would climb above the root). */
static int path_walk(const char *p, size_t len, char *out, size_t total, size_t *need)
{
    size_t end = len;
    size_t w = total;
    size_t n = 0;
    size_t pending = 0;
    bool last = true;

    while (end > 0) {
        size_t slash = end - 1;
        const char *seg;
        size_t seg_len, put;
        int dots;

        while (slash > 0 && p[slash] != '/') {
            slash--;
        }
        seg = p + slash + 1;
        seg_len = end - slash - 1;
        dots = path_seg_dots(seg, seg_len);
        /* A "." or ".." at the end leaves the empty segment after it (RFC 3986 §5.2.4 C, D). */
        if (dots > 0 || pending == 0) {
            put = dots > 0 ? (last ? 1 : 0) : 1 + path_seg_len(seg, seg_len);
            n += put;
            if (out != NULL && put > 0) {
                w -= put;
                out[w] = '/';
                if (dots == 0) path_seg_put(seg, seg_len, out + w + 1);
            }
        }
        if (dots == 2) {
            pending++;
        } else if (dots == 0 && pending > 0) {
            pending--;
        }
        last = false;
        end = slash;
    }
    if (pending > 0) return -EINVAL;
    *need = n;
    return 0;
}

bool cw_path_is_normal(const char *p, size_t len)
{
    size_t seg = 1; /* where the current segment starts */

    if (p == NULL || len == 0 || p[0] != '/') return false;
    for (size_t i = 1; i <= len; i++) {
        if (i < len) {
            unsigned char c = (unsigned char)p[i];
            if (c == '%' || path_is_bad_raw(c)) return false;
            if (c != '/') continue;
        }
        if (path_seg_dots(p + seg, i - seg) != 0) return false;
        seg = i + 1;
    }
    return true;
}

int cw_path_normalize(const char *p, size_t len, char *out, size_t cap, size_t *out_len)
{
    size_t need = 0;
    size_t wrote = 0;
    int rc;

    if (p == NULL) return -EINVAL;
    rc = path_check(p, len);
    if (rc < 0) return rc;
    rc = path_walk(p, len, NULL, 0, &need);
    if (rc < 0) return rc;
    if (need > cap) return -ENOSPC;
    rc = path_walk(p, len, out, need, &wrote);
    if (rc < 0) return rc;
    *out_len = wrote;
    return 0;
}

/* "[" IPv6address "]" (RFC 3986 §3.2.2), by its bytes: hex digits, ':' and '.' (an
 * embedded IPv4 tail). IPvFuture is not accepted. */
static bool path_is_ip_literal(const char *p, size_t n)
{
    if (n < 3 || p[0] != '[' || p[n - 1] != ']') return false;
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (path_hex(c) < 0 && c != ':' && c != '.') return false;
    }
    return true;
}

/* 1 to 5 digits, at most 65535. RFC 3986 allows an empty port, but RFC 9110 §4.2.1 says a
 * sender must not send one, and accepting it would give "h:" and "h" two keys. */
static bool path_is_port(const char *p, size_t n)
{
    unsigned v = 0;

    if (n == 0 || n > 5) return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v <= PATH_PORT_MAX;
}

/* host[":"port] with a non-empty host; no userinfo. */
static bool path_is_authority(const char *p, size_t n)
{
    size_t host_len = 0;

    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (close == NULL) return false;
        host_len = (size_t)(close - p) + 1;
        if (!path_is_ip_literal(p, host_len)) return false;
    } else {
        while (host_len < n && p[host_len] != ':') {
            unsigned char c = (unsigned char)p[host_len];
            if (c == '%') {
                if (path_escape(p, n, host_len) <= 0) return false;
                host_len += 3;
                continue;
            }
            if (!path_is_unreserved(c) && !path_is_sub_delim(c)) return false;
            host_len++;
        }
        if (host_len == 0) return false;
    }
    if (host_len == n) return true;
    return p[host_len] == ':' && path_is_port(p + host_len + 1, n - host_len - 1);
}

int cw_path_split_absolute(struct cw_str target, struct cw_str *scheme, struct cw_str *authority,
                           struct cw_str *rest)
{
    const char *colon = target.len > 0 ? memchr(target.p, ':', target.len) : NULL;
    struct cw_str sch;
    size_t auth_at, auth_end;

    if (colon == NULL) return -EINVAL;
    sch = cw_str_make(target.p, (size_t)(colon - target.p));
    if (!cw_str_eq_ci(sch, CW_STR_LIT("http")) && !cw_str_eq_ci(sch, CW_STR_LIT("https"))) {
        return -EINVAL;
    }
    auth_at = sch.len + 3;
    if (target.len < auth_at || memcmp(colon, "://", 3) != 0) return -EINVAL;
    auth_end = auth_at;
    while (auth_end < target.len && target.p[auth_end] != '/' && target.p[auth_end] != '?') {
        auth_end++;
    }
    if (!path_is_authority(target.p + auth_at, auth_end - auth_at)) return -EINVAL;
    *scheme = sch;
    *authority = cw_str_make(target.p + auth_at, auth_end - auth_at);
    *rest = cw_str_make(target.p + auth_end, target.len - auth_end);
    return 0;
}
