/* tests/lockhold/lock_hold.c - cw-test-lockhold PATH: a process that holds the L1's LMDB
 * write lock and stops, for the integration test that hits never wait on that lock.
 *
 * Opens the environment at PATH with the flags shm/store.c uses, begins a write txn (so it
 * holds LMDB's process-shared writer mutex), prints "held <pid>" on stdout and stops itself
 * with SIGSTOP, as a cachewarpd process stopped inside a write would be. After SIGCONT it
 * aborts the txn and exits 0; SIGKILL leaves the robust mutex to the next writer (LMDB
 * recovers it). Exits 1 with the cause on stderr when the open or the txn fails. */
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#define LOCK_HOLD_FLAGS                                                                            \
    (MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD | MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC)

int main(int argc, char **argv)
{
    MDB_env *env;
    MDB_txn *txn;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: cw-test-lockhold PATH\n");
        return 2;
    }
    rc = mdb_env_create(&env);
    if (rc == MDB_SUCCESS) rc = mdb_env_set_maxdbs(env, 8);
    if (rc == MDB_SUCCESS) rc = mdb_env_open(env, argv[1], LOCK_HOLD_FLAGS, 0640);
    if (rc != MDB_SUCCESS) {
        fprintf(stderr, "cw-test-lockhold: mdb_env_open %s: %s\n", argv[1], mdb_strerror(rc));
        return 1;
    }
    rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc != MDB_SUCCESS) {
        fprintf(stderr, "cw-test-lockhold: mdb_txn_begin: %s\n", mdb_strerror(rc));
        mdb_env_close(env);
        return 1;
    }
    printf("held %d\n", (int)getpid());
    fflush(stdout);
    if (raise(SIGSTOP) != 0) perror("cw-test-lockhold: raise(SIGSTOP)");
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return 0;
}
