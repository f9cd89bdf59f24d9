/* workers/config_file.h - reads the configuration file and hands its text to the pure parser.
 *
 * core/config parses text and never touches the disk (core/ is pure); this module is the one
 * place that opens a config file, for the main's first load and the supervisor's reload.
 * Owns nothing past a call: the file is closed and the buffer freed before it returns.
 * Thread-safe: no state. */
#ifndef CW_CONFIG_FILE_H
#define CW_CONFIG_FILE_H

#include "core/common.h" /* CW_MUST_CHECK, struct cw_err */

struct cw_config;

/* Reads path (at most CW_LIMIT_CONFIG_BYTES) and parses it with cw_config_parse(), which
 * names path in its messages, then checks that group comes with user and that the origins'
 * TLS files can be read. 0 and *out filled; -EINVAL with err saying
 * "file:line: setting: why"; -EFBIG when the file is larger than the limit; -errno of
 * open() or read() with err saying "path: cannot read: cause". *out is zeroed on every
 * failure. Caller owns *out; release with cw_config_free(). */
CW_MUST_CHECK int cw_config_file_load(const char *path, struct cw_config *out, struct cw_err *err);

/* The load's check that the files cfg names (origins' ca_file, tls_cert, tls_key) can be read
 * now, run again after the daemon dropped to its user: 0, or -errno with err saying
 * "file:line: origins[i].setting: "path": cannot read: cause". path: cfg's file. */
CW_MUST_CHECK int cw_config_file_check_files(const char *path, const struct cw_config *cfg,
                                             struct cw_err *err);

#endif /* CW_CONFIG_FILE_H */
