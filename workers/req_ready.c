/* workers/req_ready.c - see workers/req_ready.h: a worker's ready answers. */
#include "workers/req_ready.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Set-associative on the key's hash: a key has READY_WAYS places in its set, so that the hot
 * keys stay ready however their hashes fall, and a new answer or sighting displaces the set's
 * least recently used one. A place holds an answer only for a key hit READY_SEEN times for
 * the same answer (the same entry, Age and ttl: in one second); below that, only a sighting
 * in the place's state (its key and state lines), so that a key set hit a few times a second
 * each, such as 10,000 uniform keys, builds its answers without copies kept for it: reading
 * a kept copy of a cold answer (its header list, its body compared) costs more cache misses
 * than a build. */
#define READY_SETS      1024u        /* a power of two: indexed by the key's hash */
#define READY_WAYS      4u           /* places in a set */
#define READY_MAX_BYTES (256u << 10) /* header block and body of one kept answer */
#define READY_BUDGET    (16u << 20)  /* of all of one worker's kept answers (ready_bytes()) */
#define READY_OVERHEAD  512u         /* about what libmicrohttpd's response holds besides */
#define READY_SEEN      8u           /* builds of one answer before it is kept */

struct ready_slot {
    struct MHD_Response *resp; /* the set's reference (READY_KEPT); else NULL */
    const char *body;          /* the response's body, then the entry's header block */
    struct req_ready_id id;
    int64_t stored_at_ms;
    int64_t response_time_ms;
    size_t body_len;
    size_t headers_len;
    uint32_t reused; /* hits the kept answer served besides the one that built it */
};

enum ready_state {
    READY_EMPTY = 0,
    READY_SIGHTED, /* no answer (resp NULL): sig and seen count the key's builds */
    READY_KEPT,    /* an answer */
};

/* What a lookup, a sighting and the choice of a place read of each place besides its key. */
struct ready_meta {
    uint32_t used;  /* the set's clock at its last use: the least recently used is displaced */
    uint32_t sig;   /* READY_SIGHTED: ready_sig() of the answer last built */
    uint16_t state; /* enum ready_state */
    uint16_t seen;  /* READY_SIGHTED: builds of that answer */
    uint32_t pad;
};

struct req_ready {
    /* The places' keys and states apart, a set's four in one cache line each: a lookup, and
     * the choice of a place, read those two lines, and a place's own lines only for the key
     * found or the place chosen. */
    _Alignas(64) struct cw_key key[READY_SETS * READY_WAYS];
    _Alignas(64) struct ready_meta meta[READY_SETS * READY_WAYS];
    struct ready_slot slot[READY_SETS * READY_WAYS];
    size_t bytes;   /* of the kept answers, as ready_bytes() counts them */
    uint32_t clock; /* counts uses (wraps: places are compared by the distance of theirs) */
};

/* The index of the first place of key's set. */
static size_t ready_set(const struct cw_key *key)
{
    uint32_t b;

    memcpy(&b, key->h + 4, sizeof(b));
    return (b & (READY_SETS - 1)) * READY_WAYS;
}

static size_t ready_index(const struct req_ready *c, const struct ready_slot *s)
{
    return (size_t)(s - c->slot);
}

static enum ready_state ready_state_of(const struct req_ready *c, const struct ready_slot *s)
{
    return (enum ready_state)c->meta[ready_index(c, s)].state;
}

static void ready_touch(struct req_ready *c, const struct ready_slot *s, enum ready_state st)
{
    struct ready_meta *m = &c->meta[ready_index(c, s)];

    m->used = ++c->clock;
    m->state = (uint16_t)st;
}

/* A 32-bit digest of what an answer is built from besides the entry's bytes: two builds of
 * one answer have the same. (A sighting only counts builds: a kept answer is compared in
 * full.) */
static uint32_t ready_sig(const struct req_ready_id *id, const struct cw_entry_view *v)
{
    uint64_t f[] = {(uint64_t)id->age_s,
                    (uint64_t)id->ttl_s,
                    (uint64_t)id->status << 32 | id->kind,
                    (uint64_t)v->h.stored_at_ms,
                    (uint64_t)v->h.response_time_ms,
                    (uint64_t)v->body.len << 32 ^ v->headers_len};
    uint64_t h = 0x9e3779b97f4a7c15u;

    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        h ^= f[i];
        h *= 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    return (uint32_t)h;
}

/* The place that holds key's answer or sighting, or NULL. */
static struct ready_slot *ready_find(struct req_ready *c, const struct cw_key *key)
{
    size_t set = ready_set(key);

    for (size_t i = set; i < set + READY_WAYS; i++)
        if (memcmp(&c->key[i], key, sizeof(*key)) == 0 && c->meta[i].state != READY_EMPTY)
            return &c->slot[i];
    return NULL;
}

/* Where an answer or a sighting for key goes: the place of its last one, else an empty
 * place, else the set's least recently used. */
static struct ready_slot *ready_place(struct req_ready *c, const struct cw_key *key)
{
    struct ready_slot *s = ready_find(c, key);
    size_t set = ready_set(key), v = set;

    if (s != NULL) return s;
    for (size_t i = set; i < set + READY_WAYS && c->meta[v].state != READY_EMPTY; i++)
        if (c->meta[i].state == READY_EMPTY || (int32_t)(c->meta[i].used - c->meta[v].used) < 0)
            v = i;
    return &c->slot[v];
}

/* Whether s was built from an entry with exactly v's times and lengths, for id. */
static bool ready_is_same(const struct ready_slot *s, const struct req_ready_id *id,
                          const struct cw_entry_view *v)
{
    return s->id.age_s == id->age_s && s->id.ttl_s == id->ttl_s && s->id.status == id->status &&
           s->id.kind == id->kind && s->stored_at_ms == v->h.stored_at_ms &&
           s->response_time_ms == v->h.response_time_ms && s->body_len == v->body.len &&
           s->headers_len == v->headers_len;
}

/* Records what the kept answer in s (emptied, or key's own) was built from. */
static void ready_record(struct req_ready *c, struct ready_slot *s, const struct cw_key *key,
                         const struct req_ready_id *id, const struct cw_entry_view *v)
{
    c->key[ready_index(c, s)] = *key;
    s->id = *id;
    s->stored_at_ms = v->h.stored_at_ms;
    s->response_time_ms = v->h.response_time_ms;
    s->body_len = v->body.len;
    s->headers_len = v->headers_len;
    s->reused = 0;
    ready_touch(c, s, READY_KEPT);
}

/* The memory a kept answer holds: our copy of the body and the header block, and in
 * libmicrohttpd's response each field again (a list node, name and value) and the response. */
static size_t ready_bytes(size_t body_len, size_t headers_len)
{
    return body_len + 2 * headers_len + READY_OVERHEAD;
}

static void ready_drop(struct req_ready *c, struct ready_slot *s)
{
    c->meta[ready_index(c, s)].state = READY_EMPTY;
    if (s->resp == NULL) return;
    MHD_destroy_response(s->resp); /* frees the copy once no connection sends it */
    c->bytes -= ready_bytes(s->body_len, s->headers_len);
    s->resp = NULL;
}

struct req_ready *req_ready_new(void)
{
    /* Its own mapping: aligned for the key lines, zero, and only the pages used are held. */
    void *p = mmap(NULL, sizeof(struct req_ready), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    return p == MAP_FAILED ? NULL : p;
}

void req_ready_free(struct req_ready *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i < READY_SETS * READY_WAYS; i++)
        ready_drop(c, &c->slot[i]);
    munmap(c, sizeof(*c));
}

struct MHD_Response *req_ready_get(struct req_ready *c, const struct cw_key *key,
                                   const struct req_ready_id *id, const struct cw_entry_view *v)
{
    struct ready_slot *s = ready_find(c, key);

    /* The same entry: cheap fields first, then every byte the answer was built from. */
    if (s == NULL || ready_state_of(c, s) != READY_KEPT || !ready_is_same(s, id, v)) return NULL;
    if (memcmp(s->body + s->body_len, v->headers, v->headers_len) != 0 ||
        memcmp(s->body, v->body.p, v->body.len) != 0)
        return NULL;
    ready_touch(c, s, READY_KEPT);
    s->reused++;
    return s->resp;
}

bool req_ready_admit(struct req_ready *c, const struct cw_key *key, const struct req_ready_id *id,
                     const struct cw_entry_view *v)
{
    struct ready_slot *s = ready_find(c, key);
    struct ready_meta *m = s != NULL ? &c->meta[ready_index(c, s)] : NULL;
    uint32_t sig = ready_sig(id, v);

    /* A key whose last kept answer served as many hits: its next one will too. */
    if (m != NULL && m->state == READY_KEPT && s->reused + 1 >= READY_SEEN) return true;
    /* A key built READY_SEEN times for one answer (in one second of Age). */
    if (m != NULL && m->state == READY_SIGHTED && m->sig == sig) {
        if (++m->seen >= READY_SEEN) return true;
        m->used = ++c->clock;
        return false;
    }
    /* Else a first sighting of this answer: a kept answer that served fewer hits is dropped. */
    if (s == NULL) s = ready_place(c, key);
    ready_drop(c, s);
    c->key[ready_index(c, s)] = *key;
    c->meta[ready_index(c, s)] =
        (struct ready_meta){.used = ++c->clock, .sig = sig, .state = READY_SIGHTED, .seen = 1};
    return false;
}

bool req_ready_fits(struct req_ready *c, const struct cw_key *key, const struct cw_entry_view *v)
{
    const struct ready_slot *s;

    if (v->body.len > READY_MAX_BYTES || v->headers_len > READY_MAX_BYTES - v->body.len)
        return false;
    /* What the put displaces is freed first. */
    s = ready_place(c, key);
    return c->bytes - (ready_state_of(c, s) == READY_KEPT ? ready_bytes(s->body_len, s->headers_len)
                                                          : 0) <=
           READY_BUDGET - ready_bytes(v->body.len, v->headers_len);
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
    struct ready_slot *s = ready_place(c, key);

    ready_drop(c, s);
    s->resp = resp;
    s->body = copy;
    ready_record(c, s, key, id, v);
    c->bytes += ready_bytes(s->body_len, s->headers_len);
}
