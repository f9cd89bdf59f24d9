/* core/config_int.h - internals shared by the files of the config module.
 *
 * Not a public API: only core/config.c (entry points, libconfig walk, messages),
 * core/config_schema.c (the tables of allowed settings and their checks),
 * core/config_redis.c (the redis group), core/config_origin.c (the origins list) and
 * core/config_value.c (durations, sizes, addresses) include it. Owns nothing. */
#ifndef CW_CONFIG_INT_H
#define CW_CONFIG_INT_H

#include <libconfig.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/common.h"
#include "core/config.h"
#include "core/limits.h"

/* Durations are capped at 2^31 s (the RFC 9111 §1.2.2 delta-seconds cap), so that sums
 * such as now + ttl + swr + sie never overflow an int64_t of milliseconds. */
#define CW_CONFIG_MS_MAX   (CW_LIMIT_DELTA_SECONDS * 1000)
#define CW_CONFIG_MIB      (1024 * 1024)
#define CW_CONFIG_HOST_MAX (CW_LIMIT_HOST_BYTES + 1) /* host buffer for cw_config_split() */
/* A bad value quoted in a message: at most 40 bytes of it, "..." and the NUL. */
#define CW_CONFIG_QUOTE_BYTES 64

/* One parse: where messages go and what is being filled. */
struct config_ctx {
    const char *file;
    struct cw_config *cfg;
    struct cw_err *err;
    const config_setting_t *root;
    const config_setting_t *routes; /* parsed last: routes name origins */
};

enum config_kind {
    CW_CONFIG_KIND_STR = 0, /* non-empty string, char * */
    CW_CONFIG_KIND_STR_OPT, /* string, "" = NULL, char * */
    CW_CONFIG_KIND_BOOL,    /* bool */
    CW_CONFIG_KIND_INT,     /* int in [min, max] */
    CW_CONFIG_KIND_MS,      /* duration, int64_t ms >= min */
    CW_CONFIG_KIND_SIZE,    /* size, uint64_t bytes >= min */
    CW_CONFIG_KIND_GROUP,   /* nested table sub */
    CW_CONFIG_KIND_FUNC,    /* handled by fn */
};

typedef int (*config_fn)(struct config_ctx *cx, const config_setting_t *s, void *base);

/* One allowed setting of a group: its name, kind, and the field at off in the base struct. */
struct config_opt {
    const char *name;
    enum config_kind kind;
    size_t off;
    int64_t min;
    int64_t max;
    config_fn fn;
    const struct config_opt *sub;
    size_t nsub;
};

/* Table entries: a setting of kind k at field of type; a handler; a nested group. */
#define CONFIG_OPT(n, k, type, field, lo, hi)                                                      \
    {                                                                                              \
        .name = (n), .kind = (k), .off = offsetof(type, field), .min = (lo), .max = (hi)           \
    }
#define CONFIG_FN(n, f)                                                                            \
    {                                                                                              \
        .name = (n), .kind = CW_CONFIG_KIND_FUNC, .fn = (f)                                        \
    }
#define CONFIG_GROUP(n, t)                                                                         \
    {                                                                                              \
        .name = (n), .kind = CW_CONFIG_KIND_GROUP, .sub = (t), .nsub = CW_ARRAY_LEN(t)             \
    }

/* Sets "file:line: path.of.s: why" in cx->err; returns -EINVAL. */
int cw_config_fail(struct config_ctx *cx, const config_setting_t *s, const char *fmt, ...)
    CW_PRINTF(3, 4);
/* A required name is absent from group: "file:line: group.name: missing"; -EINVAL. */
int cw_config_fail_missing(struct config_ctx *cx, const config_setting_t *group, const char *name);
/* Sets "file: out of memory"; returns -ENOMEM. */
int cw_config_oom(struct config_ctx *cx);
/* 0 when s has type (INT also takes INT64), else an "expected what, got ..." error. */
int cw_config_want(struct config_ctx *cx, const config_setting_t *s, int type, const char *what);
/* An enumerated string setting: *out is the index of its value in names (n of them), or
 * "file:line: path: "v" is not <expect>" and -EINVAL (expect lists the names for people). */
int cw_config_take_enum(struct config_ctx *cx, const config_setting_t *s, const char *const *names,
                        size_t n, const char *expect, int *out);
/* Replaces *dst (freed) with a copy of src; NULL stays NULL. 0 or -ENOMEM. */
int cw_config_replace(struct config_ctx *cx, char **dst, const char *src);
/* Copies at most 40 bytes of s into buf (CW_CONFIG_QUOTE_BYTES is enough) for a message, control
 * bytes as '?' and "..." when cut; returns buf. */
const char *cw_config_quote(const char *s, char *buf, size_t size);
void cw_config_lower(char *s);
int cw_config_get_int64(struct config_ctx *cx, const config_setting_t *s, int64_t *v);
/* A string setting into *dst; "" is an error, or NULL when optional. */
int cw_config_take_str(struct config_ctx *cx, const config_setting_t *s, char **dst, bool optional);
/* Applies every member of group through opts; a name not in opts is "unknown setting". */
int cw_config_walk(struct config_ctx *cx, const config_setting_t *group,
                   const struct config_opt *opts, size_t nopts, void *base);

/* Schema (config_schema.c): defaults into cx->cfg, then the root walk and the checks that
 * span settings. */
int cw_config_schema_defaults(struct config_ctx *cx);
int cw_config_schema_apply(struct config_ctx *cx);

/* The redis { } group (config_redis.c): its settings and the checks between them. */
int cw_config_redis(struct config_ctx *cx, const config_setting_t *s, void *base);

/* The origins ( ... ) list (config_origin.c): each origin, its server pool, health checks,
 * breaker and TLS settings. */
int cw_config_origins(struct config_ctx *cx, const config_setting_t *s, void *base);

/* Values (config_value.c). */
bool cw_config_is_name_char(char c);
/* Splits "host[:port]" or "[v6][:port]" (len bytes) into host (no brackets, at most
 * host_size - 1 bytes) and port (0 when absent; required when need_port). Host may be "". */
int cw_config_split(const char *p, size_t len, bool need_port, char *host, size_t host_size,
                    int *port);

/* The top-level resolver setting (core/config_origin.c). */
int cw_config_resolver(struct config_ctx *cx, const config_setting_t *s, void *base);

#endif /* CW_CONFIG_INT_H */
