/* tests/fuzz/fuzz_cc.c - libFuzzer harness for core/cc.c.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_cc.c core/cc.c
 * core/common.c -o fuzz_cc. The input is one Cache-Control value, and the part before the
 * first NUL is also read as a targeted field (RFC 9213); the part after the first NUL, if
 * any, is a name looked up in it as a token list. Traps on a broken invariant. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/cc.h"
#include "core/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_cc_in(struct cw_str s, const char *p, size_t len)
{
    return s.len == 0 || (s.p >= p && s.p + s.len <= p + len);
}

static int fuzz_cc_delta_ok(int64_t v)
{
    return v >= -1 && v <= CW_LIMIT_DELTA_SECONDS;
}

/* The same bytes as an RFC 9213 targeted field: a refused line changes nothing, an accepted
 * one keeps every value in range and borrows only from the input. */
static void fuzz_cc_targeted(const char *p, size_t len)
{
    struct cw_cc cc, before;
    int n;

    cw_cc_init(&cc);
    cc.max_age_s = 5;
    before = cc;
    n = cw_cc_parse_targeted(&cc, p, len);
    if (n < 0 && (n != -EBADMSG || memcmp(&cc, &before, sizeof(cc)) != 0)) __builtin_trap();
    if (n == 0 && memcmp(&cc, &before, sizeof(cc)) != 0) __builtin_trap();
    if (!fuzz_cc_delta_ok(cc.max_age_s) || !fuzz_cc_delta_ok(cc.s_maxage_s) ||
        !fuzz_cc_delta_ok(cc.swr_s) || !fuzz_cc_delta_ok(cc.sie_s)) {
        __builtin_trap();
    }
    if (!fuzz_cc_in(cc.no_cache_fields, p, len) || !fuzz_cc_in(cc.private_fields, p, len)) {
        __builtin_trap();
    }
    if (((cc.flags & CW_CC_NO_CACHE_FIELDS) != 0) != (cc.no_cache_fields.len != 0)) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    const char *nul = memchr(p, '\0', size);
    size_t cc_len = nul ? (size_t)(nul - p) : size;
    struct cw_cc cc;

    cw_cc_init(&cc);
    cw_cc_parse(&cc, p, cc_len);
    cw_cc_parse(&cc, p, size);
    if (!fuzz_cc_delta_ok(cc.max_age_s) || !fuzz_cc_delta_ok(cc.s_maxage_s) ||
        !fuzz_cc_delta_ok(cc.max_stale_s) || !fuzz_cc_delta_ok(cc.min_fresh_s) ||
        !fuzz_cc_delta_ok(cc.swr_s) || !fuzz_cc_delta_ok(cc.sie_s)) {
        __builtin_trap();
    }
    if (cc.flags >= (CW_CC_MAX_STALE_ANY << 1)) __builtin_trap();
    if (!fuzz_cc_in(cc.no_cache_fields, p, size) || !fuzz_cc_in(cc.private_fields, p, size)) {
        __builtin_trap();
    }
    if (((cc.flags & CW_CC_NO_CACHE_FIELDS) != 0) != (cc.no_cache_fields.len != 0)) {
        __builtin_trap();
    }
    if (((cc.flags & CW_CC_PRIVATE_FIELDS) != 0) != (cc.private_fields.len != 0)) {
        __builtin_trap();
    }
    fuzz_cc_targeted(p, cc_len);
    if (nul != NULL) {
        struct cw_str name = cw_str_make(nul + 1, size - cc_len - 1);
        (void)cw_cc_list_has(cw_str_make(p, cc_len), name);
        (void)cw_cc_is_hop_by_hop(name);
    }
    return 0;
}
