/* tests/unit/test_store_lease.c - the lease records of shm/store (store_lease.c) against a
 * real LMDB file in a temp dir. Times are passed in; nothing sleeps. */
#include "shm/store.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/check_main.h"

#include "tests/unit/store_fixture.h"

Suite *store_lease_suite(void);

#define TEST_MAP_BYTES (16u << 20)

static void setup(void)
{
    store_fixture_setup("cw-lease", "");
}

static void teardown(void)
{
    store_fixture_teardown();
}

static int read_nop(void *cls, const struct cw_entry_view *v)
{
    (void)v;
    (*(int *)cls)++;
    return 0;
}

/* A pid that surely does not exist now: a child that has exited and been reaped. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    int status;

    ck_assert_int_ne(pid, -1);
    if (pid == 0) _exit(0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return pid;
}

START_TEST(test_store_lease_take_busy_release)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_lease l;
    struct cw_key k;
    int32_t me = (int32_t)getpid();
    uint64_t t = 0;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    key_of(st, "http://h/a", &k);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), -ENOENT);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me, 1000, 6000, &t, NULL),
                     0);
    ck_assert_uint_ne(t, 0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_int_eq(l.pid, me);
    ck_assert_uint_eq(l.token, t);
    ck_assert_uint_eq(l.kind, CW_STORE_LEASE_FETCH);
    ck_assert_int_eq(l.start_ms, 1000);
    ck_assert_int_eq(l.deadline_ms, 6000);

    /* A live owner (this process) and a future deadline: busy, holder filled. */
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(
        cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me + 1, 2000, 7000, NULL, &l), -EBUSY);
    ck_assert_int_eq(l.pid, me);
    ck_assert_int_eq(l.deadline_ms, 6000);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me, 2000, 7000, NULL, NULL),
                     -EBUSY);

    ck_assert_uint_eq(l.token, t);
    /* Release with a wrong token fails and leaves the record: the owner's pid is no
     * token, and neither are its neighbours or 0 (a wanted refresh's). */
    ck_assert_int_eq(cw_store_lease_release(st, &k, t + 1), -ENOENT);
    ck_assert_int_eq(cw_store_lease_release(st, &k, t - 1), -ENOENT);
    ck_assert_int_eq(cw_store_lease_release(st, &k, (uint64_t)me), -ENOENT);
    ck_assert_int_eq(cw_store_lease_release(st, &k, 0), -ENOENT);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_uint_eq(l.token, t);
    ck_assert_int_eq(cw_store_lease_release(st, &k, t), 0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), -ENOENT);
    ck_assert_int_eq(cw_store_lease_release(st, &k, t), -ENOENT);

    /* Bad arguments. */
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, 0, 1, 2, NULL, NULL),
                     -EINVAL);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, -1, 1, 2, NULL, NULL),
                     -EINVAL);
    ck_assert_int_eq(cw_store_lease_take(st, &k, (enum cw_store_lease_kind)7, me, 1, 2, NULL, NULL),
                     -EINVAL);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* A deadline passed: the next taker wins even though the owner lives, and the record gets
 * the new taker's token. */
START_TEST(test_store_lease_expired_takeover)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_lease l;
    struct cw_key k;
    int32_t me = (int32_t)getpid();
    uint64_t t1 = 0, t2 = 0, t3 = 0;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    key_of(st, "http://h/a", &k);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me, 1000, 6000, &t1, NULL),
                     0);
    t2 = t1;
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me + 1, 5999, 9000, &t2, &l),
                     -EBUSY);
    ck_assert_uint_eq(t2, t1); /* untouched when not taken */
    ck_assert_uint_eq(l.token, t1);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_PASS, me + 1, 6000, 9000, &t2, &l),
                     0);
    ck_assert_uint_ne(t2, t1);
    ck_assert_uint_ne(t2, 0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_uint_eq(l.token, t2);
    /* The old owner's release no longer touches the new record. */
    ck_assert_int_eq(cw_store_lease_release(st, &k, t1), -ENOENT);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_uint_eq(l.token, t2);
    ck_assert_int_eq(cw_store_lease_release(st, &k, t2), 0);

    /* The same pid taking over its own expired lease (two requests of one worker) gets a
     * new token too, so the first request's late release leaves the second's lease. */
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me, 10000, 10300, &t1, NULL),
                     0);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me, 10400, 10700, &t3, NULL),
                     0);
    ck_assert_uint_ne(t3, t1);
    ck_assert_uint_ne(t3, t2);
    ck_assert_int_eq(cw_store_lease_release(st, &k, t1), -ENOENT);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_int_eq(l.pid, me);
    ck_assert_uint_eq(l.token, t3);
    ck_assert_int_eq(l.start_ms, 10400);
    ck_assert_int_eq(cw_store_lease_release(st, &k, t3), 0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* Tokens never repeat within a handle's life, whatever the pid, key or kind. (Handles of
 * other processes start at random points; one process never opens the file twice.) */
START_TEST(test_store_lease_tokens_unique)
{
    struct cw_store *st = NULL;
    struct cw_key k;
    uint64_t seen[64];
    uint64_t t;
    char full[32];

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    for (size_t i = 0; i < CW_ARRAY_LEN(seen); i++) {
        snprintf(full, sizeof(full), "http://h/%zu", i % 3);
        key_of(st, full, &k);
        /* Expired at once, so each take replaces the record before it. */
        ck_assert_int_eq(cw_store_lease_take(st, &k, (enum cw_store_lease_kind)(i % 3),
                                             (int32_t)getpid() + (int32_t)(i % 2), (int64_t)i * 10,
                                             (int64_t)i * 10 + 1, &t, NULL),
                         0);
        ck_assert_uint_ne(t, 0);
        for (size_t j = 0; j < i; j++)
            ck_assert_uint_ne(seen[j], t);
        seen[i] = t;
    }
    /* A wanted refresh has no owner and so no token. */
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, 0, 9000, 9001, &t, NULL),
                     0);
    ck_assert_uint_eq(t, 0);
    cw_store_close(st);
}
END_TEST

/* A REFRESH wanted (pid 0) has no owner to die: it stands until its deadline. */
START_TEST(test_store_lease_refresh_wanted)
{
    struct cw_store *st = NULL;
    struct cw_store_lease l;
    struct cw_key k;
    uint64_t t = 0;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    key_of(st, "http://h/a", &k);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, 0, 1000, 2000, NULL, NULL),
                     0);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, 0, 1500, 2500, NULL, &l),
                     -EBUSY);
    ck_assert_int_eq(l.pid, 0);
    ck_assert_uint_eq(l.kind, CW_STORE_LEASE_REFRESH);
    ck_assert_uint_eq(l.token, 0);
    ck_assert_int_eq(cw_store_lease_release(st, &k, 1), -ENOENT);
    ck_assert_int_eq(cw_store_lease_release(st, &k, 0), 0);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, 0, 1000, 2000, NULL, NULL),
                     0);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, 0, 2000, 3000, NULL, NULL),
                     0);
    /* A process that will do the work claims a wanted refresh (with a token, so 0 no
     * longer releases it); then it is busy for others. */
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, (int32_t)getpid(), 2100,
                                         3100, &t, NULL),
                     0);
    ck_assert_uint_ne(t, 0);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, (int32_t)getpid() + 1, 2200,
                                         3200, NULL, &l),
                     -EBUSY);
    ck_assert_int_eq(l.pid, (int32_t)getpid());
    ck_assert_uint_eq(l.token, t);
    ck_assert_int_eq(cw_store_lease_release(st, &k, 0), -ENOENT);
    ck_assert_int_eq(cw_store_lease_release(st, &k, t), 0);
    cw_store_close(st);
}
END_TEST

/* A child takes a lease and exits without releasing it: its dead pid loses the lease long
 * before the deadline. */
START_TEST(test_store_lease_dead_owner_takeover)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_lease l;
    struct cw_key k;
    int status;
    pid_t child;

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    key_of(st, "http://h/a", &k);
    cw_store_close(st);

    child = fork();
    ck_assert_int_ne(child, -1);
    if (child == 0) {
        struct cw_store *cst = NULL;
        if (cw_store_open(db_path, TEST_MAP_BYTES, &cst) != 0) _exit(2);
        if (cw_store_lease_take(cst, &k, CW_STORE_LEASE_FETCH, (int32_t)getpid(), 1000, 1000000,
                                NULL, NULL) != 0) {
            _exit(3);
        }
        _exit(0); /* no release, no close: a crash as far as the lease is concerned */
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_int_eq(l.pid, (int32_t)child);
    ck_assert_int_eq(
        cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, (int32_t)getpid(), 2000, 7000, NULL, &l),
        0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
    ck_assert_int_eq(l.pid, (int32_t)getpid());

    /* The same through a pid known to be gone. */
    key_of(st, "http://h/b", &k);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, (int32_t)dead_pid(), 1,
                                         1000000, NULL, NULL),
                     0);
    ck_assert_int_eq(
        cw_store_lease_take(st, &k, CW_STORE_LEASE_REFRESH, (int32_t)getpid(), 2, 1000, NULL, NULL),
        0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* cw_store_lease_is_blocking() is the take's rule: for each record a take by a live process meets,
 * the take is refused exactly when the predicate says the record blocks. */
START_TEST(test_store_lease_is_blocking_is_the_take_rule)
{
    static const struct {
        enum cw_store_lease_kind kind;
        int who; /* 0: nobody (wanted refresh), 1: this process, 2: a dead pid */
        int64_t deadline_ms;
        bool blocks;
    } cases[] = {
        {CW_STORE_LEASE_FETCH, 1, 5000, true},    {CW_STORE_LEASE_FETCH, 1, 1000, false},
        {CW_STORE_LEASE_FETCH, 2, 5000, false},   {CW_STORE_LEASE_REFRESH, 1, 5000, true},
        {CW_STORE_LEASE_REFRESH, 0, 5000, false}, {CW_STORE_LEASE_REFRESH, 2, 5000, false},
        {CW_STORE_LEASE_PASS, 1, 5000, true},     {CW_STORE_LEASE_PASS, 1, 999, false},
    };
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    pid_t gone = dead_pid();

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        int32_t pid = cases[i].who == 0 ? 0 : cases[i].who == 1 ? (int32_t)getpid() : (int32_t)gone;
        struct cw_store_lease l;
        struct cw_key k;
        char url[32];
        int rc;

        snprintf(url, sizeof(url), "http://h/blocks%zu", i);
        key_of(st, url, &k);
        ck_assert_int_eq(
            cw_store_lease_take(st, &k, cases[i].kind, pid, 500, cases[i].deadline_ms, NULL, NULL),
            0);
        ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
        ck_assert_msg(cw_store_lease_is_blocking(&l, 1000) == cases[i].blocks, "case %zu", i);
        rc = cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, (int32_t)getpid(), 1000, 9000, NULL,
                                 NULL);
        ck_assert_msg(rc == (cases[i].blocks ? -EBUSY : 0), "case %zu: take %d", i, rc);
    }
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* put_release stores the entry and drops the lease in one txn, but only the lease its token
 * took: one taken over since (another token, the same pid) is left alone, and the entry is
 * stored anyway. */
START_TEST(test_store_lease_put_release)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_lease l;
    struct cw_entry_hdr h;
    struct cw_key k;
    struct cw_key k2;
    int32_t me = (int32_t)getpid();
    uint64_t t1 = 0, t2 = 0;
    int calls = 0;

    memset(&h, 0, sizeof(h));
    h.status = 200;
    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    key_of(st, "http://h/a", &k);
    key_of(st, "http://h/b", &k2);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me, 1, 1000, &t1, NULL), 0);
    ck_assert_int_eq(cw_store_put_release(st, &k, &k, t1, &h, CW_STR_LIT("http://h/a"), NULL, 0,
                                          CW_STR_LIT("body")),
                     0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &l), -ENOENT);
    ck_assert_int_eq(cw_store_read(r, &k, CW_STR_LIT("http://h/a"), read_nop, &calls), 0);
    ck_assert_int_eq(calls, 1);

    /* Lease on another key (a Vary primary) under another token: kept. */
    ck_assert_int_eq(cw_store_lease_take(st, &k2, CW_STORE_LEASE_FETCH, me, 1, 1000, &t2, NULL), 0);
    ck_assert_int_eq(cw_store_put_release(st, &k, &k2, t1, &h, CW_STR_LIT("http://h/a"), NULL, 0,
                                          CW_STR_LIT("body2")),
                     0);
    ck_assert_int_eq(cw_store_lease_get(r, &k2, &l), 0);
    ck_assert_uint_eq(l.token, t2);
    ck_assert_int_eq(cw_store_put_release(st, &k, &k2, t2, &h, CW_STR_LIT("http://h/a"), NULL, 0,
                                          CW_STR_LIT("body3")),
                     0);
    ck_assert_int_eq(cw_store_lease_get(r, &k2, &l), -ENOENT);

    /* The issue 11 case in one process: request 1 took the lease, it expired, request 2
     * (same pid) took it over; request 1's put stores its entry but releases only its own
     * token, so request 2's lease stands until request 2's put. */
    ck_assert_int_eq(cw_store_lease_take(st, &k2, CW_STORE_LEASE_FETCH, me, 10, 300, &t1, NULL), 0);
    ck_assert_int_eq(cw_store_lease_take(st, &k2, CW_STORE_LEASE_FETCH, me, 400, 700, &t2, NULL),
                     0);
    ck_assert_int_eq(cw_store_put_release(st, &k2, &k2, t1, &h, CW_STR_LIT("http://h/b"), NULL, 0,
                                          CW_STR_LIT("one")),
                     0);
    ck_assert_int_eq(cw_store_lease_get(r, &k2, &l), 0);
    ck_assert_int_eq(l.pid, me);
    ck_assert_uint_eq(l.token, t2);
    ck_assert_int_eq(cw_store_put_release(st, &k2, &k2, t2, &h, CW_STR_LIT("http://h/b"), NULL, 0,
                                          CW_STR_LIT("two")),
                     0);
    ck_assert_int_eq(cw_store_lease_get(r, &k2, &l), -ENOENT);

    /* An invalid entry stores nothing and keeps the lease. */
    ck_assert_int_eq(cw_store_lease_take(st, &k2, CW_STORE_LEASE_FETCH, me, 1, 1000, &t1, NULL), 0);
    h.status = 42;
    ck_assert_int_eq(cw_store_put_release(st, &k2, &k2, t1, &h, CW_STR_LIT("http://h/b"), NULL, 0,
                                          CW_STR_LIT("x")),
                     -EINVAL);
    ck_assert_int_eq(cw_store_lease_get(r, &k2, &l), 0);
    ck_assert_uint_eq(l.token, t1);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

struct scan_seen {
    struct cw_key last;
    int calls;
    int stop_after;
};

static bool scan_count(void *cls, const struct cw_key *key, const struct cw_store_lease *l)
{
    struct scan_seen *s = cls;

    ck_assert_int_eq(l->kind, CW_STORE_LEASE_FETCH);
    s->last = *key;
    s->calls++;
    return s->stop_after == 0 || s->calls < s->stop_after;
}

START_TEST(test_store_lease_scan_bounded)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct scan_seen s;
    struct cw_key k;
    char full[32];

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 10), 0);
    for (int i = 0; i < 25; i++) {
        snprintf(full, sizeof(full), "http://h/%d", i);
        key_of(st, full, &k);
        ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, (int32_t)getpid(), 1,
                                             100, NULL, NULL),
                         0);
    }
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 10), 10);
    ck_assert_int_eq(s.calls, 10);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 1000), 25);
    ck_assert_int_eq(s.calls, 25);
    /* Resuming from the last key seen after 10 visits the rest (and that key again). */
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 10), 10);
    struct cw_key last = s.last;
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(cw_store_lease_scan(r, &last, scan_count, &s, 1000), 16);
    memset(&s, 0, sizeof(s));
    s.stop_after = 3;
    ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 1000), 3);
    ck_assert_int_eq(s.calls, 3);
    ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 0), 0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* A record of the wrong size is absent to readers, replaced by a take and deleted by a
 * release. Written with the LMDB API directly while no store is open. */
START_TEST(test_store_lease_malformed_record)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_lease l;
    struct cw_key k;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val key;
    MDB_val val = {5, "short"};

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    key_of(st, "http://h/a", &k);
    cw_store_close(st);
    for (int round = 0; round < 2; round++) {
        key.mv_size = sizeof(k.h);
        key.mv_data = k.h;
        ck_assert_int_eq(mdb_env_create(&env), 0);
        ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
        ck_assert_int_eq(mdb_env_open(env, db_path, MDB_NOSUBDIR, 0640), 0);
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
        ck_assert_int_eq(mdb_dbi_open(txn, "lease", 0, &dbi), 0);
        ck_assert_int_eq(mdb_put(txn, dbi, &key, &val, 0), 0);
        ck_assert_int_eq(mdb_txn_commit(txn), 0);
        mdb_env_close(env);

        ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
        ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
        ck_assert_int_eq(cw_store_lease_get(r, &k, &l), -ENOENT);
        if (round == 0) {
            ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, (int32_t)getpid(), 1,
                                                 9, NULL, NULL),
                             0);
            ck_assert_int_eq(cw_store_lease_get(r, &k, &l), 0);
        } else {
            struct scan_seen s;
            memset(&s, 0, sizeof(s));
            /* A scan counts a malformed record as visited without calling back... */
            ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 10), 1);
            ck_assert_int_eq(s.calls, 0);
            ck_assert_int_eq(cw_store_lease_release(st, &k, 1), -ENOENT);
            /* ...and after the release there is nothing left to visit. */
            ck_assert_int_eq(cw_store_lease_scan(r, NULL, scan_count, &s, 10), 0);
        }
        cw_store_reader_close(r);
        cw_store_close(st);
    }
}
END_TEST

/* A reaper that saw an expired record must not delete the lease taken over it since, even
 * by the same pid with the same times. */
START_TEST(test_store_lease_release_exact)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_lease seen, now;
    struct cw_key k;
    int32_t me = (int32_t)getpid();

    ck_assert_int_eq(cw_store_open(db_path, TEST_MAP_BYTES, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    key_of(st, "http://h/x", &k);
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_PASS, me, 1000, 2000, NULL, NULL),
                     0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &seen), 0);
    /* Expired at 3000: the same pid takes it again with a new deadline. */
    ck_assert_int_eq(cw_store_lease_take(st, &k, CW_STORE_LEASE_FETCH, me, 3000, 9000, NULL, NULL),
                     0);
    ck_assert_int_eq(cw_store_lease_release_exact(st, &k, &seen), -ENOENT);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &now), 0);
    ck_assert_uint_eq(now.kind, CW_STORE_LEASE_FETCH);
    /* A record that differs only in its token is another take's: not reaped either. */
    struct cw_store_lease other = now;
    other.token ^= 1;
    ck_assert_int_eq(cw_store_lease_release_exact(st, &k, &other), -ENOENT);
    ck_assert_int_eq(cw_store_lease_release_exact(st, &k, &now), 0);
    ck_assert_int_eq(cw_store_lease_get(r, &k, &now), -ENOENT);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

Suite *store_lease_suite(void)
{
    Suite *s = suite_create("store_lease");
    TCase *tc = tcase_create("lease");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_store_lease_take_busy_release);
    tcase_add_test(tc, test_store_lease_expired_takeover);
    tcase_add_test(tc, test_store_lease_tokens_unique);
    tcase_add_test(tc, test_store_lease_refresh_wanted);
    tcase_add_test(tc, test_store_lease_release_exact);
    tcase_add_test(tc, test_store_lease_dead_owner_takeover);
    tcase_add_test(tc, test_store_lease_is_blocking_is_the_take_rule);
    tcase_add_test(tc, test_store_lease_put_release);
    tcase_add_test(tc, test_store_lease_scan_bounded);
    tcase_add_test(tc, test_store_lease_malformed_record);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(store_lease_suite)
