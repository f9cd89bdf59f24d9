/* tests/unit/test_fill.c - the commit (workers/fill): an origin answer from a struct
 * cw_fill_resp, and an already-encoded entry (as L2 returns it), put with the lease released
 * by its token in the same txn; bad or foreign bytes leave the lease and the store alone. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "shm/seg.h"
#include "tests/unit/check_main.h"
#include "tests/unit/store_fixture.h"
#include "workers/fill.h"

Suite *fill_suite(void);

#define NOW_MS 1700000000000LL

static struct cw_store *st;
static struct cw_store_reader *rd;
static struct cw_seg *seg;
static struct cw_config cfg;
static struct cw_config_route rt;
static struct cw_fill fill;
static const char *req_xa; /* the request's X-A value, NULL = absent */

static const char *hdr_of(void *cls, const char *name)
{
    (void)cls;
    return strcasecmp(name, "X-A") == 0 ? req_xa : NULL;
}

static void setup(void)
{
    store_fixture_setup("cw-test-fill", "");
    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &rd), 0);
    ck_assert_int_eq(cw_seg_create(&seg), 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.cache_max_object_bytes = 1 << 20;
    memset(&rt, 0, sizeof(rt));
    rt.match = "/";
    rt.match_len = 1;
    rt.ttl_ms = 60000;
    rt.cookies = CW_CONFIG_COOKIES_PASS;
    fill = (struct cw_fill){.cfg = &cfg, .store = st, .reader = rd, .seg = seg, .slot = 0};
    req_xa = NULL;
}

static void teardown(void)
{
    cw_seg_destroy(seg);
    cw_store_reader_close(rd);
    cw_store_close(st);
    store_fixture_teardown();
}

/* A request for uri with its primary key computed and, with lease, the FETCH lease taken. */
static void req_make(struct cw_fill_req *q, char *key_buf, const char *uri, bool lease)
{
    memset(q, 0, sizeof(*q));
    q->rt = &rt;
    q->header = hdr_of;
    q->uri = cw_str_cstr(uri);
    q->host = CW_STR_LIT("example.com");
    q->key_buf = key_buf;
    ck_assert_int_eq(cw_fill_key_primary(&fill, q), 0);
    q->lease_key = q->key;
    if (lease) {
        ck_assert_int_eq(cw_store_lease_take(st, &q->lease_key, CW_STORE_LEASE_FETCH, getpid(), 1,
                                             1000000000, &q->lease_token, NULL),
                         0);
        q->has_lease = true;
    }
}

static void commit_200(struct cw_fill_req *q, const struct cw_entry_header *h, size_t n,
                       struct cw_fill_result *res)
{
    struct cw_fill_resp resp = {200, h, n, CW_STR_LIT("hello"), NOW_MS, NOW_MS};

    cw_fill_commit(&fill, q, &resp, res);
}

static bool lease_held(const struct cw_key *k)
{
    struct cw_store_lease l;

    return cw_store_lease_get(rd, k, &l) == 0;
}

START_TEST(test_fill_commit_origin_answer)
{
    char kb[CW_LIMIT_KEY_BYTES];
    struct cw_fill_req q;
    struct cw_fill_result res;
    struct cw_entry_header h[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=60")},
                                  {CW_STR_LIT("Surrogate-Key"), CW_STR_LIT("t1")}};
    struct cw_entry_view v;
    void *p;
    size_t len;

    req_make(&q, kb, "/a", true);
    commit_200(&q, h, 2, &res);
    ck_assert(res.stored);
    ck_assert_ptr_null(res.detail);
    ck_assert(!q.has_lease);
    ck_assert(!lease_held(&q.lease_key));
    ck_assert_int_eq(cw_store_read_encoded(rd, &q.key, cw_str_make(kb, q.key_len), &p, &len), 0);
    ck_assert_int_eq(cw_entry_decode(p, len, &v), 0);
    ck_assert(cw_str_eq(v.body, CW_STR_LIT("hello")));
    ck_assert_int_eq(v.h.fresh_until_ms, NOW_MS + 60000);
    free(p);
}
END_TEST

START_TEST(test_fill_commit_refused_leaves_hit_for_miss)
{
    char kb[CW_LIMIT_KEY_BYTES];
    struct cw_fill_req q;
    struct cw_fill_result res;
    struct cw_entry_header h[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("private")}};
    struct cw_store_lease l;

    req_make(&q, kb, "/p", true);
    commit_200(&q, h, 1, &res);
    ck_assert(!res.stored);
    ck_assert_str_eq(res.detail, "private");
    ck_assert(res.uncacheable);
    ck_assert_int_eq(cw_store_lease_get(rd, &q.lease_key, &l), 0);
    ck_assert_int_eq(l.kind, CW_STORE_LEASE_PASS);
}
END_TEST

/* The bytes of an entry go back in unchanged under a new lease, which the put releases. */
START_TEST(test_fill_commit_encoded_roundtrip)
{
    char kb[CW_LIMIT_KEY_BYTES];
    struct cw_fill_req q;
    struct cw_fill_result res;
    struct cw_entry_header h[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=60")}};
    void *p, *p2;
    size_t len, len2;

    req_make(&q, kb, "/e", true);
    commit_200(&q, h, 1, &res);
    ck_assert(res.stored);
    ck_assert_int_eq(cw_store_read_encoded(rd, &q.key, cw_str_make(kb, q.key_len), &p, &len), 0);
    ck_assert_int_eq(cw_store_delete(st, &q.key), 0);

    req_make(&q, kb, "/e", true);
    ck_assert_int_eq(cw_fill_commit_encoded(&fill, &q, p, len), 0);
    ck_assert(!q.has_lease);
    ck_assert(!lease_held(&q.lease_key));
    ck_assert_int_eq(cw_store_read_encoded(rd, &q.key, cw_str_make(kb, q.key_len), &p2, &len2), 0);
    ck_assert_uint_eq(len2, len);
    ck_assert(memcmp(p, p2, len) == 0);
    free(p);
    free(p2);
}
END_TEST

START_TEST(test_fill_commit_encoded_refuses)
{
    char kb[CW_LIMIT_KEY_BYTES];
    struct cw_fill_req q;
    struct cw_fill_result res;
    struct cw_entry_header h[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=60")}};
    void *p;
    size_t len;

    req_make(&q, kb, "/x", true);
    commit_200(&q, h, 1, &res);
    ck_assert_int_eq(cw_store_read_encoded(rd, &q.key, cw_str_make(kb, q.key_len), &p, &len), 0);

    /* Damaged bytes: nothing written, the lease kept. */
    req_make(&q, kb, "/y", true);
    ck_assert_int_eq(cw_fill_commit_encoded(&fill, &q, p, len - 1), -EBADMSG);
    ck_assert(q.has_lease);
    ck_assert(lease_held(&q.lease_key));
    /* /x's entry offered for /y: another key. */
    ck_assert_int_eq(cw_fill_commit_encoded(&fill, &q, p, len), -ENOENT);
    ck_assert(q.has_lease);
    ck_assert(lease_held(&q.lease_key));
    void *none;
    size_t none_len;
    ck_assert_int_eq(
        cw_store_read_encoded(rd, &q.key, cw_str_make(kb, q.key_len), &none, &none_len), -ENOENT);
    cw_fill_abandon(&fill, &q, false);
    free(p);
}
END_TEST

/* An entry that varies is committed only for a request with the same values. */
START_TEST(test_fill_commit_encoded_vary)
{
    char kb[CW_LIMIT_KEY_BYTES];
    struct cw_fill_req q;
    struct cw_fill_result res;
    struct cw_entry_header h[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=60")},
                                  {CW_STR_LIT("Vary"), CW_STR_LIT("X-A")}};
    struct cw_key varied;
    void *p;
    size_t len;

    req_xa = "1";
    req_make(&q, kb, "/v", true);
    commit_200(&q, h, 2, &res);
    ck_assert(res.stored);
    ck_assert_uint_gt(q.key_len, q.primary_len);
    varied = q.key;
    ck_assert_int_eq(cw_store_read_encoded(rd, &q.key, cw_str_make(kb, q.key_len), &p, &len), 0);
    ck_assert_int_eq(cw_store_delete(st, &varied), 0);

    req_xa = "2";
    req_make(&q, kb, "/v", true);
    ck_assert_int_eq(cw_fill_commit_encoded(&fill, &q, p, len), -ENOENT);
    ck_assert_uint_eq(q.key_len, q.primary_len);
    ck_assert(q.has_lease);
    cw_fill_abandon(&fill, &q, false);

    req_xa = "1";
    req_make(&q, kb, "/v", true);
    ck_assert_int_eq(cw_fill_commit_encoded(&fill, &q, p, len), 0);
    ck_assert(memcmp(&q.key, &varied, sizeof(varied)) == 0);
    ck_assert(!lease_held(&q.lease_key));
    free(p);
}
END_TEST

/* RFC 9111 §4.3.4 through the commit: a 304 freshens the stored entry, body kept. */
START_TEST(test_fill_commit_304)
{
    char kb[CW_LIMIT_KEY_BYTES];
    struct cw_fill_req q;
    struct cw_fill_result res;
    struct cw_entry_header h[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=1")},
                                  {CW_STR_LIT("ETag"), CW_STR_LIT("\"e\"")}};
    struct cw_entry_header h304[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=500")}};
    struct cw_fill_resp resp = {304, h304, 1, {NULL, 0}, NOW_MS + 5000, NOW_MS + 5000};
    struct cw_entry_view v;
    void *p;
    size_t len;

    req_make(&q, kb, "/r", true);
    commit_200(&q, h, 2, &res);
    req_make(&q, kb, "/r", true);
    cw_fill_commit(&fill, &q, &resp, &res);
    ck_assert(res.stored);
    ck_assert(res.revalidated);
    ck_assert(!lease_held(&q.lease_key));
    ck_assert_int_eq(cw_store_read_encoded(rd, &q.key, cw_str_make(kb, q.key_len), &p, &len), 0);
    ck_assert_int_eq(cw_entry_decode(p, len, &v), 0);
    ck_assert(cw_str_eq(v.body, CW_STR_LIT("hello")));
    /* The 304 sent no Date: the stored one (NOW) stays, so the answer is 5 s old on arrival. */
    ck_assert_int_eq(v.h.corrected_initial_age_ms, 5000);
    ck_assert_int_eq(v.h.fresh_until_ms, NOW_MS + 500000);
    free(p);

    /* A 304 with nothing stored. */
    req_make(&q, kb, "/none", true);
    cw_fill_commit(&fill, &q, &resp, &res);
    ck_assert(!res.stored);
    ck_assert_str_eq(res.detail, "304-without-entry");
    ck_assert(!lease_held(&q.lease_key));
}
END_TEST

Suite *fill_suite(void)
{
    Suite *s = suite_create("fill");
    TCase *tc = tcase_create("commit");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_fill_commit_origin_answer);
    tcase_add_test(tc, test_fill_commit_refused_leaves_hit_for_miss);
    tcase_add_test(tc, test_fill_commit_encoded_roundtrip);
    tcase_add_test(tc, test_fill_commit_encoded_refuses);
    tcase_add_test(tc, test_fill_commit_encoded_vary);
    tcase_add_test(tc, test_fill_commit_304);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(fill_suite)
