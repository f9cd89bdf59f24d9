/* tests/unit/check_main.h - the main() every unit test binary shares.
 *
 * A test file defines `Suite *<module>_suite(void)` (declared first, for
 * -Wmissing-prototypes) and ends with CW_TEST_MAIN(<module>_suite). Fork mode is on, so a
 * crashing test fails alone. */
#ifndef CW_CHECK_MAIN_H
#define CW_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

#define CW_TEST_MAIN(suite_fn)                                                                     \
    int main(void)                                                                                 \
    {                                                                                              \
        SRunner *sr = srunner_create(suite_fn());                                                  \
        int failed;                                                                                \
        srunner_set_fork_status(sr, CK_FORK);                                                      \
        srunner_run_all(sr, CK_NORMAL);                                                            \
        failed = srunner_ntests_failed(sr);                                                        \
        srunner_free(sr);                                                                          \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                                          \
    }

#endif /* CW_CHECK_MAIN_H */
