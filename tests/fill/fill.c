/* tests/fill/fill.c - cw-test-fill: stores N fresh entries straight into a daemon's L1, for
 * the tests that need a large cache fast (tests/integration/test_purge.py's 100,000-entry
 * prefix purge: filling it through the proxy would take minutes of origin fetches).
 *
 *     cw-test-fill CONFIG_FILE HOST PATH_PREFIX N [TAG]
 *
 * Opens the config's cache as the daemon's processes do (the daemon may be running) and, for
 * i in 0..N-1, stores under the key the route for HOST PATH_PREFIX<i> builds an entry a
 * client GET of that URL then hits: 200, fresh for an hour, a small text body, and the
 * request part (host, target), and with TAG a "Surrogate-Key: TAG" field (indexed for tag
 * purges as a fill's is). One write txn per entry, as a fill does. Prints "filled N
 * MS" and exits 0, or 1 with the cause on stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/entry.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/route.h"
#include "shm/store.h"
#include "workers/clock.h"
#include "workers/config_file.h"

int main(int argc, char **argv)
{
    static struct cw_config cfg;
    static char key[CW_LIMIT_KEY_BYTES], target[CW_LIMIT_URL_BYTES], buf[4096];
    struct cw_err err = {{0}};
    struct cw_store *st = NULL;
    struct cw_entry_header hdrs[] = {{CW_STR_LIT("Content-Type"), CW_STR_LIT("text/plain")},
                                     {CW_STR_LIT("Surrogate-Key"), CW_STR_LIT("")}};
    size_t nhdrs = 1;
    struct cw_str body = CW_STR_LIT("filled by cw-test-fill\n");
    int64_t t0 = cw_clock_mono_ms(), now = cw_clock_wall_ms();
    long n;
    int rc;

    if ((argc != 5 && argc != 6) || (n = strtol(argv[4], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: cw-test-fill CONFIG_FILE HOST PATH_PREFIX N [TAG]\n");
        return 1;
    }
    if (argc == 6) {
        hdrs[1].value = cw_str_cstr(argv[5]);
        nhdrs = 2;
    }
    struct cw_str host = cw_str_cstr(argv[2]);
    int route;
    if (cw_config_file_load(argv[1], &cfg, &err) < 0) {
        fprintf(stderr, "cw-test-fill: %s\n", err.msg);
        return 1;
    }
    route = cw_route_find(&cfg, host, cw_str_cstr(argv[3]));
    if (route < 0) {
        fprintf(stderr, "cw-test-fill: no route for %s %s\n", argv[2], argv[3]);
        return 1;
    }
    rc = cw_store_open(cfg.cache_path, cfg.cache_size_bytes, &st);
    if (rc < 0) {
        fprintf(stderr, "cw-test-fill: open %s: %s\n", cfg.cache_path, strerror(-rc));
        return 1;
    }
    struct cw_entry_hdr h = {.status = 200,
                             .stored_at_ms = now,
                             .response_time_ms = now,
                             .fresh_until_ms = now + 3600 * 1000,
                             .swr_until_ms = now + 3600 * 1000,
                             .sie_until_ms = now + 3600 * 1000};
    for (long i = 0; i < n; i++) {
        struct cw_key k;
        size_t klen, size;
        int tlen = snprintf(target, sizeof(target), "%s%ld", argv[3], i);
        struct cw_entry_req req = {host, cw_str_make(target, (size_t)tlen), NULL, 0};
        rc = cw_key_build(&cfg.routes[route], CW_STR_LIT("http"), host, req.target, key,
                          sizeof(key), &klen);
        if (rc == 0) {
            cw_key_hash(cw_store_secret(st), key, klen, &k);
            rc = cw_entry_size(cw_str_make(key, klen), &req, hdrs, nhdrs, body.len, &size);
        }
        if (rc == 0 && size > sizeof(buf)) rc = -ENOSPC;
        if (rc == 0)
            rc = cw_entry_encode(&h, cw_str_make(key, klen), &req, hdrs, nhdrs, body, buf, size);
        if (rc == 0) rc = cw_store_put_encoded(st, &k, buf, size);
        if (rc < 0) {
            fprintf(stderr, "cw-test-fill: entry %ld (%s): %s\n", i, target, strerror(-rc));
            cw_store_close(st);
            return 1;
        }
    }
    cw_store_close(st);
    cw_config_free(&cfg);
    printf("filled %ld %lld\n", n, (long long)(cw_clock_mono_ms() - t0));
    return 0;
}
