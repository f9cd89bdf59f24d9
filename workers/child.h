/* workers/child.h - what every child process of the supervisor is given (one context
 * struct) and does first, and the libmicrohttpd log sink the MHD-based children share.
 *
 * Owns nothing: the fds in a struct cw_child_ctx belong to the child process that was
 * forked with them, and the config and segment to the supervisor that mapped them. Call
 * cw_child_setup() first thing after fork(), before any thread starts, so that every thread
 * inherits the blocked signal mask. */
#ifndef CW_CHILD_H
#define CW_CHILD_H

#include <stdarg.h>

struct cw_config;
struct cw_seg;

/* What the supervisor hands a child after fork(): one struct, so that a new per-process
 * resource is a new field rather than a new positional argument of every cw_*_run(). */
struct cw_child_ctx {
    const struct cw_config *cfg; /* the supervisor's copy, inherited by fork() */
    struct cw_seg *seg;          /* the shared counter segment, mapped before fork() */
    int index;                   /* the worker's number in logs; 0 for the other children */
    int slot;                    /* this process's counter slot in seg */
    int listen_fd; /* the socket it serves: the proxy's (workers), stats.listen (stats); -1 */
    int wake_fd;   /* eventfd that workers write and the refresher reads; -1 for none */
    int cmd_fd;    /* the child's end of its command channel (workers/chan.h); -1 for none */
};

/* Names the process (comm, as ps and the tests see it), asks for SIGTERM when the
 * supervisor dies, blocks SIGTERM, SIGINT, SIGUSR1 and SIGPIPE in every thread (the main
 * thread takes them synchronously), and records the pid in the process's counter slot. */
void cw_child_setup(const char *comm, struct cw_seg *seg, int slot);

/* MHD_OPTION_EXTERNAL_LOGGER sink: one info line per MHD message; cls is the module word
 * ("worker", "stats") as a const char *. */
void cw_child_mhd_log(void *cls, const char *fmt, va_list ap);

#endif /* CW_CHILD_H */
