/* workers/fleet.h - fleet-wide purge: purges published on redis.channel and applied by
 * every other node's refresher.
 *
 * A message is one line of text: "cwpurge1 <node>/<pid>:<n> <kind> <soft> <value>", where
 * <node> is "<hostname>.<supervisor pid>" (shared by the processes of one node, so a node
 * skips its own purges), <pid>:<n> makes the id unique, <kind> is u, p or t
 * (CW_CHAN_PURGE_URL, _PREFIX, _TAG), <soft> 0 or 1, and <value> the URL, prefix or tag.
 * cw_fleet_publish() is for any process with a struct cw_l2 (a worker's fetch thread, the
 * refresher). A struct cw_fleet is the refresher's: it owns its own struct cw_l2 (subscribed
 * to redis.channel) and the ids of the last CW_FLEET_SEEN_MAX purges it applied, so each is
 * applied once. One thread; open after fork(), never carried across one. */
#ifndef CW_FLEET_H
#define CW_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h" /* CW_MUST_CHECK, struct cw_str */

struct cw_config;
struct cw_fleet; /* opaque */
struct cw_l2;
struct pollfd;

#define CW_FLEET_SEEN_MAX 256 /* purge ids remembered to apply each once */
#define CW_FLEET_ID_BYTES 96

/* A received purge of another node, once: kind is a CW_CHAN_PURGE_* value; value borrowed. */
typedef void (*cw_fleet_apply_fn)(void *cls, uint32_t kind, bool soft, struct cw_str value);

/* PUBLISHes a purge on redis.channel, asynchronously; *counter is the caller's, advanced.
 * A failure is logged (rate-limited) and dropped: the purge was applied locally already. */
void cw_fleet_publish(struct cw_l2 *l2, uint64_t *counter, uint32_t kind, bool soft,
                      struct cw_str value);

/* Opens the refresher's client and subscribes it: 0 and *out, or -errno (logged); -ENODEV
 * when redis.enabled is false. Caller owns *out; free with cw_fleet_close(), which takes NULL. */
CW_MUST_CHECK int cw_fleet_open(const struct cw_config *cfg, cw_fleet_apply_fn fn, void *cls,
                                struct cw_fleet **out);
void cw_fleet_close(struct cw_fleet *f);
/* The client, for publishing and deleting (borrowed, valid until cw_fleet_close()). */
struct cw_l2 *cw_fleet_l2(struct cw_fleet *f);
/* The refresher's own publish counter. */
uint64_t *cw_fleet_counter(struct cw_fleet *f);

#endif /* CW_FLEET_H */
