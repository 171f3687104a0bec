/* The cluster integration tests' scaffolding, once instead of a copy per test; see itest.h. */
#include "itest.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shell.h"

static const char *dir_; /* the scratch directory of this test process (kp_itest_open) */

void kp_itest_open(char *dir_template)
{
    cr_assert_not_null(mkdtemp(dir_template), "cannot create %s", dir_template);
    dir_ = dir_template;
}

const char *kp_itest_path(const char *name)
{
    static char p[8][400];
    static int next;
    cr_assert_not_null(dir_, "kp_itest_path before kp_itest_open");
    char *s = p[next++ % 8];
    snprintf(s, sizeof p[0], "%s/%s", dir_, name);
    return s;
}

void kp_itest_close(const char *who)
{
    if (!dir_)
        return;
    if (!getenv("KAPPA_KEEP_TEST_DIR"))
        kp_test_rmtree(dir_);
    else
        fprintf(stderr, "%s: kept %s\n", who, dir_);
}

void kp_itest_topic_delete(const char *brokers, const char *topic)
{
    kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-delete %s >/dev/null 2>&1", brokers,
               kp_test_env("KAPPA_SRC"), topic);
}

void kp_itest_indices_delete(const char *es, const char *prefix)
{
    kp_test_sh("curl -s -XDELETE '%s/%s-%d-*' >/dev/null", es, prefix, (int)getpid());
}

void kp_itest_start_cluster(jm_proc *jm, pid_t tm[2])
{
    const char *flags[] = {"--restart-delay-ms", "200", NULL};
    jm_start(jm, kp_itest_path("jm"), flags);
    tm[0] = tm_proc_start(jm, kp_itest_path("tm1"), 4);
    tm[1] = tm_proc_start(jm, kp_itest_path("tm2"), 4);
    wait_taskmanagers(jm, 2);
}

void kp_itest_stop_cluster(jm_proc *jm, pid_t tm[2])
{
    for (int i = 0; i < 2; i++)
        if (tm[i] > 0)
            tm_proc_stop(tm[i]);
    tm[0] = tm[1] = 0;
    jm_stop(jm);
}

void kp_itest_await_state(const jm_proc *jm, const char *job, const char *want, int seconds)
{
    char got[32] = "";
    double end = kp_itest_now_s() + seconds;
    while (kp_itest_now_s() < end) {
        if (!strcmp(job_state(jm, job, got, sizeof got), want))
            return;
        usleep(100 * 1000);
    }
    kp_test_sh("tail -n 30 %s/jm.log >&2", dir_);
    cr_assert_fail("job %s is %s after %d s, expected %s", job, got, seconds, want);
}

double kp_itest_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}
