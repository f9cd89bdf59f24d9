/* shm/store_int.h - internals shared by the files of the store module (store.c,
 * store_lease.c, store_evict.c, store_tag.c); never included outside shm/store*.c.
 *
 * Holds the two handle structs and the helpers every file needs to talk to LMDB: the
 * one place LMDB codes become errnos, the one log format for LMDB failures, and the
 * write-txn begin/commit and read-txn renew wrappers. Functions here are not static (the
 * files share them), so they are declared here for -Wmissing-prototypes; they keep the
 * module word and drop the cw_ prefix, like static functions. */
#ifndef CW_STORE_INT_H
#define CW_STORE_INT_H

#include <lmdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/store.h"

struct cw_seg;

struct cw_store {
    MDB_env *env;
    MDB_dbi obj;
    MDB_dbi vary;
    MDB_dbi lease;
    MDB_dbi tag;
    MDB_dbi meta;
    uint8_t secret[16];
    char *path;
    struct cw_seg *seg;  /* hit bits for eviction's second chance; NULL = none */
    int slot;            /* seg counter slot for evictions made by puts */
    size_t page_bytes;   /* LMDB page size */
    size_t map_pages;    /* the map in pages: the hard bound (at least the file's size) */
    size_t budget_pages; /* cache.size in pages, at most map_pages: eviction's bound */
    bool clock_active;   /* this process is evicting down to the low watermark */
    /* The next lease token less one: random at open, bumped by every take (store_lease.c) */
    _Atomic uint64_t lease_token;
    /* Another process grew the map past this one's (a reload raised cache.size): every
     * txn after is refused with -ESTALE (store_resized()). */
    _Atomic bool resized;
};

struct cw_store_reader {
    struct cw_store *st;
    MDB_txn *txn;  /* read-only, kept reset between reads */
    bool no_write; /* a bad entry found is left for cw_store_drop_bad() */
};

/* LMDB's codes stop here (STYLE.md, Errors): MDB_NOTFOUND -ENOENT, MDB_MAP_FULL and
 * MDB_TXN_FULL -ENOSPC, MDB_READERS_FULL -EAGAIN, MDB_MAP_RESIZED -ESTALE, system errors as
 * themselves, other LMDB codes -EIO. */
int store_errno(int rc);
/* MDB_MAP_RESIZED met: a process of a newer configuration (a larger cache.size) grew the
 * data past this process's map. Adopting the new size (mdb_env_set_mapsize) remaps the
 * file under every thread's feet, so it is only safe with no txn open in the process; the
 * processes that meet it are the retiring ones of the previous configuration, which only
 * finish their last requests. So this process stops using the store instead: logged once,
 * and every later txn refused with -ESTALE, which the callers treat as a miss (the answer
 * goes to the client uncached; a lease it held is dropped with it when the process exits).
 * Returns -ESTALE. */
int store_resized(struct cw_store *st);
/* Logs "store: <op> [key <hex>]: <mdb_strerror>"; key may be NULL. */
void store_log_mdb(const char *op, const struct cw_key *key, int rc);
/* Begins a read-only txn on st: 0 and *txn, or -errno logged ("<op> mdb_txn_begin(read)"),
 * -ESTALE unlogged after store_resized(). */
int store_txn_read(struct cw_store *st, MDB_txn **txn, const char *op);
/* Begins a write txn on st (waits for LMDB's writer mutex): 0 and *txn, or -errno logged
 * with op and key (which may be NULL); -ESTALE unlogged after store_resized(). */
int store_txn_write(struct cw_store *st, MDB_txn **txn, const char *op, const struct cw_key *key);
/* Commits; on failure the txn is freed by LMDB. MDB_MAP_FULL is returned unlogged as
 * -ENOSPC: the caller decides what a full map means; other failures are logged. */
int store_commit(MDB_txn *txn, const char *op, const struct cw_key *key);
/* Renews the reader's reset read txn: 0, or -errno logged. The caller resets it again
 * (mdb_txn_reset) before returning, so no snapshot outlives one call. */
int store_renew(struct cw_store_reader *r);

/* What a put writes: an entry's parts (h set), encoded straight into the map, or the bytes
 * of an entry already encoded (h NULL: bytes, validated by store_put() before any txn). */
struct store_put_src {
    const struct cw_entry_hdr *h;
    struct cw_str full_key;
    const struct cw_entry_header *hdrs;
    size_t n;
    struct cw_str body;
    struct cw_str bytes;
};

/* Puts src under key with an optional lease release in the same txn (lease_key NULL =
 * none): the one put path, so every put shares the make-room and retry logic. 0, -EINVAL
 * (parts over the limits), -EBADMSG (bytes that fail cw_entry_decode(): nothing written),
 * -ENOSPC, -errno logged. */
int store_put(struct cw_store *st, const struct cw_key *key, const struct cw_key *lease_key,
              uint64_t token, const struct store_put_src *src);
/* Deletes key's lease record in txn when it carries token, or when the record is malformed
 * (a malformed record counts as absent): 0 when token's record was deleted, -ENOENT when
 * there was none or it carries another token, -errno logged. Defined in store_lease.c. */
int store_lease_release_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                            uint64_t token);

/* ---- accounting and eviction (store_evict.c) ---- */

/* Pages held by every database as seen by txn (branch, leaf and overflow pages of obj,
 * vary, lease, tag and meta, plus the two meta pages and the main root). Exact for LMDB's
 * own trees and O(1): mdb_stat reads the txn's copy of each db record. Pages on LMDB's
 * free list are not counted (they are reusable). 0 and *used, or -errno logged. */
int store_used_pages(struct cw_store *st, MDB_txn *txn, size_t *used);
/* Whether used pages are over the high watermark (CW_STORE_EVICT_HIGH_PCT). */
bool store_is_over_high(const struct cw_store *st, size_t used);
/* The emergency path of a put that met MDB_MAP_FULL: evicts (expired first, then CLOCK
 * with st->seg's hit bits) until the map is back under the low watermark and at least
 * need bytes (doubled per attempt) were freed, never evicting keep (the entry being
 * replaced, which may be NULL), then commits one more txn so that LMDB
 * may hand the freed pages out to the retry. true to have the put retried. */
bool store_make_room(struct cw_store *st, const struct cw_key *keep, size_t need, int attempt);
/* After a put that found the map over the high watermark: a bounded eviction pass
 * towards the low watermark that spares keep, the entry just stored (failures are logged
 * here; the put already succeeded). */
void store_evict_after_put(struct cw_store *st, const struct cw_key *keep);

/* ---- tags and deletion (store_tag.c) ---- */

/* Indexes the Surrogate-Key tags found in v's headers (every header of that name, tags
 * split on SP and HTAB, at most CW_LIMIT_TAGS, longer than CW_LIMIT_TAG_BYTES skipped) as
 * tag -> key records in txn. 0, or -errno logged. */
int store_tag_index_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                        const struct cw_entry_view *v);
/* Removes the tag records of the stored entry bytes val (under key) in txn; val must not
 * be deleted yet (it points into the map). An undecodable value has no tags to find: 0.
 * 0, or -errno logged. */
int store_tag_unindex_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                          const MDB_val *val);
/* Deletes key's entry and its tag records in txn: 0, -ENOENT, or -errno logged. */
int store_obj_del_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key);

#endif /* CW_STORE_INT_H */
