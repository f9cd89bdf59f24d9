/* core/fresh.c - HTTP dates, storability and freshness (RFC 9110 §5.6.7, RFC 9111 §3, §4.2,
 * RFC 5861), with RFC 9213 targeted fields.
 *
 * Storing and freshness read their directives through cw_fresh_resp_cc(): the first valid
 * targeted field on the target list when the response has one (and then Expires does not
 * count either), else Cache-Control. Nothing here changes what is sent downstream.
 *
 * Dates are converted with a pure days-from-civil computation, never timegm(), so that no
 * libc time-zone state is read. Arithmetic on times saturates, so that absurd inputs (a Date
 * in year 9999, an Age of 2^31) give absurd but defined answers. */
#include "core/fresh.h"

#include <errno.h>

#include "core/limits.h"

/* The last second format_date can write in 4 digits: 9999-12-31T23:59:59Z. */
#define FRESH_MAX_DATE_S 253402300799LL

static const char fresh_wkdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const fresh_wkdays_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                 "Thursday", "Friday", "Saturday"};
static const char fresh_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int64_t fresh_add_sat(int64_t a, int64_t b);
static int64_t fresh_sub_sat(int64_t a, int64_t b);
static int64_t fresh_mul_sat(int64_t a, int64_t b);
static int64_t fresh_max(int64_t a, int64_t b);
static struct cw_str fresh_trim(struct cw_str s);
static bool fresh_eq_ci(const char *p, const char *lit, size_t n);
static bool fresh_digits(const char *p, size_t n, int *out);
static int fresh_month(const char *p);
static bool fresh_wkday3(const char *p);
static size_t fresh_wkday_long(const char *p, size_t len);
static bool fresh_time(const char *p, int *h, int *m, int *s);
static bool fresh_is_leap(int64_t y);
static int64_t fresh_days_from_civil(int64_t y, unsigned m, unsigned d);
static void fresh_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d);
static int fresh_make_time(int64_t y, int mon, int d, int h, int mi, int s, int64_t *out_s);
static int fresh_parse_imf(const char *p, int64_t *out_s);
static int fresh_parse_rfc850(const char *p, size_t len, bool have_ref, int64_t ref_s,
                              int64_t *out_s);
static int fresh_parse_asctime(const char *p, int64_t *out_s);
static int fresh_parse(const char *p, size_t len, bool have_ref, int64_t ref_s, int64_t *out_s);
static bool fresh_parse_delta(struct cw_str v, int64_t *out_s);
static void fresh_add_age(struct cw_fresh_resp *r, struct cw_str v);
static bool fresh_add_targeted(struct cw_fresh_resp *r, struct cw_str name, struct cw_str v);
static bool fresh_has_expires(const struct cw_fresh_resp *r);
static bool fresh_parse_length(struct cw_str v, uint64_t *out);
static void fresh_add_content_length(struct cw_fresh_resp *r, struct cw_str v);
static bool fresh_status_understood(int status);
static const char *fresh_why_not(const struct cw_fresh_resp *r, const struct cw_fresh_policy *pol);
static int64_t fresh_lifetime_ms(const struct cw_fresh_resp *r, const struct cw_fresh_policy *pol,
                                 bool *explicit_freshness);

static int64_t fresh_add_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (!__builtin_add_overflow(a, b, &r)) return r;
    return b > 0 ? INT64_MAX : INT64_MIN;
}

static int64_t fresh_sub_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (!__builtin_sub_overflow(a, b, &r)) return r;
    return b < 0 ? INT64_MAX : INT64_MIN;
}

static int64_t fresh_mul_sat(int64_t a, int64_t b)
{
    int64_t r;

    if (!__builtin_mul_overflow(a, b, &r)) return r;
    return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
}

static int64_t fresh_max(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static struct cw_str fresh_trim(struct cw_str s)
{
    if (s.p == NULL) return cw_str_make("", 0);
    while (s.len > 0 && cw_is_ows((unsigned char)s.p[0])) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && cw_is_ows((unsigned char)s.p[s.len - 1]))
        s.len--;
    return s;
}

/* Compares n bytes of p with lit, ASCII case-insensitively. */
static bool fresh_eq_ci(const char *p, const char *lit, size_t n)
{
    return cw_str_eq_ci(cw_str_make(p, n), cw_str_make(lit, n));
}

/* Reads exactly n decimal digits (n <= 4). */
static bool fresh_digits(const char *p, size_t n, int *out)
{
    int v = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

/* Returns 1..12 for a three-letter month name, or -1. */
static int fresh_month(const char *p)
{
    for (int i = 0; i < 12; i++) {
        if (fresh_eq_ci(p, fresh_months[i], 3)) return i + 1;
    }
    return -1;
}

/* The weekday is checked for spelling only: origins that get it wrong still mean the date. */
static bool fresh_wkday3(const char *p)
{
    for (int i = 0; i < 7; i++) {
        if (fresh_eq_ci(p, fresh_wkdays[i], 3)) return true;
    }
    return false;
}

/* Returns the length of the full weekday name p starts with, or 0. */
static size_t fresh_wkday_long(const char *p, size_t len)
{
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(fresh_wkdays_long[i]);
        if (len >= n && fresh_eq_ci(p, fresh_wkdays_long[i], n)) return n;
    }
    return 0;
}

/* Reads "HH:MM:SS" (8 bytes); ranges are checked by fresh_make_time(). */
static bool fresh_time(const char *p, int *h, int *m, int *s)
{
    return fresh_digits(p, 2, h) && p[2] == ':' && fresh_digits(p + 3, 2, m) && p[5] == ':' &&
           fresh_digits(p + 6, 2, s);
}

static bool fresh_is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t fresh_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Inverse of fresh_days_from_civil(). */
static void fresh_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Validates the fields and converts them to seconds since the epoch. A leap second (:60) is
 * accepted and lands on the next minute's :00. */
static int fresh_make_time(int64_t y, int mon, int d, int h, int mi, int s, int64_t *out_s)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int max_d;

    if (mon < 1 || mon > 12 || d < 1 || h > 23 || mi > 59 || s > 60) return -EBADMSG;
    max_d = mdays[mon - 1] + (mon == 2 && fresh_is_leap(y));
    if (d > max_d) return -EBADMSG;
    *out_s = fresh_days_from_civil(y, (unsigned)mon, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s;
    return 0;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT": exactly 29 bytes. */
static int fresh_parse_imf(const char *p, int64_t *out_s)
{
    int d, mon, y, h, mi, s;

    if (!fresh_wkday3(p) || p[3] != ',' || p[4] != ' ') return -EBADMSG;
    if (!fresh_digits(p + 5, 2, &d) || p[7] != ' ') return -EBADMSG;
    if ((mon = fresh_month(p + 8)) < 0 || p[11] != ' ') return -EBADMSG;
    if (!fresh_digits(p + 12, 4, &y) || p[16] != ' ') return -EBADMSG;
    if (!fresh_time(p + 17, &h, &mi, &s) || p[25] != ' ') return -EBADMSG;
    if (!fresh_eq_ci(p + 26, "GMT", 3)) return -EBADMSG;
    return fresh_make_time(y, mon, d, h, mi, s, out_s);
}

/* "Sunday, 06-Nov-94 08:49:37 GMT". RFC 9110 §5.6.7: a two-digit year that would be more than
 * 50 years after ref_s is in the previous century. Without a reference, years 70-99 are 19xx
 * and 00-69 are 20xx. The 50-year test compares years, not instants. */
static int fresh_parse_rfc850(const char *p, size_t len, bool have_ref, int64_t ref_s,
                              int64_t *out_s)
{
    size_t n = fresh_wkday_long(p, len);
    int d, mon, yy, h, mi, s;
    int64_t y;

    if (n == 0 || len != n + 24) return -EBADMSG;
    p += n;
    if (p[0] != ',' || p[1] != ' ') return -EBADMSG;
    if (!fresh_digits(p + 2, 2, &d) || p[4] != '-') return -EBADMSG;
    if ((mon = fresh_month(p + 5)) < 0 || p[8] != '-') return -EBADMSG;
    if (!fresh_digits(p + 9, 2, &yy) || p[11] != ' ') return -EBADMSG;
    if (!fresh_time(p + 12, &h, &mi, &s) || p[20] != ' ') return -EBADMSG;
    if (!fresh_eq_ci(p + 21, "GMT", 3)) return -EBADMSG;
    if (have_ref) {
        int64_t ref_y;
        unsigned rm, rd;

        /* Clamped so that the year arithmetic below cannot overflow. */
        if (ref_s < 0) ref_s = 0;
        if (ref_s > FRESH_MAX_DATE_S) ref_s = FRESH_MAX_DATE_S;
        fresh_civil_from_days(ref_s / 86400, &ref_y, &rm, &rd);
        y = ref_y - ((ref_y % 100) + 100) % 100 + yy;
        if (y > ref_y + 50) y -= 100;
    } else {
        y = yy >= 70 ? 1900 + yy : 2000 + yy;
    }
    return fresh_make_time(y, mon, d, h, mi, s, out_s);
}

/* "Sun Nov  6 08:49:37 1994": exactly 24 bytes; the day is " 6" or "06". */
static int fresh_parse_asctime(const char *p, int64_t *out_s)
{
    int d, mon, y, h, mi, s;

    if (!fresh_wkday3(p) || p[3] != ' ') return -EBADMSG;
    if ((mon = fresh_month(p + 4)) < 0 || p[7] != ' ') return -EBADMSG;
    if (p[8] == ' ') {
        if (!fresh_digits(p + 9, 1, &d)) return -EBADMSG;
    } else if (!fresh_digits(p + 8, 2, &d)) {
        return -EBADMSG;
    }
    if (p[10] != ' ' || !fresh_time(p + 11, &h, &mi, &s) || p[19] != ' ') return -EBADMSG;
    if (!fresh_digits(p + 20, 4, &y)) return -EBADMSG;
    return fresh_make_time(y, mon, d, h, mi, s, out_s);
}

/* Picks the form by its shape: the fourth byte is ',' for IMF-fixdate, ' ' for asctime, and a
 * letter for the long weekday of RFC 850. */
static int fresh_parse(const char *p, size_t len, bool have_ref, int64_t ref_s, int64_t *out_s)
{
    struct cw_str s = fresh_trim(cw_str_make(p, p ? len : 0));

    if (s.len < 4) return -EBADMSG;
    if (s.len == 29 && s.p[3] == ',') return fresh_parse_imf(s.p, out_s);
    if (s.len == 24 && s.p[3] == ' ') return fresh_parse_asctime(s.p, out_s);
    return fresh_parse_rfc850(s.p, s.len, have_ref, ref_s, out_s);
}

int cw_fresh_parse_date(const char *p, size_t len, int64_t *out_s)
{
    return fresh_parse(p, len, false, 0, out_s);
}

int cw_fresh_parse_date_at(const char *p, size_t len, int64_t now_s, int64_t *out_s)
{
    return fresh_parse(p, len, true, now_s, out_s);
}

size_t cw_fresh_format_date(int64_t t_s, char *buf)
{
    int64_t days, y;
    unsigned m, d;
    int sec_of_day, wd;

    if (t_s < 0) t_s = 0;
    if (t_s > FRESH_MAX_DATE_S) t_s = FRESH_MAX_DATE_S;
    days = t_s / 86400;
    sec_of_day = (int)(t_s % 86400);
    wd = (int)((days + 4) % 7); /* 1970-01-01 was a Thursday */
    fresh_civil_from_days(days, &y, &m, &d);

    memcpy(buf, fresh_wkdays[wd], 3);
    buf[3] = ',';
    buf[4] = ' ';
    buf[5] = (char)('0' + d / 10);
    buf[6] = (char)('0' + d % 10);
    buf[7] = ' ';
    memcpy(buf + 8, fresh_months[m - 1], 3);
    buf[11] = ' ';
    buf[12] = (char)('0' + y / 1000);
    buf[13] = (char)('0' + y / 100 % 10);
    buf[14] = (char)('0' + y / 10 % 10);
    buf[15] = (char)('0' + y % 10);
    buf[16] = ' ';
    buf[17] = (char)('0' + sec_of_day / 36000);
    buf[18] = (char)('0' + sec_of_day / 3600 % 10);
    buf[19] = ':';
    buf[20] = (char)('0' + sec_of_day % 3600 / 600);
    buf[21] = (char)('0' + sec_of_day % 3600 / 60 % 10);
    buf[22] = ':';
    buf[23] = (char)('0' + sec_of_day % 60 / 10);
    buf[24] = (char)('0' + sec_of_day % 10);
    memcpy(buf + 25, " GMT", 5); /* with the NUL */
    return 29;
}

bool cw_fresh_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return true;
    default:
        return false;
    }
}

void cw_fresh_resp_init(struct cw_fresh_resp *r, int status)
{
    memset(r, 0, sizeof(*r));
    r->status = status;
    cw_cc_init(&r->cc);
    r->age_s = -1;
    r->vary = cw_str_make("", 0);
}

/* Age (RFC 9111 §5.1): a non-negative integer, clamped like any delta-seconds. */
static bool fresh_parse_delta(struct cw_str v, int64_t *out_s)
{
    int64_t n = 0;

    if (v.len == 0) return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') return false;
        if (n < CW_LIMIT_DELTA_SECONDS) n = n * 10 + (v.p[i] - '0');
    }
    *out_s = n > CW_LIMIT_DELTA_SECONDS ? CW_LIMIT_DELTA_SECONDS : n;
    return true;
}

/* RFC 9111 §5.1: an Age with a list value, or on several lines (one list, RFC 9110 §5.3),
 * uses its first member; when that member is invalid the cache ignores the field, so a later
 * member or line never stands in for it. Empty members are skipped (RFC 9110 §5.6.1). */
static void fresh_add_age(struct cw_fresh_resp *r, struct cw_str v)
{
    size_t i = 0;

    while (!r->age_seen && i < v.len) {
        size_t end = i;
        struct cw_str m;
        int64_t t;

        while (end < v.len && v.p[end] != ',')
            end++;
        m = fresh_trim(cw_str_make(v.p + i, end - i));
        i = end + 1;
        if (m.len == 0) continue;
        r->age_seen = true;
        if (fresh_parse_delta(m, &t)) r->age_s = t;
    }
}

/* RFC 9213 §2.1: a line of a field on the target list is parsed as a dictionary into that
 * field's own directives; one bad line makes the whole field invalid. True when name is on
 * the list (the line is then used up, whatever it held). */
static bool fresh_add_targeted(struct cw_fresh_resp *r, struct cw_str name, struct cw_str v)
{
    for (size_t i = 0; i < r->target_count; i++) {
        struct cw_fresh_target *t = &r->targets[i];
        int n;

        if (!cw_str_eq_ci(name, cw_str_cstr(r->target_names[i]))) continue;
        t->present = true;
        if (t->invalid) return true;
        n = cw_cc_parse_targeted(&t->cc, v.p, v.len);
        if (n < 0) {
            t->invalid = true;
        } else {
            t->members += (size_t)n;
        }
        return true;
    }
    return false;
}

void cw_fresh_resp_set_targets(struct cw_fresh_resp *r, const char *const *names, size_t count)
{
    if (names == NULL) count = 0;
    if (count > CW_LIMIT_TARGETED_FIELDS) count = CW_LIMIT_TARGETED_FIELDS;
    r->target_names = names;
    r->target_count = count;
    for (size_t i = 0; i < count; i++) {
        memset(&r->targets[i], 0, sizeof(r->targets[i]));
        cw_cc_init(&r->targets[i].cc);
    }
}

int cw_fresh_resp_target(const struct cw_fresh_resp *r)
{
    for (size_t i = 0; i < r->target_count; i++) {
        const struct cw_fresh_target *t = &r->targets[i];
        if (t->present && !t->invalid && t->members > 0) return (int)i;
    }
    return -1;
}

const struct cw_cc *cw_fresh_resp_cc(const struct cw_fresh_resp *r)
{
    int t = cw_fresh_resp_target(r);

    return t >= 0 ? &r->targets[t].cc : &r->cc;
}

/* RFC 9213 §2.2: a cache that uses a targeted field ignores Expires as well. */
static bool fresh_has_expires(const struct cw_fresh_resp *r)
{
    return r->has_expires && cw_fresh_resp_target(r) < 0;
}

/* Content-Length (RFC 9110 §8.6): digits, or a list of identical members ("5, 5"). */
static bool fresh_parse_length(struct cw_str v, uint64_t *out)
{
    size_t i = 0;
    bool have = false;
    uint64_t first = 0;

    while (i <= v.len) {
        size_t end = i;
        uint64_t n = 0;
        struct cw_str m;

        while (end < v.len && v.p[end] != ',')
            end++;
        m = fresh_trim(cw_str_make(v.p + i, end - i));
        if (m.len == 0) return false;
        for (size_t k = 0; k < m.len; k++) {
            if (m.p[k] < '0' || m.p[k] > '9') return false;
            if (__builtin_mul_overflow(n, 10, &n)) return false;
            if (__builtin_add_overflow(n, (uint64_t)(m.p[k] - '0'), &n)) return false;
        }
        if (have && n != first) return false;
        have = true;
        first = n;
        i = end + 1;
    }
    *out = first;
    return have;
}

/* A second Content-Length line that disagrees, or any invalid one, makes the length unknown
 * for good: the framing is the HTTP layer's to reject, but we must not trust it. */
static void fresh_add_content_length(struct cw_fresh_resp *r, struct cw_str v)
{
    uint64_t n;

    if (r->content_length_bad) return;
    if (!fresh_parse_length(v, &n) || (r->has_content_length && n != r->content_length)) {
        r->content_length_bad = true;
        r->has_content_length = false;
        r->content_length = 0;
        return;
    }
    r->has_content_length = true;
    r->content_length = n;
}

/* Several lines of a singleton field: the first valid Date and Last-Modified win, and the
 * first Expires line and the first Age member win whether valid or not (RFC 9111 §4.2: the
 * first occurrence; §5.1). A field on the target list is read as a targeted field, even one
 * named like a field below. */
void cw_fresh_add_header(struct cw_fresh_resp *r, struct cw_str name, struct cw_str value)
{
    int64_t t;
    bool ref = r->date_ref_s != 0;

    value = fresh_trim(value);
    if (r->target_count > 0 && fresh_add_targeted(r, name, value)) return;
    if (cw_str_eq_ci(name, CW_STR_LIT("Cache-Control"))) {
        cw_cc_parse(&r->cc, value.p, value.len);
    } else if (cw_str_eq_ci(name, CW_STR_LIT("Date"))) {
        if (!r->has_date && fresh_parse(value.p, value.len, ref, r->date_ref_s, &t) == 0) {
            r->has_date = true;
            r->date_s = t;
        }
    } else if (cw_str_eq_ci(name, CW_STR_LIT("Expires"))) {
        if (r->has_expires) return;
        r->has_expires = true;
        r->expires_valid = fresh_parse(value.p, value.len, ref, r->date_ref_s, &t) == 0;
        r->expires_s = r->expires_valid ? t : 0;
    } else if (cw_str_eq_ci(name, CW_STR_LIT("Last-Modified"))) {
        if (!r->has_last_modified && fresh_parse(value.p, value.len, ref, r->date_ref_s, &t) == 0) {
            r->has_last_modified = true;
            r->last_modified_s = t;
        }
    } else if (cw_str_eq_ci(name, CW_STR_LIT("Age"))) {
        fresh_add_age(r, value);
    } else if (cw_str_eq_ci(name, CW_STR_LIT("ETag"))) {
        r->has_etag = true;
    } else if (cw_str_eq_ci(name, CW_STR_LIT("Set-Cookie"))) {
        r->has_set_cookie = true;
    } else if (cw_str_eq_ci(name, CW_STR_LIT("Vary"))) {
        if (cw_cc_list_has(value, CW_STR_LIT("*"))) r->vary_star = true;
        r->vary = value;
    } else if (cw_str_eq_ci(name, CW_STR_LIT("Content-Length"))) {
        fresh_add_content_length(r, value);
    }
}

/* Statuses whose caching rules we implement, for must-understand (RFC 9111 §5.2.2.3). 206 and
 * 304 are known but handled outside this module, and are refused before this is asked. */
static bool fresh_status_understood(int status)
{
    return cw_fresh_status_heuristic(status) || status == 302 || status == 303 || status == 307;
}

/* RFC 9111 §3: returns NULL when the response may be stored, else the reason, which is static
 * text for the Cache-Status detail parameter. */
static const char *fresh_why_not(const struct cw_fresh_resp *r, const struct cw_fresh_policy *pol)
{
    const struct cw_cc *cc = cw_fresh_resp_cc(r);
    bool has_expires = fresh_has_expires(r);
    uint32_t f = cc->flags;
    bool no_store = (f & CW_CC_NO_STORE) != 0;
    bool cookie_stripped;

    if (!pol->method_is_get_or_head) return "method";
    /* Final statuses only; 206 (ranges) and 304 (revalidation) are stored by other paths. */
    if (r->status < 200 || r->status > 599 || r->status == 206 || r->status == 304) {
        return "status";
    }
    if (pol->req_no_store) return "request-no-store";
    if (f & CW_CC_MUST_UNDERSTAND) {
        /* §5.2.2.3: must-understand overrides no-store for a status we understand, and
         * forbids storing any other. */
        if (!fresh_status_understood(r->status)) return "status";
        no_store = false;
    }
    if (no_store) return "no-store";
    if (f & CW_CC_PRIVATE) return "private";
    if (r->vary_star) return "vary-star";
    /* §3.5: a shared cache stores an authorised answer only when the response allows it. */
    if (pol->req_has_authorization && !(f & (CW_CC_PUBLIC | CW_CC_MUST_REVALIDATE)) &&
        cc->s_maxage_s < 0) {
        return "authorization";
    }
    /* A Set-Cookie the origin names in no-cache="..." or private="..." is stripped before the
     * entry is stored, so it does not stop storing. */
    cookie_stripped = pol->strip_set_cookie ||
                      ((f & CW_CC_NO_CACHE_FIELDS) &&
                       cw_cc_list_has(cc->no_cache_fields, CW_STR_LIT("Set-Cookie"))) ||
                      ((f & CW_CC_PRIVATE_FIELDS) &&
                       cw_cc_list_has(cc->private_fields, CW_STR_LIT("Set-Cookie")));
    if (r->has_set_cookie && !cookie_stripped) return "set-cookie";
    /* A request with Cookie may get a personalised answer the origin did not mark: unless
     * the origin gave explicit freshness (or public), it is passed, as Varnish's built-in
     * logic does. */
    if (pol->req_cookie_pass && !(f & CW_CC_PUBLIC) && cc->s_maxage_s < 0 && cc->max_age_s < 0 &&
        !has_expires)
        return "cookie";
    /* §3: something must make the response reusable. Under override the origin's freshness
     * does not count, so only the heuristic statuses are stored. */
    if (cw_fresh_status_heuristic(r->status)) return NULL;
    if (pol->override) return "status";
    if ((f & CW_CC_PUBLIC) || cc->s_maxage_s >= 0 || cc->max_age_s >= 0 || has_expires) {
        return NULL;
    }
    return "status";
}

/* §4.2.1 precedence: override, s-maxage, max-age, Expires - Date, then heuristics (§4.2.2):
 * 10% of Date - Last-Modified for heuristic statuses (capped by max_ttl_ms), else the route's
 * TTL. Never negative. */
static int64_t fresh_lifetime_ms(const struct cw_fresh_resp *r, const struct cw_fresh_policy *pol,
                                 bool *explicit_freshness)
{
    const struct cw_cc *cc = cw_fresh_resp_cc(r);
    bool has_expires = fresh_has_expires(r);
    int64_t date_ms = r->has_date ? fresh_mul_sat(r->date_s, 1000) : pol->response_time_ms;
    int64_t ms;

    *explicit_freshness = false;
    if (pol->override) return fresh_max(pol->route_ttl_ms, 0);
    if (cc->s_maxage_s >= 0 || cc->max_age_s >= 0 || has_expires) *explicit_freshness = true;
    if (cc->s_maxage_s >= 0) return cc->s_maxage_s * 1000;
    if (cc->max_age_s >= 0) return cc->max_age_s * 1000;
    if (has_expires) {
        if (!r->expires_valid) return 0;
        ms = fresh_sub_sat(fresh_mul_sat(r->expires_s, 1000), date_ms);
        return fresh_max(ms, 0);
    }
    /* RFC 9111 §4.2.2: 10 % of the time since Last-Modified. A Last-Modified at or after
     * Date (APIs that stamp every answer "now") says nothing, so the route's ttl applies. */
    if (r->has_last_modified && cw_fresh_status_heuristic(r->status)) {
        ms = fresh_sub_sat(date_ms, fresh_mul_sat(r->last_modified_s, 1000)) / 10;
        if (ms > 0) return pol->max_ttl_ms > 0 && ms > pol->max_ttl_ms ? pol->max_ttl_ms : ms;
    }
    return fresh_max(pol->route_ttl_ms, 0);
}

/* The result is filled in full even when the response is not storable, so that the caller can
 * report the ages it would have had. */
void cw_fresh_evaluate(const struct cw_fresh_resp *r, const struct cw_fresh_policy *pol,
                       struct cw_fresh_result *out)
{
    const struct cw_cc *cc = cw_fresh_resp_cc(r);
    uint32_t f = cc->flags;
    int64_t date_ms, apparent, delay, corrected_age, swr, sie;

    memset(out, 0, sizeof(*out));
    out->why_not = fresh_why_not(r, pol);
    out->storable = out->why_not == NULL;
    out->always_revalidate = (f & CW_CC_NO_CACHE) != 0;
    out->must_revalidate =
        (f & (CW_CC_MUST_REVALIDATE | CW_CC_PROXY_REVALIDATE)) || cc->s_maxage_s >= 0;
    out->lifetime_ms = fresh_lifetime_ms(r, pol, &out->explicit_freshness);

    /* §4.2.3. A Date in the future (clock skew) gives an apparent age of 0, and a negative
     * response delay (a caller's clocks disagreeing) counts as 0. */
    date_ms = r->has_date ? fresh_mul_sat(r->date_s, 1000) : pol->response_time_ms;
    apparent = fresh_max(0, fresh_sub_sat(pol->response_time_ms, date_ms));
    /* Date has a resolution of one second: an apparent age below it is the truncation of the
     * origin's clock, not age, and counting it would take up to a second off every short
     * lifetime (a 1 s ttl would often be stale on arrival). */
    if (r->has_date && apparent < 1000) apparent = 0;
    delay = fresh_max(0, fresh_sub_sat(pol->response_time_ms, pol->request_time_ms));
    corrected_age = fresh_add_sat(r->age_s >= 0 ? r->age_s * 1000 : 0, delay);
    out->corrected_initial_age_ms = fresh_max(apparent, corrected_age);
    out->fresh_until_ms = fresh_sub_sat(fresh_add_sat(pol->response_time_ms, out->lifetime_ms),
                                        out->corrected_initial_age_ms);

    /* §4.2.4: must-revalidate and no-cache forbid serving stale, even where the response's
     * own stale-if-error (RFC 5861) would allow it. */
    swr = cc->swr_s >= 0 ? cc->swr_s * 1000 : fresh_max(pol->route_swr_ms, 0);
    sie = cc->sie_s >= 0 ? cc->sie_s * 1000 : fresh_max(pol->route_sie_ms, 0);
    if (out->must_revalidate || out->always_revalidate) swr = sie = 0;
    out->swr_until_ms = fresh_add_sat(out->fresh_until_ms, swr);
    out->sie_until_ms = fresh_add_sat(out->fresh_until_ms, sie);
}

int64_t cw_fresh_age_ms(int64_t corrected_initial_age_ms, int64_t response_time_ms, int64_t now_ms)
{
    int64_t resident = fresh_max(0, fresh_sub_sat(now_ms, response_time_ms));

    return fresh_add_sat(corrected_initial_age_ms, resident);
}
