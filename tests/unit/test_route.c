/* tests/unit/test_route.c - core/route: first match in config order by Host (without its
 * port, case-insensitive) and path prefix. Configs come from cw_config_parse(). */
#include "core/route.h"

#include <check.h>
#include <errno.h>
#include <string.h>

#include "core/config.h"

Suite *route_suite(void);

#define ORIGIN "origins = ( { name = \"api\"; url = \"http://127.0.0.1:9000\"; } );\n"

static void load(const char *text, struct cw_config *c)
{
    struct cw_err e = {{0}};

    ck_assert_msg(cw_config_parse(text, strlen(text), "t.conf", c, &e) == 0, "%s", e.msg);
}

static int find(const struct cw_config *c, const char *host, const char *path)
{
    return cw_route_find(c, cw_str_cstr(host), cw_str_cstr(path));
}

static const char routes[] =
    ORIGIN "routes = (\n"
           "  { match = \"/api/v2/\"; origin = \"api\"; host = \"Shop.Example.com\"; },\n"
           "  { match = \"/api/\"; origin = \"api\"; host = \"[::1]\"; },\n"
           "  { match = \"/api/\"; origin = \"api\"; },\n"
           "  { match = \"/static\"; origin = \"api\"; }\n"
           ");";

START_TEST(test_route_first_match_in_order)
{
    struct cw_config c;

    load(routes, &c);
    ck_assert_int_eq(find(&c, "shop.example.com", "/api/v2/items"), 0);
    ck_assert_int_eq(find(&c, "other.example.com", "/api/v2/items"), 2);
    ck_assert_int_eq(find(&c, "shop.example.com", "/api/v1/items"), 2);
    ck_assert_int_eq(find(&c, "", "/static/app.js"), 3);
    ck_assert_int_eq(find(&c, "", "/staticfoo"), 3); /* a plain prefix, as nginx does */
    cw_config_free(&c);
}
END_TEST

START_TEST(test_route_host_case_and_port)
{
    struct cw_config c;

    load(routes, &c);
    ck_assert_int_eq(find(&c, "SHOP.EXAMPLE.COM", "/api/v2/"), 0);
    ck_assert_int_eq(find(&c, "shop.example.com:8080", "/api/v2/"), 0);
    ck_assert_int_eq(find(&c, "shop.example.com.", "/api/v2/"), 0);
    ck_assert_int_eq(find(&c, "shop.example.com.:443", "/api/v2/"), 0);
    ck_assert_int_eq(find(&c, "shop.example.co", "/api/v2/"), 2);
    ck_assert_int_eq(find(&c, "xshop.example.com", "/api/v2/"), 2);
    ck_assert_int_eq(find(&c, "[::1]:8080", "/api/x"), 1);
    ck_assert_int_eq(find(&c, "[::1]", "/api/x"), 1);
    ck_assert_int_eq(find(&c, "[::2]:8080", "/api/x"), 2);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_route_no_match)
{
    struct cw_config c;

    load(ORIGIN "routes = ( { match = \"/api/\"; origin = \"api\"; host = \"a.com\"; } );", &c);
    ck_assert_int_eq(find(&c, "b.com", "/api/x"), -ENOENT);
    ck_assert_int_eq(find(&c, "", "/api/x"), -ENOENT); /* no Host: host routes never match */
    ck_assert_int_eq(find(&c, "a.com", "/ap"), -ENOENT);
    ck_assert_int_eq(find(&c, "a.com", "/API/x"), -ENOENT); /* paths are case-sensitive */
    ck_assert_int_eq(find(&c, "a.com", "/api/"), 0);
    ck_assert_int_eq(cw_route_find(&c, cw_str_make(NULL, 0), cw_str_make(NULL, 0)), -ENOENT);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_route_default_matches_all)
{
    struct cw_config c;

    load(ORIGIN, &c);
    ck_assert_int_eq(find(&c, "anything", "/"), 0);
    ck_assert_int_eq(find(&c, "", "/x/y?z=1"), 0);
    ck_assert_int_eq(find(&c, "", "*"), -ENOENT); /* OPTIONS * is not a path */
    ck_assert_int_eq(find(&c, "", ""), -ENOENT);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_route_bytes_not_nul_terminated)
{
    struct cw_config c;
    const char host[] = "a.comXXXX";
    const char path[] = "/api/zzz";

    load(ORIGIN "routes = ( { match = \"/api/\"; origin = \"api\"; host = \"a.com\"; } );", &c);
    ck_assert_int_eq(cw_route_find(&c, cw_str_make(host, 5), cw_str_make(path, 5)), 0);
    ck_assert_int_eq(cw_route_find(&c, cw_str_make(host, 4), cw_str_make(path, 5)), -ENOENT);
    ck_assert_int_eq(cw_route_find(&c, cw_str_make(host, 5), cw_str_make(path, 4)), -ENOENT);
    cw_config_free(&c);
}
END_TEST

Suite *route_suite(void)
{
    Suite *s = suite_create("route");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_route_first_match_in_order);
    tcase_add_test(tc, test_route_host_case_and_port);
    tcase_add_test(tc, test_route_no_match);
    tcase_add_test(tc, test_route_default_matches_all);
    tcase_add_test(tc, test_route_bytes_not_nul_terminated);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(route_suite)
