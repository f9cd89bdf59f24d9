/* core/pool.h - an origin's server pool: which server a request goes to, when a server counts
 * as down, and the origin's circuit breaker.
 *
 * Pure: the caller passes the servers' state and the time (CLOCK_MONOTONIC ms) and gets a
 * decision; nothing here reads a clock, touches memory it was not given or logs. The shared
 * state (a server's passive health, the breaker) is one 64-bit word each, so that the shm
 * segment can hold it and every process can move it with one compare-and-swap of
 * cw_pool_*_next(); the words are decoded with the accessors below. Owns no memory;
 * thread-safe (no state). */
#ifndef CW_POOL_H
#define CW_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a server is chosen among those up. */
enum cw_pool_balance {
    CW_POOL_ROUND_ROBIN = 0, /* smooth weighted round robin (nginx's) */
    CW_POOL_LEAST_CONN,      /* fewest outstanding requests per weight, round robin on ties */
};

/* One server as the chooser sees it. The caller owns the array and keeps current between
 * calls (the round robin's memory, per process); the rest it sets before each call. */
struct cw_pool_server {
    int weight;      /* >= 1 */
    bool is_backup;  /* used only while no primary server is up */
    bool is_up;      /* passive and active health both say up */
    int running;     /* requests outstanding on it (this process) */
    int64_t current; /* smooth round robin state; start at 0 */
};

/* The index of the server for the next request, or -1 when none is up. exclude (-1: none)
 * is not chosen unless it is the only one up (a retry goes elsewhere when it can). Primary
 * servers first; the backups only when no primary is up. Updates current. */
int cw_pool_pick(struct cw_pool_server *s, size_t n, enum cw_pool_balance balance, int exclude);

/* ---- Passive health: one word per server -------------------------------------------------- */

/* When failures count against a server. */
struct cw_pool_health {
    unsigned max_fails;      /* failures in a row that mark it down, >= 1 */
    int64_t fail_timeout_ms; /* the first down time; it doubles while probes fail */
    int64_t fail_max_ms;     /* cap of the down time */
};

/* The word: failures in a row (16 bits) and the end of the down time (48 bits, monotonic
 * ms; 0 = not down). A zeroed word is a healthy server. */
static inline unsigned cw_pool_health_fails(uint64_t w)
{
    return (unsigned)(w >> 48);
}
static inline int64_t cw_pool_health_down_until(uint64_t w)
{
    return (int64_t)(w & ((1ull << 48) - 1));
}
/* True while the word keeps the server out at now_ms. */
bool cw_pool_health_is_down(uint64_t w, int64_t now_ms);
/* The word after one request's outcome at now_ms: a success clears it; a failure counts, and
 * from max_fails on marks the server down for fail_timeout_ms, doubled for each further
 * failure in a row (a retried server that fails again), up to fail_max_ms. */
uint64_t cw_pool_health_next(uint64_t w, bool ok, int64_t now_ms, const struct cw_pool_health *h);

/* Active checks: rise successes in a row bring a server up, fall failures in a row take it
 * down. The word: state bit (1 = down) and the current run's length. */
static inline bool cw_pool_probe_is_down(uint32_t w)
{
    return (w & 1u) != 0;
}
/* The word after one probe's outcome; *changed says whether up/down flipped. */
uint32_t cw_pool_probe_next(uint32_t w, bool ok, unsigned rise, unsigned fall, bool *changed);

/* ---- The origin's circuit breaker: one word per origin ------------------------------------ */

enum cw_pool_breaker_state {
    CW_POOL_BREAKER_CLOSED = 0, /* requests go */
    CW_POOL_BREAKER_HALF_OPEN,  /* one probe request is out; the rest fail fast */
    CW_POOL_BREAKER_OPEN,       /* requests fail fast until the cooldown ends */
};

struct cw_pool_breaker {
    unsigned failures; /* failures in a row, within window_ms of the first, that open it */
    int64_t window_ms;
    int64_t cooldown_ms; /* open this long, then one probe goes */
    int64_t probe_ms;    /* a probe not reported by then (its process died) lets another go */
};

/* The word: state (2 bits), failures in the current run (14 bits), time (48 bits, monotonic
 * ms): CLOSED, when the run began; OPEN, when the cooldown ends; HALF_OPEN, when the probe
 * is given up. A zeroed word is a closed breaker. */
static inline enum cw_pool_breaker_state cw_pool_breaker_state(uint64_t w)
{
    return (enum cw_pool_breaker_state)(w >> 62);
}
static inline int64_t cw_pool_breaker_time(uint64_t w)
{
    return (int64_t)(w & ((1ull << 48) - 1));
}

/* What a request may do at now_ms, given the word. */
enum cw_pool_admit {
    CW_POOL_ADMIT_GO = 0, /* closed: go */
    CW_POOL_ADMIT_PROBE,  /* go as the probe: store *next (CAS), report with probe true */
    CW_POOL_ADMIT_REFUSE, /* fail fast */
};
enum cw_pool_admit cw_pool_breaker_admit(uint64_t w, int64_t now_ms,
                                         const struct cw_pool_breaker *b, uint64_t *next);
/* The word after an outcome at now_ms (probe: the request was admitted as the probe). A
 * success closes the breaker from any state; a failure counts while closed (the run starts
 * again when its first failure is older than window_ms) and opens it at the threshold; the
 * probe's failure reopens it. Other late outcomes change nothing. */
uint64_t cw_pool_breaker_next(uint64_t w, bool ok, bool probe, int64_t now_ms,
                              const struct cw_pool_breaker *b);
/* The word after the probe ended with no outcome to report (its client went away, the
 * origin's queue was full, it could not start): HALF_OPEN given up at now_ms, so the next
 * request goes as the probe at once instead of every request being refused until probe_ms.
 * Any other state is left as it is (a probe given up since, or already reported). */
uint64_t cw_pool_breaker_release(uint64_t w, int64_t now_ms);
/* "closed", "half-open", "open". */
const char *cw_pool_breaker_name(enum cw_pool_breaker_state s);

/* ---- The retry budget: per origin, per process ------------------------------------------ */

/* Retries a budget allows at once, before its rate applies. */
#define CW_POOL_RETRY_BURST 10

/* A token bucket in hundredths of a retry: each request sent earns pct (the budget, a % of
 * requests), each retry spends 100, and the bucket holds at most burst retries. So over n
 * requests at most burst + n * pct / 100 retries go, however the failures fall. */
struct cw_pool_budget {
    unsigned pct;    /* 0 to 100 */
    unsigned burst;  /* retries */
    int64_t credits; /* hundredths of a retry; starts full */
};

/* A full bucket. pct above 100 is taken as 100. */
void cw_pool_budget_init(struct cw_pool_budget *b, unsigned pct, unsigned burst);
/* One request sent: its share of a retry, up to the burst. */
void cw_pool_budget_earn(struct cw_pool_budget *b);
/* True when one retry may go (its cost is then spent); false when the bucket is short. */
bool cw_pool_budget_take(struct cw_pool_budget *b);
/* Gives back a retry taken but not sent (no other server could take it). */
void cw_pool_budget_refund(struct cw_pool_budget *b);

#endif /* CW_POOL_H */
