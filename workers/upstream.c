/* workers/upstream.c - see workers/upstream.h: the loop.
 *
 * One thread drives a CURLM. Submitters push transfers and tasks on queues under a mutex and
 * wake the thread with curl_multi_wakeup(); the thread runs the tasks, moves each transfer to
 * its origin's pool, and adds it to the multi handle while the pool is under its cap (else it
 * waits in the pool's queue, started when a transfer of that origin ends). Finished transfers
 * complete through on_done. cw_upstream_resume() queues the transfer on a list under the same
 * mutex and wakes the thread, which calls curl_easy_pause() on its own thread (libcurl handles
 * are not thread safe). Connections stay alive in the multi handle's cache between transfers;
 * the pools' caps, not libcurl's per-host one, bound them, so that two origins on one
 * host:port each keep their own cap.
 *
 * TLS sessions: libcurl 7.88 caches them per easy handle unless a share handle holds them, and
 * the multi handle does not share them (its connection cache holds connections, not
 * sessions). A new easy handle per transfer would then make every new connection a full
 * handshake; one CURLSH with CURL_LOCK_DATA_SSL_SESSION, used only on the loop thread (so
 * without lock callbacks), lets a new connection resume the session of an earlier one.
 *
 * This file holds the thread, its poll, the submission API and the stop. The steps it runs
 * live beside it: admission, the per-origin queue and the deadlines in upstream_queue.c, a
 * transfer's attempts (start, TLS options, retry, end) in upstream_xfer.c, the response
 * callbacks in upstream_recv.c, the server pools in upstream_pool.c. */
#include "workers/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "workers/upstream_int.h"

static void *upstream_thread_main(void *arg);

int cw_upstream_start(const struct cw_config *cfg, size_t max_pending, struct cw_seg *seg,
                      bool checks, struct cw_upstream **out)
{
    struct cw_upstream *up;
    long total = 0;
    int rc;

    up = calloc(1, sizeof(*up));
    if (up == NULL) return -ENOMEM;
    up->pool_count = cfg->origin_count;
    up->pools = calloc(up->pool_count ? up->pool_count : 1, sizeof(*up->pools));
    if (up->pools == NULL) {
        rc = -ENOMEM;
        goto out_free_up;
    }
    for (size_t i = 0; i < up->pool_count; i++) {
        rc = upstream_pool_init(&up->pools[i], &cfg->origins[i]);
        if (rc < 0) {
            cw_err("upstream: origin pools: %s", strerror(-rc));
            goto out_free_pools;
        }
        total += up->pools[i].max;
    }
    rc = upstream_origins_init(cfg, seg, checks, &up->origins);
    if (rc < 0) goto out_free_pools;
    up->max_pending = max_pending;
    up->q_tail = &up->q_head;
    up->tasks_tail = &up->tasks;
    up->multi = curl_multi_init();
    if (up->multi == NULL) {
        cw_err("upstream: curl_multi_init failed");
        rc = -ENOMEM;
        goto out_free_pools;
    }
    /* The connection cache holds every origin's connections: the pools bound how many open. */
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, total > 0 ? total : 1L);
    up->share = curl_share_init();
    if (up->share == NULL ||
        curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        cw_err("upstream: curl_share_init: cannot share TLS sessions");
        rc = -ENOMEM;
        goto out_cleanup_multi;
    }
    rc = pthread_mutex_init(&up->lock, NULL);
    if (rc != 0) {
        rc = -rc;
        goto out_cleanup_multi;
    }
    rc = pthread_create(&up->thread, NULL, upstream_thread_main, up);
    if (rc != 0) {
        cw_err("upstream: pthread_create: %s", strerror(rc));
        rc = -rc;
        goto out_destroy_lock;
    }
    up->thread_started = true;
    *out = up;
    return 0;

out_destroy_lock:
    pthread_mutex_destroy(&up->lock);
out_cleanup_multi:
    curl_multi_cleanup(up->multi);
    curl_share_cleanup(up->share);
out_free_pools:
    upstream_origins_free(up->origins, up->pool_count);
    upstream_pools_free(up->pools, up->pool_count);
out_free_up:
    free(up);
    return rc;
}

/* The loop this thread runs, or NULL: set by the loop's own thread. */
static __thread struct cw_upstream *upstream_self;

/* Wakes the loop, unless this is its own thread (a task, or a callback of a transfer): that
 * one looks at its queues again before it sleeps (upstream_has_queued()), so a miss does not
 * cost the loop a write to its own wake-up socket, a poll and two reads to drain it. */
static void upstream_wake(struct cw_upstream *up)
{
    if (upstream_self != up) curl_multi_wakeup(up->multi);
}

int cw_upstream_submit(struct cw_upstream *up, struct cw_upstream_xfer *x)
{
    int rc = 0;

    if (x->req->origin < 0 || (size_t)x->req->origin >= up->pool_count) return -EINVAL;
    pthread_mutex_lock(&up->lock);
    if (up->stopping) {
        rc = -ESHUTDOWN;
    } else if (up->active >= up->max_pending) {
        rc = -EAGAIN;
    } else {
        x->up = up;
        x->internal = NULL;
        x->status = 0;
        x->errbuf[0] = '\0';
        x->request_time_ms = x->response_time_ms = 0;
        x->retry_after_ms = 0;
        x->logged = false;
        x->next = NULL;
        x->resume_next = NULL;
        x->resume_queued = false;
        x->abort_requested = false;
        x->live = true;
        *up->q_tail = x;
        up->q_tail = &x->next;
        up->active++;
    }
    pthread_mutex_unlock(&up->lock);
    if (rc == 0) upstream_wake(up);
    return rc;
}

void cw_upstream_abort(struct cw_upstream_xfer *x)
{
    struct cw_upstream *up = x->up;
    bool wake = false;

    if (up == NULL) return;
    pthread_mutex_lock(&up->lock);
    if (x->live) {
        x->abort_requested = true;
        if (!x->resume_queued) {
            x->resume_queued = true;
            x->resume_next = up->resumes;
            up->resumes = x;
        }
        wake = true;
    }
    pthread_mutex_unlock(&up->lock);
    if (wake) upstream_wake(up);
}

void cw_upstream_resume(struct cw_upstream_xfer *x)
{
    struct cw_upstream *up = x->up;
    bool wake = false;

    if (up == NULL) return;
    pthread_mutex_lock(&up->lock);
    if (x->live && !x->resume_queued) {
        x->resume_queued = true;
        x->resume_next = up->resumes;
        up->resumes = x;
        wake = true;
    }
    pthread_mutex_unlock(&up->lock);
    if (wake) upstream_wake(up);
}

int cw_upstream_defer(struct cw_upstream *up, struct cw_upstream_task *t)
{
    int rc = 0;

    pthread_mutex_lock(&up->lock);
    if (up->stopping) {
        rc = -ESHUTDOWN;
    } else if (up->task_count >= up->max_pending) {
        rc = -EAGAIN;
    } else {
        t->next = NULL;
        *up->tasks_tail = t;
        up->tasks_tail = &t->next;
        up->task_count++;
    }
    pthread_mutex_unlock(&up->lock);
    if (rc == 0) upstream_wake(up);
    return rc;
}

/* Runs the queued tasks, oldest first (bounded by the queue's cap). Off the lock: a task
 * may block, and may submit transfers or tasks itself. */
void upstream_run_tasks(struct cw_upstream *up, bool cancelled)
{
    struct cw_upstream_task *t;

    pthread_mutex_lock(&up->lock);
    t = up->tasks;
    up->tasks = NULL;
    up->tasks_tail = &up->tasks;
    up->task_count = 0;
    pthread_mutex_unlock(&up->lock);
    while (t != NULL) {
        struct cw_upstream_task *next = t->next;
        t->run(t, cancelled); /* t may be freed or queued again from here */
        t = next;
    }
}

/* Unpauses the transfers cw_upstream_resume() queued, and ends those cw_upstream_abort()
 * asked to end. A transfer stays marked queued until its turn, so that another thread's
 * resume meanwhile is not lost or linked twice. */
static void upstream_run_resumes(struct cw_upstream *up)
{
    struct cw_upstream_xfer *x;

    pthread_mutex_lock(&up->lock);
    x = up->resumes;
    up->resumes = NULL;
    pthread_mutex_unlock(&up->lock);
    while (x != NULL) {
        pthread_mutex_lock(&up->lock);
        struct cw_upstream_xfer *next = x->resume_next;
        bool abort = x->abort_requested;
        x->resume_queued = false;
        pthread_mutex_unlock(&up->lock);
        struct upstream_run *run = x->internal;
        if (abort && run != NULL && run->easy != NULL) {
            run->fail_rc = -ECANCELED;
            snprintf(x->errbuf, sizeof(x->errbuf), "cancelled by its consumer");
            upstream_end(up, run, CURLE_ABORTED_BY_CALLBACK); /* x is the submitter's again */
        } else if (abort && run != NULL) {
            run->aborted = true; /* waits for a connection: ends when its turn comes */
        } else if (run != NULL && run->easy != NULL) {
            run->hold = false;
            run->paused = false;
            upstream_touch(run);
            /* May deliver held data at once (on_data runs from here), or pause again. */
            CURLcode code = curl_easy_pause(run->easy, CURLPAUSE_CONT);
            if (code != CURLE_OK)
                cw_warn_rl("upstream: resume %s: %s", x->req->url, curl_easy_strerror(code));
        }
        x = next;
    }
}

static void upstream_reap_done(struct cw_upstream *up)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        struct upstream_run *run = NULL;
        CURL *e = msg->easy_handle;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&run);
        upstream_end(up, run, code);
    }
}

void cw_upstream_set_poller(struct cw_upstream *up, const struct cw_upstream_poller *p, void *cls)
{
    up->poller = p;
    up->poller_cls = cls;
}

/* curl_multi_poll() on libcurl's sockets and the poller's, for at most wait_ms (capped by the
 * poller's next deadline); then the poller handles what came and what is due. */
static void upstream_poll(struct cw_upstream *up, int wait_ms)
{
    const struct cw_upstream_poller *p = up->poller;
    struct pollfd pfd[CW_UPSTREAM_POLLER_FDS];
    struct curl_waitfd wfd[CW_UPSTREAM_POLLER_FDS];
    size_t n = 0;
    CURLMcode mc;

    if (p != NULL) {
        int t = p->timeout_ms(up->poller_cls);
        if (t >= 0 && t < wait_ms) wait_ms = t;
        n = p->fds(up->poller_cls, pfd, CW_UPSTREAM_POLLER_FDS);
        for (size_t i = 0; i < n; i++) {
            wfd[i].fd = pfd[i].fd;
            wfd[i].events = (short)(((pfd[i].events & POLLIN) ? CURL_WAIT_POLLIN : 0) |
                                    ((pfd[i].events & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
            wfd[i].revents = 0;
        }
    }
    mc = curl_multi_poll(up->multi, wfd, (unsigned)n, wait_ms, NULL);
    if (mc != CURLM_OK) cw_err("upstream: curl_multi_poll: %s", curl_multi_strerror(mc));
    if (p == NULL) return;
    for (size_t i = 0; i < n; i++) {
        pfd[i].revents = (short)(((wfd[i].revents & CURL_WAIT_POLLIN) ? POLLIN : 0) |
                                 ((wfd[i].revents & CURL_WAIT_POLLOUT) ? POLLOUT : 0));
    }
    p->process(up->poller_cls, pfd, n);
}

/* Whether transfers, tasks or resumes wait to be taken. */
static bool upstream_has_queued(struct cw_upstream *up)
{
    bool any;

    pthread_mutex_lock(&up->lock);
    any = up->q_head != NULL || up->tasks != NULL || up->resumes != NULL;
    pthread_mutex_unlock(&up->lock);
    return any;
}

static void *upstream_thread_main(void *arg)
{
    struct cw_upstream *up = arg;
    int running = 0;

    pthread_setname_np(pthread_self(), "cw-fetch"); /* for top -H, gdb and the tests */
    upstream_self = up;
    for (;;) {
        if (upstream_take_queued(up)) break;
        upstream_run_resumes(up);
        CURLMcode mc = curl_multi_perform(up->multi, &running);
        if (mc != CURLM_OK) cw_err("upstream: curl_multi_perform: %s", curl_multi_strerror(mc));
        upstream_reap_done(up);
        int wait_ms = upstream_expire(up);
        /* Work queued and not taken yet (by this thread, which did not wake itself: a task
         * queued by a task, a resume from a transfer's callback): look at the sockets, but
         * do not sleep. */
        if (upstream_has_queued(up)) wait_ms = 0;
        upstream_poll(up, wait_ms);
    }
    /* Stopping: cancel what waits for a connection, then what still runs. */
    for (size_t i = 0; i < up->pool_count; i++) {
        struct upstream_pool *pool = &up->pools[i];
        while (pool->wait_head != NULL) {
            struct upstream_run *run = pool->wait_head;
            pool->wait_head = run->next;
            pool->waiting--;
            upstream_finish(up, run->x, run, -ECANCELED, "shutting down");
        }
        pool->wait_tail = &pool->wait_head;
        pool->max = 0; /* nothing starts from here */
    }
    while (up->running != NULL) {
        struct upstream_run *run = up->running;
        run->fail_rc = -ECANCELED;
        snprintf(run->x->errbuf, sizeof(run->x->errbuf), "shutting down");
        upstream_end(up, run, CURLE_ABORTED_BY_CALLBACK);
    }
    return NULL;
}

void cw_upstream_cancel(struct cw_upstream *up)
{
    bool started;

    if (up == NULL) return;
    pthread_mutex_lock(&up->lock);
    up->stopping = true;
    started = up->thread_started;
    up->thread_started = false;
    pthread_mutex_unlock(&up->lock);
    if (started) {
        curl_multi_wakeup(up->multi);
        pthread_join(up->thread, NULL);
    }
    upstream_take_queued(up); /* transfers submitted after the thread's last look */
}

void cw_upstream_stop(struct cw_upstream *up)
{
    if (up == NULL) return;
    cw_upstream_cancel(up);
    curl_multi_cleanup(up->multi);
    curl_share_cleanup(up->share); /* after the multi: no easy handle uses it any more */
    pthread_mutex_destroy(&up->lock);
    upstream_origins_free(up->origins, up->pool_count);
    upstream_pools_free(up->pools, up->pool_count);
    free(up);
}
