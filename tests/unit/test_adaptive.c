/* tests/unit/test_adaptive.c - the adaptive TTL estimator, on simulated time. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "core/adaptive.h"

Suite *adaptive_suite(void);

#define S_MS   1000LL
#define MIN_MS (60 * S_MS)

/* initial 60 s, min 1 s, max 10 min, target 0.05: the route defaults. */
static struct cw_adaptive_params params(void)
{
    struct cw_adaptive_params p = {60 * S_MS, 1 * S_MS, 10 * MIN_MS, 0.05};

    return p;
}

/* xorshift64: a deterministic PRNG, so every run sees the same "random" key. */
static uint64_t prng_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Uniform in (0, 1). */
static double prng_unit(uint64_t *x)
{
    return ((double)(prng_next(x) >> 11) + 0.5) / 9007199254740992.0;
}

/* Exponential with rate rate_per_s, in ms. */
static double prng_exp_ms(uint64_t *x, double rate_per_s)
{
    return -log(prng_unit(x)) / rate_per_s * 1000.0;
}

/* A key whose content changes as a Poisson process: it is checked at the TTL the module
 * picks, and a check sees "changed" when a change happened since the last check. */
struct poisson_key {
    uint64_t rng;
    double rate_per_s;
    double next_change_ms;
};

static bool poisson_changed_by(struct poisson_key *k, int64_t now_ms)
{
    bool changed = false;

    while (k->next_change_ms <= (double)now_ms) {
        changed = true;
        k->next_change_ms += prng_exp_ms(&k->rng, k->rate_per_s);
    }
    return changed;
}

/* Runs checks at the module's TTLs for a key changing at rate_per_s. Over the last three
 * quarters: the mean rate estimate relative to the truth, and the fraction of checks that
 * found the content changed (= P(change within the TTL) the module aimed at). */
static void poisson_run(double rate_per_s, uint64_t seed, int checks, double *rate_ratio,
                        double *changed_frac)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    struct poisson_key k = {seed, rate_per_s, 0};
    int64_t now = 0;
    double rate_sum = 0;
    int i, counted = 0, changed_n = 0;

    k.next_change_ms = prng_exp_ms(&k.rng, rate_per_s);
    cw_adaptive_init(&s, &p, now, 0);
    for (i = 0; i < checks; i++) {
        bool changed;

        now += s.ttl_ms;
        changed = poisson_changed_by(&k, now);
        cw_adaptive_observe(&s, &p, changed, now);
        ck_assert_int_ge(s.ttl_ms, p.min_ttl_ms);
        ck_assert_int_le(s.ttl_ms, p.max_ttl_ms);
        if (i >= checks / 4) {
            counted++;
            changed_n += changed;
            rate_sum += cw_adaptive_rate(&s);
        }
    }
    *rate_ratio = rate_sum / counted / rate_per_s;
    *changed_frac = (double)changed_n / counted;
}

/* Deterministic: the content changes at every multiple of period_ms. */
static bool periodic_changed(int64_t last_ms, int64_t now_ms, int64_t period_ms)
{
    return now_ms / period_ms != last_ms / period_ms;
}

/* Runs n checks of a periodic key at the module's TTLs; returns the largest TTL picked
 * during the last `tail` of them. */
static int64_t periodic_run(struct cw_adaptive_state *s, const struct cw_adaptive_params *p,
                            int64_t *now, int64_t period_ms, int n, int tail)
{
    int64_t worst = 0;
    int i;

    for (i = 0; i < n; i++) {
        int64_t last = *now;

        *now += s->ttl_ms;
        cw_adaptive_observe(s, p, periodic_changed(last, *now, period_ms), *now);
        if (i >= n - tail && s->ttl_ms > worst) worst = s->ttl_ms;
    }
    return worst;
}

/* Hand-computed Cho & Garcia-Molina values. */
START_TEST(test_adaptive_estimator_math)
{
    struct cw_adaptive_state s = {0};
    struct cw_adaptive_params p = params();

    /* n = 10, X = 3, I = 2 s: ln(10.5 / 7.5) / 2 = ln(1.4) / 2 = 0.168236118... /s */
    s.checks = 10;
    s.changes = 3;
    s.observed_ms = 20 * S_MS;
    ck_assert_double_eq_tol(cw_adaptive_rate(&s), 0.1682361183, 1e-9);
    /* Every check changed, n = X = 4, I = 1 s: ln(4.5 / 0.5) = ln 9 = 2.197224577 /s,
     * finite thanks to the +0.5. */
    s.checks = 4;
    s.changes = 4;
    s.observed_ms = 4 * S_MS;
    ck_assert_double_eq_tol(cw_adaptive_rate(&s), 2.1972245773, 1e-9);
    /* n = 100, X = 1, I = 10 s: ln(100.5 / 99.5) / 10 = 0.00100000833346 /s */
    s.checks = 100;
    s.changes = 1;
    s.observed_ms = 1000 * S_MS;
    ck_assert_double_eq_tol(cw_adaptive_rate(&s), 0.00100000833346, 1e-13);
    /* No change: the estimator's own value, 0. */
    s.changes = 0;
    ck_assert(cw_adaptive_rate(&s) == 0.0);
    s.checks = 0;
    ck_assert(cw_adaptive_rate(&s) == 0.0);

    /* TTL = -ln(0.95) / rate: 0.0512933 / 0.01 = 5.129 s; / 0.001 = 51.29 s. */
    p.min_ttl_ms = 1;
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.01), 5129);
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.001), 51293);
    p.stale_target = 0.5; /* ln 2 / 1 = 0.693 s */
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 1.0), 693);
}
END_TEST

/* observe() applies the estimate: n = 10 checks 10 s apart with 3 changes gives the
 * estimator's TTL, when the step bounds do not bind. */
START_TEST(test_adaptive_observe_uses_estimate)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    double rate;
    int64_t ttl;

    cw_adaptive_init(&s, &p, 0, 0);
    s.ttl_ms = 10 * S_MS;
    s.checks = 9;
    s.changes = 2;
    s.observed_ms = 90 * S_MS;
    s.last_check_ms = 90 * S_MS;
    /* n = 10, X = 3, I = 10 s: rate ln(1.4) / 10 = 0.0336472 /s, TTL 1.5245 s; a change
     * also caps it at 5 s, so the estimate wins. */
    ttl = cw_adaptive_observe(&s, &p, true, 100 * S_MS);
    rate = log(1.4) / 10.0;
    ck_assert_double_eq_tol(cw_adaptive_rate(&s), rate, 1e-12);
    ck_assert_int_eq(ttl, (int64_t)(-log1p(-0.05) / rate * 1000.0));
    ck_assert_int_eq(s.ttl_ms, ttl);
    ck_assert_int_eq(s.checks, 10);
    ck_assert_int_eq(s.changes, 3);
    ck_assert_int_eq(s.observed_ms, 100 * S_MS);
    ck_assert_int_eq(s.last_check_ms, 100 * S_MS);
}
END_TEST

START_TEST(test_adaptive_init)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;

    cw_adaptive_init(&s, &p, 12345, 0xabcdefULL);
    ck_assert_int_eq(s.ttl_ms, 60 * S_MS);
    ck_assert_int_eq(s.last_check_ms, 12345);
    ck_assert_uint_eq(s.checks, 0);
    ck_assert_uint_eq(s.changes, 0);
    ck_assert_int_eq(s.observed_ms, 0);
    ck_assert_uint_eq(s.body_hash, 0xabcdefULL);
    p.initial_ttl_ms = 0;
    cw_adaptive_init(&s, &p, 0, 0);
    ck_assert_int_eq(s.ttl_ms, 1 * S_MS);
    p.initial_ttl_ms = INT64_MAX;
    cw_adaptive_init(&s, &p, 0, 0);
    ck_assert_int_eq(s.ttl_ms, 10 * MIN_MS);
}
END_TEST

/* Never changes: x2 per check from 60 s, then held at max_ttl. */
START_TEST(test_adaptive_static_grows_to_max)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    const int64_t want[] = {120 * S_MS, 240 * S_MS, 480 * S_MS, 600 * S_MS, 600 * S_MS};
    int64_t now = 0;
    size_t i;

    cw_adaptive_init(&s, &p, now, 0);
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        now += s.ttl_ms;
        ck_assert_int_eq(cw_adaptive_observe(&s, &p, false, now), want[i]);
    }
    for (i = 0; i < 1000; i++) {
        now += s.ttl_ms;
        ck_assert_int_eq(cw_adaptive_observe(&s, &p, false, now), 600 * S_MS);
    }
    ck_assert(cw_adaptive_rate(&s) == 0.0);
    ck_assert_uint_le(s.checks, CW_ADAPTIVE_WINDOW);
}
END_TEST

/* Changes every 2 s, min_ttl 1 s: down from 60 s by halving (6 checks), then it stays
 * between min_ttl and the period. */
START_TEST(test_adaptive_every_2s)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    int64_t now = 0, worst;

    cw_adaptive_init(&s, &p, now, 0);
    worst = periodic_run(&s, &p, &now, 2 * S_MS, 6, 1);
    ck_assert_int_le(worst, 2 * S_MS);
    worst = periodic_run(&s, &p, &now, 2 * S_MS, 500, 400);
    ck_assert_int_le(worst, 2 * S_MS);
    ck_assert_int_eq(s.ttl_ms, 1 * S_MS);
    /* About every other 1 s check sees a change: 0.5 /s measured at 1 s intervals. */
    ck_assert_double_gt(cw_adaptive_rate(&s), 0.3);
}
END_TEST

START_TEST(test_adaptive_clamps)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    int64_t now;
    int i;

    /* Changed at every check: at least halved each time, then held at min_ttl. */
    cw_adaptive_init(&s, &p, 0, 0);
    now = 0;
    for (i = 1; i <= 300; i++) {
        int64_t prev = s.ttl_ms;

        now += s.ttl_ms;
        ck_assert_int_le(cw_adaptive_observe(&s, &p, true, now), prev > 2 * S_MS ? prev / 2 : S_MS);
        if (i >= 6) ck_assert_int_eq(s.ttl_ms, 1 * S_MS);
    }
    /* ttl_for_rate: 0 and NaN are max; inf and huge are min. */
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.0), 10 * MIN_MS);
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, NAN), 10 * MIN_MS);
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, -1.0), 10 * MIN_MS);
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, INFINITY), 1 * S_MS);
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 1e300), 1 * S_MS);
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 1e-300), 10 * MIN_MS);
    /* Bad parameters: min < 1 is 1, max < min is min, a bad target is 0.05. */
    p.min_ttl_ms = -5;
    p.max_ttl_ms = -10;
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 1.0), 1);
    p.min_ttl_ms = 1;
    p.max_ttl_ms = INT64_MAX;
    p.stale_target = NAN;
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.01), 5129);
    p.stale_target = 1.0;
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.01), 5129);
    p.stale_target = 0.0;
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.01), 5129);
    p.stale_target = -3.0;
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.01), 5129);
    ck_assert_int_eq(cw_adaptive_ttl_for_rate(&p, 0.0), INT64_MAX);
    /* A max that is the whole int64 range still doubles without overflow. */
    p.min_ttl_ms = INT64_MAX / 2 + 1;
    cw_adaptive_init(&s, &p, 0, 0);
    ck_assert_int_eq(s.ttl_ms, INT64_MAX / 2 + 1);
    ck_assert_int_eq(cw_adaptive_observe(&s, &p, false, INT64_MAX), INT64_MAX);
    ck_assert_int_eq(cw_adaptive_observe(&s, &p, false, INT64_MAX), INT64_MAX);
}
END_TEST

/* A Poisson key, checked at the TTLs the module picks: the rate estimate averages within
 * 30 % of the truth, and the fraction of checks that found a change (the P(change within
 * TTL) being controlled) is about stale_target. */
START_TEST(test_adaptive_poisson_converges)
{
    const double rates[] = {0.01, 0.001, 0.003}; /* ideal TTLs 5.1 s, 51 s, 17 s */
    size_t i;

    for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        double ratio, frac;

        poisson_run(rates[i], 0x9e3779b97f4a7c15ULL + i, 20000, &ratio, &frac);
        ck_assert_msg(ratio > 0.7 && ratio < 1.3, "rate %g: estimate/true %.3f", rates[i], ratio);
        ck_assert_msg(frac < 0.065, "rate %g: changed fraction %.4f", rates[i], frac);
    }
}
END_TEST

/* Static, then changing every 2 s: halving takes max_ttl to the period within
 * log2(600 s / 2 s) + 1 = 10 checks, and it stays short. Then static again: back to
 * max_ttl within a bounded number of checks. */
START_TEST(test_adaptive_regime_change)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    int64_t now = 0, worst;
    int i;

    cw_adaptive_init(&s, &p, now, 0);
    for (i = 0; i < 200; i++) {
        now += s.ttl_ms;
        cw_adaptive_observe(&s, &p, false, now);
    }
    ck_assert_int_eq(s.ttl_ms, 10 * MIN_MS);

    periodic_run(&s, &p, &now, 2 * S_MS, 10, 1);
    ck_assert_int_le(s.ttl_ms, 2 * S_MS);
    worst = periodic_run(&s, &p, &now, 2 * S_MS, 300, 300);
    ck_assert_int_le(worst, 4 * S_MS);

    for (i = 0; i < 4 * CW_ADAPTIVE_WINDOW && s.ttl_ms < 10 * MIN_MS; i++) {
        now += s.ttl_ms;
        cw_adaptive_observe(&s, &p, false, now);
    }
    ck_assert_int_eq(s.ttl_ms, 10 * MIN_MS);
}
END_TEST

/* Past the window the history halves, keeping the change ratio and the mean interval. */
START_TEST(test_adaptive_decay)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    int64_t now = 0;
    int i;

    p.max_ttl_ms = p.min_ttl_ms = 5 * S_MS; /* fixed intervals */
    cw_adaptive_init(&s, &p, now, 0);
    for (i = 1; i <= CW_ADAPTIVE_WINDOW; i++) {
        now += 5 * S_MS;
        cw_adaptive_observe(&s, &p, i % 4 == 0, now);
    }
    ck_assert_uint_eq(s.checks, CW_ADAPTIVE_WINDOW);
    ck_assert_uint_eq(s.changes, CW_ADAPTIVE_WINDOW / 4);
    ck_assert_int_eq(s.observed_ms, CW_ADAPTIVE_WINDOW * 5 * S_MS);
    now += 5 * S_MS;
    cw_adaptive_observe(&s, &p, false, now);
    ck_assert_uint_eq(s.checks, CW_ADAPTIVE_WINDOW / 2);
    /* 32 of 129, scaled to 64: 15.88 -> 16. */
    ck_assert_uint_eq(s.changes, CW_ADAPTIVE_WINDOW / 8);
    ck_assert_int_eq(s.observed_ms, CW_ADAPTIVE_WINDOW / 2 * 5 * S_MS);
}
END_TEST

/* Clock steps, zero intervals, long gaps and damaged state. */
START_TEST(test_adaptive_edges)
{
    struct cw_adaptive_params p = params();
    struct cw_adaptive_state s;
    int64_t ttl;
    int i;

    /* now before last_check: the check counts, the time does not, last_check follows. */
    cw_adaptive_init(&s, &p, 100 * S_MS, 0);
    ttl = cw_adaptive_observe(&s, &p, false, 40 * S_MS);
    ck_assert_int_eq(ttl, 120 * S_MS);
    ck_assert_uint_eq(s.checks, 1);
    ck_assert_int_eq(s.observed_ms, 0);
    ck_assert_int_eq(s.last_check_ms, 40 * S_MS);

    /* Zero intervals that all saw a change: a finite rate and min_ttl. */
    cw_adaptive_init(&s, &p, 0, 0);
    for (i = 0; i < 10; i++) {
        ttl = cw_adaptive_observe(&s, &p, true, 0);
    }
    ck_assert_int_eq(ttl, 1 * S_MS);
    ck_assert(isfinite(cw_adaptive_rate(&s)));
    ck_assert_int_eq(s.observed_ms, 0);

    /* A day-long idle gap counts as GAP_FACTOR TTLs: n = X = 1 over 240 s is a rate of
     * ln 3 / 240 s, a TTL of 240 s x -ln(0.95) / ln 3 = 11.2 s. */
    cw_adaptive_init(&s, &p, 0, 0);
    ttl = cw_adaptive_observe(&s, &p, true, 86400 * S_MS);
    ck_assert_int_eq(s.observed_ms, CW_ADAPTIVE_GAP_FACTOR * 60 * S_MS);
    ck_assert_int_le(llabs(ttl - (int64_t)(-log1p(-0.05) * 240000.0 / log(3.0))), 1);

    /* Extreme clocks: no overflow (UBSan watches), the interval saturates then is capped. */
    cw_adaptive_init(&s, &p, INT64_MIN, 0);
    cw_adaptive_observe(&s, &p, false, INT64_MAX);
    ck_assert_int_eq(s.observed_ms, CW_ADAPTIVE_GAP_FACTOR * 60 * S_MS);
    cw_adaptive_init(&s, &p, INT64_MAX, 0);
    cw_adaptive_observe(&s, &p, true, INT64_MIN);
    ck_assert_int_eq(s.observed_ms, 0);

    /* Damaged state: changes > checks, counts far past the window, negative time and TTL. */
    s.ttl_ms = -7;
    s.checks = UINT32_MAX;
    s.changes = UINT32_MAX;
    s.observed_ms = -1;
    s.last_check_ms = 0;
    ttl = cw_adaptive_observe(&s, &p, false, 10 * S_MS);
    ck_assert_int_ge(ttl, p.min_ttl_ms);
    ck_assert_int_le(ttl, p.max_ttl_ms);
    ck_assert_uint_le(s.checks, CW_ADAPTIVE_WINDOW);
    ck_assert_uint_le(s.changes, s.checks);
    ck_assert_int_ge(s.observed_ms, 0);
    s.changes = 77;
    s.checks = 3;
    ck_assert(isfinite(cw_adaptive_rate(&s)));
    s.observed_ms = INT64_MAX;
    ttl = cw_adaptive_observe(&s, &p, true, 20 * S_MS);
    ck_assert_int_ge(ttl, p.min_ttl_ms);
    ck_assert_int_le(ttl, p.max_ttl_ms);
    ck_assert(isfinite(cw_adaptive_rate(&s)));
}
END_TEST

/* FNV-1a 64 reference vectors. */
START_TEST(test_adaptive_hash)
{
    ck_assert_uint_eq(cw_adaptive_hash(NULL, 0), 0xcbf29ce484222325ULL);
    ck_assert_uint_eq(cw_adaptive_hash("a", 1), 0xaf63dc4c8601ec8cULL);
    ck_assert_uint_eq(cw_adaptive_hash("foobar", 6), 0x85944171f73967e8ULL);
    ck_assert_uint_ne(cw_adaptive_hash("price=10", 8), cw_adaptive_hash("price=11", 8));
}
END_TEST

Suite *adaptive_suite(void)
{
    Suite *s = suite_create("adaptive");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_adaptive_estimator_math);
    tcase_add_test(tc, test_adaptive_observe_uses_estimate);
    tcase_add_test(tc, test_adaptive_init);
    tcase_add_test(tc, test_adaptive_static_grows_to_max);
    tcase_add_test(tc, test_adaptive_every_2s);
    tcase_add_test(tc, test_adaptive_clamps);
    tcase_add_test(tc, test_adaptive_poisson_converges);
    tcase_add_test(tc, test_adaptive_regime_change);
    tcase_add_test(tc, test_adaptive_decay);
    tcase_add_test(tc, test_adaptive_edges);
    tcase_add_test(tc, test_adaptive_hash);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(adaptive_suite)
