/* Opening a completed checkpoint or savepoint for restore (kp_restore_* of checkpoint.h,
 * kp_restore_open of checkpoint_store.h). The metadata is verified and every blob decoded or
 * read (and checked) at open, so subtasks only read memory; directories are materialised on
 * demand: SST files hard-linked when storage is on the same filesystem (RocksDB never writes
 * to an SST file), every other file copied, each verified against its sha256. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_meta.h"
#include "checkpoint_store.h"
#include "ckpt_fs.h"

typedef struct rentry {
    kp_restore_entry pub; /* first: the pointer handed out is the rentry's */
    json_t *files;        /* directory entries: the file objects (borrowed from meta) */
    void *owned;          /* decoded blob */
} rentry;

struct kp_restore {
    json_t *meta;
    char path[4400], base[4400];
    int64_t id;
    rentry *e;
    size_t n;
};

static int cmp_entry(const void *a, const void *b)
{
    const kp_restore_entry *x = a, *y = b;
    int c = strcmp(x->uid, y->uid);
    if (c)
        return c;
    if (x->subtask != y->subtask)
        return x->subtask < y->subtask ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int load_blob(kp_restore *r, rentry *re, json_t *e, char *errstr, size_t errlen)
{
    const char *b64 = json_string_value(json_object_get(e, "blob"));
    json_t *bf = json_object_get(e, "blob_file");
    if (b64) {
        size_t n = strlen(b64);
        unsigned char *out = malloc(n / 4 * 3 + 3);
        int len = out ? EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n) : -1;
        if (len < 0 || n % 4) {
            free(out);
            snprintf(errstr, errlen, "%s: bad base64 blob %s/%s", r->path, re->pub.uid,
                     re->pub.name);
            return -1;
        }
        /* EVP_DecodeBlock counts the padding as zero bytes */
        len -= (n >= 1 && b64[n - 1] == '=') + (n >= 2 && b64[n - 2] == '=');
        re->owned = out;
        re->pub.data = out;
        re->pub.len = (size_t)len;
        return 0;
    }
    if (!bf) {
        snprintf(errstr, errlen, "%s: entry %s/%s has no blob, blob_file or files", r->path,
                 re->pub.uid, re->pub.name);
        return -1;
    }
    if (kp_ckpt_file_check(bf, r->base, 1, errstr, errlen) != 0)
        return -1;
    char path[4600];
    char *data;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", r->base, json_string_value(json_object_get(bf, "path")));
    if (kp_fs_read_file(path, &data, &len, errstr, errlen) != 0)
        return -1;
    re->owned = data;
    re->pub.data = data;
    re->pub.len = len;
    return 0;
}

static int load_entry(kp_restore *r, json_t *ack, json_t *e, char *errstr, size_t errlen)
{
    rentry *re = &r->e[r->n];
    memset(re, 0, sizeof *re);
    re->pub.uid = json_string_value(json_object_get(e, "uid"));
    re->pub.name = json_string_value(json_object_get(e, "name"));
    re->pub.subtask = (int)json_integer_value(json_object_get(ack, "subtask"));
    re->pub.parallelism = (int)json_integer_value(json_object_get(ack, "parallelism"));
    json_t *kg = json_object_get(e, "kg");
    re->pub.kg_lo = json_is_array(kg) ? (int)json_integer_value(json_array_get(kg, 0)) : -1;
    re->pub.kg_hi = json_is_array(kg) ? (int)json_integer_value(json_array_get(kg, 1)) : -1;
    if (!re->pub.uid || !re->pub.name) {
        snprintf(errstr, errlen, "%s: an entry without uid or name", r->path);
        return -1;
    }
    re->files = json_object_get(e, "files");
    if (json_is_array(re->files))
        re->pub.is_dir = 1;
    else if (load_blob(r, re, e, errstr, errlen) != 0)
        return -1;
    r->n++;
    return 0;
}

static int load_entries(kp_restore *r, char *errstr, size_t errlen)
{
    size_t i, j, total = 0;
    json_t *ack, *e;
    json_t *subtasks = json_object_get(r->meta, "subtasks");
    json_array_foreach(subtasks, i, ack) total += json_array_size(json_object_get(ack, "entries"));
    r->e = calloc(total ? total : 1, sizeof *r->e);
    if (!r->e) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    json_array_foreach(subtasks, i, ack)
    {
        json_array_foreach(json_object_get(ack, "entries"), j, e)
        {
            if (load_entry(r, ack, e, errstr, errlen) != 0)
                return -1;
        }
    }
    qsort(r->e, r->n, sizeof *r->e, cmp_entry);
    return 0;
}

/* path → the _metadata file it means. 0, or -1 with errstr. */
static int resolve(const char *path, char *out, size_t len, char *errstr, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(errstr, errlen, "cannot restore from %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(out, len, "%s", path);
        return 0;
    }
    snprintf(out, len, "%s/_metadata", path);
    if (access(out, F_OK) == 0)
        return 0;
    /* a job directory: its latest valid checkpoint */
    char root[4400], *slash;
    snprintf(root, sizeof root, "%s", path);
    while ((slash = strrchr(root, '/')) && slash[1] == 0)
        *slash = 0;
    if (!slash) {
        snprintf(errstr, errlen, "%s: no _metadata and not a job directory", path);
        return -1;
    }
    *slash = 0;
    int rc = kp_ckpt_store_latest(root[0] ? root : "/", slash + 1, out, len, errstr, errlen);
    if (rc == 0)
        snprintf(errstr, errlen, "%s: no _metadata and no valid checkpoint in it", path);
    return rc == 1 ? 0 : -1;
}

kp_restore *kp_restore_open(const char *path, char *errstr, size_t errlen)
{
    kp_restore *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    if (resolve(path, r->path, sizeof r->path, errstr, errlen) != 0 ||
        !(r->meta = kp_ckpt_meta_load(r->path, errstr, errlen))) {
        kp_restore_free(r);
        return NULL;
    }
    kp_ckpt_meta_base(r->path, r->meta, r->base, sizeof r->base);
    r->id = json_integer_value(json_object_get(r->meta, "checkpoint"));
    if (load_entries(r, errstr, errlen) != 0) {
        kp_restore_free(r);
        return NULL;
    }
    return r;
}

void kp_restore_free(kp_restore *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->e && i < r->n; i++)
        free(r->e[i].owned);
    free(r->e);
    json_decref(r->meta);
    free(r);
}

const char *kp_restore_path(const kp_restore *r)
{
    return r->path;
}

int kp_restore_is_savepoint(const kp_restore *r)
{
    return json_is_true(json_object_get(r->meta, "savepoint"));
}

int64_t kp_restore_id(const kp_restore *r)
{
    return r ? r->id : 0;
}

int kp_restore_each(const kp_restore *r, const char *uid, const char *name,
                    int (*fn)(void *ctx, const kp_restore_entry *e), void *ctx)
{
    for (size_t i = 0; i < r->n; i++) {
        const kp_restore_entry *e = &r->e[i].pub;
        if (strcmp(e->uid, uid) != 0 || (name && strcmp(e->name, name) != 0))
            continue;
        int rc = fn(ctx, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* One stored file into local_dir: SST files hard-linked if possible, then verified. */
static int place(const kp_restore *r, json_t *f, const char *local_dir, char *errstr, size_t errlen)
{
    const char *rel = json_string_value(json_object_get(f, "path"));
    const char *fname = json_string_value(json_object_get(f, "name"));
    const char *sha = json_string_value(json_object_get(f, "sha256"));
    if (!rel || !fname || !sha || strstr(rel, "..") || rel[0] == '/' || strchr(fname, '/') ||
        fname[0] == '.') {
        snprintf(errstr, errlen, "%s: a file entry without path, name or sha256", r->path);
        return -1;
    }
    char src[4700], dst[4700], hex[KP_SHA256_HEX_LEN];
    uint64_t size;
    snprintf(src, sizeof src, "%s/%s", r->base, rel);
    snprintf(dst, sizeof dst, "%s/%s", local_dir, fname);
    size_t n = strlen(fname);
    int linked = n > 4 && strcmp(fname + n - 4, ".sst") == 0 && link(src, dst) == 0;
    int rc = linked ? kp_fs_hash_file(dst, hex, &size, errstr, errlen)
                    : kp_fs_copy_file(src, dst, hex, &size, errstr, errlen);
    if (rc == 0 && strcmp(hex, sha) != 0) {
        snprintf(errstr, errlen, "%s: sha256 mismatch (corrupted checkpoint file)", src);
        rc = -1;
    }
    return rc;
}

int kp_restore_materialize(const kp_restore *r, const kp_restore_entry *e, const char *local_dir,
                           char *errstr, size_t errlen)
{
    const rentry *re = (const rentry *)e;
    errstr[0] = 0;
    if (!e->is_dir) {
        snprintf(errstr, errlen, "%s/%s is a blob, not a directory", e->uid, e->name);
        return -1;
    }
    if (kp_fs_rmtree(local_dir) != 0 || kp_fs_mkdirs(local_dir, errstr, errlen) != 0) {
        if (!errstr[0])
            snprintf(errstr, errlen, "cannot clear %s: %s", local_dir, strerror(errno));
        return -1;
    }
    size_t i;
    json_t *f;
    json_array_foreach(re->files, i, f)
    {
        if (place(r, f, local_dir, errstr, errlen) != 0) {
            kp_fs_rmtree(local_dir);
            return -1;
        }
    }
    return kp_fs_fsync_dir(local_dir, errstr, errlen);
}

int kp_restore_uids(const kp_restore *r, const char **out, int max)
{
    int n = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < r->n && n < max; i++) {
        const char *uid = r->e[i].pub.uid; /* sorted by uid */
        if (prev && strcmp(prev, uid) == 0)
            continue;
        out[n++] = prev = uid;
    }
    return n;
}
