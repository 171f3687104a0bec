/* Plugin uploads: the .so bytes of POST /jobs are streamed into --state-dir/uploads under a
 * name the server makes (mkstemp), hashed while they arrive (sha256, libcrypto EVP), and kept
 * only when the hash equals the manifest's plugin_sha256 — then under the name <sha256>.so,
 * again a name of the server's making. Nothing a client sends ever becomes part of a path. The
 * file is fsync'd before the job that refers to it is recorded. Content addressing makes a
 * resubmission of the same plugin store nothing new. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jm.h"

struct kp_upload_t {
    int fd;
    char dir[3072]; /* main refuses longer --state-dir paths */
    char tmp[4096];
    EVP_MD_CTX *md;
    uint64_t size;
};

static void hex_of(const unsigned char *d, unsigned n, char hex[KP_JM_SHA_LEN])
{
    for (unsigned i = 0; i < n && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    hex[64] = '\0';
}

void kp_jm_sha256_hex(const void *data, size_t len, char hex[KP_JM_SHA_LEN])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
    hex_of(d, n, hex);
}

kp_upload_t *kp_upload_begin(const char *state_dir, char *err, size_t errlen)
{
    kp_upload_t *up = calloc(1, sizeof *up);
    if (!up) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(up->dir, sizeof up->dir, "%s/uploads", state_dir);
    if (mkdir(up->dir, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", up->dir, strerror(errno));
        free(up);
        return NULL;
    }
    snprintf(up->tmp, sizeof up->tmp, "%s/.upload-XXXXXX", up->dir);
    up->fd = mkostemp(up->tmp, O_CLOEXEC);
    up->md = EVP_MD_CTX_new();
    if (up->fd < 0 || !up->md || !EVP_DigestInit_ex(up->md, EVP_sha256(), NULL)) {
        snprintf(err, errlen, "cannot start an upload in %s: %s", up->dir, strerror(errno));
        if (up->fd >= 0) {
            close(up->fd);
            unlink(up->tmp);
        }
        EVP_MD_CTX_free(up->md);
        free(up);
        return NULL;
    }
    return up;
}

int kp_upload_write(kp_upload_t *up, const void *data, size_t len)
{
    if (!EVP_DigestUpdate(up->md, data, len))
        return -1;
    if (kp_jm_write_all(up->fd, data, len))
        return -1;
    up->size += len;
    return 0;
}

uint64_t kp_upload_size(const kp_upload_t *up)
{
    return up->size;
}

void kp_upload_abort(kp_upload_t *up)
{
    if (!up)
        return;
    close(up->fd);
    unlink(up->tmp);
    EVP_MD_CTX_free(up->md);
    free(up);
}

void kp_uploads_sweep(const char *state_dir)
{
    char dir[3072], path[4096];
    snprintf(dir, sizeof dir, "%s/uploads", state_dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, ".upload-", 8)) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (unlink(path) == 0)
                kp_jm_log("removed %s, an upload a previous run did not finish", path);
        }
    closedir(d);
}

int kp_upload_path(const char *state_dir, const char *sha, char *out, size_t outlen)
{
    if (!sha || strlen(sha) != 64 || !kp_jm_is_hex(sha, 64))
        return -1;
    snprintf(out, outlen, "%s/uploads/%s.so", state_dir, sha);
    return 0;
}

int kp_upload_commit(kp_upload_t *up, const char *expect_sha, char *err, size_t errlen)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    char hex[KP_JM_SHA_LEN], dst[4096];
    EVP_DigestFinal_ex(up->md, d, &n);
    hex_of(d, n, hex);
    if (up->size == 0) {
        snprintf(err, errlen, "the plugin part is empty");
    } else if (!expect_sha || strcmp(hex, expect_sha)) {
        snprintf(err, errlen, "the plugin's sha256 is %s, the manifest says %s", hex,
                 expect_sha ? expect_sha : "(nothing)");
    } else if (fsync(up->fd)) {
        snprintf(err, errlen, "cannot sync the upload: %s", strerror(errno));
    } else {
        snprintf(dst, sizeof dst, "%s/%s.so", up->dir, hex);
        if (rename(up->tmp, dst) == 0) {
            kp_jm_fsync_dir(up->dir);
            close(up->fd);
            EVP_MD_CTX_free(up->md);
            free(up);
            return 0;
        }
        snprintf(err, errlen, "cannot store the upload: %s", strerror(errno));
    }
    kp_upload_abort(up);
    return -1;
}
