/* tests/unit/test_pool.c - core/pool: weighted round robin and least_conn choose as weighted,
 * skip down servers and prefer primaries to backups, a retry avoids the failed server; passive
 * health marks down at max_fails with a doubling, capped down time; active checks flip at
 * rise/fall; the origin breaker opens on failures in a row within its window, lets one probe
 * through after its cooldown, and closes on the probe's success; a probe released without an
 * outcome lets the next request go as the probe at once; the retry budget allows its burst,
 * then its share of the requests sent, and gives back a retry that was not sent. */
#include "core/pool.h"

#include <check.h>
#include <stdint.h>

Suite *pool_suite(void);

static void t_servers(struct cw_pool_server *s, size_t n, const int *weights)
{
    for (size_t i = 0; i < n; i++)
        s[i] = (struct cw_pool_server){.weight = weights[i], .is_up = true};
}

START_TEST(test_pool_round_robin_weighted)
{
    static const int w[] = {1, 1, 2};
    struct cw_pool_server s[3];
    int got[3] = {0};

    t_servers(s, 3, w);
    for (int i = 0; i < 400; i++)
        got[cw_pool_pick(s, 3, CW_POOL_ROUND_ROBIN, -1)]++;
    ck_assert_int_eq(got[0], 100);
    ck_assert_int_eq(got[1], 100);
    ck_assert_int_eq(got[2], 200);
    /* Smooth: the heavy server never gets more than two picks in a row out of four. */
    int a = cw_pool_pick(s, 3, CW_POOL_ROUND_ROBIN, -1);
    int b = cw_pool_pick(s, 3, CW_POOL_ROUND_ROBIN, -1);
    int c = cw_pool_pick(s, 3, CW_POOL_ROUND_ROBIN, -1);
    ck_assert(!(a == 2 && b == 2 && c == 2));
}
END_TEST

START_TEST(test_pool_skips_down_and_uses_backups)
{
    static const int w[] = {1, 1, 1};
    struct cw_pool_server s[3];

    t_servers(s, 3, w);
    s[2].is_backup = true;
    s[0].is_up = false;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(cw_pool_pick(s, 3, CW_POOL_ROUND_ROBIN, -1), 1);
    s[1].is_up = false;
    ck_assert_int_eq(cw_pool_pick(s, 3, CW_POOL_ROUND_ROBIN, -1), 2); /* the backup */
    s[2].is_up = false;
    ck_assert_int_eq(cw_pool_pick(s, 3, CW_POOL_ROUND_ROBIN, -1), -1);
    s[0].is_up = true;
    ck_assert_int_eq(cw_pool_pick(s, 3, CW_POOL_LEAST_CONN, -1), 0);
}
END_TEST

START_TEST(test_pool_retry_avoids_excluded)
{
    static const int w[] = {1, 1};
    struct cw_pool_server s[2];

    t_servers(s, 2, w);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(cw_pool_pick(s, 2, CW_POOL_ROUND_ROBIN, 0), 1);
    s[1].is_up = false;
    /* Only the excluded one is up: it is returned, and the caller decides. */
    ck_assert_int_eq(cw_pool_pick(s, 2, CW_POOL_ROUND_ROBIN, 0), 0);
}
END_TEST

START_TEST(test_pool_least_conn_by_weight)
{
    static const int w[] = {1, 2};
    struct cw_pool_server s[2];

    t_servers(s, 2, w);
    s[0].running = 1;
    s[1].running = 1; /* 1/1 against 1/2: server 1 is less loaded */
    ck_assert_int_eq(cw_pool_pick(s, 2, CW_POOL_LEAST_CONN, -1), 1);
    s[1].running = 3; /* 3/2 > 1/1 */
    ck_assert_int_eq(cw_pool_pick(s, 2, CW_POOL_LEAST_CONN, -1), 0);
    s[0].running = 0;
    s[1].running = 0; /* a tie: round robin by weight */
    int got[2] = {0};
    for (int i = 0; i < 30; i++)
        got[cw_pool_pick(s, 2, CW_POOL_LEAST_CONN, -1)]++;
    ck_assert_int_eq(got[0], 10);
    ck_assert_int_eq(got[1], 20);
}
END_TEST

START_TEST(test_pool_passive_health_backoff)
{
    struct cw_pool_health h = {3, 100, 350};
    uint64_t w = 0;

    w = cw_pool_health_next(w, false, 1000, &h);
    w = cw_pool_health_next(w, false, 1000, &h);
    ck_assert(!cw_pool_health_is_down(w, 1000));
    w = cw_pool_health_next(w, false, 1000, &h); /* the third: down 100 ms */
    ck_assert(cw_pool_health_is_down(w, 1099));
    ck_assert(!cw_pool_health_is_down(w, 1100));
    w = cw_pool_health_next(w, false, 1100, &h); /* tried again, failed: 200 ms */
    ck_assert_int_eq(cw_pool_health_down_until(w), 1300);
    w = cw_pool_health_next(w, false, 1300, &h); /* 400, capped at 350 */
    ck_assert_int_eq(cw_pool_health_down_until(w), 1650);
    ck_assert_uint_eq(cw_pool_health_next(w, true, 1700, &h), 0);
}
END_TEST

START_TEST(test_pool_active_rise_fall)
{
    bool changed;
    uint32_t w = 0;

    w = cw_pool_probe_next(w, false, 2, 3, &changed);
    w = cw_pool_probe_next(w, false, 2, 3, &changed);
    ck_assert(!changed && !cw_pool_probe_is_down(w));
    w = cw_pool_probe_next(w, true, 2, 3, &changed); /* a success ends the run */
    w = cw_pool_probe_next(w, false, 2, 3, &changed);
    w = cw_pool_probe_next(w, false, 2, 3, &changed);
    ck_assert(!cw_pool_probe_is_down(w));
    w = cw_pool_probe_next(w, false, 2, 3, &changed);
    ck_assert(changed && cw_pool_probe_is_down(w));
    w = cw_pool_probe_next(w, true, 2, 3, &changed);
    ck_assert(!changed && cw_pool_probe_is_down(w));
    w = cw_pool_probe_next(w, true, 2, 3, &changed);
    ck_assert(changed && !cw_pool_probe_is_down(w));
}
END_TEST

START_TEST(test_pool_breaker_states)
{
    struct cw_pool_breaker b = {
        .failures = 3, .window_ms = 1000, .cooldown_ms = 500, .probe_ms = 200};
    uint64_t w = 0, next;

    ck_assert_int_eq(cw_pool_breaker_admit(w, 0, &b, &next), CW_POOL_ADMIT_GO);
    w = cw_pool_breaker_next(w, false, false, 0, &b);
    w = cw_pool_breaker_next(w, false, false, 10, &b);
    ck_assert_int_eq(cw_pool_breaker_state(w), CW_POOL_BREAKER_CLOSED);
    w = cw_pool_breaker_next(w, true, false, 20, &b); /* a success ends the run */
    w = cw_pool_breaker_next(w, false, false, 30, &b);
    w = cw_pool_breaker_next(w, false, false, 40, &b);
    w = cw_pool_breaker_next(w, false, false, 2000, &b); /* the run's first is too old */
    ck_assert_int_eq(cw_pool_breaker_state(w), CW_POOL_BREAKER_CLOSED);
    w = cw_pool_breaker_next(w, false, false, 2010, &b);
    w = cw_pool_breaker_next(w, false, false, 2020, &b);
    ck_assert_int_eq(cw_pool_breaker_state(w), CW_POOL_BREAKER_OPEN);
    ck_assert_int_eq(cw_pool_breaker_admit(w, 2519, &b, &next), CW_POOL_ADMIT_REFUSE);
    /* A late failure of a request sent before it opened changes nothing. */
    ck_assert_uint_eq(cw_pool_breaker_next(w, false, false, 2100, &b), w);
    ck_assert_int_eq(cw_pool_breaker_admit(w, 2520, &b, &next), CW_POOL_ADMIT_PROBE);
    w = next;
    ck_assert_int_eq(cw_pool_breaker_state(w), CW_POOL_BREAKER_HALF_OPEN);
    ck_assert_int_eq(cw_pool_breaker_admit(w, 2600, &b, &next), CW_POOL_ADMIT_REFUSE);
    /* The probe fails: open for another cooldown. */
    w = cw_pool_breaker_next(w, false, true, 2600, &b);
    ck_assert_int_eq(cw_pool_breaker_state(w), CW_POOL_BREAKER_OPEN);
    ck_assert_int_eq(cw_pool_breaker_time(w), 3100);
    ck_assert_int_eq(cw_pool_breaker_admit(w, 3100, &b, &next), CW_POOL_ADMIT_PROBE);
    w = next;
    /* A probe never reported (its process died): another may go after probe_ms. */
    ck_assert_int_eq(cw_pool_breaker_admit(w, 3299, &b, &next), CW_POOL_ADMIT_REFUSE);
    ck_assert_int_eq(cw_pool_breaker_admit(w, 3300, &b, &next), CW_POOL_ADMIT_PROBE);
    w = next;
    w = cw_pool_breaker_next(w, true, true, 3310, &b);
    ck_assert_uint_eq(w, 0);
    ck_assert_str_eq(cw_pool_breaker_name(CW_POOL_BREAKER_HALF_OPEN), "half-open");
}
END_TEST

START_TEST(test_pool_breaker_probe_released)
{
    struct cw_pool_breaker b = {
        .failures = 1, .window_ms = 1000, .cooldown_ms = 500, .probe_ms = 12000};
    uint64_t w = cw_pool_breaker_next(0, false, false, 0, &b), next;

    ck_assert_int_eq(cw_pool_breaker_admit(w, 500, &b, &next), CW_POOL_ADMIT_PROBE);
    w = next;
    ck_assert_int_eq(cw_pool_breaker_admit(w, 600, &b, &next), CW_POOL_ADMIT_REFUSE);
    /* The probe's client went away at 700: without the release, every request would be
     * refused until 12500. */
    w = cw_pool_breaker_release(w, 700);
    ck_assert_int_eq(cw_pool_breaker_state(w), CW_POOL_BREAKER_HALF_OPEN);
    ck_assert_int_eq(cw_pool_breaker_admit(w, 700, &b, &next), CW_POOL_ADMIT_PROBE);
    w = next;
    ck_assert_int_eq(cw_pool_breaker_admit(w, 701, &b, &next), CW_POOL_ADMIT_REFUSE);
    /* The new probe's success closes it. */
    ck_assert_uint_eq(cw_pool_breaker_next(w, true, true, 800, &b), 0);
    /* Released in any other state: nothing changes. */
    ck_assert_uint_eq(cw_pool_breaker_release(0, 900), 0);
    w = cw_pool_breaker_next(0, false, false, 900, &b);
    ck_assert_int_eq(cw_pool_breaker_state(w), CW_POOL_BREAKER_OPEN);
    ck_assert_uint_eq(cw_pool_breaker_release(w, 950), w);
}
END_TEST

START_TEST(test_pool_retry_budget)
{
    struct cw_pool_budget b;
    int got = 0;

    /* 20 %, burst 10: the burst at once, then none until requests earn more. */
    cw_pool_budget_init(&b, 20, 10);
    for (int i = 0; i < 10; i++)
        ck_assert(cw_pool_budget_take(&b));
    ck_assert(!cw_pool_budget_take(&b));
    /* Five requests earn one retry, not before. */
    for (int i = 0; i < 4; i++)
        cw_pool_budget_earn(&b);
    ck_assert(!cw_pool_budget_take(&b));
    cw_pool_budget_earn(&b);
    ck_assert(cw_pool_budget_take(&b));
    ck_assert(!cw_pool_budget_take(&b));
    /* Every request fails and wants its retry: over 1000 requests, 200 go. */
    for (int i = 0; i < 1000; i++) {
        cw_pool_budget_earn(&b);
        if (cw_pool_budget_take(&b)) got++;
    }
    ck_assert_int_eq(got, 200);
    /* Quiet requests fill the bucket up to the burst, never past it. */
    for (int i = 0; i < 1000; i++)
        cw_pool_budget_earn(&b);
    got = 0;
    while (cw_pool_budget_take(&b))
        got++;
    ck_assert_int_eq(got, 10);
    /* A retry taken but not sent is given back (up to the burst). */
    cw_pool_budget_refund(&b);
    ck_assert(cw_pool_budget_take(&b));
    ck_assert(!cw_pool_budget_take(&b));
    cw_pool_budget_init(&b, 100, 10);
    cw_pool_budget_refund(&b);
    for (got = 0; cw_pool_budget_take(&b); got++)
        ;
    ck_assert_int_eq(got, 10);
    /* 0 %: the burst only; over 100 %: one retry per request at most. */
    cw_pool_budget_init(&b, 0, 2);
    for (int i = 0; i < 100; i++)
        cw_pool_budget_earn(&b);
    ck_assert(cw_pool_budget_take(&b) && cw_pool_budget_take(&b) && !cw_pool_budget_take(&b));
    cw_pool_budget_init(&b, 500, 0);
    cw_pool_budget_earn(&b);
    ck_assert(!cw_pool_budget_take(&b)); /* burst 0: nothing is ever held */
    cw_pool_budget_init(&b, 500, 1);
    ck_assert(cw_pool_budget_take(&b));
    cw_pool_budget_earn(&b);
    ck_assert(cw_pool_budget_take(&b) && !cw_pool_budget_take(&b));
}
END_TEST

Suite *pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");

    tcase_add_test(tc, test_pool_round_robin_weighted);
    tcase_add_test(tc, test_pool_skips_down_and_uses_backups);
    tcase_add_test(tc, test_pool_retry_avoids_excluded);
    tcase_add_test(tc, test_pool_least_conn_by_weight);
    tcase_add_test(tc, test_pool_passive_health_backoff);
    tcase_add_test(tc, test_pool_active_rise_fall);
    tcase_add_test(tc, test_pool_breaker_states);
    tcase_add_test(tc, test_pool_breaker_probe_released);
    tcase_add_test(tc, test_pool_retry_budget);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(pool_suite)
