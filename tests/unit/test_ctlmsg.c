/* tests/unit/test_ctlmsg.c - the control protocol's JSON reader and writer, and purge URLs. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/ctlmsg.h"
#include "core/limits.h"
#include "tests/unit/check_main.h"

Suite *ctlmsg_suite(void);

static int parse(const char *text, struct cw_ctlmsg_tok *tok, size_t max, size_t *n)
{
    return cw_ctlmsg_parse(text, strlen(text), tok, max, n);
}

START_TEST(test_ctlmsg_request)
{
    const char *t = " {\"v\":1, \"cmd\":\"purge\",\"url\":\"http://a/b?c=\\\"d\\\"\",\"soft\":true,"
                    "\"x\":{\"y\":[1,2,{\"z\":null}]},\"n\":-1.5e3} ";
    struct cw_ctlmsg_tok tok[64];
    char buf[64];
    size_t n, len;
    int64_t v;

    ck_assert_int_eq(parse(t, tok, 64, &n), 0);
    ck_assert_int_eq(tok[0].kind, CW_CTLMSG_OBJECT);
    ck_assert_uint_eq(tok[0].next, n);
    ck_assert_int_eq(cw_ctlmsg_get_int(t, tok, 0, "v", -1), 1);
    ck_assert_str_eq(cw_ctlmsg_get_str(t, tok, 0, "cmd", buf, sizeof(buf), "?"), "purge");
    int u = cw_ctlmsg_find(t, tok, 0, "url");
    ck_assert_int_ge(u, 0);
    ck_assert_int_eq(cw_ctlmsg_str(t, tok, (size_t)u, buf, sizeof(buf), &len), 0);
    ck_assert_str_eq(buf, "http://a/b?c=\"d\"");
    ck_assert(cw_ctlmsg_get_bool(t, tok, 0, "soft", false));
    /* A nested member is skipped whole: "n" after "x" is found. */
    int x = cw_ctlmsg_find(t, tok, 0, "n");
    ck_assert_int_ge(x, 0);
    ck_assert(cw_ctlmsg_num(t, tok, (size_t)x) == -1500.0);
    ck_assert_int_eq(cw_ctlmsg_int(t, tok, (size_t)x, &v), -EINVAL);
    ck_assert_int_eq(cw_ctlmsg_find(t, tok, 0, "missing"), -ENOENT);
    ck_assert_int_eq(cw_ctlmsg_find(t, tok, 1, "v"), -ENOENT); /* not an object */
}
END_TEST

START_TEST(test_ctlmsg_malformed)
{
    static const char *const bad[] = {
        "",           "{",           "{\"a\"}", "{\"a\":}",          "{\"a\":1,}", "[1,]",
        "{\"a\":1}}", "{\"a\":1} x", "{a:1}",   "\"\\x\"",           "\"\\u12\"",  "01",
        "1.",         "-",           "tru",     "{\"a\":1 \"b\":2}", "\"a\nb\"",   "[}",
    };
    struct cw_ctlmsg_tok tok[16];
    size_t n;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(parse(bad[i], tok, 16, &n) == -EBADMSG, "accepted %s", bad[i]);
}
END_TEST

/* Bounds: tokens at max and max + 1, depth at CW_CTLMSG_DEPTH_MAX and one more. */
START_TEST(test_ctlmsg_limits)
{
    struct cw_ctlmsg_tok tok[4];
    char deep[2 * CW_CTLMSG_DEPTH_MAX + 3];
    struct cw_ctlmsg_tok many[2 * CW_CTLMSG_DEPTH_MAX + 2];
    size_t n;

    ck_assert_int_eq(parse("[1,2,3]", tok, 4, &n), 0);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(parse("[1,2,3,4]", tok, 4, &n), -ENOSPC);
    memset(deep, '[', CW_CTLMSG_DEPTH_MAX);
    memset(deep + CW_CTLMSG_DEPTH_MAX, ']', CW_CTLMSG_DEPTH_MAX);
    deep[2 * CW_CTLMSG_DEPTH_MAX] = '\0';
    ck_assert_int_eq(parse(deep, many, CW_ARRAY_LEN(many), &n), 0);
    memset(deep, '[', CW_CTLMSG_DEPTH_MAX + 1);
    memset(deep + CW_CTLMSG_DEPTH_MAX + 1, ']', CW_CTLMSG_DEPTH_MAX + 1);
    deep[2 * CW_CTLMSG_DEPTH_MAX + 2] = '\0';
    ck_assert_int_eq(parse(deep, many, CW_ARRAY_LEN(many), &n), -ENOSPC);
}
END_TEST

START_TEST(test_ctlmsg_unescape)
{
    const char *t = "[\"a\\u00e9\\ud83d\\ude00\\n\", \"\\u0000\", \"\\udc00\", \"abcdef\"]";
    struct cw_ctlmsg_tok tok[8];
    char buf[16];
    size_t n;

    ck_assert_int_eq(parse(t, tok, 8, &n), 0);
    ck_assert_int_eq(cw_ctlmsg_str(t, tok, 1, buf, sizeof(buf), NULL), 0);
    ck_assert_str_eq(buf, "a\xc3\xa9\xf0\x9f\x98\x80\n");
    ck_assert_int_eq(cw_ctlmsg_str(t, tok, 2, buf, sizeof(buf), NULL), -EBADMSG);
    ck_assert_int_eq(cw_ctlmsg_str(t, tok, 3, buf, sizeof(buf), NULL), -EBADMSG);
    ck_assert_int_eq(cw_ctlmsg_str(t, tok, 4, buf, 7, NULL), 0); /* 6 bytes and the NUL */
    ck_assert_int_eq(cw_ctlmsg_str(t, tok, 4, buf, 6, NULL), -ENOSPC);
    ck_assert_int_eq(cw_ctlmsg_str(t, tok, 0, buf, sizeof(buf), NULL), -EINVAL);
}
END_TEST

/* What the writer escapes reads back the same; overflow is recorded, not written past. */
START_TEST(test_ctlmsg_writer)
{
    char out[64], back[64];
    struct cw_ctlmsg_buf b = {out, 0, sizeof(out), false};
    struct cw_ctlmsg_tok tok[4];
    const char s[] = "a\"b\\c\n\x01";
    size_t n;

    cw_ctlmsg_put(&b, "{\"k\":");
    cw_ctlmsg_put_str(&b, s, sizeof(s) - 1);
    cw_ctlmsg_put(&b, "}");
    ck_assert(!b.overflow);
    ck_assert_str_eq(out, "{\"k\":\"a\\\"b\\\\c\\n\\u0001\"}");
    ck_assert_int_eq(cw_ctlmsg_parse(out, b.len, tok, 4, &n), 0);
    ck_assert_str_eq(cw_ctlmsg_get_str(out, tok, 0, "k", back, sizeof(back), "?"), s);
    struct cw_ctlmsg_buf small = {out, 0, 4, false};
    cw_ctlmsg_put(&small, "abc");
    ck_assert(!small.overflow);
    cw_ctlmsg_put(&small, "d");
    ck_assert(small.overflow);
    ck_assert_str_eq(out, "abc");
}
END_TEST

START_TEST(test_ctlmsg_split_url)
{
    static char longurl[CW_LIMIT_URL_BYTES + 2];
    struct cw_str host, target;

    ck_assert_int_eq(
        cw_ctlmsg_split_url(cw_str_cstr("http://Example.com:8080/a/b?x=1"), &host, &target), 0);
    ck_assert_int_eq((int)host.len, 16);
    ck_assert(memcmp(host.p, "Example.com:8080", 16) == 0);
    ck_assert(target.len == 8 && memcmp(target.p, "/a/b?x=1", 8) == 0);
    ck_assert_int_eq(cw_ctlmsg_split_url(cw_str_cstr("HTTP://[::1]"), &host, &target), 0);
    ck_assert(target.len == 1 && target.p[0] == '/');
    static const char *const bad[] = {"https://a/",   "http://",     "http:///x", "http://a b/",
                                      "http://a/b c", "http://a/#f", "ftp://a/",  "http://a?x",
                                      "http://a@b/",  "/just/a/path"};
    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++)
        ck_assert_msg(cw_ctlmsg_split_url(cw_str_cstr(bad[i]), &host, &target) == -EINVAL,
                      "accepted %s", bad[i]);
    /* CW_LIMIT_URL_BYTES is accepted, one more is not. */
    memcpy(longurl, "http://a/", 9);
    memset(longurl + 9, 'x', CW_LIMIT_URL_BYTES - 9);
    ck_assert_int_eq(cw_ctlmsg_split_url(cw_str_make(longurl, CW_LIMIT_URL_BYTES), &host, &target),
                     0);
    longurl[CW_LIMIT_URL_BYTES] = 'x';
    ck_assert_int_eq(
        cw_ctlmsg_split_url(cw_str_make(longurl, CW_LIMIT_URL_BYTES + 1), &host, &target), -EINVAL);
}
END_TEST

Suite *ctlmsg_suite(void)
{
    Suite *s = suite_create("ctlmsg");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_ctlmsg_request);
    tcase_add_test(tc, test_ctlmsg_malformed);
    tcase_add_test(tc, test_ctlmsg_limits);
    tcase_add_test(tc, test_ctlmsg_unescape);
    tcase_add_test(tc, test_ctlmsg_writer);
    tcase_add_test(tc, test_ctlmsg_split_url);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(ctlmsg_suite)
