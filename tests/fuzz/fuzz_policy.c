/* tests/fuzz/fuzz_policy.c - libFuzzer harness for core/policy.c.
 *
 * Build: make fuzz (clang -fsanitize=fuzzer,address,undefined, with core/policy.c and the core
 * sources it needs). The first 48 bytes become the status, the route, the request's facts, the
 * times and the adaptive history; the rest is "Name: value" lines, the origin's head, then
 * after a blank line the stored entry's head (the prev a 304 merges into, present when bit 0 of
 * byte 3 is set). Both steps run; the harness traps on a broken invariant: the detail is set
 * exactly when nothing is stored; nothing is stored when the directives this cache obeys (a
 * valid targeted field's, else Cache-Control's) say no-store (without must-understand) or
 * private, nor for a method other than GET/HEAD, nor a known body over max_object; the windows
 * are ordered and empty under must-revalidate or no-cache; kept headers carry no hop-by-hop
 * field, Content-Length or internal name and fit an entry; Vary names and tags stay in their
 * bounds; a 5xx never leaves a hit-for-miss record; an adaptive TTL stays in its bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_POLICY_CTRL 48
#define FUZZ_POLICY_MAX  (CW_LIMIT_HEADER_COUNT + 20)

static const char *const fuzz_policy_targets[] = {"CacheWarp-Cache-Control", "CDN-Cache-Control"};

static int64_t fuzz_policy_i64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return (int64_t)v;
}

static int32_t fuzz_policy_i32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return (int32_t)v;
}

/* Splits "Name: value" lines up to a blank line: the count; *rest is past the blank line. */
static size_t fuzz_policy_lines(const char *p, size_t len, struct cw_entry_header *h, size_t cap,
                                const char **rest, size_t *rest_len)
{
    size_t n = 0;

    *rest = NULL;
    *rest_len = 0;
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t line = nl ? (size_t)(nl - p) : len;
        const char *colon = memchr(p, ':', line);

        if (line == 0) {
            *rest = p + 1;
            *rest_len = len - 1;
            return n;
        }
        if (colon != NULL && colon != p && n < cap) {
            h[n].name = cw_str_make(p, (size_t)(colon - p));
            h[n++].value = cw_str_make(colon + 1, line - (size_t)(colon - p) - 1);
        }
        if (nl == NULL) break;
        p += line + 1;
        len -= line + 1;
    }
    return n;
}

static void fuzz_policy_check_kept(const struct cw_policy *out)
{
    if (out->n > CW_LIMIT_HEADER_COUNT) __builtin_trap();
    for (size_t i = 0; i < out->n; i++) {
        struct cw_str name = out->hdrs[i].name;
        if (cw_cc_is_hop_by_hop(name)) __builtin_trap();
        if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length"))) __builtin_trap();
        if (name.len > 0 && name.p[0] == ':') __builtin_trap();
    }
    if (out->vary_len >= sizeof(out->vary)) __builtin_trap();
    for (size_t i = 0; i < out->vary_len; i++) {
        char c = out->vary[i];
        if (c == ' ' || c == '\t' || (c >= 'A' && c <= 'Z')) __builtin_trap();
    }
    if (out->tag_count > CW_LIMIT_TAGS) __builtin_trap();
    for (size_t i = 0; i < out->tag_count; i++) {
        struct cw_str t = out->tags[i];
        if (t.len == 0 || t.len > CW_LIMIT_TAG_BYTES) __builtin_trap();
        if (memchr(t.p, ' ', t.len) || memchr(t.p, '\t', t.len)) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cw_policy out;
    struct cw_entry_header h[FUZZ_POLICY_MAX], ph[CW_LIMIT_HEADER_COUNT];
    struct cw_config_route rt;
    struct cw_policy_in in;
    struct cw_policy_prev prev;
    struct cw_fresh_resp fr;
    const struct cw_cc *cc;
    const char *rest;
    size_t rest_len, unused_len;
    const char *unused;
    uint8_t bits, bits2;
    int64_t body_len;

    if (size < FUZZ_POLICY_CTRL) return 0;
    bits = data[2];
    bits2 = data[3];
    memset(&rt, 0, sizeof(rt));
    rt.adaptive = bits & 1;
    rt.override = bits & 2;
    rt.strip_set_cookie = bits & 4;
    rt.cookies = (enum cw_config_cookies)((bits >> 3) % 3);
    rt.ttl_ms = fuzz_policy_i32(data + 4);
    rt.swr_ms = (int16_t)(data[8] | data[9] << 8) * 1000;
    rt.sie_ms = (int16_t)(data[10] | data[11] << 8) * 1000;
    rt.min_ttl_ms = fuzz_policy_i32(data + 12);
    rt.max_ttl_ms = fuzz_policy_i32(data + 16);
    rt.stale_target = (double)data[20] / 256.0;

    memset(&in, 0, sizeof(in));
    in.status = (int)(data[0] | data[1] << 8) % 1000;
    in.rt = &rt;
    in.targets = fuzz_policy_targets;
    in.target_count = (bits & 32) ? 0 : 2;
    in.max_object_bytes = (uint64_t)(data[21] | data[22] << 8);
    in.method_is_get_or_head = !(bits & 64);
    in.req_has_authorization = bits2 & 2;
    in.req_has_cookie = bits2 & 4;
    in.req_no_store = bits2 & 8;
    in.response_time_ms = fuzz_policy_i64(data + 24);
    /* Usually a plausible delay; sometimes any request time and now at all. */
    if (__builtin_sub_overflow(in.response_time_ms, (int64_t)data[23], &in.request_time_ms) ||
        __builtin_add_overflow(in.response_time_ms, (int64_t)data[32], &in.now_ms) ||
        (bits & 128)) {
        in.request_time_ms = fuzz_policy_i64(data + 33) ^ in.response_time_ms;
        in.now_ms = fuzz_policy_i64(data + 40) ^ in.response_time_ms;
    }
    body_len = (bits2 & 16) ? -1 : (int64_t)(data[41] | data[42] << 8);
    in.body_len = body_len;
    in.hdrs = h;
    in.n = fuzz_policy_lines((const char *)data + FUZZ_POLICY_CTRL, size - FUZZ_POLICY_CTRL, h,
                             FUZZ_POLICY_MAX, &rest, &rest_len);
    if (bits2 & 1) {
        memset(&prev, 0, sizeof(prev));
        prev.status = 200 + data[43] % 3;
        prev.hdrs = ph;
        prev.n = rest != NULL
                     ? fuzz_policy_lines(rest, rest_len, ph, CW_ARRAY_LEN(ph), &unused, &unused_len)
                     : 0;
        prev.st.ttl_ms = fuzz_policy_i32(data + 44);
        prev.st.checks = data[45];
        prev.st.changes = data[46];
        prev.st.last_check_ms = in.now_ms ^ data[47];
        if (data[47] & 1) memcpy(prev.etag, "\"x\"", 4);
        in.prev = &prev;
    }

    cw_policy_decide(&in, &out);
    if (out.store != (out.detail == NULL)) __builtin_trap();
    if (out.store) fuzz_policy_check_kept(&out);
    cw_policy_finish(&in, body_len, (uint64_t)fuzz_policy_i64(data + 24), &out);
    if (out.store != (out.detail == NULL)) __builtin_trap();
    if (out.store && out.hit_for_miss) __builtin_trap();
    if (!in.method_is_get_or_head && out.store) __builtin_trap();
    if (in.status == 304 && in.prev == NULL && (out.store || out.hit_for_miss)) __builtin_trap();
    if (in.status >= 500 && !out.store && out.hit_for_miss) __builtin_trap();

    /* The directives this cache obeys, read as the policy reads them (not for a 304, whose
     * fields are merged with prev's). */
    if (in.status != 304) {
        cw_fresh_resp_init(&fr, in.status);
        cw_fresh_resp_set_targets(&fr, in.targets, in.target_count);
        for (size_t i = 0; i < in.n; i++)
            cw_fresh_add_header(&fr, h[i].name, h[i].value);
        cc = cw_fresh_resp_cc(&fr);
        if (out.store && (cc->flags & CW_CC_PRIVATE)) __builtin_trap();
        if (out.store && (cc->flags & CW_CC_NO_STORE) && !(cc->flags & CW_CC_MUST_UNDERSTAND))
            __builtin_trap();
        if (out.store && body_len >= 0 && (uint64_t)body_len > in.max_object_bytes)
            __builtin_trap();
    }
    if (!out.store) return 0;
    fuzz_policy_check_kept(&out);
    if (out.h.swr_until_ms < out.h.fresh_until_ms || out.h.sie_until_ms < out.h.fresh_until_ms)
        __builtin_trap();
    if ((out.h.flags & (CW_ENTRY_MUST_REVALIDATE | CW_ENTRY_ALWAYS_REVALIDATE)) &&
        (out.h.swr_until_ms != out.h.fresh_until_ms || out.h.sie_until_ms != out.h.fresh_until_ms))
        __builtin_trap();
    if (out.h.corrected_initial_age_ms < 0 || out.fresh.lifetime_ms < 0) __builtin_trap();
    if (out.adaptive) {
        int64_t lo = rt.min_ttl_ms < 1 ? 1 : rt.min_ttl_ms;
        int64_t hi = rt.max_ttl_ms < lo ? lo : rt.max_ttl_ms;
        if (out.h.ttl_ms < lo || out.h.ttl_ms > hi) __builtin_trap();
    }
    return 0;
}
