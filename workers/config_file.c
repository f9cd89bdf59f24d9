/* workers/config_file.c - see workers/config_file.h. */
#include "workers/config_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"

/* The files the origins' TLS settings name must be readable now: a worker reads them at its
 * first https fetch, as the same user, and a typo would otherwise surface as a 502 per request.
 * 0, or -errno with err saying "file:line: origins[i].setting: "path": cannot read: cause". */
static int config_file_check_tls(const char *path, const struct cw_config *cfg, struct cw_err *err)
{
    for (size_t i = 0; i < cfg->origin_count; i++) {
        const struct cw_config_origin *o = &cfg->origins[i];
        const struct {
            const char *name, *file;
            int line;
        } f[] = {{"ca_file", o->ca_file, o->ca_file_line},
                 {"tls_cert", o->tls_cert, o->tls_cert_line},
                 {"tls_key", o->tls_key, o->tls_key_line}};
        for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
            if (f[k].file == NULL) continue;
            int fd = open(f[k].file, O_RDONLY | O_CLOEXEC);
            if (fd != -1) {
                close(fd);
                continue;
            }
            int rc = -errno;
            cw_err_set(err, "%s:%d: origins[%zu].%s: \"%s\": cannot read: %s", path, f[k].line, i,
                       f[k].name, f[k].file, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* group replaces the user's group: 0, or -EINVAL with err saying why. The accounts are
 * looked up when a start as root drops to them (workers/supervisor.c), not here: a config is
 * often checked on a machine that is not the one it runs on. */
static int config_file_check_user(const char *path, const struct cw_config *cfg, struct cw_err *err)
{
    if (cfg->group != NULL && cfg->user == NULL) {
        cw_err_set(err, "%s:%d: group: needs user (the account whose group it replaces)", path,
                   cfg->group_line);
        return -EINVAL;
    }
    return 0;
}

int cw_config_file_check_files(const char *path, const struct cw_config *cfg, struct cw_err *err)
{
    return config_file_check_tls(path, cfg, err);
}

int cw_config_file_load(const char *path, struct cw_config *out, struct cw_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    ssize_t n;
    int fd, rc;

    memset(out, 0, sizeof(*out));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) goto out_errno;
    buf = malloc(CW_LIMIT_CONFIG_BYTES + 1);
    if (buf == NULL) {
        errno = ENOMEM;
        goto out_errno;
    }
    /* One byte past the limit tells a file of exactly the limit from a larger one. */
    while (len < CW_LIMIT_CONFIG_BYTES + 1) {
        n = read(fd, buf + len, CW_LIMIT_CONFIG_BYTES + 1 - len);
        if (n == -1 && errno == EINTR) continue;
        if (n == -1) goto out_errno;
        if (n == 0) break;
        len += (size_t)n;
    }
    if (len > CW_LIMIT_CONFIG_BYTES) {
        cw_err_set(err, "%s: larger than %d bytes", path, CW_LIMIT_CONFIG_BYTES);
        rc = -EFBIG;
        goto out_close;
    }
    rc = cw_config_parse(buf, len, path, out, err);
    if (rc == 0 && ((rc = config_file_check_user(path, out, err)) < 0 ||
                    (rc = config_file_check_tls(path, out, err)) < 0)) {
        cw_config_free(out);
        memset(out, 0, sizeof(*out));
    }
    goto out_close;
out_errno:
    rc = errno ? -errno : -EIO;
    cw_err_set(err, "%s: cannot read: %s", path, strerror(-rc));
out_close:
    free(buf);
    if (fd != -1) close(fd);
    return rc;
}
