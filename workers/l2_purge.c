/* workers/l2_purge.c - purges in L2: an entry deleted or marked stale, a tag's entries over
 * the 256 hash-tag groups, prefix bans checked by every L2 read, and the purge log stream;
 * see workers/l2.h. Part of the l2 module (workers/l2_int.h).
 *
 * Soft purges rewrite the entry's header in Redis with a script, as L1's soft purge does
 * (core/ban.h: cw_ban_soften()): the flags word at byte 8 and fresh-until, swr-until and
 * sie-until at bytes 56..79 of struct cw_entry_hdr, little-endian (core/entry.h: native
 * endianness, and every node runs the same build). A value that is not an entry (wrong
 * magic, short) is left alone: readers refuse it anyway. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ban.h"
#include "core/entry.h"
#include "core/fleetmsg.h"
#include "core/key.h"
#include "core/log.h"
#include "workers/l2_int.h"

static_assert(offsetof(struct cw_entry_hdr, flags) == 8, "the soft-purge script's offsets");
static_assert(offsetof(struct cw_entry_hdr, stored_at_ms) == 32, "the read script's offset");
static_assert(offsetof(struct cw_entry_hdr, fresh_until_ms) == 56, "the soft-purge script");
static_assert(offsetof(struct cw_entry_hdr, swr_until_ms) == 64, "the soft-purge script");
static_assert(offsetof(struct cw_entry_hdr, sie_until_ms) == 72, "the soft-purge script");
static_assert(CW_ENTRY_MAGIC == 0x31455743u && CW_ENTRY_SOFT_PURGED == 4, "the scripts' values");

#define L2_GROUPS 256 /* hash-tag groups: two hex digits */

/* The soft mark of one value, as a Lua function: k the key, now the purge's time. */
#define L2_SOFT_FN                                                                                 \
    "local function soft(k,now) local v=redis.call('GET',k) "                                      \
    "if not v or #v<136 or struct.unpack('<I4',v,1)~=826627907 then return 0 end "                 \
    "local fl=struct.unpack('<I4',v,9) local f,s,e=struct.unpack('<i8i8i8',v,57) "                 \
    "if f>now then local d=f-now f=now s=math.max(s-d,now) e=math.max(e-d,now) end "               \
    "redis.call('SETRANGE',k,8,struct.pack('<I4',bit.bor(fl,4))) "                                 \
    "redis.call('SETRANGE',k,56,struct.pack('<i8i8i8',f,s,e)) return 1 end "

/* KEYS[1] an entry; ARGV[1] the purge's wall-clock ms. SETRANGE keeps the key's TTL. */
static const char l2_soft_script[] = L2_SOFT_FN "return soft(KEYS[1],tonumber(ARGV[1]))";

/* KEYS[1] a tag's set in one group; ARGV[1] the group's entry name prefix "<prefix>{hh}",
 * ARGV[2] "1" soft, ARGV[3] the time. Hard: the members and the set go; soft: the members
 * are marked, the set stays (a later hard purge still finds them). The members' names are
 * built here: they share the set's hash tag, so they live on its cluster slot. */
static const char l2_tag_script[] =
    L2_SOFT_FN "local m=redis.call('SMEMBERS',KEYS[1]) local n=0 "
               "for i=1,#m do if ARGV[2]=='1' then n=n+soft(ARGV[1]..m[i],tonumber(ARGV[3])) "
               "else n=n+redis.call('DEL',ARGV[1]..m[i]) end end "
               "if ARGV[2]~='1' then redis.call('DEL',KEYS[1]) end return n";

/* KEYS[1] a group's ban set; ARGV[1] the record, ARGV[2] its time (the score), ARGV[3] how
 * long bans are kept (ms), ARGV[4] the most kept. Returns how many were trimmed by count. */
static const char l2_ban_script[] =
    "redis.call('ZADD',KEYS[1],ARGV[2],ARGV[1]) "
    "redis.call('ZREMRANGEBYSCORE',KEYS[1],'-inf','('..(tonumber(ARGV[2])-tonumber(ARGV[3]))) "
    "local n=redis.call('ZREMRANGEBYRANK',KEYS[1],0,-1-tonumber(ARGV[4])) "
    "local t=redis.call('PTTL',KEYS[1]) "
    "if t<tonumber(ARGV[3]) then redis.call('PEXPIRE',KEYS[1],ARGV[3]) end return n";

/* KEYS[1] an entry; ARGV[1] its group's ban set, ARGV[2] the most bans returned. The entry
 * and the bans recorded at or after the time it was stored (bytes 33..40 of its header; a
 * value too short for one gets all): only those can apply, so a read without a recent ban
 * carries none. The ban set is not a declared key: it shares the entry's hash tag, so it is
 * on the same cluster slot, and a single-key script is still redirected (ASK) as a GET is
 * while its slot migrates, where Redis answers a multi-key one with TRYAGAIN. */
static const char l2_get_script[] =
    "local v=redis.call('GET',KEYS[1]) if not v then return false end local t=0 "
    "if #v>=40 then t=struct.unpack('<i8',v,33) end "
    "return {v,redis.call('ZRANGEBYSCORE',ARGV[1],t,'+inf','LIMIT',0,ARGV[2])}";

/* KEYS[1] the log; ARGV[1] the id of the last entry applied ("" for none yet), ARGV[2] the
 * most entries returned. One string: "<1|0> <last id of the log>\n" (1: ARGV[1] is still in
 * the log, so nothing after it was trimmed), then per entry "<id> <len> <message>". */
static const char l2_log_script[] =
    "local tail=redis.call('XREVRANGE',KEYS[1],'+','-','COUNT',1) "
    "local last='0-0' if #tail>0 then last=tail[1][1] end "
    "if ARGV[1]=='' then return '1 '..last..'\\n' end "
    "local kept=#redis.call('XRANGE',KEYS[1],ARGV[1],ARGV[1]) "
    "local out={kept..' '..last..'\\n'} "
    "for _,e in ipairs(redis.call('XRANGE',KEYS[1],'('..ARGV[1],'+','COUNT',ARGV[2])) do "
    "local m=e[2][2] or '' table.insert(out,e[1]..' '..#m..' '..m) end "
    "return table.concat(out)";

/* The fleet-wide secret of L2 entry names: "cachewarp-l2-v1" and a NUL. */
static const uint8_t l2_name_secret[16] = "cachewarp-l2-v1";

void cw_l2_entry_name(struct cw_str full_key, char out[33])
{
    struct cw_key k;

    cw_key_hash(l2_name_secret, full_key.p, full_key.len, &k);
    cw_key_hex(&k, out);
}

size_t cw_l2_entry_tags(const struct cw_entry_view *v, struct cw_str *tags)
{
    struct cw_str name, value;
    size_t n = 0, off = 0;

    while (n < CW_LIMIT_TAGS && cw_entry_header_next(v, &off, &name, &value)) {
        if (!cw_str_eq_ci(name, CW_STR_LIT("Surrogate-Key"))) continue;
        for (size_t i = 0; i < value.len && n < CW_LIMIT_TAGS;) {
            size_t start;
            while (i < value.len && (value.p[i] == ' ' || value.p[i] == '\t'))
                i++;
            start = i;
            while (i < value.len && value.p[i] != ' ' && value.p[i] != '\t')
                i++;
            if (i > start && i - start <= CW_LIMIT_TAG_BYTES)
                tags[n++] = cw_str_make(value.p + start, i - start);
        }
    }
    return n;
}

/* "<prefix>{<group>}<kind><name>" into buf: its length, or -EINVAL. */
static int l2_purge_key(const struct cw_l2 *l2, const char group[2], const char *kind,
                        struct cw_str name, char *buf, size_t size)
{
    int n;

    if (name.len > CW_LIMIT_L2_KEY_BYTES) return -EINVAL;
    n = snprintf(buf, size, "%s{%.2s}%s%.*s", l2->prefix, group, kind, (int)name.len, name.p);
    if (n < 0 || (size_t)n >= size) return -EINVAL;
    return n;
}

static void l2_purge_group(unsigned g, char out[2])
{
    static const char hex[] = "0123456789abcdef";

    out[0] = hex[(g >> 4) & 15];
    out[1] = hex[g & 15];
}

static int l2_eval(struct cw_l2 *l2, enum l2_op_kind kind, const char *script, size_t script_len,
                   int nkeys, const char **args, const size_t *lens, int nargs, cw_l2_done_fn fn,
                   void *arg)
{
    const char *argv[12];
    size_t alens[12];
    char nk[4];
    int argc = 0;

    if (nargs > 9) return -EINVAL;
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[argc] = "EVAL";
    alens[argc++] = 4;
    argv[argc] = script;
    alens[argc++] = script_len;
    argv[argc] = nk;
    alens[argc++] = strlen(nk);
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        alens[argc++] = lens[i];
    }
    /* args[0] is the first key: its slot routes the command (the keys share a hash tag). */
    return l2_submit_to(l2, kind, NULL, nkeys > 0 ? cw_hashslot_of(args[0], lens[0]) : 0, argc,
                        argv, alens, fn, arg);
}

int cw_l2_purge_entry(struct cw_l2 *l2, struct cw_str name, bool soft, int64_t now_ms,
                      cw_l2_done_fn fn, void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES], t[24];
    const char *args[2] = {k, t};
    size_t lens[2];
    int n;

    if (name.len < 2 || memchr(name.p, '{', name.len) || memchr(name.p, '}', name.len))
        return -EINVAL;
    n = l2_purge_key(l2, name.p, "", name, k, sizeof(k));
    if (n < 0) return n;
    if (!soft) return cw_l2_del(l2, name, fn, arg);
    lens[0] = (size_t)n;
    lens[1] = (size_t)snprintf(t, sizeof(t), "%lld", (long long)now_ms);
    return l2_eval(l2, L2_OP_PURGE, l2_soft_script, sizeof(l2_soft_script) - 1, 1, args, lens, 2,
                   fn, arg);
}

int cw_l2_purge_tag(struct cw_l2 *l2, struct cw_str tag, bool soft, int64_t now_ms,
                    cw_l2_done_fn fn, void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES], pre[CW_LIMIT_L2_KEY_BYTES], t[24], g[2];
    const char *args[4] = {k, pre, soft ? "1" : "0", t};
    size_t lens[4] = {0, 0, 1, 0};
    int accepted = 0, rc = 0;

    if (tag.len == 0 || tag.len > CW_LIMIT_TAG_BYTES) return -EINVAL;
    lens[3] = (size_t)snprintf(t, sizeof(t), "%lld", (long long)now_ms);
    for (unsigned i = 0; i < L2_GROUPS; i++) {
        l2_purge_group(i, g);
        int n = l2_purge_key(l2, g, "t:", tag, k, sizeof(k));
        int m = l2_purge_key(l2, g, "", CW_STR_LIT(""), pre, sizeof(pre));
        if (n < 0 || m < 0) return -EINVAL;
        lens[0] = (size_t)n;
        lens[1] = (size_t)m;
        rc = l2_eval(l2, L2_OP_PURGE, l2_tag_script, sizeof(l2_tag_script) - 1, 1, args, lens, 4,
                     fn, arg);
        if (rc < 0) break;
        accepted++;
    }
    if (rc < 0 && accepted > 0)
        cw_warn_rl("l2: tag purge %.*s: %d of %d groups refused: %s", (int)tag.len, tag.p,
                   L2_GROUPS - accepted, L2_GROUPS, strerror(-rc));
    return accepted > 0 ? accepted : rc;
}

int cw_l2_ban_add(struct cw_l2 *l2, struct cw_str record, int64_t time_ms, cw_l2_done_fn fn,
                  void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES], t[24], keep[24], max[16], g[2];
    const char *args[5] = {k, record.p, t, keep, max};
    size_t lens[5] = {0, record.len, 0, 0, 0};
    int accepted = 0, rc = 0;

    if (record.len == 0 || record.len > CW_FLEETMSG_BYTES) return -EINVAL;
    lens[2] = (size_t)snprintf(t, sizeof(t), "%lld", (long long)time_ms);
    lens[3] = (size_t)snprintf(keep, sizeof(keep), "%lld", (long long)CW_L2_BAN_KEEP_MS);
    lens[4] = (size_t)snprintf(max, sizeof(max), "%d", CW_L2_BANS_MAX);
    for (unsigned i = 0; i < L2_GROUPS; i++) {
        l2_purge_group(i, g);
        int n = l2_purge_key(l2, g, "b:", CW_STR_LIT(""), k, sizeof(k));
        if (n < 0) return -EINVAL;
        lens[0] = (size_t)n;
        rc = l2_eval(l2, L2_OP_BAN, l2_ban_script, sizeof(l2_ban_script) - 1, 1, args, lens, 5, fn,
                     arg);
        if (rc < 0) break;
        accepted++;
    }
    if (rc < 0 && accepted > 0)
        cw_warn_rl("l2: ban: %d of %d groups refused: %s", L2_GROUPS - accepted, L2_GROUPS,
                   strerror(-rc));
    return accepted > 0 ? accepted : rc;
}

/* The log's key: its own hash tag, so that it lives on one cluster slot. */
static int l2_log_key(const struct cw_l2 *l2, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s{purgelog}", l2->prefix);

    return n < 0 || (size_t)n >= size ? -EINVAL : n;
}

int cw_l2_log_append(struct cw_l2 *l2, struct cw_str msg, cw_l2_done_fn fn, void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES], max[16];
    const char *argv[8] = {"XADD", k, "MAXLEN", "~", max, "*", "m", msg.p};
    size_t lens[8] = {4, 0, 6, 1, 0, 1, 1, msg.len};
    int n = l2_log_key(l2, k, sizeof(k));

    if (n < 0) return n;
    lens[1] = (size_t)n;
    lens[4] = (size_t)snprintf(max, sizeof(max), "%d", CW_L2_PURGELOG_MAX);
    return l2_submit_to(l2, L2_OP_LOG, NULL, cw_hashslot_of(k, lens[1]), 8, argv, lens, fn, arg);
}

int cw_l2_log_read(struct cw_l2 *l2, struct cw_str after_id, unsigned count, cw_l2_done_fn fn,
                   void *arg)
{
    char k[CW_LIMIT_L2_KEY_BYTES], c[16];
    const char *args[3] = {k, after_id.p != NULL ? after_id.p : "", c};
    size_t lens[3] = {0, after_id.len, 0};
    int n = l2_log_key(l2, k, sizeof(k));

    if (n < 0) return n;
    if (count == 0) return -EINVAL;
    lens[0] = (size_t)n;
    lens[2] = (size_t)snprintf(c, sizeof(c), "%u", count);
    return l2_eval(l2, L2_OP_LOG, l2_log_script, sizeof(l2_log_script) - 1, 1, args, lens, 3, fn,
                   arg);
}

int l2_get_submit(struct cw_l2 *l2, const char *key, size_t key_len, cw_l2_done_fn fn, void *arg)
{
    char bans[CW_LIMIT_L2_KEY_BYTES], max[16];
    const char *args[3] = {key, bans, max};
    size_t lens[3] = {key_len, 0, 0};
    const char *open = memchr(key, '{', key_len);
    int n;

    /* The entry's own group: the two characters inside its hash tag. */
    if (open == NULL || (size_t)(open - key) + 4 > key_len || open[3] != '}') return -EINVAL;
    n = l2_purge_key(l2, open + 1, "b:", CW_STR_LIT(""), bans, sizeof(bans));
    if (n < 0) return n;
    lens[1] = (size_t)n;
    lens[2] = (size_t)snprintf(max, sizeof(max), "%d", CW_L2_BANS_MAX);
    return l2_eval(l2, L2_OP_GET, l2_get_script, sizeof(l2_get_script) - 1, 1, args, lens, 3, fn,
                   arg);
}

int l2_get_result(struct l2_op *op, const redisReply *r, struct cw_str *value)
{
    struct cw_str recs[CW_L2_BANS_MAX];
    const redisReply *v, *b;
    struct cw_entry_view view;
    struct cw_entry_hdr h;
    int64_t soft_at = 0;
    size_t n = 0, bad = 0;

    if (r->type == REDIS_REPLY_NIL) return -ENOENT;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) return -EIO;
    v = r->element[0];
    b = r->element[1];
    if (v->type != REDIS_REPLY_STRING || b->type != REDIS_REPLY_ARRAY) return -EIO;
    *value = cw_str_make(v->str, v->len);
    if (v->len > op->l2->max_value_bytes) return -EFBIG;
    if (b->elements == 0) return 0;
    /* A value that does not decode goes to the caller, which refuses it and counts it. */
    if (cw_entry_decode(v->str, v->len, &view) < 0) return 0;
    for (size_t i = 0; i < b->elements && n < CW_L2_BANS_MAX; i++) {
        if (b->element[i]->type == REDIS_REPLY_STRING)
            recs[n++] = cw_str_make(b->element[i]->str, b->element[i]->len);
    }
    switch (cw_ban_check(recs, n, view.key, view.h.stored_at_ms, &soft_at, &bad)) {
    case CW_BAN_HARD:
        op->l2->stats.banned++;
        return -ENOENT;
    case CW_BAN_SOFT:
        /* The reply is this op's until the callback returns: the header is rewritten in it. */
        op->l2->stats.banned++;
        h = view.h;
        cw_ban_soften(&h, soft_at);
        memcpy(v->str, &h, sizeof(h));
        return 0;
    case CW_BAN_NONE:
        break;
    }
    if (bad > 0) cw_warn_rl("l2: %zu malformed ban records ignored", bad);
    return 0;
}
