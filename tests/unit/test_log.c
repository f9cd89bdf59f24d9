/* tests/unit/test_log.c - the log level parser and the per-call-site rate limit. */
#include "core/log.h"

#include <check.h>
#include <errno.h>
#include <string.h>

Suite *log_suite(void);

START_TEST(test_log_level_parse)
{
    enum cw_log_level l;

    ck_assert_int_eq(cw_log_level_parse("warn", &l), 0);
    ck_assert_int_eq(l, CW_LOG_WARN);
    ck_assert_int_eq(cw_log_level_parse("debug", &l), 0);
    ck_assert_int_eq(l, CW_LOG_DEBUG);
    ck_assert_int_eq(cw_log_level_parse("loud", &l), -EINVAL);
}
END_TEST

/* CW_LOG_RL_BURST lines a second pass, the next are counted, and the next second reports
 * how many were suppressed, once. */
START_TEST(test_log_rate_limit_burst_and_report)
{
    struct cw_log_rl rl;
    unsigned sup = 0, passed = 0;

    memset(&rl, 0, sizeof(rl));
    for (int i = 0; i < CW_LOG_RL_BURST + 5; i++)
        passed += cw_log_rl_allow(&rl, 100, &sup);
    ck_assert_uint_eq(passed, CW_LOG_RL_BURST);
    ck_assert_uint_eq(sup, 0);
    ck_assert(cw_log_rl_allow(&rl, 101, &sup));
    ck_assert_uint_eq(sup, 5);
    sup = 0;
    ck_assert(cw_log_rl_allow(&rl, 101, &sup));
    ck_assert_uint_eq(sup, 0);
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");

    tcase_add_test(tc, test_log_level_parse);
    tcase_add_test(tc, test_log_rate_limit_burst_and_report);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(log_suite)
