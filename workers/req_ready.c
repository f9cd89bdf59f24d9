/* workers/req_ready.c - see workers/req_ready.h: a worker's ready answers. */
#include "workers/req_ready.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define READY_SLOTS     64u          /* a power of two: indexed by the key's hash */
#define READY_MAX_BYTES (256u << 10) /* header block and body of one kept answer */
#define READY_BUDGET    (16u << 20)  /* of all of one worker's kept answers */

struct ready_slot {
    struct MHD_Response *resp; /* the set's reference; NULL: empty */
    const char *body;          /* the response's body, then the entry's header block */
    struct cw_key key;
    struct req_ready_id id;
    int64_t stored_at_ms;
    int64_t response_time_ms;
    size_t body_len;
    size_t headers_len;
};

struct req_ready {
    struct ready_slot slot[READY_SLOTS];
    size_t bytes; /* of the kept answers' copies */
};

static struct ready_slot *ready_slot(struct req_ready *c, const struct cw_key *key)
{
    uint32_t b;

    memcpy(&b, key->h + 4, sizeof(b));
    return &c->slot[b & (READY_SLOTS - 1)];
}

static void ready_drop(struct req_ready *c, struct ready_slot *s)
{
    if (s->resp == NULL) return;
    MHD_destroy_response(s->resp); /* frees the copy once no connection sends it */
    c->bytes -= s->body_len + s->headers_len;
    s->resp = NULL;
}

struct req_ready *req_ready_new(void)
{
    return calloc(1, sizeof(struct req_ready));
}

void req_ready_free(struct req_ready *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < READY_SLOTS; i++)
        ready_drop(c, &c->slot[i]);
    free(c);
}

struct MHD_Response *req_ready_get(struct req_ready *c, const struct cw_key *key,
                                   const struct req_ready_id *id, const struct cw_entry_view *v)
{
    struct ready_slot *s = ready_slot(c, key);

    if (s->resp == NULL || memcmp(&s->key, key, sizeof(*key)) != 0) return NULL;
    if (s->id.age_s != id->age_s || s->id.ttl_s != id->ttl_s || s->id.status != id->status ||
        s->id.kind != id->kind)
        return NULL;
    /* The same entry: cheap fields first, then every byte the answer was built from. */
    if (s->stored_at_ms != v->h.stored_at_ms || s->response_time_ms != v->h.response_time_ms ||
        s->body_len != v->body.len || s->headers_len != v->headers_len)
        return NULL;
    if (memcmp(s->body + s->body_len, v->headers, v->headers_len) != 0 ||
        memcmp(s->body, v->body.p, v->body.len) != 0)
        return NULL;
    return s->resp;
}

bool req_ready_fits(const struct req_ready *c, const struct cw_entry_view *v)
{
    size_t n = v->body.len + v->headers_len;

    return v->body.len <= READY_MAX_BYTES && n <= READY_MAX_BYTES && c->bytes <= READY_BUDGET - n;
}

struct MHD_Response *req_ready_build(const struct cw_entry_view *v, const char **copy)
{
    struct MHD_Response *resp;
    /* One block: the body (which the response frees with it), then the header block. */
    char *p = malloc(v->body.len + v->headers_len + 1);

    if (p == NULL) return NULL;
    memcpy(p, v->body.p, v->body.len);
    memcpy(p + v->body.len, v->headers, v->headers_len);
    resp = MHD_create_response_from_buffer_with_free_callback(v->body.len, p, free);
    if (resp == NULL) {
        free(p);
        return NULL;
    }
    *copy = p;
    return resp;
}

void req_ready_put(struct req_ready *c, const struct cw_key *key, const struct req_ready_id *id,
                   const struct cw_entry_view *v, struct MHD_Response *resp, const char *copy)
{
    struct ready_slot *s = ready_slot(c, key);

    ready_drop(c, s);
    s->resp = resp;
    s->body = copy;
    s->key = *key;
    s->id = *id;
    s->stored_at_ms = v->h.stored_at_ms;
    s->response_time_ms = v->h.response_time_ms;
    s->body_len = v->body.len;
    s->headers_len = v->headers_len;
    c->bytes += s->body_len + s->headers_len;
}
