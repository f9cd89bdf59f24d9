/* cmd/cachewarpd.c - the supervisor: parses the config, binds the listen socket once,
 * maps the shared-memory segment, forks the children and restarts any that dies, and
 * stops them all gracefully on SIGTERM/SIGINT. It never touches the cache itself beyond
 * checking, before the first fork, that the L1 file opens (so that a damaged file is moved
 * aside once, not by N children at once). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/child.h"
#include "workers/clock.h"
#include "workers/refresher.h"
#include "workers/stats.h"
#include "workers/worker.h"

#define CW_VERSION         "0.1.0"
#define CW_DEFAULT_CONFIG  "/etc/cachewarp/cachewarp.conf"
#define SUP_LISTEN_BACKLOG 4096
#define SUP_BACKOFF_MIN_MS 100
#define SUP_BACKOFF_MAX_MS 5000
#define SUP_STABLE_MS      10000 /* a child that lived this long restarts without backoff */
#define SUP_KILL_EXTRA_MS  2000  /* after the grace, before SIGKILL */
#define SUP_RETIRING_MAX   (2 * CW_LIMIT_WORKERS + 8)

enum sup_kind {
    SUP_WORKER = 0,
    SUP_REFRESHER,
    SUP_STATS,
};

static const char *const sup_kind_names[] = {"worker", "refresher", "stats"};

struct sup;
static void sup_reload(struct sup *s);

struct sup_child {
    enum sup_kind kind;
    int index;
    int slot;
    pid_t pid;             /* 0 = not running */
    int64_t started_ms;    /* monotonic */
    int64_t restart_at_ms; /* when pid == 0: when to fork it again */
    int64_t backoff_ms;
};

struct sup {
    struct cw_config cfg;
    struct cw_seg *seg;
    int listen_fd;
    int refresh_fd; /* eventfd: workers wake the refresher */
    int stats_fd;   /* stats.listen, bound here so that it outlives reloads; -1 for none */
    struct sup_child *children;
    size_t child_count;
    pid_t retiring[SUP_RETIRING_MAX]; /* children of an older config, finishing up */
    size_t retiring_count;
    bool stopping;
};

static void sup_usage(FILE *out)
{
    fprintf(out, "usage: cachewarpd [-c FILE] [-t] [--version] [--help]\n"
                 "  -c, --config FILE  configuration file (default " CW_DEFAULT_CONFIG ")\n"
                 "  -t, --test         check the configuration and exit 0 (ok) or 1\n"
                 "  -v, --version      print the version and exit\n"
                 "  -h, --help         print this help and exit\n");
}

/* Binds the listen socket: the fd, or -1 with the cause logged. */
static int sup_bind(const char *listen_addr)
{
    char host[256];
    char port_s[16];
    struct addrinfo hints = {0}, *ai = NULL;
    int port, fd = -1, one = 1, rc;

    if (cw_config_split_hostport(listen_addr, host, sizeof(host), &port) < 0) {
        cw_err("supervisor: listen \"%s\": not host:port", listen_addr);
        return -1;
    }
    snprintf(port_s, sizeof(port_s), "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &ai);
    if (rc != 0) {
        cw_err("supervisor: listen %s: %s", listen_addr, gai_strerror(rc));
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        cw_err("supervisor: socket: %s", strerror(errno));
        goto out_free_ai;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
        cw_err("supervisor: bind %s: %s", listen_addr, strerror(errno));
        goto out_close_fd;
    }
    if (listen(fd, SUP_LISTEN_BACKLOG) == -1) {
        cw_err("supervisor: listen %s: %s", listen_addr, strerror(errno));
        goto out_close_fd;
    }
    freeaddrinfo(ai);
    return fd;

out_close_fd:
    close(fd);
    fd = -1;
out_free_ai:
    freeaddrinfo(ai);
    return fd;
}

static void sup_spawn(struct sup *s, struct sup_child *c)
{
    pid_t pid = fork();

    if (pid == -1) {
        cw_err("supervisor: fork %s %d: %s", sup_kind_names[c->kind], c->index, strerror(errno));
        c->restart_at_ms = cw_clock_mono_ms() + c->backoff_ms;
        return;
    }
    if (pid == 0) {
        struct cw_child_ctx ctx = {.cfg = &s->cfg,
                                   .seg = s->seg,
                                   .index = c->index,
                                   .slot = c->slot,
                                   .listen_fd = -1,
                                   .wake_fd = s->refresh_fd,
                                   .cmd_fd = -1};
        int status;
        if (c->kind == SUP_WORKER) {
            if (s->stats_fd != -1) close(s->stats_fd); /* served by the stats process */
            ctx.listen_fd = s->listen_fd;
            status = cw_worker_run(&ctx);
        } else if (c->kind == SUP_STATS) {
            close(s->listen_fd); /* stats serves its own socket, bound by the supervisor */
            ctx.listen_fd = s->stats_fd;
            status = cw_stats_run(&ctx);
        } else {
            close(s->listen_fd); /* the refresher serves no client */
            if (s->stats_fd != -1) close(s->stats_fd);
            status = cw_refresher_run(&ctx);
        }
        _exit(status);
    }
    c->pid = pid;
    c->started_ms = cw_clock_mono_ms();
    cw_info("supervisor: %s %d started, pid %d", sup_kind_names[c->kind], c->index, (int)pid);
}

/* Records one child's exit and schedules its restart. */
static void sup_on_exit(struct sup *s, pid_t pid, int wstatus)
{
    for (size_t i = 0; i < s->retiring_count; i++) {
        if (s->retiring[i] != pid) continue;
        s->retiring[i] = s->retiring[--s->retiring_count];
        cw_info("supervisor: pid %d of the previous configuration exited", (int)pid);
        return;
    }
    for (size_t i = 0; i < s->child_count; i++) {
        struct sup_child *c = &s->children[i];
        if (c->pid != pid) continue;
        int64_t now = cw_clock_mono_ms();
        c->pid = 0;
        if (s->stopping) return;
        if (now - c->started_ms >= SUP_STABLE_MS) c->backoff_ms = SUP_BACKOFF_MIN_MS;
        c->restart_at_ms = now + c->backoff_ms;
        if (WIFSIGNALED(wstatus))
            cw_warn("supervisor: %s %d (pid %d) killed by signal %d; restart in %lld ms",
                    sup_kind_names[c->kind], c->index, (int)pid, WTERMSIG(wstatus),
                    (long long)c->backoff_ms);
        else
            cw_warn("supervisor: %s %d (pid %d) exited with status %d; restart in %lld ms",
                    sup_kind_names[c->kind], c->index, (int)pid, WEXITSTATUS(wstatus),
                    (long long)c->backoff_ms);
        c->backoff_ms =
            c->backoff_ms * 2 > SUP_BACKOFF_MAX_MS ? SUP_BACKOFF_MAX_MS : c->backoff_ms * 2;
        atomic_fetch_add(&s->seg->worker_restarts, 1);
        return;
    }
}

static void sup_reap(struct sup *s)
{
    int wstatus;
    pid_t pid;

    while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0)
        sup_on_exit(s, pid, wstatus);
}

/* Children of the running config plus the retiring ones of older configs. */
static size_t sup_running(const struct sup *s)
{
    size_t n = s->retiring_count;

    for (size_t i = 0; i < s->child_count; i++)
        n += s->children[i].pid != 0;
    return n;
}

static void sup_signal_all(struct sup *s, int sig)
{
    for (size_t i = 0; i < s->child_count; i++)
        if (s->children[i].pid != 0) kill(s->children[i].pid, sig);
    for (size_t i = 0; i < s->retiring_count; i++)
        kill(s->retiring[i], sig);
}

static void sup_signal_workers(struct sup *s, int sig)
{
    for (size_t i = 0; i < s->child_count; i++)
        if (s->children[i].pid != 0 && s->children[i].kind == SUP_WORKER)
            kill(s->children[i].pid, sig);
}

/* Graceful stop: children stop accepting and finish in-flight requests within the grace;
 * what is left after that gets SIGKILL. */
static void sup_stop(struct sup *s)
{
    int64_t deadline = cw_clock_mono_ms() + s->cfg.shutdown_grace_ms + SUP_KILL_EXTRA_MS;
    struct timespec ts = {0, 20 * 1000 * 1000};

    s->stopping = true;
    sd_notify(0, "STOPPING=1");
    cw_notice("supervisor: stopping %zu children (grace %lld ms)", sup_running(s),
              (long long)s->cfg.shutdown_grace_ms);
    sup_signal_all(s, SIGTERM);
    while (sup_running(s) > 0 && cw_clock_mono_ms() < deadline) {
        sup_reap(s);
        nanosleep(&ts, NULL);
    }
    if (sup_running(s) > 0) {
        cw_warn("supervisor: %zu children did not stop in time; killing", sup_running(s));
        sup_signal_all(s, SIGKILL);
        while (sup_running(s) > 0) {
            int wstatus;
            pid_t pid = waitpid(-1, &wstatus, 0);
            if (pid == -1 && errno != EINTR) break;
            if (pid > 0) sup_on_exit(s, pid, wstatus);
        }
    }
}

static void sup_restart_due(struct sup *s)
{
    int64_t now = cw_clock_mono_ms();

    for (size_t i = 0; i < s->child_count; i++) {
        struct sup_child *c = &s->children[i];
        if (c->pid == 0 && now >= c->restart_at_ms) sup_spawn(s, c);
    }
}

/* The supervisor's loop: signals arrive through sigtimedwait, so nothing runs in a
 * signal handler. */
static int sup_loop(struct sup *s)
{
    sigset_t set;
    uint64_t wd_usec = 0;
    int64_t next_wd = 0;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    if (sd_watchdog_enabled(0, &wd_usec) <= 0) wd_usec = 0;
    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) break;
        if (sig == SIGHUP) sup_reload(s);
        if (sig == SIGUSR1) sup_signal_workers(s, SIGUSR1);
        sup_reap(s);
        sup_restart_due(s);
        if (wd_usec > 0 && cw_clock_mono_ms() >= next_wd) {
            sd_notify(0, "WATCHDOG=1");
            next_wd = cw_clock_mono_ms() + (int64_t)(wd_usec / 2000);
        }
    }
    sup_stop(s);
    return 0;
}

/* Opens and closes the L1 file once, so a damaged one is replaced before any child runs. */
static int sup_check_store(const struct cw_config *cfg)
{
    struct cw_store *st = NULL;
    int rc = cw_store_open(cfg->cache_path, cfg->cache_size_bytes, &st);

    cw_store_close(st);
    return rc;
}

/* Two optional strings are equal (both NULL, or the same text). */
static bool sup_same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Resolves workers = 0 to one per CPU. */
static void sup_resolve_workers(struct cw_config *cfg)
{
    long ncpu;

    if (cfg->workers != 0) return;
    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = ncpu > 0 ? (int)(ncpu > CW_LIMIT_WORKERS ? CW_LIMIT_WORKERS : ncpu) : 1;
}

/* Builds the children table for s->cfg (workers, the refresher, the stats process when
 * configured) and forks them all: 0, or -ENOMEM. */
static int sup_children_start(struct sup *s)
{
    bool stats = s->cfg.stats_listen != NULL || s->cfg.stats_textfile != NULL;
    size_t n = (size_t)s->cfg.workers + 1 + (stats ? 1 : 0);
    struct sup_child *children = calloc(n, sizeof(*children));

    if (children == NULL) return -ENOMEM;
    free(s->children);
    s->children = children;
    s->child_count = n;
    for (size_t i = 0; i < n; i++) {
        bool worker = i < (size_t)s->cfg.workers;
        bool is_stats = i == (size_t)s->cfg.workers + 1;
        s->children[i] = (struct sup_child){
            .kind = worker ? SUP_WORKER : (is_stats ? SUP_STATS : SUP_REFRESHER),
            .index = worker ? (int)i : 0,
            .slot = worker ? (int)i : (is_stats ? CW_SEG_SLOT_STATS : CW_SEG_SLOT_REFRESHER),
            .backoff_ms = SUP_BACKOFF_MIN_MS,
        };
        sup_spawn(s, &s->children[i]);
    }
    return 0;
}

/* Moves every running child to the retiring list and asks it to stop: it stops accepting,
 * finishes its in-flight requests within the grace and exits, while the new children
 * already serve from the same listen socket. */
static void sup_children_retire(struct sup *s)
{
    for (size_t i = 0; i < s->child_count; i++) {
        struct sup_child *c = &s->children[i];
        if (c->pid == 0) continue;
        if (s->retiring_count < SUP_RETIRING_MAX) s->retiring[s->retiring_count++] = c->pid;
        kill(c->pid, SIGTERM);
        c->pid = 0;
    }
}

/* SIGHUP: reads and checks the config file again; on any error the running configuration
 * stays, and the log says why. Otherwise new children start on the new configuration and
 * the old ones retire gracefully: the listen socket is never closed in between, so no
 * connection is refused. A changed listen address is bound before anything else changes. */
static void sup_reload(struct sup *s)
{
    struct cw_config next = {0}, old;
    struct cw_err err = {{0}};
    int fd = -1, stats_fd = s->stats_fd;

    sd_notify(0, "RELOADING=1");
    cw_notice("supervisor: reloading %s", s->cfg.file);
    if (cw_config_load(s->cfg.file, &next, &err) < 0) {
        cw_err("supervisor: reload: %s; keeping the running configuration", err.msg);
        goto out_ready;
    }
    sup_resolve_workers(&next);
    if (strcmp(next.listen, s->cfg.listen) != 0) {
        fd = sup_bind(next.listen);
        if (fd == -1) {
            cw_err("supervisor: reload: cannot listen on %s; keeping the running configuration",
                   next.listen);
            goto out_free_next;
        }
    }
    if (!sup_same_str(next.stats_listen, s->cfg.stats_listen)) {
        stats_fd = next.stats_listen ? sup_bind(next.stats_listen) : -1;
        if (next.stats_listen && stats_fd == -1) {
            cw_err("supervisor: reload: cannot listen on %s; keeping the running configuration",
                   next.stats_listen);
            goto out_close_fd;
        }
    }
    if ((strcmp(next.cache_path, s->cfg.cache_path) != 0 ||
         next.cache_size_bytes != s->cfg.cache_size_bytes) &&
        sup_check_store(&next) < 0) {
        cw_err("supervisor: reload: cannot open cache %s; keeping the running configuration",
               next.cache_path);
        goto out_close_stats_fd;
    }
    old = s->cfg;
    s->cfg = next;
    /* The retiring children keep their own copies of replaced sockets until they exit. */
    if (fd != -1) {
        close(s->listen_fd);
        s->listen_fd = fd;
    }
    if (stats_fd != s->stats_fd) {
        if (s->stats_fd != -1) close(s->stats_fd);
        s->stats_fd = stats_fd;
    }
    sup_children_retire(s);
    if (sup_children_start(s) < 0) cw_err("supervisor: reload: out of memory for children");
    cw_config_free(&old);
    cw_notice("supervisor: reloaded: %d workers on %s, origin %s", s->cfg.workers, s->cfg.listen,
              s->cfg.origins[0].url);
    goto out_ready;

out_close_stats_fd:
    if (stats_fd != s->stats_fd && stats_fd != -1) close(stats_fd);
out_close_fd:
    if (fd != -1) close(fd);
out_free_next:
    cw_config_free(&next);
out_ready:
    sd_notify(0, "READY=1");
}

static int sup_run(struct sup *s)
{
    sigset_t set;

    sup_resolve_workers(&s->cfg);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    sigaddset(&set, SIGUSR1); /* inherited blocked: only the workers take it, by sigwait */
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (sup_check_store(&s->cfg) < 0) return 1;
    s->listen_fd = sup_bind(s->cfg.listen);
    if (s->listen_fd == -1) return 1;
    if (s->cfg.stats_listen != NULL) {
        s->stats_fd = sup_bind(s->cfg.stats_listen);
        if (s->stats_fd == -1) return 1;
    }
    if (cw_seg_create(&s->seg) < 0) return 1;
    s->refresh_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->refresh_fd == -1) {
        cw_err("supervisor: eventfd: %s", strerror(errno));
        return 1;
    }
    if (sup_children_start(s) < 0) return 1;
    cw_notice("supervisor: cachewarpd %s listening on %s with %d workers, origin %s", CW_VERSION,
              s->cfg.listen, s->cfg.workers, s->cfg.origins[0].url);
    if (s->cfg.redis_enabled)
        cw_notice("supervisor: redis L2 is not available in this version; running L1-only");
    sd_notify(0, "READY=1");
    return sup_loop(s);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = CW_DEFAULT_CONFIG;
    struct sup s = {.listen_fd = -1, .refresh_fd = -1, .stats_fd = -1};
    struct cw_err err = {{0}};
    bool test_only = false;
    int opt, status;

    while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("cachewarpd %s\n", CW_VERSION);
            return 0;
        case 'h':
            sup_usage(stdout);
            return 0;
        default:
            sup_usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        sup_usage(stderr);
        return 1;
    }
    if (cw_config_load(path, &s.cfg, &err) < 0) {
        fprintf(stderr, "cachewarpd: %s\n", err.msg);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "cachewarpd: configuration %s is ok\n", path);
        cw_config_free(&s.cfg);
        return 0;
    }
    cw_log_init(STDERR_FILENO, s.cfg.log_level, true);
    status = sup_run(&s);
    if (s.listen_fd != -1) close(s.listen_fd);
    if (s.refresh_fd != -1) close(s.refresh_fd);
    if (s.stats_fd != -1) close(s.stats_fd);
    cw_seg_destroy(s.seg);
    free(s.children);
    cw_config_free(&s.cfg);
    if (status == 0) cw_notice("supervisor: stopped");
    return status;
}
