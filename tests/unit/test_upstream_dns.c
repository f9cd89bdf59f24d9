/* tests/unit/test_upstream_dns.c - workers/upstream_dns's pure parts: the SRV TTL read from a
 * reply's answer section (the smallest, additional records ignored, malformed replies
 * refused), and the slot assignment that keeps a server in its slot while DNS keeps it, empties
 * the slot of one that went and gives a new one a slot that was already empty; the lookup
 * schedule (the TTL clamped into [resolve_min, resolve_max]); and the shm table's seqlock
 * (shm/seg.h). */
#include "workers/upstream_dns.h"

#include <check.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "shm/seg.h"

Suite *upstream_dns_suite(void);

/* dnsmasq's answer to "_api._tcp.cw.test SRV": two SRV records (ports 9002 weight 3, 9001
 * weight 1, TTL 1 s) and the target's A record in the additional section. */
static const unsigned char t_srv_reply[] = {
    0x12, 0x34, 0x85, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x04, 0x5f, 0x61,
    0x70, 0x69, 0x04, 0x5f, 0x74, 0x63, 0x70, 0x02, 0x63, 0x77, 0x04, 0x74, 0x65, 0x73, 0x74,
    0x00, 0x00, 0x21, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x13, 0x00, 0x00, 0x00, 0x03, 0x23, 0x2a, 0x03, 0x61, 0x70, 0x69, 0x02, 0x63, 0x77,
    0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0xc0, 0x0c, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x13, 0x00, 0x00, 0x00, 0x01, 0x23, 0x29, 0x03, 0x61, 0x70, 0x69, 0x02, 0x63,
    0x77, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0xc0, 0x54, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x04, 0x7f, 0x00, 0x00, 0x02};
#define T_TTL1 41  /* offset of the first SRV record's TTL */
#define T_TTL2 72  /* the second's */
#define T_TTLA 103 /* the additional A record's */

/* The same server's answer to "api.cw.test A": no SRV record. */
static const unsigned char t_a_reply[] = {
    0x12, 0x34, 0x85, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x03, 0x61, 0x70,
    0x69, 0x02, 0x63, 0x77, 0x04, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01, 0xc0,
    0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x04, 0x7f, 0x00, 0x00, 0x02};

static void t_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

START_TEST(test_upstream_dns_srv_ttl_smallest_answer)
{
    unsigned char b[sizeof(t_srv_reply)];
    uint32_t ttl = 0;

    ck_assert_int_eq(cw_upstream_dns_srv_ttl(t_srv_reply, sizeof(t_srv_reply), &ttl), 0);
    ck_assert_uint_eq(ttl, 1);
    memcpy(b, t_srv_reply, sizeof(b));
    t_put32(b + T_TTL1, 300);
    t_put32(b + T_TTL2, 30);
    t_put32(b + T_TTLA, 5); /* additional records do not count */
    ck_assert_int_eq(cw_upstream_dns_srv_ttl(b, sizeof(b), &ttl), 0);
    ck_assert_uint_eq(ttl, 30);
    t_put32(b + T_TTL2, 0x80000000u); /* RFC 2181 §8: the top bit set reads as 0 */
    ck_assert_int_eq(cw_upstream_dns_srv_ttl(b, sizeof(b), &ttl), 0);
    ck_assert_uint_eq(ttl, 0);
}
END_TEST

START_TEST(test_upstream_dns_srv_ttl_refuses_bad_replies)
{
    uint32_t ttl = 7;

    ck_assert_int_eq(cw_upstream_dns_srv_ttl(t_a_reply, sizeof(t_a_reply), &ttl), -ENOENT);
    ck_assert_int_eq(cw_upstream_dns_srv_ttl(t_srv_reply, 11, &ttl), -EBADMSG);
    /* Cut inside each record and inside the question: never read past the end. */
    for (size_t n = 12; n < T_TTL2 + 20; n++)
        ck_assert_int_eq(cw_upstream_dns_srv_ttl(t_srv_reply, n, &ttl), -EBADMSG);
    ck_assert_uint_eq(ttl, 7);
}
END_TEST

static struct cw_seg_dns_server t_srv(uint8_t last, uint16_t port, uint16_t weight)
{
    struct cw_seg_dns_server e = {.family = 4, .port = port, .weight = weight};

    e.addr[0] = 127;
    e.addr[3] = last;
    return e;
}

START_TEST(test_upstream_dns_assign_keeps_slots)
{
    struct cw_seg_dns_server t[CW_LIMIT_ORIGIN_SERVERS] = {{0}};
    struct cw_seg_dns_server f[3] = {t_srv(1, 80, 1), t_srv(2, 80, 1)};
    uint32_t added, removed;

    ck_assert(cw_upstream_dns_assign(t, f, 2, &added, &removed));
    ck_assert_uint_eq(added, 0x3);
    ck_assert_uint_eq(removed, 0);
    ck_assert_uint_eq(t[0].addr[3], 1);
    ck_assert_uint_eq(t[1].addr[3], 2);
    /* The same answer, in another order: nothing moves. */
    f[0] = t_srv(2, 80, 1);
    f[1] = t_srv(1, 80, 1);
    ck_assert(!cw_upstream_dns_assign(t, f, 2, &added, &removed));
    ck_assert_uint_eq(t[0].addr[3], 1);
    /* A weight changes in place. */
    f[0] = t_srv(2, 80, 5);
    ck_assert(cw_upstream_dns_assign(t, f, 2, &added, &removed));
    ck_assert_uint_eq(added | removed, 0);
    ck_assert_uint_eq(t[1].weight, 5);
    /* .1 goes, .3 comes: .3 takes a slot that was empty, not the one .1 just left. */
    f[1] = t_srv(3, 80, 1);
    ck_assert(cw_upstream_dns_assign(t, f, 2, &added, &removed));
    ck_assert_uint_eq(removed, 0x1);
    ck_assert_uint_eq(added, 0x4);
    ck_assert_uint_eq(t[0].family, 0);
    ck_assert_uint_eq(t[1].addr[3], 2);
    ck_assert_uint_eq(t[2].addr[3], 3);
    /* Another port of the same address is another server; slot 0, empty since the last
     * call, is free for it. */
    f[2] = t_srv(3, 81, 1);
    ck_assert(cw_upstream_dns_assign(t, f, 3, &added, &removed));
    ck_assert_uint_eq(added, 0x1);
    ck_assert_uint_eq(t[0].port, 81);
    ck_assert_uint_eq(removed, 0);
}
END_TEST

START_TEST(test_upstream_dns_assign_full_table)
{
    struct cw_seg_dns_server t[CW_LIMIT_ORIGIN_SERVERS] = {{0}};
    struct cw_seg_dns_server f[CW_LIMIT_ORIGIN_SERVERS + 1];
    uint32_t added, removed;

    for (size_t i = 0; i < CW_LIMIT_ORIGIN_SERVERS + 1; i++)
        f[i] = t_srv((uint8_t)(i + 1), 80, 1);
    ck_assert(cw_upstream_dns_assign(t, f, CW_LIMIT_ORIGIN_SERVERS + 1, &added, &removed));
    ck_assert_uint_eq(added, (1u << CW_LIMIT_ORIGIN_SERVERS) - 1);
    /* Full, one goes and the one left out comes: it gets the slot just left (no other). */
    f[0] = f[CW_LIMIT_ORIGIN_SERVERS];
    ck_assert(cw_upstream_dns_assign(t, f, CW_LIMIT_ORIGIN_SERVERS, &added, &removed));
    ck_assert_uint_eq(removed, 0x1);
    ck_assert_uint_eq(added, 0x1);
    ck_assert_uint_eq(t[0].addr[3], CW_LIMIT_ORIGIN_SERVERS + 1);
}
END_TEST

START_TEST(test_upstream_dns_wait_follows_ttl)
{
    /* resolve_min 1 s, resolve_max 60 s: a 1 s TTL is looked up again after 1 s, not 60. */
    ck_assert_int_eq(cw_upstream_dns_wait_ms(1, 1000, 60000), 1000);
    ck_assert_int_eq(cw_upstream_dns_wait_ms(7, 1000, 60000), 7000);
    ck_assert_int_eq(cw_upstream_dns_wait_ms(0, 1000, 60000), 1000);     /* min */
    ck_assert_int_eq(cw_upstream_dns_wait_ms(3600, 1000, 60000), 60000); /* max */
    ck_assert_int_eq(cw_upstream_dns_wait_ms(-1, 1000, 60000), 60000);   /* no TTL given */
    ck_assert_int_eq(cw_upstream_dns_wait_ms(INT32_MAX, 1000, 60000), 60000);
    ck_assert_int_eq(cw_upstream_dns_wait_ms(INT64_MAX, 1000, 60000), 60000);
    ck_assert_int_eq(cw_upstream_dns_wait_ms(5, 5000, 5000), 5000);
}
END_TEST

START_TEST(test_upstream_dns_seg_table_seqlock)
{
    static struct cw_seg_dns d;
    struct cw_seg_dns_server t[CW_LIMIT_ORIGIN_SERVERS] = {{0}}, out[CW_LIMIT_ORIGIN_SERVERS];
    uint32_t gen;

    ck_assert(!cw_seg_dns_read(&d, atomic_load(&d.gen), 7, out)); /* no table yet */
    ck_assert_uint_eq(cw_seg_dns_count(&d, 7), 0);
    t[3] = t_srv(9, 8080, 2);
    cw_seg_dns_write(&d, 7, t);
    gen = atomic_load(&d.gen);
    ck_assert_uint_ne(gen, 0);
    ck_assert_uint_eq(gen & 1u, 0);
    ck_assert(cw_seg_dns_read(&d, gen, 7, out));
    ck_assert_uint_eq(out[3].port, 8080);
    ck_assert_uint_eq(cw_seg_dns_count(&d, 7), 1);
    ck_assert(!cw_seg_dns_read(&d, gen - 1, 7, out)); /* odd: being written */
    ck_assert(!cw_seg_dns_read(&d, gen + 2, 7, out)); /* moved on meanwhile */
    ck_assert(!cw_seg_dns_read(&d, gen, 8, out));     /* another origin's table */
    ck_assert_uint_eq(cw_seg_dns_count(&d, 8), 0);
    atomic_store(&d.gen, UINT32_MAX - 1); /* wraps past 0, which means no table */
    cw_seg_dns_write(&d, 7, t);
    ck_assert_uint_eq(atomic_load(&d.gen), 2);
}
END_TEST

Suite *upstream_dns_suite(void)
{
    Suite *s = suite_create("upstream_dns");
    TCase *tc = tcase_create("upstream_dns");

    tcase_add_test(tc, test_upstream_dns_srv_ttl_smallest_answer);
    tcase_add_test(tc, test_upstream_dns_srv_ttl_refuses_bad_replies);
    tcase_add_test(tc, test_upstream_dns_assign_keeps_slots);
    tcase_add_test(tc, test_upstream_dns_assign_full_table);
    tcase_add_test(tc, test_upstream_dns_wait_follows_ttl);
    tcase_add_test(tc, test_upstream_dns_seg_table_seqlock);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"

CW_TEST_MAIN(upstream_dns_suite)
