/* core/adaptive.c - the adaptive TTL estimator; see core/adaptive.h and
 * docs/ADAPTIVE_TTL.md. */
#include "core/adaptive.h"

#include <math.h>

/* Parameters after sanitising: 1 <= min_ms <= max_ms, log_keep = ln(1 - stale_target),
 * which is negative and finite. */
struct adaptive_sane {
    int64_t min_ms;
    int64_t max_ms;
    double log_keep;
};

static struct adaptive_sane adaptive_sanitise(const struct cw_adaptive_params *p);
static int64_t adaptive_clamp(const struct adaptive_sane *sp, int64_t ttl_ms);
static int64_t adaptive_ttl_of(const struct adaptive_sane *sp, double rate_per_ms);
static double adaptive_rate_per_ms(uint32_t checks, uint32_t changes, int64_t observed_ms);
static void adaptive_decay(struct cw_adaptive_state *s);
static int64_t adaptive_add_sat(int64_t a, int64_t b);
static int64_t adaptive_mul_sat(int64_t a, int64_t b);

void cw_adaptive_init(struct cw_adaptive_state *s, const struct cw_adaptive_params *p,
                      int64_t now_ms, uint64_t body_hash)
{
    struct adaptive_sane sp = adaptive_sanitise(p);

    s->ttl_ms = adaptive_clamp(&sp, p->initial_ttl_ms);
    s->last_check_ms = now_ms;
    s->checks = 0;
    s->changes = 0;
    s->observed_ms = 0;
    s->body_hash = body_hash;
}

int64_t cw_adaptive_observe(struct cw_adaptive_state *s, const struct cw_adaptive_params *p,
                            bool changed, int64_t now_ms)
{
    struct adaptive_sane sp = adaptive_sanitise(p);
    int64_t prev, gap, cap, est, ttl;

    /* The state may come from a damaged or foreign entry: make it consistent first. */
    prev = adaptive_clamp(&sp, s->ttl_ms);
    if (s->changes > s->checks) s->changes = s->checks;
    if (s->observed_ms < 0) s->observed_ms = 0;
    if (s->checks > CW_ADAPTIVE_WINDOW) adaptive_decay(s);

    /* A negative interval (clock step, another host's clock) carries no time; a long idle
     * gap counts as at most GAP_FACTOR TTLs. Both cuts can only raise the estimated rate,
     * so both err towards shorter TTLs. */
    if (__builtin_sub_overflow(now_ms, s->last_check_ms, &gap)) {
        gap = now_ms > s->last_check_ms ? INT64_MAX : 0;
    }
    if (gap < 0) gap = 0;
    cap = adaptive_mul_sat(prev, CW_ADAPTIVE_GAP_FACTOR);
    if (gap > cap) gap = cap;

    s->checks++;
    if (changed) s->changes++;
    s->observed_ms = adaptive_add_sat(s->observed_ms, gap);
    s->last_check_ms = now_ms;
    if (s->checks > CW_ADAPTIVE_WINDOW) adaptive_decay(s);

    /* With no change in the window the estimator says rate 0 (TTL = max_ttl at once);
     * the step bound turns that into x2 per unchanged check instead. With changes on
     * record, x1.25 keeps the rebound after a change's halving from overshooting. */
    est = adaptive_ttl_of(&sp, adaptive_rate_per_ms(s->checks, s->changes, s->observed_ms));
    if (changed) {
        ttl = prev / 2;
    } else if (s->changes == 0) {
        ttl = adaptive_mul_sat(prev, 2);
    } else {
        ttl = adaptive_add_sat(prev, prev / 4);
    }
    if (est < ttl) ttl = est;
    s->ttl_ms = adaptive_clamp(&sp, ttl);
    return s->ttl_ms;
}

double cw_adaptive_rate(const struct cw_adaptive_state *s)
{
    uint32_t changes = s->changes > s->checks ? s->checks : s->changes;

    return adaptive_rate_per_ms(s->checks, changes, s->observed_ms) * 1000.0;
}

int64_t cw_adaptive_ttl_for_rate(const struct cw_adaptive_params *p, double rate_per_s)
{
    struct adaptive_sane sp = adaptive_sanitise(p);

    return adaptive_ttl_of(&sp, rate_per_s / 1000.0);
}

uint64_t cw_adaptive_hash(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 offset basis */
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL; /* FNV 64 prime */
    }
    return h;
}

static struct adaptive_sane adaptive_sanitise(const struct cw_adaptive_params *p)
{
    struct adaptive_sane sp;
    double target = p->stale_target;

    sp.min_ms = p->min_ttl_ms < 1 ? 1 : p->min_ttl_ms;
    sp.max_ms = p->max_ttl_ms < sp.min_ms ? sp.min_ms : p->max_ttl_ms;
    /* !(x > 0 && x < 1) is also true for NaN. */
    if (!(target > 0.0 && target < 1.0)) target = CW_ADAPTIVE_STALE_TARGET_DEFAULT;
    sp.log_keep = log1p(-target);
    return sp;
}

static int64_t adaptive_clamp(const struct adaptive_sane *sp, int64_t ttl_ms)
{
    if (ttl_ms < sp->min_ms) return sp->min_ms;
    if (ttl_ms > sp->max_ms) return sp->max_ms;
    return ttl_ms;
}

/* P(change within t) = 1 - e^(-rate t) <= p  <=>  t <= -ln(1 - p) / rate. Clamped in
 * double before the conversion, so no rate (0, tiny, NaN, inf) reaches undefined
 * behaviour. */
static int64_t adaptive_ttl_of(const struct adaptive_sane *sp, double rate_per_ms)
{
    double t;

    if (!(rate_per_ms > 0.0)) return sp->max_ms;
    t = -sp->log_keep / rate_per_ms;
    if (!(t < (double)sp->max_ms)) return sp->max_ms;
    if (!(t > (double)sp->min_ms)) return sp->min_ms;
    return (int64_t)t;
}

/* Cho & Garcia-Molina's improved estimator for n checks a mean interval I apart of which
 * X saw a change: rate = -ln((n - X + 0.5) / (n + 0.5)) / I. The +0.5 keeps it finite
 * when every check saw a change (X = n) and removes most of the bias of the naive
 * -ln(1 - X/n) / I. Written as -log1p(-X / (n + 0.5)), accurate for small X/n. The mean
 * interval is at least 1 ms, so zero intervals give a large but finite rate. */
static double adaptive_rate_per_ms(uint32_t checks, uint32_t changes, int64_t observed_ms)
{
    double n = checks, x = changes, mean_ms;

    if (checks == 0 || changes == 0) return 0.0;
    mean_ms = observed_ms > 0 ? (double)observed_ms / n : 0.0;
    if (mean_ms < 1.0) mean_ms = 1.0;
    return -log1p(-x / (n + 0.5)) / mean_ms;
}

/* Scales the history to half the window, keeping the change ratio (rounded to nearest)
 * and the mean interval: older checks weigh half as much after each decay. One step,
 * whatever the counts, so a damaged state costs no more than a normal one. */
static void adaptive_decay(struct cw_adaptive_state *s)
{
    uint64_t n = s->checks, keep = CW_ADAPTIVE_WINDOW / 2;

    if (n <= keep) return;
    s->changes = (uint32_t)(((uint64_t)s->changes * keep * 2 + n) / (2 * n));
    s->observed_ms = (int64_t)((double)s->observed_ms * (double)keep / (double)n);
    s->checks = (uint32_t)keep;
}

static int64_t adaptive_add_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t adaptive_mul_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_mul_overflow(a, b, &r)) return (a > 0) == (b > 0) ? INT64_MAX : INT64_MIN;
    return r;
}
