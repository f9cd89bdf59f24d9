/* workers/req_purge.c - PURGE <url> (or its tags, or its prefix): who may, the writes (run on
 * the fetch thread, so a hit never waits behind them; tags and prefixes in steps), and the
 * answer. Leaves of the request state machine
 * (workers/req.c), which suspends the request between the two halves. */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/clock.h"
#include "workers/req_int.h"

bool req_purge_allowed(struct worker_req *r)
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

/* The next Surrogate-Key tag (space-separated, RFC 9111 has none: the Fastly and Varnish
 * convention) at or after r->purge->tag_off: its offset and length, or length 0 at the end. */
static size_t req_purge_tag_next(const struct worker_req *r, size_t *off)
{
    const char *p = r->purge->tags + r->purge->tag_off;
    size_t n = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    while (p[n] != '\0' && p[n] != ' ' && p[n] != '\t')
        n++;
    *off = (size_t)(p - r->purge->tags);
    return n;
}

/* One step of a tag or prefix purge: true while there is more. */
static bool req_purge_step(struct worker_req *r, int64_t now)
{
    struct cw_worker *w = r->w;
    size_t count = 0, off, n;
    int rc;

    if (r->purge->prefix != NULL) {
        rc = cw_store_purge_prefix_step(
            w->store, cw_str_make(r->purge->prefix, r->purge->prefix_len), r->purge->soft, now,
            REQ_PURGE_BATCHES, &r->purge->pos, &count);
        r->purge->count += count;
        if (rc < 0) {
            cw_warn("worker %d: purge: prefix %s not all purged", w->index, r->purge->prefix_url);
            r->purge->rc = rc;
            return false;
        }
        return !r->purge->pos.done;
    }
    n = req_purge_tag_next(r, &off);
    if (n == 0) return false;
    rc = cw_store_purge_tag_step(w->store, cw_str_make(r->purge->tags + off, n), r->purge->soft,
                                 now, REQ_PURGE_BATCHES, &r->purge->pos, &count);
    r->purge->count += count;
    if (rc < 0)
        cw_warn("worker %d: purge: tag %.*s not all purged", w->index, (int)n,
                r->purge->tags + off);
    if (rc < 0 || r->purge->pos.done) { /* on to the next tag */
        r->purge->tag_off = off + n;
        memset(&r->purge->pos, 0, sizeof(r->purge->pos));
        n = req_purge_tag_next(r, &off);
    }
    return n > 0;
}

/* Variants are keyed by the URL's key plus header lines, so they go by prefix, as cwctl
 * purge finds them: the lines of a Vary record, and those of the route itself (key_headers,
 * the Cookie with cookies = "key"), which the request's primary key carries with the
 * PURGE's own values: every value's entry goes, not only the one the PURGE named. */
bool req_purge_apply(struct worker_req *r, bool cancelled)
{
    struct cw_worker *w = r->w;
    int64_t now = cw_clock_wall_ms();
    char vary[CW_LIMIT_VARY_RECORD_BYTES];
    size_t vary_len, url_len, n = 0;
    const char *nl;
    bool has_vary;

    if (!r->purge->started) {
        r->purge->started = true;
        r->purge->rc = 0;
        r->purge->count = 0;
        r->purge->tag_off = 0;
        memset(&r->purge->pos, 0, sizeof(r->purge->pos));
        /* Other nodes and L2 first: the purge is asked now, whatever this node takes. */
        if (!cancelled && (r->purge->tags != NULL || r->purge->prefix != NULL)) req_l2_purged(r, 0);
    }
    if (cancelled) {
        r->purge->rc = -ECANCELED;
        return false;
    }
    if (r->purge->tags != NULL || r->purge->prefix != NULL) return req_purge_step(r, now);
    if (cw_store_purge_key(w->store, &r->q.primary, r->purge->soft, now) == 0) r->purge->count++;
    has_vary = cw_store_vary_get(w->fill.reader, &r->q.primary, vary, sizeof(vary), &vary_len) == 0;
    /* The URL's own key ends where the route's header lines start. */
    nl = memchr(r->q.key_buf, '\n', r->q.primary_len);
    url_len = nl != NULL ? (size_t)(nl - r->q.key_buf) : r->q.primary_len;
    if ((!has_vary && nl == NULL) || url_len >= CW_LIMIT_KEY_BYTES) {
        req_l2_purged(r, 0);
        return false;
    }
    r->q.key_buf[url_len] = '\n';
    /* In L2 too: variants this node has no record of may be there, stored by other nodes. */
    req_l2_purged(r, url_len + 1);
    if (cw_store_purge_prefix(w->store, cw_str_make(r->q.key_buf, url_len + 1), r->purge->soft, now,
                              &n) < 0)
        cw_warn("worker %d: purge: variants of %s not all purged", w->index, r->uri);
    r->purge->count += n;
    if (has_vary && !r->purge->soft &&
        cw_store_vary_put(w->store, &r->q.primary, cw_str_make(NULL, 0)) < 0)
        cw_warn("worker %d: purge: vary record of %s not removed", w->index, r->uri);
    return false;
}

/* 200 when something was purged, 404 when nothing was cached. */
int req_purge_response(struct worker_req *r)
{
    char body[96];
    struct MHD_Response *resp;
    int len;

    if (r->purge->tags != NULL)
        cw_notice("worker %d: purge%s of tags %s: %zu entries", r->w->index,
                  r->purge->soft ? " (soft)" : "", r->purge->tags, r->purge->count);
    else if (r->purge->prefix != NULL)
        cw_notice("worker %d: purge%s of prefix %s: %zu entries", r->w->index,
                  r->purge->soft ? " (soft)" : "", r->purge->prefix_url, r->purge->count);
    else
        cw_notice("worker %d: purge%s %s%s: %zu entries", r->w->index,
                  r->purge->soft ? " (soft)" : "", r->q.host.p, r->uri, r->purge->count);
    len = snprintf(body, sizeof(body), "{\"purged\":%zu,\"soft\":%s}\n", r->purge->count,
                   r->purge->soft ? "true" : "false");
    resp = MHD_create_response_from_buffer((size_t)len, body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) return -ENOMEM;
    req_resp_header(r, resp, "Content-Type", "application/json");
    req_resp_header(r, resp, "Cache-Control", "no-store");
    req_count(r, CW_METRICS_RESULT_PASS);
    r->bytes = (uint64_t)len;
    r->resp = resp;
    r->resp_kept = false; /* built here: this request's own */
    r->resp_status = r->purge->count > 0 ? 200 : 404;
    return 0;
}
