/* workers/chan.c - see workers/chan.h. */
#include "workers/chan.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"

static const char *const chan_type_names[] = {"ping",    "pong",     "purge",  "purged",
                                              "l1-stat", "l1-stats", "purging"};

static_assert(CW_ARRAY_LEN(chan_type_names) == CW_CHAN_TYPE_COUNT, "a name for every type");

int cw_chan_pair(int *sup_fd, int *child_fd)
{
    int fds[2];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == -1) {
        int rc = -errno;
        cw_err("chan: socketpair: %s", strerror(errno));
        return rc;
    }
    *sup_fd = fds[0];
    *child_fd = fds[1];
    return 0;
}

int cw_chan_send(int fd, enum cw_chan_type type, uint64_t seq, const void *payload, size_t len)
{
    struct cw_chan_msg msg;
    size_t n = sizeof(msg.hdr) + len;

    if ((unsigned)type >= CW_CHAN_TYPE_COUNT || len > CW_CHAN_PAYLOAD_MAX) return -EINVAL;
    if (len > 0 && payload == NULL) return -EINVAL;
    msg.hdr = (struct cw_chan_hdr){.type = (uint32_t)type, .len = (uint32_t)len, .seq = seq};
    if (len > 0) memcpy(msg.payload, payload, len);
    for (;;) {
        ssize_t sent = send(fd, &msg, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent != -1) return sent == (ssize_t)n ? 0 : -EIO; /* SEQPACKET: all or nothing */
        if (errno == EINTR) continue;
        if (errno == EWOULDBLOCK) return -EAGAIN;
        /* ECONNRESET: the peer closed with messages of ours still unread. */
        return errno == ECONNRESET ? -EPIPE : -errno;
    }
}

int cw_chan_recv(int fd, struct cw_chan_msg *out)
{
    ssize_t n;

    do {
        /* MSG_TRUNC: the datagram's real length, even when it did not fit. */
        n = recv(fd, out, sizeof(*out), MSG_DONTWAIT | MSG_TRUNC);
    } while (n == -1 && errno == EINTR);
    if (n == -1) {
        if (errno == EWOULDBLOCK) return -EAGAIN;
        return errno == ECONNRESET ? -EPIPE : -errno;
    }
    if (n == 0) return -EPIPE; /* SEQPACKET: 0 is end of file; a message is never empty */
    if ((size_t)n < sizeof(out->hdr) || (size_t)n > sizeof(*out)) return -EBADMSG;
    if (out->hdr.type >= CW_CHAN_TYPE_COUNT) return -EBADMSG;
    if (out->hdr.len != (size_t)n - sizeof(out->hdr)) return -EBADMSG;
    return 0;
}

const char *cw_chan_type_name(uint32_t type)
{
    return type < CW_CHAN_TYPE_COUNT ? chan_type_names[type] : "unknown";
}
