/* A full checkpoint disk (a 1 MiB tmpfs mounted for the test; the suite runs as root, and a
 * refused mount fails the test — it is never skipped): an upload that does not fit fails with
 * a clear error and leaves nothing behind, a metadata write that does not fit leaves no
 * complete-looking checkpoint, the coordinator counts the failures without failing the job
 * (tolerable), and the next checkpoint succeeds once space is freed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "checkpoint_coord.h"
#include "ckpt_fs.h"
#include "../support/dir_entries.h"

static char mnt[256], local[256];

static void setup(void)
{
    snprintf(mnt, sizeof mnt, "/tmp/kp-diskfull-XXXXXX");
    cr_assert_not_null(mkdtemp(mnt));
    snprintf(local, sizeof local, "/tmp/kp-diskfull-local-XXXXXX");
    cr_assert_not_null(mkdtemp(local));
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0)
        cr_assert_fail("cannot mount a 1 MiB tmpfs on %s: %s — this test needs root (CI and "
                       "the dev machines run as root); it must not be skipped",
                       mnt, strerror(errno));
}

static void teardown(void)
{
    if (umount2(mnt, MNT_DETACH) != 0)
        fprintf(stderr, "umount %s: %s\n", mnt, strerror(errno));
    rmdir(mnt);
    kp_fs_rmtree(local);
}

static void write_file(const char *path, size_t bytes, char fill)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    char buf[4096];
    memset(buf, fill, sizeof buf);
    for (size_t done = 0; done < bytes; done += sizeof buf)
        fwrite(buf, 1, bytes - done < sizeof buf ? bytes - done : sizeof buf, f);
    fclose(f);
}

/* A snapshot of checkpoint id with an SST of sst_bytes; the upload's ack or NULL + err. */
static char *upload(kp_ckpt_store *st, int64_t id, size_t sst_bytes, char *err, size_t errlen)
{
    char dir[400], f[500];
    snprintf(dir, sizeof dir, "%s/db-%lld", local, (long long)id);
    cr_assert_eq(kp_fs_mkdirs(dir, err, errlen), 0);
    snprintf(f, sizeof f, "%s/%06lld.sst", dir, (long long)id);
    write_file(f, sst_bytes, 'a' + (char)id);
    snprintf(f, sizeof f, "%s/MANIFEST-000001", dir);
    write_file(f, 100, 'm');
    kp_snapshot *s = kp_snapshot_new(id, 0, 0, 1);
    kp_snapshot_blob(s, "src", "offsets", -1, -1, "42", 2);
    kp_snapshot_dir(s, "win", "rocksdb", 0, 128, dir);
    char *ack = kp_ckpt_store_upload(st, s, err, errlen);
    kp_snapshot_free(s);
    return ack;
}

Test(diskfull, upload_and_commit_fail_cleanly_then_recover, .init = setup, .fini = teardown)
{
    char err[512], path[600], shared[400], chk[400];
    kp_ckpt_store *st = kp_ckpt_store_open(mnt, "job", err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    kp_ckpt_config cfg = {.interval_ms = 100, .timeout_ms = 60000, .tolerable_failures = 2};
    kp_ckpt_coord *c = kp_ckpt_coord_new(&cfg, st);
    kp_ckpt_coord_expect(c, 0, 0);
    kp_ckpt_coord_tick(c, 1000);
    snprintf(shared, sizeof shared, "%s/job/shared", mnt);

    /* 1: fits */
    cr_assert_eq(kp_ckpt_coord_tick(c, 1100), 1);
    char *ack = upload(st, 1, 100 * 1024, err, sizeof err);
    cr_assert_not_null(ack, "%s", err);
    cr_assert_eq(kp_ckpt_coord_ack(c, 1, 0, 0, ack, 1110), KP_COORD_COMPLETED);
    free(ack);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 2);

    /* 2: a 2 MiB SST does not fit: clear error, nothing of it stays, the job goes on */
    cr_assert_eq(kp_ckpt_coord_tick(c, 1200), 2);
    cr_assert_null(upload(st, 2, 2 * 1024 * 1024, err, sizeof err));
    cr_assert(strstr(err, "No space left on device"), "%s", err);
    cr_assert_eq(kp_test_dir_entries(shared, NULL), 2, "no partial SST in shared/");
    snprintf(chk, sizeof chk, "%s/job/chk-2", mnt);
    cr_assert_eq(kp_test_dir_entries(chk, NULL), 0, "no private files of checkpoint 2");
    cr_assert_eq(kp_ckpt_coord_decline(c, 2, 0, 0, err, 1210), KP_COORD_FAILED);
    cr_assert_eq(kp_ckpt_coord_job_failed(c, NULL), 0);

    /* 3: the upload fits but the disk is then full for the metadata */
    cr_assert_eq(kp_ckpt_coord_tick(c, 1300), 3);
    ack = upload(st, 3, 4 * 1024, err, sizeof err);
    cr_assert_not_null(ack, "%s", err);
    char filler[400];
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    write_file(filler, 2 * 1024 * 1024, 'f'); /* fills what is left (short write) */
    cr_assert_eq(kp_ckpt_coord_ack(c, 3, 0, 0, ack, 1310), KP_COORD_FAILED);
    free(ack);
    snprintf(path, sizeof path, "%s/job/chk-3/_metadata", mnt);
    cr_assert_neq(access(path, F_OK), 0, "no metadata of checkpoint 3");
    const kp_ckpt_history *h = kp_ckpt_coord_history(c);
    const kp_ckpt_stats *s3 = kp_ckpt_history_find(h, 3);
    cr_assert(s3->failure && strstr(s3->failure, "No space left on device"), "%s", s3->failure);
    cr_assert_eq(kp_ckpt_coord_job_failed(c, NULL), 0, "2 failures are tolerable");
    char latest[600];
    cr_assert_eq(kp_ckpt_store_latest(mnt, "job", latest, sizeof latest, err, sizeof err), 1);
    cr_assert(strstr(latest, "chk-1/_metadata"), "%s", latest);

    /* space freed: 4 succeeds, and the failed ones are gone */
    unlink(filler);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1400), 4);
    ack = upload(st, 4, 100 * 1024, err, sizeof err);
    cr_assert_not_null(ack, "%s", err);
    cr_assert_eq(kp_ckpt_coord_ack(c, 4, 0, 0, ack, 1410), KP_COORD_COMPLETED);
    free(ack);
    cr_assert_eq(kp_ckpt_store_latest(mnt, "job", latest, sizeof latest, err, sizeof err), 1);
    cr_assert(strstr(latest, "chk-4/_metadata"), "%s", latest);
    char jd[400];
    snprintf(jd, sizeof jd, "%s/job", mnt);
    cr_assert_eq(kp_test_dir_entries(jd, NULL), 2, "chk-4 and shared/ only");
    kp_ckpt_coord_free(c);
    kp_ckpt_store_free(st);
}
