/* The pure part of blue/green reprocessing (bluegreen.h): the phases, the caught-up rule, the
 * transitions that need no Elasticsearch call, and the record's JSON (persisted in
 * state-dir/bluegreen.json, shown by GET /jobs/:id). No locks, no I/O: tests/unit/test_bluegreen.c
 * drives it with made-up observations.
 *
 *   PREPARING ──indices ready──▶ READY (not a blue/green)      any: v2 FAILED/CANCELED
 *   PREPARING ──indices ready──▶ CATCHING_UP ──caught up,        before the switch ─▶ ABORTING
 *     held hold_ms──▶ SWITCHING ──alias moved, v1 cancelled──▶ SWITCHED ──keep-old over,      │
 *     v1 stopped──▶ DONE                                          ABORTED ◀─v2's index deleted┘
 *   SWITCHED ──kappa rollback──▶ ROLLING_BACK ──alias back, v1 again, v2 cancelled──▶ ROLLED_BACK
 *
 * Caught up: every subtask of both versions has reported metrics, v2's Kafka lag (the records
 * between its sources' positions and the partitions' ends, from the Kafka source's stats) is at
 * most lag_records — where the sources do not report it, v2's sources must have read at least
 * v1's records less lag_records (the same log from the same start) — and v2's smallest
 * watermark is at least v1's less wm_tolerance_ms, all of it continuously for hold_ms. A v2
 * that FINISHED is complete, hence caught up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bluegreen.h"

static const char *const phase_names[KP_BG_PHASE_N_] = {
    "PREPARING", "READY",    "CATCHING_UP", "SWITCHING",    "SWITCHED",
    "DONE",      "ABORTING", "ABORTED",     "ROLLING_BACK", "ROLLED_BACK"};

const char *kp_bg_phase_name(kp_bg_phase p)
{
    return p < KP_BG_PHASE_N_ ? phase_names[p] : "?";
}

static int phase_of(const char *name)
{
    for (int i = 0; name && i < KP_BG_PHASE_N_; i++)
        if (!strcmp(name, phase_names[i]))
            return i;
    return -1;
}

bool kp_bg_phase_final(kp_bg_phase p)
{
    return p == KP_BG_READY || p == KP_BG_DONE || p == KP_BG_ABORTED;
}

void kp_bg_params_default(kp_bg_params *p)
{
    *p = (kp_bg_params){
        .lag_records = 1000, .wm_tolerance_ms = 0, .hold_ms = 3000, .keep_old_ms = 3600000};
}

bool kp_bg_caught_up(const kp_bg_params *p, const kp_bg_obs *o)
{
    if (!o->v2_seen || !o->v1_seen)
        return false;
    /* v2's own Kafka lag when its sources report it, else how far it is behind v1 */
    uint64_t lag = o->v2_lag_known ? o->v2_lag : o->v1_in > o->v2_in ? o->v1_in - o->v2_in : 0;
    if (lag > p->lag_records)
        return false;
    int64_t floor = o->v1_wm;
    if (floor > INT64_MIN + p->wm_tolerance_ms)
        floor -= p->wm_tolerance_ms;
    return o->v2_wm >= floor;
}

void kp_bg_enter(kp_bg_rec *r, kp_bg_phase to, int64_t now_ms, const char *message)
{
    if (!r->transitions)
        r->transitions = json_array();
    json_array_append_new(r->transitions,
                          json_pack("{s:I,s:s,s:s,s:s}", "time", (json_int_t)now_ms, "from",
                                    kp_bg_phase_name(r->phase), "to", kp_bg_phase_name(to),
                                    "message", message ? message : ""));
    r->phase = to;
}

static bool terminal_unfinished(kp_job_state s)
{
    return s == KP_JOB_FAILED || s == KP_JOB_CANCELED;
}

/* CATCHING_UP: v1's observation (kept when v1 stops), the rule, the hold. */
static bool catching_up(kp_bg_rec *r, const kp_bg_obs *o)
{
    char msg[512];
    if (o->v2_state == KP_JOB_FINISHED) {
        r->caught_up_ms = o->now_ms;
        kp_bg_enter(r, KP_BG_SWITCHING, o->now_ms, "v2 FINISHED: its index is complete");
        return true;
    }
    if (o->v1_seen) {
        r->last_v1_seen = true;
        r->last_v1_in = o->v1_in;
        r->last_v1_wm = o->v1_wm;
    }
    kp_bg_obs now = *o;
    now.v1_seen = r->last_v1_seen;
    now.v1_in = r->last_v1_in;
    now.v1_wm = r->last_v1_wm;
    if (!now.v1_seen && kp_job_state_terminal(o->v1_state))
        now = (kp_bg_obs){.v1_seen = true, .v2_seen = o->v2_seen, .v1_wm = INT64_MIN};
    bool caught = o->v2_state == KP_JOB_RUNNING && kp_bg_caught_up(&r->p, &now);
    if (!caught) {
        r->caught_since_ms = -1;
        return false;
    }
    if (r->caught_since_ms < 0) {
        r->caught_since_ms = o->now_ms;
        return true;
    }
    if (o->now_ms - r->caught_since_ms < r->p.hold_ms)
        return false;
    r->caught_up_ms = r->caught_since_ms;
    char lag[64] = "";
    if (o->v2_lag_known)
        snprintf(lag, sizeof lag, ", Kafka lag %llu", (unsigned long long)o->v2_lag);
    snprintf(msg, sizeof msg,
             "caught up for %lld ms: v2 read %llu records (v1 %llu)%s, watermark %lld (v1 %lld)",
             (long long)(o->now_ms - r->caught_since_ms), (unsigned long long)o->v2_in,
             (unsigned long long)now.v1_in, lag, (long long)o->v2_wm, (long long)now.v1_wm);
    kp_bg_enter(r, KP_BG_SWITCHING, o->now_ms, msg);
    return true;
}

bool kp_bg_observe(kp_bg_rec *r, const kp_bg_obs *o)
{
    char msg[256];
    switch (r->phase) {
    case KP_BG_PREPARING:
    case KP_BG_CATCHING_UP:
        if (r->mode == KP_BG_BLUEGREEN && terminal_unfinished(o->v2_state)) {
            snprintf(msg, sizeof msg, "v2 %s before the switch: the alias stays on v1's index",
                     kp_job_state_name(o->v2_state));
            kp_bg_enter(r, KP_BG_ABORTING, o->now_ms, msg);
            return true;
        }
        return r->phase == KP_BG_CATCHING_UP && catching_up(r, o);
    case KP_BG_SWITCHING:
        /* the alias has not moved while v2's checkpoint is pending: a v2 that ends now aborts */
        if (r->mode == KP_BG_BLUEGREEN && !r->v2_synced && terminal_unfinished(o->v2_state)) {
            snprintf(msg, sizeof msg,
                     "v2 %s before its checkpoint completed: the alias stays on v1's index",
                     kp_job_state_name(o->v2_state));
            kp_bg_enter(r, KP_BG_ABORTING, o->now_ms, msg);
            return true;
        }
        return false;
    default:
        return false;
    }
}

void kp_bg_estimate(kp_bg_rec *r, const kp_bg_obs *o)
{
    if (!o->v1_seen || !o->v2_seen || o->v2_wm == INT64_MIN || o->v1_wm == INT64_MIN)
        return;
    int64_t gap = o->v1_wm > o->v2_wm ? o->v1_wm - o->v2_wm : 0;
    if (r->eta_at > 0 && o->now_ms - r->eta_at >= 2000) {
        int64_t closed = r->eta_gap - gap, dt = o->now_ms - r->eta_at;
        r->eta_ms = gap == 0     ? 0
                    : closed > 0 ? (int64_t)((double)gap * (double)dt / (double)closed)
                                 : -1;
        r->eta_at = 0;
    }
    if (r->eta_at == 0) {
        r->eta_at = o->now_ms;
        r->eta_gap = gap;
    }
}

static json_t *sink_json(const kp_bg_sink *s)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "binding", s->binding, "alias", s->alias, "url",
                     s->url, "old_index", s->old_index, "new_index", s->new_index);
}

json_t *kp_bg_rec_json(const kp_bg_rec *r)
{
    json_t *sinks = json_array();
    for (int i = 0; i < r->nsinks; i++)
        json_array_append_new(sinks, sink_json(&r->sinks[i]));
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:o,s:b,s:{s:I,s:I,s:I,s:I},s:I,s:I,s:I,s:I,s:b,s:I,s:I}", "job_id",
        r->job_id, "v1_id", r->v1_id, "v1r_id", r->v1r_id, "mode",
        r->mode == KP_BG_BLUEGREEN ? "bluegreen" : "assign", "phase", kp_bg_phase_name(r->phase),
        "sinks", sinks, "old_via_alias", r->old_via_alias, "params", "lag_records",
        (json_int_t)r->p.lag_records, "watermark_tolerance_ms", (json_int_t)r->p.wm_tolerance_ms,
        "hold_ms", (json_int_t)r->p.hold_ms, "keep_old_ms", (json_int_t)r->p.keep_old_ms,
        "caught_since_ms", (json_int_t)r->caught_since_ms, "caught_up_ms",
        (json_int_t)r->caught_up_ms, "switched_ms", (json_int_t)r->switched_ms, "delete_at_ms",
        (json_int_t)r->delete_at_ms, "last_v1_seen", r->last_v1_seen, "last_v1_in",
        (json_int_t)r->last_v1_in, "last_v1_wm", (json_int_t)r->last_v1_wm);
    json_object_set_new(o, "storage",
                        json_pack("{s:I,s:I,s:I,s:I}", "old_bytes", (json_int_t)r->old_bytes,
                                  "new_bytes", (json_int_t)r->new_bytes, "old_docs",
                                  (json_int_t)r->old_docs, "new_docs", (json_int_t)r->new_docs));
    json_object_set_new(o, "error", json_string(r->error));
    json_object_set_new(o, "new_deleted", json_boolean(r->new_deleted));
    json_object_set_new(o, "v1_savepoint_request", json_string(r->sp_rid));
    json_object_set_new(o, "v1_savepoint", json_string(r->sp_path));
    json_object_set_new(o, "v2_checkpoint_request", json_string(r->sync_rid));
    json_object_set_new(o, "v2_synced", json_boolean(r->v2_synced));
    json_object_set_new(o, "v2_attempt", json_integer(r->sync_attempt));
    /* a copy: the REST thread renders it after the lock is released */
    json_object_set_new(o, "transitions",
                        r->transitions ? json_deep_copy(r->transitions) : json_array());
    return o;
}

json_t *kp_bg_step_json(const kp_bg_rec *r, int64_t v2_ckpt)
{
    char step[sizeof r->sp_path + 32];
    if (*r->sync_rid && v2_ckpt > 0)
        snprintf(step, sizeof step, "waiting for v2's checkpoint %lld", (long long)v2_ckpt);
    else if (*r->sync_rid)
        snprintf(step, sizeof step, "waiting for v2's checkpoint (requested, not triggered yet)");
    else if (*r->sp_rid)
        snprintf(step, sizeof step, "stopping v1 with a savepoint");
    else if (*r->sp_path)
        snprintf(step, sizeof step, "v1 savepoint: %s", r->sp_path);
    else
        return json_null();
    json_t *s = json_string(step);
    return s ? s : json_null(); /* a path that is not UTF-8 */
}

static void copy_str(json_t *o, const char *key, char *out, size_t len)
{
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(out, len, "%s", v ? v : "");
}

static int64_t get_int(json_t *o, const char *key, int64_t def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

int kp_bg_rec_load(kp_bg_rec *r, json_t *j, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    int phase = phase_of(json_string_value(json_object_get(j, "phase")));
    json_t *sinks = json_object_get(j, "sinks"), *p = json_object_get(j, "params");
    if (phase < 0 || !json_is_array(sinks) || json_array_size(sinks) > KP_BG_SINKS_MAX) {
        snprintf(err, errlen, "a blue/green record without a known phase or with bad sinks");
        return -1;
    }
    copy_str(j, "job_id", r->job_id, sizeof r->job_id);
    copy_str(j, "v1_id", r->v1_id, sizeof r->v1_id);
    copy_str(j, "v1r_id", r->v1r_id, sizeof r->v1r_id);
    copy_str(j, "error", r->error, sizeof r->error);
    const char *mode = json_string_value(json_object_get(j, "mode"));
    r->mode = mode && !strcmp(mode, "bluegreen") ? KP_BG_BLUEGREEN : KP_BG_ASSIGN;
    r->phase = (kp_bg_phase)phase;
    kp_bg_params_default(&r->p);
    r->p.lag_records = (uint64_t)get_int(p, "lag_records", (int64_t)r->p.lag_records);
    r->p.wm_tolerance_ms = get_int(p, "watermark_tolerance_ms", r->p.wm_tolerance_ms);
    r->p.hold_ms = get_int(p, "hold_ms", r->p.hold_ms);
    r->p.keep_old_ms = get_int(p, "keep_old_ms", r->p.keep_old_ms);
    size_t i;
    json_t *s;
    json_array_foreach(sinks, i, s)
    {
        kp_bg_sink *k = &r->sinks[r->nsinks++];
        copy_str(s, "binding", k->binding, sizeof k->binding);
        copy_str(s, "alias", k->alias, sizeof k->alias);
        copy_str(s, "url", k->url, sizeof k->url);
        copy_str(s, "old_index", k->old_index, sizeof k->old_index);
        copy_str(s, "new_index", k->new_index, sizeof k->new_index);
    }
    r->old_via_alias = json_is_true(json_object_get(j, "old_via_alias"));
    r->new_deleted = json_is_true(json_object_get(j, "new_deleted"));
    copy_str(j, "v1_savepoint_request", r->sp_rid, sizeof r->sp_rid);
    copy_str(j, "v1_savepoint", r->sp_path, sizeof r->sp_path);
    copy_str(j, "v2_checkpoint_request", r->sync_rid, sizeof r->sync_rid);
    r->v2_synced = json_is_true(json_object_get(j, "v2_synced"));
    r->sync_attempt = get_int(j, "v2_attempt", -1);
    r->eta_ms = -1;
    r->caught_since_ms = get_int(j, "caught_since_ms", -1);
    r->caught_up_ms = get_int(j, "caught_up_ms", -1);
    r->switched_ms = get_int(j, "switched_ms", -1);
    r->delete_at_ms = get_int(j, "delete_at_ms", -1);
    r->last_v1_seen = json_is_true(json_object_get(j, "last_v1_seen"));
    r->last_v1_in = (uint64_t)get_int(j, "last_v1_in", 0);
    r->last_v1_wm = get_int(j, "last_v1_wm", INT64_MIN);
    json_t *st = json_object_get(j, "storage");
    r->old_bytes = get_int(st, "old_bytes", -1);
    r->new_bytes = get_int(st, "new_bytes", -1);
    r->old_docs = get_int(st, "old_docs", -1);
    r->new_docs = get_int(st, "new_docs", -1);
    json_t *t = json_object_get(j, "transitions");
    r->transitions = json_is_array(t) ? json_deep_copy(t) : json_array();
    return 0;
}

bool kp_bg_rec_finished(const kp_bg_rec *r)
{
    return kp_bg_phase_final(r->phase) || (r->phase == KP_BG_ROLLED_BACK && r->new_deleted);
}

size_t kp_bg_prune(kp_bg_rec *recs, size_t n, const bool *live, size_t keep)
{
    size_t finished = 0, seen = 0, out = 0;
    for (size_t i = 0; i < n; i++)
        finished += kp_bg_rec_finished(&recs[i]);
    for (size_t i = 0; i < n; i++) {
        bool done = kp_bg_rec_finished(&recs[i]);
        seen += done;
        if (done && !live[i] && finished - seen >= keep) { /* not among the last `keep` */
            json_decref(recs[i].transitions);
            continue;
        }
        if (out != i)
            recs[out] = recs[i];
        out++;
    }
    return out;
}

int64_t kp_bg_parse_duration(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        return -1;
    int64_t unit = !strcmp(end, "") || !strcmp(end, "ms") ? 1
                   : !strcmp(end, "s")                    ? 1000
                   : !strcmp(end, "m")                    ? 60000
                   : !strcmp(end, "h")                    ? 3600000
                   : !strcmp(end, "d")                    ? 86400000
                                                          : 0;
    if (!unit || v > INT64_MAX / unit / 2)
        return -1;
    return v * unit;
}
