/* workers/fleet.c - see workers/fleet.h. */
#include "workers/fleet.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/ctlmsg.h"
#include "core/fleetmsg.h"
#include "core/key.h"
#include "core/limits.h"
#include "core/log.h"
#include "workers/chan.h"
#include "workers/clock.h"
#include "workers/l2.h"

#define FLEET_NODE_BYTES 80

static_assert((int)CW_FLEETMSG_URL == (int)CW_CHAN_PURGE_URL &&
                  (int)CW_FLEETMSG_PREFIX == (int)CW_CHAN_PURGE_PREFIX &&
                  (int)CW_FLEETMSG_TAG == (int)CW_CHAN_PURGE_TAG,
              "fleet message kinds are the control channel's");

struct cw_fleet {
    struct cw_l2 *l2;
    cw_fleet_apply_fn fn;
    cw_fleet_gap_fn gap;
    void *cls;
    uint64_t counter;
    char node[FLEET_NODE_BYTES]; /* "<hostname>.<supervisor pid>" */
    size_t node_len;
    char seen[CW_FLEET_SEEN_MAX][CW_FLEETMSG_ID_BYTES]; /* ring of applied ids, NUL-terminated */
    size_t seen_next;
    /* The purge log: the id of the last entry read (has_pos: known; before that, the first
     * read only learns where the log ends), a read in flight, when the next is due, and the
     * client's connect count at the last read (a reconnect makes a read due at once). */
    char log_id[CW_FLEETMSG_LOG_ID_BYTES];
    bool has_pos;
    char *state_path; /* where log_id is kept across restarts; NULL: nowhere */
    char saved_id[CW_FLEETMSG_LOG_ID_BYTES];
    bool log_inflight;
    int64_t log_due_ms;
    uint64_t log_connects;
};

static size_t fleet_node(char *out, size_t size);
static void fleet_l2_done(void *arg, int rc, struct cw_str value);
static int fleet_id(uint64_t *counter, char *buf, size_t size, struct cw_str *id);
static void fleet_send(struct cw_l2 *l2, const struct cw_fleetmsg *m);
static bool fleet_seen(struct cw_fleet *f, struct cw_str id);
static void fleet_apply(struct cw_fleet *f, struct cw_str payload, const char *from);
static void fleet_on_message(void *arg, struct cw_str channel, struct cw_str payload);
static void fleet_on_log(void *arg, int rc, struct cw_str value);
static void fleet_set_pos(struct cw_fleet *f, struct cw_str id);
static void fleet_save_pos(struct cw_fleet *f);
static void fleet_load_pos(struct cw_fleet *f);

/* This node's name: the host's name and the supervisor's pid (every child's parent), so
 * that two nodes on one host differ and a node's processes agree. */
static size_t fleet_node(char *out, size_t size)
{
    char host[64];
    int n;

    if (gethostname(host, sizeof(host)) == -1) snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    for (char *p = host; *p != '\0'; p++)
        if (*p <= ' ' || *p == '/' || *p == ':' || *p >= 0x7f) *p = '_';
    n = snprintf(out, size, "%s.%ld", host, (long)getppid());
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static void fleet_l2_done(void *arg, int rc, struct cw_str value)
{
    if (rc == -ENOSPC) {
        cw_warn_rl("fleet: ban sets full (%d bans): the oldest bans were dropped, and entries "
                   "only they covered may come back from L2",
                   CW_L2_BANS_MAX);
        return;
    }
    (void)value;
    if (rc < 0 && rc != -ECANCELED)
        cw_warn_rl("fleet: purge: L2 %s: %s; other nodes may read the old copy from Redis",
                   (const char *)arg, strerror(-rc));
}

/* A new purge id into buf: 0 and *id, or -EINVAL. */
static int fleet_id(uint64_t *counter, char *buf, size_t size, struct cw_str *id)
{
    char node[FLEET_NODE_BYTES];
    int n;

    fleet_node(node, sizeof(node));
    n = snprintf(buf, size, "%s/%ld:%llu", node, (long)getpid(), (unsigned long long)++*counter);
    if (n < 0 || (size_t)n >= size) return -EINVAL;
    *id = cw_str_make(buf, (size_t)n);
    return 0;
}

/* Encodes m and sends it: a ban record to the ban sets; any other to the log, then the
 * channel. */
static void fleet_send(struct cw_l2 *l2, const struct cw_fleetmsg *m)
{
    char *msg = malloc(CW_FLEETMSG_BYTES);
    size_t len;
    int rc;

    if (msg == NULL) {
        cw_warn_rl("fleet: publish purge: %s", strerror(ENOMEM));
        return;
    }
    rc = cw_fleetmsg_encode(m, msg, CW_FLEETMSG_BYTES, &len);
    if (rc < 0) {
        cw_warn_rl("fleet: publish purge: %s", strerror(-rc));
        goto out_free_msg;
    }
    if (m->kind == CW_FLEETMSG_BAN) {
        rc = cw_l2_ban_add(l2, cw_str_make(msg, len), m->time_ms, fleet_l2_done, (void *)"ban");
        if (rc < 0) fleet_l2_done((void *)"ban", rc, cw_str_make(NULL, 0));
        goto out_free_msg;
    }
    /* The log first: a node that reads the channel's message and then the log finds it. */
    rc = cw_l2_log_append(l2, cw_str_make(msg, len), fleet_l2_done, (void *)"purge log");
    if (rc < 0) fleet_l2_done((void *)"purge log", rc, cw_str_make(NULL, 0));
    rc = cw_l2_publish(l2, cw_str_make(msg, len), fleet_l2_done, (void *)"PUBLISH");
    if (rc < 0) fleet_l2_done((void *)"PUBLISH", rc, cw_str_make(NULL, 0));
out_free_msg:
    free(msg); /* the client copied it */
}

void cw_fleet_ban(struct cw_l2 *l2, uint64_t *counter, struct cw_str key_prefix, bool soft,
                  int64_t now_wall_ms)
{
    char id[CW_FLEETMSG_ID_BYTES];
    struct cw_fleetmsg m = {
        .time_ms = now_wall_ms, .kind = CW_FLEETMSG_BAN, .soft = soft, .value = key_prefix};

    if (l2 == NULL || fleet_id(counter, id, sizeof(id), &m.id) < 0) return;
    fleet_send(l2, &m);
}

void cw_fleet_publish(struct cw_l2 *l2, uint64_t *counter, uint32_t kind, bool soft,
                      struct cw_str value)
{
    char id[CW_FLEETMSG_ID_BYTES];
    struct cw_fleetmsg m = {
        .time_ms = cw_clock_wall_ms(), .kind = kind, .soft = soft, .value = value};
    struct cw_str host, target;
    size_t klen;
    int rc;

    if (l2 == NULL || kind > CW_FLEETMSG_TAG || value.len == 0 || value.len > CW_LIMIT_KEY_BYTES)
        return;
    if (kind == CW_FLEETMSG_TAG) {
        rc = cw_l2_purge_tag(l2, value, soft, m.time_ms, fleet_l2_done, (void *)"tag purge");
        if (rc < 0) fleet_l2_done((void *)"tag purge", rc, cw_str_make(NULL, 0));
    } else if (kind == CW_FLEETMSG_PREFIX) {
        /* Bans hold a prefix of the key string, built as L1's prefix purge builds it. */
        char *key = malloc(CW_LIMIT_KEY_BYTES);
        if (key != NULL && cw_ctlmsg_split_url(value, &host, &target) == 0 &&
            cw_key_build(NULL, CW_STR_LIT("http"), host, target, key, CW_LIMIT_KEY_BYTES, &klen) ==
                0) {
            cw_fleet_ban(l2, counter, cw_str_make(key, klen), soft, m.time_ms);
        } else {
            cw_warn_rl("fleet: prefix purge %.*s: no ban recorded in L2",
                       (int)(value.len > 200 ? 200 : value.len), value.p);
        }
        free(key);
    }
    if (fleet_id(counter, id, sizeof(id), &m.id) < 0) return;
    fleet_send(l2, &m);
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

/* Applies a message unless it is this node's or was applied already. A malformed one is
 * logged (rate-limited) and dropped. */
static void fleet_apply(struct cw_fleet *f, struct cw_str payload, const char *from)
{
    struct cw_fleetmsg m;

    if (cw_fleetmsg_decode(payload.p, payload.len, &m) < 0 || m.kind > CW_FLEETMSG_TAG) {
        cw_warn_rl("fleet: malformed purge message in %s dropped (%zu bytes)", from, payload.len);
        return;
    }
    if (m.node.len == f->node_len && memcmp(m.node.p, f->node, f->node_len) == 0) return;
    if (fleet_seen(f, m.id)) return;
    if (strcmp(from, "redis.channel") != 0)
        cw_info("fleet: purge %.*s applied from %s: its message on redis.channel was missed",
                (int)m.id.len, m.id.p, from);
    f->fn(f->cls, m.kind, m.soft, m.value);
}

static void fleet_on_message(void *arg, struct cw_str channel, struct cw_str payload)
{
    (void)channel;
    fleet_apply(arg, payload, "redis.channel");
}

/* A read of the purge log: applies its entries (each once, by id), keeps the place, and
 * reports a gap (entries this node had not read were trimmed or lost). */
static void fleet_on_log(void *arg, int rc, struct cw_str value)
{
    struct cw_fleet *f = arg;
    struct cw_fleetmsg_log log;
    struct cw_str id, msg;
    size_t n = 0;

    f->log_inflight = false;
    if (rc == -ECANCELED) return;
    if (rc < 0 || cw_fleetmsg_log_open(value.p, value.len, &log) < 0) {
        if (rc >= 0) cw_warn_rl("fleet: purge log: malformed reply dropped");
        return; /* retried when due */
    }
    if (!f->has_pos) {
        /* Where the log ends now: what came before is older than this node's subscription. */
        fleet_set_pos(f, log.last_id);
        f->has_pos = true;
        fleet_save_pos(f);
        return;
    }
    /* "0-0": the log was empty when this node started; nothing it had not read can be gone. */
    if (!log.kept && strcmp(f->log_id, "0-0") != 0) {
        cw_warn("fleet: purge log no longer holds entry %s (trimmed, or Redis lost its data): "
                "purges may have been missed; soft-purging this node's L1",
                f->log_id);
        if (f->gap != NULL) f->gap(f->cls);
    }
    while ((rc = cw_fleetmsg_log_next(&log, &id, &msg)) == 1) {
        n++;
        fleet_apply(f, msg, "the purge log");
        fleet_set_pos(f, id);
    }
    if (rc < 0) cw_warn_rl("fleet: purge log: malformed entry: the rest of the read dropped");
    if (n == 0 && cw_fleetmsg_log_cmp(log.last_id, cw_str_cstr(f->log_id)) < 0) {
        /* The log restarted (Redis lost it) behind this node's place: go with it. */
        fleet_set_pos(f, log.last_id);
    }
    if (n == CW_FLEET_LOG_BATCH) f->log_due_ms = 0; /* more to read: at once */
    fleet_save_pos(f);
}

/* id was checked by cw_fleetmsg_log_open() or _next(): shorter than the buffer. */
static void fleet_set_pos(struct cw_fleet *f, struct cw_str id)
{
    memcpy(f->log_id, id.p, id.len);
    f->log_id[id.len] = '\0';
}

/* Keeps the place in the purge log in the state file when it moved (write a temporary
 * file, rename it over: a crash leaves the old place or the new, never half of one). The
 * place only makes a restart safer, serving does not need it: a failure is logged,
 * rate-limited. */
static void fleet_save_pos(struct cw_fleet *f)
{
    char tmp[4096], line[CW_FLEETMSG_LOG_ID_BYTES + 1];
    int fd, n, len;

    if (f->state_path == NULL || strcmp(f->saved_id, f->log_id) == 0) return;
    n = snprintf(tmp, sizeof(tmp), "%s.tmp", f->state_path);
    len = snprintf(line, sizeof(line), "%s\n", f->log_id);
    if (n < 0 || (size_t)n >= sizeof(tmp) || len < 0 || (size_t)len >= sizeof(line)) return;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) goto out_warn;
    if (write(fd, line, (size_t)len) != len) {
        close(fd);
        goto out_warn;
    }
    if (close(fd) == -1 || rename(tmp, f->state_path) == -1) goto out_warn;
    memcpy(f->saved_id, f->log_id, sizeof(f->saved_id));
    return;
out_warn:
    cw_warn_rl("fleet: keep the purge log place in %s: %s", f->state_path, strerror(errno));
}

/* The place a previous run of this node kept: from there, what it missed while it was
 * down is applied, or a gap found. No file (first start) or a bad one: start at the end. */
static void fleet_load_pos(struct cw_fleet *f)
{
    char buf[CW_FLEETMSG_LOG_ID_BYTES + 1];
    ssize_t n;
    int fd;

    if (f->state_path == NULL) return;
    fd = open(f->state_path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        if (errno != ENOENT)
            cw_warn("fleet: read %s: %s; reading the purge log from its end", f->state_path,
                    strerror(errno));
        return;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    /* A malformed id sorts before every valid one, "0-0" the least of them. */
    if (strlen(buf) >= sizeof(f->log_id) ||
        cw_fleetmsg_log_cmp(cw_str_cstr(buf), CW_STR_LIT("0-0")) < 0) {
        cw_warn("fleet: %s does not hold a purge log id; reading the log from its end",
                f->state_path);
        return;
    }
    memcpy(f->log_id, buf, strlen(buf) + 1);
    memcpy(f->saved_id, buf, strlen(buf) + 1);
    f->has_pos = true;
    cw_info("fleet: reading the purge log from %s, where this node left it", f->log_id);
}

void cw_fleet_tick(struct cw_fleet *f, int64_t now_ms)
{
    struct cw_l2_stats st;

    if (f == NULL || f->log_inflight || !cw_l2_is_ready(f->l2)) return;
    cw_l2_stats_get(f->l2, &st);
    if (st.connects == f->log_connects && now_ms < f->log_due_ms) return;
    f->log_connects = st.connects;
    f->log_due_ms = now_ms + CW_FLEET_LOG_POLL_MS;
    if (cw_l2_log_read(f->l2, cw_str_make(f->log_id, f->has_pos ? strlen(f->log_id) : 0),
                       CW_FLEET_LOG_BATCH, fleet_on_log, f) == 0)
        f->log_inflight = true;
}

int cw_fleet_timeout_ms(const struct cw_fleet *f, int64_t now_ms)
{
    if (f == NULL || f->log_inflight) return -1;
    return f->log_due_ms <= now_ms              ? 0
           : f->log_due_ms - now_ms > INT32_MAX ? INT32_MAX
                                                : (int)(f->log_due_ms - now_ms);
}

int cw_fleet_open(const struct cw_config *cfg, const char *state_path, cw_fleet_apply_fn fn,
                  cw_fleet_gap_fn gap, void *cls, struct cw_fleet **out)
{
    struct cw_fleet *f;
    int rc;

    *out = NULL;
    if (!cfg->redis_enabled) return -ENODEV;
    f = calloc(1, sizeof(*f));
    if (f == NULL) return -ENOMEM;
    f->fn = fn;
    f->gap = gap;
    f->cls = cls;
    f->node_len = fleet_node(f->node, sizeof(f->node));
    if (state_path != NULL && (f->state_path = strdup(state_path)) == NULL) {
        rc = -ENOMEM;
        goto out_free;
    }
    fleet_load_pos(f);
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
    free(f->state_path);
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
