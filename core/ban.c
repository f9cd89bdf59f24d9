/* core/ban.c - ban records against entries; see core/ban.h. */
#include "core/ban.h"

#include <string.h>

#include "core/entry.h"
#include "core/fleetmsg.h"

enum cw_ban_result cw_ban_match(const struct cw_fleetmsg *ban, struct cw_str key,
                                int64_t stored_at_ms)
{
    if (ban->kind != CW_FLEETMSG_BAN || stored_at_ms > ban->time_ms) return CW_BAN_NONE;
    if (ban->value.len > key.len || memcmp(ban->value.p, key.p, ban->value.len) != 0)
        return CW_BAN_NONE;
    return ban->soft ? CW_BAN_SOFT : CW_BAN_HARD;
}

enum cw_ban_result cw_ban_check(const struct cw_str *records, size_t n, struct cw_str key,
                                int64_t stored_at_ms, int64_t *soft_at_ms, size_t *bad)
{
    enum cw_ban_result res = CW_BAN_NONE;
    struct cw_fleetmsg m;

    for (size_t i = 0; i < n && res != CW_BAN_HARD; i++) {
        if (cw_fleetmsg_decode(records[i].p, records[i].len, &m) < 0) {
            if (bad != NULL) (*bad)++;
            continue;
        }
        switch (cw_ban_match(&m, key, stored_at_ms)) {
        case CW_BAN_HARD:
            res = CW_BAN_HARD;
            break;
        case CW_BAN_SOFT:
            if (res == CW_BAN_NONE || m.time_ms < *soft_at_ms) *soft_at_ms = m.time_ms;
            res = CW_BAN_SOFT;
            break;
        case CW_BAN_NONE:
            break;
        }
    }
    return res;
}

void cw_ban_soften(struct cw_entry_hdr *h, int64_t now_ms)
{
    h->flags |= CW_ENTRY_SOFT_PURGED;
    if (h->fresh_until_ms > now_ms) {
        int64_t shift = h->fresh_until_ms - now_ms;
        h->fresh_until_ms = now_ms;
        h->swr_until_ms = h->swr_until_ms - shift > now_ms ? h->swr_until_ms - shift : now_ms;
        h->sie_until_ms = h->sie_until_ms - shift > now_ms ? h->sie_until_ms - shift : now_ms;
    }
}
