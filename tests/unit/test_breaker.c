/* tests/unit/test_breaker.c - core/breaker: opens at the threshold (not before), refuses
 * until the probe time, one probe at a time, backoff doubling to the cap, late failures
 * ignored, a success closes. Time is passed in; nothing sleeps. */
#include "core/breaker.h"

#include <check.h>
#include <stdint.h>

Suite *breaker_suite(void);

START_TEST(test_breaker_opens_at_threshold)
{
    struct cw_breaker b;

    cw_breaker_init(&b, 3, 100, 1000);
    ck_assert(cw_breaker_is_closed(&b));
    ck_assert(!cw_breaker_record(&b, false, 0));
    ck_assert(!cw_breaker_record(&b, false, 0));
    ck_assert(!cw_breaker_record(&b, true, 0)); /* a success resets the run */
    ck_assert(!cw_breaker_record(&b, false, 0));
    ck_assert(!cw_breaker_record(&b, false, 0));
    ck_assert(cw_breaker_is_closed(&b));
    ck_assert(cw_breaker_record(&b, false, 10));
    ck_assert_int_eq(b.state, CW_BREAKER_OPEN);
    ck_assert_int_eq(cw_breaker_next_ms(&b), 110);
    ck_assert(!cw_breaker_record(&b, false, 20)); /* late failure: no change */
    ck_assert_int_eq(cw_breaker_next_ms(&b), 110);
}
END_TEST

START_TEST(test_breaker_probe_and_backoff)
{
    struct cw_breaker b;

    cw_breaker_init(&b, 1, 100, 350);
    ck_assert(cw_breaker_record(&b, false, 0));
    ck_assert(!cw_breaker_take_probe(&b, 99));
    ck_assert(cw_breaker_take_probe(&b, 100));
    ck_assert_int_eq(b.state, CW_BREAKER_PROBING);
    ck_assert(!cw_breaker_take_probe(&b, 100)); /* one probe at a time */
    ck_assert_int_eq(cw_breaker_next_ms(&b), INT64_MAX);
    ck_assert(!cw_breaker_record(&b, false, 105)); /* a late ordinary failure */
    ck_assert(cw_breaker_record_probe(&b, false, 110));
    ck_assert_int_eq(cw_breaker_next_ms(&b), 310); /* 200 */
    ck_assert(cw_breaker_take_probe(&b, 310));
    ck_assert(cw_breaker_record_probe(&b, false, 310));
    ck_assert_int_eq(cw_breaker_next_ms(&b), 660); /* 350, the cap */
    ck_assert(cw_breaker_take_probe(&b, 700));
    ck_assert(cw_breaker_record_probe(&b, false, 700));
    ck_assert_int_eq(cw_breaker_next_ms(&b), 1050);
    ck_assert(cw_breaker_take_probe(&b, 1050));
    ck_assert(cw_breaker_record_probe(&b, true, 1060));
    ck_assert(cw_breaker_is_closed(&b));
    /* Reopening starts from the minimum wait again. */
    ck_assert(cw_breaker_record(&b, false, 2000));
    ck_assert_int_eq(cw_breaker_next_ms(&b), 2100);
    /* An ordinary success while open closes too (a late reply: Redis answers). */
    ck_assert(cw_breaker_record(&b, true, 2001));
    ck_assert(cw_breaker_is_closed(&b));
}
END_TEST

START_TEST(test_breaker_init_bounds)
{
    struct cw_breaker b;

    cw_breaker_init(&b, 0, 0, -5);
    ck_assert_uint_eq(b.threshold, 1);
    ck_assert_int_eq(b.min_wait_ms, 1);
    ck_assert_int_eq(b.max_wait_ms, 1);
    ck_assert_str_eq(cw_breaker_state_name(CW_BREAKER_PROBING), "probing");
}
END_TEST

Suite *breaker_suite(void)
{
    Suite *s = suite_create("breaker");
    TCase *tc = tcase_create("breaker");

    tcase_add_test(tc, test_breaker_opens_at_threshold);
    tcase_add_test(tc, test_breaker_probe_and_backoff);
    tcase_add_test(tc, test_breaker_init_bounds);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(breaker_suite)
