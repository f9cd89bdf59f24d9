/* tests/fuzz/fuzz_fleetmsg.c - libFuzzer harness for core/fleetmsg.c and core/ban.c.
 *
 * Build: `make fuzz` (clang -fsanitize=fuzzer,address,undefined with core/fleetmsg.c,
 * core/ban.c and core/common.c). The input is a fleet purge message: what decodes must stay
 * inside the input, and a version 2 message encodes back to the same bytes; it is also
 * matched as a ban against a key made of its own bytes, and read as a purge log batch. Traps on a
 * broken invariant. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/ban.h"
#include "core/entry.h"
#include "core/fleetmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_inside(struct cw_str s, const char *p, size_t size)
{
    return s.len == 0 || (s.p >= p && s.p + s.len <= p + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[CW_FLEETMSG_BYTES];
    const char *p = (const char *)data;
    struct cw_fleetmsg m;
    struct cw_entry_hdr h = {.fresh_until_ms = 100, .swr_until_ms = 200, .sie_until_ms = 300};
    struct cw_str rec = cw_str_make(p, size);
    int64_t soft_at = 0;
    size_t len, bad = 0;

    /* As a purge log read: every entry inside the input, the walk ends. */
    struct cw_fleetmsg_log log;
    struct cw_str id, msg;
    if (cw_fleetmsg_log_open(p, size, &log) == 0) {
        int rc;
        if (!fuzz_inside(log.last_id, p, size) || !fuzz_inside(log.rest, p, size)) __builtin_trap();
        for (size_t i = 0; (rc = cw_fleetmsg_log_next(&log, &id, &msg)) == 1; i++) {
            if (i >= size || !fuzz_inside(id, p, size) || !fuzz_inside(msg, p, size))
                __builtin_trap();
            (void)cw_fleetmsg_log_cmp(id, log.last_id);
        }
    }
    if (cw_fleetmsg_decode(p, size, &m) != 0) {
        if (cw_ban_check(&rec, 1, cw_str_make(p, size), 0, &soft_at, &bad) != CW_BAN_NONE ||
            bad != 1)
            __builtin_trap();
        return 0;
    }
    if (!fuzz_inside(m.id, p, size) || !fuzz_inside(m.node, p, size) ||
        !fuzz_inside(m.value, p, size) || m.node.len >= m.id.len || m.value.len == 0 ||
        m.kind >= CW_FLEETMSG_KIND_COUNT || m.time_ms < 0)
        __builtin_trap();
    if (cw_fleetmsg_encode(&m, buf, sizeof(buf), &len) != 0) __builtin_trap();
    if (p[7] == '2' && (len != size || memcmp(buf, p, size) != 0)) __builtin_trap();
    enum cw_ban_result r = cw_ban_match(&m, cw_str_make(p, size), m.time_ms);
    if (r != CW_BAN_NONE && (m.kind != CW_FLEETMSG_BAN || m.value.len > size)) __builtin_trap();
    if (r == CW_BAN_SOFT) {
        cw_ban_soften(&h, m.time_ms);
        if (h.fresh_until_ms > 100 || h.swr_until_ms < h.fresh_until_ms) __builtin_trap();
    }
    return 0;
}
