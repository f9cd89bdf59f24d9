/* workers/stats.h - the stats process: Prometheus text on stats.listen, and the same text
 * written atomically into a node_exporter textfile every stats.interval.
 *
 * Owns, in its process: one libmicrohttpd daemon bound to stats.listen (its own socket,
 * not the proxy's), a read-only use of the L1 environment (cw_store_stat, for the entries
 * and bytes gauges), the textfile thread, and its counter slot. It reads every slot of the
 * shm segment and writes none but its own pid. GET /metrics answers the exposition
 * (core/metrics.h), GET /healthz answers "ok". The textfile is written as "<path>.tmp" in
 * the same directory, fsync()ed and renamed over the path, so node_exporter never reads a
 * partial file (and ignores the temp file, which does not end in .prom). */
#ifndef CW_STATS_H
#define CW_STATS_H

struct cw_child_ctx;

/* Runs the stats process until SIGTERM or SIGINT: the process exit status (0 on a clean
 * stop, 1 when it could not start). From ctx it uses cfg, seg, slot and listen_fd: it
 * serves HTTP there (bound by the supervisor for stats.listen; -1 for none), and writes the
 * textfile only when cfg->stats_textfile is set. Call in a child after fork(), with the
 * proxy's listen socket closed. */
int cw_stats_run(const struct cw_child_ctx *ctx);

#endif /* CW_STATS_H */
