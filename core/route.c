/* core/route.c - see core/route.h.
 *
 * A linear scan in config order: at most CW_LIMIT_ROUTES routes, each a length compare
 * and a memcmp, so the first match is found without an index. */
#include "core/route.h"

#include <errno.h>
#include <string.h>

#include "core/config.h"
#include "core/limits.h"

/* The Host value without its port ("example.com:8080", "[::1]:8080") and without the one
 * trailing dot of a fully qualified name, so that it compares with route.host. */
static struct cw_str route_host_bare(struct cw_str host)
{
    const char *cut;

    if (host.len == 0) return host;
    if (host.p[0] == '[') {
        cut = memchr(host.p, ']', host.len);
        if (cut != NULL) host.len = (size_t)(cut - host.p) + 1;
    } else {
        cut = memchr(host.p, ':', host.len);
        if (cut != NULL) host.len = (size_t)(cut - host.p);
    }
    if (host.len > 1 && host.p[host.len - 1] == '.') host.len--;
    return host;
}

int cw_route_find(const struct cw_config *cfg, struct cw_str host, struct cw_str path)
{
    struct cw_str bare = route_host_bare(host);

    for (size_t i = 0; i < cfg->route_count && i < CW_LIMIT_ROUTES; i++) {
        const struct cw_config_route *r = &cfg->routes[i];
        if (r->host != NULL && !cw_str_eq_ci(bare, cw_str_make(r->host, r->host_len))) continue;
        if (r->match_len > path.len || memcmp(r->match, path.p, r->match_len) != 0) continue;
        return (int)i;
    }
    return -ENOENT;
}
