/* workers/ctltop.c - see workers/ctltop.h. */
#include "workers/ctltop.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "core/ctlmsg.h"
#include "core/metrics_types.h"
#include "workers/clock.h"
#include "workers/ctlclient.h"

#define CTLTOP_TOKENS     2048
#define CTLTOP_ORIGINS    3 /* rows that fit 24 lines */
#define CTLTOP_ROUTES     3
#define CTLTOP_URLS       4
#define CTLTOP_NAME_BYTES 48

static const char *const ctltop_results[CW_METRICS_RESULT_COUNT] = {
    "hit", "miss", "stale", "revalidated", "pass", "error", "stale_error"};

struct ctltop_origin {
    char name[CTLTOP_NAME_BYTES];
    uint64_t req, fivexx, err;
    char breaker[16]; /* "closed", "open", "half-open" */
};

struct ctltop_route {
    char label[CTLTOP_NAME_BYTES];
    uint64_t req, l1;
};

struct ctltop_url {
    char target[CTLTOP_NAME_BYTES + 16];
    double share; /* of the sampled requests of the daemon's window */
};

/* One stats reply, as numbers. */
struct ctltop_sample {
    int64_t at_ms;
    int64_t uptime_s;
    uint64_t total;
    uint64_t result[CW_METRICS_RESULT_COUNT];
    uint64_t lat[CW_METRICS_LAT_BUCKETS + 1];
    int64_t bounds[CW_METRICS_LAT_BUCKETS];
    struct ctltop_origin origin[CW_METRICS_ORIGINS];
    size_t origin_count;
    struct ctltop_route route[CW_METRICS_ROUTES];
    size_t route_count;
    struct ctltop_url url[CTLTOP_URLS];
    size_t url_count;
    bool has_urls; /* a daemon that samples request targets */
};

static volatile sig_atomic_t ctltop_stop; /* a signal flag (STYLE.md allows these) */

static void ctltop_on_signal(int sig);
static int ctltop_sample(struct cw_ctlclient *c, struct cw_ctlmsg_tok *tok,
                         struct ctltop_sample *out);
static void ctltop_pct(const struct ctltop_sample *a, const struct ctltop_sample *b, double pct,
                       char *out, size_t size);
static void ctltop_draw(const char *path, const struct ctltop_sample *a,
                        const struct ctltop_sample *b);
static bool ctltop_wait(int interval_ms, bool tty);

static void ctltop_on_signal(int sig)
{
    (void)sig;
    ctltop_stop = 1;
}

/* Asks for stats and reads the figures: CW_CTLCLIENT_OK, or another exit status. */
static int ctltop_sample(struct cw_ctlclient *c, struct cw_ctlmsg_tok *tok,
                         struct ctltop_sample *out)
{
    size_t n;
    int rc = cw_ctlclient_call(c, "{\"v\":1,\"cmd\":\"stats\"}", 10000);
    const char *p;
    int i;

    if (rc != CW_CTLCLIENT_OK) return rc;
    p = c->reply;
    if (cw_ctlmsg_parse(p, c->reply_len, tok, CTLTOP_TOKENS, &n) < 0 ||
        tok[0].kind != CW_CTLMSG_OBJECT || !cw_ctlmsg_get_bool(p, tok, 0, "ok", false)) {
        fprintf(stderr, "cwctl: top: the daemon's stats reply is not what this cwctl expects\n");
        return CW_CTLCLIENT_FAILED;
    }
    memset(out, 0, sizeof(*out));
    out->at_ms = cw_clock_mono_ms();
    out->uptime_s = cw_ctlmsg_get_int(p, tok, 0, "uptime_s", 0);
    out->total = (uint64_t)cw_ctlmsg_get_int(p, tok, 0, "requests", 0);
    i = cw_ctlmsg_find(p, tok, 0, "results");
    for (int r = 0; i >= 0 && r < CW_METRICS_RESULT_COUNT; r++)
        out->result[r] = (uint64_t)cw_ctlmsg_get_int(p, tok, (size_t)i, ctltop_results[r], 0);
    i = cw_ctlmsg_find(p, tok, 0, "latency_us");
    if (i >= 0) {
        int bo = cw_ctlmsg_find(p, tok, (size_t)i, "bounds");
        int co = cw_ctlmsg_find(p, tok, (size_t)i, "counts");
        size_t k = 0;
        for (size_t j = (size_t)bo + 1; bo >= 0 && j < tok[bo].next && k < CW_METRICS_LAT_BUCKETS;
             j = tok[j].next)
            out->bounds[k++] = cw_ctlmsg_num(p, tok, j) > 0 ? (int64_t)cw_ctlmsg_num(p, tok, j) : 0;
        k = 0;
        for (size_t j = (size_t)co + 1; co >= 0 && j < tok[co].next && k <= CW_METRICS_LAT_BUCKETS;
             j = tok[j].next) {
            double v = cw_ctlmsg_num(p, tok, j);
            out->lat[k++] = v > 0 ? (uint64_t)v : 0;
        }
    }
    i = cw_ctlmsg_find(p, tok, 0, "origins");
    for (size_t j = (size_t)i + 1;
         i >= 0 && j < tok[i].next && out->origin_count < CW_METRICS_ORIGINS; j = tok[j].next) {
        struct ctltop_origin *o = &out->origin[out->origin_count++];
        cw_ctlmsg_get_str(p, tok, j, "name", o->name, sizeof(o->name), "?");
        o->req = (uint64_t)cw_ctlmsg_get_int(p, tok, j, "requests", 0);
        o->fivexx = (uint64_t)cw_ctlmsg_get_int(p, tok, j, "5xx", 0);
        o->err = (uint64_t)cw_ctlmsg_get_int(p, tok, j, "errors", 0);
        cw_ctlmsg_get_str(p, tok, j, "breaker", o->breaker, sizeof(o->breaker), "closed");
    }
    i = cw_ctlmsg_find(p, tok, 0, "routes");
    for (size_t j = (size_t)i + 1;
         i >= 0 && j < tok[i].next && out->route_count < CW_METRICS_ROUTES; j = tok[j].next) {
        struct ctltop_route *r = &out->route[out->route_count++];
        char host[CTLTOP_NAME_BYTES], match[CTLTOP_NAME_BYTES];
        cw_ctlmsg_get_str(p, tok, j, "host", host, sizeof(host), "");
        cw_ctlmsg_get_str(p, tok, j, "match", match, sizeof(match), "?");
        snprintf(r->label, sizeof(r->label), "%.20s%.27s", host[0] ? host : "*", match);
        r->req = (uint64_t)cw_ctlmsg_get_int(p, tok, j, "requests", 0);
        r->l1 = (uint64_t)cw_ctlmsg_get_int(p, tok, j, "from_l1", 0);
    }
    i = cw_ctlmsg_find(p, tok, 0, "urls");
    int t = i >= 0 ? cw_ctlmsg_find(p, tok, (size_t)i, "top") : -1;
    out->has_urls = t >= 0;
    for (size_t j = (size_t)t + 1; t >= 0 && j < tok[t].next && out->url_count < CTLTOP_URLS;
         j = tok[j].next) {
        struct ctltop_url *u = &out->url[out->url_count++];
        /* A target too long for the buffer comes back as "..." (def): it still ranks. */
        cw_ctlmsg_get_str(p, tok, j, "target", u->target, sizeof(u->target), "...");
        int k = cw_ctlmsg_find(p, tok, j, "share");
        u->share = k >= 0 ? cw_ctlmsg_num(p, tok, (size_t)k) : 0.0;
    }
    return CW_CTLCLIENT_OK;
}

/* The latency bucket bound below which pct of the interval's requests fell ("<= 2.5 ms"). */
static void ctltop_pct(const struct ctltop_sample *a, const struct ctltop_sample *b, double pct,
                       char *out, size_t size)
{
    uint64_t d[CW_METRICS_LAT_BUCKETS + 1], total = 0, run = 0;

    for (int k = 0; k <= CW_METRICS_LAT_BUCKETS; k++) {
        d[k] = b->lat[k] >= a->lat[k] ? b->lat[k] - a->lat[k] : 0;
        total += d[k];
    }
    if (total == 0) {
        snprintf(out, size, "-");
        return;
    }
    for (int k = 0; k <= CW_METRICS_LAT_BUCKETS; k++) {
        run += d[k];
        if ((double)run < pct * (double)total) continue;
        if (k == CW_METRICS_LAT_BUCKETS) {
            snprintf(out, size, "> %.1f s", (double)b->bounds[k - 1] / 1e6);
        } else if (b->bounds[k] >= 1000000) {
            snprintf(out, size, "<= %.1f s", (double)b->bounds[k] / 1e6);
        } else {
            snprintf(out, size, "<= %.1f ms", (double)b->bounds[k] / 1e3);
        }
        return;
    }
}

static void ctltop_draw(const char *path, const struct ctltop_sample *a,
                        const struct ctltop_sample *b)
{
    double secs = (double)(b->at_ms - a->at_ms) / 1000.0;
    uint64_t total = b->total - a->total, l1 = 0;
    char p50[24], p99[24], clock_s[16];
    size_t order[CW_METRICS_ROUTES];
    time_t now = time(NULL);
    struct tm tm;

    if (secs <= 0) secs = 1;
    for (int r = 0; r < CW_METRICS_RESULT_COUNT; r++)
        if (r != CW_METRICS_RESULT_MISS && r != CW_METRICS_RESULT_PASS &&
            r != CW_METRICS_RESULT_ERROR)
            l1 += b->result[r] - a->result[r];
    ctltop_pct(a, b, 0.50, p50, sizeof(p50));
    ctltop_pct(a, b, 0.99, p99, sizeof(p99));
    localtime_r(&now, &tm);
    strftime(clock_s, sizeof(clock_s), "%H:%M:%S", &tm);
    printf("\033[H\033[2J");
    printf("cwctl top  %-40.40s %s  up %llds\n", path, clock_s, (long long)b->uptime_s);
    printf("q or Ctrl-C quits; figures over the last %.1f s\n\n", secs);
    printf("requests/s %10.1f      hit ratio %5.1f %%      total %llu\n", (double)total / secs,
           total ? 100.0 * (double)l1 / (double)total : 0.0, (unsigned long long)b->total);
    /* Two lines of results, so that 7 rates of 6 digits stay inside 80 columns. */
    for (int r = 0; r < CW_METRICS_RESULT_COUNT; r++)
        printf("%s%s %.1f%s", r == 0 || r == 4 ? "  " : "   ", ctltop_results[r],
               (double)(b->result[r] - a->result[r]) / secs, r == 3 ? "\n" : "");
    printf("\nlatency    p50 %-12s p99 %-12s (client requests)\n\n", p50, p99);
    printf("%-24s %10s %10s %10s  %s\n", "ORIGIN", "req/s", "5xx/s", "errors/s", "state");
    for (size_t o = 0; o < b->origin_count && o < CTLTOP_ORIGINS; o++) {
        const struct ctltop_origin *x = &b->origin[o], *y = &a->origin[o];
        uint64_t req = x->req - y->req, err = x->err - y->err, f = x->fivexx - y->fivexx;
        /* The breaker first: an open one sends nothing, which the rates alone call idle. */
        const char *state = strcmp(x->breaker, "open") == 0        ? "BREAKER OPEN"
                            : strcmp(x->breaker, "half-open") == 0 ? "probing"
                            : req == 0                             ? "idle"
                            : err + f == 0                         ? "ok"
                            : err + f < req                        ? "degraded"
                                                                   : "failing";
        printf("%-24.24s %10.1f %10.1f %10.1f  %s\n", x->name, (double)req / secs, (double)f / secs,
               (double)err / secs, state);
    }
    /* Routes by requests over the interval, busiest first (few: a selection sort). */
    for (size_t i = 0; i < b->route_count; i++)
        order[i] = i;
    for (size_t i = 0; i < b->route_count && i < CTLTOP_ROUTES; i++)
        for (size_t j = i + 1; j < b->route_count; j++)
            if (b->route[order[j]].req - a->route[order[j]].req >
                b->route[order[i]].req - a->route[order[i]].req) {
                size_t t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    printf("\n%-48s %10s %8s\n", "TOP ROUTES", "req/s", "L1 %");
    for (size_t i = 0; i < b->route_count && i < CTLTOP_ROUTES; i++) {
        const struct ctltop_route *x = &b->route[order[i]], *y = &a->route[order[i]];
        uint64_t req = x->req - y->req;
        printf("%-48.48s %10.1f %8.1f\n", x->label, (double)req / secs,
               req ? 100.0 * (double)(x->l1 - y->l1) / (double)req : 0.0);
    }
    /* URLs: the daemon's sampled share of the last 2 s, times this interval's rate. */
    if (b->has_urls) {
        printf("\n%-48s %10s %8s\n", "TOP URLS (sampled)", "req/s", "share %");
        for (size_t i = 0; i < b->url_count; i++)
            printf("%-48.48s %10.1f %8.1f\n", b->url[i].target,
                   b->url[i].share * (double)total / secs, 100.0 * b->url[i].share);
    }
    fflush(stdout);
}

/* Sleeps interval_ms, or less when 'q' is typed or a stop signal comes: true to go on. */
static bool ctltop_wait(int interval_ms, bool tty)
{
    int64_t deadline = cw_clock_mono_ms() + interval_ms;

    for (;;) {
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int64_t left = deadline - cw_clock_mono_ms();
        char ch;
        if (ctltop_stop) return false;
        if (left <= 0) return true;
        int n = poll(&pfd, tty ? 1 : 0, (int)left);
        if (n == -1 && errno == EINTR) continue;
        if (n > 0 && (pfd.revents & POLLIN)) {
            ssize_t r = read(STDIN_FILENO, &ch, 1);
            if (r == 0) tty = false; /* end of input: keep drawing */
            if (r == 1 && (ch == 'q' || ch == 'Q')) return false;
        } else if (n > 0) {
            tty = false;
        }
    }
}

int cw_ctltop_run(const char *path, int count, int interval_ms)
{
    static struct ctltop_sample s[2];
    struct cw_ctlmsg_tok *tok = malloc(CTLTOP_TOKENS * sizeof(*tok));
    struct sigaction sa = {.sa_handler = ctltop_on_signal};
    struct termios saved, raw;
    struct cw_ctlclient c;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    int rc, cur = 0, frames = 0;

    if (tok == NULL) return CW_CTLCLIENT_FAILED;
    rc = cw_ctlclient_connect(path, &c);
    if (rc != CW_CTLCLIENT_OK) goto out_free;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (tty) {
        raw = saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == -1) tty = false;
    }
    rc = ctltop_sample(&c, tok, &s[cur]);
    while (rc == CW_CTLCLIENT_OK && ctltop_wait(interval_ms, tty)) {
        rc = ctltop_sample(&c, tok, &s[cur ^ 1]);
        if (rc != CW_CTLCLIENT_OK) break;
        ctltop_draw(path, &s[cur], &s[cur ^ 1]);
        cur ^= 1;
        if (count > 0 && ++frames >= count) break;
    }
    if (tty) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    cw_ctlclient_close(&c);
out_free:
    free(tok);
    return rc;
}
