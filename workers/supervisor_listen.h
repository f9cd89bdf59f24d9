/* workers/supervisor_listen.h - the proxy's listen sockets: one per worker, in one
 * SO_REUSEPORT group, and the steering that keeps new connections off a worker that does
 * not serve.
 *
 * With one socket shared by every worker, whichever worker runs when connections arrive
 * accepts them: a burst of new connections could go 188 to 12 between two workers, and a
 * burst of requests on them then waits on one worker's thread while the other's CPU idles
 * (docs/PERFORMANCE.md). A socket per worker in one group lets the kernel spread them.
 *
 * A worker's socket keeps taking connections while its worker is down or wedged, so the
 * supervisor attaches a classic BPF program to the group that picks, at random, among the
 * sockets of the workers that serve (sup_listen_steer()); none serving, the kernel's own
 * choice by the connection's hash.
 *
 * The group is made when the daemon starts, before it drops root: a reload that raises
 * `workers` adds sockets when it can and otherwise lets workers share (worker i serves socket
 * i modulo their number). One that lowers it first steers new connections away from the
 * sockets of the workers that go and waits until their queues are empty, and keeps those
 * sockets open, steered around (closing one would move the group's last socket into its
 * place), for a later reload to more workers. When SO_REUSEPORT is refused, every worker
 * shares one socket, as before. */
#ifndef CW_WORKERS_SUPERVISOR_LISTEN_H
#define CW_WORKERS_SUPERVISOR_LISTEN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/cc.h"
#include "core/limits.h"

struct sup_listen {
    int fd[CW_LIMIT_WORKERS]; /* in the group's order: fd[i] is the group's socket i */
    int count;                /* open, in the group; 0 when closed */
    int active;               /* the first active ones have workers; the rest are steered around */
    bool group;               /* SO_REUSEPORT: more sockets can join */
    /* The steering in force: steer[j] is the socket of the j-th serving worker. */
    int steer[CW_LIMIT_WORKERS];
    int steer_count; /* -1: none attached (the kernel's hash); -2: one to rebuild */
    bool steer_off;  /* the kernel refused a program once: not tried again */
};

/* Binds count (>= 1) sockets on addr ("host:port") in one group; a refused SO_REUSEPORT or
 * a later bind leaves fewer, shared (logged). 0, or -errno (-EINVAL: not an address) with
 * the cause logged and nothing open. */
CW_MUST_CHECK int sup_listen_open(struct sup_listen *l, const char *addr, int count);

/* One socket on addr without SO_REUSEPORT (stats.listen): the fd, or -1 with the cause
 * logged. */
CW_MUST_CHECK int sup_listen_bind_one(const char *addr);

/* On a reload that keeps the address, before the workers are replaced: want sockets in use.
 * More join the group when the kernel lets them (otherwise workers share); fewer are steered
 * to at once, after waiting (SUP_LISTEN_DRAIN_MAX_MS at most) for the queues of the others to
 * empty, while their workers still accept. */
void sup_listen_resize(struct sup_listen *l, int want);

/* Accepts and closes what reached a socket no worker serves (a race with a reload to fewer
 * workers), at most SUP_LISTEN_SWEEP_MAX a socket a call: how many, 0 nearly always. */
unsigned sup_listen_sweep(struct sup_listen *l);

/* The socket worker index serves: index modulo the sockets in use. */
int sup_listen_fd(const struct sup_listen *l, int index);

/* Steers new connections to the sockets of the serving workers (serving[i] for worker i of
 * nworkers), each worker weighing the same; none serving, to every socket in use, where the
 * connections wait for one. 1 when that changed what is in force, 0 when it
 * is unchanged, -1 when the kernel refused the program (logged once; the kernel's hash from
 * then on). */
int sup_listen_steer(struct sup_listen *l, const bool *serving, int nworkers);

/* Closes every socket but keep (-1 for all): a child's copies of its siblings' sockets. */
void sup_listen_close_except(struct sup_listen *l, int keep);

/* Moves src's sockets to dst (closing dst's): a reload on a new address. */
void sup_listen_replace(struct sup_listen *dst, struct sup_listen *src);

#endif
