/* workers/upstream_queue.c - see workers/upstream.h: admission and the per-origin queue. The
 * loop takes each submitted transfer, asks its origin's breaker, and starts it while the
 * origin's pool is under max_conns and a server has room; else it waits in the pool's queue (at
 * most queue of them, past that a fast 503) until a transfer of that origin ends, for at most
 * queue_timeout or else its first-byte timeout. Each pool's settings (caps, timeouts, the
 * origin's TLS names and Host) are copied from the config at start. Also the deadlines the loop
 * enforces on each tick: the queue's wait, the first byte, the silence between bytes and the total.
 * On the loop thread, and from cw_upstream_cancel() once the loop has ended (for what was submitted
 * after its last look); the submitted transfers are taken under the loop's lock. */
#include "workers/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "workers/clock.h"
#include "workers/upstream_int.h"

#define UPSTREAM_POLL_MS 1000

/* Copies origin c's connection, queue, timeout and TLS settings into pool: 0 or -ENOMEM
 * (what was copied is freed by upstream_pools_free()). */
int upstream_pool_init(struct upstream_pool *pool, const struct cw_config_origin *c)
{
    pool->max = c->max_conns > 0 ? c->max_conns : 1;
    pool->wait_tail = &pool->wait_head;
    pool->queue_max = c->queue;
    pool->queue_timeout_ms = c->queue_timeout_ms;
    pool->first_byte_ms = c->first_byte_timeout_ms;
    pool->total_ms = c->total_timeout_ms;
    pool->idle_s = c->idle_timeout_ms > 0 ? (long)((c->idle_timeout_ms + 999) / 1000) : 60;
    if ((pool->name = strdup(c->name ? c->name : "origin")) == NULL) return -ENOMEM;
    if (c->tls_cert != NULL && (pool->tls_cert = strdup(c->tls_cert)) == NULL) return -ENOMEM;
    if (c->tls_key != NULL && (pool->tls_key = strdup(c->tls_key)) == NULL) return -ENOMEM;
    if (c->sni != NULL && (pool->sni = strdup(c->sni)) == NULL) return -ENOMEM;
    if (c->host != NULL) {
        size_t n = strlen(c->host) + sizeof("Host: ");
        if ((pool->host_line = malloc(n)) == NULL) return -ENOMEM;
        snprintf(pool->host_line, n, "Host: %s", c->host);
    }
    return 0;
}

void upstream_pools_free(struct upstream_pool *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i].name);
        free(v[i].tls_cert);
        free(v[i].tls_key);
        free(v[i].sni);
        free(v[i].host_line);
    }
    free(v);
}

/* Whether run must wait: its pool is at its cap, others wait before it, or every server
 * that is up is at its own cap (an active check, pinned to its server, is not held back by
 * that). */
static bool upstream_must_wait(const struct upstream_pool *pool, struct upstream_run *run)
{
    if (pool->running >= pool->max) return true;
    return run->x->req->server_pin == 0 && upstream_origin_is_full(run->origin);
}

/* Starts run now when its pool has room, else queues it there; with the queue full, it ends
 * at once (a fast 503 for the client, as nginx's queue or HAProxy's maxqueue do). */
static void upstream_start_run(struct cw_upstream *up, struct upstream_run *run)
{
    struct upstream_pool *pool = run->pool;
    int rc;

    if (pool->wait_head != NULL || upstream_must_wait(pool, run)) {
        /* An active check always waits: a busy pool is no sign its server is down. */
        if (pool->waiting >= pool->queue_max && run->x->req->server_pin == 0) {
            if (!pool->queue_full_logged)
                cw_warn("upstream: origin %s: every connection busy and %d requests waiting: "
                        "new ones fail fast (503) until one waits again",
                        pool->name, pool->waiting);
            pool->queue_full_logged = true;
            run->x->logged = true;
            snprintf(run->x->errbuf, sizeof(run->x->errbuf),
                     "origin %s: every connection busy and its queue (%d) full", pool->name,
                     pool->queue_max);
            upstream_finish(up, run->x, run, -EAGAIN, NULL);
            return;
        }
        if (pool->queue_full_logged) {
            pool->queue_full_logged = false;
            cw_notice("upstream: origin %s: its queue has room again", pool->name);
        }
        bool own = pool->queue_timeout_ms > 0 && run->x->req->server_pin == 0;
        int64_t wait = own ? pool->queue_timeout_ms : run->first_byte_ms;
        run->wait_rc = own ? -EAGAIN : -ETIMEDOUT;
        run->wait_deadline_ms = wait > 0 ? run->taken_ms + wait : 0;
        run->next = NULL;
        *pool->wait_tail = run;
        pool->wait_tail = &run->next;
        pool->waiting++;
        upstream_pool_kick(up, pool);
        return;
    }
    pool->running++;
    rc = upstream_begin(up, run);
    if (rc < 0) {
        pool->running--;
        upstream_finish(up, run->x, run, rc, NULL);
    }
}

/* Starts the pool's waiting transfers while it has room (bounded by the queue). */
void upstream_pool_kick(struct cw_upstream *up, struct upstream_pool *pool)
{
    while (pool->wait_head != NULL && !upstream_must_wait(pool, pool->wait_head)) {
        struct upstream_run *run = pool->wait_head;
        pool->wait_head = run->next;
        if (pool->wait_head == NULL) pool->wait_tail = &pool->wait_head;
        pool->waiting--;
        pool->running++;
        int rc = upstream_begin(up, run);
        if (rc < 0) {
            pool->running--;
            upstream_finish(up, run->x, run, rc, NULL);
        }
    }
}

/* Runs the tasks, then takes the submitted transfers, those the tasks submitted included (a
 * miss's lease task submits its fetch: it starts in the same pass). True when stopping: they
 * are then finished as cancelled. Bounded by max_pending. */
bool upstream_take_queued(struct cw_upstream *up)
{
    struct cw_upstream_xfer *x;
    bool stopping;

    pthread_mutex_lock(&up->lock);
    stopping = up->stopping;
    pthread_mutex_unlock(&up->lock);
    upstream_run_tasks(up, stopping);
    pthread_mutex_lock(&up->lock);
    x = up->q_head;
    up->q_head = NULL;
    up->q_tail = &up->q_head;
    stopping = up->stopping;
    pthread_mutex_unlock(&up->lock);
    while (x != NULL) {
        struct cw_upstream_xfer *next = x->next;
        struct upstream_run *run = stopping ? NULL : calloc(1, sizeof(*run));
        if (run == NULL) {
            upstream_finish(up, x, NULL, stopping ? -ECANCELED : -ENOMEM,
                            stopping ? "shutting down" : "out of memory");
        } else {
            run->x = x;
            run->pool = &up->pools[x->req->origin];
            run->origin = upstream_origin_at(up->origins, (size_t)x->req->origin);
            run->server = -1;
            run->taken_ms = cw_clock_mono_ms();
            run->content_length = -1;
            /* A routed transfer takes its origin's first-byte and total timeouts; an active
             * check keeps its own. */
            run->first_byte_ms = x->req->timeout_ms;
            if (x->req->server_pin == 0 && run->pool->first_byte_ms > 0)
                run->first_byte_ms = run->pool->first_byte_ms;
            if (x->req->server_pin == 0 && run->pool->total_ms > 0)
                run->total_deadline_ms = run->taken_ms + run->pool->total_ms;
            x->internal = run;
            pthread_mutex_lock(&up->lock);
            run->aborted = x->abort_requested;
            pthread_mutex_unlock(&up->lock);
            /* An open breaker refuses at once: no wait on a dead origin. */
            int rc = x->req->server_pin > 0 ? 0
                                            : upstream_origin_admit(run->origin, &run->probe,
                                                                    x->errbuf, sizeof(x->errbuf));
            if (rc < 0) {
                x->retry_after_ms = upstream_origin_breaker_wait_ms(run->origin);
                upstream_finish(up, x, run, rc, NULL);
            } else {
                upstream_start_run(up, run);
            }
        }
        x = next;
    }
    return stopping;
}

/* Ends the transfers that waited for a connection past their bound, oldest first (FIFO: the
 * one at the head is the first due, so the scan stops at the first not due); the next wait
 * deadline, INT64_MAX when none. */
static int64_t upstream_expire_waiting(struct cw_upstream *up, struct upstream_pool *pool,
                                       int64_t now)
{
    while (pool->wait_head != NULL) {
        struct upstream_run *run = pool->wait_head;
        if (run->wait_deadline_ms == 0 || now < run->wait_deadline_ms)
            return run->wait_deadline_ms ? run->wait_deadline_ms : INT64_MAX;
        pool->wait_head = run->next;
        if (pool->wait_head == NULL) pool->wait_tail = &pool->wait_head;
        pool->waiting--;
        snprintf(run->x->errbuf, sizeof(run->x->errbuf),
                 "origin %s: no connection free within %lld ms%s", pool->name,
                 (long long)(run->wait_deadline_ms - run->taken_ms),
                 run->wait_rc == -EAGAIN ? " (queue_timeout)" : "");
        upstream_finish(up, run->x, run, run->wait_rc, NULL);
    }
    return INT64_MAX;
}

/* Ends the running transfers whose origin has been silent past their timeout, or past their
 * total, and those that waited for a connection too long; the time until the next deadline,
 * for the poll (at most UPSTREAM_POLL_MS). */
int upstream_expire(struct cw_upstream *up)
{
    int64_t now = cw_clock_mono_ms(), next = now + UPSTREAM_POLL_MS;
    struct upstream_run *run = up->running;
    int64_t check = upstream_origins_check(up, up->origins, up->pool_count, now);

    if (check < next) next = check;

    while (run != NULL) {
        struct upstream_run *after = run->next;
        if (run->total_deadline_ms > 0 && now >= run->total_deadline_ms) {
            run->fail_rc = -ETIMEDOUT;
            snprintf(run->x->errbuf, sizeof(run->x->errbuf),
                     "origin timed out: transfer not done within %lld ms (total_timeout)",
                     (long long)run->pool->total_ms);
            upstream_end(up, run, CURLE_OPERATION_TIMEDOUT);
        } else if (run->deadline_ms > 0 && !run->paused && !run->hold && now >= run->deadline_ms) {
            run->fail_rc = -ETIMEDOUT;
            if (run->head_done)
                snprintf(run->x->errbuf, sizeof(run->x->errbuf),
                         "origin timed out: no byte for %lld ms",
                         (long long)run->x->req->timeout_ms);
            else
                snprintf(run->x->errbuf, sizeof(run->x->errbuf),
                         "origin timed out: no response head within %lld ms",
                         (long long)run->first_byte_ms);
            upstream_end(up, run, CURLE_OPERATION_TIMEDOUT);
        } else {
            if (run->deadline_ms > 0 && !run->paused && !run->hold && run->deadline_ms < next)
                next = run->deadline_ms;
            if (run->total_deadline_ms > 0 && run->total_deadline_ms < next)
                next = run->total_deadline_ms;
        }
        run = after;
    }
    for (size_t i = 0; i < up->pool_count; i++) {
        int64_t w = upstream_expire_waiting(up, &up->pools[i], now);
        if (w < next) next = w;
    }
    return (int)(next - now);
}
