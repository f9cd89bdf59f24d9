/* tests/bench/wake_lat.c - fill to waiter-resume latency across processes (`make wake-bench`).
 *
 *   build/rel/bin/cw-wake-bench [futex|poll] [rounds] [waiter processes]
 *
 * Maps a real shm segment (cw_seg_create), forks waiter processes in worker slots 0..n-1
 * that each wait for one key's fill as a worker's waiter thread does, and has the parent
 * fill it (cw_seg_fill_done) every ~2 ms at a random phase. Each waiter stamps when it saw
 * the new generation; the latency is that stamp minus the parent's stamp just before the
 * fill (CLOCK_MONOTONIC is the same clock in every process). futex: the waiter sleeps on
 * its slot's wake word (the mechanism in workers/req_wait.c); poll: it compares the
 * generation every 1 ms (what the waiter thread did before). Prints p50/p99/max. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/key.h"
#include "shm/seg.h"

#define WAKE_MAX_WAITERS 8
#define WAKE_MAX_ROUNDS  100000

struct wake_shared {
    _Atomic int64_t fill_ns[WAKE_MAX_ROUNDS];
    _Atomic int64_t seen_ns[WAKE_MAX_WAITERS][WAKE_MAX_ROUNDS];
    _Atomic uint32_t ready[WAKE_MAX_WAITERS]; /* the last round each waiter is armed for */
};

static int64_t wake_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wake_waiter(struct cw_seg *seg, struct wake_shared *sh, int slot, bool poll,
                        const struct cw_key *k, int rounds)
{
    uint32_t b = cw_seg_fill_bucket(k);
    struct timespec tick = {0, 1000000};

    cw_seg_fill_watch(seg, slot, b);
    for (int n = 0; n < rounds; n++) {
        uint32_t gen0 = atomic_load(cw_seg_fill_gen(seg, k));
        atomic_store(&sh->ready[slot], (uint32_t)n + 1);
        for (;;) {
            uint32_t seq = cw_seg_wake_seq(seg, slot);
            if (atomic_load(cw_seg_fill_gen(seg, k)) != gen0) break;
            if (poll)
                nanosleep(&tick, NULL);
            else
                (void)cw_seg_wake_wait(seg, slot, seq, 1000);
        }
        atomic_store(&sh->seen_ns[slot][n], wake_now_ns());
    }
    _exit(0);
}

static int wake_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    bool poll = argc > 1 && strcmp(argv[1], "poll") == 0;
    int rounds = argc > 2 ? atoi(argv[2]) : 2000;
    int waiters = argc > 3 ? atoi(argv[3]) : 2;
    struct cw_seg *seg = NULL;
    struct cw_key k;
    struct wake_shared *sh;
    pid_t pids[WAKE_MAX_WAITERS];
    unsigned seed = 1;

    if (rounds < 1 || rounds > WAKE_MAX_ROUNDS || waiters < 1 || waiters > WAKE_MAX_WAITERS) {
        fprintf(stderr, "usage: %s [futex|poll] [rounds <= %d] [waiters <= %d]\n", argv[0],
                WAKE_MAX_ROUNDS, WAKE_MAX_WAITERS);
        return 2;
    }
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || cw_seg_create(&seg) < 0) return 1;
    memset(&k, 0x5a, sizeof(k));
    for (int i = 0; i < waiters; i++) {
        pids[i] = fork();
        if (pids[i] == -1) return 1;
        if (pids[i] == 0) wake_waiter(seg, sh, i, poll, &k, rounds);
    }
    for (int n = 0; n < rounds; n++) {
        for (int i = 0; i < waiters; i++) {
            while (atomic_load(&sh->ready[i]) != (uint32_t)n + 1)
                usleep(50);
        }
        /* 1-3 ms, so that a poller's phase is random and a sleeper is asleep. */
        struct timespec gap = {0, 1000000 + (long)(rand_r(&seed) % 2000000)};
        nanosleep(&gap, NULL);
        atomic_store(&sh->fill_ns[n], wake_now_ns());
        cw_seg_fill_done(seg, &k);
    }
    for (int i = 0; i < waiters; i++)
        waitpid(pids[i], NULL, 0);

    size_t m = (size_t)rounds * (size_t)waiters, j = 0;
    int64_t *lat = malloc(m * sizeof(*lat));
    if (lat == NULL) return 1;
    for (int i = 0; i < waiters; i++)
        for (int n = 0; n < rounds; n++)
            lat[j++] = atomic_load(&sh->seen_ns[i][n]) - atomic_load(&sh->fill_ns[n]);
    qsort(lat, m, sizeof(*lat), wake_cmp);
    printf("%s: %d fills x %d waiter processes: fill -> waiter resume p50 %.1f us, p99 %.1f us, "
           "max %.1f us\n",
           poll ? "poll 1 ms" : "futex", rounds, waiters, lat[m / 2] / 1e3,
           lat[(m * 99) / 100] / 1e3, lat[m - 1] / 1e3);
    free(lat);
    cw_seg_destroy(seg);
    return 0;
}
