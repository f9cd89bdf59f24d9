/* core/config_origin.c - the origins ( ... ) list: each origin's url or server pool, its
 * timeouts, passive and active health, retries, circuit breaker, TLS and DNS discovery
 * settings (and the top-level resolver), with the checks between them. Pure, like the rest
 * of the config module. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config_int.h"
#include "core/pool.h"

#define CW_ORI struct cw_config_origin

static int config_origin_name(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    char q[CW_CONFIG_QUOTE_BYTES];
    int rc = cw_config_take_str(cx, s, &o->name, false);

    if (rc < 0) return rc;
    for (const char *p = o->name; *p != '\0'; p++) {
        if (!cw_config_is_name_char(*p)) {
            return cw_config_fail(cx, s, "\"%s\": use only letters, digits, '-', '.', '_'",
                                  cw_config_quote(o->name, q, sizeof(q)));
        }
    }
    for (struct cw_config_origin *prev = cx->cfg->origins; prev < o; prev++) {
        if (prev->name != NULL && strcmp(prev->name, o->name) == 0) {
            return cw_config_fail(cx, s, "\"%s\" is already defined",
                                  cw_config_quote(o->name, q, sizeof(q)));
        }
    }
    return 0;
}

/* Checks "http[s]://host[:port][/prefix]" and stores it with the scheme lower-cased and no
 * trailing slash. */
static int config_origin_url(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    char host[CW_CONFIG_HOST_MAX], q[CW_CONFIG_QUOTE_BYTES];
    const char *v, *auth, *path;
    size_t skip, len;
    int port, rc = cw_config_take_str(cx, s, &o->url, false);

    if (rc < 0) return rc;
    v = o->url;
    skip = strncasecmp(v, "http://", 7) == 0 ? 7 : strncasecmp(v, "https://", 8) == 0 ? 8 : 0;
    auth = v + skip;
    path = auth + strcspn(auth, "/");
    if (skip == 0 || strpbrk(v, "?#@ \t\r\n") != NULL ||
        cw_config_split(auth, (size_t)(path - auth), false, host, sizeof(host), &port) < 0 ||
        host[0] == '\0') {
        return cw_config_fail(cx, s, "\"%s\" is not an origin URL (http[s]://host[:port][/prefix])",
                              cw_config_quote(v, q, sizeof(q)));
    }
    for (size_t i = 0; i < skip; i++) {
        o->url[i] = (char)(o->url[i] | 0x20);
    }
    len = strlen(o->url);
    while (len > (size_t)(path - v) && o->url[len - 1] == '/') {
        o->url[--len] = '\0';
    }
    return 0;
}

/* The length of "scheme://authority" at the start of url (a checked origin URL). */
static size_t config_origin_base_len(const char *url)
{
    const char *auth = strstr(url, "://");

    auth = auth ? auth + 3 : url;
    return (size_t)(auth - url) + strcspn(auth, "/");
}

/* One servers[] entry: "http[s]://host[:port]" (no path: the url's prefix applies), then
 * optional words "weight=N" (1..100), "max_conns=N" and "backup", as nginx's server lines. */
static int config_origin_server(struct config_ctx *cx, const config_setting_t *e,
                                struct cw_config_server *sv)
{
    char host[CW_CONFIG_HOST_MAX], q[CW_CONFIG_QUOTE_BYTES];
    const char *v, *auth, *end, *w;
    size_t skip, blen;
    int port, rc = cw_config_want(cx, e, CONFIG_TYPE_STRING, "a string (\"http://host:port\")");

    if (rc < 0) return rc;
    v = config_setting_get_string(e);
    skip = strncasecmp(v, "http://", 7) == 0 ? 7 : strncasecmp(v, "https://", 8) == 0 ? 8 : 0;
    auth = v + skip;
    end = auth + strcspn(auth, " \t");
    blen = (size_t)(end - v);
    if (blen > 1 && v[blen - 1] == '/') blen--; /* "http://h:1/" is "http://h:1" */
    if (skip == 0 || memchr(auth, '/', blen - skip) != NULL || strpbrk(v, "?#@\r\n") != NULL ||
        cw_config_split(auth, blen - skip, false, host, sizeof(host), &port) < 0 ||
        host[0] == '\0') {
        return cw_config_fail(cx, e,
                              "\"%s\" is not a server (http[s]://host[:port] [weight=N] [backup])",
                              cw_config_quote(v, q, sizeof(q)));
    }
    if ((sv->base = strndup(v, blen)) == NULL) return cw_config_oom(cx);
    for (size_t i = 0; i < skip; i++)
        sv->base[i] = (char)(sv->base[i] | 0x20);
    sv->weight = 1;
    for (w = end; *w != '\0';) {
        size_t n;
        while (*w == ' ' || *w == '\t')
            w++;
        n = strcspn(w, " \t");
        if (n == 0) break;
        if (n == 6 && strncmp(w, "backup", 6) == 0) {
            sv->is_backup = true;
        } else if (n > 7 && strncmp(w, "weight=", 7) == 0) {
            char *stop;
            long wt = strtol(w + 7, &stop, 10);
            if (stop != w + n || wt < 1 || wt > 100) {
                return cw_config_fail(cx, e, "\"%s\": weight must be 1 to 100",
                                      cw_config_quote(v, q, sizeof(q)));
            }
            sv->weight = (int)wt;
        } else if (n > 10 && strncmp(w, "max_conns=", 10) == 0) {
            char *stop;
            long mc = strtol(w + 10, &stop, 10);
            if (stop != w + n || mc < 1 || mc > CW_LIMIT_PENDING_FETCHES) {
                return cw_config_fail(cx, e, "\"%s\": max_conns must be 1 to %d",
                                      cw_config_quote(v, q, sizeof(q)), CW_LIMIT_PENDING_FETCHES);
            }
            sv->max_conns = (int)mc;
        } else {
            return cw_config_fail(cx, e, "\"%s\": unknown word (weight=N, max_conns=N or backup)",
                                  cw_config_quote(v, q, sizeof(q)));
        }
        w += n;
    }
    return 0;
}

static int config_origin_servers(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    int n = config_setting_length(s);
    bool primary = false;

    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        return cw_config_want(cx, s, CONFIG_TYPE_ARRAY, "an array [ \"http://host:port\", ... ]");
    }
    if (n == 0) return cw_config_fail(cx, s, "must not be empty");
    if (n > CW_LIMIT_ORIGIN_SERVERS) {
        return cw_config_fail(cx, config_setting_get_elem(s, CW_LIMIT_ORIGIN_SERVERS),
                              "more than %d servers", CW_LIMIT_ORIGIN_SERVERS);
    }
    if ((o->servers = calloc((size_t)n, sizeof(*o->servers))) == NULL) return cw_config_oom(cx);
    o->server_count = (size_t)n;
    for (int i = 0; i < n; i++) {
        int rc = config_origin_server(cx, config_setting_get_elem(s, (unsigned)i), &o->servers[i]);
        if (rc < 0) return rc;
        primary = primary || !o->servers[i].is_backup;
    }
    if (!primary) return cw_config_fail(cx, s, "every server is a backup: make one a primary");
    return 0;
}

static int config_origin_balance(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    /* In the order of enum cw_pool_balance. */
    static const char *const names[] = {"round_robin", "least_conn"};
    struct cw_config_origin *o = base;
    int i, rc = cw_config_take_enum(cx, s, names, CW_ARRAY_LEN(names),
                                    "\"round_robin\" or \"least_conn\"", &i);

    if (rc == 0) o->balance = (enum cw_pool_balance)i;
    return rc;
}

/* health.path: an origin-form path, sent to every server of the pool. */
static int config_origin_health_path(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    int rc = cw_config_take_str(cx, s, &o->health.path, true);

    if (rc < 0 || o->health.path == NULL) return rc;
    if (o->health.path[0] != '/' || strpbrk(o->health.path, " \t\r\n#") != NULL)
        return cw_config_fail(cx, s, "must be a path starting with '/', without spaces");
    return 0;
}

/* srv: a DNS name whose SRV records give the servers ("_api._tcp.example.internal"). */
static int config_origin_srv(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    char q[CW_CONFIG_QUOTE_BYTES];
    int rc = cw_config_take_str(cx, s, &o->srv, false);

    if (rc < 0) return rc;
    for (const char *p = o->srv; *p != '\0'; p++) {
        if (!cw_config_is_name_char(*p)) {
            return cw_config_fail(cx, s, "\"%s\" is not a DNS name",
                                  cw_config_quote(o->srv, q, sizeof(q)));
        }
    }
    if (strlen(o->srv) > 253) return cw_config_fail(cx, s, "longer than 253 bytes");
    return 0;
}

/* Checks a resolver list: "ip[:port]" or "[ipv6]:port" items separated by commas, as
 * c-ares's ares_set_servers_ports_csv() takes them. Addresses only: the resolver cannot
 * itself be found by name. */
static int config_origin_check_resolver(struct config_ctx *cx, const config_setting_t *s,
                                        const char *v)
{
    char host[CW_CONFIG_HOST_MAX], q[CW_CONFIG_QUOTE_BYTES];
    unsigned char a[16];
    size_t items = 0;

    for (const char *p = v; items < CW_LIMIT_ORIGIN_SERVERS; items++) {
        size_t n = strcspn(p, ",");
        int port;
        bool ok = n > 0 && cw_config_split(p, n, false, host, sizeof(host), &port) == 0 &&
                  (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1);
        if (!ok && n > 0 && n < sizeof(host)) {
            memcpy(host, p, n); /* a bare IPv6 address, without brackets or port */
            host[n] = '\0';
            ok = inet_pton(AF_INET6, host, a) == 1;
        }
        if (!ok) {
            return cw_config_fail(cx, s,
                                  "\"%s\" is not a list of DNS server addresses "
                                  "(\"ip[:port],...\")",
                                  cw_config_quote(v, q, sizeof(q)));
        }
        p += n;
        if (*p == '\0') return 0;
        p++; /* the comma: another item follows */
    }
    return cw_config_fail(cx, s, "more than %d DNS servers", CW_LIMIT_ORIGIN_SERVERS);
}

static int config_origin_resolver(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    int rc = cw_config_take_str(cx, s, &o->resolver, true);

    if (rc < 0 || o->resolver == NULL) return rc;
    return config_origin_check_resolver(cx, s, o->resolver);
}

int cw_config_resolver(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    int rc = cw_config_take_str(cx, s, &cfg->resolver, true);

    if (rc < 0 || cfg->resolver == NULL) return rc;
    return config_origin_check_resolver(cx, s, cfg->resolver);
}

const char *cw_config_origin_resolver(const struct cw_config *cfg, const struct cw_config_origin *o)
{
    return o->resolver != NULL ? o->resolver : cfg->resolver;
}

/* A file the workers read (CA bundle, client certificate, key): its line is kept so that the
 * load can say where it was set when the file cannot be read (workers/config_file.c). */
static int config_origin_file(struct config_ctx *cx, const config_setting_t *s, char **dst,
                              int *line)
{
    int rc = cw_config_take_str(cx, s, dst, true);

    if (rc == 0) *line = (int)config_setting_source_line(s);
    return rc;
}

static int config_origin_ca_file(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    return config_origin_file(cx, s, &o->ca_file, &o->ca_file_line);
}

static int config_origin_tls_cert(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    return config_origin_file(cx, s, &o->tls_cert, &o->tls_cert_line);
}

static int config_origin_tls_key(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    return config_origin_file(cx, s, &o->tls_key, &o->tls_key_line);
}

/* sni: a DNS name (RFC 6066 §3 sends no IP literal), lower-cased. */
static int config_origin_sni(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    char q[CW_CONFIG_QUOTE_BYTES];
    bool alpha = false;
    int rc = cw_config_take_str(cx, s, &o->sni, true);

    if (rc < 0 || o->sni == NULL) return rc;
    for (const char *p = o->sni; *p != '\0'; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '-' || *p == '.';
        if (!ok || p - o->sni >= CW_LIMIT_HOST_BYTES) goto out_bad;
        alpha = alpha || (*p != '.' && (*p < '0' || *p > '9'));
    }
    if (!alpha) goto out_bad;
    cw_config_lower(o->sni);
    return 0;
out_bad:
    return cw_config_fail(cx, s, "\"%s\" is not a DNS name", cw_config_quote(o->sni, q, sizeof(q)));
}

/* host: "name[:port]", sent as the Host field. */
static int config_origin_host(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_origin *o = base;
    char host[CW_CONFIG_HOST_MAX], q[CW_CONFIG_QUOTE_BYTES];
    int port, rc = cw_config_take_str(cx, s, &o->host, true);

    if (rc < 0 || o->host == NULL) return rc;
    if (strpbrk(o->host, "/?#@ \t\r\n") != NULL ||
        cw_config_split(o->host, strlen(o->host), false, host, sizeof(host), &port) < 0 ||
        host[0] == '\0')
        return cw_config_fail(cx, s, "\"%s\" is not a host[:port]",
                              cw_config_quote(o->host, q, sizeof(q)));
    return 0;
}

static const struct config_opt config_origin_health_opts[] = {
    CONFIG_FN("path", config_origin_health_path),
    CONFIG_OPT("interval", CW_CONFIG_KIND_MS, CW_ORI, health.interval_ms, 100, 0),
    CONFIG_OPT("timeout", CW_CONFIG_KIND_MS, CW_ORI, health.timeout_ms, 1, 0),
    CONFIG_OPT("expect", CW_CONFIG_KIND_INT, CW_ORI, health.expect, 100, 599),
    CONFIG_OPT("rise", CW_CONFIG_KIND_INT, CW_ORI, health.rise, 1, 100),
    CONFIG_OPT("fall", CW_CONFIG_KIND_INT, CW_ORI, health.fall, 1, 100),
};

static const struct config_opt config_origin_breaker_opts[] = {
    CONFIG_OPT("failures", CW_CONFIG_KIND_INT, CW_ORI, breaker_failures, 1, 10000),
    CONFIG_OPT("window", CW_CONFIG_KIND_MS, CW_ORI, breaker_window_ms, 1, 0),
    CONFIG_OPT("cooldown", CW_CONFIG_KIND_MS, CW_ORI, breaker_cooldown_ms, 1, 0),
    CONFIG_OPT("max_stale", CW_CONFIG_KIND_MS, CW_ORI, breaker_max_stale_ms, 0, 0),
};

static const struct config_opt config_origin_opts[] = {
    CONFIG_FN("name", config_origin_name),
    CONFIG_FN("url", config_origin_url),
    CONFIG_FN("servers", config_origin_servers),
    CONFIG_FN("balance", config_origin_balance),
    CONFIG_OPT("connect_timeout", CW_CONFIG_KIND_MS, CW_ORI, connect_timeout_ms, 1, 0),
    CONFIG_OPT("timeout", CW_CONFIG_KIND_MS, CW_ORI, timeout_ms, 1, 0),
    CONFIG_OPT("max_conns", CW_CONFIG_KIND_INT, CW_ORI, max_conns, 1, CW_LIMIT_PENDING_FETCHES),
    CONFIG_OPT("max_fails", CW_CONFIG_KIND_INT, CW_ORI, max_fails, 1, 1000),
    CONFIG_OPT("fail_timeout", CW_CONFIG_KIND_MS, CW_ORI, fail_timeout_ms, 1, 0),
    CONFIG_OPT("fail_max", CW_CONFIG_KIND_MS, CW_ORI, fail_max_ms, 1, 0),
    CONFIG_OPT("retry", CW_CONFIG_KIND_BOOL, CW_ORI, retry, 0, 0),
    CONFIG_OPT("retry_budget", CW_CONFIG_KIND_INT, CW_ORI, retry_budget_pct, 0, 100),
    CONFIG_GROUP("breaker", config_origin_breaker_opts),
    CONFIG_GROUP("health", config_origin_health_opts),
    CONFIG_OPT("tls_verify", CW_CONFIG_KIND_BOOL, CW_ORI, tls_verify, 0, 0),
    CONFIG_FN("ca_file", config_origin_ca_file),
    CONFIG_OPT("resolve", CW_CONFIG_KIND_MS, CW_ORI, resolve_ms, 1000, 0),
    CONFIG_FN("srv", config_origin_srv),
    CONFIG_FN("resolver", config_origin_resolver),
    CONFIG_OPT("resolve_min", CW_CONFIG_KIND_MS, CW_ORI, resolve_min_ms, 100, 0),
    CONFIG_OPT("resolve_max", CW_CONFIG_KIND_MS, CW_ORI, resolve_max_ms, 100, 0),
    CONFIG_FN("tls_cert", config_origin_tls_cert),
    CONFIG_FN("tls_key", config_origin_tls_key),
    CONFIG_FN("sni", config_origin_sni),
    CONFIG_FN("host", config_origin_host),
    CONFIG_OPT("first_byte_timeout", CW_CONFIG_KIND_MS, CW_ORI, first_byte_timeout_ms, 1, 0),
    CONFIG_OPT("total_timeout", CW_CONFIG_KIND_MS, CW_ORI, total_timeout_ms, 1, 0),
    CONFIG_OPT("idle_timeout", CW_CONFIG_KIND_MS, CW_ORI, idle_timeout_ms, 1000, 0),
    CONFIG_OPT("queue", CW_CONFIG_KIND_INT, CW_ORI, queue, 0, CW_LIMIT_PENDING_FETCHES),
    CONFIG_OPT("queue_timeout", CW_CONFIG_KIND_MS, CW_ORI, queue_timeout_ms, 1, 0),
};

static void config_origin_defaults(struct cw_config_origin *o)
{
    o->connect_timeout_ms = 1000;
    o->timeout_ms = 10000;
    o->max_conns = 64;
    o->balance = CW_POOL_ROUND_ROBIN;
    o->max_fails = 3;
    o->fail_timeout_ms = 10000;
    o->fail_max_ms = 60000;
    o->retry = true;
    o->retry_budget_pct = 20;
    o->breaker_failures = 5;
    o->breaker_window_ms = 10000;
    o->breaker_cooldown_ms = 5000;
    o->health.interval_ms = 5000;
    o->health.timeout_ms = 1000;
    o->health.expect = 200;
    o->health.rise = 2;
    o->health.fall = 3;
    o->tls_verify = true;
    o->resolve_ms = 30000;
    o->resolve_min_ms = 1000;
    o->idle_timeout_ms = 60000;
    o->queue = 1024;
}

/* url and servers: either or both; the one missing is made from the other. */
static int config_origin_finish(struct config_ctx *cx, const config_setting_t *e,
                                struct cw_config_origin *o)
{
    if (o->name == NULL) return cw_config_fail_missing(cx, e, "name");
    if (o->url == NULL && o->servers == NULL) return cw_config_fail_missing(cx, e, "url");
    /* srv replaces the server list: the url gives the scheme, Host, SNI and path prefix. */
    if (o->srv != NULL && o->servers != NULL) {
        return cw_config_fail(cx, config_setting_get_member(e, "servers"),
                              "an origin with srv takes its servers from DNS: drop one");
    }
    if (o->srv != NULL && o->url == NULL) return cw_config_fail_missing(cx, e, "url");
    if (o->url == NULL && (o->url = strdup(o->servers[0].base)) == NULL) return cw_config_oom(cx);
    if (o->servers == NULL) {
        if ((o->servers = calloc(1, sizeof(*o->servers))) == NULL) return cw_config_oom(cx);
        o->server_count = 1;
        o->servers[0].weight = 1;
        o->servers[0].base = strndup(o->url, config_origin_base_len(o->url));
        if (o->servers[0].base == NULL) return cw_config_oom(cx);
    }
    if (o->fail_max_ms < o->fail_timeout_ms) o->fail_max_ms = o->fail_timeout_ms;
    if (o->resolve_max_ms == 0) {
        o->resolve_max_ms = o->resolve_ms > o->resolve_min_ms ? o->resolve_ms : o->resolve_min_ms;
    } else if (o->resolve_min_ms > o->resolve_max_ms) {
        const config_setting_t *m = config_setting_get_member(e, "resolve_min");
        if (m != NULL) return cw_config_fail(cx, m, "longer than resolve_max");
        o->resolve_min_ms = o->resolve_max_ms; /* the default bends to a short maximum */
    }
    if (o->tls_key != NULL && o->tls_cert == NULL) {
        const config_setting_t *k = config_setting_get_member(e, "tls_key");
        return cw_config_fail(cx, k ? k : e, "needs tls_cert (the certificate it goes with)");
    }
    return 0;
}

int cw_config_origins(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    int n = config_setting_length(s);

    if (!config_setting_is_list(s) && !config_setting_is_array(s)) {
        return cw_config_want(cx, s, CONFIG_TYPE_LIST, "a list ( { ... }, ... )");
    }
    if (n == 0) return cw_config_fail(cx, s, "must not be empty");
    if (n > CW_LIMIT_ORIGINS) {
        return cw_config_fail(cx, config_setting_get_elem(s, CW_LIMIT_ORIGINS),
                              "more than %d entries", CW_LIMIT_ORIGINS);
    }
    if ((cfg->origins = calloc((size_t)n, sizeof(*cfg->origins))) == NULL) return cw_config_oom(cx);
    cfg->origin_count = (size_t)n;
    for (size_t i = 0; i < cfg->origin_count; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        struct cw_config_origin *o = &cfg->origins[i];
        config_origin_defaults(o);
        int rc = cw_config_walk(cx, e, config_origin_opts, CW_ARRAY_LEN(config_origin_opts), o);
        if (rc < 0) return rc;
        rc = config_origin_finish(cx, e, o);
        if (rc < 0) return rc;
    }
    return 0;
}
