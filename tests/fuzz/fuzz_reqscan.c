/* tests/fuzz/fuzz_reqscan.c - libFuzzer harness for core/reqscan.c.
 *
 * Build: clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -fsanitize=fuzzer,address,undefined \
 *        tests/fuzz/fuzz_reqscan.c core/reqscan.c -o fuzz_reqscan
 * Input: byte 0 picks a split point, the rest is a client's byte stream. The stream is fed
 * whole, in two pieces cut at that point, and byte by byte; the verdicts (return, status,
 * reason, pos, req_start, requests, in_head) must be identical. Also checked: the status is
 * one the API names, pos and req_start stay in range, and on error the bytes before
 * req_start scan clean on their own and end between requests. Traps on any difference. */
#include "core/reqscan.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_reqscan_split(struct cw_reqscan *s, const char *p, size_t len, size_t at)
{
    int rc;

    cw_reqscan_init(s);
    rc = cw_reqscan_feed(s, p, at);
    if (rc == 0) rc = cw_reqscan_feed(s, p + at, len - at);
    return rc;
}

static int fuzz_reqscan_bytewise(struct cw_reqscan *s, const char *p, size_t len)
{
    int rc = 0;

    cw_reqscan_init(s);
    for (size_t i = 0; i < len && rc == 0; i++) {
        rc = cw_reqscan_feed(s, p + i, 1);
    }
    return rc;
}

static void fuzz_reqscan_same(const struct cw_reqscan *a, int rc_a, const struct cw_reqscan *b,
                              int rc_b)
{
    if (rc_a != rc_b || a->status != b->status || a->reason != b->reason || a->pos != b->pos ||
        a->req_start != b->req_start || a->requests != b->requests || a->in_head != b->in_head ||
        cw_reqscan_is_idle(a) != cw_reqscan_is_idle(b)) {
        __builtin_trap();
    }
}

static void fuzz_reqscan_sane(const struct cw_reqscan *s, int rc, size_t len)
{
    if (rc != 0 && rc != -EBADMSG) __builtin_trap();
    if ((rc == 0) != (s->status == 0) || (s->status == 0) != (s->reason == NULL)) {
        __builtin_trap();
    }
    if (s->status != 0 && s->status != 400 && s->status != 414 && s->status != 431 &&
        s->status != 501 && s->status != 505) {
        __builtin_trap();
    }
    if (s->req_start > s->pos || s->pos > len) __builtin_trap();
    if (rc == 0 && s->pos != len) __builtin_trap();
    if (rc != 0 && s->pos >= len) __builtin_trap();
    if (cw_reqscan_is_idle(s) && s->in_head) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cw_reqscan whole;
    struct cw_reqscan split;
    struct cw_reqscan bytes;
    struct cw_reqscan prefix;
    const char *p;
    size_t len;
    size_t at;
    int rc;

    if (size == 0) return 0;
    p = (const char *)data + 1;
    len = size - 1;
    at = (size_t)data[0] * len / 255;

    rc = fuzz_reqscan_split(&whole, p, len, len);
    fuzz_reqscan_sane(&whole, rc, len);
    fuzz_reqscan_same(&whole, rc, &split, fuzz_reqscan_split(&split, p, len, at));
    fuzz_reqscan_same(&whole, rc, &bytes, fuzz_reqscan_bytewise(&bytes, p, len));
    if (rc != 0) {
        /* The caller delivers the bytes before req_start: they must be whole requests. */
        if (fuzz_reqscan_split(&prefix, p, (size_t)whole.req_start, 0) != 0) __builtin_trap();
        if (!cw_reqscan_is_idle(&prefix) || prefix.requests > whole.requests) __builtin_trap();
        if (whole.requests - prefix.requests > 1) __builtin_trap();
    }
    return 0;
}
