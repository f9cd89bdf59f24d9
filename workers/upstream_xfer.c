/* workers/upstream_xfer.c - see workers/upstream.h: a transfer's attempts. Starting one:
 * the server chosen, its URL (with the origin's sni, a TLS name and a connect-to), the request
 * header list and body, the libcurl options (client certificate, shared TLS sessions, idle
 * connection age) and the easy handle added to the multi handle. Ending one: libcurl's code
 * mapped to an errno, a server's TLS trouble logged once per change, the passive health and
 * the breaker told, the one retry of an idempotent request on another server, and on_done.
 * On the loop thread (or, once the loop has ended, the thread that stopped it). */
#include "workers/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/limits.h"
#include "core/log.h"
#include "workers/clock.h"
#include "workers/upstream_int.h"

static int upstream_choose_server(struct upstream_run *run);

/* Builds the request header list from "Name: value\r\n" lines; host_line ("Host: value",
 * the origin's host setting) replaces their Host field when not NULL. */
static int upstream_build_list(const char *lines, bool chunked, const char *host_line,
                               struct curl_slist **out)
{
    struct curl_slist *list = NULL, *tmp;
    char line[CW_LIMIT_HEADER_NAME_BYTES + CW_LIMIT_HEADER_VALUE_BYTES + 4];

    /* curl would add "Expect: 100-continue" to bodies over 1 KiB; the origin is ours. */
    list = curl_slist_append(list, "Expect:");
    if (list == NULL) return -ENOMEM;
    /* A streamed body of unknown length goes chunked (libcurl's way to ask for it). */
    if (chunked) {
        tmp = curl_slist_append(list, "Transfer-Encoding: chunked");
        if (tmp == NULL) goto out_nomem;
        list = tmp;
    }
    if (host_line != NULL) {
        tmp = curl_slist_append(list, host_line);
        if (tmp == NULL) goto out_nomem;
        list = tmp;
    }
    while (lines != NULL && *lines != '\0') {
        const char *eol = strstr(lines, "\r\n");
        size_t n = eol ? (size_t)(eol - lines) : strlen(lines);
        if (host_line != NULL && n >= 5 && strncasecmp(lines, "Host:", 5) == 0) {
            lines = eol ? eol + 2 : lines + n;
            continue;
        }
        if (n > 0 && n < sizeof(line)) {
            memcpy(line, lines, n);
            line[n] = '\0';
            tmp = curl_slist_append(list, line);
            if (tmp == NULL) goto out_nomem;
            list = tmp;
        }
        lines = eol ? eol + 2 : lines + n;
    }
    *out = list;
    return 0;
out_nomem:
    curl_slist_free_all(list);
    return -ENOMEM;
}

/* Sets the method and the request body of e. */
static void upstream_set_body(CURL *e, struct upstream_run *run)
{
    const struct cw_upstream_xfer *x = run->x;
    const struct cw_upstream_req *req = x->req;
    const char *m = req->method;

    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    if (strcmp(m, "GET") == 0 && x->ops->on_read == NULL) return;
    if (strcmp(m, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    if (x->ops->on_read != NULL) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, upstream_on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, run);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else if (req->body.len > 0 || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
               strcmp(m, "PATCH") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body.len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body.len ? req->body.p : "");
    }
}

/* With the origin's sni and an https server: run->tls_url names the sni instead of the
 * server's host, and run->connect_to sends the connection to the server all the same
 * (libcurl takes the TLS server name, and the name it checks, from the URL's host; nginx's
 * proxy_ssl_name does both too). 0, or -ENOMEM with x->errbuf set. */
static int upstream_sni_url(struct upstream_run *run)
{
    const char *u = run->url, *auth, *path, *colon;
    char port[8] = "443", *to = NULL;
    struct curl_slist *list;
    size_t hlen, n;

    free(run->tls_url);
    run->tls_url = NULL;
    curl_slist_free_all(run->connect_to);
    run->connect_to = NULL;
    if (run->pool->sni == NULL || strncmp(u, "https://", 8) != 0) return 0;
    auth = u + 8;
    path = auth + strcspn(auth, "/?");
    /* host, "[v6]" or either with ":port" (the config checked the form) */
    colon = auth[0] == '[' ? memchr(auth, ']', (size_t)(path - auth)) : auth;
    colon = colon ? memchr(colon, ':', (size_t)(path - colon)) : NULL;
    hlen = colon ? (size_t)(colon - auth) : (size_t)(path - auth);
    if (colon != NULL && (size_t)(path - colon - 1) < sizeof(port)) {
        memcpy(port, colon + 1, (size_t)(path - colon - 1));
        port[path - colon - 1] = '\0';
    }
    n = strlen(run->pool->sni) + strlen(port) + hlen + strlen(port) + 4;
    if ((to = malloc(n)) == NULL) goto out_nomem;
    snprintf(to, n, "%s:%s:%.*s:%s", run->pool->sni, port, (int)hlen, auth, port);
    list = curl_slist_append(NULL, to);
    free(to);
    if (list == NULL) goto out_nomem;
    n = 8 + strlen(run->pool->sni) + 1 + strlen(port) + strlen(path) + 1;
    if ((run->tls_url = malloc(n)) == NULL) {
        curl_slist_free_all(list);
        goto out_nomem;
    }
    snprintf(run->tls_url, n, "https://%s:%s%s", run->pool->sni, port, path);
    run->connect_to = list;
    return 0;
out_nomem:
    snprintf(run->x->errbuf, sizeof(run->x->errbuf), "could not start the transfer");
    return -ENOMEM;
}

/* The origin's own options on e: its client certificate, its sni's connect_to, how long a
 * pooled connection may sit idle, and the shared TLS session cache. */
static void upstream_setopts(struct cw_upstream *up, struct upstream_run *run, CURL *e)
{
    const struct upstream_pool *pool = run->pool;

    if (pool->tls_cert != NULL) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, pool->tls_cert);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        /* Without tls_key, the key is read from the certificate's file. */
        curl_easy_setopt(e, CURLOPT_SSLKEY, pool->tls_key ? pool->tls_key : pool->tls_cert);
    }
    if (run->connect_to != NULL) curl_easy_setopt(e, CURLOPT_CONNECT_TO, run->connect_to);
    /* libcurl closes a cached connection idle this long instead of reusing it (nginx's
     * keepalive_timeout for upstream connections, default 60 s). */
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, pool->idle_s);
    curl_easy_setopt(e, CURLOPT_SHARE, up->share);
}

/* Adds run to the multi handle: 0, or -errno with x->errbuf set (the caller finishes it).
 * A new easy handle per transfer: libcurl 7.88 keeps a stale header pointer in a reused
 * handle (curl#11101, fixed in 8.1.0) that a hostile origin's obs-fold line after a reuse
 * turns into a use-after-free. Connections live in the multi handle's cache, not in the
 * easy handle, so keep-alive does not depend on reuse. */
int upstream_begin(struct cw_upstream *up, struct upstream_run *run)
{
    struct cw_upstream_xfer *x = run->x;
    const struct cw_upstream_req *req = x->req;
    int64_t timeout_ms = run->first_byte_ms;
    int rc;

    if (run->aborted) {
        snprintf(x->errbuf, sizeof(x->errbuf), "cancelled by its consumer");
        return -ECANCELED;
    }
    /* The wait for a connection counts in the first-byte timeout, as libcurl's own queue
     * counted it. */
    if (timeout_ms > 0) {
        timeout_ms -= cw_clock_mono_ms() - run->taken_ms;
        if (timeout_ms <= 0) {
            snprintf(x->errbuf, sizeof(x->errbuf), "timed out waiting for a connection");
            return -ETIMEDOUT;
        }
    }
    rc = upstream_choose_server(run);
    if (rc < 0) return rc;
    rc = upstream_sni_url(run);
    if (rc < 0) goto out_release_server;
    run->easy = curl_easy_init();
    if (run->easy == NULL) {
        snprintf(x->errbuf, sizeof(x->errbuf), "could not start the transfer");
        rc = -ENOMEM;
        goto out_release_server;
    }
    rc = upstream_build_list(req->head, x->ops->on_read != NULL && req->body_len < 0,
                             run->pool->host_line, &run->hdrs);
    if (rc < 0) {
        snprintf(x->errbuf, sizeof(x->errbuf), "could not start the transfer");
        goto out_cleanup;
    }
    x->request_time_ms = cw_clock_wall_ms();
    CURL *e = run->easy;
    curl_easy_setopt(e, CURLOPT_URL, run->tls_url ? run->tls_url : run->url);
    upstream_setopts(up, run, e);
    /* After upstream_setopts(): a server DNS found replaces the sni's CONNECT_TO with its own
     * ("::address:port" matches any host, the sni's included). */
    upstream_origin_setopts(run->origin, run->server, e);
    /* The worker normalised the path once (RFC 3986 §5.2.4): libcurl must change nothing. */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, run);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, run->hdrs);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
    /* The loop times the transfer itself (upstream_expire()): to the head, then between
     * bytes, and not while a callback holds it paused. */
    run->deadline_ms = timeout_ms > 0 ? cw_clock_mono_ms() + timeout_ms : 0;
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upstream_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, run);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upstream_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, run);
    upstream_set_body(e, run);
    CURLMcode mc = curl_multi_add_handle(up->multi, e);
    if (mc != CURLM_OK) {
        cw_err("upstream: curl_multi_add_handle %s: %s", run->url, curl_multi_strerror(mc));
        snprintf(x->errbuf, sizeof(x->errbuf), "could not start the transfer");
        rc = -EIO;
        goto out_cleanup;
    }
    run->prev = NULL;
    run->next = up->running;
    if (up->running) up->running->prev = run;
    up->running = run;
    return 0;

out_cleanup:
    curl_slist_free_all(run->hdrs);
    run->hdrs = NULL;
    curl_easy_cleanup(run->easy);
    run->easy = NULL;
out_release_server:
    curl_slist_free_all(run->connect_to);
    run->connect_to = NULL;
    free(run->tls_url);
    run->tls_url = NULL;
    upstream_origin_release(run->origin, run->server);
    run->server = -1;
    return rc;
}

/* The handshake failed: the peer's certificate or name, ours refused, no common cipher. */
static bool upstream_is_tls_failure(CURLcode code)
{
    switch (code) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return true;
    default:
        return false;
    }
}

static int upstream_map_code(CURLcode code)
{
    switch (code) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    default:
        return upstream_is_tls_failure(code) ? -EPROTO : -EIO;
    }
}

/* Chooses run's server (the pinned one, else the pool's choice, away from the server of a
 * failed first attempt) and its URL: 0, or -EHOSTUNREACH when every server is down, -ENOMEM;
 * x->errbuf says why. A probe that finds no server up counts as failed. */
static int upstream_choose_server(struct upstream_run *run)
{
    struct cw_upstream_xfer *x = run->x;
    int pin = x->req->server_pin, prev = run->server, s;

    if (pin > 0 && (size_t)pin <= upstream_origin_server_count(run->origin)) {
        s = pin - 1;
        upstream_origin_pin(run->origin, s);
    } else {
        s = upstream_origin_pick(run->origin, prev);
    }
    if (s >= 0 && run->retried && s == prev) {
        upstream_origin_release(run->origin, s); /* a retry goes elsewhere or not at all */
        return -EHOSTUNREACH;
    }
    if (s < 0) {
        if (run->retried) return -EHOSTUNREACH;
        if (run->probe) upstream_origin_report(run->origin, false, true);
        run->probe = false; /* reported */
        upstream_origin_count_fail_fast(run->origin);
        snprintf(x->errbuf, sizeof(x->errbuf), "every server of the origin is down");
        return -EHOSTUNREACH;
    }
    run->server = s;
    free(run->url);
    run->url = NULL;
    if (upstream_origin_url(run->origin, s, x->req->url, &run->url) < 0) {
        upstream_origin_release(run->origin, s);
        run->server = -1;
        snprintf(x->errbuf, sizeof(x->errbuf), "could not start the transfer");
        return -ENOMEM;
    }
    return 0;
}

/* RFC 9110 §9.2.2: a request whose repetition has the same effect, and whose body (if any) is
 * still in memory to send again. */
static bool upstream_is_idempotent(const struct cw_upstream_xfer *x)
{
    const char *m = x->req->method;

    if (x->ops->on_read != NULL) return false;
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0 ||
           strcmp(m, "PUT") == 0 || strcmp(m, "DELETE") == 0;
}

/* A failure that says the server could not be reached or did not speak: it never started
 * an answer (connect refused or timed out, TLS failed, reset or closed before any byte). */
static bool upstream_is_connect_failure(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT: /* our own timeout sets fail_rc: this is the connect's */
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return true;
    default:
        return false;
    }
}

/* After an attempt ended (its easy handle gone): reports it to the server's passive health,
 * and either starts the one retry on another server (true: run lives on, still counted in its
 * pool), or reports the request's outcome to the breaker (false: the caller finishes it). A
 * retry needs an idempotent request whose attempt failed to connect or was cut before any
 * response byte: nothing has reached the consumer then, so nothing can reach the client
 * twice. */
static bool upstream_after_attempt(struct cw_upstream *up, struct upstream_run *run, CURLcode code,
                                   int rc)
{
    struct cw_upstream_xfer *x = run->x;
    struct upstream_origin *o = run->origin;
    int st = x->status;
    /* A server fails by not answering: refused, timed out or cut before its head, a bad head,
     * or 502/503/504. Once a head came, a later stall or reset is the transfer's trouble,
     * not a sign the server is gone (a slow stream, one bad URL), and a consumer's own error
     * or a cancel says nothing about the server either. */
    bool no_news = rc == -ECANCELED || (rc != 0 && run->head_done) ||
                   (rc != 0 && run->fail_rc != 0 && rc != -ETIMEDOUT && rc != -EBADMSG);
    bool server_failed = rc != 0 || st == 502 || st == 503 || st == 504;

    upstream_origin_release(o, run->server);
    if (x->req->server_pin > 0 || run->server < 0) return false;
    if (!no_news) upstream_origin_report_server(o, run->server, !server_failed);
    if (!run->retried && rc != 0 && run->fail_rc == 0 && !run->head_done && st == 0 &&
        upstream_is_connect_failure(code) && upstream_is_idempotent(x) &&
        upstream_origin_server_count(o) > 1 && upstream_origin_take_retry(o)) {
        char first[sizeof(x->errbuf)];
        snprintf(first, sizeof(first), "%s", x->errbuf);
        run->retried = true;
        run->headers.len = 0;
        run->header_count = 0;
        run->content_length = -1;
        run->chunked = false;
        x->errbuf[0] = '\0';
        int brc = upstream_begin(up, run);
        upstream_origin_retry_sent(o, brc == 0);
        if (brc == 0) {
            cw_info("upstream: %s %s: retried on server %d: %s", x->req->method, x->req->url,
                    run->server, first);
            return true;
        }
        /* No other server, or it could not start: the request fails with its first error. */
        snprintf(x->errbuf, sizeof(x->errbuf), "%s", first);
    }
    if (no_news) return false; /* a probe among them is released by upstream_finish() */
    upstream_origin_report(o, !server_failed, run->probe);
    /* The probe failed: the breaker is open again, and this request is told so too. */
    if (run->probe && server_failed) x->retry_after_ms = upstream_origin_breaker_wait_ms(o);
    run->probe = false; /* reported */
    return false;
}

/* Ends x: it leaves the resume list and the count, then on_done runs and the loop forgets x.
 * run (NULL for a transfer never taken) is freed after on_done, which may read it (collect). */
void upstream_finish(struct cw_upstream *up, struct cw_upstream_xfer *x, struct upstream_run *run,
                     int rc, const char *why)
{
    if (rc != 0 && x->errbuf[0] == '\0' && why != NULL)
        snprintf(x->errbuf, sizeof(x->errbuf), "%s", why);
    if (x->response_time_ms == 0) x->response_time_ms = cw_clock_wall_ms();
    pthread_mutex_lock(&up->lock);
    x->live = false;
    if (x->resume_queued) {
        struct cw_upstream_xfer **pp = &up->resumes;
        while (*pp != NULL && *pp != x)
            pp = &(*pp)->resume_next;
        if (*pp == x) *pp = x->resume_next;
        x->resume_queued = false;
    }
    up->active--;
    pthread_mutex_unlock(&up->lock);
    /* A probe that ends unreported (cancelled, its queue full or its wait over, not started,
     * cut after its head) must not hold the half-open breaker until probe_ms: the next
     * request goes as the probe instead. */
    if (run != NULL && run->probe) {
        upstream_origin_release_probe(run->origin);
        run->probe = false;
    }
    x->internal = run;
    x->ops->on_done(x, rc); /* x is the submitter's again from here (collect took run's lines) */
    if (run != NULL) {
        free(run->headers.p);
        free(run->url);
        free(run->tls_url);
        curl_slist_free_all(run->connect_to);
        free(run);
    }
}

/* The length of "scheme://authority" at the start of url. */
static size_t upstream_base_len(const char *url)
{
    const char *auth = strstr(url, "://");

    auth = auth ? auth + 3 : url;
    return (size_t)(auth - url) + strcspn(auth, "/?");
}

/* Logs a server's TLS trouble once per change, in this process: the first handshake that
 * fails (origin, server, libcurl's cause: an untrusted certificate, a wrong name, our
 * certificate refused), then nothing while it keeps failing (x->logged tells the submitter),
 * and once more when a transfer to it gets through. */
static void upstream_tls_state(struct upstream_run *run, int rc)
{
    struct upstream_pool *pool = run->pool;
    struct cw_upstream_xfer *x = run->x;
    int s = run->server;

    if (s < 0 || s >= CW_LIMIT_ORIGIN_SERVERS) return;
    if (rc == -EPROTO) {
        x->logged = true;
        if (pool->tls_failing[s]) return;
        pool->tls_failing[s] = true;
        cw_warn("upstream: origin %s server %.*s: TLS handshake failed: %s; its requests fail "
                "(502) until one gets through",
                pool->name, (int)upstream_base_len(run->url), run->url, x->errbuf);
    } else if (pool->tls_failing[s] && (rc == 0 || run->head_done)) {
        pool->tls_failing[s] = false;
        cw_notice("upstream: origin %s server %.*s: TLS handshake succeeds again", pool->name,
                  (int)upstream_base_len(run->url), run->url);
    }
}

/* Ends a transfer that ran: out of the multi handle and its pool, then finished; the pool's
 * next waiting transfer starts on the connection it left. */
void upstream_end(struct cw_upstream *up, struct upstream_run *run, CURLcode code)
{
    struct cw_upstream_xfer *x = run->x;
    struct upstream_pool *pool = run->pool;
    int rc;

    curl_multi_remove_handle(up->multi, run->easy);
    if (run->prev) run->prev->next = run->next;
    if (run->next) run->next->prev = run->prev;
    if (up->running == run) up->running = run->next;
    x->response_time_ms = cw_clock_wall_ms();
    rc = run->fail_rc ? run->fail_rc : upstream_map_code(code);
    if (rc == 0 && x->status < 100) rc = -EBADMSG;
    if (rc != 0 && x->errbuf[0] == '\0')
        snprintf(x->errbuf, sizeof(x->errbuf), "%s", curl_easy_strerror(code));
    curl_slist_free_all(run->hdrs);
    curl_easy_cleanup(run->easy);
    run->hdrs = NULL;
    run->easy = NULL;
    upstream_tls_state(run, rc);
    if (upstream_after_attempt(up, run, code, rc)) return; /* retried on another server */
    pool->running--;
    upstream_finish(up, x, run, rc, NULL);
    upstream_pool_kick(up, pool);
}
