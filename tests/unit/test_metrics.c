/* tests/unit/test_metrics.c - core/metrics (the exposition) with shm/seg's counters: what is
 * recorded is what is printed, per route, result, method and origin; histograms are
 * cumulative; every family has HELP and TYPE; label values are escaped. */
#include "core/metrics.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/seg.h"
#include "tests/unit/check_main.h"

Suite *metrics_suite(void);

static struct cw_metrics_snapshot *snap_new(void)
{
    struct cw_metrics_snapshot *s = calloc(1, sizeof(*s));

    ck_assert_ptr_nonnull(s);
    s->version = "0.1.0";
    s->route_labels[0] = "/";
    s->route_count = 1;
    s->origin_labels[0] = "api";
    s->origin_count = 1;
    s->l1_size_bytes = 64u << 20;
    return s;
}

/* Formats s; the caller frees the text. */
static char *render(const struct cw_metrics_snapshot *s)
{
    struct cw_metrics_buf b = {0};

    ck_assert_int_eq(cw_metrics_format(s, &b), 0);
    ck_assert_ptr_nonnull(b.p);
    ck_assert_uint_eq(strlen(b.p), b.len);
    return b.p;
}

/* The value of the sample whose line starts with "series " exactly, or -1 when absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    }
    return -1;
}

static void assert_sample(const char *text, const char *series, double want)
{
    double got = sample(text, series);

    ck_assert_msg(got == want, "%s: got %g, want %g", series, got, want);
}

START_TEST(test_metrics_build_info)
{
    struct cw_metrics_snapshot *s = snap_new();
    char *t = render(s);

    ck_assert_ptr_nonnull(strstr(t, "# HELP cachewarp_build_info "));
    ck_assert_ptr_nonnull(strstr(t, "# TYPE cachewarp_build_info gauge\n"));
    assert_sample(t, "cachewarp_build_info{version=\"0.1.0\"}", 1);
    /* Reserved families are present with 0. */
    assert_sample(t, "cachewarp_l2_hits_total", 0);
    assert_sample(t, "cachewarp_l2_misses_total", 0);
    assert_sample(t, "cachewarp_l2_errors_total", 0);
    assert_sample(t, "cachewarp_l2_breaker_state", 0);
    assert_sample(t, "cachewarp_origin_breaker_state{origin=\"api\"}", 0);
    ck_assert_uint_eq(t[strlen(t) - 1], '\n');
    free(t);
    free(s);
}
END_TEST

/* Every sample's family has HELP and TYPE lines before it; counters end in _total; every
 * line is a comment or "name[{labels}] value". */
START_TEST(test_metrics_help_and_type_for_every_family)
{
    struct cw_metrics_snapshot *s = snap_new();
    char *t, *save = NULL;
    char typed[64][96];
    char types[64][16];
    size_t ntyped = 0, samples = 0;

    s->n.req_lat[0][CW_METRICS_RESULT_HIT].b[0] = 1;
    s->n.origin_lat[0].b[3] = 1;
    s->has_l1 = true;
    s->start_time_ms = 1700000000123;
    t = render(s);
    for (char *line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[96];
        if (strncmp(line, "# HELP ", 7) == 0) continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            ck_assert_uint_lt(ntyped, 64);
            ck_assert_int_eq(sscanf(line + 7, "%95s %15s", typed[ntyped], types[ntyped]), 2);
            ntyped++;
            continue;
        }
        ck_assert_msg(line[0] != '#', "stray comment %s", line);
        size_t n = strcspn(line, "{ ");
        ck_assert_uint_lt(n, sizeof(name));
        memcpy(name, line, n);
        name[n] = '\0';
        ck_assert_msg(ntyped > 0, "sample before any TYPE: %s", line);
        const char *fam = typed[ntyped - 1];
        const char *type = types[ntyped - 1];
        size_t fl = strlen(fam);
        ck_assert_msg(strncmp(name, fam, fl) == 0, "%s outside its family %s", name, fam);
        if (strcmp(type, "histogram") == 0) {
            ck_assert_msg(strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                              strcmp(name + fl, "_count") == 0,
                          "bad histogram sample %s", name);
        } else {
            ck_assert_str_eq(name, fam);
        }
        if (strcmp(type, "counter") == 0)
            ck_assert_msg(fl > 6 && strcmp(fam + fl - 6, "_total") == 0, "counter %s", fam);
        ck_assert_ptr_nonnull(strchr(line, ' '));
        samples++;
    }
    ck_assert_uint_gt(ntyped, 20);
    ck_assert_uint_gt(samples, 50);
    free(t);
    free(s);
}
END_TEST

/* 3 misses and 7 hits through the segment come out exactly, per route, method and result. */
START_TEST(test_metrics_requests_exact)
{
    struct cw_seg *seg = NULL;
    struct cw_metrics_snapshot *s = snap_new();
    char *t;

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    for (int i = 0; i < 3; i++)
        cw_seg_record_request(seg, 0, 0, CW_METRICS_RESULT_MISS, CW_METRICS_METHOD_GET, 30000);
    for (int i = 0; i < 7; i++)
        cw_seg_record_request(seg, 1, 0, CW_METRICS_RESULT_HIT, CW_METRICS_METHOD_GET, 100);
    cw_seg_record_request(seg, 1, 0, CW_METRICS_RESULT_PASS, cw_seg_method_of("POST"), 100);
    cw_seg_record_request(seg, 1, 0, CW_METRICS_RESULT_HIT, cw_seg_method_of("HEAD"), 100);
    cw_seg_collect(seg, &s->n);
    t = render(s);
    assert_sample(t, "cachewarp_requests_total{route=\"/\",method=\"GET\",result=\"miss\"}", 3);
    assert_sample(t, "cachewarp_requests_total{route=\"/\",method=\"GET\",result=\"hit\"}", 7);
    assert_sample(t, "cachewarp_requests_total{route=\"/\",method=\"HEAD\",result=\"hit\"}", 1);
    assert_sample(t, "cachewarp_requests_total{route=\"/\",method=\"other\",result=\"pass\"}", 1);
    assert_sample(t, "cachewarp_requests_total{route=\"/\",method=\"GET\",result=\"stale\"}", 0);
    assert_sample(t, "cachewarp_request_duration_seconds_count{route=\"/\",result=\"miss\"}", 3);
    assert_sample(t, "cachewarp_request_duration_seconds_count{route=\"/\",result=\"hit\"}", 8);
    assert_sample(t, "cachewarp_request_duration_seconds_sum{route=\"/\",result=\"miss\"}", 0.09);
    /* No request with no route: the "none" bucket prints nothing. */
    ck_assert_ptr_null(strstr(t, "route=\"none\""));
    free(t);
    free(s);
    cw_seg_destroy(seg);
}
END_TEST

START_TEST(test_metrics_histogram_cumulative)
{
    struct cw_seg *seg = NULL;
    struct cw_metrics_snapshot *s = snap_new();
    const char *h = "cachewarp_request_duration_seconds_bucket{route=\"/\",result=\"miss\",le=";
    char series[256];
    char *t;

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    cw_seg_record_request(seg, 0, 0, CW_METRICS_RESULT_MISS, CW_METRICS_METHOD_GET, 400);
    cw_seg_record_request(seg, 0, 0, CW_METRICS_RESULT_MISS, CW_METRICS_METHOD_GET, 1500);
    cw_seg_record_request(seg, 0, 0, CW_METRICS_RESULT_MISS, CW_METRICS_METHOD_GET, 20000000);
    cw_seg_collect(seg, &s->n);
    t = render(s);
    const struct {
        const char *le;
        double n;
    } want[] = {{"0.0005", 1}, {"0.001", 1}, {"0.0025", 2}, {"0.005", 2}, {"0.01", 2},
                {"0.025", 2},  {"0.05", 2},  {"0.1", 2},    {"0.25", 2},  {"0.5", 2},
                {"1", 2},      {"2.5", 2},   {"5", 2},      {"10", 2},    {"+Inf", 3}};
    for (size_t i = 0; i < CW_ARRAY_LEN(want); i++) {
        snprintf(series, sizeof(series), "%s\"%s\"}", h, want[i].le);
        assert_sample(t, series, want[i].n);
    }
    ck_assert_ptr_nonnull(
        strstr(t, "cachewarp_request_duration_seconds_sum{route=\"/\",result=\"miss\"} 20.0019\n"));
    assert_sample(t, "cachewarp_request_duration_seconds_count{route=\"/\",result=\"miss\"}", 3);
    free(t);
    free(s);
    cw_seg_destroy(seg);
}
END_TEST

START_TEST(test_metrics_lat_bucket_bounds)
{
    ck_assert_int_eq(cw_seg_lat_bucket(0), 0);
    ck_assert_int_eq(cw_seg_lat_bucket(500), 0);
    ck_assert_int_eq(cw_seg_lat_bucket(501), 1);
    ck_assert_int_eq(cw_seg_lat_bucket(1000000), 10);
    ck_assert_int_eq(cw_seg_lat_bucket(10000000), CW_METRICS_LAT_BUCKETS - 1);
    ck_assert_int_eq(cw_seg_lat_bucket(10000001), CW_METRICS_LAT_BUCKETS);
}
END_TEST

/* Routes past the last bucket share it (labelled "other" by the stats process); a request
 * with no route has its own "none" series; bad enum values are clamped. */
START_TEST(test_metrics_route_fold_and_none)
{
    struct cw_seg *seg = NULL;
    struct cw_metrics_snapshot *s = snap_new();
    char *t;

    ck_assert_int_eq(cw_seg_create(&seg), 0);
    cw_seg_record_request(seg, 0, 31, CW_METRICS_RESULT_HIT, CW_METRICS_METHOD_GET, 1);
    cw_seg_record_request(seg, 0, 200, CW_METRICS_RESULT_HIT, CW_METRICS_METHOD_GET, 1);
    cw_seg_record_request(seg, 0, -1, CW_METRICS_RESULT_ERROR, CW_METRICS_METHOD_GET, 1);
    cw_seg_record_request(seg, 0, 0, (enum cw_metrics_result)99, (enum cw_metrics_method)99, 1);
    cw_seg_collect(seg, &s->n);
    ck_assert_uint_eq(s->n.req[CW_METRICS_ROUTES - 1][CW_METRICS_RESULT_HIT][CW_METRICS_METHOD_GET],
                      2);
    ck_assert_uint_eq(s->n.req[0][CW_METRICS_RESULT_ERROR][CW_METRICS_METHOD_OTHER], 1);
    for (int i = 0; i < CW_METRICS_ROUTES; i++)
        s->route_labels[i] = i == CW_METRICS_ROUTES - 1 ? "other" : "/r";
    s->route_count = CW_METRICS_ROUTES;
    t = render(s);
    assert_sample(t, "cachewarp_requests_total{route=\"other\",method=\"GET\",result=\"hit\"}", 2);
    assert_sample(t, "cachewarp_requests_total{route=\"none\",method=\"GET\",result=\"error\"}", 1);
    ck_assert_ptr_null(strstr(t, "route=\"none\",method=\"GET\",result=\"hit\""));
    free(t);
    free(s);
    cw_seg_destroy(seg);
}
END_TEST

START_TEST(test_metrics_origin_status_classes)
{
    struct cw_seg *seg = NULL;
    struct cw_metrics_snapshot *s = snap_new();
    char *t;

    ck_assert_int_eq(cw_seg_ostatus_of(0), CW_METRICS_OSTATUS_ERROR);
    ck_assert_int_eq(cw_seg_ostatus_of(99), CW_METRICS_OSTATUS_ERROR);
    ck_assert_int_eq(cw_seg_ostatus_of(100), CW_METRICS_OSTATUS_1XX);
    ck_assert_int_eq(cw_seg_ostatus_of(599), CW_METRICS_OSTATUS_5XX);
    ck_assert_int_eq(cw_seg_ostatus_of(600), CW_METRICS_OSTATUS_ERROR);
    ck_assert_int_eq(cw_seg_create(&seg), 0);
    cw_seg_record_origin(seg, 2, 0, 200, 1000);
    cw_seg_record_origin(seg, 2, 0, 200, 1000);
    cw_seg_record_origin(seg, 2, 0, 304, 1000);
    cw_seg_record_origin(seg, 2, 0, 404, 1000);
    cw_seg_record_origin(seg, 2, 0, 503, 1000);
    cw_seg_record_origin(seg, 2, 0, 0, 1000);
    cw_seg_record_origin(seg, 2, -1, 200, 1000); /* not counted */
    cw_seg_collect(seg, &s->n);
    t = render(s);
    assert_sample(t, "cachewarp_origin_requests_total{origin=\"api\",status_class=\"1xx\"}", 0);
    assert_sample(t, "cachewarp_origin_requests_total{origin=\"api\",status_class=\"2xx\"}", 2);
    assert_sample(t, "cachewarp_origin_requests_total{origin=\"api\",status_class=\"3xx\"}", 1);
    assert_sample(t, "cachewarp_origin_requests_total{origin=\"api\",status_class=\"4xx\"}", 1);
    assert_sample(t, "cachewarp_origin_requests_total{origin=\"api\",status_class=\"5xx\"}", 1);
    assert_sample(t, "cachewarp_origin_requests_total{origin=\"api\",status_class=\"error\"}", 1);
    assert_sample(t, "cachewarp_origin_request_duration_seconds_count{origin=\"api\"}", 6);
    assert_sample(
        t, "cachewarp_origin_request_duration_seconds_bucket{origin=\"api\",le=\"0.001\"}", 6);
    free(t);
    free(s);
    cw_seg_destroy(seg);
}
END_TEST

/* A restarted process takes over its slot and adds to what is there: sums never go back. */
START_TEST(test_metrics_slot_reuse_keeps_counts)
{
    struct cw_seg *seg = NULL;
    struct cw_metrics_counts *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(cw_seg_create(&seg), 0);
    atomic_store(&seg->slots[4].pid, 100);
    cw_seg_record_request(seg, 4, 0, CW_METRICS_RESULT_HIT, CW_METRICS_METHOD_GET, 1);
    cw_seg_add(seg, 4, CW_METRICS_COALESCED, 2);
    cw_seg_collect(seg, a);
    atomic_store(&seg->slots[4].pid, 200); /* the replacement */
    atomic_fetch_add(&seg->worker_restarts, 1);
    cw_seg_record_request(seg, 4, 0, CW_METRICS_RESULT_HIT, CW_METRICS_METHOD_GET, 1);
    cw_seg_collect(seg, b);
    ck_assert_uint_eq(a->req[0][CW_METRICS_RESULT_HIT][CW_METRICS_METHOD_GET], 1);
    ck_assert_uint_eq(b->req[0][CW_METRICS_RESULT_HIT][CW_METRICS_METHOD_GET], 2);
    ck_assert_uint_eq(b->c[CW_METRICS_COALESCED], 2);
    ck_assert_uint_eq(b->worker_restarts, 1);
    ck_assert_uint_eq(seg->version, CW_SEG_VERSION);
    ck_assert_uint_gt(atomic_load(&seg->started_at_ms), 0);
    free(a);
    free(b);
    cw_seg_destroy(seg);
}
END_TEST

START_TEST(test_metrics_label_escaping)
{
    struct cw_metrics_snapshot *s = snap_new();
    char *t;

    s->route_labels[0] = "a\"b\\c\nd\xff\x01\xc3\xa9";
    s->origin_labels[0] = "x\"y";
    t = render(s);
    ck_assert_ptr_nonnull(strstr(t, "route=\"a\\\"b\\\\c\\nd??\xc3\xa9\",method=\"GET\""));
    ck_assert_ptr_nonnull(strstr(t, "origin=\"x\\\"y\""));
    ck_assert_ptr_null(strchr(t, '\x01'));
    free(t);
    free(s);
}
END_TEST

START_TEST(test_metrics_l1_gauges)
{
    struct cw_metrics_snapshot *s = snap_new();
    char *t;

    t = render(s);
    ck_assert_ptr_null(strstr(t, "cachewarp_l1_entries"));
    assert_sample(t, "cachewarp_l1_size_bytes", 64u << 20);
    free(t);
    s->has_l1 = true;
    s->l1_entries = 12;
    s->l1_used_bytes = 65536;
    s->n.c[CW_METRICS_EVICT_EXPIRED] = 3;
    s->n.c[CW_METRICS_EVICT_CLOCK] = 4;
    s->n.c[CW_METRICS_REFRESH_NOT_MODIFIED] = 5;
    s->n.c[CW_METRICS_ACCESSLOG_DROPPED] = 6;
    s->n.worker_restarts = 7;
    t = render(s);
    assert_sample(t, "cachewarp_l1_entries", 12);
    assert_sample(t, "cachewarp_l1_used_bytes", 65536);
    assert_sample(t, "cachewarp_l1_evictions_total{reason=\"expired\"}", 3);
    assert_sample(t, "cachewarp_l1_evictions_total{reason=\"clock\"}", 4);
    assert_sample(t, "cachewarp_refreshes_total{outcome=\"not_modified\"}", 5);
    assert_sample(t, "cachewarp_access_log_dropped_lines_total", 6);
    assert_sample(t, "cachewarp_worker_restarts_total", 7);
    free(t);
    free(s);
}
END_TEST

/* The buffer grows from empty, and appends to what the caller already has. */
START_TEST(test_metrics_buf_appends)
{
    struct cw_metrics_snapshot *s = snap_new();
    struct cw_metrics_buf b = {0};
    size_t first;

    ck_assert_int_eq(cw_metrics_format(s, &b), 0);
    first = b.len;
    ck_assert_int_eq(cw_metrics_format(s, &b), 0);
    ck_assert_uint_eq(b.len, 2 * first);
    ck_assert_int_eq(memcmp(b.p, b.p + first, first), 0);
    cw_metrics_buf_free(&b);
    ck_assert_ptr_null(b.p);
    cw_metrics_buf_free(NULL);
    free(s);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_metrics_build_info);
    tcase_add_test(tc, test_metrics_help_and_type_for_every_family);
    tcase_add_test(tc, test_metrics_requests_exact);
    tcase_add_test(tc, test_metrics_histogram_cumulative);
    tcase_add_test(tc, test_metrics_lat_bucket_bounds);
    tcase_add_test(tc, test_metrics_route_fold_and_none);
    tcase_add_test(tc, test_metrics_origin_status_classes);
    tcase_add_test(tc, test_metrics_slot_reuse_keeps_counts);
    tcase_add_test(tc, test_metrics_label_escaping);
    tcase_add_test(tc, test_metrics_l1_gauges);
    tcase_add_test(tc, test_metrics_buf_appends);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(metrics_suite)
