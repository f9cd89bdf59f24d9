/* workers/worker.c - see workers/worker.h. This file is the MHD side: the request state
 * machine, the hit path and the answers; worker_miss.c is the origin side. */
#include "workers/worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/entry.h"
#include "core/fresh.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/route.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/accesslog.h"
#include "workers/child.h"
#include "workers/clock.h"
#include "workers/worker_int.h"

#define WORKER_CONN_LIMIT   8192
#define WORKER_DRAIN_MIN_MS 100
#define WORKER_JOIN_BYTES   32768 /* MHD's default connection memory: a whole request head */
#define WORKER_SETTLE_MS    2000  /* after the grace: for 503s to the last requests */
#define WORKER_CONN_TIMEOUT 60    /* seconds an idle keep-alive connection is kept */
#define WORKER_VARY_BYTES   1024

static const struct cw_str worker_via = CW_STR_LIT("1.1 cachewarp");

static bool worker_request_is_ambiguous(struct worker_req *r);
static enum MHD_Result worker_answer_close(struct worker_req *r, unsigned status, const char *body,
                                           const char *detail);

int worker_resp_add(struct MHD_Response *resp, struct cw_str name, struct cw_str value)
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

bool worker_is_hop(struct cw_str name, struct cw_str conn)
{
    if (cw_cc_is_hop_by_hop(name)) return true;
    return conn.len > 0 && cw_cc_list_has(conn, name);
}

void worker_count(struct worker_req *r, enum worker_result res)
{
    static const enum cw_seg_counter map[] = {
        [WRES_HIT] = CW_SEG_REQ_HIT,
        [WRES_MISS] = CW_SEG_REQ_MISS,
        [WRES_STALE] = CW_SEG_REQ_STALE,
        [WRES_REVALIDATED] = CW_SEG_REQ_REVALIDATED,
        [WRES_PASS] = CW_SEG_REQ_PASS,
        [WRES_ERROR] = CW_SEG_REQ_ERROR,
        [WRES_STALE_ERROR] = CW_SEG_REQ_STALE_ERROR,
    };
    r->result = res;
    cw_seg_add(r->w->seg, r->w->slot, map[res], 1);
}

/* Joins the lines of one request field with ", " (RFC 9110 §5.3) into j->buf, or only
 * counts them when j->buf is NULL. */
struct worker_join {
    const char *name;
    char *buf;
    size_t len;
    unsigned lines;
};

static enum MHD_Result worker_join_line(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    struct worker_join *j = cls;
    size_t n = value ? strlen(value) : 0;

    (void)kind;
    if (strcasecmp(key, j->name) != 0) return MHD_YES;
    if (j->buf == NULL) {
        j->lines++;
        return MHD_YES;
    }
    /* The whole request head fits MHD's 32 KiB connection memory, so this never truncates. */
    if (j->lines++ > 0 && j->len + 2 < WORKER_JOIN_BYTES) {
        memcpy(j->buf + j->len, ", ", 2);
        j->len += 2;
    }
    if (n > WORKER_JOIN_BYTES - 1 - j->len) n = WORKER_JOIN_BYTES - 1 - j->len;
    memcpy(j->buf + j->len, value ? value : "", n);
    j->len += n;
    j->buf[j->len] = '\0';
    return MHD_YES;
}

/* A request field's value: its one line, or all its lines joined, as an origin that combines
 * them sees it, so a key or Vary value always matches what the origin answered. A joined
 * value is valid until the next call for this request. */
const char *worker_req_header(void *cls, const char *name)
{
    struct worker_req *r = cls;
    const char *first = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
    struct worker_join j = {.name = name};

    if (first == NULL) return NULL;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, worker_join_line, &j);
    if (j.lines <= 1) return first;
    if (r->join_buf == NULL) r->join_buf = malloc(WORKER_JOIN_BYTES);
    if (r->join_buf == NULL) return first;
    j = (struct worker_join){.name = name, .buf = r->join_buf};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, worker_join_line, &j);
    return r->join_buf;
}

enum MHD_Result worker_queue(struct worker_req *r, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret;

    MHD_add_response_header(resp, "Via", worker_via.p);
    /* While draining, keep-alive clients are told to go, so the grace period can end. */
    if (r->close || atomic_load_explicit(&r->w->draining, memory_order_relaxed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    r->queued = true;
    r->status = status;
    if (r->is_head) r->bytes = 0;
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->state = WREQ_DONE;
    return ret;
}

enum MHD_Result worker_answer_error(struct worker_req *r, unsigned status, const char *body,
                                    const char *detail)
{
    struct MHD_Response *resp;
    char cs[160];

    resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Cache", "ERROR");
    snprintf(cs, sizeof(cs), "CacheWarp; fwd=uri-miss; detail=%s", detail);
    MHD_add_response_header(resp, "Cache-Status", cs);
    worker_count(r, WRES_ERROR);
    r->bytes = strlen(body);
    return worker_queue(r, status, resp);
}

/* As worker_answer_error(), and closes the connection after the answer. */
static enum MHD_Result worker_answer_close(struct worker_req *r, unsigned status, const char *body,
                                           const char *detail)
{
    r->close = true;
    return worker_answer_error(r, status, body, detail);
}

/* The origin failed (connection, timeout, bad answer) or answered 5xx: RFC 5861 §4 lets a
 * stale copy inside its stale-if-error window answer instead. */
static bool worker_is_origin_error(const struct cw_fetch_job *job)
{
    return job->rc != 0 || job->status == 500 || job->status == 502 || job->status == 503 ||
           job->status == 504;
}

static enum MHD_Result worker_answer_failed(struct worker_req *r)
{
    struct cw_fetch_job *job = &r->job;

    if (job->rc == -ETIMEDOUT)
        return worker_answer_error(r, 504, "origin timed out\n", "origin-timeout");
    if (job->rc == -EAGAIN)
        return worker_answer_error(r, 503, "too many origin fetches waiting\n", "busy");
    if (job->rc == -ECANCELED) return worker_answer_error(r, 503, "shutting down\n", "shutdown");
    if (job->rc == -EFBIG)
        return worker_answer_error(r, 502, "origin response too large\n", "too-large");
    return worker_answer_error(r, 502, "origin unreachable or sent a bad response\n",
                               "origin-error");
}

static ssize_t worker_head_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_OF_STREAM; /* never called for HEAD */
}

/* A response to a passed-through HEAD: the origin's Content-Length, and no body. */
static struct MHD_Response *worker_head_response(struct cw_fetch_job *job)
{
    struct cw_str name, value;
    uint64_t len = MHD_SIZE_UNKNOWN;
    size_t off = 0;

    while (cw_fetch_job_header_next(job, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT("Content-Length")) || value.len == 0) continue;
        uint64_t v = 0;
        size_t i = 0;
        while (i < value.len && value.p[i] >= '0' && value.p[i] <= '9' && v < (UINT64_MAX / 10))
            v = v * 10 + (uint64_t)(value.p[i++] - '0');
        if (i == value.len) len = v;
    }
    return MHD_create_response_from_callback(len, 4096, worker_head_reader, NULL, NULL);
}

/* Sends the request to the origin again, unconditionally (no lease, no stale copy). */
static enum MHD_Result worker_refetch(struct worker_req *r)
{
    r->refetched = true;
    r->stale = false;
    r->etag[0] = r->last_modified[0] = '\0';
    memset(&r->fill, 0, sizeof(r->fill));
    cw_fetch_job_reset(&r->job);
    free(r->url);
    free(r->hdr_lines);
    r->url = r->hdr_lines = NULL;
    return worker_miss_start(r);
}

/* True when the request carries preconditions or a Range that the cache answers itself. */
static bool worker_has_client_conditions(struct worker_req *r)
{
    static const char *const names[] = {"If-None-Match", "If-Modified-Since", "If-Match",
                                        "If-Unmodified-Since", "Range"};
    for (size_t i = 0; i < CW_ARRAY_LEN(names); i++)
        if (worker_req_header(r, names[i]) != NULL) return true;
    return false;
}

/* Answers a request whose fetch completed: takes the body from the job. */
static enum MHD_Result worker_answer_fetched(struct worker_req *r)
{
    struct cw_fetch_job *job = &r->job;
    struct MHD_Response *resp;
    struct cw_str name, value, conn = {NULL, 0}, age = {NULL, 0};
    size_t off = 0;
    char cs[192];

    if (r->cacheable && r->stale && worker_is_origin_error(job) &&
        worker_hit_serve_again(r, WSERVE_SIE) == 1)
        return MHD_YES;
    if (job->rc != 0) return worker_answer_failed(r);
    if (r->fill.revalidated) {
        if (worker_hit_serve_again(r, WSERVE_ANY) == 1) return MHD_YES;
        return worker_answer_error(r, 502, "revalidation failed\n", "revalidation-failed");
    }
    /* The client's own preconditions and Range are answered from what was just stored. */
    if (r->fill.stored && worker_has_client_conditions(r) &&
        worker_hit_serve_again(r, WSERVE_FILLED) == 1)
        return MHD_YES;
    if (job->status == 304 && r->cacheable) {
        /* Our conditional request's 304 could not be applied (the entry went, or the origin
         * now forbids storing): ask once more without validators. */
        if (r->stale && !r->refetched) return worker_refetch(r);
        return worker_answer_error(r, 502,
                                   "origin answered 304 to a request we did not make "
                                   "conditional\n",
                                   "unexpected-304");
    }
    if (r->is_head && !r->cacheable)
        resp = worker_head_response(job); /* the origin's length, no body (RFC 9110 §9.3.2) */
    else
        resp = MHD_create_response_from_buffer_with_free_callback(job->body.len, job->body.p, free);
    if (resp == NULL) return MHD_NO;
    r->bytes = job->body.len;
    job->body.p = NULL; /* the response owns it now */
    job->body.len = job->body.cap = 0;
    while (cw_fetch_job_header_next(job, &off, &name, &value)) {
        if (cw_str_eq_ci(name, CW_STR_LIT("Connection"))) conn = value;
        if (cw_str_eq_ci(name, CW_STR_LIT("Age")) && age.p == NULL) age = value;
    }
    off = 0;
    while (cw_fetch_job_header_next(job, &off, &name, &value)) {
        if (worker_is_hop(name, conn) || cw_fill_is_internal_header(name)) continue;
        if (r->rt && r->rt->strip_set_cookie && r->fill.stored &&
            cw_str_eq_ci(name, CW_STR_LIT("Set-Cookie")))
            continue;
        (void)worker_resp_add(resp, name, value); /* over-long headers were refused earlier */
    }
    if (r->result == WRES_PASS) {
        MHD_add_response_header(resp, "X-Cache", "PASS");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=%s; fwd-status=%d",
                 r->fwd_request ? "request" : "method", job->status);
    } else {
        MHD_add_response_header(resp, "X-Cache", "MISS");
        /* RFC 9111 §5.1: an answer passed on keeps the origin's Age (added back below). */
        if (age.p == NULL) MHD_add_response_header(resp, "Age", "0");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=%s; fwd-status=%d%s%s%s%s", worker_hit_fwd(r),
                 job->status, r->fill.stored ? "; stored" : "", r->coalesced ? "; collapsed" : "",
                 r->fill.detail ? "; detail=" : "", r->fill.detail ? r->fill.detail : "");
    }
    if (age.p != NULL) (void)worker_resp_add(resp, CW_STR_LIT("Age"), age);
    MHD_add_response_header(resp, "Cache-Status", cs);
    worker_count(r, r->result);
    return worker_queue(r, (unsigned)job->status, resp);
}

/* Reads the request's Cache-Control and Pragma (RFC 9111 §5.2.1, §5.4). */
static void worker_req_directives(struct worker_req *r)
{
    const char *cc = worker_req_header(r, "Cache-Control");

    cw_cc_init(&r->req_cc);
    if (cc != NULL) {
        r->has_req_cc = true;
        cw_cc_parse(&r->req_cc, cc, strlen(cc));
        return;
    }
    const char *pragma = worker_req_header(r, "Pragma");
    r->pragma_no_cache =
        pragma != NULL && cw_cc_list_has(cw_str_cstr(pragma), CW_STR_LIT("no-cache"));
}

/* Looks the request up again (first time, or after waiting for another's fill) and takes
 * it down the miss path when L1 cannot answer. */
static enum MHD_Result worker_lookup_or_fetch(struct worker_req *r)
{
    int rc = worker_hit_lookup(r);

    if (rc == 1) return MHD_YES;
    if (rc == -ENOMEM) return worker_answer_error(r, 503, "out of memory\n", "enomem");
    if (rc < 0) return worker_answer_error(r, 400, "bad request target or host\n", "bad-key");
    if (r->has_req_cc && (r->req_cc.flags & CW_CC_ONLY_IF_CACHED))
        return worker_answer_error(r, 504, "not in cache (only-if-cached)\n", "only-if-cached");
    r->result = WRES_MISS;
    return worker_hit_coalesce(r);
}

/* True when the client's address is in purge.allow. */
static bool worker_purge_allowed(struct worker_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    if (ci == NULL || ci->client_addr == NULL) return false;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ci->client_addr;
        return cw_config_purge_allowed(r->w->cfg, AF_INET, (const uint8_t *)&in->sin_addr);
    }
    if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
        return cw_config_purge_allowed(r->w->cfg, AF_INET6, in6->sin6_addr.s6_addr);
    }
    return false;
}

/* PURGE <url>: drops the URL's entry and its Vary variants (or marks them stale with
 * "Soft-Purge: 1", so stale-while-revalidate and stale-if-error still shield the origin).
 * Only from purge.allow; 200 when something was purged, 404 when nothing was cached. */
static enum MHD_Result worker_purge(struct worker_req *r)
{
    const char *soft_h = worker_req_header(r, "Soft-Purge");
    bool soft = soft_h != NULL && strcmp(soft_h, "1") == 0;
    int64_t now = cw_clock_wall_ms();
    char vary[1024], body[96];
    size_t vary_len, count = 0;
    int rc;

    if (!worker_purge_allowed(r))
        return worker_answer_error(r, 403, "purge not allowed from this address\n", "purge-denied");
    rc = cw_fill_key_primary(&r->w->fill_mhd, &r->q);
    if (rc < 0) return worker_answer_error(r, 400, "bad request target or host\n", "bad-key");
    rc = cw_store_purge_key(r->w->store, &r->q.primary, soft, now);
    if (rc == 0) count++;
    if (r->q.primary_len < CW_LIMIT_KEY_BYTES &&
        cw_store_vary_get(r->w->reader, &r->q.primary, vary, sizeof(vary), &vary_len) == 0) {
        /* Variants are keyed by the primary key plus header lines: purge them by prefix. */
        size_t n = 0;
        r->q.key_buf[r->q.primary_len] = '\n';
        rc = cw_store_purge_prefix(r->w->store, cw_str_make(r->q.key_buf, r->q.primary_len + 1),
                                   soft, now, &n);
        count += n;
        if (!soft && cw_store_vary_put(r->w->store, &r->q.primary, cw_str_make(NULL, 0)) < 0)
            cw_warn("worker %d: purge: vary record of %s not removed", r->w->index, r->uri);
    }
    cw_notice("worker %d: purge%s %s%s: %zu entries", r->w->index, soft ? " (soft)" : "",
              r->q.host.p, r->uri, count);
    int len = snprintf(body, sizeof(body), "{\"purged\":%zu,\"soft\":%s}\n", count,
                       soft ? "true" : "false");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)len, body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    worker_count(r, WRES_PASS);
    r->bytes = (uint64_t)len;
    return worker_queue(r, count > 0 ? 200 : 404, resp);
}

static enum MHD_Result worker_count_host(void *cls, enum MHD_ValueKind kind, const char *key,
                                         const char *value)
{
    unsigned *n = cls;

    (void)kind;
    (void)value;
    if (strcasecmp(key, "Host") == 0) (*n)++;
    return MHD_YES;
}

/* RFC 9112 §3.2 and §6.1: an HTTP/1.1 request needs exactly one Host, and one with both
 * Content-Length and Transfer-Encoding may be a smuggling attempt; both get 400 and the
 * connection is closed, so nothing pipelined behind them is read as a request. */
static bool worker_request_is_ambiguous(struct worker_req *r)
{
    unsigned hosts = 0;

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, worker_count_host, &hosts);
    if (hosts > 1) return true;
    if (hosts == 0 && r->version != NULL && strcmp(r->version, "HTTP/1.0") != 0) return true;
    return worker_req_header(r, "Transfer-Encoding") != NULL &&
           worker_req_header(r, "Content-Length") != NULL;
}

/* Decides what the request is and takes it down the hit or miss path. */
static enum MHD_Result worker_dispatch(struct worker_req *r)
{
    const char *host = worker_req_header(r, "Host");
    const char *qm = memchr(r->uri, '?', r->uri_len);
    struct cw_str path = cw_str_make(r->uri, qm ? (size_t)(qm - r->uri) : r->uri_len);
    int route;

    if (host == NULL) host = "";
    if (r->uri_len > CW_LIMIT_URL_BYTES)
        return worker_answer_error(r, 414, "request target too long\n", "uri-too-long");
    if (worker_request_is_ambiguous(r))
        return worker_answer_close(r, 400, "ambiguous request framing or Host\n", "bad-request");
    if (r->uri_len == 0 || r->uri[0] != '/')
        return worker_answer_error(r, 400, "origin-form request target required\n", "bad-uri");
    if (strlen(host) > CW_LIMIT_HOST_BYTES)
        return worker_answer_error(r, 400, "Host too long\n", "bad-host");
    route = cw_route_find(r->w->cfg, cw_str_cstr(host), path);
    if (route < 0)
        return worker_answer_error(r, 404, "no route for this host and path\n", "no-route");
    r->rt = &r->w->cfg->routes[route];
    r->q.rt = r->rt;
    r->q.header = worker_req_header;
    r->q.header_cls = r;
    r->q.uri = cw_str_make(r->uri, r->uri_len);
    r->q.host = cw_str_cstr(host);
    r->q.key_buf = malloc(CW_LIMIT_KEY_BYTES);
    if (r->q.key_buf == NULL) return worker_answer_error(r, 503, "out of memory\n", "enomem");
    if (strcmp(r->method, "PURGE") == 0) return worker_purge(r);
    r->is_head = strcmp(r->method, "HEAD") == 0;
    r->cacheable = r->is_head || strcmp(r->method, "GET") == 0;
    if (r->cacheable) {
        worker_req_directives(r);
        if (r->req_cc.flags & CW_CC_NO_STORE) {
            r->cacheable = false;
            r->fwd_request = true;
        }
    }
    if (!r->cacheable) {
        r->result = WRES_PASS;
        return worker_miss_start(r);
    }
    return worker_lookup_or_fetch(r);
}

static enum MHD_Result worker_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                         const char *method, const char *version,
                                         const char *upload_data, size_t *upload_data_size,
                                         void **req_cls)
{
    struct worker_req *r = *req_cls;

    (void)cls;
    (void)url;
    if (r == NULL) return MHD_NO; /* the URI callback could not allocate */
    switch (r->state) {
    case WREQ_NEW:
        /* libmicrohttpd's idiom: queueing on the first call loses keep-alive. */
        r->conn = conn;
        r->method = method;
        r->version = version;
        r->state = WREQ_BODY;
        return MHD_YES;
    case WREQ_BODY:
        if (*upload_data_size > 0) {
            size_t n = *upload_data_size;
            size_t need;
            *upload_data_size = 0;
            if (r->body_over) return MHD_YES; /* drain what is left, answer 413 at the end */
            if (__builtin_add_overflow(r->body_in.len, n, &need) ||
                need > CW_LIMIT_REQUEST_BODY_BYTES) {
                r->body_over = true;
                return MHD_YES;
            }
            char *np = realloc(r->body_in.p, need);
            if (np == NULL) {
                r->body_over = true;
                return MHD_YES;
            }
            memcpy(np + r->body_in.len, upload_data, n);
            r->body_in.p = np;
            r->body_in.len = need;
            return MHD_YES;
        }
        if (r->body_over)
            return worker_answer_error(r, 413, "request body too large\n", "body-too-large");
        if (atomic_load(&r->w->stopping))
            return worker_answer_close(r, 503, "shutting down\n", "shutdown");
        return worker_dispatch(r);
    case WREQ_READY:
        return worker_answer_fetched(r);
    case WREQ_RETRY:
        if (atomic_load(&r->w->stopping))
            return worker_answer_close(r, 503, "shutting down\n", "shutdown");
        /* Look up from scratch: the fill may have recorded a Vary, so the key can differ. */
        r->q.key_len = 0;
        r->vary_miss = r->stale = r->fwd_request = false;
        r->etag[0] = r->last_modified[0] = '\0';
        return worker_lookup_or_fetch(r);
    case WREQ_WAIT:
    case WREQ_FILL:
    case WREQ_DONE:
        break;
    }
    return MHD_YES;
}

/* Runs first for each request with the raw request target: its return value becomes the
 * request's *req_cls. */
static void *worker_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct cw_worker *w = cls;
    struct worker_req *r = calloc(1, sizeof(*r));

    (void)conn;
    if (r == NULL) return NULL;
    r->uri_len = strlen(uri);
    r->uri = malloc(r->uri_len + 1);
    if (r->uri == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->uri, uri, r->uri_len + 1);
    r->w = w;
    r->start_us = cw_clock_mono_us();
    r->start_wall_ms = cw_clock_wall_ms();
    r->origin_us = -1;
    atomic_fetch_add(&w->inflight, 1);
    return r;
}

/* The X-Cache word of a result, for the access log. */
static const char *const worker_result_names[] = {
    [WRES_HIT] = "HIT",
    [WRES_MISS] = "MISS",
    [WRES_STALE] = "STALE",
    [WRES_REVALIDATED] = "REVALIDATED",
    [WRES_PASS] = "PASS",
    [WRES_ERROR] = "ERROR",
    [WRES_STALE_ERROR] = "STALE-ERROR",
};

/* Counts a request that was answered and writes its access-log line. */
static void worker_record(struct cw_worker *w, struct worker_req *r, struct MHD_Connection *conn)
{
    int64_t took_us = cw_clock_mono_us() - r->start_us;
    int route = r->rt ? (int)(r->rt - w->cfg->routes) : -1;
    char addr[INET6_ADDRSTRLEN];

    cw_seg_record_request(w->seg, w->slot, route, (enum cw_seg_result)r->result,
                          cw_seg_method_of(r->method), took_us);
    cw_seg_add(w->seg, w->slot, CW_SEG_BYTES_OUT, r->bytes);
    if (w->alog == NULL) return;
    worker_client_addr(conn, addr, sizeof(addr));
    struct cw_accesslog_rec rec = {
        .time_ms = r->start_wall_ms,
        .client = addr,
        .method = r->method,
        .url = cw_str_make(r->uri, r->uri_len),
        .protocol = r->version,
        .status = (int)r->status,
        .bytes = r->bytes,
        .duration_us = took_us,
        .result = worker_result_names[r->result],
        .route = r->rt ? r->rt->match : NULL,
        .origin_us = r->origin_us,
        .user_agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent"),
        .referer = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Referer"),
    };
    cw_accesslog_write(w->alog, &rec);
}

static void worker_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                                enum MHD_RequestTerminationCode toe)
{
    struct cw_worker *w = cls;
    struct worker_req *r = *req_cls;

    (void)toe;
    if (r == NULL) return;
    *req_cls = NULL;
    if (r->queued) worker_record(w, r, conn);
    cw_fetch_job_reset(&r->job);
    free(r->body_in.p);
    free(r->url);
    free(r->hdr_lines);
    if (r->q.has_lease) cw_fill_abandon(&w->fill_mhd, &r->q, false);
    free(r->q.key_buf);
    free(r->join_buf);
    free(r->uri);
    free(r);
    atomic_fetch_sub(&w->inflight, 1);
}

static int worker_open(struct cw_worker *w, int listen_fd)
{
    int rc = cw_store_open(w->cfg->cache_path, w->cfg->cache_size_bytes, &w->store);
    if (rc < 0) return rc;
    rc = cw_accesslog_open(w->cfg, &w->alog);
    if (rc < 0) return rc;
    cw_accesslog_set_seg(w->alog, w->seg, w->slot);
    cw_store_set_seg(w->store, w->seg);
    rc = cw_store_reader_open(w->store, &w->reader);
    if (rc < 0) return rc;
    rc = cw_store_reader_open(w->store, &w->fetch_reader);
    if (rc < 0) return rc;
    w->fill = (struct cw_fill){w->cfg, w->store, w->fetch_reader, w->seg, w->slot};
    w->fill_mhd = (struct cw_fill){w->cfg, w->store, w->reader, w->seg, w->slot};
    rc = cw_fetch_start(w->cfg->origins[0].max_conns, CW_LIMIT_PENDING_FETCHES, &w->fetch);
    if (rc < 0) return rc;
    rc = worker_wait_start(w);
    if (rc < 0) return rc;
    w->mhd = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, worker_on_request, w, MHD_OPTION_EXTERNAL_LOGGER, cw_child_mhd_log,
        (void *)"worker", MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_URI_LOG_CALLBACK,
        worker_on_uri, w, MHD_OPTION_NOTIFY_COMPLETED, worker_on_completed, w,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)WORKER_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)WORKER_CONN_TIMEOUT, MHD_OPTION_END);
    if (w->mhd == NULL) {
        cw_err("worker %d: MHD_start_daemon failed on fd %d", w->index, listen_fd);
        return -EIO;
    }
    return 0;
}

/* Waits for SIGTERM/SIGINT; SIGUSR1 reopens the access log (logrotate). */
static void worker_wait_signal(struct cw_worker *w)
{
    sigset_t set;
    int sig = 0;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        if (sigwait(&set, &sig) == 0 && (sig == SIGTERM || sig == SIGINT)) return;
        if (sig == SIGUSR1 && cw_accesslog_reopen(w->alog) < 0)
            cw_warn("worker %d: access log stays on the old file", w->index);
        if (getppid() == 1) return;
    }
}

/* Waits (bounded) until the requests resumed for the stop have been answered, so that no
 * connection is still suspended when MHD stops (MHD aborts on that). */
static void worker_settle(struct cw_worker *w)
{
    int64_t deadline = cw_clock_mono_ms() + WORKER_SETTLE_MS;

    while (w->mhd != NULL && atomic_load(&w->inflight) > 0 && cw_clock_mono_ms() < deadline)
        usleep(5000);
}

static void worker_drain(struct cw_worker *w)
{
    int64_t start = cw_clock_mono_ms();
    int64_t deadline = start + w->cfg->shutdown_grace_ms;

    /* Stop accepting; the listen socket stays open for the other processes that share it. */
    (void)MHD_quiesce_daemon(w->mhd);
    atomic_store(&w->draining, true);
    /* A connection accepted just before the quiesce has not sent its request line yet, so it
     * is not counted in flight: give it WORKER_DRAIN_MIN_MS to become a request rather than
     * reset it (a reload's clients would see that as a failed request). */
    while ((atomic_load(&w->inflight) > 0 || cw_clock_mono_ms() - start < WORKER_DRAIN_MIN_MS) &&
           cw_clock_mono_ms() < deadline)
        usleep(10000);
    if (atomic_load(&w->inflight) > 0)
        cw_warn("worker %d: %d requests still in flight after the grace period", w->index,
                atomic_load(&w->inflight));
}

int cw_worker_run(const struct cw_config *cfg, struct cw_seg *seg, int index, int slot,
                  int listen_fd, int refresh_fd)
{
    struct cw_worker w = {
        .cfg = cfg, .seg = seg, .slot = slot, .index = index, .refresh_fd = refresh_fd};
    int status = 0;

    cw_child_setup("cw-worker", seg, slot);
    if (worker_open(&w, listen_fd) < 0) {
        status = 1;
        goto out_close;
    }
    cw_info("worker %d: serving on fd %d", index, listen_fd);
    worker_wait_signal(&w);
    worker_drain(&w);
out_close:
    /* Past the grace: new requests get 503 and fetch nothing; waiters resume (503) and
     * fetches are cancelled (their clients get 503); once MHD has answered them all, it is
     * stopped, and only then is the fetch loop freed (the MHD thread may still submit). */
    atomic_store(&w.stopping, true);
    worker_wait_stop(&w);
    cw_fetch_cancel(w.fetch);
    worker_settle(&w);
    if (w.mhd) MHD_stop_daemon(w.mhd);
    cw_fetch_stop(w.fetch);
    worker_wait_destroy(&w);
    cw_accesslog_close(w.alog);
    cw_store_reader_close(w.fetch_reader);
    cw_store_reader_close(w.reader);
    cw_store_close(w.store);
    cw_info("worker %d: stopped", index);
    return status;
}
