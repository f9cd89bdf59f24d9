/* workers/supervisor_listen.c - see workers/supervisor_listen.h. */
#include "workers/supervisor_listen.h"

#include <errno.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "workers/clock.h"
#include "workers/supervisor_int.h"

/* A socket of the group: bound to addr with SO_REUSEPORT (when group), listening. The fd, or
 * -1 with errno set. */
static int sup_listen_sock(const struct sockaddr *addr, socklen_t len, bool group)
{
    int one = 1, fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd == -1) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if ((group && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) ||
        bind(fd, addr, len) == -1 || listen(fd, SUP_LISTEN_BACKLOG) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Adds sockets bound where fd[0] is until count reaches want or the kernel refuses one. */
static void sup_listen_grow(struct sup_listen *l, int want)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (!l->group || l->count >= want) return;
    if (getsockname(l->fd[0], (struct sockaddr *)&ss, &len) == -1) {
        cw_warn("supervisor: listen: getsockname: %s; workers %d to %d share sockets",
                strerror(errno), l->count, want - 1);
        return;
    }
    while (l->count < want) {
        int fd = sup_listen_sock((const struct sockaddr *)&ss, len, true);
        if (fd == -1) {
            cw_warn("supervisor: listen: another socket in the group: %s; workers %d to %d "
                    "share sockets",
                    strerror(errno), l->count, want - 1);
            return;
        }
        l->fd[l->count++] = fd;
    }
}

/* Resolves addr ("host:port") to the first address getaddrinfo() gives: 0, or -1 logged. */
static int sup_listen_resolve(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {0}, *ai = NULL;
    char host[CW_LIMIT_HOST_BYTES + 1], port_s[16];
    int port, rc;

    if (cw_config_split_hostport(addr, host, sizeof(host), &port) < 0) {
        cw_err("supervisor: listen \"%s\": not host:port", addr);
        return -1;
    }
    snprintf(port_s, sizeof(port_s), "%d", port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port_s, &hints, &ai);
    if (rc != 0) {
        cw_err("supervisor: listen %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int sup_listen_bind_one(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    if (sup_listen_resolve(addr, &ss, &len) < 0) return -1;
    fd = sup_listen_sock((const struct sockaddr *)&ss, len, false);
    if (fd == -1) cw_err("supervisor: listen %s: %s", addr, strerror(errno));
    return fd;
}

int sup_listen_open(struct sup_listen *l, const char *addr, int count)
{
    struct sockaddr_storage ss;
    socklen_t len;

    *l = (struct sup_listen){.steer_count = -1};
    if (sup_listen_resolve(addr, &ss, &len) < 0) return -EINVAL;
    /* A bind without SO_REUSEPORT first: an address another process listens on (a second
     * daemon, even of the same user, which could otherwise join the group) is refused, and
     * port 0 becomes the port the group binds. */
    int one = 1, probe = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe != -1) setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (probe == -1 || bind(probe, (const struct sockaddr *)&ss, len) == -1 ||
        getsockname(probe, (struct sockaddr *)&ss, &len) == -1) {
        int e = errno;
        cw_err("supervisor: listen %s: %s", addr, strerror(e));
        if (probe != -1) close(probe);
        return -e;
    }
    close(probe);
    l->group = true;
    l->fd[0] = sup_listen_sock((const struct sockaddr *)&ss, len, true);
    if (l->fd[0] == -1 && errno == ENOPROTOOPT) {
        /* No SO_REUSEPORT here: one socket that every worker shares. */
        cw_notice("supervisor: listen %s: no SO_REUSEPORT; the workers share one socket", addr);
        l->group = false;
        l->fd[0] = sup_listen_sock((const struct sockaddr *)&ss, len, false);
    }
    if (l->fd[0] == -1) {
        int e = errno;
        cw_err("supervisor: listen %s: %s", addr, strerror(e));
        return -e;
    }
    l->count = 1;
    sup_listen_grow(l, count);
    l->active = l->count;
    return 0;
}

/* Attaches the program that picks, at random, one of the n sockets in steer (group
 * indexes; a socket twice weighs twice): 1, or 0 when that is what is in force, or -1 when the
 * kernel refused it (logged once; the kernel's hash from then on, and the sockets past active
 * closed, since the hash may pick any). */
static int sup_listen_attach(struct sup_listen *l, const int *steer, int n)
{
    /* Two instructions a socket, plus the random number, its modulo and a default. */
    struct sock_filter code[2 * CW_LIMIT_WORKERS + 3];
    int len = 0;

    if (l->steer_off) return -1;
    if (n == l->steer_count && memcmp(steer, l->steer, (size_t)n * sizeof(*steer)) == 0) return 0;
    /* A = random % n; then the socket of the A-th entry. */
    code[len++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_RANDOM);
    code[len++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (unsigned)n);
    for (int j = 0; j < n; j++) {
        code[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)j, 0, 1);
        code[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (unsigned)steer[j]);
    }
    code[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (unsigned)steer[0]);
    struct sock_fprog prog = {.len = (unsigned short)len, .filter = code};
    if (setsockopt(l->fd[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) == -1) {
        cw_warn("supervisor: listen: steering new connections: %s; the kernel's hash from now "
                "on, whether a worker serves or not",
                strerror(errno));
        /* A program that stays attached would steer by an old set: detach it (it may fail
         * the same way; then nothing more can be done). */
        int zero = 0;
        if (l->steer_count != -1)
            (void)setsockopt(l->fd[0], SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero, sizeof(zero));
        l->steer_off = true;
        l->steer_count = -1;
        while (l->count > l->active)
            close(l->fd[--l->count]);
        return -1;
    }
    memcpy(l->steer, steer, (size_t)n * sizeof(*steer));
    l->steer_count = n;
    return 1;
}

/* How many connections wait in the accept queues of fd[from..to-1] (TCP_INFO: a listening
 * socket's tcpi_unacked is its accept queue). */
static unsigned sup_listen_queued(const struct sup_listen *l, int from, int to)
{
    unsigned n = 0;

    for (int i = from; i < to; i++) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        if (getsockopt(l->fd[i], IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) n += ti.tcpi_unacked;
    }
    return n;
}

/* Steers new connections to the first want sockets only, then waits until the sockets from
 * want to active have empty accept queues (at least SUP_LISTEN_DRAIN_MIN_MS, for handshakes
 * under way; at most SUP_LISTEN_DRAIN_MAX_MS): their workers, not retired yet, accept what
 * reached them before. */
static void sup_listen_drain(struct sup_listen *l, int want)
{
    int first[CW_LIMIT_WORKERS];
    int64_t start = cw_clock_mono_ms();

    for (int i = 0; i < want; i++)
        first[i] = i;
    if (sup_listen_attach(l, first, want) < 0) return;
    for (;;) {
        unsigned queued = sup_listen_queued(l, want, l->active);
        int64_t waited = cw_clock_mono_ms() - start;
        if (queued == 0 && waited >= SUP_LISTEN_DRAIN_MIN_MS) return;
        if (waited >= SUP_LISTEN_DRAIN_MAX_MS) {
            cw_warn("supervisor: reload: %u connections still wait on the sockets of workers %d "
                    "to %d after %lld ms; they are closed",
                    queued, want, l->active - 1, (long long)waited);
            return;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void sup_listen_resize(struct sup_listen *l, int want)
{
    if (want < 1) want = 1;
    if (want > l->count) sup_listen_grow(l, want);
    if (want > l->count) want = l->count; /* the rest share */
    if (want < l->active && l->group && !l->steer_off) sup_listen_drain(l, want);
    /* The sockets past want stay open and in the group, steered around, so that the others
     * keep their places in it (closing one moves the group's last socket into its place)
     * and a later reload to more workers takes them back. */
    l->active = want;
    l->steer_count = -2; /* steer again */
    /* Without steering the kernel's hash may pick any socket of the group: none may be left
     * without a worker (what waits on them is reset when their retiring workers exit). */
    while (l->steer_off && l->count > l->active)
        close(l->fd[--l->count]);
}

unsigned sup_listen_sweep(struct sup_listen *l)
{
    unsigned n = 0;

    for (int i = l->active; i < l->count; i++) {
        int fd, k = 0;
        while (k++ < SUP_LISTEN_SWEEP_MAX &&
               (fd = accept4(l->fd[i], NULL, NULL, SOCK_CLOEXEC)) != -1) {
            close(fd);
            n++;
        }
    }
    return n;
}

int sup_listen_fd(const struct sup_listen *l, int index)
{
    return l->fd[index % l->active];
}

int sup_listen_steer(struct sup_listen *l, const bool *serving, int nworkers)
{
    int steer[CW_LIMIT_WORKERS], n = 0;

    if (!l->group || l->count < 2 || l->steer_off) return 0; /* nothing to choose from */
    for (int i = 0; i < nworkers && i < CW_LIMIT_WORKERS; i++)
        if (serving[i]) steer[n++] = i % l->active;
    if (n == 0) {
        /* No worker serves: every socket in use, where the connections wait for one. */
        for (int i = 0; i < l->active; i++)
            steer[i] = i;
        n = l->active;
    }
    return sup_listen_attach(l, steer, n);
}

void sup_listen_close_except(struct sup_listen *l, int keep)
{
    for (int i = 0; i < l->count; i++)
        if (l->fd[i] != keep) close(l->fd[i]);
    l->count = 0;
}

void sup_listen_replace(struct sup_listen *dst, struct sup_listen *src)
{
    sup_listen_close_except(dst, -1);
    *dst = *src;
    src->count = 0;
}
