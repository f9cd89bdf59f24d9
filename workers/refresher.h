/* workers/refresher.h - the refresher process: the only one that does background work.
 *
 * Owns, in its process: its own LMDB handle (opened after fork), a fetch loop for
 * background revalidations, and its counter slot. It claims REFRESH lease records (written
 * by workers for stale-while-revalidate and refresh-ahead hits), revalidates those entries
 * with conditional requests (a 304 extends freshness without a body transfer), reaps leases
 * of dead processes and expired hit-for-miss records, clears stale LMDB reader slots, and
 * runs eviction in bounded steps. It sleeps on an eventfd that workers write when they ask
 * for a refresh, so it costs no CPU when there is nothing to do. Its loop also reads the
 * supervisor's command channel (workers/chan.h): it answers each PING with a PONG, applies
 * the control socket's purges to L1 (answering PURGED with the count), reports how full L1
 * is (L1_STAT), and stops when the supervisor closes the channel. */
#ifndef CW_REFRESHER_H
#define CW_REFRESHER_H

struct cw_child_ctx;

/* Runs the refresher until SIGTERM, SIGINT or the end of its command channel: the process
 * exit status. From ctx it uses cfg, seg, slot, wake_fd (the eventfd workers write to,
 * inherited from the supervisor) and cmd_fd (its end of the command channel, -1 for none;
 * closed on return). Call in a child after fork(). */
int cw_refresher_run(const struct cw_child_ctx *ctx);

#endif /* CW_REFRESHER_H */
