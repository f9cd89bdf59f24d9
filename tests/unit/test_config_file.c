/* tests/unit/test_config_file.c - workers/config_file: the example loads under its path, and
 * a missing file, a directory and a file past CW_LIMIT_CONFIG_BYTES (at N and N+1) fail
 * with the path and the cause. */
#include "workers/config_file.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"

Suite *config_file_suite(void);

static bool is_zero(const struct cw_config *c)
{
    static const struct cw_config zero;
    return memcmp(c, &zero, sizeof(zero)) == 0;
}

START_TEST(test_config_file_example_loads)
{
    struct cw_config c;
    struct cw_err e = {{0}};
    int rc = cw_config_file_load("etc/cachewarp.conf", &c, &e);

    ck_assert_msg(rc == 0, "%s", e.msg);
    ck_assert_str_eq(c.file, "etc/cachewarp.conf");
    ck_assert_str_eq(c.listen, "127.0.0.1:8080");
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_file_load_errors)
{
    struct cw_config c;
    struct cw_err e = {{0}};
    char path[] = "/tmp/cw_test_config_XXXXXX";
    int fd;
    char *big;

    ck_assert_int_eq(cw_config_file_load("no/such/file.conf", &c, &e), -ENOENT);
    ck_assert_str_eq(e.msg, "no/such/file.conf: cannot read: No such file or directory");
    ck_assert(is_zero(&c));
    ck_assert_int_eq(cw_config_file_load("etc", &c, &e), -EISDIR);
    ck_assert_ptr_nonnull(strstr(e.msg, "etc: cannot read: "));
    fd = mkstemp(path);
    ck_assert_int_ne(fd, -1);
    big = calloc(1, CW_LIMIT_CONFIG_BYTES + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', CW_LIMIT_CONFIG_BYTES + 1);
    ck_assert_int_eq(write(fd, big, CW_LIMIT_CONFIG_BYTES), CW_LIMIT_CONFIG_BYTES);
    /* N bytes: read whole, then the parser says there are no origins. */
    ck_assert_int_eq(cw_config_file_load(path, &c, &e), -EINVAL);
    ck_assert_int_eq(write(fd, big, 1), 1);
    ck_assert_int_eq(cw_config_file_load(path, &c, &e), -EFBIG);
    ck_assert_ptr_nonnull(strstr(e.msg, "larger than 1048576 bytes"));
    ck_assert(is_zero(&c));
    close(fd);
    unlink(path);
    free(big);
}
END_TEST

Suite *config_file_suite(void)
{
    Suite *s = suite_create("config_file");
    TCase *tc = tcase_create("workers");

    tcase_add_test(tc, test_config_file_example_loads);
    tcase_add_test(tc, test_config_file_load_errors);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(config_file_suite)
