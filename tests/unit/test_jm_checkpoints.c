/* The jobmanager's checkpoint coordination, against a real kappa-jobmanager and a fake
 * taskmanager speaking the control protocol (no Kafka, no job code runs):
 * - a running job's checkpoints are triggered at the taskmanager of its source subtasks; the
 *   acknowledgements of every subtask complete one (its _metadata appears in
 *   --checkpoint-dir/<job>/chk-N) and the taskmanager is notified; REST shows it in Flink's
 *   shapes (/checkpoints, /config, /details/:cid);
 * - a failed subtask restarts the job from that checkpoint (Deploy.restore_path), REST shows
 *   it as latest.restored; a restarted jobmanager recovers the running job from it as a new
 *   attempt instead of marking it FAILED;
 * - a declined checkpoint is aborted at the taskmanagers, and with no tolerable failures the
 *   job fails over;
 * - a completion is final once every source acknowledged it at the end of its input;
 * - bad checkpoint settings in a manifest or in the flags are refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "../support/shell.h"
#include "control.pb-c.h"
#include "jm_harness.h"

static char dir_[256];

static void fresh_dir(void)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-jm-ckpt-test-%d", (int)getpid());
    kp_test_rmtree(dir_);
}

static void cleanup(void)
{
    jm_kill_all();
    kp_test_rmtree(dir_);
    char log[300];
    snprintf(log, sizeof log, "%s.log", dir_);
    unlink(log);
}

/* Submits a job (task 0 the source at par[0], task 1 after it) with `ckpt` as the manifest's
 * checkpoint object; its id into id. */
static void submit(const jm_proc *jm, const char *name, json_t *ckpt, char id[33])
{
    char path[512], sha[65];
    snprintf(path, sizeof path, "%s/hourly_clicks.so", kp_test_env("KAPPA_JOBS"));
    size_t len;
    void *so = read_all(path, &len);
    sha256_hex(so, len, sha);
    int par[] = {2, 1};
    json_t *extra = json_pack("{s:o}", "checkpoint", ckpt);
    char *m = make_manifest(name, sha, par, 2, extra);
    json_decref(extra);
    http_reply r = http_submit(jm, m, so, len, NULL);
    cr_assert_eq(r.status, 202, "POST /jobs: %ld", r.status);
    snprintf(id, 33, "%s", json_string_value(json_object_get(r.body, "jobid")));
    http_free(&r);
    free(m);
    free(so);
}

/* The next Deploy: its attempt, and its restore path into restore. */
static uint32_t expect_deploy(int tm, const char *id, char *restore, size_t len,
                              int64_t want_interval)
{
    size_t n;
    uint8_t *p = tm_expect(tm, KP_FRAME_DEPLOY, &n);
    Kappa__Control__Deploy *d = kappa__control__deploy__unpack(NULL, n, p);
    cr_assert_not_null(d);
    cr_assert_str_eq(d->job_id, id);
    cr_assert_not_null(d->checkpoint, "the Deploy carries the checkpoint settings");
    cr_assert_eq(d->checkpoint->interval_ms, want_interval);
    cr_assert_str_eq(d->checkpoint->mode, "exactly_once");
    char want_dir[400];
    snprintf(want_dir, sizeof want_dir, "%s/checkpoints", dir_);
    cr_assert_str_eq(d->checkpoint->dir, want_dir);
    snprintf(restore, len, "%s", d->restore_path);
    uint32_t attempt = d->attempt;
    kappa__control__deploy__free_unpacked(d, NULL);
    free(p);
    return attempt;
}

static void report_all(int tm, const char *id, uint32_t attempt,
                       Kappa__Control__TaskState__State state)
{
    const int subs[][2] = {{0, 0}, {0, 1}, {1, 0}};
    for (int i = 0; i < 3; i++) {
        Kappa__Control__TaskState s = KAPPA__CONTROL__TASK_STATE__INIT;
        s.job_id = (char *)id;
        s.attempt = attempt;
        s.task_id = subs[i][0];
        s.subtask = (uint32_t)subs[i][1];
        s.state = state;
        s.message = "";
        tm_send(tm, KP_FRAME_TASK_STATE, &s.base);
    }
}

/* The next TriggerCheckpoint of the job's attempt: its id. */
static int64_t expect_trigger(int tm, const char *id, uint32_t attempt)
{
    size_t n;
    uint8_t *p = tm_expect(tm, KP_FRAME_TRIGGER_CHECKPOINT, &n);
    Kappa__Control__TriggerCheckpoint *t = kappa__control__trigger_checkpoint__unpack(NULL, n, p);
    cr_assert_not_null(t);
    cr_assert_str_eq(t->job_id, id);
    cr_assert_eq(t->attempt, attempt);
    cr_assert_gt(t->checkpoint_id, 0);
    cr_assert_gt(t->timestamp_ms, 0);
    int64_t cid = t->checkpoint_id;
    kappa__control__trigger_checkpoint__free_unpacked(t, NULL);
    free(p);
    return cid;
}

/* An acknowledgement whose entries are the JSON array `entries`, `extra` members appended
 * (",\"name\":value", or ""). */
static void ack_entries(int tm, const char *id, uint32_t attempt, int64_t cid, int task,
                        int subtask, int parallelism, const char *entries, const char *extra)
{
    char json[1600];
    snprintf(json, sizeof json,
             "{\"checkpoint\":%lld,\"task\":%d,\"subtask\":%d,\"parallelism\":%d,"
             "\"align_ms\":1.5,\"sync_ms\":2,\"async_ms\":3,\"bytes\":100,"
             "\"incremental_bytes\":100,\"entries\":%s%s}",
             (long long)cid, task, subtask, parallelism, entries, extra);
    Kappa__Control__AckCheckpoint a = KAPPA__CONTROL__ACK_CHECKPOINT__INIT;
    a.job_id = (char *)id;
    a.attempt = attempt;
    a.checkpoint_id = cid;
    a.task_id = task;
    a.subtask = (uint32_t)subtask;
    a.ack_json = json;
    tm_send(tm, KP_FRAME_ACK_CHECKPOINT, &a.base);
}

static void ack(int tm, const char *id, uint32_t attempt, int64_t cid, int task, int subtask,
                int parallelism)
{
    ack_entries(tm, id, attempt, cid, task, subtask, parallelism, "[]", "");
}

/* The next NotifyCheckpointComplete: of checkpoint cid of the attempt; returns its `final`. */
static bool expect_complete(int tm, uint32_t attempt, int64_t cid)
{
    size_t n;
    uint8_t *p = tm_expect(tm, KP_FRAME_CHECKPOINT_COMPLETE, &n);
    Kappa__Control__NotifyCheckpointComplete *c =
        kappa__control__notify_checkpoint_complete__unpack(NULL, n, p);
    cr_assert_not_null(c);
    cr_assert_eq(c->checkpoint_id, cid);
    cr_assert_eq(c->attempt, attempt);
    bool final = c->final;
    kappa__control__notify_checkpoint_complete__free_unpacked(c, NULL);
    free(p);
    return final;
}

/* Job `name` with checkpoint settings `ckpt`, deployed at a new fake taskmanager `tm_name` and
 * running: its id and attempt; returns the taskmanager's socket. */
static int running_job(jm_proc *jm, const char *name, json_t *ckpt, const char *tm_name,
                       char id[33], uint32_t *attempt)
{
    char restore[4096];
    submit(jm, name, ckpt, id);
    int tm = tm_register(jm->rpc_port, tm_name, 2);
    *attempt = expect_deploy(tm, id, restore, sizeof restore, 100);
    report_all(tm, id, *attempt, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(jm, id, "RUNNING");
    return tm;
}

/* GET path as JSON (asserting the status). */
static json_t *get_json(const jm_proc *jm, const char *path, long status)
{
    http_reply r = http_req(jm, "GET", path, NULL);
    cr_assert_eq(r.status, status, "GET %s: %ld", path, r.status);
    json_t *body = json_incref(r.body);
    http_free(&r);
    return body;
}

static const char *flags_[] = {"--heartbeat-timeout-ms", "600000", NULL};

Test(jm_checkpoints, complete_notify_restore_and_recover, .fini = cleanup, .timeout = 120)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, flags_);
    char id[33], restore[4096], path[600];
    submit(&jm, "ck", json_pack("{s:i}", "interval_ms", 100), id);
    int tm = tm_register(jm.rpc_port, "tm-a", 2);
    uint32_t attempt = expect_deploy(tm, id, restore, sizeof restore, 100);
    cr_assert_eq(attempt, 0);
    cr_assert_str_eq(restore, "", "a first attempt starts fresh");
    report_all(tm, id, attempt, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, id, "RUNNING");

    /* every subtask acknowledges: complete, notified, metadata in storage */
    int64_t cid = expect_trigger(tm, id, attempt);
    ack(tm, id, attempt, cid, 0, 0, 2);
    ack(tm, id, attempt, cid, 0, 1, 2);
    ack(tm, id, attempt + 7, cid, 1, 0, 1); /* another attempt's: ignored */
    ack(tm, id, attempt, cid, 1, 0, 1);
    cr_assert_not(expect_complete(tm, attempt, cid), "no source said it is at its end");
    char meta[600];
    snprintf(meta, sizeof meta, "%s/checkpoints/%s/chk-%lld/_metadata", dir_, id, (long long)cid);
    cr_assert_eq(access(meta, R_OK), 0, "%s is missing", meta);

    snprintf(path, sizeof path, "/jobs/%s/checkpoints", id);
    json_t *st = get_json(&jm, path, 200);
    cr_assert_geq(json_integer_value(json_object_get(json_object_get(st, "counts"), "completed")),
                  1);
    json_t *latest = json_object_get(json_object_get(st, "latest"), "completed");
    cr_assert_eq(json_integer_value(json_object_get(latest, "id")), cid);
    cr_assert(json_is_array(json_object_get(st, "history")));
    json_decref(st);
    snprintf(path, sizeof path, "/jobs/ck/checkpoints/details/%lld", (long long)cid);
    json_t *det = get_json(&jm, path, 200);
    cr_assert_eq(json_integer_value(json_object_get(det, "id")), cid);
    cr_assert(json_is_object(json_object_get(det, "tasks")));
    json_decref(det);
    json_decref(get_json(&jm, "/jobs/ck/checkpoints/details/999999", 404));
    json_decref(get_json(&jm, "/jobs/ck/checkpoints/details/x", 400));
    json_decref(get_json(&jm, "/jobs/nope/checkpoints", 404));
    json_t *cfg = get_json(&jm, "/jobs/ck/checkpoints/config", 200);
    cr_assert_eq(json_integer_value(json_object_get(cfg, "interval")), 100);
    json_decref(cfg);

    /* a failed subtask: the next attempt restores the completed checkpoint */
    Kappa__Control__TaskState s = KAPPA__CONTROL__TASK_STATE__INIT;
    s.job_id = id;
    s.attempt = attempt;
    s.task_id = 1;
    s.state = KAPPA__CONTROL__TASK_STATE__STATE__FAILED;
    s.message = "boom";
    tm_send(tm, KP_FRAME_TASK_STATE, &s.base);
    report_all(tm, id, attempt, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED);
    attempt = expect_deploy(tm, id, restore, sizeof restore, 100);
    cr_assert_eq(attempt, 1);
    cr_assert_str_eq(restore, meta);
    report_all(tm, id, attempt, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, id, "RUNNING");
    snprintf(path, sizeof path, "/jobs/%s/checkpoints", id);
    st = get_json(&jm, path, 200);
    json_t *restored = json_object_get(json_object_get(st, "latest"), "restored");
    cr_assert_eq(json_integer_value(json_object_get(restored, "id")), cid);
    cr_assert_str_eq(json_string_value(json_object_get(restored, "external_path")), meta);
    /* the statistics are the job's, not the attempt's: attempt 0's checkpoint is still counted */
    json_t *counts = json_object_get(st, "counts");
    cr_assert_geq(json_integer_value(json_object_get(counts, "completed")), 1);
    cr_assert_eq(json_integer_value(json_object_get(counts, "restored")), 1);
    json_t *hist = json_object_get(st, "history");
    json_t *oldest = json_array_get(hist, json_array_size(hist) - 1);
    cr_assert_eq(json_integer_value(json_object_get(oldest, "id")), cid,
                 "attempt 0's checkpoint is in the history");
    json_decref(st);

    /* a restarted jobmanager recovers the running job from its latest checkpoint */
    jm_stop(&jm);
    close(tm);
    jm_start(&jm, dir_, flags_);
    tm = tm_register(jm.rpc_port, "tm-a", 2);
    attempt = expect_deploy(tm, id, restore, sizeof restore, 100);
    cr_assert_eq(attempt, 2);
    cr_assert_str_eq(restore, meta);
    report_all(tm, id, attempt, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, id, "RUNNING");
    snprintf(path, sizeof path, "/jobs/%s", id);
    json_t *job = get_json(&jm, path, 200);
    json_t *exc = json_object_get(job, "exceptions");
    const char *last = json_string_value(
        json_object_get(json_array_get(exc, json_array_size(exc) - 1), "message"));
    cr_assert(last && strstr(last, "jobmanager restarted"), "%s", last ? last : "(null)");
    json_decref(job);
    /* the new jobmanager's statistics start with the retained checkpoint, from its metadata */
    snprintf(path, sizeof path, "/jobs/%s/checkpoints", id);
    st = get_json(&jm, path, 200);
    json_t *seeded = json_object_get(json_object_get(st, "latest"), "completed");
    cr_assert_eq(json_integer_value(json_object_get(seeded, "id")), cid);
    cr_assert_geq(json_integer_value(json_object_get(json_object_get(st, "counts"), "completed")),
                  1);
    json_decref(st);
    /* and its checkpoints go on above the old ids */
    int64_t next = expect_trigger(tm, id, attempt);
    cr_assert_gt(next, cid);
    close(tm);
    jm_stop(&jm);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A restarted jobmanager looks for the job's latest valid checkpoint — hashing every file it
 * names, here a 512 MiB one — on its checkpoint I/O worker: REST answers meanwhile (it takes
 * the same lock as the control thread), and the job is deployed from that checkpoint once the
 * search is done. */
Test(jm_checkpoints, recovery_search_does_not_hold_the_lock, .fini = cleanup, .timeout = 120)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, flags_);
    char id[33], restore[4096], path[600], big[600], sha[80], entry[1024];
    submit(&jm, "big", json_pack("{s:i}", "interval_ms", 100), id);
    int tm = tm_register(jm.rpc_port, "tm-c", 2);
    uint32_t attempt = expect_deploy(tm, id, restore, sizeof restore, 100);
    report_all(tm, id, attempt, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    int64_t cid = expect_trigger(tm, id, attempt);
    snprintf(big, sizeof big, "%s/checkpoints/%s/chk-%lld/1-0", dir_, id, (long long)cid);
    cr_assert_eq(kp_test_sh("mkdir -p %s && truncate -s 512M %s/big", big, big), 0);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "sha256sum %s/big | cut -c1-64", big);
    kp_test_capture(sha, sizeof sha, cmd);
    sha[strcspn(sha, "\n")] = 0;
    snprintf(entry, sizeof entry,
             "[{\"uid\":\"win\",\"name\":\"state\",\"kg\":null,\"blob_file\":{\"name\":"
             "\"big\",\"path\":\"chk-%lld/1-0/big\",\"size\":%lld,\"sha256\":\"%s\","
             "\"shared\":false}}]",
             (long long)cid, 512LL << 20, sha);
    ack(tm, id, attempt, cid, 0, 0, 2);
    ack(tm, id, attempt, cid, 0, 1, 2);
    ack_entries(tm, id, attempt, cid, 1, 0, 1, entry, "");
    size_t n;
    free(tm_expect(tm, KP_FRAME_CHECKPOINT_COMPLETE, &n));
    jm_stop(&jm);
    close(tm);

    jm_start(&jm, dir_, flags_);
    int64_t t0 = mono_ms(), worst = 0;
    tm = tm_register(jm.rpc_port, "tm-c", 2);
    snprintf(path, sizeof path, "/jobs/%s", id);
    int answers = 0, searching = 0;
    struct pollfd pfd = {.fd = tm, .events = POLLIN};
    while (poll(&pfd, 1, 20) == 0 && mono_ms() - t0 < 60000) { /* until the Deploy comes */
        int64_t t = mono_ms();
        json_t *job = get_json(&jm, path, 200);
        const char *why = json_string_value(json_object_get(job, "waiting_reason"));
        searching += why && strstr(why, "latest valid checkpoint");
        json_decref(job);
        answers++;
        if (mono_ms() - t > worst)
            worst = mono_ms() - t;
    }
    int64_t took = mono_ms() - t0;
    attempt = expect_deploy(tm, id, restore, sizeof restore, 100);
    char meta[700];
    snprintf(meta, sizeof meta, "%s/checkpoints/%s/chk-%lld/_metadata", dir_, id, (long long)cid);
    cr_assert_str_eq(restore, meta, "restored from the checkpoint with the big file");
    fprintf(stderr,
            "jm_checkpoints: recovery search of a 512 MiB checkpoint: deploy after %lld ms; %d "
            "REST answers meanwhile (%d while searching), the slowest %lld ms\n",
            (long long)took, answers, searching, (long long)worst);
    cr_assert_gt(searching, 0, "REST never answered while the search ran");
    cr_assert_lt(worst, 1000,
                 "a REST request waited %lld ms during the search (the heartbeat interval: 1 s)",
                 (long long)worst);
    close(tm);
    jm_stop(&jm);
}

/* Bounded inputs (docs/checkpoints.md): a source subtask at the end of its input goes on
 * acknowledging while the other one reads, checkpoints go on completing, and a completion is
 * final (NotifyCheckpointComplete.final: the sources end) only once every source's
 * acknowledgement says "end_of_input": true. */
Test(jm_checkpoints, a_completion_is_final_once_every_source_is_at_its_end, .fini = cleanup,
     .timeout = 60)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, flags_);
    char id[33];
    uint32_t attempt;
    int tm = running_job(&jm, "fin", json_pack("{s:i}", "interval_ms", 100), "tm-f", id, &attempt);
    const char *at_end = ",\"end_of_input\":true", *reading = ",\"end_of_input\":false";
    for (int round = 0; round < 3; round++) { /* subtask 0 at its end; subtask 1 from round 2 */
        int64_t cid = expect_trigger(tm, id, attempt);
        ack_entries(tm, id, attempt, cid, 0, 0, 2, "[]", at_end);
        ack_entries(tm, id, attempt, cid, 0, 1, 2, "[]", round < 2 ? reading : at_end);
        ack(tm, id, attempt, cid, 1, 0, 1); /* not a source: no flag */
        bool final = expect_complete(tm, attempt, cid);
        cr_assert_eq(final, round == 2, "checkpoint %lld (round %d): final is %d", (long long)cid,
                     round, (int) final);
    }
    close(tm);
    jm_stop(&jm);
}

Test(jm_checkpoints, declined_checkpoint_aborts_and_fails_the_job_over, .fini = cleanup,
     .timeout = 60)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, flags_);
    char id[33], restore[4096];
    uint32_t attempt;
    int tm = running_job(&jm, "decl",
                         json_pack("{s:i,s:i}", "interval_ms", 100, "tolerable_failures", 0),
                         "tm-b", id, &attempt);
    int64_t cid = expect_trigger(tm, id, attempt);
    Kappa__Control__DeclineCheckpoint dc = KAPPA__CONTROL__DECLINE_CHECKPOINT__INIT;
    dc.job_id = id;
    dc.attempt = attempt;
    dc.checkpoint_id = cid;
    dc.task_id = 1;
    dc.subtask = 0;
    dc.reason = "No space left on device";
    tm_send(tm, KP_FRAME_DECLINE_CHECKPOINT, &dc.base);
    size_t n;
    uint8_t *p = tm_expect(tm, KP_FRAME_ABORT_CHECKPOINT, &n);
    Kappa__Control__AbortCheckpoint *a = kappa__control__abort_checkpoint__unpack(NULL, n, p);
    cr_assert_not_null(a);
    cr_assert_eq(a->checkpoint_id, cid);
    kappa__control__abort_checkpoint__free_unpacked(a, NULL);
    free(p);
    p = tm_expect(tm, KP_FRAME_CANCEL, &n); /* failing over: the attempt is cancelled */
    free(p);
    report_all(tm, id, attempt, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED);
    cr_assert_eq(expect_deploy(tm, id, restore, sizeof restore, 100), attempt + 1);
    cr_assert_str_eq(restore, "", "no checkpoint completed: the original start position");
    char path[128];
    snprintf(path, sizeof path, "/jobs/%s", id);
    json_t *job = get_json(&jm, path, 200);
    json_t *exc = json_array_get(json_object_get(job, "exceptions"), 0);
    const char *msg = json_string_value(json_object_get(exc, "message"));
    cr_assert(msg && strstr(msg, "consecutive checkpoint failures") &&
                  strstr(msg, "No space left on device"),
              "%s", msg ? msg : "(null)");
    json_decref(job);
    close(tm);
    jm_stop(&jm);
}

Test(jm_checkpoints, bad_settings_are_refused, .fini = cleanup, .timeout = 60)
{
    fresh_dir();
    const char *bin = kp_test_env("KAPPA_JOBMANAGER");
    cr_assert_eq(kp_test_sh("%s --checkpoint-interval 1x 2>/dev/null", bin), 2);
    cr_assert_eq(kp_test_sh("%s --checkpoint-mode sometimes 2>/dev/null", bin), 2);
    cr_assert_eq(kp_test_sh("%s --checkpoint-dir relative/dir 2>/dev/null", bin), 2);
    cr_assert_eq(kp_test_sh("%s --max-concurrent-checkpoints 65 2>/dev/null", bin), 2);
    jm_proc jm;
    const char *flags[] = {"--checkpoint-interval", "2s", "--checkpoint-mode", "at_least_once",
                           NULL};
    jm_start(&jm, dir_, flags);
    char path[512], sha[65];
    snprintf(path, sizeof path, "%s/hourly_clicks.so", kp_test_env("KAPPA_JOBS"));
    size_t len;
    void *so = read_all(path, &len);
    sha256_hex(so, len, sha);
    int par[] = {1};
    const char *bad[] = {"{\"checkpoint\":{\"interval_ms\":-1}}",
                         "{\"checkpoint\":{\"mode\":\"twice\"}}",
                         "{\"checkpoint\":{\"dir\":\"relative\"}}", "{\"checkpoint\":[]}",
                         "{\"from_checkpoint\":\"chk-3\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *extra = json_loads(bad[i], 0, NULL);
        cr_assert_not_null(extra);
        char *m = make_manifest("bad", sha, par, 1, extra);
        json_decref(extra);
        http_reply r = http_submit(&jm, m, so, len, NULL);
        cr_assert_eq(r.status, 400, "%s: HTTP %ld", bad[i], r.status);
        http_free(&r);
        free(m);
    }
    /* the cluster defaults apply where the manifest says nothing */
    char *m = make_manifest("defaults", sha, par, 1, NULL);
    http_reply r = http_submit(&jm, m, so, len, NULL);
    cr_assert_eq(r.status, 202);
    http_free(&r);
    free(m);
    free(so);
    json_t *cfg = get_json(&jm, "/jobs/defaults/checkpoints/config", 200);
    cr_assert_eq(json_integer_value(json_object_get(cfg, "interval")), 2000);
    cr_assert_str_eq(json_string_value(json_object_get(cfg, "mode")), "at_least_once");
    json_decref(cfg);
    jm_stop(&jm);
}

/* `kappa submit`'s checkpoint flags reach the jobmanager: the manifest carries only the flags
 * given (--dry-run prints it), the job resolves them over the cluster defaults. (The CLI reads
 * $KAPPA_JOBMANAGER as its address: here it names the binary, so it is unset for the CLI.) */
Test(jm_checkpoints, submit_flags_go_into_the_manifest, .fini = cleanup, .timeout = 60)
{
    fresh_dir();
    cr_assert_eq(kp_test_sh("mkdir -p %s", dir_), 0);
    const char *cli = kp_test_env("KAPPA_CLI"), *jobs = kp_test_env("KAPPA_JOBS");
    cr_assert_eq(kp_test_sh("env -u KAPPA_JOBMANAGER %s submit %s/hourly_clicks.so --dry-run "
                            "--checkpoint-interval 1500ms "
                            "--checkpoint-mode at_least_once --tolerable-checkpoint-failures 3 "
                            "--from-checkpoint /ckpt/job/chk-4 > %s/dry.json",
                            cli, jobs, dir_),
                 0);
    char path[400];
    snprintf(path, sizeof path, "%s/dry.json", dir_);
    json_t *m = json_load_file(path, 0, NULL);
    cr_assert_not_null(m, "--dry-run printed no JSON manifest");
    json_t *ck = json_object_get(m, "checkpoint");
    cr_assert_eq(json_object_size(ck), 3, "only the flags given: %s", json_dumps(ck, JSON_COMPACT));
    cr_assert_eq(json_integer_value(json_object_get(ck, "interval_ms")), 1500);
    cr_assert_str_eq(json_string_value(json_object_get(ck, "mode")), "at_least_once");
    cr_assert_eq(json_integer_value(json_object_get(ck, "tolerable_failures")), 3);
    cr_assert_str_eq(json_string_value(json_object_get(m, "from_checkpoint")), "/ckpt/job/chk-4");
    json_decref(m);
    cr_assert_eq(
        kp_test_sh("env -u KAPPA_JOBMANAGER %s submit %s/hourly_clicks.so --dry-run > %s/dry.json",
                   cli, jobs, dir_),
        0);
    m = json_load_file(path, 0, NULL);
    cr_assert(json_is_null(json_object_get(m, "checkpoint")), "no flag: checkpoint is null");
    json_decref(m);

    jm_proc jm;
    const char *flags[] = {"--checkpoint-timeout", "30s", NULL};
    jm_start(&jm, dir_, flags);
    cr_assert_eq(
        kp_test_sh(
            "env -u KAPPA_JOBMANAGER %s submit %s/hourly_clicks.so --jobmanager %s --name flags "
            "--checkpoint-interval 2s --min-pause 100ms >/dev/null",
            cli, jobs, jm.rest),
        0);
    json_t *cfg = get_json(&jm, "/jobs/flags/checkpoints/config", 200);
    cr_assert_eq(json_integer_value(json_object_get(cfg, "interval")), 2000);
    cr_assert_eq(json_integer_value(json_object_get(cfg, "min_pause")), 100);
    cr_assert_eq(json_integer_value(json_object_get(cfg, "timeout")), 30000, "cluster default");
    json_decref(cfg);
    jm_stop(&jm);
}
