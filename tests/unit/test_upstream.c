/* tests/unit/test_upstream.c - the upstream module: the request builders (forwarding rules,
 * URL), and the loop against a small HTTP/1.1 origin run in a thread on an ephemeral loopback
 * port: head, data and done order, pause and resume from another thread, a paused and
 * resumed streamed upload, the per-origin connection cap with keep-alive reuse, a cancelled
 * half-open probe that lets the next request probe, and the collect helper's cap at N and N+1.
 *
 * The origin sleeps in /slow (it plays a slow server); the tests themselves wait on condition
 * variables with a deadline, never on a timer (one sleeps 5 ms to be past a 1 ms cooldown,
 * a lower bound only). */
#include "workers/upstream.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"

Suite *upstream_suite(void);

#define T_DEADLINE_S 20
#define T_IN_BYTES   65536

/* ---- the test origin ---------------------------------------------------------------------- */

struct t_origin {
    int fd;
    int port;
    pthread_t thread;
    pthread_mutex_t lock;
    int cur, max; /* requests being answered now, and the most at once */
    int conns;    /* connections accepted */
    int requests;
};

struct t_conn {
    struct t_origin *o;
    int fd;
};

static char t_byte(size_t i)
{
    return (char)('a' + (i * 7 + i / 251) % 26);
}

static bool t_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads up to the end of the head into buf (NUL-terminated); the bytes read past it stay in
 * buf after the head, *extra of them. */
static bool t_read_head(int fd, char *buf, size_t cap, size_t *head_len, size_t *have)
{
    size_t len = *have;

    for (;;) {
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            *head_len = (size_t)(end - buf) + 4;
            *have = len;
            return true;
        }
        if (len + 1 >= cap) return false;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0) return false;
        len += (size_t)r;
    }
}

/* Next byte of the body: from what buf holds past the head, then from the socket. */
struct t_in {
    int fd;
    char *buf;
    size_t pos, len;
};

static int t_getc(struct t_in *in)
{
    if (in->pos == in->len) {
        ssize_t r = recv(in->fd, in->buf, T_IN_BYTES, 0);
        if (r <= 0) return -1;
        in->pos = 0;
        in->len = (size_t)r;
    }
    return (unsigned char)in->buf[in->pos++];
}

/* Reads a request body (Content-Length or chunked) and returns its length and byte sum. */
static bool t_read_body(struct t_in *in, const char *head, size_t *n, unsigned long *sum)
{
    const char *cl = strcasestr(head, "\r\nContent-Length:");
    int c;

    *n = 0;
    *sum = 0;
    if (cl != NULL) {
        size_t want = strtoul(cl + 17, NULL, 10);
        while (*n < want && (c = t_getc(in)) >= 0) {
            *sum += (unsigned long)c;
            (*n)++;
        }
        return *n == want;
    }
    if (strcasestr(head, "\r\nTransfer-Encoding: chunked") == NULL) return true;
    for (;;) {
        char line[32];
        size_t l = 0;
        while ((c = t_getc(in)) >= 0 && c != '\n')
            if (l < sizeof(line) - 1) line[l++] = (char)c;
        if (c < 0) return false;
        line[l] = '\0';
        size_t size = strtoul(line, NULL, 16);
        for (size_t i = 0; i < size; i++) {
            if ((c = t_getc(in)) < 0) return false;
            *sum += (unsigned long)c;
            (*n)++;
        }
        if (t_getc(in) < 0 || t_getc(in) < 0) return false; /* CRLF */
        if (size == 0) return true;
    }
}

/* /body?n=N: N pattern bytes. /slow?ms=M: "ok" after M ms, counted as concurrent. /upload:
 * "<length>:<byte sum>" of the request body. Keep-alive until the client closes. */
static void *t_conn_main(void *arg)
{
    struct t_conn *tc = arg;
    struct t_origin *o = tc->o;
    static __thread char buf[T_IN_BYTES], in_buf[T_IN_BYTES];
    char resp[256];
    size_t have = 0, head_len;

    while (t_read_head(tc->fd, buf, sizeof(buf), &head_len, &have)) {
        char path[256] = "";
        sscanf(buf, "%*s %255s", path);
        struct t_in in = {.fd = tc->fd, .buf = in_buf};
        size_t extra = have - head_len;
        memcpy(in_buf, buf + head_len, extra);
        in.len = extra;
        size_t body_n;
        unsigned long body_sum;
        if (!t_read_body(&in, buf, &body_n, &body_sum)) break;
        have = 0; /* the client sends one request at a time */
        pthread_mutex_lock(&o->lock);
        o->requests++;
        pthread_mutex_unlock(&o->lock);
        if (strncmp(path, "/body?n=", 8) == 0) {
            size_t n = strtoul(path + 8, NULL, 10);
            int h = snprintf(resp, sizeof(resp),
                             "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nX-T: 1\r\n\r\n", n);
            if (!t_write_all(tc->fd, resp, (size_t)h)) break;
            char chunk[8192];
            for (size_t off = 0; off < n;) {
                size_t k = n - off < sizeof(chunk) ? n - off : sizeof(chunk);
                for (size_t i = 0; i < k; i++)
                    chunk[i] = t_byte(off + i);
                if (!t_write_all(tc->fd, chunk, k)) goto out;
                off += k;
            }
        } else if (strncmp(path, "/slow?ms=", 9) == 0) {
            long ms = strtol(path + 9, NULL, 10);
            pthread_mutex_lock(&o->lock);
            if (++o->cur > o->max) o->max = o->cur;
            pthread_mutex_unlock(&o->lock);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&o->lock);
            o->cur--;
            pthread_mutex_unlock(&o->lock);
            const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if (!t_write_all(tc->fd, r, strlen(r))) break;
        } else if (strcmp(path, "/upload") == 0) {
            char body[64];
            int bl = snprintf(body, sizeof(body), "%zu:%lu", body_n, body_sum);
            int h = snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s",
                             bl, body);
            if (!t_write_all(tc->fd, resp, (size_t)h)) break;
        } else {
            const char *r = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
            if (!t_write_all(tc->fd, r, strlen(r))) break;
        }
    }
out:
    close(tc->fd);
    free(tc);
    return NULL;
}

static void *t_accept_main(void *arg)
{
    struct t_origin *o = arg;

    for (;;) {
        int fd = accept(o->fd, NULL, NULL);
        if (fd == -1) return NULL;
        struct t_conn *tc = malloc(sizeof(*tc));
        pthread_t t;
        if (tc == NULL) {
            close(fd);
            continue;
        }
        *tc = (struct t_conn){o, fd};
        pthread_mutex_lock(&o->lock);
        o->conns++;
        pthread_mutex_unlock(&o->lock);
        if (pthread_create(&t, NULL, t_conn_main, tc) != 0) {
            close(fd);
            free(tc);
            continue;
        }
        pthread_detach(t);
    }
}

/* Starts an origin; the test process ends with it (fork mode: one process per test). */
static void t_origin_start(struct t_origin *o)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);

    memset(o, 0, sizeof(*o));
    pthread_mutex_init(&o->lock, NULL);
    o->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(o->fd, 0);
    ck_assert_int_eq(bind(o->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(o->fd, 64), 0);
    ck_assert_int_eq(getsockname(o->fd, (struct sockaddr *)&sa, &len), 0);
    o->port = ntohs(sa.sin_port);
    ck_assert_int_eq(pthread_create(&o->thread, NULL, t_accept_main, o), 0);
}

/* ---- a loop over two origins, and a recording client --------------------------------------- */

struct t_env {
    struct t_origin origin[2];
    struct cw_config_origin co[2];
    char url[2][64];
    struct cw_config cfg;
    struct cw_upstream *up;
};

static void t_env_start(struct t_env *e, int cap0, int cap1)
{
    memset(e, 0, sizeof(*e));
    for (int i = 0; i < 2; i++) {
        t_origin_start(&e->origin[i]);
        snprintf(e->url[i], sizeof(e->url[i]), "http://127.0.0.1:%d", e->origin[i].port);
        e->co[i] =
            (struct cw_config_origin){.url = e->url[i], .max_conns = i ? cap1 : cap0, .queue = 64};
    }
    e->cfg.origins = e->co;
    e->cfg.origin_count = 2;
    ck_assert_int_eq(cw_upstream_start(&e->cfg, 64, NULL, false, &e->up), 0);
}

/* One transfer and what its callbacks saw. */
struct t_xfer {
    struct cw_upstream_xfer x;
    struct cw_upstream_req req;
    char url[128];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* Under lock. */
    int heads, dones, rc, order_errors;
    bool head_ok; /* the X-T field was there */
    size_t got;   /* body bytes taken */
    bool bad_bytes;
    char first[64];     /* the body's first bytes, NUL-terminated */
    size_t pause_every; /* pause after each this many bytes; 0: never */
    size_t next_pause;
    bool paused;       /* waiting for the test's resume */
    int pauses;        /* PAUSE answers */
    int data_in_pause; /* on_data called while paused and not resumed: a bug */
    /* Upload. */
    size_t up_len, up_sent;
    bool up_paused, up_pause_done;
};

static int t_on_head(struct cw_upstream_xfer *x, int status, const struct cw_upstream_fields *h)
{
    struct t_xfer *t = x->cls;
    struct cw_str name, value;
    size_t off = 0;
    bool xt = false;

    while (cw_upstream_fields_next(h, &off, &name, &value))
        if (cw_str_eq_ci(name, CW_STR_LIT("X-T")) && cw_str_eq(value, CW_STR_LIT("1"))) xt = true;
    pthread_mutex_lock(&t->lock);
    if (t->heads > 0 || t->dones > 0 || t->got > 0 || status != 200) t->order_errors++;
    t->heads++;
    t->head_ok = xt;
    pthread_mutex_unlock(&t->lock);
    return CW_UPSTREAM_GO;
}

static int t_on_data(struct cw_upstream_xfer *x, const char *p, size_t n)
{
    struct t_xfer *t = x->cls;
    int v = CW_UPSTREAM_GO;

    pthread_mutex_lock(&t->lock);
    if (t->heads != 1 || t->dones > 0) t->order_errors++;
    if (t->paused) {
        /* Asked again before the test resumed: only a stale resume may do that (the test
         * sends one extra). Still full: take nothing. */
        t->data_in_pause++;
        v = CW_UPSTREAM_PAUSE;
    } else if (t->pause_every > 0 && t->got >= t->next_pause) {
        /* Take nothing: the same bytes must come again after the resume. */
        t->next_pause += t->pause_every;
        t->paused = true;
        t->pauses++;
        pthread_cond_broadcast(&t->cond);
        v = CW_UPSTREAM_PAUSE;
    } else {
        for (size_t i = 0; i < n; i++) {
            if (p[i] != t_byte(t->got + i)) t->bad_bytes = true;
            if (t->got + i < sizeof(t->first) - 1) t->first[t->got + i] = p[i];
        }
        t->got += n;
    }
    pthread_mutex_unlock(&t->lock);
    return v;
}

/* Streams up_len pattern bytes, pausing once half way until the test resumes it. */
static ssize_t t_on_read(struct cw_upstream_xfer *x, char *buf, size_t cap)
{
    struct t_xfer *t = x->cls;
    size_t k;

    pthread_mutex_lock(&t->lock);
    if (!t->up_pause_done && t->up_sent >= t->up_len / 2) {
        t->up_pause_done = true;
        t->up_paused = true;
        pthread_cond_broadcast(&t->cond);
        pthread_mutex_unlock(&t->lock);
        return -EAGAIN;
    }
    if (t->up_paused) t->data_in_pause++;
    k = t->up_len - t->up_sent < cap ? t->up_len - t->up_sent : cap;
    if (k > 1000) k = 1000; /* small pieces, so the pause comes mid-body */
    for (size_t i = 0; i < k; i++)
        buf[i] = t_byte(t->up_sent + i);
    t->up_sent += k;
    pthread_mutex_unlock(&t->lock);
    return (ssize_t)k;
}

static void t_on_done(struct cw_upstream_xfer *x, int rc)
{
    struct t_xfer *t = x->cls;

    pthread_mutex_lock(&t->lock);
    t->dones++;
    t->rc = rc;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static const struct cw_upstream_ops t_ops = {
    .on_head = t_on_head, .on_data = t_on_data, .on_done = t_on_done};
static const struct cw_upstream_ops t_upload_ops = {
    .on_head = t_on_head, .on_data = t_on_data, .on_read = t_on_read, .on_done = t_on_done};

static void t_xfer_init(struct t_xfer *t, struct t_env *e, int origin, const char *method,
                        const char *path, const struct cw_upstream_ops *ops)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    snprintf(t->url, sizeof(t->url), "%s%s", e->url[origin], path);
    t->req = (struct cw_upstream_req){.origin = origin,
                                      .url = t->url,
                                      .method = method,
                                      .connect_timeout_ms = 5000,
                                      .timeout_ms = 15000,
                                      .body_len = -1};
    t->x = (struct cw_upstream_xfer){.req = &t->req, .ops = ops, .cls = t};
}

/* Waits (with a deadline) until pred holds, under t->lock. */
#define T_WAIT(t, pred)                                                                            \
    do {                                                                                           \
        struct timespec dl_;                                                                       \
        clock_gettime(CLOCK_REALTIME, &dl_);                                                       \
        dl_.tv_sec += T_DEADLINE_S;                                                                \
        pthread_mutex_lock(&(t)->lock);                                                            \
        while (!(pred) && pthread_cond_timedwait(&(t)->cond, &(t)->lock, &dl_) == 0) {             \
        }                                                                                          \
        bool ok_ = (pred);                                                                         \
        pthread_mutex_unlock(&(t)->lock);                                                          \
        ck_assert_msg(ok_, "timed out waiting for " #pred);                                        \
    } while (0)

/* ---- the builders -------------------------------------------------------------------------- */

static enum cw_upstream_fwd t_fwd(void *cls, struct cw_str name)
{
    (void)cls;
    if (cw_str_eq_ci(name, CW_STR_LIT("Host")) || cw_str_eq_ci(name, CW_STR_LIT("X-Forwarded-For")))
        return CW_UPSTREAM_FWD_OURS;
    if (cw_str_eq_ci(name, CW_STR_LIT("X-Secret"))) return CW_UPSTREAM_FWD_DROP;
    return CW_UPSTREAM_FWD_PASS;
}

static const char *t_ours(void *cls, const char *name)
{
    (void)cls;
    if (strcmp(name, "Host") == 0) return "h.example";
    if (strcmp(name, "X-Forwarded-For") == 0) return "10.0.0.9, 127.0.0.1";
    return NULL;
}

static const char *t_ours_fail(void *cls, const char *name)
{
    (void)cls;
    (void)name;
    return NULL;
}

static char *t_build(struct cw_upstream_head *h, const char *const *fields, size_t n,
                     const char *etag, const char *lm, int want_rc)
{
    char *out = NULL;

    for (size_t i = 0; i + 1 < n; i += 2)
        if (cw_upstream_head_add(h, cw_str_cstr(fields[i]), cw_str_cstr(fields[i + 1])) < 0) break;
    ck_assert_int_eq(cw_upstream_head_finish(h, cw_str_cstr(etag), cw_str_cstr(lm), &out), want_rc);
    return out;
}

/* A client's head: hop-by-hop, Connection-named, framing, dropped and (for a cache fetch)
 * precondition fields left out, Via extended in place, ours appended in their order. */
START_TEST(test_upstream_head_forwarding_rules)
{
    static const char *const f[] = {
        "Host",
        "client.example",
        "Connection",
        "keep-alive, X-Opt",
        "X-Foo",
        "1",
        "Keep-Alive",
        "timeout=5",
        "TE",
        "trailers",
        "Transfer-Encoding",
        "chunked",
        "Proxy-Authorization",
        "Basic eDp5",
        "Upgrade",
        "h2c",
        "Content-Length",
        "5",
        "Expect",
        "100-continue",
        "If-None-Match",
        "\"c\"",
        "Range",
        "bytes=0-1",
        "Via",
        "1.0 edge",
        "X-Opt",
        "gone",
        "X-Secret",
        "s",
        "X-Forwarded-For",
        "10.0.0.9",
        "Accept",
        "*/*",
    };
    struct cw_upstream_head h = {.fwd = t_fwd,
                                 .ours = t_ours,
                                 .connection = CW_STR_LIT("keep-alive, X-Opt"),
                                 .strip_preconditions = true};
    char *out = t_build(&h, f, CW_ARRAY_LEN(f), "", "", 0);

    ck_assert_str_eq(out, "X-Foo: 1\r\n"
                          "Via: 1.0 edge, 1.1 cachewarp\r\n"
                          "Accept: */*\r\n"
                          "Host: h.example\r\n"
                          "X-Forwarded-For: 10.0.0.9, 127.0.0.1\r\n");
    free(out);

    /* A pass (not a cache fetch) keeps the client's preconditions; no Via gets ours. */
    static const char *const g[] = {"If-None-Match", "\"c\"", "Range", "bytes=0-1"};
    h = (struct cw_upstream_head){.fwd = t_fwd, .ours = t_ours};
    out = t_build(&h, g, CW_ARRAY_LEN(g), "", "", 0);
    ck_assert_str_eq(out, "If-None-Match: \"c\"\r\n"
                          "Range: bytes=0-1\r\n"
                          "Host: h.example\r\n"
                          "X-Forwarded-For: 10.0.0.9, 127.0.0.1\r\n"
                          "Via: 1.1 cachewarp\r\n");
    free(out);

    /* An OURS value that cannot be made fails the build. */
    h = (struct cw_upstream_head){.fwd = t_fwd, .ours = t_ours_fail};
    out = t_build(&h, g, CW_ARRAY_LEN(g), "", "", -ENOMEM);
    ck_assert_ptr_null(out);
}
END_TEST

/* A refresh replays what the origin was sent: Host is the entry's, Via extended again, and the
 * stored copy's validators make it conditional (RFC 9111 §4.3.1). */
START_TEST(test_upstream_head_replay_validators)
{
    static const char *const f[] = {"Host", "old.example", "Accept-Language",
                                    "de",   "Via",         "1.0 edge"};
    static const char *const none[] = {"Accept", "*/*"};
    struct cw_upstream_head h = {.ours = t_ours};
    char *out = t_build(&h, f, CW_ARRAY_LEN(f), "\"v1\"", "Tue, 01 Jul 2025 10:00:00 GMT", 0);

    ck_assert_str_eq(out, "Accept-Language: de\r\n"
                          "Via: 1.0 edge, 1.1 cachewarp\r\n"
                          "Host: h.example\r\n"
                          "If-None-Match: \"v1\"\r\n"
                          "If-Modified-Since: Tue, 01 Jul 2025 10:00:00 GMT\r\n");
    free(out);
    h = (struct cw_upstream_head){.ours = t_ours};
    out = t_build(&h, none, CW_ARRAY_LEN(none), "", "Tue, 01 Jul 2025 10:00:00 GMT", 0);
    ck_assert_str_eq(out, "Accept: */*\r\n"
                          "Host: h.example\r\n"
                          "Via: 1.1 cachewarp\r\n"
                          "If-Modified-Since: Tue, 01 Jul 2025 10:00:00 GMT\r\n");
    free(out);
}
END_TEST

/* The URL: origin prefix, path, and the query whole (a pass) or as the route keys it. */
START_TEST(test_upstream_build_url)
{
    struct cw_config_origin o = {.url = "http://127.0.0.1:9/pre"};
    char *keep[] = {"b"};
    struct cw_config_route list = {
        .query = CW_CONFIG_QUERY_LIST, .query_keep = keep, .query_keep_count = 1};
    struct cw_config_route ignore = {.query = CW_CONFIG_QUERY_IGNORE};
    char *url = NULL;

    ck_assert_int_eq(cw_upstream_build_url(&o, &list, CW_STR_LIT("/a/b?a=1&b=2"), true, &url), 0);
    ck_assert_str_eq(url, "http://127.0.0.1:9/pre/a/b?a=1&b=2");
    free(url);
    ck_assert_int_eq(cw_upstream_build_url(&o, &list, CW_STR_LIT("/a/b?a=1&b=2"), false, &url), 0);
    ck_assert_str_eq(url, "http://127.0.0.1:9/pre/a/b?b=2");
    free(url);
    ck_assert_int_eq(cw_upstream_build_url(&o, &ignore, CW_STR_LIT("/a?a=1"), false, &url), 0);
    ck_assert_str_eq(url, "http://127.0.0.1:9/pre/a");
    free(url);
    ck_assert_int_eq(cw_upstream_build_url(&o, &ignore, CW_STR_LIT("/x?"), true, &url), 0);
    ck_assert_str_eq(url, "http://127.0.0.1:9/pre/x");
    free(url);
}
END_TEST

/* ---- the loop ------------------------------------------------------------------------------ */

/* on_head once, before any data; every byte in order; on_done last, once. */
START_TEST(test_upstream_head_data_done_order)
{
    static struct t_env e;
    static struct t_xfer t;

    t_env_start(&e, 4, 4);
    t_xfer_init(&t, &e, 0, "GET", "/body?n=300000", &t_ops);
    ck_assert_int_eq(cw_upstream_submit(e.up, &t.x), 0);
    T_WAIT(&t, t.dones == 1);
    ck_assert_int_eq(t.rc, 0);
    ck_assert_int_eq(t.x.status, 200);
    ck_assert_int_eq(t.heads, 1);
    ck_assert(t.head_ok);
    ck_assert_int_eq(t.order_errors, 0);
    ck_assert_uint_eq(t.got, 300000);
    ck_assert(!t.bad_bytes);
    ck_assert_int_ge(t.x.response_time_ms, t.x.request_time_ms);
    cw_upstream_stop(e.up);
    ck_assert_int_eq(t.dones, 1);
}
END_TEST

/* on_data answers PAUSE every 64 KiB; the test thread resumes each time. Nothing arrives while
 * paused (but for the one ask a stale extra resume may cause), the paused bytes come again,
 * and the body is whole. */
START_TEST(test_upstream_pause_resume_other_thread)
{
    static struct t_env e;
    static struct t_xfer t;
    int resumed = 0;

    t_env_start(&e, 4, 4);
    t_xfer_init(&t, &e, 1, "GET", "/body?n=1000000", &t_ops);
    t.pause_every = 65536;
    t.next_pause = 1; /* the first pause on the first bytes */
    ck_assert_int_eq(cw_upstream_submit(e.up, &t.x), 0);
    for (;;) {
        T_WAIT(&t, t.paused || t.dones == 1);
        pthread_mutex_lock(&t.lock);
        bool done = t.dones == 1 && !t.paused;
        t.paused = false;
        pthread_mutex_unlock(&t.lock);
        if (done) break;
        resumed++;
        cw_upstream_resume(&t.x);
        /* Once, a second resume: it may land on the next pause and ask on_data once more. */
        if (resumed == 1) cw_upstream_resume(&t.x);
    }
    ck_assert_int_eq(t.rc, 0);
    ck_assert_int_le(t.data_in_pause, 1);
    ck_assert_int_eq(t.order_errors, 0);
    ck_assert_int_ge(t.pauses, 10);
    ck_assert_int_eq(resumed, t.pauses);
    ck_assert_uint_eq(t.got, 1000000);
    ck_assert(!t.bad_bytes);
    cw_upstream_resume(&t.x); /* after the end: nothing */
    cw_upstream_stop(e.up);
}
END_TEST

/* A streamed request body of unknown length (chunked), paused half way by on_read and resumed
 * from the test thread, arrives whole. */
START_TEST(test_upstream_upload_pause_resume)
{
    static struct t_env e;
    static struct t_xfer t;
    char want[64];

    t_env_start(&e, 4, 4);
    t_xfer_init(&t, &e, 0, "PUT", "/upload", &t_upload_ops);
    t.up_len = 200000;
    ck_assert_int_eq(cw_upstream_submit(e.up, &t.x), 0);
    T_WAIT(&t, t.up_paused);
    pthread_mutex_lock(&t.lock);
    t.up_paused = false;
    pthread_mutex_unlock(&t.lock);
    cw_upstream_resume(&t.x);
    T_WAIT(&t, t.dones == 1);
    ck_assert_int_eq(t.rc, 0);
    ck_assert_int_eq(t.x.status, 200);
    ck_assert_int_eq(t.data_in_pause, 0);
    unsigned long sum = 0;
    for (size_t i = 0; i < t.up_len; i++)
        sum += (unsigned char)t_byte(i);
    snprintf(want, sizeof(want), "%zu:%lu", t.up_len, sum);
    ck_assert_str_eq(t.first, want); /* the origin's count and byte sum of what it read */
    cw_upstream_stop(e.up);
}
END_TEST

/* Origin 0 is capped at 2 connections, origin 1 at 3: 8 slow requests to each never run more
 * than that at once at either origin, all complete, and connections are reused. */
START_TEST(test_upstream_per_origin_cap)
{
    static struct t_env e;
    static struct t_xfer t[16];

    t_env_start(&e, 2, 3);
    for (int i = 0; i < 16; i++) {
        t_xfer_init(&t[i], &e, i % 2, "GET", "/slow?ms=60", &t_ops);
        ck_assert_int_eq(cw_upstream_submit(e.up, &t[i].x), 0);
    }
    for (int i = 0; i < 16; i++) {
        T_WAIT(&t[i], t[i].dones == 1);
        ck_assert_int_eq(t[i].rc, 0);
        ck_assert_int_eq(t[i].x.status, 200);
    }
    ck_assert_int_eq(e.origin[0].requests, 8);
    ck_assert_int_eq(e.origin[1].requests, 8);
    ck_assert_int_eq(e.origin[0].max, 2);
    ck_assert_int_eq(e.origin[1].max, 3);
    ck_assert_int_le(e.origin[0].conns, 2);
    ck_assert_int_le(e.origin[1].conns, 3);
    cw_upstream_stop(e.up);
}
END_TEST

/* Origin 0 is capped at 1 connection and a queue of 1: of 3 slow requests, one runs, one
 * waits and the third ends at once with -EAGAIN, before the first completes. */
START_TEST(test_upstream_queue_full_fails_fast)
{
    static struct t_env e;
    static struct t_xfer t[3];

    t_env_start(&e, 1, 1);
    cw_upstream_stop(e.up);
    e.co[0].queue = 1;
    ck_assert_int_eq(cw_upstream_start(&e.cfg, 64, NULL, false, &e.up), 0);
    for (int i = 0; i < 3; i++) {
        t_xfer_init(&t[i], &e, 0, "GET", "/slow?ms=300", &t_ops);
        ck_assert_int_eq(cw_upstream_submit(e.up, &t[i].x), 0);
    }
    T_WAIT(&t[2], t[2].dones == 1);
    ck_assert_int_eq(t[2].rc, -EAGAIN);
    ck_assert(t[2].x.logged);
    pthread_mutex_lock(&t[0].lock);
    ck_assert_int_eq(t[0].dones, 0);
    pthread_mutex_unlock(&t[0].lock);
    for (int i = 0; i < 2; i++) {
        T_WAIT(&t[i], t[i].dones == 1);
        ck_assert_int_eq(t[i].rc, 0);
        ck_assert_int_eq(t[i].x.status, 200);
    }
    ck_assert_int_eq(e.origin[0].requests, 2);
    cw_upstream_stop(e.up);
}
END_TEST

/* Origin 0's breaker opens on one timeout (cooldown 1 ms). The half-open probe is cancelled
 * by its consumer before any answer: the next request must go as the probe at once (and its
 * success close the breaker), not be refused until the lost probe's probe_ms (11 s here). */
START_TEST(test_upstream_cancelled_probe_released)
{
    static struct t_env e;
    static struct t_xfer t[4];
    struct timespec ms5 = {0, 5000000L};

    t_env_start(&e, 2, 1);
    cw_upstream_stop(e.up);
    e.co[0].breaker_failures = 1;
    e.co[0].breaker_window_ms = 60000;
    e.co[0].breaker_cooldown_ms = 1;
    ck_assert_int_eq(cw_upstream_start(&e.cfg, 64, NULL, false, &e.up), 0);
    t_xfer_init(&t[0], &e, 0, "GET", "/slow?ms=1000", &t_ops);
    t[0].req.timeout_ms = 50; /* no head within 50 ms: a failure, and the breaker opens */
    ck_assert_int_eq(cw_upstream_submit(e.up, &t[0].x), 0);
    T_WAIT(&t[0], t[0].dones == 1);
    ck_assert_int_eq(t[0].rc, -ETIMEDOUT);
    nanosleep(&ms5, NULL); /* past the cooldown: the next request is the probe */
    t_xfer_init(&t[1], &e, 0, "GET", "/slow?ms=5000", &t_ops);
    ck_assert_int_eq(cw_upstream_submit(e.up, &t[1].x), 0);
    cw_upstream_abort(&t[1].x);
    T_WAIT(&t[1], t[1].dones == 1);
    ck_assert_int_eq(t[1].rc, -ECANCELED);
    /* The lost probe was released: this one goes as the probe, and closes the breaker. */
    t_xfer_init(&t[2], &e, 0, "GET", "/slow?ms=1", &t_ops);
    ck_assert_int_eq(cw_upstream_submit(e.up, &t[2].x), 0);
    T_WAIT(&t[2], t[2].dones == 1);
    ck_assert_int_eq(t[2].rc, 0);
    ck_assert_int_eq(t[2].x.status, 200);
    t_xfer_init(&t[3], &e, 0, "GET", "/slow?ms=1", &t_ops);
    ck_assert_int_eq(cw_upstream_submit(e.up, &t[3].x), 0);
    T_WAIT(&t[3], t[3].dones == 1);
    ck_assert_int_eq(t[3].rc, 0);
    cw_upstream_stop(e.up);
}
END_TEST

struct t_collect {
    struct cw_upstream_collect c;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
};

static void t_collect_done(struct cw_upstream_collect *c, void *cls)
{
    struct t_collect *tc = cls;

    (void)c;
    pthread_mutex_lock(&tc->lock);
    tc->done = true;
    pthread_cond_broadcast(&tc->cond);
    pthread_mutex_unlock(&tc->lock);
}

static void t_collect_run(struct t_env *e, struct t_collect *tc, const char *url, size_t max)
{
    memset(tc, 0, sizeof(*tc));
    pthread_mutex_init(&tc->lock, NULL);
    pthread_cond_init(&tc->cond, NULL);
    tc->c.req = (struct cw_upstream_req){
        .origin = 0, .url = url, .method = "GET", .connect_timeout_ms = 5000, .timeout_ms = 15000};
    tc->c.max_body = max;
    tc->c.done = t_collect_done;
    tc->c.cls = tc;
    ck_assert_int_eq(cw_upstream_collect(e->up, &tc->c), 0);
    T_WAIT(tc, tc->done);
}

/* The whole body up to max_body; one byte more ends the transfer with -EFBIG. */
START_TEST(test_upstream_collect_cap)
{
    static struct t_env e;
    static struct t_collect tc;
    char url[128];
    struct cw_str name, value;
    size_t off = 0;
    bool xt = false;

    t_env_start(&e, 2, 2);
    snprintf(url, sizeof(url), "%s/body?n=1000", e.url[0]);
    t_collect_run(&e, &tc, url, 1000);
    ck_assert_int_eq(tc.c.rc, 0);
    ck_assert_int_eq(tc.c.status, 200);
    ck_assert_uint_eq(tc.c.body.len, 1000);
    for (size_t i = 0; i < 1000; i++)
        ck_assert_int_eq(tc.c.body.p[i], t_byte(i));
    while (cw_upstream_collect_header_next(&tc.c, &off, &name, &value))
        if (cw_str_eq_ci(name, CW_STR_LIT("X-T"))) xt = true;
    ck_assert(xt);
    cw_upstream_collect_reset(&tc.c);
    snprintf(url, sizeof(url), "%s/body?n=1001", e.url[0]);
    t_collect_run(&e, &tc, url, 1000);
    ck_assert_int_eq(tc.c.rc, -EFBIG);
    cw_upstream_collect_reset(&tc.c);
    cw_upstream_stop(e.up);
}
END_TEST

/* A transfer to an origin the config does not have is refused; after stop, -ESHUTDOWN. */
START_TEST(test_upstream_submit_refusals)
{
    static struct t_env e;
    static struct t_xfer t;

    t_env_start(&e, 1, 1);
    t_xfer_init(&t, &e, 0, "GET", "/slow?ms=1", &t_ops);
    t.req.origin = 2;
    ck_assert_int_eq(cw_upstream_submit(e.up, &t.x), -EINVAL);
    t.req.origin = 0;
    cw_upstream_cancel(e.up);
    ck_assert_int_eq(cw_upstream_submit(e.up, &t.x), -ESHUTDOWN);
    cw_upstream_stop(e.up);
    ck_assert_int_eq(t.dones, 0);
}
END_TEST

Suite *upstream_suite(void)
{
    Suite *s = suite_create("upstream");
    TCase *tc = tcase_create("upstream");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_upstream_head_forwarding_rules);
    tcase_add_test(tc, test_upstream_head_replay_validators);
    tcase_add_test(tc, test_upstream_build_url);
    tcase_add_test(tc, test_upstream_head_data_done_order);
    tcase_add_test(tc, test_upstream_pause_resume_other_thread);
    tcase_add_test(tc, test_upstream_upload_pause_resume);
    tcase_add_test(tc, test_upstream_per_origin_cap);
    tcase_add_test(tc, test_upstream_queue_full_fails_fast);
    tcase_add_test(tc, test_upstream_cancelled_probe_released);
    tcase_add_test(tc, test_upstream_collect_cap);
    tcase_add_test(tc, test_upstream_submit_refusals);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(upstream_suite)
