/* workers/supervisor_int.h - what supervisor.c (the loop, children, reload) and
 * supervisor_ctl.c (the control socket's commands, sd_notify STATUS and the watchdog's health
 * test) share. Not a public API: only those two files include it. */
#ifndef CW_SUPERVISOR_INT_H
#define CW_SUPERVISOR_INT_H

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/common.h"
#include "core/config.h"
#include "core/limits.h"
#include "workers/supervisor_listen.h"

struct cw_chan_msg;
struct cw_control;
struct cw_control_peer;
struct cw_err;
struct cw_seg;

#define SUP_LISTEN_BACKLOG 4096
/* A reload to fewer workers waits this long at least, and at most, for the queues of the
 * sockets it stops using to empty (workers/supervisor_listen.h). */
#define SUP_LISTEN_DRAIN_MIN_MS 20
#define SUP_LISTEN_DRAIN_MAX_MS 500
#define SUP_LISTEN_SWEEP_MAX    64 /* connections closed per leftover socket per pass */
#define SUP_BACKOFF_MIN_MS      100
#define SUP_BACKOFF_MAX_MS      5000
#define SUP_STABLE_MS           10000 /* a child that lived this long restarts without backoff */
#define SUP_KILL_EXTRA_MS       2000  /* after the grace, before SIGKILL */
#define SUP_RETIRING_MAX        (2 * CW_LIMIT_WORKERS + 8)
#define SUP_SIGNALS_MAX         16 /* signalfd records read per wake-up */
#define SUP_CHAN_READ_MAX       16 /* command-channel messages read per child per wake-up */
/* The health ping: one wake-up every 5 s on an idle node, and a stuck refresher replaced
 * within 15 to 20 s, well inside REFR_LEASE_MS (30 s), after which workers would find its
 * claimed refreshes orphaned anyway. */
#define SUP_PING_INTERVAL_MS 5000
#define SUP_PING_MISSES      3
/* The signalfd, a channel per child, the control listener and its clients. */
#define SUP_POLL_MAX (CW_LIMIT_WORKERS + 3 + 1 + CW_LIMIT_CTL_CLIENTS)
/* Control commands waiting on the refresher: one per control client at most. A purge may
 * run long (a prefix of 100,000 entries); an L1 figure for status should come at once. */
#define SUP_PENDING_MAX        CW_LIMIT_CTL_CLIENTS
#define SUP_PURGE_TIMEOUT_MS   120000
#define SUP_L1_STAT_TIMEOUT_MS 1000

enum sup_kind {
    SUP_WORKER = 0,
    SUP_REFRESHER,
    SUP_STATS,
    SUP_KIND_COUNT,
};

extern const char *const sup_kind_names[SUP_KIND_COUNT];

struct sup_child {
    enum sup_kind kind;
    int index;
    int slot;
    pid_t pid;             /* 0 = not running */
    int64_t started_ms;    /* monotonic */
    int64_t restart_at_ms; /* when pid == 0: when to fork it again */
    int64_t backoff_ms;
    unsigned restarts;  /* exits of this child since the daemon started (kept across reloads) */
    int cmd_fd;         /* our end of its command channel, -1 for none */
    int64_t ping_at_ms; /* when cmd_fd != -1: the next health ping */
    uint64_t ping_seq;  /* the last PING sent; 0 before the first */
    uint64_t pong_seq;  /* the last PONG that answered one */
    int ping_missed;    /* pings in a row found unanswered */
    bool health_killed; /* SIGKILL sent for not answering */
};

/* A control request waiting for the refresher's answer. */
enum sup_pending_kind {
    SUP_PENDING_FREE = 0,
    SUP_PENDING_PURGE,
    SUP_PENDING_STATUS,
};

struct sup_pending {
    enum sup_pending_kind kind;
    uint64_t ctl_id; /* the control request to answer */
    uint64_t seq;    /* of the channel message sent */
    int64_t deadline_ms;
};

struct sup {
    struct cw_config cfg;
    const char *version;
    struct cw_seg *seg;
    struct sup_listen listen; /* the proxy's sockets, one per worker (supervisor_listen.h) */
    bool steer_partial;       /* the last steering left a worker out */
    int refresh_fd;           /* eventfd: workers wake the refresher */
    int stats_fd;           /* stats.listen, bound here so that it outlives reloads; -1 for none */
    int sig_fd;             /* signalfd for the signals of sup_sigset() */
    struct cw_control *ctl; /* the control socket; NULL once stopping */
    int64_t started_ms;     /* monotonic, for uptime */
    struct sup_child *children;
    size_t child_count;
    pid_t retiring[SUP_RETIRING_MAX]; /* children of an older config, finishing up */
    size_t retiring_count;
    bool stopping;
    bool stop_killed;         /* SIGKILL sent to what outlived the grace */
    int64_t stop_deadline_ms; /* when stopping: the end of the grace */
    uint64_t wd_usec;         /* systemd watchdog interval, 0 when off */
    int64_t next_wd_ms;
    bool wd_withheld; /* the last watchdog tick found a child down or not answering */
    uint64_t cmd_seq; /* the last seq of a command sent to the refresher */
    /* The last good reload's changed settings that only a restart applies, as JSON strings
     * ("\"control.socket\",\"control.group\""), "" for none: told to cwctl. */
    char reload_restart[64];
    struct sup_pending pending[SUP_PENDING_MAX];
};

/* supervisor.c */

/* Reads the config file again and, when it is valid, replaces the children with ones on the
 * new configuration: 0, or -errno with err saying why (file:line: setting: why) while the
 * running configuration stays. Speaks RELOADING and READY to systemd. */
CW_MUST_CHECK int sup_reload(struct sup *s, struct cw_err *err);
/* The running refresher, or NULL (restarting, or without a channel). */
struct sup_child *sup_refresher(struct sup *s);

/* supervisor_ctl.c */

/* The control socket's handler (cw_control_fn): cls is the struct sup. */
void sup_ctl_on_request(void *cls, uint64_t id, const char *line, size_t len,
                        const struct cw_control_peer *peer);
/* A refresher's answer to a command (PURGED, L1_STATS): replies to the control client. */
void sup_ctl_on_answer(struct sup *s, const struct cw_chan_msg *m);
/* Fails every pending command with why (the refresher went away), or only those past their
 * deadline when now_ms >= 0. */
void sup_ctl_expire(struct sup *s, int64_t now_ms, const char *why);
/* The nearest pending deadline, or INT64_MAX. */
int64_t sup_ctl_deadline(const struct sup *s);
/* True when a command waits on the refresher's answer (its channel is then polled for input). */
bool sup_ctl_has_pending(const struct sup *s);
/* "running", or why c is not: "restarting", "killed", "stopped", "exiting",
 * "not-answering" (no heartbeat, or health pings unanswered). */
const char *sup_ctl_child_state(const struct sup *s, const struct sup_child *c, int64_t now);
/* True when every child runs and none is stopped or failing its health ping: the condition
 * for WATCHDOG=1. why gets the first culprit when false. */
bool sup_ctl_children_healthy(const struct sup *s, char *why, size_t size);
/* Sends STATUS= (a one-line summary) to systemd. */
void sup_ctl_notify_status(const struct sup *s);

#endif /* CW_SUPERVISOR_INT_H */
