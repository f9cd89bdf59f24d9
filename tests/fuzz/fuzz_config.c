/* tests/fuzz/fuzz_config.c - libFuzzer harness for cw_config_parse().
 *
 * Not built by default. Build with clang, e.g.:
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *     tests/fuzz/fuzz_config.c core/config.c core/config_schema.c core/config_value.c \
 *     core/common.c core/log.c -lconfig -o build/fuzz_config
 *   build/fuzz_config -dict=... etc/   (the example config is a good seed)
 * Any input must either parse (and free cleanly) or fail with a message naming the file.
 * libconfig 1.5 itself leaks its string buffer on some syntax errors inside a string
 * literal or at top level (allocated in its scanner); leaks whose stack is inside
 * libconfig.so are suppressed below, ours are not. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* Read by LeakSanitizer at start. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cw_config cfg;
    struct cw_err err = {{0}};
    int rc = cw_config_parse((const char *)data, size, "fuzz.conf", &cfg, &err);

    if (rc == 0) {
        /* Invariants a caller relies on. */
        assert(cfg.origin_count > 0 && cfg.route_count > 0);
        for (size_t i = 0; i < cfg.route_count; i++) {
            assert(cfg.routes[i].origin >= 0 && (size_t)cfg.routes[i].origin < cfg.origin_count);
            assert(cfg.routes[i].match[0] == '/');
        }
        cw_config_free(&cfg);
    } else {
        assert(strncmp(err.msg, "fuzz.conf", 9) == 0);
    }
    return 0;
}
