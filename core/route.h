/* core/route.h - picks the route for a request: first match by Host (when the route names
 * one) and path prefix, in config order, as DESIGN.md says.
 *
 * Pure; owns nothing. The Host given is compared case-insensitively without its port. */
#ifndef CW_ROUTE_H
#define CW_ROUTE_H

#include "core/common.h"

struct cw_config;

/* Index of the first route matching host (may be empty) and path, or -ENOENT. */
int cw_route_find(const struct cw_config *cfg, struct cw_str host, struct cw_str path);

#endif /* CW_ROUTE_H */
