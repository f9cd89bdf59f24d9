/* core/breaker.h - a circuit breaker: after a run of failures a dependency (Redis) is not
 * asked again until a probe, sent with backoff, succeeds.
 *
 * Pure: the caller reports outcomes and the time (CLOCK_MONOTONIC ms) and asks what to do;
 * nothing here reads a clock or logs. One breaker belongs to one caller (not thread-safe);
 * owns no memory. States: CLOSED (requests pass; threshold failures in a row open it),
 * OPEN (requests are refused; at retry_at_ms one probe may go), PROBING (the probe is out;
 * its success closes the breaker, its failure reopens it with the wait doubled up to the
 * maximum). */
#ifndef CW_BREAKER_H
#define CW_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

enum cw_breaker_state {
    CW_BREAKER_CLOSED = 0,
    CW_BREAKER_OPEN,
    CW_BREAKER_PROBING,
};

struct cw_breaker {
    enum cw_breaker_state state;
    unsigned failures;  /* in a row, while CLOSED */
    unsigned threshold; /* failures in a row that open it, at least 1 */
    int64_t wait_ms;    /* current wait before a probe */
    int64_t min_wait_ms;
    int64_t max_wait_ms;
    int64_t retry_at_ms; /* OPEN: when a probe may go */
};

/* A closed breaker. threshold 0 is taken as 1; max_wait_ms below min_wait_ms as min. */
void cw_breaker_init(struct cw_breaker *b, unsigned threshold, int64_t min_wait_ms,
                     int64_t max_wait_ms);
/* True when ordinary requests may go (CLOSED). */
bool cw_breaker_is_closed(const struct cw_breaker *b);
/* Records the outcome of an ordinary request at now_ms; returns true when the state changed
 * (to log it once). A success in any state closes the breaker; a failure counts while
 * CLOSED and is ignored otherwise (a request sent before the breaker opened). */
bool cw_breaker_record(struct cw_breaker *b, bool ok, int64_t now_ms);
/* Records the probe's outcome: success closes, failure reopens with the wait doubled (up to
 * max_wait_ms). Returns true when the state changed. */
bool cw_breaker_record_probe(struct cw_breaker *b, bool ok, int64_t now_ms);
/* True when a probe is due at now_ms; the breaker is then PROBING until the probe's outcome
 * is recorded. False in every other case. */
bool cw_breaker_take_probe(struct cw_breaker *b, int64_t now_ms);
/* When the breaker next wants attention: retry_at_ms when OPEN, else INT64_MAX. */
int64_t cw_breaker_next_ms(const struct cw_breaker *b);
/* "closed", "open", "probing". */
const char *cw_breaker_state_name(enum cw_breaker_state s);

#endif /* CW_BREAKER_H */
