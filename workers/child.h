/* workers/child.h - what every child process of the supervisor does first, and the
 * libmicrohttpd log sink the MHD-based children share.
 *
 * Owns nothing. Call cw_child_setup() first thing after fork(), before any thread starts,
 * so that every thread inherits the blocked signal mask. */
#ifndef CW_CHILD_H
#define CW_CHILD_H

#include <stdarg.h>

struct cw_seg;

/* Names the process (comm, as ps and the tests see it), asks for SIGTERM when the
 * supervisor dies, blocks SIGTERM, SIGINT, SIGUSR1 and SIGPIPE in every thread (the main
 * thread takes them synchronously), and records the pid in the process's counter slot. */
void cw_child_setup(const char *comm, struct cw_seg *seg, int slot);

/* MHD_OPTION_EXTERNAL_LOGGER sink: one info line per MHD message; cls is the module word
 * ("worker", "stats") as a const char *. */
void cw_child_mhd_log(void *cls, const char *fmt, va_list ap);

#endif /* CW_CHILD_H */
