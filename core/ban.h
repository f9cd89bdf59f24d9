/* core/ban.h - prefix purges as bans: what a ban record does to an entry read from L2.
 *
 * L2 keys are hashes, so a purge by URL prefix cannot find the entries it covers in Redis.
 * Instead it leaves a ban record (core/fleetmsg.h, kind CW_FLEETMSG_BAN: a prefix of the cache
 * key string, the purge's wall-clock time, soft or hard) beside the entries, as Varnish's
 * bans do, and whoever reads an entry from L2 checks it against the bans recorded since the
 * entry was stored: an entry stored at or before a matching ban's time is a miss (hard) or
 * stale (soft); one stored after it is not touched. Pure: no I/O, no clock (times come in). */
#ifndef CW_BAN_H
#define CW_BAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

struct cw_entry_hdr;
struct cw_fleetmsg;

enum cw_ban_result {
    CW_BAN_NONE = 0, /* no ban applies: use the entry as it is */
    CW_BAN_SOFT,     /* stale from the ban's time on: cw_ban_soften() */
    CW_BAN_HARD,     /* a miss */
};

/* What ban (a decoded message) does to an entry whose full key string is key, stored at
 * stored_at_ms (wall clock): CW_BAN_NONE when ban is not a ban record, its prefix does not
 * start key, or the entry was stored after the ban's time. */
enum cw_ban_result cw_ban_match(const struct cw_fleetmsg *ban, struct cw_str key,
                                int64_t stored_at_ms);
/* The strongest of n raw ban records (each decoded with cw_fleetmsg_decode(); one that does
 * not decode is skipped and counted in *bad, which may be NULL) for key and stored_at_ms; for
 * a soft result, *soft_at_ms gets the earliest matching soft ban's time. */
enum cw_ban_result cw_ban_check(const struct cw_str *records, size_t n, struct cw_str key,
                                int64_t stored_at_ms, int64_t *soft_at_ms, size_t *bad);
/* Marks an entry header as a soft purge at now_ms does in L1: flagged CW_ENTRY_SOFT_PURGED
 * and, when it is still fresh at now_ms, stale from now_ms with its stale-while-revalidate
 * and stale-if-error windows moved earlier by as much (never before now_ms). */
void cw_ban_soften(struct cw_entry_hdr *h, int64_t now_ms);

#endif /* CW_BAN_H */
