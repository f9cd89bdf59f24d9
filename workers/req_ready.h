/* workers/req_ready.h - a worker's ready answers: the libmicrohttpd response last built for a
 * hot entry, queued again for the next hits instead of being rebuilt (the body copied, every
 * header checked and allocated) on each one.
 *
 * An answer is reused only while everything it says is still what a fresh build would say:
 * the same stored entry (its times and lengths, then its header block and body compared byte
 * for byte), the same kind of answer, and the same Age and Cache-Status ttl seconds (so a hot
 * entry's answer is rebuilt at most about once a second). Only full answers (no precondition,
 * no range) that go out without Connection: close are kept, and only for a hot key
 * (req_ready_admit()). Set-associative on the key's hash, the least recently used place of a
 * full set displaced; bounded in count and bytes. MHD thread only: no lock. */
#ifndef CW_REQ_READY_H
#define CW_REQ_READY_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

#include "core/entry.h"
#include "core/key.h"

/* What, besides the entry's bytes, an answer depends on. */
struct req_ready_id {
    int64_t age_s;   /* the Age field */
    int64_t ttl_s;   /* Cache-Status ttl= */
    uint32_t status; /* the answer's status (the entry's: full answers only) */
    uint32_t kind;   /* the caller's code for the answer's kind and Cache-Status details */
};

struct req_ready; /* one per worker */

/* A new, empty set of ready answers, or NULL (no memory: the worker builds every answer). */
struct req_ready *req_ready_new(void);
/* Drops every kept answer (connections still sending one keep it until they finish). */
void req_ready_free(struct req_ready *c);
/* The kept answer for key when it was built from an entry with exactly v's bytes and the
 * same id, or NULL. The response stays the set's: queue it, never destroy it. */
struct MHD_Response *req_ready_get(struct req_ready *c, const struct cw_key *key,
                                   const struct req_ready_id *id, const struct cw_entry_view *v);
/* Whether a built answer for key, id and v (req_ready_get() gave none) is worth keeping:
 * true for a key built READY_SEEN (8) times for this same answer (the same entry, Age and
 * ttl: hit that often within one second), or whose last kept answer served as many hits.
 * Otherwise counts this build as a sighting of key (dropping a kept answer that served
 * fewer) and says false: a key hit less often is built each time, with no copy kept. */
bool req_ready_admit(struct req_ready *c, const struct cw_key *key, const struct req_ready_id *id,
                     const struct cw_entry_view *v);
/* Whether an answer from v may be kept as key's (its size within the bounds, counting the
 * bytes of the answer it would displace as freed). */
bool req_ready_fits(struct req_ready *c, const struct cw_key *key, const struct cw_entry_view *v);
/* A response whose body is a copy of v's, kept with a copy of v's header block in one block
 * (*copy) that the response frees: to be completed with headers, then given to
 * req_ready_put() or destroyed. NULL: no memory. */
struct MHD_Response *req_ready_build(const struct cw_entry_view *v, const char **copy);
/* Keeps resp and its copy (from req_ready_build(), complete) as key's answer for id, in place
 * of key's last one, or of the least recently used one of a full set. Takes over the caller's
 * reference: the caller queues resp, and never destroys it. */
void req_ready_put(struct req_ready *c, const struct cw_key *key, const struct req_ready_id *id,
                   const struct cw_entry_view *v, struct MHD_Response *resp, const char *copy);

#endif /* CW_REQ_READY_H */
