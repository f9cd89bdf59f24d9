/* workers/req_wait.c - coalesced waiters of a worker.
 *
 * A request that finds another process fetching its key (a live FETCH lease) is suspended
 * here. Its worker watches the key's fill-generation bucket in the shm segment; the filler,
 * in whatever process, bumps the generation after its write txn commits and wakes the
 * futex word of every worker that watches the bucket (cw_seg_fill_done). This thread sleeps
 * on its worker's word, so a waiter resumes within tens of microseconds of the fill, and an
 * idle worker's thread sleeps without a timeout. While requests wait, it also wakes for the
 * nearest deadline and, every WAIT_PID_CHECK_MS, to see whether a lease owner died, so that
 * no client waits longer than lock_timeout plus one fetch.
 *
 * No lost wake-up: the thread reads its wake word before it compares generations and sleeps
 * only while the word still holds that value; a new waiter's bucket is watched before its
 * generation is compared again (seq_cst against the filler's bump-then-read-watchers). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "shm/seg.h"
#include "workers/clock.h"
#include "workers/req_int.h"

/* Owner liveness is a kill(pid, 0) per distinct owner, so 20 ms while requests wait costs
 * nothing measurable; the refresher also reaps a dead owner's lease and bumps the bucket. */
#define WAIT_PID_CHECK_MS 20

static bool wait_owner_dead(int32_t pid)
{
    return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH;
}

/* True when r should resume now: its key was filled or its budget ran out. Under the lock. */
static bool wait_is_due(struct worker_req *r, int64_t now)
{
    uint32_t gen = atomic_load(&r->w->seg->fill_gen[r->wait_bucket]);

    return gen != r->gen0 || now >= r->wait_until_ms;
}

/* True when r's lease owner is another process that died. The pid of the last check is
 * remembered, since a stampede's waiters all wait for the same owner. Under the lock. */
static bool wait_owner_gone(struct worker_req *r, int32_t self, int32_t *last_pid, bool *last_dead)
{
    if (r->wait_pid <= 0 || r->wait_pid == self) return false;
    if (r->wait_pid != *last_pid) {
        *last_pid = r->wait_pid;
        *last_dead = wait_owner_dead(r->wait_pid);
    }
    return *last_dead;
}

/* Forgets one waiter on bucket b; the last one clears the worker's watch bit. Under the lock. */
static void wait_unwatch(struct cw_worker *w, uint32_t b)
{
    if (--w->waitq.watch[b] == 0) cw_seg_fill_unwatch(w->seg, w->slot, b);
}

/* Moves the waiters that should resume from the list onto *due: the earliest deadline of
 * those left (INT64_MAX when none). Under the lock. The owners' liveness is looked at only
 * when check_owners, after the cheap checks. */
static int64_t wait_collect(struct cw_worker *w, int64_t now, bool check_owners,
                            struct worker_req **due)
{
    struct worker_waitq *q = &w->waitq;
    int32_t self = w->pid, last_pid = 0;
    bool last_dead = false;
    struct worker_req **pp = &q->head;
    int64_t until = INT64_MAX;

    while (*pp != NULL) {
        struct worker_req *r = *pp;
        if (!wait_is_due(r, now) &&
            !(check_owners && wait_owner_gone(r, self, &last_pid, &last_dead))) {
            if (r->wait_until_ms < until) until = r->wait_until_ms;
            pp = &r->wait_next;
            continue;
        }
        *pp = r->wait_next;
        q->count--;
        wait_unwatch(w, r->wait_bucket);
        r->wait_next = *due;
        *due = r;
    }
    return until;
}

/* Looks at the waiters once: resumes those due and returns when to look again (INT64_MAX:
 * only when woken), or -1 when the worker is stopping. */
static int64_t wait_pass(struct cw_worker *w, int64_t *next_owner_check)
{
    struct worker_waitq *q = &w->waitq;
    struct worker_req *due = NULL;
    int64_t now = cw_clock_mono_ms(), until = INT64_MAX;

    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        pthread_mutex_unlock(&q->lock);
        return -1;
    }
    if (q->head != NULL) {
        /* The first owner check comes WAIT_PID_CHECK_MS after the waiters appear: they have
         * just seen the owner's live lease. */
        if (*next_owner_check == 0) *next_owner_check = now + WAIT_PID_CHECK_MS;
        bool check_owners = now >= *next_owner_check;
        if (check_owners) *next_owner_check = now + WAIT_PID_CHECK_MS;
        until = wait_collect(w, now, check_owners, &due);
        if (q->head != NULL && *next_owner_check < until) until = *next_owner_check;
    }
    if (q->head == NULL) *next_owner_check = 0;
    q->sleep_until_ms = until;
    pthread_mutex_unlock(&q->lock);
    while (due != NULL) {
        struct worker_req *r = due;
        due = r->wait_next;
        r->step = REQ_WAITED;
        req_conn_resume(r);
    }
    return until;
}

static void *wait_thread_main(void *arg)
{
    struct cw_worker *w = arg;
    int64_t next_owner_check = 0;

    pthread_setname_np(pthread_self(), "cw-wait");
    for (;;) {
        /* Read the word before looking: a fill from here on moves it, and the sleep below
         * then returns at once. */
        uint32_t seq = cw_seg_wake_seq(w->seg, w->slot);
        int64_t until = wait_pass(w, &next_owner_check);
        if (until < 0) break;
        int64_t timeout_ms = -1;
        if (until != INT64_MAX) {
            timeout_ms = until - cw_clock_mono_ms();
            if (timeout_ms <= 0) continue;
        }
        /* 0, -ETIMEDOUT and -EINTR all mean "look again". */
        (void)cw_seg_wake_wait(w->seg, w->slot, seq, timeout_ms);
    }
    return NULL;
}

int req_wait_start(struct cw_worker *w)
{
    struct worker_waitq *q = &w->waitq;
    int rc;

    if (w->slot < 0 || w->slot >= CW_LIMIT_WORKERS) return -EINVAL;
    /* A restarted worker keeps its slot: its predecessor's watch bits go. */
    cw_seg_fill_unwatch_all(w->seg, w->slot);
    memset(q->watch, 0, sizeof(q->watch));
    q->sleep_until_ms = INT64_MAX;
    rc = pthread_mutex_init(&q->lock, NULL);
    if (rc != 0) return -rc;
    rc = pthread_create(&q->thread, NULL, wait_thread_main, w);
    if (rc != 0) {
        pthread_mutex_destroy(&q->lock);
        return -rc;
    }
    q->started = true;
    return 0;
}

bool req_wait_add(struct cw_worker *w, struct worker_req *r, int32_t owner_pid, int64_t deadline_ms)
{
    struct worker_waitq *q = &w->waitq;
    uint32_t b = cw_seg_fill_bucket(&r->q.lease_key);
    bool wake;

    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    r->coalesced = true;
    r->wait_pid = owner_pid;
    r->wait_bucket = b;
    if (deadline_ms < r->wait_until_ms) r->wait_until_ms = deadline_ms;
    if (q->watch[b]++ == 0) cw_seg_fill_watch(w->seg, w->slot, b);
    /* Under the lock: the waiter thread cannot resume r before it is suspended. */
    MHD_suspend_connection(r->conn);
    r->wait_next = q->head;
    q->head = r;
    q->count++;
    /* A fill between the lookup and the watch woke nobody: compare again now that the bit is
     * set (seq_cst). The thread is woken for that, or for a deadline before its next look;
     * in a stampede neither holds after the first waiter, so adding costs no syscall. */
    wake = atomic_load(&w->seg->fill_gen[b]) != r->gen0 || r->wait_until_ms < q->sleep_until_ms;
    if (wake) q->sleep_until_ms = 0;
    pthread_mutex_unlock(&q->lock);
    if (wake) cw_seg_wake(w->seg, w->slot);
    return true;
}

void req_wait_stop(struct cw_worker *w)
{
    struct worker_waitq *q = &w->waitq;
    struct worker_req *r;

    if (!q->started) return;
    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    q->stopping = true;
    pthread_mutex_unlock(&q->lock);
    cw_seg_wake(w->seg, w->slot);
    pthread_join(q->thread, NULL);
    /* Whoever still waits resumes: the worker is stopping, so it gets a 503. */
    pthread_mutex_lock(&q->lock);
    while ((r = q->head) != NULL) {
        q->head = r->wait_next;
        wait_unwatch(w, r->wait_bucket);
        r->step = REQ_WAITED;
        req_conn_resume(r);
    }
    q->count = 0;
    pthread_mutex_unlock(&q->lock);
}

void req_wait_destroy(struct cw_worker *w)
{
    struct worker_waitq *q = &w->waitq;

    if (!q->started) return;
    req_wait_stop(w);
    pthread_mutex_destroy(&q->lock);
    q->started = false;
}
