/* core/config.c - see core/config.h. This file: the entry points, the walk over libconfig's
 * tree and the messages; the schema is in config_schema.c, value syntax in config_value.c.
 *
 * The schema is a set of tables (struct config_opt): one per group, naming each allowed
 * setting, its kind and where it lands. cw_config_walk() visits every member of a group and
 * looks its name up, so a setting missing from a table is an "unknown setting" error at
 * every level. Values go into a struct that already holds the defaults; a string replaces
 * its default only once its copy is made, so a failure leaves nothing half-owned.
 *
 * libconfig 1.5 caveat: an integer literal past 32 bits without the L suffix is silently
 * truncated by the library, so large sizes should be written as strings ("8G"). */
#include "core/config.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_int.h"

#define CONFIG_DEPTH 8  /* setting path levels printed in a message */
#define CONFIG_QUOTE 40 /* bytes of a bad value quoted in a message */

/* Writes the dotted path of s ("routes[0].ttl") into buf. Walks at most CONFIG_DEPTH
 * parents; the schema never nests deeper than three. */
static void config_path(const config_setting_t *s, char *buf, size_t size)
{
    const config_setting_t *chain[CONFIG_DEPTH];
    size_t n = 0, used = 0;
    int rc;

    buf[0] = '\0';
    for (; s != NULL && !config_setting_is_root(s) && n < CONFIG_DEPTH; s = s->parent) {
        chain[n++] = s;
    }
    while (n > 0 && used < size) {
        const config_setting_t *c = chain[--n];
        if (config_setting_name(c) != NULL) {
            rc = snprintf(buf + used, size - used, "%s%s", used ? "." : "", c->name);
        } else {
            rc = snprintf(buf + used, size - used, "[%d]", config_setting_index(c));
        }
        if (rc < 0) return;
        used += (size_t)rc;
    }
}

/* Copies at most CONFIG_QUOTE bytes of s into buf for a message, control bytes as '?'. */
const char *cw_config_quote(const char *s, char *buf, size_t size)
{
    size_t i = 0;

    for (; s[i] != '\0' && i < CONFIG_QUOTE && i + 4 < size; i++) {
        buf[i] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    }
    if (s[i] != '\0' && i + 4 <= size) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

static const char *config_type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP:
        return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "an integer";
    case CONFIG_TYPE_FLOAT:
        return "a float";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "a bool";
    case CONFIG_TYPE_ARRAY:
        return "an array";
    case CONFIG_TYPE_LIST:
        return "a list";
    default:
        return "nothing";
    }
}

/* Sets "file:line: path: why" and returns -EINVAL. */
int cw_config_fail(struct config_ctx *cx, const config_setting_t *s, const char *fmt, ...)
{
    char path[128], why[192];
    va_list ap;

    config_path(s, path, sizeof(path));
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    cw_err_set(cx->err, "%s:%u: %s: %s", cx->file, config_setting_source_line(s), path, why);
    return -EINVAL;
}

/* A required setting name is absent from group: "file:line: group.name: missing". */
int cw_config_fail_missing(struct config_ctx *cx, const config_setting_t *group, const char *name)
{
    char path[128];

    if (config_setting_is_root(group)) {
        cw_err_set(cx->err, "%s: %s: missing (required)", cx->file, name);
        return -EINVAL;
    }
    config_path(group, path, sizeof(path));
    cw_err_set(cx->err, "%s:%u: %s.%s: missing (required)", cx->file,
               config_setting_source_line(group), path, name);
    return -EINVAL;
}

int cw_config_oom(struct config_ctx *cx)
{
    cw_err_set(cx->err, "%s: out of memory", cx->file);
    return -ENOMEM;
}

int cw_config_want(struct config_ctx *cx, const config_setting_t *s, int type, const char *what)
{
    int t = config_setting_type(s);

    if (t == type || (type == CONFIG_TYPE_INT && t == CONFIG_TYPE_INT64)) return 0;
    return cw_config_fail(cx, s, "expected %s, got %s", what, config_type_name(t));
}

int cw_config_take_enum(struct config_ctx *cx, const config_setting_t *s, const char *const *names,
                        size_t n, const char *expect, int *out)
{
    char q[CW_CONFIG_QUOTE_BYTES];
    const char *v;
    int rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string");

    if (rc < 0) return rc;
    v = config_setting_get_string(s);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return cw_config_fail(cx, s, "\"%s\" is not %s", cw_config_quote(v, q, sizeof(q)), expect);
}

/* Replaces *dst with a copy of src (NULL stays NULL). */
int cw_config_replace(struct config_ctx *cx, char **dst, const char *src)
{
    char *dup = NULL;

    if (src != NULL && (dup = strdup(src)) == NULL) return cw_config_oom(cx);
    free(*dst);
    *dst = dup;
    return 0;
}

void cw_config_lower(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s + 32);
    }
}

/* Reads s as an integer into *v. */
int cw_config_get_int64(struct config_ctx *cx, const config_setting_t *s, int64_t *v)
{
    int rc = cw_config_want(cx, s, CONFIG_TYPE_INT, "an integer");

    if (rc < 0) return rc;
    *v = config_setting_type(s) == CONFIG_TYPE_INT64 ? config_setting_get_int64(s)
                                                     : config_setting_get_int(s);
    return 0;
}

/* A duration: a string ("30s") or an integer number of seconds. */
static int config_get_ms(struct config_ctx *cx, const config_setting_t *s, int64_t *ms)
{
    char q[CW_CONFIG_QUOTE_BYTES];
    int64_t v;
    int rc;

    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        const char *str = config_setting_get_string(s);
        if (cw_config_parse_duration(str, ms) == 0) return 0;
        return cw_config_fail(cx, s, "\"%s\" is not a duration (like \"250ms\", \"30s\", \"5m\")",
                              cw_config_quote(str, q, sizeof(q)));
    }
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        return cw_config_want(cx, s, CONFIG_TYPE_STRING, "a duration (\"30s\" or seconds)");
    }
    rc = cw_config_get_int64(cx, s, &v);
    if (rc < 0) return rc;
    if (v < 0 || __builtin_mul_overflow(v, 1000, ms)) {
        return cw_config_fail(cx, s, "%lld is not a duration in seconds", (long long)v);
    }
    return 0;
}

/* A size: a string ("512M") or an integer number of bytes. */
static int config_get_size(struct config_ctx *cx, const config_setting_t *s, uint64_t *out)
{
    char q[CW_CONFIG_QUOTE_BYTES];
    int64_t v;
    int rc;

    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        const char *str = config_setting_get_string(s);
        if (cw_config_parse_size(str, out) == 0) return 0;
        return cw_config_fail(cx, s, "\"%s\" is not a size (like \"64K\", \"512M\", \"1G\")",
                              cw_config_quote(str, q, sizeof(q)));
    }
    if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64) {
        return cw_config_want(cx, s, CONFIG_TYPE_STRING, "a size (\"512M\" or bytes)");
    }
    rc = cw_config_get_int64(cx, s, &v);
    if (rc < 0) return rc;
    if (v < 0) return cw_config_fail(cx, s, "%lld is not a size in bytes", (long long)v);
    *out = (uint64_t)v;
    return 0;
}

int cw_config_take_str(struct config_ctx *cx, const config_setting_t *s, char **dst, bool optional)
{
    const char *v;
    int rc = cw_config_want(cx, s, CONFIG_TYPE_STRING, "a string");

    if (rc < 0) return rc;
    v = config_setting_get_string(s);
    if (v[0] == '\0' && !optional) return cw_config_fail(cx, s, "must not be empty");
    return cw_config_replace(cx, dst, v[0] == '\0' ? NULL : v);
}

static int config_take_int(struct config_ctx *cx, const config_setting_t *s,
                           const struct config_opt *o, int *dst)
{
    int64_t v;
    int rc = cw_config_get_int64(cx, s, &v);

    if (rc < 0) return rc;
    if (v < o->min || v > o->max) {
        return cw_config_fail(cx, s, "%lld is out of range %lld..%lld", (long long)v,
                              (long long)o->min, (long long)o->max);
    }
    *dst = (int)v;
    return 0;
}

static int config_take_ms(struct config_ctx *cx, const config_setting_t *s,
                          const struct config_opt *o, int64_t *dst)
{
    int64_t ms;
    int rc = config_get_ms(cx, s, &ms);

    if (rc < 0) return rc;
    if (ms < o->min) return cw_config_fail(cx, s, "must be greater than 0");
    if (ms > CW_CONFIG_MS_MAX) return cw_config_fail(cx, s, "is longer than 2^31 seconds");
    *dst = ms;
    return 0;
}

static int config_take_size(struct config_ctx *cx, const config_setting_t *s,
                            const struct config_opt *o, uint64_t *dst)
{
    uint64_t v;
    int rc = config_get_size(cx, s, &v);

    if (rc < 0) return rc;
    if (v < (uint64_t)o->min) {
        return cw_config_fail(cx, s, "%llu bytes is less than the minimum %lld",
                              (unsigned long long)v, (long long)o->min);
    }
    *dst = v;
    return 0;
}

static int config_take(struct config_ctx *cx, const struct config_opt *o, const config_setting_t *s,
                       void *base)
{
    void *dst = (char *)base + o->off;
    int rc;

    switch (o->kind) {
    case CW_CONFIG_KIND_STR:
        return cw_config_take_str(cx, s, dst, false);
    case CW_CONFIG_KIND_STR_OPT:
        return cw_config_take_str(cx, s, dst, true);
    case CW_CONFIG_KIND_BOOL:
        rc = cw_config_want(cx, s, CONFIG_TYPE_BOOL, "a bool (true or false)");
        if (rc == 0) *(bool *)dst = config_setting_get_bool(s) != 0;
        return rc;
    case CW_CONFIG_KIND_INT:
        return config_take_int(cx, s, o, dst);
    case CW_CONFIG_KIND_MS:
        return config_take_ms(cx, s, o, dst);
    case CW_CONFIG_KIND_SIZE:
        return config_take_size(cx, s, o, dst);
    case CW_CONFIG_KIND_GROUP:
        return cw_config_walk(cx, s, o->sub, o->nsub, base);
    case CW_CONFIG_KIND_FUNC:
        return o->fn(cx, s, base);
    }
    return -EINVAL;
}

/* Applies every member of group through the table; a name not in it is an error. */
int cw_config_walk(struct config_ctx *cx, const config_setting_t *group,
                   const struct config_opt *opts, size_t nopts, void *base)
{
    int n, rc;

    rc = cw_config_want(cx, group, CONFIG_TYPE_GROUP, "a group { ... }");
    if (rc < 0) return rc;
    n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const struct config_opt *o = NULL;
        for (size_t j = 0; j < nopts && o == NULL; j++) {
            if (strcmp(opts[j].name, config_setting_name(s)) == 0) o = &opts[j];
        }
        if (o == NULL) return cw_config_fail(cx, s, "unknown setting");
        rc = config_take(cx, o, s, base);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Rejects NUL bytes (libconfig would stop at the first) and @include, which would read
 * other files from a pure parser. Bounded by len. */
static int config_prescan(struct config_ctx *cx, const char *text, size_t len)
{
    unsigned line = 1;
    bool line_start = true;

    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\0') {
            cw_err_set(cx->err, "%s:%u: syntax error: NUL byte in the file", cx->file, line);
            return -EINVAL;
        }
        if (c == '\n') {
            line++;
            line_start = true;
        } else if (c != ' ' && c != '\t') {
            if (line_start && len - i >= 8 && memcmp(text + i, "@include", 8) == 0) {
                cw_err_set(cx->err, "%s:%u: @include is not supported", cx->file, line);
                return -EINVAL;
            }
            line_start = false;
        }
    }
    return 0;
}

static int config_syntax_error(struct config_ctx *cx, const config_t *lc)
{
    const char *text = config_error_text(lc) ? config_error_text(lc) : "unknown";

    if (strcmp(text, "syntax error") == 0) {
        cw_err_set(cx->err, "%s:%d: syntax error", cx->file, config_error_line(lc));
    } else {
        cw_err_set(cx->err, "%s:%d: syntax error: %s", cx->file, config_error_line(lc), text);
    }
    return -EINVAL;
}

int cw_config_parse(const char *text, size_t len, const char *file, struct cw_config *out,
                    struct cw_err *err)
{
    struct config_ctx cx = {.file = file ? file : "(config)", .cfg = out, .err = err};
    config_t lc;
    char *buf = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (text == NULL && len > 0) return -EINVAL;
    rc = config_prescan(&cx, text, len);
    if (rc < 0) return rc;
    config_init(&lc);
    rc = cw_config_schema_defaults(&cx);
    if (rc < 0) goto out;
    if ((buf = malloc(len + 1)) == NULL || (out->file = strdup(cx.file)) == NULL) {
        rc = cw_config_oom(&cx);
        goto out;
    }
    if (len > 0) memcpy(buf, text, len);
    buf[len] = '\0';
    if (config_read_string(&lc, buf) != CONFIG_TRUE) {
        rc = config_syntax_error(&cx, &lc);
        goto out;
    }
    cx.root = config_root_setting(&lc);
    rc = cw_config_schema_apply(&cx);
out:
    config_destroy(&lc);
    free(buf);
    if (rc < 0) cw_config_free(out);
    return rc;
}

static void config_free_strv(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++) {
        free(v[i]);
    }
    free(v);
}

void cw_config_free(struct cw_config *cfg)
{
    if (cfg == NULL) return;
    for (size_t i = 0; cfg->origins != NULL && i < cfg->origin_count; i++) {
        struct cw_config_origin *o = &cfg->origins[i];
        free(o->name);
        free(o->url);
        for (size_t k = 0; o->servers != NULL && k < o->server_count; k++)
            free(o->servers[k].base);
        free(o->servers);
        free(o->health.path);
        free(o->ca_file);
        free(o->srv);
        free(o->resolver);
        free(o->tls_cert);
        free(o->tls_key);
        free(o->sni);
        free(o->host);
    }
    for (size_t i = 0; cfg->routes != NULL && i < cfg->route_count; i++) {
        struct cw_config_route *r = &cfg->routes[i];
        free(r->host);
        free(r->match);
        config_free_strv(r->query_keep, r->query_keep_count);
        config_free_strv(r->key_headers, r->key_headers_count);
        config_free_strv(r->strip_headers, r->strip_headers_count);
        free(r->trust_forwarded);
    }
    free(cfg->origins);
    free(cfg->routes);
    free(cfg->resolver);
    free(cfg->user);
    free(cfg->group);
    free(cfg->file);
    free(cfg->listen);
    free(cfg->log_access);
    free(cfg->cache_path);
    config_free_strv(cfg->cache_targeted_cc, cfg->cache_targeted_cc_count);
    free(cfg->redis_host);
    free(cfg->redis_socket);
    config_free_strv(cfg->redis_sentinels, cfg->redis_sentinel_count);
    free(cfg->redis_master);
    config_free_strv(cfg->redis_nodes, cfg->redis_node_count);
    free(cfg->redis_user);
    free(cfg->redis_password);
    free(cfg->redis_password_file);
    free(cfg->redis_password_env);
    free(cfg->redis_prefix);
    free(cfg->redis_channel);
    free(cfg->stats_listen);
    free(cfg->stats_textfile);
    free(cfg->control_socket);
    free(cfg->control_group);
    free(cfg->purge_allow);
    memset(cfg, 0, sizeof(*cfg));
}
