/* tests/fuzz/fuzz_fresh.c - libFuzzer harness for core/fresh.c.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_fresh.c core/fresh.c
 * core/cc.c core/common.c -o fuzz_fresh. The whole input is tried as an HTTP-date (and a
 * parsed date must survive a format/parse round trip); then its first 32 bytes become the
 * status and policy and the rest "Name: value" lines fed to cw_fresh_add_header(), with the
 * default RFC 9213 target list (CacheWarp-Cache-Control, CDN-Cache-Control) unless bit 7 of
 * the second byte clears it. Traps on a broken invariant. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/fresh.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FRESH_MAX_DATE_S 253402300799LL

static const char *const fuzz_fresh_targets[] = {"CacheWarp-Cache-Control", "CDN-Cache-Control"};

static int64_t fuzz_fresh_i64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return (int64_t)v;
}

static void fuzz_fresh_date(const char *p, size_t size)
{
    int64_t t, t2;
    char buf[30];

    if (cw_fresh_parse_date(p, size, &t) == 0 && t >= 0 && t <= FUZZ_FRESH_MAX_DATE_S) {
        if (cw_fresh_format_date(t, buf) != 29 || buf[29] != '\0') __builtin_trap();
        if (cw_fresh_parse_date(buf, 29, &t2) != 0) __builtin_trap();
        /* A leap second (:60) comes back as the next minute's :00, same instant. */
        if (t2 != t) __builtin_trap();
    }
    if (size >= 8)
        (void)cw_fresh_parse_date_at(p + 8, size - 8, fuzz_fresh_i64((const uint8_t *)p), &t);
}

static void fuzz_fresh_headers(struct cw_fresh_resp *r, const char *p, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t line = nl ? (size_t)(nl - p) : len;
        const char *colon = memchr(p, ':', line);

        if (colon != NULL) {
            cw_fresh_add_header(r, cw_str_make(p, (size_t)(colon - p)),
                                cw_str_make(colon + 1, line - (size_t)(colon - p) - 1));
        }
        if (nl == NULL) break;
        p += line + 1;
        len -= line + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cw_fresh_policy pol;
    struct cw_fresh_resp r;
    struct cw_fresh_result out;
    uint8_t bits;
    int target;

    fuzz_fresh_date((const char *)data, size);
    if (size < 32) return 0;

    bits = data[2];
    memset(&pol, 0, sizeof(pol));
    pol.method_is_get_or_head = bits & 1;
    pol.req_has_authorization = bits & 2;
    pol.req_no_store = bits & 4;
    pol.override = bits & 8;
    pol.strip_set_cookie = bits & 16;
    pol.route_ttl_ms = (int32_t)fuzz_fresh_i64(data + 3);
    pol.route_swr_ms = (int16_t)(data[11] | data[12] << 8) * 1000;
    pol.route_sie_ms = (int16_t)(data[13] | data[14] << 8) * 1000;
    pol.max_ttl_ms = (bits & 32) ? (int32_t)((uint32_t)data[15] << 16) : 0;
    pol.response_time_ms = fuzz_fresh_i64(data + 16);
    /* Usually a plausible delay of up to 255 ms; sometimes any request time at all. */
    if ((bits & 64) ||
        __builtin_sub_overflow(pol.response_time_ms, (int64_t)data[24], &pol.request_time_ms)) {
        pol.request_time_ms = fuzz_fresh_i64(data + 24);
    }

    cw_fresh_resp_init(&r, (int)(data[0] | data[1] << 8) % 1000);
    if (bits & 128) r.date_ref_s = fuzz_fresh_i64(data + 24);
    /* The default target list unless the status's high byte says none. */
    cw_fresh_resp_set_targets(&r, fuzz_fresh_targets, data[1] & 0x80 ? 0 : 2);
    fuzz_fresh_headers(&r, (const char *)data + 32, size - 32);
    cw_fresh_evaluate(&r, &pol, &out);

    if (out.storable != (out.why_not == NULL)) __builtin_trap();
    if (out.lifetime_ms < 0 || out.corrected_initial_age_ms < 0) __builtin_trap();
    if (out.swr_until_ms < out.fresh_until_ms || out.sie_until_ms < out.fresh_until_ms) {
        __builtin_trap();
    }
    if (out.must_revalidate && out.swr_until_ms != out.fresh_until_ms) __builtin_trap();
    if (r.has_content_length && r.content_length_bad) __builtin_trap();
    target = cw_fresh_resp_target(&r);
    if (target >= (int)r.target_count || target < -1) __builtin_trap();
    if ((target >= 0) != (cw_fresh_resp_cc(&r) != &r.cc)) __builtin_trap();
    if (r.age_s >= 0 && !r.age_seen) __builtin_trap();
    if (cw_fresh_age_ms(out.corrected_initial_age_ms, pol.response_time_ms,
                        fuzz_fresh_i64(data + 24)) < out.corrected_initial_age_ms) {
        __builtin_trap();
    }
    return 0;
}
