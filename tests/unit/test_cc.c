/* tests/unit/test_cc.c - Cache-Control parsing, targeted fields (RFC 9213 as RFC 8941
 * dictionaries) and header-list helpers. */
#include <check.h>
#include <errno.h>
#include <stdio.h>

#include "core/cc.h"
#include "core/limits.h"

Suite *cc_suite(void);

static struct cw_cc parse(const char *s)
{
    struct cw_cc cc;

    cw_cc_init(&cc);
    cw_cc_parse(&cc, s, strlen(s));
    return cc;
}

static bool str_is(struct cw_str s, const char *lit)
{
    return cw_str_eq(s, cw_str_cstr(lit));
}

START_TEST(test_cc_init_absent)
{
    struct cw_cc cc = parse("");

    ck_assert_uint_eq(cc.flags, 0);
    ck_assert_int_eq(cc.max_age_s, -1);
    ck_assert_int_eq(cc.s_maxage_s, -1);
    ck_assert_int_eq(cc.max_stale_s, -1);
    ck_assert_int_eq(cc.min_fresh_s, -1);
    ck_assert_int_eq(cc.swr_s, -1);
    ck_assert_int_eq(cc.sie_s, -1);
    ck_assert_uint_eq(cc.no_cache_fields.len, 0);
    ck_assert_uint_eq(cc.private_fields.len, 0);
}
END_TEST

START_TEST(test_cc_flag_directives)
{
    static const struct {
        const char *s;
        uint32_t flag;
    } cases[] = {
        {"no-store", CW_CC_NO_STORE},
        {"no-cache", CW_CC_NO_CACHE},
        {"private", CW_CC_PRIVATE},
        {"public", CW_CC_PUBLIC},
        {"must-revalidate", CW_CC_MUST_REVALIDATE},
        {"proxy-revalidate", CW_CC_PROXY_REVALIDATE},
        {"no-transform", CW_CC_NO_TRANSFORM},
        {"only-if-cached", CW_CC_ONLY_IF_CACHED},
        {"must-understand", CW_CC_MUST_UNDERSTAND},
        {"immutable", CW_CC_IMMUTABLE},
        {"max-stale", CW_CC_MAX_STALE_ANY},
    };

    for (size_t i = 0; i < CW_ARRAY_LEN(cases); i++) {
        struct cw_cc cc = parse(cases[i].s);
        ck_assert_msg(cc.flags == cases[i].flag, "%s: flags %#x", cases[i].s, cc.flags);
    }
}
END_TEST

START_TEST(test_cc_delta_directives)
{
    struct cw_cc cc = parse("max-age=60, s-maxage=120, max-stale=5, min-fresh=7, "
                            "stale-while-revalidate=30, stale-if-error=600");

    ck_assert_uint_eq(cc.flags, 0);
    ck_assert_int_eq(cc.max_age_s, 60);
    ck_assert_int_eq(cc.s_maxage_s, 120);
    ck_assert_int_eq(cc.max_stale_s, 5);
    ck_assert_int_eq(cc.min_fresh_s, 7);
    ck_assert_int_eq(cc.swr_s, 30);
    ck_assert_int_eq(cc.sie_s, 600);
}
END_TEST

START_TEST(test_cc_case_insensitive_names)
{
    struct cw_cc cc = parse("No-Store, MAX-AGE=10, S-MaxAge=3, Stale-While-Revalidate=4");

    ck_assert(cc.flags & CW_CC_NO_STORE);
    ck_assert_int_eq(cc.max_age_s, 10);
    ck_assert_int_eq(cc.s_maxage_s, 3);
    ck_assert_int_eq(cc.swr_s, 4);
}
END_TEST

START_TEST(test_cc_whitespace_and_empty_elements)
{
    struct cw_cc cc = parse(" ,, \t max-age \t = \t 60 \t ,  , public ,");

    ck_assert_int_eq(cc.max_age_s, 60);
    ck_assert_uint_eq(cc.flags, CW_CC_PUBLIC);
}
END_TEST

START_TEST(test_cc_quoted_delta_accepted)
{
    /* RFC 9111 §5.2: recipients accept the quoted form too. */
    struct cw_cc cc = parse("max-age=\"60\", s-maxage=\"6\\0\"");

    ck_assert_int_eq(cc.max_age_s, 60);
    ck_assert_int_eq(cc.s_maxage_s, 0); /* escaped: invalid, so 0 */
}
END_TEST

START_TEST(test_cc_delta_clamp)
{
    struct cw_cc cc;

    cc = parse("max-age=2147483647");
    ck_assert_int_eq(cc.max_age_s, 2147483647);
    cc = parse("max-age=2147483648");
    ck_assert_int_eq(cc.max_age_s, CW_LIMIT_DELTA_SECONDS);
    cc = parse("max-age=2147483649, s-maxage=99999999999999999999999999999999");
    ck_assert_int_eq(cc.max_age_s, CW_LIMIT_DELTA_SECONDS);
    ck_assert_int_eq(cc.s_maxage_s, CW_LIMIT_DELTA_SECONDS);
    cc = parse("stale-if-error=000000000000000000000000000000000000012");
    ck_assert_int_eq(cc.sie_s, 12);
}
END_TEST

START_TEST(test_cc_invalid_max_age_is_zero)
{
    static const char *bad[] = {"max-age=abc", "max-age=",      "max-age",     "max-age=-1",
                                "max-age=1.5", "max-age=60 30", "max-age=\"6", "max-age=+5"};

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        struct cw_cc cc = parse(bad[i]);
        ck_assert_msg(cc.max_age_s == 0, "%s: %lld", bad[i], (long long)cc.max_age_s);
    }
    ck_assert_int_eq(parse("s-maxage=x").s_maxage_s, 0);
    ck_assert_int_eq(parse("s-maxage").s_maxage_s, 0);
}
END_TEST

START_TEST(test_cc_invalid_optional_values_ignored)
{
    struct cw_cc cc = parse("stale-while-revalidate=abc, stale-if-error=, max-stale=x, "
                            "min-fresh=-3, stale-while-revalidate, stale-if-error");

    ck_assert_int_eq(cc.swr_s, -1);
    ck_assert_int_eq(cc.sie_s, -1);
    ck_assert_int_eq(cc.max_stale_s, -1);
    ck_assert_int_eq(cc.min_fresh_s, -1);
    ck_assert_uint_eq(cc.flags, 0);
}
END_TEST

START_TEST(test_cc_duplicates_most_restrictive)
{
    struct cw_cc cc = parse("max-age=60, max-age=30, max-age=90, s-maxage=5, s-maxage=9, "
                            "stale-while-revalidate=10, stale-while-revalidate=4, "
                            "stale-if-error=8, stale-if-error=20, max-stale=9, max-stale=3, "
                            "min-fresh=2, min-fresh=11");

    ck_assert_int_eq(cc.max_age_s, 30);
    ck_assert_int_eq(cc.s_maxage_s, 5);
    ck_assert_int_eq(cc.swr_s, 4);
    ck_assert_int_eq(cc.sie_s, 8);
    ck_assert_int_eq(cc.max_stale_s, 3);
    ck_assert_int_eq(cc.min_fresh_s, 11);
    /* An invalid duplicate is 0, which is the smallest. */
    ck_assert_int_eq(parse("max-age=60, max-age=bogus").max_age_s, 0);
}
END_TEST

START_TEST(test_cc_accumulates_lines)
{
    struct cw_cc cc;

    cw_cc_init(&cc);
    cw_cc_parse(&cc, "max-age=60", 10);
    cw_cc_parse(&cc, "no-cache, max-age=20", 20);
    cw_cc_parse(&cc, NULL, 0);
    ck_assert_int_eq(cc.max_age_s, 20);
    ck_assert_uint_eq(cc.flags, CW_CC_NO_CACHE);
}
END_TEST

START_TEST(test_cc_max_stale_any_and_value)
{
    struct cw_cc cc = parse("max-stale");

    ck_assert(cc.flags & CW_CC_MAX_STALE_ANY);
    ck_assert_int_eq(cc.max_stale_s, -1);
    cc = parse("max-stale=0");
    ck_assert(!(cc.flags & CW_CC_MAX_STALE_ANY));
    ck_assert_int_eq(cc.max_stale_s, 0);
}
END_TEST

START_TEST(test_cc_no_cache_fields)
{
    struct cw_cc cc = parse("no-cache=\"Set-Cookie, X-Foo\", max-age=5");

    ck_assert_uint_eq(cc.flags, CW_CC_NO_CACHE_FIELDS);
    ck_assert(str_is(cc.no_cache_fields, "Set-Cookie, X-Foo"));
    ck_assert_int_eq(cc.max_age_s, 5);
    ck_assert(cw_cc_list_has(cc.no_cache_fields, CW_STR_LIT("x-foo")));

    /* Token form is accepted too. */
    cc = parse("no-cache=Set-Cookie");
    ck_assert_uint_eq(cc.flags, CW_CC_NO_CACHE_FIELDS);
    ck_assert(str_is(cc.no_cache_fields, "Set-Cookie"));
}
END_TEST

START_TEST(test_cc_private_fields)
{
    struct cw_cc cc = parse("private=\"X-User\", public");

    ck_assert_uint_eq(cc.flags, CW_CC_PRIVATE_FIELDS | CW_CC_PUBLIC);
    ck_assert(str_is(cc.private_fields, "X-User"));
}
END_TEST

START_TEST(test_cc_quoted_comma_not_a_separator)
{
    /* The comma and the "no-store" inside the quotes belong to the list. */
    struct cw_cc cc = parse("private=\"a, no-store\", max-age=3");

    ck_assert_uint_eq(cc.flags, CW_CC_PRIVATE_FIELDS);
    ck_assert(str_is(cc.private_fields, "a, no-store"));
    ck_assert_int_eq(cc.max_age_s, 3);
}
END_TEST

START_TEST(test_cc_quoted_escapes)
{
    /* An escaped quote does not end the string; a list with escapes is not borrowed, so the
     * restrictive plain directive applies. */
    struct cw_cc cc = parse("no-cache=\"a\\\", max-age=1\", public");

    ck_assert_uint_eq(cc.flags, CW_CC_NO_CACHE | CW_CC_PUBLIC);
    ck_assert_int_eq(cc.max_age_s, -1);
    ck_assert_uint_eq(cc.no_cache_fields.len, 0);

    /* Escapes in an unknown directive are skipped over correctly too. */
    cc = parse("x-ext=\"\\\\\", no-store, y=\"a\\\"b,c\", max-age=4");
    ck_assert_uint_eq(cc.flags, CW_CC_NO_STORE);
    ck_assert_int_eq(cc.max_age_s, 4);
}
END_TEST

START_TEST(test_cc_unterminated_quote)
{
    struct cw_cc cc = parse("private=\"X-Foo, max-age=60");

    /* Bad private: the restrictive plain reading; the rest is inside the quote. */
    ck_assert_uint_eq(cc.flags, CW_CC_PRIVATE);
    ck_assert_int_eq(cc.max_age_s, -1);
    cc = parse("no-cache=\"a\\");
    ck_assert_uint_eq(cc.flags, CW_CC_NO_CACHE);
}
END_TEST

START_TEST(test_cc_empty_or_second_field_list_degrades)
{
    struct cw_cc cc = parse("no-cache=\"\"");

    ck_assert_uint_eq(cc.flags, CW_CC_NO_CACHE);
    cc = parse("no-cache=\"a\", no-cache=\"b\"");
    ck_assert_uint_eq(cc.flags, CW_CC_NO_CACHE | CW_CC_NO_CACHE_FIELDS);
    ck_assert(str_is(cc.no_cache_fields, "a"));
    cc = parse("private=\"a\", private=\"a\"");
    ck_assert_uint_eq(cc.flags, CW_CC_PRIVATE_FIELDS);
    cc = parse("private=\"a\", private=\"b\"");
    ck_assert(cc.flags & CW_CC_PRIVATE);
}
END_TEST

START_TEST(test_cc_junk_skipped_to_comma)
{
    struct cw_cc cc = parse("@@@, =5, \"q,x\", max-age=9, no-store;x=1, public junk");

    ck_assert_int_eq(cc.max_age_s, 9);
    /* Restrictive no-store applies even when malformed; permissive public does not. */
    ck_assert_uint_eq(cc.flags, CW_CC_NO_STORE);
    cc = parse("must-understand junk, immutable=5 5, stale-if-error=5 5, s-maxage=1 x");
    ck_assert_uint_eq(cc.flags, 0);
    ck_assert_int_eq(cc.sie_s, -1);
    ck_assert_int_eq(cc.s_maxage_s, 0);
    /* An unterminated quote swallows the rest of the line. */
    cc = parse("immutable=\"x, no-store");
    ck_assert_uint_eq(cc.flags, 0);
}
END_TEST

START_TEST(test_cc_unknown_ignored)
{
    struct cw_cc cc = parse("community=\"UCI\", foo, bar=baz, max-age=1");

    ck_assert_uint_eq(cc.flags, 0);
    ck_assert_int_eq(cc.max_age_s, 1);
    cc = parse("max-agee=5, no-stor, nostore");
    ck_assert_uint_eq(cc.flags, 0);
    ck_assert_int_eq(cc.max_age_s, -1);
}
END_TEST

START_TEST(test_cc_flag_with_argument)
{
    struct cw_cc cc = parse("no-store=1, public=yes");

    ck_assert_uint_eq(cc.flags, CW_CC_NO_STORE | CW_CC_PUBLIC);
}
END_TEST

/* Builds "x0, x1, ..., x<n-2>, last" (n directives). */
static void limit_build(char *buf, size_t size, unsigned n, const char *last)
{
    size_t off = 0;

    for (unsigned i = 0; i + 1 < n; i++) {
        off += (size_t)snprintf(buf + off, size - off, ",, x%u ,", i);
    }
    snprintf(buf + off, size - off, "%s", last);
}

START_TEST(test_cc_directive_limit)
{
    char buf[4096];
    struct cw_cc cc;

    limit_build(buf, sizeof(buf), CW_LIMIT_CC_DIRECTIVES, "no-store");
    cc = parse(buf);
    ck_assert_uint_eq(cc.flags, CW_CC_NO_STORE);

    limit_build(buf, sizeof(buf), CW_LIMIT_CC_DIRECTIVES + 1, "no-store");
    cc = parse(buf);
    ck_assert_uint_eq(cc.flags, 0);

    /* The limit is per call: a second line gets its own budget. */
    cw_cc_parse(&cc, "no-store", 8);
    ck_assert_uint_eq(cc.flags, CW_CC_NO_STORE);
}
END_TEST

START_TEST(test_cc_not_nul_terminated)
{
    const char s[] = "max-age=12345";
    struct cw_cc cc;

    cw_cc_init(&cc);
    cw_cc_parse(&cc, s, 10); /* "max-age=12" */
    ck_assert_int_eq(cc.max_age_s, 12);
}
END_TEST

START_TEST(test_cc_hop_by_hop)
{
    static const char *hop[] = {"Connection",
                                "keep-alive",
                                "PROXY-CONNECTION",
                                "te",
                                "Trailer",
                                "transfer-encoding",
                                "Upgrade",
                                "Proxy-Authenticate",
                                "proxy-authorization"};
    static const char *e2e[] = {"Cache-Control", "Authorization", "Trailers", "",
                                "Con",           "Content-Length"};

    for (size_t i = 0; i < CW_ARRAY_LEN(hop); i++) {
        ck_assert_msg(cw_cc_is_hop_by_hop(cw_str_cstr(hop[i])), "%s", hop[i]);
    }
    for (size_t i = 0; i < CW_ARRAY_LEN(e2e); i++) {
        ck_assert_msg(!cw_cc_is_hop_by_hop(cw_str_cstr(e2e[i])), "%s", e2e[i]);
    }
}
END_TEST

START_TEST(test_cc_list_has)
{
    struct cw_str list = CW_STR_LIT(" Accept-Encoding ,\tX-Foo\t,, close ");

    ck_assert(cw_cc_list_has(list, CW_STR_LIT("accept-encoding")));
    ck_assert(cw_cc_list_has(list, CW_STR_LIT("X-FOO")));
    ck_assert(cw_cc_list_has(list, CW_STR_LIT("Close")));
    ck_assert(!cw_cc_list_has(list, CW_STR_LIT("Accept")));
    ck_assert(!cw_cc_list_has(list, CW_STR_LIT("X-Foo ,")));
    ck_assert(!cw_cc_list_has(list, CW_STR_LIT("")));
    ck_assert(!cw_cc_list_has(CW_STR_LIT(""), CW_STR_LIT("a")));
    ck_assert(!cw_cc_list_has(cw_str_make(NULL, 0), CW_STR_LIT("a")));
    ck_assert(cw_cc_list_has(CW_STR_LIT("*"), CW_STR_LIT("*")));
    ck_assert(cw_cc_list_has(CW_STR_LIT("a,*"), CW_STR_LIT("*")));
    ck_assert(!cw_cc_list_has(CW_STR_LIT("a*"), CW_STR_LIT("*")));
    ck_assert(cw_cc_list_has(CW_STR_LIT("a,"), CW_STR_LIT("a")));
}
END_TEST

/* Parses s as one line of a targeted field into a fresh struct: the return of
 * cw_cc_parse_targeted() in *rc. */
static struct cw_cc parse_targeted(const char *s, int *rc)
{
    struct cw_cc cc;

    cw_cc_init(&cc);
    *rc = cw_cc_parse_targeted(&cc, s, strlen(s));
    return cc;
}

static int targeted_rc(const char *s)
{
    int rc;

    (void)parse_targeted(s, &rc);
    return rc;
}

START_TEST(test_cc_targeted_valid_dictionaries)
{
    int rc;
    struct cw_cc cc = parse_targeted("max-age=60", &rc);

    ck_assert_int_eq(rc, 1);
    ck_assert_int_eq(cc.max_age_s, 60);
    cc = parse_targeted("  no-store, max-age=60;x=1 , s-maxage=30  ", &rc);
    ck_assert_int_eq(rc, 3);
    ck_assert(cc.flags & CW_CC_NO_STORE);
    ck_assert_int_eq(cc.max_age_s, 60); /* parameters are ignored (RFC 9213 §2.1) */
    ck_assert_int_eq(cc.s_maxage_s, 30);
    cc = parse_targeted("no-cache=\"Set-Cookie, X-A\", private=\"X-B\"", &rc);
    ck_assert_int_eq(rc, 2);
    ck_assert(cc.flags & CW_CC_NO_CACHE_FIELDS);
    ck_assert(!(cc.flags & CW_CC_NO_CACHE));
    ck_assert(str_is(cc.no_cache_fields, "Set-Cookie, X-A"));
    ck_assert(cc.flags & CW_CC_PRIVATE_FIELDS);
    ck_assert(str_is(cc.private_fields, "X-B"));
    /* Every bare item type and an inner list parse; unknown members count, do nothing. */
    cc = parse_targeted("a=(1 \"x\" tok);p, b=?1, c=:aGk=:, d=1.5, e=\"q\\\"\\\\\", *f=x/y:z, "
                        "g=-7;h;i=?0, none",
                        &rc);
    ck_assert_int_eq(rc, 8);
    ck_assert_uint_eq(cc.flags, 0);
    ck_assert_int_eq(cc.max_age_s, -1);
    /* Tabs around the commas are OWS; the largest integer and decimal. */
    ck_assert_int_eq(targeted_rc("a=1,\tb=2"), 2);
    ck_assert_int_eq(targeted_rc("a=999999999999999, b=-999999999999.999"), 2);
    ck_assert_int_eq(targeted_rc("a=()"), 1);
    ck_assert_int_eq(targeted_rc("a=( 1  2 )"), 1);
    /* An empty line is no member (RFC 9213 §2.1: an empty field is ignored). */
    ck_assert_int_eq(targeted_rc(""), 0);
    ck_assert_int_eq(targeted_rc("   "), 0);
    ck_assert_int_eq(cw_cc_parse_targeted(&cc, NULL, 5), 0);
}
END_TEST

START_TEST(test_cc_targeted_invalid_refused_whole)
{
    static const char *const bad[] = {
        "max-age=60,",              /* trailing comma */
        ", max-age=60",             /* leading comma */
        "max-age=60,,no-store",     /* empty member */
        "Max-Age=60",               /* keys are lower case */
        "max-age=60 no-store",      /* no comma */
        "max-age =60",              /* space before '=' */
        "max-age= 60",              /* space after '=' */
        "max-age=60;",              /* parameter without a key */
        "max-age=1234567890123456", /* 16 digits */
        "a=1234567890123.5",        /* 13 integer digits in a decimal */
        "a=1.2345",                 /* 4 fraction digits */
        "a=1.",                     /* no fraction digit */
        "a=-",                      /* sign without digits */
        "a=\"open",                 /* unterminated string */
        "a=\"x\\n\"",               /* escape of something else than '"' or '\' */
        "a=\"tab\there\"",          /* control byte in a string */
        "a=?2",                     /* not a boolean */
        "a=:aGk",                   /* unterminated byte sequence */
        "a=:a!k:",                  /* not base64 */
        "a=(1 2",                   /* unterminated inner list */
        "a=(1\"x\")",               /* items not separated by a space */
        "a=%",                      /* no bare item starts with '%' */
        "1a=2",                     /* key starts with a digit */
        "max-age=60, \xff",         /* not ASCII */
    };
    struct cw_cc cc;

    for (size_t i = 0; i < CW_ARRAY_LEN(bad); i++) {
        cw_cc_init(&cc);
        cc.max_age_s = 7;
        ck_assert_msg(cw_cc_parse_targeted(&cc, bad[i], strlen(bad[i])) == -EBADMSG,
                      "accepted <<%s>>", bad[i]);
        /* Nothing of a refused line is applied, not even its valid first member. */
        ck_assert_int_eq(cc.max_age_s, 7);
        ck_assert_uint_eq(cc.flags, 0);
    }
}
END_TEST

START_TEST(test_cc_targeted_wrong_types_read_as_malformed)
{
    int rc;
    struct cw_cc cc = parse_targeted("max-age=1.5", &rc);

    /* As a malformed max-age in Cache-Control: present and 0 (stale), never coerced to 1. */
    ck_assert_int_eq(rc, 1);
    ck_assert_int_eq(cc.max_age_s, 0);
    cc = parse_targeted("max-age=-1, s-maxage=\"x\"", &rc);
    ck_assert_int_eq(cc.max_age_s, 0);
    ck_assert_int_eq(cc.s_maxage_s, 0);
    cc = parse_targeted("max-age=\"60\"", &rc); /* quoted delta, as Cache-Control accepts */
    ck_assert_int_eq(cc.max_age_s, 60);
    /* Restrictive directives apply whatever their value; permissive ones need a true one. */
    cc = parse_targeted("no-store=?0, private=:aGk=:, must-revalidate=(1)", &rc);
    ck_assert_int_eq(rc, 3);
    ck_assert(cc.flags & CW_CC_NO_STORE);
    ck_assert(cc.flags & CW_CC_PRIVATE);
    ck_assert(cc.flags & CW_CC_MUST_REVALIDATE);
    cc = parse_targeted("public=?0, immutable=?1", &rc);
    ck_assert(!(cc.flags & CW_CC_PUBLIC));
    ck_assert(cc.flags & CW_CC_IMMUTABLE);
    cc = parse_targeted("stale-while-revalidate=1.5, stale-if-error=30", &rc);
    ck_assert_int_eq(cc.swr_s, -1);
    ck_assert_int_eq(cc.sie_s, 30);
    cc = parse_targeted("no-cache=?1", &rc);
    ck_assert(cc.flags & CW_CC_NO_CACHE);
    cc = parse_targeted("max-age=99999999999", &rc); /* clamped like any delta-seconds */
    ck_assert_int_eq(cc.max_age_s, CW_LIMIT_DELTA_SECONDS);
}
END_TEST

START_TEST(test_cc_targeted_last_member_wins)
{
    int rc;
    struct cw_cc cc = parse_targeted("max-age=10, max-age=60", &rc);

    /* A dictionary keeps the last value of a repeated key (RFC 8941 §4.2.2), where
     * Cache-Control keeps the smaller. */
    ck_assert_int_eq(rc, 2);
    ck_assert_int_eq(cc.max_age_s, 60);
    cc = parse_targeted("no-cache=\"X-A\", no-cache", &rc);
    ck_assert(cc.flags & CW_CC_NO_CACHE);
    ck_assert(!(cc.flags & CW_CC_NO_CACHE_FIELDS));
    cc = parse_targeted("private, private=\"X-A\"", &rc);
    ck_assert(!(cc.flags & CW_CC_PRIVATE));
    ck_assert(str_is(cc.private_fields, "X-A"));
    cc = parse_targeted("no-store, no-store=?1", &rc);
    ck_assert(cc.flags & CW_CC_NO_STORE);
    cc = parse_targeted("max-stale, max-stale=5, min-fresh=9, min-fresh=3", &rc);
    ck_assert(!(cc.flags & CW_CC_MAX_STALE_ANY));
    ck_assert_int_eq(cc.max_stale_s, 5);
    ck_assert_int_eq(cc.min_fresh_s, 3);
    cc = parse_targeted("stale-if-error=9, stale-if-error=3, s-maxage=1, s-maxage=8", &rc);
    ck_assert_int_eq(cc.sie_s, 3);
    ck_assert_int_eq(cc.s_maxage_s, 8);
    /* Across lines of one field too: they form one dictionary. */
    cw_cc_init(&cc);
    ck_assert_int_eq(cw_cc_parse_targeted(&cc, "max-age=60, public", 18), 2);
    ck_assert_int_eq(cw_cc_parse_targeted(&cc, "max-age=5", 9), 1);
    ck_assert_int_eq(cc.max_age_s, 5);
    ck_assert(cc.flags & CW_CC_PUBLIC);
}
END_TEST

START_TEST(test_cc_targeted_not_nul_terminated)
{
    char buf[] = {'m', 'a', 'x', '-', 'a', 'g', 'e', '=', '6', '0', '0'};
    struct cw_cc cc;

    cw_cc_init(&cc);
    /* Only the first 10 bytes: "max-age=60". */
    ck_assert_int_eq(cw_cc_parse_targeted(&cc, buf, 10), 1);
    ck_assert_int_eq(cc.max_age_s, 60);
    /* "max-age=" alone is a parse error (no bare item). */
    ck_assert_int_eq(cw_cc_parse_targeted(&cc, buf, 8), -EBADMSG);
}
END_TEST

/* cw_str_eq_ci (core/common.c), which the field-name rules here all rest on: ASCII letters
 * match in either case at every position (within and across its 8-byte words); no other
 * byte pair 0x20 apart does. */
START_TEST(test_str_eq_ci)
{
    const char *word = "X-Forwarded-Proto-Lengthy";
    size_t n = strlen(word);
    char buf[64];

    ck_assert(cw_str_eq_ci(CW_STR_LIT(""), CW_STR_LIT("")));
    ck_assert(!cw_str_eq_ci(CW_STR_LIT("Host"), CW_STR_LIT("Hos")));
    for (size_t i = 0; i < n; i++) {
        memcpy(buf, word, n);
        buf[i] = (char)(buf[i] ^ 0x20);
        bool letter = (word[i] | 0x20) >= 'a' && (word[i] | 0x20) <= 'z';
        ck_assert_msg(cw_str_eq_ci(cw_str_make(buf, n), cw_str_make(word, n)) == letter,
                      "position %zu", i);
        buf[i] = '#';
        ck_assert_msg(!cw_str_eq_ci(cw_str_make(buf, n), cw_str_make(word, n)), "position %zu", i);
    }
    for (int c = 0; c < 256; c++) {
        char a[9] = "abcdefgh", b[9] = "abcdefgh";
        bool letter = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
        a[8 - 1] = (char)c;
        b[8 - 1] = (char)(c ^ 0x20);
        ck_assert_msg(cw_str_eq_ci(cw_str_make(a, 8), cw_str_make(b, 8)) == letter, "byte 0x%02x",
                      c);
        ck_assert(cw_str_eq_ci(cw_str_make(a, 8), cw_str_make(a, 8)));
    }
}
END_TEST

Suite *cc_suite(void)
{
    Suite *s = suite_create("cc");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_cc_init_absent);
    tcase_add_test(tc, test_cc_flag_directives);
    tcase_add_test(tc, test_cc_delta_directives);
    tcase_add_test(tc, test_cc_case_insensitive_names);
    tcase_add_test(tc, test_cc_whitespace_and_empty_elements);
    tcase_add_test(tc, test_cc_quoted_delta_accepted);
    tcase_add_test(tc, test_cc_delta_clamp);
    tcase_add_test(tc, test_cc_invalid_max_age_is_zero);
    tcase_add_test(tc, test_cc_invalid_optional_values_ignored);
    tcase_add_test(tc, test_cc_duplicates_most_restrictive);
    tcase_add_test(tc, test_cc_accumulates_lines);
    tcase_add_test(tc, test_cc_max_stale_any_and_value);
    tcase_add_test(tc, test_cc_no_cache_fields);
    tcase_add_test(tc, test_cc_private_fields);
    tcase_add_test(tc, test_cc_quoted_comma_not_a_separator);
    tcase_add_test(tc, test_cc_quoted_escapes);
    tcase_add_test(tc, test_cc_unterminated_quote);
    tcase_add_test(tc, test_cc_empty_or_second_field_list_degrades);
    tcase_add_test(tc, test_cc_junk_skipped_to_comma);
    tcase_add_test(tc, test_cc_unknown_ignored);
    tcase_add_test(tc, test_cc_flag_with_argument);
    tcase_add_test(tc, test_cc_directive_limit);
    tcase_add_test(tc, test_cc_not_nul_terminated);
    tcase_add_test(tc, test_cc_hop_by_hop);
    tcase_add_test(tc, test_cc_list_has);
    tcase_add_test(tc, test_cc_targeted_valid_dictionaries);
    tcase_add_test(tc, test_cc_targeted_invalid_refused_whole);
    tcase_add_test(tc, test_cc_targeted_wrong_types_read_as_malformed);
    tcase_add_test(tc, test_cc_targeted_last_member_wins);
    tcase_add_test(tc, test_cc_targeted_not_nul_terminated);
    tcase_add_test(tc, test_str_eq_ci);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(cc_suite)
