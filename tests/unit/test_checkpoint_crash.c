/* Nothing is orphaned after a crash at any point: a child process checkpoints in a loop
 * (upload with shared and new SST files, commit, retention + GC) and is SIGKILLed at a random
 * moment, 25 times over; after each kill a restarted GC pass must leave exactly the kept
 * checkpoints (each valid, restorable, with the right contents) and the files they name —
 * no directory without valid metadata, no unreferenced shared file, no temp file. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/dir_entries.h"
#include "checkpoint_meta.h"
#include "checkpoint_store.h"
#include "ckpt_fs.h"
#include "clock.h"

#define RETAIN 2

static char root[256];

static void put(const char *dir, const char *name, int64_t tag, size_t kib)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; i < kib * 64; i++)
        fprintf(f, "%015lld\n", (long long)tag);
    fclose(f);
}

/* Checkpoint id: SST files id/4 (kept for 4 checkpoints, so shared) and id (new), a MANIFEST,
 * a blob holding the id. */
static void one_checkpoint(kp_ckpt_store *st, int64_t id)
{
    char err[512], dir[400];
    snprintf(dir, sizeof dir, "%s/local-%lld", root, (long long)id);
    if (kp_fs_mkdirs(dir, err, sizeof err) != 0)
        _exit(2);
    char name[64];
    snprintf(name, sizeof name, "%06lld.sst", (long long)(id / 4 * 1000));
    put(dir, name, id / 4, 64);
    snprintf(name, sizeof name, "%06lld.sst", (long long)id);
    put(dir, name, id, 16);
    put(dir, "MANIFEST-000001", id, 1);
    kp_snapshot *s = kp_snapshot_new(id, 0, 0, 1);
    char blob[32];
    int n = snprintf(blob, sizeof blob, "id=%lld", (long long)id);
    kp_snapshot_blob(s, "src", "offsets", -1, -1, blob, (size_t)n);
    kp_snapshot_dir(s, "win", "rocksdb", 0, 128, dir);
    char *ack = kp_ckpt_store_upload(st, s, err, sizeof err);
    kp_snapshot_free(s);
    if (!ack)
        _exit(3);
    if (kp_ckpt_store_commit(st, id, kp_wall_ms(), KP_CKPT_EXACTLY_ONCE, (const char *const *)&ack,
                             1, NULL, 0, err, sizeof err) != 0)
        _exit(4);
    free(ack);
    kp_ckpt_store_gc(st, RETAIN, INT64_MAX, kp_wall_ms(), err, sizeof err);
}

static void child_loop(void)
{
    char err[512];
    kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
    for (int64_t id = kp_ckpt_store_max_id(root, "job") + 1;; id++)
        one_checkpoint(st, id);
}

static int add_ref(void *ctx, json_t *file)
{
    json_object_set_new(ctx, json_string_value(json_object_get(file, "path")), json_true());
    return 0;
}

static int check_blob(void *ctx, const kp_restore_entry *e)
{
    char want[32];
    int n = snprintf(want, sizeof want, "id=%lld", (long long)*(int64_t *)ctx);
    cr_assert_eq(e->len, (size_t)n);
    cr_assert_eq(memcmp(e->data, want, e->len), 0);
    return 0;
}

/* After GC: every chk dir is valid and restorable, every shared file referenced. */
static int check_storage(void)
{
    char jd[400], sd[500], err[512];
    snprintf(jd, sizeof jd, "%s/job", root);
    snprintf(sd, sizeof sd, "%s/shared", jd);
    int64_t ids[64];
    int n = kp_ckpt_list_ids(jd, ids, 64);
    cr_assert_leq(n, RETAIN);
    json_t *refs = json_object();
    for (int i = 0; i < n; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/chk-%lld/_metadata", jd, (long long)ids[i]);
        json_t *meta = kp_ckpt_meta_load(path, err, sizeof err);
        cr_assert_not_null(meta, "chk-%lld kept without valid metadata: %s", (long long)ids[i],
                           err);
        cr_assert_eq(kp_ckpt_meta_verify(meta, jd, 1, err, sizeof err), 0, "%s", err);
        kp_ckpt_meta_each_file(meta, add_ref, refs);
        json_decref(meta);
        kp_restore *r = kp_restore_open(path, err, sizeof err);
        cr_assert_not_null(r, "%s", err);
        cr_assert_eq(kp_restore_each(r, "src", "offsets", check_blob, &ids[i]), 0);
        kp_restore_free(r);
        char cd[500];
        snprintf(cd, sizeof cd, "%s/chk-%lld", jd, (long long)ids[i]);
        cr_assert_eq(kp_test_dir_entries(cd, ".tmp-"), 0);
    }
    DIR *d = opendir(sd);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char rel[600];
        snprintf(rel, sizeof rel, "shared/%s", de->d_name);
        size_t len = strlen(rel);
        if (len > 7 && strcmp(rel + len - 7, ".sha256") == 0)
            rel[len - 7] = 0;
        cr_assert_not_null(json_object_get(refs, rel), "orphaned: %s", de->d_name);
    }
    if (d)
        closedir(d);
    json_decref(refs);
    return n;
}

Test(checkpoint_crash, kill_at_random_points_leaves_nothing_orphaned, .timeout = 240)
{
    snprintf(root, sizeof root, "/tmp/kp-ckpt-crash-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    srand((unsigned)time(NULL));
    int completed_runs = 0;
    for (int round = 0; round < 25; round++) {
        pid_t pid = fork();
        if (pid == 0)
            child_loop();
        usleep(2000 + (useconds_t)(rand() % 60000));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "the child stopped by itself: status %d", status);
        char err[512];
        kp_ckpt_store *st = kp_ckpt_store_open(root, "job", err, sizeof err);
        cr_assert_eq(kp_ckpt_store_gc(st, RETAIN, INT64_MAX, kp_wall_ms() + 10000, err, sizeof err),
                     0, "%s", err);
        kp_ckpt_store_free(st);
        completed_runs += check_storage() > 0;
    }
    cr_assert_gt(completed_runs, 0, "no round completed a checkpoint");
    int64_t max = kp_ckpt_store_max_id(root, "job");
    printf("checkpoint_crash: 25 kills, %d rounds with a valid checkpoint, highest id %lld\n",
           completed_runs, (long long)max);
    kp_fs_rmtree(root);
}
