/* workers/l2.h - the L2 cache client: asynchronous commands to Redis (standalone, Sentinel
 * or Cluster) for one process, driven by the caller's own poll loop.
 *
 * Owns its Redis connections (hiredis async contexts and their sockets: one for commands,
 * or one per cluster master; one for SUBSCRIBE; one to a sentinel), every command in
 * flight, and the breaker that stops asking a failing Redis. No other module includes
 * hiredis. The caller's loop asks cw_l2_pollfds() and cw_l2_timeout_ms() what to wait for
 * (curl_multi_poll's extra_fds take the same fields) and hands the result to
 * cw_l2_process(); nothing here blocks, except the name lookup of redis.host when it is
 * not an address (use addresses or /etc/hosts names).
 *
 * Every command has a deadline (redis.timeout, or less for a lease take given one): a
 * command that has no reply by then completes with -ETIMEDOUT, and a connection that stays
 * silent is dropped and remade in the background with backoff. After
 * CW_L2_BREAKER_FAILURES failures in a row the breaker opens: commands are refused at once
 * (-EAGAIN) and a probe (a one-key script; a PING in a cluster) asks Redis with backoff
 * until it answers; a breaker that opens again soon after a probe closed it keeps doubling
 * its wait. State changes are logged once; counters are in struct cw_l2_stats.
 *
 * Keys: the caller's key (a hex hash, no braces) becomes <prefix>{<first 2 chars>}<key>;
 * its lease <prefix>{..}l:<key>; a tag's set <prefix>{..}t:<tag>; fill notifications go on
 * the channel <prefix>fill. The 2-character hash tag
 * puts an entry, its lease and the tag sets it is listed in on one cluster slot, in 256
 * groups spread over the cluster; a tag purge visits the 256 groups' sets.
 *
 * Thread and fork rules: one struct cw_l2 belongs to one thread; open it after fork() in
 * the process that uses it, never carry one across a fork. Completion callbacks run only
 * inside cw_l2_process() (or cw_l2_close(), with -ECANCELED), never inside the call that
 * submitted the command; they may submit new commands but must not call cw_l2_close(). */
#ifndef CW_L2_H
#define CW_L2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h" /* CW_MUST_CHECK, struct cw_str */

struct cw_config;
struct cw_entry_view;
struct pollfd;
struct cw_l2; /* opaque */

#define CW_L2_BREAKER_FAILURES 5        /* failures in a row that open the breaker */
#define CW_L2_BACKOFF_MIN_MS   50       /* first reconnect / probe wait */
#define CW_L2_BACKOFF_MAX_MS   2000     /* longest reconnect / probe wait */
#define CW_L2_POLLFDS_MAX      (3 + 64) /* data, sub, sentinel, cluster masters */
/* Prefix bans: kept this long in Redis (an entry stored before a ban and living longer than
 * this after it could come back from L2), at most this many per hash-tag group. */
#define CW_L2_BAN_KEEP_MS  (7 * 24 * 3600 * 1000LL)
#define CW_L2_BANS_MAX     1024
#define CW_L2_PURGELOG_MAX 10000 /* entries the purge log stream keeps (MAXLEN ~) */

/* A command's completion: rc 0 and, for cw_l2_get(), value (borrowed: valid only during the
 * call); or -ENOENT (GET miss; lease not held by token), -EEXIST (lease held by another),
 * -ETIMEDOUT, -EIO (Redis answered an error; logged, rate-limited), -ENOTCONN (connection
 * lost), -EFBIG (value larger than the limit), -ECANCELED (cw_l2_close()). */
typedef void (*cw_l2_done_fn)(void *arg, int rc, struct cw_str value);
/* A message on redis.channel; both ranges borrowed for the call. */
typedef void (*cw_l2_msg_fn)(void *arg, struct cw_str channel, struct cw_str payload);

/* Counters since open, for the caller to copy into its metrics. */
struct cw_l2_stats {
    uint64_t commands;         /* accepted */
    uint64_t hits;             /* GET found */
    uint64_t misses;           /* GET not found */
    uint64_t errors;           /* error replies and lost connections */
    uint64_t timeouts;         /* completed with -ETIMEDOUT */
    uint64_t rejected;         /* refused at submit: breaker open, no connection, queue full */
    uint64_t redirects;        /* MOVED and ASK followed */
    uint64_t slot_refreshes;   /* CLUSTER SLOTS maps loaded */
    uint64_t connects;         /* connections made ready (handshake done) */
    uint64_t connect_failures; /* connects that failed or timed out */
    uint64_t auth_failures;    /* AUTH or SELECT refused */
    uint64_t master_switches;  /* sentinel: the master's address changed */
    uint64_t messages;         /* pub/sub messages delivered */
    uint64_t breaker_opens;
    uint64_t banned;   /* GETs a prefix ban made a miss (hard) or stale (soft) */
    int breaker_state; /* enum cw_breaker_state: 0 closed, 1 open, 2 probing */
    unsigned conns_ready;
    unsigned pending; /* commands in flight now */
};

/* Creates the client for cfg's redis settings and starts connecting in the background:
 * 0 and *out, or -errno with the cause logged: -ENODEV when redis.enabled is false, -EINVAL
 * for an address that does not split, -ENOENT / -EACCES when redis.password_file or
 * redis.password_env cannot be read, -ENOMEM. A Redis that is down or refuses the password
 * is not an error here: it is logged when met, and commands fail until it answers. Caller
 * owns *out; free with cw_l2_close(). cfg is not kept. */
CW_MUST_CHECK int cw_l2_open(const struct cw_config *cfg, struct cw_l2 **out);
/* Completes every command still in flight with -ECANCELED, closes the connections and
 * frees l2. Takes NULL. */
void cw_l2_close(struct cw_l2 *l2);

/* Fills at most max entries (CW_L2_POLLFDS_MAX is enough) with the sockets to wait on and
 * their events (POLLIN, POLLOUT); revents zeroed. Returns the count. */
size_t cw_l2_pollfds(struct cw_l2 *l2, struct pollfd *fds, size_t max);
/* Milliseconds until the next deadline (a command, a connect, a reconnect, a probe), 0 when
 * one is due, -1 when none: the poll timeout to use (or the smaller of it and one's own). */
int cw_l2_timeout_ms(struct cw_l2 *l2);
/* Handles the revents of the n entries of fds (entries of other sockets are skipped; fds may
 * be NULL when n is 0), then every deadline that is due. Runs completion callbacks. */
void cw_l2_process(struct cw_l2 *l2, const struct pollfd *fds, size_t n);

/* True when commands can go now: a connection is ready and the breaker is closed. */
bool cw_l2_is_ready(const struct cw_l2 *l2);
void cw_l2_stats_get(const struct cw_l2 *l2, struct cw_l2_stats *out);

/* Each command returns 0 when accepted (fn will be called exactly once) or, without
 * calling fn: -EAGAIN (breaker open), -ENOTCONN (no connection to the key's node yet),
 * -ENOBUFS (CW_LIMIT_L2_PENDING in flight), -EINVAL (empty key, a brace in it, a name past
 * CW_LIMIT_L2_KEY_BYTES, ttl_ms < 1), -ESHUTDOWN (closing), -ENOMEM. Bytes are copied at
 * submit; the caller's buffers may go at once. */

/* GET the entry of key: fn gets 0 and the bytes, or -ENOENT. */
CW_MUST_CHECK int cw_l2_get(struct cw_l2 *l2, struct cw_str key, cw_l2_done_fn fn, void *arg);
/* SET the entry of key to value with a TTL of ttl_ms, and add key to the set of each of the
 * ntags tags (tags may be NULL when ntags is 0), each set living at least ttl_ms: one
 * atomic script, one round trip. */
CW_MUST_CHECK int cw_l2_set(struct cw_l2 *l2, struct cw_str key, struct cw_str value,
                            int64_t ttl_ms, const struct cw_str *tags, size_t ntags,
                            cw_l2_done_fn fn, void *arg);
/* DEL the entry of key: 0 whether or not it existed. */
CW_MUST_CHECK int cw_l2_del(struct cw_l2 *l2, struct cw_str key, cw_l2_done_fn fn, void *arg);
/* Takes the fleet-wide lease of key for ttl_ms (SET NX PX): 0 when taken with token,
 * -EEXIST when another holds it. */
CW_MUST_CHECK int cw_l2_lease_take(struct cw_l2 *l2, struct cw_str key, struct cw_str token,
                                   int64_t ttl_ms, cw_l2_done_fn fn, void *arg);
/* cw_l2_lease_take() within what is left of a budget: its reply is awaited until
 * deadline_ms (monotonic, cw_clock_mono_ms()) or redis.timeout from now, whichever comes
 * first (0: redis.timeout). -ETIMEDOUT, without calling fn, when deadline_ms has passed. */
CW_MUST_CHECK int cw_l2_lease_take_until(struct cw_l2 *l2, struct cw_str key, struct cw_str token,
                                         int64_t ttl_ms, int64_t deadline_ms, cw_l2_done_fn fn,
                                         void *arg);
/* Releases the lease of key if it still holds token (compare-and-delete script): 0, or
 * -ENOENT when it expired or another holds it now. */
CW_MUST_CHECK int cw_l2_lease_release(struct cw_l2 *l2, struct cw_str key, struct cw_str token,
                                      cw_l2_done_fn fn, void *arg);
/* PUBLISH payload on redis.channel: 0 once Redis took it. */
CW_MUST_CHECK int cw_l2_publish(struct cw_l2 *l2, struct cw_str payload, cw_l2_done_fn fn,
                                void *arg);
/* ---- purges (workers/l2_purge.c) ----
 * An entry's name is the caller's key above: 32 hex digits of a SipHash of the entry's full
 * key string under a fixed fleet-wide secret (cw_l2_entry_name()). A GET (cw_l2_get()) also
 * fetches the prefix bans of the entry's group recorded since it was stored, in the same
 * script, and applies them (core/ban.h): a hard ban's entry is a miss (-ENOENT), a soft
 * ban's comes back marked stale; counted in cw_l2_stats.banned. */

/* The L2 name of the entry whose full key string is full_key: 32 hex digits and a NUL. */
void cw_l2_entry_name(struct cw_str full_key, char out[33]);
/* The Surrogate-Key tags of v (borrowed from it), at most CW_LIMIT_TAGS into tags: the count,
 * for cw_l2_set(). */
size_t cw_l2_entry_tags(const struct cw_entry_view *v, struct cw_str *tags);
/* Purges the entry named name: hard, DEL; soft, its header is marked stale at now_ms (wall
 * clock) as an L1 soft purge does, keeping its TTL, in one script. 0 (fn called once) or
 * -errno as above. */
CW_MUST_CHECK int cw_l2_purge_entry(struct cw_l2 *l2, struct cw_str name, bool soft, int64_t now_ms,
                                    cw_l2_done_fn fn, void *arg);
/* Purges every entry in tag's sets, one script per hash-tag group (256 commands, each
 * atomic for its group): hard, the entries and the set are deleted; soft, the entries are
 * marked stale and the set kept. Returns how many commands were accepted (fn is called that
 * many times; the groups past a refusal are logged, rate-limited, and not purged), or -errno
 * when none was. */
int cw_l2_purge_tag(struct cw_l2 *l2, struct cw_str tag, bool soft, int64_t now_ms,
                    cw_l2_done_fn fn, void *arg);
/* Records a ban (record: a core/fleetmsg.h message of kind CW_FLEETMSG_BAN, time_ms its
 * time) in every group's ban set, kept CW_L2_BAN_KEEP_MS, at most CW_L2_BANS_MAX a group
 * (fn gets -ENOSPC for a group whose oldest ban had to go). Returns the commands accepted
 * (fn called that many times; a refusal is logged as for tags), or -errno when none was. */
int cw_l2_ban_add(struct cw_l2 *l2, struct cw_str record, int64_t time_ms, cw_l2_done_fn fn,
                  void *arg);
/* Appends msg to the purge log, the stream <prefix>{purgelog} (its own hash tag: one cluster
 * slot), trimmed to about CW_L2_PURGELOG_MAX entries. fn gets 0 and the entry's id. */
CW_MUST_CHECK int cw_l2_log_append(struct cw_l2 *l2, struct cw_str msg, cw_l2_done_fn fn,
                                   void *arg);
/* Reads at most count entries of the purge log after the entry after_id (an empty after_id:
 * none, only where the log ends). fn gets 0 and one string: "<1|0> <last id>\n" (1 when
 * after_id is still in the log, so nothing after it was trimmed away), then per entry
 * "<id> <length> <message>"; core/fleetmsg.h reads it (cw_fleetmsg_log_*()). */
CW_MUST_CHECK int cw_l2_log_read(struct cw_l2 *l2, struct cw_str after_id, unsigned count,
                                 cw_l2_done_fn fn, void *arg);

/* Subscribes to redis.channel on a connection of its own, kept subscribed across reconnects
 * and failovers; each message goes to fn. Once per l2: -EEXIST the second time. Messages
 * published while the connection is down are lost (Redis pub/sub keeps nothing). */
CW_MUST_CHECK int cw_l2_subscribe(struct cw_l2 *l2, cw_l2_msg_fn fn, void *arg);

/* Fill notifications for fleet-wide coalescing: one channel, <prefix>fill, shared by the
 * fleet; a payload names the key (as given to cw_l2_lease_take()) whose lease holder ended
 * its fetch. */
/* PUBLISH key on <prefix>fill: 0 once Redis took it. */
CW_MUST_CHECK int cw_l2_publish_fill(struct cw_l2 *l2, struct cw_str key, cw_l2_done_fn fn,
                                     void *arg);
/* Subscribes to <prefix>fill on the subscription connection, kept subscribed across
 * reconnects and failovers; each message goes to fn. The connection is made by the next
 * cw_l2_process(), or by a cw_l2_subscribe() called right after this (one SUBSCRIBE then
 * names both channels). Once per l2 (-EEXIST); -EBUSY once cw_l2_subscribe() made the
 * connection (call this first). Messages published while the connection is down are lost. */
CW_MUST_CHECK int cw_l2_subscribe_fill(struct cw_l2 *l2, cw_l2_msg_fn fn, void *arg);
/* True when the fill subscription is confirmed by Redis (notifications arrive). */
bool cw_l2_fill_is_subscribed(const struct cw_l2 *l2);

#endif /* CW_L2_H */
