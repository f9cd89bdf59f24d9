/* tests/unit/test_req_ready.c - workers/req_ready: a worker's ready answers. A kept answer is
 * given back only for its key, its id and the very bytes it was built from; the keys that share
 * a set stay ready together, a full set displaces its least recently used answer, the byte
 * budget counts the answer a put would displace as freed, and an answer is kept only for a key
 * built READY_SEEN times for it (or whose last kept answer served as many hits). */
#include "workers/req_ready.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

Suite *req_ready_suite(void);

#define BODY_LEN    1024
#define HEADERS     "Content-Type: text/plain\r\nCache-Control: max-age=60\r\n"
#define KEYS_IN_SET 4 /* READY_WAYS */
#define SEEN        8 /* READY_SEEN */

static char body[BODY_LEN];

/* A key in set `set` (the hash's bytes 4-7 pick it), told apart from the others by `n`. */
static struct cw_key key_in_set(uint32_t set, uint8_t n)
{
    struct cw_key k;

    memset(&k, 0, sizeof(k));
    memcpy(k.h + 4, &set, sizeof(set));
    k.h[0] = n;
    k.h[15] = 0xa5;
    return k;
}

static struct cw_entry_view view_of(const char *b, size_t len, int64_t stored_at)
{
    struct cw_entry_view v;

    memset(&v, 0, sizeof(v));
    v.h.status = 200;
    v.h.stored_at_ms = stored_at;
    v.h.response_time_ms = stored_at;
    v.headers = HEADERS;
    v.headers_len = strlen(HEADERS);
    v.body = cw_str_make(b, len);
    return v;
}

static struct req_ready_id id_at_age(int64_t age)
{
    return (struct req_ready_id){.age_s = age, .ttl_s = 60 - age, .status = 200, .kind = 1};
}

/* Builds and keeps key's answer for v: the response kept. */
static struct MHD_Response *keep(struct req_ready *c, const struct cw_key *key,
                                 const struct req_ready_id *id, const struct cw_entry_view *v)
{
    const char *copy = NULL;
    struct MHD_Response *resp;

    ck_assert(req_ready_fits(c, key, v));
    resp = req_ready_build(v, &copy);
    ck_assert_ptr_nonnull(resp);
    ck_assert_ptr_nonnull(copy);
    req_ready_put(c, key, id, v, resp, copy);
    return resp;
}

START_TEST(test_ready_given_back_only_for_the_same_bytes_and_id)
{
    struct req_ready *c = req_ready_new();
    struct cw_key k = key_in_set(7, 1), other = key_in_set(7, 2);
    struct req_ready_id id = id_at_age(3), older = id_at_age(4);
    struct cw_entry_view v = view_of(body, BODY_LEN, 1000);
    struct MHD_Response *resp = keep(c, &k, &id, &v);
    char changed[BODY_LEN];
    struct cw_entry_view w;

    ck_assert_ptr_eq(req_ready_get(c, &k, &id, &v), resp);
    ck_assert_ptr_null(req_ready_get(c, &other, &id, &v));
    /* Another Age (the clock moved): rebuilt. */
    ck_assert_ptr_null(req_ready_get(c, &k, &older, &v));
    /* Another entry under the key: another store time, or one body byte changed. */
    w = view_of(body, BODY_LEN, 1001);
    ck_assert_ptr_null(req_ready_get(c, &k, &id, &w));
    memcpy(changed, body, sizeof(changed));
    changed[BODY_LEN - 1] ^= 1;
    w = view_of(changed, BODY_LEN, 1000);
    ck_assert_ptr_null(req_ready_get(c, &k, &id, &w));
    ck_assert_ptr_eq(req_ready_get(c, &k, &id, &v), resp);
    req_ready_free(c);
}
END_TEST

START_TEST(test_ready_keys_of_one_set_stay_ready_together)
{
    struct req_ready *c = req_ready_new();
    struct req_ready_id id = id_at_age(0);
    struct cw_entry_view v = view_of(body, BODY_LEN, 1000);
    struct MHD_Response *resp[KEYS_IN_SET + 1];
    struct cw_key k[KEYS_IN_SET + 1];

    for (uint8_t i = 0; i < KEYS_IN_SET; i++) {
        k[i] = key_in_set(42, i);
        resp[i] = keep(c, &k[i], &id, &v);
    }
    /* Used in turn, again and again: every one is still kept. */
    for (int round = 0; round < 3; round++)
        for (uint8_t i = 0; i < KEYS_IN_SET; i++)
            ck_assert_ptr_eq(req_ready_get(c, &k[i], &id, &v), resp[i]);
    /* One more key in the set displaces the least recently used (key 1: the others used
     * since), and only it. */
    for (uint8_t i = 0; i < KEYS_IN_SET; i++)
        if (i != 1) ck_assert_ptr_eq(req_ready_get(c, &k[i], &id, &v), resp[i]);
    k[KEYS_IN_SET] = key_in_set(42, KEYS_IN_SET);
    resp[KEYS_IN_SET] = keep(c, &k[KEYS_IN_SET], &id, &v);
    ck_assert_ptr_null(req_ready_get(c, &k[1], &id, &v));
    for (uint8_t i = 0; i <= KEYS_IN_SET; i++)
        if (i != 1) ck_assert_ptr_eq(req_ready_get(c, &k[i], &id, &v), resp[i]);
    /* A rebuilt answer takes its own key's place, not another's. */
    id = id_at_age(1);
    resp[0] = keep(c, &k[0], &id, &v);
    for (uint8_t i = 0; i <= KEYS_IN_SET; i++) {
        struct req_ready_id want = i == 0 ? id : id_at_age(0);
        if (i != 1) ck_assert_ptr_eq(req_ready_get(c, &k[i], &want, &v), resp[i]);
    }
    req_ready_free(c);
}
END_TEST

START_TEST(test_ready_budget_counts_what_a_put_displaces)
{
    static char big[200 << 10];
    struct req_ready *c = req_ready_new();
    struct req_ready_id id = id_at_age(0);
    struct cw_entry_view v = view_of(big, sizeof(big), 1000);
    struct cw_entry_view huge = view_of(big, (256u << 10) + 1, 1000);
    uint32_t n = 0;
    struct cw_key k;

    /* Over one answer's bound: never kept. */
    k = key_in_set(1, 0);
    ck_assert(!req_ready_fits(c, &k, &huge));
    /* 200 KiB answers, four to a set, until the 16 MiB budget refuses a new one. */
    for (;; n++) {
        k = key_in_set(n / KEYS_IN_SET, (uint8_t)(n % KEYS_IN_SET));
        if (!req_ready_fits(c, &k, &v)) break;
        keep(c, &k, &id, &v);
        ck_assert_uint_lt(n, 100);
    }
    ck_assert_uint_ge(n, 70); /* 16 MiB / (200 KiB and its fields) */
    /* Each kept one is still there (set 0's least recently used is now its key 0). */
    for (uint32_t i = 0; i < n; i++) {
        k = key_in_set(i / KEYS_IN_SET, (uint8_t)(i % KEYS_IN_SET));
        ck_assert_ptr_nonnull(req_ready_get(c, &k, &id, &v));
    }
    /* A new key in an empty set displaces nothing: refused. */
    k = key_in_set(1000, 0);
    ck_assert(!req_ready_fits(c, &k, &v));
    /* A rebuild of a kept key fits: its own old answer goes. */
    k = key_in_set(1, 2);
    ck_assert(req_ready_fits(c, &k, &v));
    id = id_at_age(1);
    keep(c, &k, &id, &v);
    ck_assert_ptr_nonnull(req_ready_get(c, &k, &id, &v));
    /* So does a new key in a full set: the set's least recently used goes, and only it. */
    k = key_in_set(0, KEYS_IN_SET);
    ck_assert(req_ready_fits(c, &k, &v));
    keep(c, &k, &id, &v);
    ck_assert_ptr_nonnull(req_ready_get(c, &k, &id, &v));
    id = id_at_age(0);
    k = key_in_set(0, 0);
    ck_assert_ptr_null(req_ready_get(c, &k, &id, &v));
    for (uint8_t i = 1; i < KEYS_IN_SET; i++) {
        k = key_in_set(0, i);
        ck_assert_ptr_nonnull(req_ready_get(c, &k, &id, &v));
    }
    req_ready_free(c);
}
END_TEST

START_TEST(test_ready_kept_only_for_a_key_hit_again)
{
    struct req_ready *c = req_ready_new();
    struct cw_key k = key_in_set(9, 1);
    struct req_ready_id id = id_at_age(0);
    struct cw_entry_view v = view_of(body, BODY_LEN, 1000), w = view_of(body, BODY_LEN, 1001);
    struct MHD_Response *resp;

    /* Builds of one answer are only sighted until the READY_SEEN-th, which is kept. */
    for (int i = 1; i < SEEN; i++)
        ck_assert(!req_ready_admit(c, &k, &id, &v));
    ck_assert_ptr_null(req_ready_get(c, &k, &id, &v));
    ck_assert(req_ready_admit(c, &k, &id, &v));
    resp = keep(c, &k, &id, &v);
    for (int i = 1; i < SEEN; i++)
        ck_assert_ptr_eq(req_ready_get(c, &k, &id, &v), resp);
    /* Age moved: an answer that served as many hits is rebuilt and kept at once. */
    id = id_at_age(1);
    ck_assert_ptr_null(req_ready_get(c, &k, &id, &v));
    ck_assert(req_ready_admit(c, &k, &id, &v));
    resp = keep(c, &k, &id, &v);
    ck_assert_ptr_eq(req_ready_get(c, &k, &id, &v), resp);
    /* Age moved again after fewer hits: not kept, only sighted, the kept one dropped. */
    id = id_at_age(2);
    ck_assert(!req_ready_admit(c, &k, &id, &v));
    id = id_at_age(1);
    ck_assert_ptr_null(req_ready_get(c, &k, &id, &v));
    id = id_at_age(2);
    ck_assert_ptr_null(req_ready_get(c, &k, &id, &v));
    /* A sighting counts the builds of one answer: another Age or entry starts again. */
    id = id_at_age(3);
    for (int i = 1; i < SEEN; i++)
        ck_assert(!req_ready_admit(c, &k, &id, &v));
    for (int i = 1; i < SEEN; i++)
        ck_assert(!req_ready_admit(c, &k, &id, &w));
    ck_assert(req_ready_admit(c, &k, &id, &w));
    /* Another key of the set is its own. */
    k = key_in_set(9, 2);
    ck_assert(!req_ready_admit(c, &k, &id, &w));
    req_ready_free(c);
}
END_TEST

Suite *req_ready_suite(void)
{
    Suite *s = suite_create("req_ready");
    TCase *tc = tcase_create("core");

    memset(body, 'b', sizeof(body));
    tcase_add_test(tc, test_ready_given_back_only_for_the_same_bytes_and_id);
    tcase_add_test(tc, test_ready_keys_of_one_set_stay_ready_together);
    tcase_add_test(tc, test_ready_budget_counts_what_a_put_displaces);
    tcase_add_test(tc, test_ready_kept_only_for_a_key_hit_again);
    suite_add_tcase(s, tc);
    return s;
}

#include "check_main.h"
CW_TEST_MAIN(req_ready_suite)
