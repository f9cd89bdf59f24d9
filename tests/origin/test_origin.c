/* tests/origin/test_origin.c - a scriptable HTTP origin for the integration tests and the bench.
 *
 * Usage: cw-test-origin -p PORT [-a 127.0.0.1]. PORT 0 picks an ephemeral port; once the
 * socket listens, line 1 of stdout is "port=N" (flushed), so a test learns where it is.
 * SIGTERM or SIGINT stops it: sleeping handlers are woken and every connection is closed.
 *
 * Each request's answer is set by its query string, on any path:
 *   delay_ms=N   sleep N ms before answering (woken early on shutdown)
 *   status=N     answer status (200..599)
 *   cc=V         Cache-Control: V          expires=V  Expires: V
 *   lm=V         Last-Modified: V (If-Modified-Since at or after it answers 304)
 *   etag=V       ETag: V (quoted when given bare); a matching If-None-Match answers 304
 *   vary=V       Vary: V                   sk=V       Surrogate-Key: V
 *   setcookie=V  Set-Cookie: V             hdr=N:V    extra header, may repeat
 *   size=N       body of N bytes of 'x' (a letter that follows the version with change_ms)
 *   change_ms=N  content version = floor(now_ms / N); ETag "v<version>" unless etag= is given
 * The same parameters may come in an X-Origin-Args request header ("cc=max-age%3D0&etag=e1"),
 * for tests whose route forwards only the keyed query parameters; the query wins over it.
 * The default body is {"path":"/x","n":<count for this path+query>,"v":<version>}; methods
 * other than GET and HEAD get {"method":"POST","path":"/x","received":<body bytes>}.
 *
 * Control endpoints (never counted, always Cache-Control: no-store):
 *   /__stats   JSON: total, paths (by path+query as received), methods, tags (by the
 *              X-Test-Tag request header), conditional (requests with If-None-Match or
 *              If-Modified-Since), last_headers (of the latest counted request), mode
 *   /__reset   zeroes every counter
 *   /__mode?m=normal|503|hang|close   503: every request answers 503; hang: waits 60 s (or
 *              until shutdown) before answering; close: drops the connection unanswered.
 *
 * Owns one libmicrohttpd daemon with a thread per connection (so a delayed answer never
 * blocks another request), its listen socket and the counters, under one mutex. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ORIGIN_BUCKETS        1024
#define ORIGIN_MAX_KEYS       65536 /* distinct keys per table; more are counted as dropped */
#define ORIGIN_MAX_BODY_BYTES (256u << 20)
#define ORIGIN_MAX_DELAY_MS   600000
#define ORIGIN_HANG_MS        60000
#define ORIGIN_MAX_CONNS      4000
#define ORIGIN_STACK_BYTES    (256u << 10)
#define ORIGIN_MAX_HEADERS    256

struct origin_count {
    struct origin_count *next;
    char *key;
    uint64_t n;
};

struct origin_table {
    struct origin_count *bucket[ORIGIN_BUCKETS];
    size_t nkeys;
    uint64_t dropped;
};

enum origin_mode {
    ORIGIN_MODE_NORMAL = 0,
    ORIGIN_MODE_503,
    ORIGIN_MODE_HANG,
    ORIGIN_MODE_CLOSE,
};

static const char *const origin_mode_names[] = {"normal", "503", "hang", "close"};

/* Everything the handlers share; passed to them through cls. */
struct origin_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; broadcast on stop, sleepers wait on it */
    bool is_stopping;
    enum origin_mode mode;
    uint64_t total;
    uint64_t conditional;
    struct origin_table paths;
    struct origin_table methods;
    struct origin_table tags;
    char *last_headers; /* a JSON object; owned */
};

/* Per-request state, created by the URI log callback, freed when the request completes. */
struct origin_req {
    char *uri;  /* the request target as received, path and query */
    char *args; /* X-Origin-Args, split and decoded in place into argument values */
    bool is_started;
    uint64_t body_bytes;
};

/* A growable NUL-terminated byte buffer; a failed append sets is_oom and stops growing. */
struct origin_buf {
    char *p;
    size_t len;
    size_t cap;
    bool is_oom;
};

struct origin_hdr_list {
    size_t n;
    const char *name[ORIGIN_MAX_HEADERS];
    const char *value[ORIGIN_MAX_HEADERS];
};

static void buf_reserve(struct origin_buf *b, size_t more);
static void buf_append(struct origin_buf *b, const char *p, size_t len);
static void buf_printf(struct origin_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void buf_json_str(struct origin_buf *b, const char *s);
static uint64_t origin_hash(const char *s);
static uint64_t origin_table_add(struct origin_table *t, const char *key);
static void origin_table_clear(struct origin_table *t);
static void origin_table_json(struct origin_buf *b, const struct origin_table *t);
static int64_t origin_now_ms(clockid_t clk);
static void origin_sleep(struct origin_ctx *ctx, int64_t ms);
static bool origin_parse_long(const char *s, long min, long max, long *out);
static enum MHD_Result origin_collect_hdr(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value);
static char *origin_headers_json(struct MHD_Connection *con);
static enum MHD_Result origin_reply(struct MHD_Connection *con, unsigned int status,
                                    struct origin_buf *body, const char *ctype);
static enum MHD_Result origin_control(struct origin_ctx *ctx, struct MHD_Connection *con,
                                      const char *url);
static bool origin_etag_matches(const char *inm, const char *etag);
static bool origin_not_modified_since(const char *ims, const char *lm);
static enum MHD_Result origin_add_extra(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value);
static enum MHD_Result origin_serve(struct origin_ctx *ctx, struct MHD_Connection *con,
                                    struct origin_req *req, const char *url, const char *method);
static enum MHD_Result origin_handle(void *cls, struct MHD_Connection *con, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls);
static void *origin_uri_log(void *cls, const char *uri, struct MHD_Connection *con);
static void origin_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                             enum MHD_RequestTerminationCode toe);
static int origin_listen(const char *addr, long port, int *out_fd, unsigned int *out_port);
static int origin_ctx_init(struct origin_ctx *ctx);
static void origin_usage(FILE *f);
static void origin_mhd_log(void *cls, const char *fmt, va_list ap);

static void buf_reserve(struct origin_buf *b, size_t more)
{
    if (b->is_oom) return;
    if (b->cap - b->len > more) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= more) {
        if (cap > SIZE_MAX / 2) {
            b->is_oom = true;
            return;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->is_oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void buf_append(struct origin_buf *b, const char *p, size_t len)
{
    buf_reserve(b, len);
    if (b->is_oom) return;
    memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static void buf_printf(struct origin_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->is_oom = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        buf_append(b, small, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n);
    if (b->is_oom) return;
    va_start(ap, fmt);
    (void)vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends s as a JSON string; control bytes are escaped, other bytes pass unchanged. */
static void buf_json_str(struct origin_buf *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\') {
            char esc[2] = {'\\', (char)*c};
            buf_append(b, esc, 2);
        } else if (*c < 0x20 || *c == 0x7f) {
            buf_printf(b, "\\u%04x", *c);
        } else {
            buf_append(b, (const char *)c, 1);
        }
    }
    buf_append(b, "\"", 1);
}

/* FNV-1a; the keys are test-chosen, so no secret is needed. */
static uint64_t origin_hash(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Counts one more for key and returns its new count (0 when the key could not be stored).
 * Caller holds ctx->mu. */
static uint64_t origin_table_add(struct origin_table *t, const char *key)
{
    size_t i = origin_hash(key) % ORIGIN_BUCKETS;
    for (struct origin_count *c = t->bucket[i]; c != NULL; c = c->next) {
        if (strcmp(c->key, key) == 0) return ++c->n;
    }
    if (t->nkeys >= ORIGIN_MAX_KEYS) {
        t->dropped++;
        return 0;
    }
    struct origin_count *c = calloc(1, sizeof(*c));
    char *k = strdup(key);
    if (c == NULL || k == NULL) {
        free(c);
        free(k);
        t->dropped++;
        return 0;
    }
    c->key = k;
    c->n = 1;
    c->next = t->bucket[i];
    t->bucket[i] = c;
    t->nkeys++;
    return 1;
}

static void origin_table_clear(struct origin_table *t)
{
    for (size_t i = 0; i < ORIGIN_BUCKETS; i++) {
        struct origin_count *c = t->bucket[i];
        while (c != NULL) {
            struct origin_count *next = c->next;
            free(c->key);
            free(c);
            c = next;
        }
        t->bucket[i] = NULL;
    }
    t->nkeys = 0;
    t->dropped = 0;
}

static void origin_table_json(struct origin_buf *b, const struct origin_table *t)
{
    bool is_first = true;
    buf_append(b, "{", 1);
    for (size_t i = 0; i < ORIGIN_BUCKETS; i++) {
        for (const struct origin_count *c = t->bucket[i]; c != NULL; c = c->next) {
            if (!is_first) buf_append(b, ",", 1);
            is_first = false;
            buf_json_str(b, c->key);
            buf_printf(b, ":%" PRIu64, c->n);
        }
    }
    buf_append(b, "}", 1);
}

static int64_t origin_now_ms(clockid_t clk)
{
    struct timespec ts;
    if (clock_gettime(clk, &ts) == -1) return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds, or less when the origin is stopping. */
static void origin_sleep(struct origin_ctx *ctx, int64_t ms)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) == -1) return;
    int64_t end_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + ms * 1000000;
    struct timespec deadline = {.tv_sec = end_ns / 1000000000, .tv_nsec = end_ns % 1000000000};
    pthread_mutex_lock(&ctx->mu);
    while (!ctx->is_stopping) {
        int rc = pthread_cond_timedwait(&ctx->cv, &ctx->mu, &deadline);
        if (rc == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&ctx->mu);
}

/* Parses a decimal integer in [min, max]: true and *out, or false. */
static bool origin_parse_long(const char *s, long min, long max, long *out)
{
    if (s == NULL || *s == '\0') return false;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) return false;
    *out = v;
    return true;
}

static enum MHD_Result origin_collect_hdr(void *cls, enum MHD_ValueKind kind, const char *key,
                                          const char *value)
{
    struct origin_hdr_list *l = cls;
    (void)kind;
    if (l->n >= ORIGIN_MAX_HEADERS) return MHD_NO;
    l->name[l->n] = key;
    l->value[l->n] = value ? value : "";
    l->n++;
    return MHD_YES;
}

/* Returns the request headers as a JSON object with lower-case names; repeated headers are
 * joined with ", ". Caller owns the result (free()); NULL when out of memory. */
static char *origin_headers_json(struct MHD_Connection *con)
{
    struct origin_hdr_list l = {0};
    struct origin_buf b = {0};
    if (MHD_get_connection_values(con, MHD_HEADER_KIND, origin_collect_hdr, &l) < 0) return NULL;
    buf_append(&b, "{", 1);
    for (size_t i = 0; i < l.n; i++) {
        bool is_dup = false;
        for (size_t j = 0; j < i && !is_dup; j++) {
            is_dup = strcasecmp(l.name[i], l.name[j]) == 0;
        }
        if (is_dup) continue;
        char lower[256];
        size_t k = 0;
        for (; l.name[i][k] != '\0' && k < sizeof(lower) - 1; k++) {
            lower[k] = (char)tolower((unsigned char)l.name[i][k]);
        }
        lower[k] = '\0';
        struct origin_buf v = {0};
        buf_append(&v, "", 0);
        for (size_t j = i; j < l.n; j++) {
            if (strcasecmp(l.name[i], l.name[j]) != 0) continue;
            if (v.len > 0) buf_append(&v, ", ", 2);
            buf_append(&v, l.value[j], strlen(l.value[j]));
        }
        if (b.len > 1) buf_append(&b, ",", 1);
        buf_json_str(&b, lower);
        buf_append(&b, ":", 1);
        buf_json_str(&b, v.is_oom || v.p == NULL ? "" : v.p);
        b.is_oom = b.is_oom || v.is_oom;
        free(v.p);
    }
    buf_append(&b, "}", 1);
    if (b.is_oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* Queues body (taken over, even on failure) as the answer. */
static enum MHD_Result origin_reply(struct MHD_Connection *con, unsigned int status,
                                    struct origin_buf *body, const char *ctype)
{
    if (body->is_oom) {
        free(body->p);
        return MHD_NO;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(body->len, body->p, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body->p);
        return MHD_NO;
    }
    if (ctype != NULL) (void)MHD_add_response_header(resp, "Content-Type", ctype);
    (void)MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(con, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result origin_control(struct origin_ctx *ctx, struct MHD_Connection *con,
                                      const char *url)
{
    struct origin_buf b = {0};
    if (strcmp(url, "/__stats") == 0) {
        pthread_mutex_lock(&ctx->mu);
        buf_printf(&b, "{\"total\":%" PRIu64 ",\"conditional\":%" PRIu64 ",\"mode\":\"%s\"",
                   ctx->total, ctx->conditional, origin_mode_names[ctx->mode]);
        buf_append(&b, ",\"paths\":", 9);
        origin_table_json(&b, &ctx->paths);
        buf_append(&b, ",\"methods\":", 11);
        origin_table_json(&b, &ctx->methods);
        buf_append(&b, ",\"tags\":", 8);
        origin_table_json(&b, &ctx->tags);
        buf_printf(&b, ",\"dropped\":%" PRIu64 ",\"last_headers\":%s}\n", ctx->paths.dropped,
                   ctx->last_headers ? ctx->last_headers : "{}");
        pthread_mutex_unlock(&ctx->mu);
        return origin_reply(con, MHD_HTTP_OK, &b, "application/json");
    }
    if (strcmp(url, "/__reset") == 0) {
        pthread_mutex_lock(&ctx->mu);
        ctx->total = 0;
        ctx->conditional = 0;
        origin_table_clear(&ctx->paths);
        origin_table_clear(&ctx->methods);
        origin_table_clear(&ctx->tags);
        free(ctx->last_headers);
        ctx->last_headers = NULL;
        pthread_mutex_unlock(&ctx->mu);
        buf_printf(&b, "{\"reset\":true}\n");
        return origin_reply(con, MHD_HTTP_OK, &b, "application/json");
    }
    /* /__mode */
    const char *m = MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, "m");
    for (size_t i = 0; m != NULL && i < sizeof(origin_mode_names) / sizeof(origin_mode_names[0]);
         i++) {
        if (strcmp(m, origin_mode_names[i]) != 0) continue;
        pthread_mutex_lock(&ctx->mu);
        ctx->mode = (enum origin_mode)i;
        pthread_mutex_unlock(&ctx->mu);
        buf_printf(&b, "{\"mode\":\"%s\"}\n", origin_mode_names[i]);
        return origin_reply(con, MHD_HTTP_OK, &b, "application/json");
    }
    buf_printf(&b, "{\"error\":\"m must be normal, 503, hang or close\"}\n");
    return origin_reply(con, MHD_HTTP_BAD_REQUEST, &b, "application/json");
}

/* True when the If-None-Match list names etag (weak comparison, RFC 9110 §13.1.2) or is "*". */
static bool origin_etag_matches(const char *inm, const char *etag)
{
    const char *e = strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag;
    size_t elen = strlen(e);
    const char *p = inm;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (*p == '\0') break;
        const char *start = p;
        while (*p != '\0' && *p != ',') {
            p++;
        }
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        if (end - start == 1 && *start == '*') return true;
        if (end - start >= 2 && strncmp(start, "W/", 2) == 0) start += 2;
        if ((size_t)(end - start) == elen && strncmp(start, e, elen) == 0) return true;
    }
    return false;
}

/* True when If-Modified-Since is at or after Last-Modified (both IMF-fixdate), or equal. */
static bool origin_not_modified_since(const char *ims, const char *lm)
{
    if (strcmp(ims, lm) == 0) return true;
    struct tm a = {0};
    struct tm b = {0};
    const char *fmt = "%a, %d %b %Y %H:%M:%S GMT";
    const char *ea = strptime(ims, fmt, &a);
    const char *eb = strptime(lm, fmt, &b);
    if (ea == NULL || eb == NULL || *ea != '\0' || *eb != '\0') return false;
    return timegm(&a) >= timegm(&b);
}

/* Adds each hdr=Name:Value query argument to the response in cls. */
static enum MHD_Result origin_add_extra(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    struct MHD_Response *resp = cls;
    (void)kind;
    if (strcmp(key, "hdr") != 0 || value == NULL) return MHD_YES;
    const char *colon = strchr(value, ':');
    if (colon == NULL || colon == value) return MHD_YES;
    char name[256];
    size_t n = (size_t)(colon - value);
    if (n >= sizeof(name)) return MHD_YES;
    memcpy(name, value, n);
    name[n] = '\0';
    const char *v = colon + 1;
    while (*v == ' ') {
        v++;
    }
    (void)MHD_add_response_header(resp, name, v);
    return MHD_YES;
}

/* Adds the pairs of an X-Origin-Args header as query arguments (after the real ones, so a
 * lookup finds the query's first). The strings live in req->args until the request ends. */
static void origin_header_args(struct MHD_Connection *con, struct origin_req *req)
{
    const char *xa = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Origin-Args");
    char *p, *save = NULL;

    if (xa == NULL || req->args != NULL) return;
    req->args = strdup(xa);
    if (req->args == NULL) return;
    for (p = strtok_r(req->args, "&", &save); p != NULL; p = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(p, '=');
        if (eq == NULL) continue;
        *eq = '\0';
        (void)MHD_http_unescape(p);
        (void)MHD_http_unescape(eq + 1);
        (void)MHD_set_connection_value(con, MHD_GET_ARGUMENT_KIND, p, eq + 1);
    }
}

static enum MHD_Result origin_serve(struct origin_ctx *ctx, struct MHD_Connection *con,
                                    struct origin_req *req, const char *url, const char *method)
{
#define ARG(name) MHD_lookup_connection_value(con, MHD_GET_ARGUMENT_KIND, (name))
    const char *inm = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "If-None-Match");
    const char *ims = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "If-Modified-Since");
    const char *tag = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "X-Test-Tag");
    char *hdrs = origin_headers_json(con);

    origin_header_args(con, req);
    pthread_mutex_lock(&ctx->mu);
    ctx->total++;
    uint64_t n = origin_table_add(&ctx->paths, req->uri);
    (void)origin_table_add(&ctx->methods, method);
    if (tag != NULL) (void)origin_table_add(&ctx->tags, tag);
    if (inm != NULL || ims != NULL) ctx->conditional++;
    free(ctx->last_headers);
    ctx->last_headers = hdrs;
    enum origin_mode mode = ctx->mode;
    pthread_mutex_unlock(&ctx->mu);

    if (mode == ORIGIN_MODE_CLOSE) return MHD_NO;
    if (mode == ORIGIN_MODE_HANG) origin_sleep(ctx, ORIGIN_HANG_MS);

    struct origin_buf b = {0};
    if (mode == ORIGIN_MODE_503) {
        buf_printf(&b, "{\"error\":\"origin in mode 503\"}\n");
        return origin_reply(con, MHD_HTTP_SERVICE_UNAVAILABLE, &b, "application/json");
    }

    long delay_ms = 0;
    if (origin_parse_long(ARG("delay_ms"), 0, ORIGIN_MAX_DELAY_MS, &delay_ms) && delay_ms > 0) {
        origin_sleep(ctx, delay_ms);
    }

    long status = 200;
    if (ARG("status") != NULL && !origin_parse_long(ARG("status"), 200, 599, &status)) {
        buf_printf(&b, "{\"error\":\"status must be 200..599\"}\n");
        return origin_reply(con, MHD_HTTP_BAD_REQUEST, &b, "application/json");
    }
    long change_ms = 0;
    int64_t version = 0;
    if (origin_parse_long(ARG("change_ms"), 1, LONG_MAX, &change_ms)) {
        version = origin_now_ms(CLOCK_REALTIME) / change_ms;
    }

    char etag[512] = "";
    const char *etag_arg = ARG("etag");
    if (etag_arg != NULL && *etag_arg != '\0') {
        bool is_quoted = etag_arg[0] == '"' || strncmp(etag_arg, "W/", 2) == 0;
        (void)snprintf(etag, sizeof(etag), is_quoted ? "%s" : "\"%s\"", etag_arg);
    } else if (change_ms > 0) {
        (void)snprintf(etag, sizeof(etag), "\"v%" PRId64 "\"", version);
    }
    const char *lm = ARG("lm");
    bool is_not_modified = false;
    if (inm != NULL) {
        is_not_modified = etag[0] != '\0' && origin_etag_matches(inm, etag);
    } else if (ims != NULL && lm != NULL) {
        is_not_modified = origin_not_modified_since(ims, lm);
    }
    bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (is_not_modified && is_get) status = MHD_HTTP_NOT_MODIFIED;

    long size = -1;
    const char *ctype = "application/json";
    if (status == MHD_HTTP_NOT_MODIFIED || status == MHD_HTTP_NO_CONTENT) {
        buf_append(&b, "", 0);
    } else if (origin_parse_long(ARG("size"), 0, ORIGIN_MAX_BODY_BYTES, &size)) {
        char fill = change_ms > 0 ? (char)('a' + version % 26) : 'x';
        buf_reserve(&b, (size_t)size);
        if (!b.is_oom) {
            memset(b.p, fill, (size_t)size);
            b.len = (size_t)size;
            b.p[b.len] = '\0';
        }
        ctype = "application/octet-stream";
    } else if (is_get) {
        buf_append(&b, "{\"path\":", 8);
        buf_json_str(&b, url);
        buf_printf(&b, ",\"n\":%" PRIu64 ",\"v\":%" PRId64 "}\n", n, version);
    } else {
        buf_printf(&b, "{\"method\":");
        buf_json_str(&b, method);
        buf_append(&b, ",\"path\":", 8);
        buf_json_str(&b, url);
        buf_printf(&b, ",\"received\":%" PRIu64 "}\n", req->body_bytes);
    }
    if (b.is_oom) {
        free(b.p);
        return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(b.p);
        return MHD_NO;
    }
    if (status != MHD_HTTP_NOT_MODIFIED && status != MHD_HTTP_NO_CONTENT) {
        (void)MHD_add_response_header(resp, "Content-Type", ctype);
    }
    static const char *const simple[][2] = {
        {"cc", "Cache-Control"}, {"expires", "Expires"},  {"lm", "Last-Modified"},
        {"vary", "Vary"},        {"sk", "Surrogate-Key"}, {"setcookie", "Set-Cookie"},
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        const char *v = ARG(simple[i][0]);
        if (v != NULL) (void)MHD_add_response_header(resp, simple[i][1], v);
    }
    if (etag[0] != '\0') (void)MHD_add_response_header(resp, "ETag", etag);
    (void)MHD_get_connection_values(con, MHD_GET_ARGUMENT_KIND, origin_add_extra, resp);
    enum MHD_Result rc = MHD_queue_response(con, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    return rc;
#undef ARG
}

/* The access handler. The first call only records state: libmicrohttpd 0.9.75 sends
 * "Connection: close" for a response queued on the first call, so answers go out on a later
 * call, after any request body has been read and discarded. */
static enum MHD_Result origin_handle(void *cls, struct MHD_Connection *con, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
    struct origin_ctx *ctx = cls;
    struct origin_req *req = *con_cls;
    (void)version;
    (void)upload_data;
    if (req == NULL) {
        /* The URI log callback ran out of memory: fall back to the path alone. */
        req = origin_uri_log(NULL, url, con);
        if (req == NULL) return MHD_NO;
        *con_cls = req;
    }
    if (!req->is_started) {
        req->is_started = true;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        req->body_bytes += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/__stats") == 0 || strcmp(url, "/__reset") == 0 ||
        strcmp(url, "/__mode") == 0) {
        return origin_control(ctx, con, url);
    }
    return origin_serve(ctx, con, req, url, method);
}

/* Called with the raw request target before it is split and unescaped; what it returns
 * becomes the request's *con_cls. Caller (libmicrohttpd) hands it to origin_completed. */
static void *origin_uri_log(void *cls, const char *uri, struct MHD_Connection *con)
{
    (void)cls;
    (void)con;
    struct origin_req *req = calloc(1, sizeof(*req));
    if (req == NULL) return NULL;
    req->uri = strdup(uri ? uri : "");
    if (req->uri == NULL) {
        free(req);
        return NULL;
    }
    return req;
}

static void origin_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)con;
    (void)toe;
    struct origin_req *req = *con_cls;
    if (req == NULL) return;
    free(req->uri);
    free(req->args);
    free(req);
    *con_cls = NULL;
}

/* Binds and listens on addr:port (IPv4 or IPv6 literal): 0, *out_fd and the bound port, or
 * -errno with the cause printed. */
static int origin_listen(const char *addr, long port, int *out_fd, unsigned int *out_port)
{
    struct sockaddr_storage ss = {0};
    socklen_t sslen;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
        family = AF_INET;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        sslen = sizeof(*v4);
    } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        family = AF_INET6;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        sslen = sizeof(*v6);
    } else {
        fprintf(stderr, "cw-test-origin: -a %s: not an IP address\n", addr);
        return -EINVAL;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        int e = errno;
        fprintf(stderr, "cw-test-origin: socket: %s\n", strerror(e));
        return -e;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
        bind(fd, (struct sockaddr *)&ss, sslen) == -1 || listen(fd, 1024) == -1 ||
        getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1) {
        int e = errno;
        fprintf(stderr, "cw-test-origin: listen on %s:%ld: %s\n", addr, port, strerror(e));
        close(fd);
        return -e;
    }
    *out_port = ntohs(family == AF_INET ? v4->sin_port : v6->sin6_port);
    *out_fd = fd;
    return 0;
}

static int origin_ctx_init(struct origin_ctx *ctx)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0) return -rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) rc = pthread_cond_init(&ctx->cv, &attr);
    (void)pthread_condattr_destroy(&attr);
    if (rc != 0) return -rc;
    rc = pthread_mutex_init(&ctx->mu, NULL);
    if (rc != 0) {
        (void)pthread_cond_destroy(&ctx->cv);
        return -rc;
    }
    return 0;
}

/* Prefixes libmicrohttpd's messages so that they are told apart from the daemon's in a log. */
static void origin_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[1024];
    if (vsnprintf(line, sizeof(line), fmt, ap) < 0) return;
    fprintf(stderr, "cw-test-origin: mhd: %s%s", line,
            line[0] != '\0' && line[strlen(line) - 1] == '\n' ? "" : "\n");
}

static void origin_usage(FILE *f)
{
    fprintf(f, "usage: cw-test-origin -p PORT [-a ADDR]\n"
               "  -p PORT  port to listen on; 0 picks a free one (printed as port=N)\n"
               "  -a ADDR  address to listen on (default 127.0.0.1)\n");
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1";
    long port = -1;
    int opt;
    while ((opt = getopt(argc, argv, "p:a:h")) != -1) {
        switch (opt) {
        case 'p':
            if (!origin_parse_long(optarg, 0, 65535, &port)) {
                fprintf(stderr, "cw-test-origin: -p %s: not a port\n", optarg);
                return 2;
            }
            break;
        case 'a':
            addr = optarg;
            break;
        case 'h':
            origin_usage(stdout);
            return 0;
        default:
            origin_usage(stderr);
            return 2;
        }
    }
    if (port < 0 || optind != argc) {
        origin_usage(stderr);
        return 2;
    }

    /* Block the stop signals before any thread starts, so that only sigwait() sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    int rc = pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if (rc != 0) {
        fprintf(stderr, "cw-test-origin: pthread_sigmask: %s\n", strerror(rc));
        return 1;
    }
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        fprintf(stderr, "cw-test-origin: signal(SIGPIPE): %s\n", strerror(errno));
        return 1;
    }

    static struct origin_ctx ctx; /* zeroed; lives until exit */
    rc = origin_ctx_init(&ctx);
    if (rc < 0) {
        fprintf(stderr, "cw-test-origin: init: %s\n", strerror(-rc));
        return 1;
    }
    int fd = -1;
    unsigned int bound_port = 0;
    if (origin_listen(addr, port, &fd, &bound_port) < 0) return 1;

    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, origin_handle, &ctx, MHD_OPTION_EXTERNAL_LOGGER, origin_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_URI_LOG_CALLBACK, origin_uri_log, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, origin_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)ORIGIN_MAX_CONNS, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)ORIGIN_STACK_BYTES, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "cw-test-origin: MHD_start_daemon failed\n");
        close(fd);
        return 1;
    }
    if (printf("port=%u\n", bound_port) < 0 || fflush(stdout) == EOF) {
        fprintf(stderr, "cw-test-origin: writing port to stdout: %s\n", strerror(errno));
        MHD_stop_daemon(d);
        return 1;
    }

    int sig = 0;
    rc = sigwait(&stop, &sig);
    if (rc != 0) fprintf(stderr, "cw-test-origin: sigwait: %s\n", strerror(rc));

    pthread_mutex_lock(&ctx.mu);
    ctx.is_stopping = true;
    pthread_cond_broadcast(&ctx.cv);
    pthread_mutex_unlock(&ctx.mu);
    MHD_stop_daemon(d); /* closes fd too */
    pthread_mutex_lock(&ctx.mu);
    origin_table_clear(&ctx.paths);
    origin_table_clear(&ctx.methods);
    origin_table_clear(&ctx.tags);
    free(ctx.last_headers);
    ctx.last_headers = NULL;
    pthread_mutex_unlock(&ctx.mu);
    return 0;
}
