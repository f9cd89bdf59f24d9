/* shm/store.h - the L1 cache: one LMDB environment that every process opens.
 *
 * Owns the MDB_env, its named databases (obj, vary, lease, tag, meta) and every
 * transaction on them; no other module includes lmdb.h. Each process opens its own handle
 * after fork() and never carries one across a fork. Flags: MDB_NOSUBDIR | MDB_NOTLS |
 * MDB_NORDAHEAD | MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC. A file that fails to open or
 * whose meta record is wrong is moved aside ("<path>.corrupt-<unix time>") with a log line
 * and recreated. A stored entry that fails validation is deleted and reported as a miss.
 *
 * Threads: a struct cw_store may be shared by the threads of one process; a struct
 * cw_store_reader belongs to one thread at a time (it keeps a reset read txn to renew,
 * which is cheaper than a new one on every hit). Writers serialise on LMDB's own
 * (robust, process-shared) writer mutex. */
#ifndef CW_STORE_H
#define CW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/entry.h"
#include "core/key.h"

struct cw_store;        /* opaque */
struct cw_store_reader; /* opaque */

/* Opens (creating if missing, with the parent directory, mode 0750) the environment at path
 * with a map of size_bytes: 0 and *out, or -errno with the cause logged (-EBADMSG when the
 * file is still damaged after being moved aside once). Opens in all processes serialise on
 * an flock of the parent directory, so that a damaged file is moved aside once and every
 * process ends on the same new file and secret. Caller owns *out; free with
 * cw_store_close(), which takes NULL, after closing its readers. */
CW_MUST_CHECK int cw_store_open(const char *path, uint64_t size_bytes, struct cw_store **out);
void cw_store_close(struct cw_store *st);

/* The per-cache hash secret (16 random bytes made when the file was created, kept in meta),
 * so that keys are stable across restarts and processes but not guessable. Borrowed. */
const uint8_t *cw_store_secret(const struct cw_store *st);
/* The bytes the map covers: cache.size, or more when the file is larger (LMDB never shrinks
 * a file, so a smaller cache.size only bounds eviction). */
uint64_t cw_store_map_bytes(const struct cw_store *st);

CW_MUST_CHECK int cw_store_reader_open(struct cw_store *st, struct cw_store_reader **out);
/* As cw_store_reader_open(), for a thread that must never wait on the writer mutex (a
 * worker's MHD thread, which answers hits): its reads never write. A stored entry that fails
 * validation is reported (-EBADMSG) and left in place; the caller has another thread delete
 * it with cw_store_drop_bad(). */
CW_MUST_CHECK int cw_store_reader_open_nowrite(struct cw_store *st, struct cw_store_reader **out);
void cw_store_reader_close(struct cw_store_reader *r);

/* Called inside the read txn with a validated entry whose full key matched. The view is
 * borrowed: valid only until fn returns. fn's return value is returned by cw_store_read. */
typedef int (*cw_store_read_fn)(void *cls, const struct cw_entry_view *v);

/* Looks key up: fn's return value on a hit (full_key.p == NULL skips the full-key compare,
 * for callers that know only the hash, like the refresher); -ENOENT on a miss or when the stored
 * full key differs (a hash collision); -EBADMSG when the stored bytes failed validation (the entry
 * is then deleted, unless r is a nowrite reader); other -errno with the cause logged. The read txn
 * lasts only as long as fn runs. */
CW_MUST_CHECK int cw_store_read(struct cw_store_reader *r, const struct cw_key *key,
                                struct cw_str full_key, cw_store_read_fn fn, void *cls);

/* Copies the encoded bytes of key's entry out of the map (the bytes cw_store_put_encoded()
 * takes, and L2 stores): 0, *out and *len on a hit; -ENOENT on a miss or when the stored full
 * key differs from full_key (a hash collision; full_key.p == NULL skips the compare);
 * -EBADMSG when the stored bytes failed validation (the entry is then deleted); -ENOMEM; other
 * -errno with the cause logged. The bytes decoded in the read txn, and stay valid for
 * cw_entry_decode(). Caller owns *out; free with free(). */
CW_MUST_CHECK int cw_store_read_encoded(struct cw_store_reader *r, const struct cw_key *key,
                                        struct cw_str full_key, void **out, size_t *len);

/* Stores an entry under key, replacing any, encoded straight into the map (MDB_RESERVE),
 * with no request part (core/entry.h): such an entry is served but never refreshed. 0,
 * -EINVAL for an entry over the limits, -ENOSPC when the map is full, -errno otherwise with
 * the cause logged. Nothing already stored is damaged by a failure. */
CW_MUST_CHECK int cw_store_put(struct cw_store *st, const struct cw_key *key,
                               const struct cw_entry_hdr *h, struct cw_str full_key,
                               const struct cw_entry_header *hdrs, size_t n, struct cw_str body);
/* Stores the len bytes at p, an entry already encoded (by cw_entry_encode(), or copied out
 * by cw_store_read_encoded() or from L2), under key, replacing any. The bytes are validated
 * with cw_entry_decode() before any write: -EBADMSG and nothing written when they fail.
 * Otherwise as cw_store_put(): 0, -ENOSPC when the map is full, -errno logged. The store
 * does not check that key is the hash of the entry's full key (the caller chose both). The
 * bytes are copied; the caller keeps them. */
CW_MUST_CHECK int cw_store_put_encoded(struct cw_store *st, const struct cw_key *key, const void *p,
                                       size_t len);

/* Deletes the entry under key if its stored bytes still fail validation (a writer may have
 * replaced them since a reader saw them): 0 when deleted (logged), -ENOENT when there is no
 * entry or it is valid now, -errno otherwise with the cause logged. What a cw_store_read()
 * on another reader does on -EBADMSG; a nowrite reader's caller calls it itself. */
CW_MUST_CHECK int cw_store_drop_bad(struct cw_store *st, const struct cw_key *key);

/* Deletes the entry under key: 0, -ENOENT when there was none, -errno otherwise. */
CW_MUST_CHECK int cw_store_delete(struct cw_store *st, const struct cw_key *key);

/* The Vary field names recorded for a primary key (a comma-separated list, lower-cased):
 * 0 and *len bytes copied into buf, -ENOENT, or -ENOSPC when buf is too small. */
CW_MUST_CHECK int cw_store_vary_get(struct cw_store_reader *r, const struct cw_key *primary,
                                    char *buf, size_t size, size_t *len);
/* Records (names.len > 0) or removes (names.len == 0) the Vary list of a primary key. */
CW_MUST_CHECK int cw_store_vary_put(struct cw_store *st, const struct cw_key *primary,
                                    struct cw_str names);

/* Clears reader slots left by dead processes (mdb_reader_check): the number cleared, or
 * -errno. */
CW_MUST_CHECK int cw_store_reader_check(struct cw_store *st);

/* Counts entries and bytes used by the map (for stats): 0, or -errno. */
CW_MUST_CHECK int cw_store_stat(struct cw_store *st, uint64_t *entries, uint64_t *used_bytes);

/* Drops every entry, Vary record, tag and lease (purge-all, and tests); meta, and with it
 * the hash secret, is kept. 0, or -errno with the cause logged. */
CW_MUST_CHECK int cw_store_clear(struct cw_store *st);

/* ---- Leases: request coalescing and background refresh (store_lease.c) ----
 * One record per key in the lease database. Times are CLOCK_MONOTONIC milliseconds, which
 * are system-wide and so comparable between the processes of one host.
 *
 * A lease belongs to the request (or refresh) that took it, not to its process: every take
 * writes a new token, and only that token releases the record. A process runs many requests
 * at once, so after a lease expired and another request of the same process took it over,
 * the first request's late release must not drop the second's lease. Tokens come from a
 * 64-bit counter per store handle (so per process: a handle never crosses a fork) that
 * starts at a random value from getrandom() at open and skips 0: a process never hands out
 * the same token twice, and two processes' tokens meet only if their random starts fall
 * within the number of leases either takes in its life. The pid stays in the record for
 * liveness only: a dead owner's record is taken over at once, and waiters stop waiting. */
enum cw_store_lease_kind {
    CW_STORE_LEASE_FETCH = 0, /* pid is fetching the key from the origin in the foreground */
    CW_STORE_LEASE_REFRESH,   /* a background refresh: wanted (pid 0) or running (pid set) */
    CW_STORE_LEASE_PASS,      /* hit-for-miss: uncacheable answer seen; no coalescing until
                               * the deadline */
};

struct cw_store_lease {
    int32_t pid; /* owner process, for liveness; 0 = a REFRESH wanted and not yet claimed */
    uint32_t kind;
    int64_t start_ms;
    int64_t deadline_ms;
    uint64_t token; /* of the take that wrote the record; 0 only with pid 0 */
};

/* Takes the lease on key in one write txn, for pid (0 only with REFRESH: "wanted"): 0 when
 * taken (no record, or the record's deadline passed, or its owner pid is dead, or it is a
 * wanted refresh (pid 0) and pid is not 0: claiming it), with *token (may be NULL) set to
 * the new record's token, which no earlier take had (0 for a wanted refresh, which nobody
 * owns); -EBUSY with *holder filled (holder may be NULL) when a live record stands; -errno
 * on failure, logged. */
CW_MUST_CHECK int cw_store_lease_take(struct cw_store *st, const struct cw_key *key,
                                      enum cw_store_lease_kind kind, int32_t pid, int64_t now_ms,
                                      int64_t deadline_ms, uint64_t *token,
                                      struct cw_store_lease *holder);
/* Whether a take by a live process at now_ms would find l standing (-EBUSY): its deadline
 * is ahead, its owner lives, and it is not a wanted refresh (pid 0), which a taker claims.
 * The take itself decides by this rule; a reader of cw_store_lease_get() may ask it to know,
 * without a write txn, that a take would be refused. */
bool cw_store_lease_is_blocking(const struct cw_store_lease *l, int64_t now_ms);
/* Reads the lease record of key without a write txn: 0 and *out, -ENOENT, or -errno. */
CW_MUST_CHECK int cw_store_lease_get(struct cw_store_reader *r, const struct cw_key *key,
                                     struct cw_store_lease *out);
/* Deletes key's record when it carries token, the one its take returned (token 0 deletes
 * an unclaimed REFRESH): 0, -ENOENT when there is none or it was taken over since (another
 * token), -errno otherwise. */
CW_MUST_CHECK int cw_store_lease_release(struct cw_store *st, const struct cw_key *key,
                                         uint64_t token);
/* Deletes key's record only when it is still exactly *expected (kind, owner, start,
 * deadline and token), so a reaper that saw an expired record never deletes a lease taken
 * since: 0, -ENOENT when the record is gone or changed, -errno otherwise. */
CW_MUST_CHECK int cw_store_lease_release_exact(struct cw_store *st, const struct cw_key *key,
                                               const struct cw_store_lease *expected);
/* Called for each lease record in a read txn; return false to stop. Borrowed pointers. */
typedef bool (*cw_store_lease_fn)(void *cls, const struct cw_key *key,
                                  const struct cw_store_lease *lease);
/* Visits at most max records (bounded work per call), in key order from the first key >=
 * from (NULL: from the start), so a caller can resume where the last call stopped: the
 * number visited (fewer than max: the end was reached), or -errno. */
CW_MUST_CHECK int cw_store_lease_scan(struct cw_store_reader *r, const struct cw_key *from,
                                      cw_store_lease_fn fn, void *cls, size_t max);
/* cw_store_put() and, in the same write txn, the release of lease_key's record when it
 * carries token, so a waiter that sees the lease gone always finds the entry. A record
 * taken over since (another token) is left alone, and the entry is stored either way.
 * lease_key may equal key. */
CW_MUST_CHECK int cw_store_put_release(struct cw_store *st, const struct cw_key *key,
                                       const struct cw_key *lease_key, uint64_t token,
                                       const struct cw_entry_hdr *h, struct cw_str full_key,
                                       const struct cw_entry_header *hdrs, size_t n,
                                       struct cw_str body);
/* cw_store_put_encoded() with the same lease release as cw_store_put_release(): -EBADMSG
 * and nothing written (the lease kept) when the bytes fail validation. */
CW_MUST_CHECK int cw_store_put_release_encoded(struct cw_store *st, const struct cw_key *key,
                                               const struct cw_key *lease_key, uint64_t token,
                                               const void *p, size_t len);

/* ---- Bounded size and eviction (store_evict.c) ----
 * cache.size is the map size and so the hard bound of the file (with MDB_WRITEMAP the file is
 * that size from the start). What is held is measured in LMDB pages, not counted in meta: the
 * page counts of every database tree are exact and cost nothing to read in a txn, while a byte
 * counter would miss LMDB's own overhead (branch pages, half-full leaves, overflow rounding).
 * Above CW_STORE_EVICT_HIGH_PCT of the map's pages, eviction runs until the pages held are
 * back at CW_STORE_EVICT_LOW_PCT; the gap leaves room for the free-list fragmentation that
 * large values cause and for pages LMDB cannot reuse until two txns later.
 *
 * The sweep walks obj in key order from a hand kept in meta ("hand"), so that every process
 * and every restart continues the same CLOCK. An entry past every stale window (now >
 * fresh_until, swr_until and sie_until) is evicted whenever the hand meets it; a live entry
 * only while over the watermark: its hit bit set (cw_seg_hit(), by workers on a hit) is
 * cleared for a second chance, clear means evicted. Deleting an entry deletes its tag
 * records. */
#define CW_STORE_EVICT_HIGH_PCT 90 /* start evicting live entries above this share of pages */
#define CW_STORE_EVICT_LOW_PCT  80 /* and stop at this one */

struct cw_seg;

struct cw_store_evict_stats {
    uint64_t visited;       /* entries the hand passed */
    uint64_t expired;       /* evicted: past every stale window */
    uint64_t clock;         /* evicted: hit bit clear while over the watermark */
    uint64_t second_chance; /* hit bits cleared */
    uint64_t bad;           /* undecodable entries deleted */
    uint64_t used_pages;    /* pages held after the step */
    uint64_t map_pages;     /* the bound, in pages */
};

/* Gives the store the segment whose hit bits feed the second chance, once after open
 * (borrowed; must outlive st). NULL (the default): no second chance, the sweep is FIFO in
 * key order. A new entry is stored with its bit clear: it must be hit once before the hand
 * reaches it to stay, which keeps one-hit wonders out of the hot set (cw-evict-sim, Zipf 0.9,
 * 100k keys, 10 % cached: 64.0 % hits against exact LRU's 61.2 % at the same size; setting the
 * bit on insert gave 61.0 %). Evictions a put makes (to stay under the watermark, or to
 * make room when the map is full) are counted in seg's counter slot slot. */
void cw_store_set_seg(struct cw_store *st, struct cw_seg *seg, int slot);

/* One bounded background pass (the refresher): visits at most max_visit entries from the
 * hand, evicting as described above, with seg's hit bits (seg may be NULL). now_ms is wall
 * clock, like the entries' *_until_ms. One write txn per 64 entries. 0 and *out (may be NULL;
 * counts add up over the call), or -errno logged. */
CW_MUST_CHECK int cw_store_evict_step(struct cw_store *st, struct cw_seg *seg, int64_t now_ms,
                                      size_t max_visit, struct cw_store_evict_stats *out);

/* ---- Tags and purge (store_tag.c) ----
 * A Surrogate-Key response header (space-separated tags; every such header counts) is indexed
 * at put time in the same txn: at most CW_LIMIT_TAGS tags per entry, a tag longer than
 * CW_LIMIT_TAG_BYTES is not indexed. A soft purge marks entries stale instead of deleting
 * them: CW_ENTRY_SOFT_PURGED is set and fresh_until_ms becomes min(fresh_until_ms, now_ms),
 * while swr_until_ms and sie_until_ms are kept, so stale-while-revalidate and stale-if-error
 * still protect the origin. now_ms is wall clock. count (may be NULL) gets the entries purged.
 * Each call is a series of short write txns (64 entries each): another process may store a
 * matching entry during a purge; it is then kept. */
CW_MUST_CHECK int cw_store_purge_tag(struct cw_store *st, struct cw_str tag, bool soft,
                                     int64_t now_ms, size_t *count);
/* Purges every entry whose full key string starts with prefix ("http://host/api/"), scanning
 * obj in batches. 0, or -errno logged. */
CW_MUST_CHECK int cw_store_purge_prefix(struct cw_store *st, struct cw_str prefix, bool soft,
                                        int64_t now_ms, size_t *count);
/* A purge run in steps, so that its caller's loop can do other work (answer health pings)
 * between them: where it has got to. Zero it before the first step. */
struct cw_store_purge_pos {
    uint8_t key[16]; /* the next entry (prefix) or the last one done (tag) */
    bool has_key;
    bool done; /* set by the step that finished the walk */
};

/* One step of a prefix or tag purge: at most max_batches write txns of 64 entries (visited,
 * for a prefix; purged, for a tag) from *pos on, adding what it purged to *count. 0 (check
 * pos->done), or -errno logged; a failed step may be retried from the same *pos. The whole
 * purges above are these steps run to the end. */
CW_MUST_CHECK int cw_store_purge_prefix_step(struct cw_store *st, struct cw_str prefix, bool soft,
                                             int64_t now_ms, size_t max_batches,
                                             struct cw_store_purge_pos *pos, size_t *count);
CW_MUST_CHECK int cw_store_purge_tag_step(struct cw_store *st, struct cw_str tag, bool soft,
                                          int64_t now_ms, size_t max_batches,
                                          struct cw_store_purge_pos *pos, size_t *count);

/* Purges key's entry: 0, -ENOENT when there is none, -errno logged. */
CW_MUST_CHECK int cw_store_purge_key(struct cw_store *st, const struct cw_key *key, bool soft,
                                     int64_t now_ms);

#endif /* CW_STORE_H */
