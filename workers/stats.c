/* workers/stats.c - see workers/stats.h. */
#include "workers/stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/pool.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/child.h"
#include "workers/clock.h"
#include "workers/upstream_dns.h"

#define STATS_CONN_LIMIT      64
#define STATS_CONN_TIMEOUT    10     /* seconds */
#define STATS_LABEL_BYTES     320    /* host (255) + match, cut past that */
#define STATS_DNS_LABEL_BYTES 64     /* "https://[v6 address]:port" */
#define STATS_ERR_EVERY_MS    600000 /* a failing textfile is logged this often */

struct stats {
    const struct cw_config *cfg;
    struct cw_seg *seg;
    struct cw_store *store; /* NULL when L1 could not be opened: no L1 gauges */
    struct MHD_Daemon *mhd;
    pthread_mutex_t lock; /* one snapshot at a time: the MHD and textfile threads */
    char route_labels[CW_METRICS_ROUTES][STATS_LABEL_BYTES];
    size_t route_count;
    /* Servers found by DNS, "scheme://address:port", per origin and slot (under lock). */
    char dns_labels[CW_METRICS_ORIGINS][CW_LIMIT_ORIGIN_SERVERS][STATS_DNS_LABEL_BYTES];
    size_t origin_count;
    /* Textfile thread. */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t tlock;
    pthread_cond_t tcond;
    bool stopping;
    char *tmp_path;
    int64_t last_err_ms;
    bool failing;
};

static int stats_render(struct stats *st, struct cw_metrics_buf *out);
static bool stats_headers(struct MHD_Response *resp, unsigned status, const char *type);

/* Route labels: "<host><match>", or the match alone; unique (a repeat gets "#<index>"), and
 * the last bucket is "other" when more routes than buckets share it. */
static void stats_route_labels(struct stats *st)
{
    const struct cw_config *cfg = st->cfg;
    size_t n = cfg->route_count < CW_METRICS_ROUTES ? cfg->route_count : CW_METRICS_ROUTES;

    for (size_t i = 0; i < n; i++) {
        const struct cw_config_route *r = &cfg->routes[i];
        char *l = st->route_labels[i];
        snprintf(l, STATS_LABEL_BYTES, "%s%s", r->host ? r->host : "", r->match);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(st->route_labels[j], l) != 0) continue;
            char tail[16];
            size_t len = strlen(l);
            int tn = snprintf(tail, sizeof(tail), "#%zu", i);
            if (len + (size_t)tn >= STATS_LABEL_BYTES) len = STATS_LABEL_BYTES - (size_t)tn - 1;
            memcpy(l + len, tail, (size_t)tn + 1);
            break;
        }
    }
    if (cfg->route_count > CW_METRICS_ROUTES)
        snprintf(st->route_labels[CW_METRICS_ROUTES - 1], STATS_LABEL_BYTES, "other");
    st->route_count = n;
    st->origin_count =
        cfg->origin_count < CW_METRICS_ORIGINS ? cfg->origin_count : CW_METRICS_ORIGINS;
}

/* The servers of origin i's DNS table as p's servers (labelled by their address, the
 * configured scheme before it): true, or false when the table was being written. */
static bool stats_dns_servers(struct stats *st, size_t i, struct cw_metrics_pool *p, int64_t now)
{
    const struct cw_config_origin *o = &st->cfg->origins[i];
    struct cw_seg_origin *so = &st->seg->origins[i];
    struct cw_seg_dns_server t[CW_LIMIT_ORIGIN_SERVERS];
    uint32_t gen = atomic_load_explicit(&so->dns.gen, memory_order_acquire);
    size_t live = 0;

    if (!cw_seg_dns_read(&so->dns, gen, cw_upstream_dns_origin_id(o), t)) return false;
    for (size_t k = 0; k < CW_LIMIT_ORIGIN_SERVERS; k++)
        live += t[k].family != 0;
    p->server_count = 0;
    for (size_t k = 0; k < CW_LIMIT_ORIGIN_SERVERS; k++) {
        char a[INET6_ADDRSTRLEN] = "?";
        const char *base =
            t[k].cfg_server < o->server_count ? o->servers[t[k].cfg_server].base : "http://";
        int scheme = (int)(strstr(base, "://") ? strstr(base, "://") - base : 4);
        char *l = st->dns_labels[i][p->server_count];
        if (t[k].family == 0) continue;
        inet_ntop(t[k].family == 6 ? AF_INET6 : AF_INET, t[k].addr, a, sizeof(a));
        snprintf(l, STATS_DNS_LABEL_BYTES, t[k].family == 6 ? "%.*s://[%s]:%u" : "%.*s://%s:%u",
                 scheme, base, a, (unsigned)t[k].port);
        uint64_t h = atomic_load_explicit(&so->server_health[k], memory_order_relaxed);
        uint32_t pr = atomic_load_explicit(&so->server_probe[k], memory_order_relaxed);
        p->server_labels[p->server_count] = l;
        p->server_up[p->server_count] =
            (live == 1 || !cw_pool_health_is_down(h, now)) && !cw_pool_probe_is_down(pr);
        p->server_count++;
    }
    return true;
}

/* The origins' breakers and server health, as every process shares them in the segment. */
static void stats_pools(struct stats *st, struct cw_metrics_snapshot *s)
{
    int64_t now = cw_clock_mono_ms();

    for (size_t i = 0; i < st->origin_count && i < CW_LIMIT_ORIGINS; i++) {
        const struct cw_config_origin *o = &st->cfg->origins[i];
        struct cw_seg_origin *so = &st->seg->origins[i];
        struct cw_metrics_pool *p = &s->pools[i];
        uint64_t b = atomic_load_explicit(&so->breaker, memory_order_relaxed);

        p->breaker_state = (int)cw_pool_breaker_state(b);
        p->breaker_opens = atomic_load_explicit(&so->breaker_opens, memory_order_relaxed);
        p->fail_fast = atomic_load_explicit(&so->fail_fast, memory_order_relaxed);
        p->retries = atomic_load_explicit(&so->retries, memory_order_relaxed);
        p->dns_lookups = atomic_load_explicit(&so->dns.lookups, memory_order_relaxed);
        p->dns_failures = atomic_load_explicit(&so->dns.failures, memory_order_relaxed);
        p->dns_changes = atomic_load_explicit(&so->dns.changes, memory_order_relaxed);
        p->dns_servers = cw_seg_dns_count(&so->dns, cw_upstream_dns_origin_id(o));
        if (p->dns_servers > 0 && i < CW_METRICS_ORIGINS && stats_dns_servers(st, i, p, now))
            continue;
        p->server_count =
            o->server_count < CW_LIMIT_ORIGIN_SERVERS ? o->server_count : CW_LIMIT_ORIGIN_SERVERS;
        for (size_t k = 0; k < p->server_count; k++) {
            uint64_t h = atomic_load_explicit(&so->server_health[k], memory_order_relaxed);
            uint32_t a = atomic_load_explicit(&so->server_probe[k], memory_order_relaxed);
            p->server_labels[k] = o->servers[k].base;
            /* As the pools see it: a lone server is out only by its active checks. */
            p->server_up[k] = (p->server_count == 1 || !cw_pool_health_is_down(h, now)) &&
                              !cw_pool_probe_is_down(a);
        }
    }
}

/* The whole exposition into out: 0, or -ENOMEM. */
static int stats_render(struct stats *st, struct cw_metrics_buf *out)
{
    struct cw_metrics_snapshot *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL) return -ENOMEM;
    s->version = CW_VERSION;
    for (size_t i = 0; i < st->route_count; i++)
        s->route_labels[i] = st->route_labels[i];
    s->route_count = st->route_count;
    for (size_t i = 0; i < st->origin_count; i++)
        s->origin_labels[i] = st->cfg->origins[i].name;
    if (st->cfg->origin_count > CW_METRICS_ORIGINS)
        s->origin_labels[CW_METRICS_ORIGINS - 1] = "other";
    s->origin_count = st->origin_count;
    stats_pools(st, s);
    s->l1_size_bytes = st->cfg->cache_size_bytes;
    s->start_time_ms = (int64_t)atomic_load_explicit(&st->seg->started_at_ms, memory_order_relaxed);
    pthread_mutex_lock(&st->lock);
    cw_seg_collect(st->seg, &s->n);
    /* A failed stat (logged by the store) leaves the L1 gauges out of this exposition. */
    s->has_l1 =
        st->store != NULL && cw_store_stat(st->store, &s->l1_entries, &s->l1_used_bytes) == 0;
    pthread_mutex_unlock(&st->lock);
    rc = cw_metrics_format(s, out);
    free(s);
    return rc;
}

/* ---- HTTP ---- */

/* Adds the headers every stats answer carries (and Allow on a 405): true, or false with the
 * cause logged (rate-limited). With these literal values only lack of memory makes
 * libmicrohttpd refuse one; the caller then drops the answer and returns MHD_NO, so the
 * connection closes instead of carrying a response without them. */
static bool stats_headers(struct MHD_Response *resp, unsigned status, const char *type)
{
    if (MHD_add_response_header(resp, "Content-Type", type) == MHD_YES &&
        MHD_add_response_header(resp, "Cache-Control", "no-store") == MHD_YES &&
        (status != 405 || MHD_add_response_header(resp, "Allow", "GET, HEAD") == MHD_YES))
        return true;
    cw_warn_rl("stats: libmicrohttpd refused a header of a %u answer; closing the connection",
               status);
    return false;
}

static enum MHD_Result stats_answer(struct MHD_Connection *conn, unsigned status, const char *type,
                                    const char *text)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) return MHD_NO;
    if (!stats_headers(resp, status, type)) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result stats_metrics(struct stats *st, struct MHD_Connection *conn)
{
    struct cw_metrics_buf b = {0};
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (stats_render(st, &b) < 0) {
        cw_metrics_buf_free(&b);
        return stats_answer(conn, 503, "text/plain; charset=utf-8", "out of memory\n");
    }
    resp = MHD_create_response_from_buffer_with_free_callback(b.len, b.p, free);
    if (resp == NULL) {
        cw_metrics_buf_free(&b);
        return MHD_NO;
    }
    if (!stats_headers(resp, 200, CW_METRICS_CONTENT_TYPE)) {
        MHD_destroy_response(resp); /* frees b.p */
        return MHD_NO;
    }
    ret = MHD_queue_response(conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result stats_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                        const char *method, const char *version,
                                        const char *upload_data, size_t *upload_data_size,
                                        void **req_cls)
{
    static int first_seen;
    struct stats *st = cls;
    const char *text = "text/plain; charset=utf-8";

    (void)version;
    (void)upload_data;
    /* libmicrohttpd's idiom: queue on the second call, or keep-alive is lost. */
    if (*req_cls == NULL) {
        *req_cls = &first_seen;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0; /* a body is never wanted: drained, then 405 */
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return stats_answer(conn, 405, text, "method not allowed\n");
    if (strcmp(url, "/metrics") == 0) return stats_metrics(st, conn);
    if (strcmp(url, "/healthz") == 0) return stats_answer(conn, 200, text, "ok\n");
    if (strcmp(url, "/") == 0)
        return stats_answer(conn, 200, "text/html; charset=utf-8",
                            "<html><head><title>CacheWarp stats</title></head><body>"
                            "<h1>CacheWarp stats</h1><p><a href=\"/metrics\">Metrics</a></p>"
                            "</body></html>\n");
    return stats_answer(conn, 404, text, "not found: try /metrics or /healthz\n");
}

/* Serves HTTP on the listen socket the supervisor bound for stats.listen (it outlives a
 * reload, so /metrics never goes away): 0, or -errno with the cause logged. */
static int stats_http_start(struct stats *st, int listen_fd)
{
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;

    st->mhd = MHD_start_daemon(flags, 0, NULL, NULL, stats_on_request, st,
                               MHD_OPTION_EXTERNAL_LOGGER, cw_child_mhd_log, (void *)"stats",
                               MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT,
                               (unsigned)STATS_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
                               (unsigned)STATS_CONN_TIMEOUT, MHD_OPTION_END);
    if (st->mhd == NULL) {
        cw_err("stats: cannot serve on %s (fd %d)", st->cfg->stats_listen, listen_fd);
        return -EIO;
    }
    cw_info("stats: serving /metrics on %s", st->cfg->stats_listen);
    return 0;
}

/* ---- textfile ---- */

/* Writes n bytes to fd: 0 or -errno. */
static int stats_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w == -1) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync()s the directory that holds path, so that the rename survives a crash. */
static void stats_sync_dir(const char *path)
{
    char *copy = strdup(path);
    int fd;

    if (copy == NULL) return;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd != -1) {
        (void)fsync(fd); /* best effort: the text is rewritten every interval anyway */
        close(fd);
    }
    free(copy);
}

/* One atomic textfile update: "<path>.tmp" written, fsync()ed, renamed over path. 0, or
 * -errno with what failed in *what. */
static int stats_textfile_write(struct stats *st, const char **what)
{
    const char *path = st->cfg->stats_textfile;
    struct cw_metrics_buf b = {0};
    int fd, rc;

    *what = "render";
    rc = stats_render(st, &b);
    if (rc < 0) goto out_free_buf;
    *what = "open";
    fd = open(st->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        rc = -errno;
        goto out_free_buf;
    }
    *what = "write";
    rc = stats_write_all(fd, b.p, b.len);
    if (rc == 0 && fsync(fd) == -1) {
        *what = "fsync";
        rc = -errno;
    }
    if (close(fd) == -1 && rc == 0) {
        *what = "close";
        rc = -errno;
    }
    if (rc == 0 && rename(st->tmp_path, path) == -1) {
        *what = "rename";
        rc = -errno;
    }
    if (rc < 0) {
        unlink(st->tmp_path);
        goto out_free_buf;
    }
    stats_sync_dir(path);
out_free_buf:
    cw_metrics_buf_free(&b);
    return rc;
}

/* Logs a failing textfile once, then every STATS_ERR_EVERY_MS, and its recovery once. */
static void stats_textfile_tick(struct stats *st)
{
    const char *what = "";
    int rc = stats_textfile_write(st, &what);
    int64_t now = cw_clock_mono_ms();

    if (rc == 0) {
        if (st->failing) cw_notice("stats: textfile %s: written again", st->cfg->stats_textfile);
        st->failing = false;
        return;
    }
    if (!st->failing || now - st->last_err_ms >= STATS_ERR_EVERY_MS) {
        cw_warn("stats: textfile %s: %s %s: %s", st->cfg->stats_textfile, what, st->tmp_path,
                strerror(-rc));
        st->last_err_ms = now;
    }
    st->failing = true;
}

static void *stats_textfile_thread(void *arg)
{
    struct stats *st = arg;
    int64_t next = cw_clock_mono_ms();

    pthread_mutex_lock(&st->tlock);
    while (!st->stopping) {
        if (cw_clock_mono_ms() >= next) {
            pthread_mutex_unlock(&st->tlock);
            stats_textfile_tick(st);
            next = cw_clock_mono_ms() + st->cfg->stats_interval_ms;
            pthread_mutex_lock(&st->tlock);
            continue;
        }
        struct timespec ts = {(time_t)(next / 1000), (long)(next % 1000) * 1000000L};
        pthread_cond_timedwait(&st->tcond, &st->tlock, &ts);
    }
    pthread_mutex_unlock(&st->tlock);
    return NULL;
}

static int stats_textfile_start(struct stats *st)
{
    const char *path = st->cfg->stats_textfile;
    size_t len = strlen(path);
    pthread_condattr_t ca;
    int rc;

    if (len < 5 || strcmp(path + len - 5, ".prom") != 0)
        cw_warn("stats: textfile %s: node_exporter reads only files ending in .prom", path);
    st->tmp_path = malloc(len + 5);
    if (st->tmp_path == NULL) return -ENOMEM;
    memcpy(st->tmp_path, path, len);
    memcpy(st->tmp_path + len, ".tmp", 5);
    pthread_mutex_init(&st->tlock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->tcond, &ca);
    pthread_condattr_destroy(&ca);
    rc = pthread_create(&st->thread, NULL, stats_textfile_thread, st);
    if (rc != 0) {
        cw_err("stats: pthread_create: %s", strerror(rc));
        return -rc;
    }
    st->thread_started = true;
    cw_info("stats: writing %s every %lld ms", path, (long long)st->cfg->stats_interval_ms);
    return 0;
}

static void stats_textfile_stop(struct stats *st)
{
    if (!st->thread_started) return;
    pthread_mutex_lock(&st->tlock);
    st->stopping = true;
    pthread_cond_signal(&st->tcond);
    pthread_mutex_unlock(&st->tlock);
    pthread_join(st->thread, NULL);
    st->thread_started = false;
}

/* ---- process ---- */

static void stats_wait_signal(void)
{
    sigset_t set;
    int sig = 0;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    for (;;) {
        if (sigwait(&set, &sig) == 0 && (sig == SIGTERM || sig == SIGINT)) return;
        if (getppid() == 1) return;
    }
}

int cw_stats_run(const struct cw_child_ctx *ctx)
{
    const struct cw_config *cfg = ctx->cfg;
    struct stats st = {.cfg = cfg, .seg = ctx->seg};
    int listen_fd = ctx->listen_fd;
    int status = 0, rc;

    cw_child_setup("cw-stats", ctx->seg, ctx->slot);
    pthread_mutex_init(&st.lock, NULL);
    stats_route_labels(&st);
    /* Without L1 the counters are still worth serving: only the L1 gauges go. */
    if (cw_store_open(cfg->cache_path, cfg->cache_size_bytes, &st.store) < 0) {
        cw_warn("stats: L1 %s did not open; serving without the L1 gauges", cfg->cache_path);
        st.store = NULL;
    }
    if (listen_fd != -1 && stats_http_start(&st, listen_fd) < 0) {
        status = 1;
        goto out_stop;
    }
    if (cfg->stats_textfile != NULL) {
        rc = stats_textfile_start(&st);
        if (rc < 0) {
            status = 1;
            goto out_stop;
        }
    }
    stats_wait_signal();
out_stop:
    stats_textfile_stop(&st);
    /* Hand the listen socket back before stopping: MHD would otherwise shut it down, and it
     * is shared with the supervisor and the next stats process. */
    if (st.mhd) {
        (void)MHD_quiesce_daemon(st.mhd);
        MHD_stop_daemon(st.mhd);
    }
    cw_store_close(st.store);
    free(st.tmp_path);
    cw_info("stats: stopped");
    return status;
}
