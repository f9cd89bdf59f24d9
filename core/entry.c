/* core/entry.c - encoding and validation of cached entries; see core/entry.h. */
#include "core/entry.h"

#include <errno.h>
#include <string.h>

#include "core/limits.h"

/* A header record starts with { uint16 name_len, uint32 value_len }, unpadded. */
#define ENTRY_REC_HDR_BYTES 6

static int entry_header_check(const struct cw_entry_header *hdr);
static void entry_rec_read(const char *p, size_t *name_len, size_t *value_len);
static bool entry_status_ok(uint16_t status);

static int entry_header_check(const struct cw_entry_header *hdr)
{
    if (hdr->name.len == 0 || hdr->name.len > CW_LIMIT_HEADER_NAME_BYTES) return -EINVAL;
    if (hdr->value.len > CW_LIMIT_HEADER_VALUE_BYTES) return -EINVAL;
    return 0;
}

/* p must have ENTRY_REC_HDR_BYTES readable bytes; they may be unaligned. */
static void entry_rec_read(const char *p, size_t *name_len, size_t *value_len)
{
    uint16_t nl;
    uint32_t vl;

    memcpy(&nl, p, sizeof(nl));
    memcpy(&vl, p + sizeof(nl), sizeof(vl));
    *name_len = nl;
    *value_len = vl;
}

/* Three digits, as a status line carries (RFC 9110 §15). */
static bool entry_status_ok(uint16_t status)
{
    return status >= 100 && status <= 999;
}

int cw_entry_size(struct cw_str key, const struct cw_entry_header *hdrs, size_t n, size_t body_len,
                  size_t *out)
{
    size_t block = 0;
    size_t total = sizeof(struct cw_entry_hdr);

    if (n > CW_LIMIT_HEADER_COUNT || key.len > CW_LIMIT_KEY_BYTES) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int rc = entry_header_check(&hdrs[i]);
        if (rc < 0) return rc;
        /* Each term is bounded by the checks above, so the sum cannot wrap before the
         * block limit stops it. */
        block += ENTRY_REC_HDR_BYTES + hdrs[i].name.len + hdrs[i].value.len;
        if (block > CW_LIMIT_HEADERS_BYTES) return -EINVAL;
    }
    if (__builtin_add_overflow(total, key.len, &total)) return -EOVERFLOW;
    if (__builtin_add_overflow(total, block, &total)) return -EOVERFLOW;
    if (__builtin_add_overflow(total, body_len, &total)) return -EOVERFLOW;
    *out = total;
    return 0;
}

/* Writes exactly cw_entry_size() bytes; buf bytes past that are left untouched, and decode
 * needs the exact size. -EINVAL too for a status outside 100..999, which decode would
 * reject. */
int cw_entry_encode(const struct cw_entry_hdr *h, struct cw_str key,
                    const struct cw_entry_header *hdrs, size_t n, struct cw_str body, void *buf,
                    size_t size)
{
    struct cw_entry_hdr eh = *h;
    char *p = buf;
    size_t need;
    size_t block = 0;
    int rc;

    rc = cw_entry_size(key, hdrs, n, body.len, &need);
    if (rc < 0) return rc;
    if (!entry_status_ok(h->status)) return -EINVAL;
    if (need > size) return -ENOSPC;

    for (size_t i = 0; i < n; i++) {
        block += ENTRY_REC_HDR_BYTES + hdrs[i].name.len + hdrs[i].value.len;
    }
    eh.magic = CW_ENTRY_MAGIC;
    eh.version = CW_ENTRY_VERSION;
    eh.key_len = (uint32_t)key.len;
    eh.headers_len = (uint32_t)block;
    eh.header_count = (uint32_t)n;
    eh.body_len = (uint64_t)body.len;

    memcpy(p, &eh, sizeof(eh));
    p += sizeof(eh);
    if (key.len > 0) memcpy(p, key.p, key.len);
    p += key.len;
    for (size_t i = 0; i < n; i++) {
        uint16_t nl = (uint16_t)hdrs[i].name.len;
        uint32_t vl = (uint32_t)hdrs[i].value.len;

        memcpy(p, &nl, sizeof(nl));
        memcpy(p + sizeof(nl), &vl, sizeof(vl));
        p += ENTRY_REC_HDR_BYTES;
        memcpy(p, hdrs[i].name.p, nl);
        p += nl;
        if (vl > 0) memcpy(p, hdrs[i].value.p, vl);
        p += vl;
    }
    if (body.len > 0) memcpy(p, body.p, body.len);
    return 0;
}

/* Checks field by field before any use, like ngx_http_file_cache_read(): every length is
 * held against the bytes present and against the limits encode enforces, so a value that
 * encode could not have written is rejected. */
int cw_entry_decode(const void *p, size_t len, struct cw_entry_view *out)
{
    const char *bytes = p;
    struct cw_entry_hdr h;
    uint64_t total = sizeof(h);
    const char *block;
    size_t off = 0;

    if (len < sizeof(h)) return -EBADMSG;
    memcpy(&h, bytes, sizeof(h));
    if (h.magic != CW_ENTRY_MAGIC || h.version != CW_ENTRY_VERSION) return -EBADMSG;
    if (!entry_status_ok(h.status)) return -EBADMSG;
    if (h.key_len > CW_LIMIT_KEY_BYTES || h.headers_len > CW_LIMIT_HEADERS_BYTES ||
        h.header_count > CW_LIMIT_HEADER_COUNT) {
        return -EBADMSG;
    }
    /* key_len and headers_len are bounded above; body_len is the one that can wrap. */
    total += (uint64_t)h.key_len + h.headers_len;
    if (__builtin_add_overflow(total, h.body_len, &total)) return -EBADMSG;
    if (total != (uint64_t)len) return -EBADMSG;

    block = bytes + sizeof(h) + h.key_len;
    for (uint32_t i = 0; i < h.header_count; i++) {
        size_t name_len;
        size_t value_len;

        if (h.headers_len - off < ENTRY_REC_HDR_BYTES) return -EBADMSG;
        entry_rec_read(block + off, &name_len, &value_len);
        off += ENTRY_REC_HDR_BYTES;
        if (name_len == 0 || name_len > CW_LIMIT_HEADER_NAME_BYTES) return -EBADMSG;
        if (value_len > CW_LIMIT_HEADER_VALUE_BYTES) return -EBADMSG;
        if (h.headers_len - off < name_len + value_len) return -EBADMSG;
        off += name_len + value_len;
    }
    if (off != h.headers_len) return -EBADMSG;

    out->h = h;
    out->key = cw_str_make(bytes + sizeof(h), h.key_len);
    out->headers = block;
    out->headers_len = h.headers_len;
    out->body = cw_str_make(block + h.headers_len, (size_t)h.body_len);
    return 0;
}

bool cw_entry_header_next(const struct cw_entry_view *v, size_t *off, struct cw_str *name,
                          struct cw_str *value)
{
    size_t name_len;
    size_t value_len;

    /* decode() validated the records; the checks keep a misuse from reading past them. */
    if (*off >= v->headers_len || v->headers_len - *off < ENTRY_REC_HDR_BYTES) return false;
    entry_rec_read(v->headers + *off, &name_len, &value_len);
    if (v->headers_len - *off - ENTRY_REC_HDR_BYTES < name_len + value_len) return false;
    *name = cw_str_make(v->headers + *off + ENTRY_REC_HDR_BYTES, name_len);
    *value = cw_str_make(name->p + name_len, value_len);
    *off += ENTRY_REC_HDR_BYTES + name_len + value_len;
    return true;
}

bool cw_entry_header_find(const struct cw_entry_view *v, struct cw_str name, struct cw_str *value)
{
    size_t off = 0;
    struct cw_str n;
    struct cw_str val;

    while (cw_entry_header_next(v, &off, &n, &val)) {
        if (cw_str_eq_ci(n, name)) {
            *value = val;
            return true;
        }
    }
    return false;
}
