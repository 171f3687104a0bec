/* The job state machine: what happens to a job on each event (a subtask state report, a lost
 * taskmanager, a cancel request, the clock). States and transitions, as Flink's:
 *
 *   CREATED --slots--> deploy --all subtasks RUNNING--> RUNNING --all FINISHED--> FINISHED
 *   any active --subtask FAILED / taskmanager lost--> FAILING --rest cancelled--> RESTARTING
 *     (attempt+1, a new fencing epoch, the original start position) or FAILED (strategy spent)
 *   any active --cancel--> CANCELLING --all stopped--> CANCELED
 *
 * A state report is only believed from the taskmanager the subtask was placed on and for the
 * current attempt; anything older is ignored, so a slow taskmanager cannot move a restarted
 * job. FAILING and CANCELLING wait for the taskmanagers' acknowledgements at most
 * cancel_timeout_ms, so a silent taskmanager cannot hold a job forever. Everything here runs
 * with jm->lock held. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bluegreen.h"
#include "ckpt_io.h"
#include "jm.h"
#include "savepoints.h"

static bool settled(const kp_jm_t *jm, const kp_jm_sub_t *sub)
{
    if (sub->tm < 0 || !jm->tms[sub->tm].alive)
        return true;
    return sub->state != KP_SUB_DEPLOYING && sub->state != KP_SUB_RUNNING;
}

static bool all_settled(const kp_jm_t *jm, const kp_jm_job_t *job)
{
    for (size_t i = 0; i < job->nsubs; i++)
        if (!settled(jm, &job->subs[i]))
            return false;
    return true;
}

static uint32_t restart_delay(const kp_jm_job_t *job)
{
    const kp_restart_t *r = &job->restart;
    if (r->kind != KP_RESTART_EXPONENTIAL)
        return r->delay_ms;
    uint64_t d = r->delay_ms ? r->delay_ms : 1;
    for (uint32_t i = 1; i < job->attempt && d < r->max_delay_ms; i++)
        d *= 2;
    return (uint32_t)(d > r->max_delay_ms && r->max_delay_ms ? r->max_delay_ms : d);
}

/* FAILING and every subtask stopped: restart or give up. */
static void after_failing(kp_jm_t *jm, kp_jm_job_t *job)
{
    char msg[256];
    kp_sched_release(job);
    if (job->restart.kind == KP_RESTART_NONE || job->attempt >= job->restart.attempts) {
        if (job->restart.kind == KP_RESTART_NONE)
            snprintf(msg, sizeof msg, "not restarted: the restart strategy is none");
        else
            snprintf(msg, sizeof msg, "not restarted: the %s strategy allows %u restart%s",
                     job->restart.kind == KP_RESTART_FIXED ? "fixed-delay" : "exponential-delay",
                     job->restart.attempts, job->restart.attempts == 1 ? "" : "s");
        kp_job_transition(jm, job, KP_JOB_FAILED, msg);
        return;
    }
    job->attempt++;
    uint32_t delay = restart_delay(job);
    job->restart_at_mono = kp_mono_ms() + delay;
    kp_jm_ckpt_pick_restore(jm, job);
    snprintf(msg, sizeof msg, "restart %u of %u in %u ms from %.160s", job->attempt,
             job->restart.attempts, delay,
             job->restore_path[0] ? job->restore_path : "the original start position");
    snprintf(job->waiting_reason, sizeof job->waiting_reason, "restart delay of %u ms", delay);
    kp_job_transition(jm, job, KP_JOB_RESTARTING, msg);
}

void kp_life_fail(kp_jm_t *jm, kp_jm_job_t *job, const char *message)
{
    kp_job_transition(jm, job, KP_JOB_FAILING, message);
    kp_control_send_cancel(jm, job, message);
    job->cancel_deadline_mono = kp_mono_ms() + jm->cfg.cancel_timeout_ms;
    if (all_settled(jm, job))
        after_failing(jm, job);
}

static void became_running(kp_jm_t *jm, kp_jm_job_t *job)
{
    kp_job_transition(jm, job, KP_JOB_RUNNING, NULL);
    if (!job->replaces[0] || kp_bg_defers_cancel(jm, job)) /* blue/green: v1 runs on */
        return;
    kp_jm_job_t *old = kp_registry_find(jm, job->replaces);
    char msg[128];
    snprintf(msg, sizeof msg, "replaced by job %s", job->id);
    if (old && old != job && !kp_job_state_terminal(old->state))
        kp_life_cancel(jm, old, msg);
}

/* Re-reads the subtask states of an active job and moves it on. `why` names the first
 * failure, if any. */
static void check_job(kp_jm_t *jm, kp_jm_job_t *job, const char *why)
{
    if (!job->deployed)
        return;
    if (job->state == KP_JOB_FAILING || job->state == KP_JOB_CANCELLING) {
        if (!all_settled(jm, job))
            return;
        if (job->state == KP_JOB_FAILING)
            after_failing(jm, job);
        else {
            kp_sched_release(job);
            kp_job_transition(jm, job, KP_JOB_CANCELED, NULL);
        }
        return;
    }
    size_t running = 0, finished = 0;
    for (size_t i = 0; i < job->nsubs; i++) {
        kp_sub_state s = job->subs[i].state;
        if (s == KP_SUB_FAILED || s == KP_SUB_LOST || s == KP_SUB_CANCELED) {
            kp_life_fail(jm, job, why ? why : "a subtask stopped unexpectedly");
            return;
        }
        running += s == KP_SUB_RUNNING;
        finished += s == KP_SUB_FINISHED;
    }
    if (finished == job->nsubs) {
        kp_sched_release(job);
        kp_job_transition(jm, job, KP_JOB_FINISHED, NULL);
    } else if (running + finished == job->nsubs && job->state != KP_JOB_RUNNING) {
        became_running(jm, job);
    }
}

/* --replace on a cluster without the slots to run both jobs: a handover cannot happen, so the
 * old job stops first and the new one takes its slots (a stop-and-start; the results converge
 * the same way, with a gap). Only when the old job's slots are what is missing. */
static void make_room_for_replacement(kp_jm_t *jm, kp_jm_job_t *job)
{
    kp_jm_job_t *old = job->replaces[0] ? kp_registry_find(jm, job->replaces) : NULL;
    if (!old || old == job || kp_job_state_terminal(old->state) || !old->deployed)
        return;
    if (old->state != KP_JOB_CANCELLING) {
        uint32_t free_slots = 0;
        for (size_t t = 0; t < jm->ntms; t++)
            free_slots += kp_sched_free_slots(jm, (int)t);
        if (free_slots + old->slots < job->slots)
            return;
        char msg[160];
        snprintf(msg, sizeof msg,
                 "replaced by job %s, which needs the %u slots it holds (%u free besides)", job->id,
                 old->slots, free_slots);
        kp_life_cancel(jm, old, msg);
    }
    snprintf(job->waiting_reason, sizeof job->waiting_reason,
             "waiting for job %s, which it replaces, to release its slots", old->id);
}

static void deploy(kp_jm_t *jm, kp_jm_job_t *job)
{
    if (kp_jm_savepoint_handover_wait(jm, job)) /* --from-savepoint-of-old: the old stops */
        return;
    if (!kp_bg_deploy_ready(jm, job)) /* its Elasticsearch index is being prepared */
        return;
    if (kp_jm_ckpt_restore_wait(jm, job)) /* its latest checkpoint is being searched */
        return;
    if (!kp_sched_place(jm, job)) {
        make_room_for_replacement(jm, job);
        return;
    }
    /* at least the wall clock in seconds, the epoch `kappa run --local` writes with: the
     * sink's versions are (epoch << 32 | seq), so a cluster job must outrank a local run (or a
     * jobmanager with a fresh --state-dir) that wrote the same ids before it */
    uint64_t now = (uint64_t)time(NULL);
    job->epoch = jm->epoch = jm->epoch >= now ? jm->epoch + 1 : now;
    job->deploy_deadline_mono = kp_mono_ms() + jm->cfg.deploy_timeout_ms;
    kp_jm_ckpt_pick_restore(jm, job);
    if (kp_jm_restore_refused(jm, job)) { /* state of operator uids the job does not have */
        kp_sched_release(job);
        return;
    }
    kp_jm_log("job %s (%s): deploying attempt %u, epoch %llu, %zu subtasks in %u slots%s%s",
              job->id, job->name, job->attempt, (unsigned long long)job->epoch, job->nsubs,
              job->slots, job->restore_path[0] ? ", restoring " : "", job->restore_path);
    kp_registry_save(jm);
    kp_control_send_deploy(jm, job);
}

/* Deployed, but not every subtask runs within --deploy-timeout-ms: the first one that does
 * not is named, and the job fails over like for any other failure. */
static void deploy_timed_out(kp_jm_t *jm, kp_jm_job_t *job)
{
    for (size_t i = 0; i < job->nsubs; i++) {
        const kp_jm_sub_t *s = &job->subs[i];
        if (s->state == KP_SUB_RUNNING || s->state == KP_SUB_FINISHED)
            continue;
        char why[512];
        snprintf(why, sizeof why,
                 "task %d subtask %u on taskmanager %s still %s %u ms after the deploy", s->task_id,
                 s->subtask, s->tm >= 0 ? jm->tms[s->tm].id : "(none)", kp_sub_state_name(s->state),
                 jm->cfg.deploy_timeout_ms);
        kp_life_fail(jm, job, why);
        return;
    }
}

void kp_life_step(kp_jm_t *jm)
{
    kp_time now = kp_mono_ms();
    kp_ckpt_io_drain(jm); /* finished checkpoint I/O */
    for (size_t j = 0; j < jm->njobs; j++) {
        kp_jm_job_t *job = jm->jobs[j];
        switch (job->state) {
        case KP_JOB_CREATED:
        case KP_JOB_RESTARTING:
            if (job->deployed && now >= job->deploy_deadline_mono)
                deploy_timed_out(jm, job);
            else if (!job->deployed &&
                     (job->state == KP_JOB_CREATED || now >= job->restart_at_mono))
                deploy(jm, job);
            break;
        case KP_JOB_FAILING:
        case KP_JOB_CANCELLING:
            if (now >= job->cancel_deadline_mono) {
                for (size_t i = 0; i < job->nsubs; i++)
                    if (!settled(jm, &job->subs[i]))
                        job->subs[i].state = KP_SUB_CANCELED;
                check_job(jm, job, NULL);
            }
            break;
        case KP_JOB_RUNNING:
            kp_jm_ckpt_step(jm, job);
            break;
        default:
            break;
        }
    }
}

/* The subtask of the job's current attempt that a report from taskmanager `tm` is about, or
 * NULL (logged) when the report is stale or from elsewhere. */
static kp_jm_sub_t *reported_sub(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt,
                                 int task_id, uint32_t subtask, kp_jm_job_t **jobp)
{
    kp_jm_job_t *job = NULL;
    for (size_t j = 0; j < jm->njobs && !job; j++)
        if (!strcmp(jm->jobs[j]->id, job_id))
            job = jm->jobs[j];
    if (!job || !job->deployed || job->attempt != attempt) {
        kp_jm_log("taskmanager %s: report on %s attempt %u ignored (not a current deployment)",
                  jm->tms[tm].id, job_id, attempt);
        return NULL;
    }
    for (size_t i = 0; i < job->nsubs; i++)
        if (job->subs[i].task_id == task_id && job->subs[i].subtask == subtask &&
            job->subs[i].tm == tm) {
            *jobp = job;
            return &job->subs[i];
        }
    kp_jm_log("taskmanager %s: report on task %d subtask %u of %s ignored (not placed there)",
              jm->tms[tm].id, task_id, subtask, job_id);
    return NULL;
}

void kp_life_task_state(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int task_id,
                        uint32_t subtask, kp_sub_state state, const char *message)
{
    kp_jm_job_t *job;
    kp_jm_sub_t *sub = reported_sub(jm, tm, job_id, attempt, task_id, subtask, &job);
    if (!sub)
        return;
    sub->state = state;
    char why[512];
    snprintf(why, sizeof why, "task %d subtask %u on taskmanager %s %s%s%s", task_id, subtask,
             jm->tms[tm].id, kp_sub_state_name(state), message && *message ? ": " : "",
             message ? message : "");
    check_job(jm, job, why);
}

kp_jm_sub_t *kp_life_metrics(kp_jm_t *jm, int tm, const char *job_id, uint32_t attempt, int task_id,
                             uint32_t subtask, uint64_t records_in, uint64_t records_out,
                             kp_time watermark_ms)
{
    kp_jm_job_t *job;
    kp_jm_sub_t *sub = reported_sub(jm, tm, job_id, attempt, task_id, subtask, &job);
    if (!sub)
        return NULL;
    sub->has_metrics = true;
    sub->records_in = records_in;
    sub->records_out = records_out;
    sub->watermark_ms = watermark_ms;
    return sub;
}

void kp_life_tm_lost(kp_jm_t *jm, int tm, const char *reason)
{
    char why[512];
    snprintf(why, sizeof why, "taskmanager %s lost: %s", jm->tms[tm].id, reason);
    kp_jm_log("%s", why);
    for (size_t j = 0; j < jm->njobs; j++) {
        kp_jm_job_t *job = jm->jobs[j];
        if (!job->deployed)
            continue;
        bool hit = false;
        for (size_t i = 0; i < job->nsubs; i++)
            if (job->subs[i].tm == tm &&
                (job->subs[i].state == KP_SUB_DEPLOYING || job->subs[i].state == KP_SUB_RUNNING)) {
                job->subs[i].state = KP_SUB_LOST;
                hit = true;
            }
        if (hit || job->state == KP_JOB_FAILING || job->state == KP_JOB_CANCELLING)
            check_job(jm, job, why);
    }
}

int kp_life_cancel(kp_jm_t *jm, kp_jm_job_t *job, const char *reason)
{
    if (kp_job_state_terminal(job->state))
        return -1;
    if (job->state == KP_JOB_CANCELLING)
        return 0;
    if (!job->deployed) {
        kp_job_transition(jm, job, KP_JOB_CANCELED, reason);
        return 0;
    }
    kp_job_transition(jm, job, KP_JOB_CANCELLING, reason);
    kp_control_send_cancel(jm, job, reason);
    job->cancel_deadline_mono = kp_mono_ms() + jm->cfg.cancel_timeout_ms;
    check_job(jm, job, NULL);
    kp_jm_wake(jm);
    return 0;
}
