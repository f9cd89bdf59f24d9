/* tests/unit/test_key.c - core/key: normalisation, limits, SipHash-2-4-128 vectors. */
#include "core/key.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/limits.h"

Suite *key_suite(void);

static char key_buf[CW_LIMIT_KEY_BYTES + 64];

/* Builds with route and checks the result against want (NULL = expect rc). */
static void check_build(const struct cw_config_route *route, const char *scheme, const char *host,
                        const char *target, const char *want)
{
    size_t len = 0;
    int rc = cw_key_build(route, cw_str_cstr(scheme), cw_str_cstr(host), cw_str_cstr(target),
                          key_buf, sizeof(key_buf), &len);

    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_int_eq(memcmp(key_buf, want, len), 0);
}

static int build_rc(const struct cw_config_route *route, const char *host, const char *target)
{
    size_t len = 0;

    return cw_key_build(route, CW_STR_LIT("http"), cw_str_cstr(host), cw_str_cstr(target), key_buf,
                        sizeof(key_buf), &len);
}

START_TEST(test_key_build_basic)
{
    check_build(NULL, "http", "example.com", "/a/b?x=1", "http://example.com/a/b?x=1");
    check_build(NULL, "http", "example.com", "/", "http://example.com/");
}
END_TEST

START_TEST(test_key_build_lowercases_scheme_and_host_not_path)
{
    check_build(NULL, "HTTPS", "ExAmple.COM", "/Path/X?Q=A", "https://example.com/Path/X?Q=A");
}
END_TEST

START_TEST(test_key_build_strips_default_port)
{
    check_build(NULL, "http", "example.com:80", "/", "http://example.com/");
    check_build(NULL, "https", "example.com:443", "/", "https://example.com/");
    check_build(NULL, "HTTP", "[::1]:80", "/", "http://[::1]/");
    /* Only the scheme's own default port goes. */
    check_build(NULL, "http", "example.com:443", "/", "http://example.com:443/");
    check_build(NULL, "https", "example.com:80", "/", "https://example.com:80/");
    check_build(NULL, "http", "example.com:8080", "/", "http://example.com:8080/");
    check_build(NULL, "http", "example.com:180", "/", "http://example.com:180/");
}
END_TEST

START_TEST(test_key_build_rejects_bad_host_bytes)
{
    ck_assert_int_eq(build_rc(NULL, "exa mple.com", "/"), -EINVAL);
    ck_assert_int_eq(build_rc(NULL, "example.com/x", "/"), -EINVAL);
    ck_assert_int_eq(build_rc(NULL, "a\nb", "/"), -EINVAL);
    ck_assert_int_eq(build_rc(NULL, "a@b", "/"), -EINVAL);
    ck_assert_int_eq(build_rc(NULL, "a_b-c.d:99", "/"), 0);
    ck_assert_int_eq(build_rc(NULL, "[fe80::1]:8080", "/"), 0);
}
END_TEST

START_TEST(test_key_build_rejects_bad_scheme)
{
    size_t len = 0;
    const struct {
        const char *scheme;
        int rc;
    } cases[] = {
        {"http", 0},        {"coap+tcp", 0},          {"x-1.y", 0},       {"", -EINVAL},
        {"1http", -EINVAL}, {"http://evil", -EINVAL}, {"ht tp", -EINVAL}, {"http:", -EINVAL},
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        int rc = cw_key_build(NULL, cw_str_cstr(cases[i].scheme), CW_STR_LIT("h"), CW_STR_LIT("/"),
                              key_buf, sizeof(key_buf), &len);
        ck_assert_msg(rc == cases[i].rc, "scheme \"%s\": %d", cases[i].scheme, rc);
    }
}
END_TEST

START_TEST(test_key_build_empty_query_has_no_question_mark)
{
    struct cw_config_route r = {0};

    check_build(NULL, "http", "h", "/a?", "http://h/a");
    r.query = CW_CONFIG_QUERY_SORT;
    check_build(&r, "http", "h", "/a?&&", "http://h/a");
    r.query = CW_CONFIG_QUERY_IGNORE;
    check_build(&r, "http", "h", "/a?x=1", "http://h/a");
}
END_TEST

START_TEST(test_key_build_query_keep)
{
    struct cw_config_route r = {0};

    r.query = CW_CONFIG_QUERY_KEEP;
    check_build(&r, "http", "h", "/a?b=2&&a=1", "http://h/a?b=2&&a=1");
}
END_TEST

START_TEST(test_key_build_query_sort_stable)
{
    struct cw_config_route r = {0};

    r.query = CW_CONFIG_QUERY_SORT;
    check_build(&r, "http", "h", "/a?b=2&a=1&c", "http://h/a?a=1&b=2&c");
    /* Same name: order as sent (a=2&a=1 is a different request from a=1&a=2). */
    check_build(&r, "http", "h", "/a?b=1&a=2&a=1", "http://h/a?a=2&a=1&b=1");
    /* Empty params dropped; a name sorts before its extensions. */
    check_build(&r, "http", "h", "/a?&ab=1&&a=2&", "http://h/a?a=2&ab=1");
    /* Names compare as bytes: upper case before lower case. */
    check_build(&r, "http", "h", "/a?b=1&B=2", "http://h/a?B=2&b=1");
}
END_TEST

START_TEST(test_key_build_query_ignore)
{
    struct cw_config_route r = {0};

    r.query = CW_CONFIG_QUERY_IGNORE;
    check_build(&r, "http", "h", "/a?utm=1&b=2", "http://h/a");
}
END_TEST

START_TEST(test_key_build_query_list)
{
    char *keep[] = {"id", "lang"};
    struct cw_config_route r = {0};

    r.query = CW_CONFIG_QUERY_LIST;
    r.query_keep = keep;
    r.query_keep_count = 2;
    check_build(&r, "http", "h", "/a?utm=x&lang=de&id=7&idx=1", "http://h/a?id=7&lang=de");
    check_build(&r, "http", "h", "/a?utm=x", "http://h/a");
    check_build(&r, "http", "h", "/a?lang", "http://h/a?lang");
}
END_TEST

/* The param cap counts parameters kept, at N and N+1. */
START_TEST(test_key_build_query_param_cap)
{
    static char target[CW_KEY_QUERY_PARAMS_MAX * 4 + 16];
    struct cw_config_route r = {0};
    size_t n = 0;

    r.query = CW_CONFIG_QUERY_SORT;
    n += (size_t)snprintf(target, sizeof(target), "/a?");
    for (size_t i = 0; i < CW_KEY_QUERY_PARAMS_MAX; i++) {
        n += (size_t)snprintf(target + n, sizeof(target) - n, "%sa", i == 0 ? "" : "&");
    }
    ck_assert_int_eq(build_rc(&r, "h", target), 0);
    snprintf(target + n, sizeof(target) - n, "&a");
    ck_assert_int_eq(build_rc(&r, "h", target), -ENOSPC);
    /* KEEP does not split, so has no cap. */
    ck_assert_int_eq(build_rc(NULL, "h", target), 0);
}
END_TEST

/* Keys of exactly CW_LIMIT_KEY_BYTES fit; one more byte does not, whatever the buffer. */
START_TEST(test_key_build_limit)
{
    static char target[CW_LIMIT_KEY_BYTES + 2];
    const size_t prefix = strlen("http://h");
    size_t path_len = CW_LIMIT_KEY_BYTES - prefix;
    size_t len = 0;
    int rc;

    memset(target, 'x', sizeof(target));
    target[0] = '/';
    target[path_len] = '\0';
    rc = cw_key_build(NULL, CW_STR_LIT("http"), CW_STR_LIT("h"), cw_str_cstr(target), key_buf,
                      sizeof(key_buf), &len);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(len, CW_LIMIT_KEY_BYTES);

    target[path_len] = 'x';
    target[path_len + 1] = '\0';
    rc = cw_key_build(NULL, CW_STR_LIT("http"), CW_STR_LIT("h"), cw_str_cstr(target), key_buf,
                      sizeof(key_buf), &len);
    ck_assert_int_eq(rc, -ENOSPC);
}
END_TEST

START_TEST(test_key_build_small_buffer)
{
    char small[16];
    size_t len = 0;

    ck_assert_int_eq(cw_key_build(NULL, CW_STR_LIT("http"), CW_STR_LIT("h"), CW_STR_LIT("/1234567"),
                                  small, sizeof(small), &len),
                     0);
    ck_assert_uint_eq(len, 16);
    ck_assert_int_eq(cw_key_build(NULL, CW_STR_LIT("http"), CW_STR_LIT("h"),
                                  CW_STR_LIT("/12345678"), small, sizeof(small), &len),
                     -ENOSPC);
}
END_TEST

/* Forwards query under route into out (NUL-terminated) and returns the length. */
static size_t forward(const struct cw_config_route *route, const char *query, char *out,
                      size_t size)
{
    size_t len = 12345;

    ck_assert_int_eq(cw_key_forward_query(route, cw_str_cstr(query), out, size - 1, &len), 0);
    ck_assert_uint_lt(len, size);
    out[len] = '\0';
    return len;
}

static void check_forward_at(const struct cw_config_route *route, const char *query,
                             const char *want, int line)
{
    char out[256];

    forward(route, query, out, sizeof(out));
    ck_assert_msg(strcmp(out, want) == 0, "line %d: \"%s\" forwarded as \"%s\", want \"%s\"", line,
                  query, out, want);
}
#define check_forward(r, q, w) check_forward_at((r), (q), (w), __LINE__)

START_TEST(test_key_forward_query_modes)
{
    char *keep[] = {"id", "lang"};
    struct cw_config_route r = {0};

    check_forward(NULL, "b=2&&a=1", "b=2&&a=1");
    r.query = CW_CONFIG_QUERY_KEEP;
    check_forward(&r, "b=2&&a=1&", "b=2&&a=1&");
    check_forward(&r, "", "");
    r.query = CW_CONFIG_QUERY_SORT; /* as sent: sorting is for the key only */
    check_forward(&r, "b=2&a=1&&c", "b=2&a=1&&c");
    r.query = CW_CONFIG_QUERY_IGNORE;
    check_forward(&r, "utm=1&b=2", "");
    check_forward(&r, "", "");
    r.query = CW_CONFIG_QUERY_LIST;
    r.query_keep = keep;
    r.query_keep_count = 2;
    check_forward(&r, "utm=x&lang=de&id=7&idx=1&&id=8&lang", "lang=de&id=7&id=8&lang");
    check_forward(&r, "utm=x", "");
    check_forward(&r, "", "");
    check_forward(&r, "&&id=1&", "id=1");
    check_forward(&r, "id=&x", "id=");
    check_forward(&r, "Lang=de&ID=1&i%64=1&id =1", ""); /* exact name bytes, as the key */
    check_forward(&r, "id=1;utm=2&lang=a%26b", "id=1;utm=2&lang=a%26b");
}
END_TEST

/* The brief's poisoning case: an unkeyed parameter no longer reaches the origin. */
START_TEST(test_key_forward_query_unkeyed_not_sent)
{
    char *keep[] = {"page"};
    struct cw_config_route r = {0};
    char a[256], b[256];
    size_t la = 0, lb = 0;

    r.query = CW_CONFIG_QUERY_LIST;
    r.query_keep = keep;
    r.query_keep_count = 1;
    check_forward(&r, "page=1&utm_content=X", "page=1");
    ck_assert_int_eq(cw_key_build(&r, CW_STR_LIT("http"), CW_STR_LIT("h"),
                                  CW_STR_LIT("/l?page=1&utm_content=X"), a, sizeof(a), &la),
                     0);
    ck_assert_int_eq(cw_key_build(&r, CW_STR_LIT("http"), CW_STR_LIT("h"), CW_STR_LIT("/l?page=1"),
                                  b, sizeof(b), &lb),
                     0);
    ck_assert(la == lb && memcmp(a, b, la) == 0);
}
END_TEST

START_TEST(test_key_forward_query_small_buffer)
{
    char *keep[] = {"id"};
    struct cw_config_route r = {0};
    char out[16];
    size_t len = 99;

    ck_assert_int_eq(cw_key_forward_query(NULL, CW_STR_LIT("a=1&b=2"), out, 7, &len), 0);
    ck_assert_uint_eq(len, 7);
    len = 99;
    ck_assert_int_eq(cw_key_forward_query(NULL, CW_STR_LIT("a=1&b=2"), out, 6, &len), -ENOSPC);
    ck_assert_uint_eq(len, 99);
    r.query = CW_CONFIG_QUERY_LIST;
    r.query_keep = keep;
    r.query_keep_count = 1;
    ck_assert_int_eq(cw_key_forward_query(&r, CW_STR_LIT("id=1&x=2&id=3"), out, 9, &len), 0);
    ck_assert_uint_eq(len, 9);
    ck_assert_int_eq(memcmp(out, "id=1&id=3", 9), 0);
    ck_assert_int_eq(cw_key_forward_query(&r, CW_STR_LIT("id=1&x=2&id=3"), out, 8, &len), -ENOSPC);
    ck_assert_int_eq(cw_key_forward_query(&r, CW_STR_LIT("id=1&x=2&id=3"), out, 4, &len), -ENOSPC);
    r.query = CW_CONFIG_QUERY_IGNORE;
    ck_assert_int_eq(cw_key_forward_query(&r, CW_STR_LIT("id=1"), out, 0, &len), 0);
    ck_assert_uint_eq(len, 0);
}
END_TEST

/* Key of "/p?<query>" under route, NUL-terminated, in out. */
static void key_of(const struct cw_config_route *route, const char *query, char *out, size_t size)
{
    char target[256];
    size_t len = 0;

    snprintf(target, sizeof(target), "/p?%s", query);
    ck_assert_int_eq(cw_key_build(route, CW_STR_LIT("http"), CW_STR_LIT("h"), cw_str_cstr(target),
                                  out, size - 1, &len),
                     0);
    out[len] = '\0';
}

/* query with its index-th '&'-separated parameter removed. */
static void without_param(const char *query, size_t index, char *out, size_t size)
{
    size_t used = 0, i = 0;
    const char *p = query;

    out[0] = '\0';
    for (;; i++) {
        size_t n = strcspn(p, "&");
        if (i != index) {
            used += (size_t)snprintf(out + used, size - used, "%s%.*s", used ? "&" : "", (int)n, p);
        }
        if (p[n] == '\0') break;
        p += n + 1;
    }
}

/* For every mode and query: a non-empty parameter changes the key exactly when it changes
 * what is forwarded, the forwarded query keys as the whole one does, and forwarding is
 * idempotent. */
START_TEST(test_key_forward_query_keyed_iff_forwarded)
{
    static const char *const queries[] = {"page=1&utm_content=X",
                                          "b=2&a=1&c",
                                          "id=7&id=7&lang=de&x",
                                          "lang&lang=&idx=1&id",
                                          "a=1&a=2",
                                          "utm=1",
                                          "ID=1&id=2&iD=3",
                                          "id=1;utm=2&lang=a%26b",
                                          "x&&id=1&",
                                          "lang=en&page",
                                          "page=2&page=1&PAGE=3"};
    char *keep[] = {"id", "lang", "page"};
    struct cw_config_route r = {0};
    char key_all[512], key_less[512], key_fwd[512];
    char fwd_all[256], fwd_less[256], fwd_fwd[256], less[256];

    r.query_keep = keep;
    r.query_keep_count = CW_ARRAY_LEN(keep);
    for (int mode = CW_CONFIG_QUERY_KEEP; mode <= CW_CONFIG_QUERY_LIST; mode++) {
        r.query = (enum cw_config_query)mode;
        for (size_t q = 0; q < CW_ARRAY_LEN(queries); q++) {
            const char *query = queries[q];
            size_t count = 1;
            for (const char *c = query; *c != '\0'; c++) {
                count += *c == '&';
            }
            key_of(&r, query, key_all, sizeof(key_all));
            forward(&r, query, fwd_all, sizeof(fwd_all));
            key_of(&r, fwd_all, key_fwd, sizeof(key_fwd));
            ck_assert_msg(strcmp(key_all, key_fwd) == 0, "mode %d \"%s\": key %s vs %s", mode,
                          query, key_all, key_fwd);
            forward(&r, fwd_all, fwd_fwd, sizeof(fwd_fwd));
            ck_assert_str_eq(fwd_fwd, fwd_all);
            for (size_t i = 0; i < count; i++) {
                bool keyed, sent;
                without_param(query, i, less, sizeof(less));
                if (strlen(less) + 1 == strlen(query)) continue; /* an empty parameter */
                key_of(&r, less, key_less, sizeof(key_less));
                forward(&r, less, fwd_less, sizeof(fwd_less));
                keyed = strcmp(key_less, key_all) != 0;
                sent = strcmp(fwd_less, fwd_all) != 0;
                ck_assert_msg(keyed == sent, "mode %d \"%s\" param %zu: keyed %d, forwarded %d",
                              mode, query, i, keyed, sent);
            }
        }
    }
}
END_TEST

START_TEST(test_key_append_header_normalises)
{
    size_t len = 0;
    const char *want = "http://h/\naccept-encoding:gzip, br\nx-empty:";

    check_build(NULL, "http", "h", "/", "http://h/");
    len = strlen("http://h/");
    ck_assert_int_eq(cw_key_append_header(key_buf, sizeof(key_buf), &len,
                                          CW_STR_LIT("Accept-Encoding"),
                                          CW_STR_LIT(" \tgzip,  \t br \r\n")),
                     0);
    ck_assert_int_eq(cw_key_append_header(key_buf, sizeof(key_buf), &len, CW_STR_LIT("X-Empty"),
                                          cw_str_make(NULL, 0)),
                     0);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_int_eq(memcmp(key_buf, want, len), 0);
}
END_TEST

/* A value cannot start a record of its own, and a name cannot carry separators. */
START_TEST(test_key_append_header_no_injection)
{
    size_t len = 0;
    const char *want = "\na:x b:y";

    ck_assert_int_eq(
        cw_key_append_header(key_buf, sizeof(key_buf), &len, CW_STR_LIT("a"), CW_STR_LIT("x\nb:y")),
        0);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_int_eq(memcmp(key_buf, want, len), 0);
    ck_assert_int_eq(
        cw_key_append_header(key_buf, sizeof(key_buf), &len, CW_STR_LIT("a:b"), CW_STR_LIT("c")),
        -EINVAL);
    ck_assert_int_eq(
        cw_key_append_header(key_buf, sizeof(key_buf), &len, CW_STR_LIT("a\nb"), CW_STR_LIT("c")),
        -EINVAL);
    ck_assert_int_eq(
        cw_key_append_header(key_buf, sizeof(key_buf), &len, cw_str_make(NULL, 0), CW_STR_LIT("c")),
        -EINVAL);
    ck_assert_uint_eq(len, strlen(want));
}
END_TEST

/* The appended key may reach CW_LIMIT_KEY_BYTES exactly, not one byte more; a failed
 * append leaves *len as it was. */
START_TEST(test_key_append_header_limit)
{
    static char value[CW_LIMIT_KEY_BYTES];
    size_t base = CW_LIMIT_KEY_BYTES - 100;
    size_t len = base;
    size_t vlen = 100 - strlen("\nx:");

    memset(value, 'v', sizeof(value));
    ck_assert_int_eq(cw_key_append_header(key_buf, sizeof(key_buf), &len, CW_STR_LIT("x"),
                                          cw_str_make(value, vlen)),
                     0);
    ck_assert_uint_eq(len, CW_LIMIT_KEY_BYTES);

    len = base;
    ck_assert_int_eq(cw_key_append_header(key_buf, sizeof(key_buf), &len, CW_STR_LIT("x"),
                                          cw_str_make(value, vlen + 1)),
                     -ENOSPC);
    ck_assert_uint_eq(len, base);
}
END_TEST

/* vectors_sip128 from the SipHash reference implementation (github.com/veorq/SipHash,
 * vectors.h): key 00..0f, message 00..(len-1). Cross-checked against an independent
 * Python implementation written for this test. */
START_TEST(test_key_hash_reference_vectors)
{
    static const struct {
        size_t len;
        uint8_t out[16];
    } vec[] = {
        {0,
         {0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02,
          0x93}},
        {1,
         {0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc,
          0x45}},
        {7,
         {0xa1, 0xf1, 0xeb, 0xbe, 0xd8, 0xdb, 0xc1, 0x53, 0xc0, 0xb8, 0x4a, 0xa6, 0x1f, 0xf0, 0x82,
          0x39}},
        {8,
         {0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83, 0xe2, 0x64, 0xf3, 0x14, 0x97,
          0xb4}},
        {15,
         {0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf, 0xc3,
          0xd9}},
        {16,
         {0x6e, 0xe2, 0xa4, 0xca, 0x67, 0xb0, 0x54, 0xbb, 0xfd, 0x33, 0x15, 0xbf, 0x85, 0x23, 0x05,
          0x77}},
        {63,
         {0x51, 0x50, 0xd1, 0x77, 0x2f, 0x50, 0x83, 0x4a, 0x50, 0x3e, 0x06, 0x9a, 0x97, 0x3f, 0xbd,
          0x7c}},
    };
    uint8_t secret[16];
    char msg[64];
    struct cw_key k;

    for (int i = 0; i < 16; i++) {
        secret[i] = (uint8_t)i;
    }
    for (int i = 0; i < 64; i++) {
        msg[i] = (char)i;
    }
    for (size_t i = 0; i < CW_ARRAY_LEN(vec); i++) {
        cw_key_hash(secret, msg, vec[i].len, &k);
        ck_assert_msg(memcmp(k.h, vec[i].out, 16) == 0, "len %zu", vec[i].len);
    }
}
END_TEST

START_TEST(test_key_hash_depends_on_secret)
{
    uint8_t s1[16] = {0};
    uint8_t s2[16] = {1};
    struct cw_key a;
    struct cw_key b;

    cw_key_hash(s1, "http://h/", 9, &a);
    cw_key_hash(s2, "http://h/", 9, &b);
    ck_assert_int_ne(memcmp(a.h, b.h, 16), 0);
    cw_key_hash(s1, "http://h/", 9, &b);
    ck_assert_int_eq(memcmp(a.h, b.h, 16), 0);
}
END_TEST

START_TEST(test_key_hex)
{
    struct cw_key k;
    char hex[33];

    for (int i = 0; i < 16; i++) {
        k.h[i] = (uint8_t)(i * 0x11);
    }
    k.h[15] = 0xaf;
    cw_key_hex(&k, hex);
    ck_assert_str_eq(hex, "00112233445566778899aabbccddeeaf");
}
END_TEST

Suite *key_suite(void)
{
    Suite *s = suite_create("key");
    TCase *tc = tcase_create("key");

    tcase_add_test(tc, test_key_build_basic);
    tcase_add_test(tc, test_key_build_lowercases_scheme_and_host_not_path);
    tcase_add_test(tc, test_key_build_strips_default_port);
    tcase_add_test(tc, test_key_build_rejects_bad_host_bytes);
    tcase_add_test(tc, test_key_build_rejects_bad_scheme);
    tcase_add_test(tc, test_key_build_empty_query_has_no_question_mark);
    tcase_add_test(tc, test_key_build_query_keep);
    tcase_add_test(tc, test_key_build_query_sort_stable);
    tcase_add_test(tc, test_key_build_query_ignore);
    tcase_add_test(tc, test_key_build_query_list);
    tcase_add_test(tc, test_key_build_query_param_cap);
    tcase_add_test(tc, test_key_build_limit);
    tcase_add_test(tc, test_key_build_small_buffer);
    tcase_add_test(tc, test_key_forward_query_modes);
    tcase_add_test(tc, test_key_forward_query_unkeyed_not_sent);
    tcase_add_test(tc, test_key_forward_query_small_buffer);
    tcase_add_test(tc, test_key_forward_query_keyed_iff_forwarded);
    tcase_add_test(tc, test_key_append_header_normalises);
    tcase_add_test(tc, test_key_append_header_no_injection);
    tcase_add_test(tc, test_key_append_header_limit);
    tcase_add_test(tc, test_key_hash_reference_vectors);
    tcase_add_test(tc, test_key_hash_depends_on_secret);
    tcase_add_test(tc, test_key_hex);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(key_suite)
