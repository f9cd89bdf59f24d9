/* shm/store.c - the L1 cache on LMDB; see shm/store.h. */
#include "shm/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/log.h"
#include "shm/store_int.h"

#define STORE_FORMAT 1u
#define STORE_MAXDBS 8
/* Each worker and the refresher keep two readers for life, others are short; a reload
 * overlaps two generations of children. */
#define STORE_MAXREADERS (4 * (2 * CW_LIMIT_WORKERS + 8))
#define STORE_FILE_MODE  0640
#define STORE_DIR_MODE   0750
#define STORE_ENV_FLAGS                                                                            \
    (MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD | MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC)
#define STORE_META_FORMAT "format"
#define STORE_META_SECRET "secret"

static bool store_is_damage(int rc);
static int store_random(void *buf, size_t len);
static int store_mkdir_parents(const char *path);
static int store_meta_init(struct cw_store *st, MDB_txn *txn, char *why, size_t why_size);
static int store_dbs_open(struct cw_store *st, char *why, size_t why_size);
static int store_env_open(struct cw_store *st, uint64_t size_bytes, char *why, size_t why_size);
static int store_dir_lock(const char *path, int *dfd);
static int store_move_aside(const char *path, const struct stat *seen);
static int store_lookup(struct cw_store_reader *r, const struct cw_key *key, struct cw_str full_key,
                        MDB_val *val, struct cw_entry_view *view);
static int store_put_once(struct cw_store *st, const struct cw_key *key,
                          const struct cw_key *lease_key, uint64_t token,
                          const struct store_put_src *src, size_t need, bool *over);
static int store_put_unindex_old(struct cw_store *st, MDB_txn *txn, const struct cw_key *key);

/* LMDB's codes stop here (STYLE.md, Errors): each becomes the one errno that means it. */
int store_errno(int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return -ENOSPC;
    case MDB_READERS_FULL:
        return -EAGAIN;
    case MDB_MAP_RESIZED:
        return -ESTALE;
    default:
        return rc > 0 ? -rc : -EIO;
    }
}

int store_resized(struct cw_store *st)
{
    if (!atomic_exchange_explicit(&st->resized, true, memory_order_relaxed))
        cw_notice("store: %s: the cache map was grown by a newer configuration (cache.size); "
                  "this process answers its remaining requests without the cache",
                  st->path);
    return -ESTALE;
}

void store_log_mdb(const char *op, const struct cw_key *key, int rc)
{
    char hex[33];

    if (key == NULL) {
        cw_err("store: %s: %s", op, mdb_strerror(rc));
        return;
    }
    cw_key_hex(key, hex);
    cw_err("store: %s key %s: %s", op, hex, mdb_strerror(rc));
}

/* Codes from mdb_env_open() that mean the file itself is bad, not the system. */
static bool store_is_damage(int rc)
{
    return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH ||
           rc == MDB_PANIC;
}

/* mkdir -p of the directory part of path, mode STORE_DIR_MODE: 0 or -errno, logged. */
static int store_mkdir_parents(const char *path)
{
    char dir[PATH_MAX];
    size_t len = strlen(path);

    if (len >= sizeof(dir)) {
        cw_err("store: open %s: path longer than PATH_MAX", path);
        return -ENAMETOOLONG;
    }
    memcpy(dir, path, len + 1);
    while (len > 0 && dir[len - 1] != '/') {
        len--;
    }
    if (len <= 1) return 0; /* relative file in the cwd, or directly under "/" */
    dir[len - 1] = '\0';
    for (size_t i = 1; i < len; i++) {
        if (dir[i] != '/' && dir[i] != '\0') continue;
        dir[i] = '\0';
        if (mkdir(dir, STORE_DIR_MODE) == -1 && errno != EEXIST) {
            int err = errno;
            cw_err("store: mkdir %s: %s", dir, strerror(err));
            return -err;
        }
        if (i < len - 1) dir[i] = '/';
    }
    return 0;
}

/* Fills buf with len random bytes (getrandom): 0, or -errno logged. */
static int store_random(void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n == -1) {
            if (errno == EINTR) continue;
            int err = errno;
            cw_err("store: getrandom: %s", strerror(err));
            return -err;
        }
        got += (size_t)n;
    }
    return 0;
}

/* Check-then-write in the caller's write txn, so that processes opening a new file at once
 * agree on one secret: the first to commit writes it, the others find it (MDB_NOOVERWRITE
 * hands back the stored value on MDB_KEYEXIST). 0, -EBADMSG with why filled when the file is
 * not ours (wrong format, a half-written meta, or entries without any meta), -errno. */
static int store_meta_init(struct cw_store *st, MDB_txn *txn, char *why, size_t why_size)
{
    uint32_t format = STORE_FORMAT;
    uint8_t secret[16];
    MDB_val k_fmt = {sizeof(STORE_META_FORMAT) - 1, STORE_META_FORMAT};
    MDB_val k_sec = {sizeof(STORE_META_SECRET) - 1, STORE_META_SECRET};
    MDB_val v_fmt = {sizeof(format), &format};
    MDB_val v_sec = {sizeof(secret), secret};
    MDB_stat ms;
    int rc;

    rc = mdb_get(txn, st->meta, &k_fmt, &v_fmt);
    if (rc == MDB_NOTFOUND) {
        rc = mdb_stat(txn, st->obj, &ms);
        if (rc != MDB_SUCCESS) goto out_mdb;
        if (ms.ms_entries > 0) {
            snprintf(why, why_size, "%zu entries but no format record", ms.ms_entries);
            return -EBADMSG;
        }
        rc = store_random(secret, sizeof(secret));
        if (rc < 0) return rc;
        v_fmt.mv_size = sizeof(format);
        v_fmt.mv_data = &format;
        rc = mdb_put(txn, st->meta, &k_fmt, &v_fmt, MDB_NOOVERWRITE);
        if (rc != MDB_SUCCESS && rc != MDB_KEYEXIST) goto out_mdb;
        rc = mdb_put(txn, st->meta, &k_sec, &v_sec, MDB_NOOVERWRITE);
        if (rc != MDB_SUCCESS && rc != MDB_KEYEXIST) goto out_mdb;
    } else if (rc != MDB_SUCCESS) {
        goto out_mdb;
    } else {
        rc = mdb_get(txn, st->meta, &k_sec, &v_sec);
        if (rc == MDB_NOTFOUND) {
            snprintf(why, why_size, "meta has a format but no secret");
            return -EBADMSG;
        }
        if (rc != MDB_SUCCESS) goto out_mdb;
    }

    if (v_fmt.mv_size != sizeof(format)) {
        snprintf(why, why_size, "meta format record is %zu bytes", v_fmt.mv_size);
        return -EBADMSG;
    }
    memcpy(&format, v_fmt.mv_data, sizeof(format));
    if (format != STORE_FORMAT) {
        snprintf(why, why_size, "format %" PRIu32 ", expected %u", format, STORE_FORMAT);
        return -EBADMSG;
    }
    if (v_sec.mv_size != sizeof(st->secret)) {
        snprintf(why, why_size, "meta secret is %zu bytes", v_sec.mv_size);
        return -EBADMSG;
    }
    memcpy(st->secret, v_sec.mv_data, sizeof(st->secret));
    return 0;

out_mdb:
    store_log_mdb("open meta", NULL, rc);
    return store_errno(rc);
}

/* Opens (creating) the named databases and the meta record in one write txn. */
static int store_dbs_open(struct cw_store *st, char *why, size_t why_size)
{
    static const struct {
        const char *name;
        unsigned int flags;
        size_t off;
    } dbs[] = {
        {"obj", 0, offsetof(struct cw_store, obj)},
        {"vary", 0, offsetof(struct cw_store, vary)},
        {"lease", 0, offsetof(struct cw_store, lease)},
        {"tag", MDB_DUPSORT, offsetof(struct cw_store, tag)},
        {"meta", 0, offsetof(struct cw_store, meta)},
    };
    MDB_txn *txn;
    int rc;

    rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("open mdb_txn_begin", NULL, rc);
        return store_errno(rc);
    }
    for (size_t i = 0; i < CW_ARRAY_LEN(dbs); i++) {
        MDB_dbi *dbi = (MDB_dbi *)((char *)st + dbs[i].off);
        rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE | dbs[i].flags, dbi);
        if (rc == MDB_INCOMPATIBLE || store_is_damage(rc)) {
            /* A key of that name in the main db, or a db with other flags: not our file. */
            snprintf(why, why_size, "mdb_dbi_open(%s): %s", dbs[i].name, mdb_strerror(rc));
            rc = -EBADMSG;
            goto out_abort_txn;
        }
        if (rc != MDB_SUCCESS) {
            store_log_mdb("open mdb_dbi_open", NULL, rc);
            rc = store_errno(rc);
            goto out_abort_txn;
        }
    }
    rc = store_meta_init(st, txn, why, why_size);
    if (rc < 0) goto out_abort_txn;
    rc = mdb_txn_commit(txn);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("open mdb_txn_commit", NULL, rc);
        return store_errno(rc);
    }
    return 0;

out_abort_txn:
    mdb_txn_abort(txn);
    return rc;
}

/* One attempt at opening the environment into st->env: 0, -EBADMSG with why filled when
 * the file is damaged or not ours (st->env is then closed), or -errno logged. */
static int store_env_open(struct cw_store *st, uint64_t size_bytes, char *why, size_t why_size)
{
    uint64_t map_bytes = size_bytes;
    MDB_envinfo info;
    struct stat sb;
    MDB_stat ms;
    int rc;

    rc = mdb_env_create(&st->env);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_env_create", NULL, rc);
        return store_errno(rc);
    }
    /* The map covers at least the whole file: LMDB never shrinks one (with MDB_WRITEMAP it
     * is as long as the largest map ever used on it), and a map smaller than another
     * process's would meet MDB_MAP_RESIZED once that one wrote past it. A smaller cache.size
     * bounds eviction instead (budget_pages). */
    if (stat(st->path, &sb) == 0 && (uint64_t)sb.st_size > map_bytes)
        map_bytes = (uint64_t)sb.st_size;
    rc = mdb_env_set_mapsize(st->env, (size_t)map_bytes);
    if (rc == MDB_SUCCESS) rc = mdb_env_set_maxdbs(st->env, STORE_MAXDBS);
    if (rc == MDB_SUCCESS) rc = mdb_env_set_maxreaders(st->env, STORE_MAXREADERS);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_env_set", NULL, rc);
        rc = store_errno(rc);
        goto out_close_env;
    }
    rc = mdb_env_open(st->env, st->path, STORE_ENV_FLAGS, STORE_FILE_MODE);
    if (store_is_damage(rc)) {
        snprintf(why, why_size, "mdb_env_open: %s", mdb_strerror(rc));
        rc = -EBADMSG;
        goto out_close_env;
    }
    if (rc != MDB_SUCCESS) {
        cw_err("store: mdb_env_open %s: %s", st->path, mdb_strerror(rc));
        rc = store_errno(rc);
        goto out_close_env;
    }
    rc = store_dbs_open(st, why, why_size);
    if (rc < 0) goto out_close_env;

    rc = mdb_env_info(st->env, &info);
    if (rc == MDB_SUCCESS) rc = mdb_env_stat(st->env, &ms);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("open mdb_env_info", NULL, rc);
        rc = store_errno(rc);
        goto out_close_env;
    }
    st->page_bytes = ms.ms_psize;
    st->map_pages = info.me_mapsize / ms.ms_psize;
    st->budget_pages = size_bytes / ms.ms_psize;
    if (st->budget_pages > st->map_pages) st->budget_pages = st->map_pages;
    return 0;

out_close_env:
    /* mdb_env_close() is required even when mdb_env_open() failed. */
    mdb_env_close(st->env);
    st->env = NULL;
    return rc;
}

/* Locks the directory that holds path (flock, exclusive): 0 and *dfd, or -errno logged.
 * Every open in every process holds it from mdb_env_open() to the end of the meta check,
 * so that no process can open the old "-lock" file and then the new data file while
 * another moves a damaged pair aside; opens are rare, so serialising them costs little. */
static int store_dir_lock(const char *path, int *dfd)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd;

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else if (slash == path) {
        snprintf(dir, sizeof(dir), "/");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        int err = errno;
        cw_err("store: open %s: %s", dir, strerror(err));
        return -err;
    }
    while (flock(fd, LOCK_EX) == -1) {
        int err = errno;
        if (err == EINTR) continue;
        cw_err("store: flock %s: %s", dir, strerror(err));
        close(fd);
        return -err;
    }
    *dfd = fd;
    return 0;
}

/* Renames a damaged path and its "-lock" to "<path>.corrupt-<unix time>[-lock]", under the
 * directory lock. Processes that still have the old pair open keep using both, consistently;
 * new opens get a fresh pair. Skipped when path is no longer the file found damaged (seen). */
static int store_move_aside(const char *path, const struct stat *seen)
{
    char to[PATH_MAX + 64];
    char lock_from[PATH_MAX + 8];
    char lock_to[PATH_MAX + 72];
    struct stat now;
    long long t = (long long)time(NULL);

    if (stat(path, &now) == -1 || seen == NULL || now.st_dev != seen->st_dev ||
        now.st_ino != seen->st_ino) {
        return 0;
    }
    snprintf(to, sizeof(to), "%s.corrupt-%lld", path, t);
    snprintf(lock_from, sizeof(lock_from), "%s-lock", path);
    snprintf(lock_to, sizeof(lock_to), "%s-lock", to);
    if (rename(path, to) == -1) {
        int err = errno;
        cw_err("store: rename %s to %s: %s", path, to, strerror(err));
        return -err;
    }
    if (rename(lock_from, lock_to) == -1 && errno != ENOENT) {
        int err = errno;
        cw_err("store: rename %s to %s: %s", lock_from, lock_to, strerror(err));
        return -err;
    }
    cw_err("store: %s moved aside to %s", path, to);
    return 0;
}

int cw_store_open(const char *path, uint64_t size_bytes, struct cw_store **out)
{
    struct cw_store *st;
    struct stat seen;
    uint64_t token0;
    bool have_seen;
    char why[256];
    int dfd = -1;
    int rc;

    if (size_bytes == 0 || size_bytes > SIZE_MAX) return -EINVAL;
    rc = store_mkdir_parents(path);
    if (rc < 0) return rc;
    /* Lease tokens start at a random point, so that a handle never hands out the tokens of
     * another, in this process or in one whose pid it reuses (see store.h, Leases). */
    rc = store_random(&token0, sizeof(token0));
    if (rc < 0) return rc;
    st = calloc(1, sizeof(*st));
    if (st == NULL) return -ENOMEM;
    st->path = strdup(path);
    if (st->path == NULL) {
        rc = -ENOMEM;
        goto out_free_st;
    }
    atomic_init(&st->lease_token, token0);
    rc = store_dir_lock(path, &dfd);
    if (rc < 0) goto out_free_path;

    /* At most twice: a damaged file is moved aside once and the open retried. */
    for (int attempt = 0; attempt < 2; attempt++) {
        why[0] = '\0';
        have_seen = stat(path, &seen) == 0;
        rc = store_env_open(st, size_bytes, why, sizeof(why));
        if (rc != -EBADMSG) break;
        cw_err("store: %s is damaged: %s", path, why);
        if (attempt == 1) break;
        rc = store_move_aside(path, have_seen ? &seen : NULL);
        if (rc < 0) break;
    }
    close(dfd); /* releases the flock */
    if (rc < 0) goto out_free_path;
    *out = st;
    return 0;

out_free_path:
    free(st->path);
out_free_st:
    free(st);
    return rc;
}

void cw_store_close(struct cw_store *st)
{
    if (st == NULL) return;
    mdb_env_close(st->env);
    free(st->path);
    free(st);
}

const uint8_t *cw_store_secret(const struct cw_store *st)
{
    return st->secret;
}

uint64_t cw_store_map_bytes(const struct cw_store *st)
{
    return (uint64_t)st->map_pages * st->page_bytes;
}

int cw_store_reader_open(struct cw_store *st, struct cw_store_reader **out)
{
    struct cw_store_reader *r;
    int rc;

    r = calloc(1, sizeof(*r));
    if (r == NULL) return -ENOMEM;
    r->st = st;
    rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &r->txn);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_txn_begin(read)", NULL, rc);
        free(r);
        return store_errno(rc);
    }
    mdb_txn_reset(r->txn);
    *out = r;
    return 0;
}

int cw_store_reader_open_nowrite(struct cw_store *st, struct cw_store_reader **out)
{
    int rc = cw_store_reader_open(st, out);

    if (rc == 0) (*out)->no_write = true;
    return rc;
}

void cw_store_reader_close(struct cw_store_reader *r)
{
    if (r == NULL) return;
    mdb_txn_abort(r->txn);
    free(r);
}

int store_renew(struct cw_store_reader *r)
{
    int rc;

    if (atomic_load_explicit(&r->st->resized, memory_order_relaxed)) return -ESTALE;
    rc = mdb_txn_renew(r->txn);
    if (rc == MDB_MAP_RESIZED) return store_resized(r->st);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_txn_renew", NULL, rc);
        return store_errno(rc);
    }
    return 0;
}

/* Begins a txn of flags (0 or MDB_RDONLY) for op (and key, in the log); store_int.h. */
static int store_txn_begin(struct cw_store *st, MDB_txn **txn, unsigned flags, const char *op,
                           const struct cw_key *key)
{
    int rc;

    if (atomic_load_explicit(&st->resized, memory_order_relaxed)) return -ESTALE;
    rc = mdb_txn_begin(st->env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) return store_resized(st);
    if (rc != MDB_SUCCESS) {
        char what[64];
        snprintf(what, sizeof(what), "%s mdb_txn_begin%s", op, flags ? "(read)" : "");
        store_log_mdb(what, key, rc);
        return store_errno(rc);
    }
    return 0;
}

int store_txn_write(struct cw_store *st, MDB_txn **txn, const char *op, const struct cw_key *key)
{
    return store_txn_begin(st, txn, 0, op, key);
}

int store_txn_read(struct cw_store *st, MDB_txn **txn, const char *op)
{
    return store_txn_begin(st, txn, MDB_RDONLY, op, NULL);
}

int store_commit(MDB_txn *txn, const char *op, const struct cw_key *key)
{
    int rc = mdb_txn_commit(txn);

    if (rc == MDB_SUCCESS) return 0;
    if (rc != MDB_MAP_FULL) {
        char what[64];
        snprintf(what, sizeof(what), "%s mdb_txn_commit", op);
        store_log_mdb(what, key, rc);
    }
    return store_errno(rc);
}

int cw_store_drop_bad(struct cw_store *st, const struct cw_key *key)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    struct cw_entry_view view;
    MDB_txn *txn;
    size_t len;
    char hex[33];
    int rc;

    rc = store_txn_write(st, &txn, "drop bad entry", key);
    if (rc < 0) return rc;
    rc = mdb_get(txn, st->obj, &k, &v);
    if (rc == MDB_NOTFOUND ||
        (rc == MDB_SUCCESS && cw_entry_decode(v.mv_data, v.mv_size, &view) == 0)) {
        mdb_txn_abort(txn);
        return -ENOENT;
    }
    len = rc == MDB_SUCCESS ? v.mv_size : 0;
    if (rc == MDB_SUCCESS) rc = mdb_del(txn, st->obj, &k, NULL);
    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_del(obj)", key, rc);
        mdb_txn_abort(txn);
        return store_errno(rc);
    }
    rc = store_commit(txn, "mdb_del(obj)", key);
    if (rc < 0) return rc;
    cw_key_hex(key, hex);
    cw_warn("store: bad entry %s: %zu bytes failed validation, deleted", hex, len);
    return 0;
}

/* Looks key up in r's renewed read txn: 0 with *view valid (and *val its bytes) until the
 * caller resets the txn, which it must; otherwise the txn is reset here and -ENOENT (a miss,
 * or a stored full key other than full_key: a hash collision), -EBADMSG (the stored bytes
 * failed validation and were deleted) or -errno logged. full_key.p NULL skips the compare. */
static int store_lookup(struct cw_store_reader *r, const struct cw_key *key, struct cw_str full_key,
                        MDB_val *val, struct cw_entry_view *view)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    int rc;

    rc = store_renew(r);
    if (rc < 0) return rc;
    rc = mdb_get(r->txn, r->st->obj, &k, val);
    if (rc != MDB_SUCCESS) {
        if (rc != MDB_NOTFOUND) store_log_mdb("mdb_get(obj)", key, rc);
        mdb_txn_reset(r->txn);
        return store_errno(rc);
    }
    rc = cw_entry_decode(val->mv_data, val->mv_size, view);
    if (rc < 0) {
        /* End the snapshot before the delete's write txn: a reader kept open across it
         * would pin the bad pages, and the delete re-checks the value itself. Its failures
         * are logged there; this read reports the bad entry either way. */
        mdb_txn_reset(r->txn);
        if (!r->no_write && cw_store_drop_bad(r->st, key) < 0)
            cw_debug("store: bad entry left in place for the next reader");
        return -EBADMSG;
    }
    if (full_key.p != NULL && !cw_str_eq(view->key, full_key)) {
        mdb_txn_reset(r->txn);
        return -ENOENT; /* a hash collision: a miss, never a wrong answer */
    }
    return 0;
}

int cw_store_read(struct cw_store_reader *r, const struct cw_key *key, struct cw_str full_key,
                  cw_store_read_fn fn, void *cls)
{
    MDB_val v;
    struct cw_entry_view view;
    int rc;

    rc = store_lookup(r, key, full_key, &v, &view);
    if (rc < 0) return rc;
    rc = fn(cls, &view);
    mdb_txn_reset(r->txn);
    return rc;
}

int cw_store_read_encoded(struct cw_store_reader *r, const struct cw_key *key,
                          struct cw_str full_key, void **out, size_t *len)
{
    MDB_val v;
    struct cw_entry_view view;
    void *copy;
    int rc;

    rc = store_lookup(r, key, full_key, &v, &view);
    if (rc < 0) return rc;
    /* Copied inside the txn: the map's bytes are valid only until it is reset. */
    copy = malloc(v.mv_size);
    if (copy != NULL) memcpy(copy, v.mv_data, v.mv_size);
    mdb_txn_reset(r->txn);
    if (copy == NULL) return -ENOMEM;
    *out = copy;
    *len = v.mv_size;
    return 0;
}

/* Removes the tag records of the entry a put is about to replace. */
static int store_put_unindex_old(struct cw_store *st, MDB_txn *txn, const struct cw_key *key)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v;
    int rc = mdb_get(txn, st->obj, &k, &v);

    if (rc == MDB_NOTFOUND) return 0;
    if (rc != MDB_SUCCESS) {
        store_log_mdb("put mdb_get(obj)", key, rc);
        return store_errno(rc);
    }
    return store_tag_unindex_txn(st, txn, key, &v);
}

/* One write txn that reserves need bytes under key, writes src into them (encoding its
 * parts, or copying its bytes), indexes the entry's tags (the replaced entry's go) and, when
 * lease_key is set, releases token's lease on it (a lease that is gone, or was taken over and
 * so carries another token, is no failure: the entry is stored either way). *over tells
 * whether the map is past the high watermark after it. */
static int store_put_once(struct cw_store *st, const struct cw_key *key,
                          const struct cw_key *lease_key, uint64_t token,
                          const struct store_put_src *src, size_t need, bool *over)
{
    MDB_val k = {sizeof(key->h), (void *)key->h};
    MDB_val v = {need, NULL};
    struct cw_entry_view view;
    MDB_txn *txn;
    size_t used;
    int rc;

    rc = store_txn_write(st, &txn, "put", key);
    if (rc < 0) return rc;
    rc = store_put_unindex_old(st, txn, key);
    if (rc < 0) goto out_abort_txn;
    rc = mdb_put(txn, st->obj, &k, &v, MDB_RESERVE);
    if (rc != MDB_SUCCESS) {
        if (rc != MDB_MAP_FULL) store_log_mdb("mdb_put(obj)", key, rc);
        rc = store_errno(rc);
        goto out_abort_txn;
    }
    if (src->h != NULL) {
        rc = cw_entry_encode(src->h, src->full_key, NULL, src->hdrs, src->n, src->body, v.mv_data,
                             v.mv_size);
        if (rc < 0) goto out_abort_txn;
    } else {
        memcpy(v.mv_data, src->bytes.p, need);
    }
    /* The bytes were valid before the write (store_put()); this only finds the headers. */
    rc = cw_entry_decode(v.mv_data, v.mv_size, &view);
    if (rc < 0) goto out_abort_txn;
    rc = store_tag_index_txn(st, txn, key, &view);
    if (rc < 0) goto out_abort_txn;
    if (lease_key != NULL) {
        rc = store_lease_release_txn(st, txn, lease_key, token);
        if (rc < 0 && rc != -ENOENT) goto out_abort_txn;
    }
    rc = store_used_pages(st, txn, &used);
    if (rc < 0) goto out_abort_txn;
    *over = store_is_over_high(st, used);
    return store_commit(txn, "put", key);

out_abort_txn:
    mdb_txn_abort(txn);
    return rc;
}

int store_put(struct cw_store *st, const struct cw_key *key, const struct cw_key *lease_key,
              uint64_t token, const struct store_put_src *src)
{
    struct cw_entry_view view;
    bool over = false;
    size_t need;
    int rc;

    if (src->h != NULL) {
        rc = cw_entry_size(src->full_key, NULL, src->hdrs, src->n, src->body.len, &need);
        if (rc == -EOVERFLOW) return -EINVAL;
        if (rc < 0) return rc;
        if (src->h->status < 100 || src->h->status > 999) return -EINVAL;
    } else {
        /* Bytes from elsewhere (L2, a copy) are checked as a read would check them, before
         * any txn: a bad buffer never reaches the map. */
        if (src->bytes.p == NULL) return -EBADMSG;
        if (cw_entry_decode(src->bytes.p, src->bytes.len, &view) < 0) return -EBADMSG;
        need = src->bytes.len;
    }

    /* MDB_MAP_FULL (or a txn too large) aborts the txn; make room and try again. */
    for (int attempt = 0;; attempt++) {
        rc = store_put_once(st, key, lease_key, token, src, need, &over);
        if (rc != -ENOSPC || !store_make_room(st, key, need, attempt)) break;
    }
    if (rc < 0) return rc;
    if (over) store_evict_after_put(st, key);
    return 0;
}

int cw_store_put(struct cw_store *st, const struct cw_key *key, const struct cw_entry_hdr *h,
                 struct cw_str full_key, const struct cw_entry_header *hdrs, size_t n,
                 struct cw_str body)
{
    struct store_put_src src = {.h = h, .full_key = full_key, .hdrs = hdrs, .n = n, .body = body};

    return store_put(st, key, NULL, 0, &src);
}

int cw_store_put_encoded(struct cw_store *st, const struct cw_key *key, const void *p, size_t len)
{
    struct store_put_src src = {.bytes = cw_str_make(p, len)};

    return store_put(st, key, NULL, 0, &src);
}

int cw_store_delete(struct cw_store *st, const struct cw_key *key)
{
    MDB_txn *txn;
    int rc;

    rc = store_txn_write(st, &txn, "delete", key);
    if (rc < 0) return rc;
    rc = store_obj_del_txn(st, txn, key);
    if (rc < 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return store_commit(txn, "delete", key);
}

int cw_store_vary_get(struct cw_store_reader *r, const struct cw_key *primary, char *buf,
                      size_t size, size_t *len)
{
    MDB_val k = {sizeof(primary->h), (void *)primary->h};
    MDB_val v;
    int rc;

    rc = store_renew(r);
    if (rc < 0) return rc;
    rc = mdb_get(r->txn, r->st->vary, &k, &v);
    if (rc != MDB_SUCCESS) {
        if (rc != MDB_NOTFOUND) store_log_mdb("mdb_get(vary)", primary, rc);
        rc = store_errno(rc);
        goto out_reset_txn;
    }
    if (v.mv_size > size) {
        rc = -ENOSPC;
        goto out_reset_txn;
    }
    if (v.mv_size > 0) memcpy(buf, v.mv_data, v.mv_size);
    *len = v.mv_size;
    rc = 0;

out_reset_txn:
    mdb_txn_reset(r->txn);
    return rc;
}

int cw_store_vary_put(struct cw_store *st, const struct cw_key *primary, struct cw_str names)
{
    MDB_val k = {sizeof(primary->h), (void *)primary->h};
    MDB_val v = {names.len, (void *)names.p};
    MDB_txn *txn;
    int rc;

    rc = store_txn_write(st, &txn, "vary", primary);
    if (rc < 0) return rc;
    if (names.len > 0) {
        rc = mdb_put(txn, st->vary, &k, &v, 0);
        if (rc != MDB_SUCCESS) {
            if (rc != MDB_MAP_FULL) store_log_mdb("mdb_put(vary)", primary, rc);
            goto out_abort_txn;
        }
    } else {
        rc = mdb_del(txn, st->vary, &k, NULL);
        if (rc == MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            return 0;
        }
        if (rc != MDB_SUCCESS) {
            store_log_mdb("mdb_del(vary)", primary, rc);
            goto out_abort_txn;
        }
    }
    return store_commit(txn, "vary", primary);

out_abort_txn:
    mdb_txn_abort(txn);
    return store_errno(rc);
}

int cw_store_reader_check(struct cw_store *st)
{
    int dead = 0;
    int rc = mdb_reader_check(st->env, &dead);

    if (rc != MDB_SUCCESS) {
        store_log_mdb("mdb_reader_check", NULL, rc);
        return store_errno(rc);
    }
    return dead;
}

int cw_store_stat(struct cw_store *st, uint64_t *entries, uint64_t *used_bytes)
{
    MDB_txn *txn;
    MDB_stat ms;
    size_t used = 0;
    int rc;

    rc = store_txn_read(st, &txn, "stat");
    if (rc < 0) return rc;
    rc = mdb_stat(txn, st->obj, &ms);
    if (rc != MDB_SUCCESS) {
        mdb_txn_abort(txn);
        store_log_mdb("stat", NULL, rc);
        return store_errno(rc);
    }
    /* The pages eviction manages (in use, not the file's high-water mark, which never
     * shrinks). */
    rc = store_used_pages(st, txn, &used);
    mdb_txn_abort(txn);
    if (rc < 0) return rc;
    *entries = ms.ms_entries;
    *used_bytes = (uint64_t)used * st->page_bytes;
    return 0;
}

int cw_store_clear(struct cw_store *st)
{
    const MDB_dbi dbis[] = {st->obj, st->vary, st->tag, st->lease};
    MDB_txn *txn;
    int rc;

    rc = store_txn_write(st, &txn, "clear", NULL);
    if (rc < 0) return rc;
    for (size_t i = 0; i < CW_ARRAY_LEN(dbis); i++) {
        rc = mdb_drop(txn, dbis[i], 0);
        if (rc != MDB_SUCCESS) {
            store_log_mdb("clear mdb_drop", NULL, rc);
            mdb_txn_abort(txn);
            return store_errno(rc);
        }
    }
    return store_commit(txn, "clear", NULL);
}
