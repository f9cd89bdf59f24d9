/* workers/control.h - the control socket: the supervisor's unix stream listener for cwctl.
 *
 * Owns the listening socket, the socket file (created under a temporary name with mode
 * 0660 and the configured group, then renamed into place, so it never exists with looser
 * permissions; unlinked by cw_control_close() while it is still ours), and up to
 * CW_LIMIT_CTL_CLIENTS client connections with their buffers. The file is refused when the
 * path is a symlink or something other than a socket, when its directory is world-writable
 * without the sticky bit, or when a live daemon answers on it; a stale socket (nobody
 * listening) is replaced. Only who can open the file (its owner and group) can purge or
 * reload: the socket file's mode is the whole access control, as with Docker's.
 *
 * Protocol (docs/OPERATIONS.md): a client sends one request line, a JSON object of at most
 * CW_LIMIT_CTL_LINE_BYTES, and reads one reply line; it may send the next request after it.
 * A client that sends a longer line, or takes more than CW_LIMIT_CTL_IDLE_MS to send a line or
 * read its reply, is dropped. Every fd is non-blocking and each poll round does bounded
 * work per client, so a slow or hostile client never stalls the supervisor's loop.
 *
 * Single-threaded: the supervisor's loop calls everything. Fork rule: a child calls
 * cw_control_forget() first, which closes the fds without touching the file. */
#ifndef CW_CONTROL_H
#define CW_CONTROL_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/common.h" /* CW_MUST_CHECK */

struct cw_control; /* opaque */

/* Who sent a request (SO_PEERCRED), for the log. */
struct cw_control_peer {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/* Called once per request line (without its newline; borrowed until the call returns). The
 * handler answers with cw_control_reply(), then or later, quoting id; until it does, the
 * client's connection reads nothing more. */
typedef void (*cw_control_fn)(void *cls, uint64_t id, const char *line, size_t len,
                              const struct cw_control_peer *peer);

/* Creates the socket at path, as above; group (NULL: the process's own) owns the file. 0 and
 * *out, or -errno with the cause logged: -ELOOP a symlink, -EEXIST something else that is not a
 * socket, -EPERM an unsafe directory, -EADDRINUSE a live daemon on it, -ENOENT an unknown
 * group or a missing directory. Caller owns *out; free with cw_control_close(). */
CW_MUST_CHECK int cw_control_open(const char *path, const char *group, cw_control_fn fn, void *cls,
                                  struct cw_control **out);
/* Closes every connection and the listener, unlinks the file when it is still the one this
 * call's open made, and frees ctl. Takes NULL. */
void cw_control_close(struct cw_control *ctl);
/* In a child after fork(): closes the inherited fds and frees ctl, leaving the file alone. */
void cw_control_forget(struct cw_control *ctl);

/* The path it listens on. Borrowed. */
const char *cw_control_path(const struct cw_control *ctl);

/* Fills pfd[0..max) with the fds to poll (the listener, then each client with the events its
 * state needs): the number filled. */
size_t cw_control_pollfds(const struct cw_control *ctl, struct pollfd *pfd, size_t max);
/* Handles what poll() reported on the fds cw_control_pollfds() filled (n of them, in the same
 * order, nothing changed in between) and drops clients past their deadline: accepts, reads,
 * calls the handler for each complete line, writes replies. now_ms is monotonic. */
void cw_control_process(struct cw_control *ctl, const struct pollfd *pfd, size_t n, int64_t now_ms);
/* The nearest client deadline (monotonic ms), or INT64_MAX when none. */
int64_t cw_control_deadline(const struct cw_control *ctl);

/* Queues text (len bytes; a newline is added) as the reply to request id and starts sending
 * it: 0; -ENOENT when the client has gone (nothing to do); -EMSGSIZE past
 * CW_LIMIT_CTL_REPLY_BYTES. */
CW_MUST_CHECK int cw_control_reply(struct cw_control *ctl, uint64_t id, const char *text,
                                   size_t len);

#endif /* CW_CONTROL_H */
