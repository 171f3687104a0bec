/* Starting programs from tests without a shell; see spawn.h. */
#include "spawn.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

static int dropped(const char *entry, const char *const *drop)
{
    for (; drop && *drop; drop++) {
        size_t n = strlen(*drop);
        if (!strncmp(entry, *drop, n) && entry[n] == '=')
            return 1;
    }
    return 0;
}

pid_t kp_test_spawn(const kp_test_proc *p)
{
    char *envp[1024];
    int ne = 0;
    for (char **e = environ; *e && ne < 1022; e++)
        if (!dropped(*e, p->drop))
            envp[ne++] = *e;
    if (p->add)
        envp[ne++] = (char *)p->add;
    envp[ne] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, p->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, p->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, p->argv[0], &fa, NULL, (char *const *)p->argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s: %s", p->argv[0], strerror(rc));
    return pid;
}

int kp_test_wait(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void kp_test_slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    fclose(f);
}
