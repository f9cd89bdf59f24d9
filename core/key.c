/* core/key.c - cache key normalisation and SipHash-2-4-128; see core/key.h. */
#include "core/key.h"

#include <errno.h>
#include <string.h>

#include "core/config.h"
#include "core/limits.h"

/* One query parameter of the request target: the whole "name=value" bytes and the length
 * of its name part. */
struct key_param {
    const char *p;
    size_t len;
    size_t name_len;
};

static inline unsigned char key_lower(unsigned char c);
static bool key_is_scheme(struct cw_str scheme);
static bool key_is_host_byte(unsigned char c);
static bool key_is_space(unsigned char c);
static int key_put(char *buf, size_t cap, size_t *len, const char *p, size_t n);
static int key_put_lower(char *buf, size_t cap, size_t *len, const char *p, size_t n);
static bool key_param_listed(const struct cw_config_route *route, const char *name, size_t n);
static int key_param_cmp(const struct key_param *a, const struct key_param *b);
static bool key_param_next(struct cw_str query, size_t *at, struct key_param *prm);
static bool key_param_is_kept(const struct cw_config_route *route, const struct key_param *prm);
static int key_query_split(const struct cw_config_route *route, struct cw_str query,
                           struct key_param *params, size_t *count);
static void key_params_sort(struct key_param *params, size_t count);
static int key_query_put(const struct cw_config_route *route, struct cw_str query, char *buf,
                         size_t cap, size_t *len);
static inline uint64_t key_rotl(uint64_t x, int b);
static inline uint64_t key_load_le64(const uint8_t *p);
static inline void key_store_le64(uint8_t *p, uint64_t v);

static inline unsigned char key_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). Anything else, "://" above
 * all, would let one key string be read as two different (scheme, host) pairs. */
static bool key_is_scheme(struct cw_str scheme)
{
    if (scheme.len == 0) return false;
    for (size_t i = 0; i < scheme.len; i++) {
        unsigned char c = (unsigned char)scheme.p[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (alpha) continue;
        if (i == 0 || !((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')) return false;
    }
    return true;
}

/* Bytes a DNS name, an IPv4 literal, a bracketed IPv6 literal or a ":port" may hold. */
static bool key_is_host_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == ':' || c == '[' || c == ']';
}

/* Folded to one space in key header values. CR and LF are included so that a value can
 * never start a new "\n<name>:" record of its own. */
static bool key_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Appends n bytes at buf[*len] when they fit in cap: 0, or -ENOSPC with *len unchanged. */
static int key_put(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
    if (n > cap - *len) return -ENOSPC;
    if (n > 0) memcpy(buf + *len, p, n);
    *len += n;
    return 0;
}

static int key_put_lower(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
    if (n > cap - *len) return -ENOSPC;
    for (size_t i = 0; i < n; i++) {
        buf[*len + i] = (char)key_lower((unsigned char)p[i]);
    }
    *len += n;
    return 0;
}

/* True when the parameter name (exact bytes, as sent) is one of the route's query_keep. */
static bool key_param_listed(const struct cw_config_route *route, const char *name, size_t n)
{
    for (size_t i = 0; i < route->query_keep_count; i++) {
        const char *k = route->query_keep[i];
        if (k != NULL && strlen(k) == n && memcmp(k, name, n) == 0) return true;
    }
    return false;
}

/* Orders by name bytes, a proper prefix first. Equal names compare equal so that the sort
 * keeps their order as sent ("a=1&a=2" and "a=2&a=1" are different requests). */
static int key_param_cmp(const struct key_param *a, const struct key_param *b)
{
    size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = n > 0 ? memcmp(a->p, b->p, n) : 0;

    if (c != 0) return c;
    if (a->name_len == b->name_len) return 0;
    return a->name_len < b->name_len ? -1 : 1;
}

/* Reads the parameter of query that starts at *at into *prm and moves *at past its '&':
 * false once every parameter is read (*at > query.len). Empty parameters ("a&&b", a final
 * '&') come back with len 0. The one parser of query strings: the key and the query sent to
 * the origin (cw_key_forward_query()) must split alike, or a parameter could be forwarded
 * without being keyed. query.len must be > 0. */
static bool key_param_next(struct cw_str query, size_t *at, struct key_param *prm)
{
    size_t start = *at;
    const char *amp;
    const char *eq;
    size_t end;

    if (start > query.len) return false;
    amp = start < query.len ? memchr(query.p + start, '&', query.len - start) : NULL;
    end = amp != NULL ? (size_t)(amp - query.p) : query.len;
    prm->p = query.p + start;
    prm->len = end - start;
    prm->name_len = prm->len;
    eq = prm->len > 0 ? memchr(prm->p, '=', prm->len) : NULL;
    if (eq != NULL) prm->name_len = (size_t)(eq - prm->p);
    *at = end + 1;
    return true;
}

/* True when a SORT or LIST key keeps the parameter: it is not empty and, for LIST, its name
 * is one of the route's query_keep. */
static bool key_param_is_kept(const struct cw_config_route *route, const struct key_param *prm)
{
    return prm->len > 0 &&
           (route->query != CW_CONFIG_QUERY_LIST || key_param_listed(route, prm->p, prm->name_len));
}

/* Splits query on '&' into params, dropping empty parameters and, for LIST, parameters not
 * named by the route: 0 and *count, or -ENOSPC past CW_KEY_QUERY_PARAMS_MAX kept params. */
static int key_query_split(const struct cw_config_route *route, struct cw_str query,
                           struct key_param *params, size_t *count)
{
    struct key_param prm;
    size_t n = 0;
    size_t at = 0;

    while (key_param_next(query, &at, &prm)) {
        if (!key_param_is_kept(route, &prm)) continue;
        if (n == CW_KEY_QUERY_PARAMS_MAX) return -ENOSPC;
        params[n++] = prm;
    }
    *count = n;
    return 0;
}

/* Insertion sort: stable, no allocation, and at most CW_KEY_QUERY_PARAMS_MAX^2/2 compares
 * (a few µs at the cap; real queries have a handful of parameters). */
static void key_params_sort(struct key_param *params, size_t count)
{
    for (size_t i = 1; i < count; i++) {
        struct key_param cur = params[i];
        size_t j = i;
        while (j > 0 && key_param_cmp(&params[j - 1], &cur) > 0) {
            params[j] = params[j - 1];
            j--;
        }
        params[j] = cur;
    }
}

/* Appends "?<normalised query>" unless the normalised query is empty. */
static int key_query_put(const struct cw_config_route *route, struct cw_str query, char *buf,
                         size_t cap, size_t *len)
{
    struct key_param params[CW_KEY_QUERY_PARAMS_MAX];
    size_t count = 0;
    int rc;

    if (route == NULL || route->query == CW_CONFIG_QUERY_KEEP) {
        if (query.len == 0) return 0;
        rc = key_put(buf, cap, len, "?", 1);
        if (rc < 0) return rc;
        return key_put(buf, cap, len, query.p, query.len);
    }
    if (route->query == CW_CONFIG_QUERY_IGNORE || query.len == 0) return 0;

    rc = key_query_split(route, query, params, &count);
    if (rc < 0) return rc;
    key_params_sort(params, count);
    for (size_t i = 0; i < count; i++) {
        rc = key_put(buf, cap, len, i == 0 ? "?" : "&", 1);
        if (rc < 0) return rc;
        rc = key_put(buf, cap, len, params[i].p, params[i].len);
        if (rc < 0) return rc;
    }
    return 0;
}

int cw_key_build(const struct cw_config_route *route, struct cw_str scheme, struct cw_str host,
                 struct cw_str path_query, char *buf, size_t size, size_t *len)
{
    size_t cap = size < CW_LIMIT_KEY_BYTES ? size : CW_LIMIT_KEY_BYTES;
    const char *qmark = path_query.len > 0 ? memchr(path_query.p, '?', path_query.len) : NULL;
    struct cw_str path = path_query;
    struct cw_str query = {NULL, 0};
    size_t n = 0;
    int rc;

    if (!key_is_scheme(scheme)) return -EINVAL;
    for (size_t i = 0; i < host.len; i++) {
        if (!key_is_host_byte((unsigned char)host.p[i])) return -EINVAL;
    }
    /* The default port names the same origin as no port (RFC 9110 §4.2.1, §4.2.2). */
    if (cw_str_eq_ci(scheme, CW_STR_LIT("http")) && host.len > 3 &&
        memcmp(host.p + host.len - 3, ":80", 3) == 0) {
        host.len -= 3;
    } else if (cw_str_eq_ci(scheme, CW_STR_LIT("https")) && host.len > 4 &&
               memcmp(host.p + host.len - 4, ":443", 4) == 0) {
        host.len -= 4;
    }
    if (qmark != NULL) {
        path.len = (size_t)(qmark - path_query.p);
        query.p = qmark + 1;
        query.len = path_query.len - path.len - 1;
    }

    rc = key_put_lower(buf, cap, &n, scheme.p, scheme.len);
    if (rc < 0) return rc;
    rc = key_put(buf, cap, &n, "://", 3);
    if (rc < 0) return rc;
    rc = key_put_lower(buf, cap, &n, host.p, host.len);
    if (rc < 0) return rc;
    rc = key_put(buf, cap, &n, path.p, path.len);
    if (rc < 0) return rc;
    rc = key_query_put(route, query, buf, cap, &n);
    if (rc < 0) return rc;
    *len = n;
    return 0;
}

int cw_key_forward_query(const struct cw_config_route *rt, struct cw_str query, char *out,
                         size_t cap, size_t *out_len)
{
    struct key_param prm;
    size_t n = 0;
    size_t at = 0;
    int rc;

    if (rt == NULL || rt->query == CW_CONFIG_QUERY_KEEP || rt->query == CW_CONFIG_QUERY_SORT) {
        rc = key_put(out, cap, &n, query.p, query.len);
        if (rc < 0) return rc;
    } else if (rt->query == CW_CONFIG_QUERY_LIST && query.len > 0) {
        while (key_param_next(query, &at, &prm)) {
            if (!key_param_is_kept(rt, &prm)) continue;
            if (n > 0) {
                rc = key_put(out, cap, &n, "&", 1);
                if (rc < 0) return rc;
            }
            rc = key_put(out, cap, &n, prm.p, prm.len);
            if (rc < 0) return rc;
        }
    }
    *out_len = n;
    return 0;
}

int cw_key_append_header(char *buf, size_t size, size_t *len, struct cw_str name,
                         struct cw_str value)
{
    size_t cap = size < CW_LIMIT_KEY_BYTES ? size : CW_LIMIT_KEY_BYTES;
    size_t n = *len;
    size_t b = 0;
    size_t e = value.len;
    bool in_space = false;
    int rc;

    if (name.len == 0) return -EINVAL;
    for (size_t i = 0; i < name.len; i++) {
        if (!cw_is_tchar((unsigned char)name.p[i]))
            return -EINVAL; /* else it could forge "\n" or ":" */
    }
    if (n > cap) return -ENOSPC;

    while (b < e && key_is_space((unsigned char)value.p[b])) {
        b++;
    }
    while (e > b && key_is_space((unsigned char)value.p[e - 1])) {
        e--;
    }

    rc = key_put(buf, cap, &n, "\n", 1);
    if (rc < 0) return rc;
    rc = key_put_lower(buf, cap, &n, name.p, name.len);
    if (rc < 0) return rc;
    rc = key_put(buf, cap, &n, ":", 1);
    if (rc < 0) return rc;
    for (size_t i = b; i < e; i++) {
        unsigned char c = (unsigned char)value.p[i];
        if (key_is_space(c)) {
            in_space = true;
            continue;
        }
        if (in_space) {
            rc = key_put(buf, cap, &n, " ", 1);
            if (rc < 0) return rc;
            in_space = false;
        }
        rc = key_put(buf, cap, &n, value.p + i, 1);
        if (rc < 0) return rc;
    }
    *len = n;
    return 0;
}

static inline uint64_t key_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline uint64_t key_load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

static inline void key_store_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

#define KEY_SIPROUND                                                                               \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = key_rotl(v1, 13);                                                                     \
        v1 ^= v0;                                                                                  \
        v0 = key_rotl(v0, 32);                                                                     \
        v2 += v3;                                                                                  \
        v3 = key_rotl(v3, 16);                                                                     \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = key_rotl(v3, 21);                                                                     \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = key_rotl(v1, 17);                                                                     \
        v1 ^= v2;                                                                                  \
        v2 = key_rotl(v2, 32);                                                                     \
    } while (0)

/* SipHash-2-4 with the 128-bit finalisation of the reference implementation (Aumasson and
 * Bernstein, github.com/veorq/SipHash siphash.c with outlen 16): out->h is the two 64-bit
 * halves in little-endian order, as the reference's vectors_sip128 table lists them. */
void cw_key_hash(const uint8_t secret[16], const char *p, size_t len, struct cw_key *out)
{
    const uint8_t *in = (const uint8_t *)p;
    uint64_t k0 = key_load_le64(secret);
    uint64_t k1 = key_load_le64(secret + 8);
    uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k0;
    uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k1;
    uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k0;
    uint64_t v3 = UINT64_C(0x7465646279746573) ^ k1;
    uint64_t b = (uint64_t)len << 56;
    size_t full = len - (len % 8);
    uint8_t tail[8] = {0};

    v1 ^= 0xee; /* 128-bit output variant */
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = key_load_le64(in + i);
        v3 ^= m;
        KEY_SIPROUND;
        KEY_SIPROUND;
        v0 ^= m;
    }
    if (len > full) memcpy(tail, in + full, len - full);
    b |= key_load_le64(tail);
    v3 ^= b;
    KEY_SIPROUND;
    KEY_SIPROUND;
    v0 ^= b;

    v2 ^= 0xee;
    KEY_SIPROUND;
    KEY_SIPROUND;
    KEY_SIPROUND;
    KEY_SIPROUND;
    key_store_le64(out->h, v0 ^ v1 ^ v2 ^ v3);

    v1 ^= 0xdd;
    KEY_SIPROUND;
    KEY_SIPROUND;
    KEY_SIPROUND;
    KEY_SIPROUND;
    key_store_le64(out->h + 8, v0 ^ v1 ^ v2 ^ v3);
}

void cw_key_hex(const struct cw_key *k, char out[33])
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < sizeof(k->h); i++) {
        out[2 * i] = digits[k->h[i] >> 4];
        out[2 * i + 1] = digits[k->h[i] & 0xf];
    }
    out[32] = '\0';
}
