/* Savepoints end to end with real processes (a jobmanager, two taskmanagers, the `kappa` CLI)
 * and a real Kafka broker (the source never ends, so a job is surely running when it is
 * stopped; with-services starts only Kafka: the jobs write files):
 *   - the seed job at -p 2 is stopped with a savepoint, resumed from it at -p 4, stopped again,
 *     the savepoint moved to another directory and resumed at -p 1 to the end of the topic:
 *     every window document any of the three runs wrote has kappa-gen's count, and together
 *     they hold every window of the truth (rescaling 2 -> 4 -> 1 is exact);
 *   - a job without the window operator cannot restore that savepoint (`kappa submit` fails
 *     naming the operator's uid) unless --allow-non-restored-state;
 *   - --replace NAME --from-savepoint-of-old: the old job stops with a savepoint and the new one
 *     restores it;
 *   - kappa stop --drain: the final watermark fires every window (the Kafka source never ends),
 *     the savepoint is taken after them and the job ends FINISHED with exactly the truth.
 * Events come in three batches of disjoint event time (whole hours), so that the truth is the
 * three batches' truths together. Every process started here is stopped here. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/shell.h"
#include "../unit/jm_harness.h"

#define T0        1699999200000LL /* an hour boundary */
#define SPAN      (6 * 3600000LL) /* each batch: 6 hours of event time */
#define PER_BATCH 15000

static char dir_[256];

static void cleanup(void)
{
    jm_kill_all();
    kp_test_rmtree(dir_);
}

/* Batch b (0, 1, 2) of the topic, its truth in DIR/truth<b>. */
static void produce(const char *topic, int b)
{
    cr_assert_eq(kp_test_sh("%s --brokers %s --topic %s --partitions 4 --count %d --seed %d "
                            "--start-time %lld --span %lld --truth %s/truth%d --quiet",
                            kp_test_env("KAPPA_GEN"), kp_test_env("KAPPA_BROKERS"), topic,
                            PER_BATCH, b + 1, T0 + b * SPAN, SPAN, dir_, b),
                 0, "kappa-gen batch %d", b);
}

/* The truth of all batches: "item|window_end" -> count. */
static json_t *truth(int nbatches)
{
    json_t *t = json_object();
    for (int b = 0; b < nbatches; b++) {
        char path[300], line[512], item[256];
        long long start, end, count;
        snprintf(path, sizeof path, "%s/truth%d", dir_, b);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "%s", path);
        while (fgets(line, sizeof line, f))
            if (line[0] != '#' &&
                sscanf(line, "%255[^\t]\t%lld\t%lld\t%lld", item, &start, &end, &count) == 4) {
                char key[300];
                snprintf(key, sizeof key, "%s|%lld", item, end);
                json_object_set_new(t, key, json_integer(count));
            }
        fclose(f);
    }
    return t;
}

/* Checks every document of the output files against the truth; marks the keys seen in
 * `seen`. Returns the number of documents. */
static long check_docs(const char *file, json_t *t, json_t *seen)
{
    char path[300], *line = NULL, key[300];
    size_t cap = 0;
    long n = 0;
    snprintf(path, sizeof path, "%s/%s", dir_, file);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    while (getline(&line, &cap, f) > 0) {
        json_error_t e;
        json_t *d = json_loads(line, 0, &e);
        cr_assert_not_null(d, "%s: not JSON: %s", file, line);
        snprintf(key, sizeof key, "%s|%lld", json_string_value(json_object_get(d, "item_id")),
                 (long long)json_integer_value(json_object_get(d, "window_end")));
        json_int_t got = json_integer_value(json_object_get(d, "click_count"));
        json_t *want = json_object_get(t, key);
        cr_assert_not_null(want, "%s: window %s is not in the truth", file, key);
        cr_assert_eq(got, json_integer_value(want), "%s: window %s counted %lld, truth %lld", file,
                     key, (long long)got, (long long)json_integer_value(want));
        json_object_set_new(seen, key, json_true());
        json_decref(d);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

/* `kappa stop NAME --savepoint DIR`: its stdout (the location) must be DIR. */
static void stop_with_savepoint(const jm_proc *jm, const char *name, const char *sp)
{
    char cmd[1200], out[600];
    snprintf(cmd, sizeof cmd, "%s stop %s --savepoint %s --jobmanager %s 2>>%s/stop.err",
             kp_test_env("KAPPA_CLI"), name, sp, jm->rest, dir_);
    kp_test_capture(out, sizeof out, cmd);
    cr_assert_str_eq(out, sp, "kappa stop %s printed '%s' (see %s/stop.err)", name, out, dir_);
    char st[32];
    cr_assert_str_eq(job_state(jm, name, st, sizeof st), "CANCELED");
}

/* The job's REST checkpoint statistics say it restored a savepoint. */
static void restored_savepoint(const jm_proc *jm, const char *name)
{
    char path[200];
    snprintf(path, sizeof path, "/jobs/%s/checkpoints", name);
    http_reply r = http_req(jm, "GET", path, NULL);
    json_t *restored = json_object_get(json_object_get(r.body, "latest"), "restored");
    cr_assert(json_is_true(json_object_get(restored, "is_savepoint")),
              "%s did not restore a savepoint (latest.restored of %s)", name, path);
    http_free(&r);
}

/* A jobmanager and one taskmanager with 4 slots: every subtask in one process, because
 * subtasks in several processes would each truncate and write the same file: sink */
static void make_topic(char *topic, size_t len, const char *tag);

static void start_cluster(jm_proc *jm, pid_t *tm, const char *tag, char *topic, size_t topiclen)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-savepoints-%s-%d", tag, (int)getpid());
    kp_test_rmtree(dir_);
    cr_assert_eq(kp_test_sh("mkdir -p %s", dir_), 0);
    char jmdir[300], tmdir[300];
    snprintf(jmdir, sizeof jmdir, "%s/jm", dir_);
    jm_start(jm, jmdir, NULL);
    snprintf(tmdir, sizeof tmdir, "%s/tm", dir_);
    *tm = tm_proc_start(jm, tmdir, 4);
    wait_taskmanagers(jm, 1);
    make_topic(topic, topiclen, tag);
}

static void make_topic(char *topic, size_t len, const char *tag)
{
    snprintf(topic, len, "savepoints-%s-%d", tag, (int)getpid());
    cr_assert_eq(kp_test_sh("KAPPA_BROKERS=%s %s/deploy/dev/kafka topic-create %s 4 >/dev/null "
                            "2>&1",
                            kp_test_env("KAPPA_BROKERS"), kp_test_env("KAPPA_SRC"), topic),
                 0, "cannot create topic %s", topic);
}

/* kappa submit hourly_clicks (or `job`) NAME -p P with extra flags, sink DIR/out-NAME. */
static int submit(const jm_proc *jm, const char *job, const char *name, int p, const char *topic,
                  const char *extra)
{
    return kp_test_sh("%s submit %s/%s.so --jobmanager %s -p %d --name %s --brokers %s "
                      "--from-earliest --source clicks=kafka:%s --sink %s=file:%s/out-%s %s "
                      ">>%s/submit.out 2>&1",
                      kp_test_env("KAPPA_CLI"), kp_test_env("KAPPA_JOBS"), job, jm->rest, p, name,
                      kp_test_env("KAPPA_BROKERS"), topic,
                      strcmp(job, "click_copy") ? "hourly-click-index" : "copies", dir_, name,
                      extra, dir_);
}

Test(savepoints, rescale_2_4_1_through_moved_savepoints_is_exact, .fini = cleanup, .timeout = 600)
{
    jm_proc jm;
    pid_t tm;
    char topic[64], sp1[300], sp2[300], sp2moved[300];
    start_cluster(&jm, &tm, "rescale", topic, sizeof topic);
    snprintf(sp1, sizeof sp1, "%s/sp1", dir_);
    snprintf(sp2, sizeof sp2, "%s/sp2", dir_);
    snprintf(sp2moved, sizeof sp2moved, "%s/elsewhere/sp2", dir_);

    produce(topic, 0);
    cr_assert_eq(submit(&jm, "hourly_clicks", "a", 2, topic, ""), 0, "see %s/submit.out", dir_);
    wait_job_state(&jm, "a", "RUNNING");
    produce(topic, 1);
    sleep(2);
    stop_with_savepoint(&jm, "a", sp1);

    char flags[400];
    snprintf(flags, sizeof flags, "--from-savepoint %s", sp1);
    cr_assert_eq(submit(&jm, "hourly_clicks", "b", 4, topic, flags), 0, "see %s/submit.out", dir_);
    wait_job_state(&jm, "b", "RUNNING");
    produce(topic, 2);
    sleep(2);
    stop_with_savepoint(&jm, "b", sp2);

    cr_assert_eq(kp_test_sh("mkdir -p %s/elsewhere && mv %s %s", dir_, sp2, sp2moved), 0);
    snprintf(flags, sizeof flags, "--from-savepoint %s --conf kafka.stop_at=end --wait", sp2moved);
    cr_assert_eq(submit(&jm, "hourly_clicks", "c", 1, topic, flags), 0,
                 "the job restored from the moved savepoint did not end FINISHED (see "
                 "%s/submit.out)",
                 dir_);

    json_t *t = truth(3), *seen = json_object();
    long na = check_docs("out-a", t, seen), nb = check_docs("out-b", t, seen),
         nc = check_docs("out-c", t, seen);
    fprintf(stderr, "savepoints: documents a=%ld (p=2) b=%ld (p=4) c=%ld (p=1), windows %zu\n", na,
            nb, nc, json_object_size(t));
    cr_assert_eq(json_object_size(seen), json_object_size(t),
                 "%zu of the truth's %zu windows were written", json_object_size(seen),
                 json_object_size(t));
    cr_assert(na > 0 && nb > 0, "windows fired before each stop");
    /* a run that ignored its savepoint would write every earlier window again: only those that
     * fired between a savepoint's barrier and the stop may come twice */
    long twice = na + nb + nc - (long)json_object_size(seen);
    cr_assert(twice < na / 2, "%ld documents written twice: a savepoint was not restored", twice);
    restored_savepoint(&jm, "b");
    restored_savepoint(&jm, "c");
    json_decref(t);
    json_decref(seen);

    /* the same savepoint for a job without the window: refused naming its uid, then allowed */
    snprintf(flags, sizeof flags, "--from-savepoint %s --conf kafka.stop_at=end", sp2moved);
    cr_assert_eq(submit(&jm, "click_copy", "d", 1, topic, flags), 1,
                 "kappa submit of a restore with a removed operator did not fail");
    char st[32];
    cr_assert_str_eq(job_state(&jm, "d", st, sizeof st), "FAILED");
    cr_assert_eq(kp_test_sh("grep -q \"uid 'source:clicks->key_by->window' that the job does not "
                            "have\" %s/submit.out",
                            dir_),
                 0, "kappa submit did not name the removed operator's uid (see %s/submit.out)",
                 dir_);
    snprintf(flags, sizeof flags,
             "--from-savepoint %s --allow-non-restored-state --conf kafka.stop_at=end --wait",
             sp2moved);
    cr_assert_eq(submit(&jm, "click_copy", "e", 1, topic, flags), 0, "see %s/submit.out", dir_);

    tm_proc_stop(tm);
    jm_stop(&jm);
}

Test(savepoints, replace_from_savepoint_of_old_keeps_the_state, .fini = cleanup, .timeout = 600)
{
    jm_proc jm;
    pid_t tm;
    char topic[64];
    start_cluster(&jm, &tm, "replace", topic, sizeof topic);
    produce(topic, 0);
    cr_assert_eq(submit(&jm, "hourly_clicks", "v1", 2, topic, ""), 0, "see %s/submit.out", dir_);
    wait_job_state(&jm, "v1", "RUNNING");
    produce(topic, 1);
    sleep(2);
    cr_assert_eq(
        submit(&jm, "hourly_clicks", "v2", 2, topic, "--replace v1 --from-savepoint-of-old"), 0,
        "see %s/submit.out", dir_);
    wait_job_state(&jm, "v2", "RUNNING");
    char st[32];
    cr_assert_str_eq(job_state(&jm, "v1", st, sizeof st), "CANCELED");
    restored_savepoint(&jm, "v2");
    http_reply r = http_req(&jm, "GET", "/jobs/v1", NULL);
    json_t *exc = json_array_get(json_object_get(r.body, "exceptions"), 0);
    const char *msg = json_string_value(json_object_get(exc, "message"));
    cr_assert(msg && strstr(msg, "stopped with a savepoint at "), "v1's exception: %s",
              msg ? msg : "(none)");
    http_free(&r);

    /* v2 goes on from v1's state: stopped once more and run to the end of the topic from that
     * savepoint, the three runs' windows are the truth */
    produce(topic, 2);
    sleep(2);
    char sp[300], flags[400];
    snprintf(sp, sizeof sp, "%s/sp-v2", dir_);
    stop_with_savepoint(&jm, "v2", sp);
    snprintf(flags, sizeof flags, "--from-savepoint %s --conf kafka.stop_at=end --wait", sp);
    cr_assert_eq(submit(&jm, "hourly_clicks", "v3", 1, topic, flags), 0, "see %s/submit.out", dir_);
    json_t *t = truth(3), *seen = json_object();
    check_docs("out-v1", t, seen);
    check_docs("out-v2", t, seen);
    check_docs("out-v3", t, seen);
    cr_assert_eq(json_object_size(seen), json_object_size(t),
                 "%zu of the truth's %zu windows were written", json_object_size(seen),
                 json_object_size(t));
    json_decref(t);
    json_decref(seen);
    tm_proc_stop(tm);
    jm_stop(&jm);
}

/* What the job's source subtasks have read (their last Metrics reports). */
static long long source_records(const jm_proc *jm, const char *name)
{
    char path[200];
    snprintf(path, sizeof path, "/jobs/%s", name);
    http_reply r = http_req(jm, "GET", path, NULL);
    json_t *subs = json_object_get(json_array_get(json_object_get(r.body, "tasks"), 0), "subtasks");
    long long n = 0;
    size_t i;
    json_t *s;
    json_array_foreach(subs, i, s)
    {
        n += json_integer_value(json_object_get(json_object_get(s, "metrics"), "records_in"));
    }
    http_free(&r);
    return n;
}

Test(savepoints, stop_drain_fires_every_window_then_finishes, .fini = cleanup, .timeout = 600)
{
    jm_proc jm;
    pid_t tm;
    char topic[64], sp[300], cmd[1200], out[600];
    start_cluster(&jm, &tm, "drain", topic, sizeof topic);
    produce(topic, 0);
    cr_assert_eq(submit(&jm, "hourly_clicks", "d", 2, topic, ""), 0, "see %s/submit.out", dir_);
    wait_job_state(&jm, "d", "RUNNING");
    for (int i = 0; i < 600 && source_records(&jm, "d") < PER_BATCH; i++)
        usleep(100000);
    cr_assert_eq(source_records(&jm, "d"), PER_BATCH, "the job did not read the batch in 60 s");

    /* bad requests are refused before anything is triggered */
    char code[16];
    static const struct {
        const char *body, *path, *want;
    } bad[] = {
        {"{\"target-directory\":\"relative/dir\"}", "/jobs/d/savepoints", "400"},
        {"{\"target-directory\":\"/tmp\"}", "/jobs/d/savepoints", "400"}, /* not empty */
        {"{\"drain\":true}", "/jobs/d/savepoints", "400"},                /* without cancel-job */
        {"[1]", "/jobs/d/savepoints", "400"},
        {"{}", "/jobs/nosuchjob/savepoints", "404"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd,
                 "curl -s -o /dev/null -w '%%{http_code}' -X POST -H 'Content-Type: "
                 "application/json' -d '%s' %s%s",
                 bad[i].body, jm.rest, bad[i].path);
        kp_test_capture(code, sizeof code, cmd);
        cr_assert_str_eq(code, bad[i].want, "POST %s %s answered %s", bad[i].path, bad[i].body,
                         code);
    }
    http_reply r =
        http_req(&jm, "GET", "/jobs/d/savepoints/0123456789abcdef0123456789abcdef", NULL);
    cr_assert_eq(r.status, 404);
    http_free(&r);

    /* the Kafka source never ends: only the drain's final watermark fires the last windows */
    snprintf(sp, sizeof sp, "%s/sp-drained", dir_);
    snprintf(cmd, sizeof cmd, "%s stop d --savepoint %s --drain --jobmanager %s 2>>%s/stop.err",
             kp_test_env("KAPPA_CLI"), sp, jm.rest, dir_);
    kp_test_capture(out, sizeof out, cmd);
    cr_assert_str_eq(out, sp, "kappa stop --drain printed '%s' (see %s/stop.err)", out, dir_);
    char st[32];
    cr_assert_str_eq(job_state(&jm, "d", st, sizeof st), "FINISHED");
    json_t *t = truth(1), *seen = json_object();
    long n = check_docs("out-d", t, seen);
    cr_assert_eq(json_object_size(seen), json_object_size(t),
                 "%zu of the truth's %zu windows were written", json_object_size(seen),
                 json_object_size(t));
    cr_assert_eq(n, (long)json_object_size(t), "a window was written twice");
    cr_assert_eq(kp_test_sh("test -s %s/_metadata", sp), 0, "no savepoint at %s", sp);
    json_decref(t);
    json_decref(seen);
    tm_proc_stop(tm);
    jm_stop(&jm);
}
