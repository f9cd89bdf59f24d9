/* workers/supervisor.c - see workers/supervisor.h.
 *
 * One loop, sup_loop(), owns the process from the first fork to the last reap:
 *
 *   poll(signalfd, child channels; timeout = nearest deadline)
 *     -> signals: SIGHUP reload, SIGTERM/SIGINT begin the stop, SIGUSR1 to the workers
 *     -> reap every exited child (SIGCHLD coalesces, so waitpid until none is left)
 *     -> running:  fork the children whose backoff has run out
 *        stopping: done when no child is left; SIGKILL what outlives the grace
 *     -> the refresher's health ping, every SUP_PING_INTERVAL_MS
 *     -> the systemd watchdog, when it is enabled
 *
 * Nothing runs in a signal handler: every signal it takes is blocked and read from the
 * signalfd, so a signal is just another readable fd.
 *
 * The refresher gets a command channel (workers/chan.h). Its first use is a health check:
 * the supervisor sends a PING every SUP_PING_INTERVAL_MS and, at the next one, reads the
 * PONG that should have come back. It does not poll the channel for input, so an answer
 * costs no extra wake-up; it polls only for the hang-up. A refresher that leaves
 * SUP_PING_MISSES pings in a row unanswered is stuck (a deadlock, an LMDB lock that is never
 * released, SIGSTOP) and does no refreshing, reaping or eviction: it is killed and, like any
 * dead child, restarted with backoff and counted. */
#include "workers/supervisor.h"

#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/chan.h"
#include "workers/child.h"
#include "workers/clock.h"
#include "workers/config_file.h"
#include "workers/control.h"
#include "workers/refresher.h"
#include "workers/stats.h"
#include "workers/supervisor_int.h"
#include "workers/worker.h"

const char *const sup_kind_names[SUP_KIND_COUNT] = {"worker", "refresher", "stats"};

static void sup_sigset(sigset_t *set);
static void sup_spawn(struct sup *s, struct sup_child *c);
static void sup_on_exit(struct sup *s, pid_t pid, int wstatus);
static void sup_reap(struct sup *s);
static size_t sup_running(const struct sup *s);
static void sup_signal_all(struct sup *s, int sig);
static void sup_signal_workers(struct sup *s, int sig);
static void sup_stop_begin(struct sup *s);
static void sup_restart_due(struct sup *s, int64_t now);
static void sup_on_hup(struct sup *s);
static int sup_poll_timeout(const struct sup *s, int64_t now);
static void sup_on_signals(struct sup *s);
static void sup_watchdog(struct sup *s, int64_t now);
static void sup_steer(struct sup *s, int64_t now);
static void sup_chan_close(struct sup_child *c);
static void sup_health(struct sup *s, struct sup_child *c, int64_t now);
static void sup_chan_read(struct sup *s, struct sup_child *c);
static void sup_chan_gone(struct sup *s, struct sup_child *c);
static int sup_control_open(struct sup *s);
static int sup_loop(struct sup *s);
static int sup_check_store(const struct cw_config *cfg);
static bool sup_same_str(const char *a, const char *b);
static void sup_resolve_workers(struct cw_config *cfg);
static int sup_children_start(struct sup *s);
static void sup_children_retire(struct sup *s);
static int sup_signals_block(void);
static int sup_start(struct sup *s);
static void sup_free(struct sup *s);

/* The signals the supervisor takes, all through its signalfd. */
static void sup_sigset(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGCHLD);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGUSR1);
}

int cw_supervisor_run(struct cw_config *cfg, const char *version)
{
    struct sup s = {
        .cfg = *cfg, .version = version, .refresh_fd = -1, .stats_fd = -1, .sig_fd = -1};
    int status;

    *cfg = (struct cw_config){0}; /* ours now */
    status = sup_start(&s);
    if (status == 0) status = sup_loop(&s);
    sup_free(&s);
    if (status == 0) cw_notice("supervisor: stopped");
    return status;
}

/* ---- the loop ---- */

/* Runs until the stop completes: the exit status. */
static int sup_loop(struct sup *s)
{
    struct pollfd pfd[SUP_POLL_MAX];
    struct sup_child *chan_of[SUP_POLL_MAX];

    for (;;) {
        int64_t now = cw_clock_mono_ms();
        nfds_t nfds = 1, nchan, nctl = 0;
        int n;

        pfd[0] = (struct pollfd){.fd = s->sig_fd, .events = POLLIN};
        /* Channels are polled for their hang-up only (events 0) unless a control command
         * waits on an answer: health answers are read when the next ping is due, so they
         * cost no wake-up of their own. */
        for (size_t i = 0; i < s->child_count && nfds < SUP_POLL_MAX; i++) {
            struct sup_child *c = &s->children[i];
            if (c->cmd_fd == -1) continue;
            chan_of[nfds] = c;
            pfd[nfds++] =
                (struct pollfd){.fd = c->cmd_fd, .events = sup_ctl_has_pending(s) ? POLLIN : 0};
        }
        nchan = nfds;
        if (s->ctl != NULL) {
            nctl = cw_control_pollfds(s->ctl, pfd + nfds, SUP_POLL_MAX - nfds);
            nfds += nctl;
        }
        n = poll(pfd, nfds, sup_poll_timeout(s, now));
        if (n == -1 && errno != EINTR) {
            cw_err("supervisor: poll: %s", strerror(errno));
            if (!s->stopping) sup_stop_begin(s);
        }
        /* Channels first, then control, then signals: a reload (from either) replaces the
         * table chan_of points into. */
        for (nfds_t i = 1; n > 0 && i < nchan; i++) {
            if (pfd[i].revents & POLLIN) {
                sup_chan_read(s, chan_of[i]);
            } else if (pfd[i].revents != 0) {
                sup_chan_gone(s, chan_of[i]); /* the child has gone */
            }
        }
        now = cw_clock_mono_ms();
        sup_ctl_expire(s, now, NULL);
        if (s->ctl != NULL) cw_control_process(s->ctl, pfd + nchan, n > 0 ? nctl : 0, now);
        if (n > 0 && (pfd[0].revents & POLLIN)) sup_on_signals(s);
        sup_reap(s);
        now = cw_clock_mono_ms();
        if (s->stopping) {
            if (sup_running(s) == 0) return 0;
            if (!s->stop_killed && now >= s->stop_deadline_ms) {
                cw_warn("supervisor: %zu children did not stop in time; killing", sup_running(s));
                sup_signal_all(s, SIGKILL);
                s->stop_killed = true;
            }
            continue;
        }
        sup_restart_due(s, now);
        for (size_t i = 0; i < s->child_count; i++)
            sup_health(s, &s->children[i], now);
        sup_watchdog(s, now);
        unsigned swept = sup_listen_sweep(&s->listen);
        if (swept > 0)
            cw_warn("supervisor: closed %u connections that reached the socket of a worker a "
                    "reload removed",
                    swept);
        sup_steer(s, now);
    }
}

/* poll()'s timeout: the time to the nearest deadline, or -1 (sleep until a signal) when
 * there is none. Rounded up, so that a deadline is never polled for early and again. */
static int sup_poll_timeout(const struct sup *s, int64_t now)
{
    int64_t next = INT64_MAX;

    if (s->stopping) {
        if (!s->stop_killed) next = s->stop_deadline_ms;
    } else {
        for (size_t i = 0; i < s->child_count; i++) {
            const struct sup_child *c = &s->children[i];
            if (c->pid == 0 && c->restart_at_ms < next) next = c->restart_at_ms;
            /* Not once it is killed: its ping is no longer due, and the reap comes by SIGCHLD. */
            if (c->pid != 0 && c->cmd_fd != -1 && !c->health_killed && c->ping_at_ms < next)
                next = c->ping_at_ms;
        }
        if (s->wd_usec > 0 && s->next_wd_ms < next) next = s->next_wd_ms;
    }
    if (s->ctl != NULL && cw_control_deadline(s->ctl) < next) next = cw_control_deadline(s->ctl);
    if (sup_ctl_deadline(s) < next) next = sup_ctl_deadline(s);
    if (next == INT64_MAX) return -1;
    if (next <= now) return 0;
    return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

/* Reads what the signalfd holds (bounded per call; the rest wakes the next poll). */
static void sup_on_signals(struct sup *s)
{
    struct signalfd_siginfo si;

    for (int i = 0; i < SUP_SIGNALS_MAX; i++) {
        ssize_t n = read(s->sig_fd, &si, sizeof(si));
        if (n == -1) {
            if (errno != EAGAIN && errno != EINTR)
                cw_err("supervisor: read signalfd: %s", strerror(errno));
            return;
        }
        if (n != (ssize_t)sizeof(si)) {
            cw_err("supervisor: read signalfd: %zd bytes", n);
            return;
        }
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            if (!s->stopping) sup_stop_begin(s);
            break;
        case SIGHUP:
            if (!s->stopping) sup_on_hup(s);
            break;
        case SIGUSR1:
            sup_signal_workers(s, SIGUSR1); /* logrotate: workers reopen the access log */
            break;
        default: /* SIGCHLD: every pass of the loop reaps */
            break;
        }
    }
}

/* WATCHDOG=1 every half interval, but only while every child runs and answers: a child
 * that is down, stopped (SIGSTOP) or not answering its health pings withholds it, so that
 * systemd restarts a node that no longer serves instead of trusting the supervisor alone. */
static void sup_watchdog(struct sup *s, int64_t now)
{
    char why[128];

    if (s->wd_usec == 0 || now < s->next_wd_ms) return;
    s->next_wd_ms = now + (int64_t)(s->wd_usec / 2000);
    if (!sup_ctl_children_healthy(s, why, sizeof(why))) {
        if (!s->wd_withheld) cw_warn("supervisor: withholding the systemd watchdog: %s", why);
        s->wd_withheld = true;
        return;
    }
    if (s->wd_withheld) cw_notice("supervisor: every child answers again; watchdog resumed");
    s->wd_withheld = false;
    sd_notify(0, "WATCHDOG=1");
    sup_ctl_notify_status(s);
}

/* Steers new connections to the workers that serve (supervisor_listen.h). Looked at on every
 * pass of the loop, with no timer of its own: at once after a reap or a reload; a worker
 * that stops answering is left out at the first pass after its heartbeat is
 * CW_SEG_BEAT_STALE_MS old (the passes come at least every SUP_PING_INTERVAL_MS, and every
 * half WatchdogSec under systemd's watchdog). */
static void sup_steer(struct sup *s, int64_t now)
{
    bool serving[CW_LIMIT_WORKERS] = {0};
    char away[160] = "";
    int nworkers = 0, nserving = 0;

    if (s->stopping || s->listen.count < 2) return;
    for (size_t i = 0; i < s->child_count; i++) {
        const struct sup_child *c = &s->children[i];
        if (c->kind != SUP_WORKER || c->index >= CW_LIMIT_WORKERS) continue;
        const char *st = sup_ctl_child_state(s, c, now);
        serving[c->index] = strcmp(st, "running") == 0;
        if (c->index + 1 > nworkers) nworkers = c->index + 1;
        if (serving[c->index]) {
            nserving++;
        } else if (strlen(away) + 40 < sizeof(away)) {
            snprintf(away + strlen(away), sizeof(away) - strlen(away), "%sworker %d (%s)",
                     away[0] ? ", " : "", c->index, st);
        }
    }
    if (sup_listen_steer(&s->listen, serving, nworkers) != 1) return;
    if (nserving == nworkers) {
        if (s->steer_partial) cw_notice("supervisor: new connections go to every worker again");
    } else if (nserving == 0) {
        cw_warn("supervisor: no worker serves: new connections wait in the sockets' queues");
    } else {
        cw_warn("supervisor: new connections go to %d of %d workers, not to %s", nserving, nworkers,
                away);
    }
    s->steer_partial = nserving != nworkers;
}

/* ---- the refresher's health ---- */

/* Closes our end of a child's channel (the child has exited, or is being retired: either way
 * it reads end of file). */
static void sup_chan_close(struct sup_child *c)
{
    if (c->cmd_fd == -1) return;
    close(c->cmd_fd);
    c->cmd_fd = -1;
}

/* The child's channel has hung up: closes it and fails the commands that waited on it. */
static void sup_chan_gone(struct sup *s, struct sup_child *c)
{
    sup_chan_close(c);
    if (c->kind == SUP_REFRESHER)
        sup_ctl_expire(s, -1, "the refresher exited before answering; see the daemon's log");
}

/* Reads what came back on c's channel (bounded): health answers, and the answers to control
 * commands, which go to their clients. */
static void sup_chan_read(struct sup *s, struct sup_child *c)
{
    static struct cw_chan_msg m; /* 8 KiB: off the stack; single-threaded */

    for (int i = 0; i < SUP_CHAN_READ_MAX && c->cmd_fd != -1; i++) {
        int rc = cw_chan_recv(c->cmd_fd, &m);
        if (rc == -EAGAIN) return;
        if (rc == -EPIPE) {
            sup_chan_gone(s, c);
            return;
        }
        if (rc < 0) {
            cw_warn("supervisor: %s %d (pid %d): command channel: %s", sup_kind_names[c->kind],
                    c->index, (int)c->pid, strerror(-rc));
            if (rc != -EBADMSG) return;
            continue;
        }
        if (m.hdr.type == CW_CHAN_PURGED || m.hdr.type == CW_CHAN_PURGING ||
            m.hdr.type == CW_CHAN_L1_STATS) {
            sup_ctl_on_answer(s, &m);
        } else if (m.hdr.type == CW_CHAN_PONG && m.hdr.seq == c->ping_seq) {
            c->pong_seq = m.hdr.seq;
            cw_debug("supervisor: %s %d (pid %d) answered health ping %llu",
                     sup_kind_names[c->kind], c->index, (int)c->pid, (unsigned long long)m.hdr.seq);
        } else if (m.hdr.type != CW_CHAN_PONG) {
            cw_warn("supervisor: %s %d (pid %d): unexpected %s on the command channel",
                    sup_kind_names[c->kind], c->index, (int)c->pid, cw_chan_type_name(m.hdr.type));
        } /* else a late answer to an older ping: it proves nothing about the last one */
    }
}

/* When c's ping is due: checks that the last one was answered, kills c after
 * SUP_PING_MISSES unanswered ones in a row, and sends the next. */
static void sup_health(struct sup *s, struct sup_child *c, int64_t now)
{
    int rc;

    if (c->pid == 0 || c->cmd_fd == -1 || c->health_killed || now < c->ping_at_ms) return;
    c->ping_at_ms = now + SUP_PING_INTERVAL_MS;
    sup_chan_read(s, c);
    if (c->cmd_fd == -1) return;
    c->ping_missed = c->pong_seq == c->ping_seq ? 0 : c->ping_missed + 1;
    if (c->ping_missed >= SUP_PING_MISSES) {
        cw_err("supervisor: %s %d (pid %d) answered none of %d health pings in %d s; killing it",
               sup_kind_names[c->kind], c->index, (int)c->pid, c->ping_missed,
               c->ping_missed * SUP_PING_INTERVAL_MS / 1000);
        if (kill(c->pid, SIGKILL) == -1)
            cw_err("supervisor: kill %d: %s", (int)c->pid, strerror(errno));
        c->health_killed = true;
        return;
    }
    if (c->pong_seq != c->ping_seq) return; /* still waiting: one ping in flight at a time */
    /* A ping that cannot be sent is never answered: it counts as a miss at the next one. */
    rc = cw_chan_send(c->cmd_fd, CW_CHAN_PING, ++c->ping_seq, NULL, 0);
    if (rc < 0 && rc != -EPIPE)
        cw_warn("supervisor: %s %d (pid %d): health ping: %s", sup_kind_names[c->kind], c->index,
                (int)c->pid, strerror(-rc));
}

/* ---- children ---- */

static void sup_spawn(struct sup *s, struct sup_child *c)
{
    int child_cmd_fd = -1;
    pid_t pid;

    /* Without a channel the refresher still runs, only without the health check. */
    if (c->kind == SUP_REFRESHER && cw_chan_pair(&c->cmd_fd, &child_cmd_fd) < 0) {
        cw_warn("supervisor: refresher starts without a command channel");
        c->cmd_fd = -1;
    }
    pid = fork();
    if (pid == -1) {
        cw_err("supervisor: fork %s %d: %s", sup_kind_names[c->kind], c->index, strerror(errno));
        c->restart_at_ms = cw_clock_mono_ms() + c->backoff_ms;
        if (child_cmd_fd != -1) close(child_cmd_fd);
        sup_chan_close(c);
        return;
    }
    if (pid == 0) {
        struct cw_child_ctx ctx = {.cfg = &s->cfg,
                                   .seg = s->seg,
                                   .index = c->index,
                                   .slot = c->slot,
                                   .listen_fd = -1,
                                   .wake_fd = s->refresh_fd,
                                   .cmd_fd = child_cmd_fd};
        int status;
        /* A signalfd reads the signals of the process that reads it: the child takes its
         * own signals by sigwait() or its own signalfd, never through this one. */
        close(s->sig_fd);
        cw_control_forget(s->ctl); /* the listener and clients are the supervisor's */
        /* Our ends of every channel, its own included: a child that held one would keep its
         * sibling from ever reading end of file. */
        for (size_t i = 0; i < s->child_count; i++)
            sup_chan_close(&s->children[i]);
        if (c->kind == SUP_WORKER) {
            if (s->stats_fd != -1) close(s->stats_fd); /* served by the stats process */
            ctx.listen_fd = sup_listen_fd(&s->listen, c->index);
            sup_listen_close_except(&s->listen, ctx.listen_fd); /* its siblings' */
            status = cw_worker_run(&ctx);
        } else if (c->kind == SUP_STATS) {
            sup_listen_close_except(&s->listen, -1); /* stats serves its own socket */
            ctx.listen_fd = s->stats_fd;
            status = cw_stats_run(&ctx);
        } else {
            sup_listen_close_except(&s->listen, -1); /* the refresher serves no client */
            if (s->stats_fd != -1) close(s->stats_fd);
            status = cw_refresher_run(&ctx);
        }
        _exit(status);
    }
    if (child_cmd_fd != -1) close(child_cmd_fd);
    c->pid = pid;
    c->started_ms = cw_clock_mono_ms();
    c->ping_at_ms = c->started_ms; /* the first answer arrives while it starts */
    c->ping_seq = c->pong_seq = 0;
    c->ping_missed = 0;
    c->health_killed = false;
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
        sup_chan_gone(s, c);
        if (s->stopping) return;
        c->restarts++;
        if (now - c->started_ms >= SUP_STABLE_MS) c->backoff_ms = SUP_BACKOFF_MIN_MS;
        c->restart_at_ms = now + c->backoff_ms;
        if (WIFSIGNALED(wstatus)) {
            cw_warn("supervisor: %s %d (pid %d) killed by signal %d; restart in %lld ms",
                    sup_kind_names[c->kind], c->index, (int)pid, WTERMSIG(wstatus),
                    (long long)c->backoff_ms);
        } else {
            cw_warn("supervisor: %s %d (pid %d) exited with status %d; restart in %lld ms",
                    sup_kind_names[c->kind], c->index, (int)pid, WEXITSTATUS(wstatus),
                    (long long)c->backoff_ms);
        }
        c->backoff_ms =
            c->backoff_ms * 2 > SUP_BACKOFF_MAX_MS ? SUP_BACKOFF_MAX_MS : c->backoff_ms * 2;
        atomic_fetch_add(&s->seg->worker_restarts, 1);
        sup_ctl_notify_status(s);
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
 * the loop sends SIGKILL to what is left after that and returns once all are reaped. */
static void sup_stop_begin(struct sup *s)
{
    s->stopping = true;
    s->stop_deadline_ms = cw_clock_mono_ms() + s->cfg.shutdown_grace_ms + SUP_KILL_EXTRA_MS;
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    /* A stopping daemon takes no more commands: cwctl finds the socket gone. */
    sup_ctl_expire(s, -1, "the daemon is stopping");
    cw_control_close(s->ctl);
    s->ctl = NULL;
    cw_notice("supervisor: stopping %zu children (grace %lld ms)", sup_running(s),
              (long long)s->cfg.shutdown_grace_ms);
    sup_signal_all(s, SIGTERM);
}

static void sup_restart_due(struct sup *s, int64_t now)
{
    for (size_t i = 0; i < s->child_count; i++) {
        struct sup_child *c = &s->children[i];
        if (c->pid == 0 && now >= c->restart_at_ms) sup_spawn(s, c);
    }
}

/* Builds the children table for s->cfg (workers, the refresher, the stats process when
 * configured) and forks them all: 0, or -ENOMEM. */
static int sup_children_start(struct sup *s)
{
    bool stats = s->cfg.stats_listen != NULL || s->cfg.stats_textfile != NULL;
    size_t n = (size_t)s->cfg.workers + 1 + (stats ? 1 : 0);
    struct sup_child *children = calloc(n, sizeof(*children));

    if (children == NULL) return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        bool worker = i < (size_t)s->cfg.workers;
        bool is_stats = i == (size_t)s->cfg.workers + 1;
        children[i] = (struct sup_child){
            .kind = worker ? SUP_WORKER : (is_stats ? SUP_STATS : SUP_REFRESHER),
            .index = worker ? (int)i : 0,
            .slot = worker ? (int)i : (is_stats ? CW_SEG_SLOT_STATS : CW_SEG_SLOT_REFRESHER),
            .backoff_ms = SUP_BACKOFF_MIN_MS,
            .cmd_fd = -1,
        };
        /* The same role and number keeps its restart count across a reload (cwctl status). */
        for (size_t j = 0; j < s->child_count; j++)
            if (s->children[j].kind == children[i].kind &&
                s->children[j].index == children[i].index)
                children[i].restarts = s->children[j].restarts;
    }
    free(s->children);
    s->children = children;
    s->child_count = n;
    /* Only once every entry is set: a child closes every cmd_fd of the table after fork. */
    for (size_t i = 0; i < n; i++)
        sup_spawn(s, &s->children[i]);
    return 0;
}

/* Moves every running child to the retiring list and asks it to stop: it stops accepting,
 * finishes its in-flight requests within the grace and exits, while the new children
 * already serve from the same listen sockets. */
static void sup_children_retire(struct sup *s)
{
    for (size_t i = 0; i < s->child_count; i++) {
        struct sup_child *c = &s->children[i];
        if (c->pid == 0) continue;
        if (s->retiring_count < SUP_RETIRING_MAX) s->retiring[s->retiring_count++] = c->pid;
        kill(c->pid, SIGTERM);
        sup_chan_close(c);
        c->pid = 0;
    }
}

/* ---- configuration ---- */

/* Opens and closes the L1 file once, so a damaged one is replaced before any child runs,
 * and says when the file is larger than cache.size (it was used with a larger one). */
static int sup_check_store(const struct cw_config *cfg)
{
    struct cw_store *st = NULL;
    int rc = cw_store_open(cfg->cache_path, cfg->cache_size_bytes, &st);

    if (rc == 0 && cw_store_map_bytes(st) > cfg->cache_size_bytes)
        cw_notice("supervisor: %s keeps its size of %llu bytes (LMDB never shrinks a file); "
                  "cache.size %llu bounds what eviction keeps in it. To give the disk space "
                  "back, stop cachewarpd, delete the file and start it again",
                  cfg->cache_path, (unsigned long long)cw_store_map_bytes(st),
                  (unsigned long long)cfg->cache_size_bytes);
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

/* SIGHUP: a reload whose outcome only the log tells. */
static void sup_on_hup(struct sup *s)
{
    struct cw_err err = {{0}};

    if (sup_reload(s, &err) < 0) { /* logged by sup_reload() */
    }
}

/* SIGHUP and cwctl reload: reads and checks the config file again; on any error the running
 * configuration stays, and the log (and err, for cwctl) says why. Otherwise new children
 * start on the new configuration and the old ones retire gracefully: a worker's listen socket
 * passes to the new worker of its number, so no connection is refused (with fewer workers,
 * the sockets that lose theirs are steered around and drained first). A changed
 * listen address is bound before anything else changes. A changed control socket takes
 * effect at the next start. */
int sup_reload(struct sup *s, struct cw_err *err)
{
    struct cw_config next = {0}, old;
    struct sup_listen nl = {0}; /* a changed listen address's sockets */
    int stats_fd = s->stats_fd, rc;

    /* systemd (>= 253) wants the monotonic time with RELOADING=1 to match it with READY=1. */
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%lld\nSTATUS=reloading %s",
               (long long)cw_clock_mono_us(), s->cfg.file);
    cw_notice("supervisor: reloading %s", s->cfg.file);
    rc = cw_config_file_load(s->cfg.file, &next, err);
    if (rc < 0) {
        cw_err("supervisor: reload: %s; keeping the running configuration", err->msg);
        goto out_ready;
    }
    sup_resolve_workers(&next);
    rc = -EADDRNOTAVAIL;
    if (strcmp(next.listen, s->cfg.listen) != 0) {
        if (sup_listen_open(&nl, next.listen, next.workers) < 0) {
            cw_err_set(err, "%s: listen: cannot listen on %s (see the daemon's log)", s->cfg.file,
                       next.listen);
            cw_err("supervisor: reload: cannot listen on %s; keeping the running configuration",
                   next.listen);
            goto out_free_next;
        }
    }
    if (!sup_same_str(next.stats_listen, s->cfg.stats_listen)) {
        stats_fd = next.stats_listen ? sup_listen_bind_one(next.stats_listen) : -1;
        if (next.stats_listen && stats_fd == -1) {
            cw_err_set(err, "%s: stats.listen: cannot listen on %s (see the daemon's log)",
                       s->cfg.file, next.stats_listen);
            cw_err("supervisor: reload: cannot listen on %s; keeping the running configuration",
                   next.stats_listen);
            goto out_close_fd;
        }
    }
    if ((strcmp(next.cache_path, s->cfg.cache_path) != 0 ||
         next.cache_size_bytes != s->cfg.cache_size_bytes) &&
        sup_check_store(&next) < 0) {
        rc = -EIO;
        cw_err_set(err, "%s: cache.path: cannot open cache %s (see the daemon's log)", s->cfg.file,
                   next.cache_path);
        cw_err("supervisor: reload: cannot open cache %s; keeping the running configuration",
               next.cache_path);
        goto out_close_stats_fd;
    }
    s->reload_restart[0] = '\0';
    if (!sup_same_str(next.control_socket, s->cfg.control_socket))
        strcat(s->reload_restart, "\"control.socket\"");
    if (!sup_same_str(next.control_group, s->cfg.control_group))
        strcat(s->reload_restart,
               s->reload_restart[0] ? ",\"control.group\"" : "\"control.group\"");
    if (!sup_same_str(next.user, s->cfg.user) || !sup_same_str(next.group, s->cfg.group)) {
        strcat(s->reload_restart, s->reload_restart[0] ? ",\"user\"" : "\"user\"");
        cw_warn("supervisor: reload: user and group take effect at the next start (the daemon "
                "dropped root when it started)");
    }
    if (strstr(s->reload_restart, "control.") != NULL)
        cw_warn("supervisor: reload: control.socket and control.group take effect at the next "
                "start; the control socket stays %s",
                s->ctl != NULL ? cw_control_path(s->ctl) : "closed");
    old = s->cfg;
    s->cfg = next;
    /* log.level: the supervisor's now; the new children inherit it at fork, and the retiring
     * ones keep theirs until they exit. */
    if (next.log_level != old.log_level) {
        cw_log_set_level(next.log_level);
        cw_notice("supervisor: reload: log.level is now %s", cw_log_level_name(next.log_level));
    }
    /* The retiring children keep their own copies of replaced sockets until they exit. */
    if (nl.count > 0)
        sup_listen_replace(&s->listen, &nl);
    else if (next.workers != old.workers)
        sup_listen_resize(&s->listen, next.workers);
    if (stats_fd != s->stats_fd) {
        if (s->stats_fd != -1) close(s->stats_fd);
        s->stats_fd = stats_fd;
    }
    sup_children_retire(s);
    /* Origin indexes may name other origins now: breakers and server health start afresh. */
    cw_seg_origins_reset(s->seg);
    if (sup_children_start(s) < 0) cw_err("supervisor: reload: out of memory for children");
    sup_steer(s, cw_clock_mono_ms()); /* the new workers' sockets, now */
    cw_config_free(&old);
    cw_notice("supervisor: reloaded: %d workers on %s, origin %s", s->cfg.workers, s->cfg.listen,
              s->cfg.origins[0].url);
    rc = 0;
    goto out_ready;

out_close_stats_fd:
    if (stats_fd != s->stats_fd && stats_fd != -1) close(stats_fd);
out_close_fd:
    sup_listen_close_except(&nl, -1);
out_free_next:
    cw_config_free(&next);
out_ready:
    sd_notify(0, "READY=1");
    sup_ctl_notify_status(s);
    return rc;
}

struct sup_child *sup_refresher(struct sup *s)
{
    for (size_t i = 0; i < s->child_count; i++) {
        struct sup_child *c = &s->children[i];
        if (c->kind == SUP_REFRESHER && c->pid != 0 && c->cmd_fd != -1 && !c->health_killed)
            return c;
    }
    return NULL;
}

/* Opens control.socket: 0, or -errno logged. */
static int sup_control_open(struct sup *s)
{
    return cw_control_open(s->cfg.control_socket, s->cfg.control_group, sup_ctl_on_request, s,
                           &s->ctl);
}

/* ---- start and end ---- */

/* Blocks the supervisor's signals (and SIGPIPE) and opens the signalfd that reads them:
 * the fd, or -1 with the cause logged. Children inherit the mask: SIGUSR1 stays blocked
 * in them, and only the workers take it, by sigwait. */
static int sup_signals_block(void)
{
    sigset_t set;
    int fd;

    sup_sigset(&set);
    sigaddset(&set, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1) {
        cw_err("supervisor: sigprocmask: %s", strerror(errno));
        return -1;
    }
    sup_sigset(&set);
    fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd == -1) cw_err("supervisor: signalfd: %s", strerror(errno));
    return fd;
}

/* A start as root needs an account to drop to (or user = "root", said in so many words):
 * true when the start may go on, with the refusal logged otherwise. */
static bool sup_root_allowed(const struct sup *s)
{
    if (geteuid() != 0 || s->cfg.user != NULL) return true;
    cw_err("supervisor: started as root and %s sets no user: set user = \"cachewarp\" (the "
           "account to run as once the sockets are bound), or start cachewarpd as that account "
           "(systemd's User=); refusing to run as root",
           s->cfg.file);
    return false;
}

/* Started as root: becomes cfg.user (cfg.group, else the user's group, and the user's other
 * groups) now that the sockets are bound, for good. Not root: nothing to do. 0, or 1 with
 * the cause logged. The files the daemon opens from now on (the cache, the TLS files) are
 * opened as that user; a reload can no longer bind a port below 1024. */
static int sup_drop_privileges(struct sup *s)
{
    const struct passwd *pw;
    const struct group *gr;
    struct cw_err err = {{0}};
    uid_t uid;
    gid_t gid;

    if (geteuid() != 0) return 0;
    if (strcmp(s->cfg.user, "root") == 0) {
        cw_warn("supervisor: user is root: every process runs as root (not recommended: set "
                "user to an account of its own)");
        return 0;
    }
    pw = getpwnam(s->cfg.user);
    if (pw == NULL) {
        cw_err("supervisor: %s:%d: user: no such user \"%s\" on this machine", s->cfg.file,
               s->cfg.user_line, s->cfg.user);
        return 1;
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    if (s->cfg.group != NULL) {
        gr = getgrnam(s->cfg.group);
        if (gr == NULL) {
            cw_err("supervisor: %s:%d: group: no such group \"%s\" on this machine", s->cfg.file,
                   s->cfg.group_line, s->cfg.group);
            return 1;
        }
        gid = gr->gr_gid;
    }
    /* The control socket was made as root: the supervisor, as the user, removes it at exit. */
    if (s->ctl != NULL && chown(cw_control_path(s->ctl), uid, (gid_t)-1) == -1)
        cw_warn("supervisor: chown %s: %s", cw_control_path(s->ctl), strerror(errno));
    if (initgroups(pw->pw_name, gid) == -1 || setgid(gid) == -1 || setuid(uid) == -1) {
        cw_err("supervisor: cannot become user %s (uid %u, gid %u): %s", s->cfg.user, (unsigned)uid,
               (unsigned)gid, strerror(errno));
        return 1;
    }
    if (setuid(0) != -1) {
        cw_err("supervisor: still able to become root after dropping to %s; stopping", s->cfg.user);
        return 1;
    }
    cw_notice("supervisor: running as user %s (uid %u, gid %u)", s->cfg.user, (unsigned)uid,
              (unsigned)gid);
    /* The TLS files were checked as root when the file was loaded: again, as the user. */
    if (cw_config_file_check_files(s->cfg.file, &s->cfg, &err) < 0) {
        cw_err("supervisor: as user %s: %s", s->cfg.user, err.msg);
        return 1;
    }
    return 0;
}

/* Everything before the loop: 0, or 1 with the cause logged. */
static int sup_start(struct sup *s)
{
    sup_resolve_workers(&s->cfg);
    if (!sup_root_allowed(s)) return 1;
    s->sig_fd = sup_signals_block();
    if (s->sig_fd == -1) return 1;
    if (sup_listen_open(&s->listen, s->cfg.listen, s->cfg.workers) < 0) return 1;
    if (s->cfg.stats_listen != NULL) {
        s->stats_fd = sup_listen_bind_one(s->cfg.stats_listen);
        if (s->stats_fd == -1) return 1;
    }
    if (cw_seg_create(&s->seg) < 0) return 1;
    s->refresh_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->refresh_fd == -1) {
        cw_err("supervisor: eventfd: %s", strerror(errno));
        return 1;
    }
    if (sd_watchdog_enabled(0, &s->wd_usec) <= 0) s->wd_usec = 0;
    s->started_ms = cw_clock_mono_ms();
    /* Before the children: a second daemon on the same socket stops here, not after forking. */
    if (sup_control_open(s) < 0) return 1;
    if (sup_drop_privileges(s) != 0) return 1;
    /* As the user: the cache file is made, or found damaged and replaced, by its owner. */
    if (sup_check_store(&s->cfg) < 0) return 1;
    if (sup_children_start(s) < 0) return 1;
    cw_notice("supervisor: cachewarpd %s listening on %s with %d workers (%d listen sockets), "
              "origin %s",
              s->version, s->cfg.listen, s->cfg.workers, s->listen.count, s->cfg.origins[0].url);
    if (!s->cfg.redis_enabled)
        cw_notice("supervisor: redis.enabled is false: running L1-only");
    else
        cw_notice("supervisor: L2 on Redis (%s): each worker connects on its own and runs "
                  "L1-only while Redis does not answer",
                  s->cfg.redis_mode == CW_CONFIG_REDIS_CLUSTER    ? "cluster"
                  : s->cfg.redis_mode == CW_CONFIG_REDIS_SENTINEL ? "sentinel"
                                                                  : "standalone");
    sd_notify(0, "READY=1");
    sup_ctl_notify_status(s);
    return 0;
}

static void sup_free(struct sup *s)
{
    cw_control_close(s->ctl);
    sup_listen_close_except(&s->listen, -1);
    if (s->refresh_fd != -1) close(s->refresh_fd);
    if (s->stats_fd != -1) close(s->stats_fd);
    if (s->sig_fd != -1) close(s->sig_fd);
    for (size_t i = 0; i < s->child_count; i++)
        sup_chan_close(&s->children[i]);
    cw_seg_destroy(s->seg);
    free(s->children);
    cw_config_free(&s->cfg);
}
