/* Blue/green reprocessing in the jobmanager (bluegreen.h, docs/bluegreen.md): which physical
 * Elasticsearch index each job version writes, and the procedure that moves readers from v1's
 * index to v2's once v2 has caught up.
 *
 * Every cluster job with an `es:ALIAS` sink gets a record here before its first deploy: the
 * binding names the alias readers use, and the job's manifest gets `index=ALIAS-vN` on that
 * binding's URI (the sink writes there; the Deploy carries the URI). A replacement started
 * from reset offsets without --in-place gets a fresh index beside v1's and a procedure; any
 * other job writes the alias's current index (a missing alias is created on ALIAS-v1, a concrete
 * index of that name is migrated once behind an alias).
 *
 * One thread of its own drives the records, because the steps talk to Elasticsearch (blocking
 * libcurl, seconds at worst) and the control thread must keep answering heartbeats. It wakes
 * every 200 ms, and under jm->lock observes the jobs (bluegreen_sm.c decides), picks at most one
 * step that needs Elasticsearch, releases the lock for the requests, and takes it again to
 * record the result. Records live in state-dir/bluegreen.json, rewritten atomically at every
 * change, so a restarted jobmanager resumes each procedure where it was; every Elasticsearch
 * step is idempotent (create keeps an existing index, the alias is resolved before it is
 * moved, deleting a missing index is fine), so a step cut short is simply done again.
 *
 * After the switch v1 stops with a savepoint (savepoints.h, as `kappa stop`): a rollback starts
 * v1 again from it, into its kept index. When no savepoint can be taken (v1 not RUNNING with
 * every subtask, storage missing) or it fails, v1 is cancelled and a rollback starts it from
 * its original start position instead: the same results, replay being deterministic and the
 * sink's writes fenced by versions, only slower. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../connectors/es_alias.h"
#include "failpoint.h"
#include "savepoints.h"
#include "bluegreen.h"

#define TICK_MS 200

static struct {
    kp_jm_t *jm;
    pthread_t thread;
    pthread_cond_t cond;
    bool running;
    int stop;
    kp_bg_rec *recs;
    size_t n, cap;
} bg;

/* A step that needs Elasticsearch, copied out of its record so the lock can be released. */
typedef struct work {
    char job_id[KP_JM_ID_LEN];
    kp_bg_phase phase;
    kp_bg_mode mode;
    kp_bg_sink sinks[KP_BG_SINKS_MAX];
    int nsinks;
    char body[8192];               /* settings/mappings for new indices */
    int min_next[KP_BG_SINKS_MAX]; /* versions already used for each alias (never reused) */
    bool ok;
    bool migrated_old; /* v1's concrete index moved behind the alias */
    bool permanent;    /* failed with an answer that asking again will not change */
    char err[768];
    int64_t old_bytes, new_bytes, old_docs, new_docs;
} work;

/* ---- records and persistence ----------------------------------------------------------------- */

static kp_bg_rec *find_rec(const char *job_id)
{
    for (size_t i = bg.n; i-- > 0;)
        if (!strcmp(bg.recs[i].job_id, job_id))
            return &bg.recs[i];
    return NULL;
}

static void save(void)
{
    kp_jm_t *jm = bg.jm;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/bluegreen.json", jm->cfg.state_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    json_t *arr = json_array();
    for (size_t i = 0; i < bg.n; i++)
        json_array_append_new(arr, kp_bg_rec_json(&bg.recs[i]));
    char *text = json_dumps(arr, JSON_INDENT(1));
    json_decref(arr);
    int fd = text ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (fd < 0 || kp_jm_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0 ||
        close(fd) != 0 || rename(tmp, path) != 0) {
        kp_jm_log("blue/green: cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
    } else {
        kp_jm_fsync_dir(jm->cfg.state_dir);
    }
    free(text);
}

/* Finished records kept beyond those whose jobs still run (docs/bluegreen.md). */
#define KEEP_FINISHED 32

static bool job_live(kp_jm_t *jm, const char *id)
{
    kp_jm_job_t *job = *id ? kp_registry_find(jm, id) : NULL;
    return job && !kp_job_state_terminal(job->state);
}

/* Drops the finished records nobody needs any more: true when some went. */
static bool prune(kp_jm_t *jm)
{
    size_t finished = 0;
    for (size_t i = 0; i < bg.n; i++)
        finished += kp_bg_rec_finished(&bg.recs[i]);
    if (finished <= KEEP_FINISHED)
        return false;
    bool *live = calloc(bg.n ? bg.n : 1, sizeof *live);
    if (!live)
        return false;
    for (size_t i = 0; i < bg.n; i++) {
        const kp_bg_rec *r = &bg.recs[i];
        live[i] = job_live(jm, r->job_id) || job_live(jm, r->v1_id) || job_live(jm, r->v1r_id);
    }
    size_t n = kp_bg_prune(bg.recs, bg.n, live, KEEP_FINISHED);
    free(live);
    bool changed = n != bg.n;
    bg.n = n;
    return changed;
}

static int load(kp_jm_t *jm, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/bluegreen.json", jm->cfg.state_dir);
    json_error_t jerr;
    json_t *arr = json_load_file(path, 0, &jerr);
    if (!arr)
        return access(path, F_OK) == 0 ? (snprintf(err, errlen, "%s: %s", path, jerr.text), -1) : 0;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        if (bg.n == bg.cap) {
            size_t cap = bg.cap ? bg.cap * 2 : 16;
            kp_bg_rec *r = realloc(bg.recs, cap * sizeof *r);
            if (!r)
                break;
            bg.recs = r;
            bg.cap = cap;
        }
        if (kp_bg_rec_load(&bg.recs[bg.n], o, err, errlen) != 0) {
            json_decref(arr);
            return -1;
        }
        bg.n++;
    }
    json_decref(arr);
    return 0;
}

static kp_bg_rec *add_rec(void)
{
    if (bg.n == bg.cap) {
        size_t cap = bg.cap ? bg.cap * 2 : 16;
        kp_bg_rec *r = realloc(bg.recs, cap * sizeof *r);
        if (!r)
            return NULL;
        bg.recs = r;
        bg.cap = cap;
    }
    kp_bg_rec *r = &bg.recs[bg.n++];
    memset(r, 0, sizeof *r);
    r->caught_since_ms = r->caught_up_ms = r->switched_ms = r->delete_at_ms = -1;
    r->sync_attempt = -1;
    r->old_bytes = r->new_bytes = r->old_docs = r->new_docs = r->eta_ms = -1;
    r->last_v1_wm = INT64_MIN;
    r->transitions = json_array();
    return r;
}

/* ---- the job's manifest: es: bindings, options ----------------------------------------------- */

/* A query option of a URI (simple %XX decoding), or NULL. */
static const char *uri_opt(const char *uri, const char *key, char *buf, size_t len)
{
    size_t klen = strlen(key);
    for (const char *q = strchr(uri, '?'); q && *q;) {
        q++;
        size_t n = strcspn(q, "&");
        if (n > klen && !strncmp(q, key, klen) && q[klen] == '=') {
            size_t o = 0;
            for (size_t i = klen + 1; i < n && o + 1 < len; i++) {
                unsigned x;
                if (q[i] == '%' && i + 2 < n && sscanf(q + i + 1, "%2x", &x) == 1) {
                    buf[o++] = (char)x;
                    i += 2;
                } else {
                    buf[o++] = q[i];
                }
            }
            buf[o] = 0;
            return buf;
        }
        q += n;
    }
    return NULL;
}

/* The first conf entry KEY=VALUE of the manifest (the CLI puts the winner first), or NULL. */
static const char *conf_get(const kp_jm_job_t *job, const char *key)
{
    size_t klen = strlen(key), i;
    json_t *c;
    json_array_foreach(json_object_get(job->manifest, "conf"), i, c)
    {
        const char *kv = json_string_value(c);
        if (kv && !strncmp(kv, key, klen) && kv[klen] == '=')
            return kv + klen + 1;
    }
    return NULL;
}

/* The es: sinks the jobmanager manages: `es:ALIAS` without index= nor alias=0. A binding whose
 * URI names its index already (a restart, a rollback) is not managed again. */
static int managed_sinks(const kp_jm_job_t *job, kp_bg_sink *out, int max, bool *pinned)
{
    int n = 0;
    size_t i;
    json_t *b;
    char v[512];
    *pinned = false;
    json_array_foreach(json_object_get(job->manifest, "bindings"), i, b)
    {
        const char *uri = json_string_value(json_object_get(b, "uri"));
        const char *name = json_string_value(json_object_get(b, "name"));
        if (!uri || !name || strncmp(uri, "es:", 3))
            continue;
        if (uri_opt(uri, "index", v, sizeof v)) {
            *pinned = true;
            continue;
        }
        if (uri_opt(uri, "alias", v, sizeof v) && !strcmp(v, "0"))
            continue;
        const char *url = uri_opt(uri, "url", v, sizeof v) ? v : conf_get(job, "es.url");
        size_t alen = strcspn(uri + 3, "?");
        if (!url || !*url || !alen || alen > 200 || n == max)
            continue; /* the sink itself says what is missing */
        kp_bg_sink *s = &out[n++];
        memset(s, 0, sizeof *s);
        snprintf(s->binding, sizeof s->binding, "%s", name);
        snprintf(s->alias, sizeof s->alias, "%.*s", (int)alen, uri + 3);
        snprintf(s->url, sizeof s->url, "%s", url);
    }
    return n;
}

/* v1's physical index for an alias, from its binding's index= ("" = it writes the alias). */
static void v1_index(const kp_jm_job_t *v1, const char *alias, char *out, size_t len)
{
    size_t i;
    json_t *b;
    *out = 0;
    json_array_foreach(json_object_get(v1->manifest, "bindings"), i, b)
    {
        const char *uri = json_string_value(json_object_get(b, "uri"));
        size_t alen = strlen(alias);
        if (uri && !strncmp(uri, "es:", 3) && !strncmp(uri + 3, alias, alen) &&
            (uri[3 + alen] == '?' || !uri[3 + alen]))
            uri_opt(uri, "index", out, len);
    }
}

/* The job's sinks now write their physical index: index=NAME on each managed binding. */
static void pin_indices(kp_jm_job_t *job, const kp_bg_rec *r)
{
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(job->manifest, "bindings"), i, b)
    {
        const char *name = json_string_value(json_object_get(b, "name"));
        const char *uri = json_string_value(json_object_get(b, "uri"));
        for (int k = 0; name && uri && k < r->nsinks; k++) {
            if (strcmp(name, r->sinks[k].binding))
                continue;
            char next[2048];
            snprintf(next, sizeof next, "%s%cindex=%s", uri, strchr(uri, '?') ? '&' : '?',
                     r->sinks[k].new_index);
            json_object_set_new(b, "uri", json_string(next));
            break;
        }
    }
}

static void read_params(const kp_jm_job_t *job, kp_bg_params *p, bool *in_place)
{
    kp_bg_params_default(p);
    json_t *o = json_object_get(job->manifest, "bluegreen");
    *in_place = json_is_true(json_object_get(o, "in_place"));
    json_t *keep = json_object_get(o, "keep_old_ms");
    if (json_is_integer(keep) && json_integer_value(keep) >= 0)
        p->keep_old_ms = json_integer_value(keep);
    const char *v;
    int64_t d;
    if ((v = conf_get(job, "bluegreen.lag_records")) && (d = kp_bg_parse_duration(v)) >= 0)
        p->lag_records = (uint64_t)d;
    if ((v = conf_get(job, "bluegreen.watermark_tolerance_ms")) &&
        (d = kp_bg_parse_duration(v)) >= 0)
        p->wm_tolerance_ms = d;
    if ((v = conf_get(job, "bluegreen.hold_ms")) && (d = kp_bg_parse_duration(v)) >= 0)
        p->hold_ms = d;
}

/* ---- hooks ------------------------------------------------------------------------------------ */

bool kp_bg_deploy_ready(kp_jm_t *jm, kp_jm_job_t *job)
{
    kp_bg_rec *r = find_rec(job->id);
    if (r && r->phase != KP_BG_PREPARING)
        return true;
    if (r) {
        snprintf(job->waiting_reason, sizeof job->waiting_reason,
                 "preparing Elasticsearch index %s for es:%.60s%s%.120s",
                 r->mode == KP_BG_BLUEGREEN ? "(blue/green)" : "", r->sinks[0].alias,
                 *r->error ? ": " : "", r->error);
        return false;
    }
    kp_bg_sink sinks[KP_BG_SINKS_MAX];
    bool pinned;
    int n = managed_sinks(job, sinks, KP_BG_SINKS_MAX, &pinned);
    if (n == 0 || !bg.running)
        return true;
    kp_jm_job_t *v1 = job->replaces[0] ? kp_registry_find(jm, job->replaces) : NULL;
    char why[512];
    const kp_bg_rec *v1_bg = v1 ? find_rec(v1->id) : NULL;
    if (v1_bg && v1_bg->mode == KP_BG_BLUEGREEN &&
        (v1_bg->phase == KP_BG_PREPARING || v1_bg->phase == KP_BG_CATCHING_UP ||
         v1_bg->phase == KP_BG_SWITCHING)) {
        /* its own v1 would run on unseen: one replacement at a time */
        snprintf(why, sizeof why,
                 "job %s, which this one replaces, is itself a blue/green replacement still %s: "
                 "wait for its switch (kappa status %s) or cancel it, then submit again",
                 v1->id, kp_bg_phase_name(v1_bg->phase), v1->name);
        job->waiting_reason[0] = 0;
        kp_job_transition(jm, job, KP_JOB_FAILED, why);
        return false;
    }
    if (!(r = add_rec()))
        return true; /* out of memory: the job writes the alias name as before */
    snprintf(r->job_id, sizeof r->job_id, "%s", job->id);
    memcpy(r->sinks, sinks, sizeof sinks);
    r->nsinks = n;
    bool in_place;
    read_params(job, &r->p, &in_place);
    const char *start = json_string_value(json_object_get(job->manifest, "start"));
    bool reset = !start || !strcmp(start, "earliest") || !strcmp(start, "timestamp");
    char msg[512];
    if (v1 && !kp_job_state_terminal(v1->state) && reset && !in_place) {
        r->mode = KP_BG_BLUEGREEN;
        snprintf(r->v1_id, sizeof r->v1_id, "%s", v1->id);
        for (int i = 0; i < n; i++) {
            v1_index(v1, sinks[i].alias, r->sinks[i].old_index, sizeof r->sinks[i].old_index);
            r->old_via_alias |= !*r->sinks[i].old_index;
        }
        snprintf(msg, sizeof msg, "blue/green: job %s replaces %s; new index for es:%s", job->id,
                 v1->id, sinks[0].alias);
    } else {
        snprintf(msg, sizeof msg, "job %s writes the index of alias es:%s%s", job->id,
                 sinks[0].alias, v1 ? " (in place)" : "");
    }
    kp_bg_enter(r, KP_BG_PREPARING, kp_wall_ms(), msg);
    kp_jm_log("%s", msg);
    snprintf(job->waiting_reason, sizeof job->waiting_reason,
             "preparing Elasticsearch index for es:%.200s", sinks[0].alias);
    save();
    pthread_cond_signal(&bg.cond);
    return false;
}

bool kp_bg_defers_cancel(kp_jm_t *jm, const kp_jm_job_t *job)
{
    const kp_bg_rec *r = find_rec(job->id);
    return r && r->mode == KP_BG_BLUEGREEN;
}

/* ---- observing the jobs ---------------------------------------------------------------------- */

static bool source_task(const kp_jm_job_t *job, int task_id)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(json_object_get(job->manifest, "graph"), "tasks"), i,
                       t) if (json_integer_value(json_object_get(t, "id")) ==
                              task_id) return json_integer_value(json_object_get(t, "upstream")) <
        0;
    return false;
}

static void observe_job(const kp_jm_job_t *job, kp_job_state *state, bool *seen, uint64_t *in,
                        int64_t *wm)
{
    *state = job ? job->state : KP_JOB_FAILED;
    *seen = job && job->deployed && job->nsubs > 0;
    *in = 0;
    *wm = INT64_MAX;
    for (size_t i = 0; job && i < job->nsubs; i++) {
        const kp_jm_sub_t *s = &job->subs[i];
        *seen &= s->has_metrics;
        if (source_task(job, s->task_id))
            *in += s->records_in;
        if (s->watermark_ms < *wm)
            *wm = s->watermark_ms;
    }
}

/* v2's Kafka lag: the sum over its source subtasks' partitions (metrics_keep.c keeps the
 * source's stats JSON, runtime/source.c: {"reader": the Kafka source's stats, with
 * partitions[{offset, high, lag}], "watermarks": [...]}). false when a source subtask
 * has not reported them, or a partition's position or end is not known yet. */
static bool kafka_lag(const kp_jm_job_t *job, uint64_t *lag)
{
    *lag = 0;
    bool any = false;
    for (size_t i = 0; job && i < job->nsubs; i++) {
        const kp_jm_sub_t *s = &job->subs[i];
        if (!source_task(job, s->task_id))
            continue;
        json_t *j = s->source_json[0] ? json_loads(s->source_json, 0, NULL) : NULL;
        json_t *reader = json_object_get(j, "reader"); /* source.c: {reader, watermarks} */
        json_t *parts = json_object_get(reader ? reader : j, "partitions"), *p;
        size_t k;
        bool ok = json_is_array(parts);
        json_array_foreach(parts, k, p)
        {
            json_int_t off = json_integer_value(json_object_get(p, "offset"));
            json_int_t high = json_integer_value(json_object_get(p, "high"));
            ok &= json_is_integer(json_object_get(p, "high")) && off >= 0 && high >= 0;
            *lag += high > off ? (uint64_t)(high - off) : 0;
        }
        json_decref(j);
        if (!ok)
            return false;
        any = true;
    }
    return any;
}

static void observe(kp_jm_t *jm, kp_bg_rec *r, kp_bg_obs *o)
{
    memset(o, 0, sizeof *o);
    observe_job(kp_registry_find(jm, r->v1_id[0] ? r->v1_id : r->job_id), &o->v1_state, &o->v1_seen,
                &o->v1_in, &o->v1_wm);
    kp_jm_job_t *v2 = kp_registry_find(jm, r->job_id);
    observe_job(v2, &o->v2_state, &o->v2_seen, &o->v2_in, &o->v2_wm);
    o->v2_lag_known = kafka_lag(v2, &o->v2_lag);
    o->now_ms = kp_wall_ms();
}

static void cancel_v1(kp_jm_t *jm, kp_bg_rec *r, const char *why)
{
    kp_jm_job_t *v1 = kp_registry_find(jm, r->v1_id);
    if (v1 && !kp_job_state_terminal(v1->state))
        kp_life_cancel(jm, v1, why);
}

/* v1 stops after the switch: with a savepoint when it can (as kappa stop: the job is cancelled
 * once the savepoint is on disk, and a rollback restores it), else by a cancel. What happened
 * into how. */
static void stop_v1(kp_jm_t *jm, kp_bg_rec *r, const char *why, char *how, size_t howlen)
{
    kp_jm_job_t *v1 = kp_registry_find(jm, r->v1_id);
    char err[512] = "";
    unsigned http = 0;
    snprintf(how, howlen, "v1 was not running");
    if (!v1 || kp_job_state_terminal(v1->state))
        return;
    /* v1 still recovering (a restarted jobmanager): the request waits until it runs */
    if (v1->state != KP_JOB_CANCELLING &&
        kp_jm_savepoint_request(jm, v1, "", true, r->sp_rid, &http, err, sizeof err) == 0) {
        snprintf(how, howlen, "v1 stops with a savepoint (request %s)", r->sp_rid);
        return;
    }
    r->sp_rid[0] = 0;
    snprintf(how, howlen, "v1 cancelled (no savepoint: %.300s)", *err ? err : "not running");
    kp_life_cancel(jm, v1, why);
}

/* SWITCHED: follows v1's stop-with-savepoint; a failed one becomes a cancel. */
static void follow_savepoint(kp_jm_t *jm, kp_bg_rec *r)
{
    kp_jm_job_t *v1 = kp_registry_find(jm, r->v1_id);
    json_t *st = v1 ? kp_jm_savepoint_status(jm, v1, r->sp_rid) : NULL;
    const char *id = json_string_value(json_object_get(json_object_get(st, "status"), "id"));
    json_t *op = json_object_get(st, "operation");
    const char *loc = json_string_value(json_object_get(op, "location"));
    char msg[1400], dir[4096], meta[4200];
    if (st && id && strcmp(id, "COMPLETED")) { /* in progress */
        json_decref(st);
        return;
    }
    if (!st && v1) { /* a restarted jobmanager: the savepoint may have completed before */
        kp_jm_savepoint_default_dir(jm, v1, r->sp_rid, dir, sizeof dir);
        snprintf(meta, sizeof meta, "%s/_metadata", dir);
        if (access(meta, F_OK) == 0) {
            loc = dir;
            cancel_v1(jm, r, "blue/green: stopped with a savepoint");
        }
    }
    if (!st && !loc && v1 && !kp_job_state_terminal(v1->state)) {
        /* requests live in the jobmanager's memory: this one was lost with a restart, and v1
         * was recovered as a new attempt. Once it runs, it stops with a savepoint again. */
        char err[512] = "", old[KP_JM_ID_LEN];
        unsigned http = 0;
        if (v1->state != KP_JOB_RUNNING)
            return;
        snprintf(old, sizeof old, "%s", r->sp_rid);
        if (kp_jm_savepoint_request(jm, v1, "", true, r->sp_rid, &http, err, sizeof err) == 0) {
            snprintf(msg, sizeof msg,
                     "v1's savepoint request %s was lost (jobmanager restarted): v1 stops with a "
                     "savepoint again (request %s)",
                     old, r->sp_rid);
            kp_bg_enter(r, KP_BG_SWITCHED, kp_wall_ms(), msg);
            kp_jm_log("blue/green: %s", msg);
            save();
            return;
        }
        snprintf(r->sp_rid, sizeof r->sp_rid, "%s", old);
    }
    if (loc && strlen(loc) >= sizeof r->sp_path) {
        kp_jm_log("blue/green: v1's savepoint path is longer than %zu bytes: not recorded (%s)",
                  sizeof r->sp_path - 1, loc);
        loc = NULL; /* a rollback replays v1 from its start instead */
    }
    if (loc) {
        if (st) /* complete, v1 cancelled, the record not saved yet */
            kp_failpoint("bluegreen.before_v1_savepoint_saved");
        snprintf(r->sp_path, sizeof r->sp_path, "%.1023s", loc);
        snprintf(msg, sizeof msg, "v1's savepoint is complete: %.1000s%s", loc,
                 st ? "" : " (found after a jobmanager restart)");
    } else {
        const char *why =
            json_string_value(json_object_get(json_object_get(op, "failure-cause"), "stack-trace"));
        snprintf(msg, sizeof msg, "v1's savepoint failed (%.300s): v1 cancelled",
                 why  ? why
                 : st ? "no location"
                      : "the request is gone: jobmanager restarted?");
        cancel_v1(jm, r, "blue/green: its savepoint failed");
    }
    r->sp_rid[0] = 0;
    json_decref(st);
    kp_bg_enter(r, KP_BG_SWITCHED, kp_wall_ms(), msg);
    kp_jm_log("blue/green: %s", msg);
    save();
}

/* SWITCHING, before the alias moves: proof that v2's index holds everything v2 emitted up to
 * now — a checkpoint of v2 triggered after the hold completes only once every sink flushed and
 * Elasticsearch acknowledged every write before its barrier (docs/checkpoints.md). Requested
 * on demand (also without periodic checkpoints); a request lost with a jobmanager restart, or
 * one that failed (v2 restarted, a decline), is made again. true once v2 is synced. */
static bool sync_v2(kp_jm_t *jm, kp_bg_rec *r)
{
    kp_jm_job_t *v2 = kp_registry_find(jm, r->job_id);
    char msg[1400], err[512] = "";
    unsigned http = 0;
    if (v2 && v2->state != KP_JOB_FINISHED && (int64_t)v2->attempt != r->sync_attempt) {
        /* v2 restarted (or the jobmanager did) after the hold: it replays from its last
         * checkpoint or start, so it must catch up again before a checkpoint proves anything */
        snprintf(msg, sizeof msg,
                 "v2 restarted (attempt %u) before its checkpoint completed: it catches up again",
                 v2->attempt);
        r->sync_rid[0] = 0;
        r->caught_since_ms = -1;
        kp_bg_enter(r, KP_BG_CATCHING_UP, kp_wall_ms(), msg);
        kp_jm_log("blue/green (job %s): %s", r->job_id, msg);
        save();
        return false;
    }
    if (v2 && v2->state == KP_JOB_FINISHED) {
        snprintf(msg, sizeof msg, "v2 FINISHED: its sinks flushed at the end of its input");
    } else if (v2 && *r->sync_rid) {
        json_t *st = kp_jm_savepoint_status(jm, v2, r->sync_rid);
        const char *id = json_string_value(json_object_get(json_object_get(st, "status"), "id"));
        json_t *op = json_object_get(st, "operation");
        const char *loc = json_string_value(json_object_get(op, "location"));
        if (st && id && strcmp(id, "COMPLETED")) { /* in progress */
            json_decref(st);
            return false;
        }
        if (!loc) {
            const char *why = json_string_value(
                json_object_get(json_object_get(op, "failure-cause"), "stack-trace"));
            kp_jm_log("blue/green (job %s): v2's checkpoint %s did not complete (%.300s): "
                      "requesting another",
                      r->job_id, r->sync_rid, why ? why : "the request is gone: restarted?");
            r->sync_rid[0] = 0;
            json_decref(st);
            save();
            return false;
        }
        snprintf(msg, sizeof msg,
                 "v2's checkpoint %lld complete (%.900s): Elasticsearch acknowledged every result "
                 "v2 emitted before it",
                 (long long)json_integer_value(json_object_get(st, "checkpoint")), loc);
        json_decref(st);
    } else {
        if (!v2 || v2->state != KP_JOB_RUNNING)
            return false; /* restarting: asked again once it runs */
        if (kp_jm_checkpoint_request(jm, v2, r->sync_rid, &http, err, sizeof err) != 0) {
            snprintf(r->error, sizeof r->error, "v2's checkpoint: %.480s", err);
            r->sync_rid[0] = 0;
            return false;
        }
        kp_jm_log("blue/green (job %s): caught up; checkpoint request %s before the switch",
                  r->job_id, r->sync_rid);
        save();
        kp_failpoint("bluegreen.after_v2_checkpoint_request"); /* a restart asks again */
        return false;
    }
    r->sync_rid[0] = 0;
    r->v2_synced = true;
    kp_bg_enter(r, KP_BG_SWITCHING, kp_wall_ms(), msg);
    kp_jm_log("blue/green (job %s): %s", r->job_id, msg);
    save();
    return true;
}

/* Rollback: v1 again, as a new job from its manifest (its bindings already name its kept
 * index), from its original start position. The seam for restarting from v1's savepoint. */
static int restart_v1(kp_jm_t *jm, kp_bg_rec *r, char *err, size_t errlen)
{
    kp_jm_job_t *v1 = kp_registry_find(jm, r->v1_id);
    if (!v1) {
        snprintf(err, errlen, "job %s is no longer known", r->v1_id);
        return -1;
    }
    json_t *m = json_deep_copy(v1->manifest);
    json_object_set_new(m, "replace", json_null());
    json_object_del(m, "bluegreen");
    if (*r->sp_path) /* from v1's savepoint at the switch, else its original start position */
        json_object_set_new(m, "from_checkpoint", json_string(r->sp_path));
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    kp_jm_job_t *job = text ? kp_manifest_parse(&jm->cfg, text, strlen(text), err, errlen) : NULL;
    free(text);
    if (!job || kp_registry_add(jm, job) != 0) {
        if (job)
            kp_job_free(job);
        return -1;
    }
    job->plugin_size = v1->plugin_size;
    snprintf(r->v1r_id, sizeof r->v1r_id, "%s", job->id);
    kp_jm_log("blue/green: job %s (%s) is v1 again (rollback of %s), from %s into its kept index",
              job->id, job->name, r->job_id,
              *r->sp_path ? r->sp_path : "its original start position");
    kp_registry_save(jm);
    kp_jm_wake(jm);
    return 0;
}

/* ---- the steps that need Elasticsearch (lock released) --------------------------------------- */

/* 1 + the largest version of `alias` any record names: a deleted index's name is not reused
 * (a reader or a log naming ALIAS-v2 means one version). */
static int next_known_version(const char *alias)
{
    int best = 0;
    for (size_t i = 0; i < bg.n; i++)
        for (int k = 0; k < bg.recs[i].nsinks; k++) {
            const kp_bg_sink *s = &bg.recs[i].sinks[k];
            if (strcmp(s->alias, alias))
                continue;
            int a = kp_es_version_of(alias, s->old_index),
                b = kp_es_version_of(alias, s->new_index);
            best = a > best ? a : best;
            best = b > best ? b : best;
        }
    return best + 1;
}

/* The node of sink s (into *a) and what its alias points at now. */
static int resolve_sink(work *w, const kp_bg_sink *s, kp_es_admin *a, kp_es_kind *kind, char *cur,
                        size_t len)
{
    kp_es_admin_init(a, s->url);
    return kp_es_resolve(a, s->alias, kind, cur, len, w->err, sizeof w->err);
}

static int prepare_sink(work *w, kp_bg_sink *s, int min_next)
{
    kp_es_admin a;
    kp_es_kind kind;
    char target[256];
    int next;
    if (resolve_sink(w, s, &a, &kind, target, sizeof target) != 0)
        return -1;
    if (kind == KP_ES_INDEX) { /* once: the concrete index goes behind an alias */
        if (kp_es_next_version(&a, s->alias, &next, w->err, sizeof w->err) != 0)
            return -1;
        next = next < min_next ? min_next : next;
        snprintf(target, sizeof target, "%.200s-v%d", s->alias, next);
        kp_jm_log("blue/green: es:%s is a concrete index: migrating it once to %s behind an alias "
                  "%s (readers keep using the name)",
                  s->alias, target, s->alias);
        if (kp_es_migrate(&a, s->alias, target, w->body, w->err, sizeof w->err) != 0)
            return -1;
        kind = KP_ES_ALIAS;
        w->migrated_old = true;
    }
    if (w->mode == KP_BG_ASSIGN && kind == KP_ES_ALIAS) {
        snprintf(s->new_index, sizeof s->new_index, "%s", target);
        return 0;
    }
    if (w->mode == KP_BG_BLUEGREEN && kind == KP_ES_ALIAS)
        snprintf(s->old_index, sizeof s->old_index, "%s", target);
    if (kp_es_next_version(&a, s->alias, &next, w->err, sizeof w->err) != 0)
        return -1;
    if (next < min_next)
        next = min_next;
    snprintf(s->new_index, sizeof s->new_index, "%.200s-v%d", s->alias, next);
    if (kp_es_index_create(&a, s->new_index, w->body, w->err, sizeof w->err) != 0)
        return -1;
    if (w->mode == KP_BG_ASSIGN) /* nothing there yet: the alias starts on the new index */
        return kp_es_alias_switch(&a, s->alias, NULL, s->new_index, w->err, sizeof w->err);
    return 0;
}

/* Moves each alias from old to new (or back, for a rollback), refreshing the target first so
 * readers find everything written to it. Resolved first: a repeated step does nothing. */
static int move_aliases(work *w, bool back)
{
    for (int i = 0; i < w->nsinks; i++) {
        kp_bg_sink *s = &w->sinks[i];
        const char *to = back ? s->old_index : s->new_index;
        kp_es_admin a;
        kp_es_kind kind;
        char cur[256];
        long long docs, bytes;
        if (resolve_sink(w, s, &a, &kind, cur, sizeof cur) != 0 ||
            kp_es_refresh(&a, to, w->err, sizeof w->err) != 0)
            return -1;
        if (!back && kp_es_index_stats(&a, s->new_index, &docs, &bytes, w->err, sizeof w->err) == 0)
            w->new_docs = docs, w->new_bytes = bytes;
        if (!back && *s->old_index &&
            kp_es_index_stats(&a, s->old_index, &docs, &bytes, w->err, sizeof w->err) == 0)
            w->old_docs = docs, w->old_bytes = bytes;
        if (kind == KP_ES_ALIAS && !strcmp(cur, to))
            continue;
        if (kind == KP_ES_INDEX) {
            snprintf(w->err, sizeof w->err,
                     "es:%s became a concrete index during the procedure: not moving it", s->alias);
            return -1;
        }
        if (kp_es_alias_switch(&a, s->alias, kind == KP_ES_ALIAS ? cur : NULL, to, w->err,
                               sizeof w->err) != 0)
            return -1;
    }
    return 0;
}

/* Deletes the old (or new) indices, never one the alias points at. */
static int delete_indices(work *w, bool old)
{
    for (int i = 0; i < w->nsinks; i++) {
        kp_bg_sink *s = &w->sinks[i];
        const char *ix = old ? s->old_index : s->new_index;
        kp_es_admin a;
        kp_es_kind kind;
        char cur[256];
        if (!*ix)
            continue;
        if (resolve_sink(w, s, &a, &kind, cur, sizeof cur) != 0)
            return -1;
        if (kind == KP_ES_ALIAS && !strcmp(cur, ix)) {
            kp_jm_log("blue/green: %s is what es:%s points at: kept", ix, s->alias);
            continue;
        }
        if (kp_es_index_delete(&a, ix, w->err, sizeof w->err) != 0)
            return -1;
    }
    return 0;
}

static void do_work(work *w)
{
    int rc = 0;
    switch (w->phase) {
    case KP_BG_PREPARING:
        for (int i = 0; i < w->nsinks && rc == 0; i++)
            rc = prepare_sink(w, &w->sinks[i], w->min_next[i]);
        if (rc != 0) {
            long st = kp_es_last_status();
            w->permanent = st >= 400 && st < 500 && st != 404 && st != 408 && st != 429;
        }
        break;
    case KP_BG_SWITCHING:
        rc = move_aliases(w, false);
        if (rc == 0) /* the alias moved, the record not saved yet: a restart must not redo it */
            kp_failpoint("bluegreen.after_alias_switch");
        break;
    case KP_BG_ROLLING_BACK:
        rc = move_aliases(w, true);
        break;
    case KP_BG_SWITCHED:
        rc = delete_indices(w, true);
        break;
    case KP_BG_ABORTING:
    case KP_BG_ROLLED_BACK:
        rc = delete_indices(w, false);
        break;
    default:
        break;
    }
    w->ok = rc == 0;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static bool job_stopped(kp_jm_t *jm, const char *id)
{
    kp_jm_job_t *job = *id ? kp_registry_find(jm, id) : NULL;
    return !job || kp_job_state_terminal(job->state);
}

/* The next step of record r that needs Elasticsearch, copied into w; false if none is due. */
static bool pick(kp_jm_t *jm, kp_bg_rec *r, work *w)
{
    int64_t now = kp_wall_ms();
    if (r->phase == KP_BG_PREPARING && r->mode == KP_BG_ASSIGN && job_stopped(jm, r->job_id)) {
        kp_bg_enter(r, KP_BG_READY, now, "the job ended before its index was ready");
        save();
        return false;
    }
    switch (r->phase) {
    case KP_BG_PREPARING:
    case KP_BG_ROLLING_BACK:
    case KP_BG_ABORTING:
        if (r->phase == KP_BG_ABORTING && !job_stopped(jm, r->job_id))
            return false;
        break;
    case KP_BG_SWITCHING:
        if (r->mode == KP_BG_BLUEGREEN && !r->v2_synced && !sync_v2(jm, r))
            return false;
        if (r->old_via_alias && !job_stopped(jm, r->v1_id)) {
            /* v1 writes through the alias: it must stop before the alias moves */
            cancel_v1(jm, r,
                      "blue/green: v1 writes through the alias, so it stops before the switch");
            return false;
        }
        break;
    case KP_BG_SWITCHED:
        if (now < r->delete_at_ms || !job_stopped(jm, r->v1_id))
            return false;
        break;
    case KP_BG_ROLLED_BACK:
        if (r->new_deleted || !job_stopped(jm, r->job_id))
            return false;
        break;
    default:
        return false;
    }
    memset(w, 0, sizeof *w);
    snprintf(w->job_id, sizeof w->job_id, "%s", r->job_id);
    w->phase = r->phase;
    w->mode = r->mode;
    memcpy(w->sinks, r->sinks, sizeof w->sinks);
    w->nsinks = r->nsinks;
    for (int k = 0; k < r->nsinks; k++)
        w->min_next[k] = next_known_version(r->sinks[k].alias);
    w->old_bytes = w->new_bytes = w->old_docs = w->new_docs = -1;
    kp_jm_job_t *job = kp_registry_find(jm, r->job_id);
    const char *body = job ? conf_get(job, "es.index_body") : NULL;
    snprintf(w->body, sizeof w->body, "%s", body ? body : "");
    return true;
}

/* The step is done (or failed): the record moves on. */
static void apply(kp_jm_t *jm, kp_bg_rec *r, work *w)
{
    int64_t now = kp_wall_ms();
    char msg[1400];
    if (!w->ok && w->phase == KP_BG_PREPARING && w->permanent) {
        /* a mapping the node refuses, credentials it rejects: the job fails, saying why */
        kp_jm_job_t *job = kp_registry_find(jm, r->job_id);
        snprintf(msg, sizeof msg, "cannot prepare the Elasticsearch index for es:%.200s: %.900s",
                 r->sinks[0].alias, w->err);
        kp_jm_log("blue/green (job %s): %s", r->job_id, msg);
        snprintf(r->error, sizeof r->error, "%.500s", w->err);
        if (job && !kp_job_state_terminal(job->state) && !job->deployed) {
            job->waiting_reason[0] = 0;
            kp_job_transition(jm, job, KP_JOB_FAILED, msg);
        }
        if (r->mode == KP_BG_ASSIGN)
            kp_bg_enter(r, KP_BG_READY, now, msg);
        save(); /* a blue/green one is aborted by the observation of the FAILED v2 */
        return;
    }
    if (!w->ok) {
        if (strcmp(r->error, w->err))
            kp_jm_log("blue/green (job %s, %s): %s; retrying", r->job_id,
                      kp_bg_phase_name(r->phase), w->err);
        snprintf(r->error, sizeof r->error, "%.500s", w->err);
        save();
        return;
    }
    r->error[0] = 0;
    kp_jm_job_t *job = kp_registry_find(jm, r->job_id);
    switch (w->phase) {
    case KP_BG_PREPARING:
        memcpy(r->sinks, w->sinks, sizeof r->sinks);
        r->old_via_alias |= w->migrated_old;
        if (job)
            pin_indices(job, r);
        kp_registry_save(jm);
        snprintf(msg, sizeof msg, "es:%s: job %s writes %s%s%s", r->sinks[0].alias, r->job_id,
                 r->sinks[0].new_index, r->mode == KP_BG_BLUEGREEN ? ", v1 keeps " : "",
                 r->mode == KP_BG_BLUEGREEN ? r->sinks[0].old_index : "");
        kp_bg_enter(r, r->mode == KP_BG_BLUEGREEN ? KP_BG_CATCHING_UP : KP_BG_READY, now, msg);
        kp_jm_wake(jm);
        break;
    case KP_BG_SWITCHING:
        r->switched_ms = now;
        r->delete_at_ms = now + r->p.keep_old_ms;
        r->old_bytes = w->old_bytes, r->new_bytes = w->new_bytes;
        r->old_docs = w->old_docs, r->new_docs = w->new_docs;
        snprintf(msg, sizeof msg,
                 "alias es:%s moved to %s, %lld ms after caught up; v1's index %s kept for %lld ms",
                 r->sinks[0].alias, r->sinks[0].new_index, (long long)(now - r->caught_up_ms),
                 r->sinks[0].old_index, (long long)r->p.keep_old_ms);
        char how[512], why[160];
        snprintf(why, sizeof why, "replaced by job %s (blue/green switch)", r->job_id);
        stop_v1(jm, r, why, how, sizeof how);
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "; %s", how);
        kp_bg_enter(r, KP_BG_SWITCHED, now, msg);
        kp_jm_log("blue/green: %s", msg);
        save();
        if (*r->sp_rid) /* the request only in this process: a restart must make it again */
            kp_failpoint("bluegreen.after_v1_savepoint_request");
        break;
    case KP_BG_SWITCHED:
        snprintf(msg, sizeof msg, "v1's index %s deleted", r->sinks[0].old_index);
        kp_bg_enter(r, KP_BG_DONE, now, msg);
        break;
    case KP_BG_ABORTING:
        snprintf(msg, sizeof msg, "half-built index %s deleted; es:%s untouched",
                 r->sinks[0].new_index, r->sinks[0].alias);
        kp_bg_enter(r, KP_BG_ABORTED, now, msg);
        kp_jm_log("blue/green: %s", msg);
        break;
    case KP_BG_ROLLING_BACK: {
        char err[512] = "";
        kp_jm_job_t *v2 = job;
        if (v2 && !kp_job_state_terminal(v2->state))
            kp_life_cancel(jm, v2, "rolled back: the alias is on v1's index again");
        int rc = r->v1r_id[0] ? 0 : restart_v1(jm, r, err, sizeof err);
        snprintf(msg, sizeof msg, "alias es:%s back on %s; v1 again as job %s%s%s, from %.200s",
                 r->sinks[0].alias, r->sinks[0].old_index, rc ? "(none)" : r->v1r_id,
                 rc ? ": " : "", err,
                 *r->sp_path ? r->sp_path : "its original start position (no savepoint)");
        kp_bg_enter(r, KP_BG_ROLLED_BACK, now, msg);
        kp_jm_log("blue/green: %s", msg);
        break;
    }
    case KP_BG_ROLLED_BACK:
        r->new_deleted = true;
        snprintf(msg, sizeof msg, "v2's index %s deleted", r->sinks[0].new_index);
        kp_bg_enter(r, KP_BG_ROLLED_BACK, now, msg);
        break;
    default:
        break;
    }
    save();
}

static void *run(void *arg)
{
    kp_jm_t *jm = arg;
    pthread_mutex_lock(&jm->lock);
    while (!bg.stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&bg.cond, &jm->lock, &ts);
        if (bg.stop)
            break;
        bool changed = prune(jm);
        for (size_t i = 0; i < bg.n; i++) {
            kp_bg_rec *r = &bg.recs[i];
            if (kp_bg_phase_final(r->phase) || r->mode != KP_BG_BLUEGREEN)
                continue;
            kp_bg_obs o;
            observe(jm, r, &o);
            if (r->phase == KP_BG_CATCHING_UP)
                kp_bg_estimate(r, &o);
            if (r->phase == KP_BG_SWITCHED && r->sp_rid[0])
                follow_savepoint(jm, r);
            kp_bg_phase was = r->phase;
            changed |= kp_bg_observe(r, &o);
            kp_jm_job_t *v2 = kp_registry_find(jm, r->job_id);
            if (r->phase == KP_BG_SWITCHING && was != KP_BG_SWITCHING)
                r->sync_attempt = v2 ? (int64_t)v2->attempt : -1; /* the one caught up */
        }
        if (changed)
            save();
        static work w; /* only this thread uses it */
        for (size_t i = 0; i < bg.n; i++) {
            if (kp_bg_phase_final(bg.recs[i].phase) || !pick(jm, &bg.recs[i], &w))
                continue;
            pthread_mutex_unlock(&jm->lock);
            do_work(&w);
            pthread_mutex_lock(&jm->lock);
            kp_bg_rec *r = find_rec(w.job_id); /* recs may have moved */
            if (r && r->phase == w.phase)
                apply(jm, r, &w);
            else if (r && w.phase == KP_BG_PREPARING) /* aborted meanwhile: what to delete */
                memcpy(r->sinks, w.sinks, sizeof r->sinks), save();
            break;
        }
    }
    pthread_mutex_unlock(&jm->lock);
    return NULL;
}

int kp_bg_start(kp_jm_t *jm, char *err, size_t errlen)
{
    bg.jm = jm;
    if (load(jm, err, errlen) != 0)
        return -1;
    pthread_cond_init(&bg.cond, NULL);
    if (pthread_create(&bg.thread, NULL, run, jm) != 0) {
        snprintf(err, errlen, "cannot start the blue/green thread");
        return -1;
    }
    bg.running = true;
    return 0;
}

void kp_bg_stop(void)
{
    if (!bg.running)
        return;
    pthread_mutex_lock(&bg.jm->lock);
    bg.stop = 1;
    pthread_cond_signal(&bg.cond);
    pthread_mutex_unlock(&bg.jm->lock);
    pthread_join(bg.thread, NULL);
    bg.running = false;
    for (size_t i = 0; i < bg.n; i++)
        json_decref(bg.recs[i].transitions);
    free(bg.recs);
    bg.recs = NULL;
    bg.n = bg.cap = 0;
}

/* ---- REST ------------------------------------------------------------------------------------- */

static json_t *version_json(kp_jm_t *jm, const char *id)
{
    kp_jm_job_t *job = *id ? kp_registry_find(jm, id) : NULL;
    if (!job)
        return json_null();
    kp_job_state st;
    bool seen;
    uint64_t in;
    int64_t wm;
    uint64_t lag;
    observe_job(job, &st, &seen, &in, &wm);
    bool lag_known = kafka_lag(job, &lag);
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "id", job->id, "name", job->name, "state",
                     kp_job_state_name(job->state), "records_in",
                     seen ? json_integer((json_int_t)in) : json_null(), "watermark_ms",
                     seen ? json_integer(wm) : json_null(), "kafka_lag",
                     lag_known ? json_integer((json_int_t)lag) : json_null());
}

/* The id of v2's checkpoint before the switch (r->sync_rid), 0 when none is pending or it is
 * not triggered yet (savepoints.c: another checkpoint in flight). */
static int64_t pending_checkpoint(kp_jm_t *jm, const kp_bg_rec *r)
{
    kp_jm_job_t *v2 = *r->sync_rid ? kp_registry_find(jm, r->job_id) : NULL;
    json_t *st = v2 ? kp_jm_savepoint_status(jm, v2, r->sync_rid) : NULL;
    int64_t id = (int64_t)json_integer_value(json_object_get(st, "checkpoint"));
    json_decref(st);
    return id;
}

json_t *kp_bg_job_json(kp_jm_t *jm, const kp_jm_job_t *job)
{
    for (size_t i = bg.n; i-- > 0;) {
        kp_bg_rec *r = &bg.recs[i];
        if (strcmp(r->job_id, job->id) && strcmp(r->v1_id, job->id) && strcmp(r->v1r_id, job->id))
            continue;
        json_t *o = kp_bg_rec_json(r);
        json_object_set_new(o, "role",
                            json_string(!strcmp(r->job_id, job->id)  ? "v2"
                                        : !strcmp(r->v1_id, job->id) ? "v1"
                                                                     : "v1 (rollback)"));
        if (r->mode == KP_BG_BLUEGREEN) {
            json_object_set_new(o, "v1", version_json(jm, r->v1_id));
            json_object_set_new(o, "v2", version_json(jm, r->job_id));
            json_object_set_new(o, "eta_ms",
                                r->eta_ms >= 0 && r->phase == KP_BG_CATCHING_UP
                                    ? json_integer(r->eta_ms)
                                    : json_null());
            int64_t ckpt = pending_checkpoint(jm, r);
            json_object_set_new(o, "v2_checkpoint", ckpt > 0 ? json_integer(ckpt) : json_null());
            json_object_set_new(o, "step", kp_bg_step_json(r, ckpt));
        }
        return o;
    }
    return NULL;
}

int kp_bg_rollback(kp_jm_t *jm, kp_jm_job_t *job, char *err, size_t errlen)
{
    for (size_t i = bg.n; i-- > 0;) {
        kp_bg_rec *r = &bg.recs[i];
        if (r->mode != KP_BG_BLUEGREEN || (strcmp(r->job_id, job->id) && strcmp(r->v1_id, job->id)))
            continue;
        if (r->phase != KP_BG_SWITCHED) {
            snprintf(err, errlen,
                     "no rollback: the blue/green of job %s is %s (a rollback needs it SWITCHED, "
                     "with v1's index still kept)",
                     r->job_id, kp_bg_phase_name(r->phase));
            return -1;
        }
        for (int k = 0; k < r->nsinks; k++)
            if (!*r->sinks[k].old_index) {
                snprintf(err, errlen, "no rollback: v1 had no index of its own behind es:%s",
                         r->sinks[k].alias);
                return -1;
            }
        kp_bg_enter(r, KP_BG_ROLLING_BACK, kp_wall_ms(), "kappa rollback");
        save();
        pthread_cond_signal(&bg.cond);
        return 0;
    }
    snprintf(err, errlen, "no rollback: job %s took part in no blue/green reprocessing", job->id);
    return -1;
}
