/* tests/bench/evict_sim.c - trace-driven check of the L1 eviction policy against exact LRU.
 *
 * Replays a Zipf(s) trace (fixed seed) through a real store in a temp dir, with hit bits in a
 * real shm segment (a hit calls cw_seg_hit(), as a worker does; a miss stores the entry, as
 * the miss path does), and through an exact in-memory LRU of the same capacity, and prints
 * both hit ratios. The store's map is sized so that it holds about `cache` entries of a fixed
 * size between its watermarks; the LRU is run at the store's measured mean resident count, so
 * both hold the same number of entries on average.
 *
 *   cw-evict-sim [keys [requests [cache [s]]]]   defaults: 100000 2000000 10000 0.9
 *
 * The unit test tests/unit/test_store_evict.c includes this file with EVICT_SIM_NO_MAIN
 * defined and runs a smaller trace. */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/seg.h"
#include "shm/store.h"

#define SIM_BODY_BYTES 3000 /* one 4 KiB overflow page per entry */
#define SIM_SAMPLE     1000 /* requests between samples of the resident count */

struct sim_result {
    double ours;         /* hit ratio of the store */
    double lru;          /* hit ratio of exact LRU at the store's mean resident count */
    double lru_nominal;  /* hit ratio of exact LRU at the nominal capacity */
    double mean_entries; /* mean entries resident in the store */
    uint64_t put_fail;   /* puts that failed (must be 0) */
};

static uint64_t sim_rand(uint64_t *s)
{
    /* xorshift64*: fast, fixed sequence for a fixed seed. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* The Zipf CDF over n ranks: cdf[i] = P(rank <= i). Caller frees. */
static double *sim_zipf_cdf(size_t n, double s)
{
    double *cdf = malloc(n * sizeof(*cdf));
    double sum = 0;

    if (cdf == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)(i + 1), s);
        cdf[i] = sum;
    }
    for (size_t i = 0; i < n; i++) {
        cdf[i] /= sum;
    }
    return cdf;
}

static size_t sim_zipf_next(const double *cdf, size_t n, uint64_t *rng)
{
    double u = (double)(sim_rand(rng) >> 11) / 9007199254740992.0;
    size_t lo = 0;
    size_t hi = n - 1;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cdf[mid] < u) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Exact LRU over keys 0..n-1 with capacity cap: the hit ratio of the trace. */
static double sim_lru(const uint32_t *trace, size_t requests, size_t n, size_t cap)
{
    uint32_t *prev = malloc(n * sizeof(*prev));
    uint32_t *next = malloc(n * sizeof(*next));
    uint8_t *in = calloc(n, 1);
    uint32_t head = UINT32_MAX; /* most recent */
    uint32_t tail = UINT32_MAX;
    size_t size = 0;
    size_t hits = 0;

    if (prev == NULL || next == NULL || in == NULL) {
        free(prev);
        free(next);
        free(in);
        return -1;
    }
    for (size_t i = 0; i < requests; i++) {
        uint32_t k = trace[i];
        if (in[k]) {
            hits++;
            if (head == k) continue;
            next[prev[k]] = next[k]; /* unlink; k is not the head, so prev[k] is valid */
            if (next[k] != UINT32_MAX) {
                prev[next[k]] = prev[k];
            } else {
                tail = prev[k];
            }
        } else {
            if (size == cap) {
                uint32_t victim = tail;
                tail = prev[victim];
                if (tail != UINT32_MAX) next[tail] = UINT32_MAX;
                if (head == victim) head = UINT32_MAX;
                in[victim] = 0;
                size--;
            }
            in[k] = 1;
            size++;
        }
        prev[k] = UINT32_MAX;
        next[k] = head;
        if (head != UINT32_MAX) prev[head] = k;
        head = k;
        if (tail == UINT32_MAX) tail = k;
    }
    free(prev);
    free(next);
    free(in);
    return (double)hits / (double)requests;
}

static int sim_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int sim_nop_cb(void *cls, const struct cw_entry_view *v)
{
    (void)cls;
    (void)v;
    return 0;
}

/* Replays trace through a real store: 0 and the hit count, mean resident entries and failed
 * puts in *res, or -errno. */
static int sim_store(const uint32_t *trace, size_t requests, size_t cache, struct sim_result *res)
{
    static char body[SIM_BODY_BYTES];
    char dir[] = "/tmp/cw-evict-sim-XXXXXX";
    char path[64];
    struct cw_store *st = NULL;
    struct cw_store_reader *r = NULL;
    struct cw_seg *seg = NULL;
    struct cw_entry_hdr h;
    struct cw_key k;
    char full[64];
    size_t hits = 0;
    double resident = 0;
    size_t samples = 0;
    /* Pages for `cache` entries at the mean of the two watermarks; one page per entry plus
     * its share of the leaf and branch pages (measured: 1.03). */
    double pages =
        (double)cache * 1.03 * 200.0 / (CW_STORE_EVICT_HIGH_PCT + CW_STORE_EVICT_LOW_PCT);
    uint64_t map_bytes = ((uint64_t)pages + 16) * 4096;
    int rc;

    if (mkdtemp(dir) == NULL) return -errno;
    snprintf(path, sizeof(path), "%s/l1.mdb", dir);
    memset(body, 's', sizeof(body));
    memset(&h, 0, sizeof(h));
    h.status = 200;
    h.fresh_until_ms = INT64_MAX; /* nothing expires: the policy alone decides */
    rc = cw_seg_create(&seg);
    if (rc == 0) rc = cw_store_open(path, map_bytes, &st);
    if (rc == 0) rc = cw_store_reader_open(st, &r);
    if (rc < 0) goto out;
    cw_store_set_seg(st, seg, 0);
    res->put_fail = 0;
    for (size_t i = 0; i < requests; i++) {
        int n = snprintf(full, sizeof(full), "http://sim/%u", trace[i]);
        cw_key_hash(cw_store_secret(st), full, (size_t)n, &k);
        rc = cw_store_read(r, &k, cw_str_make(full, (size_t)n), sim_nop_cb, NULL);
        if (rc == 0) {
            hits++;
            cw_seg_hit(seg, &k);
        } else if (rc == -ENOENT) {
            rc = cw_store_put(st, &k, &h, cw_str_make(full, (size_t)n), NULL, 0,
                              cw_str_make(body, sizeof(body)));
            if (rc < 0) res->put_fail++;
        } else {
            goto out;
        }
        if (i % SIM_SAMPLE == SIM_SAMPLE - 1 && i > requests / 10) {
            uint64_t entries;
            uint64_t used;
            rc = cw_store_stat(st, &entries, &used);
            if (rc < 0) goto out;
            resident += (double)entries;
            samples++;
        }
    }
    rc = 0;
    res->ours = (double)hits / (double)requests;
    res->mean_entries = samples ? resident / (double)samples : 0;
out:
    cw_store_reader_close(r);
    cw_store_close(st);
    cw_seg_destroy(seg);
    nftw(dir, sim_rm_one, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}

/* Builds the trace and runs both policies: 0 and *res, or -errno. */
static int sim_run(size_t keys, size_t requests, size_t cache, double s, uint64_t seed,
                   struct sim_result *res)
{
    double *cdf = sim_zipf_cdf(keys, s);
    uint32_t *trace = malloc(requests * sizeof(*trace));
    uint64_t rng = seed;
    int rc = -ENOMEM;

    if (cdf == NULL || trace == NULL) goto out;
    for (size_t i = 0; i < requests; i++) {
        trace[i] = (uint32_t)sim_zipf_next(cdf, keys, &rng);
    }
    rc = sim_store(trace, requests, cache, res);
    if (rc < 0) goto out;
    res->lru = sim_lru(trace, requests, keys, (size_t)(res->mean_entries + 0.5));
    res->lru_nominal = sim_lru(trace, requests, keys, cache);
out:
    free(cdf);
    free(trace);
    return rc;
}

#ifndef EVICT_SIM_NO_MAIN
int main(int argc, char **argv)
{
    size_t keys = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t requests = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000000;
    size_t cache = argc > 3 ? strtoul(argv[3], NULL, 10) : 10000;
    double s = argc > 4 ? strtod(argv[4], NULL) : 0.9;
    struct sim_result res;
    int rc;

    if (keys == 0 || requests == 0 || cache == 0 || cache >= keys || keys > UINT32_MAX) {
        fprintf(stderr, "usage: cw-evict-sim [keys [requests [cache [s]]]]\n");
        return 2;
    }
    memset(&res, 0, sizeof(res));
    rc = sim_run(keys, requests, cache, s, 0x5eed, &res);
    if (rc < 0) {
        fprintf(stderr, "cw-evict-sim: %s\n", strerror(-rc));
        return 1;
    }
    printf("trace: zipf(%.2f) over %zu keys, %zu requests, seed 0x5eed\n", s, keys, requests);
    printf("store (CLOCK, hit bits): %.2f %% hits, %.0f entries resident on average, %llu "
           "failed puts\n",
           100 * res.ours, res.mean_entries, (unsigned long long)res.put_fail);
    printf("exact LRU, same mean size: %.2f %% hits\n", 100 * res.lru);
    printf("exact LRU, %zu entries: %.2f %% hits\n", cache, 100 * res.lru_nominal);
    printf("difference (store - LRU same size): %+.2f points\n", 100 * (res.ours - res.lru));
    return 0;
}
#endif
