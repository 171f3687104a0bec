/* The checkpoint coordinator (runtime/checkpoint_coord.h), rule by rule, with a real store
 * under a temp directory and acknowledgements made by real uploads; and its statistics JSON. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint_coord.h"
#include "ckpt_fs.h"
#include "clock.h"

static char root[256];
static kp_ckpt_store *st;

static void setup(void)
{
    char err[256];
    snprintf(root, sizeof root, "/tmp/kp-ckpt-coord-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    st = kp_ckpt_store_open(root, "job", err, sizeof err);
    cr_assert_not_null(st, "%s", err);
}

static void teardown(void)
{
    kp_ckpt_store_free(st);
    kp_fs_rmtree(root);
}

TestSuite(coord, .init = setup, .fini = teardown);

/* A coordinator expecting task 0 subtask 0 and task 1 subtasks 0 and 1. */
static kp_ckpt_coord *coord(kp_time interval, kp_time min_pause, int max_conc, int tolerable,
                            int retain)
{
    kp_ckpt_config cfg = {.interval_ms = interval,
                          .timeout_ms = 1000,
                          .min_pause_ms = min_pause,
                          .max_concurrent = max_conc,
                          .tolerable_failures = tolerable,
                          .retain = retain};
    kp_ckpt_coord *c = kp_ckpt_coord_new(&cfg, st);
    cr_assert_not_null(c);
    cr_assert_eq(kp_ckpt_coord_expect(c, 0, 0), 0);
    cr_assert_eq(kp_ckpt_coord_expect(c, 1, 0), 0);
    cr_assert_eq(kp_ckpt_coord_expect(c, 1, 1), 0);
    cr_assert_eq(kp_ckpt_coord_expect(c, 1, 1), -1);
    return c;
}

static char *ack_for(int64_t id, int task, int sub)
{
    char err[512];
    kp_snapshot *s = kp_snapshot_new(id, task, sub, task == 0 ? 1 : 2);
    char blob[32];
    snprintf(blob, sizeof blob, "state %d/%d", task, sub);
    kp_snapshot_blob(s, task == 0 ? "src" : "win", "state", -1, -1, blob, strlen(blob));
    kp_snapshot_set_times(s, 3.0 + sub, 1.0);
    char *a = kp_ckpt_store_upload(st, s, err, sizeof err);
    cr_assert_not_null(a, "%s", err);
    kp_snapshot_free(s);
    return a;
}

static kp_coord_event ack(kp_ckpt_coord *c, int64_t id, int task, int sub, kp_time now)
{
    char *a = ack_for(id, task, sub);
    kp_coord_event ev = kp_ckpt_coord_ack(c, id, task, sub, a, now);
    free(a);
    return ev;
}

static kp_coord_event ack_all(kp_ckpt_coord *c, int64_t id, kp_time now)
{
    cr_assert_eq(ack(c, id, 0, 0, now), KP_COORD_PENDING);
    cr_assert_eq(ack(c, id, 1, 0, now), KP_COORD_PENDING);
    return ack(c, id, 1, 1, now);
}

Test(coord, interval_from_first_tick_and_last_trigger)
{
    kp_ckpt_coord *c = coord(100, 0, 1, 0, 1);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1000), 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1099), 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1100), 1);
    cr_assert_eq(ack_all(c, 1, 1120), KP_COORD_COMPLETED);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1199), 0, "interval counts from the trigger");
    cr_assert_eq(kp_ckpt_coord_tick(c, 1200), 2);
    kp_ckpt_coord_free(c);
}

Test(coord, off_when_interval_is_zero)
{
    kp_ckpt_coord *c = coord(0, 0, 1, 0, 1);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1000), 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1000000), 0);
    kp_ckpt_coord_free(c);
}

Test(coord, min_pause_after_end)
{
    kp_ckpt_coord *c = coord(100, 300, 1, 0, 1);
    kp_ckpt_coord_tick(c, 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 100), 1);
    cr_assert_eq(ack_all(c, 1, 250), KP_COORD_COMPLETED);
    cr_assert_eq(kp_ckpt_coord_tick(c, 300), 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 549), 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 550), 2);
    kp_ckpt_coord_free(c);
}

Test(coord, max_concurrent_and_subsumption)
{
    kp_ckpt_coord *c = coord(100, 0, 1, 0, 1);
    kp_ckpt_coord_tick(c, 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 100), 1);
    cr_assert_eq(kp_ckpt_coord_tick(c, 300), 0, "one pending, max 1");
    kp_ckpt_coord_free(c);

    c = coord(100, 0, 2, 0, 1);
    kp_ckpt_coord_tick(c, 0);
    int64_t a = kp_ckpt_coord_tick(c, 100), b = kp_ckpt_coord_tick(c, 200);
    cr_assert(a > 0 && b == a + 1);
    cr_assert_eq(kp_ckpt_coord_tick(c, 300), 0, "two pending, max 2");
    cr_assert_eq(kp_ckpt_coord_pending(c), 2);
    cr_assert_eq(ack(c, a, 0, 0, 310), KP_COORD_PENDING);
    cr_assert_eq(ack_all(c, b, 320), KP_COORD_COMPLETED);
    int64_t ab[4];
    cr_assert_eq(kp_ckpt_coord_take_aborted(c, ab, 4), 1);
    cr_assert_eq(ab[0], a, "the older pending one is subsumed");
    cr_assert_eq(kp_ckpt_coord_job_failed(c, NULL), 0, "subsumption is not a failure");
    cr_assert_eq(ack(c, a, 1, 0, 330), KP_COORD_IGNORED);
    kp_ckpt_coord_free(c);
}

Test(coord, acks_duplicate_unknown_and_completion)
{
    kp_ckpt_coord *c = coord(100, 0, 1, 0, 1);
    kp_ckpt_coord_tick(c, 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 100), 1);
    cr_assert_eq(ack(c, 1, 0, 0, 110), KP_COORD_PENDING);
    cr_assert_eq(ack(c, 1, 0, 0, 111), KP_COORD_IGNORED, "duplicate");
    cr_assert_eq(ack(c, 1, 2, 0, 112), KP_COORD_IGNORED, "not expected");
    cr_assert_eq(ack(c, 7, 1, 0, 113), KP_COORD_IGNORED, "unknown id");
    cr_assert_eq(ack(c, 1, 1, 0, 114), KP_COORD_PENDING);
    const char *path;
    cr_assert_eq(kp_ckpt_coord_last_completed(c, &path), 0);
    cr_assert_eq(ack(c, 1, 1, 1, 115), KP_COORD_COMPLETED);
    cr_assert_eq(kp_ckpt_coord_last_completed(c, &path), 1);
    cr_assert_eq(access(path, F_OK), 0, "%s", path);
    char latest[512], err[256];
    cr_assert_eq(kp_ckpt_store_latest(root, "job", latest, sizeof latest, err, sizeof err), 1);
    cr_assert_str_eq(latest, path);
    kp_ckpt_coord_free(c);
}

Test(coord, timeout_decline_and_tolerable_failures)
{
    kp_ckpt_coord *c = coord(100, 0, 1, 1, 1);
    kp_ckpt_coord_tick(c, 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 100), 1);
    cr_assert_eq(ack(c, 1, 0, 0, 150), KP_COORD_PENDING);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1099), 0);
    cr_assert_eq(kp_ckpt_coord_pending(c), 1);
    /* expired (timeout 1000); the interval has passed, so a new one starts at once */
    int64_t id = kp_ckpt_coord_tick(c, 1100);
    cr_assert_eq(id, 2);
    int64_t ab[4];
    cr_assert_eq(kp_ckpt_coord_take_aborted(c, ab, 4), 1);
    cr_assert_eq(ab[0], 1);
    cr_assert_eq(kp_ckpt_coord_job_failed(c, NULL), 0, "1 failure is tolerable");
    cr_assert_eq(ack(c, 1, 1, 0, 1101), KP_COORD_IGNORED, "late ack of an expired one");
    cr_assert_eq(ack_all(c, id, 1210), KP_COORD_COMPLETED, "resets the count");
    id = kp_ckpt_coord_tick(c, 1300);
    cr_assert_eq(kp_ckpt_coord_decline(c, id, 1, 1, "disk full", 1310), KP_COORD_FAILED);
    cr_assert_eq(kp_ckpt_coord_job_failed(c, NULL), 0);
    id = kp_ckpt_coord_tick(c, 1410);
    cr_assert_eq(kp_ckpt_coord_decline(c, id, 5, 5, "who?", 1411), KP_COORD_IGNORED);
    cr_assert_eq(kp_ckpt_coord_decline(c, id, 0, 0, "disk full", 1420), KP_COORD_FAILED);
    const char *why;
    cr_assert_eq(kp_ckpt_coord_job_failed(c, &why), 1);
    cr_assert(strstr(why, "2 consecutive") && strstr(why, "disk full"), "%s", why);
    cr_assert_eq(kp_ckpt_coord_tick(c, 5000), 0, "no trigger once the job failed");
    cr_assert_eq(kp_ckpt_coord_take_aborted(c, ab, 4), 2);
    kp_ckpt_coord_free(c);
}

Test(coord, commit_failure_fails_the_checkpoint)
{
    kp_ckpt_coord *c = coord(100, 0, 1, 5, 1);
    kp_ckpt_coord_tick(c, 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 100), 1);
    cr_assert_eq(ack(c, 1, 0, 0, 110), KP_COORD_PENDING);
    cr_assert_eq(ack(c, 1, 1, 0, 110), KP_COORD_PENDING);
    const char *bogus = "{\"checkpoint\":1,\"task\":1,\"subtask\":1,\"entries\":[{\"uid\":\"w\","
                        "\"name\":\"n\",\"kg\":null,\"files\":[{\"name\":\"x\",\"path\":\"chk-1/"
                        "nope\",\"size\":3,\"sha256\":\"00\",\"shared\":false}]}]}";
    cr_assert_eq(kp_ckpt_coord_ack(c, 1, 1, 1, bogus, 120), KP_COORD_FAILED);
    int64_t ab[2];
    cr_assert_eq(kp_ckpt_coord_take_aborted(c, ab, 2), 1);
    char meta[600];
    snprintf(meta, sizeof meta, "%s/job/chk-1", root);
    cr_assert_neq(access(meta, F_OK), 0, "the failed checkpoint's directory is collected");
    kp_ckpt_coord_free(c);
}

Test(coord, retention_and_ids_above_existing)
{
    kp_ckpt_coord *c = coord(100, 0, 1, 0, 2);
    kp_ckpt_coord_tick(c, 0);
    for (int i = 1; i <= 4; i++) {
        int64_t id = kp_ckpt_coord_tick(c, 100 * i);
        cr_assert_eq(id, i);
        cr_assert_eq(ack_all(c, id, 100 * i + 10), KP_COORD_COMPLETED);
    }
    cr_assert_eq(kp_ckpt_store_max_id(root, "job"), 4);
    char d[600];
    snprintf(d, sizeof d, "%s/job/chk-2", root);
    cr_assert_neq(access(d, F_OK), 0);
    snprintf(d, sizeof d, "%s/job/chk-3/_metadata", root);
    cr_assert_eq(access(d, F_OK), 0);
    kp_ckpt_coord_free(c);
    c = coord(100, 0, 1, 0, 2); /* a new run on the same storage */
    kp_ckpt_coord_restored(c, 4, d, 0, 1000);
    kp_ckpt_coord_tick(c, 1000);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1100), 5);
    kp_ckpt_coord_free(c);
}

Test(coord, savepoint)
{
    kp_ckpt_coord *c = coord(0, 0, 1, 0, 1);
    char sp[400];
    snprintf(sp, sizeof sp, "%s/sp-1", root);
    int64_t id = kp_ckpt_coord_trigger_savepoint(c, 10, sp);
    cr_assert_eq(id, 1);
    cr_assert_eq(ack_all(c, id, 20), KP_COORD_COMPLETED);
    char err[256];
    kp_restore *r = kp_restore_open(sp, err, sizeof err);
    cr_assert_not_null(r, "%s", err);
    cr_assert(kp_restore_is_savepoint(r));
    kp_restore_free(r);
    kp_ckpt_coord_free(c);
}

/* A checkpoint on demand (blue/green's proof before the switch): without periodic checkpoints,
 * not beyond max concurrent, a plain checkpoint (not a savepoint), completed like any other. */
Test(coord, trigger_now)
{
    kp_ckpt_coord *c = coord(0, 0, 1, 0, 1);
    cr_assert_eq(kp_ckpt_coord_tick(c, 10), 0, "no periodic checkpoints");
    int64_t id = kp_ckpt_coord_trigger_now(c, 20);
    cr_assert_eq(id, 1);
    cr_assert_eq(kp_ckpt_coord_trigger_now(c, 21), 0, "max concurrent 1: one is pending");
    cr_assert_eq(ack_all(c, id, 30), KP_COORD_COMPLETED);
    const char *path = NULL;
    cr_assert_eq(kp_ckpt_coord_last_completed(c, &path), 1);
    cr_assert(path && strstr(path, "/chk-1/"), "a checkpoint, not a savepoint: %s", path);
    cr_assert_eq(kp_ckpt_coord_trigger_now(c, 40), 2);
    kp_ckpt_coord_free(c);
}

static json_t *parse(char *text)
{
    cr_assert_not_null(text);
    json_t *j = json_loads(text, 0, NULL);
    cr_assert_not_null(j, "%s", text);
    free(text);
    return j;
}

Test(coord, statistics_json)
{
    kp_ckpt_coord *c = coord(100, 0, 1, 3, 1);
    kp_ckpt_coord_restored(c, 0, NULL, 0, 0);
    kp_ckpt_coord_tick(c, 1000);
    cr_assert_eq(kp_ckpt_coord_tick(c, 1100), 1);
    cr_assert_eq(ack_all(c, 1, 1150), KP_COORD_COMPLETED);
    int64_t id = kp_ckpt_coord_tick(c, 1200);
    kp_ckpt_coord_decline(c, id, 1, 0, "broken", 1210);
    id = kp_ckpt_coord_tick(c, 1300);
    cr_assert_eq(ack(c, id, 1, 1, 1320), KP_COORD_PENDING);

    const kp_ckpt_history *h = kp_ckpt_coord_history(c);
    json_t *j = parse(kp_ckpt_history_json(h));
    json_t *counts = json_object_get(j, "counts");
    cr_assert_eq(json_integer_value(json_object_get(counts, "total")), 3);
    cr_assert_eq(json_integer_value(json_object_get(counts, "completed")), 1);
    cr_assert_eq(json_integer_value(json_object_get(counts, "failed")), 1);
    cr_assert_eq(json_integer_value(json_object_get(counts, "in_progress")), 1);
    json_t *latest = json_object_get(j, "latest");
    json_t *done = json_object_get(latest, "completed");
    cr_assert_eq(json_integer_value(json_object_get(done, "id")), 1);
    cr_assert_eq(json_integer_value(json_object_get(done, "end_to_end_duration")), 50);
    cr_assert_gt(json_integer_value(json_object_get(done, "state_size")), 0);
    cr_assert_str_eq(json_string_value(json_object_get(done, "status")), "COMPLETED");
    json_t *failed = json_object_get(latest, "failed");
    cr_assert(strstr(json_string_value(json_object_get(failed, "failure_message")), "broken"));
    cr_assert(json_is_null(json_object_get(latest, "savepoint")));
    json_t *hist = json_object_get(j, "history");
    cr_assert_eq(json_array_size(hist), 3);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(hist, 0), "id")), 3);
    cr_assert(json_is_object(json_object_get(json_object_get(j, "summary"), "state_size")));
    json_decref(j);

    j = parse(kp_ckpt_details_json(h, 1));
    json_t *t1 = json_object_get(json_object_get(j, "tasks"), "1");
    cr_assert_eq(json_integer_value(json_object_get(t1, "num_subtasks")), 2);
    cr_assert_eq(json_integer_value(json_object_get(t1, "num_acknowledged_subtasks")), 2);
    json_t *s1 = json_array_get(json_object_get(t1, "subtasks"), 1);
    cr_assert_eq(json_integer_value(json_object_get(s1, "index")), 1);
    double align = json_real_value(json_object_get(json_object_get(s1, "alignment"), "duration"));
    cr_assert_float_eq(align, 4.0, 1e-9);
    double sync = json_real_value(json_object_get(json_object_get(s1, "checkpoint"), "sync"));
    cr_assert_float_eq(sync, 1.0, 1e-9);
    json_decref(j);
    cr_assert_null(kp_ckpt_details_json(h, 99));

    kp_ckpt_config cfg = {.interval_ms = 1000, .mode = KP_CKPT_AT_LEAST_ONCE, .dir = "/x"};
    j = parse(kp_ckpt_config_json(&cfg));
    cr_assert_str_eq(json_string_value(json_object_get(j, "mode")), "at_least_once");
    cr_assert_eq(json_integer_value(json_object_get(j, "timeout")), 600000);
    json_decref(j);
    kp_ckpt_coord_free(c);
}

Test(coord, history_keeps_the_last_hundred)
{
    kp_ckpt_coord *c = coord(1, 0, 1, 1000, 1);
    kp_ckpt_coord_tick(c, 0);
    for (int i = 1; i <= 130; i++) {
        int64_t id = kp_ckpt_coord_tick(c, i * 10);
        cr_assert_eq(id, i);
        kp_ckpt_coord_decline(c, id, 0, 0, "x", i * 10 + 1);
    }
    const kp_ckpt_history *h = kp_ckpt_coord_history(c);
    cr_assert_eq(h->n, KP_CKPT_HISTORY);
    cr_assert_null(kp_ckpt_history_find(h, 30));
    cr_assert_not_null(kp_ckpt_history_find(h, 31));
    cr_assert_eq(h->failed, 130);
    kp_ckpt_coord_free(c);
}

Test(coord, first_tick_collects_what_a_crashed_run_left)
{
    char d[600], f[700], err[256];
    snprintf(d, sizeof d, "%s/job/chk-7/0-0", root); /* uploaded, never committed */
    cr_assert_eq(kp_fs_mkdirs(d, err, sizeof err), 0);
    snprintf(f, sizeof f, "%s/job/shared/win.rocksdb.0-64.abcdefabcdef.000009.sst", root);
    FILE *fp = fopen(f, "w");
    fputs("orphan", fp);
    fclose(fp);
    kp_ckpt_coord *c = coord(100, 0, 1, 0, 1);
    kp_time now = kp_wall_ms() + 10000; /* the orphan is older than the slack */
    cr_assert_eq(kp_ckpt_coord_tick(c, now), 0);
    snprintf(d, sizeof d, "%s/job/chk-7", root);
    cr_assert_neq(access(d, F_OK), 0);
    cr_assert_neq(access(f, F_OK), 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, now + 100), 8, "ids stay above the crashed run's");
    kp_ckpt_coord_free(c);
}

/* Async mode (the jobmanager's): the last ack asks for a commit that the owner runs, a
 * committing checkpoint neither expires nor takes a decline, GC passes are handed out, a
 * commit that comes back after its checkpoint was abandoned still counts as the latest. */
Test(coord, async_commits_run_by_the_owner)
{
    kp_ckpt_coord *c = coord(100, 0, 2, 5, 1);
    kp_ckpt_coord_set_async(c);
    int retain;
    int64_t oldest;
    kp_time since;
    kp_ckpt_coord_tick(c, 0);
    cr_assert_eq(kp_ckpt_coord_take_gc(c, 0, &retain, &oldest, &since), 1, "first tick's GC");
    cr_assert_eq(oldest, 1, "ids from next_id on are spared");
    cr_assert_eq(kp_ckpt_coord_take_gc(c, 0, &retain, &oldest, &since), 0);
    cr_assert_eq(kp_ckpt_coord_tick(c, 100), 1);
    cr_assert_eq(ack_all(c, 1, 110), KP_COORD_COMMITTING);
    cr_assert_eq(kp_ckpt_coord_tick(c, 200), 2);
    kp_ckpt_commit *r = kp_ckpt_coord_take_commit(c, 210);
    cr_assert_not_null(r);
    cr_assert_eq(r->id, 1);
    cr_assert_eq(r->gc_oldest, 2, "the GC after the commit spares pending checkpoint 2");
    cr_assert_null(kp_ckpt_coord_take_commit(c, 210));
    cr_assert_eq(kp_ckpt_coord_decline(c, 1, 0, 0, "late", 220), KP_COORD_IGNORED);
    /* checkpoint 2 expires, the committing 1 (older) does not; 3 is triggered */
    cr_assert_eq(kp_ckpt_coord_tick(c, 1250), 3);
    int64_t ab[4];
    cr_assert_eq(kp_ckpt_coord_take_aborted(c, ab, 4), 1);
    cr_assert_eq(ab[0], 2);
    kp_ckpt_commit_run(r, st);
    cr_assert_eq(r->rc, 0, "%s", r->err);
    cr_assert_eq(kp_ckpt_coord_committed(c, r, 1260), KP_COORD_COMPLETED);
    kp_ckpt_commit_free(r);
    cr_assert_eq(kp_ckpt_coord_last_completed(c, NULL), 1);
    cr_assert_eq(kp_ckpt_coord_history(c)->completed, 1);

    cr_assert_eq(ack_all(c, 3, 1310), KP_COORD_COMMITTING);
    r = kp_ckpt_coord_take_commit(c, 1320);
    kp_ckpt_coord_abandon(c, "abandoned: the run ended", 1330);
    kp_ckpt_commit_run(r, st);
    cr_assert_eq(kp_ckpt_coord_committed(c, r, 1340), KP_COORD_IGNORED);
    kp_ckpt_commit_free(r);
    const char *path = NULL;
    cr_assert_eq(kp_ckpt_coord_last_completed(c, &path), 3, "it is on disk: the latest");
    cr_assert_eq(access(path, F_OK), 0);
    kp_ckpt_coord_free(c);
}
