/* tests/unit/test_fresh.c - HTTP dates, storability and freshness, Age lists (RFC 9111 §5.1)
 * and targeted cache-control fields (RFC 9213). */
#include <check.h>
#include <errno.h>
#include <stdio.h>

#include "core/fresh.h"
#include "core/limits.h"

Suite *fresh_suite(void);

/* 1994-11-06T08:49:37Z, the RFC 9110 example date. */
#define RFC_T 784111777LL
/* 2023-11-14T22:13:20Z: "now" in the freshness tests. */
#define NOW_S  1700000000LL
#define NOW_MS (NOW_S * 1000)

static int64_t date_of(const char *s)
{
    int64_t t = -42;

    ck_assert_msg(cw_fresh_parse_date(s, strlen(s), &t) == 0, "rejected \"%s\"", s);
    return t;
}

static bool date_bad(const char *s)
{
    int64_t t = -42;
    int rc = cw_fresh_parse_date(s, strlen(s), &t);

    return rc == -EBADMSG && t == -42;
}

static void add(struct cw_fresh_resp *r, const char *name, const char *value)
{
    cw_fresh_add_header(r, cw_str_cstr(name), cw_str_cstr(value));
}

/* Adds "Date: <t_s>" in IMF-fixdate. */
static void add_date(struct cw_fresh_resp *r, const char *name, int64_t t_s)
{
    char buf[30];

    cw_fresh_format_date(t_s, buf);
    add(r, name, buf);
}

/* A GET that went out at NOW and came back 0 ms later; route ttl 60s, swr 30s, sie 10m. */
static struct cw_fresh_policy policy(void)
{
    struct cw_fresh_policy p;

    memset(&p, 0, sizeof(p));
    p.method_is_get_or_head = true;
    p.route_ttl_ms = 60000;
    p.route_swr_ms = 30000;
    p.route_sie_ms = 600000;
    p.request_time_ms = NOW_MS;
    p.response_time_ms = NOW_MS;
    return p;
}

/* A response with the given status, a Date of NOW and an optional Cache-Control. */
static struct cw_fresh_resp resp(int status, const char *cc)
{
    struct cw_fresh_resp r;

    cw_fresh_resp_init(&r, status);
    add_date(&r, "Date", NOW_S);
    if (cc != NULL) add(&r, "Cache-Control", cc);
    return r;
}

static struct cw_fresh_result eval(const struct cw_fresh_resp *r, const struct cw_fresh_policy *p)
{
    struct cw_fresh_result out;

    cw_fresh_evaluate(r, p, &out);
    ck_assert((out.why_not == NULL) == out.storable);
    return out;
}

static void assert_not_stored(const struct cw_fresh_resp *r, const struct cw_fresh_policy *p,
                              const char *why)
{
    struct cw_fresh_result out = eval(r, p);

    ck_assert_msg(!out.storable, "expected %s, got storable", why);
    ck_assert_str_eq(out.why_not, why);
}

START_TEST(test_fresh_parse_date_three_forms)
{
    ck_assert_int_eq(date_of("Sun, 06 Nov 1994 08:49:37 GMT"), RFC_T);
    ck_assert_int_eq(date_of("Sunday, 06-Nov-94 08:49:37 GMT"), RFC_T);
    ck_assert_int_eq(date_of("Sun Nov  6 08:49:37 1994"), RFC_T);
    ck_assert_int_eq(date_of("Sun Nov 06 08:49:37 1994"), RFC_T);
    ck_assert_int_eq(date_of("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    ck_assert_int_eq(date_of("Wednesday, 09-Nov-94 08:49:37 GMT"), RFC_T + 3 * 86400);
    /* Weekday spelling is checked, not whether it matches the date. */
    ck_assert_int_eq(date_of("Mon, 06 Nov 1994 08:49:37 GMT"), RFC_T);
    /* Names are matched case-insensitively. */
    ck_assert_int_eq(date_of("sun, 06 NOV 1994 08:49:37 gmt"), RFC_T);
}
END_TEST

START_TEST(test_fresh_parse_date_whitespace)
{
    ck_assert_int_eq(date_of("  Sun, 06 Nov 1994 08:49:37 GMT \t"), RFC_T);
    ck_assert_int_eq(date_of("\tSun Nov  6 08:49:37 1994 "), RFC_T);
    ck_assert(date_bad("Sun,  06 Nov 1994 08:49:37 GMT"));
}
END_TEST

START_TEST(test_fresh_parse_date_not_nul_terminated)
{
    const char s[] = "Sun, 06 Nov 1994 08:49:37 GMTXYZ";
    int64_t t;

    ck_assert_int_eq(cw_fresh_parse_date(s, 29, &t), 0);
    ck_assert_int_eq(t, RFC_T);
    ck_assert_int_eq(cw_fresh_parse_date(s, 28, &t), -EBADMSG);
    ck_assert_int_eq(cw_fresh_parse_date(NULL, 0, &t), -EBADMSG);
}
END_TEST

START_TEST(test_fresh_parse_date_invalid)
{
    static const char *bad[] = {
        "",
        "garbage",
        "Sun, 30 Feb 1994 08:49:37 GMT",
        "Sun, 31 Apr 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 32 Jan 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:00:00 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 23:60:00 GMT",
        "Sun, 06 Nov 1994 23:59:61 GMT",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 0a Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT+1",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 30-Feb-94 08:49:37 GMT",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "Sunday 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 25:49:37 1994",
        "Sun Nov 31 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov 6  08:49:37 1994",
        "Sun Nov  x 08:49:37 1994",
        "1994-11-06T08:49:37Z",
        "784111777",
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        ck_assert_msg(date_bad(bad[i]), "accepted \"%s\"", bad[i]);
    }
}
END_TEST

START_TEST(test_fresh_parse_date_leap_years)
{
    ck_assert_int_eq(date_of("Thu, 29 Feb 1996 00:00:00 GMT"), 825552000);
    ck_assert_int_eq(date_of("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
    ck_assert_int_eq(date_of("Thu, 29 Feb 2024 12:00:00 GMT"), 1709208000);
    ck_assert(date_bad("Mon, 29 Feb 1993 00:00:00 GMT"));
    ck_assert(date_bad("Thu, 29 Feb 1900 00:00:00 GMT"));
    ck_assert(date_bad("Mon, 29 Feb 2100 00:00:00 GMT"));
    ck_assert(date_bad("Thu, 30 Feb 2024 00:00:00 GMT"));
    ck_assert_int_eq(date_of("Thu, 31 Dec 1998 23:59:60 GMT"), 915148800); /* leap second */
}
END_TEST

START_TEST(test_fresh_parse_date_rfc850_two_digit_year)
{
    int64_t t;
    const char *y75 = "Monday, 01-Jan-75 00:00:00 GMT";
    const char *y76 = "Monday, 01-Jan-76 00:00:00 GMT";
    const int64_t ref_2025 = 1735689600; /* 2025-01-01 */

    /* Without a reference: 70-99 -> 19xx, 00-69 -> 20xx. */
    ck_assert_int_eq(date_of("Saturday, 01-Jan-00 00:00:00 GMT"), 946684800);
    ck_assert_int_eq(date_of("Thursday, 01-Jan-70 00:00:00 GMT"), 0);
    ck_assert_int_eq(date_of("Wednesday, 31-Dec-69 00:00:00 GMT"), 3155673600LL);
    /* RFC 9110 §5.6.7 against 2025: 2075 is 50 years ahead (kept), 2076 is more (1976). */
    ck_assert_int_eq(cw_fresh_parse_date_at(y75, strlen(y75), ref_2025, &t), 0);
    ck_assert_int_eq(t, 3313526400LL);
    ck_assert_int_eq(cw_fresh_parse_date_at(y76, strlen(y76), ref_2025, &t), 0);
    ck_assert_int_eq(t, 189302400);
    /* The other forms ignore the reference. */
    ck_assert_int_eq(cw_fresh_parse_date_at("Sun, 06 Nov 1994 08:49:37 GMT", 29, 0, &t), 0);
    ck_assert_int_eq(t, RFC_T);
}
END_TEST

START_TEST(test_fresh_format_date)
{
    char buf[30];

    memset(buf, 'x', sizeof(buf));
    ck_assert_uint_eq(cw_fresh_format_date(RFC_T, buf), 29);
    ck_assert_str_eq(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    cw_fresh_format_date(0, buf);
    ck_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    cw_fresh_format_date(951782400, buf);
    ck_assert_str_eq(buf, "Tue, 29 Feb 2000 00:00:00 GMT");
    /* Out of range clamps to what fits in four digits. */
    cw_fresh_format_date(-5, buf);
    ck_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    cw_fresh_format_date(INT64_MAX, buf);
    ck_assert_str_eq(buf, "Fri, 31 Dec 9999 23:59:59 GMT");
}
END_TEST

START_TEST(test_fresh_format_round_trip)
{
    char buf[30];
    int64_t t;

    for (int64_t v = 0; v < 253402300799LL; v = v * 3 + 86399 + (v % 7)) {
        cw_fresh_format_date(v, buf);
        ck_assert_int_eq(cw_fresh_parse_date(buf, 29, &t), 0);
        ck_assert_int_eq(t, v);
    }
    for (int64_t v = 951696000; v < 951868800; v += 3599) { /* around 2000-02-29 */
        cw_fresh_format_date(v, buf);
        ck_assert_int_eq(cw_fresh_parse_date(buf, 29, &t), 0);
        ck_assert_int_eq(t, v);
    }
}
END_TEST

START_TEST(test_fresh_status_heuristic)
{
    static const int yes[] = {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501};
    static const int no[] = {0, 100, 201, 202, 302, 303, 304, 307, 400, 403, 500, 502, 503, 999};

    for (size_t i = 0; i < CW_ARRAY_LEN(yes); i++)
        ck_assert(cw_fresh_status_heuristic(yes[i]));
    for (size_t i = 0; i < CW_ARRAY_LEN(no); i++)
        ck_assert(!cw_fresh_status_heuristic(no[i]));
}
END_TEST

START_TEST(test_fresh_add_header_fields)
{
    struct cw_fresh_resp r;

    cw_fresh_resp_init(&r, 200);
    ck_assert_int_eq(r.age_s, -1);
    ck_assert(!r.has_date && !r.has_expires && !r.has_last_modified && !r.has_etag);
    add(&r, "cache-control", "max-age=5");
    add(&r, "CACHE-CONTROL", "no-cache");
    add(&r, "date", " Sun, 06 Nov 1994 08:49:37 GMT ");
    add(&r, "Date", "Mon, 07 Nov 1994 08:49:37 GMT"); /* first wins */
    add(&r, "Last-Modified", "Sat, 05 Nov 1994 08:49:37 GMT");
    add(&r, "Expires", "Mon, 07 Nov 1994 08:49:37 GMT");
    add(&r, "Age", " 30 ");
    add(&r, "Age", "40");
    add(&r, "etag", "\"abc\"");
    add(&r, "Set-Cookie", "a=b");
    add(&r, "Vary", "Accept-Encoding");
    add(&r, "Vary", " Accept-Language ");
    add(&r, "Content-Length", "1234");
    add(&r, "X-Other", "ignored");

    ck_assert_int_eq(r.cc.max_age_s, 5);
    ck_assert(r.cc.flags & CW_CC_NO_CACHE);
    ck_assert(r.has_date);
    ck_assert_int_eq(r.date_s, RFC_T);
    ck_assert(r.has_last_modified);
    ck_assert_int_eq(r.last_modified_s, RFC_T - 86400);
    ck_assert(r.has_expires && r.expires_valid);
    ck_assert_int_eq(r.expires_s, RFC_T + 86400);
    ck_assert_int_eq(r.age_s, 30);
    ck_assert(r.has_etag);
    ck_assert(r.has_set_cookie);
    ck_assert(!r.vary_star);
    ck_assert(cw_str_eq(r.vary, CW_STR_LIT("Accept-Language")));
    ck_assert(r.has_content_length);
    ck_assert_uint_eq(r.content_length, 1234);
}
END_TEST

START_TEST(test_fresh_add_header_invalid_values)
{
    struct cw_fresh_resp r;

    cw_fresh_resp_init(&r, 200);
    add(&r, "Expires", "0");
    add(&r, "Expires", "Mon, 07 Nov 1994 08:49:37 GMT"); /* first line wins, even invalid */
    add(&r, "Date", "yesterday");
    add(&r, "Last-Modified", "Feb 30");
    add(&r, "Age", "-5");
    ck_assert(r.has_expires && !r.expires_valid);
    ck_assert(!r.has_date);
    ck_assert(!r.has_last_modified);
    ck_assert_int_eq(r.age_s, -1);
    /* RFC 9111 §5.1: the first Age was invalid, so the field is ignored: later lines do not
     * stand in for it (test_fresh_age_invalid_first_member_means_none). */
    add(&r, "Age", "99999999999");
    ck_assert_int_eq(r.age_s, -1);
    static const char *const bad[] = {"1.5", "-5", "x"};
    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        cw_fresh_resp_init(&r, 200);
        add(&r, "Age", bad[i]);
        ck_assert_int_eq(r.age_s, -1);
    }
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", "99999999999");
    ck_assert_int_eq(r.age_s, 2147483648LL);
}
END_TEST

START_TEST(test_fresh_add_header_vary_star)
{
    struct cw_fresh_resp r;

    cw_fresh_resp_init(&r, 200);
    add(&r, "Vary", "Accept, *");
    add(&r, "Vary", "Accept-Encoding");
    ck_assert(r.vary_star);
    ck_assert(cw_str_eq(r.vary, CW_STR_LIT("Accept-Encoding")));
    cw_fresh_resp_init(&r, 200);
    add(&r, "Vary", "X-Star*");
    ck_assert(!r.vary_star);
}
END_TEST

START_TEST(test_fresh_add_header_content_length)
{
    struct cw_fresh_resp r;

    cw_fresh_resp_init(&r, 200);
    add(&r, "Content-Length", "5, 5");
    ck_assert(r.has_content_length);
    ck_assert_uint_eq(r.content_length, 5);
    add(&r, "Content-Length", "5");
    ck_assert(r.has_content_length);
    add(&r, "Content-Length", "6");
    ck_assert(!r.has_content_length && r.content_length_bad);
    add(&r, "Content-Length", "6");
    ck_assert(!r.has_content_length);

    static const char *bad[] = {"", "5, 6", "-1", "1e3", "18446744073709551616", "5,"};
    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        cw_fresh_resp_init(&r, 200);
        add(&r, "Content-Length", bad[i]);
        ck_assert_msg(!r.has_content_length && r.content_length_bad, "%s", bad[i]);
    }
    cw_fresh_resp_init(&r, 200);
    add(&r, "Content-Length", "18446744073709551615");
    ck_assert(r.has_content_length);
    ck_assert_uint_eq(r.content_length, UINT64_MAX);
}
END_TEST

START_TEST(test_fresh_why_not_method)
{
    struct cw_fresh_resp r = resp(200, "max-age=60, public");
    struct cw_fresh_policy p = policy();

    p.method_is_get_or_head = false;
    assert_not_stored(&r, &p, "method");
}
END_TEST

START_TEST(test_fresh_why_not_status)
{
    static const int refused[] = {100, 101, 199, 206, 304, 600, 0, -1};
    struct cw_fresh_policy p = policy();

    for (size_t i = 0; i < CW_ARRAY_LEN(refused); i++) {
        struct cw_fresh_resp r = resp(refused[i], "max-age=60, public");
        assert_not_stored(&r, &p, "status");
    }
    /* No explicit freshness and not heuristically cacheable. */
    static const int plain[] = {201, 302, 303, 307, 400, 403, 500, 502, 503};
    for (size_t i = 0; i < CW_ARRAY_LEN(plain); i++) {
        struct cw_fresh_resp r = resp(plain[i], NULL);
        assert_not_stored(&r, &p, "status");
    }
}
END_TEST

START_TEST(test_fresh_storable_by_explicit_or_public)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(302, "max-age=10");
    struct cw_fresh_result out = eval(&r, &p);

    ck_assert(out.storable);
    ck_assert_int_eq(out.lifetime_ms, 10000);
    r = resp(500, "s-maxage=3");
    ck_assert(eval(&r, &p).storable);
    r = resp(503, NULL);
    add(&r, "Expires", "0");
    out = eval(&r, &p);
    ck_assert(out.storable);
    ck_assert_int_eq(out.lifetime_ms, 0);
    r = resp(307, "public");
    out = eval(&r, &p);
    ck_assert(out.storable);
    ck_assert(!out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 60000); /* route TTL */
    r = resp(404, NULL);
    ck_assert(eval(&r, &p).storable);
}
END_TEST

START_TEST(test_fresh_why_not_request_no_store)
{
    struct cw_fresh_resp r = resp(200, "max-age=60");
    struct cw_fresh_policy p = policy();

    p.req_no_store = true;
    assert_not_stored(&r, &p, "request-no-store");
}
END_TEST

START_TEST(test_fresh_why_not_no_store)
{
    struct cw_fresh_resp r = resp(200, "max-age=60, no-store");
    struct cw_fresh_policy p = policy();

    assert_not_stored(&r, &p, "no-store");
    r = resp(200, "max-age=60");
    add(&r, "Cache-Control", "NO-STORE");
    assert_not_stored(&r, &p, "no-store");
}
END_TEST

START_TEST(test_fresh_why_not_private)
{
    struct cw_fresh_resp r = resp(200, "private, max-age=60");
    struct cw_fresh_policy p = policy();

    assert_not_stored(&r, &p, "private");
    /* With field names the rest is shareable. */
    r = resp(200, "private=\"X-User\", max-age=60");
    ck_assert(eval(&r, &p).storable);
}
END_TEST

START_TEST(test_fresh_why_not_vary_star)
{
    struct cw_fresh_resp r = resp(200, "max-age=60");
    struct cw_fresh_policy p = policy();

    add(&r, "Vary", "*");
    assert_not_stored(&r, &p, "vary-star");
}
END_TEST

START_TEST(test_fresh_authorization)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, "max-age=60");

    p.req_has_authorization = true;
    assert_not_stored(&r, &p, "authorization");
    r = resp(200, NULL);
    assert_not_stored(&r, &p, "authorization");
    r = resp(200, "proxy-revalidate, max-age=60");
    assert_not_stored(&r, &p, "authorization");
    /* RFC 9111 §3.5: public, s-maxage or must-revalidate allow it. */
    r = resp(200, "public");
    ck_assert(eval(&r, &p).storable);
    r = resp(200, "s-maxage=10");
    ck_assert(eval(&r, &p).storable);
    r = resp(200, "must-revalidate, max-age=10");
    ck_assert(eval(&r, &p).storable);
}
END_TEST

START_TEST(test_fresh_cookie_pass)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, NULL);

    /* A personalised answer without explicit freshness is not stored for a Cookie request. */
    p.req_cookie_pass = true;
    assert_not_stored(&r, &p, "cookie");
    r = resp(200, NULL);
    add(&r, "Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT");
    assert_not_stored(&r, &p, "cookie");
    /* Explicit freshness or public says the answer is shared. */
    r = resp(200, "max-age=60");
    ck_assert(eval(&r, &p).storable);
    r = resp(200, "s-maxage=60");
    ck_assert(eval(&r, &p).storable);
    r = resp(200, "public");
    ck_assert(eval(&r, &p).storable);
    r = resp(200, NULL);
    add(&r, "Expires", "Thu, 01 Jan 2099 00:00:00 GMT");
    ck_assert(eval(&r, &p).storable);
    /* Without the flag (cookies = "ignore" or "key"), the heuristic answer is stored. */
    p.req_cookie_pass = false;
    r = resp(200, NULL);
    ck_assert(eval(&r, &p).storable);
}
END_TEST

START_TEST(test_fresh_set_cookie)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, "max-age=60");

    add(&r, "Set-Cookie", "sid=1");
    assert_not_stored(&r, &p, "set-cookie");
    p.strip_set_cookie = true;
    ck_assert(eval(&r, &p).storable);
    /* The origin names the cookie as a field to strip. */
    p.strip_set_cookie = false;
    r = resp(200, "max-age=60, no-cache=\"set-cookie\"");
    add(&r, "Set-Cookie", "sid=1");
    ck_assert(eval(&r, &p).storable);
    r = resp(200, "max-age=60, private=\"X-A, Set-Cookie\"");
    add(&r, "Set-Cookie", "sid=1");
    ck_assert(eval(&r, &p).storable);
    r = resp(200, "max-age=60, private=\"X-A\"");
    add(&r, "Set-Cookie", "sid=1");
    assert_not_stored(&r, &p, "set-cookie");
}
END_TEST

START_TEST(test_fresh_must_understand)
{
    struct cw_fresh_policy p = policy();
    /* §5.2.2.3: a cache that understands the status ignores no-store. */
    struct cw_fresh_resp r = resp(200, "must-understand, no-store, max-age=60");
    struct cw_fresh_result out = eval(&r, &p);

    ck_assert(out.storable);
    ck_assert_int_eq(out.lifetime_ms, 60000);
    r = resp(302, "must-understand, no-store, max-age=60");
    ck_assert(eval(&r, &p).storable);
    /* An unknown status with must-understand is never stored. */
    r = resp(299, "must-understand, max-age=60");
    assert_not_stored(&r, &p, "status");
    r = resp(500, "must-understand, no-store, max-age=60");
    assert_not_stored(&r, &p, "status");
    /* It does not override private. */
    r = resp(200, "must-understand, private, max-age=60");
    assert_not_stored(&r, &p, "private");
}
END_TEST

START_TEST(test_fresh_lifetime_precedence)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r;
    struct cw_fresh_result out;

    r = resp(200, "s-maxage=5, max-age=10");
    add_date(&r, "Expires", NOW_S + 20);
    add_date(&r, "Last-Modified", NOW_S - 1000);
    out = eval(&r, &p);
    ck_assert(out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 5000);

    r = resp(200, "max-age=10");
    add_date(&r, "Expires", NOW_S + 20);
    add_date(&r, "Last-Modified", NOW_S - 1000);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 10000);

    r = resp(200, NULL);
    add_date(&r, "Expires", NOW_S + 20);
    add_date(&r, "Last-Modified", NOW_S - 1000);
    out = eval(&r, &p);
    ck_assert(out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 20000);

    r = resp(200, NULL);
    add_date(&r, "Last-Modified", NOW_S - 1000);
    out = eval(&r, &p);
    ck_assert(!out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 100000);

    r = resp(200, NULL);
    out = eval(&r, &p);
    ck_assert(!out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 60000);
}
END_TEST

START_TEST(test_fresh_expires_edge_cases)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r;
    struct cw_fresh_result out;

    /* Without Date, Expires counts from the response time. */
    cw_fresh_resp_init(&r, 200);
    add_date(&r, "Expires", NOW_S + 30);
    p.response_time_ms = NOW_MS + 10000;
    p.request_time_ms = NOW_MS + 10000;
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 20000);
    p = policy();

    /* An invalid Expires is in the past (RFC 9111 §5.3), and still explicit. */
    r = resp(200, NULL);
    add(&r, "Expires", "-1");
    out = eval(&r, &p);
    ck_assert(out.storable && out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 0);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS);

    /* Expires before Date clamps to 0. */
    r = resp(200, NULL);
    add_date(&r, "Expires", NOW_S - 100);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 0);
}
END_TEST

START_TEST(test_fresh_heuristic_ten_percent_and_cap)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, NULL);

    add_date(&r, "Last-Modified", NOW_S - 86400);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 8640000);
    p.max_ttl_ms = 600000;
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 600000);
    p.max_ttl_ms = 10000000; /* above 10%: no effect */
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 8640000);

    /* Without Date, the response time stands in. */
    p = policy();
    cw_fresh_resp_init(&r, 404);
    add_date(&r, "Last-Modified", NOW_S - 1000);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 100000);

    /* Last-Modified at or after Date says nothing: the route's ttl, never 0 or negative. */
    r = resp(200, NULL);
    add_date(&r, "Last-Modified", NOW_S + 1000);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, p.route_ttl_ms);
    r = resp(200, NULL);
    add_date(&r, "Last-Modified", NOW_S);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, p.route_ttl_ms);

    /* Not a heuristic status (stored because public): the route TTL, not 10%. */
    r = resp(307, "public");
    add_date(&r, "Last-Modified", NOW_S - 1000);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 60000);

    /* The cap does not apply to the route TTL. */
    p.max_ttl_ms = 1000;
    r = resp(200, NULL);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 60000);
}
END_TEST

START_TEST(test_fresh_override)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, "max-age=5, s-maxage=3");
    struct cw_fresh_result out;

    p.override = true;
    add_date(&r, "Expires", NOW_S + 5);
    out = eval(&r, &p);
    ck_assert(out.storable);
    ck_assert(!out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 60000);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 60000);
    /* Storability rules still apply. */
    r = resp(200, "no-store");
    assert_not_stored(&r, &p, "no-store");
    /* The origin's freshness does not make a non-heuristic status storable. */
    r = resp(500, "max-age=60");
    assert_not_stored(&r, &p, "status");
}
END_TEST

START_TEST(test_fresh_flags)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, "no-cache, max-age=60");
    struct cw_fresh_result out = eval(&r, &p);

    ck_assert(out.storable && out.always_revalidate && !out.must_revalidate);
    r = resp(200, "no-cache=\"X-A\", max-age=60");
    out = eval(&r, &p);
    ck_assert(out.storable && !out.always_revalidate);
    r = resp(200, "must-revalidate, max-age=60");
    ck_assert(eval(&r, &p).must_revalidate);
    r = resp(200, "proxy-revalidate, max-age=60");
    ck_assert(eval(&r, &p).must_revalidate);
    r = resp(200, "s-maxage=60");
    ck_assert(eval(&r, &p).must_revalidate);
    r = resp(200, "max-age=60");
    ck_assert(!eval(&r, &p).must_revalidate);
}
END_TEST

START_TEST(test_fresh_age_origin_age_and_delay)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, "max-age=60");
    struct cw_fresh_result out;

    /* Sent 1.5 s before NOW, received 0.5 s after; Date = NOW. */
    p.request_time_ms = NOW_MS - 1500;
    p.response_time_ms = NOW_MS + 500;
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 2000); /* delay beats apparent 500 */
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 500 + 60000 - 2000);

    add(&r, "Age", "10");
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 12000);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 500 + 60000 - 12000);

    /* An Age beyond the lifetime: already stale. */
    r = resp(200, "max-age=60");
    add(&r, "Age", "100");
    out = eval(&r, &p);
    ck_assert(out.storable);
    ck_assert_int_lt(out.fresh_until_ms, p.response_time_ms);
}
END_TEST

START_TEST(test_fresh_age_apparent_and_clock_skew)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r;
    struct cw_fresh_result out;

    /* Date 100 s in the past: apparent age wins. */
    cw_fresh_resp_init(&r, 200);
    add_date(&r, "Date", NOW_S - 100);
    add(&r, "Cache-Control", "max-age=300");
    add(&r, "Age", "5");
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 100000);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 200000);

    /* Date an hour in the future (origin clock ahead): apparent age 0, not negative. */
    cw_fresh_resp_init(&r, 200);
    add_date(&r, "Date", NOW_S + 3600);
    add(&r, "Cache-Control", "max-age=300");
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 0);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 300000);

    /* Date is whole seconds: up to 999 ms of apparent age is its truncation, not age; from
     * a full second on it counts. */
    cw_fresh_resp_init(&r, 200);
    add_date(&r, "Date", NOW_S);
    add(&r, "Cache-Control", "max-age=300");
    p.request_time_ms = p.response_time_ms = NOW_MS + 999;
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 0);
    p.request_time_ms = p.response_time_ms = NOW_MS + 1000;
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 1000);
    p = policy();

    /* No Date at all: the response time stands in. */
    cw_fresh_resp_init(&r, 200);
    add(&r, "Cache-Control", "max-age=300");
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 0);

    /* A response time before the request time counts as no delay. */
    p.request_time_ms = NOW_MS + 5000;
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 0);
}
END_TEST

START_TEST(test_fresh_stale_windows)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, "max-age=60");
    struct cw_fresh_result out = eval(&r, &p);

    /* Route defaults. */
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 60000);
    ck_assert_int_eq(out.swr_until_ms, NOW_MS + 60000 + 30000);
    ck_assert_int_eq(out.sie_until_ms, NOW_MS + 60000 + 600000);

    /* The response's own windows win over the route's (RFC 5861), including 0. */
    r = resp(200, "max-age=60, stale-while-revalidate=5, stale-if-error=0");
    out = eval(&r, &p);
    ck_assert_int_eq(out.swr_until_ms, NOW_MS + 65000);
    ck_assert_int_eq(out.sie_until_ms, NOW_MS + 60000);

    /* must-revalidate, s-maxage and no-cache forbid stale use (RFC 9111 §4.2.4). */
    static const char *strict[] = {
        "max-age=60, must-revalidate, stale-while-revalidate=5, stale-if-error=9",
        "max-age=60, proxy-revalidate", "s-maxage=60, stale-if-error=9",
        "max-age=60, no-cache, stale-if-error=9"};
    for (size_t i = 0; i < CW_ARRAY_LEN(strict); i++) {
        r = resp(200, strict[i]);
        out = eval(&r, &p);
        ck_assert_msg(out.swr_until_ms == out.fresh_until_ms, "%s", strict[i]);
        ck_assert_msg(out.sie_until_ms == out.fresh_until_ms, "%s", strict[i]);
    }

    /* Negative route windows count as 0. */
    p.route_swr_ms = -5;
    p.route_sie_ms = -5;
    r = resp(200, "max-age=60");
    out = eval(&r, &p);
    ck_assert_int_eq(out.swr_until_ms, out.fresh_until_ms);
    ck_assert_int_eq(out.sie_until_ms, out.fresh_until_ms);
}
END_TEST

START_TEST(test_fresh_extreme_values_saturate)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r = resp(200, "max-age=2147483648, stale-if-error=2147483648");
    struct cw_fresh_result out;

    p.response_time_ms = INT64_MAX - 10;
    p.request_time_ms = INT64_MIN;
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, INT64_MAX);
    ck_assert_int_eq(out.fresh_until_ms, 0); /* INT64_MAX - INT64_MAX */
    ck_assert_int_eq(out.sie_until_ms, 2147483648LL * 1000);
    p.response_time_ms = INT64_MAX;
    p.request_time_ms = INT64_MAX;
    r = resp(200, "max-age=2147483648, stale-while-revalidate=2147483648");
    out = eval(&r, &p);
    /* The sum saturates at INT64_MAX before the age is taken off. */
    ck_assert_int_eq(out.corrected_initial_age_ms, INT64_MAX - NOW_MS);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS);
    ck_assert_int_eq(out.swr_until_ms, NOW_MS + 2147483648LL * 1000);
    ck_assert_int_eq(cw_fresh_age_ms(INT64_MAX, 0, INT64_MAX), INT64_MAX);
}
END_TEST

START_TEST(test_fresh_age_ms)
{
    ck_assert_int_eq(cw_fresh_age_ms(2000, NOW_MS, NOW_MS), 2000);
    ck_assert_int_eq(cw_fresh_age_ms(2000, NOW_MS, NOW_MS + 30000), 32000);
    /* A clock that went backwards never makes the age smaller than at arrival. */
    ck_assert_int_eq(cw_fresh_age_ms(2000, NOW_MS, NOW_MS - 30000), 2000);
    ck_assert_int_eq(cw_fresh_age_ms(0, NOW_MS, NOW_MS + 1), 1);
}
END_TEST

/* RFC 9213: the default target list, our own field first. */
static const char *const targets[] = {"CacheWarp-Cache-Control", "CDN-Cache-Control"};

/* As resp(), with the default target list set before the headers and an optional targeted
 * field (name, value). */
static struct cw_fresh_resp resp_t(int status, const char *cc, const char *tname,
                                   const char *tvalue)
{
    struct cw_fresh_resp r;

    cw_fresh_resp_init(&r, status);
    cw_fresh_resp_set_targets(&r, targets, CW_ARRAY_LEN(targets));
    add_date(&r, "Date", NOW_S);
    if (cc != NULL) add(&r, "Cache-Control", cc);
    if (tname != NULL) add(&r, tname, tvalue);
    return r;
}

START_TEST(test_fresh_age_list_uses_first_member)
{
    struct cw_fresh_resp r;
    struct cw_fresh_policy p = policy();
    struct cw_fresh_result out;

    /* RFC 9111 §5.1: a list value uses its first member. */
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", "10, 20");
    ck_assert_int_eq(r.age_s, 10);
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", "30 ,5");
    ck_assert_int_eq(r.age_s, 30);
    /* Empty members and empty lines are no members (RFC 9110 §5.6.1). */
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", " , ,7, 8");
    ck_assert_int_eq(r.age_s, 7);
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", "");
    add(&r, "Age", "9");
    ck_assert_int_eq(r.age_s, 9);
    /* Clamped like any delta-seconds. */
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", "99999999999, 1");
    ck_assert_int_eq(r.age_s, CW_LIMIT_DELTA_SECONDS);
    /* It counts in the corrected initial age. */
    r = resp(200, "max-age=60");
    add(&r, "Age", "10, 20");
    out = eval(&r, &p);
    ck_assert_int_eq(out.corrected_initial_age_ms, 10000);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 50000);
}
END_TEST

START_TEST(test_fresh_age_several_lines_use_first)
{
    struct cw_fresh_resp r;

    /* Several lines are one list (RFC 9110 §5.3): the first line's first member. */
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", "30");
    add(&r, "Age", "40");
    ck_assert_int_eq(r.age_s, 30);
    cw_fresh_resp_init(&r, 200);
    add(&r, "Age", "5, 6");
    add(&r, "age", "1");
    ck_assert_int_eq(r.age_s, 5);
}
END_TEST

START_TEST(test_fresh_age_invalid_first_member_means_none)
{
    static const char *const bad[] = {"-5", "1.5", "abc", "10 20", "+3", "0x10", "\"10\""};
    struct cw_fresh_resp r;

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        /* RFC 9111 §5.1: an invalid value is ignored, and a later member or line does not
         * stand in for it. */
        cw_fresh_resp_init(&r, 200);
        add(&r, "Age", bad[i]);
        add(&r, "Age", "20");
        ck_assert_msg(r.age_s == -1, "Age \"%s\" then \"20\": %lld", bad[i], (long long)r.age_s);
        cw_fresh_resp_init(&r, 200);
        char line[32];
        snprintf(line, sizeof(line), "%s, 20", bad[i]);
        add(&r, "Age", line);
        ck_assert_msg(r.age_s == -1, "Age \"%s\": %lld", line, (long long)r.age_s);
    }
}
END_TEST

START_TEST(test_fresh_targeted_overrides_cc_to_store)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_result out;
    static const char *const cc[] = {"no-store", "private", "no-cache", "max-age=0",
                                     "no-store, private, no-cache, max-age=0, must-revalidate"};

    /* RFC 9213 §2.2: the targeted field decides; Cache-Control is ignored entirely. */
    for (size_t i = 0; i < CW_ARRAY_LEN(cc); i++) {
        struct cw_fresh_resp r = resp_t(200, cc[i], "CDN-Cache-Control", "max-age=60");
        ck_assert_int_eq(cw_fresh_resp_target(&r), 1);
        out = eval(&r, &p);
        ck_assert_msg(out.storable, "CC %s: %s", cc[i], out.why_not);
        ck_assert(out.explicit_freshness);
        ck_assert(!out.always_revalidate && !out.must_revalidate);
        ck_assert_int_eq(out.lifetime_ms, 60000);
        ck_assert_int_eq(out.fresh_until_ms, NOW_MS + 60000);
        /* The route's stale windows apply: Cache-Control's must-revalidate does not. */
        ck_assert_int_eq(out.swr_until_ms, NOW_MS + 60000 + 30000);
    }
    /* Its own stale windows and s-maxage are the same directives as in Cache-Control. */
    struct cw_fresh_resp r =
        resp_t(200, "max-age=5, stale-while-revalidate=1", "CacheWarp-Cache-Control",
               "max-age=60, s-maxage=120, stale-if-error=300");
    out = eval(&r, &p);
    ck_assert_int_eq(out.lifetime_ms, 120000);
    ck_assert(out.must_revalidate); /* s-maxage, as in Cache-Control */
    ck_assert_int_eq(out.swr_until_ms, out.fresh_until_ms);
    /* A 302 is stored by the target's freshness even though Cache-Control forbids it. */
    r = resp_t(302, "no-store", "CDN-Cache-Control", "max-age=60");
    ck_assert(eval(&r, &p).storable);
    /* An authorised request's answer is shared when the target says public. */
    p.req_has_authorization = true;
    r = resp_t(200, "max-age=60", "CDN-Cache-Control", "public, max-age=60");
    ck_assert(eval(&r, &p).storable);
    r = resp_t(200, "public, max-age=60", "CDN-Cache-Control", "max-age=60");
    assert_not_stored(&r, &p, "authorization");
}
END_TEST

START_TEST(test_fresh_targeted_overrides_cc_to_refuse)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_result out;
    struct cw_fresh_resp r;

    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "no-store");
    assert_not_stored(&r, &p, "no-store");
    r = resp_t(200, "public, max-age=600", "CDN-Cache-Control", "no-store, max-age=60");
    assert_not_stored(&r, &p, "no-store");
    r = resp_t(200, "max-age=600", "CacheWarp-Cache-Control", "private");
    assert_not_stored(&r, &p, "private");
    r = resp_t(200, "s-maxage=600", "CDN-Cache-Control", "private, max-age=60");
    assert_not_stored(&r, &p, "private");
    /* no-cache: stored, but every use is validated, and never served stale (§4.2.4). */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "no-cache");
    out = eval(&r, &p);
    ck_assert(out.storable && out.always_revalidate);
    ck_assert_int_eq(out.swr_until_ms, out.fresh_until_ms);
    ck_assert_int_eq(out.sie_until_ms, out.fresh_until_ms);
    /* max-age=0: stored stale on arrival, so the next use revalidates. */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "max-age=0");
    out = eval(&r, &p);
    ck_assert(out.storable && out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 0);
    ck_assert_int_eq(out.fresh_until_ms, NOW_MS);
    /* must-revalidate: no stale windows. */
    r = resp_t(200, "max-age=600, stale-if-error=600", "CDN-Cache-Control",
               "max-age=60, must-revalidate");
    out = eval(&r, &p);
    ck_assert(out.must_revalidate);
    ck_assert_int_eq(out.sie_until_ms, out.fresh_until_ms);
    /* no-cache="Set-Cookie" in the target, not in Cache-Control, lets the cookie be stripped. */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "max-age=60, no-cache=\"Set-Cookie\"");
    add(&r, "Set-Cookie", "a=b");
    ck_assert(eval(&r, &p).storable);
    ck_assert(cw_fresh_resp_cc(&r)->flags & CW_CC_NO_CACHE_FIELDS);
    r = resp_t(200, "max-age=60, no-cache=\"Set-Cookie\"", "CDN-Cache-Control", "max-age=60");
    add(&r, "Set-Cookie", "a=b");
    assert_not_stored(&r, &p, "set-cookie");
}
END_TEST

START_TEST(test_fresh_targeted_ignores_expires)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_result out;
    struct cw_fresh_resp r = resp_t(200, NULL, NULL, NULL);

    /* §2.2: Expires is ignored too. A member the cache does not know ("none", RFC 9213
     * §3.1) still selects the field, so freshness falls to the heuristic / route ttl. */
    add_date(&r, "Expires", NOW_S + 3600);
    add(&r, "CDN-Cache-Control", "none");
    out = eval(&r, &p);
    ck_assert(out.storable);
    ck_assert(!out.explicit_freshness);
    ck_assert_int_eq(out.lifetime_ms, 60000);
    /* An invalid Expires (already expired) is ignored as well. */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "max-age=120");
    add(&r, "Expires", "0");
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 120000);
    /* Without a selected target, Expires counts as usual. */
    r = resp_t(200, NULL, "Other-Cache-Control", "max-age=5");
    add_date(&r, "Expires", NOW_S + 3600);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 3600000);
    /* A route cookie pass is lifted by Cache-Control's freshness only when no target rules. */
    p.req_cookie_pass = true;
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "none");
    assert_not_stored(&r, &p, "cookie");
    r = resp_t(200, "no-store", "CDN-Cache-Control", "max-age=60");
    ck_assert(eval(&r, &p).storable);
}
END_TEST

START_TEST(test_fresh_targeted_first_present_wins)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r;

    /* Both present: the list's order decides, not the order of the lines. */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "max-age=20");
    add(&r, "CacheWarp-Cache-Control", "max-age=10");
    ck_assert_int_eq(cw_fresh_resp_target(&r), 0);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 10000);
    r = resp_t(200, "max-age=600", "cachewarp-cache-control", "no-store");
    add(&r, "cdn-cache-control", "max-age=20");
    assert_not_stored(&r, &p, "no-store");
    /* Only the second: it rules. */
    r = resp_t(200, "max-age=600", "cdn-cache-control", "max-age=20");
    ck_assert_int_eq(cw_fresh_resp_target(&r), 1);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 20000);
    /* A list in the other order. */
    static const char *const rev[] = {"CDN-Cache-Control", "CacheWarp-Cache-Control"};
    cw_fresh_resp_init(&r, 200);
    cw_fresh_resp_set_targets(&r, rev, 2);
    add(&r, "CacheWarp-Cache-Control", "max-age=10");
    add(&r, "CDN-Cache-Control", "max-age=20");
    ck_assert_int_eq(cw_fresh_resp_target(&r), 0);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 20000);
    /* §2.2: targeted fields not on the list change nothing. */
    r = resp_t(200, "max-age=600", "Other-Cache-Control", "no-store");
    ck_assert_int_eq(cw_fresh_resp_target(&r), -1);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 600000);
    /* Several lines of one target form one dictionary. */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "max-age=60");
    add(&r, "CDN-Cache-Control", "must-revalidate");
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 60000);
    ck_assert(eval(&r, &p).must_revalidate);
}
END_TEST

START_TEST(test_fresh_targeted_invalid_ignored)
{
    static const char *const bad[] = {
        "", "max-age=20,", "Max-Age=20", "max-age=20 no-store", "max-age=\"20", "max-age=20;"};
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r;

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        /* §2.1: empty or unparsable is as if absent: the next target rules... */
        r = resp_t(200, "no-store", "CacheWarp-Cache-Control", bad[i]);
        add(&r, "CDN-Cache-Control", "max-age=30");
        ck_assert_msg(cw_fresh_resp_target(&r) == 1, "<<%s>>", bad[i]);
        ck_assert_int_eq(eval(&r, &p).lifetime_ms, 30000);
        /* ...and without one, Cache-Control and Expires. */
        r = resp_t(200, "max-age=600", "CDN-Cache-Control", bad[i]);
        ck_assert_int_eq(cw_fresh_resp_target(&r), -1);
        ck_assert_int_eq(eval(&r, &p).lifetime_ms, 600000);
        r = resp_t(200, "no-store", "CDN-Cache-Control", bad[i]);
        assert_not_stored(&r, &p, "no-store");
    }
    /* One bad line spoils the field, before or after good ones. */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "max-age=20");
    add(&r, "CDN-Cache-Control", "max-age=20,");
    add(&r, "CDN-Cache-Control", "max-age=30");
    ck_assert_int_eq(cw_fresh_resp_target(&r), -1);
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 600000);
    /* An empty line beside a valid one is no member; the field stays valid. */
    r = resp_t(200, "max-age=600", "CDN-Cache-Control", "");
    add(&r, "CDN-Cache-Control", "max-age=20");
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 20000);
}
END_TEST

START_TEST(test_fresh_targeted_list_empty_disables)
{
    struct cw_fresh_policy p = policy();
    struct cw_fresh_resp r;

    /* No list (the default of cw_fresh_resp_init()) or [] in the config: ordinary headers. */
    r = resp(200, "no-store");
    add(&r, "CDN-Cache-Control", "max-age=60");
    add(&r, "CacheWarp-Cache-Control", "max-age=60");
    ck_assert_int_eq(cw_fresh_resp_target(&r), -1);
    assert_not_stored(&r, &p, "no-store");
    cw_fresh_resp_init(&r, 200);
    cw_fresh_resp_set_targets(&r, targets, 0);
    add(&r, "Cache-Control", "max-age=600");
    add(&r, "CDN-Cache-Control", "no-store");
    ck_assert(eval(&r, &p).storable);
    ck_assert(cw_fresh_resp_cc(&r) == &r.cc);
    /* A list of one: the other field is ordinary. */
    cw_fresh_resp_init(&r, 200);
    cw_fresh_resp_set_targets(&r, targets + 1, 1);
    add(&r, "Cache-Control", "max-age=600");
    add(&r, "CacheWarp-Cache-Control", "no-store");
    ck_assert_int_eq(eval(&r, &p).lifetime_ms, 600000);
    /* Past the limit names are ignored, not read out of bounds. */
    static const char *const many[CW_LIMIT_TARGETED_FIELDS + 1] = {[CW_LIMIT_TARGETED_FIELDS] =
                                                                       "Last-Cache-Control"};
    cw_fresh_resp_init(&r, 200);
    cw_fresh_resp_set_targets(&r, many, CW_LIMIT_TARGETED_FIELDS + 1);
    ck_assert_uint_eq(r.target_count, CW_LIMIT_TARGETED_FIELDS);
    cw_fresh_resp_set_targets(&r, NULL, 3);
    ck_assert_uint_eq(r.target_count, 0);
}
END_TEST

Suite *fresh_suite(void)
{
    Suite *s = suite_create("fresh");
    TCase *dates = tcase_create("dates");
    TCase *headers = tcase_create("headers");
    TCase *eval_tc = tcase_create("evaluate");

    tcase_add_test(dates, test_fresh_parse_date_three_forms);
    tcase_add_test(dates, test_fresh_parse_date_whitespace);
    tcase_add_test(dates, test_fresh_parse_date_not_nul_terminated);
    tcase_add_test(dates, test_fresh_parse_date_invalid);
    tcase_add_test(dates, test_fresh_parse_date_leap_years);
    tcase_add_test(dates, test_fresh_parse_date_rfc850_two_digit_year);
    tcase_add_test(dates, test_fresh_format_date);
    tcase_add_test(dates, test_fresh_format_round_trip);
    suite_add_tcase(s, dates);

    tcase_add_test(headers, test_fresh_status_heuristic);
    tcase_add_test(headers, test_fresh_add_header_fields);
    tcase_add_test(headers, test_fresh_add_header_invalid_values);
    tcase_add_test(headers, test_fresh_add_header_vary_star);
    tcase_add_test(headers, test_fresh_add_header_content_length);
    tcase_add_test(headers, test_fresh_age_list_uses_first_member);
    tcase_add_test(headers, test_fresh_age_several_lines_use_first);
    tcase_add_test(headers, test_fresh_age_invalid_first_member_means_none);
    suite_add_tcase(s, headers);

    tcase_add_test(eval_tc, test_fresh_why_not_method);
    tcase_add_test(eval_tc, test_fresh_why_not_status);
    tcase_add_test(eval_tc, test_fresh_storable_by_explicit_or_public);
    tcase_add_test(eval_tc, test_fresh_why_not_request_no_store);
    tcase_add_test(eval_tc, test_fresh_why_not_no_store);
    tcase_add_test(eval_tc, test_fresh_why_not_private);
    tcase_add_test(eval_tc, test_fresh_why_not_vary_star);
    tcase_add_test(eval_tc, test_fresh_authorization);
    tcase_add_test(eval_tc, test_fresh_cookie_pass);
    tcase_add_test(eval_tc, test_fresh_set_cookie);
    tcase_add_test(eval_tc, test_fresh_must_understand);
    tcase_add_test(eval_tc, test_fresh_lifetime_precedence);
    tcase_add_test(eval_tc, test_fresh_expires_edge_cases);
    tcase_add_test(eval_tc, test_fresh_heuristic_ten_percent_and_cap);
    tcase_add_test(eval_tc, test_fresh_override);
    tcase_add_test(eval_tc, test_fresh_flags);
    tcase_add_test(eval_tc, test_fresh_age_origin_age_and_delay);
    tcase_add_test(eval_tc, test_fresh_age_apparent_and_clock_skew);
    tcase_add_test(eval_tc, test_fresh_stale_windows);
    tcase_add_test(eval_tc, test_fresh_extreme_values_saturate);
    tcase_add_test(eval_tc, test_fresh_age_ms);
    tcase_add_test(eval_tc, test_fresh_targeted_overrides_cc_to_store);
    tcase_add_test(eval_tc, test_fresh_targeted_overrides_cc_to_refuse);
    tcase_add_test(eval_tc, test_fresh_targeted_ignores_expires);
    tcase_add_test(eval_tc, test_fresh_targeted_first_present_wins);
    tcase_add_test(eval_tc, test_fresh_targeted_invalid_ignored);
    tcase_add_test(eval_tc, test_fresh_targeted_list_empty_disables);
    suite_add_tcase(s, eval_tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(fresh_suite)
