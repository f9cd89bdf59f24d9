/* workers/supervisor.h - the supervisor: the process that binds the listen sockets once,
 * maps the shared-memory segment, forks the children (workers, the refresher, stats),
 * restarts any that dies with backoff, reloads on SIGHUP and stops them all gracefully on
 * SIGTERM or SIGINT. It never touches the cache beyond checking, before the first fork,
 * that the L1 file opens (so a damaged file is moved aside once, not by N children).
 *
 * Owns, in the process that calls cw_supervisor_run(): the configuration, the listen and
 * stats sockets, the segment, the refresher's wake eventfd, a signalfd for SIGHUP, SIGTERM,
 * SIGINT, SIGCHLD and SIGUSR1 (blocked in the calling thread and inherited blocked by every
 * child), the supervisor's end of each child's command channel (workers/chan.h), and the
 * control socket for cwctl (workers/control.h; commands in supervisor_ctl.c). It
 * sleeps in poll() on those fds with a timeout taken from its nearest deadline (a restart's
 * backoff, the stop grace, the health ping, the systemd watchdog), so an idle supervisor
 * makes no periodic wake-ups. Single-threaded; call it from main, before any thread starts,
 * and never twice in one process. */
#ifndef CW_SUPERVISOR_H
#define CW_SUPERVISOR_H

#include "core/common.h" /* CW_MUST_CHECK */

struct cw_config;

/* Runs the supervisor on cfg until SIGTERM or SIGINT (or a start failure): the process exit
 * status, 0 after a graceful stop, 1 when it could not start (the cause logged). Takes
 * ownership of cfg's contents, even on failure: it is replaced on a good reload and freed
 * with cw_config_free() before returning. version is printed in the start line. Speaks
 * sd_notify (READY, RELOADING, STOPPING, STATUS, and WATCHDOG only while every child runs and
 * answers) when $NOTIFY_SOCKET is set. */
CW_MUST_CHECK int cw_supervisor_run(struct cw_config *cfg, const char *version);

#endif /* CW_SUPERVISOR_H */
