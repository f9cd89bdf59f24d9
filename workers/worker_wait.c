/* workers/worker_wait.c - coalesced waiters of a worker.
 *
 * A request that finds another process fetching its key (a live FETCH lease) is suspended
 * here. The filler bumps the key's fill generation in the shm segment after its write txn
 * commits; this thread compares generations about every millisecond while any request
 * waits, so a waiter resumes within ~1 ms of the fill without polling LMDB. It also resumes
 * waiters whose deadline passed and, every few ms, those whose lease owner died, so that
 * no client waits longer than lock_timeout plus one fetch. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "shm/seg.h"
#include "workers/clock.h"
#include "workers/worker_int.h"

#define WAIT_TICK_NS      (1000 * 1000) /* 1 ms */
#define WAIT_PID_CHECK_MS 20

static bool wait_owner_dead(int32_t pid)
{
    return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH;
}

/* True when r should resume now. Under the lock. */
static bool wait_is_due(struct worker_req *r, int64_t now)
{
    uint32_t gen =
        atomic_load_explicit(cw_seg_fill_gen(r->w->seg, &r->q.lease_key), memory_order_acquire);

    if (gen != r->gen0 || now >= r->wait_until_ms) return true;
    if (now >= r->wait_check_ms) {
        r->wait_check_ms = now + WAIT_PID_CHECK_MS;
        if (wait_owner_dead(r->wait_pid)) return true;
    }
    return false;
}

static void *wait_thread_main(void *arg)
{
    struct cw_worker *w = arg;
    struct worker_waitq *q = &w->waitq;
    struct timespec tick = {0, WAIT_TICK_NS};

    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        if (q->head == NULL) {
            pthread_cond_wait(&q->cond, &q->lock);
            continue;
        }
        struct worker_req *due = NULL, **pp = &q->head;
        int64_t now = cw_clock_mono_ms();
        while (*pp != NULL) {
            struct worker_req *r = *pp;
            if (!wait_is_due(r, now)) {
                pp = &r->wait_next;
                continue;
            }
            *pp = r->wait_next;
            q->count--;
            r->wait_next = due;
            due = r;
        }
        pthread_mutex_unlock(&q->lock);
        while (due != NULL) {
            struct worker_req *r = due;
            due = r->wait_next;
            r->state = WREQ_RETRY;
            MHD_resume_connection(r->conn);
        }
        nanosleep(&tick, NULL);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int worker_wait_start(struct cw_worker *w)
{
    struct worker_waitq *q = &w->waitq;
    int rc;

    rc = pthread_mutex_init(&q->lock, NULL);
    if (rc != 0) return -rc;
    rc = pthread_cond_init(&q->cond, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&q->lock);
        return -rc;
    }
    rc = pthread_create(&q->thread, NULL, wait_thread_main, w);
    if (rc != 0) {
        pthread_cond_destroy(&q->cond);
        pthread_mutex_destroy(&q->lock);
        return -rc;
    }
    q->started = true;
    return 0;
}

void worker_wait_add(struct cw_worker *w, struct worker_req *r, int32_t owner_pid,
                     int64_t deadline_ms)
{
    struct worker_waitq *q = &w->waitq;

    r->state = WREQ_FILL;
    r->coalesced = true;
    r->wait_pid = owner_pid;
    r->wait_check_ms = cw_clock_mono_ms() + WAIT_PID_CHECK_MS;
    if (deadline_ms < r->wait_until_ms) r->wait_until_ms = deadline_ms;
    MHD_suspend_connection(r->conn);
    pthread_mutex_lock(&q->lock);
    r->wait_next = q->head;
    q->head = r;
    q->count++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

void worker_wait_stop(struct cw_worker *w)
{
    struct worker_waitq *q = &w->waitq;
    struct worker_req *r;

    if (!q->started) return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    /* Whoever still waits resumes and looks up once more (then fetches or fails). */
    while ((r = q->head) != NULL) {
        q->head = r->wait_next;
        r->state = WREQ_RETRY;
        r->wait_until_ms = 0;
        MHD_resume_connection(r->conn);
    }
    q->count = 0;
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    q->started = false;
}
