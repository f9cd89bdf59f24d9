/* core/entry.c - encoding and validation of cached entries; see core/entry.h. */
#include "core/entry.h"

#include <errno.h>
#include <string.h>

#include "core/limits.h"

/* A record starts with { uint16 name_len, uint32 value_len }, unpadded. */
#define ENTRY_REC_HDR_BYTES 6

static int entry_header_check(const struct cw_entry_header *hdr);
static bool entry_is_token(struct cw_str s);
static bool entry_is_field_value(struct cw_str s);
static bool entry_is_req_word(struct cw_str s);
static int entry_req_field_check(const struct cw_entry_header *f);
static int entry_req_size(const struct cw_entry_req *req, size_t *block);
static void entry_rec_read(const char *p, size_t *name_len, size_t *value_len);
static char *entry_rec_write(char *p, const struct cw_entry_header *hdrs, size_t n);
static bool entry_status_ok(uint16_t status);
static int entry_req_decode(const char *p, const struct cw_entry_hdr *h, struct cw_entry_view *out);
static bool entry_rec_next(const char *block, size_t len, size_t *off, struct cw_str *name,
                           struct cw_str *value);

static int entry_header_check(const struct cw_entry_header *hdr)
{
    if (hdr->name.len == 0 || hdr->name.len > CW_LIMIT_HEADER_NAME_BYTES) return -EINVAL;
    if (hdr->value.len > CW_LIMIT_HEADER_VALUE_BYTES) return -EINVAL;
    return 0;
}

static bool entry_is_token(struct cw_str s)
{
    if (s.len == 0) return false;
    for (size_t i = 0; i < s.len; i++) {
        if (!cw_is_tchar((unsigned char)s.p[i])) return false;
    }
    return true;
}

/* Whether the 8 bytes of x hold one below n (n <= 0x80): the classic word test, exact. */
static bool entry_word_has_below(uint64_t x, uint64_t n)
{
    return ((x - n * 0x0101010101010101ull) & ~x & 0x8080808080808080ull) != 0;
}

/* How many of s's leading bytes can be passed over 8 at a time, none of them below n. */
static size_t entry_skip_words(struct cw_str s, uint64_t n)
{
    size_t i = 0;

    for (; i + 8 <= s.len; i += 8) {
        uint64_t x;
        memcpy(&x, s.p + i, 8);
        if (entry_word_has_below(x, n)) break;
    }
    return i;
}

/* A request field value goes on the wire as it is: no NUL, CR or LF (RFC 9110 §5.5). */
static bool entry_is_field_value(struct cw_str s)
{
    for (size_t i = entry_skip_words(s, '\r' + 1); i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= '\r' && (c == '\0' || c == '\r' || c == '\n')) return false;
    }
    return true;
}

/* Host and target go into a request line and a Host line: no NUL, CR, LF or SP either. Every
 * hit decodes both: words with no byte below 0x21 are passed over whole. */
static bool entry_is_req_word(struct cw_str s)
{
    for (size_t i = entry_skip_words(s, ' ' + 1); i < s.len; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c <= ' ' && (c == ' ' || c == '\0' || c == '\r' || c == '\n')) return false;
    }
    return true;
}

static int entry_req_field_check(const struct cw_entry_header *f)
{
    if (f->name.len > CW_LIMIT_HEADER_NAME_BYTES || !entry_is_token(f->name)) return -EINVAL;
    if (f->value.len > CW_LIMIT_ENTRY_REQ_VALUE_BYTES || !entry_is_field_value(f->value))
        return -EINVAL;
    return 0;
}

/* Bytes of req's part (0 for NULL): 0 and *block, or -EINVAL as cw_entry_size(). */
static int entry_req_size(const struct cw_entry_req *req, size_t *block)
{
    size_t fields = 0;

    *block = 0;
    if (req == NULL) return 0;
    if (req->host.len > CW_LIMIT_HOST_BYTES || req->target.len > CW_LIMIT_URL_BYTES) return -EINVAL;
    if (!entry_is_req_word(req->host) || !entry_is_req_word(req->target)) return -EINVAL;
    if (req->n > CW_LIMIT_ENTRY_REQ_FIELDS) return -EINVAL;
    for (size_t i = 0; i < req->n; i++) {
        int rc = entry_req_field_check(&req->fields[i]);
        if (rc < 0) return rc;
        /* Each term is bounded by the check above, so the sum cannot wrap before the
         * block limit stops it. */
        fields += ENTRY_REC_HDR_BYTES + req->fields[i].name.len + req->fields[i].value.len;
        if (fields > CW_LIMIT_ENTRY_REQ_BYTES) return -EINVAL;
    }
    *block = req->host.len + req->target.len + fields;
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

/* Writes n records at p (lengths checked by the caller): the byte after them. */
static char *entry_rec_write(char *p, const struct cw_entry_header *hdrs, size_t n)
{
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
    return p;
}

/* Three digits, as a status line carries (RFC 9110 §15). */
static bool entry_status_ok(uint16_t status)
{
    return status >= 100 && status <= 999;
}

int cw_entry_size(struct cw_str key, const struct cw_entry_req *req,
                  const struct cw_entry_header *hdrs, size_t n, size_t body_len, size_t *out)
{
    size_t block = 0;
    size_t req_block;
    size_t total = sizeof(struct cw_entry_hdr);
    int rc;

    if (n > CW_LIMIT_HEADER_COUNT || key.len > CW_LIMIT_KEY_BYTES) return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        rc = entry_header_check(&hdrs[i]);
        if (rc < 0) return rc;
        /* Each term is bounded by the checks above, so the sum cannot wrap before the
         * block limit stops it. */
        block += ENTRY_REC_HDR_BYTES + hdrs[i].name.len + hdrs[i].value.len;
        if (block > CW_LIMIT_HEADERS_BYTES) return -EINVAL;
    }
    rc = entry_req_size(req, &req_block);
    if (rc < 0) return rc;
    if (__builtin_add_overflow(total, key.len, &total)) return -EOVERFLOW;
    if (__builtin_add_overflow(total, req_block, &total)) return -EOVERFLOW;
    if (__builtin_add_overflow(total, block, &total)) return -EOVERFLOW;
    if (__builtin_add_overflow(total, body_len, &total)) return -EOVERFLOW;
    *out = total;
    return 0;
}

/* Writes exactly cw_entry_size() bytes; buf bytes past that are left untouched, and decode
 * needs the exact size. -EINVAL too for a status outside 100..999, which decode would
 * reject. */
int cw_entry_encode(const struct cw_entry_hdr *h, struct cw_str key, const struct cw_entry_req *req,
                    const struct cw_entry_header *hdrs, size_t n, struct cw_str body, void *buf,
                    size_t size)
{
    struct cw_entry_hdr eh = *h;
    char *p = buf;
    size_t need;
    size_t block = 0;
    size_t req_block;
    int rc;

    rc = cw_entry_size(key, req, hdrs, n, body.len, &need);
    if (rc < 0) return rc;
    if (!entry_status_ok(h->status)) return -EINVAL;
    if (need > size) return -ENOSPC;
    rc = entry_req_size(req, &req_block);
    if (rc < 0) return rc;

    for (size_t i = 0; i < n; i++) {
        block += ENTRY_REC_HDR_BYTES + hdrs[i].name.len + hdrs[i].value.len;
    }
    eh.magic = CW_ENTRY_MAGIC;
    eh.version = CW_ENTRY_VERSION;
    eh.key_len = (uint32_t)key.len;
    eh.headers_len = (uint32_t)block;
    eh.header_count = (uint32_t)n;
    eh.body_len = (uint64_t)body.len;
    eh.req_len = (uint32_t)req_block;
    eh.req_count = req != NULL ? (uint32_t)req->n : 0;
    eh.req_host_len = req != NULL ? (uint32_t)req->host.len : 0;
    eh.req_target_len = req != NULL ? (uint32_t)req->target.len : 0;

    memcpy(p, &eh, sizeof(eh));
    p += sizeof(eh);
    if (key.len > 0) memcpy(p, key.p, key.len);
    p += key.len;
    if (req != NULL) {
        if (req->host.len > 0) memcpy(p, req->host.p, req->host.len);
        p += req->host.len;
        if (req->target.len > 0) memcpy(p, req->target.p, req->target.len);
        p += req->target.len;
        p = entry_rec_write(p, req->fields, req->n);
    }
    p = entry_rec_write(p, hdrs, n);
    if (body.len > 0) memcpy(p, body.p, body.len);
    return 0;
}

/* Validates the request part at p (h->req_len bytes, present) into out's req_* fields:
 * 0, or -EBADMSG for anything entry_req_size() would have refused. */
static int entry_req_decode(const char *p, const struct cw_entry_hdr *h, struct cw_entry_view *out)
{
    size_t fields_len;
    size_t off = 0;
    struct cw_str host = cw_str_make(p, h->req_host_len);
    struct cw_str target = cw_str_make(p + h->req_host_len, h->req_target_len);

    if (h->req_host_len > CW_LIMIT_HOST_BYTES || h->req_target_len > CW_LIMIT_URL_BYTES ||
        h->req_count > CW_LIMIT_ENTRY_REQ_FIELDS) {
        return -EBADMSG;
    }
    /* Both are bounded above, so the sum cannot wrap. */
    if ((size_t)h->req_host_len + h->req_target_len > h->req_len) return -EBADMSG;
    fields_len = h->req_len - h->req_host_len - h->req_target_len;
    if (fields_len > CW_LIMIT_ENTRY_REQ_BYTES) return -EBADMSG;
    if (!entry_is_req_word(host) || !entry_is_req_word(target)) return -EBADMSG;
    p += h->req_host_len + h->req_target_len;
    for (uint32_t i = 0; i < h->req_count; i++) {
        struct cw_entry_header f;
        size_t name_len;
        size_t value_len;

        if (fields_len - off < ENTRY_REC_HDR_BYTES) return -EBADMSG;
        entry_rec_read(p + off, &name_len, &value_len);
        off += ENTRY_REC_HDR_BYTES;
        if (value_len > CW_LIMIT_ENTRY_REQ_VALUE_BYTES) return -EBADMSG;
        if (fields_len - off < name_len + value_len) return -EBADMSG;
        f.name = cw_str_make(p + off, name_len);
        f.value = cw_str_make(p + off + name_len, value_len);
        if (entry_req_field_check(&f) < 0) return -EBADMSG;
        off += name_len + value_len;
    }
    if (off != fields_len) return -EBADMSG;
    out->req_host = host;
    out->req_target = target;
    out->req_fields = p;
    out->req_fields_len = fields_len;
    return 0;
}

/* Checks field by field before any use, like ngx_http_file_cache_read(): every length is
 * held against the bytes present and against the limits encode enforces, so a value that
 * encode could not have written is rejected. An entry of another version (version 1 had no
 * request part) is -EBADMSG, so the store deletes it and the request is a miss. */
int cw_entry_decode(const void *p, size_t len, struct cw_entry_view *out)
{
    const char *bytes = p;
    struct cw_entry_hdr h;
    struct cw_entry_view v;
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
    /* req_len bounds itself in entry_req_decode(); here it only must fit in the bytes. */
    total += (uint64_t)h.key_len + h.req_len + h.headers_len;
    if (__builtin_add_overflow(total, h.body_len, &total)) return -EBADMSG;
    if (total != (uint64_t)len) return -EBADMSG;
    if (entry_req_decode(bytes + sizeof(h) + h.key_len, &h, &v) < 0) return -EBADMSG;

    block = bytes + sizeof(h) + h.key_len + h.req_len;
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

    v.h = h;
    v.key = cw_str_make(bytes + sizeof(h), h.key_len);
    v.headers = block;
    v.headers_len = h.headers_len;
    v.body = cw_str_make(block + h.headers_len, (size_t)h.body_len);
    *out = v;
    return 0;
}

/* The next record of a block decode() validated; the checks keep a misuse from reading past
 * it. */
static bool entry_rec_next(const char *block, size_t len, size_t *off, struct cw_str *name,
                           struct cw_str *value)
{
    size_t name_len;
    size_t value_len;

    if (*off >= len || len - *off < ENTRY_REC_HDR_BYTES) return false;
    entry_rec_read(block + *off, &name_len, &value_len);
    if (len - *off - ENTRY_REC_HDR_BYTES < name_len + value_len) return false;
    *name = cw_str_make(block + *off + ENTRY_REC_HDR_BYTES, name_len);
    *value = cw_str_make(name->p + name_len, value_len);
    *off += ENTRY_REC_HDR_BYTES + name_len + value_len;
    return true;
}

bool cw_entry_header_next(const struct cw_entry_view *v, size_t *off, struct cw_str *name,
                          struct cw_str *value)
{
    return entry_rec_next(v->headers, v->headers_len, off, name, value);
}

bool cw_entry_req_next(const struct cw_entry_view *v, size_t *off, struct cw_str *name,
                       struct cw_str *value)
{
    return entry_rec_next(v->req_fields, v->req_fields_len, off, name, value);
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
