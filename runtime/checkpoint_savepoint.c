/* Savepoints from completed checkpoints (kp_ckpt_store_savepoint): every file the metadata
 * names is copied (never linked: a savepoint outlives the checkpoints and may be moved to
 * another filesystem) to the same relative path under the savepoint directory, and the
 * metadata is written again with "savepoint":true, which makes its paths relative to that
 * directory. */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "checkpoint_meta.h"
#include "checkpoint_store.h"
#include "ckpt_fs.h"

struct copy_ctx {
    const char *from, *to;
    char *errstr;
    size_t errlen;
};

static int copy_one(void *ctx, json_t *file)
{
    struct copy_ctx *c = ctx;
    const char *rel = json_string_value(json_object_get(file, "path"));
    const char *sha = json_string_value(json_object_get(file, "sha256"));
    char src[4700], dst[4700], dir[4700], hex[KP_SHA256_HEX_LEN];
    uint64_t size;
    if (!rel || !sha || strstr(rel, "..")) {
        snprintf(c->errstr, c->errlen, "a file entry without a valid path or sha256");
        return -1;
    }
    snprintf(src, sizeof src, "%s/%s", c->from, rel);
    snprintf(dst, sizeof dst, "%s/%s", c->to, rel);
    snprintf(dir, sizeof dir, "%s", dst);
    if (kp_fs_mkdirs(dirname(dir), c->errstr, c->errlen) != 0 ||
        kp_fs_copy_file(src, dst, hex, &size, c->errstr, c->errlen) != 0 ||
        kp_fs_fsync_dir(dir, c->errstr, c->errlen) != 0)
        return -1;
    if (strcmp(hex, sha) != 0) {
        snprintf(c->errstr, c->errlen, "%s: sha256 mismatch (corrupted checkpoint file)", src);
        return -1;
    }
    return 0;
}

static int empty_or_missing(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d)))
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    closedir(d);
    return empty;
}

static int write_meta(json_t *meta, const char *target, char *errstr, size_t errlen)
{
    char path[4400], sum[4500], hex[KP_SHA256_HEX_LEN];
    json_object_set_new(meta, "savepoint", json_true());
    char *text = json_dumps(meta, JSON_COMPACT);
    if (!text) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    snprintf(path, sizeof path, "%s/_metadata", target);
    snprintf(sum, sizeof sum, "%s.sha256", path);
    kp_fs_hash_buf(text, strlen(text), hex);
    int rc = kp_fs_write_atomic(path, text, strlen(text), errstr, errlen);
    if (rc == 0)
        rc = kp_fs_write_atomic(sum, hex, 64, errstr, errlen);
    free(text);
    return rc;
}

int kp_ckpt_store_savepoint(const char *metadata_path, const char *target_dir, char *errstr,
                            size_t errlen)
{
    if (!empty_or_missing(target_dir)) {
        snprintf(errstr, errlen, "savepoint directory %s exists and is not empty", target_dir);
        return -1;
    }
    json_t *meta = kp_ckpt_meta_load(metadata_path, errstr, errlen);
    if (!meta)
        return -1;
    char base[4400];
    kp_ckpt_meta_base(metadata_path, meta, base, sizeof base);
    struct copy_ctx c = {base, target_dir, errstr, errlen};
    int rc = kp_fs_mkdirs(target_dir, errstr, errlen);
    if (rc == 0)
        rc = kp_ckpt_meta_each_file(meta, copy_one, &c);
    if (rc == 0)
        rc = write_meta(meta, target_dir, errstr, errlen);
    json_decref(meta);
    if (rc != 0)
        kp_fs_rmtree(target_dir);
    return rc;
}
