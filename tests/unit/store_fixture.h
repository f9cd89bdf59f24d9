/* tests/unit/store_fixture.h - the temp directory and key helpers the store suites share.
 *
 * Header only, for tests: each suite gets its own copies of these static functions. A
 * suite calls store_fixture_setup(prefix, sub) from its Check setup and
 * store_fixture_teardown() from its teardown; db_path is then "<tmp>/<sub>l1.mdb". */
#ifndef CW_STORE_FIXTURE_H
#define CW_STORE_FIXTURE_H

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/key.h"
#include "shm/store.h"

static char tmp_dir[64];
static char db_path[128];

static int store_fixture_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Makes a fresh /tmp/<prefix>-XXXXXX and points db_path at <it>/<sub>l1.mdb (sub may name
 * missing parent directories, which cw_store_open() creates). */
static inline void store_fixture_setup(const char *prefix, const char *sub)
{
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/%s-XXXXXX", prefix);
    ck_assert_ptr_nonnull(mkdtemp(tmp_dir));
    snprintf(db_path, sizeof(db_path), "%s/%sl1.mdb", tmp_dir, sub);
}

static inline void store_fixture_teardown(void)
{
    nftw(tmp_dir, store_fixture_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The store's key for a full key string. */
static inline void key_of(const struct cw_store *st, const char *full, struct cw_key *k)
{
    cw_key_hash(cw_store_secret(st), full, strlen(full), k);
}

#endif /* CW_STORE_FIXTURE_H */
