/* workers/worker.c - see workers/worker.h. This file is the libmicrohttpd side of a worker:
 * the daemon, a request's head and body, its completion and access-log line, draining and
 * stopping. What happens to a request is the state machine's (workers/req.c). */
#include "workers/worker.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/entry.h"
#include "core/fresh.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/path.h"
#include "core/route.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/accesslog.h"
#include "workers/child.h"
#include "workers/clock.h"
#include "workers/req_int.h"
#include "workers/wire.h"
#include "workers/worker_beat.h"

#define WORKER_CONN_LIMIT   8192
#define WORKER_DRAIN_MIN_MS 100
#define WORKER_SETTLE_MS    2000 /* after the grace: for 503s to the last requests */
#define WORKER_CONN_TIMEOUT 60   /* seconds an idle keep-alive connection is kept */

static enum MHD_Result worker_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                         const char *method, const char *version,
                                         const char *upload_data, size_t *upload_data_size,
                                         void **req_cls)
{
    struct worker_req *r = *req_cls;

    (void)cls;
    (void)url;
    if (cw_worker_beat_is_probe(r)) return cw_worker_beat_on_request(conn, req_cls);
    if (r == NULL) return MHD_NO; /* the URI callback could not allocate */
    switch (r->step) {
    case REQ_NEW:
        /* libmicrohttpd's idiom: queueing on the first call loses keep-alive. */
        r->conn = conn;
        r->method = method;
        r->version = version;
        r->step = REQ_BODY;
        req_recv_head(r);
        return MHD_YES;
    case REQ_BODY:
        if (*upload_data_size > 0 && r->stream_body) {
            /* A passed-through body: the origin request starts with its first bytes. An
             * answer queued now (a refusal) closes the connection: its body is not read. */
            enum MHD_Result ret;
            r->close = true;
            r->step = REQ_RECV;
            ret = req_run(r);
            if (r->step != REQ_UPLOAD) {
                *upload_data_size = 0;
                return ret;
            }
            r->close = false;
            *upload_data_size -= req_pipe_upload_push(r, upload_data, *upload_data_size);
            return MHD_YES;
        }
        if (*upload_data_size > 0) {
            size_t n = *upload_data_size;
            size_t need;
            *upload_data_size = 0;
            if (r->body_over) return MHD_YES; /* drain what is left, answer 413 at the end */
            if (__builtin_add_overflow(r->body_in.len, n, &need) ||
                need > CW_LIMIT_REQUEST_BODY_BYTES) {
                r->body_over = true;
                return MHD_YES;
            }
            char *np = realloc(r->body_in.p, need);
            if (np == NULL) {
                r->body_over = true;
                return MHD_YES;
            }
            memcpy(np + r->body_in.len, upload_data, n);
            r->body_in.p = np;
            r->body_in.len = need;
            return MHD_YES;
        }
        r->stream_body = false; /* no byte came: nothing to stream */
        if (r->refuse_status == 0 && (r->body_in.len > 0 || r->body_over))
            (void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                            (unsigned)WORKER_CONN_TIMEOUT);
        r->step = REQ_RECV;
        return req_run(r);
    case REQ_UPLOAD:
        if (*upload_data_size > 0) {
            *upload_data_size -= req_pipe_upload_push(r, upload_data, *upload_data_size);
            return MHD_YES;
        }
        enum req_step next;
        (void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                        (unsigned)WORKER_CONN_TIMEOUT);
        if (!req_pipe_upload_end(r, &next)) return MHD_YES; /* suspended until the answer */
        r->step = next;
        return req_run(r);
    default:
        return req_run(r);
    }
}

/* Runs first for each request with the raw request target: its return value becomes the
 * request's *req_cls. */
static void *worker_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct cw_worker *w = cls;
    struct worker_req *r;
    void *probe = cw_worker_beat_on_uri(conn);

    if (probe != NULL) return probe; /* the heartbeat's own request: no state, not counted */
    r = req_alloc_mhd(w);
    if (r == NULL) return NULL;
    r->raw_uri_len = strlen(uri);
    r->raw_uri = malloc(r->raw_uri_len + 1);
    if (r->raw_uri == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->raw_uri, uri, r->raw_uri_len + 1);
    r->uri = r->raw_uri; /* until req_recv_target() */
    r->uri_len = r->raw_uri_len;
    r->wire_n = cw_wire_begin(cw_wire_of(conn));
    r->w = w;
    r->start_us = cw_clock_mono_us();
    r->start_wall_ms = cw_clock_wall_ms();
    r->origin_us = -1;
    atomic_fetch_add(&w->inflight, 1);
    return r;
}

/* The X-Cache word of a result, for the access log. */
static const char *const worker_result_names[] = {
    [CW_METRICS_RESULT_HIT] = "HIT",
    [CW_METRICS_RESULT_MISS] = "MISS",
    [CW_METRICS_RESULT_STALE] = "STALE",
    [CW_METRICS_RESULT_REVALIDATED] = "REVALIDATED",
    [CW_METRICS_RESULT_PASS] = "PASS",
    [CW_METRICS_RESULT_ERROR] = "ERROR",
    [CW_METRICS_RESULT_STALE_ERROR] = "STALE-ERROR",
};
static_assert(CW_ARRAY_LEN(worker_result_names) == CW_METRICS_RESULT_COUNT,
              "an access-log word for every result");

/* Counts a request that was answered and writes its access-log line. */
static void worker_record(struct cw_worker *w, struct worker_req *r, struct MHD_Connection *conn)
{
    int64_t took_us = cw_clock_mono_us() - r->start_us;
    int route = r->rt ? (int)(r->rt - w->cfg->routes) : -1;
    struct cw_str url = r->log_uri.p ? r->log_uri : cw_str_make(r->raw_uri, r->raw_uri_len);
    char addr[INET6_ADDRSTRLEN];

    cw_seg_record_request(w->seg, w->slot, route, r->result, cw_seg_method_of(r->method), took_us);
    cw_seg_add(w->seg, w->slot, CW_METRICS_BYTES_OUT, r->bytes);
    cw_seg_url_offer(w->seg, w->slot, route, url.p, url.len, (r->start_us + took_us) / 1000);
    if (w->alog == NULL) return;
    req_client_addr(conn, addr, sizeof(addr));
    struct cw_accesslog_rec rec = {
        .time_ms = r->start_wall_ms,
        .client = addr,
        .method = r->method,
        .url = url,
        .protocol = r->version,
        .status = (int)r->status,
        .bytes = r->bytes,
        .duration_us = took_us,
        .result = worker_result_names[r->result],
        .route = r->rt ? r->rt->match : NULL,
        .origin_us = r->origin_us,
        .user_agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent"),
        .referer = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Referer"),
    };
    cw_accesslog_write(w->alog, &rec);
}

static void worker_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                                enum MHD_RequestTerminationCode toe)
{
    struct cw_worker *w = cls;
    struct worker_req *r = *req_cls;

    if (r == NULL) return;
    *req_cls = NULL;
    if (cw_worker_beat_is_probe(r)) return;
    if (r->queued) worker_record(w, r, conn);
    /* A streamed answer's transfer may still run (the client left): its end frees r. */
    if (req_pipe_release(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)) req_free_mhd(r);
}

/* The daemon's event loop runs on a thread of our own (cw-mhd), not on libmicrohttpd's. The
 * library's epoll loop (MHD_epoll() in 0.9.75) takes at most WORKER_MHD_EVENTS events a call
 * and, when a call returns that many, calls epoll_wait() again with the same timeout before it
 * handles any of them. With its internal thread, that timeout is the idle connections' (a
 * minute): 128 connections that became ready at once, and nothing after them, waited for the
 * worker's next event, the heartbeat's probe up to a second later (test_eventloop; in `make
 * bench`, 0.6-0.9 s for the 128 connections one worker held of a burst of 200).
 *
 * So the loop lets the library wait (MHD_run_wait(), one epoll_wait() a turn) only while its
 * epoll set holds too few sockets to fill a call: the connections, the listen socket and the
 * loop's eventfd. From WORKER_MHD_EVENTS - 2 connections on, it waits itself, in poll() on the
 * daemon's epoll set (readable while the set holds an event, and not drained by the poll), for
 * as long as MHD_get_timeout() allows, and then MHD_run() takes the events without waiting.
 * That costs a system call a turn, which is why it is not the only way.
 *
 * A daemon without its own thread has no channel between threads of its own. The loop's eventfd
 * is in the daemon's epoll set, edge-triggered, with a null pointer, which libmicrohttpd's loop
 * skips (0.9.75 to 1.0, "shutdown signal"): a write wakes whichever wait runs. A resume from
 * another thread (req_conn_resume()), the heartbeat's connection (worker_add_connection()) and
 * the stop write it; being edge-triggered, it is never read. */
#define WORKER_MHD_EVENTS 128 /* libmicrohttpd's MAX_EVENTS (daemon.c, 0.9.75 to 1.0) */

static void worker_loop_wake(struct worker_loop *l)
{
    uint64_t one = 1;

    if (write(l->wake_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
        cw_warn_rl("worker: wake the MHD thread: %s", strerror(errno));
}

/* cw_worker_beat_add_fn: queues fd for the MHD thread, one at a time. */
static int worker_add_connection(void *ctx, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    struct worker_loop *l = &((struct cw_worker *)ctx)->loop;
    bool is_busy;

    pthread_mutex_lock(&l->lock);
    is_busy = atomic_load(&l->add_fd) != -1;
    if (!is_busy) {
        l->add_addr = addr;
        l->add_addrlen = addrlen;
        atomic_store(&l->add_fd, fd);
    }
    pthread_mutex_unlock(&l->lock);
    if (is_busy) {
        close(fd);
        return -EBUSY;
    }
    worker_loop_wake(l);
    return 0;
}

/* On the MHD thread: adds the connection queued, if any. */
static void worker_loop_take(struct cw_worker *w)
{
    struct worker_loop *l = &w->loop;
    const struct sockaddr *addr;
    socklen_t addrlen;
    int fd;

    if (atomic_load(&l->add_fd) == -1) return; /* no lock for the common case */
    pthread_mutex_lock(&l->lock);
    fd = atomic_exchange(&l->add_fd, -1);
    addr = l->add_addr;
    addrlen = l->add_addrlen;
    pthread_mutex_unlock(&l->lock);
    /* MHD owns fd from here, and closes it even on failure. */
    if (fd != -1 && MHD_add_connection(w->mhd, fd, addr, addrlen) != MHD_YES)
        cw_warn_rl("worker %d: MHD_add_connection: %s", w->index, strerror(errno));
}

void req_conn_resume(struct worker_req *r)
{
    /* Read before the resume: from then on the MHD thread may answer and free r. */
    struct worker_loop *l = &r->w->loop;

    /* After the resume: every turn of libmicrohttpd's loop begins with the resumes made until
     * then, the count tells the poll() turn of one its last turn may have missed, and the
     * write ends the wait of a turn that began before it. */
    MHD_resume_connection(r->conn);
    atomic_fetch_add(&l->resumes, 1);
    worker_loop_wake(l);
}

/* One turn when the daemon's epoll set may hold WORKER_MHD_EVENTS ready sockets: poll() for as
 * long as MHD_get_timeout() allows, then MHD_run() without waiting. *seen: the resume count
 * read before the last turn. A resume made during that turn after the turn took the resumes
 * may have had its eventfd write drained by it, and nothing would end the poll(): such a
 * resume moved the count, so this turn does not wait. */
static void worker_loop_turn_polled(struct cw_worker *w, uint32_t *seen)
{
    struct pollfd pfd = {.fd = w->loop.epoll_fd, .events = POLLIN};
    MHD_UNSIGNED_LONG_LONG left;
    int timeout = -1;

    if (MHD_get_timeout(w->mhd, &left) == MHD_YES)
        timeout = left > (MHD_UNSIGNED_LONG_LONG)INT_MAX ? INT_MAX : (int)left;
    if (atomic_load(&w->loop.resumes) != *seen) timeout = 0;
    /* 0: a resume to take, input already read, or a connection's timeout due. */
    if (timeout != 0 && poll(&pfd, 1, timeout) == -1 && errno != EINTR) {
        cw_warn_rl("worker %d: poll: %s", w->index, strerror(errno));
        usleep(1000); /* ENOMEM: not a busy loop */
    }
    *seen = atomic_load(&w->loop.resumes);
    (void)MHD_run(w->mhd);
}

static void *worker_loop_main(void *arg)
{
    struct cw_worker *w = arg;
    struct worker_loop *l = &w->loop;
    uint32_t seen = atomic_load(&l->resumes);

    pthread_setname_np(pthread_self(), "cw-mhd"); /* for top -H, gdb and the tests */
    while (!atomic_load(&l->stop)) {
        const union MHD_DaemonInfo *ci =
            MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

        if (ci != NULL && ci->num_connections + 2 < WORKER_MHD_EVENTS) {
            /* The library takes the resumes before it waits: nothing to look at after. */
            seen = atomic_load(&l->resumes);
            (void)MHD_run_wait(w->mhd, -1);
        } else {
            worker_loop_turn_polled(w, &seen);
        }
        worker_loop_take(w);
    }
    return NULL;
}

static int worker_loop_start(struct cw_worker *w)
{
    struct worker_loop *l = &w->loop;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
    int rc;

    if (di == NULL) {
        cw_err("worker %d: the daemon has no epoll set", w->index);
        return -EIO;
    }
    l->epoll_fd = di->epoll_fd;
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd == -1 || epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, l->wake_fd, &ev) == -1) {
        rc = -errno;
        cw_err("worker %d: the loop's eventfd: %s", w->index, strerror(errno));
        return rc;
    }
    rc = pthread_create(&l->thread, NULL, worker_loop_main, w);
    if (rc != 0) {
        cw_err("worker %d: pthread_create: %s", w->index, strerror(rc));
        return -rc;
    }
    l->started = true;
    return 0;
}

/* Stops and joins the MHD thread: no callback runs after it. */
static void worker_loop_stop(struct cw_worker *w)
{
    struct worker_loop *l = &w->loop;
    int fd;

    if (l->started) {
        atomic_store(&l->stop, true);
        worker_loop_wake(l);
        pthread_join(l->thread, NULL);
        l->started = false;
    }
    fd = atomic_exchange(&l->add_fd, -1);
    if (fd != -1) close(fd);
    if (l->wake_fd != -1) close(l->wake_fd);
    l->wake_fd = -1;
}

static int worker_open(struct cw_worker *w, int listen_fd)
{
    char host[CW_LIMIT_HOST_BYTES + 1];
    int port = 0;
    int rc = cw_store_open(w->cfg->cache_path, w->cfg->cache_size_bytes, &w->store);
    if (rc < 0) return rc;
    if (cw_config_split_hostport(w->cfg->listen, host, sizeof(host), &port) < 0) port = 0;
    snprintf(w->listen_port, sizeof(w->listen_port), "%d", port);
    rc = cw_wire_init(w->cfg->client_header_timeout_ms);
    if (rc < 0) return rc;
    rc = cw_accesslog_open(w->cfg, &w->alog);
    if (rc < 0) return rc;
    cw_accesslog_set_seg(w->alog, w->seg, w->slot);
    cw_store_set_seg(w->store, w->seg, w->slot);
    rc = cw_store_reader_open_nowrite(w->store, &w->reader);
    if (rc < 0) return rc;
    rc = cw_store_reader_open(w->store, &w->fetch_reader);
    if (rc < 0) return rc;
    w->fill = (struct cw_fill){.cfg = w->cfg,
                               .store = w->store,
                               .reader = w->fetch_reader,
                               .seg = w->seg,
                               .slot = w->slot};
    w->fill_mhd = (struct cw_fill){
        .cfg = w->cfg, .store = w->store, .reader = w->reader, .seg = w->seg, .slot = w->slot};
    req_l2_fill_hook(w, &w->fill);
    w->ready = req_ready_new(); /* NULL (no memory) only costs speed */
    rc = cw_upstream_start(w->cfg, CW_LIMIT_PENDING_FETCHES, w->seg, false, &w->fetch);
    if (rc < 0) return rc;
    /* The L2 client opens on the fetch thread, its first task: before any request's. */
    rc = req_l2_start(w);
    if (rc < 0) return rc;
    rc = req_wait_start(w);
    if (rc < 0) return rc;
    w->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        worker_on_request, w, MHD_OPTION_EXTERNAL_LOGGER, cw_child_mhd_log, (void *)"worker",
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_URI_LOG_CALLBACK, worker_on_uri, w,
        MHD_OPTION_NOTIFY_COMPLETED, worker_on_completed, w, MHD_OPTION_NOTIFY_CONNECTION,
        cw_wire_on_connection, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)WORKER_CONN_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WORKER_CONN_TIMEOUT, MHD_OPTION_END);
    if (w->mhd == NULL) {
        cw_err("worker %d: MHD_start_daemon failed on fd %d", w->index, listen_fd);
        return -EIO;
    }
    return worker_loop_start(w);
}

/* Waits for SIGTERM/SIGINT; SIGUSR1 reopens the access log (logrotate). Between signals,
 * once a period, the heartbeat (workers/worker_beat.h). */
static void worker_wait_signal(struct cw_worker *w, struct cw_worker_beat *beat)
{
    const struct timespec period = {CW_WORKER_BEAT_PERIOD_MS / 1000,
                                    (CW_WORKER_BEAT_PERIOD_MS % 1000) * 1000000L};
    int64_t next = cw_clock_mono_ms();
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        int64_t now = cw_clock_mono_ms();
        if (now >= next) {
            cw_worker_beat_tick(beat, w->loop.started ? worker_add_connection : NULL, w, w->fetch,
                                now);
            next = now + CW_WORKER_BEAT_PERIOD_MS;
        }
        sig = sigtimedwait(&set, NULL, &period);
        if (sig == SIGTERM || sig == SIGINT) return;
        if (sig == SIGUSR1 && cw_accesslog_reopen(w->alog) < 0)
            cw_warn("worker %d: access log stays on the old file", w->index);
        if (getppid() == 1) return;
    }
}

/* Waits (bounded) until the requests resumed for the stop have been answered, so that no
 * connection is still suspended when MHD stops (MHD aborts on that). */
static void worker_settle(struct cw_worker *w)
{
    int64_t deadline = cw_clock_mono_ms() + WORKER_SETTLE_MS;

    while (w->loop.started && atomic_load(&w->inflight) > 0 && cw_clock_mono_ms() < deadline)
        usleep(5000);
}

static void worker_drain(struct cw_worker *w)
{
    int64_t start = cw_clock_mono_ms();
    int64_t deadline = start + w->cfg->shutdown_grace_ms;

    /* Stop accepting; the listen socket stays open (the supervisor holds it) for the worker that
     * takes this one's place. */
    (void)MHD_quiesce_daemon(w->mhd);
    atomic_store(&w->draining, true);
    /* A connection accepted just before the quiesce has not sent its request line yet, so it
     * is not counted in flight: give it WORKER_DRAIN_MIN_MS to become a request rather than
     * reset it (a reload's clients would see that as a failed request). */
    while ((atomic_load(&w->inflight) > 0 || cw_clock_mono_ms() - start < WORKER_DRAIN_MIN_MS) &&
           cw_clock_mono_ms() < deadline)
        usleep(10000);
    if (atomic_load(&w->inflight) > 0)
        cw_warn("worker %d: %d requests still in flight after the grace period", w->index,
                atomic_load(&w->inflight));
}

int cw_worker_run(const struct cw_child_ctx *ctx)
{
    struct cw_worker w = {.cfg = ctx->cfg,
                          .seg = ctx->seg,
                          .slot = ctx->slot,
                          .index = ctx->index,
                          .pid = (int32_t)getpid(),
                          .refresh_fd = ctx->wake_fd,
                          .loop = {.wake_fd = -1, .add_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER}};
    struct cw_worker_beat beat; /* outlives the fetch loop, which may hold its task */
    int status = 0;

    cw_worker_beat_init(&beat, ctx->seg, ctx->slot);
    cw_child_setup("cw-worker", ctx->seg, ctx->slot);
    if (worker_open(&w, ctx->listen_fd) < 0) {
        status = 1;
        goto out_close;
    }
    cw_info("worker %d: serving on fd %d", w.index, ctx->listen_fd);
    worker_wait_signal(&w, &beat);
    worker_drain(&w);
out_close:
    /* Past the grace: new requests get 503 and fetch nothing; waiters resume (503) and
     * fetches are cancelled (their clients get 503); once MHD has answered them all, it is
     * stopped, and only then is the fetch loop freed (the MHD thread may still submit). */
    atomic_store(&w.stopping, true);
    req_wait_stop(&w);
    cw_upstream_cancel(w.fetch);
    req_l2_stop(&w);
    worker_settle(&w);
    worker_loop_stop(&w);
    if (w.mhd) MHD_stop_daemon(w.mhd);
    req_ready_free(w.ready);
    free(w.spare); /* the MHD thread is gone */
    free(w.spare_key_buf);
    cw_upstream_stop(w.fetch);
    cw_worker_beat_stop(&beat);
    req_wait_destroy(&w);
    cw_accesslog_close(w.alog);
    cw_store_reader_close(w.fetch_reader);
    cw_store_reader_close(w.reader);
    cw_store_close(w.store);
    cw_info("worker %d: stopped", w.index);
    return status;
}
