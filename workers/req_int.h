/* workers/req_int.h - internals of a worker's request path. Not a public API.
 *
 * workers/req.c owns the flow: the request state machine, one function per step, each
 * returning the next (in the manner of Varnish's cache_req_fsm.c). The other req_*.c files
 * are its leaves and never call back into it: req_recv.c (the request as understood: target,
 * directives, forwarding rules), req_hit.c (key, L1 read, serve decision, answers from an
 * entry), req_fetch.c (the origin request, the lease take, invalidation), req_wait.c
 * (coalesced waiters), req_purge.c (PURGE), req_defer.c (LMDB writes handed to the fetch
 * thread) and req_answer.c (building and queueing answers). workers/worker.c is the
 * libmicrohttpd side: connections, the request head and body, then req_run().
 *
 * The MHD thread never begins an LMDB write txn: it reads (a nowrite reader), and every
 * write a request needs (the FETCH lease, its release, a PURGE, the delete of a bad entry)
 * runs on the fetch thread, which may wait on the writer mutex without stalling hits; a hit
 * asks for a background refresh through a lock-free ring in the shm segment. */
#ifndef CW_REQ_INT_H
#define CW_REQ_INT_H

#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/cc.h"
#include "core/common.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/metrics_types.h"
#include "shm/seg_types.h" /* CW_SEG_FILL_BUCKETS */
#include "shm/store.h"     /* struct cw_store_lease */
#include "workers/fill.h"
#include "workers/l2.h" /* cw_l2_done_fn, struct cw_l2_stats */
#include "workers/req_ready.h"
#include "workers/upstream.h"

struct cw_accesslog;
struct cw_config;
struct cw_config_route;
struct cw_seg;
struct cw_store;
struct cw_store_reader;
struct req_fleet;
struct req_fleet_seen;
struct worker_req;

/* The coalesced waiters of one worker: requests suspended until another request (in any
 * process) fills their key. One thread sleeps on the worker's futex word in the shm segment
 * and looks at them when a fill of a watched bucket wakes it, at the nearest deadline, or
 * every few ms for the lease owners' liveness; with no waiters it only sleeps. */
struct worker_waitq {
    pthread_mutex_t lock;
    pthread_t thread;
    bool started;
    bool stopping;
    struct worker_req *head;
    size_t count;
    int64_t sleep_until_ms;              /* when the thread looks again unwoken; INT64_MAX: never */
    uint32_t watch[CW_SEG_FILL_BUCKETS]; /* waiters per fill bucket (the shm watch bits) */
};

/* The thread that runs a worker's daemon, cw-mhd (workers/worker.c): libmicrohttpd's event loop
 * without the library's own thread. */
struct worker_loop {
    pthread_t thread;
    bool started;
    int wake_fd;  /* eventfd in the daemon's epoll set: a resume, a stop, a connection to add */
    int epoll_fd; /* the daemon's epoll set (MHD_DAEMON_INFO_EPOLL_FD) */
    _Atomic bool stop;
    _Atomic uint32_t resumes; /* req_conn_resume() calls, for the poll() turn */
    pthread_mutex_t lock;     /* guards add_addr and add_addrlen */
    _Atomic int add_fd;       /* a connection to add; -1: none */
    const struct sockaddr *add_addr;
    socklen_t add_addrlen;
};

/* A refresh this worker asked for lately: the MHD thread asks once per key per
 * WORKER_ASK_MS, however many hits want it (the refresher dedupes across workers). */
#define WORKER_ASKS   256 /* direct-mapped by key; power of two */
#define WORKER_ASK_MS 1000
struct worker_ask {
    struct cw_key key;
    int64_t until_ms; /* monotonic; 0 = free */
};

struct cw_worker {
    const struct cw_config *cfg;
    struct cw_seg *seg;
    int slot;
    int index;
    int32_t pid;    /* this process's, for the leases it takes */
    int refresh_fd; /* eventfd that wakes the refresher, -1 when none */
    struct cw_store *store;
    struct cw_store_reader *reader;       /* MHD thread only; nowrite */
    struct cw_store_reader *fetch_reader; /* fetch thread only */
    struct cw_fill fill;                  /* for the fetch thread */
    struct cw_fill fill_mhd;              /* for the MHD thread */
    struct cw_upstream *fetch;
    struct MHD_Daemon *mhd;
    struct worker_loop loop;
    struct worker_waitq waitq;
    struct cw_accesslog *alog;           /* NULL when log.access is "" */
    _Atomic int inflight;                /* requests between URI parse and completion */
    _Atomic bool draining;               /* stopped accepting: answers close their connections */
    _Atomic bool stopping;               /* past the grace: new requests get 503, nothing fetched */
    char listen_port[8];                 /* for X-Forwarded-Port and Forwarded */
    struct worker_ask asks[WORKER_ASKS]; /* MHD thread only */
    struct req_ready *ready;             /* MHD thread only; NULL: every answer built */
    struct worker_req *spare; /* MHD thread only: a finished request's memory, kept for the next */
    char *spare_key_buf;      /* MHD thread only: spare's key buffer (CW_LIMIT_KEY_BYTES) */
    /* L2 (req_l2.c): fetch thread only, then the main thread once the loop stopped. */
    struct cw_l2 *l2; /* NULL: redis off, or not opened */
    struct cw_upstream_task l2_task;
    struct cw_l2_stats l2_seen; /* what the counters have of the client's stats */
    bool l2_ready;              /* as last logged */
    bool l2_was_ready;
    uint64_t l2_purges; /* purges published (workers/fleet.h), for their ids */
    /* Fleet-wide coalescing (req_l2.c): fetch thread only. */
    struct worker_req *fleet_head; /* waiting for another node's fill (unordered) */
    size_t fleet_count;
    uint64_t fleet_leases;             /* Redis leases asked, for their tokens */
    char fleet_id[24];                 /* this worker's token prefix, random per start */
    struct req_fleet_seen *fleet_seen; /* the last fills notified (owned) */
};

/* The steps of a request (workers/req.c). A step runs on the MHD thread unless it says
 * otherwise, and returns the next step; REQ_SUSPENDED hands r to another thread, which sets
 * r->step and resumes the connection, and REQ_DONE means an answer was queued. */
enum req_step {
    REQ_NEW = 0, /* worker.c: the head arrived, nothing decided */
    REQ_BODY,    /* worker.c: receiving the request body */
    REQ_RECV,    /* the whole request is in: refusals, target, route, method, directives */
    REQ_LOOKUP,  /* key, Vary and the L1 read */
    REQ_HIT,     /* the entry answers (fresh, or stale the client accepts) */
    REQ_STALE,   /* stale within stale-while-revalidate: answered, a refresh asked */
    REQ_MISS,    /* nothing usable: take the FETCH lease (the take runs on the fetch thread) */
    REQ_L2,      /* the fetch thread put L2's entry into L1 (lease released): answer from it */
    REQ_LEASED,  /* the key was filled while the lease was taken, or another holds it */
    REQ_WAIT,    /* another request fetches the key: suspended until its fill */
    REQ_WAITED,  /* woken by the fill, the deadline or the holder's death: look up again */
    REQ_PASS,    /* not for the cache: to the origin, answered as the origin answers */
    REQ_FETCH,   /* build and submit the origin request */
    REQ_STORE,   /* on the fetch thread: commit the origin's answer (L1, lease, waiters) */
    REQ_FETCHED, /* the origin answered or failed: choose the answer */
    REQ_STREAM,  /* the origin's head is in: its body streams to the client as it arrives */
    REQ_PURGE,   /* PURGE: the writes run on the fetch thread */
    REQ_PURGED,  /* answer the purge */
    REQ_DELIVER, /* queue the answer built in r->resp */
    REQ_SYNTH,   /* queue the synthetic answer in r->synth */
    REQ_UPLOAD,  /* the origin request runs while the body still arrives: back to worker.c */
    REQ_DONE,    /* an answer was queued (r->ret: whether libmicrohttpd took it) */
    REQ_SUSPENDED,
};

/* What the hit callback may serve. */
enum worker_serve {
    WSERVE_LOOKUP = 0, /* fresh, or stale within stale-while-revalidate */
    WSERVE_SIE,        /* stale within stale-if-error, after an origin failure */
    WSERVE_ANY,        /* what a revalidation just stored */
    WSERVE_FILLED,     /* what this request's own fetch just stored (a MISS) */
};

/* A PURGE's state, allocated only for one (a hit carries none of it). */
struct req_purge {
    bool soft;
    bool started;
    char *tags; /* with Surrogate-Key: the tags to purge, not the URL (owned) */
    /* With "Purge-Prefix: 1": the key-string prefix of every entry to purge, not the URL's
     * (owned), and the URL prefix as given, for the fleet (owned). */
    char *prefix;
    size_t prefix_len;
    char *prefix_url;
    /* A tag or prefix purge runs in steps on the fetch thread: where it is. */
    struct cw_store_purge_pos pos;
    size_t tag_off; /* the tag being purged: its offset in tags */
    int rc;         /* 0, or -ECANCELED when the worker stopped first */
    size_t count;
};

struct worker_req {
    struct cw_worker *w;
    struct MHD_Connection *conn;
    enum req_step step;
    char *raw_uri; /* the request target as sent, for the access log (owned) */
    size_t raw_uri_len;
    /* The target as understood: origin-form, path normalised (RFC 3986 §5.2.4, §6.2.2). It
     * routes, keys and goes to the origin. Owned; raw_uri until REQ_RECV. */
    char *uri;
    size_t uri_len;
    char host[CW_LIMIT_HOST_BYTES + 1]; /* Host, or the absolute-form authority, lower-case */
    struct cw_str conn_hdr;             /* the request's Connection value, lines joined */
    char *conn_joined;                  /* conn_hdr's bytes when joined from lines (owned) */
    char *xff;                          /* X-Forwarded-For as sent to the origin (owned) */
    char *forwarded;                    /* Forwarded as sent to the origin (owned) */
    char fwd_addr[INET6_ADDRSTRLEN];    /* the client's address for those two, once formatted */
    bool trusted;                       /* the route trusts the client's forwarding fields */
    unsigned wire_n;                    /* the request's place on its connection */
    unsigned refuse_status;             /* != 0: the wire reader refused this request */
    const char *refuse_reason;
    char *refused_line;    /* the refused request's line split for the access log (owned) */
    struct cw_str log_uri; /* the target for the access log when not raw_uri (in refused_line) */
    const char *method;    /* borrowed from MHD, valid for the request */
    char *method_own;      /* a pass's method, copied: its transfer may outlive the request */
    bool is_head;
    bool has_req_cc;
    struct cw_cc req_cc;  /* the request's Cache-Control (borrows MHD's value) */
    bool pragma_no_cache; /* Pragma: no-cache without Cache-Control (RFC 9111 §5.4) */
    bool cacheable;       /* GET or HEAD the cache may answer or store */
    const struct cw_config_route *rt;
    struct cw_fill_req q;           /* key, lease; q.key_buf owned */
    struct cw_upstream_buf body_in; /* request body for pass-through (owned) */
    bool body_over;                 /* body_in would pass CW_LIMIT_REQUEST_BODY_BYTES */
    bool close;                     /* close the connection after the answer */
    bool refetched;                 /* sent again without validators after an unusable 304 */
    char *join_buf;                 /* req_header()'s joined multi-line values (owned) */
    struct cw_upstream_collect job;
    char *url;       /* origin URL (owned) */
    char *hdr_lines; /* request header lines for the origin (owned) */
    int64_t start_us;
    int64_t start_wall_ms; /* for the access log */
    const char *version;   /* borrowed from MHD, valid for the request */

    /* What was answered, for the counters and the access log (set by req_queue). */
    bool queued;
    unsigned status;
    uint64_t bytes;         /* response body bytes (0 for HEAD) */
    int64_t fetch_start_us; /* monotonic, when the origin fetch was submitted */
    int64_t origin_us;      /* origin fetch time; -1 when the origin was not asked */

    /* What the lookup saw. */
    enum worker_serve serve;
    bool want_refresh; /* ask the refresher for a background refresh */
    bool stale;        /* a stale entry exists */
    int64_t sie_until_ms;
    char etag[CW_LIMIT_VALIDATOR_BYTES + 1]; /* validators of the stale entry, "" when none */
    char last_modified[CW_LIMIT_VALIDATOR_BYTES + 1];
    char refused_header[64]; /* first header libmicrohttpd refused for the answer, "" if none */
    uint32_t gen0;           /* fill generation of the key before the lookup */
    bool coalesced;          /* waited for another request's fill */
    bool l2_tried;           /* L2 was asked (once per request) */
    bool l2_hit;             /* the answer is the entry L2 gave (Cache-Status detail=l2) */
    bool l2_fleet;           /* ... after waiting for another node's fill */
    bool vary_miss;          /* the URI has a Vary record, but not this variant */
    bool fwd_request;        /* the request's own directives sent it to the origin */
    int64_t wait_until_ms;   /* monotonic: the coalescing budget ends here */

    /* Fleet-wide coalescing (req_l2.c), on the fetch thread. */
    struct req_fleet *fleet;       /* the Redis lease r holds (owned), NULL when none */
    cw_l2_done_fn fleet_fn;        /* where the lease take's or the wait's outcome goes */
    struct worker_req *fleet_next; /* in w->fleet_head while waiting for another node's fill */
    struct worker_req *fleet_prev;
    int64_t fleet_asked_ms; /* monotonic: when the lease was asked */
    int64_t l2_asked_ms;    /* monotonic: the L2 GET's start, that of the Redis budget */
    int64_t fleet_until_ms; /* monotonic: the wait ends here unnotified */
    char fleet_key[33];     /* the L2 key waited for */

    /* Waiter list (worker_wait.c), under waitq.lock. */
    struct worker_req *wait_next;
    int32_t wait_pid;
    uint32_t wait_bucket; /* the fill bucket watched for it */

    /* Work on the fetch thread for this request (the lease take, or a purge): set up by
     * the MHD thread, run while the connection is suspended. */
    struct cw_upstream_task task;
    int lease_rc;                       /* the take's result, for REQ_LEASED */
    struct cw_store_lease lease_holder; /* who holds it, when lease_rc is -EBUSY */
    struct req_purge *purge; /* a PURGE's state (req_purge.c); NULL for every other request */

    /* The answer chosen: built (REQ_DELIVER) or synthetic (REQ_SYNTH). */
    struct MHD_Response *resp; /* owned until queued, unless resp_kept */
    unsigned resp_status;
    bool resp_kept; /* resp is a ready answer (req_ready.h): complete, queued, never destroyed */
    bool hit_stale; /* the entry served is stale (REQ_STALE) */
    struct {
        unsigned status;
        const char *body;   /* static text */
        const char *detail; /* for Cache-Status */
        bool close;
    } synth;
    enum MHD_Result ret; /* what the queueing returned, for REQ_DONE */

    /* Streaming, decided by the fetch thread when the origin's head arrives. */
    struct req_pipe *pipe; /* the streamed body's bytes (owned; req_stream.c) */
    bool streaming;        /* the answer goes to the client as it arrives */
    bool collect;          /* the body is kept whole in r->job.body for the store */
    bool too_large;        /* the body passed what may be kept */
    bool want_conditions;  /* the client's preconditions or Range (set before the fetch) */
    bool stream_body;      /* the request body streams to the origin as it arrives */
    bool stream_started;   /* REQ_STREAM was handed the request */
    size_t tail_held; /* the body's last bytes, kept from the pipe until the commit, so its client's
                         next request finds the entry */
    /* The request fields the commit may ask for, copied while the connection was the fetch
     * thread's to read: a streamed answer's client may be gone (and MHD's fields with it)
     * when the transfer ends. "name\0value\0" pairs (owned). */
    struct cw_upstream_buf snap;
    int64_t stream_len;           /* the origin's Content-Length, -1 when none */
    struct cw_fill_result intent; /* the policy on the head alone (for the streamed answer) */

    /* Outcome, set by the fetch thread before it resumes the connection. */
    enum cw_metrics_result result;
    struct cw_fill_result fill;
};

/* worker.c */
/* From any thread: resumes r's suspended connection (MHD_resume_connection()) and wakes the
 * MHD thread's loop, which libmicrohttpd does not do for a loop of the application's. */
void req_conn_resume(struct worker_req *r);

/* req.c */
/* Frees r and what it owns (the lease is released on the fetch thread). */
void req_free(struct worker_req *r);
/* MHD thread only: req_free(), except that r's own memory and its key buffer may be kept in
 * w->spare for the next request (worker_on_uri()), which spares a keep-alive hit a calloc(),
 * a malloc() of CW_LIMIT_KEY_BYTES and their free()s. */
void req_free_mhd(struct worker_req *r);
/* MHD thread only: a zeroed request, from w->spare (with the key buffer kept with it) or
 * calloc(); NULL without memory. */
struct worker_req *req_alloc_mhd(struct cw_worker *w);
/* Runs r's steps from r->step until one queues an answer or hands r to another thread: what
 * the libmicrohttpd handler returns. */
enum MHD_Result req_run(struct worker_req *r);

/* req_recv.c */
/* The first handler call, once MHD has the whole head: the wire reader's verdict
 * (r->refuse_status), the Connection field, and client_body_timeout for a request body. */
void req_recv_head(struct worker_req *r);
/* Logs a request the wire reader refused and sets up its synthetic answer (closing). */
void req_recv_refused(struct worker_req *r);
/* Reads the request target into r->host and r->uri: 0, or the status to refuse it with. */
unsigned req_recv_target(struct worker_req *r, const char **why);
/* True when the route trusts the client's address with forwarding fields. */
bool req_recv_trusted(struct worker_req *r);
/* Reads the request's Cache-Control and Pragma (RFC 9111 §5.2.1, §5.4). */
void req_recv_directives(struct worker_req *r);
/* True when the request carries preconditions or a Range that the cache answers itself. */
bool req_recv_has_conditions(struct worker_req *r);
/* A request header as the origin is sent it, as a cw_fill_header_fn over a worker_req: NULL
 * for a field not forwarded (hop-by-hop, named in Connection, stripped by the route), the
 * value CacheWarp sets for Host, X-Forwarded-* and Forwarded, else the client's (several
 * lines joined). So the key is made of exactly what the origin sees. */
const char *req_header(void *cls, const char *name);
/* The value CacheWarp sends for name, a field req_fwd_field() gives as WFWD_OURS (the
 * builder's `ours`: it asked req_fwd_field() already). NULL when out of memory. */
const char *req_fwd_ours(void *cls, const char *name);
/* How a request field goes to the origin. */
enum req_fwd {
    WFWD_PASS = 0, /* as the client sent it */
    WFWD_DROP,     /* not at all */
    WFWD_OURS,     /* replaced by CacheWarp's value (req_header() gives it) */
};
enum req_fwd req_fwd_field(struct worker_req *r, struct cw_str name);
/* The client's address as text ("unknown" when MHD has none). */
void req_client_addr(struct MHD_Connection *conn, char *buf, size_t size);

/* req_hit.c */
/* The RFC 9211 fwd parameter of a request that went to the origin. */
const char *req_hit_fwd(const struct worker_req *r);
/* Looks the request up in L1 (computing its key on the first call): 1 when the entry may
 * answer (the answer is built in r->resp, r->hit_stale says whether it is stale within
 * stale-while-revalidate), 0 when the origin is needed (r->stale and the validators say what
 * was found), -errno for a target the key refuses. */
int req_hit_lookup(struct worker_req *r);
/* After a fetch: builds the answer from the stored entry under serve rules (stale-if-error,
 * or what a revalidation or this request stored): 1 when built, 0 when the entry is gone or
 * not usable. */
int req_hit_serve_again(struct worker_req *r, enum worker_serve serve);
/* Asks the refresher for a background refresh of r's key, without an LMDB write. */
void req_hit_ask_refresh(struct worker_req *r);

/* req_fetch.c: the origin side. */
/* Builds (once) r's origin request into r->job, run with ops: 0 or -ENOMEM. */
CW_MUST_CHECK int req_fetch_prepare(struct worker_req *r, const struct cw_upstream_ops *ops);
/* Fetch thread, at the origin's head: keeps it in r->job, and decides how the body goes
 * (r->streaming, r->collect, r->intent). */
CW_MUST_CHECK int req_fetch_head(struct worker_req *r, int status,
                                 const struct cw_upstream_fields *h);
/* A request field from r->snap, as a cw_fill_header_fn (NULL when absent). */
const char *req_fetch_snap_header(void *cls, const char *name);
/* Fetch thread: keeps body bytes for the store when collecting: 0, or -EFBIG / -ENOMEM when a
 * body that only collects passes its bound (one that streams stops collecting instead). */
CW_MUST_CHECK int req_fetch_keep(struct worker_req *r, const char *p, size_t n);
/* Submits r's job; r's connection is suspended: 0, or -EAGAIN/-ESHUTDOWN with r->job.rc set
 * to what the answer reports (the caller resumes r). */
CW_MUST_CHECK int req_fetch_submit(struct worker_req *r);
/* On the fetch thread: takes the key's FETCH lease: 0 (r->q holds it), -EBUSY with
 * r->lease_holder, or another -errno from the lease db. */
int req_fetch_lease(struct worker_req *r);
/* On the fetch thread: true when the key was filled since r arrived. */
bool req_fetch_filled_since(struct worker_req *r);
/* On the fetch thread, after the fetch: counts it and records its time and status. */
void req_fetch_account(struct worker_req *r);
/* On the fetch thread: RFC 9111 §4.4 invalidation after an unsafe method's answer. */
void req_fetch_invalidate(struct worker_req *r);

/* req_l2.c: the worker's L2 (Redis). */
/* Queues the open of w's L2 client as the fetch thread's task (nothing when redis is off):
 * 0, or cw_upstream_defer()'s -errno. A Redis that is down is not an error. */
CW_MUST_CHECK int req_l2_start(struct cw_worker *w);
/* After the fetch loop stopped: closes the client (commands in flight complete -ECANCELED). */
void req_l2_stop(struct cw_worker *w);
/* Sets f's stored hook so that what the fetch thread's commits put goes to L2 (redis on). */
void req_l2_fill_hook(struct cw_worker *w, struct cw_fill *f);
/* Fetch thread, r holding its FETCH lease: GETs r's key from L2; fn(r, ...) runs later on
 * the fetch thread: 0. Or, without calling fn: -ENODEV (no L2), -ENOTCONN / -EAGAIN /
 * -ENOBUFS (not usable now: counted as skipped). */
CW_MUST_CHECK int req_l2_lookup(struct worker_req *r, cw_l2_done_fn fn);
/* Fetch thread, after r's PURGE was applied to L1: publishes it to the fleet
 * (workers/fleet.h), and for a URL deletes its entry (the primary key's) in L2 and, when
 * variants_len > 0, bans the variants' prefix r->q.key_buf[0..variants_len) (the URL's key
 * and a newline) in L2. Nothing without L2; failures are logged, never the purge's. */
void req_l2_purged(struct worker_req *r, size_t variants_len);
/* Fetch thread, in the lookup's fn: counts the outcome and commits a found value to L1
 * (cw_fill_commit_encoded(): decoded, the full key checked, the lease released with the
 * put, waiters woken): 0. -ENOENT (absent), the lookup's -errno, or a refusal (-EBADMSG,
 * -ENOENT for another key's entry, -EFBIG over cache.max_object: counted, logged
 * rate-limited, never served) or a store error: r still holds its lease. */
CW_MUST_CHECK int req_l2_accept(struct worker_req *r, int rc, struct cw_str value);

/* Fleet-wide coalescing: before its origin fetch, a node's FETCH lease holder takes the key's
 * lease in Redis; a holder refused it waits for the other node's fill notification. */
/* Fetch thread, after r's L2 lookup missed: asks Redis for the key's lease (SET NX PX, PX the
 * route's lock_timeout); fn(r, ...) runs later on the fetch thread with 0 (taken: r->fleet
 * holds it), -EEXIST (another node holds it), or another -errno (fetch alone; after
 * -ETIMEDOUT r->fleet holds what may have been taken): 0. Or, without
 * calling fn: -ENODEV (no L2), -ENOTCONN / -EAGAIN / -ENOBUFS / -ENOMEM (counted, fetch
 * alone). */
CW_MUST_CHECK int req_l2_lease(struct worker_req *r, cw_l2_done_fn fn);
/* Fetch thread, r refused the lease: r waits, suspended, for the fill notification of its key
 * or the end of its coalescing budget (r->wait_until_ms, less a tenth of lock_timeout, so
 * that its fill can still reach this node's own waiters), then GETs the key from L2; fn(r,
 * ...) runs with the GET's outcome as for req_l2_lookup(). L2 becoming unusable (Redis down,
 * the breaker open) ends every wait at once. False (nothing done) when r cannot wait: its
 * budget is spent, or too many wait. fn may have run when this returns true. */
bool req_l2_wait(struct worker_req *r, cw_l2_done_fn fn);
/* Fetch thread, once r's fetch is committed or failed: releases r's Redis lease (compare and
 * delete by token), then publishes the fill notification, so that waiting nodes GET now
 * (and find the entry, or go to the origin at once if nothing was stored). Nothing when r
 * holds none. */
void req_l2_lease_end(struct worker_req *r);
/* Any thread, from req_free(): hands the release of a lease r still holds to the fetch
 * thread (or, the loop stopped, lets it expire by its PX). */
void req_l2_lease_drop(struct worker_req *r);

/* req_stream.c: a streamed answer's bytes, fetch thread to MHD thread, bounded. */
/* Opens r->pipe: 0, or -ENOMEM. */
CW_MUST_CHECK int req_pipe_open(struct worker_req *r);
/* Fetch thread: takes all n bytes (CW_UPSTREAM_GO), none when there is no room
 * (CW_UPSTREAM_PAUSE: the reader resumes the transfer), or -ECANCELED when r completed. */
int req_pipe_push(struct worker_req *r, const char *data, size_t n);
/* Fetch thread, the transfer's last word on r: the body ended with rc, and tail (copied) is
 * its last bytes, held back until now (may be empty). True when r completed meanwhile: the
 * caller frees it (req_free()); else r may be freed as soon as this returns. */
bool req_pipe_end(struct worker_req *r, int rc, struct cw_str tail);
/* MHD thread: the whole body of len bytes in a new buffer (the caller frees it), taken out of
 * the pipe, when the transfer already ended well with all of it there and none was read;
 * else NULL (nothing taken: the content reader sends it). */
char *req_pipe_take_whole(struct worker_req *r, uint64_t len);
/* The MHD content reader of a streamed answer (cls is r). */
ssize_t req_pipe_read(void *cls, uint64_t pos, char *buf, size_t max);
/* MHD thread, at completion (whole: the client got the whole answer): true when r may be
 * freed now; false when its transfer still runs: its end frees r (it is aborted unless
 * whole). */
bool req_pipe_release(struct worker_req *r, bool whole);
void req_pipe_free(struct worker_req *r);
/* MHD thread: the request body will stream to the origin: 0, or -ENOMEM. */
CW_MUST_CHECK int req_pipe_upload_start(struct worker_req *r);
/* True when r's body streams (the answer's step then goes through req_pipe_handoff()). */
bool req_pipe_uploading(const struct worker_req *r);
/* MHD thread: takes what fits of n body bytes (all of them once the transfer ended); none
 * when the ring is full, and the connection is then suspended until the origin reads. */
size_t req_pipe_upload_push(struct worker_req *r, const char *data, size_t n);
/* MHD thread, the body's end: true and *next when the answer's step came already; else the
 * connection is suspended until it comes. */
bool req_pipe_upload_end(struct worker_req *r, enum req_step *next);
/* Fetch thread, libcurl's read callback: body bytes, 0 at the end, -EAGAIN when none yet. */
ssize_t req_pipe_upload_read(struct worker_req *r, char *buf, size_t cap);
/* Fetch thread: r continues at step once its body is in (at once if it is). */
void req_pipe_handoff(struct worker_req *r, enum req_step step);
/* Fetch thread, the transfer's last word on a request whose body streamed and whose answer
 * did not: as req_pipe_end() and req_pipe_handoff() at once. True when r completed meanwhile:
 * the caller frees it. */
bool req_pipe_finish(struct worker_req *r, int rc, enum req_step step);

/* req_purge.c */
/* True when the client's address is in purge.allow. */
bool req_purge_allowed(struct worker_req *r);
/* On the fetch thread: the purge's writes (r->purge->count, r->purge->rc). A URL purge is
 * done in one call; a tag or prefix purge does REQ_PURGE_BATCHES write txns a call and
 * returns true while there is more, so that the caller lets the loop's other work run
 * between steps (a tag of 100,000 entries must not hold the fetch thread for seconds). */
#define REQ_PURGE_BATCHES 8
bool req_purge_apply(struct worker_req *r, bool cancelled);
/* Builds the answer to a done purge in r->resp: 0, or -ENOMEM. */
CW_MUST_CHECK int req_purge_response(struct worker_req *r);

/* req_defer.c: writes for the fetch thread. None blocks or fails the caller: a write that
 * cannot be queued (queue full, no memory) is counted and logged, and when the fetch loop
 * has stopped (shutdown, no more hits) it is done at once. */
/* Releases q's lease by its token and wakes its waiters; q no longer holds it. */
void req_defer_release(struct cw_worker *w, struct cw_fill_req *q);
/* Deletes key's entry: when it still fails validation (unservable false: a -EBADMSG read), or
 * whatever it is (unservable true: stored, but a header MHD refuses to send). */
void req_defer_drop(struct cw_worker *w, const struct cw_key *key, bool unservable);

/* req_wait.c */
CW_MUST_CHECK int req_wait_start(struct cw_worker *w);
/* Wakes every waiter and stops the thread; later req_wait_add() calls refuse. */
void req_wait_stop(struct cw_worker *w);
/* Suspends r until the fill generation of its key moves (a futex wake-up from the filler),
 * the deadline passes or the lease owner dies; then r resumes at REQ_WAITED. False (r
 * untouched) when the worker is stopping. */
bool req_wait_add(struct cw_worker *w, struct worker_req *r, int32_t owner_pid,
                  int64_t deadline_ms);
/* After req_wait_stop() and MHD_stop_daemon(): frees the lock. */
void req_wait_destroy(struct cw_worker *w);

/* req_answer.c */
/* Adds a header whose bytes are not NUL-terminated: 0, or -EINVAL when it is too long or
 * libmicrohttpd refuses it. The caller decides what a refusal means (req_resp_refused()). */
CW_MUST_CHECK int req_resp_add(struct MHD_Response *resp, struct cw_str name, struct cw_str value);
/* Adds a header to the answer being built for r. libmicrohttpd refuses one only for bytes it
 * cannot send (CR, LF, a tab in a name), a Content-Length, or lack of memory; the refusal is
 * kept on r (req_resp_refused()) and req_queue() then answers 500 instead of sending a
 * response without that header. */
void req_resp_header(struct worker_req *r, struct MHD_Response *resp, const char *name,
                     const char *value);
/* Records that a header named name could not be added to r's answer (the first one wins). */
void req_resp_refused(struct worker_req *r, struct cw_str name);
/* Counts the request's outcome in the worker's slot. */
void req_count(struct worker_req *r, enum cw_metrics_result res);
/* Adds Via (and Connection: close when closing), queues resp with status and releases it.
 * When a header of resp was refused (req_resp_header()), resp is dropped and a 500 goes
 * out instead, counted as an error and logged (rate-limited) with the header's name. A
 * ready answer (r->resp_kept) is queued as it is and stays its set's. */
enum MHD_Result req_queue(struct worker_req *r, unsigned status, struct MHD_Response *resp);
/* Adds the Via field req_queue() adds, to an answer that will be kept ready. */
void req_resp_via(struct worker_req *r, struct MHD_Response *resp);
/* Queues a short plain-text error answer. */
enum MHD_Result req_answer_error(struct worker_req *r, unsigned status, const char *body,
                                 const char *detail);
/* As req_answer_error(), and closes the connection after the answer. */
enum MHD_Result req_answer_close(struct worker_req *r, unsigned status, const char *body,
                                 const char *detail);
/* Builds the answer to a passed-through or fetched request from the origin's response in
 * r->resp (the body moves out of r->job): 0, or -ENOMEM. */
CW_MUST_CHECK int req_answer_origin(struct worker_req *r);
/* As req_answer_origin(), for an answer whose body streams from r->pipe (its head is in
 * r->job, the policy's verdict in r->intent): 0, or -ENOMEM. */
CW_MUST_CHECK int req_answer_stream(struct worker_req *r);

#endif /* CW_REQ_INT_H */
