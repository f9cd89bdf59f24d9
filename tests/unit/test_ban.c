/* tests/unit/test_ban.c - ban records against entries read from L2. */
#include <check.h>
#include <string.h>

#include "core/ban.h"
#include "core/entry.h"
#include "core/fleetmsg.h"
#include "tests/unit/check_main.h"

Suite *ban_suite(void);

static struct cw_fleetmsg ban(const char *prefix, int64_t t, bool soft)
{
    struct cw_fleetmsg m = {.id = CW_STR_LIT("n/1:1"),
                            .time_ms = t,
                            .kind = CW_FLEETMSG_BAN,
                            .soft = soft,
                            .value = cw_str_cstr(prefix)};
    return m;
}

START_TEST(test_ban_match)
{
    struct cw_str key = CW_STR_LIT("http://www.example.test/api/v1?x=1");
    struct cw_fleetmsg b = ban("http://www.example.test/api/", 1000, false);

    ck_assert_int_eq(cw_ban_match(&b, key, 999), CW_BAN_HARD);
    /* Stored in the ban's millisecond: covered (the safe side). */
    ck_assert_int_eq(cw_ban_match(&b, key, 1000), CW_BAN_HARD);
    ck_assert_int_eq(cw_ban_match(&b, key, 1001), CW_BAN_NONE);
    b.soft = true;
    ck_assert_int_eq(cw_ban_match(&b, key, 999), CW_BAN_SOFT);
    b = ban("http://www.example.test/apx", 1000, false);
    ck_assert_int_eq(cw_ban_match(&b, key, 1), CW_BAN_NONE);
    /* A prefix longer than the key never matches; one equal to it does. */
    b = ban("http://www.example.test/api/v1?x=1&y", 1000, false);
    ck_assert_int_eq(cw_ban_match(&b, key, 1), CW_BAN_NONE);
    b = ban("http://www.example.test/api/v1?x=1", 1000, false);
    ck_assert_int_eq(cw_ban_match(&b, key, 1), CW_BAN_HARD);
    /* Other kinds are not bans. */
    b.kind = CW_FLEETMSG_PREFIX;
    ck_assert_int_eq(cw_ban_match(&b, key, 1), CW_BAN_NONE);
}
END_TEST

START_TEST(test_ban_check_strongest)
{
    struct cw_str key = CW_STR_LIT("http://h/a/b");
    const char *raw[] = {"cwpurge2 n/1:1 3000 b 1 http://h/a", "garbage",
                         "cwpurge2 n/1:2 2000 b 1 http://h/", "cwpurge2 n/1:3 500 b 0 http://h/a"};
    struct cw_str recs[4];
    int64_t soft_at = 0;
    size_t bad = 0;

    for (size_t i = 0; i < 4; i++)
        recs[i] = cw_str_cstr(raw[i]);
    /* Stored at 1000: the hard ban of 500 is older, the soft ones apply; the earliest wins. */
    ck_assert_int_eq(cw_ban_check(recs, 4, key, 1000, &soft_at, &bad), CW_BAN_SOFT);
    ck_assert_int_eq(soft_at, 2000);
    ck_assert_int_eq(bad, 1);
    ck_assert_int_eq(cw_ban_check(recs, 4, key, 400, &soft_at, NULL), CW_BAN_HARD);
    ck_assert_int_eq(cw_ban_check(recs, 4, key, 3001, &soft_at, NULL), CW_BAN_NONE);
    ck_assert_int_eq(cw_ban_check(recs, 0, key, 1, &soft_at, NULL), CW_BAN_NONE);
}
END_TEST

START_TEST(test_ban_soften)
{
    struct cw_entry_hdr h = {.fresh_until_ms = 5000, .swr_until_ms = 8000, .sie_until_ms = 5500};

    cw_ban_soften(&h, 2000);
    ck_assert(h.flags & CW_ENTRY_SOFT_PURGED);
    ck_assert_int_eq(h.fresh_until_ms, 2000);
    ck_assert_int_eq(h.swr_until_ms, 5000);
    ck_assert_int_eq(h.sie_until_ms, 2500);
    /* Already stale: only the flag. */
    h = (struct cw_entry_hdr){.fresh_until_ms = 1000, .swr_until_ms = 3000, .sie_until_ms = 900};
    cw_ban_soften(&h, 2000);
    ck_assert(h.flags & CW_ENTRY_SOFT_PURGED);
    ck_assert_int_eq(h.fresh_until_ms, 1000);
    ck_assert_int_eq(h.swr_until_ms, 3000);
    /* Windows never end before the purge. */
    h = (struct cw_entry_hdr){.fresh_until_ms = 5000, .swr_until_ms = 5000, .sie_until_ms = 0};
    cw_ban_soften(&h, 2000);
    ck_assert_int_eq(h.swr_until_ms, 2000);
    ck_assert_int_eq(h.sie_until_ms, 2000);
}
END_TEST

Suite *ban_suite(void)
{
    Suite *s = suite_create("ban");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_ban_match);
    tcase_add_test(tc, test_ban_check_strongest);
    tcase_add_test(tc, test_ban_soften);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(ban_suite)
