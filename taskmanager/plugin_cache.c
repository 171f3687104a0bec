/* The verified plugin cache (plugin_cache.h): sha256 with libcrypto's EVP interface, written
 * incrementally as chunks arrive so a plugin never has to fit in memory twice. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin_cache.h"
#include "tm.h"

struct kp_tm_fetch {
    char sha256[65];
    char tmp[1024], path[1024];
    int fd;
    uint64_t size, received;
    EVP_MD_CTX *md;
};

int kp_tm_sha256_valid(const char *hex)
{
    size_t n = 0;
    for (; hex[n]; n++)
        if (!((hex[n] >= '0' && hex[n] <= '9') || (hex[n] >= 'a' && hex[n] <= 'f')))
            return 0;
    return n == 64;
}

static void hex_digest(EVP_MD_CTX *md, char hex[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, d, &n);
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* sha256 hex of a file's bytes. 0, or -1 with errno set. */
static int hash_file(const char *path, char hex[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    static __thread unsigned char buf[1 << 16];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        EVP_DigestUpdate(md, buf, (size_t)n);
    int saved = errno;
    close(fd);
    if (n == 0)
        hex_digest(md, hex);
    EVP_MD_CTX_free(md);
    errno = saved;
    return n == 0 ? 0 : -1;
}

int kp_tm_plugin_cached(const char *dir, const char *sha256, char *path, size_t pathlen, char *err,
                        size_t errlen)
{
    snprintf(path, pathlen, "%s/%s.so", dir, sha256);
    char got[65] = "";
    if (hash_file(path, got) != 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "cannot read the cached plugin %s: %s", path, strerror(errno));
        return -1;
    }
    if (!strcmp(got, sha256))
        return 1;
    kp_tm_log("cached plugin %s hashes to %s, not its name: removed, fetching it again", path, got);
    unlink(path);
    return 0;
}

kp_tm_fetch *kp_tm_fetch_begin(const char *dir, const char *sha256, uint64_t size, char *err,
                               size_t errlen)
{
    if (size == 0 || size > KP_TM_PLUGIN_MAX) {
        snprintf(err, errlen, "plugin size %llu is outside 1..%llu bytes", (unsigned long long)size,
                 KP_TM_PLUGIN_MAX);
        return NULL;
    }
    if (kp_tm_mkdirs(dir) != 0) {
        snprintf(err, errlen, "cannot create the plugin cache %s: %s", dir, strerror(errno));
        return NULL;
    }
    kp_tm_fetch *f = calloc(1, sizeof *f);
    if (!f || !(f->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(f->md, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "out of memory starting a plugin download");
        if (f)
            EVP_MD_CTX_free(f->md);
        free(f);
        return NULL;
    }
    snprintf(f->sha256, sizeof f->sha256, "%s", sha256);
    snprintf(f->path, sizeof f->path, "%s/%s.so", dir, sha256);
    snprintf(f->tmp, sizeof f->tmp, "%s/.%s.%d.part", dir, sha256, (int)getpid());
    f->size = size;
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", f->tmp, strerror(errno));
        EVP_MD_CTX_free(f->md);
        free(f);
        return NULL;
    }
    return f;
}

const char *kp_tm_fetch_sha256(const kp_tm_fetch *f)
{
    return f->sha256;
}

static int write_all(int fd, const unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The last chunk arrived: compare the digest, then make the file durable and visible. */
static int finish(kp_tm_fetch *f, char *err, size_t errlen)
{
    char got[65] = "";
    hex_digest(f->md, got);
    if (strcmp(got, f->sha256) != 0) {
        snprintf(err, errlen,
                 "plugin bytes do not match their sha256: expected %s, the %llu bytes received "
                 "hash to %s; refusing to load them",
                 f->sha256, (unsigned long long)f->size, got);
        return -1;
    }
    if (fsync(f->fd) != 0 || close(f->fd) != 0) {
        f->fd = -1;
        snprintf(err, errlen, "cannot write %s: %s", f->tmp, strerror(errno));
        return -1;
    }
    f->fd = -1;
    if (rename(f->tmp, f->path) != 0) {
        snprintf(err, errlen, "cannot move the plugin to %s: %s", f->path, strerror(errno));
        return -1;
    }
    return 1;
}

int kp_tm_fetch_add(kp_tm_fetch *f, uint64_t offset, uint64_t total, const void *bytes, size_t len,
                    char *err, size_t errlen)
{
    if (total != f->size || offset != f->received || len > f->size - f->received) {
        snprintf(err, errlen,
                 "plugin chunk out of order: offset %llu, %zu bytes of %llu, expected offset "
                 "%llu of %llu",
                 (unsigned long long)offset, len, (unsigned long long)total,
                 (unsigned long long)f->received, (unsigned long long)f->size);
        goto fail;
    }
    if (write_all(f->fd, bytes, len) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", f->tmp, strerror(errno));
        goto fail;
    }
    EVP_DigestUpdate(f->md, bytes, len);
    f->received += len;
    if (f->received < f->size)
        return 0;
    if (finish(f, err, errlen) == 1)
        return 1;
fail:
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
    return -1;
}

void kp_tm_fetch_free(kp_tm_fetch *f)
{
    if (!f)
        return;
    if (f->fd >= 0) {
        close(f->fd);
        unlink(f->tmp);
    }
    EVP_MD_CTX_free(f->md);
    free(f);
}
