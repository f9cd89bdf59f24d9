/* workers/upstream_pool.c - the upstream module's server pools: which server of an origin a
 * transfer goes to, the passive health and circuit breaker words every process shares through
 * the shm segment, the retry budget, the per-origin libcurl settings (TLS, DNS) and the
 * active health checks of the one process that runs them (the refresher).
 *
 * Loop thread only, like the rest of the loop: the per-process state (round robin, running
 * counts, retry tokens) is the loop's; the shm words are moved by compare-and-swap with the
 * transitions of core/pool, and the process whose swap changes a state logs the change, so
 * each change is logged once in the whole node. Without a segment (unit tests) the words are
 * the process's own.
 *
 * Servers found by DNS (workers/upstream_dns.h: the refresher resolves, once per node) come
 * through the segment's table (struct cw_seg_dns): before each choice the pool compares the
 * table's generation with the one it follows and, when it moved, takes the new slots. A
 * server keeps its slot (and its health words) while DNS keeps it; a server that went is
 * chosen no more, and the transfers on it finish (its libcurl connect-to list is kept until
 * they have). Each server found by DNS is reached through CURLOPT_CONNECT_TO at its address,
 * while the URL, and so Host and SNI, keep the configured name. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/pool.h"
#include "shm/seg.h"
#include "workers/clock.h"
#include "workers/upstream.h"
#include "workers/upstream_dns.h"
#include "workers/upstream_int.h"

struct upstream_server {
    char *base; /* "scheme://host:port" */
    size_t base_len;
    bool probing;    /* an active check is out */
    bool is_present; /* in the pool (a DNS table may leave a slot empty) */
    /* Its cap of running attempts in this process ("max_conns=N"); 0 = none. */
    int max_conns;
    /* Found by DNS: "::address:port", the address its connections go to (NULL: the base's
     * host, as configured); and the lists of addresses it had before, kept while transfers
     * that may read them run on the slot. */
    struct curl_slist *connect_to;
    struct curl_slist *retired;
    char label[128]; /* for logs: the base, and the address DNS gave */
};

struct upstream_origin {
    int index;
    char *name;
    size_t url_base_len; /* "scheme://authority" of the origin's url, replaced per server */
    struct upstream_server servers[CW_LIMIT_ORIGIN_SERVERS];
    struct cw_pool_server pick[CW_LIMIT_ORIGIN_SERVERS];
    size_t n;
    enum cw_pool_balance balance;
    struct cw_pool_health health;
    struct cw_pool_breaker breaker;
    bool retry;
    struct cw_pool_budget budget; /* this process's retries */
    bool tls_verify;
    char *ca_file;
    long resolve_s;
    /* Active checks (only in the process that runs them). */
    char *check_path;
    int64_t check_interval_ms, check_timeout_ms;
    int check_expect, check_rise, check_fall;
    int64_t next_check_ms;
    struct cw_seg_origin *shm; /* the segment's, or local */
    struct cw_seg_origin local;
    /* The configured servers, which a DNS table's slots name by index. */
    char *cfg_base[CW_LIMIT_ORIGIN_SERVERS];
    int cfg_weight[CW_LIMIT_ORIGIN_SERVERS];
    bool cfg_backup[CW_LIMIT_ORIGIN_SERVERS];
    int cfg_max_conns[CW_LIMIT_ORIGIN_SERVERS]; /* per address DNS finds for it, too */
    size_t cfg_n;
    size_t live;      /* servers present */
    uint32_t dns_gen; /* of the DNS table the pool follows; 0: the configured servers */
    uint64_t dns_id;  /* cw_upstream_dns_origin_id(): the tables this pool may take */
    struct cw_seg_dns_server dns[CW_LIMIT_ORIGIN_SERVERS];
};

/* An active check of one server, owned by the loop from submit to on_done. */
struct upstream_probe {
    struct cw_upstream_xfer xfer;
    struct cw_upstream_req req;
    struct upstream_origin *o;
    int server;
    char url[];
};

static size_t pool_base_len(const char *url)
{
    const char *auth = strstr(url, "://");

    auth = auth ? auth + 3 : url;
    return (size_t)(auth - url) + strcspn(auth, "/");
}

/* Points slot k at base (copied) with the given weight: -ENOMEM leaves it as it was. The
 * previous address list is retired, not freed, while transfers run on the slot. */
static int pool_set_slot(struct upstream_origin *o, size_t k, const char *base, int weight,
                         bool is_backup, int max_conns, const char *connect_to)
{
    struct upstream_server *s = &o->servers[k];
    struct curl_slist *ct = NULL;
    char *b = strdup(base);

    if (b == NULL) return -ENOMEM;
    if (connect_to != NULL && (ct = curl_slist_append(NULL, connect_to)) == NULL) {
        free(b);
        return -ENOMEM;
    }
    free(s->base);
    s->base = b;
    s->base_len = strlen(b);
    if (s->connect_to != NULL) {
        s->connect_to->next = s->retired; /* one node: the head stays the old address */
        s->retired = s->connect_to;
    }
    s->connect_to = ct;
    if (o->pick[k].running == 0) {
        curl_slist_free_all(s->retired);
        s->retired = NULL;
    }
    if (connect_to != NULL) {
        snprintf(s->label, sizeof(s->label), "%s (%s)", base, connect_to + 2);
    } else {
        snprintf(s->label, sizeof(s->label), "%s", base);
    }
    s->is_present = true;
    o->pick[k].weight = weight;
    o->pick[k].is_backup = is_backup;
    o->pick[k].current = 0;
    s->max_conns = max_conns;
    return 0;
}

/* The configured servers, as they are: the pool before DNS has answered, and with no DNS. */
static int pool_use_config(struct upstream_origin *o)
{
    for (size_t k = 0; k < CW_LIMIT_ORIGIN_SERVERS; k++) {
        if (k < o->cfg_n) {
            int rc = pool_set_slot(o, k, o->cfg_base[k], o->cfg_weight[k], o->cfg_backup[k],
                                   o->cfg_max_conns[k], NULL);
            if (rc < 0) return rc;
        } else {
            o->servers[k].is_present = false;
        }
    }
    o->n = o->cfg_n;
    o->live = o->cfg_n;
    o->dns_gen = 0;
    memset(o->dns, 0, sizeof(o->dns));
    return 0;
}

/* Takes the slots of the segment's DNS table when its generation moved; a table being
 * written, or no memory, is taken on a later call. Loop thread only. */
static void pool_follow_dns(struct upstream_origin *o)
{
    struct cw_seg_dns_server t[CW_LIMIT_ORIGIN_SERVERS];
    uint32_t gen = atomic_load_explicit(&o->shm->dns.gen, memory_order_acquire);
    size_t n = 0, live = 0;

    if (gen == o->dns_gen) return;
    if (gen == 0) { /* a reload emptied the table: the configured servers until it is back */
        if (pool_use_config(o) < 0) o->dns_gen = UINT32_MAX;
        return;
    }
    if (!cw_seg_dns_read(&o->shm->dns, gen, o->dns_id, t)) return;
    for (size_t k = 0; k < CW_LIMIT_ORIGIN_SERVERS; k++) {
        const struct cw_seg_dns_server *e = &t[k];
        char addr[INET6_ADDRSTRLEN], ct[INET6_ADDRSTRLEN + 16];
        if (e->family == 0 || e->cfg_server >= o->cfg_n) {
            o->servers[k].is_present = false;
            continue;
        }
        if (o->dns_gen == 0 || memcmp(e, &o->dns[k], sizeof(*e)) != 0 ||
            !o->servers[k].is_present) {
            int af = e->family == 6 ? AF_INET6 : AF_INET;
            if (inet_ntop(af, e->addr, addr, sizeof(addr)) == NULL) {
                o->servers[k].is_present = false;
                continue;
            }
            snprintf(ct, sizeof(ct), af == AF_INET6 ? "::[%s]:%u" : "::%s:%u", addr,
                     (unsigned)e->port);
            if (pool_set_slot(o, k, o->cfg_base[e->cfg_server], e->weight > 0 ? e->weight : 1,
                              e->is_backup != 0, o->cfg_max_conns[e->cfg_server], ct) < 0) {
                cw_warn_rl("upstream: origin %s: DNS table: out of memory; next request", o->name);
                return; /* dns_gen unchanged: tried again */
            }
        }
        n = k + 1;
        live++;
    }
    memcpy(o->dns, t, sizeof(t));
    o->n = n;
    o->live = live;
    o->dns_gen = gen;
}

static int pool_origin_init(struct upstream_origin *o, const struct cw_config_origin *c, int index,
                            struct cw_seg *seg, bool checks)
{
    o->index = index;
    o->name = strdup(c->name ? c->name : "origin");
    o->url_base_len = c->url ? pool_base_len(c->url) : 0;
    o->cfg_n = c->server_count ? c->server_count : 1;
    if (o->cfg_n > CW_LIMIT_ORIGIN_SERVERS) o->cfg_n = CW_LIMIT_ORIGIN_SERVERS;
    for (size_t i = 0; i < o->cfg_n; i++) {
        const char *b = c->server_count ? c->servers[i].base : c->url;
        size_t len = c->server_count ? strlen(b) : o->url_base_len;
        if (b == NULL) return -EINVAL;
        o->cfg_base[i] = strndup(b, len);
        if (o->cfg_base[i] == NULL) return -ENOMEM;
        o->cfg_weight[i] = c->server_count ? c->servers[i].weight : 1;
        o->cfg_backup[i] = c->server_count ? c->servers[i].is_backup : false;
        o->cfg_max_conns[i] = c->server_count ? c->servers[i].max_conns : 0;
    }
    if (pool_use_config(o) < 0) return -ENOMEM;
    o->dns_id = cw_upstream_dns_origin_id(c);
    o->balance = (enum cw_pool_balance)c->balance;
    o->health = (struct cw_pool_health){(unsigned)(c->max_fails > 0 ? c->max_fails : 3),
                                        c->fail_timeout_ms > 0 ? c->fail_timeout_ms : 10000,
                                        c->fail_max_ms > 0 ? c->fail_max_ms : 60000};
    o->breaker = (struct cw_pool_breaker){
        (unsigned)(c->breaker_failures > 0 ? c->breaker_failures : 5),
        c->breaker_window_ms > 0 ? c->breaker_window_ms : 10000,
        c->breaker_cooldown_ms > 0 ? c->breaker_cooldown_ms : 5000,
        /* A probe's result is due within its own timeout (and a connect's); past that its
         * process is taken for dead and another probe may go. */
        (c->timeout_ms > 0 ? c->timeout_ms : 10000) + c->connect_timeout_ms + 1000};
    o->retry = c->retry;
    cw_pool_budget_init(&o->budget, (unsigned)c->retry_budget_pct, CW_POOL_RETRY_BURST);
    o->tls_verify = c->tls_verify;
    if (c->ca_file != NULL && (o->ca_file = strdup(c->ca_file)) == NULL) return -ENOMEM;
    o->resolve_s = c->resolve_ms > 0 ? (long)((c->resolve_ms + 999) / 1000) : 60;
    if (checks && c->health.path != NULL) {
        if ((o->check_path = strdup(c->health.path)) == NULL) return -ENOMEM;
        o->check_interval_ms = c->health.interval_ms;
        o->check_timeout_ms = c->health.timeout_ms;
        o->check_expect = c->health.expect;
        o->check_rise = c->health.rise;
        o->check_fall = c->health.fall;
    }
    o->shm = seg != NULL && index < CW_LIMIT_ORIGINS ? &seg->origins[index] : &o->local;
    return o->name ? 0 : -ENOMEM;
}

int upstream_origins_init(const struct cw_config *cfg, struct cw_seg *seg, bool checks,
                          struct upstream_origin **out)
{
    struct upstream_origin *v = calloc(cfg->origin_count ? cfg->origin_count : 1, sizeof(*v));
    int rc = 0;

    if (v == NULL) return -ENOMEM;
    for (size_t i = 0; i < cfg->origin_count && rc == 0; i++)
        rc = pool_origin_init(&v[i], &cfg->origins[i], (int)i, seg, checks);
    if (rc < 0) {
        cw_err("upstream: origin pools: %s", strerror(-rc));
        upstream_origins_free(v, cfg->origin_count);
        return rc;
    }
    *out = v;
    return 0;
}

void upstream_origins_free(struct upstream_origin *v, size_t n)
{
    if (v == NULL) return;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < CW_LIMIT_ORIGIN_SERVERS; k++) {
            free(v[i].servers[k].base);
            free(v[i].cfg_base[k]);
            curl_slist_free_all(v[i].servers[k].connect_to);
            curl_slist_free_all(v[i].servers[k].retired);
        }
        free(v[i].name);
        free(v[i].ca_file);
        free(v[i].check_path);
    }
    free(v);
}

struct upstream_origin *upstream_origin_at(struct upstream_origin *v, size_t i)
{
    return &v[i];
}

/* Whether server i may take requests at now_ms: passive and active health agree. A lone
 * server is never taken out by passive health (as nginx ignores max_fails with one server):
 * there is nowhere else to go, and the breaker is what stops the hammering. */
static bool pool_server_is_up(struct upstream_origin *o, size_t i, int64_t now_ms)
{
    uint64_t h = atomic_load_explicit(&o->shm->server_health[i], memory_order_relaxed);
    uint32_t p = atomic_load_explicit(&o->shm->server_probe[i], memory_order_relaxed);

    if (!o->servers[i].is_present) return false;
    return (o->live == 1 || !cw_pool_health_is_down(h, now_ms)) && !cw_pool_probe_is_down(p);
}

static void pool_log_breaker(struct upstream_origin *o, uint64_t from, uint64_t to, int64_t now_ms)
{
    enum cw_pool_breaker_state a = cw_pool_breaker_state(from), b = cw_pool_breaker_state(to);

    if (a == b) return;
    if (b == CW_POOL_BREAKER_OPEN) {
        atomic_fetch_add_explicit(&o->shm->breaker_opens, 1, memory_order_relaxed);
        cw_warn("upstream: origin %s: circuit breaker open (was %s): requests fail fast for "
                "%lld ms",
                o->name, cw_pool_breaker_name(a), (long long)(cw_pool_breaker_time(to) - now_ms));
    } else {
        cw_notice("upstream: origin %s: circuit breaker %s (was %s)", o->name,
                  cw_pool_breaker_name(b), cw_pool_breaker_name(a));
    }
}

int upstream_origin_admit(struct upstream_origin *o, bool *probe, char *why, size_t why_len)
{
    int64_t now = cw_clock_mono_ms();
    uint64_t w = atomic_load_explicit(&o->shm->breaker, memory_order_relaxed), next;

    *probe = false;
    for (;;) {
        enum cw_pool_admit a = cw_pool_breaker_admit(w, now, &o->breaker, &next);
        if (a == CW_POOL_ADMIT_GO) {
            cw_pool_budget_earn(&o->budget); /* a request that goes earns its share */
            return 0;
        }
        if (a == CW_POOL_ADMIT_REFUSE) break;
        /* One process wins the probe; the others see the new word and are refused. */
        if (atomic_compare_exchange_weak_explicit(&o->shm->breaker, &w, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            pool_log_breaker(o, w, next, now);
            cw_pool_budget_earn(&o->budget);
            *probe = true;
            return 0;
        }
    }
    atomic_fetch_add_explicit(&o->shm->fail_fast, 1, memory_order_relaxed);
    snprintf(why, why_len, "origin %s unavailable: circuit breaker open", o->name);
    return -EHOSTUNREACH;
}

void upstream_origin_report(struct upstream_origin *o, bool ok, bool probe)
{
    int64_t now = cw_clock_mono_ms();
    uint64_t w = atomic_load_explicit(&o->shm->breaker, memory_order_relaxed), next;

    do {
        next = cw_pool_breaker_next(w, ok, probe, now, &o->breaker);
        if (next == w) return;
    } while (!atomic_compare_exchange_weak_explicit(&o->shm->breaker, &w, next,
                                                    memory_order_relaxed, memory_order_relaxed));
    pool_log_breaker(o, w, next, now);
}

void upstream_origin_release_probe(struct upstream_origin *o)
{
    int64_t now = cw_clock_mono_ms();
    uint64_t w = atomic_load_explicit(&o->shm->breaker, memory_order_relaxed), next;

    do {
        next = cw_pool_breaker_release(w, now);
        if (next == w) return;
    } while (!atomic_compare_exchange_weak_explicit(&o->shm->breaker, &w, next,
                                                    memory_order_relaxed, memory_order_relaxed));
}

int upstream_origin_pick(struct upstream_origin *o, int exclude)
{
    int64_t now = cw_clock_mono_ms();
    int i;

    pool_follow_dns(o);
    /* A server at its own connection cap is passed over, as nginx's max_conns does. */
    for (size_t k = 0; k < o->n; k++)
        o->pick[k].is_up =
            pool_server_is_up(o, k, now) &&
            (o->servers[k].max_conns == 0 || o->pick[k].running < o->servers[k].max_conns);
    i = cw_pool_pick(o->pick, o->n, o->balance, exclude);
    if (i >= 0) o->pick[i].running++;
    return i;
}

void upstream_origin_pin(struct upstream_origin *o, int server)
{
    o->pick[server].running++;
}

/* A slot the DNS table left may be past n while its transfers end: the bound is the array. */
void upstream_origin_release(struct upstream_origin *o, int server)
{
    if (server < 0 || server >= CW_LIMIT_ORIGIN_SERVERS) return;
    if (o->pick[server].running > 0) o->pick[server].running--;
    if (o->pick[server].running == 0 && o->servers[server].retired != NULL) {
        curl_slist_free_all(o->servers[server].retired);
        o->servers[server].retired = NULL;
    }
}

bool upstream_origin_is_full(struct upstream_origin *o)
{
    int64_t now = cw_clock_mono_ms();
    bool full = false;

    for (size_t k = 0; k < o->n; k++) {
        if (!pool_server_is_up(o, k, now)) continue;
        if (o->servers[k].max_conns == 0 || o->pick[k].running < o->servers[k].max_conns)
            return false;
        full = true;
    }
    return full;
}

int64_t upstream_origin_breaker_wait_ms(struct upstream_origin *o)
{
    uint64_t w = atomic_load_explicit(&o->shm->breaker, memory_order_relaxed);
    int64_t left = cw_pool_breaker_time(w) - cw_clock_mono_ms();

    switch (cw_pool_breaker_state(w)) {
    case CW_POOL_BREAKER_OPEN:
        return left > 1 ? left : 1;
    case CW_POOL_BREAKER_HALF_OPEN:
        return 1;
    case CW_POOL_BREAKER_CLOSED:
        break;
    }
    return 0;
}

size_t upstream_origin_server_count(const struct upstream_origin *o)
{
    return o->n;
}

int upstream_origin_url(const struct upstream_origin *o, int server, const char *url, char **out)
{
    const struct upstream_server *s = &o->servers[server];
    size_t tail;

    /* A URL built on another base (a caller of its own) goes as it is. */
    if (o->url_base_len == 0 || strlen(url) < o->url_base_len ||
        (url[o->url_base_len] != '\0' && url[o->url_base_len] != '/' &&
         url[o->url_base_len] != '?')) {
        *out = strdup(url);
        return *out ? 0 : -ENOMEM;
    }
    tail = strlen(url + o->url_base_len);
    if ((*out = malloc(s->base_len + tail + 1)) == NULL) return -ENOMEM;
    memcpy(*out, s->base, s->base_len);
    memcpy(*out + s->base_len, url + o->url_base_len, tail + 1);
    return 0;
}

void upstream_origin_report_server(struct upstream_origin *o, int server, bool ok)
{
    _Atomic uint64_t *word = &o->shm->server_health[server];
    int64_t now = cw_clock_mono_ms();
    uint64_t w = atomic_load_explicit(word, memory_order_relaxed), next;

    do {
        next = cw_pool_health_next(w, ok, now, &o->health);
        if (next == w) return;
    } while (!atomic_compare_exchange_weak_explicit(word, &w, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    if (!ok && cw_pool_health_down_until(next) != 0 &&
        cw_pool_health_fails(w) < o->health.max_fails) {
        cw_warn("upstream: origin %s server %s down for %lld ms: %u failures in a row", o->name,
                o->servers[server].label, (long long)(cw_pool_health_down_until(next) - now),
                cw_pool_health_fails(next));
    } else if (ok && cw_pool_health_fails(w) >= o->health.max_fails) {
        cw_notice("upstream: origin %s server %s up again: it answered", o->name,
                  o->servers[server].label);
    }
}

bool upstream_origin_take_retry(struct upstream_origin *o)
{
    return o->retry && cw_pool_budget_take(&o->budget);
}

void upstream_origin_retry_sent(struct upstream_origin *o, bool sent)
{
    if (sent) {
        atomic_fetch_add_explicit(&o->shm->retries, 1, memory_order_relaxed);
    } else {
        cw_pool_budget_refund(&o->budget);
    }
}

void upstream_origin_count_fail_fast(struct upstream_origin *o)
{
    atomic_fetch_add_explicit(&o->shm->fail_fast, 1, memory_order_relaxed);
}

void upstream_origin_setopts(const struct upstream_origin *o, int server, CURL *e)
{
    /* A server DNS found: connect to its address; the URL keeps the name for Host and SNI. */
    if (server >= 0 && server < CW_LIMIT_ORIGIN_SERVERS && o->servers[server].connect_to != NULL)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, o->servers[server].connect_to);
    /* TLS: the peer's chain and name are checked unless the config says otherwise; SNI and
     * the name checked come from the server's host. */
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, o->tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, o->tls_verify ? 2L : 0L);
    if (o->ca_file != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, o->ca_file);
    /* DNS: libcurl's resolver (a thread per lookup, so the loop never blocks) caches an answer
     * resolve_s; a pooled connection older than that is not reused, so a changed A record is
     * followed within resolve_s even under steady keep-alive traffic. */
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, o->resolve_s);
    curl_easy_setopt(e, CURLOPT_MAXLIFETIME_CONN, o->resolve_s);
}

/* ---- Active checks ------------------------------------------------------------------------ */

static int pool_probe_on_head(struct cw_upstream_xfer *x, int status,
                              const struct cw_upstream_fields *h)
{
    (void)x;
    (void)status;
    (void)h;
    return CW_UPSTREAM_GO;
}

static int pool_probe_on_data(struct cw_upstream_xfer *x, const char *p, size_t n)
{
    (void)x;
    (void)p;
    (void)n;
    return CW_UPSTREAM_GO; /* the body is not read: the status says it all */
}

static void pool_probe_on_done(struct cw_upstream_xfer *x, int rc)
{
    struct upstream_probe *pr = x->cls;
    struct upstream_origin *o = pr->o;
    _Atomic uint32_t *word = &o->shm->server_probe[pr->server];
    bool ok = rc == 0 && x->status == o->check_expect, changed = false;
    uint32_t w, next;

    o->servers[pr->server].probing = false;
    if (rc == -ECANCELED) goto out_free; /* stopping: no news */
    w = atomic_load_explicit(word, memory_order_relaxed);
    do {
        next =
            cw_pool_probe_next(w, ok, (unsigned)o->check_rise, (unsigned)o->check_fall, &changed);
    } while (next != w && !atomic_compare_exchange_weak_explicit(
                              word, &w, next, memory_order_relaxed, memory_order_relaxed));
    if (changed && cw_pool_probe_is_down(next)) {
        char why[64];
        if (rc != 0) {
            snprintf(why, sizeof(why), "%.60s", x->errbuf);
        } else {
            snprintf(why, sizeof(why), "status %d", x->status);
        }
        cw_warn("upstream: origin %s server %s down: health check %s: %s", o->name,
                o->servers[pr->server].label, o->check_path, why);
    } else if (changed) {
        cw_notice("upstream: origin %s server %s up: health check %s passed", o->name,
                  o->servers[pr->server].label, o->check_path);
    }
    /* A passing check ends a passive down time early: the server answers again, so it need
     * not sit out the rest of its backoff (requests that fail mark it down again). */
    if (ok && !cw_pool_probe_is_down(next)) {
        _Atomic uint64_t *hw = &o->shm->server_health[pr->server];
        uint64_t h = atomic_load_explicit(hw, memory_order_relaxed);
        if (cw_pool_health_down_until(h) != 0 &&
            atomic_compare_exchange_strong_explicit(hw, &h, 0, memory_order_relaxed,
                                                    memory_order_relaxed))
            cw_notice("upstream: origin %s server %s back from its down time: health check "
                      "%s passed",
                      o->name, o->servers[pr->server].label, o->check_path);
    }
out_free:
    free(pr);
}

static const struct cw_upstream_ops pool_probe_ops = {
    .on_head = pool_probe_on_head,
    .on_data = pool_probe_on_data,
    .on_done = pool_probe_on_done,
};

/* Sends one check to each server of o whose last one has ended. A failed submit (the loop's
 * queue full) is retried at the next interval. */
static void pool_check_origin(struct cw_upstream *up, struct upstream_origin *o)
{
    pool_follow_dns(o);
    for (size_t i = 0; i < o->n; i++) {
        struct upstream_server *s = &o->servers[i];
        size_t len = s->base_len + strlen(o->check_path) + 1;
        struct upstream_probe *pr;

        if (s->probing || !s->is_present) continue;
        if ((pr = calloc(1, sizeof(*pr) + len)) == NULL) {
            cw_warn_rl("upstream: origin %s: health check: out of memory; next interval", o->name);
            return;
        }
        snprintf(pr->url, len, "%s%s", s->base, o->check_path);
        pr->o = o;
        pr->server = (int)i;
        pr->req = (struct cw_upstream_req){.origin = o->index,
                                           .server_pin = (int)i + 1,
                                           .url = pr->url,
                                           .method = "GET",
                                           .head = "User-Agent: cachewarp-health\r\n",
                                           .connect_timeout_ms = o->check_timeout_ms,
                                           .timeout_ms = o->check_timeout_ms};
        pr->xfer.req = &pr->req;
        pr->xfer.ops = &pool_probe_ops;
        pr->xfer.cls = pr;
        if (cw_upstream_submit(up, &pr->xfer) < 0) {
            cw_warn_rl("upstream: origin %s: health check of %s not sent: the loop is full; "
                       "next interval",
                       o->name, s->base);
            free(pr);
            return;
        }
        s->probing = true;
    }
}

int64_t upstream_origins_check(struct cw_upstream *up, struct upstream_origin *v, size_t n,
                               int64_t now_ms)
{
    int64_t next = INT64_MAX;

    for (size_t i = 0; i < n; i++) {
        struct upstream_origin *o = &v[i];
        if (o->check_path == NULL) continue;
        if (now_ms >= o->next_check_ms) {
            pool_check_origin(up, o);
            o->next_check_ms = now_ms + o->check_interval_ms;
        }
        if (o->next_check_ms < next) next = o->next_check_ms;
    }
    return next;
}
