/* workers/config_file.c - see workers/config_file.h. */
#include "workers/config_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"

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
    goto out_close;
out_errno:
    rc = errno ? -errno : -EIO;
    cw_err_set(err, "%s: cannot read: %s", path, strerror(-rc));
out_close:
    free(buf);
    if (fd != -1) close(fd);
    return rc;
}
