/* core/config_redis.c - the config module's redis { } group: the L2's settings (DESIGN.md
 * "L2: Redis"), their values and the checks between them (a mode needs its addresses, one
 * password source at most, no SELECT on a cluster); see core/config.h. */
#include "core/config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "core/config_int.h"

static int config_redis_mode(struct config_ctx *cx, const config_setting_t *s, void *base);
static int config_redis_sentinels(struct config_ctx *cx, const config_setting_t *s, void *base);
static int config_redis_nodes(struct config_ctx *cx, const config_setting_t *s, void *base);
static int config_redis_socket(struct config_ctx *cx, const config_setting_t *s, void *base);
static int config_redis_prefix(struct config_ctx *cx, const config_setting_t *s, void *base);
static int config_redis_password_env(struct config_ctx *cx, const config_setting_t *s, void *base);

#define CW_CFG struct cw_config

static const struct config_opt config_redis_opts[] = {
    CONFIG_OPT("enabled", CW_CONFIG_KIND_BOOL, CW_CFG, redis_enabled, 0, 0),
    CONFIG_FN("mode", config_redis_mode),
    CONFIG_OPT("host", CW_CONFIG_KIND_STR, CW_CFG, redis_host, 0, 0),
    CONFIG_OPT("port", CW_CONFIG_KIND_INT, CW_CFG, redis_port, 1, 65535),
    CONFIG_FN("socket", config_redis_socket),
    CONFIG_FN("sentinels", config_redis_sentinels),
    CONFIG_OPT("master", CW_CONFIG_KIND_STR, CW_CFG, redis_master, 0, 0),
    CONFIG_FN("nodes", config_redis_nodes),
    CONFIG_OPT("user", CW_CONFIG_KIND_STR_OPT, CW_CFG, redis_user, 0, 0),
    CONFIG_OPT("password", CW_CONFIG_KIND_STR_OPT, CW_CFG, redis_password, 0, 0),
    CONFIG_OPT("password_file", CW_CONFIG_KIND_STR_OPT, CW_CFG, redis_password_file, 0, 0),
    CONFIG_FN("password_env", config_redis_password_env),
    CONFIG_OPT("db", CW_CONFIG_KIND_INT, CW_CFG, redis_db, 0, CW_LIMIT_REDIS_DB),
    CONFIG_FN("prefix", config_redis_prefix),
    CONFIG_OPT("connect_timeout", CW_CONFIG_KIND_MS, CW_CFG, redis_connect_timeout_ms, 1, 0),
    CONFIG_OPT("timeout", CW_CONFIG_KIND_MS, CW_CFG, redis_timeout_ms, 1, 0),
    CONFIG_OPT("channel", CW_CONFIG_KIND_STR, CW_CFG, redis_channel, 0, 0),
};

static int config_redis_mode(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    /* In the order of enum cw_config_redis_mode. */
    static const char *const names[] = {"standalone", "sentinel", "cluster"};
    struct cw_config *cfg = base;
    int i, rc = cw_config_take_enum(cx, s, names, CW_ARRAY_LEN(names),
                                    "\"standalone\", \"sentinel\" or \"cluster\"", &i);

    if (rc == 0) cfg->redis_mode = (enum cw_config_redis_mode)i;
    return rc;
}

/* A list of 1..CW_LIMIT_REDIS_ADDRS "host:port" strings (port required) into *dst. */
static int config_redis_addrs(struct config_ctx *cx, const config_setting_t *s, char ***dst,
                              size_t *count)
{
    char host[CW_CONFIG_HOST_MAX], q[CW_CONFIG_QUOTE_BYTES];
    int n = config_setting_length(s), port;
    char **v;

    if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
        return cw_config_want(cx, s, CONFIG_TYPE_ARRAY, "a list [ \"host:port\", ... ]");
    }
    if (n == 0) return cw_config_fail(cx, s, "must not be empty");
    if (n > CW_LIMIT_REDIS_ADDRS) {
        return cw_config_fail(cx, s, "more than %d entries", CW_LIMIT_REDIS_ADDRS);
    }
    if ((v = calloc((size_t)n + 1, sizeof(char *))) == NULL) return cw_config_oom(cx);
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *a;
        if (cw_config_want(cx, e, CONFIG_TYPE_STRING, "a string \"host:port\"") < 0) goto out_free;
        a = config_setting_get_string(e);
        if (cw_config_split_hostport(a, host, sizeof(host), &port) < 0 || host[0] == '\0') {
            cw_config_fail(cx, e, "\"%s\" is not host:port (port 1..65535; IPv6 as [::1]:port)",
                           cw_config_quote(a, q, sizeof(q)));
            goto out_free;
        }
        if ((v[i] = strdup(a)) == NULL) {
            cw_config_oom(cx);
            goto out_free;
        }
    }
    for (size_t i = 0; *dst != NULL && i < *count; i++) {
        free((*dst)[i]);
    }
    free(*dst);
    *dst = v;
    *count = (size_t)n;
    return 0;
out_free:
    for (int i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
    return -EINVAL;
}

static int config_redis_sentinels(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;

    return config_redis_addrs(cx, s, &cfg->redis_sentinels, &cfg->redis_sentinel_count);
}

static int config_redis_nodes(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;

    return config_redis_addrs(cx, s, &cfg->redis_nodes, &cfg->redis_node_count);
}

static int config_redis_socket(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    size_t max = sizeof(((struct sockaddr_un *)NULL)->sun_path);
    int rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string");

    if (rc < 0) return rc;
    if (strlen(config_setting_get_string(s)) >= max) {
        return cw_config_fail(cx, s, "longer than %zu bytes, the unix socket path limit", max - 1);
    }
    return cw_config_take_str(cx, s, &cfg->redis_socket, true);
}

/* The prefix starts every key name. A brace in it would become the key's hash tag (Redis
 * hashes the first {...}), and every key would land in one cluster slot. */
static int config_redis_prefix(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    int rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string");
    const char *v;

    if (rc < 0) return rc;
    v = config_setting_get_string(s);
    if (strlen(v) > CW_LIMIT_REDIS_PREFIX_BYTES) {
        return cw_config_fail(cx, s, "longer than %d bytes", CW_LIMIT_REDIS_PREFIX_BYTES);
    }
    for (const char *p = v; *p != '\0'; p++) {
        if (*p == '{' || *p == '}') {
            return cw_config_fail(cx, s, "must not contain '{' or '}' (hash tag)");
        }
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            return cw_config_fail(cx, s, "must not contain spaces or control bytes");
        }
    }
    return cw_config_take_str(cx, s, &cfg->redis_prefix, false);
}

static int config_redis_password_env(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    struct cw_config *cfg = base;
    int rc = cw_config_take_str(cx, s, &cfg->redis_password_env, true);

    if (rc < 0 || cfg->redis_password_env == NULL) return rc;
    for (const char *p = cfg->redis_password_env; *p != '\0'; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
              (p > cfg->redis_password_env && *p >= '0' && *p <= '9'))) {
            return cw_config_fail(cx, s, "is not an environment variable name");
        }
    }
    return 0;
}

/* The member name of group, or the group itself when absent: where a message points. */
static const config_setting_t *config_redis_at(const config_setting_t *group, const char *name)
{
    const config_setting_t *at = config_setting_get_member(group, name);

    return at != NULL ? at : group;
}

/* Checks between settings, once the group is read. */
static int config_redis_finish(struct config_ctx *cx, const config_setting_t *s)
{
    struct cw_config *cfg = cx->cfg;
    int sources = (cfg->redis_password != NULL) + (cfg->redis_password_file != NULL) +
                  (cfg->redis_password_env != NULL);

    if (sources > 1) {
        return cw_config_fail(cx, config_redis_at(s, "password_file"),
                              "give one of password, password_file, password_env");
    }
    if (cfg->redis_user != NULL && sources == 0) {
        return cw_config_fail(cx, config_redis_at(s, "user"), "a user needs a password");
    }
    switch (cfg->redis_mode) {
    case CW_CONFIG_REDIS_STANDALONE:
        if (cfg->redis_sentinel_count > 0 || cfg->redis_node_count > 0) {
            return cw_config_fail(cx, config_redis_at(s, "mode"),
                                  "sentinels or nodes given: set mode to \"sentinel\" or "
                                  "\"cluster\"");
        }
        break;
    case CW_CONFIG_REDIS_SENTINEL:
        if (cfg->redis_sentinel_count == 0) return cw_config_fail_missing(cx, s, "sentinels");
        if (cfg->redis_socket != NULL) {
            return cw_config_fail(cx, config_redis_at(s, "socket"), "only in standalone mode");
        }
        break;
    case CW_CONFIG_REDIS_CLUSTER:
        if (cfg->redis_node_count == 0) return cw_config_fail_missing(cx, s, "nodes");
        if (cfg->redis_socket != NULL) {
            return cw_config_fail(cx, config_redis_at(s, "socket"), "only in standalone mode");
        }
        if (cfg->redis_db != 0) {
            return cw_config_fail(cx, config_redis_at(s, "db"), "a cluster has only db 0");
        }
        break;
    }
    return 0;
}

int cw_config_redis(struct config_ctx *cx, const config_setting_t *s, void *base)
{
    int rc = cw_config_walk(cx, s, config_redis_opts, CW_ARRAY_LEN(config_redis_opts), base);

    if (rc < 0) return rc;
    return config_redis_finish(cx, s);
}
