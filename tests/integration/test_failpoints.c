/* The checkpoint failpoints of issue 10 ("Proof in the test suite"), each as a user would meet
 * it: a run crashes at the failpoint (exit 137, like kill -9: KAPPA_FAILPOINTS=name@N, the Nth
 * hit, so that checkpoints completed before it), the job is restored, and the result equals
 * kappa-gen's truth exactly; the checkpoint directory then holds only the retained
 * checkpoints and the files they name (tests/integration/ckpt_check.py orphans: right after
 * the run but for the shared files GC's 2 s grace spares, and after one more GC pass nothing
 * else at all).
 *
 * - `kappa run --local` of the seed job (hourly_clicks, keyed tumbling windows in RocksDB) at
 *   -p 2 over a kappa-gen file into a real OpenSearch index, a checkpoint every 200 ms, then
 *   `--from-checkpoint DIR/hourly_clicks`: snapshot.after_rocksdb_checkpoint (a subtask's
 *   snapshot uploaded, not acknowledged), coord.after_complete_before_notify (complete, no
 *   subtask notified), es.mid_flush (a barrier's flush with bulks sent, not all
 *   acknowledged), store.before_metadata_rename and store.after_metadata_write (the local
 *   coordinator's metadata write);
 * - the cluster (a real kappa-jobmanager and two kappa-taskmanagers): the jobmanager crashes in
 *   its metadata write (store.before_metadata_rename) or between completion and notification
 *   (coord.after_complete_before_notify); a new jobmanager on the same ports and state dir
 *   recovers the job from its latest checkpoint;
 * - a real Kafka: the seed job reading a topic and writing a transactional Kafka sink, crashed
 *   by kafka.mid_commit (a transaction committed at the broker, the writer not told) or by
 *   kafka.mid_final_commit (the end-of-input commit, after the final checkpoint); a
 *   read_committed consumer (kcat) reads every window result exactly once, the last per
 *   window equals the truth.
 *
 * Services come from with-services (KAPPA_BROKERS, KAPPA_ES_URL); binaries from meson. Every
 * process started is stopped (the .fini SIGKILLs what an assertion left running);
 * KAPPA_KEEP_TEST_DIR keeps the logs. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/itest.h"
#include "../support/shell.h"
#include "../unit/jm_harness.h"
#include "checkpoint_store.h"
#include "clock.h"

#define RETAIN 2

static char dir_[] = "/tmp/kappa-failpoints-XXXXXX";
static char es_[128], brokers_[128], topic_[128];
static jm_proc jm_;
static pid_t tm_[2];

/* kappa-gen's model: 100 items over 7 days, out of order within 10 s; no late or malformed
 * events (a window's count is then the same whichever run writes it). */
static const char gen_model[] = "--items 100 --out-of-order-ms 10000 --seed 11 --quiet";

static void setup(void)
{
    kp_itest_open(dir_);
    snprintf(es_, sizeof es_, "%s", kp_test_env("KAPPA_ES_URL"));
    snprintf(brokers_, sizeof brokers_, "%s", kp_test_env("KAPPA_BROKERS"));
}

static void teardown(void)
{
    jm_kill_all();
    if (topic_[0]) {
        char out[sizeof topic_ + 4];
        snprintf(out, sizeof out, "%s-out", topic_);
        kp_itest_topic_delete(brokers_, topic_);
        kp_itest_topic_delete(brokers_, out);
    }
    kp_itest_indices_delete(es_, "failpoints");
    kp_itest_close("failpoints");
}

TestSuite(failpoints, .init = setup, .fini = teardown, .timeout = 900);

/* The truth of the last kappa-gen call as sorted (item, end, count) lines in truth.sorted. */
static void sort_truth(void)
{
    cr_assert_eq(
        kp_test_sh("grep -v '^#' %s/truth.tsv | awk -F'\\t' '{print $1\"\\t\"$3\"\\t\"$4}' "
                   "| LC_ALL=C sort > %s/truth.sorted",
                   dir_, dir_),
        0);
    cr_assert_eq(kp_test_sh("test -s %s/truth.sorted", dir_), 0, "empty truth");
}

/* `count` events in dir/events.ndjson. */
static void gen_file(int count)
{
    cr_assert_eq(kp_test_sh("%s --output %s/events.ndjson --count %d %s --truth %s/truth.tsv",
                            kp_test_env("KAPPA_GEN"), dir_, count, gen_model, dir_),
                 0, "kappa-gen failed");
    sort_truth();
}

static const char *index_name(const char *what)
{
    static char s[160];
    snprintf(s, sizeof s, "failpoints-%d-%s", (int)getpid(), what);
    for (char *c = s; *c; c++)
        if (*c == '.' || *c == '_')
            *c = '-';
    return s;
}

/* Checkpoints of DIR/<job> whose metadata is in place. */
static int completed(const char *jobdir)
{
    char out[32], cmd[600];
    snprintf(cmd, sizeof cmd, "ls -d %s/chk-*/_metadata.sha256 2>/dev/null | wc -l", jobdir);
    kp_test_capture(out, sizeof out, cmd);
    return atoi(out);
}

/* The index equals the truth (es_dump.py, sorted), showing the first differences if not. */
static void assert_index_is_truth(const char *index)
{
    cr_assert_eq(kp_test_sh("python3 %s/tests/integration/es_dump.py %s %s %s/%s.tsv && LC_ALL=C "
                            "sort %s/%s.tsv > %s/%s.sorted",
                            kp_test_env("KAPPA_SRC"), es_, index, dir_, index, dir_, index, dir_,
                            index),
                 0, "cannot dump %s", index);
    if (kp_test_sh("cmp -s %s/truth.sorted %s/%s.sorted", dir_, dir_, index) != 0)
        kp_test_sh("(wc -l %s/truth.sorted %s/%s.sorted; diff %s/truth.sorted %s/%s.sorted | "
                   "head -n 12) >&2",
                   dir_, dir_, index, dir_, dir_, index);
    cr_assert_eq(kp_test_sh("cmp -s %s/truth.sorted %s/%s.sorted", dir_, dir_, index), 0,
                 "%s differs from the truth", index);
}

/* Only the retained checkpoints and the files they name are left in jobdir (DIR/<job>): right
 * after the run, but for shared files GC's 2 s grace spares (ckpt_check.py before-gc); then,
 * after one GC pass as the next start would run it, nothing else at all. */
/* The job's newest checkpoint is its final one: every source took it after the end of its
 * bounded input (docs/checkpoints.md, Bounded inputs). */
static void assert_final_checkpoint(const char *jobdir)
{
    cr_assert_eq(kp_test_sh("python3 %s/tests/integration/ckpt_check.py final %s >&2",
                            kp_test_env("KAPPA_SRC"), jobdir),
                 0, "the newest checkpoint in %s was not taken after the sources' end", jobdir);
}

static void assert_no_orphans(const char *jobdir)
{
    int rc = kp_test_sh("python3 %s/tests/integration/ckpt_check.py orphans %s %d before-gc >&2",
                        kp_test_env("KAPPA_SRC"), jobdir, RETAIN);
    cr_assert_eq(rc, 0, "%s holds files no retained checkpoint names (listed above)", jobdir);
    char root[400], err[512] = "";
    snprintf(root, sizeof root, "%s", jobdir);
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/')
        root[--len] = 0;
    char *slash = strrchr(root, '/');
    cr_assert_not_null(slash);
    *slash = 0;
    usleep(2100 * 1000);
    kp_ckpt_store *st = kp_ckpt_store_open(root, slash + 1, err, sizeof err);
    cr_assert_not_null(st, "%s", err);
    rc = kp_ckpt_store_gc(st, RETAIN, INT64_MAX, kp_wall_ms(), err, sizeof err);
    kp_ckpt_store_free(st);
    cr_assert_eq(rc, 0, "GC of %s: %s", jobdir, err);
    rc = kp_test_sh("python3 %s/tests/integration/ckpt_check.py orphans %s %d >&2",
                    kp_test_env("KAPPA_SRC"), jobdir, RETAIN);
    cr_assert_eq(rc, 0, "after a GC pass %s still holds files no retained checkpoint names",
                 jobdir);
}

/* ---- local runs ---------------------------------------------------------------------------- */

/* `kappa run --local` of the seed job over dir/events.ndjson into `index`, with `fp` as
 * KAPPA_FAILPOINTS (NULL: none) and `extra` flags; its exit status. */
static int run_local(const char *fp, const char *index, const char *sink_opts, const char *state,
                     const char *extra, const char *log)
{
    return kp_test_sh("%s%s %s run --local %s/hourly_clicks.so -p 2 --source "
                      "'clicks=file:%s/events.ndjson?partitions=4' --es-url %s --sink "
                      "'hourly-click-index=es:%s?%s' --state-dir %s/%s "
                      "--checkpoint-dir %s/ck --checkpoint-interval 100ms "
                      "--retained-checkpoints %d %s >%s/%s 2>&1",
                      fp ? "KAPPA_FAILPOINTS=" : "", fp ? fp : "", kp_test_env("KAPPA_CLI"),
                      kp_test_env("KAPPA_JOBS"), dir_, es_, index, sink_opts, dir_, state, dir_,
                      RETAIN, extra, dir_, log);
}

/* Crash at `fp`, restore from the checkpoint directory, compare. `sink_opts`: the first run's
 * Elasticsearch sink options (small bulks keep several in flight at a barrier). */
static void local_case(const char *fp, const char *sink_opts)
{
    /* enough input that even on an idle machine the run lasts for many checkpoints: 400k
     * events took 0.6 s there, and the run ended before its third checkpoint */
    gen_file(1500000);
    const char *index = index_name(fp);
    char jobdir[300], log1[200], log2[200];
    snprintf(jobdir, sizeof jobdir, "%s/ck/hourly_clicks", dir_);
    snprintf(log1, sizeof log1, "crashed-%s.log", index);
    snprintf(log2, sizeof log2, "restored-%s.log", index);
    int rc = run_local(fp, index, sink_opts, "st1", "", log1);
    if (rc != 137)
        kp_test_sh("tail -n 20 %s/%s >&2", dir_, log1);
    cr_assert_eq(rc, 137, "KAPPA_FAILPOINTS=%s: the run did not crash there (exit %d)", fp, rc);
    int before = completed(jobdir);
    cr_assert_geq(before, 1, "%s: no checkpoint completed before the crash", fp);
    char from[400];
    snprintf(from, sizeof from, "--from-checkpoint %s", jobdir);
    rc = run_local(NULL, index, "max_actions=20&inflight=4", "st2", from, log2);
    if (rc != 0)
        kp_test_sh("tail -n 20 %s/%s >&2", dir_, log2);
    cr_assert_eq(rc, 0, "the restored run failed (exit %d, %s/%s)", rc, dir_, log2);
    fprintf(stderr, "failpoints: %s: crashed with %d checkpoint(s) in storage, restored\n", fp,
            before);
    assert_index_is_truth(index);
    assert_final_checkpoint(jobdir);
    assert_no_orphans(jobdir);
}

Test(failpoints, crash_after_the_rocksdb_snapshot_before_the_ack)
{
    local_case("snapshot.after_rocksdb_checkpoint@12", "max_actions=20&inflight=4");
}

Test(failpoints, crash_after_completion_before_the_notification)
{
    local_case("coord.after_complete_before_notify@3", "max_actions=20&inflight=4");
}

Test(failpoints, crash_in_the_middle_of_an_elasticsearch_flush)
{
    local_case("es.mid_flush@5", "max_actions=5&inflight=2");
}

Test(failpoints, crash_in_the_local_metadata_write)
{
    local_case("store.before_metadata_rename@3", "max_actions=20&inflight=4");
}

Test(failpoints, crash_after_the_local_metadata_write)
{
    local_case("store.after_metadata_write@3", "max_actions=20&inflight=4");
}

/* ---- the cluster --------------------------------------------------------------------------- */

/* A jobmanager with KAPPA_FAILPOINTS=fp (ports fixed on a restart: rest/rpc may be NULL). */
static void start_jm(const char *fp, const char *rest, const char *rpc)
{
    const char *flags[] = {"--restart-delay-ms",
                           "200",
                           "--checkpoint-dir",
                           kp_itest_path("ck"),
                           rest ? "--rest-port" : NULL,
                           rest,
                           "--rpc-port",
                           rpc,
                           NULL};
    if (fp)
        setenv("KAPPA_FAILPOINTS", fp, 1);
    jm_start(&jm_, kp_itest_path("jm"), flags);
    unsetenv("KAPPA_FAILPOINTS");
}

static void await_state(const char *job, const char *want, int seconds)
{
    kp_itest_await_state(&jm_, job, want, seconds);
}

/* The jobmanager crashes at `fp` while the job runs; a new one recovers it. */
static void cluster_case(const char *fp, const char *name)
{
    gen_file(400000);
    start_jm(fp, NULL, NULL);
    tm_[0] = tm_proc_start(&jm_, kp_itest_path("tm1"), 4);
    tm_[1] = tm_proc_start(&jm_, kp_itest_path("tm2"), 4);
    wait_taskmanagers(&jm_, 2);
    const char *index = index_name(name);
    cr_assert_eq(kp_test_sh("%s submit %s/hourly_clicks.so -p 2 --name %s --es-url %s --source "
                            "'clicks=file:%s/events.ndjson?partitions=4' --sink "
                            "'hourly-click-index=es:%s?max_actions=20&inflight=1' "
                            "--checkpoint-interval 200ms --retained-checkpoints %d "
                            "--jobmanager %s >%s/submit.out 2>&1",
                            kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), name, es_, dir_,
                            index, RETAIN, jm_.rest, dir_),
                 0, "kappa submit failed (%s/submit.out)", dir_);
    int status = 0;
    for (int i = 0; i < 1200 && waitpid(jm_.pid, &status, WNOHANG) == 0; i++)
        usleep(100 * 1000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 137,
              "the jobmanager did not crash at %s (status %#x)", fp, status);
    char rest[16], rpc[16];
    snprintf(rest, sizeof rest, "%s", strrchr(jm_.rest, ':') + 1);
    snprintf(rpc, sizeof rpc, "%d", jm_.rpc_port);
    jm_.pid = 0;
    start_jm(NULL, rest, rpc);
    await_state(name, "FINISHED", 600);
    char cmd[600], jobdir[400];
    snprintf(cmd, sizeof cmd, "ls -d %s/ck/*/ | head -n 1", dir_);
    kp_test_capture(jobdir, sizeof jobdir, cmd);
    cr_assert(jobdir[0], "no job directory in %s/ck", dir_);
    fprintf(stderr, "failpoints: cluster %s: recovered, %d checkpoint(s) in %s\n", fp,
            completed(jobdir), jobdir);
    assert_index_is_truth(index);
    assert_final_checkpoint(jobdir);
    kp_itest_stop_cluster(&jm_, tm_);
    assert_no_orphans(jobdir);
}

Test(failpoints, jobmanager_crash_in_its_metadata_write)
{
    cluster_case("store.before_metadata_rename@3", "jm-meta");
}

Test(failpoints, jobmanager_crash_after_completion_before_the_notification)
{
    cluster_case("coord.after_complete_before_notify@3", "jm-notify");
}

/* ---- Kafka --------------------------------------------------------------------------------- */

/* The seed job Kafka → transactional Kafka sink, crashed at `fp` (`fetch`: the source's extra
 * URI options), restored from the latest checkpoint: a read_committed consumer reads the
 * truth, every record once. */
static void kafka_case(const char *fp, const char *fetch)
{
    snprintf(topic_, sizeof topic_, "failpoints-%ld-%d", (long)time(NULL), (int)getpid());
    for (int i = 0; i < 2; i++)
        /* no time retention: the events carry 2023 timestamps (tests/integration/chaos) */
        cr_assert_eq(kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s%s 4 "
                                "--config retention.ms=-1 >/dev/null 2>&1",
                                brokers_, kp_test_env("KAPPA_SRC"), topic_, i ? "-out" : ""),
                     0, "cannot create topic %s at %s", topic_, brokers_);
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s --partitioner hash --count 300000 %s "
                            "--truth %s/truth.tsv",
                            kp_test_env("KAPPA_GEN"), brokers_, topic_, gen_model, dir_),
                 0, "kappa-gen could not write the log");
    sort_truth();
    const char *fmt = "%s%s %s run --local %s/hourly_clicks.so -p 2 --brokers %s --from-earliest "
                      "--source 'clicks=kafka:%s?stop_at=end%s' "
                      "--sink 'hourly-click-index=kafka:%s-out?transactional=1' --state-dir %s/%s "
                      "--checkpoint-dir %s/ck --checkpoint-interval 100ms "
                      "--retained-checkpoints %d %s >%s/%s 2>&1";
    int rc = kp_test_sh(fmt, "KAPPA_FAILPOINTS=", fp, kp_test_env("KAPPA_CLI"),
                        kp_test_env("KAPPA_JOBS"), brokers_, topic_, fetch, topic_, dir_, "st1",
                        dir_, RETAIN, "", dir_, "kafka1.log");
    if (rc != 137)
        kp_test_sh("tail -n 20 %s/kafka1.log >&2", dir_);
    cr_assert_eq(rc, 137, "the run did not crash at %s (exit %d)", fp, rc);
    char jobdir[300], from[400];
    snprintf(jobdir, sizeof jobdir, "%s/ck/hourly_clicks", dir_);
    snprintf(from, sizeof from, "--from-checkpoint %s", jobdir);
    rc = kp_test_sh(fmt, "", "", kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), brokers_,
                    topic_, fetch, topic_, dir_, "st2", dir_, RETAIN, from, dir_, "kafka2.log");
    if (rc != 0)
        kp_test_sh("tail -n 20 %s/kafka2.log >&2", dir_);
    cr_assert_eq(rc, 0, "the restored run failed (exit %d)", rc);
    /* kcat reads read_committed (librdkafka's default isolation level) to the end */
    cr_assert_eq(kp_test_sh("kcat -C -b %s -t %s-out -X isolation.level=read_committed -e -q "
                            "-f '%%s\\n' > %s/committed.ndjson",
                            brokers_, topic_, dir_),
                 0, "kcat failed");
    char counts[64], cmd[800];
    snprintf(cmd, sizeof cmd,
             "python3 %s/tests/integration/ckpt_check.py kafka-last %s/committed.ndjson "
             "%s/kafka.sorted",
             kp_test_env("KAPPA_SRC"), dir_, dir_);
    kp_test_capture(counts, sizeof counts, cmd);
    long long n = 0, dups = -1;
    cr_assert_eq(sscanf(counts, "%lld %lld", &n, &dups), 2, "ckpt_check.py: '%s'", counts);
    fprintf(stderr, "failpoints: %s: %lld committed records, %lld read twice\n", fp, n, dups);
    cr_assert_eq(dups, 0, "%lld records committed twice", dups);
    if (kp_test_sh("cmp -s %s/truth.sorted %s/kafka.sorted", dir_, dir_) != 0)
        kp_test_sh("(wc -l %s/truth.sorted %s/kafka.sorted; diff %s/truth.sorted "
                   "%s/kafka.sorted | head -n 12) >&2",
                   dir_, dir_, dir_, dir_);
    cr_assert_eq(kp_test_sh("cmp -s %s/truth.sorted %s/kafka.sorted", dir_, dir_), 0,
                 "the committed records differ from the truth");
    assert_final_checkpoint(jobdir);
    assert_no_orphans(jobdir);
}

/* Small fetches keep the run reading for several checkpoints, so that the crash meets a
 * checkpoint's commit in the middle of the input. */
Test(failpoints, crash_in_the_kafka_transaction_commit)
{
    kafka_case("kafka.mid_commit@1", "&rdkafka.max.partition.fetch.bytes=2048");
}

/* The end-of-input commit (the sink's flush when its inputs end) comes after the final
 * checkpoint, taken once every source reached the end of its input (docs/checkpoints.md,
 * Bounded inputs): that checkpoint's notification committed every record, so the restore
 * starts at the end and re-sends nothing. It was a known gap before the final checkpoint. */
Test(failpoints, crash_in_the_kafka_end_of_input_commit)
{
    kafka_case("kafka.mid_final_commit@1", "");
}
