/* core/adaptive.h - the adaptive TTL: learn per key how often the content changes, and
 * keep it cached as long as the chance of serving a changed copy stays under a target.
 *
 * Each revalidation of a key against its origin tells whether the content changed since
 * the last one (validators, or a body hash when there are none). From the number of
 * checks, the changes seen and the time they covered, the module estimates the key's
 * change rate as a Poisson process (Cho & Garcia-Molina, ACM TOIT 2003, the bias-corrected
 * estimator) and picks TTL = -ln(1 - stale_target) / rate, clamped to [min_ttl, max_ttl]
 * and stepped: a change at least halves it, an unchanged check at most doubles it (x1.25
 * once a change is on record). docs/ADAPTIVE_TTL.md has the derivation and measurements.
 *
 * Pure: no I/O, no clocks (now_ms is a parameter, on whatever clock the caller stores
 * last_check_ms in), no globals, no allocation. Owns nothing; the caller keeps the state
 * (in the entry header) and passes it in. Every function is safe on any state, including
 * bytes decoded from a damaged or foreign entry: counts, times and parameters are
 * sanitised before use, and every returned TTL is within [min_ttl, max_ttl]. */
#ifndef CW_ADAPTIVE_H
#define CW_ADAPTIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* History window: once checks passes CW_ADAPTIVE_WINDOW, checks, changes and observed
 * time are scaled down to half the window (keeping the change ratio and the mean
 * interval), so the estimate follows a key whose change rate changes. */
#define CW_ADAPTIVE_WINDOW 128
/* One interval counts at most this many times the TTL in force, so one long idle gap
 * (nobody asked, nothing was revalidated) cannot dominate the mean interval. */
#define CW_ADAPTIVE_GAP_FACTOR 4
/* Used when a route's stale_target is not inside (0, 1). */
#define CW_ADAPTIVE_STALE_TARGET_DEFAULT 0.05

/* The learnt state of one key. ttl_ms is the TTL in force; last_check_ms the time of the
 * store or last revalidation; checks and changes count revalidations and how many found
 * the content changed (changes <= checks); observed_ms is the time those checks covered;
 * body_hash is cw_adaptive_hash() of the body last seen, kept for the caller. */
struct cw_adaptive_state {
    int64_t ttl_ms;
    int64_t last_check_ms;
    uint32_t checks;
    uint32_t changes;
    int64_t observed_ms;
    uint64_t body_hash;
};

/* A route's settings. min_ttl_ms below 1 is taken as 1; max_ttl_ms below min_ttl_ms as
 * min_ttl_ms; a stale_target that is NaN or outside (0, 1) as the default 0.05. */
struct cw_adaptive_params {
    int64_t initial_ttl_ms; /* the route's ttl: the first TTL of a new key */
    int64_t min_ttl_ms;
    int64_t max_ttl_ms;
    double stale_target; /* wanted P(content changed within the TTL) */
};

/* First store of a key at now_ms: no history, ttl_ms = initial_ttl_ms clamped to
 * [min_ttl, max_ttl]. Cannot fail. */
void cw_adaptive_init(struct cw_adaptive_state *s, const struct cw_adaptive_params *p,
                      int64_t now_ms, uint64_t body_hash);

/* A revalidation at now_ms found the content changed (or not) since the last one. Counts
 * it, adds the interval since last_check_ms (0 when now_ms is earlier: a clock step or a
 * foreign clock; at most CW_ADAPTIVE_GAP_FACTOR x ttl_ms), sets last_check_ms = now_ms,
 * then computes, stores in s->ttl_ms and returns the new TTL: the estimate's TTL, but at
 * most half the old TTL after a change, and after none at most twice it (no change in
 * the window) or 1.25 times it, within [min_ttl, max_ttl]. The caller updates s->body_hash itself.
 * Cannot fail. */
int64_t cw_adaptive_observe(struct cw_adaptive_state *s, const struct cw_adaptive_params *p,
                            bool changed, int64_t now_ms);

/* The estimated change rate in changes per second: 0 with no change observed (the
 * estimator's own value; the TTL then grows x2 per check, see observe), finite always.
 * For logs, metrics and tests. */
double cw_adaptive_rate(const struct cw_adaptive_state *s);

/* The TTL that keeps P(change within TTL) at stale_target for a change rate of rate_per_s
 * changes per second: -ln(1 - p) / rate, clamped to [min_ttl, max_ttl]; max_ttl for a
 * rate of 0 (or NaN). */
int64_t cw_adaptive_ttl_for_rate(const struct cw_adaptive_params *p, double rate_per_s);

/* 64-bit FNV-1a of len bytes at p (p may be NULL when len is 0), for change detection
 * when a response has no validators. Not keyed: it compares two versions of one body,
 * it is never a lookup key an attacker could aim at. */
uint64_t cw_adaptive_hash(const void *p, size_t len);

#endif /* CW_ADAPTIVE_H */
