/* workers/fetch.c - see workers/fetch.h.
 *
 * One thread per worker drives a CURLM. Submitters push jobs on a bounded queue under a
 * mutex and wake the thread with curl_multi_wakeup(); the thread moves them into the multi
 * handle, runs transfers, and completes finished ones through their done callback. Easy
 * handles are kept for reuse, and the multi handle's connection cache keeps origin
 * connections alive between jobs. */
#include "workers/fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/log.h"
#include "workers/clock.h"

#define FETCH_POLL_MS    1000
#define FETCH_BODY_CHUNK 16384

struct cw_fetch {
    pthread_t thread;
    bool thread_started;
    CURLM *multi;
    pthread_mutex_t lock;
    struct cw_fetch_job **queue; /* ring of max_pending */
    size_t q_head;
    size_t q_len;
    size_t max_pending;
    size_t active;               /* queued + running, under lock */
    struct cw_fetch_task *tasks; /* deferred work, oldest first, under lock */
    struct cw_fetch_task **tasks_tail;
    size_t task_count; /* queued tasks, at most max_pending */
    bool stopping;
    struct fetch_xfer *running; /* list of transfers in the multi handle */
};

/* Per running job: the easy handle and its request header list. */
struct fetch_xfer {
    struct fetch_xfer *prev, *next;
    struct cw_fetch_job *job;
    CURL *easy;
    struct curl_slist *hdrs;
    int fail_rc;            /* set by callbacks that abort the transfer */
    int64_t content_length; /* of the response being read, -1 when none yet */
    bool chunked;           /* it has a Transfer-Encoding */
};

static void *fetch_thread_main(void *arg);
static int fetch_xfer_begin(struct cw_fetch *f, struct cw_fetch_job *job);
static void fetch_xfer_end(struct cw_fetch *f, struct cw_fetch_job *job, CURLcode code);

static int fetch_buf_append(struct cw_fetch_buf *b, const char *p, size_t n, size_t max)
{
    size_t need;

    if (__builtin_add_overflow(b->len, n, &need) || need > max) return -EFBIG;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : FETCH_BODY_CHUNK;
        while (cap < need)
            cap = cap > max / 2 ? max : cap * 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len = need;
    return 0;
}

void cw_fetch_job_reset(struct cw_fetch_job *job)
{
    if (job == NULL) return;
    free(job->headers.p);
    free(job->body.p);
    memset(&job->headers, 0, sizeof(job->headers));
    memset(&job->body, 0, sizeof(job->body));
    job->header_count = 0;
    job->status = 0;
    job->rc = 0;
    job->errbuf[0] = '\0';
}

bool cw_fetch_job_header_next(const struct cw_fetch_job *job, size_t *off, struct cw_str *name,
                              struct cw_str *value)
{
    const char *p, *end, *colon;

    if (*off >= job->headers.len) return false;
    p = job->headers.p + *off;
    end = memchr(p, '\0', job->headers.len - *off);
    if (end == NULL) return false;
    *off = (size_t)(end - job->headers.p) + 1;
    colon = memchr(p, ':', (size_t)(end - p));
    if (colon == NULL) return false; /* the header callback only stores lines with a colon */
    *name = cw_str_make(p, (size_t)(colon - p));
    p = colon + 1;
    while (p < end && cw_is_ows((unsigned char)*p))
        p++;
    while (end > p && cw_is_ows((unsigned char)end[-1]))
        end--;
    *value = cw_str_make(p, (size_t)(end - p));
    return true;
}

/* Parses "HTTP/1.1 200 OK": the status, or -1. */
static int fetch_parse_status(const char *p, size_t n)
{
    size_t i = 0;
    int status = 0;

    while (i < n && p[i] != ' ')
        i++;
    if (i + 4 > n) return -1;
    for (size_t k = i + 1; k < i + 4; k++) {
        if (p[k] < '0' || p[k] > '9') return -1;
        status = status * 10 + (p[k] - '0');
    }
    return status;
}

/* RFC 9110 §5.6.2 tchar. */
static bool fetch_is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* RFC 9110 §5.5: field-content is VCHAR, obs-text, SP and HTAB; a CR, LF, NUL or other
 * control byte could split or smuggle a field when replayed, so the response is refused. */
static bool fetch_is_field_value(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    }
    return true;
}

/* Checks one "Name: value" line: the name a token within its limit (no space before the
 * colon, RFC 9112 §5.1), the value within its limit and free of control bytes. */
static bool fetch_is_valid_field(const char *p, size_t len, struct cw_str *name,
                                 struct cw_str *value)
{
    const char *colon = memchr(p, ':', len);
    size_t i;

    if (colon == NULL || colon == p) return false;
    *name = cw_str_make(p, (size_t)(colon - p));
    if (name->len > CW_LIMIT_HEADER_NAME_BYTES) return false;
    for (i = 0; i < name->len; i++)
        if (!fetch_is_tchar((unsigned char)p[i])) return false;
    const char *v = colon + 1, *end = p + len;
    while (v < end && cw_is_ows((unsigned char)*v))
        v++;
    while (end > v && cw_is_ows((unsigned char)end[-1]))
        end--;
    *value = cw_str_make(v, (size_t)(end - v));
    return value->len <= CW_LIMIT_HEADER_VALUE_BYTES && fetch_is_field_value(v, value->len);
}

/* RFC 9112 §6.3: Content-Length with Transfer-Encoding, or Content-Lengths that differ, make
 * the framing ambiguous; a proxy answers 502 rather than guess (nginx does the same). A
 * list of equal values ("5, 5") is one length. */
static bool fetch_framing_ok(struct fetch_xfer *x, struct cw_str name, struct cw_str value)
{
    if (cw_str_eq_ci(name, CW_STR_LIT("Transfer-Encoding"))) {
        x->chunked = true;
        return x->content_length < 0;
    }
    if (!cw_str_eq_ci(name, CW_STR_LIT("Content-Length"))) return true;
    for (size_t i = 0; i < value.len;) {
        int64_t v = 0;
        size_t start = i;
        while (i < value.len && value.p[i] >= '0' && value.p[i] <= '9') {
            if (v > (INT64_MAX - 9) / 10) return false;
            v = v * 10 + (value.p[i++] - '0');
        }
        if (i == start) return false;
        if (x->content_length >= 0 && x->content_length != v) return false;
        x->content_length = v;
        while (i < value.len && (cw_is_ows((unsigned char)value.p[i]) || value.p[i] == ','))
            i++;
    }
    return !x->chunked;
}

/* Header lines arrive one per call, CRLF included, for every response of the transfer
 * (1xx, then the final one): keep only the last block. */
static size_t fetch_on_header(char *p, size_t size, size_t nitems, void *cls)
{
    struct cw_fetch_job *job = cls;
    struct fetch_xfer *x = job->internal;
    size_t n = size * nitems, len = n;
    struct cw_str name, value;

    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        job->headers.len = 0;
        job->header_count = 0;
        x->content_length = -1;
        x->chunked = false;
        job->status = fetch_parse_status(p, len);
        if (job->status < 100) goto out_bad;
        return n;
    }
    if (len == 0) return n;
    /* RFC 9112 §5.2: a proxy must reject or replace obs-fold; we reject. */
    if (cw_is_ows((unsigned char)p[0]) || !fetch_is_valid_field(p, len, &name, &value))
        goto out_bad;
    if (!fetch_framing_ok(x, name, value)) goto out_bad;
    if (job->header_count >= CW_LIMIT_HEADER_COUNT) goto out_bad;
    if (fetch_buf_append(&job->headers, p, len, CW_LIMIT_HEADERS_BYTES) < 0) goto out_bad;
    if (fetch_buf_append(&job->headers, "", 1, CW_LIMIT_HEADERS_BYTES) < 0) goto out_bad;
    job->header_count++;
    return n;
out_bad:
    x->fail_rc = -EBADMSG;
    snprintf(job->errbuf, sizeof(job->errbuf), "malformed, ambiguous or oversized response header");
    return 0;
}

static size_t fetch_on_body(char *p, size_t size, size_t nmemb, void *cls)
{
    struct cw_fetch_job *job = cls;
    struct fetch_xfer *x = job->internal;
    size_t n = size * nmemb;
    int rc = fetch_buf_append(&job->body, p, n, job->max_body);

    if (rc < 0) {
        x->fail_rc = rc;
        snprintf(job->errbuf, sizeof(job->errbuf), "%s",
                 rc == -EFBIG ? "response body over the limit" : "out of memory");
        return 0;
    }
    return n;
}

int cw_fetch_start(int max_host_conns, size_t max_pending, struct cw_fetch **out)
{
    struct cw_fetch *f;
    int rc;

    f = calloc(1, sizeof(*f));
    if (f == NULL) return -ENOMEM;
    f->queue = calloc(max_pending, sizeof(*f->queue));
    if (f->queue == NULL) {
        rc = -ENOMEM;
        goto out_free_f;
    }
    f->max_pending = max_pending;
    f->tasks_tail = &f->tasks;
    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        cw_err("fetch: curl_multi_init failed");
        rc = -ENOMEM;
        goto out_free_queue;
    }
    curl_multi_setopt(f->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_host_conns);
    curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)max_host_conns * 4);
    rc = pthread_mutex_init(&f->lock, NULL);
    if (rc != 0) {
        rc = -rc;
        goto out_cleanup_multi;
    }
    rc = pthread_create(&f->thread, NULL, fetch_thread_main, f);
    if (rc != 0) {
        cw_err("fetch: pthread_create: %s", strerror(rc));
        rc = -rc;
        goto out_destroy_lock;
    }
    f->thread_started = true;
    *out = f;
    return 0;

out_destroy_lock:
    pthread_mutex_destroy(&f->lock);
out_cleanup_multi:
    curl_multi_cleanup(f->multi);
out_free_queue:
    free(f->queue);
out_free_f:
    free(f);
    return rc;
}

int cw_fetch_submit(struct cw_fetch *f, struct cw_fetch_job *job)
{
    int rc = 0;

    pthread_mutex_lock(&f->lock);
    if (f->stopping) {
        rc = -ESHUTDOWN;
    } else if (f->active >= f->max_pending || f->q_len >= f->max_pending) {
        rc = -EAGAIN;
    } else {
        f->queue[(f->q_head + f->q_len) % f->max_pending] = job;
        f->q_len++;
        f->active++;
    }
    pthread_mutex_unlock(&f->lock);
    if (rc == 0) curl_multi_wakeup(f->multi);
    return rc;
}

int cw_fetch_defer(struct cw_fetch *f, struct cw_fetch_task *t)
{
    int rc = 0;

    pthread_mutex_lock(&f->lock);
    if (f->stopping) {
        rc = -ESHUTDOWN;
    } else if (f->task_count >= f->max_pending) {
        rc = -EAGAIN;
    } else {
        t->next = NULL;
        *f->tasks_tail = t;
        f->tasks_tail = &t->next;
        f->task_count++;
    }
    pthread_mutex_unlock(&f->lock);
    if (rc == 0) curl_multi_wakeup(f->multi);
    return rc;
}

/* Runs the queued tasks, oldest first (bounded by the queue's cap). Off the lock: a task
 * may block, and may submit jobs or tasks itself. */
static void fetch_run_tasks(struct cw_fetch *f, bool cancelled)
{
    struct cw_fetch_task *t;

    pthread_mutex_lock(&f->lock);
    t = f->tasks;
    f->tasks = NULL;
    f->tasks_tail = &f->tasks;
    f->task_count = 0;
    pthread_mutex_unlock(&f->lock);
    while (t != NULL) {
        struct cw_fetch_task *next = t->next;
        t->run(t, cancelled); /* t may be freed or queued again from here */
        t = next;
    }
}

/* A new easy handle per transfer: libcurl 7.88 keeps a stale header pointer in a reused
 * handle (curl#11101, fixed in 8.1.0) that a hostile origin's obs-fold line after a reuse
 * turns into a use-after-free. Connections live in the multi handle's cache, not in the
 * easy handle, so keep-alive does not depend on reuse. */
static CURL *fetch_easy_get(struct cw_fetch *f)
{
    (void)f;
    return curl_easy_init();
}

static void fetch_easy_put(struct cw_fetch *f, CURL *e)
{
    (void)f;
    curl_easy_cleanup(e);
}

/* Builds the request header list from "Name: value\r\n" lines. */
static int fetch_build_headers(const char *lines, struct curl_slist **out)
{
    struct curl_slist *list = NULL, *tmp;
    char line[CW_LIMIT_HEADER_NAME_BYTES + CW_LIMIT_HEADER_VALUE_BYTES + 4];

    /* curl would add "Expect: 100-continue" to bodies over 1 KiB; the origin is ours. */
    list = curl_slist_append(list, "Expect:");
    if (list == NULL) return -ENOMEM;
    while (lines != NULL && *lines != '\0') {
        const char *eol = strstr(lines, "\r\n");
        size_t n = eol ? (size_t)(eol - lines) : strlen(lines);
        if (n > 0 && n < sizeof(line)) {
            memcpy(line, lines, n);
            line[n] = '\0';
            tmp = curl_slist_append(list, line);
            if (tmp == NULL) {
                curl_slist_free_all(list);
                return -ENOMEM;
            }
            list = tmp;
        }
        lines = eol ? eol + 2 : lines + n;
    }
    *out = list;
    return 0;
}

static int fetch_xfer_begin(struct cw_fetch *f, struct cw_fetch_job *job)
{
    struct fetch_xfer *x = calloc(1, sizeof(*x));
    int rc;

    if (x == NULL) return -ENOMEM;
    x->content_length = -1;
    x->easy = fetch_easy_get(f);
    if (x->easy == NULL) {
        rc = -ENOMEM;
        goto out_free_x;
    }
    rc = fetch_build_headers(job->req_headers, &x->hdrs);
    if (rc < 0) goto out_put_easy;
    job->internal = x;
    x->job = job;
    job->request_time_ms = cw_clock_wall_ms();
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, job->url);
    /* The worker normalised the path once (RFC 3986 §5.2.4): libcurl must change nothing. */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, job);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)job->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)job->timeout_ms);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, job->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fetch_on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, job);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fetch_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, job);
    if (strcmp(job->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(job->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, job->method);
        if (job->req_body.len > 0 || strcmp(job->method, "POST") == 0 ||
            strcmp(job->method, "PUT") == 0 || strcmp(job->method, "PATCH") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->req_body.len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, job->req_body.len ? job->req_body.p : "");
        }
    }
    CURLMcode mc = curl_multi_add_handle(f->multi, e);
    if (mc != CURLM_OK) {
        cw_err("fetch: curl_multi_add_handle %s: %s", job->url, curl_multi_strerror(mc));
        rc = -EIO;
        goto out_free_hdrs;
    }
    x->next = f->running;
    if (f->running) f->running->prev = x;
    f->running = x;
    return 0;

out_free_hdrs:
    job->internal = NULL;
    curl_slist_free_all(x->hdrs);
out_put_easy:
    fetch_easy_put(f, x->easy);
out_free_x:
    free(x);
    return rc;
}

static int fetch_map_code(CURLcode code)
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
        return -EIO;
    }
}

/* Completes a job that ran: the done callback owns it from here. */
static void fetch_xfer_end(struct cw_fetch *f, struct cw_fetch_job *job, CURLcode code)
{
    struct fetch_xfer *x = job->internal;

    curl_multi_remove_handle(f->multi, x->easy);
    if (x->prev) x->prev->next = x->next;
    if (x->next) x->next->prev = x->prev;
    if (f->running == x) f->running = x->next;
    job->response_time_ms = cw_clock_wall_ms();
    job->rc = x->fail_rc ? x->fail_rc : fetch_map_code(code);
    if (job->rc == 0 && job->status < 100) job->rc = -EBADMSG;
    if (job->rc != 0 && job->errbuf[0] == '\0')
        snprintf(job->errbuf, sizeof(job->errbuf), "%s", curl_easy_strerror(code));
    curl_slist_free_all(x->hdrs);
    fetch_easy_put(f, x->easy);
    free(x);
    job->internal = NULL;
    pthread_mutex_lock(&f->lock);
    f->active--;
    pthread_mutex_unlock(&f->lock);
    job->done(job, job->cls);
}

static void fetch_fail_job(struct cw_fetch *f, struct cw_fetch_job *job, int rc, const char *why)
{
    job->rc = rc;
    snprintf(job->errbuf, sizeof(job->errbuf), "%s", why);
    pthread_mutex_lock(&f->lock);
    f->active--;
    pthread_mutex_unlock(&f->lock);
    job->done(job, job->cls);
}

/* Moves queued jobs into the multi handle. Bounded by the queue size. */
static bool fetch_take_queued(struct cw_fetch *f)
{
    struct cw_fetch_job *batch[64];
    size_t n = 0;
    bool stopping;

    pthread_mutex_lock(&f->lock);
    while (f->q_len > 0 && n < CW_ARRAY_LEN(batch)) {
        batch[n++] = f->queue[f->q_head];
        f->q_head = (f->q_head + 1) % f->max_pending;
        f->q_len--;
    }
    stopping = f->stopping;
    pthread_mutex_unlock(&f->lock);
    fetch_run_tasks(f, stopping);
    for (size_t i = 0; i < n; i++) {
        if (stopping) {
            fetch_fail_job(f, batch[i], -ECANCELED, "shutting down");
            continue;
        }
        int rc = fetch_xfer_begin(f, batch[i]);
        if (rc < 0) fetch_fail_job(f, batch[i], rc, "could not start the transfer");
    }
    return stopping;
}

static void fetch_reap_done(struct cw_fetch *f)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) continue;
        struct cw_fetch_job *job = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
        fetch_xfer_end(f, job, msg->data.result);
    }
}

static void *fetch_thread_main(void *arg)
{
    struct cw_fetch *f = arg;
    int running = 0;

    for (;;) {
        if (fetch_take_queued(f)) break;
        CURLMcode mc = curl_multi_perform(f->multi, &running);
        if (mc != CURLM_OK) cw_err("fetch: curl_multi_perform: %s", curl_multi_strerror(mc));
        fetch_reap_done(f);
        mc = curl_multi_poll(f->multi, NULL, 0, FETCH_POLL_MS, NULL);
        if (mc != CURLM_OK) cw_err("fetch: curl_multi_poll: %s", curl_multi_strerror(mc));
    }
    /* Stopping: cancel what still runs. */
    while (f->running != NULL) {
        struct fetch_xfer *x = f->running;
        x->fail_rc = -ECANCELED;
        snprintf(x->job->errbuf, sizeof(x->job->errbuf), "shutting down");
        fetch_xfer_end(f, x->job, CURLE_ABORTED_BY_CALLBACK);
    }
    return NULL;
}

void cw_fetch_cancel(struct cw_fetch *f)
{
    bool started;

    if (f == NULL) return;
    pthread_mutex_lock(&f->lock);
    f->stopping = true;
    started = f->thread_started;
    f->thread_started = false;
    pthread_mutex_unlock(&f->lock);
    if (started) {
        curl_multi_wakeup(f->multi);
        pthread_join(f->thread, NULL);
    }
    fetch_take_queued(f); /* jobs submitted after the thread's last look */
}

void cw_fetch_stop(struct cw_fetch *f)
{
    if (f == NULL) return;
    cw_fetch_cancel(f);
    curl_multi_cleanup(f->multi);
    pthread_mutex_destroy(&f->lock);
    free(f->queue);
    free(f);
}
