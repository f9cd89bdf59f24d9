/* workers/fill.h - the commit: putting an entry into L1, whatever its source, shared by the
 * worker's miss path and the refresher's background refreshes.
 *
 * Owns nothing: it borrows the store, a reader (for 304 merges and the adaptive TTL's history)
 * and the shm segment from the calling process, and the request's header lookup from the
 * caller. Everything here runs on the thread that completed the fetch (never the MHD thread:
 * it writes). It decides nothing about caching: core/policy decides what an origin answer
 * becomes (store or not, windows, kept headers, Vary names, tags), and this module executes
 * that: picks the key (route key headers and Vary) and keeps the Vary record in step, encodes
 * the entry once (with its request part: what a refresh sends again, core/entry.h), stores
 * those bytes and releases the request's lease by its token in the same write txn, and wakes
 * coalesced waiters. An already-encoded entry (from L2) is committed the same way without
 * being encoded again. It does not know the fetcher: an origin answer comes in as a
 * struct cw_fill_resp. */
#ifndef CW_FILL_H
#define CW_FILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/key.h"

struct cw_config;
struct cw_config_route;
struct cw_entry_header;
struct cw_entry_view;
struct cw_upstream_collect;
struct cw_seg;
struct cw_store;
struct cw_store_reader;

struct cw_fill_req;

/* Called after an origin answer's entry was put into L1 (stored, or freshened by a 304), with
 * q (its key now the entry's full key) and the encoded bytes that were put, borrowed for the
 * call: what a second cache level takes, so nothing is encoded twice. Runs on the committing
 * thread; must not block. Not called for cw_fill_commit_encoded() (those bytes came from
 * there). */
typedef void (*cw_fill_stored_fn)(void *cls, const struct cw_fill_req *q, const void *p,
                                  size_t len);

/* What a process lends the fill code. */
struct cw_fill {
    const struct cw_config *cfg;
    struct cw_store *store;
    struct cw_store_reader *reader; /* of the calling thread */
    struct cw_seg *seg;
    int slot;
    cw_fill_stored_fn stored; /* NULL: nothing to tell */
    void *stored_cls;
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

/* An origin's answer to a cacheable request, from any fetcher. Everything is borrowed for the
 * call. Header values are as received, trimmed of surrounding whitespace. */
struct cw_fill_resp {
    int status;
    const struct cw_entry_header *hdrs; /* the final response's header lines, in order */
    size_t n;
    struct cw_str body;       /* the whole body (empty for a 304) */
    int64_t request_time_ms;  /* wall clock when the request went to the origin */
    int64_t response_time_ms; /* wall clock when the answer ended */
};

/* Commits an origin answer to q: executes core/policy's decision (a storable answer is
 * stored, a 304 freshens the stored entry, a refused 304 drops it), releases q's lease by its
 * token (in the same txn as the write when there is one; a lease taken over since is left to
 * its new owner; an answer the policy marks hit-for-miss leaves that record instead) and bumps
 * the fill generations so waiters wake. Never fails: what went wrong is in res->detail, logged
 * and counted. */
void cw_fill_commit(const struct cw_fill *f, struct cw_fill_req *q, const struct cw_fill_resp *resp,
                    struct cw_fill_result *res);

/* Commits len bytes at p, an entry already encoded (core/entry.h; as L2 returns it), for q,
 * whose primary key is computed (cw_fill_key_primary()): validates the bytes, checks that the
 * entry's full key is the one q would store it under (q's primary key extended by q's values
 * of the fields the entry's Vary names), keeps the Vary record in step, puts the bytes
 * unchanged and releases q's lease by its token in the same txn, then wakes the waiters: 0.
 * -EBADMSG for bytes that fail cw_entry_decode() (or a Vary over the limits), -ENOENT for an
 * entry of another key, -ENOSPC when the key or the map is full, -errno from the store: then
 * nothing is written, q keeps its lease and its primary key, and the caller goes on (to the
 * origin). The bytes are copied; the caller keeps them. */
CW_MUST_CHECK int cw_fill_commit_encoded(const struct cw_fill *f, struct cw_fill_req *q,
                                         const void *p, size_t len);

/* What the policy makes of an answer's head alone (body_len -1 when not known): res->stored
 * says it would be stored, else res->detail and res->uncacheable say why not. Writes nothing;
 * for an answer that streams to the client before its body is in. */
void cw_fill_intent(const struct cw_fill *f, const struct cw_fill_req *q, int status,
                    const struct cw_entry_header *hdrs, size_t n, int64_t body_len,
                    struct cw_fill_result *res);

/* cw_fill_commit() for an origin answer collected whole by workers/upstream (the worker's
 * miss and the refresher's refresh). */
void cw_fill_complete(const struct cw_fill *f, struct cw_fill_req *q,
                      const struct cw_upstream_collect *job, struct cw_fill_result *res);

/* Releases q's lease (by its token) without storing (fetch failed) and wakes waiters; with
 * pass, leaves a hit-for-miss record instead so that later requests do not queue behind each
 * other (unless another request has taken the lease over since: its fetch goes on). */
void cw_fill_abandon(const struct cw_fill *f, struct cw_fill_req *q, bool pass);

/* True for header names never replayed to clients: names starting with ':' (never stored
 * since entry version 2, still refused), Surrogate-Key, and those MHD writes itself. */
bool cw_fill_is_internal_header(struct cw_str name);

#endif /* CW_FILL_H */
