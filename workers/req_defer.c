/* workers/req_defer.c - the LMDB writes a worker's MHD thread would otherwise make itself
 * (a lease release, the delete of a bad entry), queued to the fetch thread.
 *
 * LMDB has one writer mutex for every process: a process stopped or slow inside a write txn
 * holds it, and any thread that begins a write waits in futex_wait. The MHD thread answers
 * every hit of its worker, so it never begins one; the fetch thread may wait there, which
 * delays this worker's misses only. Each write is a small heap object with a fetch task in
 * it, freed by the task. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/req_int.h"

enum defer_kind {
    DEFER_RELEASE = 0, /* a lease, by its token */
    DEFER_DROP_BAD,    /* an entry that failed validation, if it still does */
    DEFER_DELETE,      /* an entry MHD refused to send */
};

struct defer_op {
    struct cw_upstream_task task; /* first: the task is the op */
    struct cw_worker *w;
    enum defer_kind kind;
    struct cw_key key;
    uint64_t token;
};

static void defer_do(struct defer_op *op)
{
    struct cw_worker *w = op->w;
    int rc;

    switch (op->kind) {
    case DEFER_RELEASE: {
        struct cw_fill_req q = {.has_lease = true, .lease_key = op->key, .lease_token = op->token};
        cw_fill_abandon(&w->fill, &q, false);
        break;
    }
    case DEFER_DROP_BAD:
        rc = cw_store_drop_bad(w->store, &op->key);
        if (rc < 0 && rc != -ENOENT)
            cw_debug("worker %d: delete of a bad entry failed: %s", w->index, strerror(-rc));
        break;
    case DEFER_DELETE:
        rc = cw_store_delete(w->store, &op->key);
        if (rc < 0 && rc != -ENOENT)
            cw_debug("worker %d: delete of an unservable entry failed: %s", w->index,
                     strerror(-rc));
        break;
    }
}

/* On the fetch thread, or on the stopping thread once the loop has stopped (cancelled): the
 * write is wanted either way (a lease left behind would make other processes wait). */
static void defer_run(struct cw_upstream_task *t, bool cancelled)
{
    struct defer_op *op = (struct defer_op *)t;

    (void)cancelled;
    defer_do(op);
    free(op);
}

static void defer_submit(struct cw_worker *w, enum defer_kind kind, const struct cw_key *key,
                         uint64_t token)
{
    struct defer_op *op = malloc(sizeof(*op));
    int rc;

    if (op == NULL) {
        rc = -ENOMEM;
        goto out_count;
    }
    *op = (struct defer_op){
        .task = {.run = defer_run}, .w = w, .kind = kind, .key = *key, .token = token};
    rc = cw_upstream_defer(w->fetch, &op->task);
    if (rc == 0) return;
    if (rc == -ESHUTDOWN) {
        /* The loop has stopped: the worker answers no more hits, so nothing can stall. */
        defer_do(op);
        free(op);
        return;
    }
    free(op);
out_count:
    cw_seg_add(w->seg, w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
    cw_warn_rl("worker %d: %s left undone: %s", w->index,
               kind == DEFER_RELEASE ? "lease release (it expires at its deadline)"
                                     : "delete of a bad entry (the next read retries)",
               strerror(-rc));
}

void req_defer_release(struct cw_worker *w, struct cw_fill_req *q)
{
    if (!q->has_lease) return;
    q->has_lease = false;
    defer_submit(w, DEFER_RELEASE, &q->lease_key, q->lease_token);
}

void req_defer_drop(struct cw_worker *w, const struct cw_key *key, bool unservable)
{
    defer_submit(w, unservable ? DEFER_DELETE : DEFER_DROP_BAD, key, 0);
}
