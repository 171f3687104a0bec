/* The job registry: every job the jobmanager was given, its state, the transitions with the
 * exceptions that caused them, and its persistence in --state-dir/jobs.json so the job list
 * survives a jobmanager restart. The file is rewritten whole on each transition (a handful per
 * job) through a temporary file, fsync and rename, so a crash leaves the old or the new list,
 * never half of one. A restarted jobmanager recovers what ran: such jobs are deployed again
 * (a new attempt) from their latest completed checkpoint, or from their start position. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jm.h"

static const char *const state_names[KP_JOB_STATE_N_] = {
    "CREATED", "RUNNING", "FAILING", "RESTARTING", "CANCELLING", "CANCELED", "FAILED", "FINISHED",
};

const char *kp_job_state_name(kp_job_state s)
{
    return (unsigned)s < KP_JOB_STATE_N_ ? state_names[s] : "UNKNOWN";
}

bool kp_job_state_terminal(kp_job_state s)
{
    return s == KP_JOB_CANCELED || s == KP_JOB_FAILED || s == KP_JOB_FINISHED;
}

const char *kp_sub_state_name(kp_sub_state s)
{
    static const char *const names[] = {"SCHEDULED", "DEPLOYING", "RUNNING", "FINISHED",
                                        "CANCELED",  "FAILED",    "LOST"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "UNKNOWN";
}

static int state_from_name(const char *name)
{
    for (int s = 0; s < KP_JOB_STATE_N_; s++)
        if (name && !strcmp(name, state_names[s]))
            return s;
    return -1;
}

void kp_job_free(kp_jm_job_t *job)
{
    if (!job)
        return;
    json_decref(job->manifest);
    json_decref(job->exceptions);
    kp_jm_ckpt_free(job->ckpt_state);
    free(job->tasks);
    free(job->subs);
    free(job);
}

const kp_jm_task_t *kp_job_task(const kp_jm_job_t *job, int task_id)
{
    for (size_t t = 0; t < job->ntasks; t++)
        if (job->tasks[t].id == task_id)
            return &job->tasks[t];
    return &job->tasks[0];
}

int kp_registry_add(kp_jm_t *jm, kp_jm_job_t *job)
{
    if (jm->njobs == jm->jobs_cap) {
        size_t cap = jm->jobs_cap ? jm->jobs_cap * 2 : 16;
        kp_jm_job_t **jobs = realloc(jm->jobs, cap * sizeof *jobs);
        if (!jobs)
            return -1;
        jm->jobs = jobs;
        jm->jobs_cap = cap;
    }
    jm->jobs[jm->njobs++] = job;
    return 0;
}

kp_jm_job_t *kp_registry_find(kp_jm_t *jm, const char *id_or_name)
{
    kp_jm_job_t *newest = NULL;
    for (size_t i = 0; i < jm->njobs; i++)
        if (!strcmp(jm->jobs[i]->id, id_or_name))
            return jm->jobs[i];
    for (size_t i = jm->njobs; i-- > 0;) {
        kp_jm_job_t *job = jm->jobs[i];
        if (strcmp(job->name, id_or_name))
            continue;
        if (!kp_job_state_terminal(job->state))
            return job;
        if (!newest)
            newest = job;
    }
    return newest;
}

void kp_job_transition(kp_jm_t *jm, kp_jm_job_t *job, kp_job_state to, const char *message)
{
    kp_time now = kp_wall_ms();
    kp_jm_log("job %s (%s): %s -> %s%s%s", job->id, job->name, kp_job_state_name(job->state),
              kp_job_state_name(to), message ? ": " : "", message ? message : "");
    if (message && json_array_size(job->exceptions) >= KP_JM_EXCEPTIONS_MAX)
        json_array_remove(job->exceptions, 0); /* the oldest goes: the list stays bounded */
    if (message)
        json_array_append_new(job->exceptions,
                              json_pack("{s:I,s:s,s:s,s:s}", "time", (json_int_t)now, "from",
                                        kp_job_state_name(job->state), "to", kp_job_state_name(to),
                                        "message", message));
    if (job->state == KP_JOB_RUNNING && to != KP_JOB_RUNNING)
        kp_jm_ckpt_stopped(jm, job, message ? message : kp_job_state_name(to));
    job->state = to;
    job->timestamps[to] = now;
    if (to == KP_JOB_RUNNING)
        kp_jm_ckpt_running(jm, job);
    if (kp_job_state_terminal(to)) {
        job->end_time = now;
        kp_jm_ckpt_ended(jm, job);
    }
    kp_registry_save(jm);
}

static json_t *timestamps_json(const kp_jm_job_t *job)
{
    json_t *ts = json_object();
    for (int s = 0; s < KP_JOB_STATE_N_; s++)
        if (job->timestamps[s])
            json_object_set_new(ts, state_names[s], json_integer(job->timestamps[s]));
    return ts;
}

static json_t *tasks_json(const kp_jm_t *jm, const kp_jm_job_t *job)
{
    json_t *tasks = json_array();
    const kp_jm_sub_t *sub = job->subs;
    for (size_t t = 0; t < job->ntasks; t++) {
        json_t *subs = json_array();
        for (uint32_t i = 0; i < job->tasks[t].parallelism; i++, sub++) {
            const kp_jm_tm_t *tm = sub->tm >= 0 ? &jm->tms[sub->tm] : NULL;
            json_t *metrics =
                sub->has_metrics
                    ? json_pack("{s:I,s:I,s:I}", "records_in", (json_int_t)sub->records_in,
                                "records_out", (json_int_t)sub->records_out, "watermark_ms",
                                (json_int_t)sub->watermark_ms)
                    : json_null();
            json_array_append_new(
                subs, json_pack("{s:i,s:o,s:o,s:s,s:o}", "subtask", (int)sub->subtask,
                                "taskmanager", tm ? json_string(tm->id) : json_null(),
                                "data_address", tm ? json_string(tm->data_address) : json_null(),
                                "state", kp_sub_state_name(sub->state), "metrics", metrics));
        }
        json_array_append_new(tasks, json_pack("{s:i,s:s,s:i,s:o}", "id", job->tasks[t].id, "name",
                                               job->tasks[t].name, "parallelism",
                                               (int)job->tasks[t].parallelism, "subtasks", subs));
    }
    return tasks;
}

json_t *kp_job_json(const kp_jm_t *jm, const kp_jm_job_t *job, bool detail)
{
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:i}", "jid", job->id, "name", job->name, "state",
                  kp_job_state_name(job->state), "start-time", (json_int_t)job->start_time,
                  "end-time", (json_int_t)(kp_job_state_terminal(job->state) ? job->end_time : -1),
                  "parallelism", (int)job->slots, "attempt", (int)job->attempt);
    if (!detail)
        return o;
    json_object_set_new(o, "plugin_sha256", json_string(job->plugin_sha256));
    json_object_set_new(o, "graph_hash", json_string(job->graph_hash));
    json_object_set_new(o, "tasks", tasks_json(jm, job));
    json_object_set(o, "exceptions", job->exceptions);
    json_object_set_new(o, "timestamps", timestamps_json(job));
    json_object_set_new(o, "waiting_reason",
                        job->waiting_reason[0] ? json_string(job->waiting_reason) : json_null());
    json_object_set_new(o, "replaces", job->replaces[0] ? json_string(job->replaces) : json_null());
    static const char *const kinds[] = {"fixed-delay", "exponential-delay", "none"};
    json_object_set_new(o, "restart-strategy",
                        json_pack("{s:s,s:i,s:i,s:i}", "kind", kinds[job->restart.kind], "attempts",
                                  (int)job->restart.attempts, "delay-ms",
                                  (int)job->restart.delay_ms, "max-delay-ms",
                                  (int)job->restart.max_delay_ms));
    return o;
}

/* --- persistence --- */

static json_t *job_record(const kp_jm_job_t *job)
{
    return json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:I,s:O,s:O,s:o,s:s,s:s}", "id", job->id, "name",
                     job->name, "state", kp_job_state_name(job->state), "start_time",
                     (json_int_t)job->start_time, "end_time", (json_int_t)job->end_time, "attempt",
                     (int)job->attempt, "epoch", (json_int_t)job->epoch, "manifest", job->manifest,
                     "exceptions", job->exceptions, "timestamps", timestamps_json(job),
                     "waiting_reason", job->waiting_reason, "replaces", job->replaces);
}

int kp_jm_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void kp_jm_fsync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

/* Writes `text` to dir/name atomically. 0 or -1 (errno kept). */
static int write_atomic(const char *dir, const char *name, const char *text)
{
    char tmp[4096], dst[4096];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (kp_jm_write_all(fd, text, strlen(text)) || fsync(fd)) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    if (rename(tmp, dst)) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    kp_jm_fsync_dir(dir);
    return 0;
}

int kp_registry_save(kp_jm_t *jm)
{
    json_t *jobs = json_array();
    for (size_t i = 0; i < jm->njobs; i++)
        json_array_append_new(jobs, job_record(jm->jobs[i]));
    json_t *root =
        json_pack("{s:i,s:I,s:o}", "version", 1, "epoch", (json_int_t)jm->epoch, "jobs", jobs);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    int rc = text ? write_atomic(jm->cfg.state_dir, "jobs.json", text) : -1;
    if (rc)
        kp_jm_log("cannot save the job list in %s/jobs.json: %s", jm->cfg.state_dir,
                  strerror(errno));
    free(text);
    return rc;
}

/* Rebuilds one job from its record (the manifest is checked again as on submission). */
static kp_jm_job_t *job_from_record(kp_jm_t *jm, json_t *rec, char *err, size_t errlen)
{
    const char *id = json_string_value(json_object_get(rec, "id"));
    int state = state_from_name(json_string_value(json_object_get(rec, "state")));
    json_t *manifest = json_object_get(rec, "manifest");
    if (!id || strlen(id) != 32 || !kp_jm_is_hex(id, 32) || state < 0 || !manifest) {
        snprintf(err, errlen, "a job record without a valid id, state or manifest");
        return NULL;
    }
    char *text = json_dumps(manifest, JSON_COMPACT);
    kp_jm_job_t *job = text ? kp_manifest_parse(&jm->cfg, text, strlen(text), err, errlen) : NULL;
    free(text);
    if (!job)
        return NULL;
    memcpy(job->id, id, sizeof job->id);
    job->state = (kp_job_state)state;
    job->start_time = json_integer_value(json_object_get(rec, "start_time"));
    job->end_time = json_integer_value(json_object_get(rec, "end_time"));
    job->attempt = (uint32_t)json_integer_value(json_object_get(rec, "attempt"));
    job->epoch = (uint64_t)json_integer_value(json_object_get(rec, "epoch"));
    json_t *exc = json_object_get(rec, "exceptions");
    if (json_is_array(exc)) {
        json_decref(job->exceptions);
        job->exceptions = json_incref(exc);
    }
    json_t *ts = json_object_get(rec, "timestamps");
    for (int s = 0; s < KP_JOB_STATE_N_; s++)
        job->timestamps[s] = json_integer_value(json_object_get(ts, state_names[s]));
    const char *reason = json_string_value(json_object_get(rec, "waiting_reason"));
    snprintf(job->waiting_reason, sizeof job->waiting_reason, "%s", reason ? reason : "");
    const char *rep = json_string_value(json_object_get(rec, "replaces"));
    snprintf(job->replaces, sizeof job->replaces, "%s", rep ? rep : "");
    return job;
}

/* A job that was active when the jobmanager stopped (RUNNING, FAILING, RESTARTING) is
 * deployed again as a new attempt, as Flink's HA does: from its latest completed checkpoint
 * (lifecycle.c picks it at the deploy), or from its original start position when there is
 * none. The taskmanagers cancelled the old attempt when their connection broke. */
static void recover(kp_jm_t *jm, kp_jm_job_t *job)
{
    job->attempt++;
    job->restart_at_mono = 0;
    snprintf(job->waiting_reason, sizeof job->waiting_reason,
             "recovering after a jobmanager "
             "restart");
    char msg[128];
    snprintf(msg, sizeof msg, "jobmanager restarted: recovering as attempt %u", job->attempt);
    kp_job_transition(jm, job, KP_JOB_RESTARTING, msg);
}

int kp_registry_load(kp_jm_t *jm, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/jobs.json", jm->cfg.state_dir);
    if (access(path, F_OK) && errno == ENOENT)
        return 0;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *jobs = json_object_get(root, "jobs");
    if (!json_is_array(jobs)) {
        snprintf(err, errlen, "%s: not a kappa job list (%s); move it away to start empty", path,
                 root ? "no jobs array" : jerr.text);
        json_decref(root);
        return -1;
    }
    jm->epoch = (uint64_t)json_integer_value(json_object_get(root, "epoch"));
    size_t i;
    json_t *rec;
    json_array_foreach(jobs, i, rec)
    {
        char why[256];
        kp_jm_job_t *job = job_from_record(jm, rec, why, sizeof why);
        if (!job) {
            kp_jm_log("%s: job record %zu skipped: %s", path, i, why);
            continue;
        }
        if (kp_registry_add(jm, job)) {
            kp_job_free(job);
            break;
        }
        if (job->state == KP_JOB_CANCELLING)
            kp_job_transition(jm, job, KP_JOB_CANCELED, "jobmanager restarted while cancelling");
        else if (!kp_job_state_terminal(job->state) && job->state != KP_JOB_CREATED)
            recover(jm, job);
    }
    json_decref(root);
    return 0;
}
