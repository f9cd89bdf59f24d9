/* tests/unit/test_seg.c - the shm segment's fill generations and wake-up words: who a fill
 * wakes, and that a fill racing a waiter's look-then-sleep is never lost. */
#include "shm/seg.h"

#include <check.h>
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/key.h"

Suite *seg_suite(void);

#define SEG_TEST_ROUNDS     3000
#define SEG_TEST_TIMEOUT_MS 2000 /* a lost wake-up shows as a sleep this long */

static struct cw_key seg_test_key(uint32_t bucket)
{
    struct cw_key k;

    memset(&k, 0xab, sizeof(k));
    memcpy(&k, &bucket, sizeof(bucket));
    return k;
}

/* A fill wakes the slots that watch its bucket, and only those. */
START_TEST(test_seg_fill_wakes_watchers_only)
{
    struct cw_seg *seg = NULL;
    struct cw_key k = seg_test_key(77);
    uint32_t b = cw_seg_fill_bucket(&k);

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    cw_seg_fill_watch(seg, 3, b);
    cw_seg_fill_watch(seg, 200, b);
    uint32_t s3 = cw_seg_wake_seq(seg, 3), s5 = cw_seg_wake_seq(seg, 5);
    uint32_t s200 = cw_seg_wake_seq(seg, 200), g = atomic_load(cw_seg_fill_gen(seg, &k));
    cw_seg_fill_done(seg, &k);
    ck_assert_uint_eq(atomic_load(cw_seg_fill_gen(seg, &k)), g + 1);
    ck_assert_uint_ne(cw_seg_wake_seq(seg, 3), s3);
    ck_assert_uint_ne(cw_seg_wake_seq(seg, 200), s200);
    ck_assert_uint_eq(cw_seg_wake_seq(seg, 5), s5);
    /* An unwatched bucket, and a slot whose bits a restart cleared, wake nobody. */
    cw_seg_fill_unwatch(seg, 3, b);
    cw_seg_fill_unwatch_all(seg, 200);
    s3 = cw_seg_wake_seq(seg, 3);
    s200 = cw_seg_wake_seq(seg, 200);
    cw_seg_fill_done(seg, &k);
    ck_assert_uint_eq(cw_seg_wake_seq(seg, 3), s3);
    ck_assert_uint_eq(cw_seg_wake_seq(seg, 200), s200);
    cw_seg_destroy(seg);
}
END_TEST

/* A sleep on a word that already moved returns at once; one on the current value times out. */
START_TEST(test_seg_wake_wait_value_and_timeout)
{
    struct cw_seg *seg = NULL;

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    uint32_t seq = cw_seg_wake_seq(seg, 1);
    ck_assert_int_eq(cw_seg_wake_wait(seg, 1, seq, 1), -ETIMEDOUT);
    cw_seg_wake(seg, 1);
    ck_assert_int_eq(cw_seg_wake_wait(seg, 1, seq, SEG_TEST_TIMEOUT_MS), 0);
    cw_seg_destroy(seg);
}
END_TEST

/* A fill at each step of the waiter's look-then-sleep is seen: before the watch (the look
 * sees the generation), after the watch or the wake-word read (both), and between the look
 * and the sleep (the sleep returns at once, since the word moved). */
START_TEST(test_seg_fill_at_each_step_is_seen)
{
    struct cw_seg *seg = NULL;
    struct cw_key k = seg_test_key(9);
    uint32_t b = cw_seg_fill_bucket(&k);

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    for (int step = 0; step < 4; step++) {
        uint32_t gen0 = atomic_load(cw_seg_fill_gen(seg, &k));
        if (step == 0) cw_seg_fill_done(seg, &k);
        cw_seg_fill_watch(seg, 2, b);
        if (step == 1) cw_seg_fill_done(seg, &k);
        uint32_t seq = cw_seg_wake_seq(seg, 2);
        if (step == 2) cw_seg_fill_done(seg, &k);
        bool moved = atomic_load(cw_seg_fill_gen(seg, &k)) != gen0;
        if (step == 3) cw_seg_fill_done(seg, &k);
        if (!moved) ck_assert_int_eq(cw_seg_wake_wait(seg, 2, seq, SEG_TEST_TIMEOUT_MS), 0);
        ck_assert_uint_ne(atomic_load(cw_seg_fill_gen(seg, &k)), gen0);
        cw_seg_fill_unwatch(seg, 2, b);
    }
    cw_seg_destroy(seg);
}
END_TEST

/* Spins for a random few microseconds, and yields half the time (on a busy machine the two
 * processes may share one CPU), so that the filler's bump lands anywhere in the waiter's
 * sequence: before its watch, between the watch and its look, between its look and its
 * sleep, or during the sleep. */
static void seg_test_jitter(unsigned *seed)
{
    unsigned n = (unsigned)rand_r(seed) % 4000;

    if (n & 1) sched_yield();
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

/* What the two processes share besides the segment: the round the waiter is in. */
struct seg_test_sync {
    _Atomic uint32_t ready; /* the waiter took round n's generation */
    _Atomic uint32_t done;  /* the waiter saw round n's fill */
};

/* The waiter thread's protocol (workers/worker_wait.c) in a child process, against fills
 * from the parent at random moments, SEG_TEST_ROUNDS times: no round may sleep until the
 * timeout. Exits 0, or 1 on the first lost wake-up. */
static void seg_test_waiter(struct cw_seg *seg, struct seg_test_sync *sy, const struct cw_key *k)
{
    uint32_t b = cw_seg_fill_bucket(k);
    unsigned seed = 12345;

    for (uint32_t n = 1; n <= SEG_TEST_ROUNDS; n++) {
        uint32_t gen0 = atomic_load(cw_seg_fill_gen(seg, k));
        atomic_store(&sy->ready, n);
        seg_test_jitter(&seed);
        cw_seg_fill_watch(seg, 1, b);
        for (;;) {
            uint32_t seq = cw_seg_wake_seq(seg, 1);
            if (atomic_load(cw_seg_fill_gen(seg, k)) != gen0) break;
            /* The race window a broken protocol would lose the fill in. */
            if (n % 3 == 0) seg_test_jitter(&seed);
            if (cw_seg_wake_wait(seg, 1, seq, SEG_TEST_TIMEOUT_MS) == -ETIMEDOUT) _exit(1);
        }
        cw_seg_fill_unwatch(seg, 1, b);
        atomic_store(&sy->done, n);
    }
    _exit(0);
}

START_TEST(test_seg_no_lost_wakeup)
{
    struct cw_seg *seg = NULL;
    struct cw_key k = seg_test_key(4242);
    struct seg_test_sync *sy =
        mmap(NULL, sizeof(*sy), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    unsigned seed = 777;
    int status = -1;

    ck_assert_ptr_ne(sy, MAP_FAILED);
    ck_assert_int_eq(cw_seg_create(&seg), 0);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) seg_test_waiter(seg, sy, &k);
    for (uint32_t n = 1; n <= SEG_TEST_ROUNDS; n++) {
        while (atomic_load(&sy->ready) != n)
            ;
        seg_test_jitter(&seed);
        cw_seg_fill_done(seg, &k);
        while (atomic_load(&sy->done) != n) {
            if (waitpid(pid, &status, WNOHANG) == pid) break;
        }
        if (status != -1) break;
    }
    if (status == -1) ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "a waiter slept %d ms through a fill (lost wake-up)", SEG_TEST_TIMEOUT_MS);
    cw_seg_destroy(seg);
    munmap(sy, sizeof(*sy));
}
END_TEST

/* The refresh-ask ring holds CW_SEG_REFRESH_ASKS asks (N), refuses the N+1th, hands them
 * back oldest first with their keys and times, and takes asks again once read. */
START_TEST(test_seg_refresh_ring_bounded_fifo)
{
    struct cw_seg *seg;
    struct cw_seg_refresh_ask a;
    struct cw_key k;

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    ck_assert(!cw_seg_refresh_take(seg, 1, &a));
    for (int i = 0; i < CW_SEG_REFRESH_ASKS; i++) {
        memset(&k, 0, sizeof(k));
        k.h[0] = (uint8_t)i;
        k.h[15] = (uint8_t)(i >> 8);
        ck_assert(cw_seg_refresh_ask(seg, 1, &k, 1000 + i));
    }
    ck_assert(!cw_seg_refresh_ask(seg, 1, &k, 1));
    ck_assert(!cw_seg_refresh_take(seg, 0, &a)); /* another worker's ring is apart */
    for (int i = 0; i < CW_SEG_REFRESH_ASKS; i++) {
        ck_assert(cw_seg_refresh_take(seg, 1, &a));
        ck_assert_int_eq(a.key[0], (uint8_t)i);
        ck_assert_int_eq(a.key[15], (uint8_t)(i >> 8));
        ck_assert_int_eq(a.asked_wall_ms, 1000 + i);
        if (i == 0) ck_assert(cw_seg_refresh_ask(seg, 1, &k, 7)); /* room again */
    }
    ck_assert(cw_seg_refresh_take(seg, 1, &a));
    ck_assert_int_eq(a.asked_wall_ms, 7);
    ck_assert(!cw_seg_refresh_take(seg, 1, &a));
    cw_seg_destroy(seg);
}
END_TEST

Suite *seg_suite(void)
{
    Suite *s = suite_create("seg");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_seg_fill_wakes_watchers_only);
    tcase_add_test(tc, test_seg_wake_wait_value_and_timeout);
    tcase_add_test(tc, test_seg_fill_at_each_step_is_seen);
    tcase_add_test(tc, test_seg_no_lost_wakeup);
    tcase_add_test(tc, test_seg_refresh_ring_bounded_fifo);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(seg_suite)
