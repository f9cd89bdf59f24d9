/* tests/unit/test_fleetmsg.c - fleet purge messages: encode, decode, version 1, bounds. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "core/fleetmsg.h"
#include "core/limits.h"
#include "tests/unit/check_main.h"

Suite *fleetmsg_suite(void);

static int decode(const char *s, struct cw_fleetmsg *m)
{
    return cw_fleetmsg_decode(s, strlen(s), m);
}

static bool str_is(struct cw_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

START_TEST(test_fleetmsg_roundtrip)
{
    struct cw_fleetmsg m = {.id = CW_STR_LIT("host.12/34:5"),
                            .time_ms = 1764640000123,
                            .kind = CW_FLEETMSG_PREFIX,
                            .soft = true,
                            .value = CW_STR_LIT("http://www.example.test/api v\n")},
                       d;
    char buf[CW_FLEETMSG_BYTES];
    size_t len;

    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, sizeof(buf), &len), 0);
    ck_assert_int_eq(len, strlen("cwpurge2 host.12/34:5 1764640000123 p 1 ") + m.value.len);
    ck_assert(memcmp(buf, "cwpurge2 host.12/34:5 1764640000123 p 1 http", 44) == 0);
    ck_assert_int_eq(cw_fleetmsg_decode(buf, len, &d), 0);
    ck_assert(str_is(d.id, "host.12/34:5"));
    ck_assert(str_is(d.node, "host.12"));
    ck_assert_int_eq(d.time_ms, 1764640000123);
    ck_assert_int_eq(d.kind, CW_FLEETMSG_PREFIX);
    ck_assert(d.soft);
    ck_assert(str_is(d.value, "http://www.example.test/api v\n"));
    for (uint32_t k = 0; k < CW_FLEETMSG_KIND_COUNT; k++) {
        m.kind = k;
        m.soft = false;
        m.time_ms = 0;
        ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, sizeof(buf), &len), 0);
        ck_assert_int_eq(cw_fleetmsg_decode(buf, len, &d), 0);
        ck_assert_int_eq(d.kind, k);
        ck_assert(!d.soft);
        ck_assert_int_eq(d.time_ms, 0);
    }
}
END_TEST

START_TEST(test_fleetmsg_version1)
{
    struct cw_fleetmsg d;

    ck_assert_int_eq(decode("cwpurge1 n.1/2:3 t 0 tag-a", &d), 0);
    ck_assert(str_is(d.id, "n.1/2:3"));
    ck_assert(str_is(d.node, "n.1"));
    ck_assert_int_eq(d.time_ms, 0);
    ck_assert_int_eq(d.kind, CW_FLEETMSG_TAG);
    ck_assert(str_is(d.value, "tag-a"));
    ck_assert_int_eq(decode("cwpurge1 n.1/2:3 u 1 http://a/b", &d), 0);
    ck_assert(d.soft);
    /* Version 1 had no bans. */
    ck_assert_int_eq(decode("cwpurge1 n.1/2:3 b 0 http://a/", &d), -EBADMSG);
}
END_TEST

START_TEST(test_fleetmsg_malformed)
{
    static const char *const bad[] = {
        "",
        "cwpurge2",
        "cwpurge3 n/1 5 u 0 x",
        "cwpurge2 n/1 5 u 0 ",                     /* no value */
        "cwpurge2 n/1 5 x 0 v",                    /* kind */
        "cwpurge2 n/1 5 u 2 v",                    /* soft */
        "cwpurge2 n/1 5 uu 0 v",                   /* kind width */
        "cwpurge2 n1 5 u 0 v",                     /* no '/' in the id */
        "cwpurge2 /1 5 u 0 v",                     /* no node */
        "cwpurge2  5 u 0 v",                       /* empty id */
        "cwpurge2 n/1 -5 u 0 v",                   /* negative time */
        "cwpurge2 n/1 05 u 0 v",                   /* leading zero */
        "cwpurge2 n/1 u 0 v",                      /* no time */
        "cwpurge2 n/1 99999999999999999999 u 0 v", /* past int64 */
        "cwpurge2 n/1 5 u 0",
        "cwpurge1 n/1 5 u 0 v", /* a v1 message has no time: "5" is not a kind */
    };
    struct cw_fleetmsg d;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(decode(bad[i], &d) == -EBADMSG, "accepted: %s", bad[i]);
    ck_assert_int_eq(decode("cwpurge2 n/1 9223372036854775807 u 0 v", &d), 0);
    ck_assert_int_eq(d.time_ms, INT64_MAX);
    ck_assert_int_eq(decode("cwpurge2 n/1 0 u 0 v", &d), 0);
}
END_TEST

/* The id and value limits hold at N and fail at N+1, on both sides. */
START_TEST(test_fleetmsg_limits)
{
    static char value[CW_LIMIT_KEY_BYTES + 1], id[CW_FLEETMSG_ID_BYTES + 1];
    static char buf[CW_FLEETMSG_BYTES + 64];
    struct cw_fleetmsg m = {.id = CW_STR_LIT("n/1"), .kind = CW_FLEETMSG_URL}, d;
    size_t len;

    memset(value, 'v', sizeof(value));
    memset(id, 'i', sizeof(id));
    id[1] = '/';
    m.value = cw_str_make(value, CW_LIMIT_KEY_BYTES);
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, CW_FLEETMSG_BYTES, &len), 0);
    ck_assert_int_eq(cw_fleetmsg_decode(buf, len, &d), 0);
    m.value = cw_str_make(value, CW_LIMIT_KEY_BYTES + 1);
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    /* The same bytes, written by hand, do not decode. */
    memcpy(buf, "cwpurge2 n/1 0 u 0 ", 19);
    memcpy(buf + 19, value, CW_LIMIT_KEY_BYTES + 1);
    ck_assert_int_eq(cw_fleetmsg_decode(buf, 19 + CW_LIMIT_KEY_BYTES + 1, &d), -EBADMSG);

    m.value = CW_STR_LIT("v");
    m.id = cw_str_make(id, CW_FLEETMSG_ID_BYTES - 1);
    m.time_ms = INT64_MAX;
    m.value = cw_str_make(value, CW_LIMIT_KEY_BYTES);
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, CW_FLEETMSG_BYTES, &len), 0);
    ck_assert_int_eq(cw_fleetmsg_decode(buf, len, &d), 0);
    m.id = cw_str_make(id, CW_FLEETMSG_ID_BYTES);
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, sizeof(buf), &len), -EINVAL);

    m.id = CW_STR_LIT("n/1");
    m.value = CW_STR_LIT("v");
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, 10, &len), -ENOSPC);
    m.time_ms = -1;
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    m.time_ms = 0;
    m.kind = CW_FLEETMSG_KIND_COUNT;
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
    m.kind = CW_FLEETMSG_TAG;
    m.id = CW_STR_LIT("n /1");
    ck_assert_int_eq(cw_fleetmsg_encode(&m, buf, sizeof(buf), &len), -EINVAL);
}
END_TEST

START_TEST(test_fleetmsg_log_read)
{
    static const char text[] = "1 1700000000000-3\n"
                               "1700000000000-2 5 hello"
                               "1700000000000-3 7 a b\nc d";
    struct cw_fleetmsg_log log;
    struct cw_str id, msg;

    ck_assert_int_eq(cw_fleetmsg_log_open(text, sizeof(text) - 1, &log), 0);
    ck_assert(log.kept);
    ck_assert(str_is(log.last_id, "1700000000000-3"));
    ck_assert_int_eq(cw_fleetmsg_log_next(&log, &id, &msg), 1);
    ck_assert(str_is(id, "1700000000000-2"));
    ck_assert(str_is(msg, "hello"));
    ck_assert_int_eq(cw_fleetmsg_log_next(&log, &id, &msg), 1);
    ck_assert(str_is(id, "1700000000000-3"));
    ck_assert(str_is(msg, "a b\nc d"));
    ck_assert_int_eq(cw_fleetmsg_log_next(&log, &id, &msg), 0);

    ck_assert_int_eq(cw_fleetmsg_log_open("0 0-0\n", 6, &log), 0);
    ck_assert(!log.kept);
    ck_assert_int_eq(cw_fleetmsg_log_next(&log, &id, &msg), 0);
    /* A length past the bytes present, a bad id, a bad head: refused, the rest dropped. */
    ck_assert_int_eq(cw_fleetmsg_log_open("1 1-1\n1-2 9 abc", 15, &log), 0);
    ck_assert_int_eq(cw_fleetmsg_log_next(&log, &id, &msg), -EBADMSG);
    ck_assert_int_eq(cw_fleetmsg_log_next(&log, &id, &msg), 0);
    ck_assert_int_eq(cw_fleetmsg_log_open("1 1-1\n1x2 1 a", 13, &log), 0);
    ck_assert_int_eq(cw_fleetmsg_log_next(&log, &id, &msg), -EBADMSG);
    ck_assert_int_eq(cw_fleetmsg_log_open("2 1-1\n", 6, &log), -EBADMSG);
    ck_assert_int_eq(cw_fleetmsg_log_open("1 1-\n", 5, &log), -EBADMSG);
    ck_assert_int_eq(cw_fleetmsg_log_open("1 1-1", 5, &log), -EBADMSG);
}
END_TEST

START_TEST(test_fleetmsg_log_cmp)
{
    ck_assert_int_lt(cw_fleetmsg_log_cmp(CW_STR_LIT("9-0"), CW_STR_LIT("10-0")), 0);
    ck_assert_int_lt(cw_fleetmsg_log_cmp(CW_STR_LIT("10-2"), CW_STR_LIT("10-10")), 0);
    ck_assert_int_eq(cw_fleetmsg_log_cmp(CW_STR_LIT("10-2"), CW_STR_LIT("10-2")), 0);
    ck_assert_int_gt(cw_fleetmsg_log_cmp(CW_STR_LIT("11-0"), CW_STR_LIT("10-99")), 0);
    ck_assert_int_lt(cw_fleetmsg_log_cmp(CW_STR_LIT("x"), CW_STR_LIT("0-0")), 0);
    ck_assert_int_eq(cw_fleetmsg_log_cmp(CW_STR_LIT("18446744073709551615-18446744073709551615"),
                                         CW_STR_LIT("18446744073709551615-18446744073709551615")),
                     0);
    ck_assert_int_lt(cw_fleetmsg_log_cmp(CW_STR_LIT("18446744073709551616-0"), CW_STR_LIT("0-0")),
                     0);
}
END_TEST

Suite *fleetmsg_suite(void)
{
    Suite *s = suite_create("fleetmsg");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_fleetmsg_roundtrip);
    tcase_add_test(tc, test_fleetmsg_version1);
    tcase_add_test(tc, test_fleetmsg_malformed);
    tcase_add_test(tc, test_fleetmsg_limits);
    tcase_add_test(tc, test_fleetmsg_log_read);
    tcase_add_test(tc, test_fleetmsg_log_cmp);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(fleetmsg_suite)
