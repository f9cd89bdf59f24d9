/* tests/unit/test_accesslog.c - workers/accesslog: line formats (combined and JSON), their
 * escaping and bounds; the buffered writer (lines reach the file on close, reopen follows a
 * rename, a writer that cannot keep up drops and counts lines instead of blocking). */
#include "workers/accesslog.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "shm/seg.h"
#include "tests/unit/check_main.h"

Suite *accesslog_suite(void);

static struct cw_accesslog_rec rec_base(void)
{
    struct cw_accesslog_rec r = {
        .time_ms = 1728568536123, /* 2024-10-10T13:55:36.123Z */
        .client = "127.0.0.1",
        .method = "GET",
        .url = CW_STR_LIT("/a?x=1"),
        .protocol = "HTTP/1.1",
        .status = 200,
        .bytes = 512,
        .duration_us = 120,
        .result = "HIT",
        .route = "/",
        .origin_us = -1,
        .user_agent = "curl/8",
        .referer = NULL,
    };
    return r;
}

static char line[CW_ACCESSLOG_LINE_MAX];

static const char *fmt_line(enum cw_config_log_format f, const struct cw_accesslog_rec *r)
{
    size_t n = cw_accesslog_format(f, r, line, sizeof(line));

    ck_assert_uint_gt(n, 0);
    ck_assert_uint_eq(strlen(line), n);
    ck_assert_uint_eq(line[n - 1], '\n');
    ck_assert_ptr_eq(strchr(line, '\n'), line + n - 1); /* exactly one line */
    return line;
}

START_TEST(test_accesslog_combined_line)
{
    struct cw_accesslog_rec r = rec_base();

    ck_assert_str_eq(fmt_line(CW_CONFIG_LOG_COMBINED, &r),
                     "127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] \"GET /a?x=1 HTTP/1.1\" 200 512 "
                     "\"-\" \"curl/8\" rt=0.000120 cache=HIT route=\"/\" ot=-\n");
    r.result = "MISS";
    r.origin_us = 2500000;
    r.duration_us = 2600000;
    r.referer = "http://example.com/";
    r.route = NULL;
    r.protocol = NULL;
    ck_assert_str_eq(fmt_line(CW_CONFIG_LOG_COMBINED, &r),
                     "127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] \"GET /a?x=1\" 200 512 "
                     "\"http://example.com/\" \"curl/8\" rt=2.600000 cache=MISS route=\"-\" "
                     "ot=2.500000\n");
}
END_TEST

/* nginx escapes '"', '\' and bytes outside 0x20..0x7e as \xHH; the URL need not end in NUL. */
START_TEST(test_accesslog_combined_escaping)
{
    struct cw_accesslog_rec r = rec_base();
    static const char url[] = "/q\"\\\n\x01\xff?"
                              "TAIL";

    r.url = cw_str_make(url, sizeof(url) - 1 - 4); /* TAIL is past the length */
    r.user_agent = "evil\" \"ua";
    fmt_line(CW_CONFIG_LOG_COMBINED, &r);
    ck_assert_ptr_nonnull(strstr(line, "\"GET /q\\x22\\x5c\\x0a\\x01\\xff? HTTP/1.1\""));
    ck_assert_ptr_nonnull(strstr(line, "\"evil\\x22 \\x22ua\""));
    ck_assert_ptr_null(strstr(line, "TAIL"));
}
END_TEST

START_TEST(test_accesslog_json_line)
{
    struct cw_accesslog_rec r = rec_base();

    ck_assert_str_eq(fmt_line(CW_CONFIG_LOG_JSON, &r),
                     "{\"time\":\"2024-10-10T13:55:36.123Z\",\"client\":\"127.0.0.1\","
                     "\"method\":\"GET\",\"url\":\"/a?x=1\",\"protocol\":\"HTTP/1.1\","
                     "\"status\":200,\"bytes\":512,\"duration\":0.000120,\"cache\":\"HIT\","
                     "\"route\":\"/\",\"origin_time\":null,\"referer\":\"\","
                     "\"user_agent\":\"curl/8\"}\n");
    r.route = NULL;
    r.origin_us = 1500;
    fmt_line(CW_CONFIG_LOG_JSON, &r);
    ck_assert_ptr_nonnull(strstr(line, "\"route\":null,\"origin_time\":0.001500,"));
}
END_TEST

START_TEST(test_accesslog_json_escaping)
{
    struct cw_accesslog_rec r = rec_base();
    static const char url[] = "/q\"\\\n\t\x01\xc3\xa9";

    r.url = cw_str_make(url, sizeof(url) - 1);
    r.user_agent = "a\rb";
    fmt_line(CW_CONFIG_LOG_JSON, &r);
    ck_assert_ptr_nonnull(strstr(line, "\"url\":\"/q\\\"\\\\\\n\\t\\u0001\\u00c3\\u00a9\""));
    ck_assert_ptr_nonnull(strstr(line, "\"user_agent\":\"a\\rb\""));
    for (const unsigned char *p = (const unsigned char *)line; *p; p++)
        ck_assert_msg((*p >= 0x20 && *p < 0x7f) || *p == '\n', "raw byte 0x%02x", *p);
}
END_TEST

/* A URL far past the line bound is cut; the line keeps its closing fields and quotes, and
 * an escape is never cut in half. */
START_TEST(test_accesslog_long_fields_cut)
{
    struct cw_accesslog_rec r = rec_base();
    size_t n = 100000;
    char *url = malloc(n);
    char small[512];
    size_t len;

    ck_assert_ptr_nonnull(url);
    memset(url, '"', n);
    url[0] = '/';
    r.url = cw_str_make(url, n);
    r.user_agent = url;
    url[n - 1] = '\0';
    fmt_line(CW_CONFIG_LOG_COMBINED, &r);
    ck_assert_uint_lt(strlen(line), CW_ACCESSLOG_LINE_MAX);
    ck_assert_ptr_nonnull(strstr(line, "\\x22 HTTP/1.1\" 200 512 \"-\" \""));
    ck_assert_ptr_nonnull(strstr(line, "\\x22\" rt=0.000120 cache=HIT route=\"/\" ot=-\n"));
    fmt_line(CW_CONFIG_LOG_JSON, &r);
    ck_assert_ptr_nonnull(strstr(line, "\\\"\",\"protocol\":\"HTTP/1.1\""));
    ck_assert_ptr_nonnull(strstr(line, "\\\"\"}\n"));
    /* The smallest buffer allowed still ends well-formed. */
    len = cw_accesslog_format(CW_CONFIG_LOG_JSON, &r, small, sizeof(small));
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_lt(len, sizeof(small));
    ck_assert_str_eq(small + len - 3, "\"}\n");
    len = cw_accesslog_format(CW_CONFIG_LOG_COMBINED, &r, small, sizeof(small));
    ck_assert_uint_gt(len, 0);
    ck_assert_str_eq(small + len - 3, "=-\n");
    ck_assert_uint_eq(cw_accesslog_format(CW_CONFIG_LOG_JSON, &r, small, 511), 0);
    free(url);
}
END_TEST

static char *tmp_dir(void)
{
    char tmpl[] = "/tmp/cw-test-accesslog-XXXXXX";
    char *d = mkdtemp(tmpl);

    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    size_t n;

    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

START_TEST(test_accesslog_none_when_unset)
{
    struct cw_config cfg = {0};
    struct cw_accesslog *log = (void *)1;

    ck_assert_int_eq(cw_accesslog_open(&cfg, &log), 0);
    ck_assert_ptr_null(log);
    cw_accesslog_write(NULL, NULL);
    ck_assert_int_eq(cw_accesslog_reopen(NULL), 0);
    ck_assert_uint_eq(cw_accesslog_dropped(NULL), 0);
    cw_accesslog_close(NULL);
}
END_TEST

/* Lines are buffered and reach the file, in order, by close at the latest. */
START_TEST(test_accesslog_write_and_close)
{
    char *dir = tmp_dir();
    char path[512];
    struct cw_config cfg = {0};
    struct cw_accesslog *log = NULL;
    struct cw_accesslog_rec r = rec_base();
    char *text;

    snprintf(path, sizeof(path), "%s/access.log", dir);
    cfg.log_access = path;
    cfg.log_format = CW_CONFIG_LOG_JSON;
    ck_assert_int_eq(cw_accesslog_open(&cfg, &log), 0);
    ck_assert_ptr_nonnull(log);
    for (int i = 0; i < 3; i++) {
        r.status = 200 + i;
        cw_accesslog_write(log, &r);
    }
    cw_accesslog_close(log);
    text = slurp(path);
    ck_assert_uint_eq(count_lines(text), 3);
    ck_assert_ptr_nonnull(strstr(text, "\"status\":200"));
    ck_assert(strstr(text, "\"status\":200") < strstr(text, "\"status\":202"));
    free(text);
    unlink(path);
    rmdir(dir);
    free(dir);
}
END_TEST

/* logrotate: the file is renamed, SIGUSR1 makes the worker reopen: new lines go to a new
 * file at the old path. Lines still buffered at the reopen go to the new file too. */
START_TEST(test_accesslog_reopen_follows_rename)
{
    char *dir = tmp_dir();
    char path[512], rotated[512];
    struct cw_config cfg = {0};
    struct cw_accesslog *log = NULL;
    struct cw_accesslog_rec r = rec_base();
    struct stat stt;
    char *text;

    snprintf(path, sizeof(path), "%s/access.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/access.log.1", dir);
    cfg.log_access = path;
    ck_assert_int_eq(cw_accesslog_open(&cfg, &log), 0);
    ck_assert_int_eq(rename(path, rotated), 0);
    ck_assert_int_eq(cw_accesslog_reopen(log), 0);
    cw_accesslog_write(log, &r);
    cw_accesslog_close(log);
    ck_assert_int_eq(stat(rotated, &stt), 0);
    ck_assert_int_eq(stt.st_size, 0);
    text = slurp(path);
    ck_assert_uint_eq(count_lines(text), 1);
    free(text);
    /* Reopen fails when the directory is gone: the error is returned. */
    ck_assert_int_eq(cw_accesslog_open(&cfg, &log), 0);
    unlink(path);
    unlink(rotated);
    ck_assert_int_eq(rmdir(dir), 0);
    ck_assert_int_eq(cw_accesslog_reopen(log), -ENOENT);
    cw_accesslog_close(log);
    free(dir);
}
END_TEST

/* A writer whose file does not drain (a FIFO nobody reads) never blocks the caller: once
 * both buffers are full, lines are dropped and counted, in the log and in the segment. */
START_TEST(test_accesslog_slow_writer_drops)
{
    char *dir = tmp_dir();
    char path[512];
    struct cw_config cfg = {0};
    struct cw_accesslog *log = NULL;
    struct cw_accesslog_rec r = rec_base();
    struct cw_seg *seg = NULL;
    char ua[200];
    int rfd;

    snprintf(path, sizeof(path), "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    rfd = open(path, O_RDONLY | O_NONBLOCK); /* so that the log's open does not wait */
    ck_assert_int_ne(rfd, -1);
    ck_assert_int_eq(cw_seg_create(&seg), 0);
    cfg.log_access = path;
    ck_assert_int_eq(cw_accesslog_open(&cfg, &log), 0);
    cw_accesslog_set_seg(log, seg, 3);
    memset(ua, 'u', sizeof(ua) - 1);
    ua[sizeof(ua) - 1] = '\0';
    r.user_agent = ua;
    /* 4000 lines of ~300 bytes: 1.2 MB against 64 KiB of pipe and 128 KiB of buffers. */
    for (int i = 0; i < 4000; i++)
        cw_accesslog_write(log, &r);
    ck_assert_uint_gt(cw_accesslog_dropped(log), 0);
    ck_assert_uint_eq(cw_seg_sum(seg, CW_METRICS_ACCESSLOG_DROPPED), cw_accesslog_dropped(log));
    /* Closing the read end fails the blocked write (EPIPE): close then finishes, and what
     * it could not write is counted as dropped too. */
    close(rfd);
    cw_accesslog_close(log);
    ck_assert_uint_gt(cw_seg_sum(seg, CW_METRICS_ACCESSLOG_DROPPED), 0);
    cw_seg_destroy(seg);
    unlink(path);
    rmdir(dir);
    free(dir);
}
END_TEST

Suite *accesslog_suite(void)
{
    Suite *s = suite_create("accesslog");
    TCase *tc = tcase_create("format");
    TCase *tw = tcase_create("writer");

    tcase_add_test(tc, test_accesslog_combined_line);
    tcase_add_test(tc, test_accesslog_combined_escaping);
    tcase_add_test(tc, test_accesslog_json_line);
    tcase_add_test(tc, test_accesslog_json_escaping);
    tcase_add_test(tc, test_accesslog_long_fields_cut);
    suite_add_tcase(s, tc);
    tcase_add_test(tw, test_accesslog_none_when_unset);
    tcase_add_test(tw, test_accesslog_write_and_close);
    tcase_add_test(tw, test_accesslog_reopen_follows_rename);
    tcase_add_test(tw, test_accesslog_slow_writer_drops);
    suite_add_tcase(s, tw);
    return s;
}

CW_TEST_MAIN(accesslog_suite)
