/* Shell helpers shared by the end-to-end tests; see shell.h. */
#include "shell.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *kp_test_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set (run the test through meson test)", name);
    return v;
}

int kp_test_sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void kp_test_capture(char *buf, size_t len, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    buf[0] = 0;
    if (!fgets(buf, (int)len, p))
        buf[0] = 0;
    buf[strcspn(buf, "\n")] = 0;
    pclose(p);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) != 0)
        return errno ? errno : -1;
    return 0;
}

void kp_test_rmtree(const char *path)
{
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    cr_assert(rc == 0 || (rc == -1 && errno == ENOENT), "cannot remove %s: %s", path,
              strerror(rc > 0 ? rc : errno));
}
