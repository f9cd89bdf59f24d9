/* workers/upstream_int.h - what the upstream module's files share: the loop's structs and the
 * functions one file calls in another. upstream.c runs the loop; upstream_recv.c reads a response;
 * upstream_queue.c admits transfers and queues them per origin; upstream_xfer.c starts and ends a
 * transfer's attempts; upstream_pool.c keeps the server pools; upstream_collect.c collects a
 * response whole. Not a public API: the rest of the program uses workers/upstream.h. Loop thread
 * only, like the callbacks, except the fields of struct cw_upstream marked as under its lock. */
#ifndef CW_UPSTREAM_INT_H
#define CW_UPSTREAM_INT_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/limits.h"
#include "workers/upstream.h"

struct cw_config;
struct cw_seg;
struct upstream_origin; /* one origin's pool as this process runs it (upstream_pool.c) */

/* One origin's connections: at most max transfers in the multi handle at once, at most
 * queue_max waiting for one. Its settings are copied from the config at start. Loop only. */
struct upstream_pool {
    int max;
    int running;
    struct upstream_run *wait_head; /* oldest first */
    struct upstream_run **wait_tail;
    int waiting;
    int queue_max;
    int64_t queue_timeout_ms; /* 0: the first-byte timeout bounds the wait */
    int64_t first_byte_ms;    /* 0: the request's timeout */
    int64_t total_ms;         /* 0: none */
    long idle_s;              /* CURLOPT_MAXAGE_CONN */
    char *name;
    char *tls_cert, *tls_key, *sni;
    char *host_line;                           /* "Host: value", or NULL */
    bool queue_full_logged;                    /* refusing: logged once until one waits */
    bool tls_failing[CW_LIMIT_ORIGIN_SERVERS]; /* a server's TLS failed: logged once */
};

struct cw_upstream {
    pthread_t thread;
    bool thread_started;
    CURLM *multi;
    CURLSH *share; /* TLS sessions, shared by every easy handle (loop thread only) */
    pthread_mutex_t lock;
    /* Under lock. */
    struct cw_upstream_xfer *q_head; /* submitted, not yet taken by the loop, oldest first */
    struct cw_upstream_xfer **q_tail;
    size_t max_pending;
    size_t active;                  /* submitted, on_done not yet called */
    struct cw_upstream_task *tasks; /* deferred work, oldest first */
    struct cw_upstream_task **tasks_tail;
    size_t task_count;
    struct cw_upstream_xfer *resumes; /* transfers to unpause */
    bool stopping;
    /* Set at start, then read only. */
    struct upstream_pool *pools;
    size_t pool_count;
    struct upstream_origin *origins; /* per pool: servers, health, breaker (loop only) */
    /* Loop only. */
    struct upstream_run *running;            /* transfers in the multi handle */
    const struct cw_upstream_poller *poller; /* other sockets to wait on; NULL when none */
    void *poller_cls;
};

/* A transfer the loop has taken: its easy handle (once started) and response state. */
struct upstream_run {
    struct upstream_run *prev, *next; /* running list, or next in a pool's wait queue */
    struct cw_upstream_xfer *x;
    struct upstream_pool *pool;
    struct upstream_origin *origin;
    int server;    /* of the origin's pool, -1 before one is chosen */
    bool probe;    /* admitted as the half-open breaker's probe */
    bool retried;  /* this is the one retry, on another server */
    char *url;     /* req->url on the chosen server */
    char *tls_url; /* url with the origin's sni as its host (then connect_to), or NULL */
    CURL *easy;    /* NULL while waiting in the pool */
    struct curl_slist *hdrs;
    struct curl_slist *connect_to; /* "sni:port:host:port" with tls_url */
    int64_t taken_ms;          /* monotonic, when the loop took it: its timeout runs from here */
    int64_t wait_deadline_ms;  /* waiting in the pool: ended then with wait_rc */
    int wait_rc;               /* -EAGAIN (queue_timeout) or -ETIMEDOUT (first byte) */
    int64_t first_byte_ms;     /* the longest silence before the head */
    int64_t total_deadline_ms; /* monotonic: the whole transfer ends by then (0: none) */
    struct cw_upstream_buf headers; /* lines of the response being read, NUL-separated */
    size_t header_count;
    int fail_rc;            /* set by callbacks that end the transfer */
    int64_t content_length; /* of the response being read, -1 when none yet */
    bool chunked;           /* it has a Transfer-Encoding */
    bool head_done;         /* on_head ran */
    bool hold;              /* on_head said PAUSE: hold the body until resumed */
    bool paused;            /* a callback paused it: no timeout runs until it is resumed */
    bool aborted;           /* cw_upstream_abort() came before it started */
    int64_t deadline_ms;    /* monotonic: no byte by then ends it with -ETIMEDOUT (0: none) */
};

/* ---- The loop (upstream.c) --------------------------------------------------------------- */

/* Runs the deferred tasks, oldest first (cancelled: the loop is stopping). */
void upstream_run_tasks(struct cw_upstream *up, bool cancelled);

/* ---- Reading a response (upstream_recv.c) ------------------------------------------------ */

/* From on_done: moves the transfer's response header lines (cw_upstream_fields layout) into
 * *out and their count into *count; the caller owns them (free()). Leaves both unchanged for a
 * transfer that never started. */
void upstream_take_headers(struct cw_upstream_xfer *x, struct cw_upstream_buf *out, size_t *count);
/* Bytes moved: the silence allowed to run counts again from now. */
void upstream_touch(struct upstream_run *run);
/* libcurl's header callback for run (cls): keeps the head's lines, then on_head. */
size_t upstream_on_header(char *p, size_t size, size_t nitems, void *cls);
/* libcurl's write callback for run (cls): the body to on_data, paused on request. */
size_t upstream_on_body(char *p, size_t size, size_t nmemb, void *cls);
/* libcurl's read callback for run (cls): the request body from on_read. */
size_t upstream_on_read(char *buf, size_t size, size_t nitems, void *cls);

/* ---- Admission and the per-origin queue (upstream_queue.c) ------------------------------- */

/* Copies origin c's settings into pool: 0 or -ENOMEM (upstream_pools_free() frees). */
CW_MUST_CHECK int upstream_pool_init(struct upstream_pool *pool, const struct cw_config_origin *c);
/* Frees the n pools of v and what they copied from the config; takes NULL. */
void upstream_pools_free(struct upstream_pool *v, size_t n);
/* Starts the pool's waiting transfers while it has room. */
void upstream_pool_kick(struct cw_upstream *up, struct upstream_pool *pool);
/* Takes and admits the submitted transfers: true when stopping (then cancelled). */
bool upstream_take_queued(struct cw_upstream *up);
/* Ends the transfers past a deadline: the ms until the next one, for the poll. */
int upstream_expire(struct cw_upstream *up);

/* ---- A transfer's attempts (upstream_xfer.c) --------------------------------------------- */

/* Starts run on a server it chooses: 0, or -errno with x->errbuf set. */
CW_MUST_CHECK int upstream_begin(struct cw_upstream *up, struct upstream_run *run);
/* Ends x: on_done runs, then run (NULL for a transfer never taken) is freed. */
void upstream_finish(struct cw_upstream *up, struct cw_upstream_xfer *x, struct upstream_run *run,
                     int rc, const char *why);
/* Ends a transfer that ran: retried on another server, or finished; kicks its pool. */
void upstream_end(struct cw_upstream *up, struct upstream_run *run, CURLcode code);

/* ---- Server pools (upstream_pool.c) ------------------------------------------------------ */

/* One struct upstream_origin per configured origin: 0 and *out (free with
 * upstream_origins_free()), or -errno logged. seg NULL: the health words are the process's
 * own. checks: this process runs the active health checks. */
CW_MUST_CHECK int upstream_origins_init(const struct cw_config *cfg, struct cw_seg *seg,
                                        bool checks, struct upstream_origin **out);
void upstream_origins_free(struct upstream_origin *v, size_t n);
/* The i-th origin of v. */
struct upstream_origin *upstream_origin_at(struct upstream_origin *v, size_t i);
/* The breaker's verdict on a new request: 0 (*probe true when it goes as the half-open probe),
 * or -EHOSTUNREACH with why set (counted as a fail-fast). */
CW_MUST_CHECK int upstream_origin_admit(struct upstream_origin *o, bool *probe, char *why,
                                        size_t why_len);
/* A request's final outcome (after any retry), for the breaker. */
void upstream_origin_report(struct upstream_origin *o, bool ok, bool probe);
/* The half-open probe ended with no outcome to report (cancelled, refused by a full queue,
 * not started): the next request may go as the probe at once. */
void upstream_origin_release_probe(struct upstream_origin *o);
/* The server for an attempt, not exclude (-1: none) when another is up: its index (counted as
 * running until upstream_origin_release()), or -1 when every server is down. */
int upstream_origin_pick(struct upstream_origin *o, int exclude);
/* Counts an attempt pinned to server (an active check) as running on it. */
void upstream_origin_pin(struct upstream_origin *o, int server);
void upstream_origin_release(struct upstream_origin *o, int server);
size_t upstream_origin_server_count(const struct upstream_origin *o);
/* url sent to server instead of the origin's url base: 0 and *out (caller frees), -ENOMEM. */
CW_MUST_CHECK int upstream_origin_url(const struct upstream_origin *o, int server, const char *url,
                                      char **out);
/* An attempt's outcome on server, for its passive health. */
void upstream_origin_report_server(struct upstream_origin *o, int server, bool ok);
/* True when retries are on and this process's budget allows one more (its cost is then
 * spent); then upstream_origin_retry_sent() says whether it went. */
bool upstream_origin_take_retry(struct upstream_origin *o);
/* The retry taken went to another server (counted in cachewarp_origin_retries_total), or
 * did not (no other server up, it could not start: its cost is given back). */
void upstream_origin_retry_sent(struct upstream_origin *o, bool sent);
void upstream_origin_count_fail_fast(struct upstream_origin *o);
/* True when every server that is up is at its own connection cap (servers[] max_conns=N):
 * a transfer then waits in the origin's queue. False when one has room, or none is up. */
bool upstream_origin_is_full(struct upstream_origin *o);
/* The time left before the origin's open breaker lets a probe go (at least 1), 1 while the
 * probe is out, 0 when the breaker is closed. */
int64_t upstream_origin_breaker_wait_ms(struct upstream_origin *o);
/* The origin's TLS and DNS options on e, for an attempt on server (-1: none chosen): a server
 * found by DNS also gets its address as CURLOPT_CONNECT_TO (a list the pool keeps until the
 * transfers on that server have ended: upstream_origin_release()). */
void upstream_origin_setopts(const struct upstream_origin *o, int server, CURL *e);
/* Runs the active checks that are due at now_ms (submitting them on up); the next due time,
 * INT64_MAX when none. */
int64_t upstream_origins_check(struct cw_upstream *up, struct upstream_origin *v, size_t n,
                               int64_t now_ms);

#endif /* CW_UPSTREAM_INT_H */
