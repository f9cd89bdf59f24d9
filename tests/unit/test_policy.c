/* tests/unit/test_policy.c - what an origin answer becomes (core/policy): storing and why not,
 * RFC 9213 targeted fields, windows, kept headers, Vary names, tags, 304 merges and the
 * adaptive TTL. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "core/policy.h"
#include "tests/unit/check_main.h"

Suite *policy_suite(void);

/* 2023-11-14T22:13:20Z: "now". */
#define NOW_S  1700000000LL
#define NOW_MS (NOW_S * 1000)

static const char *const targets[] = {"CacheWarp-Cache-Control", "CDN-Cache-Control"};

struct fixture {
    struct cw_config_route rt;
    struct cw_entry_header h[CW_LIMIT_HEADER_COUNT + 8];
    struct cw_policy_in in;
    struct cw_policy out;
};

/* A GET answered at NOW; route ttl 60s, swr 30s, sie 10m, max_object 1 MiB. */
static struct fixture *fx_new(int status)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    ck_assert_ptr_nonnull(fx);
    fx->rt.ttl_ms = 60000;
    fx->rt.swr_ms = 30000;
    fx->rt.sie_ms = 600000;
    fx->rt.min_ttl_ms = 1000;
    fx->rt.max_ttl_ms = 600000;
    fx->rt.stale_target = 0.05;
    fx->rt.cookies = CW_CONFIG_COOKIES_PASS;
    fx->in.status = status;
    fx->in.hdrs = fx->h;
    fx->in.body_len = 10;
    fx->in.rt = &fx->rt;
    fx->in.targets = targets;
    fx->in.target_count = 2;
    fx->in.max_object_bytes = 1 << 20;
    fx->in.method_is_get_or_head = true;
    fx->in.request_time_ms = NOW_MS;
    fx->in.response_time_ms = NOW_MS;
    fx->in.now_ms = NOW_MS;
    return fx;
}

static void add(struct fixture *fx, const char *name, const char *value)
{
    ck_assert_uint_lt(fx->in.n, CW_ARRAY_LEN(fx->h));
    fx->h[fx->in.n].name = cw_str_cstr(name);
    fx->h[fx->in.n++].value = cw_str_cstr(value);
}

static void run(struct fixture *fx)
{
    cw_policy_decide(&fx->in, &fx->out);
    cw_policy_finish(&fx->in, fx->in.body_len, 42, &fx->out);
}

/* The stored value of name, or NULL. */
static const char *kept(const struct fixture *fx, const char *name)
{
    static char buf[256];

    for (size_t i = 0; i < fx->out.n; i++) {
        if (cw_str_eq_ci(fx->out.hdrs[i].name, cw_str_cstr(name))) {
            snprintf(buf, sizeof(buf), "%.*s", (int)fx->out.hdrs[i].value.len,
                     fx->out.hdrs[i].value.p);
            return buf;
        }
    }
    return NULL;
}

static void assert_refused(const struct fixture *fx, const char *detail, bool hit_for_miss)
{
    ck_assert(!fx->out.store);
    ck_assert_ptr_nonnull(fx->out.detail);
    ck_assert_str_eq(fx->out.detail, detail);
    ck_assert_int_eq(fx->out.hit_for_miss, hit_for_miss);
}

START_TEST(test_policy_stores_max_age)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "max-age=100");
    add(fx, "Content-Type", "text/plain");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_ptr_null(fx->out.detail);
    ck_assert_int_eq(fx->out.h.status, 200);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + 100000);
    ck_assert_int_eq(fx->out.h.swr_until_ms, NOW_MS + 130000);
    ck_assert_int_eq(fx->out.h.sie_until_ms, NOW_MS + 700000);
    ck_assert_int_eq(fx->out.h.stored_at_ms, NOW_MS);
    ck_assert_int_eq(fx->out.h.response_time_ms, NOW_MS);
    ck_assert_uint_eq(fx->out.h.flags & CW_ENTRY_HEURISTIC, 0);
    ck_assert(!fx->out.adaptive);
    /* RFC 9110 §6.6.1: Date added, after the origin's fields. */
    ck_assert_uint_eq(fx->out.n, 3);
    ck_assert_str_eq(kept(fx, "Date"), "Tue, 14 Nov 2023 22:13:20 GMT");
    ck_assert_str_eq(kept(fx, "Content-Type"), "text/plain");
    free(fx);
}
END_TEST

START_TEST(test_policy_heuristic_uses_route_ttl)
{
    struct fixture *fx = fx_new(200);

    run(fx);
    ck_assert(fx->out.store);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + 60000);
    ck_assert_uint_ne(fx->out.h.flags & CW_ENTRY_HEURISTIC, 0);
    free(fx);
}
END_TEST

/* RFC 9213 §2.2: the first valid targeted field replaces Cache-Control, no-store included. */
START_TEST(test_policy_targeted_no_store)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "public, max-age=600");
    add(fx, "CDN-Cache-Control", "no-store");
    run(fx);
    assert_refused(fx, "no-store", true);
    free(fx);
}
END_TEST

START_TEST(test_policy_targeted_private)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "max-age=600");
    add(fx, "CacheWarp-Cache-Control", "private");
    add(fx, "CDN-Cache-Control", "max-age=5");
    run(fx);
    assert_refused(fx, "private", true);
    free(fx);
}
END_TEST

START_TEST(test_policy_targeted_max_age_wins)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "no-store");
    add(fx, "CDN-Cache-Control", "max-age=20");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + 20000);
    /* The targeted field is stored like any other field. */
    ck_assert_str_eq(kept(fx, "CDN-Cache-Control"), "max-age=20");
    free(fx);
}
END_TEST

/* An invalid targeted field is ignored (RFC 9213 §2.1): Cache-Control applies. */
START_TEST(test_policy_targeted_invalid_ignored)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "no-store");
    add(fx, "CDN-Cache-Control", "max-age=20, ,");
    run(fx);
    assert_refused(fx, "no-store", true);
    free(fx);
}
END_TEST

START_TEST(test_policy_targeted_no_cache_zero_windows)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "max-age=600, stale-while-revalidate=60");
    add(fx, "CDN-Cache-Control", "no-cache");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_uint_ne(fx->out.h.flags & CW_ENTRY_ALWAYS_REVALIDATE, 0);
    ck_assert_int_eq(fx->out.h.swr_until_ms, fx->out.h.fresh_until_ms);
    ck_assert_int_eq(fx->out.h.sie_until_ms, fx->out.h.fresh_until_ms);
    free(fx);
}
END_TEST

/* A 5xx is an outage: refused without a hit-for-miss record. */
START_TEST(test_policy_5xx_no_hit_for_miss)
{
    struct fixture *fx = fx_new(503);

    run(fx);
    assert_refused(fx, "status", false);
    free(fx);

    fx = fx_new(403);
    run(fx);
    assert_refused(fx, "status", true);
    free(fx);
}
END_TEST

START_TEST(test_policy_request_reasons)
{
    struct fixture *fx = fx_new(200);

    fx->in.req_has_authorization = true;
    run(fx);
    assert_refused(fx, "authorization", true);
    add(fx, "Cache-Control", "public");
    run(fx);
    ck_assert(fx->out.store);
    free(fx);

    fx = fx_new(200);
    fx->in.req_has_cookie = true;
    run(fx);
    assert_refused(fx, "cookie", true);
    fx->rt.cookies = CW_CONFIG_COOKIES_IGNORE;
    run(fx);
    ck_assert(fx->out.store);
    free(fx);

    fx = fx_new(200);
    fx->in.req_no_store = true;
    run(fx);
    assert_refused(fx, "request-no-store", true);
    free(fx);
}
END_TEST

START_TEST(test_policy_kept_headers)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "max-age=60, no-cache=\"X-Secret\", private=\"X-Mine\"");
    add(fx, "Date", "Tue, 14 Nov 2023 22:13:20 GMT");
    add(fx, "Connection", "X-Hop");
    add(fx, "Connection", "X-Hop2");
    add(fx, "X-Hop", "1");
    add(fx, "X-Hop2", "1");
    add(fx, "Keep-Alive", "timeout=5");
    add(fx, "Transfer-Encoding", "chunked");
    add(fx, "Content-Length", "10");
    add(fx, ":internal", "x");
    add(fx, "X-Secret", "s");
    add(fx, "X-Mine", "m");
    add(fx, "ETag", "\"v1\"");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_uint_eq(fx->out.n, 3);
    ck_assert_ptr_nonnull(kept(fx, "Cache-Control"));
    ck_assert_str_eq(kept(fx, "Date"), "Tue, 14 Nov 2023 22:13:20 GMT");
    ck_assert_str_eq(kept(fx, "ETag"), "\"v1\"");
    free(fx);
}
END_TEST

START_TEST(test_policy_set_cookie)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Set-Cookie", "a=1");
    run(fx);
    assert_refused(fx, "set-cookie", true);
    /* Named in no-cache="...": stripped, and the rest is stored. */
    add(fx, "Cache-Control", "no-cache=\"Set-Cookie\"");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_ptr_null(kept(fx, "Set-Cookie"));
    free(fx);

    fx = fx_new(200);
    fx->rt.strip_set_cookie = true;
    add(fx, "Set-Cookie", "a=1");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_ptr_null(kept(fx, "Set-Cookie"));
    free(fx);
}
END_TEST

START_TEST(test_policy_too_large)
{
    struct fixture *fx = fx_new(200);

    /* Known at the head. */
    fx->in.body_len = (1 << 20) + 1;
    cw_policy_decide(&fx->in, &fx->out);
    assert_refused(fx, "too-large", true);
    /* At N, stored. */
    fx->in.body_len = 1 << 20;
    run(fx);
    ck_assert(fx->out.store);
    /* Not known at the head, too large once the body is in. */
    fx->in.body_len = -1;
    cw_policy_decide(&fx->in, &fx->out);
    ck_assert(fx->out.store);
    cw_policy_finish(&fx->in, (1 << 20) + 1, 0, &fx->out);
    assert_refused(fx, "too-large", true);
    free(fx);
}
END_TEST

START_TEST(test_policy_vary_names)
{
    struct fixture *fx = fx_new(200);
    char many[CW_LIMIT_VARY_FIELDS * 4 + 8];
    size_t at = 0;

    add(fx, "Vary", " Accept-Encoding ,X-A,, ");
    add(fx, "vary", "X-B");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_int_eq((int)fx->out.vary_len, (int)strlen("accept-encoding,x-a,x-b"));
    ck_assert(memcmp(fx->out.vary, "accept-encoding,x-a,x-b", fx->out.vary_len) == 0);
    free(fx);

    /* CW_LIMIT_VARY_FIELDS names are kept, one more is refused. */
    for (int i = 0; i < CW_LIMIT_VARY_FIELDS; i++)
        at += (size_t)snprintf(many + at, sizeof(many) - at, "%sv%d", i ? "," : "", i);
    fx = fx_new(200);
    add(fx, "Vary", many);
    run(fx);
    ck_assert(fx->out.store);
    snprintf(many + at, sizeof(many) - at, ",vx");
    fx->in.n = 0;
    add(fx, "Vary", many);
    run(fx);
    assert_refused(fx, "vary-too-large", true);
    ck_assert_uint_eq(fx->out.vary_len, 0);
    free(fx);

    fx = fx_new(200);
    add(fx, "Vary", "*");
    run(fx);
    assert_refused(fx, "vary-star", true);
    free(fx);
}
END_TEST

START_TEST(test_policy_tags)
{
    struct fixture *fx = fx_new(200);
    char long_tag[CW_LIMIT_TAG_BYTES + 2];
    char many[CW_LIMIT_TAGS * 4 + 8];
    size_t at = 0;

    memset(long_tag, 'x', sizeof(long_tag) - 1);
    long_tag[sizeof(long_tag) - 1] = '\0';
    add(fx, "Surrogate-Key", "  a b\tc ");
    add(fx, "Surrogate-Key", long_tag);
    add(fx, "surrogate-key", "d");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_uint_eq(fx->out.tag_count, 4);
    ck_assert(cw_str_eq(fx->out.tags[0], CW_STR_LIT("a")));
    ck_assert(cw_str_eq(fx->out.tags[2], CW_STR_LIT("c")));
    ck_assert(cw_str_eq(fx->out.tags[3], CW_STR_LIT("d")));
    /* Kept in the entry (the store indexes them), never replayed: workers/fill's rule. */
    ck_assert_ptr_nonnull(kept(fx, "Surrogate-Key"));
    free(fx);

    for (int i = 0; i < CW_LIMIT_TAGS + 1; i++)
        at += (size_t)snprintf(many + at, sizeof(many) - at, "t%d ", i);
    fx = fx_new(200);
    add(fx, "Surrogate-Key", many);
    run(fx);
    ck_assert_uint_eq(fx->out.tag_count, CW_LIMIT_TAGS);
    free(fx);
}
END_TEST

/* CW_LIMIT_HEADER_COUNT stored fields fit; one more (the Date it adds) is refused. */
START_TEST(test_policy_header_count)
{
    struct fixture *fx = fx_new(200);
    static char names[CW_LIMIT_HEADER_COUNT][16];

    for (int i = 0; i < CW_LIMIT_HEADER_COUNT - 1; i++) {
        snprintf(names[i], sizeof(names[i]), "X-H%d", i);
        add(fx, names[i], "v");
    }
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_uint_eq(fx->out.n, CW_LIMIT_HEADER_COUNT);
    add(fx, "X-One-More", "v");
    run(fx);
    assert_refused(fx, "headers-too-large", true);
    free(fx);
}
END_TEST

static void prev_make(struct cw_policy_prev *p, const struct cw_entry_header *h, size_t n)
{
    memset(p, 0, sizeof(*p));
    p->status = 200;
    p->hdrs = h;
    p->n = n;
    p->st.ttl_ms = 5000;
    p->st.last_check_ms = NOW_MS - 5000;
    p->st.checks = 3;
    p->st.body_hash = 7;
}

/* RFC 9111 §4.3.4: a 304 freshens the stored response with its fields. */
START_TEST(test_policy_304_merges)
{
    struct fixture *fx = fx_new(304);
    struct cw_entry_header stored[] = {
        {CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=10")},
        {CW_STR_LIT("Content-Type"), CW_STR_LIT("text/html")},
        {CW_STR_LIT("ETag"), CW_STR_LIT("\"a\"")},
    };
    struct cw_policy_prev prev;

    prev_make(&prev, stored, CW_ARRAY_LEN(stored));
    prev.status = 203;
    fx->in.prev = &prev;
    fx->in.body_len = -1;
    add(fx, "Cache-Control", "max-age=300");
    add(fx, "Content-Length", "0");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert(fx->out.revalidated);
    ck_assert_int_eq(fx->out.h.status, 203);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + 300000);
    ck_assert_str_eq(kept(fx, "Cache-Control"), "max-age=300");
    ck_assert_str_eq(kept(fx, "Content-Type"), "text/html");
    /* Not adaptive: prev's state is carried over as it was. */
    ck_assert_int_eq(fx->out.h.ttl_ms, 5000);
    ck_assert_int_eq(fx->out.h.checks, 3);
    ck_assert_int_eq(fx->out.h.last_check_ms, NOW_MS - 5000);
    free(fx);
}
END_TEST

START_TEST(test_policy_304_refused)
{
    struct fixture *fx = fx_new(304);
    struct cw_entry_header stored[] = {{CW_STR_LIT("Cache-Control"), CW_STR_LIT("max-age=10")}};
    struct cw_policy_prev prev;

    run(fx);
    assert_refused(fx, "304-without-entry", false);
    ck_assert(!fx->out.revalidated);

    prev_make(&prev, stored, 1);
    fx->in.prev = &prev;
    add(fx, "CDN-Cache-Control", "no-store");
    run(fx);
    assert_refused(fx, "no-store", true);
    ck_assert(fx->out.revalidated); /* the caller drops the stored copy */
    free(fx);
}
END_TEST

START_TEST(test_policy_adaptive)
{
    struct fixture *fx = fx_new(200);
    struct cw_policy_prev prev;

    fx->rt.adaptive = true;
    add(fx, "ETag", "\"b\"");
    /* A new key: the route's ttl. */
    run(fx);
    ck_assert(fx->out.adaptive);
    ck_assert_int_eq(fx->out.h.ttl_ms, 60000);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + 60000);
    ck_assert_int_eq(fx->out.h.swr_until_ms, NOW_MS + 90000);
    ck_assert_int_eq((long long)fx->out.h.body_hash, 42);

    /* Same strong ETag: unchanged, the ttl grows (at most x2). */
    prev_make(&prev, NULL, 0);
    strcpy(prev.etag, "\"b\"");
    fx->in.prev = &prev;
    run(fx);
    ck_assert(!fx->out.changed);
    ck_assert_int_eq(fx->out.h.checks, 4);
    ck_assert_int_gt(fx->out.h.ttl_ms, 5000);
    ck_assert_int_le(fx->out.h.ttl_ms, 10000);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + fx->out.h.ttl_ms);
    ck_assert_int_eq(fx->out.h.swr_until_ms - fx->out.h.fresh_until_ms, 30000);

    /* Another ETag: changed, the ttl at least halves (within min_ttl). */
    strcpy(prev.etag, "\"a\"");
    run(fx);
    ck_assert(fx->out.changed);
    ck_assert_int_eq(fx->out.h.changes, 1);
    ck_assert_int_le(fx->out.h.ttl_ms, 2500);

    /* No strong ETag on one side: the body hash decides (prev 7, this 42). */
    prev.etag[0] = '\0';
    run(fx);
    ck_assert(fx->out.changed);
    prev.st.body_hash = 42;
    run(fx);
    ck_assert(!fx->out.changed);

    /* An explicit lifetime wins over the adaptive TTL unless the route overrides. */
    add(fx, "Cache-Control", "max-age=7");
    run(fx);
    ck_assert(!fx->out.adaptive);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + 7000);
    ck_assert_int_eq(fx->out.h.ttl_ms, 0);
    fx->rt.override = true;
    run(fx);
    ck_assert(fx->out.adaptive);
    free(fx);
}
END_TEST

/* A 304 is the "unchanged" observation of the adaptive TTL. */
START_TEST(test_policy_adaptive_304)
{
    struct fixture *fx = fx_new(304);
    struct cw_entry_header stored[] = {{CW_STR_LIT("ETag"), CW_STR_LIT("\"a\"")}};
    struct cw_policy_prev prev;

    fx->rt.adaptive = true;
    prev_make(&prev, stored, 1);
    fx->in.prev = &prev;
    run(fx);
    ck_assert(fx->out.store);
    ck_assert(fx->out.adaptive);
    ck_assert(!fx->out.changed);
    ck_assert_int_eq(fx->out.h.checks, 4);
    ck_assert_int_gt(fx->out.h.ttl_ms, 5000);
    ck_assert_int_eq(fx->out.h.last_check_ms, NOW_MS);
    ck_assert_int_eq((long long)fx->out.h.body_hash, 7);
    free(fx);
}
END_TEST

/* Age lists: the first member (RFC 9111 §5.1) counts in the corrected initial age. */
START_TEST(test_policy_age_first_member)
{
    struct fixture *fx = fx_new(200);

    add(fx, "Cache-Control", "max-age=100");
    add(fx, "Age", "10, 50");
    add(fx, "Age", "70");
    run(fx);
    ck_assert(fx->out.store);
    ck_assert_int_eq(fx->out.h.corrected_initial_age_ms, 10000);
    ck_assert_int_eq(fx->out.h.fresh_until_ms, NOW_MS + 90000);
    free(fx);
}
END_TEST

START_TEST(test_policy_prev_init)
{
    struct cw_entry_hdr h;
    struct cw_entry_header hdrs[] = {{CW_STR_LIT("ETag"), CW_STR_LIT("W/\"weak\"")}};
    struct cw_entry_view v;
    struct cw_policy_prev p;
    char buf[512];
    size_t len;

    memset(&h, 0, sizeof(h));
    h.status = 200;
    h.ttl_ms = 1234;
    h.checks = 2;
    h.body_hash = 99;
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, hdrs, 1, 0, &len), 0);
    ck_assert_uint_le(len, sizeof(buf));
    ck_assert_int_eq(cw_entry_encode(&h, CW_STR_LIT("k"), NULL, hdrs, 1, CW_STR_LIT(""), buf, len),
                     0);
    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    cw_policy_prev_init(&p, &v);
    ck_assert_int_eq(p.status, 200);
    ck_assert_int_eq(p.st.ttl_ms, 1234);
    ck_assert_int_eq(p.st.checks, 2);
    ck_assert_int_eq((long long)p.st.body_hash, 99);
    ck_assert_str_eq(p.etag, ""); /* a weak validator does not decide "changed" */
    ck_assert_ptr_null(p.hdrs);
}
END_TEST

Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_policy_stores_max_age);
    tcase_add_test(tc, test_policy_heuristic_uses_route_ttl);
    tcase_add_test(tc, test_policy_targeted_no_store);
    tcase_add_test(tc, test_policy_targeted_private);
    tcase_add_test(tc, test_policy_targeted_max_age_wins);
    tcase_add_test(tc, test_policy_targeted_invalid_ignored);
    tcase_add_test(tc, test_policy_targeted_no_cache_zero_windows);
    tcase_add_test(tc, test_policy_5xx_no_hit_for_miss);
    tcase_add_test(tc, test_policy_request_reasons);
    tcase_add_test(tc, test_policy_kept_headers);
    tcase_add_test(tc, test_policy_set_cookie);
    tcase_add_test(tc, test_policy_too_large);
    tcase_add_test(tc, test_policy_vary_names);
    tcase_add_test(tc, test_policy_tags);
    tcase_add_test(tc, test_policy_header_count);
    tcase_add_test(tc, test_policy_304_merges);
    tcase_add_test(tc, test_policy_304_refused);
    tcase_add_test(tc, test_policy_adaptive);
    tcase_add_test(tc, test_policy_adaptive_304);
    tcase_add_test(tc, test_policy_age_first_member);
    tcase_add_test(tc, test_policy_prev_init);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(policy_suite)
