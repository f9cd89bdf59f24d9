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
#include <unistd.h>

#include "shm/seg.h"
#include "workers/clock.h"
#include "workers/worker_int.h"

#define WAIT_TICK_NS      (1000 * 1000) /* 1 ms */
#define WAIT_PID_CHECK_MS 20

static bool wait_owner_dead(int32_t pid)
{
    return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH;
}

/* True when r should resume now: its key was filled or its budget ran out. Under the lock. */
static bool wait_is_due(struct worker_req *r, int64_t now)
{
    uint32_t gen =
        atomic_load_explicit(cw_seg_fill_gen(r->w->seg, &r->q.lease_key), memory_order_acquire);

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

/* Moves the waiters that should resume from the list onto *due. Under the lock. The owners'
 * liveness is looked at only every WAIT_PID_CHECK_MS, after the cheap checks. */
static void wait_collect(struct worker_waitq *q, int64_t now, bool check_owners,
                         struct worker_req **due)
{
    int32_t self = (int32_t)getpid(), last_pid = 0;
    bool last_dead = false;
    struct worker_req **pp = &q->head;

    while (*pp != NULL) {
        struct worker_req *r = *pp;
        if (!wait_is_due(r, now) &&
            !(check_owners && wait_owner_gone(r, self, &last_pid, &last_dead))) {
            pp = &r->wait_next;
            continue;
        }
        *pp = r->wait_next;
        q->count--;
        r->wait_next = *due;
        *due = r;
    }
}

static void *wait_thread_main(void *arg)
{
    struct cw_worker *w = arg;
    struct worker_waitq *q = &w->waitq;
    struct timespec tick = {0, WAIT_TICK_NS};
    int64_t next_owner_check = 0;

    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        if (q->head == NULL) {
            pthread_cond_wait(&q->cond, &q->lock);
            continue;
        }
        struct worker_req *due = NULL;
        int64_t now = cw_clock_mono_ms();
        bool check_owners = now >= next_owner_check;
        if (check_owners) next_owner_check = now + WAIT_PID_CHECK_MS;
        wait_collect(q, now, check_owners, &due);
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

bool worker_wait_add(struct cw_worker *w, struct worker_req *r, int32_t owner_pid,
                     int64_t deadline_ms)
{
    struct worker_waitq *q = &w->waitq;

    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        pthread_mutex_unlock(&q->lock);
        return false;
    }
    r->state = WREQ_FILL;
    r->coalesced = true;
    r->wait_pid = owner_pid;
    if (deadline_ms < r->wait_until_ms) r->wait_until_ms = deadline_ms;
    /* Under the lock: the waiter thread cannot resume r before it is suspended. */
    MHD_suspend_connection(r->conn);
    r->wait_next = q->head;
    q->head = r;
    q->count++;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    return true;
}

void worker_wait_stop(struct cw_worker *w)
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
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    /* Whoever still waits resumes: the worker is stopping, so it gets a 503. */
    pthread_mutex_lock(&q->lock);
    while ((r = q->head) != NULL) {
        q->head = r->wait_next;
        r->state = WREQ_RETRY;
        MHD_resume_connection(r->conn);
    }
    q->count = 0;
    pthread_mutex_unlock(&q->lock);
}

void worker_wait_destroy(struct cw_worker *w)
{
    struct worker_waitq *q = &w->waitq;

    if (!q->started) return;
    worker_wait_stop(w);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    q->started = false;
}
