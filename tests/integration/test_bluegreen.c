/* Blue/green reprocessing end to end (issue 12, docs/bluegreen.md): a real jobmanager, two real
 * taskmanagers, `kappa submit/rollback/cancel`, a real Kafka broker and a real OpenSearch node
 * (with-services).
 *
 * v1 (hourly_clicks, unbounded) writes es:ALIAS — the jobmanager makes ALIAS an alias of
 * ALIAS-v1 — until the alias equals the v1 truth. Then, while events keep arriving (the clock
 * hour, which stays open) and a reader (alias_reader.py) polls the alias every ~50 ms,
 * hourly_clicks_v2 is submitted with --replace: it runs beside v1 into ALIAS-v2; once caught up
 * the alias moves and v1 is cancelled. Asserted: the reader only ever saw exactly the v1 truth,
 * then exactly the v2 truth (never a mixture, an empty or a partial index); the alias then
 * equals the v2 truth (no v1-only document); v1's index is kept. Then the clock hour is closed
 * (a new result both versions produce), `kappa rollback` puts the alias back on ALIAS-v1, v1 runs
 * again from its start position and the alias converges to the v1 truth plus that hour; v2 is
 * cancelled and its index deleted. A v2 that fails (a sink option it refuses, restart strategy
 * none) and one cancelled while catching up leave the alias and v1 alone and their half-built
 * indices are deleted. The time from caught-up to switched and the two indices' sizes at the
 * switch are printed (figures, not asserted). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/itest.h"
#include "../support/shell.h"
#include "../unit/jm_harness.h"

static char dir_[] = "/tmp/kappa-bluegreen-XXXXXX";
static char brokers_[128], es_[128], topic_[128], alias_[128];
static jm_proc jm_;
static pid_t tm_[2], reader_, feeder_;
static long long clock_ms_;

static const char gen_model[] = "--items 20 --out-of-order-ms 10000 --late-fraction 0.001 "
                                "--late-lag-ms 172800000 --malformed 0.002";

/* The first line of a command's output (printf-style command). */
static void capture(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void capture(char *out, size_t len, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    kp_test_capture(out, len, cmd);
}

static void setup(void)
{
    kp_itest_open(dir_);
    snprintf(brokers_, sizeof brokers_, "%s", kp_test_env("KAPPA_BROKERS"));
    snprintf(es_, sizeof es_, "%s", kp_test_env("KAPPA_ES_URL"));
    snprintf(alias_, sizeof alias_, "bg-%d-clicks", (int)getpid());
}

static void stop_child(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGTERM);
        waitpid(*pid, NULL, 0);
    }
    *pid = 0;
}

static void teardown(void)
{
    kp_test_sh("touch %s/stop", dir_);
    stop_child(&reader_);
    stop_child(&feeder_);
    jm_kill_all();
    if (topic_[0])
        kp_itest_topic_delete(brokers_, topic_);
    kp_itest_indices_delete(es_, "bg");
    kp_itest_close("bluegreen");
}

TestSuite(bluegreen, .init = setup, .fini = teardown, .timeout = 1500);

/* `kappa ARGS --jobmanager REST`, output into dir/LOG.out and .err; its exit status. */
#define KAPPA(log, fmt, ...)                                                                       \
    kp_test_sh("%s " fmt " --jobmanager %s >%s/%s.out 2>%s/%s.err", kp_test_env("KAPPA_CLI"),      \
               __VA_ARGS__, jm_.rest, dir_, log, dir_, log)

/* `kappa submit` of the seed job family, -p 2, from the earliest offsets, unbounded. */
#define SUBMIT(log, job, name, sink_opts, extra)                                                   \
    KAPPA(log,                                                                                     \
          "submit %s/%s.so -p 2 --name %s --brokers %s --es-url %s --from-earliest --source "      \
          "'clicks=kafka:%s' --sink 'hourly-click-index=es:%s%s' %s",                              \
          kp_test_env("KAPPA_JOBS"), job, name, brokers_, es_, topic_, alias_, sink_opts, extra)

/* 4 partitions of kappa-gen events (7 days), the v1 and v2 truths as sorted (item, end, count)
 * lines, then one clock record per partition a day after the last event: every hour of the data
 * closes, the clock's own hour stays open. */
static void produce(int count)
{
    snprintf(topic_, sizeof topic_, "bg-%ld-%d", (long)time(NULL), (int)getpid());
    cr_assert_eq(kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s 4 >/dev/null "
                            "2>&1",
                            brokers_, kp_test_env("KAPPA_SRC"), topic_),
                 0, "cannot create topic %s", topic_);
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s --partitioner hash --count %d --span "
                            "604800000 %s --seed 11 --truth %s/truth.tsv --quiet",
                            kp_test_env("KAPPA_GEN"), brokers_, topic_, count, gen_model, dir_),
                 0, "kappa-gen could not write the log");
    cr_assert_eq(kp_test_sh("%s --dry-run --partitions 4 --count %d --span 604800000 %s --seed 11 "
                            "--filter-users-above 50 --truth %s/truth-v2.tsv --quiet",
                            kp_test_env("KAPPA_GEN"), count, gen_model, dir_),
                 0);
    for (int v = 1; v <= 2; v++)
        cr_assert_eq(kp_test_sh("grep -v '^#' %s/truth%s.tsv | awk -F'\\t' "
                                "'{print $1\"\\t\"$3\"\\t\"$4}' | LC_ALL=C sort > %s/v%d.sorted",
                                dir_, v == 1 ? "" : "-v2", dir_, v),
                     0);
    char out[64];
    capture(out, sizeof out,
            "sed -n 's/^# partition=.* max_ts=\\([0-9]*\\)$/\\1/p' %s/truth.tsv | sort -n "
            "| tail -1",
            dir_);
    cr_assert_gt(atoll(out), 0, "no max_ts in the truth");
    clock_ms_ = atoll(out) + 86400000LL;
    for (int p = 0; p < 4; p++)
        cr_assert_eq(kp_test_sh("echo '{\"user_id\":\"user_1000000\",\"item_id\":\"clock\","
                                "\"timestamp\":%lld}' | kcat -P -b %s -t %s -p %d",
                                clock_ms_, brokers_, topic_, p),
                     0);
}

static void start_cluster(void)
{
    kp_itest_start_cluster(&jm_, tm_);
}

static void await_state(const char *job, const char *want, int seconds)
{
    kp_itest_await_state(&jm_, job, want, seconds);
}

/* GET /jobs/:job's "bluegreen" object (new reference; asserted to be an object). */
static json_t *bluegreen(const char *job)
{
    char path[256];
    snprintf(path, sizeof path, "/jobs/%s", job);
    http_reply r = http_req(&jm_, "GET", path, NULL);
    cr_assert_eq(r.status, 200, "GET %s: %ld", path, r.status);
    json_t *bg = json_incref(json_object_get(r.body, "bluegreen"));
    http_free(&r);
    if (!json_is_object(bg)) /* what the jobmanager did */
        kp_test_sh("(tail -n 40 %s/jm.log; cat %s/jm/bluegreen.json) >&2", dir_, dir_);
    cr_assert(json_is_object(bg), "job %s has no blue/green record", job);
    return bg;
}

/* The blue/green record's `field` of its first sink ("new_index", "old_index") into buf. */
static const char *sink_field(const char *job, const char *field, char *buf, size_t len)
{
    json_t *bg = bluegreen(job);
    const char *v =
        json_string_value(json_object_get(json_array_get(json_object_get(bg, "sinks"), 0), field));
    snprintf(buf, len, "%s", v ? v : "");
    json_decref(bg);
    return buf;
}

static const char *phase_of(const char *job, char *buf, size_t len)
{
    json_t *bg = bluegreen(job);
    snprintf(buf, len, "%s", json_string_value(json_object_get(bg, "phase")));
    json_decref(bg);
    return buf;
}

static void await_phase(const char *job, const char *want, int seconds)
{
    char got[32] = "";
    double end = kp_itest_now_s() + seconds;
    while (kp_itest_now_s() < end) {
        if (!strcmp(phase_of(job, got, sizeof got), want))
            return;
        usleep(200 * 1000);
    }
    kp_test_sh("tail -n 30 %s/jm.log >&2", dir_);
    cr_assert_fail("the blue/green of %s is %s after %d s, expected %s", job, got, seconds, want);
}

/* The index ALIAS points at ("" if none). */
static const char *alias_target(char *buf, size_t len)
{
    capture(buf, len,
            "curl -s '%s/_alias/%s' | python3 -c 'import json,sys; d=json.load(sys.stdin); "
            "print(\",\".join(k for k in d if \"aliases\" in d[k]))' 2>/dev/null",
            es_, alias_);
    return buf;
}

static long http_status(const char *index)
{
    char out[16];
    capture(out, sizeof out, "curl -s -o /dev/null -w '%%{http_code}' -I '%s/%s'", es_, index);
    return atol(out);
}

/* Polls until the alias holds exactly `want` (a sorted truth file) or `seconds` passed. */
static void await_alias(const char *want, int seconds)
{
    const char *got = kp_itest_path("alias.sorted");
    double end = kp_itest_now_s() + seconds;
    while (kp_itest_now_s() < end) {
        if (kp_test_sh("python3 %s/tests/integration/es_dump.py %s %s %s/alias.tsv 2>/dev/null && "
                       "LC_ALL=C sort %s/alias.tsv > %s && cmp -s %s %s",
                       kp_test_env("KAPPA_SRC"), es_, alias_, dir_, dir_, got, want, got) == 0)
            return;
        sleep(1);
    }
    kp_test_sh("(wc -l %s %s; diff %s %s | head -n 12) >&2", want, got, want, got);
    cr_assert_fail("the alias %s does not hold %s after %d s", alias_, want, seconds);
}

static pid_t spawn_sh(const char *cmd)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Events keep arriving: every 200 ms one in the clock hour, a line in dir/fed each. */
static void start_feeder(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "i=0; while [ ! -f %s/stop-feeder ]; do i=$((i+1)); echo "
             "\"{\\\"user_id\\\":\\\"user_1000000\\\",\\\"item_id\\\":\\\"clock\\\","
             "\\\"timestamp\\\":$((%lld + i))}\" | kcat -P -b %s -t %s && echo $i >> %s/fed; "
             "sleep 0.2; done",
             dir_, clock_ms_, brokers_, topic_, dir_);
    feeder_ = spawn_sh(cmd);
}

Test(bluegreen, switch_rollback_and_aborts)
{
    start_cluster();
    produce(20000);
    char buf[512], target[256], v1_index[256], v2_index[256];

    /* v1: the jobmanager makes the binding's name an alias of a physical index */
    cr_assert_eq(SUBMIT("v1", "hourly_clicks", "bg-v1", "", ""), 0, "(%s/v1.err)", dir_);
    await_state("bg-v1", "RUNNING", 120);
    await_alias(kp_itest_path("v1.sorted"), 300);
    snprintf(v1_index, sizeof v1_index, "%s", alias_target(target, sizeof target));
    snprintf(buf, sizeof buf, "%s-v1", alias_);
    cr_assert_str_eq(v1_index, buf, "es:%s is not an alias of %s", alias_, buf);

    /* v2 beside v1 while events arrive and a reader polls the alias */
    start_feeder();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec python3 %s/tests/integration/alias_reader.py %s %s %s %s %s %s",
             kp_test_env("KAPPA_SRC"), es_, alias_, kp_itest_path("v1.sorted"),
             kp_itest_path("v2.sorted"), kp_itest_path("reader.out"), kp_itest_path("stop"));
    reader_ = spawn_sh(cmd);
    /* v2's sink sends a partial bulk only after 5 s, longer than the 1 s hold: only the
     * checkpoint of v2 before the switch makes its index complete when the alias moves */
    cr_assert_eq(
        SUBMIT("v2", "hourly_clicks_v2", "bg-v2", "?flush_ms=5000",
               "--replace bg-v1 --keep-old 1h --conf bluegreen.hold_ms=1000 --conf "
               "'es.index_body={\"settings\":{\"index\":{\"refresh_interval\":\"900ms\"}}}'"),
        0, "(%s/v2.err)", dir_);
    await_phase("bg-v2", "CATCHING_UP", 120);
    cr_assert_str_eq(job_state(&jm_, "bg-v1", buf, sizeof buf), "RUNNING");
    sink_field("bg-v2", "new_index", v2_index, sizeof v2_index);
    cr_assert_str_eq(sink_field("bg-v2", "old_index", buf, sizeof buf), v1_index);
    snprintf(buf, sizeof buf, "%s-v2", alias_);
    cr_assert_str_eq(v2_index, buf);
    cr_assert_str_eq(alias_target(target, sizeof target), v1_index, "the alias moved too early");
    capture(buf, sizeof buf,
            "curl -s '%s/%s/_settings' | grep -o '\"refresh_interval\":\"[^\"]*\"'", es_, v2_index);
    cr_assert_str_eq(buf, "\"refresh_interval\":\"900ms\"", "es.index_body not applied: %s", buf);

    /* caught up → switched; v1 cancelled; its index kept */
    await_state("bg-v1", "CANCELED", 600);
    await_phase("bg-v2", "SWITCHED", 30);
    cr_assert_str_eq(alias_target(target, sizeof target), v2_index);
    cr_assert_str_eq(job_state(&jm_, "bg-v2", buf, sizeof buf), "RUNNING");
    cr_assert_eq(http_status(v1_index), 200, "v1's index was not kept");
    sleep(2);
    kp_test_sh("touch %s/stop", dir_);
    int st;
    cr_assert_eq(waitpid(reader_, &st, 0), reader_);
    reader_ = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the reader failed");
    kp_test_sh("cat %s/reader.out >&2", dir_);
    char runs[1024];
    capture(runs, sizeof runs, "grep -v '^polls' %s/reader.out | cut -d' ' -f1 | tr '\\n' ' '",
            dir_);
    cr_assert_str_eq(runs, "v1 v2 ", "the reader saw: %s", runs);
    await_alias(kp_itest_path("v2.sorted"), 10);

    json_t *bg = bluegreen("bg-v2");
    json_t *storage = json_object_get(bg, "storage");
    long long caught = json_integer_value(json_object_get(bg, "caught_up_ms"));
    long long switched = json_integer_value(json_object_get(bg, "switched_ms"));
    fprintf(stderr,
            "bluegreen: caught up -> switched %lld ms (the hold of 1000 ms and v2's checkpoint "
            "included); at the "
            "switch v1's index %lld docs %lld bytes, v2's %lld docs %lld bytes\n",
            switched - caught, (long long)json_integer_value(json_object_get(storage, "old_docs")),
            (long long)json_integer_value(json_object_get(storage, "old_bytes")),
            (long long)json_integer_value(json_object_get(storage, "new_docs")),
            (long long)json_integer_value(json_object_get(storage, "new_bytes")));
    json_decref(bg);
    cr_assert_eq(KAPPA("status", "status %s", "bg-v2"), 0);
    cr_assert_eq(kp_test_sh("grep -q 'blue/green (this job is v2): SWITCHED' %s/status.out", dir_),
                 0, "kappa status shows no blue/green (%s/status.out)", dir_);
    cr_assert_eq(kp_test_sh("grep -q 'caught up for .*Kafka lag [0-9]' %s/status.out", dir_), 0,
                 "the caught-up rule did not use v2's Kafka lag (%s/status.out)", dir_);
    cr_assert_eq(kp_test_sh("grep -q \"SWITCHING -> SWITCHING: v2's checkpoint [0-9]* complete\" "
                            "%s/status.out",
                            dir_),
                 0, "no checkpoint of v2 before the switch (%s/status.out)", dir_);

    /* the clock hour closes: a result both versions produce, arriving after the switch */
    kp_test_sh("touch %s/stop-feeder", dir_); /* it ends its round: fed counts every event */
    cr_assert_eq(waitpid(feeder_, NULL, 0), feeder_);
    feeder_ = 0;
    char fed[32];
    capture(fed, sizeof fed, "wc -l < %s/fed", dir_);
    for (int p = 0; p < 4; p++)
        cr_assert_eq(kp_test_sh("echo '{\"user_id\":\"user_1000000\",\"item_id\":\"clock\","
                                "\"timestamp\":%lld}' | kcat -P -b %s -t %s -p %d",
                                clock_ms_ + 7200000LL, brokers_, topic_, p),
                     0);
    long long hour_end = (clock_ms_ / 3600000 + 1) * 3600000;
    for (int v = 1; v <= 2; v++)
        kp_test_sh("(cat %s/v%d.sorted; printf 'clock\\t%lld\\t%lld\\n' ) | LC_ALL=C sort > "
                   "%s/v%d-closed.sorted",
                   dir_, v, hour_end, 4 + atoll(fed), dir_, v);
    await_alias(kp_itest_path("v2-closed.sorted"), 120);

    /* rollback: alias back to v1's index, v1 again (from its start position), v2 cancelled */
    cr_assert_eq(KAPPA("rollback", "rollback %s", "bg-v2"), 0, "(%s/rollback.err)", dir_);
    json_t *sp = bluegreen("bg-v2");
    const char *sp_path = json_string_value(json_object_get(sp, "v1_savepoint"));
    cr_assert(sp_path && *sp_path, "v1 did not stop with a savepoint");
    fprintf(stderr, "bluegreen: v1 stopped with savepoint %s\n", sp_path);
    char step[1100]; /* what the dashboard's panel shows (kp_bg_step_json) */
    snprintf(step, sizeof step, "v1 savepoint: %s", sp_path);
    cr_assert_str_eq(json_string_value(json_object_get(sp, "step")), step);
    json_decref(sp);
    await_phase("bg-v2", "ROLLED_BACK", 60);
    cr_assert_eq(kp_test_sh("grep -q 'v1 again as job .*, from .*savepoints' %s/jm.log", dir_), 0,
                 "the rollback did not restore v1's savepoint (%s/jm.log)", dir_);
    await_state("bg-v2", "CANCELED", 60);
    cr_assert_str_eq(alias_target(target, sizeof target), v1_index);
    await_state("bg-v1", "RUNNING", 120); /* the name now finds v1's new run */
    await_alias(kp_itest_path("v1-closed.sorted"), 300);
    for (int i = 0; i < 100 && http_status(v2_index) != 404; i++)
        usleep(200 * 1000);
    cr_assert_eq(http_status(v2_index), 404, "v2's index was not deleted after the rollback");
    cr_assert_eq(KAPPA("rollback-again", "rollback %s", "bg-v2"), 1, "a second rollback");

    /* a v2 that fails before the switch: the alias and v1 are untouched, its index deleted */
    cr_assert_eq(SUBMIT("v3", "hourly_clicks_v2", "bg-v3", "?max_actions=0",
                        "--replace bg-v1 --conf restart-strategy=none"),
                 0, "(%s/v3.err)", dir_);
    await_state("bg-v3", "FAILED", 120);
    await_phase("bg-v3", "ABORTED", 60);
    sink_field("bg-v3", "new_index", buf, sizeof buf);
    cr_assert(buf[0] && strcmp(buf, v1_index), "v3 had no index of its own: '%s'", buf);
    cr_assert_eq(http_status(buf), 404, "v3's half-built index %s is still there", buf);
    cr_assert_str_eq(alias_target(target, sizeof target), v1_index);
    cr_assert_str_eq(job_state(&jm_, "bg-v1", buf, sizeof buf), "RUNNING");

    /* one cancelled while it catches up (a hold it never reaches) */
    cr_assert_eq(SUBMIT("v4", "hourly_clicks_v2", "bg-v4", "",
                        "--replace bg-v1 --conf bluegreen.hold_ms=3600000"),
                 0, "(%s/v4.err)", dir_);
    await_phase("bg-v4", "CATCHING_UP", 120);
    await_state("bg-v4", "RUNNING", 120);
    /* replacing a replacement still catching up is refused: its own v1 would run on unseen
     * (kappa submit exits 1 when it already sees the job FAILED, 0 when it saw it waiting) */
    int rc = SUBMIT("v6", "hourly_clicks_v2", "bg-v6", "", "--replace bg-v4");
    cr_assert(rc == 0 || rc == 1, "kappa submit: exit %d (%s/v6.err)", rc, dir_);
    await_state("bg-v6", "FAILED", 60);
    cr_assert_eq(KAPPA("status-v6", "status %s", "bg-v6"), 0);
    cr_assert_eq(kp_test_sh("grep -q 'is itself a blue/green replacement still CATCHING_UP' "
                            "%s/status-v6.out",
                            dir_),
                 0, "(%s/status-v6.out)", dir_);
    cr_assert_eq(KAPPA("cancel-v4", "cancel %s", "bg-v4"), 0);
    await_phase("bg-v4", "ABORTED", 60);
    sink_field("bg-v4", "new_index", buf, sizeof buf);
    cr_assert_eq(http_status(buf), 404, "v4's half-built index %s is still there", buf);
    cr_assert_str_eq(alias_target(target, sizeof target), v1_index);
    cr_assert_str_eq(job_state(&jm_, "bg-v1", buf, sizeof buf), "RUNNING");
    await_alias(kp_itest_path("v1-closed.sorted"), 30);

    /* an index body the node refuses: v2 fails at once, saying why; nothing else moves */
    rc = SUBMIT("v5", "hourly_clicks_v2", "bg-v5", "",
                "--replace bg-v1 --conf 'es.index_body={\"settings\":{\"no_such\":1}}'");
    cr_assert(rc == 0 || rc == 1, "kappa submit: exit %d (%s/v5.err)", rc, dir_);
    await_state("bg-v5", "FAILED", 60);
    await_phase("bg-v5", "ABORTED", 60);
    cr_assert_eq(KAPPA("status-v5", "status %s", "bg-v5"), 0);
    cr_assert_eq(kp_test_sh("grep -q 'cannot prepare the Elasticsearch index for es:%s.*HTTP 400' "
                            "%s/status-v5.out",
                            alias_, dir_),
                 0, "kappa status does not say why v5 failed (%s/status-v5.out)", dir_);
    cr_assert_str_eq(alias_target(target, sizeof target), v1_index);
    cr_assert_str_eq(job_state(&jm_, "bg-v1", buf, sizeof buf), "RUNNING");

    kp_itest_stop_cluster(&jm_, tm_);
}

/* The jobmanager SIGKILLed (if it still runs) and started again on the same state dir and
 * control port, with KAPPA_FAILPOINTS=failpoints (NULL: none). */
static void restart_jobmanager_with(const char *failpoints)
{
    char port[16];
    snprintf(port, sizeof port, "%d", jm_.rpc_port);
    tm_proc_kill(jm_.pid); /* kill -9, and forgotten by the harness */
    const char *flags[] = {"--restart-delay-ms", "200", "--rpc-port", port, NULL};
    if (failpoints)
        setenv("KAPPA_FAILPOINTS", failpoints, 1);
    jm_start(&jm_, kp_itest_path("jm"), flags);
    unsetenv("KAPPA_FAILPOINTS");
}

static void restart_jobmanager(void)
{
    restart_jobmanager_with(NULL);
}

/* Waits until the jobmanager stops at its failpoint (_exit(137)). */
static void await_failpoint(const char *name)
{
    int st = 0;
    double end = kp_itest_now_s() + 300;
    while (waitpid(jm_.pid, &st, WNOHANG) == 0 && kp_itest_now_s() < end)
        usleep(100 * 1000);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 137,
              "the jobmanager did not stop at the failpoint %s (%s/jm.log)", name, dir_);
}

/* `field` of v2's record in bluegreen.json (the last one: v1's came first), as JSON text. */
static const char *v2_record(const char *field, char *buf, size_t len)
{
    capture(buf, len,
            "python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))[-1]"
            "[sys.argv[2]]))' %s/jm/bluegreen.json %s 2>&1",
            dir_, field);
    return buf;
}

/* The jobmanager stopped at failpoint fp, the alias on `index`, v2's record in `phase`. */
static void crashed_at(const char *fp, const char *index, const char *phase)
{
    char buf[256], want[64];
    await_failpoint(fp);
    cr_assert_str_eq(alias_target(buf, sizeof buf), index, "after %s", fp);
    snprintf(want, sizeof want, "\"%s\"", phase);
    cr_assert_str_eq(v2_record("phase", buf, sizeof buf), want, "after %s", fp);
}

/* A restarted jobmanager recovers the jobs that ran as new attempts (docs/cluster.md) and the
 * blue/green records from its state dir: killed during the catch-up, the procedure goes on;
 * crashed (failpoints) right after v2's checkpoint was requested, the restarted one asks again
 * and switches only once one completed; crashed between the _aliases call and the record's
 * save, it completes the switch without moving anything twice; crashed right after the switch,
 * before v1's stop-with-savepoint ran, it stops v1 with a savepoint again and records its path;
 * v1's index is still deleted once --keep-old is over. The switch and the deletion are each
 * recorded once. */
Test(bluegreen, jobmanager_restarts_mid_procedure)
{
    start_cluster();
    produce(20000);
    char buf[256], target[256], v1_index[256], v2_index[256];
    cr_assert_eq(SUBMIT("v1", "hourly_clicks", "bg-v1", "", ""), 0, "(%s/v1.err)", dir_);
    await_alias(kp_itest_path("v1.sorted"), 300);
    snprintf(v1_index, sizeof v1_index, "%s", alias_target(target, sizeof target));

    /* killed during the catch-up (a hold of 8 s keeps it there) */
    cr_assert_eq(SUBMIT("v2", "hourly_clicks_v2", "bg-v2", "",
                        "--replace bg-v1 --keep-old 45s --conf bluegreen.hold_ms=8000"),
                 0, "(%s/v2.err)", dir_);
    await_state("bg-v2", "RUNNING", 120);
    await_phase("bg-v2", "CATCHING_UP", 60);
    sink_field("bg-v2", "new_index", v2_index, sizeof v2_index);
    json_t *bg;
    cr_assert_eq(http_status(v2_index), 200);
    restart_jobmanager_with("bluegreen.after_v2_checkpoint_request");
    cr_assert_str_eq(phase_of("bg-v2", buf, sizeof buf), "CATCHING_UP");
    cr_assert_str_eq(alias_target(target, sizeof target), v1_index);

    /* recovered, caught up again; dies once v2's checkpoint is requested (saved, not done) */
    crashed_at("bluegreen.after_v2_checkpoint_request", v1_index, "SWITCHING");
    cr_assert_str_eq(v2_record("v2_synced", buf, sizeof buf), "false");
    cr_assert_eq(strlen(v2_record("v2_checkpoint_request", buf, sizeof buf)), 34,
                 "no pending checkpoint request in the record: %s", buf);

    /* the request is gone with the process: asked again; the jobmanager dies right after the
     * _aliases call, before the record says so */
    restart_jobmanager_with("bluegreen.after_alias_switch");
    crashed_at("bluegreen.after_alias_switch", v2_index, "SWITCHING"); /* not saved yet */
    cr_assert_str_eq(v2_record("v2_synced", buf, sizeof buf), "true");

    /* the switch is done again (the alias is already there); the jobmanager dies right after
     * the record says SWITCHED, v1's stop-with-savepoint requested but not run */
    restart_jobmanager_with("bluegreen.after_v1_savepoint_request");
    crashed_at("bluegreen.after_v1_savepoint_request", v2_index, "SWITCHED");
    cr_assert_str_eq(v2_record("v1_savepoint", buf, sizeof buf), "\"\"");
    cr_assert_eq(strlen(v2_record("v1_savepoint_request", buf, sizeof buf)), 34,
                 "no pending savepoint request in the record: %s", buf);

    /* started again: v1 (recovered) stops with a savepoint again; the jobmanager dies once it
     * is complete, before the record has its path */
    restart_jobmanager_with("bluegreen.before_v1_savepoint_saved");
    cr_assert_eq(http_status(v1_index), 200, "v1's index went before --keep-old was over");
    crashed_at("bluegreen.before_v1_savepoint_saved", v2_index, "SWITCHED");
    cr_assert_str_eq(v2_record("v1_savepoint", buf, sizeof buf), "\"\"");

    /* started again: the savepoint is found where the request put it, v1 stays stopped */
    restart_jobmanager();
    await_state("bg-v1", "CANCELED", 120);
    for (int i = 0; i < 100 && strncmp(v2_record("v1_savepoint", buf, sizeof buf), "\"/", 2); i++)
        usleep(200 * 1000);
    bg = bluegreen("bg-v2");
    const char *sp = json_string_value(json_object_get(bg, "v1_savepoint"));
    cr_assert(sp && *sp == '/', "v1's savepoint path was lost with the restart: '%s'", sp);
    fprintf(stderr, "bluegreen: v1 stopped with savepoint %s after the restart\n", sp);
    cr_assert_eq(
        kp_test_sh("grep -q 'found after a jobmanager restart' %s/jm/bluegreen.json", dir_), 0,
        "the savepoint was not taken from where the request put it");
    cr_assert_eq(kp_test_sh("test -f '%s/_metadata'", sp), 0, "no savepoint at %s", sp);
    json_decref(bg);

    await_phase("bg-v2", "DONE", 120);
    cr_assert_eq(http_status(v1_index), 404, "v1's index was not deleted after --keep-old");
    cr_assert_str_eq(alias_target(target, sizeof target), v2_index);
    await_alias(kp_itest_path("v2.sorted"), 60);
    bg = bluegreen("bg-v2");
    size_t switched = 0, done = 0, synced = 0, i;
    json_t *t;
    json_array_foreach(json_object_get(bg, "transitions"), i, t)
    {
        const char *from = json_string_value(json_object_get(t, "from"));
        const char *to = json_string_value(json_object_get(t, "to"));
        switched += !strcmp(from, "SWITCHING") && !strcmp(to, "SWITCHED");
        synced += !strcmp(from, "SWITCHING") && !strcmp(to, "SWITCHING");
        done += !strcmp(to, "DONE");
    }
    json_decref(bg);
    cr_assert_eq(switched, 1, "switched %zu times", switched);
    cr_assert_eq(synced, 1, "v2 synced %zu times", synced);
    cr_assert_eq(done, 1, "v1's index deleted %zu times", done);

    kp_itest_stop_cluster(&jm_, tm_);
}
