/* tests/unit/test_path.c - core/path: RFC 3986 normalisation of request paths (the choices
 * documented in core/path.h), output bounds, idempotence, and absolute-form targets. */
#include "core/path.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"

Suite *path_suite(void);

static char path_buf[CW_LIMIT_URL_BYTES + 64];

/* Normalises in (len bytes) and expects want; then checks that want normalises to itself. */
static void check_norm_at(const char *in, size_t len, const char *want, int line)
{
    static char again[CW_LIMIT_URL_BYTES + 64];
    size_t n = 0, n2 = 0;
    int rc = cw_path_normalize(in, len, path_buf, sizeof(path_buf), &n);

    ck_assert_msg(rc == 0, "line %d: rc %d for \"%s\"", line, rc, in);
    ck_assert_msg(n == strlen(want) && memcmp(path_buf, want, n) == 0,
                  "line %d: \"%s\" gave \"%.*s\", want \"%s\"", line, in, (int)n, path_buf, want);
    rc = cw_path_normalize(path_buf, n, again, sizeof(again), &n2);
    ck_assert_msg(rc == 0 && n2 == n && memcmp(again, path_buf, n) == 0,
                  "line %d: not idempotent on \"%s\"", line, want);
}
#define check_norm(in, want) check_norm_at((in), strlen(in), (want), __LINE__)

static int norm_rc(const char *in, size_t len)
{
    size_t n = 0;

    return cw_path_normalize(in, len, path_buf, sizeof(path_buf), &n);
}

START_TEST(test_path_normalize_brief_cases)
{
    check_norm("/a/./b/", "/a/b/");
    check_norm("/a//b", "/a//b");
    check_norm("/a/b/..", "/a/");
    check_norm("/public/../admin", "/admin");
    check_norm("/%7euser", "/~user");
    check_norm("/%2f", "/%2F");
    check_norm("/a%2fb/../c", "/c");
    check_norm("/a%2Fb/../c", "/c");
    ck_assert_int_eq(norm_rc("/..", 3), -EINVAL);
    ck_assert_int_eq(norm_rc("/%2E%2e/", 8), -EINVAL);
}
END_TEST

START_TEST(test_path_normalize_dot_segments)
{
    check_norm("/", "/");
    check_norm("/.", "/");
    check_norm("/./", "/");
    check_norm("/a/..", "/");
    check_norm("/a/../", "/");
    check_norm("/a/b/.", "/a/b/");
    check_norm("/a/b/../../", "/");
    check_norm("/a/b/../..", "/");
    check_norm("/a/./../b", "/b");
    check_norm("/a//../b", "/a/b");         /* ".." removes the empty segment, as in §5.2.4 */
    check_norm("/a/b/c/./../../g", "/a/g"); /* RFC 3986 §5.2.4 example */
    check_norm("/a/b/c", "/a/b/c");
    check_norm("/a/b/c/", "/a/b/c/");
    check_norm("//", "//");
    check_norm("/./a/./b/./", "/a/b/");
    /* Only exactly "." and ".." are dot segments. */
    check_norm("/...", "/...");
    check_norm("/.../x", "/.../x");
    check_norm("/..a/.b/a..", "/..a/.b/a..");
    check_norm("/a/.../..", "/a/");
}
END_TEST

START_TEST(test_path_normalize_escaped_dots)
{
    check_norm("/a/%2e/b", "/a/b");
    check_norm("/a/%2E%2e/b", "/b");
    check_norm("/a/.%2e/b", "/b");
    check_norm("/a/%2e./b", "/b");
    check_norm("/a/b/%2e%2E", "/a/");
    check_norm("/a/%2e%2e%2e", "/a/..."); /* three dots: a name, decoded */
    check_norm("/x%2e%2e", "/x..");
    ck_assert_int_eq(norm_rc("/%2e%2e", 7), -EINVAL);
    ck_assert_int_eq(norm_rc("/a/%2e%2e/%2E%2E/x", 18), -EINVAL);
}
END_TEST

START_TEST(test_path_normalize_percent_encoding)
{
    check_norm("/%41%62%63%2D%2e%5f%7E%30", "/Abc-._~0");
    check_norm("/%c3%a9", "/%C3%A9");
    check_norm("/%20%3a%3F%23%25", "/%20%3A%3F%23%25");
    check_norm("/%25", "/%25");
    check_norm("/%2541", "/%2541"); /* "%" stays escaped, so no new escape appears */
    check_norm("/a%2Fb", "/a%2Fb");
    check_norm("/caf\xc3\xa9/x|y", "/caf\xc3\xa9/x|y"); /* raw bytes pass through */
    check_norm("/a\\..\\b", "/a\\..\\b");               /* '\\' is not a separator */
}
END_TEST

START_TEST(test_path_normalize_rejects)
{
    static const char *const bad[] = {
        "a",     "a/b",   "/../x",  "/a/../../x",    "/./..",     "/%zz",   "/%2",  "/%",
        "/%g0",  "/%0g",  "/a%00b", "/%00",          "/a b",      "/a?b",   "/a#b", "/a\tb",
        "/a\rb", "/a\nb", "/a\x7f", "/a/b/../../..", "/%2e%2e/a", "/..%2f",
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        if (strcmp(bad[i], "/..%2f") == 0) continue; /* checked below: a name, not ".." */
        ck_assert_msg(norm_rc(bad[i], strlen(bad[i])) == -EINVAL, "%s", bad[i]);
    }
    check_norm("/..%2f", "/..%2F");
    ck_assert_int_eq(norm_rc("", 0), -EINVAL);
    ck_assert_int_eq(norm_rc("/a\0b", 4), -EINVAL);
    ck_assert_int_eq(cw_path_normalize(NULL, 0, path_buf, sizeof(path_buf), &(size_t){0}), -EINVAL);
}
END_TEST

/* -ENOSPC is about the result: out may be shorter than the input. */
START_TEST(test_path_normalize_out_bounds)
{
    static const struct {
        const char *in, *out;
    } cases[] = {{"/public/../admin", "/admin"},
                 {"/%7euser", "/~user"},
                 {"/%2f", "/%2F"},
                 {"/a/b/..", "/a/"},
                 {"/", "/"}};
    char small[32];

    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        size_t want = strlen(cases[i].out), n = 0;
        memset(small, 'x', sizeof(small));
        ck_assert_int_eq(cw_path_normalize(cases[i].in, strlen(cases[i].in), small, want, &n), 0);
        ck_assert_uint_eq(n, want);
        ck_assert_int_eq(memcmp(small, cases[i].out, want), 0);
        ck_assert_int_eq(small[want], 'x'); /* nothing past cap */
        n = 99;
        ck_assert_int_eq(cw_path_normalize(cases[i].in, strlen(cases[i].in), small, want - 1, &n),
                         -ENOSPC);
        ck_assert_uint_eq(n, 99); /* *out_len untouched on failure */
    }
    /* Bad input is -EINVAL even when out is too small. */
    ck_assert_int_eq(cw_path_normalize("/..", 3, small, 0, &(size_t){0}), -EINVAL);
}
END_TEST

START_TEST(test_path_normalize_long)
{
    static char in[CW_LIMIT_URL_BYTES + 6];
    size_t k = (CW_LIMIT_URL_BYTES + 3) / 5, len = 0, n = 0;

    for (size_t i = 0; i < CW_LIMIT_URL_BYTES / 2; i++) {
        memcpy(in + 2 * i, "/a", 2);
    }
    check_norm_at(in, CW_LIMIT_URL_BYTES, in, __LINE__);
    /* k segments, then k - 1 ".." in CW_LIMIT_URL_BYTES bytes at most: "/a/"; one more ".."
     * gives "/", and a second one climbs above the root. */
    len = 2 * k;
    for (size_t i = 0; i + 1 < k; i++, len += 3) {
        memcpy(in + len, "/..", 3);
    }
    ck_assert_uint_le(len, CW_LIMIT_URL_BYTES);
    ck_assert_int_eq(cw_path_normalize(in, len, path_buf, 3, &n), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(memcmp(path_buf, "/a/", 3), 0);
    memcpy(in + len, "/../..", 6);
    ck_assert_int_eq(cw_path_normalize(in, len + 3, path_buf, 1, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(norm_rc(in, len + 6), -EINVAL);
}
END_TEST

/* Splits target and checks the three parts (want_scheme NULL = expect -EINVAL). */
static void check_split_at(const char *target, const char *want_scheme, const char *want_auth,
                           const char *want_rest, int line)
{
    struct cw_str s = {NULL, 0}, a = {NULL, 0}, r = {NULL, 0};
    int rc = cw_path_split_absolute(cw_str_cstr(target), &s, &a, &r);

    if (want_scheme == NULL) {
        ck_assert_msg(rc == -EINVAL, "line %d: rc %d for \"%s\"", line, rc, target);
        return;
    }
    ck_assert_msg(rc == 0, "line %d: rc %d for \"%s\"", line, rc, target);
    ck_assert_msg(cw_str_eq(s, cw_str_cstr(want_scheme)), "line %d: scheme", line);
    ck_assert_msg(cw_str_eq(a, cw_str_cstr(want_auth)), "line %d: authority \"%.*s\"", line,
                  (int)a.len, a.p);
    ck_assert_msg(cw_str_eq(r, cw_str_cstr(want_rest)), "line %d: rest \"%.*s\"", line, (int)r.len,
                  r.p);
    ck_assert(s.p == target && a.p >= target && r.p >= a.p + a.len); /* pointers into target */
}
#define check_split(t, s, a, r) check_split_at((t), (s), (a), (r), __LINE__)

/* cw_path_is_normal() says yes only where normalising gives the path back unchanged. */
START_TEST(test_path_is_normal)
{
    static const char *const yes[] = {"/",           "/a",        "/a/b/", "/a//b",
                                      "/a.b/..c/.d", "/~u/x-y_z", "/a/b.c"};
    static const char *const no[] = {"",      "a",    "/.",   "/..",  "/a/./b",
                                     "/a/..", "/%7e", "/%2F", "/a b", "/a#b"};
    char out[64];
    size_t len;

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        ck_assert_msg(cw_path_is_normal(yes[i], strlen(yes[i])), "%s", yes[i]);
        ck_assert_int_eq(cw_path_normalize(yes[i], strlen(yes[i]), out, sizeof(out), &len), 0);
        ck_assert(len == strlen(yes[i]) && memcmp(out, yes[i], len) == 0);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        ck_assert_msg(!cw_path_is_normal(no[i], strlen(no[i])), "%s", no[i]);
}
END_TEST

START_TEST(test_path_split_absolute_forms)
{
    check_split("http://h/p?q", "http", "h", "/p?q");
    check_split("HTTPS://Example.COM:8443/a", "HTTPS", "Example.COM:8443", "/a");
    check_split("hTtP://h?x", "hTtP", "h", "?x"); /* empty path: caller prefixes "/" */
    check_split("http://h", "http", "h", "");
    check_split("http://h/", "http", "h", "/");
    check_split("http://[::1]:8080/x", "http", "[::1]:8080", "/x");
    check_split("http://[::ffff:10.0.0.1]", "http", "[::ffff:10.0.0.1]", "");
    check_split("http://127.0.0.1:65535/", "http", "127.0.0.1:65535", "/");
    check_split("http://h/@x?y@z", "http", "h", "/@x?y@z"); /* '@' past the authority */
    check_split("http://a%41b.c_d~e/", "http", "a%41b.c_d~e", "/");
    check_split("http://h:1", "http", "h:1", "");
}
END_TEST

START_TEST(test_path_split_absolute_rejects)
{
    static const char *const bad[] = {
        "",
        "/relative",
        "http:",
        "http:/h",
        "http//h",
        "http://",
        "http:///x",
        "http://?x",
        "ftp://h/",
        "httpx://h/",
        "ws://h/",
        "http://u@h/",
        "http://u:p@h/",
        "http://h:/",
        "http://h:x/",
        "http://h:123456/",
        "http://h:65536/",
        "http://:80/",
        "http://[::1/",
        "http://[zz]/",
        "http://[]/",
        "http://[::1]x/",
        "http://a b/",
        "http://h#f",
        "http://h%zz/",
        "http://h%00/",
        "http://h\r\n/",
        "http://h:80:90/",
        "http://\xc3\xa9/",
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        check_split_at(bad[i], NULL, NULL, NULL, (int)i);
    }
}
END_TEST

Suite *path_suite(void)
{
    Suite *s = suite_create("path");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_path_normalize_brief_cases);
    tcase_add_test(tc, test_path_normalize_dot_segments);
    tcase_add_test(tc, test_path_normalize_escaped_dots);
    tcase_add_test(tc, test_path_normalize_percent_encoding);
    tcase_add_test(tc, test_path_normalize_rejects);
    tcase_add_test(tc, test_path_normalize_out_bounds);
    tcase_add_test(tc, test_path_normalize_long);
    tcase_add_test(tc, test_path_is_normal);
    tcase_add_test(tc, test_path_split_absolute_forms);
    tcase_add_test(tc, test_path_split_absolute_rejects);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(path_suite)
