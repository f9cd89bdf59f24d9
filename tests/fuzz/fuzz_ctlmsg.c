/* tests/fuzz/fuzz_ctlmsg.c - libFuzzer harness for core/ctlmsg.c.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -I. tests/fuzz/fuzz_ctlmsg.c core/ctlmsg.c
 * core/common.c -o fuzz_ctlmsg. The input is a control request line: it is parsed, every
 * token is read as a string, an integer and a number, the members a request has are looked
 * up, and every string is written back and must parse to the same bytes. The input is also
 * checked as a purge URL. Traps on a broken invariant. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/ctlmsg.h"
#include "core/limits.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CTLMSG_TOKENS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cw_ctlmsg_tok tok[FUZZ_CTLMSG_TOKENS], back_tok[4];
    static char str[CW_LIMIT_CTL_LINE_BYTES], out[4 * CW_LIMIT_CTL_LINE_BYTES + 8];
    const char *p = (const char *)data;
    struct cw_str host, target;
    size_t n, len, m;
    int64_t v;

    if (cw_ctlmsg_split_url(cw_str_make(p, size), &host, &target) == 0 &&
        (host.len == 0 || target.len == 0 || target.p[0] != '/'))
        __builtin_trap();
    if (size > CW_LIMIT_CTL_LINE_BYTES || cw_ctlmsg_parse(p, size, tok, FUZZ_CTLMSG_TOKENS, &n) < 0)
        return 0;
    if (n == 0 || tok[0].next != n) __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        if (tok[i].start > tok[i].end || tok[i].end > size || tok[i].next <= i || tok[i].next > n)
            __builtin_trap();
        (void)cw_ctlmsg_int(p, tok, i, &v);
        (void)cw_ctlmsg_num(p, tok, i);
        if (cw_ctlmsg_str(p, tok, i, str, sizeof(str), &len) != 0) continue;
        /* What the writer escapes reads back the same. */
        struct cw_ctlmsg_buf b = {out, 0, sizeof(out), false};
        cw_ctlmsg_put_str(&b, str, len);
        if (b.overflow || cw_ctlmsg_parse(out, b.len, back_tok, 4, &m) != 0) __builtin_trap();
        static char again[CW_LIMIT_CTL_LINE_BYTES];
        size_t len2;
        if (cw_ctlmsg_str(out, back_tok, 0, again, sizeof(again), &len2) != 0 || len2 != len ||
            memcmp(again, str, len) != 0)
            __builtin_trap();
    }
    (void)cw_ctlmsg_get_int(p, tok, 0, "v", -1);
    (void)cw_ctlmsg_get_bool(p, tok, 0, "soft", false);
    (void)cw_ctlmsg_get_str(p, tok, 0, "cmd", str, 32, NULL);
    return 0;
}
