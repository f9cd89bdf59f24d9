/* tests/unit/test_store_evict.c - bounded size, eviction, tags and purge of shm/store
 * (store_evict.c, store_tag.c) against a real LMDB file and a real shm segment. Times are
 * passed in; nothing sleeps. */
#include "shm/store.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/seg.h"
#include "tests/unit/check_main.h"

/* The simulator's trace, LRU and replay, without its main(). */
#define EVICT_SIM_NO_MAIN
#include "tests/bench/evict_sim.c"

#include "tests/unit/store_fixture.h"

Suite *store_evict_suite(void);

/* Far in the future (2096): eviction inside put reads the wall clock, and must not find the
 * test's entries expired. */
#define NOW_MS     4000000000000LL
#define ENTRY_BODY 3000 /* one overflow page per entry on 4 KiB pages */

static void setup(void)
{
    store_fixture_setup("cw-evict", "");
}

static void teardown(void)
{
    store_fixture_teardown();
}

/* Stores "http://h/<i>" with a body of ENTRY_BODY bytes, fresh until fresh_until, and the
 * Surrogate-Key sk when not NULL. */
static int put_n(struct cw_store *st, const char *prefix, int i, int64_t fresh_until,
                 const char *sk)
{
    static char body[ENTRY_BODY];
    struct cw_entry_header hd = {CW_STR_LIT("Surrogate-Key"), {NULL, 0}};
    struct cw_entry_hdr h;
    struct cw_key k;
    char full[64];

    memset(&h, 0, sizeof(h));
    h.status = 200;
    h.fresh_until_ms = fresh_until;
    h.swr_until_ms = fresh_until;
    h.sie_until_ms = fresh_until;
    memset(body, 'x', sizeof(body));
    snprintf(full, sizeof(full), "%s%d", prefix, i);
    key_of(st, full, &k);
    if (sk != NULL) hd.value = cw_str_cstr(sk);
    return cw_store_put(st, &k, &h, cw_str_cstr(full), &hd, sk != NULL ? 1 : 0,
                        cw_str_make(body, sizeof(body)));
}

struct got {
    struct cw_entry_hdr h;
};

static int got_cb(void *cls, const struct cw_entry_view *v)
{
    ((struct got *)cls)->h = v->h;
    return 0;
}

static int get_n(struct cw_store_reader *r, struct cw_store *st, const char *prefix, int i,
                 struct got *g)
{
    struct cw_key k;
    char full[64];

    snprintf(full, sizeof(full), "%s%d", prefix, i);
    key_of(st, full, &k);
    return cw_store_read(r, &k, cw_str_cstr(full), got_cb, g);
}

static uint64_t entries_of(struct cw_store *st)
{
    uint64_t entries;
    uint64_t used;

    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    return entries;
}

/* Records in the tag database, counted with the LMDB API: no store may be open. */
static size_t tag_records(void)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat ms;

    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
    ck_assert_int_eq(mdb_env_open(env, db_path, MDB_NOSUBDIR | MDB_RDONLY, 0640), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "tag", 0, &dbi), 0);
    ck_assert_int_eq(mdb_stat(txn, dbi, &ms), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return ms.ms_entries;
}

/* Under the watermark the step evicts only entries past every stale window. */
START_TEST(test_store_evict_expired_first)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_evict_stats es;
    struct got g;

    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(put_n(st, "http://h/", i, i % 2 ? NOW_MS + 1000 : NOW_MS - 1, NULL), 0);
    }
    memset(&es, 0, sizeof(es));
    ck_assert_int_eq(cw_store_evict_step(st, NULL, NOW_MS, 1000, &es), 0);
    ck_assert_uint_eq(es.expired, 20);
    ck_assert_uint_eq(es.clock, 0);
    ck_assert_uint_eq(es.visited, 40); /* one round, not max_visit */
    ck_assert_uint_gt(es.map_pages, es.used_pages);
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(get_n(r, st, "http://h/", i, &g), i % 2 ? 0 : -ENOENT);
    }
    /* Stale windows keep an entry: swr past fresh. */
    memset(&es, 0, sizeof(es));
    ck_assert_int_eq(cw_store_evict_step(st, NULL, NOW_MS + 1000, 1000, &es), 0);
    ck_assert_uint_eq(es.expired, 0);
    ck_assert_int_eq(cw_store_evict_step(st, NULL, NOW_MS + 1001, 1000, &es), 0);
    ck_assert_uint_eq(entries_of(st), 0);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* Over the high watermark the step evicts down to the low one; entries whose hit bit is set
 * get a second chance (bit cleared) and survive, the others go. */
START_TEST(test_store_evict_clock_second_chance)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_store_evict_stats es;
    struct cw_seg *seg = NULL;
    struct cw_key k;
    struct got g;
    char full[64];
    int n = 0;
    int hot_kept = 0;

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    ck_assert_int_eq(cw_store_open(db_path, 4u << 20, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    /* Fill to the high watermark without a seg (no bits set on insert). */
    memset(&es, 0, sizeof(es));
    while (es.map_pages == 0 || es.used_pages + 2 <= es.map_pages / 100 * CW_STORE_EVICT_HIGH_PCT) {
        ck_assert_int_eq(put_n(st, "http://h/", n++, NOW_MS + 100000, NULL), 0);
        ck_assert_int_eq(cw_store_evict_step(st, seg, NOW_MS, 0, &es), 0);
    }
    ck_assert_uint_eq(entries_of(st), (uint64_t)n); /* nothing evicted below the mark */
    for (int i = 0; i < n; i += 4) {
        snprintf(full, sizeof(full), "http://h/%d", i);
        key_of(st, full, &k);
        cw_seg_hit(seg, &k);
    }
    /* From now on puts set bits and eviction inside put sees them. A few more puts cross
     * the high watermark. */
    cw_store_set_seg(st, seg, 0);
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(put_n(st, "http://x/", i, NOW_MS + 100000, NULL), 0);
    }
    memset(&es, 0, sizeof(es));
    ck_assert_int_eq(cw_store_evict_step(st, seg, NOW_MS, 100000, &es), 0);
    /* The puts' own passes may already have evicted down to the low mark (the hand then
     * rests until the high mark is crossed again), so the step only has to leave the map
     * under the high mark; what matters is who was evicted. */
    ck_assert_msg(es.used_pages <= es.map_pages / 100 * CW_STORE_EVICT_HIGH_PCT,
                  "used %lu of %lu, visited %lu, clock %lu, second %lu",
                  (unsigned long)es.used_pages, (unsigned long)es.map_pages,
                  (unsigned long)es.visited, (unsigned long)es.clock,
                  (unsigned long)es.second_chance);
    ck_assert_uint_lt(entries_of(st), (uint64_t)n + 40); /* something was evicted */
    for (int i = 0; i < n; i += 4) {
        if (get_n(r, st, "http://h/", i, &g) == 0) hot_kept++;
    }
    /* Every hot entry the hand passed once was spared; eviction stops at the low mark long
     * before a second turn. */
    ck_assert_int_eq(hot_kept, (n + 3) / 4);
    cw_store_reader_close(r);
    cw_store_close(st);
    cw_seg_destroy(seg);
}
END_TEST

/* Puts never fail for room and the map never overflows: the file stays at the bound. */
START_TEST(test_store_evict_never_fills)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_seg *seg = NULL;
    struct got g;
    struct stat sb;
    uint64_t entries;
    uint64_t used;

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    ck_assert_int_eq(cw_store_open(db_path, 2u << 20, &st), 0);
    cw_store_set_seg(st, seg, 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    for (int i = 0; i < 3000; i++) {
        ck_assert_int_eq(put_n(st, "http://h/", i, NOW_MS + 100000, "all"), 0);
        ck_assert_msg(get_n(r, st, "http://h/", i, &g) == 0, "entry %d", i);
    }
    ck_assert_int_eq(cw_store_stat(st, &entries, &used), 0);
    ck_assert_uint_le(used, 2u << 20);
    ck_assert_uint_lt(entries, 600);
    ck_assert_int_eq(stat(db_path, &sb), 0);
    ck_assert_int_le(sb.st_size, 2 << 20);
    cw_store_reader_close(r);
    cw_store_close(st);
    /* Evicted entries took their tag records along. */
    ck_assert_uint_eq(tag_records(), entries);
    cw_seg_destroy(seg);
}
END_TEST

/* The hand is kept in meta: successive steps (and a reopen) continue where the last one
 * stopped instead of evicting from the start again. */
START_TEST(test_store_evict_hand_persists)
{
    struct cw_store *st = NULL;
    struct cw_store_evict_stats es;

    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(put_n(st, "http://h/", i, NOW_MS - 1, NULL), 0);
    }
    /* Expired entries go as the hand meets them: 30 per step, 100 in four. */
    for (int step = 0; step < 3; step++) {
        memset(&es, 0, sizeof(es));
        ck_assert_int_eq(cw_store_evict_step(st, NULL, NOW_MS, 30, &es), 0);
        ck_assert_uint_eq(es.expired, 30);
        if (step == 1) {
            cw_store_close(st);
            ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
        }
    }
    ck_assert_uint_eq(entries_of(st), 10);
    ck_assert_int_eq(cw_store_evict_step(st, NULL, NOW_MS, 30, &es), 0);
    ck_assert_uint_eq(entries_of(st), 0);
    cw_store_close(st);
}
END_TEST

START_TEST(test_store_tag_purge_and_cleanup)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_key k;
    struct got g;
    size_t count = 99;

    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    ck_assert_int_eq(put_n(st, "http://h/", 1, NOW_MS + 1000, "a b"), 0);
    ck_assert_int_eq(put_n(st, "http://h/", 2, NOW_MS + 1000, " b\tc  "), 0);
    ck_assert_int_eq(put_n(st, "http://h/", 3, NOW_MS + 1000, "c"), 0);
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("b"), false, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 2);
    ck_assert_int_eq(get_n(r, st, "http://h/", 1, &g), -ENOENT);
    ck_assert_int_eq(get_n(r, st, "http://h/", 2, &g), -ENOENT);
    ck_assert_int_eq(get_n(r, st, "http://h/", 3, &g), 0);
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("a"), false, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 0);
    /* Replacing an entry replaces its tags. */
    ck_assert_int_eq(put_n(st, "http://h/", 3, NOW_MS + 1000, "d"), 0);
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("c"), false, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 0);
    ck_assert_int_eq(get_n(r, st, "http://h/", 3, &g), 0);
    /* Deleting an entry deletes its tags. */
    ck_assert_int_eq(put_n(st, "http://h/", 4, NOW_MS + 1000, "e f g"), 0);
    key_of(st, "http://h/4", &k);
    ck_assert_int_eq(cw_store_delete(st, &k), 0);
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT(""), false, NOW_MS, &count), -EINVAL);
    cw_store_reader_close(r);
    cw_store_close(st);
    ck_assert_uint_eq(tag_records(), 1); /* "d" of entry 3 */
}
END_TEST

/* CW_LIMIT_TAGS tags are indexed, the one after is not; a tag of CW_LIMIT_TAG_BYTES is
 * indexed, one byte longer is not. Many entries under one tag purge over several txns. */
START_TEST(test_store_tag_limits_and_batches)
{
    static char sk[CW_LIMIT_TAGS * 8 + 2 * CW_LIMIT_TAG_BYTES + 16];
    struct cw_store *st = NULL;
    size_t len = 0;
    size_t count = 0;
    char longtag[CW_LIMIT_TAG_BYTES + 2];

    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    memset(longtag, 'L', sizeof(longtag));
    longtag[CW_LIMIT_TAG_BYTES + 1] = '\0';
    len += (size_t)snprintf(sk + len, sizeof(sk) - len, "%s ", longtag); /* 257: skipped */
    longtag[CW_LIMIT_TAG_BYTES] = '\0';
    len += (size_t)snprintf(sk + len, sizeof(sk) - len, "%s", longtag); /* 256: tag 1 */
    for (int i = 2; i <= CW_LIMIT_TAGS + 1; i++) {
        len += (size_t)snprintf(sk + len, sizeof(sk) - len, " t%d", i);
    }
    ck_assert_int_eq(put_n(st, "http://h/", 0, NOW_MS + 1000, sk), 0);
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("t33"), false, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 0);
    ck_assert_int_eq(cw_store_purge_tag(st, cw_str_cstr(longtag), true, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 1);
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("t32"), false, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 1);

    for (int i = 0; i < 150; i++) {
        ck_assert_int_eq(put_n(st, "http://h/", i, NOW_MS + 1000, "many"), 0);
    }
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("many"), true, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 150);
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("many"), false, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 150);
    ck_assert_uint_eq(entries_of(st), 0);
    cw_store_close(st);
    ck_assert_uint_eq(tag_records(), 0);
}
END_TEST

/* Soft purge: stale now, but the swr and sie windows stay, and so does the entry. */
START_TEST(test_store_purge_soft_key_prefix)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_key k;
    struct got g;
    size_t count = 0;

    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    for (int i = 0; i < 150; i++) {
        ck_assert_int_eq(put_n(st, "http://h/api/", i, NOW_MS + 5000, NULL), 0);
        ck_assert_int_eq(put_n(st, "http://h/web/", i, NOW_MS + 5000, NULL), 0);
    }
    key_of(st, "http://h/api/7", &k);
    ck_assert_int_eq(cw_store_purge_key(st, &k, true, NOW_MS), 0);
    ck_assert_int_eq(get_n(r, st, "http://h/api/", 7, &g), 0);
    ck_assert(g.h.flags & CW_ENTRY_SOFT_PURGED);
    ck_assert_int_eq(g.h.fresh_until_ms, NOW_MS);
    /* No stale windows were given (swr and sie end with freshness), so none open now. */
    ck_assert_int_eq(g.h.swr_until_ms, NOW_MS);
    ck_assert_int_eq(g.h.sie_until_ms, NOW_MS);
    /* An already stale entry keeps its older fresh_until. */
    ck_assert_int_eq(cw_store_purge_key(st, &k, true, NOW_MS + 10), 0);
    ck_assert_int_eq(get_n(r, st, "http://h/api/", 7, &g), 0);
    ck_assert_int_eq(g.h.fresh_until_ms, NOW_MS);
    ck_assert_int_eq(cw_store_purge_key(st, &k, false, NOW_MS), 0);
    ck_assert_int_eq(get_n(r, st, "http://h/api/", 7, &g), -ENOENT);
    ck_assert_int_eq(cw_store_purge_key(st, &k, false, NOW_MS), -ENOENT);

    ck_assert_int_eq(cw_store_purge_prefix(st, CW_STR_LIT("http://h/api/1"), true, NOW_MS, &count),
                     0);
    ck_assert_uint_eq(count, 61); /* 1, 10..19, 100..149 */
    ck_assert_int_eq(get_n(r, st, "http://h/api/", 12, &g), 0);
    ck_assert(g.h.flags & CW_ENTRY_SOFT_PURGED);
    ck_assert_int_eq(get_n(r, st, "http://h/web/", 12, &g), 0);
    ck_assert(!(g.h.flags & CW_ENTRY_SOFT_PURGED));
    ck_assert_int_eq(cw_store_purge_prefix(st, CW_STR_LIT("http://h/api/"), false, NOW_MS, &count),
                     0);
    ck_assert_uint_eq(count, 149);
    ck_assert_uint_eq(entries_of(st), 150);
    ck_assert_int_eq(cw_store_purge_prefix(st, CW_STR_LIT(""), false, NOW_MS, &count), -EINVAL);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* A clean stop and start keeps every unexpired entry, tags included. */
START_TEST(test_store_warm_restart)
{
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct got g;
    size_t count = 0;

    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(put_n(st, "http://h/", i, NOW_MS + 1000, "t"), 0);
    }
    cw_store_close(st);
    ck_assert_int_eq(cw_store_open(db_path, 16u << 20, &st), 0);
    ck_assert_int_eq(cw_store_reader_open(st, &r), 0);
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(get_n(r, st, "http://h/", i, &g), 0);
    }
    ck_assert_int_eq(cw_store_purge_tag(st, CW_STR_LIT("t"), false, NOW_MS, &count), 0);
    ck_assert_uint_eq(count, 200);
    cw_store_reader_close(r);
    cw_store_close(st);
}
END_TEST

/* The hit ratio through the real store (CLOCK with hit bits) is within 3 points of exact
 * LRU holding as many entries, on a smaller version of cw-evict-sim's trace. */
START_TEST(test_store_evict_sim_vs_lru)
{
    struct sim_result res;

    memset(&res, 0, sizeof(res));
    ck_assert_int_eq(sim_run(20000, 400000, 2000, 0.9, 0x5eed, &res), 0);
    ck_assert_uint_eq(res.put_fail, 0);
    ck_assert_msg(res.ours >= res.lru - 0.03, "store %.4f, LRU %.4f", res.ours, res.lru);
    ck_assert(res.mean_entries > 1500 && res.mean_entries < 2500);
}
END_TEST

Suite *store_evict_suite(void)
{
    Suite *s = suite_create("store_evict");
    TCase *tc = tcase_create("evict");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_store_evict_expired_first);
    tcase_add_test(tc, test_store_evict_clock_second_chance);
    tcase_add_test(tc, test_store_evict_never_fills);
    tcase_add_test(tc, test_store_evict_hand_persists);
    tcase_add_test(tc, test_store_tag_purge_and_cleanup);
    tcase_add_test(tc, test_store_tag_limits_and_batches);
    tcase_add_test(tc, test_store_purge_soft_key_prefix);
    tcase_add_test(tc, test_store_warm_restart);
    tcase_add_test(tc, test_store_evict_sim_vs_lru);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(store_evict_suite)
