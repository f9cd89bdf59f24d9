/* workers/child.c - see workers/child.h. */
#include "workers/child.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/log.h"
#include "shm/seg.h"

void cw_child_setup(const char *comm, struct cw_seg *seg, int slot)
{
    sigset_t set;

    prctl(PR_SET_NAME, comm, 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    atomic_store(&seg->slots[slot].pid, (int32_t)getpid());
}

void cw_child_mhd_log(void *cls, const char *fmt, va_list ap)
{
    const char *module = cls;
    char buf[512];
    size_t n;

    vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    /* A worker's heartbeat probe is a unix socket: libmicrohttpd's TCP options fail on it at
     * every answer, and the push it then reports as delayed concerns nobody. */
    if (strncmp(buf, "Setting TCP_", 12) == 0 || strncmp(buf, "Failed to push the data", 23) == 0)
        return;
    /* The rest is per connection (a client gone mid-answer, say): rate-limited. */
    cw_info_rl("%s: mhd: %s", module, buf);
}
