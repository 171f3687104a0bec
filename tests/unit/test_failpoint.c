/* Failpoints (runtime/failpoint.h) and the crash points of the checkpoint store: a process
 * killed (_exit 137) before the metadata rename or after the metadata write leaves a storage
 * whose latest valid checkpoint is the one before (resp. the new one), and garbage collection
 * then removes everything no valid metadata names. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint_store.h"
#include "ckpt_fs.h"
#include "clock.h"
#include "../support/dir_entries.h"
#include "failpoint.h"

Test(failpoint, off_by_default)
{
    unsetenv("KAPPA_FAILPOINTS");
    kp_failpoint_reload();
    cr_assert_eq(kp_failpoint("store.before_metadata_rename"), 0);
    cr_assert_eq(kp_failpoint("anything"), 0);
}

Test(failpoint, error_action)
{
    setenv("KAPPA_FAILPOINTS", "x.one=error,x.two=error", 1);
    kp_failpoint_reload();
    cr_assert_eq(kp_failpoint("x.one"), -1);
    cr_assert_eq(kp_failpoint("x.two"), -1);
    cr_assert_eq(kp_failpoint("x.three"), 0);
    cr_assert_eq(kp_failpoint("x.on"), 0, "names match whole");
}

Test(failpoint, count_lets_the_first_hits_pass)
{
    setenv("KAPPA_FAILPOINTS", "x.third=error@3,x.bad=error@0", 1);
    kp_failpoint_reload();
    cr_assert_eq(kp_failpoint("x.third"), 0);
    cr_assert_eq(kp_failpoint("x.third"), 0);
    cr_assert_eq(kp_failpoint("x.third"), -1, "fires at the third hit");
    cr_assert_eq(kp_failpoint("x.third"), -1, "and every one after");
    cr_assert_eq(kp_failpoint("x.bad"), -1, "a count below 1 is @1 (with a message)");
    kp_failpoint_reload();
    cr_assert_eq(kp_failpoint("x.third"), 0, "a reload starts the count again");
}

Test(failpoint, crash_action_exits_137, .exit_code = 137)
{
    setenv("KAPPA_FAILPOINTS", "other=error,x.crash", 1);
    kp_failpoint_reload();
    kp_failpoint("x.crash");
    cr_assert_fail("not reached");
}

Test(failpoint, read_once_without_reload)
{
    /* a fresh process reads the variable on first use */
    pid_t pid = fork();
    if (pid == 0) {
        setenv("KAPPA_FAILPOINTS", "x.crash=crash", 1);
        kp_failpoint_reload();
        _exit(kp_failpoint("y") == 0 ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static char root[256];

static char *upload_one(kp_ckpt_store *st, int64_t id)
{
    char err[512], dir[400];
    kp_snapshot *s = kp_snapshot_new(id, 0, 0, 1);
    kp_snapshot_blob(s, "src", "offsets", -1, -1, "abc", 3);
    snprintf(dir, sizeof dir, "%s/local-%lld", root, (long long)id);
    cr_assert_eq(kp_fs_mkdirs(dir, err, sizeof err), 0);
    char f[500];
    snprintf(f, sizeof f, "%s/%06lld.sst", dir, (long long)id);
    FILE *fp = fopen(f, "w");
    fprintf(fp, "sst of checkpoint %lld", (long long)id);
    fclose(fp);
    kp_snapshot_dir(s, "win", "rocksdb", 0, 128, dir);
    char *ack = kp_ckpt_store_upload(st, s, err, sizeof err);
    cr_assert_not_null(ack, "%s", err);
    kp_snapshot_free(s);
    return ack;
}

/* Runs upload + commit of checkpoint id in a child with KAPPA_FAILPOINTS=fp; its exit status. */
static int commit_in_child(int64_t id, const char *fp)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (fp)
            setenv("KAPPA_FAILPOINTS", fp, 1);
        else
            unsetenv("KAPPA_FAILPOINTS");
        kp_failpoint_reload();
        char err[512];
        kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
        char *ack = upload_one(st, id);
        int rc = kp_ckpt_store_commit(st, id, kp_wall_ms(), KP_CKPT_EXACTLY_ONCE,
                                      (const char *const *)&ack, 1, NULL, 0, err, sizeof err);
        _exit(rc == 0 ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int latest_id(void)
{
    char path[600], err[256];
    if (kp_ckpt_store_latest(root, "job", path, sizeof path, err, sizeof err) != 1)
        return 0;
    return atoi(strstr(path, "chk-") + 4);
}

static void setup(void)
{
    snprintf(root, sizeof root, "/tmp/kp-failpoint-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    kp_fs_rmtree(root);
}

Test(failpoint, store_crash_points_leave_a_valid_latest, .init = setup, .fini = teardown)
{
    char jd[400], sd[500], err[512];
    snprintf(jd, sizeof jd, "%s/job", root);
    snprintf(sd, sizeof sd, "%s/shared", jd);
    cr_assert_eq(commit_in_child(1, NULL), 0);
    cr_assert_eq(latest_id(), 1);

    cr_assert_eq(commit_in_child(2, "store.before_metadata_rename"), 137);
    cr_assert_eq(latest_id(), 1, "a crash before the rename: the previous one");
    char tmpdir[500];
    snprintf(tmpdir, sizeof tmpdir, "%s/chk-2", jd);
    cr_assert_eq(kp_test_dir_entries(tmpdir, ".tmp-"), 1, "the temp metadata file is left");

    cr_assert_eq(commit_in_child(3, "store.before_metadata_rename=error"), 1);
    cr_assert_eq(latest_id(), 1);

    cr_assert_eq(commit_in_child(4, "store.after_metadata_write"), 137);
    cr_assert_eq(latest_id(), 4, "a crash after the write: the new one is complete");

    /* a restarted coordinator collects: chk-2 and chk-3 (no valid metadata) and their shared
     * files go; chk-1 goes too with retain 1; chk-4 and its files stay */
    cr_assert_eq(kp_test_dir_entries(sd, ".sst"), 8); /* 4 files + 4 sidecars */
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    cr_assert_eq(kp_ckpt_store_gc(st, 1, INT64_MAX, kp_wall_ms() + 10000, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(kp_test_dir_entries(jd, "chk-"), 1);
    cr_assert_eq(kp_test_dir_entries(sd, ".sst"), 2);
    cr_assert_eq(kp_test_dir_entries(sd, "000004.sst"), 2);
    cr_assert_eq(latest_id(), 4);
    kp_ckpt_store_free(st);
}

Test(failpoint, upload_of_a_vanished_dir_fails_cleanly, .init = setup, .fini = teardown)
{
    char err[512], jd[400];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    kp_snapshot *s = kp_snapshot_new(1, 0, 0, 1);
    kp_snapshot_dir(s, "win", "rocksdb", 0, 128, "/nonexistent/kp-dir");
    cr_assert_null(kp_ckpt_store_upload(st, s, err, sizeof err));
    cr_assert(strstr(err, "/nonexistent/kp-dir"), "%s", err);
    snprintf(jd, sizeof jd, "%s/job/chk-1", root);
    cr_assert_eq(kp_test_dir_entries(jd, "0-0"), 0, "nothing of the upload remains");
    kp_snapshot_free(s);
    kp_ckpt_store_free(st);
}
