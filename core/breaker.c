/* core/breaker.c - the circuit breaker; see core/breaker.h. */
#include "core/breaker.h"

void cw_breaker_init(struct cw_breaker *b, unsigned threshold, int64_t min_wait_ms,
                     int64_t max_wait_ms)
{
    b->state = CW_BREAKER_CLOSED;
    b->failures = 0;
    b->threshold = threshold > 0 ? threshold : 1;
    b->min_wait_ms = min_wait_ms > 0 ? min_wait_ms : 1;
    b->max_wait_ms = max_wait_ms > b->min_wait_ms ? max_wait_ms : b->min_wait_ms;
    b->wait_ms = b->min_wait_ms;
    b->retry_at_ms = 0;
}

bool cw_breaker_is_closed(const struct cw_breaker *b)
{
    return b->state == CW_BREAKER_CLOSED;
}

bool cw_breaker_record(struct cw_breaker *b, bool ok, int64_t now_ms)
{
    if (ok) {
        bool changed = b->state != CW_BREAKER_CLOSED;
        b->state = CW_BREAKER_CLOSED;
        b->failures = 0;
        b->wait_ms = b->min_wait_ms;
        return changed;
    }
    switch (b->state) {
    case CW_BREAKER_CLOSED:
        if (++b->failures < b->threshold) return false;
        b->state = CW_BREAKER_OPEN;
        b->wait_ms = b->min_wait_ms;
        b->retry_at_ms = now_ms + b->wait_ms;
        return true;
    case CW_BREAKER_OPEN:
    case CW_BREAKER_PROBING:
        /* A late failure of a request sent before the breaker opened: no news. */
        return false;
    }
    return false;
}

bool cw_breaker_record_probe(struct cw_breaker *b, bool ok, int64_t now_ms)
{
    if (ok || b->state == CW_BREAKER_CLOSED) return cw_breaker_record(b, ok, now_ms);
    /* The probe failed: wait longer, so that a dead Redis costs one probe per max_wait. */
    b->wait_ms = b->wait_ms * 2 < b->max_wait_ms ? b->wait_ms * 2 : b->max_wait_ms;
    b->retry_at_ms = now_ms + b->wait_ms;
    b->state = CW_BREAKER_OPEN;
    return true;
}

bool cw_breaker_take_probe(struct cw_breaker *b, int64_t now_ms)
{
    if (b->state != CW_BREAKER_OPEN || now_ms < b->retry_at_ms) return false;
    b->state = CW_BREAKER_PROBING;
    return true;
}

int64_t cw_breaker_next_ms(const struct cw_breaker *b)
{
    return b->state == CW_BREAKER_OPEN ? b->retry_at_ms : INT64_MAX;
}

const char *cw_breaker_state_name(enum cw_breaker_state s)
{
    switch (s) {
    case CW_BREAKER_CLOSED:
        return "closed";
    case CW_BREAKER_OPEN:
        return "open";
    case CW_BREAKER_PROBING:
        return "probing";
    }
    return "?";
}
