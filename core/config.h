/* core/config.h - the configuration: the libconfig schema of DESIGN.md, parsed and checked.
 *
 * Pure: cw_config_parse() takes the file's text and its name (for messages) and fills a
 * struct the caller owns; nothing is read from disk here (workers/config_file.h reads the
 * file for the main and the supervisor's reload). Every error names the file, the line and
 * the setting: "cachewarp.conf:14: routes[0].ttl: \"3x\" is not a duration".
 * Unknown settings are errors too, so a typo never silently takes a default.
 * A parsed config owns its strings; free with cw_config_free(), which takes NULL. */
#ifndef CW_CONFIG_H
#define CW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/log.h"

enum cw_config_query {
    CW_CONFIG_QUERY_KEEP = 0, /* query string kept as sent */
    CW_CONFIG_QUERY_SORT,     /* parameters sorted (stable) by name */
    CW_CONFIG_QUERY_IGNORE,   /* query string dropped from the key */
    CW_CONFIG_QUERY_LIST,     /* only the parameters named in query_keep, sorted */
};

/* What a request's Cookie header does to caching on a route. */
enum cw_config_cookies {
    CW_CONFIG_COOKIES_PASS = 0, /* with Cookie and no explicit freshness: passed, not stored */
    CW_CONFIG_COOKIES_IGNORE,   /* Cookie does not affect caching */
    CW_CONFIG_COOKIES_KEY,      /* the Cookie value is part of the key */
};

/* How the L2 finds its Redis (redis.mode). */
enum cw_config_redis_mode {
    CW_CONFIG_REDIS_STANDALONE = 0, /* redis.host/port or redis.socket */
    CW_CONFIG_REDIS_SENTINEL,       /* master redis.master asked of redis.sentinels */
    CW_CONFIG_REDIS_CLUSTER,        /* slot map from redis.nodes */
};

enum cw_config_log_format {
    CW_CONFIG_LOG_COMBINED = 0,
    CW_CONFIG_LOG_JSON,
};

/* One server of an origin's pool: where its connections go. */
struct cw_config_server {
    char *base;     /* "scheme://host[:port]", scheme lower-cased: replaces the url's */
    int weight;     /* default 1 */
    bool is_backup; /* used only while no other server is up */
    int max_conns;  /* "max_conns=N": its connections per process at once; 0 = no cap */
};

/* An origin's active health check (enabled when path is set): done by the refresher. */
struct cw_config_health {
    char *path;          /* "/health"; NULL = no active checks */
    int64_t interval_ms; /* default 5 s */
    int64_t timeout_ms;  /* default 1 s */
    int expect;          /* the status that means up; default 200 */
    int rise;            /* successes in a row that bring a server up; default 2 */
    int fall;            /* failures in a row that take it down; default 3 */
};

struct cw_config_origin {
    char *name;
    char *url;                  /* "http://host:port" with optional path prefix, no slash at end;
                                 * with only servers, the first server's base */
    int64_t connect_timeout_ms; /* default 1 s */
    int64_t timeout_ms;         /* longest silence: to the head, then between bytes; 10 s */
    int max_conns;              /* keep-alive connections per worker, default 64 */
    /* The pool: servers (at least one: the url's own when none is listed). */
    struct cw_config_server *servers;
    size_t server_count;
    int balance;                 /* enum cw_pool_balance; default round robin */
    int max_fails;               /* failures in a row that mark a server down; default 3 */
    int64_t fail_timeout_ms;     /* its first down time (then doubling); default 10 s */
    int64_t fail_max_ms;         /* cap of the down time; default 60 s */
    bool retry;                  /* retry an idempotent request once elsewhere; default true */
    int retry_budget_pct;        /* retries at most this % of requests (plus a burst of 10) */
    int breaker_failures;        /* failures in a row that open the breaker; default 5 */
    int64_t breaker_window_ms;   /* ... within this time of the first; default 10 s */
    int64_t breaker_cooldown_ms; /* open this long, then one probe; default 5 s */
    struct cw_config_health health;
    bool tls_verify;    /* check the origin's certificate and name; default true */
    char *ca_file;      /* PEM bundle of trusted CAs; NULL = the system's */
    int64_t resolve_ms; /* DNS answers and pooled connections kept at most this; default 30 s */
    /* Discovery (workers/upstream_dns.h): the refresher resolves the servers' host names (or
     * srv) and publishes every address as a server; re-resolved on the answers' TTL, bounded
     * by [resolve_min_ms, resolve_max_ms]. */
    char *srv;              /* SRV name ("_api._tcp.example.internal"); NULL = none */
    char *resolver;         /* "ip[:port],..." for this origin; NULL = cw_config.resolver */
    int64_t resolve_min_ms; /* default 1 s */
    int64_t resolve_max_ms; /* default resolve_ms */
    char *tls_cert;         /* PEM client certificate (mTLS); NULL = none */
    char *tls_key;          /* PEM private key of tls_cert; NULL = in tls_cert's file */
    char *sni;              /* TLS server name sent and checked; NULL = the server's host */
    char *host;             /* Host field sent to the origin; NULL = as the route forwards it */
    int64_t first_byte_timeout_ms; /* to the response head, queue wait included; 0 = timeout */
    int64_t total_timeout_ms;      /* the whole transfer; 0 = no bound */
    int64_t idle_timeout_ms;       /* a pooled connection idle longer is closed; default 60 s */
    int queue;                     /* transfers waiting for a connection, per process; 1024 */
    int64_t queue_timeout_ms;      /* longest wait for a connection; 0 = first-byte timeout */
    int64_t breaker_max_stale_ms;  /* breaker open: stale copies served this long; 0 = off */
    int ca_file_line, tls_cert_line, tls_key_line; /* in the config file, for load checks */
};

/* An address range (purge.allow, routes[].trust_forwarded); family AF_INET or AF_INET6, addr
 * in network order, no bits set past prefix_len. */
struct cw_config_cidr {
    int family;
    uint8_t addr[16];
    int prefix_len;
};

struct cw_config_route {
    char *host;      /* NULL = any host; else lower-cased, no port */
    size_t host_len; /* strlen(host); 0 when host is NULL */
    char *match;     /* path prefix, starts with '/' */
    size_t match_len;
    int origin;                  /* index into cw_config.origins */
    int64_t ttl_ms;              /* when the origin says nothing; default 60 s */
    int64_t swr_ms;              /* stale-while-revalidate default; default 0 */
    int64_t sie_ms;              /* stale-if-error default; default 0 */
    bool adaptive;               /* learn ttl per key in [min_ttl, max_ttl] */
    bool override;               /* ignore origin freshness, use route ttl / adaptive */
    int64_t min_ttl_ms;          /* default 1 s */
    int64_t max_ttl_ms;          /* default 10 min; also caps heuristic freshness */
    int64_t lock_timeout_ms;     /* coalescing wait bound, default 5 s */
    double refresh_ahead;        /* fraction of ttl, default 0.1; 0 = off */
    double stale_target;         /* adaptive: P(serving changed), default 0.05 */
    bool ignore_client_no_cache; /* default false */
    bool strip_set_cookie;       /* cache responses with Set-Cookie, cookie stripped */
    enum cw_config_query query;
    char **query_keep; /* CW_CONFIG_QUERY_LIST names */
    size_t query_keep_count;
    char **key_headers; /* request headers added to the key, lower-cased */
    size_t key_headers_count;
    char **strip_headers; /* request headers removed before forwarding, lower-cased */
    size_t strip_headers_count;
    struct cw_config_cidr *trust_forwarded; /* peers whose X-Forwarded-* etc. pass unchanged */
    size_t trust_forwarded_count;           /* default 0: nobody */
    enum cw_config_cookies cookies;         /* default CW_CONFIG_COOKIES_PASS */
};

struct cw_config {
    char *file;   /* the name given to cw_config_parse(): the path, when read from one */
    char *listen; /* "host:port", "[v6]:port" */
    int workers;  /* resolved: 0 in the file means one per CPU, done by the main */
    enum cw_log_level log_level;
    char *log_access; /* NULL = none, "-" = stderr, else a path */
    enum cw_config_log_format log_format;
    int64_t shutdown_grace_ms;        /* default 10 s */
    int64_t client_header_timeout_ms; /* whole request head must arrive within; default 60 s */
    int64_t client_body_timeout_ms;   /* longest silence between body reads; default 60 s */

    char *cache_path;                /* default "/var/cache/cachewarp/l1.mdb" */
    uint64_t cache_size_bytes;       /* default 1G */
    uint64_t cache_max_object_bytes; /* default 8M */
    /* RFC 9213 target list, in priority order: default "CacheWarp-Cache-Control",
     * "CDN-Cache-Control"; none = targeted fields are ordinary headers. Case as written. */
    char **cache_targeted_cc;
    size_t cache_targeted_cc_count;

    bool redis_enabled;
    enum cw_config_redis_mode redis_mode; /* default standalone */
    char *redis_host;                     /* standalone; default "127.0.0.1" */
    int redis_port;                       /* standalone; default 6379 */
    char *redis_socket;                   /* standalone over a unix socket; NULL = TCP */
    char **redis_sentinels;               /* sentinel: "host:port" each */
    size_t redis_sentinel_count;
    char *redis_master; /* sentinel: the master's name; default "mymaster" */
    char **redis_nodes; /* cluster: seed "host:port" each */
    size_t redis_node_count;
    char *redis_user;                 /* AUTH user (Redis 6 ACL); NULL = password only */
    char *redis_password;             /* at most one of password, password_file, password_env */
    char *redis_password_file;        /* read by the L2 at start; first line, no newline */
    char *redis_password_env;         /* name of an environment variable */
    int redis_db;                     /* SELECT; 0 in cluster mode */
    char *redis_prefix;               /* key namespace, default "cw:"; no '{' or '}' */
    int64_t redis_connect_timeout_ms; /* default 250 ms */
    int64_t redis_timeout_ms;         /* per command, default 20 ms */
    char *redis_channel;

    struct cw_config_origin *origins;
    size_t origin_count;
    struct cw_config_route *routes;
    size_t route_count;

    char *stats_listen;   /* NULL = no stats listener */
    char *stats_textfile; /* NULL = none */
    int64_t stats_interval_ms;

    char *control_socket; /* unix socket path; default "/run/cachewarp/control.sock" */
    char *control_group;  /* group of the socket file; NULL = the daemon's own */

    struct cw_config_cidr *purge_allow;
    size_t purge_allow_count;

    char *resolver; /* DNS servers "ip[:port],..." for origin discovery; NULL = resolv.conf */

    /* The account a start as root drops to once the sockets are bound (workers/supervisor.c);
     * NULL = none, and then a start as root is refused. Looked up when the file is loaded
     * (workers/config_file.c), which is why their lines are kept. */
    char *user;
    char *group; /* NULL = the user's own */
    int user_line, group_line;
};

/* Parses text (len bytes, need not end in NUL) named file in messages. 0 and *out filled;
 * -EINVAL with err saying "file:line: setting: why". On failure *out is left freed. Caller
 * owns *out; release with cw_config_free(). */
CW_MUST_CHECK int cw_config_parse(const char *text, size_t len, const char *file,
                                  struct cw_config *out, struct cw_err *err);
/* Frees what a parsed config owns and zeroes it. Takes NULL. */
void cw_config_free(struct cw_config *cfg);

/* "30s", "250ms", "5m", "1h", "2d", "1500" (= seconds): 0 and *out_ms, or -EINVAL. */
CW_MUST_CHECK int cw_config_parse_duration(const char *s, int64_t *out_ms);
/* "512M", "1G", "64k", "8192" (bytes; K/M/G/T powers of 1024): 0 and *out, or -EINVAL. */
CW_MUST_CHECK int cw_config_parse_size(const char *s, uint64_t *out);
/* "127.0.0.1/32", "::1/128", "10.0.0.0/8", a bare address = host route: 0 or -EINVAL. */
CW_MUST_CHECK int cw_config_parse_cidr(const char *s, struct cw_config_cidr *out);
/* True when the address (family AF_INET or AF_INET6, bytes in network order) lies in one of
 * the count ranges of list. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, a dual-stack
 * socket's peer) also matches the IPv4 ranges. list may be NULL when count is 0. */
bool cw_config_cidr_match(const struct cw_config_cidr *list, size_t count, int family,
                          const uint8_t *addr);
/* True when the address lies in one of cfg's purge.allow ranges (cw_config_cidr_match()). */
bool cw_config_purge_allowed(const struct cw_config *cfg, int family, const uint8_t *addr);
/* True when the address lies in one of rt's trust_forwarded ranges: such a peer may send
 * X-Forwarded-*, Forwarded, X-Original-URL... through unchanged (cw_config_cidr_match()). */
bool cw_config_route_trusts(const struct cw_config_route *rt, int family, const uint8_t *addr);

/* The DNS servers origin o's lookups go to: its own resolver, else the global one; NULL =
 * the system's (resolv.conf). */
const char *cw_config_origin_resolver(const struct cw_config *cfg,
                                      const struct cw_config_origin *o);

/* Splits "host:port", "[v6]:port" or ":port" into host (copied, NUL-terminated, "" when
 * absent) and port: 0, or -EINVAL. */
CW_MUST_CHECK int cw_config_split_hostport(const char *s, char *host, size_t host_size, int *port);

#endif /* CW_CONFIG_H */
