/* workers/upstream_dns.c - origin discovery by DNS with c-ares: the lookups of the origins
 * whose servers are names (or srv), each origin's rounds of lookups, and the publication of
 * what they found into the shm segment's server table.
 *
 * One round per origin at a time: an SRV query (srv), then the A/AAAA lookup of each target;
 * or the A/AAAA lookup of each configured server named by a host name (an address given as
 * such is a server as it is). A round that failed anywhere changes nothing: the last table
 * stays, and the configured servers before any table. Everything runs on the refresher's
 * upstream loop thread, from the poller callbacks, except start and free. */
#include "workers/upstream_dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "shm/seg.h"
#include "workers/clock.h"
#include "workers/upstream.h"

#define DNS_N          CW_LIMIT_ORIGIN_SERVERS
#define DNS_TIMEOUT_MS 1000 /* per try; c-ares's own default (5 s, 4 tries) holds a round 35 s */
#define DNS_TRIES      2
#define DNS_HOST_MAX   256

/* One name to look up in a round, and what its addresses become. */
struct upstream_dns_target {
    char host[DNS_HOST_MAX];
    uint16_t port;
    uint16_t weight;
    bool is_backup;
    uint16_t cfg_server;
};

struct upstream_dns_origin {
    struct cw_upstream_dns *d;
    const char *name; /* borrowed from the config */
    const char *srv;  /* borrowed; NULL: the configured servers' names */
    ares_channel ch;
    struct cw_seg_origin *shm;
    uint64_t id; /* cw_upstream_dns_origin_id() */
    /* The configured servers: a name to look up, or an address as it is. */
    struct upstream_dns_target src[DNS_N];
    struct cw_seg_dns_server src_addr[DNS_N]; /* family 0: src[i] is a name */
    size_t nsrc;
    int64_t min_ms, max_ms, due_ms;
    /* The round in progress. */
    bool busy;
    int pending; /* lookups out, plus one while the round is being started */
    bool failed;
    char why[160]; /* the first failure */
    int64_t ttl_s; /* the smallest TTL seen; -1 none */
    struct upstream_dns_target tgt[DNS_N];
    size_t ntgt;
    struct cw_seg_dns_server found[DNS_N];
    size_t nfound;
    bool truncated;
    /* Between rounds. */
    bool failing;       /* the last round failed (logged once) */
    bool was_truncated; /* the last round found more servers than slots (logged once) */
    struct cw_seg_dns_server table[DNS_N]; /* as published */
};

/* What a callback needs: its origin and which target (-1: the SRV query). */
struct upstream_dns_query {
    struct upstream_dns_origin *o;
    int target;
};

struct cw_upstream_dns {
    struct upstream_dns_origin *v;
    size_t n;
    struct cw_upstream *up;
    struct cw_upstream_task task;
    /* Which origin each socket handed to the poll belongs to (fds() to process()). */
    size_t map[CW_UPSTREAM_POLLER_FDS];
    size_t nmap;
};

static void upstream_dns_round_release(struct upstream_dns_origin *o);

/* ---- Pure helpers ------------------------------------------------------------------------- */

static uint16_t upstream_dns_get16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* The bytes a name takes at p (compressed or not): 0 and *len, or -EBADMSG. */
static int upstream_dns_skip_name(const unsigned char *p, const unsigned char *abuf, size_t alen,
                                  size_t *len)
{
    char *name = NULL;
    long enclen = 0;

    if (alen > INT32_MAX) return -EBADMSG;
    if (ares_expand_name(p, abuf, (int)alen, &name, &enclen) != ARES_SUCCESS) return -EBADMSG;
    ares_free_string(name);
    if (enclen <= 0) return -EBADMSG;
    *len = (size_t)enclen;
    return 0;
}

int cw_upstream_dns_srv_ttl(const unsigned char *abuf, size_t alen, uint32_t *ttl_s)
{
    size_t off = 12, qd, an, len;
    bool seen = false;
    uint32_t best = 0;

    if (alen < 12) return -EBADMSG;
    qd = upstream_dns_get16(abuf + 4);
    an = upstream_dns_get16(abuf + 6);
    for (size_t i = 0; i < qd; i++) {
        if (off >= alen || upstream_dns_skip_name(abuf + off, abuf, alen, &len) < 0)
            return -EBADMSG;
        if (len + 4 > alen - off) return -EBADMSG; /* type, class */
        off += len + 4;
    }
    for (size_t i = 0; i < an; i++) {
        uint16_t type, rdlen;
        uint32_t ttl;
        if (off >= alen || upstream_dns_skip_name(abuf + off, abuf, alen, &len) < 0)
            return -EBADMSG;
        if (len + 10 > alen - off) return -EBADMSG; /* type, class, ttl, rdlength */
        off += len;
        type = upstream_dns_get16(abuf + off);
        ttl = ((uint32_t)abuf[off + 4] << 24) | ((uint32_t)abuf[off + 5] << 16) |
              ((uint32_t)abuf[off + 6] << 8) | abuf[off + 7];
        rdlen = upstream_dns_get16(abuf + off + 8);
        off += 10;
        if (rdlen > alen - off) return -EBADMSG;
        off += rdlen;
        if (type != ns_t_srv) continue;
        /* RFC 2181 §8: a TTL with the top bit set is read as 0. */
        if (ttl > INT32_MAX) ttl = 0;
        if (!seen || ttl < best) best = ttl;
        seen = true;
    }
    if (!seen) return -ENOENT;
    *ttl_s = best;
    return 0;
}

static bool upstream_dns_same(const struct cw_seg_dns_server *a, const struct cw_seg_dns_server *b)
{
    return a->family == b->family && a->port == b->port && a->cfg_server == b->cfg_server &&
           memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

bool cw_upstream_dns_assign(struct cw_seg_dns_server *table, const struct cw_seg_dns_server *found,
                            size_t n, uint32_t *added, uint32_t *removed)
{
    bool kept[DNS_N] = {false}, was_empty[DNS_N], changed = false;
    bool placed[DNS_N] = {false};

    *added = 0;
    *removed = 0;
    if (n > DNS_N) n = DNS_N;
    for (size_t k = 0; k < DNS_N; k++)
        was_empty[k] = table[k].family == 0;
    /* Servers that stay keep their slot. */
    for (size_t k = 0; k < DNS_N; k++) {
        if (was_empty[k]) continue;
        for (size_t i = 0; i < n; i++) {
            if (placed[i] || !upstream_dns_same(&table[k], &found[i])) continue;
            if (table[k].weight != found[i].weight || table[k].is_backup != found[i].is_backup)
                changed = true;
            table[k] = found[i];
            kept[k] = placed[i] = true;
            break;
        }
        if (!kept[k]) {
            memset(&table[k], 0, sizeof(table[k]));
            *removed |= 1u << k;
            changed = true;
        }
    }
    /* New ones: slots empty before this round first, then those just left. */
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (placed[i]) continue;
            while (k < DNS_N && (table[k].family != 0 || (pass == 0 && !was_empty[k])))
                k++;
            if (k == DNS_N) break;
            table[k] = found[i];
            placed[i] = true;
            *added |= 1u << k;
            changed = true;
        }
    }
    return changed;
}

static uint64_t upstream_dns_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull; /* FNV-1a, 64 bits */
    }
    return h;
}

uint64_t cw_upstream_dns_origin_id(const struct cw_config_origin *c)
{
    uint64_t h = 14695981039346656037ull;

    h = upstream_dns_fnv(h, c->name ? c->name : "", c->name ? strlen(c->name) + 1 : 1);
    h = upstream_dns_fnv(h, c->srv ? c->srv : "", c->srv ? strlen(c->srv) + 1 : 1);
    for (size_t i = 0; i < c->server_count; i++) {
        const struct cw_config_server *s = &c->servers[i];
        h = upstream_dns_fnv(h, s->base, strlen(s->base) + 1);
        h = upstream_dns_fnv(h, &s->weight, sizeof(s->weight));
        h = upstream_dns_fnv(h, &s->is_backup, sizeof(s->is_backup));
    }
    return h == 0 ? 1 : h;
}

/* ---- Rounds ------------------------------------------------------------------------------ */

/* "127.0.0.2:9000", "[::1]:9000". */
static void upstream_dns_addr_text(const struct cw_seg_dns_server *e, char *out, size_t size)
{
    char a[INET6_ADDRSTRLEN] = "?";

    inet_ntop(e->family == 6 ? AF_INET6 : AF_INET, e->addr, a, sizeof(a));
    snprintf(out, size, e->family == 6 ? "[%s]:%u" : "%s:%u", a, (unsigned)e->port);
}

/* The round failed: name could not be looked up, for cause. */
static void upstream_dns_fail(struct upstream_dns_origin *o, const char *name, const char *cause)
{
    if (o->failed) return; /* the first cause is the one told */
    o->failed = true;
    snprintf(o->why, sizeof(o->why), "%s: %s", name, cause);
}

static void upstream_dns_see_ttl(struct upstream_dns_origin *o, int64_t ttl_s)
{
    if (ttl_s < 0) ttl_s = 0;
    if (o->ttl_s < 0 || ttl_s < o->ttl_s) o->ttl_s = ttl_s;
}

static void upstream_dns_add(struct upstream_dns_origin *o, const struct cw_seg_dns_server *e)
{
    for (size_t i = 0; i < o->nfound; i++)
        if (upstream_dns_same(&o->found[i], e)) return;
    if (o->nfound == DNS_N) {
        o->truncated = true;
        return;
    }
    o->found[o->nfound++] = *e;
}

static void upstream_dns_on_addr(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    struct upstream_dns_query *q = arg;
    struct upstream_dns_origin *o = q->o;
    const struct upstream_dns_target *t = &o->tgt[q->target];
    size_t before = o->nfound;

    (void)timeouts;
    free(q);
    if (status == ARES_EDESTRUCTION) return; /* the channel is going: no round to finish */
    if (status != ARES_SUCCESS) {
        upstream_dns_fail(o, t->host, ares_strerror(status));
    } else {
        for (struct ares_addrinfo_node *n = res ? res->nodes : NULL; n != NULL; n = n->ai_next) {
            struct cw_seg_dns_server e = {.is_backup = t->is_backup,
                                          .port = t->port,
                                          .weight = t->weight,
                                          .cfg_server = t->cfg_server};
            if (n->ai_family == AF_INET && n->ai_addr != NULL) {
                e.family = 4;
                memcpy(e.addr, &((const struct sockaddr_in *)(void *)n->ai_addr)->sin_addr, 4);
            } else if (n->ai_family == AF_INET6 && n->ai_addr != NULL) {
                e.family = 6;
                memcpy(e.addr, &((const struct sockaddr_in6 *)(void *)n->ai_addr)->sin6_addr, 16);
            } else {
                continue;
            }
            upstream_dns_see_ttl(o, n->ai_ttl);
            upstream_dns_add(o, &e);
        }
        if (o->nfound == before && (res == NULL || res->nodes == NULL))
            upstream_dns_fail(o, t->host, "no address");
    }
    if (res != NULL) ares_freeaddrinfo(res);
    upstream_dns_round_release(o);
}

/* Starts the A/AAAA lookup of target i (counted in the round before c-ares may call back). */
static void upstream_dns_lookup(struct upstream_dns_origin *o, size_t i)
{
    struct ares_addrinfo_hints h = {.ai_flags = ARES_AI_NOSORT, .ai_family = AF_UNSPEC};
    struct upstream_dns_query *q = malloc(sizeof(*q));

    if (q == NULL) {
        upstream_dns_fail(o, o->tgt[i].host, "out of memory");
        return;
    }
    *q = (struct upstream_dns_query){.o = o, .target = (int)i};
    o->pending++;
    atomic_fetch_add_explicit(&o->shm->dns.lookups, 1, memory_order_relaxed);
    ares_getaddrinfo(o->ch, o->tgt[i].host, NULL, &h, upstream_dns_on_addr, q);
}

/* The SRV answer: its targets become the round's lookups. Records of the lowest priority
 * are the primaries, the others backups (RFC 2782: a client tries the lowest first). */
static void upstream_dns_on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct upstream_dns_query *q = arg;
    struct upstream_dns_origin *o = q->o;
    struct ares_srv_reply *reply = NULL;
    unsigned lowest = 65536;
    uint32_t ttl;

    (void)timeouts;
    free(q);
    if (status == ARES_EDESTRUCTION) return;
    if (status == ARES_SUCCESS && alen > 0) status = ares_parse_srv_reply(abuf, alen, &reply);
    if (status != ARES_SUCCESS) {
        upstream_dns_fail(o, o->srv, ares_strerror(status));
        goto out;
    }
    /* The answer's own TTL: ares_parse_srv_reply() gives none. */
    if (cw_upstream_dns_srv_ttl(abuf, (size_t)alen, &ttl) == 0) upstream_dns_see_ttl(o, ttl);
    for (struct ares_srv_reply *r = reply; r != NULL; r = r->next)
        if (r->priority < lowest) lowest = r->priority;
    o->ntgt = 0;
    for (struct ares_srv_reply *r = reply; r != NULL; r = r->next) {
        struct upstream_dns_target *t = &o->tgt[o->ntgt];
        bool dup = false;
        /* "." says the service is not offered there (RFC 2782). */
        if (r->host == NULL || r->host[0] == '\0' || strcmp(r->host, ".") == 0) continue;
        if (strlen(r->host) >= sizeof(t->host)) continue;
        for (size_t i = 0; i < o->ntgt && !dup; i++)
            dup = o->tgt[i].port == r->port && strcasecmp(o->tgt[i].host, r->host) == 0;
        if (dup) continue;
        if (o->ntgt == DNS_N) {
            o->truncated = true;
            break;
        }
        snprintf(t->host, sizeof(t->host), "%s", r->host);
        t->port = r->port;
        t->weight = r->weight > 0 ? r->weight : 1; /* 0: "no preference", still a server */
        t->is_backup = r->priority != lowest;
        t->cfg_server = 0; /* the url's: scheme, Host and SNI */
        o->ntgt++;
    }
    if (o->ntgt == 0) upstream_dns_fail(o, o->srv, "no usable SRV record");
    for (size_t i = 0; i < o->ntgt; i++)
        upstream_dns_lookup(o, i);
out:
    ares_free_data(reply);
    upstream_dns_round_release(o);
}

/* The round's result: the table when it changed, or the last one kept on a failure. */
static void upstream_dns_round_end(struct upstream_dns_origin *o)
{
    int64_t now = cw_clock_mono_ms();
    struct cw_seg_dns_server t[DNS_N];
    uint32_t added, removed;
    char a[INET6_ADDRSTRLEN + 8];

    o->busy = false;
    if (o->failed || o->nfound == 0) {
        atomic_fetch_add_explicit(&o->shm->dns.failures, 1, memory_order_relaxed);
        if (!o->failing) {
            bool have = atomic_load_explicit(&o->shm->dns.gen, memory_order_relaxed) != 0;
            cw_warn("upstream: origin %s: DNS lookup failed: %s; %s", o->name,
                    o->failed ? o->why : "no server",
                    have ? "keeping its last known servers" : "keeping its configured servers");
        }
        o->failing = true;
        o->due_ms = now + o->min_ms;
        return;
    }
    if (o->failing) cw_notice("upstream: origin %s: DNS lookups answer again", o->name);
    o->failing = false;
    if (o->truncated && !o->was_truncated) {
        cw_warn("upstream: origin %s: DNS gave more than %d servers: the first ones are used",
                o->name, DNS_N);
    }
    o->was_truncated = o->truncated;
    memcpy(t, o->table, sizeof(t));
    if (cw_upstream_dns_assign(t, o->found, o->nfound, &added, &removed) ||
        atomic_load_explicit(&o->shm->dns.gen, memory_order_relaxed) == 0) {
        for (size_t k = 0; k < DNS_N; k++) {
            if (removed & (1u << k)) {
                upstream_dns_addr_text(&o->table[k], a, sizeof(a));
                cw_notice("upstream: origin %s: server %s removed (DNS): draining", o->name, a);
            }
        }
        for (size_t k = 0; k < DNS_N; k++) {
            if (!(added & (1u << k))) continue;
            upstream_dns_addr_text(&t[k], a, sizeof(a));
            cw_notice("upstream: origin %s: server %s added (DNS), weight %u%s", o->name, a,
                      (unsigned)t[k].weight, t[k].is_backup ? ", backup" : "");
            /* A new server starts healthy, whatever its slot's last one did. */
            atomic_store_explicit(&o->shm->server_health[k], 0, memory_order_relaxed);
            atomic_store_explicit(&o->shm->server_probe[k], 0, memory_order_relaxed);
        }
        atomic_fetch_add_explicit(&o->shm->dns.changes,
                                  (uint64_t)__builtin_popcount(added) +
                                      (uint64_t)__builtin_popcount(removed),
                                  memory_order_relaxed);
        cw_seg_dns_write(&o->shm->dns, o->id, t);
        memcpy(o->table, t, sizeof(t));
    }
    /* Again when the shortest TTL ends, within the origin's bounds. */
    o->due_ms = now + cw_upstream_dns_wait_ms(o->ttl_s, o->min_ms, o->max_ms);
}

int64_t cw_upstream_dns_wait_ms(int64_t ttl_s, int64_t min_ms, int64_t max_ms)
{
    /* A TTL past what any bound allows is max_ms; the product cannot overflow below it. */
    int64_t wait_ms = ttl_s < 0 || ttl_s > max_ms / 1000 + 1 ? max_ms : ttl_s * 1000;

    if (wait_ms < min_ms) wait_ms = min_ms;
    if (wait_ms > max_ms) wait_ms = max_ms;
    return wait_ms;
}

static void upstream_dns_round_release(struct upstream_dns_origin *o)
{
    if (--o->pending == 0) upstream_dns_round_end(o);
}

static void upstream_dns_round_start(struct upstream_dns_origin *o)
{
    o->busy = true;
    o->pending = 1; /* the start itself: c-ares may call back before the call returns */
    o->failed = false;
    o->why[0] = '\0';
    o->ttl_s = -1;
    o->nfound = 0;
    o->truncated = false;
    if (o->srv != NULL) {
        struct upstream_dns_query *q = malloc(sizeof(*q));
        if (q == NULL) {
            upstream_dns_fail(o, o->srv, "out of memory");
        } else {
            *q = (struct upstream_dns_query){.o = o, .target = -1};
            o->pending++;
            atomic_fetch_add_explicit(&o->shm->dns.lookups, 1, memory_order_relaxed);
            ares_search(o->ch, o->srv, ns_c_in, ns_t_srv, upstream_dns_on_srv, q);
        }
    } else {
        o->ntgt = 0;
        for (size_t i = 0; i < o->nsrc; i++) {
            if (o->src_addr[i].family != 0) {
                upstream_dns_add(o, &o->src_addr[i]);
            } else {
                o->tgt[o->ntgt++] = o->src[i];
            }
        }
        for (size_t i = 0; i < o->ntgt; i++)
            upstream_dns_lookup(o, i);
    }
    upstream_dns_round_release(o);
}

/* ---- The poller: c-ares's sockets in the upstream loop's poll ----------------------------- */

static size_t upstream_dns_fds(void *cls, struct pollfd *fds, size_t max)
{
    struct cw_upstream_dns *d = cls;
    size_t n = 0;

    for (size_t i = 0; i < d->n; i++) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        unsigned bits;
        if (!d->v[i].busy) continue;
        bits = (unsigned)ares_getsock(d->v[i].ch, socks, ARES_GETSOCK_MAXNUM);
        for (int k = 0; k < ARES_GETSOCK_MAXNUM && n < max; k++) {
            /* The bits by hand: ARES_GETSOCK_WRITABLE() shifts a signed 1 into bit 31. */
            short ev = (short)((((bits >> k) & 1u) ? POLLIN : 0) |
                               (((bits >> (k + ARES_GETSOCK_MAXNUM)) & 1u) ? POLLOUT : 0));
            if (ev == 0) continue;
            fds[n] = (struct pollfd){.fd = socks[k], .events = ev};
            d->map[n++] = i;
        }
    }
    d->nmap = n;
    return n;
}

static int upstream_dns_timeout_ms(void *cls)
{
    struct cw_upstream_dns *d = cls;
    int64_t now = cw_clock_mono_ms(), best = -1;

    for (size_t i = 0; i < d->n; i++) {
        struct upstream_dns_origin *o = &d->v[i];
        int64_t ms;
        if (o->busy) {
            struct timeval tv, *tp = ares_timeout(o->ch, NULL, &tv);
            if (tp == NULL) continue;
            ms = (int64_t)tp->tv_sec * 1000 + (tp->tv_usec + 999) / 1000;
        } else {
            ms = o->due_ms > now ? o->due_ms - now : 0;
        }
        if (best < 0 || ms < best) best = ms;
    }
    return best < 0 ? -1 : best > INT32_MAX ? INT32_MAX : (int)best;
}

static void upstream_dns_process(void *cls, const struct pollfd *fds, size_t n)
{
    struct cw_upstream_dns *d = cls;
    int64_t now;

    for (size_t i = 0; i < n && i < d->nmap; i++) {
        struct upstream_dns_origin *o = &d->v[d->map[i]];
        bool r = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        bool w = (fds[i].revents & POLLOUT) != 0;
        if (!o->busy || (!r && !w)) continue;
        ares_process_fd(o->ch, r ? fds[i].fd : ARES_SOCKET_BAD, w ? fds[i].fd : ARES_SOCKET_BAD);
    }
    d->nmap = 0;
    now = cw_clock_mono_ms();
    for (size_t i = 0; i < d->n; i++) {
        struct upstream_dns_origin *o = &d->v[i];
        /* No socket ready: c-ares ends the tries whose time is up. */
        if (o->busy) ares_process_fd(o->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        if (!o->busy && now >= o->due_ms) upstream_dns_round_start(o);
    }
}

static const struct cw_upstream_poller upstream_dns_poller = {
    .fds = upstream_dns_fds,
    .timeout_ms = upstream_dns_timeout_ms,
    .process = upstream_dns_process,
};

/* On the loop thread: from here the loop waits on c-ares's sockets too. */
static void upstream_dns_attach(struct cw_upstream_task *t, bool cancelled)
{
    struct cw_upstream_dns *d =
        (struct cw_upstream_dns *)(void *)((char *)t - offsetof(struct cw_upstream_dns, task));

    if (!cancelled) cw_upstream_set_poller(d->up, &upstream_dns_poller, d);
}

/* ---- Start and free ----------------------------------------------------------------------- */

/* Splits base ("scheme://host[:port]") into t (port: the scheme's default when absent) and,
 * for an address, a ready server in *addr; false for a base it cannot read. */
static bool upstream_dns_parse_base(const char *base, struct upstream_dns_target *t,
                                    struct cw_seg_dns_server *addr)
{
    const char *auth = strstr(base, "://"), *end, *hp, *colon;
    size_t hlen;
    int port = strncmp(base, "https://", 8) == 0 ? 443 : 80;

    if (auth == NULL) return false;
    auth += 3;
    end = auth + strcspn(auth, "/");
    if (*auth == '[') {
        const char *close = memchr(auth, ']', (size_t)(end - auth));
        if (close == NULL) return false;
        hp = auth + 1;
        hlen = (size_t)(close - hp);
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
    } else {
        hp = auth;
        colon = memchr(auth, ':', (size_t)(end - auth));
        hlen = (size_t)((colon ? colon : end) - auth);
    }
    if (hlen == 0 || hlen >= sizeof(t->host)) return false;
    memcpy(t->host, hp, hlen);
    t->host[hlen] = '\0';
    if (colon != NULL) port = atoi(colon + 1);
    if (port <= 0 || port > 65535) return false;
    t->port = (uint16_t)port;
    memset(addr, 0, sizeof(*addr));
    if (inet_pton(AF_INET, t->host, addr->addr) == 1) {
        addr->family = 4;
    } else if (inet_pton(AF_INET6, t->host, addr->addr) == 1) {
        addr->family = 6;
    }
    addr->port = t->port;
    addr->weight = t->weight;
    addr->is_backup = t->is_backup;
    addr->cfg_server = t->cfg_server;
    return true;
}

/* The origin's settings into o: true when it needs discovery (srv, or a server named by a
 * host name). */
static bool upstream_dns_origin_init(struct upstream_dns_origin *o,
                                     const struct cw_config_origin *c)
{
    bool named = false;

    o->name = c->name;
    o->srv = c->srv;
    o->id = cw_upstream_dns_origin_id(c);
    o->min_ms = c->resolve_min_ms > 0 ? c->resolve_min_ms : 1000;
    o->max_ms = c->resolve_max_ms > o->min_ms ? c->resolve_max_ms : o->min_ms;
    o->nsrc = c->server_count < DNS_N ? c->server_count : DNS_N;
    for (size_t i = 0; i < o->nsrc; i++) {
        struct upstream_dns_target *t = &o->src[i];
        t->weight = (uint16_t)(c->servers[i].weight > 0 ? c->servers[i].weight : 1);
        t->is_backup = c->servers[i].is_backup;
        t->cfg_server = (uint16_t)i;
        if (!upstream_dns_parse_base(c->servers[i].base, t, &o->src_addr[i])) return false;
        named = named || o->src_addr[i].family == 0;
    }
    return o->srv != NULL || named;
}

/* A channel for o, its queries sent to resolver ("ip[:port],...") or resolv.conf's. */
static int upstream_dns_channel(struct upstream_dns_origin *o, const char *resolver)
{
    struct ares_options opts = {.timeout = DNS_TIMEOUT_MS, .tries = DNS_TRIES};
    int rc = ares_init_options(&o->ch, &opts, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);

    if (rc != ARES_SUCCESS) {
        cw_err("upstream: origin %s: ares_init_options: %s", o->name, ares_strerror(rc));
        o->ch = NULL;
        return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
    }
    if (resolver != NULL && (rc = ares_set_servers_ports_csv(o->ch, resolver)) != ARES_SUCCESS) {
        cw_err("upstream: origin %s: resolver \"%s\": %s", o->name, resolver, ares_strerror(rc));
        return -EINVAL;
    }
    return 0;
}

int cw_upstream_dns_start(const struct cw_config *cfg, struct cw_seg *seg, struct cw_upstream *up,
                          struct cw_upstream_dns **out)
{
    struct cw_upstream_dns *d;
    size_t count = 0;
    int rc;

    *out = NULL;
    if (seg == NULL || cfg->origin_count == 0) return 0;
    rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        cw_err("upstream: ares_library_init: %s", ares_strerror(rc));
        return -EIO;
    }
    d = calloc(1, sizeof(*d));
    if (d == NULL || (d->v = calloc(cfg->origin_count, sizeof(*d->v))) == NULL) {
        free(d);
        ares_library_cleanup();
        return -ENOMEM;
    }
    d->up = up;
    for (size_t i = 0; i < cfg->origin_count && i < CW_LIMIT_ORIGINS; i++) {
        const struct cw_config_origin *c = &cfg->origins[i];
        struct upstream_dns_origin *o = &d->v[d->n];
        uint32_t gen;
        *o = (struct upstream_dns_origin){.d = d, .shm = &seg->origins[i]};
        if (!upstream_dns_origin_init(o, c)) continue;
        d->n++;
        rc = upstream_dns_channel(o, cw_config_origin_resolver(cfg, c));
        if (rc < 0) goto out_free;
        /* A restarted refresher goes on from the table its predecessor published, so
         * that servers keep their slots. */
        gen = atomic_load_explicit(&o->shm->dns.gen, memory_order_acquire);
        if (!cw_seg_dns_read(&o->shm->dns, gen, o->id, o->table))
            memset(o->table, 0, sizeof(o->table));
        count++;
        cw_info("upstream: origin %s: servers found by DNS (%s%s), every %lld..%lld ms", o->name,
                o->srv ? "SRV " : "A/AAAA", o->srv ? o->srv : "", (long long)o->min_ms,
                (long long)o->max_ms);
    }
    if (count == 0) {
        cw_upstream_dns_free(d);
        return 0;
    }
    d->task.run = upstream_dns_attach;
    rc = cw_upstream_defer(up, &d->task);
    if (rc < 0) {
        cw_err("upstream: DNS discovery not started: %s", strerror(-rc));
        goto out_free;
    }
    *out = d;
    return 0;

out_free:
    cw_upstream_dns_free(d);
    return rc;
}

void cw_upstream_dns_free(struct cw_upstream_dns *d)
{
    if (d == NULL) return;
    for (size_t i = 0; i < d->n; i++) {
        /* Pending callbacks run with ARES_EDESTRUCTION and only free their query. */
        if (d->v[i].ch != NULL) ares_destroy(d->v[i].ch);
    }
    free(d->v);
    free(d);
    ares_library_cleanup();
}
