/* workers/fill.h - turning an origin answer into an L1 entry, shared by the worker's miss
 * path and the refresher's background refreshes.
 *
 * Owns nothing: it borrows the store, a reader (for 304 merges) and the shm segment from
 * the calling process, and the request's header lookup from the caller. Everything here
 * runs on the thread that completed the fetch. It decides storage (RFC 9111 §3), picks the
 * key (route key headers and Vary), keeps the Vary record in step, encodes the entry once
 * (with its request part: what a refresh sends again, core/entry.h), stores those bytes and
 * releases the fetch lease in the same write txn, and wakes coalesced waiters. */
#ifndef CW_FILL_H
#define CW_FILL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/common.h"
#include "core/key.h"

struct cw_config;
struct cw_config_route;
struct cw_entry_view;
struct cw_fetch_job;
struct cw_seg;
struct cw_store;
struct cw_store_reader;

/* What a process lends the fill code. */
struct cw_fill {
    const struct cw_config *cfg;
    struct cw_store *store;
    struct cw_store_reader *reader; /* of the calling thread */
    struct cw_seg *seg;
    int slot;
};

/* Looks up a request header by name: a NUL-terminated value as the origin is sent it, or
 * NULL when absent (or not forwarded). The value may be valid only until the next call. */
typedef const char *(*cw_fill_header_fn)(void *cls, const char *name);

/* One request's identity in the cache. key_buf holds CW_LIMIT_KEY_BYTES. */
struct cw_fill_req {
    const struct cw_config_route *rt;
    cw_fill_header_fn header;
    void *header_cls;
    struct cw_str uri;  /* request target as sent */
    struct cw_str host; /* Host as sent */
    char *key_buf;      /* owned by the caller */
    size_t key_len;
    size_t primary_len;
    struct cw_key primary;
    struct cw_key key;
    bool has_lease; /* the caller holds the FETCH or REFRESH lease on lease_key */
    struct cw_key lease_key;
    uint64_t lease_token; /* from the take, when has_lease: the one thing that releases it */
};

struct cw_fill_result {
    bool stored;
    bool revalidated;   /* a 304 refreshed the stored entry */
    bool changed;       /* for adaptive TTL: the content differs from the stored one */
    bool uncacheable;   /* the answer may not be stored: waiters should not coalesce */
    const char *detail; /* static text for Cache-Status when not stored */
};

/* Computes the primary key of q (route key headers included) into q->key_buf and sets
 * q->primary and q->key to it: 0, or -ENOSPC/-EINVAL for a target or host the key refuses. */
CW_MUST_CHECK int cw_fill_key_primary(const struct cw_fill *f, struct cw_fill_req *q);
/* Extends the primary key with the values of the request headers named in names (a
 * comma-separated, lower-case list) and sets q->key: 0, or -ENOSPC. */
CW_MUST_CHECK int cw_fill_key_vary(const struct cw_fill *f, struct cw_fill_req *q,
                                   struct cw_str names);

/* Handles a completed fetch of a cacheable request: stores a storable answer, applies a
 * 304 to the stored entry, releases q's lease by its token (in the same txn as the write
 * when there is one; a lease taken over since is left to its new owner) and bumps the fill
 * generations so waiters wake. Never fails: what went wrong is in res->detail, logged and
 * counted. */
void cw_fill_complete(const struct cw_fill *f, struct cw_fill_req *q, struct cw_fetch_job *job,
                      struct cw_fill_result *res);

/* Releases q's lease (by its token) without storing (fetch failed) and wakes waiters; with
 * pass, leaves a hit-for-miss record instead so that later requests do not queue behind each
 * other (unless another request has taken the lease over since: its fetch goes on). */
void cw_fill_abandon(const struct cw_fill *f, struct cw_fill_req *q, bool pass);

/* True for header names never replayed to clients: names starting with ':' (never stored
 * since entry version 2, still refused), Surrogate-Key, and those MHD writes itself. */
bool cw_fill_is_internal_header(struct cw_str name);

#endif /* CW_FILL_H */
