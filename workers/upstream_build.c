/* workers/upstream_build.c - see workers/upstream.h: building an origin request's URL and
 * header block, the same for the worker and the refresher. Pure: no loop, no I/O. */
#include "workers/upstream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/cc.h"
#include "core/config.h"
#include "core/key.h"

#define UPSTREAM_VIA     "1.1 cachewarp"
#define UPSTREAM_HEAD_AT 1024 /* first size of a header block */

static int upstream_head_append(struct cw_upstream_buf *b, const char *p, size_t n);
static int upstream_head_line(struct cw_upstream_buf *b, struct cw_str name, struct cw_str v1,
                              struct cw_str v2);

/* The fields CacheWarp may set itself, in the order they are sent. */
static const char *const upstream_ours[] = {
    "Host",     "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
    "Forwarded"};

int cw_upstream_build_url(const struct cw_config_origin *o, const struct cw_config_route *rt,
                          struct cw_str target, bool whole_query, char **out)
{
    const char *qm = memchr(target.p, '?', target.len);
    size_t ulen = strlen(o->url), plen = qm ? (size_t)(qm - target.p) : target.len;
    size_t qlen = qm ? target.len - plen - 1 : 0, fwd = 0;
    char *url = malloc(ulen + plen + qlen + 2);

    if (url == NULL) return -ENOMEM;
    memcpy(url, o->url, ulen);
    memcpy(url + ulen, target.p, plen);
    if (qm != NULL && whole_query) {
        memcpy(url + ulen + plen + 1, qm + 1, qlen);
        fwd = qlen;
    } else if (qm != NULL && cw_key_forward_query(rt, cw_str_make(qm + 1, qlen),
                                                  url + ulen + plen + 1, qlen + 1, &fwd) < 0) {
        free(url);
        return -ENOSPC;
    }
    if (fwd > 0) url[ulen + plen] = '?';
    url[ulen + plen + (fwd > 0 ? fwd + 1 : 0)] = '\0';
    *out = url;
    return 0;
}

/* Appends n bytes and keeps the block NUL-terminated. */
static int upstream_head_append(struct cw_upstream_buf *b, const char *p, size_t n)
{
    size_t need;

    if (__builtin_add_overflow(b->len, n + 1, &need)) return -EOVERFLOW;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : UPSTREAM_HEAD_AT;
        while (cap < need)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Appends "name: v1v2\r\n". */
static int upstream_head_line(struct cw_upstream_buf *b, struct cw_str name, struct cw_str v1,
                              struct cw_str v2)
{
    int rc = upstream_head_append(b, name.p, name.len);
    if (rc == 0) rc = upstream_head_append(b, ": ", 2);
    if (rc == 0) rc = upstream_head_append(b, v1.p, v1.len);
    if (rc == 0 && v2.len > 0) rc = upstream_head_append(b, v2.p, v2.len);
    if (rc == 0) rc = upstream_head_append(b, "\r\n", 2);
    return rc;
}

/* The client's preconditions and Range: a cache fetching a full response to store answers
 * them itself (RFC 9111 §4.3.2, §3.4). */
static bool upstream_is_precondition(struct cw_str name)
{
    static const struct cw_str names[] = {
        CW_STR_LIT("If-None-Match"),       CW_STR_LIT("If-Modified-Since"), CW_STR_LIT("If-Match"),
        CW_STR_LIT("If-Unmodified-Since"), CW_STR_LIT("If-Range"),          CW_STR_LIT("Range"),
    };
    for (size_t i = 0; i < CW_ARRAY_LEN(names); i++)
        if (cw_str_eq_ci(name, names[i])) return true;
    return false;
}

static enum cw_upstream_fwd upstream_fwd(const struct cw_upstream_head *h, struct cw_str name)
{
    if (h->fwd != NULL) return h->fwd(h->cls, name);
    /* A replay: the fields are what an origin was sent; Host is the one we set again. */
    return cw_str_eq_ci(name, CW_STR_LIT("Host")) ? CW_UPSTREAM_FWD_OURS : CW_UPSTREAM_FWD_PASS;
}

int cw_upstream_head_add(struct cw_upstream_head *h, struct cw_str name, struct cw_str value)
{
    if (h->rc < 0) return h->rc;
    if (upstream_fwd(h, name) != CW_UPSTREAM_FWD_PASS) return 0;
    /* RFC 9110 §7.6.1: hop-by-hop fields and those the Connection field names. */
    if (cw_cc_is_hop_by_hop(name)) return 0;
    if (h->connection.len > 0 && cw_cc_list_has(h->connection, name)) return 0;
    /* Our own Content-Length (or chunked) frames the body; an Expect is ours to send. */
    if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length")) ||
        cw_str_eq_ci(name, CW_STR_LIT("Expect")))
        return 0;
    if (h->strip_preconditions && upstream_is_precondition(name)) return 0;
    if (cw_str_eq_ci(name, CW_STR_LIT("Via"))) {
        h->have_via = true;
        h->rc = upstream_head_line(&h->out, name, value, CW_STR_LIT(", " UPSTREAM_VIA));
    } else {
        h->rc = upstream_head_line(&h->out, name, value, cw_str_make(NULL, 0));
    }
    return h->rc;
}

int cw_upstream_head_finish(struct cw_upstream_head *h, struct cw_str etag,
                            struct cw_str last_modified, char **out)
{
    int rc = h->rc;

    for (size_t i = 0; rc == 0 && i < CW_ARRAY_LEN(upstream_ours); i++) {
        struct cw_str name = cw_str_cstr(upstream_ours[i]);
        if (upstream_fwd(h, name) != CW_UPSTREAM_FWD_OURS) continue;
        const char *v = h->ours != NULL ? h->ours(h->cls, upstream_ours[i]) : NULL;
        rc = v ? upstream_head_line(&h->out, name, cw_str_cstr(v), cw_str_make(NULL, 0)) : -ENOMEM;
    }
    if (rc == 0 && !h->have_via)
        rc = upstream_head_line(&h->out, CW_STR_LIT("Via"), CW_STR_LIT(UPSTREAM_VIA),
                                cw_str_make(NULL, 0));
    /* RFC 9111 §4.3.1: validate a stored copy with its own validators. */
    if (rc == 0 && etag.len > 0)
        rc = upstream_head_line(&h->out, CW_STR_LIT("If-None-Match"), etag, cw_str_make(NULL, 0));
    if (rc == 0 && last_modified.len > 0)
        rc = upstream_head_line(&h->out, CW_STR_LIT("If-Modified-Since"), last_modified,
                                cw_str_make(NULL, 0));
    /* An empty block still ends in NUL: the loop reads it as a C string. */
    if (rc == 0 && h->out.p == NULL) rc = upstream_head_append(&h->out, "", 0);
    if (rc < 0) {
        free(h->out.p);
        h->out = (struct cw_upstream_buf){0};
        h->rc = rc;
        return rc;
    }
    *out = h->out.p;
    h->out = (struct cw_upstream_buf){0};
    return 0;
}
