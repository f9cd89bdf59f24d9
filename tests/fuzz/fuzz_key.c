/* tests/fuzz/fuzz_key.c - libFuzzer harness for cw_key_build() and cw_key_append_header().
 *
 * Build: clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *        tests/fuzz/fuzz_key.c core/key.c core/common.c -o fuzz_key
 * Input: byte 0 picks the query mode, then NUL-separated scheme, host, target, header name,
 * header value. Checks: no crash, the bound holds, building is deterministic, for
 * SORT/LIST/IGNORE the result is idempotent (normalising a normalised key changes nothing),
 * and the query cw_key_forward_query() sends to the origin keys exactly as the whole one. */
#include "core/key.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Takes the next NUL-terminated field (or the rest) from *p. */
static struct cw_str fuzz_key_field(const char **p, const char *end)
{
    const char *nul = memchr(*p, '\0', (size_t)(end - *p));
    struct cw_str s = {*p, (size_t)((nul != NULL ? nul : end) - *p)};

    *p = nul != NULL ? nul + 1 : end;
    return s;
}

/* The target with its query replaced by the forwarded one builds the same key (key, len). */
static void fuzz_key_forward(const struct cw_config_route *route, struct cw_str scheme,
                             struct cw_str host, struct cw_str target, const char *key, size_t len)
{
    static char t2[CW_LIMIT_KEY_BYTES * 2 + 2];
    static char again[CW_LIMIT_KEY_BYTES + 1];
    const char *qmark = target.len > 0 ? memchr(target.p, '?', target.len) : NULL;
    size_t path_len = qmark != NULL ? (size_t)(qmark - target.p) : target.len;
    struct cw_str query = {NULL, 0};
    size_t fwd_len = 0, len2 = 0;
    int rc;

    if (qmark != NULL) query = cw_str_make(qmark + 1, target.len - path_len - 1);
    if (path_len + 1 + query.len > sizeof(t2)) return;
    if (path_len > 0) memcpy(t2, target.p, path_len);
    t2[path_len] = '?';
    rc = cw_key_forward_query(route, query, t2 + path_len + 1, sizeof(t2) - path_len - 1, &fwd_len);
    if (rc != 0 || fwd_len > query.len) abort();
    rc = cw_key_build(route, scheme, host, cw_str_make(t2, path_len + 1 + fwd_len), again,
                      sizeof(again), &len2);
    if (rc != 0 || len2 != len || memcmp(again, key, len) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[CW_LIMIT_KEY_BYTES + 1];
    static char again[CW_LIMIT_KEY_BYTES + 1];
    char *keep[] = {"a", "id", "lang"};
    struct cw_config_route route;
    const char *p = (const char *)data + 1;
    const char *end = (const char *)data + size;
    struct cw_str scheme;
    struct cw_str host;
    struct cw_str target;
    struct cw_str name;
    struct cw_str value;
    size_t len = 0;
    size_t len2 = 0;
    const char *path;
    int rc;
    int rc2;

    if (size < 1) return 0;
    memset(&route, 0, sizeof(route));
    route.query = (enum cw_config_query)(data[0] % 4);
    route.query_keep = keep;
    route.query_keep_count = CW_ARRAY_LEN(keep);
    scheme = fuzz_key_field(&p, end);
    host = fuzz_key_field(&p, end);
    target = fuzz_key_field(&p, end);
    name = fuzz_key_field(&p, end);
    value = fuzz_key_field(&p, end);

    rc = cw_key_build(&route, scheme, host, target, buf, sizeof(buf), &len);
    if (rc != 0 && rc != -EINVAL && rc != -ENOSPC) abort();
    if (rc != 0) return 0;
    if (len > CW_LIMIT_KEY_BYTES) abort();
    rc2 = cw_key_build(&route, scheme, host, target, again, sizeof(again), &len2);
    if (rc2 != 0 || len2 != len || memcmp(buf, again, len) != 0) abort();

    /* Re-normalise the path and query of the result (behind "scheme://host", whose host
     * holds no '/'): the same bytes again. */
    path = len >= scheme.len + 3 ? buf + scheme.len : NULL;
    if (path != NULL && memcmp(path, "://", 3) != 0) abort();
    if (route.query != CW_CONFIG_QUERY_KEEP && path != NULL && target.len > 0 &&
        target.p[0] == '/') {
        const char *slash = memchr(path + 3, '/', len - (size_t)(path + 3 - buf));
        if (slash != NULL) {
            struct cw_str t2 = {slash, len - (size_t)(slash - buf)};
            rc2 = cw_key_build(&route, CW_STR_LIT("x"), cw_str_make(NULL, 0), t2, again,
                               sizeof(again), &len2);
            if (rc2 != 0 || len2 != 4 + t2.len || memcmp(again + 4, t2.p, t2.len) != 0) abort();
        }
    }

    fuzz_key_forward(&route, scheme, host, target, buf, len);

    rc = cw_key_append_header(buf, sizeof(buf), &len, name, value);
    if (rc != 0 && rc != -EINVAL && rc != -ENOSPC) abort();
    if (len > CW_LIMIT_KEY_BYTES) abort();
    return 0;
}
