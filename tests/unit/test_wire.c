/* tests/unit/test_wire.c - the wire reader on a real socket pair: what recv() hands over,
 * what it holds, what it refuses, and that a short count always means the socket is drained
 * (libmicrohttpd waits for the next epoll edge after one). */
#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/unit/check_main.h"
#include "workers/wire.h"

Suite *wire_suite(void);

#define REQ_A          "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
#define REQ_B          "GET /b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n"
#define STANDIN_PREFIX "GET / HTTP/1.1\r\n"

struct pair {
    int rd, wr;
    struct cw_wire_conn *c;
};

static struct pair pair_open(void)
{
    int fds[2];
    struct pair p;

    ck_assert_int_eq(cw_wire_init(0), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    p.rd = fds[0];
    p.wr = fds[1];
    p.c = cw_wire_attach(p.rd);
    ck_assert_ptr_nonnull(p.c);
    return p;
}

static void pair_send(struct pair *p, const char *s, size_t n)
{
    ck_assert_int_eq(write(p->wr, s, n), (ssize_t)n);
}

/* The kernel has nothing left for the reader. */
static bool pair_drained(struct pair *p)
{
    char b;
    return recv(p->rd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == -1 && errno == EAGAIN;
}

static void pair_close(struct pair *p)
{
    cw_wire_detach(p->c);
    close(p->rd);
    close(p->wr);
}

START_TEST(test_wire_pipelined_requests_pass_whole)
{
    struct pair p = pair_open();
    char buf[4096];
    const char *why = NULL;

    pair_send(&p, REQ_A REQ_B, strlen(REQ_A REQ_B));
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), (ssize_t)strlen(REQ_A REQ_B));
    ck_assert(memcmp(buf, REQ_A REQ_B, strlen(REQ_A REQ_B)) == 0);
    ck_assert_uint_eq(cw_wire_begin(p.c), 0);
    ck_assert_uint_eq(cw_wire_check(p.c, 0, &why), 0);
    ck_assert_uint_eq(cw_wire_begin(p.c), 1);
    ck_assert_uint_eq(cw_wire_check(p.c, 1, &why), 0);
    /* A head that never went through the reader fails closed. */
    ck_assert_uint_eq(cw_wire_check(p.c, 2, &why), 500);
    ck_assert_uint_eq(cw_wire_check(NULL, 0, &why), 500);
    pair_close(&p);
}
END_TEST

START_TEST(test_wire_partial_head_is_held_until_complete)
{
    struct pair p = pair_open();
    char buf[4096];
    size_t half = strlen(REQ_B) / 2;

    pair_send(&p, REQ_A, strlen(REQ_A));
    pair_send(&p, REQ_B, half);
    /* A goes up; the start of B stays here, and the socket is drained. */
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), (ssize_t)strlen(REQ_A));
    ck_assert(pair_drained(&p));
    errno = 0;
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), -1);
    ck_assert_int_eq(errno, EAGAIN);
    pair_send(&p, REQ_B + half, strlen(REQ_B) - half);
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), (ssize_t)strlen(REQ_B));
    ck_assert(memcmp(buf, REQ_B, strlen(REQ_B)) == 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_wire_short_count_only_when_drained)
{
    struct pair p = pair_open();
    char buf[4096], got[4096];
    const char *all = REQ_A REQ_B REQ_A "GET /c HTT";
    size_t total = 0, complete = strlen(REQ_A REQ_B REQ_A);

    pair_send(&p, all, strlen(all));
    /* Small reads, as libmicrohttpd makes when its buffer is nearly full: every count that
     * is short of the request must find the socket drained. */
    for (int i = 0; i < 64 && total < complete; i++) {
        size_t want = 7;
        ssize_t n = recv(p.rd, buf, want, 0);
        if (n == -1) {
            ck_assert_int_eq(errno, EAGAIN);
            break;
        }
        ck_assert_int_gt(n, 0);
        if ((size_t)n < want) ck_assert(pair_drained(&p));
        memcpy(got + total, buf, (size_t)n);
        total += (size_t)n;
    }
    ck_assert_uint_eq(total, complete);
    ck_assert(memcmp(got, all, complete) == 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_wire_smuggling_refused_after_good_request)
{
    struct pair p = pair_open();
    char buf[4096];
    const char *why = NULL;
    const char *bad = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n"
                      "0\r\n\r\nGET /secret HTTP/1.1\r\nHost: h\r\n\r\n";
    ssize_t n;

    pair_send(&p, REQ_A, strlen(REQ_A));
    pair_send(&p, bad, strlen(bad));
    n = recv(p.rd, buf, sizeof(buf), 0);
    /* A, then the stand-in: nothing of the refused request or what it smuggled. */
    ck_assert_int_gt(n, (ssize_t)strlen(REQ_A));
    ck_assert(memcmp(buf, REQ_A, strlen(REQ_A)) == 0);
    ck_assert(memcmp(buf + strlen(REQ_A), STANDIN_PREFIX, strlen(STANDIN_PREFIX)) == 0);
    ck_assert(memmem(buf, (size_t)n, "secret", 6) == NULL);
    ck_assert(memmem(buf, (size_t)n, "POST", 4) == NULL);
    errno = 0;
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), -1);
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_uint_eq(cw_wire_check(p.c, 0, &why), 0);
    ck_assert_uint_eq(cw_wire_check(p.c, 1, &why), 400);
    ck_assert_str_eq(why, "whitespace before colon");
    struct cw_str line = cw_wire_refused_line(p.c);
    ck_assert(line.len == strlen("POST /x HTTP/1.1") && memcmp(line.p, "POST /x", 7) == 0);
    pair_close(&p);
}
END_TEST

START_TEST(test_wire_bad_byte_in_a_later_packet)
{
    struct pair p = pair_open();
    char buf[4096];
    const char *why = NULL;

    pair_send(&p, "GET /x HTTP/1.1\r\nHost: h\r\n", 26);
    errno = 0;
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), -1); /* nothing of a head goes early */
    ck_assert_int_eq(errno, EAGAIN);
    pair_send(&p, "X-C: a\rb\r\n\r\n", 12);
    ssize_t n = recv(p.rd, buf, sizeof(buf), 0);
    ck_assert_int_gt(n, 0);
    ck_assert(memcmp(buf, STANDIN_PREFIX, strlen(STANDIN_PREFIX)) == 0);
    ck_assert_uint_eq(cw_wire_check(p.c, 0, &why), 400);
    pair_close(&p);
}
END_TEST

START_TEST(test_wire_unknown_coding_is_501)
{
    struct pair p = pair_open();
    char buf[4096];
    const char *why = NULL;
    const char *req = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n";

    pair_send(&p, req, strlen(req));
    ck_assert_int_gt(recv(p.rd, buf, sizeof(buf), 0), 0);
    ck_assert_uint_eq(cw_wire_check(p.c, 0, &why), 501);
    pair_close(&p);
}
END_TEST

START_TEST(test_wire_bad_chunk_after_head_resets)
{
    struct pair p = pair_open();
    char buf[4096];
    const char *head = "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";

    pair_send(&p, head, strlen(head));
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), (ssize_t)strlen(head));
    pair_send(&p, "zz\r\n", 4);
    errno = 0;
    ck_assert_int_eq(recv(p.rd, buf, sizeof(buf), 0), -1);
    ck_assert_int_eq(errno, ECONNRESET);
    pair_close(&p);
}
END_TEST

START_TEST(test_wire_other_sockets_untouched)
{
    int fds[2];
    char buf[64];
    const char *junk = "not http\r\n at all";

    ck_assert_int_eq(cw_wire_init(0), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    ck_assert_int_eq(write(fds[1], junk, strlen(junk)), (ssize_t)strlen(junk));
    ck_assert_int_eq(recv(fds[0], buf, sizeof(buf), 0), (ssize_t)strlen(junk));
    /* Detached, a socket is the kernel's again. */
    struct cw_wire_conn *c = cw_wire_attach(fds[0]);
    cw_wire_detach(c);
    ck_assert_int_eq(write(fds[1], junk, strlen(junk)), (ssize_t)strlen(junk));
    ck_assert_int_eq(recv(fds[0], buf, sizeof(buf), 0), (ssize_t)strlen(junk));
    close(fds[0]);
    close(fds[1]);
}
END_TEST

Suite *wire_suite(void)
{
    Suite *s = suite_create("wire");
    TCase *tc = tcase_create("wire");

    tcase_add_test(tc, test_wire_pipelined_requests_pass_whole);
    tcase_add_test(tc, test_wire_partial_head_is_held_until_complete);
    tcase_add_test(tc, test_wire_short_count_only_when_drained);
    tcase_add_test(tc, test_wire_smuggling_refused_after_good_request);
    tcase_add_test(tc, test_wire_bad_byte_in_a_later_packet);
    tcase_add_test(tc, test_wire_unknown_coding_is_501);
    tcase_add_test(tc, test_wire_bad_chunk_after_head_resets);
    tcase_add_test(tc, test_wire_other_sockets_untouched);
    suite_add_tcase(s, tc);
    return s;
}

CW_TEST_MAIN(wire_suite)
