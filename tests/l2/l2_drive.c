/* tests/l2/l2_drive.c - drives workers/l2 for tests/integration/test_l2.py.
 *
 *     cw-test-l2drive CONFIG_FILE
 *
 * Opens the L2 client on the config's redis settings, runs one poll loop over stdin and the
 * client's sockets (as a worker's loop will), and reads commands from stdin, one a line,
 * each starting with an id the reply repeats:
 *
 *     ID ready MS                 wait until cw_l2_is_ready(): "ID rc=0 ms=T" or rc=-110
 *     ID get KEY                  "ID rc=R len=N value=V us=T" (value when rc=0)
 *     ID set KEY VALUE TTL_MS [TAG...]
 *     ID del KEY | ID take KEY TOKEN TTL_MS | ID release KEY TOKEN | ID pub PAYLOAD
 *     ID sub                      then "msg CHANNEL PAYLOAD" lines as they come
 *     ID stats                    "ID rc=0 name=value ..." (struct cw_l2_stats)
 *     ID bench N KEY              N GETs one after another: "ID rc=0 n=N p50=US p99=US max=US"
 *     ID pound MS EVERY_MS KEY    a SET every EVERY_MS for MS: "ID rc=0 ok=N fail=N
 *                                 rejected=N gap_ms=LONGEST_RUN_WITHOUT_SUCCESS"
 *     quit
 *
 * A command refused at submit answers "ID rc=R" at once. Logs go to stderr. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "workers/clock.h"
#include "workers/config_file.h"
#include "workers/l2.h"

#define DRIVE_LINE  4096
#define DRIVE_BENCH 100000

struct drive {
    struct cw_l2 *l2;
    bool quit;
    long ready_id;
    int64_t ready_deadline_ms, ready_t0_ms;
    /* bench */
    long bench_id;
    int bench_n, bench_done;
    int64_t *bench_us;
    int64_t bench_t0_us;
    char bench_key[256];
    /* pound */
    long pound_id;
    int64_t pound_end_ms, pound_next_ms, pound_every_ms, pound_last_ok_ms, pound_gap_ms;
    int pound_ok, pound_fail, pound_rejected, pound_out;
    char pound_key[256];
};

struct drive_req {
    struct drive *d;
    long id;
    int64_t t0_us;
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void on_done(void *arg, int rc, struct cw_str v)
{
    struct drive_req *r = arg;

    if (rc == 0 && v.p != NULL) {
        printf("%ld rc=0 len=%zu value=%.*s us=%lld\n", r->id, v.len, (int)v.len, v.p,
               (long long)(cw_clock_mono_us() - r->t0_us));
    } else {
        printf("%ld rc=%d us=%lld\n", r->id, rc, (long long)(cw_clock_mono_us() - r->t0_us));
    }
    fflush(stdout);
    free(r);
}

static void on_msg(void *arg, struct cw_str ch, struct cw_str payload)
{
    (void)arg;
    printf("msg %.*s %.*s\n", (int)ch.len, ch.p, (int)payload.len, payload.p);
    fflush(stdout);
}

static void bench_next(struct drive *d);

static void on_bench(void *arg, int rc, struct cw_str v)
{
    struct drive *d = arg;

    (void)v;
    if (rc != 0) {
        printf("%ld rc=%d at=%d\n", d->bench_id, rc, d->bench_done);
        fflush(stdout);
        d->bench_id = -1;
        return;
    }
    d->bench_us[d->bench_done++] = cw_clock_mono_us() - d->bench_t0_us;
    bench_next(d);
}

static void bench_next(struct drive *d)
{
    int rc;

    if (d->bench_done == d->bench_n) {
        qsort(d->bench_us, (size_t)d->bench_n, sizeof(int64_t), cmp_i64);
        printf("%ld rc=0 n=%d p50=%lld p99=%lld max=%lld\n", d->bench_id, d->bench_n,
               (long long)d->bench_us[d->bench_n / 2],
               (long long)d->bench_us[(d->bench_n * 99) / 100],
               (long long)d->bench_us[d->bench_n - 1]);
        fflush(stdout);
        d->bench_id = -1;
        return;
    }
    d->bench_t0_us = cw_clock_mono_us();
    rc = cw_l2_get(d->l2, cw_str_cstr(d->bench_key), on_bench, d);
    if (rc < 0) {
        printf("%ld rc=%d at=%d\n", d->bench_id, rc, d->bench_done);
        fflush(stdout);
        d->bench_id = -1;
    }
}

static void pound_result(struct drive *d, bool ok)
{
    int64_t now = cw_clock_mono_ms();

    if (ok) {
        if (now - d->pound_last_ok_ms > d->pound_gap_ms)
            d->pound_gap_ms = now - d->pound_last_ok_ms;
        d->pound_last_ok_ms = now;
        d->pound_ok++;
    }
}

static void on_pound(void *arg, int rc, struct cw_str v)
{
    struct drive *d = arg;

    (void)v;
    d->pound_out--;
    if (rc == 0) {
        pound_result(d, true);
    } else {
        d->pound_fail++;
    }
}

static void pound_tick(struct drive *d)
{
    int64_t now = cw_clock_mono_ms();

    if (d->pound_id < 0) return;
    if (now >= d->pound_end_ms) {
        if (d->pound_out > 0) return;
        printf("%ld rc=0 ok=%d fail=%d rejected=%d gap_ms=%lld\n", d->pound_id, d->pound_ok,
               d->pound_fail, d->pound_rejected, (long long)d->pound_gap_ms);
        fflush(stdout);
        d->pound_id = -1;
        return;
    }
    while (now >= d->pound_next_ms) {
        int rc = cw_l2_set(d->l2, cw_str_cstr(d->pound_key), CW_STR_LIT("v"), 60000, NULL, 0,
                           on_pound, d);
        if (rc < 0) {
            d->pound_rejected++;
        } else {
            d->pound_out++;
        }
        d->pound_next_ms += d->pound_every_ms;
    }
}

static void print_stats(struct drive *d, long id)
{
    struct cw_l2_stats s;

    cw_l2_stats_get(d->l2, &s);
    printf("%ld rc=0 commands=%llu hits=%llu misses=%llu errors=%llu timeouts=%llu "
           "rejected=%llu redirects=%llu slot_refreshes=%llu connects=%llu "
           "connect_failures=%llu auth_failures=%llu master_switches=%llu messages=%llu "
           "breaker_opens=%llu breaker_state=%d conns_ready=%u pending=%u\n",
           id, (unsigned long long)s.commands, (unsigned long long)s.hits,
           (unsigned long long)s.misses, (unsigned long long)s.errors,
           (unsigned long long)s.timeouts, (unsigned long long)s.rejected,
           (unsigned long long)s.redirects, (unsigned long long)s.slot_refreshes,
           (unsigned long long)s.connects, (unsigned long long)s.connect_failures,
           (unsigned long long)s.auth_failures, (unsigned long long)s.master_switches,
           (unsigned long long)s.messages, (unsigned long long)s.breaker_opens, s.breaker_state,
           s.conns_ready, s.pending);
}

static struct drive_req *req_new(struct drive *d, long id)
{
    struct drive_req *r = calloc(1, sizeof(*r));

    if (r == NULL) abort();
    r->d = d;
    r->id = id;
    r->t0_us = cw_clock_mono_us();
    return r;
}

static void handle_line(struct drive *d, char *line)
{
    char *argv[4 + 32], *save = NULL;
    int argc = 0, rc = 0;
    long id;
    struct drive_req *r;

    for (char *t = strtok_r(line, " \t\r", &save); t != NULL && argc < (int)(sizeof(argv) / 8);
         t = strtok_r(NULL, " \t\r", &save)) {
        argv[argc++] = t;
    }
    if (argc == 0) return;
    if (strcmp(argv[0], "quit") == 0) {
        d->quit = true;
        return;
    }
    if (argc < 2) return;
    id = strtol(argv[0], NULL, 10);
    const char *cmd = argv[1];
    r = req_new(d, id);
    if (strcmp(cmd, "ready") == 0 && argc == 3) {
        d->ready_id = id;
        d->ready_t0_ms = cw_clock_mono_ms();
        d->ready_deadline_ms = d->ready_t0_ms + strtol(argv[2], NULL, 10);
        free(r);
        return;
    } else if (strcmp(cmd, "get") == 0 && argc == 3) {
        rc = cw_l2_get(d->l2, cw_str_cstr(argv[2]), on_done, r);
    } else if (strcmp(cmd, "set") == 0 && argc >= 5) {
        struct cw_str tags[32];
        size_t nt = 0;
        for (int i = 5; i < argc && nt < 32; i++) {
            tags[nt++] = cw_str_cstr(argv[i]);
        }
        rc = cw_l2_set(d->l2, cw_str_cstr(argv[2]), cw_str_cstr(argv[3]),
                       strtoll(argv[4], NULL, 10), tags, nt, on_done, r);
    } else if (strcmp(cmd, "del") == 0 && argc == 3) {
        rc = cw_l2_del(d->l2, cw_str_cstr(argv[2]), on_done, r);
    } else if (strcmp(cmd, "take") == 0 && argc == 5) {
        rc = cw_l2_lease_take(d->l2, cw_str_cstr(argv[2]), cw_str_cstr(argv[3]),
                              strtoll(argv[4], NULL, 10), on_done, r);
    } else if (strcmp(cmd, "release") == 0 && argc == 4) {
        rc = cw_l2_lease_release(d->l2, cw_str_cstr(argv[2]), cw_str_cstr(argv[3]), on_done, r);
    } else if (strcmp(cmd, "pub") == 0 && argc == 3) {
        rc = cw_l2_publish(d->l2, cw_str_cstr(argv[2]), on_done, r);
    } else if (strcmp(cmd, "sub") == 0) {
        free(r);
        printf("%ld rc=%d\n", id, cw_l2_subscribe(d->l2, on_msg, d));
        fflush(stdout);
        return;
    } else if (strcmp(cmd, "stats") == 0) {
        free(r);
        print_stats(d, id);
        fflush(stdout);
        return;
    } else if (strcmp(cmd, "bench") == 0 && argc == 4) {
        free(r);
        d->bench_id = id;
        d->bench_n = (int)strtol(argv[2], NULL, 10);
        if (d->bench_n < 1 || d->bench_n > DRIVE_BENCH) d->bench_n = 1;
        d->bench_done = 0;
        snprintf(d->bench_key, sizeof(d->bench_key), "%s", argv[3]);
        bench_next(d);
        return;
    } else if (strcmp(cmd, "pound") == 0 && argc == 5) {
        free(r);
        int64_t now = cw_clock_mono_ms();
        d->pound_id = id;
        d->pound_end_ms = now + strtol(argv[2], NULL, 10);
        d->pound_every_ms = strtol(argv[3], NULL, 10);
        if (d->pound_every_ms < 1) d->pound_every_ms = 1;
        d->pound_next_ms = now;
        d->pound_last_ok_ms = now;
        d->pound_gap_ms = 0;
        d->pound_ok = d->pound_fail = d->pound_rejected = d->pound_out = 0;
        snprintf(d->pound_key, sizeof(d->pound_key), "%s", argv[4]);
        return;
    } else {
        rc = -EINVAL;
    }
    if (rc < 0) {
        printf("%ld rc=%d\n", id, rc);
        fflush(stdout);
        free(r);
    }
}

static void ready_tick(struct drive *d)
{
    int64_t now = cw_clock_mono_ms();

    if (d->ready_id < 0) return;
    if (cw_l2_is_ready(d->l2)) {
        printf("%ld rc=0 ms=%lld\n", d->ready_id, (long long)(now - d->ready_t0_ms));
    } else if (now >= d->ready_deadline_ms) {
        printf("%ld rc=%d ms=%lld\n", d->ready_id, -ETIMEDOUT, (long long)(now - d->ready_t0_ms));
    } else {
        return;
    }
    fflush(stdout);
    d->ready_id = -1;
}

int main(int argc, char **argv)
{
    static struct drive d = {.ready_id = -1, .bench_id = -1, .pound_id = -1};
    struct cw_config cfg;
    struct cw_err err;
    struct pollfd fds[1 + CW_L2_POLLFDS_MAX];
    char buf[DRIVE_LINE];
    size_t used = 0;
    bool in_open = true;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFIG_FILE\n", argv[0]);
        return 2;
    }
    cw_log_init(2, CW_LOG_DEBUG, false);
    rc = cw_config_file_load(argv[1], &cfg, &err);
    if (rc < 0) {
        fprintf(stderr, "l2drive: %s\n", err.msg);
        return 1;
    }
    d.bench_us = calloc(DRIVE_BENCH, sizeof(int64_t));
    rc = cw_l2_open(&cfg, &d.l2);
    cw_config_free(&cfg);
    if (rc < 0 || d.bench_us == NULL) {
        printf("open rc=%d\n", rc);
        return 1;
    }
    printf("open rc=0\n");
    fflush(stdout);
    while (!d.quit) {
        size_t n = cw_l2_pollfds(d.l2, fds + 1, CW_L2_POLLFDS_MAX);
        int t = cw_l2_timeout_ms(d.l2);
        fds[0].fd = in_open ? 0 : -1;
        fds[0].events = POLLIN;
        fds[0].revents = 0;
        if ((d.ready_id >= 0 || d.pound_id >= 0) && (t < 0 || t > 1)) t = 1;
        if (poll(fds, n + 1, t) == -1 && errno != EINTR) {
            perror("poll");
            return 1;
        }
        cw_l2_process(d.l2, fds + 1, n);
        if (fds[0].revents != 0) {
            ssize_t got = read(0, buf + used, sizeof(buf) - 1 - used);
            if (got <= 0) {
                in_open = false;
                d.quit = true;
            } else {
                char *nl;
                used += (size_t)got;
                buf[used] = '\0';
                while ((nl = memchr(buf, '\n', used)) != NULL) {
                    size_t len = (size_t)(nl - buf) + 1;
                    *nl = '\0';
                    handle_line(&d, buf);
                    memmove(buf, buf + len, used - len);
                    used -= len;
                }
                if (used == sizeof(buf) - 1) used = 0; /* an overlong line is dropped */
            }
        }
        ready_tick(&d);
        pound_tick(&d);
    }
    cw_l2_close(d.l2);
    free(d.bench_us);
    return 0;
}
