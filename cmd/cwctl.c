/* cmd/cwctl.c - cwctl's command line: reads the global options and the command, and hands
 * each command to workers/ctlclient.h (or workers/ctltop.h for top). The exit statuses are an
 * interface: 0 done, 1 the daemon refused or failed (check: the config is invalid), 2 usage
 * error, 3 the daemon cannot be reached. */
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h" /* CW_VERSION */
#include "workers/ctlclient.h"
#include "workers/ctltop.h"

static void cwctl_usage(FILE *out);
static int cwctl_purge(const char *path, int argc, char **argv, bool json);

static void cwctl_usage(FILE *out)
{
    fprintf(out,
            "usage: cwctl [-s SOCKET | -c FILE] [--json] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  status                   version, uptime, children, L1 and L2 state\n"
            "  stats                    requests, hit ratio, origin errors, evictions\n"
            "  reload                   re-read the config; an invalid one is refused and the\n"
            "                           running one stays (the reason is printed)\n"
            "  purge URL [--soft]       purge one URL (http://host[:port]/path?query)\n"
            "  purge --prefix P [--soft] purge every URL that starts with P\n"
            "  purge --tag T [--soft]   purge every entry tagged T (Surrogate-Key)\n"
            "                           --soft marks stale instead of deleting\n"
            "  check [-c FILE]          validate a config without a daemon (like nginx -t)\n"
            "  top [-n COUNT]           live view, refreshed every second; q or Ctrl-C quits\n"
            "\n"
            "options:\n"
            "  -s, --socket SOCKET      the control socket (default: control.socket of the\n"
            "                           config, else " CW_CTLCLIENT_DEFAULT_SOCKET ")\n"
            "  -c, --config FILE        the config to read control.socket from, or to check\n"
            "                           (default " CW_CTLCLIENT_DEFAULT_CONFIG ")\n"
            "  -j, --json               print the daemon's JSON reply (status, stats, reload,\n"
            "                           purge)\n"
            "  -v, --version            print the version and exit\n"
            "  -h, --help               print this help and exit\n"
            "\n"
            "exit status:\n"
            "  0  done\n"
            "  1  the daemon refused or failed the action (its reason is printed);\n"
            "     check: the configuration is invalid\n"
            "  2  usage error: unknown command or flag, missing or invalid argument (URL)\n"
            "  3  the daemon cannot be reached: not running, no socket, or permission denied\n");
}

/* purge URL [--soft] | purge --prefix P [--soft] | purge --tag T [--soft] */
static int cwctl_purge(const char *path, int argc, char **argv, bool json)
{
    const char *what = NULL, *arg = NULL;
    bool soft = false;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--soft") == 0) {
            soft = true;
        } else if (strcmp(a, "--prefix") == 0 || strcmp(a, "--tag") == 0) {
            if (what != NULL || i + 1 >= argc) goto out_usage;
            what = a + 2;
            arg = argv[++i];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cwctl: purge: unknown flag %s\n", a);
            goto out_usage;
        } else {
            if (what != NULL) goto out_usage;
            what = "url";
            arg = a;
        }
    }
    if (what == NULL) goto out_usage;
    return cw_ctlclient_purge(path, what, arg, soft, json);

out_usage:
    fprintf(stderr, "usage: cwctl purge URL [--soft] | purge --prefix P [--soft] | "
                    "purge --tag T [--soft]\n");
    return CW_CTLCLIENT_USAGE;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'}, {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},         {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *sock = NULL, *config = NULL, *cmd;
    char path[PATH_MAX];
    bool json = false;
    int opt, rc;

    /* '+': options stop at the command, whose own flags (--soft, -n) it reads itself. */
    while ((opt = getopt_long(argc, argv, "+s:c:jvh", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            sock = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'v':
            printf("cwctl %s\n", CW_VERSION);
            return CW_CTLCLIENT_OK;
        case 'h':
            cwctl_usage(stdout);
            return CW_CTLCLIENT_OK;
        default:
            cwctl_usage(stderr);
            return CW_CTLCLIENT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "cwctl: no command given\n");
        cwctl_usage(stderr);
        return CW_CTLCLIENT_USAGE;
    }
    cmd = argv[optind++];
    if (strcmp(cmd, "check") == 0) {
        /* check -c FILE: -c may come after the command too. */
        if (optind + 2 == argc && strcmp(argv[optind], "-c") == 0) {
            config = argv[optind + 1];
        } else if (optind != argc) {
            fprintf(stderr, "usage: cwctl check [-c FILE]\n");
            return CW_CTLCLIENT_USAGE;
        }
        return cw_ctlclient_check(config);
    }
    if (strcmp(cmd, "status") != 0 && strcmp(cmd, "stats") != 0 && strcmp(cmd, "reload") != 0 &&
        strcmp(cmd, "purge") != 0 && strcmp(cmd, "top") != 0) {
        fprintf(stderr, "cwctl: unknown command \"%s\"; see cwctl --help\n", cmd);
        return CW_CTLCLIENT_USAGE;
    }
    if (strcmp(cmd, "purge") != 0 && strcmp(cmd, "top") != 0 && optind != argc) {
        fprintf(stderr, "cwctl: %s takes no arguments; see cwctl --help\n", cmd);
        return CW_CTLCLIENT_USAGE;
    }
    rc = cw_ctlclient_socket_path(sock, config, path, sizeof(path));
    if (rc != CW_CTLCLIENT_OK) return rc;
    if (strcmp(cmd, "status") == 0) return cw_ctlclient_status(path, json);
    if (strcmp(cmd, "stats") == 0) return cw_ctlclient_stats(path, json);
    if (strcmp(cmd, "reload") == 0) return cw_ctlclient_reload(path, json);
    if (strcmp(cmd, "purge") == 0) return cwctl_purge(path, argc - optind, argv + optind, json);
    /* top [-n COUNT] */
    int count = 0;
    if (optind + 2 == argc && strcmp(argv[optind], "-n") == 0) {
        char *end;
        long v = strtol(argv[optind + 1], &end, 10);
        if (*end != '\0' || v < 1 || v > 1000000) {
            fprintf(stderr, "cwctl: top: -n wants a count from 1 to 1000000\n");
            return CW_CTLCLIENT_USAGE;
        }
        count = (int)v;
    } else if (optind != argc) {
        fprintf(stderr, "usage: cwctl top [-n COUNT]\n");
        return CW_CTLCLIENT_USAGE;
    }
    return cw_ctltop_run(path, count, 1000);
}
