/* The fencing epoch counter file (epoch_file.h): read under an flock, bumped, written
 * atomically (temporary file, fsync, rename, directory fsync), so a crash leaves the old or
 * the new value and two runs starting at once never share an epoch. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "epoch_file.h"

#define EPOCH_MAX ((int64_t)1 << 62)

/* The stored epoch, 0 if the file is missing; -1 with errstr if unreadable or corrupt. */
static int read_stored(const char *path, int64_t *out, char *errstr, size_t errlen)
{
    *out = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0;
    if (fd < 0) {
        snprintf(errstr, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        snprintf(errstr, errlen, "%s: %s", path, strerror(e));
        return -1;
    }
    buf[n] = 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || buf[0] < '0' || buf[0] > '9' || errno || (*end && strcmp(end, "\n")) ||
        v < 0 || v >= EPOCH_MAX) {
        buf[strcspn(buf, "\n")] = 0;
        snprintf(errstr, errlen,
                 "%s: corrupt fencing epoch file (\"%.20s%s\", expected one decimal number): "
                 "write the highest epoch any earlier run of this job used into it, or remove "
                 "it to start again from the wall clock in seconds",
                 path, buf, n >= 20 ? "..." : "");
        return -1;
    }
    *out = v;
    return 0;
}

/* dir/epoch ← value, atomically. 0 or -1 with errstr. */
static int write_stored(const char *dir, const char *path, int64_t value, char *errstr,
                        size_t errlen)
{
    char tmp[4200], text[32];
    snprintf(tmp, sizeof tmp, "%s/.epoch.tmp.%ld", dir, (long)getpid());
    int len = snprintf(text, sizeof text, "%" PRId64 "\n", value);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(errstr, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    /* a few bytes into a fresh regular file: one write, whole or failed */
    if (write(fd, text, (size_t)len) != (ssize_t)len || fsync(fd) != 0) {
        snprintf(errstr, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(errstr, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        snprintf(errstr, errlen, "%s: fsync: %s", dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    close(dfd);
    return 0;
}

/* mkdir -p dir. 0 or -1 (errno). */
static int make_dirs(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -1;
        *c = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int kp_epoch_next(const char *dir, int64_t now_s, int64_t *out, char *errstr, size_t errlen)
{
    char path[4096], lock[4096];
    if (!dir || !dir[0] || snprintf(path, sizeof path, "%s/epoch", dir) >= (int)sizeof path ||
        snprintf(lock, sizeof lock, "%s/epoch.lock", dir) >= (int)sizeof lock) {
        snprintf(errstr, errlen, "fencing epoch: no directory, or its path is too long");
        return -1;
    }
    if (make_dirs(dir) != 0) {
        snprintf(errstr, errlen, "%s: cannot create the directory of the epoch file: %s", dir,
                 strerror(errno));
        return -1;
    }
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) {
        snprintf(errstr, errlen, "%s: %s", lock, strerror(errno));
        return -1;
    }
    int rc;
    while ((rc = flock(lfd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    if (rc != 0) {
        snprintf(errstr, errlen, "%s: flock: %s", lock, strerror(errno));
        close(lfd);
        return -1;
    }
    int64_t stored;
    rc = read_stored(path, &stored, errstr, errlen);
    if (rc == 0 && stored + 1 >= EPOCH_MAX) {
        snprintf(errstr, errlen, "%s: fencing epoch %" PRId64 " cannot grow any more", path,
                 stored);
        rc = -1;
    }
    int64_t next = stored + 1 > now_s ? stored + 1 : now_s;
    if (rc == 0)
        rc = write_stored(dir, path, next, errstr, errlen);
    close(lfd); /* releases the lock */
    if (rc == 0)
        *out = next;
    return rc;
}
