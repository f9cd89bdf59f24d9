/* workers/fleet.c - see workers/fleet.h. */
#include "workers/fleet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "workers/chan.h"
#include "workers/l2.h"

#define FLEET_MAGIC      "cwpurge1 "
#define FLEET_NODE_BYTES 80
/* A message: the magic, an id, kind, soft, the value (at most a key), spaces. */
#define FLEET_MSG_BYTES (sizeof(FLEET_MAGIC) + CW_FLEET_ID_BYTES + 8 + CW_LIMIT_KEY_BYTES)

struct cw_fleet {
    struct cw_l2 *l2;
    cw_fleet_apply_fn fn;
    void *cls;
    uint64_t counter;
    char node[FLEET_NODE_BYTES]; /* "<hostname>.<supervisor pid>" */
    size_t node_len;
    char seen[CW_FLEET_SEEN_MAX][CW_FLEET_ID_BYTES]; /* ring of applied ids, NUL-terminated */
    size_t seen_next;
};

/* This node's name: the host's name and the supervisor's pid (every child's parent), so
 * that two nodes on one host differ and a node's processes agree. */
static size_t fleet_node(char *out, size_t size)
{
    char host[64];
    int n;

    if (gethostname(host, sizeof(host)) == -1) snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p != '\0'; p++)
        if (*p == ' ' || *p == '/' || *p == ':') *p = '_';
    n = snprintf(out, size, "%s.%ld", host, (long)getppid());
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static void fleet_published(void *arg, int rc, struct cw_str value)
{
    (void)arg;
    (void)value;
    if (rc < 0)
        cw_warn_rl("fleet: publish purge: %s; other nodes keep their copies", strerror(-rc));
}

void cw_fleet_publish(struct cw_l2 *l2, uint64_t *counter, uint32_t kind, bool soft,
                      struct cw_str value)
{
    static const char kinds[] = "upt";
    char node[FLEET_NODE_BYTES];
    char *msg;
    int n, rc;

    if (l2 == NULL || kind > CW_CHAN_PURGE_TAG || value.len > CW_LIMIT_KEY_BYTES) return;
    msg = malloc(FLEET_MSG_BYTES);
    if (msg == NULL) {
        cw_warn_rl("fleet: publish purge: %s", strerror(ENOMEM));
        return;
    }
    fleet_node(node, sizeof(node));
    n = snprintf(msg, FLEET_MSG_BYTES, FLEET_MAGIC "%s/%ld:%llu %c %d %.*s", node, (long)getpid(),
                 (unsigned long long)++*counter, kinds[kind], soft ? 1 : 0, (int)value.len,
                 value.p);
    if (n < 0 || (size_t)n >= FLEET_MSG_BYTES) {
        cw_warn_rl("fleet: publish purge: message too long");
        goto out_free_msg;
    }
    rc = cw_l2_publish(l2, cw_str_make(msg, (size_t)n), fleet_published, NULL);
    if (rc < 0)
        cw_warn_rl("fleet: publish purge: %s; other nodes keep their copies", strerror(-rc));
out_free_msg:
    free(msg); /* cw_l2_publish copied it */
}

/* Remembers id: true when it was already there (applied once already). */
static bool fleet_seen(struct cw_fleet *f, struct cw_str id)
{
    for (size_t i = 0; i < CW_FLEET_SEEN_MAX; i++)
        if (strlen(f->seen[i]) == id.len && memcmp(f->seen[i], id.p, id.len) == 0) return true;
    memcpy(f->seen[f->seen_next], id.p, id.len);
    f->seen[f->seen_next][id.len] = '\0';
    f->seen_next = (f->seen_next + 1) % CW_FLEET_SEEN_MAX;
    return false;
}

/* Splits "cwpurge1 <id> <kind> <soft> <value>" and applies it unless it is this node's or
 * was applied already. A malformed message is logged (rate-limited) and dropped. */
static void fleet_on_message(void *arg, struct cw_str channel, struct cw_str payload)
{
    struct cw_fleet *f = arg;
    const char *p = payload.p, *end = payload.p + payload.len, *sp, *slash;
    struct cw_str id;
    uint32_t kind;

    (void)channel;
    if (payload.len < sizeof(FLEET_MAGIC) - 1 ||
        memcmp(p, FLEET_MAGIC, sizeof(FLEET_MAGIC) - 1) != 0)
        goto out_bad;
    p += sizeof(FLEET_MAGIC) - 1;
    sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL || sp == p || (size_t)(sp - p) >= CW_FLEET_ID_BYTES) goto out_bad;
    id = cw_str_make(p, (size_t)(sp - p));
    slash = memchr(p, '/', id.len);
    if (slash == NULL) goto out_bad;
    /* "<kind> <soft> " then the value, at least one byte. */
    p = sp + 1;
    if (end - p < 5 || p[1] != ' ' || (p[2] != '0' && p[2] != '1') || p[3] != ' ') goto out_bad;
    kind = p[0] == 'u'   ? CW_CHAN_PURGE_URL
           : p[0] == 'p' ? CW_CHAN_PURGE_PREFIX
           : p[0] == 't' ? CW_CHAN_PURGE_TAG
                         : UINT32_MAX;
    if (kind == UINT32_MAX) goto out_bad;
    if ((size_t)(slash - id.p) == f->node_len && memcmp(id.p, f->node, f->node_len) == 0) return;
    if (fleet_seen(f, id)) return;
    f->fn(f->cls, kind, p[2] == '1', cw_str_make(p + 4, (size_t)(end - p - 4)));
    return;
out_bad:
    cw_warn_rl("fleet: malformed purge message on redis.channel dropped (%zu bytes)", payload.len);
}

int cw_fleet_open(const struct cw_config *cfg, cw_fleet_apply_fn fn, void *cls,
                  struct cw_fleet **out)
{
    struct cw_fleet *f;
    int rc;

    *out = NULL;
    if (!cfg->redis_enabled) return -ENODEV;
    f = calloc(1, sizeof(*f));
    if (f == NULL) return -ENOMEM;
    f->fn = fn;
    f->cls = cls;
    f->node_len = fleet_node(f->node, sizeof(f->node));
    rc = cw_l2_open(cfg, &f->l2);
    if (rc < 0) goto out_free;
    rc = cw_l2_subscribe(f->l2, fleet_on_message, f);
    if (rc < 0) {
        cw_warn("fleet: subscribe to redis.channel: %s", strerror(-rc));
        goto out_free;
    }
    *out = f;
    return 0;
out_free:
    cw_fleet_close(f);
    return rc;
}

void cw_fleet_close(struct cw_fleet *f)
{
    if (f == NULL) return;
    cw_l2_close(f->l2);
    free(f);
}

struct cw_l2 *cw_fleet_l2(struct cw_fleet *f)
{
    return f->l2;
}

uint64_t *cw_fleet_counter(struct cw_fleet *f)
{
    return &f->counter;
}
