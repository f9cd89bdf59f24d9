/* workers/upstream_dns.h - origin discovery by DNS: the servers of every origin named by a host
 * name (servers, or url alone) or by srv are looked up with c-ares, and every address found
 * becomes a server of the origin's pool, published to all the node's processes through the
 * shm segment (struct cw_seg_dns: a fixed table per origin with a generation word, which each
 * process's pool follows; workers/upstream_pool.c).
 *
 * Runs once per node, in the refresher, on the loop thread of its upstream: the lookups are
 * driven by that loop's poll (cw_upstream_set_poller()), never blocking it. A name is looked up
 * again when its answer's TTL ends, within the origin's [resolve_min, resolve_max]. A failed
 * round of lookups keeps the last table (logged once, counted); a changed table is logged
 * once per server added or removed. Owns one c-ares channel per discovered origin and its
 * sockets. Start after fork(), after cw_upstream_start(); free after cw_upstream_stop(). */
#ifndef CW_UPSTREAM_DNS_H
#define CW_UPSTREAM_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

struct cw_config;
struct cw_config_origin;
struct cw_seg;
struct cw_seg_dns_server;
struct cw_upstream;
struct cw_upstream_dns; /* opaque */

/* Sets up discovery for cfg's origins that need it and hands the lookups to up's loop
 * (whose first turn starts them): 0 and *out (NULL when no origin needs discovery, or seg is
 * NULL), or -errno with the cause logged. cfg must outlive *out. Caller owns *out; free it
 * with cw_upstream_dns_free() once up's loop has stopped. */
CW_MUST_CHECK int cw_upstream_dns_start(const struct cw_config *cfg, struct cw_seg *seg,
                                        struct cw_upstream *up, struct cw_upstream_dns **out);
/* Cancels the lookups in flight and frees d. Takes NULL. */
void cw_upstream_dns_free(struct cw_upstream_dns *d);

/* An origin's identity for its DNS table (struct cw_seg_dns.origin_id): a hash of its name
 * and of what discovery reads (srv, the servers with their weights and backup flags), so
 * that a table published under another config is never taken for this one's. */
uint64_t cw_upstream_dns_origin_id(const struct cw_config_origin *c);

/* ---- Pure helpers (unit tested) ---------------------------------------------------------- */

/* The smallest TTL of the SRV records in the answer section of a DNS reply (abuf, alen
 * bytes), which ares_parse_srv_reply() does not give: 0 and *ttl_s, -ENOENT when the answer
 * has no SRV record, -EBADMSG for a malformed reply. Names are skipped with
 * ares_expand_name(). */
CW_MUST_CHECK int cw_upstream_dns_srv_ttl(const unsigned char *abuf, size_t alen, uint32_t *ttl_s);

/* Places the n servers found into table's slots, in place: a server (address, port and
 * configured server) already in a slot keeps it, with its weight and backup flag updated; a
 * slot whose server was not found is emptied; a new server takes an empty slot, one that was
 * empty before the call if any (so that a slot just left is not reused while its transfers
 * finish). Servers past the free slots are left out. Bit k of *added, *removed says slot k
 * got a new server, lost its own. True when the table changed (a weight too). */
bool cw_upstream_dns_assign(struct cw_seg_dns_server *table, const struct cw_seg_dns_server *found,
                            size_t n, uint32_t *added, uint32_t *removed);

/* How long after a lookup that answered the next one goes: the answer's shortest TTL (ttl_s;
 * negative when it gave none: max_ms), clamped into [min_ms, max_ms]. */
int64_t cw_upstream_dns_wait_ms(int64_t ttl_s, int64_t min_ms, int64_t max_ms);

#endif /* CW_UPSTREAM_DNS_H */
