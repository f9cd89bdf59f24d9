/* workers/worker.h - a worker process: one libmicrohttpd daemon on the inherited listen
 * socket, serving hits from L1 and sending misses to the origin through its fetch loop.
 *
 * Owns, in the process that calls cw_worker_run(): the MHD daemon (its epoll loop on a thread
 * of ours, cw-mhd), the fetch thread, its own LMDB handle opened after fork, and its counter
 * slot in the shm segment. The hit path reads LMDB and never waits on the network; a miss suspends
 * the client connection until the fetch completes, so a slow origin never stalls hits. */
#ifndef CW_WORKER_H
#define CW_WORKER_H

#include "core/common.h"

struct cw_child_ctx;

/* Runs a worker until SIGTERM or SIGINT, then stops accepting, lets in-flight requests
 * finish within cfg->shutdown_grace_ms, and returns the process exit status (0 on a clean
 * stop, 1 when it could not start). From ctx it uses cfg, seg, index (for logs), slot,
 * listen_fd (its non-blocking listen socket, one of the supervisor's group) and wake_fd (the
 * eventfd that wakes the refresher, -1 for none). Call in a child process after fork(). */
int cw_worker_run(const struct cw_child_ctx *ctx);

#endif /* CW_WORKER_H */
