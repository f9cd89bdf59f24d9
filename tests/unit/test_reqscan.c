/* tests/unit/test_reqscan.c - the streaming reader of request framing.
 *
 * Every stream a test scans is fed whole, byte by byte and in two halves, and the three
 * verdicts must agree (scan()); test_reqscan_split_anywhere also tries every split point. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/limits.h"
#include "core/reqscan.h"

Suite *reqscan_suite(void);

struct scan_out {
    int rc;
    int status;
    const char *reason;
    uint64_t pos;
    uint64_t req_start;
    unsigned requests;
    bool in_head;
    bool idle;
};

#define GET_HEAD  "GET / HTTP/1.1\r\nHost: a\r\n"
#define POST_HEAD "POST / HTTP/1.1\r\nHost: a\r\n"
#define CHUNKED   POST_HEAD "Transfer-Encoding: chunked\r\n\r\n"

/* Big streams for the limit tests; static so that fork mode gives each test a fresh copy. */
static char big[4 * CW_LIMIT_REQUEST_HEAD_BYTES];

static struct scan_out scan_result(const struct cw_reqscan *s, int rc)
{
    struct scan_out o = {rc,           s->status,   s->reason,  s->pos,
                         s->req_start, s->requests, s->in_head, cw_reqscan_is_idle(s)};
    return o;
}

/* Feeds p[0..at) then p[at..len). */
static struct scan_out scan_split(const char *p, size_t len, size_t at)
{
    struct cw_reqscan s;
    int rc;

    cw_reqscan_init(&s);
    rc = cw_reqscan_feed(&s, p, at);
    if (rc == 0) rc = cw_reqscan_feed(&s, p + at, len - at);
    return scan_result(&s, rc);
}

static struct scan_out scan_bytewise(const char *p, size_t len)
{
    struct cw_reqscan s;
    int rc = 0;

    cw_reqscan_init(&s);
    for (size_t i = 0; i < len && rc == 0; i++) {
        rc = cw_reqscan_feed(&s, p + i, 1);
    }
    return scan_result(&s, rc);
}

static bool scan_same(struct scan_out a, struct scan_out b)
{
    return a.rc == b.rc && a.status == b.status && a.reason == b.reason && a.pos == b.pos &&
           a.req_start == b.req_start && a.requests == b.requests && a.in_head == b.in_head &&
           a.idle == b.idle;
}

/* Scans p whole, byte by byte and in two halves; fails the test unless all agree. */
static struct scan_out scan(const char *p, size_t len)
{
    struct scan_out whole = scan_split(p, len, len);
    struct scan_out bytes = scan_bytewise(p, len);
    struct scan_out halves = scan_split(p, len, len / 2);

    ck_assert_msg(scan_same(whole, bytes), "byte by byte differs: pos %llu vs %llu",
                  (unsigned long long)whole.pos, (unsigned long long)bytes.pos);
    ck_assert_msg(scan_same(whole, halves), "halves differ: pos %llu vs %llu",
                  (unsigned long long)whole.pos, (unsigned long long)halves.pos);
    if (whole.rc == 0) {
        ck_assert_int_eq(whole.status, 0);
        ck_assert_ptr_null(whole.reason);
        ck_assert_uint_eq(whole.pos, len);
    } else {
        ck_assert_int_eq(whole.rc, -EBADMSG);
        ck_assert_ptr_nonnull(whole.reason);
        ck_assert_uint_lt(whole.pos, len);
        ck_assert_uint_le(whole.req_start, whole.pos);
    }
    return whole;
}

/* A stream of complete, well-formed requests. */
static void accept_at(const char *p, size_t len, int line)
{
    struct scan_out o = scan(p, len);

    ck_assert_msg(o.rc == 0, "line %d: rejected %d (%s) at %llu", line, o.status,
                  o.reason ? o.reason : "", (unsigned long long)o.pos);
    ck_assert_msg(o.idle, "line %d: stream ends inside a request", line);
    ck_assert_msg(o.req_start == len, "line %d: req_start %llu", line,
                  (unsigned long long)o.req_start);
}

static struct scan_out reject_at(const char *p, size_t len, int status, int line)
{
    struct scan_out o = scan(p, len);

    ck_assert_msg(o.rc == -EBADMSG && o.status == status, "line %d: rc %d status %d (%s), want %d",
                  line, o.rc, o.status, o.reason ? o.reason : "", status);
    return o;
}

#define ACCEPT(lit)     accept_at(lit, sizeof(lit) - 1, __LINE__)
#define REJECT(lit, st) reject_at(lit, sizeof(lit) - 1, st, __LINE__)
#define SCAN_LIT(lit)   scan(lit, sizeof(lit) - 1)

static size_t put(char *buf, size_t at, const char *s)
{
    size_t n = strlen(s);

    memcpy(buf + at, s, n);
    return at + n;
}

static size_t put_n(char *buf, size_t at, char c, size_t n)
{
    memset(buf + at, c, n);
    return at + n;
}

/* Writes field lines "X-<i>: vvv\r\n" and the final CRLF, total bytes in all (>= 2, and
 * not 3..9: a field line takes at least 8). */
static size_t put_fields(char *buf, size_t at, size_t total)
{
    size_t rem = total - 2;

    for (unsigned i = 0; rem > 0; i++) {
        size_t v = rem - 7 > 8000 ? 8000 : rem - 7;
        char name[8];

        if (rem - 7 > 8000 && rem - 7 - 8000 < 8) v = 4000;
        snprintf(name, sizeof(name), "X%02u: ", i % 100);
        at = put(buf, at, name);
        at = put_n(buf, at, 'v', v);
        at = put(buf, at, "\r\n");
        rem -= v + 7;
    }
    return put(buf, at, "\r\n");
}

START_TEST(test_reqscan_simple_get)
{
    static const char req[] = GET_HEAD "\r\n";
    struct cw_reqscan s;

    cw_reqscan_init(&s);
    ck_assert(cw_reqscan_is_idle(&s));
    ck_assert_int_eq(cw_reqscan_feed(&s, req, sizeof(req) - 1), 0);
    ck_assert_uint_eq(s.pos, sizeof(req) - 1);
    ck_assert_uint_eq(s.requests, 1);
    ck_assert(!s.in_head);
    ck_assert(cw_reqscan_is_idle(&s));
    ck_assert_int_eq(s.status, 0);
    ACCEPT(GET_HEAD "\r\n");
    ACCEPT("GET http://a.example/x?y=1 HTTP/1.0\r\n\r\n");
    ACCEPT("OPTIONS * HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Empty:\r\nX-Ows: \t \r\n\r\n");
    ACCEPT("");
}
END_TEST

START_TEST(test_reqscan_empty_lines_before_request)
{
    struct scan_out o;

    ACCEPT("\r\n" GET_HEAD "\r\n");
    ACCEPT("\r\n\r\n\r\n\r\n" GET_HEAD "\r\n");
    o = REJECT("\r\n\r\n\r\n\r\n\r\n" GET_HEAD "\r\n", 400);
    ck_assert_uint_eq(o.pos, 8);
    ck_assert_uint_eq(o.req_start, 0);
    REJECT("\n" GET_HEAD "\r\n", 400);
    REJECT("\r\r\n" GET_HEAD "\r\n", 400);
    /* The count starts again for each request. */
    ACCEPT(GET_HEAD "\r\n\r\n\r\n\r\n\r\n" GET_HEAD "\r\n\r\n\r\n\r\n\r\n" GET_HEAD "\r\n");
    o = REJECT(GET_HEAD "\r\n\r\n\r\n\r\n\r\n\r\n" GET_HEAD "\r\n", 400);
    ck_assert_uint_eq(o.req_start, sizeof(GET_HEAD "\r\n") - 1);
    ck_assert_uint_eq(o.requests, 1);
    ck_assert(!o.in_head);
}
END_TEST

START_TEST(test_reqscan_method)
{
    ACCEPT("M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n");
    ACCEPT("!#$%&'*+-.^_`|~09azAZ / HTTP/1.1\r\nHost: a\r\n\r\n");
    ACCEPT("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\nHost: a\r\n\r\n"); /* 32 */
    REJECT("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GE\x01T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("\x80GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_single_spaces)
{
    REJECT("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    REJECT("GET /\r\nHost: a\r\n\r\n", 400);
    REJECT("GET\r\nHost: a\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_target_bytes)
{
    char line[200];
    size_t n = 0;

    n = put(line, n, "GET /");
    for (int c = 0x21; c <= 0x7e; c++) {
        line[n++] = (char)c;
    }
    n = put(line, n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    accept_at(line, n, __LINE__);
    REJECT("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /a\x80 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /a\xff HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_target_limit)
{
    size_t n = put(big, 0, "GET /");
    struct scan_out o;

    n = put_n(big, n, 'a', CW_LIMIT_URL_BYTES - 1);
    n = put(big, n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    accept_at(big, n, __LINE__);
    n = put(big, 0, "GET /");
    n = put_n(big, n, 'a', CW_LIMIT_URL_BYTES);
    n = put(big, n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    o = reject_at(big, n, 414, __LINE__);
    ck_assert_uint_eq(o.pos, 4 + CW_LIMIT_URL_BYTES);
}
END_TEST

START_TEST(test_reqscan_version)
{
    ACCEPT("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ACCEPT("GET / HTTP/1.0\r\n\r\n");
    REJECT("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    REJECT("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
    REJECT("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
    REJECT("GET / HTTP/9.9\r\n", 505);
    REJECT("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/11.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/2\r\nHost: a\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_crlf_only)
{
    ACCEPT("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    REJECT("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
    REJECT("GET / HTTP/1.1\rHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\n\rX", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nX-C: a\rTransfer-Encoding: chunked\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nX-C: a\nb\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nX-C\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nX-C\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_field_name)
{
    struct scan_out o;

    ACCEPT(GET_HEAD "!#$%&'*+-.^_`|~09azAZ: 1\r\n\r\n");
    o = REJECT(GET_HEAD "X-A : 1\r\n\r\n", 400);
    ck_assert_str_eq(o.reason, "whitespace before colon");
    ck_assert_uint_eq(o.pos, sizeof(GET_HEAD "X-A") - 1);
    o = REJECT(GET_HEAD "X-A\t: 1\r\n\r\n", 400);
    ck_assert_str_eq(o.reason, "whitespace before colon");
    REJECT(GET_HEAD "X(A: 1\r\n\r\n", 400);
    REJECT(GET_HEAD "X\"A: 1\r\n\r\n", 400);
    REJECT(GET_HEAD "X\x01"
                    "A: 1\r\n\r\n",
           400);
    REJECT(GET_HEAD "X\x7f"
                    "A: 1\r\n\r\n",
           400);
    REJECT(GET_HEAD "X\xc3\xa9: 1\r\n\r\n", 400);
    REJECT(GET_HEAD "X\0A: 1\r\n\r\n", 400);
    REJECT(GET_HEAD ": 1\r\n\r\n", 400);
    REJECT(GET_HEAD "X-A 1\r\n\r\n", 400);
    REJECT(GET_HEAD "\x01X: 1\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_field_name_limit)
{
    size_t n = put(big, 0, GET_HEAD);
    struct scan_out o;

    n = put_n(big, n, 'n', CW_LIMIT_HEADER_NAME_BYTES);
    n = put(big, n, ": 1\r\n\r\n");
    accept_at(big, n, __LINE__);
    n = put(big, 0, GET_HEAD);
    n = put_n(big, n, 'n', CW_LIMIT_HEADER_NAME_BYTES + 1);
    n = put(big, n, ": 1\r\n\r\n");
    o = reject_at(big, n, 431, __LINE__);
    ck_assert_uint_eq(o.pos, sizeof(GET_HEAD) - 1 + CW_LIMIT_HEADER_NAME_BYTES);
}
END_TEST

START_TEST(test_reqscan_field_value_bytes)
{
    ACCEPT(GET_HEAD "X: !~ \t\x80\xff\xc3\xa9 a \r\n\r\n");
    ACCEPT(GET_HEAD "X:a\r\n\r\n");
    REJECT(GET_HEAD "X: a\0b\r\n\r\n", 400);
    REJECT(GET_HEAD "X: a\x01"
                    "b\r\n\r\n",
           400);
    REJECT(GET_HEAD "X: a\x1f"
                    "b\r\n\r\n",
           400);
    REJECT(GET_HEAD "X: a\x7f"
                    "b\r\n\r\n",
           400);
    REJECT(GET_HEAD "X: \x0b\r\n\r\n", 400);
    REJECT(GET_HEAD "X: \x0c\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_field_value_limit)
{
    size_t n = put(big, 0, GET_HEAD "X: ");
    struct scan_out o;

    n = put_n(big, n, 'v', CW_LIMIT_HEADER_VALUE_BYTES);
    n = put(big, n, "\r\n\r\n");
    accept_at(big, n, __LINE__);
    /* Leading OWS is not part of the value. */
    n = put(big, 0, GET_HEAD "X: \t \t");
    n = put_n(big, n, 'v', CW_LIMIT_HEADER_VALUE_BYTES);
    n = put(big, n, "\r\n\r\n");
    accept_at(big, n, __LINE__);
    n = put(big, 0, GET_HEAD "X: ");
    n = put_n(big, n, 'v', CW_LIMIT_HEADER_VALUE_BYTES + 1);
    n = put(big, n, "\r\n\r\n");
    o = reject_at(big, n, 431, __LINE__);
    ck_assert_uint_eq(o.pos, sizeof(GET_HEAD "X: ") - 1 + CW_LIMIT_HEADER_VALUE_BYTES);
}
END_TEST

START_TEST(test_reqscan_obs_fold)
{
    REJECT(GET_HEAD "X-A: one\r\n two\r\n\r\n", 400);
    REJECT(GET_HEAD "X-A: one\r\n\ttwo\r\n\r\n", 400);
    REJECT(GET_HEAD "C: 5\r\n ontent-Length\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400);
    REJECT(GET_HEAD " \r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_field_count_limit)
{
    size_t n = put(big, 0, GET_HEAD); /* Host is one of the fields */

    for (int i = 1; i < CW_LIMIT_REQUEST_FIELDS; i++) {
        n = put(big, n, "X: 1\r\n");
    }
    put(big, n, "\r\n");
    accept_at(big, n + 2, __LINE__);
    n = put(big, n, "X: 1\r\n\r\n");
    reject_at(big, n, 431, __LINE__);
}
END_TEST

START_TEST(test_reqscan_head_limit)
{
    const size_t line = sizeof(GET_HEAD) - 1;
    size_t n = put(big, 0, GET_HEAD);
    struct scan_out o;

    n = put_fields(big, n, CW_LIMIT_REQUEST_HEAD_BYTES - line);
    ck_assert_uint_eq(n, CW_LIMIT_REQUEST_HEAD_BYTES);
    accept_at(big, n, __LINE__);
    n = put(big, 0, GET_HEAD);
    n = put_fields(big, n, CW_LIMIT_REQUEST_HEAD_BYTES + 1 - line);
    o = reject_at(big, n, 431, __LINE__);
    ck_assert_uint_eq(o.pos, CW_LIMIT_REQUEST_HEAD_BYTES);
    /* The limit falls inside a field value. */
    n = put(big, 0, GET_HEAD);
    for (int i = 0; i < 4; i++) {
        n = put(big, n, "X: ");
        n = put_n(big, n, 'v', 8000);
        n = put(big, n, "\r\n");
    }
    n = put(big, n, "Y: ");
    n = put_n(big, n, 'v', 1000);
    n = put(big, n, "\r\n\r\n");
    o = reject_at(big, n, 431, __LINE__);
    ck_assert_uint_eq(o.pos, CW_LIMIT_REQUEST_HEAD_BYTES);
    ck_assert_str_eq(o.reason, "request head too large");
    /* Leading empty lines are not part of the head; the second request has its own. */
    n = put(big, 0, "\r\n\r\n" GET_HEAD);
    n = put_fields(big, n, CW_LIMIT_REQUEST_HEAD_BYTES - line);
    n = put(big, n, GET_HEAD);
    n = put_fields(big, n, CW_LIMIT_REQUEST_HEAD_BYTES - line);
    accept_at(big, n, __LINE__);
}
END_TEST

START_TEST(test_reqscan_content_length)
{
    struct scan_out o;

    ACCEPT(POST_HEAD "Content-Length: 0\r\n\r\n");
    ACCEPT(POST_HEAD "Content-Length: 5\r\n\r\nhello");
    ACCEPT(POST_HEAD "content-LENGTH:  \t007 \t\r\n\r\n1234567");
    ACCEPT("POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nab");
    o = scan(POST_HEAD "Content-Length: 999999999999999999\r\n\r\nabc",
             sizeof(POST_HEAD "Content-Length: 999999999999999999\r\n\r\nabc") - 1);
    ck_assert_int_eq(o.rc, 0);
    ck_assert(!o.idle);
    ck_assert_uint_eq(o.requests, 1);
    REJECT(POST_HEAD "Content-Length: 1000000000000000000\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length: 0000000000000000000\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length: 0\r\nContent-Length: 40\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length: 5\r\ncontent-length: 5\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length : 30\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length: +5\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length: -5\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length: 5,5\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length: 5, 5\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length: 5 5\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length: 0x5\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length: 5a\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length: \"5\"\r\n\r\nhello", 400);
    REJECT(POST_HEAD "Content-Length:\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length:  \r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_content_length_body)
{
    static const char s[] =
        POST_HEAD "Content-Length: 9\r\n\r\n\0\r\n \x01\xff\n\r\t" GET_HEAD "\r\n";
    struct scan_out o = scan(s, sizeof(s) - 1);

    ck_assert_int_eq(o.rc, 0);
    ck_assert_uint_eq(o.requests, 2);
    ck_assert(o.idle);
    /* A body cut short leaves the scanner inside the request. */
    o = scan(s, sizeof(POST_HEAD "Content-Length: 9\r\n\r\n") + 3);
    ck_assert_int_eq(o.rc, 0);
    ck_assert(!o.idle);
    ck_assert(!o.in_head);
    ck_assert_uint_eq(o.req_start, 0);
}
END_TEST

START_TEST(test_reqscan_transfer_encoding_accepted)
{
    ACCEPT(POST_HEAD "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    ACCEPT(POST_HEAD "Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n");
    ACCEPT(POST_HEAD "transfer-encoding: Chunked\r\n\r\n0\r\n\r\n");
    ACCEPT(POST_HEAD "Transfer-Encoding: \t, ,chunked , \t\r\n\r\n0\r\n\r\n");
    ACCEPT(POST_HEAD "Transfer-Encoding:chunked\r\n\r\n0\r\n\r\n");
    ACCEPT(POST_HEAD "Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n");
}
END_TEST

START_TEST(test_reqscan_transfer_encoding_rejected)
{
    REJECT(POST_HEAD "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: identity\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: x-gzip, chunked\r\n\r\n0\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: deflate\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: compress\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: x-compress\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: gzip\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: gzip;q=1\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: chunkedchunkedchunkedchunked\r\n\r\n", 501);
    REJECT(POST_HEAD "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
           400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked ;q=1\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked x\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked/\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding:\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: \t \r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: , ,\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_te_with_cl)
{
    REJECT(POST_HEAD "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    REJECT(POST_HEAD "Content-Length: 0\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_te_in_http10)
{
    ACCEPT("POST / HTTP/1.0\r\nContent-Length: 1\r\n\r\nx");
    REJECT("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
    REJECT("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_host)
{
    ACCEPT("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n");
    ACCEPT("GET / HTTP/1.1\r\nhost: [::1]:80\r\n\r\n");
    ACCEPT("GET / HTTP/1.1\r\nHOST: [fe80::1%25eth0]\r\n\r\n");
    ACCEPT("GET / HTTP/1.1\r\nHost: a-b.c_d~!$&'()*+,;=%20\r\n\r\n");
    ACCEPT("GET / HTTP/1.1\r\nHost:\t a \t\r\n\r\n");
    ACCEPT("GET / HTTP/1.0\r\n\r\n");
    ACCEPT("GET / HTTP/1.0\r\nHost: a\r\n\r\n");
    REJECT("GET / HTTP/1.1\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
    REJECT("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost : evil\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost:  \r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400);
    REJECT("GET / HTTP/1.1\r\nHost: a\xc3\xa9\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_host_limit)
{
    size_t n = put(big, 0, "GET / HTTP/1.1\r\nHost: ");

    n = put_n(big, n, 'h', CW_LIMIT_HOST_BYTES);
    n = put(big, n, "\r\n\r\n");
    accept_at(big, n, __LINE__);
    n = put(big, 0, "GET / HTTP/1.1\r\nHost: ");
    n = put_n(big, n, 'h', CW_LIMIT_HOST_BYTES + 1);
    n = put(big, n, "\r\n\r\n");
    reject_at(big, n, 400, __LINE__);
}
END_TEST

START_TEST(test_reqscan_chunked_body)
{
    ACCEPT(CHUNKED "5\r\nhello\r\n0\r\n\r\n");
    ACCEPT(CHUNKED "a\r\n0123456789\r\nA\r\n0123456789\r\nF\r\n0123456789abcde\r\n000\r\n\r\n");
    ACCEPT(CHUNKED "5\r\n\r\n\0\r\n\r\n0\r\n\r\n");
    ACCEPT(CHUNKED
           "5;a=b;c=\"d e\"\r\nhello\r\n3 ;x\r\nabc\r\n2\t; y = 1 \r\nab\r\n0;last\r\n\r\n");
    ACCEPT(CHUNKED "4;\x80\xff\t!~\r\nabcd\r\n0\r\n\r\n");
    ACCEPT(CHUNKED "00000000000000A\r\n0123456789\r\n0\r\n\r\n"); /* 15 digits */
    REJECT(CHUNKED "000000000000000A\r\n0123456789\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "g\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "-5\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "+5\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "0x5\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED " 5\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5 \r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5 x\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5\rhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5;a\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5;a\x01\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5;a\x7f\r\nhello\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5\r\nhelloX\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5\r\nhello\n0\r\n\r\n", 400);
    REJECT(CHUNKED "5\r\nhello\r0\r\n\r\n", 400);
    REJECT(CHUNKED "5\r\nhell\r\n0\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\n\n", 400);
    REJECT(CHUNKED "0\r\n\rX", 400);
    REJECT(CHUNKED "0\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_chunk_ext_limit)
{
    size_t n = put(big, 0, CHUNKED "1;");

    n = put_n(big, n, 'e', CW_LIMIT_CHUNK_EXT_BYTES - 1);
    n = put(big, n, "\r\nx\r\n0\r\n\r\n");
    accept_at(big, n, __LINE__);
    n = put(big, 0, CHUNKED "1;");
    n = put_n(big, n, 'e', CW_LIMIT_CHUNK_EXT_BYTES);
    n = put(big, n, "\r\nx\r\n0\r\n\r\n");
    reject_at(big, n, 400, __LINE__);
    /* The limit is per chunk line. */
    n = put(big, 0, CHUNKED "1;");
    n = put_n(big, n, 'e', CW_LIMIT_CHUNK_EXT_BYTES - 1);
    n = put(big, n, "\r\nx\r\n0;");
    n = put_n(big, n, 'e', CW_LIMIT_CHUNK_EXT_BYTES - 1);
    n = put(big, n, "\r\n\r\n");
    accept_at(big, n, __LINE__);
}
END_TEST

START_TEST(test_reqscan_trailers)
{
    ACCEPT(CHUNKED "5\r\nhello\r\n0\r\nX-T: 1\r\nY: \x80 a\t\r\n\r\n");
    ACCEPT(CHUNKED "0\r\nX-Checksum: abc\r\n\r\n" GET_HEAD "\r\n");
    REJECT(CHUNKED "0\r\nX-T: 1\r\n 2\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\n X-T: 1\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nX-T : 1\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nX-T: a\rb\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nX-T: a\nb\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nX(T: 1\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nX-T 1\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nContent-Length: 5\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nHost: b\r\n\r\n", 400);
    REJECT(CHUNKED "0\r\nX-T: a\0b\r\n\r\n", 400);
}
END_TEST

START_TEST(test_reqscan_trailer_limit)
{
    const size_t head = sizeof(CHUNKED "0\r\n") - 1;
    size_t n = put(big, 0, CHUNKED "0\r\n");
    struct scan_out o;

    n = put_fields(big, n, CW_LIMIT_REQUEST_HEAD_BYTES);
    accept_at(big, n, __LINE__);
    n = put(big, 0, CHUNKED "0\r\n");
    n = put_fields(big, n, CW_LIMIT_REQUEST_HEAD_BYTES + 1);
    o = reject_at(big, n, 431, __LINE__);
    ck_assert_uint_eq(o.pos, head + CW_LIMIT_REQUEST_HEAD_BYTES);
    ck_assert_uint_eq(o.requests, 1);
    ck_assert_uint_eq(o.req_start, 0);
    /* The limit falls inside a trailer field value. */
    n = put(big, 0, CHUNKED "0\r\n");
    for (int i = 0; i < 4; i++) {
        n = put(big, n, "X: ");
        n = put_n(big, n, 'v', 8100);
        n = put(big, n, "\r\n");
    }
    n = put(big, n, "Y: ");
    n = put_n(big, n, 'v', 1000);
    n = put(big, n, "\r\n\r\n");
    o = reject_at(big, n, 431, __LINE__);
    ck_assert_uint_eq(o.pos, head + CW_LIMIT_REQUEST_HEAD_BYTES);
    ck_assert_str_eq(o.reason, "trailer section too large");
}
END_TEST

START_TEST(test_reqscan_pipelined)
{
    static const char one[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    static const char two[] = "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    static const char all[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                              "GET /3 HTTP/1.1\r\nHost : a\r\n\r\n";
    struct scan_out o = REJECT(all, 400);

    ck_assert_uint_eq(o.requests, 2);
    ck_assert_uint_eq(o.req_start, sizeof(one) - 1 + sizeof(two) - 1);
    ck_assert_uint_eq(o.pos, o.req_start + (sizeof("GET /3 HTTP/1.1\r\nHost") - 1));
    ck_assert(o.in_head);
    /* The bytes before req_start are complete requests on their own. */
    o = scan(all, o.req_start);
    ck_assert_int_eq(o.rc, 0);
    ck_assert(o.idle);
    ck_assert_uint_eq(o.requests, 2);

    ACCEPT("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
           "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
           "\r\n"
           "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n"
           "T: 1\r\n\r\n"
           "HEAD /4 HTTP/1.0\r\n\r\n");
    o = SCAN_LIT(
        "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n"
        "T: 1\r\n\r\n"
        "HEAD /4 HTTP/1.0\r\n\r\n");
    ck_assert_uint_eq(o.requests, 3);
}
END_TEST

START_TEST(test_reqscan_error_in_body_keeps_request_start)
{
    static const char s[] = GET_HEAD "\r\n" CHUNKED "5\r\nhelloX";
    struct scan_out o = REJECT(s, 400);

    ck_assert_uint_eq(o.requests, 2);
    ck_assert_uint_eq(o.req_start, sizeof(GET_HEAD "\r\n") - 1);
    ck_assert(!o.in_head);
}
END_TEST

START_TEST(test_reqscan_in_head_tracking)
{
    static const char s[] = "\r\n" GET_HEAD "\r\n";
    struct cw_reqscan sc;

    cw_reqscan_init(&sc);
    ck_assert_int_eq(cw_reqscan_feed(&sc, s, 2), 0);
    ck_assert(!sc.in_head);
    ck_assert(cw_reqscan_is_idle(&sc));
    ck_assert_int_eq(cw_reqscan_feed(&sc, s + 2, 1), 0);
    ck_assert(sc.in_head);
    ck_assert(!cw_reqscan_is_idle(&sc));
    ck_assert_uint_eq(sc.req_start, 2);
    ck_assert_int_eq(cw_reqscan_feed(&sc, s + 3, sizeof(s) - 1 - 4), 0);
    ck_assert(sc.in_head);
    ck_assert_uint_eq(sc.requests, 0);
    ck_assert_int_eq(cw_reqscan_feed(&sc, s + sizeof(s) - 2, 1), 0);
    ck_assert(!sc.in_head);
    ck_assert_uint_eq(sc.requests, 1);
    ck_assert_uint_eq(sc.req_start, sizeof(s) - 1);
    ck_assert(cw_reqscan_is_idle(&sc));
}
END_TEST

START_TEST(test_reqscan_error_is_sticky)
{
    static const char bad[] = GET_HEAD "X : 1\r\n\r\n";
    static const char good[] = GET_HEAD "\r\n";
    struct cw_reqscan s;
    uint64_t pos;

    cw_reqscan_init(&s);
    ck_assert_int_eq(cw_reqscan_feed(&s, bad, sizeof(bad) - 1), -EBADMSG);
    pos = s.pos;
    ck_assert_int_eq(s.status, 400);
    ck_assert_int_eq(cw_reqscan_feed(&s, good, sizeof(good) - 1), -EBADMSG);
    ck_assert_int_eq(cw_reqscan_feed(&s, good, 0), -EBADMSG);
    ck_assert_uint_eq(s.pos, pos);
    ck_assert_int_eq(s.status, 400);
    ck_assert_str_eq(s.reason, "whitespace before colon");
    ck_assert(!cw_reqscan_is_idle(&s));
}
END_TEST

START_TEST(test_reqscan_attacks)
{
    static const struct {
        const char *s;
        size_t len;
        int status;
    } cases[] = {
#define CASE(lit, st) {lit, sizeof(lit) - 1, st}
        CASE("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        CASE(POST_HEAD "Content-Length: 0\r\nContent-Length: 40\r\n\r\n", 400),
        CASE(POST_HEAD "Content-Length : 30\r\n\r\n", 400),
        CASE("GET / HTTP/1.1\r\nHost : evil\r\n\r\n", 400),
        CASE(POST_HEAD "X-C: a\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        CASE(GET_HEAD "X-A: a\0Transfer-Encoding: chunked\r\n\r\n", 400),
        CASE(GET_HEAD "X-\x01"
                      "A: a\r\n\r\n",
             400),
        CASE(GET_HEAD "X-A: one\r\n two\r\n\r\n", 400),
        CASE(POST_HEAD "C: 5\r\n ontent-Length: 5\r\n\r\nhello", 400),
        CASE(POST_HEAD "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
        CASE(POST_HEAD "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 501),
        CASE(POST_HEAD "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
        CASE(POST_HEAD "Transfer-Encoding: identity\r\n\r\n", 501),
        CASE(POST_HEAD "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
        CASE(POST_HEAD "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
        CASE("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
#undef CASE
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        struct scan_out o = reject_at(cases[i].s, cases[i].len, cases[i].status, __LINE__);
        ck_assert_msg(o.requests == 0, "case %zu: requests %u", i, o.requests);
        ck_assert_msg(o.req_start == 0, "case %zu: req_start", i);
    }
}
END_TEST

/* Streams whose verdict must not depend on where the input is cut. */
static const struct {
    const char *s;
    size_t len;
    int status;
} split_cases[] = {
#define CASE(lit, st)                                                                              \
    {                                                                                              \
        lit, sizeof(lit) - 1, st                                                                   \
    }
    CASE("\r\n" GET_HEAD "X: \x80\t\r\n\r\n", 0),
    CASE(GET_HEAD "\r\n" POST_HEAD "Content-Length: 4\r\n\r\n\r\n\r\n" GET_HEAD "\r\n", 0),
    CASE(CHUNKED "5;e=\"1\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: x\r\n\r\n" GET_HEAD "\r\n", 0),
    CASE("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", 0),
    CASE(GET_HEAD "\r\n" GET_HEAD "X : y\r\n\r\n", 400),
    CASE(GET_HEAD "\r\n\r\n\r\n\r\n\r\n\r\n", 400),
    CASE(POST_HEAD "Content-Length: 3\r\n\r\nabc" GET_HEAD "Content-Length: 1\r\n"
                   "Content-Length: 1\r\n\r\nx",
         400),
    CASE(POST_HEAD "Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    CASE(POST_HEAD "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", 400),
    CASE(CHUNKED "0\r\nT: 1\r\n t\r\n\r\n", 400),
    CASE("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    CASE("GET /\x7f HTTP/1.1\r\n", 400),
    CASE(GET_HEAD "X: a\rb\r\n\r\n", 400),
    CASE(GET_HEAD "\r\nGET / HTTP/1.1\r\n\r\n", 400),
    CASE(GET_HEAD "Host: b\r\n\r\n", 400),
#undef CASE
};

START_TEST(test_reqscan_split_anywhere)
{
    for (size_t i = 0; i < CW_ARRAY_LEN(split_cases); i++) {
        const char *p = split_cases[i].s;
        size_t len = split_cases[i].len;
        struct scan_out whole = scan_split(p, len, len);
        struct scan_out bytes = scan_bytewise(p, len);

        ck_assert_msg(whole.status == split_cases[i].status, "case %zu: status %d (%s)", i,
                      whole.status, whole.reason ? whole.reason : "");
        ck_assert_msg(scan_same(whole, bytes), "case %zu: byte by byte differs", i);
        for (size_t at = 0; at <= len; at++) {
            ck_assert_msg(scan_same(whole, scan_split(p, len, at)), "case %zu: split at %zu", i,
                          at);
        }
    }
}
END_TEST

/* Every byte value in every run the scanner takes by class, against the RFC lists written
 * out here: a wrong bit in the scanner's class table changes a verdict. */
static bool oracle_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool oracle_tchar(int c)
{
    return oracle_alnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool oracle_host(int c)
{
    return oracle_alnum(c) || (c != 0 && strchr("-._~!$&'()*+,;=:[]%", c) != NULL);
}

static bool oracle_field(int c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t';
}

static void every_byte_at(const char *before, int c, const char *after, bool want, int line)
{
    char buf[128];
    size_t n = put(buf, 0, before);
    struct scan_out o;

    buf[n++] = (char)c;
    n = put(buf, n, after);
    o = scan(buf, n);
    ck_assert_msg((o.rc == 0) == want, "line %d: byte 0x%02x %s (%s)", line, c,
                  o.rc == 0 ? "accepted" : "rejected", o.reason ? o.reason : "");
}

START_TEST(test_reqscan_every_byte)
{
    for (int c = 0; c < 256; c++) {
        every_byte_at("G", c, "T / HTTP/1.1\r\nHost: a\r\n\r\n", oracle_tchar(c), __LINE__);
        every_byte_at("GET /a", c, "b HTTP/1.1\r\nHost: a\r\n\r\n", c >= 0x21 && c <= 0x7e,
                      __LINE__);
        /* A colon ends the name "X"; "A: 1" is then a valid value. */
        every_byte_at(GET_HEAD "X", c, "A: 1\r\n\r\n", oracle_tchar(c) || c == ':', __LINE__);
        every_byte_at(GET_HEAD "X: a", c, "b\r\n\r\n", oracle_field(c), __LINE__);
        every_byte_at("GET / HTTP/1.1\r\nHost: a", c, "b\r\n\r\n", oracle_host(c), __LINE__);
        every_byte_at(CHUNKED "1;e", c, "x\r\nz\r\n0\r\n\r\n", oracle_field(c), __LINE__);
    }
}
END_TEST

Suite *reqscan_suite(void)
{
    Suite *s = suite_create("reqscan");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_reqscan_simple_get);
    tcase_add_test(tc, test_reqscan_empty_lines_before_request);
    tcase_add_test(tc, test_reqscan_method);
    tcase_add_test(tc, test_reqscan_single_spaces);
    tcase_add_test(tc, test_reqscan_target_bytes);
    tcase_add_test(tc, test_reqscan_target_limit);
    tcase_add_test(tc, test_reqscan_version);
    tcase_add_test(tc, test_reqscan_crlf_only);
    tcase_add_test(tc, test_reqscan_field_name);
    tcase_add_test(tc, test_reqscan_field_name_limit);
    tcase_add_test(tc, test_reqscan_field_value_bytes);
    tcase_add_test(tc, test_reqscan_field_value_limit);
    tcase_add_test(tc, test_reqscan_obs_fold);
    tcase_add_test(tc, test_reqscan_field_count_limit);
    tcase_add_test(tc, test_reqscan_head_limit);
    tcase_add_test(tc, test_reqscan_content_length);
    tcase_add_test(tc, test_reqscan_content_length_body);
    tcase_add_test(tc, test_reqscan_transfer_encoding_accepted);
    tcase_add_test(tc, test_reqscan_transfer_encoding_rejected);
    tcase_add_test(tc, test_reqscan_te_with_cl);
    tcase_add_test(tc, test_reqscan_te_in_http10);
    tcase_add_test(tc, test_reqscan_host);
    tcase_add_test(tc, test_reqscan_host_limit);
    tcase_add_test(tc, test_reqscan_chunked_body);
    tcase_add_test(tc, test_reqscan_chunk_ext_limit);
    tcase_add_test(tc, test_reqscan_trailers);
    tcase_add_test(tc, test_reqscan_trailer_limit);
    tcase_add_test(tc, test_reqscan_pipelined);
    tcase_add_test(tc, test_reqscan_error_in_body_keeps_request_start);
    tcase_add_test(tc, test_reqscan_in_head_tracking);
    tcase_add_test(tc, test_reqscan_error_is_sticky);
    tcase_add_test(tc, test_reqscan_attacks);
    tcase_add_test(tc, test_reqscan_split_anywhere);
    tcase_add_test(tc, test_reqscan_every_byte);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(reqscan_suite)
