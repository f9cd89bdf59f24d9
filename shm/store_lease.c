/* shm/store_lease.c - lease records: request coalescing and background refresh; see the
 * lease section of shm/store.h.
 *
 * A record is the bytes of struct cw_store_lease under the 16-byte key hash. A record of
 * any other size (among them the 24-byte records of builds before tokens), or whose token
 * and pid disagree on being 0, is malformed: readers treat it as absent, and the next
 * write to that key (take or release) replaces or deletes it. */
#include "shm/store.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "core/log.h"
#include "shm/store_int.h"

static_assert(sizeof(struct cw_store_lease) == 32, "lease record layout is pinned");

static bool store_lease_decode(const MDB_val *v, struct cw_store_lease *out);
static uint64_t store_lease_token_new(struct cw_store *st);
static bool store_lease_is_live(const struct cw_store_lease *l, int64_t now_ms);
static int store_lease_take_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                                const struct cw_store_lease *want, int64_t now_ms,
                                struct cw_store_lease *holder);

/* Copies a well-formed record out (the map's bytes may be unaligned): true, or false for a
 * malformed one, or a kind this build does not know. */
static bool store_lease_decode(const MDB_val *v, struct cw_store_lease *out)
{
    if (v->mv_size != sizeof(*out)) return false;
    memcpy(out, v->mv_data, sizeof(*out));
    return out->pid >= 0 && out->kind <= CW_STORE_LEASE_PASS &&
           (out->token == 0) == (out->pid == 0);
}

/* A token no take of this handle returned before: the counter moves on every call, from
 * threads of one process at once too (relaxed: only the number's uniqueness matters), and
 * wraps only after 2^64 takes. 0 is kept for wanted refreshes, which nobody owns. */
static uint64_t store_lease_token_new(struct cw_store *st)
{
    uint64_t t;

    do {
        t = atomic_fetch_add_explicit(&st->lease_token, 1, memory_order_relaxed) + 1;
    } while (t == 0);
    return t;
}

/* Whether a record still stands at now_ms: its deadline is in the future and its owner
 * lives. pid 0 (a REFRESH wanted, nobody running it) has no owner to die and expires by
 * its deadline only. kill(pid, 0) fails with ESRCH only for a pid that does not exist;
 * EPERM means it exists under another user, so it counts as alive. A recycled pid keeps a
 * dead owner's lease until its deadline, which is why every lease has one. */
static bool store_lease_is_live(const struct cw_store_lease *l, int64_t now_ms)
{
    if (l->deadline_ms <= now_ms) return false;
    if (l->pid == 0) return true;
    return !(kill((pid_t)l->pid, 0) == -1 && errno == ESRCH);
}

bool cw_store_lease_is_blocking(const struct cw_store_lease *l, int64_t now_ms)
{
    return l->pid != 0 && store_lease_is_live(l, now_ms);
}

/* The take inside txn: 0 when want was written, -EBUSY with *holder (may be NULL) when a
 * live record stands, -errno logged. */
static int store_lease_take_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                                const struct cw_store_lease *want, int64_t now_ms,
                                struct cw_store_lease *holder)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    struct cw_store_lease cur;
    int rc;

    rc = mdb_get(txn, st->lease, &k, &v);
    /* A refresh that is only wanted (pid 0) is claimed by the first process that will do the
     * work: the refresher, or a foreground fetch. */
    if (rc == MDB_SUCCESS && store_lease_decode(&v, &cur) &&
        (want->pid != 0 ? cw_store_lease_is_blocking(&cur, now_ms)
                        : store_lease_is_live(&cur, now_ms))) {
        if (holder != NULL) *holder = cur;
        return -EBUSY;
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        store_log_mdb("mdb_get(lease)", key, rc);
        return store_errno(rc);
    }
    /* Absent, expired, dead or malformed: overwritten in place. */
    v.mv_size = sizeof(*want);
    v.mv_data = (void *)want;
    rc = mdb_put(txn, st->lease, &k, &v, 0);
    if (rc != MDB_SUCCESS) {
        if (rc != MDB_MAP_FULL) store_log_mdb("mdb_put(lease)", key, rc);
        return store_errno(rc);
    }
    return 0;
}

int cw_store_lease_take(struct cw_store *st, const struct cw_key *key,
                        enum cw_store_lease_kind kind, int32_t pid, int64_t now_ms,
                        int64_t deadline_ms, uint64_t *token, struct cw_store_lease *holder)
{
    struct cw_store_lease want;
    MDB_txn *txn;
    int rc;

    if (pid < 0 || (unsigned)kind > CW_STORE_LEASE_PASS) return -EINVAL;
    if (pid == 0 && kind != CW_STORE_LEASE_REFRESH) return -EINVAL;
    memset(&want, 0, sizeof(want));
    want.pid = pid;
    want.kind = (uint32_t)kind;
    want.start_ms = now_ms;
    want.deadline_ms = deadline_ms;
    /* A new token on every take, takeovers included: the request that took the record
     * before keeps its old token, which no longer releases anything. */
    want.token = pid == 0 ? 0 : store_lease_token_new(st);

    rc = store_txn_write(st, &txn, "lease take", key);
    if (rc < 0) return rc;
    rc = store_lease_take_txn(st, txn, key, &want, now_ms, holder);
    if (rc < 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    rc = store_commit(txn, "lease take", key);
    if (rc < 0) return rc;
    if (token != NULL) *token = want.token;
    return 0;
}

int cw_store_lease_get(struct cw_store_reader *r, const struct cw_key *key,
                       struct cw_store_lease *out)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    int rc;

    rc = store_renew(r);
    if (rc < 0) return rc;
    rc = mdb_get(r->txn, r->st->lease, &k, &v);
    if (rc == MDB_SUCCESS) {
        rc = store_lease_decode(&v, out) ? 0 : -ENOENT;
    } else {
        if (rc != MDB_NOTFOUND) store_log_mdb("mdb_get(lease)", key, rc);
        rc = store_errno(rc);
    }
    mdb_txn_reset(r->txn);
    return rc;
}

/* Deletes key's record when it is exactly *expected (kind, owner, start, deadline, token). */
static int store_lease_release_exact_txn(struct cw_store *st, MDB_txn *txn,
                                         const struct cw_key *key,
                                         const struct cw_store_lease *expected)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    struct cw_store_lease cur;
    int rc;

    rc = mdb_get(txn, st->lease, &k, &v);
    if (rc == MDB_NOTFOUND) return -ENOENT;
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_get(lease)", key, rc);
        return store_errno(rc);
    }
    if (!store_lease_decode(&v, &cur) || cur.pid != expected->pid || cur.kind != expected->kind ||
        cur.start_ms != expected->start_ms || cur.deadline_ms != expected->deadline_ms ||
        cur.token != expected->token)
        return -ENOENT;
    rc = mdb_del(txn, st->lease, &k, NULL);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_del(lease)", key, rc);
        return store_errno(rc);
    }
    return 0;
}

int cw_store_lease_release_exact(struct cw_store *st, const struct cw_key *key,
                                 const struct cw_store_lease *expected)
{
    MDB_txn *txn;
    int rc, res;

    rc = store_txn_write(st, &txn, "lease reap", key);
    if (rc < 0) return rc;
    res = store_lease_release_exact_txn(st, txn, key, expected);
    if (res < 0) {
        mdb_txn_abort(txn);
        return res;
    }
    rc = store_commit(txn, "lease reap", key);
    return rc < 0 ? rc : 0;
}

int store_lease_release_txn(struct cw_store *st, MDB_txn *txn, const struct cw_key *key,
                            uint64_t token)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    struct cw_store_lease cur;
    bool ours;
    int rc;

    rc = mdb_get(txn, st->lease, &k, &v);
    if (rc == MDB_NOTFOUND) return -ENOENT;
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_get(lease)", key, rc);
        return store_errno(rc);
    }
    if (store_lease_decode(&v, &cur)) {
        if (cur.token != token) return -ENOENT; /* taken over since: another's now */
        ours = true;
    } else {
        ours = false; /* malformed: deleted on this write, reported as absent */
    }
    rc = mdb_del(txn, st->lease, &k, NULL);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_del(lease)", key, rc);
        return store_errno(rc);
    }
    return ours ? 0 : -ENOENT;
}

int cw_store_lease_release(struct cw_store *st, const struct cw_key *key, uint64_t token)
{
    MDB_txn *txn;
    int rc;
    int res;

    rc = store_txn_write(st, &txn, "lease release", key);
    if (rc < 0) return rc;
    res = store_lease_release_txn(st, txn, key, token);
    if (res < 0 && res != -ENOENT) {
        mdb_txn_abort(txn);
        return res;
    }
    /* Committed even on -ENOENT: a malformed record may have been deleted. */
    rc = store_commit(txn, "lease release", key);
    return rc < 0 ? rc : res;
}

int cw_store_lease_scan(struct cw_store_reader *r, const struct cw_key *from, cw_store_lease_fn fn,
                        void *cls, size_t max)
{
    MDB_cursor *cur;
    MDB_val k;
    MDB_val v;
    struct cw_store_lease l;
    struct cw_key key;
    size_t visited = 0;
    int rc;

    rc = store_renew(r);
    if (rc < 0) return rc;
    rc = mdb_cursor_open(r->txn, r->st->lease, &cur);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("lease scan mdb_cursor_open", NULL, rc);
        mdb_txn_reset(r->txn);
        return store_errno(rc);
    }
    if (from != NULL) {
        k.mv_size = sizeof(from->h);
        k.mv_data = (void *)from->h;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    while (rc == MDB_SUCCESS && visited < max) {
        visited++;
        /* Malformed records are skipped (counted: they cost a visit too). */
        if (k.mv_size == sizeof(key.h) && store_lease_decode(&v, &l)) {
            memcpy(key.h, k.mv_data, sizeof(key.h));
            if (!fn(cls, &key, &l)) break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_reset(r->txn);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
        store_log_mdb("lease scan mdb_cursor_get", NULL, rc);
        return store_errno(rc);
    }
    return visited > INT32_MAX ? INT32_MAX : (int)visited;
}

int cw_store_put_release(struct cw_store *st, const struct cw_key *key,
                         const struct cw_key *lease_key, uint64_t token,
                         const struct cw_entry_hdr *h, struct cw_str full_key,
                         const struct cw_entry_header *hdrs, size_t n, struct cw_str body)
{
    struct store_put_src src = {.h = h, .full_key = full_key, .hdrs = hdrs, .n = n, .body = body};

    return store_put(st, key, lease_key, token, &src);
}

int cw_store_put_release_encoded(struct cw_store *st, const struct cw_key *key,
                                 const struct cw_key *lease_key, uint64_t token, const void *p,
                                 size_t len)
{
    struct store_put_src src = {.bytes = cw_str_make(p, len)};

    return store_put(st, key, lease_key, token, &src);
}
