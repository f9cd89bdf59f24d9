/* workers/upstream_collect.c - see workers/upstream.h: a transfer whose response is kept
 * whole in memory up to a cap, for the callers that store what they fetch. Its callbacks run
 * on the loop thread like any other transfer's. */
#include "workers/upstream.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workers/upstream_int.h"

static struct cw_upstream_collect *upstream_collect_of(struct cw_upstream_xfer *x)
{
    return (struct cw_upstream_collect *)((char *)x - offsetof(struct cw_upstream_collect, xfer));
}

static int upstream_collect_on_data(struct cw_upstream_xfer *x, const char *p, size_t n)
{
    struct cw_upstream_collect *c = upstream_collect_of(x);
    int rc = cw_upstream_buf_append(&c->body, p, n, c->max_body);

    if (rc < 0)
        snprintf(x->errbuf, sizeof(x->errbuf), "%s",
                 rc == -EFBIG ? "response body over the limit" : "out of memory");
    return rc < 0 ? rc : CW_UPSTREAM_GO;
}

/* The collected response takes the transfer's header lines (trailers included, as read). */
static void upstream_collect_on_done(struct cw_upstream_xfer *x, int rc)
{
    struct cw_upstream_collect *c = upstream_collect_of(x);
    c->rc = rc;
    c->status = x->status;
    c->request_time_ms = x->request_time_ms;
    c->response_time_ms = x->response_time_ms;
    upstream_take_headers(x, &c->headers, &c->header_count);
    c->done(c, c->cls);
}

static const struct cw_upstream_ops upstream_collect_ops = {
    .on_data = upstream_collect_on_data,
    .on_done = upstream_collect_on_done,
};

int cw_upstream_collect(struct cw_upstream *up, struct cw_upstream_collect *c)
{
    c->xfer = (struct cw_upstream_xfer){.req = &c->req, .ops = &upstream_collect_ops, .cls = c};
    return cw_upstream_submit(up, &c->xfer);
}

void cw_upstream_collect_reset(struct cw_upstream_collect *c)
{
    if (c == NULL) return;
    free(c->headers.p);
    free(c->body.p);
    memset(&c->headers, 0, sizeof(c->headers));
    memset(&c->body, 0, sizeof(c->body));
    c->header_count = 0;
    c->status = 0;
    c->rc = 0;
    c->xfer.errbuf[0] = '\0';
}

bool cw_upstream_collect_header_next(const struct cw_upstream_collect *c, size_t *off,
                                     struct cw_str *name, struct cw_str *value)
{
    struct cw_upstream_fields f = {c->headers.p, c->headers.len, c->header_count};

    return cw_upstream_fields_next(&f, off, name, value);
}
