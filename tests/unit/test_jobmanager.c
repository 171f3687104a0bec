/* kappa-jobmanager as a process: its REST API (submissions accepted, every kind of bad input
 * refused with a 4xx and nothing written outside the upload dir, the token), the control
 * plane through a fake taskmanager (registration, Deploy with placement, plugin fetch, state
 * reports, a lost taskmanager and the restart that follows, --replace), a fuzzed frame stream
 * that must not crash it, and the job list surviving a restart. No Kafka or Elasticsearch:
 * the jobmanager never runs job code. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../runtime/rng.h"
#include "control.pb-c.h"
#include "jm_harness.h"
#include "../support/shell.h"

static char dir_[256];

static void fresh_dir(void)
{
    snprintf(dir_, sizeof dir_, "/tmp/kappa-jm-test-%d", (int)getpid());
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

static void *plugin_bytes(size_t *len, char sha[65])
{
    char path[512];
    snprintf(path, sizeof path, "%s/hourly_clicks.so", kp_test_env("KAPPA_JOBS"));
    void *p = read_all(path, len);
    sha256_hex(p, *len, sha);
    return p;
}

/* Submits a job of one task per par[] entry; returns its id (asserts 202). */
static void submit_ok(const jm_proc *jm, const char *name, const int *par, size_t n, json_t *extra,
                      const char *token, char id[33])
{
    size_t len;
    char sha[65];
    void *so = plugin_bytes(&len, sha);
    char *m = make_manifest(name, sha, par, n, extra);
    http_reply r = http_submit(jm, m, so, len, token);
    cr_assert_eq(r.status, 202, "POST /jobs: %ld", r.status);
    const char *jid = json_string_value(json_object_get(r.body, "jobid"));
    cr_assert(jid && strlen(jid) == 32);
    snprintf(id, 33, "%s", jid);
    cr_assert_str_eq(json_string_value(json_object_get(r.body, "state")), "CREATED");
    http_free(&r);
    free(m);
    free(so);
}

/* The entries of a directory, sorted names joined by ',' (hidden ones too). */
static void list_dir(const char *path, char *out, size_t len)
{
    struct dirent **ents;
    int n = scandir(path, &ents, NULL, alphasort);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (strcmp(ents[i]->d_name, ".") && strcmp(ents[i]->d_name, ".."))
            snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? "," : "",
                     ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
}

static void expect_error(http_reply r, long status, const char *what)
{
    cr_assert_eq(r.status, status, "%s: HTTP %ld, expected %ld", what, r.status, status);
    json_t *errs = json_object_get(r.body, "errors");
    cr_assert(json_is_array(errs) && json_array_size(errs) == 1 &&
                  json_is_string(json_array_get(errs, 0)),
              "%s: no {\"errors\":[...]} body", what);
    http_free(&r);
}

Test(jobmanager, submission_waits_in_created_without_taskmanagers, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    char id[33];
    int par[] = {2, 2};
    submit_ok(&jm, "hourly-clicks", par, 2, NULL, NULL, id);

    http_reply r = http_req(&jm, "GET", "/jobs", NULL);
    cr_assert_eq(r.status, 200);
    json_t *jobs = json_object_get(r.body, "jobs");
    cr_assert_eq(json_array_size(jobs), 1);
    json_t *j = json_array_get(jobs, 0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "jid")), id);
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "CREATED");
    cr_assert_eq(json_integer_value(json_object_get(j, "end-time")), -1);
    http_free(&r);

    const char *why = NULL;
    for (int i = 0; i < 200; i++) { /* the scheduler runs on the control thread: poll */
        http_free(&r);
        r = http_req(&jm, "GET", "/jobs/hourly-clicks", NULL); /* by name */
        cr_assert_eq(r.status, 200);
        why = json_string_value(json_object_get(r.body, "waiting_reason"));
        cr_assert(why, "a CREATED job always says what it waits for");
        if (strstr(why, "needs 2"))
            break;
        usleep(50000);
    }
    cr_assert(strstr(why, "needs 2, 0 free on 0 taskmanagers"), "waiting_reason: %s", why);
    cr_assert_eq(json_array_size(json_object_get(r.body, "tasks")), 2);
    http_free(&r);

    size_t len;
    char sha[65], want[128], got[512], up[300];
    free(plugin_bytes(&len, sha));
    snprintf(want, sizeof want, "%s.so", sha);
    snprintf(up, sizeof up, "%s/uploads", dir_);
    list_dir(up, got, sizeof got);
    cr_assert_str_eq(got, want, "uploads holds exactly the content-addressed plugin");
    jm_stop(&jm);
}

/* A manifest's conf sets the job's restart strategy; as for connectors, the first entry of a key
 * wins (the CLI puts later flags first). GET /jobs/:id shows the strategy. */
Test(jobmanager, manifest_conf_sets_the_restart_strategy_first_entry_wins, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    char id[33];
    int par[] = {1};
    json_t *extra = json_pack("{s:[s,s,s,s]}", "conf", "restart-strategy=none",
                              "restart-strategy=exponential-delay", "restart-strategy.attempts=7",
                              "restart-strategy.attempts=3");
    submit_ok(&jm, "strategic", par, 1, extra, NULL, id);
    json_decref(extra);
    http_reply r = http_req(&jm, "GET", "/jobs/strategic", NULL);
    cr_assert_eq(r.status, 200);
    json_t *rs = json_object_get(r.body, "restart-strategy");
    cr_assert_str_eq(json_string_value(json_object_get(rs, "kind")), "none");
    cr_assert_eq(json_integer_value(json_object_get(rs, "attempts")), 7);
    http_free(&r);
    jm_stop(&jm);
}

Test(jobmanager, bad_submissions_are_4xx_and_write_nothing, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    const char *flags[] = {"--max-upload-mb", "1", NULL};
    jm_start(&jm, dir_, flags);
    size_t len;
    char sha[65];
    void *so = plugin_bytes(&len, sha);
    int par[] = {1};

    expect_error(http_post_raw(&jm, "application/octet-stream", "garbage\x01\x02", 9), 400,
                 "garbage body");
    expect_error(http_post_raw(&jm, "multipart/form-data; boundary=xx", "--xx\r\ngarbage", 13), 400,
                 "broken multipart");
    expect_error(http_submit(&jm, "{not json", so, len, NULL), 400, "garbage manifest");
    expect_error(http_submit(&jm, "[1,2]", so, len, NULL), 400, "manifest not an object");

    char *m = make_manifest("ok-name",
                            "00000000000000000000000000000000000000000000000000000000"
                            "00000000",
                            par, 1, NULL);
    expect_error(http_submit(&jm, m, so, len, NULL), 400, "wrong sha256");
    free(m);

    m = make_manifest("../../etc/passwd", sha, par, 1, NULL);
    expect_error(http_submit(&jm, m, so, len, NULL), 400, "path traversal in the name");
    free(m);

    json_t *extra = json_pack("{s:s}", "graph_hash",
                              "1111111111111111111111111111111111111111111111111111111111111111");
    m = make_manifest("bad-hash", sha, par, 1, extra);
    expect_error(http_submit(&jm, m, so, len, NULL), 400, "graph hash not of the graph");
    free(m);
    json_decref(extra);

    extra = json_pack("{s:s}", "replace", "no-such-job");
    m = make_manifest("replacer", sha, par, 1, extra);
    expect_error(http_submit(&jm, m, so, len, NULL), 404, "--replace of an unknown job");
    free(m);
    json_decref(extra);

    size_t big_len = (2u << 20);
    char *big = calloc(1, big_len), big_sha[65];
    sha256_hex(big, big_len, big_sha);
    m = make_manifest("too-big", big_sha, par, 1, NULL);
    expect_error(http_submit(&jm, m, big, big_len, NULL), 413, "oversized plugin");
    free(m);
    free(big);

    expect_error(http_req(&jm, "GET", "/jobs/0123456789abcdef0123456789abcdef", NULL), 404,
                 "unknown job");
    expect_error(http_req(&jm, "PATCH", "/jobs/nope?mode=cancel", NULL), 404, "cancel unknown");
    expect_error(http_req(&jm, "GET", "/jobs/..%2F..%2Fetc", NULL), 400, "traversal in an id");
    expect_error(http_req(&jm, "GET", "/nothing", NULL), 404, "unknown path");
    expect_error(http_req(&jm, "DELETE", "/overview", NULL), 405, "wrong method");

    http_reply r = http_req(&jm, "GET", "/jobs", NULL);
    cr_assert_eq(json_array_size(json_object_get(r.body, "jobs")), 0, "nothing was accepted");
    http_free(&r);
    jm_stop(&jm);

    char got[512], up[300];
    list_dir(dir_, got, sizeof got);
    cr_assert_str_eq(got, "jobs.json,uploads", "the state dir holds only what the server made");
    snprintf(up, sizeof up, "%s/uploads", dir_);
    list_dir(up, got, sizeof got);
    cr_assert_str_eq(got, "", "no upload kept (no temporary file left either)");
    free(so);
}

Test(jobmanager, token_guards_mutating_requests, .fini = cleanup)
{
    fresh_dir();
    char tokfile[300];
    snprintf(tokfile, sizeof tokfile, "%s.token", dir_);
    FILE *f = fopen(tokfile, "w");
    fputs("s3cret-token\n", f);
    fclose(f);
    jm_proc jm;
    const char *flags[] = {"--token-file", tokfile, NULL};
    jm_start(&jm, dir_, flags);
    size_t len;
    char sha[65], id[33];
    void *so = plugin_bytes(&len, sha);
    int par[] = {1};
    char *m = make_manifest("guarded", sha, par, 1, NULL);
    expect_error(http_submit(&jm, m, so, len, NULL), 401, "no token");
    expect_error(http_submit(&jm, m, so, len, "wrong"), 401, "wrong token");
    submit_ok(&jm, "guarded", par, 1, NULL, "s3cret-token", id);

    http_reply r = http_req(&jm, "GET", "/jobs", NULL);
    cr_assert_eq(r.status, 200, "reading needs no token");
    http_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/jobs/%s?mode=cancel", id);
    expect_error(http_req(&jm, "PATCH", path, NULL), 401, "cancel without token");
    r = http_req(&jm, "PATCH", path, "s3cret-token");
    cr_assert_eq(r.status, 202);
    http_free(&r);
    wait_job_state(&jm, id, "CANCELED");
    expect_error(http_req(&jm, "PATCH", path, "s3cret-token"), 409, "cancel of a final job");
    jm_stop(&jm);
    unlink(tokfile);
    free(m);
    free(so);
}

/* Reads the Deploy a fake taskmanager gets; checks it and returns attempt and epoch. */
static void expect_deploy(int fd, const char *id, size_t locals, uint32_t *attempt, uint64_t *epoch)
{
    size_t n;
    uint8_t *p = tm_expect(fd, KP_FRAME_DEPLOY, &n);
    Kappa__Control__Deploy *d = kappa__control__deploy__unpack(NULL, n, p);
    cr_assert_not_null(d);
    cr_assert_str_eq(d->job_id, id);
    cr_assert_eq(d->n_locals, locals);
    cr_assert_eq(d->n_bindings, 1);
    cr_assert_str_eq(d->bindings[0]->uri, "kafka://clicks");
    cr_assert_str_eq(d->start, "earliest");
    cr_assert(d->n_placements >= locals);
    *attempt = d->attempt;
    *epoch = d->epoch;
    kappa__control__deploy__free_unpacked(d, NULL);
    free(p);
}

static void report(int fd, const char *id, uint32_t attempt, int task, uint32_t subtask,
                   Kappa__Control__TaskState__State state)
{
    Kappa__Control__TaskState s = KAPPA__CONTROL__TASK_STATE__INIT;
    s.job_id = (char *)id;
    s.attempt = attempt;
    s.task_id = task;
    s.subtask = subtask;
    s.state = state;
    s.message = state == KAPPA__CONTROL__TASK_STATE__STATE__FAILED ? "boom" : "";
    tm_send(fd, KP_FRAME_TASK_STATE, &s.base);
}

Test(jobmanager, fake_taskmanager_runs_loses_and_restarts_a_job, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    char id[33];
    int par[] = {2, 1};
    submit_ok(&jm, "clicks", par, 2, NULL, NULL, id);

    int tm = tm_register(jm.rpc_port, "tm-a", 2);
    wait_taskmanagers(&jm, 1);
    http_reply r = http_req(&jm, "GET", "/taskmanagers", NULL);
    json_t *t0 = json_array_get(json_object_get(r.body, "taskmanagers"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(t0, "id")), "tm-a");
    cr_assert_eq(json_integer_value(json_object_get(t0, "slots_total")), 2);
    http_free(&r);

    uint32_t attempt;
    uint64_t epoch;
    expect_deploy(tm, id, 3, &attempt, &epoch);
    cr_assert_eq(attempt, 0);

    /* the plugin, fetched over the control plane, is the submitted file */
    size_t len, n;
    char sha[65], got_sha[65];
    void *so = plugin_bytes(&len, sha);
    Kappa__Control__PluginRequest req = KAPPA__CONTROL__PLUGIN_REQUEST__INIT;
    req.sha256 = sha;
    tm_send(tm, KP_FRAME_PLUGIN_REQUEST, &req.base);
    uint8_t *buf = malloc(len), *p;
    size_t have = 0;
    while (have < len) {
        p = tm_expect(tm, KP_FRAME_PLUGIN_DATA, &n);
        Kappa__Control__PluginData *pd = kappa__control__plugin_data__unpack(NULL, n, p);
        cr_assert(pd && !pd->error[0] && pd->total_size == len && pd->offset == have &&
                  have + pd->bytes.len <= len);
        memcpy(buf + have, pd->bytes.data, pd->bytes.len);
        have += pd->bytes.len;
        kappa__control__plugin_data__free_unpacked(pd, NULL);
        free(p);
    }
    sha256_hex(buf, len, got_sha);
    cr_assert_str_eq(got_sha, sha);
    free(buf);
    free(so);

    report(tm, id, attempt, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    report(tm, id, attempt, 0, 1, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    report(tm, id, attempt, 1, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, id, "RUNNING");
    Kappa__Control__Metrics mt = KAPPA__CONTROL__METRICS__INIT;
    mt.job_id = id;
    mt.task_id = 1;
    mt.records_in = 1234;
    mt.records_out = 56;
    tm_send(tm, KP_FRAME_METRICS, &mt.base);
    tm_heartbeat(tm, 1); /* its echo proves the Metrics before it was handled */
    free(tm_expect(tm, KP_FRAME_HEARTBEAT, &n));
    r = http_req(&jm, "GET", "/jobs/clicks", NULL);
    json_t *m1 = json_object_get(
        json_array_get(
            json_object_get(json_array_get(json_object_get(r.body, "tasks"), 1), "subtasks"), 0),
        "metrics");
    cr_assert_eq(json_integer_value(json_object_get(m1, "records_in")), 1234);
    cr_assert_eq(json_integer_value(json_object_get(m1, "records_out")), 56);
    http_free(&r);
    tm_heartbeat(tm, 1);
    free(tm_expect(tm, KP_FRAME_HEARTBEAT, &n));

    close(tm); /* dies: noticed by the closed connection */
    wait_taskmanagers(&jm, 0);
    wait_job_state(&jm, id, "RESTARTING");
    r = http_req(&jm, "GET", "/jobs/clicks", NULL);
    json_t *exc = json_object_get(r.body, "exceptions");
    cr_assert(json_array_size(exc) >= 2);
    const char *msg = json_string_value(json_object_get(json_array_get(exc, 0), "message"));
    cr_assert(msg && strstr(msg, "tm-a lost"), "exception: %s", msg ? msg : "(null)");
    cr_assert_eq(json_integer_value(json_object_get(r.body, "attempt")), 1);
    http_free(&r);

    /* a new taskmanager gets attempt 1 with a larger epoch */
    int tm2 = tm_register(jm.rpc_port, "tm-b", 4);
    uint32_t attempt2;
    uint64_t epoch2;
    expect_deploy(tm2, id, 3, &attempt2, &epoch2);
    cr_assert_eq(attempt2, 1);
    cr_assert_gt(epoch2, epoch);
    report(tm2, id, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__FAILED); /* stale: ignored */
    report(tm2, id, 1, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED);
    report(tm2, id, 1, 0, 1, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED);
    report(tm2, id, 1, 1, 0, KAPPA__CONTROL__TASK_STATE__STATE__FINISHED);
    wait_job_state(&jm, id, "FINISHED");
    close(tm2);
    jm_stop(&jm);
}

Test(jobmanager, hung_taskmanager_lost_by_heartbeat_timeout, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    const char *flags[] = {"--heartbeat-interval-ms",
                           "50",
                           "--heartbeat-timeout-ms",
                           "300",
                           "--restart-strategy",
                           "none",
                           NULL};
    jm_start(&jm, dir_, flags);
    char id[33];
    int par[] = {1};
    submit_ok(&jm, "hung", par, 1, NULL, NULL, id);
    int tm = tm_register(jm.rpc_port, "tm-hung", 1);
    uint32_t attempt;
    uint64_t epoch;
    expect_deploy(tm, id, 1, &attempt, &epoch);
    /* no heartbeats: the jobmanager gives up on it and closes its connection */
    cr_assert(tm_closed_by_peer(tm), "the jobmanager did not drop a silent taskmanager");
    wait_taskmanagers(&jm, 0);
    wait_job_state(&jm, id, "FAILED");
    close(tm);
    jm_stop(&jm);
}

Test(jobmanager, deploy_that_never_runs_times_out, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    const char *flags[] = {"--deploy-timeout-ms", "300", "--restart-strategy", "none", NULL};
    jm_start(&jm, dir_, flags);
    char id[33];
    int par[] = {2};
    submit_ok(&jm, "stuck", par, 1, NULL, NULL, id);
    int tm = tm_register(jm.rpc_port, "tm-stuck", 2);
    uint32_t attempt;
    uint64_t epoch;
    expect_deploy(tm, id, 2, &attempt, &epoch);
    report(tm, id, attempt, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    size_t n; /* subtask 1 never runs: the jobmanager gives up on the deploy and cancels it */
    free(tm_expect(tm, KP_FRAME_CANCEL, &n));
    report(tm, id, attempt, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED);
    report(tm, id, attempt, 0, 1, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED);
    wait_job_state(&jm, id, "FAILED");
    http_reply r = http_req(&jm, "GET", "/jobs/stuck", NULL);
    const char *msg = json_string_value(
        json_object_get(json_array_get(json_object_get(r.body, "exceptions"), 0), "message"));
    cr_assert(msg && strstr(msg, "subtask 1 on taskmanager tm-stuck still DEPLOYING"), "%s",
              msg ? msg : "(null)");
    http_free(&r);
    close(tm);
    jm_stop(&jm);
}

Test(jobmanager, replace_cancels_the_old_job_once_the_new_runs, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    int tm = tm_register(jm.rpc_port, "tm-r", 2);
    char old_id[33], new_id[33];
    int par[] = {1};
    uint32_t attempt;
    uint64_t epoch;
    submit_ok(&jm, "clicks", par, 1, NULL, NULL, old_id);
    expect_deploy(tm, old_id, 1, &attempt, &epoch);
    report(tm, old_id, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, old_id, "RUNNING");

    json_t *extra = json_pack("{s:s}", "replace", "clicks");
    submit_ok(&jm, "clicks-v2", par, 1, extra, NULL, new_id);
    json_decref(extra);
    expect_deploy(tm, new_id, 1, &attempt, &epoch);
    cr_assert_str_eq(job_state(&jm, old_id, (char[32]){0}, 32), "RUNNING",
                     "the old job runs until the new one does");
    report(tm, new_id, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, new_id, "RUNNING");

    size_t n;
    uint8_t *p = tm_expect(tm, KP_FRAME_CANCEL, &n);
    Kappa__Control__Cancel *c = kappa__control__cancel__unpack(NULL, n, p);
    cr_assert_not_null(c);
    cr_assert_str_eq(c->job_id, old_id);
    kappa__control__cancel__free_unpacked(c, NULL);
    free(p);
    wait_job_state(&jm, old_id, "CANCELLING");
    report(tm, old_id, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED);
    wait_job_state(&jm, old_id, "CANCELED");
    cr_assert_str_eq(job_state(&jm, new_id, (char[32]){0}, 32), "RUNNING");
    close(tm);
    jm_stop(&jm);
}

/* Without the slots to run both, --replace stops the old job first and the new one takes its
 * slots. */
Test(jobmanager, replace_without_spare_slots_stops_the_old_job_first, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    int tm = tm_register(jm.rpc_port, "tm-s", 1);
    char old_id[33], new_id[33];
    int par[] = {1};
    uint32_t attempt;
    uint64_t epoch;
    submit_ok(&jm, "clicks", par, 1, NULL, NULL, old_id);
    expect_deploy(tm, old_id, 1, &attempt, &epoch);
    report(tm, old_id, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, old_id, "RUNNING");

    json_t *extra = json_pack("{s:s}", "replace", "clicks");
    submit_ok(&jm, "clicks-v2", par, 1, extra, NULL, new_id);
    json_decref(extra);
    size_t n;
    uint8_t *p = tm_expect(tm, KP_FRAME_CANCEL, &n);
    Kappa__Control__Cancel *c = kappa__control__cancel__unpack(NULL, n, p);
    cr_assert_not_null(c);
    cr_assert_str_eq(c->job_id, old_id);
    kappa__control__cancel__free_unpacked(c, NULL);
    free(p);
    cr_assert_str_eq(job_state(&jm, new_id, (char[32]){0}, 32), "CREATED");
    report(tm, old_id, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__CANCELED);
    wait_job_state(&jm, old_id, "CANCELED");
    expect_deploy(tm, new_id, 1, &attempt, &epoch);
    report(tm, new_id, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, new_id, "RUNNING");
    close(tm);
    jm_stop(&jm);
}

Test(jobmanager, restart_shows_the_job_list_again, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    char waiting[33], running[33], canceled[33];
    int one[] = {1}, many[] = {8};
    submit_ok(&jm, "waits", many, 1, NULL, NULL, waiting);
    submit_ok(&jm, "runs", one, 1, NULL, NULL, running);
    submit_ok(&jm, "cancelled", many, 1, NULL, NULL, canceled);
    char path[128];
    snprintf(path, sizeof path, "/jobs/%s?mode=cancel", canceled);
    http_reply r = http_req(&jm, "PATCH", path, NULL);
    cr_assert_eq(r.status, 202);
    http_free(&r);
    int tm = tm_register(jm.rpc_port, "tm-x", 1);
    uint32_t attempt;
    uint64_t epoch;
    expect_deploy(tm, running, 1, &attempt, &epoch);
    report(tm, running, 0, 0, 0, KAPPA__CONTROL__TASK_STATE__STATE__RUNNING);
    wait_job_state(&jm, running, "RUNNING");
    jm_stop(&jm);
    close(tm);

    char stale[400]; /* an upload a crash interrupted: removed at the next start */
    snprintf(stale, sizeof stale, "%s/uploads/.upload-AbC123", dir_);
    FILE *f = fopen(stale, "w");
    cr_assert_not_null(f);
    fclose(f);
    jm_start(&jm, dir_, NULL);
    cr_assert_neq(access(stale, F_OK), 0, "the interrupted upload is still there");
    r = http_req(&jm, "GET", "/jobs", NULL);
    cr_assert_eq(json_array_size(json_object_get(r.body, "jobs")), 3);
    http_free(&r);
    char st[32];
    cr_assert_str_eq(job_state(&jm, waiting, st, sizeof st), "CREATED");
    cr_assert_str_eq(job_state(&jm, running, st, sizeof st), "RESTARTING"); /* recovered */
    cr_assert_str_eq(job_state(&jm, canceled, st, sizeof st), "CANCELED");
    snprintf(path, sizeof path, "/jobs/%s", running);
    r = http_req(&jm, "GET", path, NULL);
    json_t *exc = json_object_get(r.body, "exceptions");
    const char *last = json_string_value(
        json_object_get(json_array_get(exc, json_array_size(exc) - 1), "message"));
    cr_assert(last && !strcmp(last, "jobmanager restarted: recovering as attempt 1"), "%s",
              last ? last : "(null)");
    cr_assert_eq(json_integer_value(json_object_get(r.body, "end-time")), -1);
    http_free(&r);
    jm_stop(&jm);
}

/* One fuzzed connection: a mix of garbage, valid frames, corrupted valid frames and frames
 * whose CRC is right but whose payload is random. */
static void fuzz_connection(int port, uint64_t *rng)
{
    int fd = tm_connect(port);
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    uint8_t buf[4096];
    int frames = 1 + (int)(kp_rng_next(rng) % 8);
    for (int f = 0; f < frames; f++) {
        size_t n = kp_rng_next(rng) % 512;
        for (size_t i = 0; i < n + KP_FRAME_HEADER_SIZE; i++)
            buf[i] = (uint8_t)kp_rng_next(rng);
        uint16_t type = (uint16_t)(kp_rng_next(rng) % (KP_FRAME_TYPE_MAX_ + 1));
        switch (kp_rng_next(rng) % 4) {
        case 0: /* pure garbage */
            break;
        case 1: /* a valid header for a random payload */
            kp_frame_header_encode(buf, (kp_frame_type)type, buf + KP_FRAME_HEADER_SIZE,
                                   (uint32_t)n);
            break;
        case 2: { /* a valid Hello, then one flipped bit */
            Kappa__Control__Hello h = KAPPA__CONTROL__HELLO__INIT;
            h.role = KAPPA__CONTROL__HELLO__ROLE__ROLE_TASKMANAGER;
            h.instance_id = "fuzz";
            h.slots = (uint32_t)(kp_rng_next(rng) % 3);
            h.data_address = "127.0.0.1:1";
            n = kappa__control__hello__pack(&h, buf + KP_FRAME_HEADER_SIZE);
            kp_frame_header_encode(buf, KP_FRAME_HELLO, buf + KP_FRAME_HEADER_SIZE, (uint32_t)n);
            if (kp_rng_next(rng) % 2) {
                size_t bit = kp_rng_next(rng) % ((n + KP_FRAME_HEADER_SIZE) * 8);
                buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            }
            break;
        }
        default: /* a header claiming a huge or odd length */
            kp_frame_header_encode(buf, (kp_frame_type)type, buf + KP_FRAME_HEADER_SIZE,
                                   (uint32_t)n);
            buf[8] = (uint8_t)kp_rng_next(rng);
            break;
        }
        size_t cut = n + KP_FRAME_HEADER_SIZE;
        if (kp_rng_next(rng) % 4 == 0)
            cut = kp_rng_next(rng) % cut; /* truncated */
        if (tm_send_raw(fd, buf, cut))
            break;
    }
    close(fd);
}

/* One fuzzed registered taskmanager: a valid Hello, then well-formed frames with random
 * fields (job ids real or not, any attempt, task, subtask and state), some with a payload bit
 * flipped after the CRC was computed or a random payload under a valid CRC. Drives the job
 * state machine through orders no real taskmanager would produce. */
static void fuzz_registered(int port, uint64_t *rng, const char *job_id)
{
    int fd = tm_connect(port);
    struct timeval tv = {0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char tm_id[32], fake_id[33];
    snprintf(tm_id, sizeof tm_id, "fuzz-%u", (unsigned)(kp_rng_next(rng) % 3));
    snprintf(fake_id, sizeof fake_id, "%016llx%016llx", (unsigned long long)kp_rng_next(rng),
             (unsigned long long)kp_rng_next(rng));
    Kappa__Control__Hello h = KAPPA__CONTROL__HELLO__INIT;
    h.role = KAPPA__CONTROL__HELLO__ROLE__ROLE_TASKMANAGER;
    h.instance_id = tm_id;
    h.slots = 1 + (uint32_t)(kp_rng_next(rng) % 4);
    h.data_address = "127.0.0.1:1";
    tm_send(fd, KP_FRAME_HELLO, &h.base);
    uint8_t buf[4096];
    int frames = 1 + (int)(kp_rng_next(rng) % 16);
    for (int f = 0; f < frames; f++) {
        Kappa__Control__TaskState ts = KAPPA__CONTROL__TASK_STATE__INIT;
        Kappa__Control__Metrics mt = KAPPA__CONTROL__METRICS__INIT;
        Kappa__Control__Heartbeat hb = KAPPA__CONTROL__HEARTBEAT__INIT;
        Kappa__Control__PluginRequest pr = KAPPA__CONTROL__PLUGIN_REQUEST__INIT;
        const char *jid = kp_rng_next(rng) % 4 ? job_id : fake_id;
        ts.job_id = mt.job_id = (char *)jid;
        ts.attempt = mt.attempt = (uint32_t)(kp_rng_next(rng) % 3);
        ts.task_id = mt.task_id = (int32_t)(kp_rng_next(rng) % 4) - 1;
        ts.subtask = mt.subtask = (uint32_t)(kp_rng_next(rng) % 3);
        ts.state = (Kappa__Control__TaskState__State)(kp_rng_next(rng) % 7);
        ts.message = "fuzz";
        mt.records_in = kp_rng_next(rng);
        pr.sha256 = fake_id;
        const ProtobufCMessage *msgs[] = {&ts.base, &mt.base, &hb.base, &pr.base};
        const kp_frame_type types[] = {KP_FRAME_TASK_STATE, KP_FRAME_METRICS, KP_FRAME_HEARTBEAT,
                                       KP_FRAME_PLUGIN_REQUEST};
        size_t k = kp_rng_next(rng) % 4;
        size_t n = protobuf_c_message_pack(msgs[k], buf + KP_FRAME_HEADER_SIZE);
        int mode = (int)(kp_rng_next(rng) % 8);
        if (mode == 0) /* random payload, valid CRC */
            for (size_t i = 0; i < n; i++)
                buf[KP_FRAME_HEADER_SIZE + i] = (uint8_t)kp_rng_next(rng);
        kp_frame_header_encode(buf, types[k], buf + KP_FRAME_HEADER_SIZE, (uint32_t)n);
        if (mode == 1 && n) /* corrupted after the CRC */
            buf[KP_FRAME_HEADER_SIZE + kp_rng_next(rng) % n] ^= 0x10;
        if (tm_send_raw(fd, buf, KP_FRAME_HEADER_SIZE + n))
            break;
    }
    close(fd);
}

Test(jobmanager, fuzzed_frames_never_crash_it, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    const char *flags[] = {"--restart-delay-ms", "0", "--restart-attempts", "1000000", NULL};
    jm_start(&jm, dir_, flags);
    char id[33];
    int par[] = {2, 3};
    submit_ok(&jm, "fuzzed", par, 2, NULL, NULL, id); /* a real job for the reports to hit */
    uint64_t seeds[6] = {1, 2, 3, 0x9e3779b97f4a7c15ull, 424242, 0};
    cr_assert_eq(getrandom(&seeds[5], sizeof seeds[5], 0), (ssize_t)sizeof seeds[5]);
    seeds[5] |= 1;
    /* connections per seed; KAPPA_FUZZ_ROUNDS raises it for a longer run by hand */
    int rounds = getenv("KAPPA_FUZZ_ROUNDS") ? atoi(getenv("KAPPA_FUZZ_ROUNDS")) : 60;
    for (size_t s = 0; s < 6; s++) {
        if (s == 5)
            fprintf(stderr, "fuzzed_frames_never_crash_it: random seed %llu\n",
                    (unsigned long long)seeds[s]);
        uint64_t rng = seeds[s];
        for (int c = 0; c < rounds; c++) {
            fuzz_connection(jm.rpc_port, &rng);
            fuzz_registered(jm.rpc_port, &rng, id);
        }
        cr_assert(jm_alive(&jm), "the jobmanager died on seed %llu", (unsigned long long)seeds[s]);
    }
    /* still serving both ports; how far the reports drove the job is printed */
    http_reply r = http_req(&jm, "GET", "/overview", NULL);
    cr_assert_eq(r.status, 200);
    http_free(&r);
    r = http_req(&jm, "GET", "/jobs/fuzzed", NULL);
    cr_assert_eq(r.status, 200);
    fprintf(stderr, "fuzzed_frames_never_crash_it: the job reached attempt %lld, state %s\n",
            (long long)json_integer_value(json_object_get(r.body, "attempt")),
            json_string_value(json_object_get(r.body, "state")));
    http_free(&r);
    int tm = tm_register(jm.rpc_port, "tm-after-fuzz", 1);
    tm_heartbeat(tm, 1);
    size_t n;
    free(tm_expect(tm, KP_FRAME_HEARTBEAT, &n));
    close(tm);
    jm_stop(&jm);
}

Test(jobmanager, bad_flags_and_a_corrupt_job_list_stop_it_with_a_reason, .fini = cleanup)
{
    fresh_dir();
    const char *bin = kp_test_env("KAPPA_JOBMANAGER");
    cr_assert_eq(kp_test_sh("%s --rest-port 70000 2>/dev/null", bin), 2);
    cr_assert_eq(kp_test_sh("%s --heartbeat-interval-ms 500 --heartbeat-timeout-ms 100 "
                            "2>/dev/null",
                            bin),
                 2);
    cr_assert_eq(kp_test_sh("%s --restart-strategy sometimes 2>/dev/null", bin), 2);
    cr_assert_eq(kp_test_sh("%s --token-file /nonexistent/token 2>/dev/null", bin), 2);
    cr_assert_eq(kp_test_sh("mkdir -p %s && echo '{garbage' > %s/jobs.json", dir_, dir_), 0);
    cr_assert_eq(kp_test_sh("%s --state-dir %s --rest-port 0 --rpc-port 0 2>%s.err >/dev/null", bin,
                            dir_, dir_),
                 1, "a corrupt job list must stop the start");
    cr_assert_eq(kp_test_sh("grep -q 'not a kappa job list' %s.err", dir_), 0);
    char err[300];
    snprintf(err, sizeof err, "%s.err", dir_);
    unlink(err);
}

Test(jobmanager, taskmanagers_with_fresh_ids_never_fill_the_table, .fini = cleanup)
{
    fresh_dir();
    jm_proc jm;
    jm_start(&jm, dir_, NULL);
    char id[32];
    for (int i = 0; i < 300; i++) { /* more than the 256 records kept */
        snprintf(id, sizeof id, "fresh-%d", i);
        close(tm_register(jm.rpc_port, id, 1));
    }
    wait_taskmanagers(&jm, 0);
    int tm = tm_register(jm.rpc_port, "last", 1);
    wait_taskmanagers(&jm, 1);
    close(tm);
    jm_stop(&jm);
}
