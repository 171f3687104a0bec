/* Savepoint requests on the jobmanager (savepoints.h): REST's POST /jobs/:id/savepoints and
 * `kappa savepoint`/`kappa stop --savepoint` make a request; the control loop triggers it at the
 * job's coordinator as soon as no other checkpoint is in flight (kp_ckpt_coord_trigger_savepoint),
 * follows it in the coordinator's statistics (the checkpoint completes, then its copy into the
 * target directory) and, for a stop, cancels the job once the savepoint is on disk. Also the two
 * checks a deploy makes about savepoints: a --replace --from-savepoint-of-old handover, and the
 * uids of a restore against the job's graph (--allow-non-restored-state).
 * @locks jm->lock held by every caller */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <dirent.h>

#include "checkpoint_coord.h"
#include "checkpoint_stats.h"
#include "checkpoint_store.h"
#include "frame.h"
#include "savepoints.h"

#define REQUESTS_MAX 256 /* kept per jobmanager; the oldest ended ones go first */

typedef enum sp_state { SP_WAITING, SP_TRIGGERED, SP_COMPLETED, SP_FAILED } sp_state;

typedef struct sp_req {
    char rid[KP_JM_ID_LEN], job_id[KP_JM_ID_LEN];
    uint32_t attempt; /* of the triggered checkpoint */
    int64_t ckpt;     /* 0 while waiting */
    char dir[4096];
    bool cancel, drain;
    bool checkpoint; /* a plain checkpoint on demand (blue/green's sync): no copy, no dir */
    sp_state state;
    char failure[600];
} sp_req;

static sp_req *reqs[REQUESTS_MAX];
static size_t nreqs;

static sp_req *find(const char *job_id, const char *rid)
{
    for (size_t i = 0; i < nreqs; i++)
        if (!strcmp(reqs[i]->job_id, job_id) && (!rid || !strcmp(reqs[i]->rid, rid)))
            return reqs[i];
    return NULL;
}

/* A slot for a new request: the table grows, or its oldest ended request goes. */
static sp_req *add(void)
{
    if (nreqs == REQUESTS_MAX) {
        size_t i = 0;
        while (i < nreqs && reqs[i]->state < SP_COMPLETED)
            i++;
        if (i == nreqs)
            return NULL;
        free(reqs[i]);
        memmove(reqs + i, reqs + i + 1, (nreqs - i - 1) * sizeof *reqs);
        nreqs--;
    }
    sp_req *r = calloc(1, sizeof *r);
    if (r)
        reqs[nreqs++] = r;
    return r;
}

static void random_hex(char out[KP_JM_ID_LEN])
{
    unsigned char b[16] = {0};
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) /* never for 16 bytes; still unique: */
        snprintf((char *)b, sizeof b, "%llx", (unsigned long long)kp_mono_ms());
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* A target directory the copy can fill: absolute, and missing or empty. */
static bool dir_usable(const char *dir, char *err, size_t errlen)
{
    if (dir[0] != '/' || strstr(dir, "/../") || strlen(dir) > 3000) {
        snprintf(err, errlen, "target-directory must be an absolute path without '..', got '%s'",
                 dir);
        return false;
    }
    DIR *d = opendir(dir);
    if (!d)
        return true; /* created by the copy; one it cannot create fails the savepoint */
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)))
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    if (!empty)
        snprintf(err, errlen, "target-directory %s exists and is not empty", dir);
    return empty;
}

static void set_failed(sp_req *r, const char *why)
{
    r->state = SP_FAILED;
    snprintf(r->failure, sizeof r->failure, "%s", why);
}

/* Triggers a waiting request at the job's coordinator when it can take one now. */
static void trigger(kp_jm_t *jm, kp_jm_job_t *job, sp_req *r)
{
    char err[256];
    kp_ckpt_coord *coord = kp_jm_ckpt_coord_now(jm, job, err, sizeof err);
    if (!coord)
        return; /* not running (yet, or again): the request waits */
    kp_time now = kp_wall_ms();
    int64_t id = r->checkpoint ? kp_ckpt_coord_trigger_now(coord, now)
                               : kp_ckpt_coord_trigger_savepoint(coord, now, r->dir);
    if (id <= 0)
        return; /* max concurrent checkpoints in flight: the next round */
    r->ckpt = id;
    r->attempt = job->attempt;
    r->state = SP_TRIGGERED;
    if (r->drain)
        kp_control_send_drain(jm, job, id, now);
    else
        kp_control_send_ckpt(jm, job, KP_FRAME_TRIGGER_CHECKPOINT, id, now, NULL);
    kp_jm_log("job %s (%s): %s %lld triggered%s%s%s", job->id, job->name,
              r->checkpoint ? "checkpoint (on demand)" : "savepoint", (long long)id,
              r->checkpoint ? "" : " into ", r->dir,
              r->drain    ? " after the sources drained (then the job finishes)"
              : r->cancel ? " (then the job stops)"
                          : "");
}

/* A triggered request as the coordinator's statistics show it. */
static void follow(kp_jm_t *jm, kp_jm_job_t *job, sp_req *r)
{
    const kp_ckpt_history *h = kp_jm_ckpt_history(job);
    const kp_ckpt_stats *s =
        h && job->attempt == r->attempt ? kp_ckpt_history_find(h, r->ckpt) : NULL;
    if (!s) {
        set_failed(r, "the job restarted before the savepoint completed");
    } else if (s->status == KP_CKPT_FAILED) {
        char why[600];
        snprintf(why, sizeof why, "checkpoint %lld failed: %s", (long long)r->ckpt,
                 s->failure ? s->failure : "unknown");
        set_failed(r, why);
    } else if (s->status == KP_CKPT_COMPLETED && s->failure) { /* the copy did not work */
        set_failed(r, s->failure);
    } else if (s->status == KP_CKPT_COMPLETED) {
        r->state = SP_COMPLETED;
        if (r->checkpoint)
            snprintf(r->dir, sizeof r->dir, "%s", s->path ? s->path : "");
        kp_jm_log("job %s (%s): %s %lld complete: %s", job->id, job->name,
                  r->checkpoint ? "checkpoint (on demand)" : "savepoint", (long long)r->ckpt,
                  r->dir);
        if (r->cancel && !r->drain) { /* drained: its sources end, the job finishes */
            char msg[4200];
            snprintf(msg, sizeof msg, "stopped with a savepoint at %s", r->dir);
            kp_life_cancel(jm, job, msg);
        }
        return;
    }
    if (r->state == SP_FAILED)
        kp_jm_log("job %s (%s): savepoint into %s failed: %s", job->id, job->name, r->dir,
                  r->failure);
}

void kp_jm_savepoints_step(kp_jm_t *jm, kp_jm_job_t *job)
{
    for (size_t i = 0; i < nreqs; i++) {
        sp_req *r = reqs[i];
        if (strcmp(r->job_id, job->id))
            continue;
        if (r->state == SP_WAITING)
            trigger(jm, job, r);
        else if (r->state == SP_TRIGGERED)
            follow(jm, job, r);
        if (job->state != KP_JOB_RUNNING)
            return; /* a stop cancelled it */
    }
}

static int request(kp_jm_t *jm, kp_jm_job_t *job, const char *dir, bool cancel, bool drain,
                   bool checkpoint, char rid[KP_JM_ID_LEN], unsigned *http, char *err,
                   size_t errlen)
{
    *http = 400;
    if (kp_job_state_terminal(job->state) || job->state == KP_JOB_CANCELLING) {
        *http = 409;
        snprintf(err, errlen, "job %s is %s: no savepoint", job->name,
                 kp_job_state_name(job->state));
        return -1;
    }
    sp_req *r = add();
    if (!r) {
        *http = 503;
        snprintf(err, errlen, "%d savepoints are in progress: try again later", REQUESTS_MAX);
        return -1;
    }
    random_hex(r->rid);
    if (checkpoint)
        r->dir[0] = 0;
    else if (*dir)
        snprintf(r->dir, sizeof r->dir, "%s", dir);
    else
        kp_jm_savepoint_default_dir(jm, job, r->rid, r->dir, sizeof r->dir);
    if (!checkpoint && !dir_usable(r->dir, err, errlen)) {
        nreqs--;
        free(r);
        return -1;
    }
    snprintf(r->job_id, sizeof r->job_id, "%s", job->id);
    r->cancel = cancel || drain;
    r->drain = drain;
    r->checkpoint = checkpoint;
    r->state = SP_WAITING;
    memcpy(rid, r->rid, KP_JM_ID_LEN);
    kp_jm_wake(jm); /* triggered by the control thread's next round */
    return 0;
}

void kp_jm_savepoint_default_dir(const kp_jm_t *jm, const kp_jm_job_t *job, const char *rid,
                                 char *out, size_t len)
{
    snprintf(out, len, "%.3000s/savepoints/%s-%.12s",
             job->ckpt.dir ? job->ckpt.dir : jm->cfg.ckpt_dir, job->name, rid);
}

int kp_jm_savepoint_request(kp_jm_t *jm, kp_jm_job_t *job, const char *dir, bool cancel,
                            char rid[KP_JM_ID_LEN], unsigned *http, char *err, size_t errlen)
{
    return request(jm, job, dir, cancel, false, false, rid, http, err, errlen);
}

int kp_jm_checkpoint_request(kp_jm_t *jm, kp_jm_job_t *job, char rid[KP_JM_ID_LEN], unsigned *http,
                             char *err, size_t errlen)
{
    return request(jm, job, "", false, false, true, rid, http, err, errlen);
}

int kp_jm_savepoint_drain(kp_jm_t *jm, kp_jm_job_t *job, const char *dir, char rid[KP_JM_ID_LEN],
                          unsigned *http, char *err, size_t errlen)
{
    return request(jm, job, dir, true, true, false, rid, http, err, errlen);
}

json_t *kp_jm_savepoint_status(kp_jm_t *jm, const kp_jm_job_t *job, const char *rid)
{
    (void)jm;
    sp_req *r = find(job->id, rid);
    if (!r)
        return NULL;
    char why[160]; /* the control loop follows running jobs only: an ended job ends its requests */
    if (r->state < SP_COMPLETED && kp_job_state_terminal(job->state)) {
        snprintf(why, sizeof why, "the job ended %s before the savepoint completed",
                 kp_job_state_name(job->state));
        set_failed(r, why);
    } else if (r->state == SP_TRIGGERED && job->attempt != r->attempt) {
        set_failed(r, "the job restarted before the savepoint completed");
    }
    json_t *op = r->state == SP_COMPLETED ? json_pack("{s:s}", "location", r->dir)
                 : r->state == SP_FAILED  ? json_pack("{s:{s:s, s:s}}", "failure-cause", "class",
                                                      "SavepointFailed", "stack-trace", r->failure)
                                          : json_null();
    return json_pack("{s:{s:s}, s:o, s:I, s:b, s:b, s:s}", "status", "id",
                     r->state >= SP_COMPLETED ? "COMPLETED" : "IN_PROGRESS", "operation", op,
                     "checkpoint", (json_int_t)r->ckpt, "cancel-job", r->cancel, "drain", r->drain,
                     "target-directory", r->dir);
}

/* ---- deploys ---- */

bool kp_jm_savepoint_handover_wait(kp_jm_t *jm, kp_jm_job_t *job)
{
    if (job->attempt != 0 || job->restore_path[0] || !job->replaces[0] ||
        !json_is_true(json_object_get(job->manifest, "from_savepoint_of_old")))
        return false;
    kp_jm_job_t *old = kp_registry_find(jm, job->replaces);
    sp_req *r = NULL; /* the request this job made: its rid is this job's id */
    for (size_t i = 0; !r && old && i < nreqs; i++)
        if (!strcmp(reqs[i]->job_id, old->id) && !strcmp(reqs[i]->rid, job->id))
            r = reqs[i];
    char err[1300];
    unsigned http;
    if (!r) {
        if (!old || kp_job_state_terminal(old->state)) {
            snprintf(err, sizeof err,
                     "--from-savepoint-of-old: job %s, which it replaces, is not running",
                     job->replaces);
            kp_job_transition(jm, job, KP_JOB_FAILED, err);
            return true;
        }
        char rid[KP_JM_ID_LEN];
        if (kp_jm_savepoint_request(jm, old, "", true, rid, &http, err, sizeof err) != 0) {
            kp_job_transition(jm, job, KP_JOB_FAILED, err);
            return true;
        }
        if (!(r = find(old->id, rid)))
            return true;
        snprintf(r->rid, sizeof r->rid, "%s", job->id); /* found again by this job's id */
    }
    if (r->state == SP_FAILED) {
        snprintf(err, sizeof err, "the savepoint of job %s, which it replaces, failed: %s",
                 old ? old->id : job->replaces, r->failure);
        kp_job_transition(jm, job, KP_JOB_FAILED, err);
        return true;
    }
    if (r->state != SP_COMPLETED || (old && !kp_job_state_terminal(old->state))) {
        snprintf(job->waiting_reason, sizeof job->waiting_reason,
                 "waiting for job %s, which it replaces, to stop with a savepoint", job->replaces);
        return true;
    }
    snprintf(job->restore_path, sizeof job->restore_path, "%.4000s/_metadata", r->dir);
    kp_jm_log("job %s (%s): restores the savepoint of job %s: %s", job->id, job->name,
              job->replaces, r->dir);
    return false;
}

/* Whether the graph (the manifest's) has a node with that uid. */
static bool graph_has_uid(json_t *graph, const char *uid)
{
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(graph, "nodes"), i, n)
    {
        const char *u = json_string_value(json_object_get(n, "uid"));
        if (u && !strcmp(u, uid))
            return true;
    }
    return false;
}

bool kp_jm_restore_refused(kp_jm_t *jm, kp_jm_job_t *job)
{
    if (job->attempt != 0 || !job->restore_path[0])
        return false;
    char err[700], msg[2000];
    kp_restore *r = kp_restore_open(job->restore_path, err, sizeof err);
    if (!r) {
        snprintf(msg, sizeof msg, "cannot restore %.600s: %s", job->restore_path, err);
        kp_job_transition(jm, job, KP_JOB_FAILED, msg);
        return true;
    }
    const char *uids[256];
    int n = kp_restore_uids(r, uids, 256);
    json_t *graph = json_object_get(job->manifest, "graph");
    size_t len = 0;
    int unmatched = 0;
    for (int i = 0; i < n && i < 256; i++)
        if (!graph_has_uid(graph, uids[i]) && len < sizeof err - 200)
            len += (size_t)snprintf(err + len, sizeof err - len, "%s'%s'", unmatched++ ? ", " : "",
                                    uids[i]);
    bool allow = json_is_true(json_object_get(job->manifest, "allow_non_restored_state"));
    if (unmatched && allow)
        kp_jm_log("job %s (%s): state of %s in %s not restored (allow_non_restored_state)", job->id,
                  job->name, err, job->restore_path);
    else if (unmatched)
        snprintf(msg, sizeof msg,
                 "cannot restore %.600s: it has state for operator uid%s %s that the job does not "
                 "have (removed or renamed operators); submit with --allow-non-restored-state to "
                 "drop that state",
                 job->restore_path, unmatched > 1 ? "s" : "", err);
    kp_restore_free(r);
    if (!unmatched || allow)
        return false;
    kp_job_transition(jm, job, KP_JOB_FAILED, msg);
    return true;
}
