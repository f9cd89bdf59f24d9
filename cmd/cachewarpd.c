/* cmd/cachewarpd.c - the daemon's command line: reads the arguments and the config, answers
 * -t, --version and --help itself, and hands everything else to the supervisor
 * (workers/supervisor.h). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "core/common.h" /* CW_VERSION */
#include "core/config.h"
#include "core/log.h"
#include "workers/config_file.h"
#include "workers/supervisor.h"

#define CW_DEFAULT_CONFIG "/etc/cachewarp/cachewarp.conf"

static void cachewarpd_usage(FILE *out);

static void cachewarpd_usage(FILE *out)
{
    fprintf(out, "usage: cachewarpd [-c FILE] [-t] [--version] [--help]\n"
                 "  -c, --config FILE  configuration file (default " CW_DEFAULT_CONFIG ")\n"
                 "  -t, --test         check the configuration and exit 0 (ok) or 1\n"
                 "  -v, --version      print the version and exit\n"
                 "  -h, --help         print this help and exit\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = CW_DEFAULT_CONFIG;
    struct cw_config cfg = {0};
    struct cw_err err = {{0}};
    bool test_only = false;
    int opt;

    while ((opt = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("cachewarpd %s\n", CW_VERSION);
            return 0;
        case 'h':
            cachewarpd_usage(stdout);
            return 0;
        default:
            cachewarpd_usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        cachewarpd_usage(stderr);
        return 1;
    }
    if (cw_config_file_load(path, &cfg, &err) < 0) {
        fprintf(stderr, "cachewarpd: %s\n", err.msg);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "cachewarpd: configuration %s is ok\n", path);
        cw_config_free(&cfg);
        return 0;
    }
    cw_log_init(STDERR_FILENO, cfg.log_level, true);
    return cw_supervisor_run(&cfg, CW_VERSION);
}
