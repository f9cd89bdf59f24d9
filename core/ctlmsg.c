/* core/ctlmsg.c - see core/ctlmsg.h.
 *
 * The reader is a state machine over the bytes: each value becomes a token, each open
 * object or array an entry on a fixed stack, and a token's "next" is set when its value ends
 * (at once for a scalar, at the closing bracket for a container), so a caller skips any
 * subtree in one step. */
#include "core/ctlmsg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/limits.h"

enum ctlmsg_state {
    CTLMSG_VALUE = 0,    /* a value */
    CTLMSG_VALUE_OR_END, /* after '[': a value or ']' */
    CTLMSG_KEY,          /* after ',' in an object: a key */
    CTLMSG_KEY_OR_END,   /* after '{': a key or '}' */
    CTLMSG_COLON,        /* after a key */
    CTLMSG_COMMA_OR_END, /* after a member or element */
    CTLMSG_DONE,         /* the top value is complete: only whitespace may follow */
};

static bool ctlmsg_is_ws(char c);
static int ctlmsg_scan_string(const char *p, size_t len, size_t *pos);
static int ctlmsg_scan_number(const char *p, size_t len, size_t *pos);
static int ctlmsg_hex4(const char *p, uint32_t *out);
static size_t ctlmsg_utf8(uint32_t cp, char out[4]);

static bool ctlmsg_is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* *pos at the opening quote: moves it past the closing one. 0 or -EBADMSG. */
static int ctlmsg_scan_string(const char *p, size_t len, size_t *pos)
{
    size_t i = *pos + 1;

    while (i < len) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"') {
            *pos = i + 1;
            return 0;
        }
        if (c < 0x20) return -EBADMSG;
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= len) return -EBADMSG;
        switch (p[i + 1]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            i += 2;
            break;
        case 'u': {
            uint32_t cp;
            if (i + 6 > len || ctlmsg_hex4(p + i + 2, &cp) < 0) return -EBADMSG;
            i += 6;
            break;
        }
        default:
            return -EBADMSG;
        }
    }
    return -EBADMSG;
}

/* RFC 8259 §6: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; moves *pos past it. */
static int ctlmsg_scan_number(const char *p, size_t len, size_t *pos)
{
    size_t i = *pos, digits;

    if (i < len && p[i] == '-') i++;
    if (i < len && p[i] == '0') {
        i++;
    } else {
        for (digits = 0; i < len && p[i] >= '0' && p[i] <= '9'; digits++)
            i++;
        if (digits == 0) return -EBADMSG;
    }
    if (i < len && p[i] == '.') {
        i++;
        for (digits = 0; i < len && p[i] >= '0' && p[i] <= '9'; digits++)
            i++;
        if (digits == 0) return -EBADMSG;
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < len && (p[i] == '+' || p[i] == '-')) i++;
        for (digits = 0; i < len && p[i] >= '0' && p[i] <= '9'; digits++)
            i++;
        if (digits == 0) return -EBADMSG;
    }
    *pos = i;
    return 0;
}

static int ctlmsg_hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (uint32_t)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (uint32_t)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (uint32_t)(c - 'A' + 10);
        } else {
            return -EBADMSG;
        }
    }
    *out = v;
    return 0;
}

static size_t ctlmsg_utf8(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int cw_ctlmsg_parse(const char *p, size_t len, struct cw_ctlmsg_tok *tok, size_t max, size_t *count)
{
    size_t stack[CW_CTLMSG_DEPTH_MAX];
    size_t depth = 0, n = 0, pos = 0;
    enum ctlmsg_state st = CTLMSG_VALUE;

    if (len > UINT32_MAX) return -EBADMSG;
    while (pos < len) {
        char c = p[pos];
        size_t start = pos;
        uint32_t kind;
        int rc;

        if (ctlmsg_is_ws(c)) {
            pos++;
            continue;
        }
        if (st == CTLMSG_DONE) return -EBADMSG;
        if (st == CTLMSG_COLON) {
            if (c != ':') return -EBADMSG;
            pos++;
            st = CTLMSG_VALUE;
            continue;
        }
        if (st == CTLMSG_COMMA_OR_END ||
            ((st == CTLMSG_VALUE_OR_END || st == CTLMSG_KEY_OR_END) && (c == ']' || c == '}'))) {
            bool in_obj = depth > 0 && tok[stack[depth - 1]].kind == CW_CTLMSG_OBJECT;
            if (c == ',' && st == CTLMSG_COMMA_OR_END) {
                st = in_obj ? CTLMSG_KEY : CTLMSG_VALUE;
                pos++;
                continue;
            }
            if (depth == 0 || c != (in_obj ? '}' : ']')) return -EBADMSG;
            depth--;
            tok[stack[depth]].end = (uint32_t)(pos + 1);
            tok[stack[depth]].next = (uint32_t)n;
            pos++;
            st = depth == 0 ? CTLMSG_DONE : CTLMSG_COMMA_OR_END;
            continue;
        }
        if (st == CTLMSG_KEY || st == CTLMSG_KEY_OR_END) {
            if (c != '"') return -EBADMSG;
            rc = ctlmsg_scan_string(p, len, &pos);
            if (rc < 0) return rc;
            if (n >= max) return -ENOSPC;
            tok[n] = (struct cw_ctlmsg_tok){CW_CTLMSG_STRING, (uint32_t)start + 1,
                                            (uint32_t)pos - 1, (uint32_t)n + 1};
            n++;
            st = CTLMSG_COLON;
            continue;
        }
        /* A value. */
        if (n >= max) return -ENOSPC;
        if (c == '{' || c == '[') {
            if (depth >= CW_CTLMSG_DEPTH_MAX) return -ENOSPC;
            tok[n] = (struct cw_ctlmsg_tok){c == '{' ? CW_CTLMSG_OBJECT : CW_CTLMSG_ARRAY,
                                            (uint32_t)start, 0, 0};
            stack[depth++] = n++;
            pos++;
            st = c == '{' ? CTLMSG_KEY_OR_END : CTLMSG_VALUE_OR_END;
            continue;
        }
        if (c == '"') {
            rc = ctlmsg_scan_string(p, len, &pos);
            if (rc < 0) return rc;
            tok[n] = (struct cw_ctlmsg_tok){CW_CTLMSG_STRING, (uint32_t)start + 1,
                                            (uint32_t)pos - 1, (uint32_t)n + 1};
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            rc = ctlmsg_scan_number(p, len, &pos);
            if (rc < 0) return rc;
            tok[n] = (struct cw_ctlmsg_tok){CW_CTLMSG_NUMBER, (uint32_t)start, (uint32_t)pos,
                                            (uint32_t)n + 1};
        } else {
            static const char *const lit[] = {"true", "false", "null"};
            static const uint32_t lit_kind[] = {CW_CTLMSG_TRUE, CW_CTLMSG_FALSE, CW_CTLMSG_NULL};
            size_t k;
            for (k = 0; k < 3; k++) {
                size_t l = strlen(lit[k]);
                if (len - pos >= l && memcmp(p + pos, lit[k], l) == 0) break;
            }
            if (k == 3) return -EBADMSG;
            kind = lit_kind[k];
            pos += strlen(lit[k]);
            tok[n] = (struct cw_ctlmsg_tok){kind, (uint32_t)start, (uint32_t)pos, (uint32_t)n + 1};
        }
        n++;
        st = depth == 0 ? CTLMSG_DONE : CTLMSG_COMMA_OR_END;
    }
    if (st != CTLMSG_DONE) return -EBADMSG;
    *count = n;
    return 0;
}

int cw_ctlmsg_find(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj, const char *key)
{
    size_t klen = strlen(key), i;

    if (tok[obj].kind != CW_CTLMSG_OBJECT) return -ENOENT;
    /* Members are key, value pairs; a value's next skips its subtree. */
    for (i = obj + 1; i < tok[obj].next; i = tok[i + 1].next) {
        if (tok[i].end - tok[i].start == klen && memcmp(p + tok[i].start, key, klen) == 0)
            return (int)(i + 1);
    }
    return -ENOENT;
}

int cw_ctlmsg_str(const char *p, const struct cw_ctlmsg_tok *tok, size_t i, char *out, size_t size,
                  size_t *len)
{
    size_t o = 0, j, end;

    if (tok[i].kind != CW_CTLMSG_STRING) return -EINVAL;
    if (size == 0) return -ENOSPC;
    end = tok[i].end;
    for (j = tok[i].start; j < end;) {
        char buf[4];
        size_t n = 1;
        if (p[j] != '\\') {
            buf[0] = p[j++];
        } else {
            char e = p[j + 1]; /* the parser checked every escape */
            j += 2;
            switch (e) {
            case 'b':
                buf[0] = '\b';
                break;
            case 'f':
                buf[0] = '\f';
                break;
            case 'n':
                buf[0] = '\n';
                break;
            case 'r':
                buf[0] = '\r';
                break;
            case 't':
                buf[0] = '\t';
                break;
            case 'u': {
                uint32_t cp, lo;
                if (ctlmsg_hex4(p + j, &cp) < 0) return -EBADMSG;
                j += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (j + 6 > end || p[j] != '\\' || p[j + 1] != 'u' ||
                        ctlmsg_hex4(p + j + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return -EBADMSG;
                    j += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return -EBADMSG;
                }
                if (cp == 0) return -EBADMSG;
                n = ctlmsg_utf8(cp, buf);
                break;
            }
            default: /* '"', '\\', '/' */
                buf[0] = e;
                break;
            }
        }
        if (o + n >= size) return -ENOSPC;
        memcpy(out + o, buf, n);
        o += n;
    }
    out[o] = '\0';
    if (len != NULL) *len = o;
    return 0;
}

int cw_ctlmsg_int(const char *p, const struct cw_ctlmsg_tok *tok, size_t i, int64_t *out)
{
    char buf[32];
    size_t n = tok[i].end - tok[i].start;
    char *end;
    long long v;

    if (tok[i].kind != CW_CTLMSG_NUMBER || n >= sizeof(buf)) return -EINVAL;
    memcpy(buf, p + tok[i].start, n);
    buf[n] = '\0';
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0') return -EINVAL;
    *out = (int64_t)v;
    return 0;
}

double cw_ctlmsg_num(const char *p, const struct cw_ctlmsg_tok *tok, size_t i)
{
    char buf[64];
    size_t n = tok[i].end - tok[i].start;

    if (tok[i].kind != CW_CTLMSG_NUMBER || n >= sizeof(buf)) return 0;
    memcpy(buf, p + tok[i].start, n);
    buf[n] = '\0';
    return strtod(buf, NULL);
}

bool cw_ctlmsg_is_true(const struct cw_ctlmsg_tok *tok, size_t i)
{
    return tok[i].kind == CW_CTLMSG_TRUE;
}

int64_t cw_ctlmsg_get_int(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj,
                          const char *key, int64_t def)
{
    int i = cw_ctlmsg_find(p, tok, obj, key);
    int64_t v;

    if (i < 0 || cw_ctlmsg_int(p, tok, (size_t)i, &v) < 0) return def;
    return v;
}

bool cw_ctlmsg_get_bool(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj, const char *key,
                        bool def)
{
    int i = cw_ctlmsg_find(p, tok, obj, key);

    if (i < 0) return def;
    if (tok[i].kind == CW_CTLMSG_TRUE) return true;
    if (tok[i].kind == CW_CTLMSG_FALSE) return false;
    return def;
}

const char *cw_ctlmsg_get_str(const char *p, const struct cw_ctlmsg_tok *tok, size_t obj,
                              const char *key, char *out, size_t size, const char *def)
{
    int i = cw_ctlmsg_find(p, tok, obj, key);

    if (i < 0 || cw_ctlmsg_str(p, tok, (size_t)i, out, size, NULL) < 0) return def;
    return out;
}

void cw_ctlmsg_put(struct cw_ctlmsg_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->overflow || b->cap == 0) {
        b->overflow = true;
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = true;
        b->p[b->len] = '\0';
        return;
    }
    b->len += (size_t)n;
}

void cw_ctlmsg_put_str(struct cw_ctlmsg_buf *b, const char *s, size_t len)
{
    cw_ctlmsg_put(b, "\"");
    for (size_t i = 0; i < len && !b->overflow; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            cw_ctlmsg_put(b, "\\%c", c);
        } else if (c == '\n') {
            cw_ctlmsg_put(b, "\\n");
        } else if (c == '\t') {
            cw_ctlmsg_put(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            cw_ctlmsg_put(b, "\\u%04x", c);
        } else {
            cw_ctlmsg_put(b, "%c", c);
        }
    }
    cw_ctlmsg_put(b, "\"");
}

int cw_ctlmsg_split_url(struct cw_str url, struct cw_str *host, struct cw_str *target)
{
    static const char scheme[] = "http://";
    size_t sl = sizeof(scheme) - 1, i, h;

    if (url.len > CW_LIMIT_URL_BYTES || url.len <= sl) return -EINVAL;
    if (!cw_str_eq_ci(cw_str_make(url.p, sl), cw_str_make(scheme, sl))) return -EINVAL;
    for (i = 0; i < url.len; i++) {
        unsigned char c = (unsigned char)url.p[i];
        if (c <= 0x20 || c == 0x7f || c == '#') return -EINVAL;
    }
    for (h = sl; h < url.len && url.p[h] != '/' && url.p[h] != '?'; h++) {
        unsigned char c = (unsigned char)url.p[h];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
        if (!ok) return -EINVAL;
    }
    if (h == sl) return -EINVAL;
    *host = cw_str_make(url.p + sl, h - sl);
    if (h == url.len) {
        *target = CW_STR_LIT("/");
    } else if (url.p[h] == '?') {
        return -EINVAL; /* "http://h?q" has no path to key */
    } else {
        *target = cw_str_make(url.p + h, url.len - h);
    }
    return 0;
}
