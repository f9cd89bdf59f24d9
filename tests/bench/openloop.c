/* tests/bench/openloop.c - an open-loop HTTP/1.1 load generator for `make bench`.
 *
 *   cw-openloop -p PORT [-a ADDR] [-c CONNS] [-t THREADS] [-d SECONDS] [-R RATE] [-K KEYS]
 *               [-Z EXPONENT | -Q] [-s SALT] [-H HOST] [-b CLIENTS -r ROUNDS [-w WARM_PATH]]
 *               [-P PRIO] [-S US] PATH
 *
 * Open loop (-R RATE > 0): request i of a thread is due at t0 + i / (RATE / THREADS) (the
 * threads' schedules interleave); it is sent on an idle keep-alive connection as soon as one
 * is free, and its latency runs from the time it was due, not from when it was sent. So a
 * server that stalls is charged for every request that would have been sent during the stall
 * (no coordinated omission, as in wrk2). With more than one thread, a thread also sends
 * another's request once it is -S US late (200 by default): a thread that waits for a CPU
 * does not hold back its sends. Closed loop (-R 0): every connection sends its next request as soon
 * as the last one is answered, for SECONDS; latency runs from the send. Burst (-b CLIENTS): opens
 * CLIENTS connections, GETs WARM_PATH on each (so each is accepted and kept alive), then
 * for each of ROUNDS rounds writes the same request on every connection at once and waits
 * for all answers; latency runs from the start of the round (the cold-key stampede).
 * Every latency ends at the kernel's receive time of the answer's last bytes
 * (SO_TIMESTAMPNS), not when this program read them: on a machine it shares with the server,
 * the wait for a CPU to read is the generator's, not the server's.
 *
 * PATH may hold "{n}", replaced per request by: a uniform random key in [0, KEYS) with
 * -K KEYS; with -K KEYS -Z S, a Zipf-distributed key (key k, 0-based, drawn with probability
 * proportional to 1 / (k + 1)^S: key 0 is the hottest; S = 0.99 is the usual web-cache
 * skew), by inverse transform over a table of the cumulative weights; with -K KEYS -Q, the
 * keys in order, each thread from its own offset (key = (seq * THREADS + thread) mod KEYS:
 * a warm-up pass that touches every key once); a key unique to this run (SALT, thread,
 * sequence number) with -K 0, the default; the round number after SALT in burst mode.
 *
 * Requests carry "Host: ADDR:PORT", or HOST with -H (so that two servers on other ports
 * share cache keys, as nodes behind one load balancer do).
 *
 * Every latency is kept (in ns) and sorted at the end, so percentiles are exact. One JSON
 * line goes to stdout: requests answered, errors (connection failures, answers never
 * complete, unfinished at the drain deadline), reconnects, retries (a request sent again on
 * a new connection because the server closed the reused one before a byte of the answer, as
 * HTTP clients do, once), non-2xx, hits (answers whose X-Cache starts
 * with HIT), achieved rate, p50/p90/p99/p99.9/max in ms, p99/p99.9 from the send
 * (sent_p99_ms, sent_p999_ms) and to the generator's read (read_p99_ms, read_p999_ms),
 * the largest lag between a due time
 * and its send (max_send_lag_ms: waiting for a free connection included) and the largest
 * part of such a lag while a connection sat idle (max_gen_lag_ms: the generator itself fell
 * behind; gen_late_1ms counts the sends over 1 ms late so), and the generator's own CPU
 * (getrusage). Bodies are parsed by Content-Length, chunked, or close delimited, and
 * discarded. Exits 1 on a usage error or when no request at all was answered. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OL_MAX_CONNS        20000
#define OL_MAX_THREADS      64
#define OL_HDR_BYTES        16384
#define OL_REQ_BYTES        2048
#define OL_READ_BYTES       65536
#define OL_DRAIN_NS         (5 * 1000000000LL) /* answers later than end + this are errors */
#define OL_BURST_ROUND_NS   (10 * 1000000000LL)
#define OL_BURST_PAUSE_NS   (100 * 1000000LL)
#define OL_MAX_EVENTS       256
#define OL_MAX_REQS_PER_RUN (200u * 1000u * 1000u)

enum ol_body {
    OL_BODY_NONE = 0, /* waiting for the header block */
    OL_BODY_LENGTH,
    OL_BODY_CHUNK_SIZE,
    OL_BODY_CHUNK_DATA,
    OL_BODY_CHUNK_CRLF,
    OL_BODY_TRAILER,
    OL_BODY_EOF,
};

struct ol_conn {
    int fd;
    bool is_busy;
    bool is_closing; /* the answer said Connection: close */
    bool is_retry;   /* the request is being sent a second time (ol_fail) */
    int uses;        /* requests sent on this connection */
    int64_t due_ns;  /* latency runs from here */
    int64_t sent_ns; /* when the request was written: the server's part runs from here */
    int64_t rx_ns;   /* the kernel's receive time of the answer's last bytes read, or 0 */
    int64_t idle_since_ns;
    char req[OL_REQ_BYTES];
    size_t req_len;
    size_t req_off;
    char hdr[OL_HDR_BYTES];
    size_t hdr_len;
    enum ol_body body;
    uint64_t left; /* body or chunk bytes still to come */
    char line[64]; /* a chunk-size or trailer line */
    size_t line_len;
    int status;
    bool is_hit;
};

struct ol_opts {
    const char *addr;
    int port;
    int conns;
    int threads;
    double seconds;
    double rate;
    long keys;
    double zipf; /* -Z: Zipf exponent over KEYS; 0 = uniform */
    bool is_seq; /* -Q: keys in order */
    const char *salt;
    const char *host; /* -H: the Host field; NULL: ADDR:PORT */
    int burst;
    int rounds;
    int fifo; /* -P: SCHED_FIFO priority of the generator's threads; 0 = the default policy */
    double steal_us; /* -S: open loop: another thread's request is sent once this late */
    int stall_ms;    /* -X: thread 1 sleeps this long once, 100 ms into the run (a test) */
    const char *warm_path;
    const char *path;
};

struct ol_stats {
    int64_t *lat_ns;
    int64_t *svc_ns;  /* the same answers' latencies from the send, not the due time */
    int64_t *read_ns; /* from the due time to when the generator read the last bytes */
    size_t n;
    size_t cap;
    uint64_t errors;
    uint64_t non2xx;
    uint64_t hits;
    uint64_t reconnects;
    uint64_t retries; /* requests sent again after a reused connection closed (ol_fail) */
    int64_t max_lag_ns;
    int64_t max_gen_lag_ns;
    uint64_t gen_late; /* sends the generator made over 1 ms late with a connection idle */
    int64_t last_done_ns;
    /* Burst mode, summed over the rounds: the time to send a round's requests, and its
     * first answer's latency (both from the round's start). */
    int64_t burst_send_ns;
    int64_t burst_first_ns;
    int burst_rounds;
};

/* The open loop's schedule, shared by the threads. Thread k's request i is due at
 * t0 + (i + k / THREADS) / (RATE / THREADS) seconds: the threads interleave. Each thread
 * sends its own requests when they are due, and another thread's once it is steal_ns late:
 * a thread that waits for a CPU (behind a kernel thread on its vCPU, say) does not hold back
 * the sends it was to make. A request is claimed by advancing its owner's next[] with a
 * compare-and-swap, so it goes out once whoever sends it. */
struct ol_sched {
    _Atomic uint64_t next[OL_MAX_THREADS];
    int threads;
    uint64_t total;   /* each thread's share of the requests */
    double rate;      /* each thread's share of RATE */
    int64_t t0_ns;    /* thread 0's first due time */
    int64_t steal_ns; /* 0: never */
};

struct ol_thread {
    const struct ol_opts *o;
    struct ol_sched *sched; /* open loop */
    int id;
    int nconns;
    struct ol_conn *conns;
    int *idle; /* a stack of idle connection indexes */
    int nidle;
    int ep;
    int64_t t0_ns;
    int64_t end_ns;
    uint64_t next; /* closed loop and bursts: sequence number of the next request */
    uint64_t inflight;
    uint64_t rng;
    struct sockaddr_in sa;
    struct ol_stats st;
    pthread_t tid;
    pthread_barrier_t *ready;
    pthread_barrier_t *go;
    int64_t *t0_shared;
    int failed;
    bool is_stalled; /* -X done */
};

static int64_t ol_now_ns(void);
static int ol_parse_opts(int argc, char **argv, struct ol_opts *o);
static void ol_usage(FILE *f);
static int ol_connect(struct ol_thread *t, struct ol_conn *c);
static void ol_close(struct ol_thread *t, struct ol_conn *c);
static int ol_build_req(struct ol_thread *t, struct ol_conn *c, const char *path, const char *key);
static int ol_send(struct ol_thread *t, struct ol_conn *c, int64_t due_ns, int owner, uint64_t seq);
static int ol_flush(struct ol_thread *t, struct ol_conn *c);
static void ol_key(struct ol_thread *t, char *buf, size_t len, int owner, uint64_t seq);
static bool ol_parse_head(struct ol_conn *c);
static int ol_feed(struct ol_thread *t, struct ol_conn *c, const char *p, size_t n);
static void ol_done(struct ol_thread *t, struct ol_conn *c, bool is_ok);
static void ol_fail(struct ol_thread *t, struct ol_conn *c);
static int ol_record(struct ol_stats *st, int64_t ns, int64_t svc_ns, int64_t read_ns);
static void ol_on_readable(struct ol_thread *t, struct ol_conn *c);
static int64_t ol_due(const struct ol_sched *s, int owner, uint64_t i);
static int64_t ol_send_by(const struct ol_thread *t, int owner, uint64_t i);
static void ol_pump_open(struct ol_thread *t);
static void ol_pump_closed(struct ol_thread *t);
static void *ol_run_thread(void *arg);
static int ol_run_burst(struct ol_thread *t);
static int ol_wait_idle(struct ol_thread *t, int64_t deadline_ns);
static void ol_json_num(const char *key, double v);
static int ol_cmp_i64(const void *a, const void *b);
static double ol_pct_ms(const int64_t *v, size_t n, double pct);
static int ol_thread_init(struct ol_thread *t, const struct ol_opts *o, int id, int nconns);
static void ol_thread_free(struct ol_thread *t);

static int64_t ol_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void ol_usage(FILE *f)
{
    fprintf(f, "usage: cw-openloop -p PORT [-a ADDR] [-c CONNS] [-t THREADS] [-d SECONDS]\n"
               "                   [-R RATE] [-K KEYS [-Z S | -Q]] [-s SALT] [-H HOST]\n"
               "                   [-b CLIENTS -r ROUNDS [-w WARM_PATH]] PATH\n"
               "  -R RATE   requests/s over all threads, open loop; 0 = closed loop\n"
               "  -K KEYS   {n} in PATH is a uniform key in [0,KEYS); 0 = unique per request\n"
               "  -Z S      with -K: Zipf keys, P(k) ~ 1/(k+1)^S (0.99: web-cache skew)\n"
               "  -Q        with -K: keys in order (a warm-up pass over the key set)\n"
               "  -H HOST   the Host field (default ADDR:PORT)\n"
               "  -b N      burst mode: N connections send the same request at once\n"
               "  -P PRIO   run at SCHED_FIFO priority PRIO (1-99; needs CAP_SYS_NICE), so that\n"
               "            the generator sends on time however busy the servers keep the CPUs\n"
               "  -S US     open loop: a thread sends another's request once it is US late\n"
               "            (default 200; 0: each thread sends only its own)\n"
               "  -X MS     a test of -S: thread 1 sleeps MS once, 100 ms into the run\n");
}

static int ol_parse_opts(int argc, char **argv, struct ol_opts *o)
{
    int ch;

    *o = (struct ol_opts){.addr = "127.0.0.1",
                          .conns = 32,
                          .threads = 1,
                          .seconds = 5,
                          .salt = "",
                          .rounds = 5,
                          .steal_us = 200,
                          .warm_path = "/"};
    while ((ch = getopt(argc, argv, "a:p:c:t:d:R:K:Z:Qs:H:b:r:w:P:S:X:h")) != -1) {
        switch (ch) {
        case 'a':
            o->addr = optarg;
            break;
        case 'p':
            o->port = atoi(optarg);
            break;
        case 'c':
            o->conns = atoi(optarg);
            break;
        case 't':
            o->threads = atoi(optarg);
            break;
        case 'd':
            o->seconds = atof(optarg);
            break;
        case 'R':
            o->rate = atof(optarg);
            break;
        case 'K':
            o->keys = atol(optarg);
            break;
        case 'Z':
            o->zipf = atof(optarg);
            break;
        case 'Q':
            o->is_seq = true;
            break;
        case 's':
            o->salt = optarg;
            break;
        case 'H':
            o->host = optarg;
            break;
        case 'b':
            o->burst = atoi(optarg);
            break;
        case 'r':
            o->rounds = atoi(optarg);
            break;
        case 'w':
            o->warm_path = optarg;
            break;
        case 'P':
            o->fifo = atoi(optarg);
            break;
        case 'S':
            o->steal_us = atof(optarg);
            break;
        case 'X':
            o->stall_ms = atoi(optarg);
            break;
        case 'h':
            ol_usage(stdout);
            exit(0);
        default:
            return -EINVAL;
        }
    }
    if (optind != argc - 1) return -EINVAL;
    o->path = argv[optind];
    if (o->port <= 0 || o->port > 65535) return -EINVAL;
    if (o->burst > 0) {
        o->threads = 1;
        o->conns = o->burst;
    }
    if (o->conns < 1 || o->conns > OL_MAX_CONNS) return -EINVAL;
    if (o->threads < 1 || o->threads > OL_MAX_THREADS || o->threads > o->conns) return -EINVAL;
    if (!(o->seconds > 0) || o->seconds > 3600 || o->rate < 0 || o->keys < 0) return -EINVAL;
    if (o->rate * o->seconds > OL_MAX_REQS_PER_RUN) return -EINVAL;
    if (o->rounds < 1 || o->fifo < 0 || o->fifo > 99) return -EINVAL;
    if (!(o->steal_us >= 0) || o->steal_us > 1e6) return -EINVAL;
    if (o->stall_ms < 0 || o->stall_ms > 10000) return -EINVAL;
    if ((o->zipf != 0 || o->is_seq) && o->keys <= 0) return -EINVAL;
    if (o->zipf < 0 || o->zipf > 10 || (o->zipf != 0 && o->is_seq)) return -EINVAL;
    if (o->keys > 100000000) return -EINVAL;
    return 0;
}

/* A blocking connect (loopback: immediate), then non-blocking with TCP_NODELAY. */
static int ol_connect(struct ol_thread *t, struct ol_conn *c)
{
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd == -1) return -errno;
    if (connect(c->fd, (struct sockaddr *)&t->sa, sizeof(t->sa)) == -1) {
        int rc = -errno;
        close(c->fd);
        c->fd = -1;
        return rc;
    }
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1) return -errno;
    if (setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) == -1) return -errno;
    int fl = fcntl(c->fd, F_GETFL);
    if (fl == -1 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) == -1) return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - t->conns)};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) == -1) return -errno;
    c->is_busy = false;
    c->is_closing = false;
    c->uses = 0;
    return 0;
}

static void ol_close(struct ol_thread *t, struct ol_conn *c)
{
    (void)t;
    if (c->fd != -1) close(c->fd);
    c->fd = -1;
}

/* -Z: ol_zipf_cdf[k] = sum of 1/(i+1)^S for i <= k, over the sum for all keys; read-only
 * once main() has built it, shared by the threads. */
static double *ol_zipf_cdf;

static int ol_zipf_init(long keys, double s)
{
    ol_zipf_cdf = malloc((size_t)keys * sizeof(double));
    if (ol_zipf_cdf == NULL) return -ENOMEM;
    double sum = 0;
    for (long k = 0; k < keys; k++) {
        sum += pow((double)(k + 1), -s);
        ol_zipf_cdf[k] = sum;
    }
    for (long k = 0; k < keys; k++)
        ol_zipf_cdf[k] /= sum;
    ol_zipf_cdf[keys - 1] = 1.0;
    return 0;
}

/* The first k with cdf[k] >= u (u in [0, 1)). */
static uint64_t ol_zipf_key(long keys, double u)
{
    long lo = 0, hi = keys - 1;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (ol_zipf_cdf[mid] >= u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return (uint64_t)lo;
}

/* The key of request seq of thread owner (which may not be the thread that sends it). */
static void ol_key(struct ol_thread *t, char *buf, size_t len, int owner, uint64_t seq)
{
    if (t->o->burst > 0) {
        snprintf(buf, len, "%s%" PRIu64, t->o->salt, seq);
    } else if (t->o->keys > 0 && t->o->is_seq) {
        uint64_t k = (seq * (uint64_t)t->o->threads + (uint64_t)owner) % (uint64_t)t->o->keys;
        snprintf(buf, len, "%" PRIu64, k);
    } else if (t->o->keys > 0) {
        /* xorshift64*: uniform enough for a key choice, no locks, no libc state. */
        t->rng ^= t->rng >> 12;
        t->rng ^= t->rng << 25;
        t->rng ^= t->rng >> 27;
        uint64_t r = t->rng * 2685821657736338717ULL;
        if (t->o->zipf > 0) {
            double u = (double)(r >> 11) * 0x1.0p-53; /* [0, 1) */
            snprintf(buf, len, "%" PRIu64, ol_zipf_key(t->o->keys, u));
        } else {
            snprintf(buf, len, "%" PRIu64, r % (uint64_t)t->o->keys);
        }
    } else {
        snprintf(buf, len, "%s%dx%" PRIu64, t->o->salt, owner, seq);
    }
}

/* Writes the request for path, with "{n}" replaced by key, into c->req. */
static int ol_build_req(struct ol_thread *t, struct ol_conn *c, const char *path, const char *key)
{
    char target[1024];
    const char *at = strstr(path, "{n}");
    int n;

    if (at != NULL) {
        n = snprintf(target, sizeof(target), "%.*s%s%s", (int)(at - path), path, key, at + 3);
    } else {
        n = snprintf(target, sizeof(target), "%s", path);
    }
    if (n < 0 || (size_t)n >= sizeof(target)) return -ENOSPC;
    if (t->o->host != NULL) {
        n = snprintf(c->req, sizeof(c->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cw-openloop\r\n\r\n", target,
                     t->o->host);
    } else {
        n = snprintf(c->req, sizeof(c->req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: cw-openloop\r\n\r\n", target,
                     t->o->addr, t->o->port);
    }
    if (n < 0 || (size_t)n >= sizeof(c->req)) return -ENOSPC;
    c->req_len = (size_t)n;
    c->req_off = 0;
    return 0;
}

static int ol_flush(struct ol_thread *t, struct ol_conn *c)
{
    while (c->req_off < c->req_len) {
        ssize_t w = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
        if (w == -1) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                         .data.u64 = (uint64_t)(c - t->conns)};
                if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) == -1) return -errno;
                return 0;
            }
            return -errno;
        }
        c->req_off += (size_t)w;
    }
    return 0;
}

/* Sends request seq of thread owner on the idle connection c; its latency runs from due_ns.
 * A request that fails to go out is lost, not retried. */
static int ol_send(struct ol_thread *t, struct ol_conn *c, int64_t due_ns, int owner, uint64_t seq)
{
    char key[128];
    int rc;

    ol_key(t, key, sizeof(key), owner, seq);
    if (c->fd == -1) {
        rc = ol_connect(t, c);
        if (rc < 0) return rc;
        t->st.reconnects++;
    }
    rc = ol_build_req(t, c, t->o->path, key);
    if (rc < 0) return rc;
    c->uses++;
    c->is_retry = false;
    c->is_busy = true;
    c->due_ns = due_ns;
    c->hdr_len = 0;
    c->body = OL_BODY_NONE;
    c->status = 0;
    c->is_hit = false;
    t->inflight++;
    c->sent_ns = ol_now_ns();
    c->rx_ns = 0;
    rc = ol_flush(t, c);
    if (rc < 0) ol_fail(t, c);
    return 0;
}

/* Parses the header block in c->hdr (complete, ending in CRLF CRLF): status, framing,
 * Connection: close, X-Cache. False on a malformed status line. */
static bool ol_parse_head(struct ol_conn *c)
{
    const char *p = c->hdr, *end = c->hdr + c->hdr_len;
    bool is_chunked = false, has_len = false;
    uint64_t len = 0;

    if (c->hdr_len < 12 || strncmp(p, "HTTP/1.", 7) != 0) return false;
    c->status = atoi(p + 9);
    const char *line = memchr(p, '\n', c->hdr_len);
    while (line != NULL && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL) break;
        size_t ll = (size_t)(eol - line);
        const char *colon = memchr(line, ':', ll);
        if (colon != NULL) {
            size_t nl = (size_t)(colon - line);
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            if (nl == 14 && strncasecmp(line, "content-length", nl) == 0) {
                len = strtoull(v, NULL, 10);
                has_len = true;
            } else if (nl == 17 && strncasecmp(line, "transfer-encoding", nl) == 0) {
                is_chunked = strncasecmp(v, "chunked", 7) == 0;
            } else if (nl == 10 && strncasecmp(line, "connection", nl) == 0) {
                c->is_closing = strncasecmp(v, "close", 5) == 0;
            } else if (nl == 7 && strncasecmp(line, "x-cache", nl) == 0) {
                c->is_hit = strncasecmp(v, "HIT", 3) == 0;
            }
        }
        line = eol;
    }
    if (c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200)) {
        c->body = OL_BODY_LENGTH;
        c->left = 0;
    } else if (is_chunked) {
        c->body = OL_BODY_CHUNK_SIZE;
        c->line_len = 0;
    } else if (has_len) {
        c->body = OL_BODY_LENGTH;
        c->left = len;
    } else {
        c->body = OL_BODY_EOF;
        c->is_closing = true;
    }
    return true;
}

/* Feeds n received bytes to c's answer. Returns 1 when the answer is complete (bytes after
 * it are an error: we never pipeline), 0 when more is needed, -EBADMSG when malformed. */
static int ol_feed(struct ol_thread *t, struct ol_conn *c, const char *p, size_t n)
{
    (void)t;
    while (n > 0) {
        switch (c->body) {
        case OL_BODY_NONE: {
            size_t take = n;
            if (take > sizeof(c->hdr) - c->hdr_len) take = sizeof(c->hdr) - c->hdr_len;
            if (take == 0) return -EBADMSG;
            size_t from = c->hdr_len >= 3 ? c->hdr_len - 3 : 0;
            memcpy(c->hdr + c->hdr_len, p, take);
            c->hdr_len += take;
            const char *e = memmem(c->hdr + from, c->hdr_len - from, "\r\n\r\n", 4);
            if (e == NULL) {
                p += take;
                n -= take;
                break;
            }
            size_t head = (size_t)(e + 4 - c->hdr);
            size_t used = head - (c->hdr_len - take); /* of this read, the rest is body */
            c->hdr_len = head;
            if (!ol_parse_head(c)) return -EBADMSG;
            p += used;
            n -= used;
            if (c->body == OL_BODY_LENGTH && c->left == 0) return n == 0 ? 1 : -EBADMSG;
            break;
        }
        case OL_BODY_LENGTH: {
            uint64_t take = n < c->left ? n : c->left;
            c->left -= take;
            p += take;
            n -= take;
            if (c->left == 0) return n == 0 ? 1 : -EBADMSG;
            break;
        }
        case OL_BODY_CHUNK_SIZE:
        case OL_BODY_TRAILER: {
            char ch = *p++;
            n--;
            if (ch != '\n') {
                if (c->line_len + 1 >= sizeof(c->line)) return -EBADMSG;
                c->line[c->line_len++] = ch;
                break;
            }
            c->line[c->line_len] = '\0';
            if (c->body == OL_BODY_TRAILER) {
                bool is_blank = c->line_len == 0 || (c->line_len == 1 && c->line[0] == '\r');
                c->line_len = 0;
                if (is_blank) return n == 0 ? 1 : -EBADMSG;
                break;
            }
            char *endp;
            c->left = strtoull(c->line, &endp, 16);
            if (endp == c->line) return -EBADMSG;
            c->line_len = 0;
            c->body = c->left == 0 ? OL_BODY_TRAILER : OL_BODY_CHUNK_DATA;
            break;
        }
        case OL_BODY_CHUNK_DATA: {
            uint64_t take = n < c->left ? n : c->left;
            c->left -= take;
            p += take;
            n -= take;
            if (c->left == 0) {
                c->body = OL_BODY_CHUNK_CRLF;
                c->left = 2;
            }
            break;
        }
        case OL_BODY_CHUNK_CRLF: {
            uint64_t take = n < c->left ? n : c->left;
            c->left -= take;
            p += take;
            n -= take;
            if (c->left == 0) {
                c->body = OL_BODY_CHUNK_SIZE;
                c->line_len = 0;
            }
            break;
        }
        case OL_BODY_EOF:
            return 0; /* everything until EOF is body */
        }
    }
    return 0;
}

static int ol_record(struct ol_stats *st, int64_t ns, int64_t svc_ns, int64_t read_ns)
{
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 65536;
        int64_t *v = realloc(st->lat_ns, cap * sizeof(*v));
        if (v == NULL) return -ENOMEM;
        st->lat_ns = v;
        v = realloc(st->svc_ns, cap * sizeof(*v));
        if (v == NULL) return -ENOMEM;
        st->svc_ns = v;
        v = realloc(st->read_ns, cap * sizeof(*v));
        if (v == NULL) return -ENOMEM;
        st->read_ns = v;
        st->cap = cap;
    }
    st->svc_ns[st->n] = svc_ns;
    st->read_ns[st->n] = read_ns;
    st->lat_ns[st->n++] = ns;
    return 0;
}

/* The answer on c is complete (is_ok) or failed: account for it and make c idle. */
static void ol_done(struct ol_thread *t, struct ol_conn *c, bool is_ok)
{
    int64_t now = ol_now_ns();

    t->inflight--;
    c->is_busy = false;
    c->idle_since_ns = now;
    if (is_ok) {
        /* The answer ended when its last bytes reached the socket, not when this thread got
         * the CPU to read them: a client on another machine has no such wait. */
        int64_t end = c->rx_ns > 0 && c->rx_ns <= now ? c->rx_ns : now;
        if (ol_record(&t->st, end - c->due_ns, end - c->sent_ns, now - c->due_ns) < 0) {
            t->st.errors++;
        } else {
            t->st.last_done_ns = now;
            if (c->status < 200 || c->status > 299) t->st.non2xx++;
            if (c->is_hit) t->st.hits++;
        }
        if (c->is_closing) ol_close(t, c);
    } else {
        t->st.errors++;
        ol_close(t, c);
    }
    t->idle[t->nidle++] = (int)(c - t->conns);
}

/* The request on c failed. A reused keep-alive connection that the server closed before a
 * byte of the answer (its idle timeout crossing the send) is what HTTP clients send a request
 * again for, once, on a new connection: so does this one, its latency still from the due
 * time. Anything else is an error. */
static void ol_fail(struct ol_thread *t, struct ol_conn *c)
{
    if (c->is_busy && c->uses > 1 && !c->is_retry && c->hdr_len == 0) {
        ol_close(t, c);
        if (ol_connect(t, c) == 0) {
            t->st.reconnects++;
            t->st.retries++;
            c->uses = 1;
            c->is_retry = true;
            c->is_busy = true;
            c->req_off = 0;
            c->sent_ns = ol_now_ns();
            c->rx_ns = 0;
            if (ol_flush(t, c) == 0) return;
        }
    }
    ol_done(t, c, false);
}

/* The kernel's receive time (SO_TIMESTAMPNS, CLOCK_REALTIME) of what msg read, on the
 * CLOCK_MONOTONIC scale of the due times, or 0 when the kernel gave none. The offset between
 * the two clocks is read now, microseconds after the receive, so a clock step or slew during
 * the run does not move it. */
static int64_t ol_rx_mono_ns(struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_TIMESTAMPNS) continue;
        struct timespec rx, rt;
        memcpy(&rx, CMSG_DATA(cm), sizeof(rx));
        int64_t mono = ol_now_ns();
        clock_gettime(CLOCK_REALTIME, &rt);
        int64_t rx_ns = (int64_t)rx.tv_sec * 1000000000 + rx.tv_nsec;
        int64_t rt_ns = (int64_t)rt.tv_sec * 1000000000 + rt.tv_nsec;
        return rx_ns > 0 ? mono - (rt_ns - rx_ns) : 0;
    }
    return 0;
}

static void ol_on_readable(struct ol_thread *t, struct ol_conn *c)
{
    static __thread char buf[OL_READ_BYTES];
    static __thread char ctl[CMSG_SPACE(sizeof(struct timespec))];

    for (;;) {
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof(ctl)};
        ssize_t r = recvmsg(c->fd, &msg, 0);
        if (r > 0 && c->is_busy) {
            int64_t rx = ol_rx_mono_ns(&msg);
            if (rx > 0) c->rx_ns = rx;
        }
        if (r == -1) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            if (c->is_busy)
                ol_fail(t, c);
            else
                ol_close(t, c);
            return;
        }
        if (r == 0) {
            if (c->is_busy && c->body == OL_BODY_EOF) {
                c->is_closing = true;
                ol_done(t, c, true);
            } else if (c->is_busy) {
                ol_fail(t, c);
            } else {
                /* The server closed an idle keep-alive connection: reconnect on next use. */
                ol_close(t, c);
            }
            return;
        }
        if (!c->is_busy) {
            ol_close(t, c); /* bytes nobody asked for */
            return;
        }
        int rc = ol_feed(t, c, buf, (size_t)r);
        if (rc < 0) {
            ol_fail(t, c);
            return;
        }
        if (rc == 1) {
            ol_done(t, c, true);
            return;
        }
    }
}

static int64_t ol_due(const struct ol_sched *s, int owner, uint64_t i)
{
    return s->t0_ns + (int64_t)(((double)i + (double)owner / s->threads) * 1e9 / s->rate);
}

/* When thread t is to send request i of thread owner: at its due time if it is its own,
 * steal_ns after it if not; INT64_MAX for none (sent, or never t's to send). */
static int64_t ol_send_by(const struct ol_thread *t, int owner, uint64_t i)
{
    const struct ol_sched *s = t->sched;

    if (i >= s->total) return INT64_MAX;
    if (owner == t->id) return ol_due(s, owner, i);
    return s->steal_ns > 0 ? ol_due(s, owner, i) + s->steal_ns : INT64_MAX;
}

/* The owner of the request thread t is to send first (its next[] in *i and the time in
 * *at), or -1 when no thread has one left for t. */
static int ol_next_for(const struct ol_thread *t, uint64_t *i, int64_t *at)
{
    int best = -1;

    *at = INT64_MAX;
    for (int m = 0; m < t->sched->threads; m++) {
        uint64_t j = atomic_load_explicit(&t->sched->next[m], memory_order_relaxed);
        int64_t when = ol_send_by(t, m, j);
        if (when < *at) {
            best = m;
            *i = j;
            *at = when;
        }
    }
    return best;
}

/* Sends every request that is t's to send by now while a connection is idle. */
static void ol_pump_open(struct ol_thread *t)
{
    int64_t now = ol_now_ns();
    bool is_fresh = true;

    while (t->nidle > 0) {
        uint64_t i;
        int64_t at;
        int m = ol_next_for(t, &i, &at);
        if (m < 0) break;
        if (at > now) {
            if (!is_fresh) break;
            now = ol_now_ns(); /* a due time may have come while this loop sent */
            is_fresh = false;
            continue;
        }
        is_fresh = true;
        if (!atomic_compare_exchange_strong(&t->sched->next[m], &i, i + 1))
            continue; /* the other thread sent it meanwhile */
        int64_t due = ol_due(t->sched, m, i);
        struct ol_conn *c = &t->conns[t->idle[--t->nidle]];
        /* Late because every connection was busy is the server's doing (and counted in the
         * latency); late while this connection sat idle is the generator's. */
        int64_t from = c->idle_since_ns > due ? c->idle_since_ns : due;
        if (now - due > t->st.max_lag_ns) t->st.max_lag_ns = now - due;
        if (now - from > t->st.max_gen_lag_ns) t->st.max_gen_lag_ns = now - from;
        if (now - from > 1000000) t->st.gen_late++;
        if (ol_send(t, c, due, m, i) < 0) {
            t->st.errors++;
            t->idle[t->nidle++] = (int)(c - t->conns);
        }
    }
}

static void ol_pump_closed(struct ol_thread *t)
{
    while (t->nidle > 0 && ol_now_ns() < t->end_ns) {
        struct ol_conn *c = &t->conns[t->idle[--t->nidle]];
        int64_t now = ol_now_ns();
        if (ol_send(t, c, now, t->id, t->next++) < 0) {
            t->st.errors++;
            t->idle[t->nidle++] = (int)(c - t->conns);
            return;
        }
    }
}

/* Runs the event loop until every connection is idle or deadline_ns passes; in open or
 * closed loop mode it also sends. Returns the number of requests still in flight. */
static int ol_wait_idle(struct ol_thread *t, int64_t deadline_ns)
{
    struct epoll_event ev[OL_MAX_EVENTS];
    bool is_open = t->o->rate > 0 && t->o->burst == 0;
    bool is_closed = t->o->rate == 0 && t->o->burst == 0;

    for (;;) {
        if (t->o->stall_ms > 0 && t->id == 1 && !t->is_stalled && is_open &&
            ol_now_ns() >= t->t0_ns + 100000000) {
            struct timespec ts = {t->o->stall_ms / 1000, (long)(t->o->stall_ms % 1000) * 1000000};
            t->is_stalled = true;
            nanosleep(&ts, NULL);
        }
        if (is_open) ol_pump_open(t);
        if (is_closed) ol_pump_closed(t);
        int64_t now = ol_now_ns();
        uint64_t seq;
        int64_t at = INT64_MAX;
        bool is_sending =
            (is_open && ol_next_for(t, &seq, &at) >= 0) || (is_closed && now < t->end_ns);
        if (!is_sending && t->inflight == 0) return 0;
        if (now >= deadline_ns) return (int)t->inflight;
        int64_t wake = deadline_ns;
        if (is_closed && now < t->end_ns && t->end_ns < wake) wake = t->end_ns;
        if (is_open && t->nidle > 0 && at < wake) wake = at;
        /* epoll_pwait2 takes a timeout in ns: no timer fd to arm and read per request. */
        int64_t wait_ns = wake > now ? wake - now : 0; /* a due time may pass meanwhile */
        struct timespec to = {.tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000};
        int n = epoll_pwait2(t->ep, ev, OL_MAX_EVENTS, &to, NULL);
        if (n == -1) {
            if (errno == EINTR) continue;
            perror("cw-openloop: epoll_pwait2");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            struct ol_conn *c = &t->conns[ev[i].data.u64];
            if (c->fd == -1) continue;
            if ((ev[i].events & EPOLLOUT) && c->is_busy && c->req_off < c->req_len) {
                if (ol_flush(t, c) < 0) {
                    ol_fail(t, c);
                    continue;
                }
                if (c->req_off == c->req_len) {
                    struct epoll_event e = {.events = EPOLLIN, .data.u64 = ev[i].data.u64};
                    if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &e) == -1) ol_fail(t, c);
                }
            }
            if (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ol_on_readable(t, c);
        }
    }
}

static int ol_thread_init(struct ol_thread *t, const struct ol_opts *o, int id, int nconns)
{
    memset(t, 0, sizeof(*t));
    t->o = o;
    t->id = id;
    t->nconns = nconns;
    t->rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)id << 32) ^ (uint64_t)getpid();
    t->sa.sin_family = AF_INET;
    t->sa.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->addr, &t->sa.sin_addr) != 1) return -EINVAL;
    t->conns = calloc((size_t)nconns, sizeof(*t->conns));
    t->idle = calloc((size_t)nconns, sizeof(*t->idle));
    if (t->conns == NULL || t->idle == NULL) return -ENOMEM;
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    if (t->ep == -1) return -errno;
    for (int i = 0; i < nconns; i++) {
        t->conns[i].fd = -1;
        int rc = ol_connect(t, &t->conns[i]);
        if (rc < 0) {
            fprintf(stderr, "cw-openloop: connect %s:%d: %s\n", o->addr, o->port, strerror(-rc));
            return rc;
        }
        t->idle[t->nidle++] = i;
    }
    return 0;
}

static void ol_thread_free(struct ol_thread *t)
{
    for (int i = 0; t->conns != NULL && i < t->nconns; i++)
        ol_close(t, &t->conns[i]);
    if (t->ep >= 0) close(t->ep);
    free(t->conns);
    free(t->idle);
    free(t->st.lat_ns);
    free(t->st.svc_ns);
    free(t->st.read_ns);
}

static void *ol_run_thread(void *arg)
{
    struct ol_thread *t = arg;

    pthread_barrier_wait(t->ready);
    pthread_barrier_wait(t->go);
    t->t0_ns = *t->t0_shared;
    t->end_ns = t->t0_ns + (int64_t)(t->o->seconds * 1e9);
    int left = ol_wait_idle(t, t->end_ns + OL_DRAIN_NS);
    t->st.errors += (uint64_t)left;
    return NULL;
}

/* Burst mode: warm every connection, then rounds of the same request on all at once. */
static int ol_run_burst(struct ol_thread *t)
{
    for (int i = 0; i < t->nconns; i++) {
        struct ol_conn *c = &t->conns[i];
        if (ol_build_req(t, c, t->o->warm_path, "warm") < 0) return -ENOSPC;
        c->is_busy = true;
        c->due_ns = ol_now_ns();
        c->hdr_len = 0;
        c->body = OL_BODY_NONE;
        t->inflight++;
        if (ol_flush(t, c) < 0) ol_fail(t, c);
    }
    t->nidle = 0;
    if (ol_wait_idle(t, ol_now_ns() + OL_BURST_ROUND_NS) != 0) {
        fprintf(stderr, "cw-openloop: warm-up requests did not all complete\n");
        return -ETIMEDOUT;
    }
    /* The warm-ups are not part of the figures. */
    t->st.n = 0;
    t->st.hits = 0;
    t->st.non2xx = 0;
    if (t->st.errors > 0) {
        fprintf(stderr, "cw-openloop: %" PRIu64 " warm-up requests failed\n", t->st.errors);
        return -EIO;
    }
    t->t0_ns = ol_now_ns();
    for (int r = 0; r < t->o->rounds; r++) {
        int64_t start = ol_now_ns();
        t->nidle = 0;
        size_t n0 = t->st.n;
        for (int i = 0; i < t->nconns; i++) {
            struct ol_conn *c = &t->conns[i];
            if (ol_send(t, c, start, t->id, (uint64_t)r) < 0) t->st.errors++;
        }
        t->st.burst_send_ns += ol_now_ns() - start;
        int left = ol_wait_idle(t, start + OL_BURST_ROUND_NS);
        t->st.errors += (uint64_t)left;
        if (left > 0) break;
        int64_t first = INT64_MAX;
        for (size_t i = n0; i < t->st.n; i++)
            if (t->st.lat_ns[i] < first) first = t->st.lat_ns[i];
        if (t->st.n > n0) {
            t->st.burst_first_ns += first;
            t->st.burst_rounds++;
        }
        struct timespec ts = {0, OL_BURST_PAUSE_NS};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Prints ,"key":v with three decimals, or null for NaN (JSON has no NaN). */
static void ol_json_num(const char *key, double v)
{
    if (isnan(v)) {
        printf(",\"%s\":null", key);
    } else {
        printf(",\"%s\":%.3f", key, v);
    }
}

static int ol_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile of sorted v, in ms. */
static double ol_pct_ms(const int64_t *v, size_t n, double pct)
{
    if (n == 0) return NAN;
    size_t rank = (size_t)ceil(pct / 100.0 * (double)n);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1e6;
}

int main(int argc, char **argv)
{
    struct ol_opts o;
    struct rusage ru0, ru1;
    int rc;

    if (ol_parse_opts(argc, argv, &o) < 0) {
        ol_usage(stderr);
        return 2;
    }
    struct ol_thread *th = calloc((size_t)o.threads, sizeof(*th));
    if (th == NULL) return 1;
    if (o.zipf > 0 && ol_zipf_init(o.keys, o.zipf) < 0) return 1;
    pthread_barrier_t ready, go;
    int64_t t0 = 0;
    static struct ol_sched sched; /* zero: every next[] at 0 */
    /* Sleeps end within 1 us of the due time, not the default 50 us timer slack. */
    if (prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == -1) perror("cw-openloop: timer slack");
    if (o.fifo > 0) {
        /* Before the threads start: they inherit it. Refused: say so and stop, so that a
         * run never reports figures measured without what was asked. */
        struct sched_param sp = {.sched_priority = o.fifo};
        if (sched_setscheduler(0, SCHED_FIFO, &sp) == -1) {
            perror("cw-openloop: SCHED_FIFO");
            return 1;
        }
    }
    getrusage(RUSAGE_SELF, &ru0);

    if (o.burst > 0) {
        rc = ol_thread_init(&th[0], &o, 0, o.conns);
        if (rc < 0) return 1;
        if (ol_run_burst(&th[0]) < 0) return 1;
        t0 = th[0].t0_ns;
    } else {
        pthread_barrier_init(&ready, NULL, (unsigned)o.threads + 1);
        pthread_barrier_init(&go, NULL, (unsigned)o.threads + 1);
        for (int i = 0; i < o.threads; i++) {
            int share = o.conns / o.threads + (i < o.conns % o.threads ? 1 : 0);
            rc = ol_thread_init(&th[i], &o, i, share);
            if (rc < 0) return 1;
            th[i].ready = &ready;
            th[i].go = &go;
            th[i].t0_shared = &t0;
            th[i].sched = &sched;
            if (pthread_create(&th[i].tid, NULL, ol_run_thread, &th[i]) != 0) return 1;
        }
        pthread_barrier_wait(&ready);
        t0 = ol_now_ns() + 10000000; /* 10 ms: every thread is past the barrier */
        sched.threads = o.threads;
        sched.rate = o.rate / o.threads;
        sched.total = (uint64_t)(sched.rate * o.seconds);
        sched.t0_ns = t0;
        sched.steal_ns = o.threads > 1 ? (int64_t)(o.steal_us * 1000) : 0;
        pthread_barrier_wait(&go);
        for (int i = 0; i < o.threads; i++)
            pthread_join(th[i].tid, NULL);
    }
    getrusage(RUSAGE_SELF, &ru1);

    struct ol_stats all = {0};
    size_t total = 0;
    for (int i = 0; i < o.threads; i++)
        total += th[i].st.n;
    all.lat_ns = malloc((total ? total : 1) * sizeof(int64_t));
    all.svc_ns = malloc((total ? total : 1) * sizeof(int64_t));
    all.read_ns = malloc((total ? total : 1) * sizeof(int64_t));
    if (all.lat_ns == NULL || all.svc_ns == NULL || all.read_ns == NULL) return 1;
    for (int i = 0; i < o.threads; i++) {
        struct ol_stats *s = &th[i].st;
        if (s->n > 0) { /* a thread with no answer has no arrays */
            memcpy(all.lat_ns + all.n, s->lat_ns, s->n * sizeof(int64_t));
            memcpy(all.svc_ns + all.n, s->svc_ns, s->n * sizeof(int64_t));
            memcpy(all.read_ns + all.n, s->read_ns, s->n * sizeof(int64_t));
        }
        all.n += s->n;
        all.errors += s->errors;
        all.non2xx += s->non2xx;
        all.hits += s->hits;
        all.reconnects += s->reconnects;
        all.retries += s->retries;
        if (s->max_lag_ns > all.max_lag_ns) all.max_lag_ns = s->max_lag_ns;
        if (s->max_gen_lag_ns > all.max_gen_lag_ns) all.max_gen_lag_ns = s->max_gen_lag_ns;
        all.gen_late += s->gen_late;
        if (s->last_done_ns > all.last_done_ns) all.last_done_ns = s->last_done_ns;
        if (o.rate > 0 && o.burst == 0) /* never sent */
            all.errors += sched.total - atomic_load(&sched.next[i]);
    }
    qsort(all.lat_ns, all.n, sizeof(int64_t), ol_cmp_i64);
    qsort(all.svc_ns, all.n, sizeof(int64_t), ol_cmp_i64);
    qsort(all.read_ns, all.n, sizeof(int64_t), ol_cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < all.n; i++)
        sum += (double)all.lat_ns[i];
    double span_s = (double)(all.last_done_ns - t0) / 1e9;
    if (o.burst == 0 && span_s < o.seconds) span_s = o.seconds;
    double cpu_s = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                   (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                   (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                   (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    const char *mode = o.burst > 0 ? "burst" : o.rate > 0 ? "open" : "closed";
    printf("{\"mode\":\"%s\",\"rate_target\":%.0f,\"seconds\":%.3f,\"conns\":%d,\"threads\":%d,"
           "\"requests\":%zu,\"errors\":%" PRIu64 ",\"non2xx\":%" PRIu64 ",\"hits\":%" PRIu64
           ",\"reconnects\":%" PRIu64 ",\"retries\":%" PRIu64,
           mode, o.rate, span_s, o.conns, o.threads, all.n, all.errors, all.non2xx, all.hits,
           all.reconnects, all.retries);
    ol_json_num("rps", span_s > 0 ? (double)all.n / span_s : NAN);
    ol_json_num("mean_ms", all.n ? sum / (double)all.n / 1e6 : NAN);
    ol_json_num("p50_ms", ol_pct_ms(all.lat_ns, all.n, 50));
    ol_json_num("p90_ms", ol_pct_ms(all.lat_ns, all.n, 90));
    ol_json_num("p99_ms", ol_pct_ms(all.lat_ns, all.n, 99));
    ol_json_num("p999_ms", ol_pct_ms(all.lat_ns, all.n, 99.9));
    ol_json_num("max_ms", ol_pct_ms(all.lat_ns, all.n, 100));
    /* From the send instead of the due time: without what the generator's own lateness adds
     * (a stall of the server still counts: the other requests go out meanwhile). */
    ol_json_num("sent_p99_ms", ol_pct_ms(all.svc_ns, all.n, 99));
    ol_json_num("sent_p999_ms", ol_pct_ms(all.svc_ns, all.n, 99.9));
    /* To when the generator read the answer instead of when it arrived: with the time the
     * generator waited for a CPU to read it. */
    ol_json_num("read_p99_ms", ol_pct_ms(all.read_ns, all.n, 99));
    ol_json_num("read_p999_ms", ol_pct_ms(all.read_ns, all.n, 99.9));
    ol_json_num("max_send_lag_ms", (double)all.max_lag_ns / 1e6);
    ol_json_num("max_gen_lag_ms", (double)all.max_gen_lag_ns / 1e6);
    printf(",\"gen_late_1ms\":%" PRIu64, all.gen_late);
    if (o.burst > 0) {
        /* Per round, averaged: how long the sends took, and when the first answer ended. */
        int nr = th[0].st.burst_rounds;
        ol_json_num("burst_send_ms", nr ? (double)th[0].st.burst_send_ns / nr / 1e6 : NAN);
        ol_json_num("burst_first_ms", nr ? (double)th[0].st.burst_first_ns / nr / 1e6 : NAN);
    }
    ol_json_num("gen_cpu_s", cpu_s);
    ol_json_num("gen_cpu_us_per_req", all.n ? cpu_s * 1e6 / (double)all.n : NAN);
    printf("}\n");
    rc = all.n > 0 ? 0 : 1;
    for (int i = 0; i < o.threads; i++)
        ol_thread_free(&th[i]);
    free(th);
    free(all.lat_ns);
    free(all.svc_ns);
    free(all.read_ns);
    free(ol_zipf_cdf);
    return rc;
}
