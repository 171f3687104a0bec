/* Completing a checkpoint and finding the newest valid one (checkpoint_store.h): the metadata
 * is the list of acknowledgements, written atomically; `_metadata.sha256`, written last, is the
 * commit point. A reader trusts a checkpoint only when both files agree and every file they
 * name has its size and sha256. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_meta.h"
#include "checkpoint_store.h"
#include "ckpt_fs.h"
#include "clock.h"
#include "failpoint.h"

static const char *mode_name(kp_ckpt_mode m)
{
    return m == KP_CKPT_AT_LEAST_ONCE ? "at_least_once" : "exactly_once";
}

/* The acknowledgements as JSON, each checked: an object of checkpoint `id` whose files are in
 * place (size). */
static json_t *parse_acks(const char *base, int64_t id, const char *const *acks, int n,
                          char *errstr, size_t errlen)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        json_error_t jerr;
        json_t *a = acks[i] ? json_loads(acks[i], 0, &jerr) : NULL;
        if (!a || !json_is_object(a) ||
            json_integer_value(json_object_get(a, "checkpoint")) != id) {
            snprintf(errstr, errlen, "acknowledgement %d of checkpoint %lld is not valid: %s", i,
                     (long long)id, a ? "wrong object or checkpoint id" : jerr.text);
            json_decref(a);
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, a);
    }
    if (!arr)
        return NULL;
    json_t *wrap = json_pack("{s:O}", "subtasks", arr);
    int bad = !wrap || kp_ckpt_meta_verify(wrap, base, 0, errstr, errlen) != 0;
    json_decref(wrap);
    if (bad) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

/* Writes path atomically with the failpoint between fsync and rename. */
static int write_meta_file(const char *path, const char *text, size_t len, const char *fp,
                           char *errstr, size_t errlen)
{
    char tmp[4400];
    if (kp_fs_write_temp(path, text, len, tmp, sizeof tmp, errstr, errlen) != 0)
        return -1;
    if (fp && kp_failpoint(fp) != 0) {
        unlink(tmp);
        snprintf(errstr, errlen, "failpoint %s", fp);
        return -1;
    }
    return kp_fs_commit_temp(tmp, path, errstr, errlen);
}

int kp_ckpt_store_commit(kp_ckpt_store *st, int64_t id, kp_time trigger_ms, kp_ckpt_mode mode,
                         const char *const *acks, int n, char *path_out, size_t path_len,
                         char *errstr, size_t errlen)
{
    const char *jd = kp_ckpt_store_job_dir(st);
    json_t *subtasks = parse_acks(jd, id, acks, n, errstr, errlen);
    if (!subtasks)
        return -1;
    const char *slash = strrchr(jd, '/');
    json_t *meta = json_pack(
        "{s:i, s:s, s:I, s:b, s:I, s:I, s:s, s:o}", "version", 1, "job", slash ? slash + 1 : jd,
        "checkpoint", (json_int_t)id, "savepoint", 0, "trigger_ms", (json_int_t)trigger_ms,
        "complete_ms", (json_int_t)kp_wall_ms(), "mode", mode_name(mode), "subtasks", subtasks);
    char *text = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    json_decref(meta);
    if (!text) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    char dir[4200], path[4300], sumpath[4400], hex[KP_SHA256_HEX_LEN];
    snprintf(dir, sizeof dir, "%s/chk-%lld", jd, (long long)id);
    snprintf(path, sizeof path, "%s/_metadata", dir);
    snprintf(sumpath, sizeof sumpath, "%s.sha256", path);
    kp_fs_hash_buf(text, strlen(text), hex);
    int rc = kp_fs_mkdirs(dir, errstr, errlen);
    if (rc == 0)
        rc = write_meta_file(path, text, strlen(text), "store.before_metadata_rename", errstr,
                             errlen);
    if (rc == 0)
        rc = write_meta_file(sumpath, hex, 64, NULL, errstr, errlen);
    free(text);
    if (rc != 0) {
        unlink(sumpath);
        unlink(path);
        return -1;
    }
    if (kp_failpoint("store.after_metadata_write") != 0) {
        snprintf(errstr, errlen, "failpoint store.after_metadata_write");
        return -1;
    }
    if (path_out)
        snprintf(path_out, path_len, "%s", path);
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int kp_ckpt_list_ids(const char *job_dir, int64_t *ids, int max)
{
    DIR *d = opendir(job_dir);
    int n = 0;
    struct dirent *de;
    while (d && n < max && (de = readdir(d))) {
        char *end;
        if (strncmp(de->d_name, "chk-", 4) != 0)
            continue;
        long long v = strtoll(de->d_name + 4, &end, 10);
        if (*end == 0 && v > 0)
            ids[n++] = v;
    }
    if (d)
        closedir(d);
    qsort(ids, (size_t)n, sizeof *ids, cmp_desc);
    return n;
}

#define MAX_CHK 4096

int64_t kp_ckpt_store_max_id(const char *root, const char *job)
{
    char jd[4200];
    int64_t ids[MAX_CHK];
    snprintf(jd, sizeof jd, "%s/%s", root, job);
    return kp_ckpt_list_ids(jd, ids, MAX_CHK) > 0 ? ids[0] : 0;
}

int kp_ckpt_store_latest(const char *root, const char *job, char *path_out, size_t path_len,
                         char *errstr, size_t errlen)
{
    char jd[4200];
    int64_t *ids = malloc(MAX_CHK * sizeof *ids);
    if (!ids) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    snprintf(jd, sizeof jd, "%s/%s", root, job);
    int n = kp_ckpt_list_ids(jd, ids, MAX_CHK), found = 0;
    for (int i = 0; i < n && !found; i++) {
        char path[4400], base[4400], why[512];
        snprintf(path, sizeof path, "%s/chk-%lld/_metadata", jd, (long long)ids[i]);
        if (access(path, F_OK) != 0 && errno == ENOENT)
            continue; /* in progress, failed or aborted: never completed */
        json_t *meta = kp_ckpt_meta_load(path, why, sizeof why);
        if (meta)
            kp_ckpt_meta_base(path, meta, base, sizeof base);
        if (meta && kp_ckpt_meta_verify(meta, base, 1, why, sizeof why) == 0) {
            snprintf(path_out, path_len, "%s", path);
            found = 1;
        } else {
            fprintf(stderr, "kappa: checkpoint %lld of %s skipped: %s\n", (long long)ids[i], job,
                    why);
        }
        json_decref(meta);
    }
    free(ids);
    return found;
}
