/* workers/worker.c - see workers/worker.h. This file is the MHD side: the request state
 * machine, the hit path and the answers; worker_miss.c is the origin side. */
#include "workers/worker.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
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
#include "core/path.h"
#include "core/route.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/accesslog.h"
#include "workers/child.h"
#include "workers/clock.h"
#include "workers/wire.h"
#include "workers/worker_int.h"

#define WORKER_CONN_LIMIT   8192
#define WORKER_DRAIN_MIN_MS 100
#define WORKER_SETTLE_MS    2000 /* after the grace: for 503s to the last requests */
#define WORKER_CONN_TIMEOUT 60   /* seconds an idle keep-alive connection is kept */

static const struct cw_str worker_via = CW_STR_LIT("1.1 cachewarp");

static bool worker_is_hop(struct cw_str name, struct cw_str conn);
static enum MHD_Result worker_queue_refused(struct worker_req *r);
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

void worker_resp_refused(struct worker_req *r, struct cw_str name)
{
    size_t n = name.len < sizeof(r->refused_header) - 1 ? name.len : sizeof(r->refused_header) - 1;

    if (r->refused_header[0] != '\0') return;
    memcpy(r->refused_header, name.p, n);
    r->refused_header[n] = '\0';
    if (n == 0) memcpy(r->refused_header, "(empty)", sizeof("(empty)"));
}

void worker_resp_header(struct worker_req *r, struct MHD_Response *resp, const char *name,
                        const char *value)
{
    if (MHD_add_response_header(resp, name, value) != MHD_YES)
        worker_resp_refused(r, cw_str_cstr(name));
}

/* True for headers a cache never forwards or stores: hop-by-hop, or nominated by the
 * Connection value conn (may be empty). */
static bool worker_is_hop(struct cw_str name, struct cw_str conn)
{
    if (cw_cc_is_hop_by_hop(name)) return true;
    return conn.len > 0 && cw_cc_list_has(conn, name);
}

void worker_count(struct worker_req *r, enum cw_metrics_result res)
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
    /* core/reqscan refuses a head past CW_LIMIT_REQUEST_HEAD_BYTES (431), so this never
     * truncates. */
    if (j->lines++ > 0 && j->len + 2 < CW_LIMIT_REQUEST_HEAD_BYTES) {
        memcpy(j->buf + j->len, ", ", 2);
        j->len += 2;
    }
    if (n > CW_LIMIT_REQUEST_HEAD_BYTES - 1 - j->len) n = CW_LIMIT_REQUEST_HEAD_BYTES - 1 - j->len;
    memcpy(j->buf + j->len, value ? value : "", n);
    j->len += n;
    j->buf[j->len] = '\0';
    return MHD_YES;
}

/* A request field's value as the client sent it: its one line, or all its lines joined, as
 * an origin that combines them sees it. A joined value is valid until the next call for
 * this request. */
static const char *worker_req_header_sent(struct worker_req *r, const char *name)
{
    const char *first = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
    struct worker_join j = {.name = name};

    if (first == NULL) return NULL;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, worker_join_line, &j);
    if (j.lines <= 1) return first;
    if (r->join_buf == NULL) r->join_buf = malloc(CW_LIMIT_REQUEST_HEAD_BYTES);
    if (r->join_buf == NULL) return first;
    j = (struct worker_join){.name = name, .buf = r->join_buf};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, worker_join_line, &j);
    return r->join_buf;
}

/* The fields the forwarding rules name. CacheWarp sets Host, X-Forwarded-For (the client's
 * list plus its address) and the OURS fields itself; DROP fields ask an origin framework to
 * act on something else than the request line. A route that trusts the client's address,
 * or keys on the field, passes OURS and DROP fields as sent. */
enum worker_fwd_kind {
    WKIND_OTHER = 0,
    WKIND_HOST,
    WKIND_XFF,
    WKIND_OURS,
    WKIND_DROP,
};

/* By length first: this runs for every field a request is asked about. */
static enum worker_fwd_kind worker_fwd_kind_of(struct cw_str n)
{
    switch (n.len) {
    case 4:
        return cw_str_eq_ci(n, CW_STR_LIT("Host")) ? WKIND_HOST : WKIND_OTHER;
    case 9:
        return cw_str_eq_ci(n, CW_STR_LIT("Forwarded")) ? WKIND_OURS : WKIND_OTHER;
    case 13:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Rewrite-URL")) ? WKIND_DROP : WKIND_OTHER;
    case 14:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Original-URL")) ? WKIND_DROP : WKIND_OTHER;
    case 15:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-For")) ? WKIND_XFF : WKIND_OTHER;
    case 16:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-Host")) ||
                       cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-Port"))
                   ? WKIND_OURS
                   : WKIND_OTHER;
    case 17:
        return cw_str_eq_ci(n, CW_STR_LIT("X-Forwarded-Proto")) ? WKIND_OURS : WKIND_OTHER;
    case 22:
        return cw_str_eq_ci(n, CW_STR_LIT("X-HTTP-Method-Override")) ? WKIND_DROP : WKIND_OTHER;
    default:
        return WKIND_OTHER;
    }
}

static bool worker_route_keys(const struct cw_config_route *rt, struct cw_str name)
{
    for (size_t i = 0; rt != NULL && i < rt->key_headers_count; i++)
        if (cw_str_eq_ci(name, cw_str_cstr(rt->key_headers[i]))) return true;
    return false;
}

enum worker_fwd worker_fwd_field(struct worker_req *r, struct cw_str name)
{
    const struct cw_config_route *rt = r->rt;
    enum worker_fwd_kind kind = worker_fwd_kind_of(name);

    /* Host is never dropped (a Connection naming it would key one host's answer under
     * another); X-Forwarded-For is the client's list with the client's address appended. */
    if (kind == WKIND_HOST || kind == WKIND_XFF) return WFWD_OURS;
    /* RFC 9110 §7.6.1: hop-by-hop fields and those the Connection field names. */
    if (cw_cc_is_hop_by_hop(name)) return WFWD_DROP;
    if (r->conn_hdr.len > 0 && cw_cc_list_has(r->conn_hdr, name)) return WFWD_DROP;
    for (size_t i = 0; rt != NULL && i < rt->strip_headers_count; i++)
        if (cw_str_eq_ci(name, cw_str_cstr(rt->strip_headers[i]))) return WFWD_DROP;
    if (kind == WKIND_OTHER) return WFWD_PASS;
    if (r->trusted || worker_route_keys(rt, name)) return WFWD_PASS;
    return kind == WKIND_OURS ? WFWD_OURS : WFWD_DROP;
}

/* X-Forwarded-For for the origin: the client's list (when it sent one) and its address. */
static const char *worker_fwd_xff(struct worker_req *r)
{
    const char *sent;
    char addr[INET6_ADDRSTRLEN];
    size_t n;

    if (r->xff != NULL) return r->xff;
    worker_client_addr(r->conn, addr, sizeof(addr));
    sent = worker_req_header_sent(r, "X-Forwarded-For");
    n = (sent ? strlen(sent) + 2 : 0) + strlen(addr) + 1;
    r->xff = malloc(n);
    if (r->xff == NULL) return NULL;
    snprintf(r->xff, n, "%s%s%s", sent ? sent : "", sent ? ", " : "", addr);
    return r->xff;
}

/* Forwarded (RFC 7239) for the origin: one element, ours. */
static const char *worker_fwd_forwarded(struct worker_req *r)
{
    char addr[INET6_ADDRSTRLEN];
    size_t n;

    if (r->forwarded != NULL) return r->forwarded;
    worker_client_addr(r->conn, addr, sizeof(addr));
    n = strlen(addr) + strlen(r->host) + 48;
    r->forwarded = malloc(n);
    if (r->forwarded == NULL) return NULL;
    /* RFC 7239 §6: an IPv6 node is quoted and bracketed; host is quoted for its port. */
    if (strchr(addr, ':') != NULL)
        snprintf(r->forwarded, n, "for=\"[%s]\";host=\"%s\";proto=http", addr, r->host);
    else
        snprintf(r->forwarded, n, "for=%s;host=\"%s\";proto=http", addr, r->host);
    return r->forwarded;
}

/* The value CacheWarp sends for a WFWD_OURS field. */
static const char *worker_fwd_value(struct worker_req *r, struct cw_str name)
{
    if (cw_str_eq_ci(name, CW_STR_LIT("Host")) ||
        cw_str_eq_ci(name, CW_STR_LIT("X-Forwarded-Host")))
        return r->host;
    if (cw_str_eq_ci(name, CW_STR_LIT("X-Forwarded-For"))) return worker_fwd_xff(r);
    if (cw_str_eq_ci(name, CW_STR_LIT("X-Forwarded-Proto"))) return "http";
    if (cw_str_eq_ci(name, CW_STR_LIT("X-Forwarded-Port"))) return r->w->listen_port;
    return worker_fwd_forwarded(r);
}

const char *worker_req_header(void *cls, const char *name)
{
    struct worker_req *r = cls;
    struct cw_str n = cw_str_cstr(name);

    switch (worker_fwd_field(r, n)) {
    case WFWD_DROP:
        return NULL;
    case WFWD_OURS:
        return worker_fwd_value(r, n);
    case WFWD_PASS:
        break;
    }
    return worker_req_header_sent(r, name);
}

enum MHD_Result worker_queue(struct worker_req *r, unsigned status, struct MHD_Response *resp)
{
    enum MHD_Result ret;

    worker_resp_header(r, resp, "Via", worker_via.p);
    /* While draining, keep-alive clients are told to go, so the grace period can end. */
    if (r->close || atomic_load_explicit(&r->w->draining, memory_order_relaxed))
        worker_resp_header(r, resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (r->refused_header[0] != '\0') {
        MHD_destroy_response(resp);
        return worker_queue_refused(r);
    }
    r->queued = true;
    r->status = status;
    if (r->is_head) r->bytes = 0;
    ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    r->state = WREQ_DONE;
    return ret;
}

/* The answer that replaces one whose header libmicrohttpd refused: a 500 with only literal
 * headers, counted as an error and logged, rate-limited (a bad stored or origin header can
 * cause it on every request). When even it cannot be built (no memory), MHD_NO makes
 * libmicrohttpd close the connection: the client never gets an answer short of a header. */
static enum MHD_Result worker_queue_refused(struct worker_req *r)
{
    static const char body[] = "internal error: a response header was refused\n";
    struct MHD_Response *resp;
    enum MHD_Result ret;

    cw_warn_rl("worker %d: libmicrohttpd refused response header %s for %s; answering 500",
               r->w->index, r->refused_header, r->uri ? r->uri : "?");
    r->result = CW_METRICS_RESULT_ERROR;
    r->state = WREQ_DONE;
    resp = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) return MHD_NO;
    if (MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8") != MHD_YES ||
        MHD_add_response_header(resp, "Cache-Control", "no-store") != MHD_YES ||
        MHD_add_response_header(resp, "Via", worker_via.p) != MHD_YES ||
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

enum MHD_Result worker_answer_error(struct worker_req *r, unsigned status, const char *body,
                                    const char *detail)
{
    struct MHD_Response *resp;
    char cs[160];

    resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) return MHD_NO;
    worker_resp_header(r, resp, "Content-Type", "text/plain; charset=utf-8");
    worker_resp_header(r, resp, "Cache-Control", "no-store");
    worker_resp_header(r, resp, "X-Cache", "ERROR");
    snprintf(cs, sizeof(cs), "CacheWarp; fwd=uri-miss; detail=%s", detail);
    worker_resp_header(r, resp, "Cache-Status", cs);
    worker_count(r, CW_METRICS_RESULT_ERROR);
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
static bool worker_is_origin_error(const struct cw_upstream_collect *job)
{
    return job->rc != 0 || job->status == 500 || job->status == 502 || job->status == 503 ||
           job->status == 504;
}

static enum MHD_Result worker_answer_failed(struct worker_req *r)
{
    struct cw_upstream_collect *job = &r->job;

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
static struct MHD_Response *worker_head_response(struct cw_upstream_collect *job)
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
    return MHD_create_response_from_callback(len, 4096, worker_head_reader, NULL, NULL);
}

/* Sends the request to the origin again, unconditionally (no lease, no stale copy). */
static enum MHD_Result worker_refetch(struct worker_req *r)
{
    r->refetched = true;
    r->stale = false;
    r->etag[0] = r->last_modified[0] = '\0';
    memset(&r->fill, 0, sizeof(r->fill));
    cw_upstream_collect_reset(&r->job);
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
    struct cw_upstream_collect *job = &r->job;
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
    while (cw_upstream_collect_header_next(job, &off, &name, &value)) {
        if (cw_str_eq_ci(name, CW_STR_LIT("Connection"))) conn = value;
        if (cw_str_eq_ci(name, CW_STR_LIT("Age")) && age.p == NULL) age = value;
    }
    off = 0;
    while (cw_upstream_collect_header_next(job, &off, &name, &value)) {
        if (worker_is_hop(name, conn) || cw_fill_is_internal_header(name)) continue;
        if (r->rt && r->rt->strip_set_cookie && r->fill.stored &&
            cw_str_eq_ci(name, CW_STR_LIT("Set-Cookie")))
            continue;
        if (worker_resp_add(resp, name, value) < 0) worker_resp_refused(r, name);
    }
    if (r->result == CW_METRICS_RESULT_PASS) {
        worker_resp_header(r, resp, "X-Cache", "PASS");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=%s; fwd-status=%d",
                 r->fwd_request ? "request" : "method", job->status);
    } else {
        worker_resp_header(r, resp, "X-Cache", "MISS");
        /* RFC 9111 §5.1: an answer passed on keeps the origin's Age (added back below). */
        if (age.p == NULL) worker_resp_header(r, resp, "Age", "0");
        snprintf(cs, sizeof(cs), "CacheWarp; fwd=%s; fwd-status=%d%s%s%s%s", worker_hit_fwd(r),
                 job->status, r->fill.stored ? "; stored" : "", r->coalesced ? "; collapsed" : "",
                 r->fill.detail ? "; detail=" : "", r->fill.detail ? r->fill.detail : "");
    }
    if (age.p != NULL && worker_resp_add(resp, CW_STR_LIT("Age"), age) < 0)
        worker_resp_refused(r, CW_STR_LIT("Age"));
    worker_resp_header(r, resp, "Cache-Status", cs);
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
    r->result = CW_METRICS_RESULT_MISS;
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

/* On the fetch thread, r suspended: the purge's writes (they may wait on another process's
 * write without stalling hits). Variants are keyed by the primary key plus header lines, so
 * they go by prefix. */
static void worker_purge_run(struct cw_upstream_task *t, bool cancelled)
{
    struct worker_req *r = (struct worker_req *)((char *)t - offsetof(struct worker_req, task));
    struct cw_worker *w = r->w;
    int64_t now = cw_clock_wall_ms();
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t vary_len, n = 0;

    r->purge_rc = cancelled ? -ECANCELED : 0;
    r->purge_count = 0;
    if (cancelled) goto out_resume;
    if (cw_store_purge_key(w->store, &r->q.primary, r->purge_soft, now) == 0) r->purge_count++;
    if (r->q.primary_len < CW_LIMIT_KEY_BYTES &&
        cw_store_vary_get(w->fill.reader, &r->q.primary, vary, sizeof(vary), &vary_len) == 0) {
        r->q.key_buf[r->q.primary_len] = '\n';
        if (cw_store_purge_prefix(w->store, cw_str_make(r->q.key_buf, r->q.primary_len + 1),
                                  r->purge_soft, now, &n) < 0)
            cw_warn("worker %d: purge: variants of %s not all purged", w->index, r->uri);
        r->purge_count += n;
        if (!r->purge_soft && cw_store_vary_put(w->store, &r->q.primary, cw_str_make(NULL, 0)) < 0)
            cw_warn("worker %d: purge: vary record of %s not removed", w->index, r->uri);
    }
out_resume:
    r->state = WREQ_PURGED;
    MHD_resume_connection(r->conn);
}

/* PURGE <url>: drops the URL's entry and its Vary variants (or marks them stale with
 * "Soft-Purge: 1", so stale-while-revalidate and stale-if-error still shield the origin).
 * Only from purge.allow; 200 when something was purged, 404 when nothing was cached. A purge
 * is not a hit, but its writes still go to the fetch thread (worker_purge_run()): on the MHD
 * thread they would stall every hit of this worker behind another process's write. */
static enum MHD_Result worker_purge(struct worker_req *r)
{
    const char *soft_h = worker_req_header(r, "Soft-Purge");
    int rc;

    if (!worker_purge_allowed(r))
        return worker_answer_error(r, 403, "purge not allowed from this address\n", "purge-denied");
    rc = cw_fill_key_primary(&r->w->fill_mhd, &r->q);
    if (rc < 0) return worker_answer_error(r, 400, "bad request target or host\n", "bad-key");
    r->purge_soft = soft_h != NULL && strcmp(soft_h, "1") == 0;
    r->task.run = worker_purge_run;
    r->state = WREQ_WAIT;
    MHD_suspend_connection(r->conn);
    rc = cw_upstream_defer(r->w->fetch, &r->task);
    if (rc < 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_METRICS_FETCH_QUEUE_FULL, 1);
        r->purge_rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
        r->state = WREQ_PURGED;
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* Answers a purge the fetch thread has done. */
static enum MHD_Result worker_purge_answer(struct worker_req *r)
{
    char body[96];

    if (r->purge_rc == -EAGAIN)
        return worker_answer_error(r, 503, "too many writes waiting\n", "busy");
    if (r->purge_rc < 0) return worker_answer_close(r, 503, "shutting down\n", "shutdown");
    cw_notice("worker %d: purge%s %s%s: %zu entries", r->w->index, r->purge_soft ? " (soft)" : "",
              r->q.host.p, r->uri, r->purge_count);
    int len = snprintf(body, sizeof(body), "{\"purged\":%zu,\"soft\":%s}\n", r->purge_count,
                       r->purge_soft ? "true" : "false");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)len, body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) return MHD_NO;
    worker_resp_header(r, resp, "Content-Type", "application/json");
    worker_resp_header(r, resp, "Cache-Control", "no-store");
    worker_count(r, CW_METRICS_RESULT_PASS);
    r->bytes = (uint64_t)len;
    return worker_queue(r, r->purge_count > 0 ? 200 : 404, resp);
}

/* True when the route trusts the client's address with forwarding fields. */
static bool worker_is_trusted(struct worker_req *r)
{
    const union MHD_ConnectionInfo *ci;

    if (r->rt->trust_forwarded_count == 0) return false;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL) return false;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ci->client_addr;
        return cw_config_route_trusts(r->rt, AF_INET, (const uint8_t *)&in->sin_addr);
    }
    if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
        return cw_config_route_trusts(r->rt, AF_INET6, in6->sin6_addr.s6_addr);
    }
    return false;
}

/* Reads the request target (RFC 9112 §3.2): origin-form, or absolute-form whose authority
 * replaces Host (§3.2.2). The path is normalised once (RFC 3986 §6.2.2, §5.2.4), and that is
 * what routes, keys and goes to the origin. 0, or the status to refuse the request with. */
static unsigned worker_read_target(struct worker_req *r, const char **why)
{
    struct cw_str target = cw_str_make(r->raw_uri, r->raw_uri_len), host, path, query;
    struct cw_str scheme, authority;
    const char *qm;
    size_t len = 0;
    char *out;

    *why = "bad request target";
    if (r->raw_uri_len > CW_LIMIT_URL_BYTES) return 414;
    if (target.len > 0 && target.p[0] == '/') {
        host = cw_str_cstr(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host"));
    } else if (cw_path_split_absolute(target, &scheme, &authority, &target) == 0) {
        host = authority;
    } else {
        *why = "origin-form or absolute-form request target required";
        return 400;
    }
    if (host.len > CW_LIMIT_HOST_BYTES) {
        *why = "Host too long";
        return 400;
    }
    for (size_t i = 0; i < host.len; i++)
        r->host[i] = (host.p[i] >= 'A' && host.p[i] <= 'Z') ? (char)(host.p[i] + 32) : host.p[i];
    r->host[host.len] = '\0';
    qm = target.len > 0 ? memchr(target.p, '?', target.len) : NULL;
    path = cw_str_make(target.p, qm ? (size_t)(qm - target.p) : target.len);
    query = qm ? cw_str_make(qm, target.len - path.len) : cw_str_make(NULL, 0);
    /* Most origin-form targets are normal already: they stay in raw_uri, with no copy. */
    if (target.p == r->raw_uri && cw_path_is_normal(path.p, path.len)) return 0;
    /* The normal form is never longer than the path, but for the "/" of an empty one. */
    out = malloc(path.len + query.len + 2);
    if (out == NULL) {
        *why = "out of memory";
        return 503;
    }
    if (path.len == 0) {
        out[0] = '/';
        len = 1;
    } else if (cw_path_normalize(path.p, path.len, out, path.len + 1, &len) < 0) {
        free(out);
        *why = "bad path: bad escape, or dot segments above the root";
        return 400;
    }
    if (query.len > 0) memcpy(out + len, query.p, query.len);
    len += query.len;
    out[len] = '\0';
    r->uri = out;
    r->uri_len = len;
    return 0;
}

/* Decides what the request is and takes it down the hit or miss path. */
static enum MHD_Result worker_dispatch(struct worker_req *r)
{
    const char *why = NULL;
    unsigned status = worker_read_target(r, &why);
    const char *qm;
    struct cw_str path;
    int route;

    if (status == 414)
        return worker_answer_error(r, 414, "request target too long\n", "uri-too-long");
    if (status == 503) return worker_answer_error(r, 503, "out of memory\n", "enomem");
    if (status != 0) {
        cw_info_rl("worker %d: 400 for %.64s: %s", r->w->index, r->raw_uri, why);
        return worker_answer_close(r, status, "bad request target\n", "bad-uri");
    }
    qm = memchr(r->uri, '?', r->uri_len);
    path = cw_str_make(r->uri, qm ? (size_t)(qm - r->uri) : r->uri_len);
    route = cw_route_find(r->w->cfg, cw_str_cstr(r->host), path);
    if (route < 0)
        return worker_answer_error(r, 404, "no route for this host and path\n", "no-route");
    r->rt = &r->w->cfg->routes[route];
    r->trusted = worker_is_trusted(r);
    r->q.rt = r->rt;
    r->q.header = worker_req_header;
    r->q.header_cls = r;
    r->q.uri = cw_str_make(r->uri, r->uri_len);
    r->q.host = cw_str_cstr(r->host);
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
        r->result = CW_METRICS_RESULT_PASS;
        return worker_miss_start(r);
    }
    return worker_lookup_or_fetch(r);
}

/* The first handler call, once MHD has the whole head: refused by the wire reader, or the
 * request goes on; a request with a body gets client_body_timeout between reads. */
static void worker_on_head(struct worker_req *r)
{
    const struct cw_config *cfg = r->w->cfg;

    r->refuse_status = cw_wire_check(cw_wire_of(r->conn), r->wire_n, &r->refuse_reason);
    if (r->refuse_status != 0) return;
    /* Every Connection line counts (RFC 9110 §7.6.1): a joined value is kept apart from
     * join_buf, which later lookups reuse. */
    const char *conn = worker_req_header_sent(r, "Connection");
    if (conn != NULL && conn == r->join_buf) conn = r->conn_joined = strdup(conn);
    r->conn_hdr = cw_str_cstr(conn);
    if (MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length") != NULL ||
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding") != NULL)
        (void)MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                        (unsigned)((cfg->client_body_timeout_ms + 999) / 1000));
}

/* Logs a refused request under the line the client sent, not the stand-in's: method, target
 * and version split at the first and last space, as far as the line came. */
static void worker_log_refused_line(struct worker_req *r)
{
    struct cw_str line = cw_wire_refused_line(cw_wire_of(r->conn));
    char *sp1, *sp2;

    if (line.len == 0 || (r->refused_line = malloc(line.len + 1)) == NULL) return;
    memcpy(r->refused_line, line.p, line.len);
    r->refused_line[line.len] = '\0';
    sp1 = memchr(r->refused_line, ' ', line.len);
    sp2 = strrchr(r->refused_line, ' ');
    if (sp1 == NULL) {
        r->method = "-";
        r->version = "-";
        r->log_uri = cw_str_make(r->refused_line, line.len);
        return;
    }
    *sp1 = '\0';
    r->method = r->refused_line;
    if (sp2 == sp1) {
        r->version = "-";
        r->log_uri = cw_str_cstr(sp1 + 1);
        return;
    }
    *sp2 = '\0';
    r->version = sp2 + 1;
    r->log_uri = cw_str_cstr(sp1 + 1);
}

/* Answers a request the wire reader refused, and closes the connection. */
static enum MHD_Result worker_answer_refused(struct worker_req *r)
{
    unsigned s = r->refuse_status;
    const char *body = s == 408   ? "request timeout\n"
                       : s == 501 ? "transfer coding not implemented\n"
                                  : "bad request\n";

    worker_log_refused_line(r);
    if (s == 500) {
        cw_err_rl("worker %d: a request head reached the handler without the wire reader: "
                  "refused",
                  r->w->index);
    } else {
        char addr[INET6_ADDRSTRLEN];
        worker_client_addr(r->conn, addr, sizeof(addr));
        cw_info_rl("worker %d: %u to %s: %s", r->w->index, s, addr, r->refuse_reason);
    }
    return worker_answer_close(r, s, body, s == 408 ? "header-timeout" : "bad-request");
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
        worker_on_head(r);
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
        if (r->refuse_status != 0) return worker_answer_refused(r);
        if (r->body_in.len > 0 || r->body_over)
            (void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                            (unsigned)WORKER_CONN_TIMEOUT);
        if (r->body_over)
            return worker_answer_error(r, 413, "request body too large\n", "body-too-large");
        if (atomic_load(&r->w->stopping))
            return worker_answer_close(r, 503, "shutting down\n", "shutdown");
        return worker_dispatch(r);
    case WREQ_READY:
        return worker_answer_fetched(r);
    case WREQ_LEASED:
        if (atomic_load(&r->w->stopping))
            return worker_answer_close(r, 503, "shutting down\n", "shutdown");
        return worker_hit_leased(r);
    case WREQ_PURGED:
        return worker_purge_answer(r);
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

    if (r == NULL) return NULL;
    r->raw_uri_len = strlen(uri);
    r->raw_uri = malloc(r->raw_uri_len + 1);
    if (r->raw_uri == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->raw_uri, uri, r->raw_uri_len + 1);
    r->uri = r->raw_uri; /* until worker_read_target() */
    r->uri_len = r->raw_uri_len;
    r->wire_n = cw_wire_begin(cw_wire_of(conn));
    r->w = w;
    r->start_us = cw_clock_mono_us();
    r->start_wall_ms = cw_clock_wall_ms();
    r->origin_us = -1;
    atomic_fetch_add(&w->inflight, 1);
    return r;
}

/* The X-Cache word of a result, for the access log. */
static const char *const worker_result_names[] = {
    [CW_METRICS_RESULT_HIT] = "HIT",
    [CW_METRICS_RESULT_MISS] = "MISS",
    [CW_METRICS_RESULT_STALE] = "STALE",
    [CW_METRICS_RESULT_REVALIDATED] = "REVALIDATED",
    [CW_METRICS_RESULT_PASS] = "PASS",
    [CW_METRICS_RESULT_ERROR] = "ERROR",
    [CW_METRICS_RESULT_STALE_ERROR] = "STALE-ERROR",
};
static_assert(CW_ARRAY_LEN(worker_result_names) == CW_METRICS_RESULT_COUNT,
              "an access-log word for every result");

/* Counts a request that was answered and writes its access-log line. */
static void worker_record(struct cw_worker *w, struct worker_req *r, struct MHD_Connection *conn)
{
    int64_t took_us = cw_clock_mono_us() - r->start_us;
    int route = r->rt ? (int)(r->rt - w->cfg->routes) : -1;
    char addr[INET6_ADDRSTRLEN];

    cw_seg_record_request(w->seg, w->slot, route, r->result, cw_seg_method_of(r->method), took_us);
    cw_seg_add(w->seg, w->slot, CW_METRICS_BYTES_OUT, r->bytes);
    if (w->alog == NULL) return;
    worker_client_addr(conn, addr, sizeof(addr));
    struct cw_accesslog_rec rec = {
        .time_ms = r->start_wall_ms,
        .client = addr,
        .method = r->method,
        .url = r->log_uri.p ? r->log_uri : cw_str_make(r->raw_uri, r->raw_uri_len),
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
    cw_upstream_collect_reset(&r->job);
    free(r->body_in.p);
    free(r->url);
    free(r->hdr_lines);
    if (r->q.has_lease) worker_defer_release(w, &r->q);
    free(r->q.key_buf);
    free(r->join_buf);
    free(r->xff);
    free(r->forwarded);
    free(r->refused_line);
    free(r->conn_joined);
    if (r->uri != r->raw_uri) free(r->uri);
    free(r->raw_uri);
    free(r);
    atomic_fetch_sub(&w->inflight, 1);
}

static int worker_open(struct cw_worker *w, int listen_fd)
{
    char host[CW_LIMIT_HOST_BYTES + 1];
    int port = 0;
    int rc = cw_store_open(w->cfg->cache_path, w->cfg->cache_size_bytes, &w->store);
    if (rc < 0) return rc;
    if (cw_config_split_hostport(w->cfg->listen, host, sizeof(host), &port) < 0) port = 0;
    snprintf(w->listen_port, sizeof(w->listen_port), "%d", port);
    rc = cw_wire_init(w->cfg->client_header_timeout_ms);
    if (rc < 0) return rc;
    rc = cw_accesslog_open(w->cfg, &w->alog);
    if (rc < 0) return rc;
    cw_accesslog_set_seg(w->alog, w->seg, w->slot);
    cw_store_set_seg(w->store, w->seg, w->slot);
    rc = cw_store_reader_open_nowrite(w->store, &w->reader);
    if (rc < 0) return rc;
    rc = cw_store_reader_open(w->store, &w->fetch_reader);
    if (rc < 0) return rc;
    w->fill = (struct cw_fill){w->cfg, w->store, w->fetch_reader, w->seg, w->slot};
    w->fill_mhd = (struct cw_fill){w->cfg, w->store, w->reader, w->seg, w->slot};
    rc = cw_upstream_start(w->cfg, CW_LIMIT_PENDING_FETCHES, &w->fetch);
    if (rc < 0) return rc;
    rc = worker_wait_start(w);
    if (rc < 0) return rc;
    w->mhd = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, worker_on_request, w, MHD_OPTION_EXTERNAL_LOGGER, cw_child_mhd_log,
        (void *)"worker", MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_URI_LOG_CALLBACK,
        worker_on_uri, w, MHD_OPTION_NOTIFY_COMPLETED, worker_on_completed, w,
        MHD_OPTION_NOTIFY_CONNECTION, cw_wire_on_connection, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)WORKER_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WORKER_CONN_TIMEOUT,
        MHD_OPTION_END);
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

int cw_worker_run(const struct cw_child_ctx *ctx)
{
    struct cw_worker w = {.cfg = ctx->cfg,
                          .seg = ctx->seg,
                          .slot = ctx->slot,
                          .index = ctx->index,
                          .refresh_fd = ctx->wake_fd};
    int status = 0;

    cw_child_setup("cw-worker", ctx->seg, ctx->slot);
    if (worker_open(&w, ctx->listen_fd) < 0) {
        status = 1;
        goto out_close;
    }
    cw_info("worker %d: serving on fd %d", w.index, ctx->listen_fd);
    worker_wait_signal(&w);
    worker_drain(&w);
out_close:
    /* Past the grace: new requests get 503 and fetch nothing; waiters resume (503) and
     * fetches are cancelled (their clients get 503); once MHD has answered them all, it is
     * stopped, and only then is the fetch loop freed (the MHD thread may still submit). */
    atomic_store(&w.stopping, true);
    worker_wait_stop(&w);
    cw_upstream_cancel(w.fetch);
    worker_settle(&w);
    if (w.mhd) MHD_stop_daemon(w.mhd);
    cw_upstream_stop(w.fetch);
    worker_wait_destroy(&w);
    cw_accesslog_close(w.alog);
    cw_store_reader_close(w.fetch_reader);
    cw_store_reader_close(w.reader);
    cw_store_close(w.store);
    cw_info("worker %d: stopped", w.index);
    return status;
}
