/* tests/unit/test_entry.c - core/entry: round trip, limits, and every -EBADMSG path. */
#include "core/entry.h"

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"

Suite *entry_suite(void);

static const struct cw_entry_header sample_hdrs[] = {
    {CW_STR_LIT("Content-Type"), CW_STR_LIT("application/json")},
    {CW_STR_LIT("ETag"), CW_STR_LIT("\"v1\"")},
    {CW_STR_LIT("X-Empty"), CW_STR_LIT("")},
};

static struct cw_entry_hdr sample_hdr(void)
{
    struct cw_entry_hdr h;

    memset(&h, 0, sizeof(h));
    h.status = 200;
    h.flags = CW_ENTRY_HEURISTIC;
    h.stored_at_ms = 1700000000000;
    h.response_time_ms = 1700000000001;
    h.corrected_initial_age_ms = 5;
    h.fresh_until_ms = 1700000060000;
    h.swr_until_ms = 1700000090000;
    h.sie_until_ms = 1700000660000;
    h.ttl_ms = 60000;
    h.last_check_ms = 1699999999999;
    h.checks = 3;
    h.changes = 1;
    h.body_hash = UINT64_C(0x0123456789abcdef);
    return h;
}

/* Encodes the sample entry into a malloc'd buffer: caller frees. */
static char *sample_encode(size_t *len)
{
    struct cw_entry_hdr h = sample_hdr();
    struct cw_str key = CW_STR_LIT("http://example.com/a?b=1");
    struct cw_str body = CW_STR_LIT("{\"ok\":true}");
    char *buf;

    ck_assert_int_eq(
        cw_entry_size(key, NULL, sample_hdrs, CW_ARRAY_LEN(sample_hdrs), body.len, len), 0);
    buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(
        cw_entry_encode(&h, key, NULL, sample_hdrs, CW_ARRAY_LEN(sample_hdrs), body, buf, *len), 0);
    return buf;
}

static void hdr_get(const char *buf, struct cw_entry_hdr *h)
{
    memcpy(h, buf, sizeof(*h));
}

static void hdr_set(char *buf, const struct cw_entry_hdr *h)
{
    memcpy(buf, h, sizeof(*h));
}

static int decode_rc(const char *buf, size_t len)
{
    struct cw_entry_view v;

    return cw_entry_decode(buf, len, &v);
}

START_TEST(test_entry_round_trip)
{
    struct cw_entry_hdr want = sample_hdr();
    struct cw_entry_view v;
    size_t len;
    char *buf = sample_encode(&len);
    size_t off = 0;
    size_t i = 0;
    struct cw_str name;
    struct cw_str value;

    ck_assert_uint_eq(len, sizeof(struct cw_entry_hdr) + 24 + (6 + 12 + 16) + (6 + 4 + 4) +
                               (6 + 7 + 0) + 11);
    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert_uint_eq(v.h.magic, CW_ENTRY_MAGIC);
    ck_assert_uint_eq(v.h.version, CW_ENTRY_VERSION);
    ck_assert_uint_eq(v.h.status, 200);
    ck_assert_uint_eq(v.h.flags, CW_ENTRY_HEURISTIC);
    ck_assert_int_eq(v.h.stored_at_ms, want.stored_at_ms);
    ck_assert_int_eq(v.h.response_time_ms, want.response_time_ms);
    ck_assert_int_eq(v.h.corrected_initial_age_ms, want.corrected_initial_age_ms);
    ck_assert_int_eq(v.h.fresh_until_ms, want.fresh_until_ms);
    ck_assert_int_eq(v.h.swr_until_ms, want.swr_until_ms);
    ck_assert_int_eq(v.h.sie_until_ms, want.sie_until_ms);
    ck_assert_int_eq(v.h.ttl_ms, want.ttl_ms);
    ck_assert_int_eq(v.h.last_check_ms, want.last_check_ms);
    ck_assert_uint_eq(v.h.checks, 3);
    ck_assert_uint_eq(v.h.changes, 1);
    ck_assert_uint_eq(v.h.body_hash, want.body_hash);
    ck_assert_uint_eq(v.h.header_count, 3);
    ck_assert(cw_str_eq(v.key, CW_STR_LIT("http://example.com/a?b=1")));
    ck_assert(cw_str_eq(v.body, CW_STR_LIT("{\"ok\":true}")));

    while (cw_entry_header_next(&v, &off, &name, &value)) {
        ck_assert_uint_lt(i, CW_ARRAY_LEN(sample_hdrs));
        ck_assert(cw_str_eq(name, sample_hdrs[i].name));
        ck_assert(cw_str_eq(value, sample_hdrs[i].value));
        i++;
    }
    ck_assert_uint_eq(i, CW_ARRAY_LEN(sample_hdrs));
    ck_assert_uint_eq(off, v.headers_len);
    free(buf);
}
END_TEST

START_TEST(test_entry_round_trip_empty)
{
    struct cw_entry_hdr h = sample_hdr();
    struct cw_entry_view v;
    char buf[sizeof(struct cw_entry_hdr)];
    size_t len;
    size_t off = 0;
    struct cw_str name;
    struct cw_str value;

    ck_assert_int_eq(cw_entry_size(cw_str_make(NULL, 0), NULL, NULL, 0, 0, &len), 0);
    ck_assert_uint_eq(len, sizeof(buf));
    ck_assert_int_eq(
        cw_entry_encode(&h, cw_str_make(NULL, 0), NULL, NULL, 0, cw_str_make(NULL, 0), buf, len),
        0);
    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert_uint_eq(v.key.len, 0);
    ck_assert_uint_eq(v.body.len, 0);
    ck_assert(!cw_entry_header_next(&v, &off, &name, &value));
}
END_TEST

START_TEST(test_entry_header_find_case_insensitive)
{
    struct cw_entry_view v;
    size_t len;
    char *buf = sample_encode(&len);
    struct cw_str value;

    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert(cw_entry_header_find(&v, CW_STR_LIT("etag"), &value));
    ck_assert(cw_str_eq(value, CW_STR_LIT("\"v1\"")));
    ck_assert(cw_entry_header_find(&v, CW_STR_LIT("CONTENT-TYPE"), &value));
    ck_assert(cw_str_eq(value, CW_STR_LIT("application/json")));
    ck_assert(cw_entry_header_find(&v, CW_STR_LIT("x-empty"), &value));
    ck_assert_uint_eq(value.len, 0);
    ck_assert(!cw_entry_header_find(&v, CW_STR_LIT("etag2"), &value));
    free(buf);
}
END_TEST

/* Unaligned input: the hdr is copied out, records are read with memcpy. */
START_TEST(test_entry_decode_unaligned)
{
    struct cw_entry_view v;
    size_t len;
    char *buf = sample_encode(&len);
    char *odd = malloc(len + 1);

    ck_assert_ptr_nonnull(odd);
    memcpy(odd + 1, buf, len);
    ck_assert_int_eq(cw_entry_decode(odd + 1, len, &v), 0);
    ck_assert(cw_str_eq(v.body, CW_STR_LIT("{\"ok\":true}")));
    free(odd);
    free(buf);
}
END_TEST

START_TEST(test_entry_decode_truncated_everywhere)
{
    size_t len;
    char *buf = sample_encode(&len);
    char *copy = malloc(len + 1);

    ck_assert_ptr_nonnull(copy);
    /* A fresh allocation of exactly n bytes each time, so ASan catches any over-read. */
    for (size_t n = 0; n < len; n++) {
        char *t = malloc(n > 0 ? n : 1);
        ck_assert_ptr_nonnull(t);
        memcpy(t, buf, n);
        ck_assert_msg(decode_rc(t, n) == -EBADMSG, "truncated at %zu", n);
        free(t);
    }
    memcpy(copy, buf, len);
    copy[len] = 0;
    ck_assert_int_eq(decode_rc(copy, len + 1), -EBADMSG);
    ck_assert_int_eq(decode_rc(copy, len), 0);
    free(copy);
    free(buf);
}
END_TEST

START_TEST(test_entry_decode_bad_magic_version_status)
{
    size_t len;
    char *buf = sample_encode(&len);
    struct cw_entry_hdr h;
    struct cw_entry_hdr orig;

    hdr_get(buf, &orig);
    h = orig;
    h.magic ^= 1;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);

    h = orig;
    h.version = CW_ENTRY_VERSION + 1;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);

    h = orig;
    h.version = 0;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);

    h = orig;
    h.status = 99;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    h.status = 1000;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    h.status = 100;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), 0);
    h.status = 999;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), 0);
    free(buf);
}
END_TEST

START_TEST(test_entry_decode_lying_lengths)
{
    size_t len;
    char *buf = sample_encode(&len);
    struct cw_entry_hdr h;
    struct cw_entry_hdr orig;

    hdr_get(buf, &orig);
#define EXPECT_BAD(field, val)                                                                     \
    do {                                                                                           \
        h = orig;                                                                                  \
        h.field = (val);                                                                           \
        hdr_set(buf, &h);                                                                          \
        ck_assert_msg(decode_rc(buf, len) == -EBADMSG, #field " = " #val);                         \
    } while (0)
    EXPECT_BAD(key_len, orig.key_len + 1);
    EXPECT_BAD(key_len, orig.key_len - 1);
    EXPECT_BAD(key_len, UINT32_MAX);
    EXPECT_BAD(headers_len, orig.headers_len + 1);
    EXPECT_BAD(headers_len, orig.headers_len - 1);
    EXPECT_BAD(headers_len, UINT32_MAX);
    EXPECT_BAD(body_len, orig.body_len + 1);
    EXPECT_BAD(body_len, orig.body_len - 1);
    EXPECT_BAD(body_len, UINT64_MAX);
    /* The sum wraps to 0 (mod 2^64). */
    EXPECT_BAD(body_len, UINT64_MAX - sizeof(h) - orig.key_len - orig.headers_len + 1);
    EXPECT_BAD(header_count, orig.header_count + 1);
    EXPECT_BAD(header_count, orig.header_count - 1);
    EXPECT_BAD(header_count, 0);
    EXPECT_BAD(header_count, UINT32_MAX);
#undef EXPECT_BAD
    /* Moving bytes between the key and the body keeps the total but breaks the records. */
    h = orig;
    h.key_len = orig.key_len + 2;
    h.body_len = orig.body_len - 2;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    hdr_set(buf, &orig);
    ck_assert_int_eq(decode_rc(buf, len), 0);
    free(buf);
}
END_TEST

/* A record whose lengths run past the block, or are zero/over the limits. */
START_TEST(test_entry_decode_bad_records)
{
    size_t len;
    char *buf = sample_encode(&len);
    struct cw_entry_hdr h;
    char *rec;
    uint16_t nl;
    uint32_t vl;
    uint16_t nl0;
    uint32_t vl0;

    hdr_get(buf, &h);
    rec = buf + sizeof(h) + h.key_len;
    memcpy(&nl0, rec, 2);
    memcpy(&vl0, rec + 2, 4);
    ck_assert_uint_eq(nl0, 12);

    nl = 0;
    memcpy(rec, &nl, 2);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    nl = (uint16_t)(nl0 + 1);
    memcpy(rec, &nl, 2);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    nl = UINT16_MAX;
    memcpy(rec, &nl, 2);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    memcpy(rec, &nl0, 2);

    vl = vl0 + 1;
    memcpy(rec + 2, &vl, 4);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    vl = UINT32_MAX;
    memcpy(rec + 2, &vl, 4);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    vl = h.headers_len;
    memcpy(rec + 2, &vl, 4);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    memcpy(rec + 2, &vl0, 4);
    ck_assert_int_eq(decode_rc(buf, len), 0);
    free(buf);
}
END_TEST

/* Every single-bit flip anywhere either decodes or is -EBADMSG; never a crash. */
START_TEST(test_entry_decode_bit_flips)
{
    size_t len;
    char *buf = sample_encode(&len);
    struct cw_entry_view v;

    for (size_t i = 0; i < len; i++) {
        for (int b = 0; b < 8; b++) {
            int rc;
            buf[i] ^= (char)(1 << b);
            rc = cw_entry_decode(buf, len, &v);
            ck_assert(rc == 0 || rc == -EBADMSG);
            if (rc == 0)
                ck_assert_uint_eq(sizeof(v.h) + v.key.len + v.headers_len + v.body.len, len);
            buf[i] ^= (char)(1 << b);
        }
    }
    free(buf);
}
END_TEST

START_TEST(test_entry_size_header_count_limit)
{
    static struct cw_entry_header hdrs[CW_LIMIT_HEADER_COUNT + 1];
    size_t len;

    for (size_t i = 0; i < CW_ARRAY_LEN(hdrs); i++) {
        hdrs[i].name = CW_STR_LIT("x");
        hdrs[i].value = CW_STR_LIT("1");
    }
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, hdrs, CW_LIMIT_HEADER_COUNT, 0, &len), 0);
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, hdrs, CW_LIMIT_HEADER_COUNT + 1, 0, &len),
                     -EINVAL);
}
END_TEST

START_TEST(test_entry_size_header_name_value_limits)
{
    static char big[CW_LIMIT_HEADER_VALUE_BYTES + 1];
    struct cw_entry_header hdr;
    size_t len;

    memset(big, 'a', sizeof(big));
    hdr.value = CW_STR_LIT("v");
    hdr.name = cw_str_make(big, CW_LIMIT_HEADER_NAME_BYTES);
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, &hdr, 1, 0, &len), 0);
    hdr.name = cw_str_make(big, CW_LIMIT_HEADER_NAME_BYTES + 1);
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, &hdr, 1, 0, &len), -EINVAL);
    hdr.name = cw_str_make(big, 0);
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, &hdr, 1, 0, &len), -EINVAL);

    hdr.name = CW_STR_LIT("n");
    hdr.value = cw_str_make(big, CW_LIMIT_HEADER_VALUE_BYTES);
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, &hdr, 1, 0, &len), 0);
    hdr.value = cw_str_make(big, CW_LIMIT_HEADER_VALUE_BYTES + 1);
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, &hdr, 1, 0, &len), -EINVAL);
}
END_TEST

/* The whole block at CW_LIMIT_HEADERS_BYTES fits, and round-trips; one byte more does not. */
START_TEST(test_entry_size_headers_block_limit)
{
    static char big[CW_LIMIT_HEADER_VALUE_BYTES];
    struct cw_entry_header hdrs[8];
    const size_t rec = 6 + 1 + CW_LIMIT_HEADER_VALUE_BYTES;
    const size_t last = CW_LIMIT_HEADERS_BYTES - 7 * rec - 6 - 1;
    struct cw_entry_hdr h = sample_hdr();
    struct cw_entry_view v;
    size_t len;
    char *buf;

    memset(big, 'b', sizeof(big));
    for (size_t i = 0; i < 8; i++) {
        hdrs[i].name = CW_STR_LIT("h");
        hdrs[i].value = cw_str_make(big, i < 7 ? CW_LIMIT_HEADER_VALUE_BYTES : last);
    }
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, hdrs, 8, 0, &len), 0);
    ck_assert_uint_eq(len, sizeof(h) + 1 + CW_LIMIT_HEADERS_BYTES);
    buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(
        cw_entry_encode(&h, CW_STR_LIT("k"), NULL, hdrs, 8, cw_str_make(NULL, 0), buf, len), 0);
    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert_uint_eq(v.headers_len, CW_LIMIT_HEADERS_BYTES);
    free(buf);

    hdrs[7].value.len = last + 1;
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, hdrs, 8, 0, &len), -EINVAL);
}
END_TEST

START_TEST(test_entry_size_key_limit)
{
    static char key[CW_LIMIT_KEY_BYTES + 1];
    size_t len;

    memset(key, 'k', sizeof(key));
    ck_assert_int_eq(cw_entry_size(cw_str_make(key, CW_LIMIT_KEY_BYTES), NULL, NULL, 0, 0, &len),
                     0);
    ck_assert_int_eq(
        cw_entry_size(cw_str_make(key, CW_LIMIT_KEY_BYTES + 1), NULL, NULL, 0, 0, &len), -EINVAL);
}
END_TEST

START_TEST(test_entry_size_overflow)
{
    size_t len;

    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, NULL, 0, SIZE_MAX, &len), -EOVERFLOW);
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, NULL, 0,
                                   SIZE_MAX - sizeof(struct cw_entry_hdr) - 1, &len),
                     0);
    ck_assert_uint_eq(len, SIZE_MAX);
}
END_TEST

START_TEST(test_entry_encode_errors)
{
    struct cw_entry_hdr h = sample_hdr();
    char buf[512];
    size_t len;

    ck_assert_int_eq(
        cw_entry_size(CW_STR_LIT("k"), NULL, sample_hdrs, CW_ARRAY_LEN(sample_hdrs), 3, &len), 0);
    ck_assert_int_eq(cw_entry_encode(&h, CW_STR_LIT("k"), NULL, sample_hdrs,
                                     CW_ARRAY_LEN(sample_hdrs), CW_STR_LIT("abc"), buf, len - 1),
                     -ENOSPC);
    ck_assert_int_eq(cw_entry_encode(&h, CW_STR_LIT("k"), NULL, sample_hdrs,
                                     CW_ARRAY_LEN(sample_hdrs), CW_STR_LIT("abc"), buf, len),
                     0);
    h.status = 99;
    ck_assert_int_eq(cw_entry_encode(&h, CW_STR_LIT("k"), NULL, sample_hdrs,
                                     CW_ARRAY_LEN(sample_hdrs), CW_STR_LIT("abc"), buf, len),
                     -EINVAL);
    h.status = 1000;
    ck_assert_int_eq(cw_entry_encode(&h, CW_STR_LIT("k"), NULL, sample_hdrs,
                                     CW_ARRAY_LEN(sample_hdrs), CW_STR_LIT("abc"), buf, len),
                     -EINVAL);
}
END_TEST

/* magic, version and lengths come from the encoder; the adaptive fields from the caller. */
START_TEST(test_entry_encode_sets_framing)
{
    struct cw_entry_hdr h = sample_hdr();
    struct cw_entry_view v;
    char buf[256];
    size_t len;

    h.magic = 0xdeadbeef;
    h.version = 77;
    h.key_len = 1000;
    h.body_len = 5;
    h.observed_ms = 123456;
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), NULL, NULL, 0, 1, &len), 0);
    ck_assert_int_eq(cw_entry_encode(&h, CW_STR_LIT("k"), NULL, NULL, 0, CW_STR_LIT("b"), buf, len),
                     0);
    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert_uint_eq(v.h.key_len, 1);
    ck_assert_uint_eq(v.h.body_len, 1);
    ck_assert_int_eq(v.h.observed_ms, 123456);
}
END_TEST

/* ---- The request part (version 2): what a refresh sends again ---- */

static const struct cw_entry_header sample_fields[] = {
    {CW_STR_LIT("accept-language"), CW_STR_LIT("fr-CH,  fr;q=0.9")},
    {CW_STR_LIT("x-tenant"), CW_STR_LIT("t1")},
    {CW_STR_LIT("x-empty"), CW_STR_LIT("")},
};

static struct cw_entry_req sample_req(void)
{
    return (struct cw_entry_req){CW_STR_LIT("api.example.com:8080"), CW_STR_LIT("/a/b?x=1&y=2"),
                                 sample_fields, CW_ARRAY_LEN(sample_fields)};
}

/* The sample entry with sample_req(): caller frees. */
static char *sample_encode_req(size_t *len)
{
    struct cw_entry_hdr h = sample_hdr();
    struct cw_entry_req req = sample_req();
    struct cw_str key = CW_STR_LIT("http://api.example.com:8080/a/b?x=1&y=2\nx-tenant:t1");
    struct cw_str body = CW_STR_LIT("{\"ok\":true}");
    char *buf;

    ck_assert_int_eq(
        cw_entry_size(key, &req, sample_hdrs, CW_ARRAY_LEN(sample_hdrs), body.len, len), 0);
    buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(
        cw_entry_encode(&h, key, &req, sample_hdrs, CW_ARRAY_LEN(sample_hdrs), body, buf, *len), 0);
    return buf;
}

/* Size of req's part and whether an entry with it encodes, decodes and round-trips:
 * cw_entry_size()'s return code. */
static int req_size_rc(const struct cw_entry_req *req)
{
    struct cw_entry_hdr h = sample_hdr();
    struct cw_entry_view v;
    struct cw_str name, value;
    size_t len, off = 0, i = 0;
    char *buf;
    int rc = cw_entry_size(CW_STR_LIT("k"), req, NULL, 0, 0, &len);

    if (rc < 0) return rc;
    buf = malloc(len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(
        cw_entry_encode(&h, CW_STR_LIT("k"), req, NULL, 0, cw_str_make(NULL, 0), buf, len), 0);
    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert(cw_str_eq(v.req_host, req->host));
    ck_assert(cw_str_eq(v.req_target, req->target));
    while (cw_entry_req_next(&v, &off, &name, &value)) {
        ck_assert_uint_lt(i, req->n);
        ck_assert(cw_str_eq(name, req->fields[i].name));
        ck_assert(cw_str_eq(value, req->fields[i].value));
        i++;
    }
    ck_assert_uint_eq(i, req->n);
    free(buf);
    return 0;
}

START_TEST(test_entry_req_round_trip)
{
    struct cw_entry_req req = sample_req();
    struct cw_entry_view v;
    struct cw_str name, value;
    size_t len, off = 0, i = 0;
    char *buf = sample_encode_req(&len);

    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert_uint_eq(v.h.version, 2);
    ck_assert_uint_eq(v.h.req_count, 3);
    ck_assert_uint_eq(v.h.req_len, 20 + 12 + (6 + 15 + 16) + (6 + 8 + 2) + (6 + 7 + 0));
    ck_assert(cw_str_eq(v.req_host, req.host));
    ck_assert(cw_str_eq(v.req_target, req.target));
    while (cw_entry_req_next(&v, &off, &name, &value)) {
        ck_assert_uint_lt(i, CW_ARRAY_LEN(sample_fields));
        ck_assert(cw_str_eq(name, sample_fields[i].name));
        ck_assert(cw_str_eq(value, sample_fields[i].value)); /* as sent: not normalised */
        i++;
    }
    ck_assert_uint_eq(i, 3);
    ck_assert_uint_eq(off, v.req_fields_len);
    /* The rest of the entry is where it was. */
    ck_assert(cw_str_eq(v.key, CW_STR_LIT("http://api.example.com:8080/a/b?x=1&y=2\nx-tenant:t1")));
    ck_assert(cw_entry_header_find(&v, CW_STR_LIT("ETag"), &value));
    ck_assert(cw_str_eq(value, CW_STR_LIT("\"v1\"")));
    ck_assert(cw_str_eq(v.body, CW_STR_LIT("{\"ok\":true}")));
    ck_assert_uint_eq(len, sizeof(struct cw_entry_hdr) + v.key.len + v.h.req_len + v.headers_len +
                               v.body.len);
    free(buf);

    /* No request part: empty, and nothing to iterate. */
    buf = sample_encode(&len);
    ck_assert_int_eq(cw_entry_decode(buf, len, &v), 0);
    ck_assert_uint_eq(v.h.req_len, 0);
    ck_assert_uint_eq(v.req_host.len + v.req_target.len + v.req_fields_len, 0);
    off = 0;
    ck_assert(!cw_entry_req_next(&v, &off, &name, &value));
    free(buf);
}
END_TEST

/* Each bound of the request part at N (encodes and round-trips) and N+1 (-EINVAL). */
START_TEST(test_entry_req_limits)
{
    static char big[CW_LIMIT_ENTRY_REQ_VALUE_BYTES + 1];
    static struct cw_entry_header f[CW_LIMIT_ENTRY_REQ_FIELDS + 1];
    struct cw_entry_req req = {CW_STR_LIT("h"), CW_STR_LIT("/"), f, 0};

    memset(big, 'a', sizeof(big));
    big[0] = '/';
    req.host = cw_str_make(big + 1, CW_LIMIT_HOST_BYTES);
    ck_assert_int_eq(req_size_rc(&req), 0);
    req.host.len++;
    ck_assert_int_eq(req_size_rc(&req), -EINVAL);
    req.host = CW_STR_LIT("h");

    req.target = cw_str_make(big, CW_LIMIT_URL_BYTES);
    ck_assert_int_eq(req_size_rc(&req), 0);
    req.target.len++;
    ck_assert_int_eq(req_size_rc(&req), -EINVAL);
    req.target = CW_STR_LIT("/");

    for (size_t i = 0; i < CW_ARRAY_LEN(f); i++)
        f[i] = (struct cw_entry_header){CW_STR_LIT("x"), CW_STR_LIT("1")};
    req.n = CW_LIMIT_ENTRY_REQ_FIELDS;
    ck_assert_int_eq(req_size_rc(&req), 0);
    req.n++;
    ck_assert_int_eq(req_size_rc(&req), -EINVAL);

    req.n = 1;
    f[0].name = cw_str_make(big + 1, CW_LIMIT_HEADER_NAME_BYTES);
    ck_assert_int_eq(req_size_rc(&req), 0);
    f[0].name.len++;
    ck_assert_int_eq(req_size_rc(&req), -EINVAL);
    f[0].name = CW_STR_LIT("x");

    f[0].value = cw_str_make(big, CW_LIMIT_ENTRY_REQ_VALUE_BYTES);
    ck_assert_int_eq(req_size_rc(&req), 0);
    f[0].value.len++;
    ck_assert_int_eq(req_size_rc(&req), -EINVAL);

    /* The block of records: two records that fill it exactly, then one byte more. */
    req.n = 2;
    f[0].value = cw_str_make(big, CW_LIMIT_ENTRY_REQ_VALUE_BYTES);
    f[1].value =
        cw_str_make(big, CW_LIMIT_ENTRY_REQ_BYTES - 2 * (6 + 1) - CW_LIMIT_ENTRY_REQ_VALUE_BYTES);
    ck_assert_int_eq(req_size_rc(&req), 0);
    f[1].value.len++;
    ck_assert_uint_le(f[1].value.len, CW_LIMIT_ENTRY_REQ_VALUE_BYTES);
    ck_assert_int_eq(req_size_rc(&req), -EINVAL);
}
END_TEST

/* What could not go on the wire as it is: not encoded. */
START_TEST(test_entry_req_refuses_unsendable_bytes)
{
    static const struct {
        const char *host, *target, *name, *value;
    } bad[] = {
        {"h", "/", "", "v"},     {"h", "/", "a b", "v"},
        {"h", "/", "a:b", "v"},  {"h", "/", "a\n", "v"},
        {"h", "/", "x", "a\rb"}, {"h", "/", "x", "a\nb"},
        {"h x", "/", "x", "v"},  {"h\r", "/", "x", "v"},
        {"h", "/a b", "x", "v"}, {"h", "/a\nHost: evil", "x", "v"},
    };
    struct cw_entry_header f;
    struct cw_entry_req req;
    size_t len;

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        f = (struct cw_entry_header){cw_str_cstr(bad[i].name), cw_str_cstr(bad[i].value)};
        req = (struct cw_entry_req){cw_str_cstr(bad[i].host), cw_str_cstr(bad[i].target), &f, 1};
        ck_assert_msg(cw_entry_size(CW_STR_LIT("k"), &req, NULL, 0, 0, &len) == -EINVAL, "case %zu",
                      i);
    }
    /* A NUL inside a value. */
    f = (struct cw_entry_header){CW_STR_LIT("x"), cw_str_make("a\0b", 3)};
    req = (struct cw_entry_req){CW_STR_LIT("h"), CW_STR_LIT("/"), &f, 1};
    ck_assert_int_eq(cw_entry_size(CW_STR_LIT("k"), &req, NULL, 0, 0, &len), -EINVAL);
    /* obs-text and HTAB are fine (RFC 9110 §5.5). */
    f = (struct cw_entry_header){CW_STR_LIT("x"), CW_STR_LIT("a\tb\xc3\xa9")};
    ck_assert_int_eq(req_size_rc(&req), 0);
    /* Long words are read 8 bytes at a time: a bad byte at any place of a 30-byte host, target
     * or value is still found, and the same bytes without it pass. */
    for (size_t at = 0; at < 30; at++) {
        static const char badc[] = {' ', '\r', '\n', '\0'};
        char word[30];

        for (size_t k = 0; k < sizeof(badc); k++) {
            memset(word, 'a', sizeof(word));
            word[0] = '/';
            word[at] = badc[k];
            f = (struct cw_entry_header){CW_STR_LIT("x"), CW_STR_LIT("v")};
            req = (struct cw_entry_req){CW_STR_LIT("h"), cw_str_make(word, sizeof(word)), &f, 1};
            ck_assert_msg(req_size_rc(&req) == -EINVAL, "target byte 0x%02x at %zu", badc[k], at);
            req = (struct cw_entry_req){cw_str_make(word, sizeof(word)), CW_STR_LIT("/"), &f, 1};
            ck_assert_msg(req_size_rc(&req) == -EINVAL, "host byte 0x%02x at %zu", badc[k], at);
            f = (struct cw_entry_header){CW_STR_LIT("x"), cw_str_make(word, sizeof(word))};
            req = (struct cw_entry_req){CW_STR_LIT("h"), CW_STR_LIT("/"), &f, 1};
            ck_assert_msg(req_size_rc(&req) == (badc[k] == ' ' ? 0 : -EINVAL),
                          "value byte 0x%02x at %zu", badc[k], at);
        }
        memset(word, 'a', sizeof(word));
        word[at] = '\t';
        f = (struct cw_entry_header){CW_STR_LIT("x"), cw_str_make(word, sizeof(word))};
        req = (struct cw_entry_req){CW_STR_LIT("h"), CW_STR_LIT("/"), &f, 1};
        ck_assert_int_eq(req_size_rc(&req), 0);
    }
}
END_TEST

/* Lengths in the header that lie about the request part, and records inside it that encode
 * could not have written: -EBADMSG, and the untouched bytes still decode. */
START_TEST(test_entry_decode_req_malformed)
{
    size_t len;
    char *buf = sample_encode_req(&len);
    struct cw_entry_hdr h, orig;
    char *rec;
    uint16_t nl;
    uint32_t vl;

    hdr_get(buf, &orig);
#define EXPECT_BAD(field, val)                                                                     \
    do {                                                                                           \
        h = orig;                                                                                  \
        h.field = (val);                                                                           \
        hdr_set(buf, &h);                                                                          \
        ck_assert_msg(decode_rc(buf, len) == -EBADMSG, #field " = " #val);                         \
    } while (0)
    EXPECT_BAD(version, 1); /* an entry of the old layout is a miss */
    EXPECT_BAD(req_len, orig.req_len + 1);
    EXPECT_BAD(req_len, orig.req_len - 1);
    EXPECT_BAD(req_len, 0);
    EXPECT_BAD(req_len, UINT32_MAX);
    EXPECT_BAD(req_count, orig.req_count + 1);
    EXPECT_BAD(req_count, orig.req_count - 1);
    EXPECT_BAD(req_count, CW_LIMIT_ENTRY_REQ_FIELDS + 1);
    EXPECT_BAD(req_count, UINT32_MAX);
    EXPECT_BAD(req_host_len, CW_LIMIT_HOST_BYTES + 1);
    EXPECT_BAD(req_host_len, orig.req_len + 1);
    EXPECT_BAD(req_host_len, UINT32_MAX);
    EXPECT_BAD(req_target_len, CW_LIMIT_URL_BYTES + 1);
    EXPECT_BAD(req_target_len, orig.req_len);
    EXPECT_BAD(req_target_len, UINT32_MAX);
    /* The part grows into the header block, which then no longer adds up. */
    h = orig;
    h.req_len = orig.req_len + 6;
    h.headers_len = orig.headers_len - 6;
    hdr_set(buf, &h);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
#undef EXPECT_BAD
    hdr_set(buf, &orig);
    ck_assert_int_eq(decode_rc(buf, len), 0);

    /* The first record (accept-language, 15 + 16 bytes). */
    rec = buf + sizeof(orig) + orig.key_len + orig.req_host_len + orig.req_target_len;
    memcpy(&nl, rec, 2);
    ck_assert_uint_eq(nl, 15);
    nl = 0;
    memcpy(rec, &nl, 2);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    nl = CW_LIMIT_HEADER_NAME_BYTES + 1;
    memcpy(rec, &nl, 2);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    nl = UINT16_MAX;
    memcpy(rec, &nl, 2);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    nl = 15;
    memcpy(rec, &nl, 2);
    vl = 17;
    memcpy(rec + 2, &vl, 4);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    vl = CW_LIMIT_ENTRY_REQ_VALUE_BYTES + 1;
    memcpy(rec + 2, &vl, 4);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    vl = UINT32_MAX;
    memcpy(rec + 2, &vl, 4);
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    vl = 16;
    memcpy(rec + 2, &vl, 4);
    ck_assert_int_eq(decode_rc(buf, len), 0);

    /* Bytes a field line or the request line cannot carry. */
    rec[6 + 3] = ':'; /* in the name */
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    rec[6 + 3] = 'e';
    rec[6 + 15 + 2] = '\n'; /* in the value */
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    rec[6 + 15 + 2] = '-';
    buf[sizeof(orig) + orig.key_len + 3] = ' '; /* in the host */
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    buf[sizeof(orig) + orig.key_len + 3] = '.';
    buf[sizeof(orig) + orig.key_len + orig.req_host_len + 2] = '\r'; /* in the target */
    ck_assert_int_eq(decode_rc(buf, len), -EBADMSG);
    buf[sizeof(orig) + orig.key_len + orig.req_host_len + 2] = '/';
    ck_assert_int_eq(decode_rc(buf, len), 0);
    free(buf);
}
END_TEST

/* With a request part: every truncation is -EBADMSG, every bit flip decodes or is. */
START_TEST(test_entry_decode_req_truncated_and_flipped)
{
    size_t len;
    char *buf = sample_encode_req(&len);
    struct cw_entry_view v;

    for (size_t n = 0; n < len; n++) {
        char *t = malloc(n > 0 ? n : 1);
        ck_assert_ptr_nonnull(t);
        memcpy(t, buf, n);
        ck_assert_msg(decode_rc(t, n) == -EBADMSG, "truncated at %zu", n);
        free(t);
    }
    for (size_t i = 0; i < len; i++) {
        for (int b = 0; b < 8; b++) {
            int rc;
            buf[i] ^= (char)(1 << b);
            rc = cw_entry_decode(buf, len, &v);
            ck_assert(rc == 0 || rc == -EBADMSG);
            if (rc == 0) {
                ck_assert_uint_eq(
                    sizeof(v.h) + v.key.len + v.h.req_len + v.headers_len + v.body.len, len);
                ck_assert_uint_eq(v.req_host.len + v.req_target.len + v.req_fields_len,
                                  v.h.req_len);
            }
            buf[i] ^= (char)(1 << b);
        }
    }
    free(buf);
}
END_TEST

Suite *entry_suite(void)
{
    Suite *s = suite_create("entry");
    TCase *tc = tcase_create("entry");

    tcase_add_test(tc, test_entry_round_trip);
    tcase_add_test(tc, test_entry_round_trip_empty);
    tcase_add_test(tc, test_entry_header_find_case_insensitive);
    tcase_add_test(tc, test_entry_decode_unaligned);
    tcase_add_test(tc, test_entry_decode_truncated_everywhere);
    tcase_add_test(tc, test_entry_decode_bad_magic_version_status);
    tcase_add_test(tc, test_entry_decode_lying_lengths);
    tcase_add_test(tc, test_entry_decode_bad_records);
    tcase_add_test(tc, test_entry_decode_bit_flips);
    tcase_add_test(tc, test_entry_size_header_count_limit);
    tcase_add_test(tc, test_entry_size_header_name_value_limits);
    tcase_add_test(tc, test_entry_size_headers_block_limit);
    tcase_add_test(tc, test_entry_size_key_limit);
    tcase_add_test(tc, test_entry_size_overflow);
    tcase_add_test(tc, test_entry_encode_errors);
    tcase_add_test(tc, test_entry_encode_sets_framing);
    tcase_add_test(tc, test_entry_req_round_trip);
    tcase_add_test(tc, test_entry_req_limits);
    tcase_add_test(tc, test_entry_req_refuses_unsendable_bytes);
    tcase_add_test(tc, test_entry_decode_req_malformed);
    tcase_add_test(tc, test_entry_decode_req_truncated_and_flipped);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(entry_suite)
