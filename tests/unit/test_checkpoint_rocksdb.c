/* Checkpoint storage with real RocksDB checkpoints (kp_state_checkpoint): a database
 * checkpointed twice uploads its unchanged SST files once, and a database materialised from
 * the second checkpoint holds every key written before it; two databases whose SST files
 * share names (a fresh database after a rescale) never share a stored file. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_store.h"
#include "ckpt_fs.h"
#include "clock.h"
#include "state.h"

static char root[256];

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/kp-ckpt-rocks-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    kp_fs_rmtree(root);
}

TestSuite(ckpt_rocksdb, .init = setup, .fini = teardown);

static kp_state *open_db(const char *dir, int fresh)
{
    char err[512];
    kp_state_config cfg = {.dir = dir, .fresh = fresh, .memtable_bytes = 1 << 20};
    kp_state *st = kp_state_open(&cfg, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    return st;
}

static void put_keys(kp_state *db, int from, int to, const char *tag)
{
    char err[512];
    int cf = kp_state_cf(db, "data", err, sizeof err);
    cr_assert_geq(cf, 0, "%s", err);
    for (int i = from; i < to; i++) {
        char k[32], v[64];
        int kl = snprintf(k, sizeof k, "key-%08d", i);
        int vl = snprintf(v, sizeof v, "%s value of %d", tag, i);
        cr_assert_eq(kp_state_put(db, cf, k, (size_t)kl, v, (size_t)vl, err, sizeof err), 0);
    }
}

/* Checkpoint of db as checkpoint id of subtask sub, uploaded; returns the ack. */
static char *checkpoint(kp_ckpt_store *store, kp_state *db, int64_t id, int sub, int lo, int hi)
{
    char err[512], dir[400];
    snprintf(dir, sizeof dir, "%s/local-cp-%lld-%d", root, (long long)id, sub);
    cr_assert_eq(kp_state_checkpoint(db, dir, err, sizeof err), 0, "%s", err);
    kp_snapshot *s = kp_snapshot_new(id, 1, sub, 2);
    cr_assert_eq(kp_snapshot_dir(s, "win", "rocksdb", lo, hi, dir), 0);
    char *ack = kp_ckpt_store_upload(store, s, err, sizeof err);
    cr_assert_not_null(ack, "%s", err);
    kp_snapshot_free(s);
    return ack;
}

static json_int_t field(const char *ack, const char *key)
{
    json_t *j = json_loads(ack, 0, NULL);
    json_int_t v = json_integer_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

static int materialize(void *ctx, const kp_restore_entry *e)
{
    void **args = ctx;
    char err[512];
    cr_assert_eq(kp_restore_materialize(args[0], e, args[1], err, sizeof err), 0, "%s", err);
    return 1;
}

Test(ckpt_rocksdb, incremental_upload_and_restore)
{
    char err[512], dbdir[400], path[600], restored[400];
    snprintf(dbdir, sizeof dbdir, "%s/db", root);
    kp_ckpt_store *store = kp_ckpt_store_open(root, "job", err, sizeof err);
    kp_state *db = open_db(dbdir, 1);
    put_keys(db, 0, 20000, "first");
    char *a1 = checkpoint(store, db, 1, 0, 0, 64);
    cr_assert_eq(kp_ckpt_store_commit(store, 1, kp_wall_ms(), KP_CKPT_EXACTLY_ONCE,
                                      (const char *const *)&a1, 1, path, sizeof path, err,
                                      sizeof err),
                 0, "%s", err);
    put_keys(db, 20000, 40000, "second");
    char *a2 = checkpoint(store, db, 2, 0, 0, 64);
    cr_assert_eq(kp_ckpt_store_commit(store, 2, kp_wall_ms(), KP_CKPT_EXACTLY_ONCE,
                                      (const char *const *)&a2, 1, path, sizeof path, err,
                                      sizeof err),
                 0, "%s", err);
    json_int_t bytes2 = field(a2, "bytes"), inc2 = field(a2, "incremental_bytes");
    cr_assert_lt(inc2, bytes2, "the SST of checkpoint 1 is referenced (%lld of %lld copied)",
                 (long long)inc2, (long long)bytes2);
    put_keys(db, 40000, 41000, "after"); /* not in the checkpoint */
    kp_state_close(db);

    kp_restore *r = kp_restore_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    snprintf(restored, sizeof restored, "%s/restored", root);
    void *args[2] = {r, restored};
    cr_assert_eq(kp_restore_each(r, "win", "rocksdb", materialize, args), 1);
    kp_restore_free(r);
    db = open_db(restored, 0);
    int cf = kp_state_cf(db, "data", err, sizeof err);
    for (int i = 0; i < 41000; i++) {
        char k[32], want[64];
        int kl = snprintf(k, sizeof k, "key-%08d", i);
        snprintf(want, sizeof want, "%s value of %d", i < 20000 ? "first" : "second", i);
        void *v = NULL;
        size_t vl = 0;
        int rc = kp_state_get(db, cf, k, (size_t)kl, &v, &vl, err, sizeof err);
        if (i >= 40000) {
            cr_assert_eq(rc, 0, "key %d was written after the checkpoint", i);
            continue;
        }
        cr_assert_eq(rc, 1, "key %d: %d %s", i, rc, err);
        cr_assert_eq(vl, strlen(want));
        cr_assert_eq(memcmp(v, want, vl), 0);
        free(v);
    }
    kp_state_close(db);
    free(a1);
    free(a2);
    kp_ckpt_store_free(store);
}

Test(ckpt_rocksdb, same_file_names_of_two_databases_never_collide)
{
    char err[512], d1[400], d2[400];
    snprintf(d1, sizeof d1, "%s/db1", root);
    snprintf(d2, sizeof d2, "%s/db2", root);
    kp_ckpt_store *store = kp_ckpt_store_open(root, "job", err, sizeof err);
    kp_state *a = open_db(d1, 1), *b = open_db(d2, 1);
    put_keys(a, 0, 5000, "aaaaa");
    put_keys(b, 0, 5000, "bbbbb"); /* same sizes, same file numbers, other bytes */
    /* the same uid and key-group range: as a fresh database replacing an old one would */
    char *x = checkpoint(store, a, 1, 0, 0, 64), *y = checkpoint(store, b, 2, 0, 0, 64);
    cr_assert_eq(field(y, "incremental_bytes"), field(y, "bytes"), "nothing of db1 reused");
    kp_state_close(a);
    kp_state_close(b);
    free(x);
    free(y);
    kp_ckpt_store_free(store);
}
