/* kappa-jobmanager with real kappa-taskmanager processes and the real `kappa` CLI, no Kafka or
 * Elasticsearch (a file source and a file sink): a submitted job is deployed, runs and
 * finishes with exactly the output `kappa run --local` gives and live metrics for every subtask
 * (the sources' records_in = the input); a jobmanager restart brings the
 * taskmanager back (it re-registers) and shows the finished job again. Every process started
 * here is stopped here. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/shell.h"
#include "../unit/jm_harness.h"

static char dir_[256];

/* Runs after the test whatever happened: nothing it started outlives it. */
static void cleanup(void)
{
    jm_kill_all();
    kp_test_rmtree(dir_);
}

/* The lines of a file, sorted, as one string (the sink's line order depends on subtasks). */
static char *sorted_lines(const char *path)
{
    char cmd[600], *out = NULL;
    size_t cap = 0;
    snprintf(cmd, sizeof cmd, "LC_ALL=C sort '%s'", path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    FILE *m = open_memstream(&out, &cap);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        fwrite(buf, 1, n, m);
    pclose(p);
    fclose(m);
    return out;
}

Test(jobmanager_cluster, submitted_job_runs_on_a_taskmanager_like_run_local, .fini = cleanup)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-jm-cluster-%d", (int)getpid());
    kp_test_rmtree(dir_);
    cr_assert_eq(kp_test_sh("mkdir -p %s", dir_), 0);
    const char *cli = kp_test_env("KAPPA_CLI"), *jobs = kp_test_env("KAPPA_JOBS");
    cr_assert_eq(kp_test_sh("%s --output %s/events.ndjson --count 50000 --seed 7 2>/dev/null",
                            kp_test_env("KAPPA_GEN"), dir_),
                 0);
    char jmdir[300], tmdir[300];
    snprintf(jmdir, sizeof jmdir, "%s/jm", dir_);
    snprintf(tmdir, sizeof tmdir, "%s/tm1", dir_);
    jm_proc jm_store, *jm = &jm_store;
    jm_start(jm, jmdir, NULL);
    pid_t tm = tm_proc_start(jm, tmdir, 2);
    wait_taskmanagers(jm, 1);

    cr_assert_eq(kp_test_sh("%s submit %s/hourly_clicks.so --jobmanager %s -p 2 --name clicks "
                            "--from-earliest --source clicks=file:%s/events.ndjson "
                            "--sink hourly-click-index=file:%s/cluster.ndjson --wait "
                            ">%s/submit.out 2>&1",
                            cli, jobs, jm->rest, dir_, dir_, dir_),
                 0, "kappa submit --wait did not end FINISHED (see %s/submit.out)", dir_);
    char st[32];
    cr_assert_str_eq(job_state(jm, "clicks", st, sizeof st), "FINISHED");
    cr_assert_eq(kp_test_sh("%s run --local %s/hourly_clicks.so -p 2 --source "
                            "clicks=file:%s/events.ndjson --sink "
                            "hourly-click-index=file:%s/local.ndjson 2>/dev/null",
                            cli, jobs, dir_, dir_),
                 0);
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/cluster.ndjson", dir_);
    snprintf(b, sizeof b, "%s/local.ndjson", dir_);
    char *got = sorted_lines(a), *want = sorted_lines(b);
    cr_assert(strlen(want) > 0, "run --local wrote nothing");
    cr_assert(!strcmp(got, want), "the cluster's output differs from run --local's");
    free(got);
    free(want);

    /* live metrics (docs/cluster.md, "Metrics"): every subtask has them, and the source
     * subtasks' records_in add up to the input's lines (a task is named after its path from
     * the source: "source:clicks", "source:clicks->key_by->window") */
    http_reply r = http_req(jm, "GET", "/jobs/clicks", NULL);
    cr_assert_eq(r.status, 200);
    json_t *tasks = json_object_get(r.body, "tasks"), *t, *sub;
    size_t i, k, nsubs = 0;
    long long read = 0, out = 0;
    json_array_foreach(tasks, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        json_array_foreach(json_object_get(t, "subtasks"), k, sub)
        {
            json_t *m = json_object_get(sub, "metrics");
            cr_assert(json_is_object(m), "task %s subtask %zu has no metrics", name, k);
            nsubs++;
            if (name && !strncmp(name, "source:", 7) && !strstr(name, "->")) /* a source task */
                read += json_integer_value(json_object_get(m, "records_in"));
            out += json_integer_value(json_object_get(m, "records_out"));
        }
    }
    cr_assert_gt(nsubs, 2);
    cr_assert_gt(out, 0);
    snprintf(a, sizeof a, "test $(wc -l < %s/events.ndjson) -eq %lld", dir_, read);
    cr_assert_eq(kp_test_sh("%s", a), 0, "the sources' records_in (%lld) is not the input's lines",
                 read);
    http_free(&r);
    cr_assert_eq(kp_test_sh("%s status clicks --jobmanager %s | grep 'RECORDS IN' >/dev/null && "
                            "%s status clicks --jobmanager %s | grep -E ' %lld +%lld$' >/dev/null",
                            cli, jm->rest, cli, jm->rest, read, read),
                 0, "kappa status shows records in/out per subtask");

    /* the jobmanager restarts on the same control port: the taskmanager comes back and the
     * finished job is listed again */
    char port[16];
    snprintf(port, sizeof port, "%d", jm->rpc_port);
    jm_stop(jm);
    const char *same_port[] = {"--rpc-port", port, NULL};
    jm_start(jm, jmdir, same_port);
    wait_taskmanagers(jm, 1);
    cr_assert_str_eq(job_state(jm, "clicks", st, sizeof st), "FINISHED");
    tm_proc_stop(tm);
    jm_stop(jm);
}
