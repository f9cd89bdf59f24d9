/* core/reqscan.c - a streaming reader of HTTP/1.1 request framing (RFC 9112).
 *
 * One state per grammar position; each byte that decides something (a delimiter, a limit, a
 * framing field's value, a chunk line) goes through reqscan_step(). Runs of bytes that only
 * need a class check (method, target, an "HTTP/1.x" CRLF, field names, ordinary and Host
 * values) are taken by *_run() loops that stop where reqscan_step() would decide, and body
 * bytes (Content-Length or chunk-data) are skipped in bulk. Before all that, a whole head of
 * the common shape (no body, nothing unusual) found in one call is read in a single pass by
 * reqscan_fast_head(); it only ever accepts, and anything else it leaves to the states. The
 * states, in the order a request visits them:
 *
 *   START --CRLF (<= 4)--> START
 *     | tchar
 *     v
 *   METHOD -SP-> TARGET -SP-> VERSION -CRLF-> LINE <----------------------+
 *                                               | tchar          CRLF      |
 *                                               v                          |
 *                                             NAME -:-> VALUE ------------+
 *                                               | CRLF (empty line): head done
 *            +----------------------------------+--------------------+
 *            | Content-Length > 0               | chunked            | neither
 *            v                                  v                    v
 *          BODY ----> START          CHUNK_SIZE [BWS] [;EXT] CRLF   START
 *                                      | size > 0        | size 0
 *                                      v                 v
 *                                 CHUNK_DATA CRLF    LINE.. (trailer) CRLF -> START
 *                                      +-> CHUNK_SIZE
 *
 * Every check is made on the byte that breaks it, so the verdict, s->pos and s->req_start
 * are the same however the stream is split. Values of framing fields are parsed on the fly
 * (Content-Length digits, transfer-codings one by one, Host bytes); nothing is buffered but
 * the first bytes of a name, lowercased, to tell those fields apart. */
#include "core/reqscan.h"

#include <errno.h>

#include "core/limits.h"

enum reqscan_state {
    RS_START = 0, /* between requests: empty lines, then a request line */
    RS_START_LF,  /* the CR of an empty line was read */
    RS_METHOD,
    RS_TARGET,
    RS_VERSION,    /* count: bytes of "HTTP/d.d" read */
    RS_VERSION_LF, /* the CR after the version was read */
    RS_LINE,       /* start of a field line, or of the empty line ending the section */
    RS_NAME,
    RS_VALUE,
    RS_VALUE_LF, /* the CR ending a field line was read */
    RS_END_LF,   /* the CR of the empty line ending the head or trailer section */
    RS_BODY,     /* remaining: Content-Length bytes to skip */
    RS_CHUNK_SIZE,
    RS_CHUNK_BWS, /* whitespace after chunk-size: only ';' may follow */
    RS_CHUNK_EXT,
    RS_CHUNK_LF,
    RS_CHUNK_DATA, /* remaining: chunk-data bytes to skip */
    RS_CHUNK_DATA_CR,
    RS_CHUNK_DATA_LF,
};

/* The field whose value is being read. */
enum reqscan_kind {
    REQSCAN_OTHER = 0,
    REQSCAN_CL,
    REQSCAN_TE,
    REQSCAN_HOST,
};

enum reqscan_flag {
    REQSCAN_HAS_CL = 1u << 0,
    REQSCAN_HAS_TE = 1u << 1,
    REQSCAN_CHUNKED = 1u << 2, /* a Transfer-Encoding line named chunked */
    REQSCAN_HAS_HOST = 1u << 3,
    REQSCAN_TRAILER = 1u << 4, /* field lines belong to the trailer section */
};

/* Position inside a framing field's value (leading OWS is skipped before any of these). */
enum reqscan_sub {
    REQSCAN_SUB_IN = 0, /* Content-Length digits or Host bytes */
    REQSCAN_SUB_TRAIL,  /* trailing OWS: only OWS (or, in TE, a comma) may follow */
    REQSCAN_SUB_SEP,    /* TE: before a transfer-coding, commas and OWS skipped */
    REQSCAN_SUB_CODING, /* TE: inside a transfer-coding name */
};

static int reqscan_fail(struct cw_reqscan *s, int status, const char *reason);
static bool reqscan_is(unsigned char c, unsigned bits);
static unsigned char reqscan_lower(unsigned char c);
static bool reqscan_is_tchar(unsigned char c);
static bool reqscan_is_field_byte(unsigned char c);
static bool reqscan_is_host_byte(unsigned char c);
static int reqscan_hex(unsigned char c);
static void reqscan_tok_add(struct cw_reqscan *s, unsigned char c);
static bool reqscan_tok_is(const struct cw_reqscan *s, const char *lit);
static size_t reqscan_skip(struct cw_reqscan *s, size_t avail);
static size_t reqscan_room(const struct cw_reqscan *s, size_t avail);
static size_t reqscan_head_room(const struct cw_reqscan *s, size_t limit, size_t avail);
static bool reqscan_name_is(const unsigned char *p, size_t n, const char *lit);
static size_t reqscan_fast_head(struct cw_reqscan *s, const unsigned char *u, size_t avail);
static size_t reqscan_method_run(struct cw_reqscan *s, const unsigned char *u, size_t avail);
static size_t reqscan_version_run(struct cw_reqscan *s, const unsigned char *u, size_t avail);
static size_t reqscan_value_run(struct cw_reqscan *s, const unsigned char *u, size_t avail);
static size_t reqscan_target_run(struct cw_reqscan *s, const unsigned char *u, size_t avail);
static size_t reqscan_name_run(struct cw_reqscan *s, const unsigned char *u, size_t avail);
static int reqscan_step(struct cw_reqscan *s, unsigned char c);
static int reqscan_start(struct cw_reqscan *s, unsigned char c);
static int reqscan_method(struct cw_reqscan *s, unsigned char c);
static int reqscan_target(struct cw_reqscan *s, unsigned char c);
static int reqscan_version(struct cw_reqscan *s, unsigned char c);
static int reqscan_line(struct cw_reqscan *s, unsigned char c);
static int reqscan_name(struct cw_reqscan *s, unsigned char c);
static int reqscan_name_end(struct cw_reqscan *s);
static int reqscan_value(struct cw_reqscan *s, unsigned char c);
static int reqscan_cl_byte(struct cw_reqscan *s, unsigned char c);
static int reqscan_host_byte(struct cw_reqscan *s, unsigned char c);
static int reqscan_te_byte(struct cw_reqscan *s, unsigned char c);
static int reqscan_te_coding(struct cw_reqscan *s);
static int reqscan_value_end(struct cw_reqscan *s);
static int reqscan_lf(struct cw_reqscan *s, unsigned char c);
static int reqscan_head_done(struct cw_reqscan *s);
static void reqscan_request_done(struct cw_reqscan *s, uint64_t end);
static void reqscan_chunk_begin(struct cw_reqscan *s);
static int reqscan_chunk(struct cw_reqscan *s, unsigned char c);
static int reqscan_chunk_line(struct cw_reqscan *s, unsigned char c);

void cw_reqscan_init(struct cw_reqscan *s)
{
    memset(s, 0, sizeof(*s));
    s->state = RS_START;
    s->reason = NULL;
}

int cw_reqscan_feed(struct cw_reqscan *s, const char *p, size_t len)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;
    size_t n;

    if (s->status != 0) return -EBADMSG;
    while (i < len) {
        /* A run takes the bytes reqscan_step() would accept without a decision; the byte
         * that ends it (and every byte of the other states) goes through reqscan_step(). */
        switch (s->state) {
        case RS_START:
            n = reqscan_fast_head(s, u + i, len - i);
            if (n > 0) {
                i += n;
                continue;
            }
            break;
        case RS_BODY:
        case RS_CHUNK_DATA:
            i += reqscan_skip(s, len - i);
            continue;
        case RS_METHOD:
            i += reqscan_method_run(s, u + i, len - i);
            break;
        case RS_TARGET:
            i += reqscan_target_run(s, u + i, len - i);
            break;
        case RS_VERSION:
            i += reqscan_version_run(s, u + i, len - i);
            break;
        case RS_NAME:
            i += reqscan_name_run(s, u + i, len - i);
            break;
        case RS_VALUE:
            i += reqscan_value_run(s, u + i, len - i);
            break;
        default:
            break;
        }
        if (i == len) break;
        if (reqscan_step(s, u[i]) != 0) return -EBADMSG;
        s->pos++;
        i++;
    }
    return 0;
}

bool cw_reqscan_is_idle(const struct cw_reqscan *s)
{
    return s->status == 0 && s->state == RS_START;
}

/* Records the first broken rule; s->pos stays on the offending byte. */
static int reqscan_fail(struct cw_reqscan *s, int status, const char *reason)
{
    s->status = status;
    s->reason = reason;
    return -EBADMSG;
}

/* The byte classes the scanner checks, one bit each in reqscan_class[]:
 * - RC_TCHAR: RFC 9110 §5.6.2 tchar: "!#$%&'*+-.^_`|~", DIGIT, ALPHA (methods, field names,
 *   transfer-codings);
 * - RC_FIELD: RFC 9110 §5.5 field-value bytes: VCHAR, obs-text (0x80-0xff), SP and HTAB; every
 *   other control byte (NUL, bare CR, LF, DEL...) is invalid. Chunk extensions use it too;
 * - RC_HOST: RFC 3986 §3.2.2-3.2.3 uri-host [ ":" port ]: unreserved, sub-delims, ':', '[',
 *   ']' and the '%' of pct-encoded and IPv6 zone ids;
 * - RC_VCHAR: visible ASCII, 0x21-0x7e (the request target).
 * One load and one test a byte keeps the runs tight; test_reqscan_every_byte checks each
 * class against its RFC list for all 256 bytes. */
enum reqscan_class_bit {
    RC_TCHAR = 1u << 0,
    RC_FIELD = 1u << 1,
    RC_HOST = 1u << 2,
    RC_VCHAR = 1u << 3,
};

/* clang-format off */
static const uint8_t reqscan_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 15, 10, 11, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 10,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 10, 14, 10, 10,
    10, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 10, 14, 11, 15,
    11, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 10, 11, 10, 15, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};
/* clang-format on */

static bool reqscan_is(unsigned char c, unsigned bits)
{
    return (reqscan_class[c] & bits) != 0;
}

/* ASCII lowercase: what names and transfer-codings are compared in. */
static unsigned char reqscan_lower(unsigned char c)
{
    return (unsigned char)(c | (c >= 'A' && c <= 'Z') << 5);
}

static bool reqscan_is_tchar(unsigned char c)
{
    return reqscan_is(c, RC_TCHAR);
}

static bool reqscan_is_field_byte(unsigned char c)
{
    return reqscan_is(c, RC_FIELD);
}

static bool reqscan_is_host_byte(unsigned char c)
{
    return reqscan_is(c, RC_HOST);
}

static int reqscan_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Keeps the first sizeof(tok) bytes of a token, lowercased; tok_len saturates one past
 * that, so a longer token never equals a name we look for. */
static void reqscan_tok_add(struct cw_reqscan *s, unsigned char c)
{
    if (s->tok_len < sizeof(s->tok)) s->tok[s->tok_len] = (char)reqscan_lower(c);
    if (s->tok_len <= sizeof(s->tok)) s->tok_len++;
}

/* lit is lowercase and shorter than tok. */
static bool reqscan_tok_is(const struct cw_reqscan *s, const char *lit)
{
    size_t n = strlen(lit);

    return s->tok_len == n && memcmp(s->tok, lit, n) == 0;
}

/* Skips up to avail bytes of body or chunk-data: the bytes are the client's, not ours to
 * check. Returns how many were skipped. */
static size_t reqscan_skip(struct cw_reqscan *s, size_t avail)
{
    size_t n = s->remaining < avail ? (size_t)s->remaining : avail;

    s->remaining -= n;
    s->pos += n;
    if (s->remaining == 0) {
        if (s->state == RS_BODY) {
            reqscan_request_done(s, s->pos);
        } else {
            s->state = RS_CHUNK_DATA_CR;
        }
    }
    return n;
}

/* How many of avail bytes fit before the head's (or trailer section's) limit: a run never
 * takes the byte at which reqscan_step() would fail that limit. */
static size_t reqscan_room(const struct cw_reqscan *s, size_t avail)
{
    size_t room;

    if (s->flags & REQSCAN_TRAILER) {
        room = CW_LIMIT_REQUEST_HEAD_BYTES - s->trailer_bytes;
    } else {
        room = CW_LIMIT_REQUEST_HEAD_BYTES - (size_t)(s->pos - s->req_start);
    }
    return avail < room ? avail : room;
}

/* How many of avail bytes a run may take before a limit (the field's own, limit - count, or
 * the head's or trailer section's) needs reqscan_step() to decide. */
static size_t reqscan_head_room(const struct cw_reqscan *s, size_t limit, size_t avail)
{
    size_t max = limit > s->count ? limit - s->count : 0;
    size_t room = reqscan_room(s, avail);

    return room < max ? room : max;
}

/* Whether the n bytes at p are the field name lit (lowercase), case-insensitively. */
static bool reqscan_name_is(const unsigned char *p, size_t n, const char *lit)
{
    for (size_t i = 0; i < n; i++) {
        if (reqscan_lower(p[i]) != (unsigned char)lit[i]) return false;
    }
    return lit[n] == '\0';
}

/* The head's fast path: a whole head of the common shape, in the bytes of this call, read in
 * one pass with no state kept between bytes. The shape: method SP target SP "HTTP/1.1" or
 * "HTTP/1.0" CRLF, field lines "name:" OWS value CRLF in which no name is Content-Length or
 * Transfer-Encoding (so no body follows), at most one Host whose value is host bytes between
 * OWS, every limit kept, then CRLF; an HTTP/1.1 head has its Host. Anything else (a body, a
 * broken rule, a head cut by the call) takes nothing, and reqscan_step() reads the same
 * bytes from the start: every verdict, and every error's s->pos, comes from the state
 * machine. Returns the head's length, with s as reqscan_step() leaves it after that head. */
static size_t reqscan_fast_head(struct cw_reqscan *s, const unsigned char *u, size_t avail)
{
    size_t max = avail < CW_LIMIT_REQUEST_HEAD_BYTES ? avail : CW_LIMIT_REQUEST_HEAD_BYTES;
    size_t i = 0;
    size_t k;
    unsigned fields = 0;
    bool host = false;
    uint8_t minor;

    while (i < max && reqscan_is_tchar(u[i]))
        i++;
    if (i == 0 || i > CW_LIMIT_METHOD_BYTES || i >= max || u[i] != ' ') return 0;
    k = ++i;
    while (i < max && reqscan_is(u[i], RC_VCHAR))
        i++;
    if (i == k || i - k > CW_LIMIT_URL_BYTES || i >= max || u[i] != ' ') return 0;
    i++;
    if (max - i < 10 || memcmp(u + i, "HTTP/1.", 7) != 0 || (u[i + 7] != '0' && u[i + 7] != '1') ||
        u[i + 8] != '\r' || u[i + 9] != '\n')
        return 0;
    minor = (uint8_t)(u[i + 7] - '0');
    i += 10;
    for (;;) {
        size_t name;
        bool is_host;

        if (i >= max) return 0;
        if (u[i] == '\r') break;
        k = i;
        while (i < max && reqscan_is_tchar(u[i]))
            i++;
        name = i - k;
        if (name == 0 || name > CW_LIMIT_HEADER_NAME_BYTES || i >= max || u[i] != ':') return 0;
        if (++fields > CW_LIMIT_REQUEST_FIELDS) return 0;
        if (reqscan_name_is(u + k, name, "content-length") ||
            reqscan_name_is(u + k, name, "transfer-encoding"))
            return 0;
        is_host = reqscan_name_is(u + k, name, "host");
        i++;
        while (i < max && cw_is_ows(u[i]))
            i++;
        k = i;
        if (is_host) {
            if (host) return 0;
            host = true;
            while (i < max && reqscan_is_host_byte(u[i]))
                i++;
            if (i == k || i - k > CW_LIMIT_HOST_BYTES) return 0;
            while (i < max && cw_is_ows(u[i]))
                i++;
        } else {
            while (i < max && reqscan_is_field_byte(u[i]))
                i++;
        }
        if (i - k > CW_LIMIT_HEADER_VALUE_BYTES || max - i < 2 || u[i] != '\r' || u[i + 1] != '\n')
            return 0;
        i += 2;
    }
    if (max - i < 2 || u[i + 1] != '\n' || (minor == 1 && !host)) return 0;
    i += 2;
    s->version[0] = 1;
    s->version[1] = minor;
    s->fields = (uint16_t)fields;
    s->requests++;
    s->pos += i;
    reqscan_request_done(s, s->pos);
    return i;
}

/* Fast path for the method: a run of tchar, as reqscan_method() would take it. */
static size_t reqscan_method_run(struct cw_reqscan *s, const unsigned char *u, size_t avail)
{
    size_t max = reqscan_head_room(s, CW_LIMIT_METHOD_BYTES, avail);
    size_t n = 0;

    while (n < max && reqscan_is_tchar(u[n])) {
        n++;
    }
    s->count += (uint32_t)n;
    s->pos += n;
    return n;
}

/* Fast path for the version: "HTTP/1.1" or "HTTP/1.0" and its CRLF, whole in this call, end
 * the request line as reqscan_version() would byte by byte. Anything else (another version,
 * a line cut by the call, the head's limit in reach) takes nothing: it is read byte by byte. */
static size_t reqscan_version_run(struct cw_reqscan *s, const unsigned char *u, size_t avail)
{
    static const char line[] = "HTTP/1.1\r\n";
    const size_t n = sizeof(line) - 1;

    if (s->count != 0 || reqscan_room(s, avail) < n) return 0;
    if (memcmp(u, line, 7) != 0 || (u[7] != '0' && u[7] != '1') || u[8] != '\r' || u[9] != '\n')
        return 0;
    s->version[0] = 1;
    s->version[1] = (uint8_t)(u[7] - '0');
    s->count = 8;
    s->state = RS_LINE;
    s->pos += n;
    return n;
}

/* Fast path for a field value: the OWS before it, then a run of the bytes reqscan_value()
 * takes without a decision: any field byte in an ordinary field, host bytes in Host. Stops
 * before the first byte that needs one (CR, a control byte, a limit reached, any byte of
 * Content-Length or Transfer-Encoding), which reqscan_step() then reads, so the verdict and
 * s->pos are the same as byte by byte. Returns bytes taken. */
static size_t reqscan_value_run(struct cw_reqscan *s, const unsigned char *u, size_t avail)
{
    size_t room = reqscan_room(s, avail);
    size_t max = CW_LIMIT_HEADER_VALUE_BYTES - s->count;
    size_t n = 0;
    size_t k;

    if (s->count == 0) {
        while (n < room && cw_is_ows(u[n])) {
            n++;
        }
    }
    k = n;
    if (room - k < max) max = room - k;
    if (s->kind == REQSCAN_OTHER) {
        while (n - k < max && reqscan_is_field_byte(u[n])) {
            n++;
        }
    } else if (s->kind == REQSCAN_HOST && s->sub == REQSCAN_SUB_IN) {
        if ((size_t)(CW_LIMIT_HOST_BYTES - s->sub_len) < max)
            max = CW_LIMIT_HOST_BYTES - s->sub_len;
        while (n - k < max && reqscan_is_host_byte(u[n])) {
            n++;
        }
        s->sub_len += (uint16_t)(n - k);
    }
    s->count += (uint32_t)(n - k);
    s->pos += n;
    if (s->flags & REQSCAN_TRAILER) s->trailer_bytes += (uint32_t)n;
    return n;
}

/* Fast path for the request target: a run of visible ASCII, as reqscan_target() would take
 * it byte by byte (same verdict, same s->pos). */
static size_t reqscan_target_run(struct cw_reqscan *s, const unsigned char *u, size_t avail)
{
    size_t max = reqscan_head_room(s, CW_LIMIT_URL_BYTES, avail);
    size_t n = 0;

    while (n < max && reqscan_is(u[n], RC_VCHAR)) {
        n++;
    }
    s->count += (uint32_t)n;
    s->pos += n;
    return n;
}

/* Fast path for a field name: a run of tchar, as reqscan_name() would take it. */
static size_t reqscan_name_run(struct cw_reqscan *s, const unsigned char *u, size_t avail)
{
    size_t max = reqscan_head_room(s, CW_LIMIT_HEADER_NAME_BYTES, avail);
    size_t n = 0;

    while (n < max && reqscan_is_tchar(u[n])) {
        n++;
    }
    /* tok keeps the first bytes only: stop once its length has saturated. */
    for (size_t i = 0; i < n && s->tok_len <= sizeof(s->tok); i++) {
        reqscan_tok_add(s, u[i]);
    }
    s->count += (uint32_t)n;
    s->pos += n;
    if (s->flags & REQSCAN_TRAILER) s->trailer_bytes += (uint32_t)n;
    return n;
}

/* Reads the byte at s->pos: 0, or -EBADMSG with the rule recorded. */
static int reqscan_step(struct cw_reqscan *s, unsigned char c)
{
    if (s->in_head && s->pos - s->req_start >= CW_LIMIT_REQUEST_HEAD_BYTES) {
        return reqscan_fail(s, 431, "request head too large");
    }
    if ((s->flags & REQSCAN_TRAILER) && s->trailer_bytes++ >= CW_LIMIT_REQUEST_HEAD_BYTES) {
        return reqscan_fail(s, 431, "trailer section too large");
    }
    switch (s->state) {
    case RS_START:
    case RS_START_LF:
        return reqscan_start(s, c);
    case RS_METHOD:
        return reqscan_method(s, c);
    case RS_TARGET:
        return reqscan_target(s, c);
    case RS_VERSION:
    case RS_VERSION_LF:
        return reqscan_version(s, c);
    case RS_LINE:
        return reqscan_line(s, c);
    case RS_NAME:
        return reqscan_name(s, c);
    case RS_VALUE:
        return reqscan_value(s, c);
    case RS_VALUE_LF:
    case RS_END_LF:
        return reqscan_lf(s, c);
    default:
        return reqscan_chunk(s, c);
    }
}

/* RFC 9112 §2.2: a server SHOULD ignore at least one empty line (CRLF) received before the
 * request-line; we ignore up to CW_LIMIT_EMPTY_LINES, so a stream of CRLFs ends. */
static int reqscan_start(struct cw_reqscan *s, unsigned char c)
{
    if (s->state == RS_START_LF) {
        if (c != '\n') return reqscan_fail(s, 400, "CR without LF");
        s->state = RS_START;
        return 0;
    }
    if (c == '\r') {
        if (s->empty_lines >= CW_LIMIT_EMPTY_LINES) {
            return reqscan_fail(s, 400, "too many empty lines before request line");
        }
        s->empty_lines++;
        s->state = RS_START_LF;
        return 0;
    }
    if (c == '\n') return reqscan_fail(s, 400, "bare LF");
    s->req_start = s->pos;
    s->in_head = true;
    s->state = RS_METHOD;
    s->count = 0;
    s->flags = 0;
    s->fields = 0;
    s->content_length = 0;
    return reqscan_method(s, c);
}

/* RFC 9112 §3: method = token, then exactly one SP. */
static int reqscan_method(struct cw_reqscan *s, unsigned char c)
{
    if (reqscan_is_tchar(c)) {
        if (++s->count > CW_LIMIT_METHOD_BYTES) return reqscan_fail(s, 400, "method too long");
        return 0;
    }
    if (c == ' ' && s->count > 0) {
        s->state = RS_TARGET;
        s->count = 0;
        return 0;
    }
    return reqscan_fail(s, 400, "invalid byte in method");
}

/* RFC 9112 §3.2: the request-target holds no whitespace; we take visible ASCII only (RFC
 * 3986 has no use for the rest), then exactly one SP. */
static int reqscan_target(struct cw_reqscan *s, unsigned char c)
{
    if (c >= 0x21 && c <= 0x7e) {
        if (++s->count > CW_LIMIT_URL_BYTES) return reqscan_fail(s, 414, "request target too long");
        return 0;
    }
    if (c == ' ' && s->count > 0) {
        s->state = RS_VERSION;
        s->count = 0;
        return 0;
    }
    return reqscan_fail(s, 400, "invalid byte in request target");
}

/* RFC 9112 §2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive, then CRLF.
 * Well-formed versions other than 1.0 and 1.1 get 505 once the line is complete. */
static int reqscan_version(struct cw_reqscan *s, unsigned char c)
{
    static const char name[] = "HTTP/";
    bool ok;

    if (s->state == RS_VERSION_LF) {
        if (c != '\n') return reqscan_fail(s, 400, "CR without LF");
        if (s->version[0] != 1 || s->version[1] > 1) {
            return reqscan_fail(s, 505, "HTTP version not supported");
        }
        s->state = RS_LINE;
        return 0;
    }
    switch (s->count) {
    case 5:
    case 7:
        ok = c >= '0' && c <= '9';
        if (ok) s->version[s->count == 7] = (uint8_t)(c - '0');
        break;
    case 6:
        ok = c == '.';
        break;
    case 8:
        if (c == '\r') {
            s->state = RS_VERSION_LF;
            return 0;
        }
        return reqscan_fail(s, 400, c == '\n' ? "bare LF" : "malformed HTTP version");
    default:
        ok = c == (unsigned char)name[s->count];
        break;
    }
    if (!ok) return reqscan_fail(s, 400, c == '\n' ? "bare LF" : "malformed HTTP version");
    s->count++;
    return 0;
}

/* The first byte of a field line, or the CR of the empty line ending the section. */
static int reqscan_line(struct cw_reqscan *s, unsigned char c)
{
    if (c == '\r') {
        s->state = RS_END_LF;
        return 0;
    }
    if (c == '\n') return reqscan_fail(s, 400, "bare LF");
    /* RFC 9112 §5.2 (obs-fold) and §2.2 (whitespace before the first field line). */
    if (cw_is_ows(c)) return reqscan_fail(s, 400, "field line starts with whitespace (obs-fold)");
    if (!reqscan_is_tchar(c)) {
        return reqscan_fail(s, 400, c == ':' ? "empty field name" : "invalid byte in field name");
    }
    if (++s->fields > CW_LIMIT_REQUEST_FIELDS) return reqscan_fail(s, 431, "too many field lines");
    s->state = RS_NAME;
    s->count = 0;
    s->tok_len = 0;
    return reqscan_name(s, c);
}

/* RFC 9112 §5.1: field-name ":" with no whitespace between; a server MUST reject it with
 * 400, since proxies disagree on whether "Transfer-Encoding :" names Transfer-Encoding. */
static int reqscan_name(struct cw_reqscan *s, unsigned char c)
{
    if (reqscan_is_tchar(c)) {
        if (++s->count > CW_LIMIT_HEADER_NAME_BYTES) {
            return reqscan_fail(s, 431, "field name too long");
        }
        reqscan_tok_add(s, c);
        return 0;
    }
    if (c == ':') return reqscan_name_end(s);
    if (cw_is_ows(c)) return reqscan_fail(s, 400, "whitespace before colon");
    if (c == '\r' || c == '\n') return reqscan_fail(s, 400, "field line without colon");
    return reqscan_fail(s, 400, "invalid byte in field name");
}

/* The colon: the rules that depend only on which fields were named apply here. */
static int reqscan_name_end(struct cw_reqscan *s)
{
    s->kind = REQSCAN_OTHER;
    if (reqscan_tok_is(s, "content-length")) {
        s->kind = REQSCAN_CL;
    } else if (reqscan_tok_is(s, "transfer-encoding")) {
        s->kind = REQSCAN_TE;
    } else if (reqscan_tok_is(s, "host")) {
        s->kind = REQSCAN_HOST;
    }
    /* RFC 9110 §6.5.1: framing and routing fields are not allowed in trailers. */
    if (s->kind != REQSCAN_OTHER && (s->flags & REQSCAN_TRAILER)) {
        return reqscan_fail(s, 400, "framing or Host field in trailer");
    }
    s->sub = REQSCAN_SUB_IN;
    switch (s->kind) {
    case REQSCAN_CL:
        /* RFC 9112 §6.3: several Content-Length lines are an attack or a broken client. */
        if (s->flags & REQSCAN_HAS_CL) return reqscan_fail(s, 400, "duplicate Content-Length");
        if (s->flags & REQSCAN_HAS_TE) {
            return reqscan_fail(s, 400, "Transfer-Encoding with Content-Length");
        }
        s->flags |= REQSCAN_HAS_CL;
        break;
    case REQSCAN_TE:
        /* RFC 9112 §6.1: TE with CL, or TE in HTTP/1.0, MAY be smuggling: reject both. */
        if (s->version[1] == 0) return reqscan_fail(s, 400, "Transfer-Encoding in HTTP/1.0");
        if (s->flags & REQSCAN_HAS_CL) {
            return reqscan_fail(s, 400, "Transfer-Encoding with Content-Length");
        }
        s->flags |= REQSCAN_HAS_TE;
        s->sub = REQSCAN_SUB_SEP;
        break;
    case REQSCAN_HOST:
        /* RFC 9112 §3.2: more than one Host line MUST get 400. */
        if (s->flags & REQSCAN_HAS_HOST) return reqscan_fail(s, 400, "duplicate Host");
        s->flags |= REQSCAN_HAS_HOST;
        break;
    default:
        break;
    }
    s->sub_len = 0;
    s->count = 0;
    s->state = RS_VALUE;
    return 0;
}

/* RFC 9112 §5: field-line = field-name ":" OWS field-value OWS. count is the length of the
 * value from its first non-OWS byte (trailing OWS included). */
static int reqscan_value(struct cw_reqscan *s, unsigned char c)
{
    if (c == '\r') {
        s->state = RS_VALUE_LF;
        return reqscan_value_end(s);
    }
    if (!reqscan_is_field_byte(c)) {
        if (c == '\n') return reqscan_fail(s, 400, "bare LF");
        return reqscan_fail(s, 400, c == 0 ? "NUL in field value" : "control byte in field value");
    }
    if (s->count == 0 && cw_is_ows(c)) return 0;
    if (++s->count > CW_LIMIT_HEADER_VALUE_BYTES) {
        return reqscan_fail(s, 431, "field value too long");
    }
    switch (s->kind) {
    case REQSCAN_CL:
        return reqscan_cl_byte(s, c);
    case REQSCAN_TE:
        return reqscan_te_byte(s, c);
    case REQSCAN_HOST:
        return reqscan_host_byte(s, c);
    default:
        return 0;
    }
}

/* RFC 9112 §6.3: Content-Length = 1*DIGIT; no sign, no list, no inner space. */
static int reqscan_cl_byte(struct cw_reqscan *s, unsigned char c)
{
    if (c >= '0' && c <= '9') {
        if (s->sub == REQSCAN_SUB_TRAIL) return reqscan_fail(s, 400, "Content-Length not a number");
        if (++s->sub_len > CW_LIMIT_CL_DIGITS)
            return reqscan_fail(s, 400, "Content-Length too big");
        s->content_length = s->content_length * 10 + (uint64_t)(c - '0');
        return 0;
    }
    if (cw_is_ows(c)) {
        s->sub = REQSCAN_SUB_TRAIL;
        return 0;
    }
    return reqscan_fail(s, 400, "Content-Length not a number");
}

/* RFC 9112 §3.2: Host = uri-host [ ":" port ]; a bad one MUST get 400. */
static int reqscan_host_byte(struct cw_reqscan *s, unsigned char c)
{
    if (reqscan_is_host_byte(c)) {
        if (s->sub == REQSCAN_SUB_TRAIL) return reqscan_fail(s, 400, "whitespace inside Host");
        if (++s->sub_len > CW_LIMIT_HOST_BYTES) return reqscan_fail(s, 400, "Host too long");
        return 0;
    }
    if (cw_is_ows(c)) {
        s->sub = REQSCAN_SUB_TRAIL;
        return 0;
    }
    return reqscan_fail(s, 400, "invalid byte in Host");
}

/* RFC 9112 §6.1: Transfer-Encoding = #transfer-coding. RFC 9110 §5.6.1: empty elements and
 * OWS around commas are tolerated. Codings are judged one by one as they end. */
static int reqscan_te_byte(struct cw_reqscan *s, unsigned char c)
{
    int rc;

    switch (s->sub) {
    case REQSCAN_SUB_SEP:
        if (c == ',' || cw_is_ows(c)) return 0;
        if (!reqscan_is_tchar(c)) return reqscan_fail(s, 400, "invalid byte in Transfer-Encoding");
        s->tok_len = 0;
        reqscan_tok_add(s, c);
        s->sub = REQSCAN_SUB_CODING;
        return 0;
    case REQSCAN_SUB_CODING:
        if (reqscan_is_tchar(c)) {
            reqscan_tok_add(s, c);
            return 0;
        }
        if (c != ',' && c != ';' && !cw_is_ows(c)) {
            return reqscan_fail(s, 400, "invalid byte in Transfer-Encoding");
        }
        rc = reqscan_te_coding(s);
        if (rc != 0) return rc;
        break;
    default:
        if (cw_is_ows(c)) return 0;
        break;
    }
    /* After a coding that passed, which can only be chunked. */
    if (c == ',') {
        s->sub = REQSCAN_SUB_SEP;
        return 0;
    }
    if (c == ';') return reqscan_fail(s, 400, "transfer-coding parameters");
    if (cw_is_ows(c)) {
        s->sub = REQSCAN_SUB_TRAIL;
        return 0;
    }
    return reqscan_fail(s, 400, "invalid byte in Transfer-Encoding");
}

/* RFC 9112 §6.1 and §6.3: we decode chunked and nothing else, so chunked must be the only
 * coding. An unknown or unsupported coding gets 501 (§6.1: "SHOULD respond with 501"); a
 * known coding after chunked gets 400 (§6.3: chunked not final "MUST respond with 400"). */
static int reqscan_te_coding(struct cw_reqscan *s)
{
    static const char *const known[] = {"chunked", "gzip",     "x-gzip",
                                        "deflate", "compress", "x-compress"};
    bool is_known = false;

    for (size_t i = 0; i < CW_ARRAY_LEN(known) && !is_known; i++) {
        is_known = reqscan_tok_is(s, known[i]);
    }
    s->sub_len++; /* codings on this line */
    if (!is_known) return reqscan_fail(s, 501, "unknown transfer-coding");
    if (s->flags & REQSCAN_CHUNKED) {
        return reqscan_fail(s, 400,
                            reqscan_tok_is(s, "chunked") ? "chunked repeated"
                                                         : "chunked is not the final coding");
    }
    if (!reqscan_tok_is(s, "chunked")) return reqscan_fail(s, 501, "unsupported transfer-coding");
    s->flags |= REQSCAN_CHUNKED;
    return 0;
}

/* The CR ending a field line: a framing value must not be empty. */
static int reqscan_value_end(struct cw_reqscan *s)
{
    int rc;

    switch (s->kind) {
    case REQSCAN_CL:
        if (s->sub_len == 0) return reqscan_fail(s, 400, "empty Content-Length");
        return 0;
    case REQSCAN_HOST:
        if (s->sub_len == 0) return reqscan_fail(s, 400, "empty Host");
        return 0;
    case REQSCAN_TE:
        if (s->sub == REQSCAN_SUB_CODING) {
            rc = reqscan_te_coding(s);
            if (rc != 0) return rc;
        }
        if (s->sub_len == 0) return reqscan_fail(s, 400, "empty Transfer-Encoding");
        return 0;
    default:
        return 0;
    }
}

/* The LF of a field line, or of the empty line ending the head or trailer section. */
static int reqscan_lf(struct cw_reqscan *s, unsigned char c)
{
    if (c != '\n') return reqscan_fail(s, 400, "CR without LF");
    if (s->state == RS_VALUE_LF) {
        s->state = RS_LINE;
        return 0;
    }
    if (s->flags & REQSCAN_TRAILER) {
        reqscan_request_done(s, s->pos + 1);
        return 0;
    }
    return reqscan_head_done(s);
}

/* RFC 9112 §6.3: the body is chunked, or Content-Length bytes, or empty. */
static int reqscan_head_done(struct cw_reqscan *s)
{
    /* RFC 9112 §3.2: an HTTP/1.1 request without Host MUST get 400. */
    if (s->version[1] == 1 && !(s->flags & REQSCAN_HAS_HOST)) {
        return reqscan_fail(s, 400, "HTTP/1.1 request without Host");
    }
    s->in_head = false;
    s->in_body = true;
    s->requests++;
    if (s->flags & REQSCAN_CHUNKED) {
        reqscan_chunk_begin(s);
    } else if (s->content_length > 0) {
        s->state = RS_BODY;
        s->remaining = s->content_length;
    } else {
        reqscan_request_done(s, s->pos + 1);
    }
    return 0;
}

/* end is the offset just past the request: the next one starts there. */
static void reqscan_request_done(struct cw_reqscan *s, uint64_t end)
{
    s->state = RS_START;
    s->in_body = false;
    s->req_start = end;
    s->empty_lines = 0;
    s->flags = 0;
}

static void reqscan_chunk_begin(struct cw_reqscan *s)
{
    s->state = RS_CHUNK_SIZE;
    s->remaining = 0;
    s->sub_len = 0;
    s->count = 0;
}

/* RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; last-chunk =
 * 1*("0") [ chunk-ext ] CRLF, then the trailer section (read by reqscan_line). */
static int reqscan_chunk(struct cw_reqscan *s, unsigned char c)
{
    int h;

    switch (s->state) {
    case RS_CHUNK_SIZE:
        h = reqscan_hex(c);
        if (h >= 0) {
            if (++s->sub_len > CW_LIMIT_CHUNK_SIZE_DIGITS) {
                return reqscan_fail(s, 400, "chunk size too big");
            }
            s->remaining = s->remaining * 16 + (uint64_t)h;
            return 0;
        }
        if (s->sub_len == 0) return reqscan_fail(s, 400, "chunk size not hex");
        return reqscan_chunk_line(s, c);
    case RS_CHUNK_BWS:
    case RS_CHUNK_EXT:
        return reqscan_chunk_line(s, c);
    case RS_CHUNK_LF:
        if (c != '\n') return reqscan_fail(s, 400, "CR without LF");
        if (s->remaining > 0) {
            s->state = RS_CHUNK_DATA;
            return 0;
        }
        s->flags |= REQSCAN_TRAILER;
        s->trailer_bytes = 0;
        s->fields = 0;
        s->state = RS_LINE;
        return 0;
    case RS_CHUNK_DATA_CR:
        if (c != '\r') return reqscan_fail(s, 400, "chunk data not followed by CRLF");
        s->state = RS_CHUNK_DATA_LF;
        return 0;
    default: /* RS_CHUNK_DATA_LF */
        if (c != '\n') return reqscan_fail(s, 400, "chunk data not followed by CRLF");
        reqscan_chunk_begin(s);
        return 0;
    }
}

/* The rest of a chunk line after the size: BWS, then ';' and extensions, up to the CR.
 * RFC 9112 §7.1.1 allows BWS before ';' only; "5 \r\n" is rejected, since parsers that
 * stop at the space and parsers that reject it would frame the body differently. */
static int reqscan_chunk_line(struct cw_reqscan *s, unsigned char c)
{
    if (c == '\r') {
        if (s->state == RS_CHUNK_BWS) return reqscan_fail(s, 400, "whitespace after chunk size");
        s->state = RS_CHUNK_LF;
        return 0;
    }
    if (++s->count > CW_LIMIT_CHUNK_EXT_BYTES) {
        return reqscan_fail(s, 400, "chunk extensions too long");
    }
    if (s->state == RS_CHUNK_EXT) {
        if (reqscan_is_field_byte(c)) return 0;
        return reqscan_fail(s, 400, c == '\n' ? "bare LF" : "invalid byte in chunk extension");
    }
    if (c == ';') {
        s->state = RS_CHUNK_EXT;
        return 0;
    }
    if (cw_is_ows(c)) {
        s->state = RS_CHUNK_BWS;
        return 0;
    }
    return reqscan_fail(s, 400, c == '\n' ? "bare LF" : "invalid byte after chunk size");
}
