/* tests/unit/test_cond.c - conditional requests, ranges, request directives, 304 merging
 * and same-origin invalidation. */
#include <check.h>
#include <errno.h>
#include <stdio.h>

#include "core/cc.h"
#include "core/cond.h"
#include "core/entry.h"
#include "core/limits.h"

/* A failed origin: stale-if-error first, then the open breaker's max_stale, each bounded. */
START_TEST(test_cond_error_use)
{
    const int64_t fresh = 100000, sie = 160000, max = 3600000; /* sie: 60 s of it */

    /* Inside stale-if-error, breaker or not. */
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, -1, false, max, 159999),
                     CW_COND_ERROR_SIE);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, -1, true, max, 100001),
                     CW_COND_ERROR_SIE);
    /* Past it: only with the breaker open, and below max_stale (N-1 yes, N no). */
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, -1, false, max, 160000),
                     CW_COND_ERROR_NONE);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, -1, true, max, 160000),
                     CW_COND_ERROR_BREAKER);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, -1, true, max, fresh + max - 1),
                     CW_COND_ERROR_BREAKER);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, -1, true, max, fresh + max),
                     CW_COND_ERROR_NONE);
    /* max_stale 0 turns it off. */
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, -1, true, 0, 160000), CW_COND_ERROR_NONE);
    /* must-revalidate forbids both; the request's stale-if-error=N bounds both. */
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, true, -1, true, max, 120000),
                     CW_COND_ERROR_NONE);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, 10, true, max, 110000),
                     CW_COND_ERROR_SIE);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, 10, true, max, 110001),
                     CW_COND_ERROR_NONE);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, 100, true, max, 200000),
                     CW_COND_ERROR_BREAKER);
    ck_assert_int_eq(cw_cond_error_use(fresh, sie, false, 100, true, max, 200001),
                     CW_COND_ERROR_NONE);
}
END_TEST

Suite *cond_suite(void);

#define S(lit) cw_str_cstr(lit)
#define ABSENT cw_str_make(NULL, 0)

/* 1994-11-06T08:49:37Z, the RFC 9110 example date, and its three spellings. */
#define RFC_T        784111777LL
#define RFC_DATE     "Sun, 06 Nov 1994 08:49:37 GMT"
#define RFC_DATE_850 "Sunday, 06-Nov-94 08:49:37 GMT"
#define RFC_DATE_ASC "Sun Nov  6 08:49:37 1994"
#define RFC_DATE_M1  "Sun, 06 Nov 1994 08:49:36 GMT" /* one second earlier */
#define RFC_DATE_P1  "Sun, 06 Nov 1994 08:49:38 GMT" /* one second later */
#define RFC_DATE_P60 "Sun, 06 Nov 1994 08:50:37 GMT" /* one minute later */

static bool etag_eq(const char *a, const char *b, bool weak)
{
    return cw_cond_etag_eq(S(a), S(b), weak);
}

/* Validators of a stored response with the given ETag (NULL: none) and a Last-Modified of
 * RFC_T that is strong (Date a minute later). */
static struct cw_cond_validators vals(const char *etag)
{
    struct cw_cond_validators v;

    cw_cond_validators_init(&v, etag ? S(etag) : ABSENT, S(RFC_DATE), S(RFC_DATE_P60), 0);
    return v;
}

static struct cw_cond_req req_none(void)
{
    struct cw_cond_req r = {ABSENT, ABSENT, ABSENT, ABSENT};

    return r;
}

static enum cw_cond_result eval_inm(const char *inm, const char *etag)
{
    struct cw_cond_req r = req_none();
    struct cw_cond_validators v = vals(etag);

    r.if_none_match = S(inm);
    return cw_cond_evaluate(&r, &v, 200, true);
}

static enum cw_cond_result eval_im(const char *im, const char *etag)
{
    struct cw_cond_req r = req_none();
    struct cw_cond_validators v = vals(etag);

    r.if_match = S(im);
    return cw_cond_evaluate(&r, &v, 200, true);
}

static enum cw_cond_result eval_ims(const char *ims, const struct cw_cond_validators *v)
{
    struct cw_cond_req r = req_none();

    r.if_modified_since = S(ims);
    return cw_cond_evaluate(&r, v, 200, true);
}

static enum cw_cond_result eval_ius(const char *ius, const struct cw_cond_validators *v)
{
    struct cw_cond_req r = req_none();

    r.if_unmodified_since = S(ius);
    return cw_cond_evaluate(&r, v, 200, true);
}

static int range(const char *value, uint64_t length, uint64_t *f, uint64_t *l)
{
    *f = *l = 12345;
    return cw_cond_range_parse(S(value), length, f, l);
}

static void range_ok(const char *value, uint64_t length, uint64_t first, uint64_t last)
{
    uint64_t f, l;
    int rc = range(value, length, &f, &l);

    ck_assert_msg(rc == 0, "\"%s\" len %llu: rc %d", value, (unsigned long long)length, rc);
    ck_assert_msg(f == first && l == last, "\"%s\": %llu-%llu", value, (unsigned long long)f,
                  (unsigned long long)l);
}

static void range_rc(const char *value, uint64_t length, int want)
{
    uint64_t f, l;
    int rc = range(value, length, &f, &l);

    ck_assert_msg(rc == want, "\"%s\" len %llu: rc %d, want %d", value, (unsigned long long)length,
                  rc, want);
    ck_assert_msg(f == 12345 && l == 12345, "\"%s\": outputs written on failure", value);
}

static struct cw_cc req_cc(const char *value)
{
    struct cw_cc cc;

    cw_cc_init(&cc);
    if (value != NULL) cw_cc_parse(&cc, value, strlen(value));
    return cc;
}

/* cw_cond_request_use with no pragma and no ignore; times in seconds for readability. */
static enum cw_cond_use use(const char *cc_value, int64_t age_s, int64_t lifetime_s,
                            bool must_revalidate)
{
    struct cw_cc cc = req_cc(cc_value);

    return cw_cond_request_use(&cc, false, false, age_s * 1000, lifetime_s * 1000, must_revalidate,
                               false);
}

static struct cw_entry_header hdr(const char *name, const char *value)
{
    struct cw_entry_header h = {S(name), S(value)};

    return h;
}

static void assert_hdr(const struct cw_entry_header *h, const char *name, const char *value)
{
    ck_assert_msg(cw_str_eq(h->name, S(name)) && cw_str_eq(h->value, S(value)),
                  "got %.*s: %.*s, want %s: %s", (int)h->name.len, h->name.p, (int)h->value.len,
                  h->value.p, name, value);
}

static bool same_origin(const char *loc, const char *host, const char *want_path)
{
    struct cw_str path = CW_STR_LIT("untouched");
    bool ok = cw_cond_same_origin(S(loc), S(host), &path);

    if (!ok) {
        ck_assert_msg(cw_str_eq(path, CW_STR_LIT("untouched")), "\"%s\": path written", loc);
        return want_path == NULL;
    }
    ck_assert_msg(want_path != NULL, "\"%s\" on %s: unexpected same origin", loc, host);
    ck_assert_msg(cw_str_eq(path, S(want_path)), "\"%s\": path \"%.*s\", want \"%s\"", loc,
                  (int)path.len, path.p, want_path);
    return true;
}

/* ---- entity-tags ---- */

/* RFC 9110 §8.8.3.2, the table of examples. */
START_TEST(test_cond_etag_rfc_table)
{
    ck_assert(!etag_eq("W/\"1\"", "W/\"1\"", false));
    ck_assert(etag_eq("W/\"1\"", "W/\"1\"", true));
    ck_assert(!etag_eq("W/\"1\"", "W/\"2\"", false));
    ck_assert(!etag_eq("W/\"1\"", "W/\"2\"", true));
    ck_assert(!etag_eq("W/\"1\"", "\"1\"", false));
    ck_assert(etag_eq("W/\"1\"", "\"1\"", true));
    ck_assert(etag_eq("\"1\"", "\"1\"", false));
    ck_assert(etag_eq("\"1\"", "\"1\"", true));
}
END_TEST

START_TEST(test_cond_etag_syntax)
{
    /* Case-sensitive opaque-tags; OWS around a value ignored. */
    ck_assert(!etag_eq("\"abc\"", "\"ABC\"", true));
    ck_assert(etag_eq("  \"abc\"\t", "\"abc\"", false));
    ck_assert(etag_eq("\"\"", "\"\"", false));
    ck_assert(etag_eq("\"a,b\"", "\"a,b\"", false));
    ck_assert(etag_eq("\"\xc3\xa9\"", "\"\xc3\xa9\"", false)); /* obs-text */
    /* Invalid tags never match, not even themselves. */
    ck_assert(!etag_eq("abc", "abc", true));
    ck_assert(!etag_eq("w/\"1\"", "w/\"1\"", true)); /* %s"W/" */
    ck_assert(!etag_eq("\"a b\"", "\"a b\"", true));
    ck_assert(!etag_eq("\"a", "\"a", true));
    ck_assert(!etag_eq("\"a\"x", "\"a\"x", true));
    ck_assert(!etag_eq("W/", "W/", true));
    ck_assert(!etag_eq("", "", true));
    ck_assert(!etag_eq("\"a\", \"a\"", "\"a\"", true));
    ck_assert(!cw_cond_etag_eq(ABSENT, ABSENT, true));
    ck_assert(!cw_cond_etag_eq(ABSENT, S("\"a\""), true));
}
END_TEST

START_TEST(test_cond_etag_not_nul_terminated)
{
    const char buf[] = "\"abc\"\"abc\"";

    ck_assert(cw_cond_etag_eq(cw_str_make(buf, 5), cw_str_make(buf + 5, 5), false));
    ck_assert(!cw_cond_etag_eq(cw_str_make(buf, 4), cw_str_make(buf + 5, 5), true));
}
END_TEST

/* ---- preconditions ---- */

START_TEST(test_cond_validators_init)
{
    struct cw_cond_validators v;

    cw_cond_validators_init(&v, S("\"x\""), S(RFC_DATE), S(RFC_DATE_P60), 5000);
    ck_assert(v.has_last_modified);
    ck_assert_int_eq(v.last_modified_s, RFC_T);
    ck_assert_int_eq(v.ims_ref_s, RFC_T);
    ck_assert(v.last_modified_strong);
    ck_assert(cw_str_eq(v.etag, S("\"x\"")));

    /* 59 s before Date is weak (§8.8.2.2 asks for 60). */
    cw_cond_validators_init(&v, ABSENT, S(RFC_DATE_M1), S("Sun, 06 Nov 1994 08:50:35 GMT"), 0);
    ck_assert(v.has_last_modified && !v.last_modified_strong);
    ck_assert(v.etag.p == NULL);

    /* No Date: weak. */
    cw_cond_validators_init(&v, ABSENT, S(RFC_DATE), ABSENT, 0);
    ck_assert(v.has_last_modified && !v.last_modified_strong);

    /* §4.3.2: no Last-Modified, IMS is compared with Date, then the receipt time. */
    cw_cond_validators_init(&v, ABSENT, ABSENT, S(RFC_DATE), 1000);
    ck_assert(!v.has_last_modified && !v.last_modified_strong);
    ck_assert_int_eq(v.ims_ref_s, RFC_T);
    cw_cond_validators_init(&v, ABSENT, S("garbage"), S("garbage"), 7999);
    ck_assert(!v.has_last_modified);
    ck_assert_int_eq(v.ims_ref_s, 7);
}
END_TEST

START_TEST(test_cond_if_none_match)
{
    ck_assert_int_eq(eval_inm("\"a\"", "\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("\"b\"", "\"a\""), CW_COND_NONE);
    /* Weak comparison either way round. */
    ck_assert_int_eq(eval_inm("W/\"a\"", "\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("\"a\"", "W/\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("W/\"a\"", "W/\"a\""), CW_COND_NOT_MODIFIED);
    /* Lists, with and without spaces, empty members, and a comma inside a tag. */
    ck_assert_int_eq(eval_inm("\"x\", \"y\", \"a\"", "\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("\"x\",\"a\"", "\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm(" ,, \"x\" ,\t\"a\" , ", "\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("\"x,\"a\"\"", "\"a\""), CW_COND_NONE);
    ck_assert_int_eq(eval_inm("\"a,b\"", "\"a,b\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("\"a,b\"", "\"a\""), CW_COND_NONE);
    ck_assert_int_eq(eval_inm("\"x\", \"y\"", "\"a\""), CW_COND_NONE);
    /* A junk member matches nothing, the others still count. */
    ck_assert_int_eq(eval_inm("junk, \"a\"", "\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("\"a\"junk, \"b\"", "\"a\""), CW_COND_NONE);
    ck_assert_int_eq(eval_inm("a", "a"), CW_COND_NONE);
    /* "*" matches any stored response, even one without an ETag; only as the whole value. */
    ck_assert_int_eq(eval_inm("*", "\"a\""), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm(" * ", NULL), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_inm("*, \"b\"", "\"a\""), CW_COND_NONE);
    /* Stored without an ETag, or with an invalid one: no tag matches. */
    ck_assert_int_eq(eval_inm("\"a\"", NULL), CW_COND_NONE);
    ck_assert_int_eq(eval_inm("\"a\"", "a"), CW_COND_NONE);
    /* Empty or blank: absent. */
    ck_assert_int_eq(eval_inm("", "\"a\""), CW_COND_NONE);
    ck_assert_int_eq(eval_inm("  ", "\"a\""), CW_COND_NONE);
}
END_TEST

START_TEST(test_cond_if_none_match_method_and_status)
{
    struct cw_cond_req r = req_none();
    struct cw_cond_validators v = vals("\"a\"");

    r.if_none_match = S("\"a\"");
    /* §13.2.2 step 3: other methods get 412. */
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, false), CW_COND_PRECONDITION_FAILED);
    /* §13.2.1: only for 2xx. */
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 204, true), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 299, true), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 199, true), CW_COND_NONE);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 300, true), CW_COND_NONE);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 301, true), CW_COND_NONE);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 404, true), CW_COND_NONE);
    r = req_none();
    r.if_match = S("\"zzz\"");
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 404, true), CW_COND_NONE);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 410, false), CW_COND_NONE);
}
END_TEST

START_TEST(test_cond_if_match)
{
    ck_assert_int_eq(eval_im("\"a\"", "\"a\""), CW_COND_NONE);
    ck_assert_int_eq(eval_im("\"b\"", "\"a\""), CW_COND_PRECONDITION_FAILED);
    ck_assert_int_eq(eval_im("\"b\", \"a\"", "\"a\""), CW_COND_NONE);
    /* Strong comparison: weak tags never match. */
    ck_assert_int_eq(eval_im("W/\"a\"", "\"a\""), CW_COND_PRECONDITION_FAILED);
    ck_assert_int_eq(eval_im("\"a\"", "W/\"a\""), CW_COND_PRECONDITION_FAILED);
    ck_assert_int_eq(eval_im("W/\"a\"", "W/\"a\""), CW_COND_PRECONDITION_FAILED);
    ck_assert_int_eq(eval_im("*", "\"a\""), CW_COND_NONE);
    ck_assert_int_eq(eval_im("*", NULL), CW_COND_NONE);
    ck_assert_int_eq(eval_im("\"a\"", NULL), CW_COND_PRECONDITION_FAILED);
    ck_assert_int_eq(eval_im("garbage", "\"a\""), CW_COND_PRECONDITION_FAILED);
    ck_assert_int_eq(eval_im(" ", "\"a\""), CW_COND_NONE);
}
END_TEST

START_TEST(test_cond_if_unmodified_since)
{
    struct cw_cond_validators v = vals("\"a\"");
    struct cw_cond_validators no_lm;

    ck_assert_int_eq(eval_ius(RFC_DATE, &v), CW_COND_NONE);
    ck_assert_int_eq(eval_ius(RFC_DATE_P1, &v), CW_COND_NONE);
    ck_assert_int_eq(eval_ius(RFC_DATE_M1, &v), CW_COND_PRECONDITION_FAILED);
    ck_assert_int_eq(eval_ius(RFC_DATE_850, &v), CW_COND_NONE);
    /* Invalid date, or no Last-Modified: ignored (§13.1.4). */
    ck_assert_int_eq(eval_ius("yesterday", &v), CW_COND_NONE);
    cw_cond_validators_init(&no_lm, S("\"a\""), ABSENT, S(RFC_DATE_P60), 0);
    ck_assert_int_eq(eval_ius(RFC_DATE_M1, &no_lm), CW_COND_NONE);
}
END_TEST

START_TEST(test_cond_if_modified_since)
{
    struct cw_cond_validators v = vals("\"a\"");
    struct cw_cond_validators by_date;
    struct cw_cond_req r = req_none();

    ck_assert_int_eq(eval_ims(RFC_DATE, &v), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_ims(RFC_DATE_P1, &v), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_ims(RFC_DATE_M1, &v), CW_COND_NONE);
    ck_assert_int_eq(eval_ims(RFC_DATE_850, &v), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_ims(RFC_DATE_ASC, &v), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_ims(" " RFC_DATE " ", &v), CW_COND_NOT_MODIFIED);
    /* Invalid, or several members: ignored (§13.1.3). */
    ck_assert_int_eq(eval_ims("garbage", &v), CW_COND_NONE);
    ck_assert_int_eq(eval_ims("Sun, 06 Nov 1994 08:49:37 UTC", &v), CW_COND_NONE);
    ck_assert_int_eq(eval_ims("Sun, 30 Feb 1994 08:49:37 GMT", &v), CW_COND_NONE);
    ck_assert_int_eq(eval_ims(RFC_DATE ", " RFC_DATE, &v), CW_COND_NONE);
    ck_assert_int_eq(eval_ims("", &v), CW_COND_NONE);
    /* RFC 9111 §4.3.2: without Last-Modified, Date stands in. */
    cw_cond_validators_init(&by_date, ABSENT, ABSENT, S(RFC_DATE), 0);
    ck_assert_int_eq(eval_ims(RFC_DATE, &by_date), CW_COND_NOT_MODIFIED);
    ck_assert_int_eq(eval_ims(RFC_DATE_M1, &by_date), CW_COND_NONE);
    /* Only for GET and HEAD. */
    r.if_modified_since = S(RFC_DATE);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, false), CW_COND_NONE);
}
END_TEST

/* RFC 9110 §13.2.2: the order of evaluation. */
START_TEST(test_cond_precedence)
{
    struct cw_cond_validators v = vals("\"a\"");
    struct cw_cond_req r = req_none();

    /* If-Match false wins over a matching If-None-Match. */
    r.if_match = S("\"b\"");
    r.if_none_match = S("\"a\"");
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, true), CW_COND_PRECONDITION_FAILED);
    /* If-Match true: If-Unmodified-Since is not looked at. */
    r = req_none();
    r.if_match = S("\"a\"");
    r.if_unmodified_since = S(RFC_DATE_M1);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, true), CW_COND_NONE);
    /* If-Match true, then If-None-Match decides. */
    r.if_none_match = S("*");
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, true), CW_COND_NOT_MODIFIED);
    /* If-Unmodified-Since false wins over If-None-Match. */
    r = req_none();
    r.if_unmodified_since = S(RFC_DATE_M1);
    r.if_none_match = S("\"a\"");
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, true), CW_COND_PRECONDITION_FAILED);
    /* If-None-Match present and not matching: If-Modified-Since is ignored. */
    r = req_none();
    r.if_none_match = S("\"b\"");
    r.if_modified_since = S(RFC_DATE_P1);
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, true), CW_COND_NONE);
    /* A blank If-None-Match counts as absent, so If-Modified-Since applies. */
    r.if_none_match = S(" ");
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, true), CW_COND_NOT_MODIFIED);
    /* Nothing at all. */
    r = req_none();
    ck_assert_int_eq(cw_cond_evaluate(&r, &v, 200, true), CW_COND_NONE);
}
END_TEST

/* ---- ranges ---- */

START_TEST(test_cond_range_single)
{
    range_ok("bytes=0-0", 10, 0, 0);
    range_ok("bytes=0-9", 10, 0, 9);
    range_ok("bytes=2-5", 10, 2, 5);
    range_ok("bytes=5-", 10, 5, 9);
    range_ok("bytes=9-", 10, 9, 9);
    range_ok("bytes=0-", 1, 0, 0);
    /* last-pos past the end is clamped. */
    range_ok("bytes=5-100", 10, 5, 9);
    range_ok("bytes=0-18446744073709551615", 10, 0, 9);
    range_ok("bytes=0-99999999999999999999999", 10, 0, 9);
    /* Suffixes. */
    range_ok("bytes=-1", 10, 9, 9);
    range_ok("bytes=-3", 10, 7, 9);
    range_ok("bytes=-10", 10, 0, 9);
    range_ok("bytes=-11", 10, 0, 9);
    range_ok("bytes=-99999999999999999999999", 10, 0, 9);
    range_ok("bytes=-1", 1, 0, 0);
    /* Unit case-insensitive; OWS around the value and members; empty members. */
    range_ok("BYTES=1-2", 10, 1, 2);
    range_ok("Bytes=1-2", 10, 1, 2);
    range_ok("  bytes=1-2 \t", 10, 1, 2);
    range_ok("bytes= 1-2", 10, 1, 2);
    range_ok("bytes=1-2 ,", 10, 1, 2);
    range_ok("bytes=,,1-2,,", 10, 1, 2);
    range_ok("bytes=000-001", 10, 0, 1);
    /* Large representations. */
    range_ok("bytes=-1", UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 1);
    range_ok("bytes=4294967296-", 4294967297ULL, 4294967296ULL, 4294967296ULL);
}
END_TEST

START_TEST(test_cond_range_unsatisfiable)
{
    range_rc("bytes=10-", 10, -ERANGE);
    range_rc("bytes=10-20", 10, -ERANGE);
    range_rc("bytes=5-", 5, -ERANGE);
    range_rc("bytes=-0", 10, -ERANGE);
    range_rc("bytes=-0,-0", 10, -ERANGE);
    range_rc("bytes=99999999999999999999999-", 10, -ERANGE);
    /* An empty representation satisfies nothing (nginx answers 416 too). */
    range_rc("bytes=0-0", 0, -ERANGE);
    range_rc("bytes=0-", 0, -ERANGE);
    range_rc("bytes=-1", 0, -ERANGE);
    range_rc("bytes=10-20,30-40", 10, -ERANGE);
}
END_TEST

START_TEST(test_cond_range_several)
{
    uint64_t f, l;

    range_rc("bytes=1-2,4-5", 10, -E2BIG);
    range_rc("bytes=0-0,-1", 10, -E2BIG);
    range_rc("bytes=0-1, 0-1", 10, -E2BIG);
    range_rc("bytes=1-2 , 4-5 , 7-", 10, -E2BIG);
    /* Unsatisfiable members are dropped: one left is a plain single range. */
    range_ok("bytes=1-2,50-60", 10, 1, 2);
    range_ok("bytes=50-60, -3", 10, 7, 9);
    range_ok("bytes=-0,3-4", 10, 3, 4);
    /* The whole header is checked even past the second range. */
    range_rc("bytes=1-2,4-5,x", 10, -EINVAL);
    ck_assert_int_eq(range("bytes=1-2,4-5", 10, &f, &l), -E2BIG);
}
END_TEST

START_TEST(test_cond_range_invalid)
{
    static const char *bad[] = {
        "",           "bytes",       "bytes=",      "bytes= ",     "bytes=,",
        "bytes=,, ,", "items=0-1",   "byte=0-1",    "bytesx=0-1",  "bytes =0-1",
        "bytes:0-1",  "bytes=1",     "bytes=-",     "bytes=--1",   "bytes=a-b",
        "bytes=1-a",  "bytes=5-1", /* last-pos < first-pos */
        "bytes=1 -2", "bytes=1- 2",  "bytes=- 1",   "bytes=1-2 3", "bytes=1-2;x",
        "bytes=+1-2", "bytes=0x1-2", "bytes=1-2-3", "bytes=-1-2",  "bytes=1-2,5-1",
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++)
        range_rc(bad[i], 10, -EINVAL);
    {
        uint64_t f = 1, l = 2;
        ck_assert_int_eq(cw_cond_range_parse(ABSENT, 10, &f, &l), -EINVAL);
    }
}
END_TEST

START_TEST(test_cond_range_not_nul_terminated)
{
    const char buf[] = "bytes=1-23456";
    uint64_t f, l;

    ck_assert_int_eq(cw_cond_range_parse(cw_str_make(buf, 9), 100, &f, &l), 0);
    ck_assert_int_eq(f, 1);
    ck_assert_int_eq(l, 2);
    ck_assert_int_eq(cw_cond_range_parse(cw_str_make(buf, 7), 100, &f, &l), -EINVAL);
}
END_TEST

START_TEST(test_cond_if_range)
{
    struct cw_cond_validators v = vals("\"a\"");
    struct cw_cond_validators weak_tag = vals("W/\"a\"");
    struct cw_cond_validators weak_lm;

    ck_assert(cw_cond_if_range_ok(ABSENT, &v));
    ck_assert(cw_cond_if_range_ok(S("\"a\""), &v));
    ck_assert(cw_cond_if_range_ok(S(" \"a\" "), &v));
    ck_assert(!cw_cond_if_range_ok(S("\"b\""), &v));
    ck_assert(!cw_cond_if_range_ok(S("W/\"a\""), &v));
    ck_assert(!cw_cond_if_range_ok(S("\"a\""), &weak_tag));
    ck_assert(!cw_cond_if_range_ok(S("W/\"a\""), &weak_tag));
    ck_assert(!cw_cond_if_range_ok(S("\"a\", \"b\""), &v));
    /* Dates: exact equality with a strong Last-Modified, in any of the three forms. */
    ck_assert(cw_cond_if_range_ok(S(RFC_DATE), &v));
    ck_assert(cw_cond_if_range_ok(S(RFC_DATE_850), &v));
    ck_assert(cw_cond_if_range_ok(S(RFC_DATE_ASC), &v));
    ck_assert(!cw_cond_if_range_ok(S(RFC_DATE_P1), &v));
    ck_assert(!cw_cond_if_range_ok(S(RFC_DATE_M1), &v));
    cw_cond_validators_init(&weak_lm, S("\"a\""), S(RFC_DATE), S(RFC_DATE_P1), 0);
    ck_assert(!cw_cond_if_range_ok(S(RFC_DATE), &weak_lm));
    cw_cond_validators_init(&weak_lm, S("\"a\""), ABSENT, S(RFC_DATE), 0);
    ck_assert(!cw_cond_if_range_ok(S(RFC_DATE), &weak_lm));
    /* Neither: false. */
    ck_assert(!cw_cond_if_range_ok(S(""), &v));
    ck_assert(!cw_cond_if_range_ok(S("  "), &v));
    ck_assert(!cw_cond_if_range_ok(S("a"), &v));
    ck_assert(!cw_cond_if_range_ok(S("*"), &v));
}
END_TEST

/* ---- request directives ---- */

START_TEST(test_cond_use_fresh_and_stale)
{
    ck_assert_int_eq(use(NULL, 10, 60, false), CW_COND_USE_FRESH);
    ck_assert_int_eq(use(NULL, 59, 60, false), CW_COND_USE_FRESH);
    /* age == lifetime is stale (RFC 9111 §4.2: fresh when lifetime > age). */
    ck_assert_int_eq(use(NULL, 60, 60, false), CW_COND_USE_STALE);
    ck_assert_int_eq(use(NULL, 61, 60, false), CW_COND_USE_STALE);
    ck_assert_int_eq(use(NULL, 61, 60, true), CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(use(NULL, 10, 60, true), CW_COND_USE_FRESH);
    ck_assert_int_eq(use(NULL, 0, 0, false), CW_COND_USE_STALE);
    ck_assert_int_eq(cw_cond_request_use(NULL, false, false, 1000, 60000, false, false),
                     CW_COND_USE_FRESH);
    ck_assert_int_eq(cw_cond_request_use(NULL, false, false, 1000, 60000, false, true),
                     CW_COND_USE_REVALIDATE);
    /* Unknown directives change nothing. */
    ck_assert_int_eq(use("foo, bar=1", 10, 60, false), CW_COND_USE_FRESH);
}
END_TEST

START_TEST(test_cond_use_no_cache)
{
    struct cw_cc cc = req_cc("no-cache");
    struct cw_cc none = req_cc(NULL);

    ck_assert_int_eq(cw_cond_request_use(&cc, false, false, 0, 60000, false, false),
                     CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(cw_cond_request_use(&cc, false, true, 0, 60000, false, false),
                     CW_COND_USE_FRESH);
    /* Pragma: no-cache (the caller passes it only without Cache-Control). */
    ck_assert_int_eq(cw_cond_request_use(&none, true, false, 0, 60000, false, false),
                     CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(cw_cond_request_use(NULL, true, false, 0, 60000, false, false),
                     CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(cw_cond_request_use(NULL, true, true, 0, 60000, false, false),
                     CW_COND_USE_FRESH);
    /* ignore_client_no_cache does not override the stored response's own no-cache, nor
     * max-age=0. */
    ck_assert_int_eq(cw_cond_request_use(&cc, false, true, 0, 60000, false, true),
                     CW_COND_USE_REVALIDATE);
    cc = req_cc("no-cache, max-age=0");
    ck_assert_int_eq(cw_cond_request_use(&cc, false, true, 1000, 60000, false, false),
                     CW_COND_USE_REVALIDATE);
    /* no-cache with a (meaningless in requests) argument still counts. */
    ck_assert_int_eq(use("no-cache=\"x\"", 0, 60, false), CW_COND_USE_REVALIDATE);
}
END_TEST

START_TEST(test_cond_use_max_age)
{
    ck_assert_int_eq(use("max-age=0", 0, 60, false), CW_COND_USE_FRESH);
    ck_assert_int_eq(use("max-age=0", 1, 60, false), CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(use("max-age=10", 10, 60, false), CW_COND_USE_FRESH);
    ck_assert_int_eq(use("max-age=10", 11, 60, false), CW_COND_USE_REVALIDATE);
    /* Stale within max-age: still not wanted without max-stale (§5.2.1.1). */
    ck_assert_int_eq(use("max-age=100", 70, 60, false), CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(use("max-age=100, max-stale=20", 70, 60, false), CW_COND_USE_STALE_OK);
    ck_assert_int_eq(use("max-age=100, max-stale", 70, 60, false), CW_COND_USE_STALE_OK);
    ck_assert_int_eq(use("max-age=50, max-stale", 70, 60, false), CW_COND_USE_REVALIDATE);
    /* Malformed max-age reads as 0. */
    ck_assert_int_eq(use("max-age=x", 1, 60, false), CW_COND_USE_REVALIDATE);
    /* Millisecond precision: 10.001 s is older than max-age=10. */
    {
        struct cw_cc cc = req_cc("max-age=10");
        ck_assert_int_eq(cw_cond_request_use(&cc, false, false, 10001, 60000, false, false),
                         CW_COND_USE_REVALIDATE);
    }
}
END_TEST

START_TEST(test_cond_use_min_fresh)
{
    ck_assert_int_eq(use("min-fresh=10", 50, 60, false), CW_COND_USE_FRESH);
    ck_assert_int_eq(use("min-fresh=10", 51, 60, false), CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(use("min-fresh=0", 59, 60, false), CW_COND_USE_FRESH);
    /* A stale response never satisfies min-fresh, max-stale notwithstanding. */
    ck_assert_int_eq(use("min-fresh=0, max-stale", 70, 60, false), CW_COND_USE_REVALIDATE);
    /* Extreme values do not overflow. */
    {
        struct cw_cc cc = req_cc("min-fresh=99999999999");
        ck_assert_int_eq(cw_cond_request_use(&cc, false, false, INT64_MIN, INT64_MAX, false, false),
                         CW_COND_USE_FRESH);
        ck_assert_int_eq(cw_cond_request_use(&cc, false, false, 0, 1000, false, false),
                         CW_COND_USE_REVALIDATE);
    }
}
END_TEST

START_TEST(test_cond_use_max_stale)
{
    ck_assert_int_eq(use("max-stale", 1000, 60, false), CW_COND_USE_STALE_OK);
    ck_assert_int_eq(use("max-stale=10", 70, 60, false), CW_COND_USE_STALE_OK);
    ck_assert_int_eq(use("max-stale=10", 71, 60, false), CW_COND_USE_STALE);
    ck_assert_int_eq(use("max-stale=0", 60, 60, false), CW_COND_USE_STALE_OK);
    /* Fresh is fresh whatever max-stale says. */
    ck_assert_int_eq(use("max-stale=10", 10, 60, false), CW_COND_USE_FRESH);
    /* must-revalidate overrides max-stale (§4.2.4). */
    ck_assert_int_eq(use("max-stale", 70, 60, true), CW_COND_USE_REVALIDATE);
    ck_assert_int_eq(use("max-stale=100", 70, 60, true), CW_COND_USE_REVALIDATE);
    /* A malformed max-stale value is ignored. */
    ck_assert_int_eq(use("max-stale=x", 70, 60, false), CW_COND_USE_STALE);
    /* only-if-cached is the caller's: it changes nothing here. */
    ck_assert_int_eq(use("only-if-cached", 70, 60, false), CW_COND_USE_STALE);
    ck_assert_int_eq(use("only-if-cached", 10, 60, false), CW_COND_USE_FRESH);
}
END_TEST

/* ---- 304 merge ---- */

START_TEST(test_cond_merge_replace_and_append)
{
    struct cw_entry_header stored[] = {
        hdr("Content-Type", "text/plain"),
        hdr("Cache-Control", "max-age=10"),
        hdr("ETag", "\"1\""),
        hdr("Content-Length", "5"),
        hdr("X-Old", "keep"),
    };
    struct cw_entry_header fresh[] = {
        hdr("etag", "\"2\""), hdr("Cache-Control", "max-age=60"),
        hdr("X-New", "n"),    hdr("Content-Length", "0"),
        hdr("Date", "today"),
    };
    struct cw_entry_header out[16];
    size_t n = cw_cond_merge_304(stored, 5, fresh, 5, out, 16);

    ck_assert_uint_eq(n, 7);
    assert_hdr(&out[0], "Content-Type", "text/plain");
    assert_hdr(&out[1], "Cache-Control", "max-age=60");
    assert_hdr(&out[2], "etag", "\"2\"");
    assert_hdr(&out[3], "Content-Length", "5");
    assert_hdr(&out[4], "X-Old", "keep");
    assert_hdr(&out[5], "X-New", "n");
    assert_hdr(&out[6], "Date", "today");
    /* Borrowed: the pointers are the inputs'. */
    ck_assert_ptr_eq(out[1].value.p, fresh[1].value.p);
    ck_assert_ptr_eq(out[0].value.p, stored[0].value.p);
}
END_TEST

START_TEST(test_cond_merge_multi_line_fields)
{
    /* All stored lines of a name go; all the 304's lines of it come, at the first's place. */
    struct cw_entry_header stored[] = {
        hdr("Link", "<a>"), hdr("X-A", "1"), hdr("link", "<b>"),
        hdr("Link", "<c>"), hdr("X-B", "2"),
    };
    struct cw_entry_header fresh[] = {
        hdr("Link", "<d>"),
        hdr("Warning", "w1"),
        hdr("LINK", "<e>"),
        hdr("Warning", "w2"),
    };
    struct cw_entry_header out[16];
    size_t n = cw_cond_merge_304(stored, 5, fresh, 4, out, 16);

    ck_assert_uint_eq(n, 6);
    assert_hdr(&out[0], "Link", "<d>");
    assert_hdr(&out[1], "LINK", "<e>");
    assert_hdr(&out[2], "X-A", "1");
    assert_hdr(&out[3], "X-B", "2");
    assert_hdr(&out[4], "Warning", "w1");
    assert_hdr(&out[5], "Warning", "w2");
}
END_TEST

START_TEST(test_cond_merge_never_taken)
{
    struct cw_entry_header stored[] = {
        hdr("Content-Length", "5"),
        hdr("Content-Encoding", "gzip"),
        hdr("Content-Range", "bytes 0-4/5"),
        hdr("X-Hop", "stored"),
    };
    struct cw_entry_header fresh[] = {
        hdr("Content-Length", "0"),
        hdr("Content-Encoding", "br"),
        hdr("Content-Range", "x"),
        hdr("Transfer-Encoding", "chunked"),
        hdr("Connection", "close, X-Hop, X-Hop2"),
        hdr("Keep-Alive", "timeout=5"),
        hdr("X-Hop", "fresh"),
        hdr("X-Hop2", "fresh"),
        hdr("Set-Cookie", "sid=secret"),
        hdr("", "empty name"),
        hdr("Proxy-Authenticate", "Basic"),
        hdr("Upgrade", "h2c"),
        hdr("TE", "trailers"),
        hdr("Trailer", "X"),
    };
    struct cw_entry_header out[32];
    size_t n = cw_cond_merge_304(stored, 4, fresh, CW_ARRAY_LEN(fresh), out, 32);

    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_ptr_eq(out[i].value.p, stored[i].value.p);
}
END_TEST

START_TEST(test_cond_merge_bounds)
{
    struct cw_entry_header stored[] = {hdr("A", "1"), hdr("B", "2"), hdr("C", "3")};
    struct cw_entry_header fresh[] = {hdr("B", "x"), hdr("B", "y"), hdr("N", "1"), hdr("M", "1"),
                                      hdr("M", "2")};
    struct cw_entry_header out[16];

    /* Everything: 3 stored (B grows to 2 lines) + N + M M = 7. */
    ck_assert_uint_eq(cw_cond_merge_304(stored, 3, fresh, 5, out, 7), 7);
    assert_hdr(&out[0], "A", "1");
    assert_hdr(&out[1], "B", "x");
    assert_hdr(&out[2], "B", "y");
    assert_hdr(&out[3], "C", "3");
    assert_hdr(&out[4], "N", "1");
    assert_hdr(&out[5], "M", "1");
    assert_hdr(&out[6], "M", "2");
    /* One short: M (two lines) is dropped whole, N kept. */
    ck_assert_uint_eq(cw_cond_merge_304(stored, 3, fresh, 5, out, 6), 5);
    assert_hdr(&out[4], "N", "1");
    /* Room for the replacement only. */
    ck_assert_uint_eq(cw_cond_merge_304(stored, 3, fresh, 5, out, 4), 4);
    assert_hdr(&out[2], "B", "y");
    assert_hdr(&out[3], "C", "3");
    /* No room for B's growth: the stored B stays, C is never dropped. */
    ck_assert_uint_eq(cw_cond_merge_304(stored, 3, fresh, 5, out, 3), 3);
    assert_hdr(&out[0], "A", "1");
    assert_hdr(&out[1], "B", "2");
    assert_hdr(&out[2], "C", "3");
    /* Fewer slots than stored lines: a caller bug, nothing written. */
    ck_assert_uint_eq(cw_cond_merge_304(stored, 3, fresh, 5, out, 2), 0);
    /* Nothing from the 304. */
    ck_assert_uint_eq(cw_cond_merge_304(stored, 3, NULL, 0, out, 3), 3);
    ck_assert_uint_eq(cw_cond_merge_304(NULL, 0, fresh, 5, out, 16), 5);
    assert_hdr(&out[0], "B", "x");
    assert_hdr(&out[1], "B", "y");
    assert_hdr(&out[4], "M", "2");
    ck_assert_uint_eq(cw_cond_merge_304(NULL, 0, NULL, 0, out, 0), 0);
}
END_TEST

/* A field that shrinks frees room for a later one that grows. */
START_TEST(test_cond_merge_shrink_then_grow)
{
    struct cw_entry_header stored[] = {hdr("A", "1"), hdr("A", "2"), hdr("A", "3"), hdr("B", "1")};
    struct cw_entry_header fresh[] = {hdr("A", "x"), hdr("B", "x"), hdr("B", "y"), hdr("B", "z")};
    struct cw_entry_header out[8];

    ck_assert_uint_eq(cw_cond_merge_304(stored, 4, fresh, 4, out, 4), 4);
    assert_hdr(&out[0], "A", "x");
    assert_hdr(&out[1], "B", "x");
    assert_hdr(&out[3], "B", "z");
    /* Growth that the pending stored lines leave no room for is refused. */
    ck_assert_uint_eq(cw_cond_merge_304(stored + 3, 1, fresh + 1, 3, out, 2), 1);
    assert_hdr(&out[0], "B", "1");
}
END_TEST

/* Limits at N and N+1: stored lines, and the 304's lines considered. */
START_TEST(test_cond_merge_limits)
{
    static struct cw_entry_header stored[CW_LIMIT_HEADER_COUNT + 1];
    static struct cw_entry_header fresh[CW_LIMIT_HEADER_COUNT + 1];
    static struct cw_entry_header out[2 * CW_LIMIT_HEADER_COUNT + 2];
    static char names[CW_LIMIT_HEADER_COUNT + 1][16];

    for (size_t i = 0; i <= CW_LIMIT_HEADER_COUNT; i++) {
        snprintf(names[i], sizeof(names[i]), "X-%zu", i);
        stored[i] = hdr(names[i], "s");
        fresh[i] = hdr("X-Same", "f");
    }
    fresh[CW_LIMIT_HEADER_COUNT] = hdr("X-Late", "f");
    ck_assert_uint_eq(
        cw_cond_merge_304(stored, CW_LIMIT_HEADER_COUNT, NULL, 0, out, CW_ARRAY_LEN(out)),
        CW_LIMIT_HEADER_COUNT);
    ck_assert_uint_eq(
        cw_cond_merge_304(stored, CW_LIMIT_HEADER_COUNT + 1, NULL, 0, out, CW_ARRAY_LEN(out)), 0);
    /* The 304's line N+1 (X-Late) is not looked at. */
    ck_assert_uint_eq(
        cw_cond_merge_304(NULL, 0, fresh, CW_LIMIT_HEADER_COUNT + 1, out, CW_ARRAY_LEN(out)),
        CW_LIMIT_HEADER_COUNT);
    fresh[CW_LIMIT_HEADER_COUNT - 1] = hdr("X-Late", "f");
    ck_assert_uint_eq(
        cw_cond_merge_304(NULL, 0, fresh, CW_LIMIT_HEADER_COUNT + 1, out, CW_ARRAY_LEN(out)),
        CW_LIMIT_HEADER_COUNT);
    assert_hdr(&out[CW_LIMIT_HEADER_COUNT - 1], "X-Late", "f");
}
END_TEST

/* ---- same origin ---- */

START_TEST(test_cond_same_origin_paths)
{
    ck_assert(same_origin("/x", "example.com", "/x"));
    ck_assert(same_origin("/", "example.com", "/"));
    ck_assert(same_origin("/a/b?c=d", "example.com", "/a/b?c=d"));
    ck_assert(same_origin("/a#frag", "example.com", "/a"));
    ck_assert(same_origin("  /a  ", "example.com", "/a"));
    ck_assert(same_origin("x", "example.com", NULL));
    ck_assert(same_origin("./x", "example.com", NULL));
    ck_assert(same_origin("?q", "example.com", NULL));
    ck_assert(same_origin("#f", "example.com", NULL));
    ck_assert(same_origin("", "example.com", NULL));
    ck_assert(!cw_cond_same_origin(ABSENT, S("example.com"), &(struct cw_str){0}));
}
END_TEST

START_TEST(test_cond_same_origin_absolute)
{
    ck_assert(same_origin("http://example.com/x?y", "example.com", "/x?y"));
    ck_assert(same_origin("HTTP://EXAMPLE.com/x", "Example.COM", "/x"));
    ck_assert(same_origin("http://example.com", "example.com", "/"));
    ck_assert(same_origin("http://example.com#f", "example.com", "/"));
    ck_assert(same_origin("http://example.com/x#f", "example.com", "/x"));
    ck_assert(same_origin("//example.com/x", "example.com", "/x"));
    /* Default and empty ports, on either side. */
    ck_assert(same_origin("http://example.com:80/x", "example.com", "/x"));
    ck_assert(same_origin("http://example.com/x", "example.com:80", "/x"));
    ck_assert(same_origin("http://example.com:/x", "example.com", "/x"));
    ck_assert(same_origin("http://example.com:8080/x", "example.com:8080", "/x"));
    ck_assert(same_origin("http://[::1]:80/x", "[::1]", "/x"));
    ck_assert(same_origin("http://127.0.0.1/x", "127.0.0.1:80", "/x"));
    /* Others. */
    ck_assert(same_origin("http://example.com:8080/x", "example.com", NULL));
    ck_assert(same_origin("http://example.com/x", "example.com:8080", NULL));
    ck_assert(same_origin("http://other.com/x", "example.com", NULL));
    ck_assert(same_origin("http://example.com.evil/x", "example.com", NULL));
    ck_assert(same_origin("http://evil.com/example.com", "example.com", NULL));
    ck_assert(same_origin("https://example.com/x", "example.com", NULL));
    ck_assert(same_origin("ftp://example.com/x", "example.com", NULL));
    ck_assert(same_origin("http://user@example.com/x", "example.com", NULL));
    ck_assert(same_origin("http://example.com@evil.com/x", "example.com", NULL));
    ck_assert(same_origin("http:///x", "example.com", NULL));
    ck_assert(same_origin("http://", "example.com", NULL));
    ck_assert(same_origin("http://example.com?q", "example.com", NULL));
    ck_assert(same_origin("http:/x", "example.com", NULL));
    ck_assert(same_origin("http://example.com/x", "", NULL));
}
END_TEST

Suite *cond_suite(void)
{
    Suite *s = suite_create("cond");
    TCase *etag_tc = tcase_create("etag");
    TCase *pre_tc = tcase_create("preconditions");
    TCase *range_tc = tcase_create("range");
    TCase *use_tc = tcase_create("use");
    TCase *merge_tc = tcase_create("merge");
    TCase *origin_tc = tcase_create("origin");

    tcase_add_test(etag_tc, test_cond_etag_rfc_table);
    tcase_add_test(etag_tc, test_cond_etag_syntax);
    tcase_add_test(etag_tc, test_cond_etag_not_nul_terminated);
    suite_add_tcase(s, etag_tc);

    tcase_add_test(pre_tc, test_cond_validators_init);
    tcase_add_test(pre_tc, test_cond_if_none_match);
    tcase_add_test(pre_tc, test_cond_if_none_match_method_and_status);
    tcase_add_test(pre_tc, test_cond_if_match);
    tcase_add_test(pre_tc, test_cond_if_unmodified_since);
    tcase_add_test(pre_tc, test_cond_if_modified_since);
    tcase_add_test(pre_tc, test_cond_precedence);
    suite_add_tcase(s, pre_tc);

    tcase_add_test(range_tc, test_cond_range_single);
    tcase_add_test(range_tc, test_cond_range_unsatisfiable);
    tcase_add_test(range_tc, test_cond_range_several);
    tcase_add_test(range_tc, test_cond_range_invalid);
    tcase_add_test(range_tc, test_cond_range_not_nul_terminated);
    tcase_add_test(range_tc, test_cond_if_range);
    suite_add_tcase(s, range_tc);

    tcase_add_test(use_tc, test_cond_use_fresh_and_stale);
    tcase_add_test(use_tc, test_cond_use_no_cache);
    tcase_add_test(use_tc, test_cond_use_max_age);
    tcase_add_test(use_tc, test_cond_use_min_fresh);
    tcase_add_test(use_tc, test_cond_use_max_stale);
    tcase_add_test(use_tc, test_cond_error_use);
    suite_add_tcase(s, use_tc);

    tcase_add_test(merge_tc, test_cond_merge_replace_and_append);
    tcase_add_test(merge_tc, test_cond_merge_multi_line_fields);
    tcase_add_test(merge_tc, test_cond_merge_never_taken);
    tcase_add_test(merge_tc, test_cond_merge_bounds);
    tcase_add_test(merge_tc, test_cond_merge_shrink_then_grow);
    tcase_add_test(merge_tc, test_cond_merge_limits);
    suite_add_tcase(s, merge_tc);

    tcase_add_test(origin_tc, test_cond_same_origin_paths);
    tcase_add_test(origin_tc, test_cond_same_origin_absolute);
    suite_add_tcase(s, origin_tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(cond_suite)
