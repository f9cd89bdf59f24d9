/* tests/fuzz/fuzz_path.c - libFuzzer harness for cw_path_normalize() and
 * cw_path_split_absolute().
 *
 * Build: make build/fuzz/fuzz_path (clang, libFuzzer+ASan+UBSan; core/path.c core/common.c).
 * Input: the whole input is the path, and also the absolute-form target. Checks, aborting
 * otherwise: only 0, -EINVAL or -ENOSPC; the output starts with '/', is no longer than the
 * input, holds no "." or ".." segment (neither "/./" nor "/../" inside, nor "/." or "/.."
 * at the end), no lower-case escape and no escape of an unreserved byte; normalising it again
 * gives it unchanged; it fits in exactly its length and not in one byte less. The split
 * parts lie in the target, one after the other, and rest is empty or starts with '/' or '?'. */
#include "core/path.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool fuzz_path_has(const char *p, size_t n, const char *what)
{
    size_t w = strlen(what);

    for (size_t i = 0; i + w <= n; i++) {
        if (memcmp(p + i, what, w) == 0) return true;
    }
    return false;
}

static bool fuzz_path_ends(const char *p, size_t n, const char *what)
{
    size_t w = strlen(what);

    return n >= w && memcmp(p + n - w, what, w) == 0;
}

static void fuzz_path_check_escapes(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char hi, lo;
        int c;
        if (p[i] != '%') continue;
        if (n - i < 3) abort();
        hi = (unsigned char)p[i + 1];
        lo = (unsigned char)p[i + 2];
        if (!((hi >= '0' && hi <= '9') || (hi >= 'A' && hi <= 'F'))) abort();
        if (!((lo >= '0' && lo <= '9') || (lo >= 'A' && lo <= 'F'))) abort();
        c = (hi <= '9' ? hi - '0' : hi - 'A' + 10) * 16 + (lo <= '9' ? lo - '0' : lo - 'A' + 10);
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || c == 0) {
            abort();
        }
        i += 2;
    }
}

static void fuzz_path_normalize(const char *in, size_t size)
{
    static char out[65536 + 16];
    static char again[65536 + 16];
    size_t len = 0, len2 = 0;
    int rc = cw_path_normalize(in, size, out, sizeof(out), &len);
    bool normal = cw_path_is_normal(in, size);

    if (rc != 0 && rc != -EINVAL) abort(); /* out holds any input: never -ENOSPC here */
    if (normal && (rc != 0 || len != size || memcmp(out, in, size) != 0)) abort();
    if (rc != 0) return;
    if (len == 0 || len > size || out[0] != '/') abort();
    if (fuzz_path_has(out, len, "/./") || fuzz_path_has(out, len, "/../")) abort();
    if (fuzz_path_ends(out, len, "/.") || fuzz_path_ends(out, len, "/..")) abort();
    fuzz_path_check_escapes(out, len);

    rc = cw_path_normalize(out, len, again, sizeof(again), &len2);
    if (rc != 0 || len2 != len || memcmp(out, again, len) != 0) abort();
    rc = cw_path_normalize(in, size, again, len, &len2);
    if (rc != 0 || len2 != len || memcmp(out, again, len) != 0) abort();
    rc = cw_path_normalize(in, size, again, len - 1, &len2);
    if (rc != -ENOSPC) abort();
}

static void fuzz_path_split(const char *in, size_t size)
{
    struct cw_str target = {in, size};
    struct cw_str scheme, auth, rest;
    int rc = cw_path_split_absolute(target, &scheme, &auth, &rest);

    if (rc != 0 && rc != -EINVAL) abort();
    if (rc != 0) return;
    if (scheme.p != in || scheme.len < 4 || scheme.len > 5) abort();
    if (auth.p != in + scheme.len + 3 || auth.len == 0) abort();
    if (rest.p != auth.p + auth.len || rest.p + rest.len != in + size) abort();
    if (memchr(auth.p, '@', auth.len) != NULL || memchr(auth.p, '/', auth.len) != NULL) abort();
    if (rest.len > 0 && rest.p[0] != '/' && rest.p[0] != '?') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;

    if (size > 65536) return 0;
    fuzz_path_normalize(in, size);
    fuzz_path_split(in, size);
    return 0;
}
