/* core/hashslot.c - Redis Cluster hash slots and redirections; see core/hashslot.h. */
#include "core/hashslot.h"

#include <errno.h>
#include <string.h>

static uint16_t hashslot_crc_step(uint16_t crc, unsigned char byte)
{
    crc ^= (uint16_t)(byte << 8);
    for (int i = 0; i < 8; i++) {
        crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

/* Bitwise rather than Redis's 512-byte table: keys are short (a prefix and a hex hash), and
 * the loop is a few hundred cycles per key next to a network round trip. */
uint16_t cw_hashslot_crc16(const char *p, size_t len)
{
    uint16_t crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc = hashslot_crc_step(crc, (unsigned char)p[i]);
    }
    return crc;
}

unsigned cw_hashslot_of(const char *p, size_t len)
{
    const char *open = memchr(p, '{', len), *close;

    if (open != NULL) {
        size_t rest = len - (size_t)(open - p) - 1;
        close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1) {
            return cw_hashslot_crc16(open + 1, (size_t)(close - open - 1)) & 16383u;
        }
    }
    return cw_hashslot_crc16(p, len) & 16383u;
}

/* True when p (len bytes) starts with the word w: w, then the end or a space. */
static bool hashslot_has_word(const char *p, size_t len, const char *w)
{
    size_t n = strlen(w);

    return len >= n && memcmp(p, w, n) == 0 && (len == n || p[n] == ' ');
}

enum cw_hashslot_error cw_hashslot_error_kind(const char *p, size_t len)
{
    if (len > 6 && hashslot_has_word(p, len, "MOVED")) return CW_HASHSLOT_ERROR_MOVED;
    if (len > 4 && hashslot_has_word(p, len, "ASK")) return CW_HASHSLOT_ERROR_ASK;
    if (hashslot_has_word(p, len, "TRYAGAIN")) return CW_HASHSLOT_ERROR_TRYAGAIN;
    if (hashslot_has_word(p, len, "CLUSTERDOWN")) return CW_HASHSLOT_ERROR_CLUSTERDOWN;
    return CW_HASHSLOT_ERROR_OTHER;
}

/* Parses the decimal digits of p[0..len) into *out, at most max: 0 or -EBADMSG. */
static int hashslot_parse_uint(const char *p, size_t len, unsigned max, unsigned *out)
{
    unsigned v = 0;

    if (len == 0 || len > 5) return -EBADMSG;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return -EBADMSG;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v > max) return -EBADMSG;
    *out = v;
    return 0;
}

int cw_hashslot_parse_redirect(const char *p, size_t len, struct cw_hashslot_redirect *out)
{
    const char *slot, *addr, *colon, *end = p + len;
    unsigned v;
    size_t host_len;

    if (len > 6 && memcmp(p, "MOVED ", 6) == 0) {
        out->is_ask = false;
        slot = p + 6;
    } else if (len > 4 && memcmp(p, "ASK ", 4) == 0) {
        out->is_ask = true;
        slot = p + 4;
    } else {
        return -ENOENT;
    }
    addr = memchr(slot, ' ', (size_t)(end - slot));
    if (addr == NULL) return -EBADMSG;
    if (hashslot_parse_uint(slot, (size_t)(addr - slot), CW_HASHSLOT_COUNT - 1, &v) < 0) {
        return -EBADMSG;
    }
    out->slot = v;
    addr++;
    /* The port follows the last colon: an IPv6 host has colons of its own. */
    colon = NULL;
    for (const char *q = addr; q < end; q++) {
        if (*q == ':') colon = q;
    }
    if (colon == NULL) return -EBADMSG;
    host_len = (size_t)(colon - addr);
    if (host_len >= 2 && addr[0] == '[' && colon[-1] == ']') {
        addr++;
        host_len -= 2;
    }
    if (host_len == 0 || host_len >= sizeof(out->host)) return -EBADMSG;
    for (size_t i = 0; i < host_len; i++) {
        if ((unsigned char)addr[i] <= 0x20 || addr[i] == 0x7f) return -EBADMSG;
    }
    if (hashslot_parse_uint(colon + 1, (size_t)(end - colon - 1), 65535, &v) < 0 || v == 0) {
        return -EBADMSG;
    }
    memcpy(out->host, addr, host_len);
    out->host[host_len] = '\0';
    out->port = (int)v;
    return 0;
}
