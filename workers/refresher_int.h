/* workers/refresher_int.h - the refresher's shared state (workers/refresher.h): its main
 * loop and background refreshes in refresher.c, its purges (cwctl's and other nodes') in
 * refresher_purge.c. One process, one struct refresher; nothing here is thread-safe unless
 * it says so. */
#ifndef CW_REFRESHER_INT_H
#define CW_REFRESHER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/config.h"
#include "core/key.h"
#include "core/limits.h"
#include "shm/seg.h"
#include "shm/store.h"
#include "workers/chan.h"
#include "workers/fill.h"
#include "workers/fleet.h"
#include "workers/upstream.h"
#include "workers/upstream_dns.h"

#define REFR_TICK_MS         250   /* wake-up while refreshes run or the map is under pressure */
#define REFR_IDLE_TICK_MS    1000  /* wake-up otherwise: lease reaping, reader check */
#define REFR_SWEEP_IDLE_MS   10000 /* under the watermarks, look for expired entries this often */
#define REFR_SCAN_MAX        4096  /* lease records visited per scan */
#define REFR_INFLIGHT_MAX    64    /* background refreshes at once */
#define REFR_LEASE_MS        30000 /* a claimed refresh that overruns this is reclaimed */
#define REFR_READER_CHECK_MS 5000
#define REFR_EVICT_VISIT     2048  /* entries the eviction hand visits per tick */
#define REFR_CMD_MAX         16    /* command-channel messages handled per wake-up */
#define REFR_ASK_MAX         1024  /* workers' refresh asks taken per tick */
#define REFR_WANT_MS         30000 /* an unclaimed refresh ask expires after this */
/* Write txns of a prefix or tag purge per loop turn: 8 x 64 entries took 2-4 ms on the 2-core
 * build machine, so pings and refreshes wait no longer than that behind a purge. */
#define REFR_PURGE_BATCHES   8
#define REFR_PURGE_REPORT_MS 2000 /* a long purge reports its progress this often */
#define REFR_PURGE_WAIT_MAX  16   /* prefix/tag purges queued behind the one running */
#define REFR_L2_PUTS_MAX     256  /* refreshed entries waiting for their L2 write */

/* A prefix or tag purge in progress. It runs in steps from the loop, so that health pings,
 * refreshes and eviction go on between them (a purge of 100,000 entries takes seconds, and a
 * refresher that misses its pings is replaced). One at a time: the others wait in order
 * (REFR_PURGE_WAIT_MAX of them, cwctl's and other nodes' alike; past that one is refused
 * with -EBUSY). A URL purge is a few entries and runs at once. */
struct refr_purge {
    bool active;
    uint64_t seq; /* the PURGE's, repeated in its answers */
    uint32_t kind;
    bool soft;
    bool remote;         /* another node's (workers/fleet.h): not answered on the command channel */
    int64_t now_wall_ms; /* the purge's time, the same for every step (soft purge windows) */
    int64_t t0_us;
    int64_t report_at_ms;
    struct cw_store_purge_pos pos;
    size_t count;
    size_t len;
    char text[CW_LIMIT_KEY_BYTES]; /* the prefix as a key string, or the tag */
};

/* One background refresh: owns its job, its key buffer and the request it rebuilt. */
struct refr_job {
    struct refr_job *next;
    struct refresher *rf;
    struct cw_fill_req q;
    struct cw_upstream_collect job;
    char *url;
    char *hdr_lines;
    char *target; /* NUL-terminated copies of the entry's request part */
    char *host;
    char etag[CW_LIMIT_VALIDATOR_BYTES + 1];
    char last_modified[CW_LIMIT_VALIDATOR_BYTES + 1];
    /* The entry's request fields, names and values NUL-terminated. */
    char *hnames[CW_LIMIT_ENTRY_REQ_FIELDS];
    char *hvalues[CW_LIMIT_ENTRY_REQ_FIELDS];
    size_t hcount;
    bool ok; /* stored or revalidated */
};

struct refresher {
    const struct cw_config *cfg;
    struct cw_seg *seg;
    int slot;
    int wake_fd;
    int cmd_fd; /* the command channel from the supervisor, -1 for none */
    struct cw_store *store;
    struct cw_store_reader *reader;       /* main thread */
    struct cw_store_reader *fetch_reader; /* fetch thread */
    struct cw_fill fill;
    struct cw_upstream *fetch;
    struct cw_upstream_dns *dns; /* origin discovery on fetch's loop; NULL: none */
    pthread_mutex_t lock;
    struct refr_job *done; /* completed, to free on the main thread */
    size_t inflight;       /* main thread only */
    struct cw_key claim[REFR_INFLIGHT_MAX];
    size_t claim_count;
    struct cw_key scan_from; /* where the next lease scan resumes, when has_scan_from */
    bool has_scan_from;
    int ask_slot; /* the worker ring the next tick takes asks from first */
    struct refr_purge purge;
    struct refr_purge purge_scratch; /* scratch for one being prepared */
    struct cw_fleet *fleet;          /* NULL: redis off or not opened */
    /* Prefix and tag purges that came while one ran, oldest first (owned, prepared). */
    struct refr_purge *purge_wait[REFR_PURGE_WAIT_MAX];
    size_t purge_wait_count;
    /* Refreshed entries for L2: the fetch thread queues them (under lock), the main thread
     * writes them with the fleet's client, which is its own. */
    struct refr_l2_put {
        struct refr_l2_put *next;
        char name[33]; /* the entry's L2 name */
        size_t len;
        char bytes[]; /* the encoded entry, as L1 has it */
    } * l2_puts;
    size_t l2_put_count;
};

/* refresher_purge.c */
/* CW_CHAN_PURGE from the control socket: a URL purge applied and answered at once; a prefix
 * or tag purge started (or queued), run in steps by the loop and answered when it ends. */
void refr_on_purge(struct refresher *rf, const struct cw_chan_msg *m);
/* A purge another node published (cw_fleet_apply_fn), and a gap in the purge log
 * (cw_fleet_gap_fn): cls is the struct refresher. */
void refr_on_fleet(void *cls, uint32_t kind, bool soft, struct cw_str value);
void refr_on_fleet_gap(void *cls);
/* One step of the purge in progress (rf->purge.active): REFR_PURGE_BATCHES write txns. */
void refr_purge_step(struct refresher *rf);
/* Starts the oldest queued purge; only when none runs and one waits. */
void refr_purge_next(struct refresher *rf);

#endif /* CW_REFRESHER_INT_H */
