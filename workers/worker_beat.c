/* workers/worker_beat.c - see workers/worker_beat.h. */
#include "workers/worker_beat.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "shm/seg.h"

/* A probe whose answer has not come in this long is dropped and a new one sent: MHD closed
 * it (a connection limit) or the thread is wedged, which the missing stamp already says. */
#define WORKER_BEAT_PROBE_GIVEUP_MS 10000

/* The probe's client address: AF_UNIX, which no real client has (the listen socket is TCP),
 * so a connection with it is a probe whatever its request says. */
static const struct sockaddr_un worker_beat_addr = {.sun_family = AF_UNIX,
                                                    .sun_path = "cachewarp-heartbeat"};
/* Kept alive: one connection for the worker's life, so that MHD's one-time complaints about
 * a socket that is not TCP (TCP_NODELAY, TCP_CORK) are logged once, not every second. */
static const char worker_beat_request[] =
    "GET /.cachewarp/heartbeat HTTP/1.1\r\nHost: cachewarp\r\n\r\n";

/* Sentinels for a probe's *req_cls: before and after the first access-handler call. */
static char worker_beat_new, worker_beat_body;

static void worker_beat_task_run(struct cw_upstream_task *t, bool cancelled);
static void worker_beat_collect(struct cw_worker_beat *b, int64_t now_ms);
static void worker_beat_send(struct cw_worker_beat *b, cw_worker_beat_add_fn add, void *add_ctx,
                             int64_t now_ms);

void cw_worker_beat_init(struct cw_worker_beat *b, struct cw_seg *seg, int slot)
{
    memset(b, 0, sizeof(*b));
    b->task.run = worker_beat_task_run;
    b->probe_fd = -1;
    b->seg = seg;
    b->slot = slot;
}

/* On the fetch loop's thread: the loop got round to its queue. */
static void worker_beat_task_run(struct cw_upstream_task *t, bool cancelled)
{
    struct cw_worker_beat *b = (struct cw_worker_beat *)t; /* task is the first member */

    if (!cancelled) atomic_fetch_add(&b->task_runs, 1);
    atomic_store(&b->task_queued, false);
}

/* Reads the answer to the probe in flight, if it has come: the whole head of a 204 (no body
 * follows) proves the MHD thread ran the request through its callbacks, and the connection
 * is ready for the next probe. */
static void worker_beat_collect(struct cw_worker_beat *b, int64_t now_ms)
{
    ssize_t n;

    if (b->probe_fd == -1 || !b->probe_waiting) return;
    n = recv(b->probe_fd, b->answer + b->answer_len, sizeof(b->answer) - 1 - b->answer_len,
             MSG_DONTWAIT);
    if (n > 0) {
        b->answer_len += (size_t)n;
        b->answer[b->answer_len] = '\0';
        if (b->answer_len >= 9 && memcmp(b->answer, "HTTP/1.1 ", 9) == 0 &&
            strstr(b->answer, "\r\n\r\n") != NULL) {
            b->mhd_ok = true;
            b->probe_waiting = false;
            return;
        }
        if (b->answer_len < sizeof(b->answer) - 1) return; /* the rest comes later */
    } else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
               now_ms - b->probe_sent_ms < WORKER_BEAT_PROBE_GIVEUP_MS) {
        return; /* not yet: keep waiting, no new probe meanwhile */
    }
    /* Closed (MHD's idle timeout, a stop), a strange answer, or none for too long: start a
     * new connection next time. */
    close(b->probe_fd);
    b->probe_fd = -1;
    b->probe_waiting = false;
}

/* A new probe connection: 0, or -1 with the cause logged. */
static int worker_beat_connect(struct cw_worker_beat *b, cw_worker_beat_add_fn add, void *add_ctx)
{
    int sv[2];
    int rc;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
        cw_warn("worker: heartbeat: socketpair: %s", strerror(errno));
        return -1;
    }
    /* add owns sv[1] from here, and closes it even on failure. */
    rc = add(add_ctx, sv[1], (const struct sockaddr *)&worker_beat_addr, sizeof(worker_beat_addr));
    if (rc < 0) {
        cw_warn("worker: heartbeat: add the probe connection: %s", strerror(-rc));
        close(sv[0]);
        return -1;
    }
    b->probe_fd = sv[0];
    return 0;
}

static void worker_beat_send(struct cw_worker_beat *b, cw_worker_beat_add_fn add, void *add_ctx,
                             int64_t now_ms)
{
    if (b->probe_waiting || add == NULL) return;
    if (b->probe_fd == -1 && worker_beat_connect(b, add, add_ctx) < 0) return;
    /* The request fits the socket buffer, which is empty between probes: the write never
     * blocks. */
    if (send(b->probe_fd, worker_beat_request, sizeof(worker_beat_request) - 1,
             MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)(sizeof(worker_beat_request) - 1)) {
        cw_warn("worker: heartbeat: send probe: %s", strerror(errno));
        close(b->probe_fd);
        b->probe_fd = -1;
        return;
    }
    b->probe_waiting = true;
    b->probe_sent_ms = now_ms;
    b->answer_len = 0;
}

void cw_worker_beat_tick(struct cw_worker_beat *b, cw_worker_beat_add_fn add, void *add_ctx,
                         struct cw_upstream *up, int64_t now_ms)
{
    uint32_t runs = atomic_load(&b->task_runs);
    int rc;

    worker_beat_collect(b, now_ms);
    if (runs != b->task_seen) {
        b->task_seen = runs;
        b->fetch_ok = true;
    }
    if (b->mhd_ok && b->fetch_ok) {
        cw_seg_beat(b->seg, b->slot, now_ms);
        b->mhd_ok = b->fetch_ok = false;
    }
    worker_beat_send(b, add, add_ctx, now_ms);
    if (up != NULL && !atomic_load(&b->task_queued)) {
        atomic_store(&b->task_queued, true);
        rc = cw_upstream_defer(up, &b->task);
        if (rc < 0) {
            /* -EAGAIN: the loop's queue is full, itself a sign it is behind; retried. */
            atomic_store(&b->task_queued, false);
            if (rc != -EAGAIN) cw_warn("worker: heartbeat: defer: %s", strerror(-rc));
        }
    }
}

void cw_worker_beat_stop(struct cw_worker_beat *b)
{
    if (b->probe_fd != -1) close(b->probe_fd);
    b->probe_fd = -1;
}

void *cw_worker_beat_on_uri(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    if (ci == NULL || ci->client_addr == NULL || ci->client_addr->sa_family != AF_UNIX) return NULL;
    return &worker_beat_new;
}

bool cw_worker_beat_is_probe(const void *req_cls)
{
    return req_cls == &worker_beat_new || req_cls == &worker_beat_body;
}

enum MHD_Result cw_worker_beat_on_request(struct MHD_Connection *conn, void **req_cls)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (*req_cls == &worker_beat_new) {
        *req_cls = &worker_beat_body;
        return MHD_YES;
    }
    resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) return MHD_NO; /* no answer: no beat, which is right without memory */
    ret = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, resp);
    MHD_destroy_response(resp);
    return ret;
}
