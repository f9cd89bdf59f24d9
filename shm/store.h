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

CW_MUST_CHECK int cw_store_reader_open(struct cw_store *st, struct cw_store_reader **out);
void cw_store_reader_close(struct cw_store_reader *r);

/* Called inside the read txn with a validated entry whose full key matched. The view is
 * borrowed: valid only until fn returns. fn's return value is returned by cw_store_read. */
typedef int (*cw_store_read_fn)(void *cls, const struct cw_entry_view *v);

/* Looks key up: fn's return value on a hit; -ENOENT on a miss or when the stored full key
 * differs (a hash collision); -EBADMSG when the stored bytes failed validation (the entry
 * is then deleted); other -errno with the cause logged. The read txn lasts only as long as
 * fn runs. */
CW_MUST_CHECK int cw_store_read(struct cw_store_reader *r, const struct cw_key *key,
                                struct cw_str full_key, cw_store_read_fn fn, void *cls);

/* Stores an entry under key, replacing any, encoded straight into the map (MDB_RESERVE):
 * 0, -EINVAL for an entry over the limits, -ENOSPC when the map is full, -errno otherwise
 * with the cause logged. Nothing already stored is damaged by a failure. */
CW_MUST_CHECK int cw_store_put(struct cw_store *st, const struct cw_key *key,
                               const struct cw_entry_hdr *h, struct cw_str full_key,
                               const struct cw_entry_header *hdrs, size_t n, struct cw_str body);

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

#endif /* CW_STORE_H */
