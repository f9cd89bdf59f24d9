/* workers/ctlclient.c - see workers/ctlclient.h. */
#include "workers/ctlclient.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/config.h"
#include "core/ctlmsg.h"
#include "core/limits.h"
#include "workers/clock.h"
#include "workers/config_file.h"

#define CTLCLIENT_TOKENS     8192 /* a status of CW_LIMIT_WORKERS children takes ~3,400 */
#define CTLCLIENT_TIMEOUT_MS 10000
/* A purge waits for the refresher, which may be purging 100,000 entries: longer than the
 * daemon's own bound (SUP_PURGE_TIMEOUT_MS, 120 s), so the daemon's answer always comes. */
#define CTLCLIENT_PURGE_TIMEOUT_MS 130000

struct ctlclient_reply {
    struct cw_ctlmsg_tok *tok;
    size_t n;
};

static int ctlclient_parse(struct cw_ctlclient *c, struct ctlclient_reply *r, const char *what);
static int ctlclient_run(const char *path, const char *req, int timeout_ms, const char *what,
                         bool json, struct cw_ctlclient *c, struct ctlclient_reply *r);
static void ctlclient_bytes(uint64_t n, char *out, size_t size);
static void ctlclient_duration(int64_t s, char *out, size_t size);

int cw_ctlclient_socket_path(const char *sock, const char *config, char *out, size_t size)
{
    struct cw_config cfg = {0};
    struct cw_err err = {{0}};
    const char *path = config != NULL ? config : CW_CTLCLIENT_DEFAULT_CONFIG;

    if (sock != NULL) {
        snprintf(out, size, "%s", sock);
        return CW_CTLCLIENT_OK;
    }
    if (cw_config_file_load(path, &cfg, &err) < 0) {
        if (config == NULL) { /* no readable default config: the default socket */
            snprintf(out, size, "%s", CW_CTLCLIENT_DEFAULT_SOCKET);
            return CW_CTLCLIENT_OK;
        }
        fprintf(stderr, "cwctl: %s\ncwctl: fix the file, or name the socket with -s SOCKET\n",
                err.msg);
        return CW_CTLCLIENT_USAGE;
    }
    snprintf(out, size, "%s", cfg.control_socket);
    cw_config_free(&cfg);
    return CW_CTLCLIENT_OK;
}

int cw_ctlclient_connect(const char *path, struct cw_ctlclient *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int e;

    *c = (struct cw_ctlclient){.fd = -1, .path = path};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "cwctl: %s: longer than a unix socket path may be\n", path);
        return CW_CTLCLIENT_UNREACHABLE;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd == -1) {
        fprintf(stderr, "cwctl: socket: %s\n", strerror(errno));
        return CW_CTLCLIENT_UNREACHABLE;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) return CW_CTLCLIENT_OK;
    e = errno;
    if (e == ENOENT || e == ECONNREFUSED) {
        fprintf(stderr,
                "cwctl: cannot reach cachewarpd at %s: %s\n"
                "cwctl: is it running? (systemctl status cachewarp); or name another socket "
                "with -s SOCKET or -c FILE\n",
                path, e == ENOENT ? "no such socket" : "nobody is listening");
    } else if (e == EACCES || e == EPERM) {
        fprintf(stderr,
                "cwctl: permission denied on %s\n"
                "cwctl: run as root or as a member of the socket's group (control.group)\n",
                path);
    } else {
        fprintf(stderr, "cwctl: cannot connect to %s: %s\n", path, strerror(e));
    }
    cw_ctlclient_close(c);
    return CW_CTLCLIENT_UNREACHABLE;
}

void cw_ctlclient_close(struct cw_ctlclient *c)
{
    if (c->fd != -1) close(c->fd);
    free(c->reply);
    c->fd = -1;
    c->reply = NULL;
    c->reply_len = 0;
}

int cw_ctlclient_call(struct cw_ctlclient *c, const char *req, int timeout_ms)
{
    size_t len = strlen(req), off = 0, got = 0;
    int64_t deadline = cw_clock_mono_ms() + timeout_ms;
    char *nl = NULL;

    if (c->reply == NULL) c->reply = malloc(CW_LIMIT_CTL_REPLY_BYTES + 1);
    if (c->reply == NULL) {
        fprintf(stderr, "cwctl: out of memory\n");
        return CW_CTLCLIENT_FAILED;
    }
    while (off < len + 1) {
        const char *p = off < len ? req + off : "\n";
        size_t n = off < len ? len - off : 1;
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w == -1 && errno == EINTR) continue;
        if (w == -1) {
            fprintf(stderr, "cwctl: %s: send: %s; the daemon may have stopped\n", c->path,
                    strerror(errno));
            return CW_CTLCLIENT_UNREACHABLE;
        }
        off += (size_t)w;
    }
    while (nl == NULL) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int64_t left = deadline - cw_clock_mono_ms();
        ssize_t r;
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            fprintf(stderr, "cwctl: %s: no answer within %d s; see the daemon's log\n", c->path,
                    timeout_ms / 1000);
            return CW_CTLCLIENT_UNREACHABLE;
        }
        if (got == CW_LIMIT_CTL_REPLY_BYTES) {
            fprintf(stderr, "cwctl: %s: reply longer than %d bytes\n", c->path,
                    CW_LIMIT_CTL_REPLY_BYTES);
            return CW_CTLCLIENT_UNREACHABLE;
        }
        r = recv(c->fd, c->reply + got, CW_LIMIT_CTL_REPLY_BYTES - got, 0);
        if (r == -1 && errno == EINTR) continue;
        if (r <= 0) {
            fprintf(stderr, "cwctl: %s: the daemon closed the connection%s%s\n", c->path,
                    r == 0 ? "" : ": ", r == 0 ? "" : strerror(errno));
            return CW_CTLCLIENT_UNREACHABLE;
        }
        nl = memchr(c->reply + got, '\n', (size_t)r);
        got += (size_t)r;
    }
    *nl = '\0';
    c->reply_len = (size_t)(nl - c->reply);
    return CW_CTLCLIENT_OK;
}

/* Parses c->reply; an "ok": false reply prints its error: CW_CTLCLIENT_OK or _FAILED. */
static int ctlclient_parse(struct cw_ctlclient *c, struct ctlclient_reply *r, const char *what)
{
    char msg[512];

    r->tok = malloc(CTLCLIENT_TOKENS * sizeof(*r->tok));
    if (r->tok == NULL ||
        cw_ctlmsg_parse(c->reply, c->reply_len, r->tok, CTLCLIENT_TOKENS, &r->n) < 0 ||
        r->tok[0].kind != CW_CTLMSG_OBJECT) {
        fprintf(stderr,
                "cwctl: %s: the daemon's reply is not a JSON object (is it the same "
                "version as cwctl?)\n",
                what);
        return CW_CTLCLIENT_FAILED;
    }
    if (!cw_ctlmsg_get_bool(c->reply, r->tok, 0, "ok", false)) {
        fprintf(stderr, "cwctl: %s: %s\n", what,
                cw_ctlmsg_get_str(c->reply, r->tok, 0, "error", msg, sizeof(msg),
                                  "refused without a reason"));
        return CW_CTLCLIENT_FAILED;
    }
    return CW_CTLCLIENT_OK;
}

/* Connects, sends req, parses the reply; with json prints the reply line as it is. On
 * CW_CTLCLIENT_OK the caller reads r and closes c; otherwise both are released here. */
static int ctlclient_run(const char *path, const char *req, int timeout_ms, const char *what,
                         bool json, struct cw_ctlclient *c, struct ctlclient_reply *r)
{
    int rc = cw_ctlclient_connect(path, c);

    *r = (struct ctlclient_reply){0};
    if (rc == CW_CTLCLIENT_OK) rc = cw_ctlclient_call(c, req, timeout_ms);
    if (rc == CW_CTLCLIENT_OK) {
        if (json) printf("%s\n", c->reply);
        rc = ctlclient_parse(c, r, what);
    }
    if (rc != CW_CTLCLIENT_OK) {
        free(r->tok);
        r->tok = NULL;
        cw_ctlclient_close(c);
    }
    return rc;
}

static void ctlclient_bytes(uint64_t n, char *out, size_t size)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;

    while (v >= 1024 && u + 1 < CW_ARRAY_LEN(unit)) {
        v /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void ctlclient_duration(int64_t s, char *out, size_t size)
{
    if (s >= 86400) {
        snprintf(out, size, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    } else if (s >= 3600) {
        snprintf(out, size, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    } else if (s >= 60) {
        snprintf(out, size, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    } else {
        snprintf(out, size, "%llds", (long long)s);
    }
}

int cw_ctlclient_status(const char *path, bool json)
{
    struct cw_ctlclient c;
    struct ctlclient_reply r;
    char a[256], b[256], up[32], used[32], size[32];
    const char *p;
    int rc = ctlclient_run(path, "{\"v\":1,\"cmd\":\"status\"}", CTLCLIENT_TIMEOUT_MS, "status",
                           json, &c, &r);

    if (rc != CW_CTLCLIENT_OK || json) goto out;
    p = c.reply;
    ctlclient_duration(cw_ctlmsg_get_int(p, r.tok, 0, "uptime_s", 0), up, sizeof(up));
    printf("cachewarpd %s, pid %lld, up %s, %s\n",
           cw_ctlmsg_get_str(p, r.tok, 0, "version", a, sizeof(a), "?"),
           (long long)cw_ctlmsg_get_int(p, r.tok, 0, "pid", 0), up,
           cw_ctlmsg_get_str(p, r.tok, 0, "state", b, sizeof(b), "?"));
    printf("config    %s\n", cw_ctlmsg_get_str(p, r.tok, 0, "config", a, sizeof(a), "?"));
    printf("listen    %s\n", cw_ctlmsg_get_str(p, r.tok, 0, "listen", a, sizeof(a), "?"));
    int l1 = cw_ctlmsg_find(p, r.tok, 0, "l1");
    if (l1 >= 0) {
        ctlclient_bytes((uint64_t)cw_ctlmsg_get_int(p, r.tok, (size_t)l1, "size_bytes", 0), size,
                        sizeof(size));
        if (cw_ctlmsg_find(p, r.tok, (size_t)l1, "error") >= 0) {
            printf("L1        %s, %s map; figures unavailable: %s\n",
                   cw_ctlmsg_get_str(p, r.tok, (size_t)l1, "path", a, sizeof(a), "?"), size,
                   cw_ctlmsg_get_str(p, r.tok, (size_t)l1, "error", b, sizeof(b), "?"));
        } else {
            ctlclient_bytes((uint64_t)cw_ctlmsg_get_int(p, r.tok, (size_t)l1, "used_bytes", 0),
                            used, sizeof(used));
            printf("L1        %s, %s used of %s, %lld entries\n",
                   cw_ctlmsg_get_str(p, r.tok, (size_t)l1, "path", a, sizeof(a), "?"), used, size,
                   (long long)cw_ctlmsg_get_int(p, r.tok, (size_t)l1, "entries", 0));
        }
    }
    int l2 = cw_ctlmsg_find(p, r.tok, 0, "l2");
    if (l2 >= 0 && !cw_ctlmsg_get_bool(p, r.tok, (size_t)l2, "configured", false)) {
        printf("L2        off (redis.enabled is false)\n");
    } else if (l2 >= 0) {
        printf("L2        %s (%s; %lld of the workers connected): %lld hits, %lld misses, "
               "%lld errors, %lld timeouts\n",
               cw_ctlmsg_get_str(p, r.tok, (size_t)l2, "state", a, sizeof(a), "?"),
               cw_ctlmsg_get_str(p, r.tok, (size_t)l2, "mode", b, sizeof(b), "?"),
               (long long)cw_ctlmsg_get_int(p, r.tok, (size_t)l2, "ready_workers", 0),
               (long long)cw_ctlmsg_get_int(p, r.tok, (size_t)l2, "hits", 0),
               (long long)cw_ctlmsg_get_int(p, r.tok, (size_t)l2, "misses", 0),
               (long long)cw_ctlmsg_get_int(p, r.tok, (size_t)l2, "errors", 0),
               (long long)cw_ctlmsg_get_int(p, r.tok, (size_t)l2, "timeouts", 0));
    }
    printf("%-10s %5s %8s  %-13s %8s  %s\n", "ROLE", "INDEX", "PID", "STATE", "RESTARTS", "UPTIME");
    int ch = cw_ctlmsg_find(p, r.tok, 0, "children");
    if (ch >= 0 && r.tok[ch].kind == CW_CTLMSG_ARRAY) {
        for (size_t i = (size_t)ch + 1; i < r.tok[ch].next; i = r.tok[i].next) {
            ctlclient_duration(cw_ctlmsg_get_int(p, r.tok, i, "uptime_s", 0), up, sizeof(up));
            printf("%-10s %5lld %8lld  %-13s %8lld  %s\n",
                   cw_ctlmsg_get_str(p, r.tok, i, "role", a, sizeof(a), "?"),
                   (long long)cw_ctlmsg_get_int(p, r.tok, i, "index", 0),
                   (long long)cw_ctlmsg_get_int(p, r.tok, i, "pid", 0),
                   cw_ctlmsg_get_str(p, r.tok, i, "state", b, sizeof(b), "?"),
                   (long long)cw_ctlmsg_get_int(p, r.tok, i, "restarts", 0),
                   cw_ctlmsg_get_int(p, r.tok, i, "pid", 0) ? up : "-");
        }
    }
    if (cw_ctlmsg_get_int(p, r.tok, 0, "retiring", 0) > 0)
        printf("(%lld children of the previous configuration are finishing)\n",
               (long long)cw_ctlmsg_get_int(p, r.tok, 0, "retiring", 0));
out:
    if (rc == CW_CTLCLIENT_OK) {
        free(r.tok);
        cw_ctlclient_close(&c);
    }
    return rc;
}

int cw_ctlclient_stats(const char *path, bool json)
{
    static const char *const results[] = {"hit",  "miss",  "stale",      "revalidated",
                                          "pass", "error", "stale_error"};
    struct cw_ctlclient c;
    struct ctlclient_reply r;
    char up[32];
    const char *p;
    int rc = ctlclient_run(path, "{\"v\":1,\"cmd\":\"stats\"}", CTLCLIENT_TIMEOUT_MS, "stats", json,
                           &c, &r);

    if (rc != CW_CTLCLIENT_OK || json) goto out;
    p = c.reply;
    ctlclient_duration(cw_ctlmsg_get_int(p, r.tok, 0, "uptime_s", 0), up, sizeof(up));
    printf("requests     %lld in %s\n", (long long)cw_ctlmsg_get_int(p, r.tok, 0, "requests", 0),
           up);
    int res = cw_ctlmsg_find(p, r.tok, 0, "results");
    printf("  by result ");
    for (size_t k = 0; k < CW_ARRAY_LEN(results); k++)
        printf(" %s %lld", results[k],
               res >= 0 ? (long long)cw_ctlmsg_get_int(p, r.tok, (size_t)res, results[k], 0) : 0);
    int hr = cw_ctlmsg_find(p, r.tok, 0, "hit_ratio");
    printf("\nhit ratio    %.1f %% (hit, stale, revalidated and stale_error over all requests)\n",
           hr >= 0 ? 100.0 * cw_ctlmsg_num(p, r.tok, (size_t)hr) : 0.0);
    printf("origin       %lld requests, %lld errors (connect, timeout, bad answer)\n",
           (long long)cw_ctlmsg_get_int(p, r.tok, 0, "origin_requests", 0),
           (long long)cw_ctlmsg_get_int(p, r.tok, 0, "origin_errors", 0));
    printf("evictions    %lld (expired %lld, clock %lld)\n",
           (long long)cw_ctlmsg_get_int(p, r.tok, 0, "evictions", 0),
           (long long)cw_ctlmsg_get_int(p, r.tok, 0, "evicted_expired", 0),
           (long long)cw_ctlmsg_get_int(p, r.tok, 0, "evicted_clock", 0));
    printf("coalesced    %lld\n", (long long)cw_ctlmsg_get_int(p, r.tok, 0, "coalesced", 0));
    printf("restarts     %lld\n", (long long)cw_ctlmsg_get_int(p, r.tok, 0, "restarts", 0));
out:
    if (rc == CW_CTLCLIENT_OK) {
        free(r.tok);
        cw_ctlclient_close(&c);
    }
    return rc;
}

int cw_ctlclient_reload(const char *path, bool json)
{
    struct cw_ctlclient c;
    struct ctlclient_reply r;
    char a[256];
    int rc = ctlclient_run(path, "{\"v\":1,\"cmd\":\"reload\"}", CTLCLIENT_TIMEOUT_MS, "reload",
                           json, &c, &r);

    if (rc == CW_CTLCLIENT_FAILED)
        fprintf(stderr, "cwctl: reload: the running configuration stays; fix the file and run "
                        "cwctl reload again\n");
    if (rc != CW_CTLCLIENT_OK) return rc;
    if (!json) {
        int i = cw_ctlmsg_find(c.reply, r.tok, 0, "restart_needed");
        printf("reloaded %s: %lld workers\n",
               cw_ctlmsg_get_str(c.reply, r.tok, 0, "config", a, sizeof(a), "?"),
               (long long)cw_ctlmsg_get_int(c.reply, r.tok, 0, "workers", 0));
        for (size_t j = (size_t)i + 1; i >= 0 && j < r.tok[i].next; j = r.tok[j].next) {
            char name[64];
            if (cw_ctlmsg_str(c.reply, r.tok, j, name, sizeof(name), NULL) < 0) continue;
            printf("%s changed: it takes effect at the next start; restart the daemon "
                   "(systemctl restart cachewarp) to apply it\n",
                   name);
        }
    }
    free(r.tok);
    cw_ctlclient_close(&c);
    return rc;
}

int cw_ctlclient_purge(const char *path, const char *what, const char *arg, bool soft, bool json)
{
    struct cw_ctlclient c;
    struct ctlclient_reply r;
    struct cw_str host, target;
    struct cw_ctlmsg_buf b;
    char *req;
    int rc;

    if (strcmp(what, "tag") != 0 && cw_ctlmsg_split_url(cw_str_cstr(arg), &host, &target) < 0) {
        fprintf(stderr,
                "cwctl: purge: invalid %s \"%s\"\n"
                "cwctl: give it as http://host[:port]/path as clients ask for it (no spaces, no "
                "#fragment, at most %d bytes)\n",
                strcmp(what, "url") == 0 ? "URL" : "prefix", arg, CW_LIMIT_URL_BYTES);
        return CW_CTLCLIENT_USAGE;
    }
    req = malloc(CW_LIMIT_CTL_LINE_BYTES);
    if (req == NULL) return CW_CTLCLIENT_FAILED;
    b = (struct cw_ctlmsg_buf){req, 0, CW_LIMIT_CTL_LINE_BYTES, false};
    cw_ctlmsg_put(&b, "{\"v\":1,\"cmd\":\"purge\",\"%s\":", what);
    cw_ctlmsg_put_str(&b, arg, strlen(arg));
    cw_ctlmsg_put(&b, ",\"soft\":%s}", soft ? "true" : "false");
    if (b.overflow) {
        fprintf(stderr, "cwctl: purge: %s too long\n", what);
        free(req);
        return CW_CTLCLIENT_USAGE;
    }
    rc = ctlclient_run(path, req, CTLCLIENT_PURGE_TIMEOUT_MS, "purge", json, &c, &r);
    free(req);
    if (rc != CW_CTLCLIENT_OK) return rc;
    if (!json) {
        int t = cw_ctlmsg_find(c.reply, r.tok, 0, "took_ms");
        long long n = (long long)cw_ctlmsg_get_int(c.reply, r.tok, 0, "purged", 0);
        printf("purged %lld entr%s%s in %.1f ms\n", n, n == 1 ? "y" : "ies",
               soft ? " (soft: marked stale)" : "",
               t >= 0 ? cw_ctlmsg_num(c.reply, r.tok, (size_t)t) : 0.0);
    }
    free(r.tok);
    cw_ctlclient_close(&c);
    return rc;
}

int cw_ctlclient_check(const char *config)
{
    struct cw_config cfg = {0};
    struct cw_err err = {{0}};
    const char *path = config != NULL ? config : CW_CTLCLIENT_DEFAULT_CONFIG;

    if (cw_config_file_load(path, &cfg, &err) < 0) {
        fprintf(stderr, "cwctl: %s\ncwctl: configuration %s is invalid\n", err.msg, path);
        return CW_CTLCLIENT_FAILED;
    }
    printf("cwctl: configuration %s is ok\n", path);
    cw_config_free(&cfg);
    return CW_CTLCLIENT_OK;
}
