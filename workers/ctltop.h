/* workers/ctltop.h - cwctl top: a live view of the daemon, in the manner of varnishstat.
 *
 * Asks the control socket for stats once per interval over one connection, and draws the
 * difference between two samples: requests per second by result, the hit ratio, p50 and p99
 * of client latency (as bucket bounds: the daemon keeps histograms, not samples), each origin's
 * request and error rates, the busiest routes, and the busiest URLs (from the request
 * targets workers sample into the shm segment: the daemon's share of samples over its last 2 s,
 * times this interval's request rate). It fits 80x24 and uses only ANSI clear and home, so it
 * works over ssh. When stdin is a terminal it is put
 * in non-canonical mode for the run, and restored on every way out. Owns its connection for
 * the call. */
#ifndef CW_CTLTOP_H
#define CW_CTLTOP_H

#include "core/common.h"

/* Runs until 'q' on stdin, SIGINT or SIGTERM, or after count frames (0: no limit), one every
 * interval_ms: a cwctl exit status (workers/ctlclient.h): 0 after a clean exit, 3 when the
 * daemon cannot be reached or goes away. */
CW_MUST_CHECK int cw_ctltop_run(const char *path, int count, int interval_ms);

#endif /* CW_CTLTOP_H */
