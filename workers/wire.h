/* workers/wire.h - the one reading of what a client sends, before libmicrohttpd sees it.
 *
 * libmicrohttpd 0.9.75 reads request heads leniently: it accepts whitespace before a colon,
 * keeps a bare CR inside a value, cuts a value at a NUL, turns obs-fold into a new field
 * name, and frames a body by the first of two Content-Length fields. Each of these lets a
 * client smuggle a request to a lenient origin or poison a key. So every byte libmicrohttpd
 * receives from a client passes through this module first: it defines recv(), which the
 * library calls through its PLT (an executable's definition is found before libc's), and
 * feeds the bytes to core/reqscan. A request head reaches libmicrohttpd only once all of
 * it has been read and found well-formed (an incomplete head is held here, at most
 * CW_LIMIT_REQUEST_HEAD_BYTES), and so does every later byte of the stream.
 *
 * At the first broken rule (or when a head takes longer than client_header_timeout to
 * arrive), the complete requests before the offending one are delivered, then a short
 * stand-in request head, then nothing more. The worker recognises the stand-in by its place
 * on the connection (cw_wire_request_check()), never by its content, answers it with the
 * scanner's status and closes the connection. An error inside a body already handed over
 * resets the connection.
 *
 * Owns a table from socket fd to connection state for the calling process: the one mutable
 * global outside cmd/, because recv() has no context argument. Sockets not registered
 * through cw_wire_on_connection() (libcurl's, hiredis's) pass through untouched. The table
 * is written by the MHD thread only; other threads only read it, for their own fds. */
#ifndef CW_WIRE_H
#define CW_WIRE_H

#include <microhttpd.h>
#include <stdint.h>

#include "core/common.h"

/* Allocates the fd table for this process (sized by RLIMIT_NOFILE) and sets the request
 * head deadline: 0 or -ENOMEM. Call once after fork, before the MHD daemon starts. */
CW_MUST_CHECK int cw_wire_init(int64_t header_timeout_ms);

struct cw_wire_conn; /* one client connection's reading state */

/* Starts reading the stream of socket fd: the state, or NULL (no memory, or fd outside the
 * table); then every recv() on fd goes through the scanner. Free with cw_wire_detach(), before
 * fd is closed; it takes NULL. */
struct cw_wire_conn *cw_wire_attach(int fd);
void cw_wire_detach(struct cw_wire_conn *c);

/* MHD_OPTION_NOTIFY_CONNECTION callback: attaches each connection's socket, and detaches it
 * when MHD closes the connection (before the socket is closed). */
void cw_wire_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe);
/* The state attached to an MHD connection, or NULL. */
struct cw_wire_conn *cw_wire_of(struct MHD_Connection *conn);

/* Numbers a new request on the connection (call once per request, from the URI callback):
 * its place, for cw_wire_check(). */
unsigned cw_wire_begin(struct cw_wire_conn *c);

/* Once MHD has parsed the request's head: 0 when the head at place n was read and found
 * well-formed; else the HTTP status to answer before closing (400, 408, 414, 431, 501, 505
 * from the scanner, 503 when a head could not be held, or 500 when the head never passed
 * through the scanner: the check fails closed), with *reason a static text. c may be NULL. */
unsigned cw_wire_check(const struct cw_wire_conn *c, unsigned n, const char **reason);

/* The first line of the request the connection refused, as far as it came (at most 256
 * bytes, not NUL-terminated, may hold any byte): for the access log. Empty when none. */
struct cw_str cw_wire_refused_line(const struct cw_wire_conn *c);

#endif /* CW_WIRE_H */
