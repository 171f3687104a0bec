/* The cluster end to end, as a user runs it (issue 9): a real kappa-jobmanager and two real
 * kappa-taskmanagers on free 127.0.0.1 ports, `kappa submit` and `kappa cancel`, a real Kafka
 * broker and a real OpenSearch node (through with-services). Every job reads kappa-gen's
 * events with `--from-earliest`; a job that must end is bounded by the Kafka source's
 * `stop_at=end` (as the seed and replay tests bound theirs), one that must keep running is not.
 *
 * - the seed job at -p 4 on an 8-partition topic: the index equals kappa-gen's truth; an
 *   unbounded job is RUNNING until `kappa cancel` → CANCELED; `--replace` with
 *   hourly_clicks_v2 → the ids v2 writes hold the v2 truth and the replaced job ends CANCELED;
 * - `kill -9` of a taskmanager while the job writes: the job restarts (attempt 1) and the index
 *   still equals the truth (deterministic ids, versions fenced by the attempt's epoch);
 * - checkpoints (issue 10): the seed job at -p 2 with a checkpoint every second; after two
 *   completed checkpoints a taskmanager, or the jobmanager, is killed (kill -9); the job is
 *   restored from its latest checkpoint (REST latest.restored) and the index equals the truth;
 * - deterministic replay across processes: at p=2 and p=4 the cluster's index is byte-identical
 *   (every _id and _source, es_sources.py as test_replay.c dumps them) to `kappa run --local`'s
 *   on the same topic, and both equal the truth. The p=2 pair is also measured (wall and CPU
 *   seconds of every kappa process) and printed: a figure, never asserted.
 *
 * The processes come from tests/unit/jm_harness.h (shared with the jobmanager's tests); every
 * one this file starts is stopped by the test, or SIGKILLed by its .fini when an assertion
 * failed half-way. KAPPA_CLUSTER_EVENTS overrides the event count of each log (figures on a
 * larger log); KAPPA_KEEP_TEST_DIR keeps the logs, dumps and truths. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/itest.h"
#include "../support/shell.h"
#include "../unit/jm_harness.h"

#define MAX_TOPICS 4

static char dir_[] = "/tmp/kappa-cluster-XXXXXX";
static char brokers_[128], es_[128];
static char topics_[MAX_TOPICS][128];
static jm_proc jm_;
static pid_t tm_[2];
static pid_t submit_; /* a `kappa submit --wait` in the background, not reaped yet */

/* kappa-gen's options for every log: 100 items keep an index at ~17k documents (7 days x 24
 * hours x 100), late events and malformed messages exercise lateness and decode errors. */
static const char gen_model[] = "--items 100 --out-of-order-ms 10000 --late-fraction 0.001 "
                                "--late-lag-ms 172800000 --malformed 0.002";

static int events(int fallback)
{
    const char *v = getenv("KAPPA_CLUSTER_EVENTS");
    return v && atoi(v) > 0 ? atoi(v) : fallback;
}

static void setup(void)
{
    kp_itest_open(dir_);
    snprintf(brokers_, sizeof brokers_, "%s", kp_test_env("KAPPA_BROKERS"));
    snprintf(es_, sizeof es_, "%s", kp_test_env("KAPPA_ES_URL"));
}

/* A jobmanager (restarts 200 ms apart) and two taskmanagers of 4 slots each: a p=4 job takes
 * 2 slots on each (round-robin), two p=4 jobs fit at once (--replace runs the new job next to
 * the old one), and one taskmanager alone can run a p=4 job after the other died. Called first
 * in each test's body rather than as .init: Criterion skips .fini when .init fails, and
 * teardown must stop whatever a failed start left running. */
static void start_cluster(void)
{
    kp_itest_start_cluster(&jm_, tm_);
}

/* The clean end of a test: the processes stop on SIGTERM (the jobmanager must exit 0). */
static void stop_cluster(void)
{
    kp_itest_stop_cluster(&jm_, tm_);
}

/* Whatever happened: no process, topic or index of the test outlives it. */
static void teardown(void)
{
    if (submit_ > 0) {
        kill(submit_, SIGTERM);
        waitpid(submit_, NULL, 0);
        submit_ = 0;
    }
    jm_kill_all();
    for (int i = 0; i < MAX_TOPICS && topics_[i][0]; i++) {
        kp_itest_topic_delete(brokers_, topics_[i]);
        topics_[i][0] = '\0';
    }
    kp_itest_indices_delete(es_, "cluster");
    kp_itest_close("cluster");
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 900);

/* A topic of `partitions` holding `count` kappa-gen events (seed 11, the model above) with
 * `partitioner`; the truth of the write in dir/truth.tsv, sorted as (item, end, count) lines in
 * dir/truth.sorted. Returns the topic's name. */
static const char *produce(int partitions, const char *partitioner, int count)
{
    int slot = 0;
    while (slot < MAX_TOPICS - 1 && topics_[slot][0])
        slot++;
    char *topic = topics_[slot];
    snprintf(topic, sizeof topics_[0], "cluster-%ld-%d-%d", (long)time(NULL), (int)getpid(), slot);
    cr_assert_eq(kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s %d >/dev/null "
                            "2>&1",
                            brokers_, kp_test_env("KAPPA_SRC"), topic, partitions),
                 0, "cannot create topic %s at %s", topic, brokers_);
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s --partitioner %s --count %d %s --seed 11 "
                            "--truth %s/truth.tsv --quiet",
                            kp_test_env("KAPPA_GEN"), brokers_, topic, partitioner, count,
                            gen_model, dir_),
                 0, "kappa-gen could not write the log");
    cr_assert_eq(
        kp_test_sh("grep -v '^#' %s/truth.tsv | awk -F'\\t' '{print $1\"\\t\"$3\"\\t\"$4}' "
                   "| LC_ALL=C sort > %s/truth.sorted",
                   dir_, dir_),
        0);
    return topic;
}

/* An index name of this test process (teardown deletes them all). */
static const char *index_name(const char *what)
{
    static char p[4][128];
    static int next;
    char *s = p[next++ % 4];
    snprintf(s, sizeof p[0], "cluster-%d-%s", (int)getpid(), what);
    return s;
}

/* `kappa ARGS --jobmanager REST`, output into dir/LOG.out and .err; its exit status. */
#define KAPPA(log, fmt, ...)                                                                       \
    kp_test_sh("%s " fmt " --jobmanager %s >%s/%s.out 2>%s/%s.err", kp_test_env("KAPPA_CLI"),      \
               __VA_ARGS__, jm_.rest, dir_, log, dir_, log)

/* `kappa submit JOB.so -p P --name NAME --from-earliest` of the seed job family reading
 * `source` (a kafka: URI) and writing `index`, plus `extra` flags. */
#define SUBMIT(log, job, p, name, source, index, extra)                                            \
    KAPPA(log,                                                                                     \
          "submit %s/%s.so -p %d --name %s --brokers %s --es-url %s --from-earliest --source "     \
          "'clicks=%s' --sink 'hourly-click-index=es:%s' %s",                                      \
          kp_test_env("KAPPA_JOBS"), job, p, name, brokers_, es_, source, index, extra)

static void await_state(const char *job, const char *want, int seconds)
{
    kp_itest_await_state(&jm_, job, want, seconds);
}

/* GET /jobs/:job's integer field `name`. */
static long long job_number(const char *job, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/jobs/%s", job);
    http_reply r = http_req(&jm_, "GET", path, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %ld", path, r.status);
    long long v = json_integer_value(json_object_get(r.body, name));
    http_free(&r);
    return v;
}

/* How many distinct taskmanagers the job's subtasks are placed on. */
static int taskmanagers_used(const char *job)
{
    char path[256], seen[8][128];
    int n = 0;
    snprintf(path, sizeof path, "/jobs/%s", job);
    http_reply r = http_req(&jm_, "GET", path, NULL);
    size_t i, j;
    json_t *task, *sub;
    json_array_foreach(json_object_get(r.body, "tasks"), i, task)
    {
        json_array_foreach(json_object_get(task, "subtasks"), j, sub)
        {
            const char *tm = json_string_value(json_object_get(sub, "taskmanager"));
            int k = 0;
            while (tm && k < n && strcmp(seen[k], tm))
                k++;
            if (tm && k == n && n < 8)
                snprintf(seen[n++], sizeof seen[0], "%s", tm);
        }
    }
    http_free(&r);
    return n;
}

/* Documents the index holds now (refreshed first: all that were written), -1 if it cannot
 * tell (no index yet). */
static long long es_count(const char *index)
{
    char out[64], cmd[1024];
    snprintf(cmd, sizeof cmd,
             "curl -s --max-time 5 -XPOST '%s/%s/_refresh' >/dev/null && curl -s --max-time 5 "
             "'%s/%s/_count' | grep -o '\"count\":[0-9]*' | cut -d: -f2",
             es_, index, es_, index);
    kp_test_capture(out, sizeof out, cmd);
    return out[0] ? atoll(out) : -1;
}

/* Lines of a file. */
static long long lines(const char *path)
{
    char out[64], cmd[600];
    snprintf(cmd, sizeof cmd, "wc -l < %s", path);
    kp_test_capture(out, sizeof out, cmd);
    return atoll(out);
}

/* The index as sorted (item, end, count) lines in dir/INDEX.sorted (es_dump.py). */
static const char *dump_counts(const char *index)
{
    const char *sorted = kp_itest_path(index);
    static char out[400];
    snprintf(out, sizeof out, "%s.sorted", sorted);
    cr_assert_eq(kp_test_sh("python3 %s/tests/integration/es_dump.py %s %s %s/%s.tsv && LC_ALL=C "
                            "sort %s/%s.tsv > %s",
                            kp_test_env("KAPPA_SRC"), es_, index, dir_, index, dir_, index, out),
                 0, "cannot dump %s", index);
    return out;
}

/* Asserts that two sorted files are byte-identical, showing the first differences if not. */
static void assert_same(const char *want, const char *got, const char *what)
{
    if (kp_test_sh("cmp -s %s %s", want, got) != 0)
        kp_test_sh("(wc -l %s %s; diff %s %s | head -n 12) >&2", want, got, want, got);
    cr_assert_eq(kp_test_sh("cmp -s %s %s", want, got), 0, "%s: diff %s %s", what, want, got);
}

/* The index equals the truth of the last produce(). */
static void assert_index_is_truth(const char *index)
{
    cr_assert_gt(lines(kp_itest_path("truth.sorted")), 0, "empty truth");
    assert_same(kp_itest_path("truth.sorted"), dump_counts(index), index);
}

/* Starts `kappa submit ... --wait` in the background (like SUBMIT); returns at once. */
static void submit_in_background(const char *log, const char *job, int p, const char *name,
                                 const char *source, const char *index)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "exec %s submit %s/%s.so -p %d --name %s --brokers %s --es-url %s --from-earliest "
             "--source 'clicks=%s' --sink 'hourly-click-index=es:%s' --wait --jobmanager %s "
             ">%s/%s.out 2>%s/%s.err",
             kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), job, p, name, brokers_, es_,
             source, index, jm_.rest, dir_, log, dir_, log);
    submit_ = fork();
    cr_assert_geq(submit_, 0);
    if (submit_ == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
}

static int wait_submit(void)
{
    int st;
    cr_assert_eq(waitpid(submit_, &st, 0), submit_);
    submit_ = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every id in the v2 truth holds its v2 count: the index restricted to the v2 truth's ids
 * (item, window end) equals it. The other ids keep what v1 wrote. */
static void assert_v2_ids(const char *index, const char *tag)
{
    const char *got = dump_counts(index);
    char ids[400];
    snprintf(ids, sizeof ids, "%s/%s-ids.sorted", dir_, tag);
    cr_assert_eq(kp_test_sh("awk -F'\\t' 'NR==FNR {want[$1\"\\t\"$2] = 1; next} ($1\"\\t\"$2) in "
                            "want' %s/truth-v2.sorted %s > %s",
                            dir_, got, ids),
                 0);
    cr_assert_gt(lines(kp_itest_path("truth-v2.sorted")), 0, "empty v2 truth");
    assert_same(kp_itest_path("truth-v2.sorted"), ids, "the ids v2 wrote");
}

/* Waits until the wall clock in seconds has passed every fencing epoch the jobmanager gave
 * (its log: "deploying attempt N, epoch E"): an epoch is max(last + 1, wall seconds), so a few
 * attempts within a second run ahead of the clock. */
static void wait_past_epoch(long long epoch)
{
    for (int i = 0; i < 600 && (long long)time(NULL) <= epoch; i++)
        usleep(100 * 1000);
}

static void wait_past_cluster_epochs(void)
{
    char out[64], cmd[600];
    snprintf(cmd, sizeof cmd,
             "grep -o 'epoch [0-9]*' %s/jm.log | awk '{print $2}' | sort -n | tail -n 1", dir_);
    kp_test_capture(out, sizeof out, cmd);
    long long epoch = atoll(out);
    cr_assert_gt(epoch, 0, "no epoch in %s/jm.log", dir_);
    wait_past_epoch(epoch);
}

/* ... and the epoch a `kappa run --local` kept in its state dir (epoch_file.h). */
static void wait_past_epoch_in(const char *file)
{
    FILE *f = fopen(file, "r");
    long long epoch = 0;
    cr_assert(f && fscanf(f, "%lld", &epoch) == 1, "no epoch in %s", file);
    fclose(f);
    wait_past_epoch(epoch);
}

Test(cluster, seed_cancel_replace)
{
    start_cluster();
    int n = events(100000);
    char bounded[256], unbounded[256];
    const char *topic = produce(8, "hash", n);
    snprintf(bounded, sizeof bounded, "kafka:%s?stop_at=end", topic);
    snprintf(unbounded, sizeof unbounded, "kafka:%s", topic);
    /* the v2 truth of the same events: only users numbered above 50 count */
    cr_assert_eq(kp_test_sh("%s --dry-run --partitions 8 --count %d %s --seed 11 "
                            "--filter-users-above 50 --truth %s/truth-v2.tsv --quiet && grep -v "
                            "'^#' %s/truth-v2.tsv | awk -F'\\t' '{print $1\"\\t\"$3\"\\t\"$4}' | "
                            "LC_ALL=C sort > %s/truth-v2.sorted",
                            kp_test_env("KAPPA_GEN"), n, gen_model, dir_, dir_, dir_),
                 0);
    const char *index = index_name("seed");

    /* the seed job at -p 4 over both taskmanagers; --wait exits 0 when it FINISHED */
    cr_assert_eq(SUBMIT("seed", "hourly_clicks", 4, "seed", bounded, index, "--wait"), 0,
                 "kappa submit --wait did not end FINISHED (%s/seed.err)", dir_);
    cr_assert_eq(taskmanagers_used("seed"), 2, "the p=4 job did not spread over both");
    assert_index_is_truth(index);

    /* an unbounded job runs until cancelled */
    cr_assert_eq(
        SUBMIT("unbounded", "hourly_clicks", 4, "unbounded", unbounded, index_name("cancel"), ""),
        0);
    await_state("unbounded", "RUNNING", 120);
    cr_assert_eq(KAPPA("cancel", "cancel %s", "unbounded"), 0, "kappa cancel failed");
    await_state("unbounded", "CANCELED", 60);

    /* reprocessing: the running job is replaced by v2 from the earliest offsets, into the same
     * index (the same document ids, larger fencing versions) */
    cr_assert_eq(SUBMIT("v1", "hourly_clicks", 4, "hourly-clicks", unbounded, index, ""), 0);
    await_state("hourly-clicks", "RUNNING", 120);
    cr_assert_eq(SUBMIT("v2", "hourly_clicks_v2", 4, "hourly-clicks-v2", bounded, index,
                        "--replace hourly-clicks --wait"),
                 0, "the v2 job did not end FINISHED (%s/v2.err)", dir_);
    await_state("hourly-clicks", "CANCELED", 60);
    assert_v2_ids(index, "v2");

    /* `kappa run --local` of v1 then writes the index (its fencing epoch is at least the wall
     * clock); reprocessing it with v2 on the cluster must still win: the cluster's versions are
     * not older than the local run's. The local run outranks v2's earlier writes only once the
     * wall clock has passed v2's epoch (equal epochs compare by per-writer sequence numbers:
     * a mixture) */
    wait_past_cluster_epochs();
    cr_assert_eq(
        kp_test_sh("%s run --local %s/hourly_clicks.so -p 2 --brokers %s --es-url %s "
                   "--from-earliest --source 'clicks=%s' --sink 'hourly-click-index=es:%s' "
                   "--state-dir %s/local-state >%s/local.out 2>%s/local.err",
                   kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), brokers_, es_, bounded,
                   index, dir_, dir_, dir_),
        0, "kappa run --local failed (%s/local.err)", dir_);
    assert_index_is_truth(index);
    /* and v2-again outranks the local run only once the wall clock passed its epoch */
    char epoch_file[400];
    snprintf(epoch_file, sizeof epoch_file, "%s/local-state/epoch", dir_);
    wait_past_epoch_in(epoch_file);
    cr_assert_eq(SUBMIT("v2-again", "hourly_clicks_v2", 4, "v2-again", bounded, index, "--wait"), 0,
                 "the v2 job did not end FINISHED (%s/v2-again.err)", dir_);
    assert_v2_ids(index, "v2-again");
    stop_cluster();
}

Test(cluster, killed_taskmanager_restarts_and_the_index_is_still_the_truth)
{
    start_cluster();
    char source[256];
    snprintf(source, sizeof source, "kafka:%s?stop_at=end", produce(8, "hash", events(200000)));
    /* bulks of 5 documents, one in flight per subtask: the sink paces the job (credits), so
     * it surely still writes when the first documents are searchable, even on an idle host */
    const char *index = index_name("kill");
    char sink[160];
    snprintf(sink, sizeof sink, "%s?max_actions=5&inflight=1", index);
    long long total = lines(kp_itest_path("truth.sorted"));
    submit_in_background("kill", "hourly_clicks", 4, "killed", source, sink);
    await_state("killed", "RUNNING", 120);

    /* the kill lands while the job writes: results indexed, not all of them */
    long long docs = -1;
    for (int i = 0; i < 1200 && docs <= 0; i++) {
        usleep(100 * 1000);
        docs = es_count(index);
    }
    cr_assert_gt(docs, 0, "the job wrote nothing to %s in 120 s", index);
    cr_assert_lt(docs, total, "all %lld documents were indexed before the kill", total);
    char st[32];
    cr_assert_str_eq(job_state(&jm_, "killed", st, sizeof st), "RUNNING");
    cr_assert_eq(job_number("killed", "attempt"), 0);
    tm_proc_kill(tm_[0]);
    tm_[0] = 0;
    fprintf(stderr, "cluster: taskmanager killed with %lld of %lld documents indexed\n", docs,
            total);

    cr_assert_eq(wait_submit(), 0, "the job did not end FINISHED after the kill (%s/kill.err)",
                 dir_);
    cr_assert_eq(job_number("killed", "attempt"), 1, "the job did not restart exactly once");
    http_reply r = http_req(&jm_, "GET", "/jobs/killed", NULL);
    json_t *exc = json_array_get(json_object_get(r.body, "exceptions"), 0);
    const char *msg = json_string_value(json_object_get(exc, "message"));
    cr_assert(msg && strstr(msg, "lost"), "first exception: %s", msg ? msg : "(null)");
    http_free(&r);
    assert_index_is_truth(index);
    stop_cluster();
}

/* GET /jobs/:job/checkpoints' counts.completed and, when `restored` is given, the id of
 * latest.restored (0 if none). */
static long long checkpoints_completed(const char *job, long long *restored)
{
    char path[256];
    snprintf(path, sizeof path, "/jobs/%s/checkpoints", job);
    http_reply r = http_req(&jm_, "GET", path, NULL);
    long long n =
        r.status == 200
            ? json_integer_value(json_object_get(json_object_get(r.body, "counts"), "completed"))
            : -1;
    if (restored)
        *restored = json_integer_value(
            json_object_get(json_object_get(json_object_get(r.body, "latest"), "restored"), "id"));
    http_free(&r);
    return n;
}

/* Prints the job's checkpoint figures from REST (a figure, never asserted): how many
 * completed, end-to-end duration and state size (min/avg/max over the current attempt). */
static void print_checkpoint_figures(const char *job)
{
    char path[256];
    snprintf(path, sizeof path, "/jobs/%s/checkpoints", job);
    http_reply r = http_req(&jm_, "GET", path, NULL);
    json_t *sum = json_object_get(r.body, "summary");
    json_t *dur = json_object_get(sum, "end_to_end_duration");
    json_t *size = json_object_get(sum, "state_size");
    fprintf(stderr,
            "cluster: figures: %s checkpoints this attempt: %lld completed, %lld failed; "
            "end-to-end %lld/%lld/%lld ms, state %lld/%lld/%lld bytes (min/avg/max)\n",
            job,
            json_integer_value(json_object_get(json_object_get(r.body, "counts"), "completed")),
            json_integer_value(json_object_get(json_object_get(r.body, "counts"), "failed")),
            json_integer_value(json_object_get(dur, "min")),
            json_integer_value(json_object_get(dur, "avg")),
            json_integer_value(json_object_get(dur, "max")),
            json_integer_value(json_object_get(size, "min")),
            json_integer_value(json_object_get(size, "avg")),
            json_integer_value(json_object_get(size, "max")));
    http_free(&r);
}

/* Waits until the job completed at least n checkpoints (REST); asserts within `seconds`. */
static void await_checkpoints(const char *job, long long n, int seconds)
{
    double end = kp_itest_now_s() + seconds;
    long long got = -1;
    while (kp_itest_now_s() < end && (got = checkpoints_completed(job, NULL)) < n)
        usleep(100 * 1000);
    if (got < n)
        kp_test_sh("tail -n 30 %s/jm.log >&2", dir_);
    cr_assert_geq(got, n, "job %s completed %lld checkpoints in %d s, expected %lld", job, got,
                  seconds, n);
}

/* The checkpointed seed job (-p 2, a checkpoint every second) on the cluster, paced by its
 * sink (bulks of 5, one in flight) so that it still runs after two checkpoints; returns the
 * index it writes. A checkpoint that does not complete within 5 s expires and the next one is
 * triggered (tolerated: the test is about restoring, not about every checkpoint). */
static const char *start_checkpointed_job(const char *name)
{
    char source[256];
    /* small fetches (2 KiB per partition) keep the sources reading for several seconds: a
     * source subtask that already read all its input takes no more checkpoints */
    snprintf(source, sizeof source, "kafka:%s?stop_at=end&rdkafka.max.partition.fetch.bytes=2048",
             produce(4, "hash", events(200000)));
    static char sink[160];
    const char *index = index_name(name);
    snprintf(sink, sizeof sink, "%s?max_actions=5&inflight=1", index);
    cr_assert_eq(SUBMIT(name, "hourly_clicks", 2, name, source, sink,
                        "--checkpoint-interval 1s --checkpoint-mode exactly_once "
                        "--checkpoint-timeout 5s --tolerable-checkpoint-failures 100"),
                 0, "kappa submit failed (%s/%s.err)", dir_, name);
    await_state(name, "RUNNING", 120);
    await_checkpoints(name, 2, 120);
    print_checkpoint_figures(name);
    cr_assert_lt(es_count(index), lines(kp_itest_path("truth.sorted")),
                 "the job wrote everything before the failure: nothing left to restore");
    return index;
}

/* After a failure: the job ran again restored from a completed checkpoint, FINISHED, and
 * the index is the truth. */
static void assert_restored_and_exact(const char *name, const char *index, int min_attempt)
{
    await_state(name, "FINISHED", 600);
    print_checkpoint_figures(name);
    cr_assert_geq(job_number(name, "attempt"), min_attempt);
    long long restored = 0;
    checkpoints_completed(name, &restored);
    cr_assert_gt(restored, 0, "REST shows no restored checkpoint for %s", name);
    fprintf(stderr, "cluster: %s restored checkpoint %lld (attempt %lld)\n", name, restored,
            job_number(name, "attempt"));
    assert_index_is_truth(index);
}

Test(cluster, checkpoint_restore_after_a_killed_taskmanager_is_exact)
{
    start_cluster();
    const char *index = start_checkpointed_job("ckpt-tm");
    tm_proc_kill(tm_[0]);
    tm_[0] = 0;
    assert_restored_and_exact("ckpt-tm", index, 1);
    stop_cluster();
}

Test(cluster, checkpoint_restore_after_a_killed_jobmanager_is_exact)
{
    start_cluster();
    const char *index = start_checkpointed_job("ckpt-jm");
    /* kill -9, then a new jobmanager on the same ports and state dir: the taskmanagers
     * reconnect, the job is recovered from its latest checkpoint */
    char rest_port[16], rpc_port[16];
    snprintf(rest_port, sizeof rest_port, "%s", strrchr(jm_.rest, ':') + 1);
    snprintf(rpc_port, sizeof rpc_port, "%d", jm_.rpc_port);
    tm_proc_kill(jm_.pid);
    const char *flags[] = {"--restart-delay-ms", "200",    "--rest-port", rest_port,
                           "--rpc-port",         rpc_port, NULL};
    jm_start(&jm_, kp_itest_path("jm"), flags);
    assert_restored_and_exact("ckpt-jm", index, 1);
    stop_cluster();
}

/* CPU seconds (user + system) a live process has used, from /proc/PID/stat. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    cr_assert_not_null(p);
    unsigned long long utime = 0, stime = 0;
    /* after the name: state, ppid, pgrp, session, tty, tpgid, flags, 4 fault counters, then
     * utime and stime (fields 14 and 15) */
    cr_assert_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime), 2);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of the waited-for children of this process (and their waited-for children). */
static double children_cpu_s(void)
{
    struct rusage u;
    getrusage(RUSAGE_CHILDREN, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec +
           u.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of the cluster's long-lived processes. */
static double cluster_cpu_s(void)
{
    return proc_cpu_s(jm_.pid) + proc_cpu_s(tm_[0]) + proc_cpu_s(tm_[1]);
}

typedef struct cost {
    double wall, cpu;
} cost;

static void print_cost(const char *what, int p, const cost *c, int n)
{
    fprintf(stderr,
            "cluster: figures: %s p=%d: %d events, wall %.2f s, cpu %.2f s, %.0f events "
            "per cpu-second\n",
            what, p, n, c->wall, c->cpu, n / c->cpu);
}

/* Replays the topic at p with `kappa run --local` and with `kappa submit --wait` on the
 * cluster, each into its own index; asserts both dumps (_id and canonical _source, sorted) are
 * byte-identical and their counts are the truth. Measures both runs. */
static void replay_at(const char *topic, int p, int n)
{
    char source[256], local[64], cluster[64];
    snprintf(source, sizeof source, "kafka:%s?stop_at=end", topic);
    snprintf(local, sizeof local, "local-p%d", p);
    snprintf(cluster, sizeof cluster, "cluster-p%d", p);
    const char *li = index_name(local), *ci = index_name(cluster);

    double c0 = children_cpu_s(), t0 = kp_itest_now_s();
    cr_assert_eq(
        kp_test_sh("%s run --local %s/hourly_clicks.so -p %d --brokers %s --es-url %s "
                   "--from-earliest --source 'clicks=%s' --sink 'hourly-click-index=es:%s' "
                   ">%s/%s.out 2>%s/%s.err",
                   kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), p, brokers_, es_, source,
                   li, dir_, local, dir_, local),
        0, "kappa run --local failed (%s/%s.err)", dir_, local);
    cost lc = {kp_itest_now_s() - t0, children_cpu_s() - c0};

    double k0 = cluster_cpu_s();
    c0 = children_cpu_s();
    t0 = kp_itest_now_s();
    char name[32];
    snprintf(name, sizeof name, "replay-p%d", p);
    cr_assert_eq(SUBMIT(cluster, "hourly_clicks", p, name, source, ci, "--wait"), 0,
                 "kappa submit --wait failed (%s/%s.err)", dir_, cluster);
    cost cc = {kp_itest_now_s() - t0, children_cpu_s() - c0 + cluster_cpu_s() - k0};
    cr_assert_eq(taskmanagers_used(name), 2, "the p=%d job did not spread over both", p);

    char load[128];
    kp_test_capture(load, sizeof load, "cut -d' ' -f1-3 /proc/loadavg");
    fprintf(stderr, "cluster: figures: load average %s\n", load);
    print_cost("run --local", p, &lc, n);
    print_cost("cluster (2 taskmanagers)", p, &cc, n);
    fprintf(stderr, "cluster: figures: p=%d events per cpu-second, cluster / local = %.3f\n", p,
            lc.cpu / cc.cpu);

    for (int k = 0; k < 2; k++) {
        const char *idx = k ? ci : li, *tag = k ? cluster : local;
        cr_assert_eq(kp_test_sh("python3 %s/tests/integration/es_sources.py %s %s %s/%s.src "
                                "%s/%s.tsv item_id,window_end,click_count >/dev/null && LC_ALL=C "
                                "sort %s/%s.tsv > %s/%s.sorted",
                                kp_test_env("KAPPA_SRC"), es_, idx, dir_, tag, dir_, tag, dir_, tag,
                                dir_, tag),
                     0, "cannot dump %s", idx);
        snprintf(source, sizeof source, "%s/%s.sorted", dir_, tag);
        assert_same(kp_itest_path("truth.sorted"), source, idx);
    }
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/%s.src", dir_, local);
    snprintf(b, sizeof b, "%s/%s.src", dir_, cluster);
    cr_assert_gt(lines(a), 0);
    assert_same(a, b, "the cluster's index vs run --local's");
}

/* test_replay.c's log (4 partitions, the range partitioner: partition 0 ends early) */
Test(cluster, replay_across_processes_is_byte_identical_to_run_local)
{
    start_cluster();
    int n = events(100000);
    const char *topic = produce(4, "range", n);
    replay_at(topic, 2, n);
    replay_at(topic, 4, n);
    stop_cluster();
}
