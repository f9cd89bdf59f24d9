/* core/cc.c - Cache-Control parsing (RFC 9111 §5.2), targeted cache-control fields (RFC
 * 9213) and header-list helpers.
 *
 * The Cache-Control parser never fails: a directive it cannot read is skipped up to the next
 * comma that is not inside a quoted string, and where a malformed directive still says
 * something about safety (max-age, s-maxage, no-cache, private) the restrictive reading is
 * kept. A targeted field is a Structured Fields Dictionary (RFC 8941) and is all or nothing:
 * a line that does not parse is refused whole, and its members are then applied with the same
 * cc_apply() as Cache-Control's, so that both mean the same (RFC 9213 §2.2). */
#include "core/cc.h"

#include <errno.h>
#include <limits.h>

#include "core/limits.h"

/* How a directive's argument was written. */
enum cc_val_kind {
    CC_VAL_NONE = 0, /* "no-store" */
    CC_VAL_TOKEN,    /* "max-age=60" (possibly empty: "max-age=") */
    CC_VAL_QUOTED,   /* no-cache="a, b": val is the inside of the quotes */
    CC_VAL_BAD,      /* unterminated quote or junk before the next comma */
};

struct cc_dir {
    struct cw_str name;
    enum cc_val_kind kind;
    struct cw_str val;
    bool escaped; /* the quoted value held a backslash escape */
};

static size_t cc_skip_ows(const char *p, size_t len, size_t i);
static size_t cc_skip_to_comma(const char *p, size_t len, size_t i);
static size_t cc_parse_value(const char *p, size_t len, size_t i, struct cc_dir *d);
static size_t cc_parse_one(const char *p, size_t len, size_t i, struct cc_dir *d);
static bool cc_delta(const struct cc_dir *d, int64_t *out_s);
static void cc_keep_min(int64_t *field, int64_t v);
static void cc_set_fields(struct cw_cc *cc, const struct cc_dir *d, uint32_t plain,
                          uint32_t with_fields, struct cw_str *fields);
static bool cc_name_is(const struct cc_dir *d, const char *lit);
static void cc_apply(struct cw_cc *cc, const struct cc_dir *d);
static void cc_forget(struct cw_cc *cc, const struct cc_dir *d);
static bool cc_sf_is_lcalpha(unsigned char c);
static bool cc_sf_is_digit(unsigned char c);
static size_t cc_sf_skip_sp(const char *p, size_t len, size_t i);
static bool cc_sf_key(const char *p, size_t len, size_t *i, struct cw_str *key);
static bool cc_sf_number(const char *p, size_t len, size_t *i, struct cc_dir *d);
static bool cc_sf_string(const char *p, size_t len, size_t *i, struct cc_dir *d);
static bool cc_sf_bare(const char *p, size_t len, size_t *i, struct cc_dir *d);
static bool cc_sf_params(const char *p, size_t len, size_t *i);
static bool cc_sf_inner_list(const char *p, size_t len, size_t *i);
static bool cc_sf_member(const char *p, size_t len, size_t *i, struct cc_dir *d);
static int cc_sf_dict(struct cw_cc *cc, const char *p, size_t len);

/* The directives that only set a flag; permissive ones are dropped when malformed. */
static const struct {
    const char *name;
    uint32_t flag;
    bool permissive;
} cc_flag_dirs[] = {
    {"no-store", CW_CC_NO_STORE, false},
    {"public", CW_CC_PUBLIC, true},
    {"must-revalidate", CW_CC_MUST_REVALIDATE, false},
    {"proxy-revalidate", CW_CC_PROXY_REVALIDATE, false},
    {"no-transform", CW_CC_NO_TRANSFORM, false},
    {"only-if-cached", CW_CC_ONLY_IF_CACHED, false},
    {"must-understand", CW_CC_MUST_UNDERSTAND, true},
    {"immutable", CW_CC_IMMUTABLE, true},
};

/* Returns the first index at or after i that is not OWS (len when none). */
static size_t cc_skip_ows(const char *p, size_t len, size_t i)
{
    while (i < len && cw_is_ows((unsigned char)p[i]))
        i++;
    return i;
}

/* Returns the index just past the next comma at or after i that is outside a quoted string,
 * or len. A backslash inside quotes escapes the next byte (RFC 9110 §5.6.4). */
static size_t cc_skip_to_comma(const char *p, size_t len, size_t i)
{
    bool in_quote = false;

    while (i < len) {
        char c = p[i++];
        if (in_quote) {
            if (c == '\\' && i < len) {
                i++;
            } else if (c == '"') {
                in_quote = false;
            }
        } else if (c == '"') {
            in_quote = true;
        } else if (c == ',') {
            break;
        }
    }
    return i;
}

/* Reads the argument that starts at p[i] (just after '=' and OWS) into d; returns the index
 * after it. An unterminated quoted string marks d bad and consumes everything. */
static size_t cc_parse_value(const char *p, size_t len, size_t i, struct cc_dir *d)
{
    size_t start;

    if (i < len && p[i] == '"') {
        start = ++i;
        while (i < len && p[i] != '"') {
            if (p[i] == '\\') {
                d->escaped = true;
                i++;
            }
            if (i < len) i++;
        }
        if (i >= len) {
            d->kind = CC_VAL_BAD;
            return len;
        }
        d->kind = CC_VAL_QUOTED;
        d->val = cw_str_make(p + start, i - start);
        return i + 1;
    }
    start = i;
    while (i < len && cw_is_tchar((unsigned char)p[i]))
        i++;
    d->kind = CC_VAL_TOKEN;
    d->val = cw_str_make(p + start, i - start);
    return i;
}

/* Reads one directive starting at p[i], which is neither OWS nor a comma. Returns the index
 * after it and its comma; always greater than i, so the caller's loop advances. A directive
 * without a token name comes back with an empty name. */
static size_t cc_parse_one(const char *p, size_t len, size_t i, struct cc_dir *d)
{
    size_t start = i;

    memset(d, 0, sizeof(*d));
    while (i < len && cw_is_tchar((unsigned char)p[i]))
        i++;
    d->name = cw_str_make(p + start, i - start);
    if (d->name.len == 0) return cc_skip_to_comma(p, len, i);
    i = cc_skip_ows(p, len, i);
    if (i < len && p[i] == '=') {
        i = cc_skip_ows(p, len, i + 1);
        i = cc_parse_value(p, len, i, d);
        i = cc_skip_ows(p, len, i);
    }
    if (i < len && p[i] != ',') {
        /* Junk before the comma: "max-age=60 30", "no-store;x". */
        d->kind = CC_VAL_BAD;
        return cc_skip_to_comma(p, len, i);
    }
    return i < len ? i + 1 : i;
}

/* Reads a delta-seconds argument (RFC 9111 §1.2.2): digits only, token or quoted form (§5.2:
 * recipients accept both), clamped to CW_LIMIT_DELTA_SECONDS. False when absent or invalid. */
static bool cc_delta(const struct cc_dir *d, int64_t *out_s)
{
    int64_t v = 0;

    if (d->kind != CC_VAL_TOKEN && d->kind != CC_VAL_QUOTED) return false;
    if (d->escaped || d->val.len == 0) return false;
    for (size_t i = 0; i < d->val.len; i++) {
        unsigned char c = (unsigned char)d->val.p[i];
        if (c < '0' || c > '9') return false;
        if (v < CW_LIMIT_DELTA_SECONDS) v = v * 10 + (c - '0');
    }
    *out_s = v > CW_LIMIT_DELTA_SECONDS ? CW_LIMIT_DELTA_SECONDS : v;
    return true;
}

/* Keeps the smaller of two occurrences (-1 = absent): conflicting duplicates take the most
 * restrictive reading (RFC 9111 §4.2.1). */
static void cc_keep_min(int64_t *field, int64_t v)
{
    if (*field < 0 || v < *field) *field = v;
}

/* no-cache and private: with a field list, remember it; without one, or with one we cannot
 * borrow safely (escapes, empty, a second different list), fall back to the plain directive,
 * which is the restrictive reading. */
static void cc_set_fields(struct cw_cc *cc, const struct cc_dir *d, uint32_t plain,
                          uint32_t with_fields, struct cw_str *fields)
{
    if ((d->kind != CC_VAL_TOKEN && d->kind != CC_VAL_QUOTED) || d->escaped || d->val.len == 0) {
        cc->flags |= plain;
        return;
    }
    if ((cc->flags & with_fields) && !cw_str_eq(*fields, d->val)) {
        cc->flags |= plain;
        return;
    }
    cc->flags |= with_fields;
    *fields = d->val;
}

static bool cc_name_is(const struct cc_dir *d, const char *lit)
{
    return cw_str_eq_ci(d->name, cw_str_cstr(lit));
}

/* Records one directive. Unknown names are ignored (§5.2.3). Permissive directives (public,
 * immutable, must-understand, the stale windows) are dropped when malformed; restrictive ones
 * apply whatever their argument. */
static void cc_apply(struct cw_cc *cc, const struct cc_dir *d)
{
    int64_t v;

    if (cc_name_is(d, "max-age")) {
        /* A malformed max-age is present and 0: stale, the safe reading. */
        cc_keep_min(&cc->max_age_s, cc_delta(d, &v) ? v : 0);
    } else if (cc_name_is(d, "s-maxage")) {
        cc_keep_min(&cc->s_maxage_s, cc_delta(d, &v) ? v : 0);
    } else if (cc_name_is(d, "no-cache")) {
        cc_set_fields(cc, d, CW_CC_NO_CACHE, CW_CC_NO_CACHE_FIELDS, &cc->no_cache_fields);
    } else if (cc_name_is(d, "private")) {
        cc_set_fields(cc, d, CW_CC_PRIVATE, CW_CC_PRIVATE_FIELDS, &cc->private_fields);
    } else if (cc_name_is(d, "stale-while-revalidate")) {
        if (cc_delta(d, &v)) cc_keep_min(&cc->swr_s, v);
    } else if (cc_name_is(d, "stale-if-error")) {
        if (cc_delta(d, &v)) cc_keep_min(&cc->sie_s, v);
    } else if (cc_name_is(d, "max-stale")) {
        if (d->kind == CC_VAL_NONE) {
            cc->flags |= CW_CC_MAX_STALE_ANY;
        } else if (cc_delta(d, &v)) {
            cc_keep_min(&cc->max_stale_s, v);
        }
    } else if (cc_name_is(d, "min-fresh")) {
        /* The larger min-fresh is the more restrictive. */
        if (cc_delta(d, &v) && v > cc->min_fresh_s) cc->min_fresh_s = v;
    } else {
        for (size_t i = 0; i < CW_ARRAY_LEN(cc_flag_dirs); i++) {
            if (!cc_name_is(d, cc_flag_dirs[i].name)) continue;
            if (!(cc_flag_dirs[i].permissive && d->kind == CC_VAL_BAD)) {
                cc->flags |= cc_flag_dirs[i].flag;
            }
            break;
        }
    }
}

void cw_cc_init(struct cw_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age_s = -1;
    cc->s_maxage_s = -1;
    cc->max_stale_s = -1;
    cc->min_fresh_s = -1;
    cc->swr_s = -1;
    cc->sie_s = -1;
}

/* Empty list elements (",,") are skipped without counting (RFC 9110 §5.6.1); every other
 * element, known or not, counts towards CW_LIMIT_CC_DIRECTIVES, and the rest of the line past
 * the limit is ignored. */
void cw_cc_parse(struct cw_cc *cc, const char *p, size_t len)
{
    size_t i = 0;
    unsigned n = 0;
    struct cc_dir d;

    if (p == NULL) return;
    while (i < len && n < CW_LIMIT_CC_DIRECTIVES) {
        i = cc_skip_ows(p, len, i);
        if (i >= len) break;
        if (p[i] == ',') {
            i++;
            continue;
        }
        n++;
        i = cc_parse_one(p, len, i, &d);
        if (d.name.len > 0) cc_apply(cc, &d);
    }
}

/* Undoes what an earlier occurrence of d's directive recorded, so that d replaces it: a
 * Structured Fields Dictionary keeps the last value of a repeated key (RFC 8941 §4.2.2). */
static void cc_forget(struct cw_cc *cc, const struct cc_dir *d)
{
    if (cc_name_is(d, "max-age")) {
        cc->max_age_s = -1;
    } else if (cc_name_is(d, "s-maxage")) {
        cc->s_maxage_s = -1;
    } else if (cc_name_is(d, "no-cache")) {
        cc->flags &= ~(uint32_t)(CW_CC_NO_CACHE | CW_CC_NO_CACHE_FIELDS);
        cc->no_cache_fields = cw_str_make(NULL, 0);
    } else if (cc_name_is(d, "private")) {
        cc->flags &= ~(uint32_t)(CW_CC_PRIVATE | CW_CC_PRIVATE_FIELDS);
        cc->private_fields = cw_str_make(NULL, 0);
    } else if (cc_name_is(d, "stale-while-revalidate")) {
        cc->swr_s = -1;
    } else if (cc_name_is(d, "stale-if-error")) {
        cc->sie_s = -1;
    } else if (cc_name_is(d, "max-stale")) {
        cc->max_stale_s = -1;
        cc->flags &= ~(uint32_t)CW_CC_MAX_STALE_ANY;
    } else if (cc_name_is(d, "min-fresh")) {
        cc->min_fresh_s = -1;
    } else {
        for (size_t i = 0; i < CW_ARRAY_LEN(cc_flag_dirs); i++) {
            if (cc_name_is(d, cc_flag_dirs[i].name)) cc->flags &= ~cc_flag_dirs[i].flag;
        }
    }
}

static bool cc_sf_is_lcalpha(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static bool cc_sf_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static size_t cc_sf_skip_sp(const char *p, size_t len, size_t i)
{
    while (i < len && p[i] == ' ')
        i++;
    return i;
}

/* RFC 8941 §4.2.3.3: key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ). */
static bool cc_sf_key(const char *p, size_t len, size_t *i, struct cw_str *key)
{
    size_t start = *i, k = *i;

    if (k >= len || !(cc_sf_is_lcalpha((unsigned char)p[k]) || p[k] == '*')) return false;
    for (k++; k < len; k++) {
        unsigned char c = (unsigned char)p[k];
        if (!cc_sf_is_lcalpha(c) && !cc_sf_is_digit(c) && c != '_' && c != '-' && c != '.' &&
            c != '*')
            break;
    }
    *key = cw_str_make(p + start, k - start);
    *i = k;
    return true;
}

/* RFC 8941 §4.2.4: an Integer (at most 15 digits) or a Decimal (at most 12 integer and 3
 * fraction digits). Only a non-negative Integer is a delta-seconds; anything else is marked
 * malformed (RFC 9213 §2.1: such values are not consumed as they stand). */
static bool cc_sf_number(const char *p, size_t len, size_t *i, struct cc_dir *d)
{
    size_t k = *i, start, int_digits = 0, frac_digits = 0;
    bool neg = false, dec = false;

    if (k < len && p[k] == '-') {
        neg = true;
        k++;
    }
    start = k;
    if (k >= len || !cc_sf_is_digit((unsigned char)p[k])) return false;
    while (k < len) {
        if (cc_sf_is_digit((unsigned char)p[k])) {
            if (dec) {
                frac_digits++;
            } else {
                int_digits++;
            }
        } else if (p[k] == '.' && !dec) {
            if (int_digits > 12) return false;
            dec = true;
        } else {
            break;
        }
        k++;
        if (!dec && int_digits > 15) return false;
        if (dec && int_digits + 1 + frac_digits > 16) return false;
    }
    if (dec && (frac_digits == 0 || frac_digits > 3)) return false;
    if (d != NULL) {
        d->kind = neg || dec ? CC_VAL_BAD : CC_VAL_TOKEN;
        d->val = cw_str_make(p + start, k - start);
    }
    *i = k;
    return true;
}

/* RFC 8941 §4.2.5: printable ASCII in quotes; a backslash escapes only '"' or '\'. */
static bool cc_sf_string(const char *p, size_t len, size_t *i, struct cc_dir *d)
{
    size_t k = *i + 1, start = k;
    bool escaped = false;

    while (k < len) {
        unsigned char c = (unsigned char)p[k];
        if (c == '\\') {
            if (k + 1 >= len || (p[k + 1] != '"' && p[k + 1] != '\\')) return false;
            escaped = true;
            k += 2;
        } else if (c == '"') {
            if (d != NULL) {
                d->kind = CC_VAL_QUOTED;
                d->val = cw_str_make(p + start, k - start);
                d->escaped = escaped;
            }
            *i = k + 1;
            return true;
        } else if (c < 0x20 || c > 0x7e) {
            return false;
        } else {
            k++;
        }
    }
    return false; /* no closing quote */
}

/* RFC 8941 §4.2.3.1: Integer, Decimal, String, Token, Byte Sequence or Boolean, into d (may
 * be NULL). Boolean true is a directive without a value; ?0 and byte sequences, which no
 * cache directive takes, are malformed. */
static bool cc_sf_bare(const char *p, size_t len, size_t *i, struct cc_dir *d)
{
    size_t k = *i;
    unsigned char c;

    if (k >= len) return false;
    c = (unsigned char)p[k];
    if (c == '-' || cc_sf_is_digit(c)) return cc_sf_number(p, len, i, d);
    if (c == '"') return cc_sf_string(p, len, i, d);
    if (c == '*' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        /* §4.2.6: token = ( ALPHA / "*" ) *( tchar / ":" / "/" ) */
        k++;
        while (k < len && (cw_is_tchar((unsigned char)p[k]) || p[k] == ':' || p[k] == '/'))
            k++;
        if (d != NULL) {
            d->kind = CC_VAL_TOKEN;
            d->val = cw_str_make(p + *i, k - *i);
        }
    } else if (c == ':') {
        /* §4.2.7: base64 characters up to the closing colon. */
        for (k++; k < len && p[k] != ':'; k++) {
            c = (unsigned char)p[k];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || cc_sf_is_digit(c) ||
                  c == '+' || c == '/' || c == '='))
                return false;
        }
        if (k >= len) return false;
        k++;
        if (d != NULL) d->kind = CC_VAL_BAD;
    } else if (c == '?') {
        /* §4.2.8 */
        if (k + 1 >= len || (p[k + 1] != '0' && p[k + 1] != '1')) return false;
        if (d != NULL) d->kind = p[k + 1] == '1' ? CC_VAL_NONE : CC_VAL_BAD;
        k += 2;
    } else {
        return false;
    }
    *i = k;
    return true;
}

/* RFC 8941 §4.2.3.2: *( ";" *SP key [ "=" bare-item ] ). Parameters of cache directives are
 * ignored (RFC 9213 §2.1), so they are only checked. */
static bool cc_sf_params(const char *p, size_t len, size_t *i)
{
    struct cw_str key;

    while (*i < len && p[*i] == ';') {
        *i = cc_sf_skip_sp(p, len, *i + 1);
        if (!cc_sf_key(p, len, i, &key)) return false;
        if (*i < len && p[*i] == '=') {
            (*i)++;
            if (!cc_sf_bare(p, len, i, NULL)) return false;
        }
    }
    return true;
}

/* RFC 8941 §4.2.1.2: "(" *SP [ item *( 1*SP item ) *SP ] ")" parameters. */
static bool cc_sf_inner_list(const char *p, size_t len, size_t *i)
{
    size_t k = *i + 1;

    while (k < len) {
        k = cc_sf_skip_sp(p, len, k);
        if (k < len && p[k] == ')') {
            *i = k + 1;
            return cc_sf_params(p, len, i);
        }
        if (!cc_sf_bare(p, len, &k, NULL) || !cc_sf_params(p, len, &k)) return false;
        if (k < len && p[k] != ' ' && p[k] != ')') return false;
    }
    return false; /* no closing parenthesis */
}

/* RFC 8941 §4.2.2: one dictionary member, key [ "=" item-or-inner-list ] parameters, into d
 * as a directive: a member without "=" is Boolean true, a directive without a value. An
 * inner list is never a cache directive's value: malformed. */
static bool cc_sf_member(const char *p, size_t len, size_t *i, struct cc_dir *d)
{
    memset(d, 0, sizeof(*d));
    if (!cc_sf_key(p, len, i, &d->name)) return false;
    d->kind = CC_VAL_NONE;
    if (*i < len && p[*i] == '=') {
        (*i)++;
        if (*i < len && p[*i] == '(') {
            d->kind = CC_VAL_BAD;
            return cc_sf_inner_list(p, len, i);
        }
        if (!cc_sf_bare(p, len, i, d)) return false;
    }
    return cc_sf_params(p, len, i);
}

/* Reads p as a Structured Fields Dictionary (RFC 8941 §4.2 with §4.2.2): the number of
 * members, or -EBADMSG. With cc NULL it only checks; otherwise each member replaces what its
 * directive held. Linear in len; the caller checks before it applies, so that a bad line
 * changes nothing. */
static int cc_sf_dict(struct cw_cc *cc, const char *p, size_t len)
{
    size_t i = cc_sf_skip_sp(p, len, 0);
    int n = 0;
    struct cc_dir d;

    while (len > i && p[len - 1] == ' ')
        len--;
    while (i < len) {
        if (!cc_sf_member(p, len, &i, &d)) return -EBADMSG;
        if (n < INT_MAX) n++;
        if (cc != NULL) {
            cc_forget(cc, &d);
            cc_apply(cc, &d);
        }
        i = cc_skip_ows(p, len, i);
        if (i >= len) break;
        if (p[i] != ',') return -EBADMSG;
        i = cc_skip_ows(p, len, i + 1);
        if (i >= len) return -EBADMSG; /* a trailing comma */
    }
    return n;
}

int cw_cc_parse_targeted(struct cw_cc *cc, const char *p, size_t len)
{
    int n;

    if (p == NULL) return 0;
    n = cc_sf_dict(NULL, p, len);
    if (n <= 0) return n;
    return cc_sf_dict(cc, p, len);
}

bool cw_cc_is_hop_by_hop(struct cw_str name)
{
    /* By length first: this runs for every field of every request and response. */
    switch (name.len) {
    case 2:
        return cw_str_eq_ci(name, CW_STR_LIT("TE"));
    case 7:
        return cw_str_eq_ci(name, CW_STR_LIT("Trailer")) ||
               cw_str_eq_ci(name, CW_STR_LIT("Upgrade"));
    case 10:
        return cw_str_eq_ci(name, CW_STR_LIT("Connection")) ||
               cw_str_eq_ci(name, CW_STR_LIT("Keep-Alive"));
    case 16:
        return cw_str_eq_ci(name, CW_STR_LIT("Proxy-Connection"));
    case 17:
        return cw_str_eq_ci(name, CW_STR_LIT("Transfer-Encoding"));
    case 18:
        return cw_str_eq_ci(name, CW_STR_LIT("Proxy-Authenticate"));
    case 19:
        return cw_str_eq_ci(name, CW_STR_LIT("Proxy-Authorization"));
    default:
        return false;
    }
}

/* Splits list on commas, trims OWS around each element, compares case-insensitively. Quotes
 * are not interpreted (the lists this serves are token lists). An empty name never matches. */
bool cw_cc_list_has(struct cw_str list, struct cw_str name)
{
    size_t i = 0;

    if (name.len == 0 || list.p == NULL) return false;
    while (i < list.len) {
        size_t start = cc_skip_ows(list.p, list.len, i);
        size_t end = start;
        while (end < list.len && list.p[end] != ',')
            end++;
        i = end + 1;
        while (end > start && cw_is_ows((unsigned char)list.p[end - 1]))
            end--;
        if (cw_str_eq_ci(cw_str_make(list.p + start, end - start), name)) return true;
    }
    return false;
}
