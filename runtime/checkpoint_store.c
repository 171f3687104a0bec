/* Checkpoint storage: opening a job's store and uploading a subtask's snapshot into it
 * (checkpoint_store.h). An upload writes only below chk-<N>/<task>-<subtask>/ and new files in
 * shared/, remembers what it created, and removes all of it if any step fails, so a full disk
 * leaves nothing behind. SST files are immutable in RocksDB, so one stored under the same
 * database (uid, name, key groups), file name, size and tail is the same file: it is referenced,
 * not copied again. The tail (last 4 KiB: footer, metaindex and the properties block with the
 * database session id) tells apart files that share a name across database lineages. A new
 * SST is hard-linked rather than copied when storage is on the local checkpoint's filesystem
 * (RocksDB never writes to an SST file again; the link is fsynced). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_store.h"
#include "ckpt_fs.h"
#include "clock.h"

#define TAIL_BYTES 4096

struct kp_ckpt_store {
    char *job_dir, *shared_dir;
};

kp_ckpt_store *kp_ckpt_store_open(const char *root, const char *job, char *errstr, size_t errlen)
{
    if (!root || !*root || !job || !*job || strchr(job, '/') || job[0] == '.') {
        snprintf(errstr, errlen,
                 "checkpoint storage: need a directory and a job name without "
                 "'/' (got '%s', '%s')",
                 root ? root : "", job ? job : "");
        return NULL;
    }
    kp_ckpt_store *st = calloc(1, sizeof *st);
    if (!st || asprintf(&st->job_dir, "%s/%s", root, job) < 0 ||
        asprintf(&st->shared_dir, "%s/shared", st->job_dir) < 0) {
        snprintf(errstr, errlen, "out of memory");
        kp_ckpt_store_free(st);
        return NULL;
    }
    if (kp_fs_mkdirs(st->shared_dir, errstr, errlen) != 0) {
        kp_ckpt_store_free(st);
        return NULL;
    }
    return st;
}

void kp_ckpt_store_free(kp_ckpt_store *st)
{
    if (!st)
        return;
    free(st->job_dir);
    free(st->shared_dir);
    free(st);
}

const char *kp_ckpt_store_job_dir(const kp_ckpt_store *st)
{
    return st->job_dir;
}

/* One upload in progress. */
typedef struct upload {
    kp_ckpt_store *st;
    char priv_rel[128];  /* chk-N/T-S */
    char priv_abs[4200]; /* job_dir/chk-N/T-S */
    char **created;      /* shared files (and sidecars) this upload made */
    size_t ncreated, capcreated;
    uint64_t bytes, incremental;
    size_t cur; /* index of the entry being uploaded */
    char *errstr;
    size_t errlen;
} upload;

/* uid or name as a file-name part: [A-Za-z0-9_-] kept, anything else '_'. */
static void safe_part(char *out, size_t len, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        out[i] = ok ? c : '_';
    }
    out[i] = 0;
}

static void entry_stem(char *out, size_t len, const kp_snapshot_entry *e)
{
    char u[100], n[60];
    safe_part(u, sizeof u, e->uid);
    safe_part(n, sizeof n, e->name);
    snprintf(out, len, "%s.%s", u, n);
}

/* A private file or directory name: the entry's index first, so that two entries of one
 * operator never meet. */
static void private_stem(char *out, size_t len, const upload *u, const kp_snapshot_entry *e)
{
    char stem[200];
    entry_stem(stem, sizeof stem, e);
    snprintf(out, len, "%zu.%s", u->cur, stem);
}

static int remember(upload *u, const char *path)
{
    if (u->ncreated == u->capcreated) {
        size_t cap = u->capcreated ? u->capcreated * 2 : 16;
        char **c = realloc(u->created, cap * sizeof *c);
        if (!c)
            return -1;
        u->created = c;
        u->capcreated = cap;
    }
    if (!(u->created[u->ncreated] = strdup(path)))
        return -1;
    u->ncreated++;
    return 0;
}

static json_t *file_json(const char *name, const char *rel, uint64_t size, const char *hex,
                         int shared)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:b}", "name", name, "path", rel, "size",
                     (json_int_t)size, "sha256", hex, "shared", shared);
}

/* A large blob as a file under the subtask's private directory. */
static json_t *blob_file(upload *u, const kp_snapshot_entry *e)
{
    char stem[240], rel[400], abs[4700], hex[KP_SHA256_HEX_LEN];
    private_stem(stem, sizeof stem, u, e);
    snprintf(rel, sizeof rel, "%s/%s.blob", u->priv_rel, stem);
    snprintf(abs, sizeof abs, "%s/%s", u->st->job_dir, rel);
    if (kp_fs_write_atomic(abs, e->data, e->len, u->errstr, u->errlen) != 0)
        return NULL;
    kp_fs_hash_buf(e->data, e->len, hex);
    u->bytes += e->len;
    u->incremental += e->len;
    return file_json(stem, rel, e->len, hex, 0);
}

static json_t *blob_inline(upload *u, const kp_snapshot_entry *e)
{
    char *b64 = malloc(4 * ((e->len + 2) / 3) + 1);
    if (!b64)
        return NULL;
    EVP_EncodeBlock((unsigned char *)b64, e->data, (int)e->len);
    json_t *j = json_string(b64);
    free(b64);
    u->bytes += e->len;
    u->incremental += e->len;
    return j;
}

/* The 12-hex-digit fingerprint of a file's size and last TAIL_BYTES bytes. */
static int tail_print(const char *path, uint64_t size, char out[13], char *errstr, size_t errlen)
{
    unsigned char buf[TAIL_BYTES + 32];
    size_t n = size < TAIL_BYTES ? (size_t)size : TAIL_BYTES;
    int fd = open(path, O_RDONLY);
    ssize_t got = fd >= 0 ? pread(fd, buf, n, (off_t)(size - n)) : -1;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)n) {
        snprintf(errstr, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    memcpy(buf + n, &size, sizeof size);
    char hex[KP_SHA256_HEX_LEN];
    kp_fs_hash_buf(buf, n + sizeof size, hex);
    memcpy(out, hex, 12);
    out[12] = 0;
    return 0;
}

/* An SST file into shared/, or a reference to the copy already there. */
static json_t *shared_file(upload *u, const kp_snapshot_entry *e, const char *local,
                           const char *fname, uint64_t size)
{
    char stem[200], tail[13], rel[700], abs[5000], side[5100], hex[KP_SHA256_HEX_LEN];
    entry_stem(stem, sizeof stem, e);
    if (tail_print(local, size, tail, u->errstr, u->errlen) != 0)
        return NULL;
    snprintf(rel, sizeof rel, "shared/%s.%d-%d.%s.%s", stem, e->kg_lo, e->kg_hi, tail, fname);
    snprintf(abs, sizeof abs, "%s/%s", u->st->job_dir, rel);
    snprintf(side, sizeof side, "%s.sha256", abs);
    struct stat st;
    char *sum = NULL;
    size_t sumlen = 0;
    char ignore[256];
    if (stat(abs, &st) == 0 && (uint64_t)st.st_size == size &&
        kp_fs_read_file(side, &sum, &sumlen, ignore, sizeof ignore) == 0 && sumlen >= 64) {
        memcpy(hex, sum, 64);
        hex[64] = 0;
        free(sum);
        utimensat(AT_FDCWD, abs, NULL, 0); /* kp_ckpt_store_gc keeps recent files */
        utimensat(AT_FDCWD, side, NULL, 0);
        u->bytes += size;
        return file_json(fname, rel, size, hex, 1);
    }
    free(sum);
    uint64_t copied;
    if (remember(u, abs) != 0)
        return NULL;
    int rc = kp_fs_link_file(local, abs, hex, &copied, u->errstr, u->errlen);
    if (rc == 1)
        rc = kp_fs_copy_file(local, abs, hex, &copied, u->errstr, u->errlen);
    if (rc != 0)
        return NULL;
    char tmp[5300];
    if (remember(u, side) != 0 ||
        kp_fs_write_temp(side, hex, 64, tmp, sizeof tmp, u->errstr, u->errlen) != 0)
        return NULL;
    if (rename(tmp, side) != 0) {
        snprintf(u->errstr, u->errlen, "cannot rename to %s: %s", side, strerror(errno));
        unlink(tmp);
        return NULL;
    }
    u->bytes += copied;
    u->incremental += copied;
    return file_json(fname, rel, copied, hex, 1);
}

static json_t *private_file(upload *u, const char *subdir, const char *local, const char *fname)
{
    char rel[700], abs[5000], hex[KP_SHA256_HEX_LEN];
    uint64_t size;
    snprintf(rel, sizeof rel, "%s/%s", subdir, fname);
    snprintf(abs, sizeof abs, "%s/%s", u->st->job_dir, rel);
    if (kp_fs_copy_file(local, abs, hex, &size, u->errstr, u->errlen) != 0)
        return NULL;
    u->bytes += size;
    u->incremental += size;
    return file_json(fname, rel, size, hex, 0);
}

static int is_sst(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".sst") == 0;
}

/* The files of a directory entry (flat, as a RocksDB checkpoint is). */
static json_t *dir_files(upload *u, const kp_snapshot_entry *e)
{
    char stem[240], subdir[400], subabs[4700];
    private_stem(stem, sizeof stem, u, e);
    snprintf(subdir, sizeof subdir, "%s/%s", u->priv_rel, stem);
    snprintf(subabs, sizeof subabs, "%s/%s", u->st->job_dir, subdir);
    if (kp_fs_mkdirs(subabs, u->errstr, u->errlen) != 0)
        return NULL;
    DIR *d = opendir(e->dir);
    if (!d) {
        snprintf(u->errstr, u->errlen, "cannot open %s: %s", e->dir, strerror(errno));
        return NULL;
    }
    json_t *files = json_array();
    struct dirent *de;
    while (files && (de = readdir(d))) {
        char local[4600];
        struct stat st;
        snprintf(local, sizeof local, "%s/%s", e->dir, de->d_name);
        if (de->d_name[0] == '.' || stat(local, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        json_t *f = is_sst(de->d_name) ? shared_file(u, e, local, de->d_name, (uint64_t)st.st_size)
                                       : private_file(u, subdir, local, de->d_name);
        if (!f || json_array_append_new(files, f) != 0) {
            json_decref(files);
            files = NULL;
        }
    }
    closedir(d);
    if (files && kp_fs_fsync_dir(subabs, u->errstr, u->errlen) != 0) {
        json_decref(files);
        return NULL;
    }
    return files;
}

static json_t *entry_json(upload *u, const kp_snapshot_entry *e)
{
    json_t *kg = e->kg_lo < 0 ? json_null() : json_pack("[i, i]", e->kg_lo, e->kg_hi);
    json_t *j = json_pack("{s:s, s:s, s:o}", "uid", e->uid, "name", e->name, "kg", kg);
    json_t *v;
    const char *key;
    if (e->is_dir) {
        key = "files";
        v = dir_files(u, e);
    } else if (e->len <= KP_CKPT_INLINE_MAX) {
        key = "blob";
        v = blob_inline(u, e);
    } else {
        key = "blob_file";
        v = blob_file(u, e);
    }
    if (!j || !v || json_object_set_new(j, key, v) != 0) {
        if (!v && !u->errstr[0])
            snprintf(u->errstr, u->errlen, "out of memory");
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *ack_json(upload *u, const kp_snapshot *s)
{
    json_t *entries = json_array();
    for (size_t i = 0; entries && i < kp_snapshot_count(s); i++) {
        u->cur = i;
        json_t *e = entry_json(u, kp_snapshot_entry_at(s, i));
        if (!e || json_array_append_new(entries, e) != 0) {
            json_decref(entries);
            return NULL;
        }
    }
    if (u->ncreated && kp_fs_fsync_dir(u->st->shared_dir, u->errstr, u->errlen) != 0) {
        json_decref(entries);
        return NULL;
    }
    if (kp_fs_fsync_dir(u->priv_abs, u->errstr, u->errlen) != 0) {
        json_decref(entries);
        return NULL;
    }
    double align_ms, sync_ms;
    kp_snapshot_times(s, &align_ms, &sync_ms);
    json_t *ack = json_pack("{s:I, s:i, s:i, s:i, s:f, s:f, s:I, s:I, s:o}", "checkpoint",
                            (json_int_t)kp_snapshot_id(s), "task", kp_snapshot_task(s), "subtask",
                            kp_snapshot_subtask(s), "parallelism", kp_snapshot_parallelism(s),
                            "align_ms", align_ms, "sync_ms", sync_ms, "bytes", (json_int_t)u->bytes,
                            "incremental_bytes", (json_int_t)u->incremental, "entries", entries);
    int eoi = kp_snapshot_end_of_input(s);
    if (ack && eoi >= 0 && json_object_set_new(ack, "end_of_input", json_boolean(eoi)) != 0) {
        json_decref(ack);
        return NULL;
    }
    return ack;
}

char *kp_ckpt_store_upload(kp_ckpt_store *st, const kp_snapshot *s, char *errstr, size_t errlen)
{
    double t0 = kp_mono_s();
    upload u = {.st = st, .errstr = errstr, .errlen = errlen};
    errstr[0] = 0;
    snprintf(u.priv_rel, sizeof u.priv_rel, "chk-%lld/%d-%d", (long long)kp_snapshot_id(s),
             kp_snapshot_task(s), kp_snapshot_subtask(s));
    snprintf(u.priv_abs, sizeof u.priv_abs, "%s/%s", st->job_dir, u.priv_rel);
    char *text = NULL;
    json_t *ack = NULL;
    if (kp_fs_mkdirs(u.priv_abs, errstr, errlen) == 0)
        ack = ack_json(&u, s);
    if (ack) {
        json_object_set_new(ack, "async_ms", json_real((kp_mono_s() - t0) * 1000.0));
        text = json_dumps(ack, JSON_COMPACT);
        if (!text)
            snprintf(errstr, errlen, "out of memory");
    }
    json_decref(ack);
    if (!text) {
        kp_fs_rmtree(u.priv_abs);
        for (size_t i = 0; i < u.ncreated; i++)
            unlink(u.created[i]);
    }
    for (size_t i = 0; i < u.ncreated; i++)
        free(u.created[i]);
    free(u.created);
    return text;
}
