/* workers/upstream.c - see workers/upstream.h: the loop.
 *
 * One thread drives a CURLM. Submitters push transfers and tasks on queues under a mutex and
 * wake the thread with curl_multi_wakeup(); the thread runs the tasks, moves each transfer to
 * its origin's pool, and adds it to the multi handle while the pool is under its cap (else it
 * waits in the pool's queue, started when a transfer of that origin ends). Finished transfers
 * complete through on_done. cw_upstream_resume() queues the transfer on a list under the same
 * mutex and wakes the thread, which calls curl_easy_pause() on its own thread (libcurl handles
 * are not thread safe). Connections stay alive in the multi handle's cache between transfers;
 * the pools' caps, not libcurl's per-host one, bound them, so that two origins on one
 * host:port each keep their own cap.
 *
 * TLS sessions: libcurl 7.88 caches them per easy handle unless a share handle holds them, and
 * the multi handle does not share them (its connection cache holds connections, not
 * sessions). A new easy handle per transfer would then make every new connection a full
 * handshake; one CURLSH with CURL_LOCK_DATA_SSL_SESSION, used only on the loop thread (so
 * without lock callbacks), lets a new connection resume the session of an earlier one. */
#include "workers/upstream.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "workers/clock.h"
#include "workers/upstream_int.h"

static int upstream_choose_server(struct upstream_run *run);
static void *upstream_thread_main(void *arg);

/* The length of "scheme://authority" at the start of url. */
static size_t upstream_base_len(const char *url)
{
    const char *auth = strstr(url, "://");

    auth = auth ? auth + 3 : url;
    return (size_t)(auth - url) + strcspn(auth, "/?");
}

int cw_upstream_start(const struct cw_config *cfg, size_t max_pending, struct cw_seg *seg,
                      bool checks, struct cw_upstream **out)
{
    struct cw_upstream *up;
    long total = 0;
    int rc;

    up = calloc(1, sizeof(*up));
    if (up == NULL) return -ENOMEM;
    up->pool_count = cfg->origin_count;
    up->pools = calloc(up->pool_count ? up->pool_count : 1, sizeof(*up->pools));
    if (up->pools == NULL) {
        rc = -ENOMEM;
        goto out_free_up;
    }
    for (size_t i = 0; i < up->pool_count; i++) {
        rc = upstream_pool_init(&up->pools[i], &cfg->origins[i]);
        if (rc < 0) {
            cw_err("upstream: origin pools: %s", strerror(-rc));
            goto out_free_pools;
        }
        total += up->pools[i].max;
    }
    rc = upstream_origins_init(cfg, seg, checks, &up->origins);
    if (rc < 0) goto out_free_pools;
    up->max_pending = max_pending;
    up->q_tail = &up->q_head;
    up->tasks_tail = &up->tasks;
    up->multi = curl_multi_init();
    if (up->multi == NULL) {
        cw_err("upstream: curl_multi_init failed");
        rc = -ENOMEM;
        goto out_free_pools;
    }
    /* The connection cache holds every origin's connections: the pools bound how many open. */
    curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, total > 0 ? total : 1L);
    up->share = curl_share_init();
    if (up->share == NULL ||
        curl_share_setopt(up->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        cw_err("upstream: curl_share_init: cannot share TLS sessions");
        rc = -ENOMEM;
        goto out_cleanup_multi;
    }
    rc = pthread_mutex_init(&up->lock, NULL);
    if (rc != 0) {
        rc = -rc;
        goto out_cleanup_multi;
    }
    rc = pthread_create(&up->thread, NULL, upstream_thread_main, up);
    if (rc != 0) {
        cw_err("upstream: pthread_create: %s", strerror(rc));
        rc = -rc;
        goto out_destroy_lock;
    }
    up->thread_started = true;
    *out = up;
    return 0;

out_destroy_lock:
    pthread_mutex_destroy(&up->lock);
out_cleanup_multi:
    curl_multi_cleanup(up->multi);
    curl_share_cleanup(up->share);
out_free_pools:
    upstream_origins_free(up->origins, up->pool_count);
    upstream_pools_free(up->pools, up->pool_count);
out_free_up:
    free(up);
    return rc;
}

int cw_upstream_submit(struct cw_upstream *up, struct cw_upstream_xfer *x)
{
    int rc = 0;

    if (x->req->origin < 0 || (size_t)x->req->origin >= up->pool_count) return -EINVAL;
    pthread_mutex_lock(&up->lock);
    if (up->stopping) {
        rc = -ESHUTDOWN;
    } else if (up->active >= up->max_pending) {
        rc = -EAGAIN;
    } else {
        x->up = up;
        x->internal = NULL;
        x->status = 0;
        x->errbuf[0] = '\0';
        x->request_time_ms = x->response_time_ms = 0;
        x->retry_after_ms = 0;
        x->logged = false;
        x->next = NULL;
        x->resume_next = NULL;
        x->resume_queued = false;
        x->abort_requested = false;
        x->live = true;
        *up->q_tail = x;
        up->q_tail = &x->next;
        up->active++;
    }
    pthread_mutex_unlock(&up->lock);
    if (rc == 0) curl_multi_wakeup(up->multi);
    return rc;
}

void cw_upstream_abort(struct cw_upstream_xfer *x)
{
    struct cw_upstream *up = x->up;
    bool wake = false;

    if (up == NULL) return;
    pthread_mutex_lock(&up->lock);
    if (x->live) {
        x->abort_requested = true;
        if (!x->resume_queued) {
            x->resume_queued = true;
            x->resume_next = up->resumes;
            up->resumes = x;
        }
        wake = true;
    }
    pthread_mutex_unlock(&up->lock);
    if (wake) curl_multi_wakeup(up->multi);
}

void cw_upstream_resume(struct cw_upstream_xfer *x)
{
    struct cw_upstream *up = x->up;
    bool wake = false;

    if (up == NULL) return;
    pthread_mutex_lock(&up->lock);
    if (x->live && !x->resume_queued) {
        x->resume_queued = true;
        x->resume_next = up->resumes;
        up->resumes = x;
        wake = true;
    }
    pthread_mutex_unlock(&up->lock);
    if (wake) curl_multi_wakeup(up->multi);
}

int cw_upstream_defer(struct cw_upstream *up, struct cw_upstream_task *t)
{
    int rc = 0;

    pthread_mutex_lock(&up->lock);
    if (up->stopping) {
        rc = -ESHUTDOWN;
    } else if (up->task_count >= up->max_pending) {
        rc = -EAGAIN;
    } else {
        t->next = NULL;
        *up->tasks_tail = t;
        up->tasks_tail = &t->next;
        up->task_count++;
    }
    pthread_mutex_unlock(&up->lock);
    if (rc == 0) curl_multi_wakeup(up->multi);
    return rc;
}

/* Runs the queued tasks, oldest first (bounded by the queue's cap). Off the lock: a task
 * may block, and may submit transfers or tasks itself. */
void upstream_run_tasks(struct cw_upstream *up, bool cancelled)
{
    struct cw_upstream_task *t;

    pthread_mutex_lock(&up->lock);
    t = up->tasks;
    up->tasks = NULL;
    up->tasks_tail = &up->tasks;
    up->task_count = 0;
    pthread_mutex_unlock(&up->lock);
    while (t != NULL) {
        struct cw_upstream_task *next = t->next;
        t->run(t, cancelled); /* t may be freed or queued again from here */
        t = next;
    }
}

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

/* Unpauses the transfers cw_upstream_resume() queued, and ends those cw_upstream_abort()
 * asked to end. A transfer stays marked queued until its turn, so that another thread's
 * resume meanwhile is not lost or linked twice. */
static void upstream_run_resumes(struct cw_upstream *up)
{
    struct cw_upstream_xfer *x;

    pthread_mutex_lock(&up->lock);
    x = up->resumes;
    up->resumes = NULL;
    pthread_mutex_unlock(&up->lock);
    while (x != NULL) {
        pthread_mutex_lock(&up->lock);
        struct cw_upstream_xfer *next = x->resume_next;
        bool abort = x->abort_requested;
        x->resume_queued = false;
        pthread_mutex_unlock(&up->lock);
        struct upstream_run *run = x->internal;
        if (abort && run != NULL && run->easy != NULL) {
            run->fail_rc = -ECANCELED;
            snprintf(x->errbuf, sizeof(x->errbuf), "cancelled by its consumer");
            upstream_end(up, run, CURLE_ABORTED_BY_CALLBACK); /* x is the submitter's again */
        } else if (abort && run != NULL) {
            run->aborted = true; /* waits for a connection: ends when its turn comes */
        } else if (run != NULL && run->easy != NULL) {
            run->hold = false;
            run->paused = false;
            upstream_touch(run);
            /* May deliver held data at once (on_data runs from here), or pause again. */
            CURLcode code = curl_easy_pause(run->easy, CURLPAUSE_CONT);
            if (code != CURLE_OK)
                cw_warn_rl("upstream: resume %s: %s", x->req->url, curl_easy_strerror(code));
        }
        x = next;
    }
}

static void upstream_reap_done(struct cw_upstream *up)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(up->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        struct upstream_run *run = NULL;
        CURL *e = msg->easy_handle;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&run);
        upstream_end(up, run, code);
    }
}

void cw_upstream_set_poller(struct cw_upstream *up, const struct cw_upstream_poller *p, void *cls)
{
    up->poller = p;
    up->poller_cls = cls;
}

/* curl_multi_poll() on libcurl's sockets and the poller's, for at most wait_ms (capped by the
 * poller's next deadline); then the poller handles what came and what is due. */
static void upstream_poll(struct cw_upstream *up, int wait_ms)
{
    const struct cw_upstream_poller *p = up->poller;
    struct pollfd pfd[CW_UPSTREAM_POLLER_FDS];
    struct curl_waitfd wfd[CW_UPSTREAM_POLLER_FDS];
    size_t n = 0;
    CURLMcode mc;

    if (p != NULL) {
        int t = p->timeout_ms(up->poller_cls);
        if (t >= 0 && t < wait_ms) wait_ms = t;
        n = p->fds(up->poller_cls, pfd, CW_UPSTREAM_POLLER_FDS);
        for (size_t i = 0; i < n; i++) {
            wfd[i].fd = pfd[i].fd;
            wfd[i].events = (short)(((pfd[i].events & POLLIN) ? CURL_WAIT_POLLIN : 0) |
                                    ((pfd[i].events & POLLOUT) ? CURL_WAIT_POLLOUT : 0));
            wfd[i].revents = 0;
        }
    }
    mc = curl_multi_poll(up->multi, wfd, (unsigned)n, wait_ms, NULL);
    if (mc != CURLM_OK) cw_err("upstream: curl_multi_poll: %s", curl_multi_strerror(mc));
    if (p == NULL) return;
    for (size_t i = 0; i < n; i++) {
        pfd[i].revents = (short)(((wfd[i].revents & CURL_WAIT_POLLIN) ? POLLIN : 0) |
                                 ((wfd[i].revents & CURL_WAIT_POLLOUT) ? POLLOUT : 0));
    }
    p->process(up->poller_cls, pfd, n);
}

static void *upstream_thread_main(void *arg)
{
    struct cw_upstream *up = arg;
    int running = 0;

    pthread_setname_np(pthread_self(), "cw-fetch"); /* for top -H, gdb and the tests */
    for (;;) {
        if (upstream_take_queued(up)) break;
        upstream_run_resumes(up);
        CURLMcode mc = curl_multi_perform(up->multi, &running);
        if (mc != CURLM_OK) cw_err("upstream: curl_multi_perform: %s", curl_multi_strerror(mc));
        upstream_reap_done(up);
        upstream_poll(up, upstream_expire(up));
    }
    /* Stopping: cancel what waits for a connection, then what still runs. */
    for (size_t i = 0; i < up->pool_count; i++) {
        struct upstream_pool *pool = &up->pools[i];
        while (pool->wait_head != NULL) {
            struct upstream_run *run = pool->wait_head;
            pool->wait_head = run->next;
            pool->waiting--;
            upstream_finish(up, run->x, run, -ECANCELED, "shutting down");
        }
        pool->wait_tail = &pool->wait_head;
        pool->max = 0; /* nothing starts from here */
    }
    while (up->running != NULL) {
        struct upstream_run *run = up->running;
        run->fail_rc = -ECANCELED;
        snprintf(run->x->errbuf, sizeof(run->x->errbuf), "shutting down");
        upstream_end(up, run, CURLE_ABORTED_BY_CALLBACK);
    }
    return NULL;
}

void cw_upstream_cancel(struct cw_upstream *up)
{
    bool started;

    if (up == NULL) return;
    pthread_mutex_lock(&up->lock);
    up->stopping = true;
    started = up->thread_started;
    up->thread_started = false;
    pthread_mutex_unlock(&up->lock);
    if (started) {
        curl_multi_wakeup(up->multi);
        pthread_join(up->thread, NULL);
    }
    upstream_take_queued(up); /* transfers submitted after the thread's last look */
}

void cw_upstream_stop(struct cw_upstream *up)
{
    if (up == NULL) return;
    cw_upstream_cancel(up);
    curl_multi_cleanup(up->multi);
    curl_share_cleanup(up->share); /* after the multi: no easy handle uses it any more */
    pthread_mutex_destroy(&up->lock);
    upstream_origins_free(up->origins, up->pool_count);
    upstream_pools_free(up->pools, up->pool_count);
    free(up);
}
