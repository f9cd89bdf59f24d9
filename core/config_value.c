/* core/config_value.c - the config module's value syntax: durations, sizes, address
 * ranges and host:port; see core/config.h. Pure string work, no libconfig. */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/config_int.h"

bool cw_config_is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* Parses 1..5 digits as a port in 1..65535. */
static int config_parse_port(const char *p, size_t len, int *port)
{
    int v = 0;

    if (len == 0 || len > 5) return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return -EINVAL;
        v = v * 10 + (p[i] - '0');
    }
    if (v < 1 || v > 65535) return -EINVAL;
    *port = v;
    return 0;
}

/* Splits "host[:port]", "[v6][:port]" (len bytes) into host (no brackets) and port (0 when
 * absent). need_port makes the port required. The host may be empty. */
int cw_config_split(const char *p, size_t len, bool need_port, char *host, size_t host_size,
                    int *port)
{
    const char *end = p + len, *hp = p, *colon;
    size_t hlen;
    unsigned char v6[16];

    *port = 0;
    if (len > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (close == NULL || (close + 1 < end && close[1] != ':')) return -EINVAL;
        hp = p + 1;
        hlen = (size_t)(close - hp);
        colon = close + 1 < end ? close + 1 : NULL;
        if (hlen == 0 || hlen >= host_size) return -EINVAL;
        memcpy(host, hp, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET6, host, v6) != 1) return -EINVAL;
    } else {
        colon = memchr(p, ':', len);
        hlen = colon ? (size_t)(colon - p) : len;
        if (hlen >= host_size) return -EINVAL;
        for (size_t i = 0; i < hlen; i++) {
            if (!cw_config_is_name_char(p[i])) return -EINVAL;
        }
        memcpy(host, p, hlen);
        host[hlen] = '\0';
    }
    if (colon == NULL) return need_port ? -EINVAL : 0;
    return config_parse_port(colon + 1, (size_t)(end - colon - 1), port);
}

int cw_config_split_hostport(const char *s, char *host, size_t host_size, int *port)
{
    if (s == NULL || host == NULL || host_size == 0) return -EINVAL;
    return cw_config_split(s, strlen(s), true, host, host_size, port);
}

/* Reads a run of digits into *v with overflow checks; *end is the first non-digit. */
static int config_parse_digits(const char *s, uint64_t *v, const char **end)
{
    uint64_t acc = 0;
    const char *p = s;

    if (*p < '0' || *p > '9') return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (__builtin_mul_overflow(acc, 10, &acc)) return -EINVAL;
        if (__builtin_add_overflow(acc, (uint64_t)(*p - '0'), &acc)) return -EINVAL;
    }
    *v = acc;
    *end = p;
    return 0;
}

int cw_config_parse_duration(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    uint64_t v;
    const char *p;
    int64_t ms;

    if (s == NULL || config_parse_digits(s, &v, &p) < 0 || v > INT64_MAX) return -EINVAL;
    for (size_t i = 0; i < CW_ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].unit) != 0) continue;
        if (__builtin_mul_overflow((int64_t)v, units[i].ms, &ms)) return -EINVAL;
        *out_ms = ms;
        return 0;
    }
    return -EINVAL;
}

int cw_config_parse_size(const char *s, uint64_t *out)
{
    static const char suffixes[] = "KMGT";
    uint64_t v;
    const char *p, *hit;
    unsigned shift = 0;

    if (s == NULL || config_parse_digits(s, &v, &p) < 0) return -EINVAL;
    if (*p != '\0') {
        char c = (*p >= 'a' && *p <= 'z') ? (char)(*p - 32) : *p;
        hit = strchr(suffixes, c);
        if (hit == NULL || c == '\0' || p[1] != '\0') return -EINVAL;
        shift = 10 * (unsigned)(hit - suffixes + 1);
    }
    if (__builtin_mul_overflow(v, (uint64_t)1 << shift, out)) return -EINVAL;
    return 0;
}

/* True when every bit of addr past prefix_len is zero. */
static bool config_host_bits_clear(const uint8_t *addr, int prefix_len, int bits)
{
    for (int i = prefix_len; i < bits; i++) {
        if (addr[i / 8] & (0x80 >> (i % 8))) return false;
    }
    return true;
}

int cw_config_parse_cidr(const char *s, struct cw_config_cidr *out)
{
    char buf[INET6_ADDRSTRLEN];
    const char *slash, *end;
    uint64_t len;
    size_t alen;
    int family, bits;

    if (s == NULL) return -EINVAL;
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf)) return -EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    family = memchr(buf, ':', alen) ? AF_INET6 : AF_INET;
    bits = family == AF_INET6 ? 128 : 32;
    memset(out, 0, sizeof(*out));
    if (inet_pton(family, buf, out->addr) != 1) return -EINVAL;
    len = (uint64_t)bits;
    if (slash && (config_parse_digits(slash + 1, &len, &end) < 0 || *end != '\0')) return -EINVAL;
    /* "10.0.0.1/8" is rejected, not masked: the writer meant a host or made a typo. */
    if (len > (uint64_t)bits || !config_host_bits_clear(out->addr, (int)len, bits)) return -EINVAL;
    out->family = family;
    out->prefix_len = (int)len;
    return 0;
}

static bool config_prefix_match(const uint8_t *net, const uint8_t *addr, int prefix_len)
{
    int full = prefix_len / 8, rest = prefix_len % 8;

    if (memcmp(net, addr, (size_t)full) != 0) return false;
    if (rest == 0) return true;
    return ((net[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* An IPv4-mapped IPv6 peer (::ffff:a.b.c.d, from a dual-stack socket) also matches the
 * IPv4 ranges, so "127.0.0.1/32" covers it. */
bool cw_config_cidr_match(const struct cw_config_cidr *list, size_t count, int family,
                          const uint8_t *addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    bool is_mapped = family == AF_INET6 && memcmp(addr, mapped, sizeof(mapped)) == 0;

    for (size_t i = 0; i < count; i++) {
        const struct cw_config_cidr *c = &list[i];
        if (c->family == family && config_prefix_match(c->addr, addr, c->prefix_len)) return true;
        if (is_mapped && c->family == AF_INET &&
            config_prefix_match(c->addr, addr + 12, c->prefix_len)) {
            return true;
        }
    }
    return false;
}

bool cw_config_purge_allowed(const struct cw_config *cfg, int family, const uint8_t *addr)
{
    return cw_config_cidr_match(cfg->purge_allow, cfg->purge_allow_count, family, addr);
}

bool cw_config_route_trusts(const struct cw_config_route *rt, int family, const uint8_t *addr)
{
    return cw_config_cidr_match(rt->trust_forwarded, rt->trust_forwarded_count, family, addr);
}
