/* core/pool.c - server choice, passive and active health, the origin breaker; see
 * core/pool.h. */
#include "core/pool.h"

#define POOL_T48   ((1ull << 48) - 1)
#define POOL_C14   ((1u << 14) - 1)
#define POOL_C16   0xffffu
#define POOL_RUN31 0x7fffffffu

static bool pool_is_candidate(const struct cw_pool_server *s, bool backup)
{
    return s->is_up && s->is_backup == backup && s->weight > 0;
}

/* Smooth weighted round robin (nginx's ngx_http_upstream_get_peer) over the servers of the
 * given tier, skipping exclude, and with least_conn only those at the lowest load per weight.
 * -1 when the tier has none. */
static int pool_pick_tier(struct cw_pool_server *s, size_t n, bool backup, bool least_conn,
                          int exclude)
{
    int best = -1, low = -1;
    int64_t total = 0;

    if (least_conn) {
        for (size_t i = 0; i < n; i++) {
            if (!pool_is_candidate(&s[i], backup) || (int)i == exclude) continue;
            /* running/weight < low's running/weight, without division. */
            if (low < 0 ||
                (int64_t)s[i].running * s[low].weight < (int64_t)s[low].running * s[i].weight)
                low = (int)i;
        }
        if (low < 0) return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!pool_is_candidate(&s[i], backup) || (int)i == exclude) continue;
        if (least_conn &&
            (int64_t)s[i].running * s[low].weight != (int64_t)s[low].running * s[i].weight)
            continue;
        s[i].current += s[i].weight;
        total += s[i].weight;
        if (best < 0 || s[i].current > s[best].current) best = (int)i;
    }
    if (best >= 0) s[best].current -= total;
    return best;
}

int cw_pool_pick(struct cw_pool_server *s, size_t n, enum cw_pool_balance balance, int exclude)
{
    bool lc = balance == CW_POOL_LEAST_CONN;
    int i;

    if ((i = pool_pick_tier(s, n, false, lc, exclude)) >= 0) return i;
    if ((i = pool_pick_tier(s, n, true, lc, exclude)) >= 0) return i;
    /* Only the excluded server is up: it is still better than no answer. */
    if (exclude >= 0 && (size_t)exclude < n && s[exclude].is_up && s[exclude].weight > 0)
        return exclude;
    return -1;
}

bool cw_pool_health_is_down(uint64_t w, int64_t now_ms)
{
    return cw_pool_health_down_until(w) > now_ms;
}

uint64_t cw_pool_health_next(uint64_t w, bool ok, int64_t now_ms, const struct cw_pool_health *h)
{
    unsigned fails = cw_pool_health_fails(w), max = h->max_fails ? h->max_fails : 1;
    int64_t down_ms, until;

    if (ok) return 0;
    if (fails < POOL_C16) fails++;
    if (fails < max) return (uint64_t)fails << 48;
    /* fail_timeout, doubled per failure past max_fails, capped; shifts bounded to stay exact. */
    down_ms = h->fail_timeout_ms > 0 ? h->fail_timeout_ms : 1;
    for (unsigned k = max; k < fails && down_ms < h->fail_max_ms; k++)
        down_ms *= 2;
    if (down_ms > h->fail_max_ms && h->fail_max_ms > 0) down_ms = h->fail_max_ms;
    until = now_ms + down_ms;
    if (until < 1) until = 1;
    return ((uint64_t)fails << 48) | ((uint64_t)until & POOL_T48);
}

uint32_t cw_pool_probe_next(uint32_t w, bool ok, unsigned rise, unsigned fall, bool *changed)
{
    bool down = cw_pool_probe_is_down(w);
    uint32_t run = w >> 1;
    unsigned need = down ? (rise ? rise : 1) : (fall ? fall : 1);

    *changed = false;
    /* A probe that agrees with the state ends any run towards the other. */
    if (ok != down) return down ? 1u : 0u;
    if (run < POOL_RUN31) run++;
    if (run < need) return (run << 1) | (down ? 1u : 0u);
    *changed = true;
    return down ? 0u : 1u;
}

static uint64_t pool_breaker_word(enum cw_pool_breaker_state st, unsigned count, int64_t t)
{
    if (t < 0) t = 0;
    if (count > POOL_C14) count = POOL_C14;
    return ((uint64_t)st << 62) | ((uint64_t)count << 48) | ((uint64_t)t & POOL_T48);
}

enum cw_pool_admit cw_pool_breaker_admit(uint64_t w, int64_t now_ms,
                                         const struct cw_pool_breaker *b, uint64_t *next)
{
    int64_t t = cw_pool_breaker_time(w);

    *next = w;
    switch (cw_pool_breaker_state(w)) {
    case CW_POOL_BREAKER_CLOSED:
        return CW_POOL_ADMIT_GO;
    case CW_POOL_BREAKER_OPEN:
    case CW_POOL_BREAKER_HALF_OPEN:
        /* OPEN past its cooldown, or a probe given up: this request is the probe. */
        if (now_ms < t) return CW_POOL_ADMIT_REFUSE;
        *next = pool_breaker_word(CW_POOL_BREAKER_HALF_OPEN, 0, now_ms + b->probe_ms);
        return CW_POOL_ADMIT_PROBE;
    }
    return CW_POOL_ADMIT_REFUSE;
}

uint64_t cw_pool_breaker_next(uint64_t w, bool ok, bool probe, int64_t now_ms,
                              const struct cw_pool_breaker *b)
{
    enum cw_pool_breaker_state st = cw_pool_breaker_state(w);
    unsigned count = (unsigned)((w >> 48) & POOL_C14), need = b->failures ? b->failures : 1;
    int64_t t = cw_pool_breaker_time(w);

    if (ok) return 0;
    if (st == CW_POOL_BREAKER_HALF_OPEN && probe)
        return pool_breaker_word(CW_POOL_BREAKER_OPEN, 0, now_ms + b->cooldown_ms);
    if (st != CW_POOL_BREAKER_CLOSED) return w; /* sent before it opened: no news */
    if (count == 0 || now_ms - t > b->window_ms) {
        count = 0;
        t = now_ms;
    }
    count++;
    if (count >= need) return pool_breaker_word(CW_POOL_BREAKER_OPEN, 0, now_ms + b->cooldown_ms);
    return pool_breaker_word(CW_POOL_BREAKER_CLOSED, count, t);
}

uint64_t cw_pool_breaker_release(uint64_t w, int64_t now_ms)
{
    if (cw_pool_breaker_state(w) != CW_POOL_BREAKER_HALF_OPEN) return w;
    /* Already given up (probe_ms passed): the word is as good as released. */
    if (cw_pool_breaker_time(w) <= now_ms) return w;
    return pool_breaker_word(CW_POOL_BREAKER_HALF_OPEN, 0, now_ms);
}

const char *cw_pool_breaker_name(enum cw_pool_breaker_state s)
{
    switch (s) {
    case CW_POOL_BREAKER_CLOSED:
        return "closed";
    case CW_POOL_BREAKER_HALF_OPEN:
        return "half-open";
    case CW_POOL_BREAKER_OPEN:
        return "open";
    }
    return "?";
}

void cw_pool_budget_init(struct cw_pool_budget *b, unsigned pct, unsigned burst)
{
    b->pct = pct > 100 ? 100 : pct;
    b->burst = burst;
    b->credits = (int64_t)burst * 100;
}

void cw_pool_budget_earn(struct cw_pool_budget *b)
{
    b->credits += b->pct;
    if (b->credits > (int64_t)b->burst * 100) b->credits = (int64_t)b->burst * 100;
}

bool cw_pool_budget_take(struct cw_pool_budget *b)
{
    if (b->credits < 100) return false;
    b->credits -= 100;
    return true;
}

void cw_pool_budget_refund(struct cw_pool_budget *b)
{
    b->credits += 100;
    if (b->credits > (int64_t)b->burst * 100) b->credits = (int64_t)b->burst * 100;
}
