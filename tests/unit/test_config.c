/* tests/unit/test_config.c - core/config: the example parses, defaults, every error path
 * with its "file:line: setting:" message, limits at N and N+1, and the value parsers. */
#include "core/config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/limits.h"

Suite *config_suite(void);

#define ORIGIN "origins = ( { name = \"api\"; url = \"http://127.0.0.1:9000\"; } );\n"

static bool is_zero(const struct cw_config *c)
{
    static const struct cw_config zero;
    return memcmp(c, &zero, sizeof(zero)) == 0;
}

/* Parses the example config's text under its path (workers/config_file.c reads files; its
 * own tests cover that). */
static int parse_example(struct cw_config *c, struct cw_err *e)
{
    static char buf[65536];
    FILE *f = fopen("etc/cachewarp.conf", "r");
    size_t len;

    ck_assert_ptr_nonnull(f);
    len = fread(buf, 1, sizeof(buf), f);
    ck_assert(len < sizeof(buf) && !ferror(f));
    fclose(f);
    return cw_config_parse(buf, len, "etc/cachewarp.conf", c, e);
}

static int parse(const char *text, struct cw_config *c, struct cw_err *e)
{
    memset(e, 0, sizeof(*e));
    return cw_config_parse(text, strlen(text), "t.conf", c, e);
}

/* Parses text, expecting failure with a message containing want; checks *out is freed. */
static void expect_err_at(const char *text, const char *want, int line)
{
    struct cw_config c;
    struct cw_err e;
    int rc = parse(text, &c, &e);

    ck_assert_msg(rc == -EINVAL, "line %d: rc %d for <<%s>>", line, rc, text);
    ck_assert_msg(strstr(e.msg, want) != NULL, "line %d: got \"%s\", want \"%s\"", line, e.msg,
                  want);
    ck_assert_msg(is_zero(&c), "line %d: config not freed", line);
}
#define expect_err(text, want) expect_err_at((text), (want), __LINE__)

static void expect_ok_at(const char *text, struct cw_config *c, int line)
{
    struct cw_err e;
    int rc = parse(text, c, &e);

    ck_assert_msg(rc == 0, "line %d: rc %d: %s", line, rc, e.msg);
}
#define expect_ok(text, c) expect_ok_at((text), (c), __LINE__)

START_TEST(test_config_example_parses)
{
    struct cw_config c;
    struct cw_err e = {{0}};
    int rc = parse_example(&c, &e);

    ck_assert_msg(rc == 0, "%s", e.msg);
    ck_assert_str_eq(c.file, "etc/cachewarp.conf");
    ck_assert_str_eq(c.listen, "127.0.0.1:8080");
    ck_assert_int_eq(c.workers, 2);
    ck_assert_int_eq(c.log_level, CW_LOG_INFO);
    ck_assert_ptr_null(c.log_access);
    ck_assert_int_eq(c.shutdown_grace_ms, 10000);
    ck_assert_str_eq(c.cache_path, "/var/cache/cachewarp/l1.mdb");
    ck_assert_uint_eq(c.cache_size_bytes, 1ULL << 30);
    ck_assert_uint_eq(c.cache_max_object_bytes, 8ULL << 20);
    ck_assert_uint_eq(c.cache_targeted_cc_count, 2);
    ck_assert_str_eq(c.cache_targeted_cc[0], "CacheWarp-Cache-Control");
    ck_assert_str_eq(c.cache_targeted_cc[1], "CDN-Cache-Control");
    ck_assert(c.redis_enabled);
    ck_assert_str_eq(c.redis_host, "127.0.0.1");
    ck_assert_int_eq(c.redis_port, 6379);
    ck_assert_int_eq(c.redis_timeout_ms, 20);
    ck_assert_str_eq(c.redis_channel, "cachewarp:purge");
    ck_assert_uint_eq(c.origin_count, 1);
    ck_assert_str_eq(c.origins[0].name, "api");
    ck_assert_str_eq(c.origins[0].url, "http://127.0.0.1:9000");
    ck_assert_int_eq(c.origins[0].connect_timeout_ms, 1000);
    ck_assert_int_eq(c.origins[0].timeout_ms, 10000);
    ck_assert_uint_eq(c.route_count, 1);
    ck_assert_str_eq(c.routes[0].match, "/");
    ck_assert_int_eq(c.routes[0].origin, 0);
    ck_assert_int_eq(c.routes[0].ttl_ms, 60000);
    ck_assert_int_eq(c.routes[0].swr_ms, 30000);
    ck_assert_int_eq(c.routes[0].sie_ms, 600000);
    ck_assert(!c.routes[0].adaptive);
    ck_assert_int_eq(c.routes[0].min_ttl_ms, 1000);
    ck_assert_int_eq(c.routes[0].max_ttl_ms, 600000);
    ck_assert_uint_eq(c.routes[0].key_headers_count, 0);
    ck_assert_uint_eq(c.routes[0].strip_headers_count, 0);
    ck_assert_uint_eq(c.routes[0].trust_forwarded_count, 0);
    ck_assert_int_eq(c.routes[0].cookies, CW_CONFIG_COOKIES_PASS);
    ck_assert_int_eq(c.client_header_timeout_ms, 60000);
    ck_assert_int_eq(c.client_body_timeout_ms, 60000);
    ck_assert_str_eq(c.stats_listen, "127.0.0.1:9145");
    ck_assert_ptr_null(c.stats_textfile);
    ck_assert_int_eq(c.stats_interval_ms, 15000);
    ck_assert_str_eq(c.control_socket, "/run/cachewarp/control.sock");
    ck_assert_uint_eq(c.purge_allow_count, 2);
    cw_config_free(&c);
    ck_assert(is_zero(&c));
}
END_TEST

START_TEST(test_config_defaults_from_minimal)
{
    struct cw_config c;

    expect_ok(ORIGIN, &c);
    ck_assert_str_eq(c.file, "t.conf");
    ck_assert_str_eq(c.listen, "127.0.0.1:8080");
    ck_assert_int_eq(c.workers, 2);
    ck_assert_int_eq(c.log_level, CW_LOG_INFO);
    ck_assert_int_eq(c.log_format, CW_CONFIG_LOG_COMBINED);
    ck_assert_ptr_null(c.log_access);
    ck_assert_int_eq(c.shutdown_grace_ms, 10000);
    ck_assert_int_eq(c.client_header_timeout_ms, 60000);
    ck_assert_int_eq(c.client_body_timeout_ms, 60000);
    ck_assert_str_eq(c.cache_path, "/var/cache/cachewarp/l1.mdb");
    ck_assert_uint_eq(c.cache_size_bytes, 1ULL << 30);
    ck_assert_uint_eq(c.cache_max_object_bytes, 8ULL << 20);
    ck_assert(c.redis_enabled);
    ck_assert_str_eq(c.redis_host, "127.0.0.1");
    ck_assert_int_eq(c.redis_port, 6379);
    ck_assert_int_eq(c.redis_timeout_ms, 20);
    ck_assert_str_eq(c.redis_channel, "cachewarp:purge");
    ck_assert_int_eq(c.origins[0].max_conns, 64);
    ck_assert_int_eq(c.origins[0].connect_timeout_ms, 1000);
    ck_assert_int_eq(c.origins[0].timeout_ms, 10000);
    ck_assert_str_eq(c.stats_listen, "127.0.0.1:9145");
    ck_assert_int_eq(c.stats_interval_ms, 15000);
    ck_assert_str_eq(c.control_socket, "/run/cachewarp/control.sock");
    ck_assert_uint_eq(c.purge_allow_count, 2);
    ck_assert_int_eq(c.purge_allow[0].family, AF_INET);
    ck_assert_int_eq(c.purge_allow[0].prefix_len, 32);
    ck_assert_int_eq(c.purge_allow[1].family, AF_INET6);
    ck_assert_int_eq(c.purge_allow[1].prefix_len, 128);
    cw_config_free(&c);
}
END_TEST

static void check_default_route(const struct cw_config *c)
{
    const struct cw_config_route *r = &c->routes[0];

    ck_assert_uint_eq(c->route_count, 1);
    ck_assert_str_eq(r->match, "/");
    ck_assert_uint_eq(r->match_len, 1);
    ck_assert_ptr_null(r->host);
    ck_assert_int_eq(r->origin, 0);
    ck_assert_int_eq(r->ttl_ms, 60000);
    ck_assert_int_eq(r->swr_ms, 0);
    ck_assert_int_eq(r->sie_ms, 0);
    ck_assert_int_eq(r->min_ttl_ms, 1000);
    ck_assert_int_eq(r->max_ttl_ms, 600000);
    ck_assert_int_eq(r->lock_timeout_ms, 5000);
    ck_assert(r->refresh_ahead == 0.1);
    ck_assert(r->stale_target == 0.05);
    ck_assert_int_eq(r->query, CW_CONFIG_QUERY_KEEP);
    ck_assert(!r->adaptive && !r->override && !r->ignore_client_no_cache);
    ck_assert(!r->strip_set_cookie);
    ck_assert_uint_eq(r->strip_headers_count, 0);
    ck_assert_ptr_null(r->strip_headers);
    ck_assert_uint_eq(r->trust_forwarded_count, 0);
    ck_assert_int_eq(r->cookies, CW_CONFIG_COOKIES_PASS);
}

START_TEST(test_config_default_route_when_none)
{
    struct cw_config c;

    expect_ok(ORIGIN, &c);
    check_default_route(&c);
    cw_config_free(&c);
    expect_ok(ORIGIN "routes = ( );", &c);
    check_default_route(&c);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_default_route_uses_first_origin)
{
    struct cw_config c;

    expect_ok("origins = ( { name = \"a\"; url = \"http://a\"; },\n"
              "            { name = \"b\"; url = \"http://b\"; } );",
              &c);
    ck_assert_int_eq(c.routes[0].origin, 0);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_route_settings)
{
    struct cw_config c;
    const struct cw_config_route *r;

    expect_ok(ORIGIN
              "routes = ( { match = \"/api/\"; origin = \"api\"; host = \"API.Example.COM.\";\n"
              "  ttl = 30; swr = \"1m\"; sie = \"2h\"; adaptive = true; override = true;\n"
              "  min_ttl = \"250ms\"; max_ttl = \"1d\"; lock_timeout = \"2s\";\n"
              "  refresh_ahead = 0; stale_target = 0.5; ignore_client_no_cache = true;\n"
              "  strip_set_cookie = true; query = [ \"page\", \"Lang\" ];\n"
              "  key_headers = [ \"Accept-Language\", \"X-Tenant\" ]; } );",
              &c);
    r = &c.routes[0];
    ck_assert_str_eq(r->match, "/api/");
    ck_assert_uint_eq(r->match_len, 5);
    ck_assert_str_eq(r->host, "api.example.com");
    ck_assert_uint_eq(r->host_len, strlen("api.example.com"));
    ck_assert_int_eq(r->ttl_ms, 30000);
    ck_assert_int_eq(r->swr_ms, 60000);
    ck_assert_int_eq(r->sie_ms, 7200000);
    ck_assert(r->adaptive && r->override && r->ignore_client_no_cache && r->strip_set_cookie);
    ck_assert_int_eq(r->min_ttl_ms, 250);
    ck_assert_int_eq(r->max_ttl_ms, 86400000);
    ck_assert_int_eq(r->lock_timeout_ms, 2000);
    ck_assert(r->refresh_ahead == 0.0);
    ck_assert(r->stale_target == 0.5);
    ck_assert_int_eq(r->query, CW_CONFIG_QUERY_LIST);
    ck_assert_uint_eq(r->query_keep_count, 2);
    ck_assert_str_eq(r->query_keep[0], "page");
    ck_assert_str_eq(r->query_keep[1], "Lang"); /* parameter names are case-sensitive */
    ck_assert_uint_eq(r->key_headers_count, 2);
    ck_assert_str_eq(r->key_headers[0], "accept-language");
    ck_assert_str_eq(r->key_headers[1], "x-tenant");
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_query_modes)
{
    static const struct {
        const char *v;
        enum cw_config_query q;
    } cases[] = {{"keep", CW_CONFIG_QUERY_KEEP},
                 {"sort", CW_CONFIG_QUERY_SORT},
                 {"ignore", CW_CONFIG_QUERY_IGNORE}};
    char text[512];
    struct cw_config c;

    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        snprintf(text, sizeof(text),
                 ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; query = \"%s\"; } );",
                 cases[i].v);
        expect_ok(text, &c);
        ck_assert_int_eq(c.routes[0].query, cases[i].q);
        cw_config_free(&c);
    }
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n query = \"all\"; } );",
               "t.conf:3: routes[0].query: \"all\" is not");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n query = [ ]; } );",
               "t.conf:3: routes[0].query: an empty list");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n query = [ 1 ]; } );",
               "t.conf:3: routes[0].query[0]: expected a string, got an integer");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n query = [ \"a=b\" ]; } );",
               "t.conf:3: routes[0].query[0]: \"a=b\" is not a parameter name");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n query = 1; } );",
               "t.conf:3: routes[0].query: expected a list");
}
END_TEST

/* Builds a route with a list of n names for setting (query or key_headers). */
static char *list_text(const char *setting, int n)
{
    size_t size = 256 + (size_t)n * 16;
    char *t = malloc(size);
    size_t used;

    ck_assert_ptr_nonnull(t);
    used = (size_t)snprintf(t, size, ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; %s = [",
                            setting);
    for (int i = 0; i < n; i++) {
        used += (size_t)snprintf(t + used, size - used, "%s\"n%d\"", i ? ", " : "", i);
    }
    snprintf(t + used, size - used, "]; } );");
    return t;
}

START_TEST(test_config_list_limits)
{
    struct cw_config c;
    char *t;

    t = list_text("query", CW_LIMIT_QUERY_KEEP);
    expect_ok(t, &c);
    ck_assert_uint_eq(c.routes[0].query_keep_count, CW_LIMIT_QUERY_KEEP);
    cw_config_free(&c);
    free(t);
    t = list_text("query", CW_LIMIT_QUERY_KEEP + 1);
    expect_err(t, "routes[0].query: more than");
    free(t);
    t = list_text("key_headers", CW_LIMIT_VARY_FIELDS);
    expect_ok(t, &c);
    ck_assert_uint_eq(c.routes[0].key_headers_count, CW_LIMIT_VARY_FIELDS);
    cw_config_free(&c);
    free(t);
    t = list_text("key_headers", CW_LIMIT_VARY_FIELDS + 1);
    expect_err(t, "routes[0].key_headers: more than");
    free(t);
    t = list_text("strip_headers", CW_LIMIT_STRIP_HEADERS);
    expect_ok(t, &c);
    ck_assert_uint_eq(c.routes[0].strip_headers_count, CW_LIMIT_STRIP_HEADERS);
    ck_assert_str_eq(c.routes[0].strip_headers[CW_LIMIT_STRIP_HEADERS - 1], "n31");
    cw_config_free(&c);
    free(t);
    t = list_text("strip_headers", CW_LIMIT_STRIP_HEADERS + 1);
    expect_err(t, "t.conf:2: routes[0].strip_headers: more than 32 entries");
    free(t);
}
END_TEST

/* cache = { targeted_cache_control = [ n names "T0-Cache-Control", ... ]; } */
static char *targeted_text(int n)
{
    size_t size = 256 + (size_t)n * 32;
    char *t = malloc(size);
    size_t used;

    ck_assert_ptr_nonnull(t);
    used = (size_t)snprintf(t, size, ORIGIN "cache = {\n targeted_cache_control = [");
    for (int i = 0; i < n; i++) {
        used +=
            (size_t)snprintf(t + used, size - used, "%s\"T%d-Cache-Control\"", i ? ", " : "", i);
    }
    snprintf(t + used, size - used, "]; };");
    return t;
}

START_TEST(test_config_targeted_cache_control)
{
    struct cw_config c;
    char *t;

    /* Default: our own field first, then CDN-Cache-Control (RFC 9213 §2.2 target list). */
    expect_ok(ORIGIN, &c);
    ck_assert_uint_eq(c.cache_targeted_cc_count, 2);
    ck_assert_str_eq(c.cache_targeted_cc[0], "CacheWarp-Cache-Control");
    ck_assert_str_eq(c.cache_targeted_cc[1], "CDN-Cache-Control");
    cw_config_free(&c);
    /* A list replaces the default, in its order and case. */
    expect_ok(ORIGIN "cache = { targeted_cache_control = [ \"Fastly-Cache-Control\", "
                     "\"cdn-cache-control\" ]; };",
              &c);
    ck_assert_uint_eq(c.cache_targeted_cc_count, 2);
    ck_assert_str_eq(c.cache_targeted_cc[0], "Fastly-Cache-Control");
    ck_assert_str_eq(c.cache_targeted_cc[1], "cdn-cache-control");
    cw_config_free(&c);
    /* [] turns targeted fields off; ( ) is a list too. */
    expect_ok(ORIGIN "cache = { targeted_cache_control = [ ]; };", &c);
    ck_assert_uint_eq(c.cache_targeted_cc_count, 0);
    cw_config_free(&c);
    expect_ok(ORIGIN "cache = { targeted_cache_control = ( \"A-Cache-Control\" ); };", &c);
    ck_assert_uint_eq(c.cache_targeted_cc_count, 1);
    cw_config_free(&c);
    /* At the limit and one past it. */
    t = targeted_text(CW_LIMIT_TARGETED_FIELDS);
    expect_ok(t, &c);
    ck_assert_uint_eq(c.cache_targeted_cc_count, CW_LIMIT_TARGETED_FIELDS);
    ck_assert_str_eq(c.cache_targeted_cc[CW_LIMIT_TARGETED_FIELDS - 1], "T7-Cache-Control");
    cw_config_free(&c);
    free(t);
    t = targeted_text(CW_LIMIT_TARGETED_FIELDS + 1);
    expect_err(t, "t.conf:3: cache.targeted_cache_control: more than 8 entries");
    free(t);
}
END_TEST

START_TEST(test_config_targeted_cache_control_errors)
{
    expect_err(ORIGIN "cache = {\n targeted_cache_control = \"CDN-Cache-Control\"; };",
               "t.conf:3: cache.targeted_cache_control: expected a list [ \"...\", ... ], got a "
               "string");
    expect_err(ORIGIN "cache = {\n targeted_cache_control = [ \"A B\" ]; };",
               "t.conf:3: cache.targeted_cache_control[0]: \"A B\" is not a header name other "
               "than Cache-Control");
    expect_err(ORIGIN "cache = {\n targeted_cache_control = [ \"X\", \"\" ]; };",
               "t.conf:3: cache.targeted_cache_control[1]: \"\" is not a header name");
    expect_err(ORIGIN "cache = {\n targeted_cache_control = [ \"cache-control\" ]; };",
               "t.conf:3: cache.targeted_cache_control[0]: \"cache-control\" is not a header "
               "name other than Cache-Control");
    expect_err(ORIGIN "cache = {\n targeted_cache_control = [ \"CDN-Cache-Control\",\n"
                      " \"cdn-cache-control\" ]; };",
               "t.conf:4: cache.targeted_cache_control[1]: \"cdn-cache-control\" is already in "
               "the list");
    expect_err(ORIGIN "cache = {\n targeted_cache_control = [ 1 ]; };",
               "t.conf:3: cache.targeted_cache_control[0]: expected a string, got an integer");
}
END_TEST

START_TEST(test_config_key_headers_errors)
{
    expect_err(ORIGIN
               "routes = ( { match = \"/\"; origin = \"api\";\n key_headers = [ \"X Y\" ]; } );",
               "t.conf:3: routes[0].key_headers[0]: \"X Y\" is not a header name");
    expect_err(ORIGIN
               "routes = ( { match = \"/\"; origin = \"api\";\n key_headers = [ \"\" ]; } );",
               "t.conf:3: routes[0].key_headers[0]: \"\" is not a header name");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n key_headers = \"x\"; } );",
               "t.conf:3: routes[0].key_headers: expected a list");
}
END_TEST

START_TEST(test_config_syntax_error_has_line)
{
    expect_err(ORIGIN "listen = \"127.0.0.1:8080\";\nworkers = ;\n", "t.conf:3: syntax error");
    expect_err("a = 1;\na = 2;\n", "t.conf:2: syntax error: duplicate setting name");
    expect_err("cache = { size = \"1G\" \n", "t.conf:");
}
END_TEST

START_TEST(test_config_include_and_nul_rejected)
{
    struct cw_config c;
    struct cw_err e;
    static const char nul[] = "workers = 2;\nlisten = \"a\0b:80\";\n";

    expect_err(ORIGIN "  @include \"/etc/passwd\"\n", "t.conf:2: @include is not supported");
    ck_assert_int_eq(cw_config_parse(nul, sizeof(nul) - 1, "t.conf", &c, &e), -EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "t.conf:2: syntax error: NUL byte"));
    ck_assert(is_zero(&c));
}
END_TEST

START_TEST(test_config_empty_text)
{
    struct cw_config c;
    struct cw_err e;

    ck_assert_int_eq(cw_config_parse("", 0, "t.conf", &c, &e), -EINVAL);
    ck_assert_str_eq(e.msg, "t.conf: origins: missing (required)");
    ck_assert_int_eq(cw_config_parse(NULL, 0, "t.conf", &c, &e), -EINVAL);
    ck_assert(is_zero(&c));
}
END_TEST

START_TEST(test_config_unknown_setting)
{
    expect_err(ORIGIN "listn = \"127.0.0.1:80\";", "t.conf:2: listn: unknown setting");
    expect_err(ORIGIN "cache = {\n sise = \"1G\"; };", "t.conf:3: cache.sise: unknown setting");
    expect_err(ORIGIN "log = { levle = \"info\"; };", "t.conf:2: log.levle: unknown setting");
    expect_err(ORIGIN "redis = { hots = \"x\"; };", "t.conf:2: redis.hots: unknown setting");
    expect_err(ORIGIN "stats = { port = 1; };", "t.conf:2: stats.port: unknown setting");
    expect_err(ORIGIN "control = { sock = \"x\"; };", "t.conf:2: control.sock: unknown setting");
    expect_err(ORIGIN "purge = { alow = [ ]; };", "t.conf:2: purge.alow: unknown setting");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\";\n nmae = \"b\"; } );",
               "t.conf:2: origins[0].nmae: unknown setting");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n tll = \"1s\"; } );",
               "t.conf:3: routes[0].tll: unknown setting");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n cookie = \"key\"; } );",
               "t.conf:3: routes[0].cookie: unknown setting");
}
END_TEST

START_TEST(test_config_bad_duration)
{
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n ttl = \"3x\"; } );",
               "t.conf:3: routes[0].ttl: \"3x\" is not a duration");
    expect_err(ORIGIN "shutdown_grace = \"1.5s\";", "t.conf:2: shutdown_grace: \"1.5s\" is not");
    expect_err(ORIGIN "shutdown_grace = -1;", "t.conf:2: shutdown_grace: -1 is not a duration");
    expect_err(ORIGIN "shutdown_grace = \"99999999999999999999s\";", "shutdown_grace: \"");
    expect_err(ORIGIN "shutdown_grace = \"3000000000s\";",
               "t.conf:2: shutdown_grace: is longer than 2^31 seconds");
    expect_err(ORIGIN "shutdown_grace = 1.0;", "shutdown_grace: expected a duration");
    expect_err(ORIGIN "shutdown_grace = true;", "shutdown_grace: expected a duration");
}
END_TEST

START_TEST(test_config_duration_values)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {{"0", 0},        {"30s", 30000},    {"250ms", 250},    {"5m", 300000},
                {"1h", 3600000}, {"2d", 172800000}, {"1500", 1500000}, {"007s", 7000}};
    static const char *const bad[] = {"",   "s",  "1.5s", "-1s", " 1s", "1s ",
                                      "1S", "1y", "1sm",  "1 s", "+1",  "9223372036854775807d"};
    int64_t ms;

    for (size_t i = 0; i < CW_ARRAY_LEN(good); i++) {
        ck_assert_msg(cw_config_parse_duration(good[i].s, &ms) == 0, "%s", good[i].s);
        ck_assert_int_eq(ms, good[i].ms);
    }
    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        ck_assert_msg(cw_config_parse_duration(bad[i], &ms) == -EINVAL, "%s", bad[i]);
    }
    ck_assert_int_eq(cw_config_parse_duration("9223372036854775807ms", &ms), 0);
    ck_assert_int_eq(ms, INT64_MAX);
    ck_assert_int_eq(cw_config_parse_duration("9223372036854775808ms", &ms), -EINVAL);
    ck_assert_int_eq(cw_config_parse_duration(NULL, &ms), -EINVAL);
}
END_TEST

START_TEST(test_config_duration_integer_seconds)
{
    struct cw_config c;

    expect_ok(ORIGIN "shutdown_grace = 0; stats = { interval = 30; };", &c);
    ck_assert_int_eq(c.shutdown_grace_ms, 0);
    ck_assert_int_eq(c.stats_interval_ms, 30000);
    cw_config_free(&c);
    expect_ok(ORIGIN "shutdown_grace = 5L;", &c);
    ck_assert_int_eq(c.shutdown_grace_ms, 5000);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_bad_size)
{
    expect_err(ORIGIN "cache = {\n size = \"lots\"; };",
               "t.conf:3: cache.size: \"lots\" is not a size");
    expect_err(ORIGIN "cache = { size = \"1GB\"; };", "cache.size: \"1GB\" is not a size");
    expect_err(ORIGIN "cache = { size = -5; };", "cache.size: -5 is not a size in bytes");
    expect_err(ORIGIN "cache = { size = \"16777216T\"; };",
               "cache.size: \"16777216T\" is not a size");
    expect_err(ORIGIN "cache = { size = false; };", "cache.size: expected a size");
    expect_err(ORIGIN "cache = { size = \"1048575\"; };",
               "cache.size: 1048575 bytes is less than the minimum 1048576");
    expect_err(ORIGIN "cache = { max_object = 0; };", "cache.max_object: 0 bytes is less than");
}
END_TEST

START_TEST(test_config_size_limits)
{
    struct cw_config c;

    expect_ok(ORIGIN "cache = { size = \"1M\"; max_object = \"1M\"; };", &c);
    ck_assert_uint_eq(c.cache_size_bytes, 1048576);
    ck_assert_uint_eq(c.cache_max_object_bytes, 1048576);
    cw_config_free(&c);
    expect_ok(ORIGIN "cache = { size = 2097152; max_object = 1; };", &c);
    ck_assert_uint_eq(c.cache_size_bytes, 2097152);
    ck_assert_uint_eq(c.cache_max_object_bytes, 1);
    cw_config_free(&c);
    expect_err(ORIGIN "cache = { size = \"1M\";\n max_object = \"1025K\"; };",
               "t.conf:3: cache.max_object: max_object (1049600 bytes) is larger than size");
    /* Only size given: the default max_object (8M) no longer fits, and size is blamed. */
    expect_err(ORIGIN "cache = {\n size = \"4M\"; };", "t.conf:3: cache.size: max_object (8388608");
}
END_TEST

START_TEST(test_config_size_values)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {{"0", 0},
                {"8192", 8192},
                {"64k", 65536},
                {"64K", 65536},
                {"512M", 512ULL << 20},
                {"1g", 1ULL << 30},
                {"2T", 2ULL << 40},
                {"16777215T", 16777215ULL << 40}};
    static const char *const bad[] = {
        "", "K", "1.5G", "1GB", "1 G", "-1", "1X", "16777216T", "18446744073709551616"};
    uint64_t v;

    for (size_t i = 0; i < CW_ARRAY_LEN(good); i++) {
        ck_assert_msg(cw_config_parse_size(good[i].s, &v) == 0, "%s", good[i].s);
        ck_assert_uint_eq(v, good[i].v);
    }
    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        ck_assert_msg(cw_config_parse_size(bad[i], &v) == -EINVAL, "%s", bad[i]);
    }
    ck_assert_int_eq(cw_config_parse_size("18446744073709551615", &v), 0);
    ck_assert_uint_eq(v, UINT64_MAX);
}
END_TEST

START_TEST(test_config_bad_type)
{
    expect_err(ORIGIN "workers = \"two\";", "t.conf:2: workers: expected an integer, got a string");
    expect_err(ORIGIN "cache = 5;", "t.conf:2: cache: expected a group { ... }, got an integer");
    expect_err(ORIGIN "listen = 8080;", "t.conf:2: listen: expected a string");
    expect_err(ORIGIN "redis = { enabled = \"yes\"; };", "redis.enabled: expected a bool");
    expect_err(ORIGIN "log = { access = [ ]; };", "log.access: expected a string, got an array");
    expect_err("origins = \"api\";", "t.conf:1: origins: expected a list");
    expect_err("origins = ( \"api\" );", "t.conf:1: origins[0]: expected a group");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = 0; } );",
               "routes[0].origin: expected a string");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; refresh_ahead = \"x\"; } );",
               "routes[0].refresh_ahead: expected a number, got a string");
    expect_err(ORIGIN "purge = { allow = \"127.0.0.1\"; };", "purge.allow: expected a list");
    expect_err(ORIGIN "purge = { allow = [ 1 ]; };", "purge.allow[0]: expected a string");
}
END_TEST

START_TEST(test_config_unknown_origin)
{
    expect_err(ORIGIN "routes = (\n { match = \"/\"; origin = \"nope\"; } );",
               "t.conf:3: routes[0].origin: \"nope\" is not a defined origin");
}
END_TEST

START_TEST(test_config_duplicate_origin)
{
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; },\n"
               "            { name = \"a\"; url = \"http://b\"; } );",
               "t.conf:2: origins[1].name: \"a\" is already defined");
}
END_TEST

START_TEST(test_config_origin_fields)
{
    expect_err("origins = ( { name = \"a b\"; url = \"http://a\"; } );",
               "origins[0].name: \"a b\": use only letters");
    expect_err("origins = ( { name = \"\"; url = \"http://a\"; } );",
               "origins[0].name: must not be empty");
    expect_err("origins = (\n { url = \"http://a\"; } );", "t.conf:2: origins[0].name: missing");
    expect_err("origins = (\n { name = \"a\"; } );", "t.conf:2: origins[0].url: missing");
    expect_err("origins = ( );", "t.conf:1: origins: must not be empty");
    expect_err("workers = 2;", "t.conf: origins: missing (required)");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; max_conns = 0; } );",
               "origins[0].max_conns: 0 is out of range 1..");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; timeout = \"0s\"; } );",
               "origins[0].timeout: must be greater than 0");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; connect_timeout = 0; } );",
               "origins[0].connect_timeout: must be greater than 0");
}
END_TEST

START_TEST(test_config_origin_discovery)
{
    struct cw_config c;

    /* Defaults: resolve_max follows resolve; no resolver (resolv.conf). */
    expect_ok("origins = ( { name = \"a\"; url = \"http://a\"; resolve = \"20s\"; } );", &c);
    ck_assert_int_eq(c.origins[0].resolve_min_ms, 1000);
    ck_assert_int_eq(c.origins[0].resolve_max_ms, 20000);
    ck_assert_ptr_null(c.origins[0].srv);
    ck_assert_ptr_null(cw_config_origin_resolver(&c, &c.origins[0]));
    cw_config_free(&c);
    /* The top-level resolver is inherited; an origin's own wins. */
    expect_ok("resolver = \"127.0.0.1:5353,[::1]:53\";\n"
              "origins = ( { name = \"a\"; url = \"http://a\"; srv = \"_api._tcp.x.internal\";"
              " resolve_min = \"2s\"; resolve_max = \"1m\"; },\n"
              " { name = \"b\"; url = \"http://b\"; resolver = \"10.0.0.53\"; } );",
              &c);
    ck_assert_str_eq(c.origins[0].srv, "_api._tcp.x.internal");
    ck_assert_int_eq(c.origins[0].resolve_min_ms, 2000);
    ck_assert_int_eq(c.origins[0].resolve_max_ms, 60000);
    ck_assert_str_eq(cw_config_origin_resolver(&c, &c.origins[0]), "127.0.0.1:5353,[::1]:53");
    ck_assert_str_eq(cw_config_origin_resolver(&c, &c.origins[1]), "10.0.0.53");
    cw_config_free(&c);
    /* A short resolve_max takes the default minimum down with it. */
    expect_ok("origins = ( { name = \"a\"; url = \"http://a\"; resolve_max = \"500ms\"; } );", &c);
    ck_assert_int_eq(c.origins[0].resolve_min_ms, 500);
    cw_config_free(&c);

    expect_err("origins = ( { name = \"a\"; url = \"http://a\";\n resolve_min = \"10s\";"
               " resolve_max = \"5s\"; } );",
               "t.conf:2: origins[0].resolve_min: longer than resolve_max");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; srv = \"a b\"; } );",
               "origins[0].srv: \"a b\" is not a DNS name");
    expect_err("origins = ( { name = \"a\"; srv = \"_a._tcp.x\";\n"
               " servers = [ \"http://127.0.0.1:1\" ]; } );",
               "t.conf:2: origins[0].servers: an origin with srv takes its servers from DNS");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; resolver = \"dns.x:53\"; } );",
               "origins[0].resolver: \"dns.x:53\" is not a list of DNS server addresses");
    expect_err("resolver = \"127.0.0.1,\";\norigins = ( { name = \"a\"; url = \"http://a\"; } );",
               "t.conf:1: resolver: \"127.0.0.1,\" is not a list");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; resolve_min = \"10ms\"; } );",
               "origins[0].resolve_min:");
}
END_TEST

/* The TLS, timeout, queue and max_stale settings of an origin, their defaults and checks. */
START_TEST(test_config_origin_tls_and_queue)
{
    struct cw_config c;

    expect_ok("origins = ( { name = \"a\"; url = \"https://127.0.0.1:8443\"; } );", &c);
    ck_assert_int_eq(c.origins[0].queue, 1024);
    ck_assert_int_eq(c.origins[0].idle_timeout_ms, 60000);
    ck_assert_int_eq(c.origins[0].first_byte_timeout_ms, 0);
    ck_assert_int_eq(c.origins[0].total_timeout_ms, 0);
    ck_assert_int_eq(c.origins[0].breaker_max_stale_ms, 0);
    ck_assert_ptr_null(c.origins[0].sni);
    ck_assert_int_eq(c.origins[0].servers[0].max_conns, 0);
    cw_config_free(&c);
    expect_ok("origins = ( { name = \"a\"; url = \"https://127.0.0.1:8443\";\n"
              " tls_cert = \"/c.pem\"; tls_key = \"/k.pem\"; sni = \"API.example\";\n"
              " host = \"api.example:8443\"; first_byte_timeout = \"2s\";\n"
              " total_timeout = \"1m\"; idle_timeout = \"5s\"; queue = 0;\n"
              " queue_timeout = \"300ms\"; breaker = { max_stale = \"1h\"; };\n"
              " servers = [ \"https://127.0.0.1:8443 max_conns=8 weight=2\" ]; } );",
              &c);
    ck_assert_str_eq(c.origins[0].tls_cert, "/c.pem");
    ck_assert_int_eq(c.origins[0].tls_cert_line, 2);
    ck_assert_str_eq(c.origins[0].tls_key, "/k.pem");
    ck_assert_str_eq(c.origins[0].sni, "api.example");
    ck_assert_str_eq(c.origins[0].host, "api.example:8443");
    ck_assert_int_eq(c.origins[0].first_byte_timeout_ms, 2000);
    ck_assert_int_eq(c.origins[0].total_timeout_ms, 60000);
    ck_assert_int_eq(c.origins[0].idle_timeout_ms, 5000);
    ck_assert_int_eq(c.origins[0].queue, 0);
    ck_assert_int_eq(c.origins[0].queue_timeout_ms, 300);
    ck_assert_int_eq(c.origins[0].breaker_max_stale_ms, 3600000);
    ck_assert_int_eq(c.origins[0].servers[0].max_conns, 8);
    ck_assert_int_eq(c.origins[0].servers[0].weight, 2);
    cw_config_free(&c);
    expect_err("origins = ( { name = \"a\"; url = \"https://a\";\n tls_key = \"/k\"; } );",
               "t.conf:2: origins[0].tls_key: needs tls_cert");
    expect_err("origins = ( { name = \"a\"; url = \"https://a\"; sni = \"10.0.0.1\"; } );",
               "origins[0].sni: \"10.0.0.1\" is not a DNS name");
    expect_err("origins = ( { name = \"a\"; url = \"https://a\"; sni = \"a b\"; } );",
               "origins[0].sni: \"a b\" is not a DNS name");
    expect_err("origins = ( { name = \"a\"; url = \"https://a\"; host = \"a/b\"; } );",
               "origins[0].host: \"a/b\" is not a host[:port]");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\"; queue = 4097; } );",
               "origins[0].queue: 4097 is out of range 0..4096");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\";"
               " servers = [ \"http://a:1 max_conns=0\" ]; } );",
               "max_conns must be 1 to 4096");
    expect_err("origins = ( { name = \"a\"; url = \"http://a\";"
               " servers = [ \"http://a:1 max_conns=4097\" ]; } );",
               "max_conns must be 1 to 4096");
}
END_TEST

START_TEST(test_config_bad_url)
{
    static const char *const bad[] = {
        "ftp://a",        "http://",        "http://:80",     "http://a:0",
        "http://a:65536", "http://a:x",     "http://u@a",     "http://a/?x=1",
        "http://a/#f",    "127.0.0.1:9000", "http://[::1",    "http://[zz]:80",
        "http://a b",     "http//a",        "http://a:80:90", "https:/a",
    };
    char text[256];

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        snprintf(text, sizeof(text), "origins = ( { name = \"a\"; url = \"%s\"; } );", bad[i]);
        expect_err(text, "t.conf:1: origins[0].url: \"");
        expect_err(text, "is not an origin URL");
    }
}
END_TEST

START_TEST(test_config_url_normalised)
{
    static const struct {
        const char *in, *out;
    } cases[] = {{"HTTP://a:81/api/", "http://a:81/api"},
                 {"https://[::1]:8443", "https://[::1]:8443"},
                 {"http://a/", "http://a"},
                 {"http://a//", "http://a"},
                 {"http://10.0.0.1:65535/v1", "http://10.0.0.1:65535/v1"}};
    char text[256];
    struct cw_config c;

    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        snprintf(text, sizeof(text), "origins = ( { name = \"a\"; url = \"%s\"; } );", cases[i].in);
        expect_ok(text, &c);
        ck_assert_str_eq(c.origins[0].url, cases[i].out);
        cw_config_free(&c);
    }
}
END_TEST

START_TEST(test_config_route_required)
{
    expect_err(ORIGIN "routes = (\n { origin = \"api\"; } );",
               "t.conf:3: routes[0].match: missing");
    expect_err(ORIGIN "routes = (\n { match = \"/\"; } );", "t.conf:3: routes[0].origin: missing");
    expect_err(ORIGIN "routes = ( { match = \"api\"; origin = \"api\"; } );",
               "routes[0].match: must start with '/'");
    expect_err(ORIGIN "routes = ( { match = \"/a b\"; origin = \"api\"; } );",
               "routes[0].match: must not contain spaces");
    expect_err(ORIGIN "routes = ( 1 );", "routes[0]: expected a group");
    expect_err(ORIGIN "routes = { };", "routes: expected a list");
}
END_TEST

START_TEST(test_config_route_host)
{
    struct cw_config c;

    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; host = \"a.com:80\"; } );",
               "routes[0].host: must not have a port");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; host = \"a!b\"; } );",
               "routes[0].host: \"a!b\" is not a host name");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; host = \"[::1]:80\"; } );",
               "routes[0].host: must not have a port");
    expect_ok(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; host = \"[::1]\"; },\n"
                     "           { match = \"/\"; origin = \"api\"; host = \"\"; } );",
              &c);
    ck_assert_str_eq(c.routes[0].host, "[::1]");
    ck_assert_ptr_null(c.routes[1].host);
    ck_assert_uint_eq(c.routes[1].host_len, 0);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_bad_listen)
{
    static const char *const bad[] = {
        "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:80", "[::1]:x",      "host:80x",
        "",          "[::1]",       "a b:80",          "[]:80",  "[1.2.3.4]:80", "h:123456"};
    char text[256];

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        snprintf(text, sizeof(text), ORIGIN "listen = \"%s\";", bad[i]);
        expect_err(text, "t.conf:2: listen: \"");
        expect_err(text, "is not host:port");
    }
    expect_err(ORIGIN "stats = { listen = \"9145\"; };", "t.conf:2: stats.listen: \"9145\" is not");
}
END_TEST

START_TEST(test_config_listen_forms)
{
    struct cw_config c;

    expect_ok(ORIGIN "listen = \":8080\"; stats = { listen = \"\"; textfile = \"/t/cw.prom\"; };",
              &c);
    ck_assert_str_eq(c.listen, ":8080");
    ck_assert_ptr_null(c.stats_listen);
    ck_assert_str_eq(c.stats_textfile, "/t/cw.prom");
    cw_config_free(&c);
    expect_ok(ORIGIN "listen = \"[::1]:65535\"; stats = { listen = \"localhost:1\"; };", &c);
    ck_assert_str_eq(c.listen, "[::1]:65535");
    ck_assert_str_eq(c.stats_listen, "localhost:1");
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_split_hostport)
{
    char host[64];
    int port;

    ck_assert_int_eq(cw_config_split_hostport("127.0.0.1:8080", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 8080);
    ck_assert_int_eq(cw_config_split_hostport("[::1]:1", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 1);
    ck_assert_int_eq(cw_config_split_hostport(":65535", host, sizeof(host), &port), 0);
    ck_assert_str_eq(host, "");
    ck_assert_int_eq(port, 65535);
    ck_assert_int_eq(cw_config_split_hostport("example.com:80", host, 12, &port), 0);
    ck_assert_int_eq(cw_config_split_hostport("example.com:80", host, 11, &port), -EINVAL);
    ck_assert_int_eq(cw_config_split_hostport("a:65536", host, sizeof(host), &port), -EINVAL);
    ck_assert_int_eq(cw_config_split_hostport(NULL, host, sizeof(host), &port), -EINVAL);
}
END_TEST

START_TEST(test_config_ranges)
{
    struct cw_config c;

    expect_ok(ORIGIN "workers = 0; redis = { port = 65535; };", &c);
    ck_assert_int_eq(c.workers, 0);
    ck_assert_int_eq(c.redis_port, 65535);
    cw_config_free(&c);
    expect_ok(ORIGIN "workers = 256; redis = { port = 1; enabled = false; };", &c);
    ck_assert_int_eq(c.workers, CW_LIMIT_WORKERS);
    ck_assert(!c.redis_enabled);
    cw_config_free(&c);
    expect_err(ORIGIN "workers = 257;", "t.conf:2: workers: 257 is out of range 0..256");
    expect_err(ORIGIN "workers = -1;", "t.conf:2: workers: -1 is out of range 0..256");
    expect_err(ORIGIN "workers = 4294967296L;", "workers: 4294967296 is out of range");
    expect_err(ORIGIN "redis = { port = 0; };", "redis.port: 0 is out of range 1..65535");
    expect_err(ORIGIN "redis = { port = 65536; };", "redis.port: 65536 is out of range 1..65535");
    expect_err(ORIGIN "redis = { timeout = \"0ms\"; };", "redis.timeout: must be greater than 0");
    expect_err(ORIGIN "redis = { host = \"\"; };", "redis.host: must not be empty");
    expect_err(ORIGIN "redis = { channel = \"\"; };", "redis.channel: must not be empty");
    expect_err(ORIGIN "stats = { interval = 0; };", "stats.interval: must be greater than 0");
    expect_err(ORIGIN "cache = { path = \"\"; };", "cache.path: must not be empty");
}
END_TEST

START_TEST(test_config_route_ranges)
{
    struct cw_config c;

    expect_err(
        ORIGIN
        "routes = ( { match = \"/\"; origin = \"api\";\n min_ttl = \"2m\"; max_ttl = \"1m\"; } );",
        "t.conf:3: routes[0].min_ttl: min_ttl 120000 ms is greater than max_ttl 60000 ms");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; min_ttl = \"11m\"; } );",
               "routes[0].min_ttl: min_ttl 660000 ms is greater than max_ttl 600000 ms");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; refresh_ahead = 1.0; } );",
               "routes[0].refresh_ahead: 1 is not in [0, 1)");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; refresh_ahead = -0.1; } );",
               "routes[0].refresh_ahead: -0.1 is not in [0, 1)");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; refresh_ahead = 1e999; } );",
               "routes[0].refresh_ahead: inf is not in [0, 1)");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; stale_target = 0; } );",
               "routes[0].stale_target: 0 is not in (0, 1)");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; stale_target = 1; } );",
               "routes[0].stale_target: 1 is not in (0, 1)");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; lock_timeout = 0; } );",
               "routes[0].lock_timeout: must be greater than 0");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; ttl = -1; } );",
               "routes[0].ttl: -1 is not a duration");
    expect_ok(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; ttl = 0; min_ttl = 0;\n"
                     " max_ttl = 0; stale_target = 0.999; refresh_ahead = 0.999; } );",
              &c);
    ck_assert_int_eq(c.routes[0].ttl_ms, 0);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_log)
{
    struct cw_config c;

    expect_ok(ORIGIN "log = { level = \"debug\"; access = \"-\"; format = \"json\"; };", &c);
    ck_assert_int_eq(c.log_level, CW_LOG_DEBUG);
    ck_assert_str_eq(c.log_access, "-");
    ck_assert_int_eq(c.log_format, CW_CONFIG_LOG_JSON);
    cw_config_free(&c);
    expect_err(ORIGIN "log = {\n level = \"loud\"; };",
               "t.conf:3: log.level: \"loud\" is not a level");
    expect_err(ORIGIN "log = { format = \"xml\"; };",
               "log.format: \"xml\" is not \"combined\" or \"json\"");
}
END_TEST

START_TEST(test_config_control_socket)
{
    char text[512], path[200];

    memset(path, 'a', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    snprintf(text, sizeof(text), ORIGIN "control = { socket = \"/%s\"; };", path);
    expect_err(text, "control.socket: longer than 107 bytes");
    expect_err(ORIGIN "control = { socket = \"\"; };", "control.socket: must not be empty");
}
END_TEST

/* control.group: the socket file's group; "" (the default) = the daemon's own. */
START_TEST(test_config_control_group)
{
    struct cw_config c;

    expect_ok(ORIGIN "control = { socket = \"/run/x.sock\"; group = \"adm\"; };", &c);
    ck_assert_str_eq(c.control_socket, "/run/x.sock");
    ck_assert_str_eq(c.control_group, "adm");
    cw_config_free(&c);
    expect_ok(ORIGIN "control = { group = \"\"; };", &c);
    ck_assert_ptr_null(c.control_group);
    cw_config_free(&c);
    expect_err(ORIGIN "control = { group = 5; };", "control.group: ");
}
END_TEST

START_TEST(test_config_purge_allow)
{
    struct cw_config c;
    uint8_t a4[4], a6[16];

    expect_ok(ORIGIN "purge = { allow = [ \"10.0.0.0/8\", \"fd00::/8\", \"192.0.2.7\" ]; };", &c);
    ck_assert_uint_eq(c.purge_allow_count, 3);
    inet_pton(AF_INET, "10.1.2.3", a4);
    ck_assert(cw_config_purge_allowed(&c, AF_INET, a4));
    inet_pton(AF_INET, "192.0.2.7", a4);
    ck_assert(cw_config_purge_allowed(&c, AF_INET, a4));
    inet_pton(AF_INET, "192.0.2.8", a4);
    ck_assert(!cw_config_purge_allowed(&c, AF_INET, a4));
    inet_pton(AF_INET, "11.0.0.1", a4);
    ck_assert(!cw_config_purge_allowed(&c, AF_INET, a4));
    inet_pton(AF_INET6, "fd12::1", a6);
    ck_assert(cw_config_purge_allowed(&c, AF_INET6, a6));
    inet_pton(AF_INET6, "fe80::1", a6);
    ck_assert(!cw_config_purge_allowed(&c, AF_INET6, a6));
    inet_pton(AF_INET6, "::ffff:10.9.9.9", a6); /* dual-stack socket peer */
    ck_assert(cw_config_purge_allowed(&c, AF_INET6, a6));
    inet_pton(AF_INET6, "::ffff:11.9.9.9", a6);
    ck_assert(!cw_config_purge_allowed(&c, AF_INET6, a6));
    cw_config_free(&c);
    expect_ok(ORIGIN "purge = { allow = [ ]; };", &c);
    ck_assert_uint_eq(c.purge_allow_count, 0);
    inet_pton(AF_INET, "127.0.0.1", a4);
    ck_assert(!cw_config_purge_allowed(&c, AF_INET, a4));
    cw_config_free(&c);
    expect_err(ORIGIN "purge = { allow = [\n \"10.0.0.1/8\" ]; };",
               "t.conf:3: purge.allow[0]: \"10.0.0.1/8\" is not an address or range");
    expect_err(ORIGIN "purge = { allow = [ \"localhost\" ]; };", "purge.allow[0]: \"localhost\"");
}
END_TEST

START_TEST(test_config_client_timeouts)
{
    struct cw_config c;

    expect_ok(ORIGIN "client_header_timeout = \"250ms\"; client_body_timeout = 5;", &c);
    ck_assert_int_eq(c.client_header_timeout_ms, 250);
    ck_assert_int_eq(c.client_body_timeout_ms, 5000);
    cw_config_free(&c);
    expect_ok(ORIGIN "client_header_timeout = \"1d\"; client_body_timeout = \"1ms\";", &c);
    ck_assert_int_eq(c.client_header_timeout_ms, 86400000);
    ck_assert_int_eq(c.client_body_timeout_ms, 1);
    cw_config_free(&c);
    expect_err(ORIGIN "client_header_timeout = 0;",
               "t.conf:2: client_header_timeout: must be greater than 0");
    expect_err(ORIGIN "\nclient_body_timeout = \"0s\";",
               "t.conf:3: client_body_timeout: must be greater than 0");
    expect_err(ORIGIN "client_header_timeout = \"soon\";",
               "t.conf:2: client_header_timeout: \"soon\" is not a duration");
    expect_err(
        ORIGIN "client_body_timeout = true;",
        "t.conf:2: client_body_timeout: expected a duration (\"30s\" or seconds), got a bool");
    expect_err(ORIGIN "client_body_timeout = \"3000000000s\";",
               "t.conf:2: client_body_timeout: is longer than 2^31 seconds");
    expect_err(ORIGIN "client_timeout = \"1s\";", "t.conf:2: client_timeout: unknown setting");
}
END_TEST

START_TEST(test_config_strip_headers)
{
    struct cw_config c;

    expect_ok(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                     "  strip_headers = [ \"X-Debug\", \"X-Forwarded-Host\", \"TE\" ]; } );",
              &c);
    ck_assert_uint_eq(c.routes[0].strip_headers_count, 3);
    ck_assert_str_eq(c.routes[0].strip_headers[0], "x-debug");
    ck_assert_str_eq(c.routes[0].strip_headers[1], "x-forwarded-host");
    ck_assert_str_eq(c.routes[0].strip_headers[2], "te");
    cw_config_free(&c);
    expect_ok(ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; strip_headers = [ ]; } );", &c);
    ck_assert_uint_eq(c.routes[0].strip_headers_count, 0);
    cw_config_free(&c);
    expect_err(ORIGIN
               "routes = ( { match = \"/\"; origin = \"api\";\n strip_headers = [ \"X Y\" ]; } );",
               "t.conf:3: routes[0].strip_headers[0]: \"X Y\" is not a header name");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                      " strip_headers = [ \"a\", \"X-A:\" ]; } );",
               "t.conf:3: routes[0].strip_headers[1]: \"X-A:\" is not a header name");
    expect_err(ORIGIN
               "routes = ( { match = \"/\"; origin = \"api\";\n strip_headers = [ \"\" ]; } );",
               "t.conf:3: routes[0].strip_headers[0]: \"\" is not a header name");
    expect_err(ORIGIN
               "routes = ( { match = \"/\"; origin = \"api\";\n strip_headers = \"X-Debug\"; } );",
               "t.conf:3: routes[0].strip_headers: expected a list [ \"...\", ... ], got a string");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n strip_headers = [ 1 ]; } );",
               "t.conf:3: routes[0].strip_headers[0]: expected a string, got an integer");
}
END_TEST

START_TEST(test_config_trust_forwarded)
{
    struct cw_config c;
    const struct cw_config_route *r;
    uint8_t a4[4], a6[16];

    expect_ok(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                     "  trust_forwarded = [ \"10.0.0.0/8\", \"::1/128\", \"192.0.2.7\" ]; },\n"
                     "  { match = \"/b\"; origin = \"api\"; } );",
              &c);
    r = &c.routes[0];
    ck_assert_uint_eq(r->trust_forwarded_count, 3);
    ck_assert_int_eq(r->trust_forwarded[0].family, AF_INET);
    ck_assert_int_eq(r->trust_forwarded[0].prefix_len, 8);
    ck_assert_int_eq(r->trust_forwarded[1].family, AF_INET6);
    ck_assert_int_eq(r->trust_forwarded[1].prefix_len, 128);
    ck_assert_int_eq(r->trust_forwarded[2].prefix_len, 32);
    inet_pton(AF_INET, "10.200.0.1", a4);
    ck_assert(cw_config_route_trusts(r, AF_INET, a4));
    ck_assert(!cw_config_route_trusts(&c.routes[1], AF_INET, a4)); /* default: nobody */
    ck_assert(!cw_config_purge_allowed(&c, AF_INET, a4));          /* separate from purge.allow */
    inet_pton(AF_INET, "192.0.2.7", a4);
    ck_assert(cw_config_route_trusts(r, AF_INET, a4));
    inet_pton(AF_INET, "192.0.2.8", a4);
    ck_assert(!cw_config_route_trusts(r, AF_INET, a4));
    inet_pton(AF_INET, "127.0.0.1", a4);
    ck_assert(!cw_config_route_trusts(r, AF_INET, a4));
    inet_pton(AF_INET6, "::1", a6);
    ck_assert(cw_config_route_trusts(r, AF_INET6, a6));
    inet_pton(AF_INET6, "::2", a6);
    ck_assert(!cw_config_route_trusts(r, AF_INET6, a6));
    inet_pton(AF_INET6, "::ffff:10.1.1.1", a6);
    ck_assert(cw_config_route_trusts(r, AF_INET6, a6));
    cw_config_free(&c);
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                      " trust_forwarded = [ \"10.0.0.1/8\" ]; } );",
               "t.conf:3: routes[0].trust_forwarded[0]: \"10.0.0.1/8\" is not an address or range "
               "(no host bits past /len)");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                      " trust_forwarded = [ \"::1/128\", \"proxy.local\" ]; } );",
               "t.conf:3: routes[0].trust_forwarded[1]: \"proxy.local\" is not an address");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                      " trust_forwarded = \"10.0.0.0/8\"; } );",
               "t.conf:3: routes[0].trust_forwarded: expected a list [ \"10.0.0.0/8\", ... ], "
               "got a string");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                      " trust_forwarded = [ true ]; } );",
               "t.conf:3: routes[0].trust_forwarded[0]: expected a string, got a bool");
}
END_TEST

/* A route whose trust_forwarded holds n addresses. */
static char *trust_text(int n)
{
    size_t size = 128 + (size_t)n * 24;
    char *t = malloc(size);
    size_t used;

    ck_assert_ptr_nonnull(t);
    used = (size_t)snprintf(t, size,
                            ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n"
                                   " trust_forwarded = [");
    for (int i = 0; i < n; i++) {
        used += (size_t)snprintf(t + used, size - used, "%s\"10.1.%d.%d\"", i ? ", " : "", i / 256,
                                 i % 256);
    }
    snprintf(t + used, size - used, "]; } );");
    return t;
}

START_TEST(test_config_limit_trust_forwarded)
{
    struct cw_config c;
    uint8_t a4[4];
    char *t = trust_text(CW_LIMIT_TRUST_FORWARDED);

    expect_ok(t, &c);
    ck_assert_uint_eq(c.routes[0].trust_forwarded_count, CW_LIMIT_TRUST_FORWARDED);
    inet_pton(AF_INET, "10.1.0.63", a4);
    ck_assert(cw_config_route_trusts(&c.routes[0], AF_INET, a4));
    inet_pton(AF_INET, "10.1.0.64", a4);
    ck_assert(!cw_config_route_trusts(&c.routes[0], AF_INET, a4));
    cw_config_free(&c);
    free(t);
    t = trust_text(CW_LIMIT_TRUST_FORWARDED + 1);
    expect_err(t, "t.conf:3: routes[0].trust_forwarded: more than 64 entries");
    free(t);
}
END_TEST

START_TEST(test_config_cookies)
{
    static const struct {
        const char *v;
        enum cw_config_cookies mode;
    } cases[] = {{"pass", CW_CONFIG_COOKIES_PASS},
                 {"ignore", CW_CONFIG_COOKIES_IGNORE},
                 {"key", CW_CONFIG_COOKIES_KEY}};
    char text[512];
    struct cw_config c;

    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        snprintf(text, sizeof(text),
                 ORIGIN "routes = ( { match = \"/\"; origin = \"api\"; cookies = \"%s\"; } );",
                 cases[i].v);
        expect_ok(text, &c);
        ck_assert_int_eq(c.routes[0].cookies, cases[i].mode);
        cw_config_free(&c);
    }
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n cookies = \"Key\"; } );",
               "t.conf:3: routes[0].cookies: \"Key\" is not \"pass\", \"ignore\" or \"key\"");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n cookies = \"\"; } );",
               "t.conf:3: routes[0].cookies: \"\" is not \"pass\", \"ignore\" or \"key\"");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n cookies = true; } );",
               "t.conf:3: routes[0].cookies: expected a string, got a bool");
    expect_err(ORIGIN "routes = ( { match = \"/\"; origin = \"api\";\n cookies = [ \"key\" ]; } );",
               "t.conf:3: routes[0].cookies: expected a string, got an array");
}
END_TEST

START_TEST(test_config_cidr_match)
{
    struct cw_config_cidr list[3];
    uint8_t a4[4], a6[16];

    ck_assert_int_eq(cw_config_parse_cidr("0.0.0.0/0", &list[0]), 0);
    ck_assert_int_eq(cw_config_parse_cidr("2001:db8::/33", &list[1]), 0);
    ck_assert_int_eq(cw_config_parse_cidr("198.51.100.0/25", &list[2]), 0);
    inet_pton(AF_INET, "203.0.113.9", a4);
    ck_assert(cw_config_cidr_match(list, 1, AF_INET, a4)); /* /0 covers every IPv4 address */
    ck_assert(!cw_config_cidr_match(list + 1, 2, AF_INET, a4));
    ck_assert(!cw_config_cidr_match(NULL, 0, AF_INET, a4));
    inet_pton(AF_INET, "198.51.100.127", a4);
    ck_assert(cw_config_cidr_match(list + 1, 2, AF_INET, a4));
    inet_pton(AF_INET, "198.51.100.128", a4);
    ck_assert(!cw_config_cidr_match(list + 1, 2, AF_INET, a4));
    inet_pton(AF_INET6, "2001:db8:7fff::1", a6);
    ck_assert(cw_config_cidr_match(list, 3, AF_INET6, a6));
    ck_assert(!cw_config_cidr_match(list, 1, AF_INET6, a6)); /* IPv4 /0 is not IPv6 */
    inet_pton(AF_INET6, "2001:db8:8000::1", a6);
    ck_assert(!cw_config_cidr_match(list + 1, 1, AF_INET6, a6));
    inet_pton(AF_INET6, "::ffff:198.51.100.1", a6);
    ck_assert(cw_config_cidr_match(list + 2, 1, AF_INET6, a6));
    inet_pton(AF_INET6, "::fffe:198.51.100.1", a6); /* not a mapped address */
    ck_assert(!cw_config_cidr_match(list + 2, 1, AF_INET6, a6));
}
END_TEST

START_TEST(test_config_cidr_values)
{
    static const struct {
        const char *s;
        int family, len;
    } good[] = {{"127.0.0.1/32", AF_INET, 32}, {"::1/128", AF_INET6, 128},
                {"10.0.0.0/8", AF_INET, 8},    {"0.0.0.0/0", AF_INET, 0},
                {"::/0", AF_INET6, 0},         {"192.0.2.1", AF_INET, 32},
                {"2001:db8::", AF_INET6, 128}, {"2001:db8::/32", AF_INET6, 32}};
    static const char *const bad[] = {
        "",           "/8",           "10.0.0.0/33", "::/129",         "10.0.0.1/8",  "10.0.0.0/",
        "10.0.0.0/x", "10.0.0.0/8/8", "300.0.0.1",   "2001:db8::1/32", "10.0.0.0/-1", "a.b.c.d"};
    struct cw_config_cidr c;

    for (size_t i = 0; i < CW_ARRAY_LEN(good); i++) {
        ck_assert_msg(cw_config_parse_cidr(good[i].s, &c) == 0, "%s", good[i].s);
        ck_assert_int_eq(c.family, good[i].family);
        ck_assert_int_eq(c.prefix_len, good[i].len);
    }
    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        ck_assert_msg(cw_config_parse_cidr(bad[i], &c) == -EINVAL, "%s", bad[i]);
    }
}
END_TEST

/* Text with n entries of kind: origins o0..o(n-1), or n routes to one origin, or n
 * purge.allow addresses. */
static char *many_text(const char *kind, int n)
{
    size_t size = 128 + (size_t)n * 96;
    char *t = malloc(size);
    size_t used = 0;

    ck_assert_ptr_nonnull(t);
    if (strcmp(kind, "origins") != 0) used = (size_t)snprintf(t, size, ORIGIN);
    if (strcmp(kind, "purge") == 0) {
        used += (size_t)snprintf(t + used, size - used, "purge = { allow = [");
    } else {
        used += (size_t)snprintf(t + used, size - used, "%s = (", kind);
    }
    for (int i = 0; i < n; i++) {
        const char *sep = i ? ",\n" : "\n";
        if (strcmp(kind, "origins") == 0) {
            used += (size_t)snprintf(t + used, size - used,
                                     "%s{ name = \"o%d\"; url = \"http://h%d\"; }", sep, i, i);
        } else if (strcmp(kind, "routes") == 0) {
            used += (size_t)snprintf(t + used, size - used,
                                     "%s{ match = \"/r%d\"; origin = \"api\"; }", sep, i);
        } else {
            used +=
                (size_t)snprintf(t + used, size - used, "%s\"10.0.%d.%d\"", sep, i / 256, i % 256);
        }
    }
    snprintf(t + used, size - used, "%s", strcmp(kind, "purge") == 0 ? " ]; };" : " );");
    return t;
}

START_TEST(test_config_limit_origins)
{
    struct cw_config c;
    char *t = many_text("origins", CW_LIMIT_ORIGINS);
    char want[64];

    expect_ok(t, &c);
    ck_assert_uint_eq(c.origin_count, CW_LIMIT_ORIGINS);
    cw_config_free(&c);
    free(t);
    t = many_text("origins", CW_LIMIT_ORIGINS + 1);
    snprintf(want, sizeof(want), "t.conf:%d: origins[%d]: more than %d entries",
             CW_LIMIT_ORIGINS + 2, CW_LIMIT_ORIGINS, CW_LIMIT_ORIGINS);
    expect_err(t, want);
    free(t);
}
END_TEST

START_TEST(test_config_limit_routes)
{
    struct cw_config c;
    char *t = many_text("routes", CW_LIMIT_ROUTES);
    char want[64];

    expect_ok(t, &c);
    ck_assert_uint_eq(c.route_count, CW_LIMIT_ROUTES);
    ck_assert_str_eq(c.routes[CW_LIMIT_ROUTES - 1].match, "/r255");
    cw_config_free(&c);
    free(t);
    t = many_text("routes", CW_LIMIT_ROUTES + 1);
    snprintf(want, sizeof(want), "t.conf:%d: routes[%d]: more than %d entries", CW_LIMIT_ROUTES + 3,
             CW_LIMIT_ROUTES, CW_LIMIT_ROUTES);
    expect_err(t, want);
    free(t);
}
END_TEST

START_TEST(test_config_limit_purge_allow)
{
    struct cw_config c;
    char *t = many_text("purge", CW_LIMIT_PURGE_ALLOW);

    expect_ok(t, &c);
    ck_assert_uint_eq(c.purge_allow_count, CW_LIMIT_PURGE_ALLOW);
    cw_config_free(&c);
    free(t);
    t = many_text("purge", CW_LIMIT_PURGE_ALLOW + 1);
    expect_err(t, "purge.allow: more than 64 entries");
    free(t);
}
END_TEST

START_TEST(test_config_long_value_quoted_safely)
{
    char text[600], v[400];
    struct cw_config c;
    struct cw_err e;

    memset(v, 'x', sizeof(v) - 1);
    v[sizeof(v) - 1] = '\0';
    snprintf(text, sizeof(text), ORIGIN "log = { level = \"%s\\n\"; };", v);
    ck_assert_int_eq(parse(text, &c, &e), -EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "t.conf:2: log.level: \"xxxx"));
    ck_assert_ptr_nonnull(strstr(e.msg, "...\" is not a level"));
    ck_assert_ptr_null(strchr(e.msg, '\n'));
}
END_TEST

START_TEST(test_config_free_null_and_zeroed)
{
    struct cw_config c;

    memset(&c, 0, sizeof(c));
    cw_config_free(NULL);
    cw_config_free(&c);
    cw_config_free(&c);
    ck_assert(is_zero(&c));
}
END_TEST

/* Every prefix of the example either parses or fails cleanly with a message. */
START_TEST(test_config_truncated_example)
{
    FILE *f = fopen("etc/cachewarp.conf", "r");
    static char buf[65536];
    size_t len;
    struct cw_config c;
    struct cw_err e;

    ck_assert_ptr_nonnull(f);
    len = fread(buf, 1, sizeof(buf), f);
    ck_assert(len < sizeof(buf) && !ferror(f)); /* the whole example, not a prefix of it */
    fclose(f);
    for (size_t n = 0; n <= len; n += 7) {
        int rc = cw_config_parse(buf, n, "t.conf", &c, &e);
        if (rc == 0) {
            cw_config_free(&c);
        } else {
            ck_assert_int_eq(rc, -EINVAL);
            ck_assert_msg(strncmp(e.msg, "t.conf", 6) == 0, "%s", e.msg);
            ck_assert(is_zero(&c));
        }
    }
}
END_TEST

START_TEST(test_config_redis_defaults)
{
    struct cw_config c;

    expect_ok(ORIGIN, &c);
    ck_assert_int_eq(c.redis_mode, CW_CONFIG_REDIS_STANDALONE);
    ck_assert_str_eq(c.redis_prefix, "cw:");
    ck_assert_str_eq(c.redis_master, "mymaster");
    ck_assert_int_eq(c.redis_connect_timeout_ms, 250);
    ck_assert_int_eq(c.redis_db, 0);
    ck_assert_ptr_null(c.redis_socket);
    ck_assert_ptr_null(c.redis_user);
    ck_assert_ptr_null(c.redis_password);
    ck_assert_uint_eq(c.redis_sentinel_count, 0);
    ck_assert_uint_eq(c.redis_node_count, 0);
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_redis_modes)
{
    struct cw_config c;

    expect_ok(ORIGIN "redis = { mode = \"sentinel\"; master = \"m1\";\n"
                     "  sentinels = [ \"127.0.0.1:26379\", \"[::1]:26380\" ]; db = 3; };",
              &c);
    ck_assert_int_eq(c.redis_mode, CW_CONFIG_REDIS_SENTINEL);
    ck_assert_str_eq(c.redis_master, "m1");
    ck_assert_uint_eq(c.redis_sentinel_count, 2);
    ck_assert_str_eq(c.redis_sentinels[1], "[::1]:26380");
    ck_assert_int_eq(c.redis_db, 3);
    cw_config_free(&c);
    expect_ok(ORIGIN "redis = { mode = \"cluster\"; nodes = [ \"10.0.0.1:7000\" ];\n"
                     "  prefix = \"app1:\"; connect_timeout = \"100ms\"; timeout = \"5ms\"; };",
              &c);
    ck_assert_int_eq(c.redis_mode, CW_CONFIG_REDIS_CLUSTER);
    ck_assert_uint_eq(c.redis_node_count, 1);
    ck_assert_str_eq(c.redis_nodes[0], "10.0.0.1:7000");
    ck_assert_str_eq(c.redis_prefix, "app1:");
    ck_assert_int_eq(c.redis_connect_timeout_ms, 100);
    ck_assert_int_eq(c.redis_timeout_ms, 5);
    cw_config_free(&c);
    expect_ok(ORIGIN "redis = { socket = \"/run/redis.sock\"; user = \"cw\";\n"
                     "  password_env = \"CW_REDIS_PASS\"; };",
              &c);
    ck_assert_str_eq(c.redis_socket, "/run/redis.sock");
    ck_assert_str_eq(c.redis_user, "cw");
    ck_assert_str_eq(c.redis_password_env, "CW_REDIS_PASS");
    cw_config_free(&c);
}
END_TEST

START_TEST(test_config_redis_errors)
{
    expect_err(ORIGIN "redis = { mode = \"ring\"; };",
               "t.conf:2: redis.mode: \"ring\" is not \"standalone\", \"sentinel\" or \"cluster\"");
    expect_err(ORIGIN "redis = { mode = \"sentinel\"; };", "t.conf:2: redis.sentinels: missing");
    expect_err(ORIGIN "redis = { mode = \"cluster\"; };", "t.conf:2: redis.nodes: missing");
    expect_err(ORIGIN "redis = { mode = \"cluster\";\n nodes = [ \"a:1\" ];\n db = 2; };",
               "t.conf:4: redis.db: a cluster has only db 0");
    expect_err(ORIGIN "redis = {\n nodes = [ \"a:1\" ]; };",
               "redis: sentinels or nodes given: set mode");
    expect_err(ORIGIN "redis = { mode = \"sentinel\";\n sentinels = [ \"a\" ]; };",
               "t.conf:3: redis.sentinels[0]: \"a\" is not host:port");
    expect_err(ORIGIN "redis = { mode = \"cluster\"; nodes = [ ]; };",
               "redis.nodes: must not be empty");
    expect_err(ORIGIN "redis = { mode = \"cluster\"; nodes = \"a:1\"; };",
               "redis.nodes: expected a list");
    expect_err(ORIGIN "redis = { mode = \"cluster\"; nodes = [ \"a:1\" ];\n socket = \"/s\"; };",
               "t.conf:3: redis.socket: only in standalone mode");
    expect_err(ORIGIN "redis = { password = \"a\";\n password_file = \"/f\"; };",
               "t.conf:3: redis.password_file: give one of password, password_file, "
               "password_env");
    expect_err(ORIGIN "redis = {\n user = \"u\"; };",
               "t.conf:3: redis.user: a user needs a password");
    expect_err(ORIGIN "redis = { password_env = \"1X\"; };",
               "redis.password_env: is not an environment variable name");
    expect_err(ORIGIN "redis = { prefix = \"a{b}:\"; };",
               "redis.prefix: must not contain '{' or '}' (hash tag)");
    expect_err(ORIGIN "redis = { prefix = \"a b\"; };", "redis.prefix: must not contain spaces");
    expect_err(ORIGIN "redis = { prefix = \"\"; };", "redis.prefix: must not be empty");
    expect_err(ORIGIN "redis = { db = -1; };", "redis.db: -1 is out of range 0..1023");
    expect_err(ORIGIN "redis = { connect_timeout = \"0s\"; };",
               "redis.connect_timeout: must be greater than 0");
    expect_err(ORIGIN "redis = { master = \"\"; };", "redis.master: must not be empty");
    expect_err(ORIGIN "redis = { sokcet = \"/s\"; };", "t.conf:2: redis.sokcet: unknown setting");
}
END_TEST

START_TEST(test_config_redis_limits)
{
    char text[2048];
    size_t used;
    struct cw_config c;

    used = (size_t)snprintf(text, sizeof(text), ORIGIN "redis = { mode = \"cluster\"; nodes = [");
    for (int i = 0; i < CW_LIMIT_REDIS_ADDRS; i++) {
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\"n%d:1\"", i ? "," : "", i);
    }
    snprintf(text + used, sizeof(text) - used, " ]; };");
    expect_ok(text, &c);
    ck_assert_uint_eq(c.redis_node_count, CW_LIMIT_REDIS_ADDRS);
    cw_config_free(&c);
    snprintf(text + used, sizeof(text) - used, ", \"x:1\" ]; };");
    expect_err(text, "redis.nodes: more than 16 entries");
    expect_ok(ORIGIN "redis = { db = 1023; prefix = "
                     "\"0123456789012345678901234567890123456789012345678901234567890123\"; };",
              &c);
    cw_config_free(&c);
    expect_err(ORIGIN "redis = { db = 1024; };", "redis.db: 1024 is out of range 0..1023");
    expect_err(ORIGIN "redis = { prefix = "
                      "\"0123456789012345678901234567890123456789012345678901234567890123x\"; };",
               "redis.prefix: longer than 64 bytes");
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_config_example_parses);
    tcase_add_test(tc, test_config_defaults_from_minimal);
    tcase_add_test(tc, test_config_default_route_when_none);
    tcase_add_test(tc, test_config_default_route_uses_first_origin);
    tcase_add_test(tc, test_config_route_settings);
    tcase_add_test(tc, test_config_query_modes);
    tcase_add_test(tc, test_config_list_limits);
    tcase_add_test(tc, test_config_key_headers_errors);
    tcase_add_test(tc, test_config_targeted_cache_control);
    tcase_add_test(tc, test_config_targeted_cache_control_errors);
    tcase_add_test(tc, test_config_syntax_error_has_line);
    tcase_add_test(tc, test_config_include_and_nul_rejected);
    tcase_add_test(tc, test_config_empty_text);
    tcase_add_test(tc, test_config_unknown_setting);
    tcase_add_test(tc, test_config_bad_duration);
    tcase_add_test(tc, test_config_duration_values);
    tcase_add_test(tc, test_config_duration_integer_seconds);
    tcase_add_test(tc, test_config_bad_size);
    tcase_add_test(tc, test_config_size_limits);
    tcase_add_test(tc, test_config_size_values);
    tcase_add_test(tc, test_config_bad_type);
    tcase_add_test(tc, test_config_unknown_origin);
    tcase_add_test(tc, test_config_duplicate_origin);
    tcase_add_test(tc, test_config_origin_fields);
    tcase_add_test(tc, test_config_origin_discovery);
    tcase_add_test(tc, test_config_origin_tls_and_queue);
    tcase_add_test(tc, test_config_bad_url);
    tcase_add_test(tc, test_config_url_normalised);
    tcase_add_test(tc, test_config_route_required);
    tcase_add_test(tc, test_config_route_host);
    tcase_add_test(tc, test_config_bad_listen);
    tcase_add_test(tc, test_config_listen_forms);
    tcase_add_test(tc, test_config_split_hostport);
    tcase_add_test(tc, test_config_ranges);
    tcase_add_test(tc, test_config_route_ranges);
    tcase_add_test(tc, test_config_log);
    tcase_add_test(tc, test_config_control_socket);
    tcase_add_test(tc, test_config_control_group);
    tcase_add_test(tc, test_config_purge_allow);
    tcase_add_test(tc, test_config_client_timeouts);
    tcase_add_test(tc, test_config_strip_headers);
    tcase_add_test(tc, test_config_trust_forwarded);
    tcase_add_test(tc, test_config_limit_trust_forwarded);
    tcase_add_test(tc, test_config_cookies);
    tcase_add_test(tc, test_config_cidr_match);
    tcase_add_test(tc, test_config_cidr_values);
    tcase_add_test(tc, test_config_limit_origins);
    tcase_add_test(tc, test_config_limit_routes);
    tcase_add_test(tc, test_config_limit_purge_allow);
    tcase_add_test(tc, test_config_long_value_quoted_safely);
    tcase_add_test(tc, test_config_free_null_and_zeroed);
    tcase_add_test(tc, test_config_truncated_example);
    tcase_add_test(tc, test_config_redis_defaults);
    tcase_add_test(tc, test_config_redis_modes);
    tcase_add_test(tc, test_config_redis_errors);
    tcase_add_test(tc, test_config_redis_limits);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(config_suite)
