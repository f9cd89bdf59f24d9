/* workers/worker_int.h - internals shared by worker.c (MHD side: requests, hits, answers)
 * and worker_miss.c (origin side: fetch jobs, storing). Not a public API. */
#ifndef CW_WORKER_INT_H
#define CW_WORKER_INT_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/common.h"
#include "core/fresh.h"
#include "core/key.h"
#include "workers/fetch.h"

struct cw_config;
struct cw_config_route;
struct cw_seg;
struct cw_store;
struct cw_store_reader;

struct cw_worker {
    const struct cw_config *cfg;
    struct cw_seg *seg;
    int slot;
    int index;
    struct cw_store *store;
    struct cw_store_reader *reader;       /* MHD thread only */
    struct cw_store_reader *fetch_reader; /* fetch thread only */
    struct cw_fetch *fetch;
    struct MHD_Daemon *mhd;
    _Atomic int inflight; /* requests between URI parse and completion */
};

enum worker_req_state {
    WREQ_NEW = 0, /* first handler call: headers parsed, nothing queued yet */
    WREQ_BODY,    /* receiving the request body */
    WREQ_WAIT,    /* suspended, the fetch loop owns the job */
    WREQ_READY,   /* resumed with an outcome to answer */
    WREQ_DONE,    /* a response was queued */
};

enum worker_result {
    WRES_HIT = 0,
    WRES_MISS,
    WRES_STALE,
    WRES_REVALIDATED,
    WRES_PASS,
    WRES_ERROR,
};

struct worker_req {
    struct cw_worker *w;
    struct MHD_Connection *conn;
    enum worker_req_state state;
    char *uri; /* the raw request target, as sent (owned) */
    size_t uri_len;
    const char *method; /* borrowed from MHD, valid for the request */
    const char *host;   /* borrowed from MHD: the Host header, "" when absent */
    bool is_head;
    bool cacheable; /* GET or HEAD the cache may answer or store */
    int route;
    const struct cw_config_route *rt;
    char *key_buf; /* primary key, then vary suffix (owned) */
    size_t key_len;
    size_t primary_len;
    struct cw_key primary;
    struct cw_key key;
    struct cw_fetch_buf body_in; /* request body for pass-through (owned) */
    bool body_over;              /* body_in would pass CW_LIMIT_REQUEST_BODY_BYTES */
    struct cw_fetch_job job;
    char *url;       /* origin URL (owned) */
    char *hdr_lines; /* request header lines for the origin (owned) */
    int64_t start_us;
    /* Outcome, set by the fetch thread before it resumes the connection. */
    enum worker_result result;
    bool stored;
    const char *detail; /* Cache-Status detail, static text */
};

/* worker_miss.c */
/* Builds and submits the origin fetch for r and suspends its connection: MHD_YES, or
 * MHD_NO-free fallback answers (503 when the fetch queue is full). */
enum MHD_Result worker_miss_start(struct worker_req *r);

/* worker.c */
/* Computes the primary key (route key headers included) into r->key_buf (allocated here)
 * and r->primary: 0, -ENOMEM, or -ENOSPC/-EINVAL for a target or host the key refuses. */
int worker_key_primary(struct worker_req *r, const char *host);
/* Appends the values of the request headers named in the list to the primary key in
 * r->key_buf (r->key_len is reset to the primary key first): 0 or -ENOSPC. */
int worker_key_vary(struct worker_req *r, struct cw_str names);
/* Adds a header whose bytes are not NUL-terminated: 0 or -EINVAL. */
int worker_resp_add(struct MHD_Response *resp, struct cw_str name, struct cw_str value);
/* True for headers a cache never forwards or stores: hop-by-hop, or nominated by the
 * Connection value conn (may be empty). */
bool worker_is_hop(struct cw_str name, struct cw_str conn);
/* Queues a short plain-text error answer. */
enum MHD_Result worker_answer_error(struct worker_req *r, unsigned status, const char *body,
                                    const char *detail);

#endif /* CW_WORKER_INT_H */
