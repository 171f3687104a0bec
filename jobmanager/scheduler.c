/* Slot scheduling, as Flink's slot sharing: a job needs as many slots as its largest task
 * parallelism, and slot i holds subtask i of every task (so a chain of tasks with equal
 * parallelism runs side by side in one slot). The slots are taken from the live taskmanagers
 * round-robin, one free slot from each in turn, so a job spreads over the cluster. Free slots
 * are not stored: they are the offered slots minus the slots deployed jobs hold, computed
 * when asked, so nothing can drift out of step. All functions need jm->lock. */
#include <stdio.h>
#include <stdlib.h>

#include "jm.h"

/* Distinct slots the job holds on taskmanager `tm`: subtask i is in slot i, so the slots it
 * holds there are the distinct subtask indexes placed there. */
static uint32_t job_slots_on(const kp_jm_job_t *job, int tm)
{
    uint32_t n = 0;
    for (uint32_t slot = 0; slot < job->slots; slot++)
        for (size_t i = 0; i < job->nsubs; i++)
            if (job->subs[i].subtask == slot && job->subs[i].tm == tm) {
                n++;
                break;
            }
    return n;
}

uint32_t kp_sched_free_slots(const kp_jm_t *jm, int tm)
{
    const kp_jm_tm_t *t = &jm->tms[tm];
    if (!t->alive)
        return 0;
    uint32_t used = 0;
    for (size_t j = 0; j < jm->njobs; j++)
        if (jm->jobs[j]->deployed)
            used += job_slots_on(jm->jobs[j], tm);
    return used >= t->slots ? 0 : t->slots - used;
}

bool kp_sched_place(kp_jm_t *jm, kp_jm_job_t *job)
{
    uint32_t free_slots[KP_JM_TM_MAX], total = 0, live = 0;
    for (size_t t = 0; t < jm->ntms; t++) {
        free_slots[t] = kp_sched_free_slots(jm, (int)t);
        total += free_slots[t];
        live += jm->tms[t].alive;
    }
    if (total < job->slots) {
        snprintf(job->waiting_reason, sizeof job->waiting_reason,
                 "waiting for slots: the job needs %u, %u free on %u taskmanager%s", job->slots,
                 total, live, live == 1 ? "" : "s");
        return false;
    }
    int *slot_tm = malloc(job->slots * sizeof *slot_tm);
    if (!slot_tm) {
        snprintf(job->waiting_reason, sizeof job->waiting_reason, "out of memory");
        return false;
    }
    uint32_t slot = 0;
    while (slot < job->slots)
        for (size_t t = 0; t < jm->ntms && slot < job->slots; t++)
            if (free_slots[t]) {
                free_slots[t]--;
                slot_tm[slot++] = (int)t;
            }
    for (size_t i = 0; i < job->nsubs; i++) {
        job->subs[i].tm = slot_tm[job->subs[i].subtask];
        job->subs[i].state = KP_SUB_DEPLOYING;
        job->subs[i].has_metrics = false;
    }
    free(slot_tm);
    job->deployed = true;
    job->waiting_reason[0] = '\0';
    return true;
}

bool kp_sched_forget_tm(kp_jm_t *jm, int tm)
{
    for (size_t j = 0; j < jm->njobs; j++)
        for (size_t i = 0; jm->jobs[j]->deployed && i < jm->jobs[j]->nsubs; i++)
            if (jm->jobs[j]->subs[i].tm == tm)
                return false;
    for (size_t j = 0; j < jm->njobs; j++)
        for (size_t i = 0; i < jm->jobs[j]->nsubs; i++)
            if (jm->jobs[j]->subs[i].tm == tm)
                jm->jobs[j]->subs[i].tm = -1;
    return true;
}

void kp_sched_release(kp_jm_job_t *job)
{
    job->deployed = false;
}
