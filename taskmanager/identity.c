/* The taskmanager's files outside job state: its stable instance id in --state-dir, and the
 * directory helpers the plugin cache and deployments use. The id lives on disk so a restarted
 * or reconnecting taskmanager registers under the same name. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tm.h"

int kp_tm_mkdirs(const char *path)
{
    char buf[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) != 0)
        kp_tm_log("could not remove %s: %s", path, strerror(errno));
    return 0; /* go on: remove as much as possible */
}

void kp_tm_rmtree(const char *path)
{
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        kp_tm_log("could not remove %s: %s", path, strerror(errno));
}

static int valid_id(const char *id)
{
    if (strlen(id) != KP_TM_ID_LEN - 1)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static int read_id(const char *path, char id[KP_TM_ID_LEN])
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[128] = "";
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    if (!ok || !valid_id(line))
        return -2;
    memcpy(id, line, KP_TM_ID_LEN);
    return 0;
}

/* Writes a fresh id through a temporary file and rename, so a crash never leaves half an id. */
static int write_id(const char *path, char id[KP_TM_ID_LEN], char *err, size_t errlen)
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        snprintf(err, errlen, "cannot draw a random instance id: %s", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%s\n", id) > 0;
    ok = f && fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    if (f)
        ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s (is --state-dir writable?)", path,
                 strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int kp_tm_identity_load(const char *state_dir, char id[KP_TM_ID_LEN], char *err, size_t errlen)
{
    if (kp_tm_mkdirs(state_dir) != 0) {
        snprintf(err, errlen, "cannot create --state-dir %s: %s", state_dir, strerror(errno));
        return -1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/instance-id", state_dir);
    int rc = read_id(path, id);
    if (rc == -2) {
        snprintf(err, errlen,
                 "%s does not hold a taskmanager id (32 hex digits); remove it to get a new id",
                 path);
        return -1;
    }
    return rc == 0 ? 0 : write_id(path, id, err, errlen);
}
