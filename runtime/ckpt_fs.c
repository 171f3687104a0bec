/* File-system steps of checkpoint storage (ckpt_fs.h). Everything that must survive a crash is
 * written to a temp name, fsynced and renamed, so a reader sees either nothing or the whole
 * file; the temp names carry the pid so concurrent writers never share one. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_fs.h"

#define COPY_BUF (256 * 1024)

static int fail(char *errstr, size_t errlen, const char *what, const char *path)
{
    int e = errno;
    snprintf(errstr, errlen, "%s %s: %s", what, path, strerror(e));
    errno = e;
    return -1;
}

int kp_fs_mkdirs(const char *path, char *errstr, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        snprintf(errstr, errlen, "path too long: %s", path);
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return fail(errstr, errlen, "cannot create directory", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return fail(errstr, errlen, "cannot create directory", tmp);
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    int rc = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    return (rc != 0 && errno != ENOENT) ? -1 : 0;
}

int kp_fs_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int kp_fs_fsync_dir(const char *dir, char *errstr, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return fail(errstr, errlen, "cannot open directory", dir);
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc != 0 ? fail(errstr, errlen, "cannot fsync directory", dir) : 0;
}

static void to_hex(const unsigned char *md, unsigned n, char hex[KP_SHA256_HEX_LEN])
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n && i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = 0;
}

void kp_fs_hash_buf(const void *data, size_t len, char hex[KP_SHA256_HEX_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    to_hex(md, n, hex);
}

/* Reads fd to the end, hashing, and writes every block to out_fd unless it is -1. */
static int pump(int fd, int out_fd, char hex[KP_SHA256_HEX_LEN], uint64_t *size, const char *src,
                const char *dst, char *errstr, size_t errlen)
{
    char *buf = malloc(COPY_BUF);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = -1;
    if (!buf || !md) {
        snprintf(errstr, errlen, "out of memory copying %s", src);
        goto out;
    }
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, COPY_BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fail(errstr, errlen, "cannot read", src);
            goto out;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(md, buf, (size_t)n);
        total += (uint64_t)n;
        for (ssize_t off = 0; out_fd >= 0 && off < n;) {
            ssize_t w = write(out_fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                fail(errstr, errlen, "cannot write", dst);
                goto out;
            }
            off += w;
        }
    }
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(md, out, &len);
    to_hex(out, len, hex);
    *size = total;
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    free(buf);
    return rc;
}

int kp_fs_hash_file(const char *path, char hex[KP_SHA256_HEX_LEN], uint64_t *size, char *errstr,
                    size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return fail(errstr, errlen, "cannot open", path);
    int rc = pump(fd, -1, hex, size, path, NULL, errstr, errlen);
    close(fd);
    return rc;
}

/* path.tmp-<pid>-<n>: unique across processes and across the threads of one. */
static void temp_name(char *out, size_t len, const char *path)
{
    static atomic_uint seq;
    snprintf(out, len, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&seq, 1));
}

/* Closes fd after fsync; a failed fsync or close (delayed ENOSPC) fails the write. */
static int sync_close(int fd, const char *path, char *errstr, size_t errlen)
{
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return fail(errstr, errlen, "cannot fsync", path);
    }
    return close(fd) != 0 ? fail(errstr, errlen, "cannot close", path) : 0;
}

int kp_fs_copy_file(const char *src, const char *dst, char hex[KP_SHA256_HEX_LEN], uint64_t *size,
                    char *errstr, size_t errlen)
{
    char tmp[4200];
    temp_name(tmp, sizeof tmp, dst);
    int in = open(src, O_RDONLY);
    if (in < 0)
        return fail(errstr, errlen, "cannot open", src);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        fail(errstr, errlen, "cannot create", tmp);
        close(in);
        return -1;
    }
    int rc = pump(in, out, hex, size, src, tmp, errstr, errlen);
    close(in);
    if (rc == 0)
        rc = sync_close(out, tmp, errstr, errlen);
    else
        close(out);
    if (rc == 0 && rename(tmp, dst) != 0)
        rc = fail(errstr, errlen, "cannot rename to", dst);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int kp_fs_link_file(const char *src, const char *dst, char hex[KP_SHA256_HEX_LEN], uint64_t *size,
                    char *errstr, size_t errlen)
{
    char tmp[4200];
    temp_name(tmp, sizeof tmp, dst);
    if (link(src, tmp) != 0)
        return 1;
    /* a fresh timestamp, as a copy would have: garbage collection spares files newer than the
     * oldest pending checkpoint, and an SST may be much older than the checkpoint storing it */
    utimensat(AT_FDCWD, tmp, NULL, 0);
    int fd = open(tmp, O_RDONLY);
    int rc = fd < 0 ? fail(errstr, errlen, "cannot open", tmp)
                    : pump(fd, -1, hex, size, tmp, NULL, errstr, errlen);
    if (rc == 0) /* cheap if the writer synced it already; durable if it did not */
        rc = sync_close(fd, tmp, errstr, errlen);
    else if (fd >= 0)
        close(fd);
    if (rc != 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, dst) != 0) {
        fail(errstr, errlen, "cannot rename to", dst);
        unlink(tmp);
        return -1;
    }
    return 0;
}

int kp_fs_write_temp(const char *path, const void *data, size_t len, char *tmp, size_t tmplen,
                     char *errstr, size_t errlen)
{
    temp_name(tmp, tmplen, path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return fail(errstr, errlen, "cannot create", tmp);
    const char *p = data;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fail(errstr, errlen, "cannot write", tmp);
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (sync_close(fd, tmp, errstr, errlen) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int kp_fs_commit_temp(const char *tmp, const char *path, char *errstr, size_t errlen)
{
    if (rename(tmp, path) != 0) {
        fail(errstr, errlen, "cannot rename to", path);
        unlink(tmp);
        return -1;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    return kp_fs_fsync_dir(dirname(dir), errstr, errlen);
}

int kp_fs_write_atomic(const char *path, const void *data, size_t len, char *errstr, size_t errlen)
{
    char tmp[4200];
    if (kp_fs_write_temp(path, data, len, tmp, sizeof tmp, errstr, errlen) != 0)
        return -1;
    return kp_fs_commit_temp(tmp, path, errstr, errlen);
}

int kp_fs_read_file(const char *path, char **data, size_t *len, char *errstr, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(errstr, errlen, "cannot open", path);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        snprintf(errstr, errlen, "cannot read %s", path);
        return -1;
    }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}
