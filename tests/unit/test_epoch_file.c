/* The fencing epoch counter file (runtime/epoch_file.h): a missing file starts from the wall
 * clock, every call grows the epoch by at least one even within the same second, a corrupt
 * file is a clear error that leaves the file alone, and concurrent processes never get the
 * same epoch. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "epoch_file.h"

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "%s/kp-epoch-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void get(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    fclose(f);
}

TestSuite(epoch_file, .init = setup, .fini = teardown);

Test(epoch_file, missing_file_starts_at_the_clock_then_counts)
{
    char err[512], sub[300], path[320], text[64];
    snprintf(sub, sizeof sub, "%s/state", dir); /* not there yet: created */
    int64_t e = 0;
    cr_assert_eq(kp_epoch_next(sub, 1000, &e, err, sizeof err), 0, "%s", err);
    cr_expect_eq(e, 1000);
    /* the same second, and a clock stepped back: still strictly growing */
    cr_assert_eq(kp_epoch_next(sub, 1000, &e, err, sizeof err), 0, "%s", err);
    cr_expect_eq(e, 1001);
    cr_assert_eq(kp_epoch_next(sub, 5, &e, err, sizeof err), 0, "%s", err);
    cr_expect_eq(e, 1002);
    /* a later clock wins over the counter */
    cr_assert_eq(kp_epoch_next(sub, 2000, &e, err, sizeof err), 0, "%s", err);
    cr_expect_eq(e, 2000);
    snprintf(path, sizeof path, "%s/epoch", sub);
    get(path, text, sizeof text);
    cr_expect_str_eq(text, "2000\n");
}

Test(epoch_file, corrupt_file_is_a_clear_error_and_stays)
{
    static const char *const bad[] = {
        "abc\n", "", "12x\n", "-5\n", " 7\n", "9\n9\n", "99999999999999999999999\n"};
    char path[320], err[512], text[64];
    snprintf(path, sizeof path, "%s/epoch", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put(path, bad[i]);
        int64_t e = -1;
        err[0] = 0;
        cr_expect_eq(kp_epoch_next(dir, 1000, &e, err, sizeof err), -1, "'%s' accepted", bad[i]);
        cr_expect_eq(e, -1);
        cr_expect(strstr(err, "corrupt fencing epoch file") && strstr(err, path), "'%s': %s",
                  bad[i], err);
        get(path, text, sizeof text);
        cr_expect_str_eq(text, bad[i], "the corrupt file was rewritten");
    }
    put(path, "41\n"); /* a good value again */
    int64_t e = 0;
    cr_assert_eq(kp_epoch_next(dir, 3, &e, err, sizeof err), 0, "%s", err);
    cr_expect_eq(e, 42);
}

Test(epoch_file, unusable_directory_is_an_error)
{
    char file[300], sub[320], err[512];
    snprintf(file, sizeof file, "%s/plain", dir);
    put(file, "x");
    snprintf(sub, sizeof sub, "%s/below", file); /* under a regular file */
    int64_t e = 0;
    cr_expect_eq(kp_epoch_next(sub, 1, &e, err, sizeof err), -1);
    cr_expect(strstr(err, sub) != NULL, "%s", err);
    cr_expect_eq(kp_epoch_next("", 1, &e, err, sizeof err), -1);
}

/* 4 processes x 50 epochs with a clock that never moves: 200 distinct epochs 1..200. */
Test(epoch_file, concurrent_processes_never_share_an_epoch, .timeout = 60)
{
    enum { PROCS = 4, EACH = 50 };
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    for (int p = 0; p < PROCS; p++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            for (int i = 0; i < EACH; i++) {
                char err[512];
                int64_t e = 0;
                if (kp_epoch_next(dir, 1, &e, err, sizeof err) != 0)
                    e = -1;
                if (write(fds[1], &e, sizeof e) != sizeof e)
                    _exit(2);
            }
            _exit(0);
        }
    }
    close(fds[1]);
    static char seen[PROCS * EACH + 1];
    int64_t e;
    int n = 0;
    while (read(fds[0], &e, sizeof e) == sizeof e) {
        cr_assert(e >= 1 && e <= PROCS * EACH, "epoch %lld", (long long)e);
        cr_expect_eq(seen[e], 0, "epoch %lld handed out twice", (long long)e);
        seen[e] = 1;
        n++;
    }
    close(fds[0]);
    for (int p = 0; p < PROCS; p++) {
        int st = 0;
        wait(&st);
        cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    cr_expect_eq(n, PROCS * EACH);
}
