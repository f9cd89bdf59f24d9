/* tests/fuzz/fuzz_cond.c - libFuzzer harness for core/cond.c.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_cond.c core/cond.c
 * core/fresh.c core/cc.c core/common.c -o fuzz_cond. The first 16 bytes choose a length, a
 * status and flags; the rest is split on '\n' into fields that feed every entry point: the
 * precondition fields and stored validators, Range and If-Range, a request Cache-Control,
 * a Location and Host, and "Name: value" lines for both sides of a 304 merge. Traps on a
 * broken invariant. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/cc.h"
#include "core/cond.h"
#include "core/entry.h"
#include "core/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_COND_FIELDS 10
#define FUZZ_COND_LINES  (CW_LIMIT_HEADER_COUNT + 8)

static uint64_t fuzz_cond_u64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Splits p on '\n' into at most n fields; the last takes the rest. Missing ones are absent. */
static void fuzz_cond_split(const char *p, size_t len, struct cw_str *f, size_t n)
{
    bool done = false;

    for (size_t i = 0; i < n; i++) {
        const char *nl = i + 1 < n ? memchr(p, '\n', len) : NULL;
        size_t k = nl ? (size_t)(nl - p) : len;

        if (done) {
            f[i] = cw_str_make(NULL, 0);
            continue;
        }
        f[i] = cw_str_make(p, k);
        if (nl == NULL) {
            done = true;
            continue;
        }
        p += k + 1;
        len -= k + 1;
    }
}

/* Reads "Name: value" lines separated by '\r' into h; returns how many. */
static size_t fuzz_cond_lines(struct cw_str s, struct cw_entry_header *h, size_t cap)
{
    size_t n = 0;
    const char *p = s.p;
    size_t len = s.len;

    while (len > 0 && n < cap) {
        const char *cr = memchr(p, '\r', len);
        size_t line = cr ? (size_t)(cr - p) : len;
        const char *colon = memchr(p, ':', line);

        h[n].name = cw_str_make(p, colon ? (size_t)(colon - p) : line);
        h[n].value = colon ? cw_str_make(colon + 1, line - (size_t)(colon - p) - 1)
                           : cw_str_make(p + line, 0);
        n++;
        if (cr == NULL) break;
        p += line + 1;
        len -= line + 1;
    }
    return n;
}

static void fuzz_cond_range(struct cw_str value, struct cw_str if_range,
                            const struct cw_cond_validators *v, uint64_t length)
{
    uint64_t first = 7, last = 9;
    int rc = cw_cond_range_parse(value, length, &first, &last);

    if (rc == 0 && (first > last || last >= length)) __builtin_trap();
    if (rc != 0 && (first != 7 || last != 9)) __builtin_trap();
    if (rc != 0 && rc != -ERANGE && rc != -E2BIG && rc != -EINVAL) __builtin_trap();
    if (rc == 0 && length == 0) __builtin_trap();
    (void)cw_cond_if_range_ok(if_range, v);
}

static void fuzz_cond_merge(struct cw_str a, struct cw_str b, size_t cap)
{
    static struct cw_entry_header stored[FUZZ_COND_LINES], fresh[FUZZ_COND_LINES];
    static struct cw_entry_header out[2 * FUZZ_COND_LINES];
    size_t ns = fuzz_cond_lines(a, stored, CW_LIMIT_HEADER_COUNT);
    size_t nf = fuzz_cond_lines(b, fresh, FUZZ_COND_LINES);
    size_t n, kept = 0;

    if (cap > CW_ARRAY_LEN(out)) cap = CW_ARRAY_LEN(out);
    n = cw_cond_merge_304(stored, ns, fresh, nf, out, cap);
    if (n > cap) __builtin_trap();
    if (cap < ns) {
        if (n != 0) __builtin_trap();
        return;
    }
    /* Every stored line is either still there (same pointers) or its name was replaced by
     * lines from the 304. */
    for (size_t i = 0; i < ns; i++) {
        bool found = false, named = false;
        for (size_t j = 0; j < n; j++) {
            if (out[j].name.p == stored[i].name.p && out[j].value.p == stored[i].value.p) {
                found = true;
            }
            if (cw_str_eq_ci(out[j].name, stored[i].name)) named = true;
        }
        if (!named) __builtin_trap();
        kept += found;
    }
    if (n < kept) __builtin_trap();
    for (size_t j = 0; j < n; j++) {
        if (cw_str_eq_ci(out[j].name, CW_STR_LIT("Content-Length")) ||
            cw_str_eq_ci(out[j].name, CW_STR_LIT("Set-Cookie")) ||
            cw_cc_is_hop_by_hop(out[j].name)) {
            bool from_stored = false;
            for (size_t i = 0; i < ns; i++)
                from_stored |= out[j].name.p == stored[i].name.p;
            if (!from_stored) __builtin_trap();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cw_str f[FUZZ_COND_FIELDS], path;
    struct cw_cond_validators v;
    struct cw_cond_req req;
    struct cw_cc cc;
    enum cw_cond_result res;
    enum cw_cond_use use;
    uint8_t bits;

    if (size < 16) return 0;
    bits = data[8];
    fuzz_cond_split((const char *)data + 16, size - 16, f, FUZZ_COND_FIELDS);

    /* Entity-tags compare symmetrically, and a strong match is also a weak one. */
    if (cw_cond_etag_eq(f[0], f[1], false) != cw_cond_etag_eq(f[1], f[0], false)) {
        __builtin_trap();
    }
    if (cw_cond_etag_eq(f[0], f[1], true) != cw_cond_etag_eq(f[1], f[0], true)) __builtin_trap();
    if (cw_cond_etag_eq(f[0], f[1], false) && !cw_cond_etag_eq(f[0], f[1], true)) {
        __builtin_trap();
    }

    cw_cond_validators_init(&v, f[0], f[2], f[3], (int64_t)fuzz_cond_u64(data));
    req.if_match = (bits & 1) ? f[1] : cw_str_make(NULL, 0);
    req.if_none_match = (bits & 2) ? f[1] : cw_str_make(NULL, 0);
    req.if_modified_since = (bits & 4) ? f[3] : cw_str_make(NULL, 0);
    req.if_unmodified_since = (bits & 8) ? f[2] : cw_str_make(NULL, 0);
    res = cw_cond_evaluate(&req, &v, 100 + data[9] * 2, bits & 16);
    if (res != CW_COND_NONE && res != CW_COND_NOT_MODIFIED && res != CW_COND_PRECONDITION_FAILED) {
        __builtin_trap();
    }
    if (!(bits & 16) && res == CW_COND_NOT_MODIFIED) __builtin_trap();

    fuzz_cond_range(f[4], (bits & 32) ? f[5] : cw_str_make(NULL, 0), &v,
                    (bits & 64) ? fuzz_cond_u64(data) : data[10]);

    cw_cc_init(&cc);
    cw_cc_parse(&cc, f[6].p, f[6].len);
    use = cw_cond_request_use(&cc, bits & 128, data[11] & 1, (int64_t)fuzz_cond_u64(data),
                              (int64_t)(int32_t)(data[12] | data[13] << 8 | data[14] << 16),
                              data[11] & 2, data[11] & 4);
    if ((data[11] & 4) && use != CW_COND_USE_REVALIDATE) __builtin_trap();

    if (cw_cond_same_origin(f[7], f[5], &path)) {
        if (path.len == 0 || path.p[0] != '/') __builtin_trap();
        if (memchr(path.p, '#', path.len) != NULL) __builtin_trap();
    }

    fuzz_cond_merge(f[8], f[9], data[15]);
    return 0;
}
