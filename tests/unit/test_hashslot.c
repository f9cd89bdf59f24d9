/* tests/unit/test_hashslot.c - core/hashslot: the CRC16 check value, slots Redis computes
 * for known keys, every hash tag rule, MOVED/ASK parsing with its malformed forms, and the
 * kinds of error replies. */
#include "core/hashslot.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

Suite *hashslot_suite(void);

static unsigned slot_of(const char *s)
{
    return cw_hashslot_of(s, strlen(s));
}

START_TEST(test_hashslot_crc16_check_value)
{
    ck_assert_uint_eq(cw_hashslot_crc16("123456789", 9), 0x31c3);
    ck_assert_uint_eq(cw_hashslot_crc16("", 0), 0);
}
END_TEST

/* Values from CLUSTER KEYSLOT on Redis 7. */
START_TEST(test_hashslot_known_keys)
{
    ck_assert_uint_eq(slot_of("foo"), 12182);
    ck_assert_uint_eq(slot_of("bar"), 5061);
    ck_assert_uint_eq(slot_of("hello"), 866);
    ck_assert_uint_eq(slot_of(""), 0);
}
END_TEST

START_TEST(test_hashslot_hash_tags)
{
    /* The tag alone is hashed. */
    ck_assert_uint_eq(slot_of("{user1000}.following"), slot_of("user1000"));
    ck_assert_uint_eq(slot_of("{user1000}.followers"), slot_of("{user1000}.following"));
    ck_assert_uint_eq(slot_of("cw:{ab}t:news"), slot_of("ab"));
    /* First '{' and the next '}': "foo{{bar}}zap" hashes "{bar". */
    ck_assert_uint_eq(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* The first tag wins: "foo{bar}{zap}" hashes "bar". */
    ck_assert_uint_eq(slot_of("foo{bar}{zap}"), slot_of("bar"));
    /* An empty tag, or none closed: the whole key. */
    ck_assert_uint_eq(slot_of("foo{}{bar}"), cw_hashslot_crc16("foo{}{bar}", 10) & 16383);
    ck_assert_uint_eq(slot_of("foo{bar"), cw_hashslot_crc16("foo{bar", 7) & 16383);
    ck_assert_uint_eq(slot_of("}foo{"), cw_hashslot_crc16("}foo{", 5) & 16383);
    /* Length-bounded: bytes past len are not read. */
    ck_assert_uint_eq(cw_hashslot_of("{ab}xyz", 3), cw_hashslot_crc16("{ab", 3) & 16383);
}
END_TEST

START_TEST(test_hashslot_redirects)
{
    struct cw_hashslot_redirect r;
    const char *m = "MOVED 3999 127.0.0.1:6381";

    ck_assert_int_eq(cw_hashslot_parse_redirect(m, strlen(m), &r), 0);
    ck_assert(!r.is_ask);
    ck_assert_uint_eq(r.slot, 3999);
    ck_assert_str_eq(r.host, "127.0.0.1");
    ck_assert_int_eq(r.port, 6381);
    m = "ASK 16383 ::1:7000";
    ck_assert_int_eq(cw_hashslot_parse_redirect(m, strlen(m), &r), 0);
    ck_assert(r.is_ask);
    ck_assert_uint_eq(r.slot, 16383);
    ck_assert_str_eq(r.host, "::1");
    ck_assert_int_eq(r.port, 7000);
    m = "MOVED 0 [fe80::1]:1";
    ck_assert_int_eq(cw_hashslot_parse_redirect(m, strlen(m), &r), 0);
    ck_assert_str_eq(r.host, "fe80::1");
    ck_assert_int_eq(r.port, 1);
}
END_TEST

START_TEST(test_hashslot_bad_redirects)
{
    static const char *const other[] = {"ERR unknown command",
                                        "MOVED",
                                        "MOVEDX 1 a:1",
                                        "ASK",
                                        "CLUSTERDOWN Hash slot not served",
                                        ""};
    static const char *const bad[] = {
        "MOVED 16384 a:1", "MOVED 99999 a:1", "MOVED x a:1",     "MOVED 1 a",
        "MOVED 1 a:",      "MOVED 1 a:0",     "MOVED 1 a:65536", "MOVED 1 :80",
        "MOVED 1",         "ASK 1 a:1x",      "MOVED  1 a:1",    "MOVED 1 a b:1",
    };
    struct cw_hashslot_redirect r;

    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        ck_assert_msg(cw_hashslot_parse_redirect(other[i], strlen(other[i]), &r) == -ENOENT, "%s",
                      other[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(cw_hashslot_parse_redirect(bad[i], strlen(bad[i]), &r) == -EBADMSG, "%s",
                      bad[i]);
    }
}
END_TEST

/* What each error reply asks of the client, by its first word only. */
START_TEST(test_hashslot_error_kinds)
{
    static const struct {
        const char *text;
        enum cw_hashslot_error kind;
    } cases[] = {
        {"MOVED 3999 127.0.0.1:6381", CW_HASHSLOT_ERROR_MOVED},
        {"ASK 1 a:1", CW_HASHSLOT_ERROR_ASK},
        {"TRYAGAIN Multiple keys request during rehashing of slot", CW_HASHSLOT_ERROR_TRYAGAIN},
        {"TRYAGAIN", CW_HASHSLOT_ERROR_TRYAGAIN},
        {"CLUSTERDOWN Hash slot not served", CW_HASHSLOT_ERROR_CLUSTERDOWN},
        {"CLUSTERDOWN", CW_HASHSLOT_ERROR_CLUSTERDOWN},
        {"MOVED", CW_HASHSLOT_ERROR_OTHER},
        {"MOVED ", CW_HASHSLOT_ERROR_OTHER},
        {"ASK", CW_HASHSLOT_ERROR_OTHER},
        {"ASKING", CW_HASHSLOT_ERROR_OTHER},
        {"TRYAGAINX", CW_HASHSLOT_ERROR_OTHER},
        {"CLUSTERDOWNX y", CW_HASHSLOT_ERROR_OTHER},
        {"ERR unknown command 'TRYAGAIN'", CW_HASHSLOT_ERROR_OTHER},
        {"READONLY You can't write against a read only replica.", CW_HASHSLOT_ERROR_OTHER},
        {"", CW_HASHSLOT_ERROR_OTHER},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_msg(cw_hashslot_error_kind(cases[i].text, strlen(cases[i].text)) == cases[i].kind,
                      "%s", cases[i].text);
    }
    /* Only len bytes count: "TRYAGAIN" cut to 7 is another word. */
    ck_assert_int_eq(cw_hashslot_error_kind("TRYAGAIN", 7), CW_HASHSLOT_ERROR_OTHER);
    ck_assert_int_eq(cw_hashslot_error_kind("TRYAGAINX", 8), CW_HASHSLOT_ERROR_TRYAGAIN);
}
END_TEST

/* The host buffer holds CW_HASHSLOT_HOST_SIZE - 1 bytes: N passes, N+1 is malformed. */
START_TEST(test_hashslot_redirect_host_limit)
{
    char m[400];
    struct cw_hashslot_redirect r;
    int n = snprintf(m, sizeof(m), "MOVED 1 %0*d:80", CW_HASHSLOT_HOST_SIZE - 1, 0);

    ck_assert_int_eq(cw_hashslot_parse_redirect(m, (size_t)n, &r), 0);
    ck_assert_uint_eq(strlen(r.host), CW_HASHSLOT_HOST_SIZE - 1);
    n = snprintf(m, sizeof(m), "MOVED 1 %0*d:80", CW_HASHSLOT_HOST_SIZE, 0);
    ck_assert_int_eq(cw_hashslot_parse_redirect(m, (size_t)n, &r), -EBADMSG);
}
END_TEST

Suite *hashslot_suite(void)
{
    Suite *s = suite_create("hashslot");
    TCase *tc = tcase_create("hashslot");

    tcase_add_test(tc, test_hashslot_crc16_check_value);
    tcase_add_test(tc, test_hashslot_known_keys);
    tcase_add_test(tc, test_hashslot_hash_tags);
    tcase_add_test(tc, test_hashslot_redirects);
    tcase_add_test(tc, test_hashslot_bad_redirects);
    tcase_add_test(tc, test_hashslot_redirect_host_limit);
    tcase_add_test(tc, test_hashslot_error_kinds);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(hashslot_suite)
