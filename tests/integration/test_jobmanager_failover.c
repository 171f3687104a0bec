/* A taskmanager killed (kill -9) under a running job, with real processes and a real Kafka
 * broker: the jobmanager notices it by its closed connection, the job goes FAILING →
 * RESTARTING with the lost taskmanager as its exception, and is deployed again (attempt 1) on
 * the taskmanager that is left, where it runs; `kappa cancel` then ends it CANCELED. The Kafka
 * source never ends, so the job is surely running when the taskmanager dies. How long the
 * jobmanager took to notice is printed (a figure, not asserted). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/shell.h"
#include "../unit/jm_harness.h"
#include "clock.h"

static char dir_[256];

static void cleanup(void)
{
    jm_kill_all();
    kp_test_rmtree(dir_);
}

/* The number of live taskmanagers GET /taskmanagers lists. */
static size_t live_taskmanagers(const jm_proc *jm)
{
    http_reply r = http_req(jm, "GET", "/taskmanagers", NULL);
    size_t n = json_array_size(json_object_get(r.body, "taskmanagers"));
    http_free(&r);
    return n;
}

Test(jobmanager_failover, killed_taskmanager_restarts_the_job_elsewhere, .fini = cleanup)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-jm-failover-%d", (int)getpid());
    kp_test_rmtree(dir_);
    cr_assert_eq(kp_test_sh("mkdir -p %s", dir_), 0);
    const char *brokers = kp_test_env("KAPPA_BROKERS"), *src = kp_test_env("KAPPA_SRC");
    char topic[64];
    snprintf(topic, sizeof topic, "jm-failover-%d", (int)getpid());
    cr_assert_eq(kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s 2 >/dev/null "
                            "2>&1",
                            brokers, src, topic),
                 0, "cannot create topic %s at %s", topic, brokers);
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s --partitions 2 --count 20000 --quiet",
                            kp_test_env("KAPPA_GEN"), brokers, topic),
                 0);

    char jmdir[300], tm1dir[300], tm2dir[300];
    snprintf(jmdir, sizeof jmdir, "%s/jm", dir_);
    snprintf(tm1dir, sizeof tm1dir, "%s/tm1", dir_);
    snprintf(tm2dir, sizeof tm2dir, "%s/tm2", dir_);
    jm_proc jm;
    const char *flags[] = {"--restart-delay-ms", "200", NULL};
    jm_start(&jm, jmdir, flags);
    pid_t tm1 = tm_proc_start(&jm, tm1dir, 2);
    pid_t tm2 = tm_proc_start(&jm, tm2dir, 2);
    wait_taskmanagers(&jm, 2);

    /* p=2 needs 2 slots, taken round-robin: one on each taskmanager */
    cr_assert_eq(kp_test_sh("%s submit %s/hourly_clicks.so --jobmanager %s -p 2 --name failover "
                            "--brokers %s --from-earliest --source clicks=kafka:%s "
                            "--sink hourly-click-index=file:%s/out.ndjson >%s/submit.out 2>&1",
                            kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), jm.rest, brokers,
                            topic, dir_, dir_),
                 0, "kappa submit failed (see %s/submit.out)", dir_);
    wait_job_state(&jm, "failover", "RUNNING");

    kp_time t0 = kp_mono_ms();
    tm_proc_kill(tm1);
    while (live_taskmanagers(&jm) != 1 && kp_mono_ms() - t0 < 20000)
        usleep(5000);
    kp_time noticed = kp_mono_ms() - t0;
    cr_assert_eq(live_taskmanagers(&jm), 1, "the killed taskmanager is still listed");
    fprintf(stderr, "jobmanager_failover: killed taskmanager gone from REST after %lld ms\n",
            (long long)noticed);

    wait_job_state(&jm, "failover", "RUNNING"); /* again: attempt 1 on the other taskmanager */
    http_reply r = http_req(&jm, "GET", "/jobs/failover", NULL);
    cr_assert_eq(json_integer_value(json_object_get(r.body, "attempt")), 1);
    json_t *exc = json_array_get(json_object_get(r.body, "exceptions"), 0);
    const char *msg = json_string_value(json_object_get(exc, "message"));
    cr_assert(msg && strstr(msg, "lost: connection closed by peer"), "first exception: %s",
              msg ? msg : "(null)");
    cr_assert_str_eq(json_string_value(json_object_get(exc, "to")), "FAILING");
    http_free(&r);

    cr_assert_eq(kp_test_sh("%s cancel failover --jobmanager %s >/dev/null 2>&1",
                            kp_test_env("KAPPA_CLI"), jm.rest),
                 0);
    wait_job_state(&jm, "failover", "CANCELED");
    tm_proc_stop(tm2);
    jm_stop(&jm);
}
