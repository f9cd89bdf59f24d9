/* workers/control.c - see workers/control.h.
 *
 * A client moves through three states: READING (a request line is awaited; POLLIN), BUSY
 * (the handler has the line; nothing is read, so one client has one request in flight) and
 * WRITING (its reply drains; POLLOUT), then back to READING. Each poll round reads or writes
 * at most one buffer's worth per client. */
#include "workers/control.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/limits.h"
#include "core/log.h"
#include "workers/clock.h"

#define CONTROL_BACKLOG 16

enum control_state {
    CONTROL_FREE = 0,
    CONTROL_READING,
    CONTROL_BUSY,
    CONTROL_WRITING,
};

struct control_client {
    enum control_state state;
    int fd;
    uint64_t id; /* of the request in flight (BUSY, WRITING); unique over ctl's life */
    int64_t deadline_ms;
    bool close_after; /* WRITING: close once the reply is out (an error that ends the talk) */
    struct cw_control_peer peer;
    size_t in_len;
    size_t out_len, out_off;
    char *in;  /* CW_LIMIT_CTL_LINE_BYTES */
    char *out; /* CW_LIMIT_CTL_REPLY_BYTES + 1 */
};

struct cw_control {
    char *path;
    int listen_fd;
    dev_t dev; /* the socket file this open made, to unlink only that one */
    ino_t ino;
    cw_control_fn fn;
    void *cls;
    uint64_t next_id;
    struct control_client clients[CW_LIMIT_CTL_CLIENTS];
};

static int control_check_dir(const char *path);
static int control_check_existing(const char *path);
static int control_bind(struct cw_control *ctl, const char *group);
static void control_client_close(struct control_client *c);
static void control_accept(struct cw_control *ctl, int64_t now_ms);
static void control_read(struct cw_control *ctl, struct control_client *c, int64_t now_ms);
static void control_write(struct control_client *c, int64_t now_ms);
static void control_fail(struct control_client *c, const char *msg, int64_t now_ms);

/* The directory must not let others swap the file: refused when it is world-writable without
 * the sticky bit (as /tmp would be without it). */
static int control_check_dir(const char *path)
{
    char *copy = strdup(path);
    struct stat st;
    int rc = 0;

    if (copy == NULL) return -ENOMEM;
    const char *dir = dirname(copy);
    if (stat(dir, &st) == -1) {
        rc = -errno;
        cw_err("control: directory %s of %s: %s", dir, path, strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        rc = -ENOTDIR;
        cw_err("control: %s is not a directory", dir);
    } else if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
        rc = -EPERM;
        cw_err("control: directory %s is world-writable without the sticky bit; refusing to put "
               "the control socket there (choose another control.socket)",
               dir);
    }
    free(copy);
    return rc;
}

/* What is at path already: nothing (0), a stale socket (removed, 0), or a refusal. */
static int control_check_existing(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) == -1) {
        if (errno == ENOENT) return 0;
        cw_err("control: %s: %s", path, strerror(errno));
        return -errno;
    }
    if (S_ISLNK(st.st_mode)) {
        cw_err("control: %s is a symlink; refusing to replace it (remove it, or choose another "
               "control.socket)",
               path);
        return -ELOOP;
    }
    if (!S_ISSOCK(st.st_mode)) {
        cw_err("control: %s exists and is not a socket; refusing to replace it", path);
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) return -errno;
    memcpy(sa.sun_path, path, strlen(path) + 1); /* the config checked the length */
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (rc == 0) {
        cw_err("control: %s: another daemon is listening on it; stop it first, or choose "
               "another control.socket",
               path);
        return -EADDRINUSE;
    }
    /* ECONNREFUSED: nobody listens, a stale file of a daemon that died. The rename in
     * control_bind() replaces it atomically. */
    cw_info("control: replacing the stale socket %s", path);
    return 0;
}

/* Binds under "<dir>/.cw<pid>~" with mode 0660 (umask set for the bind, so the file never
 * has looser bits), gives it the group, listens, and renames it over path. */
static int control_bind(struct cw_control *ctl, const char *group)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char tmp[sizeof(sa.sun_path)];
    struct stat st;
    gid_t gid = (gid_t)-1;
    mode_t old_mask;
    int fd, rc, n;

    if (group != NULL) {
        struct group *gr = getgrnam(group);
        if (gr == NULL) {
            cw_err("control: group \"%s\" (control.group) does not exist", group);
            return -ENOENT;
        }
        gid = gr->gr_gid;
    }
    /* A short name beside the final one (rename() stays in the directory), so a path near
     * the unix socket limit still has room for it. */
    const char *slash = strrchr(ctl->path, '/');
    int dir_len = slash != NULL ? (int)(slash - ctl->path + 1) : 0;
    n = snprintf(tmp, sizeof(tmp), "%.*s.cw%d~", dir_len, ctl->path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        cw_err("control: %s: too long for a unix socket path with its temporary suffix", ctl->path);
        return -ENAMETOOLONG;
    }
    if (unlink(tmp) == -1 && errno != ENOENT) return -errno;
    memcpy(sa.sun_path, tmp, (size_t)n + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        rc = -errno;
        cw_err("control: socket: %s", strerror(errno));
        return rc;
    }
    old_mask = umask(0117);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old_mask);
    if (rc == -1) {
        rc = -errno;
        cw_err("control: bind %s: %s", tmp, strerror(errno));
        goto out_close_fd;
    }
    /* lchown: the name is ours, but never follow a link put in its place. Refused by a
     * sandbox (a seccomp filter without @chown: EPERM), the socket keeps the daemon's own
     * group: fewer can use it than configured, never more, so that is said and not fatal. */
    if (gid != (gid_t)-1 && lchown(tmp, (uid_t)-1, gid) == -1) {
        if (errno != EPERM) {
            rc = -errno;
            cw_err("control: set the group of %s: %s", tmp, strerror(errno));
            goto out_unlink;
        }
        cw_warn("control: cannot give %s the group control.group (gid %u): %s; it keeps the "
                "daemon's own group (allow chown in the service's SystemCallFilter=, or drop "
                "control.group)",
                ctl->path, (unsigned)gid, strerror(errno));
    }
    if (chmod(tmp, 0660) == -1) {
        rc = -errno;
        cw_err("control: set the mode of %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    if (listen(fd, CONTROL_BACKLOG) == -1) {
        rc = -errno;
        cw_err("control: listen %s: %s", tmp, strerror(errno));
        goto out_unlink;
    }
    if (lstat(tmp, &st) == -1 || rename(tmp, ctl->path) == -1) {
        rc = -errno;
        cw_err("control: rename %s to %s: %s", tmp, ctl->path, strerror(errno));
        goto out_unlink;
    }
    ctl->dev = st.st_dev;
    ctl->ino = st.st_ino;
    ctl->listen_fd = fd;
    return 0;

out_unlink:
    unlink(tmp);
out_close_fd:
    close(fd);
    return rc;
}

int cw_control_open(const char *path, const char *group, cw_control_fn fn, void *cls,
                    struct cw_control **out)
{
    struct cw_control *ctl;
    int rc;

    rc = control_check_dir(path);
    if (rc < 0) return rc;
    rc = control_check_existing(path);
    if (rc < 0) return rc;
    ctl = calloc(1, sizeof(*ctl));
    if (ctl == NULL) return -ENOMEM;
    ctl->path = strdup(path);
    ctl->listen_fd = -1;
    ctl->fn = fn;
    ctl->cls = cls;
    ctl->next_id = 1;
    for (size_t i = 0; i < CW_LIMIT_CTL_CLIENTS; i++)
        ctl->clients[i].fd = -1;
    if (ctl->path == NULL) {
        rc = -ENOMEM;
        goto out_free;
    }
    rc = control_bind(ctl, group);
    if (rc < 0) goto out_free;
    *out = ctl;
    return 0;

out_free:
    free(ctl->path);
    free(ctl);
    return rc;
}

static void control_client_close(struct control_client *c)
{
    if (c->fd != -1) close(c->fd);
    free(c->in);
    free(c->out);
    *c = (struct control_client){.state = CONTROL_FREE, .fd = -1};
}

void cw_control_forget(struct cw_control *ctl)
{
    if (ctl == NULL) return;
    for (size_t i = 0; i < CW_LIMIT_CTL_CLIENTS; i++)
        control_client_close(&ctl->clients[i]);
    if (ctl->listen_fd != -1) close(ctl->listen_fd);
    free(ctl->path);
    free(ctl);
}

void cw_control_close(struct cw_control *ctl)
{
    struct stat st;

    if (ctl == NULL) return;
    /* Only our own file: a newer daemon may have replaced it since. */
    if (lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino &&
        unlink(ctl->path) == -1)
        cw_warn("control: unlink %s: %s", ctl->path, strerror(errno));
    cw_control_forget(ctl);
}

const char *cw_control_path(const struct cw_control *ctl)
{
    return ctl->path;
}

size_t cw_control_pollfds(const struct cw_control *ctl, struct pollfd *pfd, size_t max)
{
    size_t n = 0;

    if (max == 0) return 0;
    pfd[n++] = (struct pollfd){.fd = ctl->listen_fd, .events = POLLIN};
    for (size_t i = 0; i < CW_LIMIT_CTL_CLIENTS && n < max; i++) {
        const struct control_client *c = &ctl->clients[i];
        short ev = c->state == CONTROL_READING ? POLLIN : c->state == CONTROL_WRITING ? POLLOUT : 0;
        /* A free slot polls fd -1, which poll() skips: the order stays fixed. */
        pfd[n++] = (struct pollfd){.fd = c->state == CONTROL_FREE ? -1 : c->fd, .events = ev};
    }
    return n;
}

int64_t cw_control_deadline(const struct cw_control *ctl)
{
    int64_t next = INT64_MAX;

    for (size_t i = 0; i < CW_LIMIT_CTL_CLIENTS; i++) {
        const struct control_client *c = &ctl->clients[i];
        if ((c->state == CONTROL_READING || c->state == CONTROL_WRITING) && c->deadline_ms < next)
            next = c->deadline_ms;
    }
    return next;
}

/* Accepts what waits (bounded by the backlog's worth per round); one client past the limit
 * is told so and closed. */
static void control_accept(struct cw_control *ctl, int64_t now_ms)
{
    for (int k = 0; k < CONTROL_BACKLOG; k++) {
        struct ucred cred;
        socklen_t cl = sizeof(cred);
        struct control_client *c = NULL;
        int fd = accept4(ctl->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                cw_warn_rl("control: accept: %s", strerror(errno));
            return;
        }
        for (size_t i = 0; i < CW_LIMIT_CTL_CLIENTS && c == NULL; i++)
            if (ctl->clients[i].state == CONTROL_FREE) c = &ctl->clients[i];
        if (c != NULL) {
            c->in = malloc(CW_LIMIT_CTL_LINE_BYTES);
            c->out = malloc(CW_LIMIT_CTL_REPLY_BYTES + 1);
        }
        if (c == NULL || c->in == NULL || c->out == NULL) {
            static const char busy[] =
                "{\"v\":1,\"ok\":false,\"error\":\"too many control clients; try again\"}\n";
            cw_warn_rl("control: %d clients connected already; refusing one", CW_LIMIT_CTL_CLIENTS);
            if (write(fd, busy, sizeof(busy) - 1) == -1) { /* best effort: it is non-blocking */
            }
            close(fd);
            if (c != NULL) control_client_close(c);
            continue;
        }
        c->fd = fd;
        c->state = CONTROL_READING;
        c->deadline_ms = now_ms + CW_LIMIT_CTL_IDLE_MS;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
            c->peer = (struct cw_control_peer){cred.pid, cred.uid, cred.gid};
    }
}

/* Ends the conversation with an error reply (the connection closes once it is sent). */
static void control_fail(struct control_client *c, const char *msg, int64_t now_ms)
{
    int n = snprintf(c->out, CW_LIMIT_CTL_REPLY_BYTES + 1,
                     "{\"v\":1,\"ok\":false,\"error\":\"%s\"}\n", msg);

    c->out_len = n > 0 ? (size_t)n : 0;
    c->out_off = 0;
    c->close_after = true;
    c->state = CONTROL_WRITING;
    c->deadline_ms = now_ms + CW_LIMIT_CTL_IDLE_MS;
}

/* One read; a complete line goes to the handler. */
static void control_read(struct cw_control *ctl, struct control_client *c, int64_t now_ms)
{
    ssize_t n = read(c->fd, c->in + c->in_len, CW_LIMIT_CTL_LINE_BYTES - c->in_len);
    char *nl;

    if (n == -1) {
        if (errno != EAGAIN && errno != EINTR) control_client_close(c);
        return;
    }
    if (n == 0) {
        control_client_close(c); /* the client is done */
        return;
    }
    nl = memchr(c->in + c->in_len, '\n', (size_t)n);
    c->in_len += (size_t)n;
    if (nl == NULL) {
        if (c->in_len == CW_LIMIT_CTL_LINE_BYTES) {
            cw_warn_rl("control: a request of more than %d bytes from pid %d; dropping the client",
                       CW_LIMIT_CTL_LINE_BYTES, (int)c->peer.pid);
            control_fail(c, "request line too long", now_ms);
        }
        return;
    }
    /* Bytes after the newline would be a second request sent before the first reply: the
     * protocol is one request at a time, so they are a client error. */
    if ((size_t)(nl - c->in) + 1 != c->in_len) {
        control_fail(c, "one request at a time: wait for the reply before sending the next",
                     now_ms);
        return;
    }
    c->id = ctl->next_id++;
    c->state = CONTROL_BUSY;
    c->in_len = 0;
    ctl->fn(ctl->cls, c->id, c->in, (size_t)(nl - c->in), &c->peer);
}

/* One write of what is left of the reply. */
static void control_write(struct control_client *c, int64_t now_ms)
{
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

    if (n == -1) {
        if (errno != EAGAIN && errno != EINTR) control_client_close(c);
        return;
    }
    c->out_off += (size_t)n;
    if (c->out_off < c->out_len) return;
    if (c->close_after) {
        control_client_close(c);
        return;
    }
    c->state = CONTROL_READING;
    c->deadline_ms = now_ms + CW_LIMIT_CTL_IDLE_MS;
}

void cw_control_process(struct cw_control *ctl, const struct pollfd *pfd, size_t n, int64_t now_ms)
{
    for (size_t i = 1; i < n && i - 1 < CW_LIMIT_CTL_CLIENTS; i++) {
        struct control_client *c = &ctl->clients[i - 1];
        short re = pfd[i].revents;
        if (c->state == CONTROL_FREE || pfd[i].fd != c->fd || re == 0) continue;
        if (c->state == CONTROL_READING && (re & (POLLIN | POLLHUP | POLLERR))) {
            control_read(ctl, c, now_ms);
        } else if (c->state == CONTROL_WRITING && (re & POLLOUT)) {
            control_write(c, now_ms);
        } else if (re & (POLLHUP | POLLERR)) {
            control_client_close(c); /* gone while its request runs: the reply is dropped */
        }
    }
    for (size_t i = 0; i < CW_LIMIT_CTL_CLIENTS; i++) {
        struct control_client *c = &ctl->clients[i];
        if ((c->state == CONTROL_READING || c->state == CONTROL_WRITING) &&
            now_ms >= c->deadline_ms) {
            cw_info("control: client pid %d idle for %d ms; dropped", (int)c->peer.pid,
                    CW_LIMIT_CTL_IDLE_MS);
            control_client_close(c);
        }
    }
    if (n > 0 && (pfd[0].revents & POLLIN)) control_accept(ctl, now_ms);
}

int cw_control_reply(struct cw_control *ctl, uint64_t id, const char *text, size_t len)
{
    struct control_client *c = NULL;

    for (size_t i = 0; i < CW_LIMIT_CTL_CLIENTS && c == NULL; i++)
        if (ctl->clients[i].state == CONTROL_BUSY && ctl->clients[i].id == id) c = &ctl->clients[i];
    if (c == NULL) return -ENOENT;
    int64_t now = cw_clock_mono_ms();
    if (len + 1 > CW_LIMIT_CTL_REPLY_BYTES) {
        control_fail(c, "reply too large", now);
        return -EMSGSIZE;
    }
    memcpy(c->out, text, len);
    c->out[len] = '\n';
    c->out_len = len + 1;
    c->out_off = 0;
    c->close_after = false;
    c->state = CONTROL_WRITING;
    c->deadline_ms = now + CW_LIMIT_CTL_IDLE_MS;
    control_write(c, now);
    return 0;
}
