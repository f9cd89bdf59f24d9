/* workers/req_answer.c - the answers a worker queues: response headers (every refusal of
 * libmicrohttpd kept and turned into a 500), the error answers, the answer built from an
 * origin response, and the one place that queues, counts and closes. Leaves of the request
 * state machine (workers/req.c): nothing here decides what to answer. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "workers/req_int.h"

static const struct cw_str req_via = CW_STR_LIT("1.1 cachewarp");

#define REQ_STREAM_BLOCK (64 * 1024) /* a streamed answer's buffer, at most */

static enum MHD_Result req_queue_refused(struct worker_req *r);

int req_resp_add(struct MHD_Response *resp, struct cw_str name, struct cw_str value)
{
    char nbuf[CW_LIMIT_HEADER_NAME_BYTES + 1];
    char vbuf[CW_LIMIT_HEADER_VALUE_BYTES + 1];

    if (name.len >= sizeof(nbuf) || value.len >= sizeof(vbuf)) return -EINVAL;
    memcpy(nbuf, name.p, name.len);
    nbuf[name.len] = '\0';
    memcpy(vbuf, value.p, value.len);
    vbuf[value.len] = '\0';
    return MHD_add_response_header(resp, nbuf, vbuf) == MHD_YES ? 0 : -EINVAL;
}

void req_resp_refused(struct worker_req *r, struct cw_str name)
{
    size_t n = name.len < sizeof(r->refused_header) - 1 ? name.len : sizeof(r->refused_header) - 1;

    if (r->refused_header[0] != '\0') return;
    memcpy(r->refused_header, name.p, n);
    r->refused_header[n] = '\0';
    if (n == 0) memcpy(r->refused_header, "(empty)", sizeof("(empty)"));
}

void req_resp_header(struct worker_req *r, struct MHD_Response *resp, const char *name,
                     const char *value)
{
    if (MHD_add_response_header(resp, name, value) != MHD_YES)
        req_resp_refused(r, cw_str_cstr(name));
}

/* True for headers a cache never forwards or stores: hop-by-hop, or nominated by the
 * Connection value conn (may be empty). */
static bool req_is_hop(struct cw_str name, struct cw_str conn)
{
    if (cw_cc_is_hop_by_hop(name)) return true;
    return conn.len > 0 && cw_cc_list_has(conn, name);
}

void req_count(struct worker_req *r, enum cw_metrics_result res)
{
    static const enum cw_metrics_counter map[] = {
        [CW_METRICS_RESULT_HIT] = CW_METRICS_REQ_HIT,
        [CW_METRICS_RESULT_MISS] = CW_METRICS_REQ_MISS,
        [CW_METRICS_RESULT_STALE] = CW_METRICS_REQ_STALE,
        [CW_METRICS_RESULT_REVALIDATED] = CW_METRICS_REQ_REVALIDATED,
        [CW_METRICS_RESULT_PASS] = CW_METRICS_REQ_PASS,
        [CW_METRICS_RESULT_ERROR] = CW_METRICS_REQ_ERROR,
        [CW_METRICS_RESULT_STALE_ERROR] = CW_METRICS_REQ_STALE_ERROR,
    };
    static_assert(CW_ARRAY_LEN(map) == CW_METRICS_RESULT_COUNT, "a counter for every result");

    r->result = res;
    cw_seg_add(r->w->seg, r->w->slot, map[res], 1);
}

enum MHD_Result req_queue(struct worker_req *r, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret;

    /* A ready answer (req_ready.h) is complete: Via is in it, and it is kept only for an
     * answer that does not close (a drain that starts between the lookup and here lets
     * this one answer keep its connection; the drain closes it when idle). */
    if (!r->resp_kept) {
        req_resp_header(r, resp, "Via", req_via.p);
        /* While draining, keep-alive clients are told to go, so the grace period can end. */
        if (r->close || atomic_load_explicit(&r->w->draining, memory_order_relaxed))
            req_resp_header(r, resp, MHD_HTTP_HEADER_CONNECTION, "close");
        if (r->refused_header[0] != '\0') {
            MHD_destroy_response(resp);
            return req_queue_refused(r);
        }
    }
    r->queued = true;
    r->status = status;
    if (r->is_head) r->bytes = 0;
    ret = MHD_queue_response(r->conn, status, resp);
    if (!r->resp_kept) MHD_destroy_response(resp);
    return ret;
}

void req_resp_via(struct worker_req *r, struct MHD_Response *resp)
{
    req_resp_header(r, resp, "Via", req_via.p);
}

/* The answer that replaces one whose header libmicrohttpd refused: a 500 with only literal
 * headers, counted as an error and logged, rate-limited (a bad stored or origin header can
 * cause it on every request). When even it cannot be built (no memory), MHD_NO makes
 * libmicrohttpd close the connection: the client never gets an answer short of a header. */
static enum MHD_Result req_queue_refused(struct worker_req *r)
{
    static const char body[] = "internal error: a response header was refused\n";
    struct MHD_Response *resp;
    enum MHD_Result ret;

    cw_warn_rl("worker %d: libmicrohttpd refused response header %s for %s; answering 500",
               r->w->index, r->refused_header, r->uri ? r->uri : "?");
    r->result = CW_METRICS_RESULT_ERROR;
    resp = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) return MHD_NO;
    if (MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8") != MHD_YES ||
        MHD_add_response_header(resp, "Cache-Control", "no-store") != MHD_YES ||
        MHD_add_response_header(resp, "Via", req_via.p) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    r->queued = true;
    r->status = 500;
    r->bytes = r->is_head ? 0 : sizeof(body) - 1;
    ret = MHD_queue_response(r->conn, 500, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result req_answer_error(struct worker_req *r, unsigned status, const char *body,
                                 const char *detail)
{
    struct MHD_Response *resp;
    char cs[160];

    resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) return MHD_NO;
    req_resp_header(r, resp, "Content-Type", "text/plain; charset=utf-8");
    req_resp_header(r, resp, "Cache-Control", "no-store");
    req_resp_header(r, resp, "X-Cache", "ERROR");
    /* RFC 9110 §10.2.3: a 503 (busy, origin down, shutting down) says when to come back: with
     * the origin's breaker open, when its cooldown ends (rounded up, at least 1 s). */
    if (status == 503) {
        char ra[24];
        int64_t ms = r->job.rc == -EHOSTUNREACH ? r->job.xfer.retry_after_ms : 0;
        snprintf(ra, sizeof(ra), "%lld", ms > 1000 ? (long long)((ms + 999) / 1000) : 1LL);
        req_resp_header(r, resp, "Retry-After", ra);
    }
    snprintf(cs, sizeof(cs), "CacheWarp; fwd=uri-miss; detail=%s", detail);
    req_resp_header(r, resp, "Cache-Status", cs);
    req_count(r, CW_METRICS_RESULT_ERROR);
    r->bytes = strlen(body);
    return req_queue(r, status, resp);
}

/* As req_answer_error(), and closes the connection after the answer. */
enum MHD_Result req_answer_close(struct worker_req *r, unsigned status, const char *body,
                                 const char *detail)
{
    r->close = true;
    return req_answer_error(r, status, body, detail);
}

static ssize_t req_head_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_OF_STREAM; /* never called for HEAD */
}

/* A response to a passed-through HEAD: the origin's Content-Length, and no body. */
static struct MHD_Response *req_head_response(struct cw_upstream_collect *job)
{
    struct cw_str name, value;
    uint64_t len = MHD_SIZE_UNKNOWN;
    size_t off = 0;

    while (cw_upstream_collect_header_next(job, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT("Content-Length")) || value.len == 0) continue;
        uint64_t v = 0;
        size_t i = 0;
        while (i < value.len && value.p[i] >= '0' && value.p[i] <= '9' && v < (UINT64_MAX / 10))
            v = v * 10 + (uint64_t)(value.p[i++] - '0');
        if (i == value.len) len = v;
    }
    return MHD_create_response_from_callback(len, 4096, req_head_reader, NULL, NULL);
}

/* The origin's head on resp, with X-Cache, Cache-Status and Age; fill says what the store
 * made (or, streaming, means to make) of it. Then r answers resp. */
static void req_answer_head(struct worker_req *r, struct MHD_Response *resp,
                            const struct cw_fill_result *fill)
{
    struct cw_upstream_collect *job = &r->job;
    struct cw_str name, value, conn = {NULL, 0}, age = {NULL, 0};
    size_t off = 0;
    char cs[192];

    while (cw_upstream_collect_header_next(job, &off, &name, &value)) {
        if (cw_str_eq_ci(name, CW_STR_LIT("Connection"))) conn = value;
        if (cw_str_eq_ci(name, CW_STR_LIT("Age")) && age.p == NULL) age = value;
    }
    off = 0;
    while (cw_upstream_collect_header_next(job, &off, &name, &value)) {
        if (req_is_hop(name, conn) || cw_fill_is_internal_header(name)) continue;
        if (r->rt && r->rt->strip_set_cookie && fill->stored &&
            cw_str_eq_ci(name, CW_STR_LIT("Set-Cookie")))
            continue;
        if (req_resp_add(resp, name, value) < 0) req_resp_refused(r, name);
    }
    if (r->result == CW_METRICS_RESULT_PASS) {
        req_resp_header(r, resp, "X-Cache", "PASS");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=%s; fwd-status=%d",
                 r->fwd_request ? "request" : "method", job->status);
    } else {
        req_resp_header(r, resp, "X-Cache", "MISS");
        /* RFC 9111 §5.1: an answer passed on keeps the origin's Age (added back below). */
        if (age.p == NULL) req_resp_header(r, resp, "Age", "0");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=%s; fwd-status=%d%s%s%s%s", req_hit_fwd(r),
                 job->status, fill->stored ? "; stored" : "", r->coalesced ? "; collapsed" : "",
                 fill->detail ? "; detail=" : "", fill->detail ? fill->detail : "");
    }
    if (age.p != NULL && req_resp_add(resp, CW_STR_LIT("Age"), age) < 0)
        req_resp_refused(r, CW_STR_LIT("Age"));
    req_resp_header(r, resp, "Cache-Status", cs);
    req_count(r, r->result);
    r->resp = resp;
    r->resp_kept = false; /* built here: this request's own */
    r->resp_status = (unsigned)job->status;
}

int req_answer_origin(struct worker_req *r)
{
    struct cw_upstream_collect *job = &r->job;
    struct MHD_Response *resp;

    if (r->is_head && !r->cacheable)
        resp = req_head_response(job); /* the origin's length, no body (RFC 9110 §9.3.2) */
    else
        resp = MHD_create_response_from_buffer_with_free_callback(job->body.len, job->body.p, free);
    if (resp == NULL) return -ENOMEM;
    r->bytes = job->body.len;
    job->body.p = NULL; /* the response owns it now */
    job->body.len = job->body.cap = 0;
    req_answer_head(r, resp, &r->fill);
    return 0;
}

int req_answer_stream(struct worker_req *r)
{
    uint64_t len = r->stream_len >= 0 ? (uint64_t)r->stream_len : MHD_SIZE_UNKNOWN;
    /* libmicrohttpd allocates and zeroes a buffer of the block size for each response: a
     * body known to be short gets one its size (at least a page), not 64 KiB. */
    size_t block = len != MHD_SIZE_UNKNOWN && len < REQ_STREAM_BLOCK
                       ? (len < 4096 ? 4096 : (size_t)len)
                       : REQ_STREAM_BLOCK;
    struct MHD_Response *resp;
    char *whole = NULL;

    /* A short body that is all there already (it came with the head) goes out from a buffer:
     * libmicrohttpd then writes the head and the body at once, not in two sends. */
    if (len != MHD_SIZE_UNKNOWN && len < REQ_STREAM_BLOCK) whole = req_pipe_take_whole(r, len);
    if (whole != NULL) {
        resp = MHD_create_response_from_buffer_with_free_callback((size_t)len, whole, free);
        if (resp == NULL) {
            free(whole);
            return -ENOMEM;
        }
        r->bytes = len;
        req_answer_head(r, resp, &r->intent);
        return 0;
    }
    /* The origin's length when it sent one (a body cut short then closes the connection);
     * else chunked to the client. Nothing frees r with the response: r outlives it. */
    resp = MHD_create_response_from_callback(len, block, req_pipe_read, r, NULL);
    if (resp == NULL) return -ENOMEM;
    r->bytes = 0; /* counted as they are sent */
    req_answer_head(r, resp, &r->intent);
    return 0;
}
