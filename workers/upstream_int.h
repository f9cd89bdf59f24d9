/* workers/upstream_int.h - what upstream.c shares with upstream_collect.c and upstream_pool.c. Not
 * a public API: the rest of the program uses workers/upstream.h. Loop thread only, like the
 * callbacks. */
#ifndef CW_UPSTREAM_INT_H
#define CW_UPSTREAM_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"

struct cw_config;
struct cw_seg;
struct cw_upstream;
struct cw_upstream_xfer;
struct upstream_origin; /* one origin's pool as this process runs it (upstream_pool.c) */

/* From on_done: moves the transfer's response header lines (cw_upstream_fields layout) into
 * *out and their count into *count; the caller owns them (free()). Leaves both unchanged for a
 * transfer that never started. */
void upstream_take_headers(struct cw_upstream_xfer *x, struct cw_upstream_buf *out, size_t *count);

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
