/* tests/unit/test_store.c - shm/store against a real LMDB file in a temp dir.
 *
 * The damage tests write raw bytes with the LMDB API directly (only while no store handle
 * is open in this process: LMDB forbids two handles on one file in a process). */
#include "shm/store.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/limits.h"

#include "tests/unit/store_fixture.h"

Suite *store_suite(void);

#define TEST_MAP_BYTES (64u << 20)

/* What a read callback saw. */
struct seen {
    int calls;
    uint16_t status;
    char body[256];
    size_t body_len;
};

static void setup(void)
{
    store_fixture_setup("cw-store", "sub/dir/");
}

static void teardown(void)
{
    store_fixture_teardown();
}

static int read_cb(void *cls, const struct cw_entry_view *v)
{
    struct seen *s = cls;

    s->calls++;
    s->status = v->h.status;
    s->body_len = v->body.len < sizeof(s->body) ? v->body.len : sizeof(s->body);
    memcpy(s->body, v->body.p, s->body_len);
    return 7; /* read returns what the callback returns */
}

static int kill_self_cb(void *cls, const struct cw_entry_view *v)
{
    (void)cls;
    (void)v;
    raise(SIGKILL); /* dies inside the read txn */
    return 0;
}

static struct cw_entry_hdr hdr_ok(void)
{
    struct cw_entry_hdr h;

    memset(&h, 0, sizeof(h));
    h.status = 200;
    h.stored_at_ms = 1;
    return h;
}

static int put_str(struct cw_store *st, const char *full, const char *body)
{
    struct cw_entry_hdr h = hdr_ok();
    struct cw_entry_header hd = {CW_STR_LIT("Content-Type"), CW_STR_LIT("text/plain")};
    struct cw_key k;

    key_of(st, full, &k);
    return cw_store_put(st, &k, &h, cw_str_cstr(full), &hd, 1, cw_str_cstr(body));
}

static int read_str(struct cw_store_reader *r, struct cw_store *st, const char *full,
                    struct seen *s)
{
    struct cw_key k;

    memset(s, 0, sizeof(*s));
    key_of(st, full, &k);
    return cw_store_read(r, &k, cw_str_cstr(full), read_cb, s);
}

/* Writes one raw value into a named db with the LMDB API: no store may be open. */
static void raw_put(const char *db, const void *k, size_t klen, const void *v, size_t vlen)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val key = {klen, (void *)k};
    MDB_val val = {vlen, (void *)v};

    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
    ck_assert_int_eq(mdb_env_open(env, db_path, MDB_NOSUBDIR, 0640), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
    ck_assert_int_eq(mdb_put(txn, dbi, &key, &val, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Data files moved aside next to db_path. */
static size_t count_corrupt(void)
{
    char pat[160];
    glob_t g;
    size_t n;

    snprintf(pat, sizeof(pat), "%s.corrupt-*", db_path);
    if (glob(pat, 0, NULL, &g) != 0) return 0;
    n = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        size_t len = strlen(g.gl_pathv[i]);
        /* The "-lock" file moves along with its data file; count data files only. */
        if (len < 5 || strcmp(g.gl_pathv[i] + len - 5, "-lock") != 0) n++;
    }
    globfree(&g);
    return n;
}

START_TEST(test_store_open_put_read_delete)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct seen s;
    struct cw_key k;
    struct stat sb;
    char dir[160];

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    snprintf(dir, sizeof(dir), "%s/sub/dir", tmp_dir);
    ck_assert_int_eq(stat(dir, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 0777, 0750);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);

    ck_assert_int_eq(read_str(r, st, "http://h/a", &s), -ENOENT);
    ck_assert_int_eq(put_str(st, "http://h/a", "hello"), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/a", &s), 7);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_uint_eq(s.status, 200);
    ck_assert_uint_eq(s.body_len, 5);
    ck_assert_int_eq(memcmp(s.body, "hello", 5), 0);

    /* Replace. */
    ck_assert_int_eq(put_str(st, "http://h/a", "bye"), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/a", &s), 7);
    ck_assert_uint_eq(s.body_len, 3);

    key_of(st, "http://h/a", &k);
    ck_assert_int_eq(cw_store_delete(st, &k), 0);
    ck_assert_int_eq(cw_store_delete(st, &k), -ENOENT);
    ck_assert_int_eq(read_str(r, st, "http://h/a", &s), -ENOENT);
    ck_assert_int_eq(s.calls, 0);

    cw_store_reader_close(r);
    cw_store_close(st);
    cw_store_reader_close(NULL);
    cw_store_close(NULL);
}
END_TEST

/* Two full keys under one hash key: the stored one answers, the other is a miss. */
START_TEST(test_store_collision_is_miss)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_entry_hdr h = hdr_ok();
    struct cw_key k;
    struct seen s;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    memset(&k, 0x5a, sizeof(k));
    ck_assert_int_eq(cw_store_put(st, &k, &h, CW_STR_LIT("http://h/one"), NULL, 0, CW_STR_LIT("1")),
                     0);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(cw_store_read(r, &k, CW_STR_LIT("http://h/two"), read_cb, &s), -ENOENT);
    ck_assert_int_eq(s.calls, 0);
    ck_assert_int_eq(cw_store_read(r, &k, CW_STR_LIT("http://h/one"), read_cb, &s), 7);
    ck_assert_int_eq(s.calls, 1);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

START_TEST(test_store_put_rejects_invalid_entry)
{
    static struct cw_entry_header hdrs[CW_LIMIT_HEADER_COUNT + 1];
    struct cw_store *st = NULL;
    struct cw_entry_hdr h = hdr_ok();
    struct cw_key k;

    for (size_t i = 0; i < CW_ARRAY_LEN(hdrs); i++) {
        hdrs[i].name = CW_STR_LIT("x");
        hdrs[i].value = CW_STR_LIT("y");
    }
    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    memset(&k, 1, sizeof(k));
    ck_assert_int_eq(
        cw_store_put(st, &k, &h, CW_STR_LIT("k"), hdrs, CW_ARRAY_LEN(hdrs), CW_STR_LIT("")),
        -EINVAL);
    h.status = 0;
    ck_assert_int_eq(cw_store_put(st, &k, &h, CW_STR_LIT("k"), NULL, 0, CW_STR_LIT("")), -EINVAL);
    ck_assert_int_eq(cw_store_delete(st, &k), -ENOENT);
    cw_store_close(st);
}
END_TEST

/* A value that fails validation is reported once as -EBADMSG, deleted, then a miss. */
START_TEST(test_store_bad_entry_deleted_on_read)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_key k;
    struct seen s;
    uint64_t entries = 0;
    uint64_t used = 0;
    char junk[200];

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(put_str(st, "http://h/good", "ok"), 0);
    key_of(st, "http://h/bad", &k);
    cw_store_close(st);

    memset(junk, 'j', sizeof(junk));
    raw_put("obj", k.h, sizeof(k.h), junk, sizeof(junk));

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, 2);
    ck_assert_int_eq(read_str(r, st, "http://h/bad", &s), -EBADMSG);
    ck_assert_int_eq(s.calls, 0);
    ck_assert_int_eq(read_str(r, st, "http://h/bad", &s), -ENOENT);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, 1);
    ck_assert_int_eq(read_str(r, st, "http://h/good", &s), 7);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

START_TEST(test_store_garbage_file_moved_aside)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct seen s;
    char dir[160];
    char junk[65536];
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/sub", tmp_dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(dir, sizeof(dir), "%s/sub/dir", tmp_dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (char)(i * 7 + 3);
    }
    f = fopen(db_path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
    ck_assert_int_eq(fclose(f), 0);

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_uint_eq(count_corrupt(), 1);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(put_str(st, "http://h/x", "x"), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/x", &s), 7);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* A valid LMDB file whose meta is not ours is moved aside too, and gets a new secret. */
START_TEST(test_store_bad_meta_moved_aside)
{
    struct cw_store *st = NULL;
    uint8_t secret[16];
    uint32_t format = 2;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    memcpy(secret, cw_store_secret(st), sizeof(secret));
    ck_assert_int_eq(put_str(st, "http://h/x", "x"), 0);
    cw_store_close(st);

    raw_put("meta", "format", 6, &format, sizeof(format));
    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_uint_eq(count_corrupt(), 1);
    ck_assert_int_ne(memcmp(secret, cw_store_secret(st), sizeof(secret)), 0);
    cw_store_close(st);
}
END_TEST

START_TEST(test_store_reopen_keeps_entries_and_secret)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    uint8_t secret[16];
    struct seen s;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    memcpy(secret, cw_store_secret(st), sizeof(secret));
    ck_assert_int_eq(put_str(st, "http://h/keep", "kept"), 0);
    cw_store_close(st);

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(memcmp(secret, cw_store_secret(st), sizeof(secret)), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/keep", &s), 7);
    ck_assert_uint_eq(s.body_len, 4);
    ck_assert_uint_eq(count_corrupt(), 0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* A full map never refuses a put that fits: eviction makes room (the oldest hand position
 * first, no hit bits here), the newest entry always reads back intact, the pages held stay
 * under the bound, and an entry over a quarter of the map is -ENOSPC without evicting. */
START_TEST(test_store_map_full_evicts)
{
    static char body[100 * 1024];
    static char huge[1100 * 1024];
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_entry_hdr h = hdr_ok();
    struct seen s;
    char full[64];
    struct cw_key k;
    uint64_t entries;
    uint64_t used;

    memset(body, 'b', sizeof(body));
    h.fresh_until_ms = INT64_MAX; /* nothing expires: only CLOCK frees room */
    ck_assert_int_eq(cw_store_open(db_path, 1u << 20, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(full, sizeof(full), "http://h/%d", i);
        key_of(st, full, &k);
        body[0] = (char)('0' + i % 10);
        ck_assert_int_eq(
            cw_store_put(st, &k, &h, cw_str_cstr(full), NULL, 0, cw_str_make(body, sizeof(body))),
            0);
        ck_assert_int_eq(read_str(r, st, full, &s), 7);
        ck_assert_int_eq(s.body[0], '0' + i % 10);
        ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
        ck_assert_uint_le(used, 1u << 20);
        ck_assert_uint_ge(entries, 1);
    }
    ck_assert_uint_le(entries, 10);
    /* An entry that cannot fit (over a quarter of the map, and here over all of it): refused
     * without evicting anything, and the cache is kept. (A 300 KiB entry may or may not fit
     * depending on which entries the hand evicted, which follows the per-file hash secret.) */
    uint64_t before = entries;
    memset(huge, 'h', sizeof(huge));
    key_of(st, "http://h/huge", &k);
    ck_assert_int_eq(cw_store_put(st, &k, &h, CW_STR_LIT("http://h/huge"), NULL, 0,
                                  cw_str_make(huge, sizeof(huge))),
                     -ENOSPC);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, before);
    ck_assert_int_eq(read_str(r, st, "http://h/99", &s), 7);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* A file used with a larger cache.size keeps its size (LMDB never shrinks one): the map
 * covers the whole file, so no process meets data past its map, and the smaller size
 * bounds what the puts' eviction keeps. */
/* Puts entries from..to-1 of 100 KiB under http://h/<i>, fresh for ever. */
static void put_range(struct cw_store *st, int from, int to)
{
    static char body[100 * 1024];
    struct cw_entry_hdr h = hdr_ok();
    char full[64];
    struct cw_key k;

    memset(body, 'b', sizeof(body));
    h.fresh_until_ms = INT64_MAX;
    for (int i = from; i < to; i++) {
        snprintf(full, sizeof(full), "http://h/%d", i);
        key_of(st, full, &k);
        ck_assert_int_eq(
            cw_store_put(st, &k, &h, cw_str_cstr(full), NULL, 0, cw_str_make(body, sizeof(body))),
            0);
    }
}

START_TEST(test_store_smaller_size_keeps_map_bounds_eviction)
{
    struct cw_store *st = NULL;
    uint64_t entries, used;

    ck_assert_int_eq(cw_store_open(db_path, 8u << 20, &st), 0);
    ck_assert_uint_eq(cw_store_map_bytes(st), 8u << 20);
    put_range(st, 0, 40);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_gt(used, 2u << 20);
    cw_store_close(st);

    ck_assert_int_eq(cw_store_open(db_path, 1u << 20, &st), 0);
    ck_assert_uint_ge(cw_store_map_bytes(st), 8u << 20);
    put_range(st, 40, 60);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_le(used, 1u << 20);
    cw_store_close(st);
}
END_TEST

/* A child that dies holding a read txn leaves a reader slot; reader_check clears it. */
START_TEST(test_store_reader_check_dead_reader)
{
    struct cw_store *st = NULL;
    int status;
    pid_t child;

    /* Kept open across the child's life: the last process to close the lock file would
     * reset the reader table and hide the dead slot. */
    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(put_str(st, "http://h/a", "a"), 0);
    child = fork();
    ck_assert_int_ne(child, -1);
    if (child == 0) {
        struct cw_store *cst = NULL;
        struct cw_store_reader *cr = NULL;
        struct cw_key k;
        if (cw_store_open(db_path, TEST_MAP_BYTES, &cst) != 0) _exit(2);
        if (cw_store_reader_open(cst, &cr) != 0) _exit(3);
        key_of(cst, "http://h/a", &k);
        (void)!cw_store_read(cr, &k, CW_STR_LIT("http://h/a"), kill_self_cb, NULL);
        _exit(4);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_ge(cw_store_reader_check(st), 1);
    ck_assert_int_eq(cw_store_reader_check(st), 0);
    cw_store_close(st);
}
END_TEST

/* A process killed inside a write txn does not wedge the others: LMDB's writer mutex is a
 * robust process-shared mutex on Linux (MDB_USE_ROBUST is the default there), so the next
 * writer gets EOWNERDEAD, which LMDB recovers from. The parent has the env open across the
 * child's death, as a worker would. */
START_TEST(test_store_writer_killed_mid_txn)
{
    struct cw_store *st = NULL;
    struct timespec t0;
    struct timespec t1;
    int64_t ms;
    int status;
    pid_t child;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(put_str(st, "http://h/a", "a"), 0);
    child = fork();
    ck_assert_int_ne(child, -1);
    if (child == 0) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {1, "k"};
        MDB_val v = {1, "v"};
        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
            mdb_env_set_mapsize(env, TEST_MAP_BYTES) != 0 ||
            mdb_env_open(env, db_path, MDB_NOSUBDIR | MDB_WRITEMAP | MDB_NOTLS, 0640) != 0) {
            _exit(2);
        }
        if (mdb_txn_begin(env, NULL, 0, &txn) != 0) _exit(3);
        if (mdb_dbi_open(txn, "vary", 0, &dbi) != 0) _exit(4);
        if (mdb_put(txn, dbi, &k, &v, 0) != 0) _exit(5);
        raise(SIGKILL); /* holding the writer mutex, txn half done */
        _exit(6);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(put_str(st, "http://h/b", "b"), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    ck_assert_int_lt(ms, 1000);
    ck_assert_int_eq(put_str(st, "http://h/c", "c"), 0);
    cw_store_close(st);
}
END_TEST

START_TEST(test_store_vary_put_get_remove)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_key k;
    char buf[64];
    size_t len = 0;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    memset(&k, 3, sizeof(k));
    ck_assert_int_eq(cw_store_vary_get(r, &k, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(cw_store_vary_put(st, &k, CW_STR_LIT("accept-encoding,accept-language")), 0);
    ck_assert_int_eq(cw_store_vary_get(r, &k, buf, sizeof(buf), &len), 0);
    ck_assert_uint_eq(len, 31);
    ck_assert_int_eq(memcmp(buf, "accept-encoding,accept-language", len), 0);
    ck_assert_int_eq(cw_store_vary_get(r, &k, buf, 30, &len), -ENOSPC);
    ck_assert_int_eq(cw_store_vary_put(st, &k, cw_str_make(NULL, 0)), 0);
    ck_assert_int_eq(cw_store_vary_get(r, &k, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(cw_store_vary_put(st, &k, cw_str_make(NULL, 0)), 0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

START_TEST(test_store_stat_clear_reader_check)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    uint64_t entries = 99;
    uint64_t used = 0;
    uint8_t secret[16];
    struct seen s;
    struct cw_key k;
    char buf[16];
    size_t len;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    memcpy(secret, cw_store_secret(st), sizeof(secret));
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, 0);
    ck_assert_uint_gt(used, 0);
    ck_assert_int_eq(put_str(st, "http://h/1", "1"), 0);
    ck_assert_int_eq(put_str(st, "http://h/2", "2"), 0);
    memset(&k, 9, sizeof(k));
    ck_assert_int_eq(cw_store_vary_put(st, &k, CW_STR_LIT("accept")), 0);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, 2);

    ck_assert_int_eq(cw_store_clear(st), 0);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, 0);
    ck_assert_int_eq(read_str(r, st, "http://h/1", &s), -ENOENT);
    ck_assert_int_eq(cw_store_vary_get(r, &k, buf, sizeof(buf), &len), -ENOENT);
    ck_assert_int_eq(memcmp(secret, cw_store_secret(st), sizeof(secret)), 0);
    ck_assert_int_ge(cw_store_reader_check(st), 0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

#define FORK_PROCS   2
#define FORK_ENTRIES 300

/* One process of the fork test: open after fork (as workers do), write its own entries,
 * read them back and read the other's as they appear. Exit status 0 on success. */
static int fork_child(int id, int start_fd)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct seen s;
    char full[64];
    char c;
    int rc;

    /* Start together: the race on creating meta is the point. */
    if (read(start_fd, &c, 1) != 0) return 10;
    if (cw_store_open(db_path, TEST_MAP_BYTES, &st) != 0) return 11;
    if (cw_store_reader_open(st, &r) != 0) return 12;
    for (int i = 0; i < FORK_ENTRIES; i++) {
        snprintf(full, sizeof(full), "http://h/%d/%d", id, i);
        if (put_str(st, full, full) != 0) return 13;
        if (read_str(r, st, full, &s) != 7) return 14;
        if (s.body_len != strlen(full) || memcmp(s.body, full, s.body_len) != 0) return 15;
        snprintf(full, sizeof(full), "http://h/%d/%d", 1 - id, i);
        rc = read_str(r, st, full, &s);
        if (rc != 7 && rc != -ENOENT) return 16;
    }
    cw_store_reader_close(r);
    cw_store_close(st);
    return 0;
}

START_TEST(test_store_two_processes_concurrent)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    pid_t pids[FORK_PROCS];
    int start[2];
    uint64_t entries = 0;
    uint64_t used = 0;
    struct seen s;
    char full[64];

    ck_assert_int_eq(pipe(start), 0);
    for (int p = 0; p < FORK_PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ne(pids[p], -1);
        if (pids[p] == 0) {
            close(start[1]);
            _exit(fork_child(p, start[0]));
        }
    }
    close(start[0]);
    close(start[1]); /* EOF releases both children at once */
    for (int p = 0; p < FORK_PROCS; p++) {
        int status = 0;
        ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status %d", p,
                      status);
    }

    /* Both used one secret, so every key either wrote is found under ours. */
    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, FORK_PROCS * FORK_ENTRIES);
    for (int p = 0; p < FORK_PROCS; p++) {
        for (int i = 0; i < FORK_ENTRIES; i++) {
            snprintf(full, sizeof(full), "http://h/%d/%d", p, i);
            ck_assert_int_eq(read_str(r, st, full, &s), 7);
        }
    }
    ck_assert_int_eq(cw_store_reader_check(st), 0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* Processes that find the same garbage file at once move it aside once, and end up on
 * one new file with one secret. */
START_TEST(test_store_garbage_file_two_processes)
{
    struct cw_store *st = NULL;
    pid_t pids[FORK_PROCS];
    int start[2];
    uint64_t entries = 0;
    uint64_t used = 0;
    char dir[160];
    char junk[8192];
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/sub", tmp_dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(dir, sizeof(dir), "%s/sub/dir", tmp_dir);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    memset(junk, 0xa5, sizeof(junk));
    f = fopen(db_path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
    ck_assert_int_eq(fclose(f), 0);

    ck_assert_int_eq(pipe(start), 0);
    for (int p = 0; p < FORK_PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ne(pids[p], -1);
        if (pids[p] == 0) {
            close(start[1]);
            _exit(fork_child(p, start[0]));
        }
    }
    close(start[0]);
    close(start[1]);
    for (int p = 0; p < FORK_PROCS; p++) {
        int status = 0;
        ck_assert_int_eq(waitpid(pids[p], &status, 0), pids[p]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status %d", p,
                      status);
    }
    ck_assert_uint_eq(count_corrupt(), 1);
    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, FORK_PROCS * FORK_ENTRIES);
    cw_store_close(st);
}
END_TEST

/* ---- Encoded entries: the bytes L1, L2 and the refresher share ---- */

/* An entry with a request part and a Surrogate-Key, encoded by the entry module: caller
 * frees. */
static char *encode_full(const char *full, const char *body, size_t *len)
{
    static const struct cw_entry_header hdrs[] = {
        {CW_STR_LIT("Content-Type"), CW_STR_LIT("text/plain")},
        {CW_STR_LIT("Surrogate-Key"), CW_STR_LIT("t-enc")},
    };
    static const struct cw_entry_header fields[] = {
        {CW_STR_LIT("accept-language"), CW_STR_LIT("fr")},
    };
    struct cw_entry_req req = {CW_STR_LIT("h"), CW_STR_LIT("/enc"), fields, 1};
    struct cw_entry_hdr h = hdr_ok();
    char *buf;

    ck_assert_int_eq(cw_entry_size(cw_str_cstr(full), &req, hdrs, 2, strlen(body), len), 0);
    buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(
        cw_entry_encode(&h, cw_str_cstr(full), &req, hdrs, 2, cw_str_cstr(body), buf, *len), 0);
    return buf;
}

static int req_cb(void *cls, const struct cw_entry_view *v)
{
    struct seen *s = cls;

    s->calls++;
    s->status = v->h.status;
    s->body_len = v->req_target.len < sizeof(s->body) ? v->req_target.len : sizeof(s->body);
    memcpy(s->body, v->req_target.p, s->body_len);
    return 0;
}

/* Bytes put are the bytes read back, byte for byte, and they serve like any entry: request
 * part, tags and all. A copy read out of one key can be put under another as it is. */
START_TEST(test_store_encoded_round_trip)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_key k, k2;
    struct seen s;
    size_t len, out_len = 0, out2_len = 0, count = 0;
    char *enc = encode_full("http://h/enc", "payload", &len);
    void *out = NULL, *out2 = NULL;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    key_of(st, "http://h/enc", &k);
    ck_assert_int_eq(cw_store_read_encoded(r, &k, CW_STR_LIT("http://h/enc"), &out, &out_len),
                     -ENOENT);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(cw_store_put_encoded(st, &k, enc, len), 0);
    ck_assert_int_eq(cw_store_read_encoded(r, &k, CW_STR_LIT("http://h/enc"), &out, &out_len), 0);
    ck_assert_uint_eq(out_len, len);
    ck_assert_int_eq(memcmp(out, enc, len), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/enc", &s), 7);
    ck_assert_uint_eq(s.body_len, 7);
    ck_assert_int_eq(memcmp(s.body, "payload", 7), 0);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(cw_store_read(r, &k, CW_STR_LIT("http://h/enc"), req_cb, &s), 0);
    ck_assert_int_eq(memcmp(s.body, "/enc", 4), 0);

    /* An entry put by parts reads out as bytes that put back as they are. */
    ck_assert_int_eq(put_str(st, "http://h/parts", "by parts"), 0);
    key_of(st, "http://h/parts", &k2);
    ck_assert_int_eq(cw_store_read_encoded(r, &k2, cw_str_make(NULL, 0), &out2, &out2_len), 0);
    ck_assert_int_eq(cw_store_delete(st, &k2), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/parts", &s), -ENOENT);
    ck_assert_int_eq(cw_store_put_encoded(st, &k2, out2, out2_len), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/parts", &s), 7);
    ck_assert_int_eq(memcmp(s.body, "by parts", 8), 0);

    /* Tags are indexed from the bytes: a tag purge finds the entry. */
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("t-enc"), false, 0, &count), 0);
    ck_assert_uint_eq(count, 1);
    ck_assert_int_eq(read_str(r, st, "http://h/enc", &s), -ENOENT);

    free(out);
    free(out2);
    free(enc);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* Bytes that do not decode are refused before any write: the entry already under the key
 * stays as it was, and nothing new appears. */
START_TEST(test_store_put_encoded_refuses_bad_bytes)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_entry_hdr bad_h;
    struct cw_key k, k2;
    struct seen s;
    uint64_t entries = 0, used = 0;
    size_t len;
    char *enc = encode_full("http://h/good", "good", &len);
    char junk[200];

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    key_of(st, "http://h/good", &k);
    key_of(st, "http://h/other", &k2);
    ck_assert_int_eq(cw_store_put_encoded(st, &k, enc, len), 0);

    /* Truncated, junk, nothing, another version. */
    ck_assert_int_eq(cw_store_put_encoded(st, &k, enc, len - 1), -EBADMSG);
    ck_assert_int_eq(cw_store_put_encoded(st, &k2, enc, len - 1), -EBADMSG);
    memset(junk, 'j', sizeof(junk));
    ck_assert_int_eq(cw_store_put_encoded(st, &k, junk, sizeof(junk)), -EBADMSG);
    ck_assert_int_eq(cw_store_put_encoded(st, &k2, NULL, 0), -EBADMSG);
    memcpy(&bad_h, enc, sizeof(bad_h));
    bad_h.version = CW_ENTRY_VERSION + 1;
    memcpy(enc, &bad_h, sizeof(bad_h));
    ck_assert_int_eq(cw_store_put_encoded(st, &k, enc, len), -EBADMSG);
    ck_assert_int_eq(cw_store_put_encoded(st, &k2, enc, len), -EBADMSG);

    ck_assert_int_eq(read_str(r, st, "http://h/good", &s), 7);
    ck_assert_uint_eq(s.body_len, 4);
    ck_assert_int_eq(memcmp(s.body, "good", 4), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/other", &s), -ENOENT);
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_eq(entries, 1);
    free(enc);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* The full key is compared on an encoded read too: another full key under the same hash is a
 * miss, and damaged bytes are deleted and reported once, as cw_store_read() does. */
START_TEST(test_store_read_encoded_full_key_and_damage)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_key k, kb;
    size_t len, out_len = 0;
    char *enc = encode_full("http://h/one", "1", &len);
    void *out = NULL;
    char junk[200];

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    memset(&k, 0x5a, sizeof(k));
    ck_assert_int_eq(cw_store_put_encoded(st, &k, enc, len), 0);
    ck_assert_int_eq(cw_store_read_encoded(r, &k, CW_STR_LIT("http://h/two"), &out, &out_len),
                     -ENOENT);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(cw_store_read_encoded(r, &k, CW_STR_LIT("http://h/one"), &out, &out_len), 0);
    ck_assert_uint_eq(out_len, len);
    free(out);
    out = NULL;
    key_of(st, "http://h/bad", &kb);
    cw_store_reader_close(r);
    cw_store_close(st);

    memset(junk, 'j', sizeof(junk));
    raw_put("obj", kb.h, sizeof(kb.h), junk, sizeof(junk));
    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(cw_store_read_encoded(r, &kb, cw_str_make(NULL, 0), &out, &out_len), -EBADMSG);
    ck_assert_int_eq(cw_store_read_encoded(r, &kb, cw_str_make(NULL, 0), &out, &out_len), -ENOENT);
    ck_assert_ptr_null(out);
    free(enc);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* The lease goes with the write, by its token; refused bytes leave the lease alone. */
START_TEST(test_store_put_release_encoded)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_lease l;
    struct cw_key k;
    struct seen s;
    uint64_t token = 0;
    size_t len;
    char *enc = encode_full("http://h/lease", "leased", &len);

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    key_of(st, "http://h/lease", &k);
    ck_assert_int_eq(
        cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, getpid(), 0, 60000, &token, NULL), 0);
    ck_assert_int_eq(cw_store_put_release_encoded(st, &k, &k, token, enc, len - 1), -EBADMSG);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_int_eq(read_str(r, st, "http://h/lease", &s), -ENOENT);
    ck_assert_int_eq(cw_store_put_release_encoded(st, &k, &k, token, enc, len), 0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), -ENOENT);
    ck_assert_int_eq(read_str(r, st, "http://h/lease", &s), 7);
    ck_assert_int_eq(memcmp(s.body, "leased", 6), 0);
    free(enc);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_store_open_put_read_delete);
    tcase_add_test(tc, test_store_collision_is_miss);
    tcase_add_test(tc, test_store_put_rejects_invalid_entry);
    tcase_add_test(tc, test_store_bad_entry_deleted_on_read);
    tcase_add_test(tc, test_store_garbage_file_moved_aside);
    tcase_add_test(tc, test_store_bad_meta_moved_aside);
    tcase_add_test(tc, test_store_reopen_keeps_entries_and_secret);
    tcase_add_test(tc, test_store_map_full_evicts);
    tcase_add_test(tc, test_store_smaller_size_keeps_map_bounds_eviction);
    tcase_add_test(tc, test_store_reader_check_dead_reader);
    tcase_add_test(tc, test_store_writer_killed_mid_txn);
    tcase_add_test(tc, test_store_vary_put_get_remove);
    tcase_add_test(tc, test_store_stat_clear_reader_check);
    tcase_add_test(tc, test_store_two_processes_concurrent);
    tcase_add_test(tc, test_store_garbage_file_two_processes);
    tcase_add_test(tc, test_store_encoded_round_trip);
    tcase_add_test(tc, test_store_put_encoded_refuses_bad_bytes);
    tcase_add_test(tc, test_store_read_encoded_full_key_and_damage);
    tcase_add_test(tc, test_store_put_release_encoded);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(store_suite)
