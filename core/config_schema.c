/* core/config_schema.c - the config module's schema: every allowed setting, its kind and
 * its checks, as tables walked by cw_config_walk(); see core/config.h. Also the defaults,
 * the origin and route lists, and the checks that span settings. */
#include "core/config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "core/config_int.h"

/* A list (or array) of at most max non-empty strings, each accepted by is_ok. */
static int config_take_strlist(struct config_ctx *cx, const config_setting_t *s, size_t max,
                               bool (*is_ok)(const char *), bool lower, const char *what,
                               char ***dst, size_t *count)
{
    int n = config_setting_length(s);
    char q[CW_CONFIG_QUOTE_BYTES];

    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        return cw_config_want(cx, s, CONFIG_TYPE_ARRAY, "a list [ \"...\", ... ]");
    }
    if ((size_t)n > max) return cw_config_fail(cx, s, "more than %zu entries", max);
    *dst = calloc((size_t)n + 1, sizeof(char *));
    if (*dst == NULL) return cw_config_oom(cx);
    for (*count = 0; *count < (size_t)n; (*count)++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)*count);
        const char *v;
        if (cw_config_want(cx, e, CONFIG_TYPE_STRING, "a string") < 0) return -EINVAL;
        v = config_setting_get_string(e);
        if (!is_ok(v)) {
            return cw_config_fail(cx, e, "\"%s\" is not %s", cw_config_quote(v, q, sizeof(q)),
                                  what);
        }
        if (((*dst)[*count] = strdup(v)) == NULL) return cw_config_oom(cx);
        if (lower) cw_config_lower((*dst)[*count]);
    }
    return 0;
}

/* ---- the schema: handlers for settings that need more than a kind, then the tables ---- */

static int config_take_hostport(struct config_ctx *cx, const config_setting_t *s, char **dst,
                                bool optional)
{
    char host[CW_CONFIG_HOST_MAX], q[CW_CONFIG_QUOTE_BYTES];
    const char *v;
    int port, rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string \"host:port\"");

    if (rc < 0) return rc;
    v = config_setting_get_string(s);
    if (v[0] == '\0' && optional) return cw_config_replace(cx, dst, NULL);
    if (cw_config_split_hostport(v, host, sizeof(host), &port) < 0) {
        return cw_config_fail(cx, s, "\"%s\" is not host:port (port 1..65535; IPv6 as [::1]:port)",
                              cw_config_quote(v, q, sizeof(q)));
    }
    return cw_config_replace(cx, dst, v);
}

static int config_top_listen(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    return config_take_hostport(cx, s, &((struct cw_config *)base)->listen, false);
}

static int config_stats_listen(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    return config_take_hostport(cx, s, &((struct cw_config *)base)->stats_listen, true);
}

static int config_log_level(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    char q[CW_CONFIG_QUOTE_BYTES];
    int rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string");

    if (rc < 0) return rc;
    if (cw_log_level_parse(config_setting_get_string(s), &cfg->log_level) == 0) return 0;
    return cw_config_fail(cx, s, "\"%s\" is not a level (err, warn, notice, info, debug)",
                          cw_config_quote(config_setting_get_string(s), q, sizeof(q)));
}

static int config_log_format(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    /* In the order of enum cw_config_log_format. */
    static const char *const names[] = {"combined", "json"};
    struct cw_config *cfg = base;
    int i,
        rc = cw_config_take_enum(cx, s, names, CW_ARRAY_LEN(names), "\"combined\" or \"json\"", &i);

    if (rc == 0) cfg->log_format = (enum cw_config_log_format)i;
    return rc;
}

static int config_control_socket(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path);
    int rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string");

    if (rc < 0) return rc;
    if (strlen(config_setting_get_string(s)) >= max) {
        return cw_config_fail(cx, s, "longer than %zu bytes, the unix socket path limit", max - 1);
    }
    return cw_config_take_str(cx, s, &cfg->control_socket, false);
}

/* A list of at most max address ranges into *dst (replacing what it held) and *count. */
static int config_take_cidrs(struct config_ctx *cx, const config_setting_t *s, int max,
                             struct cw_config_cidr **dst, size_t *count)
{
    struct cw_config_cidr *v;
    int n = config_setting_length(s);
    char q[CW_CONFIG_QUOTE_BYTES];

    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        return cw_config_want(cx, s, CONFIG_TYPE_ARRAY, "a list [ \"10.0.0.0/8\", ... ]");
    }
    if (n > max) return cw_config_fail(cx, s, "more than %d entries", max);
    if ((v = calloc((size_t)n + 1, sizeof(*v))) == NULL) return cw_config_oom(cx);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (cw_config_want(cx, e, CONFIG_TYPE_STRING, "a string") < 0) goto out_free;
        if (cw_config_parse_cidr(config_setting_get_string(e), &v[i]) < 0) {
            cw_config_fail(cx, e, "\"%s\" is not an address or range (no host bits past /len)",
                           cw_config_quote(config_setting_get_string(e), q, sizeof(q)));
            goto out_free;
        }
    }
    free(*dst);
    *dst = v;
    *count = (size_t)n;
    return 0;
out_free:
    free(v);
    return -EINVAL;
}

static int config_purge_allow(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;

    return config_take_cidrs(cx, s, CW_LIMIT_PURGE_ALLOW, &cfg->purge_allow,
                             &cfg->purge_allow_count);
}

static int config_route_match(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_route *r = base;
    int rc = cw_config_take_str(cx, s, &r->match, false);

    if (rc < 0) return rc;
    r->match_len = strlen(r->match);
    if (r->match[0] != '/') return cw_config_fail(cx, s, "must start with '/'");
    if (r->match_len > CW_LIMIT_URL_BYTES) {
        return cw_config_fail(cx, s, "longer than %d bytes", CW_LIMIT_URL_BYTES);
    }
    for (size_t i = 0; i < r->match_len; i++) {
        if ((unsigned char)r->match[i] <= 0x20 || r->match[i] == 0x7f) {
            return cw_config_fail(cx, s, "must not contain spaces or control bytes");
        }
    }
    return 0;
}

/* route.host: a name, an IPv4 address or [IPv6], lower-cased, without a port. "" = any. */
static int config_route_host(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_route *r = base;
    char host[CW_CONFIG_HOST_MAX], q[CW_CONFIG_QUOTE_BYTES];
    int port, rc = cw_config_take_str(cx, s, &r->host, true);

    if (rc < 0 || r->host == NULL) return rc;
    cw_config_lower(r->host);
    r->host_len = strlen(r->host);
    if (r->host_len > 1 && r->host[r->host_len - 1] == '.') r->host[--r->host_len] = '\0';
    if (r->host_len > CW_LIMIT_HOST_BYTES) {
        return cw_config_fail(cx, s, "longer than %d bytes", CW_LIMIT_HOST_BYTES);
    }
    if (cw_config_split(r->host, r->host_len, false, host, sizeof(host), &port) < 0 ||
        host[0] == '\0') {
        return cw_config_fail(cx, s, "\"%s\" is not a host name",
                              cw_config_quote(r->host, q, sizeof(q)));
    }
    if (port != 0) {
        return cw_config_fail(cx, s, "must not have a port (Host is matched without it)");
    }
    return 0;
}

static int config_route_origin(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_route *r = base;
    const char *v;
    char q[CW_CONFIG_QUOTE_BYTES];
    int rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string (an origin's name)");

    if (rc < 0) return rc;
    v = config_setting_get_string(s);
    for (size_t i = 0; i < cx->cfg->origin_count; i++) {
        if (strcmp(cx->cfg->origins[i].name, v) == 0) {
            r->origin = (int)i;
            return 0;
        }
    }
    return cw_config_fail(cx, s, "\"%s\" is not a defined origin",
                          cw_config_quote(v, q, sizeof(q)));
}

static int config_get_number(struct config_ctx *cx, const config_setting_t *s, double *v)
{
    int64_t i = 0;
    int rc;

    if (config_setting_type(s) == CONFIG_TYPE_FLOAT) {
        *v = config_setting_get_float(s);
        return 0;
    }
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        return cw_config_want(cx, s, CONFIG_TYPE_FLOAT, "a number");
    }
    rc = cw_config_get_int64(cx, s, &i);
    *v = (double)i;
    return rc;
}

static int config_route_refresh_ahead(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_route *r = base;
    int rc = config_get_number(cx, s, &r->refresh_ahead);

    if (rc < 0) return rc;
    if (!(r->refresh_ahead >= 0.0 && r->refresh_ahead < 1.0)) {
        return cw_config_fail(cx, s, "%g is not in [0, 1)", r->refresh_ahead);
    }
    return 0;
}

static int config_route_stale_target(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_route *r = base;
    int rc = config_get_number(cx, s, &r->stale_target);

    if (rc < 0) return rc;
    if (!(r->stale_target > 0.0 && r->stale_target < 1.0)) {
        return cw_config_fail(cx, s, "%g is not in (0, 1)", r->stale_target);
    }
    return 0;
}

/* RFC 9110 §5.1: a field name is a token. */
static bool config_is_header_name(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (!cw_is_tchar((unsigned char)s[n])) return false;
    }
    return n > 0 && n <= CW_LIMIT_HEADER_NAME_BYTES;
}

/* RFC 9213 §2.2: a targeted field replaces Cache-Control, so Cache-Control cannot be one. */
static bool config_is_target_name(const char *s)
{
    return config_is_header_name(s) && strcasecmp(s, "Cache-Control") != 0;
}

/* cache.targeted_cache_control: the RFC 9213 target list, replacing the default; [] = none. */
static int config_cache_targeted(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    char q[CW_CONFIG_QUOTE_BYTES];
    int rc;

    for (size_t i = 0; i < cfg->cache_targeted_cc_count; i++)
        free(cfg->cache_targeted_cc[i]);
    free(cfg->cache_targeted_cc);
    cfg->cache_targeted_cc = NULL;
    cfg->cache_targeted_cc_count = 0;
    rc = config_take_strlist(cx, s, CW_LIMIT_TARGETED_FIELDS, config_is_target_name, false,
                             "a header name other than Cache-Control", &cfg->cache_targeted_cc,
                             &cfg->cache_targeted_cc_count);
    if (rc < 0) return rc;
    for (size_t i = 1; i < cfg->cache_targeted_cc_count; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcasecmp(cfg->cache_targeted_cc[i], cfg->cache_targeted_cc[j]) != 0) continue;
            return cw_config_fail(cx, config_setting_get_elem(s, (unsigned)i),
                                  "\"%s\" is already in the list",
                                  cw_config_quote(cfg->cache_targeted_cc[i], q, sizeof(q)));
        }
    }
    return 0;
}

static bool config_is_query_name(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if ((unsigned char)s[n] <= 0x20 || s[n] == 0x7f || strchr("&=#", s[n]) != NULL) {
            return false;
        }
    }
    return n > 0;
}

static int config_route_key_headers(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_route *r = base;

    return config_take_strlist(cx, s, CW_LIMIT_VARY_FIELDS, config_is_header_name, true,
                               "a header name", &r->key_headers, &r->key_headers_count);
}

static int config_route_strip_headers(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config_route *r = base;

    return config_take_strlist(cx, s, CW_LIMIT_STRIP_HEADERS, config_is_header_name, true,
                               "a header name", &r->strip_headers, &r->strip_headers_count);
}

static int config_route_trust_forwarded(struct config_ctx *cx, const config_setting_t *s,
                                        void *base)
{
    struct cw_config_route *r = base;

    return config_take_cidrs(cx, s, CW_LIMIT_TRUST_FORWARDED, &r->trust_forwarded,
                             &r->trust_forwarded_count);
}

static int config_route_cookies(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    /* In the order of enum cw_config_cookies. */
    static const char *const names[] = {"pass", "ignore", "key"};
    struct cw_config_route *r = base;
    int i, rc = cw_config_take_enum(cx, s, names, CW_ARRAY_LEN(names),
                                    "\"pass\", \"ignore\" or \"key\"", &i);

    if (rc == 0) r->cookies = (enum cw_config_cookies)i;
    return rc;
}

static int config_route_query(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    static const char *const names[] = {"keep", "sort", "ignore"};
    struct cw_config_route *r = base;
    int i, rc;

    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        if (config_setting_length(s) == 0 && config_setting_is_aggregate(s)) {
            return cw_config_fail(cx, s, "an empty list keeps nothing; say \"ignore\"");
        }
        r->query = CW_CONFIG_QUERY_LIST;
        return config_take_strlist(cx, s, CW_LIMIT_QUERY_KEEP, config_is_query_name, false,
                                   "a parameter name", &r->query_keep, &r->query_keep_count);
    }
    rc = cw_config_take_enum(cx, s, names, CW_ARRAY_LEN(names),
                             "\"keep\", \"sort\", \"ignore\" or a list of names", &i);
    if (rc == 0) r->query = (enum cw_config_query)i;
    return rc;
}

static int config_top_routes(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    (void)base;
    cx->routes = s; /* parsed in cw_config_schema_finish(), once every origin is known */
    return 0;
}

#define CW_CFG struct cw_config
#define CW_RTE struct cw_config_route

static const struct config_opt config_log_opts[] = {
    CONFIG_FN("level", config_log_level),
    CONFIG_OPT("access", CW_CONFIG_KIND_STR_OPT, CW_CFG, log_access, 0, 0),
    CONFIG_FN("format", config_log_format),
};

static const struct config_opt config_cache_opts[] = {
    CONFIG_OPT("path", CW_CONFIG_KIND_STR, CW_CFG, cache_path, 0, 0),
    CONFIG_OPT("size", CW_CONFIG_KIND_SIZE, CW_CFG, cache_size_bytes, CW_CONFIG_MIB, 0),
    CONFIG_OPT("max_object", CW_CONFIG_KIND_SIZE, CW_CFG, cache_max_object_bytes, 1, 0),
    CONFIG_FN("targeted_cache_control", config_cache_targeted),
};

static const struct config_opt config_stats_opts[] = {
    CONFIG_FN("listen", config_stats_listen),
    CONFIG_OPT("textfile", CW_CONFIG_KIND_STR_OPT, CW_CFG, stats_textfile, 0, 0),
    CONFIG_OPT("interval", CW_CONFIG_KIND_MS, CW_CFG, stats_interval_ms, 1, 0),
};

static const struct config_opt config_control_opts[] = {
    CONFIG_FN("socket", config_control_socket),
    CONFIG_OPT("group", CW_CONFIG_KIND_STR_OPT, CW_CFG, control_group, 0, 0),
};

static const struct config_opt config_purge_opts[] = {
    CONFIG_FN("allow", config_purge_allow),
};

/* user and group: names here; workers/config_file.c looks them up, with these lines. */
static int config_top_user(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    int rc = cw_config_take_str(cx, s, &cfg->user, true);

    if (rc == 0) cfg->user_line = (int)config_setting_source_line(s);
    return rc;
}

static int config_top_group(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    int rc = cw_config_take_str(cx, s, &cfg->group, true);

    if (rc == 0) cfg->group_line = (int)config_setting_source_line(s);
    return rc;
}

static const struct config_opt config_top_opts[] = {
    CONFIG_FN("listen", config_top_listen),
    CONFIG_OPT("workers", CW_CONFIG_KIND_INT, CW_CFG, workers, 0, CW_LIMIT_WORKERS),
    CONFIG_OPT("shutdown_grace", CW_CONFIG_KIND_MS, CW_CFG, shutdown_grace_ms, 0, 0),
    CONFIG_OPT("client_header_timeout", CW_CONFIG_KIND_MS, CW_CFG, client_header_timeout_ms, 1, 0),
    CONFIG_OPT("client_body_timeout", CW_CONFIG_KIND_MS, CW_CFG, client_body_timeout_ms, 1, 0),
    CONFIG_GROUP("log", config_log_opts),
    CONFIG_GROUP("cache", config_cache_opts),
    CONFIG_FN("redis", cw_config_redis),
    CONFIG_FN("origins", cw_config_origins),
    CONFIG_FN("routes", config_top_routes),
    CONFIG_GROUP("stats", config_stats_opts),
    CONFIG_GROUP("control", config_control_opts),
    CONFIG_GROUP("purge", config_purge_opts),
    CONFIG_FN("resolver", cw_config_resolver),
    CONFIG_FN("user", config_top_user),
    CONFIG_FN("group", config_top_group),
};

static const struct config_opt config_route_opts[] = {
    CONFIG_FN("match", config_route_match),
    CONFIG_FN("host", config_route_host),
    CONFIG_FN("origin", config_route_origin),
    CONFIG_OPT("ttl", CW_CONFIG_KIND_MS, CW_RTE, ttl_ms, 0, 0),
    CONFIG_OPT("swr", CW_CONFIG_KIND_MS, CW_RTE, swr_ms, 0, 0),
    CONFIG_OPT("sie", CW_CONFIG_KIND_MS, CW_RTE, sie_ms, 0, 0),
    CONFIG_OPT("adaptive", CW_CONFIG_KIND_BOOL, CW_RTE, adaptive, 0, 0),
    CONFIG_OPT("override", CW_CONFIG_KIND_BOOL, CW_RTE, override, 0, 0),
    CONFIG_OPT("min_ttl", CW_CONFIG_KIND_MS, CW_RTE, min_ttl_ms, 0, 0),
    CONFIG_OPT("max_ttl", CW_CONFIG_KIND_MS, CW_RTE, max_ttl_ms, 0, 0),
    CONFIG_OPT("lock_timeout", CW_CONFIG_KIND_MS, CW_RTE, lock_timeout_ms, 1, 0),
    CONFIG_FN("refresh_ahead", config_route_refresh_ahead),
    CONFIG_FN("stale_target", config_route_stale_target),
    CONFIG_OPT("ignore_client_no_cache", CW_CONFIG_KIND_BOOL, CW_RTE, ignore_client_no_cache, 0, 0),
    CONFIG_OPT("strip_set_cookie", CW_CONFIG_KIND_BOOL, CW_RTE, strip_set_cookie, 0, 0),
    CONFIG_FN("query", config_route_query),
    CONFIG_FN("key_headers", config_route_key_headers),
    CONFIG_FN("strip_headers", config_route_strip_headers),
    CONFIG_FN("trust_forwarded", config_route_trust_forwarded),
    CONFIG_FN("cookies", config_route_cookies),
};

/* Checks that s is a list of 1..limit groups and allocates n zeroed elements of size. */
static int config_alloc_list(struct config_ctx *cx, const config_setting_t *s, int limit,
                             size_t size, void **out, size_t *count)
{
    int n = config_setting_length(s);

    if (!config_setting_is_list(s) && !config_setting_is_array(s)) {
        return cw_config_want(cx, s, CONFIG_TYPE_LIST, "a list ( { ... }, ... )");
    }
    if (n == 0) return cw_config_fail(cx, s, "must not be empty");
    if (n > limit) {
        return cw_config_fail(cx, config_setting_get_elem(s, (unsigned)limit),
                              "more than %d entries", limit);
    }
    if ((*out = calloc((size_t)n, size)) == NULL) return cw_config_oom(cx);
    *count = (size_t)n;
    return 0;
}

static void config_route_defaults(struct cw_config_route *r)
{
    r->origin = -1;
    r->ttl_ms = 60000;
    r->min_ttl_ms = 1000;
    r->max_ttl_ms = 600000;
    r->lock_timeout_ms = 5000;
    r->refresh_ahead = 0.1;
    r->stale_target = 0.05;
    r->query = CW_CONFIG_QUERY_KEEP;
    r->cookies = CW_CONFIG_COOKIES_PASS;
}

static int config_parse_route(struct config_ctx *cx, const config_setting_t *e,
                              struct cw_config_route *r)
{
    const config_setting_t *at;
    int rc;

    config_route_defaults(r);
    rc = cw_config_walk(cx, e, config_route_opts, CW_ARRAY_LEN(config_route_opts), r);
    if (rc < 0) return rc;
    if (r->match == NULL) return cw_config_fail_missing(cx, e, "match");
    if (r->origin < 0) return cw_config_fail_missing(cx, e, "origin");
    if (r->min_ttl_ms > r->max_ttl_ms) {
        at = config_setting_get_member(e, "min_ttl");
        return cw_config_fail(cx, at ? at : e, "min_ttl %lld ms is greater than max_ttl %lld ms",
                              (long long)r->min_ttl_ms, (long long)r->max_ttl_ms);
    }
    return 0;
}

/* Routes, or the default route { match = "/"; origin = <first origin> } when none. */
static int config_parse_routes(struct config_ctx *cx)
{
    struct cw_config *cfg = cx->cfg;
    void *v;
    int rc;

    if (cx->routes == NULL ||
        ((config_setting_is_list(cx->routes) || config_setting_is_array(cx->routes)) &&
         config_setting_length(cx->routes) == 0)) {
        if ((cfg->routes = calloc(1, sizeof(*cfg->routes))) == NULL) return cw_config_oom(cx);
        cfg->route_count = 1;
        config_route_defaults(&cfg->routes[0]);
        cfg->routes[0].origin = 0;
        cfg->routes[0].match_len = 1;
        return cw_config_replace(cx, &cfg->routes[0].match, "/");
    }
    rc = config_alloc_list(cx, cx->routes, CW_LIMIT_ROUTES, sizeof(*cfg->routes), &v,
                           &cfg->route_count);
    if (rc < 0) return rc;
    cfg->routes = v;
    for (size_t i = 0; i < cfg->route_count; i++) {
        rc = config_parse_route(cx, config_setting_get_elem(cx->routes, (unsigned)i),
                                &cfg->routes[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Checks that span settings, once every group is read. */
static int config_finish(struct config_ctx *cx)
{
    struct cw_config *cfg = cx->cfg;
    const config_setting_t *at;

    if (cfg->origin_count == 0) return cw_config_fail_missing(cx, cx->root, "origins");
    if (cfg->cache_max_object_bytes > cfg->cache_size_bytes) {
        at = config_setting_lookup((config_setting_t *)cx->root, "cache.max_object");
        if (at == NULL) at = config_setting_lookup((config_setting_t *)cx->root, "cache.size");
        return cw_config_fail(cx, at, "max_object (%llu bytes) is larger than size (%llu bytes)",
                              (unsigned long long)cfg->cache_max_object_bytes,
                              (unsigned long long)cfg->cache_size_bytes);
    }
    return config_parse_routes(cx);
}

int cw_config_schema_apply(struct config_ctx *cx)
{
    int rc = cw_config_walk(cx, cx->root, config_top_opts, CW_ARRAY_LEN(config_top_opts), cx->cfg);

    if (rc < 0) return rc;
    return config_finish(cx);
}

int cw_config_schema_defaults(struct config_ctx *cx)
{
    struct cw_config *cfg = cx->cfg;

    cfg->workers = 2;
    cfg->log_level = CW_LOG_INFO;
    cfg->log_format = CW_CONFIG_LOG_COMBINED;
    cfg->shutdown_grace_ms = 10000;
    cfg->client_header_timeout_ms = 60000;
    cfg->client_body_timeout_ms = 60000;
    cfg->cache_size_bytes = 1024ULL * CW_CONFIG_MIB;
    cfg->cache_max_object_bytes = 8ULL * CW_CONFIG_MIB;
    cfg->redis_enabled = true;
    cfg->redis_port = 6379;
    cfg->redis_timeout_ms = 20;
    cfg->redis_connect_timeout_ms = 250;
    cfg->stats_interval_ms = 15000;
    cfg->cache_targeted_cc = calloc(3, sizeof(char *));
    if (cfg->cache_targeted_cc == NULL) return cw_config_oom(cx);
    cfg->cache_targeted_cc_count = 2;
    if (cw_config_replace(cx, &cfg->cache_targeted_cc[0], "CacheWarp-Cache-Control") < 0 ||
        cw_config_replace(cx, &cfg->cache_targeted_cc[1], "CDN-Cache-Control") < 0) {
        return -ENOMEM;
    }
    cfg->purge_allow = calloc(2, sizeof(*cfg->purge_allow));
    if (cfg->purge_allow == NULL) return cw_config_oom(cx);
    cfg->purge_allow_count = 2;
    if (cw_config_parse_cidr("127.0.0.1/32", &cfg->purge_allow[0]) < 0 ||
        cw_config_parse_cidr("::1/128", &cfg->purge_allow[1]) < 0) {
        return -EINVAL;
    }
    if (cw_config_replace(cx, &cfg->listen, "127.0.0.1:8080") < 0 ||
        cw_config_replace(cx, &cfg->cache_path, "/var/cache/cachewarp/l1.mdb") < 0 ||
        cw_config_replace(cx, &cfg->redis_host, "127.0.0.1") < 0 ||
        cw_config_replace(cx, &cfg->redis_channel, "cachewarp:purge") < 0 ||
        cw_config_replace(cx, &cfg->redis_prefix, "cw:") < 0 ||
        cw_config_replace(cx, &cfg->redis_master, "mymaster") < 0 ||
        cw_config_replace(cx, &cfg->stats_listen, "127.0.0.1:9145") < 0 ||
        cw_config_replace(cx, &cfg->control_socket, "/run/cachewarp/control.sock") < 0) {
        return -ENOMEM;
    }
    return 0;
}
