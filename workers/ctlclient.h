/* workers/ctlclient.h - cwctl's commands: the client side of the control socket
 * (workers/control.h), and the config check that needs no daemon.
 *
 * Owns, for one command, a connection to the socket and its reply buffer; nothing outlives a
 * call. Each command prints for humans on stdout (or the daemon's JSON reply as it is, with
 * json set), errors on stderr as "cwctl: what failed: why; what to do", and returns the
 * process exit status below, which scripts rely on (docs/OPERATIONS.md). Single-threaded. */
#ifndef CW_CTLCLIENT_H
#define CW_CTLCLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/common.h"

/* Exit statuses of cwctl: an interface, never renumbered. */
#define CW_CTLCLIENT_OK          0 /* done */
#define CW_CTLCLIENT_FAILED      1 /* the daemon refused or failed the action; check: invalid */
#define CW_CTLCLIENT_USAGE       2 /* bad command line (unknown flag, invalid URL...) */
#define CW_CTLCLIENT_UNREACHABLE 3 /* no daemon on the socket, or no permission to reach it */

#define CW_CTLCLIENT_DEFAULT_CONFIG "/etc/cachewarp/cachewarp.conf"
#define CW_CTLCLIENT_DEFAULT_SOCKET "/run/cachewarp/control.sock"

/* One open conversation with the daemon. */
struct cw_ctlclient {
    int fd;
    const char *path; /* borrowed */
    char *reply;      /* the last reply line, NUL-terminated (no newline); owned */
    size_t reply_len;
};

/* Which socket to use: sock when given; else control.socket of config (or of the default
 * config, when it can be read); else CW_CTLCLIENT_DEFAULT_SOCKET. Writes the path into out:
 * CW_CTLCLIENT_OK, or CW_CTLCLIENT_USAGE with the reason printed (config given but
 * invalid). */
CW_MUST_CHECK int cw_ctlclient_socket_path(const char *sock, const char *config, char *out,
                                           size_t size);

/* Connects: CW_CTLCLIENT_OK, or CW_CTLCLIENT_UNREACHABLE with the reason printed (no such
 * socket, nobody listening, permission denied). Free with cw_ctlclient_close(). */
CW_MUST_CHECK int cw_ctlclient_connect(const char *path, struct cw_ctlclient *c);
void cw_ctlclient_close(struct cw_ctlclient *c);

/* Sends one request line (req, NUL-terminated, no newline) and waits at most timeout_ms for
 * the reply line, into c->reply: CW_CTLCLIENT_OK, or CW_CTLCLIENT_UNREACHABLE with the reason
 * printed (the daemon closed, timed out, or sent more than CW_LIMIT_CTL_REPLY_BYTES). */
CW_MUST_CHECK int cw_ctlclient_call(struct cw_ctlclient *c, const char *req, int timeout_ms);

/* The commands. path is the socket; json prints the daemon's reply line as it is. */
CW_MUST_CHECK int cw_ctlclient_status(const char *path, bool json);
CW_MUST_CHECK int cw_ctlclient_stats(const char *path, bool json);
CW_MUST_CHECK int cw_ctlclient_reload(const char *path, bool json);
/* what: "url", "prefix" or "tag"; arg its value (a URL is checked here first:
 * CW_CTLCLIENT_USAGE when it is not http://host[:port]/path). */
CW_MUST_CHECK int cw_ctlclient_purge(const char *path, const char *what, const char *arg, bool soft,
                                     bool json);
/* Validates config without a daemon, as cachewarpd -t: CW_CTLCLIENT_OK and "configuration
 * FILE is ok" on stdout, or CW_CTLCLIENT_FAILED and "FILE:LINE: setting: why" on stderr. */
CW_MUST_CHECK int cw_ctlclient_check(const char *config);

#endif /* CW_CTLCLIENT_H */
