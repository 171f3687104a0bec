/* Retention and garbage collection of a job's checkpoint storage (kp_ckpt_store_gc). Reference
 * counting is recomputed, not stored: the live shared files are exactly those the kept
 * checkpoints' metadata name, so no counter can drift after a crash. A file an in-progress
 * upload just wrote or reused is protected by its modification time (uploads refresh it), a
 * directory of an in-progress checkpoint by its id. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_meta.h"
#include "checkpoint_store.h"
#include "ckpt_fs.h"

#define MAX_CHK        4096
#define MTIME_SLACK_MS 2000

static int add_ref(void *ctx, json_t *file)
{
    const char *rel = json_string_value(json_object_get(file, "path"));
    if (rel)
        json_object_set_new((json_t *)ctx, rel, json_true());
    return 0;
}

static void note(char *errstr, size_t errlen, int *rc, const char *what, const char *path)
{
    if (*rc == 0)
        snprintf(errstr, errlen, "checkpoint gc: cannot remove %s %s", what, path);
    *rc = -1;
}

/* Keeps the newest `retain` valid checkpoints (their files go into refs), removes the rest
 * below oldest_pending. */
static int retain_pass(const char *jd, int retain, int64_t oldest_pending, json_t *refs,
                       char *errstr, size_t errlen)
{
    int64_t *ids = malloc(MAX_CHK * sizeof *ids);
    if (!ids)
        return -1;
    int n = kp_ckpt_list_ids(jd, ids, MAX_CHK), kept = 0, rc = 0;
    for (int i = 0; i < n; i++) {
        char dir[4300], path[4400], why[512];
        snprintf(dir, sizeof dir, "%s/chk-%lld", jd, (long long)ids[i]);
        snprintf(path, sizeof path, "%s/_metadata", dir);
        json_t *meta = access(path, F_OK) == 0 ? kp_ckpt_meta_load(path, why, sizeof why) : NULL;
        if (meta && kept < retain) {
            kept++;
            kp_ckpt_meta_each_file(meta, add_ref, refs);
        } else if (meta || ids[i] < oldest_pending) {
            if (kp_fs_rmtree(dir) != 0)
                note(errstr, errlen, &rc, "directory", dir);
        }
        json_decref(meta);
    }
    free(ids);
    return rc;
}

/* Removes shared files (and their .sha256) that no kept checkpoint names and that are older
 * than the protection time, and stray temp files as old. */
static int shared_pass(const char *jd, json_t *refs, kp_time protect_since_ms, char *errstr,
                       size_t errlen)
{
    char sd[4300];
    snprintf(sd, sizeof sd, "%s/shared", jd);
    DIR *d = opendir(sd);
    if (!d)
        return 0;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char rel[600], abs[4700];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(rel, sizeof rel, "shared/%s", de->d_name);
        snprintf(abs, sizeof abs, "%s/%s", jd, rel);
        size_t n = strlen(rel);
        if (n > 7 && strcmp(rel + n - 7, ".sha256") == 0)
            rel[n - 7] = 0; /* a sidecar lives as long as its file */
        if (json_object_get(refs, rel) || lstat(abs, &st) != 0)
            continue;
        kp_time mtime = (kp_time)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        if (mtime + MTIME_SLACK_MS < protect_since_ms && unlink(abs) != 0)
            note(errstr, errlen, &rc, "file", abs);
    }
    closedir(d);
    return rc;
}

/* Temp files of metadata writes that crashed before their rename, in chk-<N>/ of kept ones. */
static void temp_pass(const char *jd, kp_time protect_since_ms)
{
    int64_t ids[64];
    int n = kp_ckpt_list_ids(jd, ids, 64);
    for (int i = 0; i < n; i++) {
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/chk-%lld", jd, (long long)ids[i]);
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            char abs[4700];
            struct stat st;
            snprintf(abs, sizeof abs, "%s/%s", dir, de->d_name);
            if (strstr(de->d_name, ".tmp-") && lstat(abs, &st) == 0 &&
                (kp_time)st.st_mtim.tv_sec * 1000 + MTIME_SLACK_MS < protect_since_ms)
                unlink(abs);
        }
        if (d)
            closedir(d);
    }
}

int kp_ckpt_store_gc(kp_ckpt_store *st, int retain, int64_t oldest_pending,
                     kp_time protect_since_ms, char *errstr, size_t errlen)
{
    const char *jd = kp_ckpt_store_job_dir(st);
    json_t *refs = json_object();
    if (!refs) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    int rc = retain_pass(jd, retain > 0 ? retain : 1, oldest_pending, refs, errstr, errlen);
    if (shared_pass(jd, refs, protect_since_ms, errstr, errlen) != 0)
        rc = -1;
    temp_pass(jd, protect_since_ms);
    json_decref(refs);
    return rc;
}
