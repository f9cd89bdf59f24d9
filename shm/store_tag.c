/* shm/store_tag.c - the Surrogate-Key tag index, deletion with tag cleanup, and purge by
 * tag, key prefix and key; see the tag section of shm/store.h.
 *
 * The tag database is MDB_DUPSORT: tag bytes -> 16-byte entry keys. A record may outlive
 * its entry (a bad entry deleted on read has no readable tags); a purge that finds such a
 * dangling record deletes it. */
#include "shm/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/log.h"
#include "shm/store_int.h"

#define STORE_TAG_HEADER  "Surrogate-Key"
#define STORE_PURGE_BATCH 64 /* entries per write txn: short txns, so writers never wait long */

/* What to do with each tag found. */
typedef int (*store_tag_fn)(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                            struct cw_str tag);

static bool store_is_tag_space(char c);
static int store_tag_split(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                           struct cw_str value, size_t *count, store_tag_fn fn);
static int store_tag_add(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                         struct cw_str tag);
static int store_tag_del(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                         struct cw_str tag);
static int store_purge_one_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                               bool soft, int64_t now_ms);
static int store_soft_purge_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                                const MDB_val *val, int64_t now_ms);
static int store_purge_tag_batch(struct cw_store *st, struct cw_str tag, bool soft, int64_t now_ms,
                                 struct cw_key *after, bool *has_after, size_t *count, bool *done);
static int store_purge_prefix_batch(struct cw_store *st, struct cw_str prefix, bool soft,
                                    int64_t now_ms, struct cw_key *from, size_t *count, bool *done);

static bool store_is_tag_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Calls fn for each tag in one Surrogate-Key value, *count carrying the tags seen over all
 * of an entry's values (bounded by CW_LIMIT_TAGS). */
static int store_tag_split(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                           struct cw_str value, size_t *count, store_tag_fn fn)
{
    size_t i = 0;
    int rc;

    while (i < value.len && *count < CW_LIMIT_TAGS) {
        size_t start;
        while (i < value.len && store_is_tag_space(value.p[i])) {
            i++;
        }
        start = i;
        while (i < value.len && !store_is_tag_space(value.p[i])) {
            i++;
        }
        if (i == start || i - start > CW_LIMIT_TAG_BYTES) continue;
        (*count)++;
        rc = fn(st, txn, key, cw_str_make(value.p + start, i - start));
        if (rc < 0) return rc;
    }
    return 0;
}

static int store_tag_add(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                         struct cw_str tag)
{
    MDB_val k = {tag.len, (void *)tag.p};
    MDB_val v = {sizeof(key->h), (void *)key->h};
    int rc = mdb_put(txn, st->tag, &k, &v, MDB_NODUPDATA);

    if (rc == MDB_SUCCESS || rc == MDB_KEYEXIST) return 0; /* a tag named twice */
    if (rc != MDB_MAP_FULL) store_log_mdb("mdb_put(tag)", key, rc);
    return store_errno(rc);
}

static int store_tag_del(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                         struct cw_str tag)
{
    MDB_val k = {tag.len, (void *)tag.p};
    MDB_val v = {sizeof(key->h), (void *)key->h};
    int rc = mdb_del(txn, st->tag, &k, &v);

    if (rc == MDB_SUCCESS || rc == MDB_NOTFOUND) return 0;
    store_log_mdb("mdb_del(tag)", key, rc);
    return store_errno(rc);
}

int store_tag_index_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                        const struct cw_entry_view *v)
{
    struct cw_str name;
    struct cw_str value;
    size_t off = 0;
    size_t count = 0;
    int rc;

    while (count < CW_LIMIT_TAGS && cw_entry_header_next(v, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT(STORE_TAG_HEADER))) continue;
        rc = store_tag_split(st, txn, key, value, &count, store_tag_add);
        if (rc < 0) return rc;
    }
    return 0;
}

int store_tag_unindex_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                          const MDB_val *val)
{
    struct cw_entry_view view;
    struct cw_str name;
    struct cw_str value;
    size_t off = 0;
    size_t count = 0;
    int rc;

    if (cw_entry_decode(val->mv_data, val->mv_size, &view) < 0) return 0;
    while (count < CW_LIMIT_TAGS && cw_entry_header_next(&view, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT(STORE_TAG_HEADER))) continue;
        rc = store_tag_split(st, txn, key, value, &count, store_tag_del);
        if (rc < 0) return rc;
    }
    return 0;
}

int store_obj_del_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    int rc;

    rc = mdb_get(txn, st->obj, &k, &v);
    if (rc == MDB_NOTFOUND) return -ENOENT;
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_get(obj)", key, rc);
        return store_errno(rc);
    }
    rc = store_tag_unindex_txn(st, txn, key, &v);
    if (rc < 0) return rc;
    rc = mdb_del(txn, st->obj, &k, NULL);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_del(obj)", key, rc);
        return store_errno(rc);
    }
    return 0;
}

/* Rewrites the entry val (under key) marked stale. The value is copied out first: with
 * MDB_WRITEMAP, a page not yet dirtied in this txn is still a committed page that readers
 * may be using, so it is never written in place. An undecodable entry is deleted. */
static int store_soft_purge_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                                const MDB_val *val, int64_t now_ms)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val nv;
    struct cw_entry_view view;
    struct cw_entry_hdr h;
    char *copy;
    int rc;

    if (cw_entry_decode(val->mv_data, val->mv_size, &view) < 0)
        return store_obj_del_txn(st, txn, key);
    copy = malloc(val->mv_size);
    if (copy == NULL) return -ENOMEM;
    memcpy(copy, val->mv_data, val->mv_size);
    /* The header is the first sizeof(h) bytes (core/entry.h), checked by decode. */
    h = view.h;
    h.flags |= CW_ENTRY_SOFT_PURGED;
    /* Stale from now on, with the stale windows the response gave, counted from now: an entry
     * without stale-while-revalidate is revalidated at once, never served STALE until its old
     * expiry. */
    if (h.fresh_until_ms > now_ms) {
        int64_t shift = h.fresh_until_ms - now_ms;
        h.fresh_until_ms = now_ms;
        h.swr_until_ms = h.swr_until_ms - shift > now_ms ? h.swr_until_ms - shift : now_ms;
        h.sie_until_ms = h.sie_until_ms - shift > now_ms ? h.sie_until_ms - shift : now_ms;
    }
    memcpy(copy, &h, sizeof(h));
    nv.mv_size = val->mv_size;
    nv.mv_data = copy;
    rc = mdb_put(txn, st->obj, &k, &nv, 0);
    free(copy);
    if (rc != MDB_SUCCESS) {
        if (rc != MDB_MAP_FULL) store_log_mdb("soft purge mdb_put(obj)", key, rc);
        return store_errno(rc);
    }
    return 0;
}

/* Purges key's entry in txn: 0, -ENOENT, or -errno logged. */
static int store_purge_one_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                               bool soft, int64_t now_ms)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    int rc;

    if (!soft) return store_obj_del_txn(st, txn, key);
    rc = mdb_get(txn, st->obj, &k, &v);
    if (rc == MDB_NOTFOUND) return -ENOENT;
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_get(obj)", key, rc);
        return store_errno(rc);
    }
    return store_soft_purge_txn(st, txn, key, &v, now_ms);
}

int cw_store_purge_key(struct cw_store *st, const struct cw_key *key, bool soft, int64_t now_ms)
{
    MDB_txn *txn;
    int rc;

    rc = store_txn_write(st, &txn, "purge", key);
    if (rc < 0) return rc;
    rc = store_purge_one_txn(st, txn, key, soft, now_ms);
    if (rc < 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return store_commit(txn, "purge", key);
}

/* One write txn over at most STORE_PURGE_BATCH keys of tag, after *after when *has_after
 * (dups are sorted by key, so the walk resumes past what a soft purge kept). */
static int store_purge_tag_batch(struct cw_store *st, struct cw_str tag, bool soft, int64_t now_ms,
                                 struct cw_key *after, bool *has_after, size_t *count, bool *done)
{
    struct cw_key keys[STORE_PURGE_BATCH];
    MDB_val k = {tag.len, (void *)tag.p};
    MDB_val v = {sizeof(after->h), after->h};
    MDB_cursor *cur;
    MDB_txn *txn;
    size_t n = 0;
    int rc;

    rc = store_txn_write(st, &txn, "purge tag", NULL);
    if (rc < 0) return rc;
    rc = mdb_cursor_open(txn, st->tag, &cur);
    if (rc != MDB_SUCCESS) goto out_mdb;
    rc = mdb_cursor_get(cur, &k, &v, *has_after ? MDB_GET_BOTH_RANGE : MDB_SET_KEY);
    if (rc == MDB_SUCCESS && *has_after && v.mv_size == sizeof(after->h) &&
        memcmp(v.mv_data, after->h, sizeof(after->h)) == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
    while (rc == MDB_SUCCESS && n < STORE_PURGE_BATCH) {
        if (v.mv_size == sizeof(keys[n].h)) memcpy(keys[n++].h, v.mv_data, v.mv_size);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) goto out_mdb;
    *done = rc == MDB_NOTFOUND;
    for (size_t i = 0; i < n; i++) {
        rc = store_purge_one_txn(st, txn, &keys[i], soft, now_ms);
        if (rc == -ENOENT) {
            /* Dangling: the entry went without its tags (a bad entry). */
            rc = store_tag_del(st, txn, &keys[i], tag);
        } else if (rc == 0) {
            (*count)++;
        }
        if (rc < 0) goto out_abort_txn;
    }
    if (n > 0) {
        *after = keys[n - 1];
        *has_after = true;
    }
    return store_commit(txn, "purge tag", NULL);

out_mdb:
    store_log_mdb("purge tag", NULL, rc);
    rc = store_errno(rc);
out_abort_txn:
    mdb_txn_abort(txn);
    return rc;
}

int cw_store_purge_tag_step(struct cw_store *st, struct cw_str tag, bool soft, int64_t now_ms,
                            size_t max_batches, struct cw_store_purge_pos *pos, size_t *count)
{
    struct cw_key after;
    int rc = 0;

    static_assert(sizeof(pos->key) == sizeof(after.h), "a purge position holds a whole key");
    if (tag.len == 0 || tag.len > CW_LIMIT_TAG_BYTES) return -EINVAL;
    memcpy(after.h, pos->key, sizeof(after.h));
    for (size_t i = 0; i < max_batches && !pos->done && rc == 0; i++)
        rc = store_purge_tag_batch(st, tag, soft, now_ms, &after, &pos->has_key, count, &pos->done);
    memcpy(pos->key, after.h, sizeof(pos->key));
    return rc;
}

int cw_store_purge_tag(struct cw_store *st, struct cw_str tag, bool soft, int64_t now_ms,
                       size_t *count)
{
    struct cw_store_purge_pos pos = {0};
    size_t purged = 0;
    int rc = 0;

    while (!pos.done && rc == 0)
        rc = cw_store_purge_tag_step(st, tag, soft, now_ms, SIZE_MAX, &pos, &purged);
    if (count != NULL) *count = purged;
    return rc;
}

/* One write txn over at most STORE_PURGE_BATCH entries of obj from *from (inclusive),
 * leaving *from at the first key not visited. */
static int store_purge_prefix_batch(struct cw_store *st, struct cw_str prefix, bool soft,
                                    int64_t now_ms, struct cw_key *from, size_t *count, bool *done)
{
    struct cw_key keys[STORE_PURGE_BATCH];
    struct cw_entry_view view;
    MDB_val k = {sizeof(from->h), from->h};
    MDB_val v;
    MDB_cursor *cur;
    MDB_txn *txn;
    size_t n = 0;
    size_t visited = 0;
    int rc;

    rc = store_txn_write(st, &txn, "purge prefix", NULL);
    if (rc < 0) return rc;
    rc = mdb_cursor_open(txn, st->obj, &cur);
    if (rc != MDB_SUCCESS) goto out_mdb;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == MDB_SUCCESS && visited < STORE_PURGE_BATCH) {
        visited++;
        if (k.mv_size == sizeof(keys[n].h) && cw_entry_decode(v.mv_data, v.mv_size, &view) == 0 &&
            view.key.len >= prefix.len && memcmp(view.key.p, prefix.p, prefix.len) == 0) {
            memcpy(keys[n++].h, k.mv_data, k.mv_size);
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_SUCCESS && k.mv_size == sizeof(from->h)) memcpy(from->h, k.mv_data, k.mv_size);
    mdb_cursor_close(cur);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) goto out_mdb;
    *done = rc == MDB_NOTFOUND;
    for (size_t i = 0; i < n; i++) {
        rc = store_purge_one_txn(st, txn, &keys[i], soft, now_ms);
        if (rc < 0) goto out_abort_txn;
        (*count)++;
    }
    return store_commit(txn, "purge prefix", NULL);

out_mdb:
    store_log_mdb("purge prefix", NULL, rc);
    rc = store_errno(rc);
out_abort_txn:
    mdb_txn_abort(txn);
    return rc;
}

int cw_store_purge_prefix_step(struct cw_store *st, struct cw_str prefix, bool soft, int64_t now_ms,
                               size_t max_batches, struct cw_store_purge_pos *pos, size_t *count)
{
    struct cw_key from;
    int rc = 0;

    if (prefix.len == 0 || prefix.len > CW_LIMIT_KEY_BYTES) return -EINVAL;
    memcpy(from.h, pos->key, sizeof(from.h)); /* all zero at first: the smallest key */
    for (size_t i = 0; i < max_batches && !pos->done && rc == 0; i++)
        rc = store_purge_prefix_batch(st, prefix, soft, now_ms, &from, count, &pos->done);
    memcpy(pos->key, from.h, sizeof(pos->key));
    pos->has_key = true;
    return rc;
}

int cw_store_purge_prefix(struct cw_store *st, struct cw_str prefix, bool soft, int64_t now_ms,
                          size_t *count)
{
    struct cw_store_purge_pos pos = {0};
    size_t purged = 0;
    int rc = 0;

    while (!pos.done && rc == 0)
        rc = cw_store_purge_prefix_step(st, prefix, soft, now_ms, SIZE_MAX, &pos, &purged);
    if (count != NULL) *count = purged;
    return rc;
}
