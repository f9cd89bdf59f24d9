/* workers/worker_beat.h - a worker's heartbeat: each second, proof that its MHD thread and its
 * fetch loop both make progress, stamped into its slot of the shm segment for the supervisor's
 * watchdog (workers/supervisor_ctl.c).
 *
 * A worker that is alive but wedged (a thread stuck on a lock, in a loop, or stopped by a
 * debugger) is otherwise invisible: its process runs. The proofs are end to end, not counters
 * a stuck thread could still bump: the MHD thread must answer a real HTTP request, sent on one
 * end of a socketpair whose other end the MHD thread adds to the daemon (the kernel, not the
 * client, picks which worker's listen socket takes a connection), and the fetch loop must run a
 * task queued with cw_upstream_defer(). Owns the probe's connection (one, kept alive); the beat
 * struct must outlive the fetch loop (a queued task points into it). Called from the worker's main
 * thread only, except the probe hooks, which run on the MHD thread. */
#ifndef CW_WORKER_BEAT_H
#define CW_WORKER_BEAT_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "workers/upstream.h"

struct cw_seg;

/* One worker's heartbeat state. Zeroing is not enough: use cw_worker_beat_init(). */
struct cw_worker_beat {
    struct cw_upstream_task task; /* first: the task callback finds the struct from it */
    _Atomic bool task_queued;     /* owned by the fetch loop while true */
    _Atomic uint32_t task_runs;
    uint32_t task_seen;
    int probe_fd;       /* our end of the probe connection (kept alive), -1 for none */
    bool probe_waiting; /* a probe request is in flight on it */
    int64_t probe_sent_ms;
    char answer[256]; /* the head of the answer so far, NUL-terminated */
    size_t answer_len;
    bool mhd_ok;   /* the MHD thread answered since the last stamp */
    bool fetch_ok; /* the fetch loop ran a task since the last stamp */
    struct cw_seg *seg;
    int slot;
};

/* The heartbeat period; the supervisor calls a worker wedged when its beat is older than
 * CW_SEG_BEAT_STALE_MS (shm/seg_types.h). */
#define CW_WORKER_BEAT_PERIOD_MS 1000

void cw_worker_beat_init(struct cw_worker_beat *b, struct cw_seg *seg, int slot);

/* Hands a connected socket and its client address to the thread that runs the daemon's event
 * loop, which adds it with MHD_add_connection() (in a daemon without an internal thread, that
 * call must come from the loop's thread). Owns fd from the call on, also when it fails; addr
 * must outlive the call. Returns 0, or -errno. */
typedef int (*cw_worker_beat_add_fn)(void *ctx, int fd, const struct sockaddr *addr,
                                     socklen_t addrlen);

/* One period: collects the answers to the previous probes, stamps the slot with now_ms when
 * both threads proved progress since the last stamp, and sends the next probes. Never blocks.
 * A probe that cannot be sent is logged (rate-limited by its period) and retried next time.
 * add (NULL: no MHD probe) hands a new probe connection to the daemon. */
void cw_worker_beat_tick(struct cw_worker_beat *b, cw_worker_beat_add_fn add, void *add_ctx,
                         struct cw_upstream *up, int64_t now_ms);

/* Closes the probe connection. The task may still be queued: the fetch loop's cancel runs it. */
void cw_worker_beat_stop(struct cw_worker_beat *b);

/* The MHD side, from the worker's URI, access and completion callbacks. on_uri returns the
 * request's *req_cls for a probe connection (a sentinel, not memory), or NULL for any other
 * request. is_probe tells a sentinel from a real request. on_request answers a probe: the
 * library's two-call idiom (workers/worker.c), then 204. */
void *cw_worker_beat_on_uri(struct MHD_Connection *conn);
bool cw_worker_beat_is_probe(const void *req_cls);
enum MHD_Result cw_worker_beat_on_request(struct MHD_Connection *conn, void **req_cls);

#endif /* CW_WORKER_BEAT_H */
