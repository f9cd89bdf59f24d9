/* core/fleetmsg.c - fleet purge messages; see core/fleetmsg.h. */
#include "core/fleetmsg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FLEETMSG_MAGIC_BYTES 9 /* "cwpurge1 " or "cwpurge2 " */
#define FLEETMSG_TIME_DIGITS 19

static const char fleetmsg_kinds[CW_FLEETMSG_KIND_COUNT] = {'u', 'p', 't', 'b'};

static bool fleetmsg_id_ok(struct cw_str id);
static int fleetmsg_kind(char c, uint32_t *kind);
static size_t fleetmsg_digits(const char *p, const char *end, size_t max, uint64_t *out);
static bool fleetmsg_log_id(struct cw_str s, uint64_t *ms, uint64_t *seq);

/* An id: 1..CW_FLEETMSG_ID_BYTES-1 printable bytes without space, a '/' after its node. */
static bool fleetmsg_id_ok(struct cw_str id)
{
    const char *slash;

    if (id.len == 0 || id.len >= CW_FLEETMSG_ID_BYTES) return false;
    for (size_t i = 0; i < id.len; i++) {
        unsigned char c = (unsigned char)id.p[i];
        if (c <= ' ' || c >= 0x7f) return false;
    }
    slash = memchr(id.p, '/', id.len);
    return slash != NULL && slash != id.p;
}

static int fleetmsg_kind(char c, uint32_t *kind)
{
    for (uint32_t k = 0; k < CW_FLEETMSG_KIND_COUNT; k++) {
        if (fleetmsg_kinds[k] == c) {
            *kind = k;
            return 0;
        }
    }
    return -EBADMSG;
}

int cw_fleetmsg_encode(const struct cw_fleetmsg *m, char *buf, size_t size, size_t *len)
{
    int n;

    if (!fleetmsg_id_ok(m->id) || m->time_ms < 0 || m->kind >= CW_FLEETMSG_KIND_COUNT ||
        m->value.len == 0 || m->value.len > CW_LIMIT_KEY_BYTES)
        return -EINVAL;
    n = snprintf(buf, size, "cwpurge2 %.*s %lld %c %d ", (int)m->id.len, m->id.p,
                 (long long)m->time_ms, fleetmsg_kinds[m->kind], m->soft ? 1 : 0);
    if (n < 0 || (size_t)n >= size || size - (size_t)n < m->value.len) return -ENOSPC;
    memcpy(buf + n, m->value.p, m->value.len);
    *len = (size_t)n + m->value.len;
    return 0;
}

int cw_fleetmsg_decode(const char *p, size_t len, struct cw_fleetmsg *out)
{
    const char *end = p + len, *sp;
    int version;

    memset(out, 0, sizeof(*out));
    if (len < FLEETMSG_MAGIC_BYTES || memcmp(p, "cwpurge", 7) != 0 || p[8] != ' ') return -EBADMSG;
    if (p[7] != '1' && p[7] != '2') return -EBADMSG;
    version = p[7] - '0';
    p += FLEETMSG_MAGIC_BYTES;
    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL) return -EBADMSG;
    out->id = cw_str_make(p, (size_t)(sp - p));
    if (!fleetmsg_id_ok(out->id)) return -EBADMSG;
    out->node = cw_str_make(p, (size_t)((const char *)memchr(p, '/', out->id.len) - p));
    p = sp + 1;
    if (version == 2) {
        size_t digits = 0;
        int64_t t = 0;
        while (p + digits < end && digits <= FLEETMSG_TIME_DIGITS && p[digits] >= '0' &&
               p[digits] <= '9') {
            int d = p[digits] - '0';
            if (t > (INT64_MAX - d) / 10) return -EBADMSG;
            t = t * 10 + d;
            digits++;
        }
        /* No leading zero: one spelling per time, as encode writes it. */
        if (digits == 0 || digits > FLEETMSG_TIME_DIGITS || (digits > 1 && p[0] == '0') ||
            p + digits >= end || p[digits] != ' ')
            return -EBADMSG;
        out->time_ms = t;
        p += digits + 1;
    }
    /* "<kind> <soft> " then the value, at least one byte. */
    if (end - p < 5 || p[1] != ' ' || (p[2] != '0' && p[2] != '1') || p[3] != ' ') return -EBADMSG;
    if (fleetmsg_kind(p[0], &out->kind) < 0) return -EBADMSG;
    if (version == 1 && out->kind == CW_FLEETMSG_BAN) return -EBADMSG;
    out->soft = p[2] == '1';
    out->value = cw_str_make(p + 4, (size_t)(end - p - 4));
    if (out->value.len > CW_LIMIT_KEY_BYTES) return -EBADMSG;
    return 0;
}

/* Up to max decimal digits at p (before end), no overflow: how many, and their value. */
static size_t fleetmsg_digits(const char *p, const char *end, size_t max, uint64_t *out)
{
    size_t n = 0;

    *out = 0;
    while (p + n < end && n < max && p[n] >= '0' && p[n] <= '9') {
        unsigned d = (unsigned)(p[n] - '0');
        if (*out > (UINT64_MAX - d) / 10) return 0;
        *out = *out * 10 + d;
        n++;
    }
    return n;
}

/* "<ms>-<seq>", each 1..20 digits. */
static bool fleetmsg_log_id(struct cw_str s, uint64_t *ms, uint64_t *seq)
{
    const char *end = s.p + s.len;
    size_t a, b;

    if (s.len == 0 || s.len >= CW_FLEETMSG_LOG_ID_BYTES) return false;
    a = fleetmsg_digits(s.p, end, 20, ms);
    if (a == 0 || a >= s.len || s.p[a] != '-') return false;
    b = fleetmsg_digits(s.p + a + 1, end, 20, seq);
    return b > 0 && a + 1 + b == s.len;
}

int cw_fleetmsg_log_cmp(struct cw_str a, struct cw_str b)
{
    uint64_t am = 0, as = 0, bm = 0, bs = 0;
    bool aok = fleetmsg_log_id(a, &am, &as), bok = fleetmsg_log_id(b, &bm, &bs);

    if (!aok || !bok) return (int)aok - (int)bok;
    if (am != bm) return am < bm ? -1 : 1;
    return as < bs ? -1 : as > bs ? 1 : 0;
}

int cw_fleetmsg_log_open(const char *p, size_t len, struct cw_fleetmsg_log *out)
{
    const char *end = p + len, *nl;
    uint64_t ms, seq;

    memset(out, 0, sizeof(*out));
    if (len < 2 || (p[0] != '0' && p[0] != '1') || p[1] != ' ') return -EBADMSG;
    nl = memchr(p + 2, '\n', (size_t)(end - p - 2));
    if (nl == NULL) return -EBADMSG;
    out->kept = p[0] == '1';
    out->last_id = cw_str_make(p + 2, (size_t)(nl - p - 2));
    if (!fleetmsg_log_id(out->last_id, &ms, &seq)) return -EBADMSG;
    out->rest = cw_str_make(nl + 1, (size_t)(end - nl - 1));
    return 0;
}

int cw_fleetmsg_log_next(struct cw_fleetmsg_log *log, struct cw_str *id, struct cw_str *msg)
{
    const char *p = log->rest.p, *end = log->rest.p + log->rest.len, *sp;
    uint64_t ms, seq, n;
    size_t digits;

    if (log->rest.len == 0) return 0;
    log->rest.len = 0; /* dropped unless it reads */
    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL) return -EBADMSG;
    *id = cw_str_make(p, (size_t)(sp - p));
    if (!fleetmsg_log_id(*id, &ms, &seq)) return -EBADMSG;
    p = sp + 1;
    digits = fleetmsg_digits(p, end, 10, &n);
    if (digits == 0 || p + digits >= end || p[digits] != ' ' || n > CW_FLEETMSG_BYTES)
        return -EBADMSG;
    p += digits + 1;
    if ((uint64_t)(end - p) < n) return -EBADMSG;
    *msg = cw_str_make(p, (size_t)n);
    log->rest = cw_str_make(p + n, (size_t)(end - p - (ptrdiff_t)n));
    return 1;
}
