/* workers/worker_miss.c - the origin side of a worker: builds the fetch for a miss or a
 * pass, suspends the client connection, and on completion (on the fetch thread) decides
 * storage, writes L1, and resumes the connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/entry.h"
#include "core/fresh.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/clock.h"
#include "workers/worker_int.h"

#define MISS_VARY_BYTES 1024

struct miss_hdr_ctx {
    struct worker_req *r;
    struct cw_fetch_buf out;
    struct cw_str conn; /* the request's Connection value */
    bool have_via;
    bool have_xff;
    int rc;
    char addr[INET6_ADDRSTRLEN]; /* the client's address */
};

static int miss_append(struct cw_fetch_buf *b, const char *p, size_t n)
{
    size_t need;

    if (__builtin_add_overflow(b->len, n + 1, &need)) return -EOVERFLOW;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < need) cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int miss_append_line(struct cw_fetch_buf *b, const char *name, const char *v1,
                            const char *v2)
{
    int rc = miss_append(b, name, strlen(name));
    if (rc == 0) rc = miss_append(b, ": ", 2);
    if (rc == 0) rc = miss_append(b, v1, strlen(v1));
    if (rc == 0 && v2 != NULL) rc = miss_append(b, v2, strlen(v2));
    if (rc == 0) rc = miss_append(b, "\r\n", 2);
    return rc;
}

/* Request headers a cache fetching a full response must not pass on (it answers
 * conditionals and ranges itself from what it stores). */
static bool miss_is_conditional(struct cw_str name)
{
    static const struct cw_str names[] = {
        CW_STR_LIT("If-None-Match"), CW_STR_LIT("If-Modified-Since"), CW_STR_LIT("If-Match"),
        CW_STR_LIT("If-Unmodified-Since"), CW_STR_LIT("If-Range"), CW_STR_LIT("Range"),
    };
    for (size_t i = 0; i < CW_ARRAY_LEN(names); i++)
        if (cw_str_eq_ci(name, names[i])) return true;
    return false;
}

static enum MHD_Result miss_on_req_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    struct miss_hdr_ctx *c = cls;
    struct cw_str name = cw_str_cstr(key);

    (void)kind;
    if (value == NULL) value = "";
    if (worker_is_hop(name, c->conn)) return MHD_YES;
    if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length")) ||
        cw_str_eq_ci(name, CW_STR_LIT("Expect")))
        return MHD_YES;
    if (c->r->cacheable && miss_is_conditional(name)) return MHD_YES;
    if (cw_str_eq_ci(name, CW_STR_LIT("Via"))) {
        c->have_via = true;
        c->rc = miss_append_line(&c->out, key, value, ", 1.1 cachewarp");
    } else if (cw_str_eq_ci(name, CW_STR_LIT("X-Forwarded-For"))) {
        char tail[INET6_ADDRSTRLEN + 3];
        snprintf(tail, sizeof(tail), ", %s", c->addr);
        c->have_xff = true;
        c->rc = miss_append_line(&c->out, key, value, tail);
    } else {
        c->rc = miss_append_line(&c->out, key, value, NULL);
    }
    return c->rc == 0 ? MHD_YES : MHD_NO;
}

/* The client's address as text, for X-Forwarded-For. */
static void miss_client_addr(struct MHD_Connection *conn, char *buf, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

    snprintf(buf, size, "unknown");
    if (ci == NULL || ci->client_addr == NULL) return;
    if (ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)ci->client_addr;
        inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)size);
    } else if (ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)ci->client_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
    }
}

static int miss_build_headers(struct worker_req *r)
{
    struct miss_hdr_ctx c = {.r = r};

    c.conn = cw_str_cstr(MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Connection"));
    miss_client_addr(r->conn, c.addr, sizeof(c.addr));
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, miss_on_req_header, &c);
    if (c.rc == 0 && !c.have_via) c.rc = miss_append_line(&c.out, "Via", "1.1 cachewarp", NULL);
    if (c.rc == 0 && !c.have_xff)
        c.rc = miss_append_line(&c.out, "X-Forwarded-For", c.addr, NULL);
    if (c.rc < 0) {
        free(c.out.p);
        return c.rc;
    }
    r->hdr_lines = c.out.p;
    return 0;
}

static void miss_done(struct cw_fetch_job *job, void *cls);

enum MHD_Result worker_miss_start(struct worker_req *r)
{
    const struct cw_config_origin *o = &r->w->cfg->origins[r->rt->origin];
    size_t ulen = strlen(o->url);
    int rc;

    r->url = malloc(ulen + r->uri_len + 1);
    if (r->url == NULL) return worker_answer_error(r, 503, "out of memory\n", "enomem");
    memcpy(r->url, o->url, ulen);
    memcpy(r->url + ulen, r->uri, r->uri_len + 1);
    if (miss_build_headers(r) < 0)
        return worker_answer_error(r, 503, "out of memory\n", "enomem");
    r->job.url = r->url;
    /* HEAD is fetched as GET so that the whole response can be stored (nginx does too). */
    r->job.method = r->cacheable ? "GET" : r->method;
    r->job.req_headers = r->hdr_lines;
    r->job.req_body = cw_str_make(r->body_in.p, r->body_in.len);
    r->job.connect_timeout_ms = o->connect_timeout_ms;
    r->job.timeout_ms = o->timeout_ms;
    /* Bodies past max_object are not stored; until they stream, they pass up to a bound. */
    r->job.max_body = r->w->cfg->cache_max_object_bytes > (64u << 20)
                          ? (size_t)r->w->cfg->cache_max_object_bytes
                          : (size_t)(64u << 20);
    r->job.done = miss_done;
    r->job.cls = r;
    r->state = WREQ_WAIT;
    /* Suspend before submitting: the fetch may complete (and resume) at once. */
    MHD_suspend_connection(r->conn);
    rc = cw_fetch_submit(r->w->fetch, &r->job);
    if (rc < 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_SEG_FETCH_QUEUE_FULL, 1);
        r->job.rc = rc == -EAGAIN ? -EAGAIN : -ECANCELED;
        r->state = WREQ_READY;
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* Joins every Vary line into a lower-case "a,b" list: 0, or -ENOSPC past the bounds. */
static int miss_vary_names(const struct cw_fetch_job *job, char *buf, size_t size,
                           size_t *len)
{
    struct cw_str name, value;
    size_t off = 0, n = 0, fields = 0;

    while (cw_fetch_job_header_next(job, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT("Vary"))) continue;
        for (size_t i = 0; i < value.len; i++) {
            char ch = value.p[i];
            if (ch == ' ' || ch == '\t') continue;
            if (ch == ',') {
                if (n > 0 && buf[n - 1] != ',') {
                    if (n + 1 >= size) return -ENOSPC;
                    buf[n++] = ',';
                }
                continue;
            }
            if (n == 0 || buf[n - 1] == ',') {
                if (++fields > CW_LIMIT_VARY_FIELDS) return -ENOSPC;
            }
            if (n + 1 >= size) return -ENOSPC;
            buf[n++] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        if (n > 0 && buf[n - 1] != ',') {
            if (n + 1 >= size) return -ENOSPC;
            buf[n++] = ',';
        }
    }
    while (n > 0 && buf[n - 1] == ',') n--;
    *len = n;
    return 0;
}

/* Whether a stored response keeps this header (RFC 9111 §3.1 and §5.2.2.4, §5.2.2.7). */
static bool miss_keep_header(const struct worker_req *r, const struct cw_fresh_resp *fr,
                             struct cw_str name, struct cw_str conn)
{
    if (worker_is_hop(name, conn)) return false;
    if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length"))) return false;
    if (r->rt->strip_set_cookie && cw_str_eq_ci(name, CW_STR_LIT("Set-Cookie"))) return false;
    if ((fr->cc.flags & CW_CC_NO_CACHE_FIELDS) && cw_cc_list_has(fr->cc.no_cache_fields, name))
        return false;
    if ((fr->cc.flags & CW_CC_PRIVATE_FIELDS) && cw_cc_list_has(fr->cc.private_fields, name))
        return false;
    return true;
}

/* Fills the policy the route and the request give the freshness rules. */
static void miss_policy(const struct worker_req *r, struct cw_fresh_policy *pol)
{
    const struct cw_config_route *rt = r->rt;

    memset(pol, 0, sizeof(*pol));
    pol->method_is_get_or_head = true;
    pol->req_has_authorization =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization") != NULL;
    pol->route_ttl_ms = rt->ttl_ms;
    pol->route_swr_ms = rt->swr_ms;
    pol->route_sie_ms = rt->sie_ms;
    pol->max_ttl_ms = rt->max_ttl_ms;
    pol->override = rt->override;
    pol->strip_set_cookie = rt->strip_set_cookie;
    pol->request_time_ms = r->job.request_time_ms;
    pol->response_time_ms = r->job.response_time_ms;
}

/* Picks the key the response is stored under, keeping the vary record in step. */
static int miss_vary_key(struct worker_req *r)
{
    char names[MISS_VARY_BYTES];
    size_t len = 0;
    int rc = miss_vary_names(&r->job, names, sizeof(names), &len);

    if (rc < 0) return rc;
    if (len == 0 && r->key_len == r->primary_len) return 0;
    rc = cw_store_vary_put(r->w->store, &r->primary, cw_str_make(names, len));
    if (rc < 0) return rc;
    r->key_len = r->primary_len;
    r->key = r->primary;
    if (len == 0) return 0;
    rc = worker_key_vary(r, cw_str_make(names, len));
    if (rc < 0) return rc;
    cw_key_hash(cw_store_secret(r->w->store), r->key_buf, r->key_len, &r->key);
    return 0;
}

static void miss_store(struct worker_req *r)
{
    struct cw_fetch_job *job = &r->job;
    struct cw_entry_header hdrs[CW_LIMIT_HEADER_COUNT + 1];
    struct cw_fresh_resp fr;
    struct cw_fresh_policy pol;
    struct cw_fresh_result res;
    struct cw_entry_hdr h;
    struct cw_str name, value, conn = {NULL, 0};
    size_t off = 0, n = 0;
    char date[32];
    int rc;

    cw_fresh_resp_init(&fr, job->status);
    while (cw_fetch_job_header_next(job, &off, &name, &value)) {
        cw_fresh_add_header(&fr, name, value);
        if (cw_str_eq_ci(name, CW_STR_LIT("Connection"))) conn = value;
    }
    miss_policy(r, &pol);
    cw_fresh_evaluate(&fr, &pol, &res);
    if (!res.storable) {
        r->detail = res.why_not;
        return;
    }
    if (job->body.len > r->w->cfg->cache_max_object_bytes) {
        r->detail = "too-large";
        return;
    }
    if (miss_vary_key(r) < 0) {
        r->detail = "vary-too-large";
        return;
    }
    off = 0;
    while (cw_fetch_job_header_next(job, &off, &name, &value) && n < CW_LIMIT_HEADER_COUNT) {
        if (!miss_keep_header(r, &fr, name, conn)) continue;
        hdrs[n].name = name;
        hdrs[n++].value = value;
    }
    if (!fr.has_date && n < CW_LIMIT_HEADER_COUNT) {
        /* RFC 9110 §6.6.1: a recipient with a clock adds Date when the origin did not. */
        size_t dl = cw_fresh_format_date(job->response_time_ms / 1000, date);
        hdrs[n].name = CW_STR_LIT("Date");
        hdrs[n++].value = cw_str_make(date, dl);
    }
    memset(&h, 0, sizeof(h));
    h.status = (uint16_t)job->status;
    h.flags = (res.always_revalidate ? CW_ENTRY_ALWAYS_REVALIDATE : 0) |
              (res.must_revalidate ? CW_ENTRY_MUST_REVALIDATE : 0) |
              (res.explicit_freshness ? 0 : CW_ENTRY_HEURISTIC);
    h.stored_at_ms = cw_clock_wall_ms();
    h.response_time_ms = job->response_time_ms;
    h.corrected_initial_age_ms = res.corrected_initial_age_ms;
    h.fresh_until_ms = res.fresh_until_ms;
    h.swr_until_ms = res.swr_until_ms;
    h.sie_until_ms = res.sie_until_ms;
    h.last_check_ms = h.stored_at_ms;
    rc = cw_store_put(r->w->store, &r->key, &h, cw_str_make(r->key_buf, r->key_len), hdrs, n,
                      cw_str_make(job->body.p, job->body.len));
    if (rc < 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_SEG_STORE_PUT_FAIL, 1);
        r->detail = rc == -ENOSPC ? "cache-full" : "store-failed";
        return;
    }
    r->stored = true;
    cw_seg_add(r->w->seg, r->w->slot, CW_SEG_STORE_PUT, 1);
    atomic_fetch_add_explicit(cw_seg_fill_gen(r->w->seg, &r->key), 1, memory_order_release);
}

/* RFC 9111 §4.4: a non-error response to an unsafe method invalidates the target URI. */
static void miss_invalidate(struct worker_req *r)
{
    const char *m = r->method;
    int rc;

    if (strcmp(m, "OPTIONS") == 0 || strcmp(m, "TRACE") == 0) return;
    if (r->job.status < 200 || r->job.status >= 400) return;
    rc = worker_key_primary(r, r->host);
    if (rc < 0) return;
    rc = cw_store_delete(r->w->store, &r->primary);
    if (rc < 0 && rc != -ENOENT) cw_warn("worker %d: invalidate %s: %s", r->w->index, r->uri,
                                         strerror(-rc));
    rc = cw_store_vary_put(r->w->store, &r->primary, cw_str_make(NULL, 0));
    if (rc < 0 && rc != -ENOENT) cw_warn("worker %d: invalidate vary %s: %s", r->w->index,
                                         r->uri, strerror(-rc));
}

/* On the fetch thread. The connection is suspended, so reading its request headers here
 * races with nothing; resuming hands the request back to the MHD thread. */
static void miss_done(struct cw_fetch_job *job, void *cls)
{
    struct worker_req *r = cls;

    cw_seg_add(r->w->seg, r->w->slot, CW_SEG_ORIGIN_REQ, 1);
    if (job->rc != 0) {
        cw_seg_add(r->w->seg, r->w->slot, CW_SEG_ORIGIN_ERR, 1);
        if (job->rc != -ECANCELED)
            cw_warn("worker %d: origin %s %s: %s", r->w->index, job->method, job->url,
                    job->errbuf);
    } else if (r->cacheable) {
        miss_store(r);
    } else {
        miss_invalidate(r);
    }
    r->state = WREQ_READY;
    MHD_resume_connection(r->conn);
}
