/* workers/req_stream.c - the pipe of a request whose transfer runs while its connection is
 * live: the origin's answer streaming down (the fetch thread pushes, libmicrohttpd's content
 * reader on the MHD thread sends) and the client's body streaming up (the MHD thread pushes
 * what it receives, libcurl's read callback on the fetch thread sends). Memory is bounded by
 * the two rings: a full one pauses its writer (the transfer, or the client's connection:
 * TCP then slows the sender), an empty one its reader. The pipe also carries the answer's
 * step to the MHD thread while the body still arrives, and settles who frees the request when
 * the client leaves while the transfer runs: the transfer is aborted, and its end frees the
 * request. Leaves of the request state machine (workers/req.c). */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "workers/req_int.h"

#define REQ_PIPE_BYTES (256u << 10) /* per streamed answer; > libcurl's largest write (16 KiB) */

/* A ring of REQ_PIPE_BYTES, allocated on first use. */
struct req_ring {
    char *buf;
    size_t head, len;
};

struct req_pipe {
    pthread_mutex_t lock;
    /* The answer, down. */
    struct req_ring down;
    bool eof;     /* the transfer ended; rc says how */
    int rc;       /* 0: the whole body is in the pipe */
    bool waiting; /* the reader found it empty and suspended the connection */
    bool paused;  /* a push was refused for room: resume the transfer once half is free */
    bool gone;    /* the request completed while the transfer ran: its end frees r */
    char *tail; /* the body's last bytes, given at the end (req_pipe_end()), sent after the ring */
    size_t tail_len, tail_off;
    /* The request body, up. */
    struct req_ring up;
    bool up_open;           /* the body streams (req_pipe_upload_start() ran) */
    bool up_eof;            /* the client's body ended */
    bool up_read_paused;    /* the read callback found it empty: resume the transfer */
    bool up_waiting_space;  /* the MHD thread found it full and suspended the connection */
    bool up_waiting_answer; /* the body is in; the connection waits suspended for the answer */
    enum req_step answer;   /* the answer's step, come while the body still arrived */
};

static size_t ring_put(struct req_ring *g, const char *data, size_t n)
{
    size_t room = REQ_PIPE_BYTES - g->len, tail, first;

    if (n > room) n = room;
    tail = (g->head + g->len) % REQ_PIPE_BYTES;
    first = n < REQ_PIPE_BYTES - tail ? n : REQ_PIPE_BYTES - tail;
    memcpy(g->buf + tail, data, first);
    memcpy(g->buf, data + first, n - first);
    g->len += n;
    return n;
}

static size_t ring_get(struct req_ring *g, char *out, size_t max)
{
    size_t n = g->len < max ? g->len : max;
    size_t first = n < REQ_PIPE_BYTES - g->head ? n : REQ_PIPE_BYTES - g->head;

    memcpy(out, g->buf + g->head, first);
    memcpy(out + first, g->buf, n - first);
    g->head = (g->head + n) % REQ_PIPE_BYTES;
    g->len -= n;
    return n;
}

static int ring_alloc(struct req_ring *g)
{
    if (g->buf == NULL) g->buf = malloc(REQ_PIPE_BYTES);
    return g->buf ? 0 : -ENOMEM;
}

static int req_pipe_get(struct worker_req *r)
{
    struct req_pipe *p;

    if (r->pipe != NULL) return 0;
    p = calloc(1, sizeof(*p));
    if (p == NULL) return -ENOMEM;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return -ENOMEM;
    }
    r->pipe = p;
    return 0;
}

int req_pipe_open(struct worker_req *r)
{
    int rc = req_pipe_get(r);

    if (rc == 0) {
        pthread_mutex_lock(&r->pipe->lock);
        rc = ring_alloc(&r->pipe->down);
        pthread_mutex_unlock(&r->pipe->lock);
    }
    return rc;
}

int req_pipe_push(struct worker_req *r, const char *data, size_t n)
{
    struct req_pipe *p = r->pipe;
    bool wake;

    pthread_mutex_lock(&p->lock);
    if (p->gone) {
        pthread_mutex_unlock(&p->lock);
        return -ECANCELED;
    }
    if (REQ_PIPE_BYTES - p->down.len < n) {
        p->paused = true; /* the same bytes come again after the resume */
        pthread_mutex_unlock(&p->lock);
        return CW_UPSTREAM_PAUSE;
    }
    (void)ring_put(&p->down, data, n);
    wake = p->waiting;
    p->waiting = false;
    pthread_mutex_unlock(&p->lock);
    if (wake) req_conn_resume(r);
    return CW_UPSTREAM_GO;
}

bool req_pipe_end(struct worker_req *r, int rc, struct cw_str tail)
{
    struct req_pipe *p = r->pipe;
    bool wake, gone;
    char *copy = NULL;

    /* Without memory for the tail the body cannot be whole: the connection closes. */
    if (rc == 0 && tail.len > 0 && (copy = malloc(tail.len)) == NULL) rc = -ENOMEM;
    if (copy != NULL) memcpy(copy, tail.p, tail.len);
    pthread_mutex_lock(&p->lock);
    p->tail = copy;
    p->tail_len = copy != NULL ? tail.len : 0;
    p->eof = true;
    p->rc = rc;
    gone = p->gone;
    /* A connection suspended for the upload's room goes on: what is left is discarded. */
    wake = (p->waiting || p->up_waiting_space) && !gone;
    p->waiting = p->up_waiting_space = false;
    pthread_mutex_unlock(&p->lock);
    if (wake) req_conn_resume(r);
    return gone;
}

char *req_pipe_take_whole(struct worker_req *r, uint64_t len)
{
    struct req_pipe *p = r->pipe;
    char *out = NULL;

    if (p == NULL) return NULL;
    pthread_mutex_lock(&p->lock);
    if (p->eof && p->rc == 0 && p->tail_off == 0 && p->down.len + p->tail_len == len &&
        (out = malloc(len ? len : 1)) != NULL) {
        size_t n = ring_get(&p->down, out, p->down.len);
        if (p->tail_len > 0) memcpy(out + n, p->tail, p->tail_len);
        p->tail_off = p->tail_len;
    }
    pthread_mutex_unlock(&p->lock);
    return out;
}

ssize_t req_pipe_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct worker_req *r = cls;
    struct req_pipe *p = r->pipe;
    bool resume = false;
    size_t n;

    (void)pos;
    pthread_mutex_lock(&p->lock);
    if (p->down.len == 0 && p->tail_off < p->tail_len) {
        n = p->tail_len - p->tail_off < max ? p->tail_len - p->tail_off : max;
        memcpy(buf, p->tail + p->tail_off, n);
        p->tail_off += n;
        pthread_mutex_unlock(&p->lock);
        r->bytes += n;
        return (ssize_t)n;
    }
    if (p->down.len == 0) {
        int rc = p->rc;
        if (p->eof) {
            pthread_mutex_unlock(&p->lock);
            if (rc == 0) return MHD_CONTENT_READER_END_OF_STREAM;
            /* A body cut short by the origin must not look whole: the connection closes. With
             * MHD_USE_TURBO libmicrohttpd closes the socket only at its next cleanup, so the
             * client is told now (FIN after a short body: it sees the answer incomplete). */
            const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
            if (ci != NULL) (void)shutdown(ci->connect_fd, SHUT_RDWR);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        /* Under the lock: a push cannot resume the connection before it is suspended. */
        p->waiting = true;
        MHD_suspend_connection(r->conn);
        pthread_mutex_unlock(&p->lock);
        return 0;
    }
    n = ring_get(&p->down, buf, max);
    if (p->paused && p->down.len <= REQ_PIPE_BYTES / 2) {
        p->paused = false;
        resume = true;
    }
    pthread_mutex_unlock(&p->lock);
    if (resume) cw_upstream_resume(&r->job.xfer);
    r->bytes += n;
    return (ssize_t)n;
}

bool req_pipe_release(struct worker_req *r, bool whole)
{
    struct req_pipe *p = r->pipe;
    bool live;

    if (p == NULL) return true;
    pthread_mutex_lock(&p->lock);
    live = !p->eof;
    if (live) {
        p->gone = true;
        /* The client has the whole answer (its length was known): the transfer ends on its
         * own, and its end may still store the copy. Else the client left: end it now. Under
         * the lock: the transfer's end cannot free r before this returns. */
        if (!whole) cw_upstream_abort(&r->job.xfer);
    }
    pthread_mutex_unlock(&p->lock);
    return !live; /* else the transfer's end (on the fetch thread) frees r */
}

void req_pipe_free(struct worker_req *r)
{
    struct req_pipe *p = r->pipe;

    if (p == NULL) return;
    pthread_mutex_destroy(&p->lock);
    free(p->tail);
    free(p->down.buf);
    free(p->up.buf);
    free(p);
    r->pipe = NULL;
}

int req_pipe_upload_start(struct worker_req *r)
{
    int rc = req_pipe_get(r);

    if (rc == 0) {
        pthread_mutex_lock(&r->pipe->lock);
        rc = ring_alloc(&r->pipe->up);
        if (rc == 0) r->pipe->up_open = true;
        pthread_mutex_unlock(&r->pipe->lock);
    }
    return rc;
}

bool req_pipe_uploading(const struct worker_req *r)
{
    return r->pipe != NULL && r->pipe->up_open;
}

size_t req_pipe_upload_push(struct worker_req *r, const char *data, size_t n)
{
    struct req_pipe *p = r->pipe;
    bool resume = false;
    size_t took;

    pthread_mutex_lock(&p->lock);
    if (p->eof) {
        took = n; /* the transfer ended: nobody reads the rest */
    } else {
        took = ring_put(&p->up, data, n);
        resume = took > 0 && p->up_read_paused;
        if (resume) p->up_read_paused = false;
        /* What did not fit waits in libmicrohttpd's buffer: the connection is suspended until
         * the read callback makes room (libmicrohttpd would not call again on its own until
         * more bytes arrive, and the client may have sent its last). Under the lock: the read
         * callback cannot resume it before it is suspended. */
        if (took < n) {
            p->up_waiting_space = true;
            MHD_suspend_connection(r->conn);
        }
    }
    pthread_mutex_unlock(&p->lock);
    if (resume) cw_upstream_resume(&r->job.xfer);
    return took;
}

bool req_pipe_upload_end(struct worker_req *r, enum req_step *next)
{
    struct req_pipe *p = r->pipe;
    bool resume, now = false;

    pthread_mutex_lock(&p->lock);
    p->up_eof = true;
    resume = p->up_read_paused;
    p->up_read_paused = false;
    if (p->answer != REQ_NEW) {
        *next = p->answer;
        p->answer = REQ_NEW;
        now = true;
    } else {
        p->up_waiting_answer = true;
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&p->lock);
    if (resume) cw_upstream_resume(&r->job.xfer);
    return now;
}

ssize_t req_pipe_upload_read(struct worker_req *r, char *buf, size_t cap)
{
    struct req_pipe *p = r->pipe;
    bool wake = false;
    size_t n;

    pthread_mutex_lock(&p->lock);
    if (p->up.len == 0) {
        bool end = p->up_eof;
        if (!end) p->up_read_paused = true;
        pthread_mutex_unlock(&p->lock);
        return end ? 0 : -EAGAIN;
    }
    n = ring_get(&p->up, buf, cap);
    if (p->up_waiting_space && p->up.len <= REQ_PIPE_BYTES / 2) {
        p->up_waiting_space = false;
        wake = true;
    }
    pthread_mutex_unlock(&p->lock);
    if (wake) req_conn_resume(r);
    return (ssize_t)n;
}

void req_pipe_handoff(struct worker_req *r, enum req_step step)
{
    struct req_pipe *p = r->pipe;
    bool wake = false;

    pthread_mutex_lock(&p->lock);
    if (p->up_waiting_answer) {
        p->up_waiting_answer = false;
        r->step = step;
        wake = true;
    } else {
        p->answer = step; /* the MHD thread takes it when the body has ended */
        wake = p->up_waiting_space;
        p->up_waiting_space = false;
    }
    pthread_mutex_unlock(&p->lock);
    if (wake) req_conn_resume(r);
}

bool req_pipe_finish(struct worker_req *r, int rc, enum req_step step)
{
    struct req_pipe *p = r->pipe;
    bool wake = false, gone;

    pthread_mutex_lock(&p->lock);
    p->eof = true;
    p->rc = rc;
    gone = p->gone;
    if (!gone && p->up_waiting_answer) {
        p->up_waiting_answer = false;
        r->step = step;
        wake = true;
    } else if (!gone) {
        p->answer = step;
        wake = p->up_waiting_space; /* what is left of the body is discarded, then the answer */
        p->up_waiting_space = false;
    }
    pthread_mutex_unlock(&p->lock);
    if (wake) req_conn_resume(r);
    return gone;
}
