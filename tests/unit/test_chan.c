/* tests/unit/test_chan.c - the command channel: whole messages, checked lengths and types,
 * the size limit at N and N+1, and non-blocking ends. */
#include "workers/chan.h"

#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

Suite *chan_suite(void);

START_TEST(test_chan_ping_pong_round_trip)
{
    struct cw_chan_msg m;
    int a, b;

    ck_assert_int_eq(cw_chan_pair(&a, &b), 0);
    ck_assert_int_eq(cw_chan_recv(b, &m), -EAGAIN);
    ck_assert_int_eq(cw_chan_send(a, CW_CHAN_PING, 7, NULL, 0), 0);
    ck_assert_int_eq(cw_chan_recv(b, &m), 0);
    ck_assert_uint_eq(m.hdr.type, CW_CHAN_PING);
    ck_assert_uint_eq(m.hdr.seq, 7);
    ck_assert_uint_eq(m.hdr.len, 0);
    ck_assert_int_eq(cw_chan_send(b, CW_CHAN_PONG, m.hdr.seq, NULL, 0), 0);
    ck_assert_int_eq(cw_chan_recv(a, &m), 0);
    ck_assert_uint_eq(m.hdr.type, CW_CHAN_PONG);
    ck_assert_uint_eq(m.hdr.seq, 7);
    ck_assert_str_eq(cw_chan_type_name(CW_CHAN_PONG), "pong");
    ck_assert_str_eq(cw_chan_type_name(99), "unknown");
    close(a);
    close(b);
}
END_TEST

/* CW_LIMIT_CHAN_MSG_BYTES in all is sent and arrives intact; one byte more is refused. */
START_TEST(test_chan_payload_limit)
{
    static unsigned char big[CW_CHAN_PAYLOAD_MAX + 1];
    static struct cw_chan_msg m;
    int a, b;

    memset(big, 'x', sizeof(big));
    big[CW_CHAN_PAYLOAD_MAX - 1] = 'y';
    ck_assert_int_eq(cw_chan_pair(&a, &b), 0);
    ck_assert_int_eq(cw_chan_send(a, CW_CHAN_PING, 1, big, CW_CHAN_PAYLOAD_MAX), 0);
    ck_assert_int_eq(cw_chan_recv(b, &m), 0);
    ck_assert_uint_eq(m.hdr.len, CW_CHAN_PAYLOAD_MAX);
    ck_assert_int_eq(m.payload[CW_CHAN_PAYLOAD_MAX - 1], 'y');
    ck_assert_int_eq(cw_chan_send(a, CW_CHAN_PING, 2, big, CW_CHAN_PAYLOAD_MAX + 1), -EINVAL);
    ck_assert_int_eq(cw_chan_send(a, CW_CHAN_TYPE_COUNT, 3, NULL, 0), -EINVAL);
    ck_assert_int_eq(cw_chan_recv(b, &m), -EAGAIN);
    close(a);
    close(b);
}
END_TEST

/* What a peer could send wrong is consumed and refused, and the next message is intact. */
START_TEST(test_chan_rejects_malformed)
{
    static unsigned char raw[CW_LIMIT_CHAN_MSG_BYTES + 1];
    struct cw_chan_hdr h = {.type = CW_CHAN_PING, .len = 10, .seq = 1};
    static struct cw_chan_msg m;
    int a, b;

    ck_assert_int_eq(cw_chan_pair(&a, &b), 0);
    ck_assert_int_eq(send(a, raw, 8, 0), 8); /* shorter than the header */
    ck_assert_int_eq(cw_chan_recv(b, &m), -EBADMSG);
    memcpy(raw, &h, sizeof(h)); /* len 10, 5 bytes sent */
    ck_assert_int_eq(send(a, raw, sizeof(h) + 5, 0), (ssize_t)sizeof(h) + 5);
    ck_assert_int_eq(cw_chan_recv(b, &m), -EBADMSG);
    h = (struct cw_chan_hdr){.type = CW_CHAN_TYPE_COUNT, .len = 0, .seq = 2}; /* unknown */
    memcpy(raw, &h, sizeof(h));
    ck_assert_int_eq(send(a, raw, sizeof(h), 0), (ssize_t)sizeof(h));
    ck_assert_int_eq(cw_chan_recv(b, &m), -EBADMSG);
    h = (struct cw_chan_hdr){.type = CW_CHAN_PING, .len = CW_CHAN_PAYLOAD_MAX + 1, .seq = 3};
    memcpy(raw, &h, sizeof(h)); /* one byte over the limit */
    ck_assert_int_eq(send(a, raw, sizeof(raw), 0), (ssize_t)sizeof(raw));
    ck_assert_int_eq(cw_chan_recv(b, &m), -EBADMSG);
    ck_assert_int_eq(cw_chan_send(a, CW_CHAN_PING, 4, NULL, 0), 0);
    ck_assert_int_eq(cw_chan_recv(b, &m), 0);
    ck_assert_uint_eq(m.hdr.seq, 4);
    close(a);
    close(b);
}
END_TEST

/* A reader that does not read fills the channel: the sender gets -EAGAIN, never blocks. A
 * closed end is -EPIPE on both sides. */
START_TEST(test_chan_full_and_closed)
{
    struct cw_chan_msg m;
    int a, b, rc = 0, sent = 0;

    ck_assert_int_eq(cw_chan_pair(&a, &b), 0);
    while (sent < 100000 && (rc = cw_chan_send(a, CW_CHAN_PING, (uint64_t)sent, NULL, 0)) == 0)
        sent++;
    ck_assert_int_eq(rc, -EAGAIN);
    ck_assert_int_gt(sent, 0);
    close(b);
    ck_assert_int_eq(cw_chan_send(a, CW_CHAN_PING, 0, NULL, 0), -EPIPE);
    ck_assert_int_eq(cw_chan_recv(a, &m), -EPIPE);
    close(a);
}
END_TEST

Suite *chan_suite(void)
{
    Suite *s = suite_create("chan");
    TCase *tc = tcase_create("chan");

    tcase_add_test(tc, test_chan_ping_pong_round_trip);
    tcase_add_test(tc, test_chan_payload_limit);
    tcase_add_test(tc, test_chan_rejects_malformed);
    tcase_add_test(tc, test_chan_full_and_closed);
    suite_add_tcase(s, tc);
    return s;
}

#include "tests/unit/check_main.h"
CW_TEST_MAIN(chan_suite)
