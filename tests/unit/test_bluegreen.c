/* The blue/green state machine (jobmanager/bluegreen_sm.c) driven by made-up observations: the
 * caught-up rule (lag, watermark tolerance), the hold, aborts before the switch, a finished v2,
 * v1 stopping during the catch-up, the persisted record read back, durations; and the index
 * version names of connectors/es_alias.c. No jobmanager,
 * no Elasticsearch: those are in tests/integration/test_bluegreen.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "../../connectors/es_alias.h"
#include "bluegreen.h"

/* The two registry helpers bluegreen_sm.c uses (registry.c would pull in the whole jobmanager). */
const char *kp_job_state_name(kp_job_state s)
{
    static const char *const n[] = {"CREATED",    "RUNNING",  "FAILING", "RESTARTING",
                                    "CANCELLING", "CANCELED", "FAILED",  "FINISHED"};
    return s < KP_JOB_STATE_N_ ? n[s] : "?";
}

bool kp_job_state_terminal(kp_job_state s)
{
    return s == KP_JOB_CANCELED || s == KP_JOB_FAILED || s == KP_JOB_FINISHED;
}

static kp_bg_rec rec(int64_t hold_ms)
{
    kp_bg_rec r = {.mode = KP_BG_BLUEGREEN, .phase = KP_BG_CATCHING_UP};
    kp_bg_params_default(&r.p);
    r.p.hold_ms = hold_ms;
    r.p.lag_records = 100;
    r.p.wm_tolerance_ms = 50;
    r.caught_since_ms = r.caught_up_ms = r.switched_ms = r.delete_at_ms = -1;
    r.last_v1_wm = INT64_MIN;
    r.transitions = json_array();
    return r;
}

static kp_bg_obs obs(int64_t now, uint64_t v1_in, int64_t v1_wm, uint64_t v2_in, int64_t v2_wm)
{
    return (kp_bg_obs){.v1_state = KP_JOB_RUNNING,
                       .v2_state = KP_JOB_RUNNING,
                       .v1_seen = true,
                       .v2_seen = true,
                       .v1_in = v1_in,
                       .v2_in = v2_in,
                       .v1_wm = v1_wm,
                       .v2_wm = v2_wm,
                       .now_ms = now};
}

Test(bluegreen, caught_up_rule)
{
    kp_bg_rec r = rec(0);
    kp_bg_obs o = obs(0, 1000, 5000, 900, 4950);
    cr_assert(kp_bg_caught_up(&r.p, &o), "lag 100 and watermark 50 behind are within bounds");
    o.v2_in = 899;
    cr_assert_not(kp_bg_caught_up(&r.p, &o), "lag 101 is over 100");
    o.v2_in = 2000; /* v2 read more (v1 started later): no lag */
    o.v2_wm = 4949;
    cr_assert_not(kp_bg_caught_up(&r.p, &o), "watermark 51 behind is over the tolerance");
    o.v2_wm = 9000;
    o.v2_seen = false;
    cr_assert_not(kp_bg_caught_up(&r.p, &o), "no metrics from every v2 subtask yet");
    o = obs(0, 0, INT64_MIN, 0, INT64_MIN);
    cr_assert(kp_bg_caught_up(&r.p, &o), "no overflow at the smallest watermark");
    json_decref(r.transitions);
}

Test(bluegreen, kafka_lag_when_the_sources_report_it)
{
    kp_bg_rec r = rec(0);
    kp_bg_obs o = obs(0, 1000, 5000, 0, 5000); /* v1 read 1000 more: v1 started earlier */
    o.v2_lag_known = true;
    o.v2_lag = 100;
    cr_assert(kp_bg_caught_up(&r.p, &o), "v2's own lag (100) decides, not v1's count");
    o.v2_lag = 101;
    cr_assert_not(kp_bg_caught_up(&r.p, &o), "lag 101 is over 100");
    o = obs(0, 10, 5000, 1000, 5000);
    o.v2_lag_known = true;
    o.v2_lag = 5000;
    cr_assert_not(kp_bg_caught_up(&r.p, &o), "behind the log's end, whatever v1 read");
    json_decref(r.transitions);
}

Test(bluegreen, switches_only_after_the_hold)
{
    kp_bg_rec r = rec(1000);
    kp_bg_obs o = obs(10000, 1000, 5000, 0, 0);
    cr_assert_not(kp_bg_observe(&r, &o));
    o = obs(10100, 1000, 5000, 1000, 5000);
    cr_assert(kp_bg_observe(&r, &o), "caught up: the hold starts");
    cr_assert_eq(r.phase, KP_BG_CATCHING_UP);
    cr_assert_eq(r.caught_since_ms, 10100);
    o = obs(10600, 1200, 6000, 1000, 5000); /* v1 moved on: behind again, the hold restarts */
    kp_bg_observe(&r, &o);
    cr_assert_eq(r.caught_since_ms, -1);
    o = obs(10700, 1200, 6000, 1200, 6000);
    kp_bg_observe(&r, &o);
    o = obs(11699, 1200, 6000, 1200, 6000);
    kp_bg_observe(&r, &o);
    cr_assert_eq(r.phase, KP_BG_CATCHING_UP, "999 ms of the 1000 ms hold");
    o = obs(11700, 1200, 6000, 1200, 6000);
    cr_assert(kp_bg_observe(&r, &o));
    cr_assert_eq(r.phase, KP_BG_SWITCHING);
    cr_assert_eq(r.caught_up_ms, 10700);
    json_t *t = json_array_get(r.transitions, 0);
    cr_assert_str_eq(json_string_value(json_object_get(t, "to")), "SWITCHING");
    cr_assert_eq(json_integer_value(json_object_get(t, "time")), 11700);
    o = obs(20000, 1200, 6000, 1200, 6000);
    cr_assert_not(kp_bg_observe(&r, &o), "SWITCHING is moved on by the Elasticsearch step");
    json_decref(r.transitions);
}

Test(bluegreen, v2_failing_or_cancelled_before_the_switch_aborts)
{
    kp_job_state ends[] = {KP_JOB_FAILED, KP_JOB_CANCELED};
    kp_bg_phase from[] = {KP_BG_PREPARING, KP_BG_CATCHING_UP};
    for (int e = 0; e < 2; e++)
        for (int f = 0; f < 2; f++) {
            kp_bg_rec r = rec(0);
            r.phase = from[f];
            kp_bg_obs o = obs(5, 10, 10, 10, 10);
            o.v2_state = ends[e];
            cr_assert(kp_bg_observe(&r, &o));
            cr_assert_eq(r.phase, KP_BG_ABORTING);
            json_decref(r.transitions);
        }
    kp_bg_rec r = rec(0); /* a restart (RESTARTING) is not the end: the catch-up goes on */
    kp_bg_obs o = obs(5, 10, 10, 10, 10);
    o.v2_state = KP_JOB_RESTARTING;
    kp_bg_observe(&r, &o);
    cr_assert_eq(r.phase, KP_BG_CATCHING_UP);
    r.mode = KP_BG_ASSIGN; /* not a blue/green: nothing to abort */
    r.phase = KP_BG_PREPARING;
    o.v2_state = KP_JOB_FAILED;
    cr_assert_not(kp_bg_observe(&r, &o));
    cr_assert_eq(r.phase, KP_BG_PREPARING);
    json_decref(r.transitions);
}

Test(bluegreen, finished_v2_is_complete)
{
    kp_bg_rec r = rec(60000);
    kp_bg_obs o = obs(5, 1000, 5000, 0, INT64_MIN);
    o.v2_state = KP_JOB_FINISHED;
    cr_assert(kp_bg_observe(&r, &o));
    cr_assert_eq(r.phase, KP_BG_SWITCHING);
    json_decref(r.transitions);
}

Test(bluegreen, v1_stopping_keeps_its_last_observation)
{
    kp_bg_rec r = rec(0);
    kp_bg_obs o = obs(1, 1000, 5000, 10, 10);
    kp_bg_observe(&r, &o);
    o = obs(2, 0, 0, 500, 4000);
    o.v1_state = KP_JOB_CANCELED;
    o.v1_seen = false;
    kp_bg_observe(&r, &o);
    cr_assert_eq(r.caught_since_ms, -1, "still compared with v1's last 1000 records / 5000");
    o.v2_in = 1000;
    o.v2_wm = 5000;
    o.now_ms = 3;
    kp_bg_observe(&r, &o);
    cr_assert_eq(r.caught_since_ms, 3);
    json_decref(r.transitions);

    kp_bg_rec never = rec(0); /* a v1 that stopped before it ever reported */
    o = obs(7, 0, 0, 1, 1);
    o.v1_state = KP_JOB_FAILED;
    o.v1_seen = false;
    kp_bg_observe(&never, &o);
    o.now_ms = 8;
    kp_bg_observe(&never, &o);
    cr_assert_eq(never.phase, KP_BG_SWITCHING);
    json_decref(never.transitions);
}

Test(bluegreen, estimate_to_the_cut_over)
{
    kp_bg_rec r = rec(0);
    r.eta_ms = -1;
    kp_bg_obs o = obs(1000, 0, 100000, 0, 40000); /* 60 s of event time behind */
    kp_bg_estimate(&r, &o);
    cr_assert_eq(r.eta_ms, -1, "one observation says nothing about the pace");
    o = obs(2000, 0, 101000, 0, 51000); /* 1 s later: the gap closed by 10 s */
    kp_bg_estimate(&r, &o);
    cr_assert_eq(r.eta_ms, -1, "less than 2 s of observations");
    o = obs(3000, 0, 102000, 0, 62000); /* 2 s: gap 60 s -> 40 s, so 40 s more take 4 s */
    kp_bg_estimate(&r, &o);
    cr_assert_eq(r.eta_ms, 4000);
    o = obs(5000, 0, 104000, 0, 64000); /* not closing: no estimate */
    kp_bg_estimate(&r, &o);
    cr_assert_eq(r.eta_ms, -1);
    o = obs(7000, 0, 106000, 0, 106000);
    kp_bg_estimate(&r, &o);
    cr_assert_eq(r.eta_ms, 0, "caught up: nothing left");
    json_decref(r.transitions);
}

Test(bluegreen, record_survives_its_json)
{
    kp_bg_rec r = rec(1234);
    strcpy(r.job_id, "0123456789abcdef0123456789abcdef");
    strcpy(r.v1_id, "fedcba9876543210fedcba9876543210");
    r.nsinks = 2;
    strcpy(r.sinks[0].binding, "out");
    strcpy(r.sinks[0].alias, "hourly-click-index");
    strcpy(r.sinks[0].url, "http://127.0.0.1:9200");
    strcpy(r.sinks[0].old_index, "hourly-click-index-v2");
    strcpy(r.sinks[0].new_index, "hourly-click-index-v3");
    strcpy(r.sinks[1].alias, "other");
    r.old_via_alias = true;
    r.p.keep_old_ms = 777;
    r.switched_ms = 99;
    r.last_v1_seen = true;
    r.last_v1_wm = -5;
    r.old_bytes = 1 << 20;
    strcpy(r.sync_rid, "00112233445566778899aabbccddeeff");
    kp_bg_enter(&r, KP_BG_SWITCHING, 42, "caught up");
    json_t *j = kp_bg_rec_json(&r);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    json_t *back = json_loads(text, 0, NULL);
    kp_bg_rec l;
    char err[256];
    cr_assert_eq(kp_bg_rec_load(&l, back, err, sizeof err), 0, "%s", err);
    json_decref(back);
    cr_assert_str_eq(l.job_id, r.job_id);
    cr_assert_str_eq(l.v1_id, r.v1_id);
    cr_assert_eq(l.mode, KP_BG_BLUEGREEN);
    cr_assert_eq(l.phase, KP_BG_SWITCHING);
    cr_assert_eq(l.nsinks, 2);
    cr_assert_str_eq(l.sinks[0].new_index, "hourly-click-index-v3");
    cr_assert_str_eq(l.sinks[0].old_index, "hourly-click-index-v2");
    cr_assert_str_eq(l.sinks[1].alias, "other");
    cr_assert(l.old_via_alias);
    cr_assert_eq(l.p.hold_ms, 1234);
    cr_assert_eq(l.p.keep_old_ms, 777);
    cr_assert_eq(l.switched_ms, 99);
    cr_assert_eq(l.last_v1_wm, -5);
    cr_assert_eq(l.old_bytes, 1 << 20);
    cr_assert_str_eq(l.sync_rid, r.sync_rid, "v2's checkpoint request survives a restart");
    cr_assert_not(l.v2_synced);
    cr_assert_eq(json_array_size(l.transitions), 1);
    json_t *t = json_array_get(l.transitions, 0);
    cr_assert_str_eq(json_string_value(json_object_get(t, "from")), "CATCHING_UP");
    cr_assert_str_eq(json_string_value(json_object_get(t, "message")), "caught up");
    free(text);
    json_decref(r.transitions);
    json_decref(l.transitions);
    json_t *bad = json_pack("{s:s,s:[]}", "phase", "NOPE", "sinks");
    cr_assert_eq(kp_bg_rec_load(&l, bad, err, sizeof err), -1);
    json_decref(bad);
}

Test(bluegreen, durations)
{
    cr_assert_eq(kp_bg_parse_duration("1500"), 1500);
    cr_assert_eq(kp_bg_parse_duration("90s"), 90000);
    cr_assert_eq(kp_bg_parse_duration("15m"), 900000);
    cr_assert_eq(kp_bg_parse_duration("2h"), 7200000);
    cr_assert_eq(kp_bg_parse_duration("1d"), 86400000);
    cr_assert_eq(kp_bg_parse_duration("0"), 0);
    cr_assert_eq(kp_bg_parse_duration(""), -1);
    cr_assert_eq(kp_bg_parse_duration("-1s"), -1);
    cr_assert_eq(kp_bg_parse_duration("5 weeks"), -1);
    cr_assert_eq(kp_bg_parse_duration("h"), -1);
}

Test(bluegreen, index_versions)
{
    cr_assert_eq(kp_es_version_of("clicks", "clicks-v1"), 1);
    cr_assert_eq(kp_es_version_of("clicks", "clicks-v42"), 42);
    cr_assert_eq(kp_es_version_of("clicks", "clicks"), 0, "the alias itself");
    cr_assert_eq(kp_es_version_of("clicks", "clicks-v"), 0);
    cr_assert_eq(kp_es_version_of("clicks", "clicks-v2b"), 0);
    cr_assert_eq(kp_es_version_of("clicks", "clicks-2"), 0);
    cr_assert_eq(kp_es_version_of("clicks", "other-v3"), 0);
    cr_assert_eq(kp_es_version_of("clicks", "clicks-v1-v2"), 0, "another alias's version");
    cr_assert_eq(kp_es_version_of("clicks-v1", "clicks-v1-v2"), 2);
    cr_assert_eq(kp_es_version_of("clicks", "clicks-v-1"), 0);
}

/* SWITCHING waits for v2's checkpoint (bluegreen.c): until it completed the alias has not
 * moved, so a v2 that fails or is cancelled then aborts like one still catching up; once
 * synced, the switch goes on whatever v2 does. */
Test(bluegreen, v2_ending_before_its_checkpoint_aborts)
{
    kp_bg_rec r = rec(0);
    r.phase = KP_BG_SWITCHING;
    kp_bg_obs o = obs(10, 1000, 5000, 1000, 5000);
    cr_assert_not(kp_bg_observe(&r, &o), "a running v2 waits for its checkpoint");
    cr_assert_eq(r.phase, KP_BG_SWITCHING);
    o.v2_state = KP_JOB_RESTARTING;
    cr_assert_not(kp_bg_observe(&r, &o), "a restart is not an end: the request is made again");
    o.v2_state = KP_JOB_FAILED;
    cr_assert(kp_bg_observe(&r, &o));
    cr_assert_eq(r.phase, KP_BG_ABORTING);
    json_decref(r.transitions);

    r = rec(0);
    r.phase = KP_BG_SWITCHING;
    r.v2_synced = true;
    o.v2_state = KP_JOB_CANCELED;
    cr_assert_not(kp_bg_observe(&r, &o), "synced: the alias moves even if v2 stops now");
    cr_assert_eq(r.phase, KP_BG_SWITCHING);
    json_decref(r.transitions);
}

static kp_bg_rec at(kp_bg_phase phase, int tag)
{
    kp_bg_rec r = rec(0);
    r.phase = phase;
    snprintf(r.job_id, sizeof r.job_id, "job%d", tag);
    return r;
}

/* bluegreen.json keeps what is unfinished, what live jobs take part in, and the last N finished
 * records; the oldest finished others go, the order stays. */
Test(bluegreen, prune_keeps_the_unfinished_the_live_and_the_last_finished)
{
    kp_bg_rec recs[8] = {
        at(KP_BG_DONE, 0),        at(KP_BG_SWITCHED, 1),    /* v1's index kept: rollback */
        at(KP_BG_ABORTED, 2),     at(KP_BG_READY, 3),       /* live */
        at(KP_BG_ROLLED_BACK, 4), at(KP_BG_ROLLED_BACK, 5), /* 5: v2's index deleted */
        at(KP_BG_CATCHING_UP, 6), at(KP_BG_DONE, 7)};
    recs[5].new_deleted = true;
    bool live[8] = {[3] = true};
    cr_assert(kp_bg_rec_finished(&recs[0]) && kp_bg_rec_finished(&recs[5]));
    cr_assert_not(kp_bg_rec_finished(&recs[4]), "v2's index still to delete");
    cr_assert_not(kp_bg_rec_finished(&recs[1]));
    /* finished: 0, 2, 3 (live), 5, 7; keep the last 2 → 5 and 7; 3 stays (live) */
    size_t n = kp_bg_prune(recs, 8, live, 2);
    cr_assert_eq(n, 6);
    const char *want[] = {"job1", "job3", "job4", "job5", "job6", "job7"};
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(recs[i].job_id, want[i], "record %zu", i);
    bool live2[6] = {0};
    cr_assert_eq(kp_bg_prune(recs, n, live2, 8), n, "fewer finished than kept: nothing goes");
    n = kp_bg_prune(recs, n, live2, 0);
    cr_assert_eq(n, 3, "keep 0: only the unfinished remain");
    cr_assert_str_eq(recs[0].job_id, "job1");
    cr_assert_str_eq(recs[1].job_id, "job4");
    cr_assert_str_eq(recs[2].job_id, "job6");
    for (size_t i = 0; i < n; i++)
        json_decref(recs[i].transitions);
}

/* What the dashboard's panel shows as the current step (kp_bg_step_json in GET /jobs/:id). */
static void expect_step(const kp_bg_rec *r, int64_t v2_ckpt, const char *want)
{
    json_t *s = kp_bg_step_json(r, v2_ckpt);
    if (want)
        cr_assert_str_eq(json_string_value(s), want);
    else
        cr_assert(json_is_null(s), "no step expected");
    json_decref(s);
}

Test(bluegreen, step_of_the_cut_over_in_words)
{
    kp_bg_rec r = rec(1000);
    expect_step(&r, 0, NULL);
    strcpy(r.sync_rid, "00112233445566778899aabbccddeeff");
    expect_step(&r, 0, "waiting for v2's checkpoint (requested, not triggered yet)");
    expect_step(&r, 17, "waiting for v2's checkpoint 17");
    r.sync_rid[0] = 0;
    r.v2_synced = true;
    strcpy(r.sp_rid, "ffeeddccbbaa99887766554433221100");
    expect_step(&r, 0, "stopping v1 with a savepoint");
    r.sp_rid[0] = 0;
    strcpy(r.sp_path, "/ckpt/savepoints/bg-v1-<b>&\"x\"");
    expect_step(&r, 0, "v1 savepoint: /ckpt/savepoints/bg-v1-<b>&\"x\"");
    memset(r.sp_path, 'p', sizeof r.sp_path - 1); /* the longest path recorded is whole */
    r.sp_path[sizeof r.sp_path - 1] = 0;
    json_t *s = kp_bg_step_json(&r, 0);
    cr_assert_eq(strlen(json_string_value(s)), strlen("v1 savepoint: ") + sizeof r.sp_path - 1);
    json_decref(s);
    strcpy(r.sp_path, "/bad-\xff");
    expect_step(&r, 0, NULL); /* not UTF-8: null, not a failed answer */
    json_decref(r.transitions);
}
