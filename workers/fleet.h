/* workers/fleet.h - fleet-wide purge: a purge on one node is applied to L2 (Redis), logged
 * in Redis and published, and every other node's refresher applies it to its own L1.
 *
 * A message is a core/fleetmsg.h line; its id is "<node>/<pid>:<n>", where <node> is
 * "<hostname>.<supervisor pid>" (shared by the processes of one node, so a node skips its
 * own purges) and <pid>:<n> makes it unique. cw_fleet_publish() is for any process with a
 * struct cw_l2 (a worker's fetch thread, the refresher): it applies the purge to L2 (a tag's
 * entries over the 256 hash-tag groups; a prefix as a ban record, core/ban.h), then appends
 * it to the purge log stream and PUBLISHes it, in that order on one connection (standalone
 * and Sentinel), so a node that acts on the message finds L2 purged already. A URL's own L2
 * entry is the caller's to purge (its name needs the route's key): cw_l2_purge_entry().
 *
 * A struct cw_fleet is the refresher's: it owns its own struct cw_l2 (subscribed to
 * redis.channel), the ids of the last CW_FLEET_SEEN_MAX purges it applied, so each is
 * applied once, and its place in the purge log (kept in a file beside L1): it reads the log
 * from there every
 * CW_FLEET_LOG_POLL_MS and at once after any reconnect, so a purge whose PUBLISH it missed
 * (connection down, subscription cut) is applied from the log. One thread; open after
 * fork(), never carried across one. */
#ifndef CW_FLEET_H
#define CW_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h" /* CW_MUST_CHECK, struct cw_str */

struct cw_config;
struct cw_fleet; /* opaque */
struct cw_l2;

#define CW_FLEET_SEEN_MAX    256  /* purge ids remembered to apply each once */
#define CW_FLEET_LOG_POLL_MS 1000 /* the purge log is read at least this often */
#define CW_FLEET_LOG_BATCH   128  /* log entries read per command */

/* A received purge of another node, once: kind is a CW_CHAN_PURGE_* value; value borrowed. */
typedef void (*cw_fleet_apply_fn)(void *cls, uint32_t kind, bool soft, struct cw_str value);
/* The purge log lost entries this node had not read (trimmed, or Redis lost its data):
 * purges may have been missed. Called once per such gap. */
typedef void (*cw_fleet_gap_fn)(void *cls);

/* Applies a purge to L2, appends it to the purge log and PUBLISHes it on redis.channel, all
 * asynchronously; *counter is the caller's, advanced. A failure is logged (rate-limited) and
 * dropped: the purge was applied locally already. */
void cw_fleet_publish(struct cw_l2 *l2, uint64_t *counter, uint32_t kind, bool soft,
                      struct cw_str value);
/* Records a ban on every L2 entry whose full key string starts with key_prefix, stored up to
 * now (a prefix purge; a URL purge's variants, prefix "<primary key>\n"). Asynchronous;
 * failures logged (rate-limited). */
void cw_fleet_ban(struct cw_l2 *l2, uint64_t *counter, struct cw_str key_prefix, bool soft,
                  int64_t now_wall_ms);

/* Opens the refresher's client and subscribes it: 0 and *out, or -errno (logged); -ENODEV
 * when redis.enabled is false. state_path (may be NULL) keeps the place in the purge log
 * across restarts (one line, replaced by rename when it moves): a node restarted with its L1
 * applies what was purged while it was down, or finds the gap. Caller owns *out; free with
 * cw_fleet_close(), which takes NULL. */
CW_MUST_CHECK int cw_fleet_open(const struct cw_config *cfg, const char *state_path,
                                cw_fleet_apply_fn fn, cw_fleet_gap_fn gap, void *cls,
                                struct cw_fleet **out);
void cw_fleet_close(struct cw_fleet *f);
/* After each cw_l2_process() of its client: reads the purge log when due. */
void cw_fleet_tick(struct cw_fleet *f, int64_t now_ms);
/* Milliseconds until the next read of the purge log is due (0: now), -1 while one is in
 * flight: a bound for the caller's poll timeout. */
int cw_fleet_timeout_ms(const struct cw_fleet *f, int64_t now_ms);
/* The client, for publishing and deleting (borrowed, valid until cw_fleet_close()). */
struct cw_l2 *cw_fleet_l2(struct cw_fleet *f);
/* The refresher's own publish counter. */
uint64_t *cw_fleet_counter(struct cw_fleet *f);

#endif /* CW_FLEET_H */
