/* The seed scenario end to end against the real services: kappa-gen writes 1M click events
 * (7 days, 10 s jitter, late events, 1 % malformed) to an 8-partition Kafka topic; `kappa run
 * --local hourly_clicks.so --from-earliest` reads it and writes Elasticsearch; the index must
 * equal the generator's truth exactly and the dead-letter topic must hold exactly the malformed
 * messages. The fault tests do the same while Elasticsearch is down for 30 s and while the
 * broker restarts — for those the test starts its own Kafka and OpenSearch (in its own
 * directories, so it can restart them) and stops them at the end. They inject the fault once
 * the job has written its first results, and assert that it overlapped the run: results
 * still missing when it began, the job alive through it, and the connector's own evidence
 * (the sink's retries, the source's report of the lost broker). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"

static char dir[] = "/tmp/kappa-e2e-XXXXXX";
static char brokers[128], es[128], topic[64], index_[64];

static void names(const char *what)
{
    snprintf(topic, sizeof topic, "clicks-%s-%ld-%d", what, (long)time(NULL), getpid());
    snprintf(index_, sizeof index_, "hourly-%s-%ld-%d", what, (long)time(NULL), getpid());
}

/* Creates the 8-partition topic (and the dead-letter topic) and generates the events, late
 * ones included: which records are late depends on the watermark when they arrive, so an exact
 * match also proves the source's watermark alignment held through the fault. */
static const double late_fraction = 0.001;

static void produce(void)
{
    const char *src = kp_test_env("KAPPA_SRC");
    cr_assert_eq(
        kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s 8 >/dev/null 2>&1 && "
                   "KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s-dead 1 >/dev/null 2>&1",
                   brokers, src, topic, brokers, src, topic),
        0, "cannot create topics at %s", brokers);
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s --count 1000000 --out-of-order-ms 10000 "
                            "--late-fraction %g --malformed 0.01 --seed 11 --truth %s/truth.tsv "
                            "--quiet",
                            kp_test_env("KAPPA_GEN"), brokers, topic, late_fraction, dir),
                 0);
}

/* The job start_job started and wait_job has not reaped: teardown stops it when a test fails
 * half-way, so no kappa process outlives its test. */
static pid_t running_job;

/* Starts the job in the background; returns its pid. */
static pid_t start_job(void)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "exec %s run --local %s/hourly_clicks.so -p 2 --brokers %s --es-url %s "
             "--from-earliest --source 'clicks=kafka:%s?stop_at=end' "
             "--sink hourly-click-index=es:%s --on-error clicks=dead-letter "
             "--dead-letter clicks=kafka:%s-dead --stats >%s/job.out 2>%s/job.err",
             kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), brokers, es, topic, index_, topic,
             dir, dir);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    running_job = pid;
    return pid;
}

static int wait_job(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    running_job = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        kp_test_sh("cat %s/job.err >&2", dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* 1 while the job runs (it is not reaped: wait_job still gets its status). */
static int job_running(pid_t pid)
{
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
        return 0;
    return si.si_pid == 0;
}

/* Documents the index holds now (searchable ones), or -1 when it cannot tell (the index does
 * not exist yet, or the node is down). */
static long long es_count(void)
{
    char out[64], cmd[1024];
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 5 '%s/%s/_count' | grep -o '\"count\":[0-9]*' | cut -d: -f2", es,
             index_);
    kp_test_capture(out, sizeof out, cmd);
    return out[0] ? atoll(out) : -1;
}

/* Rows of the generator's truth: the documents the index ends with. */
static long long truth_rows(void)
{
    char out[64], cmd[1024];
    snprintf(cmd, sizeof cmd, "grep -vc '^#' %s/truth.tsv", dir);
    kp_test_capture(out, sizeof out, cmd);
    return atoll(out);
}

/* Instead of sleeping and hoping: waits until the job has written its first results (so its
 * source is open and reading and its sink writing), then checks the job is still running and
 * the index is still short of the truth. Returns the documents indexed before the fault. */
static long long await_progress(pid_t job)
{
    long long docs = -1;
    for (int i = 0; i < 1200 && job_running(job) && docs <= 0; i++) {
        usleep(200 * 1000);
        docs = es_count();
    }
    cr_assert(job_running(job), "the job ended before the fault was injected (%lld documents)",
              docs);
    cr_assert_gt(docs, 0, "the job wrote nothing to %s in 240 s", index_);
    long long total = truth_rows();
    cr_assert_lt(docs, total,
                 "all %lld documents were indexed before the fault: it cannot overlap the run",
                 total);
    printf("%s: fault injected with %lld of %lld documents indexed\n", index_, docs, total);
    return docs;
}

/* The sum of a numeric field over the job's `--stats` lines of one connector. */
static long long stats_sum(const char *connector, const char *field)
{
    char out[64], cmd[1024];
    snprintf(cmd, sizeof cmd,
             "grep '^kappa: stats %s ' %s/job.err | grep -o '\"%s\":[0-9]*' | cut -d: -f2 | "
             "awk '{s += $1} END {print s + 0}'",
             connector, dir, field);
    kp_test_capture(out, sizeof out, cmd);
    return atoll(out);
}

/* The index equals the truth, and the dead-letter topic holds the malformed count. */
static void check_results(void)
{
    cr_assert_eq(kp_test_sh("python3 %s/tests/integration/es_dump.py %s %s %s/index.tsv",
                            kp_test_env("KAPPA_SRC"), es, index_, dir),
                 0);
    cr_assert_eq(
        kp_test_sh("grep -v '^#' %s/truth.tsv | awk -F'\\t' '{print $1\"\\t\"$3\"\\t\"$4}' | "
                   "LC_ALL=C sort > %s/truth.sorted && LC_ALL=C sort %s/index.tsv > "
                   "%s/index.sorted",
                   dir, dir, dir, dir),
        0);
    if (kp_test_sh("cmp -s %s/truth.sorted %s/index.sorted", dir, dir) != 0)
        kp_test_sh("(wc -l %s/truth.sorted %s/index.sorted; diff %s/truth.sorted %s/index.sorted | "
                   "head -n 12; tail -n 3 %s/job.err) >&2",
                   dir, dir, dir, dir, dir);
    cr_assert_eq(kp_test_sh("cmp -s %s/truth.sorted %s/index.sorted", dir, dir), 0,
                 "the index differs from the truth: diff %s/truth.sorted %s/index.sorted", dir,
                 dir);
    char malformed[64], dead[64], cmd[1024];
    snprintf(cmd, sizeof cmd, "sed -n 's/.*malformed=\\([0-9]*\\).*/\\1/p' %s/truth.tsv | head -1",
             dir);
    kp_test_capture(malformed, sizeof malformed, cmd);
    snprintf(cmd, sizeof cmd, "kcat -C -b %s -t %s-dead -e -q -f '%%o\\n' | wc -l", brokers, topic);
    kp_test_capture(dead, sizeof dead, cmd);
    cr_assert_eq(atol(dead), atol(malformed), "dead-letter topic has %s messages, %s malformed",
                 dead, malformed);
}

static void setup_dir(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown_dir(void)
{
    if (running_job > 0) {
        kill(running_job, SIGTERM);
        waitpid(running_job, NULL, 0);
        running_job = 0;
    }
    if (!getenv("KAPPA_KEEP_TEST_DIR"))
        kp_test_rmtree(dir);
}

Test(seed_e2e, kafka_to_elasticsearch_equals_truth, .init = setup_dir, .fini = teardown_dir,
     .timeout = 900)
{
    snprintf(brokers, sizeof brokers, "%s", kp_test_env("KAPPA_BROKERS"));
    snprintf(es, sizeof es, "%s", kp_test_env("KAPPA_ES_URL"));
    names("exact");
    produce();
    cr_assert_eq(wait_job(start_job()), 0, "the job failed");
    check_results();
}

/* A live stream that goes quiet: the results of the windows its last records closed must reach
 * Elasticsearch without waiting for more input (the sink's flush interval runs on the clock). */
Test(seed_e2e, idle_stream_results_arrive, .init = setup_dir, .fini = teardown_dir, .timeout = 300)
{
    snprintf(brokers, sizeof brokers, "%s", kp_test_env("KAPPA_BROKERS"));
    snprintf(es, sizeof es, "%s", kp_test_env("KAPPA_ES_URL"));
    names("idle");
    cr_assert_eq(
        kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s 1 >/dev/null 2>&1",
                   brokers, kp_test_env("KAPPA_SRC"), topic),
        0);
    /* hour 0: three clicks on item_1; one click three hours later closes hour 0 */
    char events[600];
    snprintf(events, sizeof events, "%s/idle.ndjson", dir);
    FILE *f = fopen(events, "w");
    cr_assert_not_null(f);
    const char *user[] = {"user_1", "user_2", "user_3", "user_4"};
    const char *item[] = {"item_1", "item_1", "item_1", "item_2"};
    const long long ts[] = {1700000000000, 1700000001000, 1700000002000, 1700010800000};
    for (int i = 0; i < 4; i++)
        fprintf(f, "{\"user_id\":\"%s\",\"item_id\":\"%s\",\"timestamp\":%lld}\n", user[i], item[i],
                ts[i]);
    fclose(f);
    cr_assert_eq(kp_test_sh("kcat -P -b %s -t %s -l %s", brokers, topic, events), 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "exec %s run --local %s/hourly_clicks.so --brokers %s --es-url %s --from-earliest "
             "--source clicks=kafka:%s --sink 'hourly-click-index=es:%s?flush_ms=500' "
             ">%s/job.out 2>%s/job.err",
             kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), brokers, es, topic, index_, dir,
             dir);
    pid_t job = fork();
    cr_assert_geq(job, 0);
    if (job == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char count[64] = "", q[1024];
    snprintf(q, sizeof q,
             "curl -s '%s/%s/_doc/item_1%%7C1700002800000' | "
             "grep -o '\"click_count\":[0-9]*' | cut -d: -f2",
             es, index_);
    for (int i = 0; i < 60 && strcmp(count, "3") != 0; i++) {
        usleep(500 * 1000);
        kp_test_capture(count, sizeof count, q);
    }
    kill(job, SIGTERM);
    waitpid(job, NULL, 0);
    cr_assert_str_eq(count, "3",
                     "the closed hour did not reach Elasticsearch while the stream was idle "
                     "(got '%s')",
                     count);
}

/* ---- faults: this suite owns its services ------------------------------------------------ */

static void stop_services(void)
{
    const char *src = getenv("KAPPA_SRC");
    kp_test_sh("KAPPA_KAFKA_DIR=%s/kafka %s/deploy/dev/kafka stop >/dev/null 2>&1", dir, src);
    kp_test_sh("KAPPA_SEARCH_DIR=%s/search %s/deploy/dev/search stop >/dev/null 2>&1", dir, src);
    teardown_dir();
}

/* Starts this test's own Kafka and OpenSearch. Criterion does not run .fini when .init fails,
 * so a service that started is stopped here before the failure is reported. */
static void start_services(void)
{
    setup_dir();
    const char *src = kp_test_env("KAPPA_SRC");
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "KAPPA_KAFKA_DIR=%s/kafka %s/deploy/dev/kafka start 2>%s/kafka.err | tail -1", dir,
             src, dir);
    kp_test_capture(brokers, sizeof brokers, cmd);
    snprintf(cmd, sizeof cmd,
             "KAPPA_SEARCH_DIR=%s/search %s/deploy/dev/search start 2>%s/search.err | tail -1", dir,
             src, dir);
    kp_test_capture(es, sizeof es, cmd);
    if (!brokers[0] || !es[0]) {
        kp_test_sh("tail -n 5 %s/kafka.err %s/search.err >&2", dir, dir);
        stop_services();
        cr_assert_fail("could not start Kafka (%s) or OpenSearch (%s)", brokers, es);
    }
}

TestSuite(seed_faults, .init = start_services, .fini = stop_services, .timeout = 1200);

/* The outage overlaps the run: the job is running with part of its results indexed when the
 * node goes, still running when it is back (it could not finish without the node), and its
 * sink had to retry bulks; the results are still exactly the truth. */
Test(seed_faults, elasticsearch_down_for_30s)
{
    names("esdown");
    produce();
    pid_t job = start_job();
    await_progress(job);
    cr_assert_eq(kp_test_sh("KAPPA_SEARCH_DIR=%s/search DOWN_FOR=30 %s/deploy/dev/search restart "
                            ">/dev/null 2>&1",
                            dir, kp_test_env("KAPPA_SRC")),
                 0, "OpenSearch did not come back");
    int through = job_running(job);
    cr_assert_eq(wait_job(job), 0, "the job did not survive the outage");
    cr_assert(through, "the job ended while OpenSearch was down: the outage did not overlap its "
                       "writes");
    long long retries = stats_sum("sink:hourly-click-index", "retries");
    printf("%s: the sink retried %lld bulk requests\n", index_, retries);
    cr_assert_gt(retries, 0, "the sink never retried: it did not meet the outage (%s/job.err)",
                 dir);
    check_results();
}

/* The restart overlaps the reading: the job is running with part of its results indexed when
 * the broker goes, still running when it is back, and the Kafka source itself — which closes
 * its consumer once it has read to the end — reported losing the broker. */
Test(seed_faults, broker_restart_mid_run)
{
    names("brokerrestart");
    produce();
    pid_t job = start_job();
    await_progress(job);
    cr_assert_eq(kp_test_sh("KAPPA_KAFKA_DIR=%s/kafka DOWN_FOR=5 %s/deploy/dev/kafka restart "
                            ">/dev/null 2>&1",
                            dir, kp_test_env("KAPPA_SRC")),
                 0, "the broker did not come back");
    int through = job_running(job);
    cr_assert_eq(wait_job(job), 0, "the job did not survive the broker restart");
    cr_assert(through, "the job ended while the broker was down: the restart did not overlap "
                       "the run");
    cr_assert_eq(kp_test_sh("grep \"^kappa: kafka source 'clicks'\" %s/job.err >&2", dir), 0,
                 "the Kafka source never saw the broker go: it had finished reading before the "
                 "restart (%s/job.err)",
                 dir);
    check_results();
}
