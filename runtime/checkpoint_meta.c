/* Reading checkpoint metadata and acknowledgements (checkpoint_meta.h). The _metadata text is
 * checked against its .sha256 before it is parsed, so a torn or bit-flipped file is rejected
 * whole; files it names are checked by size (cheap, at commit) or size and sha256 (restore,
 * finding the latest valid checkpoint). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint_meta.h"
#include "ckpt_fs.h"

json_t *kp_ckpt_meta_load(const char *path, char *errstr, size_t errlen)
{
    char shapath[4200], *text = NULL, *sum = NULL;
    size_t len = 0, sumlen = 0;
    json_t *meta = NULL;
    snprintf(shapath, sizeof shapath, "%s.sha256", path);
    if (kp_fs_read_file(path, &text, &len, errstr, errlen) != 0 ||
        kp_fs_read_file(shapath, &sum, &sumlen, errstr, errlen) != 0)
        goto out;
    char hex[KP_SHA256_HEX_LEN];
    kp_fs_hash_buf(text, len, hex);
    if (sumlen < 64 || memcmp(sum, hex, 64) != 0) {
        snprintf(errstr, errlen, "%s: checksum mismatch (truncated or corrupted)", path);
        goto out;
    }
    json_error_t jerr;
    meta = json_loadb(text, len, 0, &jerr);
    if (!meta) {
        snprintf(errstr, errlen, "%s: not JSON: %s", path, jerr.text);
        goto out;
    }
    if (!json_is_object(meta) || json_integer_value(json_object_get(meta, "version")) != 1 ||
        !json_is_integer(json_object_get(meta, "checkpoint")) ||
        !json_is_array(json_object_get(meta, "subtasks"))) {
        snprintf(errstr, errlen, "%s: not checkpoint metadata version 1", path);
        json_decref(meta);
        meta = NULL;
    }
out:
    free(text);
    free(sum);
    return meta;
}

void kp_ckpt_meta_base(const char *path, const json_t *meta, char *out, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *dir = dirname(tmp);
    if (json_is_true(json_object_get(meta, "savepoint"))) {
        snprintf(out, len, "%s", dir);
        return;
    }
    char tmp2[4200];
    snprintf(tmp2, sizeof tmp2, "%s", dir);
    snprintf(out, len, "%s", dirname(tmp2));
}

int kp_ckpt_ack_each_file(json_t *ack, int (*fn)(void *ctx, json_t *file), void *ctx)
{
    size_t i, j;
    json_t *e, *f;
    json_array_foreach(json_object_get(ack, "entries"), i, e)
    {
        json_t *bf = json_object_get(e, "blob_file");
        int rc = bf ? fn(ctx, bf) : 0;
        if (rc)
            return rc;
        json_array_foreach(json_object_get(e, "files"), j, f)
        {
            if ((rc = fn(ctx, f)) != 0)
                return rc;
        }
    }
    return 0;
}

int kp_ckpt_meta_each_file(json_t *meta, int (*fn)(void *ctx, json_t *file), void *ctx)
{
    size_t i;
    json_t *ack;
    json_array_foreach(json_object_get(meta, "subtasks"), i, ack)
    {
        int rc = kp_ckpt_ack_each_file(ack, fn, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

int kp_ckpt_file_check(const json_t *file, const char *base, int full, char *errstr, size_t errlen)
{
    const char *rel = json_string_value(json_object_get(file, "path"));
    const char *sha = json_string_value(json_object_get(file, "sha256"));
    json_int_t size = json_integer_value(json_object_get(file, "size"));
    if (!rel || !sha || strstr(rel, "..") || rel[0] == '/') {
        snprintf(errstr, errlen, "a file entry without a valid path or sha256");
        return -1;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    struct stat st;
    if (stat(path, &st) != 0 || (json_int_t)st.st_size != size) {
        snprintf(errstr, errlen, "%s: missing or not %lld bytes", path, (long long)size);
        return -1;
    }
    if (!full)
        return 0;
    char hex[KP_SHA256_HEX_LEN];
    uint64_t n;
    if (kp_fs_hash_file(path, hex, &n, errstr, errlen) != 0)
        return -1;
    if (strcmp(hex, sha) != 0) {
        snprintf(errstr, errlen, "%s: sha256 mismatch (corrupted)", path);
        return -1;
    }
    return 0;
}

struct verify_ctx {
    const char *base;
    int full;
    char *errstr;
    size_t errlen;
};

static int verify_one(void *ctx, json_t *file)
{
    struct verify_ctx *v = ctx;
    return kp_ckpt_file_check(file, v->base, v->full, v->errstr, v->errlen);
}

int kp_ckpt_meta_verify(json_t *meta, const char *base, int full, char *errstr, size_t errlen)
{
    struct verify_ctx v = {base, full, errstr, errlen};
    return kp_ckpt_meta_each_file(meta, verify_one, &v);
}
