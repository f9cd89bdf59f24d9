/* workers/upstream_recv.c - see workers/upstream.h: reading an origin's response. libcurl's
 * header, body and read callbacks of a transfer, the checks on each response header line (a
 * token name, a value without control bytes, within the limits) and on the framing
 * (Content-Length against Transfer-Encoding), the timeout restarted by each byte, and the buffer
 * and field list the head's lines are kept in. Loop thread only, like every callback. */
#include "workers/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "workers/clock.h"
#include "workers/upstream_int.h"

#define UPSTREAM_BODY_CHUNK 16384

int cw_upstream_buf_append(struct cw_upstream_buf *b, const char *p, size_t n, size_t max)
{
    size_t need;

    if (__builtin_add_overflow(b->len, n, &need) || need > max) return -EFBIG;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : UPSTREAM_BODY_CHUNK;
        while (cap < need)
            cap = cap > max / 2 ? max : cap * 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len = need;
    return 0;
}

bool cw_upstream_fields_next(const struct cw_upstream_fields *f, size_t *off, struct cw_str *name,
                             struct cw_str *value)
{
    const char *p, *end, *colon;

    if (*off >= f->len) return false;
    p = f->p + *off;
    end = memchr(p, '\0', f->len - *off);
    if (end == NULL) return false;
    *off = (size_t)(end - f->p) + 1;
    colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL) return false; /* the header callback only keeps lines with a colon */
    *name = cw_str_make(p, (size_t)(colon - p));
    p = colon + 1;
    while (p < end && cw_is_ows((unsigned char)*p))
        p++;
    while (end > p && cw_is_ows((unsigned char)end[-1]))
        end--;
    *value = cw_str_make(p, (size_t)(end - p));
    return true;
}

/* Parses "HTTP/1.1 200 OK": the status, or -1. */
static int upstream_parse_status(const char *p, size_t n)
{
    size_t i = 0;
    int status = 0;

    while (i < n && p[i] != ' ')
        i++;
    if (i + 4 > n) return -1;
    for (size_t k = i + 1; k < i + 4; k++) {
        if (p[k] < '0' || p[k] > '9') return -1;
        status = status * 10 + (p[k] - '0');
    }
    return status;
}

/* RFC 9110 §5.6.2 tchar. */
static bool upstream_is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 9110 §5.5: field-content is VCHAR, obs-text, SP and HTAB; a CR, LF, NUL or other
 * control byte could split or smuggle a field when replayed, so the response is refused. */
static bool upstream_is_field_value(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    }
    return true;
}

/* Checks one "Name: value" line: the name a token within its limit (no space before the
 * colon, RFC 9112 §5.1), the value within its limit and free of control bytes. */
static bool upstream_is_valid_field(const char *p, size_t len, struct cw_str *name,
                                    struct cw_str *value)
{
    const char *colon = memchr(p, ':', len);
    size_t i;

    if (colon == NULL || colon == p) return false;
    *name = cw_str_make(p, (size_t)(colon - p));
    if (name->len > CW_LIMIT_HEADER_NAME_BYTES) return false;
    for (i = 0; i < name->len; i++)
        if (!upstream_is_tchar((unsigned char)p[i])) return false;
    const char *v = colon + 1, *end = p + len;
    while (v < end && cw_is_ows((unsigned char)*v))
        v++;
    while (end > v && cw_is_ows((unsigned char)end[-1]))
        end--;
    *value = cw_str_make(v, (size_t)(end - v));
    return value->len <= CW_LIMIT_HEADER_VALUE_BYTES && upstream_is_field_value(v, value->len);
}

/* RFC 9112 §6.3: Content-Length with Transfer-Encoding, or Content-Lengths that differ, make
 * the framing ambiguous; a proxy answers 502 rather than guess (nginx does the same). A
 * list of equal values ("5, 5") is one length. */
static bool upstream_framing_ok(struct upstream_run *x, struct cw_str name, struct cw_str value)
{
    if (cw_str_eq_ci(name, CW_STR_LIT("Transfer-Encoding"))) {
        x->chunked = true;
        return x->content_length < 0;
    }
    if (!cw_str_eq_ci(name, CW_STR_LIT("Content-Length"))) return true;
    for (size_t i = 0; i < value.len;) {
        int64_t v = 0;
        size_t start = i;
        while (i < value.len && value.p[i] >= '0' && value.p[i] <= '9') {
            if (v > (INT64_MAX - 9) / 10) return false;
            v = v * 10 + (value.p[i++] - '0');
        }
        if (i == start) return false;
        if (x->content_length >= 0 && x->content_length != v) return false;
        x->content_length = v;
        while (i < value.len && (cw_is_ows((unsigned char)value.p[i]) || value.p[i] == ','))
            i++;
    }
    return !x->chunked;
}

/* Says what a callback's errno ended the transfer with, unless it said so itself. */
static void upstream_fail_cb(struct upstream_run *run, int rc)
{
    run->fail_rc = rc;
    if (run->x->errbuf[0] == '\0')
        snprintf(run->x->errbuf, sizeof(run->x->errbuf), "ended by its consumer: %s",
                 strerror(-rc));
}

/* Bytes moved: the timeout counts again from now (it is the longest silence allowed, as
 * nginx's proxy_read_timeout, not a bound on the whole transfer: a stream runs as long as
 * it flows). Before the head the silence allowed is the first-byte timeout (bytes of a
 * request body going out restart it: the origin answers once it has them all). */
void upstream_touch(struct upstream_run *run)
{
    int64_t t = run->head_done ? run->x->req->timeout_ms : run->first_byte_ms;

    if (t > 0) run->deadline_ms = cw_clock_mono_ms() + t;
}

/* Header lines arrive one per call, CRLF included, for every response of the transfer (1xx,
 * then the final one, then any trailer): keep only the last block. Its end (the empty line of
 * a final response) is the head: on_head decides what happens to the body. */
size_t upstream_on_header(char *p, size_t size, size_t nitems, void *cls)
{
    struct upstream_run *run = cls;
    struct cw_upstream_xfer *x = run->x;
    size_t n = size * nitems, len = n;
    struct cw_str name, value;

    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        run->headers.len = 0;
        run->header_count = 0;
        run->content_length = -1;
        run->chunked = false;
        x->status = upstream_parse_status(p, len);
        if (x->status < 100) goto out_bad;
        return n;
    }
    if (len == 0) {
        if (run->head_done || x->status < 200) return n;
        run->head_done = true;
        if (x->ops->on_head == NULL) return n;
        struct cw_upstream_fields f = {run->headers.p, run->headers.len, run->header_count};
        int v = x->ops->on_head(x, x->status, &f);
        if (v < 0) {
            upstream_fail_cb(run, v);
            return 0;
        }
        run->hold = v == CW_UPSTREAM_PAUSE;
        upstream_touch(run);
        return n;
    }
    /* RFC 9112 §5.2: a proxy must reject or replace obs-fold; we reject. */
    if (cw_is_ows((unsigned char)p[0]) || !upstream_is_valid_field(p, len, &name, &value))
        goto out_bad;
    if (!upstream_framing_ok(run, name, value)) goto out_bad;
    if (run->header_count >= CW_LIMIT_HEADER_COUNT) goto out_bad;
    if (cw_upstream_buf_append(&run->headers, p, len, CW_LIMIT_HEADERS_BYTES) < 0) goto out_bad;
    if (cw_upstream_buf_append(&run->headers, "", 1, CW_LIMIT_HEADERS_BYTES) < 0) goto out_bad;
    run->header_count++;
    return n;
out_bad:
    run->fail_rc = -EBADMSG;
    snprintf(x->errbuf, sizeof(x->errbuf), "malformed, ambiguous or oversized response header");
    return 0;
}

size_t upstream_on_body(char *p, size_t size, size_t nmemb, void *cls)
{
    struct upstream_run *run = cls;
    struct cw_upstream_xfer *x = run->x;
    size_t n = size * nmemb;

    if (run->hold) {
        run->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    upstream_touch(run);
    if (x->ops->on_data == NULL || n == 0) return n;
    int v = x->ops->on_data(x, p, n);
    if (v < 0) {
        upstream_fail_cb(run, v);
        return 0;
    }
    if (v == CW_UPSTREAM_PAUSE) {
        run->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return n;
}

size_t upstream_on_read(char *buf, size_t size, size_t nitems, void *cls)
{
    struct upstream_run *run = cls;
    struct cw_upstream_xfer *x = run->x;
    ssize_t got = x->ops->on_read(x, buf, size * nitems);

    if (got == -EAGAIN) {
        run->paused = true;
        return CURL_READFUNC_PAUSE;
    }
    upstream_touch(run);
    if (got < 0) {
        upstream_fail_cb(run, (int)got);
        return CURL_READFUNC_ABORT;
    }
    return (size_t)got > size * nitems ? CURL_READFUNC_ABORT : (size_t)got;
}

void upstream_take_headers(struct cw_upstream_xfer *x, struct cw_upstream_buf *out, size_t *count)
{
    struct upstream_run *run = x->internal;

    if (run == NULL) return;
    *out = run->headers;
    *count = run->header_count;
    run->headers = (struct cw_upstream_buf){0};
    run->header_count = 0;
}
