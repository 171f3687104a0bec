/* Checkpoint storage (runtime/checkpoint_store.h): a snapshot uploaded, committed and restored
 * gives back every blob and directory byte for byte; SST files are shared between checkpoints
 * and between nothing else; retention, garbage collection, corruption detection, savepoints. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "checkpoint_store.h"
#include "ckpt_fs.h"
#include "clock.h"
#include "../support/dir_entries.h"

static char root[256];

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/kp-ckpt-store-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    kp_fs_rmtree(root);
}

TestSuite(checkpoint_store, .init = setup, .fini = teardown);

static void put(const char *dir, const char *name, const char *text, size_t repeat)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    for (size_t i = 0; i < repeat; i++)
        fputs(text, f);
    fclose(f);
}

/* A fake RocksDB checkpoint directory: two SST files and the private files. */
static void make_db_dir(const char *dir, const char *tag, int with_second)
{
    char err[256];
    cr_assert_eq(kp_fs_mkdirs(dir, err, sizeof err), 0, "%s", err);
    put(dir, "000012.sst", tag, 1000);
    if (with_second)
        put(dir, "000013.sst", "second sst file ", 300);
    put(dir, "MANIFEST-000005", tag, 3);
    put(dir, "CURRENT", "MANIFEST-000005\n", 1);
    put(dir, "OPTIONS-000007", "[Version]\n", 1);
}

static char *read_all(const char *path, size_t *len)
{
    char *data, err[256];
    cr_assert_eq(kp_fs_read_file(path, &data, len, err, sizeof err), 0, "%s", err);
    return data;
}

/* Every file of a equals the file of the same name in b, and they have as many files. */
static void assert_same_dir(const char *a, const char *b)
{
    DIR *d = opendir(a);
    cr_assert_not_null(d, "%s", a);
    struct dirent *de;
    int na = 0, nb = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char pa[1024], pb[1024];
        size_t la, lb;
        snprintf(pa, sizeof pa, "%s/%s", a, de->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, de->d_name);
        char *x = read_all(pa, &la), *y = read_all(pb, &lb);
        cr_assert_eq(la, lb, "%s", de->d_name);
        cr_assert_eq(memcmp(x, y, la), 0, "%s", de->d_name);
        free(x);
        free(y);
        na++;
    }
    closedir(d);
    d = opendir(b);
    while ((de = readdir(d)))
        nb += de->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(na, nb);
}

/* Snapshot of subtask `sub` of task 1 for checkpoint id: a small blob, a big one, a db dir
 * (copied from `db`, which the snapshot must not consume). Returns the ack. */
static char *snap_upload(kp_ckpt_store *st, int64_t id, int sub, const char *db, int kg_lo,
                         int kg_hi)
{
    char err[512], local[512];
    kp_snapshot *s = kp_snapshot_new(id, 1, sub, 2);
    cr_assert_not_null(s);
    char small[64];
    snprintf(small, sizeof small, "offsets of subtask %d at %lld", sub, (long long)id);
    cr_assert_eq(kp_snapshot_blob(s, "src", "offsets", -1, -1, small, strlen(small)), 0);
    static char big[KP_CKPT_INLINE_MAX + 100];
    memset(big, 'b' + sub, sizeof big);
    cr_assert_eq(kp_snapshot_blob(s, "win", "index", kg_lo, kg_hi, big, sizeof big), 0);
    snprintf(local, sizeof local, "%s/local-%lld-%d", root, (long long)id, sub);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp -a %s %s", db, local);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(kp_snapshot_dir(s, "win", "rocksdb", kg_lo, kg_hi, local), 0);
    kp_snapshot_set_times(s, 1.5, 2.5);
    char *ack = kp_ckpt_store_upload(st, s, err, sizeof err);
    cr_assert_not_null(ack, "%s", err);
    kp_snapshot_free(s);
    cr_assert_neq(access(local, F_OK), 0, "the snapshot removes its directory");
    return ack;
}

static json_int_t ack_int(const char *ack, const char *key)
{
    json_t *j = json_loads(ack, 0, NULL);
    json_int_t v = json_integer_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

static void commit(kp_ckpt_store *st, int64_t id, char **acks, int n, char *path)
{
    char err[512];
    cr_assert_eq(kp_ckpt_store_commit(st, id, kp_wall_ms(), KP_CKPT_EXACTLY_ONCE,
                                      (const char *const *)acks, n, path, 512, err, sizeof err),
                 0, "%s", err);
}

struct seen {
    int n;
    const kp_restore *r;
    const char *root;
};

static int check_entry(void *ctx, const kp_restore_entry *e)
{
    struct seen *s = ctx;
    s->n++;
    if (strcmp(e->name, "offsets") == 0) {
        char want[64];
        snprintf(want, sizeof want, "offsets of subtask %d at %lld", e->subtask,
                 (long long)kp_restore_id(s->r));
        cr_assert_eq(e->len, strlen(want));
        cr_assert_eq(memcmp(e->data, want, e->len), 0);
        cr_assert_eq(e->kg_lo, -1);
    } else if (strcmp(e->name, "index") == 0) {
        cr_assert_eq(e->len, KP_CKPT_INLINE_MAX + 100);
        cr_assert_eq(((const char *)e->data)[0], 'b' + e->subtask);
        cr_assert_eq(((const char *)e->data)[e->len - 1], 'b' + e->subtask);
    } else {
        char local[512], err[512], db[512];
        cr_assert_str_eq(e->name, "rocksdb");
        cr_assert(e->is_dir);
        snprintf(local, sizeof local, "%s/restored-%d", s->root, e->subtask);
        cr_assert_eq(kp_restore_materialize(s->r, e, local, err, sizeof err), 0, "%s", err);
        snprintf(db, sizeof db, "%s/db%d", s->root, e->subtask);
        assert_same_dir(db, local);
    }
    cr_assert_eq(e->parallelism, 2);
    return 0;
}

Test(checkpoint_store, snapshot_upload_commit_restore)
{
    char err[512], db0[512], db1[512], path[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    snprintf(db0, sizeof db0, "%s/db0", root);
    snprintf(db1, sizeof db1, "%s/db1", root);
    make_db_dir(db0, "subtask zero ", 1);
    make_db_dir(db1, "subtask one! ", 0); /* same 000012.sst name and size, other bytes */
    char *acks[2] = {snap_upload(st, 1, 0, db0, 0, 64), snap_upload(st, 1, 1, db1, 64, 128)};
    commit(st, 1, acks, 2, path);

    kp_restore *r = kp_restore_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert_eq(kp_restore_id(r), 1);
    struct seen s = {0, r, root};
    cr_assert_eq(kp_restore_each(r, "src", NULL, check_entry, &s), 0);
    cr_assert_eq(s.n, 2);
    cr_assert_eq(kp_restore_each(r, "win", NULL, check_entry, &s), 0);
    cr_assert_eq(s.n, 6);
    s.n = 0;
    cr_assert_eq(kp_restore_each(r, "win", "rocksdb", check_entry, &s), 0);
    cr_assert_eq(s.n, 2);
    const char *uids[4];
    cr_assert_eq(kp_restore_uids(r, uids, 4), 2);
    cr_assert_str_eq(uids[0], "src");
    cr_assert_str_eq(uids[1], "win");
    kp_restore_free(r);

    /* the job directory and the chk directory open the same checkpoint */
    char jd[512];
    snprintf(jd, sizeof jd, "%s/job", root);
    r = kp_restore_open(jd, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert_eq(kp_restore_id(r), 1);
    kp_restore_free(r);
    free(acks[0]);
    free(acks[1]);
    kp_ckpt_store_free(st);
}

Test(checkpoint_store, incremental_shares_sst_files)
{
    char err[512], db0[512], path[512], shared[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    snprintf(db0, sizeof db0, "%s/db0", root);
    snprintf(shared, sizeof shared, "%s/job/shared", root);
    make_db_dir(db0, "subtask zero ", 0);
    char *a1 = snap_upload(st, 1, 0, db0, 0, 64);
    commit(st, 1, &a1, 1, path);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 2); /* 000012.sst + its .sha256 */
    json_int_t full1 = ack_int(a1, "incremental_bytes");

    put(db0, "000013.sst", "second sst file ", 300); /* a new file; 000012 unchanged */
    char *a2 = snap_upload(st, 2, 0, db0, 0, 64);
    commit(st, 2, &a2, 1, path);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 4);
    json_int_t inc2 = ack_int(a2, "incremental_bytes"), bytes2 = ack_int(a2, "bytes");
    cr_assert_lt(inc2, full1, "000012.sst (13000 bytes) is referenced, not copied");
    cr_assert_eq(bytes2 - inc2, 13000);

    /* retain 1: chk-1 goes, 000012.sst stays (chk-2 names it) */
    cr_assert_eq(kp_ckpt_store_gc(st, 1, INT64_MAX, kp_wall_ms() + 10000, err, sizeof err), 0, "%s",
                 err);
    char chk1[512];
    snprintf(chk1, sizeof chk1, "%s/job/chk-1", root);
    cr_assert_neq(access(chk1, F_OK), 0);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 4);

    /* 000012.sst compacted away: after chk-3 and gc it is deleted */
    char f12[600];
    snprintf(f12, sizeof f12, "%s/000012.sst", db0);
    unlink(f12);
    char *a3 = snap_upload(st, 3, 0, db0, 0, 64);
    commit(st, 3, &a3, 1, path);
    cr_assert_eq(kp_ckpt_store_gc(st, 1, INT64_MAX, kp_wall_ms() + 10000, err, sizeof err), 0);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 2);
    kp_restore *r = kp_restore_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    struct seen s = {0, r, root};
    cr_assert_eq(kp_restore_each(r, "win", "rocksdb", check_entry, &s), 0);
    kp_restore_free(r);
    free(a1);
    free(a2);
    free(a3);
    kp_ckpt_store_free(st);
}

Test(checkpoint_store, gc_protects_in_progress_and_removes_failed)
{
    char err[512], db0[512], path[512], shared[512], dir[600];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    snprintf(db0, sizeof db0, "%s/db0", root);
    snprintf(shared, sizeof shared, "%s/job/shared", root);
    make_db_dir(db0, "subtask zero ", 0);
    char *a1 = snap_upload(st, 1, 0, db0, 0, 64);
    commit(st, 1, &a1, 1, path);
    put(db0, "000013.sst", "second sst file ", 300);
    char *a2 = snap_upload(st, 2, 0, db0, 0, 64); /* uploaded, never committed (failed) */
    kp_time trigger2 = kp_wall_ms();
    /* while 2 is pending, its files and directory stay */
    cr_assert_eq(kp_ckpt_store_gc(st, 1, 2, trigger2 - 5000, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 4);
    snprintf(dir, sizeof dir, "%s/job/chk-2", root);
    cr_assert_eq(access(dir, F_OK), 0);
    /* 2 failed (nothing pending): its directory and its new shared file go, chk-1 stays */
    cr_assert_eq(kp_ckpt_store_gc(st, 1, INT64_MAX, kp_wall_ms() + 10000, err, sizeof err), 0);
    cr_assert_neq(access(dir, F_OK), 0);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 2);
    cr_assert_eq(kp_ckpt_store_max_id(root, "job"), 1);
    free(a1);
    free(a2);
    kp_ckpt_store_free(st);
}

/* Flips one byte of a file. */
static void corrupt(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f, "%s", path);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 1, f);
    fclose(f);
}

Test(checkpoint_store, latest_skips_corrupted_and_truncated)
{
    char err[512], db0[512], path[512], latest[512], p1[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    snprintf(db0, sizeof db0, "%s/db0", root);
    make_db_dir(db0, "subtask zero ", 0);
    for (int id = 1; id <= 3; id++) {
        char *a = snap_upload(st, id, 0, db0, 0, 64);
        commit(st, id, &a, 1, id == 1 ? p1 : path);
        free(a);
    }
    cr_assert_eq(kp_ckpt_store_latest(root, "job", latest, sizeof latest, err, sizeof err), 1);
    cr_assert_str_eq(latest, path);
    /* chk-3: a private file corrupted → chk-2 */
    char manifest[600];
    snprintf(manifest, sizeof manifest, "%s/job/chk-3/1-0/2.win.rocksdb/MANIFEST-000005", root);
    corrupt(manifest, 5);
    cr_assert_eq(kp_ckpt_store_latest(root, "job", latest, sizeof latest, err, sizeof err), 1);
    cr_assert(strstr(latest, "chk-2/_metadata"), "%s", latest);
    /* chk-2: metadata truncated → chk-1 */
    cr_assert_eq(truncate(latest, 10), 0);
    cr_assert_eq(kp_ckpt_store_latest(root, "job", latest, sizeof latest, err, sizeof err), 1);
    cr_assert_str_eq(latest, p1);
    /* the restore reader refuses a corrupted metadata file */
    char m2[600];
    snprintf(m2, sizeof m2, "%s/job/chk-2/_metadata", root);
    cr_assert_null(kp_restore_open(m2, err, sizeof err));
    cr_assert(strstr(err, "checksum"), "%s", err);
    /* chk-1: a shared file corrupted → none */
    char shared[512];
    snprintf(shared, sizeof shared, "%s/job/shared", root);
    DIR *d = opendir(shared);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strstr(de->d_name, ".sst") && !strstr(de->d_name, ".sha256")) {
            char f[900];
            snprintf(f, sizeof f, "%s/%s", shared, de->d_name);
            corrupt(f, 100);
        }
    }
    closedir(d);
    cr_assert_eq(kp_ckpt_store_latest(root, "job", latest, sizeof latest, err, sizeof err), 0);
    kp_ckpt_store_free(st);
}

Test(checkpoint_store, commit_refuses_missing_files_and_bad_acks)
{
    char err[512], db0[512], path[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    snprintf(db0, sizeof db0, "%s/db0", root);
    make_db_dir(db0, "subtask zero ", 0);
    char *a = snap_upload(st, 1, 0, db0, 0, 64);
    const char *bad[] = {"{\"checkpoint\":2}"};
    cr_assert_eq(
        kp_ckpt_store_commit(st, 1, 0, KP_CKPT_EXACTLY_ONCE, bad, 1, NULL, 0, err, sizeof err), -1);
    const char *notjson[] = {"{"};
    cr_assert_eq(
        kp_ckpt_store_commit(st, 1, 0, KP_CKPT_EXACTLY_ONCE, notjson, 1, NULL, 0, err, sizeof err),
        -1);
    char cur[600];
    snprintf(cur, sizeof cur, "%s/job/chk-1/1-0/2.win.rocksdb/CURRENT", root);
    unlink(cur);
    cr_assert_eq(kp_ckpt_store_commit(st, 1, 0, KP_CKPT_EXACTLY_ONCE, (const char *const *)&a, 1,
                                      path, sizeof path, err, sizeof err),
                 -1);
    cr_assert(strstr(err, "CURRENT"), "%s", err);
    snprintf(path, sizeof path, "%s/job/chk-1/_metadata", root);
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(kp_ckpt_store_latest(root, "job", path, sizeof path, err, sizeof err), 0);
    free(a);
    kp_ckpt_store_free(st);
}

Test(checkpoint_store, savepoint_is_self_contained_and_movable)
{
    char err[512], db0[512], db1[512], path[512], sp[512], moved[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    snprintf(db0, sizeof db0, "%s/db0", root);
    snprintf(db1, sizeof db1, "%s/db1", root);
    make_db_dir(db0, "subtask zero ", 1);
    make_db_dir(db1, "subtask one! ", 0);
    char *acks[2] = {snap_upload(st, 4, 0, db0, 0, 64), snap_upload(st, 4, 1, db1, 64, 128)};
    commit(st, 4, acks, 2, path);
    snprintf(sp, sizeof sp, "%s/sp", root);
    cr_assert_eq(kp_ckpt_store_savepoint(path, sp, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kp_ckpt_store_savepoint(path, sp, err, sizeof err), -1, "not over another");
    /* the checkpoint storage goes away entirely; the savepoint is moved */
    char jd[512], cmd[1200];
    snprintf(jd, sizeof jd, "%s/job", root);
    kp_fs_rmtree(jd);
    snprintf(moved, sizeof moved, "%s/elsewhere", root);
    snprintf(cmd, sizeof cmd, "mv %s %s", sp, moved);
    cr_assert_eq(system(cmd), 0);
    kp_restore *r = kp_restore_open(moved, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert(kp_restore_is_savepoint(r));
    struct seen s = {0, r, root};
    cr_assert_eq(kp_restore_each(r, "win", NULL, check_entry, &s), 0);
    cr_assert_eq(kp_restore_each(r, "src", NULL, check_entry, &s), 0);
    cr_assert_eq(s.n, 6);
    kp_restore_free(r);
    free(acks[0]);
    free(acks[1]);
    kp_ckpt_store_free(st);
}

Test(checkpoint_store, bad_paths_are_errors)
{
    char err[512];
    cr_assert_null(kp_ckpt_store_open(root, "a/b", err, sizeof err));
    cr_assert_null(kp_ckpt_store_open("", "job", err, sizeof err));
    cr_assert_null(kp_restore_open("/nonexistent/kp-ckpt", err, sizeof err));
    cr_assert(strstr(err, "/nonexistent/kp-ckpt"), "%s", err);
    cr_assert_null(kp_restore_open(root, err, sizeof err));
    cr_assert_eq(kp_restore_id(NULL), 0);
    kp_restore_free(NULL);
}

static int materialize_each(void *ctx, const kp_restore_entry *e)
{
    const kp_restore *r = ctx;
    char local[512], err[512], db[512];
    snprintf(local, sizeof local, "%s/restored-kg%d", root, e->kg_lo);
    cr_assert_eq(kp_restore_materialize(r, e, local, err, sizeof err), 0, "%s", err);
    snprintf(db, sizeof db, "%s/db-kg%d", root, e->kg_lo);
    assert_same_dir(db, local);
    return 0;
}

Test(checkpoint_store, two_entries_of_one_operator_in_one_subtask)
{
    char err[512], path[512], db[512], local[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    kp_snapshot *s = kp_snapshot_new(1, 1, 0, 1);
    for (int lo = 0; lo < 128; lo += 64) {
        snprintf(db, sizeof db, "%s/db-kg%d", root, lo);
        make_db_dir(db, lo ? "upper half " : "lower half ", lo == 0);
        snprintf(local, sizeof local, "%s/local-kg%d", root, lo);
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp -a %s %s", db, local);
        cr_assert_eq(system(cmd), 0);
        cr_assert_eq(kp_snapshot_dir(s, "win", "rocksdb", lo, lo + 64, local), 0);
    }
    char *ack = kp_ckpt_store_upload(st, s, err, sizeof err);
    cr_assert_not_null(ack, "%s", err);
    kp_snapshot_free(s);
    commit(st, 1, &ack, 1, path);
    kp_restore *r = kp_restore_open(path, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert_eq(kp_restore_each(r, "win", "rocksdb", materialize_each, r), 0);
    kp_restore_free(r);
    free(ack);
    kp_ckpt_store_free(st);
}

/* An SST written long ago but stored for the first time now (its earlier copies collected) is
 * as safe from GC during its checkpoint as a fresh one. */
Test(checkpoint_store, old_sst_stored_now_is_protected_while_pending)
{
    char err[512], db0[512], f[600], shared[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    snprintf(db0, sizeof db0, "%s/db0", root);
    snprintf(shared, sizeof shared, "%s/job/shared", root);
    make_db_dir(db0, "old data ", 0);
    snprintf(f, sizeof f, "%s/000012.sst", db0);
    struct timespec hour_ago[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, f, hour_ago, 0), 0);
    kp_time trigger = kp_wall_ms();
    char *a = snap_upload(st, 1, 0, db0, 0, 64); /* checkpoint 1 pending */
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 2);
    cr_assert_eq(kp_ckpt_store_gc(st, 1, 1, trigger, err, sizeof err), 0, "%s", err);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 2, "the pending checkpoint's SST stays");
    char path[512];
    commit(st, 1, &a, 1, path);
    free(a);
    kp_ckpt_store_free(st);
}
